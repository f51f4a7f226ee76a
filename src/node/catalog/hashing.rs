//! Work that may block, run on the node's worker pool: SHA-256 of a tracked
//! file with its piece digests and `root` (one pass of 1 MiB reads, the
//! digests then kept in the piece store, `pieces.rs`) and `stat` sweeps over
//! many files. Every
//! file is opened through the [`Sandbox`] (beneath its share root, no
//! symlink followed), so a swapped-in symlink cannot redirect a hash or a
//! rescan; results go back to the loop as [`WorkDone`].

use std::io::{ErrorKind, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::node::catalog::pieces::{self, FileHasher};
use crate::node::sandbox::mtime_secs;
use crate::node::sandbox::{FolderListing, Sandbox};

const READ_CHUNK: usize = 1024 * 1024;

/// What a `stat` of a tracked path found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Gone, no longer a regular file, or no longer reachable the safe way
    /// (a symlink on the path, outside the share roots now).
    Missing,
    Present {
        size: u64,
        modified: f64,
        dev: u64,
        ino: u64,
    },
}

/// What is at a tracked (resolved) path now, looked at through the sandbox
/// with an `O_PATH` descriptor (no data read, never blocks on a FIFO).
pub fn observe(sandbox: &Sandbox, path: &Path) -> Observation {
    match sandbox.open_read(path, libc::O_PATH) {
        Ok((_, m)) => Observation::Present {
            size: m.len(),
            modified: mtime_secs(&m),
            dev: m.dev(),
            ino: m.ino(),
        },
        Err(_) => Observation::Missing,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashResult {
    Ok {
        sha256: String,
        /// The piece root; None when its digests could not be stored (the
        /// file is still served whole, and hashed again at the next start).
        root: Option<String>,
        size: u64,
        modified: f64,
        dev: u64,
        ino: u64,
    },
    /// The file changed while it was read: hash it again (later).
    Changed,
    Failed(String),
}

/// One file to hash; `gen` lets the catalog ignore results it no longer wants.
#[derive(Debug, Clone)]
pub struct HashJob {
    pub user: String,
    pub name: String,
    pub gen: u64,
    /// The resolved path, opened beneath its share root.
    pub path: PathBuf,
    pub sandbox: Arc<Sandbox>,
    /// The node's data directory, where the piece store is.
    pub data_dir: Arc<Path>,
}

/// A finished job, handed back to the loop.
#[derive(Debug)]
pub enum WorkDone {
    Hash {
        job: HashJob,
        result: HashResult,
    },
    Scan {
        user: String,
        seen: Vec<(String, Observation)>,
    },
    /// The listings of one user's followed folders, by resolved path.
    Folders {
        user: String,
        listings: Vec<(PathBuf, Result<FolderListing, String>)>,
    },
}

/// Runs `job`: [`hash_file`], then the digests go to the piece store.
pub fn run(job: &HashJob) -> HashResult {
    let (result, digests) = hash_file(&job.sandbox, &job.path);
    match result {
        HashResult::Ok {
            sha256,
            root: Some(root),
            size,
            modified,
            dev,
            ino,
        } => {
            let root = match pieces::store(&job.data_dir, &root, &digests) {
                Ok(_) => Some(root),
                Err(e) => {
                    crate::log_warn!(
                        "{}: cannot keep the piece digests of {:?}: {e}",
                        job.user,
                        job.name
                    );
                    None
                }
            };
            HashResult::Ok {
                sha256,
                root,
                size,
                modified,
                dev,
                ino,
            }
        }
        other => other,
    }
}

/// SHA-256, piece digests and root of the file in one read pass, checking
/// that its size and mtime did not move meanwhile. The digests come back
/// beside the result (empty unless it is `Ok`).
pub fn hash_file(sandbox: &Sandbox, path: &Path) -> (HashResult, Vec<u8>) {
    let failed = |e: std::io::Error| {
        HashResult::Failed(match e.kind() {
            ErrorKind::NotFound => format!("{} no longer exists", path.display()),
            ErrorKind::PermissionDenied => format!("{} is not readable", path.display()),
            _ => format!("reading {} failed: {e}", path.display()),
        })
    };
    let (mut f, before) = match sandbox.open_read(path, libc::O_RDONLY) {
        Ok(opened) => opened,
        Err(e) if e.raw_os_error().is_none() => {
            return (HashResult::Failed(e.to_string()), Vec::new())
        }
        Err(e) => return (failed(e), Vec::new()),
    };
    let mut h = FileHasher::new();
    let mut buf = vec![0u8; READ_CHUNK];
    let mut total = 0u64;
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                h.update(&buf[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return (failed(e), Vec::new()),
        }
    }
    // The descriptor read, not the path: what was hashed is this inode.
    let after = match f.metadata() {
        Ok(m) => m,
        Err(e) => return (failed(e), Vec::new()),
    };
    let (size, modified) = (before.len(), mtime_secs(&before));
    if total != size || after.len() != size || mtime_secs(&after) != modified {
        return (HashResult::Changed, Vec::new());
    }
    let hashed = h.finish();
    let result = HashResult::Ok {
        sha256: hashed.sha256,
        root: Some(hashed.root),
        size,
        modified,
        dev: before.dev(),
        ino: before.ino(),
    };
    (result, hashed.digests)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::hex;
    use sha2::{Digest, Sha256};

    fn sandbox(dir: &Path) -> Sandbox {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        Sandbox::new(&[dir.to_path_buf()], &[], &data, false).unwrap()
    }

    #[test]
    fn hashes_streamed_content() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let sb = sandbox(&dir);
        let p = dir.join("f");
        std::fs::write(&p, b"abc").unwrap();
        match hash_file(&sb, &p).0 {
            HashResult::Ok { sha256, size, .. } => {
                assert_eq!(size, 3);
                assert_eq!(
                    sha256,
                    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
                );
            }
            other => panic!("{other:?}"),
        }
        // Larger than one read: the same digest as hashing it whole.
        let big: Vec<u8> = (0..READ_CHUNK * 2 + 7).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &big).unwrap();
        let want = hex(&Sha256::digest(&big));
        assert!(matches!(hash_file(&sb, &p).0, HashResult::Ok { sha256, .. } if sha256 == want));
    }

    #[test]
    fn reports_missing_and_non_regular_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let sb = sandbox(&dir);
        let gone = dir.join("gone");
        assert!(
            matches!(hash_file(&sb, &gone).0, HashResult::Failed(m) if m.contains("no longer exists"))
        );
        assert_eq!(observe(&sb, &gone), Observation::Missing);
        assert_eq!(observe(&sb, &dir), Observation::Missing);
        std::fs::create_dir(dir.join("sub")).unwrap();
        assert_eq!(observe(&sb, &dir.join("sub")), Observation::Missing);
        std::fs::write(&gone, b"12345").unwrap();
        assert!(matches!(
            observe(&sb, &gone),
            Observation::Present { size: 5, .. }
        ));
        // A symlink swapped in is "missing", not what it points to.
        std::fs::remove_file(&gone).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", &gone).unwrap();
        assert_eq!(observe(&sb, &gone), Observation::Missing);
        assert!(matches!(hash_file(&sb, &gone).0, HashResult::Failed(_)));
    }
}
