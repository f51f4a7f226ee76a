//! Downloads a user can act on (docs/client-api.md): `POST /fetches/clear`
//! forgets the user's completed, failed and cancelled downloads, never
//! their files and never a running one, and the forgetting survives a
//! restart of the node (it is answered once the records are on disk).

mod harness;

use harness::*;
use serde_json::{json, Value};

fn fetch_ids(node: &Node, u: &User) -> Vec<String> {
    let (s, v) = node.call("GET", "/api/client/fetches", Some(&u.token), None);
    assert_eq!(s, 200, "{v}");
    v["fetches"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|f| f["fetch_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn clear_finished_forgets_records_and_keeps_files_and_running_downloads() {
    let coord = Coordinator::start();
    // Alice's uploads are slow, so the big file's download is still running
    // when the test acts on it.
    let a = Node::start_with(&coord, &["--max-upload-rate", "64KB"], &[]);
    let mut b = Node::start(&coord);
    let alice = a.user("alice");
    let bob = b.user("bob");
    let tmp = tempfile::tempdir().expect("tempdir");
    let small = tmp.path().join("small.txt");
    std::fs::write(&small, b"a few bytes").expect("write");
    let big = tmp.path().join("big.bin");
    std::fs::write(&big, pattern(4 << 20, 7)).expect("write");
    a.publish(&alice, &small);
    a.publish(&alice, &big);

    let out = tempfile::tempdir().expect("tempdir");
    let done = b.fetch(
        &bob,
        json!({"fname":"small.txt","save_path": out.path().join("small.txt")}),
    );
    assert_eq!(b.wait_final(&bob, &done, 30)["status"], "completed");
    let cancelled = b.fetch(
        &bob,
        json!({"fname":"big.bin","save_path": out.path().join("big-1.bin")}),
    );
    let (s, v) = b.call(
        "DELETE",
        &format!("/api/client/fetch/{cancelled}"),
        Some(&bob.token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let running = b.fetch(
        &bob,
        json!({"fname":"big.bin","save_path": out.path().join("big-2.bin")}),
    );

    // Only POST; another user's list is untouched.
    let (s, _) = b.call("GET", "/api/client/fetches/clear", Some(&bob.token), None);
    assert_eq!(s, 405);
    let (s, v): (u16, Value) = b.call(
        "POST",
        "/api/client/fetches/clear",
        Some(&bob.token),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cleared"], 2, "{v}");
    assert_eq!(fetch_ids(&b, &bob), vec![running.clone()]);
    assert_eq!(
        std::fs::read(out.path().join("small.txt")).expect("the file stays"),
        b"a few bytes"
    );
    let p = b.progress(&bob, &running);
    assert!(
        !matches!(
            p["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ),
        "{p}"
    );
    // Nothing left to clear: 0, at once.
    let (s, v) = b.call(
        "POST",
        "/api/client/fetches/clear",
        Some(&bob.token),
        Some(json!({})),
    );
    assert_eq!((s, v["cleared"].clone()), (200, json!(0)), "{v}");

    // Durable: a restarted node does not bring the cleared records back.
    b.restart();
    assert_eq!(fetch_ids(&b, &bob), vec![running.clone()]);
    let (s, v) = b.call(
        "DELETE",
        &format!("/api/client/fetch/{running}"),
        Some(&bob.token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    drop(a);
}
