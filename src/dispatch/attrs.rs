//! Destination attributes (`duid=…;weight=…`), reference §2.2.
//!
//! The body is kept verbatim (minus one trailing `;`) for RPC output; known names are parsed
//! case-insensitively, the **first** occurrence of a repeated name wins (Kamailio walks its
//! reversed parameter list and overwrites), unknown names stay only in the body. Integers are
//! signed decimal; anything else reads as 0. Out-of-range `weight`/`rweight` become 0 with a
//! warning but do not reject the destination. Socket names are only stored here: whether they
//! name a local socket is checked by the loader's caller, which owns the sockets.

/// Parsed destination attributes.
///
/// Guarantees: `weight` and `rweight` are 0 or within 1..=100.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Verbatim body without one trailing `;`; `None` when the list entry had no attrs (and
    /// `ds_attrs_none` is off).
    pub body: Option<Box<[u8]>>,
    /// `duid`: destination unique id (call-load algorithm 10, `set_duid_state`).
    pub duid: Option<Box<[u8]>>,
    /// `maxload`: maximum active calls for algorithm 10 (0 = unlimited).
    pub maxload: u32,
    /// `weight`: algorithm 9 share (1..=100) or 0; also the congestion tolerance with `cc`.
    pub weight: u32,
    /// `rweight`: algorithm 11 relative weight (1..=100) or 0.
    pub rweight: u32,
    /// `cc`: congestion control enabled (non-zero).
    pub cc: i32,
    /// `latency`: seeds the latency statistics (§6.6).
    pub latency: Option<i32>,
    /// `socket`: `proto:host:port` send socket.
    pub socket: Option<Box<[u8]>>,
    /// `sockname`: named send socket (takes precedence over `socket`).
    pub sockname: Option<Box<[u8]>>,
    /// `ping_from`: From URI of keepalives.
    pub ping_from: Option<Box<[u8]>>,
    /// `obproxy`: outbound proxy of keepalives.
    pub obproxy: Option<Box<[u8]>>,
}

/// A recoverable oddity met while parsing attributes (the destination is kept).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttrWarning {
    /// `weight` or `rweight` outside 1..=100, stored as 0.
    #[error("{name} must be within 1..=100, got {value}; using 0")]
    WeightRange {
        /// Attribute name.
        name: &'static str,
        /// Value given.
        value: i64,
    },
}

fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// Signed decimal conversion like Kamailio's `str2sint`; anything non-numeric gives 0.
pub(crate) fn sint(v: &[u8]) -> i64 {
    let (neg, digits) = match v {
        [b'-', d @ ..] => (true, d),
        [b'+', d @ ..] => (false, d),
        d => (false, d),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return 0;
    }
    let n = digits.iter().fold(0i64, |a, &c| {
        a.saturating_mul(10).saturating_add(i64::from(c - b'0'))
    });
    if neg { -n } else { n }
}

impl Attrs {
    /// Parses an attrs token. `attrs_none` is module parameter `ds_attrs_none`: an empty token
    /// then stores the body `none=yes`. Warnings are appended to `warnings`.
    pub fn parse(token: &[u8], attrs_none: bool, warnings: &mut Vec<AttrWarning>) -> Attrs {
        let mut a = Attrs::default();
        let mut body = token;
        if body.is_empty() {
            if !attrs_none {
                return a;
            }
            body = b"none=yes";
        }
        if let [rest @ .., b';'] = body {
            body = rest;
        }
        a.body = Some(body.into());
        let mut seen = 0u16;
        for param in body.split(|&c| c == b';') {
            let (name, value) = match param.iter().position(|&c| c == b'=') {
                Some(p) => (trim(&param[..p]), unquote(trim(&param[p + 1..]))),
                None => (trim(param), &b""[..]),
            };
            let known: &[&[u8]] = &[
                b"duid",
                b"maxload",
                b"weight",
                b"rweight",
                b"cc",
                b"latency",
                b"socket",
                b"sockname",
                b"ping_from",
                b"obproxy",
            ];
            let Some(k) = known.iter().position(|n| n.eq_ignore_ascii_case(name)) else {
                continue;
            };
            if seen & (1 << k) != 0 {
                continue; // first occurrence wins
            }
            seen |= 1 << k;
            let s = || Some(Box::<[u8]>::from(value));
            match k {
                0 => a.duid = s(),
                1 => a.maxload = sint(value).clamp(0, i64::from(u32::MAX)) as u32,
                2 | 3 => {
                    let v = sint(value);
                    let w = if (1..=100).contains(&v) {
                        v as u32
                    } else {
                        warnings.push(AttrWarning::WeightRange {
                            name: if k == 2 { "weight" } else { "rweight" },
                            value: v,
                        });
                        0
                    };
                    if k == 2 {
                        a.weight = w;
                    } else {
                        a.rweight = w;
                    }
                }
                4 => a.cc = sint(value).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
                5 => {
                    a.latency =
                        Some(sint(value).clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32)
                }
                6 => a.socket = s(),
                7 => a.sockname = s(),
                8 => a.ping_from = s(),
                _ => a.obproxy = s(),
            }
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> (Attrs, Vec<AttrWarning>) {
        let mut w = Vec::new();
        (Attrs::parse(s.as_bytes(), false, &mut w), w)
    }

    #[test]
    fn first_occurrence_wins() {
        let (a, _) = p("weight=10;weight=20;duid=first;DUID=second");
        assert_eq!(a.weight, 10);
        assert_eq!(a.duid.as_deref(), Some(&b"first"[..]));
    }

    #[test]
    fn table() {
        let (a, w) = p(
            "duid=gw1;maxload=abc;weight=0;rweight=101;cc=1;latency=25;socket=udp:1.2.3.4:5060;x=y;",
        );
        assert_eq!(a.body.as_deref(), Some(&b"duid=gw1;maxload=abc;weight=0;rweight=101;cc=1;latency=25;socket=udp:1.2.3.4:5060;x=y"[..]));
        assert_eq!(a.maxload, 0);
        assert_eq!((a.weight, a.rweight, a.cc, a.latency), (0, 0, 1, Some(25)));
        assert_eq!(a.socket.as_deref(), Some(&b"udp:1.2.3.4:5060"[..]));
        assert_eq!(w.len(), 2);
        let (a, w) = p("Weight=100;RWEIGHT=1;ping_from=sip:me@x;obproxy=sip:p;sockname=s1");
        assert!(w.is_empty());
        assert_eq!((a.weight, a.rweight), (100, 1));
        assert_eq!(a.ping_from.as_deref(), Some(&b"sip:me@x"[..]));
        assert_eq!(a.obproxy.as_deref(), Some(&b"sip:p"[..]));
        assert_eq!(a.sockname.as_deref(), Some(&b"s1"[..]));
    }

    #[test]
    fn empty_and_attrs_none() {
        assert_eq!(p("").0, Attrs::default());
        let mut w = Vec::new();
        let a = Attrs::parse(b"", true, &mut w);
        assert_eq!(a.body.as_deref(), Some(&b"none=yes"[..]));
        // only one trailing ';' is removed
        assert_eq!(p("a=1;;").0.body.as_deref(), Some(&b"a=1;"[..]));
    }

    #[test]
    fn sint_rules() {
        for (s, v) in [
            ("12", 12),
            ("-5", -5),
            ("+7", 7),
            ("abc", 0),
            ("1x", 0),
            ("", 0),
        ] {
            assert_eq!(sint(s.as_bytes()), v, "{s}");
        }
    }
}
