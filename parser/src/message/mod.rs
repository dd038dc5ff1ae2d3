//! The scanner: one pass over a message that indexes its start line and header lines, then
//! parses the values routing needs.
//!
//! The loop at the heart of [`parse`] finds each line end with `memchr` and the name/value
//! separator with a second `memchr` inside the line; a line that starts with SP or HTAB
//! continues the previous header (obsolete line folding, RFC 3261 §7.3.1). Everything it
//! records is a byte range; nothing is copied. A second, short pass over the index parses the
//! handful of recognised headers (Call-ID, From, To, CSeq, Via, Max-Forwards, Content-Length)
//! so that a message with a malformed routing header is rejected before any routing decision.

use arrayvec::ArrayVec;

use crate::error::Error;
use crate::header::{HeaderKind, Method};
use crate::lex::{eq_ic, is_token_str, parse_u32, trim_lws};
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
    /// The Request-URI, parsed.
    pub uri: Uri<'a>,
    /// Where the Request-URI is in the buffer (for rewriting).
    pub uri_span: Span,
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

/// Where the first value of a list header (Via, Route) sits, for removing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FirstValue {
    /// Index of the header line in the header index.
    pub header: u8,
    /// The bytes to cut to remove the value: the whole line when it is the line's only value,
    /// otherwise the value, its comma and the white space up to the next value.
    pub cut: Span,
}

/// A scanned SIP message, borrowing the buffer it was parsed from.
///
/// Guarantees once constructed: the start line is valid (a Request-URI that parses, or a
/// status code 100–699, version `SIP/2.0`); Via, From, To, Call-ID and CSeq are present and
/// well-formed, with From, To, Call-ID and CSeq appearing once; for a request, the CSeq method
/// equals the request method; every Via value parses; Max-Forwards, if present, is a number
/// below 2^32; Content-Length, if present, is consistent and the body is exactly that long.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    buf: &'a [u8],
    start: StartLine<'a>,
    start_line_end: u32,
    headers: ArrayVec<Header, MAX_HEADERS>,
    body: Span,
    call_id: &'a [u8],
    from: NameAddr<'a>,
    to: NameAddr<'a>,
    cseq: CSeq<'a>,
    top_via: Via<'a>,
    top_via_at: FirstValue,
    via_count: u16,
    max_forwards: Option<(u32, u8)>,
    content_length: Option<u32>,
    first_route: Option<u8>,
    first_record_route: Option<u8>,
    authorization: Option<u8>,
    proxy_authorization: Option<u8>,
}

/// Scans `buf` as a SIP message that may be incomplete (stream framing). Leading CR/LF bytes
/// are skipped (RFC 3261 §7.5). Bytes after the end of the body (as given by Content-Length)
/// are not part of the message; see [`Message::len`].
pub fn parse(buf: &[u8]) -> Result<Status<Message<'_>>, Error> {
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
    let Some(nl) = memchr::memchr(b'\n', &buf[lead..]) else {
        return Ok(Status::Partial);
    };
    let line_end = lead + nl;
    let content_end = strip_cr(buf, lead, line_end);
    let start = parse_start_line(buf, lead, content_end)?;
    let mut headers = ArrayVec::<Header, MAX_HEADERS>::new();
    let mut p = line_end + 1;
    // The scanning loop: one iteration per physical line.
    let body_start = loop {
        let Some(nl) = memchr::memchr(b'\n', &buf[p..]) else {
            return Ok(Status::Partial);
        };
        let line_end = p + nl;
        let content_end = strip_cr(buf, p, line_end);
        if content_end == p {
            break line_end + 1;
        }
        match buf[p] {
            b' ' | b'\t' => {
                // Folded continuation of the previous header's value.
                let last = headers
                    .last_mut()
                    .ok_or(Error::HeaderLine { at: p as u32 })?;
                last.value.end = content_end as u32;
                last.line.end = (line_end + 1) as u32;
            }
            _ => {
                let line = &buf[p..content_end];
                let colon = memchr::memchr(b':', line).ok_or(Error::HeaderLine { at: p as u32 })?;
                let name = trim_end_wsp(&line[..colon]);
                if !is_token_str(name) {
                    return Err(Error::HeaderLine { at: p as u32 });
                }
                let header = Header {
                    kind: HeaderKind::from_name(name),
                    name: Span::new(p, p + name.len()),
                    value: Span::new(p + colon + 1, content_end),
                    line: Span::new(p, line_end + 1),
                };
                headers
                    .try_push(header)
                    .map_err(|_| Error::TooManyHeaders)?;
            }
        }
        p = line_end + 1;
    };
    for h in headers.iter_mut() {
        let v = trim_lws(h.value.get(buf));
        h.value = if v.is_empty() {
            Span::new(h.value.end as usize, h.value.end as usize)
        } else {
            Span::of(buf, v)
        };
    }
    let mut msg = index(buf, start, line_end + 1, headers, body_start)?;
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
pub fn parse_datagram(buf: &[u8]) -> Result<Message<'_>, Error> {
    match parse(buf)? {
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

fn trim_end_wsp(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &s[..s.len() - n]
}

fn parse_version(v: &[u8]) -> Result<(), Error> {
    if eq_ic(v, b"SIP/2.0") {
        return Ok(());
    }
    // A well-formed other version gets 505; anything else is a malformed line.
    match v.get(..4) {
        Some(p) if eq_ic(p, b"SIP/") => {
            let rest = &v[4..];
            let dot = rest.iter().position(|&b| b == b'.');
            match dot {
                Some(d)
                    if d > 0
                        && d + 1 < rest.len()
                        && rest[..d].iter().all(u8::is_ascii_digit)
                        && rest[d + 1..].iter().all(u8::is_ascii_digit) =>
                {
                    Err(Error::Version)
                }
                _ => Err(Error::StartLine("malformed SIP version")),
            }
        }
        _ => Err(Error::StartLine("malformed SIP version")),
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
    let uri = Uri::parse(uri_bytes).map_err(Error::RequestUri)?;
    Ok(StartLine::Request(RequestLine {
        method: first,
        method_kind: Method::from_bytes(first),
        uri,
        uri_span: Span::of(buf, uri_bytes),
    }))
}

fn header_err(header: HeaderKind) -> impl Fn(&'static str) -> Error {
    move |what| Error::Header { header, what }
}

/// The second pass: parses the recognised headers and checks the message-level rules.
fn index<'a>(
    buf: &'a [u8],
    start: StartLine<'a>,
    start_line_end: usize,
    headers: ArrayVec<Header, MAX_HEADERS>,
    body_start: usize,
) -> Result<Message<'a>, Error> {
    let mut call_id = None;
    let mut from = None;
    let mut to = None;
    let mut cseq = None;
    let mut top_via: Option<(Via<'a>, FirstValue)> = None;
    let mut via_count: u16 = 0;
    let mut max_forwards = None;
    let mut content_length: Option<u32> = None;
    let (mut route, mut record_route, mut authorization, mut proxy_authorization) =
        (None, None, None, None);
    for (i, h) in headers.iter().enumerate() {
        let value = h.value.get(buf);
        let idx = i as u8;
        match h.kind {
            HeaderKind::CallId => {
                if call_id.is_some() {
                    return Err(Error::Duplicate(HeaderKind::CallId));
                }
                if value.is_empty() {
                    return Err(Error::Header {
                        header: HeaderKind::CallId,
                        what: "empty value",
                    });
                }
                call_id = Some(value);
            }
            HeaderKind::From | HeaderKind::To => {
                let slot = if h.kind == HeaderKind::From {
                    &mut from
                } else {
                    &mut to
                };
                if slot.is_some() {
                    return Err(Error::Duplicate(h.kind));
                }
                *slot = Some(parse_name_addr(value).map_err(header_err(h.kind))?);
            }
            HeaderKind::CSeq => {
                if cseq.is_some() {
                    return Err(Error::Duplicate(HeaderKind::CSeq));
                }
                cseq = Some(parse_cseq(value).map_err(header_err(HeaderKind::CSeq))?);
            }
            HeaderKind::Via => {
                if value.is_empty() {
                    return Err(Error::Header {
                        header: HeaderKind::Via,
                        what: "empty value",
                    });
                }
                for (n, via) in parse_via_list(value).enumerate() {
                    let via = via.map_err(header_err(HeaderKind::Via))?;
                    via_count = via_count.saturating_add(1);
                    match top_via.as_mut() {
                        None => {
                            top_via = Some((
                                via,
                                FirstValue {
                                    header: idx,
                                    cut: h.line,
                                },
                            ))
                        }
                        Some((top, at)) if n == 1 && at.header == idx => {
                            // The top line holds several values: cut only the first one, up
                            // to where the second starts.
                            at.cut = Span::new(
                                Span::of(buf, top.value).start as usize,
                                Span::of(buf, via.value).start as usize,
                            );
                        }
                        Some(_) => {}
                    }
                }
            }
            // With several Max-Forwards headers the first counts, as in Kamailio.
            HeaderKind::MaxForwards if max_forwards.is_none() => {
                let n = parse_u32(value, u64::from(u32::MAX)).ok_or(Error::Header {
                    header: HeaderKind::MaxForwards,
                    what: "not a number below 2^32",
                })?;
                max_forwards = Some((n, idx));
            }
            HeaderKind::ContentLength => {
                let n = parse_u32(value, u64::from(u32::MAX)).ok_or(Error::Header {
                    header: HeaderKind::ContentLength,
                    what: "not a non-negative number",
                })?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(Error::Duplicate(HeaderKind::ContentLength));
                }
                content_length = Some(n);
            }
            HeaderKind::Route => route = route.or(Some(idx)),
            HeaderKind::RecordRoute => record_route = record_route.or(Some(idx)),
            HeaderKind::Authorization => authorization = authorization.or(Some(idx)),
            HeaderKind::ProxyAuthorization => {
                proxy_authorization = proxy_authorization.or(Some(idx))
            }
            _ => {}
        }
    }
    let (top_via, top_via_at) = top_via.ok_or(Error::Missing(HeaderKind::Via))?;
    let from = from.ok_or(Error::Missing(HeaderKind::From))?;
    let to = to.ok_or(Error::Missing(HeaderKind::To))?;
    let call_id = call_id.ok_or(Error::Missing(HeaderKind::CallId))?;
    let cseq = cseq.ok_or(Error::Missing(HeaderKind::CSeq))?;
    if let StartLine::Request(r) = &start {
        if r.method != cseq.method {
            return Err(Error::CSeqMethodMismatch);
        }
    }
    Ok(Message {
        buf,
        start,
        start_line_end: start_line_end as u32,
        headers,
        body: Span::new(body_start, body_start),
        call_id,
        from,
        to,
        cseq,
        top_via,
        top_via_at,
        via_count,
        max_forwards,
        content_length,
        first_route: route,
        first_record_route: record_route,
        authorization,
        proxy_authorization,
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
    pub fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The value of the first header with this name (case-insensitive; a long name also finds
    /// its compact form and vice versa), e.g. for `$hdr(X-Tenant)` templates.
    pub fn header(&self, name: &[u8]) -> Option<&'a [u8]> {
        self.headers_named(name).next()
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

    /// The Call-ID value, trimmed (folding inside kept as on the wire).
    pub fn call_id(&self) -> &'a [u8] {
        self.call_id
    }

    /// The From header.
    pub fn from(&self) -> &NameAddr<'a> {
        &self.from
    }

    /// The To header.
    pub fn to(&self) -> &NameAddr<'a> {
        &self.to
    }

    /// The CSeq header.
    pub fn cseq(&self) -> &CSeq<'a> {
        &self.cseq
    }

    /// The topmost Via value.
    pub fn top_via(&self) -> &Via<'a> {
        &self.top_via
    }

    /// Number of Via values in the message (at least 1).
    pub fn via_count(&self) -> usize {
        usize::from(self.via_count)
    }

    /// Every Via value, top first.
    pub fn vias(&self) -> impl Iterator<Item = Via<'a>> + '_ {
        let buf = self.buf;
        self.headers
            .iter()
            .filter(|h| h.kind == HeaderKind::Via)
            // Every Via was validated by the scanner, so no value is dropped here.
            .flat_map(move |h| parse_via_list(h.value.get(buf)).filter_map(Result::ok))
    }

    /// The bytes that remove the top Via: its whole line when it is alone there, otherwise the
    /// value and its separator.
    pub fn top_via_cut(&self) -> Span {
        self.top_via_at.cut
    }

    /// The first Max-Forwards value and its header line, if present.
    pub fn max_forwards(&self) -> Option<u32> {
        self.max_forwards.map(|(n, _)| n)
    }

    /// The first Max-Forwards header, if present.
    pub fn max_forwards_header(&self) -> Option<&Header> {
        self.max_forwards
            .map(|(_, i)| &self.headers[usize::from(i)])
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

    /// The first value of the first Route header, and the bytes that remove it (its line, or
    /// the value and its separator when more values follow). `None` without a Route header.
    pub fn first_route(&self) -> Option<Result<(NameAddr<'a>, Span), Error>> {
        self.first_route
            .map(|i| self.first_list_value(i, HeaderKind::Route))
    }

    /// The first value of the first Record-Route header, with its removal span.
    pub fn first_record_route(&self) -> Option<Result<(NameAddr<'a>, Span), Error>> {
        self.first_record_route
            .map(|i| self.first_list_value(i, HeaderKind::RecordRoute))
    }

    fn first_list_value(&self, i: u8, kind: HeaderKind) -> Result<(NameAddr<'a>, Span), Error> {
        let h = &self.headers[usize::from(i)];
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
        let get = |i: Option<u8>| {
            i.and_then(|i| parse_digest(self.headers[usize::from(i)].value.get(self.buf)))
        };
        get(self.proxy_authorization).or_else(|| get(self.authorization))
    }
}

#[cfg(test)]
mod tests;
