//! Helpers for the transfer tests: node processes on port 0, users with a
//! peer listener, published files, raw peer-protocol connections, fetches
//! followed through the client API. Built on the coordinator harness.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub use crate::support::{http_json, Coord};

pub const PASSWORD: &str = "password-123";

/// One `p2pshare node` process.
pub struct Node {
    pub child: Child,
    pub api: SocketAddr,
    pub data: PathBuf,
    pub lines: Receiver<String>,
}

impl Node {
    /// Starts a node against `coord` on `data` (kept across restarts), with
    /// extra environment (e.g. the test throttle).
    pub fn start(coord: &Coord, data: &Path, env: &[(&str, &str)]) -> Node {
        let mut cmd = Command::new(crate::support::bin());
        cmd.arg("node")
            .arg("--data-dir")
            .arg(data)
            .args(["--client-api-port", "0", "--host", "127.0.0.1"])
            .args(["--coordinator", &coord.reg.to_string()])
            .args(["--coordinator-api", &format!("http://{}", coord.api)])
            .args(["--advertise-ip", "127.0.0.1"])
            .args(crate::support::default_share_root())
            .env("JWT_SECRET_KEY", crate::support::SECRET)
            .env("P2PSHARE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn node");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let api = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("node printed its client api address");
            if let Some(a) = line.strip_prefix("client api listening on http://") {
                let a: SocketAddr = a.trim().parse().expect("address parses");
                break SocketAddr::new("127.0.0.1".parse().unwrap(), a.port());
            }
        };
        Node {
            child,
            api,
            data: data.to_path_buf(),
            lines: rx,
        }
    }

    pub fn http(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        http_json(self.api, method, path, token, body)
    }

    /// Registers `name` through this node, logs it in and starts its session.
    pub fn user(&self, name: &str) -> User {
        let (s, v) = self.http(
            "POST",
            "/api/client/register",
            None,
            Some(json!({"username": name, "password": PASSWORD, "display_name": name})),
        );
        let token = if s == 200 {
            v["token"].as_str().unwrap().to_string()
        } else {
            self.login(name)
        };
        let (s, v) = self.http("POST", "/api/client/init", Some(&token), Some(json!({})));
        assert_eq!(s, 200, "init {name}: {v}");
        let port = v["client"]["port"].as_u64().expect("peer port") as u16;
        let hostname = v["client"]["hostname"].as_str().unwrap_or(name).to_string();
        User {
            name: name.into(),
            hostname,
            token,
            peer: SocketAddr::new("127.0.0.1".parse().unwrap(), port),
        }
    }

    pub fn login(&self, name: &str) -> String {
        let (s, v) = self.http(
            "POST",
            "/api/client/login",
            None,
            Some(json!({"username": name, "password": PASSWORD})),
        );
        assert_eq!(s, 200, "login {name}: {v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Tracks and publishes `path` for `u`, and waits until its peer
    /// answers INFO for it (the hash is computed in the background).
    pub fn publish(&self, u: &User, path: &Path) -> String {
        let (s, v) = self.http(
            "POST",
            "/api/client/add-file",
            Some(&u.token),
            Some(json!({"path": path})),
        );
        assert_eq!(s, 200, "add-file: {v}");
        let fname = path.file_name().unwrap().to_string_lossy().into_owned();
        // The node refuses to publish until it has hashed the file.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (s, v) = self.http(
                "POST",
                "/api/client/publish",
                Some(&u.token),
                Some(json!({"fname": fname, "force": true})),
            );
            if s == 200 {
                break;
            }
            assert!(
                s == 409 && v["hashing"] == true && Instant::now() < deadline,
                "publish: {s} {v}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut c = PeerConn::connect(u.peer);
            c.send(format!("INFO {fname}\n").as_bytes());
            let line = c.line();
            if line.starts_with("INFO ") {
                break;
            }
            assert!(Instant::now() < deadline, "INFO never answered: {line}");
            std::thread::sleep(Duration::from_millis(50));
        }
        fname
    }

    /// Starts a fetch; returns its id.
    pub fn fetch(&self, u: &User, body: Value) -> String {
        let (s, v) = self.http("POST", "/api/client/fetch", Some(&u.token), Some(body));
        assert_eq!(s, 200, "fetch: {v}");
        v["fetch_id"].as_str().expect("fetch_id").to_string()
    }

    pub fn progress(&self, u: &User, id: &str) -> Value {
        let (s, v) = self.http(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(&u.token),
            None,
        );
        assert_eq!(s, 200, "progress: {v}");
        v
    }

    /// Polls the fetch until `done(progress)` holds; panics after `secs`.
    pub fn wait_fetch(
        &self,
        u: &User,
        id: &str,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.progress(u, id);
            if done(&p) {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "fetch never reached the state: {p}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls until the fetch has a final status.
    pub fn wait_final(&self, u: &User, id: &str, secs: u64) -> Value {
        self.wait_fetch(u, id, secs, |p| {
            matches!(
                p["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub struct User {
    pub name: String,
    pub hostname: String,
    pub token: String,
    pub peer: SocketAddr,
}

/// A raw peer-protocol connection.
pub struct PeerConn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl PeerConn {
    pub fn connect(addr: SocketAddr) -> PeerConn {
        let s = TcpStream::connect(addr).expect("connect peer");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        PeerConn { s, buf: Vec::new() }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).unwrap();
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 64 * 1024];
        match self.s.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// The next line without its newline; "" at EOF.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            if !self.fill() {
                return String::new();
            }
        }
    }

    /// Exactly `n` payload bytes (fewer if the peer closes).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill() {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// True when the peer closed (EOF or reset) with nothing more to read.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}

/// Deterministic incompressible-looking bytes.
pub fn pattern(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    v
}

pub fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Files in `dir` whose name starts with `prefix` (final name, `.part`, ...).
pub fn files_like(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}
