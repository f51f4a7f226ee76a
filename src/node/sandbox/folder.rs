//! Followed folders (docs/client-api.md, "Followed folders"): which folder
//! a user may follow, and listing one the safe way — opened beneath its
//! share root like a shared file (docs/trust.md), walked through
//! descriptors with `O_NOFOLLOW`, so a folder or subfolder swapped for a
//! symlink lists nothing from where it points. Blocking (realpath, opens,
//! readdir, a stat per entry): run on the store thread or a worker.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::fs::{hidden_part, open_beneath, openat, pseudo_fs};
use super::{beneath, list, Identity, Refusal, Root, Sandbox};

/// Files followed per folder at most; past it the listing says so.
pub const MAX_FOLDER_FILES: usize = 10_000;
/// Subfolders deeper than this below a followed folder are not walked.
pub const MAX_DEPTH: usize = 16;
/// Entries noted as skipped per listing at most (memory stays bounded).
pub const MAX_SKIPPED: usize = 100;

/// A regular file found in a followed folder.
#[derive(Debug, Clone)]
pub struct Found {
    /// Below the folder (plain names).
    pub rel: PathBuf,
    pub id: Identity,
}

/// What a listing of a followed folder found.
#[derive(Debug, Default)]
pub struct FolderListing {
    pub files: Vec<Found>,
    /// `(path below the folder, why)`: entries shown to the user as not followed.
    pub skipped: Vec<(String, String)>,
    /// Every entry was looked at (no cap hit, nothing unreadable): files
    /// of the folder not listed are gone.
    pub complete: bool,
}

impl FolderListing {
    fn skip(&mut self, rel: &Path, why: String) {
        if self.skipped.len() < MAX_SKIPPED {
            self.skipped.push((rel.display().to_string(), why));
        }
    }
}

impl Sandbox {
    /// The rules for a folder to follow, with every symlink resolved: under
    /// a share root (the root itself is fine), not the data directory,
    /// nothing hidden. Pure.
    fn folder_rule(&self, real: &Path, shown: &str) -> Result<(&Root, PathBuf), Refusal> {
        if real.starts_with(&self.data.path) || self.data.path.starts_with(real) {
            return Err((
                403,
                format!(
                    "{shown} is, or holds, the node's data directory ({}), which is never shared; choose a folder with only your own files",
                    self.data.path.display()
                ),
            ));
        }
        let Some((root, rel)) = beneath(&self.share, real) else {
            return Err((
                403,
                format!(
                    "You can only share folders inside {} (the node's share roots; the operator sets them with --share-root)",
                    list(&self.share)
                ),
            ));
        };
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&rel) {
                return Err((
                    403,
                    format!(
                        "{shown} is hidden or inside a hidden folder ('{h}'); the node shares hidden folders only when its operator starts it with --share-hidden"
                    ),
                ));
            }
        }
        Ok((root, rel))
    }

    /// Whether a followed folder (resolved) is still allowed by the rules
    /// (at load: the operator may have changed the roots). Pure.
    pub fn folder_allowed(&self, real: &Path) -> Result<(), String> {
        let shown = real.display().to_string();
        self.folder_rule(real, &shown)
            .map(|_| ())
            .map_err(|(_, m)| m)
    }

    /// `add-folder`'s check of a folder as the user gave it (absolute):
    /// not a symlink itself, a folder under a share root by the rules
    /// above, and openable beneath its root. Returns the resolved path.
    pub fn check_folder(&self, path: &str) -> Result<PathBuf, Refusal> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err((
                    403,
                    format!("{path} is a link to another place; the node follows only real folders, so choose the folder itself"),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err((404, format!("There is no folder {path}")))
            }
            Err(_) => return Err((403, format!("The node may not read {path}"))),
        }
        let real = std::fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => (404, format!("There is no folder {path}")),
            _ => (403, format!("The node may not read {path}")),
        })?;
        let (root, rel) = self.folder_rule(&real, path)?;
        let dir = open_dir(root, &rel).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                (
                    400,
                    format!("{path} is a file, not a folder: add it as a file instead"),
                )
            } else {
                (
                    403,
                    format!("The node cannot open the folder {path}; check that it may read it"),
                )
            }
        })?;
        if let Some(fs) = pseudo_fs(dir.as_raw_fd()) {
            return Err((
                403,
                format!("{path} is on a pseudo file system ({fs}), whose files are never shared"),
            ));
        }
        Ok(real)
    }

    /// Lists the followed folder `real` (as resolved when it was added):
    /// its regular files (and its subfolders' when `recursive`, at most
    /// [`MAX_DEPTH`] deep), at most [`MAX_FOLDER_FILES`]; nothing hidden
    /// (no dot entry at all), no symlink followed, never the data
    /// directory. Symlinks, unreadable entries and the cap are noted in
    /// `skipped`. Err: the folder itself cannot be listed (gone, refused
    /// now, replaced by a symlink), as a sentence.
    pub fn list_folder(&self, real: &Path, recursive: bool) -> Result<FolderListing, String> {
        let shown = real.display().to_string();
        let (root, rel) = self.folder_rule(real, &shown).map_err(|(_, m)| m)?;
        let top = open_dir(root, &rel).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => format!("The folder {shown} no longer exists"),
            Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV) => format!(
                "{shown} is no longer a real folder (a link or a file took its place); nothing in it is followed"
            ),
            _ => format!("The node cannot open the folder {shown}"),
        })?;
        if let Some(fs) = pseudo_fs(top.as_raw_fd()) {
            return Err(format!(
                "{shown} is on a pseudo file system ({fs}), whose files are never shared"
            ));
        }
        let mut out = FolderListing {
            complete: true,
            ..FolderListing::default()
        };
        // Depth-first with an explicit stack: one open descriptor per level.
        let mut stack: Vec<(OwnedFd, PathBuf, usize)> = vec![(top, PathBuf::new(), 0)];
        while let Some((dir, below, depth)) = stack.pop() {
            let names = match read_names(&dir) {
                Ok(n) => n,
                Err(_) => {
                    out.complete = false;
                    out.skip(&below, "This folder cannot be read by the node".into());
                    continue;
                }
            };
            for name in names {
                // Never a dot entry inside a followed folder, whatever
                // --share-hidden says (it governs what a user may pick by
                // hand): settings, caches and editors' swap files would be
                // published as they are written, as `p2pshare share DIR`
                // skips them too.
                if name.starts_with('.') {
                    continue;
                }
                let rel_entry = below.join(&name);
                if real.join(&rel_entry).starts_with(&self.data.path) {
                    continue;
                }
                let Some(st) = lstat_at(&dir, &name) else {
                    out.complete = false;
                    out.skip(&rel_entry, "It could not be read".into());
                    continue;
                };
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG => {
                        if out.files.len() >= MAX_FOLDER_FILES {
                            out.complete = false;
                            out.skip(
                                &rel_entry,
                                format!("The folder has more than {MAX_FOLDER_FILES} files; only the first {MAX_FOLDER_FILES} are followed"),
                            );
                            return Ok(out);
                        }
                        if !readable_at(&dir, &name) {
                            out.skip(&rel_entry, "The node may not read this file".into());
                            continue;
                        }
                        out.files.push(Found {
                            rel: rel_entry,
                            id: identity_of(&st),
                        });
                    }
                    libc::S_IFDIR if recursive => {
                        if depth + 1 > MAX_DEPTH {
                            out.skip(
                                &rel_entry,
                                format!(
                                    "Folders more than {MAX_DEPTH} levels deep are not followed"
                                ),
                            );
                            continue;
                        }
                        let Ok(c) = CString::new(name.as_bytes()) else {
                            continue;
                        };
                        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW;
                        match openat(dir.as_raw_fd(), &c, flags, 0) {
                            Ok(sub) if pseudo_fs(sub.as_raw_fd()).is_none() => {
                                stack.push((sub, rel_entry, depth + 1))
                            }
                            Ok(_) => {}
                            Err(_) => {
                                out.complete = false;
                                out.skip(
                                    &rel_entry,
                                    "This folder cannot be read by the node".into(),
                                );
                            }
                        }
                    }
                    libc::S_IFDIR => {}
                    libc::S_IFLNK => out.skip(
                        &rel_entry,
                        "It is a link to another place; links are never followed".into(),
                    ),
                    _ => {}
                }
            }
        }
        Ok(out)
    }
}

fn open_dir(root: &Root, rel: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, rel, libc::O_RDONLY | libc::O_DIRECTORY)
}

/// The entry names of an open folder (UTF-8 names only: others cannot be
/// shared under a name anyway).
fn read_names(dir: &OwnedFd) -> io::Result<Vec<String>> {
    // Read through the descriptor, as the picker does: the folder opened
    // beneath the root, not a path that could be swapped meanwhile.
    let fd_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&fd_path)?.flatten() {
        if let Ok(n) = entry.file_name().into_string() {
            names.push(n);
        }
    }
    names.sort();
    Ok(names)
}

fn lstat_at(dir: &OwnedFd, name: &str) -> Option<libc::stat> {
    let c = CString::new(name).ok()?;
    // SAFETY: a zeroed stat is valid plain data for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory descriptor, a NUL-terminated name and a
    // buffer we own; AT_SYMLINK_NOFOLLOW keeps links as links.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    (rc == 0).then_some(st)
}

/// Whether the node may read the entry (no open: a listing of 10,000
/// files stays cheap).
fn readable_at(dir: &OwnedFd, name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: a valid directory descriptor and a NUL-terminated name.
    unsafe { libc::faccessat(dir.as_raw_fd(), c.as_ptr(), libc::R_OK, libc::AT_EACCESS) == 0 }
}

fn identity_of(st: &libc::stat) -> Identity {
    Identity {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        modified: st.st_mtime as f64 + st.st_mtime_nsec as f64 / 1e9,
    }
}
