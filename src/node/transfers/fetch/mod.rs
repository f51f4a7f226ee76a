//! Downloads: each fetch streams a file from a peer into `<target>.part`,
//! goes on from the bytes it has with `RANGE` on the next host when a peer
//! fails, verifies size and SHA-256, and only then renames onto the final
//! name (never over an existing file unless asked). A host whose bytes fail
//! the hash is dropped from that fetch, which starts over with the others.
//! The loop only gathers payload bytes into buffers; hashing, writing,
//! fsync and rename run on the threads of [`disk`], hashing a resumed
//! `.part` and saving the records on worker pools: never blocking file
//! work in a loop turn.

mod disk;
mod orphans;
mod part;
mod peers;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reactor::{CloseReason, ConnId, ConnMap, ConnOptions, Ctx, Pool, ServiceId, TimerId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::node::sandbox::{Place, Sandbox};
use crate::node::Timer;
use crate::proto::names::valid_file_name;
use crate::proto::peer::{self, Answer, Decoded, ErrorCode, Request};
use crate::util::{hex, unix_now};
pub use disk::part_path;
use disk::{Buf, DiskLane, Event, PartFiles};
use part::PartId;

/// One host the registry says has the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostOffer {
    pub hostname: String,
    pub ip: String,
    pub port: u16,
    pub size: u64,
    pub sha256: Option<String>,
    pub online: bool,
}

/// What the client API asks for.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub user: String,
    pub fname: String,
    /// The final path; data goes to `<target>.part` until verified.
    pub target: PathBuf,
    pub overwrite: bool,
    /// Online first, preferred host first.
    pub hosts: Vec<HostOffer>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that sends nothing for this long is given up on.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before trying the host list a second time.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Speed is measured over this recent window.
const SPEED_WINDOW: Duration = Duration::from_secs(3);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Fetches running at once per node.
const MAX_ACTIVE: usize = 64;
/// Buffers (of [`disk::BUF_SIZE`]) the fetches together may have on their
/// way to disk, and the most and least one fetch may have.
const INFLIGHT_TOTAL: usize = 32;
const INFLIGHT_MAX: usize = 8;
const INFLIGHT_MIN: usize = 2;
/// A download that ends within its first buffer and is at most this big is
/// hashed in the loop (microseconds), which saves the hash thread's turn.
const HASH_HERE_MAX: usize = 64 * 1024;
/// Record changes that need not be durable at once (one completed, a
/// restart finds it again) are saved together after this. A new download
/// is recorded durably before `/fetch` answers ([`Fetches::when_durable`]).
const SAVE_DELAY: Duration = Duration::from_millis(250);
/// Finished records kept per user.
const KEEP_FINISHED: usize = 200;
const RECORDS_FILE: &str = "fetches.json";
const MISMATCH: &str = "Downloaded data does not match the SHA-256 published for this file";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Status {
    Pending,
    Downloading,
    Verifying,
    Completed,
    Failed,
    Cancelled,
}

impl Status {
    fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

/// What is shown and persisted for one fetch.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    fetch_id: String,
    user: String,
    file_name: String,
    total_size: u64,
    /// Expected hash: from the registry, else from the first peer's INFO.
    sha256: Option<String>,
    downloaded_size: u64,
    status: Status,
    peer: Option<String>,
    error: Option<String>,
    save_path: PathBuf,
    overwrite: bool,
    started_at: f64,
    finished_at: Option<f64>,
    hosts: Vec<HostOffer>,
    /// Device and inode of the `.part` this fetch created: after a restart
    /// only that file is reused (see `part`).
    #[serde(default)]
    part_id: Option<PartId>,
    /// Hosts used or dropped, for `/fetch-progress` and across restarts.
    #[serde(default)]
    peers: Vec<peers::PeerUse>,
    /// Hosts whose bytes the `.part` holds now: blamed if the whole file
    /// fails its hash (only the whole file is verified).
    #[serde(default)]
    contributors: Vec<String>,
}

/// Where a fetch is; the connection, when there is one, lives in the variant.
enum Phase {
    /// Between hosts: a backoff timer or a worker hashing the `.part` runs.
    Waiting,
    Connecting {
        conn: ConnId,
        timer: TimerId,
        /// Its entry in `Fetches::timers`.
        seq: u64,
    },
    /// `INFO` and `GET`/`RANGE` sent together; checking the peer has the
    /// same size and hash.
    AwaitInfo { conn: ConnId },
    /// Waiting for `LENGTH`.
    AwaitLength { conn: ConnId },
    /// Payload bytes flow into buffers for the `.part`.
    Streaming { conn: ConnId, remaining: u64 },
    /// All bytes are in; the disk threads verify, write, fsync and rename.
    Verifying,
    /// Found already saved after a restart.
    Finishing,
    /// Completed, failed or cancelled.
    Done,
}

impl Phase {
    fn conn(&self) -> Option<ConnId> {
        match self {
            Phase::Connecting { conn, .. }
            | Phase::AwaitInfo { conn }
            | Phase::AwaitLength { conn }
            | Phase::Streaming { conn, .. } => Some(*conn),
            _ => None,
        }
    }
}

struct Download {
    rec: Record,
    phase: Phase,
    /// Index into `rec.hosts` being tried.
    host: usize,
    /// 0 on the first pass over the hosts, 1 on the retry.
    round: u8,
    /// The `.part`, until handed to the disk threads with the first buffer.
    files: Option<PartFiles>,
    /// Hash of the bytes before the first buffer, until handed over likewise.
    hash: Option<Sha256>,
    /// The buffer being filled; bytes `downloaded_size - len ..` of the file.
    buf: Option<Buf>,
    /// Waiting for a free buffer, input unread.
    stalled: bool,
    /// (when, downloaded) samples for the speed, newest last.
    samples: VecDeque<(Instant, u64)>,
    /// Why the last host failed, to explain a final failure.
    last_error: Option<String>,
    /// Why the last transfer stopped mid-way, the most telling reason.
    interrupted: Option<String>,
    /// Taken over from before a restart.
    resumed: bool,
    /// Where it is written, beneath a granted root (None until resolved
    /// again after a restart).
    place: Option<Place>,
}

enum TimerKind {
    Connect,
    Backoff,
    Save,
}

/// What a restarted fetch found on disk.
enum OnDisk {
    /// The `.part`: its hash state and length, open, and its identity.
    Part(Sha256, u64, PartFiles, PartId),
    /// No `.part`, and the final file is there with the expected size and
    /// hash: the rename happened just before the restart.
    AlreadySaved,
}

/// Results of worker jobs.
enum ChoreDone {
    Hashed {
        id: String,
        result: Result<OnDisk, String>,
    },
    /// The records as they were when durable save number `covers` was asked.
    Saved {
        covers: u64,
        result: Result<(), String>,
    },
}

pub struct Fetches {
    svc: ServiceId,
    sandbox: Arc<Sandbox>,
    records_path: PathBuf,
    jobs: HashMap<String, Download>,
    /// Fetch ids, oldest first.
    order: Vec<String>,
    conns: ConnMap<String>,
    timers: HashMap<u64, (String, TimerKind)>,
    next_key: u64,
    /// Hashing a resumed `.part`.
    work: Pool<ChoreDone>,
    /// Saving the records, one at a time and in order.
    saver: Pool<ChoreDone>,
    /// Hashes, writes and finishes downloads off the loop thread.
    lane: DiskLane,
    saving: bool,
    save_again: bool,
    /// A deferred save is armed.
    save_timer: Option<TimerId>,
    /// Records taken over from before a restart, started on the first wake.
    to_resume: Vec<String>,
    completed: Vec<(String, PathBuf)>,
    /// Durable saves asked for, numbered; a write covers every number
    /// asked before it took its snapshot.
    durable_asked: u64,
    /// Requests waiting for their fetch's record to be on disk: (save
    /// number needed, op); and those whose save finished, with the outcome.
    durable_waiters: Vec<(u64, u64)>,
    durable_ready: Vec<(u64, Result<(), String>)>,
}

impl Fetches {
    pub fn new(
        svc: ServiceId,
        waker: Arc<mio::Waker>,
        data_dir: &Path,
        sandbox: Arc<Sandbox>,
    ) -> io::Result<Self> {
        fs::create_dir_all(data_dir)?;
        let records_path = data_dir.join(RECORDS_FILE);
        let records: Vec<Record> = match fs::read(&records_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                crate::log_warn!("ignoring unreadable {}: {e}", records_path.display());
                Vec::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let work = Pool::new("fetch-io", 2, 256, waker.clone())?;
        let saver = Pool::new("fetch-save", 1, 1024, waker.clone())?;
        let lane = DiskLane::new(waker.clone())?;
        let mut f = Fetches {
            svc,
            sandbox,
            records_path,
            jobs: HashMap::new(),
            order: Vec::new(),
            conns: ConnMap::new(),
            timers: HashMap::new(),
            next_key: 1,
            work,
            saver,
            lane,
            saving: false,
            save_again: false,
            save_timer: None,
            to_resume: Vec::new(),
            completed: Vec::new(),
            durable_asked: 0,
            durable_waiters: Vec::new(),
            durable_ready: Vec::new(),
        };
        for mut rec in records {
            let resume = !rec.status.is_final();
            if resume {
                rec.status = Status::Pending;
                rec.error = None;
                // The host that was sending when the node stopped is not now.
                peers::stop(&mut rec.peers);
                f.to_resume.push(rec.fetch_id.clone());
            }
            f.order.push(rec.fetch_id.clone());
            f.jobs.insert(
                rec.fetch_id.clone(),
                Download {
                    rec,
                    phase: if resume { Phase::Waiting } else { Phase::Done },
                    host: 0,
                    round: 0,
                    files: None,
                    hash: None,
                    buf: None,
                    stalled: false,
                    samples: VecDeque::new(),
                    last_error: None,
                    interrupted: None,
                    resumed: resume,
                    place: None,
                },
            );
        }
        // Before anything serves: no fetch of this run has a `.part` yet, so
        // every one not claimed by a record carried over is an orphan.
        let claimed: Vec<PathBuf> = f
            .jobs
            .values()
            .filter(|j| !j.rec.status.is_final())
            .map(|j| part_path(&j.rec.save_path))
            .collect();
        // A completed fetch's `.part` was renamed away: one there now may be
        // another program's (a browser's download beside ours), so only
        // those of failed and cancelled fetches are taken for leftovers.
        let recorded: Vec<PathBuf> = f
            .jobs
            .values()
            .filter(|j| matches!(j.rec.status, Status::Failed | Status::Cancelled))
            .map(|j| part_path(&j.rec.save_path))
            .collect();
        orphans::remove(data_dir, &claimed, &recorded);
        if !f.to_resume.is_empty() {
            crate::log_info!(
                "resuming {} download(s) interrupted by a restart",
                f.to_resume.len()
            );
            let _ = waker.wake();
        }
        Ok(f)
    }

    /// Options of a fetch connection: no partial timeout (a payload is one
    /// long frame), an idle timeout, and reads of 512 KiB into a buffer of
    /// up to 1 MiB, each batch copied into a disk buffer at once. Measured
    /// on the 1 GiB fetch (loop thread CPU): 128 KiB reads 0.40 s, 256 KiB
    /// 0.30 s, 512 KiB 0.26 s, 1 MiB 0.32 s: fewer system calls, wake-ups
    /// and window updates, while the batch still mostly sits in the cache.
    pub fn conn_options() -> ConnOptions {
        ConnOptions {
            max_input: 1024 * 1024,
            max_output: 64 * 1024,
            write_budget: 64 * 1024,
            partial_timeout: None,
            idle_timeout: Some(IDLE_TIMEOUT),
            keep_buffer: 2 * 1024 * 1024,
            read_chunk: 512 * 1024,
            nodelay: true,
        }
    }

    /// Starts a download in the background; returns its id.
    pub fn start(&mut self, cx: &mut Ctx, req: FetchRequest) -> Result<String, (u16, String)> {
        if !valid_file_name(&req.fname) {
            return Err((400, format!("{:?} is not a valid file name", req.fname)));
        }
        let Some(first) = req.hosts.first() else {
            return Err((404, format!("No peer offers {:?}", req.fname)));
        };
        let running = self
            .jobs
            .values()
            .filter(|j| !j.rec.status.is_final())
            .count();
        if running >= MAX_ACTIVE {
            return Err((
                503,
                format!("{running} downloads are running already; try again when one ends"),
            ));
        }
        if let Some(other) = self
            .jobs
            .values()
            .find(|j| !j.rec.status.is_final() && j.rec.save_path == req.target)
        {
            return Err((
                409,
                format!(
                    "Another download ({}) is already saving to {}",
                    other.rec.fetch_id,
                    req.target.display()
                ),
            ));
        }
        // Only inside the user's downloads folder, a download root or a
        // share root; folders made beneath it, the `.part` created exclusively.
        let place = self.sandbox.place(&req.user, &req.target)?;
        let (files, part_id) = part::create(&place, first.size, req.overwrite)?;
        let id = new_id();
        let rec = Record {
            fetch_id: id.clone(),
            user: req.user.clone(),
            file_name: req.fname.clone(),
            total_size: first.size,
            sha256: first.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
            downloaded_size: 0,
            status: Status::Pending,
            peer: None,
            error: None,
            save_path: place.path.clone(),
            overwrite: req.overwrite,
            started_at: unix_now(),
            finished_at: None,
            hosts: req.hosts,
            part_id: Some(part_id),
            peers: Vec::new(),
            contributors: Vec::new(),
        };
        crate::log_info!(
            "fetch {id}: {:?} ({} bytes) for {} to {}",
            rec.file_name,
            rec.total_size,
            rec.user,
            rec.save_path.display()
        );
        self.forget_old(&req.user);
        self.order.push(id.clone());
        self.jobs.insert(
            id.clone(),
            Download {
                rec,
                phase: Phase::Waiting,
                host: 0,
                round: 0,
                files: Some(files),
                hash: Some(Sha256::new()),
                buf: None,
                stalled: false,
                samples: VecDeque::new(),
                last_error: None,
                interrupted: None,
                resumed: false,
                place: Some(place),
            },
        );
        self.save_soon(cx);
        self.try_host(cx, &id);
        Ok(id)
    }

    /// Progress of one of `user`'s fetches, as `docs/client-api.md` shows it.
    pub fn progress(&self, user: &str, id: &str) -> Option<Value> {
        let job = self.jobs.get(id).filter(|j| j.rec.user == user)?;
        Some(progress_json(job, Instant::now()))
    }

    /// All of `user`'s fetches, newest first.
    pub fn list(&self, user: &str) -> Vec<Value> {
        let now = Instant::now();
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.rec.user == user)
            .map(|j| progress_json(j, now))
            .collect()
    }

    pub fn cancel(&mut self, cx: &mut Ctx, user: &str, id: &str) -> Result<(), (u16, String)> {
        let Some(job) = self.jobs.get(id).filter(|j| j.rec.user == user) else {
            return Err((404, format!("No download with id {id}")));
        };
        if job.rec.status.is_final() {
            return Err((
                409,
                format!("The download is already {}", status_word(job.rec.status)),
            ));
        }
        if matches!(job.phase, Phase::Verifying | Phase::Finishing) {
            return Err((
                409,
                "The download is complete and being verified and saved; it can no longer be cancelled".into(),
            ));
        }
        self.end(cx, id, Status::Cancelled, None);
        Ok(())
    }

    /// Running fetches of `user` (the heartbeat's busy state).
    pub fn active(&self, user: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| j.rec.user == user && !j.rec.status.is_final())
            .count()
    }

    pub fn owns(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some()
    }

    pub fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {
        let Some(fid) = self.conns.get(id).cloned() else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&fid) else {
            return;
        };
        let Phase::Connecting { conn, timer, seq } = job.phase else {
            return;
        };
        if conn != id {
            return;
        }
        cx.cancel_timer(timer);
        self.timers.remove(&seq);
        // INFO and the data request leave in one write: a round trip less.
        // Should INFO show another version, the connection is dropped
        // before any payload is used.
        let name = job.rec.file_name.clone();
        let have = job.rec.downloaded_size;
        let data = if have == 0 {
            Request::Get { name: name.clone() }
        } else {
            Request::Range {
                offset: have,
                length: job.rec.total_size - have,
                name: name.clone(),
            }
        };
        match (
            peer::encode_request(&Request::Info { name }),
            peer::encode_request(&data),
        ) {
            (Some(mut lines), Some(second)) => {
                lines.extend_from_slice(&second);
                cx.send_vec(id, lines);
                job.phase = Phase::AwaitInfo { conn: id };
            }
            _ => {
                let msg = "The file name cannot be sent to a peer".to_owned();
                self.end(cx, &fid, Status::Failed, Some(msg));
            }
        }
    }

    pub fn on_input(&mut self, cx: &mut Ctx, id: ConnId) {
        let Some(fid) = self.conns.get(id).cloned() else {
            return;
        };
        loop {
            let Some(job) = self.jobs.get_mut(&fid) else {
                return;
            };
            if job.phase.conn() != Some(id) {
                return;
            }
            if let Phase::Streaming { remaining, .. } = job.phase {
                return self.stream_input(cx, &fid, id, remaining);
            }
            let (reply, used) = match peer::decode_reply(cx.input(id)) {
                Decoded::Partial => return,
                Decoded::Frame(r, used) => (r, used),
                Decoded::Invalid(..) | Decoded::TooLong => {
                    let msg = format!("{} does not speak the peer protocol", host_name(job));
                    return self.host_failed(cx, &fid, msg);
                }
            };
            cx.consume(id, used);
            if let Err(msg) = self.on_reply(cx, &fid, id, reply) {
                return self.host_failed(cx, &fid, msg);
            }
        }
    }

    /// Payload bytes: copied into the fetch's buffer, each full buffer handed
    /// to the disk threads at once. Without a free buffer the input stays
    /// unread (the socket then pushes back on the peer) until one comes back.
    fn stream_input(&mut self, cx: &mut Ctx, fid: &str, id: ConnId, mut remaining: u64) {
        while remaining > 0 && !cx.input(id).is_empty() {
            if self.jobs.get(fid).is_some_and(|j| j.buf.is_none()) {
                let limit = self.inflight_limit();
                let Some(job) = self.jobs.get_mut(fid) else {
                    return;
                };
                let at = job.rec.downloaded_size;
                let left = job.rec.total_size.saturating_sub(at);
                match self.lane.take_buf(fid, at, left, limit) {
                    Some(b) => job.buf = Some(b),
                    None => {
                        job.stalled = true;
                        break;
                    }
                }
            }
            let Some(job) = self.jobs.get_mut(fid) else {
                return;
            };
            job.stalled = false;
            let Some(buf) = job.buf.as_mut() else {
                return;
            };
            let input = cx.input(id);
            let n = input
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            let k = buf.fill(&input[..n]);
            cx.consume(id, k);
            job.rec.downloaded_size += k as u64;
            peers::add_bytes(&mut job.rec.peers, k as u64);
            remaining -= k as u64;
            // The last buffer is left to stream_done, which may finish a
            // small download in one hand-over.
            if buf.room() == 0 && remaining > 0 {
                if let Some(b) = job.buf.take() {
                    self.send_buf(fid, b);
                }
            }
        }
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        let now = cx.now();
        if job
            .samples
            .back()
            .is_none_or(|(t, _)| now.duration_since(*t) >= SAMPLE_EVERY)
        {
            job.samples.push_back((now, job.rec.downloaded_size));
            while job.samples.len() > 64 {
                job.samples.pop_front();
            }
        }
        if remaining == 0 {
            return self.stream_done(cx, fid);
        }
        job.phase = Phase::Streaming {
            conn: id,
            remaining,
        };
    }

    /// How many buffers one fetch may have on their way to disk: the shared
    /// allowance split between the fetches streaming now.
    fn inflight_limit(&self) -> usize {
        let streams = self
            .jobs
            .values()
            .filter(|j| matches!(j.phase, Phase::Streaming { .. }))
            .count()
            .max(1);
        (INFLIGHT_TOTAL / streams).clamp(INFLIGHT_MIN, INFLIGHT_MAX)
    }

    /// Hands a filled buffer to the disk threads (with the file and the hash
    /// so far, the first time).
    fn send_buf(&mut self, fid: &str, buf: Buf) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return self.lane.put_back(buf);
        };
        if let Some(files) = job.files.take() {
            let hash = job.hash.take().unwrap_or_default();
            self.lane.start(fid, files, hash);
        }
        self.lane.data(fid, buf);
    }

    /// Handles an answer line; Err means: give up on this host.
    fn on_reply(
        &mut self,
        cx: &mut Ctx,
        fid: &str,
        id: ConnId,
        reply: Answer,
    ) -> Result<(), String> {
        let Some(job) = self.jobs.get_mut(fid) else {
            return Ok(());
        };
        let host = host_name(job);
        match (&job.phase, reply) {
            (Phase::AwaitInfo { .. }, Answer::Info { size, sha256 }) => {
                if size != job.rec.total_size {
                    return Err(format!(
                        "{host} has a different version of the file ({size} bytes, not {})",
                        job.rec.total_size
                    ));
                }
                match &job.rec.sha256 {
                    Some(want) if !want.eq_ignore_ascii_case(&sha256) => {
                        return Err(format!(
                            "{host} has a different version of the file (its SHA-256 differs)"
                        ))
                    }
                    Some(_) => {}
                    None => job.rec.sha256 = Some(sha256),
                }
                job.phase = Phase::AwaitLength { conn: id };
                Ok(())
            }
            // The peer has not hashed the file yet: go on, and check what we can.
            (Phase::AwaitInfo { .. }, Answer::Error(ErrorCode::ReadError)) => {
                job.phase = Phase::AwaitLength { conn: id };
                Ok(())
            }
            (Phase::AwaitLength { .. }, Answer::Length(n)) => {
                let want = job.rec.total_size - job.rec.downloaded_size;
                if n != want {
                    return Err(format!(
                        "{host} offered {n} bytes where {want} were expected"
                    ));
                }
                if let Some(h) = job.rec.hosts.get(job.host) {
                    let (name, ip, port) = (h.hostname.clone(), h.ip.clone(), h.port);
                    peers::activate(&mut job.rec.peers, &name, &ip, port);
                    if n > 0 && !job.rec.contributors.contains(&name) {
                        job.rec.contributors.push(name);
                    }
                }
                job.rec.peer = Some(host);
                if n == 0 {
                    self.stream_done(cx, fid);
                    return Ok(());
                }
                job.rec.status = Status::Downloading;
                job.phase = Phase::Streaming {
                    conn: id,
                    remaining: n,
                };
                if job.samples.is_empty() {
                    job.samples.push_back((cx.now(), job.rec.downloaded_size));
                }
                Ok(())
            }
            (_, Answer::Error(code)) => Err(match code {
                ErrorCode::NotFound => format!("{host} no longer publishes the file"),
                ErrorCode::FileNotFound => format!("{host} no longer has the file on disk"),
                ErrorCode::ReadError => format!("{host} could not read the file"),
                c => format!("{host} answered ERROR {c}"),
            }),
            (_, other) => Err(format!("{host} answered out of turn ({other:?})")),
        }
    }

    pub fn on_close(&mut self, cx: &mut Ctx, id: ConnId, why: CloseReason) {
        let Some(fid) = self.conns.remove(id) else {
            return;
        };
        let Some(job) = self.jobs.get_mut(&fid) else {
            return;
        };
        if job.phase.conn() != Some(id) {
            return;
        }
        if let Phase::Connecting { timer, seq, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&seq);
        }
        let host = host_name(job);
        let addr = host_addr(job);
        let msg = match why {
            // Stopping: the record stays as it is and resumes after a restart.
            CloseReason::Shutdown | CloseReason::Local => {
                job.phase = Phase::Waiting;
                return;
            }
            CloseReason::ConnectFailed(e) => format!("Could not connect to {host} at {addr}: {e}"),
            CloseReason::Timeout if matches!(job.phase, Phase::Connecting { .. }) => {
                format!("Could not connect to {host} at {addr} in time")
            }
            CloseReason::Timeout => format!("{host} sent nothing for {} s", IDLE_TIMEOUT.as_secs()),
            CloseReason::PeerClosed => format!("{host} closed the connection"),
            CloseReason::Error(e) => format!("The connection to {host} failed ({e})"),
        };
        self.host_failed(cx, &fid, msg);
    }

    /// A timer of this module fired (`Timer::Fetch(seq)`).
    pub fn on_timer(&mut self, cx: &mut Ctx, seq: u64) {
        let Some((fid, kind)) = self.timers.remove(&seq) else {
            return;
        };
        if matches!(kind, TimerKind::Save) {
            self.save_timer = None;
            self.save();
            return;
        }
        let Some(job) = self.jobs.get_mut(&fid) else {
            return;
        };
        match (kind, &job.phase) {
            (TimerKind::Connect, Phase::Connecting { .. }) => {
                let msg = format!(
                    "Could not connect to {} at {} within {} s",
                    host_name(job),
                    host_addr(job),
                    CONNECT_TIMEOUT.as_secs()
                );
                self.host_failed(cx, &fid, msg);
            }
            (TimerKind::Backoff, Phase::Waiting) => self.try_host(cx, &fid),
            _ => {}
        }
    }

    /// Disk and worker results, and the first wake after a restart.
    pub fn on_wake(&mut self, cx: &mut Ctx) {
        for id in std::mem::take(&mut self.to_resume) {
            self.resume_from_disk(cx, &id);
        }
        for event in self.lane.drain() {
            match event {
                Event::Done { id, result } => self.on_finished(cx, &id, result),
                Event::Failed { id, msg } => {
                    if self.jobs.get(&id).is_some_and(|j| !j.rec.status.is_final()) {
                        self.end(cx, &id, Status::Failed, Some(msg));
                    }
                }
                Event::BuffersFree => {
                    let stalled: Vec<ConnId> = self
                        .jobs
                        .values()
                        .filter(|j| j.stalled)
                        .filter_map(|j| match j.phase {
                            Phase::Streaming { conn, .. } => Some(conn),
                            _ => None,
                        })
                        .collect();
                    for conn in stalled {
                        self.on_input(cx, conn);
                    }
                }
            }
        }
        for done in self.work.drain().into_iter().chain(self.saver.drain()) {
            match done {
                ChoreDone::Saved { covers, result } => {
                    self.saving = false;
                    self.saved_durably(covers, &result);
                    if let Err(e) = result {
                        crate::log_warn!("could not save the download records: {e}");
                    }
                    if std::mem::take(&mut self.save_again) {
                        self.save();
                    }
                }
                ChoreDone::Hashed { id, result } => self.on_hashed(cx, &id, result),
            }
        }
    }

    /// Cancels every running fetch of `user` (logout).
    pub fn cancel_user(&mut self, cx: &mut Ctx, user: &str) {
        let ids: Vec<String> = self
            .jobs
            .values()
            .filter(|j| {
                j.rec.user == user
                    && !j.rec.status.is_final()
                    && !matches!(j.phase, Phase::Verifying | Phase::Finishing)
            })
            .map(|j| j.rec.fetch_id.clone())
            .collect();
        for id in ids {
            self.end(
                cx,
                &id,
                Status::Cancelled,
                Some("Cancelled at logout".into()),
            );
        }
    }

    /// `op` is answered once the records as they are now are on disk (see
    /// [`Fetches::take_durable`]): an answered `/fetch` survives a crash.
    /// The write runs on the saver thread, never in the loop.
    /// False: no write could be started, the op is not kept.
    pub fn when_durable(&mut self, op: u64) -> bool {
        self.durable_asked += 1;
        self.durable_waiters.push((self.durable_asked, op));
        if self.save() {
            return true;
        }
        self.durable_waiters.retain(|w| w.1 != op);
        false
    }

    /// Ops whose durable save finished, with its outcome.
    pub fn take_durable(&mut self) -> Vec<(u64, Result<(), String>)> {
        std::mem::take(&mut self.durable_ready)
    }

    fn saved_durably(&mut self, covers: u64, result: &Result<(), String>) {
        let mut still = Vec::new();
        for (need, op) in std::mem::take(&mut self.durable_waiters) {
            if need <= covers {
                self.durable_ready.push((op, result.clone()));
            } else {
                still.push((need, op));
            }
        }
        self.durable_waiters = still;
        if !self.durable_waiters.is_empty() {
            // Asked for while this write was out: the next one covers them.
            self.save_again = true;
        }
    }

    /// The whole file failed its hash: every host whose bytes it holds is
    /// dropped from this fetch and it starts over from 0 with the others
    /// (without piece hashes the good part cannot be told from the bad).
    fn bad_content(&mut self, cx: &mut Ctx, fid: &str) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        let blamed = std::mem::take(&mut job.rec.contributors);
        if blamed.is_empty() {
            return self.end(cx, fid, Status::Failed, Some(MISMATCH.into()));
        }
        let why = "sent data that does not match the SHA-256 published for this file";
        for name in &blamed {
            let (ip, port) = job
                .rec
                .hosts
                .iter()
                .find(|h| &h.hostname == name)
                .map(|h| (h.ip.clone(), h.port))
                .unwrap_or_default();
            peers::drop_host(&mut job.rec.peers, name, &ip, port, why);
        }
        crate::log_warn!(
            "fetch {fid}: {:?} failed verification; dropped {} and starting over",
            job.rec.file_name,
            blamed.join(", ")
        );
        // The drops explain a final failure unless another one follows.
        job.last_error = None;
        job.interrupted = None;
        job.rec.downloaded_size = 0;
        job.rec.status = Status::Pending;
        job.phase = Phase::Waiting;
        job.files = None;
        job.hash = None;
        job.stalled = false;
        job.host = 0;
        job.round = 0;
        job.samples.clear();
        if let Some(b) = job.buf.take() {
            self.lane.put_back(b);
        }
        self.lane.forget(fid);
        self.save();
        // A worker opens the (now empty or gone) `.part` again and the
        // next host is tried from its length.
        self.resume_from_disk(cx, fid);
    }

    /// Files that finished since the last call: (user, final path).
    pub fn take_completed(&mut self) -> Vec<(String, PathBuf)> {
        std::mem::take(&mut self.completed)
    }

    // ----- transitions -----

    /// Connects to the current host, skipping those that cannot be this
    /// file; after the last host, retries the list once, then fails.
    fn try_host(&mut self, cx: &mut Ctx, fid: &str) {
        loop {
            let Some(job) = self.jobs.get_mut(fid) else {
                return;
            };
            if !matches!(job.phase, Phase::Waiting) {
                return;
            }
            if job.host >= job.rec.hosts.len() {
                if job.round == 0 && !job.rec.hosts.is_empty() {
                    job.round = 1;
                    job.host = 0;
                    let seq = self.timer_seq(fid, TimerKind::Backoff);
                    cx.timer(self.svc, RETRY_BACKOFF, Timer::Fetch(seq).to_key());
                    return;
                }
                let msg = match (peers::dropped_summary(&job.rec.peers), &job.last_error) {
                    // Nothing failed since the last drop: the drops are the story.
                    (Some(d), None) => format!("No host could provide a verified copy: {d}"),
                    (Some(d), Some(_)) => format!("{} ({d})", final_error(job)),
                    (None, _) => final_error(job),
                };
                return self.end(cx, fid, Status::Failed, Some(msg));
            }
            let h = &job.rec.hosts[job.host];
            if peers::is_dropped(&job.rec.peers, &h.hostname) {
                job.host += 1;
                continue;
            }
            let same = h.size == job.rec.total_size
                && match (&h.sha256, &job.rec.sha256) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    _ => true,
                };
            if !same {
                job.host += 1;
                continue;
            }
            let addr = match h.ip.trim().parse::<IpAddr>() {
                Ok(ip) => SocketAddr::new(ip, h.port),
                Err(_) => {
                    job.last_error = Some(format!("{} has no usable address", h.hostname));
                    job.host += 1;
                    continue;
                }
            };
            match cx.connect(addr, self.svc, Self::conn_options()) {
                Ok(conn) => {
                    self.conns.insert(conn, fid.to_owned());
                    let seq = self.timer_seq(fid, TimerKind::Connect);
                    let timer = cx.timer(self.svc, CONNECT_TIMEOUT, Timer::Fetch(seq).to_key());
                    if let Some(job) = self.jobs.get_mut(fid) {
                        job.phase = Phase::Connecting { conn, timer, seq };
                    }
                    return;
                }
                Err(e) => {
                    job.last_error = Some(format!(
                        "Could not connect to {} at {addr}: {e}",
                        h.hostname
                    ));
                    job.host += 1;
                }
            }
        }
    }

    /// This host failed: drop its connection and go on with the next.
    fn host_failed(&mut self, cx: &mut Ctx, fid: &str, msg: String) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        crate::log_info!("fetch {fid}: {msg}");
        if let Some(conn) = job.phase.conn() {
            self.conns.remove(conn);
            cx.close(conn);
        }
        if let Phase::Connecting { timer, seq, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&seq);
        }
        if matches!(job.phase, Phase::Streaming { .. }) {
            job.interrupted = Some(msg.clone());
        }
        peers::stop(&mut job.rec.peers);
        job.last_error = Some(msg);
        job.host += 1;
        job.phase = Phase::Waiting;
        self.try_host(cx, fid);
    }

    /// All bytes arrived: verify, write out, fsync and rename on the disk
    /// threads. A download that fit one small buffer is hashed and checked
    /// right here and goes to the writer in one hand-over.
    fn stream_done(&mut self, cx: &mut Ctx, fid: &str) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if let Some(conn) = job.phase.conn() {
            self.conns.remove(conn);
            cx.close(conn);
        }
        peers::stop(&mut job.rec.peers);
        if job.rec.downloaded_size != job.rec.total_size {
            let msg = format!(
                "Downloaded {} bytes where {} were expected",
                job.rec.downloaded_size, job.rec.total_size
            );
            return self.end(cx, fid, Status::Failed, Some(msg));
        }
        job.rec.status = Status::Verifying;
        job.phase = Phase::Verifying;
        let expect = job.rec.sha256.clone();
        let Some(target) = job.place.clone() else {
            let msg = "The download lost track of where to save it".to_owned();
            return self.end(cx, fid, Status::Failed, Some(msg));
        };
        let overwrite = job.rec.overwrite;
        let pending = job.buf.as_ref().map_or(0, |b| b.data().len());
        let here = match job.files.take() {
            Some(files) if pending <= HASH_HERE_MAX => Some(files),
            Some(files) => {
                job.files = Some(files);
                None
            }
            None => None,
        };
        let Some(files) = here else {
            if let Some(buf) = job.buf.take() {
                self.send_buf(fid, buf);
            }
            return self.lane.finish(fid, expect, target, overwrite);
        };
        let mut hash = job.hash.take().unwrap_or_default();
        let buf = job.buf.take();
        if let Some(b) = &buf {
            hash.update(b.data());
        }
        let got = hex(&hash.finalize());
        if expect.is_some_and(|want| !want.eq_ignore_ascii_case(&got)) {
            if let Some(b) = buf {
                self.lane.put_back(b);
            }
            // Start over empty; the descriptor is ours, so no path is followed.
            let _ = files.file.set_len(0);
            drop(files);
            return self.bad_content(cx, fid);
        }
        let buf = buf.filter(|b| !b.is_empty());
        self.lane
            .finish_verified(fid, files, buf, got, target, overwrite);
    }

    /// The disk threads finished a download: the verified digest, or why not.
    fn on_finished(&mut self, cx: &mut Ctx, fid: &str, result: Result<String, String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if !matches!(job.phase, Phase::Verifying | Phase::Finishing) {
            return;
        }
        let digest = match result {
            Ok(d) => d,
            // The disk threads removed the `.part`: a fresh one is made.
            Err(msg) if msg == MISMATCH => return self.bad_content(cx, fid),
            Err(msg) => return self.end(cx, fid, Status::Failed, Some(msg)),
        };
        if job.rec.sha256.is_none() && !digest.is_empty() {
            job.rec.sha256 = Some(digest);
        }
        job.phase = Phase::Done;
        job.rec.finished_at = Some(unix_now());
        job.rec.status = Status::Completed;
        job.rec.error = None;
        crate::log_info!(
            "fetch {fid}: completed {:?} ({} bytes)",
            job.rec.file_name,
            job.rec.total_size
        );
        self.completed
            .push((job.rec.user.clone(), job.rec.save_path.clone()));
        self.save_soon(cx);
        self.trim_if_idle();
    }

    /// With no download streaming, spare disk buffers are given back.
    fn trim_if_idle(&self) {
        let streaming = self
            .jobs
            .values()
            .any(|j| matches!(j.phase, Phase::Streaming { .. }));
        if !streaming {
            self.lane.trim();
        }
    }

    /// Ends a fetch the disk threads are not finishing: closes its
    /// connection, removes the `.part`, records the outcome.
    fn end(&mut self, cx: &mut Ctx, fid: &str, status: Status, error: Option<String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if let Some(conn) = job.phase.conn() {
            self.conns.remove(conn);
            cx.close(conn);
        }
        if let Phase::Connecting { timer, seq, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&seq);
        }
        job.phase = Phase::Done;
        job.files = None;
        job.hash = None;
        job.stalled = false;
        if let Some(b) = job.buf.take() {
            self.lane.put_back(b);
        }
        self.lane.forget(fid);
        if let Some(place) = &job.place {
            // A few syscalls in the loop turn, as the unlink before was.
            part::remove(place, job.rec.part_id);
        }
        job.rec.status = status;
        job.rec.finished_at = Some(unix_now());
        job.rec.error = match (error, job.resumed) {
            (Some(e), true) if status == Status::Failed => {
                Some(format!("Interrupted by a restart; resuming failed: {e}"))
            }
            (e, _) => e,
        };
        if let Some(e) = &job.rec.error {
            crate::log_info!("fetch {fid}: {} ({e})", status_word(status));
        }
        self.save();
        self.trim_if_idle();
    }

    /// After a restart: hash what the `.part` holds (on a worker), then go on.
    fn resume_from_disk(&mut self, cx: &mut Ctx, fid: &str) {
        let Some(job) = self.jobs.get(fid) else {
            return;
        };
        // The rules may have changed since (other roots): judged again.
        let place = match self.sandbox.place(&job.rec.user, &job.rec.save_path) {
            Ok(p) => p,
            Err((_, msg)) => return self.end(cx, fid, Status::Failed, Some(msg)),
        };
        let (total, sha) = (job.rec.total_size, job.rec.sha256.clone());
        let recorded = job.rec.part_id;
        let id = fid.to_owned();
        if let Some(job) = self.jobs.get_mut(fid) {
            job.place = Some(place.clone());
        }
        let submitted = self.work.submit(move || ChoreDone::Hashed {
            result: look_on_disk(&place, recorded, total, sha.as_deref()),
            id,
        });
        if submitted.is_err() {
            let msg = "The node is too busy to resume it".to_owned();
            self.end(cx, fid, Status::Failed, Some(msg));
        }
    }

    fn on_hashed(&mut self, cx: &mut Ctx, fid: &str, result: Result<OnDisk, String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if job.rec.status.is_final() {
            // Cancelled meanwhile; the worker may have created the `.part` again.
            if let (Ok(OnDisk::Part(_, _, _, id)), Some(place)) = (&result, &job.place) {
                part::remove(place, Some(*id));
            }
            return;
        }
        if !matches!(job.phase, Phase::Waiting) {
            return;
        }
        match result {
            Ok(OnDisk::AlreadySaved) => {
                job.rec.downloaded_size = job.rec.total_size;
                job.phase = Phase::Finishing;
                self.on_finished(cx, fid, Ok(String::new()));
            }
            Ok(OnDisk::Part(hasher, len, files, id)) => {
                job.rec.part_id = Some(id);
                crate::log_info!(
                    "fetch {fid}: resuming {:?} from {len} bytes on disk",
                    job.rec.file_name
                );
                job.files = Some(files);
                job.hash = Some(hasher);
                job.rec.downloaded_size = len;
                if len == job.rec.total_size {
                    self.stream_done(cx, fid);
                } else {
                    self.try_host(cx, fid);
                }
            }
            Err(msg) => self.end(cx, fid, Status::Failed, Some(msg)),
        }
    }

    // ----- bookkeeping -----

    /// A new timer of this module: its sequence number, remembered with
    /// what it is for (the reactor's key is `Timer::Fetch(seq).to_key()`).
    fn timer_seq(&mut self, fid: &str, kind: TimerKind) -> u64 {
        let seq = self.next_key & Timer::SEQ_MASK;
        self.next_key += 1;
        self.timers.insert(seq, (fid.to_owned(), kind));
        seq
    }

    /// Drops the oldest finished records of `user` beyond the keep limit.
    fn forget_old(&mut self, user: &str) {
        let finished: Vec<String> = self
            .order
            .iter()
            .filter(|id| {
                self.jobs
                    .get(*id)
                    .is_some_and(|j| j.rec.user == user && j.rec.status.is_final())
            })
            .cloned()
            .collect();
        if finished.len() < KEEP_FINISHED {
            return;
        }
        let drop_n = finished.len() + 1 - KEEP_FINISHED;
        for id in &finished[..drop_n] {
            self.jobs.remove(id);
        }
        self.order.retain(|id| self.jobs.contains_key(id));
    }

    /// Saves the records a little later, together with whatever else
    /// changes meanwhile (a burst of short downloads costs one save, and its
    /// fsyncs do not compete with theirs).
    fn save_soon(&mut self, cx: &mut Ctx) {
        if self.save_timer.is_none() {
            let seq = self.timer_seq("", TimerKind::Save);
            self.save_timer = Some(cx.timer(self.svc, SAVE_DELAY, Timer::Fetch(seq).to_key()));
        }
    }

    /// Writes the records on the saver thread; saves asked for meanwhile
    /// are folded into one more save after it. False: no write is out or
    /// queued (the saver's queue is full or the records cannot be encoded).
    fn save(&mut self) -> bool {
        if self.saving {
            self.save_again = true;
            return true;
        }
        let records: Vec<&Record> = self
            .order
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .map(|j| &j.rec)
            .collect();
        let bytes = match serde_json::to_vec_pretty(&records) {
            Ok(b) => b,
            Err(e) => {
                crate::log_warn!("could not encode the download records: {e}");
                return false;
            }
        };
        let path = self.records_path.clone();
        let covers = self.durable_asked;
        let job = move || ChoreDone::Saved {
            covers,
            result: crate::store::write_atomic(&path, &bytes).map_err(|e| e.to_string()),
        };
        match self.saver.submit(job) {
            Ok(()) => {
                self.saving = true;
                true
            }
            Err(_) => {
                self.save_again = true;
                false
            }
        }
    }
}

// ----- helpers (no loop state) -----

fn host_name(job: &Download) -> String {
    job.rec
        .hosts
        .get(job.host)
        .map(|h| h.hostname.clone())
        .unwrap_or_else(|| "the peer".into())
}

fn host_addr(job: &Download) -> String {
    job.rec
        .hosts
        .get(job.host)
        .map(|h| format!("{}:{}", h.ip, h.port))
        .unwrap_or_default()
}

/// The sentence shown when every host failed.
fn final_error(job: &Download) -> String {
    let last = job
        .last_error
        .clone()
        .unwrap_or_else(|| "No host offers this version of the file".into());
    let others = if job.rec.hosts.len() > 1 {
        "no other host could provide the file"
    } else {
        "no other host has the file"
    };
    match &job.interrupted {
        Some(first) if job.rec.downloaded_size > 0 => {
            let got = human_bytes(job.rec.downloaded_size);
            if *first == last {
                format!("{first} after {got} and {others}")
            } else {
                format!("{first} after {got} and {others} (last try: {last})")
            }
        }
        _ => format!("{last}, and {others}"),
    }
}

fn progress_json(job: &Download, now: Instant) -> Value {
    let r = &job.rec;
    let running = matches!(r.status, Status::Downloading);
    let speed = match (r.status, r.finished_at) {
        _ if running => speed_bps(&job.samples, r.downloaded_size, now),
        (Status::Completed, Some(end)) => average_bps(r.total_size, end - r.started_at),
        _ => 0,
    };
    let left = r.total_size.saturating_sub(r.downloaded_size);
    let eta = if r.status == Status::Completed {
        Some(0)
    } else if running && speed > 0 {
        Some(left.div_ceil(speed))
    } else {
        None
    };
    let percent = if r.total_size == 0 {
        if r.status == Status::Completed {
            100.0
        } else {
            0.0
        }
    } else {
        (r.downloaded_size as f64 * 1000.0 / r.total_size as f64).floor() / 10.0
    };
    json!({
        "fetch_id": r.fetch_id,
        "file_name": r.file_name,
        "downloaded_size": r.downloaded_size,
        "total_size": r.total_size,
        "progress_percent": percent,
        "speed_bps": speed,
        "eta_seconds": eta,
        "status": status_word(r.status),
        "peer": r.peer,
        "error": r.error,
        "save_path": r.save_path.to_string_lossy(),
        "sha256": r.sha256,
        "started_at": r.started_at,
        "finished_at": r.finished_at,
        "peers": r.peers,
    })
}

/// A finished download's speed: its size over its whole duration.
fn average_bps(bytes: u64, secs: f64) -> u64 {
    if bytes == 0 || !secs.is_finite() || secs <= 0.0 {
        return 0;
    }
    (bytes as f64 / secs.max(1e-6)) as u64
}

/// Bytes per second over the last few seconds: from the oldest sample in
/// the window to now, so a stalled transfer drops towards zero.
fn speed_bps(samples: &VecDeque<(Instant, u64)>, downloaded: u64, now: Instant) -> u64 {
    let base = samples
        .iter()
        .find(|(t, _)| now.saturating_duration_since(*t) <= SPEED_WINDOW)
        .or(samples.back());
    let Some(&(t, bytes)) = base else {
        return 0;
    };
    let span = now.saturating_duration_since(t).as_secs_f64();
    if span < 0.05 {
        return 0;
    }
    (downloaded.saturating_sub(bytes) as f64 / span) as u64
}

fn status_word(s: Status) -> &'static str {
    match s {
        Status::Pending => "pending",
        Status::Downloading => "downloading",
        Status::Verifying => "verifying",
        Status::Completed => "completed",
        Status::Failed => "failed",
        Status::Cancelled => "cancelled",
    }
}

/// "12.5 MB": decimal units, as people read download sizes.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u + 1 < UNITS.len() {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} bytes")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn new_id() -> String {
    let bytes = crate::auth::random::bytes(8).unwrap_or_else(|_| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        (t as u64 ^ u64::from(std::process::id()))
            .to_le_bytes()
            .to_vec()
    });
    hex(&bytes)
}

/// Worker: after a restart, what is there to go on from. Every file is
/// reached through `place` (no symlink followed).
fn look_on_disk(
    place: &Place,
    recorded: Option<PartId>,
    total: u64,
    sha: Option<&str>,
) -> Result<OnDisk, String> {
    let part_there = place
        .open_dir(false)
        .ok()
        .and_then(|d| d.entry(&place.part_name()).ok().flatten())
        .is_some();
    if !part_there {
        if let Some(mut f) = part::open_final(place) {
            if f.metadata().is_ok_and(|m| m.len() == total) {
                if let Some(want) = sha {
                    let mut h = Sha256::new();
                    io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
                    if hex(&h.finalize()) == want {
                        return Ok(OnDisk::AlreadySaved);
                    }
                }
            }
        }
    }
    let (f, id) = part::reopen(place, recorded)?;
    let (h, len, f) = hash_part(f, total)
        .map_err(|e| format!("Could not read {}.part: {e}", place.path.display()))?;
    Ok(OnDisk::Part(h, len, PartFiles::with(f, total - len), id))
}

/// Worker: the hash state of what the open `.part` holds (at most `total`
/// bytes; more means it is not ours and starts over), positioned at its end.
fn hash_part(mut f: File, total: u64) -> io::Result<(Sha256, u64, File)> {
    let mut len = f.metadata()?.len();
    if len > total {
        f.set_len(0)?;
        len = 0;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    let len = len - left;
    f.seek(SeekFrom::Start(len))?;
    Ok((h, len, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(12_500_000), "12.5 MB");
        assert_eq!(human_bytes(1_073_741_824), "1.1 GB");
    }

    #[test]
    fn hashing_a_part_matches_hashing_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(&part, &data).unwrap();
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&part)
                .unwrap()
        };
        let (h, len, mut f) = hash_part(open(), 5_000_000).unwrap();
        use std::io::Write;
        assert_eq!(len, 3_000_000);
        assert_eq!(hex(&h.finalize()), hex(&Sha256::digest(&data)));
        f.write_all(b"more").unwrap();
        assert_eq!(fs::metadata(&part).unwrap().len(), 3_000_004);
        // Longer than the file we want: not ours, start over.
        let (_, len, _) = hash_part(open(), 10).unwrap();
        assert_eq!(len, 0);
    }

    #[test]
    fn speed_uses_the_recent_window() {
        let t0 = Instant::now();
        let mut s = VecDeque::new();
        s.push_back((t0, 0));
        s.push_back((t0 + Duration::from_secs(5), 5_000));
        s.push_back((t0 + Duration::from_secs(6), 6_000));
        let now = t0 + Duration::from_secs(7);
        // Window starts at the t=5 s sample: 2 000 bytes in 2 s.
        assert_eq!(speed_bps(&s, 7_000, now), 1_000);
        // Stalled for long: the base is the last sample, speed falls.
        let later = t0 + Duration::from_secs(60);
        assert!(speed_bps(&s, 7_000, later) < 30);
    }

    #[test]
    fn a_finished_download_reports_its_average_speed() {
        assert_eq!(average_bps(10_000_000, 2.0), 5_000_000);
        assert_eq!(average_bps(0, 2.0), 0);
        // Clock steps must not give nonsense.
        assert_eq!(average_bps(10, -1.0), 0);
        assert_eq!(average_bps(10, f64::NAN), 0);
    }
}
