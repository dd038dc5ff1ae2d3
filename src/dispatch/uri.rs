//! Destination URIs of the list file (reference §2.3), parsed by the one SIP URI parser of
//! the project (`sipdisp_parser::Uri`) with Kamailio's list-file rules on top.
//!
//! Dispatch must know whether a list entry is a URI and where its host and port are. The
//! parser crate splits the URI; this module adds what Kamailio's loader accepts beyond and
//! refuses beyond RFC 3261: the schemes `sip`, `sips`, `tel` and `urn` only (any case); a user
//! part containing `@` (everything up to the last `@` of the user-host part, as Kamailio's core
//! parser takes it); a host of at most 254 bytes; and errors that name what is wrong the way
//! an operator reading a list line needs (no host, a bad IPv6 literal, the bad character, the
//! port). Parameters and headers are kept but not interpreted (except `transport`).

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

fn host_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
}

/// The scheme of `b` and where the part after its colon starts.
fn scheme_of(b: &[u8]) -> Option<(Scheme, usize)> {
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

/// Checks a destination URI and locates its parts.
pub fn check(b: &[u8]) -> Result<DestUri, UriError> {
    let (scheme, start) = scheme_of(b).ok_or(UriError::Scheme)?;
    if matches!(scheme, Scheme::Tel | Scheme::Urn) {
        // tel: and urn: carry no host (Kamailio's parser); the rest is the user part.
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
    // Kamailio takes the user part up to the *last* `@` before the parameters; the parser
    // crate (RFC 3261) allows none inside it. Parse the host part on its own then.
    let end_hostport = b[start..]
        .iter()
        .position(|&c| c == b';' || c == b'?')
        .map_or(b.len(), |p| start + p);
    let at = b[start..end_hostport].iter().rposition(|&c| c == b'@');
    let user = at.map(|at| {
        let ui = start..start + at;
        let uend = b[ui.clone()]
            .iter()
            .position(|&c| c == b':')
            .map_or(ui.end, |p| ui.start + p);
        ui.start..uend
    });
    let host_start = at.map_or(start, |at| start + at + 1);
    let mut tail = Vec::with_capacity(4 + b.len() - host_start);
    tail.extend_from_slice(b"sip:");
    tail.extend_from_slice(&b[host_start..]);
    let parsed =
        sipdisp_parser::Uri::parse(&tail).map_err(|e| explain(&b[host_start..end_hostport], e))?;
    // `parsed.host` lies in `tail` at an offset that maps back to `b`.
    let host_off = parsed.host.as_ptr() as usize - tail.as_ptr() as usize - 4 + host_start;
    if parsed.host.len() > 254 {
        return Err(UriError::HostTooLong);
    }
    Ok(DestUri {
        scheme,
        user,
        host: host_off..host_off + parsed.host.len(),
        port: parsed.port,
        transport: find_param(b, end_hostport, b"transport"),
    })
}

/// What is wrong with a host part the parser refused, as a list line's error says it.
fn explain(hostport: &[u8], e: sipdisp_parser::UriError) -> UriError {
    if matches!(e, sipdisp_parser::UriError::Port) {
        return UriError::Port;
    }
    if hostport.first() == Some(&b'[') {
        return UriError::Ipv6;
    }
    let host_end = hostport
        .iter()
        .position(|&c| c == b':')
        .unwrap_or(hostport.len());
    match hostport[..host_end].iter().find(|&&c| !host_byte(c)) {
        _ if host_end == 0 => UriError::NoHost,
        Some(&c) => UriError::HostChar(c as char),
        None if host_end > 254 => UriError::HostTooLong,
        None if host_end < hostport.len() => UriError::Port,
        None => UriError::NoHost,
    }
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
            ("sip:h{x", UriError::HostChar('{')),
            ("sip:u@[::1]:99999", UriError::Port),
            ("sip:u@", UriError::NoHost),
        ];
        for &(u, e) in cases {
            assert_eq!(check(u.as_bytes()), Err(e), "{u}");
        }
        let long = format!("sip:{}", "h".repeat(255));
        assert_eq!(check(long.as_bytes()), Err(UriError::HostTooLong));
    }
}
