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
use crate::proto::registry::push_u64;

/// How long one gathering step may run in a loop turn.
pub const STEP_BUDGET: Duration = Duration::from_micros(700);
/// Hosts gathered between two looks at the clock.
const STEP_HOSTS: usize = 256;

const PREFIX: &[u8] = b"{\"status\":\"OK\",\"registry\":{";
const SUFFIX: &[u8] = b"}}\n";

/// A LIST reply (a page, or the whole registry) as shared pieces, and their length together.
#[derive(Clone)]
pub struct ListParts {
    pub parts: Arc<Vec<Arc<[u8]>>>,
    pub len: u64,
}

impl ListParts {
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

/// A LIST page as shared pieces (no copy of the hosts' fragments), the
/// paging fields after them.
pub fn page_parts(
    reg: &mut Registry,
    keys: &[HostKey],
    total: u64,
    next: Option<u64>,
) -> ListParts {
    let mut parts: Vec<Arc<[u8]>> = Vec::with_capacity(2 * keys.len() + 2);
    parts.push(Arc::from(PREFIX));
    let mut len = PREFIX.len() as u64;
    for &k in keys {
        let (head, tail) = reg.pieces(k);
        len += (head.len() + tail.len()) as u64;
        parts.push(head);
        parts.push(tail);
    }
    trim_last_tail(&mut parts, &mut len);
    let mut end = Vec::with_capacity(48);
    end.extend_from_slice(b"},\"total\":");
    push_u64(&mut end, total);
    end.extend_from_slice(b",\"next_offset\":");
    match next {
        Some(n) => push_u64(&mut end, n),
        None => end.extend_from_slice(b"null"),
    }
    end.extend_from_slice(b"}\n");
    len += end.len() as u64;
    parts.push(end.into());
    ListParts {
        parts: Arc::new(parts),
        len,
    }
}

/// The last host's tail without the comma that would precede another.
fn trim_last_tail(parts: &mut Vec<Arc<[u8]>>, len: &mut u64) {
    if parts.len() > 1 {
        if let Some(last) = parts.pop() {
            let trimmed = &last[..last.len().saturating_sub(1)];
            *len -= 1;
            parts.push(Arc::from(trimmed));
        }
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
    pub fn step(&mut self, reg: &mut Registry, budget: Duration) -> Option<ListParts> {
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

    fn finish(&mut self) -> ListParts {
        let mut parts = std::mem::take(&mut self.parts);
        trim_last_tail(&mut parts, &mut self.len);
        parts.push(Arc::from(SUFFIX));
        self.len += SUFFIX.len() as u64;
        ListParts {
            parts: Arc::new(parts),
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::registry::FileMeta;

    fn files(i: usize) -> Vec<(String, FileMeta)> {
        vec![(
            format!("f{i}"),
            FileMeta {
                size: i as u64,
                modified: 1.0,
                published_at: None,
                is_published: true,
                sha256: None,
                root: None,
            },
        )]
    }

    #[test]
    fn a_whole_list_gathered_over_steps_while_hosts_change_is_valid_and_ordered() {
        let mut r = Registry::default();
        let mut keys = Vec::new();
        for i in 0..2000 {
            keys.push(r.register(&format!("h{i:05}"), "", "ip", 1, files(i), None, 1.0));
        }
        let mut g = Gather::new(&r, 1.0);
        let mut steps = 0;
        let list = loop {
            // A zero budget: one batch of hosts per step.
            if let Some(l) = g.step(&mut r, Duration::ZERO) {
                break l;
            }
            steps += 1;
            // Between steps: hosts go (ahead of and behind the cursor), come
            // (likewise), and change their files.
            let i = steps * 97 % 2000;
            r.remove(keys[i]);
            r.register(&format!("h{:05}x", i), "", "ip", 1, files(i), None, 2.0);
            r.register(&format!("a{steps:05}"), "", "ip", 1, vec![], None, 2.0);
            r.publish(keys[(i + 1000) % 2000], "late", files(0).remove(0).1);
        };
        assert!(steps >= 7, "2,000 hosts took {steps} steps of 256");
        let bytes = list.concat();
        assert_eq!(bytes.len() as u64, list.len);
        let v: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
        let reg = v["registry"].as_object().unwrap();
        // No host twice (a JSON object would hide it: count the raw keys).
        let raw = String::from_utf8(bytes).unwrap();
        assert_eq!(raw.matches("\"addr\"").count(), reg.len());
        // In hostname order as sent (serde_json's map would sort them anyway).
        let pieces: Vec<&str> = raw.split(":{\"addr\"").collect();
        let names: Vec<&str> = pieces[..pieces.len() - 1]
            .iter()
            .filter_map(|before| before.rsplit('"').nth(1))
            .collect();
        assert_eq!(names.len(), reg.len());
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "hostname order");
        // Every host present from start to end is listed.
        for i in 0..2000 {
            let name = format!("h{i:05}");
            if r.key(&name).is_some() {
                assert!(reg.contains_key(&name), "{name} missing");
            }
        }
    }
}
