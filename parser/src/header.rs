//! Header names and request methods.
//!
//! Header names are compared case-insensitively and compact forms (RFC 3261 §7.3.3, plus the
//! later RFCs' single letters) map to the same [`HeaderKind`], so `i:` and `CALL-ID:` are one
//! header. Methods keep their exact bytes (they are case-sensitive, RFC 3261 §7.1); the enum is
//! a fast classification of the ones routing cares about.

use core::fmt;

/// Number of [`HeaderKind`] variants (for per-kind tables).
pub(crate) const KIND_COUNT: usize = HeaderKind::Other as usize + 1;

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
    ///
    /// Two table lookups and one comparison, without branching on the name: a one-letter
    /// name indexes the compact-form table; a longer one is hashed by its length and first two
    /// letters into [`LONG`], whose one candidate is then compared up to case.
    #[inline(always)]
    pub fn from_name(name: &[u8]) -> HeaderKind {
        match name {
            [] => HeaderKind::Other,
            // ASCII letters only differ in bit 0x20 between cases; no other byte that can
            // start a token maps onto a lower-case letter this way.
            [c] => COMPACT[usize::from(c | 0x20)],
            [a, b, ..] => {
                let (candidate, kind) = LONG[long_slot(name.len(), *a, *b)];
                if eq_folded(name, candidate) {
                    kind
                } else {
                    HeaderKind::Other
                }
            }
        }
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

/// Compact forms (RFC 3261 §7.3.3 and later RFCs), indexed by the lower-cased letter.
static COMPACT: [HeaderKind; 256] = {
    let mut t = [HeaderKind::Other; 256];
    t[b'i' as usize] = HeaderKind::CallId;
    t[b'f' as usize] = HeaderKind::From;
    t[b't' as usize] = HeaderKind::To;
    t[b'v' as usize] = HeaderKind::Via;
    t[b'l' as usize] = HeaderKind::ContentLength;
    t[b'm' as usize] = HeaderKind::Contact;
    t[b'c' as usize] = HeaderKind::ContentType;
    t[b'k' as usize] = HeaderKind::Supported;
    t[b's' as usize] = HeaderKind::Subject;
    t[b'e' as usize] = HeaderKind::ContentEncoding;
    t
};

/// The long names, lower case.
const LONG_NAMES: [(&[u8], HeaderKind); 16] = [
    (b"to", HeaderKind::To),
    (b"via", HeaderKind::Via),
    (b"from", HeaderKind::From),
    (b"cseq", HeaderKind::CSeq),
    (b"route", HeaderKind::Route),
    (b"call-id", HeaderKind::CallId),
    (b"contact", HeaderKind::Contact),
    (b"subject", HeaderKind::Subject),
    (b"supported", HeaderKind::Supported),
    (b"max-forwards", HeaderKind::MaxForwards),
    (b"record-route", HeaderKind::RecordRoute),
    (b"content-type", HeaderKind::ContentType),
    (b"authorization", HeaderKind::Authorization),
    (b"content-length", HeaderKind::ContentLength),
    (b"content-encoding", HeaderKind::ContentEncoding),
    (b"proxy-authorization", HeaderKind::ProxyAuthorization),
];

/// Slot of a name of `len` bytes starting with `a`, `b` in [`LONG`]. Bit 0x20 is forced on
/// so that case does not matter; the table build checks that no two names share a slot.
#[inline(always)]
const fn long_slot(len: usize, a: u8, b: u8) -> usize {
    (len ^ ((a | 0x20) as usize * 12) ^ ((b | 0x20) as usize * 2)) & 31
}

/// Perfect hash table of [`LONG_NAMES`]; an empty slot holds `""`, which no name of two or
/// more bytes equals.
static LONG: [(&[u8], HeaderKind); 32] = {
    let mut t: [(&[u8], HeaderKind); 32] = [(b"", HeaderKind::Other); 32];
    let mut i = 0;
    while i < LONG_NAMES.len() {
        let (name, kind) = LONG_NAMES[i];
        let slot = long_slot(name.len(), name[0], name[1]);
        assert!(
            t[slot].0.is_empty(),
            "two header names share a slot of LONG"
        );
        t[slot] = (name, kind);
        i += 1;
    }
    t
};

/// Whether `name` equals `lower` (lower-case letters and `-`) up to the case of its letters:
/// a few fixed-size word loads instead of a byte loop. Only where `lower` has a letter is bit
/// 0x20 forced on (`(lower & 0x40) >> 1` is 0x20 exactly for letters), so every other byte must
/// match exactly — a match therefore proves `name` is a token. Two overlapping loads cover any
/// length from 2 to 2× the word size; lengths 2..=24.
#[inline]
fn eq_folded(name: &[u8], lower: &[u8]) -> bool {
    let n = name.len();
    if n != lower.len() || n < 2 {
        return n == lower.len() && name.eq_ignore_ascii_case(lower);
    }
    macro_rules! same {
        ($t:ty, $w:expr, $at:expr) => {{
            let a = <$t>::from_le_bytes(name[$at..$at + $w].try_into().unwrap_or_default());
            let b = <$t>::from_le_bytes(lower[$at..$at + $w].try_into().unwrap_or_default());
            let fold = (b & <$t>::from_le_bytes([0x40; $w])) >> 1;
            a | fold == b
        }};
    }
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if !same!(u64, 8, at) {
                return false;
            }
            at += 8;
        }
        same!(u64, 8, n - 8)
    } else if n >= 4 {
        same!(u32, 4, 0) && same!(u32, 4, n - 4)
    } else {
        same!(u16, 2, 0) && same!(u16, 2, n - 2)
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
            (b"Contact", HeaderKind::Contact),
            (b"CALL-ID", HeaderKind::CallId),
            (b"Content-Type", HeaderKind::ContentType),
            (b"Content-Encoding", HeaderKind::ContentEncoding),
            (b"Supported", HeaderKind::Supported),
            (b"Subject", HeaderKind::Subject),
            (b"Max-Forward", HeaderKind::Other),
            (b"Call-Id2", HeaderKind::Other),
            (b"@", HeaderKind::Other),
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
    fn folded_comparison() {
        assert!(eq_folded(b"PROXY-AUTHORIZATION", b"proxy-authorization"));
        assert!(eq_folded(b"Content-Length", b"content-length"));
        assert!(!eq_folded(b"Content-Lengtx", b"content-length"));
        assert!(!eq_folded(b"Xontent-Length", b"content-length"));
        assert!(eq_folded(b"To", b"to"));
        assert!(!eq_folded(b"Tp", b"to"));
        assert!(!eq_folded(b"To", b"too"));
        assert!(eq_folded(b"CSEQ", b"cseq"));
        // A token character that is not a letter never folds onto one.
        assert!(!eq_folded(b"Call_ID", b"call-id"));
        assert!(!eq_folded(b"Call-I\x04", b"call-id"));
        // CR folds onto `-` under a plain `| 0x20`; the letter-only fold refuses it.
        assert!(!eq_folded(b"Call\rID", b"call-id"));
        assert!(!eq_folded(b"Max\rForwards", b"max-forwards"));
        assert!(!eq_folded(b"vIA\x7f", b"via"));
    }

    #[test]
    fn methods() {
        assert_eq!(Method::from_bytes(b"INVITE"), Method::Invite);
        assert_eq!(Method::from_bytes(b"invite"), Method::Other);
        assert_eq!(Method::from_bytes(b"BYE"), Method::Bye);
        assert_eq!(Method::from_bytes(b"RE%47IST%45R"), Method::Other);
    }
}
