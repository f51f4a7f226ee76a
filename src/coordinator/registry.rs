//! The registry: hosts, their files, and an index from file name to hosts.
//! REQUEST is an index lookup, never a scan; LIST answers from a cached,
//! already serialised snapshot rebuilt only after a change. No I/O here.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use reactor::ConnId;
use slab::Slab;

use crate::proto::registry::{
    Discovery, FileMeta, HeartbeatState, HostHead, ListedHost, Listing, Offer, Page, Reply,
};

pub type HostKey = usize;

pub struct Host {
    pub name: Box<str>,
    pub display_name: String,
    pub ip: String,
    pub port: u16,
    pub files: BTreeMap<Box<str>, FileMeta>,
    pub last_seen: f64,
    pub connected_at: f64,
    pub online: bool,
    /// The registry connection bound to this host, if any.
    pub conn: Option<ConnId>,
    pub state: Option<HeartbeatState>,
    /// `"name":{"addr":[..],"display_name":..,"files":{..}` cached until the
    /// host changes, shared with snapshot builds on a worker.
    frag: Option<Arc<[u8]>>,
}

impl Host {
    pub fn published(&self) -> impl Iterator<Item = (&str, &FileMeta)> {
        self.files
            .iter()
            .filter(|(_, m)| m.is_published)
            .map(|(n, m)| (n.as_ref(), m))
    }

    fn fragment(&mut self) -> Arc<[u8]> {
        if self.frag.is_none() {
            let mut out = Vec::with_capacity(128);
            HostHead::encode_fields(
                &mut out,
                &self.name,
                &self.ip,
                self.port,
                &self.display_name,
                self.published(),
            );
            self.frag = Some(out.into());
        }
        self.frag.clone().unwrap_or_else(|| Arc::from(&b""[..]))
    }

    /// `q` is already lower-case (ASCII); names are compared the same way.
    fn matches(&self, q: &str) -> bool {
        contains_ci(&self.name, q)
            || contains_ci(&self.display_name, q)
            || self.published().any(|(n, _)| contains_ci(n, q))
    }
}

/// ASCII-case-insensitive substring test (names are mostly ASCII; other
/// letters match exactly).
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// One host's entry in a LIST reply: its cached head and the fields that
/// change on every message.
pub type SnapshotPart = ListedHost<'static>;

fn listed(h: &mut Host) -> SnapshotPart {
    ListedHost {
        head: HostHead::Encoded(h.fragment()),
        last_seen: h.last_seen,
        connected_at: h.connected_at,
        online: h.online,
    }
}

/// Serialises a full-LIST reply line from its parts. Pure; runs on a worker
/// so that a 100,000-host registry never stalls the loop while it is built.
pub fn build_snapshot(parts: Vec<SnapshotPart>) -> Vec<u8> {
    let size: usize = parts
        .iter()
        .map(|p| match &p.head {
            HostHead::Encoded(b) => b.len() + 80,
            HostHead::Fields { .. } => 256,
        })
        .sum();
    let mut out = Vec::with_capacity(64 + size);
    Reply::List(Listing::Hosts {
        hosts: parts,
        page: None,
    })
    .encode(&mut out);
    out
}

/// A cached full-LIST reply is reused for this long after `last_seen` moves,
/// as long as nothing else changed.
const SNAPSHOT_MAX_AGE_S: f64 = 1.0;

const INDEX_SHARDS: usize = 256;

/// The file-name index in shards, picked by an FNV-1a hash of the name; each
/// shard is a std `HashMap` (SipHash, so names chosen by peers cannot force
/// collisions inside a shard).
struct FileIndex {
    shards: Vec<HashMap<Box<str>, Vec<HostKey>>>,
}

impl Default for FileIndex {
    fn default() -> Self {
        FileIndex {
            shards: (0..INDEX_SHARDS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl FileIndex {
    fn slot(name: &str) -> usize {
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        h as usize % INDEX_SHARDS
    }

    fn shard(&self, name: &str) -> &HashMap<Box<str>, Vec<HostKey>> {
        &self.shards[Self::slot(name)]
    }

    fn shard_mut(&mut self, name: &str) -> &mut HashMap<Box<str>, Vec<HostKey>> {
        &mut self.shards[Self::slot(name)]
    }
}

/// How many distinct recent queries keep their matches.
const MAX_QUERIES: usize = 8;

struct QueryHits {
    query: String,
    keys: Vec<HostKey>,
}

#[derive(Default)]
pub struct Registry {
    /// Boxed so that growing the slab moves pointers, not whole hosts
    /// (a 100k-host slab doubling would copy tens of megabytes in the loop).
    hosts: Slab<Box<Host>>,
    by_name: BTreeMap<Box<str>, HostKey>,
    /// File name → hosts publishing it, split in shards so that growing it
    /// rehashes one small table at a time: a single table of 460,000 names
    /// stalled the loop ~110 ms when it doubled.
    index: FileIndex,
    published: usize,
    /// Host keys in hostname order, kept sorted as hosts come and go, so a
    /// page is a slice.
    order: Vec<HostKey>,
    /// The last full-LIST reply: when it was built and from which version.
    snapshot: Option<(f64, u64, Arc<Vec<u8>>)>,
    /// Bumped by every change a LIST shows (not by `last_seen` alone).
    version: u64,
    /// The hosts matching recent LIST queries, in hostname order. Each host
    /// change updates them in place (a binary search and one insert or
    /// remove), so paging through a query costs O(limit) even while hosts
    /// churn; scanning every host per page took 30 ms at 20,000 hosts.
    queries: Vec<QueryHits>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn published_count(&self) -> usize {
        self.published
    }

    pub fn online_count(&self) -> usize {
        self.hosts.iter().filter(|(_, h)| h.online).count()
    }

    pub fn key(&self, name: &str) -> Option<HostKey> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, key: HostKey) -> Option<&Host> {
        self.hosts.get(key).map(|h| &**h)
    }

    fn changed(&mut self, key: HostKey) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.frag = None;
        }
        self.version += 1;
        let Some(h) = self.hosts.get(key) else { return };
        let hosts = &self.hosts;
        for qh in self.queries.iter_mut() {
            let pos = qh.keys.binary_search_by(|k| hosts[*k].name.cmp(&h.name));
            match (h.matches(&qh.query), pos) {
                (true, Err(at)) => qh.keys.insert(at, key),
                (false, Ok(at)) => {
                    qh.keys.remove(at);
                }
                _ => {}
            }
        }
    }

    fn unindex(&mut self, key: HostKey, name: &str) {
        if let Some(v) = self.index.shard_mut(name).get_mut(name) {
            v.retain(|&k| k != key);
            if v.is_empty() {
                self.index.shard_mut(name).remove(name);
            }
            self.published -= 1;
        }
    }

    fn index_file(&mut self, key: HostKey, name: &str) {
        let v = self.index.shard_mut(name).entry(name.into()).or_default();
        if !v.contains(&key) {
            v.push(key);
            self.published += 1;
        }
    }

    /// Adds or replaces a host with the full state it reports.
    #[allow(clippy::too_many_arguments)]
    pub fn register(
        &mut self,
        name: &str,
        display_name: &str,
        ip: &str,
        port: u16,
        files: Vec<(String, FileMeta)>,
        conn: Option<ConnId>,
        now: f64,
    ) -> HostKey {
        let key = match self.by_name.get(name) {
            Some(&k) => {
                let old: Vec<Box<str>> = self.hosts[k]
                    .files
                    .iter()
                    .filter(|(_, m)| m.is_published)
                    .map(|(n, _)| n.clone())
                    .collect();
                for n in old {
                    self.unindex(k, &n);
                }
                k
            }
            None => {
                let k = self.hosts.insert(Box::new(Host {
                    name: name.into(),
                    display_name: String::new(),
                    ip: String::new(),
                    port: 0,
                    files: BTreeMap::new(),
                    last_seen: now,
                    connected_at: now,
                    online: true,
                    conn: None,
                    state: None,
                    frag: None,
                }));
                self.by_name.insert(name.into(), k);
                let hosts = &self.hosts;
                let at = self
                    .order
                    .binary_search_by(|o| (*hosts[*o].name).cmp(name))
                    .unwrap_or_else(|at| at);
                self.order.insert(at, k);
                k
            }
        };
        let h = &mut self.hosts[key];
        h.display_name = if display_name.is_empty() {
            name.to_string()
        } else {
            display_name.to_string()
        };
        h.ip = ip.to_string();
        h.port = port;
        h.files = files
            .into_iter()
            .map(|(n, m)| (n.into_boxed_str(), m))
            .collect();
        h.last_seen = now;
        h.connected_at = now;
        h.online = true;
        h.conn = conn;
        let published: Vec<Box<str>> = h.published().map(|(n, _)| n.into()).collect();
        for n in published {
            self.index_file(key, &n);
        }
        self.changed(key);
        key
    }

    pub fn publish(&mut self, key: HostKey, fname: &str, meta: FileMeta) {
        let Some(h) = self.hosts.get_mut(key) else {
            return;
        };
        h.files.insert(fname.into(), meta);
        self.index_file(key, fname);
        self.changed(key);
    }

    /// Marks a file unpublished (kept, as the seed does). False if unknown.
    pub fn unpublish(&mut self, key: HostKey, fname: &str) -> bool {
        let Some(h) = self.hosts.get_mut(key) else {
            return false;
        };
        let Some(m) = h.files.get_mut(fname) else {
            return false;
        };
        let was = m.is_published;
        m.is_published = false;
        if was {
            self.unindex(key, fname);
        }
        self.changed(key);
        true
    }

    pub fn touch(&mut self, key: HostKey, now: f64) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.last_seen = now;
        }
    }

    pub fn set_state(&mut self, key: HostKey, state: HeartbeatState) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.state = Some(state);
        }
    }

    /// The bound connection closed: the host stays, offline.
    pub fn set_offline(&mut self, key: HostKey) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.online = false;
            h.conn = None;
            self.changed(key);
        }
    }

    /// Removes a host and its files; returns the connection it was bound to.
    pub fn remove(&mut self, key: HostKey) -> Option<ConnId> {
        if !self.hosts.contains(key) {
            return None;
        }
        // Out of the ordered lists first: their searches read host names.
        let hosts = &self.hosts;
        let name = &hosts[key].name;
        let find = |keys: &[HostKey]| keys.binary_search_by(|k| hosts[*k].name.cmp(name));
        if let Ok(at) = find(&self.order) {
            self.order.remove(at);
        }
        for qh in self.queries.iter_mut() {
            if let Ok(at) = find(&qh.keys) {
                qh.keys.remove(at);
            }
        }
        let h = self.hosts.remove(key);
        for (n, m) in h.files.iter() {
            if m.is_published {
                self.unindex(key, n);
            }
        }
        self.by_name.remove(&h.name);
        self.version += 1;
        h.conn
    }

    /// Removes hosts not seen since `cutoff`; returns their names and connections.
    pub fn sweep(&mut self, cutoff: f64) -> Vec<(Box<str>, Option<ConnId>)> {
        let stale: Vec<HostKey> = self
            .hosts
            .iter()
            .filter(|(_, h)| h.last_seen < cutoff)
            .map(|(k, _)| k)
            .collect();
        stale
            .into_iter()
            .map(|k| {
                let name = self.hosts[k].name.clone();
                (name, self.remove(k))
            })
            .collect()
    }

    pub fn is_online(&self, name: &str) -> bool {
        self.key(name)
            .and_then(|k| self.hosts.get(k))
            .is_some_and(|h| h.online)
    }

    /// Files `key` lists (published or not): what `--max-files-per-host` caps.
    pub fn file_count(&self, key: HostKey) -> usize {
        self.hosts.get(key).map_or(0, |h| h.files.len())
    }

    pub fn has_file(&self, key: HostKey, fname: &str) -> bool {
        self.hosts
            .get(key)
            .is_some_and(|h| h.files.contains_key(fname))
    }

    /// The REQUEST reply: published offers of `fname`, online hosts first;
    /// with `sha256` (lower-case hex) only the hosts offering that content.
    pub fn request_reply(&self, fname: &str, sha256: Option<&str>) -> Reply<'_> {
        let Some(keys) = self.index.shard(fname).get(fname) else {
            return Reply::NotFound;
        };
        let mut hosts: Vec<&Host> = keys
            .iter()
            .filter_map(|&k| self.hosts.get(k).map(|h| &**h))
            .collect();
        hosts.sort_by(|a, b| {
            b.online
                .cmp(&a.online)
                .then(b.last_seen.total_cmp(&a.last_seen))
        });
        let offers: Vec<Offer<'_>> = hosts
            .into_iter()
            .filter_map(|h| {
                let m = h.files.get(fname)?;
                if sha256.is_some() && m.sha256.as_deref() != sha256 {
                    return None;
                }
                Some(Offer {
                    hostname: Cow::Borrowed(&h.name),
                    display_name: Cow::Borrowed(&h.display_name),
                    ip: Cow::Borrowed(&h.ip),
                    port: h.port,
                    size: m.size,
                    modified: m.modified,
                    sha256: m.sha256.as_deref().map(Cow::Borrowed),
                    root: m.root.as_deref().map(Cow::Borrowed),
                    online: h.online,
                })
            })
            .collect();
        if offers.is_empty() {
            // Hosts offer the name, none the content asked for.
            return Reply::NotFound;
        }
        Reply::Found(offers)
    }

    /// The DISCOVER reply, or None for an unknown host.
    pub fn discover_reply(&self, name: &str) -> Option<Reply<'_>> {
        let h = &self.hosts[self.key(name)?];
        Some(Reply::Discover(Discovery {
            files: h
                .published()
                .map(|(n, m)| (Cow::Borrowed(n), Cow::Borrowed(m)))
                .collect(),
            ip: Cow::Borrowed(&h.ip),
            port: h.port,
            online: h.online,
        }))
    }

    fn ordered(&self) -> &[HostKey] {
        &self.order
    }

    /// Changes so far; a snapshot records the count it was built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The cached full-LIST reply, if nothing changed since it was built and
    /// its `last_seen` values are under a second old.
    pub fn fresh_snapshot(&self, now: f64) -> Option<Arc<Vec<u8>>> {
        match &self.snapshot {
            Some((at, version, snap))
                if *version == self.version && now - at < SNAPSHOT_MAX_AGE_S =>
            {
                Some(snap.clone())
            }
            _ => None,
        }
    }

    pub fn store_snapshot(&mut self, built_at: f64, version: u64, snap: Arc<Vec<u8>>) {
        self.snapshot = Some((built_at, version, snap));
    }

    /// What a snapshot build needs, in hostname order: shared fragments and
    /// a few numbers per host. Cheap (no serialising), so it may run in the
    /// loop while [`build_snapshot`] runs on a worker.
    pub fn snapshot_parts(&mut self) -> Vec<SnapshotPart> {
        let mut parts = Vec::with_capacity(self.order.len());
        for &k in &self.order {
            parts.push(listed(&mut self.hosts[k]));
        }
        parts
    }

    /// The whole registry as one reply line, built here and now (tests and
    /// benches; the coordinator builds on a worker).
    pub fn list_full(&mut self, now: f64) -> Arc<Vec<u8>> {
        if let Some(s) = self.fresh_snapshot(now) {
            return s;
        }
        let version = self.version;
        let snap = Arc::new(build_snapshot(self.snapshot_parts()));
        self.store_snapshot(now, version, snap.clone());
        snap
    }

    /// Host keys of one page in hostname order, the total matching, and the
    /// next offset.
    pub fn page(
        &mut self,
        offset: u64,
        limit: u64,
        query: Option<&str>,
    ) -> (Vec<HostKey>, u64, Option<u64>) {
        let offset = offset as usize;
        let limit = limit as usize;
        let (keys, total): (Vec<HostKey>, usize) = match query.filter(|q| !q.is_empty()) {
            None => {
                let order = self.ordered();
                let total = order.len();
                let end = offset.saturating_add(limit).min(total);
                (
                    order
                        .get(offset.min(total)..end)
                        .unwrap_or_default()
                        .to_vec(),
                    total,
                )
            }
            Some(q) => {
                let matching = self.matching(q);
                let total = matching.len();
                let end = offset.saturating_add(limit).min(total);
                (
                    matching
                        .get(offset.min(total)..end)
                        .unwrap_or_default()
                        .to_vec(),
                    total,
                )
            }
        };
        let next = offset + keys.len();
        let next = (next < total).then_some(next as u64);
        (keys, total as u64, next)
    }

    /// Host keys matching `q`, in hostname order (kept for recent queries).
    fn matching(&mut self, q: &str) -> &[HostKey] {
        match self.queries.iter().position(|qh| qh.query == q) {
            Some(0) => {}
            Some(i) => {
                let hit = self.queries.remove(i);
                self.queries.insert(0, hit);
            }
            None => {
                let keys = self
                    .order
                    .iter()
                    .copied()
                    .filter(|&k| self.hosts[k].matches(q))
                    .collect();
                self.queries.truncate(MAX_QUERIES - 1);
                self.queries.insert(
                    0,
                    QueryHits {
                        query: q.to_string(),
                        keys,
                    },
                );
            }
        }
        &self.queries[0].keys
    }

    /// A paged LIST reply.
    pub fn list_page_reply(
        &mut self,
        offset: u64,
        limit: u64,
        query: Option<&str>,
    ) -> Reply<'static> {
        let (keys, total, next_offset) = self.page(offset, limit, query);
        Reply::List(Listing::Hosts {
            hosts: keys
                .into_iter()
                .map(|k| listed(&mut self.hosts[k]))
                .collect(),
            page: Some(Page { total, next_offset }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(size: u64) -> FileMeta {
        FileMeta {
            size,
            modified: 1.0,
            published_at: None,
            is_published: true,
            sha256: None,
            root: None,
        }
    }

    #[test]
    fn index_follows_publish_unpublish_and_removal() {
        let mut r = Registry::default();
        let a = r.register(
            "alice",
            "",
            "1.2.3.4",
            6001,
            vec![("x".into(), meta(1))],
            None,
            1.0,
        );
        let b = r.register("bob", "Bob", "1.2.3.5", 6002, vec![], None, 1.0);
        r.publish(b, "x", meta(1));
        let out = r.request_reply("x", None).line();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["hosts"].as_array().unwrap().len(), 2);
        r.set_offline(a);
        let out = r.request_reply("x", None).line();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["hosts"][0]["hostname"], "bob", "online hosts first");
        assert!(r.unpublish(b, "x"));
        assert!(!r.unpublish(b, "nope"));
        r.remove(a);
        let out = r.request_reply("x", None).line();
        assert!(out.starts_with(b"{\"status\":\"NOTFOUND\""));
        assert_eq!(r.published_count(), 0);
    }

    #[test]
    fn query_pages_stay_right_while_hosts_churn() {
        let mut r = Registry::default();
        let mut keys = Vec::new();
        for i in 0..200u32 {
            let files = vec![(
                format!("{}-{i}", if i % 2 == 0 { "even" } else { "odd" }),
                meta(1),
            )];
            keys.push(r.register(
                &format!("h{:03}", (i * 37) % 200),
                "",
                "ip",
                1,
                files,
                None,
                1.0,
            ));
        }
        let names = |r: &mut Registry, q: &str| -> Vec<String> {
            let (ks, total, _) = r.page(0, 1000, Some(q));
            assert_eq!(ks.len() as u64, total);
            ks.iter()
                .map(|k| r.get(*k).unwrap().name.to_string())
                .collect()
        };
        let brute = |r: &Registry, q: &str| -> Vec<String> {
            let mut v: Vec<String> = (0..r.hosts.capacity())
                .filter_map(|k| r.hosts.get(k))
                .filter(|h| h.matches(q))
                .map(|h| h.name.to_string())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(&mut r, "even"), brute(&r, "even"));
        // Churn: removals, new hosts, publishes and unpublishes.
        for (i, k) in keys.iter().enumerate().step_by(3) {
            r.remove(*k);
            if i % 2 == 0 {
                r.register(
                    &format!("new{i}"),
                    "",
                    "ip",
                    1,
                    vec![(format!("even-new-{i}"), meta(1))],
                    None,
                    2.0,
                );
            }
        }
        for k in keys.iter().skip(1).step_by(3).copied() {
            r.publish(k, "even-late", meta(2));
        }
        for k in keys.iter().skip(2).step_by(6).copied() {
            r.unpublish(k, &format!("even-{}", 0));
        }
        assert_eq!(names(&mut r, "even"), brute(&r, "even"));
        assert_eq!(names(&mut r, "odd"), brute(&r, "odd"));
        let (all, total, _) = r.page(0, 1000, None);
        assert_eq!(total as usize, r.len());
        let mut sorted: Vec<String> = all
            .iter()
            .map(|k| r.get(*k).unwrap().name.to_string())
            .collect();
        let copy = sorted.clone();
        sorted.sort();
        assert_eq!(copy, sorted);
    }

    #[test]
    fn lists_full_and_paged_in_hostname_order() {
        let mut r = Registry::default();
        for i in (0..25).rev() {
            r.register(
                &format!("h{i:02}"),
                "",
                "ip",
                1,
                vec![(format!("f{i}"), meta(i))],
                None,
                1.0,
            );
        }
        let full: serde_json::Value = serde_json::from_slice(&r.list_full(2.0)).unwrap();
        assert_eq!(full["registry"].as_object().unwrap().len(), 25);
        let out = r.list_page_reply(20, 10, None).line();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["total"], 25);
        assert!(v["next_offset"].is_null());
        let names: Vec<&String> = v["registry"].as_object().unwrap().keys().collect();
        assert_eq!(names.len(), 5);
        let out = r.list_page_reply(0, 10, Some("F1")).line();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["total"], 11, "f1 and f10..f19");
    }
}
