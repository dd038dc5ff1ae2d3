//! The errors of the scanner and the URI parser.
//!
//! They are small `Copy` values (no allocation, cheap to count per reason) and precise enough
//! for the proxy to pick the right response: [`Error::Version`] becomes `505`, a bad routing
//! header `400`, and so on. "Not enough bytes yet" is not an error: see [`crate::Status`].

use crate::header::HeaderKind;

/// Why a message was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The buffer holds only CR/LF bytes: a keep-alive (RFC 5626 §3.5.1), not a message.
    #[error("keep-alive (only line breaks)")]
    KeepAlive,
    /// The buffer is 4 GiB or larger (positions are 32-bit).
    #[error("message too large to index")]
    TooLarge,
    /// The first line is neither a request line nor a status line.
    #[error("malformed start line: {0}")]
    StartLine(&'static str),
    /// The Request-URI does not parse.
    #[error("malformed Request-URI: {0}")]
    RequestUri(UriError),
    /// A well-formed `SIP/x.y` other than `SIP/2.0` (answer `505`).
    #[error("unsupported SIP version")]
    Version,
    /// A header line without a valid `token ":"` name; `at` is the line's offset.
    #[error("malformed header line at byte {at}")]
    HeaderLine {
        /// Offset of the offending line in the buffer.
        at: u32,
    },
    /// More header lines than the index holds ([`crate::MAX_HEADERS`]).
    #[error("too many header lines (more than {})", crate::MAX_HEADERS)]
    TooManyHeaders,
    /// A header routing relies on has a malformed value.
    #[error("malformed {header} header: {what}")]
    Header {
        /// Which header.
        header: HeaderKind,
        /// What was wrong, in a few words.
        what: &'static str,
    },
    /// A header that must appear at most once appears twice (with different values for
    /// Content-Length, at all for Call-ID, From, To and CSeq).
    #[error("{0} header appears more than once")]
    Duplicate(HeaderKind),
    /// A mandatory header (RFC 3261 §8.1.1: Via, From, To, Call-ID, CSeq) is missing.
    #[error("missing mandatory {0} header")]
    Missing(HeaderKind),
    /// The CSeq method differs from the request method (RFC 3261 §8.1.1.5).
    #[error("CSeq method differs from the request method")]
    CSeqMethodMismatch,
    /// The header section is not terminated by an empty line, or the body is shorter than
    /// Content-Length (only from [`crate::parse_datagram`]; [`crate::parse`] reports
    /// [`crate::Status::Partial`] instead).
    #[error("message truncated: header section unterminated or body shorter than Content-Length")]
    Truncated,
}

/// Why a URI was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix, or a scheme with invalid characters.
    #[error("missing or invalid scheme")]
    Scheme,
    /// The user or password part has a forbidden character.
    #[error("invalid character in user part")]
    User,
    /// The host is empty or has a forbidden character.
    #[error("missing or invalid host")]
    Host,
    /// The port is not a decimal number from 0 to 65535.
    #[error("invalid port")]
    Port,
    /// The parameters or headers have a forbidden character.
    #[error("invalid character in parameters or headers")]
    Params,
    /// A `?headers` part where RFC 3261 §19.1.1 forbids it (the Request-URI).
    #[error("URI headers are not allowed in a Request-URI")]
    HeadersNotAllowed,
    /// White space, control characters, `<`, `>` or `"` inside the URI.
    #[error("forbidden character in URI")]
    Character,
}
