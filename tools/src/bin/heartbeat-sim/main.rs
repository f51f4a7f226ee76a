//! heartbeat-sim: N simulated clients heartbeating a real coordinator, first every 60 s
//! (fixed), then at the adaptive intervals of their state (idle 300 s, active 60 s, busy
//! 30 s), then with liveness from the connection (a PING only when the state changes or
//! to keep a NAT mapping; TCP keepalive watches the rest), with time compressed by
//! --time-scale. Reports heartbeats per second in real time,
//! the reduction, and the coordinator's CPU per 1,000 heartbeats a second. Clients share a
//! pool of registered connections when they do not all fit; load runs in child processes.

use crate::child::child;
use crate::parent::parent;
use p2pshare_proto::registry::HeartbeatState;
use p2pshare_tools::args::Args;
use p2pshare_tools::die;
use p2pshare_tools::tokens::Auth;
use std::path::PathBuf;

mod child;
mod parent;
mod report;

const TOOL: &str = "heartbeat-sim";
const HELP: &str = "\
usage: heartbeat-sim --coordinator HOST:PORT (--jwt-secret S | --jwt-secret-file F | --api URL
                     | --anonymous) [options]
  --clients N              simulated clients (100000)
  --mix idle=0.8,active=0.15,busy=0.05   share of clients in each state (adaptive run);
                           the default is the mix that gives the seed's 684 req/s
  --fixed-interval S       the fixed strategy's heartbeat (60)
  --intervals idle=300,active=60,busy=30   the adaptive strategy's heartbeats
  --state-change-every S   connection strategy: a client's state changes once per S s on
                           average, and each change is a PING (3600)
  --nat-keepalive S        connection strategy: a PING every S s keeps a NAT mapping (3600;
                           RFC 5382 asks NATs to keep an idle TCP mapping 2 h 4 min)
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

const STATES: [HeartbeatState; 3] = [
    HeartbeatState::Idle,
    HeartbeatState::Active,
    HeartbeatState::Busy,
];
/// The state shares behind the seed's adaptive figure: 100,000 × (0.8/300 + 0.15/60 +
/// 0.05/30) = 683.3, its "~684 requests/second".
const SEED_MIX: [f64; 3] = [0.8, 0.15, 0.05];
static HB_OPS: &[&str] = &["CONNECT", "REGISTER", "PUBLISH", "PING"];

#[derive(Clone)]
struct Cfg {
    pub(crate) coordinator: String,
    pub(crate) auth: Auth,
    pub(crate) clients: usize,
    pub(crate) mix: [f64; 3],
    pub(crate) fixed_interval: f64,
    pub(crate) intervals: [f64; 3],
    pub(crate) state_change_every: f64,
    pub(crate) nat_keepalive: f64,
    pub(crate) scale: f64,
    pub(crate) auto_scale: bool,
    pub(crate) reference_echo: bool,
    pub(crate) duration: f64,
    pub(crate) connections: Option<usize>,
    pub(crate) coordinator_pid: Option<u32>,
    pub(crate) json: Option<PathBuf>,
    pub(crate) shards: usize,
    pub(crate) source_ips: usize,
    pub(crate) connect_burst: usize,
    pub(crate) timeout: f64,
    pub(crate) run: String,
    pub(crate) token_threads: usize,
    pub(crate) shard: Option<(usize, usize)>,
}

fn parse_triple(s: &str, what: &str) -> [f64; 3] {
    let mut out = [f64::NAN; 3];
    for part in s.split(',') {
        let Some((k, v)) = part.split_once('=') else {
            die(TOOL, format!("{what}: expected state=value, got {part:?}"))
        };
        let Some(i) = STATES.iter().position(|s| s.as_str() == k.trim()) else {
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
        state_change_every: a.parsed("--state-change-every").unwrap_or(3600.0),
        nat_keepalive: a.parsed("--nat-keepalive").unwrap_or(3600.0),
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
    if !(cfg.scale > 0.0
        && cfg.duration > 0.0
        && cfg.fixed_interval > 0.0
        && cfg.state_change_every > 0.0
        && cfg.nat_keepalive > 0.0)
    {
        die(
            TOOL,
            "--time-scale, --duration, --fixed-interval, --state-change-every and --nat-keepalive must be positive",
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

/// The strategies, in the order they run and report.
pub(crate) const STRATEGIES: [&str; 3] = ["fixed", "adaptive", "connection"];

impl Cfg {
    /// One client's mean PING interval (s) under `strategy` in state `s`.
    pub(crate) fn interval(&self, strategy: &str, s: usize) -> f64 {
        match strategy {
            "adaptive" => self.intervals[s],
            // State changes and NAT keepalives together: their rates add.
            "connection" => 1.0 / (1.0 / self.state_change_every + 1.0 / self.nat_keepalive),
            _ => self.fixed_interval,
        }
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
