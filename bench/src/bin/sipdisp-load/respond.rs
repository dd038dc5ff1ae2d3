//! `respond`: a UAS answering every request with 200 OK on N loopback ports, one thread,
//! `recvmmsg`/`sendmmsg` per readable socket, counting per port. Stops after `--seconds`
//! or on SIGTERM/SIGINT, then prints the counts (text, or JSON with `--json`).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::sip;
use crate::udp::{self, Batch};

/// `127.0.0.1:6000-6003` → four addresses; `127.0.0.1:6000` → one.
fn expand(spec: &str) -> Result<Vec<SocketAddrV4>, String> {
    let (host, ports) = spec
        .rsplit_once(':')
        .ok_or(format!("{spec}: expected IP:PORT[-PORT]"))?;
    let (lo, hi) = ports.split_once('-').unwrap_or((ports, ports));
    let bad = || format!("{spec}: bad port range");
    let (lo, hi): (u16, u16) = (
        lo.parse().map_err(|_| bad())?,
        hi.parse().map_err(|_| bad())?,
    );
    if hi < lo || hi - lo >= 1024 {
        return Err(bad());
    }
    (lo..=hi)
        .map(|p| udp::loopback(format!("{host}:{p}").parse().map_err(|_| bad())?))
        .collect()
}

pub fn run(a: &Args) -> Result<(), String> {
    let mut addrs = Vec::new();
    for spec in a.all("--listen") {
        addrs.extend(expand(spec)?);
    }
    if addrs.is_empty() || addrs.len() > 8 {
        return Err("respond needs 1 to 8 --listen IP:PORT[-PORT] addresses".into());
    }
    let seconds: f64 = a.get("--seconds")?.unwrap_or(60.0);
    if !(0.0..=3600.0).contains(&seconds) {
        return Err("--seconds must be in [0, 3600]".into());
    }
    let socks = addrs
        .iter()
        .map(|&s| udp::socket(s, 8 << 20))
        .collect::<Result<Vec<_>, _>>()?;
    let refs: Vec<_> = socks.iter().collect();
    udp::catch_stop();
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut inb = Batch::new(64);
    let mut out = Batch::new(64);
    let mut answered = vec![0u64; socks.len()];
    let mut ignored = 0u64;
    let mut send_failed = 0u64;
    while Instant::now() < end && !udp::stopped() {
        let ready = udp::wait(&refs, Duration::from_millis(50));
        for (k, s) in socks.iter().enumerate() {
            if ready & (1 << k) == 0 {
                continue;
            }
            loop {
                let n = inb.recv(s).map_err(|e| format!("recv {}: {e}", addrs[k]))?;
                out.len = 0;
                for i in 0..n {
                    let (msg, src) = (inb.get(i), inb.addr(i));
                    let j = out.len;
                    let mut dst = None;
                    out.fill(j, src, |buf| match sip::ok_200(msg, src, k as u16, buf) {
                        Some((len, to)) => {
                            dst = Some(to);
                            len
                        }
                        None => 0,
                    });
                    match dst.map(|d| udp::loopback(d.into())) {
                        Some(Ok(d)) => {
                            out.set_addr(j, d);
                            out.len += 1;
                        }
                        _ => ignored += 1,
                    }
                }
                let sent = out.send(s).map_err(|e| format!("send: {e}"))?;
                answered[k] += sent as u64;
                send_failed += (out.len - sent) as u64;
                if n < inb.capacity() {
                    break;
                }
            }
        }
    }
    let total: u64 = answered.iter().sum();
    if a.flag("--json") {
        let per: Vec<String> = addrs
            .iter()
            .zip(&answered)
            .map(|(a, n)| format!("\"{a}\":{n}"))
            .collect();
        println!(
            "{{\"answered\":{total},\"ignored\":{ignored},\"send_failed\":{send_failed},\"per_port\":{{{}}}}}",
            per.join(",")
        );
    } else {
        let per: Vec<String> = addrs
            .iter()
            .zip(&answered)
            .map(|(a, n)| format!("{a}={n}"))
            .collect();
        println!(
            "answered {total} ignored {ignored} send_failed {send_failed} per port: {}",
            per.join(" ")
        );
    }
    Ok(())
}
