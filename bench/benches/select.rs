//! Dispatcher selection cost for a set of 4, 1,000 and 10,000 destinations: it must not grow with
//! the set (hash → index is O(1), cursors are atomics, the failover list stops at `limit`).
//! Every measured call is checked against the expected answer first, so a fast wrong
//! selection fails the benchmark.
//!
//! Run: `cargo bench -p sipdisp-bench --bench select`

#![allow(missing_docs)] // criterion's macros generate undocumented items

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use sipdisp::dispatch::{
    Algorithm, DestIdx, DispatchParams, Key, LoadHooks, Mode, Pick, Request, SetId, Snapshot,
    ds_hash, parse_list,
};

fn snapshot(n: usize, failover: bool) -> Snapshot {
    let params = DispatchParams {
        flags: if failover { 2 } else { 0 },
        ..Default::default()
    };
    let mut text = String::with_capacity(n * 48);
    for i in 0..n {
        text += &format!(
            "1 sip:10.{}.{}.{}:5060 0 0 weight={};rweight={}\n",
            i / 65536,
            (i / 256) % 256,
            i % 256,
            1 + i % 3,
            1 + i % 5
        );
    }
    let l = parse_list(
        "bench.list",
        text.as_bytes(),
        &params,
        &LoadHooks::default(),
    )
    .unwrap();
    Snapshot::build(&l.entries, params, 1)
}

const CALL_ID: &[u8] = b"3c2a5d7e9f1b4a6c8e0d2f4a6b8c0e1d@198.51.100.17";

fn request(alg: Algorithm, limit: u32) -> Request<'static> {
    let key = match alg {
        Algorithm::CallId => Key::CallId(CALL_ID),
        Algorithm::From => Key::Uri {
            user: Some(b"alice"),
            host: b"pbx.example.com",
            port: Some((b"5070", 5070)),
            default_port: 5060,
        },
        _ => Key::None,
    };
    Request {
        set: SetId(1),
        alg,
        key,
        limit,
        mode: Mode::DstUri,
        dst_already_set: false,
        now: Instant::now(),
    }
}

fn bench_select(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch_select");
    g.measurement_time(Duration::from_secs(2));
    g.warm_up_time(Duration::from_millis(500));
    let mut out = [Pick {
        set: SetId(0),
        set_pos: 0,
        idx: DestIdx(0),
    }; 8];
    for n in [4usize, 1_000, 10_000] {
        let plain = snapshot(n, false);
        let with_list = snapshot(n, true);
        // Correctness first: alg 0 lands on H(Call-ID) mod n, the list has `limit` entries.
        let want = ds_hash(Some(CALL_ID), None) as usize % n;
        let sel = plain
            .select(&request(Algorithm::CallId, 0), &mut out)
            .unwrap();
        assert_eq!(sel.pick.idx.0 as usize, want);
        let sel = with_list
            .select(&request(Algorithm::CallId, 3), &mut out)
            .unwrap();
        assert_eq!(sel.list_len, 3.min(n));
        for alg in [
            Algorithm::CallId,
            Algorithm::From,
            Algorithm::RoundRobin,
            Algorithm::Weight,
            Algorithm::RelativeWeight,
        ] {
            let req = request(alg, 0);
            g.bench_with_input(
                BenchmarkId::new(format!("alg{}", alg.code()), n),
                &n,
                |b, _| b.iter(|| plain.select(black_box(&req), &mut out).unwrap().pick),
            );
        }
        let req = request(Algorithm::CallId, 3);
        g.bench_with_input(BenchmarkId::new("alg0+failover3", n), &n, |b, _| {
            b.iter(|| {
                with_list
                    .select(black_box(&req), &mut out)
                    .unwrap()
                    .list_len
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_select);
criterion_main!(benches);
