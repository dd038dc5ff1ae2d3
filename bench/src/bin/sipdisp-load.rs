//! A small SIP load generator and responder for the forwarding benchmarks (loopback only).
//!
//! ```text
//! sipdisp-load respond --listen 127.0.0.1:5070 [--seconds 60]
//! sipdisp-load send --to 127.0.0.1:5060 --rate 10000 --seconds 5 [--json]
//! ```
//!
//! `respond` answers every request with 200 OK sent to its top Via (`received`/`rport`
//! honoured), as RFC 3261 §18.2.2 says, and stops after `--seconds`. `send` offers OPTIONS
//! requests at a fixed rate (unique Call-ID and branch each, correct Via/From tag/CSeq) for a
//! bounded time, matches the 200 OKs by Call-ID, and reports sent, received, loss and
//! round-trip latency percentiles. Traffic is refused unless every address is loopback.

use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn loopback(a: SocketAddr) -> Result<SocketAddr, String> {
    if a.ip().is_loopback() {
        Ok(a)
    } else {
        Err(format!("{a}: only loopback addresses are allowed"))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = match args.get(1).map(String::as_str) {
        Some("respond") => respond(&args),
        Some("send") => send(&args),
        _ => Err("usage: sipdisp-load respond --listen ADDR [--seconds N] | send --to ADDR --rate N --seconds N [--json]".into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sipdisp-load: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse<T: std::str::FromStr>(
    args: &[String],
    name: &str,
    default: Option<T>,
) -> Result<T, String> {
    match arg(args, name) {
        Some(v) => v.parse().map_err(|_| format!("{name}: bad value {v:?}")),
        None => default.ok_or(format!("{name} is required")),
    }
}

fn header<'a>(msg: &'a str, name: &str, compact: &str) -> Option<&'a str> {
    msg.split("\r\n").find_map(|l| {
        let (n, v) = l.split_once(':')?;
        let n = n.trim();
        (n.eq_ignore_ascii_case(name) || n == compact).then(|| v.trim())
    })
}

fn via_target(via: &str, from: SocketAddr) -> SocketAddr {
    let mut port = None;
    let mut host = None;
    for p in via.split(';').skip(1) {
        match p.trim().split_once('=') {
            Some(("received", v)) => host = v.parse().ok(),
            Some(("rport", v)) => port = v.parse().ok(),
            _ => {}
        }
    }
    let sent_by = via
        .split(';')
        .next()
        .and_then(|s| s.split_whitespace().last())
        .unwrap_or("");
    let sent: Option<SocketAddr> = sent_by.parse().ok();
    SocketAddr::new(
        host.or(sent.map(|s| s.ip())).unwrap_or(from.ip()),
        port.or(sent.map(|s| s.port())).unwrap_or(from.port()),
    )
}

fn respond(args: &[String]) -> Result<(), String> {
    let listen = loopback(parse(args, "--listen", None)?)?;
    let seconds: u64 = parse(args, "--seconds", Some(60))?;
    let sock = UdpSocket::bind(listen).map_err(|e| format!("{listen}: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    let end = Instant::now() + Duration::from_secs(seconds);
    let mut buf = vec![0u8; 65536];
    let mut out = String::with_capacity(2048);
    let mut answered = 0u64;
    while Instant::now() < end {
        let Ok((n, from)) = sock.recv_from(&mut buf) else {
            continue;
        };
        let Ok(msg) = std::str::from_utf8(&buf[..n]) else {
            continue;
        };
        if msg.starts_with("SIP/2.0") || msg.starts_with("ACK ") {
            continue;
        }
        out.clear();
        out.push_str("SIP/2.0 200 OK\r\n");
        let mut top = None;
        for line in msg.split("\r\n") {
            let Some((n, v)) = line.split_once(':') else {
                continue;
            };
            let n = n.trim();
            if n.eq_ignore_ascii_case("via") || n == "v" {
                top.get_or_insert(v.trim());
                out.push_str("Via: ");
                out.push_str(v.trim());
                out.push_str("\r\n");
            } else if ["From", "f", "Call-ID", "i", "CSeq"].contains(&n) {
                out.push_str(line);
                out.push_str("\r\n");
            } else if n == "To" || n == "t" {
                out.push_str(line);
                out.push_str(";tag=resp\r\n");
            }
        }
        out.push_str("Content-Length: 0\r\n\r\n");
        let to = top.map_or(from, |v| via_target(v, from));
        if loopback(to).is_ok() && sock.send_to(out.as_bytes(), to).is_ok() {
            answered += 1;
        }
    }
    println!("answered {answered}");
    Ok(())
}

fn send(args: &[String]) -> Result<(), String> {
    let to = loopback(parse(args, "--to", None)?)?;
    let rate: u64 = parse(args, "--rate", Some(1000))?;
    let seconds: u64 = parse(args, "--seconds", Some(5))?;
    if rate == 0 || rate > 1_000_000 || seconds == 0 || seconds > 600 {
        return Err("--rate must be 1..=1000000 and --seconds 1..=600".into());
    }
    let total = (rate * seconds) as usize;
    let sock = UdpSocket::bind(SocketAddr::new(to.ip(), 0)).map_err(|e| e.to_string())?;
    let local = sock.local_addr().map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let recv_sock = sock.try_clone().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let sent_at: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..total)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let (sent_at2, done2) = (Arc::clone(&sent_at), Arc::clone(&done));
    let receiver = std::thread::spawn(move || {
        let mut rtts = Vec::with_capacity(total);
        let mut buf = vec![0u8; 65536];
        let mut drain_until: Option<Instant> = None;
        loop {
            if done2.load(Ordering::Relaxed) {
                let d = *drain_until.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
                if Instant::now() >= d || rtts.len() == total {
                    break;
                }
            }
            let Ok((n, _)) = recv_sock.recv_from(&mut buf) else {
                continue;
            };
            let Ok(msg) = std::str::from_utf8(&buf[..n]) else {
                continue;
            };
            if !msg.starts_with("SIP/2.0 200") {
                continue;
            }
            let Some(id) = header(msg, "Call-ID", "i")
                .and_then(|c| c.strip_prefix("load-"))
                .and_then(|c| c.split('@').next())
                .and_then(|c| c.parse::<usize>().ok())
            else {
                continue;
            };
            if let Some(t) = sent_at2.get(id) {
                let sent = t.swap(0, Ordering::Relaxed);
                if sent > 0 {
                    let now = started.elapsed().as_nanos() as u64;
                    rtts.push(now.saturating_sub(sent));
                }
            }
        }
        rtts
    });
    let interval = Duration::from_nanos(1_000_000_000 / rate);
    let mut msg = String::with_capacity(512);
    for i in 0..total {
        let due = started + interval * i as u32;
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        msg.clear();
        use std::fmt::Write;
        let _ = write!(
            msg,
            "OPTIONS sip:bench@{to} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bK-load-{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:load@{local}>;tag=l{i}\r\nTo: <sip:bench@{to}>\r\nCall-ID: load-{i}@{local}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        sent_at[i].store(
            started.elapsed().as_nanos().max(1) as u64,
            Ordering::Relaxed,
        );
        let _ = sock.send_to(msg.as_bytes(), to);
    }
    let send_time = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut rtts = receiver.join().map_err(|_| "receiver panicked")?;
    rtts.sort_unstable();
    let pct = |p: f64| -> f64 {
        if rtts.is_empty() {
            return f64::NAN;
        }
        rtts[((rtts.len() - 1) as f64 * p) as usize] as f64 / 1000.0
    };
    let received = rtts.len();
    let loss = 100.0 * (total - received) as f64 / total as f64;
    let achieved = total as f64 / send_time.as_secs_f64();
    if args.iter().any(|a| a == "--json") {
        println!(
            "{{\"sent\":{total},\"received\":{received},\"loss_pct\":{loss:.4},\"offered_rate\":{rate},\"achieved_rate\":{achieved:.0},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1}}}",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999)
        );
    } else {
        println!(
            "sent {total} received {received} loss {loss:.3}% offered {rate}/s achieved {achieved:.0}/s rtt p50 {:.1} µs p90 {:.1} µs p99 {:.1} µs p99.9 {:.1} µs",
            pct(0.5),
            pct(0.9),
            pct(0.99),
            pct(0.999)
        );
    }
    Ok(())
}
