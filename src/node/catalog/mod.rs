//! One user's tracked files: metadata of files kept where they are (no copy),
//! versioned snapshots of it for `<data>/users/<user>/files.json` (atomic
//! replacement), and how that metadata follows the disk (missing, changed,
//! rehash, backing off while a file keeps changing). Which files may be
//! tracked is the [`Sandbox`]'s rule; the catalog asks it at add and at
//! load. It does no hashing, no registry I/O and, in a loop turn, no disk
//! writes: [`Snapshot::write`] runs on the node's store thread, and the
//! catalog returns [`Effect`]s for the node.

use crate::proto::names::check_file_name;
use crate::util::unix_now;
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::node::sandbox::Sandbox;
use crate::proto::registry::FileMeta;

pub mod hashing;
pub mod persist;
pub mod pieces;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::node::transfers::peer_server::{self, SharedFile};
use hashing::{HashJob, HashResult, Observation};

/// Times within this many seconds are the same mtime (JSON keeps f64 exact;
/// this only absorbs float noise).
const SAME_TIME: f64 = 1e-5;
/// A file seen changing again soon after a change waits this long before the
/// next hash, doubling each time (10 s, 20 s, … 10 min): a growing log or a
/// file rewritten constantly is not rehashed in a loop.
const BACKOFF_FIRST_S: f64 = 10.0;
const BACKOFF_MAX_S: f64 = 600.0;

/// The wait before the next hash after the `n`th change in a row (n ≥ 1).
pub fn backoff_s(n: u32) -> f64 {
    let steps = n.saturating_sub(1).min(16) as i32;
    (BACKOFF_FIRST_S * 2f64.powi(steps)).min(BACKOFF_MAX_S)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Gone from its path, or no longer a regular file.
    Missing,
    /// Size or mtime moved since it was added or published.
    Changed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Changed => "changed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TrackedFile {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub modified: f64,
    pub added_at: f64,
    pub sha256: Option<String>,
    pub is_published: bool,
    pub published_at: Option<f64>,
    pub status: Status,
    /// The path with every symlink resolved when it was added: what the
    /// node opens (beneath its share root). Catalogs from before it lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<PathBuf>,
    /// Device and inode when last hashed or added (0: not known yet).
    #[serde(default)]
    pub dev: u64,
    #[serde(default)]
    pub ino: u64,
    /// Changes seen in a row without a quiet rescan in between.
    #[serde(default)]
    pub changes: u32,
    /// Unix time of the next hash while backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hash_at: Option<f64>,
    /// It kept changing while hashed: hashing backs off.
    #[serde(default)]
    pub changing: bool,
    /// A hash job is out for this file.
    #[serde(skip)]
    pub hashing: bool,
    #[serde(skip)]
    pub hash_error: Option<String>,
    /// Bumped whenever a hash is (re)started, so stale results are dropped.
    #[serde(skip)]
    pub gen: u64,
}

impl TrackedFile {
    /// The path the node opens.
    pub fn real_path(&self) -> PathBuf {
        self.real
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.path))
    }

    /// A change was seen (by a rescan, or by a hash that watched the file
    /// move): the first one is hashed at once, the next ones after a
    /// growing wait, and the file is marked "changing".
    fn change_seen(&mut self, now: f64, during_hash: bool) -> Option<Effect> {
        let n = if during_hash {
            self.changes.max(1)
        } else {
            self.changes
        };
        self.changes = n.saturating_add(1);
        if n == 0 {
            self.next_hash_at = None;
            return Some(Effect::Hash(self.name.clone()));
        }
        self.changing = true;
        self.next_hash_at = Some(now + backoff_s(n));
        None
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "added_at": self.added_at,
            "sha256": self.sha256,
            "hashing": self.hashing,
            "hash_error": self.hash_error,
            "is_published": self.is_published,
            "published_at": self.published_at,
            "status": self.status.as_str(),
            "changing": self.changing,
            "next_hash_at": self.next_hash_at,
        })
    }

    /// The registry's view: size, times, whether it is offered, its hash.
    pub fn registry_meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            modified: self.modified,
            published_at: self.published_at,
            is_published: self.is_published && self.status != Status::Missing,
            sha256: self.sha256.clone(),
            root: None,
        }
    }
}

/// What the node must do after a change in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the registry the file is no longer offered.
    Unpublish(String),
    /// Start (again) hashing the file.
    Hash(String),
}

#[derive(Deserialize, Default)]
struct OnDisk {
    #[allow(dead_code)]
    version: u32,
    files: Vec<TrackedFile>,
}

/// What is written: the same shape, borrowed, so a snapshot clones nothing.
#[derive(Serialize)]
struct OnDiskRef<'a> {
    version: u32,
    files: Vec<&'a TrackedFile>,
}

/// A file's publication state, to undo a publish or unpublish that could not be saved.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub is_published: bool,
    pub published_at: Option<f64>,
    pub status: Status,
    pub size: u64,
    pub modified: f64,
}

/// The catalog serialized at one version, to be made durable off the loop.
pub struct Snapshot {
    pub version: u64,
    path: PathBuf,
    bytes: Vec<u8>,
    on_disk: Arc<Mutex<u64>>,
}

impl Snapshot {
    /// Replaces files.json durably (fsync), unless a newer version is on
    /// disk already (then this one is superseded, which is success too).
    /// Blocks for as long as the disk takes: only on the store thread, or
    /// at shutdown.
    pub fn write(self) -> Result<(), String> {
        // Held across the write: two writers of one catalog never interleave
        // their renames, so an older snapshot cannot replace a newer one.
        let mut disk = self.on_disk.lock().unwrap_or_else(|p| p.into_inner());
        if *disk >= self.version {
            return Ok(());
        }
        crate::store::write_atomic(&self.path, &self.bytes)
            .map_err(|e| format!("cannot save {}: {e}", self.path.display()))?;
        *disk = self.version;
        Ok(())
    }
}

pub struct Catalog {
    user: String,
    sandbox: Arc<Sandbox>,
    store: PathBuf,
    files: BTreeMap<String, TrackedFile>,
    /// Bumped by every change worth saving.
    version: u64,
    /// The newest version known to be on disk.
    saved: u64,
    /// The version whose write is out on the store thread.
    writing: Option<u64>,
    /// The version on disk, shared with whoever writes a snapshot.
    on_disk: Arc<Mutex<u64>>,
    next_gen: u64,
    /// Names the peer server found changed on disk, checked by the node next.
    suspects: Vec<String>,
}

impl Catalog {
    /// Loads `<dir>/files.json` (creating `dir`). A file that cannot be
    /// parsed is moved aside, never overwritten, and the catalog starts empty.
    /// Entries the sandbox refuses now (outside the share roots, in the data
    /// directory, hidden, on a pseudo file system) are dropped with a log
    /// line, so they are neither served nor announced again. Blocking: runs
    /// on the store thread.
    pub fn load(dir: &Path, user: &str, sandbox: Arc<Sandbox>) -> Result<Catalog, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the user directory {}: {e}", dir.display()))?;
        let store = dir.join("files.json");
        let mut files = BTreeMap::new();
        match fs::read(&store) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) => {
                    for f in d.files {
                        files.insert(f.name.clone(), f);
                    }
                }
                Err(e) => {
                    let aside = dir.join(format!("files.json.corrupt-{}", unix_now() as u64));
                    crate::log_error!(
                        "{}: unreadable ({e}); moved to {} and starting empty",
                        store.display(),
                        aside.display()
                    );
                    fs::rename(&store, &aside)
                        .map_err(|e| format!("cannot move {} aside: {e}", store.display()))?;
                }
            },
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read {}: {e}", store.display())),
        }
        let before = files.len();
        files.retain(|_, f| allowed_at_load(&sandbox, user, f));
        let dropped = before != files.len();
        Ok(Catalog {
            sandbox,
            user: user.to_owned(),
            store,
            files,
            version: 0,
            saved: 0,
            writing: None,
            on_disk: Arc::new(Mutex::new(0)),
            next_gen: 1,
            suspects: Vec::new(),
        })
        .map(|mut c| {
            if dropped {
                // Saved at the next tick, so the drop is durable too.
                c.touch();
            }
            c
        })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    fn touch(&mut self) {
        self.version += 1;
    }

    /// The version of the current content (every change bumps it).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether `version` (or a later one) is known to be on disk.
    pub fn is_saved(&self, version: u64) -> bool {
        self.saved >= version
    }

    /// Nothing unsaved and no write out.
    pub fn is_settled(&self) -> bool {
        self.saved >= self.version && self.writing.is_none()
    }

    fn encode(&self) -> Result<Snapshot, String> {
        let disk = OnDiskRef {
            version: 1,
            files: self.files.values().collect(),
        };
        let bytes = serde_json::to_vec_pretty(&disk)
            .map_err(|e| format!("cannot encode {}: {e}", self.store.display()))?;
        Ok(Snapshot {
            version: self.version,
            path: self.store.clone(),
            bytes,
            on_disk: self.on_disk.clone(),
        })
    }

    /// The next snapshot to write: only when there are unsaved changes and
    /// no write is out (one at a time per catalog, so writes stay in order
    /// and changes made meanwhile fold into the next one). Serializing is
    /// cheap; [`Snapshot::write`] is the slow part. Pair with [`Catalog::written`].
    pub fn snapshot(&mut self) -> Option<Result<Snapshot, String>> {
        if self.writing.is_some() || self.saved >= self.version {
            return None;
        }
        let snap = self.encode();
        if snap.is_ok() {
            self.writing = Some(self.version);
        }
        Some(snap)
    }

    /// The write of `version` finished (`ok`: it is on disk).
    pub fn written(&mut self, version: u64, ok: bool) {
        if self.writing == Some(version) {
            self.writing = None;
        }
        if ok {
            self.saved = self.saved.max(version);
        }
    }

    /// Writes the current content now, blocking: for shutdown and tests only.
    pub fn save_now(&mut self) -> Result<(), String> {
        if self.saved >= self.version {
            return Ok(());
        }
        let snap = self.encode()?;
        let version = snap.version;
        snap.write()?;
        self.saved = self.saved.max(version);
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&TrackedFile> {
        self.files.get(name)
    }

    pub fn by_path(&self, path: &str) -> Option<&TrackedFile> {
        self.files.values().find(|f| f.path == path)
    }

    pub fn iter(&self) -> impl Iterator<Item = &TrackedFile> {
        self.files.values()
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    pub fn published_count(&self) -> usize {
        self.files.values().filter(|f| f.is_published).count()
    }

    /// Starts tracking `path`. `Ok(true)`: newly added (to be hashed);
    /// `Ok(false)`: that path was tracked already. Errors carry an HTTP status.
    pub fn add(&mut self, path: &str, now: f64) -> Result<(String, bool), (u16, String)> {
        let p = Path::new(path);
        if path.is_empty() {
            return Err((400, "The path is empty".into()));
        }
        if !p.is_absolute() {
            return Err((400, format!("The path must be absolute: '{path}'")));
        }
        // Under a share root once resolved, not hidden, not the data
        // directory, a regular file on a real file system, readable.
        let accepted = self.sandbox.check_add(path)?;
        let name = match p.file_name().and_then(|n| n.to_str()) {
            Some(n) => n.to_owned(),
            None => return Err((400, format!("{path} has no usable file name"))),
        };
        if let Err(why) = check_file_name(&name) {
            return Err((
                400,
                format!("The file name '{name}' cannot be shared: {why}"),
            ));
        }
        if let Some(f) = self.files.get(&name) {
            if f.path == path || f.real.as_deref() == Some(accepted.real.as_path()) {
                return Ok((name, false));
            }
            return Err((
                409,
                format!(
                    "A file named '{name}' is already tracked (from {}); remove it first or rename one of them",
                    f.path
                ),
            ));
        }
        self.files.insert(
            name.clone(),
            TrackedFile {
                name: name.clone(),
                path: path.to_owned(),
                size: accepted.id.size,
                modified: accepted.id.modified,
                added_at: now,
                sha256: None,
                is_published: false,
                published_at: None,
                status: Status::Ok,
                real: Some(accepted.real),
                dev: accepted.id.dev,
                ino: accepted.id.ino,
                changes: 0,
                next_hash_at: None,
                changing: false,
                hashing: false,
                hash_error: None,
                gen: 0,
            },
        );
        self.touch();
        Ok((name, true))
    }

    pub fn remove(&mut self, name: &str) -> Option<TrackedFile> {
        let f = self.files.remove(name)?;
        self.touch();
        Some(f)
    }

    /// Undoes an add that could not be saved, unless the entry was replaced meanwhile.
    pub fn unadd(&mut self, name: &str, path: &str, added_at: f64) -> bool {
        let same = self
            .files
            .get(name)
            .is_some_and(|f| f.path == path && f.added_at == added_at);
        if same {
            self.remove(name);
        }
        same
    }

    /// Undoes a remove that could not be saved, unless the name was taken meanwhile.
    pub fn reinsert(&mut self, mut f: TrackedFile) -> bool {
        if self.files.contains_key(&f.name) {
            return false;
        }
        // A hash that was out for it was dropped with the entry.
        f.hashing = false;
        self.files.insert(f.name.clone(), f);
        self.touch();
        true
    }

    pub fn publication(&self, name: &str) -> Option<Publication> {
        self.files.get(name).map(|f| Publication {
            is_published: f.is_published,
            published_at: f.published_at,
            status: f.status,
            size: f.size,
            modified: f.modified,
        })
    }

    /// Puts back `prev` if the file is still exactly as the change left it
    /// (`now`); a later change (a rescan, another request) wins.
    pub fn restore_publication(
        &mut self,
        name: &str,
        now: &Publication,
        prev: &Publication,
    ) -> bool {
        if self.publication(name).as_ref() != Some(now) {
            return false;
        }
        if let Some(f) = self.files.get_mut(name) {
            f.is_published = prev.is_published;
            f.published_at = prev.published_at;
            f.status = prev.status;
        }
        self.touch();
        true
    }

    /// The published files as the registry sees them (for the network view).
    pub fn published_files(&self) -> impl Iterator<Item = &TrackedFile> {
        self.files
            .values()
            .filter(|f| f.is_published && f.status != Status::Missing)
    }

    /// Marks published (with its time) or not; publishing clears "changed".
    pub fn set_published(&mut self, name: &str, at: Option<f64>) {
        if let Some(f) = self.files.get_mut(name) {
            f.is_published = at.is_some();
            f.published_at = at;
            if at.is_some() && f.status == Status::Changed {
                f.status = Status::Ok;
            }
            self.version += 1;
        }
    }

    /// A hash job for `name`, marking it as hashing; stale jobs are superseded.
    pub fn begin_hash(&mut self, name: &str) -> Option<HashJob> {
        let f = self.files.get_mut(name)?;
        if f.status == Status::Missing {
            return None;
        }
        self.next_gen += 1;
        f.gen = self.next_gen;
        f.hashing = true;
        f.hash_error = None;
        f.next_hash_at = None;
        Some(HashJob {
            user: self.user.clone(),
            name: name.to_owned(),
            gen: f.gen,
            path: f.real_path(),
            sandbox: self.sandbox.clone(),
        })
    }

    /// The pool could not take the job: it will be retried, but is not "out".
    pub fn hash_not_started(&mut self, name: &str) {
        if let Some(f) = self.files.get_mut(name) {
            f.hashing = true;
        }
    }

    /// Files that have no hash and none under way (after a load or a crash).
    pub fn needing_hash(&self) -> Vec<String> {
        self.files
            .values()
            .filter(|f| {
                f.sha256.is_none()
                    && !f.hashing
                    && f.status != Status::Missing
                    && f.next_hash_at.is_none()
            })
            .map(|f| f.name.clone())
            .collect()
    }

    /// Files whose backoff is over: hash them now.
    pub fn due_hashes(&mut self, now: f64) -> Vec<Effect> {
        let mut out = Vec::new();
        for f in self.files.values_mut() {
            let due = f.next_hash_at.is_some_and(|t| t <= now);
            if due && !f.hashing && f.status != Status::Missing {
                f.next_hash_at = None;
                out.push(Effect::Hash(f.name.clone()));
            }
        }
        out
    }

    pub fn hash_done(&mut self, job: &HashJob, result: HashResult) -> Vec<Effect> {
        let Some(f) = self.files.get_mut(&job.name) else {
            return Vec::new();
        };
        if f.gen != job.gen || f.real_path() != job.path {
            return Vec::new();
        }
        f.hashing = false;
        self.version += 1;
        match result {
            HashResult::Ok {
                sha256,
                size,
                modified,
                dev,
                ino,
            } => {
                let mut effects = Vec::new();
                f.changing = false;
                f.dev = dev;
                f.ino = ino;
                if size != f.size || (modified - f.modified).abs() > SAME_TIME {
                    // It moved between the add (or the last stat) and the hash.
                    f.size = size;
                    f.modified = modified;
                    if f.sha256.is_some() || f.is_published {
                        f.status = Status::Changed;
                    }
                    if f.is_published {
                        f.is_published = false;
                        f.published_at = None;
                        effects.push(Effect::Unpublish(f.name.clone()));
                    }
                }
                f.sha256 = Some(sha256);
                effects
            }
            HashResult::Changed => {
                // Never straight again: that looped forever on a file that
                // changes all the time (2.4 s of CPU every 3 s on a /proc file).
                f.change_seen(unix_now(), true).into_iter().collect()
            }
            HashResult::Failed(e) => {
                f.hash_error = Some(e);
                Vec::new()
            }
        }
    }

    /// Folds in what a `stat` of the file found.
    pub fn observe(&mut self, name: &str, seen: Observation) -> Vec<Effect> {
        let Some(f) = self.files.get_mut(name) else {
            return Vec::new();
        };
        let mut effects = Vec::new();
        match seen {
            Observation::Missing => {
                if f.status != Status::Missing {
                    f.status = Status::Missing;
                    f.hashing = false;
                    self.next_gen += 1;
                    f.gen = self.next_gen;
                    if f.is_published {
                        f.is_published = false;
                        f.published_at = None;
                        effects.push(Effect::Unpublish(f.name.clone()));
                    }
                    self.version += 1;
                }
            }
            Observation::Present {
                size,
                modified,
                dev,
                ino,
            } => {
                if f.ino == 0 {
                    // A catalog from before identities were kept: adopt it.
                    (f.dev, f.ino) = (dev, ino);
                }
                let same = size == f.size
                    && (modified - f.modified).abs() <= SAME_TIME
                    && (dev, ino) == (f.dev, f.ino);
                if same {
                    if !f.hashing && f.next_hash_at.is_none() && f.changes > 0 {
                        // Quiet since the last look: the next change hashes at once.
                        f.changes = 0;
                        f.changing = false;
                        self.version += 1;
                    }
                    if f.status == Status::Missing {
                        f.status = Status::Ok;
                        self.version += 1;
                        if f.sha256.is_none() {
                            effects.push(Effect::Hash(f.name.clone()));
                        }
                    }
                } else {
                    f.status = Status::Changed;
                    f.size = size;
                    f.modified = modified;
                    (f.dev, f.ino) = (dev, ino);
                    f.sha256 = None;
                    // A hash of the old content still under way must not land.
                    self.next_gen += 1;
                    f.gen = self.next_gen;
                    f.hashing = false;
                    if f.is_published {
                        f.is_published = false;
                        f.published_at = None;
                        effects.push(Effect::Unpublish(f.name.clone()));
                    }
                    // Already waiting out a backoff: the wait stands.
                    if f.next_hash_at.is_none() {
                        effects.extend(f.change_seen(unix_now(), false));
                    }
                    self.version += 1;
                }
            }
        }
        effects
    }

    /// (name, path) of every file, for a stat sweep.
    pub fn paths(&self) -> Vec<(String, PathBuf)> {
        self.files
            .values()
            .map(|f| (f.name.clone(), f.real_path()))
            .collect()
    }

    /// REGISTER's `files_metadata`.
    /// Every tracked file as REGISTER's `files_metadata` lists it.
    pub fn registry_metadata(&self) -> Vec<(String, FileMeta)> {
        self.files
            .values()
            .map(|f| (f.name.clone(), f.registry_meta()))
            .collect()
    }

    pub fn take_suspects(&mut self) -> Vec<String> {
        std::mem::take(&mut self.suspects)
    }
}

impl peer_server::PublishedFiles for Catalog {
    fn published(&self, name: &str) -> Option<SharedFile> {
        let f = self.files.get(name)?;
        if !f.is_published || f.status == Status::Missing {
            return None;
        }
        Some(SharedFile {
            name: f.name.clone(),
            path: f.real_path(),
            dev: f.dev,
            ino: f.ino,
            size: f.size,
            modified: f.modified,
            sha256: f.sha256.clone(),
        })
    }

    fn file_changed(&mut self, name: &str) {
        if self.suspects.len() < 1024 && !self.suspects.iter().any(|s| s == name) {
            self.suspects.push(name.to_owned());
        }
    }
}

/// Whether a file loaded from an old catalog may stay tracked: refusals
/// of the rules (not a file merely missing or unreadable now) drop it.
fn allowed_at_load(sandbox: &Sandbox, user: &str, f: &mut TrackedFile) -> bool {
    let real = f
        .real
        .clone()
        .or_else(|| fs::canonicalize(&f.path).ok())
        .unwrap_or_else(|| PathBuf::from(&f.path));
    let why = match sandbox.read_rule(&real) {
        Err((_, why)) => Some(why),
        Ok(_) => match sandbox.open_read(&real, libc::O_PATH) {
            // The rules refused it (e.g. a pseudo file system): no OS error.
            Err(e) if e.kind() == ErrorKind::PermissionDenied && e.raw_os_error().is_none() => {
                Some(e.to_string())
            }
            _ => None,
        },
    };
    match why {
        Some(why) => {
            crate::log_warn!(
                "{user}: no longer tracking {:?} ({}): {why}",
                f.name,
                f.path
            );
            false
        }
        None => {
            f.real = Some(real);
            true
        }
    }
}

impl Catalog {
    /// Tracks a file this node just downloaded and verified against
    /// `sha256` (`transfers::fetch`): added as `add` does (the same rules),
    /// with its hash known, so it is not read again before it is published.
    pub fn add_fetched(
        &mut self,
        path: &str,
        now: f64,
        sha256: Option<&str>,
    ) -> Result<(String, bool), (u16, String)> {
        let (name, new) = self.add(path, now)?;
        if let (true, Some(sha), Some(f)) = (new, sha256, self.files.get_mut(&name)) {
            f.sha256 = Some(sha.to_ascii_lowercase());
            self.version += 1;
        }
        Ok((name, new))
    }
}

#[cfg(test)]
mod tests;
