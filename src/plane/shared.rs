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
        sum(&self.published.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

fn sum(all: &[Counters]) -> Counters {
    let mut total = Counters::default();
    for c in all {
        total.forwarded += c.forwarded;
        total.routed += c.routed;
        total.relayed += c.relayed;
        total.absorbed += c.absorbed;
        total.for_us += c.for_us;
        total.calls_expired += c.calls_expired;
        total.truncated += c.truncated;
        total.txn.add(&c.txn);
        total.forbidden_next_hop += c.forbidden_next_hop;
        total.sips_refused += c.sips_refused;
        total.pike_blocked += c.pike_blocked;
        total.overload_refused += c.overload_refused;
        total.backlog_batches += c.backlog_batches;
        total.too_many_headers += c.too_many_headers;
        total.pike_blocked_sources += c.pike_blocked_sources;
        total.pike_top.extend_from_slice(&c.pike_top);
        for (t, v) in total.send_failures.iter_mut().zip(c.send_failures) {
            *t += v;
        }
        for (t, v) in total.replied.iter_mut().zip(c.replied) {
            *t += v;
        }
        for (t, v) in total.dropped.iter_mut().zip(c.dropped) {
            *t += v;
        }
        for (t, v) in total.requests.iter_mut().zip(&c.requests) {
            t.iter_mut().zip(v).for_each(|(t, v)| *t += v);
        }
        for (t, v) in total.responses.iter_mut().zip(c.responses) {
            *t += v;
        }
        if total.route_hits.len() < c.route_hits.len() {
            total.route_hits.resize(c.route_hits.len(), 0);
        }
        for (t, v) in total.route_hits.iter_mut().zip(&c.route_hits) {
            *t += v;
        }
    }
    total
}
