//! The blocking half of a fetch, each a function run on a worker thread
//! (never in a loop turn, docs/architecture.md): making or finding the
//! `.part` and the resume state, checking and writing one piece, feeding
//! verified pieces in order into the whole-file hash (read back from the
//! `.part`, from the page cache, just after they were written), saving the
//! resume state once the data it counts is durable, and the final check,
//! fsync and rename. Every file is reached through the download's
//! [`Place`] (docs/trust.md). Results go back to the loop as [`Done`].

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::disk;
use super::part::{self, PartId};
use super::record::{self, ResumeFile};
use crate::node::catalog::pieces::{self, Sha256State, PIECE_SIZE};
use crate::node::sandbox::Place;
use crate::util::hex;

/// A worker's result, for fetch `id` in its generation `gen` (a result of
/// an older generation — before a restart from zero, a cancel — is stale).
pub struct Done {
    pub id: String,
    pub gen: u64,
    pub what: What,
}

pub enum What {
    Prepared(Result<Prepared, String>),
    /// A piece checked and written (`Ok(true)`), not matching its digest
    /// (`Ok(false)`), or not writable.
    Piece {
        piece: u64,
        host: String,
        buf: Vec<u8>,
        result: Result<bool, String>,
    },
    /// A copy of a piece that was not needed (the endgame's slower copy),
    /// checked against its digest only.
    Checked {
        piece: u64,
        host: String,
        buf: Vec<u8>,
        ok: bool,
    },
    /// The whole-file hash now covers pieces `..upto`.
    Hashed {
        sha: Sha256State,
        upto: u64,
        result: Result<(), String>,
    },
    Checkpointed(Result<(), String>),
    /// Verified, durable and renamed: the digest and the file's
    /// modification time in place; or why not.
    Finished(Result<(String, f64), Finish>),
    /// The records were written (`covers`: see `record::Book`).
    Saved {
        covers: u64,
        result: Result<(), String>,
    },
    /// Nothing to report (a removal, a stored piece list).
    Quiet,
}

pub enum Finish {
    /// The whole file does not hash to the SHA-256 asked for.
    Mismatch,
    Error(String),
}

/// What a fetch found or made on disk before downloading.
pub struct Prepared {
    pub file: Arc<File>,
    pub part_id: PartId,
    /// Verified pieces and the hash at the frontier, from the resume state.
    pub resume: Option<ResumeFile>,
    /// The piece list for the fetch's root, kept from an earlier run.
    pub digests: Option<Vec<u8>>,
    /// The final file is already there, complete (renamed just before a restart).
    pub already_saved: bool,
}

/// What `prepare` needs.
pub struct Prep {
    pub place: Place,
    /// A new `.part` (a new fetch, or starting over from zero).
    pub fresh: bool,
    pub overwrite: bool,
    pub part_id: Option<PartId>,
    pub state: PathBuf,
    pub data_dir: PathBuf,
    pub root: Option<String>,
    pub total: u64,
    pub sha256: Option<String>,
}

pub fn prepare(p: Prep) -> Result<Prepared, String> {
    let digests = p
        .root
        .as_deref()
        .and_then(|r| pieces::load(&p.data_dir, r).ok());
    if p.fresh {
        remove_state(&p.state);
        let (file, part_id) = part::create(&p.place, p.overwrite).map_err(|(_, m)| m)?;
        return Ok(Prepared {
            file: Arc::new(file),
            part_id,
            resume: None,
            digests,
            already_saved: false,
        });
    }
    let saved: Option<ResumeFile> = std::fs::read(&p.state)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|r: &ResumeFile| r.total_size == p.total && r.root == p.root);
    if saved.is_none() && already_saved(&p) {
        let file = part::open_final(&p.place).ok_or("The saved file vanished")?;
        remove_state(&p.state);
        return Ok(Prepared {
            file: Arc::new(file),
            part_id: (0, 0),
            resume: None,
            digests,
            already_saved: true,
        });
    }
    let recorded = saved.as_ref().map(|s| s.part_id).or(p.part_id);
    let (file, part_id) = part::reopen(&p.place, recorded)?;
    // Only what the resume state vouches for is kept: without it (or for
    // another `.part`) nothing was verified, and the download starts over.
    let resume = saved.filter(|s| s.part_id == part_id);
    if resume.is_none() {
        file.set_len(0)
            .map_err(|e| format!("Could not reset the .part: {e}"))?;
    }
    Ok(Prepared {
        file: Arc::new(file),
        part_id,
        resume,
        digests,
        already_saved: false,
    })
}

/// No `.part`, and the final file there with the size and hash asked for.
fn already_saved(p: &Prep) -> bool {
    let part_there = p
        .place
        .open_dir(false)
        .ok()
        .and_then(|d| d.entry(&p.place.part_name()).ok().flatten())
        .is_some();
    if part_there {
        return false;
    }
    let (Some(mut f), Some(want)) = (part::open_final(&p.place), p.sha256.as_deref()) else {
        return false;
    };
    if !f.metadata().is_ok_and(|m| m.len() == p.total) {
        return false;
    }
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h).is_ok() && hex(&h.finalize()) == want
}

/// Checks a piece against its digest (when there is one) and writes it.
pub fn piece(file: &File, offset: u64, buf: &[u8], digest: Option<&[u8]>) -> Result<bool, String> {
    if let Some(want) = digest {
        if Sha256::digest(buf).as_slice() != want {
            return Ok(false);
        }
    }
    file.write_all_at(buf, offset)
        .map_err(|e| format!("Could not write the download to disk: {e}"))?;
    Ok(true)
}

/// Whether `buf` hashes to `digest`.
pub fn check(buf: &[u8], digest: &[u8]) -> bool {
    Sha256::digest(buf).as_slice() == digest
}

/// Feeds pieces `from..upto` (verified, written) into `sha`, reading them
/// back from the `.part`.
pub fn hash(file: &File, sha: &mut Sha256State, from: u64, upto: u64, size: u64) -> io::Result<()> {
    let mut buf = vec![0u8; PIECE_SIZE as usize];
    for p in from..upto {
        let at = p * PIECE_SIZE;
        let len = size.saturating_sub(at).min(PIECE_SIZE) as usize;
        file.read_exact_at(&mut buf[..len], at)?;
        sha.update(&buf[..len]);
    }
    Ok(())
}

/// Makes the written pieces durable, then records them.
pub fn checkpoint(file: &File, state: &Path, r: &ResumeFile) -> Result<(), String> {
    file.sync_data().map_err(|e| e.to_string())?;
    let bytes = serde_json::to_vec(r).map_err(|e| e.to_string())?;
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    crate::store::write_atomic(state, &bytes).map_err(|e| e.to_string())?;
    // Cancelled meanwhile (`clean` unlinks the `.part`, then the state): a
    // state written after that is removed again. Checked after the write,
    // so one of the two removals always comes last.
    if file.metadata().is_ok_and(|m| m.nlink() == 0) {
        remove_state(state);
    }
    Ok(())
}

/// The whole file against `expect`, then fsync and the rename.
pub fn finish(
    file: &File,
    sha: &Sha256State,
    expect: Option<&str>,
    place: &Place,
    overwrite: bool,
    state: &Path,
) -> Result<(String, f64), Finish> {
    let got = sha.finish();
    if expect.is_some_and(|want| !want.eq_ignore_ascii_case(&got)) {
        return Err(Finish::Mismatch);
    }
    disk::finalize(file, place, overwrite).map_err(Finish::Error)?;
    remove_state(state);
    let modified = file
        .metadata()
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok((got, modified))
}

/// A failed or cancelled fetch: its `.part` (if still ours) and resume state go.
pub fn clean(place: Option<&Place>, part_id: Option<PartId>, state: &Path) {
    if let Some(place) = place {
        part::remove(place, part_id);
    }
    remove_state(state);
}

pub fn remove_state(state: &Path) {
    let _ = std::fs::remove_file(state);
}

/// Keeps a verified piece list, so a resume need not ask for it again.
pub fn store_list(data_dir: &Path, root: &str, digests: &[u8]) {
    if let Err(e) = pieces::store(data_dir, root, digests) {
        crate::log_warn!("could not keep the piece list of {root}: {e}");
    }
}

/// The resume state as the loop knows it now.
pub fn resume_file(
    part_id: PartId,
    total: u64,
    root: Option<String>,
    bits: &[bool],
    saved: Option<&(u64, String)>,
) -> ResumeFile {
    ResumeFile {
        part_id,
        total_size: total,
        root,
        have: record::encode_bits(bits),
        frontier: saved.map_or(0, |s| s.0),
        sha: saved.map(|s| s.1.clone()),
    }
}
