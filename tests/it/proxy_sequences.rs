//! Hostile message sequences through the whole proxy core (scan → decide → stateful or
//! stateless → sink), with injected time: any sequence of client requests, backend responses,
//! replays, corruptions, clock jumps, overload and reloads leaves the proxy within its
//! promises:
//!
//! * no panic;
//! * nothing is sent anywhere configuration does not allow: a destination of a set, a host of
//!   `allowed_next_hops`, or the address of a peer that sent us a message (its responses; the
//!   port may be its Via's, RFC 3261 §18.2.2);
//! * a response goes to a peer only if that peer sent a request of the same call (no answer
//!   of one caller's call reaches another);
//! * one message never causes more than a bounded number of transmits (no amplification);
//! * once the clock has run past every timer, no transaction is left in the table, no plane
//!   replaced by a reload is kept alive and, after the call-load expiry, no call load is left on
//!   any destination.
//!
//! Two workers share the transaction table, and each message goes to the worker its source
//! hashes to (as the kernel's flow steering does): a caller's requests and its gateways'
//! responses meet on different workers.
//!
//! A sequence is decoded from bytes ([`run`]), so the same rig serves the deterministic test
//! below (random byte strings from a fixed seed, run by CI) and the cargo-fuzz target
//! `tests/fuzz/fuzz_targets/proxy.rs`, which includes this file.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipdisp::dispatch::{Carry, DispatchParams, LoadHooks, Snapshot, parse_list, parse_rules};
use sipdisp::netio::{Flow, OutboxError, SocketIdx};
use sipdisp::proxy::pike::PikeConfig;
use sipdisp::proxy::txn::TxnTable;
use sipdisp::proxy::{
    Action, Condition, Failover, Inbound, Listener, Network, Plane, ProxyConfig, Route, RouteTable,
    Sink, Target, Worker, literal_addr,
};

/// Our one SIP address.
const ME: &str = "127.0.0.1:5060";
/// The callers.
const CLIENTS: [&str; 3] = [
    "198.51.100.1:5062",
    "198.51.100.2:5062",
    "[2001:db8::7]:5062",
];
/// Every destination of every list the rig loads (set 1: gateways, set 2: one more).
const BACKENDS: [&str; 4] = [
    "127.0.0.1:5070",
    "127.0.0.1:5071",
    "127.0.0.1:5072",
    "127.0.0.1:5073",
];
/// The lists the rig switches between (a reload drops and re-adds 5071).
const LISTS: [&str; 2] = [
    "1 sip:127.0.0.1:5070 0 0 weight=50;rweight=50;maxload=3\n\
     1 sip:127.0.0.1:5071 0 0 weight=50;rweight=50;maxload=3\n\
     1 sip:127.0.0.1:5072 0 0 maxload=3\n\
     2 sip:127.0.0.1:5073\n",
    "1 sip:127.0.0.1:5070 0 0 weight=50;rweight=50;maxload=3\n\
     1 sip:127.0.0.1:5072 0 0 maxload=3\n\
     2 sip:127.0.0.1:5073\n",
];
/// A network next hops may be in when a Route or in-dialog Request-URI names them.
const ALLOWED: &str = "192.0.2.0/24";
/// Transmits one message may cause at most (a parallel fork to every destination, its
/// provisional and final responses, hop-by-hop ACK/CANCEL).
const MAX_SENDS_PER_MESSAGE: usize = 16;
/// Transmits kept for the answer and replay operations.
const KEPT: usize = 32;

const METHODS: [&str; 8] = [
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "PRACK", "UPDATE",
];
const CODES: [u16; 16] = [
    100, 180, 183, 200, 202, 300, 302, 401, 404, 408, 480, 486, 487, 500, 503, 603,
];

/// Reads the operation bytes; past the end every read is 0.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        a
    }
}

/// Keeps the last [`KEPT`] transmits and checks every destination.
struct Recorder {
    kept: Vec<(SocketAddr, Vec<u8>)>,
    next: usize,
    /// Transmits since the last [`Recorder::start`].
    sends: usize,
    /// Peers that sent us something, by address (their responses may use their Via's port).
    peers: Vec<IpAddr>,
    /// The Call-IDs each peer's requests carried.
    calls: Vec<(Vec<u8>, IpAddr)>,
    /// Call-IDs of responses the rig corrupted or replayed: a transaction relays such a
    /// response to its caller whatever its Call-ID says, so it is not checked.
    tainted: Vec<Vec<u8>>,
    allowed: Network,
}

impl Recorder {
    fn taint(&mut self, m: &[u8]) {
        self.tainted.extend(call_ids(m));
    }

    fn start(&mut self) {
        self.sends = 0;
    }

    fn allows(&self, to: SocketAddr) -> bool {
        BACKENDS
            .iter()
            .any(|b| b.parse::<SocketAddr>().unwrap() == to)
            || self.peers.contains(&to.ip())
            || self.allowed.contains(to.ip())
    }
}

impl Sink for Recorder {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        let mut data = Vec::new();
        for p in pieces {
            data.extend_from_slice(p);
        }
        assert!(
            self.allows(flow.remote),
            "sent to {} which no configuration allows:\n{}",
            flow.remote,
            String::from_utf8_lossy(&data)
        );
        assert!(data.len() <= 65_507, "a {}-byte datagram", data.len());
        let to_backend = BACKENDS
            .iter()
            .any(|b| b.parse::<SocketAddr>().unwrap() == flow.remote);
        if data.starts_with(b"SIP/2.0 ") && !to_backend {
            let ids = call_ids(&data);
            assert!(
                ids.is_empty()
                    || ids.iter().any(|id| self.tainted.contains(id))
                    || ids.iter().any(|id| self
                        .calls
                        .iter()
                        .any(|(c, ip)| c == id && *ip == flow.remote.ip())),
                "a response sent to {}, which sent no request of its call:\n{}",
                flow.remote,
                String::from_utf8_lossy(&data)
            );
        }
        self.sends += 1;
        if self.kept.len() < KEPT {
            self.kept.push((flow.remote, data));
        } else {
            self.kept[self.next] = (flow.remote, data);
            self.next = (self.next + 1) % KEPT;
        }
        Ok(())
    }
}

/// The proxy under test, its clock and what it sent.
struct Rig {
    workers: [Worker; 2],
    table: Arc<TxnTable>,
    plane: Arc<Plane>,
    list: usize,
    params: DispatchParams,
    now: Instant,
    sink: Recorder,
    /// Planes replaced by reloads: once their calls have ended, nothing may keep them.
    retired: Vec<std::sync::Weak<Plane>>,
}

fn plane(list: usize, params: &DispatchParams, old: Option<&Plane>) -> Arc<Plane> {
    let loaded = parse_list(
        "rig.list",
        LISTS[list].as_bytes(),
        params,
        &LoadHooks::default(),
    )
    .expect("the rig's lists parse");
    let mut snap = Snapshot::build(&loaded.entries, params.clone(), 5);
    if let Some(old) = old {
        snap.carry_state_from(&old.snapshot, Carry::All);
    }
    Arc::new(Plane::new(snap, literal_addr))
}

fn route(name: &str, conditions: Vec<Condition>, rules: &str, failover: bool) -> Route {
    Route {
        name: name.into(),
        conditions,
        action: Action::Select {
            rules: parse_rules(rules).unwrap(),
            target: Target::Dst,
            limit: 0,
        },
        // The last route also marks a failed gateway (`ds_mark_dst("ip")`).
        failover: failover.then(|| Failover {
            codes: Default::default(),
            mark: (name == "gw").then(|| b"ip".as_slice().into()),
        }),
    }
}

fn header(name: &str) -> Vec<Condition> {
    vec![Condition::Header {
        name: name.as_bytes().into(),
        value: None,
    }]
}

impl Rig {
    fn new() -> Rig {
        let params = DispatchParams {
            flags: 2,
            ds_hash_size: 4,
            ds_hash_expire: Duration::from_secs(60),
            ds_hash_initexpire: Duration::from_secs(7),
            ds_hash_check_interval: Duration::from_secs(5),
            ..DispatchParams::default()
        };
        let cfg = Arc::new(ProxyConfig {
            sockets: vec![Listener::new(ME.parse().unwrap())],
            record_route: true,
            max_forwards: 70,
            overload: sipdisp::proxy::Overload::default(),
            routes: RouteTable {
                routes: vec![
                    route("fork", header("X-Fork"), "1=12", true),
                    route("load", header("X-Load"), "1=10", true),
                    route("stateless-load", header("X-SLoad"), "1=10", false),
                    route(
                        "options",
                        vec![Condition::Method(vec![b"OPTIONS".as_slice().into()])],
                        "2=0",
                        false,
                    ),
                    route("gw", vec![], "1=4", true),
                ],
            },
            hash_template: None,
            pike: Some(PikeConfig {
                sampling_time_unit: Duration::from_secs(2),
                reqs_density_per_unit: 5,
                remove_latency: Duration::from_secs(4),
                max_sources: 64,
                reply_503: true,
            }),
            allowed_next_hops: vec![Network::parse(ALLOWED).unwrap()],
            via_key: sipdisp::proxy::branch::ViaKey([9; 16]),
            timers: Default::default(),
            call_check_interval: Some(params.ds_hash_check_interval),
        });
        let now = Instant::now();
        let table = Arc::new(TxnTable::new(64, 4, now, false));
        let workers = [0, 1].map(|i| {
            Worker::new(Arc::clone(&cfg), 3 + i as u64).with_transactions(Arc::clone(&table), i, 2)
        });
        Rig {
            workers,
            table,
            plane: plane(0, &params, None),
            list: 0,
            params,
            now,
            retired: Vec::new(),
            sink: Recorder {
                kept: Vec::new(),
                next: 0,
                sends: 0,
                peers: Vec::new(),
                calls: Vec::new(),
                tainted: Vec::new(),
                allowed: Network::parse(ALLOWED).unwrap(),
            },
        }
    }

    /// Hands `data` from `from` to the worker and checks the amplification bound.
    fn deliver(&mut self, data: &[u8], from: SocketAddr) {
        if !self.sink.peers.contains(&from.ip()) {
            self.sink.peers.push(from.ip());
        }
        if !data.starts_with(b"SIP/2.0 ") {
            for id in call_ids(data) {
                if !self.sink.calls.contains(&(id.clone(), from.ip())) {
                    self.sink.calls.push((id, from.ip()));
                }
            }
        }
        self.sink.start();
        let pkt = Inbound {
            data,
            flow: Flow::udp(SocketIdx(0), from),
        };
        let w = &mut self.workers[steer(from)];
        let v = w.handle(self.now, &self.plane, &pkt, &mut self.sink);
        // As the I/O loop does after each batch: health takes the marks (dst-down events).
        w.take_marks(|_| {});
        if std::env::var_os("RIG_DEBUG").is_some() {
            eprintln!("{v:?} <- {}", String::from_utf8_lossy(data));
        }
        assert!(
            self.sink.sends <= MAX_SENDS_PER_MESSAGE,
            "{} transmits for one message ({v:?}):\n{}",
            self.sink.sends,
            String::from_utf8_lossy(data)
        );
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.sink.start();
        for w in &mut self.workers {
            w.handle_timeout(self.now, &self.plane, &mut self.sink);
            w.take_marks(|_| {});
        }
    }

    /// One operation decoded from `b`.
    fn step(&mut self, b: &mut Bytes<'_>) {
        match b.u8() % 10 {
            // Raw bytes from a caller.
            0 => {
                let from = client(b.u8());
                let n = usize::from(b.u8()) * 8;
                let data = b.take(n).to_vec();
                self.deliver(&data, from);
            }
            // A well-formed request from a caller, maybe corrupted.
            1 | 2 => {
                let from = client(b.u8());
                let mut m = request(b, from);
                corrupt(b, &mut m);
                self.deliver(&m, from);
            }
            // A backend answers something we sent it.
            3 | 4 => {
                let pick = b.u8();
                let code = match b.u8() {
                    c @ 0..=239 => CODES[usize::from(c) % CODES.len()],
                    c => 100 + u16::from(c) * 3,
                };
                let tag = b.u8();
                let spoof = b.u8().is_multiple_of(8);
                let Some((to, req)) = self.kept_to_backend(pick) else {
                    return;
                };
                let mut m = answer(code, tag, &req);
                if corrupt(b, &mut m) {
                    self.sink.taint(&m);
                }
                let from = if spoof { client(tag) } else { to };
                self.deliver(&m, from);
            }
            // Something we sent comes back in, from anyone (loops, replays).
            5 => {
                let pick = usize::from(b.u8());
                let from = match b.u8() % 3 {
                    0 => client(b.u8()),
                    1 => BACKENDS[usize::from(b.u8()) % BACKENDS.len()]
                        .parse()
                        .unwrap(),
                    _ => ME.parse().unwrap(),
                };
                if self.sink.kept.is_empty() {
                    return;
                }
                let mut m = self.sink.kept[pick % self.sink.kept.len()].1.clone();
                corrupt(b, &mut m);
                self.sink.taint(&m);
                self.deliver(&m, from);
            }
            // The clock moves (up to ~19 s).
            6 => {
                let ms = u64::from(b.u8()) * 75;
                self.advance(Duration::from_millis(ms));
            }
            // The I/O layer says the worker is (not) behind.
            7 => {
                let v = b.u8();
                self.workers[usize::from(v & 1)].begin(v & 2 == 0);
            }
            // The caller of a forwarded INVITE cancels it.
            8 => {
                let pick = b.u8();
                let Some((_, invite)) = self.kept_to_backend_where(pick, b"INVITE ") else {
                    return;
                };
                if let Some((from, mut m)) = cancel_of(&invite) {
                    corrupt(b, &mut m);
                    self.deliver(&m, from);
                }
            }
            // A reload switches the list.
            _ => {
                self.list = 1 - self.list;
                let new = plane(self.list, &self.params, Some(&self.plane));
                self.retired
                    .push(Arc::downgrade(&std::mem::replace(&mut self.plane, new)));
            }
        }
    }

    /// A kept request that went to a backend (not a response, not an ACK).
    fn kept_to_backend(&self, pick: u8) -> Option<(SocketAddr, Vec<u8>)> {
        self.kept_to_backend_where(pick, b"")
    }

    /// [`Rig::kept_to_backend`] among the requests that start with `start`.
    fn kept_to_backend_where(&self, pick: u8, start: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
        let (newer, older) = self.sink.kept.split_at(self.sink.next);
        let reqs: Vec<&(SocketAddr, Vec<u8>)> = older
            .iter()
            .chain(newer)
            .filter(|(to, m)| {
                BACKENDS
                    .iter()
                    .any(|b| b.parse::<SocketAddr>().unwrap() == *to)
                    && !m.starts_with(b"SIP/2.0")
                    && !m.starts_with(b"ACK")
                    && m.starts_with(start)
            })
            .collect();
        if reqs.is_empty() {
            return None;
        }
        // `pick` 0 is the newest.
        let (to, m) = reqs[reqs.len() - 1 - usize::from(pick) % reqs.len()];
        Some((*to, m.clone()))
    }

    /// Runs the clock past every timer and checks that nothing is left.
    fn drain(&mut self) {
        // Timer B/F (64·T1), fr_inv_timer, wt_timer, and the call-load expiry after it.
        for _ in 0..60 {
            self.advance(Duration::from_secs(5));
        }
        assert_eq!(
            self.table.live(),
            0,
            "transactions left after the timers ran"
        );
        assert!(
            self.retired.iter().all(|w| w.upgrade().is_none()),
            "a plane replaced by a reload is still kept after its calls ended"
        );
        for set in self.plane.snapshot.sets() {
            for d in set.destinations() {
                assert_eq!(
                    d.dload(),
                    0,
                    "call load left on {} after the expiry",
                    String::from_utf8_lossy(d.host())
                );
            }
        }
    }
}

/// Mostly the first caller (so requests meet their transactions), sometimes the others.
/// The worker a datagram from `from` goes to (a flow hash, as `SO_REUSEPORT` steering).
fn steer(from: SocketAddr) -> usize {
    let ip = match from.ip() {
        IpAddr::V4(a) => a.octets().iter().map(|&o| usize::from(o)).sum::<usize>(),
        IpAddr::V6(a) => a.octets().iter().map(|&o| usize::from(o)).sum::<usize>(),
    };
    (ip + usize::from(from.port())) % 2
}

/// The values of every Call-ID header (`Call-ID:` or compact `i:`) of `m`, trimmed.
fn call_ids(m: &[u8]) -> Vec<Vec<u8>> {
    let head = m
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(m, |i| &m[..i]);
    head.split(|&b| b == b'\n')
        .filter_map(|line| {
            let colon = line.iter().position(|&b| b == b':')?;
            let name = line[..colon].trim_ascii();
            (name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i"))
                .then(|| line[colon + 1..].trim_ascii().to_vec())
        })
        .collect()
}

fn client(b: u8) -> SocketAddr {
    let i = if b < 170 {
        0
    } else {
        usize::from(b) % CLIENTS.len()
    };
    CLIENTS[i].parse().unwrap()
}

/// A request from `from`, its method, call, sequence number and options from `b`.
fn request(b: &mut Bytes<'_>, from: SocketAddr) -> Vec<u8> {
    // Mostly INVITEs of a few calls, mostly plain: odd shapes are one in two.
    let method = *METHODS.get(usize::from(b.u8() % 12)).unwrap_or(&"INVITE");
    let call = b.u8() % 4;
    let cseq = if b.u8() < 192 { 1 } else { 2 };
    let (opts, more, size) = match b.u8() {
        // Plain: `rport`, the usual Request-URI, Max-Forwards 70 (a To tag when in a dialog).
        0..128 if matches!(method, "BYE" | "PRACK" | "UPDATE") => (0x20, 13, 0),
        0..128 => (0x00, 13, 0),
        _ => (b.u8(), b.u8(), b.u8()),
    };
    let host = match from {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    let ruri = match more % 5 {
        0 => "sip:+4930123@192.0.2.9:5080".to_owned(),
        1 => "sips:bob@gw.example.com".to_owned(),
        2 => "sip:bob@203.0.113.66:5060".to_owned(),
        _ => "sip:+4930123@pbx.example.com;user=phone".to_owned(),
    };
    // CANCEL and a non-2xx ACK share their INVITE's branch; a 2xx ACK gets its own.
    let branch = if method == "ACK" && opts & 0x40 != 0 {
        format!("z9hG4bK-ack{call}{cseq}")
    } else {
        format!("z9hG4bK-c{call}n{cseq}")
    };
    let cseq_method = if method == "ACK" || method == "CANCEL" {
        method
    } else if opts & 0x80 != 0 {
        "INVITE"
    } else {
        method
    };
    let mut m = format!("{method} {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {host}:5062;branch={branch}");
    match opts % 4 {
        0 => m.push_str(";rport"),
        1 => m.push_str(";received=203.0.113.66;rport=9"),
        _ => {}
    }
    m.push_str("\r\n");
    if opts & 0x04 != 0 {
        m.push_str("Via: SIP/2.0/UDP 203.0.113.66:5060;branch=z9hG4bK-second\r\n");
    }
    let mf = match more / 5 % 4 {
        0 => 0,
        1 => 1,
        _ => 70,
    };
    m.push_str(&format!("Max-Forwards: {mf}\r\n"));
    if opts & 0x08 != 0 {
        m.push_str(&format!("Route: <sip:{ME};lr>\r\n"));
    }
    if opts & 0x10 != 0 {
        let next = if more & 0x40 != 0 {
            "192.0.2.9:5080"
        } else {
            "203.0.113.66"
        };
        let lr = if more & 0x80 != 0 { "" } else { ";lr" };
        m.push_str(&format!("Route: <sip:{next}{lr}>\r\n"));
    }
    m.push_str("From: <sip:alice@example.com>;tag=a1\r\n");
    let to_tag = if opts & 0x20 != 0 { ";tag=b1" } else { "" };
    m.push_str(&format!("To: <sip:+4930123@pbx.example.com>{to_tag}\r\n"));
    m.push_str(&format!(
        "Call-ID: call-{call}@example.com\r\nCSeq: {cseq} {cseq_method}\r\n"
    ));
    m.push_str(&format!("Contact: <sip:alice@{host}:5062>\r\n"));
    match call {
        0 => m.push_str("X-Fork: 1\r\n"),
        1 => m.push_str("X-Load: 1\r\n"),
        2 if more & 0x20 != 0 => m.push_str("X-SLoad: 1\r\n"),
        _ => {}
    }
    // Sizes beyond the scanner's fixed capacities: 100 Vias (RFC 4475 style, more header
    // lines than it indexes), or one header of a few kilobytes.
    if size & 0x03 == 0x01 {
        for i in 0..100 {
            m.push_str(&format!(
                "Via: SIP/2.0/UDP 203.0.113.{}:5060;branch=z9hG4bK-{i}\r\n",
                i % 250
            ));
        }
    }
    if size & 0x0c == 0x04 {
        m.push_str(&format!(
            "X-Big: {}\r\n",
            "y".repeat(3000 + usize::from(size) * 7)
        ));
    }
    m.push_str("Content-Length: 4\r\n\r\nv=0\n");
    m.into_bytes()
}

/// A response `code` to the forwarded request `req`, its headers copied as a UAS would
/// (our Via on top), a To tag unless `tag` says otherwise.
fn answer(code: u16, tag: u8, req: &[u8]) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code} Reason\r\n").into_bytes();
    let start = req.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1);
    let end = req
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(req.len(), |i| i + 2);
    for line in req[start.min(end)..end].split_inclusive(|&b| b == b'\n') {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with(b"content-") || lower.starts_with(b"max-forwards") {
            continue;
        }
        if lower.starts_with(b"to:")
            && !tag.is_multiple_of(4)
            && !lower.windows(5).any(|w| w == b";tag=")
        {
            let body = line.strip_suffix(b"\r\n").unwrap_or(line);
            out.extend_from_slice(body);
            out.extend_from_slice(format!(";tag=uas{}\r\n", tag % 3).as_bytes());
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"Content-Length: 0\r\n\r\n");
    out
}

/// The caller's CANCEL of the INVITE we forwarded as `invite` (RFC 3261 §9.1: its Request-URI,
/// top Via — the caller's, under ours —, Call-ID, From, To and CSeq number), and the caller.
fn cancel_of(invite: &[u8]) -> Option<(SocketAddr, Vec<u8>)> {
    let text = std::str::from_utf8(invite).ok()?;
    let mut lines = text.split("\r\n");
    let ruri = lines.next()?.split(' ').nth(1)?;
    let mut out = format!("CANCEL {ruri} SIP/2.0\r\n");
    let mut vias = 0;
    let mut from = None;
    for line in lines.take_while(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if lower.starts_with("via:") {
            vias += 1;
            if vias == 2 {
                from = CLIENTS
                    .iter()
                    .map(|c| c.parse::<SocketAddr>().unwrap())
                    .find(|c| line.contains(&format!("received={}", c.ip())));
                out.push_str(line);
                out.push_str("\r\n");
            }
        } else if ["from:", "to:", "call-id:"]
            .iter()
            .any(|h| lower.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        } else if lower.starts_with("cseq:") {
            let n = line[5..].split_whitespace().next()?;
            out.push_str(&format!("CSeq: {n} CANCEL\r\n"));
        }
    }
    out.push_str("Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
    Some((from?, out.into_bytes()))
}

/// Maybe overwrites, truncates or duplicates part of `m`, as `b` says; true if it did.
fn corrupt(b: &mut Bytes<'_>, m: &mut Vec<u8>) -> bool {
    let how = b.u8();
    if m.is_empty() || how < 192 {
        return false;
    }
    let at = (usize::from(b.u8()) * 7 + usize::from(b.u8())) % m.len();
    match how % 4 {
        0 => m[at] = b.u8(),
        1 => m.truncate(at),
        2 => {
            let piece = m[at..].to_vec();
            m.extend_from_slice(&piece);
        }
        _ => {
            let len = usize::from(b.u8() % 16);
            let bytes = b.take(len).to_vec();
            m.splice(at..at, bytes);
        }
    }
    true
}

/// Runs the sequence that `data` encodes, then drains the clock; panics on any broken
/// promise (see the module documentation). Returns each worker's counters (what the sequence
/// reached).
pub fn run(data: &[u8]) -> [sipdisp::proxy::Counters; 2] {
    let mut rig = Rig::new();
    let mut b = Bytes(data);
    let mut steps = 0;
    while !b.0.is_empty() && steps < 512 {
        rig.step(&mut b);
        steps += 1;
    }
    rig.drain();
    rig.workers.each_ref().map(|w| w.counters().clone())
}

#[cfg(test)]
mod tests {
    use sipdisp::proxy::Counters;

    /// xorshift64*: a fixed-seed generator, so a failure names the sequence that caused it.
    fn bytes(seed: u64, n: usize) -> Vec<u8> {
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..n)
            .map(|_| {
                x ^= x >> 12;
                x ^= x << 25;
                x ^= x >> 27;
                (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn random_sequences_keep_every_promise() {
        let mut all = Vec::new();
        // `PROXY_SEQUENCES=n` runs more (or fewer) than the 400 CI runs.
        let n = std::env::var("PROXY_SEQUENCES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(400u64);
        for seed in 0..n {
            let data = bytes(seed, 64 + (seed as usize % 7) * 96);
            let r = std::panic::catch_unwind(|| super::run(&data));
            let Ok(cs) = r else {
                panic!("sequence of seed {seed} broke a promise (see above)");
            };
            all.extend(cs);
        }
        // The sequences are not vacuous: they reach every part of the proxy.
        let seen = Counters::sum(&all);
        let t = &seen.txn;
        let reached = [
            ("forwarded", seen.forwarded),
            ("routed (Route / in-dialog)", seen.routed),
            ("relayed responses", seen.relayed),
            ("forbidden next hops", seen.forbidden_next_hop),
            ("SIPS refused", seen.sips_refused),
            ("flood-limited", seen.pike_blocked),
            ("refused while behind", seen.overload_refused),
            ("4xx replies", seen.replied[4]),
            ("too many header lines", seen.too_many_headers),
            ("transactions", t.started),
            ("CANCELs matched", t.cancels),
            ("retransmissions absorbed", t.retransmissions_in),
            ("retransmissions sent", t.retransmissions_out),
            ("failovers on a code", t.failovers_code),
            ("failovers on a timeout", t.failovers_timeout),
            ("local timeouts", t.timeouts),
        ];
        let missed: Vec<_> = reached.iter().filter(|(_, n)| *n == 0).collect();
        assert!(
            missed.is_empty(),
            "never reached: {missed:?} (all: {reached:?})"
        );
        assert_eq!(t.started, t.ended, "{t:?}");
    }

    #[test]
    fn a_sequence_leaves_no_memory_behind() {
        // Once the proxy core and its tables are dropped, every byte they allocated on the
        // way is freed (after a first round that lets lazily initialised statics settle).
        let seqs: Vec<Vec<u8>> = (1000..1040u64).map(|s| bytes(s, 700)).collect();
        for d in &seqs {
            super::run(d);
        }
        for (i, d) in seqs.iter().enumerate() {
            let left = crate::dispatch_alloc::retained(|| super::run(d));
            assert_eq!(left, 0, "sequence {i} left {left} bytes allocated");
        }
    }

    #[test]
    fn calls_answered_in_order_end_cleanly() {
        // On each route an INVITE, its gateway answers 503 (failover), the next one 200.
        let mut data = Vec::new();
        for call in 0..4u8 {
            // op 1: from caller 0, INVITE, call, CSeq 1, plain shape, not corrupted
            data.extend_from_slice(&[1, 0, 8, call, 0, 0, 0]);
            // op 3: the newest request to a backend answered 503, then the newest again
            // (the next gateway; the fork's other branch) 200 with a tag
            data.extend_from_slice(&[3, 0, 14, 1, 1, 0]);
            data.extend_from_slice(&[3, u8::from(call == 0), 3, 1, 1, 0]);
            data.extend_from_slice(&[6, 20]);
        }
        let c = Counters::sum(&super::run(&data));
        assert_eq!((c.txn.started, c.txn.ended), (4, 4), "{:?}", c.txn);
        assert_eq!(c.txn.failovers_code, 3, "{:?}", c.txn);
        assert!(c.relayed >= 4, "{c:?}");
    }

    #[test]
    fn cancel_before_answer_meets_its_invite() {
        // INVITE, 180 from the gateway, CANCEL from the caller: matched, 487 flows back.
        let data = [1, 0, 8, 3, 0, 0, 0, 3, 0, 1, 1, 1, 0, 1, 0, 2, 3, 0, 0, 0];
        let c = Counters::sum(&super::run(&data));
        assert_eq!(c.txn.cancels, 1, "{:?}", c.txn);
    }
}
