//! The server API over the reactor's HTTP layer: accounts, tokens (and their
//! revocation at logout), the per-address limit on register and login,
//! admin views of the registry, the live peer probe, stats, and the admin UI.
//! Password work and fsyncs run on the worker pool; answers keep request order.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::proto::peer::{self, Decoded};
use reactor::http::{self, Limits, Parse, Request};
use reactor::{CloseReason, ConnId, ConnOptions, Ctx, TimerId};
use serde_json::{json, Value};

use super::registry::Host;
use super::users::{LoginError, RegisterError, User, UserStore};
use super::{unix_now, Coordinator, Kind, T_PROBE_BASE};
use crate::auth::{jwt, password};
use crate::proto::registry::{Action, FileMeta};
use crate::web::{self, Site};

/// Headers every answer carries: the UI is same-origin and script-only.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
];

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct HttpConn {
    /// An answer is being prepared off the loop; later requests wait.
    pub waiting: Option<u64>,
    pub keep_alive: bool,
    /// The source address, as rate limits count it.
    pub peer: Option<IpAddr>,
}

pub enum Job {
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
}

pub enum JobResult {
    Registered(Result<User, RegisterError>),
    LoggedIn(Result<User, LoginError>),
    Admin(bool),
    Revoked(Result<(), String>),
}

pub struct JobDone {
    pub op: u64,
    pub result: JobResult,
}

/// Runs on a worker thread: the slow password work.
pub fn run_job(
    op: u64,
    job: Job,
    users: &UserStore,
    admin_hash: &str,
    admin_name: &str,
    iterations: u32,
) -> JobDone {
    let result = match job {
        Job::Register {
            username,
            password,
            display_name,
        } => JobResult::Registered(users.register(&username, &password, &display_name, iterations)),
        Job::Login { username, password } => JobResult::LoggedIn(users.login(&username, &password)),
        Job::AdminLogin { username, password } => {
            // Always hash, so a wrong username costs the same time.
            let pw_ok = password::verify_password(&password, admin_hash).unwrap_or(false);
            let name_ok = password::constant_time_eq(username.as_bytes(), admin_name.as_bytes());
            JobResult::Admin(pw_ok && name_ok)
        }
        Job::Revoke { id, exp } => JobResult::Revoked(users.persist_revocation(&id, exp)),
    };
    JobDone { op, result }
}

pub struct Probe {
    pub op: u64,
    pub http: ConnId,
    pub started: Instant,
    pub timer: TimerId,
    pub hostname: String,
}

/// An answer: status and JSON body.
type Answer = (u16, Value);

fn err(status: u16, msg: impl Into<String>) -> Answer {
    (status, json!({"success": false, "error": msg.into()}))
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
fn body_json(req: &Request) -> Result<serde_json::Map<String, Value>, Answer> {
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
) -> Result<String, Answer> {
    match m.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(err(400, format!("Missing field '{name}'"))),
        Some(_) => Err(err(400, format!("Field '{name}' must be a string"))),
    }
}

impl Coordinator {
    pub(super) fn http_input(&mut self, cx: &mut Ctx, id: ConnId) {
        let limits = Limits::default();
        loop {
            match self.conns.get(id) {
                Some(Kind::Http(h)) if h.waiting.is_none() => {}
                _ => return,
            }
            match http::parse_request(cx.input(id), &limits) {
                Parse::Partial => return,
                Parse::Reject { status, message } => {
                    self.respond(cx, id, err(status, message), false);
                    cx.close_after_flush(id);
                    return;
                }
                Parse::Done(req, used) => {
                    cx.consume(id, used);
                    if let Some(Kind::Http(h)) = self.conns.get_mut(id) {
                        h.keep_alive = req.keep_alive;
                    }
                    self.route(cx, id, req);
                }
            }
        }
    }

    /// Sends a JSON answer and, without keep-alive, closes after it.
    fn respond(&mut self, cx: &mut Ctx, id: ConnId, answer: Answer, keep_alive: bool) {
        self.respond_with(cx, id, answer, keep_alive, &[]);
    }

    fn respond_with(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        (status, body): Answer,
        keep_alive: bool,
        headers: &[(&str, &str)],
    ) {
        let body = body.to_string().into_bytes();
        let mut head = Vec::with_capacity(512);
        let date = self.date().to_string();
        let mut extra: Vec<(&str, &str)> = SECURITY_HEADERS.to_vec();
        extra.push(("Cache-Control", "no-store"));
        extra.extend_from_slice(headers);
        http::write_head(
            &mut head,
            status,
            "application/json",
            body.len(),
            keep_alive,
            &date,
            &extra,
        );
        head.extend_from_slice(&body);
        cx.send_vec(id, head);
        if !keep_alive {
            cx.close_after_flush(id);
        }
    }

    fn keep_alive(&self, id: ConnId) -> bool {
        matches!(self.conns.get(id), Some(Kind::Http(h)) if h.keep_alive)
    }

    fn answer(&mut self, cx: &mut Ctx, id: ConnId, a: Answer) {
        let ka = self.keep_alive(id);
        self.respond(cx, id, a, ka);
    }

    fn route(&mut self, cx: &mut Ctx, id: ConnId, req: Request) {
        let path = req.path.clone();
        if !path.starts_with("/api/") {
            return self.serve_static(cx, id, &req);
        }
        let method = req.method.as_str();
        let limited = method == "POST"
            && matches!(
                path.as_str(),
                "/api/user/register" | "/api/user/login" | "/api/admin/login"
            );
        if limited {
            if let Err(wait) = self.take_attempt(id) {
                let ka = self.keep_alive(id);
                let secs = wait.to_string();
                let a = err(
                    429,
                    format!("Too many attempts from your address; try again in {wait} s"),
                );
                return self.respond_with(cx, id, a, ka, &[("Retry-After", &secs)]);
            }
        }
        let result: Result<Option<Answer>, Answer> = match (method, path.as_str()) {
            ("POST", "/api/user/register") => self.start_register(cx, id, &req),
            ("POST", "/api/user/logout") => self.start_logout(cx, id, &req),
            ("POST", "/api/user/login") => self.start_login(cx, id, &req, false),
            ("POST", "/api/admin/login") => self.start_login(cx, id, &req, true),
            ("POST", "/api/user/verify") => self.verify(&req).map(Some),
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
                .and_then(|_| self.start_probe(cx, id, &p["/api/admin/ping/".len()..])),
            (_, p) if known_path(p) => {
                Err(err(405, format!("Method {method} is not allowed on {p}")))
            }
            _ => Err(err(404, format!("No such endpoint: {path}"))),
        };
        match result {
            Ok(Some(a)) | Err(a) => self.answer(cx, id, a),
            Ok(None) => {}
        }
    }

    fn serve_static(&mut self, cx: &mut Ctx, id: ConnId, req: &Request) {
        if req.method != "GET" && req.method != "HEAD" {
            return self.answer(cx, id, err(405, "Only GET is allowed for pages"));
        }
        let Some(asset) = web::lookup(Site::Admin, &req.path) else {
            return self.answer(cx, id, err(404, format!("No such page: {}", req.path)));
        };
        let ka = self.keep_alive(id);
        let date = self.date().to_string();
        let mut extra: Vec<(&str, &str)> = SECURITY_HEADERS.to_vec();
        extra.push(("Cache-Control", asset.cache_control));
        let mut head = Vec::with_capacity(512);
        http::write_head(
            &mut head,
            200,
            asset.content_type,
            asset.body.len(),
            ka,
            &date,
            &extra,
        );
        cx.send_vec(id, head);
        if req.method == "GET" {
            cx.send_static(id, asset.body);
        }
        if !ka {
            cx.close_after_flush(id);
        }
    }

    /// One register or login attempt from this connection's address:
    /// Err(seconds to wait) past the limit.
    fn take_attempt(&mut self, id: ConnId) -> Result<(), u64> {
        let peer = match self.conns.get(id) {
            Some(Kind::Http(h)) => h.peer,
            _ => None,
        };
        match peer {
            Some(ip) => self.rate.take(ip, Instant::now()),
            None => Ok(()),
        }
    }

    /// A token's claims and id, refused when invalid or revoked.
    fn check_token(&self, token: &str) -> Result<(jwt::Claims, String), Answer> {
        let (c, tid) = jwt::verify_with_id(&self.jwt_secret, token, unix_now() as u64)
            .map_err(|e| err(401, format!("Invalid token: {e}")))?;
        if self.revoked.contains_key(&tid) {
            return Err(err(401, "Invalid token: it was revoked at logout"));
        }
        Ok((c, tid))
    }

    fn bearer(req: &Request) -> Result<&str, Answer> {
        let Some(auth) = req.header("authorization") else {
            return Err(err(401, "Missing Authorization: Bearer token"));
        };
        auth.strip_prefix("Bearer ")
            .map(str::trim)
            .ok_or_else(|| err(401, "Authorization must be 'Bearer <token>'"))
    }

    fn claims(&self, req: &Request) -> Result<jwt::Claims, Answer> {
        self.check_token(Self::bearer(req)?).map(|(c, _)| c)
    }

    /// Revokes the Bearer token until it expires: at once in memory (the
    /// registry and verify refuse it from now on), answered once the log
    /// holds it.
    fn start_logout(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        req: &Request,
    ) -> Result<Option<Answer>, Answer> {
        let (c, tid) = self.check_token(Self::bearer(req)?)?;
        self.revoked.insert(tid.clone(), c.exp);
        if !self.submit(
            cx,
            id,
            Job::Revoke {
                id: tid,
                exp: c.exp,
            },
        ) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn admin(&self, req: &Request) -> Result<(), Answer> {
        let c = self.claims(req)?;
        if c.role != "admin" {
            return Err(err(403, "This needs an admin token"));
        }
        Ok(())
    }

    fn token_for(&self, sub: &str, role: &str) -> String {
        let now = unix_now() as u64;
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

    fn start_register(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        req: &Request,
    ) -> Result<Option<Answer>, Answer> {
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
        let job = Job::Register {
            username,
            password,
            display_name,
        };
        if !self.submit(cx, id, job) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn start_login(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        req: &Request,
        admin: bool,
    ) -> Result<Option<Answer>, Answer> {
        let m = body_json(req)?;
        let username = str_field(&m, "username", true)?;
        let password = str_field(&m, "password", true)?;
        let job = if admin {
            Job::AdminLogin { username, password }
        } else {
            Job::Login { username, password }
        };
        if !self.submit(cx, id, job) {
            return Err(err(503, "The server is busy; try again in a moment"));
        }
        Ok(None)
    }

    fn verify(&self, req: &Request) -> Result<Answer, Answer> {
        let m = body_json(req)?;
        let token = str_field(&m, "token", true)?;
        let (c, _) = self.check_token(&token)?;
        if c.role == "admin" {
            return Ok((
                200,
                json!({"success": true, "user": {"username": c.sub, "role": "admin"}, "exp": c.exp}),
            ));
        }
        match self.users.get(&c.sub) {
            Some(u) => {
                let mut user = u.public_json();
                user["role"] = json!("user");
                Ok((200, json!({"success": true, "user": user, "exp": c.exp})))
            }
            None => Err(err(401, "Invalid token: the user no longer exists")),
        }
    }

    pub(super) fn job_done(&mut self, cx: &mut Ctx, done: JobDone) {
        let Some(id) = self.pending.remove(&done.op) else {
            return;
        };
        let answer = match done.result {
            JobResult::Registered(Ok(u)) => {
                crate::log_info!("registered user '{}'", u.username);
                let token = self.token_for(&u.username, "user");
                (
                    200,
                    json!({"success": true, "token": token, "user": u.public_json()}),
                )
            }
            JobResult::Registered(Err(RegisterError::Taken)) => {
                err(409, "That username is already taken")
            }
            JobResult::Registered(Err(RegisterError::Invalid(m))) => err(400, m),
            JobResult::Registered(Err(RegisterError::Io(m))) => {
                crate::log_error!("could not store a new user: {m}");
                err(500, "Could not save the account; try again")
            }
            JobResult::LoggedIn(Ok(u)) => {
                let token = self.token_for(&u.username, "user");
                (
                    200,
                    json!({"success": true, "token": token, "user": u.public_json()}),
                )
            }
            JobResult::LoggedIn(Err(LoginError::Invalid)) => {
                err(401, "Invalid username or password")
            }
            JobResult::LoggedIn(Err(LoginError::Io(m))) => {
                crate::log_error!("could not record a login: {m}");
                err(500, "Could not complete the login; try again")
            }
            JobResult::Admin(true) => {
                let token = self.token_for(&self.cfg.admin_username, "admin");
                (
                    200,
                    json!({"success": true, "token": token, "user": {"username": self.cfg.admin_username, "role": "admin"}}),
                )
            }
            JobResult::Admin(false) => err(401, "Invalid username or password"),
            JobResult::Revoked(Ok(())) => (200, json!({"success": true})),
            JobResult::Revoked(Err(m)) => {
                crate::log_error!("could not record a logout: {m}");
                err(500, "Could not record the logout; try again")
            }
        };
        self.finish_async(cx, id, answer);
    }

    /// Answers a request that waited, then goes on with pipelined ones.
    fn finish_async(&mut self, cx: &mut Ctx, id: ConnId, answer: Answer) {
        if let Some(Kind::Http(h)) = self.conns.get_mut(id) {
            h.waiting = None;
        } else {
            return;
        }
        self.answer(cx, id, answer);
        self.http_input(cx, id);
    }

    fn stats_json(&mut self, cx: &mut Ctx) -> Answer {
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
        (
            200,
            json!({
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
            }),
        )
    }

    fn admin_registry(&mut self, req: &Request) -> Answer {
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
        (
            200,
            json!({
                "success": true,
                "stats": {
                    "total_clients": self.registry.len(),
                    "total_files": self.registry.published_count(),
                    "active_clients": online,
                },
                "clients": clients,
                "total": total,
                "next_offset": next,
            }),
        )
    }

    fn host_by_path(&self, raw: &str) -> Result<&Host, Answer> {
        let name =
            http::percent_decode(raw).ok_or_else(|| err(400, "Malformed host name in the path"))?;
        self.registry
            .key(&name)
            .and_then(|k| self.registry.get(k))
            .ok_or_else(|| err(404, format!("Unknown host '{name}'")))
    }

    fn admin_discover(&self, raw: &str) -> Result<Answer, Answer> {
        let h = self.host_by_path(raw)?;
        Ok((
            200,
            json!({"success": true, "hostname": &*h.name, "addr": [h.ip, h.port], "status": if h.online {"online"} else {"offline"}, "files": files_json(h)}),
        ))
    }

    fn start_probe(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        raw: &str,
    ) -> Result<Option<Answer>, Answer> {
        let h = self.host_by_path(raw)?;
        let hostname = h.name.to_string();
        let addr =
            h.ip.parse::<IpAddr>()
                .map(|ip| SocketAddr::new(ip, h.port))
                .map_err(|_| err(200, "unused"));
        let Ok(addr) = addr else {
            return Ok(Some((
                200,
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
                return Ok(Some((
                    200,
                    json!({"success": true, "hostname": hostname, "status": "offline", "rtt_ms": null, "error": e.to_string()}),
                )))
            }
        };
        let op = self.op_id();
        let timer = cx.timer(self.svc, PROBE_TIMEOUT, T_PROBE_BASE + op);
        self.pending.insert(op, id);
        self.probes.insert(op, probe_conn);
        if let Some(Kind::Http(hc)) = self.conns.get_mut(id) {
            hc.waiting = Some(op);
        }
        self.conns.insert(
            probe_conn,
            Kind::Probe(Probe {
                op,
                http: id,
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
            Decoded::Frame(peer::Reply::Pong, _) => true,
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

    pub(super) fn probe_timeout(&mut self, cx: &mut Ctx, op: u64) {
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
        let Some(http_id) = self.pending.remove(&p.op) else {
            return;
        };
        let answer = match result {
            Ok(()) => {
                let rtt = p.started.elapsed().as_secs_f64() * 1000.0;
                (
                    200,
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
                (
                    200,
                    json!({"success": true, "hostname": p.hostname, "status": "offline", "rtt_ms": null, "error": reason}),
                )
            }
        };
        let _ = p.http;
        self.finish_async(cx, http_id, answer);
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
            | "/api/stats"
    ) || p.starts_with("/api/admin/discover/")
        || p.starts_with("/api/admin/ping/")
}
