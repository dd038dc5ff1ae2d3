//! The in-memory backend, for tests and benchmarks: datagrams are injected, transmits are
//! collected (copied out of the receive buffer at collection, which is fine here).
//!
//! It follows the same contract as the socket backends (borrowed datagrams, the same
//! [`Outbox`], the tick after the datagrams) and, once warmed up, allocates nothing: injected
//! and transmitted bytes live in buffers recycled through a spare list. It never waits: a batch
//! with nothing injected returns at once, whatever the timeout.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use super::txq::{Outbox, TxQueue};
use super::{Backend, BatchStats, Datagram, Datapath, Handler, NetConfig, SocketIdx};

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
        }
    }

    /// Queues a datagram from `peer` as if received on socket `local`. One longer than
    /// `max_datagram` is dropped as truncated when its batch runs.
    pub fn inject(&mut self, local: SocketIdx, peer: SocketAddr, data: &[u8]) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(data);
        self.inbox.push_back(Inbound {
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

    fn run_batch(
        &mut self,
        _timeout: Option<Duration>,
        handler: &mut Handler<'_>,
    ) -> io::Result<BatchStats> {
        let mut stats = BatchStats::default();
        while self.current.len() < self.batch {
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
        for d in &self.current {
            let dg = Datagram {
                data: &d.data,
                peer: d.peer,
                local: d.local,
            };
            stats.received += 1;
            handler(
                Some(&dg),
                &mut Outbox::new(&mut self.tx, &self.locals, &d.data),
            );
        }
        handler(None, &mut Outbox::new(&mut self.tx, &self.locals, &[]));
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
        let s = m
            .run_batch(None, &mut |d, ob| {
                if let Some(d) = d {
                    ob.push(d.local, d.peer, &[b">", d.data]).unwrap();
                }
            })
            .unwrap();
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
