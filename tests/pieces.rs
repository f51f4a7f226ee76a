//! Piece digests end to end (`docs/peer-protocol.md`, `PIECES`): a real
//! coordinator and node; the digests and the root are checked against a
//! reference computed here, the root against what the registry offers.

mod harness;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PIECE: usize = 1 << 20;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The piece digests of `body`, concatenated, computed independently.
fn digests_of(body: &[u8]) -> Vec<u8> {
    body.chunks(PIECE)
        .flat_map(|p| Sha256::digest(p).to_vec())
        .collect()
}

/// `PIECES <name>` on a fresh connection: (answer line, digest bytes).
fn pieces(peer: std::net::SocketAddr, name: &str) -> (String, Vec<u8>) {
    let mut c = PeerConn::connect(peer);
    c.send(format!("PIECES {name}\n").as_bytes());
    let line = c.line();
    let count: usize = match line.strip_prefix("PIECES ") {
        Some(rest) => rest.split(' ').next().unwrap().parse().unwrap(),
        None => return (line, Vec::new()),
    };
    let body = c.bytes(count * 32);
    // Nothing more follows: the connection answers the next request at once.
    c.send(b"PING\n");
    assert_eq!(c.line(), "PONG", "after PIECES {name}");
    (line, body)
}

/// The one host the registry offers for `name`.
fn offer(coord: &Coordinator, name: &str) -> Value {
    let mut reg = RegistryClient::connect(coord.registry);
    let v = reg.req("REQUEST", json!({ "fname": name }));
    assert_eq!(v["status"], "FOUND", "{v}");
    v["hosts"][0].clone()
}

fn add_file(n: &Node, u: &User, path: &Path) -> Value {
    let (s, v) = n.call(
        "POST",
        "/api/client/add-file",
        Some(&u.token),
        Some(json!({ "path": path })),
    );
    assert_eq!(s, 200, "add-file: {v}");
    v
}

fn publish_now(n: &Node, u: &User, name: &str) -> (u16, Value) {
    n.call(
        "POST",
        "/api/client/publish",
        Some(&u.token),
        Some(json!({ "fname": name, "force": true })),
    )
}

/// The user's catalog entry for `name` as it is on disk now.
fn on_disk(n: &Node, user: &str, name: &str) -> Option<Value> {
    let path = n.data.join("users").join(user).join("files.json");
    let v: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    v["files"]
        .as_array()?
        .iter()
        .find(|f| f["name"] == name)
        .cloned()
}

#[test]
fn pieces_match_the_file_and_the_root_the_registry_offers() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let alice = n.user("alice");
    let dir = tempfile::tempdir().unwrap();
    // 0 bytes, 1 byte, exactly one piece, one piece and a byte, several.
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty.bin", Vec::new()),
        ("one byte.bin", vec![42]),
        ("one piece.bin", pattern(PIECE, 1)),
        ("piece and a byte.bin", pattern(PIECE + 1, 2)),
        ("several.bin", pattern(3 * PIECE + 12_345, 3)),
    ];
    for (name, body) in &cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        n.publish(&alice, &path);
    }
    for (name, body) in &cases {
        let want = digests_of(body);
        let count = body.len().div_ceil(PIECE);
        let (line, got) = pieces(alice.peer, name);
        assert_eq!(line, format!("PIECES {count} 1048576"), "{name}");
        assert_eq!(got.len(), count * 32, "{name}");
        for (i, d) in got.chunks(32).enumerate() {
            assert_eq!(d, &want[i * 32..i * 32 + 32], "{name}: piece {i}");
        }
        let host = offer(&coord, name);
        assert_eq!(host["sha256"], sha256_hex(body), "{name}: {host}");
        assert_eq!(host["root"], sha256_hex(&got), "{name}: {host}");
    }
    // A 0-byte file has no pieces; its root is the hash of nothing.
    assert_eq!(offer(&coord, "empty.bin")["root"], sha256_hex(b""));

    // Its digests gone from the piece store: readerror, not a wrong answer.
    let root = offer(&coord, "one piece.bin")["root"]
        .as_str()
        .unwrap()
        .to_owned();
    std::fs::remove_file(n.data.join("pieces").join(&root)).unwrap();
    assert_eq!(pieces(alice.peer, "one piece.bin").0, "ERROR readerror");

    // Tracked but not published, unknown, a path: not served.
    let secret = dir.path().join("secret.bin");
    std::fs::write(&secret, b"mine only").unwrap();
    add_file(&n, &alice, &secret);
    n.wait_hashed(&alice.token, "secret.bin");
    for name in ["secret.bin", "nothing-like-this", "../several.bin"] {
        assert_eq!(pieces(alice.peer, name).0, "ERROR notfound", "{name}");
    }

    // Changed on disk since it was published (same size, new bytes and time).
    let path = dir.path().join("several.bin");
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(b"rewritten").unwrap();
    f.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(f);
    let line = pieces(alice.peer, "several.bin").0;
    // The node may have noticed and unpublished it by now.
    assert!(
        line == "ERROR filenotfound" || line == "ERROR notfound",
        "{line}"
    );
}

#[test]
fn publish_right_after_adding_a_large_file_waits_for_its_hash() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let alice = n.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("large.bin");
    // ~200 MB written a piece at a time, hashed here on the way.
    let mut f = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let (mut whole, mut digests) = (Sha256::new(), Vec::new());
    for i in 0..200u64 {
        let piece = pattern(PIECE, 1000 + i);
        whole.update(&piece);
        digests.extend_from_slice(&Sha256::digest(&piece));
        f.write_all(&piece).unwrap();
    }
    f.into_inner().unwrap().sync_all().unwrap();
    let name = add_file(&n, &alice, &path)["file"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, v) = publish_now(&n, &alice, &name);
    assert_eq!(s, 200, "publish right after add-file: {v}");
    assert_eq!(v["file"]["is_published"], true, "{v}");
    assert_eq!(v["file"]["hashing"], false, "{v}");
    let host = offer(&coord, &name);
    assert_eq!(host["sha256"], hex(&whole.finalize()), "{host}");
    assert_eq!(host["root"], sha256_hex(&digests), "{host}");
}

#[test]
fn publish_waiting_for_a_hash_answers_404_when_the_file_is_removed() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let alice = n.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("going.bin");
    // Sparse: no disk, but a hash that takes a while.
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(512 * PIECE as u64).unwrap();
    drop(f);
    add_file(&n, &alice, &path);
    let (api, token) = (n.api, alice.token.clone());
    let waiting = std::thread::spawn(move || {
        http_json(
            api,
            "POST",
            "/api/client/publish",
            Some(&token),
            Some(json!({"fname": "going.bin", "force": true})),
        )
    });
    wait_for("the publish to wait for the hash", || {
        n.proc
            .stderr_text()
            .contains("alice: the publish of \"going.bin\" waits for its hash")
            .then_some(())
    });
    let (s, v) = n.call(
        "POST",
        "/api/client/remove-file",
        Some(&alice.token),
        Some(json!({"fname": "going.bin"})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = waiting.join().unwrap();
    assert_eq!(s, 404, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("stopped being tracked"),
        "{v}"
    );
}

#[test]
fn a_restarted_node_serves_pieces_without_hashing_again() {
    let coord = Coordinator::start();
    let mut n = Node::start(&coord);
    let alice = n.user("alice");
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(5 * PIECE + 7, 11);
    let path = dir.path().join("kept.bin");
    std::fs::write(&path, &body).unwrap();
    let name = n.publish(&alice, &path);
    let root = sha256_hex(&digests_of(&body));
    wait_for("the root on disk", || {
        on_disk(&n, "alice", &name)
            .filter(|f| f["root"] == root.as_str() && f["is_published"] == true)
    });

    n.restart();
    let alice = n.user("alice");
    // Logged once the catalog is in, after its hashes were queued.
    wait_for("the catalog loaded", || {
        n.proc
            .stderr_text()
            .contains("alice: loaded, 1 tracked files, 0 to hash")
            .then_some(())
    });
    assert!(
        !n.proc.stderr_text().contains("hashing \"kept.bin\""),
        "{}",
        n.proc.stderr_text()
    );
    let (s, v) = n.call("GET", "/api/client/local-files", Some(&alice.token), None);
    assert_eq!(s, 200);
    let f = &v["files"][0];
    assert_eq!(
        (&f["root"], &f["hashing"]),
        (&json!(root), &json!(false)),
        "{v}"
    );
    let (line, got) = pieces(alice.peer, &name);
    assert_eq!(line, "PIECES 6 1048576");
    assert_eq!(sha256_hex(&got), root);

    // A catalog from before pieces (no root): hashed once more, published throughout.
    n.kill();
    let store = n.data.join("users/alice/files.json");
    let mut v: Value = serde_json::from_slice(&std::fs::read(&store).unwrap()).unwrap();
    v["files"][0].as_object_mut().unwrap().remove("root");
    std::fs::write(&store, serde_json::to_vec(&v).unwrap()).unwrap();
    n.restart();
    let alice = n.user("alice");
    wait_for("the catalog loaded", || {
        n.proc
            .stderr_text()
            .contains("alice: loaded, 1 tracked files, 1 to hash")
            .then_some(())
    });
    let (s, v) = n.call(
        "GET",
        "/api/client/published-files",
        Some(&alice.token),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(v["files"][0]["name"], name.as_str(), "still published: {v}");
    wait_for("the registry to learn the root again", || {
        (offer(&coord, &name)["root"] == root.as_str()).then_some(())
    });
    assert_eq!(pieces(alice.peer, &name).1, digests_of(&body));
}

#[test]
fn register_carries_the_root_of_a_file_published_while_the_coordinator_was_away() {
    // Behind relays, so the node finds the restarted coordinator.
    let mut coord = Coordinator::start_relayed();
    let n = Node::start(&coord);
    let alice = n.user("alice");
    coord.kill();
    let dir = tempfile::tempdir().unwrap();
    let body = pattern(2 * PIECE + 3, 21);
    let path = dir.path().join("offline.bin");
    std::fs::write(&path, &body).unwrap();
    add_file(&n, &alice, &path);
    let (s, v) = publish_now(&n, &alice, "offline.bin");
    assert_eq!(s, 200, "published here: {v}");
    assert!(v["note"].is_string(), "{v}");
    // No PUBLISH reached it: only REGISTER's files_metadata can say it.
    coord.restart();
    let host = wait_for("REGISTER with the file", || {
        let mut reg = RegistryClient::connect(coord.registry);
        let v = reg.req("REQUEST", json!({ "fname": "offline.bin" }));
        (v["status"] == "FOUND").then(|| v["hosts"][0].clone())
    });
    assert_eq!(host["sha256"], sha256_hex(&body), "{host}");
    assert_eq!(host["root"], sha256_hex(&digests_of(&body)), "{host}");
}
