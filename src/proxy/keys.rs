//! What each selection algorithm hashes, taken from a scanned message.
//!
//! Dispatch never sees SIP bytes: it names the key an algorithm needs
//! ([`crate::dispatch::select::KeyKind`]) and this module extracts exactly those bytes from the
//! [`Message`], following Kamailio's rules (`dispatcher-semantics.md` §4.2–4.4): the URI user part
//! as the core parser defines it (cut at the first `;` for `user=phone`, default port 5060 then
//! even for `sips:`), the host as written, the explicit port, and the `hash_pvar` template for
//! algorithm 7 evaluated into a fixed buffer (a missing variable prints `<null>`).

use std::io::Write;
use std::net::SocketAddr;

use arrayvec::ArrayVec;
use sipdisp_parser::{Message, Scheme, Uri};

use crate::dispatch::Key;
use crate::dispatch::select::KeyKind;

/// Capacity of the evaluated `hash_pvar` string; a longer result is truncated (and still
/// hashed consistently).
pub const TEMPLATE_CAPACITY: usize = 512;

/// Why a key could not be taken from the message (Kamailio fails the selection, -1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The From / To / Request-URI needed for the hash does not parse.
    #[error("the {0} needed for hashing is malformed")]
    Malformed(&'static str),
}

/// The URI keys of algorithms 1–3 (§4.3).
pub fn uri_key<'a>(uri: &Uri<'a>) -> Key<'a> {
    let phone = uri.is_user_phone() && matches!(uri.scheme, Scheme::Sip | Scheme::Sips);
    let user = if phone {
        // The core parser turns a user=phone SIP URI into a TEL-like one: the user ends at
        // its first `;`, and the default port is 5060 even for sips (§12 items 20–21).
        uri.user
            .map(|u| u.split(|&b| b == b';').next().unwrap_or(u))
    } else {
        uri.user
    };
    let default_port = if phone {
        5060
    } else {
        uri.scheme.default_port()
    };
    Key::Uri {
        user,
        host: uri.host,
        port: uri.port_text.zip(uri.port),
        default_port,
    }
}

/// One piece of a parsed `hash_pvar` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    /// Literal text.
    Text(Box<[u8]>),
    /// `$ci`: Call-ID.
    CallId,
    /// `$fu`: From URI.
    FromUri,
    /// `$fU`: From user.
    FromUser,
    /// `$fd`: From host.
    FromHost,
    /// `$tu`: To URI.
    ToUri,
    /// `$tU`: To user.
    ToUser,
    /// `$td`: To host.
    ToHost,
    /// `$ru`: Request-URI.
    RequestUri,
    /// `$rU`: Request-URI user.
    RequestUser,
    /// `$rd`: Request-URI host.
    RequestHost,
    /// `$au`: Digest user name (of Proxy-Authorization, else Authorization).
    AuthUser,
    /// `$si`: source IP.
    SourceIp,
    /// `$sp`: source port.
    SourcePort,
    /// `$hdr(Name)`: first value of a header.
    Header(Box<[u8]>),
}

/// A parsed `hash_pvar` template (Kamailio pseudo-variable syntax, the subset above).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    parts: Vec<TemplatePart>,
}

/// Why a template does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at byte {at}: {what}")]
pub struct TemplateError {
    /// Offset in the template.
    pub at: usize,
    /// What was wrong, with what is supported.
    pub what: String,
}

/// The variables [`Template::parse`] accepts, for error messages.
pub const SUPPORTED_VARIABLES: &str =
    "$ci $fu $fU $fd $tu $tU $td $ru $rU $rd $au $si $sp $hdr(Name)";

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

impl Template {
    /// Parses a template such as `$fU@$fd` or `$hdr(X-Tenant)-$ci`. `$` always starts a
    /// variable and its name is read greedily (`$fUx` is the unknown variable `fUx`, as in
    /// Kamailio); only the variables the proxy can evaluate from a request are accepted, and
    /// a template must contain something besides white space.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let b = source.as_bytes();
        let mut parts = Vec::new();
        let mut text = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] != b'$' {
                text.push(b[i]);
                i += 1;
                continue;
            }
            if !text.is_empty() {
                parts.push(TemplatePart::Text(std::mem::take(&mut text).into()));
            }
            let at = i;
            let mut j = i + 1;
            while j < b.len() && (b[j].is_ascii_alphanumeric() || b[j] == b'_') {
                j += 1;
            }
            let name = &source[at + 1..j];
            let part = match name {
                "hdr" => {
                    let rest = &b[j..];
                    let close = rest.iter().position(|&c| c == b')');
                    match (rest.first(), close) {
                        (Some(b'('), Some(c))
                            if c > 1 && rest[1..c].iter().all(|&x| is_token(x)) =>
                        {
                            j += c + 1;
                            TemplatePart::Header(rest[1..c].into())
                        }
                        _ => {
                            return Err(TemplateError {
                                at,
                                what: "expected $hdr(Name) with a header name".into(),
                            });
                        }
                    }
                }
                "ci" => TemplatePart::CallId,
                "fu" => TemplatePart::FromUri,
                "fU" => TemplatePart::FromUser,
                "fd" => TemplatePart::FromHost,
                "tu" => TemplatePart::ToUri,
                "tU" => TemplatePart::ToUser,
                "td" => TemplatePart::ToHost,
                "ru" => TemplatePart::RequestUri,
                "rU" => TemplatePart::RequestUser,
                "rd" => TemplatePart::RequestHost,
                "au" => TemplatePart::AuthUser,
                "si" => TemplatePart::SourceIp,
                "sp" => TemplatePart::SourcePort,
                _ => {
                    let shown: String = if name.is_empty() {
                        source[at..].chars().take(4).collect()
                    } else {
                        format!("${name}")
                    };
                    return Err(TemplateError {
                        at,
                        what: format!(
                            "unsupported variable \"{shown}\" (supported: {SUPPORTED_VARIABLES})"
                        ),
                    });
                }
            };
            parts.push(part);
            i = j;
        }
        if !text.is_empty() {
            parts.push(TemplatePart::Text(text.into()));
        }
        let only_blank = parts
            .iter()
            .all(|p| matches!(p, TemplatePart::Text(t) if t.iter().all(u8::is_ascii_whitespace)));
        if only_blank {
            return Err(TemplateError {
                at: 0,
                what: "a template needs at least one variable or non-blank text".into(),
            });
        }
        Ok(Template { parts })
    }

    /// The parts, in order.
    pub fn parts(&self) -> &[TemplatePart] {
        &self.parts
    }

    /// Evaluates the template for `msg` into `out` (cleared first). Missing values print as
    /// `<null>`, as Kamailio's `pv` module does; output beyond [`TEMPLATE_CAPACITY`] is cut.
    pub fn eval(
        &self,
        msg: &Message<'_>,
        source: SocketAddr,
        out: &mut ArrayVec<u8, TEMPLATE_CAPACITY>,
    ) {
        out.clear();
        for part in &self.parts {
            let value: Option<&[u8]> = match part {
                TemplatePart::Text(t) => Some(t),
                TemplatePart::CallId => Some(msg.call_id()),
                TemplatePart::FromUri => msg.from().ok().map(|f| f.uri.raw),
                TemplatePart::FromUser => msg.from().ok().and_then(|f| f.uri.user),
                TemplatePart::FromHost => msg.from().ok().map(|f| f.uri.host),
                TemplatePart::ToUri => msg.to().ok().map(|f| f.uri.raw),
                TemplatePart::ToUser => msg.to().ok().and_then(|f| f.uri.user),
                TemplatePart::ToHost => msg.to().ok().map(|f| f.uri.host),
                TemplatePart::RequestUri => msg.request().map(|r| r.uri_bytes),
                TemplatePart::RequestUser => msg
                    .request()
                    .and_then(|r| r.uri().ok())
                    .and_then(|u| u.user),
                TemplatePart::RequestHost => {
                    msg.request().and_then(|r| r.uri().ok()).map(|u| u.host)
                }
                TemplatePart::AuthUser => msg.digest_credentials().map(|d| d.username),
                TemplatePart::SourceIp => {
                    let _ = write!(out, "{}", source.ip());
                    continue;
                }
                TemplatePart::SourcePort => {
                    let _ = write!(out, "{}", source.port());
                    continue;
                }
                TemplatePart::Header(name) => msg.header(name),
            };
            let v = value.unwrap_or(b"<null>");
            let n = v.len().min(out.remaining_capacity());
            let _ = out.try_extend_from_slice(&v[..n]);
        }
    }
}

/// Extracts the key `kind` from `msg` (a request). `template` is alg 7's evaluated string,
/// `random` alg 6's value.
pub fn key_for<'a>(
    kind: KeyKind,
    msg: &Message<'a>,
    template: &'a [u8],
    random: u32,
) -> Result<Key<'a>, KeyError> {
    Ok(match kind {
        KeyKind::None => Key::None,
        KeyKind::CallId => Key::CallId(msg.call_id()),
        KeyKind::FromUri => uri_key(&msg.from().map_err(|_| KeyError::Malformed("From URI"))?.uri),
        KeyKind::ToUri => uri_key(&msg.to().map_err(|_| KeyError::Malformed("To URI"))?.uri),
        KeyKind::RequestUri => {
            let r = msg.request().ok_or(KeyError::Malformed("Request-URI"))?;
            uri_key(&r.uri().map_err(|_| KeyError::Malformed("Request-URI"))?)
        }
        KeyKind::AuthUser => Key::AuthUser(msg.digest_credentials().map(|d| d.username)),
        KeyKind::Template => Key::Template(template),
        KeyKind::Random => Key::Random(random),
        KeyKind::CallLoad => Key::CallLoad {
            call_id: msg.call_id(),
            invite: msg.request().is_some_and(|r| r.method == b"INVITE"),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipdisp_parser::{Headers, parse_datagram};

    fn uri_parts(s: &str) -> (Option<Vec<u8>>, Vec<u8>, Option<u16>, u16) {
        let u = Uri::parse(s.as_bytes()).unwrap();
        match uri_key(&u) {
            Key::Uri {
                user,
                host,
                port,
                default_port,
            } => (
                user.map(<[u8]>::to_vec),
                host.to_vec(),
                port.map(|p| p.1),
                default_port,
            ),
            _ => unreachable!(),
        }
    }

    #[test]
    fn uri_keys_follow_kamailio() {
        assert_eq!(
            uri_parts("sip:alice@h"),
            (Some(b"alice".to_vec()), b"h".to_vec(), None, 5060)
        );
        assert_eq!(
            uri_parts("sips:alice@h:5061"),
            (Some(b"alice".to_vec()), b"h".to_vec(), Some(5061), 5061)
        );
        assert_eq!(
            uri_parts("sip:alice:pw@h"),
            (Some(b"alice".to_vec()), b"h".to_vec(), None, 5060)
        );
        assert_eq!(uri_parts("sip:h"), (None, b"h".to_vec(), None, 5060));
        assert_eq!(
            uri_parts("sip:alice@[2001:db8::1]:5070"),
            (
                Some(b"alice".to_vec()),
                b"[2001:db8::1]".to_vec(),
                Some(5070),
                5060
            )
        );
        assert_eq!(
            uri_parts("sip:+4930;isub=1@h;user=phone"),
            (Some(b"+4930".to_vec()), b"h".to_vec(), None, 5060)
        );
        assert_eq!(
            uri_parts("sips:+49123@h:5061;user=phone"),
            (Some(b"+49123".to_vec()), b"h".to_vec(), Some(5061), 5060)
        );
        assert_eq!(
            uri_parts("tel:+4930123"),
            (Some(b"+4930123".to_vec()), b"".to_vec(), None, 5060)
        );
    }

    const REQ: &[u8] = b"INVITE sip:bob@biloxi.example:5070 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
From: Alice <sip:alice@atlanta.example>;tag=1\r\n\
To: <sip:bob@biloxi.example>\r\n\
Call-ID: cid@x\r\nCSeq: 1 INVITE\r\nX-Tenant: acme\r\n\
Proxy-Authorization: Digest username=\"carol\"\r\n\r\n";

    #[test]
    fn templates() {
        let mut h = Headers::new();
        let m = parse_datagram(REQ, &mut h).unwrap();
        let src: SocketAddr = "192.0.2.1:5062".parse().unwrap();
        let mut out = ArrayVec::new();
        let cases = [
            ("$fU@$fd", "alice@atlanta.example"),
            ("$ci", "cid@x"),
            ("$tu|$tU|$td", "sip:bob@biloxi.example|bob|biloxi.example"),
            (
                "$ru $rU $rd",
                "sip:bob@biloxi.example:5070 bob biloxi.example",
            ),
            ("$au", "carol"),
            ("$si:$sp", "192.0.2.1:5062"),
            ("$hdr(X-Tenant)-$hdr(x-tenant)", "acme-acme"),
            ("$hdr(X-Missing)", "<null>"),
            ("plain", "plain"),
        ];
        for (t, want) in cases {
            Template::parse(t).unwrap().eval(&m, src, &mut out);
            assert_eq!(std::str::from_utf8(&out).unwrap(), want, "{t}");
        }
        for bad in ["$zz", "$hdr(", "$hdr()", "$", "$f", "$fUx", " "] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn keys_by_kind() {
        let mut h = Headers::new();
        let m = parse_datagram(REQ, &mut h).unwrap();
        assert_eq!(
            key_for(KeyKind::CallId, &m, b"", 0),
            Ok(Key::CallId(b"cid@x"))
        );
        assert_eq!(
            key_for(KeyKind::AuthUser, &m, b"", 0),
            Ok(Key::AuthUser(Some(b"carol")))
        );
        assert_eq!(key_for(KeyKind::Random, &m, b"", 7), Ok(Key::Random(7)));
        assert!(matches!(
            key_for(KeyKind::RequestUri, &m, b"", 0),
            Ok(Key::Uri {
                port: Some((b"5070", 5070)),
                ..
            })
        ));
        assert_eq!(
            key_for(KeyKind::CallLoad, &m, b"", 0),
            Ok(Key::CallLoad {
                call_id: b"cid@x",
                invite: true
            })
        );
    }
}
