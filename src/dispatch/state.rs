//! Destination state bits and the threshold state machine (reference §5).
//!
//! Everything here is pure: [`update_state`] maps (requested bits, current flags, counter,
//! thresholds) to (new flags, new counter, event) exactly as Kamailio 5.6.3's
//! `ds_update_state`; [`reinit_state`] is the RPC `set_state` path (no thresholds, no counter
//! reset, no events). Events are returned as values; the caller decides what to do with them.
//! The letters parsers implement `ds_mark_dst` (§5.4) and `dispatcher.set_state` (§5.5).
//! Applying a transition to a live destination is done atomically by the snapshot.

/// Destination flags (state bits plus NODNS), Kamailio's `dispatch.h` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub u32);

impl Flags {
    /// Inactive: not selectable.
    pub const INACTIVE: u32 = 1;
    /// Trying: failed recently, still selectable.
    pub const TRYING: u32 = 2;
    /// Disabled by the administrator: not selectable, never probed.
    pub const DISABLED: u32 = 4;
    /// Probing: receives keepalives.
    pub const PROBING: u32 = 8;
    /// No DNS resolution at load; never matches `ds_is_from_list`.
    pub const NODNS: u32 = 16;
    /// All bits a state update clears (`DS_STATES_ALL` = 31 in 5.6.3, NODNS included).
    pub const STATES_ALL: u32 = 31;

    /// True when the destination may be selected: neither INACTIVE nor DISABLED.
    pub const fn usable(self) -> bool {
        self.0 & (Self::INACTIVE | Self::DISABLED) == 0
    }

    /// True if any of `bits` is set.
    pub const fn has(self, bits: u32) -> bool {
        self.0 & bits != 0
    }

    /// The two RPC letters: `I` > `D` > `T` > `A`, then `P` or `X`.
    pub const fn letters(self) -> [u8; 2] {
        let first = if self.has(Self::INACTIVE) {
            b'I'
        } else if self.has(Self::DISABLED) {
            b'D'
        } else if self.has(Self::TRYING) {
            b'T'
        } else {
            b'A'
        };
        [first, if self.has(Self::PROBING) { b'P' } else { b'X' }]
    }
}

/// `dispatcher:dst-down` / `dispatcher:dst-up`, returned by [`update_state`] when usability
/// changes. TRYING alone is not "down".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// usable → unusable
    DstDown,
    /// unusable → usable
    DstUp,
}

/// `ds_probing_threshold` / `ds_inactive_threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Consecutive TRYING results before INACTIVE.
    pub probing: u32,
    /// Consecutive non-TRYING results before an INACTIVE destination takes the new state.
    pub inactive: u32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            probing: 1,
            inactive: 1,
        }
    }
}

/// Result of a state update.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// New flags (non-state bits of the input kept).
    pub flags: Flags,
    /// New threshold counter.
    pub counter: u32,
    /// Event to fire, if usability changed.
    pub event: Option<Event>,
}

/// Kamailio's `ds_update_state` (§5.2) as a pure function.
///
/// Guarantees: step for step equal to 5.6.3, including the clearing of NODNS and the counter
/// shared between both thresholds.
pub fn update_state(requested: u32, current: Flags, counter: u32, th: Thresholds) -> Transition {
    let old = current.0;
    let init = requested;
    let mut s = requested;
    let mut f = old & !Flags::STATES_ALL;
    let mut c = counter;
    if s & Flags::TRYING != 0 && old & Flags::INACTIVE != 0 {
        s = (s & !Flags::TRYING) | Flags::INACTIVE;
    }
    if s & Flags::DISABLED != 0 {
        f |= Flags::DISABLED;
    } else {
        f |= s;
    }
    if s & Flags::TRYING != 0 {
        c = c.saturating_add(1);
        if c >= th.probing {
            f = (f & !Flags::TRYING) | Flags::INACTIVE;
            c = 0;
        }
    } else if init & Flags::TRYING == 0 && old & Flags::INACTIVE != 0 {
        c = c.saturating_add(1);
        if c < th.inactive {
            f |= Flags::INACTIVE;
            if old & Flags::PROBING != 0 {
                f |= Flags::PROBING;
            }
        } else {
            c = 0;
        }
    } else {
        c = 0;
    }
    Transition {
        flags: Flags(f),
        counter: c,
        event: event(Flags(old), Flags(f)),
    }
}

/// The event for a change from `old` to `new`, if any.
pub fn event(old: Flags, new: Flags) -> Option<Event> {
    match (old.usable(), new.usable()) {
        (true, false) => Some(Event::DstDown),
        (false, true) => Some(Event::DstUp),
        _ => None,
    }
}

/// RPC `set_state` path (`ds_reinit_state`, §5.5): clear the state bits, set `state`. No
/// thresholds, no counter change, no event.
pub const fn reinit_state(current: Flags, state: u32) -> Flags {
    Flags((current.0 & !Flags::STATES_ALL) | state)
}

/// Why a state string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateError {
    /// Letter not allowed at this position (index into the argument).
    #[error("state: unexpected {found:?} at {at}, expected one of a, i, t, d, p")]
    MarkLetter {
        /// Byte position.
        at: usize,
        /// Byte found.
        found: char,
    },
    /// RPC state value not one of 0/1/2/3/i/a/d/t (+p).
    #[error("state: expected 0/i, 1/a, 2/d or 3/t (optionally followed by p)")]
    UnknownStateValue,
    /// No destination with that URI in that set.
    #[error("no destination {uri:?} in set {set}")]
    NotFound {
        /// Set id.
        set: u32,
        /// URI asked for.
        uri: String,
    },
    /// `ds_mark_dst` needs module flag 2 (failover).
    #[error("failover support is off (module flags bit 2)")]
    FailoverOff,
    /// Set does not exist.
    #[error("no set {0}")]
    NoSet(u32),
}

/// `ds_mark_dst` letters (§5.4): `a` clears what was accumulated, `i`/`t`/`d`/`p` add bits,
/// case-insensitive, left to right. `None` (no argument) = INACTIVE, plus PROBING when
/// `ds_probing_mode == 1`.
pub fn parse_mark(arg: Option<&[u8]>, probing_mode: u8) -> Result<u32, StateError> {
    let Some(arg) = arg else {
        return Ok(Flags::INACTIVE | if probing_mode == 1 { Flags::PROBING } else { 0 });
    };
    let mut s = 0;
    for (at, &c) in arg.iter().enumerate() {
        match c.to_ascii_lowercase() {
            b'a' => s = 0,
            b'i' => s |= Flags::INACTIVE,
            b't' => s |= Flags::TRYING,
            b'd' => s |= Flags::DISABLED,
            b'p' => s |= Flags::PROBING,
            _ => {
                return Err(StateError::MarkLetter {
                    at,
                    found: c as char,
                });
            }
        }
    }
    Ok(s)
}

/// `dispatcher.set_state` state argument (§5.5): `0`/`i` inactive, `1`/`a` active, `2`/`d`
/// disabled, `3`/`t` trying; for all but disabled a second `p` adds PROBING; the rest is
/// ignored.
pub fn parse_rpc_state(arg: &[u8]) -> Result<u32, StateError> {
    let first = match arg.first().map(u8::to_ascii_lowercase) {
        Some(b'0' | b'i') => Flags::INACTIVE,
        Some(b'1' | b'a') => 0,
        Some(b'2' | b'd') => return Ok(Flags::DISABLED),
        Some(b'3' | b't') => Flags::TRYING,
        _ => return Err(StateError::UnknownStateValue),
    };
    let probing = matches!(arg.get(1), Some(b'p' | b'P'));
    Ok(first | if probing { Flags::PROBING } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    const I: u32 = Flags::INACTIVE;
    const T: u32 = Flags::TRYING;
    const D: u32 = Flags::DISABLED;
    const P: u32 = Flags::PROBING;
    const N: u32 = Flags::NODNS;

    #[test]
    fn letters() {
        for (f, l) in [
            (0, "AX"),
            (3, "IX"),
            (5, "IX"),
            (9, "IP"),
            (I | D | T, "IX"),
            (D | T, "DX"),
            (T | P, "TP"),
            (P, "AP"),
            (N, "AX"),
        ] {
            assert_eq!(&Flags(f).letters(), l.as_bytes(), "{f}");
        }
    }

    /// Every branch of §5.2: (requested, old flags, counter, thresholds) -> (flags, counter, event).
    #[test]
    fn transition_table() {
        let th = |p, i| Thresholds {
            probing: p,
            inactive: i,
        };
        type Row = (u32, u32, u32, Thresholds, u32, u32, Option<Event>);
        let rows: &[Row] = &[
            // step 4: TRYING counts; below threshold stays TRYING
            (T, 0, 0, th(3, 2), T, 1, None),
            (T | P, P, 1, th(3, 2), T | P, 2, None),
            // reaching the probing threshold -> INACTIVE, counter reset, dst-down
            (T | P, T | P, 2, th(3, 2), I | P, 0, Some(Event::DstDown)),
            (T, 0, 0, th(1, 1), I, 0, Some(Event::DstDown)),
            // step 2: TRYING on an INACTIVE destination becomes INACTIVE, counter reset (step 6)
            (T | P, I | P, 0, th(3, 2), I | P, 0, None),
            // step 5: success on INACTIVE below inactive threshold stays INACTIVE (+P kept)
            (P, I | P, 0, th(3, 2), I | P, 1, None),
            (0, I | P, 0, th(3, 2), I | P, 1, None),
            (0, I, 0, th(3, 2), I, 1, None),
            // reaching it: requested state stands, dst-up
            (P, I | P, 1, th(3, 2), P, 0, Some(Event::DstUp)),
            (0, I, 0, th(1, 1), 0, 0, Some(Event::DstUp)),
            // requesting INACTIVE on an INACTIVE destination also counts
            (I, I, 0, th(3, 3), I, 1, None),
            (I, I, 2, th(3, 3), I, 0, None),
            // step 3: DISABLED wins over everything requested
            (D | T | P, 0, 0, th(3, 2), D, 1, Some(Event::DstDown)),
            // ... but a DISABLED request on an INACTIVE destination still runs step 5
            (D | I, I | P, 0, th(3, 2), D | I | P, 1, None),
            // step 6: anything else resets the counter
            (P, T | P, 2, th(3, 2), P, 0, None),
            (I, 0, 1, th(3, 2), I, 0, Some(Event::DstDown)),
            // NODNS is cleared by any update (DS_STATES_ALL = 31); other bits kept
            (0, N | 64, 0, th(1, 1), 64, 0, None),
        ];
        for (n, &(req, old, c, t, f, c2, ev)) in rows.iter().enumerate() {
            let r = update_state(req, Flags(old), c, t);
            assert_eq!(
                (r.flags.0, r.counter, r.event),
                (f, c2, ev),
                "row {n}: req {req} old {old} c {c}"
            );
        }
    }

    #[test]
    fn observed_3_2_timeline() {
        // §5.2 [V]: probing mode 1, 503 x3, 200 x2, timeouts x3.
        let th = Thresholds {
            probing: 3,
            inactive: 2,
        };
        let (mut f, mut c) = (Flags(P), 0);
        let mut seen = Vec::new();
        for req in [T | P, T | P, T | P, P, P, T | P, T | P, T | P] {
            let r = update_state(req, f, c, th);
            (f, c) = (r.flags, r.counter);
            seen.push(String::from_utf8(f.letters().to_vec()).unwrap());
        }
        assert_eq!(seen, ["TP", "TP", "IP", "IP", "AP", "TP", "TP", "IP"]);
    }

    #[test]
    fn mark_letters() {
        assert_eq!(parse_mark(None, 0), Ok(I));
        assert_eq!(parse_mark(None, 1), Ok(I | P));
        assert_eq!(parse_mark(Some(b"ip"), 0), Ok(I | P));
        assert_eq!(parse_mark(Some(b"TPaI"), 0), Ok(I));
        assert_eq!(parse_mark(Some(b"d"), 0), Ok(D));
        assert_eq!(
            parse_mark(Some(b"ix"), 0),
            Err(StateError::MarkLetter { at: 1, found: 'x' })
        );
        // `t` with probing threshold 2: TX then IX [V]
        let th = Thresholds {
            probing: 2,
            inactive: 1,
        };
        let t = parse_mark(Some(b"t"), 0).unwrap();
        let r1 = update_state(t, Flags(0), 0, th);
        let r2 = update_state(t, r1.flags, r1.counter, th);
        assert_eq!((&r1.flags.letters(), &r2.flags.letters()), (b"TX", b"IX"));
    }

    #[test]
    fn rpc_state() {
        for (s, v) in [
            ("0", I),
            ("i", I),
            ("Ip", I | P),
            ("1", 0),
            ("aP", P),
            ("A", 0),
            ("2", D),
            ("dp", D),
            ("3", T),
            ("tp", T | P),
            ("ixyz", I),
        ] {
            assert_eq!(parse_rpc_state(s.as_bytes()), Ok(v), "{s}");
        }
        assert_eq!(parse_rpc_state(b"x"), Err(StateError::UnknownStateValue));
        assert_eq!(parse_rpc_state(b""), Err(StateError::UnknownStateValue));
        // set_state: no thresholds, counter untouched, NODNS cleared
        assert_eq!(reinit_state(Flags(I | P | N | 64), T), Flags(T | 64));
    }
}
