//! Multi-source fetches through a real fetching node, against scripted
//! peers that register with a real coordinator and serve a file with its
//! piece list (`PIECES`) and `RANGE`s: several hosts at once, a host that
//! corrupts pieces, a host that lies about its piece list, kill -9 and
//! resume without fetching verified pieces again, pause, resume, cancel.
//! Piece digests and roots are computed here, independently of the node.

mod harness;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const PIECE: usize = 1 << 20;

fn hexs(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The piece digests of `body` and their root.
fn piece_list(body: &[u8]) -> (Vec<u8>, String) {
    let mut list = Vec::new();
    for p in body.chunks(PIECE) {
        list.extend_from_slice(&Sha256::digest(p));
    }
    let root = hexs(&Sha256::digest(&list));
    (list, root)
}

#[derive(Clone, Copy, Default)]
struct Script {
    /// Bytes per second per connection (None: as fast as it goes).
    rate: Option<u64>,
    /// Every piece it sends has a byte flipped.
    corrupt: bool,
    /// Its piece list does not match the root it registered.
    lie_list: bool,
}

struct Shared {
    name: String,
    body: Vec<u8>,
    list: Vec<u8>,
    script: Script,
    /// RANGE requests, as piece indexes, in arrival order.
    ranges: Mutex<Vec<u64>>,
    sent: AtomicU64,
    open: AtomicUsize,
    stop: AtomicBool,
}

/// A peer played by the test: its listener, and its registration kept open.
struct FakePeer {
    host: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    _reg: RegistryClient,
}

impl FakePeer {
    fn start(coord: &Coordinator, host: &str, name: &str, body: &[u8], script: Script) -> FakePeer {
        let (list, root) = piece_list(body);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            name: name.to_owned(),
            body: body.to_vec(),
            list,
            script,
            ranges: Mutex::new(Vec::new()),
            sent: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        let token = match coord.call(
            "POST",
            "/api/user/login",
            None,
            Some(json!({"username": host, "password": PASSWORD})),
        ) {
            (200, v) => v["token"].as_str().unwrap().to_owned(),
            _ => coord.account(host, host),
        };
        let mut reg = RegistryClient::connect(coord.registry);
        let sha = sha256_hex(body);
        let v = reg.req(
            "REGISTER",
            json!({"hostname": host, "port": addr.port(), "ip": "127.0.0.1", "token": token,
                   "files_metadata": {name: {"size": body.len(), "modified": 1.0, "is_published": true,
                                             "sha256": sha, "root": root}}}),
        );
        assert_eq!(v["status"], "OK", "{v}");
        FakePeer {
            host: host.to_owned(),
            addr,
            shared,
            _reg: reg,
        }
    }

    fn ranges(&self) -> Vec<u64> {
        self.shared.ranges.lock().unwrap().clone()
    }

    fn sent(&self) -> u64 {
        self.shared.sent.load(Ordering::SeqCst)
    }

    fn open(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// One connection: request lines answered in order.
fn serve(conn: TcpStream, s: &Shared) {
    s.open.fetch_add(1, Ordering::SeqCst);
    let mut out = conn.try_clone().unwrap();
    let mut lines = BufReader::new(conn);
    let mut line = String::new();
    loop {
        line.clear();
        if s.stop.load(Ordering::SeqCst) || !matches!(lines.read_line(&mut line), Ok(n) if n > 0) {
            break;
        }
        let l = line.trim_end_matches('\n');
        let ok = if l == format!("INFO {}", s.name) {
            let sha = hexs(&Sha256::digest(&s.body));
            out.write_all(format!("INFO {} {sha}\n", s.body.len()).as_bytes())
                .is_ok()
        } else if l == format!("PIECES {}", s.name) {
            let mut list = s.list.clone();
            if s.script.lie_list && !list.is_empty() {
                list[0] ^= 1;
            }
            let head = format!("PIECES {} {PIECE}\n", list.len() / 32);
            out.write_all(head.as_bytes()).is_ok() && out.write_all(&list).is_ok()
        } else if let Some(rest) = l.strip_prefix("RANGE ") {
            let mut it = rest.splitn(3, ' ');
            let off: usize = it.next().unwrap().parse().unwrap();
            let len: usize = it.next().unwrap().parse().unwrap();
            s.ranges.lock().unwrap().push((off / PIECE) as u64);
            let end = (off + len).min(s.body.len());
            let mut data = s.body[off..end].to_vec();
            if s.script.corrupt && !data.is_empty() {
                data[0] ^= 0xff;
            }
            out.write_all(format!("LENGTH {}\n", data.len()).as_bytes())
                .is_ok()
                && send_paced(&mut out, &data, s)
        } else {
            out.write_all(b"ERROR notfound\n").is_ok()
        };
        if !ok {
            break;
        }
    }
    s.open.fetch_sub(1, Ordering::SeqCst);
}

/// Writes `data` at the script's rate (pacing this peer's own thread).
fn send_paced(out: &mut TcpStream, data: &[u8], s: &Shared) -> bool {
    let start = Instant::now();
    let mut done = 0usize;
    for chunk in data.chunks(64 * 1024) {
        if s.stop.load(Ordering::SeqCst) || out.write_all(chunk).is_err() {
            return false;
        }
        done += chunk.len();
        s.sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        if let Some(rate) = s.script.rate {
            let due = Duration::from_secs_f64(done as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
        }
    }
    true
}

fn fetching_node(coord: &Coordinator, data: &Path) -> Node {
    Node::start_in(
        data,
        coord.registry,
        coord.api,
        &["--host", "127.0.0.1", "--advertise-ip", "127.0.0.1"],
        &[],
    )
}

fn status(p: &Value) -> &str {
    p["status"].as_str().unwrap_or("")
}

fn peer<'a>(p: &'a Value, host: &str) -> &'a Value {
    p["peers"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["hostname"] == host))
        .unwrap_or_else(|| panic!("{host} not in peers: {p}"))
}

const SIZE: usize = 12 * PIECE + 12_345;

#[test]
fn a_fetch_from_three_hosts_uses_all_three() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(SIZE, 21);
    let slow = Script {
        rate: Some(3_000_000),
        ..Script::default()
    };
    let peers: Vec<FakePeer> = ["erin", "frank", "gina"]
        .iter()
        .map(|h| FakePeer::start(&coord, h, "three.bin", &body, slow))
        .collect();
    let c = fetching_node(&coord, &tmp.path().join("c"));
    let carol = c.user("carol");
    let target = tmp.path().join("down/three.bin");
    let id = c.fetch(
        &carol,
        json!({"fname": "three.bin", "sha256": sha256_hex(&body), "save_path": target}),
    );
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    assert_eq!(p["root"], piece_list(&body).1, "{p}");
    for fp in &peers {
        let e = peer(&p, &fp.host);
        assert!(
            e["bytes"].as_u64().unwrap() > 0,
            "{} sent nothing: {p}",
            fp.host
        );
        assert!(!fp.ranges().is_empty());
    }
    // Each piece was asked once, except for endgame duplicates of the last few.
    let asked: usize = peers.iter().map(|f| f.ranges().len()).sum();
    assert!(asked <= 13 + 8, "asked {asked} pieces for 13");
    assert!(files_like(&tmp.path().join("down"), "three.bin.part").is_empty());
}

#[test]
fn a_host_sending_corrupt_pieces_is_dropped_and_the_file_completes() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(SIZE, 22);
    let good = Script {
        rate: Some(4_000_000),
        ..Script::default()
    };
    let bad = Script {
        corrupt: true,
        ..Script::default()
    };
    let _a = FakePeer::start(&coord, "honest1", "rot.bin", &body, good);
    let _b = FakePeer::start(&coord, "honest2", "rot.bin", &body, good);
    let _m = FakePeer::start(&coord, "rotten", "rot.bin", &body, bad);
    let c = fetching_node(&coord, &tmp.path().join("c"));
    let carol = c.user("carol");
    let target = tmp.path().join("down/rot.bin");
    let id = c.fetch(
        &carol,
        json!({"fname": "rot.bin", "sha256": sha256_hex(&body), "save_path": target}),
    );
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    let m = peer(&p, "rotten");
    assert_eq!(m["state"], "dropped", "{p}");
    assert!(
        m["reason"]
            .as_str()
            .unwrap_or("")
            .contains("does not match its digest"),
        "{p}"
    );
}

#[test]
fn a_host_lying_about_its_piece_list_is_dropped_and_another_gives_it() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(3 * PIECE + 7, 23);
    let liar = Script {
        lie_list: true,
        ..Script::default()
    };
    let _l = FakePeer::start(&coord, "liar", "list.bin", &body, liar);
    let _h = FakePeer::start(&coord, "honest", "list.bin", &body, Script::default());
    let c = fetching_node(&coord, &tmp.path().join("c"));
    let carol = c.user("carol");
    let target = tmp.path().join("down/list.bin");
    let id = c.fetch(
        &carol,
        json!({"fname": "list.bin", "sha256": sha256_hex(&body), "save_path": target, "hostname": "liar"}),
    );
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body);
    let l = peer(&p, "liar");
    assert_eq!(l["state"], "dropped", "{p}");
    assert!(
        l["reason"].as_str().unwrap_or("").contains("piece list"),
        "{p}"
    );
}

/// The verified pieces a fetch recorded in its resume state.
fn recorded_pieces(data: &Path, id: &str) -> Vec<u64> {
    let Ok(bytes) = std::fs::read(data.join("fetches").join(format!("{id}.state"))) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let hex = v["have"].as_str().unwrap_or("");
    let mut out = Vec::new();
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        let b = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        for bit in 0..8 {
            if b & (1 << bit) != 0 {
                out.push((i * 8 + bit) as u64);
            }
        }
    }
    out
}

#[test]
fn a_node_killed_mid_fetch_resumes_without_fetching_verified_pieces_again() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(SIZE, 24);
    let slow = Script {
        rate: Some(2_000_000),
        ..Script::default()
    };
    let first = FakePeer::start(&coord, "seeder", "resume.bin", &body, slow);
    let data = tmp.path().join("c");
    let mut c = fetching_node(&coord, &data);
    let carol = c.user("carol");
    let target = tmp.path().join("down/resume.bin");
    let id = c.fetch(
        &carol,
        json!({"fname": "resume.bin", "sha256": sha256_hex(&body), "save_path": target}),
    );
    let kept = wait_for("some pieces recorded", || {
        let got = recorded_pieces(&data, &id);
        (got.len() >= 3).then_some(got)
    });
    c.kill();
    assert!(
        !target.exists(),
        "no file under the final name after kill -9"
    );
    // The serving peer comes back on another port: only the registry knows.
    drop(first);
    let again = FakePeer::start(&coord, "seeder", "resume.bin", &body, Script::default());
    let c = fetching_node(&coord, &data);
    let carol = User {
        token: c.login("carol", "carol"),
        ..carol
    };
    let (s, v) = c.call(
        "POST",
        "/api/client/init",
        Some(&carol.token),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{v}");
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(&target).unwrap() == body, "bytes differ");
    let asked_again: Vec<u64> = again
        .ranges()
        .into_iter()
        .filter(|p| kept.contains(p))
        .collect();
    assert!(
        asked_again.is_empty(),
        "pieces {asked_again:?} were verified before the kill and fetched again"
    );
    assert!(
        again.ranges().len() + kept.len() <= 13,
        "{:?}",
        again.ranges()
    );
}

#[test]
fn pause_stops_the_bytes_resume_completes_and_cancel_removes_the_part() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let body = pattern(SIZE, 25);
    let slow = Script {
        rate: Some(2_000_000),
        ..Script::default()
    };
    let fp = FakePeer::start(&coord, "slowpoke", "p.bin", &body, slow);
    let data = tmp.path().join("c");
    let c = fetching_node(&coord, &data);
    let carol = c.user("carol");
    let out = tmp.path().join("down");
    let id = c.fetch(
        &carol,
        json!({"fname": "p.bin", "sha256": sha256_hex(&body), "save_path": out.join("p.bin")}),
    );
    c.wait_fetch(&carol, &id, 60, |p| {
        p["downloaded_size"].as_u64().unwrap_or(0) > 1_500_000
    });
    let call = |what: &str| {
        c.call(
            "POST",
            &format!("/api/client/fetch/{id}/{what}"),
            Some(&carol.token),
            Some(json!({})),
        )
    };
    let (s, v) = call("pause");
    assert_eq!(s, 200, "{v}");
    // Paused: every connection to the host is closed, so no byte can come.
    wait_for("the peer's connections closed", || {
        (fp.open() == 0).then_some(())
    });
    let p = c.progress(&carol, &id);
    assert_eq!(status(&p), "paused", "{p}");
    let sent = fp.sent();
    let p2 = c.progress(&carol, &id);
    assert_eq!(status(&p2), "paused");
    assert_eq!(fp.sent(), sent);
    assert!(
        files_like(&out, "p.bin.part").len() == 1,
        "the .part is kept"
    );

    let (s, v) = call("resume");
    assert_eq!(s, 200, "{v}");
    let p = c.wait_final(&carol, &id, 60);
    assert_eq!(status(&p), "completed", "{p}");
    assert!(std::fs::read(out.join("p.bin")).unwrap() == body);

    // Cancel: the .part and the resume state go.
    let id = c.fetch(
        &carol,
        json!({"fname": "p.bin", "sha256": sha256_hex(&body), "save_path": out.join("q.bin")}),
    );
    wait_for("a piece recorded", || {
        (!recorded_pieces(&data, &id).is_empty()).then_some(())
    });
    let (s, v) = c.call(
        "DELETE",
        &format!("/api/client/fetch/{id}"),
        Some(&carol.token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(status(&c.progress(&carol, &id)), "cancelled");
    wait_for("the .part and its state removed", || {
        let gone = files_like(&out, "q.bin").is_empty()
            && !data.join("fetches").join(format!("{id}.state")).exists();
        gone.then_some(())
    });
}

#[test]
fn a_fetched_file_joins_the_users_files_and_is_published_unless_asked_not_to() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().unwrap();
    let args = ["--host", "127.0.0.1", "--advertise-ip", "127.0.0.1"];
    let a = Node::start_in(&tmp.path().join("a"), coord.registry, coord.api, &args, &[]);
    let c = fetching_node(&coord, &tmp.path().join("c"));
    let (alice, carol) = (a.user("alice"), c.user("carol"));
    let body = pattern(2 * PIECE + 5, 26);
    let src = tmp.path().join("fa");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("spread.bin"), &body).unwrap();
    std::fs::write(src.join("private.bin"), &body[..1000]).unwrap();
    a.publish(&alice, &src.join("spread.bin"));
    a.publish(&alice, &src.join("private.bin"));
    let out = tmp.path().join("down");
    for (name, share) in [("spread.bin", true), ("private.bin", false)] {
        let id = c.fetch(
            &carol,
            json!({"fname": name, "save_path": out.join(name), "share": share}),
        );
        let p = c.wait_final(&carol, &id, 60);
        assert_eq!(status(&p), "completed", "{p}");
        assert_eq!(p["share"], share, "{p}");
        let file = wait_for("the file in carol's files", || {
            let (_, v) = c.call("GET", "/api/client/local-files", Some(&carol.token), None);
            v["files"]
                .as_array()?
                .iter()
                .find(|f| f["name"] == name)
                .cloned()
        });
        assert_eq!(file["is_published"], share, "{file}");
        assert_eq!(
            file["sha256"],
            sha256_hex(if share { &body } else { &body[..1000] })
        );
    }
    let mut reg = RegistryClient::connect(coord.registry);
    wait_for("carol offered as a host", || {
        let v = reg.req("REQUEST", json!({"fname": "spread.bin"}));
        let hosts = v["hosts"].as_array().cloned().unwrap_or_default();
        hosts.iter().any(|h| h["hostname"] == "carol").then_some(())
    });
    let v = reg.req("REQUEST", json!({"fname": "private.bin"}));
    let hosts = v["hosts"].as_array().cloned().unwrap_or_default();
    assert!(!hosts.iter().any(|h| h["hostname"] == "carol"), "{v}");
    // And carol's peer serves it.
    let mut pc = PeerConn::connect(carol.peer);
    pc.send(b"INFO spread.bin\n");
    assert_eq!(
        pc.line(),
        format!("INFO {} {}", body.len(), sha256_hex(&body))
    );
}
