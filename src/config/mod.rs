//! Command line, environment and `.env` parsing into a [`Command`] (flag > env > .env >
//! default). It validates values and reports one-line errors; it opens no sockets and
//! starts nothing. The flag table is in `flags`, the parser in `parse`, value syntax in
//! `values`, `.env` syntax in `dotenv`.

mod dotenv;
mod flags;
mod parse;
#[cfg(test)]
mod tests;
mod values;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

pub use dotenv::parse_dotenv;
pub use flags::{usage, version_text};
pub use parse::parse;
pub use values::parse_rate;

/// What the user asked the binary to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    /// Coordinator and a node in one process.
    Up(Config),
    Coordinator(Config),
    Node(Config),
    /// Print this usage text and exit successfully.
    Help(String),
    Version,
}

/// Every setting, resolved. Durations are in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Users, secrets, node state and downloads live here.
    pub data_dir: PathBuf,
    /// Coordinator registry (TCP JSON lines); 0 picks a free port.
    pub registry_port: u16,
    /// Coordinator server API and admin UI (HTTP); 0 picks a free port.
    pub admin_api_port: u16,
    /// Node client API and client UI (HTTP); 0 picks a free port.
    pub client_api_port: u16,
    /// Address the registry binds.
    pub coordinator_host: IpAddr,
    /// Address the server API binds.
    pub admin_api_host: IpAddr,
    /// Address the client API binds; loopback by default because it can read local
    /// files. `--host` never moves it; a non-loopback address needs `allowed_hosts`.
    pub client_api_host: IpAddr,
    /// Node: the registry as `HOST:PORT`.
    pub coordinator: String,
    /// Node: the server API as `http://HOST:PORT` (no trailing slash).
    pub coordinator_api: String,
    /// Node: peer listener ports, inclusive; 0 means any free port.
    pub port_min: u16,
    pub port_max: u16,
    /// Node: the address peers are told to connect to; `None` = detect.
    pub advertise_ip: Option<IpAddr>,
    /// Coordinator: accept seed-style REGISTER without a token.
    pub allow_anonymous: bool,
    /// Node: extra `Host` names the client API answers, lower-cased.
    pub allowed_hosts: Vec<String>,
    /// Seed heartbeat interval (s).
    pub heartbeat_interval_s: f64,
    /// Coordinator: how often the inactive-host sweep runs (s).
    pub cleanup_interval_s: f64,
    /// Coordinator: hosts not seen for this long are removed (s).
    pub inactive_timeout_s: f64,
    /// Token lifetime (s).
    pub session_timeout_s: u64,
    /// `JWT_SECRET_KEY`; `None` = generated and kept in the data directory.
    pub jwt_secret: Option<String>,
    pub admin_username: String,
    /// `ADMIN_PASSWORD`; `None` = generated on first start, only its hash kept.
    pub admin_password: Option<String>,
    /// `error`, `warn`, `info` or `debug`.
    pub log_level: String,
    /// PBKDF2 iterations for new password hashes. Lowering it is for tests only.
    pub pbkdf2_iterations: u32,
    /// Node heartbeat interval per state (s).
    pub heartbeat_idle_s: f64,
    pub heartbeat_active_s: f64,
    pub heartbeat_busy_s: f64,
    /// How long after its last use a node counts as "active" (s).
    pub active_window_s: f64,
    /// `connection` (PING only when the state changes, or as a NAT
    /// keepalive; the open connection is the liveness) or `adaptive` (PING
    /// on the per-state interval, for seed-style registries).
    pub heartbeat_mode: String,
    /// In `connection` mode, a PING after this long without one (s).
    pub nat_keepalive_s: f64,
    /// Worker threads for slow work (password hashing, file hashing).
    pub workers: usize,
    /// Node: folders under which users may add files (docs/trust.md). Default: the
    /// home directory of the account running the node.
    pub share_roots: Vec<PathBuf>,
    /// Node: folders a fetch may write into besides the user's downloads folder
    /// and the share roots.
    pub download_roots: Vec<PathBuf>,
    /// Node: allow hidden files and folders under the share roots.
    pub share_hidden: bool,
    /// Coordinator: files one host may list (published and tracked).
    pub max_files_per_host: usize,
    /// Node: bytes per second all peer uploads may use together; `None` = unlimited.
    pub max_upload_rate: Option<u64>,
    /// Coordinator: take REGISTER's claimed `ip` as given (the seed's behaviour).
    pub trust_claimed_ip: bool,
    /// Which listener ports nobody chose (no flag, environment or `.env`):
    /// `up` moves such a port to a free one when it is busy; a chosen one never
    /// moves, and `coordinator` and `node` alone move none (`NONE`).
    pub unchosen_ports: UnchosenPorts,
}

/// Per listener, whether its port is the built-in default (nobody chose it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnchosenPorts {
    pub registry: bool,
    pub admin_api: bool,
    pub client_api: bool,
}

impl UnchosenPorts {
    /// Every port chosen: none may move (`coordinator` and `node` alone,
    /// whose ports other processes are told to expect).
    pub const NONE: UnchosenPorts = UnchosenPorts {
        registry: false,
        admin_api: false,
        client_api: false,
    };
}

/// The longest any duration setting may be: one year, in seconds.
pub const MAX_DURATION_S: f64 = 365.0 * 24.0 * 3600.0;
/// The longest token lifetime: 30 days, in seconds.
pub const MAX_SESSION_S: u64 = 30 * 24 * 3600;

impl Default for Config {
    fn default() -> Config {
        Config {
            data_dir: PathBuf::from("./p2pshare-data"),
            registry_port: 9000,
            admin_api_port: 5500,
            client_api_port: 5501,
            coordinator_host: IpAddr::from([0, 0, 0, 0]),
            admin_api_host: IpAddr::from([0, 0, 0, 0]),
            client_api_host: IpAddr::from([127, 0, 0, 1]),
            coordinator: "127.0.0.1:9000".into(),
            coordinator_api: "http://127.0.0.1:5500".into(),
            port_min: 6000,
            port_max: 7000,
            advertise_ip: None,
            allow_anonymous: false,
            allowed_hosts: Vec::new(),
            heartbeat_interval_s: 60.0,
            cleanup_interval_s: 30.0,
            inactive_timeout_s: 1200.0,
            session_timeout_s: 3600,
            jwt_secret: None,
            admin_username: "admin".into(),
            admin_password: None,
            log_level: "info".into(),
            pbkdf2_iterations: crate::auth::password::DEFAULT_ITERATIONS,
            heartbeat_idle_s: 300.0,
            heartbeat_active_s: 60.0,
            heartbeat_busy_s: 30.0,
            active_window_s: 300.0,
            heartbeat_mode: "connection".into(),
            nat_keepalive_s: 3600.0,
            workers: 2,
            share_roots: Vec::new(),
            download_roots: Vec::new(),
            share_hidden: false,
            max_files_per_host: 10_000,
            max_upload_rate: None,
            trust_claimed_ip: false,
            unchosen_ports: UnchosenPorts {
                registry: true,
                admin_api: true,
                client_api: true,
            },
        }
    }
}

/// Parse `args` (without argv[0]) with the process environment and `./.env` if present.
pub fn load(args: &[String]) -> Result<Command, String> {
    // vars_os: a non-UTF-8 variable elsewhere in the environment must not abort start-up.
    let env: HashMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .collect();
    let dotenv = match std::fs::read_to_string(".env") {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read ./.env: {e}")),
    };
    parse(args, &env, dotenv.as_deref())
}
