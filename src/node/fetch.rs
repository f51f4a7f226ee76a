//! Downloads: each fetch streams a file from a peer into `<target>.part`,
//! hashing as bytes arrive, goes on from the bytes it has with `RANGE` on the
//! next host when a peer fails, verifies size and SHA-256, and only then
//! renames onto the final name (never over an existing file unless asked).
//! Blocking file work (fsync, rename, hashing a resumed `.part`, saving the
//! records) runs on worker threads, never in a loop turn; the running hash
//! is kept by a hash thread that reads back what the loop wrote.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reactor::{CloseReason, ConnId, ConnMap, ConnOptions, Ctx, Pool, ServiceId, TimerId};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::proto::peer::{self, Decoded, ErrorCode, Reply, Request};

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

/// Timer keys of this module carry this top byte (NODE.md).
pub const TIMER_TAG: u64 = 0x01 << 56;
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
/// Finished records kept per user.
const KEEP_FINISHED: usize = 200;
const RECORDS_FILE: &str = "fetches.json";

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
}

/// Where a fetch is; the connection, when there is one, lives in the variant.
enum Phase {
    /// Between hosts: a backoff timer or a worker hashing the `.part` runs.
    Waiting,
    Connecting {
        conn: ConnId,
        timer: TimerId,
        key: u64,
    },
    /// `INFO` sent; checking the peer has the same size and hash.
    AwaitInfo { conn: ConnId },
    /// `GET`/`RANGE` sent; waiting for `LENGTH`.
    AwaitLength { conn: ConnId },
    /// Payload bytes flow into the `.part`.
    Streaming { conn: ConnId, remaining: u64 },
    /// All bytes are on disk; the hash lane is catching up.
    Verifying,
    /// A worker fsyncs and renames.
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

struct Job {
    rec: Record,
    phase: Phase,
    /// Index into `rec.hosts` being tried.
    host: usize,
    /// 0 on the first pass over the hosts, 1 on the retry.
    round: u8,
    file: Option<File>,
    /// (when, downloaded) samples for the speed, newest last.
    samples: VecDeque<(Instant, u64)>,
    /// Why the last host failed, to explain a final failure.
    last_error: Option<String>,
    /// Why the last transfer stopped mid-way, the most telling reason.
    interrupted: Option<String>,
    /// Taken over from before a restart.
    resumed: bool,
}

enum TimerKind {
    Connect,
    Backoff,
}

/// What a restarted fetch found on disk.
enum OnDisk {
    /// The `.part`: its hash state and length, open for appending.
    Part(Sha256, u64, File),
    /// No `.part`, and the final file is there with the expected size and
    /// hash: the rename happened just before the restart.
    AlreadySaved,
}

/// Results of worker jobs.
enum Done {
    Hashed {
        id: String,
        result: Result<OnDisk, String>,
    },
    Finished {
        id: String,
        result: Result<(), String>,
    },
    Saved(Result<(), String>),
}

pub struct Fetches {
    svc: ServiceId,
    records_path: PathBuf,
    jobs: HashMap<String, Job>,
    /// Fetch ids, oldest first.
    order: Vec<String>,
    conns: ConnMap<String>,
    timers: HashMap<u64, (String, TimerKind)>,
    next_key: u64,
    /// fsync + rename, hashing a resumed `.part`.
    work: Pool<Done>,
    /// Saving the records, one at a time and in order.
    saver: Pool<Done>,
    /// Hashes downloads off the loop thread.
    lane: HashLane,
    saving: bool,
    save_again: bool,
    /// Records taken over from before a restart, started on the first wake.
    to_resume: Vec<String>,
    completed: Vec<(String, PathBuf)>,
}

impl Fetches {
    pub fn new(svc: ServiceId, waker: Arc<mio::Waker>, data_dir: &Path) -> io::Result<Self> {
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
        let lane = HashLane::new(waker.clone())?;
        let mut f = Fetches {
            svc,
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
            to_resume: Vec::new(),
            completed: Vec::new(),
        };
        for mut rec in records {
            let resume = !rec.status.is_final();
            if resume {
                rec.status = Status::Pending;
                rec.error = None;
                f.to_resume.push(rec.fetch_id.clone());
            }
            f.order.push(rec.fetch_id.clone());
            f.jobs.insert(
                rec.fetch_id.clone(),
                Job {
                    rec,
                    phase: if resume { Phase::Waiting } else { Phase::Done },
                    host: 0,
                    round: 0,
                    file: None,
                    samples: VecDeque::new(),
                    last_error: None,
                    interrupted: None,
                    resumed: resume,
                },
            );
        }
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
    /// long frame), an idle timeout, and a cache-sized read buffer. Each
    /// batch read from the socket is written to the `.part` at once; while
    /// it still sits in the CPU cache that copy is cheap. Measured on the
    /// 1 GiB transfer: 4 MiB batches spent 2-4x the kernel time of 256 KiB
    /// ones, nearly all of it copying into the page cache.
    pub fn conn_options() -> ConnOptions {
        ConnOptions {
            max_input: 256 * 1024,
            max_output: 64 * 1024,
            write_budget: 64 * 1024,
            partial_timeout: None,
            idle_timeout: Some(IDLE_TIMEOUT),
            keep_buffer: 512 * 1024,
            read_chunk: 128 * 1024,
            nodelay: true,
        }
    }

    /// Starts a download in the background; returns its id.
    pub fn start(&mut self, cx: &mut Ctx, req: FetchRequest) -> Result<String, (u16, String)> {
        if !valid_name(&req.fname) {
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
        if fs::symlink_metadata(&req.target).is_ok() && !req.overwrite {
            return Err((
                409,
                format!(
                    "A file already exists at {}; ask with overwrite: true to replace it",
                    req.target.display()
                ),
            ));
        }
        if req.target.is_dir() {
            return Err((409, format!("{} is a directory", req.target.display())));
        }
        if let Some(dir) = req.target.parent() {
            if !dir.as_os_str().is_empty() {
                fs::create_dir_all(dir).map_err(|e| {
                    (
                        500,
                        format!("Could not create the folder {}: {e}", dir.display()),
                    )
                })?;
            }
        }
        let part = part_path(&req.target);
        // Readable too: the hash lane reads back what was written.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&part)
            .map_err(|e| (500, format!("Could not create {}: {e}", part.display())))?;
        let reader = file
            .try_clone()
            .map_err(|e| (500, format!("Could not open {}: {e}", part.display())))?;
        let id = new_id();
        self.lane.start(&id, reader, Sha256::new(), 0);
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
            save_path: req.target.clone(),
            overwrite: req.overwrite,
            started_at: unix_now(),
            finished_at: None,
            hosts: req.hosts,
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
            Job {
                rec,
                phase: Phase::Waiting,
                host: 0,
                round: 0,
                file: Some(file),
                samples: VecDeque::new(),
                last_error: None,
                interrupted: None,
                resumed: false,
            },
        );
        self.save();
        self.try_host(cx, &id);
        Ok(id)
    }

    /// SPEC §5 progress of one of `user`'s fetches.
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
        if matches!(job.phase, Phase::Finishing) {
            return Err((
                409,
                "The download is complete and being saved; it can no longer be cancelled".into(),
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
        let Phase::Connecting { conn, timer, key } = job.phase else {
            return;
        };
        if conn != id {
            return;
        }
        cx.cancel_timer(timer);
        self.timers.remove(&key);
        let req = Request::Info {
            name: job.rec.file_name.clone(),
        };
        match peer::encode_request(&req) {
            Some(line) => {
                cx.send_vec(id, line);
                job.phase = Phase::AwaitInfo { conn: id };
            }
            None => {
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
                let input = cx.input(id);
                if input.is_empty() {
                    return;
                }
                let n = input
                    .len()
                    .min(usize::try_from(remaining).unwrap_or(usize::MAX));
                let chunk = &input[..n];
                let written = match job.file.as_mut() {
                    Some(f) => f.write_all(chunk),
                    None => Err(io::Error::other("no open .part file")),
                };
                if let Err(e) = written {
                    let msg = format!(
                        "Could not write to {}: {e}",
                        part_path(&job.rec.save_path).display()
                    );
                    return self.end(cx, &fid, Status::Failed, Some(msg));
                }
                cx.consume(id, n);
                job.rec.downloaded_size += n as u64;
                self.lane.upto(&fid, job.rec.downloaded_size);
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
                let left = remaining - n as u64;
                if left == 0 {
                    return self.stream_done(cx, &fid);
                }
                job.phase = Phase::Streaming {
                    conn: id,
                    remaining: left,
                };
                return;
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

    /// Handles an answer line; Err means: give up on this host.
    fn on_reply(
        &mut self,
        cx: &mut Ctx,
        fid: &str,
        id: ConnId,
        reply: Reply,
    ) -> Result<(), String> {
        let Some(job) = self.jobs.get_mut(fid) else {
            return Ok(());
        };
        let host = host_name(job);
        match (&job.phase, reply) {
            (Phase::AwaitInfo { .. }, Reply::Info { size, sha256 }) => {
                if size != job.rec.total_size {
                    return Err(format!(
                        "{host} has a different version of the file ({size} bytes, not {})",
                        job.rec.total_size
                    ));
                }
                match &job.rec.sha256 {
                    Some(want) if *want != sha256 => {
                        return Err(format!(
                            "{host} has a different version of the file (its SHA-256 differs)"
                        ))
                    }
                    Some(_) => {}
                    None => job.rec.sha256 = Some(sha256),
                }
                self.send_data_request(cx, fid, id)
            }
            // The peer has not hashed the file yet: go on, and check what we can.
            (Phase::AwaitInfo { .. }, Reply::Error(ErrorCode::ReadError)) => {
                self.send_data_request(cx, fid, id)
            }
            (Phase::AwaitLength { .. }, Reply::Length(n)) => {
                let want = job.rec.total_size - job.rec.downloaded_size;
                if n != want {
                    return Err(format!(
                        "{host} offered {n} bytes where {want} were expected"
                    ));
                }
                job.rec.peer = Some(host);
                if n == 0 {
                    self.stream_done(cx, fid);
                    return Ok(());
                }
                let first = job.rec.status == Status::Pending;
                job.rec.status = Status::Downloading;
                job.phase = Phase::Streaming {
                    conn: id,
                    remaining: n,
                };
                if job.samples.is_empty() {
                    job.samples.push_back((cx.now(), job.rec.downloaded_size));
                }
                if first {
                    self.save();
                }
                Ok(())
            }
            (_, Reply::Error(code)) => Err(match code {
                ErrorCode::NotFound => format!("{host} no longer publishes the file"),
                ErrorCode::FileNotFound => format!("{host} no longer has the file on disk"),
                ErrorCode::ReadError => format!("{host} could not read the file"),
                c => format!("{host} answered ERROR {c}"),
            }),
            (_, other) => Err(format!("{host} answered out of turn ({other:?})")),
        }
    }

    /// `GET` from the start, or `RANGE` from the bytes already on disk.
    fn send_data_request(&mut self, cx: &mut Ctx, fid: &str, id: ConnId) -> Result<(), String> {
        let Some(job) = self.jobs.get_mut(fid) else {
            return Ok(());
        };
        let name = job.rec.file_name.clone();
        let have = job.rec.downloaded_size;
        let req = if have == 0 {
            Request::Get { name }
        } else {
            Request::Range {
                offset: have,
                length: job.rec.total_size - have,
                name,
            }
        };
        let line = peer::encode_request(&req).ok_or("the file name cannot be sent")?;
        cx.send_vec(id, line);
        job.phase = Phase::AwaitLength { conn: id };
        Ok(())
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
        if let Phase::Connecting { timer, key, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&key);
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

    pub fn on_timer(&mut self, cx: &mut Ctx, key: u64) {
        let Some((fid, kind)) = self.timers.remove(&key) else {
            return;
        };
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

    /// Worker results, and the first wake after a restart.
    pub fn on_wake(&mut self, cx: &mut Ctx) {
        for id in std::mem::take(&mut self.to_resume) {
            self.resume_from_disk(cx, &id);
        }
        for (id, digest) in self.lane.drain() {
            self.on_digest(cx, &id, digest);
        }
        for done in self.work.drain().into_iter().chain(self.saver.drain()) {
            match done {
                Done::Saved(r) => {
                    self.saving = false;
                    if let Err(e) = r {
                        crate::log_warn!("could not save the download records: {e}");
                    }
                    if std::mem::take(&mut self.save_again) {
                        self.save();
                    }
                }
                Done::Hashed { id, result } => self.on_hashed(cx, &id, result),
                Done::Finished { id, result } => self.on_finished(&id, result),
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
                    && !matches!(j.phase, Phase::Finishing)
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
                    let key = self.timer_key(fid, TimerKind::Backoff);
                    cx.timer(self.svc, RETRY_BACKOFF, key);
                    return;
                }
                let msg = final_error(job);
                return self.end(cx, fid, Status::Failed, Some(msg));
            }
            let h = &job.rec.hosts[job.host];
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
                    let key = self.timer_key(fid, TimerKind::Connect);
                    let timer = cx.timer(self.svc, CONNECT_TIMEOUT, key);
                    if let Some(job) = self.jobs.get_mut(fid) {
                        job.phase = Phase::Connecting { conn, timer, key };
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
        if let Phase::Connecting { timer, key, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&key);
        }
        if matches!(job.phase, Phase::Streaming { .. }) {
            job.interrupted = Some(msg.clone());
        }
        job.last_error = Some(msg);
        job.host += 1;
        job.phase = Phase::Waiting;
        self.try_host(cx, fid);
    }

    /// All bytes arrived: wait for the hash lane's digest.
    fn stream_done(&mut self, cx: &mut Ctx, fid: &str) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if let Some(conn) = job.phase.conn() {
            self.conns.remove(conn);
            cx.close(conn);
        }
        if job.rec.downloaded_size != job.rec.total_size {
            let msg = format!(
                "Downloaded {} bytes where {} were expected",
                job.rec.downloaded_size, job.rec.total_size
            );
            return self.end(cx, fid, Status::Failed, Some(msg));
        }
        job.rec.status = Status::Verifying;
        job.phase = Phase::Verifying;
        self.lane.finish(fid, job.rec.total_size);
    }

    /// The digest of everything written: check it, then fsync and rename
    /// on a worker.
    fn on_digest(&mut self, cx: &mut Ctx, fid: &str, digest: Result<String, String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if !matches!(job.phase, Phase::Verifying) {
            return;
        }
        let got = match digest {
            Ok(d) => d,
            Err(msg) => return self.end(cx, fid, Status::Failed, Some(msg)),
        };
        match &job.rec.sha256 {
            Some(want) if *want != got => {
                let msg = "Downloaded data does not match the SHA-256 published for this file";
                return self.end(cx, fid, Status::Failed, Some(msg.into()));
            }
            Some(_) => {}
            None => job.rec.sha256 = Some(got),
        }
        let Some(file) = job.file.take() else {
            let msg = "The .part file was lost".to_owned();
            return self.end(cx, fid, Status::Failed, Some(msg));
        };
        job.phase = Phase::Finishing;
        let (target, overwrite) = (job.rec.save_path.clone(), job.rec.overwrite);
        let id = fid.to_owned();
        let submitted = self.work.submit(move || Done::Finished {
            result: finalize(file, &target, overwrite),
            id,
        });
        if submitted.is_err() {
            let msg = "The node is too busy to save the download".to_owned();
            self.end(cx, fid, Status::Failed, Some(msg));
        }
    }

    fn on_finished(&mut self, fid: &str, result: Result<(), String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        job.phase = Phase::Done;
        job.rec.finished_at = Some(unix_now());
        match result {
            Ok(()) => {
                job.rec.status = Status::Completed;
                job.rec.error = None;
                crate::log_info!(
                    "fetch {fid}: completed {:?} ({} bytes)",
                    job.rec.file_name,
                    job.rec.total_size
                );
                self.completed
                    .push((job.rec.user.clone(), job.rec.save_path.clone()));
            }
            Err(msg) => {
                crate::log_warn!("fetch {fid}: {msg}");
                job.rec.status = Status::Failed;
                job.rec.error = Some(msg);
            }
        }
        self.save();
    }

    /// Ends a fetch that is not being finished by a worker: closes its
    /// connection, removes the `.part`, records the outcome.
    fn end(&mut self, cx: &mut Ctx, fid: &str, status: Status, error: Option<String>) {
        let Some(job) = self.jobs.get_mut(fid) else {
            return;
        };
        if let Some(conn) = job.phase.conn() {
            self.conns.remove(conn);
            cx.close(conn);
        }
        if let Phase::Connecting { timer, key, .. } = job.phase {
            cx.cancel_timer(timer);
            self.timers.remove(&key);
        }
        job.phase = Phase::Done;
        job.file = None;
        self.lane.forget(fid);
        let _ = fs::remove_file(part_path(&job.rec.save_path));
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
    }

    /// After a restart: hash what the `.part` holds (on a worker), then go on.
    fn resume_from_disk(&mut self, cx: &mut Ctx, fid: &str) {
        let Some(job) = self.jobs.get(fid) else {
            return;
        };
        let target = job.rec.save_path.clone();
        let (total, sha) = (job.rec.total_size, job.rec.sha256.clone());
        let id = fid.to_owned();
        let submitted = self.work.submit(move || Done::Hashed {
            result: look_on_disk(&target, total, sha.as_deref()),
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
            if matches!(result, Ok(OnDisk::Part(..))) {
                let _ = fs::remove_file(part_path(&job.rec.save_path));
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
                self.on_finished(fid, Ok(()));
            }
            Ok(OnDisk::Part(hasher, len, file)) => {
                crate::log_info!(
                    "fetch {fid}: resuming {:?} from {len} bytes on disk",
                    job.rec.file_name
                );
                let reader = match file.try_clone() {
                    Ok(r) => r,
                    Err(e) => {
                        let msg = format!("Could not reopen the .part file: {e}");
                        return self.end(cx, fid, Status::Failed, Some(msg));
                    }
                };
                self.lane.start(fid, reader, hasher, len);
                job.file = Some(file);
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

    fn timer_key(&mut self, fid: &str, kind: TimerKind) -> u64 {
        let key = TIMER_TAG | (self.next_key & 0x00ff_ffff_ffff_ffff);
        self.next_key += 1;
        self.timers.insert(key, (fid.to_owned(), kind));
        key
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

    /// Writes the records on the saver thread; saves asked for meanwhile
    /// are folded into one more save after it.
    fn save(&mut self) {
        if self.saving {
            self.save_again = true;
            return;
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
                return;
            }
        };
        let path = self.records_path.clone();
        let job = move || {
            Done::Saved(crate::store::write_atomic(&path, &bytes).map_err(|e| e.to_string()))
        };
        match self.saver.submit(job) {
            Ok(()) => self.saving = true,
            Err(_) => self.save_again = true,
        }
    }
}

// ----- helpers (no loop state) -----

fn host_name(job: &Job) -> String {
    job.rec
        .hosts
        .get(job.host)
        .map(|h| h.hostname.clone())
        .unwrap_or_else(|| "the peer".into())
}

fn host_addr(job: &Job) -> String {
    job.rec
        .hosts
        .get(job.host)
        .map(|h| format!("{}:{}", h.ip, h.port))
        .unwrap_or_default()
}

/// The sentence shown when every host failed.
fn final_error(job: &Job) -> String {
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

fn progress_json(job: &Job, now: Instant) -> Value {
    let r = &job.rec;
    let running = matches!(r.status, Status::Downloading);
    let speed = if running {
        speed_bps(&job.samples, r.downloaded_size, now)
    } else {
        0
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
    })
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

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

pub fn part_path(target: &Path) -> PathBuf {
    let mut s = target.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
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

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Worker: after a restart, what is there to go on from.
fn look_on_disk(target: &Path, total: u64, sha: Option<&str>) -> Result<OnDisk, String> {
    let part = part_path(target);
    if !part.exists() {
        if let Ok(m) = fs::metadata(target) {
            if m.is_file() && m.len() == total {
                if let Some(want) = sha {
                    let mut f = File::open(target).map_err(|e| e.to_string())?;
                    let mut h = Sha256::new();
                    io::copy(&mut f, &mut h).map_err(|e| e.to_string())?;
                    if hex(&h.finalize()) == want {
                        return Ok(OnDisk::AlreadySaved);
                    }
                }
            }
        }
    }
    let (h, len, f) = hash_part(&part, total)?;
    Ok(OnDisk::Part(h, len, f))
}

/// Worker: the hash state of what `part` holds (at most `total` bytes; more
/// means it is not ours and starts over), with the file open for appending.
fn hash_part(part: &Path, total: u64) -> Result<(Sha256, u64, File), String> {
    let ctx = |e: io::Error| format!("Could not read {}: {e}", part.display());
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(part)
        .map_err(ctx)?;
    let mut len = f.metadata().map_err(ctx)?.len();
    if len > total {
        f.set_len(0).map_err(ctx)?;
        len = 0;
    }
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1024 * 1024];
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = f.read(&mut buf[..want]).map_err(ctx)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        left -= n as u64;
    }
    let len = len - left;
    f.seek(SeekFrom::Start(len)).map_err(ctx)?;
    Ok((h, len, f))
}

/// Worker: make the `.part` durable, move it to `target` (never over an
/// existing file unless `overwrite`), make the rename durable. On failure
/// the `.part` is removed: nothing is ever left under the final name.
fn finalize(file: File, target: &Path, overwrite: bool) -> Result<(), String> {
    let part = part_path(target);
    let result = (|| {
        file.sync_all()
            .map_err(|e| format!("Could not save {}: {e}", part.display()))?;
        drop(file);
        let moved = if overwrite {
            fs::rename(&part, target)
        } else {
            rename_noreplace(&part, target)
        };
        moved.map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                format!(
                    "A file appeared at {} during the download; it was left alone (ask with overwrite: true to replace it)",
                    target.display()
                )
            } else {
                format!("Could not move the download to {}: {e}", target.display())
            }
        })
    })();
    if result.is_err() {
        let _ = fs::remove_file(&part);
        return result;
    }
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        crate::log_warn!("could not fsync {}: {e}", dir.display());
    }
    Ok(())
}

/// rename(2) that fails with EEXIST instead of replacing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let a = CString::new(from.as_os_str().as_bytes())?;
    let b = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: two valid NUL-terminated paths; renameat2 only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        // Kernels or file systems without renameat2: link fails on an
        // existing name just the same.
        Some(libc::ENOSYS) | Some(libc::EINVAL) => {
            fs::hard_link(from, to)?;
            fs::remove_file(from)
        }
        _ => Err(e),
    }
}

/// Hashes downloads on one named thread, reading back from each `.part`
/// what the loop wrote (it is in the page cache), so the loop thread only
/// moves bytes and the hash runs beside it on the other core.
struct HashLane {
    tx: mpsc::Sender<LaneMsg>,
    done: LaneDone,
}

enum LaneMsg {
    /// Hash this fetch's file from `at`, continuing `state`.
    Start {
        id: String,
        file: File,
        state: Sha256,
        at: u64,
    },
    /// Bytes up to `end` are written.
    Upto {
        id: String,
        end: u64,
    },
    /// The file is complete at `end`: report the digest once hashed.
    Finish {
        id: String,
        end: u64,
    },
    Forget {
        id: String,
    },
}

struct LaneJob {
    file: File,
    state: Sha256,
    pos: u64,
    end: u64,
    finish: bool,
}

impl HashLane {
    fn new(waker: Arc<mio::Waker>) -> io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let done = Arc::new(Mutex::new(Vec::new()));
        let out = done.clone();
        std::thread::Builder::new()
            .name("fetch-hash".into())
            .spawn(move || lane_loop(rx, out, waker))?;
        Ok(HashLane { tx, done })
    }

    fn start(&self, id: &str, file: File, state: Sha256, at: u64) {
        let id = id.to_owned();
        let _ = self.tx.send(LaneMsg::Start {
            id,
            file,
            state,
            at,
        });
    }

    fn upto(&self, id: &str, end: u64) {
        let _ = self.tx.send(LaneMsg::Upto {
            id: id.to_owned(),
            end,
        });
    }

    fn finish(&self, id: &str, end: u64) {
        let _ = self.tx.send(LaneMsg::Finish {
            id: id.to_owned(),
            end,
        });
    }

    fn forget(&self, id: &str) {
        let _ = self.tx.send(LaneMsg::Forget { id: id.to_owned() });
    }

    /// Digests (or why there is none) of finished fetches.
    fn drain(&self) -> Vec<(String, Result<String, String>)> {
        match self.done.lock() {
            Ok(mut d) => std::mem::take(&mut *d),
            Err(_) => Vec::new(),
        }
    }
}

type LaneDone = Arc<Mutex<Vec<(String, Result<String, String>)>>>;

fn lane_loop(rx: mpsc::Receiver<LaneMsg>, done: LaneDone, waker: Arc<mio::Waker>) {
    let mut jobs: HashMap<String, LaneJob> = HashMap::new();
    // Small enough to stay in the CPU cache between the copy and the hash.
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        // Sleep only when every fetch is hashed as far as it is written.
        let idle = jobs.values().all(|j| j.pos >= j.end && !j.finish);
        let first = if idle {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        } else {
            None
        };
        for msg in first.into_iter().chain(rx.try_iter()) {
            match msg {
                LaneMsg::Start {
                    id,
                    file,
                    state,
                    at,
                } => {
                    let job = LaneJob {
                        file,
                        state,
                        pos: at,
                        end: at,
                        finish: false,
                    };
                    jobs.insert(id, job);
                }
                LaneMsg::Upto { id, end } => {
                    if let Some(j) = jobs.get_mut(&id) {
                        j.end = j.end.max(end);
                    }
                }
                LaneMsg::Finish { id, end } => {
                    if let Some(j) = jobs.get_mut(&id) {
                        j.end = end;
                        j.finish = true;
                    }
                }
                LaneMsg::Forget { id } => {
                    jobs.remove(&id);
                }
            }
        }
        // One chunk per fetch per round: fetches share the thread fairly.
        let mut finished = Vec::new();
        for (id, j) in jobs.iter_mut() {
            if j.pos < j.end {
                let want = buf
                    .len()
                    .min(usize::try_from(j.end - j.pos).unwrap_or(usize::MAX));
                match j.file.read_at(&mut buf[..want], j.pos) {
                    Ok(0) => {
                        let msg = "The .part file shrank while it was being checked".to_owned();
                        finished.push((id.clone(), Err(msg)));
                        continue;
                    }
                    Ok(n) => {
                        j.state.update(&buf[..n]);
                        j.pos += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let msg = format!("Could not read back the .part file: {e}");
                        finished.push((id.clone(), Err(msg)));
                        continue;
                    }
                }
            }
            if j.finish && j.pos >= j.end {
                let digest = hex(&std::mem::take(&mut j.state).finalize());
                finished.push((id.clone(), Ok(digest)));
            }
        }
        if !finished.is_empty() {
            for (id, _) in &finished {
                jobs.remove(id);
            }
            if let Ok(mut d) = done.lock() {
                d.extend(finished);
            }
            let _ = waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(999), "999 bytes");
        assert_eq!(human_bytes(12_500_000), "12.5 MB");
        assert_eq!(human_bytes(1_073_741_824), "1.1 GB");
    }

    #[test]
    fn rename_noreplace_never_clobbers() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        fs::write(&a, b"new").unwrap();
        fs::write(&b, b"old").unwrap();
        let e = rename_noreplace(&a, &b).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&b).unwrap(), b"old");
        fs::remove_file(&b).unwrap();
        rename_noreplace(&a, &b).unwrap();
        assert_eq!(fs::read(&b).unwrap(), b"new");
        assert!(!a.exists());
    }

    #[test]
    fn finalize_keeps_an_existing_file_and_drops_the_part() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("f.bin");
        fs::write(part_path(&target), b"downloaded").unwrap();
        fs::write(&target, b"precious").unwrap();
        let f = File::open(part_path(&target)).unwrap();
        assert!(finalize(f, &target, false).is_err());
        assert_eq!(fs::read(&target).unwrap(), b"precious");
        assert!(!part_path(&target).exists());
        fs::write(part_path(&target), b"downloaded").unwrap();
        let f = File::open(part_path(&target)).unwrap();
        finalize(f, &target, true).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"downloaded");
    }

    #[test]
    fn hashing_a_part_matches_hashing_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("x.part");
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        fs::write(&part, &data).unwrap();
        let (h, len, mut f) = hash_part(&part, 5_000_000).unwrap();
        assert_eq!(len, 3_000_000);
        assert_eq!(hex(&h.finalize()), hex(&Sha256::digest(&data)));
        f.write_all(b"more").unwrap();
        assert_eq!(fs::metadata(&part).unwrap().len(), 3_000_004);
        // Longer than the file we want: not ours, start over.
        let (_, len, _) = hash_part(&part, 10).unwrap();
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
    fn names_that_are_paths_are_refused() {
        assert!(valid_name("a b.txt"));
        for bad in ["", ".", "..", "a/b", "a\\b", "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
