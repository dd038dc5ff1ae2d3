//! Proves the scanner and the rewrite plan never touch the heap.
//!
//! A counting global allocator wraps the system one; the counter is per thread so that the
//! test harness's own threads do not disturb the measurement.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use sipdisp_parser::{Headers, Plan, Uri, parse_datagram};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: defers every call to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const INVITE: &[u8] = b"INVITE sip:+4930123@pbx.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-77ba;rport, SIP/2.0/TCP h2;branch=z9hG4bK2\r\n\
Max-Forwards: 70\r\n\
Route: <sip:192.0.2.10;lr>, <sip:192.0.2.11;lr>\r\n\
To: <sip:+4930123@pbx.example.com;user=phone>\r\n\
From: \"Alice\" <sip:alice@pbx.example.com>;tag=8e2f1b7c\r\n\
Call-ID: 3c2a5d7e9f1b@198.51.100.17\r\n\
CSeq: 1 INVITE\r\n\
Proxy-Authorization: Digest username=\"alice\", realm=\"pbx\"\r\n\
X-Tenant: acme\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 10\r\n\
\r\n\
v=0\r\ns=-\r\n";

const RESPONSE: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-sd;rport=5060\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-77ba;received=198.51.100.17\r\n\
To: <sip:b@h>;tag=as6f\r\nFrom: <sip:a@h>;tag=8e2f\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";

#[test]
fn scan_and_rewrite_allocate_nothing() {
    let dest = Uri::parse(b"sip:10.0.0.7:5070;transport=udp").unwrap();
    let mut out = [0u8; 2048];
    let mut checksum = 0usize;
    let mut headers = Headers::new();
    let before = allocations();
    for _ in 0..1000 {
        let msg = parse_datagram(INVITE, &mut headers).unwrap();
        msg.validate().unwrap();
        checksum += msg.call_id().len()
            + msg.from().unwrap().uri.host.len()
            + msg.to().unwrap().uri.host.len();
        checksum +=
            msg.request().unwrap().uri().unwrap().host.len() + msg.top_via().unwrap().host.len();
        checksum += msg.header(b"x-tenant").map_or(0, <[u8]>::len);
        checksum += msg.digest_credentials().map_or(0, |d| d.username.len());
        checksum += msg.vias().count();
        let mut plan = Plan::new(&msg);
        plan.insert_via(
            b"UDP",
            b"192.0.2.1",
            Some(5060),
            b"z9hG4bK-sd-0123456789abcdef",
            true,
        )
        .unwrap();
        plan.set_max_forwards(&msg, msg.max_forwards().unwrap() - 1)
            .unwrap();
        plan.remove_first_route(&msg).unwrap();
        plan.set_request_uri_host(&msg, &dest).unwrap();
        plan.insert_record_route(b"sip:192.0.2.1;lr").unwrap();
        checksum += plan.io_slices().len();
        checksum += plan.flatten_into(&mut out).unwrap();

        let mut headers = Headers::new();
        let resp = parse_datagram(RESPONSE, &mut headers).unwrap();
        let mut plan = Plan::new(&resp);
        plan.remove_top_via(&resp).unwrap();
        checksum += plan.flatten_into(&mut out).unwrap();
        // Malformed input is rejected without allocating either.
        let mut headers = Headers::new();
        checksum += usize::from(parse_datagram(&INVITE[..200], &mut headers).is_err());
    }
    let after = allocations();
    assert!(checksum > 0);
    assert_eq!(after - before, 0, "scanner or rewrite plan allocated");
}

#[test]
fn the_counter_counts() {
    let before = allocations();
    let v = std::hint::black_box(vec![1u8; 64]);
    assert_eq!(allocations() - before, 1);
    drop(v);
}
