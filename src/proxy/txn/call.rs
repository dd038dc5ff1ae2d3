//! One stateful request as RFC 3261 §16 proxies it: the server transaction facing the
//! caller, the client transactions of its branches, serial failover or parallel forking, and
//! the §16.7 response context — sans-IO. Every input returns the [`Action`]s the executor must
//! perform; nothing here touches bytes, sockets or the clock.
//!
//! Serial failover (Kamailio's failure-route idiom, reference §15): one branch at a time; a
//! final response matching `failover_codes`, or a local timeout (408), starts a branch to the
//! next entry of the failover list; the caller sees the provisionals of the live branch only.
//! Parallel forking (alg 12): every branch at once; the first 2xx is forwarded and the others
//! are cancelled; a 6xx ends the search. When every branch has ended without a 2xx, the best
//! final response (§16.7 step 6) goes upstream — 503 as 500, 408 when nothing answered.

use std::time::Instant;

use arrayvec::ArrayVec;

use super::client::{Client, ClientTimer, Received};
use super::server::{Server, ServerTimer};
use super::{Codes, Timers};

/// Most branches one request can have (the failover list's size).
pub const MAX_BRANCHES: usize = 16;

/// How the branches of a request are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// One after another, on failure (`failover`).
    Serial,
    /// All at once (algorithm 12).
    Parallel,
}

/// What the executor must do. Branch numbers index the failover list given to
/// [`Call::start`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Send `100 Trying` upstream: an INVITE's server transaction when no response went
    /// upstream within 200 ms (RFC 3261 §16.2, §17.2.1).
    Trying,
    /// Send branch `n`'s request (first transmission or Timer A/E retransmission).
    SendRequest(usize),
    /// Send (again) the ACK for branch `n`'s non-2xx final response, hop by hop.
    SendAck(usize),
    /// Send a CANCEL on branch `n`.
    SendCancel(usize),
    /// Forward the response just received upstream (and keep it as the last response sent).
    ForwardResponse,
    /// Keep the final response just received as the best so far.
    KeepBest,
    /// Send the kept best final response upstream.
    ForwardBest,
    /// Send a local response with this code upstream (408, 487, 500).
    Reply(u16),
    /// Send the last response sent upstream again (server retransmission).
    ResendLast,
    /// Branch `n` failed with a failover code: mark its destination (`ds_mark_dst`).
    Mark(usize),
    /// The request was answered with a 2xx (call load: confirm).
    Confirmed,
    /// The request ended without a 2xx (call load: unset).
    Failed,
}

/// The actions of one input (a handful at most).
pub type Actions = ArrayVec<Action, { MAX_BRANCHES + 4 }>;

#[derive(Debug, Clone)]
struct Branch {
    client: Client,
    /// Send a CANCEL as soon as a provisional arrives (RFC 3261 §9.1).
    cancel_pending: bool,
    cancelled: bool,
}

/// A stateful request in flight.
#[derive(Debug, Clone)]
pub struct Call {
    invite: bool,
    fork: Fork,
    server: Server,
    branches: ArrayVec<Branch, MAX_BRANCHES>,
    /// Entries in the failover list.
    list_len: usize,
    /// The best final response so far: its code, and whether it was received (kept by the
    /// executor) rather than a local timeout (408).
    best: Option<(u16, bool)>,
    cancelled: bool,
}

impl Call {
    /// Starts a request received at `now` with a failover list of `list_len` entries (at
    /// least 1; capped at [`MAX_BRANCHES`]).
    pub fn start(
        invite: bool,
        fork: Fork,
        list_len: usize,
        now: Instant,
        t: &Timers,
    ) -> (Call, Actions) {
        let mut c = Call {
            invite,
            fork,
            server: Server::start(invite, now),
            branches: ArrayVec::new(),
            list_len: list_len.clamp(1, MAX_BRANCHES),
            best: None,
            cancelled: false,
        };
        let mut out = Actions::new();
        let first = if fork == Fork::Parallel {
            c.list_len
        } else {
            1
        };
        for _ in 0..first {
            c.open_branch(now, t, &mut out);
        }
        (c, out)
    }

    fn open_branch(&mut self, now: Instant, t: &Timers, out: &mut Actions) {
        let n = self.branches.len();
        self.branches.push(Branch {
            client: Client::start(self.invite, now, t),
            cancel_pending: false,
            cancelled: false,
        });
        out.push(Action::SendRequest(n));
    }

    /// Branches opened so far.
    pub fn branches(&self) -> usize {
        self.branches.len()
    }

    /// Whether the caller has its final response.
    pub fn answered(&self) -> bool {
        self.server.answered()
    }

    /// Whether everything is over (the slot can be freed).
    pub fn is_over(&self) -> bool {
        self.server.state() == super::server::ServerState::Terminated
            && self
                .branches
                .iter()
                .all(|b| b.client.state() == super::client::ClientState::Terminated)
    }

    /// The next instant a timer of this request is due.
    pub fn next_timer(&self) -> Option<Instant> {
        self.branches
            .iter()
            .filter_map(|b| b.client.next_timer())
            .chain(self.server.next_timer())
            .min()
    }

    /// A response with `code` arrived on branch `n`.
    pub fn on_response(
        &mut self,
        n: usize,
        code: u16,
        now: Instant,
        t: &Timers,
        failover: &Codes,
    ) -> Actions {
        let mut out = Actions::new();
        let Some(b) = self.branches.get_mut(n) else {
            return out;
        };
        match b.client.on_response(code, now, t) {
            // A 2xx retransmission after the branch ended: end to end (RFC 6026).
            Received::Stray if self.invite && (200..300).contains(&code) => {
                out.push(Action::ForwardResponse);
            }
            Received::Stray => {}
            Received::Retransmitted => {
                if self.invite && code >= 300 {
                    out.push(Action::SendAck(n));
                }
            }
            Received::Provisional => {
                if b.cancel_pending {
                    b.cancel_pending = false;
                    b.cancelled = true;
                    out.push(Action::SendCancel(n));
                }
                if code > 100 && !self.server.answered() && !self.cancelled {
                    self.server.sent_provisional();
                    out.push(Action::ForwardResponse);
                }
            }
            Received::Final if code < 300 => {
                if !self.server.answered() {
                    out.push(Action::ForwardResponse);
                    out.push(Action::Confirmed);
                    self.server.sent_final(code, now, t);
                    self.cancel_others(n, &mut out);
                } else if self.invite {
                    // A second 2xx (another fork answered too): end to end, pass it on.
                    out.push(Action::ForwardResponse);
                }
            }
            Received::Final => {
                if self.invite {
                    out.push(Action::SendAck(n));
                }
                self.branch_failed(n, code, true, now, t, failover, &mut out);
            }
        }
        out
    }

    /// Branch `n` ended with `code` (received, or 408 for a local timeout).
    #[allow(clippy::too_many_arguments)] // one event's inputs
    fn branch_failed(
        &mut self,
        n: usize,
        code: u16,
        received: bool,
        now: Instant,
        t: &Timers,
        failover: &Codes,
        out: &mut Actions,
    ) {
        if self.server.answered() {
            return;
        }
        if better(code, self.best.map(|b| b.0)) {
            self.best = Some((code, received));
            if received {
                out.push(Action::KeepBest);
            }
        }
        let retry = self.fork == Fork::Serial
            && !self.cancelled
            && failover.matches(code)
            && self.branches.len() < self.list_len;
        if failover.matches(code) && !self.cancelled {
            out.push(Action::Mark(n));
        }
        if retry {
            self.open_branch(now, t, out);
            return;
        }
        if code >= 600 && self.fork == Fork::Parallel {
            self.cancel_others(n, out);
        }
        if self.branches.iter().all(|b| b.client.is_finished()) {
            self.finish(now, t, out);
        }
    }

    /// Every branch ended without a 2xx: the best response upstream.
    fn finish(&mut self, now: Instant, t: &Timers, out: &mut Actions) {
        let code = match self.best {
            _ if self.cancelled => {
                if self.best == Some((487, true)) {
                    out.push(Action::ForwardBest);
                } else {
                    out.push(Action::Reply(487));
                }
                487
            }
            // A proxy does not pass a 503 upstream (RFC 3261 §16.7 step 6; tm's remap).
            Some((503, _)) => {
                out.push(Action::Reply(500));
                500
            }
            Some((c, true)) => {
                out.push(Action::ForwardBest);
                c
            }
            Some((c, false)) => {
                out.push(Action::Reply(c));
                c
            }
            None => {
                out.push(Action::Reply(408));
                408
            }
        };
        out.push(Action::Failed);
        self.server.sent_final(code, now, t);
    }

    fn cancel_others(&mut self, except: usize, out: &mut Actions) {
        for (i, b) in self.branches.iter_mut().enumerate() {
            if i == except || b.client.is_finished() || b.cancelled {
                continue;
            }
            if !self.invite {
                continue; // RFC 3261 §9.1: only INVITE is cancelled
            }
            if b.client.had_provisional() {
                b.cancelled = true;
                out.push(Action::SendCancel(i));
            } else {
                b.cancel_pending = true;
            }
        }
    }

    /// The caller's CANCEL for this INVITE (answer it 200 separately): cancels every live
    /// branch; the caller gets 487 once they end.
    pub fn on_cancel(&mut self, now: Instant, t: &Timers) -> Actions {
        let mut out = Actions::new();
        if self.server.answered() || !self.invite {
            return out;
        }
        self.cancelled = true;
        self.cancel_others(usize::MAX, &mut out);
        if self.branches.iter().all(|b| b.client.is_finished()) {
            self.finish(now, t, &mut out);
        }
        out
    }

    /// A retransmission of the caller's request arrived.
    pub fn on_retransmission(&self) -> Actions {
        let mut out = Actions::new();
        if self.server.on_retransmission() {
            out.push(Action::ResendLast);
        }
        out
    }

    /// The caller's ACK for our non-2xx final: true when absorbed here.
    pub fn on_ack(&mut self, now: Instant, t: &Timers) -> bool {
        self.server.on_ack(now, t)
    }

    /// Runs every timer due at `now`.
    pub fn on_timer(&mut self, now: Instant, t: &Timers, failover: &Codes) -> Actions {
        let mut out = Actions::new();
        for n in 0..self.branches.len() {
            while let Some(ev) = self.branches[n].client.on_timer(now, t) {
                match ev {
                    ClientTimer::Retransmit => out.push(Action::SendRequest(n)),
                    ClientTimer::Terminated => {}
                    ClientTimer::Timeout => {
                        let b = &mut self.branches[n];
                        if self.invite && b.client.had_provisional() && !b.cancelled {
                            b.cancelled = true;
                            out.push(Action::SendCancel(n));
                        }
                        self.branch_failed(n, 408, false, now, t, failover, &mut out);
                    }
                }
                if out.is_full() {
                    return out;
                }
            }
        }
        while let Some(ev) = self.server.on_timer(now, t) {
            match ev {
                ServerTimer::Retransmit => out.push(Action::ResendLast),
                ServerTimer::Trying => out.push(Action::Trying),
                ServerTimer::AckTimeout | ServerTimer::Terminated => {}
            }
        }
        out
    }
}

/// §16.7 step 6: whether a final response `new` is better than the best so far: any 6xx over
/// other classes, else the lowest class; within 4xx, 401/407/415/420/484 (which the caller can
/// act on) over the others; otherwise the first one received stays.
pub fn better(new: u16, best: Option<u16>) -> bool {
    let Some(old) = best else { return true };
    let rank = |c: u16| if c >= 600 { 0 } else { c / 100 };
    let preferred = |c: u16| matches!(c, 401 | 407 | 415 | 420 | 484);
    match rank(new).cmp(&rank(old)) {
        std::cmp::Ordering::Less => true,
        std::cmp::Ordering::Greater => false,
        std::cmp::Ordering::Equal => new / 100 == 4 && preferred(new) && !preferred(old),
    }
}
