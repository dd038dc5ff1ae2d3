//! A fixed amount of scanning work for instruction-level profiling, which is repeatable on a
//! noisy machine where wall-clock timing is not:
//!
//! ```sh
//! cargo build --profile bench -p sipdisp-bench --example prof_scan
//! valgrind --tool=callgrind target/release/examples/prof_scan [invite|ok] [scans] [scan|plan|validate]
//! ```
//!
//! Instructions per scan = total "I refs" / scans (default 20,000; startup is about 0.2 M).
//! `plan` adds the forwarding rewrite plan of `bench/benches/scan.rs`, `validate` adds
//! `Message::validate`.

use sipdisp_bench::{INVITE, OK_200, plan_forward};
use sipdisp_parser::Uri;

fn main() {
    let mut args = std::env::args().skip(1);
    let msg = match args.next().as_deref() {
        None | Some("invite") => INVITE,
        Some("ok") => OK_200,
        Some(other) => panic!("unknown message {other:?}: invite or ok"),
    };
    let scans: usize = args
        .next()
        .map_or(20_000, |s| s.parse().expect("scan count"));
    let what = args.next().unwrap_or_else(|| "scan".into());
    let dest = Uri::parse(b"sip:203.0.113.5:5060;transport=udp").unwrap();
    let mut n = 0;
    let mut h = sipdisp_parser::Headers::new();
    for _ in 0..scans {
        let m = sipdisp_parser::parse_datagram(std::hint::black_box(msg), &mut h).unwrap();
        n += match what.as_str() {
            "scan" => m.call_id().len(),
            "validate" => m.validate().map(|()| m.len()).unwrap(),
            "plan" => plan_forward(&m, &dest),
            other => panic!("unknown mode {other:?}: scan, plan or validate"),
        };
    }
    println!("{n}");
}
