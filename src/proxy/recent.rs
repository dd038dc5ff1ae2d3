//! Recently forwarded INVITEs, so that their CANCEL and non-2xx ACK reach the same destination
//! even when the algorithm (round robin, weights, random) would pick another one.
//!
//! A stateless proxy keeps no transactions; this table is the smallest state that makes
//! CANCEL work with every algorithm: a fixed, direct-mapped array keyed by the outgoing branch
//! (identical for an INVITE, its CANCEL and its non-2xx ACK, see `branch.rs`), each entry valid
//! for 64·T1 = 32 s (the INVITE transaction's lifetime, RFC 3261 §17.1.1.2). A collision simply
//! overwrites: the CANCEL then follows the algorithm, as it would in Kamailio without state.
//! Per worker, no lock; `SO_REUSEPORT` sends one client's datagrams to one worker.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::dispatch::Pick;

/// How long an entry is valid.
pub const LIFETIME: Duration = Duration::from_secs(32);
const SLOTS: usize = 4096;

#[derive(Clone, Copy)]
struct Entry {
    key: u64,
    until: Instant,
    pick: Pick,
    addr: SocketAddr,
}

/// The table (allocated once, at worker start).
pub struct Recent {
    slots: Box<[Option<Entry>]>,
}

impl Recent {
    pub fn new() -> Recent {
        Recent {
            slots: vec![None; SLOTS].into_boxed_slice(),
        }
    }

    pub fn insert(&mut self, key: u64, now: Instant, pick: Pick, addr: SocketAddr) {
        self.slots[(key as usize) % SLOTS] = Some(Entry {
            key,
            until: now + LIFETIME,
            pick,
            addr,
        });
    }

    pub fn get(&self, key: u64, now: Instant) -> Option<(Pick, SocketAddr)> {
        match self.slots[(key as usize) % SLOTS] {
            Some(e) if e.key == key && now < e.until => Some((e.pick, e.addr)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{DestIdx, SetId};

    #[test]
    fn entries_expire_and_collide_safely() {
        let mut r = Recent::new();
        let t0 = Instant::now();
        let pick = Pick {
            set: SetId(1),
            set_pos: 0,
            idx: DestIdx(2),
        };
        let addr: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        r.insert(42, t0, pick, addr);
        assert_eq!(r.get(42, t0 + Duration::from_secs(31)), Some((pick, addr)));
        assert_eq!(r.get(42, t0 + LIFETIME), None);
        assert_eq!(r.get(42 + SLOTS as u64, t0), None, "same slot, other key");
        r.insert(42 + SLOTS as u64, t0, pick, addr);
        assert_eq!(r.get(42, t0), None, "overwritten");
    }
}
