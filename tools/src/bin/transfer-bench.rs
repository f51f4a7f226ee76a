//! transfer-bench: the seed's peer-to-peer transfer test through real processes. It starts
//! a coordinator and nodes (ports 0), registers users through the client API, publishes
//! generated files on one node and fetches them from others, timing each fetch from the
//! POST to the moment its status reads completed, and checks every byte by SHA-256.
//! Optionally runs nginx + curl on the same files as a reference.

use p2pshare_tools::args::{parse_sizes, size_label, Args};
use p2pshare_tools::gen;
use p2pshare_tools::hist::{OpHist, OpSet};
use p2pshare_tools::http::Client;
use p2pshare_tools::proc::Monitor;
use p2pshare_tools::progress::Progress;
use p2pshare_tools::report::{round, write_json};
use p2pshare_tools::spawn::{self, Proc};
use p2pshare_tools::{die, rlimit};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TOOL: &str = "transfer-bench";
const HELP: &str = "\
usage: transfer-bench [--bin PATH] [--sizes 10K,100K,1M,10M,100M,1G] [--runs N] [options]
Starts a coordinator and nodes from --bin (target/release/p2pshare), publishes generated files
on one node and fetches them from another through the client API; each fetch is timed from the
POST to the moment /fetch-progress reads completed, and its bytes are checked by SHA-256.
  --runs N                 fetches per size (default 5 up to 10M, 3 for 100M, 1 from 1G)
  --concurrent N           nodes fetching the same file at once (3; 0 to skip)
  --concurrent-size SIZE   file for the concurrent test (100M)
  --reference nginx        also serve the files with nginx (sendfile) and fetch with curl
  --dir DIR                work directory (a new one under the temp dir by default)
  --keep                   keep the work directory
  --max-upload-rate RATE   start the nodes with this upload limit (20MB, 512KB; unlimited)
  --sources N              serving nodes publishing each file (1); with more, each fetch
                           names no host and reads from all of them at once
  --json FILE              write the report as JSON
MB/s here is 10^6 bytes per second. K, M, G sizes are 1024-based.";

struct Cfg {
    bin: PathBuf,
    sizes: Vec<u64>,
    runs: Option<usize>,
    concurrent: usize,
    concurrent_size: u64,
    reference: bool,
    dir: Option<PathBuf>,
    keep: bool,
    json: Option<PathBuf>,
    /// Passed to every node as `--max-upload-rate` (bytes per second, as the node parses it).
    max_upload_rate: Option<String>,
    /// Serving nodes; more than one makes every timed fetch multi-source.
    sources: usize,
}

fn parse() -> Cfg {
    let mut a = Args::from_env(TOOL);
    if a.flag("--help") || a.flag("-h") {
        println!("{HELP}");
        std::process::exit(0);
    }
    let sizes = a
        .value("--sizes")
        .unwrap_or_else(|| "10K,100K,1M,10M,100M,1G".into());
    let sizes = parse_sizes(&sizes).unwrap_or_else(|e| die(TOOL, e));
    if sizes.is_empty() {
        die(TOOL, "--sizes is empty");
    }
    let reference = match a.value("--reference").as_deref() {
        None => false,
        Some("nginx") => true,
        Some(o) => die(TOOL, format!("--reference {o:?}: only nginx is supported")),
    };
    let cfg = Cfg {
        bin: a
            .value("--bin")
            .unwrap_or_else(|| "target/release/p2pshare".into())
            .into(),
        sizes,
        runs: a.parsed("--runs"),
        concurrent: a.parsed("--concurrent").unwrap_or(3),
        concurrent_size: a.size("--concurrent-size").unwrap_or(100 << 20),
        reference,
        dir: a.value("--dir").map(Into::into),
        keep: a.flag("--keep"),
        json: a.value("--json").map(Into::into),
        max_upload_rate: a.value("--max-upload-rate"),
        sources: a.parsed("--sources").unwrap_or(1).max(1),
    };
    a.finish();
    cfg
}

fn runs_for(cfg: &Cfg, size: u64) -> usize {
    cfg.runs
        .unwrap_or(if size <= 10 << 20 {
            5
        } else if size < 1 << 30 {
            3
        } else {
            1
        })
        .max(1)
}

/// One node process with one logged-in user.
struct Node {
    proc: Proc,
    http: Client,
    token: String,
    hostname: String,
}

impl Node {
    fn call(&mut self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, String> {
        let tok = self.token.clone();
        self.http.ok(method, path, body, Some(&tok))
    }
}

fn start_node(cfg: &Cfg, dir: &Path, name: &str, reg: &str, admin: &str) -> Node {
    let data = dir.join(name);
    // The generated files and the downloads live in `dir`: it is the share root.
    let root =
        std::fs::canonicalize(dir).unwrap_or_else(|e| die(TOOL, format!("{}: {e}", dir.display())));
    let mut args: Vec<String> = [
        "node",
        "--data-dir",
        &data.to_string_lossy(),
        "--client-api-port",
        "0",
        "--coordinator",
        reg,
        "--coordinator-api",
        admin,
        "--advertise-ip",
        "127.0.0.1",
        "--share-root",
        &root.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(rate) = &cfg.max_upload_rate {
        args.extend(["--max-upload-rate".to_string(), rate.clone()]);
    }
    let proc = spawn::start(
        name,
        &cfg.bin,
        &args,
        &[("P2PSHARE_PBKDF2_ITERATIONS", "1000".into())],
        dir,
        &dir.join(format!("{name}.log")),
        &["client api"],
        Duration::from_secs(20),
    )
    .unwrap_or_else(|e| die(TOOL, e));
    let url = proc
        .addr("client api")
        .unwrap_or_else(|e| die(TOOL, e))
        .to_string();
    let mut http = Client::new(&url).unwrap_or_else(|e| die(TOOL, e));
    let user = format!(
        "tb{}{}",
        std::process::id() % 100_000,
        name.replace('-', "")
    );
    let body = json!({"username": user, "password": "transfer-bench-pw", "display_name": name});
    // A reused --dir already has the account: log in instead.
    let reg = match http.call("POST", "/api/client/register", Some(&body), None) {
        Ok((409, _)) => http.ok("POST", "/api/client/login", Some(&body), None),
        Ok((st, v)) if (200..300).contains(&st) => Ok(v),
        Ok((st, v)) => Err(format!(
            "register: HTTP {st}: {}",
            v["error"].as_str().unwrap_or("(no error message)")
        )),
        Err(e) => Err(e),
    }
    .unwrap_or_else(|e| die(TOOL, format!("{name}: {e}")));
    let token = reg["token"]
        .as_str()
        .unwrap_or_else(|| die(TOOL, format!("{name}: register gave no token")))
        .to_string();
    let init = http
        .ok("POST", "/api/client/init", Some(&json!({})), Some(&token))
        .unwrap_or_else(|e| die(TOOL, format!("{name}: {e}")));
    let hostname = init["client"]["hostname"]
        .as_str()
        .unwrap_or(&user)
        .to_string();
    Node {
        proc,
        http,
        token,
        hostname,
    }
}

/// Track and publish `path` on `node`, waiting out the background hash.
fn publish(node: &mut Node, path: &Path) -> Result<String, String> {
    let f = node.call("POST", "/api/client/add-file", Some(&json!({"path": path})))?;
    let name = f["file"]["name"]
        .as_str()
        .ok_or("add-file gave no name")?
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let tok = node.token.clone();
        let (st, v) = node.http.call(
            "POST",
            "/api/client/publish",
            Some(&json!({"fname": name, "force": true})),
            Some(&tok),
        )?;
        if (200..300).contains(&st) && v["success"] == Value::Bool(true) {
            return Ok(name);
        }
        if st == 409 && v["hashing"] == Value::Bool(true) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return Err(format!(
            "publish {name}: HTTP {st}: {}",
            v["error"].as_str().unwrap_or("(no error message)")
        ));
    }
}

struct Fetched {
    took: Duration,
    /// finished_at - started_at as the node reports them.
    node_s: Option<f64>,
}

/// Ask `node` to fetch `fname` from `host` (every host offering it when
/// empty) into `save`. `share: false`: a fetcher must not become a source
/// of the next measurement.
fn start_fetch(node: &mut Node, fname: &str, host: &str, save: &Path) -> Result<String, String> {
    let mut body = json!({"fname": fname, "save_path": save, "overwrite": true, "share": false});
    if !host.is_empty() {
        body["hostname"] = json!(host);
    }
    let v = node.call("POST", "/api/client/fetch", Some(&body))?;
    v["fetch_id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| "fetch gave no fetch_id".to_string())
}

/// One poll: Some(result) once finished.
fn poll_fetch(node: &mut Node, id: &str) -> Result<Option<Option<f64>>, String> {
    let v = node.call("GET", &format!("/api/client/fetch-progress/{id}"), None)?;
    match v["status"].as_str().unwrap_or("") {
        "completed" => {
            let node_s = match (v["started_at"].as_f64(), v["finished_at"].as_f64()) {
                (Some(a), Some(b)) => Some(b - a),
                _ => None,
            };
            Ok(Some(node_s))
        }
        "failed" | "cancelled" => Err(format!(
            "fetch {}: {}",
            v["status"].as_str().unwrap_or(""),
            v["error"].as_str().unwrap_or("(no error)")
        )),
        _ => Ok(None),
    }
}

/// Poll often enough that the poll interval is ~2% of the transfer at 2 GB/s, but at least
/// every 20 ms and at most every 200 µs.
fn poll_interval(size: u64) -> Duration {
    let expect = size as f64 / 2e9;
    Duration::from_secs_f64((expect / 50.0).clamp(200e-6, 20e-3))
}

fn fetch_once(
    node: &mut Node,
    fname: &str,
    host: &str,
    save: &Path,
    size: u64,
) -> Result<Fetched, String> {
    let t0 = Instant::now();
    let id = start_fetch(node, fname, host, save)?;
    let every = poll_interval(size);
    let limit = Duration::from_secs_f64((size as f64 / 5e6).max(60.0));
    loop {
        if let Some(node_s) = poll_fetch(node, &id)? {
            return Ok(Fetched {
                took: t0.elapsed(),
                node_s,
            });
        }
        if t0.elapsed() > limit {
            return Err(format!("fetch not finished after {} s", limit.as_secs()));
        }
        std::thread::sleep(every);
    }
}

fn verify(path: &Path, sha: &str) -> Result<(), String> {
    let got = gen::sha256_file(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if got == sha {
        Ok(())
    } else {
        Err(format!("{}: SHA-256 {got}, expected {sha}", path.display()))
    }
}

fn mbps(size: u64, d: Duration) -> f64 {
    size as f64 / 1e6 / d.as_secs_f64().max(1e-9)
}

/// Speeds in MB/s summarised: mean, p50, min, max.
fn speed_stats(v: &[f64]) -> Value {
    if v.is_empty() {
        return json!({"mean": null, "p50": null, "min": null, "max": null});
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    json!({
        "mean": round(s.iter().sum::<f64>() / s.len() as f64, 2),
        "p50": round(s[s.len() / 2], 2),
        "min": round(s[0], 2),
        "max": round(s[s.len() - 1], 2),
    })
}

fn p50(v: &[f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    Some(s[s.len() / 2])
}

// ---------------------------------------------------------------- nginx reference

struct Nginx {
    child: std::process::Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> Result<u16, String> {
    // nginx cannot report a port-0 choice; take one the kernel says is free right now.
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

fn start_nginx(dir: &Path, root: &Path) -> Result<Nginx, String> {
    let bin = find_program("nginx").ok_or("nginx not found")?;
    let ndir = dir.join("nginx");
    std::fs::create_dir_all(ndir.join("tmp")).map_err(|e| e.to_string())?;
    let port = free_port()?;
    let d = ndir.display();
    let conf = format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n\
         client_body_temp_path {d}/tmp;\n  proxy_temp_path {d}/tmp;\n  fastcgi_temp_path {d}/tmp;\n\
         uwsgi_temp_path {d}/tmp;\n  scgi_temp_path {d}/tmp;\n\
         default_type application/octet-stream;\n\
         server {{ listen 127.0.0.1:{port}; root {}; }}\n}}\n",
        root.display()
    );
    let conf_path = ndir.join("nginx.conf");
    std::fs::write(&conf_path, conf).map_err(|e| e.to_string())?;
    let child = Command::new(&bin)
        .arg("-p")
        .arg(&ndir)
        .arg("-c")
        .arg(&conf_path)
        .arg("-e")
        .arg(ndir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let mut n = Nginx { child, port };
    // nginx prints nothing when ready; its port accepting is the signal.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(n);
        }
        if let Ok(Some(st)) = n.child.try_wait() {
            let log = std::fs::read_to_string(ndir.join("error.log")).unwrap_or_default();
            return Err(format!(
                "nginx exited ({st}): {}",
                log.lines().last().unwrap_or("")
            ));
        }
        if Instant::now() > deadline {
            return Err("nginx did not start listening within 10 s".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Fetch with curl; returns curl's own `time_total` (its process start-up excluded, which
/// would otherwise dominate small files) and the wall time of the whole command.
fn curl_once(port: u16, name: &str, save: &Path) -> Result<(Duration, Duration), String> {
    let url = format!("http://127.0.0.1:{port}/{name}");
    let t0 = Instant::now();
    let out = Command::new("curl")
        .args(["-s", "-f", "-w", "%{time_total}", "-o"])
        .arg(save)
        .arg(&url)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run curl: {e}"))?;
    let wall = t0.elapsed();
    if !out.status.success() {
        return Err(format!("curl {url}: {}", out.status));
    }
    let total: f64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .replace(',', ".")
        .parse()
        .map_err(|_| "curl printed no time_total".to_string())?;
    Ok((Duration::from_secs_f64(total.max(0.0)), wall))
}

// ---------------------------------------------------------------- main

struct SizeResult {
    size: u64,
    ours: OpHist,
    speeds: Vec<f64>,
    node_ms: Vec<f64>,
    anon_peak_mb: f64,
    /// curl's time_total histogram, MB/s from it, and wall ms of each curl command.
    nginx: Option<(OpHist, Vec<f64>, Vec<f64>)>,
    errors: Vec<String>,
}

fn main() {
    let cfg = parse();
    rlimit::raise_and_report(TOOL);
    let bin = match cfg.bin.canonicalize() {
        Ok(b) => b,
        Err(_) => die(
            TOOL,
            format!(
                "no p2pshare binary at {} (build it with `cargo build --release -p p2pshare` or pass --bin PATH)",
                cfg.bin.display()
            ),
        ),
    };
    let cfg = Cfg { bin, ..cfg };
    let dir = cfg.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("p2pshare-transfer-{}", p2pshare_tools::run_id()))
    });
    for sub in ["files", "downloads"] {
        if let Err(e) = std::fs::create_dir_all(dir.join(sub)) {
            die(
                TOOL,
                format!("cannot create {}: {e}", dir.join(sub).display()),
            );
        }
    }
    eprintln!("{TOOL}: working in {}", dir.display());
    let result = run(&cfg, &dir);
    if !cfg.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    if let Err(e) = result {
        die(TOOL, e);
    }
}

fn run(cfg: &Cfg, dir: &Path) -> Result<(), String> {
    // Files first: generating 1 GiB while nodes idle keeps it out of the measurements.
    let mut sizes = cfg.sizes.clone();
    if cfg.concurrent > 0 && !sizes.contains(&cfg.concurrent_size) {
        sizes.push(cfg.concurrent_size);
    }
    let mut files = Vec::new();
    for &size in &sizes {
        let name = format!("gen-{}.bin", size_label(size));
        let path = dir.join("files").join(&name);
        let sha =
            gen::write_file(&path, size, 1).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("{TOOL}: generated {name} ({size} bytes)");
        files.push((size, name, path, sha));
    }

    let coord = spawn::start(
        "coordinator",
        &cfg.bin,
        &[
            "coordinator".into(),
            "--data-dir".into(),
            dir.join("coordinator").to_string_lossy().into_owned(),
            "--registry-port".into(),
            "0".into(),
            "--admin-api-port".into(),
            "0".into(),
            "--host".into(),
            "127.0.0.1".into(),
        ],
        &[("P2PSHARE_PBKDF2_ITERATIONS", "1000".into())],
        dir,
        &dir.join("coordinator.log"),
        &["registry", "admin api"],
        Duration::from_secs(20),
    )?;
    let reg = coord.addr("registry")?.to_string();
    let admin = coord.addr("admin api")?.to_string();
    let mut server = start_node(cfg, dir, "node-serve", &reg, &admin);
    let mut fetchers: Vec<Node> = (0..cfg.concurrent.max(1))
        .map(|i| start_node(cfg, dir, &format!("node-fetch{}", i + 1), &reg, &admin))
        .collect();
    eprintln!(
        "{TOOL}: coordinator {reg}, serving node pid {}, {} fetching node(s)",
        server.proc.pid(),
        fetchers.len()
    );
    for f in &files {
        publish(&mut server, &f.2)?;
    }
    // More sources: the same files published by other nodes.
    let mut others: Vec<Node> = (1..cfg.sources)
        .map(|i| start_node(cfg, dir, &format!("node-serve{}", i + 1), &reg, &admin))
        .collect();
    for o in others.iter_mut() {
        for f in &files {
            publish(o, &f.2)?;
        }
    }
    let mon = Monitor::start(server.proc.pid(), Duration::from_millis(50))?;
    let nginx = if cfg.reference {
        if find_program("nginx").is_none() {
            eprintln!(
                "{TOOL}: nginx is not installed; install it with `apt-get install -y nginx` \
                 (skipping the reference)"
            );
            None
        } else if find_program("curl").is_none() {
            eprintln!(
                "{TOOL}: curl is not installed (apt-get install -y curl); skipping the reference"
            );
            None
        } else {
            Some(start_nginx(dir, &dir.join("files"))?)
        }
    } else {
        None
    };

    let mut progress = Progress::new();
    let mut results = Vec::new();
    let host = if cfg.sources > 1 {
        String::new()
    } else {
        server.hostname.clone()
    };
    for &size in &cfg.sizes {
        let Some((_, name, _, sha)) = files.iter().find(|f| f.0 == size) else {
            continue;
        };
        let runs = runs_for(cfg, size);
        let mut r = SizeResult {
            size,
            ours: OpHist::default(),
            speeds: Vec::new(),
            node_ms: Vec::new(),
            anon_peak_mb: 0.0,
            nginx: None,
            errors: Vec::new(),
        };
        for k in 0..runs {
            progress.update(&format!("fetch {} run {}/{runs}", size_label(size), k + 1));
            let save = dir.join("downloads").join(format!("p2p-{name}"));
            let _ = std::fs::remove_file(&save);
            let from = mon.now().map(|s| s.t).unwrap_or_else(Instant::now);
            let res = fetch_once(&mut fetchers[0], name, &host, &save, size);
            let to = mon.now().map(|s| s.t).unwrap_or_else(Instant::now);
            if let Some(st) = mon.stats(from, to) {
                r.anon_peak_mb = r.anon_peak_mb.max(st.anon_peak_mb);
            }
            match res.and_then(|f| verify(&save, sha).map(|_| f)) {
                Ok(f) => {
                    r.ours.record(f.took);
                    r.speeds.push(mbps(size, f.took));
                    if let Some(s) = f.node_s {
                        r.node_ms.push(s * 1000.0);
                    }
                }
                Err(e) => {
                    r.ours.lost += 1;
                    r.errors.push(e);
                }
            }
            let _ = std::fs::remove_file(&save);
        }
        if let Some(n) = &nginx {
            let mut h = OpHist::default();
            let mut speeds = Vec::new();
            let mut walls = Vec::new();
            for k in 0..runs {
                progress.update(&format!("nginx {} run {}/{runs}", size_label(size), k + 1));
                let save = dir.join("downloads").join("x");
                let _ = std::fs::remove_file(&save);
                match curl_once(n.port, name, &save).and_then(|d| verify(&save, sha).map(|_| d)) {
                    Ok((d, wall)) => {
                        h.record(d);
                        speeds.push(mbps(size, d));
                        walls.push(wall.as_secs_f64() * 1000.0);
                    }
                    Err(e) => {
                        h.lost += 1;
                        r.errors.push(format!("nginx: {e}"));
                    }
                }
                let _ = std::fs::remove_file(&save);
            }
            r.nginx = Some((h, speeds, walls));
        }
        results.push(r);
    }

    // The seed's concurrent test: several nodes fetch one file at the same moment.
    let mut concurrent = Value::Null;
    let mut conc_hist = OpHist::default();
    if cfg.concurrent > 0 {
        let size = cfg.concurrent_size;
        let (_, name, _, sha) = files
            .iter()
            .find(|f| f.0 == size)
            .ok_or("concurrent file missing")?
            .clone();
        progress.update(&format!(
            "{} nodes fetching {} at once",
            cfg.concurrent,
            size_label(size)
        ));
        let from = mon.now().map(|s| s.t).unwrap_or_else(Instant::now);
        let t0 = Instant::now();
        let mut pending = Vec::new();
        for (i, f) in fetchers.iter_mut().enumerate() {
            let save = dir.join("downloads").join(format!("conc{i}-{name}"));
            let _ = std::fs::remove_file(&save);
            let started = Instant::now();
            let id = start_fetch(f, &name, &host, &save)?;
            pending.push((i, id, save, started));
        }
        let mut done: Vec<(usize, Duration, Result<(), String>)> = Vec::new();
        let mut to_verify = Vec::new();
        let every = poll_interval(size);
        let limit = Duration::from_secs_f64((3.0 * size as f64 / 5e6).max(60.0));
        while !pending.is_empty() {
            let mut still = Vec::new();
            for (i, id, save, started) in pending {
                match poll_fetch(&mut fetchers[i], &id) {
                    // Checked after all are done: hashing one file here would
                    // delay noticing that the others completed.
                    Ok(Some(_)) => to_verify.push((i, started.elapsed(), save, t0.elapsed())),
                    Ok(None) if t0.elapsed() < limit => still.push((i, id, save, started)),
                    Ok(None) => {
                        done.push((i, started.elapsed(), Err("not finished in time".into())))
                    }
                    Err(e) => done.push((i, started.elapsed(), Err(e))),
                }
            }
            pending = still;
            if !pending.is_empty() {
                std::thread::sleep(every);
            }
        }
        // Until the last fetch was seen completed (or given up on).
        let wall = if done.is_empty() {
            to_verify.iter().map(|v| v.3).max().unwrap_or_default()
        } else {
            t0.elapsed()
        };
        for (i, took, save, _) in to_verify {
            done.push((i, took, verify(&save, &sha)));
        }
        let to = mon.now().map(|s| s.t).unwrap_or_else(Instant::now);
        let anon = mon.stats(from, to).map(|s| s.anon_peak_mb);
        let ok: Vec<&(usize, Duration, Result<(), String>)> =
            done.iter().filter(|d| d.2.is_ok()).collect();
        for d in &done {
            match &d.2 {
                Ok(()) => conc_hist.record(d.1),
                Err(_) => conc_hist.lost += 1,
            }
        }
        let per: Vec<f64> = ok.iter().map(|d| mbps(size, d.1)).collect();
        let aggregate = mbps(size * ok.len() as u64, wall);
        let errors: Vec<String> = done
            .iter()
            .filter_map(|d| d.2.as_ref().err().cloned())
            .collect();
        concurrent = json!({
            "fetchers": cfg.concurrent,
            "size": size,
            "ok": ok.len(),
            "wall_ms": round(wall.as_secs_f64() * 1000.0, 3),
            "aggregate_mb_s": round(aggregate, 2),
            "per_fetch_mb_s": per.iter().map(|x| round(*x, 2)).collect::<Vec<_>>(),
            "serving_rss_anon_peak_mb": anon.map(|x| round(x, 1)),
            "errors": errors,
        });
        for i in 0..cfg.concurrent {
            let _ = std::fs::remove_file(dir.join("downloads").join(format!("conc{i}-{name}")));
        }
    }
    progress.clear();
    drop(nginx);
    mon.stop();
    report(cfg, &results, &concurrent, &conc_hist);
    drop(fetchers);
    drop(others);
    drop(server);
    drop(coord);
    Ok(())
}

fn report(cfg: &Cfg, results: &[SizeResult], concurrent: &Value, conc_hist: &OpHist) {
    // The fixed list: one row per size (and the concurrent test), ours then nginx.
    let names: Vec<&'static str> = results
        .iter()
        .map(|r| &*Box::leak(format!("fetch_{}", size_label(r.size)).into_boxed_str()))
        .chain(
            results
                .iter()
                .filter(|r| r.nginx.is_some())
                .map(|r| &*Box::leak(format!("nginx_{}", size_label(r.size)).into_boxed_str())),
        )
        .chain((!concurrent.is_null()).then(|| {
            &*Box::leak(
                format!(
                    "concurrent_{}x{}",
                    cfg.concurrent,
                    size_label(cfg.concurrent_size)
                )
                .into_boxed_str(),
            )
        }))
        .collect();
    let names: &'static [&'static str] = Box::leak(names.into_boxed_slice());
    let mut ops = OpSet::new(names);
    let mut k = 0;
    for r in results {
        ops.ops[k] = r.ours.clone();
        k += 1;
    }
    for r in results {
        if let Some((h, _, _)) = &r.nginx {
            ops.ops[k] = h.clone();
            k += 1;
        }
    }
    if !concurrent.is_null() {
        ops.ops[k] = conc_hist.clone();
    }
    println!("transfer-bench  durations from the fetch POST to status completed; bytes checked by SHA-256");
    if results.iter().any(|r| r.nginx.is_some()) {
        println!("nginx_* rows: curl's time_total (its process start-up excluded), same files, same folder");
    }
    print!("{}", ops.table());
    println!(
        "{:<8} {:>5} {:>10} {:>10} {:>10} {:>12} {:>14} {:>11} {:>8}",
        "size",
        "ok",
        "MB/s mean",
        "MB/s p50",
        "MB/s max",
        "node_ms p50",
        "serve anon MB",
        "nginx MB/s",
        "ratio"
    );
    let mut sizes_json = Vec::new();
    for r in results {
        let ok = r.speeds.len();
        let mean = if ok > 0 {
            r.speeds.iter().sum::<f64>() / ok as f64
        } else {
            0.0
        };
        let ours_p50 = p50(&r.speeds);
        let nginx_p50 = r.nginx.as_ref().and_then(|(_, s, _)| p50(s));
        let ratio = match (ours_p50, nginx_p50) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let maxv = r.speeds.iter().copied().fold(0.0, f64::max);
        println!(
            "{:<8} {:>5} {:>10.1} {:>10.1} {:>10.1} {:>12.3} {:>14.1} {:>11} {:>8}",
            size_label(r.size),
            format!("{ok}/{}", ok + r.ours.lost as usize),
            mean,
            ours_p50.unwrap_or(0.0),
            maxv,
            p50(&r.node_ms).unwrap_or(0.0),
            r.anon_peak_mb,
            nginx_p50
                .map(|x| format!("{x:.1}"))
                .unwrap_or_else(|| "-".into()),
            ratio
                .map(|x| format!("{x:.3}"))
                .unwrap_or_else(|| "-".into()),
        );
        for e in r.errors.iter().take(3) {
            println!("  error: {e}");
        }
        let mut j = json!({
            "size": r.size,
            "label": size_label(r.size),
            "runs": ok + r.ours.lost as usize,
            "ok": ok,
            "duration_ms": r.ours.summary().to_json(),
            "mb_per_s": speed_stats(&r.speeds),
            "node_ms_p50": p50(&r.node_ms).map(|x| round(x, 3)),
            "serving_rss_anon_peak_mb": round(r.anon_peak_mb, 1),
            "errors": r.errors,
        });
        if let Some((h, s, w)) = &r.nginx {
            j["nginx"] = json!({"duration_ms": h.summary().to_json(), "mb_per_s": speed_stats(s),
                "curl_wall_ms_p50": p50(w).map(|x| round(x, 3))});
            j["ratio"] = json!(ratio.map(|x| round(x, 4)));
        }
        sizes_json.push(j);
    }
    if !concurrent.is_null() {
        println!(
            "concurrent: {} nodes fetching {} at once: aggregate {} MB/s, per fetch {} MB/s, {} ok",
            cfg.concurrent,
            size_label(cfg.concurrent_size),
            concurrent["aggregate_mb_s"],
            concurrent["per_fetch_mb_s"],
            concurrent["ok"]
        );
    }
    let out = json!({
        "sizes": sizes_json,
        "concurrent": concurrent,
        "ops": ops.summary_json(),
        "mb": "10^6 bytes",
        "reference": if results.iter().any(|r| r.nginx.is_some()) { json!("nginx") } else { Value::Null },
    });
    if let Some(p) = &cfg.json {
        write_json(TOOL, p, &out);
    }
}
