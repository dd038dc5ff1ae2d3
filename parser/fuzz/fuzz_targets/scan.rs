//! Any bytes through the scanner and every accessor: no panic, and every span it hands out
//! lies inside the buffer.
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
    for hdr in m.headers() {
        assert!(hdr.line.end as usize <= data.len());
        assert!(hdr.name.start <= hdr.name.end && hdr.value.start <= hdr.value.end);
        let name = hdr.name.get(data);
        assert!(m.header(name).is_some());
    }
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
