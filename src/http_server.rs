//! The one HTTP server driver both APIs run on (the coordinator's server API
//! and the node's client API): per-connection state, parsing with the caps
//! of `reactor::http`, keep-alive, pipelining with answers in request order,
//! HEAD, `Connection: close`, the security headers and a `Date` header taken
//! from the loop's tick. It owns no routes: each request goes to the
//! service's [`HttpService::handle`], which answers at once or later by op id
//! (see `docs/server-api.md` and `docs/client-api.md` for what they answer).
//!
//! A request that waits (on a worker, the registry, the coordinator) stops
//! the parsing of that connection's later requests, which stay in the read
//! buffer; answering it writes the reply and goes on with them. A malformed
//! head gets its status and a close, because nobody knows where the next
//! request would start.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use reactor::http::{self, Limits, Parse, Request};
use reactor::{ConnId, ConnMap, Ctx};
use serde_json::{json, Value};

use crate::web::Asset;

/// A request whose answer may come later. Unique per driver.
pub type OpId = u64;

/// Headers every answer carries: the UIs are same-origin and script-only,
/// so no framing by other pages (clickjacking), no content sniffing, nothing
/// loaded from elsewhere.
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "Content-Security-Policy",
        "default-src 'self'; frame-ancestors 'none'",
    ),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
];

/// The caps both APIs apply: 16 KiB of head (431), 1 MiB of body (413).
pub const LIMITS: Limits = Limits {
    max_head: 16 * 1024,
    max_body: 1024 * 1024,
    max_headers: 64,
};

/// What a connection's read buffer must hold for the largest request.
pub const MAX_INPUT: usize = LIMITS.max_head + LIMITS.max_body + 1024;

const JSON: &str = "application/json";

/// A reply's body: built for this answer, or a page compiled into the binary.
#[derive(Debug)]
pub enum ReplyBody {
    Owned(Vec<u8>),
    Static(&'static [u8]),
}

impl ReplyBody {
    fn len(&self) -> usize {
        match self {
            ReplyBody::Owned(b) => b.len(),
            ReplyBody::Static(b) => b.len(),
        }
    }
}

/// An HTTP answer before it is written: the one reply type of the crate.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub content_type: &'static str,
    pub cache_control: &'static str,
    /// Further headers (`Allow`, `Retry-After`).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, v: &Value) -> Reply {
        Reply {
            status,
            body: ReplyBody::Owned(serde_json::to_vec(v).unwrap_or_default()),
            content_type: JSON,
            cache_control: "no-store",
            headers: Vec::new(),
        }
    }

    pub fn ok(v: Value) -> Reply {
        Reply::json(200, &v)
    }

    /// `{"success": false, "error": msg}`, the shape of every error.
    pub fn error(status: u16, msg: &str) -> Reply {
        Reply::json(status, &json!({"success": false, "error": msg}))
    }

    /// An error with more fields (duplicates, choices).
    pub fn error_with(status: u16, msg: &str, extra: Value) -> Reply {
        let mut v = json!({"success": false, "error": msg});
        if let (Some(o), Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        Reply::json(status, &v)
    }

    /// 405 with the `Allow` header (`allow` as "GET, HEAD").
    pub fn method_not_allowed(allow: &'static str) -> Reply {
        Reply::error(
            405,
            &format!(
                "Method not allowed here; use {}",
                allow.replace(", ", " or ")
            ),
        )
        .with_header("Allow", allow.to_owned())
    }

    /// A page of the bundled UI.
    pub fn asset(a: &Asset) -> Reply {
        Reply {
            status: 200,
            body: ReplyBody::Static(a.body),
            content_type: a.content_type,
            cache_control: a.cache_control,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }
}

/// What the service decided about a request.
pub enum Handled {
    Now(Reply),
    /// Answered later with [`answer`] and the call's op id; the connection's
    /// later requests wait until then.
    Pending,
}

impl From<Reply> for Handled {
    fn from(r: Reply) -> Handled {
        Handled::Now(r)
    }
}

/// Who sent a request, and the op id to answer it by if it waits.
#[derive(Clone, Copy, Debug)]
pub struct Call {
    pub conn: ConnId,
    pub op: OpId,
    /// The source address (rate limits count by it).
    pub peer: IpAddr,
}

/// A service with HTTP listeners: it owns an [`HttpServer`] and routes.
pub trait HttpService {
    fn http(&mut self) -> &mut HttpServer;
    /// One parsed request; the reply is written by the driver.
    fn handle(&mut self, cx: &mut Ctx, call: Call, req: Request) -> Handled;
}

/// Per connection.
struct HttpConn {
    peer: IpAddr,
    /// A request is being worked on; later ones wait in the read buffer.
    waiting: Option<OpId>,
    /// `Connection: close` (or a refusal) was answered: nothing more is parsed.
    closing: bool,
}

/// A request that is not answered yet.
struct Waiting {
    conn: ConnId,
    keep_alive: bool,
    head: bool,
}

/// The driver's state, owned by the service.
pub struct HttpServer {
    conns: ConnMap<HttpConn>,
    waiting: HashMap<OpId, Waiting>,
    next_op: OpId,
    /// Answers given while their request was still being handled (a connect
    /// that failed at once): taken when `handle` returns `Pending`.
    early: HashMap<OpId, Reply>,
    /// `handle` calls under way (answers may start nested ones).
    depth: u32,
    clock: Clock,
}

/// The `Date` header from the loop's tick: wall time read once a minute and
/// advanced by the monotonic tick in between, formatted once a second.
struct Clock {
    anchor: Option<(Instant, u64)>,
    second: u64,
    text: String,
}

/// How long the wall clock is extrapolated from the tick before it is read again.
const REANCHOR: Duration = Duration::from_secs(60);

impl Clock {
    fn date(&mut self, tick: Instant) -> &str {
        let (at, unix) = match self.anchor {
            Some((at, unix)) if tick.saturating_duration_since(at) < REANCHOR => (at, unix),
            _ => {
                let a = (tick, crate::util::unix_now() as u64);
                self.anchor = Some(a);
                a
            }
        };
        let now = unix + tick.saturating_duration_since(at).as_secs();
        if self.text.is_empty() || now != self.second {
            self.second = now;
            self.text = http::http_date(now);
        }
        &self.text
    }
}

impl Default for HttpServer {
    fn default() -> Self {
        HttpServer::new()
    }
}

impl HttpServer {
    pub fn new() -> HttpServer {
        HttpServer {
            conns: ConnMap::new(),
            waiting: HashMap::new(),
            next_op: 1,
            early: HashMap::new(),
            depth: 0,
            clock: Clock {
                anchor: None,
                second: 0,
                text: String::new(),
            },
        }
    }

    /// A connection of an HTTP listener was accepted.
    pub fn accept(&mut self, id: ConnId, peer: IpAddr) {
        self.conns.insert(
            id,
            HttpConn {
                peer,
                waiting: None,
                closing: false,
            },
        );
    }

    /// The connection is gone; returns the op it was waiting on, whose answer
    /// will be dropped when it comes.
    pub fn closed(&mut self, id: ConnId) -> Option<OpId> {
        let c = self.conns.remove(id)?;
        let op = c.waiting?;
        self.waiting.remove(&op);
        Some(op)
    }

    /// Whether `op` was answered while it was being handled (so nothing
    /// about it needs keeping).
    pub fn answered_early(&self, op: OpId) -> bool {
        self.early.contains_key(&op)
    }

    fn write(&mut self, cx: &mut Ctx, id: ConnId, keep: bool, head: bool, reply: Reply) {
        let len = reply.body.len();
        let mut extra: Vec<(&str, &str)> = SECURITY_HEADERS.to_vec();
        extra.push(("Cache-Control", reply.cache_control));
        for (k, v) in &reply.headers {
            extra.push((k, v.as_str()));
        }
        let mut out = Vec::with_capacity(320 + if head { 0 } else { len.min(64 * 1024) });
        let date = self.clock.date(cx.now());
        http::write_head(
            &mut out,
            reply.status,
            reply.content_type,
            len,
            keep,
            date,
            &extra,
        );
        match reply.body {
            ReplyBody::Owned(b) if !head => {
                out.extend_from_slice(&b);
                cx.send_vec(id, out);
            }
            ReplyBody::Static(b) if !head => {
                cx.send_vec(id, out);
                cx.send_static(id, b);
            }
            _ => cx.send_vec(id, out),
        }
        if !keep {
            if let Some(c) = self.conns.get_mut(id) {
                c.closing = true;
            }
            cx.close_after_flush(id);
        }
    }
}

/// Parses and handles what waits on connection `id`, in order, until a
/// request waits, the input runs out, or the connection is closing.
pub fn on_input<S: HttpService>(svc: &mut S, cx: &mut Ctx, id: ConnId) {
    loop {
        let peer = match svc.http().conns.get(id) {
            Some(c) if c.waiting.is_none() && !c.closing => c.peer,
            _ => return,
        };
        let req = match http::parse_request(cx.input(id), &LIMITS) {
            Parse::Partial => return,
            Parse::Reject { status, message } => {
                svc.http()
                    .write(cx, id, false, false, Reply::error(status, message));
                return;
            }
            Parse::Done(req, used) => {
                cx.consume(id, used);
                req
            }
        };
        let (keep, head) = (req.keep_alive, req.method == "HEAD");
        let http = svc.http();
        let op = http.next_op;
        http.next_op += 1;
        http.depth += 1;
        let call = Call { conn: id, op, peer };
        let handled = svc.handle(cx, call, req);
        let http = svc.http();
        http.depth -= 1;
        let early = http.early.remove(&op);
        if http.depth == 0 {
            // Early answers are taken by the call that made them; any left
            // belong to requests that were answered at once anyway.
            http.early.clear();
        }
        match (handled, early) {
            (Handled::Now(reply), _) | (Handled::Pending, Some(reply)) => {
                http.write(cx, id, keep, head, reply)
            }
            (Handled::Pending, None) => {
                if let Some(c) = http.conns.get_mut(id) {
                    c.waiting = Some(op);
                    http.waiting.insert(
                        op,
                        Waiting {
                            conn: id,
                            keep_alive: keep,
                            head,
                        },
                    );
                }
            }
        }
    }
}

/// Answers the request that waited as `op`, then goes on with the requests
/// its connection sent after it. An op whose connection closed meanwhile is
/// dropped.
pub fn answer<S: HttpService>(svc: &mut S, cx: &mut Ctx, op: OpId, reply: Reply) {
    let http = svc.http();
    let Some(w) = http.waiting.remove(&op) else {
        if http.depth > 0 {
            // Possibly the op of a request still being handled.
            http.early.insert(op, reply);
        }
        return;
    };
    match http.conns.get_mut(w.conn) {
        Some(c) if c.waiting == Some(op) => c.waiting = None,
        _ => return,
    }
    http.write(cx, w.conn, w.keep_alive, w.head, reply);
    on_input(svc, cx, w.conn);
}

#[cfg(test)]
mod tests {
    use super::*;
    use reactor::{CloseReason, ConnOptions, ListenerId, Reactor, Service};
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};

    /// Answers `/wait` from a timer 30 ms later, anything else at once with
    /// its path; stops the loop when the client's connection closes.
    struct Echo {
        http: HttpServer,
        parked: Vec<OpId>,
    }

    impl HttpService for Echo {
        fn http(&mut self) -> &mut HttpServer {
            &mut self.http
        }
        fn handle(&mut self, cx: &mut Ctx, call: Call, req: Request) -> Handled {
            if req.path == "/wait" {
                self.parked.push(call.op);
                cx.timer(0, Duration::from_millis(30), call.op);
                return Handled::Pending;
            }
            Reply::ok(json!({ "path": req.path })).into()
        }
    }

    impl Service for Echo {
        fn on_accept(&mut self, _: &mut Ctx, _: ListenerId, id: ConnId, peer: SocketAddr) {
            self.http.accept(id, peer.ip());
        }
        fn on_input(&mut self, cx: &mut Ctx, id: ConnId) {
            on_input(self, cx, id);
        }
        fn on_timer(&mut self, cx: &mut Ctx, op: u64) {
            self.parked.retain(|o| *o != op);
            answer(self, cx, op, Reply::ok(json!({ "path": "/wait" })));
        }
        fn on_close(&mut self, cx: &mut Ctx, id: ConnId, _: CloseReason) {
            self.http.closed(id);
            cx.stop();
        }
    }

    /// Sends `input` on one connection to a fresh driver, returns all it got.
    fn exchange(input: Vec<u8>) -> String {
        let mut r = Reactor::new().unwrap();
        let opts = ConnOptions {
            max_input: MAX_INPUT,
            ..ConnOptions::default()
        };
        let (_, addr) = r
            .ctx()
            .listen("127.0.0.1:0".parse().unwrap(), 0, opts)
            .unwrap();
        let client = std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&input).unwrap();
            let mut out = Vec::new();
            let _ = s.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        });
        let mut svc = Echo {
            http: HttpServer::new(),
            parked: Vec::new(),
        };
        r.run(&mut [&mut svc]).unwrap();
        client.join().unwrap()
    }

    #[test]
    fn pipelined_answers_keep_request_order_behind_one_that_waits() {
        let got = exchange(
            b"GET /wait HTTP/1.1\r\nHost: x\r\n\r\nGET /now HTTP/1.1\r\nHost: x\r\n\r\nHEAD /head HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /never HTTP/1.1\r\n\r\n"
                .to_vec(),
        );
        let wait = got.find(r#"{"path":"/wait"}"#).expect("the waiting answer");
        let now = got.find(r#"{"path":"/now"}"#).expect("the next answer");
        assert!(wait < now, "{got}");
        assert_eq!(got.matches("HTTP/1.1 200").count(), 3, "{got}");
        assert!(!got.contains("/head\""), "HEAD sends no body: {got}");
        assert!(
            !got.contains("/never"),
            "nothing after Connection: close: {got}"
        );
        assert!(got.contains("X-Frame-Options: DENY"), "{got}");
        assert!(got.contains("Date: "), "{got}");
    }

    #[test]
    fn a_malformed_or_oversized_head_is_refused_and_closed() {
        let got = exchange(b"GARBAGE\r\n\r\nGET / HTTP/1.1\r\n\r\n".to_vec());
        assert!(got.starts_with("HTTP/1.1 400"), "{got}");
        assert_eq!(got.matches("HTTP/1.1").count(), 1, "{got}");
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 17 * 1024));
        big.extend_from_slice(b"\r\n\r\n");
        assert!(exchange(big).starts_with("HTTP/1.1 431"));
        let both = b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\nx";
        assert!(exchange(both.to_vec()).starts_with("HTTP/1.1 400"));
    }

    #[test]
    fn the_date_follows_the_tick_without_reading_the_clock_each_time() {
        let mut c = Clock {
            anchor: None,
            second: 0,
            text: String::new(),
        };
        let t0 = Instant::now();
        let first = c.date(t0).to_owned();
        let (at, unix) = c.anchor.unwrap();
        assert_eq!(at, t0);
        assert_eq!(first, http::http_date(unix));
        let later = c.date(t0 + Duration::from_secs(2)).to_owned();
        assert_eq!(later, http::http_date(unix + 2));
        assert_eq!(c.anchor, Some((t0, unix)));
    }

    #[test]
    fn method_not_allowed_names_the_methods() {
        let r = Reply::method_not_allowed("GET, HEAD");
        assert_eq!(r.status, 405);
        assert_eq!(r.headers, vec![("Allow", "GET, HEAD".to_owned())]);
    }
}
