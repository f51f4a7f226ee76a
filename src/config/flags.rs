//! Every flag and environment variable, with its default and help line: the
//! table the parser looks flags up in and `--help` prints.

/// One flag and/or environment variable, for parsing and for `--help`.
pub(super) struct Spec {
    /// `""` for settings only the environment may carry (secrets stay off `ps`).
    pub(super) flag: &'static str,
    /// Placeholder for the value; `""` for a switch.
    pub(super) value: &'static str,
    pub(super) env: &'static [&'static str],
    pub(super) default: &'static str,
    pub(super) help: &'static str,
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

pub(super) const SPECS: &[Spec] = &[
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
        "--heartbeat-mode",
        "MODE",
        &["HEARTBEAT_MODE"],
        "connection",
        "node: 'connection' (PING on a state change; the open connection is the liveness) or 'adaptive' (PING every interval)",
    ),
    spec(
        "--nat-keepalive",
        "SECS",
        &["NAT_KEEPALIVE_INTERVAL"],
        "3600",
        "node: in connection mode, PING after this long without one (60-7200)",
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
    spec(
        "",
        "",
        &["P2PSHARE_TEST_DEFAULT_PORTS"],
        "9000,5500,5501",
        "tests only: the default registry, admin API and client API ports",
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

pub(super) fn flag_spec(name: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| !s.flag.is_empty() && s.flag == name)
}

pub(super) fn see_help() -> &'static str {
    "see `p2pshare --help`"
}
