//! `p2pshare node`: one reactor service serving the client API and, for each
//! logged-in user, a peer listener, the registry connection, downloads and
//! uploads (`docs/architecture.md` draws it). The node is four owners and
//! this glue:
//! - `client`: the client API — HTTP front, tokens, endpoints (`routes`).
//! - `network`: the registry link per user (`session`), its heartbeat, the
//!   network view (`browse`, `index`).
//! - `catalog`: each user's tracked files, hashing on workers, persistence.
//! - `transfers`: the peer server (uploads) and fetches (downloads).
//! - `sandbox`: which paths users may read and write (used by the catalog
//!   and by fetches).
//! - `ops`: the requests that wait, and what each waits for.
//!
//! This module owns start-up, dispatch of every connection, timer and
//! wake-up to its owner, the cron tick, and the users loaded on this node.
//! Outside start-up, the glue, `routes`, `browse` and `session` never write
//! to disk in a loop turn; they only `stat` (and open a file being added, to
//! check it is readable).

pub mod catalog;
pub mod client;
pub mod network;
mod ops;
pub mod sandbox;
pub mod transfers;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reactor::{
    CloseReason, ConnId, ConnMap, ConnOptions, Ctx, ListenerId, Pool, Service, ServiceId,
};

use crate::config::Config;
use crate::http_server::{self, HttpServer};
// Usernames name a directory, so `persist` refuses others as the coordinator does.
use crate::proto::names::valid_username;
use catalog::hashing::{HashJob, WorkDone};
use catalog::persist;
use catalog::{Catalog, Effect};
use client::{forward, tokens};
use network::heartbeat::Intervals;
use network::index as network_index;
use network::session::Session;
use transfers::fetch;
use transfers::peer_server::{self, PeerServer, SharedFile};

/// A client request waiting for something (registry, coordinator, worker).
pub use crate::http_server::OpId;

/// Every timer of the node. The reactor carries a `u64` key; this is the
/// one place that packs and unpacks it: a tag in the top byte, a sequence
/// number of the owning module below it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// The one periodic tick.
    Cron,
    /// A download's connect timeout, retry backoff or records save, by its
    /// sequence number in `fetch`.
    Fetch(u64),
    /// A peer connection's first-line deadline or pacing tick, by its
    /// sequence number in `peer_server`.
    Peer(u64),
    /// The peer server's sweep of idle memory maps.
    PeerSweep,
    /// The upload-rate tick (`--max-upload-rate`).
    PeerPace,
}

const TAG_FETCH: u64 = 0x01 << 56;
const TAG_PEER: u64 = 0x02 << 56;
const TAG_PEER_SWEEP: u64 = 0x03 << 56;
const TAG_PEER_PACE: u64 = 0x04 << 56;

impl Timer {
    /// Sequence numbers wrap within the bits below the tag.
    pub const SEQ_MASK: u64 = (1 << 56) - 1;

    pub fn to_key(self) -> u64 {
        match self {
            Timer::Cron => 1,
            Timer::Fetch(seq) => TAG_FETCH | (seq & Timer::SEQ_MASK),
            Timer::Peer(seq) => TAG_PEER | (seq & Timer::SEQ_MASK),
            Timer::PeerSweep => TAG_PEER_SWEEP,
            Timer::PeerPace => TAG_PEER_PACE,
        }
    }

    pub fn from_key(key: u64) -> Option<Timer> {
        let seq = key & Timer::SEQ_MASK;
        match key & !Timer::SEQ_MASK {
            0 if key == 1 => Some(Timer::Cron),
            TAG_FETCH => Some(Timer::Fetch(seq)),
            TAG_PEER => Some(Timer::Peer(seq)),
            TAG_PEER_SWEEP => Some(Timer::PeerSweep),
            TAG_PEER_PACE => Some(Timer::PeerPace),
            _ => None,
        }
    }
}

const CRON_TICK: Duration = Duration::from_millis(250);
/// Every tracked file is stat'ed, and every followed folder listed, this
/// often (on a worker: a stat or a readdir may block).
const RESCAN_EVERY: Duration = Duration::from_secs(10);
const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Waiting hash jobs per node.
const WORK_QUEUE: usize = 1024;
/// Waiting catalog loads and writes (at most one write per user is out).
const STORE_QUEUE: usize = 4096;

/// Settings the node uses, resolved from the configuration at start.
pub struct Settings {
    pub data_dir: PathBuf,
    /// Default registry (`--coordinator`); `/init` may name another.
    pub registry: SocketAddr,
    pub port_min: u16,
    pub port_max: u16,
    pub advertise_ip: Option<IpAddr>,
    pub allowed_hosts: Vec<String>,
    pub intervals: Intervals,
    /// Share roots, download roots, `--share-hidden`, the data directory:
    /// what users may read and write, shared with the workers.
    pub sandbox: Arc<sandbox::Sandbox>,
}

/// A user known to this node (their token was seen).
pub struct User {
    pub display_name: String,
    pub catalog: Catalog,
    pub session: Option<Session>,
    /// Last client-API use that counts as activity (heartbeat "active").
    pub last_use: Instant,
    /// A stat sweep of this catalog is out on the pool.
    pub scanning: bool,
    /// A sweep is wanted (the pool had no room at the last try).
    pub scan_due: bool,
    /// The listing of followed folders (`catalog::rescan`).
    pub folder_scan: catalog::rescan::FolderScan,
}

/// What a connection of this service is, for those the node itself runs.
enum Kind {
    /// A client-API connection; its HTTP state is in `http`.
    Api,
    /// The registry connection of that user.
    Registry(String),
    /// An outbound request to the server API (see `forward`).
    Forward,
}

pub struct Node {
    svc: ServiceId,
    settings: Settings,
    api_addr: SocketAddr,
    api_listener: ListenerId,
    conns: ConnMap<Kind>,
    /// The client API's connections, requests and answers in order.
    http: HttpServer,
    /// What each waiting client request waits for.
    ops: HashMap<OpId, ops::OpKind>,
    tokens: tokens::Tokens,
    users: HashMap<String, User>,
    peer_listeners: HashMap<ListenerId, String>,
    peer_server: PeerServer,
    fetches: fetch::Fetches,
    forwards: forward::Forwards,
    work: Pool<WorkDone>,
    /// The one thread that reads and durably writes catalogs, in order.
    store: Pool<persist::Stored>,
    saves: persist::Saves,
    net: network_index::NetCache,
    /// Hash jobs the pool had no room for yet.
    backlog: VecDeque<(String, String)>,
    /// Users registered with a node credential across restarts.
    standing: HashMap<String, network::standing::Standing>,
    /// Users whose credential request is out.
    standing_asked: std::collections::HashSet<String>,
    /// Op ids of background server-API calls.
    next_background_op: u64,
    /// Publishes waiting for their file's hash (`client/routes`).
    hash_waits: Vec<HashWait>,
    last_rescan: Instant,
    last_purge: Instant,
    rng: u64,
}

/// A publish waiting for the hash of its file (`client/routes`).
pub(crate) struct HashWait {
    pub op: OpId,
    pub user: String,
    pub name: String,
    pub since: Instant,
}

/// Serves nothing: peer connections of a user who logged out meanwhile.
struct NoFiles;

impl peer_server::PublishedFiles for NoFiles {
    fn published(&self, _name: &str) -> Option<SharedFile> {
        None
    }
    fn file_changed(&mut self, _name: &str) {}
}

fn resolve(what: &str, hostport: &str) -> Result<SocketAddr, String> {
    hostport
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {what} '{hostport}': {e}"))?
        .next()
        .ok_or_else(|| format!("{what} '{hostport}' resolves to nothing"))
}

/// Binds the client API (printing its address), sets everything up. Several
/// services may share `cx` (`p2pshare up`).
pub fn start(cx: &mut Ctx, svc: ServiceId, cfg: &Config) -> Result<Node, String> {
    let registry = resolve("coordinator address", &cfg.coordinator)?;
    let target = forward::Target::parse(&cfg.coordinator_api)?;
    if cfg.port_min > cfg.port_max {
        return Err(format!(
            "bad peer port range {}-{}",
            cfg.port_min, cfg.port_max
        ));
    }
    std::fs::create_dir_all(cfg.data_dir.join("users")).map_err(|e| {
        format!(
            "cannot create the data directory {}: {e}",
            cfg.data_dir.display()
        )
    })?;
    // Paths the node shows (a download's target) are absolute, whatever
    // folder the node was started from.
    let data_dir = std::fs::canonicalize(&cfg.data_dir).map_err(|e| {
        format!(
            "cannot resolve the data directory {}: {e}",
            cfg.data_dir.display()
        )
    })?;
    let sandbox = Arc::new(sandbox::Sandbox::new(
        &cfg.share_roots,
        &cfg.download_roots,
        &data_dir,
        cfg.share_hidden,
    )?);
    let fetches = fetch::Fetches::new(svc, cx.waker(), &data_dir, sandbox.clone())
        .map_err(|e| format!("cannot set up downloads: {e}"))?;
    let work = Pool::new("hash", cfg.workers.max(1), WORK_QUEUE, cx.waker())
        .map_err(|e| format!("cannot start hashing workers: {e}"))?;
    let store = Pool::new("store", 1, STORE_QUEUE, cx.waker())
        .map_err(|e| format!("cannot start the store thread: {e}"))?;
    let opts = ConnOptions {
        max_input: http_server::MAX_INPUT,
        idle_timeout: Some(Duration::from_secs(120)),
        ..ConnOptions::default()
    };
    let want = SocketAddr::new(cfg.client_api_host, cfg.client_api_port);
    let (api_listener, api_addr) = crate::util::listen_moving(
        "the client API",
        want,
        cfg.unchosen_ports.client_api,
        "--client-api-port",
        "CLIENT_API_PORT",
        |a| cx.listen(a, svc, opts.clone()),
    )?;
    println!("client api listening on http://{api_addr}");
    if want.port() != 0 && api_addr.port() != want.port() {
        // Moved off a busy default: the command line's default would miss it.
        println!(
            "the command line reaches this node with --node {api_addr} (or P2PSHARE_NODE={api_addr})"
        );
    }
    let _ = std::io::stdout().flush();
    crate::log_info!(
        "node: client api on http://{api_addr}, registry {registry}, server api {}",
        target.url
    );
    crate::log_info!(
        "node: users may share files under {}",
        sandbox
            .share_roots()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    cx.timer(svc, CRON_TICK, Timer::Cron.to_key());
    let now = cx.now();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(1)
        ^ (u64::from(std::process::id()) << 32);
    let mut node = Node {
        svc,
        settings: Settings {
            data_dir,
            registry,
            port_min: cfg.port_min,
            port_max: cfg.port_max,
            advertise_ip: cfg.advertise_ip,
            allowed_hosts: cfg
                .allowed_hosts
                .iter()
                .map(|h| h.to_ascii_lowercase())
                .collect(),
            intervals: {
                let iv = Intervals::from_secs(
                    cfg.heartbeat_idle_s,
                    cfg.heartbeat_active_s,
                    cfg.heartbeat_busy_s,
                    cfg.active_window_s,
                );
                if cfg.heartbeat_mode == "adaptive" {
                    iv
                } else {
                    iv.on_connection(Duration::from_secs_f64(cfg.nat_keepalive_s))
                }
            },
            sandbox: sandbox.clone(),
        },
        api_addr,
        api_listener,
        conns: ConnMap::new(),
        http: HttpServer::new(),
        ops: HashMap::new(),
        tokens: tokens::Tokens::default(),
        users: HashMap::new(),
        peer_listeners: HashMap::new(),
        peer_server: PeerServer::new(svc, sandbox, cfg.max_upload_rate),
        fetches,
        forwards: forward::Forwards::new(svc, target),
        work,
        store,
        saves: persist::Saves::default(),
        net: network_index::NetCache::default(),
        backlog: VecDeque::new(),
        standing: HashMap::new(),
        standing_asked: Default::default(),
        next_background_op: 0,
        hash_waits: Vec::new(),
        last_rescan: now,
        last_purge: now,
        rng: seed | 1,
    };
    node.restore_standing(cx);
    Ok(node)
}

/// `p2pshare node`: a reactor of its own, stopped by SIGINT/SIGTERM.
pub fn run(cfg: Config) -> Result<(), String> {
    // Signals, logging and the descriptor limit are set up the same way for
    // every command (cli::setup raised the limit already).
    let mut reactor = crate::up::new_reactor()?;
    let cx = reactor.ctx();
    let mut node = start(cx, 0, &cfg)?;
    reactor
        .run(&mut [&mut node])
        .map_err(|e| format!("event loop failed: {e}"))?;
    crate::log_info!("node stopped");
    Ok(())
}

impl Node {
    /// The client API's address (for `up`, which prints it too).
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    fn random(&mut self) -> f64 {
        // xorshift64*: jitter only, not secrets.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn queue_hash(&mut self, user: &str, name: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let Some(job) = u.catalog.begin_hash(name) else {
            return;
        };
        let j: HashJob = job;
        crate::log_debug!("{user}: hashing {name:?}");
        let submitted = self.work.submit(move || {
            let started = Instant::now();
            let result = catalog::hashing::run(&j);
            if let catalog::hashing::HashResult::Ok { size, .. } = &result {
                crate::log_info!(
                    "{}: hashed {:?} ({size} bytes) in {} ms",
                    j.user,
                    j.name,
                    started.elapsed().as_millis()
                );
            }
            WorkDone::Hash { job: j, result }
        });
        if submitted.is_err() {
            u.catalog.hash_not_started(name);
            self.backlog.push_back((user.to_owned(), name.to_owned()));
        }
    }

    /// A finished, verified download at `path` joins `user`'s files with
    /// the hash pair it was checked against, without being read again
    /// ([`Catalog::add_verified`]; its digests must be in the piece store
    /// already, stored on a worker). Hashed like an added file only if it
    /// changed since. Saved by the next cron tick (nobody waits); publish
    /// it as `routes` does. Returns the name it is tracked under; errors
    /// carry an HTTP status and a sentence.
    pub(crate) fn track_verified(
        &mut self,
        user: &str,
        path: &str,
        v: &catalog::Verified,
    ) -> Result<String, (u16, String)> {
        let u = self
            .users
            .get_mut(user)
            .ok_or_else(|| (404, "Unknown user".to_owned()))?;
        let (name, hash) = u.catalog.add_verified(path, crate::util::unix_now(), v)?;
        if hash {
            self.queue_hash(user, &name);
        }
        Ok(name)
    }

    fn apply_effects(&mut self, cx: &mut Ctx, user: &str, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Unpublish(name) => {
                    crate::log_info!("{user}: {name:?} changed or vanished on disk; unpublished");
                    self.quiet_unpublish(cx, user, &name);
                    self.net_sync_file(user, &name);
                }
                Effect::Hash(name) => self.queue_hash(user, &name),
                Effect::Announce(name) => self.announce(cx, user, &name),
                Effect::Publish(name) => self.publish_from_folder(cx, user, &name),
            }
        }
    }

    /// PUBLISH again with the file's current metadata (its hash pair),
    /// nobody waiting; without a link the next REGISTER carries it.
    fn announce(&mut self, cx: &mut Ctx, user: &str, name: &str) {
        let Some(f) = self.users.get(user).and_then(|u| u.catalog.get(name)) else {
            return;
        };
        if !f.is_published {
            return;
        }
        let msg = crate::proto::registry::Request::Publish {
            hostname: user.into(),
            fname: f.name.clone().into(),
            meta: f.registry_meta(),
        };
        let why = ops::Wait::Quiet("announcing a file's new hash pair");
        self.registry_send(cx, user, &msg, why);
    }

    /// Stats every file of `user` on the pool (a stat may block on a slow
    /// or network disk); a full pool is tried again by the cron.
    fn scan_user(&mut self, user: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        u.scan_due = true;
        if u.scanning {
            return;
        }
        let paths = u.catalog.paths();
        let who = user.to_owned();
        let sandbox = self.settings.sandbox.clone();
        let submitted = self.work.submit(move || WorkDone::Scan {
            user: who,
            seen: paths
                .into_iter()
                .map(|(n, p)| {
                    let o = catalog::hashing::observe(&sandbox, &p);
                    (n, o)
                })
                .collect(),
        });
        if submitted.is_ok() {
            u.scanning = true;
            u.scan_due = false;
        }
    }

    fn work_done(&mut self, cx: &mut Ctx) {
        let mut any = false;
        for done in self.work.drain() {
            any = true;
            match done {
                WorkDone::Hash { job, result } => {
                    let effects = match self.users.get_mut(&job.user) {
                        Some(u) => u.catalog.hash_done(&job, result),
                        None => continue,
                    };
                    let user = job.user.clone();
                    self.apply_effects(cx, &user, effects);
                }
                WorkDone::Scan { user, seen } => {
                    let Some(u) = self.users.get_mut(&user) else {
                        continue;
                    };
                    u.scanning = false;
                    let mut effects = Vec::new();
                    let mut left_a_folder = false;
                    for (name, o) in seen {
                        effects.extend(u.catalog.observe(&name, o));
                        left_a_folder |= o == catalog::hashing::Observation::Missing
                            && u.catalog.get(&name).is_some_and(|f| f.folder.is_some());
                    }
                    self.apply_effects(cx, &user, effects);
                    if left_a_folder {
                        // Gone from a followed folder: forgotten by a look at
                        // the folder now, not shown as missing until the next.
                        self.scan_folders(cx, &user, None);
                    }
                }
                WorkDone::Folders { user, listings } => {
                    self.folders_listed(cx, &user, listings);
                }
            }
        }
        if any {
            self.resume_hash_waits(cx);
        }
    }

    /// Files the peer server found changed while serving: look now.
    fn check_suspects(&mut self, cx: &mut Ctx, user: &str) {
        let names = match self.users.get_mut(user) {
            Some(u) => u.catalog.take_suspects(),
            None => return,
        };
        for name in names {
            self.check_file(cx, user, &name);
        }
    }

    /// The one periodic tick: sessions (retries, heartbeats), sweeps, saves.
    fn cron(&mut self, cx: &mut Ctx) {
        let now = cx.now();
        self.sessions_tick(cx);
        for _ in 0..self.backlog.len() {
            let Some((user, name)) = self.backlog.pop_front() else {
                break;
            };
            if let Some(u) = self.users.get_mut(&user) {
                // Clear the "waiting" mark so begin_hash starts it properly.
                if let Some(f) = u.catalog.get(&name) {
                    if f.hashing {
                        self.queue_hash(&user, &name);
                    }
                }
            }
        }
        let rescan = now.saturating_duration_since(self.last_rescan) >= RESCAN_EVERY;
        if rescan {
            self.last_rescan = now;
        }
        let names: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| rescan || u.scan_due)
            .map(|(n, _)| n.clone())
            .collect();
        for user in names {
            self.scan_user(&user);
        }
        // Followed folders: new files picked up, vanished ones forgotten.
        let names: Vec<String> = self
            .users
            .iter()
            .filter(|(_, u)| rescan || (u.folder_scan.due && !u.folder_scan.out))
            .map(|(n, _)| n.clone())
            .collect();
        for user in names {
            self.scan_folders(cx, &user, None);
        }
        if rescan {
            // Files whose hashing backed off (they kept changing) and are due.
            let wall = crate::util::unix_now();
            let due: Vec<(String, Vec<Effect>)> = self
                .users
                .iter_mut()
                .map(|(n, u)| (n.clone(), u.catalog.due_hashes(wall)))
                .filter(|(_, fx)| !fx.is_empty())
                .collect();
            for (user, effects) in due {
                self.apply_effects(cx, &user, effects);
            }
        }
        if now.saturating_duration_since(self.last_purge) >= PURGE_EVERY {
            self.last_purge = now;
            self.tokens.purge(crate::util::unix_secs(), now);
        }
        self.saves_tick(cx);
        // Removals, logouts and the wait's own bound.
        self.resume_hash_waits(cx);
        self.net.sweep(now);
        self.fetch_lookups(cx);
        self.fetches_completed(cx);
        cx.timer(self.svc, CRON_TICK, Timer::Cron.to_key());
    }
}

impl Service for Node {
    fn on_accept(&mut self, cx: &mut Ctx, listener: ListenerId, id: ConnId, peer: SocketAddr) {
        if listener == self.api_listener {
            self.conns.insert(id, Kind::Api);
            self.http.accept(id, peer.ip());
            return;
        }
        match self.peer_listeners.get(&listener) {
            Some(user) => {
                let user = user.clone();
                self.peer_server
                    .on_accept(cx, id, &user, peer.ip().to_canonical());
            }
            None => cx.close(id),
        }
    }

    fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {
        match self.conns.get(id) {
            Some(Kind::Registry(user)) => {
                let user = user.clone();
                self.registry_connected(cx, &user, id);
            }
            Some(Kind::Forward) => self.forwards.on_connect(cx, id),
            Some(Kind::Api) => {}
            None => {
                if self.fetches.owns(id) {
                    self.fetches.on_connect(cx, id);
                }
            }
        }
    }

    fn on_input(&mut self, cx: &mut Ctx, id: ConnId) {
        match self.conns.get(id) {
            Some(Kind::Api) => http_server::on_input(self, cx, id),
            Some(Kind::Registry(user)) => {
                let user = user.clone();
                self.registry_input(cx, id, &user);
            }
            Some(Kind::Forward) => {
                if let Some((op, answer)) = self.forwards.on_input(cx, id) {
                    self.forward_done(cx, op, answer);
                }
            }
            None => {
                if let Some(user) = self.peer_server.user_of(id).map(str::to_owned) {
                    match self.users.get_mut(&user) {
                        Some(u) => self.peer_server.on_input(cx, id, &mut u.catalog),
                        None => self.peer_server.on_input(cx, id, &mut NoFiles),
                    }
                    self.check_suspects(cx, &user);
                } else if self.fetches.owns(id) {
                    self.fetches.on_input(cx, id);
                } else {
                    let n = cx.input(id).len();
                    cx.consume(id, n);
                }
            }
        }
    }

    fn on_drained(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(user) = self.peer_server.user_of(id).map(str::to_owned) {
            match self.users.get_mut(&user) {
                Some(u) => self.peer_server.on_drained(cx, id, &mut u.catalog),
                None => self.peer_server.on_drained(cx, id, &mut NoFiles),
            }
            self.check_suspects(cx, &user);
        }
    }

    fn on_close(&mut self, cx: &mut Ctx, id: ConnId, why: CloseReason) {
        match self.conns.remove(id) {
            Some(Kind::Api) => {
                // Its waiting request goes on; the answer is dropped.
                self.http.closed(id);
            }
            Some(Kind::Registry(user)) => self.registry_closed(cx, id, &user, &why),
            Some(Kind::Forward) => {
                if let Some((op, msg)) = self.forwards.on_close(id, &why) {
                    self.forward_done(cx, op, Err(msg));
                }
            }
            None => {
                if self.peer_server.owns(id) {
                    self.peer_server.on_close(cx, id);
                } else if self.fetches.owns(id) {
                    self.fetches.on_close(cx, id, why);
                }
            }
        }
    }

    fn on_timer(&mut self, cx: &mut Ctx, key: u64) {
        match Timer::from_key(key) {
            Some(Timer::Cron) => self.cron(cx),
            Some(Timer::Fetch(seq)) => self.fetches.on_timer(cx, seq),
            Some(t @ (Timer::Peer(_) | Timer::PeerSweep | Timer::PeerPace)) => {
                self.peer_server.on_timer(cx, t)
            }
            None => {}
        }
    }

    fn on_wake(&mut self, cx: &mut Ctx) {
        self.fetches.on_wake(cx);
        for (op, result) in self.fetches.take_durable() {
            self.fetch_recorded(cx, op, result);
        }
        self.fetch_lookups(cx);
        self.fetches_completed(cx);
        self.work_done(cx);
        self.store_done(cx);
    }

    fn on_shutdown(&mut self, _cx: &mut Ctx) {
        self.save_all_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_keys_round_trip() {
        for t in [
            Timer::Cron,
            Timer::Fetch(0),
            Timer::Fetch(Timer::SEQ_MASK),
            Timer::Peer(7),
            Timer::PeerSweep,
        ] {
            assert_eq!(Timer::from_key(t.to_key()), Some(t));
        }
        assert_ne!(Timer::Peer(0).to_key(), Timer::PeerSweep.to_key());
        assert_eq!(Timer::from_key(0), None);
    }
}
