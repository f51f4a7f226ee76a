//! Shared harness for end-to-end tests: spawns the real `p2pshare` binary
//! (coordinator, node) on port 0 with a temporary data directory, reads the
//! printed `... listening on ...` lines with a timeout, and talks to it with
//! a tiny blocking HTTP/1.1 client and a registry line client. Processes are
//! killed on drop; their stderr is shown if the test failed.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const JWT_SECRET: &str = "node-tests-jwt-secret-0123456789";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const PASSWORD: &str = "correct horse battery";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_p2pshare")
}

/// A running child process: stdout lines on a channel, stderr kept for failures.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Proc {
    pub fn spawn(name: &str, args: &[String], env: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A stray .env in the working directory must not leak in.
            .current_dir(std::env::temp_dir());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn p2pshare");
        let (tx, rx) = channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let keep = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut v) = keep.lock() {
                    v.push(line);
                }
            }
        });
        Proc {
            name: name.to_owned(),
            child,
            lines: rx,
            stderr,
        }
    }

    /// The rest of the first stdout line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(prefix) {
                        return rest.trim().to_owned();
                    }
                }
                Err(_) => panic!(
                    "{}: no '{prefix}' line on stdout within {START_TIMEOUT:?}; stderr:\n{}",
                    self.name,
                    self.stderr_text()
                ),
            }
        }
    }

    pub fn stderr_text(&self) -> String {
        self.stderr.lock().map(|v| v.join("\n")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            eprintln!("----- {} stderr -----\n{}", self.name, self.stderr_text());
        }
    }
}

/// A printed `IP:PORT` (maybe with `http://`), made reachable: 0.0.0.0 → 127.0.0.1.
pub fn reachable(printed: &str) -> SocketAddr {
    let s = printed.trim_start_matches("http://");
    let a: SocketAddr = s.parse().unwrap_or_else(|_| panic!("bad address {s:?}"));
    if a.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), a.port())
    } else {
        a
    }
}

pub struct Coordinator {
    pub proc: Proc,
    pub registry: SocketAddr,
    pub api: SocketAddr,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Coordinator {
    pub fn start() -> Coordinator {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("coordinator");
        let mut c = Coordinator::start_in(&data, 0, 0);
        c._tmp = Some(tmp);
        c
    }

    /// On `data`, binding these ports (0 = any): for restarts on the same address.
    pub fn start_in(data: &Path, registry_port: u16, api_port: u16) -> Coordinator {
        let args: Vec<String> = vec![
            "coordinator".into(),
            "--registry-port".into(),
            registry_port.to_string(),
            "--admin-api-port".into(),
            api_port.to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        let env = [
            ("JWT_SECRET_KEY", JWT_SECRET.to_string()),
            ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_string()),
            ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
            ("P2PSHARE_LOG", "debug".to_string()),
        ];
        let mut proc = Proc::spawn("coordinator", &args, &env);
        let registry = reachable(&proc.wait_line("registry listening on "));
        let api = reachable(&proc.wait_line("admin api listening on "));
        Coordinator {
            proc,
            registry,
            api,
            data: data.to_path_buf(),
            _tmp: None,
        }
    }

    /// Kills it (SIGKILL) and starts it again on the same ports and data.
    pub fn restart(&mut self) {
        self.proc.kill();
        let (r, a) = (self.registry.port(), self.api.port());
        // The ports were just freed; binding them again may race a TIME_WAIT
        // for a moment (listeners use SO_REUSEADDR, so this is rare).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let next = std::panic::catch_unwind(|| Coordinator::start_in(&self.data, r, a));
            match next {
                Ok(mut c) => {
                    std::mem::swap(&mut self.proc, &mut c.proc);
                    return;
                }
                Err(e) if Instant::now() > deadline => std::panic::resume_unwind(e),
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }
}

pub struct NodeProc {
    pub proc: Proc,
    pub api: SocketAddr,
    pub data: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
    _tmp: Option<tempfile::TempDir>,
}

impl NodeProc {
    pub fn start(coord: &Coordinator) -> NodeProc {
        NodeProc::start_with(coord, &[], &[])
    }

    /// `extra` flags and environment on top of the defaults (port 0, range 0-0).
    pub fn start_with(
        coord: &Coordinator,
        extra: &[&str],
        env: &[(&'static str, &str)],
    ) -> NodeProc {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("node");
        let mut n = NodeProc::start_in(&data, coord.registry, coord.api, extra, env);
        n._tmp = Some(tmp);
        n
    }

    pub fn start_in(
        data: &Path,
        registry: SocketAddr,
        api: SocketAddr,
        extra: &[&str],
        env: &[(&'static str, &str)],
    ) -> NodeProc {
        let mut args: Vec<String> = vec![
            "node".into(),
            "--client-api-port".into(),
            "0".into(),
            "--coordinator".into(),
            registry.to_string(),
            "--coordinator-api".into(),
            format!("http://{api}"),
            "--port-range".into(),
            "0-0".into(),
            "--data-dir".into(),
            data.display().to_string(),
        ];
        if !extra.contains(&"--share-root") {
            args.extend(default_share_root());
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut envs: Vec<(&'static str, String)> = vec![("P2PSHARE_LOG", "debug".into())];
        envs.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let mut proc = Proc::spawn("node", &args, &envs);
        let api = reachable(&proc.wait_line("client api listening on "));
        NodeProc {
            proc,
            api,
            data: data.to_path_buf(),
            args,
            env: envs,
            _tmp: None,
        }
    }

    /// SIGKILL and start again with the same flags and data directory.
    pub fn restart(&mut self) {
        self.proc.kill();
        let env: Vec<(&str, String)> = self.env.clone();
        let mut proc = Proc::spawn("node", &self.args, &env);
        self.api = reachable(&proc.wait_line("client api listening on "));
        self.proc = proc;
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        http_json(self.api, method, path, token, body)
    }

    /// Registers (or logs in, if taken) `username`, returning its token.
    pub fn login(&self, username: &str, display_name: &str) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/client/register",
            None,
            Some(json!({"username": username, "password": PASSWORD, "display_name": display_name})),
        );
        if s == 200 || s == 201 {
            return v["token"].as_str().expect("token").to_owned();
        }
        let (s, v) = self.call(
            "POST",
            "/api/client/login",
            None,
            Some(json!({"username": username, "password": PASSWORD})),
        );
        assert_eq!(s, 200, "login {username}: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Login plus /init; returns (token, peer port).
    pub fn session(&self, username: &str, display_name: &str) -> (String, u16) {
        let token = self.login(username, display_name);
        let (s, v) = self.call("POST", "/api/client/init", Some(&token), Some(json!({})));
        assert_eq!(s, 200, "init {username}: {v}");
        let port = v["client"]["port"].as_u64().expect("peer port") as u16;
        (token, port)
    }

    /// Waits until `file` is hashed (publishable), returning its entry.
    pub fn wait_hashed(&self, token: &str, name: &str) -> Value {
        wait_for(&format!("{name} hashed"), || {
            let (s, v) = self.call("GET", "/api/client/local-files", Some(token), None);
            assert_eq!(s, 200, "{v}");
            v["files"]
                .as_array()?
                .iter()
                .find(|f| f["name"] == name && f["sha256"].is_string())
                .cloned()
        })
    }

    /// add-file + wait for the hash + publish (must succeed).
    pub fn add_and_publish(&self, token: &str, path: &Path) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/client/add-file",
            Some(token),
            Some(json!({"path": path})),
        );
        assert_eq!(s, 200, "add-file: {v}");
        let name = v["file"]["name"].as_str().expect("name").to_owned();
        self.wait_hashed(token, &name);
        let (s, v) = self.call(
            "POST",
            "/api/client/publish",
            Some(token),
            Some(json!({"fname": name})),
        );
        assert_eq!(s, 200, "publish: {v}");
        name
    }
}

/// The share root of test nodes that name none: the system temp folder, where
/// every test's `tempfile::tempdir()` lives. Those folders are named `.tmp…`
/// (hidden below that root), hence `--share-hidden`; tests of the rules
/// themselves pass their own `--share-root`. A node's data directory sits
/// there too and stays refused: it is never shared, whatever the roots.
pub fn default_share_root() -> Vec<String> {
    let tmp = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    vec![
        "--share-root".into(),
        tmp.display().to_string(),
        "--share-hidden".into(),
    ]
}

/// Polls `f` every 50 ms until it yields something (15 s at most).
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Reads one response (Content-Length framed) from `r`.
pub fn read_response(r: &mut impl BufRead) -> HttpResponse {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).expect("header line");
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).expect("body");
    HttpResponse {
        status,
        headers,
        body,
    }
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    s.write_all(raw).expect("send");
    read_response(&mut BufReader::new(s))
}

/// Builds a request with `Host: <addr>` and `Connection: close`.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Vec<u8> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    // The client API refuses state-changing requests without it (CSRF).
    if !body.is_empty() || method == "POST" || method == "DELETE" {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

/// A JSON request; answers (status, JSON body or Null).
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let r = http_raw(
        addr,
        &request_bytes(addr, method, path, token, body.as_ref()),
    );
    let v = r.json();
    (r.status, v)
}

/// A registry (JSON lines) client.
pub struct RegistryClient {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl RegistryClient {
    pub fn connect(addr: SocketAddr) -> RegistryClient {
        let s = TcpStream::connect(addr).expect("connect registry");
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        RegistryClient {
            reader: BufReader::new(s.try_clone().expect("clone")),
            writer: s,
        }
    }

    pub fn ask(&mut self, action: &str, data: Value) -> Value {
        let line = json!({"action": action, "data": data}).to_string() + "\n";
        self.writer.write_all(line.as_bytes()).expect("send");
        let mut out = String::new();
        self.reader.read_line(&mut out).expect("answer");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("bad answer {out:?}: {e}"))
    }
}

/// Deterministic test content.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
