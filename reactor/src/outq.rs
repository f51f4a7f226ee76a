//! A bounded output queue whose chunks are owned bytes, static bytes, shared
//! bytes, a list of shared pieces written with one `writev` per step (a reply
//! assembled from cached fragments, never concatenated), or a byte range of a
//! shared memory map, so file data is written straight from the map.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use memmap2::Mmap;

/// One piece of queued output.
pub enum Chunk {
    /// Owned bytes; `pos` is how much was already written.
    Bytes { buf: Vec<u8>, pos: usize },
    /// Bytes that live as long as the program (static web assets).
    Static { buf: &'static [u8], pos: usize },
    /// Bytes shared with other connections (a cached reply): not copied.
    Shared { buf: Arc<Vec<u8>>, pos: usize },
    /// The concatenation of shared pieces, sent without concatenating them:
    /// `next` is the first piece not fully written, `pos` how much of it was.
    Parts {
        parts: Arc<Vec<Arc<[u8]>>>,
        next: usize,
        pos: usize,
    },
    /// `map[pos..end]`, written at most `step` bytes per system call.
    Map {
        map: Arc<Mmap>,
        pos: usize,
        end: usize,
        step: usize,
    },
}

/// Pieces handed to one `writev` at most (half the kernel's IOV_MAX of
/// 1,024): a LIST page of 100 hosts (200 pieces) goes out in one call; with
/// 64 per call it took four, and each call pays the kernel's send path.
pub const PARTS_PER_WRITE: usize = 512;

impl Chunk {
    /// Moves a `Parts` cursor past empty pieces, so `remaining` is empty only
    /// when the chunk is done.
    fn skip_empty(&mut self) {
        if let Chunk::Parts { parts, next, pos } = self {
            while parts.get(*next).is_some_and(|p| *pos >= p.len()) {
                *next += 1;
                *pos = 0;
            }
        }
    }

    fn remaining(&self) -> &[u8] {
        match self {
            Chunk::Bytes { buf, pos } => &buf[*pos..],
            Chunk::Static { buf, pos } => &buf[*pos..],
            Chunk::Shared { buf, pos } => &buf[*pos..],
            Chunk::Parts { parts, next, pos } => parts
                .get(*next)
                .map(|p| p.get(*pos..).unwrap_or_default())
                .unwrap_or_default(),
            Chunk::Map {
                map,
                pos,
                end,
                step,
            } => {
                let stop = (*end).min(pos.saturating_add(*step)).min(map.len());
                &map[(*pos).min(stop)..stop]
            }
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Chunk::Bytes { buf, pos } => *pos >= buf.len(),
            Chunk::Static { buf, pos } => *pos >= buf.len(),
            Chunk::Shared { buf, pos } => *pos >= buf.len(),
            Chunk::Parts { parts, next, .. } => *next >= parts.len(),
            Chunk::Map { pos, end, .. } => pos >= end,
        }
    }

    fn advance(&mut self, n: usize) {
        match self {
            Chunk::Parts { parts, next, pos } => {
                let mut n = n;
                while let Some(p) = parts.get(*next) {
                    let left = p.len() - (*pos).min(p.len());
                    if n < left {
                        *pos += n;
                        return;
                    }
                    n -= left;
                    *next += 1;
                    *pos = 0;
                }
            }
            Chunk::Bytes { pos, .. }
            | Chunk::Static { pos, .. }
            | Chunk::Shared { pos, .. }
            | Chunk::Map { pos, .. } => *pos += n,
        }
    }
}

/// Queued output of one connection.
#[derive(Default)]
pub struct OutQueue {
    chunks: VecDeque<Chunk>,
    /// Bytes held in memory (owned chunks only): what the per-connection cap
    /// bounds. Mapped ranges cost no memory of ours, so they do not count.
    owned: usize,
    /// All bytes still to write, mapped included.
    total: u64,
}

/// Small writes are appended to the last owned chunk so that pipelined
/// answers leave in one system call; past this size a new chunk starts.
const COALESCE_LIMIT: usize = 64 * 1024;

/// Result of one flush attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum Flush {
    /// Everything queued was written.
    Empty,
    /// The socket would block; wait for a writable event.
    Blocked,
    /// The per-turn budget ran out with data left; try again next turn.
    Budget,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Bytes held in memory.
    pub fn owned_len(&self) -> usize {
        self.owned
    }

    /// All bytes still to send, mapped ranges included.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    pub fn push_slice(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        self.owned += data.len();
        self.total += data.len() as u64;
        if let Some(Chunk::Bytes { buf, .. }) = self.chunks.back_mut() {
            if buf.len() + data.len() <= COALESCE_LIMIT.max(buf.capacity()) {
                buf.extend_from_slice(data);
                return;
            }
        }
        let mut buf = Vec::with_capacity(data.len().max(256));
        buf.extend_from_slice(data);
        self.chunks.push_back(Chunk::Bytes { buf, pos: 0 });
    }

    pub fn push_vec(&mut self, data: Vec<u8>) {
        if data.is_empty() {
            return;
        }
        if data.len() < 4096 {
            return self.push_slice(&data);
        }
        self.owned += data.len();
        self.total += data.len() as u64;
        self.chunks.push_back(Chunk::Bytes { buf: data, pos: 0 });
    }

    pub fn push_static(&mut self, data: &'static [u8]) {
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.chunks.push_back(Chunk::Static { buf: data, pos: 0 });
    }

    pub fn push_shared(&mut self, data: Arc<Vec<u8>>) {
        if data.is_empty() {
            return;
        }
        self.total += data.len() as u64;
        self.chunks.push_back(Chunk::Shared { buf: data, pos: 0 });
    }

    /// Queues the concatenation of `parts` (`len` bytes together) without
    /// copying: each flush step hands the kernel up to [`PARTS_PER_WRITE`]
    /// pieces in one `writev`. Empty pieces are skipped.
    pub fn push_parts(&mut self, parts: Arc<Vec<Arc<[u8]>>>, len: u64) {
        if len == 0 {
            return;
        }
        self.total += len;
        let mut c = Chunk::Parts {
            parts,
            next: 0,
            pos: 0,
        };
        c.skip_empty();
        self.chunks.push_back(c);
    }

    /// Queues `map[start..end]` (clamped to the map), written `step` bytes per call.
    pub fn push_map(&mut self, map: Arc<Mmap>, start: usize, end: usize, step: usize) {
        let end = end.min(map.len());
        if start >= end {
            return;
        }
        self.total += (end - start) as u64;
        self.chunks.push_back(Chunk::Map {
            map,
            pos: start,
            end,
            step: step.max(4096),
        });
    }

    /// Drops everything queued (the connection is going away).
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.owned = 0;
        self.total = 0;
    }

    /// Writes through `w` until the queue is empty, the socket would block or
    /// `budget` bytes went out. Returns how many bytes were written too.
    pub fn flush<W: io::Write>(&mut self, w: &mut W, budget: usize) -> io::Result<(Flush, usize)> {
        let mut written = 0usize;
        while let Some(front) = self.chunks.front_mut() {
            if written >= budget {
                return Ok((Flush::Budget, written));
            }
            let data = front.remaining();
            if data.is_empty() {
                // A map shorter than the range we were asked to send: the
                // file shrank under us. Report it rather than loop.
                if !front.is_done() {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "mapped file is shorter than the range queued",
                    ));
                }
                self.chunks.pop_front();
                continue;
            }
            let res = match front {
                Chunk::Parts { parts, next, pos } => {
                    let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(PARTS_PER_WRITE);
                    let room = budget - written;
                    let mut queued = 0usize;
                    for (i, p) in parts.iter().skip(*next).enumerate() {
                        let p = if i == 0 {
                            &p[(*pos).min(p.len())..]
                        } else {
                            &p[..]
                        };
                        if p.is_empty() {
                            continue;
                        }
                        iov.push(IoSlice::new(p));
                        queued += p.len();
                        if iov.len() == PARTS_PER_WRITE || queued >= room {
                            break;
                        }
                    }
                    w.write_vectored(&iov)
                }
                _ => w.write(data),
            };
            match res {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    if let Chunk::Bytes { .. } = front {
                        self.owned -= n;
                    }
                    self.total -= n as u64;
                    front.advance(n);
                    front.skip_empty();
                    written += n;
                    if front.is_done() {
                        self.chunks.pop_front();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok((Flush::Blocked, written))
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((Flush::Empty, written))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts at most `cap` bytes per call and `room` in total.
    struct Pipe {
        got: Vec<u8>,
        cap: usize,
        room: usize,
    }
    impl io::Write for Pipe {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = b.len().min(self.cap).min(self.room);
            self.got.extend_from_slice(&b[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn coalesces_and_flushes_in_order_across_partial_writes() {
        let mut q = OutQueue::default();
        q.push_slice(b"hello ");
        q.push_static(b"static ");
        q.push_vec(vec![b'x'; 5000]);
        q.push_slice(b" end");
        assert_eq!(q.owned_len(), 6 + 5000 + 4);
        let mut p = Pipe {
            got: vec![],
            cap: 7,
            room: 100,
        };
        assert_eq!(q.flush(&mut p, usize::MAX).unwrap().0, Flush::Blocked);
        p.room = usize::MAX;
        assert_eq!(q.flush(&mut p, usize::MAX).unwrap().0, Flush::Empty);
        let mut want = b"hello static ".to_vec();
        want.extend(vec![b'x'; 5000]);
        want.extend_from_slice(b" end");
        assert_eq!(p.got, want);
        assert_eq!(q.owned_len(), 0);
        assert_eq!(q.total_len(), 0);
    }

    #[test]
    fn budget_stops_a_flush_with_data_left() {
        let mut q = OutQueue::default();
        q.push_vec(vec![1u8; 10_000]);
        let mut p = Pipe {
            got: vec![],
            cap: 1000,
            room: usize::MAX,
        };
        let (f, n) = q.flush(&mut p, 3000).unwrap();
        assert_eq!(f, Flush::Budget);
        assert_eq!(n, 3000);
        assert_eq!(q.total_len(), 7000);
    }

    #[test]
    fn parts_go_out_whole_and_in_order_across_short_writes_and_budgets() {
        let pieces: Vec<Arc<[u8]>> = (0..300u32)
            .map(|i| {
                let n = (i % 7) as usize * 13; // some pieces are empty
                Arc::from(vec![(i % 251) as u8; n].into_boxed_slice())
            })
            .collect();
        let want: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        let mut q = OutQueue::default();
        q.push_slice(b"head");
        q.push_parts(Arc::new(pieces), want.len() as u64);
        q.push_slice(b"tail");
        assert_eq!(q.owned_len(), 8, "shared pieces are not owned bytes");
        let mut p = Pipe {
            got: vec![],
            cap: 50,
            room: usize::MAX,
        };
        let mut turns = 0;
        while q.flush(&mut p, 700).unwrap().0 == Flush::Budget {
            turns += 1;
        }
        assert!(turns > 5, "the budget split it over turns");
        let mut all = b"head".to_vec();
        all.extend_from_slice(&want);
        all.extend_from_slice(b"tail");
        assert_eq!(p.got, all);
        assert_eq!(q.total_len(), 0);
        assert!(q.is_empty());
    }

    #[test]
    fn sends_a_map_range_in_steps() {
        let mut f = tempfile_like();
        use std::io::Write;
        let data: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&data).unwrap();
        let map = Arc::new(unsafe { Mmap::map(&f).unwrap() });
        let mut q = OutQueue::default();
        q.push_map(map, 100, 19_000, 4096);
        let mut p = Pipe {
            got: vec![],
            cap: usize::MAX,
            room: usize::MAX,
        };
        q.flush(&mut p, usize::MAX).unwrap();
        assert_eq!(p.got, &data[100..19_000]);
    }

    fn tempfile_like() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "outq-test-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }
}
