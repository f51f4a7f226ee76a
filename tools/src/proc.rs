//! Sampling another process's CPU time and memory from /proc/PID/stat and /proc/PID/status
//! on a background thread, and summarising any time window of those samples.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// One reading. Memory in KiB, CPU as clock ticks since the process started.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t: Instant,
    pub ticks: u64,
    pub rss_kb: u64,
    pub hwm_kb: u64,
    pub anon_kb: u64,
}

/// A window's summary. CPU percent is of one core (two busy cores read 200).
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub cpu_mean_pct: f64,
    /// Highest CPU over any one-second stretch of the window.
    pub cpu_peak_pct: f64,
    pub rss_mean_mb: f64,
    pub rss_peak_mb: f64,
    /// The kernel's high-water mark of resident memory (whole process life).
    pub hwm_mb: f64,
    pub anon_peak_mb: f64,
}

fn ticks_per_s() -> f64 {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// Read one sample of `pid` now; None if the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    // The command name may hold spaces and ')' itself; the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    let kb = |key: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(Sample {
        t: Instant::now(),
        ticks: utime + stime,
        rss_kb: kb("VmRSS:"),
        hwm_kb: kb("VmHWM:"),
        anon_kb: kb("RssAnon:"),
    })
}

/// The whole machine's CPU time so far from /proc/stat, in clock ticks over all cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTicks {
    /// Time in processes (user, nice, system): comparable with processes' own times.
    pub procs: u64,
    /// Interrupts and softirqs: loopback TCP's receive work. /proc/stat books it here even
    /// when it ran in a process's context and that process's own time counts it too.
    pub irq: u64,
    pub all: u64,
}

/// The machine's CPU use between two readings, in percent of one core (two busy cores
/// read 200).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MachineUse {
    pub procs_pct: f64,
    pub irq_pct: f64,
}

pub fn machine_ticks() -> Option<MachineTicks> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = line
        .split_whitespace()
        .take(8)
        .filter_map(|x| x.parse().ok())
        .collect();
    if f.len() < 8 {
        return None;
    }
    Some(MachineTicks {
        procs: f[0] + f[1] + f[2],
        irq: f[5] + f[6],
        all: f.iter().sum(),
    })
}

pub fn machine_use(a: MachineTicks, b: MachineTicks, cores: usize) -> MachineUse {
    let all = b.all.saturating_sub(a.all);
    if all == 0 {
        return MachineUse::default();
    }
    let pct = |x: u64, y: u64| y.saturating_sub(x) as f64 / all as f64 * cores as f64 * 100.0;
    MachineUse {
        procs_pct: pct(a.procs, b.procs),
        irq_pct: pct(a.irq, b.irq),
    }
}

/// CPU used between two samples of one process, in percent of one core.
/// (time on a CPU, time waiting on a run queue) of `pid`'s main thread, in
/// nanoseconds, from /proc/PID/schedstat. The coordinator's loop is its main
/// thread: the wait is how long it was ready to work but not running, which
/// on a shared machine adds to every latency without being the server's cost.
pub fn sched(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/schedstat")).ok()?;
    let mut f = s.split_whitespace().map(|x| x.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

pub fn cpu_between(a: &Sample, b: &Sample) -> f64 {
    let span = b.t.duration_since(a.t).as_secs_f64();
    if span <= 0.0 {
        return 0.0;
    }
    b.ticks.saturating_sub(a.ticks) as f64 / ticks_per_s() / span * 100.0
}

/// Samples `pid` every `period` until stopped.
pub struct Monitor {
    pub pid: u32,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Monitor {
    pub fn start(pid: u32, period: Duration) -> Result<Monitor, String> {
        let first =
            sample(pid).ok_or_else(|| format!("no process {pid} to watch (/proc/{pid})"))?;
        let samples = Arc::new(Mutex::new(vec![first]));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, stop2) = (samples.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("proc-monitor".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(period);
                    match sample(pid) {
                        Some(x) => match s2.lock() {
                            Ok(mut v) => v.push(x),
                            Err(_) => return,
                        },
                        None => return,
                    }
                }
            })
            .map_err(|e| format!("cannot start the monitor thread: {e}"))?;
        Ok(Monitor {
            pid,
            samples,
            stop,
            thread: Some(thread),
        })
    }

    /// Take a sample right now (also recorded), e.g. to mark the start of a window.
    pub fn now(&self) -> Option<Sample> {
        let s = sample(self.pid)?;
        if let Ok(mut v) = self.samples.lock() {
            v.push(s);
        }
        Some(s)
    }

    /// Summary of the samples taken between `from` and `to`.
    pub fn stats(&self, from: Instant, to: Instant) -> Option<Stats> {
        let v = self.samples.lock().ok()?;
        let w: Vec<Sample> = v
            .iter()
            .filter(|s| s.t >= from && s.t <= to)
            .copied()
            .collect();
        summarise(&w, ticks_per_s())
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn summarise(w: &[Sample], hz: f64) -> Option<Stats> {
    let first = w.first()?;
    let last = w.last()?;
    let mb = |kb: u64| kb as f64 / 1024.0;
    let span = last.t.duration_since(first.t).as_secs_f64();
    let cpu_mean_pct = if span > 0.0 {
        (last.ticks.saturating_sub(first.ticks)) as f64 / hz / span * 100.0
    } else {
        0.0
    };
    // Peak over one-second stretches: a single 100 ms sample holds only ~10 clock ticks,
    // too coarse to call a peak.
    let mut cpu_peak_pct: f64 = 0.0;
    let mut j = 0;
    for i in 0..w.len() {
        while j < w.len() && w[j].t.duration_since(w[i].t) < Duration::from_secs(1) {
            j += 1;
        }
        if j >= w.len() {
            break;
        }
        let dt = w[j].t.duration_since(w[i].t).as_secs_f64();
        let pct = w[j].ticks.saturating_sub(w[i].ticks) as f64 / hz / dt * 100.0;
        cpu_peak_pct = cpu_peak_pct.max(pct);
    }
    if cpu_peak_pct == 0.0 {
        cpu_peak_pct = cpu_mean_pct;
    }
    let n = w.len() as f64;
    Some(Stats {
        cpu_mean_pct,
        cpu_peak_pct,
        rss_mean_mb: w.iter().map(|s| mb(s.rss_kb)).sum::<f64>() / n,
        rss_peak_mb: w.iter().map(|s| mb(s.rss_kb)).fold(0.0, f64::max),
        hwm_mb: mb(last.hwm_kb),
        anon_peak_mb: w.iter().map(|s| mb(s.anon_kb)).fold(0.0, f64::max),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process_and_sees_cpu_spent() {
        let pid = std::process::id();
        let m = Monitor::start(pid, Duration::from_millis(20)).unwrap();
        let from = Instant::now() - Duration::from_millis(50);
        let t0 = Instant::now();
        let mut x = 0u64;
        while t0.elapsed() < Duration::from_millis(1300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        m.now();
        let s = m.stats(from, Instant::now()).unwrap();
        assert!(s.cpu_mean_pct > 30.0, "{s:?}");
        assert!(s.cpu_peak_pct > 30.0, "{s:?}");
        assert!(s.rss_peak_mb > 0.1 && s.anon_peak_mb > 0.0, "{s:?}");
        m.stop();
        assert!(Monitor::start(u32::MAX - 1, Duration::from_millis(10)).is_err());
    }

    #[test]
    fn machine_busy_counts_every_core() {
        let m = machine_ticks().unwrap();
        assert!(m.procs + m.irq <= m.all && m.all > 0);
        let t = |procs, irq, all| MachineTicks { procs, irq, all };
        // Half of 400 ticks in processes on two cores: one core's worth.
        let u = machine_use(t(100, 0, 1000), t(300, 40, 1400), 2);
        assert_eq!(u.procs_pct, 100.0);
        assert_eq!(u.irq_pct, 20.0);
        assert_eq!(
            machine_use(t(5, 0, 10), t(5, 0, 10), 2),
            MachineUse::default()
        );
    }
}
