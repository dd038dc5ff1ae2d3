//! Kamailio's dispatcher hash `H(x, y)` (reference §3), bit-exact for x86-64 builds.
//!
//! Algorithms 0, 1, 2, 3, 5 and 7 reduce their key to this value. The arithmetic is 32-bit
//! wrap-around; every byte is a C `char`, which is *signed* on x86-64, so bytes ≥ 0x80 are
//! sign-extended before they are shifted in. Each part (`x`, then `y`) is chunked into 4-byte
//! groups independently, so `H("alice", "atlanta.com")` is not the hash of the concatenation.
//!
//! A part may be made of several slices (algorithms 1–3 hash `host` + `":"` + `port`): the
//! [`PartHasher`] streams them as one chunked part without allocating or copying.
//!
//! Deliberately absent: the case-insensitive `core_case_hash` Kamailio uses for its call-load
//! buckets — sipdisp's call-load table uses its own map (reference §4.11 allows it).

/// Adds one complete 4-byte group or tail value `v` to the running sum, as Kamailio does.
#[inline]
fn mix(h: u32, v: u32) -> u32 {
    h.wrapping_add(v ^ (v >> 3))
}

/// The sign-extended value of one byte (C `char` on x86-64).
#[inline]
fn sx(b: u8) -> u32 {
    b as i8 as i32 as u32
}

#[inline]
fn group(b: [u8; 4]) -> u32 {
    (sx(b[0]) << 24)
        .wrapping_add(sx(b[1]) << 16)
        .wrapping_add(sx(b[2]) << 8)
        .wrapping_add(sx(b[3]))
}

/// Streaming hasher for `H`: feed the slices of part `x`, call [`PartHasher::end_part`], feed
/// the slices of part `y`, end it, then [`PartHasher::finish`].
///
/// Guarantees: the result equals Kamailio 5.6.3's `ds_get_hash` for the same parts, whatever
/// the split of a part into slices; no allocation.
#[derive(Debug, Clone, Default)]
pub struct PartHasher {
    h: u32,
    pending: [u8; 4],
    npending: usize,
}

impl PartHasher {
    /// A hasher with nothing fed yet.
    pub const fn new() -> Self {
        Self {
            h: 0,
            pending: [0; 4],
            npending: 0,
        }
    }

    /// Appends bytes to the current part.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        if self.npending > 0 {
            while self.npending < 4 {
                let Some((&b, rest)) = bytes.split_first() else {
                    return;
                };
                self.pending[self.npending] = b;
                self.npending += 1;
                bytes = rest;
            }
            self.h = mix(self.h, group(self.pending));
            self.npending = 0;
        }
        let mut chunks = bytes.chunks_exact(4);
        for c in &mut chunks {
            self.h = mix(self.h, group([c[0], c[1], c[2], c[3]]));
        }
        let rest = chunks.remainder();
        self.pending[..rest.len()].copy_from_slice(rest);
        self.npending = rest.len();
    }

    /// Ends the current part: its 0–3 trailing bytes are folded in (adding 0 when none remain,
    /// exactly like Kamailio's always-executed tail step).
    pub fn end_part(&mut self) {
        let mut v: u32 = 0;
        for &b in &self.pending[..self.npending] {
            v = (v << 8).wrapping_add(sx(b));
        }
        self.h = mix(self.h, v);
        self.npending = 0;
    }

    /// Applies the final fold and the `0 → 1` rule. Any unfinished part is ended first.
    pub fn finish(mut self) -> u32 {
        if self.npending > 0 {
            self.end_part();
        }
        let h = self.h;
        let h = h
            .wrapping_add(h >> 11)
            .wrapping_add((h >> 13).wrapping_add(h >> 23));
        if h == 0 { 1 } else { h }
    }
}

/// `H(x, y)` for single-slice parts. An absent part adds nothing, exactly like an empty one.
///
/// Guarantees: bit-exact with Kamailio 5.6.3 on x86-64 (see the §3 vectors in the tests);
/// never returns 0.
pub fn ds_hash(x: Option<&[u8]>, y: Option<&[u8]>) -> u32 {
    let mut h = PartHasher::new();
    for part in [x, y].into_iter().flatten() {
        h.feed(part);
        h.end_part();
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference §3 table, every row checked against the real 5.6.3 `dispatcher.hash`.
    const VECTORS: &[(&str, Option<&str>, u32)] = &[
        ("a", None, 109),
        ("abcd", None, 1834959896),
        ("abcde", None, 1834960001),
        ("alice", None, 1834153949),
        ("atlanta.com", None, 3517288411),
        ("alice", Some("atlanta.com"), 1053853112),
        ("Alice", Some("atlanta.com"), 449504624),
        ("bob", Some("biloxi.com:5070"), 1220057865),
        ("a84b4c76e66710@pc33.atlanta.com", None, 2175018094),
        ("abc@example.com", None, 1443100579),
        ("alice", Some("example.com"), 1442294598),
        ("<null>", None, 1005418900),
        ("café", None, 1327080584),
    ];

    #[test]
    fn reference_vectors() {
        for &(x, y, want) in VECTORS {
            let got = ds_hash(Some(x.as_bytes()), y.map(str::as_bytes));
            assert_eq!(got, want, "H({x:?}, {y:?})");
        }
    }

    #[test]
    fn reference_slots_mod_10() {
        let slots = [9, 6, 1, 9, 1, 2, 4, 5, 4];
        for (&(x, y, _), want) in VECTORS.iter().zip(slots) {
            assert_eq!(ds_hash(Some(x.as_bytes()), y.map(str::as_bytes)) % 10, want);
        }
        assert_eq!(ds_hash(Some(b"<null>"), None) % 10, 0);
        assert_eq!(ds_hash(Some("café".as_bytes()), None) % 10, 4);
    }

    #[test]
    fn empty_and_absent_become_one() {
        assert_eq!(ds_hash(None, None), 1);
        assert_eq!(ds_hash(Some(b""), None), 1);
        assert_eq!(ds_hash(None, Some(b"")), 1);
    }

    #[test]
    fn parts_are_chunked_separately() {
        let joined = ds_hash(Some(b"aliceatlanta.com"), None);
        assert_ne!(joined, ds_hash(Some(b"alice"), Some(b"atlanta.com")));
    }

    #[test]
    fn streaming_equals_single_slice_for_every_split() {
        let host = b"biloxi.example.com";
        let port = b"5070";
        let mut whole = Vec::new();
        whole.extend_from_slice(host);
        whole.push(b':');
        whole.extend_from_slice(port);
        let want = ds_hash(Some(b"bob"), Some(&whole));
        for cut in 0..=whole.len() {
            let mut h = PartHasher::new();
            h.feed(b"b");
            h.feed(b"ob");
            h.end_part();
            h.feed(&whole[..cut]);
            h.feed(&whole[cut..]);
            h.end_part();
            assert_eq!(h.finish(), want, "cut at {cut}");
        }
        let mut h = PartHasher::new();
        h.feed(b"bob");
        h.end_part();
        h.feed(host);
        h.feed(b":");
        h.feed(port);
        assert_eq!(h.finish(), want);
    }

    #[test]
    fn high_bytes_are_sign_extended() {
        // With unsigned chars 0xff alone would hash to 255 ^ 31 = 224.
        let v = 0xffff_ffffu32;
        let h = v ^ (v >> 3);
        let want = h
            .wrapping_add(h >> 11)
            .wrapping_add((h >> 13).wrapping_add(h >> 23));
        assert_eq!(ds_hash(Some(&[0xff]), None), want);
    }
}
