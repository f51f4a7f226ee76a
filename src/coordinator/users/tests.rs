//! The account log against real files: migration, torn tails, damage, compaction, failed writes.

use super::*;
use std::fs;

const IT: u32 = 2;

fn store() -> (tempfile::TempDir, UserStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = UserStore::open(dir.path()).unwrap();
    (dir, s)
}

#[test]
fn register_then_login() {
    let (_d, s) = store();
    let u = s
        .register("alice", "correct horse", "Alice A.", IT)
        .unwrap();
    assert_eq!(u.display_name, "Alice A.");
    assert!(
        u.created_at.ends_with('Z') && u.created_at.len() == 20,
        "{}",
        u.created_at
    );
    assert_eq!(u.last_login, None);
    let l = s.login("alice", "correct horse").unwrap();
    assert!(l.last_login.is_some());
    assert_eq!(s.get("alice").unwrap().last_login, l.last_login);
    assert_eq!(s.count(), 1);
}

#[test]
fn wrong_password_and_unknown_user_look_the_same() {
    let (_d, s) = store();
    assert_eq!(
        s.login("nobody", "whatever1").unwrap_err(),
        LoginError::Invalid
    );
    s.register("alice", "correct horse", "", IT).unwrap();
    s.register("bob", "battery staple", "", IT).unwrap();
    let wrong = s.login("alice", "battery staple").unwrap_err();
    let unknown = s.login("carol", "battery staple").unwrap_err();
    assert_eq!(wrong, LoginError::Invalid);
    assert_eq!(unknown, LoginError::Invalid);
    assert_eq!(wrong.to_string(), "Invalid username or password");
    assert_eq!(
        s.login("ALICE", "correct horse").unwrap_err(),
        LoginError::Invalid
    );
}

#[test]
fn taken_names_are_refused_case_insensitively() {
    let (_d, s) = store();
    s.register("alice", "correct horse", "", IT).unwrap();
    assert_eq!(
        s.register("alice", "other password", "", IT).unwrap_err(),
        RegisterError::Taken
    );
    assert_eq!(
        s.register("Alice", "other password", "", IT).unwrap_err(),
        RegisterError::Taken
    );
    assert_eq!(s.count(), 1);
    // The original account is untouched.
    s.login("alice", "correct horse").unwrap();
}

#[test]
fn invalid_input_is_refused_with_a_reason() {
    let (_d, s) = store();
    let bad = |u: &str, p: &str, d: &str| match s.register(u, p, d, IT) {
        Err(RegisterError::Invalid(m)) => m,
        other => panic!("{u:?}/{p:?}/{d:?}: {other:?}"),
    };
    assert!(bad("al", "long enough", "").starts_with("Username must be 3 to 32"));
    assert!(bad(&"a".repeat(33), "long enough", "").starts_with("Username"));
    assert!(bad("al ice", "long enough", "").starts_with("Username"));
    assert!(bad("alice/..", "long enough", "").starts_with("Username"));
    assert!(bad("ålice", "long enough", "").starts_with("Username"));
    assert_eq!(
        bad("alice", "short", ""),
        "Password must be at least 8 characters"
    );
    assert!(bad("alice", &"x".repeat(2000), "").contains("at most 1024"));
    assert!(bad("alice", "long enough", &"d".repeat(65)).contains("at most 64"));
    assert!(bad("alice", "long enough", "a\nb").contains("control"));
    assert_eq!(s.count(), 0);
    assert!(validate_username("a.b-c_9").is_ok());
    assert!(validate_password("12345678").is_ok());
    // Empty display name falls back to the username.
    assert_eq!(
        s.register("alice", "long enough", "  ", IT)
            .unwrap()
            .display_name,
        "alice"
    );
}

#[test]
fn accounts_survive_reopen() {
    let (d, s) = store();
    s.register("alice", "correct horse", "Alice", IT).unwrap();
    s.register("bob", "battery staple", "", IT).unwrap();
    s.login("bob", "battery staple").unwrap();
    drop(s);
    let s = UserStore::open(d.path()).unwrap();
    assert_eq!(s.count(), 2);
    assert_eq!(s.get("alice").unwrap().display_name, "Alice");
    assert!(s.get("bob").unwrap().last_login.is_some());
    s.login("alice", "correct horse").unwrap();
    assert_eq!(
        s.register("alice", "x".repeat(9).as_str(), "", IT)
            .unwrap_err(),
        RegisterError::Taken
    );
    let text = fs::read_to_string(d.path().join(FILE_NAME)).unwrap();
    assert!(!text.contains("correct horse"));
}

#[test]
fn damage_in_the_middle_stops_open_and_the_file_is_kept() {
    let (d, s) = store();
    s.register("alice", "correct horse", "", IT).unwrap();
    s.register("bob", "battery staple", "", IT).unwrap();
    let file = d.path().join(FILE_NAME);
    let full = fs::read(&file).unwrap();
    drop(s);
    let text = String::from_utf8(full.clone()).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    let cases: Vec<Vec<u8>> = vec![
        format!("{}\n{rest}", &first[..first.len() - 3]).into_bytes(),
        format!("garbage\n{text}").into_bytes(),
        format!("{first}\n{first}\n").into_bytes(),
        format!("{{\"op\":\"user\",\"username\":\"a\"}}\n{text}").into_bytes(),
        format!("{{\"op\":\"login\",\"username\":\"zed\",\"at\":\"x\"}}\n{text}").into_bytes(),
    ];
    for bad in cases {
        fs::write(&file, &bad).unwrap();
        let err = UserStore::open(d.path()).err().unwrap();
        assert!(
            err.starts_with(&format!("user store {} is corrupt: ", file.display())),
            "{err}"
        );
        assert!(
            err.ends_with("refusing to start (restore it from a backup or move it away)"),
            "{err}"
        );
        assert_eq!(fs::read(&file).unwrap(), bad, "never replaced");
    }
}

#[test]
fn a_torn_last_record_is_dropped_and_appends_go_on() {
    let (d, s) = store();
    s.register("alice", "correct horse", "", IT).unwrap();
    s.register("bob", "battery staple", "", IT).unwrap();
    let file = d.path().join(FILE_NAME);
    let full = fs::read(&file).unwrap();
    drop(s);
    // Bob's record cut anywhere (a crash mid-write): alice stays, bob is gone.
    let alice_len = full.iter().position(|&b| b == b'\n').unwrap() + 1;
    for cut in [alice_len + 1, alice_len + 40, full.len() - 2] {
        fs::write(&file, &full[..cut]).unwrap();
        let s = UserStore::open(d.path()).unwrap();
        assert_eq!(s.count(), 1, "cut at {cut}");
        assert_eq!(fs::read(&file).unwrap(), &full[..alice_len], "tail cut off");
        s.register("carol", "password1", "", IT).unwrap();
        drop(s);
        let s = UserStore::open(d.path()).unwrap();
        assert_eq!(s.count(), 2);
        assert!(s.get("carol").is_some());
    }
    // A whole last record without its newline is kept and ended.
    fs::write(&file, &full[..full.len() - 1]).unwrap();
    let s = UserStore::open(d.path()).unwrap();
    assert_eq!(s.count(), 2);
    assert_eq!(fs::read(&file).unwrap(), full);
}

#[test]
fn a_legacy_users_json_is_migrated_into_the_log() {
    let d = tempfile::tempdir().unwrap();
    let hash = password::hash_password("correct horse", IT).unwrap();
    let legacy = format!(
        r#"{{"version":1,"users":[{{"username":"alice","display_name":"Alice","password_hash":"{hash}","created_at":"2025-01-01T00:00:00Z","last_login":null}}]}}"#
    );
    fs::write(d.path().join(LEGACY_NAME), &legacy).unwrap();
    let s = UserStore::open(d.path()).unwrap();
    assert_eq!(s.get("alice").unwrap().display_name, "Alice");
    s.login("alice", "correct horse").unwrap();
    assert!(!d.path().join(LEGACY_NAME).exists());
    assert_eq!(
        fs::read_to_string(d.path().join(LEGACY_DONE)).unwrap(),
        legacy
    );
    drop(s);
    let s = UserStore::open(d.path()).unwrap();
    assert!(s.get("alice").unwrap().last_login.is_some());
    // A corrupt legacy file is refused and left alone.
    let d = tempfile::tempdir().unwrap();
    fs::write(d.path().join(LEGACY_NAME), b"{\"version\":1,\"users\":{").unwrap();
    let err = UserStore::open(d.path()).err().unwrap();
    assert!(err.contains("is corrupt"), "{err}");
    assert!(d.path().join(LEGACY_NAME).exists());
    assert!(!d.path().join(FILE_NAME).exists());
}

#[test]
fn each_change_appends_one_line() {
    let (d, s) = store();
    let file = d.path().join(FILE_NAME);
    let mut prev = fs::read(&file).unwrap();
    for i in 0..20 {
        s.register(&format!("user{i}"), "password1", "", IT)
            .unwrap();
        let now = fs::read(&file).unwrap();
        assert!(now.starts_with(&prev), "append-only");
        let added = &now[prev.len()..];
        assert_eq!(added.iter().filter(|&&b| b == b'\n').count(), 1);
        assert!(added.len() < 400, "{}", added.len());
        prev = now;
    }
    s.login("user3", "password1").unwrap();
    s.persist_revocation("j:abc", unix_secs() + 100).unwrap();
    s.persist_revocation("j:old", 5).unwrap();
    assert!(fs::read(&file).unwrap().len() - prev.len() < 300);
    drop(s);
    let s = UserStore::open(d.path()).unwrap();
    assert_eq!(s.count(), 20);
    assert!(s.get("user3").unwrap().last_login.is_some());
    let rev = s.take_revocations();
    assert_eq!(rev.len(), 1, "expired ones are not loaded: {rev:?}");
    assert_eq!(rev[0].0, "j:abc");
    assert!(s.take_revocations().is_empty());
}

#[test]
fn many_logins_are_compacted_away() {
    let (d, s) = store();
    s.register("alice", "correct horse", "", IT).unwrap();
    s.persist_revocation("j:live", unix_secs() + 1000).unwrap();
    s.persist_revocation("j:dead", 1).unwrap();
    for _ in 0..(COMPACT_MIN_RECORDS + 10) {
        s.login("alice", "correct horse").unwrap();
    }
    let file = d.path().join(FILE_NAME);
    let lines = fs::read_to_string(&file).unwrap().lines().count() as u64;
    assert!(lines < COMPACT_MIN_RECORDS, "{lines}");
    let last = s.get("alice").unwrap().last_login;
    drop(s);
    let s = UserStore::open(d.path()).unwrap();
    assert_eq!(s.get("alice").unwrap().last_login, last);
    assert_eq!(s.take_revocations().len(), 1);
    s.login("alice", "correct horse").unwrap();
}

#[test]
fn failed_write_is_not_acknowledged() {
    let (_d, s) = store();
    s.register("alice", "correct horse", "", IT).unwrap();
    // Writing through a read-only handle fails like a full disk would.
    {
        let mut log = s.log();
        log.file = Some(File::open(&s.path).unwrap());
    }
    assert!(matches!(
        s.register("bob", "battery staple", "", IT),
        Err(RegisterError::Io(_))
    ));
    assert!(s.get("bob").is_none());
    assert_eq!(s.count(), 1);
    assert!(matches!(
        s.login("alice", "correct horse"),
        Err(LoginError::Io(_))
    ));
    assert_eq!(s.get("alice").unwrap().last_login, None);
}

#[test]
fn concurrent_registrations_all_persist() {
    let (d, s) = store();
    std::thread::scope(|sc| {
        for t in 0..4 {
            let s = &s;
            sc.spawn(move || {
                for i in 0..10 {
                    s.register(&format!("user{t}_{i}"), "password1", "", IT)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(UserStore::open(d.path()).unwrap().count(), 40);
}

#[test]
fn public_json_hides_the_hash() {
    let (_d, s) = store();
    let u = s.register("alice", "correct horse", "", IT).unwrap();
    let j = u.public_json();
    assert_eq!(j["username"], "alice");
    assert!(j.get("password_hash").is_none());
    assert!(j.get("last_login").is_none());
    assert!(!j.to_string().contains("pbkdf2"));
    let j = s.login("alice", "correct horse").unwrap().public_json();
    assert!(j["last_login"].is_string());
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<UserStore>();
}
