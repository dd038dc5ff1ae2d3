//! The per-message proxy path allocates nothing: scan, route, select (every algorithm but 10),
//! rewrite plan, stateless replies, response relaying — counted by the binary's counting
//! allocator (see `dispatch_alloc.rs`) on the current thread, after one warm-up round.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use sipdisp::dispatch::{DispatchParams, LoadHooks, Snapshot, parse_list, parse_rules};
use sipdisp::netio::{Flow, OutboxError, SocketIdx};
use sipdisp::proxy::{
    Action, Inbound, Listener, Plane, ProxyConfig, Route, RouteTable, Sink, Target, Template,
    Verdict, Worker, literal_addr,
};

use crate::dispatch_alloc::allocations;

/// A sink that keeps only a byte count and the last destination (no allocation).
struct Count {
    bytes: usize,
    last: Option<SocketAddr>,
}

impl Sink for Count {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        self.bytes += pieces.iter().map(|p| p.len()).sum::<usize>();
        self.last = Some(flow.remote);
        Ok(())
    }
}

fn request(method: &str, call_id: &str, extra: &str) -> String {
    format!(
        "{method} sip:+4930123@pbx.example.com;user=phone SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.17:5062;branch=z9hG4bK-{call_id};rport\r\nMax-Forwards: 70\r\nFrom: \"A\" <sip:alice@pbx.example.com>;tag=8e2f\r\nTo: <sip:+4930123@pbx.example.com>\r\nCall-ID: {call_id}\r\nCSeq: 1 {method}\r\nProxy-Authorization: Digest username=\"alice\"\r\n{extra}Content-Length: 4\r\n\r\nv=0\n"
    )
}

#[test]
fn proxy_message_path_allocates_nothing() {
    let params = DispatchParams::default();
    let list = "1 sip:127.0.0.1:5070 0 0 weight=50;rweight=50\n1 sip:127.0.0.1:5071 0 0 weight=50;rweight=50\n2 sip:127.0.0.1:5072 1\n";
    let loaded = parse_list(
        "alloc.list",
        list.as_bytes(),
        &params,
        &LoadHooks::default(),
    )
    .unwrap();
    let plane = Arc::new(Plane::new(
        Snapshot::build(&loaded.entries, params, 3),
        literal_addr,
    ));
    let route = |name: &str, rules: &str, target| Route {
        name: name.into(),
        conditions: vec![sipdisp::proxy::Condition::Header {
            name: b"X-Alg".as_slice().into(),
            value: Some(name.as_bytes().into()),
        }],
        action: Action::Select {
            rules: parse_rules(rules).unwrap(),
            target,
            limit: 0,
        },
        failover: None,
    };
    let mut routes: Vec<Route> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
        .iter()
        .map(|a| {
            route(
                &a.to_string(),
                &format!("1={a}"),
                if a % 2 == 0 {
                    Target::Dst
                } else {
                    Target::Ruri
                },
            )
        })
        .collect();
    routes.push(route("dead", "2=0", Target::Dst));
    let cfg = Arc::new(ProxyConfig {
        sockets: vec![Listener::new("127.0.0.1:5060".parse().unwrap())],
        record_route: true,
        max_forwards: 70,
        overload: sipdisp::proxy::Overload::default(),
        routes: RouteTable { routes },
        hash_template: Template::parse("$fU@$hdr(X-Alg)").ok(),
        pike: None,
        allowed_next_hops: Vec::new(),
        via_key: sipdisp::proxy::branch::ViaKey([7; 16]),
        timers: Default::default(),
        call_check_interval: None,
    });
    let mut worker = Worker::new(cfg, 9);
    let source: SocketAddr = "198.51.100.17:5062".parse().unwrap();
    let mut msgs: Vec<String> = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12]
        .iter()
        .flat_map(|a| {
            let x = format!("X-Alg: {a}\r\n");
            vec![
                request("INVITE", &format!("c{a}"), &x),
                request("CANCEL", &format!("c{a}"), &x),
                request("OPTIONS", &format!("o{a}"), &x),
            ]
        })
        .collect();
    msgs.push(request("INVITE", "dead", "X-Alg: dead\r\n")); // 503
    msgs.push(
        request("OPTIONS", "mf", "X-Alg: 0\r\n").replace("Max-Forwards: 70", "Max-Forwards: 0"),
    ); // 483
    msgs.push("garbage".to_owned());
    // Our stateless branch carries a MAC over the address the response goes back to.
    let mut mac = [0u8; 16];
    sipdisp::proxy::branch::hex16(
        sipdisp::proxy::branch::branch_mac(
            &sipdisp::proxy::branch::ViaKey([7; 16]),
            b"0123456789abcdef",
            "198.51.100.17:5062".parse().unwrap(),
            b"UDP",
        ),
        &mut mac,
    );
    let response = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-sd-0123456789abcdef{};rport=5060\r\nVia: SIP/2.0/UDP 198.51.100.17:5062;branch=z9hG4bK-x;received=198.51.100.17;rport=5062\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: r\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
        std::str::from_utf8(&mac).unwrap()
    );
    msgs.push(response);
    let mut sink = Count {
        bytes: 0,
        last: None,
    };
    let mut verdicts = Vec::with_capacity(msgs.len() * 2);
    for round in 0..2 {
        verdicts.clear();
        let now = Instant::now();
        let ((), n) = allocations(|| {
            for m in &msgs {
                let from = if m.starts_with("SIP/2.0") {
                    "127.0.0.1:5070".parse().unwrap()
                } else {
                    source
                };
                let v = worker.handle(
                    now,
                    &plane,
                    &Inbound {
                        data: m.as_bytes(),
                        flow: Flow::udp(SocketIdx(0), from),
                    },
                    &mut sink,
                );
                verdicts.push(v);
            }
        });
        if round == 1 {
            assert_eq!(n, 0, "allocations on the message path: {verdicts:?}");
        }
    }
    assert!(sink.bytes > 0);
    let forwarded = verdicts
        .iter()
        .filter(|v| matches!(v, Verdict::Forwarded(_)))
        .count();
    assert_eq!(forwarded, 36, "{verdicts:?}");
    assert!(verdicts.contains(&Verdict::Replied(503)) && verdicts.contains(&Verdict::Replied(483)));
    assert!(verdicts.contains(&Verdict::Relayed));
}

/// A sink that copies every transmit into preallocated buffers (no allocation).
struct Capture {
    bufs: Vec<Vec<u8>>,
    to: Vec<SocketAddr>,
    n: usize,
}

impl Capture {
    fn new() -> Capture {
        Capture {
            bufs: (0..16).map(|_| Vec::with_capacity(8192)).collect(),
            to: Vec::with_capacity(16),
            n: 0,
        }
    }

    fn clear(&mut self) {
        self.n = 0;
        self.to.clear();
    }

    /// The last transmit sent to `addr`.
    fn last_to(&self, addr: SocketAddr) -> Option<&[u8]> {
        (0..self.n)
            .rev()
            .find(|&i| self.to[i] == addr)
            .map(|i| &self.bufs[i][..])
    }
}

impl Sink for Capture {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        let b = &mut self.bufs[self.n % 16];
        b.clear();
        for p in pieces {
            b.extend_from_slice(p);
        }
        if self.to.len() < 16 {
            self.to.push(flow.remote);
        }
        self.n = (self.n + 1).min(16);
        Ok(())
    }
}

/// A response `status` to the forwarded request `req` (its header section, our Via on top),
/// written into `out` without allocating.
fn answer(out: &mut Vec<u8>, status: &[u8], req: &[u8]) {
    out.clear();
    out.extend_from_slice(b"SIP/2.0 ");
    out.extend_from_slice(status);
    out.extend_from_slice(b"\r\n");
    let start = req.iter().position(|&b| b == b'\n').unwrap() + 1;
    let end = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(req.len());
    for line in req[start..end].split(|&b| b == b'\n') {
        if !line.starts_with(b"Content-Length") && !line.starts_with(b"Content-Type") {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
}

#[test]
fn stateful_failover_path_allocates_nothing_at_steady_state() {
    let params = DispatchParams {
        flags: 2,
        ..DispatchParams::default()
    };
    let list = "1 sip:127.0.0.1:5070\n1 sip:127.0.0.1:5071\n";
    let loaded = parse_list(
        "alloc.list",
        list.as_bytes(),
        &params,
        &LoadHooks::default(),
    )
    .unwrap();
    let plane = Arc::new(Plane::new(
        Snapshot::build(&loaded.entries, params, 3),
        literal_addr,
    ));
    let cfg = Arc::new(ProxyConfig {
        sockets: vec![Listener::new("127.0.0.1:5060".parse().unwrap())],
        record_route: true,
        max_forwards: 70,
        overload: sipdisp::proxy::Overload::default(),
        routes: RouteTable {
            routes: vec![Route {
                name: "gw".into(),
                conditions: vec![],
                action: Action::Select {
                    rules: parse_rules("1=8").unwrap(),
                    target: Target::Dst,
                    limit: 0,
                },
                failover: Some(sipdisp::proxy::Failover {
                    codes: Default::default(),
                    mark: None,
                }),
            }],
        },
        hash_template: None,
        pike: None,
        allowed_next_hops: Vec::new(),
        via_key: sipdisp::proxy::branch::ViaKey([7; 16]),
        timers: Default::default(),
        call_check_interval: None,
    });
    let table = Arc::new(sipdisp::proxy::txn::TxnTable::new(
        64,
        4,
        Instant::now(),
        false,
    ));
    let mut worker = Worker::new(cfg, 1).with_transactions(table, 0, 1);
    let client: SocketAddr = "198.51.100.17:5062".parse().unwrap();
    let (gw1, gw2): (SocketAddr, SocketAddr) = (
        "127.0.0.1:5071".parse().unwrap(),
        "127.0.0.1:5070".parse().unwrap(),
    );
    let invites: Vec<String> = (0..4)
        .map(|i| request("INVITE", &format!("sf{i}"), ""))
        .collect();
    let mut sink = Capture::new();
    let mut resp = Vec::with_capacity(8192);
    let mut now = Instant::now();
    let mut verdicts = Vec::with_capacity(64);
    for round in 0..3 {
        verdicts.clear();
        let ((), n) = allocations(|| {
            for inv in &invites {
                sink.clear();
                verdicts.push(worker.handle(
                    now,
                    &plane,
                    &Inbound {
                        data: inv.as_bytes(),
                        flow: Flow::udp(SocketIdx(0), client),
                    },
                    &mut sink,
                ));
                // Alg 8 picks the first array entry (gw1): it answers 503, we fail over to gw2.
                let first = sink.last_to(gw1).expect("forwarded to the first gateway");
                answer(&mut resp, b"503 Service Unavailable", first);
                verdicts.push(worker.handle(
                    now,
                    &plane,
                    &Inbound {
                        data: &resp,
                        flow: Flow::udp(SocketIdx(0), gw1),
                    },
                    &mut sink,
                ));
                let second = sink
                    .last_to(gw2)
                    .expect("failed over to the second gateway");
                answer(&mut resp, b"180 Ringing", second);
                verdicts.push(worker.handle(
                    now,
                    &plane,
                    &Inbound {
                        data: &resp,
                        flow: Flow::udp(SocketIdx(0), gw2),
                    },
                    &mut sink,
                ));
                let second = sink.last_to(gw2).unwrap();
                answer(&mut resp, b"200 OK", second);
                verdicts.push(worker.handle(
                    now,
                    &plane,
                    &Inbound {
                        data: &resp,
                        flow: Flow::udp(SocketIdx(0), gw2),
                    },
                    &mut sink,
                ));
            }
            // The wait timers end every call; their slots are reused next round.
            now += std::time::Duration::from_secs(40);
            worker.handle_timeout(now, &plane, &mut sink);
        });
        if round == 2 {
            assert_eq!(n, 0, "allocations on the stateful path: {verdicts:?}");
        }
    }
    let c = worker.counters().txn;
    assert_eq!((c.started, c.ended), (12, 12), "{c:?}");
    assert_eq!(c.failovers_code, 12);
    assert_eq!(
        verdicts
            .iter()
            .filter(|v| matches!(v, Verdict::Relayed))
            .count(),
        8,
        "180 and 200 of each call relayed: {verdicts:?}"
    );
}
