//! The scanner: one pass over a message that indexes its start line and header lines, then
//! parses the values routing needs.
//!
//! The start line is read first (a one-pass fast path for the usual forms, the general parser
//! for the rest). Header lines come from the LF and `:` bitmaps of [`crate::lines`]: each LF
//! bit ends a line, the first colon bit before it ends the name; a line that starts with SP or
//! HTAB continues the previous header (obsolete line folding, RFC 3261 §7.3.1). Everything it
//! records is a byte range; nothing is copied. A second, short pass over the index parses the
//! handful of recognised headers (Call-ID, CSeq, Max-Forwards, Content-Length) so that a
//! message with a malformed routing header is rejected before any routing decision.

use arrayvec::ArrayVec;

use crate::error::Error;
use crate::header::{HeaderKind, KIND_COUNT, Method};
use crate::lex::{eq_ic, find_lf, is_token, is_token_str, is_uric, parse_u32, trim_lws};
use crate::lines::{WINDOW, window};
use crate::span::Span;
use crate::uri::Uri;
use crate::values::{
    CSeq, DigestCredentials, NameAddr, Via, list_end, parse_cseq, parse_digest, parse_name_addr,
    parse_via_list,
};

/// How many header lines a message may have. A message with more is rejected with
/// [`Error::TooManyHeaders`] (a 400 for the proxy); real traffic stays far below.
pub const MAX_HEADERS: usize = 96;

/// One indexed header line (folded continuation lines included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Classification of the name.
    pub kind: HeaderKind,
    /// The name as written (no surrounding white space).
    pub name: Span,
    /// The value, with surrounding white space trimmed (inner folding kept).
    pub value: Span,
    /// The whole line from the first byte of the name through its final line break.
    pub line: Span,
}

/// Caller-supplied, reusable storage for the header index of one message.
///
/// The scanner fills it and the [`Message`] borrows it, so a worker keeps one `Headers` and
/// scans every datagram into it: the index is never copied and never allocated.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    list: ArrayVec<Header, MAX_HEADERS>,
}

impl Headers {
    /// Empty storage for up to [`MAX_HEADERS`] header lines.
    pub fn new() -> Headers {
        Headers {
            list: ArrayVec::new(),
        }
    }
}

/// Result of [`parse`] on a buffer that may hold only the beginning of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status<T> {
    /// A complete message.
    Complete(T),
    /// More bytes are needed: the header section is not terminated yet, or the body is shorter
    /// than Content-Length. For a datagram this means the message is truncated.
    Partial,
}

/// The request line (RFC 3261 §7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method token, exact bytes.
    pub method: &'a [u8],
    /// Classification of the method.
    pub method_kind: Method,
    /// The Request-URI bytes (checked for forbidden characters and a scheme; parse it with
    /// [`RequestLine::uri`]).
    pub uri_bytes: &'a [u8],
    /// Where the Request-URI is in the buffer (for rewriting).
    pub uri_span: Span,
}

impl<'a> RequestLine<'a> {
    /// The Request-URI, parsed. A URI with a `?headers` part is refused (RFC 3261 §19.1.1:
    /// headers are not allowed in a Request-URI; RFC 4475 §3.1.2.11). The characters are not
    /// checked again: the scan did (a hand-made `RequestLine` gets no such check).
    pub fn uri(&self) -> Result<Uri<'a>, Error> {
        // The scan checked that every byte is a URI character.
        let uri = Uri::parse_uric(self.uri_bytes).map_err(Error::RequestUri)?;
        if uri.headers.is_some() {
            return Err(Error::RequestUri(crate::UriError::HeadersNotAllowed));
        }
        Ok(uri)
    }
}

/// The status line (RFC 3261 §7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusLine<'a> {
    /// The status code, 100–699.
    pub code: u16,
    /// The reason phrase (may be empty, may be UTF-8).
    pub reason: &'a [u8],
}

/// The first line of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartLine<'a> {
    /// A request.
    Request(RequestLine<'a>),
    /// A response.
    Response(StatusLine<'a>),
}

const NONE: u8 = u8::MAX;

/// A scanned SIP message, borrowing the buffer it was parsed from and the [`Headers`] storage.
///
/// What the scan guarantees (checked for every message, cheaply): the start line is valid (a
/// method token and a Request-URI made of URI characters with a scheme, or a status code
/// 100–699; version `SIP/2.0`); every header line has a token name; Via, From, To, Call-ID
/// and CSeq are present, and From, To, Call-ID and CSeq appear once; CSeq is a number below
/// 2^31 and a method, equal to the request method for a request; Max-Forwards, if present, is
/// a number below 2^32; Content-Length, if present, is consistent and the body is exactly that
/// long.
///
/// What is parsed on demand (lazily, like Kamailio): the URIs, From/To, Via values, Route
/// values and credentials, through accessors returning `Result`. [`Message::validate`] parses
/// all of them at once.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    buf: &'a [u8],
    headers: &'a [Header],
    start: StartLine<'a>,
    start_line_end: u32,
    body: Span,
    first: [u8; KIND_COUNT],
    call_id: &'a [u8],
    cseq: CSeq<'a>,
    max_forwards: Option<u32>,
    content_length: Option<u32>,
}

/// Iterator over the comma-separated name-addr values of one header line.
struct NameAddrList<'a> {
    rest: Option<&'a [u8]>,
    kind: HeaderKind,
}

impl<'a> Iterator for NameAddrList<'a> {
    type Item = Result<NameAddr<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.take()?;
        let end = match list_end(s) {
            Ok(e) => e,
            Err(e) => {
                return Some(Err(Error::Header {
                    header: self.kind,
                    what: e,
                }));
            }
        };
        if end < s.len() {
            self.rest = Some(&s[end + 1..]);
        }
        Some(parse_name_addr(&s[..end]).map_err(header_err(self.kind)))
    }
}

/// Scans `buf` as a SIP message that may be incomplete (stream framing), indexing its headers
/// into `headers` (cleared first). Leading CR/LF bytes are skipped (RFC 3261 §7.5). Bytes
/// after the end of the body (as given by Content-Length) are not part of the message; see
/// [`Message::len`].
pub fn parse<'a>(buf: &'a [u8], headers: &'a mut Headers) -> Result<Status<Message<'a>>, Error> {
    headers.list.clear();
    if buf.len() >= u32::MAX as usize {
        return Err(Error::TooLarge);
    }
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead == buf.len() {
        return if buf.is_empty() {
            Ok(Status::Partial)
        } else {
            Err(Error::KeepAlive)
        };
    }
    let Some(nl) = find_lf(&buf[lead..]) else {
        return Ok(Status::Partial);
    };
    let start_line_end = lead + nl + 1;
    let line_end = strip_cr(buf, lead, lead + nl);
    let start = match common_start_line(buf, lead, line_end) {
        Some(start) => start,
        None => parse_start_line(buf, lead, line_end)?,
    };
    let mut first = [NONE; KIND_COUNT];
    let Some(body_start) = scan_headers(buf, start_line_end, &mut headers.list, &mut first)? else {
        return Ok(Status::Partial);
    };
    let headers: &'a [Header] = &headers.list;
    let mut msg = index(buf, headers, first, start, start_line_end)?;
    let body_end = match msg.content_length {
        Some(n) => body_start + n as usize,
        None => buf.len(),
    };
    if body_end > buf.len() {
        return Ok(Status::Partial);
    }
    msg.body = Span::new(body_start, body_end);
    Ok(Status::Complete(msg))
}

/// Scans one datagram: like [`parse`], but an incomplete message is [`Error::Truncated`]
/// (RFC 3261 §18.3: a UDP message shorter than its Content-Length is discarded).
pub fn parse_datagram<'a>(buf: &'a [u8], headers: &'a mut Headers) -> Result<Message<'a>, Error> {
    match parse(buf, headers)? {
        Status::Complete(m) => Ok(m),
        Status::Partial => Err(Error::Truncated),
    }
}

#[inline]
fn strip_cr(buf: &[u8], start: usize, line_end: usize) -> usize {
    if line_end > start && buf[line_end - 1] == b'\r' {
        line_end - 1
    } else {
        line_end
    }
}

/// The scanning loop, from `from` to the empty line. Returns the body offset, or `None` when
/// the header section is not terminated yet.
///
/// The buffer is read as 64-byte windows of LF and `:` bitmaps (see [`crate::lines`]); each
/// LF bit ends one line, and the line's first colon comes from the same bitmaps, so finding
/// the next line never waits for the work on this one. A line's first colon may lie in an
/// earlier window than its LF: `colon` carries it across. Positions are absolute offsets into
/// `buf`.
fn scan_headers(
    buf: &[u8],
    from: usize,
    list: &mut ArrayVec<Header, MAX_HEADERS>,
    first: &mut [u8; KIND_COUNT],
) -> Result<Option<usize>, Error> {
    let mut base = from;
    let mut line_start = from;
    // The first `:` of the current line, once seen (or `usize::MAX`).
    let mut colon = usize::MAX;
    while base < buf.len() {
        let (mut lfs, colons) = window(buf, base);
        while lfs != 0 {
            let lf = base + lfs.trailing_zeros() as usize;
            lfs &= lfs - 1;
            if colon == usize::MAX {
                // The line started in this window or before (then `lo` is 0); its colon must
                // precede its LF.
                let lo = line_start.saturating_sub(base);
                let before_lf = (1u64 << (lf - base)) - 1;
                let bits = colons & (u64::MAX << lo) & before_lf;
                if bits != 0 {
                    colon = base + bits.trailing_zeros() as usize;
                }
            }
            if let Some(body) = header_line(buf, line_start, colon, lf, list, first)? {
                return Ok(Some(body));
            }
            line_start = lf + 1;
            colon = usize::MAX;
        }
        // The current line goes on past this window: remember its first colon.
        if colon == usize::MAX {
            let lo = line_start.saturating_sub(base);
            if lo < WINDOW {
                let bits = colons & (u64::MAX << lo);
                if bits != 0 {
                    colon = base + bits.trailing_zeros() as usize;
                }
            }
        }
        base += WINDOW;
    }
    Ok(None)
}

/// Indexes one line `buf[start..=lf]` whose first colon is at `colon` (`usize::MAX`: none).
/// Returns the body offset when this is the empty line that ends the header section.
///
/// A header line is `token *WSP ":" value`; the name is what precedes the colon with trailing
/// white space removed. A line starting with SP/HTAB continues the previous header (obsolete
/// folding, RFC 3261 §7.3.1).
#[inline(always)]
fn header_line(
    buf: &[u8],
    start: usize,
    colon: usize,
    lf: usize,
    list: &mut ArrayVec<Header, MAX_HEADERS>,
    first: &mut [u8; KIND_COUNT],
) -> Result<Option<usize>, Error> {
    let is_wsp = |b: u8| b == b' ' || b == b'\t';
    let bad = Error::HeaderLine { at: start as u32 };
    if lf == start {
        return Ok(Some(lf + 1));
    }
    let b0 = buf[start];
    if b0 == b'\r' {
        return if lf == start + 1 {
            Ok(Some(lf + 1))
        } else {
            Err(bad)
        };
    }
    if is_wsp(b0) {
        let last = list.last_mut().ok_or(bad)?;
        let more = trim_lws(&buf[start..strip_cr(buf, start, lf)]);
        if !more.is_empty() {
            if last.value.is_empty() {
                last.value.start = Span::of(buf, more).start;
            }
            last.value.end = Span::of(buf, more).end;
        }
        last.line.end = (lf + 1) as u32;
        return Ok(None);
    }
    if colon > lf {
        return Err(bad);
    }
    let mut name_end = colon;
    while name_end > start && is_wsp(buf[name_end - 1]) {
        name_end -= 1;
    }
    let name = &buf[start..name_end];
    // A name that classifies as a known header is a token by construction (it equals a fixed
    // name up to the case of its letters); only unknown names need the token check (which
    // also refuses an empty name).
    let kind = HeaderKind::from_name(name);
    if kind == HeaderKind::Other && !is_token_str(name) {
        return Err(bad);
    }
    // The usual `: value\r\n` costs no loop iteration: one SP is skipped without a branch,
    // the loops below only run for more white space.
    let mut value_end = strip_cr(buf, colon + 1, lf);
    let mut value_start =
        (colon + 1 + usize::from(buf.get(colon + 1) == Some(&b' '))).min(value_end);
    while value_start < value_end && is_wsp(buf[value_start]) {
        value_start += 1;
    }
    while value_end > value_start && is_wsp(buf[value_end - 1]) {
        value_end -= 1;
    }
    let slot = &mut first[kind as usize];
    if *slot == NONE {
        *slot = list.len() as u8;
    } else if matches!(
        kind,
        HeaderKind::CallId | HeaderKind::From | HeaderKind::To | HeaderKind::CSeq
    ) {
        return Err(Error::Duplicate(kind));
    }
    let header = Header {
        kind,
        name: Span::new(start, name_end),
        value: Span::new(value_start, value_end),
        line: Span::new(start, lf + 1),
    };
    list.try_push(header).map_err(|_| Error::TooManyHeaders)?;
    Ok(None)
}

/// Whether `v` is `SIP/2.0` (the letters in any case), with two word comparisons.
#[inline(always)]
fn is_sip_2_0(v: &[u8]) -> bool {
    match v {
        [a, b, c, d, e, f, g] => {
            // Bit 0x20 forced on the three letters only: exact for letters, and no other byte
            // maps onto one.
            u32::from_le_bytes([*a, *b, *c, *d]) | 0x0020_2020 == u32::from_le_bytes(*b"sip/")
                && [*e, *f, *g] == *b"2.0"
        }
        _ => false,
    }
}

/// The start line in the forms nearly every message uses (`SIP/2.0 200 OK`, `INVITE
/// sip:… SIP/2.0`), checked in one pass with no searching; `None` sends anything else to
/// [`parse_start_line`], which accepts exactly the same lines and names what is wrong with
/// the others.
#[inline(always)]
fn common_start_line(buf: &[u8], start: usize, end: usize) -> Option<StartLine<'_>> {
    let line = buf.get(start..end)?;
    if line.len() >= 12 && is_sip_2_0(&line[..7]) {
        let [b' ', d0, d1, d2, b' '] = line[7..12] else {
            return None;
        };
        if !(d0.is_ascii_digit() && d1.is_ascii_digit() && d2.is_ascii_digit()) {
            return None;
        }
        let code = u16::from(d0 - b'0') * 100 + u16::from(d1 - b'0') * 10 + u16::from(d2 - b'0');
        let reason = &line[12..];
        if !(100..=699).contains(&code) || reason.iter().any(|&b| b < 0x20 && b != b'\t') {
            return None;
        }
        return Some(StartLine::Response(StatusLine { code, reason }));
    }
    let method_len = line.iter().position(|&b| !is_token(b))?;
    if method_len == 0 || line[method_len] != b' ' {
        return None;
    }
    let uri_start = method_len + 1;
    let uri_len = line[uri_start..].iter().position(|&b| !is_uric(b))?;
    let uri_end = uri_start + uri_len;
    if line[uri_end] != b' ' || !is_sip_2_0(&line[uri_end + 1..]) {
        return None;
    }
    let uri_bytes = &line[uri_start..uri_end];
    // Scheme: a letter, then URI characters up to a `:` that is not the last byte.
    let colon = uri_bytes.iter().position(|&b| b == b':')?;
    if colon == 0 || colon + 1 == uri_bytes.len() || !uri_bytes[0].is_ascii_alphabetic() {
        return None;
    }
    let method = &line[..method_len];
    Some(StartLine::Request(RequestLine {
        method,
        method_kind: Method::from_bytes(method),
        uri_bytes,
        uri_span: Span::new(start + uri_start, start + uri_end),
    }))
}

fn parse_version(v: &[u8]) -> Result<(), Error> {
    if eq_ic(v, b"SIP/2.0") {
        return Ok(());
    }
    // A well-formed other version gets 505; anything else is a malformed line.
    let malformed = Err(Error::StartLine("malformed SIP version"));
    let Some(rest) = v.get(..4).filter(|p| eq_ic(p, b"SIP/")).map(|_| &v[4..]) else {
        return malformed;
    };
    match rest.iter().position(|&b| b == b'.') {
        Some(d)
            if d > 0
                && d + 1 < rest.len()
                && rest[..d].iter().all(u8::is_ascii_digit)
                && rest[d + 1..].iter().all(u8::is_ascii_digit) =>
        {
            Err(Error::Version)
        }
        _ => malformed,
    }
}

fn parse_start_line(buf: &[u8], start: usize, end: usize) -> Result<StartLine<'_>, Error> {
    let line = &buf[start..end];
    let Some(sp1) = memchr::memchr(b' ', line) else {
        return Err(Error::StartLine("no space in start line"));
    };
    let first = &line[..sp1];
    let rest = &line[sp1 + 1..];
    // `SIP/` cannot begin a method (a token has no `/`), so this is a status line.
    if first.len() > 4 && eq_ic(&first[..4], b"SIP/") {
        parse_version(first)?;
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        if rest.len() < 3 || !rest[..3].iter().all(u8::is_ascii_digit) {
            return Err(Error::StartLine("status code is not three digits"));
        }
        let code = u16::from(rest[0] - b'0') * 100
            + u16::from(rest[1] - b'0') * 10
            + u16::from(rest[2] - b'0');
        if !(100..=699).contains(&code) {
            return Err(Error::StartLine("status code out of range"));
        }
        let reason = match rest.get(3) {
            None => &rest[3..],
            Some(b' ') => &rest[4..],
            Some(_) => return Err(Error::StartLine("status code is not three digits")),
        };
        if reason.iter().any(|&b| b < 0x20 && b != b'\t') {
            return Err(Error::StartLine("control character in reason phrase"));
        }
        return Ok(StartLine::Response(StatusLine { code, reason }));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    if !is_token_str(first) {
        return Err(Error::StartLine("method is not a token"));
    }
    let Some(sp2) = memchr::memchr(b' ', rest) else {
        return Err(Error::StartLine("request line has no SIP version"));
    };
    let uri_bytes = &rest[..sp2];
    let version = &rest[sp2 + 1..];
    if version.contains(&b' ') || uri_bytes.is_empty() {
        return Err(Error::StartLine(
            "request line is not METHOD SP URI SP VERSION",
        ));
    }
    parse_version(version)?;
    // A cheap syntax check; the full parse is lazy (`RequestLine::uri`).
    if let Some(&bad) = uri_bytes.iter().find(|&&b| !is_uric(b)) {
        let _ = bad;
        return Err(Error::RequestUri(crate::UriError::Character));
    }
    let scheme_ok = uri_bytes
        .iter()
        .position(|&b| b == b':')
        .is_some_and(|c| c > 0 && c + 1 < uri_bytes.len() && uri_bytes[0].is_ascii_alphabetic());
    if !scheme_ok {
        return Err(Error::RequestUri(crate::UriError::Scheme));
    }
    Ok(StartLine::Request(RequestLine {
        method: first,
        method_kind: Method::from_bytes(first),
        uri_bytes,
        uri_span: Span::of(buf, uri_bytes),
    }))
}

fn header_err(header: HeaderKind) -> impl Fn(&'static str) -> Error {
    move |what| Error::Header { header, what }
}

/// The short second pass: duplicates, mandatory headers, and the cheap scalar values.
fn index<'a>(
    buf: &'a [u8],
    headers: &'a [Header],
    first: [u8; KIND_COUNT],
    start: StartLine<'a>,
    start_line_end: usize,
) -> Result<Message<'a>, Error> {
    let mut content_length: Option<u32> = None;
    let cl_first = first[HeaderKind::ContentLength as usize];
    if cl_first != NONE {
        // Several Content-Length headers must agree (they rarely appear twice: one pass).
        for h in &headers[usize::from(cl_first)..] {
            if h.kind == HeaderKind::ContentLength {
                let n = parse_content_length(h.value.get(buf))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(Error::Duplicate(HeaderKind::ContentLength));
                }
                content_length = Some(n);
            }
        }
    }
    let get = |kind: HeaderKind| -> Result<&'a [u8], Error> {
        match first[kind as usize] {
            NONE => Err(Error::Missing(kind)),
            i => Ok(headers[usize::from(i)].value.get(buf)),
        }
    };
    get(HeaderKind::Via)?;
    get(HeaderKind::From)?;
    get(HeaderKind::To)?;
    let call_id = get(HeaderKind::CallId)?;
    if call_id.is_empty() {
        return Err(Error::Header {
            header: HeaderKind::CallId,
            what: "empty value",
        });
    }
    let cseq_value = get(HeaderKind::CSeq)?;
    let cseq = match common_cseq(cseq_value) {
        Some(cseq) => cseq,
        None => parse_cseq(cseq_value).map_err(header_err(HeaderKind::CSeq))?,
    };
    if let StartLine::Request(r) = &start
        && r.method != cseq.method
    {
        return Err(Error::CSeqMethodMismatch);
    }
    // With several Max-Forwards headers the first counts, as in Kamailio.
    let max_forwards = match get(HeaderKind::MaxForwards) {
        Ok(v) => Some(parse_u32(v, u64::from(u32::MAX)).ok_or(Error::Header {
            header: HeaderKind::MaxForwards,
            what: "not a number below 2^32",
        })?),
        Err(_) => None,
    };
    Ok(Message {
        buf,
        headers,
        start,
        start_line_end: start_line_end as u32,
        body: Span::new(buf.len(), buf.len()),
        first,
        call_id,
        cseq,
        max_forwards,
        content_length,
    })
}

/// CSeq in its usual form, `1*9DIGIT SP token` (nine digits stay below 2^31); `None` sends
/// anything else to `parse_cseq`, which gives the same answer for these values.
#[inline(always)]
fn common_cseq(v: &[u8]) -> Option<CSeq<'_>> {
    let digits = v.iter().position(|b| !b.is_ascii_digit())?;
    if digits == 0 || digits > 9 || v[digits] != b' ' {
        return None;
    }
    let method = &v[digits + 1..];
    if !is_token_str(method) {
        return None;
    }
    let seq = v[..digits]
        .iter()
        .fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
    Some(CSeq { seq, method })
}

fn parse_content_length(v: &[u8]) -> Result<u32, Error> {
    parse_u32(v, u64::from(u32::MAX)).ok_or(Error::Header {
        header: HeaderKind::ContentLength,
        what: "not a non-negative number",
    })
}

impl<'a> Message<'a> {
    /// The buffer the message was scanned from (possibly longer than the message).
    pub fn buf(&self) -> &'a [u8] {
        self.buf
    }

    /// Length of the message in the buffer, body included: bytes after it (a second message
    /// in one datagram, padding) are not part of it.
    pub fn len(&self) -> usize {
        self.body.end as usize
    }

    /// Always false: a message has at least a start line.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The start line.
    pub fn start_line(&self) -> &StartLine<'a> {
        &self.start
    }

    /// The request line, for a request.
    pub fn request(&self) -> Option<&RequestLine<'a>> {
        match &self.start {
            StartLine::Request(r) => Some(r),
            StartLine::Response(_) => None,
        }
    }

    /// The status line, for a response.
    pub fn response(&self) -> Option<&StatusLine<'a>> {
        match &self.start {
            StartLine::Response(s) => Some(s),
            StartLine::Request(_) => None,
        }
    }

    /// Offset just after the start line's line break: where headers start (and where a new
    /// top Via is inserted).
    pub fn start_line_end(&self) -> usize {
        self.start_line_end as usize
    }

    /// Every header line in message order.
    pub fn headers(&self) -> &'a [Header] {
        self.headers
    }

    /// The first header line of a recognised kind.
    pub fn first_header(&self, kind: HeaderKind) -> Option<&'a Header> {
        match self.first[kind as usize] {
            NONE => None,
            i => Some(&self.headers[usize::from(i)]),
        }
    }

    /// The value of the first header with this name (case-insensitive; a long name also finds
    /// its compact form and vice versa), e.g. for `$hdr(X-Tenant)` templates.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        match HeaderKind::from_name(name) {
            HeaderKind::Other => self.headers_named(name).next(),
            kind => self.first_header(kind).map(|h| h.value.get(self.buf)),
        }
    }

    /// The values of every header line with this name, in order.
    pub fn headers_named<'s>(&'s self, name: &'s [u8]) -> impl Iterator<Item = &'a [u8]> + 's {
        let kind = HeaderKind::from_name(name);
        let buf = self.buf;
        self.headers
            .iter()
            .filter(move |h| {
                if kind == HeaderKind::Other {
                    h.kind == HeaderKind::Other && eq_ic(h.name.get(buf), name)
                } else {
                    h.kind == kind
                }
            })
            .map(move |h| h.value.get(buf))
    }

    fn value_of(&self, kind: HeaderKind) -> &'a [u8] {
        self.first_header(kind)
            .map_or(&[], |h| h.value.get(self.buf))
    }

    /// The Call-ID value, trimmed (folding inside kept as on the wire).
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The From header, parsed.
    pub fn from(&self) -> Result<NameAddr<'a>, Error> {
        parse_name_addr(self.value_of(HeaderKind::From)).map_err(header_err(HeaderKind::From))
    }

    /// The To header, parsed.
    pub fn to(&self) -> Result<NameAddr<'a>, Error> {
        parse_name_addr(self.value_of(HeaderKind::To)).map_err(header_err(HeaderKind::To))
    }

    /// The CSeq header.
    pub fn cseq(&self) -> &CSeq<'a> {
        &self.cseq
    }

    /// The topmost Via value, parsed.
    pub fn top_via(&self) -> Result<Via<'a>, Error> {
        match parse_via_list(self.value_of(HeaderKind::Via)).next() {
            Some(v) => v.map_err(header_err(HeaderKind::Via)),
            None => Err(Error::Missing(HeaderKind::Via)),
        }
    }

    /// Every Via value, top first; parsing stops at the first malformed value (yielded as an
    /// error).
    pub fn vias(&self) -> impl Iterator<Item = Result<Via<'a>, Error>> + 'a {
        let buf = self.buf;
        let mut failed = false;
        self.headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Via)
            .flat_map(move |h| parse_via_list(h.value.get(buf)))
            .map(|v| v.map_err(header_err(HeaderKind::Via)))
            .take_while(move |v| {
                let go = !failed;
                failed |= v.is_err();
                go
            })
    }

    /// The bytes that remove the top Via: its whole line when it is alone there, otherwise the
    /// value and the separator up to the next value.
    pub fn top_via_cut(&self) -> Result<Span, Error> {
        let h = self
            .first_header(HeaderKind::Via)
            .ok_or(Error::Missing(HeaderKind::Via))?;
        let mut values = parse_via_list(h.value.get(self.buf));
        let top = values
            .next()
            .ok_or(Error::Missing(HeaderKind::Via))?
            .map_err(header_err(HeaderKind::Via))?;
        match values.next() {
            None => Ok(h.line),
            Some(next) => {
                let next = next.map_err(header_err(HeaderKind::Via))?;
                Ok(Span::new(
                    Span::of(self.buf, top.value).start as usize,
                    Span::of(self.buf, next.value).start as usize,
                ))
            }
        }
    }

    /// The first Max-Forwards value, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards
    }

    /// The Content-Length value, if the header is present.
    pub fn content_length(&self) -> Option<u32> {
        self.content_length
    }

    /// Where the body is: from after the empty line to Content-Length bytes later (or the end
    /// of the buffer when there is no Content-Length).
    pub fn body_span(&self) -> Span {
        self.body
    }

    /// The body bytes.
    pub fn body(&self) -> &'a [u8] {
        self.body.get(self.buf)
    }

    /// Every Route value in order (all Route header lines, each split at commas).
    pub fn routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + 'a {
        self.list_values(HeaderKind::Route)
    }

    /// Every Record-Route value in order.
    pub fn record_routes(&self) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + 'a {
        self.list_values(HeaderKind::RecordRoute)
    }

    fn list_values(
        &self,
        kind: HeaderKind,
    ) -> impl Iterator<Item = Result<NameAddr<'a>, Error>> + 'a {
        let buf = self.buf;
        self.headers
            .iter()
            .filter(move |h| h.kind == kind)
            .flat_map(move |h| NameAddrList {
                rest: Some(h.value.get(buf)),
                kind,
            })
    }

    /// The first value of the first Route header, and the bytes that remove it (its line, or
    /// the value and its separator when more values follow). `None` without a Route header.
    pub fn first_route(&self) -> Option<Result<(NameAddr<'a>, Span), Error>> {
        self.first_header(HeaderKind::Route)
            .map(|h| self.first_list_value(h, HeaderKind::Route))
    }

    /// The first value of the first Record-Route header, with its removal span.
    pub fn first_record_route(&self) -> Option<Result<(NameAddr<'a>, Span), Error>> {
        self.first_header(HeaderKind::RecordRoute)
            .map(|h| self.first_list_value(h, HeaderKind::RecordRoute))
    }

    fn first_list_value(
        &self,
        h: &Header,
        kind: HeaderKind,
    ) -> Result<(NameAddr<'a>, Span), Error> {
        let value = h.value.get(self.buf);
        let end = list_end(value).map_err(header_err(kind))?;
        let na = parse_name_addr(&value[..end]).map_err(header_err(kind))?;
        if end == value.len() {
            return Ok((na, h.line));
        }
        let next = trim_lws(&value[end + 1..]);
        if next.is_empty() {
            return Err(Error::Header {
                header: kind,
                what: "empty value after comma",
            });
        }
        Ok((
            na,
            Span::new(
                h.value.start as usize,
                Span::of(self.buf, next).start as usize,
            ),
        ))
    }

    /// The Digest credentials Kamailio's dispatcher hashes for algorithm 5: the first
    /// Proxy-Authorization header if it is Digest, otherwise the first Authorization header if
    /// it is Digest.
    pub fn digest_credentials(&self) -> Option<DigestCredentials<'a>> {
        let get = |k| {
            self.first_header(k)
                .and_then(|h| parse_digest(h.value.get(self.buf)))
        };
        get(HeaderKind::ProxyAuthorization).or_else(|| get(HeaderKind::Authorization))
    }

    /// Parses everything the scan leaves for later: the Request-URI, From, To, every Via, every
    /// Route and Record-Route value. A message that passes is fully well-formed in
    /// every part routing may read; [`crate::Error`] says which part is not.
    pub fn validate(&self) -> Result<(), Error> {
        if let Some(r) = self.request() {
            r.uri()?;
        }
        self.from()?;
        self.to()?;
        for v in self.vias() {
            v?;
        }
        for r in self.routes().chain(self.record_routes()) {
            r?;
        }
        if let Some(r) = self.first_route() {
            r?;
        }
        if let Some(r) = self.first_record_route() {
            r?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod rfc4475;
