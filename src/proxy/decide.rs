//! Deciding what to do with a message, without doing it: classification, the route table and
//! selection end in a [`Decision`] value that an executor runs (the `stateless` module today; a
//! transaction-stateful executor can run the same decisions differently).
//!
//! A request (RFC 3261 §16, §16.4): the ACK of one of our replies is absorbed; a bad
//! Request-URI (400), an unknown scheme (416), Max-Forwards 0 (483), a Via of ours (482, loop)
//! and `Proxy-Require` (420) are answered; a first Route naming us is consumed and the next
//! Route, or for an in-dialog request the Request-URI, is the next hop; a pre-loaded Route to
//! another element is followed; CANCEL and non-2xx ACK go where their INVITE went (the
//! recent-INVITE table); other in-dialog requests go to their Request-URI when it is an IP
//! address; everything else meets the route table, whose first matching route selects
//! destinations (its failover list kept in the decision) or answers.
//!
//! A response: its top Via must be ours (address and branch prefix); with no second Via it is
//! for us (a probe reply when its branch says so); otherwise it is relayed to the second Via's
//! `received`/`rport`-corrected address.

use std::net::SocketAddr;
use std::time::Instant;

use arrayvec::ArrayVec;
use sipdisp_parser::{Error, HeaderKind, Message, RequestLine, Scheme, Uri, Via};

use super::boundary::Inbound;
use super::branch::{
    BRANCH_LEN, BRANCH_PREFIX, ProbeToken, TxnToken, branch_for, stable_hash, verify_branch,
};
use super::edits::{ClientVia, Forwarding};
use super::keys::{TEMPLATE_CAPACITY, key_for};
use super::recent::Recent;
use super::reply::{self, reason_phrase};
use super::route::{Action, Target};
use super::verdict::{Counters, DropReason};
use super::{ProxyConfig, ip_port};
use crate::dispatch::{Algorithm, DestIdx, Key, Mode, Pick, SetId};
use crate::netio::{Flow, SocketIdx};
use crate::plane::Plane;

/// Largest failover list the proxy asks dispatch for.
pub const PICKS: usize = 16;

/// What to do with one message. Borrows the message, the configuration and the plane.
#[derive(Debug)]
pub enum Decision<'a> {
    /// Forward a request.
    Forward(Forward<'a>),
    /// Answer a request statelessly.
    Reply(Reply<'a>),
    /// Relay a response on this flow, without our top Via.
    Relay(Flow),
    /// A response to a branch of a transaction-stateful request: its call decides, and sends
    /// it (if at all) to where the call's request came from — never by its Via alone.
    TxnResponse {
        /// The call and branch our Via named.
        token: TxnToken,
    },
    /// An ACK for one of our own replies: the transaction ends here.
    Absorb,
    /// A response addressed to us (our Via is its only one) that is not a probe reply.
    ForUs,
    /// A reply to one of our keepalives.
    ProbeReply {
        /// What the probe's branch named.
        token: ProbeToken,
        /// The reply's status code.
        code: u16,
    },
    /// Drop without an answer.
    Drop(DropReason),
}

/// A request to forward: where, why, and the header edits it gets.
#[derive(Debug)]
pub struct Forward<'a> {
    /// The flow it leaves on (our socket of the next hop's family, the next hop).
    pub flow: Flow,
    /// How the next hop was chosen.
    pub hop: Hop<'a>,
    /// The header edits ([`super::edits`]).
    pub edits: Forwarding<'a>,
}

/// How a forwarded request's next hop was chosen.
#[derive(Debug, Clone, Copy)]
pub enum Hop<'a> {
    /// Selected from a destination set. `list` is the failover list dispatch wrote (Kamailio's
    /// `_dsctx_` entries, the selected destination included), for an executor that fails over.
    Dispatched {
        /// The destination used now.
        pick: Pick,
        /// The failover list, in order.
        list: &'a [Pick],
        /// The route of the route table that selected it (`None`: a CANCEL or ACK following
        /// its INVITE). Its `failover` settings make the request transaction-stateful.
        route: Option<usize>,
    },
    /// Along the Route set, to the Request-URI of an in-dialog request, or where the INVITE of
    /// a CANCEL / non-2xx ACK went.
    Routed,
}

/// A stateless answer.
#[derive(Debug)]
pub struct Reply<'a> {
    /// Where it goes (RFC 3261 §18.2.2 with RFC 3581).
    pub flow: Flow,
    /// Status code.
    pub code: u16,
    /// Reason phrase.
    pub reason: &'a str,
    /// For a 420: the `Proxy-Require` value, echoed in `Unsupported` (RFC 3261 §8.2.2.3).
    pub unsupported: Option<&'a [u8]>,
    /// For an overload 503: the `Retry-After` seconds (RFC 3261 §21.5.4).
    pub retry_after: Option<u32>,
}

/// The deciding half of a worker: the scratch space decisions need.
pub(crate) struct Decider {
    recent: Recent,
    picks: [Pick; PICKS],
    template: ArrayVec<u8, TEMPLATE_CAPACITY>,
    rng: u64,
    /// Set by the worker for a batch whose request lane is backing up ([`Decider::behind`]).
    behind: bool,
    /// Overload admission: the share of new requests forwarded accumulates here, one request
    /// is forwarded each time it reaches 100 (so 50 % forwards every other one).
    admit_credit: u32,
}

/// What the request checks leave for routing.
struct Checked<'a> {
    req: RequestLine<'a>,
    top: Via<'a>,
    ruri: Uri<'a>,
    in_dialog: bool,
    /// The first Route names us: it is removed from whatever is forwarded.
    remove_route: bool,
    /// Our Via's branch for this request (stateless: a retransmission, its CANCEL and its
    /// non-2xx ACK get the same one).
    branch: [u8; BRANCH_LEN],
}

impl Decider {
    /// A decider whose algorithm-6 generator starts from `seed`.
    pub(crate) fn new(seed: u64) -> Decider {
        let nothing = Pick {
            set: SetId(0),
            set_pos: 0,
            idx: DestIdx(0),
        };
        Decider {
            recent: Recent::new(),
            picks: [nothing; PICKS],
            template: ArrayVec::new(),
            rng: seed | 1,
            behind: false,
            admit_credit: 0,
        }
    }

    /// Whether the worker is behind for the batch about to be handled: new out-of-dialog
    /// requests are then partly refused (see [`super::Overload`]).
    pub(crate) fn behind(&mut self, behind: bool) {
        self.behind = behind;
    }

    /// While behind: whether this new request is one of the `admit_percent` % forwarded.
    fn admit(&mut self, admit_percent: u32) -> bool {
        self.admit_credit += admit_percent.min(100);
        if self.admit_credit >= 100 {
            self.admit_credit -= 100;
            true
        } else {
            false
        }
    }

    fn next_random(&mut self) -> u32 {
        // xorshift64*: enough for load spreading, per worker, no lock.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    /// Decides a request; counts route matches and refusals in `counters`.
    pub(crate) fn request<'a>(
        &'a mut self,
        cfg: &'a ProxyConfig,
        now: Instant,
        plane: &'a Plane,
        msg: &Message<'a>,
        pkt: &Inbound<'_>,
        counters: &mut Counters,
    ) -> Decision<'a> {
        let mut c = match check(cfg, msg, pkt, counters) {
            Ok(c) => c,
            Err(d) => return d,
        };
        if let Some(d) = loose_route(cfg, plane, msg, pkt, &mut c, counters) {
            return d;
        }
        // CANCEL and non-2xx ACK follow their INVITE.
        let branch_key = stable_hash(&[&c.branch]);
        let method = c.req.method;
        if (method == b"CANCEL" || method == b"ACK")
            && let Some(went) = self.recent.get(branch_key, now)
        {
            return follow_invite(cfg, msg, pkt, &c, went);
        }
        // An in-dialog request without a Route set goes to its Request-URI (the remote target
        // from the dialog's Contact, RFC 3261 §12.2.1.1) when that names another element by
        // IP address: it is the only place the dialog lives, whatever the algorithm.
        if c.in_dialog
            && !cfg.is_ours(c.ruri.host, c.ruri.port)
            && let Some(hop) = ip_port(c.ruri.host, c.ruri.port)
        {
            // Without our Route the dialog did not come through us: its remote target must be
            // a next hop the configuration allows (no open relay).
            if !allowed(cfg, plane, hop) {
                return forbidden(cfg, msg, pkt, counters);
            }
            return forward(cfg, msg, pkt, &c, hop, Hop::Routed, None);
        }
        // Behind: refuse a share of new requests before any work is spent on them, so that
        // what is under way (responses, in-dialog requests, CANCEL, ACK) keeps its capacity.
        // A retransmission of an INVITE already forwarded follows it instead.
        if self.behind && !c.in_dialog && method != b"ACK" && method != b"CANCEL" {
            if method == b"INVITE"
                && let Some(went) = self.recent.get(branch_key, now)
            {
                return follow_invite(cfg, msg, pkt, &c, went);
            }
            if !self.admit(cfg.overload.admit_percent) {
                counters.overload_refused += 1;
                return match reply(cfg, msg, pkt, 503, "Service Unavailable") {
                    Decision::Reply(r) => Decision::Reply(Reply {
                        retry_after: Some(cfg.overload.retry_after),
                        ..r
                    }),
                    other => other,
                };
            }
        }
        let Some((pos, _)) = cfg.routes.find(msg, pkt.flow.remote, plane) else {
            return reply(cfg, msg, pkt, 404, "No Matching Route");
        };
        counters.route_hits[pos] += 1;
        let (rules, target, limit) = match &cfg.routes.routes[pos].action {
            Action::Reply { code, reason } => return reply(cfg, msg, pkt, *code, reason),
            Action::Select {
                rules,
                target,
                limit,
            } => (rules, *target, *limit),
        };
        if rules.iter().any(|r| r.alg == Algorithm::Template) {
            match &cfg.hash_template {
                Some(t) => t.eval(msg, pkt.flow.remote, &mut self.template),
                None => self.template.clear(),
            }
        }
        let random = self.next_random();
        // Keys that cannot be taken (a malformed From for algorithm 1, …) are a bad request.
        for r in rules {
            if key_for(r.alg.key(), msg, &self.template, random).is_err() {
                return reply(cfg, msg, pkt, 400, "Malformed Header For Dispatching");
            }
        }
        let mode = match target {
            Target::Dst => Mode::DstUri,
            Target::Ruri => Mode::Domain {
                ruri_has_user: c.ruri.user.is_some(),
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
            return reply(cfg, msg, pkt, 503, reason_phrase(503));
        };
        let Some(addr) = plane.addr(sel.pick) else {
            return reply(cfg, msg, pkt, 503, "Destination Unreachable");
        };
        if method == b"INVITE" {
            self.recent.insert(branch_key, now, sel.pick, addr);
        }
        // Only the R-URI rewrite needs the destination URI.
        let ruri = match target {
            Target::Ruri => Some(&plane.snapshot.destination(sel.pick).uri[..]),
            Target::Dst => None,
        };
        let list = &self.picks[..sel.list_len.min(PICKS)];
        let hop = Hop::Dispatched {
            pick: sel.pick,
            list,
            route: Some(pos),
        };
        forward(cfg, msg, pkt, &c, addr, hop, ruri)
    }
}

/// The checks every request passes before routing (RFC 3261 §16.3), each failure decided.
#[allow(clippy::result_large_err)] // the "error" is the message's decision, returned once
fn check<'a>(
    cfg: &'a ProxyConfig,
    msg: &Message<'a>,
    pkt: &Inbound<'_>,
    counters: &mut Counters,
) -> Result<Checked<'a>, Decision<'a>> {
    let req = *msg.request().expect("called for requests");
    if req.method == b"ACK" && reply::is_ack_for_our_reply(msg) {
        return Err(Decision::Absorb);
    }
    // Every Via is parsed once here: the first is the top Via used below, the others are
    // checked for loops.
    let mut vias = msg.vias();
    let top = match vias.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Err(Decision::Drop(DropReason::Malformed(e))),
        None => {
            let e = Error::Missing(HeaderKind::Via);
            return Err(Decision::Drop(DropReason::Malformed(e)));
        }
    };
    let ruri = req
        .uri()
        .map_err(|_| reply(cfg, msg, pkt, 400, "Bad Request-URI"))?;
    if ruri.scheme == Scheme::Other {
        return Err(reply(cfg, msg, pkt, 416, reason_phrase(416)));
    }
    // RFC 3261 §26.2: a SIPS request must stay on TLS hop by hop; sipdisp has no TLS yet, and
    // forwarding it over UDP would be a silent downgrade.
    if ruri.scheme == Scheme::Sips {
        counters.sips_refused += 1;
        return Err(reply(cfg, msg, pkt, 416, "SIPS Needs TLS"));
    }
    if msg.max_forwards() == Some(0) {
        return Err(reply(cfg, msg, pkt, 483, reason_phrase(483)));
    }
    for via in std::iter::once(Ok(top)).chain(vias) {
        match via {
            Ok(v)
                if cfg.is_ours(v.host, v.port)
                    && v.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX)) =>
            {
                return Err(reply(cfg, msg, pkt, 482, reason_phrase(482)));
            }
            Ok(_) => {}
            Err(_) => return Err(reply(cfg, msg, pkt, 400, "Malformed Via")),
        }
    }
    if req.method != b"ACK"
        && req.method != b"CANCEL"
        && let Some(required) = msg.header(b"Proxy-Require")
    {
        let mut d = reply(cfg, msg, pkt, 420, reason_phrase(420));
        if let Decision::Reply(r) = &mut d {
            r.unsupported = Some(required);
        }
        return Err(d);
    }
    let in_dialog = msg.to().ok().and_then(|t| t.tag).is_some();
    Ok(Checked {
        req,
        top,
        ruri,
        in_dialog,
        remove_route: false,
        branch: branch_for(
            msg,
            &top,
            &cfg.via_key,
            return_addr(&top, pkt.flow.remote),
            pkt.flow.transport.via_token(),
        ),
    })
}

/// Loose routing (RFC 3261 §16.4): a first Route naming us is consumed; the next Route, or
/// for an in-dialog request the Request-URI, is the next hop. A pre-loaded Route to another
/// element is followed. `None`: no Route decides (an out-of-dialog request whose only Route
/// was ours goes on to the route table with that Route still to remove).
fn loose_route<'a>(
    cfg: &'a ProxyConfig,
    plane: &Plane,
    msg: &Message<'a>,
    pkt: &Inbound<'_>,
    c: &mut Checked<'a>,
    counters: &mut Counters,
) -> Option<Decision<'a>> {
    let mut routes = msg.routes();
    // `checked`: the next hop must be allowed. A dialog that came through us (our Route, no
    // other) goes to its Request-URI, as Kamailio's loose_route() + t_relay() — unchecked only
    // when a backend sends it (a callee's request to its caller, whose Contact is anywhere):
    // anyone can write our Route, so from elsewhere the Request-URI must be allowed too.
    // RFC 3261 §16.6 step 6: a next hop without `lr` is a strict router, which would need the
    // Request-URI moved into the Route set; sipdisp refuses that rather than mangle the route.
    let strict = |uri: &sipdisp_parser::Uri<'_>| uri.param(b"lr").is_none();
    let (hop, checked) = match routes.next() {
        Some(Ok(first)) if cfg.is_ours(first.uri.host, first.uri.port) => {
            c.remove_route = true;
            match routes.next() {
                Some(Ok(next)) if strict(&next.uri) => {
                    return Some(reply(cfg, msg, pkt, 400, "Strict Routing Not Supported"));
                }
                Some(Ok(next)) => (ip_port(next.uri.host, next.uri.port), true),
                Some(Err(_)) => return Some(reply(cfg, msg, pkt, 400, "Malformed Route")),
                None if c.in_dialog => (
                    ip_port(c.ruri.host, c.ruri.port),
                    !trusted_source(cfg, plane, pkt.flow.remote),
                ),
                None => return None,
            }
        }
        Some(Ok(first)) if strict(&first.uri) => {
            return Some(reply(cfg, msg, pkt, 400, "Strict Routing Not Supported"));
        }
        Some(Ok(first)) => (ip_port(first.uri.host, first.uri.port), true),
        Some(Err(_)) => return Some(reply(cfg, msg, pkt, 400, "Malformed Route")),
        None => return None,
    };
    Some(match hop {
        Some(addr) if checked && !allowed(cfg, plane, addr) => forbidden(cfg, msg, pkt, counters),
        Some(addr) => forward(cfg, msg, pkt, c, addr, Hop::Routed, None),
        None => Decision::Drop(DropReason::NoNextHop),
    })
}

/// Whether `source` is a destination of the plane (address and port, as `ds_is_from_list`
/// with mode 0) or inside `allowed_next_hops`: a peer whose in-dialog requests may go to any
/// Request-URI, and that flood control never limits.
pub(crate) fn trusted_source(cfg: &ProxyConfig, plane: &Plane, source: SocketAddr) -> bool {
    plane.is_destination(source)
        || cfg
            .allowed_next_hops
            .iter()
            .any(|n| n.contains(source.ip()))
}

/// Whether a request may be sent to `addr` on the strength of a Route or Request-URI: a
/// destination of the plane, or inside `allowed_next_hops`.
fn allowed(cfg: &ProxyConfig, plane: &Plane, addr: SocketAddr) -> bool {
    plane.is_destination(addr) || cfg.allowed_next_hops.iter().any(|n| n.contains(addr.ip()))
}

/// The refusal of a request to a next hop no configuration allows (no open relay).
fn forbidden<'a>(
    cfg: &ProxyConfig,
    msg: &Message<'_>,
    pkt: &Inbound<'_>,
    counters: &mut Counters,
) -> Decision<'a> {
    counters.forbidden_next_hop += 1;
    match reply(cfg, msg, pkt, 403, "Forbidden Next Hop") {
        Decision::Drop(_) => Decision::Drop(DropReason::Forbidden),
        d => d,
    }
}

/// A forwarding decision to `addr` (dropped when no socket of its family exists). Only a
/// dispatched initial request (not REGISTER) gets our Record-Route, when configured.
fn forward<'a>(
    cfg: &'a ProxyConfig,
    msg: &Message<'a>,
    pkt: &Inbound<'_>,
    c: &Checked<'a>,
    addr: SocketAddr,
    hop: Hop<'a>,
    ruri: Option<&'a [u8]>,
) -> Decision<'a> {
    let record_route = cfg.record_route
        && matches!(hop, Hop::Dispatched { .. })
        && !c.in_dialog
        && c.req.method != b"REGISTER";
    let Some(local) = cfg.socket_for(pkt.flow.local, addr) else {
        return Decision::Drop(DropReason::NoNextHop);
    };
    let listener = &cfg.sockets[usize::from(local.0)];
    Decision::Forward(Forward {
        flow: Flow {
            transport: listener.transport,
            local,
            remote: addr,
        },
        hop,
        edits: Forwarding {
            client_via: ClientVia::of(msg, &c.top),
            source: pkt.flow.remote,
            listener,
            branch: {
                let mut b = ArrayVec::new();
                let _ = b.try_extend_from_slice(&c.branch);
                b
            },
            max_forwards: msg.max_forwards().map_or(cfg.max_forwards, |n| n - 1),
            remove_route: c.remove_route,
            record_route,
            ruri,
        },
    })
}

/// A stateless reply decision (never to an ACK).
/// Forwards a request where its INVITE went (`went`: the recent-INVITE table's pick and
/// address): a CANCEL, a non-2xx ACK, or a retransmission of the INVITE itself.
fn follow_invite<'a>(
    cfg: &'a ProxyConfig,
    msg: &Message<'a>,
    pkt: &Inbound<'_>,
    c: &Checked<'a>,
    (pick, addr): (Pick, SocketAddr),
) -> Decision<'a> {
    let hop = Hop::Dispatched {
        pick,
        list: &[],
        route: None,
    };
    forward(cfg, msg, pkt, c, addr, hop, None)
}

fn reply<'a>(
    cfg: &ProxyConfig,
    msg: &Message<'_>,
    pkt: &Inbound<'_>,
    code: u16,
    reason: &'a str,
) -> Decision<'a> {
    if msg.request().is_some_and(|r| r.method == b"ACK") {
        return Decision::Drop(DropReason::Unanswerable);
    }
    let to = reply::reply_destination(msg, pkt.flow.remote);
    let local = cfg.socket_for(pkt.flow.local, to).unwrap_or(pkt.flow.local);
    Decision::Reply(Reply {
        flow: Flow {
            transport: pkt.flow.transport,
            local,
            remote: to,
        },
        code,
        reason,
        unsupported: None,
        retry_after: None,
    })
}

/// Where responses to a request whose top Via is `top`, received from `source`, go once our
/// edits made `received` the source address and `rport` the source port (RFC 3261 §18.2.2,
/// RFC 3581 §4): the source address, and the source port when `rport` was asked for, else the
/// sent-by port (5060 without one).
fn return_addr(top: &Via<'_>, source: SocketAddr) -> SocketAddr {
    let port = if top.rport.is_some() {
        source.port()
    } else {
        top.port.unwrap_or(5060)
    };
    SocketAddr::new(source.ip(), port)
}

/// Decides a response: relay it to the second Via, or take it (ours, a probe reply).
pub(crate) fn response<'a>(
    cfg: &ProxyConfig,
    msg: &Message<'a>,
    pkt: &Inbound<'_>,
) -> Decision<'a> {
    let mut vias = msg.vias();
    let top = match vias.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => return Decision::Drop(DropReason::Malformed(e)),
        None => return Decision::Drop(DropReason::Malformed(Error::Missing(HeaderKind::Via))),
    };
    if !cfg.is_ours(top.host, top.port) || !top.branch.is_some_and(|b| b.starts_with(BRANCH_PREFIX))
    {
        return Decision::Drop(DropReason::NotOurVia);
    }
    if let Some(token) = top.branch.and_then(TxnToken::parse) {
        return Decision::TxnResponse { token };
    }
    let next = match vias.next() {
        None => {
            let token = top.branch.and_then(ProbeToken::parse);
            return match (token, msg.response()) {
                (Some(token), Some(s)) => Decision::ProbeReply {
                    token,
                    code: s.code,
                },
                _ => Decision::ForUs,
            };
        }
        Some(Err(e)) => return Decision::Drop(DropReason::Malformed(e)),
        Some(Ok(v)) => v,
    };
    // RFC 3261 §18.2.2 / RFC 3581 §4: received (else sent-by host), rport value (else port).
    let host = next.received.unwrap_or(next.host);
    let port = match next.rport {
        Some(Some(p)) => Some(p),
        _ => next.port,
    };
    let relay = ip_port(host, port).and_then(|addr| {
        cfg.socket_for(pkt.flow.local, addr).map(|local| Flow {
            transport: cfg.sockets[usize::from(local.0)].transport,
            local,
            remote: addr,
        })
    });
    match relay {
        // Only to the address our branch was made for: a forged or edited Via is dropped.
        Some(flow)
            if top.branch.is_some_and(|b| {
                verify_branch(b, &cfg.via_key, flow.remote, flow.transport.via_token())
            }) =>
        {
            Decision::Relay(flow)
        }
        Some(_) => Decision::Drop(DropReason::ForgedVia),
        None => Decision::Drop(DropReason::NoNextHop),
    }
}

impl ProxyConfig {
    /// Whether `host:port` (as written in a Via or URI) names one of our listeners.
    pub fn is_ours(&self, host: &[u8], port: Option<u16>) -> bool {
        self.sockets.iter().any(|s| s.is(host, port))
    }

    /// A listener of `to`'s address family, preferring `arrival` (where the message came in).
    pub fn socket_for(&self, arrival: SocketIdx, to: SocketAddr) -> Option<SocketIdx> {
        let same = |i: usize| {
            self.sockets
                .get(i)
                .is_some_and(|s| s.addr.is_ipv4() == to.is_ipv4())
        };
        if same(usize::from(arrival.0)) {
            return Some(arrival);
        }
        (0..self.sockets.len())
            .find(|&i| same(i))
            .map(|i| SocketIdx(i as u16))
    }
}
