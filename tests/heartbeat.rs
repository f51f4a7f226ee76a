//! The node's heartbeat (docs/registry-protocol.md, "Liveness"): on the
//! connection by default (a PING only when the state changes), the seed's
//! adaptive schedule on request, and the busy state while bytes move.

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::json;

#[test]
fn heartbeat_follows_activity() {
    let coord = Coordinator::start();
    let n = Node::start_with(
        &coord,
        &[],
        &[
            // The seed-style schedule, still available beside the default.
            ("HEARTBEAT_MODE", "adaptive"),
            ("P2PSHARE_HEARTBEAT_IDLE", "60"),
            ("P2PSHARE_HEARTBEAT_ACTIVE", "0.5"),
            ("P2PSHARE_HEARTBEAT_BUSY", "0.25"),
            ("P2PSHARE_ACTIVE_WINDOW", "1.5"),
        ],
    );
    let (alice, _) = n.session("alice", "Alice");
    let status = || {
        let (s, v) = n.call("GET", "/api/client/status", Some(&alice), None);
        assert_eq!(s, 200, "{v}");
        v["heartbeat"].clone()
    };
    let hb = status();
    assert_eq!(hb["state"], "active", "{hb}");
    assert_eq!(hb["interval_s"], 0.5);
    wait_for("active heartbeats", || {
        (status()["sent"].as_u64()? >= 2).then_some(())
    });

    // Polling /status is not activity: the node goes idle.
    let hb = wait_for("idle", || {
        let hb = status();
        (hb["state"] == "idle").then_some(hb)
    });
    assert_eq!(hb["interval_s"], 60.0);
    let sent = status()["sent"].as_u64().unwrap();
    // An observation window, not a wait: over two ACTIVE intervals (0.5 s)
    // nothing may be sent; no event marks "a PING did not happen".
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        status()["sent"].as_u64().unwrap(),
        sent,
        "no PING while idle"
    );

    // Using the API makes it active and pulls the next PING in.
    let (s, _) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(s, 200);
    assert_eq!(status()["state"], "active");
    wait_for("a PING soon after becoming active", || {
        (status()["sent"].as_u64()? > sent).then_some(())
    });
}

#[test]
fn on_the_connection_a_ping_goes_out_only_when_the_state_changes() {
    let coord = Coordinator::start();
    // Short adaptive intervals that the default mode must not follow.
    let n = Node::start_with(
        &coord,
        &[],
        &[
            ("P2PSHARE_HEARTBEAT_IDLE", "0.3"),
            ("P2PSHARE_HEARTBEAT_ACTIVE", "0.2"),
            ("P2PSHARE_ACTIVE_WINDOW", "1"),
        ],
    );
    let (alice, _) = n.session("alice", "Alice");
    let status = || {
        let (s, v) = n.call("GET", "/api/client/status", Some(&alice), None);
        assert_eq!(s, 200, "{v}");
        v["heartbeat"].clone()
    };
    let hb = status();
    assert_eq!(hb["mode"], "connection", "{hb}");
    assert_eq!(hb["state"], "active");
    assert_eq!(hb["sent"], 0, "REGISTER reports the host; no PING after it");
    // Active → idle is one change: one PING, which the coordinator records.
    wait_for("idle, announced once", || {
        let hb = status();
        (hb["state"] == "idle" && hb["sent"] == 1).then_some(())
    });
    let admin = coord.admin_token();
    wait_for("the coordinator knows alice is idle", || {
        let (_, v) = coord.call("GET", "/api/admin/registry", Some(&admin), None);
        let c = v["clients"]
            .as_array()?
            .iter()
            .find(|c| c["hostname"] == "alice")?
            .clone();
        (c["state"] == "idle").then_some(())
    });
    // An observation window, not a wait: over several adaptive intervals
    // (0.3 s) a node in connection mode sends nothing more.
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(status()["sent"], 1, "no PING while nothing changes");
    // Using the API is a change: one more.
    let (s, _) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(s, 200);
    wait_for("the change to active sent", || {
        (status()["sent"] == 2).then_some(())
    });
}

#[test]
fn heartbeat_is_busy_while_a_transfer_runs() {
    let coord = Coordinator::start();
    let hb_env: [(&'static str, &str); 5] = [
        ("HEARTBEAT_MODE", "adaptive"),
        ("P2PSHARE_HEARTBEAT_IDLE", "60"),
        ("P2PSHARE_HEARTBEAT_ACTIVE", "30"),
        ("P2PSHARE_HEARTBEAT_BUSY", "0.25"),
        ("P2PSHARE_ACTIVE_WINDOW", "0.5"),
    ];
    // The uploader is slowed down so the transfer lasts.
    let n1 = Node::start_with(&coord, &["--max-upload-rate", "400000"], &hb_env);
    let n2 = Node::start_with(&coord, &[], &hb_env);
    let (alice, _) = n1.session("alice", "Alice");
    let (bob, _) = n2.session("bob", "Bob");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("slow.bin");
    std::fs::write(&a, pattern(1_200_000, 8)).unwrap();
    let name = n1.add_and_publish(&alice, &a);
    let hb = |n: &Node, t: &str| {
        let (s, v) = n.call("GET", "/api/client/status", Some(t), None);
        assert_eq!(s, 200, "{v}");
        v
    };
    wait_for("both idle", || {
        (hb(&n1, &alice)["heartbeat"]["state"] == "idle"
            && hb(&n2, &bob)["heartbeat"]["state"] == "idle")
            .then_some(())
    });
    let before = hb(&n2, &bob)["heartbeat"]["sent"].as_u64().unwrap();

    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["fetch_id"].as_str().unwrap().to_owned();
    let down = wait_for("downloader busy", || {
        let v = hb(&n2, &bob);
        (v["heartbeat"]["state"] == "busy").then_some(v)
    });
    assert_eq!(down["heartbeat"]["interval_s"], 0.25);
    assert_eq!(down["counts"]["active_fetches"], 1);
    let up = wait_for("uploader busy", || {
        let v = hb(&n1, &alice);
        (v["heartbeat"]["state"] == "busy").then_some(v)
    });
    assert_eq!(up["counts"]["uploads"], 1);
    wait_for("busy heartbeats go out", || {
        (hb(&n2, &bob)["heartbeat"]["sent"].as_u64()? >= before + 2).then_some(())
    });

    let done = wait_for("fetch done", || {
        let (_, v) = n2.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(&bob),
            None,
        );
        (v["status"] == "completed").then_some(v)
    });
    assert_eq!(done["downloaded_size"], 1_200_000);
    wait_for("not busy afterwards", || {
        (hb(&n2, &bob)["heartbeat"]["state"] != "busy"
            && hb(&n1, &alice)["heartbeat"]["state"] != "busy")
            .then_some(())
    });
}
