//! What each client-API endpoint does for its user (`docs/client-api.md`),
//! and how requests that wait on the registry go on when its answers come.
//! HTTP framing, the Host check and authentication happen before, in `api`.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use reactor::Ctx;
use serde_json::{json, Map, Value};

use crate::node::catalog::hashing::observe;
use crate::node::catalog::Status;
use crate::node::client::pick;
use crate::node::network::index::{self, Duplicates, Index, Mine, NetHost, OwnChange};
use crate::node::ops::AfterSave;
use crate::node::ops::Wait;
use crate::node::ops::NOT_INITIALISED;
use crate::node::ops::{FetchOp, OpKind, Outcome, PublishOp, PublishStage, Reply};
use crate::node::transfers::fetch::{FetchRequest, HostOffer};
use crate::node::{HashWait, Node, OpId};
use crate::proto::names::check_file_name;
use crate::proto::registry::{self, Request};
use crate::util::unix_now;

type Fields = Map<String, Value>;

/// A publish waits at most this long for its file's hash, then answers 409
/// as before (hashing goes on); more waiting at once than
/// [`MAX_HASH_WAITS`] are answered 409 at once.
const HASH_WAIT_MAX: Duration = Duration::from_secs(600);
const MAX_HASH_WAITS: usize = 1024;

fn still_hashing(name: &str) -> Reply {
    Reply::error_with(
        409,
        &format!("'{name}' is still being hashed; try again in a moment"),
        json!({"hashing": true}),
    )
}

fn str_field<'a>(b: &'a Fields, key: &str) -> Result<Option<&'a str>, Reply> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(Reply::error(400, &format!("'{key}' must be a string"))),
    }
}

fn bool_field(b: &Fields, key: &str) -> Result<bool, Reply> {
    match b.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(v)) => Ok(*v),
        Some(_) => Err(Reply::error(400, &format!("'{key}' must be true or false"))),
    }
}

fn required<'a>(b: &'a Fields, key: &str) -> Result<&'a str, Reply> {
    match str_field(b, key)? {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Reply::error(400, &format!("Missing '{key}' (a string)"))),
    }
}

macro_rules! try_reply {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(r) => return Outcome::Now(r),
        }
    };
}

// After the macro, which the endpoints there use too.
mod fetch;
mod folders;
mod picker;

impl Node {
    pub(crate) fn client_info(&self, user: &str) -> Reply {
        let Some(u) = self.users.get(user) else {
            return Reply::error(404, "Unknown user");
        };
        let port = u.session.as_ref().map(|s| s.peer_port);
        Reply::ok(json!({
            "success": true,
            "client": {
                "username": user,
                "hostname": user,
                "display_name": u.display_name,
                "port": port,
                "repo": self.downloads_dir(user),
            }
        }))
    }

    fn downloads_dir(&self, user: &str) -> PathBuf {
        self.settings
            .data_dir
            .join("users")
            .join(user)
            .join("downloads")
    }

    pub(crate) fn api_init(&mut self, cx: &mut Ctx, op: OpId, user: &str, b: &Fields) -> Outcome {
        if let Some(s) = self.users.get_mut(user).and_then(|u| u.session.as_mut()) {
            if s.ever_up {
                // A user is here: a link waiting to retry tries now.
                self.link_retry_now(cx, user);
                return self.client_info(user).into();
            }
            // The first REGISTER is under way: answer together with it.
            s.init_ops.push(op);
            return Outcome::Later(OpKind::Init);
        }
        let mut addr = self.settings.registry;
        if let Some(ip) = try_reply!(str_field(b, "server_ip")) {
            let ip = if ip.eq_ignore_ascii_case("localhost") {
                IpAddr::from([127, 0, 0, 1])
            } else {
                try_reply!(ip.parse::<IpAddr>().map_err(|_| Reply::error(
                    400,
                    &format!("'server_ip' must be an IP address, not '{ip}'")
                )))
            };
            addr = SocketAddr::new(ip, addr.port());
        }
        match b.get("server_port") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(p) if p > 0 => addr.set_port(p),
                _ => {
                    return Reply::error(400, "'server_port' must be a port number (1-65535)")
                        .into()
                }
            },
        }
        try_reply!(self.start_session(cx, user, addr));
        if let Some(s) = self.users.get_mut(user).and_then(|u| u.session.as_mut()) {
            s.init_ops.push(op);
        }
        self.link_connect(cx, user);
        Outcome::Later(OpKind::Init)
    }

    pub(crate) fn api_status(&self, cx: &Ctx, user: &str) -> Reply {
        let Some(u) = self.users.get(user) else {
            return Reply::error(404, "Unknown user");
        };
        let now = cx.now();
        let state = self.heartbeat_state(user, now);
        let iv = self.settings.intervals;
        let (coordinator, peer_port, sent) = match &u.session {
            Some(s) => (
                json!({
                    "state": s.state_name(),
                    "address": s.registry.to_string(),
                    "retry_in_s": s.retry_in(now),
                    "last_error": s.last_error,
                }),
                Some(s.peer_port),
                s.heartbeat.sent(),
            ),
            None => (
                json!({
                    "state": "disconnected",
                    "address": self.settings.registry.to_string(),
                    "retry_in_s": null,
                    "last_error": null,
                }),
                None,
                0,
            ),
        };
        // Files that went missing or changed on disk: the UI tells the owner
        // on whatever page they are (a changed file is off the network).
        let attention: Vec<Value> = u
            .catalog
            .iter()
            .filter(|f| f.status != crate::node::catalog::Status::Ok)
            .take(50)
            .map(|f| json!({"name": f.name, "status": f.status.as_str()}))
            .collect();
        Reply::ok(json!({
            "success": true,
            "username": user,
            "hostname": user,
            "attention": attention,
            "display_name": u.display_name,
            "initialized": u.session.is_some(),
            "peer_port": peer_port,
            "coordinator": coordinator,
            "heartbeat": {
                "state": state.as_str(),
                "mode": match iv.mode {
                    crate::node::network::heartbeat::Mode::Connection { .. } => "connection",
                    crate::node::network::heartbeat::Mode::Adaptive => "adaptive",
                },
                // At most this long between PINGs (connection mode: the NAT
                // keepalive; a state change is sent at once).
                "interval_s": iv.due_after(state).as_secs_f64(),
                "sent": sent,
                "next_in_s": u.session.as_ref().and_then(|s| s.heartbeat.next_in(now)).map(|d| d.as_secs_f64()),
            },
            "counts": {
                "local_files": u.catalog.len(),
                "published_files": u.catalog.published_count(),
                "active_fetches": self.fetches.active(user),
                "uploads": self.peer_server.active_uploads(user),
            }
        }))
    }

    pub(crate) fn api_files(&self, user: &str, published_only: bool) -> Reply {
        let Some(u) = self.users.get(user) else {
            return Reply::error(404, "Unknown user");
        };
        let files: Vec<Value> = u
            .catalog
            .iter()
            .filter(|f| !published_only || f.is_published)
            .map(|f| f.to_json())
            .collect();
        Reply::ok(json!({"success": true, "files": files}))
    }

    pub(crate) fn api_add_file(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        b: &Fields,
    ) -> Outcome {
        let path = try_reply!(required(b, "path"));
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        let added_at = unix_now();
        let (name, new) = match u.catalog.add(path, added_at) {
            Ok(x) => x,
            Err((status, msg)) => return Reply::error(status, &msg).into(),
        };
        if new {
            // Hashing need not wait for the write; if the write fails, the result is dropped.
            self.queue_hash(user, &name);
        }
        // Acknowledged means on disk (also when an earlier add is still being written).
        let then = if new {
            AfterSave::Added {
                name,
                path: path.to_owned(),
                added_at,
            }
        } else {
            AfterSave::Reply(self.file_reply(user, &name, None))
        };
        self.commit(cx, op, user, then)
    }

    /// `{success, file}` (and a note) for a tracked file.
    fn file_reply(&self, user: &str, name: &str, note: Option<&str>) -> Reply {
        match self.users.get(user).and_then(|u| u.catalog.get(name)) {
            Some(f) => {
                let mut v = json!({"success": true, "file": f.to_json()});
                if let Some(n) = note {
                    v["note"] = json!(n);
                }
                Reply::ok(v)
            }
            None => Reply::error(409, &format!("'{name}' stopped being tracked meanwhile")),
        }
    }

    pub(crate) fn api_remove_file(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        b: &Fields,
    ) -> Outcome {
        let name = try_reply!(required(b, "fname"));
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        // Peers stop getting it at once; the registry hears once it is on disk.
        let Some(f) = u.catalog.remove(name) else {
            return Reply::error(404, &format!("'{name}' is not tracked")).into();
        };
        if f.is_published {
            self.net_sync_file(user, name);
        }
        self.commit(cx, op, user, AfterSave::Removed(Box::new(f)))
    }

    /// A request's change is on disk: log it, tell others, answer.
    pub(crate) fn after_save(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        then: AfterSave,
    ) -> Outcome {
        match then {
            AfterSave::Reply(r) => r.into(),
            then @ (AfterSave::Followed { .. } | AfterSave::Unfollowed(_)) => {
                self.folder_saved(cx, user, then)
            }
            AfterSave::Added { name, .. } => {
                crate::log_info!("{user}: tracking {name:?}");
                self.file_reply(user, &name, None).into()
            }
            AfterSave::Removed(f) => {
                if f.is_published {
                    self.quiet_unpublish(cx, user, &f.name);
                }
                crate::log_info!("{user}: stopped tracking {:?}", f.name);
                Reply::ok(json!({"success": true})).into()
            }
            AfterSave::Published {
                name,
                announced,
                note,
                ..
            } => {
                if announced {
                    crate::log_info!("{user}: published {name:?}");
                } else {
                    crate::log_info!(
                        "{user}: published {name:?} locally (coordinator unreachable)"
                    );
                }
                self.file_reply(user, &name, note).into()
            }
            AfterSave::Unpublished { name, .. } => {
                crate::log_info!("{user}: unpublished {name:?}");
                let up = self.session_up(user);
                let msg = Request::Unpublish {
                    hostname: user.into(),
                    fname: name.as_str().into(),
                };
                if up && self.registry_send(cx, user, &msg, Wait::Op(op)) {
                    return Outcome::Later(OpKind::Unpublish { name });
                }
                Reply::ok(json!({"success": true, "note": "The coordinator is unreachable right now; the change is kept here and sent when the connection is back"})).into()
            }
        }
    }

    /// Name of the file a publish/unpublish body means (`fname`, or `path`).
    fn named_file(&self, user: &str, b: &Fields) -> Result<String, Reply> {
        let u = self
            .users
            .get(user)
            .ok_or_else(|| Reply::error(404, "Unknown user"))?;
        if let Some(name) = str_field(b, "fname")?.filter(|s| !s.is_empty()) {
            return match u.catalog.get(name) {
                Some(_) => Ok(name.to_owned()),
                None => Err(Reply::error(
                    404,
                    &format!("'{name}' is not tracked; add it first with /add-file"),
                )),
            };
        }
        if let Some(path) = str_field(b, "path")?.filter(|s| !s.is_empty()) {
            return match u.catalog.by_path(path) {
                Some(f) => Ok(f.name.clone()),
                None => Err(Reply::error(
                    404,
                    &format!("{path} is not tracked; add it first with /add-file"),
                )),
            };
        }
        Err(Reply::error(400, "Missing 'fname' (or 'path')"))
    }

    pub(crate) fn api_publish(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        b: &Fields,
    ) -> Outcome {
        let force = try_reply!(bool_field(b, "force"));
        let name = try_reply!(self.named_file(user, b));
        self.publish_start(cx, op, user, &name, force)
    }

    /// A publish from the start: at once, or once the file's hash is known
    /// (a publish right after `/add-file` waits for it, see
    /// [`Node::resume_hash_waits`]).
    fn publish_start(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        name: &str,
        force: bool,
    ) -> Outcome {
        let name = name.to_owned();
        // Look at the disk now, not at what the last sweep saw.
        self.check_file(cx, user, &name);
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        let Some(f) = u.catalog.get(&name) else {
            return Reply::error(404, &format!("'{name}' is not tracked")).into();
        };
        if f.status == Status::Missing {
            return Reply::error(
                409,
                &format!(
                    "'{name}' is missing from disk ({}): it was moved or deleted",
                    f.path
                ),
            )
            .into();
        }
        if f.changing && f.sha256.is_none() {
            return Reply::error_with(
                409,
                &format!("'{name}' keeps changing on disk, so it is hashed again only now and then; publish it once it stops changing"),
                json!({"hashing": true, "changing": true}),
            )
            .into();
        }
        if f.hashing || (f.sha256.is_none() && f.hash_error.is_none()) {
            if self.hash_waits.len() >= MAX_HASH_WAITS {
                return still_hashing(&name).into();
            }
            crate::log_debug!("{user}: the publish of {name:?} waits for its hash");
            self.hash_waits.push(HashWait {
                op,
                user: user.to_owned(),
                name: name.clone(),
                since: cx.now(),
            });
            return Outcome::Later(OpKind::Publish(PublishOp {
                user: user.to_owned(),
                name,
                force,
                stage: PublishStage::Hashing,
                found: Vec::new(),
                published_at: 0.0,
            }));
        }
        if let Some(e) = &f.hash_error {
            return Reply::error(409, &format!("'{name}' could not be hashed: {e}")).into();
        }
        if f.is_published {
            let note = format!("'{name}' is already published");
            let r = self.file_reply(user, &name, Some(&note));
            return self.commit(cx, op, user, AfterSave::Reply(r));
        }
        let Some(s) = u.session.as_ref() else {
            return Reply::error(409, NOT_INITIALISED).into();
        };
        let at = unix_now();
        if !s.is_up() {
            self.link_retry_now(cx, user);
            return self.publish_locally(cx, op, user, &name, at);
        }
        let mut p = PublishOp {
            user: user.to_owned(),
            name: name.clone(),
            force,
            stage: PublishStage::Request,
            found: Vec::new(),
            published_at: at,
        };
        if force {
            p.stage = PublishStage::Ack;
            self.send_publish(cx, op, &p);
        } else {
            // Same name first (always fresh); other names from the network index after.
            let req = Request::Request {
                fname: name.as_str().into(),
                sha256: None,
            };
            self.registry_send(cx, user, &req, Wait::Op(op));
        }
        Outcome::Later(OpKind::Publish(p))
    }

    /// Publishes whose wait for a hash is over — hashed, failed, changing,
    /// removed, logged out, or waiting past [`HASH_WAIT_MAX`] — start over
    /// (from the work results and the cron).
    pub(crate) fn resume_hash_waits(&mut self, cx: &mut Ctx) {
        if self.hash_waits.is_empty() {
            return;
        }
        let now = cx.now();
        let users = &self.users;
        let (over, waiting): (Vec<HashWait>, Vec<HashWait>) = std::mem::take(&mut self.hash_waits)
            .into_iter()
            .partition(|w| {
                let hashing = users
                    .get(&w.user)
                    .and_then(|u| u.catalog.get(&w.name))
                    .is_some_and(|f| {
                        f.status != Status::Missing
                            && !(f.changing && f.sha256.is_none())
                            && (f.hashing || (f.sha256.is_none() && f.hash_error.is_none()))
                    });
                !hashing || now.saturating_duration_since(w.since) >= HASH_WAIT_MAX
            });
        self.hash_waits = waiting;
        for w in over {
            let Some(kind) = self.take_op(w.op) else {
                continue;
            };
            let out = match kind {
                OpKind::Publish(p) if p.stage == PublishStage::Hashing => {
                    if now.saturating_duration_since(w.since) >= HASH_WAIT_MAX {
                        still_hashing(&p.name).into()
                    } else if !self.users.contains_key(&p.user) {
                        Reply::error(409, "The user logged out while this publish waited").into()
                    } else if self
                        .users
                        .get(&p.user)
                        .is_none_or(|u| u.catalog.get(&p.name).is_none())
                    {
                        let msg = format!(
                            "'{}' stopped being tracked while this publish waited for its hash",
                            p.name
                        );
                        Reply::error(404, &msg).into()
                    } else {
                        self.publish_start(cx, w.op, &p.user, &p.name, p.force)
                    }
                }
                other => Outcome::Later(other),
            };
            self.settle(cx, w.op, out);
        }
    }

    fn send_publish(&mut self, cx: &mut Ctx, op: OpId, p: &PublishOp) -> bool {
        let Some(f) = self.users.get(&p.user).and_then(|u| u.catalog.get(&p.name)) else {
            return false;
        };
        let msg = Request::Publish {
            hostname: p.user.as_str().into(),
            fname: f.name.clone().into(),
            meta: registry::FileMeta {
                published_at: Some(p.published_at),
                is_published: true,
                ..f.registry_meta()
            },
        };
        self.registry_send(cx, &p.user, &msg, Wait::Op(op))
    }

    /// The registry is unreachable: the state is kept here and re-sent by the next REGISTER.
    fn publish_locally(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        name: &str,
        at: f64,
    ) -> Outcome {
        self.mark_published(cx, op, user, name, at, false)
    }

    /// Sets the file published (`announced`: the registry acknowledged it)
    /// and answers once that is on disk.
    fn mark_published(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        name: &str,
        at: f64,
        announced: bool,
    ) -> Outcome {
        let note = (!announced).then_some("The coordinator is unreachable right now; the file is published here and will be announced when the connection is back (duplicates were not checked)");
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        let Some(before) = u.catalog.publication(name) else {
            return Reply::error(409, &format!("'{name}' stopped being tracked meanwhile")).into();
        };
        u.catalog.set_published(name, Some(at));
        let Some(after) = u.catalog.publication(name) else {
            return Reply::error(409, &format!("'{name}' stopped being tracked meanwhile")).into();
        };
        if announced {
            self.net_sync_file(user, name);
        }
        let then = AfterSave::Published {
            name: name.to_owned(),
            before,
            after,
            announced,
            note,
        };
        self.commit(cx, op, user, then)
    }

    pub(crate) fn api_unpublish(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        b: &Fields,
    ) -> Outcome {
        let name = try_reply!(self.named_file(user, b));
        let Some(u) = self.users.get_mut(user) else {
            return Reply::error(404, "Unknown user").into();
        };
        if !u.catalog.get(&name).is_some_and(|f| f.is_published) {
            let r =
                Reply::ok(json!({"success": true, "note": format!("'{name}' was not published")}));
            return self.commit(cx, op, user, AfterSave::Reply(r));
        }
        // Peers stop getting it at once; the registry hears once it is on disk.
        let before = u.catalog.publication(&name);
        u.catalog.set_published(&name, None);
        let after = u.catalog.publication(&name);
        let (Some(before), Some(after)) = (before, after) else {
            return Reply::error(404, &format!("'{name}' is not tracked")).into();
        };
        self.net_sync_file(user, &name);
        let then = AfterSave::Unpublished {
            name,
            before,
            after,
        };
        self.commit(cx, op, user, then)
    }

    /// The user's registry link is up; if it waits to retry, it retries
    /// now (a user action should not wait out the backoff) and the caller
    /// answers 503 meanwhile.
    pub(crate) fn require_link(&mut self, cx: &mut Ctx, user: &str) -> Result<(), Reply> {
        if !self.session_up(user) {
            self.link_retry_now(cx, user);
        }
        let s = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .ok_or_else(|| Reply::error(409, NOT_INITIALISED))?;
        if !s.is_up() {
            let why = s.last_error.as_deref().unwrap_or("connecting");
            return Err(Reply::error(
                503,
                &format!("The coordinator is unreachable right now ({why}); try again in a moment"),
            ));
        }
        Ok(())
    }

    /// Ends the user's session here at once, then asks the coordinator to
    /// revoke `token` (answered once it did, or could not).
    pub(crate) fn api_logout(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        user: &str,
        token: Option<&str>,
    ) -> Outcome {
        let registry = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .map(|s| s.registry);
        self.end_session(cx, user, 409, "The user logged out");
        if let Some(registry) = registry {
            // UNREGISTER took the user's files off the network.
            let gone = OwnChange::Host {
                host: user.to_owned(),
                files: Vec::new(),
            };
            self.net.own_change(registry, gone);
        }
        self.fetches.cancel_user(cx, user);
        self.peer_server.close_user(cx, user);
        self.tokens.revoke_user(user);
        if let Some(credential) = self.drop_standing(cx, user) {
            self.revoke_in_background(cx, user, &credential);
        }
        self.drop_rescans(cx, user);
        if let Some(u) = self.users.remove(user) {
            self.retire_catalog(cx, user, u.catalog);
        }
        crate::log_info!("{user}: logged out");
        let Some(token) = token else {
            return Reply::ok(json!({"success": true})).into();
        };
        match self
            .forwards
            .post_as(cx, op, "/api/user/logout", b"{}", Some(token))
        {
            Ok(id) => {
                self.conns.insert(id, crate::node::Kind::Forward);
                Outcome::Later(OpKind::Logout {
                    user: user.to_owned(),
                })
            }
            Err(e) => {
                crate::log_warn!("{user}: the token could not be revoked: {e}");
                Reply::ok(json!({"success": true, "note": format!("Logged out here; the coordinator could not be told to revoke the token ({e})")})).into()
            }
        }
    }

    /// A registry answer for a waiting request.
    pub(crate) fn op_registry_reply(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        v: registry::Reply<'static>,
    ) {
        let Some(kind) = self.take_op(op) else {
            return;
        };
        let reason = v.reason().unwrap_or("no reason given").to_owned();
        let out = match kind {
            OpKind::Publish(p) => self.publish_step(cx, op, p, &v),
            OpKind::Unpublish { name, .. } => {
                if v == registry::Reply::Ack || reason.contains("not found") {
                    Reply::ok(json!({"success": true})).into()
                } else {
                    Reply::ok(json!({"success": true, "note": format!("Unpublished here; the coordinator answered: {reason} ('{name}')")})).into()
                }
            }
            OpKind::Fetch(f) => self.fetch_found(cx, op, f, &v),
            other => Outcome::Later(other),
        };
        self.settle(cx, op, out);
    }

    fn publish_step(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        mut p: PublishOp,
        v: &registry::Reply<'_>,
    ) -> Outcome {
        let reason = v.reason().unwrap_or("no reason given");
        match p.stage {
            PublishStage::Request => {
                p.found.extend(index::found_hosts(v, &p.name));
                match self.index_or_walk(cx, op, &p.user) {
                    Ok(Some(idx)) => self.publish_checked(cx, op, p, Some(&idx)),
                    Ok(None) => {
                        p.stage = PublishStage::List;
                        Outcome::Later(OpKind::Publish(p))
                    }
                    Err(_) => self.publish_locally(cx, op, &p.user, &p.name, p.published_at),
                }
            }
            // The index comes through `publish_checked`, not as a registry
            // answer; the hash through `resume_hash_waits`.
            PublishStage::List | PublishStage::Hashing => Outcome::Later(OpKind::Publish(p)),
            PublishStage::Ack => {
                if *v == registry::Reply::Ack {
                    self.mark_published(cx, op, &p.user, &p.name, p.published_at, true)
                } else {
                    let code = if reason.contains("invalid") { 400 } else { 502 };
                    Reply::error(
                        code,
                        &format!("The coordinator refused to publish '{}': {reason}", p.name),
                    )
                    .into()
                }
            }
        }
    }

    /// Duplicates known (by name, and from the index unless it could not be
    /// had): refuse without `force`, else send PUBLISH.
    pub(crate) fn publish_checked(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        mut p: PublishOp,
        idx: Option<&Index>,
    ) -> Outcome {
        let Some(f) = self.users.get(&p.user).and_then(|u| u.catalog.get(&p.name)) else {
            return Reply::error(
                409,
                &format!("'{}' stopped being tracked meanwhile", p.name),
            )
            .into();
        };
        let mine = Mine {
            hostname: &p.user,
            size: f.size,
            modified: f.modified,
            sha256: f.sha256.as_deref(),
        };
        let mut dups = Duplicates::default();
        dups.add_hosts(&mine, &p.found);
        if let Some(idx) = idx {
            dups.add_index(&mine, idx);
        }
        let dups = dups.found;
        if !dups.is_empty() && !p.force {
            let n = dups.len();
            return Reply::error_with(
                409,
                &format!(
                    "'{}' looks like {} already on the network ({}); publish with force: true to share it anyway",
                    p.name,
                    if n == 1 { "a file".to_string() } else { format!("{n} files") },
                    dups.iter()
                        .take(3)
                        .map(|d| format!("{} on {}", d["name"].as_str().unwrap_or("?"), d["hostname"].as_str().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                json!({"duplicates": dups}),
            )
            .into();
        }
        p.stage = PublishStage::Ack;
        if self.send_publish(cx, op, &p) {
            Outcome::Later(OpKind::Publish(p))
        } else {
            self.publish_locally(cx, op, &p.user, &p.name, p.published_at)
        }
    }

    /// The registry connection dropped while a request waited on it.
    pub(crate) fn op_link_lost(&mut self, cx: &mut Ctx, op: OpId) {
        let Some(kind) = self.take_op(op) else {
            return;
        };
        let out = match kind {
            OpKind::Publish(p) => self.publish_locally(cx, op, &p.user, &p.name, p.published_at),
            OpKind::Unpublish { .. } => Reply::ok(
                json!({"success": true, "note": "The connection to the coordinator was lost; the change is kept here and sent when it is back"}),
            ).into(),
            _ => Reply::error(
                503,
                "Lost the connection to the coordinator; try again in a moment",
            ).into(),
        };
        self.settle(cx, op, out);
    }

    pub(crate) fn session_up(&self, user: &str) -> bool {
        self.users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .is_some_and(|s| s.is_up())
    }

    /// Looks at one tracked file on disk now and acts on what changed.
    pub(crate) fn check_file(&mut self, cx: &mut Ctx, user: &str, name: &str) {
        let Some(path) = self
            .users
            .get(user)
            .and_then(|u| u.catalog.get(name))
            .map(|f| f.real_path())
        else {
            return;
        };
        // An open (O_PATH) and fstat beneath the share root, in the loop
        // turn: as cheap as the stat it replaces, and no symlink is followed.
        let seen = observe(&self.settings.sandbox, &path);
        let effects = match self.users.get_mut(user) {
            Some(u) => u.catalog.observe(name, seen),
            None => return,
        };
        self.apply_effects(cx, user, effects);
    }
}
