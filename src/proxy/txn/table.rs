//! Where stateful requests live while they are in flight: a fixed number of slots
//! (`max_transactions`, sized at start), split into shards behind one mutex each.
//!
//! Any worker can receive any message of a call (the kernel's `SO_REUSEPORT` hash picks the
//! worker by 4-tuple, and the caller and the backends are different 4-tuples), so the table is
//! shared: a response names its slot in our Via branch ([`Slot`], checked by a generation
//! number so a reused slot is never confused with its previous call); a retransmission, CANCEL
//! or ACK from the caller finds its call by a key over the caller's top Via (RFC 3261 §17.2.3),
//! which also picks the shard. The backends keep seeing one SIP address (the listen sockets);
//! no message is handed between threads. Each shard has a timer queue; worker `w` of `n` runs
//! the timers of shards `s` with `s % n == w`, so shards are rarely contended.
//!
//! Timers: one [`Wheel`] per shard (10 ms ticks), one live entry per call.
//!
//! Memory: slots, the key index and the timer queues are allocated at start; each slot's
//! message buffers grow to the largest message they held and are then reused, so a steady
//! load allocates nothing.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use arrayvec::ArrayVec;

use super::call::{Call, MAX_BRANCHES};
use super::wheel::Wheel;
use crate::dispatch::Pick;
use crate::netio::Flow;
use crate::plane::Plane;

/// A call's slot, as carried in our branch: shard, index in the shard, generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Slot {
    /// Shard number.
    pub shard: u32,
    /// Index inside the shard.
    pub index: u32,
    /// Generation of the slot when the call was stored.
    pub generation: u32,
}

/// Everything stored for one stateful request besides its state machines.
#[derive(Debug)]
pub struct Stored {
    /// The request as the caller sent it (to build each branch, local replies, CANCEL, ACK).
    pub request: Vec<u8>,
    /// Where it came from.
    pub client: Flow,
    /// Where its responses go (the source, with the Via's port unless `rport`).
    pub reply_flow: Flow,
    /// The plane it was routed with (picks are valid for this plane only).
    pub plane: Option<Arc<Plane>>,
    /// The failover list: destination and address, in order.
    pub targets: ArrayVec<(Pick, SocketAddr), MAX_BRANCHES>,
    /// The route that made it stateful (index in the route table).
    pub route: usize,
    /// What each branch's request is built from.
    pub forwarding: Option<crate::proxy::edits::StoredForwarding>,
    /// The last response sent upstream, and where (for server retransmissions).
    pub last: Vec<u8>,
    /// Where `last` went.
    pub last_flow: Option<Flow>,
    /// The best final response so far (without our Via), and where it goes.
    pub best: Vec<u8>,
    /// Where `best` goes.
    pub best_flow: Option<Flow>,
}

impl Stored {
    fn new() -> Stored {
        Stored {
            request: Vec::new(),
            client: Flow::udp(
                crate::netio::SocketIdx(0),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ),
            reply_flow: Flow::udp(
                crate::netio::SocketIdx(0),
                SocketAddr::from(([0, 0, 0, 0], 0)),
            ),
            plane: None,
            targets: ArrayVec::new(),
            route: 0,
            forwarding: None,
            last: Vec::new(),
            last_flow: None,
            best: Vec::new(),
            best_flow: None,
        }
    }

    fn clear(&mut self) {
        self.request.clear();
        self.plane = None;
        self.targets.clear();
        self.forwarding = None;
        self.last.clear();
        self.last_flow = None;
        self.best.clear();
        self.best_flow = None;
    }
}

/// One slot: a call and what it stores.
#[derive(Debug)]
pub struct Entry {
    generation: u32,
    key: u64,
    /// The earliest tick queued for this entry and not yet popped.
    scheduled: Option<u64>,
    /// The call (`None`: the slot is free).
    pub call: Option<Call>,
    /// Its stored messages.
    pub stored: Stored,
}

impl Entry {
    fn new() -> Entry {
        Entry {
            generation: 0,
            key: 0,
            scheduled: None,
            call: None,
            stored: Stored::new(),
        }
    }

    /// An entry whose buffers are allocated and touched for typical messages (`[tm]
    /// preallocate`): no page fault or allocation when a call first uses it.
    fn preallocated() -> Box<Entry> {
        let mut e = Box::new(Entry::new());
        for (v, n) in [
            (&mut e.stored.request, PREALLOCATED_REQUEST),
            (&mut e.stored.last, PREALLOCATED_RESPONSE),
            (&mut e.stored.best, PREALLOCATED_RESPONSE),
        ] {
            v.resize(n, 0);
            v.clear();
        }
        e
    }
}

/// Bytes reserved per slot for the caller's request when preallocating.
const PREALLOCATED_REQUEST: usize = 2048;
/// Bytes reserved per slot for each kept response when preallocating.
const PREALLOCATED_RESPONSE: usize = 1024;

/// One shard: its slots, free list, key index and timer queue.
///
/// A slot is one pointer while never used; its [`Entry`] is allocated the first time the slot
/// holds a call and kept (with its buffers) for every later call, so memory follows the peak
/// of concurrent calls rather than `max_transactions`, and a steady load allocates nothing
/// (free slots are reused last-freed first).
#[derive(Debug)]
pub struct Shard {
    entries: Box<[Option<Box<Entry>>]>,
    free: Vec<u32>,
    by_key: HashMap<u64, u32, ahash::RandomState>,
    timers: Wheel,
}

impl Shard {
    /// The entry at `index` if it still holds generation `generation`.
    pub fn get(&mut self, index: u32, generation: u32) -> Option<&mut Entry> {
        self.entries
            .get_mut(index as usize)?
            .as_deref_mut()
            .filter(|e| e.generation == generation && e.call.is_some())
    }

    /// The live call stored under the caller's `key`.
    pub fn find(&mut self, key: u64) -> Option<(u32, &mut Entry)> {
        let i = *self.by_key.get(&key)?;
        Some((i, self.entries[i as usize].as_deref_mut()?))
    }

    /// The generation of the entry at `index`.
    pub fn generation(&self, index: u32) -> u32 {
        self.entries[index as usize]
            .as_ref()
            .map_or(0, |e| e.generation)
    }

    /// Queues a timer for the entry at `index` at `at`, unless one at or before `at` is
    /// queued already (that one re-queues the call when it pops: one live queue entry per
    /// call, so the queue stays near the number of calls).
    pub fn schedule(&mut self, index: u32, at: Instant) {
        let Some(e) = self.entries[index as usize].as_deref_mut() else {
            return;
        };
        let tick = self.timers.tick_of(at);
        if e.scheduled.is_some_and(|s| s <= tick) {
            return;
        }
        let g = e.generation;
        e.scheduled = Some(self.timers.push(at, index, g));
    }

    /// The next queued timer instant (may be early: the call moved or ended).
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Pops one timer due at `now`: the index of an entry whose call may have work.
    pub fn pop_due(&mut self, now: Instant) -> Option<u32> {
        while let Some(it) = self.timers.pop_due(now) {
            let Some(e) = self.entries[it.index as usize].as_deref_mut() else {
                continue;
            };
            if e.generation == it.generation && e.call.is_some() {
                if e.scheduled == Some(it.tick) {
                    e.scheduled = None;
                }
                return Some(it.index);
            }
        }
        None
    }

    /// Frees the entry at `index` (its buffers are kept for the next call); through
    /// [`TxnTable::free`], which keeps the table's count.
    fn free(&mut self, index: u32) -> bool {
        let Some(e) = self.entries[index as usize].as_deref_mut() else {
            return false;
        };
        if e.call.take().is_some() {
            e.scheduled = None;
            self.by_key.remove(&e.key);
            e.generation = e.generation.wrapping_add(1);
            e.stored.clear();
            self.free.push(index);
            return true;
        }
        false
    }

    /// Live calls in this shard.
    pub fn live(&self) -> usize {
        self.entries.len() - self.free.len()
    }
}

/// The transaction table (see the module documentation).
#[derive(Debug)]
pub struct TxnTable {
    shards: Box<[Mutex<Shard>]>,
    /// `max_transactions`: calls in all shards at once.
    capacity: usize,
    /// Calls in all shards now.
    live: AtomicUsize,
    /// Per shard: its next timer in nanoseconds since `epoch` (`u64::MAX`: none).
    next: Box<[AtomicU64]>,
    epoch: Instant,
}

/// Ticks of each shard's timing wheel (40.96 s at [`GRANULE`]; later deadlines wait in
/// their bucket for their revolution).
const WHEEL_TICKS: usize = 4096;

/// The resolution of transaction timers as workers wake for them.
pub const GRANULE: std::time::Duration = std::time::Duration::from_millis(10);

/// The table is full: the request gets `503` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

impl TxnTable {
    /// A table of at least `capacity` slots in `shards` shards (a power of two is not needed);
    /// `epoch` is any instant before the first use (time origin of the shard deadlines). With
    /// `preallocate`, each shard's share of `capacity` (its first slots, the ones a shard hands
    /// out first) is allocated and touched now with its buffers (Kamailio's `shm_force_alloc`);
    /// any other slot is allocated the first time it is used.
    ///
    /// The table holds at most `capacity` calls; each shard has room for twice its share (at
    /// least 8), so an uneven spread of keys over the shards does not refuse a call while the
    /// table has room (a never-used slot costs one pointer).
    pub fn new(capacity: usize, shards: usize, epoch: Instant, preallocate: bool) -> TxnTable {
        let shards = shards.max(1);
        let capacity = capacity.max(1);
        let share = capacity.div_ceil(shards);
        let per = (2 * share).max(8);
        TxnTable {
            shards: (0..shards)
                .map(|_| {
                    Mutex::new(Shard {
                        entries: (0..per)
                            .map(|i| (preallocate && i < share).then(Entry::preallocated))
                            .collect(),
                        free: (0..per as u32).rev().collect(),
                        by_key: HashMap::with_capacity_and_hasher(per, ahash::RandomState::new()),
                        timers: Wheel::new(WHEEL_TICKS, GRANULE, epoch, 4),
                    })
                })
                .collect(),
            next: (0..shards).map(|_| AtomicU64::new(u64::MAX)).collect(),
            epoch,
            capacity,
            live: AtomicUsize::new(0),
        }
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// Slots in all.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The shard a caller key lives in.
    pub fn shard_of(&self, key: u64) -> usize {
        (key % self.shards.len() as u64) as usize
    }

    /// Locks shard `s`.
    pub fn lock(&self, s: usize) -> MutexGuard<'_, Shard> {
        self.shards[s].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores a new call under the caller's `key` in its shard (locked as `shard`); `Full`
    /// when `capacity` calls are in the table (or, unlikely, the shard has no room left).
    pub fn insert(&self, shard: &mut Shard, key: u64, call: Call) -> Result<u32, Full> {
        if self.live.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        }
        let Some(i) = shard.free.pop() else {
            self.live.fetch_sub(1, Ordering::Relaxed);
            return Err(Full);
        };
        let e = shard.entries[i as usize].get_or_insert_with(|| Box::new(Entry::new()));
        e.key = key;
        e.call = Some(call);
        shard.by_key.insert(key, i);
        Ok(i)
    }

    /// Frees the call at `index` of `shard` (its buffers are kept for the next call).
    pub fn free(&self, shard: &mut Shard, index: u32) {
        if shard.free(index) {
            self.live.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Publishes shard `s`'s next timer (after changes under its lock), rounded up to the
    /// next [`GRANULE`]: timers due within one granule run together, so a worker wakes at
    /// most once per granule for them however many calls are in flight (a few milliseconds
    /// late at worst, against T1 = 500 ms).
    pub fn publish_next(&self, s: usize, shard: &Shard) {
        let g = GRANULE.as_nanos() as u64;
        let v = shard.next_timer().map_or(u64::MAX, |t| {
            let n = t.saturating_duration_since(self.epoch).as_nanos() as u64;
            n.div_ceil(g).saturating_mul(g)
        });
        self.next[s].store(v, Ordering::Relaxed);
    }

    /// The earliest timer among the shards worker `w` of `n` runs.
    pub fn next_timer(&self, w: usize, n: usize) -> Option<Instant> {
        let n = n.max(1);
        let min = (w..self.shards.len())
            .step_by(n)
            .map(|s| self.next[s].load(Ordering::Relaxed))
            .min()
            .filter(|&v| v != u64::MAX)?;
        Some(self.epoch + std::time::Duration::from_nanos(min))
    }

    /// Calls in the table now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::txn::{Call, Fork, Timers};

    fn call() -> Call {
        Call::start(false, Fork::Serial, 1, Instant::now(), &Timers::default()).0
    }

    #[test]
    fn capacity_is_the_whole_tables_whatever_the_shard() {
        // Two slots over 32 shards: the first two keys are stored even when they share a
        // shard, the third is refused, and a freed slot is usable again.
        let t = TxnTable::new(2, 32, Instant::now(), false);
        let mut held = Vec::new();
        for key in [5u64, 5 + 32] {
            let s = t.shard_of(key);
            let mut shard = t.lock(s);
            held.push((s, t.insert(&mut shard, key, call()).expect("room")));
        }
        let s = t.shard_of(7);
        assert_eq!(t.insert(&mut t.lock(s), 7, call()), Err(Full));
        assert_eq!(t.live(), 2);
        let (s0, i0) = held[0];
        t.free(&mut t.lock(s0), i0);
        assert_eq!(t.live(), 1);
        assert!(t.insert(&mut t.lock(s), 7, call()).is_ok());
    }

    #[test]
    fn preallocation_touches_each_shards_share_and_hands_it_out_first() {
        // 100 calls over 4 shards: 25 slots preallocated per shard (not the 50 of room), and
        // a shard's first calls land in them.
        let t = TxnTable::new(100, 4, Instant::now(), true);
        for s in 0..4 {
            let shard = t.lock(s);
            assert_eq!(shard.entries.len(), 50);
            assert_eq!(shard.entries.iter().filter(|e| e.is_some()).count(), 25);
        }
        let key = 3u64;
        let s = t.shard_of(key);
        let mut shard = t.lock(s);
        let i = t.insert(&mut shard, key, call()).expect("room");
        assert!(i < 25, "first call in slot {i}");
        let (_, e) = shard.find(key).expect("stored");
        assert!(e.stored.request.capacity() >= PREALLOCATED_REQUEST);
        drop(shard);
        assert!(
            TxnTable::new(100, 4, Instant::now(), false)
                .lock(0)
                .entries
                .iter()
                .all(|e| e.is_none())
        );
    }

    #[test]
    fn a_reused_slot_has_a_new_generation_and_forgets_its_key() {
        let t = TxnTable::new(8, 1, Instant::now(), false);
        let mut shard = t.lock(0);
        let i = t.insert(&mut shard, 42, call()).unwrap();
        let g = shard.generation(i);
        assert!(shard.get(i, g).is_some() && shard.find(42).is_some());
        t.free(&mut shard, i);
        assert!(
            shard.get(i, g).is_none(),
            "the old generation no longer matches"
        );
        assert!(shard.find(42).is_none());
        let j = t.insert(&mut shard, 43, call()).unwrap();
        assert_eq!(j, i, "last freed, first reused");
        assert_eq!(shard.generation(j), g.wrapping_add(1));
    }
}
