//! The per-thread proxy core: scan, decide ([`super::decide`]), act ([`super::stateless`]),
//! count — and the core's timers (`poll_timeout` / `handle_timeout`).

use std::sync::Arc;
use std::time::Instant;

use sipdisp_parser::{Error, Headers, parse_datagram};

use super::ProxyConfig;
use super::boundary::{Inbound, Sink};
use super::decide::Hop;
use super::decide::{self, Decider, Decision};
use super::reply::REPLY_CAPACITY;
use super::stateful::{Marked, Txn};
use super::stateless;
use super::txn::{Fork, TxnTable};
use super::verdict::{Counters, DropReason, Verdict, method_index};
use crate::dispatch::Algorithm;
use crate::plane::Plane;

/// The per-thread handler. Create one per I/O worker; it allocates only at creation.
pub struct Worker {
    headers: Headers,
    cfg: Arc<ProxyConfig>,
    decider: Decider,
    reply: Box<[u8; REPLY_CAPACITY]>,
    counters: Counters,
    /// When this worker next offers to run call-load expiry (armed by the first message).
    call_expiry: Option<Instant>,
    /// The transaction table, when a route has `failover`.
    txn: Option<Txn>,
    /// Flood control, when `[pike]` is on.
    pike: Option<super::pike::Pike>,
}

impl Worker {
    /// A worker for `cfg`; `seed` seeds algorithm 6's generator (give each worker its own).
    pub fn new(cfg: Arc<ProxyConfig>, seed: u64) -> Worker {
        let routes = cfg.routes.routes.len();
        let pike = cfg_pike(&cfg);
        Worker {
            headers: Headers::new(),
            cfg,
            decider: Decider::new(seed),
            reply: Box::new([0; REPLY_CAPACITY]),
            counters: Counters {
                route_hits: vec![0; routes],
                ..Counters::default()
            },
            call_expiry: None,
            txn: None,
            pike,
        }
    }

    /// Makes the routes with `failover` transaction-stateful, with calls kept in `table`
    /// (shared by all workers); this is worker `me` of `workers` (it runs the timers of the
    /// shards `s % workers == me`).
    pub fn with_transactions(mut self, table: Arc<TxnTable>, me: usize, workers: usize) -> Worker {
        self.txn = Some(Txn::new(table, me, workers));
        self
    }

    /// Tells the worker, before a batch's messages, whether its request lane is backing up
    /// (the I/O layer's [`crate::netio::Load::backlog`]): while it is, a share of new requests
    /// is refused ([`super::Overload`]).
    pub fn begin(&mut self, behind: bool) {
        self.decider.behind(behind);
    }

    /// The counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters with the flood-control view refreshed at `now` (for publication, once a
    /// second: it allocates a short list of blocked sources).
    pub fn counters_at(&mut self, now: Instant) -> &Counters {
        if let Some(p) = &self.pike {
            self.counters.pike_blocked_sources = p.blocked_count(now) as u64;
            self.counters.pike_top = p.blocked(now, 32);
        }
        &self.counters
    }

    /// The counters, for the I/O loop to add what the datapath counted
    /// ([`Counters::count_io`]).
    pub fn counters_mut(&mut self) -> &mut Counters {
        &mut self.counters
    }

    /// Destination state changes made by routes' `mark` since the last call (rare: a
    /// destination going down or up after failovers), for the caller to raise as events.
    pub fn take_marks(&mut self, mut each: impl FnMut(Marked)) {
        if let Some(t) = &mut self.txn {
            t.take_marks().for_each(&mut each);
        }
    }

    /// The earliest instant at which [`Worker::handle_timeout`] has work (`None`: no timer
    /// armed). Timers are armed by the messages that need them, so an idle worker has none.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let txn = self.txn.as_ref().and_then(Txn::next_timer);
        [self.call_expiry, txn].into_iter().flatten().min()
    }

    /// Runs the timers due at `now` and re-arms them; what they send goes into `sink`.
    ///
    /// The timers: the transactions of this worker's shards (retransmissions, timeouts and
    /// failover, wait timers), and every `ds_hash_check_interval` an offer to run algorithm
    /// 10's call-load expiry (the first worker to offer in an interval runs it, see
    /// [`Snapshot::expire_calls_due`](crate::dispatch::Snapshot::expire_calls_due)).
    pub fn handle_timeout(&mut self, now: Instant, plane: &Plane, sink: &mut impl Sink) {
        if let Some(t) = &mut self.txn {
            t.timers(&self.cfg, now, sink, &mut self.counters);
        }
        if let (Some(due), Some(every)) = (self.call_expiry, self.cfg.call_check_interval)
            && now >= due
        {
            if let Some(n) = plane.snapshot.expire_calls_due(now) {
                self.counters.calls_expired += n as u64;
            }
            self.call_expiry = Some(now + every);
        }
    }

    /// Handles one message: scans it, decides, runs the decision statelessly (queueing what
    /// must be sent into `sink`), counts the verdict.
    pub fn handle(
        &mut self,
        now: Instant,
        plane: &Arc<Plane>,
        pkt: &Inbound<'_>,
        sink: &mut impl Sink,
    ) -> Verdict {
        if self.call_expiry.is_none()
            && let Some(every) = self.cfg.call_check_interval
        {
            self.call_expiry = Some(now + every);
        }
        let (verdict, kind) = match parse_datagram(pkt.data, &mut self.headers) {
            Err(Error::KeepAlive) => (Verdict::Dropped(DropReason::KeepAlive), None),
            // A valid message may have more header lines than the index holds (RFC 4475's
            // 100-Via requests): answer it precisely from the raw bytes instead of a silent drop.
            Err(Error::TooManyHeaders) => {
                self.counters.too_many_headers += 1;
                (too_many_headers(pkt, &mut self.reply[..], sink), None)
            }
            Err(e) => (Verdict::Dropped(DropReason::Malformed(e)), None),
            Ok(msg) => {
                let kind = match msg.request() {
                    Some(r) => Ok(method_index(r.method)),
                    None => Err(msg
                        .response()
                        .map_or(0, |s| usize::from(s.code / 100).min(6))),
                };
                // Backends and `allowed_next_hops` are never flood-limited.
                if kind.is_ok()
                    && let Some(p) = &mut self.pike
                    && !decide::trusted_source(&self.cfg, plane, pkt.flow.remote)
                    && p.check(pkt.flow.remote.ip(), now) == super::pike::Check::Blocked
                {
                    self.counters.pike_blocked += 1;
                    let v = if p.replies() {
                        flood_reply(&msg, pkt, &mut self.reply[..], sink)
                    } else {
                        Verdict::Dropped(DropReason::Flood)
                    };
                    self.counters.count(&v, Some(kind));
                    return v;
                }
                if kind.is_ok()
                    && let Some(t) = &mut self.txn
                    && let Some(v) =
                        t.intercept(&self.cfg, now, &msg, pkt, sink, &mut self.counters)
                {
                    self.counters.count(&v, Some(kind));
                    return v;
                }
                let decision: Decision<'_> = match kind {
                    Ok(_) => {
                        self.decider
                            .request(&self.cfg, now, plane, &msg, pkt, &mut self.counters)
                    }
                    Err(_) => decide::response(&self.cfg, &msg, pkt),
                };
                let stateful = match (&decision, &mut self.txn) {
                    (Decision::Forward(f), Some(t)) => match stateful_route(&self.cfg, &msg, f) {
                        Some(fork) => Some(t.start(
                            &self.cfg,
                            now,
                            plane,
                            &msg,
                            pkt,
                            f,
                            fork,
                            sink,
                            &mut self.counters,
                        )),
                        None => None,
                    },
                    (Decision::TxnResponse { token }, Some(t)) => {
                        t.response(&self.cfg, now, &msg, *token, sink, &mut self.counters)
                    }
                    _ => None,
                };
                let verdict = stateful.unwrap_or_else(|| {
                    let v = stateless::execute(&decision, &msg, &mut self.reply[..], sink);
                    call_load(plane, &msg, &v);
                    v
                });
                (verdict, Some(kind))
            }
        };
        self.counters.count(&verdict, kind);
        if let Verdict::Forwarded(pick) = verdict {
            plane.count_selection(pick);
        }
        verdict
    }
}

/// How a forwarding decision runs statefully: `None` for the stateless path (a route without
/// `failover`, a CANCEL or ACK — which follow their INVITE — or a request not selected by
/// the route table); parallel branches when the route's rules use algorithm 12.
fn stateful_route(
    cfg: &ProxyConfig,
    msg: &sipdisp_parser::Message<'_>,
    f: &super::Forward<'_>,
) -> Option<Fork> {
    let Hop::Dispatched {
        route: Some(pos), ..
    } = f.hop
    else {
        return None;
    };
    let route = cfg.routes.routes.get(pos)?;
    route.failover.as_ref()?;
    let method = msg.request()?.method;
    if method == b"ACK" || method == b"CANCEL" {
        return None;
    }
    let parallel = match &route.action {
        super::Action::Select { rules, .. } => rules.iter().any(|r| r.alg == Algorithm::Parallel),
        super::Action::Reply { .. } => false,
    };
    Some(if parallel {
        Fork::Parallel
    } else {
        Fork::Serial
    })
}

/// Algorithm 10's bookkeeping on the stateless path (reference §9): a forwarded BYE or CANCEL
/// ends the call (`ds_load_update`), a relayed 2xx to an INVITE confirms it, a relayed final
/// ≥ 300 to an INVITE removes its load (`ds_load_unset`). One branch when there is no table.
fn call_load(plane: &Plane, msg: &sipdisp_parser::Message<'_>, v: &Verdict) {
    use crate::dispatch::runtime::LoadEvent;
    let Some(_) = plane.snapshot.calls() else {
        return;
    };
    match (msg.request(), msg.response(), v) {
        (Some(r), _, Verdict::Forwarded(_) | Verdict::Routed)
            if r.method == b"BYE" || r.method == b"CANCEL" =>
        {
            plane
                .snapshot
                .load_update(msg.call_id(), LoadEvent::ByeOrCancel);
        }
        (_, Some(s), Verdict::Relayed) if msg.cseq().method == b"INVITE" && s.code >= 200 => {
            if s.code < 300 {
                plane
                    .snapshot
                    .load_update(msg.call_id(), LoadEvent::InviteConfirmed);
            } else {
                plane.snapshot.load_unset(msg.call_id());
            }
        }
        _ => {}
    }
}

fn cfg_pike(cfg: &ProxyConfig) -> Option<super::pike::Pike> {
    cfg.pike.map(super::pike::Pike::new)
}

/// `503` + `Retry-After` to a flood-limited request (`[pike] action = "503"`).
fn flood_reply(
    msg: &sipdisp_parser::Message<'_>,
    pkt: &Inbound<'_>,
    buf: &mut [u8],
    sink: &mut impl Sink,
) -> Verdict {
    if msg.request().is_some_and(|r| r.method == b"ACK") {
        return Verdict::Dropped(DropReason::Flood);
    }
    let extra: &[&[u8]] = &[b"Retry-After: 10\r\n"];
    let Some(n) = super::reply::build(msg, 503, "Service Unavailable", extra, buf) else {
        return Verdict::Dropped(DropReason::Flood);
    };
    let flow = crate::netio::Flow {
        remote: super::reply::reply_destination(msg, pkt.flow.remote),
        ..pkt.flow
    };
    match sink.send(&flow, &[&buf[..n]]) {
        Ok(()) => Verdict::Replied(503),
        Err(e) => Verdict::Dropped(DropReason::SendFailed(e)),
    }
}

/// `400 Too Many Header Lines` to a request the scanner could not index, sent back to its
/// source (as with `rport`: the Vias were not parsed).
fn too_many_headers(pkt: &Inbound<'_>, buf: &mut [u8], sink: &mut impl Sink) -> Verdict {
    let Some(n) = super::reply::build_raw(pkt.data, 400, "Too Many Header Lines", buf) else {
        return Verdict::Dropped(DropReason::Malformed(Error::TooManyHeaders));
    };
    match sink.send(&pkt.flow, &[&buf[..n]]) {
        Ok(()) => Verdict::Replied(400),
        Err(e) => Verdict::Dropped(DropReason::SendFailed(e)),
    }
}
