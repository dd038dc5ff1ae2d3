//! Transactions (RFC 3261 §17) and the stateful proxy around them (§16), sans-IO.
//!
//! * [`client`] / [`server`]: the client and server transaction state machines with their
//!   timers (A, B, D, E, F, K; G, H, I, J, L), driven by responses, requests and `now`.
//! * [`call`]: one stateful request — server transaction, branches, serial failover or
//!   parallel forking, the §16.7 best response — turning each input into [`call::Action`]s.
//! * [`table`]: where calls live: a fixed number of slots sized at start, sharded so that
//!   any worker finds a call by its branch (responses) or by the caller's Via (retransmissions,
//!   CANCEL, ACK), and a timer queue per shard.
//!
//! The timer values keep Kamailio tm's names and defaults ([`Timers`]).

pub mod call;
pub mod client;
pub mod server;
pub mod table;
pub mod wheel;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use call::{Action, Call, Fork};
pub use table::{Slot, TxnTable};

/// Transaction timer values (Kamailio tm's names; RFC 3261 §17 and Table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// `retr_timer1`: T1, the first retransmission interval (RFC 3261 default 500 ms).
    pub t1: Duration,
    /// `retr_timer2`: T2, the retransmission cap (4 s).
    pub t2: Duration,
    /// T4, how long a message can stay in the network (5 s): Timer I.
    pub t4: Duration,
    /// `fr_timer`: how long a branch waits for its first response (Timer B / F). tm default
    /// 30 s.
    pub fr_timer: Duration,
    /// `fr_inv_timer`: how long an INVITE branch waits for its final response after a
    /// provisional (restarted on each provisional). tm default 120 s.
    pub fr_inv_timer: Duration,
    /// `wt_timer`: how long a completed transaction absorbs retransmissions (Timers D, J, K).
    /// tm default 5 s.
    pub wt_timer: Duration,
}

impl Default for Timers {
    fn default() -> Timers {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            fr_timer: Duration::from_secs(30),
            fr_inv_timer: Duration::from_secs(120),
            wt_timer: Duration::from_secs(5),
        }
    }
}

/// A set of status codes in the syntax of tm's `t_check_status` as Kamailio scripts use it
/// for failover: alternatives of three-character patterns separated by `|`, each character a
/// digit, `.` (any digit) or a class like `[0-9]` / `[0-35]` (e.g. `"408|5[0-9][0-9]"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Codes {
    /// Per alternative, the digits allowed at each of the three positions (bit d = digit d).
    alts: Vec<[u16; 3]>,
}

/// Why a `failover_codes` pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failover codes {pattern:?}: {why} (expected e.g. \"408|5[0-9][0-9]\")")]
pub struct CodesError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong.
    pub why: &'static str,
}

impl Codes {
    /// Parses a pattern.
    pub fn parse(pattern: &str) -> Result<Codes, CodesError> {
        let err = |why| CodesError {
            pattern: pattern.to_owned(),
            why,
        };
        let mut alts = Vec::new();
        for alt in pattern.split('|') {
            let mut pos = [0u16; 3];
            let mut n = 0;
            let mut chars = alt.trim().bytes();
            while let Some(c) = chars.next() {
                if n == 3 {
                    return Err(err("an alternative longer than three characters"));
                }
                pos[n] = match c {
                    b'0'..=b'9' => 1 << (c - b'0'),
                    b'.' => 0x3ff,
                    b'[' => class(&mut chars).ok_or_else(|| err("a malformed [class]"))?,
                    _ => return Err(err("a character other than a digit, '.' or [class]")),
                };
                n += 1;
            }
            if n != 3 {
                return Err(err("an alternative shorter than three characters"));
            }
            alts.push(pos);
        }
        Ok(Codes { alts })
    }

    /// Whether `code` matches.
    pub fn matches(&self, code: u16) -> bool {
        let d = [code / 100 % 10, code / 10 % 10, code % 10];
        (100..700).contains(&code)
            && self
                .alts
                .iter()
                .any(|a| (0..3).all(|i| a[i] & (1 << d[i]) != 0))
    }
}

impl Default for Codes {
    /// `408|5[0-9][0-9]`, the seed's failure-route test.
    fn default() -> Codes {
        Codes::parse("408|5[0-9][0-9]").expect("static pattern")
    }
}

/// A `[...]` class after its `[`: digits and `a-b` ranges.
fn class(chars: &mut impl Iterator<Item = u8>) -> Option<u16> {
    let mut bits = 0u16;
    let mut prev: Option<u8> = None;
    let mut range = false;
    for c in chars.by_ref() {
        match c {
            b']' => return (bits != 0 && !range).then_some(bits),
            b'-' if prev.is_some() => range = true,
            b'0'..=b'9' => {
                let d = c - b'0';
                if range {
                    let lo = prev?;
                    if lo > d {
                        return None;
                    }
                    for x in lo..=d {
                        bits |= 1 << x;
                    }
                    range = false;
                } else {
                    bits |= 1 << d;
                }
                prev = Some(d);
            }
            _ => return None,
        }
    }
    None
}
