//! registry-bench: the seed's registry scalability test on a mio client (presets 1k, 10k,
//! 100k; paced like real nodes, or in the seed's burst), a held-connections throughput mode
//! (`--hold`, on the lean client), and an in-process echo server as this machine's
//! reference ceiling. Load runs in child processes of this binary (one process holds only
//! ~20,000 descriptors); their histograms are merged here.

use p2pshare_tools::args::Args;
use p2pshare_tools::echo::Echo;
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::lean::{self, Lean};
use p2pshare_tools::load::{self, HoldPlan};
use p2pshare_tools::pacing::{self, Pacing, DEFAULT_JITTER, DEFAULT_THINK_MS};
use p2pshare_tools::proc::{self, Monitor, Sample};
use p2pshare_tools::progress::Progress;
use p2pshare_tools::report::{round, thousands, write_json};
use p2pshare_tools::scenario::{self, Leave, Plan, OPS, PING, REQUEST};
use p2pshare_tools::shard::{self, Shards};
use p2pshare_tools::tokens::Auth;
use p2pshare_tools::{die, reach, rlimit};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOOL: &str = "registry-bench";
const HELP: &str = "\
usage: registry-bench --coordinator HOST:PORT (--preset 1k|10k|100k | --hold N --duration S)
                      (--jwt-secret S | --jwt-secret-file F | --api URL | --anonymous) [options]

Scalability (seed presets): each simulated client connects, REGISTERs (5 files), PUBLISHes
them, REQUESTs and DISCOVERs another client's, PINGs, LISTs one page (offset/limit 100 with a
query) and every --full-list-every'th client the whole registry, then stays, closes or
UNREGISTERs.

Presets are paced by default, like real nodes: clients arrive at a fixed rate (open loop)
and pause a think time before each operation, and each operation's latency counts from the
moment it was meant to go out, so a slow server still shows (coordinated omission
corrected). Why not everyone at once: a closed loop at saturation measures only queueing.
With every client sending its next request the moment the last is answered, N requests are
always in flight, and by Little's law latency = in-flight / throughput: 10,000 in flight
at 50,000 answers/s is 200 ms per request however fast the server serves each one. --burst
keeps the seed's all-at-once run for comparison; read it as a stress test of throughput
and errors, not as a latency figure.
  --preset 1k|10k|100k     clients 1,000 / 10,000 / 100,000
  --clients N              override the preset's client count (the preset's rate stays)
  --arrival-rate R         paced: clients arriving per second over all processes (1k: 100,
                           10k: 500, 100k: 1,667: a preset takes about 10 / 20 / 60 s)
  --think MS               paced: mean pause before each operation, randomised ±50% (50)
  --burst                  the seed's run: all clients at once, back to back
  --files N                files per client (5)
  --concurrency N          connections open at once (1k, 10k: all; 100k: as many as fit)
  --leave stay|close|unregister   after the script (stay when all fit at once, else close)
  --full-list-every N      (100; 10,000 for 100k)
  --connect-burst N        connects in progress at once (512)
  --list-query Q|none      query of the paged LISTs (bench-<run>-: this run's clients)

Held connections (lean client: request lines built once, answers counted by newline and
judged by their first bytes, no JSON on the hot path, writes batched):
  --hold N --duration S    register N connections, then send PINGs (with state) and REQUESTs
                           through them for S seconds
  --rate R                 open loop at R requests/s in total, latency from each request's
                           intended send time; without it: closed loop
  --pipeline D             closed loop: D requests outstanding per connection (1); uses 2
                           client processes by default
  --ping-share F           share of PINGs among the requests (0.5)
The report puts the coordinator's CPU (with --coordinator-pid) and the client processes'
CPU next to the throughput, and says which of them bounds it.

Both:
  --coordinator-pid PID    sample its CPU and memory every 100 ms
  --reference-echo         run the same load against an in-process echo server too
  --json FILE              write the report as JSON
  --shards N               at least N client processes (default: one per CPU; 2 with
                           --pipeline)
  --source-ips N           spread loopback connections over 127.0.0.1..N (16)
  --timeout S              give up on an answer after S seconds (120)
  --run ID                 names are bench-<ID>-<i> (random by default)
  --token-threads N        parallel API registrations with --api (8)";

/// Everything the parent decides, passed to children as flags.
#[derive(Clone)]
struct Cfg {
    preset: Option<String>,
    clients: usize,
    files: usize,
    concurrency: Option<usize>,
    coordinator: String,
    auth: Auth,
    coordinator_pid: Option<u32>,
    hold: Option<usize>,
    duration: f64,
    rate: Option<f64>,
    pipeline: usize,
    ping_share: f64,
    reference_echo: bool,
    /// Presets: None runs the seed's burst.
    pacing: Option<Pacing>,
    json: Option<PathBuf>,
    leave: Option<Leave>,
    full_list_every: Option<usize>,
    list_query: Option<String>,
    shards: usize,
    run: String,
    timeout: f64,
    source_ips: usize,
    connect_burst: usize,
    token_threads: usize,
    /// Child mode: this is shard i of n.
    shard: Option<(usize, usize)>,
}

fn parse() -> Cfg {
    let mut a = Args::from_env(TOOL);
    if a.flag("--help") || a.flag("-h") {
        println!("{HELP}");
        std::process::exit(0);
    }
    let preset = a.value("--preset");
    let preset_clients = match preset.as_deref() {
        None => None,
        Some("1k") => Some(1_000),
        Some("10k") => Some(10_000),
        Some("100k") => Some(100_000),
        Some(p) => die(TOOL, format!("unknown preset {p:?} (1k, 10k or 100k)")),
    };
    let hold: Option<usize> = a.parsed("--hold");
    let clients = a
        .parsed("--clients")
        .or(preset_clients)
        .or(hold)
        .unwrap_or_else(|| die(TOOL, "give --preset 1k|10k|100k or --hold N (try --help)"));
    let secret = a.value("--jwt-secret");
    let secret_file = a.value("--jwt-secret-file");
    let api = a.value("--api");
    let anonymous = a.flag("--anonymous");
    let auth = match (secret, secret_file, api, anonymous) {
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
    let leave = a.value("--leave").map(|s| {
        Leave::parse(&s)
            .unwrap_or_else(|| die(TOOL, format!("--leave {s:?}: stay, close or unregister")))
    });
    let shard = a.value("--shard").map(|s| {
        let parsed = s
            .split_once('/')
            .and_then(|(i, n)| Some((i.parse().ok()?, n.parse().ok()?)));
        match parsed {
            Some((i, n)) if i < n => (i, n),
            _ => die(TOOL, format!("bad --shard {s:?}")),
        }
    });
    let burst = a.flag("--burst");
    let arrival_rate: Option<f64> = a.parsed("--arrival-rate");
    let think_ms: f64 = a.parsed("--think").unwrap_or(DEFAULT_THINK_MS);
    if arrival_rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        die(TOOL, "--arrival-rate must be positive");
    }
    if !(think_ms.is_finite() && think_ms >= 0.0) {
        die(TOOL, "--think must be zero or more milliseconds");
    }
    if burst && arrival_rate.is_some() {
        die(TOOL, "--burst and --arrival-rate contradict each other");
    }
    let pacing = if burst || hold.is_some() {
        None
    } else {
        let rate = arrival_rate
            .or_else(|| preset.as_deref().and_then(pacing::default_rate))
            .unwrap_or_else(|| die(TOOL, "give --arrival-rate (or --burst) for a custom run"));
        Some(Pacing {
            arrival_rate: rate,
            think: Duration::from_secs_f64(think_ms / 1000.0),
            jitter: DEFAULT_JITTER,
        })
    };
    let pipeline = a.parsed::<usize>("--pipeline").unwrap_or(1).max(1);
    let cfg = Cfg {
        preset: if hold.is_some() && preset.is_none() {
            Some("hold".into())
        } else {
            preset
        },
        clients,
        files: a.parsed("--files").unwrap_or(5),
        concurrency: a.parsed("--concurrency"),
        coordinator: a
            .value("--coordinator")
            .unwrap_or_else(|| "127.0.0.1:9000".into()),
        auth,
        coordinator_pid: a.parsed("--coordinator-pid"),
        hold,
        duration: a.parsed("--duration").unwrap_or(10.0),
        rate: a.parsed("--rate"),
        pipeline,
        ping_share: a.parsed("--ping-share").unwrap_or(0.5),
        reference_echo: a.flag("--reference-echo"),
        pacing,
        json: a.value("--json").map(Into::into),
        leave,
        full_list_every: a.parsed("--full-list-every"),
        list_query: a.value("--list-query"),
        // One client process cannot keep up with tens of thousands of requests a second
        // over ~20,000 sockets; by default use one per CPU. Pipelined, one process cannot
        // push the coordinator to its limit even on two cores: two.
        shards: a
            .parsed::<usize>("--shards")
            .unwrap_or_else(|| {
                if hold.is_some() && pipeline > 1 {
                    return 2;
                }
                std::thread::available_parallelism()
                    .map(|n| n.get())
                    .unwrap_or(1)
            })
            .max(1),
        run: a.value("--run").unwrap_or_else(p2pshare_tools::run_id),
        timeout: a.parsed("--timeout").unwrap_or(120.0),
        source_ips: a.parsed("--source-ips").unwrap_or(16),
        connect_burst: a.parsed::<usize>("--connect-burst").unwrap_or(512).max(1),
        token_threads: a.parsed("--token-threads").unwrap_or(8),
        shard,
    };
    a.finish();
    if cfg.hold.is_some() && cfg.duration <= 0.0 {
        die(TOOL, "--duration must be positive");
    }
    if cfg.rate.is_some_and(|r| r.is_nan() || r <= 0.0) {
        die(TOOL, "--rate must be positive");
    }
    if !(0.0..=1.0).contains(&cfg.ping_share) {
        die(TOOL, "--ping-share must be between 0 and 1");
    }
    if cfg.run.len() > 12 || !cfg.run.chars().all(|c| c.is_ascii_alphanumeric()) {
        die(
            TOOL,
            "--run must be 1-12 letters or digits (names must stay valid usernames)",
        );
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

// ---------------------------------------------------------------- child side

/// Response lines received: every operation but CONNECT (not a request) and LIST (the sum
/// of list_page and list_full, which are counted themselves).
fn responses(ops: &OpSet) -> u64 {
    ops.names
        .iter()
        .zip(&ops.ops)
        .filter(|(n, _)| **n != "CONNECT" && **n != "LIST")
        .map(|(_, o)| o.hist.len())
        .sum()
}

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
    match cfg.hold {
        Some(total) => child_hold(cfg, addr, total, i, n),
        None => child_scenario(cfg, addr, i, n),
    }
}

fn tokens_for(cfg: &Cfg, names: &[String]) -> Vec<Option<String>> {
    cfg.auth
        .tokens(names, cfg.token_threads)
        .unwrap_or_else(|e| child_fail(format!("getting tokens: {e}")))
}

fn child_scenario(cfg: &Cfg, addr: SocketAddr, i: usize, n: usize) {
    let (first, count) = shard::split(cfg.clients, i, n);
    let (_, concurrency) = shard::split(cfg.concurrency.unwrap_or(cfg.clients), i, n);
    let names: Vec<String> = (first..first + count)
        .map(|g| scenario::hostname(&cfg.run, g))
        .collect();
    let tokens = tokens_for(cfg, &names);
    let plan = Plan {
        addr,
        run: cfg.run.clone(),
        first,
        count,
        concurrency: concurrency.max(1),
        connect_burst: cfg.connect_burst,
        files: cfg.files,
        full_list_every: cfg.full_list_every.unwrap_or(100),
        leave: cfg.leave.unwrap_or(Leave::Stay),
        list_query: match cfg.list_query.as_deref() {
            Some("none") => None,
            Some(q) => Some(q.to_string()),
            None => Some(format!("bench-{}-", cfg.run)),
        },
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
        pacing: cfg.pacing,
        shard: (i, n),
    };
    // Every shard starts its clock at the same GO, so arrivals interleave as planned.
    shard::emit("READY {}");
    if !shard::wait_go() {
        return;
    }
    let res = scenario::run(&plan, |p| {
        shard::emit(&format!("PROG {}", json!(p)));
    });
    let (out, net) = res.unwrap_or_else(|e| child_fail(e));
    shard::emit(&format!(
        "RESULT {}",
        json!({
            "ops": out.ops.to_wire(),
            "clients": out.clients,
            "clients_ok": out.clients_ok,
            "elapsed_s": out.elapsed.as_secs_f64(),
            "answered": responses(&out.ops),
            "reasons": out.error_reasons.to_json(),
        })
    ));
    // Clients that stay keep their connections until every shard is done.
    shard::wait_line();
    drop(net);
}

fn child_hold(cfg: &Cfg, addr: SocketAddr, total: usize, i: usize, n: usize) {
    let (first, count) = shard::split(total, i, n);
    let prefix = format!("bench-{}-h", cfg.run);
    let names: Vec<String> = (first..first + count)
        .map(|g| format!("{prefix}-{g}"))
        .collect();
    let tokens = tokens_for(cfg, &names);
    let plan = HoldPlan {
        addr,
        prefix: prefix.clone(),
        first,
        count,
        connect_burst: cfg.connect_burst,
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
    };
    let mut ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let (mut net, held) = load::setup(&plan, &mut ops, &mut reasons, |ready, finished| {
        shard::emit(&format!(
            "PROG {}",
            json!({"done": finished, "ok": ready, "open": ready})
        ));
    })
    .unwrap_or_else(|e| child_fail(e));
    // Lines are built once; the hot loop only copies them.
    let streams: Vec<_> = held
        .iter()
        .filter_map(|h| {
            let stream = net.take(h.id?)?;
            let mut ping =
                json!({"action": "PING", "data": {"hostname": h.host, "state": "active"}})
                    .to_string();
            ping.push('\n');
            let target = load::held_file(&prefix, (h.index + 1) % total.max(1));
            let mut req = json!({"action": "REQUEST", "data": {"fname": target}}).to_string();
            req.push('\n');
            Some((stream, [ping.into_bytes(), req.into_bytes()]))
        })
        .collect();
    let ready = streams.len();
    let mut lean = Lean::new(streams).unwrap_or_else(|e| child_fail(format!("poll: {e}")));
    drop(net);
    shard::emit(&format!("READY {}", json!({"ready": ready})));
    if !shard::wait_go() {
        return;
    }
    let spec = lean::Spec {
        duration: Duration::from_secs_f64(cfg.duration),
        rate: cfg.rate.map(|r| r / n as f64),
        pipeline: cfg.pipeline,
        first_share: cfg.ping_share,
        ops: [PING, REQUEST],
        timeout: Duration::from_secs_f64(cfg.timeout),
        seed: first as u64 + 1,
    };
    let res = lean
        .run(&spec, &mut ops, &mut reasons, |sent, answered, errors| {
            shard::emit(&format!(
                "PROG {}",
                json!({"sent": sent, "answered": answered, "errors": errors, "open": ready})
            ));
        })
        .unwrap_or_else(|e| child_fail(e));
    shard::emit(&format!(
        "RESULT {}",
        json!({
            "ops": ops.to_wire(),
            "clients": count,
            "clients_ok": ready as u64 - res.conns_lost.min(ready as u64),
            "elapsed_s": res.window.as_secs_f64(),
            "answered": res.answered,
            "answered_in_window": res.answered_in_window,
            "sent": res.sent,
            "reasons": reasons.to_json(),
        })
    ));
    shard::wait_line();
    drop(lean);
}

// ---------------------------------------------------------------- parent side

/// What one measured pass (against the coordinator or the echo server) produced.
struct Pass {
    ops: OpSet,
    clients: u64,
    clients_ok: u64,
    /// Scenario: time until the last client finished; hold: the load window.
    duration_s: f64,
    answered: u64,
    throughput_rps: f64,
    reasons: Reasons,
    started: Instant,
    ended: Instant,
    /// Hold mode: connections registered before the load started.
    ready: u64,
    rss_before_mb: Option<f64>,
    rss_after_mb: Option<f64>,
    /// CPU of the client processes together over the pass (percent of one core).
    clients_cpu_pct: Option<f64>,
    /// CPU of this process over the pass: the echo server's, in the reference pass.
    own_cpu_pct: Option<f64>,
    /// The whole machine's CPU over the pass (others' load shows here).
    machine_cpu_pct: Option<proc::MachineUse>,
}

/// CPU samples of the client processes, this one and the machine, taken at GO.
struct CpuMark(
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

fn cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn child_args(cfg: &Cfg, target: &str, i: usize, n: usize, reference: bool) -> Vec<String> {
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
struct ProgSum {
    latest: Vec<Value>,
    line: Progress,
    label: &'static str,
    total: usize,
    started: Instant,
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

fn fail_parent(shards: Shards, msg: String) -> ! {
    shards.kill();
    die(TOOL, msg)
}

fn merge_results(results: &[String]) -> Result<(OpSet, Reasons, Vec<Value>), String> {
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

fn sum(vals: &[Value], k: &str) -> u64 {
    vals.iter().map(|v| v[k].as_u64().unwrap_or(0)).sum()
}

fn run_pass(cfg: &Cfg, target: &str, n: usize, reference: bool, mon: Option<&Monitor>) -> Pass {
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
        let started = Instant::now();
        shards.broadcast("GO");
        let mut p = ProgSum::new(n, "load", cfg.clients);
        let results = match shards.collect("RESULT", |i, t| p.feed(i, t)) {
            Ok(r) => r,
            Err(e) => fail_parent(shards, e),
        };
        let ended = Instant::now();
        let (clients_cpu_pct, own_cpu_pct, machine_cpu_pct) = mark.since(&pids);
        p.line.clear();
        shards.finish();
        let (ops, reasons, vals) = merge_results(&results).unwrap_or_else(|e| die(TOOL, e));
        let in_window = sum(&vals, "answered_in_window");
        Pass {
            ops,
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
        }
    } else {
        let mut p = ProgSum::new(n, "clients", cfg.clients);
        // Tokens first (slow through the API), then every shard starts at one GO.
        if let Err(e) = shards.collect("READY", |i, t| p.feed(i, t)) {
            fail_parent(shards, e)
        }
        let pids = shards.pids();
        let mark = CpuMark::take(&pids);
        let started = Instant::now();
        shards.broadcast("GO");
        let results = match shards.collect("RESULT", |i, t| p.feed(i, t)) {
            Ok(r) => r,
            Err(e) => fail_parent(shards, e),
        };
        let ended = Instant::now();
        let (clients_cpu_pct, own_cpu_pct, machine_cpu_pct) = mark.since(&pids);
        p.line.clear();
        shards.finish();
        let (ops, reasons, vals) = merge_results(&results).unwrap_or_else(|e| die(TOOL, e));
        let duration_s = vals
            .iter()
            .map(|v| v["elapsed_s"].as_f64().unwrap_or(0.0))
            .fold(0.0, f64::max);
        let answered = sum(&vals, "answered");
        // The coordinator's window is the clients' run, not process start-up and tokens.
        let started = ended
            .checked_sub(Duration::from_secs_f64(duration_s))
            .unwrap_or(started)
            .max(started);
        Pass {
            ops,
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
        }
    }
}

fn success_rate(p: &Pass) -> f64 {
    if p.clients == 0 {
        0.0
    } else {
        p.clients_ok as f64 / p.clients as f64
    }
}

fn parent(mut cfg: Cfg) {
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
                cfg.full_list_every = Some(if cfg.clients >= 100_000 { 10_000 } else { 100 });
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

    let main = run_pass(&cfg, &cfg.coordinator, n, false, mon.as_ref());
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
    report(&cfg, conns, n, &main, cstats, reference.as_ref());
}

/// The run's mode for the header and the JSON, and what it means.
fn mode_of(cfg: &Cfg) -> (&'static str, String) {
    match (&cfg.pacing, cfg.hold) {
        (_, Some(_)) => (
            "hold",
            match cfg.rate {
                Some(r) => format!(
                    "held connections, open loop at {r} requests/s, latency from each request's intended send time (lean client)"
                ),
                None => format!(
                    "held connections, closed loop with {} outstanding per connection (lean client)",
                    cfg.pipeline
                ),
            },
        ),
        (Some(p), None) => (
            "paced",
            format!(
                "clients arrive at {:.0}/s (open loop) and think {:.0} ms ±{:.0}% before each \
                 operation; latency from each operation's intended send time",
                p.arrival_rate,
                p.think.as_secs_f64() * 1000.0,
                p.jitter * 100.0
            ),
        ),
        (None, None) => (
            "burst",
            "the seed's run: all clients at once, each operation right after the last answer; \
             latencies include queueing behind every other client's requests (Little's law: \
             in-flight / throughput), a stress figure"
                .to_string(),
        ),
    }
}

/// CPU next to the throughput, and which side bounds the run on this machine. `rest` is
/// this process's CPU when it is not the server; what the machine used beyond all of them
/// is other processes' and unattributed kernel work.
fn cpu_line(
    name: &str,
    server: Option<f64>,
    clients: Option<f64>,
    rest: Option<f64>,
    machine: Option<proc::MachineUse>,
    shards: usize,
) -> String {
    let cores = cores() as f64;
    let fmt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0}%"));
    // A process's own time includes the softirq work done in its context, which
    // /proc/stat books apart: compare ours with both.
    let others = machine.map(|m| {
        (m.procs_pct + m.irq_pct
            - server.unwrap_or(0.0)
            - clients.unwrap_or(0.0)
            - rest.unwrap_or(0.0))
        .max(0.0)
    });
    let contended = match others {
        Some(o) if o >= 25.0 => format!(
            "\n  warning: other work used {o:.0}% of a core during the run: the machine was shared, repeat it"
        ),
        _ => String::new(),
    };
    let bound = match (server, clients) {
        (Some(s), _) if s >= 90.0 => format!("bound: the {name} (its one loop is busy)"),
        // The kernel's share of loopback traffic shows in neither process: 85% is full.
        (Some(s), Some(c)) if s + c >= 85.0 * cores => {
            format!("bound: this machine's CPU (the {name} and the clients share it)")
        }
        (_, Some(c)) if c >= 90.0 * shards as f64 => "bound: the client processes".into(),
        (Some(_), Some(_)) => "bound: neither CPU is full (round trips or the offered rate)".into(),
        _ => "bound: unknown (give --coordinator-pid)".into(),
    };
    format!(
        "cpu (of one core): {name} {}  clients {} over {shards} process(es)  machine: processes {} + softirq {} of {:.0}% (others {})  {bound}{contended}",
        fmt(server),
        fmt(clients),
        fmt(machine.map(|m| m.procs_pct)),
        fmt(machine.map(|m| m.irq_pct)),
        cores * 100.0,
        fmt(others),
    )
}

fn report(
    cfg: &Cfg,
    conns: usize,
    shards: usize,
    main: &Pass,
    cstats: Option<p2pshare_tools::proc::Stats>,
    reference: Option<&Pass>,
) {
    let preset = cfg.preset.clone().unwrap_or_else(|| "custom".into());
    let (mode, how) = mode_of(cfg);
    println!(
        "registry-bench  preset {preset}  mode {mode}  run {}  clients {}  concurrency {}  processes {shards}",
        cfg.run,
        thousands(cfg.clients as u64),
        thousands(conns as u64)
    );
    println!("mode {mode}: {how}");
    println!("coordinator {}", cfg.coordinator);
    print!("{}", main.ops.table());
    println!(
        "duration {:.3} s  success_rate {:.4}  answers {}  throughput {:.0} responses/s",
        main.duration_s,
        success_rate(main),
        thousands(main.answered),
        main.throughput_rps
    );
    println!(
        "{}",
        cpu_line(
            "coordinator",
            cstats.map(|s| s.cpu_mean_pct),
            main.clients_cpu_pct,
            main.own_cpu_pct,
            main.machine_cpu_pct,
            shards
        )
    );
    let mut coordinator = json!({
        "cpu_mean_pct": null, "cpu_peak_pct": null, "rss_mean_mb": null, "peak_rss_mb": null,
    });
    if let Some(s) = cstats {
        println!(
            "coordinator cpu mean {:.1}% peak {:.1}%  rss mean {:.1} MB peak {:.1} MB (hwm {:.1} MB)",
            s.cpu_mean_pct, s.cpu_peak_pct, s.rss_mean_mb, s.rss_peak_mb, s.hwm_mb
        );
        coordinator = json!({
            "cpu_mean_pct": round(s.cpu_mean_pct, 1),
            "cpu_peak_pct": round(s.cpu_peak_pct, 1),
            "rss_mean_mb": round(s.rss_mean_mb, 1),
            "peak_rss_mb": round(s.rss_peak_mb, 1),
            "hwm_mb": round(s.hwm_mb, 1),
        });
    }
    let mut out = json!({
        "preset": preset,
        "mode": mode,
        "clients": cfg.clients,
        "concurrency": conns,
        "duration_s": round(main.duration_s, 3),
        "success_rate": round(success_rate(main), 6),
        "throughput_rps": round(main.throughput_rps, 1),
        "ops": main.ops.summary_json(),
        "coordinator": coordinator,
        "run": cfg.run,
        "processes": shards,
        "error_reasons": main.reasons.to_json(),
    });
    if cfg.hold.is_none() {
        out["files_per_client"] = json!(cfg.files);
        out["leave"] = json!(cfg.leave.map(Leave::name));
        out["full_list_every"] = json!(cfg.full_list_every);
        out["list_query"] = json!(match cfg.list_query.as_deref() {
            Some("none") => None,
            Some(q) => Some(q.to_string()),
            None => Some(format!("bench-{}-", cfg.run)),
        });
    } else {
        let per_conn_kb = match (main.rss_before_mb, main.rss_after_mb) {
            (Some(b), Some(a)) if main.ready > 0 => Some((a - b) * 1024.0 / main.ready as f64),
            _ => None,
        };
        println!(
            "held {} connections ({} registered); {}",
            thousands(conns as u64),
            thousands(main.ready),
            match cfg.rate {
                Some(r) => format!("open loop at {r} requests/s (latency from intended send time)"),
                None => format!("closed loop, {} outstanding per connection", cfg.pipeline),
            }
        );
        if let (Some(b), Some(a), Some(k)) = (main.rss_before_mb, main.rss_after_mb, per_conn_kb) {
            println!("coordinator rss before {b:.1} MB, after registering {a:.1} MB: {k:.2} KB per connection");
        }
        out["coordinator"]["rss_before_mb"] = json!(main.rss_before_mb.map(|x| round(x, 1)));
        out["coordinator"]["rss_after_mb"] = json!(main.rss_after_mb.map(|x| round(x, 1)));
        out["coordinator"]["rss_per_conn_kb"] = json!(per_conn_kb.map(|x| round(x, 2)));
        out["hold"] = json!({
            "connections": conns,
            "registered": main.ready,
            "mode": if cfg.rate.is_some() { "open" } else { "closed" },
            "rate_rps": cfg.rate,
            "pipeline": cfg.pipeline,
            "ping_share": cfg.ping_share,
        });
    }
    if !main.reasons.0.is_empty() {
        println!("errors by reason:\n{}", main.reasons.top(8).trim_end());
    }
    if let Some(r) = reference {
        println!("reference: echo server in this process, same connections and request lines");
        print!("{}", r.ops.table());
        let ratio = if r.throughput_rps > 0.0 {
            main.throughput_rps / r.throughput_rps
        } else {
            0.0
        };
        println!(
            "reference duration {:.3} s  throughput {:.0} responses/s  coordinator/reference {:.3}",
            r.duration_s, r.throughput_rps, ratio
        );
        println!(
            "reference {}",
            cpu_line(
                "echo server",
                r.own_cpu_pct,
                r.clients_cpu_pct,
                None,
                r.machine_cpu_pct,
                shards
            )
        );
        out["reference"] = json!({
            "duration_s": round(r.duration_s, 3),
            "success_rate": round(success_rate(r), 6),
            "throughput_rps": round(r.throughput_rps, 1),
            "ops": r.ops.summary_json(),
            "ratio": round(ratio, 4),
        });
    }
    if let Some(p) = &cfg.json {
        write_json(TOOL, p, &out);
    }
}
