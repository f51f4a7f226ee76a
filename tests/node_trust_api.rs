//! What a stranger, a foreign web page or a lying host can make a node do,
//! each written as the attack, through real processes on port 0: a
//! cross-site POST, a same-named file, a host sending junk under a real
//! file's hash, a crash right after `/fetch` answered, a token still valid
//! after logout, idle connections filling a peer port.

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::io::FromRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn sha(b: &[u8]) -> String {
    hex(&Sha256::digest(b))
}

/// A folder for shared files that is not hidden (a `.tmp…` folder would
/// be refused by the share-root rules).
fn share_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("p2pshare-share-")
        .tempdir()
        .expect("tempdir")
}

/// A node whose users may share files under `share`.
fn node(coord: &Coordinator, share: &Path, extra: &[&str]) -> Node {
    let root = share.display().to_string();
    let mut args = vec!["--share-root", &root, "--advertise-ip", "127.0.0.1"];
    args.extend_from_slice(extra);
    Node::start_with(coord, &args, &[])
}

fn put(dir: &Path, sub: &str, name: &str, body: &[u8]) -> PathBuf {
    let d = dir.join(sub);
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// add-file, wait for the hash, publish even if the name is taken.
fn share(n: &Node, token: &str, path: &Path) -> String {
    let (s, v) = n.call(
        "POST",
        "/api/client/add-file",
        Some(token),
        Some(json!({"path": path})),
    );
    assert_eq!(s, 200, "add-file: {v}");
    let name = v["file"]["name"].as_str().expect("name").to_owned();
    n.wait_hashed(token, &name);
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(token),
        Some(json!({"fname": name, "force": true})),
    );
    assert_eq!(s, 200, "publish: {v}");
    name
}

fn start_fetch(n: &Node, token: &str, body: Value) -> String {
    let (s, v) = n.call("POST", "/api/client/fetch", Some(token), Some(body));
    assert_eq!(s, 200, "fetch: {v}");
    v["fetch_id"].as_str().expect("fetch_id").to_owned()
}

fn progress(n: &Node, token: &str, id: &str) -> Value {
    let (s, v) = n.call(
        "GET",
        &format!("/api/client/fetch-progress/{id}"),
        Some(token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v
}

/// Polls a fetch until it is final (60 s at most).
fn wait_final(n: &Node, token: &str, id: &str) -> Value {
    wait_until(
        &format!("fetch {id} to end"),
        Duration::from_secs(60),
        || {
            let v = progress(n, token, id);
            let st = v["status"].as_str().unwrap_or("");
            matches!(st, "completed" | "failed" | "cancelled").then_some(v)
        },
    )
}

// ----- 1. a foreign web page calling the client API -----

#[test]
fn a_cross_site_text_plain_post_to_register_or_login_is_refused() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let api = n.api;
    let body = r#"{"username":"victim","password":"correct horse battery","display_name":"V"}"#;
    let raw = |path: &str, headers: &str| {
        let req = format!(
            "POST {path} HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        http_raw(api, req.as_bytes())
    };
    // What a <form enctype=text/plain> or a no-cors fetch from another site sends.
    let r = raw(
        "/api/client/register",
        "Content-Type: text/plain\r\nOrigin: http://evil.example\r\nSec-Fetch-Site: cross-site\r\n",
    );
    assert_eq!(r.status, 403, "{:?}", r.json());
    assert_eq!(r.json()["success"], false);
    // Even without the browser's hints, text/plain is not JSON.
    let r = raw("/api/client/login", "Content-Type: text/plain\r\n");
    assert_eq!(r.status, 415, "{:?}", r.json());
    assert_eq!(r.json()["success"], false);
    assert!(r.json()["error"]
        .as_str()
        .unwrap()
        .contains("application/json"));
    let r = raw("/api/client/login", "");
    assert_eq!(r.status, 415);
    // JSON from a foreign origin, or marked cross-site, is refused too.
    let r = raw(
        "/api/client/register",
        "Content-Type: application/json\r\nOrigin: http://evil.example\r\n",
    );
    assert_eq!(r.status, 403, "{:?}", r.json());
    let r = raw(
        "/api/client/login",
        "Content-Type: application/json\r\nSec-Fetch-Site: cross-site\r\n",
    );
    assert_eq!(r.status, 403, "{:?}", r.json());
    // The account was never created.
    let (s, _) = http_json(
        coord.api,
        "POST",
        "/api/user/login",
        None,
        Some(json!({"username": "victim", "password": PASSWORD})),
    );
    assert_eq!(s, 401);
    // The node's own page may (same origin, JSON).
    let r = raw(
        "/api/client/register",
        &format!("Content-Type: application/json\r\nOrigin: http://{api}\r\nSec-Fetch-Site: same-origin\r\n"),
    );
    assert_eq!(r.status, 200, "{:?}", r.json());
    // A DELETE without JSON is refused before anything else.
    let req = format!(
        "DELETE /api/client/fetch/abc HTTP/1.1\r\nHost: {api}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(http_raw(api, req.as_bytes()).status, 415);
}

#[test]
fn the_client_ui_cannot_be_framed_by_another_page() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    for path in ["/", "/api/client/status"] {
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            n.api
        );
        let r = http_raw(n.api, req.as_bytes());
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(csp.contains("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(
            r.header("x-content-type-options"),
            Some("nosniff"),
            "{path}"
        );
    }
}

// ----- 2. two different files with one name -----

#[test]
fn fetching_alices_report_by_its_hash_never_gets_erins_same_named_report() {
    let coord = Coordinator::start();
    let dir = share_dir();
    let n1 = node(&coord, dir.path(), &[]);
    let n2 = node(&coord, dir.path(), &[]);
    let (alice, _) = n1.session("alice", "Alice");
    let (erin, _) = n1.session("erin", "Erin");
    let (bob, _) = n2.session("bob", "Bob");
    let alices = pattern(3_000_000, 1);
    let erins = pattern(1_000_000, 2);
    // Erin publishes first, so a fetch by name alone would find her first.
    share(&n1, &erin, &put(dir.path(), "erin", "report.pdf", &erins));
    share(
        &n1,
        &alice,
        &put(dir.path(), "alice", "report.pdf", &alices),
    );

    // By name alone: the node does not guess.
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "report.pdf"})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["success"], false);
    assert!(v["error"].is_string());
    let choices = v["choices"].as_array().expect("choices");
    assert_eq!(choices.len(), 2, "{v}");
    let mut got: Vec<(String, u64, String)> = choices
        .iter()
        .map(|c| {
            (
                c["sha256"].as_str().unwrap().to_owned(),
                c["size"].as_u64().unwrap(),
                c["hosts"][0]["hostname"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort_by_key(|c| c.1);
    assert_eq!(
        got,
        vec![
            (sha(&erins), 1_000_000, "erin".to_owned()),
            (sha(&alices), 3_000_000, "alice".to_owned())
        ]
    );

    // The Network view's row carries the hash the UI sends.
    let (s, v) = n2.call(
        "GET",
        "/api/client/network-files?q=report",
        Some(&bob),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let rows = v["files"].as_array().unwrap();
    assert!(
        rows.iter().any(|f| f["sha256"] == sha(&alices).as_str()),
        "{v}"
    );

    // By Alice's hash: exactly Alice's bytes.
    let target = dir.path().join("bob-down").join("report.pdf");
    let id = start_fetch(
        &n2,
        &bob,
        json!({"fname": "report.pdf", "sha256": sha(&alices), "save_path": target}),
    );
    let p = wait_final(&n2, &bob, &id);
    assert_eq!(p["status"], "completed", "{p}");
    assert_eq!(p["peer"], "alice", "{p}");
    assert!(
        std::fs::read(&target).unwrap() == alices,
        "not Alice's bytes"
    );

    // A hash nobody offers: 404, nothing started.
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "report.pdf", "sha256": "0".repeat(64)})),
    );
    assert_eq!(s, 404, "{v}");
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "report.pdf", "sha256": "not-a-hash"})),
    );
    assert_eq!(s, 400, "{v}");
}

// ----- 3. a host that lies about its content -----

/// A fake host: registers `files` (name → advertised size and hash) with
/// the coordinator as `hostname`, and answers the peer protocol with junk
/// of the advertised size. Counts the junk bytes it sent.
struct FakeHost {
    sent: Arc<AtomicU64>,
    _registry: RegistryClient,
}

impl FakeHost {
    fn start(coord: &Coordinator, hostname: &str, files: &[(&str, u64, String)]) -> FakeHost {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let table: Vec<(String, u64, String)> = files
            .iter()
            .map(|(n, s, h)| (n.to_string(), *s, h.clone()))
            .collect();
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { break };
                let (table, counter) = (table.clone(), counter.clone());
                std::thread::spawn(move || serve_junk(conn, &table, &counter));
            }
        });
        // A real account: its token binds the hostname.
        let (s, v) = http_json(
            coord.api,
            "POST",
            "/api/user/register",
            None,
            Some(json!({"username": hostname, "password": PASSWORD, "display_name": hostname})),
        );
        assert_eq!(s, 200, "{v}");
        let token = v["token"].as_str().unwrap().to_owned();
        let mut meta = serde_json::Map::new();
        for (name, size, hash) in files {
            meta.insert(
                name.to_string(),
                json!({"size": size, "modified": 1.0, "is_published": true, "sha256": hash}),
            );
        }
        let mut reg = RegistryClient::connect(coord.registry);
        let v = reg.req(
            "REGISTER",
            json!({"hostname": hostname, "port": port, "ip": "127.0.0.1",
                   "token": token, "files_metadata": meta}),
        );
        assert_eq!(v["status"], "OK", "{v}");
        FakeHost {
            sent,
            _registry: reg,
        }
    }
}

fn serve_junk(conn: TcpStream, table: &[(String, u64, String)], sent: &AtomicU64) {
    let mut out = conn.try_clone().unwrap();
    let mut r = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let l = line.trim_end_matches('\n');
        let (verb, rest) = l.split_once(' ').unwrap_or((l, ""));
        let (offset, length, name) = match verb {
            "INFO" => {
                let answer = match table.iter().find(|f| f.0 == rest) {
                    Some(f) => format!("INFO {} {}\n", f.1, f.2),
                    None => "ERROR notfound\n".to_owned(),
                };
                if out.write_all(answer.as_bytes()).is_err() {
                    return;
                }
                continue;
            }
            "GET" => (0, u64::MAX, rest),
            "RANGE" => {
                let mut p = rest.splitn(3, ' ');
                let o: u64 = p.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                let n: u64 = p.next().and_then(|x| x.parse().ok()).unwrap_or(0);
                (o, n, p.next().unwrap_or(""))
            }
            "PING" => {
                let _ = out.write_all(b"PONG\n");
                continue;
            }
            _ => return,
        };
        let Some(f) = table.iter().find(|f| f.0 == name) else {
            let _ = out.write_all(b"ERROR notfound\n");
            continue;
        };
        let n = length.min(f.1.saturating_sub(offset));
        if out.write_all(format!("LENGTH {n}\n").as_bytes()).is_err() {
            return;
        }
        let junk = vec![0x5a_u8; 64 * 1024];
        let mut left = n;
        while left > 0 {
            let k = left.min(junk.len() as u64) as usize;
            if out.write_all(&junk[..k]).is_err() {
                return;
            }
            sent.fetch_add(k as u64, Ordering::Relaxed);
            left -= k as u64;
        }
    }
}

#[test]
fn a_fake_host_with_a_real_files_hash_is_dropped_and_the_honest_host_finishes_the_fetch() {
    let coord = Coordinator::start();
    let dir = share_dir();
    let n1 = node(&coord, dir.path(), &[]);
    let n2 = node(&coord, dir.path(), &[]);
    let (alice, _) = n1.session("alice", "Alice");
    let (bob, _) = n2.session("bob", "Bob");
    let body = pattern(2_500_000, 7);
    let name = share(&n1, &alice, &put(dir.path(), "alice", "data.bin", &body));
    let lonely = ("lonely.bin", 300_000u64, sha(&pattern(300_000, 9)));
    let fake = FakeHost::start(
        &coord,
        "mallory",
        &[(&name, body.len() as u64, sha(&body)), lonely.clone()],
    );

    // Mallory is tried first: its junk fails the hash, Alice finishes.
    let target = dir.path().join("bob-down").join("data.bin");
    let id = start_fetch(
        &n2,
        &bob,
        json!({"fname": name, "sha256": sha(&body), "hostname": "mallory", "save_path": target}),
    );
    let p = wait_final(&n2, &bob, &id);
    assert_eq!(p["status"], "completed", "{p}");
    assert!(
        fake.sent.load(Ordering::Relaxed) > 0,
        "mallory was never asked"
    );
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    assert_eq!(p["peer"], "alice", "{p}");
    let peers = p["peers"].as_array().expect("peers");
    let m = peers
        .iter()
        .find(|x| x["hostname"] == "mallory")
        .unwrap_or_else(|| panic!("{p}"));
    assert_eq!(m["state"], "dropped", "{p}");
    assert!(m["reason"].as_str().unwrap().contains("SHA-256"), "{p}");
    assert_eq!(m["ip"], "127.0.0.1");
    assert!(m["port"].as_u64().unwrap() > 0);
    let a = peers.iter().find(|x| x["hostname"] == "alice").unwrap();
    assert_eq!(a["state"], "done", "{p}");
    assert_eq!(a["bytes"].as_u64(), Some(body.len() as u64), "{p}");

    // With nobody else to ask, the fetch fails and says who was dropped and why.
    let lonely_target = dir.path().join("bob-down").join("lonely.bin");
    let id = start_fetch(
        &n2,
        &bob,
        json!({"fname": "lonely.bin", "sha256": lonely.2, "save_path": lonely_target}),
    );
    let p = wait_final(&n2, &bob, &id);
    assert_eq!(p["status"], "failed", "{p}");
    let err = p["error"].as_str().unwrap();
    assert!(err.contains("mallory") && err.contains("dropped"), "{err}");
    assert!(err.contains("SHA-256"), "{err}");
    assert!(!lonely_target.exists());
    assert!(!dir.path().join("bob-down/lonely.bin.part").exists());
}

// ----- 4. a crash right after /fetch answered -----

#[test]
fn a_fetch_answered_just_before_kill_9_resumes_after_restart_and_orphan_parts_are_removed() {
    let coord = Coordinator::start();
    let dir = share_dir();
    let slow = ["--max-upload-rate", "3000000"];
    let n1 = node(&coord, dir.path(), &slow);
    let mut n2 = node(&coord, dir.path(), &[]);
    let (alice, _) = n1.session("alice", "Alice");
    let (bob, _) = n2.session("bob", "Bob");
    let body = pattern(6_000_000, 3);
    let name = share(&n1, &alice, &put(dir.path(), "alice", "big.bin", &body));

    let id = start_fetch(&n2, &bob, json!({"fname": name, "sha256": sha(&body)}));
    n2.proc.kill();
    let downloads = n2.data.join("users").join("bob").join("downloads");
    assert!(
        downloads.join("big.bin.part").exists(),
        "the fetch had started"
    );
    // Left by some earlier crash: nobody claims it.
    let orphan = downloads.join("old-thing.iso.part");
    std::fs::write(&orphan, b"half of something").unwrap();
    let unrelated = downloads.join("notes.txt");
    std::fs::write(&unrelated, b"mine").unwrap();

    n2.restart();
    let bob = n2.login("bob", "Bob");
    assert!(!orphan.exists(), "an unclaimed .part survived the restart");
    assert!(unrelated.exists());
    let (s, v) = n2.call("GET", "/api/client/fetches", Some(&bob), None);
    assert_eq!(s, 200, "{v}");
    assert!(
        v["fetches"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["fetch_id"] == id.as_str()),
        "the answered fetch was forgotten: {v}"
    );
    let p = wait_final(&n2, &bob, &id);
    assert_eq!(p["status"], "completed", "{p}");
    let saved = PathBuf::from(p["save_path"].as_str().unwrap());
    assert!(std::fs::read(&saved).unwrap() == body, "bytes differ");
    assert!(!downloads.join("big.bin.part").exists());
}

// ----- 5. a token that outlives its logout -----

/// Needs the coordinator's `POST /api/user/logout` (revocation); against a
/// coordinator without it the node logs the 404 and this test fails.
#[test]
fn logging_out_through_the_node_revokes_the_token_at_the_coordinator() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let (token, _) = n.session("carol", "Carol");
    let (s, v) = http_json(
        coord.api,
        "POST",
        "/api/user/verify",
        None,
        Some(json!({"token": token})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = n.call("POST", "/api/client/logout", Some(&token), Some(json!({})));
    assert_eq!(s, 200, "{v}");
    let (s, v) = http_json(
        coord.api,
        "POST",
        "/api/user/verify",
        None,
        Some(json!({"token": token})),
    );
    assert_eq!(s, 401, "the token still works after logout: {v}");
}

// ----- 6. strangers holding a peer port -----

/// A TCP connection from a chosen loopback address (127.0.0.2 is as local
/// as 127.0.0.1, but another source address).
fn connect_from(src: [u8; 4], to: SocketAddr) -> TcpStream {
    // SAFETY: plain socket calls on a descriptor we own; the sockaddr
    // structures live on the stack for the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket");
        let stream = TcpStream::from_raw_fd(fd);
        let mut a: libc::sockaddr_in = std::mem::zeroed();
        a.sin_family = libc::AF_INET as libc::sa_family_t;
        a.sin_addr.s_addr = u32::from_ne_bytes(src);
        let rc = libc::bind(
            fd,
            &a as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "bind {src:?}: {}", std::io::Error::last_os_error());
        let SocketAddr::V4(to) = to else {
            panic!("IPv4 only")
        };
        let mut b: libc::sockaddr_in = std::mem::zeroed();
        b.sin_family = libc::AF_INET as libc::sa_family_t;
        b.sin_port = to.port().to_be();
        b.sin_addr.s_addr = u32::from_ne_bytes(to.ip().octets());
        let rc = libc::connect(
            fd,
            &b as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        assert_eq!(rc, 0, "connect: {}", std::io::Error::last_os_error());
        stream
    }
}

/// Whether the other side closed: a read of 0 (or an error) without waiting.
fn is_closed(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 16];
    let mut r = s;
    let closed = match r.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    closed
}

#[test]
fn three_hundred_idle_connections_from_one_address_cannot_stop_another_from_downloading() {
    let coord = Coordinator::start();
    let dir = share_dir();
    let n = node(&coord, dir.path(), &[]);
    let (alice, port) = n.session("alice", "Alice");
    let body = pattern(200_000, 5);
    let name = share(&n, &alice, &put(dir.path(), "alice", "small.bin", &body));
    let peer: SocketAddr = ([127, 0, 0, 1], port).into();

    let opened = Instant::now();
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| connect_from([127, 0, 0, 1], peer))
        .collect();

    // Another address is served at once.
    let mut s = connect_from([127, 0, 0, 2], peer);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("GET {name}\n").as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).expect("an answer for 127.0.0.2");
    assert_eq!(line, format!("LENGTH {}\n", body.len()));
    let mut got = vec![0u8; body.len()];
    r.read_exact(&mut got).unwrap();
    assert!(got == body);

    // One address holds at most 32; the rest were closed at once.
    let closed = wait_for("the connections over the cap to be closed", || {
        let n = idle.iter().filter(|s| is_closed(s)).count();
        (n >= 300 - 32).then_some(n)
    });
    assert!(closed <= 300 - 32 + 1, "{closed} closed: the cap is not 32");

    // The ones kept are closed once they have sent no request for 10 s.
    wait_until(
        "every idle connection closed (first-line timeout)",
        Duration::from_secs(20),
        || idle.iter().all(is_closed).then_some(()),
    );
    let took = opened.elapsed();
    assert!(
        took >= Duration::from_secs(9),
        "closed after {took:?}: too early"
    );
}
