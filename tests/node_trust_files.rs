//! The node's file-system trust boundary, attacked through real processes:
//! what a logged-in user may make the node read (share roots, never the data
//! directory, nothing hidden, no pseudo files, no symlink swapped in) and
//! write (downloads folder, download roots, share roots; `.part` files and
//! renames that never follow a symlink).

mod harness;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// A non-hidden temporary base (`trust-…`) with a share root and a folder
/// outside every root, both canonical.
struct Dirs {
    _tmp: tempfile::TempDir,
    share: PathBuf,
    outside: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::Builder::new()
        .prefix("trust-")
        .tempdir()
        .expect("tempdir");
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let share = base.join("share");
    let outside = base.join("outside");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    Dirs {
        _tmp: tmp,
        share,
        outside,
    }
}

fn rooted(coord: &Coordinator, root: &Path, extra: &[&str], env: &[(&str, &str)]) -> Node {
    let root = root.display().to_string();
    let mut args = vec!["--share-root", root.as_str()];
    args.extend_from_slice(extra);
    Node::start_with(coord, &args, env)
}

fn add(n: &Node, token: &str, path: impl serde::Serialize) -> (u16, Value) {
    n.call(
        "POST",
        "/api/client/add-file",
        Some(token),
        Some(json!({ "path": path })),
    )
}

/// One peer-protocol request: the answer line, and the payload if any.
fn peer_get(port: u16, name: &str) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("peer port");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(format!("GET {name}\n").as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let mut body = Vec::new();
    if let Some(n) = line.trim().strip_prefix("LENGTH ") {
        let n: usize = n.parse().unwrap();
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    }
    (line.trim().to_owned(), body)
}

fn fetch(n: &Node, token: &str, body: Value) -> (u16, Value) {
    n.call("POST", "/api/client/fetch", Some(token), Some(body))
}

/// Polls a fetch until it is completed, failed or cancelled.
fn fetch_end(n: &Node, token: &str, id: &str) -> Value {
    wait_for(&format!("fetch {id} to end"), || {
        let (s, v) = n.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(token),
            None,
        );
        let st = v["status"].as_str().unwrap_or("");
        (s == 200 && matches!(st, "completed" | "failed" | "cancelled")).then_some(v)
    })
}

/// A coordinator, a node with alice publishing `body` as `name` from the
/// share root, and a second node for bob; both share `d.share`.
struct Pair {
    coord: Coordinator,
    n1: Node,
    n2: Node,
    bob: String,
}

/// `extra1`: flags of the serving node (an upload rate, so a transfer lasts).
fn pair(d: &Dirs, name: &str, body: &[u8], extra1: &[&str]) -> Pair {
    let coord = Coordinator::start();
    let n1 = rooted(&coord, &d.share, extra1, &[]);
    let n2 = rooted(&coord, &d.share, &[], &[]);
    let (alice, _) = n1.session("alice", "Alice");
    let (bob, _) = n2.session("bob", "Bob");
    let src = d.share.join("from-alice");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join(name), body).unwrap();
    n1.add_and_publish(&alice, &src.join(name));
    Pair { coord, n1, n2, bob }
}

#[test]
fn a_user_cannot_share_the_nodes_secrets_file() {
    let d = dirs();
    let data = d.share.join("p2pshare-data");
    let args: Vec<String> = [
        "up",
        "--registry-port",
        "0",
        "--admin-api-port",
        "0",
        "--client-api-port",
        "0",
        "--port-range",
        "0-0",
        "--advertise-ip",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(["--data-dir".into(), data.display().to_string()])
    // The data directory lies inside the share root, as `up` in a home dir does.
    .chain(["--share-root".into(), d.share.display().to_string()])
    .collect();
    let env = [
        ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
        ("P2PSHARE_LOG", "warn".to_string()),
    ];
    let mut p = Proc::spawn("up", &args, &env);
    let _registry = p.wait_line("registry listening on ");
    let _admin = p.wait_line("admin api listening on ");
    let client = reachable(&p.wait_line("client api listening on "));
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/register",
        None,
        Some(json!({"username":"mallory","password":PASSWORD,"display_name":"M"})),
    );
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/init",
        Some(&token),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{v}");
    let port = v["client"]["port"].as_u64().unwrap() as u16;
    let secrets = data.join("secrets.json");
    let secret_text = std::fs::read_to_string(&secrets).expect("up keeps its secrets here");

    let call = |path: &Path| {
        http_json(
            client,
            "POST",
            "/api/client/add-file",
            Some(&token),
            Some(json!({ "path": path })),
        )
    };
    let (s, v) = call(&secrets);
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("data directory"),
        "{v}"
    );
    // Through a symlink in the share root, or a path that climbs into it: the same.
    symlink(&secrets, d.share.join("notes.json")).unwrap();
    let (s, v) = call(&d.share.join("notes.json"));
    assert_eq!(s, 403, "{v}");
    let (s, v) = call(&d.share.join("x/../p2pshare-data/secrets.json"));
    assert!(s == 403 || s == 400, "{s} {v}");
    // Nothing is tracked, so the peer port serves nothing.
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/publish",
        Some(&token),
        Some(json!({"fname": "secrets.json"})),
    );
    assert_eq!(s, 404, "{v}");
    let (line, body) = peer_get(port, "secrets.json");
    assert_eq!(line, "ERROR notfound");
    assert!(!String::from_utf8_lossy(&body).contains(secret_text.trim()));
}

#[test]
fn add_file_refuses_a_path_outside_the_share_roots() {
    let d = dirs();
    let coord = Coordinator::start();
    let n = rooted(&coord, &d.share, &[], &[]);
    let (alice, _) = n.session("alice", "Alice");
    let elsewhere = d.outside.join("private.txt");
    std::fs::write(&elsewhere, b"not for sharing").unwrap();
    for path in [elsewhere.as_path(), Path::new("/etc/passwd")] {
        let (s, v) = add(&n, &alice, path);
        assert_eq!(s, 403, "{}: {v}", path.display());
        assert_eq!(
            v["error"],
            format!(
                "You can only share files inside {} (the node's share roots; the operator sets them with --share-root)",
                d.share.display()
            )
        );
    }
    let (_, v) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(v["files"], json!([]));
    // Inside the root it works.
    let ok = d.share.join("report.txt");
    std::fs::write(&ok, b"fine").unwrap();
    let (s, v) = add(&n, &alice, &ok);
    assert_eq!(s, 200, "{v}");
}

#[test]
fn add_file_refuses_a_symlink_that_points_outside() {
    let d = dirs();
    let coord = Coordinator::start();
    let n = rooted(&coord, &d.share, &[], &[]);
    let (alice, _) = n.session("alice", "Alice");
    std::fs::write(d.outside.join("secret.txt"), b"secret").unwrap();
    symlink(d.outside.join("secret.txt"), d.share.join("link.txt")).unwrap();
    symlink(&d.outside, d.share.join("out")).unwrap();
    symlink("/etc/passwd", d.share.join("passwd")).unwrap();
    for p in ["link.txt", "out/secret.txt", "passwd"] {
        let (s, v) = add(&n, &alice, d.share.join(p));
        assert_eq!(s, 403, "{p}: {v}");
        assert!(v["error"].as_str().unwrap().contains("--share-root"), "{v}");
    }
}

#[test]
fn a_symlink_swapped_in_after_add_file_is_not_served() {
    let d = dirs();
    let coord = Coordinator::start();
    let n = rooted(&coord, &d.share, &[], &[]);
    let (alice, port) = n.session("alice", "Alice");
    let doc = d.share.join("doc.txt");
    std::fs::write(&doc, b"public words").unwrap();
    let name = n.add_and_publish(&alice, &doc);
    let (line, body) = peer_get(port, &name);
    assert_eq!(line, "LENGTH 12");
    assert_eq!(body, b"public words");

    // The file becomes a symlink to a secret of the same size and mtime.
    let secret = d.outside.join("secret.txt");
    std::fs::write(&secret, b"SECRET WORDS").unwrap();
    let mtime = std::fs::metadata(&doc).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(&secret)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    std::fs::remove_file(&doc).unwrap();
    symlink(&secret, &doc).unwrap();
    let (line, body) = peer_get(port, &name);
    assert_eq!(line, "ERROR filenotfound");
    assert!(body.is_empty());
    // A folder on the way swapped likewise.
    let sub = d.share.join("sub");
    std::fs::create_dir(&sub).unwrap();
    std::fs::write(sub.join("notes.txt"), b"notes").unwrap();
    let name = n.add_and_publish(&alice, &sub.join("notes.txt"));
    std::fs::rename(&sub, d.share.join("sub-old")).unwrap();
    std::fs::write(d.outside.join("notes.txt"), b"NOTES").unwrap();
    symlink(&d.outside, &sub).unwrap();
    let (line, _) = peer_get(port, &name);
    assert_eq!(line, "ERROR filenotfound");
}

#[test]
fn a_planted_part_symlink_does_not_redirect_a_fetch() {
    let d = dirs();
    let body = pattern(300_000, 7);
    let p = pair(&d, "tool.bin", &body, &[]);
    let inbox = d.share.join("inbox");
    std::fs::create_dir(&inbox).unwrap();
    let victim = d.outside.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    symlink(&victim, inbox.join("tool.bin.part")).unwrap();
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "tool.bin", "save_path": inbox.join("tool.bin"), "hostname": "alice"}),
    );
    assert_eq!(s, 200, "{v}");
    let done = fetch_end(&p.n2, &p.bob, v["fetch_id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    let saved = inbox.join("tool.bin");
    assert!(!std::fs::symlink_metadata(&saved)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(
        std::fs::read(&saved).unwrap() == body,
        "the download is intact"
    );
    assert!(!inbox.join("tool.bin.part").exists());
    drop(p.coord);
}

#[test]
fn overwrite_never_replaces_a_file_outside_the_download_roots() {
    let d = dirs();
    let p = pair(&d, "authorized_keys", b"ssh-ed25519 AAAA attacker", &[]);
    let keys = d.outside.join("authorized_keys");
    std::fs::write(&keys, b"ssh-ed25519 AAAA owner").unwrap();
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "authorized_keys", "save_path": keys, "overwrite": true}),
    );
    assert_eq!(s, 403, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("--download-root"),
        "{v}"
    );
    // Another user's catalog in the data directory: refused too.
    let theirs = p.n2.data.join("users/alice/files.json");
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "authorized_keys", "save_path": theirs, "overwrite": true}),
    );
    assert_eq!(s, 403, "{v}");
    // A symlink inside a root pointing at the file: never replaced, never followed.
    symlink(&keys, d.share.join("keys-link")).unwrap();
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "authorized_keys", "save_path": d.share.join("keys-link"), "overwrite": true}),
    );
    assert_ne!(s, 200, "{v}");
    assert_eq!(std::fs::read(&keys).unwrap(), b"ssh-ed25519 AAAA owner");
    assert!(std::fs::symlink_metadata(d.share.join("keys-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    // With --download-root that folder is fine.
    let n3 = rooted(
        &p.coord,
        &d.share,
        &["--download-root", d.outside.to_str().unwrap()],
        &[],
    );
    let (carol, _) = n3.session("carol", "Carol");
    let (s, v) = fetch(
        &n3,
        &carol,
        json!({"fname": "authorized_keys", "save_path": d.outside.join("copy"), "hostname": "alice"}),
    );
    assert_eq!(s, 200, "{v}");
    let done = fetch_end(&n3, &carol, v["fetch_id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
}

#[test]
fn a_save_path_in_a_missing_folder_outside_the_roots_creates_nothing() {
    let d = dirs();
    let p = pair(&d, "x.bin", b"payload", &[]);
    let deep = d.outside.join("new/deeper/x.bin");
    let (s, v) = fetch(&p.n2, &p.bob, json!({"fname": "x.bin", "save_path": deep}));
    assert_eq!(s, 403, "{v}");
    assert!(!d.outside.join("new").exists());
    // A missing folder inside a root is made there.
    let inside = d.share.join("new/deeper/x.bin");
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "x.bin", "save_path": inside}),
    );
    assert_eq!(s, 200, "{v}");
    let done = fetch_end(&p.n2, &p.bob, v["fetch_id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(std::fs::read(&inside).unwrap(), b"payload");
    // A hidden folder below the root is not a place for downloads.
    let hidden = d.share.join(".config/x.bin");
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "x.bin", "save_path": hidden}),
    );
    assert_eq!(s, 403, "{v}");
    assert!(!d.share.join(".config").exists());
}

#[test]
fn a_folder_swapped_for_a_symlink_before_a_fetch_resumes_is_not_followed() {
    let d = dirs();
    let body = pattern(2_000_000, 11);
    // Alice uploads slowly, so bob's fetch is interrupted mid-way.
    let p = pair(&d, "big.bin", &body, &["--max-upload-rate", "200000"]);
    let mut n2 = p.n2;
    let sub = d.share.join("dl/sub");
    std::fs::create_dir_all(&sub).unwrap();
    let (s, v) = fetch(
        &n2,
        &p.bob,
        json!({"fname": "big.bin", "save_path": sub.join("big.bin"), "hostname": "alice"}),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["fetch_id"].as_str().unwrap().to_owned();
    wait_for("some bytes and a durable record", || {
        let (_, v) = n2.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(&p.bob),
            None,
        );
        let recorded =
            std::fs::read_to_string(n2.data.join("fetches.json")).is_ok_and(|s| s.contains(&id));
        (v["downloaded_size"].as_u64().unwrap_or(0) > 0 && recorded).then_some(())
    });
    n2.proc.kill();
    // While the node is down, the folder becomes a symlink to elsewhere.
    std::fs::rename(&sub, d.share.join("dl/sub-old")).unwrap();
    symlink(&d.outside, &sub).unwrap();
    n2.restart();
    let bob = n2.login("bob", "Bob");
    let done = fetch_end(&n2, &bob, &id);
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]
            .as_str()
            .unwrap_or("")
            .contains("--download-root"),
        "{done}"
    );
    assert!(!d.outside.join("big.bin").exists());
    assert!(!d.outside.join("big.bin.part").exists());
    assert_eq!(std::fs::read_dir(&d.outside).unwrap().count(), 0);
    drop(p.n1);
}

#[test]
fn proc_files_are_refused() {
    let coord = Coordinator::start();
    let n = rooted(&coord, Path::new("/"), &["--share-hidden"], &[]);
    let (alice, _) = n.session("alice", "Alice");
    for p in [
        "/proc/self/status",
        "/proc/self/environ",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ] {
        if !Path::new(p).exists() {
            continue;
        }
        let (s, v) = add(&n, &alice, p);
        assert_eq!(s, 403, "{p}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("pseudo file system"),
            "{v}"
        );
    }
    let (_, v) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(v["files"], json!([]));
}

#[test]
fn hidden_files_are_refused_unless_share_hidden() {
    let d = dirs();
    std::fs::create_dir(d.share.join(".ssh")).unwrap();
    std::fs::write(d.share.join(".ssh/id_ed25519"), b"key").unwrap();
    std::fs::write(d.share.join(".env"), b"TOKEN=1").unwrap();
    let coord = Coordinator::start();
    let strict = rooted(&coord, &d.share, &[], &[]);
    let (alice, _) = strict.session("alice", "Alice");
    for p in [".ssh/id_ed25519", ".env"] {
        let (s, v) = add(&strict, &alice, d.share.join(p));
        assert_eq!(s, 403, "{p}: {v}");
        assert!(
            v["error"].as_str().unwrap().contains("--share-hidden"),
            "{v}"
        );
    }
    let open = rooted(&coord, &d.share, &["--share-hidden"], &[]);
    let (bob, _) = open.session("bob", "Bob");
    let (s, v) = add(&open, &bob, d.share.join(".env"));
    assert_eq!(s, 200, "{v}");
}

#[test]
fn a_file_that_keeps_changing_is_not_rehashed_in_a_loop() {
    let d = dirs();
    let coord = Coordinator::start();
    let mut n = rooted(&coord, &d.share, &[], &[]);
    let (alice, _) = n.session("alice", "Alice");
    let log = d.share.join("growing.log");
    std::fs::write(&log, pattern(16 << 20, 5)).unwrap();
    // A writer appends all the time, so every hash sees the file move.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, log) = (stop.clone(), log.clone());
        std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = f.write_all(b"line\n");
                // Pacing the writer (a line a millisecond), not a wait.
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let (s, v) = add(&n, &alice, &log);
    assert_eq!(s, 200, "{v}");
    let entry = |n: &Node, token: &str| -> Option<Value> {
        let (_, v) = n.call("GET", "/api/client/local-files", Some(token), None);
        v["files"]
            .as_array()?
            .iter()
            .find(|f| f["name"] == "growing.log")
            .cloned()
    };
    let f = wait_for("the file marked changing", || {
        entry(&n, &alice).filter(|f| f["changing"] == true && f["next_hash_at"].is_number())
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let wait = f["next_hash_at"].as_f64().unwrap() - now;
    assert!(wait > 5.0, "the next hash waits: {f}");
    assert_eq!(f["hashing"], false, "{f}");
    // For a while nothing is hashing it: an observation window (nothing
    // marks "no hash started"), checked every 100 ms for 2 s.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(2) {
        let f = entry(&n, &alice).unwrap();
        assert_eq!(f["hashing"], false, "{f}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The backoff is kept across a restart.
    wait_for("the backoff on disk", || {
        let users = n.data.join("users/alice/files.json");
        std::fs::read_to_string(users)
            .ok()
            .filter(|s| s.contains("\"changing\": true"))
    });
    n.restart();
    let alice = n.login("alice", "Alice");
    let f = wait_for("the file after a restart", || entry(&n, &alice));
    assert_eq!(f["changing"], true, "{f}");
    assert_eq!(f["hashing"], false, "{f}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.join().unwrap();
}

#[test]
fn a_missing_share_root_stops_the_node_with_a_clear_error() {
    let d = dirs();
    let missing = d.share.join("no such folder");
    let mut child = std::process::Command::new(bin())
        .args(["node", "--client-api-port", "0", "--port-range", "0-0"])
        .arg("--data-dir")
        .arg(d.share.join("data"))
        .arg("--share-root")
        .arg(&missing)
        .current_dir(std::env::temp_dir())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Some(None) after 15 s: the child is killed before the test fails.
    let started = Instant::now();
    let status = wait_for("the node to exit without its share root", || {
        match child.try_wait().unwrap() {
            Some(st) => Some(Some(st)),
            None if started.elapsed() > Duration::from_secs(14) => Some(None),
            None => None,
        }
    });
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the node started without its share root");
    };
    assert!(!status.success());
    assert_ne!(status.code(), Some(101), "no panic");
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains(&format!(
            "--share-root {}: no such folder",
            missing.display()
        )),
        "{err}"
    );
}

#[test]
fn files_tracked_before_the_roots_changed_are_dropped_at_start() {
    let d = dirs();
    let coord = Coordinator::start();
    let data = d.share.join("node-data");
    let old_root = d.outside.display().to_string();
    let n = Node::start_in(
        &data,
        coord.registry,
        coord.api,
        &["--share-root", &old_root],
        &[],
    );
    let (alice, _) = n.session("alice", "Alice");
    std::fs::write(d.outside.join("old.txt"), b"was shared").unwrap();
    n.add_and_publish(&alice, &d.outside.join("old.txt"));
    drop(n);
    // The operator narrows the share roots: the old entry is gone, not served.
    let new_root = d.share.join("pub");
    std::fs::create_dir(&new_root).unwrap();
    let root = new_root.display().to_string();
    let n = Node::start_in(
        &data,
        coord.registry,
        coord.api,
        &["--share-root", &root],
        &[],
    );
    let (alice, port) = n.session("alice", "Alice");
    let (_, v) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(v["files"], json!([]), "{v}");
    let (line, _) = peer_get(port, "old.txt");
    assert_eq!(line, "ERROR notfound");
    let mut r = RegistryClient::connect(coord.registry);
    let found = r.req("REQUEST", json!({"fname": "old.txt"}));
    assert_eq!(found["status"], "NOTFOUND", "{found}");
}

#[test]
fn a_folder_swapped_for_a_symlink_during_a_fetch_does_not_redirect_the_rename() {
    let d = dirs();
    let body = pattern(1_000_000, 13);
    let p = pair(&d, "swap.bin", &body, &["--max-upload-rate", "400000"]);
    let sub = d.share.join("dl/sub");
    std::fs::create_dir_all(&sub).unwrap();
    let (s, v) = fetch(
        &p.n2,
        &p.bob,
        json!({"fname": "swap.bin", "save_path": sub.join("swap.bin"), "hostname": "alice", "overwrite": true}),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["fetch_id"].as_str().unwrap().to_owned();
    wait_for("the download under way", || {
        let (_, v) = p.n2.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(&p.bob),
            None,
        );
        (v["downloaded_size"].as_u64().unwrap_or(0) > 0).then_some(())
    });
    // Mid-way the folder becomes a symlink to a folder holding a planted
    // `.part` next to a file the attacker wants replaced.
    std::fs::rename(&sub, d.share.join("dl/sub-old")).unwrap();
    std::fs::write(d.outside.join("swap.bin.part"), b"planted").unwrap();
    std::fs::write(d.outside.join("swap.bin"), b"victim").unwrap();
    symlink(&d.outside, &sub).unwrap();
    let done = fetch_end(&p.n2, &p.bob, &id);
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(
        std::fs::read(d.outside.join("swap.bin")).unwrap(),
        b"victim"
    );
    assert_eq!(
        std::fs::read(d.outside.join("swap.bin.part")).unwrap(),
        b"planted"
    );
    assert!(!d.share.join("dl/sub-old/swap.bin").exists());
}
