//! The registry: hosts, their files, and an index from file name to hosts.
//! REQUEST is an index lookup, never a scan; LIST pages are slices of a
//! hostname order; the whole LIST is gathered from cached per-host pieces
//! (`list.rs`). Records are compact so a million hosts fit (`files.rs`).
//! No I/O here.

mod files;
mod list;
mod order;
pub mod sharded;

use std::borrow::Cow;
use std::sync::Arc;

use reactor::ConnId;
use slab::Slab;

use crate::proto::registry::{
    push_f64, Discovery, FileMeta, HeartbeatState, Hex, HostHead, ListedHost, Listing, Offer, Page,
    Reply,
};
use files::FileIndex;
pub use files::FileRec;
pub use list::{Gather, ListParts, STEP_BUDGET};
use order::OrderedKeys;

pub type HostKey = usize;

/// A host the sweep removed: its name and the connection it was bound to.
pub type Swept = (Arc<str>, Option<ConnId>);

pub struct Host {
    pub name: Arc<str>,
    pub display_name: Box<str>,
    pub ip: Box<str>,
    pub port: u16,
    pub online: bool,
    pub state: Option<HeartbeatState>,
    /// The registry connection bound to this host, if any.
    pub conn: Option<ConnId>,
    /// Sorted by name.
    pub files: Vec<FileRec>,
    pub last_seen: f64,
    pub connected_at: f64,
    /// `"name":{"addr":[..],"display_name":..,"files":{..}` cached until the
    /// host's files or address change.
    head: Option<Arc<[u8]>>,
    /// `,"last_seen":..,"connected_at":..,"online":..},` (with the comma
    /// before the next host; the last host's is trimmed) cached until one
    /// of them changes.
    tail: Option<Arc<[u8]>>,
}

impl Host {
    /// Published files with their metadata, in name order.
    pub fn published(&self) -> impl Iterator<Item = (&str, FileMeta)> + '_ {
        self.files
            .iter()
            .filter(|f| f.is_published)
            .map(|f| (&*f.name, f.meta()))
    }

    fn file(&self, name: &str) -> Option<&FileRec> {
        self.files
            .binary_search_by(|f| (*f.name).cmp(name))
            .ok()
            .map(|i| &self.files[i])
    }

    fn head(&mut self) -> Arc<[u8]> {
        if let Some(h) = &self.head {
            return h.clone();
        }
        let mut out = Vec::with_capacity(96 + 100 * self.files.len());
        HostHead::encode_fields(
            &mut out,
            &self.name,
            &self.ip,
            self.port,
            &self.display_name,
            self.published(),
        );
        let h: Arc<[u8]> = out.into();
        self.head = Some(h.clone());
        h
    }

    fn tail(&mut self) -> Arc<[u8]> {
        if let Some(t) = &self.tail {
            return t.clone();
        }
        let mut out = Vec::with_capacity(80);
        out.extend_from_slice(b",\"last_seen\":");
        push_f64(&mut out, self.last_seen);
        out.extend_from_slice(b",\"connected_at\":");
        push_f64(&mut out, self.connected_at);
        out.extend_from_slice(if self.online {
            b",\"online\":true},"
        } else {
            b",\"online\":false},"
        });
        let t: Arc<[u8]> = out.into();
        self.tail = Some(t.clone());
        t
    }

    /// `q` is already lower-case (ASCII); names are compared the same way.
    fn matches(&self, q: &str) -> bool {
        contains_ci(&self.name, q)
            || contains_ci(&self.display_name, q)
            || self
                .files
                .iter()
                .any(|f| f.is_published && contains_ci(&f.name, q))
    }
}

/// ASCII-case-insensitive substring test (names are mostly ASCII; other
/// letters match exactly).
pub fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A cached whole LIST is reused for this long after `last_seen` moves, as
/// long as nothing else changed.
const LIST_MAX_AGE_S: f64 = 1.0;

/// How many distinct recent queries keep their matches.
const MAX_QUERIES: usize = 8;

struct QueryHits {
    query: String,
    keys: OrderedKeys,
}

/// A query's matches being collected a step per loop turn (a scan of every
/// host took tens of ms at a million hosts): the hosts up to `cursor` are
/// done and kept up to date as they change; the rest are still to visit.
struct QueryBuild {
    hits: QueryHits,
    cursor: Option<Box<str>>,
}

#[derive(Default)]
pub struct Registry {
    /// Boxed so that growing the slab moves pointers, not whole hosts
    /// (a 100k-host slab doubling would copy tens of megabytes in the loop).
    hosts: Slab<Box<Host>>,
    /// Hostname → key; the name's allocation is the host's own.
    by_name: sharded::ShardedMap<Arc<str>, HostKey>,
    index: FileIndex,
    online: usize,
    /// Host keys in hostname order, so a page is a slice.
    order: OrderedKeys,
    /// The last whole LIST: when it was gathered and from which version.
    full: Option<(f64, u64, ListParts)>,
    /// Bumped by every change a LIST shows (not by `last_seen` alone).
    version: u64,
    /// The hosts matching recent LIST queries, in hostname order. Each host
    /// change updates them in place, so paging through a query costs
    /// O(limit) even while hosts churn; scanning every host per page took
    /// 30 ms at 20,000 hosts.
    queries: Vec<QueryHits>,
    /// Where the incremental inactivity sweep goes on (a slab index).
    sweep_at: usize,
    /// A query whose matches are being collected (one at a time).
    building: Option<QueryBuild>,
}

impl Registry {
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    pub fn published_count(&self) -> usize {
        self.index.pairs()
    }

    pub fn online_count(&self) -> usize {
        self.online
    }

    pub fn key(&self, name: &str) -> Option<HostKey> {
        self.by_name.get(name).copied()
    }

    pub fn get(&self, key: HostKey) -> Option<&Host> {
        self.hosts.get(key).map(|h| &**h)
    }

    /// Something a LIST shows about `key` changed (not `last_seen` alone).
    fn changed(&mut self, key: HostKey) {
        self.version += 1;
        let Some(h) = self.hosts.get_mut(key) else {
            return;
        };
        h.head = None;
        h.tail = None;
        let h = &self.hosts[key];
        let hosts = &self.hosts;
        let visited = self
            .building
            .as_mut()
            .filter(|b| b.cursor.as_deref().is_some_and(|c| *h.name <= *c))
            .map(|b| &mut b.hits);
        for qh in self.queries.iter_mut().chain(visited) {
            if h.matches(&qh.query) {
                qh.keys.insert(key, &h.name, |k| &hosts[k].name);
            } else {
                qh.keys.remove(key, &h.name, |k| &hosts[k].name);
            }
        }
    }

    fn set_online(&mut self, key: HostKey, online: bool) {
        if let Some(h) = self.hosts.get_mut(key) {
            if h.online != online {
                h.online = online;
                if online {
                    self.online += 1;
                } else {
                    self.online -= 1;
                }
            }
        }
    }

    /// The shared name for a file: the index's copy when any host
    /// publishes that name, else a new one.
    fn intern(&self, name: &str) -> Arc<str> {
        self.index.interned(name).unwrap_or_else(|| name.into())
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
                let old = std::mem::take(&mut self.hosts[k].files);
                for f in old.iter().filter(|f| f.is_published) {
                    self.index.remove(&f.name, k as u32);
                }
                k
            }
            None => {
                let name: Arc<str> = name.into();
                let k = self.hosts.insert(Box::new(Host {
                    name: name.clone(),
                    display_name: "".into(),
                    ip: "".into(),
                    port: 0,
                    online: false,
                    state: None,
                    conn: None,
                    files: Vec::new(),
                    last_seen: now,
                    connected_at: now,
                    head: None,
                    tail: None,
                }));
                self.by_name.insert(name.clone(), k);
                let hosts = &self.hosts;
                self.order.insert(k, &name, |o| &hosts[o].name);
                k
            }
        };
        let mut recs: Vec<FileRec> = files
            .into_iter()
            .map(|(n, m)| FileRec::new(self.intern(&n), m))
            .collect();
        recs.sort_by(|a, b| a.name.cmp(&b.name));
        recs.dedup_by(|later, first| later.name == first.name);
        recs.shrink_to_fit();
        for f in recs.iter().filter(|f| f.is_published) {
            self.index.add(&f.name, key as u32);
        }
        self.set_online(key, true);
        let h = &mut self.hosts[key];
        h.display_name = if display_name.is_empty() {
            name
        } else {
            display_name
        }
        .into();
        h.ip = ip.into();
        h.port = port;
        h.files = recs;
        h.last_seen = now;
        h.connected_at = now;
        h.conn = conn;
        self.changed(key);
        key
    }

    pub fn publish(&mut self, key: HostKey, fname: &str, meta: FileMeta) {
        if !self.hosts.contains(key) {
            return;
        }
        let rec = FileRec::new(self.intern(fname), meta);
        let publish = rec.is_published;
        let h = &mut self.hosts[key];
        let name = rec.name.clone();
        let was_published = match h.files.binary_search_by(|f| (*f.name).cmp(fname)) {
            Ok(i) => std::mem::replace(&mut h.files[i], rec).is_published,
            Err(i) => {
                h.files.insert(i, rec);
                false
            }
        };
        if publish {
            self.index.add(&name, key as u32);
        } else if was_published {
            self.index.remove(&name, key as u32);
        }
        self.changed(key);
    }

    /// Marks a file unpublished (kept, as the seed does). False if unknown.
    pub fn unpublish(&mut self, key: HostKey, fname: &str) -> bool {
        let Some(h) = self.hosts.get_mut(key) else {
            return false;
        };
        let Ok(i) = h.files.binary_search_by(|f| (*f.name).cmp(fname)) else {
            return false;
        };
        let was = std::mem::replace(&mut h.files[i].is_published, false);
        if was {
            self.index.remove(fname, key as u32);
        }
        self.changed(key);
        true
    }

    pub fn touch(&mut self, key: HostKey, now: f64) {
        if let Some(h) = self.hosts.get_mut(key) {
            if h.last_seen != now {
                h.last_seen = now;
                h.tail = None;
            }
        }
    }

    pub fn set_state(&mut self, key: HostKey, state: HeartbeatState) {
        if let Some(h) = self.hosts.get_mut(key) {
            h.state = Some(state);
        }
    }

    /// The bound connection closed: the host stays, offline.
    pub fn set_offline(&mut self, key: HostKey) {
        if self.hosts.contains(key) {
            self.set_online(key, false);
            self.hosts[key].conn = None;
            self.changed(key);
        }
    }

    /// Removes a host and its files; returns the connection it was bound to.
    pub fn remove(&mut self, key: HostKey) -> Option<ConnId> {
        if !self.hosts.contains(key) {
            return None;
        }
        self.set_online(key, false);
        // Out of the ordered lists first: their searches read host names.
        let hosts = &self.hosts;
        let name = hosts[key].name.clone();
        self.order.remove(key, &name, |k| &hosts[k].name);
        let building = self.building.as_mut().map(|b| &mut b.hits);
        for qh in self.queries.iter_mut().chain(building) {
            qh.keys.remove(key, &name, |k| &hosts[k].name);
        }
        let h = self.hosts.remove(key);
        for f in h.files.iter().filter(|f| f.is_published) {
            self.index.remove(&f.name, key as u32);
        }
        self.by_name.remove(&h.name);
        self.version += 1;
        h.conn
    }

    /// Looks at up to `slots` slab slots for hosts not seen since `cutoff`
    /// and removes them; returns their names and connections, and whether
    /// the pass over every slot is complete. A host whose connection is open
    /// may have been heard without a message: `heard(conn)` says when its
    /// kernel last answered (TCP keepalive, docs/registry-protocol.md); a
    /// host heard since the cutoff is seen then, and stays.
    pub fn sweep_step(
        &mut self,
        cutoff: f64,
        slots: usize,
        mut heard: impl FnMut(ConnId) -> Option<f64>,
    ) -> (Vec<Swept>, bool) {
        let cap = self.hosts.capacity();
        let end = self.sweep_at.saturating_add(slots).min(cap);
        let mut stale = Vec::new();
        for k in self.sweep_at..end {
            let Some(h) = self.hosts.get_mut(k) else {
                continue;
            };
            if h.last_seen >= cutoff {
                continue;
            }
            match h.conn.filter(|_| h.online).and_then(&mut heard) {
                Some(at) if at >= cutoff => {
                    h.last_seen = at;
                    h.tail = None;
                }
                _ => stale.push(k),
            }
        }
        let done = end >= cap;
        self.sweep_at = if done { 0 } else { end };
        let removed = stale
            .into_iter()
            .map(|k| {
                let name = self.hosts[k].name.clone();
                (name, self.remove(k))
            })
            .collect();
        (removed, done)
    }

    /// Removes every host not seen since `cutoff` at once (tests).
    pub fn sweep(&mut self, cutoff: f64) -> Vec<Swept> {
        self.sweep_at = 0;
        self.sweep_step(cutoff, usize::MAX, |_| None).0
    }

    /// Files `key` lists (published or not): what `--max-files-per-host` caps.
    pub fn file_count(&self, key: HostKey) -> usize {
        self.hosts.get(key).map_or(0, |h| h.files.len())
    }

    pub fn has_file(&self, key: HostKey, fname: &str) -> bool {
        self.hosts.get(key).is_some_and(|h| h.file(fname).is_some())
    }

    /// The REQUEST reply: published offers of `fname`, online hosts first;
    /// with `sha256` (lower-case hex) only the hosts offering that content.
    pub fn request_reply(&self, fname: &str, sha256: Option<&str>) -> Reply<'_> {
        let Some(holders) = self.index.get(fname) else {
            return Reply::NotFound;
        };
        let holds = |k: u32| {
            let h = &**self.hosts.get(k as usize)?;
            let f = h.file(fname)?;
            if sha256.is_some_and(|s| !f.has_sha256(s)) {
                return None;
            }
            Some((h, f))
        };
        if let [k] = holders.keys() {
            // Most names have one holder: no list to sort, one allocation.
            return match holds(*k) {
                Some((h, f)) => Reply::Found(vec![offer(h, f)]),
                None => Reply::NotFound,
            };
        }
        let mut hosts: Vec<(&Host, &FileRec)> =
            holders.keys().iter().filter_map(|&k| holds(k)).collect();
        if hosts.is_empty() {
            // Hosts offer the name, none the content asked for.
            return Reply::NotFound;
        }
        hosts.sort_by(|(a, _), (b, _)| {
            b.online
                .cmp(&a.online)
                .then(b.last_seen.total_cmp(&a.last_seen))
        });
        Reply::Found(hosts.into_iter().map(|(h, f)| offer(h, f)).collect())
    }

    /// The DISCOVER reply, or None for an unknown host.
    pub fn discover_reply(&self, name: &str) -> Option<Reply<'_>> {
        let h = &self.hosts[self.key(name)?];
        Some(Reply::Discover(Discovery {
            files: h
                .published()
                .map(|(n, m)| (Cow::Borrowed(n), Cow::Owned(m)))
                .collect(),
            ip: Cow::Borrowed(&h.ip),
            port: h.port,
            online: h.online,
        }))
    }

    /// Changes so far; a whole LIST records the count it was gathered from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The cached whole LIST, if nothing changed since it was gathered and
    /// its `last_seen` values are under a second old.
    pub fn fresh_list(&self, now: f64) -> Option<ListParts> {
        match &self.full {
            Some((at, version, l)) if *version == self.version && now - at < LIST_MAX_AGE_S => {
                Some(l.clone())
            }
            _ => None,
        }
    }

    pub fn store_list(&mut self, gathered_at: f64, version: u64, list: ListParts) {
        self.full = Some((gathered_at, version, list));
    }

    /// Host `k`'s two LIST pieces.
    fn pieces(&mut self, k: HostKey) -> (Arc<[u8]>, Arc<[u8]>) {
        let h = &mut self.hosts[k];
        (h.head(), h.tail())
    }

    /// The whole registry at once, gathered here and now (tests and benches;
    /// the coordinator gathers a step per loop turn).
    pub fn list_full(&mut self, now: f64) -> Vec<u8> {
        if let Some(l) = self.fresh_list(now) {
            return l.concat();
        }
        let mut g = Gather::new(self, now);
        let l = loop {
            if let Some(l) = g.step(self, std::time::Duration::MAX) {
                break l;
            }
        };
        self.store_list(now, g.version, l.clone());
        l.concat()
    }

    /// Host keys of one page in hostname order, the total matching, and the
    /// next offset.
    pub fn page(
        &mut self,
        offset: u64,
        limit: u64,
        query: Option<&str>,
    ) -> (Vec<HostKey>, u64, Option<u64>) {
        let offset = offset.min(usize::MAX as u64) as usize;
        let limit = limit.min(usize::MAX as u64) as usize;
        let keys = match query.filter(|q| !q.is_empty()) {
            None => &self.order,
            Some(q) => self.matching(q),
        };
        let total = keys.len();
        let page = keys.slice(offset, limit);
        let next = offset.saturating_add(page.len());
        let next = (next < total).then_some(next as u64);
        (page, total as u64, next)
    }

    /// Whether `q`'s matches are at hand (no query, or a recent one).
    pub fn query_ready(&self, q: Option<&str>) -> bool {
        match q.filter(|q| !q.is_empty()) {
            None => true,
            Some(q) => self.queries.iter().any(|qh| qh.query == q),
        }
    }

    /// The query being collected, if any.
    pub fn query_building(&self) -> Option<String> {
        self.building.as_ref().map(|b| b.hits.query.clone())
    }

    /// Collects `q`'s matches for about `budget`; true once they are at
    /// hand. While another query is being collected, `q` waits (false).
    pub fn query_step(&mut self, q: &str, budget: std::time::Duration) -> bool {
        if self.query_ready(Some(q)) {
            return true;
        }
        let b = self.building.get_or_insert_with(|| QueryBuild {
            hits: QueryHits {
                query: q.to_string(),
                keys: OrderedKeys::default(),
            },
            cursor: None,
        });
        if b.hits.query != q {
            return false;
        }
        let start = std::time::Instant::now();
        loop {
            let hosts = &self.hosts;
            let keys = self
                .order
                .after(b.cursor.as_deref(), 256, |k| &hosts[k].name);
            let Some(&last) = keys.last() else {
                break;
            };
            for k in keys {
                if hosts[k].matches(q) {
                    b.hits.keys.insert(k, &hosts[k].name, |o| &hosts[o].name);
                }
            }
            b.cursor = Some(hosts[last].name.as_ref().into());
            if start.elapsed() >= budget {
                return false;
            }
        }
        if let Some(b) = self.building.take() {
            self.queries.truncate(MAX_QUERIES - 1);
            self.queries.insert(0, b.hits);
        }
        true
    }

    /// Host keys matching `q`, in hostname order (kept for recent queries).
    /// An uncached query is collected here at once (the admin API; registry
    /// connections collect it in steps first, [`Registry::query_step`]).
    fn matching(&mut self, q: &str) -> &OrderedKeys {
        match self.queries.iter().position(|qh| qh.query == q) {
            Some(0) => {}
            Some(i) => {
                let hit = self.queries.remove(i);
                self.queries.insert(0, hit);
            }
            None => {
                let mut keys = OrderedKeys::default();
                let hosts = &self.hosts;
                for k in self.order.iter().filter(|&k| hosts[k].matches(q)) {
                    keys.insert(k, &hosts[k].name, |o| &hosts[o].name);
                }
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

    /// A paged LIST reply as shared pieces: the same bytes as
    /// [`Registry::list_page_reply`], with no host's fragment copied.
    pub fn list_page_parts(&mut self, offset: u64, limit: u64, query: Option<&str>) -> ListParts {
        let (keys, total, next_offset) = self.page(offset, limit, query);
        list::page_parts(self, &keys, total, next_offset)
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
                .map(|k| {
                    let h = &mut self.hosts[k];
                    ListedHost {
                        head: HostHead::Encoded(h.head()),
                        last_seen: h.last_seen,
                        connected_at: h.connected_at,
                        online: h.online,
                    }
                })
                .collect(),
            page: Some(Page { total, next_offset }),
        })
    }
}

/// What a REQUEST reply says of `f` on `h`.
fn offer<'a>(h: &'a Host, f: &FileRec) -> Offer<'a> {
    Offer {
        hostname: Cow::Borrowed(&h.name),
        display_name: Cow::Borrowed(&h.display_name),
        ip: Cow::Borrowed(&h.ip),
        port: h.port,
        size: f.size,
        modified: f.modified,
        sha256: f.sha256_bytes().map(Hex::Digest),
        root: f.root_bytes().map(Hex::Digest),
        online: h.online,
    }
}

#[cfg(test)]
mod tests;
