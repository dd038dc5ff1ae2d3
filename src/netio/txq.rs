//! The transmit queue every backend shares: fixed slots, each with a small header buffer and a
//! fixed number of pieces, and the [`Outbox`] handlers push into.
//!
//! A piece is recorded either as a reference into the receive buffer of the datagram being
//! handled (zero copy) or as an offset into the slot's header buffer. Iovecs for the kernel are
//! built only at flush time ([`TxQueue::finish`]), after the last write to the header buffers, so
//! no pointer into them is held while safe code still writes there.

use std::net::SocketAddr;
use std::ops::Range;

use super::{MAX_DATAGRAM, SocketIdx};

/// Most iovecs one transmit may have after merging adjacent pieces (referenced pieces that are
/// contiguous in the receive buffer, and consecutive copied pieces, merge into one).
pub const MAX_IOVECS: usize = 16;

/// Why [`Outbox::push`] refused a transmit. Nothing was queued.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// Every transmit slot of this batch is used.
    #[error("outbox full")]
    Full,
    /// The copied pieces exceed the per-transmit header buffer.
    #[error("copied pieces exceed the {capacity}-byte header buffer")]
    HeaderOverflow {
        /// The header buffer's size.
        capacity: usize,
    },
    /// The datagram would exceed 65507 bytes.
    #[error("datagram of {len} bytes exceeds 65507")]
    TooLarge {
        /// The total length asked for.
        len: usize,
    },
    /// More than [`MAX_IOVECS`] separate pieces after merging.
    #[error("more than {MAX_IOVECS} separate pieces")]
    TooManyPieces,
    /// `from` names no socket of this worker.
    #[error("no socket {0:?}")]
    NoSuchSocket(SocketIdx),
    /// `to` is IPv6 and the socket IPv4, or the reverse.
    #[error("address family of {to} does not match the socket")]
    AddressFamily {
        /// The destination.
        to: SocketAddr,
    },
    /// The flow's transport is not served by this datapath (only UDP is, for now).
    #[error("transport {0} is not served")]
    Transport(super::Transport),
}

/// Labels of transmit failures, for metrics: [`OutboxError::index`] indexes the first seven,
/// the last counts transmits the kernel refused ([`super::BatchStats::send_errors`]).
pub const SEND_FAILURES: [&str; 8] = [
    "outbox_full",
    "header_overflow",
    "too_large",
    "too_many_pieces",
    "no_such_socket",
    "address_family",
    "transport",
    "kernel",
];

impl OutboxError {
    /// Index of this error's label in [`SEND_FAILURES`].
    pub fn index(&self) -> usize {
        match self {
            OutboxError::Full => 0,
            OutboxError::HeaderOverflow { .. } => 1,
            OutboxError::TooLarge { .. } => 2,
            OutboxError::TooManyPieces => 3,
            OutboxError::NoSuchSocket(_) => 4,
            OutboxError::AddressFamily { .. } => 5,
            OutboxError::Transport(_) => 6,
        }
    }
}

#[derive(Copy, Clone, Debug)]
enum Piece {
    /// Address and length inside the current receive buffer.
    Ref(usize, usize),
    /// Offset and length inside the slot's header buffer.
    Hdr(usize, usize),
}

/// Metadata of one queued transmit.
#[derive(Copy, Clone, Debug)]
pub(crate) struct TxMeta {
    pub from: SocketIdx,
    pub to: SocketAddr,
    pub npieces: usize,
}

/// Fixed-capacity transmit storage owned by a backend.
pub(crate) struct TxQueue {
    hdr_cap: usize,
    headers: Box<[u8]>,
    pieces: Box<[Piece]>,
    meta: Box<[TxMeta]>,
    iovecs: Box<[libc::iovec]>,
    len: usize,
    pub referenced: u64,
    pub copied: u64,
}

// SAFETY: the raw pointers in `iovecs` point into `headers` (owned by this queue) or into the
// receive buffer of the backend that owns this queue; they are only dereferenced (by the kernel)
// inside that backend's `run_batch`, on whichever single thread owns it at the time.
unsafe impl Send for TxQueue {}

impl TxQueue {
    pub fn new(slots: usize, hdr_cap: usize) -> TxQueue {
        let slots = slots.max(1);
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        TxQueue {
            hdr_cap,
            headers: vec![0; slots * hdr_cap].into_boxed_slice(),
            pieces: vec![Piece::Hdr(0, 0); slots * MAX_IOVECS].into_boxed_slice(),
            meta: vec![
                TxMeta {
                    from: SocketIdx(0),
                    to: unspecified,
                    npieces: 0
                };
                slots
            ]
            .into_boxed_slice(),
            iovecs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                slots * MAX_IOVECS
            ]
            .into_boxed_slice(),
            len: 0,
            referenced: 0,
            copied: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.meta.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Forgets every queued transmit and resets the byte counters.
    pub fn clear(&mut self) {
        self.len = 0;
        self.referenced = 0;
        self.copied = 0;
    }

    pub fn meta(&self, i: usize) -> &TxMeta {
        &self.meta[i]
    }

    /// Builds the iovecs of every queued transmit. Call once per batch after the last push and
    /// before handing [`TxQueue::iovecs`] to the kernel.
    pub fn finish(&mut self) {
        let base = self.headers.as_mut_ptr();
        for i in 0..self.len {
            let n = self.meta[i].npieces;
            for k in i * MAX_IOVECS..i * MAX_IOVECS + n {
                self.iovecs[k] = match self.pieces[k] {
                    Piece::Ref(addr, len) => libc::iovec {
                        iov_base: addr as *mut libc::c_void,
                        iov_len: len,
                    },
                    Piece::Hdr(off, len) => libc::iovec {
                        // The offset is inside `headers` (checked at push): wrapping_add keeps
                        // this safe code, and the result is in bounds.
                        iov_base: base.wrapping_add(i * self.hdr_cap + off).cast(),
                        iov_len: len,
                    },
                };
            }
        }
    }

    /// The iovecs of transmit `i`, valid after [`TxQueue::finish`] until the next push.
    pub fn iovecs(&self, i: usize) -> &[libc::iovec] {
        let n = self.meta[i].npieces;
        &self.iovecs[i * MAX_IOVECS..i * MAX_IOVECS + n]
    }

    /// Copies transmit `i` into `out`, resolving referenced pieces through `resolve`, which
    /// maps an address range to the bytes it names (the memory backend's receive buffers).
    pub fn gather_with<'a>(
        &'a self,
        i: usize,
        out: &mut Vec<u8>,
        mut resolve: impl FnMut(usize, usize) -> &'a [u8],
    ) {
        out.clear();
        for p in &self.pieces[i * MAX_IOVECS..i * MAX_IOVECS + self.meta[i].npieces] {
            match *p {
                Piece::Ref(addr, len) => out.extend_from_slice(resolve(addr, len)),
                Piece::Hdr(off, len) => {
                    let s = i * self.hdr_cap + off;
                    out.extend_from_slice(&self.headers[s..s + len]);
                }
            }
        }
    }
}

/// Where a handler queues datagrams to send during a batch.
pub struct Outbox<'b> {
    q: &'b mut TxQueue,
    locals: &'b [SocketAddr],
    /// Address range of the datagram being handled (empty during the tick).
    rx: Range<usize>,
}

impl<'b> Outbox<'b> {
    pub(crate) fn new(q: &'b mut TxQueue, locals: &'b [SocketAddr], rx: &[u8]) -> Outbox<'b> {
        let start = rx.as_ptr() as usize;
        Outbox {
            q,
            locals,
            rx: start..start + rx.len(),
        }
    }

    /// Queues one message made of `pieces` (in order) on `flow` (UDP only, for now).
    pub fn send(&mut self, flow: &super::Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        match flow.transport {
            super::Transport::Udp => self.push(flow.local, flow.remote, pieces),
            other => Err(OutboxError::Transport(other)),
        }
    }

    /// Queues one datagram made of `pieces` (in order) to `to` from socket `from`.
    ///
    /// A piece that lies inside the received datagram being handled is referenced, not copied;
    /// any other piece is copied into this transmit's header buffer. Nothing is queued on error.
    pub fn push(
        &mut self,
        from: SocketIdx,
        to: SocketAddr,
        pieces: &[&[u8]],
    ) -> Result<(), OutboxError> {
        let q = &mut *self.q;
        if q.len == q.meta.len() {
            return Err(OutboxError::Full);
        }
        let local = self
            .locals
            .get(usize::from(from.0))
            .ok_or(OutboxError::NoSuchSocket(from))?;
        if local.is_ipv4() != to.is_ipv4() {
            return Err(OutboxError::AddressFamily { to });
        }
        let total: usize = pieces.iter().map(|p| p.len()).sum();
        if total > MAX_DATAGRAM {
            return Err(OutboxError::TooLarge { len: total });
        }
        let slot = q.len;
        let hdr = &mut q.headers[slot * q.hdr_cap..(slot + 1) * q.hdr_cap];
        let out = &mut q.pieces[slot * MAX_IOVECS..(slot + 1) * MAX_IOVECS];
        let (mut n, mut used, mut referenced) = (0usize, 0usize, 0usize);
        for p in pieces.iter().filter(|p| !p.is_empty()) {
            let addr = p.as_ptr() as usize;
            let next = if addr >= self.rx.start && addr + p.len() <= self.rx.end {
                referenced += p.len();
                match n.checked_sub(1).map(|l| out[l]) {
                    Some(Piece::Ref(a, l)) if a + l == addr => {
                        out[n - 1] = Piece::Ref(a, l + p.len());
                        continue;
                    }
                    _ => Piece::Ref(addr, p.len()),
                }
            } else {
                if used + p.len() > hdr.len() {
                    return Err(OutboxError::HeaderOverflow {
                        capacity: hdr.len(),
                    });
                }
                hdr[used..used + p.len()].copy_from_slice(p);
                used += p.len();
                match n.checked_sub(1).map(|l| out[l]) {
                    Some(Piece::Hdr(o, l)) if o + l == used - p.len() => {
                        out[n - 1] = Piece::Hdr(o, l + p.len());
                        continue;
                    }
                    _ => Piece::Hdr(used - p.len(), p.len()),
                }
            };
            if n == MAX_IOVECS {
                return Err(OutboxError::TooManyPieces);
            }
            out[n] = next;
            n += 1;
        }
        q.meta[slot] = TxMeta {
            from,
            to,
            npieces: n,
        };
        q.len += 1;
        q.referenced += referenced as u64;
        q.copied += (total - referenced) as u64;
        Ok(())
    }

    /// Transmits queued so far in this batch.
    pub fn len(&self) -> usize {
        self.q.len
    }

    /// True when nothing is queued yet in this batch.
    pub fn is_empty(&self) -> bool {
        self.q.len == 0
    }

    /// Transmit slots left in this batch.
    pub fn remaining(&self) -> usize {
        self.q.capacity() - self.q.len
    }

    /// Bytes queued by reference to the receive buffer so far in this batch (zero copy).
    pub fn referenced_bytes(&self) -> u64 {
        self.q.referenced
    }

    /// Bytes copied into header buffers so far in this batch.
    pub fn copied_bytes(&self) -> u64 {
        self.q.copied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn references_pieces_of_the_datagram_and_copies_the_rest() {
        let mut q = TxQueue::new(2, 16);
        let locals = [addr("127.0.0.1:5060")];
        let rx = b"INVITE sip:x SIP/2.0\r\n".to_vec();
        let mut ob = Outbox::new(&mut q, &locals, &rx);
        // Two adjacent slices merge into one referenced piece; two headers merge into one.
        ob.push(
            SocketIdx(0),
            addr("127.0.0.2:5060"),
            &[b"Via:", b" x\r\n", &rx[..6], &rx[6..12], b"!"],
        )
        .unwrap();
        assert_eq!((ob.referenced_bytes(), ob.copied_bytes()), (12, 9));
        assert_eq!(q.meta(0).npieces, 3);
        let mut out = Vec::new();
        q.gather_with(0, &mut out, |a, l| {
            let off = a - rx.as_ptr() as usize;
            &rx[off..off + l]
        });
        assert_eq!(out, b"Via: x\r\nINVITE sip:x!");
        q.finish();
        assert_eq!(q.iovecs(0)[1].iov_base as usize, rx.as_ptr() as usize);
    }

    #[test]
    fn refuses_without_queuing() {
        let mut q = TxQueue::new(1, 4);
        let locals = [addr("127.0.0.1:5060")];
        let mut ob = Outbox::new(&mut q, &locals, &[]);
        let to = addr("127.0.0.1:1");
        assert_eq!(
            ob.push(SocketIdx(0), to, &[b"12345"]),
            Err(OutboxError::HeaderOverflow { capacity: 4 })
        );
        assert_eq!(
            ob.push(SocketIdx(1), to, &[b"1"]),
            Err(OutboxError::NoSuchSocket(SocketIdx(1)))
        );
        assert!(matches!(
            ob.push(SocketIdx(0), addr("[::1]:1"), &[b"1"]),
            Err(OutboxError::AddressFamily { .. })
        ));
        let big = vec![0u8; MAX_DATAGRAM + 1];
        assert_eq!(
            ob.push(SocketIdx(0), to, &[&big]),
            Err(OutboxError::TooLarge {
                len: MAX_DATAGRAM + 1
            })
        );
        assert!(ob.is_empty());
        ob.push(SocketIdx(0), to, &[b"1234"]).unwrap();
        assert_eq!(ob.push(SocketIdx(0), to, &[b"1"]), Err(OutboxError::Full));
        assert_eq!(ob.copied_bytes(), 4);
    }

    #[test]
    fn too_many_separate_pieces() {
        let mut q = TxQueue::new(1, 1024);
        let locals = [addr("127.0.0.1:5060")];
        let rx = [7u8; 64];
        let mut ob = Outbox::new(&mut q, &locals, &rx);
        let mut pieces: Vec<&[u8]> = Vec::new();
        for i in 0..=MAX_IOVECS {
            pieces.push(if i % 2 == 0 { &rx[i..i + 1] } else { b"h" });
        }
        assert_eq!(
            ob.push(SocketIdx(0), addr("127.0.0.1:1"), &pieces),
            Err(OutboxError::TooManyPieces)
        );
        pieces.pop();
        ob.push(SocketIdx(0), addr("127.0.0.1:1"), &pieces).unwrap();
    }
}
