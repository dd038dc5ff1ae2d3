//! The client transaction of one branch (RFC 3261 §17.1), over UDP, sans-IO.
//!
//! INVITE (§17.1.1): *Calling* retransmits at Timer A (T1, doubling) until a response; a
//! provisional moves to *Proceeding* (retransmissions stop); a 2xx ends the transaction (the
//! ACK is end to end); a 300–699 moves to *Completed*, where retransmitted finals are answered
//! with the same ACK until Timer D. Non-INVITE (§17.1.2): *Trying* retransmits at Timer E (T1,
//! doubling up to T2), *Proceeding* at T2; a final moves to *Completed* until Timer K.
//!
//! Timeouts follow Kamailio tm rather than RFC 3261's fixed 64·T1: `fr_timer` bounds the wait
//! for the first response (Timer B / F), and for an INVITE each provisional restarts the bound
//! with `fr_inv_timer` (`restart_fr_on_each_reply`). Timers D and K use tm's `wt_timer`.

use std::time::Instant;

use super::Timers;

/// Where a client transaction is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientState {
    /// Request sent, no response yet (INVITE: *Calling*; non-INVITE: *Trying*).
    Calling,
    /// A provisional arrived.
    Proceeding,
    /// A final arrived; retransmissions of it are absorbed until the wait timer.
    Completed,
    /// Over.
    Terminated,
}

/// What a response meant to the transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// A provisional (1xx) while waiting: pass it on (except 100).
    Provisional,
    /// The first final response.
    Final,
    /// A retransmission of the final (INVITE non-2xx: send the same ACK again).
    Retransmitted,
    /// Nothing the transaction expects (late, after termination): drop it.
    Stray,
}

/// What a due timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTimer {
    /// Timer A / E: send the request again.
    Retransmit,
    /// Timer B / F (`fr_timer`, `fr_inv_timer`): no final response in time — a local 408.
    Timeout,
    /// Timer D / K: the transaction is over.
    Terminated,
}

/// One client transaction.
#[derive(Debug, Clone)]
pub struct Client {
    invite: bool,
    state: ClientState,
    provisional: bool,
    retransmit_at: Option<Instant>,
    interval: std::time::Duration,
    timeout_at: Option<Instant>,
    wait_until: Option<Instant>,
}

impl Client {
    /// A transaction whose request was just sent at `now`.
    pub fn start(invite: bool, now: Instant, t: &Timers) -> Client {
        Client {
            invite,
            state: ClientState::Calling,
            provisional: false,
            retransmit_at: Some(now + t.t1),
            interval: t.t1,
            timeout_at: Some(now + t.fr_timer),
            wait_until: None,
        }
    }

    /// The state.
    pub fn state(&self) -> ClientState {
        self.state
    }

    /// Whether a provisional response was received (a CANCEL may be sent, RFC 3261 §9.1).
    pub fn had_provisional(&self) -> bool {
        self.provisional
    }

    /// Whether a final response (or a timeout) ended the waiting.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, ClientState::Completed | ClientState::Terminated)
    }

    /// Feeds a response with status `code` received at `now`.
    pub fn on_response(&mut self, code: u16, now: Instant, t: &Timers) -> Received {
        match self.state {
            ClientState::Calling | ClientState::Proceeding if code < 200 => {
                self.state = ClientState::Proceeding;
                self.provisional = true;
                if self.invite {
                    self.retransmit_at = None;
                    self.timeout_at = Some(now + t.fr_inv_timer);
                } else {
                    self.interval = t.t2;
                    self.retransmit_at = Some(now + t.t2);
                }
                Received::Provisional
            }
            ClientState::Calling | ClientState::Proceeding => {
                self.retransmit_at = None;
                self.timeout_at = None;
                if self.invite && code < 300 {
                    self.state = ClientState::Terminated;
                } else {
                    self.state = ClientState::Completed;
                    self.wait_until = Some(now + t.wt_timer);
                }
                Received::Final
            }
            ClientState::Completed if code >= 200 => Received::Retransmitted,
            _ => Received::Stray,
        }
    }

    /// Ends the transaction at once (its branch was given up).
    pub fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.wait_until = None;
    }

    /// The next instant a timer is due.
    pub fn next_timer(&self) -> Option<Instant> {
        [self.retransmit_at, self.timeout_at, self.wait_until]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs the timer due at `now`, if any (one per call: call again while it returns some).
    pub fn on_timer(&mut self, now: Instant, t: &Timers) -> Option<ClientTimer> {
        if self.wait_until.is_some_and(|w| now >= w) {
            self.terminate();
            return Some(ClientTimer::Terminated);
        }
        if self.timeout_at.is_some_and(|w| now >= w) {
            self.terminate();
            return Some(ClientTimer::Timeout);
        }
        if self.retransmit_at.is_some_and(|w| now >= w) {
            self.interval = if self.invite {
                self.interval * 2
            } else {
                (self.interval * 2).min(t.t2)
            };
            self.retransmit_at = Some(now + self.interval);
            return Some(ClientTimer::Retransmit);
        }
        None
    }
}
