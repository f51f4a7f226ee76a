//! Host keys kept in hostname order in blocks of at most [`BLOCK`] keys, so
//! an insert or removal moves at most a block (a flat vector of a million
//! keys moved 4 MB per insert in the middle), and the key at an offset is a
//! walk over block lengths (a thousand blocks at a million hosts). Which
//! keys are present is also a bitmap by key, so asking to add a key that is
//! there (every change to a host re-asserts it in each cached query's
//! order) or to remove one that is not costs one bit, not a search through
//! host names that are rarely in cache (a twentieth of the loop's time at
//! 100,000 clients, `perf`).

use super::HostKey;

/// A block splits in two past this many keys.
const BLOCK: usize = 1024;

#[derive(Default)]
pub(super) struct OrderedKeys {
    blocks: Vec<Vec<HostKey>>,
    len: usize,
    /// Bit `k` is set while key `k` is in `blocks`.
    present: Vec<u64>,
}

impl OrderedKeys {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn contains(&self, key: HostKey) -> bool {
        self.present
            .get(key / 64)
            .is_some_and(|w| w & (1 << (key % 64)) != 0)
    }

    /// The block that holds, or would hold, `name`: the first whose last key
    /// is not below it (else the last block).
    fn block_for<'a>(&self, name: &str, name_of: &impl Fn(HostKey) -> &'a str) -> usize {
        let n = self.blocks.len();
        let i = self.blocks.partition_point(|b| match b.last() {
            Some(&k) => name_of(k) < name,
            None => true,
        });
        i.min(n.saturating_sub(1))
    }

    /// Adds `key` (named `name`); a key already there is left alone.
    pub(super) fn insert<'a>(
        &mut self,
        key: HostKey,
        name: &str,
        name_of: impl Fn(HostKey) -> &'a str,
    ) {
        if self.contains(key) {
            return;
        }
        if self.blocks.is_empty() {
            self.blocks.push(Vec::with_capacity(16));
        }
        let b = self.block_for(name, &name_of);
        let block = &mut self.blocks[b];
        match block.binary_search_by(|&k| name_of(k).cmp(name)) {
            Ok(_) => return,
            Err(at) => block.insert(at, key),
        }
        mark(&mut self.present, key, true);
        self.len += 1;
        if block.len() > BLOCK {
            let tail = block.split_off(BLOCK / 2);
            self.blocks.insert(b + 1, tail);
        }
    }

    /// Removes `key` (named `name`), if present.
    pub(super) fn remove<'a>(
        &mut self,
        key: HostKey,
        name: &str,
        name_of: impl Fn(HostKey) -> &'a str,
    ) {
        if !self.contains(key) || self.blocks.is_empty() {
            return;
        }
        let b = self.block_for(name, &name_of);
        let block = &mut self.blocks[b];
        if let Ok(at) = block.binary_search_by(|&k| name_of(k).cmp(name)) {
            let gone = block.remove(at);
            mark(&mut self.present, gone, false);
            self.len -= 1;
            if block.is_empty() && self.blocks.len() > 1 {
                self.blocks.remove(b);
            }
        }
    }

    /// Up to `limit` keys from position `offset`.
    pub(super) fn slice(&self, offset: usize, limit: usize) -> Vec<HostKey> {
        let mut out = Vec::with_capacity(limit.min(self.len.saturating_sub(offset)));
        let mut skip = offset;
        for b in &self.blocks {
            if out.len() >= limit {
                break;
            }
            if skip >= b.len() {
                skip -= b.len();
                continue;
            }
            let take = (b.len() - skip).min(limit - out.len());
            out.extend_from_slice(&b[skip..skip + take]);
            skip = 0;
        }
        out
    }

    /// Up to `limit` keys whose names come strictly after `after` (from the
    /// first key when None), in order: a cursor that stays right while keys
    /// come and go between calls.
    pub(super) fn after<'a>(
        &self,
        after: Option<&str>,
        limit: usize,
        name_of: impl Fn(HostKey) -> &'a str,
    ) -> Vec<HostKey> {
        let mut out = Vec::with_capacity(limit.min(self.len));
        let (mut b, mut i) = (0, 0);
        if let Some(name) = after {
            if self.blocks.is_empty() {
                return out;
            }
            b = self.block_for(name, &name_of);
            i = self.blocks[b].partition_point(|&k| name_of(k) <= name);
        }
        while b < self.blocks.len() && out.len() < limit {
            let block = &self.blocks[b];
            let take = (block.len().saturating_sub(i)).min(limit - out.len());
            out.extend_from_slice(&block[i..i + take]);
            b += 1;
            i = 0;
        }
        out
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = HostKey> + '_ {
        self.blocks.iter().flat_map(|b| b.iter().copied())
    }
}

/// Sets or clears bit `key` of `present`.
fn mark(present: &mut Vec<u64>, key: HostKey, on: bool) {
    let (w, bit) = (key / 64, 1u64 << (key % 64));
    if w >= present.len() {
        present.resize(w + 1, 0);
    }
    if on {
        present[w] |= bit;
    } else {
        present[w] &= !bit;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_sorted_through_inserts_removals_slices_and_cursors() {
        let names: Vec<String> = (0..5000u32)
            .map(|i| format!("h{:05}", (i * 7919) % 5000))
            .collect();
        let name_of = |k: HostKey| names[k].as_str();
        let mut o = OrderedKeys::default();
        for (k, n) in names.iter().enumerate() {
            o.insert(k, n, name_of);
        }
        o.insert(3, &names[3], name_of);
        assert_eq!(o.len(), 5000);
        for k in (0..names.len()).step_by(3) {
            o.remove(k, &names[k], name_of);
            // Removing again, or a key that was never added, changes nothing.
            o.remove(k, &names[k], name_of);
        }
        o.remove(9999, "h99999", name_of);
        for k in 0..names.len() {
            assert_eq!(o.contains(k), k % 3 != 0, "{k}");
        }
        let mut want: Vec<&str> = (0..names.len())
            .filter(|k| k % 3 != 0)
            .map(|k| names[k].as_str())
            .collect();
        want.sort();
        let got: Vec<&str> = o.iter().map(name_of).collect();
        assert_eq!(got, want);
        assert_eq!(o.len(), want.len());
        let page: Vec<&str> = o.slice(1000, 50).into_iter().map(name_of).collect();
        assert_eq!(page, want[1000..1050]);
        assert!(o.slice(o.len(), 10).is_empty());
        let mut cursor: Option<String> = None;
        let mut walked = Vec::new();
        loop {
            let step = o.after(cursor.as_deref(), 333, name_of);
            if step.is_empty() {
                break;
            }
            cursor = Some(name_of(*step.last().unwrap()).to_string());
            walked.extend(step.into_iter().map(name_of));
        }
        assert_eq!(walked, want);
    }
}
