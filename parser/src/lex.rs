//! Character classes and whitespace rules of RFC 3261 §25.1.
//!
//! Header values may contain obsolete line folding (`CRLF 1*WSP`), so every value parser in
//! this crate skips "linear white space" with [`skip_lws`], which treats a CR or LF inside a
//! value as white space (inside a header value a line break is always followed by WSP, or the
//! scanner would have ended the header there).

/// Bit 0: `token` character (RFC 3261 §25.1).
const TOKEN: u8 = 1;
/// Bit 1: white space inside a value (SP, HTAB, and CR/LF of a folded line).
const LWS: u8 = 2;
/// Bit 2: characters that may appear in a host name or IPv4 address.
const HOST: u8 = 4;
/// Bit 3: characters allowed in a URI outside the host part (user, password, params,
/// headers, opaque parts): printable ASCII except `SP < > "`, and bytes >= 0x80 (UTF-8 user
/// parts are common in the field even though RFC 3261 wants them escaped; Kamailio accepts
/// them, and a load balancer must route what its peers route).
const URIC: u8 = 8;
/// Bit 4: characters of an unquoted `generic-param` value: token, host, or `[ ] :` (IPv6).
const PARAM: u8 = 16;

const fn build() -> [u8; 256] {
    let mut t = [0u8; 256];
    let mut c = 0usize;
    while c < 256 {
        let b = c as u8;
        let mut v = 0u8;
        if b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            )
        {
            v |= TOKEN;
        }
        if matches!(b, b' ' | b'\t' | b'\r' | b'\n') {
            v |= LWS;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
            v |= HOST;
        }
        if b > 0x20 && b != 0x7f && !matches!(b, b'<' | b'>' | b'"') {
            v |= URIC;
        }
        if v & (TOKEN | HOST) != 0 || matches!(b, b'[' | b']' | b':') {
            v |= PARAM;
        }
        t[c] = v;
        c += 1;
    }
    t
}

static CLASS: [u8; 256] = build();

/// Whether `b` is a `token` character.
#[inline]
pub(crate) fn is_token(b: u8) -> bool {
    CLASS[b as usize] & TOKEN != 0
}

/// Whether `b` is white space inside a header value (SP, HTAB, CR, LF).
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    CLASS[b as usize] & LWS != 0
}

/// Whether `b` may appear in a host name or IPv4 address.
#[inline]
pub(crate) fn is_host(b: u8) -> bool {
    CLASS[b as usize] & HOST != 0
}

/// Whether `b` may appear (unescaped) in a URI outside its host.
#[inline]
pub(crate) fn is_uric(b: u8) -> bool {
    CLASS[b as usize] & URIC != 0
}

/// Whether `b` may appear in an unquoted parameter value (token, host or IPv6 characters).
#[inline]
pub(crate) fn is_param_char(b: u8) -> bool {
    CLASS[b as usize] & PARAM != 0
}

/// Position of the first byte of `s` that is one of `needles`, eight bytes at a time: for each
/// needle the classic "has a zero byte" test on `word ^ needle…`, whose lowest flag is exact
/// (borrows only create false flags above a real match), so the lowest flag over all needles
/// is the answer. For the short searches of value parsers, where `memchr`'s dispatch costs
/// more than the search.
#[inline(always)]
pub(crate) fn find_any<const N: usize>(s: &[u8], needles: [u8; N]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let mut found = 0;
        for n in needles {
            let v = w ^ (LO * u64::from(n));
            found |= v.wrapping_sub(LO) & !v & HI;
        }
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|b| needles.contains(b))
        .map(|p| at + p)
}

/// Position of the first LF in `s`.
///
/// SIP lines are short (20–80 bytes), where a SIMD search's set-up costs more than the search
/// itself: eight bytes at a time ([`find_any`] with one needle). The scanner's header loop uses
/// the bitmaps of [`crate::lines`] instead; this serves the start line.
#[inline]
pub(crate) fn find_lf(s: &[u8]) -> Option<usize> {
    find_any(s, [b'\n'])
}

/// Whether the whole slice is a non-empty token.
#[inline]
pub(crate) fn is_token_str(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token(b))
}

/// Skips leading linear white space (including folded line breaks).
#[inline]
pub(crate) fn skip_lws(s: &[u8]) -> &[u8] {
    let n = s.iter().position(|&b| !is_lws(b)).unwrap_or(s.len());
    &s[n..]
}

/// Trims linear white space on both sides.
#[inline]
pub(crate) fn trim_lws(s: &[u8]) -> &[u8] {
    let s = skip_lws(s);
    let n = s.iter().rev().take_while(|&&b| is_lws(b)).count();
    &s[..s.len() - n]
}

/// Splits a leading token off `s`; returns `(token, rest)` (the token may be empty).
#[inline]
pub(crate) fn take_token(s: &[u8]) -> (&[u8], &[u8]) {
    let n = s.iter().position(|&b| !is_token(b)).unwrap_or(s.len());
    s.split_at(n)
}

/// Parses a decimal number of at most `max` (no sign, no white space, at least one digit).
#[inline]
pub(crate) fn parse_u32(s: &[u8], max: u64) -> Option<u32> {
    if s.is_empty() || s.len() > 10 {
        // More than 10 digits cannot fit u32, and leading zeros that long are not sensible.
        if s.len() > 10 && s.iter().all(u8::is_ascii_digit) {
            let significant = s.iter().skip_while(|&&b| b == b'0').count();
            if significant <= 10 {
                return parse_u32(&s[s.len() - significant.max(1)..], max);
            }
        }
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    (v <= max).then_some(v as u32)
}

/// ASCII case-insensitive equality.
#[inline]
pub(crate) fn eq_ic(a: &[u8], b: &[u8]) -> bool {
    a.eq_ignore_ascii_case(b)
}

/// Splits a quoted-string off the front of `s` (which must start with `"`): returns the whole
/// quoted string including quotes and the rest, or `None` when the closing quote is missing.
/// Backslash escapes a following byte (RFC 3261 `quoted-pair`).
pub(crate) fn take_quoted(s: &[u8]) -> Option<(&[u8], &[u8])> {
    debug_assert_eq!(s.first(), Some(&b'"'));
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return Some(s.split_at(i + 1)),
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(is_token(b'a') && is_token(b'~') && is_token(b'%'));
        assert!(!is_token(b':') && !is_token(b' ') && !is_token(b'@') && !is_token(0x80));
        assert!(is_lws(b'\r') && is_lws(b'\t') && !is_lws(b'a'));
        for b in 0..=255u8 {
            assert_eq!(
                is_param_char(b),
                is_token(b) || is_host(b) || matches!(b, b'[' | b']' | b':'),
                "{b}"
            );
        }
        assert!(
            is_uric(b'@') && is_uric(b';') && is_uric(0xc3) && !is_uric(b' ') && !is_uric(b'<')
        );
    }

    #[test]
    fn line_feed_search() {
        let mut buf = [b'a'; 40];
        assert_eq!(find_lf(&buf), None);
        assert_eq!(find_lf(b""), None);
        for i in 0..40 {
            buf = [b'a'; 40];
            buf[i] = b'\n';
            assert_eq!(find_lf(&buf), Some(i));
            // A later LF and bytes that differ from LF by one bit never win over the first.
            if i + 3 < 40 {
                buf[i + 3] = b'\n';
            }
            if i > 0 {
                buf[i - 1] = b'\x0b';
            }
            assert_eq!(find_lf(&buf), Some(i));
            for j in 0..i {
                assert_eq!(find_lf(&buf[j..]), Some(i - j));
            }
        }
        let all: Vec<u8> = (0..=255u8).filter(|&b| b != b'\n').collect();
        assert_eq!(find_lf(&all), None);
    }

    #[test]
    fn any_of_several_bytes() {
        let hay = b"branch=z9hG4bK-1;rport;received=192.0.2.1,SIP/2.0/UDP \"<x>\"";
        for start in 0..hay.len() {
            let s = &hay[start..];
            let want = s.iter().position(|b| b",\"<".contains(b));
            assert_eq!(find_any(s, [b',', b'"', b'<']), want, "from {start}");
            assert_eq!(find_any(s, [b'>']), s.iter().position(|&b| b == b'>'));
        }
        assert_eq!(find_any(b"", [b',']), None);
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_u32(b"0", 255), Some(0));
        assert_eq!(parse_u32(b"70", 255), Some(70));
        assert_eq!(parse_u32(b"256", 255), None);
        assert_eq!(
            parse_u32(b"4294967295", u64::from(u32::MAX)),
            Some(u32::MAX)
        );
        assert_eq!(parse_u32(b"4294967296", u64::from(u32::MAX)), None);
        assert_eq!(parse_u32(b"000000000000070", 255), Some(70));
        assert_eq!(
            parse_u32(b"36893488147419103232", u64::from(u32::MAX)),
            None
        );
        assert_eq!(parse_u32(b"", 9), None);
        assert_eq!(parse_u32(b"-1", 9), None);
        assert_eq!(parse_u32(b"1 ", 9), None);
    }

    #[test]
    fn whitespace_and_quotes() {
        assert_eq!(trim_lws(b" \r\n\tab c \t"), b"ab c");
        assert_eq!(trim_lws(b"   "), b"");
        assert_eq!(
            take_quoted(b"\"a\\\"b\" rest"),
            Some((&b"\"a\\\"b\""[..], &b" rest"[..]))
        );
        assert_eq!(take_quoted(b"\"open"), None);
        assert_eq!(take_quoted(b"\"ends in escape\\\""), None);
    }
}
