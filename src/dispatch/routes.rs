//! `ds_select_routes(rules, mode[, limit])` (reference §4.15).
//!
//! Rules are `set=alg;set=alg;…` with decimal digits only; they are parsed once (at
//! configuration time) into [`Rule`]s. At run time every rule runs a selection; the first
//! successful one decides the destination, later ones only append to the failover list, all
//! sharing one `limit` and one count. A failing rule does not stop the others.

use super::select::{Algorithm, Key, Mode, Request, SelectError};
use super::snapshot::Snapshot;
use super::{Pick, SetId};
use std::time::Instant;

/// One `set=alg` rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Set id.
    pub set: SetId,
    /// Algorithm.
    pub alg: Algorithm,
}

/// A rules string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rules {rules:?}: at byte {at}: expected {expected}")]
pub struct RulesError {
    /// The rules string.
    pub rules: String,
    /// Byte offset of the problem.
    pub at: usize,
    /// What was expected there.
    pub expected: &'static str,
}

/// Parses `"1=4;2=0"`. A single trailing `;` is accepted; anything but digits, `=` and `;`
/// is an error.
pub fn parse_rules(rules: &str) -> Result<Vec<Rule>, RulesError> {
    let b = rules.as_bytes();
    let err = |at, expected| RulesError {
        rules: rules.to_owned(),
        at,
        expected,
    };
    let num = |i: &mut usize, what| -> Result<u32, RulesError> {
        let s = *i;
        let mut v: u32 = 0;
        while *i < b.len() && b[*i].is_ascii_digit() {
            v = v
                .checked_mul(10)
                .and_then(|v| v.checked_add(u32::from(b[*i] - b'0')))
                .filter(|&v| v <= i32::MAX as u32)
                .ok_or_else(|| err(s, "a number below 2^31"))?;
            *i += 1;
        }
        if *i == s {
            return Err(err(s, what));
        }
        Ok(v)
    };
    let mut out = Vec::new();
    let mut i = 0;
    if b.is_empty() {
        return Err(err(0, "a set id"));
    }
    while i < b.len() {
        let set = num(&mut i, "a set id (digits)")?;
        if b.get(i) != Some(&b'=') {
            return Err(err(i, "'=' after the set id"));
        }
        i += 1;
        let alg = num(&mut i, "an algorithm number (digits)")?;
        out.push(Rule {
            set: SetId(set),
            alg: Algorithm::from_code(alg as i32),
        });
        match b.get(i) {
            None => break,
            Some(b';') => i += 1,
            Some(_) => return Err(err(i, "';' between rules")),
        }
    }
    Ok(out)
}

/// Parses the `mode` argument: `0`/`d` dst URI, `1`/`r` R-URI, `2`/`x` list only (first
/// character, case-insensitive).
pub fn parse_mode(mode: &str, ruri_has_user: bool) -> Option<Mode> {
    match mode.as_bytes().first()?.to_ascii_lowercase() {
        b'0' | b'd' => Some(Mode::DstUri),
        b'1' | b'r' => Some(Mode::Domain { ruri_has_user }),
        b'2' | b'x' => Some(Mode::XavpOnly),
        _ => None,
    }
}

/// The result of [`Snapshot::select_routes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoutesSelected {
    /// Destination from the first successful rule.
    pub pick: Pick,
    /// Entries written to the buffer by all rules together.
    pub list_len: usize,
}

impl Snapshot {
    /// Runs every rule; `key` supplies the key bytes for each algorithm. Returns the first
    /// success, or the last failure when no rule succeeded.
    pub fn select_routes<'k>(
        &self,
        rules: &[Rule],
        mode: Mode,
        limit: u32,
        now: Instant,
        mut key: impl FnMut(Algorithm) -> Key<'k>,
        out: &mut [Pick],
    ) -> Result<RoutesSelected, SelectError> {
        let limit = if limit == 0 { u32::MAX } else { limit } as usize;
        let mut first: Option<Pick> = None;
        let mut last_err = SelectError::NoSets;
        let mut cnt = 0;
        for r in rules {
            // Kamailio always records a rule's selected entry, even past the limit.
            let room = limit.saturating_sub(cnt).max(1);
            let buf_end = out.len().min(cnt + room);
            let req = Request {
                set: r.set,
                alg: r.alg,
                key: key(r.alg),
                limit: 0,
                mode: if first.is_some() {
                    Mode::XavpOnly
                } else {
                    mode
                },
                dst_already_set: false,
                now,
            };
            let (_, tail) = out.split_at_mut(cnt.min(out.len()));
            match self.select(&req, &mut tail[..buf_end.saturating_sub(cnt)]) {
                Ok(s) => {
                    first.get_or_insert(s.pick);
                    cnt += s.list_len;
                }
                Err(e) => last_err = e,
            }
        }
        first
            .map(|pick| RoutesSelected {
                pick,
                list_len: cnt,
            })
            .ok_or(last_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_ok() {
        let r = parse_rules("1=4;2=0").unwrap();
        assert_eq!(
            r,
            vec![
                Rule {
                    set: SetId(1),
                    alg: Algorithm::RoundRobin
                },
                Rule {
                    set: SetId(2),
                    alg: Algorithm::CallId
                }
            ]
        );
        assert_eq!(parse_rules("7=99;").unwrap()[0].alg, Algorithm::Unknown(99));
    }

    #[test]
    fn rules_errors() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "a set id"),
            ("1", 1, "'=' after the set id"),
            ("1=", 2, "an algorithm number (digits)"),
            ("a=1", 0, "a set id (digits)"),
            ("1=4,2=0", 3, "';' between rules"),
            ("1=4;;", 4, "a set id (digits)"),
            ("1 =4", 1, "'=' after the set id"),
            ("1=-4", 2, "an algorithm number (digits)"),
            ("99999999999=1", 0, "a number below 2^31"),
        ];
        for &(s, at, exp) in cases {
            let e = parse_rules(s).unwrap_err();
            assert_eq!((e.at, e.expected), (at, exp), "{s}");
        }
        assert!(
            parse_rules("1=x")
                .unwrap_err()
                .to_string()
                .contains("at byte 2")
        );
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("d", false), Some(Mode::DstUri));
        assert_eq!(
            parse_mode("R", true),
            Some(Mode::Domain {
                ruri_has_user: true
            })
        );
        assert_eq!(parse_mode("2", false), Some(Mode::XavpOnly));
        assert_eq!(parse_mode("q", false), None);
    }
}
