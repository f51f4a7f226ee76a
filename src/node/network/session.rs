//! One logged-in user's session with the network: the peer listener, the
//! registry connection (REGISTER on connect, replies matched in order),
//! reconnection with capped, jittered exponential backoff, and re-REGISTER
//! with every tracked file. It never touches the user's files on disk and
//! never answers HTTP itself: replies that belong to a client request go
//! back to `api` through the op they carry.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use reactor::line::{self, Line};
use reactor::{CloseReason, ConnId, ConnOptions, Ctx, ListenerId};

use crate::node::network::heartbeat::{Heartbeat, State};
use crate::node::ops::{Reply, Wait};
use crate::node::transfers::peer_server::PeerServer;
use crate::node::{Kind, Node, OpId};
use crate::proto::registry::{self, Request};

/// Registry answers (a whole LIST) may be this long.
const MAX_REPLY_LINE: usize = 64 * 1024 * 1024;
/// The coordinator refuses lines over 1 MiB; REGISTER stays well below.
const MAX_REGISTER_LINE: usize = 900 * 1024;
const BACKOFF_FIRST: f64 = 0.5;
/// Capped low so a node is back within 2 s of its coordinator (issue 12):
/// with the 250 ms cron tick a retry is never more than 1.75 s away, and a
/// refused connect to a port nobody listens on costs the coordinator nothing.
const BACKOFF_MAX: f64 = 1.5;

/// Where the registry connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// TCP connect under way.
    Connecting(ConnId),
    /// Connected; REGISTER sent, no answer yet.
    Registering(ConnId),
    /// Registered: requests may flow.
    Up(ConnId),
    /// Waiting to try again.
    Backoff(Instant),
}

pub struct Session {
    pub registry: SocketAddr,
    pub listener: ListenerId,
    pub peer_port: u16,
    pub link: Link,
    pub inflight: VecDeque<Wait>,
    /// Failed attempts since the last successful REGISTER.
    pub failures: u32,
    pub last_error: Option<String>,
    pub heartbeat: Heartbeat,
    /// REGISTER succeeded at least once (after that, losses are retried).
    pub ever_up: bool,
    /// /init requests waiting for the first REGISTER.
    pub init_ops: Vec<OpId>,
}

impl Session {
    pub fn conn(&self) -> Option<ConnId> {
        match self.link {
            Link::Connecting(c) | Link::Registering(c) | Link::Up(c) => Some(c),
            Link::Backoff(_) => None,
        }
    }

    pub fn is_up(&self) -> bool {
        matches!(self.link, Link::Up(_))
    }

    /// "connected", "connecting" (first attempt) or "reconnecting".
    pub fn state_name(&self) -> &'static str {
        match self.link {
            Link::Up(_) => "connected",
            _ if !self.ever_up => "connecting",
            _ => "reconnecting",
        }
    }

    pub fn retry_in(&self, now: Instant) -> Option<f64> {
        match self.link {
            Link::Backoff(at) => Some(at.saturating_duration_since(now).as_secs_f64()),
            _ => None,
        }
    }
}

/// Delay before attempt `failures` (1 = first retry): 0.5 s doubling to
/// [`BACKOFF_MAX`], then scaled by a jitter factor in [0.75, 1.25) (and kept
/// under the cap) so many nodes do not reconnect in lockstep after a
/// coordinator restart.
pub fn backoff(failures: u32, jitter01: f64) -> Duration {
    let base =
        (BACKOFF_FIRST * 2f64.powi(failures.saturating_sub(1).min(16) as i32)).min(BACKOFF_MAX);
    let j = 0.75 + 0.5 * jitter01.clamp(0.0, 1.0);
    Duration::from_secs_f64((base * j).min(BACKOFF_MAX))
}

/// The local address that would be used to reach `to` (no packet is sent).
fn local_ip_towards(to: SocketAddr) -> Option<IpAddr> {
    let any: SocketAddr = if to.is_ipv4() {
        "0.0.0.0:0".parse().ok()?
    } else {
        "[::]:0".parse().ok()?
    };
    let s = UdpSocket::bind(any).ok()?;
    s.connect(to).ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

fn registry_options() -> ConnOptions {
    ConnOptions {
        max_input: MAX_REPLY_LINE + 4096,
        partial_timeout: Some(Duration::from_secs(60)),
        idle_timeout: None,
        read_chunk: 64 * 1024,
        ..ConnOptions::default()
    }
}

impl Node {
    /// Binds the user's peer listener; the caller then connects (`link_connect`).
    pub(crate) fn start_session(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        registry: SocketAddr,
    ) -> Result<(), Reply> {
        let (listener, port) = self.bind_peer_port(cx)?;
        self.peer_listeners.insert(listener, user.to_owned());
        if let Some(u) = self.users.get_mut(user) {
            u.session = Some(Session {
                registry,
                listener,
                peer_port: port,
                link: Link::Backoff(cx.now()),
                inflight: VecDeque::new(),
                failures: 0,
                last_error: None,
                heartbeat: Heartbeat::default(),
                ever_up: false,
                init_ops: Vec::new(),
            });
        }
        crate::log_info!("{user}: peer listener on port {port}; registering with {registry}");
        Ok(())
    }

    /// Tries the configured range in order from a random point; range 0-0: any port.
    fn bind_peer_port(&mut self, cx: &mut Ctx) -> Result<(ListenerId, u16), Reply> {
        let (lo, hi) = (self.settings.port_min, self.settings.port_max);
        let ip = IpAddr::from([0, 0, 0, 0]);
        let opts = PeerServer::listener_options();
        let span = u32::from(hi.saturating_sub(lo)) + 1;
        let start = (self.random() * f64::from(span)) as u32 % span;
        let mut last = String::from("no port tried");
        for i in 0..span {
            let port = lo as u32 + (start + i) % span;
            match cx.listen(SocketAddr::new(ip, port as u16), self.svc, opts.clone()) {
                Ok((id, addr)) => return Ok((id, addr.port())),
                Err(e) => last = e.to_string(),
            }
        }
        Err(Reply::error(
            503,
            &format!("No free peer port in {lo}-{hi} ({last})"),
        ))
    }

    /// Opens the registry connection (or plans a retry if that fails at once).
    pub(crate) fn link_connect(&mut self, cx: &mut Ctx, user: &str) {
        let Some(s) = self.session_mut(user) else {
            return;
        };
        let addr = s.registry;
        match cx.connect(addr, self.svc, registry_options()) {
            Ok(id) => {
                self.conns.insert(id, Kind::Registry(user.to_owned()));
                if let Some(s) = self.session_mut(user) {
                    s.link = Link::Connecting(id);
                }
            }
            Err(e) => self.link_failed(
                cx,
                user,
                format!(
                    "cannot connect to {addr}: {}",
                    crate::util::without_errno(&e.to_string())
                ),
            ),
        }
    }

    /// TCP is up: say who we are.
    pub(crate) fn registry_connected(&mut self, cx: &mut Ctx, user: &str, id: ConnId) {
        let now_unix = crate::util::unix_secs();
        let token = self
            .tokens
            .freshest(user, now_unix)
            .map(|(t, _)| t)
            .or_else(|| self.standing_credential(user, now_unix));
        let advertise = self.settings.advertise_ip;
        let (Some(u), Some(token)) = (self.users.get(user), token) else {
            let why = "no valid token for this user (log in again)".to_owned();
            cx.close(id);
            self.link_failed(cx, user, why);
            return;
        };
        let Some(s) = u.session.as_ref().filter(|s| s.conn() == Some(id)) else {
            cx.close(id);
            return;
        };
        let ip = advertise
            .or_else(|| {
                cx.local_addr(id)
                    .map(|a| a.ip())
                    .filter(|ip| !ip.is_unspecified())
            })
            .or_else(|| local_ip_towards(s.registry))
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "127.0.0.1".into());
        let mut register = Request::Register {
            hostname: user.into(),
            port: s.peer_port,
            ip: Some(ip.into()),
            display_name: Some(u.display_name.as_str().into()),
            files: u.catalog.registry_metadata(),
            token: Some(token.as_str().into()),
        };
        let mut msg = register.line();
        let mut republish = Vec::new();
        if msg.len() > MAX_REGISTER_LINE {
            // Too many files for one line: register bare, then publish one by one.
            if let Request::Register { files, .. } = &mut register {
                files.clear();
            }
            msg = register.line();
            for f in u.catalog.iter().filter(|f| f.is_published) {
                let publish = Request::Publish {
                    hostname: user.into(),
                    fname: f.name.as_str().into(),
                    meta: f.registry_meta(),
                };
                republish.push(publish.line());
            }
        }
        cx.send_vec(id, msg);
        self.want_standing(cx, user, &token);
        let n = republish.len();
        for m in republish {
            cx.send_vec(id, m);
        }
        if let Some(s) = self.session_mut(user) {
            s.link = Link::Registering(id);
            s.inflight.push_back(Wait::Register);
            for _ in 0..n {
                s.inflight
                    .push_back(Wait::Quiet("re-publish after REGISTER"));
            }
        }
    }

    /// Sends one registry request; false when the connection is not usable.
    pub(crate) fn registry_send(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        msg: &Request<'_>,
        wait: Wait,
    ) -> bool {
        let Some(s) = self.session_mut(user) else {
            return false;
        };
        let id = match s.link {
            Link::Up(id) | Link::Registering(id) => id,
            _ => return false,
        };
        s.inflight.push_back(wait);
        cx.send_vec(id, msg.line());
        true
    }

    pub(crate) fn registry_input(&mut self, cx: &mut Ctx, id: ConnId, user: &str) {
        loop {
            let (value, used) = match line::next_line(cx.input(id), MAX_REPLY_LINE) {
                Line::Partial => return,
                Line::TooLong => {
                    cx.close(id);
                    return;
                }
                Line::Complete(l, used) => (registry::decode_reply(l), used),
            };
            cx.consume(id, used);
            let wait = match self.session_mut(user) {
                Some(s) if s.conn() == Some(id) => s.inflight.pop_front(),
                _ => {
                    cx.close(id);
                    return;
                }
            };
            let Some(wait) = wait else {
                crate::log_warn!("{user}: unexpected registry answer; reconnecting");
                cx.close(id);
                return;
            };
            let v = value.unwrap_or_else(|e| {
                registry::Reply::Error(format!("unreadable answer: {e}").into())
            });
            self.registry_reply(cx, user, id, wait, v);
        }
    }

    fn registry_reply(
        &mut self,
        cx: &mut Ctx,
        user: &str,
        id: ConnId,
        wait: Wait,
        v: registry::Reply<'static>,
    ) {
        use registry::Reply as R;
        let reason = v.reason().unwrap_or("no reason given").to_owned();
        match wait {
            Wait::Register if v == R::Ok => {
                let now = cx.now();
                let iv = self.settings.intervals;
                let ops = match self.session_mut(user) {
                    Some(s) => {
                        s.link = Link::Up(id);
                        s.failures = 0;
                        s.last_error = None;
                        s.ever_up = true;
                        s.heartbeat.start(&iv, now);
                        std::mem::take(&mut s.init_ops)
                    }
                    None => Vec::new(),
                };
                crate::log_info!("{user}: registered with the coordinator");
                // The registry now has exactly what the catalog publishes.
                self.net_sync_own(user);
                for op in ops {
                    let reply = self.client_info(user);
                    self.finish(cx, op, reply);
                }
            }
            Wait::Register => {
                let why = format!("the coordinator refused REGISTER: {reason}");
                if reason.contains("unauthorized") {
                    self.standing_refused(cx, user);
                }
                let first = self.session_mut(user).is_some_and(|s| !s.ever_up);
                if first {
                    let status = if reason.contains("unauthorized") {
                        401
                    } else {
                        502
                    };
                    self.end_session(
                        cx,
                        user,
                        status,
                        &format!("The coordinator refused to register {user}: {reason}"),
                    );
                } else {
                    cx.close(id);
                    if let Some(s) = self.session_mut(user) {
                        s.last_error = Some(why);
                    }
                }
            }
            Wait::Ping => {
                if v == R::Dead {
                    // The registry lost us although the connection lives: register again.
                    crate::log_warn!("{user}: the coordinator answered DEAD; registering again");
                    cx.close(id);
                } else if v != R::Alive {
                    crate::log_warn!("{user}: heartbeat refused: {reason}");
                }
            }
            Wait::Quiet(what) => {
                if matches!(v, R::Error(_)) {
                    crate::log_warn!("{user}: {what}: the coordinator answered: {reason}");
                }
            }
            Wait::Op(op) => self.op_registry_reply(cx, op, v),
            Wait::Walk => self.walk_page(cx, user, v),
            Wait::FetchHosts(seq) => self.fetch_hosts_found(cx, seq, None, &v),
        }
    }

    /// The registry connection closed: answer what waited, plan a retry.
    pub(crate) fn registry_closed(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        user: &str,
        why: &CloseReason,
    ) {
        let Some(s) = self.session_mut(user) else {
            return;
        };
        if s.conn() != Some(id) {
            return;
        }
        let waits: Vec<Wait> = s.inflight.drain(..).collect();
        let reason = match why {
            CloseReason::ConnectFailed(e) => format!(
                "cannot connect to {}: {}",
                s.registry,
                crate::util::without_errno(e)
            ),
            CloseReason::Error(e) => format!(
                "connection to {} failed: {}",
                s.registry,
                crate::util::without_errno(e)
            ),
            CloseReason::PeerClosed => format!("{} closed the connection", s.registry),
            CloseReason::Timeout => format!("{} stopped answering", s.registry),
            CloseReason::Local => match &s.last_error {
                Some(e) => e.clone(),
                None => "connection closed to register again".into(),
            },
            CloseReason::Shutdown => "the node is stopping".into(),
        };
        let registry = s.registry;
        for w in waits {
            if let Wait::Op(op) = w {
                self.op_link_lost(cx, op);
            }
        }
        self.link_failed(cx, user, reason);
        // After the link is marked down, so the walk does not restart over it.
        self.walk_driver_gone(cx, registry, user);
    }

    /// A connection attempt or a live connection failed: retry later, or
    /// (before the first REGISTER) give up and answer /init.
    fn link_failed(&mut self, cx: &mut Ctx, user: &str, reason: String) {
        let jitter = self.random();
        let now = cx.now();
        let Some(s) = self.session_mut(user) else {
            return;
        };
        s.heartbeat.stop();
        if !s.ever_up {
            let msg = format!("The coordinator's registry is unreachable: {reason}");
            crate::log_warn!("{user}: {msg}");
            self.end_session(cx, user, 502, &msg);
            return;
        }
        s.failures = s.failures.saturating_add(1);
        let delay = backoff(s.failures, jitter);
        s.link = Link::Backoff(now + delay);
        // Retries come every 1.5 s at most: a warning for the first and
        // about one a minute after, the others at debug level.
        if s.failures == 1 || s.failures % 40 == 0 {
            crate::log_warn!(
                "{user}: registry connection lost ({reason}); retrying in {:.1} s (attempt {})",
                delay.as_secs_f64(),
                s.failures
            );
        } else {
            crate::log_debug!(
                "{user}: registry still unreachable ({reason}); retrying in {:.1} s",
                delay.as_secs_f64()
            );
        }
        s.last_error = Some(reason);
    }

    /// Tears a session down (logout, or a failed first REGISTER): waiting
    /// requests get `status`/`msg`, the listener and peer connections close.
    pub(crate) fn end_session(&mut self, cx: &mut Ctx, user: &str, status: u16, msg: &str) {
        let Some(s) = self.users.get_mut(user).and_then(|u| u.session.take()) else {
            return;
        };
        if let Some(id) = s.conn() {
            if s.is_up() {
                cx.send_vec(
                    id,
                    Request::Unregister {
                        hostname: user.into(),
                    }
                    .line(),
                );
                cx.close_after_flush(id);
            } else {
                cx.close(id);
            }
        }
        cx.close_listener(s.listener);
        self.peer_listeners.remove(&s.listener);
        self.peer_server.close_user(cx, user);
        for op in s.init_ops {
            self.finish(cx, op, Reply::error(status, msg));
        }
        for w in s.inflight {
            if let Wait::Op(op) = w {
                self.finish(cx, op, Reply::error(409, msg));
            }
        }
        self.walk_driver_gone(cx, s.registry, user);
    }

    /// Cron: retries that are due, heartbeats that are due.
    pub(crate) fn sessions_tick(&mut self, cx: &mut Ctx) {
        let now = cx.now();
        let iv = self.settings.intervals;
        let names: Vec<String> = self.users.keys().cloned().collect();
        for user in names {
            let transfers = self.fetches.active(&user) + self.peer_server.active_uploads(&user);
            let Some(u) = self.users.get_mut(&user) else {
                continue;
            };
            let state = iv.classify(transfers, u.last_use, now);
            let Some(s) = u.session.as_mut() else {
                continue;
            };
            s.heartbeat.update(&iv, state, now);
            let ping = s.is_up() && s.heartbeat.due(now);
            let retry = matches!(s.link, Link::Backoff(at) if now >= at);
            if ping {
                s.heartbeat.record_sent(&iv, now);
                let msg = Request::Ping {
                    hostname: user.as_str().into(),
                    state: Some(state.wire()),
                };
                self.registry_send(cx, &user, &msg, Wait::Ping);
            } else if retry {
                self.link_connect(cx, &user);
            }
        }
    }

    /// A user's request needs the registry while the link waits to retry:
    /// try now rather than at the end of the backoff.
    pub(crate) fn link_retry_now(&mut self, cx: &mut Ctx, user: &str) {
        let waiting = self
            .session_mut(user)
            .is_some_and(|s| s.ever_up && matches!(s.link, Link::Backoff(_)));
        if waiting {
            crate::log_info!("{user}: a request needs the coordinator; reconnecting now");
            self.link_connect(cx, user);
        }
    }

    /// A new token for `user`: a registration refused for want of one is retried now.
    pub(crate) fn token_renewed(&mut self, cx: &mut Ctx, user: &str) {
        let now = cx.now();
        if let Some(s) = self.session_mut(user) {
            let refused = s
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("unauthorized") || e.contains("token"));
            if refused && matches!(s.link, Link::Backoff(_)) {
                s.link = Link::Backoff(now);
            }
        }
    }

    /// Tells the registry about a publication change noticed on disk (no one waits).
    pub(crate) fn quiet_unpublish(&mut self, cx: &mut Ctx, user: &str, name: &str) {
        let msg = Request::Unpublish {
            hostname: user.into(),
            fname: name.into(),
        };
        self.registry_send(
            cx,
            user,
            &msg,
            Wait::Quiet("unpublish of a file changed on disk"),
        );
    }

    pub(crate) fn heartbeat_state(&self, user: &str, now: Instant) -> State {
        let transfers = self.fetches.active(user) + self.peer_server.active_uploads(user);
        match self.users.get(user) {
            Some(u) => self.settings.intervals.classify(transfers, u.last_use, now),
            None => State::Idle,
        }
    }

    fn session_mut(&mut self, user: &str) -> Option<&mut Session> {
        self.users.get_mut(user).and_then(|u| u.session.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_a_cap_with_jitter() {
        let mid = |n| backoff(n, 0.5).as_secs_f64();
        assert!((mid(1) - 0.5).abs() < 1e-9);
        assert!((mid(2) - 1.0).abs() < 1e-9);
        assert!((mid(3) - 1.5).abs() < 1e-9);
        assert!((mid(1000) - 1.5).abs() < 1e-9);
        assert!((backoff(1, 0.0).as_secs_f64() - 0.375).abs() < 1e-9);
        assert!((backoff(1000, 0.0).as_secs_f64() - 1.125).abs() < 1e-9);
        assert!(backoff(1000, 1.0).as_secs_f64() <= BACKOFF_MAX);
        assert!(backoff(2, 0.99).as_secs_f64() > backoff(2, 0.0).as_secs_f64());
    }

    #[test]
    fn finds_a_local_address_without_sending() {
        let ip = local_ip_towards("127.0.0.1:9".parse().unwrap());
        assert_eq!(ip, Some(IpAddr::from([127, 0, 0, 1])));
    }
}
