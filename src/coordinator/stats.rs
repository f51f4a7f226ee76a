//! Operation counts and latencies per registry action over the last minute:
//! a ring of six-second slots, each with a small log-linear histogram.

use std::time::{Duration, Instant};

use crate::proto::registry::Action;
use reactor::buckets::{self, BUCKETS};

const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_secs(6);

#[derive(Clone)]
struct Hist {
    counts: Vec<u32>,
    total: u64,
}

impl Hist {
    fn new() -> Self {
        Hist {
            counts: vec![0; BUCKETS],
            total: 0,
        }
    }

    fn record(&mut self, ns: u64) {
        self.counts[buckets::of(ns)] += 1;
        self.total += 1;
    }
}

pub struct OpStats {
    slots: Vec<[Hist; 8]>,
    slot_start: Vec<Instant>,
    current: usize,
    /// When the current slot ends: a comparison per request instead of a
    /// subtraction (which was a tenth of the per-answer cost of the stats).
    slot_end: Instant,
}

pub struct Summary {
    pub count: u64,
    pub ops_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl OpStats {
    pub fn new(now: Instant) -> Self {
        OpStats {
            slots: (0..SLOTS)
                .map(|_| std::array::from_fn(|_| Hist::new()))
                .collect(),
            slot_start: vec![now; SLOTS],
            current: 0,
            slot_end: now + SLOT,
        }
    }

    fn rotate(&mut self, now: Instant) {
        while now >= self.slot_end {
            let next_start = self.slot_end;
            self.current = (self.current + 1) % SLOTS;
            self.slot_start[self.current] = if now.duration_since(next_start) >= SLOT * SLOTS as u32
            {
                now
            } else {
                next_start
            };
            for h in self.slots[self.current].iter_mut() {
                if h.total > 0 {
                    h.counts.iter_mut().for_each(|c| *c = 0);
                    h.total = 0;
                }
            }
            self.slot_end = self.slot_start[self.current] + SLOT;
        }
    }

    pub fn record(&mut self, action: Action, now: Instant, took: Duration) {
        self.rotate(now);
        self.slots[self.current][action.index()].record(took.as_nanos() as u64);
    }

    /// The last minute (at most) of one action.
    pub fn summary(&mut self, action: Action, now: Instant) -> Summary {
        self.rotate(now);
        let mut merged = vec![0u64; BUCKETS];
        let mut count = 0u64;
        let mut oldest = now;
        for (i, slot) in self.slots.iter().enumerate() {
            if now.duration_since(self.slot_start[i]) > SLOT * SLOTS as u32 {
                continue;
            }
            oldest = oldest.min(self.slot_start[i]);
            let h = &slot[action.index()];
            if h.total == 0 {
                continue;
            }
            count += h.total;
            for (m, c) in merged.iter_mut().zip(h.counts.iter()) {
                *m += *c as u64;
            }
        }
        let span = now.duration_since(oldest).as_secs_f64().clamp(1.0, 60.0);
        let pct = |p: f64| -> f64 {
            if count == 0 {
                return 0.0;
            }
            let want = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, c) in merged.iter().enumerate() {
                seen += c;
                if seen >= want {
                    return buckets::upper(b) as f64 / 1e6;
                }
            }
            0.0
        };
        Summary {
            count,
            ops_per_s: count as f64 / span,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_land_in_the_right_bucket() {
        let t0 = Instant::now();
        let mut s = OpStats::new(t0);
        for i in 0..100u64 {
            let took = if i < 99 {
                Duration::from_micros(100)
            } else {
                Duration::from_millis(50)
            };
            s.record(Action::Ping, t0, took);
        }
        let sum = s.summary(Action::Ping, t0 + Duration::from_secs(1));
        assert_eq!(sum.count, 100);
        assert!((0.09..0.12).contains(&sum.p50_ms), "{}", sum.p50_ms);
        assert!((0.09..0.12).contains(&sum.p99_ms), "{}", sum.p99_ms);
        let later = s.summary(Action::Ping, t0 + Duration::from_secs(120));
        assert_eq!(later.count, 0, "a minute later the slots are empty");
    }
}
