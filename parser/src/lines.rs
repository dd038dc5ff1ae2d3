//! Bitmaps of line ends and colons: the input of the scanner's header loop.
//!
//! Every header line needs two positions, its LF and its first `:`. Searching for them line by
//! line makes each line's search wait for the previous one's answer (the next line starts after
//! this LF), a chain of dependent steps that dominates a short message's scan. Instead the
//! buffer is read 64 bytes at a time into two bitmaps, one bit per byte, and the scanner walks
//! the set bits: each LF comes out of a `trailing_zeros` and a clear-lowest-bit, independently
//! of the work done on the line before (the simdjson approach, at the scale of a SIP header).
//!
//! On x86_64 the bitmaps are built with SSE2 (part of the x86_64 baseline) through
//! `safe_arch`'s safe wrappers of the compare and move-mask instructions, so this crate stays
//! free of `unsafe`. Elsewhere a portable version computes the same bits eight bytes at a time
//! (exact zero-byte detection, then a multiply that gathers one bit per byte); a unit test
//! checks both against a byte-by-byte reference. The portable version costs about three
//! instructions a byte, more than a line-by-line search would; a NEON version for aarch64
//! (`vceqq_u8` and a narrowing shift instead of the move-mask) is the obvious next step there.

/// Width of one window, in bytes (one bit per byte in a `u64`).
pub(crate) const WINDOW: usize = 64;

/// The LF and `:` bitmaps of `buf[base..base + 64]`: bit `i` is set when byte `base + i` is
/// that character. Bytes past the end of `buf` read as zero (neither LF nor `:`), so no bit
/// ever points outside `buf`.
#[inline]
pub(crate) fn window(buf: &[u8], base: usize) -> (u64, u64) {
    match buf.get(base..base + WINDOW) {
        Some(block) => masks(block.try_into().unwrap_or(&[0; WINDOW])),
        None => {
            let mut block = [0u8; WINDOW];
            let tail = buf.get(base..).unwrap_or(&[]);
            block[..tail.len()].copy_from_slice(tail);
            masks(&block)
        }
    }
}

/// Bitmaps of LF and `:` over 64 bytes, 16 at a time with SSE2.
#[cfg(target_arch = "x86_64")]
#[inline]
fn masks(block: &[u8; WINDOW]) -> (u64, u64) {
    use safe_arch::{
        cmp_eq_mask_i8_m128i, load_unaligned_m128i, move_mask_i8_m128i, set_splat_i8_m128i,
    };
    let lf = set_splat_i8_m128i(b'\n' as i8);
    let colon = set_splat_i8_m128i(b':' as i8);
    let mut lf_bits = 0u64;
    let mut colon_bits = 0u64;
    for (i, chunk) in block.chunks_exact(16).enumerate() {
        let v = load_unaligned_m128i(chunk.try_into().unwrap_or(&[0; 16]));
        // `as u16` keeps the 16 mask bits (the instruction returns them in an i32).
        let l = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, lf)) as u16;
        let c = move_mask_i8_m128i(cmp_eq_mask_i8_m128i(v, colon)) as u16;
        lf_bits |= u64::from(l) << (16 * i);
        colon_bits |= u64::from(c) << (16 * i);
    }
    (lf_bits, colon_bits)
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn masks(block: &[u8; WINDOW]) -> (u64, u64) {
    masks_portable(block)
}

/// [`masks`] without vector instructions, eight bytes at a time.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline]
fn masks_portable(block: &[u8; WINDOW]) -> (u64, u64) {
    const LO: u64 = 0x0101_0101_0101_0101;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    /// One bit per byte of `w` that equals the byte of `pattern` (a byte repeated 8 times).
    fn eq_bits(w: u64, pattern: u64) -> u64 {
        let t = w ^ pattern;
        // High bit of each byte set exactly when that byte of `t` is zero (no borrows between
        // bytes, unlike the cheaper "has a zero byte" test).
        let zero = !(((t & LOW7) + LOW7) | t | LOW7);
        // Gather the eight high bits into one byte: bit i comes from byte i.
        (zero >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56
    }
    let mut lf_bits = 0u64;
    let mut colon_bits = 0u64;
    for (i, chunk) in block.chunks_exact(8).enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        lf_bits |= eq_bits(w, LO * u64::from(b'\n')) << (8 * i);
        colon_bits |= eq_bits(w, LO * u64::from(b':')) << (8 * i);
    }
    (lf_bits, colon_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(buf: &[u8], base: usize) -> (u64, u64) {
        let mut bits = (0, 0);
        for i in 0..WINDOW {
            match buf.get(base + i) {
                Some(b'\n') => bits.0 |= 1 << i,
                Some(b':') => bits.1 |= 1 << i,
                _ => {}
            }
        }
        bits
    }

    #[test]
    fn bitmaps_match_the_reference() {
        // A small xorshift generator: deterministic, no dependency.
        let mut s = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        for _ in 0..3000 {
            let len = (rnd() % 200) as usize;
            // Bytes next to LF and `:` in value (and with the high bit set) are the ones a
            // sloppy bit trick confuses with them.
            let buf: Vec<u8> = (0..len)
                .map(|_| match rnd() % 12 {
                    0 => b'\n',
                    1 => b':',
                    2 => b'\n' ^ 1,
                    3 => b':' ^ 0x80,
                    4 => b'\n' | 0x80,
                    5 => 0,
                    6 => 0xff,
                    _ => b'a' + (rnd() % 26) as u8,
                })
                .collect();
            let base = (rnd() % (len as u64 + 2)) as usize;
            let want = reference(&buf, base);
            assert_eq!(window(&buf, base), want, "{buf:?} at {base}");
            let mut block = [0u8; WINDOW];
            let tail = buf.get(base..).unwrap_or(&[]);
            let n = tail.len().min(WINDOW);
            block[..n].copy_from_slice(&tail[..n]);
            assert_eq!(masks_portable(&block), want, "{buf:?} at {base}");
        }
    }
}
