//! Worker jobs of a fetch and what their results do: preparing the
//! `.part`, checking and writing pieces, the in-order whole-file hash, the
//! resume state saved once the data it counts is durable, the final check
//! and rename (the blocking functions themselves are in `work.rs`). Phase
//! changes go through `Fetches::enter` (`mod.rs`).

use std::sync::Arc;

use reactor::Ctx;

use super::job::{Job, Next, Outcome, Phase, Transfer};
use super::record;
use super::sched::Sched;
use super::work::{self, Done, Finish, Prep, Prepared, What};
use super::{peers, Fetches, MISMATCH};
use crate::node::catalog::pieces::Sha256State;
use crate::proto::peer as wire;

impl Fetches {
    /// Worker results, and the first wake after a restart.
    pub fn on_wake(&mut self, cx: &mut Ctx) {
        for id in std::mem::take(&mut self.to_resume) {
            self.with(&id, |f, job| {
                job.resumed = true;
                f.ask_hosts(job);
                f.enter(cx, job, Next::Preparing, None);
            });
        }
        let mut freed = false;
        let done: Vec<Done> = self
            .saver
            .drain()
            .into_iter()
            .chain(self.work.drain())
            .chain(self.hasher.drain())
            .collect();
        for d in done {
            if let What::Saved { covers, result } = &d.what {
                self.book.saved(*covers, result);
                if let Err(e) = result {
                    crate::log_warn!("could not save the download records: {e}");
                }
                if std::mem::take(&mut self.book.again) {
                    self.save();
                }
                continue;
            }
            let what = match d.what {
                What::Piece {
                    piece,
                    host,
                    buf,
                    result,
                } => {
                    self.bufs.give(buf);
                    freed = true;
                    What::Piece {
                        piece,
                        host,
                        buf: Vec::new(),
                        result,
                    }
                }
                What::Checked {
                    piece,
                    host,
                    buf,
                    ok,
                } => {
                    self.bufs.give(buf);
                    freed = true;
                    What::Checked {
                        piece,
                        host,
                        buf: Vec::new(),
                        ok,
                    }
                }
                other => other,
            };
            let gen = d.gen;
            self.with(&d.id, |f, job| {
                if job.gen == gen {
                    f.on_done(cx, job, what);
                }
            });
        }
        if freed {
            // Buffers came back: fetches that ran short may ask for more.
            let moving: Vec<String> = self
                .jobs
                .iter()
                .filter(|(_, j)| j.phase.moving())
                .map(|(id, _)| id.clone())
                .collect();
            for id in moving {
                self.with(&id, |f, job| f.fill(cx, job));
            }
        }
        self.flush(cx);
    }

    fn on_done(&mut self, cx: &mut Ctx, job: &mut Job, what: What) {
        match what {
            What::Prepared(result) => {
                if matches!(job.phase, Phase::Preparing) {
                    self.prepared(cx, job, result);
                }
            }
            What::Piece {
                piece,
                host,
                result,
                ..
            } => {
                let Some(t) = job.phase.transfer_mut() else {
                    return;
                };
                t.writing = t.writing.saturating_sub(1);
                match result {
                    Ok(true) => {
                        if t.sched.verified(piece) {
                            t.dirty = true;
                            for l in t.links.iter_mut() {
                                l.discard(piece);
                            }
                            job.rec.peer = Some(host.clone());
                            if job.rec.root.is_none() && !job.rec.contributors.contains(&host) {
                                job.rec.contributors.push(host);
                            }
                        }
                        self.hash_more(job);
                        self.checkpoint_job(job);
                    }
                    Ok(false) => {
                        t.sched.release(piece);
                        let why =
                            format!("sent piece {piece}, whose SHA-256 does not match its digest");
                        crate::log_warn!("fetch {}: {host} {why}", job.rec.fetch_id);
                        self.link_failed(cx, job, &host, format!("{host} {why}"), Some(&why));
                    }
                    Err(msg) => {
                        return self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None);
                    }
                }
                if job.phase.moving() {
                    self.fill(cx, job);
                }
            }
            What::Checked {
                piece, host, ok, ..
            } => {
                if !ok {
                    let why =
                        format!("sent piece {piece}, whose SHA-256 does not match its digest");
                    crate::log_warn!("fetch {}: {host} {why}", job.rec.fetch_id);
                    self.link_failed(cx, job, &host, format!("{host} {why}"), Some(&why));
                }
            }
            What::Hashed { sha, upto, result } => {
                let Some(t) = job.phase.transfer_mut() else {
                    return;
                };
                if let Err(e) = result {
                    let msg = format!("Could not read the download back to hash it: {e}");
                    return self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None);
                }
                if let Some(s) = sha.save() {
                    t.saved = Some((upto, s));
                    t.dirty = true;
                }
                t.sha = Some(sha);
                t.hashed = upto;
                self.hash_more(job);
                self.checkpoint_job(job);
                if job.phase.moving() {
                    self.fill(cx, job);
                }
            }
            What::Checkpointed(result) => {
                if let Err(e) = result {
                    crate::log_warn!(
                        "fetch {}: could not save its resume state: {e}",
                        job.rec.fetch_id
                    );
                }
                if let Some(t) = job.phase.transfer_mut() {
                    t.checkpointing = false;
                }
                self.checkpoint_job(job);
            }
            What::Finished(result) => {
                if !matches!(job.phase, Phase::Finishing) {
                    return;
                }
                match result {
                    Ok((digest, modified)) => {
                        job.rec.sha256.get_or_insert(digest);
                        job.modified = Some(modified);
                        self.enter(cx, job, Next::Done(Outcome::Completed), None);
                    }
                    Err(Finish::Mismatch) => self.bad_content(cx, job),
                    Err(Finish::Error(msg)) => {
                        self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None)
                    }
                }
            }
            What::Saved { .. } | What::Quiet => {}
        }
    }

    /// The worker made or found the `.part`.
    fn prepared(&mut self, cx: &mut Ctx, job: &mut Job, result: Result<Prepared, String>) {
        let p = match result {
            Ok(p) => p,
            Err(msg) => return self.enter(cx, job, Next::Done(Outcome::Failed(msg)), None),
        };
        job.fresh = false;
        if p.already_saved {
            return self.enter(cx, job, Next::Done(Outcome::Completed), None);
        }
        job.rec.part_id = Some(p.part_id);
        let count = wire::piece_count(job.rec.total_size);
        let bits = p
            .resume
            .as_ref()
            .and_then(|r| record::decode_bits(&r.have, count));
        let mut t = Transfer::new(p.file, p.part_id, Sched::new(job.rec.total_size, bits));
        if let Some(r) = &p.resume {
            let restored = match &r.sha {
                Some(s) => {
                    Sha256State::restore(s).filter(|s| s.len() == r.frontier * wire::PIECE_SIZE)
                }
                None => None,
            };
            if let (Some(sha), Some(s)) = (restored, r.sha.clone()) {
                t.hashed = r.frontier;
                t.saved = Some((r.frontier, s));
                t.sha = Some(sha);
            }
            crate::log_info!(
                "fetch {}: resuming {:?} with {} verified bytes",
                job.rec.fetch_id,
                job.rec.file_name,
                t.sched.verified_bytes()
            );
        }
        t.digests = p.digests.map(Arc::new);
        let next = if job.rec.root.is_some() && t.digests.is_none() {
            Next::Pieces
        } else {
            Next::Downloading
        };
        self.enter(cx, job, next, Some(Box::new(t)));
        self.hash_more(job);
    }

    /// The whole file does not hash to the content asked for. Without a
    /// root, every host whose bytes it holds is dropped; with one, every
    /// host offering that root (its list vouches for other content). The
    /// fetch starts over from zero with the others.
    fn bad_content(&mut self, cx: &mut Ctx, job: &mut Job) {
        let r = &mut job.rec;
        let (blamed, why): (Vec<String>, &str) = match r.root.take() {
            Some(root) => (
                r.hosts
                    .iter()
                    .filter(|h| h.root.as_deref() == Some(root.as_str()))
                    .map(|h| h.hostname.clone())
                    .collect(),
                "offers a piece list whose file does not match the SHA-256 published for this file",
            ),
            None => (
                std::mem::take(&mut r.contributors),
                "sent data that does not match the SHA-256 published for this file",
            ),
        };
        if blamed.is_empty() {
            return self.enter(cx, job, Next::Done(Outcome::Failed(MISMATCH.into())), None);
        }
        for name in &blamed {
            let (ip, port) = r
                .hosts
                .iter()
                .find(|h| &h.hostname == name)
                .map(|h| (h.ip.clone(), h.port))
                .unwrap_or_default();
            peers::drop_host(&mut r.peers, name, &ip, port, why);
        }
        crate::log_warn!(
            "fetch {}: {:?} failed verification; dropped {} and starting over",
            r.fetch_id,
            r.file_name,
            blamed.join(", ")
        );
        r.contributors.clear();
        job.last_error = None;
        job.interrupted = None;
        job.fresh = true;
        self.enter(cx, job, Next::Preparing, None);
    }

    // ----- worker jobs -----

    pub(super) fn prepare(&mut self, job: &mut Job) -> Result<(), String> {
        // The rules may have changed since a restart (other roots): judged again.
        let place = match &job.place {
            Some(p) if !job.resumed => p.clone(),
            _ => self
                .sandbox
                .place(&job.rec.user, &job.rec.save_path)
                .map_err(|(_, m)| m)?,
        };
        job.place = Some(place.clone());
        let r = &job.rec;
        let p = Prep {
            place,
            fresh: job.fresh,
            overwrite: r.overwrite,
            part_id: r.part_id,
            state: record::state_path(&self.data_dir, &r.fetch_id),
            data_dir: self.data_dir.clone(),
            root: r.root.clone(),
            total: r.total_size,
            sha256: r.sha256.clone(),
        };
        let (id, gen) = (r.fetch_id.clone(), job.gen);
        self.work
            .submit(move || Done {
                id,
                gen,
                what: What::Prepared(work::prepare(p)),
            })
            .map_err(|_| "The node is too busy to start the download".to_owned())
    }

    pub(super) fn finish(&mut self, job: &mut Job, t: Transfer) {
        let Some(place) = job.place.clone() else {
            return;
        };
        let sha = t.sha.unwrap_or_default();
        let file = t.file;
        let expect = job.rec.sha256.clone();
        let overwrite = job.rec.overwrite;
        let state = record::state_path(&self.data_dir, &job.rec.fetch_id);
        let (id, gen) = (job.rec.fetch_id.clone(), job.gen);
        let sent = self.work.submit(move || {
            let result = work::finish(&file, &sha, expect.as_deref(), &place, overwrite, &state);
            Done {
                id,
                gen,
                what: What::Finished(result),
            }
        });
        if sent.is_err() {
            crate::log_warn!("fetch {}: could not queue its last step", job.rec.fetch_id);
        }
    }

    /// Feeds the next verified pieces, in order, into the whole-file hash.
    fn hash_more(&mut self, job: &mut Job) {
        let size = job.rec.total_size;
        let (id, gen) = (job.rec.fetch_id.clone(), job.gen);
        let Some(t) = job.phase.transfer_mut() else {
            return;
        };
        let upto = t.sched.run_from(t.hashed);
        if upto == t.hashed || t.sha.is_none() {
            return;
        }
        let (Some(mut sha), file, from) = (t.sha.take(), t.file.clone(), t.hashed) else {
            return;
        };
        let sent = self.hasher.submit(move || {
            let result = work::hash(&file, &mut sha, from, upto, size).map_err(|e| e.to_string());
            Done {
                id,
                gen,
                what: What::Hashed { sha, upto, result },
            }
        });
        if sent.is_err() {
            crate::log_warn!("fetch {}: the hash queue is full", job.rec.fetch_id);
        }
    }

    /// Saves the resume state if pieces were verified since the last save.
    fn checkpoint_job(&mut self, job: &mut Job) {
        let gen = job.gen;
        if let Some(t) = job.phase.transfer_mut() {
            self.save_resume(&job.rec, gen, t);
        }
    }

    /// The resume state of a transfer that is being paused.
    pub(super) fn checkpoint(&mut self, job: &mut Job, t: &mut Transfer) {
        self.save_resume(&job.rec, job.gen, t);
    }

    /// Writes `t`'s verified pieces and hash state on a worker, unless a
    /// write is out already or nothing changed since the last.
    fn save_resume(&mut self, r: &record::Record, gen: u64, t: &mut Transfer) {
        if t.checkpointing || !t.dirty {
            return;
        }
        let id = r.fetch_id.clone();
        let state = record::state_path(&self.data_dir, &r.fetch_id);
        let rf = work::resume_file(
            t.part_id,
            r.total_size,
            r.root.clone(),
            t.sched.bits(),
            t.saved.as_ref(),
        );
        let file = t.file.clone();
        t.dirty = false;
        t.checkpointing = true;
        let sent = self.work.submit(move || Done {
            id,
            gen,
            what: What::Checkpointed(work::checkpoint(&file, &state, &rf)),
        });
        if sent.is_err() {
            t.checkpointing = false;
            t.dirty = true;
        }
    }
}
