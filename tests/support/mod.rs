//! Test harness for the coordinator: real processes on port 0, the printed
//! addresses read back, a line client for the registry and a raw HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-for-registry";
pub const ADMIN_PW: &str = "admin-password-123";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_p2pshare")
}

/// Share-root flags for test nodes: the system temp folder, where every
/// test's `tempfile::tempdir()` (named `.tmp…`, so hidden below that root:
/// `--share-hidden`) keeps the files it shares and the downloads it saves.
pub fn default_share_root() -> Vec<String> {
    let tmp = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    vec![
        "--share-root".into(),
        tmp.display().to_string(),
        "--share-hidden".into(),
    ]
}

pub struct Coord {
    pub child: Child,
    pub reg: SocketAddr,
    pub api: SocketAddr,
    pub data: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub lines: Receiver<String>,
}

fn loopback(addr: &str) -> SocketAddr {
    let a: SocketAddr = addr.parse().expect("printed address parses");
    SocketAddr::new("127.0.0.1".parse().unwrap(), a.port())
}

impl Coord {
    pub fn start() -> Coord {
        Self::start_with(&[], &[])
    }

    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Coord {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut c = Self::spawn_in(&data, args, env, None);
        c._tmp = Some(tmp);
        c
    }

    /// Starts listening on every interface (to be reached from a
    /// non-loopback address).
    pub fn start_on_all(args: &[&str]) -> Coord {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let mut c = Self::spawn_full(&data, "0.0.0.0", args, &[], None);
        c._tmp = Some(tmp);
        c
    }

    /// Starts on an existing data directory (restarts).
    pub fn spawn_in(
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Coord {
        Self::spawn_full(data, "127.0.0.1", args, env, nofile)
    }

    fn spawn_full(
        data: &Path,
        host: &str,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Coord {
        let mut cmd = Command::new(bin());
        cmd.arg("coordinator")
            .arg("--data-dir")
            .arg(data)
            .args([
                "--registry-port",
                "0",
                "--admin-api-port",
                "0",
                "--host",
                host,
            ])
            .args(args)
            .env("JWT_SECRET_KEY", SECRET)
            .env("ADMIN_PASSWORD", ADMIN_PW)
            .env("P2PSHARE_PBKDF2_ITERATIONS", "1000")
            .env("P2PSHARE_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n,
                        rlim_max: n,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = cmd.spawn().expect("spawn coordinator");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut reg = None;
        let mut api = None;
        while reg.is_none() || api.is_none() {
            let line = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("coordinator printed its addresses");
            if let Some(a) = line.strip_prefix("registry listening on ") {
                reg = Some(loopback(a));
            } else if let Some(a) = line.strip_prefix("admin api listening on http://") {
                api = Some(loopback(a));
            }
        }
        Coord {
            child,
            reg: reg.unwrap(),
            api: api.unwrap(),
            data: data.to_path_buf(),
            _tmp: None,
            lines: rx,
        }
    }

    pub fn reg(&self) -> Reg {
        Reg::connect(self.reg)
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

    /// Registers an account through the server API; returns its token.
    pub fn account(&self, username: &str, display_name: &str) -> String {
        let (s, v) = self.http(
            "POST",
            "/api/user/register",
            None,
            Some(json!({"username": username, "password": "password123", "display_name": display_name})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub fn admin_token(&self) -> String {
        let (s, v) = self.http(
            "POST",
            "/api/admin/login",
            None,
            Some(json!({"username":"admin","password":ADMIN_PW})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    }
}

impl Drop for Coord {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A user token minted with the test secret.
pub fn token(sub: &str) -> String {
    token_exp(sub, now() + 3600)
}

pub fn token_exp(sub: &str, exp: u64) -> String {
    p2pshare::auth::jwt::sign(
        SECRET.as_bytes(),
        &p2pshare::auth::jwt::Claims {
            sub: sub.into(),
            role: "user".into(),
            iat: now(),
            exp,
        },
    )
}

/// A registry connection speaking JSON lines.
pub struct Reg {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Reg {
    pub fn connect(addr: SocketAddr) -> Reg {
        let stream = TcpStream::connect(addr).expect("connect registry");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Reg { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> Option<Value> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                Some(serde_json::from_str(&s).unwrap_or_else(|e| panic!("bad reply {s:?}: {e}")))
            }
        }
    }

    pub fn req(&mut self, action: &str, data: Value) -> Value {
        let line = json!({"action": action, "data": data}).to_string() + "\n";
        self.send_raw(line.as_bytes());
        self.line().expect("a reply line")
    }

    /// REGISTER `host` with a valid token and no files.
    pub fn register(&mut self, host: &str) -> Value {
        self.req(
            "REGISTER",
            json!({"hostname": host, "port": 6001, "ip": "127.0.0.1", "token": token(host)}),
        )
    }

    /// True when the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// One HTTP/1.1 request on a fresh connection; returns status and JSON body.
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    // The client API refuses state-changing requests without it (CSRF).
    if !body.is_empty() || method == "POST" || method == "DELETE" {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let (status, _, body) = http_raw(addr, req.as_bytes());
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, v)
}

/// Sends raw bytes, reads until close; returns status, head and body.
pub fn http_raw(addr: SocketAddr, bytes: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(bytes).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    split_response(&all)
}

pub fn split_response(all: &[u8]) -> (u16, String, Vec<u8>) {
    let pos = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(all)));
    let head = String::from_utf8_lossy(&all[..pos]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head, all[pos + 4..].to_vec())
}
