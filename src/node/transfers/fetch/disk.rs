//! The disk side of downloads, off the loop thread. The loop gathers payload
//! bytes in aligned 1 MiB buffers; one thread hashes them, in order, and hands
//! them to a writer thread, which writes them with O_DIRECT where the file
//! system takes it (no page-cache copy, no dirty pages for the final fsync to
//! flush) and, once a download is complete, checks the digest, fsyncs the
//! `.part`, renames it and fsyncs the folder. The rename and any removal go
//! through the download's [`Place`] (relative to its folder's descriptor,
//! never following a symlink). It owns no fetch state: results go back
//! through [`DiskLane::drain`] and the loop's waker.

use crate::util::hex;
use std::alloc::{self, Layout};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::{mpsc, Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::node::sandbox::{Entry, Place};

/// Bytes per buffer: one write system call each, and the unit of hashing.
pub const BUF_SIZE: usize = 1 << 20;
/// Memory and file-offset alignment O_DIRECT needs (the largest common block size).
const ALIGN: usize = 4096;
/// Free buffers kept for reuse; more are given back to the allocator.
const KEEP_FREE: usize = 8;
/// A transfer with at most this much left gets a buffer of its own size.
const SMALL: u64 = 256 * 1024;
/// Smaller writes go through the page cache: a small file's data then
/// reaches the disk inside the final fsync instead of in a synchronous
/// write of its own before it.
const DIRECT_MIN: usize = 128 * 1024;

/// An aligned buffer holding file bytes `offset..offset + len` at positions
/// `start..end`, placed so that memory and file offsets agree modulo
/// [`ALIGN`]: any aligned file range in it is aligned in memory too.
pub struct Buf {
    ptr: NonNull<u8>,
    cap: usize,
    start: usize,
    end: usize,
    offset: u64,
}

// SAFETY: the buffer is uniquely owned memory; moving it between threads is
// moving a Box.
unsafe impl Send for Buf {}

impl Buf {
    fn layout(cap: usize) -> Layout {
        // `cap` is a non-zero multiple of ALIGN, a power of two: cannot fail.
        Layout::from_size_align(cap, ALIGN).unwrap_or_else(|_| unreachable!())
    }

    fn new() -> Buf {
        Self::with_capacity(BUF_SIZE)
    }

    /// Room for `cap` bytes (rounded up to whole blocks).
    fn with_capacity(cap: usize) -> Buf {
        let cap = cap.max(1).div_ceil(ALIGN) * ALIGN;
        // SAFETY: a non-zero size. Only bytes written by `fill` are ever
        // read (`data` covers start..end), so no zeroing is needed.
        let raw = unsafe { alloc::alloc(Self::layout(cap)) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(Self::layout(cap));
        };
        Buf {
            ptr,
            cap,
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// Empties the buffer for bytes starting at file offset `offset`.
    fn reset(&mut self, offset: u64) {
        self.start = (offset % ALIGN as u64) as usize;
        self.end = self.start;
        self.offset = offset;
    }

    pub fn data(&self) -> &[u8] {
        // SAFETY: start <= end <= cap, and fill() wrote every byte in between.
        unsafe {
            std::slice::from_raw_parts(self.ptr.as_ptr().add(self.start), self.end - self.start)
        }
    }

    pub fn room(&self) -> usize {
        self.cap - self.end
    }

    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }

    /// Appends as much of `src` as fits; returns how much.
    pub fn fill(&mut self, src: &[u8]) -> usize {
        let n = src.len().min(self.room());
        // SAFETY: n bytes fit after `end`; src cannot overlap our own allocation.
        unsafe { copy_streaming(self.ptr.as_ptr().add(self.end), &src[..n]) };
        self.end += n;
        n
    }
}

/// Copies `src` to `dst` with non-temporal stores: the buffer is read next
/// by other threads, not by this core, and its lines were last touched by a
/// disk transfer. Measured on the 1 GiB fetch: ordinary stores into buffers
/// just written with O_DIRECT ran at 2 GB/s (most of the loop thread's
/// time); streaming stores at 20 GB/s.
///
/// # Safety
/// `dst` must be valid for `src.len()` bytes and not overlap `src`.
unsafe fn copy_streaming(dst: *mut u8, src: &[u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{__m128i, _mm_loadu_si128, _mm_sfence, _mm_stream_si128};
        let n = src.len();
        let head = (dst as usize).wrapping_neg() & 15;
        if n >= 256 {
            let s = src.as_ptr();
            std::ptr::copy_nonoverlapping(s, dst, head);
            let mut i = head;
            while i + 64 <= n {
                // SSE2 is part of x86_64; dst + i is 16-byte aligned.
                let a = _mm_loadu_si128(s.add(i) as *const __m128i);
                let b = _mm_loadu_si128(s.add(i + 16) as *const __m128i);
                let c = _mm_loadu_si128(s.add(i + 32) as *const __m128i);
                let d = _mm_loadu_si128(s.add(i + 48) as *const __m128i);
                _mm_stream_si128(dst.add(i) as *mut __m128i, a);
                _mm_stream_si128(dst.add(i + 16) as *mut __m128i, b);
                _mm_stream_si128(dst.add(i + 32) as *mut __m128i, c);
                _mm_stream_si128(dst.add(i + 48) as *mut __m128i, d);
                i += 64;
            }
            std::ptr::copy_nonoverlapping(s.add(i), dst.add(i), n - i);
            // Streaming stores are weakly ordered: fence them before the
            // buffer is handed to another thread.
            _mm_sfence();
            return;
        }
    }
    std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len());
}

impl Drop for Buf {
    fn drop(&mut self) {
        // SAFETY: allocated in `with_capacity` with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), Self::layout(self.cap)) }
    }
}

/// The `.part` file: a normal descriptor (unaligned pieces, fsync, reading
/// back after a restart) and, where the file system allows it, an O_DIRECT one.
pub struct PartFiles {
    pub file: File,
    direct: Option<File>,
}

impl PartFiles {
    /// Creates (truncates) `part`, readable too, for a download of `size` bytes.
    #[cfg(test)]
    pub fn create(part: &Path, size: u64) -> io::Result<PartFiles> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(part)?;
        Ok(Self::with(file, size))
    }

    /// Adds the O_DIRECT descriptor to an open `.part` when the download is
    /// big enough to use it; without it (small files, tmpfs, some network
    /// file systems) every write goes through the page cache. The second
    /// descriptor re-opens the same inode through `/proc/self/fd`, not the
    /// `.part`'s name, which a symlink could have replaced meanwhile.
    pub fn with(file: File, size: u64) -> PartFiles {
        let direct = (size >= DIRECT_MIN as u64)
            .then(|| {
                let same = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_DIRECT | libc::O_CLOEXEC)
                    .open(same)
                    .ok()
            })
            .flatten();
        PartFiles { file, direct }
    }
}

/// News for the loop.
pub enum Event {
    /// Writing failed; the download cannot go on.
    Failed { id: String, msg: String },
    /// A finished download: its digest once verified and renamed, or why not.
    Done {
        id: String,
        result: Result<String, String>,
    },
    /// Buffers were given back while the loop waited for one.
    BuffersFree,
}

enum ToHasher {
    Start {
        id: String,
        files: PartFiles,
        state: Sha256,
    },
    Data {
        id: String,
        buf: Buf,
    },
    Finish {
        id: String,
        expect: Option<String>,
        target: Place,
        overwrite: bool,
    },
    Forget {
        id: String,
    },
}

enum ToWriter {
    Start {
        id: String,
        files: PartFiles,
    },
    Data {
        id: String,
        buf: Buf,
    },
    /// `verdict`: the verified digest, or why the bytes are not the file.
    Finish {
        id: String,
        verdict: Result<String, String>,
        target: Place,
        overwrite: bool,
    },
    Forget {
        id: String,
    },
}

#[derive(Default)]
struct Pool {
    free: Vec<Buf>,
    /// Buffers each fetch has handed to the threads and not got back.
    inflight: HashMap<String, usize>,
    /// The loop was refused a buffer and wants to hear when one is free.
    waiting: bool,
}

struct Shared {
    pool: Mutex<Pool>,
    events: Mutex<Vec<Event>>,
    waker: Arc<mio::Waker>,
}

impl Shared {
    fn event(&self, e: Event) {
        if let Ok(mut ev) = self.events.lock() {
            ev.push(e);
        }
        let _ = self.waker.wake();
    }

    fn give_back(&self, id: &str, buf: Buf) {
        let wake = match self.pool.lock() {
            Ok(mut p) => {
                if let Some(n) = p.inflight.get_mut(id) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        p.inflight.remove(id);
                    }
                }
                if p.free.len() < KEEP_FREE && buf.cap == BUF_SIZE {
                    p.free.push(buf);
                }
                std::mem::take(&mut p.waiting)
            }
            Err(_) => false,
        };
        if wake {
            self.event(Event::BuffersFree);
        }
    }
}

/// The loop's handle on the two threads.
pub struct DiskLane {
    hasher: mpsc::Sender<ToHasher>,
    writer: mpsc::Sender<ToWriter>,
    shared: Arc<Shared>,
}

impl DiskLane {
    pub fn new(waker: Arc<mio::Waker>) -> io::Result<DiskLane> {
        let shared = Arc::new(Shared {
            pool: Mutex::new(Pool::default()),
            events: Mutex::new(Vec::new()),
            waker,
        });
        let (wtx, wrx) = mpsc::channel();
        let (htx, hrx) = mpsc::channel();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("fetch-write".into())
            .spawn(move || writer_loop(wrx, s))?;
        let forward = wtx.clone();
        std::thread::Builder::new()
            .name("fetch-hash".into())
            .spawn(move || hasher_loop(hrx, forward))?;
        Ok(DiskLane {
            hasher: htx,
            writer: wtx,
            shared,
        })
    }

    /// An empty buffer for bytes from file offset `offset`, `left` of
    /// them still to come, unless fetch `id` already has `limit` buffers on
    /// their way to disk: then None, and [`Event::BuffersFree`] follows when
    /// one comes back.
    pub fn take_buf(&self, id: &str, offset: u64, left: u64, limit: usize) -> Option<Buf> {
        let head = offset % ALIGN as u64;
        let small = left + head <= SMALL;
        let mut buf = {
            let mut p = self.shared.pool.lock().ok()?;
            let n = p.inflight.get(id).copied().unwrap_or(0);
            if n >= limit {
                p.waiting = true;
                return None;
            }
            if small {
                None
            } else {
                p.free.pop()
            }
        }
        .unwrap_or_else(|| {
            if small {
                // Both fit in usize: at most SMALL.
                Buf::with_capacity((left + head) as usize)
            } else {
                Buf::new()
            }
        });
        buf.reset(offset);
        Some(buf)
    }

    /// A buffer that will not be sent (the fetch ended).
    pub fn put_back(&self, buf: Buf) {
        if let Ok(mut p) = self.shared.pool.lock() {
            if p.free.len() < KEEP_FREE && buf.cap == BUF_SIZE {
                p.free.push(buf);
            }
        }
    }

    /// No download is streaming: give the spare buffers back.
    pub fn trim(&self) {
        if let Ok(mut p) = self.shared.pool.lock() {
            p.free.clear();
        }
    }

    /// Hands the fetch's file and hash state (covering every byte before
    /// the first buffer) to the threads.
    pub fn start(&self, id: &str, files: PartFiles, state: Sha256) {
        let id = id.to_owned();
        let _ = self.hasher.send(ToHasher::Start { id, files, state });
    }

    /// Queues a filled buffer: hashed, then written.
    pub fn data(&self, id: &str, buf: Buf) {
        if let Ok(mut p) = self.shared.pool.lock() {
            *p.inflight.entry(id.to_owned()).or_insert(0) += 1;
        }
        let id = id.to_owned();
        let _ = self.hasher.send(ToHasher::Data { id, buf });
    }

    /// Every byte was queued: verify against `expect` (when known), make
    /// durable, rename onto `target`; [`Event::Done`] tells how it went.
    pub fn finish(&self, id: &str, expect: Option<String>, target: Place, overwrite: bool) {
        let id = id.to_owned();
        let _ = self.hasher.send(ToHasher::Finish {
            id,
            expect,
            target,
            overwrite,
        });
    }

    /// A download the loop hashed and verified itself (it fit one buffer and
    /// nothing of it went to the threads before): write, fsync, rename in
    /// one go on the writer, one hand-over less than [`DiskLane::finish`].
    pub fn finish_verified(
        &self,
        id: &str,
        files: PartFiles,
        buf: Option<Buf>,
        digest: String,
        target: Place,
        overwrite: bool,
    ) {
        let id = id.to_owned();
        let _ = self.writer.send(ToWriter::Start {
            id: id.clone(),
            files,
        });
        if let Some(buf) = buf {
            if let Ok(mut p) = self.shared.pool.lock() {
                *p.inflight.entry(id.clone()).or_insert(0) += 1;
            }
            let _ = self.writer.send(ToWriter::Data {
                id: id.clone(),
                buf,
            });
        }
        let _ = self.writer.send(ToWriter::Finish {
            id,
            verdict: Ok(digest),
            target,
            overwrite,
        });
    }

    /// The fetch ended: drop its state (queued buffers still come back).
    pub fn forget(&self, id: &str) {
        let _ = self.hasher.send(ToHasher::Forget { id: id.to_owned() });
    }

    pub fn drain(&self) -> Vec<Event> {
        match self.shared.events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(_) => Vec::new(),
        }
    }
}

/// Hashes buffers in arrival order, then passes everything on to the writer.
fn hasher_loop(rx: mpsc::Receiver<ToHasher>, tx: mpsc::Sender<ToWriter>) {
    let mut states: HashMap<String, Sha256> = HashMap::new();
    for msg in rx {
        let out = match msg {
            ToHasher::Start { id, files, state } => {
                states.insert(id.clone(), state);
                ToWriter::Start { id, files }
            }
            ToHasher::Data { id, buf } => {
                if let Some(h) = states.get_mut(&id) {
                    h.update(buf.data());
                }
                ToWriter::Data { id, buf }
            }
            ToHasher::Finish {
                id,
                expect,
                target,
                overwrite,
            } => {
                let verdict = match states.remove(&id) {
                    None => Err("The download's checksum state was lost".to_owned()),
                    Some(h) => {
                        let got = hex(&h.finalize());
                        match expect {
                            Some(want) if !want.eq_ignore_ascii_case(&got) => Err(
                                "Downloaded data does not match the SHA-256 published for this file"
                                    .to_owned(),
                            ),
                            _ => Ok(got),
                        }
                    }
                };
                ToWriter::Finish {
                    id,
                    verdict,
                    target,
                    overwrite,
                }
            }
            ToHasher::Forget { id } => {
                states.remove(&id);
                ToWriter::Forget { id }
            }
        };
        if tx.send(out).is_err() {
            return;
        }
    }
}

struct Writing {
    files: PartFiles,
    /// O_DIRECT is in use (cleared if the file system refuses it).
    direct: bool,
    failed: Option<String>,
}

fn writer_loop(rx: mpsc::Receiver<ToWriter>, shared: Arc<Shared>) {
    let mut open: HashMap<String, Writing> = HashMap::new();
    for msg in rx {
        match msg {
            ToWriter::Start { id, files } => {
                let direct = files.direct.is_some();
                open.insert(
                    id,
                    Writing {
                        files,
                        direct,
                        failed: None,
                    },
                );
            }
            ToWriter::Data { id, buf } => {
                if let Some(w) = open.get_mut(&id).filter(|w| w.failed.is_none()) {
                    if let Err(e) = write_buf(&w.files, &mut w.direct, &buf) {
                        let msg = format!("Could not write the download to disk: {e}");
                        w.failed = Some(msg.clone());
                        shared.event(Event::Failed {
                            id: id.clone(),
                            msg,
                        });
                    }
                }
                shared.give_back(&id, buf);
            }
            ToWriter::Finish {
                id,
                verdict,
                target,
                overwrite,
            } => {
                let result = match open.remove(&id) {
                    None => Err("The download's file was lost".to_owned()),
                    Some(w) => match (w.failed, verdict) {
                        (Some(msg), _) | (None, Err(msg)) => {
                            remove_part(&target, &w.files.file);
                            Err(msg)
                        }
                        (None, Ok(digest)) => {
                            finalize(&w.files.file, &target, overwrite).map(|()| digest)
                        }
                    },
                };
                shared.event(Event::Done { id, result });
            }
            ToWriter::Forget { id } => {
                open.remove(&id);
            }
        }
    }
}

/// Writes `buf` at its offset: the aligned middle through O_DIRECT, the
/// unaligned ends (the start of a resumed range, the end of the file)
/// through the page cache. The two never share a block.
fn write_buf(files: &PartFiles, direct: &mut bool, buf: &Buf) -> io::Result<()> {
    let data = buf.data();
    let off = buf.offset;
    let mut done = 0usize;
    if let Some(d) = files.direct.as_ref().filter(|_| *direct) {
        let head = ((ALIGN as u64 - off % ALIGN as u64) % ALIGN as u64) as usize;
        let head = head.min(data.len());
        let body = (data.len() - head) / ALIGN * ALIGN;
        if body >= DIRECT_MIN {
            files.file.write_all_at(&data[..head], off)?;
            done = head;
            match d.write_all_at(&data[head..head + body], off + head as u64) {
                Ok(()) => done += body,
                // Not on this file system after all: the page cache from now on.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => *direct = false,
                Err(e) => return Err(e),
            }
        }
    }
    files.file.write_all_at(&data[done..], off + done as u64)
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

    fn bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n).map(|i| (i as u8).wrapping_mul(31) ^ seed).collect()
    }

    /// Writes `data` from file offset `from` in buffers as the loop fills
    /// them (ends at every buffer boundary) and returns the file.
    fn write_from(files: &PartFiles, from: u64, data: &[u8], direct: &mut bool) {
        let mut at = 0;
        while at < data.len() {
            let mut b = Buf::new();
            b.reset(from + at as u64);
            at += b.fill(&data[at..]);
            write_buf(files, direct, &b).unwrap();
        }
    }

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

    #[test]
    fn unaligned_starts_and_ends_land_intact() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let files = PartFiles::create(&part, 1 << 30).unwrap();
        let mut direct = files.direct.is_some();
        // 1 MiB + a bit from 0, then a resumed range from an odd offset.
        let a = bytes(BUF_SIZE + 5000, 1);
        write_from(&files, 0, &a, &mut direct);
        let b = bytes(3 * BUF_SIZE / 2 + 77, 2);
        write_from(&files, a.len() as u64, &b, &mut direct);
        let mut want = a.clone();
        want.extend_from_slice(&b);
        assert_eq!(fs::read(&part).unwrap(), want);
    }

    #[test]
    fn filling_at_odd_positions_keeps_every_byte() {
        let src = bytes(300_000, 9);
        for (at, cuts) in [
            (0u64, [1usize, 255, 256, 70_001]),
            (4093, [3, 64, 1000, 123_457]),
        ] {
            let mut b = Buf::new();
            b.reset(at);
            let mut done = 0;
            for c in cuts {
                done += b.fill(&src[done..done + c]);
            }
            done += b.fill(&src[done..]);
            assert_eq!(done, src.len());
            assert!(b.data() == &src[..]);
        }
    }

    #[test]
    fn buffers_mirror_file_alignment() {
        let mut b = Buf::new();
        b.reset(4096 * 3 + 100);
        assert_eq!(b.room(), BUF_SIZE - 100);
        assert!(b.is_empty());
        assert_eq!(b.fill(&[7u8; 10]), 10);
        assert_eq!(b.data(), &[7u8; 10]);
        // The aligned file offset 4096*4 sits at an aligned address.
        let addr = b.data().as_ptr() as usize + (4096 - 100);
        assert_eq!(addr % ALIGN, 0);
    }

    #[test]
    fn a_bad_digest_is_never_renamed_and_a_good_one_is() {
        let (_tmp, dir, sb) = sandboxed();
        let poll = mio::Poll::new().unwrap();
        let waker = Arc::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let lane = DiskLane::new(waker).unwrap();
        let body = bytes(2 * BUF_SIZE + 123, 3);
        for (name, expect, ok) in [
            ("good.bin", Some(hex(&Sha256::digest(&body))), true),
            ("bad.bin", Some("00".repeat(32)), false),
        ] {
            let target = dir.join(name);
            let place = sb.place("u", &target).unwrap();
            let files = PartFiles::create(&part_path(&target), body.len() as u64).unwrap();
            lane.start(name, files, Sha256::new());
            let mut at = 0;
            while at < body.len() {
                let left = (body.len() - at) as u64;
                let mut b = lane.take_buf(name, at as u64, left, 8).unwrap();
                at += b.fill(&body[at..]);
                lane.data(name, b);
            }
            lane.finish(name, expect, place, false);
            let result = loop {
                let done = lane.drain().into_iter().find_map(|e| match e {
                    Event::Done { result, .. } => Some(result),
                    _ => None,
                });
                match done {
                    Some(r) => break r,
                    None => std::thread::sleep(std::time::Duration::from_millis(5)),
                }
            };
            assert_eq!(result.is_ok(), ok, "{name}: {result:?}");
            assert_eq!(target.exists(), ok);
            assert!(!part_path(&target).exists());
            if ok {
                assert!(fs::read(&target).unwrap() == body);
            }
        }
    }
}
