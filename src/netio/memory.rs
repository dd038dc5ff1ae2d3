//! The in-memory backend, for tests and benchmarks: datagrams are injected, transmits are
//! collected (copied out of the receive buffer at collection, which is fine here).
//!
//! It follows the same contract as the socket backends (borrowed datagrams, the same
//! [`Outbox`], the tick after the datagrams, one `now` per batch read after the wait) and, once
//! warmed up, allocates nothing: injected and transmitted bytes live in buffers recycled
//! through a spare list.
//!
//! Time: on the real clock (the default) it never waits — a batch with nothing injected returns
//! at once, whatever the wait asked for. On a virtual clock
//! ([`MemoryDatapath::with_virtual_clock`]) datagrams arrive at given instants
//! ([`MemoryDatapath::inject_after`]) and a batch "waits" by moving the clock forward to the
//! first arrival or the handler's deadline (capped by `max_wait`), so tests drive timers through
//! the same loop as the daemon without sleeping.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::txq::{Outbox, TxQueue};
use super::{Backend, BatchStats, Datagram, Datapath, Handler, NetConfig, SocketIdx, wait_for};

/// One datagram a handler queued, as the memory backend collected it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    /// The socket it was sent from.
    pub from: SocketIdx,
    /// Where it was sent.
    pub to: SocketAddr,
    /// Its bytes, gathered from the pieces.
    pub data: Vec<u8>,
}

#[derive(Debug)]
struct Inbound {
    /// When it arrives (virtual clock); `None`: already there.
    at: Option<Instant>,
    local: SocketIdx,
    peer: SocketAddr,
    data: Vec<u8>,
}

/// In-memory datapath: [`MemoryDatapath::inject`] datagrams, run batches, read
/// [`MemoryDatapath::transmits`].
pub struct MemoryDatapath {
    locals: Vec<SocketAddr>,
    batch: usize,
    max_datagram: usize,
    inbox: VecDeque<Inbound>,
    current: Vec<Inbound>,
    tx: TxQueue,
    sent: Vec<Transmit>,
    spare: Vec<Vec<u8>>,
    /// The virtual clock, when one is used.
    clock: Option<Instant>,
}

impl MemoryDatapath {
    /// A datapath whose sockets claim the addresses `locals` (nothing is bound).
    pub fn new(locals: &[SocketAddr], cfg: &NetConfig) -> MemoryDatapath {
        let batch = cfg.batch.max(1);
        MemoryDatapath {
            locals: locals.to_vec(),
            batch,
            max_datagram: cfg.max_datagram,
            inbox: VecDeque::with_capacity(batch),
            current: Vec::with_capacity(batch),
            tx: TxQueue::new(cfg.transmits, cfg.header_capacity),
            sent: Vec::with_capacity(cfg.transmits),
            spare: Vec::new(),
            clock: None,
        }
    }

    /// Runs on a virtual clock starting at `start` (see the module documentation).
    pub fn with_virtual_clock(mut self, start: Instant) -> MemoryDatapath {
        self.clock = Some(start);
        self
    }

    /// The virtual clock's current time (`None` on the real clock).
    pub fn virtual_now(&self) -> Option<Instant> {
        self.clock
    }

    /// Queues a datagram that arrives `delay` after the virtual clock's current time (at once
    /// on the real clock). Arrivals are taken in injection order.
    pub fn inject_after(
        &mut self,
        delay: Duration,
        local: SocketIdx,
        peer: SocketAddr,
        data: &[u8],
    ) {
        self.inject(local, peer, data);
        let at = self.clock.map(|c| c + delay);
        if let Some(last) = self.inbox.back_mut() {
            last.at = at;
        }
    }

    /// Moves the virtual clock as a socket backend's wait would: to the first arrival or the
    /// end of the wait, whichever comes first (never when something is already there).
    fn advance(&mut self, wait: Option<Duration>) {
        let Some(now) = self.clock else { return };
        let next = self.inbox.front().map(|d| d.at.unwrap_or(now));
        let woken = match (next, wait) {
            (Some(at), _) if at <= now => now,
            (Some(at), Some(w)) => at.min(now + w),
            (Some(at), None) => at,
            (None, Some(w)) => now + w,
            (None, None) => now,
        };
        self.clock = Some(woken);
    }

    /// Queues a datagram from `peer` as if received on socket `local`. One longer than
    /// `max_datagram` is dropped as truncated when its batch runs.
    pub fn inject(&mut self, local: SocketIdx, peer: SocketAddr, data: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.inbox.push_back(Inbound {
            at: None,
            local,
            peer,
            data: buf,
        });
    }

    /// Injected datagrams not yet handled.
    pub fn pending(&self) -> usize {
        self.inbox.len()
    }

    /// Transmits collected since the last [`MemoryDatapath::clear_transmits`], in queue order.
    pub fn transmits(&self) -> &[Transmit] {
        &self.sent
    }

    /// Forgets the collected transmits, keeping their buffers for reuse (no allocation).
    pub fn clear_transmits(&mut self) {
        self.spare.extend(self.sent.drain(..).map(|t| t.data));
    }

    /// Takes the collected transmits (allocates; for tests).
    pub fn take_transmits(&mut self) -> Vec<Transmit> {
        std::mem::take(&mut self.sent)
    }
}

impl Datapath for MemoryDatapath {
    fn kind(&self) -> Backend {
        Backend::Memory
    }

    fn local_addrs(&self) -> &[SocketAddr] {
        &self.locals
    }

    fn steer(&self, _: &super::Steering) -> io::Result<()> {
        Ok(())
    }

    fn run_batch(
        &mut self,
        max_wait: Option<Duration>,
        handler: &mut dyn Handler,
    ) -> io::Result<BatchStats> {
        let mut stats = BatchStats::default();
        let start = self.clock.unwrap_or_else(Instant::now);
        self.advance(wait_for(max_wait, handler.next_deadline(), start));
        let now = self.clock.unwrap_or_else(Instant::now);
        while self.current.len() < self.batch {
            if self
                .inbox
                .front()
                .is_some_and(|d| d.at.is_some_and(|at| at > now))
            {
                break;
            }
            let Some(d) = self.inbox.pop_front() else {
                break;
            };
            if d.data.len() > self.max_datagram {
                stats.truncated += 1;
                self.spare.push(d.data);
                continue;
            }
            self.current.push(d);
        }
        // Behind: a full batch was taken and more is ready (one lane: everything is normal).
        let backlog = self.current.len() >= self.batch
            && self
                .inbox
                .front()
                .is_some_and(|d| d.at.is_none_or(|at| at <= now));
        stats.backlog = u64::from(backlog);
        handler.begin(now, super::Load { backlog });
        for d in &self.current {
            let dg = Datagram {
                data: &d.data,
                peer: d.peer,
                local: d.local,
                lane: super::Lane::Normal,
            };
            stats.received += 1;
            handler.datagram(
                now,
                &dg,
                &mut Outbox::new(&mut self.tx, &self.locals, &d.data),
            );
        }
        handler.tick(now, &mut Outbox::new(&mut self.tx, &self.locals, &[]));
        let current = &self.current;
        for i in 0..self.tx.len() {
            let mut data = self.spare.pop().unwrap_or_default();
            self.tx.gather_with(i, &mut data, |addr, len| {
                // A referenced piece lies inside one of this batch's datagrams (checked when it
                // was pushed), which are still alive in `current`.
                current
                    .iter()
                    .find_map(|d| {
                        let start = d.data.as_ptr() as usize;
                        (addr >= start && addr + len <= start + d.data.len())
                            .then(|| &d.data[addr - start..addr - start + len])
                    })
                    .expect("referenced piece inside a datagram of this batch")
            });
            let m = self.tx.meta(i);
            self.sent.push(Transmit {
                from: m.from,
                to: m.to,
                data,
            });
            stats.sent += 1;
        }
        stats.referenced_bytes = self.tx.referenced;
        stats.copied_bytes = self.tx.copied;
        self.tx.clear();
        self.spare.extend(self.current.drain(..).map(|d| d.data));
        Ok(stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_with_a_prefix_and_recycles_buffers() {
        let a: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let peer: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let mut m = MemoryDatapath::new(&[a], &NetConfig::default());
        m.inject(SocketIdx(0), peer, b"hello");
        let mut h = super::super::handler_fn(
            |_, d, ob| ob.push(d.local, d.peer, &[b">", d.data]).unwrap(),
            |_, _| {},
        );
        let s = m.run_batch(None, &mut h).unwrap();
        assert_eq!(
            (s.received, s.sent, s.referenced_bytes, s.copied_bytes),
            (1, 1, 5, 1)
        );
        assert_eq!(m.transmits()[0].data, b">hello");
        assert_eq!(m.transmits()[0].to, peer);
        m.clear_transmits();
        assert!(m.transmits().is_empty());
        assert_eq!(m.pending(), 0);
    }
}
