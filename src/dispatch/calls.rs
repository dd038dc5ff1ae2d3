//! The call-load table of algorithm 10 (reference §4.11, §9).
//!
//! Maps a Call-ID (exact, case-sensitive bytes) to the set and `duid` whose load it counts,
//! with two deadlines: `ds_hash_expire` from creation (never refreshed) and
//! `ds_hash_initexpire` while the call is unconfirmed. Algorithm 10 is inherently stateful and
//! must insert the Call-ID, so unlike the rest of selection this table takes a lock and
//! allocates: it is sharded (one `Mutex<HashMap>` per shard, shard count derived from
//! `ds_hash_size`) so workers rarely contend. Kamailio's bucket function (`core_case_hash`) is
//! internal; any map gives the same observable behaviour. Time is passed in.
//!
//! Unlike Kamailio's, the table is bounded (`call_load_capacity`): an unconfirmed entry lives
//! `ds_hash_initexpire` (two hours by default), so a flood of INVITEs that no backend answers
//! would otherwise grow it without limit. A call beyond the capacity is not counted (the
//! insert fails, as for a Call-ID already present) and the refusal is counted.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::SetId;
use super::lock;

/// One counted call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEntry {
    /// Set the call was dispatched in.
    pub set: SetId,
    /// `duid` of the destination that carries the load.
    pub duid: Box<[u8]>,
    /// A 2xx to the INVITE was seen.
    pub confirmed: bool,
    /// Removal deadline from creation.
    pub expire: Instant,
    /// Removal deadline while unconfirmed.
    pub initexpire: Instant,
}

type Shard = Mutex<HashMap<Box<[u8]>, CallEntry, ahash::RandomState>>;

/// Sharded Call-ID table.
///
/// Guarantees: operations on one Call-ID are linearizable; expiry only happens in
/// [`CallLoadTable::expire`] with the caller's `now`.
#[derive(Debug)]
pub struct CallLoadTable {
    shards: Box<[Shard]>,
    pick: ahash::RandomState,
    expire: Duration,
    initexpire: Duration,
    /// When the expiry timer is next due (`None`: at once). Taken once per worker per
    /// `ds_hash_check_interval`, never per message.
    next_check: Mutex<Option<Instant>>,
    /// Most entries per shard.
    per_shard: usize,
    /// Calls not counted because their shard was full.
    refused: AtomicU64,
}

impl CallLoadTable {
    /// A table for `2^hash_size` Kamailio buckets (at most 64 shards here).
    pub fn new(hash_size: u8, expire: Duration, initexpire: Duration) -> Self {
        let n = 1usize << hash_size.clamp(1, 6);
        Self {
            shards: (0..n)
                .map(|_| Mutex::new(HashMap::with_hasher(ahash::RandomState::new())))
                .collect(),
            pick: ahash::RandomState::with_seeds(1, 2, 3, 4),
            expire,
            initexpire,
            next_check: Mutex::new(None),
            per_shard: usize::MAX,
            refused: AtomicU64::new(0),
        }
    }

    /// Bounds the table to about `calls` entries (each shard holds its share, at least one).
    pub fn with_capacity(mut self, calls: usize) -> Self {
        self.per_shard = calls.div_ceil(self.shards.len()).max(1);
        self
    }

    /// Calls that were not counted because the table was full.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Claims one run of the expiry timer: true for exactly one caller at or after the next
    /// check, which moves the check `every` later; false before it or when another caller
    /// claimed it first.
    pub fn claim_check(&self, now: Instant, every: Duration) -> bool {
        let mut next = lock(&self.next_check);
        if next.is_some_and(|t| now < t) {
            return false;
        }
        *next = Some(now + every);
        true
    }

    fn shard(&self, call_id: &[u8]) -> &Shard {
        let h = self.pick.hash_one(call_id);
        &self.shards[(h as usize) & (self.shards.len() - 1)]
    }

    /// Inserts a new call; false (and nothing changed) if the Call-ID is already present or
    /// its shard is full (then counted in [`CallLoadTable::refused`]).
    pub fn insert(&self, call_id: &[u8], set: SetId, duid: &[u8], now: Instant) -> bool {
        let mut m = lock(self.shard(call_id));
        if m.contains_key(call_id) {
            return false;
        }
        if m.len() >= self.per_shard {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        m.insert(
            call_id.into(),
            CallEntry {
                set,
                duid: duid.into(),
                confirmed: false,
                expire: now + self.expire,
                initexpire: now + self.initexpire,
            },
        );
        true
    }

    /// True if the Call-ID is present.
    pub fn contains(&self, call_id: &[u8]) -> bool {
        lock(self.shard(call_id)).contains_key(call_id)
    }

    /// A copy of an entry.
    pub fn get(&self, call_id: &[u8]) -> Option<CallEntry> {
        lock(self.shard(call_id)).get(call_id).cloned()
    }

    /// Moves a call's load to `duid` (failover to another destination of its set): returns
    /// the set and the duid it counted for before, or `None` when the Call-ID is unknown.
    pub fn replace_duid(&self, call_id: &[u8], duid: &[u8]) -> Option<(SetId, Box<[u8]>)> {
        let mut m = lock(self.shard(call_id));
        let e = m.get_mut(call_id)?;
        let old = std::mem::replace(&mut e.duid, duid.into());
        Some((e.set, old))
    }

    /// Removes and returns an entry.
    pub fn remove(&self, call_id: &[u8]) -> Option<CallEntry> {
        lock(self.shard(call_id)).remove(call_id)
    }

    /// Marks an entry confirmed (2xx to INVITE); no expiry refresh. False if unknown.
    pub fn confirm(&self, call_id: &[u8]) -> bool {
        lock(self.shard(call_id))
            .get_mut(call_id)
            .map(|e| e.confirmed = true)
            .is_some()
    }

    /// Removes every entry past `expire`, or unconfirmed past `initexpire`, calling `f` for each.
    pub fn expire(&self, now: Instant, mut f: impl FnMut(&CallEntry)) -> usize {
        let mut n = 0;
        for s in self.shards.iter() {
            lock(s).retain(|_, e| {
                let dead = e.expire < now || (!e.confirmed && e.initexpire < now);
                if dead {
                    f(e);
                    n += 1;
                }
                !dead
            });
        }
        n
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_bounded_and_counts_what_it_refuses() {
        // 2 shards of 3: at most 6 calls, whatever arrives; freed room is usable again.
        let t = CallLoadTable::new(1, Duration::from_secs(100), Duration::from_secs(10))
            .with_capacity(6);
        let now = Instant::now();
        let added = (0..1000)
            .filter(|i| t.insert(format!("c{i}").as_bytes(), SetId(1), b"d", now))
            .count();
        assert_eq!(added, 6);
        assert_eq!(t.len(), 6);
        assert_eq!(t.refused(), 994);
        assert_eq!(t.expire(now + Duration::from_secs(11), |_| {}), 6);
        assert!(t.insert(b"after", SetId(1), b"d", now));
    }

    #[test]
    fn expiry_check_is_claimed_once_per_interval() {
        let t = CallLoadTable::new(4, Duration::from_secs(10), Duration::from_secs(5));
        let t0 = Instant::now();
        let every = Duration::from_secs(30);
        assert!(t.claim_check(t0, every));
        assert!(
            !t.claim_check(t0, every),
            "a second worker at the same time"
        );
        assert!(!t.claim_check(t0 + Duration::from_secs(29), every));
        assert!(t.claim_check(t0 + every, every));
        assert!(!t.claim_check(t0 + every, every));
    }

    #[test]
    fn lifecycle_with_injected_time() {
        let t0 = Instant::now();
        let t = CallLoadTable::new(4, Duration::from_secs(100), Duration::from_secs(10));
        assert!(t.insert(b"c1", SetId(1), b"gw", t0));
        assert!(!t.insert(b"c1", SetId(1), b"other", t0));
        assert!(t.insert(b"C1", SetId(1), b"gw", t0), "case-sensitive");
        assert!(t.insert(b"c2", SetId(1), b"gw", t0));
        assert!(t.confirm(b"c2"));
        assert!(!t.confirm(b"nope"));
        // at 11 s the unconfirmed ones expire, c2 stays
        let mut gone = Vec::new();
        assert_eq!(
            t.expire(t0 + Duration::from_secs(11), |e| gone.push(e.duid.clone())),
            2
        );
        assert!(t.contains(b"c2") && !t.contains(b"c1"));
        // exactly at the deadline: not yet (expire < now)
        assert_eq!(t.expire(t0 + Duration::from_secs(100), |_| {}), 0);
        assert_eq!(t.expire(t0 + Duration::from_secs(101), |_| {}), 1);
        assert!(t.is_empty());
        assert!(t.remove(b"c2").is_none());
    }
}
