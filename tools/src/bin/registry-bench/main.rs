//! registry-bench: the seed's registry scalability test on a mio client (presets 1k, 10k,
//! 100k; paced like real nodes, or in the seed's burst), a held-connections throughput mode
//! (`--hold`, on the lean client), and an in-process echo server as this machine's
//! reference ceiling. Load runs in child processes of this binary (one process holds only
//! ~20,000 descriptors); their histograms are merged here.

use crate::child::child;
use crate::parent::parent;
use p2pshare_tools::args::Args;
use p2pshare_tools::die;
use p2pshare_tools::pacing::{self, Pacing, DEFAULT_JITTER, DEFAULT_THINK_MS};
use p2pshare_tools::scenario::Leave;
use p2pshare_tools::tokens::Auth;
use std::path::PathBuf;
use std::time::Duration;

mod child;
mod parent;
mod report;

const TOOL: &str = "registry-bench";
const HELP: &str = "\
usage: registry-bench --coordinator HOST:PORT (--preset 1k|10k|100k|1m | --hold N --duration S)
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
  --preset 1k|10k|100k|1m  clients 1,000 / 10,000 / 100,000 / 1,000,000 (1m: over ten
                           minutes, at most 18,000 connected at once, each closing after its
                           script; no whole-registry LIST unless --full-list-every)
  --clients N              override the preset's client count (the preset's rate stays)
  --arrival-rate R         paced: clients arriving per second over all processes (1k: 100,
                           10k: 500, 100k and 1m: 1,667: a preset takes about 10 / 20 / 60 /
                           600 s)
  --think MS               paced: mean pause before each operation, randomised ±50% (50)
  --burst                  the seed's run: all clients at once, back to back
  --files N                files per client (5)
  --concurrency N          connections open at once (1k, 10k: all; 100k: as many as fit;
                           1m: as many as fit, at most 18,000)
  --leave stay|close|unregister   after the script (stay when all fit at once, else close)
  --full-list-every N      (100; 10,000 for 100k; 0, none, for 1m: a whole LIST of a
                           million hosts is ~700 MB)
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
CPU next to the throughput, and says which of them bounds it. Paced runs also report the
tool's own lateness: how long after its intended time each request was queued (part of
every latency printed, and the load generator's doing, not the server's).

Both:
  --coordinator-pid PID    sample its CPU and memory every 100 ms
  --stats-api URL          the coordinator's server API (default: --api's): poll its /api/stats
                           and report the coordinator's own service time per action and its
                           loop's turn times beside the client-observed latency
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
    pub(crate) preset: Option<String>,
    pub(crate) clients: usize,
    pub(crate) files: usize,
    pub(crate) concurrency: Option<usize>,
    pub(crate) coordinator: String,
    pub(crate) auth: Auth,
    pub(crate) coordinator_pid: Option<u32>,
    pub(crate) hold: Option<usize>,
    pub(crate) duration: f64,
    pub(crate) rate: Option<f64>,
    pub(crate) pipeline: usize,
    pub(crate) ping_share: f64,
    pub(crate) reference_echo: bool,
    /// Presets: None runs the seed's burst.
    pub(crate) pacing: Option<Pacing>,
    pub(crate) json: Option<PathBuf>,
    pub(crate) leave: Option<Leave>,
    pub(crate) full_list_every: Option<usize>,
    pub(crate) list_query: Option<String>,
    pub(crate) shards: usize,
    pub(crate) run: String,
    pub(crate) timeout: f64,
    pub(crate) source_ips: usize,
    pub(crate) connect_burst: usize,
    pub(crate) token_threads: usize,
    pub(crate) stats_api: Option<String>,
    /// Child mode: this is shard i of n.
    pub(crate) shard: Option<(usize, usize)>,
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
        Some("1m") => Some(1_000_000),
        Some(p) => die(TOOL, format!("unknown preset {p:?} (1k, 10k, 100k or 1m)")),
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
    let stats_api = a.value("--stats-api").or_else(|| api.clone());
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
        stats_api: stats_api.map(|u| u.trim_end_matches('/').to_string()),
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
