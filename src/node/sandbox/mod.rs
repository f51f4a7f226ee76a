//! Which paths a node's users may read and write, and opening them safely.
//! The operator grants folders (share roots, download roots); this module
//! owns the rules (under a root after every symlink is resolved, never the
//! node's data directory, nothing hidden unless allowed, no pseudo file
//! systems, regular files only) and the only ways the node opens a user's
//! files: beneath a descriptor of the root, never following a symlink, so a
//! symlink swapped in after a check cannot redirect a read or a write. It
//! keeps no per-user state and does no I/O of its own beyond the calls
//! made on it; callers decide whether a call may run on the loop.
//!
//! The rules and the `Sandbox` are here; the system calls that open beneath
//! a root are in `fs`, where a download is written (`Place`, `Dir`) in `place`,
//! which folders a user may follow and how one is listed in `folder`.

mod folder;
mod fs;
mod listing;
mod place;
#[cfg(test)]
mod tests;

use std::ffi::{OsStr, OsString};
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

pub use folder::{FolderListing, Found, MAX_FOLDER_FILES};
use fs::*;
pub use place::{Dir, Entry, Place};

/// A folder the operator granted, opened once at start: every later open
/// resolves beneath this descriptor, so renaming or replacing the folder's
/// path afterwards cannot move what the node reaches.
pub struct Root {
    pub path: PathBuf,
    fd: OwnedFd,
}

impl Root {
    fn open(path: &Path) -> io::Result<Root> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: a valid NUL-terminated path; the descriptor is owned below.
        let fd = unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Root {
            path: path.to_path_buf(),
            // SAFETY: a fresh descriptor nobody else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }
}

/// Who the file is: the node serves and hashes a tracked file only while
/// the descriptor it opens shows the same device and inode.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Unix seconds (fractional).
    pub modified: f64,
}

impl Identity {
    pub fn of(m: &Metadata) -> Identity {
        Identity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.len(),
            modified: mtime_secs(m),
        }
    }
}

/// A file accepted by [`Sandbox::check_add`]: its path with every symlink
/// resolved, and what it was when checked.
#[derive(Debug)]
pub struct Accepted {
    pub real: PathBuf,
    pub id: Identity,
}

/// An HTTP status and a sentence for the user.
pub type Refusal = (u16, String);

pub struct Sandbox {
    share: Vec<Arc<Root>>,
    download: Vec<Arc<Root>>,
    /// The data directory (canonical); its `users/<u>/downloads` folders
    /// are the only part of it anyone may write into, and none is shared.
    data: Arc<Root>,
    hidden_ok: bool,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Sandbox(share: {}; download: {}; data: {})",
            list(&self.share),
            list(&self.download),
            self.data.path.display()
        )
    }
}

fn list(roots: &[Arc<Root>]) -> String {
    roots
        .iter()
        .map(|r| r.path.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn canonical_root(flag: &str, p: &Path) -> Result<Arc<Root>, String> {
    let real = std::fs::canonicalize(p).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            format!("{flag} {}: no such folder", p.display())
        } else {
            format!("{flag} {}: {e}", p.display())
        }
    })?;
    if !real.is_dir() {
        return Err(format!("{flag} {}: not a folder", p.display()));
    }
    Root::open(&real)
        .map(Arc::new)
        .map_err(|e| format!("{flag} {}: cannot open it: {e}", p.display()))
}

/// The longest root that holds `path`, and the rest of the path below it.
fn beneath<'a>(roots: &'a [Arc<Root>], path: &Path) -> Option<(&'a Arc<Root>, PathBuf)> {
    roots
        .iter()
        .filter_map(|r| path.strip_prefix(&r.path).ok().map(|rel| (r, rel)))
        .max_by_key(|(r, _)| r.path.as_os_str().len())
        .map(|(r, rel)| (r, rel.to_path_buf()))
}

impl Sandbox {
    /// Canonicalises and opens the roots (a missing one is a start-up error
    /// naming its flag). `data_dir` must exist already.
    pub fn new(
        share_roots: &[PathBuf],
        download_roots: &[PathBuf],
        data_dir: &Path,
        hidden_ok: bool,
    ) -> Result<Sandbox, String> {
        let share = share_roots
            .iter()
            .map(|p| canonical_root("--share-root", p))
            .collect::<Result<Vec<_>, _>>()?;
        let download = download_roots
            .iter()
            .map(|p| canonical_root("--download-root", p))
            .collect::<Result<Vec<_>, _>>()?;
        let data = canonical_root("--data-dir", data_dir)?;
        Ok(Sandbox {
            share,
            download,
            data,
            hidden_ok,
        })
    }

    pub fn share_roots(&self) -> impl Iterator<Item = &Path> {
        self.share.iter().map(|r| r.path.as_path())
    }

    fn outside_share_roots(&self) -> Refusal {
        (
            403,
            format!(
                "You can only share files inside {} (the node's share roots; the operator sets them with --share-root)",
                list(&self.share)
            ),
        )
    }

    /// The reading rules for a path with every symlink resolved: the share
    /// root it is under and the path below it. Pure: no file system access.
    ///
    /// One part of the data directory is readable: the files a fetch saved in
    /// a user's downloads folder (`users/<name>/downloads/…`), so what a user
    /// fetched can be shared back. Nothing else of it ever is (secrets,
    /// catalogs, credentials), and a user can never *add* a path there by
    /// hand ([`Sandbox::check_add`]): only a finished fetch tracks one, for the
    /// user who fetched it.
    pub fn read_rule(&self, real: &Path) -> Result<(&Arc<Root>, PathBuf), Refusal> {
        if let Some(rel) = self.in_downloads(real) {
            return Ok((&self.data, rel));
        }
        if real.starts_with(&self.data.path) {
            return Err((
                403,
                format!(
                    "{} is inside the node's data directory ({}), which is never shared",
                    real.display(),
                    self.data.path.display()
                ),
            ));
        }
        let Some((root, rel)) = beneath(&self.share, real) else {
            return Err(self.outside_share_roots());
        };
        if rel.as_os_str().is_empty() {
            return Err(self.outside_share_roots());
        }
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&rel) {
                return Err((
                    403,
                    format!(
                        "{} is hidden or inside a hidden folder ('{h}'); the node shares hidden files only when its operator starts it with --share-hidden",
                        real.display()
                    ),
                ));
            }
        }
        Ok((root, rel))
    }

    /// Opens a tracked file (its resolved path) for reading the safe way,
    /// checking the rules again: beneath its root, no symlink, a regular
    /// file, not on a pseudo file system. `O_PATH` in `flags` gives a
    /// descriptor for `fstat` only (rescans). Never blocks on a FIFO.
    pub fn open_read(&self, real: &Path, flags: i32) -> io::Result<(File, Metadata)> {
        let (root, rel) = self
            .read_rule(real)
            .map_err(|(_, msg)| io::Error::new(io::ErrorKind::PermissionDenied, msg))?;
        let fd = open_beneath(root, &rel, flags | libc::O_NONBLOCK)?;
        let file = File::from(fd);
        let meta = file.metadata()?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a folder, not a file: add the files in it (Browse… in the web UI, or `p2pshare share FOLDER`)"
            } else {
                "not a regular file"
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is {what}", real.display()),
            ));
        }
        if let Some(fs) = pseudo_fs(file.as_raw_fd()) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is on a pseudo file system ({fs}), whose files are never shared",
                    real.display()
                ),
            ));
        }
        Ok((file, meta))
    }

    /// The path below the data directory when `real` is a file inside some
    /// user's downloads folder (not the folder itself, nothing hidden).
    fn in_downloads(&self, real: &Path) -> Option<PathBuf> {
        let rel = real.strip_prefix(&self.data.path).ok()?;
        let parts: Vec<&OsStr> = rel.iter().collect();
        let ok = parts.len() >= 4
            && parts[0] == "users"
            && parts[1]
                .to_str()
                .is_some_and(crate::proto::names::valid_username)
            && parts[2] == "downloads"
            && parts[3..]
                .iter()
                .all(|p| !p.to_string_lossy().starts_with('.'));
        ok.then(|| rel.to_path_buf())
    }

    /// `add-file`'s check of a path as the user gave it (absolute). Runs a
    /// realpath, an open and two fstat calls: the caller's loop turn pays
    /// for those (as it paid for the stat and open before this check).
    pub fn check_add(&self, path: &str) -> Result<Accepted, Refusal> {
        let real = match std::fs::canonicalize(path) {
            Ok(r) => r,
            Err(e) => return Err(access_error(path, &e)),
        };
        // Downloads are readable for sharing back what was fetched, but a
        // path in the data directory is never added by hand (it could be
        // another user's download).
        if real.starts_with(&self.data.path) {
            return Err(self.in_data_dir(path));
        }
        self.accept(path, real)
    }

    /// A finished fetch's file for `user`: as [`Sandbox::check_add`], and
    /// also a file in that user's own downloads folder.
    pub fn check_fetched(&self, path: &str, user: &str) -> Result<Accepted, Refusal> {
        let real = match std::fs::canonicalize(path) {
            Ok(r) => r,
            Err(e) => return Err(access_error(path, &e)),
        };
        let own = self.data.path.join("users").join(user).join("downloads");
        if real.starts_with(&self.data.path) && !real.starts_with(&own) {
            return Err(self.in_data_dir(path));
        }
        self.accept(path, real)
    }

    fn in_data_dir(&self, path: &str) -> Refusal {
        (
            403,
            format!(
                "{path} is inside the node's data directory ({}), which is never shared",
                self.data.path.display()
            ),
        )
    }

    /// The rules and an open of `real` (the resolved `path`).
    fn accept(&self, path: &str, real: PathBuf) -> Result<Accepted, Refusal> {
        self.read_rule(&real)?;
        match self.open_read(&real, libc::O_RDONLY) {
            Ok((_, meta)) => Ok(Accepted {
                real,
                id: Identity::of(&meta),
            }),
            Err(e) => Err(match e.kind() {
                io::ErrorKind::InvalidInput => {
                    let m = e.to_string();
                    // Name the path as the user gave it.
                    (
                        400,
                        m.replacen(&real.display().to_string(), path, 1),
                    )
                }
                io::ErrorKind::PermissionDenied if e.raw_os_error().is_none() => {
                    (403, e.to_string())
                }
                _ if matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV)
                ) =>
                {
                    (
                        403,
                        format!("{path} changed while it was being checked (a symlink appeared on the way); try again"),
                    )
                }
                _ => access_error(path, &e),
            }),
        }
    }

    // ----- writing -----

    fn write_refusal(&self, dl: &Path) -> Refusal {
        let mut places = vec![format!("your downloads folder ({})", dl.display())];
        if !self.download.is_empty() {
            places.push(format!("the download roots ({})", list(&self.download)));
        }
        places.push(format!("the share roots ({})", list(&self.share)));
        (
            403,
            format!(
                "You can only save downloads inside {} (the operator sets them with --download-root and --share-root)",
                places.join(", ")
            ),
        )
    }

    /// Where a download for `user` may go: `target` (absolute) with every
    /// existing folder on the way resolved, under the user's downloads
    /// folder, a download root or a share root, not elsewhere in the data
    /// directory, nothing hidden below the root. Resolving stats the
    /// folders that exist (the loop pays for that); nothing is created.
    pub fn place(&self, user: &str, target: &Path) -> Result<Place, Refusal> {
        let rel_dl = Path::new("users").join(user).join("downloads");
        let dl = self.data.path.join(&rel_dl);
        if !target.is_absolute() {
            return Err((
                400,
                format!(
                    "'save_path' must be an absolute path, not '{}'",
                    target.display()
                ),
            ));
        }
        let Some(name) = target.file_name().map(OsStr::to_os_string) else {
            return Err((400, format!("{} does not name a file", target.display())));
        };
        // The deepest folder that exists, resolved; the rest must be plain names.
        let mut tail: Vec<OsString> = Vec::new();
        let mut at = target.parent();
        let base = loop {
            let Some(dir) = at else {
                return Err(self.write_refusal(&dl));
            };
            match std::fs::canonicalize(dir) {
                Ok(real) => break real,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match dir.file_name() {
                        Some(n) if n != ".." => tail.push(n.to_os_string()),
                        _ => {
                            return Err((400, format!("{} is not a plain path", target.display())))
                        }
                    }
                    at = dir.parent();
                }
                Err(e) => return Err(access_error(&dir.display().to_string(), &e)),
            }
        };
        let mut real = base;
        for n in tail.iter().rev() {
            if n == "." {
                continue;
            }
            real.push(n);
        }
        // A `..` that does not exist yet cannot be resolved: plain names only.
        if real.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err((400, format!("{} is not a plain path", target.display())));
        }
        real.push(&name);
        // `from_fd`: the path below the root's descriptor; `below`: the part
        // judged for hidden names (below the downloads folder in the data dir).
        let (root, from_fd, below) = if real.starts_with(&self.data.path) {
            match real.strip_prefix(&dl) {
                Ok(rel) => (self.data.clone(), rel_dl.join(rel), rel.to_path_buf()),
                Err(_) => return Err(self.write_refusal(&dl)),
            }
        } else {
            let mut all: Vec<Arc<Root>> = self.download.clone();
            all.extend(self.share.iter().cloned());
            match beneath(&all, &real) {
                Some((r, rel)) => (r.clone(), rel.clone(), rel),
                None => return Err(self.write_refusal(&dl)),
            }
        };
        if below.as_os_str().is_empty() || plain_parts(&from_fd).is_err() {
            return Err(self.write_refusal(&dl));
        }
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&below) {
                return Err((
                    403,
                    format!(
                        "{} is hidden or inside a hidden folder ('{h}'); downloads never go there unless the node runs with --share-hidden",
                        real.display()
                    ),
                ));
            }
        }
        let mut dirs: Vec<OsString> = from_fd.iter().map(OsStr::to_os_string).collect();
        dirs.pop();
        Ok(Place {
            root,
            dirs,
            name,
            path: real,
        })
    }
}

fn access_error(path: &str, e: &io::Error) -> Refusal {
    match e.kind() {
        io::ErrorKind::NotFound => (400, format!("No such file: {path}")),
        io::ErrorKind::PermissionDenied => {
            (400, format!("{path} is not readable (permission denied)"))
        }
        _ => (400, format!("Cannot access {path}: {e}")),
    }
}

/// A file's modification time in Unix seconds (fractional), as the node
/// records it when a file is added.
pub fn mtime_secs(meta: &Metadata) -> f64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
