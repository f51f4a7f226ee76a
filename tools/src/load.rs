//! Held connections (registry-bench `--hold`, heartbeat-sim): open, REGISTER and PUBLISH
//! N connections a burst at a time and hand them back registered. It sends no load;
//! `lean` (registry-bench) or the caller's own loop (heartbeat-sim) does.

use crate::hist::{OpSet, Reasons};
use crate::net::{ConnId, Net, NetEvent};
use crate::scenario::{CONNECT, PUBLISH, REGISTER};
use p2pshare_proto::registry::{FileMeta, Request};
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

/// A held host's file as its REGISTER lists it (not yet published) and its
/// PUBLISH announces it.
fn held_meta(now_s: f64, published_at: Option<f64>) -> FileMeta {
    FileMeta {
        size: 4096,
        modified: now_s - 3600.0,
        published_at,
        is_published: published_at.is_some(),
        sha256: None,
        root: None,
    }
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
                    let register = Request::Register {
                        hostname: h.host.as_str().into(),
                        port: (10_000 + (h.index % 50_000)) as u16,
                        ip: Some("127.0.0.1".into()),
                        display_name: Some(h.host.as_str().into()),
                        files: vec![(name, held_meta(now_s, None))],
                        token: plan.tokens.get(tag).cloned().flatten().map(Into::into),
                    };
                    net.send(id, REGISTER, &register.line(), Instant::now());
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
                        let publish = Request::Publish {
                            hostname: hh.host.as_str().into(),
                            fname: held_file(&plan.prefix, hh.index).into(),
                            meta: held_meta(now_s, Some(now_s)),
                        };
                        net.send(id, PUBLISH, &publish.line(), Instant::now());
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
