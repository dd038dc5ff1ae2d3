//! The `event_hook` runner: one child process per dst-down / dst-up event, never waited for on
//! the path that raised the event.
//!
//! Bounded three ways: at most [`MAX_RUNNING`] hooks at once (further events wait in a queue of
//! [`MAX_QUEUED`], beyond which they are dropped and logged), each hook is killed after
//! [`HOOK_TIMEOUT`], and children are reaped by [`HookRunner::poll`] on the prober's ticks.
//! Failures (cannot spawn, non-zero exit, killed) are logged and counted.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::prober::{Fired, event_name};

/// Hooks running at once.
pub const MAX_RUNNING: usize = 4;
/// Events waiting for a free slot.
pub const MAX_QUEUED: usize = 64;
/// A hook running longer is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the configured command for each event.
pub struct HookRunner {
    path: Option<PathBuf>,
    running: Vec<(Child, Instant, String)>,
    queue: VecDeque<Fired>,
    results: prometheus_client::metrics::family::Family<
        super::Labels,
        prometheus_client::metrics::counter::Counter,
    >,
}

impl HookRunner {
    /// A runner for `path` (`None`: events are only logged and counted).
    pub fn new(path: Option<PathBuf>, metrics: &super::ProbeMetrics) -> HookRunner {
        HookRunner {
            path,
            running: Vec::new(),
            queue: VecDeque::new(),
            results: metrics.hooks.clone(),
        }
    }

    /// True while a hook runs or waits (the caller then polls soon).
    pub fn busy(&self) -> bool {
        !self.running.is_empty() || !self.queue.is_empty()
    }

    fn count(&self, result: &str) {
        self.results
            .get_or_create(&vec![("result".to_owned(), result.to_owned())])
            .inc();
    }

    /// Queues the hook for `f` and starts what can start.
    pub fn queue(&mut self, f: &Fired, now: Instant) {
        if self.path.is_none() {
            return;
        }
        if self.queue.len() >= MAX_QUEUED {
            eprintln!(
                "sipdisp: event_hook: queue full, {} for set {} {} not run",
                event_name(f.event),
                f.set.0,
                f.uri
            );
            self.count("dropped");
            return;
        }
        self.queue.push_back(f.clone());
        self.poll(now);
    }

    /// Reaps finished hooks, kills overdue ones, starts queued ones.
    pub fn poll(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.running.len() {
            let (child, started, what) = &mut self.running[k];
            match child.try_wait() {
                Ok(Some(status)) => {
                    if status.success() {
                        self.count("ok");
                    } else {
                        eprintln!("sipdisp: event_hook for {what} failed: {status}");
                        self.count("failed");
                    }
                    self.running.swap_remove(k);
                    continue;
                }
                Ok(None) if now.saturating_duration_since(*started) >= HOOK_TIMEOUT => {
                    let _ = child.kill();
                    let _ = child.wait();
                    eprintln!(
                        "sipdisp: event_hook for {what} killed after {}s",
                        HOOK_TIMEOUT.as_secs()
                    );
                    self.count("timeout");
                    self.running.swap_remove(k);
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("sipdisp: event_hook for {what}: {e}");
                    self.count("failed");
                    self.running.swap_remove(k);
                    continue;
                }
            }
            k += 1;
        }
        let Some(path) = &self.path else { return };
        while self.running.len() < MAX_RUNNING {
            let Some(f) = self.queue.pop_front() else {
                break;
            };
            let what = format!("{} set {} {}", event_name(f.event), f.set.0, f.uri);
            let state = f.flags.letters();
            let spawned = Command::new(path)
                .env("SIPDISP_EVENT", event_name(f.event))
                .env("SIPDISP_SET", f.set.0.to_string())
                .env("SIPDISP_URI", &f.uri)
                .env("SIPDISP_STATE", String::from_utf8_lossy(&state).as_ref())
                .env("SIPDISP_CODE", f.code.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn();
            match spawned {
                Ok(child) => self.running.push((child, now, what)),
                Err(e) => {
                    eprintln!(
                        "sipdisp: event_hook {} for {what}: cannot run: {e}",
                        path.display()
                    );
                    self.count("failed");
                }
            }
        }
    }
}

impl Drop for HookRunner {
    fn drop(&mut self) {
        // Give running hooks a moment (bounded), then kill what is left.
        let end = Instant::now() + Duration::from_millis(500);
        while Instant::now() < end && !self.running.is_empty() {
            self.running
                .retain_mut(|(c, _, _)| matches!(c.try_wait(), Ok(None)));
            std::thread::sleep(Duration::from_millis(10));
        }
        for (c, _, _) in &mut self.running {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
