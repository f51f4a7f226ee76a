//! What the file picker shows (`GET /api/client/browse`, docs/client-api.md):
//! the share roots, or one folder beneath a share root — its folders and
//! regular files, nothing hidden (unless `--share-hidden`), no symlink, never
//! the node's data directory. The folder is opened beneath its root the
//! same way a shared file is (docs/trust.md) and read through that
//! descriptor, so a symlink swapped in cannot widen what a user sees.
//! Blocking (readdir, a stat per entry): run on a worker.

use std::ffi::CStr;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::fs::{hidden_part, open_beneath};
use super::{beneath, list, Refusal, Sandbox};

/// Entries listed per folder at most; the answer says when it stopped.
pub const MAX_ENTRIES: usize = 5000;

impl Sandbox {
    /// The share roots (no `path`), or the folder `path` (absolute).
    pub fn browse(&self, path: Option<&str>) -> Result<Value, Refusal> {
        let Some(path) = path.filter(|p| !p.is_empty()) else {
            let roots: Vec<Value> = self
                .share
                .iter()
                .map(|r| json!({"name": r.path.display().to_string(), "path": r.path, "kind": "dir"}))
                .collect();
            return Ok(
                json!({"success": true, "path": null, "parent": null, "entries": roots, "truncated": false}),
            );
        };
        if !Path::new(path).is_absolute() {
            return Err((
                400,
                format!("Give a full path (starting with /), not '{path}'"),
            ));
        }
        let real = std::fs::canonicalize(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => (404, format!("There is no folder {path}")),
            io::ErrorKind::PermissionDenied => (403, format!("The node may not read {path}")),
            _ => (400, format!("Cannot open {path}: {}", e.kind())),
        })?;
        if real.starts_with(&self.data.path) {
            return Err((403, "The node's data directory is never shared".to_owned()));
        }
        let Some((root, rel)) = beneath(&self.share, &real) else {
            return Err((
                403,
                format!(
                    "You can only share files inside {} (the node's share roots)",
                    list(&self.share)
                ),
            ));
        };
        if !self.hidden_ok {
            if let Some(h) = hidden_part(&rel) {
                return Err((
                    403,
                    format!(
                        "'{h}' is hidden; the node shares hidden files only with --share-hidden"
                    ),
                ));
            }
        }
        let dir = open_beneath(root, &rel, libc::O_RDONLY | libc::O_DIRECTORY).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTDIR) {
                (400, format!("{path} is a file, not a folder"))
            } else {
                (403, format!("The node cannot open the folder {path}"))
            }
        })?;
        let mut entries = Vec::new();
        let mut truncated = false;
        let fd_path = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let read = std::fs::read_dir(&fd_path)
            .map_err(|_| (403, format!("The node cannot read the folder {path}")))?;
        for entry in read.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if (name.starts_with('.') && !self.hidden_ok) || name.is_empty() {
                continue;
            }
            let Some(kind) = stat_kind(&dir, name) else {
                continue;
            };
            let full = real.join(name);
            if full.starts_with(&self.data.path) {
                continue;
            }
            if entries.len() >= MAX_ENTRIES {
                truncated = true;
                break;
            }
            let mut e = json!({"name": name, "path": full, "kind": kind.0});
            if kind.0 == "file" {
                e["size"] = json!(kind.1);
            }
            entries.push(e);
        }
        entries.sort_by(|a, b| {
            let key = |v: &Value| {
                (
                    v["kind"] != "dir",
                    v["name"].as_str().unwrap_or("").to_lowercase(),
                )
            };
            key(a).cmp(&key(b))
        });
        let parent = if rel.as_os_str().is_empty() {
            Value::Null
        } else {
            json!(real.parent())
        };
        Ok(
            json!({"success": true, "path": real, "parent": parent, "entries": entries, "truncated": truncated}),
        )
    }
}

/// "dir" or "file" (with its size) for an entry of `dir`, not following a
/// symlink; anything else (links, devices, sockets) is not listed.
fn stat_kind(dir: &std::os::fd::OwnedFd, name: &str) -> Option<(&'static str, u64)> {
    let c = std::ffi::CString::new(name).ok()?;
    let c: &CStr = &c;
    // SAFETY: a zeroed stat is valid plain data for the kernel to fill.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a valid directory descriptor, a NUL-terminated name and a
    // stat buffer we own; AT_SYMLINK_NOFOLLOW keeps links as links.
    let rc = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return None;
    }
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => Some(("dir", 0)),
        libc::S_IFREG => Some(("file", st.st_size as u64)),
        _ => None,
    }
}
