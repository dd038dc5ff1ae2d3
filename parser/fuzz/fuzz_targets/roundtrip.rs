//! parse → plan → flatten → parse: whatever edits the first byte selects, a message that
//! validated before still parses and validates after, with the same body, Call-ID and CSeq.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sipdisp_parser::{Headers, Plan, Uri, parse_datagram};

fuzz_target!(|input: &[u8]| {
    let Some((&ops, data)) = input.split_first() else {
        return;
    };
    let mut h = Headers::new();
    let Ok(m) = parse_datagram(data, &mut h) else {
        return;
    };
    if m.validate().is_err() {
        return;
    }
    // The edits add up to three header lines; a message already at the index capacity would
    // come back as `TooManyHeaders` from our own scanner (a capacity limit, not a rewrite bug).
    if m.headers().len() + 3 > sipdisp_parser::MAX_HEADERS {
        return;
    }
    let dest = Uri::parse(b"sip:10.0.0.1:5070;transport=udp").unwrap();
    let mut plan = Plan::new(&m);
    let mut removed_only_via = false;
    if m.request().is_some() {
        if ops & 1 != 0 {
            plan.insert_via(b"UDP", b"192.0.2.1", Some(5060), b"z9hG4bK-fuzz", true).unwrap();
        }
        if ops & 2 != 0 {
            plan.set_max_forwards(&m, 69).unwrap();
        }
        if ops & 4 != 0 && m.first_route().is_some() {
            plan.remove_first_route(&m).unwrap();
        }
        if ops & 8 != 0 {
            plan.set_request_uri_host(&m, &dest).unwrap();
        }
        if ops & 16 != 0 {
            plan.insert_record_route(b"sip:192.0.2.1;lr").unwrap();
        }
    } else {
        removed_only_via = m.vias().count() < 2;
        plan.remove_top_via(&m).unwrap();
    }
    let out = plan.to_vec();
    assert_eq!(out.len(), plan.len());
    let mut flat = vec![0u8; plan.len()];
    assert_eq!(plan.flatten_into(&mut flat).unwrap(), out.len());
    assert_eq!(flat, out);
    if removed_only_via {
        return; // a response with no Via left is never forwarded
    }
    let mut h2 = Headers::new();
    let again = parse_datagram(&out, &mut h2).unwrap_or_else(|e| {
        panic!("rebuilt message rejected: {e}\n{:?}", String::from_utf8_lossy(&out))
    });
    again.validate().unwrap();
    assert_eq!(again.body(), m.body());
    assert_eq!(again.call_id(), m.call_id());
    assert_eq!(again.cseq(), m.cseq());
});
