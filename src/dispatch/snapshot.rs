//! The immutable snapshot of destination sets, with lock-free runtime state beside it.
//!
//! A [`Snapshot`] is built once per (re)load from the parsed list and then only read by worker
//! threads (the control plane publishes it arc-swap style). Its *shape* never changes: sets in
//! Kamailio's AVL post-order (§2.5), destinations in Kamailio's array order (§2.4: priority
//! descending, reverse file order among equals), the alg-9 weight table (§4.10). What does
//! change at run time lives in atomics next to each item: destination flags and threshold
//! counter (one `AtomicU64`, so a transition is a single compare-exchange), call load,
//! run-time `rweight`, latency statistics (a small mutex, written only by probing; the values
//! selection reads are mirrored into atomics), the per-set cursors and the alg-11 table (rebuilt
//! on state changes under a per-set mutex that selection never takes).
//!
//! Runtime state is keyed by a stable identity — set id, URI, socket attribute, occurrence
//! number — so [`Snapshot::carry_state_from`] can move it into the next snapshot on reload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use super::attrs::Attrs;
use super::avl::kamailio_set_order;
use super::calls::CallLoadTable;
use super::latency::LatencyStats;
use super::list::ListEntry;
use super::params::DispatchParams;
use super::state::Flags;
use super::uri::DestUri;
use super::{SetId, lock};

/// Slots in the weight and relative-weight tables.
pub const TABLE_SLOTS: usize = 100;

/// A small seedable PRNG (SplitMix64) for table shuffles; sipdisp needs no crypto quality and
/// Kamailio's `rand()` sequence cannot be reproduced anyway (only per-100 counts can).
#[derive(Debug, Clone)]
pub struct Prng(u64);

impl Prng {
    /// A generator with the given seed.
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, s: &mut [T]) {
        for i in (1..s.len()).rev() {
            let j = (self.next_u64() % (i as u64 + 1)) as usize;
            s.swap(i, j);
        }
    }
}

/// Run-time state of one destination.
#[derive(Debug, Default)]
pub(crate) struct DestRuntime {
    /// Low 32 bits: flags; high 32 bits: threshold counter.
    pub(crate) state: AtomicU64,
    pub(crate) dload: AtomicU32,
    pub(crate) rweight: AtomicU32,
    pub(crate) latency: Mutex<LatencyStats>,
    /// `f32` bits of the latency estimate and average, mirrored for lock-free readers.
    pub(crate) est_bits: AtomicU32,
    pub(crate) avg_bits: AtomicU32,
    /// Alg-13 adjusted priority (shown by RPC, like Kamailio stores it).
    pub(crate) rpriority: AtomicI32,
}

pub(crate) const fn pack(flags: u32, counter: u32) -> u64 {
    (counter as u64) << 32 | flags as u64
}

pub(crate) const fn unpack(v: u64) -> (Flags, u32) {
    (Flags(v as u32), (v >> 32) as u32)
}

/// One destination: what the list file said, plus run-time state.
#[derive(Debug)]
pub struct Destination {
    /// URI exactly as stored (possibly with an added `sip:`).
    pub uri: Box<[u8]>,
    /// Where host, port, user are in `uri`.
    pub dest: DestUri,
    /// Flags given in the list file.
    pub file_flags: u32,
    /// Priority.
    pub priority: i32,
    /// Attributes.
    pub attrs: Attrs,
    /// Line in the list file (0 when added by other means).
    pub line: u32,
    pub(crate) rt: DestRuntime,
}

impl Destination {
    fn new(e: &ListEntry) -> Self {
        let rt = DestRuntime {
            state: AtomicU64::new(pack(e.flags, 0)),
            rweight: AtomicU32::new(e.attrs.rweight),
            ..DestRuntime::default()
        };
        if let Some(n) = e.attrs.latency {
            let s = LatencyStats::seeded(n);
            rt.est_bits.store(s.estimate.to_bits(), Relaxed);
            rt.avg_bits.store(s.average.to_bits(), Relaxed);
            *rt.latency.lock().unwrap_or_else(|p| p.into_inner()) = s;
        }
        rt.rpriority.store(e.priority, Relaxed);
        Self {
            uri: e.uri.clone(),
            dest: e.dest.clone(),
            file_flags: e.flags,
            priority: e.priority,
            attrs: e.attrs.clone(),
            line: e.line,
            rt,
        }
    }

    /// Current flags.
    pub fn flags(&self) -> Flags {
        unpack(self.rt.state.load(Relaxed)).0
    }

    /// Current threshold counter (§5.2).
    pub fn counter(&self) -> u32 {
        unpack(self.rt.state.load(Relaxed)).1
    }

    /// True when selectable (neither INACTIVE nor DISABLED).
    pub fn usable(&self) -> bool {
        self.flags().usable()
    }

    /// Active calls counted by algorithm 10.
    pub fn dload(&self) -> u32 {
        self.rt.dload.load(Relaxed)
    }

    /// Current relative weight (the attribute, or what congestion control made of it).
    pub fn rweight(&self) -> u32 {
        self.rt.rweight.load(Relaxed)
    }

    /// A copy of the latency statistics.
    pub fn latency(&self) -> LatencyStats {
        *lock(&self.rt.latency)
    }

    /// Latency estimate (lock-free mirror).
    pub fn latency_estimate(&self) -> f32 {
        f32::from_bits(self.rt.est_bits.load(Relaxed))
    }

    /// Latency average (lock-free mirror).
    pub fn latency_average(&self) -> f32 {
        f32::from_bits(self.rt.avg_bits.load(Relaxed))
    }

    /// Host part as written.
    pub fn host(&self) -> &[u8] {
        &self.uri[self.dest.host.clone()]
    }

    /// Explicit port, if any.
    pub fn port(&self) -> Option<u16> {
        self.dest.port
    }

    /// The socket attribute that is part of this destination's identity.
    pub fn socket(&self) -> Option<&[u8]> {
        self.attrs
            .sockname
            .as_deref()
            .or(self.attrs.socket.as_deref())
    }

    /// Overwrites flags and counter (used by state carry-over and tests).
    pub(crate) fn store_state(&self, flags: Flags, counter: u32) {
        self.rt.state.store(pack(flags.0, counter), Relaxed);
    }
}

/// Per-set cursors and the alg-11 table.
#[derive(Debug)]
pub(crate) struct SetRuntime {
    pub(crate) last: AtomicUsize,
    pub(crate) wlast: AtomicUsize,
    pub(crate) rwlast: AtomicUsize,
    pub(crate) rwlist: [AtomicU32; TABLE_SLOTS],
    /// Serialises alg-11 table rebuilds and owns their PRNG.
    pub(crate) rebuild: Mutex<Prng>,
}

/// One destination set.
#[derive(Debug)]
pub struct Set {
    /// Set id.
    pub id: SetId,
    pub(crate) dests: Box<[Destination]>,
    /// Alg-9 table: destination index per slot.
    pub(crate) wlist: [u32; TABLE_SLOTS],
    pub(crate) rt: SetRuntime,
}

impl Set {
    /// Destinations in Kamailio array order.
    pub fn destinations(&self) -> &[Destination] {
        &self.dests
    }

    /// Number of destinations (`nr`).
    pub fn len(&self) -> usize {
        self.dests.len()
    }

    /// Always false: empty sets do not exist.
    pub fn is_empty(&self) -> bool {
        self.dests.is_empty()
    }

    /// The alg-9 table (destination index per slot, shuffled).
    pub fn weight_table(&self) -> [u32; TABLE_SLOTS] {
        self.wlist
    }

    /// The current alg-11 table.
    pub fn rweight_table(&self) -> [u32; TABLE_SLOTS] {
        std::array::from_fn(|i| self.rt.rwlist[i].load(Relaxed))
    }

    /// Rebuilds the alg-11 table from current states and rweights (§4.12): no-op with fewer
    /// than two destinations or when the usable rweights sum to 0 (the table stays stale).
    pub fn rebuild_rweights(&self) {
        let mut prng = lock(&self.rt.rebuild);
        let nr = self.dests.len();
        if nr < 2 {
            return;
        }
        let usable = |d: &Destination| d.usable();
        let sum: u32 = self
            .dests
            .iter()
            .filter(|d| usable(d))
            .map(Destination::rweight)
            .sum();
        if sum == 0 {
            return;
        }
        let mut t = [0u32; TABLE_SLOTS];
        let mut n = 0;
        for (j, d) in self.dests.iter().enumerate() {
            if !usable(d) {
                continue;
            }
            let slice = (d.rweight() * 100 / sum) as usize;
            for _ in 0..slice {
                if n < TABLE_SLOTS {
                    t[n] = j as u32;
                    n += 1;
                }
            }
        }
        let last = if n > 0 { t[n - 1] } else { nr as u32 - 1 };
        t[n..].fill(last);
        prng.shuffle(&mut t);
        for (slot, v) in self.rt.rwlist.iter().zip(t) {
            slot.store(v, Relaxed);
        }
    }
}

/// Builds the alg-9 table (§4.10): only when array index 0 has a weight; shortfall to `nr-1`.
fn weight_table(dests: &[Destination], prng: &mut Prng) -> [u32; TABLE_SLOTS] {
    let mut t = [0u32; TABLE_SLOTS];
    if dests.first().is_none_or(|d| d.attrs.weight == 0) {
        return t;
    }
    let mut n = 0;
    'fill: for (j, d) in dests.iter().enumerate() {
        for _ in 0..d.attrs.weight {
            if n == TABLE_SLOTS {
                break 'fill;
            }
            t[n] = j as u32;
            n += 1;
        }
    }
    t[n..].fill(dests.len() as u32 - 1);
    prng.shuffle(&mut t);
    t
}

/// All sets of one (re)load, plus the shared call-load table.
///
/// Guarantees: immutable shape; every method takes `&self` and is safe to call from many
/// threads; selection methods never lock or allocate (except algorithm 10's table insert).
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) sets: Box<[Set]>,
    by_id: HashMap<u32, usize, ahash::RandomState>,
    pub(crate) params: DispatchParams,
    pub(crate) calls: Option<Arc<CallLoadTable>>,
}

impl Snapshot {
    /// Builds a snapshot from list entries in file order. `seed` drives the table shuffles.
    /// Runtime state starts from the file flags; see [`Snapshot::carry_state_from`].
    pub fn build(entries: &[ListEntry], params: DispatchParams, seed: u64) -> Snapshot {
        let mut prng = Prng::new(seed);
        let mut first_seen = Vec::new();
        let mut groups: HashMap<u32, Vec<&ListEntry>> = HashMap::new();
        for e in entries {
            groups
                .entry(e.set.0)
                .or_insert_with(|| {
                    first_seen.push(e.set.0);
                    Vec::new()
                })
                .push(e);
        }
        let order = kamailio_set_order(first_seen.iter().copied());
        let mut sets = Vec::with_capacity(order.len());
        let mut by_id = HashMap::with_capacity_and_hasher(order.len(), ahash::RandomState::new());
        for id in order {
            let mut members: Vec<&ListEntry> = groups.remove(&id).unwrap_or_default();
            members.reverse();
            members.sort_by_key(|e| std::cmp::Reverse(e.priority));
            let dests: Box<[Destination]> = members.into_iter().map(Destination::new).collect();
            let wlist = weight_table(&dests, &mut prng);
            let set = Set {
                id: SetId(id),
                dests,
                wlist,
                rt: SetRuntime {
                    last: AtomicUsize::new(0),
                    wlast: AtomicUsize::new(0),
                    rwlast: AtomicUsize::new(0),
                    rwlist: std::array::from_fn(|_| AtomicU32::new(0)),
                    rebuild: Mutex::new(Prng::new(prng.next_u64())),
                },
            };
            set.rebuild_rweights();
            by_id.insert(id, sets.len());
            sets.push(set);
        }
        let calls = (params.ds_hash_size > 0).then(|| {
            Arc::new(
                CallLoadTable::new(
                    params.ds_hash_size,
                    params.ds_hash_expire,
                    params.ds_hash_initexpire,
                )
                .with_capacity(params.call_load_capacity),
            )
        });
        Snapshot {
            sets: sets.into(),
            by_id,
            params,
            calls,
        }
    }

    /// Sets in Kamailio listing order (AVL post-order).
    pub fn sets(&self) -> &[Set] {
        &self.sets
    }

    /// The set with this id.
    pub fn set(&self, id: SetId) -> Option<&Set> {
        self.by_id.get(&id.0).map(|&i| &self.sets[i])
    }

    pub(crate) fn set_pos(&self, id: SetId) -> Option<usize> {
        self.by_id.get(&id.0).copied()
    }

    /// The parameters this snapshot was built with.
    pub fn params(&self) -> &DispatchParams {
        &self.params
    }

    /// The call-load table (present when `ds_hash_size > 0`).
    pub fn calls(&self) -> Option<&CallLoadTable> {
        self.calls.as_deref()
    }

    /// The destination a [`Pick`](super::Pick) refers to.
    ///
    /// # Panics
    /// If the pick comes from another snapshot with a different shape.
    pub fn destination(&self, pick: super::Pick) -> &Destination {
        &self.sets[pick.set_pos as usize].dests[pick.idx.0 as usize]
    }

    /// Moves runtime state from the previous snapshot into this one (before publishing it):
    /// the one carry-over every reload, add and remove goes through (see [`Carry`]).
    ///
    /// The call-load table is always shared (as Kamailio keeps it). Destinations are matched
    /// by identity: set id, URI compared case-insensitively, socket attribute, n-th occurrence.
    pub fn carry_state_from(&mut self, old: &Snapshot, carry: Carry) {
        if let (Some(_), Some(oc)) = (&self.calls, &old.calls) {
            self.calls = Some(Arc::clone(oc));
        }
        if carry == Carry::CallTable {
            return;
        }
        for set in self.sets.iter() {
            let Some(os) = old.set(set.id) else { continue };
            // The old destinations by identity (URI case-insensitively, socket), each list in
            // array order: the n-th new occurrence takes the n-th old one. O(n), so a reload of
            // 10,000 destinations costs milliseconds, not seconds.
            let mut by_id: HashMap<Identity<'_>, std::collections::VecDeque<usize>> =
                HashMap::with_capacity(os.dests.len());
            for (k, o) in os.dests.iter().enumerate() {
                by_id
                    .entry((o.uri.to_ascii_lowercase(), o.socket()))
                    .or_default()
                    .push_back(k);
            }
            let mut changed = false;
            for d in set.dests.iter() {
                let key = (d.uri.to_ascii_lowercase(), d.socket());
                let Some(k) = by_id.get_mut(&key).and_then(|q| q.pop_front()) else {
                    continue;
                };
                let o = &os.dests[k];
                d.rt.dload.store(o.dload(), Relaxed);
                if carry == Carry::All {
                    changed |= d.take_runtime_from(o);
                }
            }
            if carry == Carry::All {
                let nr = set.dests.len();
                set.rt.last.store(os.rt.last.load(Relaxed) % nr, Relaxed);
                set.rt
                    .wlast
                    .store(os.rt.wlast.load(Relaxed) % TABLE_SLOTS, Relaxed);
                set.rt
                    .rwlast
                    .store(os.rt.rwlast.load(Relaxed) % TABLE_SLOTS, Relaxed);
                if changed {
                    set.rebuild_rweights();
                }
            }
        }
    }
}

/// A destination's identity across snapshots: URI (lower case) and socket attribute.
type Identity<'a> = (Vec<u8>, Option<&'a [u8]>);

/// Which runtime state a new snapshot takes over from the one it replaces
/// ([`Snapshot::carry_state_from`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// `retain_state` (sipdisp's default), for reload, add and remove: destinations that remain
    /// keep their flags — unless the file changed that destination's flags —, threshold
    /// counter, call load, run-time rweight and latency statistics; round-robin and weight
    /// cursors continue.
    All,
    /// Kamailio's add/remove rebuild: the call table and each remaining destination's call
    /// load; everything else starts from the entries.
    CallLoads,
    /// Kamailio's reload: the call table only; states and call loads start from the file.
    CallTable,
}

impl Carry {
    /// What a reload carries over (`retain_state`: everything; otherwise Kamailio's rule).
    pub fn for_reload(retain_state: bool) -> Carry {
        if retain_state {
            Carry::All
        } else {
            Carry::CallTable
        }
    }

    /// What `dispatcher.add` / `remove` carry over.
    pub fn for_rebuild(retain_state: bool) -> Carry {
        if retain_state {
            Carry::All
        } else {
            Carry::CallLoads
        }
    }
}

impl Destination {
    /// Takes `o`'s flags (when the file flags are the same), counter, rweight (when the
    /// attribute is the same) and latency statistics; true when the flags differ from the
    /// file's.
    fn take_runtime_from(&self, o: &Destination) -> bool {
        let mut changed = false;
        if o.file_flags == self.file_flags {
            let (f, c) = unpack(o.rt.state.load(Relaxed));
            changed = f != Flags(self.file_flags);
            self.store_state(f, c);
        }
        if o.attrs.rweight == self.attrs.rweight {
            self.rt.rweight.store(o.rweight(), Relaxed);
        }
        let l = o.latency();
        *lock(&self.rt.latency) = l;
        self.rt.est_bits.store(l.estimate.to_bits(), Relaxed);
        self.rt.avg_bits.store(l.average.to_bits(), Relaxed);
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::super::list::{LoadHooks, parse_list};
    use super::*;

    pub(crate) fn snap(text: &str, params: DispatchParams) -> Snapshot {
        let l = parse_list("t", text.as_bytes(), &params, &LoadHooks::default()).unwrap();
        Snapshot::build(&l.entries, params, 7)
    }

    fn uris(s: &Set) -> Vec<String> {
        s.destinations()
            .iter()
            .map(|d| String::from_utf8_lossy(&d.uri[4..]).into_owned())
            .collect()
    }

    #[test]
    fn array_order_and_set_order() {
        let s = snap("1 sip:a\n1 sip:b\n1 sip:c\n", DispatchParams::default());
        assert_eq!(uris(&s.sets()[0]), ["c", "b", "a"]);
        let s = snap(
            "1 sip:A 0 1\n1 sip:B 0 2\n1 sip:C 0 1\n1 sip:D 0 2\n",
            DispatchParams::default(),
        );
        assert_eq!(uris(&s.sets()[0]), ["D", "B", "C", "A"]);
        let s = snap(
            "1 sip:a\n2 sip:b\n3 sip:c\n2 sip:d\n",
            DispatchParams::default(),
        );
        let ids: Vec<u32> = s.sets().iter().map(|x| x.id.0).collect();
        assert_eq!(ids, [1, 3, 2]);
        assert_eq!(uris(s.set(SetId(2)).unwrap()), ["d", "b"]);
        assert!(s.set(SetId(9)).is_none());
    }

    fn counts(t: [u32; TABLE_SLOTS], nr: usize) -> Vec<usize> {
        let mut c = vec![0; nr];
        for v in t {
            c[v as usize] += 1;
        }
        c
    }

    #[test]
    fn weight_tables() {
        let p = DispatchParams::default;
        // file 10,20,30 -> array [30,20,10]; shortfall 40 to nr-1 (first file line).
        let s = snap(
            "1 sip:a 0 0 weight=10\n1 sip:b 0 0 weight=20\n1 sip:c 0 0 weight=30\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].weight_table(), 3), [30, 20, 50]);
        // 50/50/50: the last array element gets nothing.
        let s = snap(
            "1 sip:a 0 0 weight=50\n1 sip:b 0 0 weight=50\n1 sip:c 0 0 weight=50\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].weight_table(), 3), [50, 50, 0]);
        // array index 0 without weight: table all zeros -> 100 % index 0 (the third file line).
        let s = snap(
            "1 sip:a 0 0 weight=50\n1 sip:b 0 0 weight=50\n1 sip:c\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].weight_table(), 3), [100, 0, 0]);
        // shuffled, not sequential
        let s = snap("1 sip:a 0 0 weight=50\n1 sip:b 0 0 weight=50\n", p());
        assert_ne!(s.sets()[0].weight_table()[..50], [0u32; 50]);
    }

    #[test]
    fn rweight_tables() {
        let p = DispatchParams::default;
        let s = snap(
            "1 sip:a 0 0 rweight=1\n1 sip:b 0 0 rweight=2\n1 sip:c 0 0 rweight=1\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].rweight_table(), 3), [25, 50, 25]);
        // 1/1/1 -> 33 each + 1 to the last usable written index.
        let s = snap(
            "1 sip:a 0 0 rweight=1\n1 sip:b 0 0 rweight=1\n1 sip:c 0 0 rweight=1\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].rweight_table(), 3), [33, 33, 34]);
        // inactive destination (file flag 1) excluded: array [c(1),b(2),a(1,I)] -> 33/66+1
        let s = snap(
            "1 sip:a 1 0 rweight=1\n1 sip:b 0 0 rweight=2\n1 sip:c 0 0 rweight=1\n",
            p(),
        );
        assert_eq!(counts(s.sets()[0].rweight_table(), 3), [33, 67, 0]);
        // all usable rweights 0: table stays all zero (index 0)
        let s = snap("1 sip:a\n1 sip:b\n", p());
        assert_eq!(counts(s.sets()[0].rweight_table(), 2), [100, 0]);
    }

    #[test]
    fn carry_over() {
        let p = DispatchParams::default;
        let old = snap("1 sip:a\n1 sip:b\n1 sip:b\n2 sip:x 4\n", p());
        let b1 = &old.set(SetId(1)).unwrap().dests[0];
        b1.store_state(Flags(Flags::INACTIVE | Flags::PROBING), 2);
        b1.rt.dload.store(3, Relaxed);
        old.set(SetId(2)).unwrap().dests[0].store_state(Flags(Flags::INACTIVE), 0);
        let text = "1 SIP:B\n1 sip:a\n1 sip:b\n2 sip:x 0\n";
        let mut new = snap(text, p());
        new.carry_state_from(&old, Carry::All);
        // new array [b, a, SIP:B]; old [b(I P), b, a]: first occurrence maps to the first.
        let d = new.set(SetId(1)).unwrap().destinations();
        assert_eq!((d[0].flags().0, d[0].counter(), d[0].dload()), (9, 2, 3));
        assert_eq!(d[2].flags().0, 0);
        // set 2: the file changed the flags 4 -> 0, so the file wins.
        assert_eq!(new.set(SetId(2)).unwrap().dests[0].flags().0, 0);
        let mut fresh = snap(text, p());
        fresh.carry_state_from(&old, Carry::CallTable);
        let f = &fresh.set(SetId(1)).unwrap().dests[0];
        assert_eq!((f.flags().0, f.dload()), (0, 0));
    }
}
