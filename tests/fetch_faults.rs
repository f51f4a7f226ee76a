//! Fetch faults through real processes: a serving node dies, a served file
//! is truncated or rewritten, the fetching node is killed and restarted, a
//! fetch is cancelled. Serving nodes are slowed with `--max-upload-rate` so
//! that faults land mid-transfer.

mod harness;

use std::path::{Path, PathBuf};

use harness::*;
use serde_json::json;

const SLOW: &[&str] = &["--max-upload-rate", "4000000"];
const SIZE: usize = 12_000_000;

fn status(p: &serde_json::Value) -> &str {
    p["status"].as_str().unwrap_or("")
}

/// Writes `body` as `name` under `dir/sub` and returns its path.
fn put(dir: &Path, sub: &str, name: &str, body: &[u8]) -> PathBuf {
    let d = dir.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// A node on `data` (kept across restarts), its peers advertised on loopback.
fn node(coord: &Coordinator, data: &Path, extra: &[&str]) -> Node {
    let mut args = vec!["--host", "127.0.0.1", "--advertise-ip", "127.0.0.1"];
    args.extend_from_slice(extra);
    Node::start_in(data, coord.registry, coord.api, &args, &[])
}

/// Waits until the fetch has moved at least `bytes` (and is still going).
fn wait_some(node: &Node, u: &User, id: &str, bytes: u64) -> serde_json::Value {
    node.wait_fetch(u, id, 60, |p| {
        p["downloaded_size"].as_u64().unwrap_or(0) >= bytes
            || status(p) != "downloading" && status(p) != "pending"
    })
}

#[test]
fn a_dying_peer_is_replaced_by_the_next_host_with_the_same_file() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    // Both slow: with piece lists (docs/peer-protocol.md) both send at once,
    // and the fetch must still be under way when alice dies.
    let a = node(&coord, &tmp.path().join("a"), SLOW);
    let b = node(&coord, &tmp.path().join("b"), SLOW);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, bob, carol) = (a.user("alice"), b.user("bob"), c.user("carol"));
    let body = pattern(SIZE, 1);
    let name = a.publish(&alice, &put(tmp.path(), "fa", "shared.bin", &body));
    b.publish(&bob, &put(tmp.path(), "fb", "shared.bin", &body));
    let out = tmp.path().join("down");
    let target = out.join("shared.bin");

    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": target, "hostname": "alice"}),
    );
    let p = wait_some(&c, &carol, &id, 1_000_000);
    assert_eq!(status(&p), "downloading", "{p}");
    // The host asked for is used (first, or alone without piece lists).
    let alice_bytes = p["peers"]
        .as_array()
        .and_then(|v| v.iter().find(|x| x["hostname"] == "alice"))
        .and_then(|x| x["bytes"].as_u64());
    assert!(alice_bytes.unwrap_or(0) > 0, "{p}");
    assert!(p["speed_bps"].as_u64().unwrap() > 0, "{p}");
    let mut a = a;
    a.kill();

    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert_eq!(p["peer"], "bob", "{p}");
    assert_eq!(p["downloaded_size"].as_u64(), Some(SIZE as u64));
    assert_eq!(p["progress_percent"].as_f64(), Some(100.0));
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    assert_eq!(
        files_like(&out, "shared.bin"),
        vec!["shared.bin".to_string()]
    );
}

#[test]
fn a_dying_peer_with_no_other_host_fails_and_leaves_no_file() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = node(&coord, &tmp.path().join("a"), SLOW);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(SIZE, 2);
    let name = a.publish(&alice, &put(tmp.path(), "fa", "only.bin", &body));
    let out = tmp.path().join("down");

    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": out.join("only.bin")}),
    );
    wait_some(&c, &carol, &id, 1_000_000);
    a.kill();
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "failed", "{p}");
    let err = p["error"].as_str().unwrap_or("");
    assert!(err.contains("alice closed the connection after"), "{err}");
    assert!(err.contains("no other host has the file"), "{err}");
    assert!(err.contains(" MB"), "says how far it got: {err}");
    // The `.part` is removed on a worker, just after the status changes.
    wait_for("no only.bin left", || {
        files_like(&out, "only.bin").is_empty().then_some(())
    });
}

#[test]
fn truncating_a_served_file_fails_the_fetch_and_the_server_lives_on() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = node(&coord, &tmp.path().join("a"), SLOW);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(SIZE, 3);
    let src = put(tmp.path(), "fa", "shrinks.bin", &body);
    let name = a.publish(&alice, &src);
    let out = tmp.path().join("down");

    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": out.join("shrinks.bin")}),
    );
    wait_some(&c, &carol, &id, 1_000_000);
    // Pages past the new end are now unbacked: touching them would SIGBUS.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(4096)
        .unwrap();
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "failed", "{p}");
    // The `.part` is removed on a worker, just after the status changes.
    wait_for("no shrinks.bin left", || {
        files_like(&out, "shrinks.bin").is_empty().then_some(())
    });
    assert!(a.is_running(), "the serving node died");
    let mut pc = PeerConn::connect(alice.peer);
    pc.send(b"PING\n");
    assert_eq!(pc.line(), "PONG");
    pc.send(format!("GET {name}\n").as_bytes());
    let l = pc.line();
    assert!(l == "ERROR filenotfound" || l == "ERROR notfound", "{l}");
    let (s, _) = a.call("GET", "/api/client/status", Some(&alice.token), None);
    assert_eq!(s, 200);
}

#[test]
fn a_file_rewritten_while_served_fails_verification() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&coord, &tmp.path().join("a"), SLOW);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(SIZE, 4);
    let src = put(tmp.path(), "fa", "zeroed.bin", &body);
    let name = a.publish(&alice, &src);
    let out = tmp.path().join("down");

    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": out.join("zeroed.bin")}),
    );
    wait_some(&c, &carol, &id, 1_000_000);
    // Same size, other bytes: the tail is overwritten in place.
    let f = std::fs::OpenOptions::new().write(true).open(&src).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &vec![0u8; SIZE - 4096], 4096).unwrap();
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "failed", "{p}");
    // The only host is dropped for it, and the error says so.
    let err = p["error"].as_str().unwrap_or("");
    // Without piece lists the whole file fails its SHA-256; with them, a
    // piece fails its digest.
    assert!(
        err.contains("does not match") && err.contains("alice"),
        "{p}"
    );
    // The `.part` is removed on a worker, just after the status changes.
    wait_for("no zeroed.bin left", || {
        files_like(&out, "zeroed.bin").is_empty().then_some(())
    });
}

#[test]
fn a_fetching_node_killed_mid_transfer_resumes_after_restart() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&coord, &tmp.path().join("a"), SLOW);
    let mut c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(SIZE, 5);
    let name = a.publish(&alice, &put(tmp.path(), "fa", "resume.bin", &body));
    let out = tmp.path().join("down");
    let target = out.join("resume.bin");

    let id = c.fetch(&carol, json!({"fname": name, "save_path": target}));
    wait_some(&c, &carol, &id, 2_000_000);
    c.kill();
    assert!(
        !target.exists(),
        "no file under the final name after kill -9"
    );

    let c = node(&coord, &tmp.path().join("c"), &[]);
    let token = c.login("carol", "carol");
    let (s, v) = c.call("GET", "/api/client/fetches", Some(&token), None);
    assert_eq!(s, 200, "{v}");
    let list = v
        .as_array()
        .or_else(|| v["fetches"].as_array())
        .cloned()
        .unwrap_or_default();
    let rec = list.iter().find(|f| f["fetch_id"] == id.as_str());
    let rec = rec.unwrap_or_else(|| panic!("fetch {id} not listed after restart: {v}"));
    if status(rec) != "completed" {
        assert!(!target.exists(), "final name before completion: {rec}");
    }
    let carol = User { token, ..carol };
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    assert_eq!(
        files_like(&out, "resume.bin"),
        vec!["resume.bin".to_string()]
    );
}

#[test]
fn cancel_and_overwrite_rules() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&coord, &tmp.path().join("a"), SLOW);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(SIZE, 6);
    let name = a.publish(&alice, &put(tmp.path(), "fa", "c.bin", &body));
    let out = tmp.path().join("down");
    let target = out.join("c.bin");

    // Cancel mid-way: no final file, no .part.
    let id = c.fetch(&carol, json!({"fname": name, "save_path": target}));
    wait_some(&c, &carol, &id, 500_000);
    let (s, v) = c.call(
        "DELETE",
        &format!("/api/client/fetch/{id}"),
        Some(&carol.token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let p = c.progress(&carol, &id);
    assert_eq!(status(&p), "cancelled", "{p}");
    assert!(files_like(&out, "c.bin").is_empty());

    // An existing file is never replaced unless asked.
    std::fs::write(&target, b"mine").unwrap();
    let (s, v) = c.call(
        "POST",
        "/api/client/fetch",
        Some(&carol.token),
        Some(json!({"fname": name, "save_path": target})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(std::fs::read(&target).unwrap(), b"mine");
    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": target, "overwrite": true}),
    );
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body);
    // Another user's fetch is not visible.
    let dave = c.user("dave");
    let (s, _) = c.call(
        "GET",
        &format!("/api/client/fetch-progress/{id}"),
        Some(&dave.token),
        None,
    );
    assert_eq!(s, 404);
}

#[test]
fn another_version_of_the_file_is_never_used_to_go_on() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut a = node(&coord, &tmp.path().join("a"), SLOW);
    let b = node(&coord, &tmp.path().join("b"), &[]);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, bob, carol) = (a.user("alice"), b.user("bob"), c.user("carol"));
    // Same name and size, other bytes.
    let name = a.publish(&alice, &put(tmp.path(), "fa", "v.bin", &pattern(SIZE, 8)));
    b.publish(&bob, &put(tmp.path(), "fb", "v.bin", &pattern(SIZE, 9)));
    let out = tmp.path().join("down");

    // Two contents share the name: a fetch names the one it wants.
    let id = c.fetch(
        &carol,
        json!({"fname": name, "save_path": out.join("v.bin"), "hostname": "alice",
               "sha256": sha256_hex(&pattern(SIZE, 8))}),
    );
    wait_some(&c, &carol, &id, 1_000_000);
    a.kill();
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "failed", "{p}");
    // The `.part` is removed on a worker, just after the status changes.
    wait_for("no v.bin left", || {
        files_like(&out, "v.bin").is_empty().then_some(())
    });
}

#[test]
fn empty_files_and_names_with_spaces_arrive_intact() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let a = node(&coord, &tmp.path().join("a"), &[]);
    let c = node(&coord, &tmp.path().join("c"), &[]);
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let out = tmp.path().join("down");
    for (fname, body) in [
        ("empty file.txt", Vec::new()),
        ("a b  c.bin", pattern(700_001, 10)),
    ] {
        let name = a.publish(&alice, &put(tmp.path(), "fa", fname, &body));
        let id = c.fetch(&carol, json!({"fname": name, "save_path": out.join(fname)}));
        let p = c.wait_final(&carol, &id, 60);
        assert_eq!(status(&p), "completed", "{p}");
        assert_eq!(p["progress_percent"].as_f64(), Some(100.0), "{p}");
        assert_eq!(p["file_name"], fname);
        assert!(p["finished_at"].as_f64().unwrap() >= p["started_at"].as_f64().unwrap());
        // A finished download reports its average speed, not zero.
        assert_eq!(
            p["speed_bps"].as_u64().unwrap() > 0,
            !body.is_empty(),
            "{p}"
        );
        assert_eq!(p["eta_seconds"], 0, "{p}");
        assert!(std::fs::read(out.join(fname)).unwrap() == body, "{fname}");
        assert!(!out.join(format!("{fname}.part")).exists());
    }
}
