//! What a run prints and writes: the mode, the CPU split and the percentile tables, and the JSON.

use crate::parent::cores;
use crate::parent::success_rate;
use crate::parent::Pass;
use crate::Cfg;
use crate::TOOL;
use p2pshare_tools::proc::{self};
use p2pshare_tools::report::{round, thousands, write_json};
use p2pshare_tools::scenario::Leave;
use serde_json::json;

/// The run's mode for the header and the JSON, and what it means.
pub(crate) fn mode_of(cfg: &Cfg) -> (&'static str, String) {
    match (&cfg.pacing, cfg.hold) {
        (_, Some(_)) => (
            "hold",
            match cfg.rate {
                Some(r) => format!(
                    "held connections, open loop at {r} requests/s, latency from each request's intended send time (lean client)"
                ),
                None => format!(
                    "held connections, closed loop with {} outstanding per connection (lean client)",
                    cfg.pipeline
                ),
            },
        ),
        (Some(p), None) => (
            "paced",
            format!(
                "clients arrive at {:.0}/s (open loop) and think {:.0} ms ±{:.0}% before each \
                 operation; latency from each operation's intended send time",
                p.arrival_rate,
                p.think.as_secs_f64() * 1000.0,
                p.jitter * 100.0
            ),
        ),
        (None, None) => (
            "burst",
            "the seed's run: all clients at once, each operation right after the last answer; \
             latencies include queueing behind every other client's requests (Little's law: \
             in-flight / throughput), a stress figure"
                .to_string(),
        ),
    }
}

/// CPU next to the throughput, and which side bounds the run on this machine. `rest` is
/// this process's CPU when it is not the server; what the machine used beyond all of them
/// is other processes' and unattributed kernel work.
pub(crate) fn cpu_line(
    name: &str,
    server: Option<f64>,
    clients: Option<f64>,
    rest: Option<f64>,
    machine: Option<proc::MachineUse>,
    shards: usize,
) -> String {
    let cores = cores() as f64;
    let fmt = |x: Option<f64>| x.map_or("n/a".to_string(), |v| format!("{v:.0}%"));
    // A process's own time includes the softirq work done in its context, which
    // /proc/stat books apart: compare ours with both.
    let others = machine.map(|m| {
        (m.procs_pct + m.irq_pct
            - server.unwrap_or(0.0)
            - clients.unwrap_or(0.0)
            - rest.unwrap_or(0.0))
        .max(0.0)
    });
    let contended = match others {
        Some(o) if o >= 25.0 => format!(
            "\n  warning: other work used {o:.0}% of a core during the run: the machine was shared, repeat it"
        ),
        _ => String::new(),
    };
    let bound = match (server, clients) {
        (Some(s), _) if s >= 90.0 => format!("bound: the {name} (its one loop is busy)"),
        // The kernel's share of loopback traffic shows in neither process: 85% is full.
        (Some(s), Some(c)) if s + c >= 85.0 * cores => {
            format!("bound: this machine's CPU (the {name} and the clients share it)")
        }
        (_, Some(c)) if c >= 90.0 * shards as f64 => "bound: the client processes".into(),
        (Some(_), Some(_)) => "bound: neither CPU is full (round trips or the offered rate)".into(),
        _ => "bound: unknown (give --coordinator-pid)".into(),
    };
    format!(
        "cpu (of one core): {name} {}  clients {} over {shards} process(es)  machine: processes {} + softirq {} of {:.0}% (others {})  {bound}{contended}",
        fmt(server),
        fmt(clients),
        fmt(machine.map(|m| m.procs_pct)),
        fmt(machine.map(|m| m.irq_pct)),
        cores * 100.0,
        fmt(others),
    )
}

pub(crate) fn report(
    cfg: &Cfg,
    conns: usize,
    shards: usize,
    main: &Pass,
    cstats: Option<p2pshare_tools::proc::Stats>,
    own: Option<&p2pshare_tools::server_stats::Seen>,
    reference: Option<&Pass>,
) {
    let preset = cfg.preset.clone().unwrap_or_else(|| "custom".into());
    let (mode, how) = mode_of(cfg);
    println!(
        "registry-bench  preset {preset}  mode {mode}  run {}  clients {}  concurrency {}  processes {shards}",
        cfg.run,
        thousands(cfg.clients as u64),
        thousands(conns as u64)
    );
    println!("mode {mode}: {how}");
    println!("coordinator {}", cfg.coordinator);
    print!("{}", main.ops.table());
    if let Some(o) = own {
        print!("{}", o.table());
    }
    println!(
        "duration {:.3} s  success_rate {:.4}  answers {}  throughput {:.0} responses/s",
        main.duration_s,
        success_rate(main),
        thousands(main.answered),
        main.throughput_rps
    );
    println!(
        "{}",
        cpu_line(
            "coordinator",
            cstats.map(|s| s.cpu_mean_pct),
            main.clients_cpu_pct,
            main.own_cpu_pct,
            main.machine_cpu_pct,
            shards
        )
    );
    let lag = main.send_lag.as_ref().map(|h| h.summary());
    if let Some(l) = &lag {
        println!(
            "load generator's own lateness (intended time -> request queued): p50 {:.3} ms  p99 {:.3} ms  \
             p99.9 {:.3} ms  max {:.3} ms (in every latency above; the tool's, not the server's)",
            l.p50_ms, l.p99_ms, l.p999_ms, l.max_ms
        );
    }
    if let Some((run_ms, wait_ms)) = main.coord_sched_ms {
        println!(
            "coordinator loop thread: {run_ms:.0} ms on a CPU, {wait_ms:.0} ms ready but waiting for one \
             ({:.1}% of the run: the machine's share of every latency, not the server's)",
            100.0 * wait_ms / (main.duration_s * 1000.0).max(1.0)
        );
    }
    let mut coordinator = json!({
        "cpu_mean_pct": null, "cpu_peak_pct": null, "rss_mean_mb": null, "peak_rss_mb": null,
    });
    if let Some(s) = cstats {
        println!(
            "coordinator cpu mean {:.1}% peak {:.1}%  rss mean {:.1} MB peak {:.1} MB (hwm {:.1} MB)",
            s.cpu_mean_pct, s.cpu_peak_pct, s.rss_mean_mb, s.rss_peak_mb, s.hwm_mb
        );
        coordinator = json!({
            "cpu_mean_pct": round(s.cpu_mean_pct, 1),
            "cpu_peak_pct": round(s.cpu_peak_pct, 1),
            "rss_mean_mb": round(s.rss_mean_mb, 1),
            "peak_rss_mb": round(s.rss_peak_mb, 1),
            "hwm_mb": round(s.hwm_mb, 1),
        });
    }
    let mut out = json!({
        "preset": preset,
        "mode": mode,
        "clients": cfg.clients,
        "concurrency": conns,
        "duration_s": round(main.duration_s, 3),
        "success_rate": round(success_rate(main), 6),
        "throughput_rps": round(main.throughput_rps, 1),
        "ops": main.ops.summary_json(),
        "coordinator": coordinator,
        "run": cfg.run,
        "processes": shards,
        "error_reasons": main.reasons.to_json(),
        "coordinator_own": own.map(|o| o.to_json()),
        "tool_send_lag": lag.map(|l| l.to_json()),
        "coordinator_sched_ms": main.coord_sched_ms.map(|(r, w)| json!({"on_cpu": round(r, 1), "runqueue_wait": round(w, 1)})),
    });
    if cfg.hold.is_none() {
        out["files_per_client"] = json!(cfg.files);
        out["leave"] = json!(cfg.leave.map(Leave::name));
        out["full_list_every"] = json!(cfg.full_list_every);
        out["list_query"] = json!(match cfg.list_query.as_deref() {
            Some("none") => None,
            Some(q) => Some(q.to_string()),
            None => Some(format!("bench-{}-", cfg.run)),
        });
    } else {
        let per_conn_kb = match (main.rss_before_mb, main.rss_after_mb) {
            (Some(b), Some(a)) if main.ready > 0 => Some((a - b) * 1024.0 / main.ready as f64),
            _ => None,
        };
        println!(
            "held {} connections ({} registered); {}",
            thousands(conns as u64),
            thousands(main.ready),
            match cfg.rate {
                Some(r) => format!("open loop at {r} requests/s (latency from intended send time)"),
                None => format!("closed loop, {} outstanding per connection", cfg.pipeline),
            }
        );
        if let (Some(b), Some(a), Some(k)) = (main.rss_before_mb, main.rss_after_mb, per_conn_kb) {
            println!("coordinator rss before {b:.1} MB, after registering {a:.1} MB: {k:.2} KB per connection");
        }
        out["coordinator"]["rss_before_mb"] = json!(main.rss_before_mb.map(|x| round(x, 1)));
        out["coordinator"]["rss_after_mb"] = json!(main.rss_after_mb.map(|x| round(x, 1)));
        out["coordinator"]["rss_per_conn_kb"] = json!(per_conn_kb.map(|x| round(x, 2)));
        out["hold"] = json!({
            "connections": conns,
            "registered": main.ready,
            "mode": if cfg.rate.is_some() { "open" } else { "closed" },
            "rate_rps": cfg.rate,
            "pipeline": cfg.pipeline,
            "ping_share": cfg.ping_share,
        });
    }
    if !main.reasons.0.is_empty() {
        println!("errors by reason:\n{}", main.reasons.top(8).trim_end());
    }
    if let Some(r) = reference {
        println!("reference: echo server in this process, same connections and request lines");
        print!("{}", r.ops.table());
        let ratio = if r.throughput_rps > 0.0 {
            main.throughput_rps / r.throughput_rps
        } else {
            0.0
        };
        println!(
            "reference duration {:.3} s  throughput {:.0} responses/s  coordinator/reference {:.3}",
            r.duration_s, r.throughput_rps, ratio
        );
        println!(
            "reference {}",
            cpu_line(
                "echo server",
                r.own_cpu_pct,
                r.clients_cpu_pct,
                None,
                r.machine_cpu_pct,
                shards
            )
        );
        out["reference"] = json!({
            "duration_s": round(r.duration_s, 3),
            "success_rate": round(success_rate(r), 6),
            "throughput_rps": round(r.throughput_rps, 1),
            "ops": r.ops.summary_json(),
            "ratio": round(ratio, 4),
        });
    }
    if let Some(p) = &cfg.json {
        write_json(TOOL, p, &out);
    }
}
