//! A hash map split in shards by an FNV-1a hash of the key, so that growing
//! it rehashes one small table at a time: one table of a million hostnames
//! rehashed every entry in a single loop turn when it doubled (tens of ms).
//! Each shard is a std `HashMap` (SipHash: keys chosen by peers cannot force
//! collisions inside a shard).

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;

const SHARDS: usize = 256;

pub struct ShardedMap<K, V> {
    shards: Vec<HashMap<K, V>>,
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        ShardedMap {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }
}

pub fn shard_of(key: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % SHARDS
}

impl<K: Hash + Eq + Borrow<str>, V> ShardedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &str) -> Option<&V> {
        self.shards[shard_of(key)].get(key)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shards[shard_of(key.borrow())].insert(key, value);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove(&mut self, key: &str) -> Option<V> {
        let old = self.shards[shard_of(key)].remove(key);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map() {
        let mut m: ShardedMap<Box<str>, u32> = ShardedMap::default();
        for i in 0..5000u32 {
            assert!(m.insert(format!("k{i}").into(), i).is_none());
        }
        assert_eq!(m.insert("k7".into(), 70), Some(7));
        assert_eq!(m.len(), 5000);
        assert_eq!(m.get("k7"), Some(&70));
        assert_eq!(m.remove("k7"), Some(70));
        assert_eq!(m.remove("k7"), None);
        assert!(!m.contains_key("k7") && m.contains_key("k8"));
        assert_eq!(m.len(), 4999);
    }
}
