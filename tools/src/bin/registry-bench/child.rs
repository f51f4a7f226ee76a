//! The child side: one shard of the load (a scenario slice or held connections), reporting histograms to the parent as JSON lines.

use crate::Cfg;
use p2pshare_proto::registry::{HeartbeatState, Request};
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::lean::{self, Lean};
use p2pshare_tools::load::{self, HoldPlan};
use p2pshare_tools::rlimit;
use p2pshare_tools::scenario::{self, Leave, Plan, OPS, PING, REQUEST};
use p2pshare_tools::shard::{self};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// Response lines received: every operation but CONNECT (not a request) and LIST (the sum
/// of list_page and list_full, which are counted themselves).
pub(crate) fn responses(ops: &OpSet) -> u64 {
    ops.names
        .iter()
        .zip(&ops.ops)
        .filter(|(n, _)| **n != "CONNECT" && **n != "LIST")
        .map(|(_, o)| o.hist.len())
        .sum()
}

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
    match cfg.hold {
        Some(total) => child_hold(cfg, addr, total, i, n),
        None => child_scenario(cfg, addr, i, n),
    }
}

pub(crate) fn tokens_for(cfg: &Cfg, names: &[String]) -> Vec<Option<String>> {
    cfg.auth
        .tokens(names, cfg.token_threads)
        .unwrap_or_else(|e| child_fail(format!("getting tokens: {e}")))
}

pub(crate) fn child_scenario(cfg: &Cfg, addr: SocketAddr, i: usize, n: usize) {
    let (first, count) = shard::split(cfg.clients, i, n);
    let (_, concurrency) = shard::split(cfg.concurrency.unwrap_or(cfg.clients), i, n);
    let names: Vec<String> = (first..first + count)
        .map(|g| scenario::hostname(&cfg.run, g))
        .collect();
    let tokens = tokens_for(cfg, &names);
    let plan = Plan {
        addr,
        run: cfg.run.clone(),
        first,
        count,
        concurrency: concurrency.max(1),
        connect_burst: cfg.connect_burst,
        files: cfg.files,
        full_list_every: cfg.full_list_every.unwrap_or(100),
        leave: cfg.leave.unwrap_or(Leave::Stay),
        list_query: match cfg.list_query.as_deref() {
            Some("none") => None,
            Some(q) => Some(q.to_string()),
            None => Some(format!("bench-{}-", cfg.run)),
        },
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
        pacing: cfg.pacing,
        shard: (i, n),
    };
    // Every shard starts its clock at the same GO, so arrivals interleave as planned.
    shard::emit("READY {}");
    if !shard::wait_go() {
        return;
    }
    let res = scenario::run(&plan, |p| {
        shard::emit(&format!("PROG {}", json!(p)));
    });
    let (out, net) = res.unwrap_or_else(|e| child_fail(e));
    shard::emit(&format!(
        "RESULT {}",
        json!({
            "ops": out.ops.to_wire(),
            "send_lag": out.send_lag.to_wire(),
            "clients": out.clients,
            "clients_ok": out.clients_ok,
            "elapsed_s": out.elapsed.as_secs_f64(),
            "answered": responses(&out.ops),
            "reasons": out.error_reasons.to_json(),
        })
    ));
    // Clients that stay keep their connections until every shard is done.
    shard::wait_line();
    drop(net);
}

pub(crate) fn child_hold(cfg: &Cfg, addr: SocketAddr, total: usize, i: usize, n: usize) {
    let (first, count) = shard::split(total, i, n);
    let prefix = format!("bench-{}-h", cfg.run);
    let names: Vec<String> = (first..first + count)
        .map(|g| format!("{prefix}-{g}"))
        .collect();
    let tokens = tokens_for(cfg, &names);
    let plan = HoldPlan {
        addr,
        prefix: prefix.clone(),
        first,
        count,
        connect_burst: cfg.connect_burst,
        tokens,
        source_ips: cfg.source_ips,
        timeout: Duration::from_secs_f64(cfg.timeout),
    };
    let mut ops = OpSet::new(OPS);
    let mut reasons = Reasons::default();
    let (mut net, held) = load::setup(&plan, &mut ops, &mut reasons, |ready, finished| {
        shard::emit(&format!(
            "PROG {}",
            json!({"done": finished, "ok": ready, "open": ready})
        ));
    })
    .unwrap_or_else(|e| child_fail(e));
    // Lines are built once; the hot loop only copies them.
    let streams: Vec<_> = held
        .iter()
        .filter_map(|h| {
            let stream = net.take(h.id?)?;
            let ping = Request::Ping {
                hostname: h.host.as_str().into(),
                state: Some(HeartbeatState::Active),
            };
            let target = load::held_file(&prefix, (h.index + 1) % total.max(1));
            let req = Request::Request {
                fname: target.into(),
                sha256: None,
            };
            Some((stream, [ping.line(), req.line()]))
        })
        .collect();
    let ready = streams.len();
    let mut lean = Lean::new(streams).unwrap_or_else(|e| child_fail(format!("poll: {e}")));
    drop(net);
    shard::emit(&format!("READY {}", json!({"ready": ready})));
    if !shard::wait_go() {
        return;
    }
    let spec = lean::Spec {
        duration: Duration::from_secs_f64(cfg.duration),
        rate: cfg.rate.map(|r| r / n as f64),
        pipeline: cfg.pipeline,
        first_share: cfg.ping_share,
        ops: [PING, REQUEST],
        timeout: Duration::from_secs_f64(cfg.timeout),
        seed: first as u64 + 1,
    };
    let res = lean
        .run(&spec, &mut ops, &mut reasons, |sent, answered, errors| {
            shard::emit(&format!(
                "PROG {}",
                json!({"sent": sent, "answered": answered, "errors": errors, "open": ready})
            ));
        })
        .unwrap_or_else(|e| child_fail(e));
    shard::emit(&format!(
        "RESULT {}",
        json!({
            "ops": ops.to_wire(),
            "clients": count,
            "clients_ok": ready as u64 - res.conns_lost.min(ready as u64),
            "elapsed_s": res.window.as_secs_f64(),
            "answered": res.answered,
            "answered_in_window": res.answered_in_window,
            "sent": res.sent,
            "reasons": reasons.to_json(),
        })
    ));
    shard::wait_line();
    drop(lean);
}
