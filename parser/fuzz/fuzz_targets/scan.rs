//! Any bytes through the scanner and every accessor: no panic, every span it hands out lies
//! inside the buffer, and the header index describes the bytes exactly (checked here byte by
//! byte, independently of the scanner's bitmap search): the lines tile the header section,
//! each ends with LF and contains no other LF except before SP/HTAB (folding), each name is a
//! token followed by optional white space and the line's first colon, and each value is the
//! rest of the line without surrounding white space.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipdisp_parser::{Headers, Status, parse, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let mut h = Headers::new();
    if let Ok(Status::Complete(m)) = parse(data, &mut h) {
        assert!(m.len() <= data.len());
    }
    let mut h = Headers::new();
    let Ok(m) = parse_datagram(data, &mut h) else {
        return;
    };
    assert!(m.len() <= data.len());
    let mut next_line = m.start_line_end();
    for hdr in m.headers() {
        assert!(hdr.line.end as usize <= data.len());
        assert!(hdr.name.start <= hdr.name.end && hdr.value.start <= hdr.value.end);
        let name = hdr.name.get(data);
        assert!(m.header(name).is_some());
        check_line(data, hdr, next_line);
        next_line = hdr.line.end as usize;
    }
    // After the last header line comes the empty line, then the body.
    let body = m.body_span().start as usize;
    assert!(
        (body == next_line + 1 && data[next_line] == b'\n')
            || (body == next_line + 2 && &data[next_line..body] == b"\r\n"),
        "empty line expected at {next_line}"
    );
    let _ = m.validate();
    let _ = m.from();
    let _ = m.to();
    let _ = m.top_via_cut();
    let _ = m.vias().count();
    let _ = m.digest_credentials();
    let _ = m.first_route();
    let _ = m.first_record_route();
    if let Some(r) = m.request() {
        let _ = r.uri();
    }
    let _ = m.body();
});

fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn check_line(data: &[u8], hdr: &sipdisp_parser::Header, starts_at: usize) {
    let (start, end) = (hdr.line.start as usize, hdr.line.end as usize);
    assert_eq!(start, starts_at, "header lines must tile the header section");
    let line = &data[start..end];
    assert_eq!(line.last(), Some(&b'\n'));
    for (i, &b) in line[..line.len() - 1].iter().enumerate() {
        if b == b'\n' {
            assert!(matches!(line[i + 1], b' ' | b'\t'), "LF inside a line must fold");
        }
    }
    let name = hdr.name.get(data);
    assert_eq!(hdr.name.start as usize, start);
    assert!(!name.is_empty() && name.iter().all(|&b| is_token(b)));
    let colon = line.iter().position(|&b| b == b':').expect("a header line has a colon");
    assert!(line[name.len()..colon].iter().all(|&b| b == b' ' || b == b'\t'));
    let value = hdr.value.get(data);
    assert!(hdr.value.start as usize > start + colon && (hdr.value.end as usize) < end);
    assert!(value.first().is_none_or(|&b| b != b' ' && b != b'\t'));
    // A stray CR before the line's CRLF stays in the value (as it always has): only SP/HTAB
    // are trimmed.
    assert!(value.last().is_none_or(|&b| b != b' ' && b != b'\t'));
    // Only white space between the colon and the value, and after it up to the line end.
    let before = &data[start + colon + 1..hdr.value.start as usize];
    assert!(before.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')));
    let after = &data[hdr.value.end as usize..end];
    assert!(after.iter().all(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')));
}
