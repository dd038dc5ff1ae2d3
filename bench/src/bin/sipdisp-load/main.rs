//! `sipdisp-load`: SIP load generator, responder and raw UDP forwarder for the forwarding
//! benchmarks (`bench/run.sh`). Loopback only: every address must be in 127.0.0.0/8.
//!
//! ```text
//! sipdisp-load send --to 127.0.0.1:5060 (--rate N | --window N) [--seconds S] [--count N]
//!                   [--method invite|options] [--batch 64] [--tick-us 100] [--drain-ms 500]
//!                   [--timeout-ms 1000] [--bind IP:PORT] [--json]
//! sipdisp-load respond --listen 127.0.0.1:6000[-6003] [--listen ...] [--seconds 60] [--json]
//! sipdisp-load forward --listen 127.0.0.1:5070 --to 127.0.0.1:6000 [--seconds 60]
//! ```
//!
//! `send` offers requests (the ~800-byte INVITE with SDP of `sipdisp_bench::INVITE`, or
//! OPTIONS), each a new call (unique Call-ID, Via branch and From tag; CSeq 1), at a fixed
//! rate or with a fixed window, in `sendmmsg` batches; it matches final responses by Call-ID
//! and reports sent, received, loss, throughput and round-trip percentiles (p50/p90/p99/
//! p99.9). `respond` answers every request with 200 OK to its top Via (RFC 3261 §18.2.2,
//! RFC 3581 `received`/`rport`) and counts per port. `forward` relays datagrams without
//! parsing them (see `forward.rs`).

mod args;
mod forward;
mod respond;
mod send;
mod sip;
mod udp;

use std::process::ExitCode;

const USAGE: &str = "usage: sipdisp-load send --to IP:PORT (--rate N | --window N) [--seconds S] [--count N] [--method invite|options] [--json]
       sipdisp-load respond --listen IP:PORT[-PORT] [--listen ...] [--seconds S] [--json]
       sipdisp-load forward --listen IP:PORT --to IP:PORT [--seconds S]
(addresses must be in 127.0.0.0/8; see the module documentation for every option)";

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let a = args::Args::new(argv.clone());
    let result = match argv.first().map(String::as_str) {
        Some("send") => send::run(&a),
        Some("respond") => respond::run(&a),
        Some("forward") => forward::run(&a),
        _ => Err(USAGE.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipdisp-load: {e}");
            ExitCode::FAILURE
        }
    }
}
