//! Registry connections: framing, which connection speaks for which host,
//! the cost a stranger may put on us (unbound connections per address, the
//! 30 s line deadline), writing each request's encoded reply, and
//! offline-at-close. What a request does is `handle.rs`'s.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use reactor::line::{next_line, Line};
use reactor::{ConnId, Ctx};

use super::guard::{addr_key, LATE_LOOP_GRACE, OVER_CAP_GRACE, UNBOUND_LINE_TIMEOUT};
use super::handle::{Answer, Context, Effect};
use super::registry::{Gather, HostKey, ListParts};
use super::{Coordinator, Kind, Timer};
use crate::proto::registry::{self, error_line, Reply, MAX_LINE};
use crate::util::unix_now;

/// When the next step of gathering a whole LIST (or a query's matches)
/// runs: in the next loop turn, after that turn's events, so everyone else
/// is served in between. A timer's deadline is counted from the turn's
/// start, so one microsecond is never due in the turn that set it (zero
/// would run every step in one turn), and the next poll does not sleep: a
/// whole millisecond here left an idle loop asleep between steps (a whole
/// LIST of 10,000 hosts took 9 ms, mostly those pauses).
const NEXT_TURN: std::time::Duration = std::time::Duration::from_micros(1);

/// Queued answers above this make a connection wait until they drain.
const MAX_QUEUED: u64 = 4 * 1024 * 1024;

/// Where a connection stands with the per-address limit on strangers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Not registered yet: counted against its address, closed 30 s after
    /// its last complete line.
    Unbound(IpAddr),
    /// Accepted past its address's cap: its first line must be a REGISTER
    /// that succeeds, within a few seconds, or it is refused.
    OverCap,
    /// Registered once: no longer a stranger, never capped per address
    /// (many nodes may share one NAT address).
    Known,
}

pub struct RegConn {
    /// The host this connection is, after REGISTER.
    pub host: Option<HostKey>,
    /// Registered without a token under `--allow-anonymous`: closing the
    /// connection does not mark the host offline (seed clients reconnect per request).
    pub anonymous: bool,
    /// Waiting for a whole LIST being gathered or a query's matches being
    /// collected; later lines wait too, in order.
    pub waiting_list: bool,
    pub standing: Standing,
    /// When its last complete line arrived (or when it was accepted).
    pub last_line: Instant,
    /// Its address as the per-address limit counts it.
    pub addr: IpAddr,
    /// A deadline timer is pending: never arm a second one.
    pub timer_armed: bool,
    /// TCP keepalive is on (set at the first REGISTER).
    pub keepalive: bool,
    /// Deadlines put off because its input waited unread (`LATE_LOOP_GRACE`).
    pub late_extensions: u8,
}

/// The timer key of a connection's stranger deadline.
fn conn_timer_key(id: ConnId) -> u64 {
    Timer::Stranger(id).to_key()
}

/// Time marks for one batch of request lines.
struct Clock {
    mark: Instant,
    unix: f64,
}

/// What a request line produced besides an inline reply.
enum Extra {
    None,
    /// A whole LIST: shared pieces, queued by reference.
    Parts(ListParts),
    /// A whole LIST still being gathered: this connection waits.
    WaitList,
    /// A query's matches still being collected: this line is read again later.
    WaitQuery,
    /// Answered (the reply is in `out`); close once it is written.
    Close,
}

impl Coordinator {
    /// A registry connection arrived: count it against its address, or mark
    /// it over the cap; either way arm its deadline. O(1) besides the timer.
    pub(super) fn registry_accept(&mut self, cx: &mut Ctx, id: ConnId, peer: SocketAddr) {
        let ip = addr_key(peer.ip());
        let (standing, after) = if self.unbound.try_add(ip) {
            (Standing::Unbound(ip), UNBOUND_LINE_TIMEOUT)
        } else {
            (Standing::OverCap, OVER_CAP_GRACE)
        };
        cx.timer(self.svc, after, conn_timer_key(id));
        self.conns.insert(
            id,
            Kind::Registry(RegConn {
                host: None,
                anonymous: false,
                waiting_list: false,
                standing,
                last_line: Instant::now(),
                addr: ip,
                timer_armed: true,
                keepalive: false,
                late_extensions: 0,
            }),
        );
    }

    /// Connection `c` no longer speaks for a host (taken over by another
    /// connection, unregistered, swept): it is a stranger again, counted and
    /// timed, or over the cap. Otherwise one account could hold any number
    /// of connections by registering the same host on each in turn.
    pub(super) fn unbind(&mut self, cx: &mut Ctx, c: ConnId) {
        let Some(Kind::Registry(rc)) = self.conns.get_mut(c) else {
            return;
        };
        rc.host = None;
        if rc.standing != Standing::Known {
            return;
        }
        let (standing, after) = if self.unbound.try_add(rc.addr) {
            (Standing::Unbound(rc.addr), UNBOUND_LINE_TIMEOUT)
        } else {
            (Standing::OverCap, OVER_CAP_GRACE)
        };
        rc.standing = standing;
        rc.last_line = Instant::now();
        // A pending timer (from accept) will judge the new standing when it fires.
        if !rc.timer_armed {
            rc.timer_armed = true;
            cx.timer(self.svc, after, conn_timer_key(c));
        }
    }

    /// A stranger's deadline: refuse it (over the cap), close it (no complete
    /// line for 30 s), or look again when its last line is 30 s old.
    pub(super) fn stranger_deadline(&mut self, cx: &mut Ctx, id: ConnId) {
        let Some(Kind::Registry(rc)) = self.conns.get_mut(id) else {
            return;
        };
        rc.timer_armed = false;
        // Its line is here but the loop has not read it yet (far behind,
        // as after a coordinator restart): wait for the loop, a bounded
        // number of times, instead of resetting a peer that did its part.
        let step = match rc.standing {
            Standing::Known => Duration::ZERO,
            Standing::OverCap => OVER_CAP_GRACE,
            Standing::Unbound(_) => UNBOUND_LINE_TIMEOUT,
        };
        let allowed = (LATE_LOOP_GRACE.as_secs() / step.as_secs().max(1)).min(u8::MAX as u64) as u8;
        if !step.is_zero() && rc.late_extensions < allowed && cx.input_waiting(id) {
            rc.late_extensions += 1;
            rc.timer_armed = true;
            cx.timer(self.svc, step, conn_timer_key(id));
            return;
        }
        match rc.standing {
            Standing::Known => {}
            Standing::OverCap => {
                cx.send(id, &error_line("too many connections"));
                cx.close_after_flush(id);
            }
            Standing::Unbound(_) => {
                let due = rc.last_line + UNBOUND_LINE_TIMEOUT;
                let now = Instant::now();
                if now >= due {
                    cx.close(id);
                } else {
                    rc.timer_armed = true;
                    cx.timer(self.svc, due - now, conn_timer_key(id));
                }
            }
        }
    }

    /// REGISTER succeeded on `id`: it is no longer a stranger.
    fn now_known(&mut self, id: ConnId) {
        if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
            if let Standing::Unbound(ip) = rc.standing {
                self.unbound.remove(ip);
            }
            rc.standing = Standing::Known;
        }
    }

    pub(super) fn registry_input(&mut self, cx: &mut Ctx, id: ConnId) {
        if matches!(self.conns.get(id), Some(Kind::Registry(rc)) if rc.waiting_list) {
            return;
        }
        let buf = cx.take_input(id);
        let mut used = 0;
        let mut close = false;
        let mut gather = false;
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
                    // Blank lines do not count as lines: a stranger cannot
                    // keep its connection with a newline every 29 s.
                    if line.iter().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                        rc.last_line = clock.mark;
                    }
                    match self.handle_line(cx, id, line, &mut out, &mut clock) {
                        Extra::None => {}
                        Extra::Close => {
                            used = buf.len();
                            close = true;
                            break;
                        }
                        Extra::Parts(list) => {
                            cx.send(id, &out);
                            out.clear();
                            cx.send_parts(id, list.parts, list.len);
                        }
                        Extra::WaitQuery => {
                            used -= n;
                            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                                rc.waiting_list = true;
                            }
                            self.query_waiters.push(id);
                            if !self.query_timer {
                                self.query_timer = true;
                                cx.timer(self.svc, NEXT_TURN, Timer::Query.to_key());
                            }
                            break;
                        }
                        Extra::WaitList => {
                            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                                rc.waiting_list = true;
                            }
                            self.list_waiters.push(id);
                            // After this batch's answers are queued: a small
                            // registry is gathered at once, and its waiters
                            // answered and resumed right away.
                            gather = true;
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
        if gather {
            self.start_gather(cx);
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
        let req = match registry::decode_request(line) {
            Ok(r) => r,
            Err(reason) => {
                Reply::Error(reason.into()).encode(out);
                clock.mark = Instant::now();
                return Extra::None;
            }
        };
        let action = req.action();
        let (bound, over_cap) = match self.conns.get(id) {
            Some(Kind::Registry(rc)) => (rc.host, rc.standing == Standing::OverCap),
            _ => (None, false),
        };
        if over_cap && action != registry::Action::Register {
            Reply::Error("too many connections".into()).encode(out);
            return Extra::Close;
        }
        let context = Context {
            conn: id,
            bound,
            // Asked of the kernel (getpeername), so only for the one action
            // that stores it: once per request cost the held-connection
            // bench about a tenth of its throughput.
            seen_ip: if action == registry::Action::Register {
                cx.peer_addr(id).map(|a| a.ip())
            } else {
                None
            },
            now: clock.unix,
        };
        let (extra, effect) = match self.handle_request(req, &context) {
            Ok((Answer::Reply(reply), effect)) => {
                reply.encode(out);
                (Extra::None, effect)
            }
            Ok((Answer::Pieces(list), effect)) => (Extra::Parts(list), effect),
            Ok((Answer::AfterGather, effect)) => (Extra::WaitList, effect),
            Ok((Answer::AfterQuery, _)) => {
                // Not answered yet: counted when it is read again.
                return Extra::WaitQuery;
            }
            Err(_) if over_cap => {
                Reply::Error("too many connections".into()).encode(out);
                (Extra::Close, Effect::None)
            }
            Err(reason) => {
                Reply::Error(reason.into()).encode(out);
                (Extra::None, Effect::None)
            }
        };
        self.apply(cx, id, effect);
        let end = Instant::now();
        self.stats
            .record(action, end, end.duration_since(clock.mark));
        clock.mark = end;
        extra
    }

    /// Applies what a request changed about who speaks for which host.
    fn apply(&mut self, cx: &mut Ctx, id: ConnId, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Bound {
                host,
                anonymous,
                replaced,
            } => {
                if let Some(old) = replaced {
                    self.unbind(cx, old);
                }
                if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                    rc.host = Some(host);
                    rc.anonymous = anonymous;
                    // The open connection is the host's liveness from now on:
                    // keepalive finds a peer that vanished without a FIN.
                    if !anonymous && !rc.keepalive {
                        rc.keepalive = true;
                        let set = if self.keepalive_inherited {
                            cx.keepalive_on(id)
                        } else {
                            cx.set_keepalive(id, Some(self.keepalive))
                        };
                        if let Err(e) = set {
                            crate::log_warn!("cannot set keepalive on a registry connection: {e}");
                        }
                    }
                }
                self.now_known(id);
            }
            Effect::Removed { host, conn } => {
                if let Some(c) = conn {
                    self.unbind(cx, c);
                }
                if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                    if rc.host == Some(host) {
                        rc.host = None;
                    }
                }
            }
        }
    }

    /// Starts gathering a whole LIST (unless one is on its way: its result
    /// serves every waiter). The first step runs now, the rest a step per
    /// loop turn from a timer, so a small registry answers at once and a
    /// large one never holds the loop longer than a step.
    fn start_gather(&mut self, cx: &mut Ctx) {
        if self.gather.is_none() {
            self.gather = Some(Gather::new(&self.registry, unix_now()));
            self.gather_step(cx);
        }
    }

    /// One time-bounded step of the whole LIST being gathered.
    pub(super) fn gather_step(&mut self, cx: &mut Ctx) {
        let Some(g) = self.gather.as_mut() else {
            return;
        };
        match g.step(&mut self.registry, super::registry::STEP_BUDGET) {
            None => {
                cx.timer(self.svc, NEXT_TURN, Timer::Gather.to_key());
            }
            Some(list) => {
                let (at, version) = (g.started_unix, g.version);
                self.gather = None;
                self.registry.store_list(at, version, list.clone());
                self.list_ready(cx, list);
            }
        }
    }

    /// One step of the query being collected; when it is done, every
    /// connection waiting on a query reads its line again (another query
    /// starts collecting then, if one was waiting behind it).
    pub(super) fn query_step(&mut self, cx: &mut Ctx) {
        self.query_timer = false;
        let done = match self.registry.query_building() {
            Some(q) => self.registry.query_step(&q, super::registry::STEP_BUDGET),
            None => true,
        };
        if !done {
            self.query_timer = true;
            cx.timer(self.svc, NEXT_TURN, Timer::Query.to_key());
            return;
        }
        for id in std::mem::take(&mut self.query_waiters) {
            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                rc.waiting_list = false;
                self.registry_input(cx, id);
            }
        }
    }

    /// A whole LIST is ready: answer everyone waiting, then go on with their lines.
    fn list_ready(&mut self, cx: &mut Ctx, list: ListParts) {
        for id in std::mem::take(&mut self.list_waiters) {
            if let Some(Kind::Registry(rc)) = self.conns.get_mut(id) {
                rc.waiting_list = false;
                cx.send_parts(id, list.parts.clone(), list.len);
                self.registry_input(cx, id);
            }
        }
    }

    /// A registry connection ended: its host goes offline at once (kept).
    /// A host whose token is revoked meanwhile stays registered until then:
    /// revocation refuses the token's next REGISTER, it does not cut a
    /// connection that proved itself before.
    pub(super) fn registry_closed(&mut self, id: ConnId, rc: RegConn) {
        if let Standing::Unbound(ip) = rc.standing {
            self.unbound.remove(ip);
        }
        let Some(k) = rc.host else { return };
        if rc.anonymous {
            return;
        }
        if self.registry.get(k).is_some_and(|h| h.conn == Some(id)) {
            self.registry.set_offline(k);
        }
    }
}
