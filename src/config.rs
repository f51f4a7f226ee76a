//! Command line, environment and `.env` parsing into a [`Command`] (flag > env > .env >
//! default). It validates values and reports one-line errors; it opens no sockets and
//! starts nothing.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

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
            workers: 2,
            share_roots: Vec::new(),
            download_roots: Vec::new(),
            share_hidden: false,
            max_files_per_host: 10_000,
            max_upload_rate: None,
            trust_claimed_ip: false,
        }
    }
}

/// One flag and/or environment variable, for parsing and for `--help`.
struct Spec {
    /// `""` for settings only the environment may carry (secrets stay off `ps`).
    flag: &'static str,
    /// Placeholder for the value; `""` for a switch.
    value: &'static str,
    env: &'static [&'static str],
    default: &'static str,
    help: &'static str,
}

const fn spec(
    flag: &'static str,
    value: &'static str,
    env: &'static [&'static str],
    default: &'static str,
    help: &'static str,
) -> Spec {
    Spec {
        flag,
        value,
        env,
        default,
        help,
    }
}

const SPECS: &[Spec] = &[
    spec(
        "--data-dir",
        "DIR",
        &["P2PSHARE_DATA"],
        "./p2pshare-data",
        "users, secrets, node state, downloads",
    ),
    spec(
        "--registry-port",
        "PORT",
        &["SERVER_PORT"],
        "9000",
        "coordinator registry (TCP); 0 = any free port",
    ),
    spec(
        "--admin-api-port",
        "PORT",
        &["ADMIN_API_PORT"],
        "5500",
        "coordinator server API + admin UI (HTTP)",
    ),
    spec(
        "--client-api-port",
        "PORT",
        &["CLIENT_API_PORT"],
        "5501",
        "node client API + client UI (HTTP)",
    ),
    spec(
        "--host",
        "IP",
        &["SERVER_HOST", "ADMIN_API_HOST"],
        "0.0.0.0",
        "address the coordinator's listeners bind (never the client API)",
    ),
    spec(
        "--client-api-host",
        "IP",
        &["CLIENT_API_HOST"],
        "127.0.0.1",
        "node: the client API's address (non-loopback needs --allowed-hosts)",
    ),
    spec(
        "--coordinator",
        "HOST:PORT",
        &[],
        "127.0.0.1:9000",
        "node: the coordinator's registry",
    ),
    spec(
        "--coordinator-api",
        "URL",
        &[],
        "http://127.0.0.1:5500",
        "node: the coordinator's server API",
    ),
    spec(
        "--port-range",
        "MIN-MAX",
        &["CLIENT_PORT_MIN", "CLIENT_PORT_MAX"],
        "6000-7000",
        "node: peer listener ports",
    ),
    spec(
        "--advertise-ip",
        "IP",
        &[],
        "detected",
        "node: address peers are told to connect to",
    ),
    spec(
        "--allow-anonymous",
        "",
        &[],
        "off",
        "coordinator: accept REGISTER without a token",
    ),
    spec(
        "--allowed-hosts",
        "A,B",
        &[],
        "none",
        "node: extra Host names the client API answers",
    ),
    spec(
        "--heartbeat-interval",
        "SECS",
        &["CLIENT_HEARTBEAT_INTERVAL"],
        "60",
        "seed heartbeat interval",
    ),
    spec(
        "--cleanup-interval",
        "SECS",
        &["CLIENT_CLEANUP_INTERVAL"],
        "30",
        "coordinator: inactive-host sweep period",
    ),
    spec(
        "--inactive-timeout",
        "SECS",
        &["CLIENT_INACTIVE_TIMEOUT"],
        "1200",
        "coordinator: remove hosts silent this long",
    ),
    spec(
        "--session-timeout",
        "SECS",
        &["SESSION_TIMEOUT"],
        "3600",
        "token lifetime",
    ),
    spec(
        "--admin-username",
        "NAME",
        &["ADMIN_USERNAME"],
        "admin",
        "coordinator: admin account name",
    ),
    spec(
        "--log-level",
        "LEVEL",
        &["P2PSHARE_LOG"],
        "info",
        "error, warn, info or debug",
    ),
    spec(
        "--heartbeat-idle",
        "SECS",
        &["P2PSHARE_HEARTBEAT_IDLE"],
        "300",
        "node: heartbeat interval when idle",
    ),
    spec(
        "--heartbeat-active",
        "SECS",
        &["P2PSHARE_HEARTBEAT_ACTIVE"],
        "60",
        "node: heartbeat interval when active",
    ),
    spec(
        "--heartbeat-busy",
        "SECS",
        &["P2PSHARE_HEARTBEAT_BUSY"],
        "30",
        "node: heartbeat interval while transferring",
    ),
    spec(
        "--active-window",
        "SECS",
        &["P2PSHARE_ACTIVE_WINDOW"],
        "300",
        "node: stays 'active' this long after last use",
    ),
    spec(
        "--share-root",
        "DIR",
        &["P2PSHARE_SHARE_ROOTS"],
        "your home directory",
        "node: users may add files only under these (repeatable; env ':'-separated)",
    ),
    spec(
        "--download-root",
        "DIR",
        &["P2PSHARE_DOWNLOAD_ROOTS"],
        "none",
        "node: fetches may also write here (repeatable; env ':'-separated)",
    ),
    spec(
        "--share-hidden",
        "",
        &[],
        "off",
        "node: allow hidden files and folders under the share roots",
    ),
    spec(
        "--max-files-per-host",
        "N",
        &[],
        "10000",
        "coordinator: files one host may list",
    ),
    spec(
        "--max-upload-rate",
        "RATE",
        &["P2PSHARE_MAX_UPLOAD_RATE"],
        "unlimited",
        "node: bytes/s for all peer uploads together (20MB, 512KB, 1MiB)",
    ),
    spec(
        "--trust-claimed-ip",
        "",
        &[],
        "off",
        "coordinator: take REGISTER's ip as given instead of the address seen",
    ),
    spec(
        "--workers",
        "N",
        &["P2PSHARE_WORKERS"],
        "2",
        "worker threads for slow work (hashing)",
    ),
    spec(
        "",
        "",
        &["JWT_SECRET_KEY"],
        "generated, kept in DATA/secrets.json",
        "token signing secret",
    ),
    spec(
        "",
        "",
        &["ADMIN_PASSWORD"],
        "generated on first start and printed once",
        "admin password",
    ),
    spec(
        "",
        "",
        &["P2PSHARE_PBKDF2_ITERATIONS"],
        "600000",
        "password hash cost; lower only in tests",
    ),
];

/// The `--help` text: commands, then every flag with its environment variable and default.
pub fn usage() -> String {
    let mut s = String::from(
        "p2pshare: hybrid peer-to-peer file sharing\n\
         \n\
         Usage: p2pshare <COMMAND> [FLAGS]\n\
         \n\
         Commands:\n  \
           up            coordinator and a node in one process (single machine)\n  \
           coordinator   registry (TCP) + server API and admin web UI (HTTP)\n  \
           node          client API and client web UI (HTTP) + peer listeners\n\
         \n\
         Flags (also settable by the environment variable shown, or in ./.env;\n\
         a flag beats the environment, which beats .env, which beats the default):\n",
    );
    let line = |s: &mut String, left: String, sp: &Spec| {
        s.push_str(&format!("  {left:<28} {}\n", sp.help));
        let env = if sp.env.is_empty() || sp.flag.is_empty() {
            String::new()
        } else {
            format!("[env {}] ", sp.env.join(", "))
        };
        s.push_str(&format!("  {:<28} {env}(default {})\n", "", sp.default));
    };
    for sp in SPECS.iter().filter(|sp| !sp.flag.is_empty()) {
        line(&mut s, format!("{} {}", sp.flag, sp.value), sp);
    }
    s.push_str(&format!("  {:<28} print this text\n", "--help, -h"));
    s.push_str(&format!("  {:<28} print the version\n", "--version, -V"));
    s.push_str("\nEnvironment only (kept off the command line so they never show in `ps`):\n");
    for sp in SPECS.iter().filter(|sp| sp.flag.is_empty()) {
        line(&mut s, sp.env.join(", "), sp);
    }
    s
}

/// `p2pshare <version>`.
pub fn version_text() -> String {
    format!("p2pshare {}", env!("CARGO_PKG_VERSION"))
}

/// Parse `KEY=VALUE` lines: `#` comments, blank lines, an optional `export `, optional
/// single or double quotes around the value.
pub fn parse_dotenv(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(".env line {}: expected KEY=VALUE", i + 1));
        };
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                ".env line {}: '{key}' is not a variable name",
                i + 1
            ));
        }
        let value = value.trim();
        let quoted = value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')));
        let value = if quoted {
            &value[1..value.len() - 1]
        } else {
            // An unquoted value may carry a trailing " # comment".
            value.split(" #").next().unwrap_or("").trim_end()
        };
        out.insert(key.to_owned(), value.to_owned());
    }
    Ok(out)
}

/// Where each setting comes from, in precedence order.
struct Sources<'a> {
    /// Every value given per flag, in order; a flag given twice keeps its last
    /// value unless it is repeatable (`--share-root`).
    flags: HashMap<&'static str, Vec<String>>,
    env: &'a HashMap<String, String>,
    dotenv: HashMap<String, String>,
}

impl Sources<'_> {
    /// The winning raw value and a label naming its origin, for error messages. Empty
    /// environment values count as unset (compose files often leave `KEY=`).
    fn get(&self, flag: &str, env: &str) -> Option<(String, String)> {
        if let Some(v) = self.flags.get(flag).and_then(|v| v.last()) {
            return Some((flag.to_owned(), v.clone()));
        }
        if env.is_empty() {
            return None;
        }
        if let Some(v) = self.env.get(env).filter(|v| !v.is_empty()) {
            return Some((env.to_owned(), v.clone()));
        }
        self.dotenv
            .get(env)
            .filter(|v| !v.is_empty())
            .map(|v| (format!("{env} (in .env)"), v.clone()))
    }

    fn parsed<T>(
        &self,
        flag: &str,
        env: &str,
        default: T,
        parse: impl Fn(&str) -> Option<T>,
        what: &str,
    ) -> Result<T, String> {
        match self.get(flag, env) {
            None => Ok(default),
            Some((origin, v)) => parse(v.trim()).ok_or_else(|| format!("{origin}: '{v}' {what}")),
        }
    }

    fn port(&self, flag: &str, env: &str, default: u16) -> Result<u16, String> {
        self.parsed(
            flag,
            env,
            default,
            |v| v.parse().ok(),
            "is not a port number (0-65535)",
        )
    }

    fn ip(&self, flag: &str, env: &str, default: IpAddr) -> Result<IpAddr, String> {
        self.parsed(
            flag,
            env,
            default,
            |v| v.parse().ok(),
            "is not an IP address",
        )
    }

    /// A duration: more than 0 and at most a year, so every later `Duration` and
    /// deadline computed from it fits (`1e300` once panicked in `from_secs_f64`).
    fn secs(&self, flag: &str, env: &str, default: f64) -> Result<f64, String> {
        self.parsed(
            flag,
            env,
            default,
            |v| {
                v.parse::<f64>()
                    .ok()
                    .filter(|n| n.is_finite() && *n > 0.0 && *n <= MAX_DURATION_S)
            },
            "is not a number of seconds above 0 and at most one year (31536000)",
        )
    }

    /// Every value of a repeatable flag, else its environment variable split on
    /// `:`, else nothing.
    fn paths(&self, flag: &str, env: &str) -> Vec<PathBuf> {
        if let Some(v) = self.flags.get(flag) {
            return v.iter().map(PathBuf::from).collect();
        }
        match self.get("", env) {
            Some((_, v)) => v
                .split(':')
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
                .collect(),
            None => Vec::new(),
        }
    }
}

fn flag_spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| !s.flag.is_empty() && s.flag == name)
}

fn see_help() -> &'static str {
    "see `p2pshare --help`"
}

/// `HOST:PORT` with a non-empty host and a port 1-65535.
fn valid_host_port(s: &str) -> bool {
    match s.rsplit_once(':') {
        Some((host, port)) => {
            !host.is_empty()
                && !host.contains(['/', ' '])
                && port.parse::<u16>().is_ok_and(|p| p != 0)
        }
        None => false,
    }
}

/// `http://HOST:PORT` (one trailing slash tolerated), returned without the slash.
fn normalize_api_url(s: &str) -> Option<String> {
    let rest = s.strip_prefix("http://")?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    valid_host_port(authority).then(|| format!("http://{authority}"))
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Parse the command line (without argv[0]) against an environment and the contents of
/// a `.env` file. `Err` is a one-line message fit to print before exiting non-zero.
pub fn parse(
    args: &[String],
    env: &HashMap<String, String>,
    dotenv: Option<&str>,
) -> Result<Command, String> {
    let mut command: Option<&str> = None;
    let mut flags: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        i += 1;
        match arg {
            "--help" | "-h" | "help" => return Ok(Command::Help(usage())),
            "--version" | "-V" | "version" => return Ok(Command::Version),
            _ => {}
        }
        if !arg.starts_with('-') {
            if let Some(c) = command {
                return Err(format!(
                    "unexpected argument '{arg}' after command '{c}'; {}",
                    see_help()
                ));
            }
            command = Some(arg);
            continue;
        }
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (arg, None),
        };
        let Some(sp) = flag_spec(name) else {
            return Err(format!("unknown flag {name}; {}", see_help()));
        };
        let value = if sp.value.is_empty() {
            if inline.is_some() {
                return Err(format!("{name} takes no value; {}", see_help()));
            }
            String::new()
        } else if let Some(v) = inline {
            v.to_owned()
        } else {
            match args.get(i) {
                Some(v) if !v.starts_with("--") => {
                    i += 1;
                    v.clone()
                }
                _ => {
                    return Err(format!(
                        "{name} needs a value ({}); {}",
                        sp.value,
                        see_help()
                    ));
                }
            }
        };
        if !sp.value.is_empty() && value.is_empty() {
            return Err(format!(
                "{name} needs a value ({}); {}",
                sp.value,
                see_help()
            ));
        }
        flags.entry(sp.flag).or_default().push(value);
    }

    let make: fn(Config) -> Command = match command {
        Some("up") => Command::Up,
        Some("coordinator") => Command::Coordinator,
        Some("node") => Command::Node,
        Some(other) => {
            return Err(format!(
                "unknown command '{other}' (expected up, coordinator or node); {}",
                see_help()
            ))
        }
        None => {
            return Err(format!(
                "no command given (expected up, coordinator or node); {}",
                see_help()
            ))
        }
    };
    let dotenv = match dotenv {
        Some(text) => parse_dotenv(text)?,
        None => HashMap::new(),
    };
    let src = Sources { flags, env, dotenv };
    Ok(make(resolve(&src)?))
}

fn resolve(src: &Sources<'_>) -> Result<Config, String> {
    let d = Config::default();
    let data_dir = src
        .get("--data-dir", "P2PSHARE_DATA")
        .map_or(d.data_dir, |(_, v)| PathBuf::from(v));

    let (port_min, port_max) = match src.flags.get("--port-range").and_then(|v| v.last()) {
        Some(v) => {
            let (a, b) = parse_range(v).ok_or_else(|| {
                format!("--port-range: '{v}' is not a port range like 6000-7000 (ports 0-65535)")
            })?;
            if a > b {
                return Err(format!(
                    "--port-range: '{v}' has its minimum above its maximum"
                ));
            }
            (a, b)
        }
        None => {
            let a = src.port("", "CLIENT_PORT_MIN", d.port_min)?;
            let b = src.port("", "CLIENT_PORT_MAX", d.port_max)?;
            if a > b {
                return Err(format!(
                    "CLIENT_PORT_MIN {a} is above CLIENT_PORT_MAX {b}; the port range is empty"
                ));
            }
            (a, b)
        }
    };

    let coordinator = match src.get("--coordinator", "") {
        Some((origin, v)) if !valid_host_port(&v) => {
            return Err(format!("{origin}: '{v}' is not HOST:PORT (port 1-65535)"));
        }
        Some((_, v)) => v,
        None => d.coordinator,
    };
    let coordinator_api = match src.get("--coordinator-api", "") {
        Some((origin, v)) => normalize_api_url(&v)
            .ok_or_else(|| format!("{origin}: '{v}' is not a URL like http://HOST:PORT"))?,
        None => d.coordinator_api,
    };

    let advertise_ip = match src.get("--advertise-ip", "") {
        Some((origin, v)) => Some(
            v.parse::<IpAddr>()
                .map_err(|_| format!("{origin}: '{v}' is not an IP address"))?,
        ),
        None => None,
    };
    let allowed_hosts: Vec<String> = src
        .get("--allowed-hosts", "")
        .map(|(_, v)| {
            v.split(',')
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect()
        })
        .unwrap_or_default();

    let log_level = src.parsed(
        "--log-level",
        "P2PSHARE_LOG",
        d.log_level,
        |v| crate::log::level_from_str(v).map(|_| v.to_ascii_lowercase()),
        "is not a log level (error, warn, info or debug)",
    )?;
    let session_timeout_s = src.parsed(
        "--session-timeout",
        "SESSION_TIMEOUT",
        d.session_timeout_s,
        |v| {
            v.parse::<u64>()
                .ok()
                .filter(|n| (1..=MAX_SESSION_S).contains(n))
        },
        "is not a whole number of seconds from 1 to 30 days (2592000)",
    )?;
    let pbkdf2_iterations = src.parsed(
        "",
        "P2PSHARE_PBKDF2_ITERATIONS",
        d.pbkdf2_iterations,
        |v| v.parse::<u32>().ok().filter(|n| *n > 0),
        "is not an iteration count (1-4294967295)",
    )?;
    let workers = src.parsed(
        "--workers",
        "P2PSHARE_WORKERS",
        d.workers,
        |v| v.parse::<usize>().ok().filter(|n| (1..=256).contains(n)),
        "is not a worker count (1-256)",
    )?;
    let admin_username = src
        .get("--admin-username", "ADMIN_USERNAME")
        .map_or(d.admin_username, |(_, v)| v);
    let client_api_host = src.ip("--client-api-host", "CLIENT_API_HOST", d.client_api_host)?;
    if !client_api_host.is_loopback() && allowed_hosts.is_empty() {
        return Err(format!(
            "--client-api-host {client_api_host} is not a loopback address: the client API reads \
             local files, so name the hosts it may answer with --allowed-hosts"
        ));
    }
    let mut share_roots = src.paths("--share-root", "P2PSHARE_SHARE_ROOTS");
    if share_roots.is_empty() {
        share_roots.push(home_dir(src.env).ok_or_else(|| {
            "cannot tell this account's home directory (the default share root); \
             set --share-root DIR"
                .to_owned()
        })?);
    }
    for p in &share_roots {
        if !p.is_absolute() {
            return Err(format!(
                "--share-root: '{}' is not an absolute path",
                p.display()
            ));
        }
    }
    let download_roots = src.paths("--download-root", "P2PSHARE_DOWNLOAD_ROOTS");
    for p in &download_roots {
        if !p.is_absolute() {
            return Err(format!(
                "--download-root: '{}' is not an absolute path",
                p.display()
            ));
        }
    }
    let max_files_per_host = src.parsed(
        "--max-files-per-host",
        "",
        d.max_files_per_host,
        |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| (1..=10_000_000).contains(n))
        },
        "is not a file count (1-10000000)",
    )?;
    let max_upload_rate = src.parsed(
        "--max-upload-rate",
        "P2PSHARE_MAX_UPLOAD_RATE",
        None,
        |v| parse_rate(v).map(Some),
        "is not a rate in bytes per second (like 20MB, 512KB, 1MiB or 1000000)",
    )?;

    Ok(Config {
        data_dir,
        registry_port: src.port("--registry-port", "SERVER_PORT", d.registry_port)?,
        admin_api_port: src.port("--admin-api-port", "ADMIN_API_PORT", d.admin_api_port)?,
        client_api_port: src.port("--client-api-port", "CLIENT_API_PORT", d.client_api_port)?,
        coordinator_host: src.ip("--host", "SERVER_HOST", d.coordinator_host)?,
        admin_api_host: src.ip("--host", "ADMIN_API_HOST", d.admin_api_host)?,
        client_api_host,
        coordinator,
        coordinator_api,
        port_min,
        port_max,
        advertise_ip,
        allow_anonymous: src.flags.contains_key("--allow-anonymous"),
        allowed_hosts,
        heartbeat_interval_s: src.secs(
            "--heartbeat-interval",
            "CLIENT_HEARTBEAT_INTERVAL",
            d.heartbeat_interval_s,
        )?,
        cleanup_interval_s: src.secs(
            "--cleanup-interval",
            "CLIENT_CLEANUP_INTERVAL",
            d.cleanup_interval_s,
        )?,
        inactive_timeout_s: src.secs(
            "--inactive-timeout",
            "CLIENT_INACTIVE_TIMEOUT",
            d.inactive_timeout_s,
        )?,
        session_timeout_s,
        jwt_secret: src.get("", "JWT_SECRET_KEY").map(|(_, v)| v),
        admin_username,
        admin_password: src.get("", "ADMIN_PASSWORD").map(|(_, v)| v),
        log_level,
        pbkdf2_iterations,
        heartbeat_idle_s: src.secs(
            "--heartbeat-idle",
            "P2PSHARE_HEARTBEAT_IDLE",
            d.heartbeat_idle_s,
        )?,
        heartbeat_active_s: src.secs(
            "--heartbeat-active",
            "P2PSHARE_HEARTBEAT_ACTIVE",
            d.heartbeat_active_s,
        )?,
        heartbeat_busy_s: src.secs(
            "--heartbeat-busy",
            "P2PSHARE_HEARTBEAT_BUSY",
            d.heartbeat_busy_s,
        )?,
        active_window_s: src.secs(
            "--active-window",
            "P2PSHARE_ACTIVE_WINDOW",
            d.active_window_s,
        )?,
        workers,
        share_roots,
        download_roots,
        share_hidden: src.flags.contains_key("--share-hidden"),
        max_files_per_host,
        max_upload_rate,
        trust_claimed_ip: src.flags.contains_key("--trust-claimed-ip"),
    })
}

/// `20MB`, `512KB`, `1.5MiB`, `1000000` (bytes per second; K/M/G are powers of
/// 1000, Ki/Mi/Gi of 1024, a trailing `B` or `/s` optional). At least 1 byte/s.
pub fn parse_rate(v: &str) -> Option<u64> {
    let v = v.trim();
    let v = v.strip_suffix("/s").unwrap_or(v);
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = n * mult;
    (bytes.is_finite() && (1.0..=1e15).contains(&bytes)).then_some(bytes as u64)
}

/// The home directory of the account running this process: `$HOME`, else the
/// password database's entry for the effective user.
fn home_dir(env: &HashMap<String, String>) -> Option<PathBuf> {
    if let Some(h) = env.get("HOME").filter(|h| h.starts_with('/')) {
        return Some(PathBuf::from(h));
    }
    // SAFETY: getpwuid_r writes only into the buffers we pass; the returned
    // pointer, when non-null, points into `pw`/`buf`, which outlive its use.
    unsafe {
        let mut pw: libc::passwd = std::mem::zeroed();
        let mut buf = vec![0 as libc::c_char; 4096];
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        let rc = libc::getpwuid_r(
            libc::geteuid(),
            &mut pw,
            buf.as_mut_ptr(),
            buf.len(),
            &mut out,
        );
        if rc != 0 || out.is_null() || pw.pw_dir.is_null() {
            return None;
        }
        let dir = std::ffi::CStr::from_ptr(pw.pw_dir).to_str().ok()?;
        dir.starts_with('/').then(|| PathBuf::from(dir))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn config(cmd: Result<Command, String>) -> Config {
        match cmd {
            Ok(Command::Up(c) | Command::Coordinator(c) | Command::Node(c)) => c,
            other => panic!("expected a config, got {other:?}"),
        }
    }

    fn err(a: &str, e: &[(&str, &str)], dotenv: Option<&str>) -> String {
        match parse(&args(a), &env(e), dotenv) {
            Err(e) => e,
            Ok(c) => panic!("expected an error for {a:?}, got {c:?}"),
        }
    }

    #[test]
    fn defaults() {
        let home = env(&[("HOME", "/home/carol")]);
        let c = config(parse(&args("up"), &home, None));
        assert_eq!(
            c,
            Config {
                share_roots: vec![PathBuf::from("/home/carol")],
                ..Config::default()
            }
        );
        assert_eq!(c.registry_port, 9000);
        assert_eq!(c.client_api_host.to_string(), "127.0.0.1");
        assert_eq!(c.coordinator_host.to_string(), "0.0.0.0");
        assert_eq!((c.port_min, c.port_max), (6000, 7000));
        assert_eq!(c.pbkdf2_iterations, 600_000);
    }

    #[test]
    fn commands() {
        let e = HashMap::new();
        assert!(matches!(parse(&args("up"), &e, None), Ok(Command::Up(_))));
        assert!(matches!(
            parse(&args("coordinator"), &e, None),
            Ok(Command::Coordinator(_))
        ));
        assert!(matches!(
            parse(&args("node"), &e, None),
            Ok(Command::Node(_))
        ));
        assert!(matches!(
            parse(&args("--version"), &e, None),
            Ok(Command::Version)
        ));
        assert!(matches!(
            parse(&args("node -h"), &e, None),
            Ok(Command::Help(_))
        ));
        assert!(err("", &[], None).starts_with("no command given"));
        assert!(err("serve", &[], None).starts_with("unknown command 'serve'"));
        assert!(err("up node", &[], None).starts_with("unexpected argument 'node'"));
    }

    #[test]
    fn precedence_flag_env_dotenv_default() {
        let dotenv = "SERVER_PORT=1111\nADMIN_API_PORT=2222\nCLIENT_API_PORT=3333\n";
        let e = [("SERVER_PORT", "4444"), ("ADMIN_API_PORT", "5555")];
        let c = config(parse(
            &args("up --registry-port 7777"),
            &env(&e),
            Some(dotenv),
        ));
        assert_eq!(c.registry_port, 7777, "flag beats env");
        assert_eq!(c.admin_api_port, 5555, "env beats .env");
        assert_eq!(c.client_api_port, 3333, ".env beats default");
        assert_eq!(c.heartbeat_idle_s, 300.0, "default");
    }

    #[test]
    fn flags_may_come_before_the_command_and_use_equals() {
        let c = config(parse(
            &args("--data-dir=/tmp/x coordinator --host=127.0.0.2 --allow-anonymous --session-timeout 5"),
            &HashMap::new(),
            None,
        ));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.coordinator_host.to_string(), "127.0.0.2");
        assert_eq!(c.admin_api_host.to_string(), "127.0.0.2");
        assert_eq!(
            c.client_api_host.to_string(),
            "127.0.0.1",
            "--host never moves the client API"
        );
        assert!(c.allow_anonymous);
        assert_eq!(c.session_timeout_s, 5);
    }

    #[test]
    fn host_envs_are_separate() {
        let e = [("SERVER_HOST", "10.0.0.1"), ("CLIENT_API_HOST", "::1")];
        let c = config(parse(&args("up"), &env(&e), None));
        assert_eq!(c.coordinator_host.to_string(), "10.0.0.1");
        assert_eq!(c.admin_api_host.to_string(), "0.0.0.0");
        assert_eq!(c.client_api_host.to_string(), "::1");
    }

    #[test]
    fn bad_ports() {
        assert_eq!(
            err("up --registry-port abc", &[], None),
            "--registry-port: 'abc' is not a port number (0-65535)"
        );
        assert_eq!(
            err("up", &[("ADMIN_API_PORT", "70000")], None),
            "ADMIN_API_PORT: '70000' is not a port number (0-65535)"
        );
        assert_eq!(
            err("up", &[], Some("CLIENT_API_PORT=-1")),
            "CLIENT_API_PORT (in .env): '-1' is not a port number (0-65535)"
        );
        let c = config(parse(&args("up --registry-port 0"), &HashMap::new(), None));
        assert_eq!(c.registry_port, 0);
    }

    #[test]
    fn unknown_flag_and_missing_value() {
        assert_eq!(
            err("up --foo", &[], None),
            "unknown flag --foo; see `p2pshare --help`"
        );
        assert_eq!(
            err("up --foo=1", &[], None),
            "unknown flag --foo; see `p2pshare --help`"
        );
        assert!(err("up --data-dir", &[], None).starts_with("--data-dir needs a value"));
        assert!(err("up --data-dir --registry-port 1", &[], None)
            .starts_with("--data-dir needs a value"));
        assert!(err("up --data-dir=", &[], None).starts_with("--data-dir needs a value"));
        assert!(err("up --allow-anonymous=yes", &[], None)
            .starts_with("--allow-anonymous takes no value"));
    }

    #[test]
    fn port_ranges() {
        let c = config(parse(&args("node --port-range 0-0"), &HashMap::new(), None));
        assert_eq!((c.port_min, c.port_max), (0, 0));
        let e = [("CLIENT_PORT_MIN", "6500"), ("CLIENT_PORT_MAX", "6600")];
        let c = config(parse(&args("node"), &env(&e), None));
        assert_eq!((c.port_min, c.port_max), (6500, 6600));
        let c = config(parse(&args("node --port-range=7000-7001"), &env(&e), None));
        assert_eq!((c.port_min, c.port_max), (7000, 7001));
        assert!(err("node --port-range 7000-6000", &[], None).contains("minimum above its maximum"));
        assert!(err("node --port-range 6000", &[], None).contains("is not a port range"));
        assert!(err("node --port-range 1-99999", &[], None).contains("is not a port range"));
        assert!(
            err("node", &[("CLIENT_PORT_MIN", "8000")], None).contains("is above CLIENT_PORT_MAX")
        );
    }

    #[test]
    fn coordinator_addresses() {
        let c = config(parse(
            &args("node --coordinator 10.1.2.3:9100 --coordinator-api http://10.1.2.3:5600/"),
            &HashMap::new(),
            None,
        ));
        assert_eq!(c.coordinator, "10.1.2.3:9100");
        assert_eq!(c.coordinator_api, "http://10.1.2.3:5600");
        assert!(err("node --coordinator 10.1.2.3", &[], None).contains("is not HOST:PORT"));
        assert!(err("node --coordinator :9000", &[], None).contains("is not HOST:PORT"));
        assert!(err("node --coordinator h:0", &[], None).contains("is not HOST:PORT"));
        for bad in ["10.1.2.3:5600", "https://h:1", "http://h", "http://h:1/api"] {
            assert!(
                err(&format!("node --coordinator-api {bad}"), &[], None)
                    .contains("http://HOST:PORT"),
                "{bad}"
            );
        }
    }

    #[test]
    fn other_values() {
        let e = [
            ("P2PSHARE_LOG", "DEBUG"),
            ("JWT_SECRET_KEY", "s3cret"),
            ("ADMIN_PASSWORD", ""),
            ("P2PSHARE_PBKDF2_ITERATIONS", "2"),
            ("CLIENT_INACTIVE_TIMEOUT", "0.5"),
        ];
        let c = config(parse(
            &args("up --allowed-hosts Example.com,,box.lan --advertise-ip 192.168.1.5 --workers 4"),
            &env(&e),
            None,
        ));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.jwt_secret.as_deref(), Some("s3cret"));
        assert_eq!(c.admin_password, None, "empty env counts as unset");
        assert_eq!(c.pbkdf2_iterations, 2);
        assert_eq!(c.inactive_timeout_s, 0.5);
        assert_eq!(c.allowed_hosts, vec!["example.com", "box.lan"]);
        assert_eq!(c.advertise_ip, Some("192.168.1.5".parse().unwrap()));
        assert_eq!(c.workers, 4);

        assert!(err("up --log-level loud", &[], None).contains("is not a log level"));
        assert!(err("up --heartbeat-busy 0", &[], None).contains("above 0 and at most one year"));
        assert!(err("up --heartbeat-idle nan", &[], None).contains("above 0 and at most one year"));
        assert!(err("up --advertise-ip x", &[], None).contains("is not an IP address"));
        assert!(err("up --host 1.2.3", &[], None).contains("is not an IP address"));
        assert!(err("up", &[("P2PSHARE_PBKDF2_ITERATIONS", "0")], None).contains("iteration count"));
        assert!(err("up --workers 0", &[], None).contains("worker count"));
        // Secrets have no flags.
        assert!(err("up --jwt-secret-key x", &[], None).starts_with("unknown flag"));
    }

    #[test]
    fn durations_are_bounded_to_a_year_and_tokens_to_30_days() {
        for bad in ["1e300", "31536001", "inf", "-1", "0"] {
            assert!(
                err(&format!("up --heartbeat-idle {bad}"), &[], None).contains("at most one year"),
                "{bad}"
            );
            assert!(
                err("up", &[("CLIENT_CLEANUP_INTERVAL", bad)], None).contains("at most one year"),
                "{bad}"
            );
        }
        let c = config(parse(
            &args("up --heartbeat-idle 31536000"),
            &HashMap::new(),
            None,
        ));
        assert_eq!(c.heartbeat_idle_s, 31_536_000.0);
        for bad in ["18446744073709551615", "2592001", "0"] {
            assert!(
                err("up", &[("SESSION_TIMEOUT", bad)], None).contains("30 days"),
                "{bad}"
            );
        }
        let c = config(parse(
            &args("up"),
            &env(&[("SESSION_TIMEOUT", "2592000")]),
            None,
        ));
        assert_eq!(c.session_timeout_s, 2_592_000);
    }

    #[test]
    fn client_api_host_is_its_own_flag_and_needs_allowed_hosts_off_loopback() {
        let c = config(parse(&args("up --host 0.0.0.0"), &HashMap::new(), None));
        assert_eq!(c.client_api_host.to_string(), "127.0.0.1");
        assert!(err("up --client-api-host 0.0.0.0", &[], None).contains("--allowed-hosts"));
        assert!(err("up", &[("CLIENT_API_HOST", "10.0.0.2")], None).contains("--allowed-hosts"));
        let c = config(parse(
            &args("node --client-api-host 0.0.0.0 --allowed-hosts box.lan"),
            &HashMap::new(),
            None,
        ));
        assert_eq!(c.client_api_host.to_string(), "0.0.0.0");
    }

    #[test]
    fn roots_repeat_and_come_from_the_environment() {
        let c = config(parse(
            &args(
                "node --share-root /srv/a --share-root=/srv/b --download-root /dl --share-hidden",
            ),
            &HashMap::new(),
            None,
        ));
        assert_eq!(
            c.share_roots,
            vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
        );
        assert_eq!(c.download_roots, vec![PathBuf::from("/dl")]);
        assert!(c.share_hidden);
        let e = [
            ("P2PSHARE_SHARE_ROOTS", "/x:/y"),
            ("P2PSHARE_DOWNLOAD_ROOTS", "/z"),
        ];
        let c = config(parse(&args("node"), &env(&e), None));
        assert_eq!(
            c.share_roots,
            vec![PathBuf::from("/x"), PathBuf::from("/y")]
        );
        assert_eq!(c.download_roots, vec![PathBuf::from("/z")]);
        assert!(err("node --share-root rel/dir", &[], None).contains("absolute"));
        assert!(err("node --download-root rel", &[], None).contains("absolute"));
    }

    #[test]
    fn rates_and_limits() {
        assert_eq!(parse_rate("20MB"), Some(20_000_000));
        assert_eq!(parse_rate("512KB"), Some(512_000));
        assert_eq!(parse_rate("1MiB"), Some(1_048_576));
        assert_eq!(parse_rate("1.5 MB/s"), Some(1_500_000));
        assert_eq!(parse_rate("1000"), Some(1000));
        for bad in ["", "MB", "0", "-5MB", "1e400", "5 parsecs", "1..2MB"] {
            assert_eq!(parse_rate(bad), None, "{bad}");
        }
        let c = config(parse(
            &args("up --max-upload-rate 20MB --max-files-per-host 5 --trust-claimed-ip"),
            &HashMap::new(),
            None,
        ));
        assert_eq!(c.max_upload_rate, Some(20_000_000));
        assert_eq!(c.max_files_per_host, 5);
        assert!(c.trust_claimed_ip);
        assert!(err("up --max-upload-rate fast", &[], None).contains("bytes per second"));
        assert!(err("up --max-files-per-host 0", &[], None).contains("file count"));
    }

    #[test]
    fn dotenv_syntax() {
        let text = "# comment\n\nexport A=1\nB = \"two words\"\nC='x # y'\nD=plain # note\nE=\n";
        let m = parse_dotenv(text).unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x # y");
        assert_eq!(m["D"], "plain");
        assert_eq!(m["E"], "");
        assert_eq!(
            parse_dotenv("JUNK").unwrap_err(),
            ".env line 1: expected KEY=VALUE"
        );
        assert!(parse_dotenv("A B=1").is_err());
        assert!(err("up", &[], Some("oops")).starts_with(".env line 1"));
    }

    #[test]
    fn help_lists_every_flag_and_env() {
        let Ok(Command::Help(text)) = parse(&args("--help"), &HashMap::new(), None) else {
            panic!("no help");
        };
        for sp in SPECS {
            if !sp.flag.is_empty() {
                assert!(text.contains(sp.flag), "{}", sp.flag);
            }
            for e in sp.env {
                assert!(text.contains(e), "{e}");
            }
        }
        assert!(text.contains("coordinator") && text.contains("up") && text.contains("node"));
    }
}
