//! Reading the registry's answers about the network (LIST pages, REQUEST
//! hosts) into what the client API shows: an index of network files grouped
//! by content (searched and paged locally, cached for a few seconds and
//! shared by all users of the node), duplicate candidates for a publish.
//! Pure: no I/O; `routes` sends the LIST requests.

use std::cell::RefCell;
use std::collections::{btree_map, BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::node::OpId;
use crate::proto::registry::{FileMeta, HostHead, Listing, Reply};

/// Two modification times this close are "the same" for duplicate detection.
pub const SAME_MTIME_S: f64 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub struct NetFile {
    pub name: String,
    pub size: u64,
    pub modified: f64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetHost {
    pub hostname: String,
    pub display_name: String,
    pub ip: String,
    pub port: u16,
    pub online: bool,
    pub files: Vec<NetFile>,
    /// From a REQUEST answer: the root of the offered file's piece digests
    /// (docs/peer-protocol.md, `PIECES`), when the host published one.
    pub root: Option<String>,
}

fn file_from(name: String, m: FileMeta) -> Option<NetFile> {
    m.is_published.then_some(NetFile {
        name,
        size: m.size,
        modified: m.modified,
        sha256: m.sha256,
    })
}

/// One LIST reply: its hosts and the next offset (None at the end or unpaged).
pub fn listed_hosts(v: Reply<'static>) -> Result<(Vec<NetHost>, Option<u64>), String> {
    let (listed, page) = match v {
        Reply::List(Listing::Hosts { hosts, page }) => (hosts, page),
        Reply::Error(reason) => return Err(format!("the coordinator answered: {reason}")),
        other => return Err(format!("a {} answer, not a LIST page", other.status())),
    };
    let mut hosts = Vec::with_capacity(listed.len());
    for h in listed {
        // Decoded replies always carry the fields; an encoded head exists
        // only on the coordinator's side.
        let HostHead::Fields {
            hostname,
            ip,
            port,
            display_name,
            files,
        } = h.head
        else {
            continue;
        };
        hosts.push(NetHost {
            hostname: hostname.into_owned(),
            display_name: display_name.into_owned(),
            ip: ip.into_owned(),
            port,
            online: h.online,
            files: files
                .into_iter()
                .filter_map(|(n, m)| file_from(n, m))
                .collect(),
            root: None,
        });
    }
    Ok((hosts, page.and_then(|p| p.next_offset)))
}

/// A REQUEST reply's hosts as (host, its file); NOTFOUND is an empty list.
pub fn found_hosts(v: &Reply<'_>, fname: &str) -> Vec<NetHost> {
    let Reply::Found(offers) = v else {
        return Vec::new();
    };
    offers
        .iter()
        .map(|o| NetHost {
            hostname: o.hostname.to_string(),
            display_name: o.display_name.to_string(),
            ip: o.ip.to_string(),
            port: o.port,
            online: o.online,
            files: vec![NetFile {
                name: fname.to_owned(),
                size: o.size,
                modified: o.modified,
                sha256: o.sha256.as_ref().map(|h| h.to_text()),
            }],
            root: o.root.as_ref().map(|h| h.to_text()),
        })
        .collect()
}

/// How long one walk of the registry's LIST pages is reused, by every user
/// of this node on that registry. A walk is one LIST round trip per 1000
/// hosts (100 on a registry of 100,000 hosts, each a page of up to a few
/// MiB to parse), so it is the dearest thing the client API does; 3 s
/// makes a UI polling network-files, several tabs or users, and a batch of
/// publishes share one walk, bounding what one node asks of the coordinator
/// to about one walk every 3 s. A publish elsewhere shows up within those
/// 3 s, about one UI refresh, which a person does not notice. The duplicate
/// check before a publish may miss a same-content file published elsewhere
/// under another name in the last 3 s (it is advisory; same-name files are
/// still found by a fresh REQUEST). This node's own publishes and
/// unpublishes are applied to the index at once, so they never look stale.
pub const INDEX_TTL: Duration = Duration::from_secs(3);

type GroupKey = (String, String);

struct HostInfo {
    hostname: String,
    display_name: String,
    ip: String,
    port: u16,
    online: bool,
    hostname_lc: String,
    display_lc: String,
    /// The groups this host has an entry in.
    groups: Vec<GroupKey>,
}

struct Entry {
    host: usize,
    modified: f64,
}

/// One (name, content): the hosts offering it.
struct Group {
    size: u64,
    sha256: Option<String>,
    name_lc: String,
    entries: Vec<Entry>,
}

/// Every published file on the network, one group per (name, content),
/// built from one walk of LIST pages. Search and paging happen here, so a
/// cached index answers any query.
#[derive(Default)]
pub struct Index {
    hosts: Vec<HostInfo>,
    by_name: HashMap<String, usize>,
    groups: BTreeMap<GroupKey, Group>,
    /// Groups by size: the duplicate check looks only there (the same
    /// content has the same size).
    by_size: HashMap<u64, Vec<GroupKey>>,
    /// The groups matching the last search, so paging through it or
    /// polling it does not filter the whole network again.
    last_search: RefCell<Option<(String, Vec<GroupKey>)>>,
}

fn content_key(f: &NetFile) -> String {
    // Without a hash, content is told apart by size.
    f.sha256
        .clone()
        .unwrap_or_else(|| format!("size:{}", f.size))
}

impl Index {
    pub fn build(hosts: Vec<NetHost>) -> Index {
        let mut idx = Index::default();
        idx.add_page(hosts);
        idx
    }

    /// The hosts of one LIST page.
    pub fn add_page(&mut self, hosts: Vec<NetHost>) {
        for h in hosts {
            self.upsert(h);
        }
    }

    pub fn host_count(&self) -> usize {
        self.hosts.len()
    }

    /// Adds a host or replaces what is known of it (registry changes between
    /// pages may show one host twice).
    fn upsert(&mut self, h: NetHost) {
        let id = match self.by_name.get(&h.hostname) {
            Some(&id) => id,
            None => {
                self.hosts.push(HostInfo {
                    hostname: h.hostname.clone(),
                    display_name: String::new(),
                    ip: String::new(),
                    port: 0,
                    online: true,
                    hostname_lc: h.hostname.to_lowercase(),
                    display_lc: String::new(),
                    groups: Vec::new(),
                });
                self.by_name
                    .insert(h.hostname.clone(), self.hosts.len() - 1);
                self.hosts.len() - 1
            }
        };
        let info = &mut self.hosts[id];
        info.display_lc = h.display_name.to_lowercase();
        info.display_name = h.display_name;
        info.ip = h.ip;
        info.port = h.port;
        info.online = h.online;
        self.set_files(id, &h.files);
    }

    /// Takes the host's entries out, all of them or those named `only`.
    fn remove_entries(&mut self, id: usize, only: Option<&str>) {
        let keys = std::mem::take(&mut self.hosts[id].groups);
        let (gone, kept): (Vec<GroupKey>, Vec<GroupKey>) = keys
            .into_iter()
            .partition(|k| only.is_none_or(|n| k.0 == n));
        self.hosts[id].groups = kept;
        for key in gone {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            g.entries.retain(|e| e.host != id);
            if !g.entries.is_empty() {
                continue;
            }
            let size = g.size;
            self.groups.remove(&key);
            if let Some(same) = self.by_size.get_mut(&size) {
                same.retain(|k| *k != key);
                if same.is_empty() {
                    self.by_size.remove(&size);
                }
            }
        }
        self.last_search.get_mut().take();
    }

    /// The host has no entry named `f.name` (callers remove it first).
    fn add_file(&mut self, id: usize, f: &NetFile) {
        let key = (f.name.clone(), content_key(f));
        let g = match self.groups.entry(key.clone()) {
            btree_map::Entry::Occupied(o) => o.into_mut(),
            btree_map::Entry::Vacant(v) => {
                self.by_size.entry(f.size).or_default().push(key.clone());
                v.insert(Group {
                    size: f.size,
                    sha256: f.sha256.clone(),
                    name_lc: f.name.to_lowercase(),
                    entries: Vec::new(),
                })
            }
        };
        g.entries.push(Entry {
            host: id,
            modified: f.modified,
        });
        self.hosts[id].groups.push(key);
        self.last_search.get_mut().take();
    }

    fn set_files(&mut self, id: usize, files: &[NetFile]) {
        self.remove_entries(id, None);
        for f in files {
            self.add_file(id, f);
        }
    }

    /// Replaces the published files of `hostname` (this node's own change).
    /// False when the host is not in the index: it must be walked again.
    pub fn set_host_files(&mut self, hostname: &str, files: &[NetFile]) -> bool {
        match self.by_name.get(hostname) {
            Some(&id) => {
                self.set_files(id, files);
                true
            }
            None => files.is_empty(),
        }
    }

    /// One file of `hostname` is now published as `file`, or not at all.
    pub fn set_host_file(&mut self, hostname: &str, name: &str, file: Option<&NetFile>) -> bool {
        let Some(&id) = self.by_name.get(hostname) else {
            return file.is_none();
        };
        self.remove_entries(id, Some(name));
        if let Some(f) = file {
            if f.name != name {
                self.remove_entries(id, Some(&f.name));
            }
            self.add_file(id, f);
        }
        true
    }

    /// Entries of `g` that match `q` (lower case): all when the name
    /// matches, else those whose host or display name matches.
    fn matching<'a>(&'a self, g: &'a Group, q: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let all = q.is_empty() || g.name_lc.contains(q);
        g.entries.iter().filter(move |e| {
            let h = &self.hosts[e.host];
            all || h.hostname_lc.contains(q) || h.display_lc.contains(q)
        })
    }

    /// One page of network files, sorted by name, and how many match in
    /// all; `q` keeps files whose name, host name or display name contains
    /// it (any case), as the registry's LIST query does.
    pub fn page(&self, q: &str, offset: usize, limit: usize) -> (Vec<Value>, usize) {
        if q.is_empty() {
            let out = self
                .groups
                .iter()
                .skip(offset)
                .take(limit)
                .map(|((name, _), g)| self.group_json(name, g, ""))
                .collect();
            return (out, self.groups.len());
        }
        let q = q.to_lowercase();
        let mut cache = self.last_search.borrow_mut();
        if cache.as_ref().is_none_or(|(last, _)| *last != q) {
            *cache = Some((q.clone(), self.search(&q)));
        }
        let hits: &[GroupKey] = cache.as_ref().map(|(_, h)| h.as_slice()).unwrap_or(&[]);
        let out = hits
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|k| self.groups.get(k).map(|g| self.group_json(&k.0, g, &q)))
            .collect();
        (out, hits.len())
    }

    /// Keys of the groups with an entry matching `q` (lower case), in order.
    fn search(&self, q: &str) -> Vec<GroupKey> {
        let host_hit: Vec<bool> = self
            .hosts
            .iter()
            .map(|h| h.hostname_lc.contains(q) || h.display_lc.contains(q))
            .collect();
        let mut hits = Vec::new();
        // Groups of one name are adjacent: its match is decided once.
        let mut last: Option<(&str, bool)> = None;
        for (key, g) in &self.groups {
            let name_hit = match last {
                Some((name, hit)) if name == key.0 => hit,
                _ => {
                    let hit = g.name_lc.contains(q);
                    last = Some((&key.0, hit));
                    hit
                }
            };
            if name_hit || g.entries.iter().any(|e| host_hit[e.host]) {
                hits.push(key.clone());
            }
        }
        hits
    }

    fn group_json(&self, name: &str, g: &Group, q: &str) -> Value {
        let mut modified = f64::MIN;
        let mut hosts: Vec<(bool, Value)> = Vec::new();
        for e in self.matching(g, q) {
            let h = &self.hosts[e.host];
            modified = modified.max(e.modified);
            hosts.push((
                h.online,
                json!({
                    "hostname": h.hostname,
                    "display_name": h.display_name,
                    "ip": h.ip,
                    "port": h.port,
                    "online": h.online,
                    "modified": e.modified,
                }),
            ));
        }
        hosts.sort_by_key(|(online, _)| !online);
        json!({
            "name": name,
            "size": g.size,
            "modified": modified,
            "sha256": g.sha256,
            "hosts": hosts.into_iter().map(|(_, v)| v).collect::<Vec<_>>(),
        })
    }
}

/// The file about to be published, as the duplicate check sees it.
pub struct Mine<'a> {
    pub hostname: &'a str,
    pub size: u64,
    pub modified: f64,
    pub sha256: Option<&'a str>,
}

impl Mine<'_> {
    fn why_same(&self, size: u64, modified: f64, sha256: Option<&str>) -> Option<&'static str> {
        if self.sha256.is_some() && sha256 == self.sha256 {
            Some("same content")
        } else if size == self.size && (modified - self.modified).abs() <= SAME_MTIME_S {
            Some("same size and modified time")
        } else {
            None
        }
    }
}

/// Files on other hosts that duplicate ours: the same SHA-256, or the same
/// size with a modification time within 2 s. Each (host, file) once.
#[derive(Default)]
pub struct Duplicates {
    seen: HashSet<(String, String)>,
    pub found: Vec<Value>,
}

impl Duplicates {
    fn push(&mut self, host: (&str, &str), f: (&str, u64, f64, Option<&str>), reason: &str) {
        if !self.seen.insert((host.0.to_owned(), f.0.to_owned())) {
            return;
        }
        self.found.push(json!({
            "hostname": host.0,
            "display_name": host.1,
            "name": f.0,
            "size": f.1,
            "modified": f.2,
            "sha256": f.3,
            "reason": reason,
        }));
    }

    /// From hosts as REQUEST or LIST answered them.
    pub fn add_hosts(&mut self, mine: &Mine, hosts: &[NetHost]) {
        for h in hosts.iter().filter(|h| h.hostname != mine.hostname) {
            for f in &h.files {
                if let Some(why) = mine.why_same(f.size, f.modified, f.sha256.as_deref()) {
                    let file = (f.name.as_str(), f.size, f.modified, f.sha256.as_deref());
                    self.push((&h.hostname, &h.display_name), file, why);
                }
            }
        }
    }

    /// Only groups of the same size can match: the same content has it,
    /// and so does "same size and modified time".
    pub fn add_index(&mut self, mine: &Mine, idx: &Index) {
        let keys = idx
            .by_size
            .get(&mine.size)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for key in keys {
            let Some(g) = idx.groups.get(key) else {
                continue;
            };
            let name = &key.0;
            for e in &g.entries {
                let h = &idx.hosts[e.host];
                if h.hostname == mine.hostname {
                    continue;
                }
                if let Some(why) = mine.why_same(g.size, e.modified, g.sha256.as_deref()) {
                    let file = (name.as_str(), g.size, e.modified, g.sha256.as_deref());
                    self.push((&h.hostname, &h.display_name), file, why);
                }
            }
        }
    }
}

/// A walk of the LIST pages under way; requests that need it wait on it.
pub struct Walk {
    /// The user whose registry connection carries the LIST requests.
    pub driver: String,
    pub started: Instant,
    pub pages: u32,
    /// Built page by page, so no one loop turn pays for the whole registry.
    pub index: Index,
    pub waiters: Vec<OpId>,
    /// This node's own changes made while the pages came in, in order.
    pub own: Vec<OwnChange>,
}

/// A change this node made to what one of its users publishes.
#[derive(Debug, Clone)]
pub enum OwnChange {
    /// All the host's files (after REGISTER or UNREGISTER).
    Host { host: String, files: Vec<NetFile> },
    /// One file published (`Some`) or not (`None`).
    File {
        host: String,
        name: String,
        file: Option<NetFile>,
    },
}

impl OwnChange {
    fn apply(&self, idx: &mut Index) -> bool {
        match self {
            OwnChange::Host { host, files } => idx.set_host_files(host, files),
            OwnChange::File { host, name, file } => idx.set_host_file(host, name, file.as_ref()),
        }
    }
}

impl Walk {
    pub fn new(driver: &str, started: Instant, first: OpId) -> Walk {
        Walk {
            driver: driver.to_owned(),
            started,
            pages: 1,
            index: Index::default(),
            waiters: vec![first],
            own: Vec::new(),
        }
    }

    /// The index the pages make, with this node's later changes on top;
    /// `false`: one of those could not be applied, so it must not be cached.
    pub fn finish(self) -> (Index, Vec<OpId>, bool) {
        let mut idx = self.index;
        let mut exact = true;
        for change in &self.own {
            exact &= change.apply(&mut idx);
        }
        (idx, self.waiters, exact)
    }
}

/// The shared network index per registry address, and the walks that fill it.
#[derive(Default)]
pub struct NetCache {
    indexes: HashMap<SocketAddr, (Instant, Rc<Index>)>,
    pub walks: HashMap<SocketAddr, Walk>,
}

impl NetCache {
    /// The index of `registry` if its walk started less than [`INDEX_TTL`] ago.
    pub fn fresh(&self, registry: SocketAddr, now: Instant) -> Option<Rc<Index>> {
        self.indexes
            .get(&registry)
            .filter(|(at, _)| now.saturating_duration_since(*at) < INDEX_TTL)
            .map(|(_, idx)| idx.clone())
    }

    /// A finished walk; its age counts from when it started.
    pub fn store(&mut self, registry: SocketAddr, started: Instant, idx: Index) -> Rc<Index> {
        let idx = Rc::new(idx);
        self.indexes.insert(registry, (started, idx.clone()));
        idx
    }

    /// This node told `registry` about a change of its own: patch the
    /// index so it never shows the old state (or drop it), and have a walk
    /// under way apply it when it ends.
    pub fn own_change(&mut self, registry: SocketAddr, change: OwnChange) {
        let Some((_, idx)) = self.indexes.get_mut(&registry) else {
            if let Some(w) = self.walks.get_mut(&registry) {
                w.own.push(change);
            }
            return;
        };
        if !Rc::get_mut(idx).is_some_and(|i| change.apply(i)) {
            self.indexes.remove(&registry);
        }
        if let Some(w) = self.walks.get_mut(&registry) {
            w.own.push(change);
        }
    }

    /// Frees indexes nobody may use any more.
    pub fn sweep(&mut self, now: Instant) {
        self.indexes
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < INDEX_TTL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Reply<'static> {
        list_with(None)
    }

    fn list_with(next: Option<u64>) -> Reply<'static> {
        let mut v = json!({"status":"OK","registry":{
            "alice":{"addr":["10.0.0.1",6001],"display_name":"Alice","files":{
                "a.txt":{"size":3,"modified":100.0,"is_published":true,"sha256":"aa"},
                "same.bin":{"size":9,"modified":50.0,"is_published":true,"sha256":"ss"}},
                "last_seen":1.0,"connected_at":1.0,"online":true},
            "bob":{"addr":["10.0.0.2",6002],"display_name":"Bob","files":{
                "same.bin":{"size":9,"modified":50.0,"is_published":true,"sha256":"ss"},
                "b.txt":{"size":3,"modified":101.5,"is_published":true}},
                "last_seen":1.0,"connected_at":1.0,"online":false}},
            "total":2,"next_offset":null});
        v["next_offset"] = json!(next);
        crate::proto::registry::decode_reply(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn reads_list_pages() {
        let (hosts, next) = listed_hosts(list()).unwrap();
        assert_eq!(next, None);
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].port, 6002);
        assert!(!hosts[1].online);
        assert_eq!(listed_hosts(list_with(Some(2))).unwrap().1, Some(2));
        assert!(listed_hosts(Reply::Ok).is_err());
        assert!(listed_hosts(Reply::Error("busy".into()))
            .unwrap_err()
            .contains("busy"));
    }

    fn names(page: &[Value]) -> Vec<&str> {
        page.iter().map(|f| f["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn groups_by_name_and_content_with_search() {
        let (hosts, _) = listed_hosts(list()).unwrap();
        let idx = Index::build(hosts);
        let (all, total) = idx.page("", 0, 100);
        assert_eq!(names(&all), ["a.txt", "b.txt", "same.bin"]);
        assert_eq!(total, 3);
        assert_eq!(all[2]["hosts"].as_array().unwrap().len(), 2);
        assert_eq!(all[2]["hosts"][0]["hostname"], "alice", "online first");
        assert_eq!(idx.page("SAME", 0, 100).1, 1);
        // A host match keeps only that host's entries.
        let (bob, n) = idx.page("bob", 0, 100);
        assert_eq!((names(&bob), n), (vec!["b.txt", "same.bin"], 2));
        assert_eq!(bob[1]["hosts"].as_array().unwrap().len(), 1);
        // A search is kept for paging, and dropped when the index changes.
        let mut idx = idx;
        assert_eq!(idx.page("same", 0, 100).1, 1);
        assert!(idx.set_host_file("alice", "same.bin", None));
        assert!(idx.set_host_file("bob", "same.bin", None));
        assert_eq!(idx.page("same", 0, 100).1, 0);
        assert_eq!(idx.page("", 0, 100).1, 2);
        // Paging counts everything that matches.
        let (page, total) = idx.page("", 1, 1);
        assert_eq!((names(&page), total), (vec!["b.txt"], 2));
        let (page, total) = idx.page(".TXT", 1, 1);
        assert_eq!((names(&page), total), (vec!["b.txt"], 2));
        assert!(idx.page("", 5, 10).0.is_empty());
    }

    #[test]
    fn own_changes_patch_the_index() {
        let (hosts, _) = listed_hosts(list()).unwrap();
        let mut idx = Index::build(hosts);
        let new = NetFile {
            name: "new.txt".into(),
            size: 1,
            modified: 1.0,
            sha256: Some("nn".into()),
        };
        assert!(idx.set_host_files("bob", std::slice::from_ref(&new)));
        assert_eq!(
            names(&idx.page("", 0, 100).0),
            ["a.txt", "new.txt", "same.bin"]
        );
        assert_eq!(
            idx.page("same", 0, 9).0[0]["hosts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert!(idx.set_host_files("bob", &[]));
        assert!(idx.set_host_files("nobody", &[]));
        assert!(!idx.set_host_files("nobody", std::slice::from_ref(&new)));

        let mut cache = NetCache::default();
        let reg: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let t0 = Instant::now();
        cache.store(reg, t0, idx);
        let host = |h: &str, files: Vec<NetFile>| OwnChange::Host {
            host: h.into(),
            files,
        };
        cache.own_change(reg, host("alice", vec![new.clone()]));
        let idx = cache.fresh(reg, t0).unwrap();
        assert_eq!(names(&idx.page("", 0, 100).0), ["new.txt"]);
        drop(idx);
        let file = |name: &str, f: Option<NetFile>| OwnChange::File {
            host: "bob".into(),
            name: name.into(),
            file: f,
        };
        cache.own_change(reg, file("new.txt", Some(new.clone())));
        cache.own_change(reg, file("new.txt", Some(new.clone())));
        let idx = cache.fresh(reg, t0).unwrap();
        let page = idx.page("", 0, 100).0;
        assert_eq!(names(&page), ["new.txt"], "one entry per name and host");
        assert_eq!(page[0]["hosts"].as_array().unwrap().len(), 2);
        drop(idx);
        cache.own_change(reg, file("new.txt", None));
        let idx = cache.fresh(reg, t0).unwrap();
        assert_eq!(idx.page("", 0, 100).0[0]["hosts"][0]["hostname"], "alice");
        // While shared (an answer is being built from it) it cannot be
        // patched, so it is dropped rather than left stale.
        cache.own_change(reg, file("x", None));
        assert!(cache.fresh(reg, t0).is_none());
        cache.store(reg, t0, Index::build(listed_hosts(list()).unwrap().0));
        cache.own_change(reg, host("carol", vec![new.clone()]));
        assert!(
            cache.fresh(reg, t0).is_none(),
            "an unknown host drops the index"
        );
        let (hosts, _) = listed_hosts(list()).unwrap();
        cache.store(reg, t0, Index::build(hosts));
        assert!(cache.fresh(reg, t0 + INDEX_TTL).is_none(), "stale");
        cache.sweep(t0 + INDEX_TTL);
        assert!(cache.indexes.is_empty());

        // A change made while a walk runs is applied to what it finds.
        let mut w = Walk::new("alice", t0, 7);
        cache.walks.insert(reg, Walk::new("alice", t0, 7));
        cache.own_change(reg, host("alice", vec![]));
        w.own = cache.walks.remove(&reg).unwrap().own;
        w.index.add_page(listed_hosts(list()).unwrap().0);
        let (idx, waiters, exact) = w.finish();
        assert_eq!((waiters, exact), (vec![7], true));
        assert_eq!(names(&idx.page("", 0, 100).0), ["b.txt", "same.bin"]);
    }

    #[test]
    fn finds_duplicates_on_other_hosts_only() {
        let (hosts, _) = listed_hosts(list()).unwrap();
        let idx = Index::build(hosts.clone());
        let mine = |h, size, modified, sha256| Mine {
            hostname: h,
            size,
            modified,
            sha256,
        };
        for from_index in [false, true] {
            let find = |m: Mine| {
                let mut d = Duplicates::default();
                if from_index {
                    d.add_index(&m, &idx);
                } else {
                    d.add_hosts(&m, &hosts);
                }
                d.found
            };
            let d = find(mine("carol", 9, 10.0, Some("ss")));
            assert_eq!(d.len(), 2);
            assert_eq!(d[0]["reason"], "same content");
            assert!(find(mine("alice", 9, 10.0, Some("zz"))).is_empty());
            let d = find(mine("alice", 3, 100.0, Some("zz")));
            assert_eq!(d.len(), 1, "b.txt: same size, 1.5 s apart: {d:?}");
            assert_eq!(d[0]["reason"], "same size and modified time");
            assert_eq!(d[0]["name"], "b.txt");
            assert!(find(mine("alice", 3, 97.0, None)).is_empty());
        }
        // Both sources together name each (host, file) once.
        let m = mine("carol", 9, 10.0, Some("ss"));
        let mut d = Duplicates::default();
        d.add_hosts(&m, &hosts);
        d.add_index(&m, &idx);
        assert_eq!(d.found.len(), 2);
    }

    #[test]
    fn reads_request_hosts() {
        let v = crate::proto::registry::decode_reply(
            br#"{"status":"FOUND","hosts":[
            {"hostname":"bob","display_name":"Bob","ip":"10.0.0.2","port":6002,"size":9,
             "modified":1.0,"is_published":true,"sha256":"ss","online":true}]}"#,
        )
        .unwrap();
        let h = found_hosts(&v, "same.bin");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].files[0].name, "same.bin");
        assert!(found_hosts(&Reply::NotFound, "x").is_empty());
    }
}
