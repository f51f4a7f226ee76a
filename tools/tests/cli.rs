//! The bench binaries end to end: run against the in-crate echo server (it answers every
//! line, so the whole client flow, sharding and the JSON report are exercised without a
//! coordinator), and their failure modes.

use p2pshare_tools::echo::Echo;
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("tools-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn run_json(bin: &str, args: &[&str], json: &PathBuf) -> Value {
    let out = Command::new(bin)
        .args(args)
        .arg("--json")
        .arg(json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("open files limit"), "{stderr}");
    serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap()
}

#[test]
fn registry_bench_preset_runs_every_step_over_two_shards_and_merges() {
    let echo = Echo::start(b"{\"status\":\"OK\"}\n").unwrap();
    let d = tmp("preset");
    let addr = echo.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--preset",
            "1k",
            "--clients",
            "60",
            "--shards",
            "2",
            "--coordinator",
            &addr,
            "--anonymous",
            "--full-list-every",
            "20",
            "--burst",
        ],
        &d.join("r.json"),
    );
    assert_eq!(v["preset"], "1k");
    assert_eq!(v["mode"], "burst");
    assert_eq!(v["clients"], 60);
    assert_eq!(v["concurrency"], 60);
    assert_eq!(v["success_rate"], 1.0);
    assert_eq!(v["processes"], 2);
    let ops = &v["ops"];
    assert_eq!(ops["REGISTER"]["count"], 60);
    assert_eq!(ops["PUBLISH"]["count"], 300);
    for op in ["REQUEST", "DISCOVER", "PING", "list_page"] {
        assert_eq!(ops[op]["count"], 60, "{op}");
        assert_eq!(ops[op]["errors"], 0, "{op}");
    }
    assert_eq!(ops["list_full"]["count"], 3);
    assert_eq!(ops["LIST"]["count"], 63);
    assert_eq!(ops["UNREGISTER"]["count"], 0);
    for k in ["mean_ms", "p50_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms"] {
        assert!(ops["REGISTER"][k].as_f64().unwrap() > 0.0, "{k}");
    }
    assert!(v["throughput_rps"].as_f64().unwrap() > 0.0);
    assert!(v["coordinator"].is_object());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn registry_bench_1m_preset_set_up_on_a_small_scale() {
    // The 1m preset's shape with 400 clients: paced, at most `--concurrency`
    // connected at once, each closing after its script, no whole LIST.
    let echo = Echo::start(b"{\"status\":\"OK\"}\n").unwrap();
    let d = tmp("preset1m");
    let addr = echo.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--preset",
            "1m",
            "--clients",
            "400",
            "--concurrency",
            "40",
            "--arrival-rate",
            "2000",
            "--think",
            "1",
            "--coordinator",
            &addr,
            "--anonymous",
        ],
        &d.join("r.json"),
    );
    assert_eq!(v["preset"], "1m");
    assert_eq!(v["mode"], "paced");
    assert_eq!(v["clients"], 400);
    assert_eq!(v["concurrency"], 40);
    assert_eq!(v["leave"], "close");
    assert_eq!(v["full_list_every"], 0);
    assert_eq!(v["files_per_client"], 5);
    assert_eq!(v["success_rate"], 1.0);
    assert_eq!(v["ops"]["REGISTER"]["count"], 400);
    assert_eq!(v["ops"]["PUBLISH"]["count"], 2000);
    assert_eq!(v["ops"]["list_full"]["count"], 0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn registry_bench_counts_error_answers_and_unregisters_when_asked() {
    // Everything answered ERROR: REGISTER fails, so no client goes on.
    let echo = Echo::start(b"{\"status\":\"ERROR\",\"reason\":\"unauthorized\"}\n").unwrap();
    let d = tmp("errors");
    let addr = echo.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--clients",
            "10",
            "--preset",
            "1k",
            "--coordinator",
            &addr,
            "--anonymous",
        ],
        &d.join("r.json"),
    );
    assert_eq!(v["success_rate"], 0.0);
    assert_eq!(v["ops"]["REGISTER"]["errors"], 10);
    assert_eq!(v["ops"]["PUBLISH"]["count"], 0);
    assert_eq!(v["error_reasons"]["REGISTER: unauthorized"], 10);

    let ok = Echo::start(b"{\"status\":\"OK\"}\n").unwrap();
    let addr = ok.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--clients",
            "10",
            "--preset",
            "1k",
            "--coordinator",
            &addr,
            "--anonymous",
            "--leave",
            "unregister",
            "--concurrency",
            "3",
            "--files",
            "0",
        ],
        &d.join("r2.json"),
    );
    assert_eq!(v["ops"]["UNREGISTER"]["count"], 10);
    assert_eq!(v["ops"]["PUBLISH"]["count"], 0);
    assert_eq!(v["concurrency"], 3);
    assert_eq!(v["success_rate"], 1.0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn registry_bench_hold_open_loop_keeps_its_rate_and_reports_the_reference() {
    let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n").unwrap();
    let d = tmp("hold");
    let addr = echo.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--hold",
            "40",
            "--duration",
            "1",
            "--rate",
            "2000",
            "--coordinator",
            &addr,
            "--anonymous",
            "--reference-echo",
        ],
        &d.join("h.json"),
    );
    assert_eq!(v["preset"], "hold");
    assert_eq!(v["hold"]["registered"], 40);
    assert_eq!(v["hold"]["mode"], "open");
    let answered = v["ops"]["PING"]["count"].as_u64().unwrap()
        + v["ops"]["REQUEST"]["count"].as_u64().unwrap();
    // 2,000 requests/s for one second, give or take the edges.
    assert!((1900..=2000).contains(&answered), "{answered}");
    let t = v["throughput_rps"].as_f64().unwrap();
    assert!((1800.0..=2100.0).contains(&t), "{t}");
    assert!(v["reference"]["throughput_rps"].as_f64().unwrap() > 1800.0);
    assert!(v["reference"]["ratio"].as_f64().unwrap() > 0.5);
    let _ = std::fs::remove_dir_all(&d);
}

/// A line server answering every line `{"status":"OK"}` after `delay`: a slow coordinator.
fn slow_server(delay: Duration) -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || {
                let mut w = s.try_clone().unwrap();
                for line in BufReader::new(s).lines() {
                    if line.is_err() {
                        return;
                    }
                    std::thread::sleep(delay);
                    if w.write_all(b"{\"status\":\"OK\"}\n").is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn registry_bench_paced_preset_spreads_arrivals_and_says_so() {
    let echo = Echo::start(b"{\"status\":\"OK\"}\n").unwrap();
    let d = tmp("paced");
    let addr = echo.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_registry-bench"))
        .args(["--preset", "1k", "--clients", "40", "--arrival-rate", "40"])
        .args([
            "--think",
            "20",
            "--coordinator",
            &addr,
            "--anonymous",
            "--json",
        ])
        .arg(d.join("p.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mode paced"), "{stdout}");
    assert!(stdout.contains("clients arrive at 40/s"), "{stdout}");
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("p.json")).unwrap()).unwrap();
    assert_eq!(v["mode"], "paced");
    assert_eq!(v["success_rate"], 1.0);
    assert_eq!(v["ops"]["PUBLISH"]["count"], 200);
    // The last of 40 clients arrives at 0.975 s and thinks ~20 ms before each of its ten
    // operations: the run cannot end before about 1.1 s.
    let dur = v["duration_s"].as_f64().unwrap();
    assert!(dur >= 1.0, "{dur}");
    // An echo server answers in well under the think time: latencies are the server's,
    // not the think time.
    assert!(v["ops"]["PING"]["p50_ms"].as_f64().unwrap() < 15.0, "{v}");
    // The tool's own lateness is reported: every request it waited to send is counted.
    let lag = &v["tool_send_lag"];
    assert!(lag["count"].as_u64().unwrap() >= 40, "{lag}");
    assert!(lag["p50_ms"].as_f64().unwrap() < 15.0, "{lag}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn registry_bench_paced_latency_counts_from_the_intended_time() {
    // Every answer takes 40 ms but a client means to send every ~5 ms: a schedule that
    // waited for answers would report 40 ms each; measured from the intended times the
    // backlog shows and grows through the script.
    let addr = slow_server(Duration::from_millis(40));
    let d = tmp("slow");
    let v = run_json(
        env!("CARGO_BIN_EXE_registry-bench"),
        &[
            "--preset",
            "1k",
            "--clients",
            "4",
            "--arrival-rate",
            "1000",
            "--think",
            "5",
            "--files",
            "2",
            "--coordinator",
            &addr,
            "--anonymous",
            "--shards",
            "1",
        ],
        &d.join("s.json"),
    );
    let reg = v["ops"]["REGISTER"]["p50_ms"].as_f64().unwrap();
    let last = v["ops"]["list_page"]["p50_ms"].as_f64().unwrap();
    assert!((35.0..120.0).contains(&reg), "{reg}");
    // REGISTER, 2 PUBLISH, REQUEST, DISCOVER, PING, LIST: the 7th answer comes ~280 ms
    // after the arrival, its intended time ~35 ms after it.
    assert!(last > 180.0, "{last}");
    // The backlog is the server's: the tool itself sent what it waited for on time.
    let lag = &v["tool_send_lag"];
    assert!(lag["p99_ms"].as_f64().unwrap() < 20.0, "{lag}");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn registry_bench_pipelined_hold_uses_two_processes_and_reports_cpu() {
    let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n").unwrap();
    let d = tmp("pipe");
    let addr = echo.addr.to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_registry-bench"))
        .args(["--hold", "20", "--duration", "1", "--pipeline", "4"])
        .args([
            "--coordinator",
            &addr,
            "--anonymous",
            "--reference-echo",
            "--json",
        ])
        .arg(d.join("h.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("mode hold"), "{stdout}");
    assert!(
        stdout.contains("cpu (of one core): coordinator n/a  clients "),
        "{stdout}"
    );
    assert!(
        stdout.contains("cpu (of one core): echo server "),
        "{stdout}"
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("h.json")).unwrap()).unwrap();
    assert_eq!(v["mode"], "hold");
    assert_eq!(v["processes"], 2);
    assert_eq!(v["hold"]["pipeline"], 4);
    assert_eq!(v["success_rate"], 1.0);
    let answered = v["ops"]["PING"]["count"].as_u64().unwrap()
        + v["ops"]["REQUEST"]["count"].as_u64().unwrap();
    assert!(answered > 1000, "{answered}");
    assert_eq!(v["ops"]["PING"]["errors"], 0);
    assert_eq!(v["ops"]["REQUEST"]["errors"], 0);
    assert!(v["reference"]["throughput_rps"].as_f64().unwrap() > 1000.0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn heartbeat_sim_adaptive_sends_fewer_heartbeats_than_fixed() {
    let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n").unwrap();
    let d = tmp("hb");
    let addr = echo.addr.to_string();
    let v = run_json(
        env!("CARGO_BIN_EXE_heartbeat-sim"),
        &[
            "--clients",
            "3000",
            "--connections",
            "30",
            "--time-scale",
            "60",
            "--duration",
            "2",
            "--coordinator",
            &addr,
            "--anonymous",
            "--reference-echo",
        ],
        &d.join("hb.json"),
    );
    assert_eq!(v["pooled"], true);
    assert_eq!(v["registered"], 30);
    // 3,000 clients every 60 s: 50/s; adaptive with the seed's mix
    // 3,000*(0.8/300+0.15/60+0.05/30): 20.5/s, the seed's 59% fewer.
    assert_eq!(v["mix"]["idle"], 0.8);
    assert_eq!(v["time_scale"], 60.0);
    let fixed = v["fixed"]["requests_per_s"].as_f64().unwrap();
    let adaptive = v["adaptive"]["requests_per_s"].as_f64().unwrap();
    assert!((45.0..=52.0).contains(&fixed), "{fixed}");
    assert!((17.0..=24.0).contains(&adaptive), "{adaptive}");
    let red = v["reduction_pct"].as_f64().unwrap();
    assert!((52.0..=66.0).contains(&red), "{red}");
    // Liveness from the connection: a PING per state change (3,600 s) or NAT
    // keepalive (3,600 s): 3,000 / 1,800 s = 1.7/s, 96.7% fewer; the same
    // fields as the fixed run.
    let conn = &v["connection"];
    for k in ["scheduled_rps", "requests_per_s", "wire_rps", "ops", "sent"] {
        assert!(!conn[k].is_null(), "connection.{k} missing: {conn}");
    }
    let c = conn["requests_per_s"].as_f64().unwrap();
    assert!((1.0..=2.5).contains(&c), "{c}");
    assert!(v["connection_reduction_pct"].as_f64().unwrap() >= 95.0);
    // The echo reference ran the fixed schedule on the wire: 50/s × 60.
    let wire = v["reference"]["wire_rps"].as_f64().unwrap();
    assert!((2700.0..=3150.0).contains(&wire), "{wire}");
    assert!(v["reference"]["cpu_pct_per_1k_hb_s"].as_f64().unwrap() > 0.0);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn missing_coordinator_is_one_line_and_a_failure() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let runs = [
        (env!("CARGO_BIN_EXE_registry-bench"), vec!["--preset", "1k"]),
        (env!("CARGO_BIN_EXE_heartbeat-sim"), vec![]),
    ];
    for (bin, extra) in runs {
        let out = Command::new(bin)
            .args(extra)
            .args(["--coordinator", &addr, "--anonymous"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bin}");
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| !l.contains("open files limit"))
            .collect();
        assert_eq!(lines.len(), 1, "{err}");
        assert!(lines[0].contains("cannot reach the coordinator"), "{err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn gen_files_is_deterministic_and_prints_the_hash() {
    let d = tmp("gen");
    let run = |seed: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_gen-files"))
            .args(["--out"])
            .arg(&d)
            .args(["--sizes", "1K,3000", "--seed", seed])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let a = run("5");
    let b = run("5");
    assert_eq!(a, b);
    let lines: Vec<&str> = a.lines().collect();
    assert_eq!(lines.len(), 2);
    let f: Vec<&str> = lines[1].split(' ').collect();
    assert_eq!(f[0], "gen-3000-s5.bin");
    assert_eq!(f[1], "3000");
    let bytes = std::fs::read(d.join("gen-3000-s5.bin")).unwrap();
    assert_eq!(bytes.len(), 3000);
    assert_eq!(
        p2pshare_tools::gen::sha256_file(&d.join("gen-3000-s5.bin")).unwrap(),
        f[2]
    );
    assert_ne!(run("6"), a);
    let _ = std::fs::remove_dir_all(&d);
}
