//! Users' catalogs on disk, with no disk I/O in a loop turn: loading a
//! catalog and every durable write of it run on the node's one `store`
//! thread. A change a request makes is answered only once a snapshot that
//! holds it is on disk; a failed write answers 500 and undoes the change.
//! What the endpoints change is decided in `routes`; this module only
//! carries their answers across the write.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use reactor::Ctx;

use crate::node::catalog::{Catalog, Snapshot};
use crate::node::ops::Wait;
use crate::node::ops::{AfterSave, FolderAsk, OpKind, Outcome, Reply, SaveOp};
use crate::node::{Node, OpId, User};
use crate::proto::registry::Request;

/// After a failed background write, the next try waits this long (a
/// request's own change is tried again at once).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(2);

/// What the store thread hands back.
pub enum Stored {
    Saved {
        user: String,
        version: u64,
        result: Result<(), String>,
    },
    Loaded {
        user: String,
        result: Result<Catalog, String>,
    },
    /// A small file written or removed for `what` (a standing registration).
    Noted {
        what: String,
        result: Result<(), String>,
    },
    /// A folder read for the file picker, for the request waiting as `op`.
    Listed {
        op: OpId,
        result: Result<serde_json::Value, (u16, String)>,
    },
    /// A folder to follow checked (its resolved path), for `op`.
    FolderChecked {
        op: OpId,
        ask: FolderAsk,
        result: Result<std::path::PathBuf, (u16, String)>,
    },
}

/// A user whose catalog is being read; requests wait here.
#[derive(Default)]
pub struct Loading {
    display: Option<String>,
    ops: Vec<OpId>,
}

/// Per-user save bookkeeping, kept outside `User` so it outlives a logout.
#[derive(Default)]
pub struct Saves {
    /// Requests waiting for a write, oldest first.
    waiters: HashMap<String, Vec<OpId>>,
    /// When a background write last failed.
    failed_at: HashMap<String, Instant>,
    /// Catalogs of users who logged out with a write still to do.
    pub parked: HashMap<String, Catalog>,
    pub loading: HashMap<String, Loading>,
}

impl Node {
    pub(crate) fn catalog_mut(&mut self, user: &str) -> Option<&mut Catalog> {
        if self.users.contains_key(user) {
            return self.users.get_mut(user).map(|u| &mut u.catalog);
        }
        self.saves.parked.get_mut(user)
    }

    /// Makes sure `user`'s catalog is in memory: `Ok(true)` when it is,
    /// `Ok(false)` when it is being loaded (wait with [`Node::wait_for_load`]).
    pub(crate) fn ensure_user(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        display: Option<&str>,
    ) -> Result<bool, Reply> {
        let display = display.filter(|d| !d.is_empty());
        if let Some(u) = self.users.get_mut(user) {
            if let Some(d) = display {
                u.display_name = d.to_owned();
            }
            return Ok(true);
        }
        if let Some(catalog) = self.saves.parked.remove(user) {
            self.user_loaded(cx, user, catalog, display.map(str::to_owned));
            return Ok(true);
        }
        if let Some(l) = self.saves.loading.get_mut(user) {
            if let Some(d) = display {
                l.display = Some(d.to_owned());
            }
            return Ok(false);
        }
        if !crate::node::valid_username(user) {
            return Err(Reply::error(
                500,
                &format!("'{user}' is not a usable user name on this node"),
            ));
        }
        let dir = self.settings.data_dir.join("users").join(user);
        let who = user.to_owned();
        let sandbox = self.settings.sandbox.clone();
        let data_dir = self.settings.data_dir.clone();
        let job = move || Stored::Loaded {
            result: Catalog::load(&dir, &who, sandbox, &data_dir),
            user: who,
        };
        if self.store.submit(job).is_err() {
            return Err(Reply::error(
                503,
                "The node is too busy to load this user's files; try again in a moment",
            ));
        }
        self.saves.loading.insert(
            user.to_owned(),
            Loading {
                display: display.map(str::to_owned),
                ops: Vec::new(),
            },
        );
        Ok(false)
    }

    pub(crate) fn wait_for_load(&mut self, op: OpId, user: &str) {
        if let Some(l) = self.saves.loading.get_mut(user) {
            l.ops.push(op);
        }
    }

    fn user_loaded(&mut self, cx: &mut Ctx, user: &str, catalog: Catalog, display: Option<String>) {
        let n = catalog.len();
        self.users.insert(
            user.to_owned(),
            User {
                display_name: display.unwrap_or_else(|| user.to_owned()),
                catalog,
                session: None,
                last_use: cx.now(),
                scanning: false,
                scan_due: true,
                folder_scan: Default::default(),
            },
        );
        self.scan_user(user);
        self.scan_folders(cx, user, None);
        // Hashed before a crash, not yet published: now.
        self.publish_pending(cx, user);
        let todo = self
            .users
            .get(user)
            .map(|u| u.catalog.needing_hash())
            .unwrap_or_default();
        // Logged after the hashes are queued: a file whose hash and digests
        // were kept is not read again (tests/pieces.rs reads this line).
        crate::log_info!("{user}: loaded, {n} tracked files, {} to hash", todo.len());
        for name in todo {
            self.queue_hash(user, &name);
        }
        self.resume_standing(cx, user);
    }

    /// Logout: the catalog leaves memory once nothing about it is pending.
    pub(crate) fn retire_catalog(&mut self, cx: &mut Ctx, user: &str, catalog: Catalog) {
        let waiting = self.saves.waiters.get(user).is_some_and(|w| !w.is_empty());
        if catalog.is_settled() && !waiting {
            return;
        }
        self.saves.parked.insert(user.to_owned(), catalog);
        self.kick_save(cx, user);
    }

    /// Answers `op` once the user's catalog, as it is now, is on disk (at
    /// once if it is already), going on as `then` says.
    pub(crate) fn commit(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        then: AfterSave,
    ) -> Outcome {
        let Some(need) = self.catalog_mut(user).map(|c| c.version()) else {
            return Reply::error(404, "Unknown user").into();
        };
        if self.catalog_mut(user).is_some_and(|c| c.is_saved(need)) {
            return self.after_save(cx, op, user, then);
        }
        self.saves
            .waiters
            .entry(user.to_owned())
            .or_default()
            .push(op);
        self.kick_save(cx, user);
        Outcome::Later(OpKind::Saving(SaveOp {
            user: user.to_owned(),
            need,
            then,
        }))
    }

    /// Hands the catalog's next snapshot to the store thread, if it has
    /// changes and no write out (a full queue is retried by the cron).
    fn kick_save(&mut self, cx: &mut Ctx, user: &str) {
        let Some(snap) = self.catalog_mut(user).and_then(|c| c.snapshot()) else {
            return;
        };
        let snap: Snapshot = match snap {
            Ok(s) => s,
            Err(e) => {
                crate::log_error!("{user}: {e}");
                self.saves.failed_at.insert(user.to_owned(), cx.now());
                self.save_failed(cx, user, &e);
                return;
            }
        };
        let version = snap.version;
        let who = user.to_owned();
        let submitted = self.store.submit(move || Stored::Saved {
            result: snap.write(),
            user: who,
            version,
        });
        if submitted.is_err() {
            if let Some(c) = self.catalog_mut(user) {
                c.written(version, false);
            }
        }
    }

    /// Results of the store thread (from `on_wake`).
    pub(crate) fn store_done(&mut self, cx: &mut Ctx) {
        for done in self.store.drain() {
            match done {
                Stored::Saved {
                    user,
                    version,
                    result,
                } => self.saved(cx, &user, version, result),
                Stored::Listed { op, result } => {
                    if self.take_op(op).is_some() {
                        let reply = match result {
                            Ok(v) => Reply::ok(v),
                            Err((status, msg)) => Reply::error(status, &msg),
                        };
                        self.finish(cx, op, reply);
                    }
                }
                Stored::FolderChecked { op, ask, result } => {
                    self.folder_checked(cx, op, ask, result);
                }
                Stored::Noted { what, result } => {
                    if let Err(e) = result {
                        crate::log_error!("{what}: {e}");
                    }
                }
                Stored::Loaded { user, result } => {
                    let l = self.saves.loading.remove(&user).unwrap_or_default();
                    match result {
                        Ok(catalog) if !self.users.contains_key(&user) => {
                            self.user_loaded(cx, &user, catalog, l.display);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            crate::log_error!("{user}: {e}");
                            for op in l.ops {
                                self.finish(cx, op, Reply::error(500, &e));
                            }
                            continue;
                        }
                    }
                    for op in l.ops {
                        match self.take_op(op) {
                            Some(OpKind::Load { req, rest, user }) => {
                                let out = self.route_user(cx, op, &req, &rest, &user);
                                self.settle(cx, op, out);
                            }
                            Some(other) => self.resume_op(op, other),
                            None => {}
                        }
                    }
                }
            }
        }
    }

    fn saved(&mut self, cx: &mut Ctx, user: &str, version: u64, result: Result<(), String>) {
        let ok = result.is_ok();
        let Some(c) = self.catalog_mut(user) else {
            return;
        };
        c.written(version, ok);
        if let Err(e) = result {
            crate::log_error!("{user}: {e}");
            self.saves.failed_at.insert(user.to_owned(), cx.now());
            self.save_failed(cx, user, &e);
            return;
        }
        self.saves.failed_at.remove(user);
        let ops = self.saves.waiters.remove(user).unwrap_or_default();
        let mut still = Vec::new();
        for op in ops {
            match self.take_op(op) {
                Some(OpKind::Saving(s)) if version >= s.need => {
                    let out = self.after_save(cx, op, &s.user, s.then);
                    self.settle(cx, op, out);
                }
                Some(other) => {
                    self.resume_op(op, other);
                    still.push(op);
                }
                None => {}
            }
        }
        if !still.is_empty() {
            // Answers above may have let pipelined requests add waiters: after these.
            still.extend(self.saves.waiters.remove(user).unwrap_or_default());
            self.saves.waiters.insert(user.to_owned(), still);
            // Those waiting want the changes made during this write: now.
            self.kick_save(cx, user);
        }
        let settled = self.saves.parked.get(user).is_some_and(Catalog::is_settled);
        if settled && !self.saves.waiters.contains_key(user) {
            self.saves.parked.remove(user);
        }
    }

    /// A write failed: every waiting change of the user is undone, newest
    /// first, and answered 500; what is left is written again later, so
    /// memory and disk come to agree.
    fn save_failed(&mut self, cx: &mut Ctx, user: &str, err: &str) {
        let ops = self.saves.waiters.remove(user).unwrap_or_default();
        let msg = format!(
            "The change could not be saved on this node, so it was undone ({err}); check the disk and try again"
        );
        let mut undone = Vec::new();
        for op in ops.into_iter().rev() {
            match self.take_op(op) {
                Some(OpKind::Saving(s)) => {
                    self.undo(cx, &s.user, s.then);
                    undone.push(op);
                }
                Some(other) => self.resume_op(op, other),
                None => {}
            }
        }
        // Answered only once all are undone: an answer lets the next
        // pipelined request of its connection run, which must not see half.
        for op in undone.into_iter().rev() {
            self.finish(cx, op, Reply::error(500, &msg));
        }
    }

    fn undo(&mut self, cx: &mut Ctx, user: &str, then: AfterSave) {
        let Some(c) = self.catalog_mut(user) else {
            return;
        };
        match then {
            AfterSave::Reply(_) => {}
            then @ (AfterSave::Followed { .. } | AfterSave::Unfollowed(_)) => {
                self.folder_undo(user, then)
            }
            AfterSave::Added {
                name,
                path,
                added_at,
            } => {
                c.unadd(&name, &path, added_at);
            }
            AfterSave::Removed(f) => {
                let (name, published, hashed) = (
                    f.name.clone(),
                    f.is_published,
                    f.sha256.is_some() && f.root.is_some(),
                );
                if !c.reinsert(*f) {
                    return;
                }
                if published {
                    self.net_sync_file(user, &name);
                }
                if !hashed {
                    // Its hash, if one was under way, was dropped with it.
                    self.queue_hash(user, &name);
                }
            }
            AfterSave::Published {
                name,
                before,
                after,
                announced,
                ..
            } => {
                let undone = c.restore_publication(&name, &after, &before);
                if undone && announced && !before.is_published {
                    // The registry has it: take it back, so it agrees with the disk.
                    let msg = Request::Unpublish {
                        hostname: user.into(),
                        fname: name.as_str().into(),
                    };
                    let why = Wait::Quiet("withdrawing a publish that could not be saved");
                    self.registry_send(cx, user, &msg, why);
                }
                if undone {
                    self.net_sync_file(user, &name);
                }
            }
            AfterSave::Unpublished {
                name,
                before,
                after,
            } => {
                // The registry was not told yet: putting it back is enough.
                if c.restore_publication(&name, &after, &before) {
                    self.net_sync_file(user, &name);
                }
            }
        }
    }

    /// Cron: background changes (hashes, rescans) are written in batches, a
    /// full store queue is retried, settled parked catalogs are dropped.
    pub(crate) fn saves_tick(&mut self, cx: &mut Ctx) {
        let now = cx.now();
        let mut names: Vec<String> = self.users.keys().cloned().collect();
        names.extend(self.saves.parked.keys().cloned());
        for user in names {
            let cooling = self
                .saves
                .failed_at
                .get(&user)
                .is_some_and(|&t| now.saturating_duration_since(t) < RETRY_AFTER_FAILURE);
            if !cooling {
                self.kick_save(cx, &user);
            }
        }
        let waiters = &self.saves.waiters;
        self.saves
            .parked
            .retain(|u, c| !c.is_settled() || waiters.get(u).is_some_and(|w| !w.is_empty()));
    }

    /// Shutdown: whatever is unsaved is written now (the loop is ending, so
    /// blocking is fine; a write still out on the store thread is waited for).
    pub(crate) fn save_all_now(&mut self) {
        let catalogs = self
            .users
            .values_mut()
            .map(|u| &mut u.catalog)
            .chain(self.saves.parked.values_mut());
        for c in catalogs {
            if let Err(e) = c.save_now() {
                crate::log_error!("{}: {e}", c.user());
            }
        }
    }
}
