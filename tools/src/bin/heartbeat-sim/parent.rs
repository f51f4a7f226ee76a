//! The parent side: starts the shards for each strategy phase, collects their counts and latencies, runs the echo reference.

use crate::report::report;
use crate::report::Ran;
use crate::Cfg;
use crate::TOOL;
use p2pshare_tools::echo::Echo;
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::proc::{self, Monitor, Stats};
use p2pshare_tools::progress::Progress;
use p2pshare_tools::report::thousands;
use p2pshare_tools::scenario::OPS;
use p2pshare_tools::shard::Shards;
use p2pshare_tools::tokens::Auth;
use p2pshare_tools::{die, reach, rlimit};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

pub(crate) fn child_args(cfg: &Cfg, conns: usize, i: usize, n: usize) -> Vec<String> {
    let mut v: Vec<String> = [
        "--shard",
        &format!("{i}/{n}"),
        "--coordinator",
        &cfg.coordinator,
        "--clients",
        &cfg.clients.to_string(),
        "--connections",
        &conns.to_string(),
        "--mix",
        &format!(
            "idle={},active={},busy={}",
            cfg.mix[0], cfg.mix[1], cfg.mix[2]
        ),
        "--intervals",
        &format!(
            "idle={},active={},busy={}",
            cfg.intervals[0], cfg.intervals[1], cfg.intervals[2]
        ),
        "--fixed-interval",
        &cfg.fixed_interval.to_string(),
        "--state-change-every",
        &cfg.state_change_every.to_string(),
        "--nat-keepalive",
        &cfg.nat_keepalive.to_string(),
        "--time-scale",
        &cfg.scale.to_string(),
        "--duration",
        &cfg.duration.to_string(),
        "--source-ips",
        &cfg.source_ips.to_string(),
        "--connect-burst",
        &cfg.connect_burst.to_string(),
        "--timeout",
        &cfg.timeout.to_string(),
        "--run",
        &cfg.run,
        "--token-threads",
        &cfg.token_threads.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match &cfg.auth {
        Auth::Anonymous => v.push("--anonymous".into()),
        Auth::Mint(s) => {
            v.push("--jwt-secret".into());
            v.push(String::from_utf8_lossy(s).into_owned());
        }
        Auth::Api(u) => {
            v.push("--api".into());
            v.push(u.clone());
        }
    }
    v
}

pub(crate) fn collect(shards: &mut Shards, word: &str, label: &str) -> Vec<Value> {
    let n = shards.len();
    let mut latest = vec![Value::Null; n];
    let mut line = Progress::new();
    let res = shards.collect(word, |i, t| {
        if let (Some(slot), Ok(v)) = (latest.get_mut(i), serde_json::from_str(t)) {
            *slot = v;
        }
        let sum = |k: &str| -> u64 { latest.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum() };
        line.update(&match label {
            "setup" => format!(
                "setup: {} connections registered, {} finished",
                thousands(sum("ok")),
                thousands(sum("done"))
            ),
            _ => format!(
                "{label}: sent {}, answered {}, errors {}",
                thousands(sum("sent")),
                thousands(sum("answered")),
                thousands(sum("errors"))
            ),
        });
    });
    line.clear();
    match res {
        Ok(v) => v
            .iter()
            .map(|s| serde_json::from_str(s).unwrap_or(Value::Null))
            .collect(),
        Err(e) => {
            shards.kill_all();
            die(TOOL, e)
        }
    }
}

pub(crate) struct PhaseReport {
    pub(crate) ops: OpSet,
    pub(crate) reasons: Reasons,
    pub(crate) sent: u64,
    pub(crate) in_window: u64,
    pub(crate) cpu: Option<Stats>,
    pub(crate) saturated: Option<String>,
    /// The client processes together and the whole machine, percent of one core.
    pub(crate) clients_cpu: Option<f64>,
    pub(crate) machine_cpu: Option<proc::MachineUse>,
}

pub(crate) fn parent(mut cfg: Cfg) {
    let soft = rlimit::raise_and_report(TOOL);
    let addr = reach(TOOL, "coordinator", &cfg.coordinator);
    cfg.coordinator = addr.to_string();
    let mon = cfg.coordinator_pid.map(|pid| {
        Monitor::start(pid, Duration::from_millis(100)).unwrap_or_else(|e| die(TOOL, e))
    });
    let per_process = (soft as usize).saturating_sub(256).max(100);
    let coord_fit = rlimit::coordinator_fit(cfg.coordinator_pid, per_process);
    let conns = cfg
        .connections
        .unwrap_or_else(|| coord_fit.min(cfg.clients))
        .clamp(1, cfg.clients);
    let n = cfg.shards.max(conns.div_ceil(per_process));
    let pooled = conns < cfg.clients;
    eprintln!(
        "{TOOL}: run {}: {} simulated clients over {} registered connection(s){} in {n} process(es)",
        cfg.run,
        thousands(cfg.clients as u64),
        thousands(conns as u64),
        if pooled { " (shared pool)" } else { "" }
    );
    let mut shards =
        Shards::spawn(n, |i| child_args(&cfg, conns, i, n)).unwrap_or_else(|e| die(TOOL, e));
    let ready = collect(&mut shards, "READY", "setup");
    let mut setup = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let mut registered = 0u64;
    for v in &ready {
        registered += v["ready"].as_u64().unwrap_or(0);
        if let Err(e) = setup.merge_wire(&v["ops"]) {
            die(TOOL, e);
        }
        reasons.merge_json(&v["reasons"]);
    }
    eprintln!(
        "{TOOL}: {} / {} connections registered",
        thousands(registered),
        thousands(conns as u64)
    );
    let mut scale = cfg.scale;
    let mut lowered: Vec<Value> = Vec::new();
    // Both strategies run at one time scale; a saturated run says nothing about CPU per
    // heartbeat, so it is repeated at half the scale (down to real time).
    let phases = loop {
        let mut phases = Vec::new();
        let mut redo = None;
        for label in crate::STRATEGIES {
            let p = run_phase(&mut shards, &cfg, mon.as_ref(), label, scale);
            if p.saturated.is_some() && cfg.auto_scale && scale > MIN_SCALE {
                redo = p.saturated.clone().map(|why| (label, why));
                break;
            }
            phases.push(p);
        }
        let Some((label, why)) = redo else {
            break phases;
        };
        let next = (scale / 2.0).max(MIN_SCALE);
        eprintln!(
            "{TOOL}: the {label} run at {scale}x is saturated ({why}); lowering the time scale to {next}x and running both strategies again"
        );
        lowered.push(json!({"time_scale": scale, "strategy": label, "why": why}));
        scale = next;
    };
    shards.finish();
    if let Some(m) = mon {
        m.stop();
    }
    let reference = cfg.reference_echo.then(|| reference(&cfg, conns, n, scale));
    let run = Ran {
        conns,
        processes: n,
        registered,
        scale,
        lowered,
        reference,
    };
    report(&cfg, &run, &setup, &reasons, &phases);
}

/// The slowest the simulation goes: real time.
pub(crate) const MIN_SCALE: f64 = 1.0;

/// Run one strategy at `scale` in every shard and merge what they measured.
pub(crate) fn run_phase(
    shards: &mut Shards,
    cfg: &Cfg,
    mon: Option<&Monitor>,
    label: &str,
    scale: f64,
) -> PhaseReport {
    let pids = shards.pids();
    let before: Vec<_> = pids.iter().map(|&p| proc::sample(p)).collect();
    let machine_before = proc::machine_ticks();
    let t0 = Instant::now();
    shards.broadcast(&format!("GO {label} {scale}"));
    let res = collect(shards, "RESULT", label);
    let t1 = Instant::now();
    let clients_cpu = before
        .iter()
        .zip(&pids)
        .map(|(a, &p)| Some(proc::cpu_between(a.as_ref()?, &proc::sample(p)?)))
        .sum::<Option<f64>>();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let machine_cpu = machine_before
        .zip(proc::machine_ticks())
        .map(|(a, b)| proc::machine_use(a, b, cores));
    let mut ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let (mut sent, mut in_window) = (0, 0);
    for v in &res {
        if let Err(e) = ops.merge_wire(&v["ops"]) {
            shards.kill_all();
            die(TOOL, e);
        }
        reasons.merge_json(&v["reasons"]);
        sent += v["sent"].as_u64().unwrap_or(0);
        in_window += v["answered_in_window"].as_u64().unwrap_or(0);
    }
    // The window proper: setup and draining do not count towards CPU per heartbeat.
    let cpu = mon.and_then(|m| {
        m.now();
        m.stats(t0, (t0 + Duration::from_secs_f64(cfg.duration)).min(t1))
    });
    let p50 = ops.subset(&["PING"]).ops[0].summary().p50_ms;
    let saturated = saturation(sent, in_window, p50, cpu.map(|c| c.cpu_mean_pct));
    PhaseReport {
        ops,
        reasons,
        sent,
        in_window,
        cpu,
        saturated,
        clients_cpu,
        machine_cpu,
    }
}

/// Why a strategy's run was saturated, or None: answers fell behind the schedule (fewer
/// than 97% of the heartbeats sent in the window were answered in it), heartbeats queued
/// (median latency over 5 ms, where an idle loop answers in well under one), or the
/// coordinator's loop was busy more than 80% of the time.
pub(crate) fn saturation(
    sent: u64,
    in_window: u64,
    p50_ms: f64,
    cpu_pct: Option<f64>,
) -> Option<String> {
    if sent > 0 && (in_window as f64) < 0.97 * sent as f64 {
        return Some(format!(
            "only {:.1}% of the heartbeats answered in time",
            100.0 * in_window as f64 / sent as f64
        ));
    }
    if p50_ms > 5.0 {
        return Some(format!("median latency {p50_ms:.1} ms: heartbeats queue"));
    }
    match cpu_pct {
        Some(c) if c > 80.0 => Some(format!("coordinator cpu {c:.0}% of a core")),
        _ => None,
    }
}

/// The echo reference: (heartbeats per second on the wire, the echo server's CPU).
pub(crate) type Reference = (f64, f64);

/// The fixed schedule on the same number of connections against an in-process echo
/// server, whose CPU is this process's over the run (nothing else here is busy).
pub(crate) fn reference(cfg: &Cfg, conns: usize, n: usize, scale: f64) -> Reference {
    let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n")
        .unwrap_or_else(|e| die(TOOL, format!("cannot start the echo server: {e}")));
    let mut rcfg = cfg.clone();
    rcfg.coordinator = echo.addr.to_string();
    rcfg.auth = Auth::Anonymous;
    eprintln!(
        "{TOOL}: reference: the fixed schedule against the echo server at {}",
        echo.addr
    );
    let mut shards =
        Shards::spawn(n, |i| child_args(&rcfg, conns, i, n)).unwrap_or_else(|e| die(TOOL, e));
    collect(&mut shards, "READY", "setup");
    let before = proc::sample(std::process::id());
    let p = run_phase(&mut shards, &rcfg, None, "fixed", scale);
    let after = proc::sample(std::process::id());
    shards.finish();
    drop(echo);
    let cpu = before
        .zip(after)
        .map_or(0.0, |(a, b)| proc::cpu_between(&a, &b));
    (p.in_window as f64 / cfg.duration, cpu)
}
