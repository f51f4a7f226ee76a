//! The child side: one shard of simulated nodes sending heartbeats on a schedule (fixed, adaptive, or only on state change).

use crate::state_of;
use crate::Cfg;
use crate::STATES;
use p2pshare_proto::registry::Request;
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::load::{self, HoldPlan};
use p2pshare_tools::net::NetEvent;
use p2pshare_tools::pacing;
use p2pshare_tools::prng::SplitMix64;
use p2pshare_tools::rlimit;
use p2pshare_tools::scenario::{OPS, PING};
use p2pshare_tools::shard::{self};
use serde_json::json;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(crate) fn child_fail(msg: impl std::fmt::Display) -> ! {
    shard::emit(&format!("FAIL {msg}"));
    std::process::exit(2)
}

pub(crate) fn child(cfg: &Cfg, i: usize, n: usize) {
    rlimit::raise_nofile();
    let addr: SocketAddr = cfg
        .coordinator
        .parse()
        .unwrap_or_else(|e| child_fail(format!("bad target {}: {e}", cfg.coordinator)));
    let conns_total = cfg.connections.unwrap_or(cfg.clients).min(cfg.clients);
    let (cfirst, ccount) = shard::split(conns_total, i, n);
    let (first, count) = shard::split(cfg.clients, i, n);
    let prefix = format!("bench-{}-b", cfg.run);
    let names: Vec<String> = (cfirst..cfirst + ccount)
        .map(|g| format!("{prefix}-{g}"))
        .collect();
    let tokens = cfg
        .auth
        .tokens(&names, cfg.token_threads)
        .unwrap_or_else(|e| child_fail(format!("getting tokens: {e}")));
    let plan = HoldPlan {
        addr,
        prefix,
        first: cfirst,
        count: ccount,
        connect_burst: cfg.connect_burst,
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
    };
    let mut setup_ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let (mut net, mut held) = load::setup(&plan, &mut setup_ops, &mut reasons, |ready, done| {
        shard::emit(&format!("PROG {}", json!({"ok": ready, "done": done})));
    })
    .unwrap_or_else(|e| child_fail(e));
    let ready = held.iter().filter(|h| h.id.is_some()).count();
    shard::emit(&format!(
        "READY {}",
        json!({"ready": ready, "ops": setup_ops.to_wire(), "reasons": reasons.to_json()})
    ));
    // PING lines per connection and state, built once.
    let lines: Vec<[Vec<u8>; 3]> = held
        .iter()
        .map(|h| {
            STATES.map(|st| {
                Request::Ping {
                    hostname: h.host.as_str().into(),
                    state: Some(st),
                }
                .line()
            })
        })
        .collect();
    let states: Vec<usize> = (first..first + count)
        .map(|c| state_of(&cfg.mix, c))
        .collect();
    // `GO <fixed|adaptive|connection> <time scale>` runs one strategy; anything else ends
    // the child.
    while let Some(line) = shard::wait_line() {
        let mut words = line.split_whitespace();
        if words.next() != Some("GO") {
            return;
        }
        let strategy = words.next().unwrap_or("fixed").to_string();
        let scale = words
            .next()
            .and_then(|w| w.parse::<f64>().ok())
            .filter(|x| *x > 0.0)
            .unwrap_or(cfg.scale);
        let mut ops = OpSet::new(OPS);
        let mut reasons = Reasons::default();
        let interval_of = |s: usize| cfg.interval(&strategy, s);
        let out = phase(
            &mut net,
            &mut held,
            &lines,
            &states,
            &interval_of,
            cfg,
            scale,
            first,
            &mut ops,
            &mut reasons,
        )
        .unwrap_or_else(|e| child_fail(e));
        shard::emit(&format!(
            "RESULT {}",
            json!({
                "ops": ops.to_wire(),
                "reasons": reasons.to_json(),
                "sent": out.0,
                "answered": out.1,
                "answered_in_window": out.2,
            })
        ));
    }
}

/// One strategy's run: every simulated client PINGs at its (scaled) interval from a random
/// phase, over connection `client % connections`. Returns (sent, answered, answered within
/// the window).
#[allow(clippy::too_many_arguments)]
pub(crate) fn phase(
    net: &mut p2pshare_tools::net::Net,
    held: &mut [load::Held],
    lines: &[[Vec<u8>; 3]],
    states: &[usize],
    interval_of: &dyn Fn(usize) -> f64,
    cfg: &Cfg,
    scale: f64,
    first: usize,
    ops: &mut OpSet,
    reasons: &mut Reasons,
) -> Result<(u64, u64, u64), String> {
    let start = Instant::now();
    let window = Duration::from_secs_f64(cfg.duration);
    let end = start + window;
    let nconn = held.len();
    let mut rng = SplitMix64::new(first as u64 + 17);
    // Due times in nanoseconds since `start`.
    let period_ns: Vec<u64> = states
        .iter()
        .map(|&s| (interval_of(s) / scale * 1e9) as u64)
        .collect();
    let mut heap: BinaryHeap<Reverse<(u64, u32)>> = period_ns
        .iter()
        .enumerate()
        .map(|(c, &p)| Reverse(((rng.unit() * p as f64) as u64, c as u32)))
        .collect();
    let (mut sent, mut answered, mut in_window, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let mut events = Vec::new();
    let mut last = Instant::now();
    let end_ns = window.as_nanos() as u64;
    let drain_until = end + Duration::from_secs(10);
    loop {
        let now = Instant::now();
        let now_ns = now.duration_since(start).as_nanos() as u64;
        let mut wait = Duration::from_millis(50);
        let early_ns = pacing::EARLY.as_nanos() as u64;
        // What is due goes out, timed from its intended time; what falls due within
        // `EARLY` goes out a little early, timed from now.
        while let Some(&Reverse((due, c))) = heap.peek() {
            if due >= end_ns {
                break;
            }
            if due > now_ns + early_ns {
                wait = wait.min(Duration::from_nanos(due - now_ns - early_ns));
                break;
            }
            heap.pop();
            let c = c as usize;
            if nconn > 0 {
                let k = (first + c) % nconn;
                match held[k].id {
                    Some(id) => {
                        net.send(
                            id,
                            PING,
                            &lines[k][states[c]],
                            start + Duration::from_nanos(due.min(now_ns)),
                        );
                        sent += 1;
                    }
                    None => ops.get(PING as usize).lost += 1,
                }
            }
            heap.push(Reverse((due + period_ns[c].max(1), c as u32)));
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
                    answered += 1;
                    if t <= end {
                        in_window += 1;
                    }
                    if let Some(e) = error {
                        h.errors += 1;
                        errors += 1;
                        reasons.add(&format!("PING: {e}"));
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
                    ops.get(PING as usize).lost += lost.len() as u64;
                    errors += lost.len() as u64;
                    reasons.add_n(&format!("connection: {error}"), lost.len().max(1) as u64);
                }
                NetEvent::Connected { .. } => {}
            }
        }
        if last.elapsed() >= Duration::from_millis(500) {
            last = Instant::now();
            shard::emit(&format!(
                "PROG {}",
                json!({"sent": sent, "answered": answered, "errors": errors})
            ));
        }
    }
    Ok((sent, answered, in_window))
}
