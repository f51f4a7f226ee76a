//! Registry connections (SPEC §2): framing, identity binding, dispatch of
//! each action to the registry, and offline-at-close.

use std::time::Instant;

use reactor::line::{next_line, Line};
use reactor::{ConnId, Ctx};

use super::registry::HostKey;
use super::{unix_now, Coordinator, Kind};
use crate::auth::jwt;
use crate::proto::registry::{self, error_line, Request, MAX_LINE};

/// Queued answers above this make a connection wait until they drain.
const MAX_QUEUED: u64 = 4 * 1024 * 1024;

#[derive(Default)]
pub struct RegConn {
    /// The host this connection is, after REGISTER.
    pub host: Option<HostKey>,
    /// Registered without a token under `--allow-anonymous`: closing the
    /// connection does not mark the host offline (seed clients reconnect per request).
    pub anonymous: bool,
    /// Waiting for a full-LIST snapshot; later lines wait too, in order.
    pub waiting_list: bool,
}

/// Time marks for one batch of request lines.
struct Clock {
    mark: Instant,
    unix: f64,
}

/// What a request line produced besides an inline reply.
enum Extra {
    None,
    /// A shared, already serialised reply (full LIST).
    Shared(std::sync::Arc<Vec<u8>>),
    /// A full LIST whose snapshot is being built: this connection waits.
    WaitList,
}

impl Coordinator {
    pub(super) fn registry_input(&mut self, cx: &mut Ctx, id: ConnId) {
        if matches!(self.conns.get(id), Some(Kind::Registry(rc)) if rc.waiting_list) {
            return;
        }
        let buf = cx.take_input(id);
        let mut used = 0;
        let mut close = false;
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        // One clock read per request: each request's service time runs from
        // the previous one's end (or the batch start), and the wall clock is
        // read once per batch. Clock reads were a tenth of the loop's time.
        let mut clock = Clock {
            mark: Instant::now(),
            unix: unix_now(),
        };
        loop {
            if cx.output_total(id) + out.len() as u64 > MAX_QUEUED {
                // The client is not reading: stop here, go on when it drains.
                cx.notify_drained(id);
                break;
            }
            match next_line(&buf[used..], MAX_LINE) {
                Line::Partial => break,
                Line::TooLong => {
                    out.extend_from_slice(&error_line("line too long"));
                    used = buf.len();
                    close = true;
                    break;
                }
                Line::Complete(line, n) => {
                    used += n;
                    if line.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    match self.handle_line(cx, id, line, &mut out, &mut clock) {
                        Extra::None => {}
                        Extra::Shared(reply) => {
                            cx.send(id, &out);
                            out.clear();
                            cx.send_shared(id, reply);
                        }
                        Extra::WaitList => {
                            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                                rc.waiting_list = true;
                            }
                            self.list_waiters.push(id);
                            self.build_snapshot(cx);
                            break;
                        }
                    }
                }
            }
        }
        cx.put_back_input(id, buf, used);
        cx.send(id, &out);
        self.scratch = out;
        if close {
            cx.close_after_flush(id);
        }
    }

    fn handle_line(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        line: &[u8],
        out: &mut Vec<u8>,
        clock: &mut Clock,
    ) -> Extra {
        let req = match registry::parse_request(line) {
            Ok(r) => r,
            Err(reason) => {
                out.extend_from_slice(&error_line(&reason));
                clock.mark = Instant::now();
                return Extra::None;
            }
        };
        let action = req.action();
        let extra = match self.dispatch(cx, id, req, out, clock.unix) {
            Ok(extra) => extra,
            Err(reason) => {
                out.extend_from_slice(&error_line(reason));
                Extra::None
            }
        };
        let end = Instant::now();
        self.stats
            .record(action, end, end.duration_since(clock.mark));
        clock.mark = end;
        extra
    }

    /// The host this connection acts for when it names `hostname`.
    fn acting_host(&self, id: ConnId, hostname: &str) -> Result<HostKey, &'static str> {
        let bound = match self.conns.get(id) {
            Some(Kind::Registry(rc)) => rc.host,
            _ => None,
        };
        match bound {
            Some(k) => match self.registry.get(k) {
                Some(h) if &*h.name == hostname => Ok(k),
                Some(_) => Err("forbidden"),
                None => Err("not registered"),
            },
            None if self.cfg.allow_anonymous => self.registry.key(hostname).ok_or("not registered"),
            None => Err("not registered"),
        }
    }

    fn bound_host(&self, id: ConnId) -> Option<HostKey> {
        match self.conns.get(id) {
            Some(Kind::Registry(rc)) => rc.host,
            _ => None,
        }
    }

    fn dispatch(
        &mut self,
        cx: &mut Ctx,
        id: ConnId,
        req: Request,
        out: &mut Vec<u8>,
        now: f64,
    ) -> Result<Extra, &'static str> {
        // Every message refreshes the sender's last_seen.
        if let Some(k) = self.bound_host(id) {
            self.registry.touch(k, now);
        }
        match req {
            Request::Register {
                hostname,
                port,
                ip,
                display_name,
                files,
                token,
            } => {
                if let Some(k) = self.bound_host(id) {
                    if self.registry.get(k).is_some_and(|h| *h.name != *hostname) {
                        return Err("forbidden");
                    }
                }
                let anonymous = match token.as_deref() {
                    None if self.cfg.allow_anonymous => true,
                    None => return Err("unauthorized"),
                    Some(t) => {
                        let claims = jwt::verify(&self.jwt_secret, t, now as u64)
                            .map_err(|_| "unauthorized")?;
                        if claims.sub != *hostname {
                            return Err("forbidden");
                        }
                        false
                    }
                };
                let ip = match ip {
                    Some(ip) if !ip.is_empty() => ip.into_owned(),
                    _ => cx
                        .peer_addr(id)
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default(),
                };
                // A host that registers again from a new connection takes
                // over; the old connection no longer speaks for it.
                if let Some(old) = self
                    .registry
                    .key(&hostname)
                    .and_then(|k| self.registry.get(k))
                    .and_then(|h| h.conn)
                {
                    if old != id {
                        if let Some(Kind::Registry(rc)) = self.conns.get_mut(old) {
                            rc.host = None;
                        }
                    }
                }
                let key = self.registry.register(
                    &hostname,
                    display_name.as_deref().unwrap_or(""),
                    &ip,
                    port,
                    files,
                    Some(id),
                    now,
                );
                if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                    rc.host = Some(key);
                    rc.anonymous = anonymous;
                }
                out.extend_from_slice(b"{\"status\":\"OK\"}\n");
            }
            Request::Publish {
                hostname,
                fname,
                meta,
            } => {
                let k = self.acting_host(id, &hostname)?;
                self.registry.touch(k, now);
                self.registry.publish(k, &fname, meta);
                out.extend_from_slice(b"{\"status\":\"ACK\"}\n");
            }
            Request::Unpublish { hostname, fname } => {
                let k = self.acting_host(id, &hostname)?;
                self.registry.touch(k, now);
                if !self.registry.unpublish(k, &fname) {
                    return Err("file not found");
                }
                out.extend_from_slice(b"{\"status\":\"ACK\"}\n");
            }
            Request::Request { fname } => self.registry.request_reply(&fname, out),
            Request::Discover { hostname } => {
                if !self.registry.discover_reply(&hostname, out) {
                    return Err("unknown host");
                }
            }
            Request::Ping { hostname, state } => {
                let asked = self.registry.key(&hostname);
                let own = self.bound_host(id);
                let sender = match own {
                    Some(k) => Some(k),
                    // Seed clients heartbeat on a fresh connection, naming themselves.
                    None if self.cfg.allow_anonymous => asked,
                    None => None,
                };
                if let (Some(k), Some(st)) = (sender, state) {
                    if asked == Some(k) {
                        self.registry.set_state(k, st);
                    }
                }
                if let Some(k) = sender {
                    self.registry.touch(k, now);
                }
                if self.registry.is_online(&hostname) {
                    out.extend_from_slice(b"{\"status\":\"ALIVE\"}\n");
                } else {
                    out.extend_from_slice(b"{\"status\":\"DEAD\"}\n");
                }
            }
            Request::List {
                offset,
                limit,
                query,
            } => {
                if offset.is_none() && limit.is_none() && query.is_none() {
                    return Ok(match self.registry.fresh_snapshot(now) {
                        Some(snap) => Extra::Shared(snap),
                        None => Extra::WaitList,
                    });
                }
                let limit = limit.unwrap_or(registry::MAX_PAGE);
                self.registry
                    .list_page_reply(offset.unwrap_or(0), limit, query.as_deref(), out);
            }
            Request::Unregister { hostname } => {
                let k = self.acting_host(id, &hostname)?;
                self.registry.remove(k);
                if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                    if rc.host == Some(k) {
                        rc.host = None;
                    }
                }
                out.extend_from_slice(b"{\"status\":\"OK\"}\n");
            }
        }
        Ok(Extra::None)
    }

    /// Starts building a full-LIST snapshot on the snapshot worker, unless
    /// one is already on its way (its answer serves every waiter).
    fn build_snapshot(&mut self, cx: &mut Ctx) {
        if self.building_snapshot {
            return;
        }
        let parts = self.registry.snapshot_parts();
        let version = self.registry.version();
        let built_at = unix_now();
        let job = move || {
            (
                built_at,
                version,
                std::sync::Arc::new(super::registry::build_snapshot(&parts)),
            )
        };
        match self.snapshot_pool.submit(job) {
            Ok(()) => self.building_snapshot = true,
            Err(_) => {
                // Cannot happen with one build at a time; answer inline then.
                let snap = self.registry.list_full(built_at);
                self.snapshot_ready(cx, snap);
            }
        }
    }

    /// A snapshot arrived: answer everyone waiting, then go on with their lines.
    pub(super) fn snapshot_ready(&mut self, cx: &mut Ctx, snap: std::sync::Arc<Vec<u8>>) {
        self.building_snapshot = false;
        for id in std::mem::take(&mut self.list_waiters) {
            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                rc.waiting_list = false;
                cx.send_shared(id, snap.clone());
                self.registry_input(cx, id);
            }
        }
    }

    /// A registry connection ended: its host goes offline at once (kept).
    pub(super) fn registry_closed(&mut self, id: ConnId, rc: RegConn) {
        let Some(k) = rc.host else { return };
        if rc.anonymous {
            return;
        }
        if self.registry.get(k).is_some_and(|h| h.conn == Some(id)) {
            self.registry.set_offline(k);
        }
    }
}
