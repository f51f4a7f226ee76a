//! The memory maps the peer server sends from: one per file version,
//! shared by every transfer of it, unmapped off the loop.

use std::fs::{File, Metadata};
use std::os::unix::fs::MetadataExt;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use memmap2::{Mmap, MmapOptions};

/// A map no transfer uses is dropped after this long.
pub(super) const MAP_LINGER: Duration = Duration::from_secs(10);
/// Maps kept at most; the least recently used idle one goes first.
pub(super) const MAP_CACHE: usize = 16;

/// Which file version a map shows: device, inode, size, mtime (ns).
type MapKey = (u64, u64, u64, i64);

/// Maps shared by the transfers of one file version. Mapping is not free:
/// every transfer through a fresh map faults its pages into the page tables
/// again (a quarter of the serving loop's time on a 1 GiB file), and
/// unmapping 1 GiB took 43 ms of the loop; here a map is set up once for
/// concurrent and back-to-back transfers, and unmapped on a thread.
#[derive(Default)]
pub(super) struct MapCache {
    pub(super) maps: Vec<(MapKey, Arc<Mmap>, Instant)>,
    unmapper: Option<mpsc::Sender<Arc<Mmap>>>,
}

impl MapCache {
    pub(super) fn get(&mut self, key: MapKey, now: Instant) -> Option<Arc<Mmap>> {
        let e = self.maps.iter_mut().find(|e| e.0 == key)?;
        e.2 = now;
        Some(e.1.clone())
    }

    pub(super) fn insert(&mut self, key: MapKey, map: Arc<Mmap>, now: Instant) {
        self.maps.push((key, map, now));
        self.evict(now);
    }

    /// Drops maps idle past [`MAP_LINGER`] (in use means a transfer holds
    /// it too), and the least recently used idle ones beyond the cap.
    pub(super) fn evict(&mut self, now: Instant) {
        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.maps.len() {
            let e = &self.maps[i];
            if Arc::strong_count(&e.1) == 1 && now.saturating_duration_since(e.2) >= MAP_LINGER {
                gone.push(self.maps.swap_remove(i).1);
            } else {
                i += 1;
            }
        }
        while self.maps.len() > MAP_CACHE {
            let idle = self
                .maps
                .iter()
                .enumerate()
                .filter(|(_, e)| Arc::strong_count(&e.1) == 1)
                .min_by_key(|(_, e)| e.2)
                .map(|(i, _)| i);
            match idle {
                Some(i) => gone.push(self.maps.swap_remove(i).1),
                None => break,
            }
        }
        for map in gone {
            self.unmap(map);
        }
    }

    /// munmap of a large map takes milliseconds: done on a thread.
    fn unmap(&mut self, map: Arc<Mmap>) {
        if self.unmapper.is_none() {
            let (tx, rx) = mpsc::channel::<Arc<Mmap>>();
            let spawned = std::thread::Builder::new()
                .name("peer-unmap".into())
                .spawn(move || rx.into_iter().for_each(drop));
            if spawned.is_ok() {
                self.unmapper = Some(tx);
            }
        }
        if let Some(tx) = &self.unmapper {
            // On failure the map comes back in the error and drops here.
            let _ = tx.send(map);
        }
    }
}

/// The modification time in nanoseconds: a rewrite in place within the
/// same second still gets a map of its own.
pub(super) fn mtime_ns(meta: &Metadata) -> i64 {
    meta.mtime().saturating_mul(1_000_000_000) + meta.mtime_nsec()
}

pub(super) fn map_file(file: &File, size: u64) -> std::io::Result<Mmap> {
    let len = usize::try_from(size)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "file too large"))?;
    // SAFETY: the map is only ever handed to write(2) by the reactor; if the
    // file shrinks the kernel reports EFAULT there and no Rust code reads it.
    let map = unsafe { MmapOptions::new().len(len).map(file)? };
    let _ = map.advise(memmap2::Advice::Sequential);
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfers_share_a_map_until_it_has_been_idle_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a");
        std::fs::write(&path, b"hello").unwrap();
        let file = File::open(&path).unwrap();
        let mut cache = MapCache::default();
        let t0 = Instant::now();
        let key = (1, 2, 5, 3);
        cache.insert(key, Arc::new(map_file(&file, 5).unwrap()), t0);
        let in_use = cache.get(key, t0).unwrap();
        assert!(cache.get((1, 2, 5, 4), t0).is_none(), "another version");
        // In use: kept however long.
        cache.evict(t0 + MAP_LINGER * 3);
        assert!(Arc::ptr_eq(&in_use, &cache.get(key, t0).unwrap()));
        drop(in_use);
        cache.evict(t0 + MAP_LINGER / 2);
        assert!(cache.get(key, t0).is_some(), "idle, but not for long");
        cache.evict(t0 + MAP_LINGER * 2);
        assert!(cache.get(key, t0).is_none(), "idle past the linger time");
        // Over the cap the least recently used idle map goes first.
        for i in 0..MAP_CACHE as u64 + 1 {
            let t = t0 + Duration::from_millis(i);
            cache.insert((9, i, 5, 0), Arc::new(map_file(&file, 5).unwrap()), t);
        }
        assert_eq!(cache.maps.len(), MAP_CACHE);
        assert!(cache.get((9, 0, 5, 0), t0).is_none());
        assert!(cache.get((9, 1, 5, 0), t0).is_some());
    }
}
