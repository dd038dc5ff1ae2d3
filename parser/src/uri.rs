//! SIP, SIPS and TEL URIs (RFC 3261 §19.1 and §25.1, RFC 3966), borrowed from the buffer.
//!
//! The parser splits a URI into the parts routing uses (scheme, user, password, host, port,
//! parameters, headers) without decoding escapes: every part is a subslice of the input, so a
//! dispatcher hash over "the user part" sees exactly the bytes on the wire, as Kamailio does.
//! Any other scheme (`urn:`, `http:`, an unknown one) parses as [`Scheme::Other`] with its
//! opaque part, so a proxy can still forward it or answer `416`.

use crate::error::UriError;
use crate::lex::{eq_ic, find_any, is_host, is_uric};

/// A URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:` (any case).
    Sip,
    /// `sips:` (any case).
    Sips,
    /// `tel:` (any case).
    Tel,
    /// Any other syntactically valid scheme.
    Other,
}

impl Scheme {
    /// The default port of the scheme: 5061 for SIPS, 5060 otherwise (RFC 3261 §19.1.2).
    pub fn default_port(self) -> u16 {
        if self == Scheme::Sips { 5061 } else { 5060 }
    }
}

/// A parsed URI. Every slice points into the parsed input.
///
/// Guarantees: `raw` is the whole input; for `sip:`/`sips:` the host is non-empty (IPv6
/// references keep their brackets); for `tel:` `user` is the number and `host` is empty; for
/// other schemes `user` is `None`, `host` is empty and `opaque` is everything after the colon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    /// The whole URI as given.
    pub raw: &'a [u8],
    /// The scheme.
    pub scheme: Scheme,
    /// The part before the user (or host): `sip:`-style scheme and colon, as written.
    pub scheme_text: &'a [u8],
    /// The user part (before `:password` and `@`), or the TEL number; `None` when absent.
    pub user: Option<&'a [u8]>,
    /// The password (after the first `:` of the user info); `None` when absent.
    pub password: Option<&'a [u8]>,
    /// The host exactly as written (empty for TEL and other schemes).
    pub host: &'a [u8],
    /// The numeric port, when one is written.
    pub port: Option<u16>,
    /// The port digits exactly as written (`05070` stays `05070`).
    pub port_text: Option<&'a [u8]>,
    /// The parameters after the host/port (or TEL number), without the leading `;`; empty when
    /// none.
    pub params: &'a [u8],
    /// The headers after `?`, without the `?`; `None` when absent.
    pub headers: Option<&'a [u8]>,
    /// For [`Scheme::Other`], everything after `scheme:`; empty otherwise.
    pub opaque: &'a [u8],
    /// Offset in `raw` where the host part (host, port, parameters, headers) starts: just after
    /// `@`, or after `scheme:` when there is no user. Used by the select-domain rewrite.
    pub host_offset: usize,
}

impl<'a> Uri<'a> {
    /// Parses a URI (no surrounding white space or angle brackets).
    pub fn parse(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        if raw.iter().any(|&b| !is_uric(b)) {
            return Err(UriError::Character);
        }
        Uri::parse_uric(raw)
    }

    /// [`Uri::parse`] for bytes already known to be URI characters (the scanner checks the
    /// Request-URI's while it reads the request line). Other bytes do not make it panic; they
    /// are just not refused.
    pub(crate) fn parse_uric(raw: &'a [u8]) -> Result<Uri<'a>, UriError> {
        let colon = find_any(raw, [b':']).ok_or(UriError::Scheme)?;
        let (scheme_name, rest) = (&raw[..colon], &raw[colon + 1..]);
        let scheme = if eq_ic(scheme_name, b"sip") {
            Scheme::Sip
        } else if eq_ic(scheme_name, b"sips") {
            Scheme::Sips
        } else if eq_ic(scheme_name, b"tel") {
            Scheme::Tel
        } else if is_scheme(scheme_name) {
            Scheme::Other
        } else {
            return Err(UriError::Scheme);
        };
        let mut uri = Uri {
            raw,
            scheme,
            scheme_text: &raw[..colon + 1],
            user: None,
            password: None,
            host: &[],
            port: None,
            port_text: None,
            params: &[],
            headers: None,
            opaque: &[],
            host_offset: colon + 1,
        };
        match scheme {
            Scheme::Sip | Scheme::Sips => uri.parse_sip(rest)?,
            Scheme::Tel => {
                let (number, params) = split_once(rest, b';');
                if number.is_empty() {
                    return Err(UriError::User);
                }
                uri.user = Some(number);
                uri.params = params.unwrap_or(&[]);
            }
            Scheme::Other => {
                if rest.is_empty() {
                    return Err(UriError::Params);
                }
                uri.opaque = rest;
            }
        }
        Ok(uri)
    }

    fn parse_sip(&mut self, rest: &'a [u8]) -> Result<(), UriError> {
        let hostpart = match find_any(rest, [b'@']) {
            Some(at) => {
                let (user, password) = split_once(&rest[..at], b':');
                if user.is_empty() {
                    return Err(UriError::User);
                }
                self.user = Some(user);
                self.password = password;
                self.host_offset += at + 1;
                &rest[at + 1..]
            }
            None => rest,
        };
        let host_len = if hostpart.first() == Some(&b'[') {
            let close = hostpart
                .iter()
                .position(|&b| b == b']')
                .ok_or(UriError::Host)?;
            let inner = &hostpart[1..close];
            if inner.len() < 2
                || !inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
            {
                return Err(UriError::Host);
            }
            close + 1
        } else {
            hostpart.iter().take_while(|&&b| is_host(b)).count()
        };
        if host_len == 0 {
            return Err(UriError::Host);
        }
        self.host = &hostpart[..host_len];
        let mut tail = &hostpart[host_len..];
        if let Some(after) = tail.strip_prefix(b":") {
            let digits = after.iter().take_while(|b| b.is_ascii_digit()).count();
            let text = &after[..digits];
            let port = crate::lex::parse_u32(text, u64::from(u16::MAX)).ok_or(UriError::Port)?;
            self.port = Some(port as u16);
            self.port_text = Some(text);
            tail = &after[digits..];
        }
        let (before_headers, headers) = split_once(tail, b'?');
        self.headers = headers;
        match before_headers.split_first() {
            None => {}
            Some((b';', params)) => self.params = params,
            Some(_) => return Err(UriError::Host),
        }
        Ok(())
    }

    /// Iterates over the URI parameters as `(name, value)`; a parameter without `=` has the
    /// value `None` (e.g. `lr`).
    pub fn params(&self) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> + 'a {
        let params = self.params;
        params
            .split(|&b| b == b';')
            .filter(|p| !p.is_empty())
            .map(|p| split_once(p, b'='))
    }

    /// The value of the first parameter named `name` (case-insensitive): `Some(None)` for a
    /// parameter without a value, `None` when absent.
    pub fn param(&self, name: &[u8]) -> Option<Option<&'a [u8]>> {
        self.params().find(|(n, _)| eq_ic(n, name)).map(|(_, v)| v)
    }

    /// Whether the URI carries `user=phone` (RFC 3261 §19.1.1), which makes the user part a
    /// telephone number.
    pub fn is_user_phone(&self) -> bool {
        matches!(self.param(b"user"), Some(Some(v)) if eq_ic(v, b"phone"))
    }

    /// The `transport` parameter's value, if any.
    pub fn transport(&self) -> Option<&'a [u8]> {
        self.param(b"transport").flatten()
    }

    /// Everything from the host on (host, port, parameters, headers): the part
    /// `ds_select_domain` copies from a destination URI.
    pub fn host_part(&self) -> &'a [u8] {
        &self.raw[self.host_offset..]
    }
}

fn is_scheme(s: &[u8]) -> bool {
    match s.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

/// Splits at the first `sep`: `(before, Some(after))`, or `(all, None)`.
fn split_once(s: &[u8], sep: u8) -> (&[u8], Option<&[u8]>) {
    match find_any(s, [sep]) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        uri: &'static str,
        scheme: Scheme,
        user: Option<&'static str>,
        password: Option<&'static str>,
        host: &'static str,
        port: Option<u16>,
        params: &'static str,
        headers: Option<&'static str>,
    }

    #[allow(clippy::too_many_arguments)] // one argument per column of the table
    const fn ok(
        uri: &'static str,
        scheme: Scheme,
        user: Option<&'static str>,
        password: Option<&'static str>,
        host: &'static str,
        port: Option<u16>,
        params: &'static str,
        headers: Option<&'static str>,
    ) -> Case {
        Case {
            uri,
            scheme,
            user,
            password,
            host,
            port,
            params,
            headers,
        }
    }

    #[test]
    fn valid_uris() {
        use Scheme::*;
        let cases = [
            ok(
                "sip:alice@atlanta.com",
                Sip,
                Some("alice"),
                None,
                "atlanta.com",
                None,
                "",
                None,
            ),
            ok(
                "SIP:alice@atlanta.com",
                Sip,
                Some("alice"),
                None,
                "atlanta.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:atlanta.com",
                Sip,
                None,
                None,
                "atlanta.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:alice:secretword@atlanta.com;transport=tcp",
                Sip,
                Some("alice"),
                Some("secretword"),
                "atlanta.com",
                None,
                "transport=tcp",
                None,
            ),
            ok(
                "sips:alice@atlanta.com?subject=project%20x&priority=urgent",
                Sips,
                Some("alice"),
                None,
                "atlanta.com",
                None,
                "",
                Some("subject=project%20x&priority=urgent"),
            ),
            ok(
                "sip:+1-212-555-1212:1234@gateway.com;user=phone",
                Sip,
                Some("+1-212-555-1212"),
                Some("1234"),
                "gateway.com",
                None,
                "user=phone",
                None,
            ),
            ok(
                "sips:1212@gateway.com",
                Sips,
                Some("1212"),
                None,
                "gateway.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:alice@192.0.2.4",
                Sip,
                Some("alice"),
                None,
                "192.0.2.4",
                None,
                "",
                None,
            ),
            ok(
                "sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com",
                Sip,
                None,
                None,
                "atlanta.com",
                None,
                "method=REGISTER",
                Some("to=alice%40atlanta.com"),
            ),
            ok(
                "sip:alice;day=tuesday@atlanta.com",
                Sip,
                Some("alice;day=tuesday"),
                None,
                "atlanta.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:bob@biloxi.com:5070",
                Sip,
                Some("bob"),
                None,
                "biloxi.com",
                Some(5070),
                "",
                None,
            ),
            ok(
                "sip:bob@[2001:db8::1]:5070;lr",
                Sip,
                Some("bob"),
                None,
                "[2001:db8::1]",
                Some(5070),
                "lr",
                None,
            ),
            ok("sip:[::1]", Sip, None, None, "[::1]", None, "", None),
            ok("sip:h:05070", Sip, None, None, "h", Some(5070), "", None),
            ok("sip:h:0", Sip, None, None, "h", Some(0), "", None),
            ok("sip:h:65535", Sip, None, None, "h", Some(65535), "", None),
            ok(
                "sip:sips%3Auser%40example.com@example.net",
                Sip,
                Some("sips%3Auser%40example.com"),
                None,
                "example.net",
                None,
                "",
                None,
            ),
            ok(
                "sip:null-%00-null@example.com",
                Sip,
                Some("null-%00-null"),
                None,
                "example.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:caf\u{e9}@example.com",
                Sip,
                Some("caf\u{e9}"),
                None,
                "example.com",
                None,
                "",
                None,
            ),
            ok(
                "sip:+4930;isub=1@h;user=phone",
                Sip,
                Some("+4930;isub=1"),
                None,
                "h",
                None,
                "user=phone",
                None,
            ),
            ok(
                "tel:+4930123",
                Tel,
                Some("+4930123"),
                None,
                "",
                None,
                "",
                None,
            ),
            ok(
                "tel:7042;phone-context=example.com",
                Tel,
                Some("7042"),
                None,
                "",
                None,
                "phone-context=example.com",
                None,
            ),
            ok("urn:service:sos", Other, None, None, "", None, "", None),
            ok(
                "nobodyKnowsThisScheme:totallyopaquecontent",
                Other,
                None,
                None,
                "",
                None,
                "",
                None,
            ),
        ];
        for c in cases {
            let u = Uri::parse(c.uri.as_bytes()).unwrap_or_else(|e| panic!("{}: {e}", c.uri));
            assert_eq!(u.scheme, c.scheme, "{}", c.uri);
            assert_eq!(u.user, c.user.map(str::as_bytes), "{}", c.uri);
            assert_eq!(u.password, c.password.map(str::as_bytes), "{}", c.uri);
            assert_eq!(u.host, c.host.as_bytes(), "{}", c.uri);
            assert_eq!(u.port, c.port, "{}", c.uri);
            assert_eq!(u.params, c.params.as_bytes(), "{}", c.uri);
            assert_eq!(u.headers, c.headers.map(str::as_bytes), "{}", c.uri);
        }
    }

    #[test]
    fn invalid_uris() {
        let cases: &[(&str, UriError)] = &[
            ("", UriError::Scheme),
            ("alice@atlanta.com", UriError::Scheme),
            ("<sip:alice@atlanta.com>", UriError::Character),
            ("sip:alice@atlanta .com", UriError::Character),
            ("sip:", UriError::Host),
            ("sip:alice@", UriError::Host),
            ("sip:@host", UriError::User),
            ("sip:h:", UriError::Port),
            ("sip:h:65536", UriError::Port),
            ("sip:h:99999999999999999999", UriError::Port),
            ("sip:h:5060x", UriError::Host),
            ("sip:[zz]", UriError::Host),
            ("sip:[::1", UriError::Host),
            ("sip:h/p", UriError::Host),
            ("1sip:h", UriError::Scheme),
            ("tel:", UriError::User),
            ("urn:", UriError::Params),
            ("sip:a\tb@h", UriError::Character),
        ];
        for (uri, err) in cases {
            assert_eq!(Uri::parse(uri.as_bytes()), Err(*err), "{uri}");
        }
    }

    #[test]
    fn params_and_host_part() {
        let u = Uri::parse(b"sip:u:pw@h.example:5070;transport=UDP;lr;user=phone?x=y").unwrap();
        assert_eq!(u.transport(), Some(&b"UDP"[..]));
        assert_eq!(u.param(b"LR"), Some(None));
        assert_eq!(u.param(b"maddr"), None);
        assert!(u.is_user_phone());
        assert_eq!(
            u.host_part(),
            b"h.example:5070;transport=UDP;lr;user=phone?x=y"
        );
        assert_eq!(u.port_text, Some(&b"5070"[..]));
        let u = Uri::parse(b"sips:h").unwrap();
        assert_eq!(u.host_part(), b"h");
        assert_eq!(u.scheme.default_port(), 5061);
    }
}
