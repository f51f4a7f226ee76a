//! The folders a user follows (docs/client-api.md, "Followed folders"):
//! kept in `files.json` beside the files, and what a listing of one means
//! for the catalog — new files tracked (to be hashed, and published once
//! hashed when the folder says so), name collisions and unreadable entries
//! shown as sentences instead of dropped, files gone from the folder
//! forgotten. Pure decisions: the listing itself runs on a worker
//! (`Sandbox::list_folder`), and the node does what the result says.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{Catalog, Status, TrackedFile};
use crate::node::sandbox::{Accepted, FolderListing};

/// Folders one user may follow: each is listed every rescan.
pub const MAX_FOLDERS: usize = 64;
/// Skipped entries kept per folder (the listing caps its own too).
const MAX_SKIPPED: usize = 200;

fn yes() -> bool {
    true
}

/// An entry of a followed folder that is not tracked from it, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Folder {
    /// As the user gave it (absolute).
    pub path: String,
    /// With every symlink resolved when it was added: what is listed,
    /// beneath its share root.
    pub real: PathBuf,
    #[serde(default)]
    pub recursive: bool,
    /// Publish its new files once hashed.
    #[serde(default = "yes")]
    pub publish: bool,
    pub added_at: f64,
    /// Unix time the last listing came back (not kept across restarts:
    /// the first rescan after a start sets it).
    #[serde(skip)]
    pub last_scan: Option<f64>,
    #[serde(skip)]
    pub skipped: Vec<Skipped>,
}

/// What a listing changed: files to hash, files forgotten (to unpublish
/// if they were published).
#[derive(Debug, Default)]
pub struct Scanned {
    pub added: Vec<String>,
    pub forgotten: Vec<TrackedFile>,
}

/// A folder no longer followed, with what became of its files, so a
/// failed save can put it all back.
#[derive(Debug)]
pub struct Unfollowed {
    pub folder: Folder,
    /// Still tracked, no longer from the folder.
    pub kept: Vec<String>,
    /// Forgotten with it (`remove_files`).
    pub removed: Vec<TrackedFile>,
}

/// A path as the user typed it, without trailing slashes ("/a/b/" is "/a/b").
pub fn trim_path(path: &str) -> &str {
    let t = path.trim_end_matches('/');
    if t.is_empty() {
        "/"
    } else {
        t
    }
}

impl Folder {
    fn shown(&self, rel: &Path) -> String {
        Path::new(&self.path).join(rel).display().to_string()
    }
}

impl Catalog {
    pub fn folders(&self) -> &[Folder] {
        &self.folders
    }

    fn folder_index(&self, path: &str) -> Option<usize> {
        let path = trim_path(path);
        self.folders
            .iter()
            .position(|d| d.path == path || d.real.as_os_str() == path)
    }

    pub fn folder(&self, path: &str) -> Option<&Folder> {
        self.folder_index(path).map(|i| &self.folders[i])
    }

    /// Files tracked from the folder `path`.
    pub fn folder_files(&self, path: &str) -> usize {
        self.files
            .values()
            .filter(|f| f.folder.as_deref() == Some(path))
            .count()
    }

    /// Follows the folder `path` (checked by the sandbox; `real` resolved).
    /// The same folder again (by its resolved path) takes the new flags.
    /// Returns the folder as it was before, to undo a change that could
    /// not be saved ([`Catalog::restore_folder`]).
    pub fn follow(
        &mut self,
        path: &str,
        real: PathBuf,
        recursive: bool,
        publish: bool,
        now: f64,
    ) -> Result<Option<Folder>, (u16, String)> {
        let path = trim_path(path).to_owned();
        if let Some(d) = self.folders.iter_mut().find(|d| d.real == real) {
            let before = d.clone();
            d.recursive = recursive;
            d.publish = publish;
            self.touch();
            return Ok(Some(before));
        }
        if self.folders.len() >= MAX_FOLDERS {
            return Err((
                409,
                format!("You follow {MAX_FOLDERS} folders already; stop following one before adding another"),
            ));
        }
        self.folders.push(Folder {
            path,
            real,
            recursive,
            publish,
            added_at: now,
            last_scan: None,
            skipped: Vec::new(),
        });
        self.touch();
        Ok(None)
    }

    /// Undoes [`Catalog::follow`]: `before` back, or the folder unfollowed.
    pub fn restore_folder(&mut self, real: &Path, before: Option<Folder>) {
        let at = self.folders.iter().position(|d| d.real == real);
        match (at, before) {
            (Some(i), Some(b)) => {
                self.folders[i].recursive = b.recursive;
                self.folders[i].publish = b.publish;
            }
            (Some(i), None) => {
                self.folders.remove(i);
            }
            (None, Some(b)) => self.folders.push(b),
            (None, None) => return,
        }
        self.touch();
    }

    /// Stops following `path`; its files stay tracked (no longer from a
    /// folder) unless `remove_files`.
    pub fn unfollow(&mut self, path: &str, remove_files: bool) -> Option<Unfollowed> {
        let folder = self.folders.remove(self.folder_index(path)?);
        let mine: Vec<String> = self
            .files
            .values()
            .filter(|f| f.folder.as_deref() == Some(folder.path.as_str()))
            .map(|f| f.name.clone())
            .collect();
        let mut out = Unfollowed {
            folder,
            kept: Vec::new(),
            removed: Vec::new(),
        };
        for name in mine {
            if remove_files {
                if let Some(f) = self.files.remove(&name) {
                    out.removed.push(f);
                }
            } else if let Some(f) = self.files.get_mut(&name) {
                f.folder = None;
                out.kept.push(name);
            }
        }
        self.touch();
        Some(out)
    }

    /// Undoes [`Catalog::unfollow`] (a save failed). Returns the names of
    /// removed files put back.
    pub fn refollow(&mut self, u: Unfollowed) -> Vec<String> {
        let path = u.folder.path.clone();
        if self.folder_index(&path).is_none() {
            self.folders.push(u.folder);
        }
        for name in u.kept {
            if let Some(f) = self.files.get_mut(&name) {
                f.folder = Some(path.clone());
            }
        }
        let mut back = Vec::new();
        for f in u.removed {
            let name = f.name.clone();
            if self.reinsert(f) {
                back.push(name);
            }
        }
        self.touch();
        back
    }

    /// What each followed folder's listing job needs: (resolved path, recursive).
    pub fn folder_jobs(&self) -> Vec<(PathBuf, bool)> {
        self.folders
            .iter()
            .map(|d| (d.real.clone(), d.recursive))
            .collect()
    }

    /// [`Catalog::folders_scanned`] for one folder.
    pub fn folder_scanned(
        &mut self,
        real: &Path,
        listing: Result<FolderListing, String>,
        now: f64,
    ) -> Scanned {
        self.folders_scanned(vec![(real.to_path_buf(), listing)], now)
    }

    /// Folds in the listings of followed folders (by resolved path) (made on a
    /// worker): new regular files are tracked from it (the same insert as
    /// `/add-file`, with what the listing saw), a name already tracked
    /// from elsewhere is noted as a collision, and — when the listing is
    /// complete — files from the folder that are no longer in it are
    /// forgotten. A folder that cannot be listed changes nothing but its note.
    pub fn folders_scanned(
        &mut self,
        listings: Vec<(PathBuf, Result<FolderListing, String>)>,
        now: f64,
    ) -> Scanned {
        // Tracked files by resolved path and by path as given, built once
        // per batch: one lookup per listed file, not a walk of the catalog
        // per file (10,000 × 10,000) nor an index per folder. An entry
        // may go stale within the batch; a hit is checked against the file.
        let mut index: HashMap<PathBuf, String> = HashMap::with_capacity(self.files.len() * 2);
        for f in self.files.values() {
            index.insert(f.real_path(), f.name.clone());
            index.insert(PathBuf::from(&f.path), f.name.clone());
        }
        let mut out = Scanned::default();
        for (real, listing) in listings {
            self.scan_one(&mut index, &real, listing, now, &mut out);
        }
        out
    }

    fn scan_one(
        &mut self,
        index: &mut HashMap<PathBuf, String>,
        real: &Path,
        listing: Result<FolderListing, String>,
        now: f64,
        out: &mut Scanned,
    ) {
        let Some(i) = self.folders.iter().position(|d| d.real == real) else {
            return;
        };
        let folder = self.folders[i].clone();
        let listing = match listing {
            Ok(l) => l,
            Err(why) => {
                let d = &mut self.folders[i];
                d.last_scan = Some(now);
                d.skipped = vec![Skipped {
                    path: folder.path.clone(),
                    reason: why,
                }];
                return;
            }
        };
        let mut skipped: Vec<Skipped> = listing
            .skipped
            .iter()
            .map(|(rel, why)| Skipped {
                path: folder.shown(Path::new(rel)),
                reason: why.clone(),
            })
            .collect();
        let mut seen: HashSet<PathBuf> = HashSet::with_capacity(listing.files.len());
        for found in listing.files {
            let real_file = folder.real.join(&found.rel);
            let path = folder.shown(&found.rel);
            seen.insert(real_file.clone());
            let is_it = |f: &TrackedFile| f.real_path() == real_file || f.path == path;
            let existing = [index.get(&real_file), index.get(Path::new(&path))]
                .into_iter()
                .flatten()
                .find(|name| self.files.get(*name).is_some_and(is_it))
                .cloned();
            if let Some(f) = existing.and_then(|name| self.files.get_mut(&name)) {
                // Added by hand before the folder was followed: from it now.
                if f.folder.is_none() {
                    f.folder = Some(folder.path.clone());
                    self.version += 1;
                }
                continue;
            }
            let accepted = Accepted {
                real: real_file.clone(),
                id: found.id,
            };
            match self.insert_accepted(&path, now, accepted) {
                Ok((name, true)) => {
                    index.insert(real_file, name.clone());
                    if let Some(f) = self.files.get_mut(&name) {
                        f.folder = Some(folder.path.clone());
                        f.publish_when_hashed = folder.publish;
                    }
                    out.added.push(name);
                }
                Ok((_, false)) => {}
                Err((409, _)) => {
                    let name = found
                        .rel
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    let other = self.files.get(&name).map(|f| f.path.clone());
                    skipped.push(Skipped {
                        path,
                        reason: format!(
                            "A file named '{name}' is already tracked from {}; rename one of them to share both",
                            other.as_deref().unwrap_or("elsewhere")
                        ),
                    });
                }
                Err((_, why)) => skipped.push(Skipped { path, reason: why }),
            }
        }
        if listing.complete {
            let gone: Vec<String> = self
                .files
                .values()
                .filter(|f| f.folder.as_deref() == Some(folder.path.as_str()))
                .filter(|f| !seen.contains(&f.real_path()))
                .map(|f| f.name.clone())
                .collect();
            for name in gone {
                if let Some(f) = self.remove(&name) {
                    out.forgotten.push(f);
                }
            }
        }
        if skipped.len() > MAX_SKIPPED {
            let more = skipped.len() - MAX_SKIPPED;
            skipped.truncate(MAX_SKIPPED);
            skipped.push(Skipped {
                path: folder.path.clone(),
                reason: format!("…and {more} more entries not followed"),
            });
        }
        let d = &mut self.folders[i];
        d.last_scan = Some(now);
        d.skipped = skipped;
    }

    /// Files waiting to be published whose hash is known (after a restart
    /// that came between their hash and their publish).
    pub fn publish_due(&self) -> Vec<String> {
        self.files
            .values()
            .filter(|f| {
                f.publish_when_hashed
                    && !f.is_published
                    && !f.hashing
                    && !f.changing
                    && f.sha256.is_some()
                    && f.status != Status::Missing
            })
            .map(|f| f.name.clone())
            .collect()
    }

    /// A folder as `GET /folders` shows it.
    pub fn folder_json(&self, d: &Folder) -> Value {
        let skipped: Vec<Value> = d
            .skipped
            .iter()
            .map(|s| json!({"path": s.path, "reason": s.reason}))
            .collect();
        json!({
            "path": d.path,
            "recursive": d.recursive,
            "publish": d.publish,
            "added_at": d.added_at,
            "files": self.folder_files(&d.path),
            "last_scan": d.last_scan,
            "skipped": skipped,
        })
    }
}
