//! What survives a restart: the fetch records (`<data>/fetches.json`, the
//! list `/fetches` shows) and, per running fetch, its resume state
//! (`<data>/fetches/<id>.state`: which pieces are verified, as a bitmap, and
//! the whole-file SHA-256 state at the in-order frontier). The resume state
//! lives in the node's data directory rather than beside the `.part`, so a
//! fetch never writes a second file into the user's folders. Pure data and
//! encoding; the writes run on workers (`work.rs`), never in a loop turn.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::part::PartId;
use super::peers::PeerUse;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Downloading,
    Paused,
    Verifying,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    pub fn word(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Downloading => "downloading",
            Status::Paused => "paused",
            Status::Verifying => "verifying",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }
}

/// One host the registry says has the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostOffer {
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    pub size: u64,
    pub sha256: Option<String>,
    /// The root of its piece digests (`docs/peer-protocol.md`, `PIECES`),
    /// when the host published one.
    #[serde(default)]
    pub root: Option<String>,
    pub online: bool,
}

/// What is shown and persisted for one fetch. `status` is written only by
/// the transition function (`mod.rs`, `enter`), from the phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub fetch_id: String,
    pub user: String,
    pub file_name: String,
    pub total_size: u64,
    /// The content asked for: from the registry, else the first peer's INFO.
    pub sha256: Option<String>,
    /// The piece-list root used to verify pieces; None: whole-file check only.
    #[serde(default)]
    pub root: Option<String>,
    pub downloaded_size: u64,
    pub status: Status,
    pub peer: Option<String>,
    pub error: Option<String>,
    pub save_path: PathBuf,
    pub overwrite: bool,
    /// Add the finished file to the user's files and publish it.
    #[serde(default = "yes")]
    pub share: bool,
    /// What became of the finished file: added to the user's files,
    /// published, or why not.
    #[serde(default)]
    pub shared: Option<String>,
    pub started_at: f64,
    pub finished_at: Option<f64>,
    pub hosts: Vec<HostOffer>,
    /// Device and inode of the `.part` this fetch created (see `part`).
    #[serde(default)]
    pub part_id: Option<PartId>,
    /// Hosts used or dropped, for `/fetch-progress` and across restarts.
    #[serde(default)]
    pub peers: Vec<PeerUse>,
    /// Hosts whose unverified bytes the `.part` holds (fetches without
    /// piece digests): blamed if the whole file fails its hash.
    #[serde(default)]
    pub contributors: Vec<String>,
}

fn yes() -> bool {
    true
}

/// The resume state of one fetch, written after the piece data it counts
/// is durable (fsync of the `.part` first, in the same worker job).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ResumeFile {
    /// The `.part` these pieces are in.
    pub part_id: PartId,
    pub total_size: u64,
    pub root: Option<String>,
    /// Verified pieces, one bit each (piece i: byte i/8, bit i%8), hex.
    pub have: String,
    /// Pieces fed, in order, into `sha` (a saved `Sha256State`).
    pub frontier: u64,
    pub sha: Option<String>,
}

/// Where the resume state of fetch `id` is kept.
pub fn state_path(data_dir: &Path, id: &str) -> PathBuf {
    data_dir.join("fetches").join(format!("{id}.state"))
}

pub fn encode_bits(bits: &[bool]) -> String {
    let mut bytes = vec![0u8; bits.len().div_ceil(8)];
    for (i, _) in bits.iter().enumerate().filter(|(_, b)| **b) {
        bytes[i / 8] |= 1 << (i % 8);
    }
    crate::util::hex(&bytes)
}

/// The bitmap of `count` pieces; None if `s` is not one.
pub fn decode_bits(s: &str, count: u64) -> Option<Vec<bool>> {
    let count = usize::try_from(count).ok()?;
    if s.len() != count.div_ceil(8) * 2 || !s.is_ascii() {
        return None;
    }
    let mut bytes = Vec::with_capacity(s.len() / 2);
    for i in (0..s.len()).step_by(2) {
        bytes.push(u8::from_str_radix(&s[i..i + 2], 16).ok()?);
    }
    Some(
        (0..count)
            .map(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
            .collect(),
    )
}

/// Durable saves of the records: at most one write out at a time, saves
/// asked for meanwhile folded into one more, and the requests waiting for
/// their fetch's record to be on disk (`/fetch` answers only then).
#[derive(Default)]
pub struct Book {
    pub saving: bool,
    pub again: bool,
    /// Durable saves asked for, numbered; a write covers every number
    /// asked before it took its snapshot.
    pub asked: u64,
    /// (save number needed, op).
    pub waiters: Vec<(u64, u64)>,
    pub ready: Vec<(u64, Result<(), String>)>,
}

impl Book {
    /// A write covering save numbers up to `covers` ended.
    pub fn saved(&mut self, covers: u64, result: &Result<(), String>) {
        self.saving = false;
        let mut still = Vec::new();
        for (need, op) in std::mem::take(&mut self.waiters) {
            if need <= covers {
                self.ready.push((op, result.clone()));
            } else {
                still.push((need, op));
            }
        }
        self.waiters = still;
        if !self.waiters.is_empty() {
            self.again = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmaps_round_trip() {
        for n in [0u64, 1, 7, 8, 9, 1000] {
            let bits: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
            let s = encode_bits(&bits);
            assert_eq!(decode_bits(&s, n), Some(bits));
        }
        assert_eq!(decode_bits("zz", 8), None);
        assert_eq!(decode_bits("00", 9), None);
    }
}
