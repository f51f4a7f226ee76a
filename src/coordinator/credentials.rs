//! Node credentials (`docs/server-api.md`, "Node credentials"): a node asks
//! for one when a user logs in through it, keeps it in its data directory,
//! and registers the user's files with it after any restart — its own or
//! the coordinator's — without a login and past the session timeout. A
//! credential is a token with the role `registry`: the registry accepts it
//! for REGISTER as that user; every other endpoint refuses it, except
//! `/user/logout` (which revokes it) and asking for its own successor.
//! Admins list and revoke them.

use serde_json::{json, Value};

use super::api::{AccountJob, AccountResult};
use super::users::Credential;
use super::{Coordinator, OpId};
use crate::auth::jwt;
use crate::http_server::Reply;
use reactor::http::{self, Request};
use reactor::Ctx;

/// The role a credential's token carries.
pub const ROLE: &str = "registry";
/// How long a credential lasts; a node asks for a successor well before.
pub const LIFETIME_S: u64 = 90 * 24 * 3600;
const MAX_LABEL_CHARS: usize = 64;

fn err(status: u16, msg: impl AsRef<str>) -> Reply {
    Reply::error(status, msg.as_ref())
}

fn credential_json(c: &Credential, revoked: bool) -> Value {
    json!({
        "id": c.id,
        "username": c.username,
        "label": c.label,
        "created_at": c.created_at,
        "expires_at": c.exp,
        "revoked": revoked,
    })
}

impl Coordinator {
    /// `POST /api/user/credential` with a user's token (or a credential,
    /// for its successor): mints one and answers once it is on record.
    pub(super) fn start_credential(
        &mut self,
        op: OpId,
        req: &Request,
    ) -> Result<Option<Reply>, Reply> {
        let c = self.claims(req)?;
        if c.role != "user" && c.role != ROLE {
            return Err(err(
                403,
                "Only a user's token can ask for a node credential",
            ));
        }
        if !self.users.exists(&c.sub) {
            return Err(err(401, "Invalid token: the user no longer exists"));
        }
        let label = if req.body.is_empty() {
            String::new()
        } else {
            let m = super::api::body_json(req)?;
            match m.get("label") {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(_) => return Err(err(400, "Field 'label' must be a string")),
            }
        };
        let label: String = label
            .chars()
            .filter(|ch| !ch.is_control())
            .take(MAX_LABEL_CHARS)
            .collect();
        let now = crate::util::unix_secs();
        let exp = now.saturating_add(LIFETIME_S);
        let (token, id) = jwt::sign_identified(
            &self.jwt_secret,
            &jwt::Claims {
                sub: c.sub.clone(),
                role: ROLE.into(),
                iat: now,
                exp,
            },
        );
        let cred = Credential {
            id,
            username: c.sub,
            label,
            created_at: now,
            exp,
        };
        if !self.submit(op, AccountJob::Credential { cred, token }) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    pub(super) fn credential_issued(&self, result: Result<(Credential, String), String>) -> Reply {
        match result {
            Ok((c, token)) => {
                crate::log_info!("issued node credential {} for '{}'", c.id, c.username);
                Reply::ok(json!({
                    "success": true,
                    "credential": token,
                    "id": c.id,
                    "expires_at": c.exp,
                }))
            }
            Err(m) => {
                crate::log_error!("could not record a node credential: {m}");
                err(500, "Could not record the credential; try again")
            }
        }
    }

    /// `GET /api/admin/credentials`.
    pub(super) fn admin_credentials(&self) -> Reply {
        let list: Vec<Value> = self
            .users
            .credentials()
            .iter()
            .map(|c| credential_json(c, self.revoked.contains_key(&c.id)))
            .collect();
        Reply::ok(json!({"success": true, "credentials": list}))
    }

    /// `DELETE /api/admin/credentials/{id}`: refused from now on (the
    /// registry checks at REGISTER; the host's live connection is closed so
    /// the node must register again), answered once on record.
    pub(super) fn start_revoke_credential(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        id: &str,
    ) -> Result<Option<Reply>, Reply> {
        let id = http::percent_decode(id).ok_or_else(|| err(400, "Malformed credential id"))?;
        let Some(c) = self.users.credentials().into_iter().find(|c| c.id == id) else {
            return Err(err(404, format!("No such credential: {id}")));
        };
        self.revoked.insert(c.id.clone(), c.exp);
        // The host registered as that user goes offline now; its node may
        // register again only with a login's token.
        let live = self
            .registry
            .key(&c.username)
            .and_then(|k| self.registry.get(k))
            .and_then(|h| h.conn);
        if let Some(conn) = live {
            cx.close(conn);
        }
        if !self.submit(
            op,
            AccountJob::Revoke {
                id: c.id,
                exp: c.exp,
            },
        ) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }
}

/// Runs on a worker: makes the credential durable before it is handed out.
pub fn record(users: &super::users::UserStore, cred: Credential, token: String) -> AccountResult {
    AccountResult::Credential(users.persist_credential(&cred).map(|()| (cred, token)))
}
