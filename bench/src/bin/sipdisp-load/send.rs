//! `send`: the load generator. One thread, one socket, batched syscalls.
//!
//! Open loop (`--rate`): request `k` is due at `start + k / rate`; the generator wakes at
//! the next due time but at most every `--tick-us` (default 100 µs), sends everything due in
//! one `sendmmsg`, and wakes early for responses so their round-trip time is taken when they
//! arrive. Closed loop (`--window`): keep `window` requests outstanding; a request
//! unanswered after `--timeout-ms` counts as lost and frees its slot. Both stop at
//! `--seconds` or `--count`, then wait `--drain-ms` for late responses.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::sip::{self, Method, Template};
use crate::udp::{self, Batch};

/// What one run measured.
struct Report {
    method: Method,
    request_bytes: usize,
    offered_rate: Option<u64>,
    window: Option<u64>,
    sent: u64,
    received: u64,
    late: u64,
    /// Requests answered `503` (overload refusals): final, but not counted as received.
    refused: u64,
    other: u64,
    send_secs: f64,
    rtts_ns: Vec<u64>,
}

pub fn run(a: &Args) -> Result<(), String> {
    let to = udp::loopback(a.get("--to")?.ok_or("--to is required")?)?;
    let method = match a.get_str("--method").unwrap_or("invite") {
        "invite" => Method::Invite,
        "options" => Method::Options,
        m => return Err(format!("--method: expected invite or options, got {m:?}")),
    };
    let rate: Option<u64> = a.get("--rate")?;
    let window: Option<u64> = a.get("--window")?;
    if rate.is_some() == window.is_some() {
        return Err("give exactly one of --rate N (open loop) and --window N (closed loop)".into());
    }
    let seconds: f64 = a.get("--seconds")?.unwrap_or(5.0);
    if !(0.0..=600.0).contains(&seconds) || seconds == 0.0 {
        return Err("--seconds must be in (0, 600]".into());
    }
    let cap = rate.map_or(20_000_000, |r| (r as f64 * seconds).ceil() as u64);
    let count: u64 = a.get("--count")?.unwrap_or(cap).min(cap).min(20_000_000);
    if rate.is_some_and(|r| r == 0 || r > 2_000_000)
        || window.is_some_and(|w| w == 0 || w > 100_000)
    {
        return Err("--rate must be 1..=2000000 and --window 1..=100000".into());
    }
    let tick = Duration::from_micros(a.get("--tick-us")?.unwrap_or(100));
    let drain = Duration::from_millis(a.get("--drain-ms")?.unwrap_or(500));
    let timeout = Duration::from_millis(a.get("--timeout-ms")?.unwrap_or(1000));
    let batch_n: usize = a.get("--batch")?.unwrap_or(64).clamp(1, 1024);
    let bind: SocketAddrV4 = udp::loopback(
        a.get("--bind")?
            .unwrap_or_else(|| SocketAddrV4::new(*to.ip(), 0).into()),
    )?;
    let sock = udp::socket(bind, 8 << 20)?;
    let local = match sock.local_addr().map_err(|e| e.to_string())? {
        std::net::SocketAddr::V4(l) => l,
        l => return Err(format!("{l}: not IPv4")),
    };
    let run_id = std::process::id()
        ^ (Instant::now().elapsed().subsec_nanos() << 16)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    let tpl = Template::new(method, local, to, run_id);
    let mut r = Report {
        method,
        request_bytes: tpl.sample_len(),
        offered_rate: rate,
        window,
        sent: 0,
        received: 0,
        late: 0,
        refused: 0,
        other: 0,
        send_secs: 0.0,
        rtts_ns: Vec::with_capacity(count.min(20_000_000) as usize),
    };
    // Send time of each request in ns since `start`; 0 once answered (or never sent).
    let mut sent_at: Vec<u64> = Vec::with_capacity(count as usize);
    let mut out = Batch::new(batch_n);
    let mut inb = Batch::new(batch_n);
    let start = Instant::now();
    // Open loop: the last request is due just before `seconds`; allow one tick to send it.
    let deadline = start
        + Duration::from_secs_f64(seconds)
        + if rate.is_some() { tick } else { Duration::ZERO };
    let mut oldest = 0u64; // closed loop: first request not yet answered or timed out
    let mut timed_out = 0u64;
    let mut last_send = start;
    loop {
        let now = Instant::now();
        let sending = now < deadline && r.sent < count;
        if !sending && r.sent == 0 {
            break;
        }
        if sending {
            let due = match rate {
                Some(rate) => {
                    let due =
                        ((now - start).as_nanos() as u64).saturating_mul(rate) / 1_000_000_000 + 1;
                    due.min(count).saturating_sub(r.sent)
                }
                None => {
                    let t = (now - start).as_nanos() as u64;
                    let limit = t.saturating_sub(timeout.as_nanos() as u64);
                    while oldest < r.sent
                        && (sent_at[oldest as usize] == 0 || sent_at[oldest as usize] < limit)
                    {
                        if sent_at[oldest as usize] != 0 {
                            sent_at[oldest as usize] = u64::MAX; // timed out: late if answered
                            timed_out += 1;
                        }
                        oldest += 1;
                    }
                    let inflight = r.sent - r.received.min(r.sent) - timed_out;
                    window
                        .unwrap_or(0)
                        .saturating_sub(inflight)
                        .min(count - r.sent)
                }
            };
            if due > 0 && (rate.is_none() || now >= last_send + tick || due >= batch_n as u64) {
                let mut left = due;
                while left > 0 {
                    let n = left.min(batch_n as u64) as usize;
                    for i in 0..n {
                        out.fill(i, to, |buf| tpl.write(r.sent + i as u64, buf));
                    }
                    out.len = n;
                    let t = ((Instant::now() - start).as_nanos() as u64).max(1);
                    let k = out.send(&sock).map_err(|e| format!("send to {to}: {e}"))?;
                    for _ in 0..k {
                        sent_at.push(t);
                    }
                    r.sent += k as u64;
                    left -= k as u64;
                    if k < n {
                        break; // socket buffer full: try again after draining
                    }
                }
                last_send = now;
            }
        }
        // Responses.
        let mut got = 0;
        loop {
            let n = inb.recv(&sock).map_err(|e| format!("recv: {e}"))?;
            let t = (Instant::now() - start).as_nanos() as u64;
            for i in 0..n {
                let m = inb.get(i);
                let refused = match sip::status(m) {
                    Some(503) => true,
                    Some(200..) => false,
                    _ => continue, // 100 Trying, or a request
                };
                let id = sip::headers(m)
                    .find(|(n, _)| sip::is(n, "Call-ID", "i"))
                    .and_then(|(_, v)| sip::parse_id(v));
                match id {
                    Some((run, seq)) if run == run_id && seq < r.sent => {
                        let at = &mut sent_at[seq as usize];
                        if *at == u64::MAX {
                            r.late += 1;
                            *at = 0;
                        } else if *at != 0 && refused {
                            r.refused += 1;
                            *at = 0;
                        } else if *at != 0 {
                            r.rtts_ns.push(t.saturating_sub(*at));
                            r.received += 1;
                            *at = 0;
                        }
                    }
                    _ => r.other += 1,
                }
            }
            got += n;
            if n < inb.capacity() {
                break;
            }
        }
        let now = Instant::now();
        if !sending {
            if r.received + r.refused + r.late >= r.sent || now >= deadline.max(last_send) + drain {
                break;
            }
            if r.send_secs == 0.0 {
                r.send_secs = (last_send - start).as_secs_f64().max(1e-9);
            }
        }
        if got == 0 {
            let wake = match (sending, rate) {
                (true, Some(rate)) => {
                    let next =
                        start + Duration::from_nanos(r.sent.saturating_mul(1_000_000_000) / rate);
                    next.max(last_send + tick)
                }
                _ => now + Duration::from_millis(5),
            };
            udp::wait(
                &[&sock],
                wake.saturating_duration_since(now)
                    .min(Duration::from_millis(10)),
            );
        }
    }
    if r.send_secs == 0.0 {
        r.send_secs = (last_send - start).as_secs_f64().max(1e-9);
    }
    r.rtts_ns.sort_unstable();
    if a.flag("--json") {
        println!("{}", r.json());
    } else {
        println!("{}", r.text());
    }
    Ok(())
}

impl Report {
    fn pct_us(&self, p: f64) -> f64 {
        if self.rtts_ns.is_empty() {
            return f64::NAN;
        }
        let i = ((self.rtts_ns.len() - 1) as f64 * p).round() as usize;
        self.rtts_ns[i] as f64 / 1000.0
    }

    fn loss_pct(&self) -> f64 {
        if self.sent == 0 {
            return 0.0;
        }
        100.0 * (self.sent - self.received.min(self.sent)) as f64 / self.sent as f64
    }

    fn json(&self) -> String {
        let num = |v: f64| {
            if v.is_finite() {
                format!("{v:.1}")
            } else {
                "null".into()
            }
        };
        format!(
            "{{\"method\":\"{}\",\"request_bytes\":{},\"offered_rate\":{},\"window\":{},\"sent\":{},\"received\":{},\"late\":{},\"refused\":{},\"unmatched\":{},\"loss_pct\":{:.4},\"send_secs\":{:.3},\"achieved_rate\":{:.0},\"throughput\":{:.0},\"p50_us\":{},\"p90_us\":{},\"p99_us\":{},\"p999_us\":{}}}",
            if self.method == Method::Invite {
                "INVITE"
            } else {
                "OPTIONS"
            },
            self.request_bytes,
            self.offered_rate.map_or("null".into(), |r| r.to_string()),
            self.window.map_or("null".into(), |r| r.to_string()),
            self.sent,
            self.received,
            self.late,
            self.refused,
            self.other,
            self.loss_pct(),
            self.send_secs,
            self.sent as f64 / self.send_secs,
            self.received as f64 / self.send_secs,
            num(self.pct_us(0.5)),
            num(self.pct_us(0.9)),
            num(self.pct_us(0.99)),
            num(self.pct_us(0.999)),
        )
    }

    fn text(&self) -> String {
        format!(
            "{} ({} B): sent {} received {} late {} refused {} unmatched {} loss {:.3}% | offered {} achieved {:.0}/s throughput {:.0}/s | rtt p50 {:.1} µs p90 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs",
            if self.method == Method::Invite {
                "INVITE"
            } else {
                "OPTIONS"
            },
            self.request_bytes,
            self.sent,
            self.received,
            self.late,
            self.refused,
            self.other,
            self.loss_pct(),
            match (self.offered_rate, self.window) {
                (Some(r), _) => format!("{r}/s"),
                (_, Some(w)) => format!("window {w}"),
                _ => "-".into(),
            },
            self.sent as f64 / self.send_secs,
            self.received as f64 / self.send_secs,
            self.pct_us(0.5),
            self.pct_us(0.9),
            self.pct_us(0.99),
            self.pct_us(0.999),
        )
    }
}
