//! A host's files as compact records, and the index from file name to the
//! hosts publishing it. Names are interned: a published file's name is one
//! shared allocation, held by the index and by the record. Digests arrive
//! as 64 lower-case hex digits (the protocol checks them) and are kept as
//! their 32 bytes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::proto::registry::FileMeta;
use crate::util::hex;

/// One file of a host: 88 bytes and no allocation besides its shared name
/// and, rarely, a root digest (a `FileMeta` with its hex strings was 88
/// bytes plus 80 per digest).
pub struct FileRec {
    pub name: Arc<str>,
    pub size: u64,
    pub modified: f64,
    /// NaN when absent.
    published_at: f64,
    sha256: Option<[u8; 32]>,
    root: Option<Box<[u8; 32]>>,
    pub is_published: bool,
}

fn unhex(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = nib(b[2 * i])? << 4 | nib(b[2 * i + 1])?;
    }
    Some(out)
}

impl FileRec {
    pub fn new(name: Arc<str>, m: FileMeta) -> FileRec {
        FileRec {
            name,
            size: m.size,
            modified: m.modified,
            published_at: m.published_at.unwrap_or(f64::NAN),
            sha256: m.sha256.as_deref().and_then(unhex),
            root: m.root.as_deref().and_then(unhex).map(Box::new),
            is_published: m.is_published,
        }
    }

    /// The record as the protocol's metadata.
    pub fn meta(&self) -> FileMeta {
        FileMeta {
            size: self.size,
            modified: self.modified,
            published_at: (!self.published_at.is_nan()).then_some(self.published_at),
            is_published: self.is_published,
            sha256: self.sha256.as_ref().map(|d| hex(d)),
            root: self.root.as_deref().map(|d| hex(d)),
        }
    }

    pub fn sha256_hex(&self) -> Option<String> {
        self.sha256.as_ref().map(|d| hex(d))
    }

    pub fn root_hex(&self) -> Option<String> {
        self.root.as_deref().map(|d| hex(d))
    }

    /// The digests as stored, for replies that write the hex themselves.
    pub fn sha256_bytes(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    pub fn root_bytes(&self) -> Option<[u8; 32]> {
        self.root.as_deref().copied()
    }

    /// Whether this file's content is the one `sha256` (hex) names.
    pub fn has_sha256(&self, sha256: &str) -> bool {
        self.sha256.is_some() && self.sha256 == unhex(sha256)
    }
}

/// Hosts publishing one name: most names have one, so no vector then.
pub(super) enum Holders {
    One(u32),
    Many(Vec<u32>),
}

impl Holders {
    pub(super) fn keys(&self) -> &[u32] {
        match self {
            Holders::One(k) => std::slice::from_ref(k),
            Holders::Many(v) => v,
        }
    }
}

const INDEX_SHARDS: usize = 256;

/// The file-name index in shards, picked by an FNV-1a hash of the name, so
/// that growing it rehashes one small table at a time (a single table of
/// 460,000 names stalled the loop ~110 ms when it doubled). Each shard is a
/// std `HashMap` (SipHash: names chosen by peers cannot force collisions).
pub(super) struct FileIndex {
    shards: Vec<HashMap<Arc<str>, Holders>>,
    /// (host, published name) pairs.
    pairs: usize,
}

impl Default for FileIndex {
    fn default() -> Self {
        FileIndex {
            shards: (0..INDEX_SHARDS).map(|_| HashMap::new()).collect(),
            pairs: 0,
        }
    }
}

impl FileIndex {
    fn slot(name: &str) -> usize {
        super::sharded::shard_of(name) % INDEX_SHARDS
    }

    pub(super) fn pairs(&self) -> usize {
        self.pairs
    }

    pub(super) fn get(&self, name: &str) -> Option<&Holders> {
        self.shards[Self::slot(name)].get(name)
    }

    /// The index's shared copy of `name`, if any host publishes it.
    pub(super) fn interned(&self, name: &str) -> Option<Arc<str>> {
        self.shards[Self::slot(name)]
            .get_key_value(name)
            .map(|(k, _)| k.clone())
    }

    pub(super) fn add(&mut self, name: &Arc<str>, key: u32) {
        let shard = &mut self.shards[Self::slot(name)];
        match shard.get_mut(&**name) {
            None => {
                shard.insert(name.clone(), Holders::One(key));
            }
            Some(Holders::One(k)) if *k == key => return,
            Some(h @ Holders::One(_)) => {
                let Holders::One(k) = *h else { return };
                *h = Holders::Many(vec![k, key]);
            }
            Some(Holders::Many(v)) => {
                if v.contains(&key) {
                    return;
                }
                v.push(key);
            }
        }
        self.pairs += 1;
    }

    pub(super) fn remove(&mut self, name: &str, key: u32) {
        let shard = &mut self.shards[Self::slot(name)];
        let gone = match shard.get_mut(name) {
            None => return,
            Some(Holders::One(k)) => {
                if *k != key {
                    return;
                }
                true
            }
            Some(Holders::Many(v)) => {
                let Some(at) = v.iter().position(|&k| k == key) else {
                    return;
                };
                v.swap_remove(at);
                match v.len() {
                    0 => true,
                    1 => {
                        let one = v[0];
                        shard.insert(name.into(), Holders::One(one));
                        false
                    }
                    _ => false,
                }
            }
        };
        if gone {
            shard.remove(name);
        }
        self.pairs -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_round_trip_and_holders_shrink() {
        let h = "00ff10ab".repeat(8);
        let m = FileMeta {
            size: 3,
            modified: 1.5,
            published_at: None,
            is_published: true,
            sha256: Some(h.clone()),
            root: Some(h.clone()),
        };
        let r = FileRec::new("x".into(), m.clone());
        assert_eq!(r.meta(), m);
        assert!(r.has_sha256(&h));
        assert!(!r.has_sha256(&"11".repeat(32)));
        let mut ix = FileIndex::default();
        let n: Arc<str> = "x".into();
        ix.add(&n, 1);
        ix.add(&n, 2);
        ix.add(&n, 2);
        assert_eq!(ix.get("x").map(|h| h.keys().len()), Some(2));
        ix.remove("x", 1);
        assert!(matches!(ix.get("x"), Some(Holders::One(2))));
        ix.remove("x", 2);
        assert!(ix.get("x").is_none());
        assert_eq!(ix.pairs(), 0);
    }
}
