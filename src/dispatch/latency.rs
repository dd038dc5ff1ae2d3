//! Latency statistics of a probed destination (reference §6.6), as a pure value type.
//!
//! The field types copy Kamailio's (`f32` average/estimate/stdev, `f64` sum of squares, `i32`
//! count/min/max, `u32` timeouts) so that the rounding is the same: the RPC fields `AVG`, `STD`
//! and `EST` of a sipdisp destination then print like Kamailio's. The estimator uses 5.6.3's
//! meaning of α (weight of the *old* estimate). Feeding samples is the probing module's job;
//! nothing here reads a clock.

/// Samples after which the count stops growing and the sum of squares decays instead.
pub const COUNT_CAP: i32 = 2_097_152;
/// Count the statistics jump to once they look stable (the "training jump").
pub const TRAINING_COUNT: i32 = 10_000;

/// Latency statistics of one destination.
///
/// Guarantees: [`LatencyStats::sample`] and [`LatencyStats::timeout`] reproduce
/// `latency_stats_update` / the 408 branch of Kamailio 5.6.3 operation for operation.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LatencyStats {
    /// Number of samples (jumps to 10000 when trained; capped at 2^21).
    pub count: i32,
    /// Running mean (ms).
    pub average: f32,
    /// Short-term estimate (EWMA, ms).
    pub estimate: f32,
    /// Standard deviation (ms).
    pub stdev: f32,
    /// Welford sum of squared differences.
    pub m2: f64,
    /// Smallest sample.
    pub min: i32,
    /// Largest sample.
    pub max: i32,
    /// Number of timeouts (408), saturating.
    pub timeout: u32,
}

impl LatencyStats {
    /// Statistics seeded by the `latency=N` attribute: as if 10000 samples of `n` were seen.
    pub fn seeded(n: i32) -> Self {
        Self {
            count: TRAINING_COUNT,
            average: n as f32,
            estimate: n as f32,
            min: n,
            max: n,
            ..Self::default()
        }
    }

    /// Records a 408 (local timeout or real): no sample.
    pub fn timeout(&mut self) {
        self.timeout = self.timeout.saturating_add(1);
    }

    /// Adds a sample of `latency` milliseconds; `alpha` is
    /// [`DispatchParams::latency_alpha`](super::params::DispatchParams::latency_alpha).
    pub fn sample(&mut self, latency: i32, alpha: f32) {
        if self.count < COUNT_CAP {
            self.count += 1;
        } else {
            self.m2 -= self.m2 / f64::from(self.count);
        }
        if self.count == 1 {
            self.stdev = 0.0;
            self.m2 = 0.0;
            self.max = latency;
            self.min = latency;
            self.average = latency as f32;
            self.estimate = latency as f32;
        }
        if self.count > 10 && self.stdev < 0.5 && self.count < TRAINING_COUNT {
            self.count = TRAINING_COUNT;
        }
        self.min = self.min.min(latency);
        self.max = self.max.max(latency);
        if self.count > 1 {
            let delta: f32 = latency as f32 - self.average;
            self.average += delta / self.count as f32;
            let delta2: f32 = latency as f32 - self.average;
            self.m2 += f64::from(delta) * f64::from(delta2);
            self.stdev = (self.m2 / f64::from(self.count - 1)).sqrt() as f32;
        }
        if self.count < 10 {
            self.estimate = self.average;
        } else {
            self.estimate = self.estimate * alpha + latency as f32 * (1.0 - alpha);
        }
    }

    /// Congestion in ms as alg 11's congestion control sees it: `int(estimate − average)`,
    /// floored at 0.
    pub fn congestion_ms(&self) -> i32 {
        ((self.estimate - self.average) as i32).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(samples: &[i32]) -> LatencyStats {
        let mut s = LatencyStats::default();
        for &l in samples {
            s.sample(l, 0.9);
        }
        s
    }

    #[test]
    fn observed_1_0_0_0_0() {
        let s = feed(&[1, 0, 0, 0, 0]);
        assert_eq!(s.count, 5);
        assert!((s.average - 0.2).abs() < 1e-6, "{}", s.average);
        assert!((s.stdev - 0.447_213_6).abs() < 1e-6, "{}", s.stdev);
        assert_eq!(s.estimate, s.average);
        assert_eq!((s.min, s.max), (0, 1));
    }

    #[test]
    fn training_jump_after_eleven_stable_samples() {
        let mut s = LatencyStats::default();
        for i in 1..=10 {
            s.sample(20, 0.9);
            assert_eq!(s.count, i);
            assert_eq!(s.estimate, 20.0);
        }
        // 11th sample: count 11 > 10 with stdev 0 < 0.5 -> jump to 10000 before Welford.
        s.sample(20, 0.9);
        assert_eq!(s.count, TRAINING_COUNT);
        // Now the average is very sticky: one 80 ms sample moves it by 60/10000.
        s.sample(80, 0.9);
        assert_eq!(s.count, TRAINING_COUNT + 1);
        let want_avg = 20.0f32 + 60.0f32 / 10001.0;
        assert_eq!(s.average, want_avg);
        // EWMA with the 5.6.3 meaning: old estimate weighs 0.9.
        assert_eq!(s.estimate, 20.0f32 * 0.9 + 80.0 * (1.0 - 0.9f32));
        assert_eq!(s.max, 80);
        assert!(s.congestion_ms() >= 5);
    }

    #[test]
    fn no_jump_when_unstable() {
        let seq = [10, 30, 10, 30, 10, 30, 10, 30, 10, 30, 10, 30];
        let s = feed(&seq);
        assert_eq!(s.count, 12);
        assert!(s.stdev > 9.0);
        // count >= 10: estimate follows the EWMA from the 10th sample on.
        let mut e = feed(&seq[..9]).average;
        for &l in &seq[9..] {
            e = e * 0.9 + l as f32 * (1.0 - 0.9f32);
        }
        assert_eq!(s.estimate, e);
    }

    #[test]
    fn seeding_and_timeouts_and_cap() {
        let mut s = LatencyStats::seeded(25);
        assert_eq!(
            (s.count, s.average, s.estimate, s.min, s.max),
            (10_000, 25.0, 25.0, 25, 25)
        );
        s.timeout();
        assert_eq!(s.timeout, 1);
        assert_eq!(s.count, 10_000);
        let mut c = LatencyStats {
            count: COUNT_CAP,
            m2: 1000.0,
            average: 5.0,
            estimate: 5.0,
            ..Default::default()
        };
        c.sample(5, 0.9);
        assert_eq!(c.count, COUNT_CAP);
        assert!(c.m2 < 1000.0);
    }
}
