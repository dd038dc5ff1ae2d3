//! [`Shared`]: what the workers, the control plane and the admin plane share.

use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use arc_swap::ArcSwap;

use super::Plane;
use crate::netio::Backend;
use crate::proxy::Counters;

/// What the control plane (admin endpoints, reload, probing) shares with the workers.
pub struct Shared {
    /// The current destination plane; workers load it once per batch.
    pub plane: ArcSwap<Plane>,
    /// Each worker's counters as last published (once a second and at exit).
    pub published: Mutex<Vec<Counters>>,
    /// When the daemon started.
    pub started: Instant,
    /// The datapath in use.
    pub backend: Backend,
    /// `dispatcher.ping_active`: false suspends keepalives (states untouched). Default true.
    pub ping_active: AtomicBool,
}

impl Shared {
    /// Shared state for `workers` workers around `plane`.
    pub fn new(plane: Plane, workers: usize, backend: Backend) -> Shared {
        Shared {
            plane: ArcSwap::from_pointee(plane),
            published: Mutex::new(vec![Counters::default(); workers]),
            started: Instant::now(),
            backend,
            ping_active: AtomicBool::new(true),
        }
    }

    /// Stores worker `n`'s counters (once a second and at exit).
    pub fn publish(&self, n: usize, counters: &Counters) {
        let mut all = self.published.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = all.get_mut(n) {
            slot.clone_from(counters);
        }
    }

    /// The counters of all workers, summed.
    pub fn counters(&self) -> Counters {
        Counters::sum(&self.published.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
