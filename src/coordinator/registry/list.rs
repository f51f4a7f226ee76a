//! The whole-registry LIST as shared pieces: for each host, in hostname
//! order, its cached head (address, display name, published files) and its
//! cached tail (`last_seen`, `connected_at`, `online`), never concatenated:
//! the reply is queued as a list of `Arc` slices and written by `writev`
//! (reactor `outq.rs`). A change re-serialises only the host that changed.
//! The list is gathered a time-bounded step per loop turn, with a hostname
//! cursor, so even a million hosts never hold the loop for more than a
//! step (docs/registry-protocol.md, "LIST").

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{HostKey, Registry};

/// How long one gathering step may run in a loop turn.
pub const STEP_BUDGET: Duration = Duration::from_micros(700);
/// Hosts gathered between two looks at the clock.
const STEP_HOSTS: usize = 256;

const PREFIX: &[u8] = b"{\"status\":\"OK\",\"registry\":{";
const SUFFIX: &[u8] = b"}}\n";

/// A finished whole LIST: its pieces and their length together.
#[derive(Clone)]
pub struct FullList {
    pub parts: Arc<Vec<Arc<[u8]>>>,
    pub len: u64,
}

impl FullList {
    /// The reply as one buffer (tests and benches only: the coordinator
    /// never concatenates it).
    pub fn concat(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len as usize);
        for p in self.parts.iter() {
            out.extend_from_slice(p);
        }
        out
    }
}

/// A whole LIST being gathered, across loop turns.
pub struct Gather {
    parts: Vec<Arc<[u8]>>,
    len: u64,
    /// The last hostname gathered: the next step starts after it, so hosts
    /// that come or go meanwhile never make it repeat or skip one that stays.
    cursor: Option<Box<str>>,
    /// The registry's version when gathering began.
    pub version: u64,
    pub started_unix: f64,
}

impl Gather {
    pub fn new(reg: &Registry, now_unix: f64) -> Gather {
        let mut parts = Vec::with_capacity(2 * reg.len() + 2);
        parts.push(Arc::from(PREFIX));
        Gather {
            parts,
            len: PREFIX.len() as u64,
            cursor: None,
            version: reg.version(),
            started_unix: now_unix,
        }
    }

    /// Gathers hosts until `budget` is spent; Some when the list is done.
    pub fn step(&mut self, reg: &mut Registry, budget: Duration) -> Option<FullList> {
        let start = Instant::now();
        loop {
            let keys: Vec<HostKey> = reg
                .order
                .after(self.cursor.as_deref(), STEP_HOSTS, |k| &reg.hosts[k].name);
            if keys.is_empty() {
                return Some(self.finish());
            }
            for &k in &keys {
                let (head, tail) = reg.pieces(k);
                self.len += (head.len() + tail.len()) as u64;
                self.parts.push(head);
                self.parts.push(tail);
            }
            if let Some(&last) = keys.last() {
                self.cursor = Some(reg.hosts[last].name.as_ref().into());
            }
            if start.elapsed() >= budget {
                return None;
            }
        }
    }

    fn finish(&mut self) -> FullList {
        let mut parts = std::mem::take(&mut self.parts);
        // The last host's tail without the comma that would precede another.
        if parts.len() > 1 {
            if let Some(last) = parts.pop() {
                let trimmed = &last[..last.len().saturating_sub(1)];
                self.len -= 1;
                parts.push(Arc::from(trimmed));
            }
        }
        parts.push(Arc::from(SUFFIX));
        self.len += SUFFIX.len() as u64;
        FullList {
            parts: Arc::new(parts),
            len: self.len,
        }
    }
}
