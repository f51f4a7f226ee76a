//! The rescan of followed folders (docs/architecture.md, "The node"): a
//! worker lists each folder a user follows (`Sandbox::list_folder`, off the
//! loop), the catalog decides what the listing means (`folders`), and the
//! node hashes the new files, publishes them once hashed — as a fetched
//! file is shared back, nobody waiting — and unpublishes files gone from
//! their folder before forgetting them. Runs every `RESCAN_EVERY` from the
//! cron, at once after `/add-folder`, and on `/rescan`.

use reactor::Ctx;

use crate::node::catalog::hashing::WorkDone;
use crate::node::catalog::Scanned;
use crate::node::ops::Wait;
use crate::node::sandbox::FolderListing;
use crate::node::{Node, OpId};
use crate::proto::registry::{self, Request};
use crate::util::unix_now;

/// One user's folder listings: at most one job out; a rescan asked for
/// while one is out runs right after it (the files it wants to see may
/// be newer than the listing under way).
#[derive(Default)]
pub struct FolderScan {
    pub out: bool,
    pub due: bool,
    /// `/rescan` requests answered when the job out comes back.
    pub answer_now: Vec<OpId>,
    /// `/rescan` requests answered after the next job.
    pub answer_next: Vec<OpId>,
}

impl Node {
    /// Lists every folder `user` follows on the work pool; `op` (a
    /// `/rescan`) is answered once a listing that started after it is in.
    pub(crate) fn scan_folders(&mut self, cx: &mut Ctx, user: &str, op: Option<OpId>) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let jobs = u.catalog.folder_jobs();
        let s = &mut u.folder_scan;
        if s.out {
            s.due = true;
            s.answer_next.extend(op);
            return;
        }
        s.answer_now.extend(op);
        s.answer_now.append(&mut s.answer_next);
        if jobs.is_empty() {
            s.due = false;
            let waiting = std::mem::take(&mut s.answer_now);
            self.answer_rescans(cx, user, waiting);
            return;
        }
        let who = user.to_owned();
        let sandbox = self.settings.sandbox.clone();
        let submitted = self.work.submit(move || WorkDone::Folders {
            user: who,
            listings: jobs
                .into_iter()
                .map(|(real, recursive)| {
                    let l = sandbox.list_folder(&real, recursive);
                    (real, l)
                })
                .collect(),
        });
        let s = &mut u.folder_scan;
        if submitted.is_ok() {
            s.out = true;
            s.due = false;
        } else {
            // The pool is full: the cron tries again.
            s.due = true;
        }
    }

    /// A folder listing job came back (from `work_done`).
    pub(crate) fn folders_listed(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        listings: Vec<(std::path::PathBuf, Result<FolderListing, String>)>,
    ) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let all: Scanned = u.catalog.folders_scanned(listings, unix_now());
        let s = &mut u.folder_scan;
        s.out = false;
        let waiting = std::mem::take(&mut s.answer_now);
        let again = s.due;
        for f in &all.forgotten {
            // Deleting a file from a shared folder is a normal action: the
            // file leaves the user's files instead of lingering as missing.
            crate::log_info!(
                "{user}: {:?} is gone from its folder {}; no longer tracked",
                f.name,
                f.folder.as_deref().unwrap_or("?")
            );
            if f.is_published {
                self.quiet_unpublish(cx, user, &f.name);
                self.net_sync_file(user, &f.name);
            }
        }
        // One line per file for a few; a first look at a big folder is one line.
        if all.added.len() > 20 {
            crate::log_info!(
                "{user}: tracking {} new files from followed folders",
                all.added.len()
            );
        }
        for name in &all.added {
            if all.added.len() <= 20 {
                crate::log_info!("{user}: tracking {name:?} from a followed folder");
            }
            self.queue_hash(user, name);
        }
        self.answer_rescans(cx, user, waiting);
        if again {
            self.scan_folders(cx, user, None);
        }
    }

    /// Logout: `/rescan` requests still waiting are answered now.
    pub(crate) fn drop_rescans(&mut self, cx: &mut Ctx, user: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let s = &mut u.folder_scan;
        let mut ops = std::mem::take(&mut s.answer_now);
        ops.append(&mut s.answer_next);
        for op in ops {
            if self.take_op(op).is_some() {
                let r = crate::node::ops::Reply::error(
                    409,
                    "You logged out while the folders were being looked at",
                );
                self.finish(cx, op, r);
            }
        }
    }

    fn answer_rescans(&mut self, cx: &mut Ctx, user: &str, ops: Vec<OpId>) {
        for op in ops {
            if self.take_op(op).is_some() {
                let reply = self.folders_reply(user);
                self.finish(cx, op, reply);
            }
        }
    }

    /// Publishes a followed folder's hashed file, nobody waiting: marked
    /// published (saved by the next cron tick) and a quiet PUBLISH; with
    /// no registry link now, the next REGISTER carries it.
    pub(crate) fn publish_from_folder(&mut self, cx: &mut Ctx, user: &str, name: &str) {
        let Some(u) = self.users.get_mut(user) else {
            return;
        };
        let ready = u.catalog.get(name).is_some_and(|f| {
            f.publish_when_hashed && !f.is_published && f.sha256.is_some() && !f.hashing
        });
        if !ready {
            return;
        }
        let now = unix_now();
        u.catalog.set_published(name, Some(now));
        let Some(f) = u.catalog.get(name) else {
            return;
        };
        let msg = Request::Publish {
            hostname: user.into(),
            fname: f.name.clone().into(),
            meta: registry::FileMeta {
                published_at: Some(now),
                is_published: true,
                ..f.registry_meta()
            },
        };
        crate::log_info!("{user}: published {name:?} from a followed folder");
        if self.registry_send(
            cx,
            user,
            &msg,
            Wait::Quiet("publish of a followed folder's file"),
        ) {
            self.net_sync_file(user, name);
        }
    }

    /// After a load: files hashed before a restart but not yet published.
    pub(crate) fn publish_pending(&mut self, cx: &mut Ctx, user: &str) {
        let due = match self.users.get(user) {
            Some(u) => u.catalog.publish_due(),
            None => return,
        };
        for name in due {
            self.publish_from_folder(cx, user, &name);
        }
    }
}
