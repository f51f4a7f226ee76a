//! The coordinator: the registry over TCP and the server API over
//! HTTP, both on one reactor. This module wires listeners,
//! connections, timers and workers; the protocols live in `conn` and `api`.

pub mod api;
pub mod conn;
pub mod guard;
mod handle;
pub mod registry;
pub mod secrets;
pub mod stats;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reactor::{
    CloseReason, ConnId, ConnMap, ConnOptions, Ctx, ListenerId, Pool, Reactor, Service, ServiceId,
};

use crate::config::Config;
use crate::{log_info, log_warn};

use api::{HttpConn, Job, JobDone, Probe};
use conn::RegConn;
use guard::{RateLimit, UnboundCount};
use registry::Registry;
use stats::OpStats;
use users::UserStore;

/// Timer keys of this service.
const T_SWEEP: u64 = 1;
/// Expired revocations and refilled rate buckets are dropped.
const T_HOUSEKEEP: u64 = 2;
const HOUSEKEEP_EVERY: Duration = Duration::from_secs(10);
/// Admin probes: the base plus the op id.
const T_PROBE_BASE: u64 = 1 << 32;
/// A stranger connection's deadline: the tag bit plus its id (see conn.rs).
const T_CONN_BASE: u64 = 1 << 63;

enum Kind {
    Registry(RegConn),
    Http(HttpConn),
    Probe(Probe),
}

pub struct Coordinator {
    svc: ServiceId,
    cfg: Config,
    jwt_secret: Vec<u8>,
    admin_password_hash: Arc<String>,
    users: Arc<UserStore>,
    pool: Pool<JobDone>,
    registry: Registry,
    stats: OpStats,
    conns: ConnMap<Kind>,
    registry_listener: ListenerId,
    /// Where the listeners ended up (port 0 picks one).
    pub registry_addr: SocketAddr,
    pub api_addr: SocketAddr,
    started: Instant,
    /// Async HTTP work waiting for a worker or a probe: op id → the connection.
    pending: HashMap<u64, ConnId>,
    /// Live admin probes: op id → the probe connection.
    probes: HashMap<u64, ConnId>,
    next_op: u64,
    /// Builds full-LIST snapshots off the loop, one at a time.
    snapshot_pool: Pool<(f64, u64, Arc<Vec<u8>>)>,
    building_snapshot: bool,
    /// Registry connections waiting for the snapshot being built.
    list_waiters: Vec<ConnId>,
    /// Reused reply buffer for registry lines.
    scratch: Vec<u8>,
    date: (u64, String),
    /// Unbound registry connections per source address.
    unbound: UnboundCount,
    /// Register and login attempts per source address.
    rate: RateLimit,
    /// Revoked token ids → their expiry (Unix s). Owned by the loop (no
    /// lock); the user store's log keeps them across restarts.
    revoked: HashMap<String, u64>,
    /// Hostnames a token has registered since start: never taken over by
    /// an anonymous REGISTER. Grows only with valid tokens.
    token_bound: HashSet<Box<str>>,
}

/// Unix time now, as float seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The inactivity sweep's period. Config keeps it within (0, one year];
/// clamped here too, since `from_secs_f64` panics on what it cannot hold
/// and a `Config` may be built without the parser.
fn sweep_every(cfg: &Config) -> Duration {
    let s = cfg.cleanup_interval_s;
    let s = if s.is_nan() {
        30.0
    } else {
        s.clamp(0.05, crate::config::MAX_DURATION_S)
    };
    Duration::try_from_secs_f64(s).unwrap_or(Duration::from_secs(30))
}

fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Registry connections: 1 MiB lines (+ the newline), 4 MiB of queued answers.
fn registry_options() -> ConnOptions {
    ConnOptions {
        max_input: crate::proto::registry::MAX_LINE + 2,
        max_output: 4 * 1024 * 1024,
        // A full LIST of a large registry is megabytes: send it a slice per
        // turn so the other connections' answers go out in between.
        write_budget: 256 * 1024,
        partial_timeout: Some(Duration::from_secs(30)),
        idle_timeout: None,
        ..ConnOptions::default()
    }
}

fn http_options() -> ConnOptions {
    ConnOptions {
        max_input: 16 * 1024 + 1024 * 1024 + 1,
        max_output: 8 * 1024 * 1024,
        partial_timeout: Some(Duration::from_secs(30)),
        idle_timeout: Some(Duration::from_secs(120)),
        ..ConnOptions::default()
    }
}

impl Coordinator {
    /// Opens the stores, binds both listeners (printing their addresses) and
    /// starts the workers. Errors are one clear line.
    pub fn start(cx: &mut Ctx, svc: ServiceId, cfg: &Config) -> Result<Coordinator, String> {
        // Private from the start: it holds password hashes and the JWT secret.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .recursive(true)
            .create(&cfg.data_dir)
            .map_err(|e| {
                format!(
                    "cannot create data directory {}: {e}",
                    cfg.data_dir.display()
                )
            })?;
        let secrets = secrets::load_or_create(
            &cfg.data_dir,
            cfg.jwt_secret.as_deref(),
            cfg.admin_password.as_deref(),
            cfg.pbkdf2_iterations,
        )?;
        let users = Arc::new(UserStore::open(&cfg.data_dir)?);
        let reg_addr = SocketAddr::new(cfg.coordinator_host, cfg.registry_port);
        let (registry_listener, reg_local) = cx
            .listen(reg_addr, svc, registry_options())
            .map_err(|e| format!("cannot listen for the registry on {reg_addr}: {e}"))?;
        let api_addr = SocketAddr::new(cfg.admin_api_host, cfg.admin_api_port);
        let (_api_listener, api_local) = cx
            .listen(api_addr, svc, http_options())
            .map_err(|e| format!("cannot listen for the admin API on {api_addr}: {e}"))?;
        let pool = Pool::new("coord-worker", cfg.workers.max(1), 256, cx.waker())
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
        let snapshot_pool = Pool::new("list-snapshot", 1, 4, cx.waker())
            .map_err(|e| format!("cannot start the snapshot thread: {e}"))?;
        print_line(&format!("registry listening on {reg_local}"));
        print_line(&format!("admin api listening on http://{api_local}"));
        if let Some(pw) = &secrets.generated_admin_password {
            print_line(&format!(
                "admin login (shown once, stored only as a hash): username '{}' password '{}'",
                cfg.admin_username, pw
            ));
        }
        log_info!(
            "coordinator ready: {} users, registry {}, admin api {}{}",
            users.count(),
            reg_local,
            api_local,
            if cfg.allow_anonymous {
                " (anonymous REGISTER allowed)"
            } else {
                ""
            }
        );
        cx.timer(svc, sweep_every(cfg), T_SWEEP);
        cx.timer(svc, HOUSEKEEP_EVERY, T_HOUSEKEEP);
        let revoked = users.take_revocations().into_iter().collect();
        Ok(Coordinator {
            svc,
            cfg: cfg.clone(),
            jwt_secret: secrets.jwt_secret,
            admin_password_hash: Arc::new(secrets.admin_password_hash),
            users,
            pool,
            registry: Registry::default(),
            stats: OpStats::new(Instant::now()),
            conns: ConnMap::new(),
            registry_listener,
            registry_addr: reg_local,
            api_addr: api_local,
            started: Instant::now(),
            pending: HashMap::new(),
            probes: HashMap::new(),
            next_op: 1,
            scratch: Vec::with_capacity(64 * 1024),
            snapshot_pool,
            building_snapshot: false,
            list_waiters: Vec::new(),
            date: (0, String::new()),
            unbound: UnboundCount::default(),
            rate: RateLimit::default(),
            revoked,
            token_bound: HashSet::new(),
        })
    }

    /// Runs the coordinator alone on its own reactor until SIGINT/SIGTERM.
    pub fn run(cfg: Config) -> Result<(), String> {
        let mut reactor =
            Reactor::new().map_err(|e| format!("cannot create the event loop: {e}"))?;
        let flag = reactor::signals::watch(reactor.ctx().waker())
            .map_err(|e| format!("cannot watch signals: {e}"))?;
        reactor.ctx().set_stop_flag(flag);
        reactor.ctx().set_logger(Box::new(|m| {
            crate::log::write(crate::log::Level::Warn, format_args!("{m}"))
        }));
        let mut coord = Coordinator::start(reactor.ctx(), 0, &cfg)?;
        reactor
            .run(&mut [&mut coord])
            .map_err(|e| format!("event loop failed: {e}"))?;
        log_info!("coordinator stopped");
        Ok(())
    }

    fn op_id(&mut self) -> u64 {
        self.next_op += 1;
        self.next_op
    }

    /// The `Date` header value, formatted once a second.
    fn date(&mut self) -> &str {
        let now = unix_now() as u64;
        if self.date.0 != now {
            self.date = (now, reactor::http::http_date(now));
        }
        &self.date.1
    }
}

impl Service for Coordinator {
    fn on_accept(&mut self, cx: &mut Ctx, listener: ListenerId, id: ConnId, peer: SocketAddr) {
        if listener == self.registry_listener {
            self.registry_accept(cx, id, peer);
        } else {
            self.conns.insert(
                id,
                Kind::Http(HttpConn {
                    peer: Some(guard::addr_key(peer.ip())),
                    ..HttpConn::default()
                }),
            );
        }
    }

    fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(Kind::Probe(_)) = self.conns.get(id) {
            cx.send(id, crate::proto::peer::Request::PING_LINE);
        }
    }

    fn on_input(&mut self, cx: &mut Ctx, id: ConnId) {
        match self.conns.get(id) {
            Some(Kind::Registry(_)) => self.registry_input(cx, id),
            Some(Kind::Http(_)) => self.http_input(cx, id),
            Some(Kind::Probe(_)) => self.probe_input(cx, id),
            None => {}
        }
    }

    fn on_drained(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(Kind::Registry(_)) = self.conns.get(id) {
            self.registry_input(cx, id);
        }
    }

    fn on_close(&mut self, cx: &mut Ctx, id: ConnId, why: CloseReason) {
        match self.conns.remove(id) {
            Some(Kind::Registry(rc)) => self.registry_closed(id, rc),
            Some(Kind::Http(hc)) => {
                if let Some(op) = hc.waiting {
                    self.pending.remove(&op);
                }
            }
            Some(Kind::Probe(p)) => self.probe_done(cx, p, Err(why)),
            None => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, key: u64) {
        if key & T_CONN_BASE != 0 {
            self.stranger_deadline(cx, conn::conn_of_timer_key(key));
        } else if key == T_HOUSEKEEP {
            let now = unix_now() as u64;
            self.revoked.retain(|_, exp| *exp > now);
            self.rate.purge(Instant::now());
            cx.timer(self.svc, HOUSEKEEP_EVERY, T_HOUSEKEEP);
        } else if key == T_SWEEP {
            self.sweep(cx);
            cx.timer(self.svc, sweep_every(&self.cfg), T_SWEEP);
        } else if key >= T_PROBE_BASE {
            self.probe_timeout(cx, key - T_PROBE_BASE);
        }
    }

    fn on_wake(&mut self, cx: &mut Ctx) {
        for done in self.pool.drain() {
            self.job_done(cx, done);
        }
        for (built_at, version, snap) in self.snapshot_pool.drain() {
            self.registry
                .store_snapshot(built_at, version, snap.clone());
            self.snapshot_ready(cx, snap);
        }
    }

    fn on_shutdown(&mut self, _cx: &mut Ctx) {
        log_info!("coordinator stopping: no new connections, flushing answers");
    }
}

impl Coordinator {
    fn sweep(&mut self, cx: &mut Ctx) {
        let cutoff = unix_now() - self.cfg.inactive_timeout_s;
        let removed = self.registry.sweep(cutoff);
        for (name, conn) in &removed {
            if let Some(c) = conn {
                self.unbind(cx, *c);
            }
            log_info!("removed inactive host '{}'", name);
        }
        if !removed.is_empty() {
            log_warn!("inactivity sweep removed {} host(s)", removed.len());
        }
    }

    fn submit(&mut self, cx: &mut Ctx, id: ConnId, job: Job) -> bool {
        let op = self.op_id();
        let users = self.users.clone();
        let admin_hash = self.admin_password_hash.clone();
        let iterations = self.cfg.pbkdf2_iterations;
        let admin_name = self.cfg.admin_username.clone();
        let ok = self
            .pool
            .submit(move || api::run_job(op, job, &users, &admin_hash, &admin_name, iterations))
            .is_ok();
        if ok {
            self.pending.insert(op, id);
            if let Some(Kind::Http(h)) = self.conns.get_mut(id) {
                h.waiting = Some(op);
            }
        }
        let _ = cx;
        ok
    }
}
