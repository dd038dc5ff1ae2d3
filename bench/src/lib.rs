//! Benchmarks and load tools for sipdisp.
//!
//! The criterion micro-benchmarks live in `benches/` (scanner, selection); shared message
//! fixtures live here so every benchmark measures the same bytes.

/// A typical 800-byte INVITE with an SDP body, as a softphone sends it through a proxy.
pub const INVITE: &[u8] = b"INVITE sip:+4930123456@pbx.example.com;user=phone SIP/2.0\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---77ba2cb3c4e3d1d1;rport\r\n\
Max-Forwards: 70\r\n\
Contact: <sip:alice@198.51.100.17:5060>\r\n\
To: <sip:+4930123456@pbx.example.com;user=phone>\r\n\
From: \"Alice Example\" <sip:alice@pbx.example.com>;tag=8e2f1b7c\r\n\
Call-ID: 3c2a5d7e9f1b4a6c8e0d2f4a6b8c0e1d@198.51.100.17\r\n\
CSeq: 1 INVITE\r\n\
Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, INFO\r\n\
Content-Type: application/sdp\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePhone 5.3.2\r\n\
Content-Length: 222\r\n\
\r\n\
v=0\r\n\
o=- 3891201821 3891201821 IN IP4 198.51.100.17\r\n\
s=ExamplePhone\r\n\
c=IN IP4 198.51.100.17\r\n\
t=0 0\r\n\
m=audio 40000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=sendrecv\r\n";

/// A 200 OK answering [`INVITE`] after one proxy hop (two Vias, Record-Route, SDP).
pub const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-sd-3f2a9c41e0b7d5a2;rport=5060\r\n\
Via: SIP/2.0/UDP 198.51.100.17:5060;branch=z9hG4bK-524287-1---77ba2cb3c4e3d1d1;rport=5060;received=198.51.100.17\r\n\
Record-Route: <sip:192.0.2.10;lr>\r\n\
Contact: <sip:gw@203.0.113.5:5060>\r\n\
To: <sip:+4930123456@pbx.example.com;user=phone>;tag=as6f3b2c1d\r\n\
From: \"Alice Example\" <sip:alice@pbx.example.com>;tag=8e2f1b7c\r\n\
Call-ID: 3c2a5d7e9f1b4a6c8e0d2f4a6b8c0e1d@198.51.100.17\r\n\
CSeq: 1 INVITE\r\n\
Server: ExampleGW 2.1\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 130\r\n\
\r\n\
v=0\r\n\
o=gw 1 1 IN IP4 203.0.113.5\r\n\
s=-\r\n\
c=IN IP4 203.0.113.5\r\n\
t=0 0\r\n\
m=audio 30000 RTP/AVP 0 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=sendrecv\r\n";

/// The forwarding rewrite every scanner benchmark measures, on an already scanned message: a
/// request gets a new top Via, Max-Forwards decremented and its Request-URI host rewritten to
/// `dest`; a response loses its top Via. Returns the number of slices of the outgoing datagram
/// (so the work cannot be optimised away). Panics if the fixture does not plan (a benchmark
/// must not time a failure).
pub fn plan_forward(m: &sipdisp_parser::Message<'_>, dest: &sipdisp_parser::Uri<'_>) -> usize {
    let mut plan = sipdisp_parser::Plan::new(m);
    if m.request().is_some() {
        plan.insert_via(
            b"UDP",
            b"192.0.2.10",
            Some(5060),
            b"z9hG4bK-sd-3f2a9c41e0b7d5a2",
            true,
        )
        .expect("new Via");
        plan.set_max_forwards(m, m.max_forwards().unwrap_or(70).saturating_sub(1))
            .expect("Max-Forwards");
        plan.set_request_uri_host(m, dest)
            .expect("Request-URI host");
    } else {
        plan.remove_top_via(m).expect("top Via removed");
    }
    plan.io_slices().len()
}
