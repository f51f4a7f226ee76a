//! A diagnostic for stalls: with `P2PSHARE_SLOW_TURN_MS=N` set, every loop
//! turn longer than N ms is logged with where its time went (each phase of
//! the turn), how many events it handled, and how much of it the thread was
//! on a CPU (`CLOCK_THREAD_CPUTIME_ID`, and its context switches from
//! `getrusage(RUSAGE_THREAD)`): a long turn with little CPU time
//! was the machine's (the thread was descheduled), one with as much CPU
//! time was the loop's own work. Off by default: reading the thread's
//! CPU clock and rusage costs two system calls per turn. docs/architecture.md, "Stalls".

use std::time::{Duration, Instant};

/// The phases of a turn, in order (`Reactor::run`).
#[derive(Clone, Copy)]
pub(crate) enum Phase {
    Backlog,
    Events,
    Wake,
    Timers,
    Resume,
    Flush,
}

const NAMES: [&str; 6] = ["backlog", "events", "wake", "timers", "resume", "flush"];

pub(crate) struct SlowTurns {
    threshold: Option<Duration>,
    start: Option<Instant>,
    marks: [Duration; 6],
    last: Option<Instant>,
    cpu_us: i64,
    nivcsw: i64,
    nvcsw: i64,
    events: usize,
    flushed: u64,
}

/// The thread's CPU time in µs (its exact run time, not getrusage's
/// tick-sampled split) and its involuntary and voluntary context switches.
fn thread_usage() -> (i64, i64, i64) {
    // SAFETY: both calls fill zeroed structs we own.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let cpu = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let us = if cpu == 0 {
        ts.tv_sec * 1_000_000 + ts.tv_nsec / 1000
    } else {
        0
    };
    if rc != 0 {
        return (us, 0, 0);
    }
    (us, ru.ru_nivcsw, ru.ru_nvcsw)
}

impl SlowTurns {
    pub(crate) fn from_env() -> SlowTurns {
        let threshold = std::env::var("P2PSHARE_SLOW_TURN_MS")
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|ms| *ms > 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0));
        SlowTurns::new(threshold)
    }

    fn new(threshold: Option<Duration>) -> SlowTurns {
        SlowTurns {
            threshold,
            start: None,
            marks: [Duration::ZERO; 6],
            last: None,
            cpu_us: 0,
            nivcsw: 0,
            nvcsw: 0,
            events: 0,
            flushed: 0,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.threshold.is_some()
    }

    /// A turn starts (right after the poll returned `events` events).
    pub(crate) fn begin(&mut self, now: Instant, events: usize, flushed: u64) {
        if self.threshold.is_none() {
            return;
        }
        (self.cpu_us, self.nivcsw, self.nvcsw) = thread_usage();
        self.start = Some(now);
        self.last = Some(now);
        self.marks = [Duration::ZERO; 6];
        self.events = events;
        self.flushed = flushed;
    }

    /// `phase` ended now.
    pub(crate) fn mark(&mut self, phase: Phase) {
        let Some(last) = self.last else {
            return;
        };
        let now = Instant::now();
        self.marks[phase as usize] += now.saturating_duration_since(last);
        self.last = Some(now);
    }

    /// The turn ended at `end`: the line to log if it was slow.
    pub(crate) fn end(&mut self, end: Instant, flushed: u64) -> Option<String> {
        let (threshold, start) = (self.threshold?, self.start.take()?);
        let took = end.saturating_duration_since(start);
        if took < threshold {
            return None;
        }
        let (cpu_us, nivcsw, nvcsw) = thread_usage();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let phases: Vec<String> = NAMES
            .iter()
            .zip(self.marks.iter())
            .filter(|(_, d)| ms(**d) >= 0.05)
            .map(|(n, d)| format!("{n} {:.2}", ms(*d)))
            .collect();
        Some(format!(
            "reactor: slow turn {:.2} ms ({}), {} events, {} KiB written, on a CPU {:.2} ms, preempted {} times, slept {} times",
            ms(took),
            phases.join(", "),
            self.events,
            flushed.saturating_sub(self.flushed) / 1024,
            (cpu_us - self.cpu_us) as f64 / 1000.0,
            nivcsw - self.nivcsw,
            nvcsw - self.nvcsw,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_turn_is_reported_with_its_phases_and_a_quick_one_is_not() {
        let mut off = SlowTurns::new(None);
        assert!(!off.enabled());
        off.begin(Instant::now(), 3, 0);
        assert_eq!(off.end(Instant::now(), 10), None);

        let mut slow = SlowTurns::new(Some(Duration::from_millis(1)));
        let start = Instant::now();
        slow.begin(start, 7, 1000);
        while start.elapsed() < Duration::from_millis(2) {
            std::hint::spin_loop();
        }
        slow.mark(Phase::Events);
        slow.mark(Phase::Flush);
        let line = slow
            .end(Instant::now(), 1000 + 64 * 1024)
            .expect("a slow turn");
        assert!(line.starts_with("reactor: slow turn "), "{line}");
        assert!(line.contains("(events "), "{line}");
        assert!(line.contains("7 events, 64 KiB written"), "{line}");
        // Busy on a CPU: the thread's CPU time is counted.
        let cpu: f64 = line
            .split("on a CPU ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|v| v.parse().ok())
            .expect("cpu figure");
        assert!(cpu > 0.0, "{line}");

        let mut quick = SlowTurns::new(Some(Duration::from_secs(1)));
        quick.begin(Instant::now(), 1, 0);
        assert_eq!(quick.end(Instant::now(), 0), None);
    }
}
