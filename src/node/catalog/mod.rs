//! One user's tracked files: metadata of files kept where they are (no copy),
//! versioned snapshots of it for `<data>/users/<user>/files.json` (atomic
//! replacement), and how that metadata follows the disk (missing, changed,
//! rehash, backing off while a file keeps changing). Which files may be
//! tracked is the [`Sandbox`]'s rule; the catalog asks it at add and at
//! load. It does no hashing, no registry I/O and, in a loop turn, no disk
//! writes: [`Snapshot::write`] runs on the node's store thread, and the
//! catalog returns [`Effect`]s for the node. Each file's hash pair (`sha256`
//! and the piece `root`) comes from one pass on a worker (`hashing`); the
//! digests behind a root live in the piece store (`pieces`), which a load
//! checks so an unchanged file is not read again after a restart.

use crate::proto::names::check_file_name;
use crate::util::unix_now;
use std::collections::BTreeMap;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::node::sandbox::Sandbox;
use crate::proto::registry::FileMeta;

mod file;
pub mod folders;
pub mod hashing;
pub mod persist;
pub mod pieces;
pub mod rescan;

use file::SAME_TIME;
pub use file::{backoff_s, Effect, Status, TrackedFile};
pub use folders::{Folder, Scanned, Unfollowed};

use serde::{Deserialize, Serialize};

use crate::node::transfers::peer_server::{self, SharedFile};
use hashing::{HashJob, HashResult, Observation};

#[derive(Deserialize, Default)]
struct OnDisk {
    #[allow(dead_code)]
    version: u32,
    files: Vec<TrackedFile>,
    /// Followed folders; catalogs from before them have none.
    #[serde(default)]
    folders: Vec<Folder>,
}

/// What is written: the same shape, borrowed, so a snapshot clones nothing.
#[derive(Serialize)]
struct OnDiskRef<'a> {
    version: u32,
    files: Vec<&'a TrackedFile>,
    folders: &'a [Folder],
}

/// What a finished download verified (for [`Catalog::add_verified`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// Size and modification time of the file once renamed into place.
    pub size: u64,
    pub modified: f64,
    /// The whole-file SHA-256 and the piece root, lower-case hex.
    pub sha256: String,
    pub root: String,
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
    /// The node's data directory: the piece store is below it.
    data_dir: Arc<Path>,
    store: PathBuf,
    files: BTreeMap<String, TrackedFile>,
    /// Folders followed: listed every rescan (`folders`).
    folders: Vec<Folder>,
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
    /// line, so they are neither served nor announced again. A root whose
    /// digests are not in the piece store (under `data_dir`) is forgotten,
    /// so the file is hashed again. Blocking: runs on the store thread.
    pub fn load(
        dir: &Path,
        user: &str,
        sandbox: Arc<Sandbox>,
        data_dir: &Path,
    ) -> Result<Catalog, String> {
        fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create the user directory {}: {e}", dir.display()))?;
        let store = dir.join("files.json");
        let mut files = BTreeMap::new();
        let mut folders = Vec::new();
        match fs::read(&store) {
            Ok(bytes) => match serde_json::from_slice::<OnDisk>(&bytes) {
                Ok(d) => {
                    for f in d.files {
                        files.insert(f.name.clone(), f);
                    }
                    folders = d.folders;
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
        let folders_before = folders.len();
        folders.retain(|d: &Folder| match sandbox.folder_allowed(&d.real) {
            Ok(()) => true,
            Err(why) => {
                crate::log_warn!("{user}: no longer following {}: {why}", d.path);
                false
            }
        });
        let dropped = before != files.len() || folders_before != folders.len();
        for f in files.values_mut() {
            forget_root_without_digests(data_dir, f);
        }
        Ok(Catalog {
            sandbox,
            data_dir: Arc::from(data_dir),
            user: user.to_owned(),
            store,
            files,
            folders,
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
            folders: &self.folders,
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
        Self::check_path(path)?;
        // Under a share root once resolved, not hidden, not the data
        // directory, a regular file on a real file system, readable.
        let accepted = self.sandbox.check_add(path)?;
        self.insert_accepted(path, now, accepted)
    }

    fn check_path(path: &str) -> Result<(), (u16, String)> {
        if path.is_empty() {
            return Err((400, "The path is empty".into()));
        }
        if !Path::new(path).is_absolute() {
            return Err((400, format!("The path must be absolute: '{path}'")));
        }
        Ok(())
    }

    fn insert_accepted(
        &mut self,
        path: &str,
        now: f64,
        accepted: crate::node::sandbox::Accepted,
    ) -> Result<(String, bool), (u16, String)> {
        let p = Path::new(path);
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
                root: None,
                is_published: false,
                published_at: None,
                status: Status::Ok,
                real: Some(accepted.real),
                dev: accepted.id.dev,
                ino: accepted.id.ino,
                changes: 0,
                next_hash_at: None,
                changing: false,
                folder: None,
                publish_when_hashed: false,
                hashing: false,
                hash_error: None,
                gen: 0,
            },
        );
        self.touch();
        Ok((name, true))
    }

    /// Tracks a file this node downloaded and verified (`transfers/fetch`)
    /// with the hash pair the download checked, so it is not read again:
    /// [`Catalog::add`]'s rules, then `sha256` and `root` are taken as the
    /// file's if it is still what the download wrote (`size`, `modified`:
    /// the file after its rename) and has no pair of its own yet. The
    /// digest list of `root` must be in the piece store already
    /// ([`pieces::store`], on a worker, before this call). `Ok((name,
    /// true))`: the pair was not taken (the file moved meanwhile): hash it
    /// as any added file (`Node::queue_hash`).
    pub fn add_verified(
        &mut self,
        path: &str,
        now: f64,
        v: &Verified,
    ) -> Result<(String, bool), (u16, String)> {
        let hex64 = |h: &str| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex64(&v.sha256) || !hex64(&v.root) {
            return Err((400, "A verified download needs a sha256 and a root".into()));
        }
        Self::check_path(path)?;
        let accepted = self.sandbox.check_fetched(path, &self.user)?;
        let (name, new) = self.insert_accepted(path, now, accepted)?;
        let Some(f) = self.files.get_mut(&name) else {
            return Err((409, format!("'{name}' stopped being tracked meanwhile")));
        };
        let same = f.size == v.size && (f.modified - v.modified).abs() <= SAME_TIME;
        if same && !f.hashing && (f.sha256.is_none() || f.root.is_none()) {
            f.sha256 = Some(v.sha256.to_ascii_lowercase());
            f.root = Some(v.root.to_ascii_lowercase());
            self.touch();
            return Ok((name, false));
        }
        Ok((name, new))
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
    /// Either way the file no longer waits to be published once hashed.
    pub fn set_published(&mut self, name: &str, at: Option<f64>) {
        if let Some(f) = self.files.get_mut(name) {
            f.is_published = at.is_some();
            f.published_at = at;
            f.publish_when_hashed = false;
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
            data_dir: self.data_dir.clone(),
        })
    }

    /// The pool could not take the job: it will be retried, but is not "out".
    pub fn hash_not_started(&mut self, name: &str) {
        if let Some(f) = self.files.get_mut(name) {
            f.hashing = true;
        }
    }

    /// Files that have no hash (or no root) and none under way (after a
    /// load or a crash).
    pub fn needing_hash(&self) -> Vec<String> {
        self.files
            .values()
            .filter(|f| {
                (f.sha256.is_none() || f.root.is_none())
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
                root,
                size,
                modified,
                dev,
                ino,
            } => {
                let mut effects = Vec::new();
                f.changing = false;
                f.dev = dev;
                f.ino = ino;
                let moved = size != f.size || (modified - f.modified).abs() > SAME_TIME;
                if moved {
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
                let learnt = f.sha256.as_deref() != Some(sha256.as_str()) || f.root != root;
                if learnt && f.is_published {
                    // Same file on disk, new hash pair (an old entry learnt
                    // its root): the registry must offer the new pair.
                    effects.push(Effect::Announce(f.name.clone()));
                }
                f.sha256 = Some(sha256);
                f.root = root;
                if f.publish_when_hashed && !f.is_published && f.status != Status::Missing {
                    if moved {
                        // Still being written when it was listed: published
                        // only once two looks in a row agree (a hash of a
                        // half-written file is never announced).
                        effects.extend(f.change_seen(unix_now(), false));
                    } else {
                        effects.push(Effect::Publish(f.name.clone()));
                    }
                }
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
                    // A followed folder's file that changes is shared again
                    // once hashed, as its new files are.
                    let republish = (f.is_published || f.publish_when_hashed)
                        && f.folder.as_ref().is_some_and(|p| {
                            self.folders.iter().any(|d| &d.path == p && d.publish)
                        });
                    f.publish_when_hashed = republish;
                    f.status = Status::Changed;
                    f.size = size;
                    f.modified = modified;
                    (f.dev, f.ino) = (dev, ino);
                    f.sha256 = None;
                    f.root = None;
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
            pieces: f
                .root
                .as_deref()
                .filter(|_| f.sha256.is_some())
                .and_then(|r| pieces::path(&self.data_dir, r)),
        })
    }

    fn file_changed(&mut self, name: &str) {
        if self.suspects.len() < 1024 && !self.suspects.iter().any(|s| s == name) {
            self.suspects.push(name.to_owned());
        }
    }
}

/// A root is kept only while its digest list is in the piece store with the
/// length the file's size implies; otherwise the file is hashed again.
fn forget_root_without_digests(data_dir: &Path, f: &mut TrackedFile) {
    let Some(root) = f.root.as_deref() else {
        return;
    };
    let want = pieces::piece_count(f.size).saturating_mul(pieces::DIGEST_LEN as u64);
    let stored = pieces::path(data_dir, root)
        .and_then(|p| fs::metadata(p).ok())
        .is_some_and(|m| m.is_file() && m.len() == want);
    if !stored || f.sha256.is_none() {
        f.root = None;
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

#[cfg(test)]
mod tests;
