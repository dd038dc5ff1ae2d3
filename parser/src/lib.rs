//! `sipdisp-parser`: the first stage of sipdisp's hot path.
//!
//! It turns one received SIP message (RFC 3261 §7, §25) into a borrowed [`Message`] view: the
//! start line, a fixed-capacity index of every header line (byte ranges, never copies), the
//! cheap scalar values checked at once (Call-ID, CSeq, Max-Forwards, Content-Length), and
//! typed accessors that parse on demand what only some routes read (From, To, the
//! Request-URI, every Via, Route, Record-Route, Digest credentials). It
//! also parses SIP/SIPS/TEL URIs ([`Uri`]) and plans the rewrite of a message for forwarding
//! ([`Plan`]): an ordered list of slices of the received buffer plus a few small inserted
//! pieces, ready for a scatter/gather `sendmsg`, so the message body and untouched headers are
//! never copied in user space.
//!
//! What it deliberately does not do: it does not decode escapes, unfold values into new
//! buffers, validate headers routing does not read (Date, Contact, Content-Type, …), or keep
//! any state between messages. It never allocates on the heap: all storage is fixed-capacity
//! and lives in the returned values or in the caller's reusable [`Headers`] (see the
//! counting-allocator test in `tests/alloc.rs`).
//!
//! Leniency is a deliberate, documented choice (see `testdata/rfc4475/README.md`): a proxy must
//! forward what it does not understand, so unknown methods, schemes and headers pass; what it
//! routes on must be exact, so malformed routing headers are errors.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod error;
mod header;
mod lex;
mod lines;
mod message;
mod rewrite;
mod span;
mod uri;
mod values;

pub use error::{Error, UriError};
pub use header::{HeaderKind, Method};
pub use message::{
    Header, Headers, MAX_HEADERS, Message, RequestLine, StartLine, Status, StatusLine, parse,
    parse_datagram,
};
pub use rewrite::{MAX_EDITS, MAX_PIECES, Plan, PlanError, SCRATCH_CAPACITY};
pub use span::Span;
pub use uri::{Scheme, Uri};
pub use values::{
    CSeq, DigestCredentials, NameAddr, Via, ViaIter, parse_name_addr, parse_via_list,
};
