//! The end-to-end test harness: the real `p2pshare` binary (coordinator,
//! node, `up`) on port 0 with the printed addresses read back, stderr kept
//! and shown when a test fails, processes killed on drop; one HTTP client,
//! one registry client, a raw peer connection; `wait_until` in place of
//! sleeps.
#![allow(dead_code, unused_imports)]

pub mod client;
pub mod http;
pub mod peer;
pub mod proc;
pub mod registry;
pub mod relay;
pub mod wait;

pub use client::User;
pub use http::{http_json, http_raw, read_response, request_bytes, HttpResponse};
pub use peer::PeerConn;
pub use proc::{run_to_end, Coordinator, Node, Proc, Spec};
pub use registry::{token, token_exp, RegistryClient};
pub use relay::Relay;
pub use wait::{wait_for, wait_until, WAIT};

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The coordinator's JWT secret in every test, so tests can mint tokens.
pub const SECRET: &str = "node-tests-jwt-secret-0123456789";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
/// Every test account's password.
pub const PASSWORD: &str = "correct horse battery";
/// A process must print its addresses within this.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Reads on test connections give up after this.
pub const IO_TIMEOUT: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_p2pshare")
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A printed `IP:PORT` (maybe with `http://`), made reachable: 0.0.0.0 → 127.0.0.1.
pub fn reachable(printed: &str) -> SocketAddr {
    let s = printed.trim().trim_start_matches("http://");
    let a: SocketAddr = s.parse().unwrap_or_else(|_| panic!("bad address {s:?}"));
    if a.ip().is_unspecified() {
        SocketAddr::new([127, 0, 0, 1].into(), a.port())
    } else {
        a
    }
}

/// The share root of test nodes that name none: the system temp folder, where
/// every test's `tempfile::tempdir()` lives. Those folders are named `.tmp…`
/// (hidden below that root), hence `--share-hidden`; tests of the rules
/// themselves pass their own `--share-root`. A node's data directory sits
/// there too and stays refused: it is never shared, whatever the roots.
pub fn default_share_root() -> Vec<String> {
    let tmp = std::fs::canonicalize(std::env::temp_dir()).expect("temp dir");
    vec![
        "--share-root".into(),
        tmp.display().to_string(),
        "--share-hidden".into(),
    ]
}

/// Deterministic, incompressible-looking test content.
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

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
