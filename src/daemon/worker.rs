//! One worker thread's loop: the datapath's batches drive the proxy core and the timers.
//!
//! [`Loop`] is the [`netio::Handler`] of every batch: each datagram goes to
//! [`proxy::Worker::handle`] with the time the datapath read after its wait; the tick runs what
//! is due — the proxy core's own timers ([`proxy::Worker::poll_timeout`] /
//! [`proxy::Worker::handle_timeout`]), keepalive probing ([`Health::next_deadline`]) and the
//! once-a-second publication of the counters — and [`Loop`]'s `next_deadline` tells the
//! datapath how long it may wait. Every worker ticks; shared timers (probing, call-load expiry)
//! are claimed by one of them at a time. No state is defined here: the plane and counters live
//! in [`Shared`], the message path's state in the proxy worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::health::Health;
use crate::netio::{self, Datagram, Flow, Outbox, OutboxError};
use crate::proxy::txn::TxnTable;
use crate::proxy::{self, Inbound, Plane, ProxyConfig, Sink, Verdict};

use super::Shared;

/// The longest a batch waits with nothing due, so the stop flag and a new plane are seen
/// within this time.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// How often a worker publishes its counters to [`Shared::published`].
const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Adapts the datapath's outbox to the proxy's sink.
struct OutboxSink<'a, 'b>(&'a mut Outbox<'b>);

impl Sink for OutboxSink<'_, '_> {
    fn send(&mut self, flow: &Flow, pieces: &[&[u8]]) -> Result<(), OutboxError> {
        self.0.send(flow, pieces)
    }
}

/// The handler of one worker's batches (see the module documentation).
struct Loop {
    n: usize,
    worker: proxy::Worker,
    shared: Arc<Shared>,
    health: Arc<Health>,
    /// The plane of the current batch (loaded once per batch).
    plane: Arc<Plane>,
    next_publish: Option<Instant>,
}

impl Loop {
    /// Hands the state changes of routes' `mark` to health, which raises the events.
    fn raise_marks(&mut self) {
        let health = &self.health;
        self.worker.take_marks(|m| {
            let d = m.plane.snapshot.destination(m.pick);
            health.raise(m.event, m.pick.set, &d.uri, d.flags());
        });
    }
}

impl netio::Handler for Loop {
    fn begin(&mut self, _: Instant, load: netio::Load) {
        self.worker.begin(load.backlog);
    }

    fn datagram(&mut self, now: Instant, d: &Datagram<'_>, out: &mut Outbox<'_>) {
        let pkt = Inbound {
            data: d.data,
            flow: d.flow(),
        };
        let v = self
            .worker
            .handle(now, &self.plane, &pkt, &mut OutboxSink(out));
        if let Verdict::ProbeReply { token, code } = v {
            self.health.on_reply(now, &self.plane, token, code);
        }
        self.raise_marks();
    }

    fn tick(&mut self, now: Instant, out: &mut Outbox<'_>) {
        if self.worker.poll_timeout().is_some_and(|t| now >= t) {
            self.worker
                .handle_timeout(now, &self.plane, &mut OutboxSink(out));
            self.raise_marks();
        }
        if now >= self.health.next_deadline() {
            let active = self.shared.ping_active.load(Ordering::Relaxed);
            self.health
                .tick(now, &self.plane, active, &mut OutboxSink(out));
        }
        if self.next_publish.is_none_or(|t| now >= t) {
            self.shared.publish(self.n, self.worker.counters_at(now));
            self.next_publish = Some(now + PUBLISH_EVERY);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.worker.poll_timeout(),
            Some(self.health.next_deadline()),
            self.next_publish,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

/// Runs worker `n` on `dp` until `stop` is set, then publishes its final counters.
#[allow(clippy::too_many_arguments)] // a worker thread's whole context, passed once
pub(super) fn run(
    n: usize,
    workers: usize,
    dp: &mut dyn netio::Datapath,
    cfg: Arc<ProxyConfig>,
    txn: Option<Arc<TxnTable>>,
    shared: Arc<Shared>,
    health: Arc<Health>,
    stop: &AtomicBool,
) {
    let plane = shared.plane.load_full();
    let mut worker = proxy::Worker::new(cfg, 0x9e37_79b9_7f4a_7c15 ^ (n as u64 + 1));
    if let Some(t) = txn {
        worker = worker.with_transactions(t, n, workers);
    }
    let mut lp = Loop {
        n,
        worker,
        shared,
        health,
        plane,
        next_publish: None,
    };
    let mut last_error: Option<Instant> = None;
    while !stop.load(Ordering::Relaxed) {
        lp.plane = lp.shared.plane.load_full();
        match dp.run_batch(Some(MAX_WAIT), &mut lp) {
            Ok(io) => lp.worker.counters_mut().count_io(&io),
            // Rate-limited: one line per second at most.
            Err(e) => {
                if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("sipdisp: worker {n}: datapath error: {e}");
                    last_error = Some(Instant::now());
                }
            }
        }
    }
    lp.shared.publish(n, lp.worker.counters());
}
