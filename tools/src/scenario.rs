//! The registry scalability script (registry-bench presets): each simulated client
//! connects, REGISTERs, PUBLISHes its files, REQUESTs, DISCOVERs, PINGs, LISTs, then stays,
//! closes or UNREGISTERs; at most `concurrency` at once. Paced (clients arrive at a rate and
//! think between operations, latency from each operation's intended time) or in a burst
//! (everyone at once, back to back). One shard's share, on one `Net`.

use crate::hist::{OpHist, OpSet, Reasons};
use crate::net::{ConnId, Net, NetEvent};
use crate::pacing::{self, Pacing};
use crate::prng::SplitMix64;
use p2pshare_proto::registry::{FileMeta, HeartbeatState, Request};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The fixed operation list of registry-bench, in report order.
pub static OPS: &[&str] = &[
    "CONNECT",
    "REGISTER",
    "PUBLISH",
    "REQUEST",
    "DISCOVER",
    "PING",
    "LIST",
    "list_page",
    "list_full",
    "UNREGISTER",
];
pub const CONNECT: u8 = 0;
pub const REGISTER: u8 = 1;
pub const PUBLISH: u8 = 2;
pub const REQUEST: u8 = 3;
pub const DISCOVER: u8 = 4;
pub const PING: u8 = 5;
pub const LIST: u8 = 6;
pub const LIST_PAGE: u8 = 7;
pub const LIST_FULL: u8 = 8;
pub const UNREGISTER: u8 = 9;

/// What a client does once its script is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// Keep the connection (and so the registration) until the whole run ends.
    Stay,
    /// Close without UNREGISTER: the host stays in the registry, offline.
    Close,
    /// UNREGISTER, then close.
    Unregister,
}

impl Leave {
    pub fn parse(s: &str) -> Option<Leave> {
        match s {
            "stay" => Some(Leave::Stay),
            "close" => Some(Leave::Close),
            "unregister" => Some(Leave::Unregister),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Leave::Stay => "stay",
            Leave::Close => "close",
            Leave::Unregister => "unregister",
        }
    }
}

/// One shard's part of a run.
pub struct Plan {
    pub addr: SocketAddr,
    pub run: String,
    /// Global index of this shard's first client.
    pub first: usize,
    pub count: usize,
    pub concurrency: usize,
    /// Connects in progress at once (a burst of thousands only measures SYN retries).
    pub connect_burst: usize,
    pub files: usize,
    /// Every n-th client also asks for the full registry (0: never).
    pub full_list_every: usize,
    pub leave: Leave,
    /// The `query` of paged LISTs (None: page the whole registry).
    pub list_query: Option<String>,
    /// One per local client; None sends no token.
    pub tokens: Vec<Option<String>>,
    pub source_ips: usize,
    pub timeout: Duration,
    /// None: burst (all clients at once, each operation right after the last answer).
    pub pacing: Option<Pacing>,
    /// This is shard `.0` of `.1` (arrival slots interleave across shards).
    pub shard: (usize, usize),
}

pub struct Outcome {
    pub ops: OpSet,
    /// Paced runs: how late this tool itself queued a request whose intended time it
    /// was waiting for (its own loop was busy; a request held back by a slow answer to
    /// the one before is not counted). Latencies include it, so a tail here is the load
    /// generator's, not the server's.
    pub send_lag: OpHist,
    pub clients: usize,
    pub clients_ok: usize,
    pub elapsed: Duration,
    pub error_reasons: Reasons,
}

/// Counters for the progress line.
#[derive(Debug, Default, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Prog {
    pub done: u64,
    pub ok: u64,
    pub open: u64,
    pub answered: u64,
    pub errors: u64,
}

pub fn hostname(run: &str, i: usize) -> String {
    format!("bench-{run}-{i}")
}

pub fn file_name(run: &str, i: usize, k: usize) -> String {
    format!("bench-{run}-{i}-{k}.dat")
}

fn fake_sha(name: &str) -> String {
    crate::gen::hex(&Sha256::digest(name.as_bytes()))
}

fn file_size(i: usize, k: usize) -> u64 {
    1024 + ((i * 7919 + k * 104_729) % (50 << 20)) as u64
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Connecting,
    Register,
    Publish(usize),
    Request,
    Discover,
    Ping,
    ListPage,
    ListFull,
    Unregister,
    Finished,
}

struct Client {
    conn: Option<ConnId>,
    step: Step,
    ok: bool,
    /// Position in the `present` list while it can be a REQUEST/DISCOVER target.
    present_at: Option<usize>,
    /// Paced: when the current operation was meant to go out (latency counts from here).
    t0: Instant,
    /// Operations scheduled so far (the think-time index).
    n: usize,
}

struct Run<'a> {
    plan: &'a Plan,
    net: Net,
    clients: Vec<Client>,
    /// Local clients registered with all files published and not yet gone.
    present: Vec<usize>,
    rng: SplitMix64,
    ops: OpSet,
    send_lag: OpHist,
    reasons: Reasons,
    prog: Prog,
    modified: f64,
    /// Paced: clients waiting for their next operation's intended time.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// Run the script for the plan's clients. Returns the outcome and the `Net` still holding
/// the connections of clients that stay (dropping it closes them).
pub fn run(plan: &Plan, mut on_progress: impl FnMut(&Prog)) -> Result<(Outcome, Net), String> {
    let net = Net::new(plan.source_ips, plan.timeout).map_err(|e| format!("poll: {e}"))?;
    let start = Instant::now();
    let mut r = Run {
        plan,
        net,
        clients: (0..plan.count)
            .map(|_| Client {
                conn: None,
                step: Step::Connecting,
                ok: true,
                present_at: None,
                t0: start,
                n: 0,
            })
            .collect(),
        present: Vec::new(),
        rng: SplitMix64::new(plan.first as u64 ^ 0x5eed),
        ops: OpSet::new(OPS),
        send_lag: OpHist::default(),
        reasons: Reasons::default(),
        prog: Prog::default(),
        modified: crate::unix_now() - 86_400.0,
        timers: BinaryHeap::new(),
    };
    let (shard, shards) = plan.shard;
    let arrival = |j: usize| -> Instant {
        match &plan.pacing {
            Some(p) => start + p.arrival(pacing::slot(shard, shards, j)),
            None => start,
        }
    };
    let mut next = 0usize;
    let mut connecting = 0usize;
    let mut events = Vec::new();
    let mut last_prog = Instant::now();
    while (r.prog.done as usize) < plan.count {
        let now = Instant::now();
        let horizon = now + pacing::EARLY;
        let mut wait = Duration::from_millis(50);
        // Operations whose intended time has come go out now, late or not (timed from
        // that time), and those due within `EARLY` a little early (timed from now).
        while let Some(&Reverse((due, i))) = r.timers.peek() {
            if due > horizon {
                wait = wait.min(due - horizon);
                break;
            }
            r.timers.pop();
            // Only here is a late send the tool's own doing: the client was waiting
            // for its time, not for an answer.
            r.send_lag.record(now.saturating_duration_since(due));
            r.send_step(i, due.min(now));
        }
        // Admit arrived clients (burst: all of them), at most `concurrency` open and
        // `connect_burst` connecting. A client admitted late still times its connect from
        // its arrival.
        while next < plan.count
            && r.net.open() < plan.concurrency
            && connecting < plan.connect_burst
        {
            let due = arrival(next);
            if due > horizon {
                wait = wait.min(due - horizon);
                break;
            }
            let i = next;
            next += 1;
            r.clients[i].t0 = due.min(now);
            match r.net.connect(plan.addr, i) {
                Ok(id) => {
                    r.clients[i].conn = Some(id);
                    connecting += 1;
                }
                Err(e) => {
                    r.ops.get(CONNECT as usize).lost += 1;
                    r.reason(&format!("connect: {e}"));
                    r.finish(i, false);
                }
            }
        }
        events.clear();
        r.net
            .turn(Some(wait), &mut events)
            .map_err(|e| format!("poll: {e}"))?;
        for ev in events.drain(..) {
            match ev {
                NetEvent::Connected { id, tag, took } => {
                    connecting -= 1;
                    if r.clients.get(tag).and_then(|c| c.conn) == Some(id) {
                        let took = match plan.pacing {
                            Some(_) => r.clients[tag].t0.elapsed(),
                            None => took,
                        };
                        r.ops.get(CONNECT as usize).record(took);
                        r.prog.answered += 1;
                        r.advance(tag);
                    }
                }
                NetEvent::ConnectFailed { id, tag, error, .. } => {
                    connecting -= 1;
                    if r.clients.get(tag).and_then(|c| c.conn) == Some(id) {
                        r.ops.get(CONNECT as usize).lost += 1;
                        r.reason(&error);
                        r.clients[tag].conn = None;
                        r.finish(tag, false);
                    }
                }
                NetEvent::Reply {
                    id,
                    tag,
                    op,
                    latency,
                    error,
                } => {
                    if r.clients.get(tag).and_then(|c| c.conn) != Some(id) {
                        continue;
                    }
                    r.record(op, latency, error.as_deref());
                    if error.is_some() {
                        r.clients[tag].ok = false;
                        if op == REGISTER {
                            // Nothing after a refused REGISTER would mean anything.
                            r.net.close(id);
                            r.clients[tag].conn = None;
                            r.finish(tag, false);
                            continue;
                        }
                    }
                    r.advance(tag);
                }
                NetEvent::Closed {
                    id,
                    tag,
                    error,
                    lost,
                } => {
                    if r.clients.get(tag).and_then(|c| c.conn) != Some(id) {
                        continue;
                    }
                    for s in &lost {
                        r.ops.get(s.op as usize).lost += 1;
                        r.prog.errors += 1;
                        r.reason(&error);
                    }
                    r.clients[tag].conn = None;
                    if r.clients[tag].step != Step::Finished {
                        if lost.is_empty() {
                            r.reason(&error);
                            r.prog.errors += 1;
                        }
                        r.finish(tag, false);
                    }
                }
            }
        }
        if last_prog.elapsed() >= Duration::from_millis(500) {
            last_prog = Instant::now();
            r.prog.open = r.net.open() as u64;
            on_progress(&r.prog);
        }
    }
    let elapsed = start.elapsed();
    r.prog.open = r.net.open() as u64;
    on_progress(&r.prog);
    let outcome = Outcome {
        ops: r.ops,
        send_lag: r.send_lag,
        clients: plan.count,
        clients_ok: r.prog.ok as usize,
        elapsed,
        error_reasons: r.reasons,
    };
    Ok((outcome, r.net))
}

impl Run<'_> {
    fn reason(&mut self, e: &str) {
        self.reasons.add(e);
    }

    fn record(&mut self, op: u8, latency: Duration, error: Option<&str>) {
        let h = self.ops.get(op as usize);
        h.record(latency);
        if error.is_some() {
            h.errors += 1;
        }
        if op == LIST_PAGE || op == LIST_FULL {
            let l = self.ops.get(LIST as usize);
            l.record(latency);
            if error.is_some() {
                l.errors += 1;
            }
        }
        self.prog.answered += 1;
        if let Some(e) = error {
            self.prog.errors += 1;
            let name = OPS[op as usize];
            self.reason(&format!("{name}: {e}"));
        }
    }

    fn finish(&mut self, i: usize, ok: bool) {
        let c = &mut self.clients[i];
        if c.step == Step::Finished {
            return;
        }
        c.step = Step::Finished;
        c.ok &= ok;
        let good = c.ok;
        self.prog.done += 1;
        if good {
            self.prog.ok += 1;
        }
        self.leave_present(i);
    }

    fn leave_present(&mut self, i: usize) {
        if let Some(at) = self.clients[i].present_at.take() {
            self.present.swap_remove(at);
            if let Some(&moved) = self.present.get(at) {
                self.clients[moved].present_at = Some(at);
            }
        }
    }

    /// A target for REQUEST/DISCOVER: another present client if there is one.
    fn target(&mut self, me: usize) -> usize {
        if self.present.is_empty() {
            return me;
        }
        for _ in 0..3 {
            let t = self.present[self.rng.below(self.present.len() as u64) as usize];
            if t != me {
                return t;
            }
        }
        self.present[0]
    }

    fn next_step(&self, i: usize, s: Step) -> Step {
        let p = self.plan;
        let global = p.first + i;
        let after_lists = if p.leave == Leave::Unregister {
            Step::Unregister
        } else {
            Step::Finished
        };
        match s {
            Step::Connecting => Step::Register,
            Step::Register if p.files > 0 => Step::Publish(0),
            Step::Register => Step::Request,
            Step::Publish(k) if k + 1 < p.files => Step::Publish(k + 1),
            Step::Publish(_) => Step::Request,
            Step::Request => Step::Discover,
            Step::Discover => Step::Ping,
            Step::Ping => Step::ListPage,
            Step::ListPage if p.full_list_every > 0 && global.is_multiple_of(p.full_list_every) => {
                Step::ListFull
            }
            Step::ListPage | Step::ListFull => after_lists,
            Step::Unregister | Step::Finished => Step::Finished,
        }
    }

    /// The client has its answer (or its connection): send the next request.
    fn advance(&mut self, i: usize) {
        let Some(conn) = self.clients[i].conn else {
            return;
        };
        let cur = self.clients[i].step;
        let step = self.next_step(i, cur);
        if matches!(cur, Step::Publish(_)) && !matches!(step, Step::Publish(_)) {
            // All files published: from now on others may ask for this client.
            self.clients[i].present_at = Some(self.present.len());
            self.present.push(i);
        }
        if cur == Step::Register && self.plan.files == 0 && step == Step::Request {
            self.clients[i].present_at = Some(self.present.len());
            self.present.push(i);
        }
        if step == Step::Finished {
            let leave = self.plan.leave;
            if leave != Leave::Stay {
                self.net.close(conn);
                self.clients[i].conn = None;
            }
            self.finish(i, true);
            return;
        }
        self.clients[i].step = step;
        if step == Step::Unregister {
            self.leave_present(i);
        }
        let Some(p) = self.plan.pacing else {
            self.send_step(i, Instant::now());
            return;
        };
        let c = &mut self.clients[i];
        c.n += 1;
        c.t0 += p.think(self.plan.first + i, c.n);
        let due = c.t0;
        let now = Instant::now();
        if due <= now + pacing::EARLY {
            c.t0 = due.min(now);
            let t0 = c.t0;
            self.send_step(i, t0);
        } else {
            self.timers.push(Reverse((due, i)));
        }
    }

    /// Send client `i`'s current step, timed from `t0`; nothing if it is gone meanwhile.
    fn send_step(&mut self, i: usize, t0: Instant) {
        let (Some(conn), step) = (self.clients[i].conn, self.clients[i].step) else {
            return;
        };
        if step == Step::Finished || step == Step::Connecting {
            return;
        }
        let (op, line) = self.line(i, step);
        self.net.send(conn, op, &line, t0);
    }

    fn line(&mut self, i: usize, step: Step) -> (u8, Vec<u8>) {
        let p = self.plan;
        let g = p.first + i;
        let me = hostname(&p.run, g);
        let meta = |size: u64, modified: f64, sha256: String| FileMeta {
            size,
            modified,
            published_at: None,
            is_published: false,
            sha256: Some(sha256),
            root: None,
        };
        let (op, req) = match step {
            Step::Register => {
                let files = (0..p.files)
                    .map(|k| {
                        let name = file_name(&p.run, g, k);
                        let sha = fake_sha(&name);
                        (name, meta(file_size(g, k), self.modified, sha))
                    })
                    .collect();
                let token = p.tokens.get(i).cloned().flatten();
                (
                    REGISTER,
                    Request::Register {
                        hostname: me.into(),
                        port: (10_000 + (g % 50_000)) as u16,
                        ip: Some("127.0.0.1".into()),
                        display_name: Some(format!("Bench client {g}").into()),
                        files,
                        token: token.map(Into::into),
                    },
                )
            }
            Step::Publish(k) => {
                let name = file_name(&p.run, g, k);
                let sha = fake_sha(&name);
                let meta = FileMeta {
                    published_at: Some(crate::unix_now()),
                    is_published: true,
                    ..meta(file_size(g, k), self.modified, sha)
                };
                (
                    PUBLISH,
                    Request::Publish {
                        hostname: me.into(),
                        fname: name.into(),
                        meta,
                    },
                )
            }
            Step::Request => {
                let t = self.target(i);
                let k = self.rng.below(p.files.max(1) as u64) as usize;
                (
                    REQUEST,
                    Request::Request {
                        fname: file_name(&p.run, p.first + t, k).into(),
                        sha256: None,
                    },
                )
            }
            Step::Discover => {
                let t = self.target(i);
                (
                    DISCOVER,
                    Request::Discover {
                        hostname: hostname(&p.run, p.first + t).into(),
                    },
                )
            }
            Step::Ping => (
                PING,
                Request::Ping {
                    hostname: me.into(),
                    state: Some(HeartbeatState::Active),
                },
            ),
            Step::ListPage => {
                let span = (self.present.len() as u64).max(1);
                (
                    LIST_PAGE,
                    Request::List {
                        offset: Some(self.rng.below(span)),
                        limit: Some(100),
                        query: p.list_query.as_deref().map(Into::into),
                    },
                )
            }
            Step::ListFull => (
                LIST_FULL,
                Request::List {
                    offset: None,
                    limit: None,
                    query: None,
                },
            ),
            Step::Unregister => (
                UNREGISTER,
                Request::Unregister {
                    hostname: me.into(),
                },
            ),
            Step::Connecting | Step::Finished => (
                PING,
                Request::Ping {
                    hostname: me.into(),
                    state: None,
                },
            ),
        };
        (op, req.line())
    }
}
