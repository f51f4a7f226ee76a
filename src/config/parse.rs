//! The parser: argv into flags, then each setting resolved from flag, environment,
//! `.env` or default, validated, into a [`Config`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use super::dotenv::parse_dotenv;
use super::flags::{flag_spec, see_help, usage};
use super::values::{home_dir, normalize_api_url, parse_range, parse_rate, valid_host_port};
use super::{Command, Config, UnchosenPorts, MAX_DURATION_S, MAX_SESSION_S};

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
    let mut cfg = resolve(&src)?;
    // Only `up` moves a busy default port: it runs the coordinator and the
    // node that talks to it together. Alone, others expect their ports.
    if command != Some("up") {
        cfg.unchosen_ports = UnchosenPorts::NONE;
    }
    Ok(make(cfg))
}

fn resolve(src: &Sources<'_>) -> Result<Config, String> {
    let mut d = Config::default();
    // Tests only: other default ports, so a test can hold a listener on a
    // "default" without touching the real 9000/5500/5501 (tests/up.rs).
    if let Some((origin, v)) = src.get("", "P2PSHARE_TEST_DEFAULT_PORTS") {
        let ports: Vec<u16> = v.split(',').filter_map(|p| p.trim().parse().ok()).collect();
        match ports[..] {
            [r, a, c] => (d.registry_port, d.admin_api_port, d.client_api_port) = (r, a, c),
            _ => {
                return Err(format!(
                    "{origin}: '{v}' is not three ports like 9000,5500,5501"
                ))
            }
        }
    }
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
    let heartbeat_mode = src.parsed(
        "--heartbeat-mode",
        "HEARTBEAT_MODE",
        d.heartbeat_mode,
        |v| match v.to_ascii_lowercase().as_str() {
            m @ ("connection" | "adaptive") => Some(m.to_owned()),
            _ => None,
        },
        "is not a heartbeat mode (connection or adaptive)",
    )?;
    let nat_keepalive_s = src.parsed(
        "--nat-keepalive",
        "NAT_KEEPALIVE_INTERVAL",
        d.nat_keepalive_s,
        |v| {
            v.parse::<f64>()
                .ok()
                .filter(|s| (60.0..=7200.0).contains(s))
        },
        "must be a number of seconds from 60 to 7200",
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
        heartbeat_mode,
        nat_keepalive_s,
        workers,
        share_roots,
        download_roots,
        share_hidden: src.flags.contains_key("--share-hidden"),
        max_files_per_host,
        max_upload_rate,
        trust_claimed_ip: src.flags.contains_key("--trust-claimed-ip"),
        unchosen_ports: UnchosenPorts {
            registry: src.get("--registry-port", "SERVER_PORT").is_none(),
            admin_api: src.get("--admin-api-port", "ADMIN_API_PORT").is_none(),
            client_api: src.get("--client-api-port", "CLIENT_API_PORT").is_none(),
        },
    })
}
