//! The seed's whole user journey through the client API, with real
//! processes: one coordinator, two nodes, two users sharing a file.

mod harness;

use std::time::{Duration, SystemTime};

use harness::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Polls a fetch until it is final; returns the last progress answer.
fn wait_fetch(node: &Node, token: &str, id: &str) -> Value {
    wait_for(&format!("fetch {id} to finish"), || {
        let (s, v) = node.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(token),
            None,
        );
        assert_eq!(s, 200, "{v}");
        let st = v["status"].as_str().unwrap_or("").to_owned();
        matches!(st.as_str(), "completed" | "failed" | "cancelled").then_some(v)
    })
}

fn network_names(node: &Node, token: &str, q: &str) -> Vec<Value> {
    let (s, v) = node.call(
        "GET",
        &format!("/api/client/network-files?q={q}&offset=0&limit=50"),
        Some(token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    v["files"].as_array().cloned().unwrap_or_default()
}

#[test]
fn two_users_share_a_file_end_to_end() {
    let coord = Coordinator::start();
    let n1 = Node::start(&coord);
    let n2 = Node::start(&coord);

    // Register alice on node 1 (forwarded to the coordinator).
    let (s, v) = n1.call(
        "POST",
        "/api/client/register",
        None,
        Some(json!({"username": "alice", "password": PASSWORD, "display_name": "Alice Ünal"})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["success"], true);
    assert_eq!(v["user"]["username"], "alice");
    assert!(v["token"].is_string());

    // A wrong password is the coordinator's 401, passed through.
    let (s, v) = n1.call(
        "POST",
        "/api/client/login",
        None,
        Some(json!({"username": "alice", "password": "wrong password"})),
    );
    assert_eq!(s, 401, "{v}");
    assert_eq!(v["error"], "Invalid username or password");

    let (s, v) = n1.call(
        "POST",
        "/api/client/login",
        None,
        Some(json!({"username": "alice", "password": PASSWORD})),
    );
    assert_eq!(s, 200, "{v}");
    let alice = v["token"].as_str().unwrap().to_owned();

    // Init: a peer port, REGISTER with the coordinator; a second init is the same session.
    let (s, v) = n1.call("POST", "/api/client/init", Some(&alice), Some(json!({})));
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["client"]["username"], "alice");
    assert_eq!(v["client"]["hostname"], "alice");
    assert_eq!(v["client"]["display_name"], "Alice Ünal");
    let port = v["client"]["port"].as_u64().unwrap();
    assert!(port > 0);
    let (s, v2) = n1.call("POST", "/api/client/init", Some(&alice), None);
    assert_eq!(s, 200, "{v2}");
    assert_eq!(v2["client"]["port"].as_u64(), Some(port));

    let (s, st) = n1.call("GET", "/api/client/status", Some(&alice), None);
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["coordinator"]["state"], "connected");
    assert_eq!(st["peer_port"].as_u64(), Some(port));
    assert!(st["heartbeat"]["interval_s"].as_f64().unwrap() > 0.0);

    let (bob, _) = n2.session("bob", "Bob");

    // Alice tracks a file (by reference) whose name has spaces and non-ASCII letters.
    let files = tempfile::tempdir().unwrap();
    let body = pattern(700_000, 3);
    let path = files.path().join("Quartalsbericht März 2024.bin");
    std::fs::write(&path, &body).unwrap();
    let (s, v) = n1.call(
        "POST",
        "/api/client/add-file",
        Some(&alice),
        Some(json!({"path": path})),
    );
    assert_eq!(s, 200, "{v}");
    let name = "Quartalsbericht März 2024.bin";
    assert_eq!(v["file"]["name"], name);
    assert_eq!(v["file"]["size"], 700_000);
    assert_eq!(v["file"]["path"], path.to_str().unwrap());
    assert_eq!(v["file"]["is_published"], false);
    let entry = n1.wait_hashed(&alice, name);
    assert_eq!(entry["sha256"], hex(&Sha256::digest(&body)));
    assert_eq!(entry["status"], "ok");

    let (s, v) = n1.call("GET", "/api/client/published-files", Some(&alice), None);
    assert_eq!(s, 200);
    assert!(v["files"].as_array().unwrap().is_empty());

    let (s, v) = n1.call(
        "POST",
        "/api/client/publish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["file"]["is_published"], true);
    assert!(v["file"]["published_at"].is_number());
    let (_, v) = n1.call("GET", "/api/client/published-files", Some(&alice), None);
    assert_eq!(v["files"][0]["name"], name);

    // Bob sees it on the network, and search narrows it.
    let found = network_names(&n2, &bob, "");
    let f = found
        .iter()
        .find(|f| f["name"] == name)
        .expect("alice's file on the network");
    assert_eq!(f["size"], 700_000);
    assert_eq!(f["hosts"][0]["hostname"], "alice");
    assert_eq!(f["hosts"][0]["online"], true);
    assert_eq!(network_names(&n2, &bob, "M%C3%A4rz").len(), 1);
    assert!(network_names(&n2, &bob, "nothing-like-this").is_empty());

    // Bob fetches it; progress ends in "completed" and the bytes are identical.
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");
    let id = v["fetch_id"].as_str().unwrap().to_owned();
    let done = wait_fetch(&n2, &bob, &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["downloaded_size"], 700_000);
    assert_eq!(done["total_size"], 700_000);
    assert_eq!(done["peer"], "alice");
    let saved = std::path::PathBuf::from(done["save_path"].as_str().unwrap());
    assert!(
        saved.starts_with(&n2.data),
        "default target is in the data dir: {saved:?}"
    );
    assert_eq!(std::fs::read(&saved).unwrap(), body);
    let (s, v) = n2.call("GET", "/api/client/fetches", Some(&bob), None);
    assert_eq!(s, 200);
    assert_eq!(v["fetches"][0]["fetch_id"], id.as_str());

    // What bob fetched into his downloads folder is shared back: the
    // registry now offers it from both, with the same content and root, and
    // bob's node serves its pieces (so a popular file gains sources).
    let offers = wait_for("bob's copy published", || {
        let v = coord.reg().req("REQUEST", json!({"fname": name}));
        let hosts = v["hosts"].as_array()?.clone();
        (hosts.len() == 2).then_some(hosts)
    });
    let of = |h: &str| {
        offers
            .iter()
            .find(|o| o["hostname"] == h)
            .cloned()
            .expect(h)
    };
    assert_eq!(of("bob")["sha256"], of("alice")["sha256"]);
    assert!(of("bob")["root"].is_string(), "{offers:?}");
    assert_eq!(of("bob")["root"], of("alice")["root"]);
    let bob_peer = std::net::SocketAddr::new(
        [127, 0, 0, 1].into(),
        of("bob")["port"].as_u64().unwrap() as u16,
    );
    let mut pc = PeerConn::connect(bob_peer);
    pc.send(format!("PIECES {name}\n").as_bytes());
    assert_eq!(pc.line(), "PIECES 1 1048576");
    // Bob takes his copy off the network again for the rest of the walk.
    let (s, v) = n2.call(
        "POST",
        "/api/client/unpublish",
        Some(&bob),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");

    // A second fetch onto a chosen directory saves under the file's name;
    // not shared (a fetched file is published by default, and bob's copy
    // would keep it on the network after alice unpublishes below).
    let into = files.path().join("bob-inbox");
    std::fs::create_dir(&into).unwrap();
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": name, "save_path": into, "hostname": "alice", "share": false})),
    );
    assert_eq!(s, 200, "{v}");
    let done = wait_fetch(&n2, &bob, v["fetch_id"].as_str().unwrap());
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(std::fs::read(into.join(name)).unwrap(), body);

    // Alice unpublishes: gone from the network, a fetch finds no peer.
    assert!(network_names(&n1, &alice, "")
        .iter()
        .any(|f| f["name"] == name));
    let (s, v) = n1.call(
        "POST",
        "/api/client/unpublish",
        Some(&alice),
        Some(json!({"fname": name})),
    );
    assert_eq!(s, 200, "{v}");
    // Alice's own node shows it gone at once; bob's node, which shares one
    // walk of the registry for a few seconds, within that lifetime.
    assert!(network_names(&n1, &alice, "")
        .iter()
        .all(|f| f["name"] != name));
    let since = std::time::Instant::now();
    wait_for("the unpublished file gone from bob's view", || {
        let gone = network_names(&n2, &bob, "")
            .iter()
            .all(|f| f["name"] != name);
        gone.then_some(())
    });
    assert!(
        since.elapsed() < Duration::from_secs(5),
        "{:?}",
        since.elapsed()
    );
    let (s, v) = n2.call(
        "POST",
        "/api/client/fetch",
        Some(&bob),
        Some(json!({"fname": name, "save_path": files.path().join("again.bin")})),
    );
    assert_eq!(s, 404, "{v}");
    assert_eq!(
        v["error"],
        format!("No peer on the network offers '{name}'")
    );

    // Logout: the host leaves the registry, the token stops working here.
    let (s, v) = n1.call("POST", "/api/client/logout", Some(&alice), None);
    assert_eq!(s, 200, "{v}");
    let (s, _) = n1.call("GET", "/api/client/status", Some(&alice), None);
    assert_eq!(s, 401);
    let mut reg = RegistryClient::connect(coord.registry);
    let list = reg.req("LIST", json!({}));
    assert!(list["registry"].get("alice").is_none(), "{list}");
    assert!(list["registry"].get("bob").is_some(), "{list}");
}

#[test]
fn duplicates_on_the_network_need_force() {
    let coord = Coordinator::start();
    let n1 = Node::start(&coord);
    let n2 = Node::start(&coord);
    let (alice, _) = n1.session("alice", "Alice");
    let (bob, _) = n2.session("bob", "Bob");
    let dir = tempfile::tempdir().unwrap();

    // Same content under another name.
    let content = pattern(50_000, 9);
    let a = dir.path().join("holiday.jpg");
    std::fs::write(&a, &content).unwrap();
    n1.add_and_publish(&alice, &a);
    let b = dir.path().join("copy of holiday.jpg");
    std::fs::write(&b, &content).unwrap();
    let (s, v) = n2.call(
        "POST",
        "/api/client/add-file",
        Some(&bob),
        Some(json!({"path": b})),
    );
    assert_eq!(s, 200, "{v}");
    n2.wait_hashed(&bob, "copy of holiday.jpg");
    let (s, v) = n2.call(
        "POST",
        "/api/client/publish",
        Some(&bob),
        Some(json!({"fname": "copy of holiday.jpg"})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["success"], false);
    assert!(v["error"].as_str().unwrap().contains("force"), "{v}");
    let d = &v["duplicates"][0];
    assert_eq!(d["hostname"], "alice");
    assert_eq!(d["name"], "holiday.jpg");
    assert_eq!(d["reason"], "same content");
    let (_, v) = n2.call("GET", "/api/client/published-files", Some(&bob), None);
    assert!(
        v["files"].as_array().unwrap().is_empty(),
        "not published without force"
    );
    let (s, v) = n2.call(
        "POST",
        "/api/client/publish",
        Some(&bob),
        Some(json!({"path": b, "force": true})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["file"]["is_published"], true);

    // Different content, same size and a modification time 1 s apart.
    let when = SystemTime::now() - Duration::from_secs(3600);
    let c = dir.path().join("report.pdf");
    std::fs::write(&c, pattern(4096, 1)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&c)
        .unwrap()
        .set_modified(when)
        .unwrap();
    n1.add_and_publish(&alice, &c);
    let d = dir.path().join("notes.pdf");
    std::fs::write(&d, pattern(4096, 2)).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&d)
        .unwrap()
        .set_modified(when + Duration::from_secs(1))
        .unwrap();
    let (s, v) = n2.call(
        "POST",
        "/api/client/add-file",
        Some(&bob),
        Some(json!({"path": d})),
    );
    assert_eq!(s, 200, "{v}");
    n2.wait_hashed(&bob, "notes.pdf");
    // Bob's node reuses its view of the network for a few seconds; once it
    // shows alice's new file, the duplicate check sees it too.
    wait_for("report.pdf in bob's view", || {
        let files = network_names(&n2, &bob, "report");
        (!files.is_empty()).then_some(())
    });
    let (s, v) = n2.call(
        "POST",
        "/api/client/publish",
        Some(&bob),
        Some(json!({"fname": "notes.pdf"})),
    );
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["duplicates"][0]["reason"], "same size and modified time");
    assert_eq!(v["duplicates"][0]["name"], "report.pdf");

    // The user's own files elsewhere on the network are not duplicates.
    let e = dir.path().join("holiday again.jpg");
    std::fs::write(&e, pattern(777, 4)).unwrap();
    n1.add_and_publish(&alice, &e);
}
