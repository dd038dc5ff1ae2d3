//! Scanner micro-benchmarks: scan, scan + rewrite plan, and the same messages through the
//! `rsip` crate (a full, allocating SIP parser) in the same run, so the ratio is measured
//! under the same machine noise.
//!
//! Run: `cargo bench -p sipdisp-bench --bench scan`. Results: `docs/benchmarks.md`.
//! The benchmark checks its answers before timing (a fast wrong answer fails).

#![allow(missing_docs)] // criterion_group! generates undocumented items

use criterion::{BatchSize, Criterion, Throughput, black_box, criterion_group, criterion_main};
use sipdisp_bench::{INVITE, OK_200, plan_forward};
use sipdisp_parser::{Headers, Uri, parse_datagram};

fn check_answers() {
    let mut h = Headers::new();
    let m = parse_datagram(INVITE, &mut h).expect("INVITE fixture parses");
    m.validate().expect("INVITE fixture is well-formed");
    assert_eq!(
        m.call_id(),
        b"3c2a5d7e9f1b4a6c8e0d2f4a6b8c0e1d@198.51.100.17"
    );
    assert_eq!(m.body().len(), 222);
    assert_eq!(m.from().unwrap().uri.user, Some(&b"alice"[..]));
    let mut h = Headers::new();
    let r = parse_datagram(OK_200, &mut h).expect("200 OK fixture parses");
    assert_eq!(r.vias().count(), 2);
    assert_eq!(r.body().len(), 130);
    let full = rsip::SipMessage::try_from(INVITE).expect("rsip parses INVITE");
    assert!(matches!(full, rsip::SipMessage::Request(_)));
    rsip::SipMessage::try_from(OK_200).expect("rsip parses 200 OK");
    assert!(
        INVITE.len() > 750 && INVITE.len() < 850,
        "INVITE is {} bytes",
        INVITE.len()
    );
}

fn bench(c: &mut Criterion) {
    check_answers();
    let dest = Uri::parse(b"sip:203.0.113.5:5060;transport=udp").unwrap();
    for (name, msg) in [("invite_800B", INVITE), ("ok_200", OK_200)] {
        let mut g = c.benchmark_group(name);
        g.throughput(Throughput::Bytes(msg.len() as u64));
        let mut h = Headers::new();
        g.bench_function("sipdisp_scan", |b| {
            b.iter(|| {
                parse_datagram(black_box(msg), &mut h)
                    .unwrap()
                    .call_id()
                    .len()
            })
        });
        // Scan plus the lazy parts routing may read (From, To, R-URI, every Via).
        g.bench_function("sipdisp_scan_validate", |b| {
            b.iter(|| {
                let m = parse_datagram(black_box(msg), &mut h).unwrap();
                m.validate().unwrap();
                m.len()
            })
        });
        g.bench_function("sipdisp_scan_plan", |b| {
            b.iter(|| plan_forward(&parse_datagram(black_box(msg), &mut h).unwrap(), &dest))
        });
        g.bench_function("rsip_parse", |b| {
            b.iter_batched(
                || msg,
                |m| rsip::SipMessage::try_from(black_box(m)).unwrap(),
                BatchSize::SmallInput,
            )
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
