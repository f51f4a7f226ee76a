//! The paced preset's schedule: when each simulated client arrives (open loop, a fixed
//! rate over all shards) and the think time before each of its operations. Pure
//! functions of the client and step numbers; no clock, no I/O.

use crate::prng::SplitMix64;
use std::time::Duration;

/// How long each preset should take when paced; the default arrival rate follows from it.
pub const PRESET_SECONDS: &[(&str, usize, f64)] = &[
    ("1k", 1_000, 10.0),
    ("10k", 10_000, 20.0),
    ("100k", 100_000, 60.0),
    // One million clients over ten minutes at the 100k preset's arrival rate.
    ("1m", 1_000_000, 600.0),
];

/// The default think time between one client's operations (a node's, not a load
/// generator's: it talks, then waits for its user or its timer).
pub const DEFAULT_THINK_MS: f64 = 50.0;
/// Think times are uniform in `[1 - JITTER, 1 + JITTER] × think`, so clients drift apart
/// instead of marching in step.
pub const DEFAULT_JITTER: f64 = 0.5;

/// How early a scheduled request may go out. A poll wait is rounded up to whole
/// milliseconds, so a loop that sends only what is due wakes up to a millisecond late
/// and would add that to every latency timed from the intended time. Sending what falls
/// due within this much, timed from the real send, costs the schedule nothing.
pub const EARLY: Duration = Duration::from_millis(1);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    /// Clients arriving per second, over all shards together.
    pub arrival_rate: f64,
    /// Mean pause before each operation after arrival.
    pub think: Duration,
    /// Relative spread of the pause (0.5: ±50 %).
    pub jitter: f64,
}

/// The arrival rate that makes `preset` take about its intended time (None: unknown
/// preset). An overridden client count keeps the preset's rate.
pub fn default_rate(preset: &str) -> Option<f64> {
    PRESET_SECONDS
        .iter()
        .find(|(p, _, _)| *p == preset)
        .map(|(_, clients, secs)| *clients as f64 / secs)
}

/// The arrival slot of local client `j` of shard `i` of `n`. Shards interleave (0, n, 2n…
/// for shard 0) so every process carries an equal share of arrivals at every moment.
/// Together with `shard::split` the slots of all shards are exactly `0..total`.
pub fn slot(i: usize, n: usize, j: usize) -> usize {
    j * n.max(1) + i
}

impl Pacing {
    /// When the client in `slot` arrives (connects), counted from the run's start.
    pub fn arrival(&self, slot: usize) -> Duration {
        if self.arrival_rate <= 0.0 || !self.arrival_rate.is_finite() {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(slot as f64 / self.arrival_rate)
    }

    /// The pause before operation `step` (1 = the first after connecting) of client
    /// `global`: the same in every process and every run.
    pub fn think(&self, global: usize, step: usize) -> Duration {
        let j = self.jitter.clamp(0.0, 1.0);
        let seed = (global as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ ((step as u64) << 48);
        let u = SplitMix64::new(seed ^ 0x7468_696e_6b00).unit();
        self.think.mul_f64(1.0 - j + 2.0 * j * u)
    }

    /// The intended send times of a client's operations after it arrives at `arrival`:
    /// each is the one before plus a think time. An operation whose answer comes late is
    /// still timed from here, so a slow server shows in the latencies (coordinated
    /// omission corrected) instead of slowing the schedule down.
    pub fn schedule(&self, global: usize, arrival: Duration, steps: usize) -> Vec<Duration> {
        let mut t = arrival;
        (1..=steps)
            .map(|k| {
                t += self.think(global, k);
                t
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::split;

    fn p(rate: f64, think_ms: u64) -> Pacing {
        Pacing {
            arrival_rate: rate,
            think: Duration::from_millis(think_ms),
            jitter: DEFAULT_JITTER,
        }
    }

    #[test]
    fn presets_take_their_intended_time() {
        for (name, clients, secs) in PRESET_SECONDS {
            let pace = p(default_rate(name).unwrap(), 50);
            let last = pace.arrival(clients - 1).as_secs_f64();
            assert!((last - secs).abs() < 0.01, "{name}: {last}");
        }
        assert_eq!(default_rate("1k"), Some(100.0));
        assert_eq!(default_rate("2k"), None);
    }

    #[test]
    fn arrivals_are_evenly_spaced_at_the_rate() {
        let pace = p(500.0, 50);
        assert_eq!(pace.arrival(0), Duration::ZERO);
        assert_eq!(pace.arrival(1), Duration::from_millis(2));
        assert_eq!(pace.arrival(500), Duration::from_secs(1));
        assert_eq!(p(0.0, 50).arrival(7), Duration::ZERO);
    }

    #[test]
    fn interleaved_slots_cover_every_client_once() {
        for total in [0, 1, 5, 99, 100, 101] {
            for n in 1..5 {
                let mut seen = vec![false; total];
                for i in 0..n {
                    let (_, count) = split(total, i, n);
                    for j in 0..count {
                        let s = slot(i, n, j);
                        assert!(s < total && !seen[s], "total {total} n {n} slot {s}");
                        seen[s] = true;
                    }
                }
                assert!(seen.iter().all(|&x| x));
            }
        }
    }

    #[test]
    fn think_times_stay_in_band_average_out_and_repeat() {
        let pace = p(100.0, 50);
        let (mut sum, mut lo, mut hi) = (0.0, f64::MAX, 0.0f64);
        let n = 20_000;
        for g in 0..n / 10 {
            for k in 1..=10 {
                let t = pace.think(g, k).as_secs_f64() * 1000.0;
                assert!((25.0..=75.0).contains(&t), "{t}");
                sum += t;
                lo = lo.min(t);
                hi = hi.max(t);
            }
        }
        let mean = sum / n as f64;
        assert!((mean - 50.0).abs() < 1.0, "{mean}");
        // The band is actually used, not collapsed to the mean.
        assert!(lo < 27.0 && hi > 73.0, "{lo} {hi}");
        assert_eq!(pace.think(7, 3), pace.think(7, 3));
        assert_ne!(pace.think(7, 3), pace.think(7, 4));
        assert_ne!(pace.think(7, 3), pace.think(8, 3));
        let fixed = Pacing {
            jitter: 0.0,
            ..pace
        };
        assert_eq!(fixed.think(3, 1), Duration::from_millis(50));
    }

    #[test]
    fn schedule_accumulates_think_times_from_the_arrival() {
        let pace = p(10.0, 50);
        let arrival = pace.arrival(3);
        let s = pace.schedule(3, arrival, 4);
        assert_eq!(s.len(), 4);
        assert_eq!(s[0], arrival + pace.think(3, 1));
        for k in 1..4 {
            assert_eq!(s[k], s[k - 1] + pace.think(3, k + 1));
        }
        let none = Pacing {
            think: Duration::ZERO,
            ..pace
        };
        assert_eq!(none.schedule(3, arrival, 2), vec![arrival, arrival]);
    }
}
