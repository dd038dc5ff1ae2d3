//! The per-thread message handler: classification, request forwarding, response relaying,
//! stateless replies, and the counters every verdict bumps in one place.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arrayvec::ArrayVec;
use sipdisp_parser::{
    Error, HeaderKind, Headers, MAX_PIECES, Message, Plan, Scheme, Uri, Via, parse_datagram,
};

use super::branch::{BRANCH_PREFIX, ProbeToken, branch_for, stable_hash};
use super::keys::{TEMPLATE_CAPACITY, key_for};
use super::recent::Recent;
use super::reply::{self, REPLY_CAPACITY};
use super::route::{Action, Target};
use super::{Plane, ProxyConfig, ip_port};
use crate::dispatch::{Algorithm, Key, Mode, Pick};

/// Largest failover list the proxy asks dispatch for (it only uses the first entry for now:
/// stateless forwarding has no failover).
const PICKS: usize = 16;

/// One datagram as the I/O layer received it.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    /// The datagram.
    pub data: &'a [u8],
    /// Who sent it.
    pub source: SocketAddr,
    /// Which of our sockets received it (index into [`ProxyConfig::sockets`]).
    pub local: usize,
}

/// Where transmits go (the I/O layer's outbox; a collector in tests).
pub trait Sink {
    /// Queues one datagram made of `pieces`, from local socket `local` to `to`. Returns false
    /// when it could not be queued.
    fn send(&mut self, local: usize, to: SocketAddr, pieces: &[&[u8]]) -> bool;
}

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    /// It does not scan as SIP (or a part the proxy must read is malformed and no reply can
    /// be built).
    Malformed(Error),
    /// A CRLF keep-alive.
    KeepAlive,
    /// A response whose top Via is not this proxy's.
    NotOurVia,
    /// No address to send to (a next hop that is not an IP literal, or no local socket of the
    /// destination's address family).
    NoNextHop,
    /// The sink refused the transmit (outbox full, oversized).
    SendFailed,
    /// A request that would be answered, but is an ACK (never answered) or the reply does not
    /// fit the reply buffer.
    Unanswerable,
    /// The rewrite plan could not be built (scratch space, malformed routing parts).
    Rewrite,
}

impl Drop {
    /// Number of distinct labels ([`Drop::label`]).
    pub const COUNT: usize = 7;

    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Drop::Malformed(_) => "malformed",
            Drop::KeepAlive => "keepalive",
            Drop::NotOurVia => "not_our_via",
            Drop::NoNextHop => "no_next_hop",
            Drop::SendFailed => "send_failed",
            Drop::Unanswerable => "unanswerable",
            Drop::Rewrite => "rewrite",
        }
    }

    fn index(self) -> usize {
        match self {
            Drop::Malformed(_) => 0,
            Drop::KeepAlive => 1,
            Drop::NotOurVia => 2,
            Drop::NoNextHop => 3,
            Drop::SendFailed => 4,
            Drop::Unanswerable => 5,
            Drop::Rewrite => 6,
        }
    }

    /// The label of index `i` (for exporting [`Counters::dropped`]).
    pub fn label_of(i: usize) -> &'static str {
        [
            "malformed",
            "keepalive",
            "not_our_via",
            "no_next_hop",
            "send_failed",
            "unanswerable",
            "rewrite",
        ][i]
    }
}

/// What happened to a datagram. Every path through [`Worker::handle`] ends in one, and the
/// counters are bumped from it in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A request was forwarded to a dispatcher destination.
    Forwarded(Pick),
    /// An in-dialog request was forwarded along its Route set or to its Request-URI.
    Routed,
    /// A response was relayed to the next Via.
    Relayed,
    /// The proxy answered with this status code.
    Replied(u16),
    /// An ACK for one of the proxy's own replies: the transaction ends here.
    Absorbed,
    /// A response addressed to the proxy itself (its Via is the only one) that is not a probe
    /// reply.
    ForUs,
    /// A reply to one of the proxy's own keepalive requests (top and only Via ours, probe
    /// branch): the health component takes it from here.
    ProbeReply {
        /// What the probe's branch named.
        token: ProbeToken,
        /// The reply's status code.
        code: u16,
    },
    /// Dropped.
    Dropped(Drop),
}

impl Verdict {
    /// Number of distinct labels ([`Verdict::label`]).
    pub const KINDS: usize = 8;

    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        Self::label_of(self.index())
    }

    fn index(&self) -> usize {
        match self {
            Verdict::Forwarded(_) => 0,
            Verdict::Routed => 1,
            Verdict::Relayed => 2,
            Verdict::Replied(_) => 3,
            Verdict::Absorbed => 4,
            Verdict::ForUs => 5,
            Verdict::ProbeReply { .. } => 6,
            Verdict::Dropped(_) => 7,
        }
    }

    /// The label of index `i` (for exporting [`Counters::requests`]).
    pub fn label_of(i: usize) -> &'static str {
        [
            "forwarded",
            "routed",
            "relayed",
            "replied",
            "absorbed",
            "for_us",
            "probe_reply",
            "dropped",
        ][i]
    }
}

/// Request methods counted separately in [`Counters::requests`]; anything else is `other`.
pub const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "REGISTER",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "INFO",
    "UPDATE",
    "PRACK",
    "MESSAGE",
    "PUBLISH",
    "other",
];

fn method_index(m: &[u8]) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|x| x.as_bytes() == m)
        .unwrap_or(METHODS.len() - 1)
}

/// Plain per-worker counters, summed across workers when scraped.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// Requests forwarded to a dispatcher destination.
    pub forwarded: u64,
    /// In-dialog requests forwarded by Route / Request-URI.
    pub routed: u64,
    /// Responses relayed.
    pub relayed: u64,
    /// Replies sent, by class (index 1–6 = 1xx–6xx).
    pub replied: [u64; 7],
    /// ACKs absorbed.
    pub absorbed: u64,
    /// Responses for the proxy itself (probe replies included).
    pub for_us: u64,
    /// Requests received, by method ([`METHODS`]) and verdict ([`Verdict::label_of`]).
    pub requests: [[u64; Verdict::KINDS]; METHODS.len()],
    /// Responses received, by class (index 1–6 = 1xx–6xx).
    pub responses: [u64; 7],
    /// Drops by reason ([`Drop::label_of`]).
    pub dropped: [u64; Drop::COUNT],
    /// Matches per route (index = route position).
    pub route_hits: Vec<u64>,
    /// Algorithm-10 calls removed by the expiry timer (`ds_hash_expire` /
    /// `ds_hash_initexpire`).
    pub calls_expired: u64,
}

impl Counters {
    fn count(&mut self, v: &Verdict) {
        match v {
            Verdict::Forwarded(_) => self.forwarded += 1,
            Verdict::Routed => self.routed += 1,
            Verdict::Relayed => self.relayed += 1,
            Verdict::Replied(code) => self.replied[usize::from(code / 100).min(6)] += 1,
            Verdict::Absorbed => self.absorbed += 1,
            Verdict::ForUs | Verdict::ProbeReply { .. } => self.for_us += 1,
            Verdict::Dropped(d) => self.dropped[d.index()] += 1,
        }
    }
}

/// The per-thread handler. Create one per I/O worker; it allocates only at creation.
pub struct Worker {
    headers: Headers,
    state: State,
}

struct State {
    cfg: Arc<ProxyConfig>,
    counters: Counters,
    recent: Recent,
    picks: [Pick; PICKS],
    template: ArrayVec<u8, TEMPLATE_CAPACITY>,
    reply: Box<[u8; REPLY_CAPACITY]>,
    rng: u64,
    /// When this worker next offers to run call-load expiry (armed by the first message).
    call_expiry: Option<Instant>,
}

impl Worker {
    /// A worker for `cfg`; `seed` seeds algorithm 6's generator (give each worker its own).
    pub fn new(cfg: Arc<ProxyConfig>, seed: u64) -> Worker {
        let routes = cfg.routes.routes.len();
        Worker {
            headers: Headers::new(),
            state: State {
                cfg,
                counters: Counters {
                    route_hits: vec![0; routes],
                    ..Counters::default()
                },
                recent: Recent::new(),
                picks: [Pick {
                    set: crate::dispatch::SetId(0),
                    set_pos: 0,
                    idx: crate::dispatch::DestIdx(0),
                }; PICKS],
                template: ArrayVec::new(),
                reply: Box::new([0; REPLY_CAPACITY]),
                rng: seed | 1,
                call_expiry: None,
            },
        }
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.state.counters
    }

    /// The earliest instant at which [`Worker::handle_timeout`] has work (`None`: no timer
    /// armed). Timers are armed by the messages that need them, so an idle worker has none.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.state.call_expiry
    }

    /// Runs the timers due at `now` and re-arms them; what they send goes into `sink`.
    ///
    /// Today's one timer: every `ds_hash_check_interval`, offer to run algorithm 10's
    /// call-load expiry (the first worker to offer in an interval runs it, see
    /// [`Snapshot::expire_calls_due`](crate::dispatch::Snapshot::expire_calls_due)).
    pub fn handle_timeout(&mut self, now: Instant, plane: &Plane, _sink: &mut impl Sink) {
        let s = &mut self.state;
        if let (Some(due), Some(every)) = (s.call_expiry, s.cfg.call_check_interval)
            && now >= due
        {
            if let Some(n) = plane.snapshot.expire_calls_due(now) {
                s.counters.calls_expired += n as u64;
            }
            s.call_expiry = Some(now + every);
        }
    }

    /// Handles one datagram: scans it, decides, queues what must be sent into `sink`.
    pub fn handle(
        &mut self,
        now: Instant,
        plane: &Plane,
        pkt: &Inbound<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        if self.state.call_expiry.is_none()
            && let Some(every) = self.state.cfg.call_check_interval
        {
            self.state.call_expiry = Some(now + every);
        }
        let (verdict, kind) = match parse_datagram(pkt.data, &mut self.headers) {
            Err(Error::KeepAlive) => (Verdict::Dropped(Drop::KeepAlive), None),
            Err(e) => (Verdict::Dropped(Drop::Malformed(e)), None),
            Ok(msg) => match msg.request() {
                Some(r) => {
                    let m = method_index(r.method);
                    (self.state.request(now, plane, &msg, pkt, sink), Some(Ok(m)))
                }
                None => {
                    let class = msg
                        .response()
                        .map_or(0, |s| usize::from(s.code / 100).min(6));
                    (self.state.response(&msg, pkt, sink), Some(Err(class)))
                }
            },
        };
        let c = &mut self.state.counters;
        c.count(&verdict);
        match kind {
            Some(Ok(m)) => c.requests[m][verdict.index()] += 1,
            Some(Err(class)) => c.responses[class] += 1,
            None => {}
        }
        if let Verdict::Forwarded(pick) = verdict {
            plane.count_selection(pick);
        }
        verdict
    }
}

impl State {
    fn next_random(&mut self) -> u32 {
        // xorshift64*: enough for load spreading, per worker, no lock.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn is_ours(&self, host: &[u8], port: Option<u16>) -> bool {
        self.cfg.sockets.iter().any(|s| s.is(host, port))
    }

    /// A local socket of `to`'s address family, preferring the one the datagram came in on.
    fn socket_for(&self, arrival: usize, to: SocketAddr) -> Option<usize> {
        let same = |i: usize| {
            self.cfg
                .sockets
                .get(i)
                .is_some_and(|s| s.addr.is_ipv4() == to.is_ipv4())
        };
        if same(arrival) {
            return Some(arrival);
        }
        (0..self.cfg.sockets.len()).find(|&i| same(i))
    }

    /// Sends a stateless reply (never to an ACK).
    fn reply(
        &mut self,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        code: u16,
        reason: &str,
        extra: &[&[u8]],
        sink: &mut impl Sink,
    ) -> Verdict {
        if msg.request().is_some_and(|r| r.method == b"ACK") {
            return Verdict::Dropped(Drop::Unanswerable);
        }
        let Some(n) = reply::build(msg, code, reason, extra, &mut self.reply[..]) else {
            return Verdict::Dropped(Drop::Unanswerable);
        };
        let to = reply::reply_destination(msg, pkt.source);
        let local = self.socket_for(pkt.local, to).unwrap_or(pkt.local);
        if sink.send(local, to, &[&self.reply[..n]]) {
            Verdict::Replied(code)
        } else {
            Verdict::Dropped(Drop::SendFailed)
        }
    }

    fn request(
        &mut self,
        now: Instant,
        plane: &Plane,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        let req = *msg.request().expect("called for requests");
        let method = req.method;
        if method == b"ACK" && reply::is_ack_for_our_reply(msg) {
            return Verdict::Absorbed;
        }
        // Every Via is parsed once here: the first is the top Via used below, the others are
        // checked for loops.
        let mut vias = msg.vias();
        let top = match vias.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Verdict::Dropped(Drop::Malformed(e)),
            None => return Verdict::Dropped(Drop::Malformed(Error::Missing(HeaderKind::Via))),
        };
        let ruri = match req.uri() {
            Ok(u) => u,
            Err(_) => return self.reply(msg, pkt, 400, "Bad Request-URI", &[], sink),
        };
        if ruri.scheme == Scheme::Other {
            return self.reply(msg, pkt, 416, reply::reason_phrase(416), &[], sink);
        }
        if msg.max_forwards() == Some(0) {
            return self.reply(msg, pkt, 483, reply::reason_phrase(483), &[], sink);
        }
        for via in std::iter::once(Ok(top)).chain(vias) {
            match via {
                Ok(v)
                    if self.is_ours(v.host, v.port)
                        && v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX)) =>
                {
                    return self.reply(msg, pkt, 482, reply::reason_phrase(482), &[], sink);
                }
                Ok(_) => {}
                Err(_) => return self.reply(msg, pkt, 400, "Malformed Via", &[], sink),
            }
        }
        if method != b"ACK"
            && method != b"CANCEL"
            && let Some(required) = msg.header(b"Proxy-Require")
        {
            let mut line = ArrayVec::<u8, 512>::new();
            let _ = line.try_extend_from_slice(b"Unsupported: ");
            let _ = line.try_extend_from_slice(&required[..required.len().min(480)]);
            let _ = line.try_extend_from_slice(b"\r\n");
            return self.reply(msg, pkt, 420, reply::reason_phrase(420), &[&line], sink);
        }

        // Loose routing (RFC 3261 §16.4): a first Route naming us is consumed; the next Route,
        // or for an in-dialog request the Request-URI, is the next hop.
        let in_dialog = msg.to().ok().and_then(|t| t.tag).is_some();
        let mut remove_route = false;
        let mut routes = msg.routes();
        match routes.next() {
            Some(Ok(first)) if self.is_ours(first.uri.host, first.uri.port) => {
                remove_route = true;
                match routes.next() {
                    Some(Ok(next)) => {
                        let hop = ip_port(next.uri.host, next.uri.port);
                        return self.forward_routed(msg, pkt, &top, hop, remove_route, sink);
                    }
                    Some(Err(_)) => return self.reply(msg, pkt, 400, "Malformed Route", &[], sink),
                    None if in_dialog => {
                        let hop = ip_port(ruri.host, ruri.port);
                        return self.forward_routed(msg, pkt, &top, hop, remove_route, sink);
                    }
                    None => {}
                }
            }
            Some(Ok(first)) => {
                // Pre-loaded route to another element: send it there.
                let hop = ip_port(first.uri.host, first.uri.port);
                return self.forward_routed(msg, pkt, &top, hop, false, sink);
            }
            Some(Err(_)) => return self.reply(msg, pkt, 400, "Malformed Route", &[], sink),
            None => {}
        }

        // CANCEL and non-2xx ACK follow their INVITE.
        let branch = branch_for(msg, &top);
        let branch_key = stable_hash(&[&branch]);
        if (method == b"CANCEL" || method == b"ACK")
            && let Some((pick, addr)) = self.recent.get(branch_key, now)
        {
            return self.forward(
                plane,
                msg,
                pkt,
                &top,
                &branch,
                pick,
                addr,
                Target::Dst,
                remove_route,
                in_dialog,
                sink,
            );
        }

        // An in-dialog request without a Route set goes to its Request-URI (the remote target
        // from the dialog's Contact, RFC 3261 §12.2.1.1) when that names another element by
        // IP address: it is the only place the dialog lives, whatever the algorithm.
        if in_dialog
            && !self.is_ours(ruri.host, ruri.port)
            && let Some(hop) = ip_port(ruri.host, ruri.port)
        {
            return self.forward_routed(msg, pkt, &top, Some(hop), remove_route, sink);
        }

        let Some((route_pos, route)) = self.cfg.routes.find(msg, pkt.source, plane) else {
            return self.reply(msg, pkt, 404, "No Matching Route", &[], sink);
        };
        self.counters.route_hits[route_pos] += 1;
        let cfg = Arc::clone(&self.cfg);
        let (rules, target, limit) = match &cfg.routes.routes[route_pos].action {
            Action::Reply { code, reason } => {
                let _ = route;
                return self.reply(msg, pkt, *code, reason, &[], sink);
            }
            Action::Select {
                rules,
                target,
                limit,
            } => (rules, *target, *limit),
        };
        if rules.iter().any(|r| r.alg == Algorithm::Template) {
            match &cfg.hash_template {
                Some(t) => t.eval(msg, pkt.source, &mut self.template),
                None => self.template.clear(),
            }
        }
        let random = self.next_random();
        // Keys that cannot be taken (a malformed From for algorithm 1, …) are a bad request.
        for r in rules {
            if key_for(r.alg.key(), msg, &self.template, random).is_err() {
                return self.reply(msg, pkt, 400, "Malformed Header For Dispatching", &[], sink);
            }
        }
        let mode = match target {
            Target::Dst => Mode::DstUri,
            Target::Ruri => Mode::Domain {
                ruri_has_user: ruri.user.is_some(),
            },
        };
        let template = &self.template;
        let selected = plane.snapshot.select_routes(
            rules,
            mode,
            limit,
            now,
            |alg| key_for(alg.key(), msg, template, random).unwrap_or(Key::None),
            &mut self.picks,
        );
        let Ok(sel) = selected else {
            return self.reply(msg, pkt, 503, reply::reason_phrase(503), &[], sink);
        };
        let Some(addr) = plane.addr(sel.pick) else {
            return self.reply(msg, pkt, 503, "Destination Unreachable", &[], sink);
        };
        if method == b"INVITE" {
            self.recent.insert(branch_key, now, sel.pick, addr);
        }
        self.forward(
            plane,
            msg,
            pkt,
            &top,
            &branch,
            sel.pick,
            addr,
            target,
            remove_route,
            in_dialog,
            sink,
        )
    }

    /// Adds the edits every forwarded request gets: the client's Via completed, our Via,
    /// Max-Forwards, the consumed Route.
    #[allow(clippy::too_many_arguments)] // the parts of one forwarding decision
    fn common_edits<'m, 'x>(
        &self,
        plan: &mut Plan<'m, 'x>,
        msg: &Message<'m>,
        pkt: &Inbound<'_>,
        top: &Via<'m>,
        local: usize,
        branch: &[u8],
        remove_route: bool,
    ) -> Result<(), sipdisp_parser::PlanError> {
        let buf = msg.buf();
        // RFC 3261 §18.2.1 and RFC 3581: tell the next hops where the request really came from.
        let via_end = top.value.as_ptr() as usize - buf.as_ptr() as usize + top.value.len();
        let mut ip = ArrayVec::<u8, 48>::new();
        let _ = std::io::Write::write_fmt(&mut ip, format_args!("{}", pkt.source.ip()));
        let mut port = ArrayVec::<u8, 8>::new();
        let _ = std::io::Write::write_fmt(&mut port, format_args!("{}", pkt.source.port()));
        let host_is_source = {
            let h = top.host;
            let h = h
                .strip_prefix(b"[")
                .and_then(|x| x.strip_suffix(b"]"))
                .unwrap_or(h);
            h == &ip[..]
        };
        match top.rport_param {
            Some(p) if top.rport == Some(None) => {
                let at = p.as_ptr() as usize - buf.as_ptr() as usize + p.len();
                plan.insert(at, &[b"=", &port])?;
                if top.received.is_none() {
                    plan.insert(via_end, &[b";received=", &ip])?;
                }
            }
            _ if !host_is_source && top.received.is_none() => {
                plan.insert(via_end, &[b";received=", &ip])?
            }
            _ => {}
        }
        let sock = &self.cfg.sockets[local];
        plan.insert_via(
            b"UDP",
            &sock.advertise_host,
            Some(sock.advertise_port),
            branch,
            true,
        )?;
        let mf = msg.max_forwards().map_or(self.cfg.max_forwards, |n| n - 1);
        plan.set_max_forwards(msg, mf)?;
        if remove_route {
            plan.remove_first_route(msg)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)] // the parts of one forwarding decision
    fn forward(
        &mut self,
        plane: &Plane,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        top: &Via<'_>,
        branch: &[u8],
        pick: Pick,
        addr: SocketAddr,
        target: Target,
        remove_route: bool,
        in_dialog: bool,
        sink: &mut impl Sink,
    ) -> Verdict {
        let Some(local) = self.socket_for(pkt.local, addr) else {
            return Verdict::Dropped(Drop::NoNextHop);
        };
        // Only the R-URI rewrite needs the destination URI's parts.
        let dest_uri = match target {
            Target::Ruri => Uri::parse(&plane.snapshot.destination(pick).uri).ok(),
            Target::Dst => None,
        };
        let mut rr = ArrayVec::<u8, 96>::new();
        let mut plan = Plan::new(msg);
        let built = (|| {
            self.common_edits(&mut plan, msg, pkt, top, local, branch, remove_route)?;
            if self.cfg.record_route
                && !in_dialog
                && msg.request().is_some_and(|r| r.method != b"REGISTER")
            {
                let s = &self.cfg.sockets[local];
                let _ = rr.try_extend_from_slice(b"sip:");
                let _ = rr.try_extend_from_slice(&s.advertise_host);
                let _ =
                    std::io::Write::write_fmt(&mut rr, format_args!(":{};lr", s.advertise_port));
                plan.insert_record_route(&rr)?;
            }
            if target == Target::Ruri
                && let Some(d) = &dest_uri
            {
                plan.set_request_uri_host(msg, d)?;
            }
            Ok::<(), sipdisp_parser::PlanError>(())
        })();
        if built.is_err() {
            return Verdict::Dropped(Drop::Rewrite);
        }
        if send_plan(&plan, local, addr, sink) {
            Verdict::Forwarded(pick)
        } else {
            Verdict::Dropped(Drop::SendFailed)
        }
    }

    fn forward_routed(
        &mut self,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        top: &Via<'_>,
        hop: Option<SocketAddr>,
        remove_route: bool,
        sink: &mut impl Sink,
    ) -> Verdict {
        let Some(addr) = hop else {
            return Verdict::Dropped(Drop::NoNextHop);
        };
        let Some(local) = self.socket_for(pkt.local, addr) else {
            return Verdict::Dropped(Drop::NoNextHop);
        };
        let branch = branch_for(msg, top);
        let mut plan = Plan::new(msg);
        if self
            .common_edits(&mut plan, msg, pkt, top, local, &branch, remove_route)
            .is_err()
        {
            return Verdict::Dropped(Drop::Rewrite);
        }
        if send_plan(&plan, local, addr, sink) {
            Verdict::Routed
        } else {
            Verdict::Dropped(Drop::SendFailed)
        }
    }

    fn response(&mut self, msg: &Message<'_>, pkt: &Inbound<'_>, sink: &mut impl Sink) -> Verdict {
        let mut vias = msg.vias();
        let top = match vias.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => return Verdict::Dropped(Drop::Malformed(e)),
            None => return Verdict::Dropped(Drop::Malformed(Error::Missing(HeaderKind::Via))),
        };
        if !self.is_ours(top.host, top.port)
            || !top.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
        {
            return Verdict::Dropped(Drop::NotOurVia);
        }
        let next = match vias.next() {
            None => {
                let token = top.branch.and_then(ProbeToken::parse);
                return match (token, msg.response()) {
                    (Some(token), Some(s)) => Verdict::ProbeReply {
                        token,
                        code: s.code,
                    },
                    _ => Verdict::ForUs,
                };
            }
            Some(Err(e)) => return Verdict::Dropped(Drop::Malformed(e)),
            Some(Ok(v)) => v,
        };
        // RFC 3261 §18.2.2 / RFC 3581 §4: received (else sent-by host), rport value (else port).
        let host = next.received.unwrap_or(next.host);
        let port = match next.rport {
            Some(Some(p)) => Some(p),
            _ => next.port,
        };
        let Some(addr) = ip_port(host, port) else {
            return Verdict::Dropped(Drop::NoNextHop);
        };
        let Some(local) = self.socket_for(pkt.local, addr) else {
            return Verdict::Dropped(Drop::NoNextHop);
        };
        let mut plan = Plan::new(msg);
        if plan.remove_top_via(msg).is_err() {
            return Verdict::Dropped(Drop::Rewrite);
        }
        if send_plan(&plan, local, addr, sink) {
            Verdict::Relayed
        } else {
            Verdict::Dropped(Drop::SendFailed)
        }
    }
}

fn send_plan(plan: &Plan<'_, '_>, local: usize, to: SocketAddr, sink: &mut impl Sink) -> bool {
    let mut pieces = ArrayVec::<&[u8], MAX_PIECES>::new();
    plan.for_each_slice(|s| pieces.push(s));
    sink.send(local, to, &pieces)
}
