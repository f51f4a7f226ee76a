//! The fetch endpoints: which content and hosts a `/fetch` means, starting
//! the download once its record is on disk, progress, list, pause, resume
//! and cancel; and the registry lookups a running fetch asks for (more
//! hosts on resume or when it runs out).

use serde_json::json;

use crate::node::catalog;
use crate::node::transfers::fetch::Completed;

use super::*;

impl Node {
    pub(crate) fn api_fetch(&mut self, cx: &mut Ctx, _op: OpId, user: &str, b: &Fields) -> Outcome {
        let fname = try_reply!(required(b, "fname")).to_owned();
        if let Err(why) = check_file_name(&fname) {
            return Reply::error(400, &format!("'{fname}' is not a valid file name: {why}")).into();
        }
        let overwrite = try_reply!(bool_field(b, "overwrite"));
        // Sharing what was fetched is the default (a popular file gains
        // sources as it spreads); `share: false` keeps it private.
        let share = match b.get("share") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(v)) => *v,
            Some(_) => return Reply::error(400, "'share' must be true or false").into(),
        };
        let sha256 = match try_reply!(str_field(b, "sha256")).filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => match pick::parse_sha256(s) {
                Some(h) => Some(h),
                None => return Reply::error(400, "'sha256' must be 64 hexadecimal digits").into(),
            },
        };
        let prefer = try_reply!(str_field(b, "hostname"))
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let target = match try_reply!(str_field(b, "save_path")) {
            Some(p) if !p.is_empty() => {
                let p = Path::new(p);
                if !p.is_absolute() {
                    return Reply::error(
                        400,
                        &format!(
                            "'save_path' must be an absolute path, not '{}'",
                            p.display()
                        ),
                    )
                    .into();
                }
                if p.is_dir() {
                    p.join(&fname)
                } else {
                    p.to_path_buf()
                }
            }
            _ => self.downloads_dir(user).join(&fname),
        };
        // Only inside the user's downloads folder, a download root or a share
        // root: refused here, before the registry is asked or anything is
        // created. Resolving stats the existing folders in this loop turn.
        let place = match self.settings.sandbox.place(user, &target) {
            Ok(p) => p,
            Err((status, msg)) => return Reply::error(status, &msg).into(),
        };
        let target = place.path;
        if let Ok(m) = std::fs::symlink_metadata(&target) {
            if m.is_dir() {
                return Reply::error(409, &format!("{} is a directory", target.display())).into();
            }
            if !m.is_file() {
                return Reply::error(
                    409,
                    &format!(
                        "{} is not a regular file (a symlink?); a download never replaces one",
                        target.display()
                    ),
                )
                .into();
            }
            if !overwrite {
                return Reply::error(
                    409,
                    &format!(
                        "{} already exists; pass overwrite:true to replace it",
                        target.display()
                    ),
                )
                .into();
            }
        }
        try_reply!(self.require_link(cx, user));
        // A coordinator that knows `sha256` answers only hosts with that
        // content; an older one ignores it, so the answer is filtered here too.
        let msg = Request::Request {
            fname: fname.as_str().into(),
            sha256: sha256.clone(),
        };
        if !self.registry_send(cx, user, &msg, Wait::Op(_op)) {
            return Reply::error(
                503,
                "The coordinator is unreachable right now; try again in a moment",
            )
            .into();
        }
        Outcome::Later(OpKind::Fetch(FetchOp {
            user: user.to_owned(),
            fname,
            sha256,
            target,
            overwrite,
            prefer,
            share,
        }))
    }

    pub(crate) fn api_pause_fetch(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        id: &str,
        pause: bool,
    ) -> Reply {
        let r = if pause {
            self.fetches.pause(cx, user, id)
        } else {
            self.fetches.resume(cx, user, id)
        };
        match r {
            Ok(()) => Reply::ok(json!({"success": true})),
            Err((status, msg)) => Reply::error(status, &msg),
        }
    }

    /// Sends the registry lookups running fetches asked for, as far as
    /// their users' registry links are up (the rest wait for the next try).
    pub(crate) fn fetch_lookups(&mut self, cx: &mut Ctx) {
        let wanted: Vec<_> = self.fetches.lookups().to_vec();
        for l in wanted {
            let msg = Request::Request {
                fname: l.fname.as_str().into(),
                sha256: l.sha256.clone(),
            };
            if self.registry_send(cx, &l.user, &msg, Wait::FetchHosts(l.seq)) {
                self.fetches.lookup_sent(l.seq);
            }
        }
    }

    /// Downloads that finished: added to their user's files (and published,
    /// unless the fetch said `share: false`).
    pub(crate) fn fetches_completed(&mut self, cx: &mut Ctx) {
        for c in self.fetches.take_completed() {
            let note = self.share_fetched(cx, &c);
            crate::log_info!("{}: {} ({note})", c.user, c.path.display());
            self.fetches.set_share_note(cx, &c.fetch_id, note);
        }
    }

    /// Adds a finished download to its user's files and, unless the fetch
    /// said `share: false`, publishes it with the hash it was verified
    /// against. A file saved where the user may not share (the downloads
    /// folder is in the node's data directory, docs/trust.md) stays
    /// private. Returns what happened, for `/fetch-progress`.
    fn share_fetched(&mut self, cx: &mut Ctx, c: &Completed) -> String {
        let path = c.path.to_string_lossy().into_owned();
        // With both checks done (pieces against the root, the whole file
        // against sha256), the pair is the file's: it is not read again.
        let added = match (&c.sha256, &c.root) {
            (Some(sha256), Some(root)) => {
                let v = catalog::Verified {
                    size: c.size,
                    modified: c.modified,
                    sha256: sha256.clone(),
                    root: root.clone(),
                };
                self.track_verified(&c.user, &path, &v)
            }
            // Without a root: hashed like any added file, published after.
            _ => {
                let r = match self.users.get_mut(&c.user) {
                    Some(u) => u.catalog.add(&path, unix_now()),
                    None => Err((404, "the user is not loaded on this node".into())),
                };
                if let Ok((name, true)) = &r {
                    self.queue_hash(&c.user, name);
                }
                r.map(|(name, _)| name)
            }
        };
        let name = match added {
            Ok(name) => name,
            Err((_, why)) => return format!("not added to your files: {why}"),
        };
        let now = unix_now();
        let Some(u) = self.users.get_mut(&c.user) else {
            return "added to your files".into();
        };
        let hashed = u.catalog.get(&name).is_some_and(|f| f.sha256.is_some());
        if !c.share {
            return "added to your files, not published (share: false)".into();
        }
        if !hashed {
            return "added to your files; publish it once it is hashed".into();
        }
        u.catalog.set_published(&name, Some(now));
        let Some(f) = u.catalog.get(&name) else {
            return "added to your files".into();
        };
        let msg = Request::Publish {
            hostname: c.user.as_str().into(),
            fname: f.name.clone().into(),
            meta: registry::FileMeta {
                published_at: Some(now),
                is_published: true,
                ..f.registry_meta()
            },
        };
        // Without a registry link now, the next REGISTER announces it.
        if self.registry_send(cx, &c.user, &msg, Wait::Quiet("publish of a fetched file")) {
            self.net_sync_file(&c.user, &name);
        }
        "added to your files and published".into()
    }

    /// The registry's answer to a running fetch's lookup.
    pub(crate) fn fetch_hosts_found(
        &mut self,
        cx: &mut Ctx,
        seq: u64,
        fname: Option<&str>,
        v: &registry::Reply<'_>,
    ) {
        let hosts = index::found_hosts(v, fname.unwrap_or(""));
        let offers = offers_of(hosts);
        self.fetches.hosts_found(cx, seq, offers);
    }

    pub(crate) fn api_cancel_fetch(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        id: &str,
    ) -> Outcome {
        match self.fetches.cancel(cx, user, id) {
            // Answered once the `.part` is removed (on the saver thread).
            Ok(()) if self.fetches.when_durable(op) => Outcome::Later(OpKind::FetchCancelled),
            Ok(()) => Reply::ok(json!({"success": true})).into(),
            Err((status, msg)) => Reply::error(status, &msg).into(),
        }
    }

    /// Forgets the user's finished downloads (never their files); answered
    /// once the records are on disk, as other fetch changes are.
    pub(crate) fn api_clear_fetches(&mut self, op: OpId, user: &str) -> Outcome {
        let cleared = self.fetches.clear_finished(user);
        if cleared > 0 && self.fetches.when_durable(op) {
            return Outcome::Later(OpKind::FetchesCleared { cleared });
        }
        Reply::ok(json!({"success": true, "cleared": cleared})).into()
    }

    pub(crate) fn api_fetch_progress(&self, user: &str, id: &str) -> Reply {
        match self.fetches.progress(user, id) {
            Some(mut v) => {
                if let Some(o) = v.as_object_mut() {
                    o.insert("success".into(), json!(true));
                }
                Reply::ok(v)
            }
            None => Reply::error(404, &format!("No download '{id}' for this user")),
        }
    }

    pub(crate) fn api_fetches(&self, user: &str) -> Reply {
        Reply::ok(json!({"success": true, "fetches": self.fetches.list(user)}))
    }

    pub(crate) fn fetch_found(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        f: FetchOp,
        v: &registry::Reply<'_>,
    ) -> Outcome {
        self.fetch_start(cx, op, f, v).unwrap_or_else(Outcome::Now)
    }

    /// Starts the fetch and waits for its record to be on disk.
    fn fetch_start(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        f: FetchOp,
        v: &registry::Reply<'_>,
    ) -> Result<Outcome, Reply> {
        if let registry::Reply::Error(reason) = v {
            return Err(Reply::error(
                502,
                &format!("The coordinator could not look up '{}': {reason}", f.fname),
            ));
        }
        let hosts: Vec<NetHost> = index::found_hosts(v, &f.fname);
        let mut hosts = match pick::hosts_for(hosts, f.sha256.as_deref()) {
            Ok(h) => h,
            Err(pick::Refused::None) => {
                return Err(Reply::error(
                    404,
                    &match &f.sha256 {
                        Some(h) => format!(
                            "No peer on the network offers '{}' with SHA-256 {h}",
                            f.fname
                        ),
                        None => format!("No peer on the network offers '{}'", f.fname),
                    },
                ))
            }
            Err(pick::Refused::Ambiguous(choices)) => {
                return Err(Reply::error_with(
                    409,
                    &format!(
                        "{} different files are called '{}' on the network; ask again with the 'sha256' of the one you want",
                        choices.len(),
                        f.fname
                    ),
                    json!({"choices": choices}),
                ))
            }
        };
        // Online first; the asked-for host first of all.
        hosts.sort_by_key(|h| !h.online);
        if let Some(want) = &f.prefer {
            match hosts.iter().position(|h| &h.hostname == want) {
                Some(i) => {
                    let h = hosts.remove(i);
                    hosts.insert(0, h);
                }
                None => {
                    return Err(Reply::error(
                        404,
                        &format!("'{want}' does not offer '{}'", f.fname),
                    ));
                }
            }
        }
        let req = FetchRequest {
            user: f.user.clone(),
            fname: f.fname.clone(),
            target: f.target,
            overwrite: f.overwrite,
            share: f.share,
            hosts: offers_of(hosts),
        };
        match self.fetches.start(cx, req) {
            Ok(id) if self.fetches.when_durable(op) => Ok(Outcome::Later(OpKind::FetchRecorded {
                user: f.user,
                fetch_id: id,
            })),
            Ok(id) => {
                let _ = self.fetches.cancel(cx, &f.user, &id);
                Err(Reply::error(
                    503,
                    "The node is too busy to record the download; try again in a moment",
                ))
            }
            Err((status, msg)) => Err(Reply::error(status, &msg)),
        }
    }

    /// The records holding a new fetch are on disk (or could not be
    /// written: then the fetch is cancelled, since it would not survive a
    /// restart, and the request fails).
    pub(crate) fn fetch_recorded(&mut self, cx: &mut Ctx, op: OpId, result: Result<(), String>) {
        let Some(kind) = self.take_op(op) else {
            return;
        };
        let (user, fetch_id) = match kind {
            OpKind::FetchRecorded { user, fetch_id } => (user, fetch_id),
            OpKind::FetchCancelled => {
                let reply = Reply::ok(json!({"success": true}));
                return self.finish(cx, op, reply);
            }
            OpKind::FetchesCleared { cleared } => {
                let reply = match result {
                    Ok(()) => Reply::ok(json!({"success": true, "cleared": cleared})),
                    Err(e) => Reply::error(
                        500,
                        &format!("The finished downloads were cleared here but could not be saved ({}); they may come back after a restart", crate::util::without_errno(&e)),
                    ),
                };
                return self.finish(cx, op, reply);
            }
            other => return self.resume_op(op, other),
        };
        let reply = match result {
            Ok(()) => Reply::ok(json!({"success": true, "fetch_id": fetch_id})),
            Err(e) => {
                let _ = self.fetches.cancel(cx, &user, &fetch_id);
                Reply::error(
                    500,
                    &format!(
                        "The download could not be recorded on this node ({e}); it was not started"
                    ),
                )
            }
        };
        self.finish(cx, op, reply);
    }
}

/// The registry's hosts as a fetch uses them.
fn offers_of(hosts: Vec<NetHost>) -> Vec<HostOffer> {
    hosts
        .into_iter()
        .filter_map(|h| {
            let file = h.files.first()?;
            Some(HostOffer {
                size: file.size,
                sha256: file.sha256.clone(),
                root: h.root.clone(),
                hostname: h.hostname,
                ip: h.ip,
                port: h.port,
                online: h.online,
            })
        })
        .collect()
}
