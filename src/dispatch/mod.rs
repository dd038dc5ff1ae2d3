//! Destination sets and selection: Kamailio 5.6.3's `dispatcher` without I/O.
//!
//! This module never sees SIP bytes or sockets and never reads a clock. The proxy hands it the
//! key bytes an algorithm asks for ([`Key`]) and the current time; dispatch answers with a
//! small `Copy` [`Pick`] and, when asked, a failover list written into the caller's buffer.
//! `docs/configuration.md` lists every parameter and every place sipdisp differs from
//! Kamailio; `shared/reference/dispatcher-semantics.md` (the "reference", § numbers below) is
//! the behaviour copied.
//!
//! * [`hash`]: the hash `H(x, y)`, bit-exact.
//! * [`list`], [`attrs`], [`uri`]: the list file format and its checks (URIs through the
//!   parser crate's parser, with Kamailio's list-file rules on top).
//! * [`snapshot`], [`avl`]: immutable sets in Kamailio order, lock-free runtime state beside.
//! * [`select`], [`routes`]: algorithms 0–13, failover list, `ds_select_routes` rules.
//! * [`state`], [`runtime`]: state bits, threshold machine, marks, `set_state`, latency and
//!   congestion feeding.
//! * [`calls`]: algorithm 10's call-load table. [`latency`]: latency statistics.
//! * [`params`]: the module parameters with Kamailio names and defaults.

pub mod attrs;
pub mod avl;
pub mod calls;
pub mod hash;
pub mod latency;
pub mod list;
pub mod params;
pub mod routes;
pub mod runtime;
pub mod select;
#[cfg(test)]
mod select_tests;
pub mod snapshot;
pub mod state;
pub mod uri;

pub use calls::CallLoadTable;
pub use hash::{PartHasher, ds_hash};
pub use latency::LatencyStats;
pub use list::{
    ListEntry, ListError, ListErrorKind, ListErrors, LoadHooks, LoadedList, ResolveCheck, Row,
    RowColumns, SocketCheck, parse_list, parse_rows,
};
pub use params::{DispatchParams, HashFailover};
pub use routes::{Rule, RulesError, parse_rules};
pub use select::{Algorithm, Key, ListKind, Mode, Request, SelectError, Selected};
pub use snapshot::{Carry, Destination, Set, Snapshot};
pub use state::{Event, Flags, StateError, Thresholds};

/// Locks a mutex whose holder may have panicked: the data behind dispatch's few locks stays
/// consistent under a panic (each update is one assignment), so the poison is ignored.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A destination set id (Kamailio group). Ids from a list file are within 0..=2^31-1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetId(pub u32);

/// A destination's index in its set's array (Kamailio order, §2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DestIdx(pub u32);

/// A selected destination: which set, where the set is in the snapshot, which index.
///
/// Guarantees: valid for the snapshot that returned it; resolve it with
/// [`Snapshot::destination`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pick {
    /// Set id.
    pub set: SetId,
    /// Position of the set in [`Snapshot::sets`].
    pub set_pos: u32,
    /// Index inside the set.
    pub idx: DestIdx,
}
