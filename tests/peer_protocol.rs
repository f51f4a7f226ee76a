//! The peer protocol (`docs/peer-protocol.md`) as a real node serves it: raw TCP against a
//! user's peer listener, with a coordinator and a node process.

mod harness;

use std::time::Duration;

use harness::*;
use sha2::Digest;

struct World {
    _coord: Coordinator,
    node: Node,
    user: User,
    dir: tempfile::TempDir,
    name: String,
    body: Vec<u8>,
}

/// A node whose user alice published "my file.bin" (a name with a space)
/// and tracks "secret.txt" without publishing it.
fn world() -> World {
    let coord = Coordinator::start();
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start_in(
        &dir.path().join("node"),
        coord.registry,
        coord.api,
        &["--host", "127.0.0.1", "--advertise-ip", "127.0.0.1"],
        &[],
    );
    let user = node.user("alice");
    let files = dir.path().join("files");
    std::fs::create_dir_all(&files).unwrap();
    let body = pattern(300_000, 7);
    let path = files.join("my file.bin");
    std::fs::write(&path, &body).unwrap();
    let name = node.publish(&user, &path);
    let secret = files.join("secret.txt");
    std::fs::write(&secret, b"not for peers").unwrap();
    let (s, v) = node.call(
        "POST",
        "/api/client/add-file",
        Some(&user.token),
        Some(serde_json::json!({"path": secret})),
    );
    assert_eq!(s, 200, "{v}");
    World {
        _coord: coord,
        node,
        user,
        dir,
        name,
        body,
    }
}

#[test]
fn peer_protocol_end_to_end() {
    let w = world();
    let addr = w.user.peer;
    let size = w.body.len();

    // PING.
    let mut c = PeerConn::connect(addr);
    c.send(b"PING\n");
    assert_eq!(c.line(), "PONG");

    // GET of the whole file, name with a space.
    c.send(format!("GET {}\n", w.name).as_bytes());
    assert_eq!(c.line(), format!("LENGTH {size}"));
    assert!(c.bytes(size) == w.body, "GET bytes differ");

    // INFO: size and hash.
    c.send(format!("INFO {}\n", w.name).as_bytes());
    assert_eq!(c.line(), format!("INFO {size} {}", sha256_hex(&w.body)));

    // Paths and unpublished names are not served.
    for bad in [
        "GET ../../etc/passwd",
        "GET /etc/passwd",
        "GET secret.txt",
        "INFO secret.txt",
        "RANGE 0 5 secret.txt",
        "PIECES secret.txt",
        "PIECES ../files/my file.bin",
        "GET nothing-like-this",
        "GET ../files/my file.bin",
        "HELLO",
    ] {
        c.send(format!("{bad}\n").as_bytes());
        assert_eq!(c.line(), "ERROR notfound", "{bad}");
    }

    // RANGE: a middle slice, the tail, offset == size, past the end, junk.
    c.send(format!("RANGE 3 4 {}\n", w.name).as_bytes());
    assert_eq!(c.line(), "LENGTH 4");
    assert_eq!(c.bytes(4), &w.body[3..7]);
    c.send(format!("RANGE {} 18446744073709551615 {}\n", size - 10, w.name).as_bytes());
    assert_eq!(c.line(), "LENGTH 10");
    assert_eq!(c.bytes(10), &w.body[size - 10..]);
    c.send(format!("RANGE {size} 5 {}\n", w.name).as_bytes());
    assert_eq!(c.line(), "LENGTH 0");
    for bad in [
        format!("RANGE {} 1 {}", size + 1, w.name),
        format!("RANGE 5 x {}", w.name),
        format!("RANGE -5 1 {}", w.name),
        format!("RANGE 18446744073709551616 1 {}", w.name),
        "RANGE 1 2".to_string(),
    ] {
        c.send(format!("{bad}\n").as_bytes());
        assert_eq!(c.line(), "ERROR badrange", "{bad}");
    }
    // The connection survived all of that.
    c.send(b"PING\n");
    assert_eq!(c.line(), "PONG");
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let w = world();
    let size = w.body.len();
    let mut c = PeerConn::connect(w.user.peer);
    // All at once: each transfer must finish before the next answer.
    let batch = format!(
        "PING\nGET {n}\nRANGE 100 1000 {n}\nGET nope\nPIECES {n}\nRANGE 0 0 {n}\nGET {n}\nPING\n",
        n = w.name
    );
    c.send(batch.as_bytes());
    assert_eq!(c.line(), "PONG");
    assert_eq!(c.line(), format!("LENGTH {size}"));
    assert!(c.bytes(size) == w.body);
    assert_eq!(c.line(), "LENGTH 1000");
    assert_eq!(c.bytes(1000), &w.body[100..1100]);
    assert_eq!(c.line(), "ERROR notfound");
    // One piece (300 000 bytes): its digest is the file's SHA-256.
    assert_eq!(c.line(), "PIECES 1 1048576");
    assert_eq!(c.bytes(32), sha2::Sha256::digest(&w.body).to_vec());
    assert_eq!(c.line(), "LENGTH 0");
    assert_eq!(c.line(), format!("LENGTH {size}"));
    assert!(c.bytes(size) == w.body);
    assert_eq!(c.line(), "PONG");
}

#[test]
fn requests_sent_before_a_half_close_are_all_answered() {
    let w = world();
    let size = w.body.len();
    let mut c = PeerConn::connect(w.user.peer);
    // A client that asks for everything, then shuts its sending side.
    c.send(format!("GET {n}\nRANGE 0 10 {n}\nPING\n", n = w.name).as_bytes());
    c.s.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(c.line(), format!("LENGTH {size}"));
    assert!(c.bytes(size) == w.body);
    assert_eq!(c.line(), "LENGTH 10");
    assert_eq!(c.bytes(10), &w.body[..10]);
    assert_eq!(c.line(), "PONG");
    assert!(c.closed(), "then the node closes");
}

#[test]
fn a_huge_request_line_gets_toolong_and_a_close() {
    let w = world();
    let mut c = PeerConn::connect(w.user.peer);
    let writer = c.s.try_clone().unwrap();
    // Send 1 MiB without a newline from another thread: the node stops
    // reading long before, and our write may then fail, which is fine.
    let t = std::thread::spawn(move || {
        let mut writer = writer;
        let mut line = b"GET ".to_vec();
        line.extend(vec![b'a'; 1 << 20]);
        line.push(b'\n');
        let _ = std::io::Write::write_all(&mut writer, &line);
    });
    assert_eq!(c.line(), "ERROR toolong");
    assert!(c.closed(), "the connection must close after toolong");
    t.join().unwrap();
    // Others are unaffected.
    let mut d = PeerConn::connect(w.user.peer);
    d.send(b"PING\n");
    assert_eq!(d.line(), "PONG");
}

#[test]
fn a_file_changed_after_publishing_is_filenotfound() {
    let w = world();
    let path = w.dir.path().join("files").join(&w.name);
    // A different size: changed on disk since publishing.
    std::fs::write(&path, b"rewritten").unwrap();
    let mut c = PeerConn::connect(w.user.peer);
    c.send(format!("GET {}\n", w.name).as_bytes());
    assert_eq!(c.line(), "ERROR filenotfound");
    std::fs::remove_file(&path).unwrap();
    c.send(format!("RANGE 0 1 {}\n", w.name).as_bytes());
    let l = c.line();
    // Gone from disk; the node may also have unpublished it by now.
    assert!(l == "ERROR filenotfound" || l == "ERROR notfound", "{l}");
    c.send(b"PING\n");
    assert_eq!(c.line(), "PONG");
}

#[test]
fn an_idle_peer_connection_may_stay_while_others_work() {
    // A silent connection does not block another one being served.
    let w = world();
    let _silent = PeerConn::connect(w.user.peer);
    let mut half = PeerConn::connect(w.user.peer);
    half.send(b"GET my fi");
    let mut c = PeerConn::connect(w.user.peer);
    c.s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.send(format!("GET {}\n", w.name).as_bytes());
    assert_eq!(c.line(), format!("LENGTH {}", w.body.len()));
    assert!(c.bytes(w.body.len()) == w.body);
    half.send(b"le.bin\n");
    assert_eq!(half.line(), format!("LENGTH {}", w.body.len()));
    let _ = w.node.api;
}

#[test]
fn peer_connections_beyond_the_cap_are_closed_at_once() {
    let w = world();
    // The cap is per source address: 32 from this one.
    let mut open = Vec::new();
    for _ in 0..32 {
        let mut c = PeerConn::connect(w.user.peer);
        c.send(b"PING\n");
        assert_eq!(c.line(), "PONG");
        open.push(c);
    }
    let mut extra = PeerConn::connect(w.user.peer);
    // The node may have closed it already: a failed write is fine.
    let _ = std::io::Write::write_all(&mut extra.s, b"PING\n");
    assert!(extra.closed(), "connection 33 was served");
    // Room again once one leaves (the node notices the close first).
    drop(open.pop());
    wait_until("room after a close", Duration::from_secs(20), || {
        let mut c = PeerConn::connect(w.user.peer);
        c.send(b"PING\n");
        (c.line() == "PONG").then_some(())
    });
}
