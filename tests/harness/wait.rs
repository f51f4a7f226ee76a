//! Waiting on a condition instead of sleeping: `wait_until` polls the real
//! thing (a status, a file, a reply) until it holds or the deadline passes.

use std::time::{Duration, Instant};

/// How long `wait_for` waits: far above what any condition needs on an idle
/// machine, so a loaded one (tests run in parallel) does not fail a test.
pub const WAIT: Duration = Duration::from_secs(15);
/// Between two checks: short enough not to slow a test down, long enough
/// not to busy a core the processes under test need.
const POLL: Duration = Duration::from_millis(20);

/// Polls `check` until it yields something; panics naming `what` after
/// `deadline` (a duration from now).
pub fn wait_until<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check() {
            return v;
        }
        if Instant::now() > until {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// [`wait_until`] with the usual deadline ([`WAIT`]).
pub fn wait_for<T>(what: &str, check: impl FnMut() -> Option<T>) -> T {
    wait_until(what, WAIT, check)
}
