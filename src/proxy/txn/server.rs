//! The server transaction facing the caller (RFC 3261 §17.2, RFC 6026), over UDP, sans-IO.
//!
//! INVITE (§17.2.1): *Proceeding* answers a retransmitted INVITE with the last provisional;
//! a 300–699 sent moves to *Completed*, which retransmits it at Timer G (T1 doubling, T2 cap)
//! until the ACK (*Confirmed*, absorbing ACKs until Timer I) or Timer H (64·T1) gives up; a 2xx
//! sent moves to *Accepted* (RFC 6026): retransmitted INVITEs are absorbed until Timer L
//! (tm's `wt_timer`; RFC 6026 says 64·T1) while the 2xx and its ACK travel end to end. Non-INVITE (§17.2.2): a final sent
//! moves to *Completed*, which answers retransmissions with it until Timer J.

use std::time::{Duration, Instant};

use super::Timers;

/// Where a server transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerState {
    /// No final response sent yet (*Trying* / *Proceeding*).
    Proceeding,
    /// A non-2xx final (INVITE) or any final (non-INVITE) was sent.
    Completed,
    /// INVITE: the ACK for the non-2xx final arrived.
    Confirmed,
    /// INVITE: a 2xx was sent (RFC 6026).
    Accepted,
    /// Over.
    Terminated,
}

/// How long an INVITE's server transaction waits for the backend's own response before it
/// sends `100 Trying` itself (RFC 3261 §17.2.1: unless the TU responds within 200 ms).
pub const TRYING_DELAY: Duration = Duration::from_millis(200);

/// What a due timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerTimer {
    /// Nothing went upstream within [`TRYING_DELAY`]: send `100 Trying`.
    Trying,
    /// Timer G: send the final response again.
    Retransmit,
    /// Timer H: no ACK came (the transaction ends anyway).
    AckTimeout,
    /// Timer I / J / L: the transaction is over.
    Terminated,
}

/// One server transaction.
#[derive(Debug, Clone)]
pub struct Server {
    invite: bool,
    state: ServerState,
    retransmit_at: Option<Instant>,
    interval: Duration,
    until: Option<Instant>,
    trying_at: Option<Instant>,
}

impl Server {
    /// A transaction for a request received at `now` (an INVITE's `100 Trying` is due at
    /// `now +` [`TRYING_DELAY`] unless a response goes upstream first).
    pub fn start(invite: bool, now: Instant) -> Server {
        Server {
            invite,
            state: ServerState::Proceeding,
            retransmit_at: None,
            interval: Duration::ZERO,
            until: None,
            trying_at: invite.then_some(now + TRYING_DELAY),
        }
    }

    /// A provisional response went upstream: no `100 Trying` of our own is needed.
    pub fn sent_provisional(&mut self) {
        self.trying_at = None;
    }

    /// The state.
    pub fn state(&self) -> ServerState {
        self.state
    }

    /// Whether a final response was sent.
    pub fn answered(&self) -> bool {
        self.state != ServerState::Proceeding
    }

    /// A retransmission of the request arrived: true when the last response sent must be sent
    /// again (Proceeding with a provisional, Completed); false to absorb it.
    pub fn on_retransmission(&self) -> bool {
        matches!(self.state, ServerState::Proceeding | ServerState::Completed)
    }

    /// A final response with status `code` was sent at `now`.
    pub fn sent_final(&mut self, code: u16, now: Instant, t: &Timers) {
        self.trying_at = None;
        if self.state != ServerState::Proceeding {
            return;
        }
        if self.invite && code < 300 {
            // RFC 6026 Timer L is 64·T1; tm keeps the transaction for its wait timer.
            self.state = ServerState::Accepted;
            self.until = Some(now + t.wt_timer);
        } else if self.invite {
            self.state = ServerState::Completed;
            self.interval = t.t1;
            self.retransmit_at = Some(now + t.t1);
            self.until = Some(now + 64 * t.t1);
        } else {
            self.state = ServerState::Completed;
            self.until = Some(now + t.wt_timer);
        }
    }

    /// The ACK for an INVITE's non-2xx final arrived: true when it belongs here (absorb it).
    pub fn on_ack(&mut self, now: Instant, t: &Timers) -> bool {
        match self.state {
            ServerState::Completed if self.invite => {
                self.state = ServerState::Confirmed;
                self.retransmit_at = None;
                self.until = Some(now + t.t4);
                true
            }
            ServerState::Confirmed => true,
            _ => false,
        }
    }

    /// The next instant a timer is due.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.retransmit_at, self.until, self.trying_at]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timer due at `now`, if any (one per call).
    pub fn on_timer(&mut self, now: Instant, t: &Timers) -> Option<ServerTimer> {
        if self.trying_at.is_some_and(|at| now >= at) {
            self.trying_at = None;
            return Some(ServerTimer::Trying);
        }
        if self.until.is_some_and(|u| now >= u) {
            let h = self.state == ServerState::Completed && self.invite;
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.until = None;
            return Some(if h {
                ServerTimer::AckTimeout
            } else {
                ServerTimer::Terminated
            });
        }
        if self.retransmit_at.is_some_and(|r| now >= r) {
            self.interval = (self.interval * 2).min(t.t2);
            self.retransmit_at = Some(now + self.interval);
            return Some(ServerTimer::Retransmit);
        }
        None
    }
}
