//! A download's `.part` file, made and found again only the safe way: its
//! folder is reached beneath a granted root without following a symlink
//! (missing folders made there with mkdirat), the `.part` is created
//! `O_CREAT | O_EXCL | O_NOFOLLOW`, and an existing one is reused only if
//! it is a regular file (opened `O_NOFOLLOW`) with the device and inode
//! recorded with the fetch. Records written before inodes were kept reuse
//! any regular `.part` (that is what they did before, minus symlinks).

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;

use crate::node::sandbox::{Dir, Entry, Place};

/// Device and inode of a `.part`, kept in the fetch's record.
pub type PartId = (u64, u64);

fn id_of(f: &File) -> io::Result<PartId> {
    let m = f.metadata()?;
    Ok((m.dev(), m.ino()))
}

fn folder_error(place: &Place, e: &io::Error) -> (u16, String) {
    match e.raw_os_error() {
        Some(libc::ELOOP) | Some(libc::ENOTDIR) => (
            403,
            format!(
                "A folder on the way to {} is a symlink or not a folder; downloads never follow symlinks",
                place.path.display()
            ),
        ),
        _ => (
            500,
            format!("Could not create the folder for {}: {e}", place.path.display()),
        ),
    }
}

/// Creates the `.part` exclusively. What already holds the name (a
/// leftover of a fetch that no longer runs, or a planted symlink) is
/// unlinked first: unlinkat removes the name itself, never what a symlink
/// points to.
fn create_fresh(dir: &Dir, place: &Place) -> io::Result<File> {
    let part = place.part_name();
    match dir.create_new(&part) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            dir.unlink(&part)?;
            dir.create_new(&part)
        }
        other => other,
    }
}

/// A new download into `place`: folders made below its root, the target
/// checked (nothing there, or a regular file and `overwrite`), the `.part`
/// created, open for reading and writing. Runs on a worker (`work.rs`).
pub fn create(place: &Place, overwrite: bool) -> Result<(File, PartId), (u16, String)> {
    let dir = place.open_dir(true).map_err(|e| folder_error(place, &e))?;
    match dir.entry(place.name()) {
        Ok(None) => {}
        Ok(Some(Entry::Regular { .. })) if overwrite => {}
        Ok(Some(Entry::Regular { .. })) => {
            return Err((
                409,
                format!(
                    "A file already exists at {}; ask with overwrite: true to replace it",
                    place.path.display()
                ),
            ))
        }
        Ok(Some(Entry::Other)) => {
            return Err((
                409,
                format!(
                "{} exists and is not a regular file (a folder or a symlink); it is never replaced",
                place.path.display()
            ),
            ))
        }
        Err(e) => {
            return Err((
                500,
                format!("Could not look at {}: {e}", place.path.display()),
            ))
        }
    }
    let file = create_fresh(&dir, place).map_err(|e| {
        (
            409,
            format!("Could not create {}.part: {e}", place.path.display()),
        )
    })?;
    let id = id_of(&file).map_err(|e| (500, e.to_string()))?;
    Ok((file, id))
}

/// After a restart (on a worker): the `.part` this fetch recorded, open for
/// reading and writing, or a fresh empty one when what is there is not it.
pub fn reopen(place: &Place, recorded: Option<PartId>) -> Result<(File, PartId), String> {
    let ctx = |e: io::Error| format!("Could not reopen {}.part: {e}", place.path.display());
    let dir = place
        .open_dir(true)
        .map_err(|e| folder_error(place, &e).1)?;
    let file = match dir.open_existing(&place.part_name()) {
        Ok(f) => {
            let id = id_of(&f).map_err(ctx)?;
            if recorded.is_none_or(|r| r == id) {
                return Ok((f, id));
            }
            crate::log_warn!(
                "{}.part is not the file this download wrote; starting over",
                place.path.display()
            );
            create_fresh(&dir, place).map_err(ctx)?
        }
        // Nothing there, a symlink (ELOOP) or not a regular file: start over.
        Err(e)
            if e.kind() == io::ErrorKind::NotFound
                || e.kind() == io::ErrorKind::InvalidInput
                || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            create_fresh(&dir, place).map_err(ctx)?
        }
        Err(e) => return Err(ctx(e)),
    };
    let id = id_of(&file).map_err(ctx)?;
    Ok((file, id))
}

/// The final file, if it is there as a regular file (not through a symlink).
pub fn open_final(place: &Place) -> Option<File> {
    place.open_dir(false).ok()?.open_read(place.name()).ok()
}

/// Removes the `.part` if it is the recorded one (or, without a record, a
/// regular file); anything else at that name is left alone.
pub fn remove(place: &Place, recorded: Option<PartId>) {
    let Ok(dir) = place.open_dir(false) else {
        return;
    };
    let part = place.part_name();
    let ours = match dir.entry(&part) {
        Ok(Some(Entry::Regular { dev, ino, .. })) => recorded.is_none_or(|r| r == (dev, ino)),
        _ => false,
    };
    if ours {
        let _ = dir.unlink(&part);
    }
}
