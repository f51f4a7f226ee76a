//! The client API's front (`docs/client-api.md`): the Host check against DNS
//! rebinding, bearer-token authentication, routing, static pages, and the
//! requests that wait (on the registry, the coordinator or a worker) by op
//! id. Parsing, pipelining and writing replies are the shared driver's
//! (`crate::http_server`); what each endpoint does lives in `routes`.

use std::net::{IpAddr, SocketAddr};

use reactor::http::{self, Request};
use reactor::Ctx;
use serde_json::{json, Value};

/// The crate's one reply type, re-exported for the endpoint modules.
pub use crate::http_server::Reply;
use crate::http_server::{self, Call, Handled, HttpServer, HttpService};
use crate::node::client::tokens::{self, Check};
use crate::node::ops::{OpKind, Outcome};
use crate::node::{Kind, Node, OpId};
use crate::web::{self, Site};

const API_PREFIX: &str = "/api/client/";

/// DNS-rebinding protection: the Host header must name this listener's
/// address, `localhost`, or an allowed name. An IP literal can never be a
/// rebound name, so any local one is fine when the listener binds all addresses.
pub fn host_allowed(host: Option<&str>, listen: SocketAddr, allowed: &[String]) -> bool {
    let Some(host) = host.map(|h| h.trim().to_ascii_lowercase()) else {
        return false;
    };
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, tail)) if tail.is_empty() || is_port_suffix(tail) => inner.to_owned(),
            _ => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() => n.to_owned(),
            Some(_) => return false,
            None => host.clone(),
        }
    };
    let name = name.strip_suffix('.').unwrap_or(&name);
    if name.is_empty() {
        return false;
    }
    if name == "localhost" || allowed.iter().any(|a| a == name) {
        return true;
    }
    match name.parse::<IpAddr>() {
        Ok(ip) => ip == listen.ip() || ip.is_loopback() || listen.ip().is_unspecified(),
        Err(_) => false,
    }
}

fn is_port_suffix(tail: &str) -> bool {
    tail.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn bearer(req: &Request) -> Option<&str> {
    let v = req.header("authorization")?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// Requests that only look (the UI polls them) do not make the user "active".
fn is_passive(method: &str, rest: &str) -> bool {
    method == "GET"
        && (rest == "status" || rest == "fetches" || rest.starts_with("fetch-progress/"))
}

impl HttpService for Node {
    fn http(&mut self) -> &mut HttpServer {
        &mut self.http
    }

    fn handle(&mut self, cx: &mut Ctx, call: Call, req: Request) -> Handled {
        match self.route(cx, call.op, req) {
            Outcome::Now(reply) => Handled::Now(reply),
            Outcome::Later(kind) => {
                // Decided already while starting (a connect that failed at
                // once): the driver writes that answer, nothing waits.
                if !self.http.answered_early(call.op) {
                    self.ops.insert(call.op, kind);
                }
                Handled::Pending
            }
        }
    }
}

impl Node {
    /// Answers a waiting request; the driver goes on with the connection's
    /// next ones (or drops the answer if the connection closed).
    pub(crate) fn finish(&mut self, cx: &mut Ctx, op: OpId, reply: Reply) {
        self.ops.remove(&op);
        http_server::answer(self, cx, op, reply);
    }

    /// The kind of a waiting op, taken out to be continued (put back with `resume`).
    pub(crate) fn take_op(&mut self, op: OpId) -> Option<OpKind> {
        let o = self.ops.get_mut(&op)?;
        Some(std::mem::replace(o, OpKind::Init))
    }

    pub(crate) fn resume_op(&mut self, op: OpId, kind: OpKind) {
        if let Some(o) = self.ops.get_mut(&op) {
            *o = kind;
        }
    }

    /// Carries a decided outcome to a waiting op.
    pub(crate) fn settle(&mut self, cx: &mut Ctx, op: OpId, out: Outcome) {
        match out {
            Outcome::Now(r) => self.finish(cx, op, r),
            Outcome::Later(k) => self.resume_op(op, k),
        }
    }

    fn route(&mut self, cx: &mut Ctx, op: OpId, req: Request) -> Outcome {
        if !host_allowed(
            req.header("host"),
            self.api_addr,
            &self.settings.allowed_hosts,
        ) {
            let shown: String = req
                .header("host")
                .unwrap_or("(none)")
                .chars()
                .take(100)
                .collect();
            crate::log_warn!("client api: refused a request with Host {shown:?}");
            return Reply::error(
                403,
                &format!(
                    "Host '{shown}' is not allowed: use http://{} or localhost (or start the node with --allowed-hosts)",
                    self.api_addr
                ),
            )
            .into();
        }
        if let Err((status, msg)) = crate::node::client::guard::check_origin(&req)
            .and_then(|()| crate::node::client::guard::check_content_type(&req))
        {
            crate::log_warn!("client api: refused {} {}: {msg}", req.method, req.path);
            return Reply::error(status, &msg).into();
        }
        if !req.path.starts_with("/api/") {
            return self.static_page(&req).into();
        }
        let Some(rest) = req.path.strip_prefix(API_PREFIX).map(str::to_owned) else {
            return Reply::error(404, &format!("No such API endpoint: {}", req.path)).into();
        };
        match rest.as_str() {
            "register" | "login" => {
                if req.method != "POST" {
                    return Reply::method_not_allowed("POST").into();
                }
                return self.forward_auth(cx, op, rest == "login", &req.body);
            }
            _ => {}
        }
        let Some(token) = bearer(&req).map(str::to_owned) else {
            return Reply::error(
                401,
                "Missing Authorization: Bearer <token> header; log in first",
            )
            .into();
        };
        let now = cx.now();
        match self.tokens.check(&token, crate::util::unix_secs(), now) {
            Check::User(user) => self.route_user(cx, op, &req, &rest, &user),
            Check::Expired => Reply::error(401, "The token has expired; log in again").into(),
            Check::Revoked => Reply::error(401, "This token was logged out; log in again").into(),
            Check::Refused => Reply::error(401, "Invalid token; log in again").into(),
            Check::Unknown => {
                let body = serde_json::to_vec(&json!({ "token": token })).unwrap_or_default();
                match self.forwards.post(cx, op, "/api/user/verify", &body) {
                    Ok(id) => {
                        self.conns.insert(id, Kind::Forward);
                        Outcome::Later(OpKind::Verify {
                            req: Box::new(req),
                            token,
                        })
                    }
                    Err(e) => Reply::error(502, &format!("Cannot check the token: {e}")).into(),
                }
            }
        }
    }

    fn static_page(&self, req: &Request) -> Reply {
        if req.method != "GET" && req.method != "HEAD" {
            return Reply::method_not_allowed("GET, HEAD");
        }
        match web::lookup(Site::Client, &req.path) {
            Some(a) => Reply::asset(&a),
            None => Reply::error(404, &format!("No such page: {}", req.path)),
        }
    }

    /// Dispatches an authenticated request of `user`.
    pub(crate) fn route_user(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        req: &Request,
        rest: &str,
        user: &str,
    ) -> Outcome {
        match self.ensure_user(cx, user, None) {
            Ok(true) => {}
            Ok(false) => {
                // First sight of this user: their catalog is read on the store thread.
                self.wait_for_load(op, user);
                return Outcome::Later(OpKind::Load {
                    req: Box::new(req.clone()),
                    rest: rest.to_owned(),
                    user: user.to_owned(),
                });
            }
            Err(r) => return r.into(),
        }
        if !is_passive(&req.method, rest) {
            if let Some(u) = self.users.get_mut(user) {
                u.last_use = cx.now();
            }
        }
        let m = req.method.as_str();
        let (segment, arg) = match rest.split_once('/') {
            Some((s, a)) => (s, Some(a)),
            None => (rest, None),
        };
        let post = |allowed: bool| {
            if allowed {
                None
            } else {
                Some(Reply::method_not_allowed("POST"))
            }
        };
        let get = |allowed: bool| {
            if allowed {
                None
            } else {
                Some(Reply::method_not_allowed("GET"))
            }
        };
        let body = || parse_body(&req.body);
        match (segment, arg) {
            ("init", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_init(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("status", None) => get(m == "GET" || m == "HEAD")
                .unwrap_or_else(|| self.api_status(cx, user))
                .into(),
            ("local-files", None) => get(m == "GET" || m == "HEAD")
                .unwrap_or_else(|| self.api_files(user, false))
                .into(),
            ("published-files", None) => get(m == "GET" || m == "HEAD")
                .unwrap_or_else(|| self.api_files(user, true))
                .into(),
            ("network-files", None) => match get(m == "GET" || m == "HEAD") {
                Some(r) => r.into(),
                None => self.api_network(cx, op, user, req),
            },
            ("browse", None) => match get(m == "GET" || m == "HEAD") {
                Some(r) => r.into(),
                None => self.api_browse(op, user, req),
            },
            ("add-file", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_add_file(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("add-folder", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_add_folder(op, user, &b),
                Err(r) => r.into(),
            },
            ("folders", None) => get(m == "GET" || m == "HEAD")
                .unwrap_or_else(|| self.api_folders(user))
                .into(),
            ("remove-folder", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_remove_folder(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("rescan", None) => match post(m == "POST") {
                Some(r) => r.into(),
                None => self.api_rescan(cx, op, user),
            },
            ("remove-file", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_remove_file(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("publish", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_publish(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("unpublish", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_unpublish(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("fetch", None) => match post(m == "POST").map(Err).unwrap_or_else(body) {
                Ok(b) => self.api_fetch(cx, op, user, &b),
                Err(r) => r.into(),
            },
            ("fetch", Some(id)) if id.ends_with("/pause") || id.ends_with("/resume") => {
                let (id, what) = id.rsplit_once('/').unwrap_or((id, ""));
                match post(m == "POST") {
                    Some(r) => r.into(),
                    None => self
                        .api_pause_fetch(cx, user, &decode(id), what == "pause")
                        .into(),
                }
            }
            ("fetch", Some(id)) if !id.is_empty() && !id.contains('/') => {
                if m != "DELETE" {
                    return Reply::method_not_allowed("DELETE").into();
                }
                self.api_cancel_fetch(cx, op, user, &decode(id))
            }
            ("fetch-progress", Some(id)) if !id.is_empty() && !id.contains('/') => {
                get(m == "GET" || m == "HEAD")
                    .unwrap_or_else(|| self.api_fetch_progress(user, &decode(id)))
                    .into()
            }
            ("fetches", Some("clear")) => match post(m == "POST") {
                Some(r) => r.into(),
                None => self.api_clear_fetches(op, user),
            },
            ("fetches", None) => get(m == "GET" || m == "HEAD")
                .unwrap_or_else(|| self.api_fetches(user))
                .into(),
            ("logout", None) => match post(m == "POST") {
                Some(r) => r.into(),
                None => self.api_logout(cx, op, user, bearer(req)),
            },
            _ => Reply::error(404, &format!("No such API endpoint: {API_PREFIX}{rest}")).into(),
        }
    }

    /// /register and /login go to the server API as they are.
    fn forward_auth(&mut self, cx: &mut Ctx, op: OpId, login: bool, body: &[u8]) -> Outcome {
        let path = if login {
            "/api/user/login"
        } else {
            "/api/user/register"
        };
        match self.forwards.post(cx, op, path, body) {
            Ok(id) => {
                self.conns.insert(id, Kind::Forward);
                Outcome::Later(OpKind::Forward { login })
            }
            Err(e) => Reply::error(502, &e).into(),
        }
    }

    /// The server API answered (or could not be reached: `Err`).
    pub(crate) fn forward_done(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        answer: crate::node::client::forward::ServerAnswer,
    ) {
        let Some(kind) = self.take_op(op) else {
            return;
        };
        let resp = match answer {
            Ok(r) => r,
            Err(e) => {
                let msg = match kind {
                    OpKind::Standing { user, .. } => {
                        self.standing_asked.remove(&user);
                        crate::log_warn!("{user}: cannot get a node credential: {e}");
                        return;
                    }
                    OpKind::Background(what) => {
                        crate::log_warn!("{what}: {e}");
                        return;
                    }
                    OpKind::Verify { .. } => format!("Cannot check the token: {e}"),
                    OpKind::Logout { user } => {
                        crate::log_warn!("{user}: the token could not be revoked: {e}");
                        let v = json!({"success": true, "note": format!("Logged out here; the coordinator could not be told to revoke the token ({e})")});
                        self.finish(cx, op, Reply::ok(v));
                        return;
                    }
                    _ => e,
                };
                self.finish(cx, op, Reply::error(502, &msg));
                return;
            }
        };
        let body: Option<Value> = serde_json::from_slice(&resp.body).ok();
        match kind {
            OpKind::Forward { login } => {
                let Some(body) = body else {
                    let msg = format!(
                        "The coordinator's server API answered {} without JSON",
                        resp.status
                    );
                    self.finish(cx, op, Reply::error(502, &msg));
                    return;
                };
                if (200..300).contains(&resp.status) {
                    self.learn_from_login(cx, &body);
                }
                let what = if login { "login" } else { "register" };
                let who = body
                    .pointer("/user/username")
                    .and_then(Value::as_str)
                    .unwrap_or("-");
                crate::log_info!("client api: {what} forwarded for {who}: {}", resp.status);
                self.finish(cx, op, Reply::json(resp.status, &body));
            }
            OpKind::Verify { req, token } => {
                let user = body
                    .as_ref()
                    .filter(|_| resp.status == 200)
                    .filter(|b| b.get("success").and_then(Value::as_bool) == Some(true))
                    // Admin tokens are for the coordinator's admin API, not for sharing files.
                    .filter(|b| b.pointer("/user/role").and_then(Value::as_str) != Some("admin"))
                    .and_then(|b| b.pointer("/user/username"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let claims = tokens::unverified_claims(&token);
                match (user, claims) {
                    (Some(user), Some((sub, exp))) if sub == user => {
                        self.tokens.learn(&token, &user, exp);
                        self.token_renewed(cx, &user);
                        let display = body
                            .as_ref()
                            .and_then(|b| b.pointer("/user/display_name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        if let Err(r) = self.ensure_user(cx, &user, display.as_deref()) {
                            self.finish(cx, op, r);
                            return;
                        }
                        let rest = req.path.strip_prefix(API_PREFIX).unwrap_or("").to_owned();
                        let out = self.route_user(cx, op, &req, &rest, &user);
                        self.settle(cx, op, out);
                    }
                    _ if resp.status == 401 || resp.status == 200 => {
                        self.tokens.refused(&token, cx.now());
                        self.finish(
                            cx,
                            op,
                            Reply::error(401, "Invalid or expired token; log in again"),
                        );
                    }
                    _ => {
                        let msg = format!(
                            "Cannot check the token: the coordinator's server API answered {}",
                            resp.status
                        );
                        self.finish(cx, op, Reply::error(502, &msg));
                    }
                }
            }
            OpKind::Logout { user } => {
                // The local logout is done either way; an older coordinator
                // without the endpoint (404) cannot revoke, which is logged.
                let note = match resp.status {
                    200..=299 => {
                        crate::log_info!("{user}: token revoked at the coordinator");
                        None
                    }
                    404 => {
                        crate::log_warn!("{user}: the coordinator cannot revoke tokens (no /api/user/logout); the token stays valid until it expires");
                        Some("The coordinator cannot revoke the token; it stays valid until it expires")
                    }
                    s => {
                        crate::log_warn!(
                            "{user}: the coordinator answered {s} to the token revocation"
                        );
                        Some("The coordinator did not confirm the token's revocation")
                    }
                };
                let mut v = json!({"success": true});
                if let Some(n) = note {
                    v["note"] = json!(n);
                }
                self.finish(cx, op, Reply::ok(v));
            }
            OpKind::Standing { user, registry } => {
                self.standing_answer(cx, &user, registry, resp.status, body.as_ref());
            }
            OpKind::Background(what) => {
                crate::log_info!("{what}: the coordinator answered {}", resp.status);
            }
            other => {
                // Not a forwarding op: put it back untouched.
                self.resume_op(op, other);
            }
        }
    }

    /// A successful login/register answer: remember the token and the user.
    fn learn_from_login(&mut self, cx: &mut Ctx, body: &Value) {
        let token = body.get("token").and_then(Value::as_str);
        let user = body.pointer("/user/username").and_then(Value::as_str);
        let display = body.pointer("/user/display_name").and_then(Value::as_str);
        if let (Some(token), Some(user)) = (token, user) {
            if let Some((sub, exp)) = tokens::unverified_claims(token) {
                if sub == user {
                    self.tokens.learn(token, user, exp);
                    if let Err(r) = self.ensure_user(cx, user, display) {
                        crate::log_error!("{user}: cannot load the user's files ({})", r.status);
                    }
                    self.token_renewed(cx, user);
                }
            }
        }
    }
}

/// A JSON object body; an empty body is an empty object.
pub fn parse_body(body: &[u8]) -> Result<serde_json::Map<String, Value>, Reply> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Reply::error(400, "The request body must be a JSON object")),
        Err(e) => Err(Reply::error(
            400,
            &format!("The request body is not valid JSON: {e}"),
        )),
    }
}

fn decode(s: &str) -> String {
    http::percent_decode(s).unwrap_or_else(|| s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_check_blocks_rebinding_names() {
        let lo: SocketAddr = "127.0.0.1:5501".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:5501".parse().unwrap();
        let allowed = vec!["share.lan".to_string()];
        let ok = |h: &str, l| host_allowed(Some(h), l, &allowed);
        assert!(ok("127.0.0.1:5501", lo));
        assert!(ok("127.0.0.1", lo));
        assert!(ok("localhost", lo));
        assert!(ok("LOCALHOST:5501", lo));
        assert!(ok("localhost.:80", lo));
        assert!(ok("[::1]:5501", lo));
        assert!(ok("share.lan:5501", lo));
        assert!(ok("192.168.1.9:5501", any));
        assert!(!ok("192.168.1.9:5501", lo));
        assert!(!ok("evil.example", lo));
        assert!(!ok("evil.example:5501", lo));
        assert!(!ok("localhost.evil.example", lo));
        assert!(!ok("127.0.0.1.nip.io", lo));
        assert!(!ok("", lo));
        assert!(!ok("localhost:abc", lo));
        assert!(!ok("[::1", lo));
        assert!(!host_allowed(None, lo, &allowed));
    }

    #[test]
    fn reads_bearer_tokens() {
        let req = |v: &str| Request {
            method: "GET".into(),
            path: "/".into(),
            query: String::new(),
            headers: vec![("Authorization".into(), v.into())],
            body: Vec::new(),
            keep_alive: true,
        };
        assert_eq!(bearer(&req("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&req("bearer  abc ")), Some("abc"));
        assert_eq!(bearer(&req("Basic abc")), None);
        assert_eq!(bearer(&req("Bearer ")), None);
    }

    #[test]
    fn bodies_must_be_objects() {
        assert!(parse_body(b"").unwrap().is_empty());
        assert!(parse_body(b" {\"a\":1}").is_ok());
        assert_eq!(parse_body(b"[1]").err().map(|r| r.status), Some(400));
        assert_eq!(parse_body(b"{").err().map(|r| r.status), Some(400));
    }
}
