//! heartbeat-sim: N simulated clients heartbeating a real coordinator, first every 60 s
//! (fixed), then at the adaptive intervals of their state (idle 300 s, active 60 s, busy
//! 30 s), with time compressed by --time-scale. Reports heartbeats per second in real time,
//! the reduction, and the coordinator's CPU per 1,000 heartbeats a second. Clients share a
//! pool of registered connections when they do not all fit; load runs in child processes.

use p2pshare_tools::args::Args;
use p2pshare_tools::echo::Echo;
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::load::{self, HoldPlan};
use p2pshare_tools::net::NetEvent;
use p2pshare_tools::pacing;
use p2pshare_tools::prng::SplitMix64;
use p2pshare_tools::proc::{self, Monitor, Stats};
use p2pshare_tools::progress::Progress;
use p2pshare_tools::report::{round, thousands, write_json};
use p2pshare_tools::scenario::{OPS, PING};
use p2pshare_tools::shard::{self, Shards};
use p2pshare_tools::tokens::Auth;
use p2pshare_tools::{die, reach, rlimit};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOOL: &str = "heartbeat-sim";
const HELP: &str = "\
usage: heartbeat-sim --coordinator HOST:PORT (--jwt-secret S | --jwt-secret-file F | --api URL
                     | --anonymous) [options]
  --clients N              simulated clients (100000)
  --mix idle=0.8,active=0.15,busy=0.05   share of clients in each state (adaptive run);
                           the default is the mix that gives the seed's 684 req/s
  --fixed-interval S       the fixed strategy's heartbeat (60)
  --intervals idle=300,active=60,busy=30   the adaptive strategy's heartbeats
  --time-scale X           X simulated seconds per real second (10: a 60 s heartbeat is sent
                           every 6 s). A saturated run (answers fall behind, median latency
                           over 5 ms, or the coordinator over 80% of a core) measures queueing,
                           not the cost of a heartbeat: it is said so and both strategies run
                           again at half the scale, down to real time
  --fixed-scale            do not lower the time scale (report a saturated run as it is)
  --reference-echo         run the fixed schedule on the same connections against an
                           in-process echo server too: this machine's CPU per heartbeat
                           for a server that does nothing (loopback TCP, one request per
                           wakeup), to read the coordinator's figure against
  --duration S             wall-clock seconds measured per strategy (30)
  --connections N          registered connections to send over (as many as fit)
  --coordinator-pid PID    sample its CPU every 100 ms (CPU per 1,000 heartbeats/s)
  --json FILE              write the report as JSON
  --shards N               at least N client processes (default: one per CPU)
  --source-ips N, --connect-burst N, --timeout S, --run ID, --token-threads N";

const STATES: [&str; 3] = ["idle", "active", "busy"];
/// The state shares behind the seed's adaptive figure: 100,000 × (0.8/300 + 0.15/60 +
/// 0.05/30) = 683.3, its "~684 requests/second".
const SEED_MIX: [f64; 3] = [0.8, 0.15, 0.05];
static HB_OPS: &[&str] = &["CONNECT", "REGISTER", "PUBLISH", "PING"];

#[derive(Clone)]
struct Cfg {
    coordinator: String,
    auth: Auth,
    clients: usize,
    mix: [f64; 3],
    fixed_interval: f64,
    intervals: [f64; 3],
    scale: f64,
    auto_scale: bool,
    reference_echo: bool,
    duration: f64,
    connections: Option<usize>,
    coordinator_pid: Option<u32>,
    json: Option<PathBuf>,
    shards: usize,
    source_ips: usize,
    connect_burst: usize,
    timeout: f64,
    run: String,
    token_threads: usize,
    shard: Option<(usize, usize)>,
}

fn parse_triple(s: &str, what: &str) -> [f64; 3] {
    let mut out = [f64::NAN; 3];
    for part in s.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            die(TOOL, format!("{what}: expected state=value, got {part:?}"))
        };
        let Some(i) = STATES.iter().position(|s| *s == k.trim()) else {
            die(
                TOOL,
                format!("{what}: unknown state {k:?} (idle, active, busy)"),
            )
        };
        out[i] = v
            .trim()
            .parse()
            .unwrap_or_else(|_| die(TOOL, format!("{what}: bad number {v:?}")));
    }
    if out.iter().any(|x| !x.is_finite() || *x < 0.0) {
        die(
            TOOL,
            format!("{what}: give idle, active and busy, each a non-negative number"),
        );
    }
    out
}

fn parse() -> Cfg {
    let mut a = Args::from_env(TOOL);
    if a.flag("--help") || a.flag("-h") {
        println!("{HELP}");
        std::process::exit(0);
    }
    let auth = match (
        a.value("--jwt-secret"),
        a.value("--jwt-secret-file"),
        a.value("--api"),
        a.flag("--anonymous"),
    ) {
        (Some(s), None, None, false) => Auth::Mint(s.into_bytes()),
        (None, Some(f), None, false) => match std::fs::read_to_string(&f) {
            Ok(s) => Auth::Mint(s.trim_end_matches(['\n', '\r']).as_bytes().to_vec()),
            Err(e) => die(TOOL, format!("cannot read {f}: {e}")),
        },
        (None, None, Some(u), false) => Auth::Api(u.trim_end_matches('/').to_string()),
        (None, None, None, true) => Auth::Anonymous,
        (None, None, None, false) => die(
            TOOL,
            "say how to get tokens: --jwt-secret S, --jwt-secret-file F, --api URL or --anonymous",
        ),
        _ => die(
            TOOL,
            "give only one of --jwt-secret, --jwt-secret-file, --api, --anonymous",
        ),
    };
    let mix = match a.value("--mix") {
        Some(m) => parse_triple(&m, "--mix"),
        None => SEED_MIX,
    };
    let total: f64 = mix.iter().sum();
    if total <= 0.0 {
        die(TOOL, "--mix shares must add up to more than 0");
    }
    let intervals = parse_triple(
        &a.value("--intervals")
            .unwrap_or_else(|| "idle=300,active=60,busy=30".into()),
        "--intervals",
    );
    if intervals.iter().any(|x| *x <= 0.0) {
        die(TOOL, "--intervals must be positive");
    }
    let shard = a.value("--shard").map(|s| {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
        match parsed {
            Some((i, n)) if i < n => (i, n),
            _ => die(TOOL, format!("bad --shard {s:?}")),
        }
    });
    let cfg = Cfg {
        coordinator: a
            .value("--coordinator")
            .unwrap_or_else(|| "127.0.0.1:9000".into()),
        auth,
        clients: a.parsed("--clients").unwrap_or(100_000),
        mix: [mix[0] / total, mix[1] / total, mix[2] / total],
        fixed_interval: a.parsed("--fixed-interval").unwrap_or(60.0),
        intervals,
        scale: a.parsed("--time-scale").unwrap_or(10.0),
        auto_scale: !a.flag("--fixed-scale"),
        reference_echo: a.flag("--reference-echo"),
        duration: a.parsed("--duration").unwrap_or(30.0),
        connections: a.parsed("--connections"),
        coordinator_pid: a.parsed("--coordinator-pid"),
        json: a.value("--json").map(Into::into),
        // One client process cannot keep up with tens of thousands of requests a second
        // over ~20,000 sockets; by default use one per CPU.
        shards: a
            .parsed::<usize>("--shards")
            .unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1),
        source_ips: a.parsed("--source-ips").unwrap_or(16),
        connect_burst: a.parsed::<usize>("--connect-burst").unwrap_or(512).max(1),
        timeout: a.parsed("--timeout").unwrap_or(120.0),
        run: a.value("--run").unwrap_or_else(p2pshare_tools::run_id),
        token_threads: a.parsed("--token-threads").unwrap_or(8),
        shard,
    };
    a.finish();
    if cfg.clients == 0 {
        die(TOOL, "--clients must be at least 1");
    }
    if !(cfg.scale > 0.0 && cfg.duration > 0.0 && cfg.fixed_interval > 0.0) {
        die(
            TOOL,
            "--time-scale, --duration and --fixed-interval must be positive",
        );
    }
    if cfg.run.len() > 12 || !cfg.run.chars().all(|c| c.is_ascii_alphanumeric()) {
        die(TOOL, "--run must be 1-12 letters or digits");
    }
    cfg
}

fn main() {
    let cfg = parse();
    match cfg.shard {
        Some((i, n)) => child(&cfg, i, n),
        None => parent(cfg),
    }
}

/// The state of simulated client `c` (the same in every process and run).
fn state_of(mix: &[f64; 3], c: usize) -> usize {
    // A low-discrepancy (golden ratio) sequence rather than random draws: the shares in
    // the run are the mix's to within a client or two, in every run and every shard, so
    // the adaptive rate is the mix's rate and not a sample of it.
    let u = ((c as f64 + 0.5) * 0.618_033_988_749_894_9).fract();
    if u < mix[0] {
        0
    } else if u < mix[0] + mix[1] {
        1
    } else {
        2
    }
}

// ---------------------------------------------------------------- child side

fn child_fail(msg: impl std::fmt::Display) -> ! {
    shard::emit(&format!("FAIL {msg}"));
    std::process::exit(2)
}

fn child(cfg: &Cfg, i: usize, n: usize) {
    rlimit::raise_nofile();
    let addr: SocketAddr = cfg
        .coordinator
        .parse()
        .unwrap_or_else(|e| child_fail(format!("bad target {}: {e}", cfg.coordinator)));
    let conns_total = cfg.connections.unwrap_or(cfg.clients).min(cfg.clients);
    let (cfirst, ccount) = shard::split(conns_total, i, n);
    let (first, count) = shard::split(cfg.clients, i, n);
    let prefix = format!("bench-{}-b", cfg.run);
    let names: Vec<String> = (cfirst..cfirst + ccount)
        .map(|g| format!("{prefix}-{g}"))
        .collect();
    let tokens = cfg
        .auth
        .tokens(&names, cfg.token_threads)
        .unwrap_or_else(|e| child_fail(format!("getting tokens: {e}")));
    let plan = HoldPlan {
        addr,
        prefix,
        first: cfirst,
        count: ccount,
        connect_burst: cfg.connect_burst,
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
    };
    let mut setup_ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let (mut net, mut held) = load::setup(&plan, &mut setup_ops, &mut reasons, |ready, done| {
        shard::emit(&format!("PROG {}", json!({"ok": ready, "done": done})));
    })
    .unwrap_or_else(|e| child_fail(e));
    let ready = held.iter().filter(|h| h.id.is_some()).count();
    shard::emit(&format!(
        "READY {}",
        json!({"ready": ready, "ops": setup_ops.to_wire(), "reasons": reasons.to_json()})
    ));
    // PING lines per connection and state, built once.
    let lines: Vec<[Vec<u8>; 3]> = held
        .iter()
        .map(|h| {
            STATES.map(|st| {
                let mut l = json!({"action": "PING", "data": {"hostname": h.host, "state": st}})
                    .to_string();
                l.push('\n');
                l.into_bytes()
            })
        })
        .collect();
    let states: Vec<usize> = (first..first + count)
        .map(|c| state_of(&cfg.mix, c))
        .collect();
    // `GO <fixed|adaptive> <time scale>` runs one strategy; anything else ends the child.
    while let Some(line) = shard::wait_line() {
        let mut words = line.split_whitespace();
        if words.next() != Some("GO") {
            return;
        }
        let adaptive = words.next() == Some("adaptive");
        let scale = words
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|x| *x > 0.0)
            .unwrap_or(cfg.scale);
        let mut ops = OpSet::new(OPS);
        let mut reasons = Reasons::default();
        let interval_of = |s: usize| {
            if adaptive {
                cfg.intervals[s]
            } else {
                cfg.fixed_interval
            }
        };
        let out = phase(
            &mut net,
            &mut held,
            &lines,
            &states,
            &interval_of,
            cfg,
            scale,
            first,
            &mut ops,
            &mut reasons,
        )
        .unwrap_or_else(|e| child_fail(e));
        shard::emit(&format!(
            "RESULT {}",
            json!({
                "ops": ops.to_wire(),
                "reasons": reasons.to_json(),
                "sent": out.0,
                "answered": out.1,
                "answered_in_window": out.2,
            })
        ));
    }
}

/// One strategy's run: every simulated client PINGs at its (scaled) interval from a random
/// phase, over connection `client % connections`. Returns (sent, answered, answered within
/// the window).
#[allow(clippy::too_many_arguments)]
fn phase(
    net: &mut p2pshare_tools::net::Net,
    held: &mut [load::Held],
    lines: &[[Vec<u8>; 3]],
    states: &[usize],
    interval_of: &dyn Fn(usize) -> f64,
    cfg: &Cfg,
    scale: f64,
    first: usize,
    ops: &mut OpSet,
    reasons: &mut Reasons,
) -> Result<(u64, u64, u64), String> {
    let start = Instant::now();
    let window = Duration::from_secs_f64(cfg.duration);
    let end = start + window;
    let nconn = held.len();
    let mut rng = SplitMix64::new(first as u64 + 17);
    // Due times in nanoseconds since `start`.
    let period_ns: Vec<u64> = states
        .iter()
        .map(|&s| (interval_of(s) / scale * 1e9) as u64)
        .collect();
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = period_ns
        .iter()
        .enumerate()
        .map(|(c, &p)| Reverse(((rng.unit() * p as f64) as u64, c as u32)))
        .collect();
    let (mut sent, mut answered, mut in_window, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut events = Vec::new();
    let mut last = Instant::now();
    let end_ns = window.as_nanos() as u64;
    let drain_until = end + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        let now_ns = now.duration_since(start).as_nanos() as u64;
        let mut wait = Duration::from_millis(50);
        let early_ns = pacing::EARLY.as_nanos() as u64;
        // What is due goes out, timed from its intended time; what falls due within
        // `EARLY` goes out a little early, timed from now.
        while let Some(&Reverse((due, c))) = heap.peek() {
            if due >= end_ns {
                break;
            }
            if due > now_ns + early_ns {
                wait = wait.min(Duration::from_nanos(due - now_ns - early_ns));
                break;
            }
            heap.pop();
            let c = c as usize;
            if nconn > 0 {
                let k = (first + c) % nconn;
                match held[k].id {
                    Some(id) => {
                        net.send(
                            id,
                            PING,
                            &lines[k][states[c]],
                            start + Duration::from_nanos(due.min(now_ns)),
                        );
                        sent += 1;
                    }
                    None => ops.get(PING as usize).lost += 1,
                }
            }
            heap.push(Reverse((due + period_ns[c].max(1), c as u32)));
        }
        if now >= end {
            let pending: usize = held
                .iter()
                .filter_map(|h| h.id)
                .map(|id| net.in_flight(id))
                .sum();
            if pending == 0 || now >= drain_until {
                break;
            }
        }
        events.clear();
        net.turn(Some(wait), &mut events)
            .map_err(|e| format!("poll: {e}"))?;
        let t = Instant::now();
        for ev in events.drain(..) {
            match ev {
                NetEvent::Reply {
                    id,
                    tag,
                    op,
                    latency,
                    error,
                } => {
                    if held.get(tag).and_then(|h| h.id) != Some(id) {
                        continue;
                    }
                    let h = ops.get(op as usize);
                    h.record(latency);
                    answered += 1;
                    if t <= end {
                        in_window += 1;
                    }
                    if let Some(e) = error {
                        h.errors += 1;
                        errors += 1;
                        reasons.add(&format!("PING: {e}"));
                    }
                }
                NetEvent::Closed {
                    id,
                    tag,
                    error,
                    lost,
                }
                | NetEvent::ConnectFailed {
                    id,
                    tag,
                    error,
                    lost,
                    ..
                } => {
                    if held.get(tag).and_then(|h| h.id) != Some(id) {
                        continue;
                    }
                    held[tag].id = None;
                    ops.get(PING as usize).lost += lost.len() as u64;
                    errors += lost.len() as u64;
                    reasons.add_n(&format!("connection: {error}"), lost.len().max(1) as u64);
                }
                NetEvent::Connected { .. } => {}
            }
        }
        if last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            shard::emit(&format!(
                "PROG {}",
                json!({"sent": sent, "answered": answered, "errors": errors})
            ));
        }
    }
    Ok((sent, answered, in_window))
}

// ---------------------------------------------------------------- parent side

fn child_args(cfg: &Cfg, conns: usize, i: usize, n: usize) -> Vec<String> {
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

fn collect(shards: &mut Shards, word: &str, label: &str) -> Vec<Value> {
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

struct PhaseReport {
    ops: OpSet,
    reasons: Reasons,
    sent: u64,
    in_window: u64,
    cpu: Option<Stats>,
    saturated: Option<String>,
    /// The client processes together and the whole machine, percent of one core.
    clients_cpu: Option<f64>,
    machine_cpu: Option<proc::MachineUse>,
}

fn parent(mut cfg: Cfg) {
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
        for label in ["fixed", "adaptive"] {
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
const MIN_SCALE: f64 = 1.0;

/// Run one strategy at `scale` in every shard and merge what they measured.
fn run_phase(
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
fn saturation(sent: u64, in_window: u64, p50_ms: f64, cpu_pct: Option<f64>) -> Option<String> {
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
type Reference = (f64, f64);

/// The fixed schedule on the same number of connections against an in-process echo
/// server, whose CPU is this process's over the run (nothing else here is busy).
fn reference(cfg: &Cfg, conns: usize, n: usize, scale: f64) -> Reference {
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

/// What the whole run was, apart from its strategies.
struct Ran {
    conns: usize,
    processes: usize,
    registered: u64,
    /// The time scale both strategies finally ran at.
    scale: f64,
    /// Runs repeated at a smaller scale because they were saturated.
    lowered: Vec<Value>,
    reference: Option<Reference>,
}

fn report(cfg: &Cfg, run: &Ran, setup: &OpSet, setup_reasons: &Reasons, phases: &[PhaseReport]) {
    let (conns, processes, registered, scale) =
        (run.conns, run.processes, run.registered, run.scale);
    let pooled = conns < cfg.clients;
    let n = cfg.clients as f64;
    let scheduled = [
        n / cfg.fixed_interval,
        (0..3)
            .map(|s| n * cfg.mix[s] / cfg.intervals[s])
            .sum::<f64>(),
    ];
    println!(
        "heartbeat-sim  run {}  clients {}  connections {} ({} registered){}  processes {processes}",
        cfg.run,
        thousands(cfg.clients as u64),
        thousands(conns as u64),
        thousands(registered),
        if pooled {
            "  [clients share a pool of connections: more clients than fit]"
        } else {
            ""
        }
    );
    println!(
        "mix idle {:.2} active {:.2} busy {:.2} ({})",
        cfg.mix[0],
        cfg.mix[1],
        cfg.mix[2],
        if cfg
            .mix
            .iter()
            .zip(SEED_MIX)
            .all(|(a, b)| (a - b).abs() < 1e-9)
        {
            "the default: the mix behind the seed's 684 req/s for 100,000 clients"
        } else {
            "given with --mix"
        }
    );
    println!(
        "time scale {scale}x ({} s per strategy = {:.0} simulated s)",
        cfg.duration,
        cfg.duration * scale,
    );
    for l in &run.lowered {
        println!(
            "  saturated at {}x ({} run: {}), so lowered",
            l["time_scale"],
            l["strategy"].as_str().unwrap_or("?"),
            l["why"].as_str().unwrap_or("?")
        );
    }
    println!("setup");
    print!("{}", setup.subset(HB_OPS).table());
    let mut out = json!({
        "clients": cfg.clients,
        "connections": conns,
        "registered": registered,
        "pooled": pooled,
        "processes": processes,
        "time_scale": scale,
        "saturated_runs": run.lowered,
        "duration_s": cfg.duration,
        "mix": {"idle": cfg.mix[0], "active": cfg.mix[1], "busy": cfg.mix[2]},
        "setup_ops": setup.subset(HB_OPS).summary_json(),
        "seed": {"fixed_rps": 1667, "adaptive_rps": 684},
        "run": cfg.run,
    });
    let mut real_rates = [0.0; 2];
    for (k, (label, p)) in ["fixed", "adaptive"].iter().zip(phases).enumerate() {
        let wall_rps = p.in_window as f64 / cfg.duration;
        let real_rps = wall_rps / scale;
        real_rates[k] = real_rps;
        let cpu_per_1k = p.cpu.map(|c| {
            if wall_rps > 0.0 {
                c.cpu_mean_pct / (wall_rps / 1000.0)
            } else {
                0.0
            }
        });
        let intervals = if k == 0 {
            format!("every {} s", cfg.fixed_interval)
        } else {
            format!(
                "idle {} s, active {} s, busy {} s",
                cfg.intervals[0], cfg.intervals[1], cfg.intervals[2]
            )
        };
        println!(
            "{label} ({intervals}): scheduled {:.0} req/s, answered {:.0} req/s in real time \
             ({:.0} req/s on the wire at {}x)",
            scheduled[k], real_rps, wall_rps, scale
        );
        print!("{}", p.ops.subset(&["PING"]).table());
        if let (Some(c), Some(per)) = (p.cpu, cpu_per_1k) {
            println!(
                "  coordinator cpu mean {:.1}% peak {:.1}%  = {:.2}% per 1,000 heartbeats/s  rss mean {:.1} MB",
                c.cpu_mean_pct, c.cpu_peak_pct, per, c.rss_mean_mb
            );
        }
        if scheduled[k] > 0.0 && real_rps < 0.95 * scheduled[k] {
            println!(
                "  warning: only {:.0}% of the scheduled heartbeats were answered in time; the \
                 coordinator or this machine is saturated at {}x (try a smaller --time-scale)",
                100.0 * real_rps / scheduled[k],
                scale
            );
        }
        let p50_ms = p.ops.subset(&["PING"]).ops[0].summary().p50_ms;
        if p50_ms > 100.0 {
            println!(
                "  note: median PING latency {p50_ms:.0} ms: requests queue, so the coordinator (or \
                 this machine) is near saturation at {}x; CPU per heartbeat is not linear here",
                scale
            );
        }
        if let (Some(m), Some(cl)) = (p.machine_cpu, p.clients_cpu) {
            let coord = p.cpu.map_or(0.0, |c| c.cpu_mean_pct);
            // Processes' own times include softirq work done in their context.
            let others = (m.procs_pct + m.irq_pct - coord - cl).max(0.0);
            println!(
                "  clients cpu {cl:.0}% over {processes} process(es)  machine: processes {:.0}% + softirq {:.0}% (others {others:.0}%)",
                m.procs_pct, m.irq_pct
            );
            if others >= 25.0 {
                println!(
                    "  warning: other work used {others:.0}% of a core during the run: the machine was shared, repeat it"
                );
            }
        }
        if let Some(why) = &p.saturated {
            println!(
                "  warning: saturated even at {scale}x ({why}): the CPU figure above is not from an unsaturated run"
            );
        } else {
            println!("  not saturated at {scale}x (answers kept up, median under 5 ms, coordinator under 80%)");
        }
        if !p.reasons.0.is_empty() {
            println!("  errors by reason:\n{}", p.reasons.top(5).trim_end());
        }
        out[*label] = json!({
            "intervals_s": if k == 0 { json!(cfg.fixed_interval) } else {
                json!({"idle": cfg.intervals[0], "active": cfg.intervals[1], "busy": cfg.intervals[2]})
            },
            "scheduled_rps": round(scheduled[k], 1),
            "sent": p.sent,
            "requests_per_s": round(real_rps, 1),
            "wire_rps": round(wall_rps, 1),
            "ops": p.ops.subset(&["PING"]).summary_json(),
            "cpu_mean_pct": p.cpu.map(|c| round(c.cpu_mean_pct, 1)),
            "cpu_peak_pct": p.cpu.map(|c| round(c.cpu_peak_pct, 1)),
            "cpu_pct_per_1k_hb_s": cpu_per_1k.map(|x| round(x, 3)),
            "rss_mean_mb": p.cpu.map(|c| round(c.rss_mean_mb, 1)),
            "error_reasons": p.reasons.to_json(),
        });
    }
    let reduction = if real_rates[0] > 0.0 {
        100.0 * (real_rates[0] - real_rates[1]) / real_rates[0]
    } else {
        0.0
    };
    println!(
        "reduction {reduction:.1}% (fixed {:.0} -> adaptive {:.0} req/s; the seed's table: 1,667 -> 684, 59%)",
        real_rates[0], real_rates[1]
    );
    out["reduction_pct"] = json!(round(reduction, 1));
    if let Some((wire, cpu)) = run.reference {
        let per_1k = if wire > 0.0 {
            cpu / (wire / 1000.0)
        } else {
            0.0
        };
        println!(
            "reference: echo server, the fixed schedule on {} connections at {scale}x: {wire:.0} req/s on the wire, \
             cpu {cpu:.1}% = {per_1k:.2}% per 1,000 heartbeats/s (loopback TCP and one wakeup per request, no registry work)",
            thousands(conns as u64)
        );
        if let Some(c) = phases.first().and_then(|p| p.cpu) {
            let wire_c = phases[0].in_window as f64 / cfg.duration;
            if wire_c > 0.0 && per_1k > 0.0 {
                let coord = c.cpu_mean_pct / (wire_c / 1000.0);
                println!(
                    "  coordinator {coord:.2}% vs echo {per_1k:.2}% per 1,000 heartbeats/s: the registry's own share is {:.2}%",
                    (coord - per_1k).max(0.0)
                );
            }
        }
        out["reference"] = json!({
            "wire_rps": round(wire, 1),
            "cpu_mean_pct": round(cpu, 1),
            "cpu_pct_per_1k_hb_s": round(per_1k, 3),
        });
    }
    if !setup_reasons.0.is_empty() {
        println!(
            "setup errors by reason:\n{}",
            setup_reasons.top(5).trim_end()
        );
        out["setup_error_reasons"] = setup_reasons.to_json();
    }
    if let Some(p) = &cfg.json {
        write_json(TOOL, p, &out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_is_falling_behind_queueing_or_a_busy_loop() {
        assert_eq!(saturation(10_000, 9_990, 0.3, Some(20.0)), None);
        assert_eq!(saturation(0, 0, 0.0, None), None);
        let behind = saturation(10_000, 9_000, 0.3, Some(20.0)).unwrap();
        assert!(behind.contains("90.0%"), "{behind}");
        let queued = saturation(10_000, 9_990, 40.0, None).unwrap();
        assert!(queued.contains("queue"), "{queued}");
        let busy = saturation(10_000, 9_990, 0.3, Some(95.0)).unwrap();
        assert!(busy.contains("95%"), "{busy}");
    }

    #[test]
    fn states_follow_the_mix_to_within_a_couple_of_clients() {
        for n in [1_000usize, 100_000] {
            let mut count = [0usize; 3];
            for c in 0..n {
                count[state_of(&SEED_MIX, c)] += 1;
            }
            for s in 0..3 {
                let want = SEED_MIX[s] * n as f64;
                assert!((count[s] as f64 - want).abs() <= 2.0, "{n}: {count:?}");
            }
        }
        // Any shard's contiguous range is spread the same way.
        let mut count = [0usize; 3];
        for c in 50_000..60_000 {
            count[state_of(&SEED_MIX, c)] += 1;
        }
        assert!((count[0] as i64 - 8_000).abs() <= 3, "{count:?}");
    }

    #[test]
    fn the_default_mix_gives_the_seeds_adaptive_rate() {
        let n = 100_000.0;
        let rate: f64 = (0..3)
            .map(|s| n * SEED_MIX[s] / [300.0, 60.0, 30.0][s])
            .sum();
        assert!((683.0..=684.0).contains(&rate), "{rate}");
    }
}
