//! Verdicts and counters: what happened to each message, and the plain per-worker counters
//! every verdict bumps in one place ([`Counters::count`]).

use sipdisp_parser::Error;

use super::branch::ProbeToken;
use crate::dispatch::Pick;
use crate::netio::{BatchStats, OutboxError, SEND_FAILURES};

/// Why a datagram was dropped without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
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
    /// The sink refused the transmit, for this reason (outbox full, oversized, …).
    SendFailed(OutboxError),
    /// A request that would be answered, but is an ACK (never answered) or the reply does not
    /// fit the reply buffer.
    Unanswerable,
    /// The rewrite plan could not be built (scratch space, malformed routing parts).
    Rewrite,
    /// A response whose top Via has our address and branch format but not our MAC for the
    /// address it would go to: forged, or an old response with an edited Via.
    ForgedVia,
    /// A response to a stateful branch whose transaction is over (it is not relayed on the
    /// strength of its Via alone).
    StaleTransaction,
    /// A request from a source over its `[pike]` rate (flood control), dropped.
    Flood,
    /// A request to a next hop no configuration allows (a Route or Request-URI that is not a
    /// destination nor in `allowed_next_hops`): answered 403 when it can be.
    Forbidden,
}

impl DropReason {
    /// Number of distinct labels ([`DropReason::label`]).
    pub const COUNT: usize = 11;

    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            DropReason::Malformed(_) => "malformed",
            DropReason::KeepAlive => "keepalive",
            DropReason::NotOurVia => "not_our_via",
            DropReason::NoNextHop => "no_next_hop",
            DropReason::SendFailed(_) => "send_failed",
            DropReason::Unanswerable => "unanswerable",
            DropReason::Rewrite => "rewrite",
            DropReason::ForgedVia => "forged_via",
            DropReason::StaleTransaction => "stale_transaction",
            DropReason::Forbidden => "forbidden_next_hop",
            DropReason::Flood => "flood",
        }
    }

    fn index(self) -> usize {
        match self {
            DropReason::Malformed(_) => 0,
            DropReason::KeepAlive => 1,
            DropReason::NotOurVia => 2,
            DropReason::NoNextHop => 3,
            DropReason::SendFailed(_) => 4,
            DropReason::Unanswerable => 5,
            DropReason::Rewrite => 6,
            DropReason::ForgedVia => 7,
            DropReason::StaleTransaction => 8,
            DropReason::Forbidden => 9,
            DropReason::Flood => 10,
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
            "forged_via",
            "stale_transaction",
            "forbidden_next_hop",
            "flood",
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
    Dropped(DropReason),
}

impl Verdict {
    /// Number of distinct labels ([`Verdict::label`]).
    pub const KINDS: usize = 8;

    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        Self::label_of(self.index())
    }

    pub(crate) fn index(&self) -> usize {
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

pub(crate) fn method_index(m: &[u8]) -> usize {
    METHODS[..METHODS.len() - 1]
        .iter()
        .position(|x| x.as_bytes() == m)
        .unwrap_or(METHODS.len() - 1)
}

/// Counters of the transaction-stateful path (routes with `failover`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxnCounters {
    /// Calls (stateful requests) started.
    pub started: u64,
    /// Calls ended and their slot freed (active = started − ended).
    pub ended: u64,
    /// Requests refused with 503 because the transaction table was full.
    pub overload: u64,
    /// CANCELs matched to a call.
    pub cancels: u64,
    /// Caller retransmissions absorbed or answered with the last response.
    pub retransmissions_in: u64,
    /// Requests retransmitted to a destination (Timer A / E).
    pub retransmissions_out: u64,
    /// Failovers to the next destination after a final response matching the codes.
    pub failovers_code: u64,
    /// Failovers after a local timeout (`fr_timer` / `fr_inv_timer`).
    pub failovers_timeout: u64,
    /// Calls that ended with a local 408 (no response from any destination).
    pub timeouts: u64,
    /// Local final responses sent upstream (408, 487, 500).
    pub local_replies: u64,
}

impl TxnCounters {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &TxnCounters) {
        self.started += o.started;
        self.ended += o.ended;
        self.overload += o.overload;
        self.cancels += o.cancels;
        self.retransmissions_in += o.retransmissions_in;
        self.retransmissions_out += o.retransmissions_out;
        self.failovers_code += o.failovers_code;
        self.failovers_timeout += o.failovers_timeout;
        self.timeouts += o.timeouts;
        self.local_replies += o.local_replies;
    }
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
    /// Drops by reason ([`DropReason::label_of`]).
    pub dropped: [u64; DropReason::COUNT],
    /// Matches per route (index = route position).
    pub route_hits: Vec<u64>,
    /// Transmits that failed, by reason ([`SEND_FAILURES`]): refused by the outbox (counted
    /// with the verdict that wanted to send) or by the kernel (from the datapath's batch
    /// statistics, [`Counters::count_io`]).
    pub send_failures: [u64; SEND_FAILURES.len()],
    /// Datagrams longer than the receive buffer, dropped by the datapath.
    pub truncated: u64,
    /// Transaction-stateful proxying.
    pub txn: TxnCounters,
    /// Requests refused because their next hop (a Route, or an in-dialog Request-URI) is no
    /// destination and not in `allowed_next_hops` (answered 403, or dropped for an ACK).
    pub forbidden_next_hop: u64,
    /// Requests for a `sips:` Request-URI refused (no TLS to keep it secure, RFC 3261 §26.2).
    pub sips_refused: u64,
    /// Requests refused by flood control (`[pike]`: dropped, or answered 503).
    pub pike_blocked: u64,
    /// New requests answered 503 + `Retry-After` because the worker was behind
    /// ([`super::Overload`]).
    pub overload_refused: u64,
    /// Batches in which the request lane had more waiting than the batch took.
    pub backlog_batches: u64,
    /// Sources over their `[pike]` rate when last published (a gauge, per worker).
    pub pike_blocked_sources: u64,
    /// Requests with more header lines than the scanner indexes, answered `400 Too Many
    /// Header Lines` (or dropped when no reply can be built).
    pub too_many_headers: u64,
    /// Some of those sources (at most 32 per worker), for `pike.top`.
    pub pike_top: Vec<std::net::IpAddr>,
    /// Algorithm-10 calls removed by the expiry timer (`ds_hash_expire` /
    /// `ds_hash_initexpire`).
    pub calls_expired: u64,
}

impl Counters {
    /// The counters of several workers added up (the flood-control top lists joined).
    pub fn sum(all: &[Counters]) -> Counters {
        let mut total = Counters::default();
        for c in all {
            total.forwarded += c.forwarded;
            total.routed += c.routed;
            total.relayed += c.relayed;
            total.absorbed += c.absorbed;
            total.for_us += c.for_us;
            total.calls_expired += c.calls_expired;
            total.truncated += c.truncated;
            total.txn.add(&c.txn);
            total.forbidden_next_hop += c.forbidden_next_hop;
            total.sips_refused += c.sips_refused;
            total.pike_blocked += c.pike_blocked;
            total.overload_refused += c.overload_refused;
            total.backlog_batches += c.backlog_batches;
            total.too_many_headers += c.too_many_headers;
            total.pike_blocked_sources += c.pike_blocked_sources;
            total.pike_top.extend_from_slice(&c.pike_top);
            for (t, v) in total.send_failures.iter_mut().zip(c.send_failures) {
                *t += v;
            }
            for (t, v) in total.replied.iter_mut().zip(c.replied) {
                *t += v;
            }
            for (t, v) in total.dropped.iter_mut().zip(c.dropped) {
                *t += v;
            }
            for (t, v) in total.requests.iter_mut().zip(&c.requests) {
                t.iter_mut().zip(v).for_each(|(t, v)| *t += v);
            }
            for (t, v) in total.responses.iter_mut().zip(c.responses) {
                *t += v;
            }
            if total.route_hits.len() < c.route_hits.len() {
                total.route_hits.resize(c.route_hits.len(), 0);
            }
            for (t, v) in total.route_hits.iter_mut().zip(&c.route_hits) {
                *t += v;
            }
        }
        total
    }

    /// Adds what the datapath counted in one batch (kernel send refusals, truncations).
    pub fn count_io(&mut self, io: &BatchStats) {
        self.send_failures[SEND_FAILURES.len() - 1] += io.send_errors;
        self.truncated += io.truncated;
        self.backlog_batches += io.backlog;
    }

    /// Counts one message: its verdict, and its method and verdict (request) or its class
    /// (response).
    pub(crate) fn count(&mut self, v: &Verdict, kind: Option<Result<usize, usize>>) {
        if let Verdict::Dropped(DropReason::SendFailed(e)) = v {
            self.send_failures[e.index()] += 1;
        }
        match kind {
            Some(Ok(m)) => self.requests[m][v.index()] += 1,
            Some(Err(class)) => self.responses[class] += 1,
            None => {}
        }
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
