//! One tracked file's record: what the catalog keeps of it (on disk in
//! `files.json`), how the client API and the registry see it, and how it
//! reacts to a change seen on disk (hash at once, then back off).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::proto::registry::FileMeta;

/// Times within this many seconds are the same mtime (JSON keeps f64 exact;
/// this only absorbs float noise).
pub(super) const SAME_TIME: f64 = 1e-5;
/// A file seen changing again soon after a change waits this long before the
/// next hash, doubling each time (10 s, 20 s, … 10 min): a growing log or a
/// file rewritten constantly is not rehashed in a loop.
const BACKOFF_FIRST_S: f64 = 10.0;
const BACKOFF_MAX_S: f64 = 600.0;

/// The wait before the next hash after the `n`th change in a row (n ≥ 1).
pub fn backoff_s(n: u32) -> f64 {
    let steps = n.saturating_sub(1).min(16) as i32;
    (BACKOFF_FIRST_S * 2f64.powi(steps)).min(BACKOFF_MAX_S)
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Gone from its path, or no longer a regular file.
    Missing,
    /// Size or mtime moved since it was added or published.
    Changed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Missing => "missing",
            Status::Changed => "changed",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct TrackedFile {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub modified: f64,
    pub added_at: f64,
    pub sha256: Option<String>,
    /// The piece root (`docs/peer-protocol.md`, `PIECES`), learnt in the same
    /// pass as `sha256` and always replaced with it; its digests are in the
    /// piece store. Catalogs from before pieces lack it: such a file is
    /// hashed once more at load, staying published meanwhile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    pub is_published: bool,
    pub published_at: Option<f64>,
    pub status: Status,
    /// The path with every symlink resolved when it was added: what the
    /// node opens (beneath its share root). Catalogs from before it lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<PathBuf>,
    /// Device and inode when last hashed or added (0: not known yet).
    #[serde(default)]
    pub dev: u64,
    #[serde(default)]
    pub ino: u64,
    /// Changes seen in a row without a quiet rescan in between.
    #[serde(default)]
    pub changes: u32,
    /// Unix time of the next hash while backing off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hash_at: Option<f64>,
    /// It kept changing while hashed: hashing backs off.
    #[serde(default)]
    pub changing: bool,
    /// The followed folder (its path as given) that brought the file in:
    /// it is forgotten when it vanishes from there (`folders`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folder: Option<String>,
    /// Publish it once hashed (a followed folder's new file); kept on disk
    /// so a crash between the add and the hash still publishes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub publish_when_hashed: bool,
    /// A hash job is out for this file.
    #[serde(skip)]
    pub hashing: bool,
    #[serde(skip)]
    pub hash_error: Option<String>,
    /// Bumped whenever a hash is (re)started, so stale results are dropped.
    #[serde(skip)]
    pub gen: u64,
}

impl TrackedFile {
    /// The path the node opens.
    pub fn real_path(&self) -> PathBuf {
        self.real
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.path))
    }

    /// A change was seen (by a rescan, or by a hash that watched the file
    /// move): the first one is hashed at once, the next ones after a
    /// growing wait, and the file is marked "changing".
    pub(super) fn change_seen(&mut self, now: f64, during_hash: bool) -> Option<Effect> {
        let n = if during_hash {
            self.changes.max(1)
        } else {
            self.changes
        };
        self.changes = n.saturating_add(1);
        if n == 0 {
            self.next_hash_at = None;
            return Some(Effect::Hash(self.name.clone()));
        }
        self.changing = true;
        self.next_hash_at = Some(now + backoff_s(n));
        None
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "path": self.path,
            "size": self.size,
            "modified": self.modified,
            "added_at": self.added_at,
            "sha256": self.sha256,
            "root": self.root,
            "hashing": self.hashing,
            "hash_error": self.hash_error,
            "is_published": self.is_published,
            "published_at": self.published_at,
            "status": self.status.as_str(),
            "changing": self.changing,
            "next_hash_at": self.next_hash_at,
            "folder": self.folder,
            "publish_when_hashed": self.publish_when_hashed,
        })
    }

    /// The registry's view: size, times, whether it is offered, its hash.
    pub fn registry_meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            modified: self.modified,
            published_at: self.published_at,
            is_published: self.is_published && self.status != Status::Missing,
            sha256: self.sha256.clone(),
            // A root travels only with the hash it was computed with.
            root: self.sha256.as_ref().and(self.root.clone()),
        }
    }
}

/// What the node must do after a change in the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Tell the registry the file is no longer offered.
    Unpublish(String),
    /// Start (again) hashing the file.
    Hash(String),
    /// A published file's hash or root changed without a change on disk
    /// (an old catalog entry learnt its root): send PUBLISH again.
    Announce(String),
    /// A followed folder's file is hashed and stable: publish it, nobody
    /// waiting (as a fetched file is).
    Publish(String),
}
