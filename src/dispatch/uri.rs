//! A minimal URI check for destination-list entries (reference §2.3).
//!
//! Dispatch must know whether a list entry is a URI and where its host and port are, but it
//! never parses SIP messages, so it does not depend on the `sipdisp-parser` crate (whose full
//! RFC 3261 URI parser serves the proxy). This checker accepts what Kamailio's core parser
//! accepts for ordinary destinations: scheme `sip`, `sips`, `tel` or `urn` (case-insensitive),
//! for `sip`/`sips` an optional `user[:password]@`, a non-empty host (a name, an IPv4 address or
//! an IPv6 literal in brackets) of at most 254 bytes, an optional decimal port, then parameters
//! and headers which are kept but not interpreted (except `transport`).
//! It deliberately does not validate every character class of RFC 3261.

use std::ops::Range;

/// URI scheme of a destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (host is empty, as in Kamailio's parser)
    Tel,
    /// `urn:` (host is empty)
    Urn,
}

impl Scheme {
    /// Default port of the scheme: 5061 for `sips`, 5060 otherwise (reference §4.3).
    pub const fn default_port(self) -> u16 {
        match self {
            Scheme::Sips => 5061,
            _ => 5060,
        }
    }
}

/// Where the parts of a checked destination URI are.
///
/// Guarantees: ranges index the checked bytes; `host` is non-empty for `sip`/`sips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestUri {
    /// Scheme.
    pub scheme: Scheme,
    /// User part (without password), if any.
    pub user: Option<Range<usize>>,
    /// Host as written (IPv6 literals keep their brackets).
    pub host: Range<usize>,
    /// Explicit numeric port, `None` when absent.
    pub port: Option<u16>,
    /// Value of the `transport` URI parameter, if any.
    pub transport: Option<Range<usize>>,
}

/// Why a destination URI was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `sip:`, `sips:`, `tel:` or `urn:` scheme.
    #[error("expected scheme sip:, sips:, tel: or urn:")]
    Scheme,
    /// Empty host part.
    #[error("expected a host after the scheme")]
    NoHost,
    /// Host longer than 254 bytes.
    #[error("host longer than 254 bytes")]
    HostTooLong,
    /// Unterminated or malformed IPv6 reference.
    #[error("expected an IPv6 literal closed by ']'")]
    Ipv6,
    /// Invalid byte in the host.
    #[error("invalid character {0:?} in host")]
    HostChar(char),
    /// Port not a decimal number in 0..=65535.
    #[error("expected a decimal port 0..=65535")]
    Port,
}

fn strip_scheme(b: &[u8]) -> Option<(Scheme, usize)> {
    let colon = b.iter().position(|&c| c == b':')?;
    let s = match &b[..colon] {
        x if x.eq_ignore_ascii_case(b"sip") => Scheme::Sip,
        x if x.eq_ignore_ascii_case(b"sips") => Scheme::Sips,
        x if x.eq_ignore_ascii_case(b"tel") => Scheme::Tel,
        x if x.eq_ignore_ascii_case(b"urn") => Scheme::Urn,
        _ => return None,
    };
    Some((s, colon + 1))
}

fn host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

/// Checks a destination URI and locates its parts.
pub fn check(b: &[u8]) -> Result<DestUri, UriError> {
    let (scheme, start) = strip_scheme(b).ok_or(UriError::Scheme)?;
    if matches!(scheme, Scheme::Tel | Scheme::Urn) {
        if start == b.len() {
            return Err(UriError::NoHost);
        }
        return Ok(DestUri {
            scheme,
            user: Some(start..b.len()),
            host: b.len()..b.len(),
            port: None,
            transport: None,
        });
    }
    // The host part ends at the first ';', '?' (params/headers); user info ends at '@'.
    let end_hostport = b[start..]
        .iter()
        .position(|&c| c == b';' || c == b'?')
        .map_or(b.len(), |p| start + p);
    let (user, host_start) = match b[start..end_hostport].iter().rposition(|&c| c == b'@') {
        Some(at) => {
            let ui = start..start + at;
            let uend = b[ui.clone()]
                .iter()
                .position(|&c| c == b':')
                .map_or(ui.end, |p| ui.start + p);
            (Some(ui.start..uend), start + at + 1)
        }
        None => (None, start),
    };
    let hp = &b[host_start..end_hostport];
    let (host_len, rest) = if hp.first() == Some(&b'[') {
        let close = hp.iter().position(|&c| c == b']').ok_or(UriError::Ipv6)?;
        if close < 3
            || !hp[1..close]
                .iter()
                .all(|&c| c.is_ascii_hexdigit() || c == b':' || c == b'.')
        {
            return Err(UriError::Ipv6);
        }
        (close + 1, &hp[close + 1..])
    } else {
        let n = hp.iter().position(|&c| c == b':').unwrap_or(hp.len());
        if let Some(&c) = hp[..n].iter().find(|&&c| !host_byte(c)) {
            return Err(UriError::HostChar(c as char));
        }
        (n, &hp[n..])
    };
    if host_len == 0 {
        return Err(UriError::NoHost);
    }
    if host_len > 254 {
        return Err(UriError::HostTooLong);
    }
    let port = match rest {
        [] => None,
        [b':', digits @ ..] => Some(parse_port(digits).ok_or(UriError::Port)?),
        _ => return Err(UriError::Port),
    };
    Ok(DestUri {
        scheme,
        user,
        host: host_start..host_start + host_len,
        port,
        transport: find_param(b, end_hostport, b"transport"),
    })
}

fn parse_port(d: &[u8]) -> Option<u16> {
    if d.is_empty() || d.len() > 5 || !d.iter().all(u8::is_ascii_digit) {
        return None;
    }
    d.iter()
        .try_fold(0u32, |a, &c| Some(a * 10 + u32::from(c - b'0')))
        .and_then(|v| u16::try_from(v).ok())
}

fn find_param(b: &[u8], from: usize, name: &[u8]) -> Option<Range<usize>> {
    let end = b[from..]
        .iter()
        .position(|&c| c == b'?')
        .map_or(b.len(), |p| from + p);
    let mut i = from;
    while i < end {
        if b[i] != b';' {
            return None;
        }
        let s = i + 1;
        let e = b[s..end]
            .iter()
            .position(|&c| c == b';')
            .map_or(end, |p| s + p);
        let p = &b[s..e];
        let (k, v) = match p.iter().position(|&c| c == b'=') {
            Some(q) => (&p[..q], s + q + 1..e),
            None => (p, e..e),
        };
        if k.eq_ignore_ascii_case(name) {
            return Some(v);
        }
        i = e;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted() {
        type Row<'a> = (&'a str, Scheme, Option<&'a str>, &'a str, Option<u16>);
        let cases: &[Row] = &[
            ("sip:h", Scheme::Sip, None, "h", None),
            (
                "SIP:host.example:5070",
                Scheme::Sip,
                None,
                "host.example",
                Some(5070),
            ),
            (
                "sips:bob:pw@10.0.0.1:5061;transport=tls",
                Scheme::Sips,
                Some("bob"),
                "10.0.0.1",
                Some(5061),
            ),
            (
                "sip:[2001:db8::1]:5070",
                Scheme::Sip,
                None,
                "[2001:db8::1]",
                Some(5070),
            ),
            ("sip:a@b@h", Scheme::Sip, Some("a@b"), "h", None),
            ("sip:h?x=y", Scheme::Sip, None, "h", None),
        ];
        for &(u, s, user, host, port) in cases {
            let d = check(u.as_bytes()).unwrap_or_else(|e| panic!("{u}: {e}"));
            assert_eq!(d.scheme, s, "{u}");
            assert_eq!(d.user.map(|r| &u[r]), user, "{u}");
            assert_eq!(&u[d.host], host, "{u}");
            assert_eq!(d.port, port, "{u}");
        }
        let d = check(b"sip:h;lr;transport=TCP").unwrap();
        assert_eq!(d.transport, Some(19..22));
        assert_eq!(check(b"tel:+4930123").unwrap().scheme, Scheme::Tel);
    }

    #[test]
    fn refused() {
        let cases: &[(&str, UriError)] = &[
            ("10.0.0.9:5070", UriError::Scheme),
            ("abc", UriError::Scheme),
            ("http://x", UriError::Scheme),
            ("sip:", UriError::NoHost),
            ("sip:u@", UriError::NoHost),
            ("sip:h:99999", UriError::Port),
            ("sip:h:", UriError::Port),
            ("sip:[::1", UriError::Ipv6),
            ("sip:h/x", UriError::HostChar('/')),
            ("tel:", UriError::NoHost),
        ];
        for &(u, e) in cases {
            assert_eq!(check(u.as_bytes()), Err(e), "{u}");
        }
        let long = format!("sip:{}", "h".repeat(255));
        assert_eq!(check(long.as_bytes()), Err(UriError::HostTooLong));
    }
}
