//! The disk side of downloads that is not a worker job itself: the
//! `.part`'s name, the final rename (durable, through the download's
//! [`Place`], never over an existing file unless asked and then only over a
//! regular file) and removal of a `.part` only if it is still ours, plus the
//! pool of piece buffers that bounds a node's download memory. The blocking
//! functions here run on workers (`work.rs`), never in a loop turn.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::node::sandbox::{Entry, Place};
use crate::proto::peer::PIECE_SIZE;

/// Piece buffers a node may have out at once, all fetches and hosts
/// together (each at most [`PIECE_SIZE`]): download memory is bounded by
/// this, whatever the number of hosts.
pub const MAX_BUFS: usize = 48;
/// Free buffers kept for reuse; more go back to the allocator.
const KEEP_FREE: usize = 16;

/// The piece buffers: taken when a piece is asked, given back once the
/// worker wrote it (or the request ended).
#[derive(Default)]
pub struct Bufs {
    free: Vec<Vec<u8>>,
    out: usize,
}

impl Bufs {
    /// An empty buffer for a piece of `len` bytes, or None at the cap.
    pub fn take(&mut self, len: u64) -> Option<Vec<u8>> {
        if self.out >= MAX_BUFS {
            return None;
        }
        self.out += 1;
        let len = usize::try_from(len.min(PIECE_SIZE)).unwrap_or(0);
        let mut b = self.free.pop().unwrap_or_default();
        b.clear();
        b.reserve_exact(len);
        Some(b)
    }

    pub fn give(&mut self, mut b: Vec<u8>) {
        self.out = self.out.saturating_sub(1);
        if self.free.len() < KEEP_FREE && b.capacity() as u64 >= PIECE_SIZE {
            b.clear();
            self.free.push(b);
        }
    }

    /// No download is running: the spare buffers go back.
    pub fn trim(&mut self) {
        self.free.clear();
    }
}

pub fn part_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

/// Whether the `.part` of `place`, as its folder shows it now (no symlink
/// followed), is the file `file` has open.
fn is_ours(dir: &crate::node::sandbox::Dir, place: &Place, file: &File) -> bool {
    let Ok(meta) = file.metadata() else {
        return false;
    };
    matches!(
        dir.entry(&place.part_name()),
        Ok(Some(Entry::Regular { dev, ino, .. })) if (dev, ino) == (meta.dev(), meta.ino())
    )
}

/// Removes the `.part` of `place` if it is still the file `file` has open
/// (a name swapped for something else meanwhile is left alone).
pub fn remove_part(place: &Place, file: &File) {
    if let Ok(dir) = place.open_dir(false) {
        if is_ours(&dir, place, file) {
            let _ = dir.unlink(&place.part_name());
        }
    }
}

/// Makes the `.part` durable, moves it onto the final name in the same
/// folder (reached beneath its root without following symlinks): never over
/// an existing file unless `overwrite`, and then only over a regular file.
/// Makes the rename durable. On failure the `.part` is removed: nothing is
/// ever left under the final name.
pub fn finalize(file: &File, place: &Place, overwrite: bool) -> Result<(), String> {
    let target = &place.path;
    let part = part_path(target);
    let dir = match place.open_dir(false) {
        Ok(d) => d,
        Err(e) => {
            return Err(format!(
                "The folder of {} changed during the download ({e}); nothing was saved",
                target.display()
            ))
        }
    };
    let result = (|| {
        file.sync_all()
            .map_err(|e| format!("Could not save {}: {e}", part.display()))?;
        // Only the `.part` this download wrote is moved into place.
        if !is_ours(&dir, place, file) {
            return Err(format!(
                "{} was replaced during the download; nothing was saved",
                part.display()
            ));
        }
        dir.rename(&place.part_name(), place.name(), overwrite)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    format!(
                        "A file appeared at {} during the download; it was left alone (ask with overwrite: true to replace a regular file)",
                        target.display()
                    )
                } else {
                    format!("Could not move the download to {}: {e}", target.display())
                }
            })
    })();
    if result.is_err() {
        remove_part(place, file);
        return result;
    }
    if let Err(e) = dir.sync() {
        crate::log_warn!("could not fsync the folder of {}: {e}", target.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A sandbox whose share root is a fresh temporary folder.
    fn sandboxed() -> (tempfile::TempDir, PathBuf, crate::node::sandbox::Sandbox) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        fs::create_dir(dir.join("data")).unwrap();
        let sb = crate::node::sandbox::Sandbox::new(
            std::slice::from_ref(&dir),
            &[],
            &dir.join("data"),
            false,
        )
        .unwrap();
        (tmp, dir, sb)
    }

    #[test]
    fn finalize_keeps_an_existing_file_and_drops_the_part() {
        let (_tmp, dir, sb) = sandboxed();
        let target = dir.join("f.bin");
        let place = sb.place("u", &target).unwrap();
        fs::write(part_path(&target), b"downloaded").unwrap();
        fs::write(&target, b"precious").unwrap();
        let f = File::open(part_path(&target)).unwrap();
        assert!(finalize(&f, &place, false).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!part_path(&target).exists());
        fs::write(part_path(&target), b"downloaded").unwrap();
        let f = File::open(part_path(&target)).unwrap();
        finalize(&f, &place, true).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"downloaded");
        // A `.part` swapped for another file is not moved into place.
        fs::write(part_path(&target), b"mine").unwrap();
        let f = File::open(part_path(&target)).unwrap();
        fs::remove_file(part_path(&target)).unwrap();
        fs::write(part_path(&target), b"planted").unwrap();
        assert!(finalize(&f, &place, true).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"downloaded");
    }
}
