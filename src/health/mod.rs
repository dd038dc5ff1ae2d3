//! Health: keepalive probing of destinations, the state changes and latency statistics their
//! outcomes cause, dst-down / dst-up events and the `event_hook` runner (reference §5–6).
//!
//! What lives here: [`prober`] (which destination is due, the request bytes from [`request`],
//! pending probes, retransmissions, timeouts, the §6.3 judgement fed to
//! [`Snapshot::update_state`](crate::dispatch::Snapshot::update_state) and
//! [`Snapshot::record_latency`](crate::dispatch::Snapshot::record_latency)), [`codes`]
//! (`ds_ping_reply_codes`), [`hook`] (the bounded child-process runner), and [`Health`], the
//! control-plane object the daemon shares between its workers.
//!
//! What it does not do: read a clock (time is passed in), open sockets (keepalives go out
//! through the datapath's outbox from worker 0's tick, so they leave from the listen sockets),
//! or parse SIP (the proxy recognises replies by their branch and hands over a
//! [`ProbeToken`]). The message path never takes [`Health`]'s lock: only the tick of worker 0
//! (at most when something is due, checked with one atomic load) and probe replies do.

pub mod codes;
pub mod hook;
pub mod prober;
pub mod request;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

use crate::dispatch::{Event, Flags, SetId};
use crate::proxy::{Listener, Plane, ProbeToken, Sink};

pub use codes::ReplyCodes;
pub use hook::HookRunner;
pub use prober::{Fired, Prober, event_name, requested_state, should_ping};

/// Metric labels: (name, value) pairs.
pub type Labels = Vec<(String, String)>;

/// The `set` and `uri` labels of a destination.
pub fn dest_labels(set: SetId, uri: &[u8]) -> Labels {
    vec![
        ("set".to_owned(), set.0.to_string()),
        ("uri".to_owned(), String::from_utf8_lossy(uri).into_owned()),
    ]
}

fn with(labels: &Labels, name: &str, value: &str) -> Labels {
    let mut l = labels.clone();
    l.push((name.to_owned(), value.to_owned()));
    l
}

/// `1xx` … `6xx` for a status code.
pub fn class_label(code: u16) -> &'static str {
    ["1xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx"][usize::from(code / 100).clamp(1, 6)]
}

const IGNORED_STALE: &str = "stale_generation";
/// Most events raised outside the prober waiting for a tick ([`Health::raise`]).
const MAX_PENDING: usize = 64;
const IGNORED_UNKNOWN: &str = "unknown_probe";

/// Buckets of the probe round-trip histogram (seconds).
pub const RTT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

fn rtt_histogram() -> Histogram {
    Histogram::new(RTT_BUCKETS)
}

/// The probing metrics, thread-safe and cheap to clone (the collector registers clones).
#[derive(Clone, Debug)]
pub struct ProbeMetrics {
    /// Keepalives sent, by destination.
    pub sent: Family<Labels, Counter>,
    /// Replies by destination and class.
    pub replies: Family<Labels, Counter>,
    /// Keepalives without a final reply within `ds_ping_timeout`.
    pub timeouts: Family<Labels, Counter>,
    /// Keepalives that could not be sent (no address, no socket, outbox refused).
    pub send_failures: Family<Labels, Counter>,
    /// Keepalive round-trip times, by destination.
    pub rtt: Family<Labels, Histogram, fn() -> Histogram>,
    /// Replies ignored, by reason (`stale_generation`, `unknown_probe`).
    pub ignored_replies: Family<Labels, Counter>,
    /// Events raised, by `event` (`dst-down`, `dst-up`).
    pub events: Family<Labels, Counter>,
    /// Event-hook runs, by `result` (`ok`, `failed`, `timeout`, `dropped`).
    pub hooks: Family<Labels, Counter>,
}

impl Default for ProbeMetrics {
    fn default() -> Self {
        let m = ProbeMetrics {
            sent: Family::default(),
            replies: Family::default(),
            timeouts: Family::default(),
            send_failures: Family::default(),
            rtt: Family::new_with_constructor(rtt_histogram as fn() -> Histogram),
            ignored_replies: Family::default(),
            events: Family::default(),
            hooks: Family::default(),
        };
        // Every series exists from the start (at 0), so queries and alerts see data.
        for r in [IGNORED_STALE, IGNORED_UNKNOWN] {
            let _ = m
                .ignored_replies
                .get_or_create(&vec![("reason".to_owned(), r.to_owned())]);
        }
        for e in ["dst-down", "dst-up"] {
            let _ = m
                .events
                .get_or_create(&vec![("event".to_owned(), e.to_owned())]);
        }
        for r in ["ok", "failed", "timeout", "dropped"] {
            let _ = m
                .hooks
                .get_or_create(&vec![("result".to_owned(), r.to_owned())]);
        }
        m
    }
}

impl ProbeMetrics {
    fn register(&self, l: &Labels) {
        let _ = self.sent.get_or_create(l);
        let _ = self.timeouts.get_or_create(l);
        let _ = self.send_failures.get_or_create(l);
        let _ = self.rtt.get_or_create(l);
        for c in ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"] {
            let _ = self.replies.get_or_create(&with(l, "class", c));
        }
    }

    fn unregister(&self, l: &Labels) {
        self.sent.remove(l);
        self.timeouts.remove(l);
        self.send_failures.remove(l);
        self.rtt.remove(l);
        for c in ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"] {
            self.replies.remove(&with(l, "class", c));
        }
    }

    fn ignored(&self, reason: &str) {
        self.ignored_replies
            .get_or_create(&vec![("reason".to_owned(), reason.to_owned())])
            .inc();
    }
}

struct Inner {
    prober: Prober,
    hooks: HookRunner,
}

/// The health component as the daemon shares it: a [`Prober`] and a [`HookRunner`] behind one
/// mutex, and an atomic "next wake-up" so that worker 0's tick takes the lock only when
/// something is due.
pub struct Health {
    inner: Mutex<Inner>,
    /// Events raised outside the prober (a route's `mark` after failovers), waiting for the
    /// next tick; bounded by [`MAX_PENDING`].
    pending: Mutex<Vec<Fired>>,
    epoch: Instant,
    wake_at: AtomicU64,
    metrics: ProbeMetrics,
}

impl Health {
    /// Health for a daemon whose local sockets are `sockets`, running `event_hook` on events.
    pub fn new(sockets: Vec<Listener>, event_hook: Option<PathBuf>) -> Health {
        let metrics = ProbeMetrics::default();
        Health {
            inner: Mutex::new(Inner {
                prober: Prober::new(sockets, metrics.clone()),
                hooks: HookRunner::new(event_hook, &metrics),
            }),
            pending: Mutex::new(Vec::new()),
            epoch: Instant::now(),
            wake_at: AtomicU64::new(0),
            metrics,
        }
    }

    /// A destination state change made elsewhere (a route's `mark` after a failover, on a
    /// worker): raised at the next tick like the prober's own events — log line,
    /// `sipdisp_events_total`, `event_hook` (with `SIPDISP_CODE` 0: no keepalive reply caused
    /// it). The worker only appends to a short queue (at most [`MAX_PENDING`]; beyond, the
    /// event is only logged).
    pub fn raise(&self, event: Event, set: SetId, uri: &[u8], flags: Flags) {
        let f = Fired {
            event,
            set,
            uri: String::from_utf8_lossy(uri).into_owned(),
            flags,
            code: 0,
        };
        let mut q = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() >= MAX_PENDING {
            drop(q);
            eprintln!(
                "sipdisp: dispatcher:{} set={} uri={} (queue full, no hook run)",
                event_name(f.event),
                f.set.0,
                f.uri
            );
            return;
        }
        q.push(f);
        // Due now: the next tick of any worker takes it.
        self.wake_at.store(0, Ordering::Relaxed);
    }

    /// The probing metrics.
    pub fn metrics(&self) -> &ProbeMetrics {
        &self.metrics
    }

    /// Planes adopted after the first one (reload, add, remove swap the plane).
    pub fn plane_swaps(&self) -> u64 {
        u64::from(self.lock().prober.generation().saturating_sub(1))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn nanos(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    /// When [`Health::tick`] next has work: a keepalive or a retransmission due, a timeout,
    /// a hook to reap, and at least once a second (to notice a new plane).
    pub fn next_deadline(&self) -> Instant {
        self.epoch + Duration::from_nanos(self.wake_at.load(Ordering::Relaxed))
    }

    /// The tick (any worker whose batch reaches [`Health::next_deadline`]): one atomic load
    /// unless something is due; then sends due keepalives into `sink`, handles timeouts, runs
    /// and reaps hooks. Workers ticking at the same moment do not queue up: the one that finds
    /// the lock taken leaves the work to its holder.
    pub fn tick(&self, now: Instant, plane: &Arc<Plane>, active: bool, sink: &mut dyn Sink) {
        if self.nanos(now) < self.wake_at.load(Ordering::Relaxed) {
            return;
        }
        let mut inner = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        let fired = inner.prober.tick(now, plane, active, sink);
        self.fire(&mut inner, &fired, now);
        let raised = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        self.fire(&mut inner, &raised, now);
        inner.hooks.poll(now);
        self.schedule(&inner, now);
    }

    /// Adopts a plane the control plane just published (on the control thread): the prober's
    /// table for it is built here, so the next tick of a worker finds it ready.
    pub fn adopt(&self, now: Instant, plane: &Arc<Plane>) {
        let mut inner = self.lock();
        inner.prober.adopt(now, plane);
        self.schedule(&inner, now);
    }

    /// A probe reply the proxy recognised (any worker).
    ///
    /// A worker never waits for the lock: while the control thread adopts a new plane (tens
    /// of milliseconds for 10,000 destinations), replies arriving meanwhile belong to the
    /// generation being replaced and are counted as stale instead.
    pub fn on_reply(&self, now: Instant, plane: &Arc<Plane>, token: ProbeToken, code: u16) {
        let mut inner = match self.inner.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.metrics.ignored(IGNORED_STALE);
                return;
            }
        };
        let fired = inner.prober.reply(now, plane, token, code);
        self.fire(&mut inner, &fired, now);
        self.schedule(&inner, now);
    }

    fn fire(&self, inner: &mut Inner, fired: &[Fired], now: Instant) {
        for f in fired {
            let letters = f.flags.letters();
            eprintln!(
                "sipdisp: dispatcher:{} set={} uri={} state={} code={}",
                event_name(f.event),
                f.set.0,
                f.uri,
                String::from_utf8_lossy(&letters),
                f.code
            );
            self.metrics
                .events
                .get_or_create(&vec![("event".to_owned(), event_name(f.event).to_owned())])
                .inc();
            inner.hooks.queue(f, now);
        }
    }

    fn schedule(&self, inner: &Inner, now: Instant) {
        let mut next = now + Duration::from_secs(1);
        if let Some(t) = inner.prober.next_wake() {
            next = next.min(t);
        }
        if inner.hooks.busy() {
            next = next.min(now + Duration::from_millis(50));
        }
        self.wake_at.store(self.nanos(next), Ordering::Relaxed);
    }
}
