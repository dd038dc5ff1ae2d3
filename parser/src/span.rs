//! Byte ranges into the received buffer.
//!
//! The scanner records positions, not slices, so that the index stays `Copy`, small (8 bytes a
//! range) and independent of the buffer's lifetime where that helps (the rewrite plan).

use core::ops::Range;

/// A half-open byte range `start..end` into the message buffer it was produced from.
///
/// Guarantee: every `Span` handed out by this crate satisfies `start <= end <= buf.len()` for
/// the buffer that was parsed, so [`Span::get`] on that buffer never panics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Span {
    /// First byte of the range.
    pub start: u32,
    /// One past the last byte of the range.
    pub end: u32,
}

impl Span {
    /// A span from `start` to `end` (positions as `usize`; the crate never parses buffers of
    /// 4 GiB or more, see [`crate::Error::TooLarge`]).
    #[inline]
    pub(crate) const fn new(start: usize, end: usize) -> Span {
        Span {
            start: start as u32,
            end: end as u32,
        }
    }

    /// The bytes of this range in `buf`. Returns an empty slice instead of panicking when the
    /// span does not fit `buf` (which only happens if it is applied to another buffer).
    #[inline]
    pub fn get<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        buf.get(self.start as usize..self.end as usize)
            .unwrap_or(&[])
    }

    /// Number of bytes covered.
    #[inline]
    pub const fn len(&self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether the range is empty.
    #[inline]
    pub const fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The range as `usize` bounds.
    #[inline]
    pub const fn range(&self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The sub-span of `self` that `sub` (a subslice of `buf`) occupies. `sub` must point into
    /// `buf`; this is how value parsers turn slices back into positions.
    #[inline]
    pub(crate) fn of(buf: &[u8], sub: &[u8]) -> Span {
        let start = (sub.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
        debug_assert!(start <= buf.len() && start + sub.len() <= buf.len());
        Span::new(start, start + sub.len())
    }
}
