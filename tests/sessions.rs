//! Sessions that survive restarts (`docs/client-api.md`, "Sessions that
//! survive restarts"): a user who started a session on a node stays on the
//! network across a `kill -9` of the node, a coordinator restart and the
//! expiry of the login's token, until they log out or an admin revokes the
//! node's credential. Real processes, port 0, relays for the coordinator's
//! restarts.

mod harness;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

fn standing_file(node: &Node, user: &str) -> std::path::PathBuf {
    node.data.join("users").join(user).join("standing.json")
}

/// The hosts REQUEST finds online for `name`.
fn online_hosts(coord: &Coordinator, name: &str) -> Vec<String> {
    let v = coord.reg().req("REQUEST", json!({"fname": name}));
    v["hosts"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .filter(|h| h["online"] != json!(false))
                .filter_map(|h| h["hostname"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn host_status(coord: &Coordinator, admin: &str, host: &str) -> Option<String> {
    let (s, v) = coord.call("GET", "/api/admin/registry", Some(admin), None);
    assert_eq!(s, 200, "{v}");
    v["clients"]
        .as_array()?
        .iter()
        .find(|c| c["hostname"] == host)
        .and_then(|c| c["status"].as_str().map(str::to_owned))
}

fn share(node: &Node, token: &str, dir: &Path, name: &str, bytes: usize) -> String {
    let path = dir.join(name);
    std::fs::write(&path, pattern(bytes, 7)).expect("write");
    node.add_and_publish(token, &path)
}

#[test]
fn a_killed_node_puts_its_users_files_back_on_the_network_without_a_login() {
    let coord = Coordinator::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&coord);
    let carol = node.user("carol");
    let name = share(&node, &carol.token, dir.path(), "carol-notes.txt", 3000);
    let file = standing_file(&node, "carol");
    wait_for("the node credential on disk", || {
        file.exists().then_some(())
    });
    let mode = std::fs::metadata(&file).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the credential file must be private");
    assert_eq!(online_hosts(&coord, &name), vec!["carol".to_string()]);

    node.restart();
    // Within 5 s of the restart, with nobody logging in.
    let hosts = wait_until("carol back online", Duration::from_secs(5), || {
        let h = online_hosts(&coord, &name);
        (h == ["carol"]).then_some(h)
    });
    assert_eq!(hosts, ["carol"]);
    // The old login token still works for the UI, and says initialized.
    let (s, v) = node.call("GET", "/api/client/status", Some(&carol.token), None);
    assert_eq!(s, 200, "{v}");
    assert!(
        v["peer_port"].as_u64().is_some(),
        "status after restart: {v}"
    );
}

#[test]
fn an_expired_login_does_not_keep_a_node_off_the_network_after_a_coordinator_restart() {
    // Login tokens last 2 s here; the node credential far longer.
    let mut coord = Coordinator::start_relayed_with(&[], &[("SESSION_TIMEOUT", "2")]);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&coord);
    let logged_in_at = now();
    let dave = node.user("dave");
    let name = share(&node, &dave.token, dir.path(), "dave-song.ogg", 5000);
    wait_for("the node credential on disk", || {
        standing_file(&node, "dave").exists().then_some(())
    });
    wait_until("the login token to expire", Duration::from_secs(10), || {
        (now() > logged_in_at + 3).then_some(())
    });
    let (s, _) = node.call("GET", "/api/client/status", Some(&dave.token), None);
    assert_eq!(s, 401, "the login token should have expired by now");
    coord.restart();
    let hosts = wait_until("dave re-registered", Duration::from_secs(20), || {
        let h = online_hosts(&coord, &name);
        (h == ["dave"]).then_some(h)
    });
    assert_eq!(hosts, ["dave"]);
}

#[test]
fn an_admin_revokes_a_node_credential_and_logout_revokes_its_own() {
    let coord = Coordinator::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = Node::start(&coord);
    let erin = node.user("erin");
    let name = share(&node, &erin.token, dir.path(), "erin.pdf", 1000);
    let file = standing_file(&node, "erin");
    wait_for("the node credential on disk", || {
        file.exists().then_some(())
    });
    let admin = coord.admin_token();

    // The credential is listed, and is good for nothing but the registry.
    let (s, v) = coord.call("GET", "/api/admin/credentials", Some(&admin), None);
    assert_eq!(s, 200, "{v}");
    let list: Vec<Value> = v["credentials"].as_array().cloned().unwrap_or_default();
    let mine: Vec<&Value> = list.iter().filter(|c| c["username"] == "erin").collect();
    assert_eq!(mine.len(), 1, "{v}");
    let id = mine[0]["id"].as_str().expect("id").to_owned();
    let kept: Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    let credential = kept["credential"].as_str().expect("credential").to_owned();
    let (s, _) = coord.call(
        "POST",
        "/api/user/verify",
        None,
        Some(json!({"token": credential})),
    );
    assert_eq!(s, 401, "a node credential must not pass as a login");
    let (s, _) = coord.call("GET", "/api/admin/registry", Some(&credential), None);
    assert_eq!(s, 403);

    // Revoked: erin goes offline at once, and the restarted node cannot
    // bring her back without a login.
    let path = format!("/api/admin/credentials/{id}");
    let (s, v) = coord.call("DELETE", &path, Some(&admin), None);
    assert_eq!(s, 200, "{v}");
    wait_for("erin offline", || {
        (host_status(&coord, &admin, "erin").as_deref() == Some("offline")).then_some(())
    });
    node.restart();
    wait_for("the refused credential forgotten", || {
        (!file.exists()).then_some(())
    });
    assert!(online_hosts(&coord, &name).is_empty());
    let (s, v) = coord.call("GET", "/api/admin/credentials", Some(&admin), None);
    assert_eq!(s, 200);
    let revoked = v["credentials"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["id"] == id.as_str()).cloned())
        .expect("still listed until it expires");
    assert_eq!(revoked["revoked"], true);

    // A login brings her back, with a new credential; logging out revokes it.
    let erin = node.user("erin");
    wait_for("a new credential", || file.exists().then_some(()));
    let kept: Value = serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    let second = kept["credential"].as_str().expect("credential").to_owned();
    assert_ne!(second, credential);
    let (s, v) = node.call(
        "POST",
        "/api/client/logout",
        Some(&erin.token),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{v}");
    wait_for("the credential removed at logout", || {
        (!file.exists()).then_some(())
    });
    wait_for("the credential revoked at the coordinator", || {
        let mut r = coord.reg();
        let v = r.req(
            "REGISTER",
            json!({"hostname": "erin", "port": 1, "token": second}),
        );
        (v["status"] == "ERROR").then_some(())
    });
}
