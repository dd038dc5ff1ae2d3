//! Header names and request methods.
//!
//! Header names are compared case-insensitively and compact forms (RFC 3261 §7.3.3, plus the
//! later RFCs' single letters) map to the same [`HeaderKind`], so `i:` and `CALL-ID:` are one
//! header. Methods keep their exact bytes (they are case-sensitive, RFC 3261 §7.1); the enum is
//! a fast classification of the ones routing cares about.

use core::fmt;

/// The headers the scanner recognises. Everything else is [`HeaderKind::Other`] and still
/// indexed (lookup by name works for any header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum HeaderKind {
    /// `Call-ID` / `i`.
    CallId,
    /// `From` / `f`.
    From,
    /// `To` / `t`.
    To,
    /// `Via` / `v`.
    Via,
    /// `CSeq`.
    CSeq,
    /// `Max-Forwards`.
    MaxForwards,
    /// `Route`.
    Route,
    /// `Record-Route`.
    RecordRoute,
    /// `Content-Length` / `l`.
    ContentLength,
    /// `Authorization`.
    Authorization,
    /// `Proxy-Authorization`.
    ProxyAuthorization,
    /// `Contact` / `m`.
    Contact,
    /// `Content-Type` / `c`.
    ContentType,
    /// `Supported` / `k`.
    Supported,
    /// `Subject` / `s`.
    Subject,
    /// `Content-Encoding` / `e`.
    ContentEncoding,
    /// Any other header.
    Other,
}

impl HeaderKind {
    /// Classifies a header name (case-insensitive, compact forms included). The name must not
    /// contain surrounding white space.
    pub fn from_name(name: &[u8]) -> HeaderKind {
        use HeaderKind::*;
        if name.len() == 1 {
            return match name[0] | 0x20 {
                b'i' => CallId,
                b'f' => From,
                b't' => To,
                b'v' => Via,
                b'l' => ContentLength,
                b'm' => Contact,
                b'c' => ContentType,
                b'k' => Supported,
                b's' => Subject,
                b'e' => ContentEncoding,
                _ => Other,
            };
        }
        // Dispatch on length first: one comparison for nearly every header.
        let candidates: &[(&[u8], HeaderKind)] = match name.len() {
            2 => &[(b"to", To)],
            3 => &[(b"via", Via)],
            4 => &[(b"from", From), (b"cseq", CSeq)],
            5 => &[(b"route", Route)],
            7 => &[
                (b"call-id", CallId),
                (b"contact", Contact),
                (b"subject", Subject),
            ],
            9 => &[(b"supported", Supported)],
            12 => &[
                (b"max-forwards", MaxForwards),
                (b"record-route", RecordRoute),
                (b"content-type", ContentType),
            ],
            13 => &[(b"authorization", Authorization)],
            14 => &[(b"content-length", ContentLength)],
            16 => &[(b"content-encoding", ContentEncoding)],
            19 => &[(b"proxy-authorization", ProxyAuthorization)],
            _ => &[],
        };
        candidates
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map_or(Other, |&(_, k)| k)
    }

    /// The canonical (long) name of a recognised header; `None` for [`HeaderKind::Other`].
    pub fn canonical_name(self) -> Option<&'static str> {
        use HeaderKind::*;
        Some(match self {
            CallId => "Call-ID",
            From => "From",
            To => "To",
            Via => "Via",
            CSeq => "CSeq",
            MaxForwards => "Max-Forwards",
            Route => "Route",
            RecordRoute => "Record-Route",
            ContentLength => "Content-Length",
            Authorization => "Authorization",
            ProxyAuthorization => "Proxy-Authorization",
            Contact => "Contact",
            ContentType => "Content-Type",
            Supported => "Supported",
            Subject => "Subject",
            ContentEncoding => "Content-Encoding",
            Other => return None,
        })
    }
}

impl fmt::Display for HeaderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.canonical_name().unwrap_or("extension"))
    }
}

/// Request methods (RFC 3261 §7.1 and extensions). Matching is case-sensitive: `invite` is an
/// extension method, not INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// INVITE
    Invite,
    /// ACK
    Ack,
    /// BYE
    Bye,
    /// CANCEL
    Cancel,
    /// OPTIONS
    Options,
    /// REGISTER
    Register,
    /// PRACK (RFC 3262)
    Prack,
    /// SUBSCRIBE (RFC 6665)
    Subscribe,
    /// NOTIFY (RFC 6665)
    Notify,
    /// PUBLISH (RFC 3903)
    Publish,
    /// INFO (RFC 6086)
    Info,
    /// REFER (RFC 3515)
    Refer,
    /// MESSAGE (RFC 3428)
    Message,
    /// UPDATE (RFC 3311)
    Update,
    /// Any other token.
    Other,
}

impl Method {
    /// Classifies a method token (exact, case-sensitive bytes).
    pub fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"INVITE" => Method::Invite,
            b"ACK" => Method::Ack,
            b"BYE" => Method::Bye,
            b"CANCEL" => Method::Cancel,
            b"OPTIONS" => Method::Options,
            b"REGISTER" => Method::Register,
            b"PRACK" => Method::Prack,
            b"SUBSCRIBE" => Method::Subscribe,
            b"NOTIFY" => Method::Notify,
            b"PUBLISH" => Method::Publish,
            b"INFO" => Method::Info,
            b"REFER" => Method::Refer,
            b"MESSAGE" => Method::Message,
            b"UPDATE" => Method::Update,
            _ => Method::Other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names() {
        let cases: &[(&[u8], HeaderKind)] = &[
            (b"Call-ID", HeaderKind::CallId),
            (b"call-id", HeaderKind::CallId),
            (b"CALL-ID", HeaderKind::CallId),
            (b"i", HeaderKind::CallId),
            (b"I", HeaderKind::CallId),
            (b"f", HeaderKind::From),
            (b"From", HeaderKind::From),
            (b"t", HeaderKind::To),
            (b"TO", HeaderKind::To),
            (b"v", HeaderKind::Via),
            (b"VIA", HeaderKind::Via),
            (b"cseq", HeaderKind::CSeq),
            (b"Max-Forwards", HeaderKind::MaxForwards),
            (b"Record-Route", HeaderKind::RecordRoute),
            (b"route", HeaderKind::Route),
            (b"l", HeaderKind::ContentLength),
            (b"Content-Length", HeaderKind::ContentLength),
            (b"Authorization", HeaderKind::Authorization),
            (b"Proxy-Authorization", HeaderKind::ProxyAuthorization),
            (b"m", HeaderKind::Contact),
            (b"X-Tenant", HeaderKind::Other),
            (b"Vias", HeaderKind::Other),
            (b"z", HeaderKind::Other),
            (b"", HeaderKind::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(
                HeaderKind::from_name(name),
                *kind,
                "{:?}",
                core::str::from_utf8(name)
            );
        }
    }

    #[test]
    fn methods() {
        assert_eq!(Method::from_bytes(b"INVITE"), Method::Invite);
        assert_eq!(Method::from_bytes(b"invite"), Method::Other);
        assert_eq!(Method::from_bytes(b"BYE"), Method::Bye);
        assert_eq!(Method::from_bytes(b"RE%47IST%45R"), Method::Other);
    }
}
