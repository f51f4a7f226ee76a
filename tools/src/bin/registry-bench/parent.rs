//! The parent side: starts the shards, runs the passes (coordinator, then the echo reference), merges histograms and samples CPU.

use crate::report::report;
use crate::Cfg;
use crate::TOOL;
use p2pshare_tools::echo::Echo;
use p2pshare_tools::hist::{OpHist, OpSet, Reasons};
use p2pshare_tools::proc::{self, Monitor, Sample};
use p2pshare_tools::progress::Progress;
use p2pshare_tools::report::thousands;
use p2pshare_tools::scenario::{Leave, OPS};
use p2pshare_tools::shard::Shards;
use p2pshare_tools::tokens::Auth;
use p2pshare_tools::{die, reach, rlimit, server_stats};
use serde_json::Value;
use std::time::{Duration, Instant};

/// What one measured pass (against the coordinator or the echo server) produced.
pub(crate) struct Pass {
    pub(crate) ops: OpSet,
    /// Paced scenario runs: how late the client processes queued their requests
    /// after the intended times (their own loops were busy).
    pub(crate) send_lag: Option<OpHist>,
    pub(crate) clients: u64,
    pub(crate) clients_ok: u64,
    /// Scenario: time until the last client finished; hold: the load window.
    pub(crate) duration_s: f64,
    pub(crate) answered: u64,
    pub(crate) throughput_rps: f64,
    pub(crate) reasons: Reasons,
    pub(crate) started: Instant,
    pub(crate) ended: Instant,
    /// Hold mode: connections registered before the load started.
    pub(crate) ready: u64,
    pub(crate) rss_before_mb: Option<f64>,
    pub(crate) rss_after_mb: Option<f64>,
    /// CPU of the client processes together over the pass (percent of one core).
    pub(crate) clients_cpu_pct: Option<f64>,
    /// CPU of this process over the pass: the echo server's, in the reference pass.
    pub(crate) own_cpu_pct: Option<f64>,
    /// The whole machine's CPU over the pass (others' load shows here).
    pub(crate) machine_cpu_pct: Option<proc::MachineUse>,
    /// The coordinator's loop thread over the pass: (ms on a CPU, ms ready
    /// but waiting for one).
    pub(crate) coord_sched_ms: Option<(f64, f64)>,
}

/// CPU samples of the client processes, this one and the machine, taken at GO.
pub(crate) struct CpuMark(
    Vec<Option<Sample>>,
    Option<Sample>,
    Option<proc::MachineTicks>,
);

impl CpuMark {
    fn take(pids: &[u32]) -> CpuMark {
        CpuMark(
            pids.iter().map(|&p| proc::sample(p)).collect(),
            proc::sample(std::process::id()),
            proc::machine_ticks(),
        )
    }

    /// (clients together, this process, the machine) since the mark; None where a sample
    /// is missing.
    fn since(&self, pids: &[u32]) -> (Option<f64>, Option<f64>, Option<proc::MachineUse>) {
        let machine = self
            .2
            .zip(proc::machine_ticks())
            .map(|(a, b)| proc::machine_use(a, b, cores()));
        let mut total = 0.0;
        let mut all = true;
        for (a, &p) in self.0.iter().zip(pids) {
            match (a, proc::sample(p)) {
                (Some(a), Some(b)) => total += proc::cpu_between(a, &b),
                _ => all = false,
            }
        }
        let own = self
            .1
            .as_ref()
            .zip(proc::sample(std::process::id()))
            .map(|(a, b)| proc::cpu_between(a, &b));
        (all.then_some(total), own, machine)
    }
}

pub(crate) fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

pub(crate) fn child_args(
    cfg: &Cfg,
    target: &str,
    i: usize,
    n: usize,
    reference: bool,
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "--shard".into(),
        format!("{i}/{n}"),
        "--coordinator".into(),
        target.into(),
        "--clients".into(),
        cfg.clients.to_string(),
        "--files".into(),
        cfg.files.to_string(),
        "--run".into(),
        cfg.run.clone(),
        "--timeout".into(),
        cfg.timeout.to_string(),
        "--source-ips".into(),
        cfg.source_ips.to_string(),
        "--connect-burst".into(),
        cfg.connect_burst.to_string(),
        "--token-threads".into(),
        cfg.token_threads.to_string(),
        "--duration".into(),
        cfg.duration.to_string(),
        "--pipeline".into(),
        cfg.pipeline.to_string(),
        "--ping-share".into(),
        cfg.ping_share.to_string(),
    ];
    let mut opt = |k: &str, val: Option<String>| {
        if let Some(x) = val {
            v.push(k.into());
            v.push(x);
        }
    };
    opt("--concurrency", cfg.concurrency.map(|c| c.to_string()));
    opt("--hold", cfg.hold.map(|c| c.to_string()));
    opt("--rate", cfg.rate.map(|c| c.to_string()));
    opt("--leave", cfg.leave.map(|l| l.name().to_string()));
    opt(
        "--full-list-every",
        cfg.full_list_every.map(|c| c.to_string()),
    );
    opt("--list-query", cfg.list_query.clone());
    match (&cfg.pacing, cfg.hold) {
        (_, Some(_)) => {}
        (None, None) => v.push("--burst".into()),
        (Some(p), None) => {
            v.push("--arrival-rate".into());
            v.push(p.arrival_rate.to_string());
            v.push("--think".into());
            v.push((p.think.as_secs_f64() * 1000.0).to_string());
        }
    }
    // The echo server ignores tokens; do not make the server API register everyone again.
    match (&cfg.auth, reference) {
        (_, true) | (Auth::Anonymous, _) => v.push("--anonymous".into()),
        (Auth::Mint(s), false) => {
            v.push("--jwt-secret".into());
            v.push(String::from_utf8_lossy(s).into_owned());
        }
        (Auth::Api(u), false) => {
            v.push("--api".into());
            v.push(u.clone());
        }
    }
    v
}

/// Sums the latest progress of every shard into one line.
pub(crate) struct ProgSum {
    pub(crate) latest: Vec<Value>,
    pub(crate) line: Progress,
    pub(crate) label: &'static str,
    pub(crate) total: usize,
    pub(crate) started: Instant,
}

impl ProgSum {
    fn new(n: usize, label: &'static str, total: usize) -> Self {
        ProgSum {
            latest: vec![Value::Null; n],
            line: Progress::new(),
            label,
            total,
            started: Instant::now(),
        }
    }

    fn feed(&mut self, i: usize, text: &str) {
        if let (Some(slot), Ok(v)) = (self.latest.get_mut(i), serde_json::from_str(text)) {
            *slot = v;
        }
        let sum = |k: &str| -> u64 { self.latest.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum() };
        let el = self.started.elapsed().as_secs_f64().max(0.001);
        let s = match self.label {
            "load" => format!(
                "load: sent {}, answered {} ({:.0}/s), errors {}, connections {}",
                thousands(sum("sent")),
                thousands(sum("answered")),
                sum("answered") as f64 / el,
                thousands(sum("errors")),
                thousands(sum("open")),
            ),
            "setup" => format!(
                "setup: {} / {} connections registered, {} failed",
                thousands(sum("ok")),
                thousands(self.total as u64),
                thousands(sum("done") - sum("ok")),
            ),
            _ => format!(
                "clients {} / {} done ({} ok), open {}, answers {} ({:.0}/s), errors {}",
                thousands(sum("done")),
                thousands(self.total as u64),
                thousands(sum("ok")),
                thousands(sum("open")),
                thousands(sum("answered")),
                sum("answered") as f64 / el,
                thousands(sum("errors")),
            ),
        };
        self.line.update(&s);
    }
}

pub(crate) fn fail_parent(shards: Shards, msg: String) -> ! {
    shards.kill();
    die(TOOL, msg)
}

pub(crate) fn merge_results(results: &[String]) -> Result<(OpSet, Reasons, Vec<Value>), String> {
    let mut ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let mut vals = Vec::new();
    for (i, r) in results.iter().enumerate() {
        let v: Value =
            serde_json::from_str(r).map_err(|e| format!("shard {i} sent a bad result: {e}"))?;
        ops.merge_wire(&v["ops"])
            .map_err(|e| format!("shard {i}: {e}"))?;
        reasons.merge_json(&v["reasons"]);
        vals.push(v);
    }
    Ok((ops, reasons, vals))
}

pub(crate) fn sum(vals: &[Value], k: &str) -> u64 {
    vals.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum()
}

pub(crate) fn run_pass(
    cfg: &Cfg,
    target: &str,
    n: usize,
    reference: bool,
    mon: Option<&Monitor>,
) -> Pass {
    let what = if reference {
        "echo reference"
    } else {
        "coordinator"
    };
    eprintln!(
        "{TOOL}: run {} against the {what} at {target}: {} process(es)",
        cfg.run, n
    );
    let rss = |m: Option<&Monitor>| m.and_then(|m| m.now()).map(|s| s.rss_kb as f64 / 1024.0);
    let rss_before_mb = if reference { None } else { rss(mon) };
    let sched_pid = if reference { None } else { cfg.coordinator_pid };
    let sched_at = |pid: Option<u32>| pid.and_then(proc::sched);
    let sched_between = |a: Option<(u64, u64)>, b: Option<(u64, u64)>| {
        a.zip(b).map(|(a, b)| {
            (
                b.0.saturating_sub(a.0) as f64 / 1e6,
                b.1.saturating_sub(a.1) as f64 / 1e6,
            )
        })
    };
    let mut shards = Shards::spawn(n, |i| child_args(cfg, target, i, n, reference))
        .unwrap_or_else(|e| die(TOOL, e));
    if cfg.hold.is_some() {
        let mut p = ProgSum::new(n, "setup", cfg.clients);
        let ready = match shards.collect("READY", |i, t| p.feed(i, t)) {
            Ok(r) => r,
            Err(e) => fail_parent(shards, e),
        };
        p.line.clear();
        let ready: u64 = ready
            .iter()
            .map(|r| {
                serde_json::from_str::<Value>(r)
                    .map(|v| v["ready"].as_u64().unwrap_or(0))
                    .unwrap_or(0)
            })
            .sum();
        eprintln!(
            "{TOOL}: {} / {} connections registered",
            thousands(ready),
            thousands(cfg.clients as u64)
        );
        let rss_after_mb = if reference { None } else { rss(mon) };
        let pids = shards.pids();
        let mark = CpuMark::take(&pids);
        let sched0 = sched_at(sched_pid);
        let started = Instant::now();
        shards.broadcast("GO");
        let mut p = ProgSum::new(n, "load", cfg.clients);
        let results = match shards.collect("RESULT", |i, t| p.feed(i, t)) {
            Ok(r) => r,
            Err(e) => fail_parent(shards, e),
        };
        let ended = Instant::now();
        let coord_sched_ms = sched_between(sched0, sched_at(sched_pid));
        let (clients_cpu_pct, own_cpu_pct, machine_cpu_pct) = mark.since(&pids);
        p.line.clear();
        shards.finish();
        let (ops, reasons, vals) = merge_results(&results).unwrap_or_else(|e| die(TOOL, e));
        let in_window = sum(&vals, "answered_in_window");
        Pass {
            ops,
            send_lag: None,
            clients: cfg.clients as u64,
            clients_ok: sum(&vals, "clients_ok"),
            duration_s: cfg.duration,
            answered: sum(&vals, "answered"),
            throughput_rps: in_window as f64 / cfg.duration,
            reasons,
            started,
            ended,
            ready,
            rss_before_mb,
            rss_after_mb,
            clients_cpu_pct,
            own_cpu_pct,
            machine_cpu_pct,
            coord_sched_ms,
        }
    } else {
        let mut p = ProgSum::new(n, "clients", cfg.clients);
        // Tokens first (slow through the API), then every shard starts at one GO.
        if let Err(e) = shards.collect("READY", |i, t| p.feed(i, t)) {
            fail_parent(shards, e)
        }
        let pids = shards.pids();
        let mark = CpuMark::take(&pids);
        let sched0 = sched_at(sched_pid);
        let started = Instant::now();
        shards.broadcast("GO");
        let results = match shards.collect("RESULT", |i, t| p.feed(i, t)) {
            Ok(r) => r,
            Err(e) => fail_parent(shards, e),
        };
        let ended = Instant::now();
        let coord_sched_ms = sched_between(sched0, sched_at(sched_pid));
        let (clients_cpu_pct, own_cpu_pct, machine_cpu_pct) = mark.since(&pids);
        p.line.clear();
        shards.finish();
        let (ops, reasons, vals) = merge_results(&results).unwrap_or_else(|e| die(TOOL, e));
        let duration_s = vals
            .iter()
            .map(|v| v["elapsed_s"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let answered = sum(&vals, "answered");
        let send_lag = (cfg.hold.is_none() && cfg.pacing.is_some()).then(|| {
            let mut lag = OpHist::default();
            for v in &vals {
                if let Ok(h) = OpHist::from_wire(&v["send_lag"]) {
                    lag.merge(&h);
                }
            }
            lag
        });
        // The coordinator's window is the clients' run, not process start-up and tokens.
        let started = ended
            .checked_sub(Duration::from_secs_f64(duration_s))
            .unwrap_or(started)
            .max(started);
        Pass {
            ops,
            send_lag,
            clients: sum(&vals, "clients"),
            clients_ok: sum(&vals, "clients_ok"),
            duration_s,
            answered,
            throughput_rps: if duration_s > 0.0 {
                answered as f64 / duration_s
            } else {
                0.0
            },
            reasons,
            started,
            ended,
            ready: 0,
            rss_before_mb,
            rss_after_mb: None,
            clients_cpu_pct,
            own_cpu_pct,
            machine_cpu_pct,
            coord_sched_ms,
        }
    }
}

/// The 1m preset's ceiling on connections open at once.
const MAX_1M_CONNECTED: usize = 18_000;

pub(crate) fn success_rate(p: &Pass) -> f64 {
    if p.clients == 0 {
        0.0
    } else {
        p.clients_ok as f64 / p.clients as f64
    }
}

pub(crate) fn parent(mut cfg: Cfg) {
    let soft = rlimit::raise_and_report(TOOL);
    let addr = reach(TOOL, "coordinator", &cfg.coordinator);
    cfg.coordinator = addr.to_string();
    let mon = cfg.coordinator_pid.map(|pid| {
        Monitor::start(pid, Duration::from_millis(100)).unwrap_or_else(|e| die(TOOL, e))
    });

    // One process's share of descriptors, leaving room for stdio, poll and pipes.
    let per_process = (soft as usize).saturating_sub(256).max(100);
    let coord_fit = rlimit::coordinator_fit(cfg.coordinator_pid, per_process);
    let conns = match cfg.hold {
        Some(n) => n,
        None => {
            let c = cfg.concurrency.unwrap_or(match cfg.preset.as_deref() {
                Some("100k") => coord_fit.min(cfg.clients),
                Some("1m") => coord_fit.min(MAX_1M_CONNECTED).min(cfg.clients),
                _ => cfg.clients,
            });
            let c = c.clamp(1, cfg.clients.max(1));
            cfg.concurrency = Some(c);
            if cfg.leave.is_none() {
                cfg.leave = Some(if c >= cfg.clients {
                    Leave::Stay
                } else {
                    Leave::Close
                });
            }
            if cfg.leave == Some(Leave::Stay) && c < cfg.clients {
                die(
                    TOOL,
                    format!(
                        "--leave stay needs every client connected at once, but concurrency is {c} of {} clients",
                        cfg.clients
                    ),
                );
            }
            if cfg.full_list_every.is_none() {
                cfg.full_list_every = Some(match cfg.preset.as_deref() {
                    Some("1m") => 0,
                    _ if cfg.clients >= 100_000 => 10_000,
                    _ => 100,
                });
            }
            if c > coord_fit {
                eprintln!(
                    "{TOOL}: warning: {c} connections at once may exceed the coordinator's open-files limit"
                );
            }
            c
        }
    };
    let n = cfg.shards.max(conns.div_ceil(per_process));
    eprintln!(
        "{TOOL}: {} connection(s) at once over {n} process(es) of at most {} each",
        thousands(conns as u64),
        thousands(per_process as u64)
    );

    let poller = cfg.stats_api.as_deref().and_then(|api| {
        server_stats::Poller::start(api, Duration::from_secs(5))
            .map_err(|e| eprintln!("{TOOL}: warning: no server-side figures from {api}: {e}"))
            .ok()
    });
    let main = run_pass(&cfg, &cfg.coordinator, n, false, mon.as_ref());
    let own = poller.map(|p| p.finish());
    let cstats = mon.as_ref().and_then(|m| m.stats(main.started, main.ended));

    let reference = if cfg.reference_echo {
        let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n")
            .unwrap_or_else(|e| die(TOOL, format!("cannot start the echo server: {e}")));
        // This process now holds the server side of every connection: the clients must all
        // live in children, which they already do.
        if conns > per_process {
            eprintln!(
                "{TOOL}: warning: the echo server needs {conns} descriptors in this process (limit {soft})"
            );
        }
        let target = echo.addr.to_string();
        let r = run_pass(&cfg, &target, n, true, None);
        drop(echo);
        Some(r)
    } else {
        None
    };
    if let Some(m) = mon {
        m.stop();
    }
    report(
        &cfg,
        conns,
        n,
        &main,
        cstats,
        own.as_ref(),
        reference.as_ref(),
    );
}
