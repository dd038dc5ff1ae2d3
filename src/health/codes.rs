//! `ds_ping_reply_codes` (reference §6.4): which non-2xx keepalive replies count as success.

/// Parsed `ds_ping_reply_codes`: exact codes and whole classes accepted *in addition to* 2xx.
///
/// Guarantees: parses like Kamailio 5.6.3 — `;`-separated `code=NNN` (100 ≤ NNN < 700) and
/// `class=N` (1 ≤ N ≤ 6), names case-insensitive, out-of-range or unknown entries ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplyCodes {
    codes: Vec<u16>,
    classes: Vec<u16>,
}

impl ReplyCodes {
    /// Parses the parameter value (never fails: bad entries are skipped, as Kamailio does).
    pub fn parse(s: &str) -> ReplyCodes {
        let mut r = ReplyCodes::default();
        for part in s.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                continue;
            };
            let Ok(n) = v.trim().parse::<u16>() else {
                continue;
            };
            match k.trim().to_ascii_lowercase().as_str() {
                "code" if (100..700).contains(&n) => r.codes.push(n),
                "class" if (1..=6).contains(&n) => r.classes.push(n),
                _ => {}
            }
        }
        r
    }

    /// True when a final reply with `code` means the destination is alive: 2xx, or listed.
    pub fn success(&self, code: u16) -> bool {
        (200..300).contains(&code)
            || self.codes.contains(&code)
            || self.classes.contains(&(code / 100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_codes() {
        let table: &[(&str, u16, bool)] = &[
            ("", 200, true),
            ("", 299, true),
            ("", 403, false),
            ("", 408, false),
            ("code=403", 403, true),
            ("code=403", 404, false),
            ("class=4", 404, true),
            ("class=4", 408, true), // a local timeout then looks alive, as in Kamailio
            ("CLASS=5;Code=403", 503, true),
            ("class=5;code=403", 403, true),
            ("class=5;code=403", 603, false),
            ("class=7;code=99;code=700;x=1;code", 699, false),
            ("code=699", 699, true),
            ("class=1", 180, true),
        ];
        for &(spec, code, ok) in table {
            assert_eq!(ReplyCodes::parse(spec).success(code), ok, "{spec} {code}");
        }
    }
}
