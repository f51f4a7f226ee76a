//! Shared pieces of the p2pshare bench tools: flag parsing, latency histograms, reports,
//! the non-blocking registry clients (general and lean), pacing schedules, child-process
//! shards and /proc sampling. Nothing here knows about a particular tool's scenario.

pub mod args;
pub mod echo;
pub mod gen;
pub mod hist;
pub mod http;
pub mod lean;
pub mod load;
pub mod net;
pub mod pacing;
pub mod prng;
pub mod proc;
pub mod progress;
pub mod report;
pub mod rlimit;
pub mod scenario;
pub mod server_stats;
pub mod shard;
pub mod spawn;
pub mod tokens;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Print one line on stderr and end the process with status 2: the one way tools fail.
pub fn die(tool: &str, msg: impl std::fmt::Display) -> ! {
    eprintln!("{tool}: {msg}");
    std::process::exit(2)
}

/// Resolve `HOST:PORT` and prove something accepts connections there, so a missing
/// coordinator is one clear line instead of thousands of connection errors.
pub fn reach(tool: &str, what: &str, hostport: &str) -> SocketAddr {
    let addr = match hostport.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) => die(
            tool,
            format!("{what} address {hostport} resolves to nothing"),
        ),
        Err(e) => die(tool, format!("bad {what} address {hostport}: {e}")),
    };
    if let Err(e) = TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        die(
            tool,
            format!(
                "cannot reach the {what} at {addr}: {e} (is `p2pshare coordinator` running there?)"
            ),
        );
    }
    addr
}

/// A short run identifier so names from different runs never collide in one registry.
pub fn run_id() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut s = prng::SplitMix64::new(now ^ ((std::process::id() as u64) << 32));
    format!("{:06x}", s.next_u64() & 0xff_ffff)
}

/// Seconds since the Unix epoch, as the registry's timestamps are.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
