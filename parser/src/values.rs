//! Parsers for the header values routing reads: name-addr (From, To, Route, Record-Route),
//! Via, CSeq and Digest credentials (RFC 3261 §20, §25.1).
//!
//! Each parser takes the raw value bytes of one header line (possibly containing folded line
//! breaks) and returns borrowed parts. They validate what routing relies on and nothing more:
//! a Via's sent-by and parameters are checked because responses are routed by them; a From
//! header's unknown parameters are only split, not interpreted.

use crate::error::UriError;
use crate::lex::{
    eq_ic, find_any, is_host, is_lws, is_param_char, is_token, parse_u32, skip_lws, take_quoted,
    take_token, trim_lws,
};
use crate::uri::Uri;

/// A `name-addr` or `addr-spec` with header parameters: the value of From, To, Route,
/// Record-Route, Contact (RFC 3261 §20.10, §20.20, §20.39).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NameAddr<'a> {
    /// The display name as written (quotes included), if any.
    pub display: Option<&'a [u8]>,
    /// The URI (without angle brackets).
    pub uri: Uri<'a>,
    /// The header parameters after the URI (without the first `;`); empty when none.
    pub params: &'a [u8],
    /// The `tag` parameter's value, if present.
    pub tag: Option<&'a [u8]>,
}

/// Why a name-addr did not parse (mapped to [`crate::Error::Header`] by the scanner).
pub(crate) type ValueError = &'static str;

/// Parses one `name-addr` / `addr-spec` with parameters (the whole value, surrounding LWS
/// allowed).
pub fn parse_name_addr(value: &[u8]) -> Result<NameAddr<'_>, &'static str> {
    let s = trim_lws(value);
    if s.is_empty() {
        return Err("empty value");
    }
    let mut display = None;
    let (uri_bytes, after) = if s[0] == b'"' {
        let (quoted, rest) = take_quoted(s).ok_or("unterminated quoted display name")?;
        display = Some(quoted);
        let rest = skip_lws(rest);
        let rest = rest
            .strip_prefix(b"<")
            .ok_or("display name not followed by <URI>")?;
        take_bracketed(rest)?
    } else if let Some(lt) = s.iter().position(|&b| b == b'<') {
        let name = trim_lws(&s[..lt]);
        if !name.iter().all(|&b| is_token(b) || is_lws(b)) {
            return Err("display name is neither tokens nor a quoted string");
        }
        if !name.is_empty() {
            display = Some(name);
        }
        take_bracketed(&s[lt + 1..])?
    } else {
        // addr-spec form: the URI ends at the first `;` (RFC 3261 §20.10) or white space.
        let end = s
            .iter()
            .position(|&b| b == b';' || is_lws(b))
            .unwrap_or(s.len());
        (&s[..end], &s[end..])
    };
    // No white space inside `<>` (RFC 4475 §3.1.2.14): the URI is taken as is.
    let uri = Uri::parse(uri_bytes).map_err(uri_what)?;
    let after = skip_lws(after);
    let params = match after.split_first() {
        None => &after[..0],
        Some((b';', p)) => p,
        Some(_) => return Err("unexpected text after the URI"),
    };
    let mut tag = None;
    for param in GenericParams::new(params) {
        let (name, value) = param?;
        if eq_ic(name, b"tag") && tag.is_none() {
            tag = Some(value.ok_or("tag parameter without value")?);
        }
    }
    Ok(NameAddr {
        display,
        uri,
        params,
        tag,
    })
}

fn uri_what(e: UriError) -> &'static str {
    match e {
        UriError::Scheme => "URI has no valid scheme",
        UriError::User => "URI user part invalid",
        UriError::Host => "URI host invalid",
        UriError::Port => "URI port invalid",
        UriError::Params => "URI parameters invalid",
        UriError::Character => "URI contains a forbidden character",
        UriError::HeadersNotAllowed => "URI headers are not allowed here",
    }
}

/// Splits `uri>rest` at the closing bracket.
fn take_bracketed(s: &[u8]) -> Result<(&[u8], &[u8]), &'static str> {
    let gt = s
        .iter()
        .position(|&b| b == b'>')
        .ok_or("missing closing >")?;
    Ok((&s[..gt], &s[gt + 1..]))
}

/// Iterator over `name[=value]` generic parameters separated by `;` (RFC 3261 `generic-param`),
/// with quoted-string values kept whole. Yields an error for an empty or non-token name.
pub(crate) struct GenericParams<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> GenericParams<'a> {
    pub(crate) fn new(params: &'a [u8]) -> Self {
        let done = trim_lws(params).is_empty();
        GenericParams { rest: params, done }
    }
}

impl<'a> Iterator for GenericParams<'a> {
    type Item = Result<(&'a [u8], Option<&'a [u8]>), ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let s = skip_lws(self.rest);
        let (name, s) = take_token(s);
        if name.is_empty() {
            self.done = true;
            return Some(Err("empty or invalid parameter name"));
        }
        let s = skip_lws(s);
        let (value, s) = match s.strip_prefix(b"=") {
            Some(v) => {
                let v = skip_lws(v);
                let (val, rest) = if v.first() == Some(&b'"') {
                    match take_quoted(v) {
                        Some(x) => x,
                        None => {
                            self.done = true;
                            return Some(Err("unterminated quoted parameter value"));
                        }
                    }
                } else {
                    let n = v.iter().position(|&b| !is_param_char(b)).unwrap_or(v.len());
                    v.split_at(n)
                };
                if val.is_empty() {
                    self.done = true;
                    return Some(Err("parameter with empty value"));
                }
                (Some(val), skip_lws(rest))
            }
            None => (None, s),
        };
        match s.split_first() {
            None => self.done = true,
            Some((b';', rest)) => self.rest = rest,
            Some(_) => {
                self.done = true;
                return Some(Err("unexpected character in parameters"));
            }
        }
        Some(Ok((name, value)))
    }
}

/// One `via-parm` (RFC 3261 §20.42): a hop of the response path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// The whole via-parm, without surrounding white space or the separating comma.
    pub value: &'a [u8],
    /// The transport token (`UDP`, `TCP`, `TLS`, `SCTP`, `WS`, …) as written.
    pub transport: &'a [u8],
    /// The sent-by host as written (IPv6 references keep their brackets).
    pub host: &'a [u8],
    /// The sent-by port, if written.
    pub port: Option<u16>,
    /// The `branch` parameter, if present.
    pub branch: Option<&'a [u8]>,
    /// The `received` parameter, if present (RFC 3261 §18.2.1).
    pub received: Option<&'a [u8]>,
    /// The `rport` parameter (RFC 3581): `Some(None)` when present without a value.
    pub rport: Option<Option<u16>>,
    /// The whole `rport[=N]` parameter text, where a server fills in the port.
    pub rport_param: Option<&'a [u8]>,
    /// The parameters after sent-by (without the first `;`), as written.
    pub params: &'a [u8],
}

/// Parses the comma-separated via-parms of one Via header line.
pub fn parse_via_list(value: &[u8]) -> ViaIter<'_> {
    ViaIter {
        rest: value,
        done: false,
    }
}

/// Iterator over the via-parms of one Via header value.
#[derive(Debug, Clone)]
pub struct ViaIter<'a> {
    rest: &'a [u8],
    done: bool,
}

impl<'a> Iterator for ViaIter<'a> {
    type Item = Result<Via<'a>, ValueError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match parse_via(self.rest) {
            Ok((via, rest)) => {
                match rest {
                    Some(r) => self.rest = r,
                    None => self.done = true,
                }
                Some(Ok(via))
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// Parses one via-parm at the start of `s`; returns it and the text after the following comma
/// (`None` at the end of the value).
fn parse_via(s: &[u8]) -> Result<(Via<'_>, Option<&[u8]>), ValueError> {
    let start = skip_lws(s);
    if start.is_empty() {
        return Err("empty value");
    }
    let s = match start.get(..8) {
        // `SIP/2.0/` as written nearly always: one word comparison (bit 0x20 forced on the
        // three letters only, which is exact for letters). White space after the last slash
        // is left to the general form.
        Some(p)
            if u64::from_le_bytes(p.try_into().unwrap_or_default()) | 0x0020_2020
                == u64::from_le_bytes(*b"sip/2.0/")
                && !start.get(8).is_some_and(|&b| is_lws(b)) =>
        {
            &start[8..]
        }
        _ => sent_protocol(start)?,
    };
    let (transport, s) = take_token(s);
    if transport.is_empty() {
        return Err("missing transport");
    }
    let after_ws = skip_lws(s);
    if after_ws.len() == s.len() {
        return Err("no white space before sent-by");
    }
    let s = after_ws;
    let host_len = if s.first() == Some(&b'[') {
        s.iter()
            .position(|&b| b == b']')
            .map(|i| i + 1)
            .ok_or("unterminated IPv6 reference")?
    } else {
        s.iter().take_while(|&&b| is_host(b)).count()
    };
    if host_len == 0 {
        return Err("missing sent-by host");
    }
    let (host, mut s) = s.split_at(host_len);
    let mut port = None;
    let t = skip_lws(s);
    if let Some(p) = t.strip_prefix(b":") {
        let p = skip_lws(p);
        let digits = p.iter().take_while(|b| b.is_ascii_digit()).count();
        port = Some(
            parse_u32(&p[..digits], u64::from(u16::MAX)).ok_or("invalid sent-by port")? as u16,
        );
        s = &p[digits..];
    }
    let mut via = Via {
        value: &[],
        transport,
        host,
        port,
        branch: None,
        received: None,
        rport: None,
        rport_param: None,
        params: &[],
    };
    let t = skip_lws(s);
    // Parameters run to the first comma outside a quoted string.
    let (params, rest) = match t.first() {
        Some(b';') => {
            let body = &t[1..];
            let end = list_end(body)?;
            (
                &body[..end],
                if end < body.len() {
                    Some(&body[end + 1..])
                } else {
                    None
                },
            )
        }
        Some(b',') => (&t[..0], Some(&t[1..])),
        None => (&t[..0], None),
        Some(_) => return Err("unexpected text after sent-by"),
    };
    via.params = trim_lws(params);
    for param in GenericParams::new(params) {
        let (name, value) = param?;
        if eq_ic(name, b"branch") {
            via.branch = Some(value.ok_or("branch without value")?);
        } else if eq_ic(name, b"received") {
            via.received = Some(value.ok_or("received without value")?);
        } else if eq_ic(name, b"rport") {
            let end = value.map_or(name, |v| v);
            let start = name.as_ptr() as usize - params.as_ptr() as usize;
            let stop = end.as_ptr() as usize + end.len() - params.as_ptr() as usize;
            via.rport_param = Some(&params[start..stop]);
            via.rport = Some(match value {
                None => None,
                Some(v) => Some(parse_u32(v, u64::from(u16::MAX)).ok_or("invalid rport")? as u16),
            });
        }
    }
    let consumed = match rest {
        Some(r) => start.len() - r.len() - 1,
        None => start.len(),
    };
    via.value = trim_lws(&start[..consumed]);
    if let Some(r) = rest
        && trim_lws(r).is_empty()
    {
        return Err("empty via-parm after comma");
    }
    Ok((via, rest))
}

/// `"SIP" SWS "/" SWS "2.0" SWS "/" SWS` in its general form (white space around the
/// slashes); returns what follows.
fn sent_protocol(start: &[u8]) -> Result<&[u8], ValueError> {
    let (name, s) = take_token(start);
    if !eq_ic(name, b"SIP") {
        return Err("protocol name is not SIP");
    }
    let s = slash(s)?;
    let (version, s) = take_token(s);
    if version != b"2.0" {
        return Err("protocol version is not 2.0");
    }
    slash(s)
}

/// `SWS "/" SWS`.
fn slash(s: &[u8]) -> Result<&[u8], ValueError> {
    skip_lws(s)
        .strip_prefix(b"/")
        .map(skip_lws)
        .ok_or("malformed sent-protocol")
}

/// Position of the first comma outside quoted strings and angle brackets in `s` (or its length).
pub(crate) fn list_end(s: &[u8]) -> Result<usize, ValueError> {
    // Nearly every value has none of the three: one quick search settles it; otherwise the
    // walk below starts at the first of them.
    let Some(mut i) = find_any(s, [b',', b'"', b'<']) else {
        return Ok(s.len());
    };
    let mut in_angle = false;
    while i < s.len() {
        match s[i] {
            b'"' => {
                let (q, _) = take_quoted(&s[i..]).ok_or("unterminated quoted string")?;
                i += q.len();
                continue;
            }
            b'<' => in_angle = true,
            b'>' => in_angle = false,
            b',' if !in_angle => return Ok(i),
            _ => {}
        }
        i += 1;
    }
    Ok(s.len())
}

/// A CSeq value (RFC 3261 §20.16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number (less than 2^31).
    pub seq: u32,
    /// The method token, exact bytes.
    pub method: &'a [u8],
}

pub(crate) fn parse_cseq(value: &[u8]) -> Result<CSeq<'_>, ValueError> {
    let s = trim_lws(value);
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    let seq = parse_u32(&s[..digits], (1 << 31) - 1)
        .ok_or("sequence number missing or not below 2^31")?;
    let rest = &s[digits..];
    let method = skip_lws(rest);
    if method.len() == rest.len() {
        return Err("no white space between number and method");
    }
    if !crate::lex::is_token_str(method) {
        return Err("method is not a token");
    }
    Ok(CSeq { seq, method })
}

/// The parts of an `Authorization` / `Proxy-Authorization` value sipdisp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    /// The `username` parameter's value, without the quotes (escapes not decoded).
    pub username: &'a [u8],
}

/// Reads Digest credentials (RFC 3261 §22.4, RFC 2617 §3.2.2). `None` for another scheme
/// (e.g. Basic), a malformed value or a missing username.
pub(crate) fn parse_digest(value: &[u8]) -> Option<DigestCredentials<'_>> {
    let s = skip_lws(value);
    let (scheme, s) = take_token(s);
    if !eq_ic(scheme, b"Digest") {
        return None;
    }
    let mut s = s;
    loop {
        s = skip_lws(s);
        let (name, rest) = take_token(s);
        if name.is_empty() {
            return None;
        }
        let rest = skip_lws(rest).strip_prefix(b"=")?;
        let rest = skip_lws(rest);
        let (val, rest) = if rest.first() == Some(&b'"') {
            let (q, r) = take_quoted(rest)?;
            (&q[1..q.len() - 1], r)
        } else {
            take_token(rest)
        };
        if eq_ic(name, b"username") {
            return Some(DigestCredentials { username: val });
        }
        s = skip_lws(rest);
        match s.split_first() {
            Some((b',', r)) => s = r,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let cases: &[(&str, Option<&str>, &str, Option<&str>)] = &[
            (
                "Alice <sip:alice@atlanta.com>;tag=1928301774",
                Some("Alice"),
                "sip:alice@atlanta.com",
                Some("1928301774"),
            ),
            (
                "\"Bob \\\"B\\\" <x>\" <sip:bob@biloxi.com>",
                Some("\"Bob \\\"B\\\" <x>\""),
                "sip:bob@biloxi.com",
                None,
            ),
            (
                "<sip:carol@chicago.com>",
                None,
                "sip:carol@chicago.com",
                None,
            ),
            (
                "sip:carol@chicago.com;tag=abc",
                None,
                "sip:carol@chicago.com",
                Some("abc"),
            ),
            (
                "  sip:carol@chicago.com  ;  tag = abc ",
                None,
                "sip:carol@chicago.com",
                Some("abc"),
            ),
            (
                "caller<sip:caller@example.com>;tag=323",
                Some("caller"),
                "sip:caller@example.com",
                Some("323"),
            ),
            ("J Rosenberg \\\\\\\"  <sip:j@example.com>", None, "", None),
            (
                "<sip:u@h;transport=tcp>;TAG=x;other",
                None,
                "sip:u@h;transport=tcp",
                Some("x"),
            ),
            (
                "\"\" <sip:anonymous@anonymous.invalid>",
                Some("\"\""),
                "sip:anonymous@anonymous.invalid",
                None,
            ),
            ("<tel:+12125551212>", None, "tel:+12125551212", None),
            (
                "Alice\r\n <sip:alice@a.example>",
                Some("Alice"),
                "sip:alice@a.example",
                None,
            ),
        ];
        for (value, display, uri, tag) in cases {
            match parse_name_addr(value.as_bytes()) {
                Ok(na) => {
                    assert_eq!(na.display, display.map(str::as_bytes), "{value}");
                    assert_eq!(na.uri.raw, uri.as_bytes(), "{value}");
                    assert_eq!(na.tag, tag.map(str::as_bytes), "{value}");
                }
                Err(e) => assert!(uri.is_empty(), "{value}: {e}"),
            }
        }
    }

    #[test]
    fn name_addr_errors() {
        for bad in [
            "",
            "\"unterminated <sip:a@b>",
            "Bell, Alexander <sip:a.g.bell@bell-tel.com>",
            "<sip:a@b",
            "<sip:a@b> junk",
            "<notauri>",
            "sip:a@b;;",
            "sip:a@b;tag",
        ] {
            assert!(parse_name_addr(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn via_values() {
        let vias: Vec<_> = parse_via_list(
            b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1;rport=5066, SIP / 2.0 / TCP [2001:db8::9]:5070;rport,sip/2.0/TLS h",
        )
        .collect::<Result<_, _>>()
        .unwrap();
        assert_eq!(vias.len(), 3);
        assert_eq!(vias[0].transport, b"UDP");
        assert_eq!(vias[0].host, b"pc33.atlanta.com");
        assert_eq!(vias[0].port, None);
        assert_eq!(vias[0].branch, Some(&b"z9hG4bK776asdhds"[..]));
        assert_eq!(vias[0].received, Some(&b"192.0.2.1"[..]));
        assert_eq!(vias[0].rport, Some(Some(5066)));
        assert_eq!(vias[0].rport_param, Some(&b"rport=5066"[..]));
        assert_eq!(
            vias[0].value,
            b"SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds ;received=192.0.2.1;rport=5066"
        );
        assert_eq!(vias[1].host, b"[2001:db8::9]");
        assert_eq!(vias[1].port, Some(5070));
        assert_eq!(vias[1].rport, Some(None));
        assert_eq!(vias[1].rport_param, Some(&b"rport"[..]));
        assert_eq!(vias[1].value, b"SIP / 2.0 / TCP [2001:db8::9]:5070;rport");
        assert_eq!(vias[2].transport, b"TLS");
        assert_eq!(vias[2].branch, None);
        // Folded across lines, as in RFC 4475 wsinv.
        let v = parse_via_list(b"SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw")
            .next()
            .unwrap()
            .unwrap();
        assert_eq!(v.host, b"192.0.2.2");
        assert_eq!(v.branch, Some(&b"390skdjuw"[..]));
    }

    #[test]
    fn via_errors() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0/UDPhost",
            "SIP/3.0/UDP h",
            "HTTP/2.0/UDP h",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP h;branch",
            "SIP/2.0/UDP h;branch=",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP h,",
            "SIP/2.0/UDP h junk",
            "SIP/2.0/UDP h;rport=x",
            "SIP/2.0/UDP [::1",
        ] {
            let r: Result<Vec<_>, _> = parse_via_list(bad.as_bytes()).collect();
            assert!(r.is_err(), "{bad:?} parsed as {r:?}");
        }
    }

    #[test]
    fn cseq_values() {
        assert_eq!(
            parse_cseq(b"4711 INVITE"),
            Ok(CSeq {
                seq: 4711,
                method: b"INVITE"
            })
        );
        assert_eq!(
            parse_cseq(b" 0009\r\n  INVITE "),
            Ok(CSeq {
                seq: 9,
                method: b"INVITE"
            })
        );
        assert_eq!(parse_cseq(b"2147483647 ACK").map(|c| c.seq), Ok(2147483647));
        for bad in [
            "",
            "INVITE",
            "1",
            "1INVITE",
            "2147483648 INVITE",
            "36893488147419103232 INVITE",
            "1 INV ITE",
            "-1 INVITE",
        ] {
            assert!(parse_cseq(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_username() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"x\"",
                Some("bob"),
            ),
            (
                "digest realm=\"r\",username=\"sip:bob@x\"",
                Some("sip:bob@x"),
            ),
            ("Digest  realm=r , username = alice", Some("alice")),
            ("Digest username=\"\", realm=\"r\"", Some("")),
            ("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==", None),
            ("Digest realm=\"r\"", None),
            ("Digest username=\"open", None),
            ("", None),
        ];
        for (value, user) in cases {
            assert_eq!(
                parse_digest(value.as_bytes()).map(|d| d.username),
                user.map(str::as_bytes),
                "{value}"
            );
        }
    }
}
