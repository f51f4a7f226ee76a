//! What a run prints and writes: per strategy, requests, CPU and latency, and the reduction against the fixed schedule.

use crate::parent::PhaseReport;
use crate::parent::Reference;
use crate::Cfg;
use crate::HB_OPS;
use crate::SEED_MIX;
use crate::STRATEGIES;
use crate::TOOL;
use p2pshare_tools::hist::{OpSet, Reasons};
use p2pshare_tools::report::{round, thousands, write_json};
use serde_json::{json, Value};

/// What the whole run was, apart from its strategies.
pub(crate) struct Ran {
    pub(crate) conns: usize,
    pub(crate) processes: usize,
    pub(crate) registered: u64,
    /// The time scale both strategies finally ran at.
    pub(crate) scale: f64,
    /// Runs repeated at a smaller scale because they were saturated.
    pub(crate) lowered: Vec<Value>,
    pub(crate) reference: Option<Reference>,
}

pub(crate) fn report(
    cfg: &Cfg,
    run: &Ran,
    setup: &OpSet,
    setup_reasons: &Reasons,
    phases: &[PhaseReport],
) {
    let (conns, processes, registered, scale) =
        (run.conns, run.processes, run.registered, run.scale);
    let pooled = conns < cfg.clients;
    let n = cfg.clients as f64;
    let scheduled = STRATEGIES.map(|st| {
        (0..3)
            .map(|s| n * cfg.mix[s] / cfg.interval(st, s))
            .sum::<f64>()
    });
    println!(
        "heartbeat-sim  run {}  clients {}  connections {} ({} registered){}  processes {processes}",
        cfg.run,
        thousands(cfg.clients as u64),
        thousands(conns as u64),
        thousands(registered),
        if pooled {
            "  [clients share a pool of connections: more clients than fit]"
        } else {
            ""
        }
    );
    println!(
        "mix idle {:.2} active {:.2} busy {:.2} ({})",
        cfg.mix[0],
        cfg.mix[1],
        cfg.mix[2],
        if cfg
            .mix
            .iter()
            .zip(SEED_MIX)
            .all(|(a, b)| (a - b).abs() < 1e-9)
        {
            "the default: the mix behind the seed's 684 req/s for 100,000 clients"
        } else {
            "given with --mix"
        }
    );
    println!(
        "time scale {scale}x ({} s per strategy = {:.0} simulated s)",
        cfg.duration,
        cfg.duration * scale,
    );
    for l in &run.lowered {
        println!(
            "  saturated at {}x ({} run: {}), so lowered",
            l["time_scale"],
            l["strategy"].as_str().unwrap_or("?"),
            l["why"].as_str().unwrap_or("?")
        );
    }
    println!("setup");
    print!("{}", setup.subset(HB_OPS).table());
    let mut out = json!({
        "clients": cfg.clients,
        "connections": conns,
        "registered": registered,
        "pooled": pooled,
        "processes": processes,
        "time_scale": scale,
        "saturated_runs": run.lowered,
        "duration_s": cfg.duration,
        "mix": {"idle": cfg.mix[0], "active": cfg.mix[1], "busy": cfg.mix[2]},
        "setup_ops": setup.subset(HB_OPS).summary_json(),
        "seed": {"fixed_rps": 1667, "adaptive_rps": 684},
        "run": cfg.run,
    });
    let mut real_rates = [0.0; 3];
    for (k, (label, p)) in STRATEGIES.iter().zip(phases).enumerate() {
        let wall_rps = p.in_window as f64 / cfg.duration;
        let real_rps = wall_rps / scale;
        real_rates[k] = real_rps;
        let cpu_per_1k = p.cpu.map(|c| {
            if wall_rps > 0.0 {
                c.cpu_mean_pct / (wall_rps / 1000.0)
            } else {
                0.0
            }
        });
        let intervals = match k {
            0 => format!("every {} s", cfg.fixed_interval),
            1 => format!(
                "idle {} s, active {} s, busy {} s",
                cfg.intervals[0], cfg.intervals[1], cfg.intervals[2]
            ),
            _ => format!(
                "on a state change (every {} s on average) or a NAT keepalive (every {} s)",
                cfg.state_change_every, cfg.nat_keepalive
            ),
        };
        println!(
            "{label} ({intervals}): scheduled {:.0} req/s, answered {:.0} req/s in real time \
             ({:.0} req/s on the wire at {}x)",
            scheduled[k], real_rps, wall_rps, scale
        );
        print!("{}", p.ops.subset(&["PING"]).table());
        if let (Some(c), Some(per)) = (p.cpu, cpu_per_1k) {
            println!(
                "  coordinator cpu mean {:.1}% peak {:.1}%  = {:.2}% per 1,000 heartbeats/s  rss mean {:.1} MB",
                c.cpu_mean_pct, c.cpu_peak_pct, per, c.rss_mean_mb
            );
        }
        if scheduled[k] > 0.0 && real_rps < 0.95 * scheduled[k] {
            println!(
                "  warning: only {:.0}% of the scheduled heartbeats were answered in time; the \
                 coordinator or this machine is saturated at {}x (try a smaller --time-scale)",
                100.0 * real_rps / scheduled[k],
                scale
            );
        }
        let p50_ms = p.ops.subset(&["PING"]).ops[0].summary().p50_ms;
        if p50_ms > 100.0 {
            println!(
                "  note: median PING latency {p50_ms:.0} ms: requests queue, so the coordinator (or \
                 this machine) is near saturation at {}x; CPU per heartbeat is not linear here",
                scale
            );
        }
        if let (Some(m), Some(cl)) = (p.machine_cpu, p.clients_cpu) {
            let coord = p.cpu.map_or(0.0, |c| c.cpu_mean_pct);
            // Processes' own times include softirq work done in their context.
            let others = (m.procs_pct + m.irq_pct - coord - cl).max(0.0);
            println!(
                "  clients cpu {cl:.0}% over {processes} process(es)  machine: processes {:.0}% + softirq {:.0}% (others {others:.0}%)",
                m.procs_pct, m.irq_pct
            );
            if others >= 25.0 {
                println!(
                    "  warning: other work used {others:.0}% of a core during the run: the machine was shared, repeat it"
                );
            }
        }
        if let Some(why) = &p.saturated {
            println!(
                "  warning: saturated even at {scale}x ({why}): the CPU figure above is not from an unsaturated run"
            );
        } else {
            println!("  not saturated at {scale}x (answers kept up, median under 5 ms, coordinator under 80%)");
        }
        if !p.reasons.0.is_empty() {
            println!("  errors by reason:\n{}", p.reasons.top(5).trim_end());
        }
        out[*label] = json!({
            "intervals_s": match k {
                0 => json!(cfg.fixed_interval),
                1 => json!({"idle": cfg.intervals[0], "active": cfg.intervals[1], "busy": cfg.intervals[2]}),
                _ => json!({"state_change": cfg.state_change_every, "nat_keepalive": cfg.nat_keepalive}),
            },
            "scheduled_rps": round(scheduled[k], 1),
            "sent": p.sent,
            "requests_per_s": round(real_rps, 1),
            "wire_rps": round(wall_rps, 1),
            "ops": p.ops.subset(&["PING"]).summary_json(),
            "cpu_mean_pct": p.cpu.map(|c| round(c.cpu_mean_pct, 1)),
            "cpu_peak_pct": p.cpu.map(|c| round(c.cpu_peak_pct, 1)),
            "cpu_pct_per_1k_hb_s": cpu_per_1k.map(|x| round(x, 3)),
            "rss_mean_mb": p.cpu.map(|c| round(c.rss_mean_mb, 1)),
            "error_reasons": p.reasons.to_json(),
        });
    }
    let reduction = if real_rates[0] > 0.0 {
        100.0 * (real_rates[0] - real_rates[1]) / real_rates[0]
    } else {
        0.0
    };
    println!(
        "reduction {reduction:.1}% (fixed {:.0} -> adaptive {:.0} req/s; the seed's table: 1,667 -> 684, 59%)",
        real_rates[0], real_rates[1]
    );
    out["reduction_pct"] = json!(round(reduction, 1));
    let conn_reduction = if real_rates[0] > 0.0 {
        100.0 * (real_rates[0] - real_rates[2]) / real_rates[0]
    } else {
        0.0
    };
    println!(
        "reduction with liveness from the connection {conn_reduction:.1}% (fixed {:.0} -> connection {:.0} req/s)",
        real_rates[0], real_rates[2]
    );
    out["connection_reduction_pct"] = json!(round(conn_reduction, 1));
    if let Some((wire, cpu)) = run.reference {
        let per_1k = if wire > 0.0 {
            cpu / (wire / 1000.0)
        } else {
            0.0
        };
        println!(
            "reference: echo server, the fixed schedule on {} connections at {scale}x: {wire:.0} req/s on the wire, \
             cpu {cpu:.1}% = {per_1k:.2}% per 1,000 heartbeats/s (loopback TCP and one wakeup per request, no registry work)",
            thousands(conns as u64)
        );
        if let Some(c) = phases.first().and_then(|p| p.cpu) {
            let wire_c = phases[0].in_window as f64 / cfg.duration;
            if wire_c > 0.0 && per_1k > 0.0 {
                let coord = c.cpu_mean_pct / (wire_c / 1000.0);
                println!(
                    "  coordinator {coord:.2}% vs echo {per_1k:.2}% per 1,000 heartbeats/s: the registry's own share is {:.2}%",
                    (coord - per_1k).max(0.0)
                );
            }
        }
        out["reference"] = json!({
            "wire_rps": round(wire, 1),
            "cpu_mean_pct": round(cpu, 1),
            "cpu_pct_per_1k_hb_s": round(per_1k, 3),
        });
    }
    if !setup_reasons.0.is_empty() {
        println!(
            "setup errors by reason:\n{}",
            setup_reasons.top(5).trim_end()
        );
        out["setup_error_reasons"] = setup_reasons.to_json();
    }
    if let Some(p) = &cfg.json {
        write_json(TOOL, p, &out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parent::saturation;
    use crate::state_of;

    #[test]
    fn saturation_is_falling_behind_queueing_or_a_busy_loop() {
        assert_eq!(saturation(10_000, 9_990, 0.3, Some(20.0)), None);
        assert_eq!(saturation(0, 0, 0.0, None), None);
        let behind = saturation(10_000, 9_000, 0.3, Some(20.0)).unwrap();
        assert!(behind.contains("90.0%"), "{behind}");
        let queued = saturation(10_000, 9_990, 40.0, None).unwrap();
        assert!(queued.contains("queue"), "{queued}");
        let busy = saturation(10_000, 9_990, 0.3, Some(95.0)).unwrap();
        assert!(busy.contains("95%"), "{busy}");
    }

    #[test]
    fn states_follow_the_mix_to_within_a_couple_of_clients() {
        for n in [1_000usize, 100_000] {
            let mut count = [0usize; 3];
            for c in 0..n {
                count[state_of(&SEED_MIX, c)] += 1;
            }
            for s in 0..3 {
                let want = SEED_MIX[s] * n as f64;
                assert!((count[s] as f64 - want).abs() <= 2.0, "{n}: {count:?}");
            }
        }
        // Any shard's contiguous range is spread the same way.
        let mut count = [0usize; 3];
        for c in 50_000..60_000 {
            count[state_of(&SEED_MIX, c)] += 1;
        }
        assert!((count[0] as i64 - 8_000).abs() <= 3, "{count:?}");
    }

    #[test]
    fn the_default_mix_gives_the_seeds_adaptive_rate() {
        let n = 100_000.0;
        let rate: f64 = (0..3)
            .map(|s| n * SEED_MIX[s] / [300.0, 60.0, 30.0][s])
            .sum();
        assert!((683.0..=684.0).contains(&rate), "{rate}");
    }
}
