//! Followed folders (`/add-folder`, `/folders`, `/remove-folder`,
//! `/rescan`; docs/client-api.md): a file dropped into a folder a user
//! follows is tracked, hashed and published without anyone asking; a
//! name collision is shown, not dropped; a file deleted from the folder
//! leaves the network and the user's files; the folder survives `kill -9`.
//! Each refusal is written as the attempt a logged-in user could make.
//! Real processes on port 0; what others see is asked of the coordinator
//! (REQUEST) as any other node would.

mod harness;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::*;
use serde_json::{json, Value};

/// A share root of its own (no `--share-hidden`) with the node's data
/// directory outside it unless `data_inside`.
struct Setup {
    coord: Coordinator,
    node: Node,
    share: PathBuf,
    _tmp: tempfile::TempDir,
}

fn setup(data_inside: bool) -> Setup {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = fs::canonicalize(tmp.path()).expect("canon");
    let share = base.join("share");
    fs::create_dir_all(&share).expect("mkdir");
    let data = if data_inside {
        share.join("nodedata")
    } else {
        base.join("nodedata")
    };
    let share_s = share.display().to_string();
    let node = Node::start_in(
        &data,
        coord.registry,
        coord.api,
        &["--share-root", &share_s],
        &[],
    );
    Setup {
        coord,
        node,
        share,
        _tmp: tmp,
    }
}

fn add_folder(node: &Node, token: &str, body: Value) -> (u16, Value) {
    node.call("POST", "/api/client/add-folder", Some(token), Some(body))
}

fn folders(node: &Node, token: &str) -> Value {
    let (s, v) = node.call("GET", "/api/client/folders", Some(token), None);
    assert_eq!(s, 200, "{v}");
    v
}

fn rescan(node: &Node, token: &str) -> Value {
    let (s, v) = node.call("POST", "/api/client/rescan", Some(token), Some(json!({})));
    assert_eq!(s, 200, "rescan: {v}");
    v
}

fn local_files(node: &Node, token: &str) -> Vec<Value> {
    let (s, v) = node.call("GET", "/api/client/local-files", Some(token), None);
    assert_eq!(s, 200, "{v}");
    v["files"].as_array().cloned().unwrap_or_default()
}

fn tracked(node: &Node, token: &str, name: &str) -> Option<Value> {
    local_files(node, token)
        .into_iter()
        .find(|f| f["name"] == name)
}

/// What the network says about `name`: the hosts offering it (REQUEST).
fn offers(coord: &Coordinator, name: &str) -> Vec<Value> {
    let mut reg = coord.reg();
    let v = reg.req("REQUEST", json!({"fname": name}));
    v["hosts"].as_array().cloned().unwrap_or_default()
}

/// Waits until `host` offers `name` with the content `bytes`.
fn wait_offered(coord: &Coordinator, host: &str, name: &str, bytes: &[u8], within: Duration) {
    let want = sha256_hex(bytes);
    wait_until(&format!("{host} to offer {name}"), within, || {
        offers(coord, name)
            .iter()
            .any(|h| h["hostname"] == host && h["sha256"] == want.as_str())
            .then_some(())
    });
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_file_dropped_into_a_followed_folder_is_tracked_hashed_and_published_after_a_rescan() {
    let t = setup(false);
    let alice = t.node.user("alice");
    let photos = t.share.join("Photos");
    fs::create_dir_all(photos.join("2024")).expect("mkdir");
    fs::write(photos.join("before.jpg"), pattern(3000, 1)).expect("write");
    fs::write(photos.join("2024").join("deep.jpg"), pattern(10, 2)).expect("write");

    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": s(&photos)}));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["folder"]["path"], s(&photos).as_str());
    assert_eq!(v["folder"]["recursive"], false);
    assert_eq!(v["folder"]["publish"], true);

    // What was there already is shared from the first scan.
    wait_offered(&t.coord, "alice", "before.jpg", &pattern(3000, 1), WAIT);

    // A file created afterwards: tracked, hashed, published after a rescan.
    let content = pattern(200_000, 3);
    fs::write(photos.join("new.jpg"), &content).expect("write");
    let v = rescan(&t.node, &alice.token);
    assert_eq!(v["folders"][0]["path"], s(&photos).as_str(), "{v}");
    let f = tracked(&t.node, &alice.token, "new.jpg").expect("tracked once the rescan answered");
    assert_eq!(f["folder"], s(&photos).as_str());
    wait_offered(&t.coord, "alice", "new.jpg", &content, WAIT);
    let f = tracked(&t.node, &alice.token, "new.jpg").expect("tracked");
    assert_eq!(f["is_published"], true, "{f}");
    assert_eq!(f["sha256"], sha256_hex(&content).as_str());

    // Not recursive: the subfolder's file is not followed...
    assert!(tracked(&t.node, &alice.token, "deep.jpg").is_none());
    // ...until the same folder is added again with recursive: the flags change.
    let (st, v) = add_folder(
        &t.node,
        &alice.token,
        json!({"path": format!("{}/", s(&photos)), "recursive": true}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["folder"]["recursive"], true);
    let v = rescan(&t.node, &alice.token);
    assert_eq!(
        v["folders"].as_array().map(Vec::len),
        Some(1),
        "one folder: {v}"
    );
    assert_eq!(v["folders"][0]["files"], 3, "{v}");
    wait_offered(&t.coord, "alice", "deep.jpg", &pattern(10, 2), WAIT);

    // publish: false tracks new files without publishing them.
    let quiet = t.share.join("Drafts");
    fs::create_dir_all(&quiet).expect("mkdir");
    let (st, v) = add_folder(
        &t.node,
        &alice.token,
        json!({"path": s(&quiet), "publish": false}),
    );
    assert_eq!(st, 200, "{v}");
    fs::write(quiet.join("draft.txt"), b"not yet").expect("write");
    rescan(&t.node, &alice.token);
    let f = t.node.wait_hashed(&alice.token, "draft.txt");
    assert_eq!(f["is_published"], false, "{f}");
    assert!(offers(&t.coord, "draft.txt").is_empty());

    // Stop following: the files stay tracked (and published).
    let (st, v) = t.node.call(
        "POST",
        "/api/client/remove-folder",
        Some(&alice.token),
        Some(json!({"path": s(&photos)})),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["kept"], 3, "{v}");
    let v = folders(&t.node, &alice.token);
    assert_eq!(v["folders"].as_array().map(Vec::len), Some(1), "{v}");
    fs::write(photos.join("after.jpg"), b"later").expect("write");
    rescan(&t.node, &alice.token);
    assert!(tracked(&t.node, &alice.token, "after.jpg").is_none());
    assert!(tracked(&t.node, &alice.token, "new.jpg").is_some());
    let (st, v) = t.node.call(
        "POST",
        "/api/client/remove-folder",
        Some(&alice.token),
        Some(json!({"path": s(&photos)})),
    );
    assert_eq!(st, 404, "{v}");
}

#[test]
fn the_periodic_rescan_alone_shares_a_new_file() {
    let t = setup(false);
    let alice = t.node.user("alice");
    let inbox = t.share.join("inbox");
    fs::create_dir_all(&inbox).expect("mkdir");
    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": s(&inbox)}));
    assert_eq!(st, 200, "{v}");
    // The first scan is done (it starts with the answer).
    wait_for("the first scan", || {
        folders(&t.node, &alice.token)["folders"][0]["last_scan"]
            .is_number()
            .then_some(())
    });
    let content = pattern(50_000, 9);
    fs::write(inbox.join("dropped.bin"), &content).expect("write");
    // Nobody asks: the 10 s rescan finds it, then it is hashed and published.
    wait_offered(
        &t.coord,
        "alice",
        "dropped.bin",
        &content,
        Duration::from_secs(40),
    );
}

#[test]
fn a_name_collision_is_shown_in_the_folder_skipped_list() {
    let t = setup(false);
    let alice = t.node.user("alice");
    let other = t.share.join("other");
    let docs = t.share.join("docs");
    fs::create_dir_all(&other).expect("mkdir");
    fs::create_dir_all(&docs).expect("mkdir");
    fs::write(other.join("report.txt"), b"the first one").expect("write");
    fs::write(docs.join("report.txt"), b"another one").expect("write");
    fs::write(docs.join("notes.txt"), b"fine").expect("write");
    let (st, v) = t.node.call(
        "POST",
        "/api/client/add-file",
        Some(&alice.token),
        Some(json!({"path": other.join("report.txt")})),
    );
    assert_eq!(st, 200, "{v}");
    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": s(&docs)}));
    assert_eq!(st, 200, "{v}");
    let v = rescan(&t.node, &alice.token);
    let d = &v["folders"][0];
    assert_eq!(d["files"], 1, "{v}");
    let skipped = d["skipped"].as_array().cloned().unwrap_or_default();
    let want = format!(
        "A file named 'report.txt' is already tracked from {}",
        s(&other.join("report.txt"))
    );
    assert!(
        skipped
            .iter()
            .any(|e| e["path"] == s(&docs.join("report.txt")).as_str()
                && e["reason"].as_str().is_some_and(|r| r.starts_with(&want))),
        "{v}"
    );
    // The file tracked first stays what it was.
    let f = tracked(&t.node, &alice.token, "report.txt").expect("tracked");
    assert_eq!(f["path"], s(&other.join("report.txt")).as_str());
}

#[test]
fn a_file_deleted_from_the_folder_is_unpublished_and_forgotten() {
    let t = setup(false);
    let alice = t.node.user("alice");
    let music = t.share.join("Music");
    fs::create_dir_all(&music).expect("mkdir");
    let content = pattern(4096, 5);
    fs::write(music.join("song.ogg"), &content).expect("write");
    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": s(&music)}));
    assert_eq!(st, 200, "{v}");
    wait_offered(&t.coord, "alice", "song.ogg", &content, WAIT);

    fs::remove_file(music.join("song.ogg")).expect("rm");
    let v = rescan(&t.node, &alice.token);
    assert_eq!(v["folders"][0]["files"], 0, "{v}");
    assert!(tracked(&t.node, &alice.token, "song.ogg").is_none());
    wait_for("the network to forget song.ogg", || {
        offers(&t.coord, "song.ogg").is_empty().then_some(())
    });
    // Not lingering as "missing" either.
    let (st, v) = t
        .node
        .call("GET", "/api/client/status", Some(&alice.token), None);
    assert_eq!(st, 200);
    assert_eq!(v["attention"], json!([]), "{v}");
}

#[test]
fn a_followed_folder_survives_kill_9_after_the_ack() {
    let mut t = setup(false);
    let alice = t.node.user("alice");
    let inbox = t.share.join("inbox");
    fs::create_dir_all(&inbox).expect("mkdir");
    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": s(&inbox)}));
    assert_eq!(st, 200, "{v}");
    // Acknowledged means on disk: killed right after, nothing is lost.
    t.node.restart();
    // The session comes back as when the user opens the web UI again (the
    // node may also restore it by itself, docs/client-api.md).
    let (st, v) = t.node.call(
        "POST",
        "/api/client/init",
        Some(&alice.token),
        Some(json!({})),
    );
    assert_eq!(st, 200, "{v}");
    let content = pattern(70_000, 11);
    fs::write(inbox.join("after-restart.txt"), &content).expect("write");
    let v = rescan(&t.node, &alice.token);
    assert_eq!(v["folders"][0]["path"], s(&inbox).as_str(), "{v}");
    wait_offered(
        &t.coord,
        "alice",
        "after-restart.txt",
        &content,
        Duration::from_secs(30),
    );
}

#[test]
fn folders_outside_the_rules_are_refused_with_a_sentence() {
    let t = setup(true);
    let alice = t.node.user("alice");
    let share = &t.share;
    fs::create_dir_all(share.join("ok")).expect("mkdir");
    fs::create_dir_all(share.join(".hidden")).expect("mkdir");
    symlink("/etc", share.join("etc-link")).expect("symlink");
    let data = fs::canonicalize(&t.node.data).expect("data");
    let attempts = [
        "/etc".to_owned(),
        format!("{}/ok/../..", s(share)),
        format!("{}/..", s(share)),
        s(&share.join("etc-link")),
        s(&data),
        s(&data.join("users")),
        s(share),
        s(&share.join(".hidden")),
    ];
    for path in &attempts {
        let (st, v) = add_folder(&t.node, &alice.token, json!({"path": path}));
        assert_eq!(st, 403, "{path}: {v}");
        let msg = v["error"].as_str().unwrap_or("");
        assert!(
            msg.len() > 20 && msg.ends_with(|c: char| c.is_alphanumeric() || c == ')'),
            "{path}: {v}"
        );
        assert!(
            !msg.contains("os error") && !msg.contains("errno"),
            "{path}: {v}"
        );
    }
    let (st, v) = add_folder(&t.node, &alice.token, json!({"path": "relative/dir"}));
    assert_eq!(st, 400, "{v}");
    // Answers are for people: no field names.
    let (st, v) = add_folder(
        &t.node,
        &alice.token,
        json!({"path": s(&share.join("ok")), "recursive": "yes"}),
    );
    assert_eq!(st, 400, "{v}");
    let msg = v["error"].as_str().unwrap_or("");
    assert!(
        msg.contains("sub-folders") && !msg.contains("recursive"),
        "{v}"
    );
    let (st, v) = add_folder(
        &t.node,
        &alice.token,
        json!({"path": s(&share.join("nope"))}),
    );
    assert_eq!(st, 404, "{v}");
    assert!(folders(&t.node, &alice.token)["folders"]
        .as_array()
        .is_some_and(Vec::is_empty));
}

#[test]
fn a_symlink_in_a_followed_folder_or_in_its_place_shares_nothing_from_where_it_points() {
    let t = setup(false);
    let alice = t.node.user("alice");
    let box_ = t.share.join("box");
    fs::create_dir_all(&box_).expect("mkdir");
    fs::write(box_.join("mine.txt"), b"mine").expect("write");
    symlink("/etc/passwd", box_.join("passwd")).expect("symlink");
    let (st, v) = add_folder(
        &t.node,
        &alice.token,
        json!({"path": s(&box_), "recursive": true}),
    );
    assert_eq!(st, 200, "{v}");
    let v = rescan(&t.node, &alice.token);
    assert!(tracked(&t.node, &alice.token, "passwd").is_none(), "{v}");
    assert!(tracked(&t.node, &alice.token, "mine.txt").is_some());
    let skipped = v["folders"][0]["skipped"].to_string();
    assert!(
        skipped.contains("link"),
        "the link is shown as not followed: {v}"
    );

    // The followed folder itself is swapped for a link to /etc.
    fs::rename(&box_, t.share.join("box-moved")).expect("mv");
    symlink("/etc", &box_).expect("symlink");
    let v = rescan(&t.node, &alice.token);
    let names: Vec<String> = local_files(&t.node, &alice.token)
        .iter()
        .filter_map(|f| f["name"].as_str().map(str::to_owned))
        .collect();
    for etc in ["passwd", "hostname", "hosts", "group"] {
        assert!(!names.iter().any(|n| n == etc), "{etc} tracked: {names:?}");
    }
    assert!(
        v["folders"][0]["skipped"]
            .to_string()
            .contains("no longer a real folder"),
        "{v}"
    );
    assert!(offers(&t.coord, "passwd").is_empty());
}

/// `p2pshare <args> --node <node>` with a home and config folder of its own.
fn cli(home: &Path, node: &Node, args: &[&str], stdin: Option<&str>) -> (i32, String) {
    let mut cmd = std::process::Command::new(bin());
    cmd.args(args)
        .args(["--node", &node.api.to_string()])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env_remove("P2PSHARE_NODE")
        .env_remove("P2PSHARE_PASSWORD")
        .current_dir(home);
    let out = run_to_end(&mut cmd, stdin, &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn the_command_line_follows_a_shared_folder_unless_once_and_unshare_stops() {
    let coord = Coordinator::start();
    let node = Node::start(&coord);
    let home = tempfile::tempdir().expect("home");
    let home = fs::canonicalize(home.path()).expect("canon").to_path_buf();
    let pw = format!("{PASSWORD}\n");
    let (c, out) = cli(
        &home,
        &node,
        &["login", "carol", "--register", "--password-stdin"],
        Some(&pw),
    );
    assert_eq!(c, 0, "{out}");
    let creds = fs::read_to_string(home.join("config/p2pshare/credentials.json")).expect("creds");
    let token = serde_json::from_str::<Value>(&creds).expect("json")["token"]
        .as_str()
        .expect("token")
        .to_owned();

    let dir = home.join("Shared");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("now.txt"), b"here from the start").expect("write");
    let (c, out) = cli(&home, &node, &["share", "Shared"], None);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("shared now.txt"), "{out}");
    assert!(
        out.contains(&format!(
            "following {}: files added to it later are shared too; `p2pshare unshare {}` stops",
            s(&dir),
            s(&dir)
        )),
        "{out}"
    );
    let later = pattern(5000, 21);
    fs::write(dir.join("later.txt"), &later).expect("write");
    rescan(&node, &token);
    wait_offered(&coord, "carol", "later.txt", &later, WAIT);
    let (c, out) = cli(&home, &node, &["status"], None);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains(&s(&dir)) && out.contains("2 file(s)"), "{out}");

    let (c, out) = cli(&home, &node, &["unshare", &s(&dir)], None);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("stopped following"), "{out}");
    assert!(folders(&node, &token)["folders"]
        .as_array()
        .is_some_and(Vec::is_empty));
    fs::write(dir.join("after-unshare.txt"), b"not followed").expect("write");
    rescan(&node, &token);
    assert!(tracked(&node, &token, "after-unshare.txt").is_none());
    let (c, out) = cli(&home, &node, &["unshare", &s(&dir)], None);
    assert_ne!(c, 0, "not followed any more: {out}");

    // --once: today's files, no following.
    let once = home.join("Once");
    fs::create_dir_all(&once).expect("mkdir");
    fs::write(once.join("single.txt"), b"once").expect("write");
    let (c, out) = cli(&home, &node, &["share", "--once", "Once"], None);
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains("shared single.txt") && !out.contains("following"),
        "{out}"
    );
    assert!(folders(&node, &token)["folders"]
        .as_array()
        .is_some_and(Vec::is_empty));
}
