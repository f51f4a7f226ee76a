//! How long the loop's turns take: the work between one poll's return and
//! the next poll (the wait itself is not counted), over the last minute in a
//! ring of six-second slots, each a small log-linear histogram and a maximum.
//! A turn is how long every other connection may have to wait for an answer,
//! so its tail is the loop's stall figure (docs/architecture.md).

use std::time::{Duration, Instant};

use crate::buckets::{self, BUCKETS};

const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_secs(6);

struct Slot {
    start: Instant,
    counts: Box<[u32; BUCKETS]>,
    total: u64,
    max_ns: u64,
}

/// Turn times of the last minute.
pub(crate) struct TurnStats {
    slots: Vec<Slot>,
    current: usize,
}

/// The last minute of loop turns (at most; less just after start).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TurnSummary {
    /// Turns that did some work (a poll that returned events or timers).
    pub count: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// The longest turn, exact (the percentiles are bucket upper bounds).
    pub max_ms: f64,
    /// Turns over 2 ms.
    pub over_2ms: u64,
}

impl TurnStats {
    pub(crate) fn new(now: Instant) -> Self {
        TurnStats {
            slots: (0..SLOTS)
                .map(|_| Slot {
                    start: now,
                    counts: Box::new([0; BUCKETS]),
                    total: 0,
                    max_ns: 0,
                })
                .collect(),
            current: 0,
        }
    }

    fn rotate(&mut self, now: Instant) {
        while now.duration_since(self.slots[self.current].start) >= SLOT {
            let next_start = self.slots[self.current].start + SLOT;
            self.current = (self.current + 1) % SLOTS;
            let s = &mut self.slots[self.current];
            s.start = if now.duration_since(next_start) >= SLOT * SLOTS as u32 {
                now
            } else {
                next_start
            };
            if s.total > 0 {
                s.counts.iter_mut().for_each(|c| *c = 0);
                s.total = 0;
                s.max_ns = 0;
            }
        }
    }

    pub(crate) fn record(&mut self, start: Instant, end: Instant) {
        self.rotate(end);
        let ns = end.duration_since(start).as_nanos().min(u64::MAX as u128) as u64;
        let s = &mut self.slots[self.current];
        s.counts[buckets::of(ns)] += 1;
        s.total += 1;
        s.max_ns = s.max_ns.max(ns);
    }

    pub(crate) fn summary(&mut self, now: Instant) -> TurnSummary {
        self.rotate(now);
        let mut merged = vec![0u64; BUCKETS];
        let mut count = 0u64;
        let mut max_ns = 0u64;
        for s in &self.slots {
            if s.total == 0 || now.duration_since(s.start) > SLOT * SLOTS as u32 {
                continue;
            }
            count += s.total;
            max_ns = max_ns.max(s.max_ns);
            for (m, c) in merged.iter_mut().zip(s.counts.iter()) {
                *m += u64::from(*c);
            }
        }
        let pct = |p: f64| -> f64 {
            if count == 0 {
                return 0.0;
            }
            let want = ((count as f64) * p).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (b, c) in merged.iter().enumerate() {
                seen += c;
                if seen >= want {
                    // Never above the exact maximum.
                    return buckets::upper(b).min(max_ns) as f64 / 1e6;
                }
            }
            0.0
        };
        let over_2ms = merged
            .iter()
            .enumerate()
            .filter(|(b, _)| *b > buckets::of(2_000_000))
            .map(|(_, c)| c)
            .sum();
        TurnSummary {
            count,
            p50_ms: pct(0.50),
            p99_ms: pct(0.99),
            p999_ms: pct(0.999),
            max_ms: max_ns as f64 / 1e6,
            over_2ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_max_and_expiry() {
        let t0 = Instant::now();
        let mut t = TurnStats::new(t0);
        for i in 0..1000u64 {
            let took = if i < 995 {
                Duration::from_micros(50)
            } else {
                Duration::from_millis(7)
            };
            t.record(t0, t0 + took);
        }
        let s = t.summary(t0 + Duration::from_secs(1));
        assert_eq!(s.count, 1000);
        assert!((0.045..0.06).contains(&s.p50_ms), "{s:?}");
        assert!((0.045..0.06).contains(&s.p99_ms), "{s:?}");
        assert!((6.9..7.1).contains(&s.max_ms), "{s:?}");
        assert_eq!(s.over_2ms, 5);
        let later = t.summary(t0 + Duration::from_secs(120));
        assert_eq!(later.count, 0, "a minute later the slots are empty");
        assert_eq!(later.max_ms, 0.0);
    }
}
