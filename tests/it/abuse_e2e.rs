//! The edge as an attacker sees it (issue 13): sipdisp with set 1 = backends, and a "victim"
//! UDP socket on loopback that is in no set. Each abuse — a Route to the victim, our Route
//! then the victim, an in-dialog Request-URI naming the victim, a forged `received`/`rport`, a
//! forged response, a real response replayed with an edited Via, a `sips:` downgrade — must
//! leave the victim with nothing, and the counters say why. Also: a strict route refused, a
//! flooding source blocked, admin clients that drip, and a worker that falls behind refusing
//! new requests with 503 + Retry-After.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::*;

/// A socket that counts every datagram it receives, until dropped.
struct Victim {
    addr: SocketAddr,
    got: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl Victim {
    fn start() -> Victim {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let addr = s.local_addr().unwrap();
        let (got, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (g, st) = (Arc::clone(&got), Arc::clone(&stop));
        thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while !st.load(Ordering::Relaxed) {
                if s.recv_from(&mut buf).is_ok() {
                    g.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Victim { addr, got, stop }
    }

    fn received(&self) -> u64 {
        self.got.load(Ordering::Relaxed)
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn lb(admin: u16, list: &str) -> Sipdisp {
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 2\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[dispatcher]\nlist_file = \"LIST\"\n\n[[route]]\nselect = \"1=4\"\n"
    );
    Sipdisp::start(&cfg, list)
}

fn metric_until(admin: u16, series: &str, want: f64) -> f64 {
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let v = http(addr, "GET", "/metrics")
            .and_then(|(_, t)| metric_value(&t, series))
            .unwrap_or(-1.0);
        if v >= want || Instant::now() >= deadline {
            return v;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn requests_never_go_to_a_next_hop_no_configuration_allows() {
    let victim = Victim::start();
    let (b1, b2) = (
        Responder::start("127.0.0.1:0"),
        Responder::start("127.0.0.1:0"),
    );
    let admin = free_tcp_port();
    // A gateway that sends requests of its own (set 2: no route selects it).
    let gw = Client::new("127.0.0.1:0");
    let gw_addr = gw.sock.local_addr().unwrap();
    let lb = lb(
        admin,
        &format!("1 sip:{}\n1 sip:{}\n2 sip:{gw_addr}\n", b1.addr, b2.addr),
    );
    let c = Client::new("127.0.0.1:0");
    let v = victim.addr;
    let me = lb.addr();
    let in_dialog = |m: String| {
        m.replace(
            "To: <sip:bob@example.com>",
            "To: <sip:bob@example.com>;tag=x",
        )
    };
    let cases = [
        // An out-of-dialog INVITE whose first Route names the victim.
        c.request(
            "INVITE",
            "sip:bob@example.com",
            "r1",
            "r1",
            &format!("Route: <sip:{v};lr>\r\n"),
        ),
        // Our Route first, then the victim.
        c.request(
            "INVITE",
            "sip:bob@example.com",
            "r2",
            "r2",
            &format!("Route: <sip:{me};lr>, <sip:{v};lr>\r\n"),
        ),
        // An in-dialog BYE (To tag, no Route) whose Request-URI names the victim.
        in_dialog(c.request("BYE", &format!("sip:bob@{v}"), "r3", "r3", "")),
        // The same with our Route (anyone can write it): the dialog "came through us", but
        // from a caller its Request-URI must still be a next hop the configuration allows.
        in_dialog(c.request(
            "BYE",
            &format!("sip:bob@{v}"),
            "r5",
            "r5",
            &format!("Route: <sip:{me};lr>\r\n"),
        )),
    ];
    for m in &cases {
        let r = c.transact(me, m).expect("an answer");
        assert_eq!(code(&r), 403, "{m}\n{r}");
        assert!(r.contains("Forbidden Next Hop"), "{r}");
    }
    // The same in-dialog BYE to a destination is routed (the dialog's backend).
    let ok = in_dialog(c.request("BYE", &format!("sip:bob@{}", b1.addr), "r4", "r4", ""));
    assert_eq!(c.transact(me, &ok).map(|r| code(&r)), Some(200));
    // Strict routing (a Route without `lr`, RFC 3261 §16.6 step 6), ours then the victim's, or
    // the victim's alone: refused with a clear 400, nothing sent anywhere.
    for (i, route) in [format!("<sip:{me};lr>, <sip:{v}>"), format!("<sip:{v}>")]
        .iter()
        .enumerate()
    {
        let m = c.request(
            "INVITE",
            "sip:bob@example.com",
            &format!("s{i}"),
            &format!("s{i}"),
            &format!("Route: {route}\r\n"),
        );
        let r = c.transact(me, &m).expect("an answer");
        assert_eq!(code(&r), 400, "{m}\n{r}");
        assert!(r.contains("Strict Routing Not Supported"), "{r}");
    }
    // A gateway's in-dialog request to its caller (our Route, the caller's Contact as
    // Request-URI, anywhere on the Internet) is routed: the callee hangs up.
    let bye = in_dialog(gw.request(
        "BYE",
        &format!("sip:alice@{}", c.sock.local_addr().unwrap()),
        "r6",
        "r6",
        &format!("Route: <sip:{me};lr>\r\n"),
    ));
    gw.sock.send_to(bye.as_bytes(), me).unwrap();
    c.sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, _) = c
        .sock
        .recv_from(&mut buf)
        .expect("the gateway's BYE reaches the caller");
    let got = String::from_utf8_lossy(&buf[..n]);
    assert!(got.starts_with("BYE sip:alice@"), "{got}");
    let forbidden = metric_until(admin, "sipdisp_forbidden_next_hop_total", 4.0);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(victim.received(), 0, "the victim received traffic");
    assert_eq!(forbidden, 4.0);
}

#[test]
fn forged_received_and_rport_do_not_reflect_responses() {
    let victim = Victim::start();
    let b1 = Responder::start("127.0.0.1:0");
    let admin = free_tcp_port();
    let lb = lb(admin, &format!("1 sip:{}\n", b1.addr));
    let c = Client::new("127.0.0.1:0");
    let v = victim.addr;
    // The client claims, in its own Via, that responses go to the victim.
    let inv = c
        .request("INVITE", "sip:bob@example.com", "f1", "f1", "")
        .replace(
            ";rport\r\n",
            &format!(";received={};rport={}\r\n", v.ip(), v.port()),
        );
    let r = c
        .transact(lb.addr(), &inv)
        .expect("the 200 comes back to the real client");
    assert_eq!(code(&r), 200, "{r}");
    thread::sleep(Duration::from_millis(200));
    assert_eq!(victim.received(), 0, "reflected to the victim");
}

#[test]
fn forged_and_edited_responses_are_dropped() {
    let victim = Victim::start();
    // A backend we drive by hand, so we hold the forwarded INVITE.
    let backend = UdpSocket::bind("127.0.0.1:0").unwrap();
    backend
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let admin = free_tcp_port();
    let lb = lb(admin, &format!("1 sip:{}\n", backend.local_addr().unwrap()));
    let c = Client::new("127.0.0.1:0");
    let v = victim.addr;
    // 1. A response in our branch format, from nowhere, whose second Via is the victim.
    let forged = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {};branch=z9hG4bK-sd-0123456789abcdef0123456789abcdef\r\nVia: SIP/2.0/UDP {v};branch=z9hG4bK-x;rport={};received={}\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: forged\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        lb.addr(),
        v.port(),
        v.ip()
    );
    backend.send_to(forged.as_bytes(), lb.addr()).unwrap();
    // 2. A real request; its real response replayed with the second Via edited to the victim.
    let inv = c.request("INVITE", "sip:bob@example.com", "e1", "e1", "");
    c.sock.send_to(inv.as_bytes(), lb.addr()).unwrap();
    let mut buf = [0u8; 65536];
    let (n, from) = backend
        .recv_from(&mut buf)
        .expect("the INVITE reaches the backend");
    let fwd = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut resp = String::from("SIP/2.0 200 OK\r\n");
    for l in fwd.split("\r\n") {
        let name = l.split(':').next().unwrap_or("");
        if ["Via", "From", "Call-ID", "CSeq"].contains(&name) {
            resp.push_str(l);
            resp.push_str("\r\n");
        } else if name == "To" {
            resp.push_str(&format!("{l};tag=gw\r\n"));
        }
    }
    resp.push_str("Content-Length: 0\r\n\r\n");
    let client_ip = c.addr.ip().to_string();
    let edited = resp
        .replace(
            &format!("received={client_ip}"),
            &format!("received={}", v.ip()),
        )
        .replace(
            &format!("rport={}", c.addr.port()),
            &format!("rport={}", v.port()),
        );
    assert_ne!(edited, resp, "the Via was edited: {resp}");
    backend.send_to(edited.as_bytes(), from).unwrap();
    // 3. The untouched response still reaches the real client.
    backend.send_to(resp.as_bytes(), from).unwrap();
    let r = c
        .final_response(Duration::from_secs(2))
        .expect("the real response");
    assert_eq!(code(&r), 200);
    let forged_count = metric_until(admin, "sipdisp_drops_total{reason=\"forged_via\"}", 2.0);
    thread::sleep(Duration::from_millis(200));
    assert_eq!(victim.received(), 0, "the victim received a response");
    assert_eq!(forged_count, 2.0);
}

#[test]
fn sips_is_never_forwarded_over_udp() {
    let b1 = Responder::start("127.0.0.1:0");
    let admin = free_tcp_port();
    let lb = lb(admin, &format!("1 sip:{}\n", b1.addr));
    let c = Client::new("127.0.0.1:0");
    let m = c.request("INVITE", "sips:bob@example.com", "s1", "s1", "");
    let r = c.transact(lb.addr(), &m).expect("an answer");
    assert_eq!(code(&r), 416, "{r}");
    assert!(r.contains("SIPS Needs TLS"), "{r}");
    thread::sleep(Duration::from_millis(200));
    assert!(b1.calls().is_empty(), "forwarded: {:?}", b1.calls());
    assert_eq!(metric_until(admin, "sipdisp_sips_refused_total", 1.0), 1.0);
}

#[test]
fn a_flooding_source_is_blocked_while_others_are_served() {
    let backend = Responder::start("127.0.0.1:0");
    let admin = free_tcp_port();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[dispatcher]\nlist_file = \"LIST\"\n\n[pike]\nenabled = true\nreqs_density_per_unit = 20\nsampling_time_unit = 2\nmax_sources = 64\n\n[[route]]\nselect = \"1=4\"\n"
    );
    let lb = Sipdisp::start(&cfg, &format!("1 sip:{}\n", backend.addr));
    // One source floods: 400 OPTIONS as fast as it can (bounded).
    let flooder = Client::new("127.0.0.1:0");
    for i in 0..400 {
        let m = flooder.request(
            "OPTIONS",
            "sip:x@example.com",
            &format!("fl{i}"),
            &format!("fl{i}"),
            "",
        );
        flooder.sock.send_to(m.as_bytes(), lb.addr()).unwrap();
    }
    // 300 other sources, one request each (distinct loopback addresses: a spoofed-source
    // flood as far as the table is concerned), and one legitimate client asking 5 times.
    for i in 0..300u32 {
        let ip = format!("127.1.{}.{}", i / 250, 1 + i % 250);
        if let Ok(s) = UdpSocket::bind(format!("{ip}:0")) {
            let me = s.local_addr().unwrap();
            let m = format!(
                "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bK-sp{i};rport\r\nMax-Forwards: 70\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:x@example.com>\r\nCall-ID: sp{i}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            );
            let _ = s.send_to(m.as_bytes(), lb.addr());
        }
    }
    // The ~325 requests that pass (the 300 one-off sources and the flood's first 20) reach the
    // one test backend in a few bursts (sipdisp's batch wait gathers what arrives within
    // 200 µs); let its small socket buffer drain before the legitimate client asks, so that
    // what is measured is flood control, not the test backend's queue.
    thread::sleep(Duration::from_millis(300));
    let legit = Client::new("127.0.0.2:0");
    let mut answered = 0;
    for i in 0..5 {
        let m = legit.request(
            "OPTIONS",
            "sip:x@example.com",
            &format!("ok{i}"),
            &format!("ok{i}"),
            "",
        );
        if legit
            .transact(lb.addr(), &m)
            .is_some_and(|r| code(&r) == 200)
        {
            answered += 1;
        }
    }
    let blocked = metric_until(admin, "sipdisp_pike_blocked_requests_total", 300.0);
    let addr = format!("127.0.0.1:{admin}").parse().unwrap();
    let (_, top) = crate::control_e2e::rpc(addr, "pike.top", serde_json::json!([]));
    let flooded = backend
        .calls()
        .iter()
        .filter(|(_, cid)| cid.starts_with("fl"))
        .count();
    drop(lb);
    assert_eq!(answered, 5, "the legitimate client is served");
    assert!(blocked >= 300.0, "the flood was blocked: {blocked}");
    assert!(flooded <= 60, "{flooded} of the flood reached the backend");
    assert!(
        top["result"]
            .as_array()
            .is_some_and(|a| a.iter().any(|e| e["ip_addr"] == "127.0.0.1")),
        "pike.top names the flooder: {top}"
    );
}

#[test]
fn idle_and_dripping_admin_clients_stall_no_one() {
    use std::io::{Read, Write};
    let b1 = Responder::start("127.0.0.1:0");
    let admin = free_tcp_port();
    let lb = lb(admin, &format!("1 sip:{}\n", b1.addr));
    let addr: SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    // 500 connections that say nothing, 50 that drip a request one byte at a time.
    let idle: Vec<std::net::TcpStream> = (0..500)
        .filter_map(|_| std::net::TcpStream::connect(addr).ok())
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let drippers: Vec<_> = (0..50)
        .map(|_| {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let Ok(mut s) = std::net::TcpStream::connect(addr) else {
                    return;
                };
                let end = Instant::now() + Duration::from_secs(8);
                for b in b"GET /metrics HTTP/1.1\r\nHost: x\r\n".iter().cycle() {
                    if stop.load(Ordering::Relaxed)
                        || Instant::now() > end
                        || s.write_all(&[*b]).is_err()
                    {
                        return;
                    }
                    thread::sleep(Duration::from_millis(300));
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(500));
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let t0 = Instant::now();
        let (st, body) = http(addr, "GET", "/metrics").expect("/metrics answers");
        worst = worst.max(t0.elapsed());
        assert_eq!(st, 200);
        assert!(body.contains("sipdisp_uptime_seconds"));
        let t0 = Instant::now();
        let (st, v) = crate::control_e2e::rpc(addr, "dispatcher.list", serde_json::json!([]));
        worst = worst.max(t0.elapsed());
        assert_eq!(st, 200, "{v}");
    }
    println!("slowest answer with 500 idle and 50 dripping connections: {worst:?}");
    // Garbage and oversized requests get 4xx.
    let raw = |bytes: &[u8]| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(7))).unwrap();
        let _ = s.write_all(bytes);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out
    };
    assert!(raw(b"\x00\x01garbage\r\n\r\n").starts_with("HTTP/1.1 400"));
    let mut big = b"POST /RPC HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n".to_vec();
    big.extend_from_slice(b"{}");
    assert!(raw(&big).starts_with("HTTP/1.1 413"));
    assert!(
        raw(b"POST /RPC HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}")
            .starts_with("HTTP/1.1 400")
    );
    stop.store(true, Ordering::Relaxed);
    for d in drippers {
        let _ = d.join();
    }
    drop(idle);
    drop(lb);
    assert!(worst < Duration::from_secs(1), "an answer took {worst:?}");
}

#[test]
fn a_worker_that_falls_behind_refuses_new_requests_with_retry_after() {
    // One worker (mmsg: 64 datagrams per batch) and a client that blasts 20,000 new INVITEs as
    // fast as one thread can send them (bounded count; several times what the worker can
    // forward): the worker falls behind, answers a share of them 503 + Retry-After (the
    // default overload_admit_percent = 50), keeps forwarding and relaying the rest, and serves
    // normally once the burst is over.
    let b1 = Responder::start("127.0.0.1:0");
    let admin = free_tcp_port();
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nworkers = 1\ndatapath = \"mmsg\"\n\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n\n[dispatcher]\nlist_file = \"LIST\"\n\n[[route]]\nselect = \"1=4\"\n"
    );
    let lb = Sipdisp::start(&cfg, &format!("1 sip:{}\n", b1.addr));
    let me = lb.addr();
    let c = Client::new("127.0.0.1:0");
    let sock = c.sock.try_clone().unwrap();
    let (stop, answers) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let refused = Arc::new(AtomicU64::new(0));
    let without_retry_after = Arc::new(AtomicU64::new(0));
    let reader = {
        let (stop, answers, refused, bad) = (
            Arc::clone(&stop),
            Arc::clone(&answers),
            Arc::clone(&refused),
            Arc::clone(&without_retry_after),
        );
        thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let s = String::from_utf8_lossy(&buf[..n]);
                    match code(&s) {
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                            if !s.contains("\r\nRetry-After: 5\r\n") {
                                bad.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        200.. => {
                            answers.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {}
                    }
                }
            }
        })
    };
    const SENT: u64 = 20_000;
    for i in 0..SENT {
        let m = c.request(
            "INVITE",
            "sip:bob@example.com",
            &format!("o{i}"),
            &format!("o{i}"),
            "",
        );
        let _ = c.sock.send_to(m.as_bytes(), me);
    }
    let refused_total = metric_until(admin, "sipdisp_overload_refused_total", 1.0);
    let behind = metric_until(admin, "sipdisp_receive_backlog_batches_total", 1.0);
    thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    reader.join().unwrap();
    let (got_503, got_ok) = (
        refused.load(Ordering::Relaxed),
        answers.load(Ordering::Relaxed),
    );
    println!(
        "sent {SENT}: behind in {behind} batches, refused {refused_total} (client got {got_503} 503s and {got_ok} other finals)"
    );
    assert!(behind >= 1.0, "the worker never fell behind");
    assert!(refused_total >= 1.0, "nothing refused");
    assert!(got_503 >= 1, "no 503 reached the client");
    assert!(got_503 as f64 <= refused_total);
    assert_eq!(
        without_retry_after.load(Ordering::Relaxed),
        0,
        "a 503 without Retry-After: 5"
    );
    assert!(got_ok >= 1, "nothing was forwarded while behind");
    // Caught up: the next request is forwarded and answered by the backend.
    let c2 = Client::new("127.0.0.1:0");
    let after = c2.request("INVITE", "sip:bob@example.com", "after", "after", "");
    assert_eq!(c2.transact(me, &after).map(|r| code(&r)), Some(200));
}
