//! A fixed amount of scanning work for instruction-level profiling, which is repeatable on a
//! noisy machine where wall-clock timing is not:
//!
//! ```sh
//! cargo build --profile bench -p sipdisp-bench --example prof_scan
//! valgrind --tool=callgrind target/release/examples/prof_scan
//! ```
//!
//! Instructions per scan = total "I refs" / 20,000 (startup is about 0.2 M).

use sipdisp_bench::INVITE;

fn main() {
    let mut n = 0;
    let mut h = sipdisp_parser::Headers::new();
    for _ in 0..20000 {
        let m = sipdisp_parser::parse_datagram(std::hint::black_box(INVITE), &mut h).unwrap();
        n += m.call_id().len();
    }
    println!("{n}");
}
