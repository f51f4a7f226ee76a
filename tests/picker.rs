//! The file picker (`GET /api/client/browse`, docs/client-api.md) shows only
//! what a user may share: folders and regular files beneath the share
//! roots, nothing hidden, no symlink, never the node's data directory.
//! Each check is written as the attempt a logged-in user of a shared node
//! could make.

mod harness;

use std::fs;
use std::os::unix::fs::symlink;

use harness::*;
use serde_json::Value;

fn browse(node: &Node, token: &str, path: Option<&str>) -> (u16, Value) {
    let q = path
        .map(|p| format!("?path={}", urlencode(p)))
        .unwrap_or_default();
    node.call("GET", &format!("/api/client/browse{q}"), Some(token), None)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn names(v: &Value) -> Vec<String> {
    v["entries"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_picker_shows_only_what_may_be_shared() {
    let coord = Coordinator::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let share = fs::canonicalize(tmp.path()).expect("canon").join("share");
    fs::create_dir_all(share.join("Music")).expect("mkdir");
    fs::write(share.join("report.pdf"), b"pdf").expect("write");
    fs::write(share.join(".secret"), b"hidden").expect("write");
    symlink("/etc/passwd", share.join("passwd-link")).expect("symlink");
    symlink("/etc", share.join("etc-link")).expect("symlink");
    let share_s = share.display().to_string();
    let node = Node::start_with(&coord, &["--share-root", &share_s], &[]);
    let alice = node.user("alice");

    // No path: the share roots themselves.
    let (s, v) = browse(&node, &alice.token, None);
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["entries"][0]["path"], share_s.as_str());

    // The root: folders first, files with sizes; no hidden file, no symlink.
    let (s, v) = browse(&node, &alice.token, Some(&share_s));
    assert_eq!(s, 200, "{v}");
    assert_eq!(names(&v), ["Music", "report.pdf"], "{v}");
    assert_eq!(v["entries"][1]["size"], 3);
    assert_eq!(v["parent"], Value::Null);

    // Out of bounds, however it is spelled.
    for path in [
        "/etc",
        "/",
        &format!("{share_s}/../"),
        &format!("{share_s}/etc-link"),
    ] {
        let (s, v) = browse(&node, &alice.token, Some(path));
        assert_eq!(s, 403, "{path}: {v}");
    }
    let data = fs::canonicalize(&node.data).expect("canon data");
    let (s, _) = browse(&node, &alice.token, Some(&data.display().to_string()));
    assert_eq!(s, 403, "the data directory is never browsable");
    let (s, _) = browse(&node, &alice.token, Some(&format!("{share_s}/.secret")));
    assert_eq!(s, 403);
    let (s, _) = browse(&node, &alice.token, Some("relative/path"));
    assert_eq!(s, 400);
    let (s, _) = browse(&node, &alice.token, Some(&format!("{share_s}/report.pdf")));
    assert_eq!(s, 400, "a file is not a folder");
    let (s, _) = browse(&node, &alice.token, Some(&format!("{share_s}/nope")));
    assert_eq!(s, 404);

    // Without a token, nothing.
    let (s, _) = node.call("GET", "/api/client/browse", None, None);
    assert_eq!(s, 401);
}
