//! A hashed timing wheel for transaction timers: O(1) to queue, O(1) amortised to take what is
//! due, with a fixed resolution (the table's `GRANULE`).
//!
//! A binary heap of every call's next deadline costs a cache-missing O(log n) sift per timer
//! once hundreds of thousands of calls are in flight (6% of the stateful path's CPU at 20k
//! calls/s); SIP timers need no better than a few milliseconds of precision, so deadlines are
//! rounded up to a tick and kept in the bucket of their tick modulo the wheel's size. A bucket
//! can also hold deadlines whole revolutions later; they stay until their own tick comes.
//! Buckets keep their capacity, so a steady load allocates nothing.

use std::time::{Duration, Instant};

/// One queued deadline: its tick and the slot (index, generation) it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Item {
    /// The tick (`epoch + tick × granule` is the earliest instant it is due).
    pub tick: u64,
    /// Slot index.
    pub index: u32,
    /// Slot generation when queued.
    pub generation: u32,
}

/// The wheel.
#[derive(Debug)]
pub struct Wheel {
    buckets: Box<[Vec<Item>]>,
    due: Vec<Item>,
    /// The next tick whose bucket has not been drained.
    cursor: u64,
    /// Items in the buckets (not counting `due`).
    len: usize,
    /// No item in the buckets is due before this tick (a lower bound).
    earliest: u64,
    epoch: Instant,
    granule: u64,
}

/// How far ahead the wheel looks for its next non-empty bucket after draining one.
const LOOKAHEAD: u64 = 64;

impl Wheel {
    /// A wheel of `buckets` ticks of `granule` from `epoch`, each bucket with room for `room`
    /// items before it grows.
    pub fn new(buckets: usize, granule: Duration, epoch: Instant, room: usize) -> Wheel {
        Wheel {
            buckets: (0..buckets.max(1))
                .map(|_| Vec::with_capacity(room))
                .collect(),
            due: Vec::with_capacity(room),
            cursor: 0,
            len: 0,
            earliest: u64::MAX,
            epoch,
            granule: (granule.as_nanos() as u64).max(1),
        }
    }

    /// The tick of `at`, rounded up (never before the resolution says).
    pub fn tick_of(&self, at: Instant) -> u64 {
        (at.saturating_duration_since(self.epoch).as_nanos() as u64).div_ceil(self.granule)
    }

    fn instant(&self, tick: u64) -> Instant {
        self.epoch + Duration::from_nanos(tick.saturating_mul(self.granule))
    }

    /// Queues `index` (of `generation`) for `at`; returns the tick it was queued for.
    pub fn push(&mut self, at: Instant, index: u32, generation: u32) -> u64 {
        let tick = self.tick_of(at).max(self.cursor);
        let n = self.buckets.len() as u64;
        self.buckets[(tick % n) as usize].push(Item {
            tick,
            index,
            generation,
        });
        self.len += 1;
        self.earliest = self.earliest.min(tick);
        tick
    }

    /// The earliest instant something may be due (`None`: nothing queued).
    pub fn next(&self) -> Option<Instant> {
        if !self.due.is_empty() {
            return Some(self.instant(self.cursor.saturating_sub(1)));
        }
        (self.len > 0).then(|| self.instant(self.earliest.max(self.cursor)))
    }

    /// Takes one item due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<Item> {
        let now_tick = (now.saturating_duration_since(self.epoch).as_nanos() as u64) / self.granule;
        let n = self.buckets.len() as u64;
        loop {
            if let Some(it) = self.due.pop() {
                return Some(it);
            }
            if self.len == 0 || self.cursor > now_tick {
                return None;
            }
            if self.earliest > self.cursor {
                // Nothing queued before `earliest`: skip the empty buckets.
                self.cursor = self.earliest.min(now_tick + 1);
                continue;
            }
            let cursor = self.cursor;
            let b = &mut self.buckets[(cursor % n) as usize];
            let mut i = 0;
            while i < b.len() {
                if b[i].tick <= cursor {
                    self.due.push(b.swap_remove(i));
                    self.len -= 1;
                } else {
                    i += 1;
                }
            }
            self.cursor += 1;
            self.earliest = self.next_nonempty();
        }
    }

    /// A lower bound of the next tick with an item: the first of the next [`LOOKAHEAD`]
    /// buckets holding an item of its own tick, else the end of that window.
    fn next_nonempty(&self) -> u64 {
        if self.len == 0 {
            return u64::MAX;
        }
        let n = self.buckets.len() as u64;
        for t in self.cursor..self.cursor + LOOKAHEAD.min(n) {
            if self.buckets[(t % n) as usize].iter().any(|it| it.tick <= t) {
                return t;
            }
        }
        self.cursor + LOOKAHEAD.min(n)
    }

    /// Items queued (due or not).
    pub fn len(&self) -> usize {
        self.len + self.due.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn pops_in_tick_order_rounded_up_and_across_revolutions() {
        let t0 = Instant::now();
        let mut w = Wheel::new(8, ms(10), t0, 4);
        w.push(t0 + ms(25), 1, 0); // tick 3
        w.push(t0 + ms(10), 2, 0); // tick 1
        w.push(t0 + ms(200), 3, 0); // tick 20: same bucket as tick 4 (mod 8), two turns on
        w.push(t0 + ms(40), 4, 0); // tick 4
        assert_eq!(w.next(), Some(t0 + ms(10)));
        assert_eq!(w.pop_due(t0 + ms(9)), None, "not yet: 10 ms");
        assert_eq!(w.pop_due(t0 + ms(10)).map(|i| i.index), Some(2));
        assert_eq!(w.pop_due(t0 + ms(29)), None, "25 ms rounds up to 30");
        assert_eq!(w.pop_due(t0 + ms(30)).map(|i| i.index), Some(1));
        assert_eq!(w.pop_due(t0 + ms(100)).map(|i| i.index), Some(4));
        assert_eq!(w.pop_due(t0 + ms(199)), None, "a later revolution stays");
        assert!(w.next().is_some_and(|t| t <= t0 + ms(200)));
        assert_eq!(w.pop_due(t0 + ms(200)).map(|i| i.index), Some(3));
        assert!(w.is_empty());
        assert_eq!(w.next(), None);
    }

    #[test]
    fn a_push_in_the_past_is_due_at_once() {
        let t0 = Instant::now();
        let mut w = Wheel::new(16, ms(10), t0, 4);
        assert_eq!(w.pop_due(t0 + ms(500)), None);
        w.push(t0 + ms(20), 7, 1);
        assert_eq!(
            w.pop_due(t0 + ms(500)).map(|i| (i.index, i.generation)),
            Some((7, 1))
        );
    }

    #[test]
    fn many_items_all_come_out_once() {
        let t0 = Instant::now();
        let mut w = Wheel::new(64, ms(10), t0, 8);
        for i in 0..1000u32 {
            w.push(t0 + ms(u64::from(i * 37 % 5000)), i, 0);
        }
        let mut seen = vec![false; 1000];
        let mut last = 0;
        for step in 0..=510u64 {
            while let Some(it) = w.pop_due(t0 + ms(step * 10)) {
                assert!(!seen[it.index as usize]);
                assert!(it.tick >= last, "in tick order");
                last = it.tick;
                seen[it.index as usize] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
