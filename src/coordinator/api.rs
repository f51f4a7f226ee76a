//! The server API over the reactor's HTTP layer: accounts, tokens (and their
//! revocation at logout), the per-address limit on register and login,
//! admin views of the registry, the live peer probe, stats, and the admin UI.
//! Password work and fsyncs run on the worker pool and answer by op id;
//! HTTP itself (caps, pipelining in order, reply heads) is `crate::http_server`.
//! What each endpoint answers: `docs/server-api.md`.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::proto::peer::{self, Decoded};
use reactor::http::{self, Request};
use reactor::{CloseReason, ConnId, ConnOptions, Ctx, TimerId};
use serde_json::{json, Value};

use super::registry::Host;
use super::users::{LoginError, RegisterError, User, UserStore};
use super::{Coordinator, Kind, Timer};
use crate::auth::{jwt, password};
use crate::http_server::{self, Call, Handled, HttpServer, HttpService, OpId, Reply};
use crate::proto::registry::{Action, FileMeta};
use crate::web::{self, Site};

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Slow account work for the worker pool.
pub enum AccountJob {
    Register {
        username: String,
        password: String,
        display_name: String,
    },
    Login {
        username: String,
        password: String,
    },
    AdminLogin {
        username: String,
        password: String,
    },
    /// Make a logout's revocation durable.
    Revoke {
        id: String,
        exp: u64,
    },
    /// Record a node credential before handing out its token.
    Credential {
        cred: super::users::Credential,
        token: String,
    },
}

/// What the account work found.
pub enum AccountResult {
    Registered(Result<User, RegisterError>),
    LoggedIn(Result<User, LoginError>),
    Admin(bool),
    Revoked(Result<(), String>),
    Credential(Result<(super::users::Credential, String), String>),
}

/// Account work done, for the request that waits as `op`.
pub struct AccountDone {
    pub op: OpId,
    pub result: AccountResult,
}

/// Runs on a worker thread: the slow password work.
pub fn run_job(
    op: u64,
    job: AccountJob,
    users: &UserStore,
    admin_hash: &str,
    admin_name: &str,
    iterations: u32,
) -> AccountDone {
    let result = match job {
        AccountJob::Register {
            username,
            password,
            display_name,
        } => AccountResult::Registered(users.register(
            &username,
            &password,
            &display_name,
            iterations,
        )),
        AccountJob::Login { username, password } => {
            AccountResult::LoggedIn(users.login(&username, &password))
        }
        AccountJob::AdminLogin { username, password } => {
            // Always hash, so a wrong username costs the same time.
            let pw_ok = password::verify_password(&password, admin_hash).unwrap_or(false);
            let name_ok = password::constant_time_eq(username.as_bytes(), admin_name.as_bytes());
            AccountResult::Admin(pw_ok && name_ok)
        }
        AccountJob::Revoke { id, exp } => {
            AccountResult::Revoked(users.persist_revocation(&id, exp))
        }
        AccountJob::Credential { cred, token } => super::credentials::record(users, cred, token),
    };
    AccountDone { op, result }
}

pub struct Probe {
    pub op: OpId,
    pub started: Instant,
    pub timer: TimerId,
    pub hostname: String,
}

fn err(status: u16, msg: impl AsRef<str>) -> Reply {
    Reply::error(status, msg.as_ref())
}

fn meta_json(m: &FileMeta) -> Value {
    let mut v = json!({"size": m.size, "modified": m.modified, "is_published": m.is_published});
    if let Some(p) = m.published_at {
        v["published_at"] = json!(p);
    }
    if let Some(s) = &m.sha256 {
        v["sha256"] = json!(s);
    }
    if let Some(r) = &m.root {
        v["root"] = json!(r);
    }
    v
}

fn files_json(h: &Host) -> Value {
    Value::Object(
        h.published()
            .map(|(n, m)| (n.to_string(), meta_json(m)))
            .collect(),
    )
}

fn client_json(h: &Host) -> Value {
    let files = files_json(h);
    let count = files.as_object().map(|o| o.len()).unwrap_or(0);
    json!({
        "hostname": &*h.name,
        "display_name": h.display_name,
        "ip": h.ip,
        "port": h.port,
        "files": files,
        "file_count": count,
        "status": if h.online { "online" } else { "offline" },
        "state": h.state.map(|s| format!("{s:?}").to_lowercase()),
        "last_seen": h.last_seen,
        "connected_at": h.connected_at,
    })
}

/// Parses a JSON object body into string fields.
pub(super) fn body_json(req: &Request) -> Result<serde_json::Map<String, Value>, Reply> {
    match serde_json::from_slice::<Value>(&req.body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(err(400, "Request body must be a JSON object")),
        Err(e) => Err(err(400, format!("Request body is not valid JSON: {e}"))),
    }
}

fn str_field(
    m: &serde_json::Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<String, Reply> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(err(400, format!("Missing field '{name}'"))),
        Some(_) => Err(err(400, format!("Field '{name}' must be a string"))),
    }
}

impl HttpService for Coordinator {
    fn http(&mut self) -> &mut HttpServer {
        &mut self.http
    }

    fn handle(&mut self, cx: &mut Ctx, call: Call, req: Request) -> Handled {
        self.route(cx, call, req)
    }
}

impl Coordinator {
    fn route(&mut self, cx: &mut Ctx, call: Call, req: Request) -> Handled {
        let path = req.path.clone();
        if !path.starts_with("/api/") {
            return self.serve_static(&req).into();
        }
        let method = req.method.as_str();
        let limited = method == "POST"
            && matches!(
                path.as_str(),
                "/api/user/register" | "/api/user/login" | "/api/admin/login"
            );
        if limited {
            if let Err(wait) = self
                .rate
                .take(super::guard::addr_key(call.peer), Instant::now())
            {
                return err(
                    429,
                    format!("Too many attempts from your address; try again in {wait} s"),
                )
                .with_header("Retry-After", wait.to_string())
                .into();
            }
        }
        let op = call.op;
        let result: Result<Option<Reply>, Reply> = match (method, path.as_str()) {
            ("POST", "/api/user/register") => self.start_register(op, &req),
            ("POST", "/api/user/logout") => self.start_logout(op, &req),
            ("POST", "/api/user/login") => self.start_login(op, &req, false),
            ("POST", "/api/admin/login") => self.start_login(op, &req, true),
            ("POST", "/api/user/verify") => self.verify(&req).map(Some),
            ("POST", "/api/user/credential") => self.start_credential(op, &req),
            ("GET", "/api/admin/credentials") => {
                self.admin(&req).map(|_| Some(self.admin_credentials()))
            }
            ("DELETE", p) if p.starts_with("/api/admin/credentials/") => {
                self.admin(&req).and_then(|_| {
                    self.start_revoke_credential(cx, op, &p["/api/admin/credentials/".len()..])
                })
            }
            ("GET", "/api/stats") => Ok(Some(self.stats_json(cx))),
            ("GET", "/api/admin/registry") => {
                self.admin(&req).map(|_| Some(self.admin_registry(&req)))
            }
            ("GET", p) if p.starts_with("/api/admin/discover/") => self
                .admin(&req)
                .and_then(|_| self.admin_discover(&p["/api/admin/discover/".len()..]))
                .map(Some),
            ("GET", p) if p.starts_with("/api/admin/ping/") => self
                .admin(&req)
                .and_then(|_| self.start_probe(cx, op, &p["/api/admin/ping/".len()..])),
            (_, p) if known_path(p) => {
                Err(err(405, format!("Method {method} is not allowed on {p}")))
            }
            _ => Err(err(404, format!("No such endpoint: {path}"))),
        };
        match result {
            Ok(Some(a)) | Err(a) => Handled::Now(a),
            Ok(None) => Handled::Pending,
        }
    }

    fn serve_static(&self, req: &Request) -> Reply {
        if req.method != "GET" && req.method != "HEAD" {
            return err(405, "Only GET is allowed for pages");
        }
        match web::lookup(Site::Admin, &req.path) {
            Some(asset) => Reply::asset(&asset),
            None => err(404, format!("No such page: {}", req.path)),
        }
    }

    /// A token's claims and id, refused when invalid or revoked.
    fn check_token(&self, token: &str) -> Result<(jwt::Claims, String), Reply> {
        let (c, tid) = jwt::verify_with_id(&self.jwt_secret, token, crate::util::unix_secs())
            .map_err(|e| err(401, format!("Invalid token: {e}")))?;
        if self.revoked.contains_key(&tid) {
            return Err(err(401, "Invalid token: it was revoked at logout"));
        }
        Ok((c, tid))
    }

    fn bearer(req: &Request) -> Result<&str, Reply> {
        let Some(auth) = req.header("authorization") else {
            return Err(err(401, "Missing Authorization: Bearer token"));
        };
        auth.strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| err(401, "Authorization must be 'Bearer <token>'"))
    }

    pub(super) fn claims(&self, req: &Request) -> Result<jwt::Claims, Reply> {
        self.check_token(Self::bearer(req)?).map(|(c, _)| c)
    }

    /// Revokes the Bearer token until it expires: at once in memory (the
    /// registry and verify refuse it from now on), answered once the log
    /// holds it.
    fn start_logout(&mut self, op: OpId, req: &Request) -> Result<Option<Reply>, Reply> {
        let (c, tid) = self.check_token(Self::bearer(req)?)?;
        self.revoked.insert(tid.clone(), c.exp);
        if !self.submit(
            op,
            AccountJob::Revoke {
                id: tid,
                exp: c.exp,
            },
        ) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn admin(&self, req: &Request) -> Result<(), Reply> {
        let c = self.claims(req)?;
        if c.role != "admin" {
            return Err(err(403, "This needs an admin token"));
        }
        Ok(())
    }

    fn token_for(&self, sub: &str, role: &str) -> String {
        let now = crate::util::unix_secs();
        jwt::sign(
            &self.jwt_secret,
            &jwt::Claims {
                sub: sub.to_string(),
                role: role.to_string(),
                iat: now,
                // Config bounds it to 30 days; saturate all the same.
                exp: now.saturating_add(self.cfg.session_timeout_s),
            },
        )
    }

    fn start_register(&mut self, op: OpId, req: &Request) -> Result<Option<Reply>, Reply> {
        let m = body_json(req)?;
        let username = str_field(&m, "username", true)?;
        let password = str_field(&m, "password", true)?;
        let display_name = str_field(&m, "display_name", false)?;
        // Cheap checks before any slow hashing.
        super::users::validate_username(&username).map_err(|e| err(400, e))?;
        super::users::validate_password(&password).map_err(|e| err(400, e))?;
        if self.users.get(&username).is_some() {
            return Err(err(409, format!("Username '{username}' is already taken")));
        }
        let job = AccountJob::Register {
            username,
            password,
            display_name,
        };
        if !self.submit(op, job) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn start_login(
        &mut self,
        op: OpId,
        req: &Request,
        admin: bool,
    ) -> Result<Option<Reply>, Reply> {
        let m = body_json(req)?;
        let username = str_field(&m, "username", true)?;
        let password = str_field(&m, "password", true)?;
        let job = if admin {
            AccountJob::AdminLogin { username, password }
        } else {
            AccountJob::Login { username, password }
        };
        if !self.submit(op, job) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn verify(&self, req: &Request) -> Result<Reply, Reply> {
        let m = body_json(req)?;
        let token = str_field(&m, "token", true)?;
        let (c, _) = self.check_token(&token)?;
        if c.role == super::credentials::ROLE {
            return Err(err(
                401,
                "Invalid token: a node credential only registers a node; log in for a session",
            ));
        }
        if c.role == "admin" {
            return Ok(Reply::ok(
                json!({"success": true, "user": {"username": c.sub, "role": "admin"}, "exp": c.exp}),
            ));
        }
        match self.users.get(&c.sub) {
            Some(u) => {
                let mut user = u.public_json();
                user["role"] = json!("user");
                Ok(Reply::ok(
                    json!({"success": true, "user": user, "exp": c.exp}),
                ))
            }
            None => Err(err(401, "Invalid token: the user no longer exists")),
        }
    }

    pub(super) fn job_done(&mut self, cx: &mut Ctx, done: AccountDone) {
        let answer = match done.result {
            AccountResult::Registered(Ok(u)) => {
                crate::log_info!("registered user '{}'", u.username);
                let token = self.token_for(&u.username, "user");
                Reply::ok(json!({"success": true, "token": token, "user": u.public_json()}))
            }
            AccountResult::Registered(Err(RegisterError::Taken)) => {
                err(409, "That username is already taken")
            }
            AccountResult::Registered(Err(RegisterError::Invalid(m))) => err(400, m),
            AccountResult::Registered(Err(RegisterError::Io(m))) => {
                crate::log_error!("could not store a new user: {m}");
                err(500, "Could not save the account; try again")
            }
            AccountResult::LoggedIn(Ok(u)) => {
                let token = self.token_for(&u.username, "user");
                Reply::ok(json!({"success": true, "token": token, "user": u.public_json()}))
            }
            AccountResult::LoggedIn(Err(LoginError::Invalid)) => {
                err(401, "Invalid username or password")
            }
            AccountResult::LoggedIn(Err(LoginError::Io(m))) => {
                crate::log_error!("could not record a login: {m}");
                err(500, "Could not complete the login; try again")
            }
            AccountResult::Admin(true) => {
                let token = self.token_for(&self.cfg.admin_username, "admin");
                Reply::ok(
                    json!({"success": true, "token": token, "user": {"username": self.cfg.admin_username, "role": "admin"}}),
                )
            }
            AccountResult::Admin(false) => err(401, "Invalid username or password"),
            AccountResult::Revoked(Ok(())) => Reply::ok(json!({"success": true})),
            AccountResult::Revoked(Err(m)) => {
                crate::log_error!("could not record a logout: {m}");
                err(500, "Could not record the logout; try again")
            }
            AccountResult::Credential(r) => self.credential_issued(r),
        };
        // A request whose connection closed meanwhile is dropped by the driver.
        http_server::answer(self, cx, done.op, answer);
    }

    fn stats_json(&mut self, cx: &mut Ctx) -> Reply {
        let now = Instant::now();
        let mut ops = serde_json::Map::new();
        let mut total = 0.0;
        for a in Action::ALL {
            let s = self.stats.summary(a, now);
            total += s.ops_per_s;
            ops.insert(
                a.name().to_string(),
                json!({"count_60s": s.count, "ops_per_s": s.ops_per_s, "p50_ms": s.p50_ms, "p99_ms": s.p99_ms}),
            );
        }
        let online = self.registry.online_count();
        Reply::ok(json!({
            "success": true,
            "uptime_s": self.started.elapsed().as_secs_f64(),
            "users": self.users.count(),
            "clients_total": self.registry.len(),
            "clients_online": online,
            "clients_offline": self.registry.len() - online,
            "files_total": self.registry.published_count(),
            "connections_open": cx.conn_count(),
            "ops_per_s": total,
            "ops": ops,
        }))
    }

    fn admin_registry(&mut self, req: &Request) -> Reply {
        let q = req.query_param("q");
        let offset = req
            .query_param("offset")
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        let limit = req
            .query_param("limit")
            .and_then(|s| s.parse::<u64>().ok())
            .map(|l| l.clamp(1, 1000))
            .unwrap_or(u64::MAX);
        let (keys, total, next) = self.registry.page(offset, limit, q.as_deref());
        let clients: Vec<Value> = keys
            .into_iter()
            .filter_map(|k| self.registry.get(k).map(client_json))
            .collect();
        let online = self.registry.online_count();
        Reply::ok(json!({
            "success": true,
            "stats": {
                "total_clients": self.registry.len(),
                "total_files": self.registry.published_count(),
                "active_clients": online,
            },
            "clients": clients,
            "total": total,
            "next_offset": next,
        }))
    }

    fn host_by_path(&self, raw: &str) -> Result<&Host, Reply> {
        let name =
            http::percent_decode(raw).ok_or_else(|| err(400, "Malformed host name in the path"))?;
        self.registry
            .key(&name)
            .and_then(|k| self.registry.get(k))
            .ok_or_else(|| err(404, format!("Unknown host '{name}'")))
    }

    fn admin_discover(&self, raw: &str) -> Result<Reply, Reply> {
        let h = self.host_by_path(raw)?;
        Ok(Reply::ok(
            json!({"success": true, "hostname": &*h.name, "addr": [h.ip, h.port], "status": if h.online {"online"} else {"offline"}, "files": files_json(h)}),
        ))
    }

    fn start_probe(&mut self, cx: &mut Ctx, op: OpId, raw: &str) -> Result<Option<Reply>, Reply> {
        let h = self.host_by_path(raw)?;
        let hostname = h.name.to_string();
        let addr =
            h.ip.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, h.port))
                .map_err(|_| err(200, "unused"));
        let Ok(addr) = addr else {
            return Ok(Some(Reply::ok(
                json!({"success": true, "hostname": hostname, "status": "offline", "rtt_ms": null, "error": "the host's address is not an IP address"}),
            )));
        };
        let opts = ConnOptions {
            max_input: 4096,
            partial_timeout: None,
            ..ConnOptions::default()
        };
        let probe_conn = match cx.connect(addr, self.svc, opts) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Some(Reply::ok(
                    json!({"success": true, "hostname": hostname, "status": "offline", "rtt_ms": null, "error": e.to_string()}),
                )))
            }
        };
        let timer = cx.timer(self.svc, PROBE_TIMEOUT, Timer::Probe(op).to_key());
        self.probes.insert(op, probe_conn);
        self.conns.insert(
            probe_conn,
            Kind::Probe(Probe {
                op,
                started: Instant::now(),
                timer,
                hostname,
            }),
        );
        Ok(None)
    }

    pub(super) fn probe_input(&mut self, cx: &mut Ctx, id: ConnId) {
        let reply = match peer::decode_reply(cx.input(id)) {
            // A PONG is 5 bytes: a peer still sending more is not answering.
            Decoded::Partial if cx.input(id).len() <= 64 => return,
            Decoded::Frame(peer::Answer::Pong, _) => true,
            _ => false,
        };
        if let Some(Kind::Probe(p)) = self.conns.remove(id) {
            cx.close(id);
            let result = if reply {
                Ok(())
            } else {
                Err(CloseReason::Error("the peer did not answer PONG".into()))
            };
            self.probe_done(cx, p, result);
        }
    }

    pub(super) fn probe_timeout(&mut self, cx: &mut Ctx, op: OpId) {
        let Some(conn) = self.probes.get(&op).copied() else {
            return;
        };
        if let Some(Kind::Probe(p)) = self.conns.remove(conn) {
            cx.close(conn);
            self.probe_done(cx, p, Err(CloseReason::Timeout));
        }
    }

    pub(super) fn probe_done(&mut self, cx: &mut Ctx, p: Probe, result: Result<(), CloseReason>) {
        cx.cancel_timer(p.timer);
        self.probes.remove(&p.op);
        let answer = match result {
            Ok(()) => {
                let rtt = p.started.elapsed().as_secs_f64() * 1000.0;
                Reply::ok(
                    json!({"success": true, "hostname": p.hostname, "status": "online", "rtt_ms": rtt}),
                )
            }
            Err(why) => {
                let reason = match why {
                    CloseReason::Timeout => "no answer within 2 s".to_string(),
                    CloseReason::ConnectFailed(e) => format!("could not connect: {e}"),
                    CloseReason::PeerClosed => "the peer closed the connection".to_string(),
                    CloseReason::Error(e) => e,
                    other => format!("{other:?}"),
                };
                Reply::ok(
                    json!({"success": true, "hostname": p.hostname, "status": "offline", "rtt_ms": null, "error": reason}),
                )
            }
        };
        http_server::answer(self, cx, p.op, answer);
    }
}

fn known_path(p: &str) -> bool {
    matches!(
        p,
        "/api/user/register"
            | "/api/user/login"
            | "/api/user/verify"
            | "/api/user/logout"
            | "/api/admin/login"
            | "/api/admin/registry"
            | "/api/admin/credentials"
            | "/api/user/credential"
            | "/api/stats"
    ) || p.starts_with("/api/admin/discover/")
        || p.starts_with("/api/admin/credentials/")
        || p.starts_with("/api/admin/ping/")
}
