//! The backend test module: every test runs against each socket backend (io_uring, mmsg) over
//! real loopback sockets, and against the memory backend where it makes sense. A backend the
//! kernel does not offer prints "skipped" with the reason.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use super::*;

const V4: &str = "127.0.0.1:0";
const V6: &str = "[::1]:0";

/// The socket backends this kernel offers; prints "skipped" for the others.
fn socket_backends(test: &str) -> Vec<Backend> {
    let mut v = Vec::new();
    match io_uring_unavailable() {
        None => v.push(Backend::IoUring),
        Some(why) => println!("{test}: io_uring skipped: {why}"),
    }
    v.push(Backend::Mmsg);
    v
}

fn ipv6_available(test: &str) -> bool {
    match UdpSocket::bind(V6) {
        Ok(_) => true,
        Err(e) => {
            println!("{test}: IPv6 loopback skipped: {e}");
            false
        }
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn client(like: SocketAddr) -> UdpSocket {
    let c = UdpSocket::bind(if like.is_ipv4() { V4 } else { V6 }).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    c
}

/// The closure shape most of these tests are written in: `Some(datagram)` once per datagram,
/// then `None` for the tick; no deadline.
struct Legacy<F>(F);

impl<F: FnMut(Option<&Datagram<'_>>, &mut Outbox<'_>)> Handler for Legacy<F> {
    fn datagram(&mut self, _: Instant, d: &Datagram<'_>, out: &mut Outbox<'_>) {
        (self.0)(Some(d), out)
    }
    fn tick(&mut self, _: Instant, out: &mut Outbox<'_>) {
        (self.0)(None, out)
    }
    fn next_deadline(&self) -> Option<Instant> {
        None
    }
}

fn legacy<F: FnMut(Option<&Datagram<'_>>, &mut Outbox<'_>)>(f: F) -> Legacy<F> {
    Legacy(f)
}

/// Runs batches with `handler` until `want` datagrams were received or 5 s passed.
fn run_until(dp: &mut dyn Datapath, want: u64, handler: &mut dyn Handler) -> BatchStats {
    let mut total = BatchStats::default();
    let end = Instant::now() + Duration::from_secs(5);
    while total.received + total.truncated < want && Instant::now() < end {
        let s = dp
            .run_batch(Some(Duration::from_millis(50)), handler)
            .unwrap();
        total.add(&s);
    }
    total
}

fn echo_handler(prefix: &'static [u8]) -> impl Handler {
    legacy(move |d, ob| {
        if let Some(d) = d {
            ob.push(d.local, d.peer, &[prefix, d.data]).unwrap();
        }
    })
}

/// A client per listen address sends `n` datagrams in chunks of `chunk`; the handler echoes
/// them with a copied prefix and the received data referenced. Checks bytes and zero copy.
fn echo(backend: Backend, listen: &[SocketAddr], cfg: &NetConfig, n: usize, chunk: usize) {
    let mut dp = open(backend, listen, cfg).unwrap();
    assert_eq!(dp.kind(), backend);
    for (i, l) in dp.local_addrs().iter().enumerate() {
        assert_eq!(l.ip(), listen[i].ip());
        assert_ne!(l.port(), 0);
    }
    echo_on(&mut *dp, n, chunk);
}

fn echo_on(dp: &mut dyn Datapath, n: usize, chunk: usize) {
    let backend = dp.kind();
    let locals = dp.local_addrs().to_vec();
    let mut handler = echo_handler(b"ECHO ");
    let mut buf = vec![0u8; 70_000];
    for (li, local) in locals.iter().enumerate() {
        let c = client(*local);
        let mut sent = 0;
        while sent < n {
            let k = chunk.min(n - sent);
            let mut want = BTreeSet::new();
            let mut payload_bytes = 0;
            for j in sent..sent + k {
                let msg = format!("datagram {j} to socket {li} {}", "x".repeat(j % 200));
                payload_bytes += msg.len() as u64;
                c.send_to(msg.as_bytes(), local).unwrap();
                want.insert(format!("ECHO {msg}").into_bytes());
            }
            let s = run_until(dp, k as u64, &mut handler);
            assert_eq!(
                (s.received, s.sent, s.send_errors, s.truncated),
                (k as u64, k as u64, 0, 0),
                "{backend} {local}"
            );
            assert_eq!(
                s.referenced_bytes, payload_bytes,
                "{backend}: data not copied"
            );
            assert_eq!(
                s.copied_bytes,
                5 * k as u64,
                "{backend}: only the prefix copied"
            );
            let mut got = BTreeSet::new();
            for _ in 0..k {
                let (len, from) = c.recv_from(&mut buf).unwrap();
                assert_eq!(from, *local);
                got.insert(buf[..len].to_vec());
            }
            assert_eq!(got, want, "{backend} {local}");
            sent += k;
        }
    }
}

#[test]
fn echo_ipv4_and_ipv6() {
    let v6 = ipv6_available("echo_ipv4_and_ipv6");
    for b in socket_backends("echo_ipv4_and_ipv6") {
        let mut listen = vec![addr(V4)];
        if v6 {
            listen.push(addr(V6));
        }
        echo(b, &listen, &NetConfig::default(), 300, 100);
    }
}

#[test]
fn batches_larger_than_the_ring() {
    // 8 receive buffers / batch slots and 16 transmit slots, 100 datagrams at a time: the
    // multishot receive runs out of buffers (ENOBUFS) and must be re-armed, mmsg needs many
    // recvmmsg rounds.
    let cfg = NetConfig {
        recv_buffers: 8,
        batch: 8,
        transmits: 16,
        ..NetConfig::default()
    };
    for b in socket_backends("batches_larger_than_the_ring") {
        echo(b, &[addr(V4)], &cfg, 400, 100);
    }
}

#[test]
fn largest_datagram_round_trips_without_copy() {
    for b in socket_backends("largest_datagram_round_trips_without_copy") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        let local = dp.local_addrs()[0];
        let c = client(local);
        let big: Vec<u8> = (0..MAX_DATAGRAM).map(|i| (i % 251) as u8).collect();
        c.send_to(&big, local).unwrap();
        let mut h = legacy(|d: Option<&Datagram<'_>>, ob: &mut Outbox<'_>| {
            if let Some(d) = d {
                assert_eq!(
                    ob.push(d.local, d.peer, &[b"!", d.data]),
                    Err(OutboxError::TooLarge {
                        len: MAX_DATAGRAM + 1
                    })
                );
                ob.push(d.local, d.peer, &[&d.data[..10], &d.data[10..]])
                    .unwrap();
            }
        });
        let s = run_until(&mut *dp, 1, &mut h);
        assert_eq!((s.received, s.sent), (1, 1), "{b}");
        assert_eq!(
            (s.referenced_bytes, s.copied_bytes),
            (MAX_DATAGRAM as u64, 0)
        );
        let mut buf = vec![0u8; 70_000];
        let (len, _) = c.recv_from(&mut buf).unwrap();
        assert!(buf[..len] == big[..], "{b}");
    }
}

#[test]
fn truncated_datagrams_are_counted_and_dropped() {
    let cfg = NetConfig {
        max_datagram: 2048,
        ..NetConfig::default()
    };
    for b in socket_backends("truncated_datagrams_are_counted_and_dropped") {
        let mut dp = open(b, &[addr(V4)], &cfg).unwrap();
        let local = dp.local_addrs()[0];
        let c = client(local);
        c.send_to(&[b'a'; 2048], local).unwrap();
        c.send_to(&[b'b'; 4000], local).unwrap();
        c.send_to(b"small", local).unwrap();
        let mut seen = Vec::new();
        let mut h = legacy(|d: Option<&Datagram<'_>>, _: &mut Outbox<'_>| {
            if let Some(d) = d {
                seen.push(d.data.len());
            }
        });
        let s = run_until(&mut *dp, 3, &mut h);
        assert_eq!((s.received, s.truncated), (2, 1), "{b}");
        assert_eq!(seen, [2048, 5], "{b}");
    }
    let mut m = MemoryDatapath::new(&[addr("127.0.0.1:5060")], &cfg);
    m.inject(SocketIdx(0), addr("127.0.0.1:1"), &[0; 2049]);
    m.inject(SocketIdx(0), addr("127.0.0.1:1"), &[0; 2048]);
    let s = m.run_batch(None, &mut legacy(|_, _| {})).unwrap();
    assert_eq!((s.received, s.truncated), (1, 1));
}

#[test]
fn timeout_without_traffic_returns_promptly_and_ticks() {
    for b in socket_backends("timeout_without_traffic_returns_promptly_and_ticks") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        for (timeout, at_most) in [
            (Duration::ZERO, Duration::from_millis(50)),
            (Duration::from_millis(100), Duration::from_millis(600)),
        ] {
            let mut ticks = 0;
            let t0 = Instant::now();
            let s = dp
                .run_batch(
                    Some(timeout),
                    &mut legacy(|d, _| {
                        assert!(d.is_none());
                        ticks += 1;
                    }),
                )
                .unwrap();
            let took = t0.elapsed();
            assert_eq!(s, BatchStats::default(), "{b}");
            assert_eq!(ticks, 1, "{b}");
            assert!(
                took >= timeout && took < at_most,
                "{b}: {took:?} for {timeout:?}"
            );
        }
    }
}

#[test]
fn tick_comes_after_the_datagrams_and_can_send() {
    for b in socket_backends("tick_comes_after_the_datagrams_and_can_send") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        let local = dp.local_addrs()[0];
        let c = client(local);
        let peer = c.local_addr().unwrap();
        c.send_to(b"one", local).unwrap();
        let mut order = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while !order.contains(&"dg") && Instant::now() < end {
            order.clear();
            dp.run_batch(
                Some(Duration::from_millis(50)),
                &mut legacy(|d, ob| match d {
                    Some(_) => order.push("dg"),
                    None => {
                        order.push("tick");
                        ob.push(SocketIdx(0), peer, &[b"probe"]).unwrap();
                    }
                }),
            )
            .unwrap();
        }
        assert_eq!(order, ["dg", "tick"], "{b}");
        let mut buf = [0u8; 16];
        let (len, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"probe");
    }
}

/// Pushes each datagram back five times, recording each result.
fn push_five(results: &mut Vec<Result<(), OutboxError>>) -> impl Handler + '_ {
    legacy(|d, ob| {
        if let Some(d) = d {
            for _ in 0..5 {
                results.push(ob.push(d.local, d.peer, &[d.data]));
            }
        }
    })
}

#[test]
fn full_outbox_is_an_error_not_a_panic() {
    let cfg = NetConfig {
        transmits: 4,
        ..NetConfig::default()
    };
    let expect = [Ok(()), Ok(()), Ok(()), Ok(()), Err(OutboxError::Full)];
    for b in socket_backends("full_outbox_is_an_error_not_a_panic") {
        let mut dp = open(b, &[addr(V4)], &cfg).unwrap();
        let local = dp.local_addrs()[0];
        let c = client(local);
        c.send_to(b"x", local).unwrap();
        let mut results = Vec::new();
        let s = run_until(&mut *dp, 1, &mut push_five(&mut results));
        assert_eq!(results, expect, "{b}");
        assert_eq!(s.sent, 4, "{b}");
        let mut buf = [0u8; 4];
        for _ in 0..4 {
            assert_eq!(c.recv_from(&mut buf).unwrap().0, 1);
        }
    }
    let mut m = MemoryDatapath::new(&[addr("127.0.0.1:5060")], &cfg);
    m.inject(SocketIdx(0), addr("127.0.0.1:1"), b"x");
    let mut results = Vec::new();
    m.run_batch(None, &mut push_five(&mut results)).unwrap();
    assert_eq!(results, expect);
    assert_eq!(m.transmits().len(), 4);
}

#[test]
fn send_to_a_closed_port_is_counted_not_fatal() {
    for b in socket_backends("send_to_a_closed_port_is_counted_not_fatal") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        // A port nobody listens on: the kernel answers ICMP port unreachable, which a later
        // send or receive may report as ECONNREFUSED; the worker must keep going.
        let closed = UdpSocket::bind(V4).unwrap().local_addr().unwrap();
        for _ in 0..3 {
            dp.run_batch(
                Some(Duration::from_millis(10)),
                &mut legacy(|d, ob| {
                    if d.is_none() {
                        ob.push(SocketIdx(0), closed, &[b"nobody"]).unwrap();
                    }
                }),
            )
            .unwrap();
        }
        echo_on(&mut *dp, 10, 10);
    }
}

#[test]
fn reuseport_shares_one_port_between_two_workers() {
    for b in socket_backends("reuseport_shares_one_port_between_two_workers") {
        let mut w1 = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        let port = w1.local_addrs()[0];
        let mut w2 = open(b, w1.local_addrs(), &NetConfig::default()).unwrap();
        assert_eq!(w2.local_addrs(), [port]);
        // Many source ports so the kernel's reuseport hash spreads them over both sockets.
        let clients: Vec<UdpSocket> = (0..32).map(|_| client(port)).collect();
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("c{i}").as_bytes(), port).unwrap();
        }
        let mut per_worker = [0u64; 2];
        let end = Instant::now() + Duration::from_secs(5);
        while per_worker.iter().sum::<u64>() < 32 && Instant::now() < end {
            for (i, w) in [&mut w1, &mut w2].into_iter().enumerate() {
                let mut h = echo_handler(b"");
                per_worker[i] += w
                    .run_batch(Some(Duration::from_millis(10)), &mut h)
                    .unwrap()
                    .received;
            }
        }
        assert_eq!(per_worker.iter().sum::<u64>(), 32, "{b}");
        assert!(
            per_worker[0] > 0 && per_worker[1] > 0,
            "{b}: {per_worker:?}"
        );
        for (i, c) in clients.iter().enumerate() {
            let mut buf = [0u8; 8];
            let (len, _) = c.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], format!("c{i}").as_bytes());
        }
    }
}

/// The daemon opens datapaths on the main thread and runs each on its worker thread (io_uring:
/// the first thread to run a batch becomes the ring's single issuer).
#[test]
fn opened_on_one_thread_and_run_on_another() {
    for b in socket_backends("opened_on_one_thread_and_run_on_another") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        std::thread::spawn(move || {
            echo_on(&mut *dp, 40, 20);
            drop(dp);
        })
        .join()
        .unwrap();
    }
}

#[test]
fn binding_a_taken_port_without_reuseport_fails_clearly() {
    let taken = UdpSocket::bind(V4).unwrap();
    let a = taken.local_addr().unwrap();
    for b in socket_backends("binding_a_taken_port_without_reuseport_fails_clearly") {
        let e = open(b, &[a], &NetConfig::default()).err().unwrap();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{b}");
        assert!(e.to_string().contains(&a.to_string()), "{e}");
    }
}

#[test]
fn backend_names() {
    assert_eq!(Backend::IoUring.to_string(), "io_uring");
    assert_eq!(Backend::Mmsg.to_string(), "mmsg");
    assert_eq!(Backend::Memory.to_string(), "memory");
}

/// A handler that records the `now` of every call and asks for a tick at `deadline`.
struct Clocked {
    deadline: Option<Instant>,
    datagrams: Vec<Instant>,
    ticks: Vec<Instant>,
}

impl Handler for Clocked {
    fn datagram(&mut self, now: Instant, _: &Datagram<'_>, _: &mut Outbox<'_>) {
        self.datagrams.push(now);
    }
    fn tick(&mut self, now: Instant, _: &mut Outbox<'_>) {
        self.ticks.push(now);
    }
    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

#[test]
fn memory_batch_time_is_read_after_the_wait() {
    // Virtual clock: a datagram arriving 10 s after the batch starts waiting is handled with
    // the time of its arrival, not the time the wait began; the tick sees the same time.
    let t0 = Instant::now();
    let mut m = MemoryDatapath::new(&[addr("127.0.0.1:5060")], &NetConfig::default())
        .with_virtual_clock(t0);
    m.inject_after(
        Duration::from_secs(10),
        SocketIdx(0),
        addr("127.0.0.1:1"),
        b"late",
    );
    let mut h = Clocked {
        deadline: None,
        datagrams: Vec::new(),
        ticks: Vec::new(),
    };
    let s = m.run_batch(Some(Duration::from_secs(60)), &mut h).unwrap();
    assert_eq!(s.received, 1);
    assert_eq!(h.datagrams, [t0 + Duration::from_secs(10)]);
    assert_eq!(h.ticks, [t0 + Duration::from_secs(10)]);
}

#[test]
fn memory_batch_wakes_at_the_handler_deadline() {
    // The wait ends at the handler's deadline (3 s), before the datagram (10 s) and the cap
    // (60 s); the next batch, capped at 60 s with no deadline, waits for the datagram.
    let t0 = Instant::now();
    let mut m = MemoryDatapath::new(&[addr("127.0.0.1:5060")], &NetConfig::default())
        .with_virtual_clock(t0);
    m.inject_after(
        Duration::from_secs(10),
        SocketIdx(0),
        addr("127.0.0.1:1"),
        b"x",
    );
    let mut h = Clocked {
        deadline: Some(t0 + Duration::from_secs(3)),
        datagrams: Vec::new(),
        ticks: Vec::new(),
    };
    let s = m.run_batch(Some(Duration::from_secs(60)), &mut h).unwrap();
    assert_eq!(
        (s.received, &h.ticks[..]),
        (0, &[t0 + Duration::from_secs(3)][..])
    );
    h.deadline = None;
    let s = m.run_batch(Some(Duration::from_secs(60)), &mut h).unwrap();
    assert_eq!(s.received, 1);
    assert_eq!(h.datagrams, [t0 + Duration::from_secs(10)]);
    // A deadline already passed: no wait at all.
    h.deadline = Some(t0);
    m.run_batch(Some(Duration::from_secs(60)), &mut h).unwrap();
    assert_eq!(m.virtual_now(), Some(t0 + Duration::from_secs(10)));
}

#[test]
fn socket_batch_time_is_read_after_the_wait() {
    // A datagram sent 300 ms into a batch's wait is handed over with a time read after it
    // arrived; a deadline 100 ms away ends an empty wait early.
    for b in socket_backends("socket_batch_time_is_read_after_the_wait") {
        let mut dp = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
        let local = dp.local_addrs()[0];
        let sender = std::thread::spawn(move || {
            let c = client(local);
            std::thread::sleep(Duration::from_millis(300));
            let sent = Instant::now();
            c.send_to(b"late", local).unwrap();
            sent
        });
        let mut h = Clocked {
            deadline: None,
            datagrams: Vec::new(),
            ticks: Vec::new(),
        };
        let end = Instant::now() + Duration::from_secs(5);
        while h.datagrams.is_empty() && Instant::now() < end {
            dp.run_batch(Some(Duration::from_secs(2)), &mut h).unwrap();
        }
        let sent = sender.join().unwrap();
        assert_eq!(h.datagrams.len(), 1, "{b}");
        assert!(
            h.datagrams[0] >= sent,
            "{b}: handled with a time from before it was sent"
        );
        let t0 = Instant::now();
        h.deadline = Some(t0 + Duration::from_millis(100));
        dp.run_batch(Some(Duration::from_secs(5)), &mut h).unwrap();
        let took = t0.elapsed();
        assert!(
            took >= Duration::from_millis(100) && took < Duration::from_secs(4),
            "{b}: waited {took:?} for a 100 ms deadline"
        );
    }
}

#[test]
fn random_spread_shares_one_peer_between_two_workers() {
    // One client (one 4-tuple): the kernel's hash gives all of it to one worker; with the
    // random reuseport program both workers get a share.
    for b in socket_backends("random_spread_shares_one_peer_between_two_workers") {
        for spread in [Spread::Flow, Spread::Random] {
            let mut w1 = open(b, &[addr(V4)], &NetConfig::default()).unwrap();
            let local = w1.local_addrs().to_vec();
            let mut w2 = open(b, &local, &NetConfig::default()).unwrap();
            w1.steer(&Steering {
                spread,
                members: 2,
                priority_prefix: None,
            })
            .unwrap();
            let c = client(local[0]);
            for i in 0..200u32 {
                c.send_to(&i.to_be_bytes(), local[0]).unwrap();
            }
            let mut per_worker = [0u64; 2];
            let end = Instant::now() + Duration::from_secs(5);
            while per_worker.iter().sum::<u64>() < 200 && Instant::now() < end {
                for (i, w) in [&mut w1, &mut w2].into_iter().enumerate() {
                    per_worker[i] += w
                        .run_batch(Some(Duration::from_millis(10)), &mut legacy(|_, _| {}))
                        .unwrap()
                        .received;
                }
            }
            assert_eq!(per_worker.iter().sum::<u64>(), 200, "{b} {spread:?}");
            let busy = per_worker.iter().filter(|&&n| n > 0).count();
            match spread {
                Spread::Flow => assert_eq!(busy, 1, "{b}: one 4-tuple, one worker: {per_worker:?}"),
                Spread::Random => assert!(
                    per_worker.iter().all(|&n| n >= 40),
                    "{b}: random spread: {per_worker:?}"
                ),
            }
            println!("{b} {spread:?}: {per_worker:?}");
        }
    }
}

/// What one worker of [`lanes_split_responses_and_keep_flows_together`] saw: per client port,
/// the lanes its datagrams arrived on.
fn collect_lanes(dps: &mut [Box<dyn Datapath>], want: u64) -> Vec<Vec<(u16, Lane, Vec<u8>)>> {
    let mut seen: Vec<Vec<(u16, Lane, Vec<u8>)>> = vec![Vec::new(); dps.len()];
    let end = Instant::now() + Duration::from_secs(5);
    while seen.iter().map(|v| v.len() as u64).sum::<u64>() < want && Instant::now() < end {
        for (i, dp) in dps.iter_mut().enumerate() {
            let got = &mut seen[i];
            dp.run_batch(
                Some(Duration::from_millis(10)),
                &mut legacy(|d, _| {
                    if let Some(d) = d {
                        got.push((d.peer.port(), d.lane, d.data.to_vec()));
                    }
                }),
            )
            .unwrap();
        }
    }
    seen
}

#[test]
fn lanes_split_responses_and_keep_flows_together() {
    // Two workers on one address, the steering program with the "SIP/" prefix: each client's
    // requests and responses reach the same worker (flow spread), responses on its priority
    // lane, everything else (and datagrams too short to test) on the normal lane.
    for b in socket_backends("lanes_split_responses_and_keep_flows_together") {
        for a in [V4, V6] {
            if a == V6 && !ipv6_available("lanes_split_responses_and_keep_flows_together") {
                continue;
            }
            let w1 = open(b, &[addr(a)], &NetConfig::default()).unwrap();
            let local = w1.local_addrs().to_vec();
            let w2 = open(b, &local, &NetConfig::default()).unwrap();
            w1.steer(&Steering {
                spread: Spread::Flow,
                members: 2,
                priority_prefix: Some(*b"SIP/"),
            })
            .unwrap();
            let clients: Vec<UdpSocket> = (0..16).map(|_| client(local[0])).collect();
            for c in &clients {
                c.send_to(b"INVITE sip:x SIP/2.0\r\n\r\n", local[0])
                    .unwrap();
                c.send_to(b"SIP/2.0 200 OK\r\n\r\n", local[0]).unwrap();
                c.send_to(b"\r\n", local[0]).unwrap();
            }
            let mut dps = vec![w1, w2];
            let seen = collect_lanes(&mut dps, 48);
            assert_eq!(seen.iter().map(Vec::len).sum::<usize>(), 48, "{b} {a}");
            for (w, got) in seen.iter().enumerate() {
                for (port, lane, data) in got {
                    let want = if data.starts_with(b"SIP/") {
                        Lane::Priority
                    } else {
                        Lane::Normal
                    };
                    assert_eq!(*lane, want, "{b} {a} worker {w}: {data:?}");
                    if data.len() >= 4 {
                        // Every datagram (of 4 bytes or more) of a client on one worker.
                        let other = &seen[1 - w];
                        assert!(
                            !other.iter().any(|(p, _, d)| p == port && d.len() >= 4),
                            "{b} {a}: client {port} on both workers"
                        );
                    }
                }
            }
            let busy = seen.iter().filter(|v| !v.is_empty()).count();
            assert_eq!(busy, 2, "{b} {a}: 16 clients all on one worker");
            println!(
                "{b} {a}: per worker {:?}",
                seen.iter().map(Vec::len).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn priority_lane_is_handled_first_and_backlog_reported() {
    // Far more requests than the small receive buffer holds (the queue fills to where the
    // kernel drops), then a few responses: the first batch hands the responses over first and
    // reports the backlog; once the queue is drained, batches are no longer behind.
    struct Order {
        lanes: Vec<Lane>,
        load: Option<Load>,
    }
    impl Handler for Order {
        fn begin(&mut self, _: Instant, load: Load) {
            self.load.get_or_insert(load);
        }
        fn datagram(&mut self, _: Instant, d: &Datagram<'_>, _: &mut Outbox<'_>) {
            self.lanes.push(d.lane);
        }
        fn tick(&mut self, _: Instant, _: &mut Outbox<'_>) {}
        fn next_deadline(&self) -> Option<Instant> {
            None
        }
    }
    for b in socket_backends("priority_lane_is_handled_first_and_backlog_reported") {
        let cfg = NetConfig {
            recv_buffers: 16,
            batch: 16,
            socket_buffer: 64 * 1024,
            ..NetConfig::default()
        };
        let mut dp = open(b, &[addr(V4)], &cfg).unwrap();
        let local = dp.local_addrs().to_vec();
        dp.steer(&Steering {
            spread: Spread::Flow,
            members: 1,
            priority_prefix: Some(*b"SIP/"),
        })
        .unwrap();
        let c = client(local[0]);
        for _ in 0..600 {
            let _ = c.send_to(b"OPTIONS sip:x SIP/2.0\r\n\r\n", local[0]);
        }
        for _ in 0..4 {
            c.send_to(b"SIP/2.0 200 OK\r\n\r\n", local[0]).unwrap();
        }
        let mut h = Order {
            lanes: Vec::new(),
            load: None,
        };
        // The first batch with datagrams (io_uring arms its receives in the first one).
        while h.lanes.is_empty() {
            h.load = None;
            dp.run_batch(Some(Duration::from_millis(200)), &mut h)
                .unwrap();
        }
        assert_eq!(h.load, Some(Load { backlog: true }), "{b}: {:?}", h.lanes);
        assert_eq!(&h.lanes[..4], &[Lane::Priority; 4], "{b}: {:?}", h.lanes);
        assert!(h.lanes[4..].iter().all(|&l| l == Lane::Normal), "{b}");
        // Drain: the last batches are not behind.
        let mut last = None;
        let end = Instant::now() + Duration::from_secs(5);
        loop {
            h.lanes.clear();
            h.load = None;
            dp.run_batch(Some(Duration::from_millis(50)), &mut h)
                .unwrap();
            if h.lanes.is_empty() || Instant::now() > end {
                break;
            }
            last = h.load;
        }
        assert_eq!(last, Some(Load { backlog: false }), "{b}");
    }
}

#[test]
fn batch_wait_delivers_everything_and_still_times_out() {
    // With a coalescing window every datagram is still delivered, an idle wait still ends at
    // its timeout, and a kernel without `min_wait` (or mmsg) simply ignores the window.
    for b in socket_backends("batch_wait_delivers_everything_and_still_times_out") {
        let cfg = NetConfig {
            batch_wait: Duration::from_millis(1),
            ..NetConfig::default()
        };
        let mut dp = open(b, &[addr(V4)], &cfg).unwrap();
        let local = dp.local_addrs()[0];
        let c = client(local);
        for i in 0..50u32 {
            c.send_to(&i.to_be_bytes(), local).unwrap();
        }
        let got = run_until(&mut *dp, 50, &mut legacy(|_, _| {}));
        assert_eq!(got.received, 50, "{b}");
        let t0 = Instant::now();
        let idle = dp
            .run_batch(Some(Duration::from_millis(50)), &mut legacy(|_, _| {}))
            .unwrap();
        assert_eq!(idle.received, 0, "{b}");
        assert!(
            t0.elapsed() < Duration::from_secs(2),
            "{b}: idle wait {:?}",
            t0.elapsed()
        );
    }
}
