//! Rewrite plans: the outgoing message as slices of the received one.
//!
//! Forwarding a SIP message changes a few bytes near the top (a new Via, Max-Forwards, maybe
//! the Request-URI or a Route) and leaves the rest, body included, untouched. A [`Plan`]
//! records those changes as *edits* (replace a byte range of the original with a small piece)
//! and produces the outgoing message as an ordered list of slices: untouched runs of the
//! received buffer, interleaved with the inserted pieces. The I/O layer hands these slices to
//! `sendmsg` as an iovec, so the received bytes are never copied in user space.
//!
//! Inserted pieces either borrow bytes that outlive the plan (a destination URI from the
//! dispatcher snapshot) or are written into the plan's fixed scratch area (a Via line, a
//! number). Nothing here allocates, except [`Plan::to_vec`], kept for the rare path that must
//! own a copy.

use std::io::IoSlice;

use arrayvec::ArrayVec;

use crate::message::Message;
use crate::span::Span;
use crate::uri::{Scheme, Uri};

/// How many edits a plan holds.
pub const MAX_EDITS: usize = 8;
/// Bytes of scratch space for generated pieces (Via, Record-Route, Max-Forwards lines).
pub const SCRATCH_CAPACITY: usize = 512;
/// The most slices a plan can produce.
pub const MAX_PIECES: usize = 2 * MAX_EDITS + 1;

/// Why an edit could not be added. The plan is unchanged when an error is returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// More than [`MAX_EDITS`] edits.
    #[error("too many edits in one rewrite plan")]
    TooManyEdits,
    /// The generated pieces do not fit [`SCRATCH_CAPACITY`].
    #[error("rewrite scratch space exhausted")]
    ScratchFull,
    /// The edit overlaps an earlier one.
    #[error("edit overlaps an earlier edit")]
    Overlap,
    /// The message has no such element (no Route to remove, a response has no Request-URI).
    #[error("the message has nothing to apply this edit to")]
    NotApplicable,
    /// The part of the message the edit needs is malformed.
    #[error("cannot rewrite a malformed message: {0}")]
    Malformed(crate::Error),
    /// The output buffer is too small for [`Plan::flatten_into`].
    #[error("output buffer too small")]
    OutputTooSmall,
}

#[derive(Debug, Clone, Copy)]
enum Piece<'x> {
    Scratch { start: u16, end: u16 },
    Extern(&'x [u8]),
}

#[derive(Debug, Clone, Copy)]
struct Edit<'x> {
    at: Span,
    with: Piece<'x>,
}

/// An ordered set of edits over one received message.
///
/// Guarantees: edits never overlap; the output is the original message (up to
/// [`Message::len`], so bytes after the body are dropped) with each edit's range replaced by
/// its piece; several insertions at one position come out in the order they were added.
#[derive(Debug, Clone)]
pub struct Plan<'m, 'x> {
    buf: &'m [u8],
    end: usize,
    start_line_end: usize,
    edits: ArrayVec<Edit<'x>, MAX_EDITS>,
    scratch: ArrayVec<u8, SCRATCH_CAPACITY>,
}

impl<'m, 'x> Plan<'m, 'x> {
    /// An empty plan over `msg` (its output is the message as received).
    pub fn new(msg: &Message<'m>) -> Plan<'m, 'x> {
        Plan {
            buf: msg.buf(),
            end: msg.len(),
            start_line_end: msg.start_line_end(),
            edits: ArrayVec::new(),
            scratch: ArrayVec::new(),
        }
    }

    fn push(&mut self, at: Span, with: Piece<'x>) -> Result<(), PlanError> {
        if self.edits.is_full() {
            return Err(PlanError::TooManyEdits);
        }
        // Keep edits sorted by (start, end); equal keys keep insertion order.
        let pos = self
            .edits
            .iter()
            .position(|e| (e.at.start, e.at.end) > (at.start, at.end))
            .unwrap_or(self.edits.len());
        let overlaps_prev = pos > 0 && self.edits[pos - 1].at.end > at.start;
        let overlaps_next = pos < self.edits.len() && at.end > self.edits[pos].at.start;
        if overlaps_prev || overlaps_next {
            return Err(PlanError::Overlap);
        }
        self.edits.insert(pos, Edit { at, with });
        Ok(())
    }

    /// Writes `parts` into the scratch area; returns the piece or `ScratchFull` (scratch
    /// unchanged in that case).
    fn write(&mut self, parts: &[&[u8]]) -> Result<Piece<'x>, PlanError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total > self.scratch.remaining_capacity() {
            return Err(PlanError::ScratchFull);
        }
        let start = self.scratch.len();
        for p in parts {
            // Cannot fail: capacity checked above.
            let _ = self.scratch.try_extend_from_slice(p);
        }
        Ok(Piece::Scratch {
            start: start as u16,
            end: self.scratch.len() as u16,
        })
    }

    fn insert_at_top(&mut self, parts: &[&[u8]]) -> Result<(), PlanError> {
        let mark = self.scratch.len();
        let piece = self.write(parts)?;
        let at = Span::new(self.start_line_end, self.start_line_end);
        self.push(at, piece)
            .inspect_err(|_| self.scratch.truncate(mark))
    }

    /// Inserts `Via: SIP/2.0/<transport> <host>[:<port>];branch=<branch>[;rport]` above every
    /// other header (so it becomes the top Via, RFC 3261 §16.6 step 8). `host` is written as
    /// given (an IPv6 address must come with its brackets).
    pub fn insert_via(
        &mut self,
        transport: &[u8],
        host: &[u8],
        port: Option<u16>,
        branch: &[u8],
        rport: bool,
    ) -> Result<(), PlanError> {
        let mut digits = [0u8; 10];
        let port_text: &[u8] = match port {
            Some(p) => format_u32(u32::from(p), &mut digits),
            None => b"",
        };
        let colon: &[u8] = if port.is_some() { b":" } else { b"" };
        let rport_text: &[u8] = if rport { b";rport" } else { b"" };
        self.insert_at_top(&[
            b"Via: SIP/2.0/",
            transport,
            b" ",
            host,
            colon,
            port_text,
            b";branch=",
            branch,
            rport_text,
            b"\r\n",
        ])
    }

    /// Inserts `Record-Route: <uri>` above every other header, so it becomes the topmost
    /// Record-Route value (RFC 3261 §16.6 step 4). `uri` should carry `;lr`.
    pub fn insert_record_route(&mut self, uri: &[u8]) -> Result<(), PlanError> {
        self.insert_at_top(&[b"Record-Route: <", uri, b">\r\n"])
    }

    /// Inserts `parts` at byte offset `at` of the original message (e.g. `;received=…` at the
    /// end of the client's Via value). `at` must not lie inside a replaced range.
    pub fn insert(&mut self, at: usize, parts: &[&[u8]]) -> Result<(), PlanError> {
        if at > self.end {
            return Err(PlanError::NotApplicable);
        }
        let mark = self.scratch.len();
        let piece = self.write(parts)?;
        self.push(Span::new(at, at), piece)
            .inspect_err(|_| self.scratch.truncate(mark))
    }

    /// Replaces bytes `from..to` of the original message with `parts` (e.g. a forged
    /// `received` value with the real source address). The range must lie inside the message
    /// and overlap no other edit.
    pub fn replace(&mut self, from: usize, to: usize, parts: &[&[u8]]) -> Result<(), PlanError> {
        if from > to || to > self.end {
            return Err(PlanError::NotApplicable);
        }
        let mark = self.scratch.len();
        let piece = self.write(parts)?;
        self.push(Span::new(from, to), piece)
            .inspect_err(|_| self.scratch.truncate(mark))
    }

    /// Inserts a header line `name: value` above every other header.
    pub fn insert_header(&mut self, name: &[u8], value: &[u8]) -> Result<(), PlanError> {
        self.insert_at_top(&[name, b": ", value, b"\r\n"])
    }

    /// Removes the top Via value (for a response on its way back, RFC 3261 §16.7 step 3):
    /// the whole line if it holds only that value.
    pub fn remove_top_via(&mut self, msg: &Message<'m>) -> Result<(), PlanError> {
        let cut = msg.top_via_cut().map_err(PlanError::Malformed)?;
        self.push(cut, Piece::Extern(b""))
    }

    /// Removes the first Route value (loose routing, RFC 3261 §16.4 / §16.12).
    pub fn remove_first_route(&mut self, msg: &Message<'m>) -> Result<(), PlanError> {
        match msg.first_route() {
            Some(Ok((_, cut))) => self.push(cut, Piece::Extern(b"")),
            Some(Err(e)) => Err(PlanError::Malformed(e)),
            None => Err(PlanError::NotApplicable),
        }
    }

    /// Sets Max-Forwards to `value`: replaces the first Max-Forwards value, or inserts the
    /// header at the top when the message has none.
    pub fn set_max_forwards(&mut self, msg: &Message<'m>, value: u32) -> Result<(), PlanError> {
        let mut digits = [0u8; 10];
        let text = format_u32(value, &mut digits);
        match msg.first_header(crate::HeaderKind::MaxForwards) {
            Some(h) => {
                let mark = self.scratch.len();
                let piece = self.write(&[text])?;
                self.push(h.value, piece)
                    .inspect_err(|_| self.scratch.truncate(mark))
            }
            None => self.insert_at_top(&[b"Max-Forwards: ", text, b"\r\n"]),
        }
    }

    /// Rewrites the Request-URI the way Kamailio's `ds_select_domain` does (see
    /// `dispatcher-semantics.md` §4.8): keep the scheme and `user[:password]@` of the current
    /// Request-URI and replace everything after them (host, port, parameters, headers) with
    /// the part of `dest` after its scheme. A `tel:` Request-URI becomes
    /// `sip:<number>@<dest host part>` (Kamailio would produce an invalid `tel:` URI).
    pub fn set_request_uri_host(
        &mut self,
        msg: &Message<'m>,
        dest: &Uri<'x>,
    ) -> Result<(), PlanError> {
        let req = msg.request().ok_or(PlanError::NotApplicable)?;
        let uri = &req.uri().map_err(PlanError::Malformed)?;
        let start = req.uri_span.start as usize;
        let end = req.uri_span.end as usize;
        let snapshot = self.edits.clone();
        let result = if uri.scheme == Scheme::Tel {
            let number_end = start + uri.scheme_text.len() + uri.user.map_or(0, <[u8]>::len);
            self.push(
                Span::new(start, start + uri.scheme_text.len()),
                Piece::Extern(b"sip:"),
            )
            .and_then(|()| self.push(Span::new(number_end, number_end), Piece::Extern(b"@")))
            .and_then(|()| self.push(Span::new(number_end, end), Piece::Extern(dest.host_part())))
        } else {
            let host_start = start + uri.host_offset;
            self.push(Span::new(host_start, end), Piece::Extern(dest.host_part()))
        };
        if result.is_err() {
            self.edits = snapshot;
        }
        result
    }

    /// Replaces the whole Request-URI with `uri` (e.g. a Route's URI when forwarding to a
    /// strict router).
    pub fn set_request_uri(&mut self, msg: &Message<'m>, uri: &'x [u8]) -> Result<(), PlanError> {
        let req = msg.request().ok_or(PlanError::NotApplicable)?;
        self.push(req.uri_span, Piece::Extern(uri))
    }

    /// Number of edits.
    pub fn edit_count(&self) -> usize {
        self.edits.len()
    }

    /// Total length of the outgoing message.
    pub fn len(&self) -> usize {
        let replaced: usize = self.edits.iter().map(|e| e.at.len()).sum();
        let inserted: usize = self.edits.iter().map(|e| self.piece(&e.with).len()).sum();
        self.end - replaced + inserted
    }

    /// Whether the outgoing message is empty (never, for a plan over a message).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn piece<'s>(&'s self, p: &Piece<'x>) -> &'s [u8] {
        match *p {
            Piece::Scratch { start, end } => &self.scratch[usize::from(start)..usize::from(end)],
            Piece::Extern(s) => s,
        }
    }

    /// Calls `f` with each non-empty slice of the outgoing message, in order.
    pub fn for_each_slice<'s>(&'s self, mut f: impl FnMut(&'s [u8])) {
        let mut cursor = 0usize;
        for e in &self.edits {
            let gap = &self.buf[cursor..e.at.start as usize];
            if !gap.is_empty() {
                f(gap);
            }
            let piece = self.piece(&e.with);
            if !piece.is_empty() {
                f(piece);
            }
            cursor = e.at.end as usize;
        }
        let tail = &self.buf[cursor..self.end];
        if !tail.is_empty() {
            f(tail);
        }
    }

    /// The outgoing message as an iovec for `sendmsg` / io_uring `SendMsg`.
    pub fn io_slices(&self) -> ArrayVec<IoSlice<'_>, MAX_PIECES> {
        let mut out = ArrayVec::new();
        // At most 2 * edits + 1 slices, which is MAX_PIECES.
        self.for_each_slice(|s| out.push(IoSlice::new(s)));
        out
    }

    /// Copies the outgoing message into `out`; returns its length.
    pub fn flatten_into(&self, out: &mut [u8]) -> Result<usize, PlanError> {
        let len = self.len();
        if out.len() < len {
            return Err(PlanError::OutputTooSmall);
        }
        let mut at = 0;
        self.for_each_slice(|s| {
            out[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        });
        Ok(at)
    }

    /// The outgoing message as an owned buffer (allocates: not for the hot path).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.for_each_slice(|s| v.extend_from_slice(s));
        v
    }
}

/// Formats `n` in decimal into `buf`; returns the digits.
fn format_u32(mut n: u32, buf: &mut [u8; 10]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Headers, Message};

    fn parse_datagram(buf: &[u8]) -> Result<Message<'_>, Error> {
        crate::parse_datagram(buf, Box::leak(Box::new(Headers::new())))
    }

    const INVITE: &[u8] = b"INVITE sip:bob@biloxi.com;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
Route: <sip:p1.example.com;lr>, <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

    #[test]
    fn format_numbers() {
        let mut b = [0u8; 10];
        assert_eq!(format_u32(0, &mut b), b"0");
        assert_eq!(format_u32(69, &mut b), b"69");
        assert_eq!(format_u32(u32::MAX, &mut b), b"4294967295");
    }

    #[test]
    fn replace_swaps_a_range_and_refuses_overlaps() {
        let msg = parse_datagram(INVITE).unwrap();
        let at = INVITE.windows(8).position(|w| w == b"pc33.atl").unwrap();
        let mut plan = Plan::new(&msg);
        plan.replace(at, at + 16, &[b"192.0.2.1"]).unwrap();
        let out = plan.to_vec();
        assert!(out.starts_with(b"INVITE sip:bob@biloxi.com;transport=udp SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch="));
        assert_eq!(out.len(), INVITE.len() - 16 + 9);
        assert_eq!(
            plan.replace(at + 2, at + 4, &[b"x"]),
            Err(PlanError::Overlap)
        );
        assert_eq!(plan.replace(5, 4, &[b"x"]), Err(PlanError::NotApplicable));
        assert_eq!(
            plan.replace(INVITE.len() + 1, INVITE.len() + 2, &[b"x"]),
            Err(PlanError::NotApplicable)
        );
    }

    #[test]
    fn empty_plan_is_identity_up_to_message_end() {
        let mut dgram = INVITE.to_vec();
        dgram.extend_from_slice(b"trailing garbage");
        let msg = parse_datagram(&dgram).unwrap();
        let plan = Plan::new(&msg);
        assert_eq!(plan.to_vec(), INVITE);
        assert_eq!(plan.len(), INVITE.len());
    }

    #[test]
    fn request_forwarding_edits() {
        let msg = parse_datagram(INVITE).unwrap();
        let dest = Uri::parse(b"sip:10.0.0.7:5070;transport=udp").unwrap();
        let mut plan = Plan::new(&msg);
        plan.insert_via(b"UDP", b"192.0.2.1", Some(5060), b"z9hG4bK-sd-1", true)
            .unwrap();
        plan.set_max_forwards(&msg, 69).unwrap();
        plan.remove_first_route(&msg).unwrap();
        plan.set_request_uri_host(&msg, &dest).unwrap();
        let out = plan.to_vec();
        let expected = b"INVITE sip:bob@10.0.0.7:5070;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-sd-1;rport\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bKnashds8, SIP/2.0/UDP h2;branch=z9hG4bK2\r\n\
Max-Forwards: 69\r\n\
Route: <sip:p2.example.com;lr>\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(expected)
        );
        assert_eq!(plan.len(), out.len());
        let mut flat = [0u8; 1024];
        let n = plan.flatten_into(&mut flat).unwrap();
        assert_eq!(&flat[..n], &out[..]);
        let iov: usize = plan.io_slices().iter().map(|s| s.len()).sum();
        assert_eq!(iov, out.len());
        assert!(plan.flatten_into(&mut flat[..10]).is_err());
    }

    #[test]
    fn response_top_via_removal() {
        let resp = b"SIP/2.0 200 OK\r\n\
v: SIP/2.0/UDP proxy;branch=z9hG4bK1\r\n\
Via: SIP/2.0/UDP uac;branch=z9hG4bK0\r\n\
To: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let msg = parse_datagram(resp).unwrap();
        let mut plan = Plan::new(&msg);
        plan.remove_top_via(&msg).unwrap();
        assert_eq!(
            plan.to_vec(),
            b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP uac;branch=z9hG4bK0\r\nTo: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        // Several values in the top line: only the first goes.
        let resp = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP proxy;branch=z9hG4bK1 ,\r\n SIP/2.0/UDP uac;branch=z9hG4bK0\r\nTo: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n";
        let msg = parse_datagram(resp).unwrap();
        let mut plan = Plan::new(&msg);
        plan.remove_top_via(&msg).unwrap();
        let out = plan.to_vec();
        assert_eq!(
            out,
            b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP uac;branch=z9hG4bK0\r\nTo: <sip:b@h>;tag=x\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        assert_eq!(
            parse_datagram(&out).unwrap().top_via().unwrap().host,
            b"uac"
        );
    }

    #[test]
    fn max_forwards_inserted_when_absent_and_record_route() {
        let req = b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK0\r\nTo: <sip:h>\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n\r\n";
        let msg = parse_datagram(req).unwrap();
        let mut plan = Plan::new(&msg);
        plan.insert_via(b"UDP", b"[2001:db8::1]", None, b"z9hG4bKx", false)
            .unwrap();
        plan.insert_record_route(b"sip:[2001:db8::1];lr").unwrap();
        plan.set_max_forwards(&msg, 70).unwrap();
        assert!(matches!(
            plan.remove_first_route(&msg),
            Err(PlanError::NotApplicable)
        ));
        let out = plan.to_vec();
        assert!(out.starts_with(
            b"OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1];branch=z9hG4bKx\r\nRecord-Route: <sip:[2001:db8::1];lr>\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP a;"
        ));
        let again = parse_datagram(&out).unwrap();
        assert_eq!(again.max_forwards(), Some(70));
        assert_eq!(again.vias().count(), 2);
    }

    #[test]
    fn select_domain_variants() {
        let cases: &[(&str, &str, &str)] = &[
            ("sips:bob@orig.test;x=y", "sip:c.test", "sips:bob@c.test"),
            (
                "sip:bob:pw@orig.test:5070;transport=tcp",
                "sip:10.0.0.1:5080;transport=udp",
                "sip:bob:pw@10.0.0.1:5080;transport=udp",
            ),
            ("sip:orig.test", "sip:[::1]:5062", "sip:[::1]:5062"),
            (
                "SIP:+49;isub=1@h;user=phone",
                "SIPS:gw.example",
                "SIP:+49;isub=1@gw.example",
            ),
            (
                "tel:+4930123;phone-context=x",
                "sip:gw.example:5070",
                "sip:+4930123@gw.example:5070",
            ),
        ];
        for (ruri, dest, expect) in cases {
            let req = format!(
                "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK0\r\nTo: <sip:h>\r\nFrom: <sip:a@h>;tag=y\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n"
            );
            let msg = parse_datagram(req.as_bytes()).unwrap();
            let dest = Uri::parse(dest.as_bytes()).unwrap();
            let mut plan = Plan::new(&msg);
            plan.set_request_uri_host(&msg, &dest).unwrap();
            let out = plan.to_vec();
            let again = parse_datagram(&out).unwrap();
            assert_eq!(
                again.request().unwrap().uri().unwrap().raw,
                expect.as_bytes(),
                "{ruri} + {dest:?}"
            );
        }
    }

    #[test]
    fn overlapping_and_capacity_errors() {
        let msg = parse_datagram(INVITE).unwrap();
        let mut plan = Plan::new(&msg);
        let dest = Uri::parse(b"sip:x").unwrap();
        plan.set_request_uri_host(&msg, &dest).unwrap();
        assert_eq!(
            plan.set_request_uri(&msg, b"sip:y"),
            Err(PlanError::Overlap)
        );
        assert_eq!(plan.edit_count(), 1);
        let big = [b'a'; SCRATCH_CAPACITY];
        assert_eq!(plan.insert_header(b"X", &big), Err(PlanError::ScratchFull));
        for _ in 1..MAX_EDITS {
            plan.insert_header(b"X", b"1").unwrap();
        }
        assert_eq!(plan.insert_header(b"X", b"1"), Err(PlanError::TooManyEdits));
        // The plan still renders correctly after refused edits.
        assert!(parse_datagram(&plan.to_vec()).is_ok());
    }
}

#[cfg(test)]
mod proptests;
