//! The catalog's decisions without a disk: tracking, hashing, backoff, snapshots, undo.

use super::*;
use crate::node::catalog::hashing::{observe, run};
use crate::node::transfers::peer_server::PublishedFiles as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

fn sandbox(dir: &Path) -> Arc<Sandbox> {
    let data = dir.join("data");
    fs::create_dir_all(&data).unwrap();
    Arc::new(Sandbox::new(&[dir.to_path_buf()], &[], &data, false).unwrap())
}

fn load(dir: &Path) -> Catalog {
    let sb = sandbox(dir);
    Catalog::load(
        &dir.join("data/users/alice"),
        "alice",
        sb,
        &dir.join("data"),
    )
    .unwrap()
}

fn setup() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let cat = load(dir.path());
    (dir, cat)
}

#[test]
fn add_checks_the_path_clearly() {
    let (dir, mut cat) = setup();
    let missing = dir.path().join("nope.txt");
    let e = cat.add(missing.to_str().unwrap(), 1.0).unwrap_err();
    assert_eq!(e, (400, format!("No such file: {}", missing.display())));
    let folder = dir.path().join("folder");
    fs::create_dir(&folder).unwrap();
    let e = cat.add(folder.to_str().unwrap(), 1.0).unwrap_err();
    assert_eq!(e.0, 400);
    assert!(
        e.1.ends_with("is a folder, not a file: add the files in it (Browse… in the web UI, or `p2pshare share FOLDER`)"),
        "{}",
        e.1
    );
    let e = cat.add("relative/file", 1.0).unwrap_err();
    assert!(e.1.contains("absolute"), "{}", e.1);
    let p = dir.path().join("a b ü.txt");
    fs::write(&p, b"hello").unwrap();
    let ps = p.to_str().unwrap();
    assert_eq!(cat.add(ps, 1.0).unwrap(), ("a b ü.txt".to_string(), true));
    assert_eq!(cat.add(ps, 2.0).unwrap(), ("a b ü.txt".to_string(), false));
    let other = dir.path().join("sub");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("a b ü.txt"), b"x").unwrap();
    let e = cat
        .add(other.join("a b ü.txt").to_str().unwrap(), 1.0)
        .unwrap_err();
    assert_eq!(e.0, 409);
    let f = cat.get("a b ü.txt").unwrap();
    assert_eq!((f.size, f.status), (5, Status::Ok));
}

#[test]
fn survives_a_reload_and_sets_aside_a_corrupt_file() {
    let (dir, mut cat) = setup();
    let p = dir.path().join("f");
    fs::write(&p, b"x").unwrap();
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    cat.set_published("f", Some(5.0));
    cat.save_now().unwrap();
    let back = load(dir.path());
    let f = back.get("f").unwrap();
    assert!(f.is_published);
    assert_eq!(f.published_at, Some(5.0));
    assert_eq!(back.needing_hash(), vec!["f".to_string()]);
    fs::write(dir.path().join("data/users/alice/files.json"), b"{nonsense").unwrap();
    let fresh = load(dir.path());
    assert!(fresh.is_empty());
    let aside = fs::read_dir(dir.path().join("data/users/alice"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("files.json.corrupt")
        })
        .count();
    assert_eq!(aside, 1);
}

#[test]
fn snapshots_go_out_one_at_a_time_and_never_go_back() {
    let (dir, mut cat) = setup();
    let store = dir.path().join("data/users/alice/files.json");
    let p = dir.path().join("f");
    fs::write(&p, b"x").unwrap();
    assert!(cat.snapshot().is_none(), "nothing to write yet");
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    let first = cat.snapshot().unwrap().unwrap();
    let v1 = first.version;
    assert!(cat.snapshot().is_none(), "one write out at a time");
    cat.set_published("f", Some(2.0));
    let v2 = cat.version();
    assert!(v2 > v1 && !cat.is_saved(v1));
    first.write().unwrap();
    cat.written(v1, true);
    assert!(cat.is_saved(v1) && !cat.is_saved(v2) && !cat.is_settled());
    let second = cat.snapshot().unwrap().unwrap();
    assert_eq!(second.version, v2);
    // A failed write leaves the change unsaved, to be written again.
    cat.written(v2, false);
    assert!(!cat.is_saved(v2));
    let again = cat.snapshot().unwrap().unwrap();
    cat.remove("f");
    let stale = cat.snapshot();
    assert!(stale.is_none());
    cat.written(again.version, false);
    let newest = cat.snapshot().unwrap().unwrap();
    newest.write().unwrap();
    // The older snapshot arriving late is superseded, not written.
    again.write().unwrap();
    let on_disk: serde_json::Value = serde_json::from_slice(&fs::read(&store).unwrap()).unwrap();
    assert_eq!(on_disk["files"].as_array().unwrap().len(), 0, "{on_disk}");
}

#[test]
fn failed_changes_can_be_undone_unless_overtaken() {
    let (dir, mut cat) = setup();
    let p = dir.path().join("f");
    fs::write(&p, b"x").unwrap();
    let ps = p.to_str().unwrap();
    cat.add(ps, 1.0).unwrap();
    assert!(!cat.unadd("f", ps, 2.0), "another add");
    assert!(cat.unadd("f", ps, 1.0));
    assert!(cat.get("f").is_none());
    cat.add(ps, 3.0).unwrap();
    let before = cat.publication("f").unwrap();
    cat.set_published("f", Some(4.0));
    let after = cat.publication("f").unwrap();
    assert!(cat.restore_publication("f", &after, &before));
    assert!(!cat.get("f").unwrap().is_published);
    cat.set_published("f", Some(5.0));
    // Overtaken by a change on disk: the undo does not bring it back.
    fs::write(&p, b"longer").unwrap();
    cat.observe("f", observe(&cat.sandbox.clone(), &p));
    assert!(!cat.restore_publication("f", &after, &before));
    let f = cat.remove("f").unwrap();
    assert!(cat.reinsert(f.clone()));
    assert!(!cat.reinsert(f), "the name is taken");
}

#[test]
fn metadata_follows_the_disk() {
    let (dir, mut cat) = setup();
    let p = dir.path().join("doc");
    fs::write(&p, b"one").unwrap();
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    let sb = cat.sandbox.clone();
    let job = cat.begin_hash("doc").unwrap();
    let fx = cat.hash_done(&job, run(&job));
    assert!(fx.is_empty());
    assert!(cat.get("doc").unwrap().sha256.is_some());
    cat.set_published("doc", Some(2.0));
    assert!(cat.published("doc").is_some());

    // Changed on disk: unpublished, rehashed, marked.
    fs::write(&p, b"longer content").unwrap();
    let fx = cat.observe("doc", observe(&sb, &p));
    assert_eq!(
        fx,
        vec![Effect::Unpublish("doc".into()), Effect::Hash("doc".into())]
    );
    let f = cat.get("doc").unwrap();
    assert_eq!(
        (f.status, f.is_published, f.size),
        (Status::Changed, false, 14)
    );
    assert!(cat.published("doc").is_none());
    // Stable afterwards: nothing more to do.
    assert!(cat.observe("doc", observe(&sb, &p)).is_empty());
    // A stale hash result (from before the change) is ignored.
    assert!(cat
        .hash_done(&job, HashResult::Failed("x".into()))
        .is_empty());
    assert!(cat.get("doc").unwrap().hash_error.is_none());

    cat.set_published("doc", Some(3.0));
    assert_eq!(cat.get("doc").unwrap().status, Status::Ok);
    fs::remove_file(&p).unwrap();
    let fx = cat.observe("doc", observe(&sb, &p));
    assert_eq!(fx, vec![Effect::Unpublish("doc".into())]);
    assert_eq!(cat.get("doc").unwrap().status, Status::Missing);
    assert!(cat.begin_hash("doc").is_none());
    let meta = cat.registry_metadata();
    assert!(meta.iter().any(|(n, m)| n == "doc" && !m.is_published));
}

#[test]
fn a_file_that_keeps_changing_backs_off_instead_of_looping() {
    let (dir, mut cat) = setup();
    let sb = cat.sandbox.clone();
    let p = dir.path().join("log");
    fs::write(&p, b"1").unwrap();
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    let job = cat.begin_hash("log").unwrap();
    // It moved while hashed: no new hash now, a wait, marked changing.
    assert!(cat.hash_done(&job, HashResult::Changed).is_empty());
    let f = cat.get("log").unwrap();
    assert!(f.changing && !f.hashing);
    let first = f.next_hash_at.unwrap() - unix_now();
    assert!((5.0..=10.5).contains(&first), "{first}");
    assert!(cat.due_hashes(unix_now()).is_empty());
    assert!(cat.needing_hash().is_empty(), "not at a restart either");
    // Due: hashed again; moving again doubles the wait.
    assert_eq!(
        cat.due_hashes(unix_now() + 11.0),
        vec![Effect::Hash("log".into())]
    );
    let job = cat.begin_hash("log").unwrap();
    cat.hash_done(&job, HashResult::Changed);
    let second = cat.get("log").unwrap().next_hash_at.unwrap() - unix_now();
    assert!((15.0..=20.5).contains(&second), "{second}");
    // A change seen by a rescan while waiting keeps the wait.
    fs::write(&p, b"12").unwrap();
    assert!(cat.observe("log", observe(&sb, &p)).is_empty());
    // It survives a reload.
    cat.save_now().unwrap();
    let back = load(dir.path());
    let f = back.get("log").unwrap();
    assert!(f.changing && f.next_hash_at.is_some() && f.changes >= 2);
    // Once hashed and then quiet for a rescan, the next change is hashed at once.
    let job = cat.begin_hash("log").unwrap();
    cat.hash_done(&job, run(&job));
    assert!(!cat.get("log").unwrap().changing);
    assert!(cat.observe("log", observe(&sb, &p)).is_empty());
    assert_eq!(cat.get("log").unwrap().changes, 0);
    fs::write(&p, b"123").unwrap();
    assert_eq!(
        cat.observe("log", observe(&sb, &p)),
        vec![Effect::Hash("log".into())]
    );
    assert_eq!(backoff_s(1), 10.0);
    assert_eq!(backoff_s(2), 20.0);
    assert_eq!(backoff_s(40), 600.0);
}

#[test]
fn entries_outside_the_share_roots_are_dropped_at_load() {
    let (dir, mut cat) = setup();
    let p = dir.path().join("ok");
    fs::write(&p, b"x").unwrap();
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    cat.save_now().unwrap();
    // An old catalog naming a file outside, in the data dir, and in /proc.
    let store = dir.path().join("data/users/alice/files.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&store).unwrap()).unwrap();
    let ok = v["files"][0].clone();
    for (name, path) in [
        ("passwd", "/etc/passwd"),
        ("files.json", store.to_str().unwrap()),
        ("status", "/proc/self/status"),
    ] {
        let mut e = ok.clone();
        e["name"] = json!(name);
        e["path"] = json!(path);
        e.as_object_mut().unwrap().remove("real");
        v["files"].as_array_mut().unwrap().push(e);
    }
    fs::write(&store, serde_json::to_vec(&v).unwrap()).unwrap();
    let back = load(dir.path());
    let names: Vec<&str> = back.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, vec!["ok"]);
    assert!(!back.is_settled(), "the drop is saved");
}

#[test]
fn names_follow_the_spec() {
    assert!(check_file_name("report 2024 ü.pdf").is_ok());
    for bad in ["", ".", "..", "a/b", "a\\b", "a\nb", &"x".repeat(256)] {
        assert!(check_file_name(bad).is_err(), "{bad:?}");
    }
}

/// Hashes `name` now, on this thread, and folds the result in.
fn hash_now(cat: &mut Catalog, name: &str) -> Vec<Effect> {
    let job = cat.begin_hash(name).unwrap();
    cat.hash_done(&job, run(&job))
}

#[test]
fn one_hash_gives_the_root_its_stored_digests_and_the_registry_both() {
    let (dir, mut cat) = setup();
    let body: Vec<u8> = (0..pieces::PIECE_SIZE as usize * 2 + 5)
        .map(|i| (i % 253) as u8)
        .collect();
    let p = dir.path().join("big");
    fs::write(&p, &body).unwrap();
    cat.add(p.to_str().unwrap(), 1.0).unwrap();
    assert!(hash_now(&mut cat, "big").is_empty());
    let f = cat.get("big").unwrap().clone();
    let mut want = Vec::new();
    for piece in body.chunks(pieces::PIECE_SIZE as usize) {
        want.extend_from_slice(&Sha256::digest(piece));
    }
    let root = f.root.clone().unwrap();
    assert_eq!(root, pieces::root_of(&want));
    assert_eq!(pieces::load(&dir.path().join("data"), &root).unwrap(), want);
    let meta = f.registry_meta();
    assert_eq!(
        (meta.sha256.as_deref(), meta.root.as_deref()),
        (f.sha256.as_deref(), Some(root.as_str()))
    );
    cat.set_published("big", Some(2.0));
    let shared = cat.published("big").unwrap();
    assert_eq!(
        shared.pieces,
        pieces::path(&dir.path().join("data"), &root),
        "the peer server finds the digests"
    );
    // Changed on disk: the pair goes together.
    fs::write(&p, b"other").unwrap();
    let sb = cat.sandbox.clone();
    cat.observe("big", observe(&sb, &p));
    let f = cat.get("big").unwrap();
    assert!(f.sha256.is_none() && f.root.is_none());
    assert!(cat.published("big").is_none());
}

#[test]
fn a_reload_keeps_a_stored_root_and_rehashes_only_what_lacks_one() {
    let (dir, mut cat) = setup();
    for (name, body) in [("a", &b"alpha"[..]), ("b", b"beta"), ("empty", b"")] {
        let p = dir.path().join(name);
        fs::write(&p, body).unwrap();
        cat.add(p.to_str().unwrap(), 1.0).unwrap();
        hash_now(&mut cat, name);
        cat.set_published(name, Some(2.0));
    }
    assert_eq!(
        cat.get("empty").unwrap().root.as_deref(),
        Some(pieces::root_of(&[]).as_str())
    );
    cat.save_now().unwrap();
    let back = load(dir.path());
    assert!(back.needing_hash().is_empty(), "nothing is read again");
    assert_eq!(back.get("a").unwrap().root, cat.get("a").unwrap().root);

    // "a" from a catalog older than pieces (no root); "b"'s digests lost.
    let store = dir.path().join("data/users/alice/files.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&store).unwrap()).unwrap();
    for e in v["files"].as_array_mut().unwrap() {
        if e["name"] == "a" {
            e.as_object_mut().unwrap().remove("root");
        }
    }
    fs::write(&store, serde_json::to_vec(&v).unwrap()).unwrap();
    let b_root = cat.get("b").unwrap().root.clone().unwrap();
    fs::remove_file(pieces::path(&dir.path().join("data"), &b_root).unwrap()).unwrap();
    let mut back = load(dir.path());
    let mut todo = back.needing_hash();
    todo.sort();
    assert_eq!(todo, vec!["a", "b"]);
    // Hashed once more, still published all along; the registry hears the pair.
    assert!(back.get("a").unwrap().is_published);
    assert_eq!(hash_now(&mut back, "a"), vec![Effect::Announce("a".into())]);
    assert_eq!(hash_now(&mut back, "b"), vec![Effect::Announce("b".into())]);
    assert!(back.get("a").unwrap().is_published && back.get("a").unwrap().root.is_some());
    assert!(back.needing_hash().is_empty());
}

#[test]
fn a_verified_download_is_tracked_with_its_pair_unless_it_moved() {
    let (dir, mut cat) = setup();
    let p = dir.path().join("got");
    fs::write(&p, b"fetched").unwrap();
    let m = fs::metadata(&p).unwrap();
    let v = Verified {
        size: 7,
        modified: crate::node::sandbox::mtime_secs(&m),
        sha256: "AB".repeat(32),
        root: "cd".repeat(32),
    };
    let bad = Verified {
        root: "zz".into(),
        ..v.clone()
    };
    assert_eq!(
        cat.add_verified(p.to_str().unwrap(), 1.0, &bad)
            .unwrap_err()
            .0,
        400
    );
    let (name, hash) = cat.add_verified(p.to_str().unwrap(), 1.0, &v).unwrap();
    assert_eq!((name.as_str(), hash), ("got", false));
    let f = cat.get("got").unwrap();
    assert_eq!(f.sha256.as_deref(), Some("ab".repeat(32).as_str()));
    assert_eq!(f.root.as_deref(), Some("cd".repeat(32).as_str()));
    assert!(cat.needing_hash().is_empty());

    // Not what was verified any more: hashed like any added file.
    let q = dir.path().join("moved");
    fs::write(&q, b"fetched, then appended to").unwrap();
    let (_, hash) = cat.add_verified(q.to_str().unwrap(), 1.0, &v).unwrap();
    assert!(hash);
    assert!(cat.get("moved").unwrap().sha256.is_none());
}

fn follow_dir(dir: &Path, cat: &mut Catalog, name: &str, publish: bool) -> PathBuf {
    let d = fs::canonicalize(dir).unwrap().join(name);
    fs::create_dir_all(&d).unwrap();
    let real = cat.sandbox.check_folder(d.to_str().unwrap()).unwrap();
    assert!(cat
        .follow(d.to_str().unwrap(), real, false, publish, 1.0)
        .unwrap()
        .is_none());
    d
}

fn scan(cat: &mut Catalog, folder: &Path) -> crate::node::catalog::Scanned {
    let listing = cat.sandbox.list_folder(folder, false);
    cat.folder_scanned(folder, listing, 2.0)
}

#[test]
fn a_catalog_from_before_folders_loads_with_none() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("old.txt");
    fs::write(&p, b"old").unwrap();
    let store = dir.path().join("data/users/alice");
    fs::create_dir_all(&store).unwrap();
    let old = json!({"version": 1, "files": [{
        "name": "old.txt", "path": p, "size": 3, "modified": 1.0, "added_at": 1.0,
        "sha256": null, "is_published": false, "published_at": null, "status": "ok"
    }]});
    fs::write(store.join("files.json"), old.to_string()).unwrap();
    let cat = load(dir.path());
    assert!(cat.folders().is_empty());
    let f = cat.get("old.txt").unwrap();
    assert_eq!((f.folder.as_deref(), f.publish_when_hashed), (None, false));
}

#[test]
fn followed_folders_and_their_flags_survive_a_reload() {
    let (dir, mut cat) = setup();
    let d = follow_dir(dir.path(), &mut cat, "photos", true);
    let ds = d.to_str().unwrap();
    // The same folder again (a trailing slash too) takes the new flags.
    let before = cat
        .follow(&format!("{ds}/"), d.clone(), true, false, 9.0)
        .unwrap()
        .expect("was followed");
    assert!(!before.recursive && before.publish);
    assert_eq!(cat.folders().len(), 1);
    cat.save_now().unwrap();
    let text = fs::read_to_string(dir.path().join("data/users/alice/files.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["folders"][0]["path"], ds);
    assert_eq!(v["folders"][0]["recursive"], true);
    assert_eq!(v["folders"][0]["publish"], false);
    assert_eq!(v["folders"][0]["added_at"], 1.0);
    let back = load(dir.path());
    let f = back.folder(ds).unwrap();
    assert_eq!(
        (f.recursive, f.publish, f.real.as_path()),
        (true, false, d.as_path())
    );
    // Undoing a follow that could not be saved.
    let mut cat = back;
    cat.restore_folder(&d, None);
    assert!(cat.folders().is_empty());
}

#[test]
fn a_listing_tracks_new_files_notes_collisions_and_forgets_the_vanished() {
    let (dir, mut cat) = setup();
    let root = fs::canonicalize(dir.path()).unwrap();
    fs::create_dir_all(root.join("other")).unwrap();
    fs::write(root.join("other/same.txt"), b"first").unwrap();
    cat.add(root.join("other/same.txt").to_str().unwrap(), 1.0)
        .unwrap();
    let d = follow_dir(dir.path(), &mut cat, "box", true);
    fs::write(d.join("a.txt"), b"aaa").unwrap();
    fs::write(d.join("same.txt"), b"second").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", d.join("passwd")).unwrap();
    fs::write(d.join(".a.txt.swp"), b"an editor's swap file").unwrap();
    let s = scan(&mut cat, &d);
    assert_eq!(s.added, vec!["a.txt".to_string()]);
    let f = cat.get("a.txt").unwrap();
    assert_eq!(f.folder.as_deref(), d.to_str());
    assert!(f.publish_when_hashed);
    assert!(cat.get("passwd").is_none());
    let folder = cat.folder(d.to_str().unwrap()).unwrap();
    assert_eq!(folder.last_scan, Some(2.0));
    let reasons: Vec<&str> = folder.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert!(
        reasons.iter().any(|r| r.starts_with(&format!(
            "A file named 'same.txt' is already tracked from {}",
            root.join("other/same.txt").display()
        ))),
        "{reasons:?}"
    );
    assert!(reasons.iter().any(|r| r.contains("link")), "{reasons:?}");
    assert_eq!(
        cat.get("same.txt").unwrap().path,
        root.join("other/same.txt").to_str().unwrap()
    );
    // A second listing adds nothing new.
    assert!(scan(&mut cat, &d).added.is_empty());
    // Gone from the folder: forgotten; the file tracked by hand stays.
    fs::remove_file(d.join("a.txt")).unwrap();
    let s = scan(&mut cat, &d);
    assert_eq!(s.forgotten.len(), 1);
    assert!(cat.get("a.txt").is_none());
    assert!(cat.get("same.txt").is_some());
    // A folder that cannot be listed forgets nothing and says why.
    fs::write(d.join("b.txt"), b"b").unwrap();
    scan(&mut cat, &d);
    assert!(cat.get("b.txt").is_some());
    let s = cat.folder_scanned(&d, Err("cannot open".into()), 3.0);
    assert!(s.forgotten.is_empty() && s.added.is_empty());
    assert!(cat.get("b.txt").is_some());
    assert_eq!(
        cat.folder(d.to_str().unwrap()).unwrap().skipped[0].reason,
        "cannot open"
    );
    // An incomplete listing (a cap hit) forgets nothing either.
    let partial = crate::node::sandbox::FolderListing::default();
    cat.folder_scanned(&d, Ok(partial), 4.0);
    assert!(cat.get("b.txt").is_some());
}

#[test]
fn a_folder_file_is_published_once_hashed_and_the_wish_survives_a_reload() {
    let (dir, mut cat) = setup();
    let d = follow_dir(dir.path(), &mut cat, "inbox", true);
    fs::write(d.join("n.txt"), b"new file").unwrap();
    scan(&mut cat, &d);
    // Saved between the add and the hash (a crash there): still to publish.
    cat.save_now().unwrap();
    let mut cat = load(dir.path());
    assert!(cat.get("n.txt").unwrap().publish_when_hashed);
    assert!(cat.publish_due().is_empty(), "not hashed yet");
    let fx = hash_now(&mut cat, "n.txt");
    assert_eq!(fx, vec![Effect::Publish("n.txt".into())]);
    assert_eq!(cat.publish_due(), vec!["n.txt".to_string()]);
    cat.set_published("n.txt", Some(5.0));
    assert!(!cat.get("n.txt").unwrap().publish_when_hashed);
    assert!(cat.publish_due().is_empty());
    // It changes on disk: unpublished, and published again once hashed.
    fs::write(d.join("n.txt"), b"new file, longer now").unwrap();
    let seen = observe(&cat.sandbox, &d.join("n.txt"));
    let fx = cat.observe("n.txt", seen);
    assert!(fx.contains(&Effect::Unpublish("n.txt".into())), "{fx:?}");
    assert!(cat.get("n.txt").unwrap().publish_when_hashed);
    assert_eq!(
        hash_now(&mut cat, "n.txt"),
        vec![Effect::Publish("n.txt".into())]
    );
}

#[test]
fn a_file_still_being_written_when_listed_is_not_published_on_its_first_hash() {
    let (dir, mut cat) = setup();
    let d = follow_dir(dir.path(), &mut cat, "inbox", true);
    fs::write(d.join("big.bin"), b"first half").unwrap();
    scan(&mut cat, &d);
    // More is written between the listing and the hash.
    fs::write(d.join("big.bin"), b"first half and the second half").unwrap();
    let fx = hash_now(&mut cat, "big.bin");
    assert_eq!(
        fx,
        vec![Effect::Hash("big.bin".into())],
        "hashed again, not published"
    );
    // The next look agrees with the one before: now it is published.
    assert_eq!(
        hash_now(&mut cat, "big.bin"),
        vec![Effect::Publish("big.bin".into())]
    );
}

#[test]
fn unfollowing_keeps_or_removes_the_files_and_can_be_undone() {
    let (dir, mut cat) = setup();
    let d = follow_dir(dir.path(), &mut cat, "box", false);
    fs::write(d.join("k.txt"), b"k").unwrap();
    scan(&mut cat, &d);
    assert!(
        !cat.get("k.txt").unwrap().publish_when_hashed,
        "publish: false"
    );
    let ds = d.to_str().unwrap().to_owned();
    let gone = cat.unfollow(&ds, false).unwrap();
    assert_eq!(gone.kept, vec!["k.txt".to_string()]);
    assert_eq!(cat.get("k.txt").unwrap().folder, None);
    cat.refollow(gone);
    assert_eq!(cat.folder_files(&ds), 1);
    let gone = cat.unfollow(&ds, true).unwrap();
    assert_eq!(gone.removed.len(), 1);
    assert!(cat.get("k.txt").is_none() && cat.folders().is_empty());
    assert_eq!(cat.refollow(gone), vec!["k.txt".to_string()]);
    assert_eq!(cat.folder_files(&ds), 1);
    assert!(cat.unfollow("/not/followed", false).is_none());
}
