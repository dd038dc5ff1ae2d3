//! Transaction-stateful execution (RFC 3261 §16, §17) for routes with `failover`: the same
//! [`Decision`]s as the stateless path, run through a [`Call`] kept in the shared
//! [`TxnTable`]. This file does the I/O half of the sans-IO `txn` module: it stores the
//! caller's request, builds each branch's request, the hop-by-hop ACK and CANCEL, the local
//! replies, and sends what the call's [`Action`]s ask for.
//!
//! Matching (RFC 3261 §17.1.3, §17.2.3): a response names its call and branch in our Via
//! branch ([`TxnToken`]); a retransmission, the ACK of a non-2xx final and a CANCEL find the
//! call by a key over the caller's top Via (branch, sent-by, INVITE or the method). A response
//! whose call is gone (a 2xx retransmission after the transaction ended) is relayed statelessly
//! (§16.7).

use std::sync::Arc;
use std::time::Instant;

use sipdisp_parser::{HeaderKind, Headers, Message, Via, parse_datagram};

use super::branch::{MAX_BRANCH_LEN, TXN_BRANCH_LEN, TxnToken, stable_hash};
use super::decide::Forward;
use super::edits::{self, Forwarding, StoredForwarding};
use super::reply::{self, REPLY_CAPACITY, reason_phrase};
use super::txn::table::{Entry, Shard, Stored};
use super::txn::{Action, Call, Fork, TxnTable};
use super::verdict::{Counters, DropReason, Verdict};
use super::{Inbound, ProxyConfig, Sink};
use crate::dispatch::runtime::LoadEvent;
use crate::netio::{Flow, OutboxError};
use crate::plane::Plane;

/// Scratch size for a flattened message (any UDP datagram fits).
const SCRATCH: usize = 65_536;

/// A worker's handle on the transaction table and its scratch space.
pub(crate) struct Txn {
    table: Arc<TxnTable>,
    /// This worker's number and the worker count (which shards' timers it runs).
    me: usize,
    workers: usize,
    stored: Headers,
    aux: Headers,
    flat: Vec<u8>,
    out: Vec<u8>,
    reply: Box<[u8; REPLY_CAPACITY]>,
    /// State changes made by `mark` since the I/O loop last took them ([`Txn::take_marks`]);
    /// bounded (a state change is rare: once per destination going down or up).
    marks: arrayvec::ArrayVec<Marked, MAX_MARKS>,
}

/// Most state changes kept between two [`Txn::take_marks`] (one batch); more are logged only.
const MAX_MARKS: usize = 16;

/// A destination state change made by a route's `mark` after a failover (`ds_mark_dst`),
/// for health to raise as a dst-down / dst-up event.
#[derive(Clone)]
pub struct Marked {
    /// `DstDown` or `DstUp`.
    pub event: crate::dispatch::Event,
    /// The destination, in `plane`.
    pub pick: crate::dispatch::Pick,
    /// The plane the call ran on (a reload may have published another since).
    pub plane: Arc<Plane>,
}

/// The caller-side key of a request (RFC 3261 §17.2.3): top Via branch and sent-by, and the
/// method — an ACK or a CANCEL counts as the INVITE it refers to.
fn caller_key(top: &Via<'_>, method: &[u8]) -> u64 {
    let method: &[u8] = if method == b"ACK" || method == b"CANCEL" {
        b"INVITE"
    } else {
        method
    };
    let port = top.port.unwrap_or(5060).to_be_bytes();
    stable_hash(&[top.branch.unwrap_or(b""), top.host, &port, method])
}

/// What an executed action needs besides the call.
struct Ctx<'c> {
    cfg: &'c ProxyConfig,
    /// The response being handled, when the actions come from one.
    response: Option<&'c Message<'c>>,
}

impl Txn {
    /// A handle for worker `me` of `workers`.
    pub(crate) fn new(table: Arc<TxnTable>, me: usize, workers: usize) -> Txn {
        Txn {
            table,
            me,
            workers: workers.max(1),
            stored: Headers::new(),
            aux: Headers::new(),
            flat: Vec::with_capacity(SCRATCH),
            out: Vec::with_capacity(4096),
            reply: Box::new([0; REPLY_CAPACITY]),
            marks: arrayvec::ArrayVec::new(),
        }
    }

    /// The state changes `mark` made since the last call (see [`Marked`]).
    pub(crate) fn take_marks(&mut self) -> arrayvec::Drain<'_, Marked, MAX_MARKS> {
        self.marks.drain(..)
    }

    /// The earliest timer among the shards this worker runs.
    pub(crate) fn next_timer(&self) -> Option<Instant> {
        self.table.next_timer(self.me, self.workers)
    }

    /// A request that may belong to a call in flight: a retransmission (the last response is
    /// sent again, or it is absorbed), the ACK of our non-2xx final (absorbed) or a CANCEL
    /// (answered 200, its INVITE's branches cancelled). `None`: no call; route it as usual.
    pub(crate) fn intercept(
        &mut self,
        cfg: &ProxyConfig,
        now: Instant,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        sink: &mut impl Sink,
        counters: &mut Counters,
    ) -> Option<Verdict> {
        let method = msg.request()?.method;
        let top = msg.vias().next()?.ok()?;
        let key = caller_key(&top, method);
        let s = self.table.shard_of(key);
        let table = Arc::clone(&self.table);
        let mut shard = table.lock(s);
        let (index, e) = shard.find(key)?;
        let call = e.call.as_mut()?;
        let t = &cfg.timers;
        let verdict = if method == b"ACK" {
            call.on_ack(now, t);
            Verdict::Absorbed
        } else if method == b"CANCEL" {
            let actions = call.on_cancel(now, t);
            let v = self.reply_to(msg, pkt, 200, &[], sink);
            counters.txn.cancels += 1;
            let ctx = Ctx {
                cfg,
                response: None,
            };
            self.perform(&ctx, &actions, &mut shard, s, index, sink, counters);
            v
        } else {
            counters.txn.retransmissions_in += 1;
            if call.on_retransmission().contains(&Action::ResendLast)
                && let Err(err) = resend_last(&e.stored, sink)
            {
                counters.send_failures[err.index()] += 1;
            }
            Verdict::Absorbed
        };
        self.settle(&mut shard, s, index, counters);
        Some(verdict)
    }

    /// Starts a call for a request the route made stateful.
    #[allow(clippy::too_many_arguments)] // the request, its decision and where things go
    pub(crate) fn start(
        &mut self,
        cfg: &ProxyConfig,
        now: Instant,
        plane: &Arc<Plane>,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        f: &Forward<'_>,
        fork: Fork,
        sink: &mut impl Sink,
        counters: &mut Counters,
    ) -> Verdict {
        let Some(req) = msg.request() else {
            return Verdict::Dropped(DropReason::Rewrite);
        };
        let Ok(top) = msg.top_via() else {
            return Verdict::Dropped(DropReason::Rewrite);
        };
        let invite = req.method == b"INVITE";
        let key = caller_key(&top, req.method);
        let super::decide::Hop::Dispatched { pick, list, route } = f.hop else {
            return Verdict::Dropped(DropReason::Rewrite);
        };
        // The failover list starts with the selected destination (reference §4.9); alg 12's
        // branch list holds the destinations after it (§4.13).
        let mut targets = arrayvec::ArrayVec::new();
        let first = (list.first() != Some(&pick)).then_some(pick);
        for p in first.iter().chain(list) {
            if let Some(a) = plane.addr(*p)
                && !targets.is_full()
            {
                targets.push((*p, a));
            }
        }
        if targets.is_empty() {
            return Verdict::Dropped(DropReason::NoNextHop);
        }
        let (call, actions) = Call::start(invite, fork, targets.len(), now, &cfg.timers);
        let s = self.table.shard_of(key);
        let table = Arc::clone(&self.table);
        let mut shard = table.lock(s);
        let index = match table.insert(&mut shard, key, call) {
            Ok(i) => i,
            Err(_) => {
                drop(shard);
                counters.txn.overload += 1;
                return self.reply_to(msg, pkt, 503, &[b"Retry-After: 5\r\n"], sink);
            }
        };
        counters.txn.started += 1;
        {
            let g = shard.generation(index);
            let e = shard.get(index, g).expect("just inserted");
            let st = &mut e.stored;
            st.request.extend_from_slice(msg.buf());
            st.client = pkt.flow;
            // Responses go where the request came from (RFC 3261 §18.2.2 with RFC 3581),
            // never where a response's Via says.
            st.reply_flow = Flow {
                remote: reply::reply_destination(msg, pkt.flow.remote),
                ..pkt.flow
            };
            st.plane = Some(Arc::clone(plane));
            st.targets = targets;
            st.route = route.unwrap_or(0);
            st.forwarding = Some(StoredForwarding::of(&f.edits, msg.buf()));
        }
        let ctx = Ctx {
            cfg,
            response: None,
        };
        self.perform(&ctx, &actions, &mut shard, s, index, sink, counters);
        self.settle(&mut shard, s, index, counters);
        Verdict::Forwarded(pick)
    }

    /// A response to one of our stateful branches.
    pub(crate) fn response(
        &mut self,
        cfg: &ProxyConfig,
        now: Instant,
        msg: &Message<'_>,
        token: TxnToken,
        sink: &mut impl Sink,
        counters: &mut Counters,
    ) -> Option<Verdict> {
        let code = msg.response()?.code;
        if msg.cseq().method == b"CANCEL" {
            // The answer to one of our CANCELs: hop by hop, it ends here (RFC 3261 §16.10).
            return Some(Verdict::Absorbed);
        }
        let s = usize::from(token.shard);
        if s >= self.table.shards() {
            return None;
        }
        let table = Arc::clone(&self.table);
        let mut shard = table.lock(s);
        let e = shard.get(token.index, token.generation)?;
        let call = e.call.as_mut()?;
        let n = usize::from(token.branch);
        if n >= call.branches() {
            return None;
        }
        let codes = failover_codes(cfg, e.stored.route);
        let before = call.branches();
        let actions = call.on_response(n, code, now, &cfg.timers, codes);
        if call.branches() > before {
            counters.txn.failovers_code += 1;
            count_failover(&e.stored, n);
            self.move_load(&e.stored, call.branches() - 1);
        }
        let ctx = Ctx {
            cfg,
            response: Some(msg),
        };
        let index = token.index;
        self.perform(&ctx, &actions, &mut shard, s, index, sink, counters);
        self.settle(&mut shard, s, index, counters);
        // A 100, a provisional after the answer or a final response that is not (yet) the
        // best ends here; only what went to the caller counts as relayed.
        Some(if actions.contains(&Action::ForwardResponse) {
            Verdict::Relayed
        } else {
            Verdict::Absorbed
        })
    }

    /// Runs the due timers of this worker's shards.
    pub(crate) fn timers(
        &mut self,
        cfg: &ProxyConfig,
        now: Instant,
        sink: &mut impl Sink,
        counters: &mut Counters,
    ) {
        let table = Arc::clone(&self.table);
        for s in (self.me..table.shards()).step_by(self.workers) {
            let mut shard = table.lock(s);
            while let Some(index) = shard.pop_due(now) {
                let g = shard.generation(index);
                let Some(e) = shard.get(index, g) else {
                    continue;
                };
                let route = e.stored.route;
                let Some(call) = e.call.as_mut() else {
                    continue;
                };
                let before = call.branches();
                let actions = call.on_timer(now, &cfg.timers, failover_codes(cfg, route));
                for a in &actions {
                    match *a {
                        Action::SendRequest(k) if k >= before => {
                            counters.txn.failovers_timeout += 1;
                            count_failover(&e.stored, k - 1);
                            self.move_load(&e.stored, k);
                        }
                        Action::SendRequest(_) => counters.txn.retransmissions_out += 1,
                        Action::Reply(408) => counters.txn.timeouts += 1,
                        _ => {}
                    }
                }
                let ctx = Ctx {
                    cfg,
                    response: None,
                };
                self.perform(&ctx, &actions, &mut shard, s, index, sink, counters);
                self.settle(&mut shard, s, index, counters);
            }
            table.publish_next(s, &shard);
        }
    }

    /// After a call changed: free it when over, else queue its next timer.
    fn settle(&self, shard: &mut Shard, s: usize, index: u32, counters: &mut Counters) {
        let g = shard.generation(index);
        let next = match shard.get(index, g) {
            Some(Entry {
                call: Some(call), ..
            }) if !call.is_over() => call.next_timer(),
            Some(_) => {
                self.table.free(shard, index);
                counters.txn.ended += 1;
                None
            }
            None => None,
        };
        if let Some(at) = next {
            shard.schedule(index, at);
        }
        self.table.publish_next(s, shard);
    }

    /// Performs `actions` for the call at `index` (its shard locked).
    #[allow(clippy::too_many_arguments)] // the call's place and what to send with
    fn perform(
        &mut self,
        ctx: &Ctx<'_>,
        actions: &[Action],
        shard: &mut Shard,
        _s: usize,
        index: u32,
        sink: &mut impl Sink,
        counters: &mut Counters,
    ) {
        let g = shard.generation(index);
        let Some(e) = shard.get(index, g) else { return };
        let token = |n: usize| TxnToken {
            shard: _s as u16,
            index,
            generation: g,
            branch: n as u8,
        };
        for a in actions {
            let r = match *a {
                Action::Trying => self.local_reply(&mut e.stored, 100, ctx, sink),
                Action::Reply(code) => {
                    counters.txn.local_replies += 1;
                    self.local_reply(&mut e.stored, code, ctx, sink)
                }
                Action::SendRequest(n) => self.send_branch(&e.stored, n, token(n), ctx, sink),
                Action::SendAck(n) => self.send_hop(b"ACK", &e.stored, n, token(n), ctx, sink),
                Action::SendCancel(n) => {
                    self.send_hop(b"CANCEL", &e.stored, n, token(n), ctx, sink)
                }
                Action::ForwardResponse => forward_response(&mut e.stored, ctx, sink),
                Action::KeepBest => keep_best(&mut e.stored, ctx),
                Action::ForwardBest => forward_best(&mut e.stored, sink),
                Action::ResendLast => resend_last(&e.stored, sink),
                Action::Mark(n) => {
                    if let Some(m) = mark(&e.stored, n, ctx.cfg)
                        && let Err(full) = self.marks.try_push(m)
                    {
                        eprintln!(
                            "sipdisp: dispatcher event set={} not raised: more than {MAX_MARKS} \
                             state changes in one batch",
                            full.element().pick.set.0
                        );
                    }
                    Ok(())
                }
                Action::Confirmed => {
                    self.load(&e.stored, LoadEvent::InviteConfirmed);
                    Ok(())
                }
                Action::Failed => {
                    self.unset_load(&e.stored);
                    Ok(())
                }
            };
            if let Err(err) = r {
                counters.send_failures[err.index()] += 1;
            }
        }
    }

    /// Sends branch `n`'s request: the stored request with the edits of its decision, our
    /// Via carrying the transaction token, to the branch's destination.
    fn send_branch(
        &mut self,
        st: &Stored,
        n: usize,
        token: TxnToken,
        ctx: &Ctx<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), OutboxError> {
        let Some((flow, len)) = self.branch_request(st, n, token, ctx.cfg) else {
            return Err(OutboxError::TooLarge { len: 0 });
        };
        sink.send(&flow, &[&self.flat[..len]])
    }

    /// Flattens branch `n`'s request into `self.flat`; returns where it goes and its length.
    fn branch_request(
        &mut self,
        st: &Stored,
        n: usize,
        token: TxnToken,
        cfg: &ProxyConfig,
    ) -> Option<(Flow, usize)> {
        let (pick, addr) = *st.targets.get(n)?;
        let fwd = st.forwarding.as_ref()?;
        let local = cfg.socket_for(st.client.local, addr)?;
        let listener = &cfg.sockets[usize::from(local.0)];
        let msg = parse_datagram(&st.request, &mut self.stored).ok()?;
        let ruri = if fwd.rewrite_ruri {
            st.plane
                .as_ref()
                .map(|p| &p.snapshot.destination(pick).uri[..])
        } else {
            None
        };
        let branch = token.branch_value();
        let f = Forwarding {
            client_via: fwd.client_via(&st.request),
            source: st.client.remote,
            listener,
            branch: branch_bytes(&branch),
            max_forwards: fwd.max_forwards,
            remove_route: fwd.remove_route,
            record_route: fwd.record_route,
            ruri,
        };
        let plan = edits::request(&msg, &f).ok()?;
        let len = plan.len();
        if len > SCRATCH {
            return None;
        }
        self.flat.resize(len, 0);
        plan.flatten_into(&mut self.flat).ok()?;
        let flow = Flow {
            transport: listener.transport,
            local,
            remote: addr,
        };
        Some((flow, len))
    }

    /// Sends a hop-by-hop ACK (for the response being handled) or a CANCEL on branch `n`
    /// (RFC 3261 §17.1.1.3, §9.1): the branch request's Request-URI, our Via alone, its Route
    /// set, From, Call-ID, CSeq number; the To of the response (ACK) or of the request
    /// (CANCEL).
    #[allow(clippy::too_many_arguments)] // the method, the call's data and where it goes
    fn send_hop(
        &mut self,
        method: &[u8],
        st: &Stored,
        n: usize,
        token: TxnToken,
        ctx: &Ctx<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), OutboxError> {
        let Some((flow, len)) = self.branch_request(st, n, token, ctx.cfg) else {
            return Err(OutboxError::TooLarge { len: 0 });
        };
        let Ok(fwd) = parse_datagram(&self.flat[..len], &mut self.aux) else {
            return Err(OutboxError::TooLarge { len });
        };
        let to = match (method, ctx.response) {
            (b"ACK", Some(resp)) => resp.header(b"To"),
            _ => fwd.header(b"To"),
        };
        write_hop(&mut self.out, method, &fwd, to.unwrap_or(b""));
        sink.send(&flow, &[&self.out])
    }

    /// A local response with `code` to the stored request; kept as the last response.
    fn local_reply(
        &mut self,
        st: &mut Stored,
        code: u16,
        _ctx: &Ctx<'_>,
        sink: &mut impl Sink,
    ) -> Result<(), OutboxError> {
        let Ok(msg) = parse_datagram(&st.request, &mut self.stored) else {
            return Ok(());
        };
        let reason = if code == 100 {
            "Trying"
        } else {
            reason_phrase(code)
        };
        let Some(n) = reply::build(&msg, code, reason, &[], &mut self.reply[..]) else {
            return Ok(());
        };
        let to = reply::reply_destination(&msg, st.client.remote);
        let flow = Flow {
            remote: to,
            ..st.client
        };
        st.last.clear();
        st.last.extend_from_slice(&self.reply[..n]);
        st.last_flow = Some(flow);
        sink.send(&flow, &[&self.reply[..n]])
    }

    /// A stateless reply to `msg` with `extra` header lines: the 200 to a CANCEL, or the 503
    /// with `Retry-After` when the table is full (RFC 3261 §21.5.4: never silence).
    fn reply_to(
        &mut self,
        msg: &Message<'_>,
        pkt: &Inbound<'_>,
        code: u16,
        extra: &[&[u8]],
        sink: &mut impl Sink,
    ) -> Verdict {
        let reason = reason_phrase(code);
        let Some(n) = reply::build(msg, code, reason, extra, &mut self.reply[..]) else {
            return Verdict::Dropped(DropReason::Unanswerable);
        };
        let flow = Flow {
            remote: reply::reply_destination(msg, pkt.flow.remote),
            ..pkt.flow
        };
        match sink.send(&flow, &[&self.reply[..n]]) {
            Ok(()) => Verdict::Replied(code),
            Err(e) => Verdict::Dropped(DropReason::SendFailed(e)),
        }
    }

    fn load(&mut self, st: &Stored, ev: LoadEvent) {
        if let Some(p) = &st.plane
            && p.snapshot.calls().is_some()
            && let Ok(msg) = parse_datagram(&st.request, &mut self.stored)
        {
            p.snapshot.load_update(msg.call_id(), ev);
        }
    }

    /// `ds_next_dst` on an algorithm-10 call: its load moves to branch `n`'s destination.
    fn move_load(&mut self, st: &Stored, n: usize) {
        if let (Some(p), Some((pick, _))) = (&st.plane, st.targets.get(n))
            && p.snapshot.calls().is_some()
            && let Ok(msg) = parse_datagram(&st.request, &mut self.stored)
        {
            p.snapshot.load_move(msg.call_id(), *pick);
        }
    }

    fn unset_load(&mut self, st: &Stored) {
        if let Some(p) = &st.plane
            && p.snapshot.calls().is_some()
            && let Ok(msg) = parse_datagram(&st.request, &mut self.stored)
        {
            p.snapshot.load_unset(msg.call_id());
        }
    }
}

/// The failover codes of route `route` (the default pattern when it has none).
fn failover_codes(cfg: &ProxyConfig, route: usize) -> &super::txn::Codes {
    static DEFAULT: std::sync::OnceLock<super::txn::Codes> = std::sync::OnceLock::new();
    cfg.routes
        .routes
        .get(route)
        .and_then(|r| r.failover.as_ref())
        .map_or_else(
            || DEFAULT.get_or_init(super::txn::Codes::default),
            |f| &f.codes,
        )
}

fn branch_bytes(b: &[u8; TXN_BRANCH_LEN]) -> arrayvec::ArrayVec<u8, MAX_BRANCH_LEN> {
    let mut v = arrayvec::ArrayVec::new();
    let _ = v.try_extend_from_slice(b);
    v
}

/// Counts a failover away from branch `n`'s destination.
fn count_failover(st: &Stored, n: usize) {
    if let (Some(p), Some((pick, _))) = (&st.plane, st.targets.get(n)) {
        p.count_failover(*pick);
    }
}

/// `ds_mark_dst` with the route's letters for branch `n`'s destination; the state change it
/// caused, if any (health raises the event: log line, counter, `event_hook`).
fn mark(st: &Stored, n: usize, cfg: &ProxyConfig) -> Option<Marked> {
    let letters = cfg
        .routes
        .routes
        .get(st.route)
        .and_then(|r| r.failover.as_ref())
        .and_then(|f| f.mark.as_deref())?;
    let (p, (pick, _)) = (st.plane.as_ref()?, st.targets.get(n)?);
    match p.snapshot.mark_dst(*pick, Some(letters)) {
        Ok(Some(event)) => Some(Marked {
            event,
            pick: *pick,
            plane: Arc::clone(p),
        }),
        _ => None,
    }
}

/// Forwards the response being handled upstream (without our Via) and keeps it as the last.
fn forward_response(
    st: &mut Stored,
    ctx: &Ctx<'_>,
    sink: &mut impl Sink,
) -> Result<(), OutboxError> {
    let Some(resp) = ctx.response else {
        return Ok(());
    };
    let flow = st.reply_flow;
    let Ok(plan) = edits::response(resp) else {
        return Ok(());
    };
    st.last.clear();
    plan.for_each_slice(|s| st.last.extend_from_slice(s));
    st.last_flow = Some(flow);
    sink.send(&flow, &[&st.last])
}

/// Keeps the response being handled as the best final so far.
fn keep_best(st: &mut Stored, ctx: &Ctx<'_>) -> Result<(), OutboxError> {
    let Some(resp) = ctx.response else {
        return Ok(());
    };
    let Ok(plan) = edits::response(resp) else {
        return Ok(());
    };
    st.best.clear();
    plan.for_each_slice(|s| st.best.extend_from_slice(s));
    st.best_flow = Some(st.reply_flow);
    Ok(())
}

fn forward_best(st: &mut Stored, sink: &mut impl Sink) -> Result<(), OutboxError> {
    let Some(flow) = st.best_flow else {
        return Ok(());
    };
    st.last.clear();
    st.last.extend_from_slice(&st.best);
    st.last_flow = Some(flow);
    sink.send(&flow, &[&st.last])
}

fn resend_last(st: &Stored, sink: &mut impl Sink) -> Result<(), OutboxError> {
    match st.last_flow {
        Some(flow) if !st.last.is_empty() => sink.send(&flow, &[&st.last]),
        _ => Ok(()),
    }
}

/// Writes an ACK or CANCEL for the forwarded request `fwd` into `out`.
fn write_hop(out: &mut Vec<u8>, method: &[u8], fwd: &Message<'_>, to: &[u8]) {
    out.clear();
    let buf = fwd.buf();
    let uri = fwd.request().map_or(&b""[..], |r| r.uri_bytes);
    out.extend_from_slice(method);
    out.push(b' ');
    out.extend_from_slice(uri);
    out.extend_from_slice(b" SIP/2.0\r\n");
    if let Some(v) = fwd.first_header(HeaderKind::Via) {
        out.extend_from_slice(b"Via: ");
        out.extend_from_slice(first_value(v.value.get(buf)));
        out.extend_from_slice(b"\r\n");
    }
    for h in fwd.headers() {
        match h.kind {
            HeaderKind::Route | HeaderKind::From | HeaderKind::CallId => {
                out.extend_from_slice(h.line.get(buf));
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"To: ");
    out.extend_from_slice(to);
    out.extend_from_slice(b"\r\nCSeq: ");
    let _ = std::io::Write::write_fmt(out, format_args!("{}", fwd.cseq().seq));
    out.push(b' ');
    out.extend_from_slice(method);
    out.extend_from_slice(b"\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n");
}

/// The first value of a (possibly comma-separated) Via header value: ours, which we put
/// first on a line of its own.
fn first_value(v: &[u8]) -> &[u8] {
    match v.iter().position(|&b| b == b',') {
        Some(i) => &v[..i],
        None => v,
    }
}
