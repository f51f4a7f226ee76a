//! Processes of the real binary: a coordinator, a node or `up`, started on
//! port 0 with the printed addresses read back, stderr kept and printed if
//! the test fails, killed on drop. A restart reads the new address again.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::relay::Relay;
use super::{bin, default_share_root, reachable, ADMIN_PASSWORD, SECRET, START_TIMEOUT};

/// A running child process: stdout lines on a channel, stderr kept for failures.
pub struct Proc {
    pub name: String,
    child: Child,
    lines: Receiver<String>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// How to start one process: arguments, environment, a descriptor limit.
#[derive(Clone, Default)]
pub struct Spec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// RLIMIT_NOFILE for the child (tests that go past it).
    pub nofile: Option<u64>,
}

impl Proc {
    /// `p2pshare <args>` with `env` on top of ours.
    pub fn spawn(name: &str, args: &[String], env: &[(&str, String)]) -> Proc {
        Proc::start(
            name,
            &Spec {
                args: args.to_vec(),
                env: env
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                nofile: None,
            },
        )
    }

    pub fn start(name: &str, spec: &Spec) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A stray .env in the working directory must not leak in.
            .current_dir(std::env::temp_dir());
        for (k, v) in &spec.env {
            cmd.env(k, v);
        }
        if let Some(n) = spec.nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec here.
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
        let mut child = cmd.spawn().expect("spawn p2pshare");
        let (tx, rx) = channel();
        let out = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let keep = stderr.clone();
        let err = child.stderr.take().expect("stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
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

/// A coordinator process on its own data directory.
pub struct Coordinator {
    pub proc: Proc,
    /// Where clients reach the registry (a relay's address if relayed).
    pub registry: SocketAddr,
    /// Where clients reach the server API (a relay's address if relayed).
    pub api: SocketAddr,
    pub data: PathBuf,
    spec: Spec,
    /// Stable addresses in front of the real ones, for restarts that nodes follow.
    relays: Option<(Relay, Relay)>,
    _tmp: Option<tempfile::TempDir>,
}

impl Coordinator {
    pub fn start() -> Coordinator {
        Coordinator::start_with(&[], &[])
    }

    /// With extra flags and environment, on a fresh data directory.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Coordinator {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut c = Coordinator::start_in(&tmp.path().join("data"), args, env);
        c._tmp = Some(tmp);
        c
    }

    /// Listening on every interface (to be reached from a non-loopback address).
    pub fn start_on_all(args: &[&str]) -> Coordinator {
        let mut args = args.to_vec();
        args.extend(["--host", "0.0.0.0"]);
        Coordinator::start_with(&args, &[])
    }

    /// On an existing data directory (a second life of the same coordinator).
    pub fn start_in(data: &Path, args: &[&str], env: &[(&str, &str)]) -> Coordinator {
        Coordinator::launch(data, args, env, None)
    }

    /// With a descriptor limit, to go past it.
    pub fn start_in_with_nofile(data: &Path, nofile: u64) -> Coordinator {
        Coordinator::launch(data, &[], &[], Some(nofile))
    }

    /// Behind two relays, so that nodes pointed at it follow a [`restart`]
    /// (which binds new ports: never a fixed one).
    ///
    /// [`restart`]: Coordinator::restart
    pub fn start_relayed() -> Coordinator {
        Coordinator::start_relayed_with(&[], &[])
    }

    /// [`start_relayed`](Coordinator::start_relayed) with extra flags and environment.
    pub fn start_relayed_with(args: &[&str], env: &[(&str, &str)]) -> Coordinator {
        let mut c = Coordinator::start_with(args, env);
        let reg = Relay::start(c.registry);
        let api = Relay::start(c.api);
        c.registry = reg.addr;
        c.api = api.addr;
        c.relays = Some((reg, api));
        c
    }

    fn launch(
        data: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Coordinator {
        let mut spec = Spec {
            args: vec![
                "coordinator".into(),
                "--data-dir".into(),
                data.display().to_string(),
                "--registry-port".into(),
                "0".into(),
                "--admin-api-port".into(),
                "0".into(),
            ],
            env: [
                ("JWT_SECRET_KEY", SECRET),
                ("ADMIN_PASSWORD", ADMIN_PASSWORD),
                ("P2PSHARE_PBKDF2_ITERATIONS", "1000"),
                ("P2PSHARE_LOG", "info"),
            ]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            nofile,
        };
        if !args.contains(&"--host") {
            spec.args.extend(["--host".into(), "127.0.0.1".into()]);
        }
        spec.args.extend(args.iter().map(|s| s.to_string()));
        // Later entries win: the caller's environment overrides ours.
        spec.env
            .extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let (proc, registry, api) = Coordinator::spawn(&spec);
        Coordinator {
            proc,
            registry,
            api,
            data: data.to_path_buf(),
            spec,
            relays: None,
            _tmp: None,
        }
    }

    fn spawn(spec: &Spec) -> (Proc, SocketAddr, SocketAddr) {
        let mut proc = Proc::start("coordinator", spec);
        let registry = reachable(&proc.wait_line("registry listening on "));
        let api = reachable(&proc.wait_line("admin api listening on "));
        (proc, registry, api)
    }

    /// SIGKILL and start again on the same data, flags and environment; the
    /// new (port 0) addresses are read back, and relays, if any, follow.
    pub fn restart(&mut self) {
        self.proc.kill();
        let (proc, registry, api) = Coordinator::spawn(&self.spec);
        self.proc = proc;
        match &self.relays {
            Some((r, a)) => {
                r.point_at(registry);
                a.point_at(api);
            }
            None => {
                self.registry = registry;
                self.api = api;
            }
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn api_url(&self) -> String {
        format!("http://{}", self.api)
    }

    pub fn reg(&self) -> super::RegistryClient {
        super::RegistryClient::connect(self.registry)
    }

    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        super::http_json(self.api, method, path, token, body)
    }

    /// Registers an account through the server API; returns its token.
    pub fn account(&self, username: &str, display_name: &str) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/user/register",
            None,
            Some(serde_json::json!({"username": username, "password": super::PASSWORD, "display_name": display_name})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().expect("token").to_string()
    }

    pub fn admin_token(&self) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/admin/login",
            None,
            Some(serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().expect("token").to_string()
    }
}

/// A node process.
pub struct Node {
    pub proc: Proc,
    pub api: SocketAddr,
    pub data: PathBuf,
    spec: Spec,
    _tmp: Option<tempfile::TempDir>,
}

impl Node {
    pub fn start(coord: &Coordinator) -> Node {
        Node::start_with(coord, &[], &[])
    }

    /// `extra` flags and environment on top of the defaults (port 0, peer
    /// ports from 0-0), on a fresh data directory.
    pub fn start_with(coord: &Coordinator, extra: &[&str], env: &[(&str, &str)]) -> Node {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("node");
        let mut n = Node::start_in(&data, coord.registry, coord.api, extra, env);
        n._tmp = Some(tmp);
        n
    }

    /// On `data` (kept across runs), against any coordinator addresses.
    pub fn start_in(
        data: &Path,
        registry: SocketAddr,
        api: SocketAddr,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Node {
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
        let mut envs: Vec<(String, String)> = vec![
            ("JWT_SECRET_KEY".into(), SECRET.into()),
            ("P2PSHARE_LOG".into(), "debug".into()),
        ];
        envs.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let spec = Spec {
            args,
            env: envs,
            nofile: None,
        };
        let mut proc = Proc::start("node", &spec);
        let api = reachable(&proc.wait_line("client api listening on "));
        Node {
            proc,
            api,
            data: data.to_path_buf(),
            spec,
            _tmp: None,
        }
    }

    /// SIGKILL and start again with the same flags and data directory; the
    /// new client API address is read back.
    pub fn restart(&mut self) {
        self.proc.kill();
        let mut proc = Proc::start("node", &self.spec);
        self.api = reachable(&proc.wait_line("client api listening on "));
        self.proc = proc;
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }
}

/// Runs a short-lived command to its end with `env` added and `stdin`
/// piped in (or none at all: no terminal, as in CI), capturing its output.
pub fn run_to_end(
    cmd: &mut Command,
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> std::process::Output {
    use std::io::Write;
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn");
    if let Some(text) = stdin {
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(text.as_bytes()).expect("write stdin");
    }
    child.wait_with_output().expect("output")
}
