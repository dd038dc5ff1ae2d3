//! Table-driven scanner tests: every header form, every error, every prefix.

use super::*;

const INVITE: &str = "INVITE sip:bob@biloxi.com SIP/2.0\r\n\
Via: SIP/2.0/UDP pc33.atlanta.com;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@biloxi.com>\r\n\
From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@pc33.atlanta.com>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
v=0\n";

/// Scans with leaked header storage (tests only), and checks the lazy parts too.
fn ok(msg: &str) -> Message<'_> {
    let m = scan(msg.as_bytes()).unwrap_or_else(|e| panic!("{e}: {msg:?}"));
    m.validate()
        .unwrap_or_else(|e| panic!("validate: {e}: {msg:?}"));
    m
}

fn scan(msg: &[u8]) -> Result<Message<'_>, Error> {
    parse_datagram(msg, Box::leak(Box::default()))
}

fn scan_stream(msg: &[u8]) -> Result<Status<Message<'_>>, Error> {
    parse(msg, Box::leak(Box::default()))
}

#[test]
fn rfc3261_invite() {
    let m = ok(INVITE);
    let r = m.request().unwrap();
    assert_eq!(r.method, b"INVITE");
    assert_eq!(r.method_kind, Method::Invite);
    assert_eq!(r.uri().unwrap().raw, b"sip:bob@biloxi.com");
    assert_eq!(r.uri_span.get(m.buf()), b"sip:bob@biloxi.com");
    assert_eq!(m.call_id(), b"a84b4c76e66710@pc33.atlanta.com");
    assert_eq!(m.from().unwrap().uri.user, Some(&b"alice"[..]));
    assert_eq!(m.from().unwrap().tag, Some(&b"1928301774"[..]));
    assert_eq!(m.to().unwrap().uri.host, b"biloxi.com");
    assert_eq!(m.to().unwrap().tag, None);
    assert_eq!(
        *m.cseq(),
        CSeq {
            seq: 314159,
            method: b"INVITE"
        }
    );
    assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bK776asdhds"[..]));
    assert_eq!(m.vias().count(), 1);
    assert_eq!(m.max_forwards(), Some(70));
    assert_eq!(m.content_length(), Some(4));
    assert_eq!(m.body(), b"v=0\n");
    assert_eq!(m.len(), INVITE.len());
    assert_eq!(m.headers().len(), 9);
    assert_eq!(m.header(b"content-type"), Some(&b"application/sdp"[..]));
    assert_eq!(m.header(b"c"), Some(&b"application/sdp"[..]));
    assert_eq!(m.header(b"X-Missing"), None);
    assert!(m.first_route().is_none());
    assert!(m.digest_credentials().is_none());
    assert_eq!(
        &m.buf()[m.start_line_end()..m.start_line_end() + 4],
        b"Via:"
    );
}

#[test]
fn compact_forms_and_case() {
    let m = ok("BYE sip:b@h SIP/2.0\r\n\
v: SIP/2.0/TCP h1;branch=z9hG4bK1\r\n\
i: cid-1\r\n\
f: <sip:a@h>;tag=1\r\n\
t: <sip:b@h>;tag=2\r\n\
CSEQ: 2 BYE\r\n\
l: 0\r\n\
m: <sip:a@h1>\r\n\r\n");
    assert_eq!(m.call_id(), b"cid-1");
    assert_eq!(m.from().unwrap().tag, Some(&b"1"[..]));
    assert_eq!(m.to().unwrap().tag, Some(&b"2"[..]));
    assert_eq!(m.top_via().unwrap().transport, b"TCP");
    assert_eq!(m.content_length(), Some(0));
    assert_eq!(m.header(b"Call-ID"), Some(&b"cid-1"[..]));
    assert_eq!(m.header(b"Contact"), Some(&b"<sip:a@h1>"[..]));
    assert_eq!(m.header(b"L"), Some(&b"0"[..]));
}

#[test]
fn several_vias_in_lines_and_values() {
    let m = ok("SIP/2.0 180 Ringing\r\n\
Via: SIP/2.0/UDP p1;branch=z9hG4bKa, SIP/2.0/UDP p2;branch=z9hG4bKb\r\n\
To: <sip:b@h>;tag=2\r\n\
Via: SIP/2.0/UDP p3;branch=z9hG4bKc;received=192.0.2.9;rport=5070\r\n\
From: <sip:a@h>;tag=1\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\n\r\n");
    let hosts: Vec<&[u8]> = m.vias().map(|v| v.unwrap().host).collect();
    assert_eq!(hosts, [&b"p1"[..], b"p2", b"p3"]);
    assert_eq!(m.vias().count(), 3);
    assert_eq!(m.top_via().unwrap().host, b"p1");
    assert_eq!(
        m.top_via_cut().unwrap().get(m.buf()),
        b"SIP/2.0/UDP p1;branch=z9hG4bKa, "
    );
    let third = m.vias().nth(2).unwrap().unwrap();
    assert_eq!(third.received, Some(&b"192.0.2.9"[..]));
    assert_eq!(third.rport, Some(Some(5070)));
    let resp = m.response().unwrap();
    assert_eq!((resp.code, resp.reason), (180, &b"Ringing"[..]));
    assert!(m.request().is_none());
}

#[test]
fn folding_and_whitespace() {
    let m = ok("OPTIONS sip:h SIP/2.0\r\n\
Via  :\tSIP/2.0/UDP h;\r\n branch=z9hG4bKf\r\n\
Subject: first\r\n\tsecond\r\n\
From:<sip:a@h>;tag=1\r\n\
To\t: \r\n <sip:h>\r\n\
Call-ID:   spaced-id   \r\n\
CSeq: 0009\r\n  OPTIONS\r\n\
Max-Forwards: 70\r\n\
Empty:\r\n\
\r\n");
    assert_eq!(m.top_via().unwrap().branch, Some(&b"z9hG4bKf"[..]));
    assert_eq!(m.header(b"subject"), Some(&b"first\r\n\tsecond"[..]));
    assert_eq!(m.to().unwrap().uri.raw, b"sip:h");
    assert_eq!(m.call_id(), b"spaced-id");
    assert_eq!(m.cseq().seq, 9);
    assert_eq!(m.header(b"Empty"), Some(&b""[..]));
    assert_eq!(m.content_length(), None);
    assert_eq!(m.body(), b"");
}

#[test]
fn lf_line_endings_and_leading_crlf() {
    let m = ok(
        "\r\n\r\nMESSAGE sip:b@h SIP/2.0\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\nFrom: <sip:a@h>;tag=1\nTo: <sip:b@h>\nCall-ID: lf\nCSeq: 5 MESSAGE\nContent-Length: 2\n\nhi",
    );
    assert_eq!(m.call_id(), b"lf");
    assert_eq!(m.body(), b"hi");
    assert_eq!(m.request().unwrap().method_kind, Method::Message);
}

#[test]
fn body_framing() {
    let head = "INFO sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: b\r\nCSeq: 1 INFO\r\n";
    // No Content-Length on a datagram: the rest of the datagram is the body.
    let s = format!("{head}\r\nabc");
    assert_eq!(ok(&s).body(), b"abc");
    // Longer datagram than Content-Length: the extra bytes are not part of the message.
    let s = format!("{head}Content-Length: 2\r\n\r\nabcdef");
    let m = ok(&s);
    assert_eq!(m.body(), b"ab");
    assert_eq!(m.len(), s.len() - 4);
    // Shorter: truncated.
    let s = format!("{head}Content-Length: 20\r\n\r\nabc");
    assert_eq!(scan(s.as_bytes()).unwrap_err(), Error::Truncated);
    assert!(matches!(scan_stream(s.as_bytes()), Ok(Status::Partial)));
    // Same Content-Length twice is fine, different is not.
    let s = format!("{head}Content-Length: 2\r\nl: 2\r\n\r\nab");
    assert_eq!(ok(&s).body(), b"ab");
    let s = format!("{head}Content-Length: 2\r\nl: 3\r\n\r\nabc");
    assert_eq!(
        scan(s.as_bytes()).unwrap_err(),
        Error::Duplicate(HeaderKind::ContentLength)
    );
}

#[test]
fn routes_and_credentials() {
    let m = ok("INVITE sip:b@h SIP/2.0\r\n\
Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Route: <sip:p1;lr>,\r\n <sip:p2;lr>\r\n\
Route: <sip:p3;lr>\r\n\
Record-Route: <sip:rr1;lr>\r\n\
Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n\
Authorization: Digest username=\"sip:bob@x\", realm=\"x\"\r\n\
Authorization: Digest username=\"second\"\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n");
    let (route, cut) = m.first_route().unwrap().unwrap();
    assert_eq!(route.uri.raw, b"sip:p1;lr");
    assert_eq!(cut.get(m.buf()), b"<sip:p1;lr>,\r\n ");
    let (rr, cut) = m.first_record_route().unwrap().unwrap();
    assert_eq!(rr.uri.host, b"rr1");
    assert_eq!(cut.get(m.buf()), b"Record-Route: <sip:rr1;lr>\r\n");
    assert_eq!(m.digest_credentials().unwrap().username, b"sip:bob@x");
    assert_eq!(m.headers_named(b"route").count(), 2);
    assert_eq!(
        m.headers_named(b"Authorization").nth(1),
        Some(&b"Digest username=\"second\""[..])
    );
}

#[test]
fn proxy_authorization_digest_wins() {
    let m = ok(
        "INVITE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\
Authorization: Digest username=\"alice\"\r\n\
Proxy-Authorization: Digest username=\"proxyuser\"\r\n\
From: <sip:a@h>;tag=1\r\nTo: <sip:b@h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n",
    );
    assert_eq!(m.digest_credentials().unwrap().username, b"proxyuser");
}

#[test]
fn max_forwards_first_counts() {
    let m = ok(
        "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nMax-Forwards: 0\r\nMax-Forwards: 70\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    assert_eq!(m.max_forwards(), Some(0));
    assert_eq!(
        m.first_header(HeaderKind::MaxForwards)
            .unwrap()
            .value
            .get(m.buf()),
        b"0"
    );
}

#[test]
fn responses() {
    for (line, code, reason) in [
        ("SIP/2.0 100 \r\n", 100, ""),
        ("SIP/2.0 100\r\n", 100, ""),
        ("sip/2.0 699 x y z\r\n", 699, "x y z"),
        ("SIP/2.0 200 \u{2603} Schnee\r\n", 200, "\u{2603} Schnee"),
    ] {
        let s = format!(
            "{line}Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n"
        );
        let m = ok(&s);
        let st = m.response().unwrap();
        assert_eq!((st.code, st.reason), (code, reason.as_bytes()), "{line:?}");
    }
}

const TAIL: &str = "Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n";

#[test]
fn errors() {
    use HeaderKind as K;
    let hdr = |header, what| Error::Header { header, what };
    let cases: Vec<(String, Error)> = vec![
        ("\r\n\r\n".into(), Error::KeepAlive),
        (format!("INVITE sip:h SIP/3.0\r\n{TAIL}"), Error::Version),
        (format!("INVITE sip:h SIP/2.0 \r\n{TAIL}"), Error::StartLine("request line is not METHOD SP URI SP VERSION")),
        (format!("INVITE  sip:h SIP/2.0\r\n{TAIL}"), Error::StartLine("request line is not METHOD SP URI SP VERSION")),
        (format!("INVITE sip:h; lr SIP/2.0\r\n{TAIL}"), Error::StartLine("request line is not METHOD SP URI SP VERSION")),
        (format!("INVITE <sip:h> SIP/2.0\r\n{TAIL}"), Error::RequestUri(crate::UriError::Character)),
        (format!("INVITE sip:h HTTP/1.1\r\n{TAIL}"), Error::StartLine("malformed SIP version")),
        (format!("INV@TE sip:h SIP/2.0\r\n{TAIL}"), Error::StartLine("method is not a token")),
        (format!("INVITE\r\n{TAIL}"), Error::StartLine("no space in start line")),
        (format!("SIP/2.0 4294967301 big\r\n{TAIL}"), Error::StartLine("status code is not three digits")),
        (format!("SIP/2.0 099 low\r\n{TAIL}"), Error::StartLine("status code out of range")),
        (format!("SIP/2.0 20 OK\r\n{TAIL}"), Error::StartLine("status code is not three digits")),
        (format!("SIP/7.0 200 OK\r\n{TAIL}"), Error::Version),
        (format!("INVITE sip:h SIP/2.0\r\nno colon here\r\n{TAIL}"), Error::HeaderLine { at: 22 }),
        (format!("INVITE sip:h SIP/2.0\r\n Folded first\r\n{TAIL}"), Error::HeaderLine { at: 22 }),
        (format!("INVITE sip:h SIP/2.0\r\nBad Name: x\r\n{TAIL}"), Error::HeaderLine { at: 22 }),
        (format!("INVITE sip:h SIP/2.0\r\n: x\r\n{TAIL}"), Error::HeaderLine { at: 22 }),
        (format!("INVITE sip:h SIP/2.0\r\nCall-ID: again\r\n{TAIL}"), Error::Duplicate(K::CallId)),
        (format!("INVITE sip:h SIP/2.0\r\nf: <sip:x@y>\r\n{TAIL}"), Error::Duplicate(K::From)),
        (format!("INVITE sip:h SIP/2.0\r\nt: <sip:x@y>\r\n{TAIL}"), Error::Duplicate(K::To)),
        (format!("INVITE sip:h SIP/2.0\r\nCSeq: 1 INVITE\r\n{TAIL}"), Error::Duplicate(K::CSeq)),
        (format!("INVITE sip:h SIP/2.0\r\nMax-Forwards: -1\r\n{TAIL}"), hdr(K::MaxForwards, "not a number below 2^32")),
        (format!("INVITE sip:h SIP/2.0\r\nContent-Length: -999\r\n{TAIL}"), hdr(K::ContentLength, "not a non-negative number")),
        (format!("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.15;;,;,,\r\n{TAIL}"), hdr(K::Via, "empty or invalid parameter name")),
        (format!("INVITE sip:h SIP/2.0\r\nVia:\r\n{TAIL}"), hdr(K::Via, "empty value")),
        ("INVITE sip:h SIP/2.0\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n".into(), Error::Missing(K::Via)),
        ("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n".into(), Error::Missing(K::From)),
        ("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@h>\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\n\r\n".into(), Error::Missing(K::To)),
        ("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@h>\r\nTo: <sip:h>\r\nCSeq: 1 INVITE\r\n\r\n".into(), Error::Missing(K::CallId)),
        ("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@h>\r\nTo: <sip:h>\r\nCall-ID: r\r\n\r\n".into(), Error::Missing(K::CSeq)),
        ("INVITE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a\r\nFrom: <sip:a@h>\r\nTo: <sip:h>\r\nCall-ID:  \r\nCSeq: 1 INVITE\r\n\r\n".into(), hdr(K::CallId, "empty value")),
        (format!("OPTIONS sip:h SIP/2.0\r\n{TAIL}"), Error::CSeqMethodMismatch),
        (format!("INVITE sip:h SIP/2.0\r\nFrom: Bell, Alexander <sip:a@b>\r\n{}", TAIL.replace("From: <sip:a@h>;tag=1\r\n", "")), hdr(K::From, "display name is neither tokens nor a quoted string")),
        (format!("INVITE sip:h SIP/2.0\r\n{}", TAIL.replace("1 INVITE", "36893488147419103232 INVITE")), hdr(K::CSeq, "sequence number missing or not below 2^31")),
    ];
    for (msg, err) in cases {
        // Scan errors and lazy-parse errors together: what `validate` rejects.
        let got = scan(msg.as_bytes()).and_then(|m| m.validate());
        assert_eq!(got, Err(err), "{msg:?}");
    }
}

#[test]
fn too_many_headers() {
    let mut s = String::from("INVITE sip:h SIP/2.0\r\n");
    for i in 0..MAX_HEADERS {
        s.push_str(&format!("X-H{i}: {i}\r\n"));
    }
    s.push_str(TAIL);
    assert_eq!(scan(s.as_bytes()).unwrap_err(), Error::TooManyHeaders);
}

#[test]
fn header_lookup_ignores_other_kinds() {
    let s = format!(
        "INVITE sip:h SIP/2.0\r\nX-Tenant: acme\r\nx-tenant: second\r\nX-Other: no\r\n{TAIL}"
    );
    let m = ok(&s);
    assert_eq!(m.header(b"X-TENANT"), Some(&b"acme"[..]));
    assert_eq!(m.headers_named(b"x-tenant").count(), 2);
    assert_eq!(m.header(b"X-Tenan"), None);
}

/// Every strict prefix of a complete message is incomplete or malformed, never complete and
/// never a panic (RFC 3261 §18.3 datagram semantics rely on this).
#[test]
fn every_prefix_is_partial_or_error() {
    let with_cl_0 = "BYE sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n";
    for msg in [INVITE, with_cl_0] {
        let bytes = msg.as_bytes();
        assert!(matches!(scan_stream(bytes), Ok(Status::Complete(_))));
        for n in 0..bytes.len() {
            match scan_stream(&bytes[..n]) {
                Ok(Status::Partial) | Err(_) => {}
                Ok(Status::Complete(m)) => panic!("prefix of {n} bytes parsed as complete: {m:?}"),
            }
            assert!(scan(&bytes[..n]).is_err());
        }
    }
}

/// Found by the `roundtrip` fuzz target: a malformed second Route header must fail
/// validation, or removing the first Route would expose it.
#[test]
fn every_route_value_is_validated() {
    let bytes = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/fuzz-roundtrip-second-route.bin"
    ))
    .unwrap();
    let data = &bytes[1..]; // the first byte selects the fuzz target's edits
    let mut h = Headers::new();
    if let Ok(m) = parse_datagram(data, &mut h) {
        assert!(m.validate().is_err());
    }
    let m = ok(
        "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nRoute: <sip:p1;lr>\r\nRoute: <sip:p2;lr>, <sip:p3;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n\r\n",
    );
    let hosts: Vec<&[u8]> = m.routes().map(|r| r.unwrap().uri.host).collect();
    assert_eq!(hosts, [&b"p1"[..], b"p2", b"p3"]);
    let bad = "OPTIONS sip:h SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\nRoute: <sip:p1;lr>\r\nRoute: \"open <sip:p2;lr>\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:h>\r\nCall-ID: r\r\nCSeq: 1 OPTIONS\r\n\r\n";
    assert!(scan(bad.as_bytes()).unwrap().validate().is_err());
}

/// A deterministic xorshift generator for the randomized equivalence tests below.
fn rng(mut s: u64) -> impl FnMut() -> u64 {
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Random bytes drawn mostly from `parts`, with the odd arbitrary byte.
fn pick(rnd: &mut impl FnMut() -> u64, parts: &[&[u8]], out: &mut Vec<u8>) {
    if rnd().is_multiple_of(16) {
        out.push(rnd() as u8);
    } else {
        out.extend_from_slice(parts[(rnd() % parts.len() as u64) as usize]);
    }
}

#[test]
fn start_line_fast_path_agrees_with_the_general_parser() {
    let mut rnd = rng(0x2545_f491_4f6c_dd1d);
    let versions: &[&[u8]] = &[
        b"SIP/2.0",
        b"sip/2.0",
        b"SiP/2.0",
        b"SIP/2.1",
        b"SIP/20",
        b"SIP/2.0 ",
    ];
    let spaces: &[&[u8]] = &[b" ", b" ", b" ", b"  ", b"\t", b""];
    let codes: &[&[u8]] = &[
        b"200", b"100", b"699", b"099", b"700", b"1000", b"20", b"2x0",
    ];
    let reasons: &[&[u8]] = &[b"OK", b"", b"Session Progress", b"\x01", b"\t", b"\xc3\xa9"];
    let methods: &[&[u8]] = &[b"INVITE", b"ACK", b"REGISTER", b"inv@te", b"", b"X-Y.Z"];
    let uris: &[&[u8]] = &[
        b"sip:bob@h",
        b"tel:+1",
        b"sip:",
        b":x",
        b"1sip:a",
        b"sip:a<b",
        b"sip:a;lr",
        b"s:%41",
        b"sip:\xc3\xa9",
        b"",
    ];
    let mut agreed = 0;
    for _ in 0..200_000 {
        let mut line = Vec::new();
        let parts: [&[&[u8]]; 5] = if rnd().is_multiple_of(2) {
            [versions, spaces, codes, spaces, reasons]
        } else {
            [methods, spaces, uris, spaces, versions]
        };
        for part in parts {
            pick(&mut rnd, part, &mut line);
        }
        if let Some(fast) = common_start_line(&line, 0, line.len()) {
            assert_eq!(
                Ok(fast),
                parse_start_line(&line, 0, line.len()),
                "{:?}",
                String::from_utf8_lossy(&line)
            );
            agreed += 1;
        }
    }
    // The generator must reach the fast path often enough for this test to mean something.
    assert!(agreed > 5_000, "only {agreed} lines took the fast path");
}

#[test]
fn cseq_fast_path_agrees_with_the_general_parser() {
    let mut rnd = rng(0x9e37_79b9_7f4a_7c15);
    let pieces: &[&[u8]] = &[
        b"1",
        b"0",
        b"99999",
        b"2147483647",
        b"2147483648",
        b"000000001",
        b" ",
        b"\t",
        b"INVITE",
        b"BYE",
        b"@",
        b"\r\n ",
        b"-",
    ];
    let mut agreed = 0;
    for _ in 0..200_000 {
        // Mostly number, white space, method: the shape the fast path takes.
        let mut v = Vec::new();
        for _ in 0..3 {
            pick(&mut rnd, pieces, &mut v);
        }
        if let Some(fast) = common_cseq(&v) {
            assert_eq!(
                Ok(fast),
                crate::values::parse_cseq(&v),
                "{:?}",
                String::from_utf8_lossy(&v)
            );
            agreed += 1;
        }
    }
    assert!(agreed > 2_000, "only {agreed} values took the fast path");
}
