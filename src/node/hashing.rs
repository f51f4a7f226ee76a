//! Work that may block, run on the node's worker pool: SHA-256 of a tracked
//! file (streamed in 1 MiB reads) and `stat` sweeps over many files. Pure
//! functions of paths; results go back to the loop as [`Done`].

use std::fs::File;
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::peer_server::mtime_secs;

const READ_CHUNK: usize = 1024 * 1024;

/// What a `stat` of a tracked path found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    /// Gone, or no longer a regular file.
    Missing,
    Present {
        size: u64,
        modified: f64,
    },
}

pub fn observe(path: &Path) -> Observation {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Observation::Present {
            size: m.len(),
            modified: mtime_secs(&m),
        },
        _ => Observation::Missing,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum HashResult {
    Ok {
        sha256: String,
        size: u64,
        modified: f64,
    },
    /// The file changed while it was read: hash it again.
    Changed,
    Failed(String),
}

/// One file to hash; `gen` lets the catalog ignore results it no longer wants.
#[derive(Debug, Clone)]
pub struct HashJob {
    pub user: String,
    pub name: String,
    pub gen: u64,
    pub path: PathBuf,
}

/// A finished job, handed back to the loop.
#[derive(Debug)]
pub enum Done {
    Hash {
        job: HashJob,
        result: HashResult,
    },
    Scan {
        user: String,
        seen: Vec<(String, Observation)>,
    },
}

/// SHA-256 of the file, checking that its size and mtime did not move meanwhile.
pub fn hash_file(path: &Path) -> HashResult {
    let failed = |e: std::io::Error| {
        HashResult::Failed(match e.kind() {
            ErrorKind::NotFound => format!("{} no longer exists", path.display()),
            ErrorKind::PermissionDenied => format!("{} is not readable", path.display()),
            _ => format!("reading {} failed: {e}", path.display()),
        })
    };
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) => return failed(e),
    };
    let before = match f.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return HashResult::Failed(format!("{} is not a regular file", path.display())),
        Err(e) => return failed(e),
    };
    let mut h = Sha256::new();
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
            Err(e) => return failed(e),
        }
    }
    let after = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return failed(e),
    };
    let (size, modified) = (before.len(), mtime_secs(&before));
    if total != size || after.len() != size || mtime_secs(&after) != modified {
        return HashResult::Changed;
    }
    HashResult::Ok {
        sha256: hex(&h.finalize()),
        size,
        modified,
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_streamed_content() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        match hash_file(&p) {
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
        assert!(matches!(hash_file(&p), HashResult::Ok { sha256, .. } if sha256 == want));
    }

    #[test]
    fn reports_missing_and_non_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        assert!(
            matches!(hash_file(&gone), HashResult::Failed(m) if m.contains("no longer exists"))
        );
        assert_eq!(observe(&gone), Observation::Missing);
        assert_eq!(observe(dir.path()), Observation::Missing);
        std::fs::write(&gone, b"12345").unwrap();
        assert!(matches!(
            observe(&gone),
            Observation::Present { size: 5, .. }
        ));
    }
}
