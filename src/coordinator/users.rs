//! Durable user accounts in `<data_dir>/users.json`: registration, login, lookup. It
//! never stores or logs a password, and an acknowledged registration is on disk before
//! it is acknowledged.
//!
//! `register` and `login` run PBKDF2 and fsync: call them from worker threads, never
//! from the event loop. The lock is held only for map updates and the file write, never
//! while hashing.

use crate::auth::password;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

const FILE_NAME: &str = "users.json";
const MAX_DISPLAY_NAME_CHARS: usize = 64;
const MIN_PASSWORD_CHARS: usize = 8;
/// Far above any real password; keeps a request body from becoming a hashing job.
const MAX_PASSWORD_CHARS: usize = 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    pub display_name: String,
    pub password_hash: String,
    /// ISO 8601 UTC, e.g. `2025-11-06T10:30:00Z`.
    pub created_at: String,
    #[serde(default)]
    pub last_login: Option<String>,
}

impl User {
    /// What clients may see: never the hash.
    pub fn public_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "username": self.username,
            "display_name": self.display_name,
            "created_at": self.created_at,
        });
        if let Some(t) = &self.last_login {
            v["last_login"] = serde_json::Value::String(t.clone());
        }
        v
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The message is a sentence fit to show the user.
    Invalid(String),
    Taken,
    Io(String),
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Invalid(m) => f.write_str(m),
            RegisterError::Taken => f.write_str("That username is already taken"),
            RegisterError::Io(e) => write!(f, "Could not save the new account: {e}"),
        }
    }
}

impl std::error::Error for RegisterError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user and wrong password look the same, on purpose.
    Invalid,
    Io(String),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Invalid => f.write_str("Invalid username or password"),
            LoginError::Io(e) => write!(f, "Could not record the login: {e}"),
        }
    }
}

impl std::error::Error for LoginError {}

/// 3–32 characters of `A-Za-z0-9_.-`.
pub fn validate_username(username: &str) -> Result<(), String> {
    let ok_len = (3..=32).contains(&username.len());
    let ok_chars = username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err("Username must be 3 to 32 characters: letters, digits, '_', '.' or '-'".into())
    }
}

/// At least 8 characters (and at most 1024).
pub fn validate_password(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Err(format!(
            "Password must be at least {MIN_PASSWORD_CHARS} characters"
        ))
    } else if n > MAX_PASSWORD_CHARS {
        Err(format!(
            "Password must be at most {MAX_PASSWORD_CHARS} characters"
        ))
    } else {
        Ok(())
    }
}

/// Trimmed; empty means "use the username"; at most 64 characters, no control characters.
fn normalize_display_name(display_name: &str, username: &str) -> Result<String, String> {
    let d = display_name.trim();
    if d.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!(
            "Display name must be at most {MAX_DISPLAY_NAME_CHARS} characters"
        ));
    }
    if d.chars().any(char::is_control) {
        return Err("Display name must not contain control characters".into());
    }
    Ok(if d.is_empty() { username } else { d }.to_owned())
}

/// On-disk form, users sorted by name so the file diffs cleanly.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    users: Vec<User>,
}

pub struct UserStore {
    path: PathBuf,
    users: Mutex<HashMap<String, User>>,
}

impl UserStore {
    /// Load `<data_dir>/users.json` (missing = no users yet). A file that does not parse
    /// stops start-up: replacing it would destroy every account.
    pub fn open(data_dir: &Path) -> Result<UserStore, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let users = match std::fs::read(&path) {
            Ok(bytes) => parse_file(&bytes).map_err(|detail| {
                format!(
                    "user store {} is corrupt: {detail}; refusing to start (restore it from a backup or move it away)",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
            Err(e) => return Err(format!("cannot read user store {}: {e}", path.display())),
        };
        Ok(UserStore {
            path,
            users: Mutex::new(users),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, User>> {
        // A panic elsewhere while holding the lock leaves the map consistent (every
        // change is a single insert or field store), so carry on with it.
        self.users.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the whole store; called with the lock held so writes land in order.
    fn persist(&self, users: &HashMap<String, User>) -> Result<(), String> {
        let mut list: Vec<&User> = users.values().collect();
        list.sort_by(|a, b| a.username.cmp(&b.username));
        let json = serde_json::to_vec_pretty(&serde_json::json!({
            "version": 1,
            "users": list,
        }))
        .map_err(|e| e.to_string())?;
        // 0600: the file holds password hashes.
        crate::store::write_atomic_mode(&self.path, &json, 0o600).map_err(|e| e.to_string())
    }

    /// Create an account. Returns only once it is on disk. Usernames are unique without
    /// regard to ASCII case, so "Alice" cannot pose as "alice".
    pub fn register(
        &self,
        username: &str,
        password: &str,
        display_name: &str,
        iterations: u32,
    ) -> Result<User, RegisterError> {
        validate_username(username).map_err(RegisterError::Invalid)?;
        validate_password(password).map_err(RegisterError::Invalid)?;
        let display_name =
            normalize_display_name(display_name, username).map_err(RegisterError::Invalid)?;
        // Cheap early answer so a taken name costs no hashing; checked again below.
        if taken(&self.lock(), username) {
            return Err(RegisterError::Taken);
        }
        let password_hash = password::hash_password(password, iterations)
            .map_err(|e| RegisterError::Io(format!("cannot get random bytes: {e}")))?;
        let user = User {
            username: username.to_owned(),
            display_name,
            password_hash,
            created_at: crate::log::now_iso8601(),
            last_login: None,
        };
        let mut users = self.lock();
        if taken(&users, username) {
            return Err(RegisterError::Taken);
        }
        users.insert(user.username.clone(), user.clone());
        if let Err(e) = self.persist(&users) {
            users.remove(username);
            return Err(RegisterError::Io(e));
        }
        Ok(user)
    }

    /// Check a password and record the login time. Unknown users cost the same hashing
    /// time as known ones, so timing does not reveal which usernames exist.
    pub fn login(&self, username: &str, password: &str) -> Result<User, LoginError> {
        let (hash, known) = {
            let users = self.lock();
            match users.get(username) {
                Some(u) => (u.password_hash.clone(), true),
                // Any stored hash has the cost real users have; its result is ignored.
                None => match users.values().next() {
                    Some(u) => (u.password_hash.clone(), false),
                    None => return Err(LoginError::Invalid),
                },
            }
        };
        let matches = password::verify_password(password, &hash).unwrap_or(false);
        if !(known && matches) {
            return Err(LoginError::Invalid);
        }
        let mut users = self.lock();
        let Some(user) = users.get_mut(username) else {
            return Err(LoginError::Invalid);
        };
        let previous = user.last_login.replace(crate::log::now_iso8601());
        let updated = user.clone();
        if let Err(e) = self.persist(&users) {
            if let Some(u) = users.get_mut(username) {
                u.last_login = previous;
            }
            return Err(LoginError::Io(e));
        }
        Ok(updated)
    }

    pub fn get(&self, username: &str) -> Option<User> {
        self.lock().get(username).cloned()
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }
}

fn taken(users: &HashMap<String, User>, username: &str) -> bool {
    users.contains_key(username) || users.keys().any(|k| k.eq_ignore_ascii_case(username))
}

fn parse_file(bytes: &[u8]) -> Result<HashMap<String, User>, String> {
    let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if stored.version != 1 {
        return Err(format!("unsupported version {}", stored.version));
    }
    let mut users = HashMap::with_capacity(stored.users.len());
    for u in stored.users {
        validate_username(&u.username).map_err(|_| format!("bad username '{}'", u.username))?;
        if !u.password_hash.starts_with("pbkdf2-sha256$") {
            return Err(format!("user '{}' has no usable password hash", u.username));
        }
        let name = u.username.clone();
        if users.insert(name.clone(), u).is_some() {
            return Err(format!("user '{name}' appears twice"));
        }
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
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
    fn corrupt_or_truncated_file_stops_open() {
        let (d, s) = store();
        s.register("alice", "correct horse", "", IT).unwrap();
        let file = d.path().join(FILE_NAME);
        let full = fs::read(&file).unwrap();
        drop(s);
        let mut cases: Vec<Vec<u8>> = vec![
            full[..full.len() - 3].to_vec(),
            Vec::new(),
            b"garbage".to_vec(),
            br#"{"version":1,"users":[{"username":"a"}]}"#.to_vec(),
            br#"{"version":9,"users":[]}"#.to_vec(),
        ];
        let dup = String::from_utf8(full.clone()).unwrap();
        let one = dup
            .split_once("\"users\": [")
            .unwrap()
            .1
            .rsplit_once(']')
            .unwrap()
            .0
            .trim()
            .to_owned();
        cases.push(format!(r#"{{"version":1,"users":[{one},{one}]}}"#).into_bytes());
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
    fn failed_write_is_not_acknowledged() {
        let (d, s) = store();
        s.register("alice", "correct horse", "", IT).unwrap();
        // A directory in the file's place makes the final rename fail.
        let file = d.path().join(FILE_NAME);
        fs::remove_file(&file).unwrap();
        fs::create_dir(&file).unwrap();
        fs::write(file.join("blocker"), b"x").unwrap();
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
}
