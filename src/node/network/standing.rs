//! Standing registrations (`docs/client-api.md`, "Sessions that survive
//! restarts"): when a user starts a session on this node, the node asks the
//! coordinator for a node credential (a long-lived, registry-only token,
//! revocable by the user's logout or an admin) and keeps it with the
//! registry's address in `<data>/users/<user>/standing.json`, mode 0600.
//! After any restart — the node's or the coordinator's — and past the
//! session timeout, the node registers the user's files with it, no login
//! needed. Logout deletes the file and revokes the credential.
//!
//! Reading happens once at start-up (allowed to block); every write and
//! delete runs on the store thread.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use reactor::Ctx;

use crate::node::client::tokens;
use crate::node::ops::OpKind;
use crate::node::{Kind, Node};

const FILE_NAME: &str = "standing.json";
/// Ask for a successor when less than this is left of a credential's life.
const RENEW_BEFORE_S: u64 = 30 * 24 * 3600;
/// Background requests (no HTTP client waits) take op ids from here up, far
/// from the HTTP driver's.
const BACKGROUND_OPS: u64 = 1 << 62;

/// One user's standing registration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Standing {
    /// The credential's token: the registry accepts it for REGISTER.
    pub credential: String,
    pub registry: SocketAddr,
    /// Unix seconds.
    pub expires_at: u64,
}

pub fn file(data_dir: &Path, user: &str) -> PathBuf {
    data_dir.join("users").join(user).join(FILE_NAME)
}

/// Every standing registration on disk (start-up only: it blocks). A file
/// that cannot be read is reported and skipped: the user logs in again.
pub fn load_all(data_dir: &Path) -> Vec<(String, Standing)> {
    let Ok(dir) = fs::read_dir(data_dir.join("users")) else {
        return Vec::new();
    };
    let now = crate::util::unix_secs();
    let mut out = Vec::new();
    for entry in dir.flatten() {
        let Some(user) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if !crate::node::valid_username(&user) {
            continue;
        }
        let path = file(data_dir, &user);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                crate::log_warn!("{user}: cannot read {}: {e}", path.display());
                continue;
            }
        };
        match serde_json::from_slice::<Standing>(&bytes) {
            Ok(s) if s.expires_at > now => out.push((user, s)),
            Ok(_) => crate::log_info!("{user}: the node credential expired; log in again"),
            Err(e) => crate::log_warn!("{user}: ignoring {}: {e}", path.display()),
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Writes (or with `None` removes) a user's standing file. Store thread only.
pub fn write(data_dir: &Path, user: &str, standing: Option<&Standing>) -> Result<(), String> {
    let path = file(data_dir, user);
    match standing {
        Some(s) => {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)
                    .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            }
            let bytes = serde_json::to_vec_pretty(s).map_err(|e| e.to_string())?;
            crate::store::write_atomic_mode(&path, &bytes, 0o600)
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        }
        None => match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", path.display())),
        },
    }
}

impl Node {
    /// Start-up: every user with a standing registration is loaded, and
    /// registers as soon as their catalog is in memory.
    pub(crate) fn restore_standing(&mut self, cx: &mut Ctx) {
        for (user, s) in load_all(&self.settings.data_dir) {
            crate::log_info!(
                "{user}: registering again with {} (node credential)",
                s.registry
            );
            self.standing.insert(user.clone(), s);
            match self.ensure_user(cx, &user, None) {
                Ok(true) => self.resume_standing(cx, &user),
                Ok(false) => {}
                Err(r) => crate::log_error!("{user}: cannot load the user's files ({})", r.status),
            }
        }
    }

    /// A user's catalog is in memory: with a standing registration and no
    /// session yet, the session starts (no client request waits for it).
    pub(crate) fn resume_standing(&mut self, cx: &mut Ctx, user: &str) {
        let Some(registry) = self.standing.get(user).map(|s| s.registry) else {
            return;
        };
        let has_session = self.users.get(user).is_some_and(|u| u.session.is_some());
        if has_session || !self.users.contains_key(user) {
            return;
        }
        match self.start_session(cx, user, registry) {
            Ok(()) => {
                // Not a first registration a client waits on: a coordinator
                // that is not up yet is retried, never given up on.
                if let Some(s) = self.users.get_mut(user).and_then(|u| u.session.as_mut()) {
                    s.ever_up = true;
                }
                self.link_connect(cx, user)
            }
            Err(r) => crate::log_error!("{user}: cannot start the session again ({})", r.status),
        }
    }

    /// The credential to register `user` with when no login token is valid.
    pub(crate) fn standing_credential(&self, user: &str, now_unix: u64) -> Option<String> {
        self.standing
            .get(user)
            .filter(|s| s.expires_at > now_unix)
            .map(|s| s.credential.clone())
    }

    /// A session started with `token` (a login's, or a credential): ask for a
    /// credential unless a fresh enough one is kept for that registry.
    pub(crate) fn want_standing(&mut self, cx: &mut Ctx, user: &str, token: &str) {
        let Some(registry) = self
            .users
            .get(user)
            .and_then(|u| u.session.as_ref())
            .map(|s| s.registry)
        else {
            return;
        };
        let now = crate::util::unix_secs();
        let fresh = self
            .standing
            .get(user)
            .is_some_and(|s| s.registry == registry && s.expires_at > now + RENEW_BEFORE_S);
        if fresh || self.standing_asked.contains(user) {
            return;
        }
        let label = json!({"label": format!("node {}", self.api_addr)}).to_string();
        let kind = OpKind::Standing {
            user: user.to_owned(),
            registry,
        };
        match self.post_in_background(cx, "/api/user/credential", label.as_bytes(), token, kind) {
            Ok(()) => {
                self.standing_asked.insert(user.to_owned());
            }
            Err(e) => crate::log_warn!("{user}: cannot ask for a node credential: {e}"),
        }
    }

    /// The coordinator answered a credential request.
    pub(crate) fn standing_answer(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        registry: SocketAddr,
        status: u16,
        body: Option<&Value>,
    ) {
        self.standing_asked.remove(user);
        let token = body
            .filter(|_| (200..300).contains(&status))
            .and_then(|b| b.get("credential"))
            .and_then(Value::as_str);
        let Some(token) = token else {
            // An older coordinator (404) has no credentials: sessions then
            // last as long as the login's token, as before.
            crate::log_warn!("{user}: no node credential (the coordinator answered {status}); the session lasts as long as the login");
            return;
        };
        let Some((_, exp)) = tokens::unverified_claims(token).filter(|(s, _)| s == user) else {
            crate::log_warn!("{user}: the coordinator's credential is not for this user; ignored");
            return;
        };
        if !self.users.contains_key(user) {
            // Logged out meanwhile: the credential is not kept.
            return;
        }
        let s = Standing {
            credential: token.to_owned(),
            registry,
            expires_at: exp,
        };
        self.standing.insert(user.to_owned(), s.clone());
        self.save_standing(cx, user, Some(s));
        crate::log_info!("{user}: node credential kept; the session survives restarts");
    }

    /// Logout: the standing registration ends here and its credential is
    /// returned for revocation (the caller tells the coordinator).
    pub(crate) fn drop_standing(&mut self, cx: &mut Ctx, user: &str) -> Option<String> {
        self.standing_asked.remove(user);
        let s = self.standing.remove(user)?;
        self.save_standing(cx, user, None);
        Some(s.credential)
    }

    /// Tells the coordinator to revoke a credential given up at logout.
    pub(crate) fn revoke_in_background(&mut self, cx: &mut Ctx, user: &str, credential: &str) {
        let kind = OpKind::Background("logout: revoking the node credential");
        if let Err(e) = self.post_in_background(cx, "/api/user/logout", b"{}", credential, kind) {
            crate::log_warn!("{user}: the node credential could not be revoked: {e}");
        }
    }

    /// A call to the server API no client request waits for; its answer
    /// comes back to `forward_done` as `kind`.
    fn post_in_background(
        &mut self,
        cx: &mut Ctx,
        path: &str,
        body: &[u8],
        token: &str,
        kind: OpKind,
    ) -> Result<(), String> {
        self.next_background_op += 1;
        let op = BACKGROUND_OPS + self.next_background_op;
        let id = self.forwards.post_as(cx, op, path, body, Some(token))?;
        self.conns.insert(id, Kind::Forward);
        self.ops.insert(op, kind);
        Ok(())
    }

    /// The registry refused the credential (revoked by an admin, or the
    /// account is gone): forget it, the user must log in again.
    pub(crate) fn standing_refused(&mut self, cx: &mut Ctx, user: &str) {
        if self.standing.remove(user).is_some() {
            crate::log_warn!(
                "{user}: the registry refused the node credential (revoked?); log in again"
            );
            self.save_standing(cx, user, None);
        }
    }

    fn save_standing(&mut self, _cx: &mut Ctx, user: &str, s: Option<Standing>) {
        let dir = self.settings.data_dir.clone();
        let who = user.to_owned();
        let job = move || crate::node::catalog::persist::Stored::Noted {
            what: format!("{who}: standing registration"),
            result: write(&dir, &who, s.as_ref()),
        };
        if self.store.submit(job).is_err() {
            crate::log_error!(
                "{user}: the store thread is full; the standing registration was not written"
            );
        }
    }
}
