//! Downloads. A fetch asks every host offering the content for pieces at
//! once (`RANGE`, several pipelined per host), checks each piece against
//! the piece list of the content's `root` on a worker as it arrives, feeds
//! verified pieces in order into the whole-file SHA-256, records what is
//! verified so a pause or a restart loses nothing, and renames the `.part`
//! onto the final name only once the whole file matches the `sha256` asked
//! for (docs/peer-protocol.md, docs/trust.md). Hosts that publish no root
//! are used one at a time with the whole-file check only.
//!
//! Each fetch is a [`job::Phase`] whose variants own their resources; every
//! change of phase goes through [`Fetches::enter`]. Blocking file work runs
//! on workers (`work.rs`), never in a loop turn.
//!
//! `mod.rs`: the API the node calls and the transition function;
//! `drive.rs`: connections, piece requests and worker results.

mod disk;
mod drive;
mod job;
mod link;
mod orphans;
mod part;
mod peers;
mod progress;
mod record;
mod results;
mod sched;
mod work;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reactor::{ConnId, ConnMap, ConnOptions, Ctx, Pool, ServiceId, TimerId};
use serde_json::Value;

use crate::node::sandbox::Sandbox;
use crate::node::Timer;
use crate::proto::names::valid_file_name;
use crate::util::{hex, unix_now};
pub use disk::part_path;
use disk::Bufs;
use job::{Job, Next, Outcome, Phase};
pub use progress::human_bytes;
pub use record::HostOffer;
use record::{Book, Record, Status};
use work::{Done, What};

/// What the client API asks for.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub user: String,
    pub fname: String,
    /// The final path; data goes to `<target>.part` until verified.
    pub target: PathBuf,
    pub overwrite: bool,
    /// Add the finished file to the user's files and publish it.
    pub share: bool,
    /// Online first, preferred host first.
    pub hosts: Vec<HostOffer>,
}

/// A finished download, for the node to add to the user's files.
#[derive(Debug, Clone)]
pub struct Completed {
    pub fetch_id: String,
    pub user: String,
    pub path: PathBuf,
    pub name: String,
    pub size: u64,
    /// Modification time once renamed (0 when found already saved).
    pub modified: f64,
    pub sha256: Option<String>,
    pub root: Option<String>,
    pub share: bool,
}

/// A registry lookup (REQUEST) a fetch wants sent for more hosts.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub seq: u64,
    pub user: String,
    pub fname: String,
    pub sha256: Option<String>,
}

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A peer that sends nothing for this long is given up on.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause before trying the host list a second time.
const RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// How long a fetch out of hosts waits for the registry's answer.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Fetches running at once per node.
const MAX_ACTIVE: usize = 64;
/// Record changes that need not be durable at once are saved together after this.
const SAVE_DELAY: Duration = Duration::from_millis(250);
/// Finished records kept per user.
const KEEP_FINISHED: usize = 200;
const RECORDS_FILE: &str = "fetches.json";
const MISMATCH: &str = "Downloaded data does not match the SHA-256 published for this file";

enum TimerKind {
    Connect(ConnId),
    Backoff,
    /// Pieces may be asked of a second host now.
    Endgame,
    Resolve,
    Save,
}

#[derive(PartialEq, Eq, PartialOrd, Ord, Clone, Copy)]
enum SaveWant {
    No,
    Soon,
    Now,
}

pub struct Fetches {
    svc: ServiceId,
    sandbox: Arc<Sandbox>,
    data_dir: PathBuf,
    records_path: PathBuf,
    jobs: HashMap<String, Job>,
    /// Fetch ids, oldest first.
    order: Vec<String>,
    conns: ConnMap<String>,
    timers: HashMap<u64, (String, TimerKind)>,
    next_key: u64,
    /// Preparing, checking and writing pieces, checkpoints, finishing.
    work: Pool<Done>,
    /// The whole-file hashes, in order (one thread: one hash per fetch at a time).
    hasher: Pool<Done>,
    /// Saving the records, one at a time and in order.
    saver: Pool<Done>,
    bufs: Bufs,
    book: Book,
    save_timer: Option<TimerId>,
    want_save: SaveWant,
    /// Records taken over from before a restart, started on the first wake.
    to_resume: Vec<String>,
    completed: Vec<Completed>,
    /// Lookups not yet sent, and which fetch each is for.
    lookups: Vec<Lookup>,
    lookup_of: HashMap<u64, String>,
}

impl Fetches {
    pub fn new(
        svc: ServiceId,
        waker: Arc<mio::Waker>,
        data_dir: &Path,
        sandbox: Arc<Sandbox>,
    ) -> io::Result<Self> {
        std::fs::create_dir_all(data_dir)?;
        let records_path = data_dir.join(RECORDS_FILE);
        let records: Vec<Record> = match std::fs::read(&records_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                crate::log_warn!("ignoring unreadable {}: {e}", records_path.display());
                Vec::new()
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut f = Fetches {
            svc,
            sandbox,
            data_dir: data_dir.to_owned(),
            records_path,
            jobs: HashMap::new(),
            order: Vec::new(),
            conns: ConnMap::new(),
            timers: HashMap::new(),
            next_key: 1,
            work: Pool::new("fetch-io", 2, 1024, waker.clone())?,
            hasher: Pool::new("fetch-hash", 1, 256, waker.clone())?,
            saver: Pool::new("fetch-save", 1, 1024, waker.clone())?,
            bufs: Bufs::default(),
            book: Book::default(),
            save_timer: None,
            want_save: SaveWant::No,
            to_resume: Vec::new(),
            completed: Vec::new(),
            lookups: Vec::new(),
            lookup_of: HashMap::new(),
        };
        for mut rec in records {
            peers::stop_all(&mut rec.peers);
            let phase = match rec.status {
                Status::Completed => Phase::Done(Outcome::Completed),
                Status::Failed => {
                    Phase::Done(Outcome::Failed(rec.error.clone().unwrap_or_default()))
                }
                Status::Cancelled => Phase::Done(Outcome::Cancelled(rec.error.clone())),
                Status::Paused => Phase::Paused(None),
                _ => {
                    rec.error = None;
                    f.to_resume.push(rec.fetch_id.clone());
                    Phase::Preparing
                }
            };
            f.order.push(rec.fetch_id.clone());
            f.jobs
                .insert(rec.fetch_id.clone(), Job::new(rec, phase, None));
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
        // another program's, so only those of failed and cancelled fetches
        // are taken for leftovers.
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

    /// Options of a fetch connection: no partial timeout (a piece is one
    /// long frame), an idle timeout, reads of 512 KiB (fewer system calls
    /// and wake-ups on a fast link; see docs/peer-protocol.md).
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
        let mut req = req;
        // A user never downloads from themselves (a file they fetched
        // earlier and now share is offered back by the registry).
        req.hosts.retain(|h| h.hostname != req.user);
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
        // share root (docs/trust.md); the `.part` is made on a worker.
        let place = self.sandbox.place(&req.user, &req.target)?;
        let sha256 = first.sha256.as_ref().map(|s| s.to_ascii_lowercase());
        let root = pick_root(&req.hosts, first.size, sha256.as_deref());
        let id = new_id();
        let rec = Record {
            fetch_id: id.clone(),
            user: req.user.clone(),
            file_name: req.fname.clone(),
            total_size: first.size,
            sha256,
            root,
            downloaded_size: 0,
            status: Status::Pending,
            peer: None,
            error: None,
            save_path: place.path.clone(),
            overwrite: req.overwrite,
            share: req.share,
            shared: None,
            started_at: unix_now(),
            finished_at: None,
            hosts: req.hosts,
            part_id: None,
            peers: Vec::new(),
            contributors: Vec::new(),
        };
        crate::log_info!(
            "fetch {id}: {:?} ({} bytes, {}) for {} to {}",
            rec.file_name,
            rec.total_size,
            if rec.root.is_some() {
                "pieces verified against a root"
            } else {
                "whole-file check"
            },
            rec.user,
            rec.save_path.display()
        );
        self.forget_old(&req.user);
        self.order.push(id.clone());
        let mut job = Job::new(rec, Phase::Preparing, Some(place));
        job.fresh = true;
        self.enter(cx, &mut job, Next::Preparing, None);
        self.jobs.insert(id.clone(), job);
        self.flush(cx);
        Ok(id)
    }

    /// Progress of one of `user`'s fetches, as docs/client-api.md shows it.
    pub fn progress(&self, user: &str, id: &str) -> Option<Value> {
        let job = self.jobs.get(id).filter(|j| j.rec.user == user)?;
        Some(progress::progress_json(job, Instant::now()))
    }

    /// All of `user`'s fetches, newest first.
    pub fn list(&self, user: &str) -> Vec<Value> {
        let now = Instant::now();
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.rec.user == user)
            .map(|j| progress::progress_json(j, now))
            .collect()
    }

    fn own(&self, user: &str, id: &str) -> Result<&Job, (u16, String)> {
        let job = self
            .jobs
            .get(id)
            .filter(|j| j.rec.user == user)
            .ok_or_else(|| (404, format!("No download with id {id}")))?;
        if job.rec.status.is_final() {
            return Err((
                409,
                format!("The download is already {}", job.rec.status.word()),
            ));
        }
        if matches!(job.phase, Phase::Finishing) {
            return Err((
                409,
                "The download is complete and being verified and saved".into(),
            ));
        }
        Ok(job)
    }

    pub fn cancel(&mut self, cx: &mut Ctx, user: &str, id: &str) -> Result<(), (u16, String)> {
        self.own(user, id)?;
        self.with(id, |f, job| {
            f.enter(cx, job, Next::Done(Outcome::Cancelled(None)), None)
        });
        self.flush(cx);
        Ok(())
    }

    /// Stops asking hosts; keeps the `.part` and what was verified.
    pub fn pause(&mut self, cx: &mut Ctx, user: &str, id: &str) -> Result<(), (u16, String)> {
        if matches!(self.own(user, id)?.phase, Phase::Paused(_)) {
            return Ok(());
        }
        self.with(id, |f, job| f.enter(cx, job, Next::Paused, None));
        self.flush(cx);
        Ok(())
    }

    /// Goes on from what was verified, asking the registry again for hosts.
    pub fn resume(&mut self, cx: &mut Ctx, user: &str, id: &str) -> Result<(), (u16, String)> {
        if !matches!(self.own(user, id)?.phase, Phase::Paused(_)) {
            return Err((409, "The download is not paused".into()));
        }
        self.with(id, |f, job| {
            f.ask_hosts(job);
            job.interrupted = None;
            job.last_error = None;
            let next = match job.phase.transfer_mut() {
                Some(t) => {
                    t.tried.clear();
                    t.round = 0;
                    if job.rec.root.is_some() && t.digests.is_none() {
                        Next::Pieces
                    } else {
                        Next::Downloading
                    }
                }
                None => Next::Preparing,
            };
            f.enter(cx, job, next, None);
        });
        self.flush(cx);
        Ok(())
    }

    /// Running fetches of `user` (the heartbeat's busy state).
    pub fn active(&self, user: &str) -> usize {
        self.jobs
            .values()
            .filter(|j| j.rec.user == user && j.phase.moving())
            .count()
    }

    pub fn owns(&self, id: ConnId) -> bool {
        self.conns.get(id).is_some()
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
            self.with(&id, |f, job| {
                let why = Some("Cancelled at logout".to_owned());
                f.enter(cx, job, Next::Done(Outcome::Cancelled(why)), None)
            });
        }
        self.flush(cx);
    }

    /// `op` is answered once the records as they are now are on disk (see
    /// [`Fetches::take_durable`]): an answered `/fetch` survives a crash.
    /// False: no write could be started, the op is not kept.
    pub fn when_durable(&mut self, op: u64) -> bool {
        self.book.asked += 1;
        self.book.waiters.push((self.book.asked, op));
        if self.save() {
            return true;
        }
        self.book.waiters.retain(|w| w.1 != op);
        false
    }

    /// Ops whose durable save finished, with its outcome.
    pub fn take_durable(&mut self) -> Vec<(u64, Result<(), String>)> {
        std::mem::take(&mut self.book.ready)
    }

    /// Files that finished since the last call.
    pub fn take_completed(&mut self) -> Vec<Completed> {
        std::mem::take(&mut self.completed)
    }

    /// What became of a completed download in the user's files.
    pub fn set_share_note(&mut self, cx: &mut Ctx, id: &str, note: String) {
        if let Some(j) = self.jobs.get_mut(id) {
            j.rec.shared = Some(note);
            self.want(SaveWant::Soon);
            self.flush(cx);
        }
    }

    /// Registry lookups waiting to be sent; the node sends each it can and
    /// says so with [`Fetches::lookup_sent`] (the others wait for the
    /// user's registry link, until the fetch gives up).
    pub fn lookups(&self) -> &[Lookup] {
        &self.lookups
    }

    pub fn lookup_sent(&mut self, seq: u64) {
        self.lookups.retain(|l| l.seq != seq);
    }

    /// The registry's answer to lookup `seq`: hosts offering the content.
    pub fn hosts_found(&mut self, cx: &mut Ctx, seq: u64, offers: Vec<HostOffer>) {
        let Some(fid) = self.lookup_of.remove(&seq) else {
            return;
        };
        self.with(&fid, |f, job| f.merge_hosts(cx, job, seq, offers));
        self.flush(cx);
    }

    /// A timer of this module fired (`Timer::Fetch(seq)`).
    pub fn on_timer(&mut self, cx: &mut Ctx, seq: u64) {
        let Some((fid, kind)) = self.timers.remove(&seq) else {
            return;
        };
        match kind {
            TimerKind::Save => {
                self.save_timer = None;
                self.save();
            }
            TimerKind::Connect(conn) => {
                self.with(&fid, |f, job| f.connect_timeout(cx, job, conn));
            }
            TimerKind::Backoff => {
                self.with(&fid, |f, job| {
                    if let Some(t) = job.phase.transfer_mut() {
                        t.backoff = false;
                    }
                    f.fill(cx, job);
                });
            }
            TimerKind::Endgame => {
                self.with(&fid, |f, job| {
                    if let Some(t) = job.phase.transfer_mut() {
                        t.endgame_timer = false;
                    }
                    if job.phase.moving() {
                        f.fill(cx, job);
                    }
                });
            }
            TimerKind::Resolve => {
                self.with(&fid, |f, job| {
                    if matches!(job.phase, Phase::Resolving(_)) {
                        job.resolve_timer = None;
                        f.give_up(cx, job);
                    }
                });
            }
        }
        self.flush(cx);
    }

    // ----- the transition function -----

    /// Moves `job` to `next`: releases what the old phase held that the
    /// new one does not take over (connections and their buffers, the
    /// open `.part`), starts what the new phase waits for (a worker job, a
    /// lookup, requests to hosts), and derives the record's status. The
    /// only place a phase changes. `made`: a transfer a worker just built.
    fn enter(&mut self, cx: &mut Ctx, job: &mut Job, next: Next, made: Option<Box<job::Transfer>>) {
        if matches!(job.phase, Phase::Done(_)) {
            return;
        }
        let old = std::mem::replace(&mut job.phase, Phase::Preparing);
        if let Some((timer, seq)) = job.resolve_timer.take() {
            cx.cancel_timer(timer);
            self.timers.remove(&seq);
        }
        let mut t = made.or_else(|| old.take_transfer());
        if !matches!(next, Next::Pieces | Next::Downloading) {
            if let Some(t) = t.as_deref_mut() {
                self.close_links(cx, job, t);
            }
        }
        let needs_transfer = matches!(next, Next::Resolving | Next::Pieces | Next::Downloading);
        let next = if needs_transfer && t.is_none() {
            Next::Preparing
        } else {
            next
        };
        job.phase = match (next, t) {
            (Next::Preparing, _) => {
                job.gen += 1;
                match self.prepare(job) {
                    Ok(()) => Phase::Preparing,
                    Err(msg) => return self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None),
                }
            }
            (Next::Resolving, Some(t)) => {
                self.ask_hosts(job);
                let timer = self.arm(cx, &job.rec.fetch_id, TimerKind::Resolve, RESOLVE_TIMEOUT);
                job.resolve_timer = Some(timer);
                Phase::Resolving(t)
            }
            (Next::Pieces, Some(t)) => Phase::Pieces(t),
            (Next::Downloading, Some(t)) => Phase::Downloading(t),
            (Next::Finishing, Some(t)) => {
                self.finish(job, *t);
                Phase::Finishing
            }
            (Next::Paused, mut t) => {
                if let Some(t) = t.as_deref_mut() {
                    self.checkpoint(job, t);
                }
                Phase::Paused(t)
            }
            (Next::Done(outcome), _) => {
                job.gen += 1;
                self.ended(job, &outcome);
                Phase::Done(outcome)
            }
            (_, None) => Phase::Preparing,
        };
        job.rec.status = job.phase.status();
        job.rec.downloaded_size = job.received();
        self.want(if job.rec.status.is_final() {
            SaveWant::Now
        } else {
            SaveWant::Soon
        });
        if job.phase.moving() {
            self.fill(cx, job);
        }
        if !self.jobs.values().any(|j| j.phase.moving()) && !job.phase.moving() {
            self.bufs.trim();
        }
    }

    /// The record of a fetch that ended; its `.part` removed unless completed.
    fn ended(&mut self, job: &mut Job, outcome: &Outcome) {
        let r = &mut job.rec;
        r.finished_at = Some(unix_now());
        peers::stop_all(&mut r.peers);
        let state = record::state_path(&self.data_dir, &r.fetch_id);
        match outcome {
            Outcome::Completed => {
                r.error = None;
                r.downloaded_size = r.total_size;
                crate::log_info!(
                    "fetch {}: completed {:?} ({} bytes)",
                    r.fetch_id,
                    r.file_name,
                    r.total_size
                );
                self.completed.push(Completed {
                    fetch_id: r.fetch_id.clone(),
                    user: r.user.clone(),
                    path: r.save_path.clone(),
                    name: r.file_name.clone(),
                    size: r.total_size,
                    modified: job.modified.unwrap_or(0.0),
                    sha256: r.sha256.clone(),
                    root: r.root.clone(),
                    share: r.share,
                });
            }
            Outcome::Failed(e) | Outcome::Cancelled(Some(e)) => {
                r.error = Some(if job.resumed && matches!(outcome, Outcome::Failed(_)) {
                    format!("Interrupted by a restart; resuming failed: {e}")
                } else {
                    e.clone()
                });
            }
            Outcome::Cancelled(None) => r.error = None,
        }
        if let Some(e) = &r.error {
            let word = Phase::Done(outcome.clone()).status().word();
            crate::log_info!("fetch {}: {word} ({e})", r.fetch_id);
        }
        if *outcome != Outcome::Completed {
            let (place, part_id) = (job.place.clone(), r.part_id);
            let (id, gen) = (r.fetch_id.clone(), job.gen);
            // On the saver thread, before the records' next save: a request
            // that waits for that save (`DELETE /fetch/{id}`) is answered
            // once the `.part` is gone.
            let sent = self.saver.submit(move || {
                work::clean(place.as_ref(), part_id, &state);
                Done {
                    id,
                    gen,
                    what: What::Quiet,
                }
            });
            if sent.is_err() {
                crate::log_warn!("could not queue the removal of a .part");
            }
        }
    }

    // ----- bookkeeping -----

    /// Runs `f` on fetch `fid`, taken out of the table meanwhile (so `f`
    /// may use every other part of `self`).
    fn with<R>(&mut self, fid: &str, f: impl FnOnce(&mut Self, &mut Job) -> R) -> Option<R> {
        let mut job = self.jobs.remove(fid)?;
        let r = f(self, &mut job);
        self.jobs.insert(fid.to_owned(), job);
        Some(r)
    }

    fn want(&mut self, w: SaveWant) {
        self.want_save = self.want_save.max(w);
    }

    /// Saves asked for during an event, once every job is back in the table.
    fn flush(&mut self, cx: &mut Ctx) {
        match std::mem::replace(&mut self.want_save, SaveWant::No) {
            SaveWant::Now => {
                self.save();
            }
            SaveWant::Soon => self.save_soon(cx),
            SaveWant::No => {}
        }
    }

    /// A new timer of this module for fetch `fid`.
    fn arm(&mut self, cx: &mut Ctx, fid: &str, kind: TimerKind, after: Duration) -> (TimerId, u64) {
        let seq = self.next_key & Timer::SEQ_MASK;
        self.next_key += 1;
        self.timers.insert(seq, (fid.to_owned(), kind));
        (cx.timer(self.svc, after, Timer::Fetch(seq).to_key()), seq)
    }

    /// Forgets `user`'s completed, failed and cancelled records (`POST
    /// /fetches/clear`); their files stay as they are. How many; the caller
    /// waits for the save ([`Fetches::when_durable`]).
    pub fn clear_finished(&mut self, user: &str) -> usize {
        let before = self.jobs.len();
        self.jobs
            .retain(|_, j| j.rec.user != user || !j.rec.status.is_final());
        self.order.retain(|id| self.jobs.contains_key(id));
        before - self.jobs.len()
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

    /// Saves the records a little later, together with whatever else changes.
    fn save_soon(&mut self, cx: &mut Ctx) {
        if self.save_timer.is_none() {
            let (t, _) = self.arm(cx, "", TimerKind::Save, SAVE_DELAY);
            self.save_timer = Some(t);
        }
    }

    /// Writes the records on the saver thread; saves asked for meanwhile
    /// are folded into one more after it. False: no write is out or queued.
    fn save(&mut self) -> bool {
        if self.book.saving {
            self.book.again = true;
            return true;
        }
        for j in self.jobs.values_mut() {
            j.rec.downloaded_size = j.received();
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
        let covers = self.book.asked;
        let job = move || Done {
            id: String::new(),
            gen: 0,
            what: What::Saved {
                covers,
                result: crate::store::write_atomic(&path, &bytes).map_err(|e| e.to_string()),
            },
        };
        match self.saver.submit(job) {
            Ok(()) => {
                self.book.saving = true;
                true
            }
            Err(_) => {
                self.book.again = true;
                false
            }
        }
    }
}

/// The root the fetch verifies pieces against: the one most hosts with
/// this content offer (hosts are grouped by the pair sha256 and root, and
/// a host whose pair differs is another content, docs/peer-protocol.md).
fn pick_root(hosts: &[HostOffer], size: u64, sha256: Option<&str>) -> Option<String> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for h in hosts.iter().filter(|h| h.size == size) {
        let same = match (&h.sha256, sha256) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (None, None) => true,
            _ => false,
        };
        let Some(root) = h.root.as_ref().filter(|r| same && is_digest(r)) else {
            continue;
        };
        let root = root.to_ascii_lowercase();
        match counts.iter_mut().find(|(r, _)| *r == root) {
            Some((_, n)) => *n += 1,
            None => counts.push((root, 1)),
        }
    }
    // The first most offered (the preferred host's, on a tie).
    let best = counts.iter().map(|(_, n)| *n).max()?;
    counts.into_iter().find(|(_, n)| *n == best).map(|(r, _)| r)
}

fn is_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(name: &str, sha: &str, root: Option<&str>) -> HostOffer {
        HostOffer {
            hostname: name.into(),
            ip: "127.0.0.1".into(),
            port: 1,
            size: 10,
            sha256: Some(sha.into()),
            root: root.map(str::to_owned),
            online: true,
        }
    }

    #[test]
    fn the_root_most_hosts_offer_for_the_content_is_used() {
        let (s, r1, r2) = ("a".repeat(64), "1".repeat(64), "2".repeat(64));
        let hosts = [
            offer("a", &s, Some(&r1)),
            offer("b", &s, Some(&r2)),
            offer("c", &s, Some(&r2)),
            offer("d", &s, None),
            offer("e", &"b".repeat(64), Some(&r1)),
        ];
        assert_eq!(pick_root(&hosts, 10, Some(&s)), Some(r2));
        assert_eq!(pick_root(&hosts[3..4], 10, Some(&s)), None);
        assert_eq!(pick_root(&hosts[..1], 11, Some(&s)), None, "other size");
    }
}
