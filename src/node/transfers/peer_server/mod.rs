//! Serves the files each user published to other peers (`docs/peer-protocol.md`), one
//! request at a time per connection, from a memory map handed to the reactor.
//! It looks files up only by exact published name through [`PublishedFiles`]: it
//! never takes a path from a peer, never reveals one, and never reads the
//! mapped pages itself (only write(2) does, which turns a truncated file into
//! EFAULT on that connection instead of SIGBUS for the process). Files are
//! opened through the [`Sandbox`] (beneath their share root, no symlink
//! followed) and served only while they are still the file that was added
//! (device, inode, size, mtime). Transfers of the same file share one map,
//! kept a little after its last use (`maps`). `PIECES` sends a file's piece
//! digests the same way, from a map of its entry in the piece store
//! (`pieces`).

use std::collections::{HashMap, VecDeque};
use std::fs::{File, Metadata};
use std::net::IpAddr;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::Mmap;
use reactor::{ConnId, ConnMap, ConnOptions, Ctx, ServiceId, TimerId};

use crate::node::sandbox::mtime_secs;
use crate::node::sandbox::Sandbox;
use crate::node::Timer;
use crate::proto::peer::{self, Answer, Decoded, ErrorCode, Request};

mod maps;
mod pieces;

use maps::{map_file, mtime_ns, MapCache, MAP_LINGER};

/// A published file as the catalog knows it.
#[derive(Debug, Clone)]
pub struct SharedFile {
    pub name: String,
    /// The resolved path, opened beneath its share root.
    pub path: PathBuf,
    /// Device and inode it had when hashed (0: not known yet).
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    /// Unix seconds, as recorded when it was published.
    pub modified: f64,
    pub sha256: Option<String>,
    /// The file of its piece digests in the node's piece store, when its
    /// root is known (`PIECES` is answered from it).
    pub pieces: Option<PathBuf>,
}

/// The node's view of what a user published.
pub trait PublishedFiles {
    /// The published file of that exact name, or None.
    fn published(&self, name: &str) -> Option<SharedFile>;
    /// Called when serving found the file gone or changed on disk (size/mtime differ).
    fn file_changed(&mut self, name: &str);
}

/// Concurrent peer connections per node; more are closed at once. Far
/// above [`MAX_CONNS_PER_IP`], so one address can never fill it.
pub const MAX_PEER_CONNS: usize = 4096;
/// Concurrent peer connections one source address may hold; more are
/// closed at once. A fetch uses one connection per host, so honest peers
/// (even many nodes behind one NAT address) stay far below it.
pub const MAX_CONNS_PER_IP: usize = 32;
/// A connection must send its first request line within this; an idle
/// stranger costs a descriptor for at most this long.
pub const FIRST_LINE_TIMEOUT: Duration = Duration::from_secs(10);
/// A peer connection with no traffic this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Files under this size go out in 256 KiB writes, larger ones in 1 MiB
/// (`docs/peer-protocol.md`).
const SMALL_FILE: u64 = 100 * 1024 * 1024;
/// With `--max-upload-rate`, the bucket is refilled and shared out this often
/// while uploads wait: 20 grants a second keep each one small (a tenth of a
/// megabyte at 2 MB/s) without waking the loop more than the cron would.
const PACE_TICK: Duration = Duration::from_millis(50);
/// Where one peer connection is.
enum State {
    /// Parsing request lines as they come.
    Ready,
    /// A file range is queued; the next request waits for `on_drained`.
    Sending,
    /// Under `--max-upload-rate`: `map[pos..end]` is queued a grant of the
    /// shared bucket at a time, on the pacing tick.
    Paced {
        map: Arc<Mmap>,
        pos: usize,
        end: usize,
        step: usize,
    },
}

/// `--max-upload-rate`: a token bucket shared by every upload of the node.
/// Tokens are bytes that may be queued; the pacing tick refills it from the
/// time that passed and shares it out among the waiting uploads, so the
/// loop never sleeps and one upload cannot take another's share.
struct Bucket {
    /// Bytes per second.
    rate: u64,
    /// Bytes that may be queued now.
    tokens: u64,
    /// When the bucket was last refilled.
    refilled: Instant,
}

impl Bucket {
    /// At most two ticks' worth is kept: a pause (no uploads waiting) must
    /// not turn into a burst above the rate afterwards.
    fn cap(&self) -> u64 {
        (u128::from(self.rate) * 2 * PACE_TICK.as_millis() / 1000).max(1) as u64
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled);
        let add = u128::from(self.rate) * dt.as_micros() / 1_000_000;
        // Whole bytes only: the remainder of the time carries over.
        if add > 0 {
            self.tokens = (u128::from(self.tokens) + add).min(u128::from(self.cap())) as u64;
            self.refilled = now;
        }
    }
}

struct PeerConn {
    user: String,
    state: State,
    /// The source address, counted in `per_ip` while the connection lives.
    ip: IpAddr,
    /// Armed until the first request line arrives; firing closes the connection.
    first_line: Option<TimerId>,
}

pub struct PeerServer {
    svc: ServiceId,
    sandbox: Arc<Sandbox>,
    conns: ConnMap<PeerConn>,
    max_conns: usize,
    /// `--max-upload-rate`; None: uploads are queued whole, unpaced.
    bucket: Option<Bucket>,
    /// Uploads waiting for tokens, served round-robin from the front.
    paced: VecDeque<ConnId>,
    /// The pacing tick, armed while `paced` is not empty.
    pace_timer: Option<TimerId>,
    /// First-line deadline timer key → connection.
    deadlines: HashMap<u64, ConnId>,
    /// Open connections per source address.
    per_ip: HashMap<IpAddr, usize>,
    next_key: u64,
    maps: MapCache,
    sweep: Option<TimerId>,
}

impl PeerServer {
    /// `max_upload_rate`: bytes per second for all uploads together
    /// (`--max-upload-rate`), None for no limit.
    pub fn new(svc: ServiceId, sandbox: Arc<Sandbox>, max_upload_rate: Option<u64>) -> Self {
        if let Some(rate) = max_upload_rate {
            crate::log_info!("peer uploads limited to {rate} bytes/s in all");
        }
        PeerServer {
            svc,
            sandbox,
            conns: ConnMap::new(),
            max_conns: MAX_PEER_CONNS,
            bucket: max_upload_rate.filter(|&r| r > 0).map(|rate| Bucket {
                rate,
                tokens: 0,
                refilled: Instant::now(),
            }),
            paced: VecDeque::new(),
            pace_timer: None,
            deadlines: HashMap::new(),
            per_ip: HashMap::new(),
            next_key: 2,
            maps: MapCache::default(),
            sweep: None,
        }
    }

    /// Changes the concurrent-connection cap (tests, tuning).
    pub fn set_max_conns(&mut self, n: usize) {
        self.max_conns = n.max(1);
    }

    /// Options for every user's peer listener: small input (a request line
    /// is at most 4 KiB), an idle timeout, and a partial-line timeout.
    pub fn listener_options() -> ConnOptions {
        ConnOptions {
            max_input: 16 * 1024,
            max_output: 64 * 1024,
            write_budget: 4 * 1024 * 1024,
            partial_timeout: Some(Duration::from_secs(30)),
            idle_timeout: Some(IDLE_TIMEOUT),
            keep_buffer: 1024,
            read_chunk: 8 * 1024,
            nodelay: true,
        }
    }

    /// A user's peer listener accepted `id` from `ip`. False: refused (a
    /// cap), already closed.
    pub fn on_accept(&mut self, cx: &mut Ctx, id: ConnId, user: &str, ip: IpAddr) -> bool {
        if self.conns.len() >= self.max_conns {
            crate::log_warn!(
                "refusing a peer connection for {user}: {} already open",
                self.conns.len()
            );
            cx.close(id);
            return false;
        }
        let held = self.per_ip.get(&ip).copied().unwrap_or(0);
        if held >= MAX_CONNS_PER_IP {
            // Logged once per burst, not once per connection: a flood
            // must not turn into a flood of log lines.
            if held == MAX_CONNS_PER_IP {
                crate::log_warn!(
                    "refusing peer connections from {ip}: it holds {MAX_CONNS_PER_IP} already"
                );
                self.per_ip.insert(ip, held + 1);
            }
            cx.close(id);
            return false;
        }
        self.per_ip.insert(ip, held + 1);
        let key = self.next_timer_key();
        let timer = cx.timer(self.svc, FIRST_LINE_TIMEOUT, key);
        self.deadlines.insert(key, id);
        self.conns.insert(
            id,
            PeerConn {
                user: user.to_owned(),
                state: State::Ready,
                ip,
                first_line: Some(timer),
            },
        );
        true
    }

    /// The connection sent a request line: its first-line deadline is off.
    fn got_line(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(timer) = self.conns.get_mut(id).and_then(|c| c.first_line.take()) {
            cx.cancel_timer(timer);
            self.deadlines.retain(|_, v| *v != id);
        }
    }

    pub fn on_input(&mut self, cx: &mut Ctx, id: ConnId, catalog: &mut dyn PublishedFiles) {
        self.serve(cx, id, catalog);
    }

    /// The queued range went out: the next request may be parsed.
    pub fn on_drained(&mut self, cx: &mut Ctx, id: ConnId, catalog: &mut dyn PublishedFiles) {
        if let Some(c) = self.conns.get_mut(id) {
            if matches!(c.state, State::Sending) {
                c.state = State::Ready;
            }
        }
        self.serve(cx, id, catalog);
    }

    pub fn on_close(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(c) = self.conns.remove(id) {
            if matches!(c.state, State::Paced { .. }) {
                self.paced.retain(|v| *v != id);
            }
            if let Some(timer) = c.first_line {
                cx.cancel_timer(timer);
                self.deadlines.retain(|_, v| *v != id);
            }
            if let Some(n) = self.per_ip.get_mut(&c.ip) {
                // The marker above the cap (set when refusing) goes too.
                *n = n.saturating_sub(1).min(MAX_CONNS_PER_IP - 1);
                if *n == 0 {
                    self.per_ip.remove(&c.ip);
                }
            }
        }
    }

    /// The pacing tick (`Timer::PeerPace`), the map sweep (`Timer::PeerSweep`)
    /// or a first-line deadline (`Timer::Peer`).
    pub fn on_timer(&mut self, cx: &mut Ctx, t: Timer) {
        let key = t.to_key();
        if t == Timer::PeerSweep {
            self.sweep = None;
            self.maps.evict(cx.now());
            return self.arm_sweep(cx);
        }
        if let Some(id) = self.deadlines.remove(&key) {
            if self
                .conns
                .get_mut(id)
                .is_some_and(|c| c.first_line.take().is_some())
            {
                crate::log_debug!(
                    "closing a peer connection: no request line within {} s",
                    FIRST_LINE_TIMEOUT.as_secs()
                );
                cx.close(id);
            }
            return;
        }
        if t == Timer::PeerPace {
            self.pace_timer = None;
            self.pace(cx);
        }
    }

    /// The pacing tick: refills the bucket and shares it out among the
    /// waiting uploads, an equal part each (round-robin for the remainder).
    /// An upload whose last grant is still queued is skipped: a stalled
    /// reader must not hold tokens the others could use.
    fn pace(&mut self, cx: &mut Ctx) {
        let Some(bucket) = self.bucket.as_mut() else {
            return;
        };
        bucket.refill(cx.now());
        let ready: Vec<ConnId> = self
            .paced
            .iter()
            .copied()
            .filter(|&id| cx.output_total(id) == 0)
            .collect();
        // Who goes first turns each tick, so rounding favours nobody.
        self.paced.rotate_left(1.min(self.paced.len()));
        let mut left = ready.len() as u64;
        for id in ready {
            if bucket.tokens == 0 {
                break;
            }
            let share = bucket.tokens.div_ceil(left).max(1);
            left = left.saturating_sub(1);
            let Some(c) = self.conns.get_mut(id) else {
                continue;
            };
            let State::Paced {
                map,
                pos,
                end,
                step,
            } = &mut c.state
            else {
                continue;
            };
            let grant = usize::try_from(share).unwrap_or(usize::MAX);
            let stop = (*pos).saturating_add(grant).min(*end);
            cx.send_map(id, map.clone(), *pos, stop, *step);
            bucket.tokens -= (stop - *pos) as u64;
            *pos = stop;
            if *pos >= *end {
                c.state = State::Sending;
                cx.notify_drained(id);
                self.paced.retain(|v| *v != id);
            }
        }
        self.arm_pace(cx);
    }

    /// While uploads wait for tokens, the pacing tick runs.
    fn arm_pace(&mut self, cx: &mut Ctx) {
        if self.pace_timer.is_none() && !self.paced.is_empty() {
            self.pace_timer = Some(cx.timer(self.svc, PACE_TICK, Timer::PeerPace.to_key()));
        }
    }

    pub fn owns(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some()
    }

    pub fn user_of(&self, id: ConnId) -> Option<&str> {
        self.conns.get(id).map(|c| c.user.as_str())
    }

    /// Transfers in progress for `user` (the heartbeat's busy state).
    pub fn active_uploads(&self, user: &str) -> usize {
        self.conns
            .iter()
            .filter(|(_, c)| c.user == user && !matches!(c.state, State::Ready))
            .count()
    }

    /// Peer connections open, all users.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Closes every peer connection of `user` (logout).
    pub fn close_user(&mut self, cx: &mut Ctx, user: &str) {
        let ids: Vec<ConnId> = self
            .conns
            .iter()
            .filter(|(_, c)| c.user == user)
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            cx.close(id);
        }
    }

    /// While maps are kept, a sweep drops the idle ones.
    fn arm_sweep(&mut self, cx: &mut Ctx) {
        if self.sweep.is_none() && !self.maps.maps.is_empty() {
            self.sweep = Some(cx.timer(self.svc, MAP_LINGER, Timer::PeerSweep.to_key()));
        }
    }

    fn next_timer_key(&mut self) -> u64 {
        let k = Timer::Peer(self.next_key & Timer::SEQ_MASK).to_key();
        self.next_key += 1;
        k
    }

    /// Answers whole request lines until one starts a transfer.
    fn serve(&mut self, cx: &mut Ctx, id: ConnId, catalog: &mut dyn PublishedFiles) {
        loop {
            match self.conns.get(id) {
                Some(c) if matches!(c.state, State::Ready) => {}
                _ => return,
            }
            let decoded = peer::decode_request(cx.input(id));
            match decoded {
                Decoded::Partial => return,
                Decoded::TooLong => {
                    self.got_line(cx, id);
                    cx.send_static(id, ErrorCode::TooLong.line());
                    cx.close_after_flush(id);
                    return;
                }
                Decoded::Invalid(code, used) => {
                    self.got_line(cx, id);
                    cx.consume(id, used);
                    cx.send_static(id, code.line());
                }
                Decoded::Frame(req, used) => {
                    self.got_line(cx, id);
                    cx.consume(id, used);
                    self.answer(cx, id, req, catalog);
                }
            }
        }
    }

    fn answer(&mut self, cx: &mut Ctx, id: ConnId, req: Request, catalog: &mut dyn PublishedFiles) {
        let (name, offset, length) = match req {
            Request::Ping => return cx.send_static(id, Answer::PONG_LINE),
            Request::Info { name } => {
                let reply = match lookup(catalog, &name) {
                    Err(code) => Answer::Error(code),
                    Ok(f) => match (
                        check_on_disk(&self.sandbox, catalog, &f).map(|_| ()),
                        f.sha256,
                    ) {
                        (Err(code), _) => Answer::Error(code),
                        (Ok(_), None) => Answer::Error(ErrorCode::ReadError),
                        (Ok(_), Some(sha256)) => Answer::Info {
                            size: f.size,
                            sha256,
                        },
                    },
                };
                return cx.send_vec(id, peer::encode_reply(&reply));
            }
            Request::Pieces { name } => return self.answer_pieces(cx, id, &name, catalog),
            Request::Get { name } => (name, 0, u64::MAX),
            Request::Range {
                offset,
                length,
                name,
            } => (name, offset, length),
        };
        let f = match lookup(catalog, &name) {
            Ok(f) => f,
            Err(code) => return cx.send_static(id, code.line()),
        };
        if offset > f.size {
            return cx.send_static(id, ErrorCode::BadRange.line());
        }
        let (file, meta) = match check_on_disk(&self.sandbox, catalog, &f) {
            Ok(opened) => opened,
            Err(code) => return cx.send_static(id, code.line()),
        };
        let n = length.min(f.size - offset);
        if n == 0 {
            return cx.send_static(id, Answer::EMPTY_LINE);
        }
        let key = (meta.dev(), meta.ino(), meta.len(), mtime_ns(&meta));
        let map = match self.maps.get(key, cx.now()) {
            Some(m) => m,
            None => match map_file(&file, f.size) {
                Ok(m) => {
                    let m = Arc::new(m);
                    self.maps.insert(key, m.clone(), cx.now());
                    self.arm_sweep(cx);
                    m
                }
                Err(e) => {
                    crate::log_warn!("cannot map published file {:?}: {e}", f.name);
                    return cx.send_static(id, ErrorCode::ReadError.line());
                }
            },
        };
        // Both fit: the map covers `size` bytes of our address space.
        let (start, end) = (offset as usize, (offset + n) as usize);
        let step = if f.size < SMALL_FILE {
            256 * 1024
        } else {
            1024 * 1024
        };
        cx.send_vec(id, peer::encode_reply(&Answer::Length(n)));
        let Some(c) = self.conns.get_mut(id) else {
            return;
        };
        if self.bucket.is_none() {
            cx.send_map(id, map, start, end, step);
            cx.notify_drained(id);
            c.state = State::Sending;
            return;
        }
        c.state = State::Paced {
            map,
            pos: start,
            end,
            step,
        };
        self.paced.push_back(id);
        // The first grant goes out at once if the bucket holds tokens; the
        // rest follow on the tick.
        self.pace(cx);
    }
}

/// The published file of exactly that name. A name that could be a path
/// is refused before the catalog is even asked.
fn lookup(catalog: &dyn PublishedFiles, name: &str) -> Result<SharedFile, ErrorCode> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name == "." || name == ".." {
        return Err(ErrorCode::NotFound);
    }
    match catalog.published(name) {
        Some(f) if f.name == name => Ok(f),
        _ => Err(ErrorCode::NotFound),
    }
}

/// Opens the file the safe way (beneath its share root, no symlink on the
/// path, never blocking on a FIFO: the sandbox opens O_NONBLOCK) and checks
/// it is still what was published: the same inode, size and modification
/// time. Anything else (a symlink swapped in, another file renamed over
/// it) answers `filenotfound` and tells the catalog, which looks again.
fn check_on_disk(
    sandbox: &Sandbox,
    catalog: &mut dyn PublishedFiles,
    f: &SharedFile,
) -> Result<(File, Metadata), ErrorCode> {
    let (file, meta) = match sandbox.open_read(&f.path, libc::O_RDONLY) {
        Ok(opened) => opened,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error().is_none()
                || matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) | Some(libc::EXDEV)
                ) =>
        {
            catalog.file_changed(&f.name);
            return Err(ErrorCode::FileNotFound);
        }
        Err(e) => {
            crate::log_warn!("cannot open published file {:?}: {e}", f.name);
            return Err(ErrorCode::ReadError);
        }
    };
    let moved = f.ino != 0 && (meta.dev(), meta.ino()) != (f.dev, f.ino);
    if moved || meta.len() != f.size || !same_mtime(mtime_secs(&meta), f.modified) {
        catalog.file_changed(&f.name);
        return Err(ErrorCode::FileNotFound);
    }
    Ok((file, meta))
}

/// Recorded times may have been rounded (JSON, whole seconds), so anything
/// within a second is the same time; a real change also changes the size or
/// comes later than that.
fn same_mtime(a: f64, b: f64) -> bool {
    (a - b).abs() < 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(Option<SharedFile>, Vec<String>);
    impl PublishedFiles for One {
        fn published(&self, name: &str) -> Option<SharedFile> {
            self.0.clone().filter(|f| f.name == name)
        }
        fn file_changed(&mut self, name: &str) {
            self.1.push(name.to_owned());
        }
    }

    fn shared(dir: &std::path::Path, name: &str, body: &[u8]) -> SharedFile {
        let path = dir.join(name);
        std::fs::write(&path, body).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        SharedFile {
            name: name.into(),
            path,
            dev: meta.dev(),
            ino: meta.ino(),
            size: body.len() as u64,
            modified: mtime_secs(&meta),
            sha256: None,
            pieces: None,
        }
    }

    #[test]
    fn the_upload_bucket_refills_with_time_and_keeps_at_most_two_ticks() {
        let t0 = Instant::now();
        let mut b = Bucket {
            rate: 2_000_000,
            tokens: 0,
            refilled: t0,
        };
        b.refill(t0 + PACE_TICK);
        assert_eq!(b.tokens, 100_000, "one tick at 2 MB/s");
        b.tokens = 0;
        b.refill(t0 + Duration::from_secs(10));
        assert_eq!(b.tokens, 200_000, "a long pause is no burst");
        // Under a byte's worth of time adds nothing, and is not lost.
        let mut slow = Bucket {
            rate: 1,
            tokens: 0,
            refilled: t0,
        };
        slow.refill(t0 + Duration::from_millis(600));
        assert_eq!(slow.tokens, 0);
        slow.refill(t0 + Duration::from_millis(1200));
        assert_eq!(slow.tokens, 1);
    }

    #[test]
    fn lookup_refuses_paths_before_asking() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = shared(dir.path(), "a", b"x");
        f.name = "../a".into();
        let cat = One(Some(f), vec![]);
        assert_eq!(lookup(&cat, "../a").unwrap_err(), ErrorCode::NotFound);
        assert_eq!(lookup(&cat, "..").unwrap_err(), ErrorCode::NotFound);
        assert_eq!(lookup(&cat, "").unwrap_err(), ErrorCode::NotFound);
    }

    #[test]
    fn a_changed_or_missing_file_is_filenotfound_and_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        std::fs::create_dir(dir.join("data")).unwrap();
        let sb = Sandbox::new(std::slice::from_ref(&dir), &[], &dir.join("data"), false).unwrap();
        let f = shared(&dir, "a", b"hello");
        let mut cat = One(Some(f.clone()), vec![]);
        assert!(check_on_disk(&sb, &mut cat, &f).is_ok());
        std::fs::write(&f.path, b"hello, longer").unwrap();
        assert_eq!(
            check_on_disk(&sb, &mut cat, &f).unwrap_err(),
            ErrorCode::FileNotFound
        );
        std::fs::remove_file(&f.path).unwrap();
        assert_eq!(
            check_on_disk(&sb, &mut cat, &f).unwrap_err(),
            ErrorCode::FileNotFound
        );
        // A symlink to a file of the same size and time: not served.
        let f = shared(&dir, "b", b"hello");
        std::fs::write(dir.join("other"), b"HELLO").unwrap();
        std::fs::remove_file(&f.path).unwrap();
        std::os::unix::fs::symlink(dir.join("other"), &f.path).unwrap();
        assert_eq!(
            check_on_disk(&sb, &mut cat, &f).unwrap_err(),
            ErrorCode::FileNotFound
        );
        // Another file renamed over it, same size: not served either.
        std::fs::remove_file(&f.path).unwrap();
        std::fs::rename(dir.join("other"), &f.path).unwrap();
        assert!(check_on_disk(&sb, &mut cat, &f).is_err());
        assert_eq!(cat.1.len(), 4);
    }
}
