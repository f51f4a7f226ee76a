//! The client API's rules, checked against real processes: the Host check,
//! headers, authentication and users kept apart, bad input with clear errors,
//! crash safety of acknowledged changes, coordinator loss and the heartbeat.

mod harness;

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

/// A node whose coordinator does not exist (only local behaviour is tested).
fn lonely_node() -> Node {
    let dead: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("node");
    let n = Node::start_in(&data, dead, dead, &["--allowed-hosts", "share.lan"], &[]);
    // Keep the directory for the node's lifetime.
    std::mem::forget(tmp);
    n
}

fn with_host(n: &Node, method: &str, path: &str, host: &str) -> HttpResponse {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
    http_raw(n.api, raw.as_bytes())
}

#[test]
fn host_check_headers_and_http_rules() {
    let n = lonely_node();
    let port = n.api.port();

    // DNS rebinding: a foreign Host is refused everywhere, pages and login included.
    for (m, p) in [
        ("GET", "/"),
        ("POST", "/api/client/login"),
        ("GET", "/api/client/status"),
    ] {
        let r = with_host(&n, m, p, &format!("evil.example:{port}"));
        assert_eq!(r.status, 403, "{m} {p}");
        assert_eq!(r.json()["success"], false);
        assert!(r.json()["error"].as_str().unwrap().contains("not allowed"));
    }
    assert_eq!(
        http_raw(n.api, b"GET / HTTP/1.0\r\n\r\n").status,
        403,
        "no Host at all"
    );
    for host in [
        format!("localhost:{port}"),
        "localhost".into(),
        n.api.to_string(),
        "share.lan".into(),
    ] {
        let r = with_host(&n, "GET", "/", &host);
        assert_eq!(r.status, 200, "Host {host}");
    }

    // The UI page and its headers; no CORS anywhere.
    let r = with_host(&n, "GET", "/", "localhost");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert!(r.header("cache-control").is_some());
    assert!(r.header("access-control-allow-origin").is_none());
    let r = with_host(&n, "GET", "/api/client/status", "localhost");
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("content-security-policy"),
        Some("default-src 'self'; frame-ancestors 'none'")
    );
    assert!(r.header("access-control-allow-origin").is_none());
    assert_eq!(
        with_host(&n, "GET", "/../Cargo.toml", "localhost").status,
        404
    );
    assert_eq!(
        with_host(&n, "GET", "/%2e%2e/Cargo.toml", "localhost").status,
        404
    );
    assert_eq!(with_host(&n, "DELETE", "/", "localhost").status, 405);

    // Auth and routing errors are JSON with the right status.
    let (s, v) = n.call("GET", "/api/client/local-files", None, None);
    assert_eq!(s, 401);
    assert!(v["error"].as_str().unwrap().contains("Bearer"));
    let (s, _) = n.call("GET", "/api/client/local-files", Some("not.a.token"), None);
    assert_eq!(
        s, 502,
        "an unknown token is checked with the (absent) coordinator"
    );
    let (s, _) = n.call("GET", "/api/client/nope", None, None);
    assert_eq!(s, 401);
    let (s, v) = n.call("GET", "/api/client/login", None, None);
    assert_eq!(s, 405, "{v}");
    let (s, v) = n.call("GET", "/api/other", None, None);
    assert_eq!(s, 404, "{v}");

    // The coordinator is down: login fails clearly, nothing hangs.
    let (s, v) = n.call(
        "POST",
        "/api/client/login",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    );
    assert_eq!(s, 502, "{v}");
    assert!(v["error"].as_str().unwrap().contains("unreachable"), "{v}");

    // Caps: body over 1 MiB → 413, head over 16 KiB → 431, CL with TE → 400.
    let big = format!(
        "POST /api/client/login HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
        2 * 1024 * 1024
    );
    assert_eq!(http_raw(n.api, big.as_bytes()).status, 413);
    let huge = format!(
        "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(http_raw(n.api, huge.as_bytes()).status, 431);
    let both = "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\nab";
    assert_eq!(http_raw(n.api, both.as_bytes()).status, 400);

    // Keep-alive with pipelining: answers in order on one connection, even
    // when the first one waits on the (unreachable) coordinator.
    let mut s = TcpStream::connect(n.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let body = r#"{"username":"alice","password":"x"}"#;
    let pipelined = format!(
        "POST /api/client/login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}\
         GET /app.js HTTP/1.1\r\nHost: localhost\r\n\r\n\
         GET /missing.txt HTTP/1.1\r\nHost: localhost\r\n\r\n",
        body.len()
    );
    s.write_all(pipelined.as_bytes()).unwrap();
    let mut r = BufReader::new(s);
    assert_eq!(read_response(&mut r).status, 502);
    let js = read_response(&mut r);
    assert_eq!(js.status, 200);
    assert!(js.header("content-type").unwrap().contains("javascript"));
    assert_eq!(read_response(&mut r).status, 404);
}

#[test]
fn users_are_kept_apart_and_bad_input_is_explained() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let (bob, _) = n.session("bobby", "Bob");
    let dir = tempfile::tempdir().unwrap();

    // add-file: clear 400s.
    let add = |token: &str, path: Value| {
        n.call(
            "POST",
            "/api/client/add-file",
            Some(token),
            Some(json!({"path": path})),
        )
    };
    let (s, v) = add(&alice, json!(dir.path()));
    assert_eq!(s, 400);
    assert_eq!(
        v["error"],
        format!(
            "{} is a folder, not a file: add the files in it (Browse… in the web UI, or `p2pshare share FOLDER`)",
            dir.path().display()
        )
    );
    let missing = dir.path().join("no such file.txt");
    let (s, v) = add(&alice, json!(missing));
    assert_eq!(s, 400);
    assert_eq!(v["error"], format!("No such file: {}", missing.display()));
    let (s, v) = add(&alice, json!("relative/name.txt"));
    assert_eq!(s, 400);
    assert!(v["error"].as_str().unwrap().contains("absolute"), "{v}");
    let (s, v) = add(&alice, json!(42));
    assert_eq!(s, 400);
    assert_eq!(v["error"], "'path' must be a string");
    let (s, v) = n.call(
        "POST",
        "/api/client/add-file",
        Some(&alice),
        Some(json!([1])),
    );
    assert_eq!(s, 400, "{v}");
    let locked = dir.path().join("locked.txt");
    std::fs::write(&locked, b"secret").unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    if is_root() {
        println!("skipping the unreadable-file assertion: running as root, chmod 000 does not stop reading");
    } else {
        let (s, v) = add(&alice, json!(locked));
        assert_eq!(s, 400);
        assert!(
            v["error"].as_str().unwrap().contains("is not readable"),
            "{v}"
        );
    }

    // Each user sees only their own files.
    let path = dir.path().join("alice only.txt");
    std::fs::write(&path, b"mine").unwrap();
    let (s, v) = add(&alice, json!(path));
    assert_eq!(s, 200, "{v}");
    let (s, v) = add(&alice, json!(path));
    assert_eq!(s, 200, "adding the same path again is harmless: {v}");
    let (_, v) = n.call("GET", "/api/client/local-files", Some(&bob), None);
    assert!(v["files"].as_array().unwrap().is_empty(), "{v}");
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(&bob),
        Some(json!({"fname": "alice only.txt"})),
    );
    assert_eq!(s, 404, "{v}");
    let (s, _) = n.call(
        "POST",
        "/api/client/publish",
        Some(&bob),
        Some(json!({"path": path})),
    );
    assert_eq!(s, 404);

    // fetch: unknown names fail clearly and create nothing.
    let downloads = n.data.join("users/bobby/downloads");
    let (s, v) = n.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "nobody has this.bin"})),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        v["error"],
        "No peer on the network offers 'nobody has this.bin'"
    );
    assert!(!downloads.join("nobody has this.bin").exists());
    assert!(!downloads.join("nobody has this.bin.part").exists());
    let (s, v) = n.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "a/b"})),
    );
    assert_eq!(s, 400, "{v}");
    let (s, v) = n.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "alice only.txt", "save_path": "relative.txt"})),
    );
    assert_eq!(s, 400, "{v}");
    let existing = dir.path().join("already here.txt");
    std::fs::write(&existing, b"keep me").unwrap();
    let (s, v) = n.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "alice only.txt", "save_path": existing})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        v["error"],
        format!(
            "{} already exists; pass overwrite:true to replace it",
            existing.display()
        )
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    // Another user's fetch is not found; unknown ids neither.
    n.wait_hashed(&alice, "alice only.txt");
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(&alice),
        Some(json!({"fname": "alice only.txt"})),
    );
    assert_eq!(s, 200, "{v}");
    let (s, v) = n.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": "alice only.txt"})),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["fetch_id"].as_str().unwrap().to_owned();
    let (s, _) = n.call(
        "GET",
        &format!("/api/client/fetch-progress/{id}"),
        Some(&bob),
        None,
    );
    assert_eq!(s, 200);
    let (s, v) = n.call(
        "GET",
        &format!("/api/client/fetch-progress/{id}"),
        Some(&alice),
        None,
    );
    assert_eq!(s, 404, "{v}");
    let (s, _) = n.call(
        "DELETE",
        &format!("/api/client/fetch/{id}"),
        Some(&alice),
        None,
    );
    assert_eq!(s, 404);
    let (_, v) = n.call("GET", "/api/client/fetches", Some(&alice), None);
    assert!(v["fetches"].as_array().unwrap().is_empty(), "{v}");
    let (s, _) = n.call(
        "GET",
        "/api/client/fetch-progress/no-such-id",
        Some(&bob),
        None,
    );
    assert_eq!(s, 404);

    // A forged token (valid shape, wrong signature) is refused by the coordinator.
    let mut parts: Vec<String> = alice.split('.').map(str::to_owned).collect();
    parts[2] = "A".repeat(43);
    let forged = parts.join(".");
    let (s, _) = n.call("GET", "/api/client/status", Some(&forged), None);
    assert_eq!(s, 401);

    // A token this node never saw (login elsewhere) is verified once, then works.
    let other = Node::start(&coord);
    let (s, v) = other.call(
        "POST",
        "/api/client/login",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    );
    assert_eq!(s, 200, "{v}");
    let fresh = v["token"].as_str().unwrap().to_owned();
    let (s, v) = n.call("GET", "/api/client/local-files", Some(&fresh), None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["files"][0]["name"], "alice only.txt");

    // An admin token is for the coordinator's admin API, not for sharing.
    let (s, v) = http_json(
        coord.api,
        "POST",
        "/api/admin/login",
        None,
        Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
    );
    assert_eq!(s, 200, "{v}");
    let admin = v["token"].as_str().unwrap().to_owned();
    let (s, v) = n.call("GET", "/api/client/status", Some(&admin), None);
    assert_eq!(s, 401, "{v}");

    // Logout ends alice's session only.
    let (s, _) = n.call("POST", "/api/client/logout", Some(&alice), None);
    assert_eq!(s, 200);
    let (s, _) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(s, 401);
    let (s, _) = n.call("GET", "/api/client/status", Some(&bob), None);
    assert_eq!(s, 200);
}

#[test]
fn acknowledged_changes_survive_kill_9() {
    let coord = Coordinator::start();
    let mut n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("kept.txt");
    std::fs::write(&a, b"published before the crash").unwrap();
    let name = n.add_and_publish(&alice, &a);
    let b = dir.path().join("tracked too.txt");
    std::fs::write(&b, b"only tracked").unwrap();
    let (s, _) = n.call(
        "POST",
        "/api/client/add-file",
        Some(&alice),
        Some(json!({"path": b})),
    );
    assert_eq!(s, 200);

    n.restart();
    let (alice, _) = n.session("alice", "Alice");
    let (s, v) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(s, 200);
    let files = v["files"].as_array().unwrap();
    assert_eq!(files.len(), 2, "{v}");
    let kept = files.iter().find(|f| f["name"] == name.as_str()).unwrap();
    assert_eq!(kept["is_published"], true);
    assert_eq!(kept["path"], a.to_str().unwrap());
    // And the re-REGISTER after init offers it again.
    let mut reg = RegistryClient::connect(coord.registry);
    let v = reg.req("REQUEST", json!({"fname": name}));
    assert_eq!(v["status"], "FOUND", "{v}");
}

/// The user's catalog as it is on disk now, by file name.
fn catalog_on_disk(n: &Node, user: &str) -> std::collections::HashMap<String, Value> {
    let path = n.data.join("users").join(user).join("files.json");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_slice(&bytes).expect("files.json is JSON");
    v["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

#[test]
fn answers_wait_for_the_disk_and_a_failed_write_is_undone() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let dir = tempfile::tempdir().unwrap();
    let post = |path: &str, body: Value| n.call("POST", path, Some(&alice), Some(body));

    // Each answer comes only once files.json holds the change: read it at once.
    let mut names = Vec::new();
    for i in 0..5 {
        let p = dir.path().join(format!("doc {i}.txt"));
        std::fs::write(&p, format!("content {i}")).unwrap();
        let (s, v) = post("/api/client/add-file", json!({"path": p}));
        assert_eq!(s, 200, "{v}");
        let name = v["file"]["name"].as_str().unwrap().to_owned();
        assert!(catalog_on_disk(&n, "alice").contains_key(&name), "{name}");
        names.push(name);
    }
    // Many at once (their writes fold together): each answer still finds its file on disk.
    let api = n.api;
    let data = n.data.clone();
    std::thread::scope(|s| {
        for t in 0..4 {
            let (dir, alice, data) = (dir.path(), &alice, &data);
            s.spawn(move || {
                for i in 0..10 {
                    let p = dir.join(format!("batch {t}-{i}.txt"));
                    std::fs::write(&p, format!("{t} {i}")).unwrap();
                    let body = json!({"path": p});
                    let (s, v) =
                        http_json(api, "POST", "/api/client/add-file", Some(alice), Some(body));
                    assert_eq!(s, 200, "{v}");
                    let f = data.join("users/alice/files.json");
                    let disk = String::from_utf8(std::fs::read(&f).unwrap()).unwrap();
                    assert!(disk.contains(&format!("batch {t}-{i}.txt")), "{t}-{i}");
                }
            });
        }
    });
    for t in 0..4 {
        for i in 0..10 {
            let (s, v) = post(
                "/api/client/remove-file",
                json!({"fname": format!("batch {t}-{i}.txt")}),
            );
            assert_eq!(s, 200, "{v}");
        }
    }
    assert_eq!(catalog_on_disk(&n, "alice").len(), 5);
    let a = names[0].clone();
    n.wait_hashed(&alice, &a);
    let (s, v) = post("/api/client/publish", json!({"fname": a}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(catalog_on_disk(&n, "alice")[&a]["is_published"], true);
    let (s, v) = post("/api/client/unpublish", json!({"fname": a}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(catalog_on_disk(&n, "alice")[&a]["is_published"], false);
    let (s, v) = post("/api/client/remove-file", json!({"fname": names[4]}));
    assert_eq!(s, 200, "{v}");
    assert!(!catalog_on_disk(&n, "alice").contains_key(&names[4]));
    let (s, v) = post("/api/client/publish", json!({"fname": a}));
    assert_eq!(s, 200, "{v}");
    assert_eq!(catalog_on_disk(&n, "alice")[&a]["is_published"], true);

    // Writes start failing (a directory where files.json goes: even root
    // cannot rename a file over it). Every change answers 500 and is undone.
    let store = n.data.join("users/alice/files.json");
    std::fs::remove_file(&store).unwrap();
    std::fs::create_dir(&store).unwrap();
    std::fs::write(store.join("in the way"), b"x").unwrap();
    let b = dir.path().join("late.txt");
    std::fs::write(&b, b"never tracked").unwrap();
    let (s, v) = post("/api/client/add-file", json!({"path": b}));
    assert_eq!(s, 500, "{v}");
    let err = v["error"].as_str().unwrap();
    assert!(
        err.contains("could not be saved") && err.contains("undone"),
        "{v}"
    );
    let (s, v) = post("/api/client/unpublish", json!({"fname": a}));
    assert_eq!(s, 500, "{v}");
    let (s, v) = post("/api/client/remove-file", json!({"fname": names[1]}));
    assert_eq!(s, 500, "{v}");
    let (_, l) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    let listed: Vec<&str> = l["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["doc 0.txt", "doc 1.txt", "doc 2.txt", "doc 3.txt"],
        "{l}"
    );
    assert_eq!(
        l["files"][0]["is_published"], true,
        "the unpublish was undone"
    );
    let mut reg = RegistryClient::connect(coord.registry);
    assert_eq!(reg.req("REQUEST", json!({"fname": a}))["status"], "FOUND");
    // A publish the registry acknowledged but the disk refused is withdrawn there too.
    n.wait_hashed(&alice, &names[2]);
    let (s, v) = post(
        "/api/client/publish",
        json!({"fname": names[2], "force": true}),
    );
    assert_eq!(s, 500, "{v}");
    let (_, l) = n.call("GET", "/api/client/published-files", Some(&alice), None);
    assert_eq!(l["files"].as_array().unwrap().len(), 1, "{l}");
    wait_for("the refused publish withdrawn from the registry", || {
        (reg.req("REQUEST", json!({"fname": names[2]}))["status"] == "NOTFOUND").then_some(())
    });

    // The disk is back: changes are saved again, and disk and memory agree.
    std::fs::remove_dir_all(&store).unwrap();
    let (s, v) = post("/api/client/add-file", json!({"path": b}));
    assert_eq!(s, 200, "{v}");
    let disk = catalog_on_disk(&n, "alice");
    let mut on_disk: Vec<&String> = disk.keys().collect();
    on_disk.sort();
    assert_eq!(
        on_disk,
        [
            "doc 0.txt",
            "doc 1.txt",
            "doc 2.txt",
            "doc 3.txt",
            "late.txt"
        ]
    );
    assert_eq!(disk[&a]["is_published"], true);
    assert_eq!(disk[&names[2]]["is_published"], false);
}

#[test]
fn one_walk_of_the_registry_serves_many_requests() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let (bob, _) = n.session("bob", "Bob");
    let dir = tempfile::tempdir().unwrap();
    let walks = |n: &Node| n.proc.stderr_text().matches("network index:").count();
    let started = Instant::now();
    // Two users, four clients polling at once, and publishes checking duplicates.
    std::thread::scope(|s| {
        for t in 0..4 {
            let token = if t % 2 == 0 { &alice } else { &bob };
            let api = n.api;
            s.spawn(move || {
                for _ in 0..5 {
                    let (st, v) =
                        http_json(api, "GET", "/api/client/network-files", Some(token), None);
                    assert_eq!(st, 200, "{v}");
                }
            });
        }
    });
    for i in 0..3 {
        let p = dir.path().join(format!("photo {i}.jpg"));
        std::fs::write(&p, pattern(1000 + i, i as u64)).unwrap();
        n.add_and_publish(&bob, &p);
    }
    let took = started.elapsed();
    // At most one walk per index lifetime (3 s) went to the coordinator.
    let allowed = 1 + (took.as_secs_f64() / 3.0) as usize;
    let seen = walks(&n);
    assert!(seen >= 1 && seen <= allowed, "{seen} walks in {took:?}");
    // This node's own publishes show at once, from the same index.
    let (s, v) = n.call(
        "GET",
        "/api/client/network-files?q=photo",
        Some(&alice),
        None,
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["total"], 3, "{v}");
    assert_eq!(v["files"][0]["hosts"][0]["hostname"], "bob");
}

#[test]
fn files_changed_or_deleted_on_disk_are_unpublished() {
    let coord = Coordinator::start();
    let n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("draft.txt");
    std::fs::write(&a, b"version one").unwrap();
    let name = n.add_and_publish(&alice, &a);
    let mut reg = RegistryClient::connect(coord.registry);
    assert_eq!(
        reg.req("REQUEST", json!({"fname": name}))["status"],
        "FOUND"
    );

    // Changed: a publish attempt looks at the disk at once (the old content
    // is unpublished) and answers once the new content is hashed, published.
    std::fs::write(&a, b"version two, longer").unwrap();
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "published once the new content was hashed: {v}");
    let f = &v["file"];
    assert_eq!(f["status"], "ok", "{f}");
    assert_eq!(f["is_published"], true);
    assert_eq!(f["size"], 19);
    let new_hash = sha256_hex(b"version two, longer");
    assert_eq!(f["sha256"], new_hash.as_str());
    wait_for("the registry to offer the new content", || {
        let v = reg.req("REQUEST", json!({"fname": name}));
        (v["hosts"][0]["sha256"] == new_hash.as_str()).then_some(())
    });

    // Deleted: the periodic rescan marks it missing and unpublishes it.
    n.wait_hashed(&alice, &name);
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");
    std::fs::remove_file(&a).unwrap();
    let started = Instant::now();
    let f = wait_for("missing noticed", || {
        let (_, l) = n.call("GET", "/api/client/local-files", Some(&alice), None);
        let f = l["files"][0].clone();
        (f["status"] == "missing").then_some(f)
    });
    assert_eq!(f["is_published"], false);
    assert!(started.elapsed() < Duration::from_secs(12));
    wait_for("gone from the registry", || {
        (reg.req("REQUEST", json!({"fname": name}))["status"] == "NOTFOUND").then_some(())
    });
    let (s, v) = n.call(
        "POST",
        "/api/client/publish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 409, "{v}");
    assert!(v["error"].as_str().unwrap().contains("missing"), "{v}");

    // Stop tracking: a published file is unpublished first.
    let b = dir.path().join("short lived.txt");
    std::fs::write(&b, b"here for a moment").unwrap();
    let other = n.add_and_publish(&alice, &b);
    assert_eq!(
        reg.req("REQUEST", json!({"fname": other}))["status"],
        "FOUND"
    );
    for fname in [&other, &name] {
        let (s, v) = n.call(
            "POST",
            "/api/client/remove-file",
            Some(&alice),
            Some(json!({"fname": fname})),
        );
        assert_eq!(s, 200, "{v}");
    }
    let (_, l) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert!(l["files"].as_array().unwrap().is_empty(), "{l}");
    wait_for("unpublished before it stopped being tracked", || {
        (reg.req("REQUEST", json!({"fname": other}))["status"] == "NOTFOUND").then_some(())
    });
    let (s, _) = n.call(
        "POST",
        "/api/client/remove-file",
        Some(&alice),
        Some(json!({"fname": other})),
    );
    assert_eq!(s, 404);
}

#[test]
fn a_restarted_coordinator_gets_the_files_back() {
    // Behind relays: the restarted coordinator binds new ports (port 0) and
    // the node, pointed at the relays, reaches it there.
    let mut coord = Coordinator::start_relayed();
    let n = Node::start(&coord);
    let (alice, _) = n.session("alice", "Alice");
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("survivor file.bin");
    std::fs::write(&a, pattern(10_000, 5)).unwrap();
    let name = n.add_and_publish(&alice, &a);

    coord.restart();
    // The node notices, reconnects with backoff and registers again with its files.
    let mut reg = RegistryClient::connect(coord.registry);
    let started = Instant::now();
    let v = wait_for("re-REGISTER after a coordinator restart", || {
        let v = reg.req("REQUEST", json!({"fname": name}));
        // Online: registered again, not only remembered from before the restart.
        (v["status"] == "FOUND" && v["hosts"][0]["online"] == true).then_some(v)
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(v["hosts"][0]["hostname"], "alice");
    assert_eq!(v["hosts"][0]["size"], 10_000);
    let (s, st) = n.call("GET", "/api/client/status", Some(&alice), None);
    assert_eq!(s, 200);
    assert_eq!(st["coordinator"]["state"], "connected", "{st}");

    // Local requests go on while the coordinator is away; state says so.
    coord.proc.kill();
    let st = wait_for("reconnecting state", || {
        let (_, st) = n.call("GET", "/api/client/status", Some(&alice), None);
        (st["coordinator"]["state"] == "reconnecting").then_some(st)
    });
    assert!(st["coordinator"]["last_error"].is_string(), "{st}");
    let (s, _) = n.call("GET", "/api/client/local-files", Some(&alice), None);
    assert_eq!(s, 200);
    let (s, v) = n.call(
        "POST",
        "/api/client/unpublish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "recorded locally: {v}");
    assert!(v["note"].is_string(), "{v}");
    let (s, v) = n.call("GET", "/api/client/network-files", Some(&alice), None);
    assert_eq!(s, 503, "{v}");
}
