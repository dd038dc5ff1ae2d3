//! Flood control in the spirit of Kamailio's `pike` module: each source address's request
//! rate over a sliding window; a source above `reqs_density_per_unit` per
//! `sampling_time_unit` is blocked until its rate falls back under the limit, and forgotten
//! `remove_latency` after its last request.
//!
//! The table is a fixed array sized at start (`max_sources`): a spoofed-source flood cannot
//! grow it. An address lives in one of a few slots its hash picks; a new address takes an idle
//! one, else the one with the fewest requests, so a flood of fresh (spoofed) addresses only
//! replaces its own kind and sources that keep sending keep their counts. One table per worker, no lock: with the
//! kernel's 4-tuple spread every request of a source reaches the same worker; with
//! `spread = "random"` each worker sees 1/n of a source's rate, so the limit counts per worker.
//! Sans-IO: time is passed in.

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Slots an address may occupy (a small neighbourhood of its hash).
const WAYS: usize = 4;

/// `[pike]` settings (Kamailio's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PikeConfig {
    /// `sampling_time_unit`: the window. Kamailio default 2 s.
    pub sampling_time_unit: Duration,
    /// `reqs_density_per_unit`: requests per window above which a source is blocked.
    /// Kamailio default 30.
    pub reqs_density_per_unit: u32,
    /// `remove_latency`: how long an idle source is remembered. Kamailio default 120 s.
    pub remove_latency: Duration,
    /// `max_sources`: size of the table (per worker).
    pub max_sources: usize,
    /// Answer a blocked request `503` + `Retry-After` instead of dropping it (a reply to a
    /// spoofed source goes to whoever owns that address, so dropping is the default).
    pub reply_503: bool,
}

impl Default for PikeConfig {
    fn default() -> PikeConfig {
        PikeConfig {
            sampling_time_unit: Duration::from_secs(2),
            reqs_density_per_unit: 30,
            remove_latency: Duration::from_secs(120),
            max_sources: 16_384,
            reply_503: false,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    ip: IpAddr,
    /// Start of the current window.
    window: Instant,
    /// Requests in the current and the previous window.
    cur: u32,
    prev: u32,
    last: Instant,
    blocked: bool,
}

/// One worker's table.
#[derive(Debug)]
pub struct Pike {
    cfg: PikeConfig,
    slots: Box<[Option<Entry>]>,
    hasher: ahash::RandomState,
}

/// What the table says of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// Under the limit.
    Pass,
    /// Over the limit: refuse it.
    Blocked,
}

impl Pike {
    /// A table for `cfg` (allocated now, never again).
    pub fn new(cfg: PikeConfig) -> Pike {
        Pike {
            cfg,
            slots: vec![None; cfg.max_sources.max(WAYS)].into_boxed_slice(),
            hasher: ahash::RandomState::new(),
        }
    }

    /// Counts one request from `ip` at `now`.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Check {
        let n = self.slots.len();
        let h = self.hasher.hash_one(ip) as usize;
        let unit = self.cfg.sampling_time_unit.max(Duration::from_millis(1));
        let mut victim = h % n;
        // The entry to replace: an idle one, else the one with the fewest requests (a flood of
        // one-off spoofed sources replaces its own kind, never a busy source), else the oldest.
        let mut weakest: Option<(u32, Instant)> = None;
        for k in 0..WAYS {
            let i = (h + k) % n;
            match &mut self.slots[i] {
                Some(e) if e.ip == ip => {
                    let since = now.saturating_duration_since(e.window);
                    if since >= 2 * unit {
                        (e.prev, e.cur, e.window) = (0, 0, now);
                    } else if since >= unit {
                        (e.prev, e.cur, e.window) = (e.cur, 0, e.window + unit);
                    }
                    e.cur = e.cur.saturating_add(1);
                    e.last = now;
                    // Sliding window: the previous window weighted by how much of it is still
                    // inside the last `unit`.
                    let into =
                        now.saturating_duration_since(e.window).as_secs_f64() / unit.as_secs_f64();
                    let rate = f64::from(e.prev) * (1.0 - into).max(0.0) + f64::from(e.cur);
                    e.blocked = rate > f64::from(self.cfg.reqs_density_per_unit);
                    return if e.blocked {
                        Check::Blocked
                    } else {
                        Check::Pass
                    };
                }
                Some(e) => {
                    let idle = now.saturating_duration_since(e.last) >= self.cfg.remove_latency;
                    if idle {
                        victim = i;
                        break;
                    }
                    let key = (e.cur.saturating_add(e.prev), e.last);
                    if weakest.is_none_or(|w| key < w) {
                        weakest = Some(key);
                        victim = i;
                    }
                }
                None => {
                    victim = i;
                    break;
                }
            }
        }
        self.slots[victim] = Some(Entry {
            ip,
            window: now,
            cur: 1,
            prev: 0,
            last: now,
            blocked: false,
        });
        if self.cfg.reqs_density_per_unit == 0 {
            Check::Blocked
        } else {
            Check::Pass
        }
    }

    /// Whether a blocked request gets `503` + `Retry-After` (else it is dropped).
    pub fn replies(&self) -> bool {
        self.cfg.reply_503
    }

    /// The sources blocked at `now` (at most `limit`, for RPC and metrics; allocates).
    pub fn blocked(&self, now: Instant, limit: usize) -> Vec<IpAddr> {
        self.slots
            .iter()
            .flatten()
            .filter(|e| {
                e.blocked && now.saturating_duration_since(e.last) < self.cfg.sampling_time_unit * 2
            })
            .map(|e| e.ip)
            .take(limit)
            .collect()
    }

    /// The number of sources blocked at `now` (no allocation).
    pub fn blocked_count(&self, now: Instant) -> usize {
        self.slots
            .iter()
            .flatten()
            .filter(|e| {
                e.blocked && now.saturating_duration_since(e.last) < self.cfg.sampling_time_unit * 2
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_source_above_the_density_is_blocked_and_released() {
        let cfg = PikeConfig {
            sampling_time_unit: Duration::from_secs(2),
            reqs_density_per_unit: 10,
            ..PikeConfig::default()
        };
        let mut p = Pike::new(cfg);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for i in 0..10 {
            assert_eq!(
                p.check(a, t0 + Duration::from_millis(i * 10)),
                Check::Pass,
                "{i}"
            );
        }
        assert_eq!(p.check(a, t0 + Duration::from_millis(100)), Check::Blocked);
        assert_eq!(p.blocked(t0 + Duration::from_millis(100), 10), [a]);
        // Another source is unaffected.
        assert_eq!(p.check(ip("192.0.2.2"), t0), Check::Pass);
        // After a quiet window the rate has decayed: it passes again.
        assert_eq!(p.check(a, t0 + Duration::from_secs(5)), Check::Pass);
        assert_eq!(p.blocked_count(t0 + Duration::from_secs(5)), 0);
    }

    #[test]
    fn a_spoofed_flood_cannot_grow_the_table_nor_evict_a_busy_source() {
        let cfg = PikeConfig {
            reqs_density_per_unit: 1000,
            max_sources: 64,
            ..PikeConfig::default()
        };
        let mut p = Pike::new(cfg);
        let t0 = Instant::now();
        let busy = ip("198.51.100.9");
        let mut blocked = 0;
        for i in 0..100_000u32 {
            let now = t0 + Duration::from_micros(u64::from(i));
            let spoofed = IpAddr::from(i.to_be_bytes());
            assert_eq!(p.check(spoofed, now), Check::Pass, "one request each");
            if i % 10 == 0 && p.check(busy, now) == Check::Blocked {
                blocked += 1;
            }
        }
        assert_eq!(p.slots.len(), 64, "bounded");
        // The busy source (10,000 requests in 0.1 s) is still caught during the flood.
        assert!(blocked > 5_000, "blocked {blocked} of 10000");
    }
}
