//! Held connections and steady load through them (registry-bench `--hold`, heartbeat-sim):
//! open and register N connections, then drive request lines open-loop at a rate (timed
//! from each request's intended send time) or closed-loop with D outstanding per
//! connection. It decides nothing about which lines are sent; callers build them.

use crate::hist::{OpSet, Reasons};
use crate::net::{ConnId, Net, NetEvent};
use crate::scenario::{CONNECT, PUBLISH, REGISTER};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// One registered connection.
pub struct Held {
    pub id: Option<ConnId>,
    pub host: String,
    /// Global index (across shards).
    pub index: usize,
}

pub struct HoldPlan {
    pub addr: SocketAddr,
    /// Host names are `<prefix>-<index>`; each publishes `<prefix>-<index>.dat`.
    pub prefix: String,
    pub first: usize,
    pub count: usize,
    pub connect_burst: usize,
    pub tokens: Vec<Option<String>>,
    pub source_ips: usize,
    pub timeout: Duration,
}

pub fn held_file(prefix: &str, index: usize) -> String {
    format!("{prefix}-{index}.dat")
}

fn line(action: &str, data: Value) -> Vec<u8> {
    let mut s = json!({"action": action, "data": data}).to_string();
    s.push('\n');
    s.into_bytes()
}

/// Open, REGISTER and PUBLISH (one file) `count` connections, `connect_burst` at a time.
/// Setup latencies go to `ops`. Returns the net and every connection (dead ones have no id).
pub fn setup(
    plan: &HoldPlan,
    ops: &mut OpSet,
    reasons: &mut Reasons,
    mut progress: impl FnMut(usize, usize),
) -> Result<(Net, Vec<Held>), String> {
    let mut net = Net::new(plan.source_ips, plan.timeout).map_err(|e| format!("poll: {e}"))?;
    let mut held: Vec<Held> = (0..plan.count)
        .map(|i| Held {
            id: None,
            host: format!("{}-{}", plan.prefix, plan.first + i),
            index: plan.first + i,
        })
        .collect();
    // 0: not started, 1: connecting, 2: registering, 3: publishing, 4: ready, 5: failed
    let mut state = vec![0u8; plan.count];
    let (mut next, mut busy, mut finished, mut ready) = (0usize, 0usize, 0usize, 0usize);
    let mut events = Vec::new();
    let mut last = Instant::now();
    let now_s = crate::unix_now();
    while finished < plan.count {
        while next < plan.count && busy < plan.connect_burst {
            let i = next;
            next += 1;
            match net.connect(plan.addr, i) {
                Ok(id) => {
                    held[i].id = Some(id);
                    state[i] = 1;
                    busy += 1;
                }
                Err(e) => {
                    ops.get(CONNECT as usize).lost += 1;
                    reasons.add(&format!("connect: {e}"));
                    state[i] = 5;
                    finished += 1;
                }
            }
        }
        events.clear();
        net.turn(Some(Duration::from_millis(50)), &mut events)
            .map_err(|e| format!("poll: {e}"))?;
        for ev in events.drain(..) {
            match ev {
                NetEvent::Connected { id, tag, took } => {
                    if held[tag].id != Some(id) {
                        continue;
                    }
                    ops.get(CONNECT as usize).record(took);
                    state[tag] = 2;
                    let h = &held[tag];
                    let name = held_file(&plan.prefix, h.index);
                    let mut d = json!({
                        "hostname": h.host, "port": 10_000 + (h.index % 50_000),
                        "ip": "127.0.0.1", "display_name": h.host,
                        "files_metadata": {name: {"size": 4096, "modified": now_s - 3600.0,
                            "is_published": false}},
                    });
                    if let Some(Some(t)) = plan.tokens.get(tag) {
                        d["token"] = Value::String(t.clone());
                    }
                    net.send(id, REGISTER, &line("REGISTER", d), Instant::now());
                }
                NetEvent::Reply {
                    id,
                    tag,
                    op,
                    latency,
                    error,
                } => {
                    if held[tag].id != Some(id) {
                        continue;
                    }
                    let h = ops.get(op as usize);
                    h.record(latency);
                    if let Some(e) = error {
                        h.errors += 1;
                        reasons.add(&format!("{}: {e}", crate::scenario::OPS[op as usize]));
                        net.close(id);
                        held[tag].id = None;
                        state[tag] = 5;
                        busy -= 1;
                        finished += 1;
                        continue;
                    }
                    if state[tag] == 2 {
                        state[tag] = 3;
                        let hh = &held[tag];
                        let d = json!({"hostname": hh.host,
                            "fname": held_file(&plan.prefix, hh.index), "size": 4096,
                            "modified": now_s - 3600.0, "published_at": now_s});
                        net.send(id, PUBLISH, &line("PUBLISH", d), Instant::now());
                    } else {
                        state[tag] = 4;
                        busy -= 1;
                        finished += 1;
                        ready += 1;
                    }
                }
                NetEvent::ConnectFailed { id, tag, error, .. }
                | NetEvent::Closed { id, tag, error, .. } => {
                    if held[tag].id != Some(id) {
                        continue;
                    }
                    let op = match state[tag] {
                        1 => CONNECT,
                        2 => REGISTER,
                        3 => PUBLISH,
                        // A ready connection dropped while others were still setting up.
                        _ => {
                            reasons.add(&format!("held connection: {error}"));
                            held[tag].id = None;
                            ready -= 1;
                            continue;
                        }
                    };
                    ops.get(op as usize).lost += 1;
                    reasons.add(&error);
                    held[tag].id = None;
                    state[tag] = 5;
                    busy -= 1;
                    finished += 1;
                }
            }
        }
        if last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            progress(ready, finished);
        }
    }
    progress(ready, finished);
    Ok((net, held))
}

/// How a load phase sends.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub duration: Duration,
    /// Requests per second for this process (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// Closed loop: requests outstanding per connection (written together at the start).
    pub pipeline: usize,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct LoadOutcome {
    pub sent: u64,
    /// Answers received inside the window (what throughput is computed from).
    pub answered_in_window: u64,
    pub answered: u64,
    pub window: Duration,
    pub conns_lost: u64,
}

/// Drive load through `held` for `spec.duration`. `next_line(conn_index)` gives the
/// operation and line to send next on that connection. Latency of a request counts from
/// its intended send time. `progress(sent, answered, errors)` is called twice a second.
pub fn run_load(
    net: &mut Net,
    held: &mut [Held],
    spec: &LoadSpec,
    ops: &mut OpSet,
    reasons: &mut Reasons,
    mut next_line: impl FnMut(usize) -> (u8, Vec<u8>),
    mut progress: impl FnMut(u64, u64, u64),
) -> Result<LoadOutcome, String> {
    let alive: Vec<usize> = (0..held.len()).filter(|&i| held[i].id.is_some()).collect();
    let mut out = LoadOutcome::default();
    if alive.is_empty() {
        return Ok(out);
    }
    let start = Instant::now();
    let end = start + spec.duration;
    let mut errors = 0u64;
    if spec.rate.is_none() {
        for &i in &alive {
            if let Some(id) = held[i].id {
                for _ in 0..spec.pipeline.max(1) {
                    let (op, l) = next_line(i);
                    net.send(id, op, &l, Instant::now());
                    out.sent += 1;
                }
            }
        }
    }
    let mut k: u64 = 0;
    let mut rr = 0usize;
    let mut events = Vec::new();
    let mut last = Instant::now();
    let drain_until = end + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        let mut wait = Duration::from_millis(50);
        if let Some(rate) = spec.rate {
            // Everything whose intended time has come goes out now, late or not; its latency
            // still counts from the intended time.
            loop {
                let due = start + Duration::from_secs_f64(k as f64 / rate);
                if due >= end {
                    break;
                }
                if due > now {
                    wait = wait.min(due - now);
                    break;
                }
                let mut tries = 0;
                while tries < alive.len() && held[alive[rr % alive.len()]].id.is_none() {
                    rr += 1;
                    tries += 1;
                }
                let i = alive[rr % alive.len()];
                rr += 1;
                if let Some(id) = held[i].id {
                    let (op, l) = next_line(i);
                    net.send(id, op, &l, due);
                    out.sent += 1;
                } else {
                    // No connection left: the request is lost.
                    ops.get(next_line(i).0 as usize).lost += 1;
                }
                k += 1;
            }
        }
        if now >= end {
            let pending: usize = held
                .iter()
                .filter_map(|h| h.id)
                .map(|id| net.in_flight(id))
                .sum();
            if pending == 0 || now >= drain_until {
                break;
            }
        }
        events.clear();
        net.turn(Some(wait), &mut events)
            .map_err(|e| format!("poll: {e}"))?;
        let t = Instant::now();
        for ev in events.drain(..) {
            match ev {
                NetEvent::Reply {
                    id,
                    tag,
                    op,
                    latency,
                    error,
                } => {
                    if held.get(tag).and_then(|h| h.id) != Some(id) {
                        continue;
                    }
                    let h = ops.get(op as usize);
                    h.record(latency);
                    out.answered += 1;
                    if t <= end {
                        out.answered_in_window += 1;
                    }
                    if let Some(e) = error {
                        h.errors += 1;
                        errors += 1;
                        reasons.add(&format!("{}: {e}", crate::scenario::OPS[op as usize]));
                    }
                    if spec.rate.is_none() && t < end {
                        let (op, l) = next_line(tag);
                        net.send(id, op, &l, t);
                        out.sent += 1;
                    }
                }
                NetEvent::Closed {
                    id,
                    tag,
                    error,
                    lost,
                }
                | NetEvent::ConnectFailed {
                    id,
                    tag,
                    error,
                    lost,
                    ..
                } => {
                    if held.get(tag).and_then(|h| h.id) != Some(id) {
                        continue;
                    }
                    held[tag].id = None;
                    out.conns_lost += 1;
                    for s in &lost {
                        ops.get(s.op as usize).lost += 1;
                    }
                    errors += lost.len() as u64;
                    reasons.add_n(&error, lost.len().max(1) as u64);
                }
                NetEvent::Connected { .. } => {}
            }
        }
        if last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            progress(out.sent, out.answered, errors);
        }
    }
    out.window = spec.duration;
    progress(out.sent, out.answered, errors);
    Ok(out)
}
