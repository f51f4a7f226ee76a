//! The coordinator: the registry over TCP and the server API over
//! HTTP, both on one reactor. This module wires listeners,
//! connections, timers and workers; the protocols live in `conn` and `api`.

pub mod api;
pub mod conn;
mod credentials;
pub mod guard;
mod handle;
pub mod registry;
pub mod secrets;
pub mod stats;
pub mod users;

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reactor::{
    CloseReason, ConnId, ConnMap, ConnOptions, Ctx, Keepalive, ListenerId, Pool, Reactor, Service,
    ServiceId,
};

use crate::config::Config;
use crate::http_server::{self, HttpServer, OpId};
use crate::util::unix_now;
use crate::{log_info, log_warn};

use api::{AccountDone, AccountJob, Probe};
use conn::RegConn;
use guard::{RateLimit, UnboundCount};
use registry::{Gather, Registry};
use stats::OpStats;
use users::UserStore;

const HOUSEKEEP_EVERY: Duration = Duration::from_secs(10);
/// Host slots the inactivity sweep looks at per loop turn, and the pause
/// between two slices.
const SWEEP_SLICE: usize = 16_384;
const SWEEP_PAUSE: Duration = Duration::from_millis(2);

/// Keepalive of registered connections: a host that vanishes without a FIN
/// is closed, so marked offline, within idle + interval × count = 60 s.
pub const KEEPALIVE: Keepalive = Keepalive {
    idle: Duration::from_secs(30),
    interval: Duration::from_secs(10),
    count: 3,
};

/// `P2PSHARE_KEEPALIVE=IDLE,INTERVAL,COUNT` (seconds, seconds, probes)
/// overrides [`KEEPALIVE`], so a test can watch a dead host go offline in
/// seconds rather than a minute.
fn keepalive_from_env() -> Result<Keepalive, String> {
    let Ok(v) = std::env::var("P2PSHARE_KEEPALIVE") else {
        return Ok(KEEPALIVE);
    };
    let n: Vec<u64> = v
        .split(',')
        .map(|x| x.trim().parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("P2PSHARE_KEEPALIVE={v:?}: expected IDLE,INTERVAL,COUNT"))?;
    match n[..] {
        [idle, interval, count] if idle > 0 && interval > 0 && (1..=127).contains(&count) => {
            Ok(Keepalive {
                idle: Duration::from_secs(idle),
                interval: Duration::from_secs(interval),
                count: count as u32,
            })
        }
        _ => Err(format!(
            "P2PSHARE_KEEPALIVE={v:?}: expected IDLE,INTERVAL,COUNT, each at least 1 (count at most 127)"
        )),
    }
}

/// Every timer of this service. The reactor carries a `u64` key; this is
/// the one place that packs and unpacks it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Timer {
    /// The inactivity sweep of the registry: a pass starts.
    Sweep,
    /// The next slice of a sweep pass.
    SweepMore,
    /// The next step of gathering a whole LIST.
    Gather,
    /// The next step of collecting a LIST query's matches.
    Query,
    /// Expired revocations and refilled rate buckets are dropped.
    Housekeep,
    /// An admin probe's deadline, by the op id of the request it answers.
    Probe(OpId),
    /// A stranger registry connection's deadline (see conn.rs).
    Stranger(ConnId),
}

/// Key layout: the top bit tags a stranger deadline (slot index and
/// generation below it: indexes stay far below 2^31, bounded by the
/// descriptor limit); the next bit tags a probe (op ids below 2^62);
/// small constants are the periodic timers.
const KEY_STRANGER: u64 = 1 << 63;
const KEY_PROBE: u64 = 1 << 62;

impl Timer {
    fn to_key(self) -> u64 {
        match self {
            Timer::Sweep => 1,
            Timer::Housekeep => 2,
            Timer::SweepMore => 3,
            Timer::Gather => 4,
            Timer::Query => 5,
            Timer::Probe(op) => KEY_PROBE | (op & (KEY_PROBE - 1)),
            Timer::Stranger(id) => {
                KEY_STRANGER
                    | ((id.index() as u64 & 0x7fff_ffff) << 32)
                    | u64::from(id.generation())
            }
        }
    }

    fn from_key(key: u64) -> Option<Timer> {
        if key & KEY_STRANGER != 0 {
            let id = ConnId::from_parts(((key >> 32) & 0x7fff_ffff) as u32, key as u32);
            Some(Timer::Stranger(id))
        } else if key & KEY_PROBE != 0 {
            Some(Timer::Probe(key & (KEY_PROBE - 1)))
        } else {
            match key {
                1 => Some(Timer::Sweep),
                2 => Some(Timer::Housekeep),
                3 => Some(Timer::SweepMore),
                4 => Some(Timer::Gather),
                5 => Some(Timer::Query),
                _ => None,
            }
        }
    }
}

enum Kind {
    Registry(RegConn),
    /// A server-API connection; its HTTP state is in `http`.
    Http,
    Probe(Probe),
}

pub struct Coordinator {
    svc: ServiceId,
    cfg: Config,
    jwt_secret: Vec<u8>,
    admin_password_hash: Arc<String>,
    users: Arc<UserStore>,
    pool: Pool<AccountDone>,
    registry: Registry,
    stats: OpStats,
    conns: ConnMap<Kind>,
    registry_listener: ListenerId,
    /// Where the listeners ended up (port 0 picks one).
    pub registry_addr: SocketAddr,
    pub api_addr: SocketAddr,
    started: Instant,
    /// The server API's connections, requests and answers in order.
    http: HttpServer,
    /// Live admin probes: op id → the probe connection.
    probes: HashMap<OpId, ConnId>,
    /// The whole LIST being gathered, a step per loop turn (conn.rs).
    gather: Option<Gather>,
    /// Registry connections waiting for it.
    list_waiters: Vec<ConnId>,
    /// Registry connections waiting for a query's matches (conn.rs).
    query_waiters: Vec<ConnId>,
    /// A query step is scheduled.
    query_timer: bool,
    /// The cutoff of the sweep pass under way, if one is.
    sweep_cutoff: Option<f64>,
    /// TCP keepalive of registered connections.
    keepalive: Keepalive,
    /// The registry listener holds those timings, so accepted sockets do.
    keepalive_inherited: bool,
    /// Reused reply buffer for registry lines.
    scratch: Vec<u8>,
    /// Unbound registry connections per source address.
    unbound: UnboundCount,
    /// Register and login attempts per source address.
    rate: RateLimit,
    /// Revoked token ids → their expiry (Unix s). Owned by the loop (no
    /// lock); the user store's log keeps them across restarts.
    revoked: HashMap<String, u64>,
    /// Hostnames a token has registered since start: never taken over by
    /// an anonymous REGISTER. Grows only with valid tokens.
    token_bound: registry::sharded::ShardedMap<Box<str>, ()>,
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
        max_input: http_server::MAX_INPUT,
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
        let (registry_listener, reg_local) = crate::util::listen_moving(
            "the registry",
            reg_addr,
            cfg.unchosen_ports.registry,
            "--registry-port",
            "SERVER_PORT",
            |a| cx.listen(a, svc, registry_options()),
        )?;
        let keepalive = keepalive_from_env()?;
        // Accepted sockets inherit the timings: a REGISTER then turns
        // keepalive on with one call (docs/registry-protocol.md, "Liveness").
        let keepalive_inherited = match cx.set_listener_keepalive(registry_listener, keepalive) {
            Ok(()) => true,
            Err(e) => {
                log_warn!("cannot set keepalive timings on the registry listener: {e}");
                false
            }
        };
        let api_addr = SocketAddr::new(cfg.admin_api_host, cfg.admin_api_port);
        let (_api_listener, api_local) = crate::util::listen_moving(
            "the admin API",
            api_addr,
            cfg.unchosen_ports.admin_api,
            "--admin-api-port",
            "ADMIN_API_PORT",
            |a| cx.listen(a, svc, http_options()),
        )?;
        let pool = Pool::new("coord-worker", cfg.workers.max(1), 256, cx.waker())
            .map_err(|e| format!("cannot start worker threads: {e}"))?;
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
        cx.timer(svc, sweep_every(cfg), Timer::Sweep.to_key());
        cx.timer(svc, HOUSEKEEP_EVERY, Timer::Housekeep.to_key());
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
            http: HttpServer::new(),
            probes: HashMap::new(),
            scratch: Vec::with_capacity(64 * 1024),
            gather: None,
            sweep_cutoff: None,
            keepalive,
            keepalive_inherited,
            list_waiters: Vec::new(),
            query_waiters: Vec::new(),
            query_timer: false,
            unbound: UnboundCount::default(),
            rate: RateLimit::default(),
            revoked,
            token_bound: Default::default(),
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
}

impl Service for Coordinator {
    fn on_accept(&mut self, cx: &mut Ctx, listener: ListenerId, id: ConnId, peer: SocketAddr) {
        if listener == self.registry_listener {
            self.registry_accept(cx, id, peer);
        } else {
            self.conns.insert(id, Kind::Http);
            self.http.accept(id, peer.ip());
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
            Some(Kind::Http) => http_server::on_input(self, cx, id),
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
            Some(Kind::Http) => {
                // A worker's answer for it is dropped when it comes.
                self.http.closed(id);
            }
            Some(Kind::Probe(p)) => self.probe_done(cx, p, Err(why)),
            None => {}
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, key: u64) {
        match Timer::from_key(key) {
            Some(Timer::Stranger(id)) => self.stranger_deadline(cx, id),
            Some(Timer::Housekeep) => {
                let now = crate::util::unix_secs();
                self.revoked.retain(|_, exp| *exp > now);
                self.rate.purge(Instant::now());
                cx.timer(self.svc, HOUSEKEEP_EVERY, Timer::Housekeep.to_key());
            }
            Some(Timer::Sweep) => {
                if self.sweep_cutoff.is_none() {
                    self.sweep_cutoff = Some(unix_now() - self.cfg.inactive_timeout_s);
                    self.sweep(cx);
                }
                cx.timer(self.svc, sweep_every(&self.cfg), Timer::Sweep.to_key());
            }
            Some(Timer::SweepMore) => self.sweep(cx),
            Some(Timer::Gather) => self.gather_step(cx),
            Some(Timer::Query) => self.query_step(cx),
            Some(Timer::Probe(op)) => self.probe_timeout(cx, op),
            None => {}
        }
    }

    fn on_wake(&mut self, cx: &mut Ctx) {
        for done in self.pool.drain() {
            self.job_done(cx, done);
        }
    }

    fn on_shutdown(&mut self, _cx: &mut Ctx) {
        log_info!("coordinator stopping: no new connections, flushing answers");
    }
}

impl Coordinator {
    /// One slice of the sweep pass under way; the next slice follows a
    /// moment later, so a pass over a million hosts never holds the loop
    /// (one pass at once took ~10 ms at that size).
    fn sweep(&mut self, cx: &mut Ctx) {
        let Some(cutoff) = self.sweep_cutoff else {
            return;
        };
        let now = unix_now();
        let (removed, done) = self.registry.sweep_step(cutoff, SWEEP_SLICE, |conn| {
            cx.last_heard(conn).map(|ago| now - ago.as_secs_f64())
        });
        if done {
            self.sweep_cutoff = None;
        } else {
            cx.timer(self.svc, SWEEP_PAUSE, Timer::SweepMore.to_key());
        }
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

    /// Hands slow account work to the pool; its answer goes to the request
    /// that waits as `op`. False when the pool is full.
    fn submit(&mut self, op: OpId, job: AccountJob) -> bool {
        let users = self.users.clone();
        let admin_hash = self.admin_password_hash.clone();
        let iterations = self.cfg.pbkdf2_iterations;
        let admin_name = self.cfg.admin_username.clone();
        self.pool
            .submit(move || api::run_job(op, job, &users, &admin_hash, &admin_name, iterations))
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip() {
        let id = ConnId::from_parts(0x7fff_fffe, u32::MAX);
        for t in [
            Timer::Sweep,
            Timer::Housekeep,
            Timer::SweepMore,
            Timer::Gather,
            Timer::Query,
            Timer::Probe(1),
            Timer::Probe(KEY_PROBE - 1),
            Timer::Stranger(id),
            Timer::Stranger(ConnId::from_parts(0, 0)),
        ] {
            assert_eq!(Timer::from_key(t.to_key()), Some(t));
        }
        assert_eq!(Timer::from_key(0), None);
    }
}
