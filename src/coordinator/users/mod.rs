//! Durable user accounts and token revocations in `<data_dir>/users.log`, an
//! append-only log of JSON lines: one record per registration, per login (its
//! time) and per revoked token. It never stores or logs a password, and an
//! acknowledged change is fsynced before it is acknowledged.
//!
//! Node credentials (`docs/server-api.md`, "Node credentials") are listed
//! here too: one record when issued, so an admin can see and revoke them.
//!
//! `register`, `login` and `persist_revocation` run PBKDF2 and fsync: call them
//! from worker threads, never from the event loop. Two locks, never nested the
//! other way round: the log's mutex (workers only) is held across the append
//! and its fsync; the map's lock is held only for in-memory reads and inserts,
//! never across I/O, so the loop's lookups never wait on the disk.
//!
//! One registration costs one appended line and one fsync, whatever the number
//! of accounts (it used to rewrite the whole store). When the log holds many
//! more records than live state (logins pile up), a worker rewrites it
//! compactly, atomically (temp file, fsync, rename).

use crate::auth::password;
use crate::util::unix_secs;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The log.
const FILE_NAME: &str = "users.log";
/// The whole-file store of earlier versions: migrated into the log once.
const LEGACY_NAME: &str = "users.json";
/// Where the legacy file goes once migrated (kept: it is the only backup).
const LEGACY_DONE: &str = "users.json.migrated";
/// Compact when the log holds more records than this and twice the live ones.
const COMPACT_MIN_RECORDS: u64 = 1024;
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

/// 3–32 characters of `A-Za-z0-9_.-`, not only dots (`proto::names`).
pub fn validate_username(username: &str) -> Result<(), String> {
    if crate::proto::names::valid_username(username) {
        Ok(())
    } else {
        Err(crate::proto::names::USERNAME_RULE.into())
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

/// A long-lived, registry-only token a node holds for one user, so the
/// user's files stay on the network across restarts without a login.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Credential {
    /// The token's id (`j:<jti>`), as revocations name it.
    pub id: String,
    pub username: String,
    /// Where it was issued for (the node's own words, at most 64 characters).
    pub label: String,
    /// Unix seconds.
    pub created_at: u64,
    pub exp: u64,
}

/// One line of the log.
#[derive(Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum Record {
    /// A new account (or, after compaction, an account as it stands).
    User(User),
    /// A successful login at `at` (ISO 8601).
    Login { username: String, at: String },
    /// A token (by id) refused until `exp` (Unix seconds).
    Revoke { id: String, exp: u64 },
    /// A node credential issued.
    Credential(Credential),
}

fn record_line(r: &Record) -> Vec<u8> {
    // Strings and integers: serialising cannot fail.
    let mut line = serde_json::to_vec(r).unwrap_or_default();
    line.push(b'\n');
    line
}

/// The in-memory accounts, read by the loop.
#[derive(Default)]
struct Users {
    by_name: HashMap<String, User>,
    /// Lower-cased names: "Alice" cannot pose as "alice", checked in O(1).
    folded: HashSet<String>,
    /// Node credentials not yet expired, by id.
    credentials: BTreeMap<String, Credential>,
}

impl Users {
    fn taken(&self, username: &str) -> bool {
        self.folded.contains(&username.to_ascii_lowercase())
    }

    fn insert(&mut self, u: User) {
        self.folded.insert(u.username.to_ascii_lowercase());
        self.by_name.insert(u.username.clone(), u);
    }
}

/// The open log; only workers touch it, one at a time.
struct Log {
    file: Option<File>,
    /// Bytes of whole records: a failed append is cut back to this.
    len: u64,
    records: u64,
    /// Live revocations (id → exp), kept for compaction.
    revoked: HashMap<String, u64>,
    /// A write failed and could not be undone: refuse further writes rather
    /// than append after a partial line.
    broken: Option<String>,
}

pub struct UserStore {
    path: PathBuf,
    users: RwLock<Users>,
    log: Mutex<Log>,
    /// Revocations read at open, handed to the loop once.
    revoked_at_open: Mutex<Vec<(String, u64)>>,
}

fn corrupt(path: &Path, detail: impl fmt::Display) -> String {
    format!(
        "user store {} is corrupt: {detail}; refusing to start (restore it from a backup or move it away)",
        path.display()
    )
}

fn check_user(u: &User) -> Result<(), String> {
    validate_username(&u.username).map_err(|_| format!("bad username '{}'", u.username))?;
    if !u.password_hash.starts_with("pbkdf2-sha256$") {
        return Err(format!("user '{}' has no usable password hash", u.username));
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// What reading the log found.
struct Loaded {
    users: Users,
    revoked: HashMap<String, u64>,
    records: u64,
    /// Bytes of whole, valid records.
    good_len: u64,
    /// The last record has no newline yet (it is whole: keep it, end it).
    needs_newline: bool,
    /// A torn last line was dropped: its length.
    torn: Option<usize>,
}

/// Reads the log. A bad line that is the last one is a write torn by a crash
/// (it was never acknowledged): dropped. A bad line with records after it is
/// damage: refused.
fn parse_log(bytes: &[u8], now: u64) -> Result<Loaded, String> {
    let mut users = Users::default();
    let mut revoked = HashMap::new();
    let mut records = 0u64;
    let mut pos = 0usize;
    let mut good_len = 0u64;
    let mut needs_newline = false;
    let mut torn = None;
    let mut line_no = 0usize;
    while pos < bytes.len() {
        line_no += 1;
        let (line, next, terminated) = match bytes[pos..].iter().position(|&b| b == b'\n') {
            Some(i) => (&bytes[pos..pos + i], pos + i + 1, true),
            None => (&bytes[pos..], bytes.len(), false),
        };
        let is_last = next >= bytes.len();
        match serde_json::from_slice::<Record>(line) {
            Ok(rec) => {
                match rec {
                    Record::User(u) => {
                        check_user(&u).map_err(|e| format!("line {line_no}: {e}"))?;
                        if users.by_name.contains_key(&u.username) {
                            return Err(format!(
                                "line {line_no}: user '{}' appears twice",
                                u.username
                            ));
                        }
                        users.insert(u);
                    }
                    Record::Login { username, at } => match users.by_name.get_mut(&username) {
                        Some(u) => u.last_login = Some(at),
                        None => {
                            return Err(format!(
                                "line {line_no}: login of unknown user '{username}'"
                            ))
                        }
                    },
                    Record::Revoke { id, exp } => {
                        if exp > now {
                            revoked.insert(id, exp);
                        }
                    }
                    Record::Credential(c) => {
                        if c.exp > now {
                            users.credentials.insert(c.id.clone(), c);
                        }
                    }
                }
                records += 1;
                good_len = next as u64;
                needs_newline = !terminated;
            }
            Err(_) if is_last => {
                torn = Some(line.len());
            }
            Err(e) => {
                return Err(format!(
                    "line {line_no} is damaged ({e}) and records follow it"
                ))
            }
        }
        pos = next;
    }
    Ok(Loaded {
        users,
        revoked,
        records,
        good_len,
        needs_newline,
        torn,
    })
}

/// The legacy `users.json`: `{"version":1,"users":[...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Legacy {
    version: u32,
    users: Vec<User>,
}

fn parse_legacy(bytes: &[u8]) -> Result<Vec<User>, String> {
    let stored: Legacy = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if stored.version != 1 {
        return Err(format!("unsupported version {}", stored.version));
    }
    let mut seen = HashSet::new();
    for u in &stored.users {
        check_user(u)?;
        if !seen.insert(u.username.clone()) {
            return Err(format!("user '{}' appears twice", u.username));
        }
    }
    Ok(stored.users)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)
}

impl UserStore {
    /// Opens `<data_dir>/users.log`, migrating a `users.json` of an earlier
    /// version into it first. A damaged log stops start-up: replacing it
    /// would destroy accounts.
    pub fn open(data_dir: &Path) -> Result<UserStore, String> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
        let path = data_dir.join(FILE_NAME);
        let legacy = data_dir.join(LEGACY_NAME);
        if !path.exists() && legacy.exists() {
            Self::migrate(data_dir, &legacy, &path)?;
        } else if path.exists() && legacy.exists() {
            // A migration finished writing the log but not moving the old file.
            let _ = std::fs::rename(&legacy, data_dir.join(LEGACY_DONE));
        }
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(|e| format!("cannot read user store {}: {e}", path.display()))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("cannot read user store {}: {e}", path.display())),
        }
        let loaded = parse_log(&bytes, unix_secs()).map_err(|d| corrupt(&path, d))?;
        let mut file = open_append(&path)
            .map_err(|e| format!("cannot open user store {}: {e}", path.display()))?;
        if let Some(n) = loaded.torn {
            crate::log_warn!(
                "user store {}: dropped a torn last record ({n} bytes, never acknowledged)",
                path.display()
            );
            file.set_len(loaded.good_len)
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("cannot repair user store {}: {e}", path.display()))?;
        }
        if loaded.needs_newline {
            file.write_all(b"\n")
                .and_then(|_| file.sync_all())
                .map_err(|e| format!("cannot repair user store {}: {e}", path.display()))?;
        }
        let len = loaded.good_len + u64::from(loaded.needs_newline);
        // The log may have just been created: make its name durable too.
        sync_dir(data_dir).map_err(|e| format!("cannot sync {}: {e}", data_dir.display()))?;
        let revoked_list: Vec<(String, u64)> = loaded
            .revoked
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        Ok(UserStore {
            path,
            users: RwLock::new(loaded.users),
            log: Mutex::new(Log {
                file: Some(file),
                len,
                records: loaded.records,
                revoked: loaded.revoked,
                broken: None,
            }),
            revoked_at_open: Mutex::new(revoked_list),
        })
    }

    /// Writes the accounts of `users.json` as a new log (atomically), then
    /// moves the old file aside. A crash in between leaves both; the next
    /// start sees the log and finishes the move.
    fn migrate(data_dir: &Path, legacy: &Path, path: &Path) -> Result<(), String> {
        let bytes = std::fs::read(legacy)
            .map_err(|e| format!("cannot read user store {}: {e}", legacy.display()))?;
        let users = parse_legacy(&bytes).map_err(|d| corrupt(legacy, d))?;
        let mut out = Vec::with_capacity(bytes.len());
        for u in users {
            out.extend_from_slice(&record_line(&Record::User(u)));
        }
        crate::store::write_atomic_mode(path, &out, 0o600)
            .map_err(|e| format!("cannot write user store {}: {e}", path.display()))?;
        std::fs::rename(legacy, data_dir.join(LEGACY_DONE))
            .map_err(|e| format!("cannot move {} aside: {e}", legacy.display()))?;
        sync_dir(data_dir).map_err(|e| format!("cannot sync {}: {e}", data_dir.display()))?;
        crate::log_info!(
            "migrated {} into {} (the old file is kept as {LEGACY_DONE})",
            legacy.display(),
            path.display()
        );
        Ok(())
    }

    /// The log's path (tests and diagnostics).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read(&self) -> RwLockReadGuard<'_, Users> {
        // Every change is a single insert or field store: a panic elsewhere
        // leaves the map consistent, so carry on with it.
        self.users.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Users> {
        self.users.write().unwrap_or_else(|p| p.into_inner())
    }

    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record and fsyncs it. On failure the file is cut back to
    /// its last whole record, so a later append never follows half a line.
    fn append(&self, log: &mut Log, rec: &Record) -> Result<(), String> {
        if let Some(why) = &log.broken {
            return Err(format!("the user store is unusable until restart: {why}"));
        }
        let line = record_line(rec);
        let Some(file) = log.file.as_mut() else {
            return Err("the user store is not open".into());
        };
        let result = file.write_all(&line).and_then(|_| file.sync_data());
        match result {
            Ok(()) => {
                log.len += line.len() as u64;
                log.records += 1;
                Ok(())
            }
            Err(e) => {
                if let Err(e2) = file.set_len(log.len).and_then(|_| file.sync_data()) {
                    log.broken = Some(format!("{e}; then {e2}"));
                }
                Err(e.to_string())
            }
        }
    }

    /// Rewrites the log as one record per account and live revocation when
    /// it has grown well past that. Runs on a worker, holding the log lock.
    fn maybe_compact(&self, log: &mut Log) {
        let live =
            self.count() as u64 + log.revoked.len() as u64 + self.read().credentials.len() as u64;
        if log.records <= COMPACT_MIN_RECORDS.max(live.saturating_mul(2)) || log.broken.is_some() {
            return;
        }
        let now = unix_secs();
        log.revoked.retain(|_, exp| *exp > now);
        let mut out = Vec::new();
        let mut records = 0u64;
        {
            // CPU only under the read lock; the disk work comes after.
            let users = self.read();
            let mut list: Vec<&User> = users.by_name.values().collect();
            list.sort_by(|a, b| a.username.cmp(&b.username));
            for u in list {
                out.extend_from_slice(&record_line(&Record::User(u.clone())));
                records += 1;
            }
            for c in users.credentials.values().filter(|c| c.exp > now) {
                out.extend_from_slice(&record_line(&Record::Credential(c.clone())));
                records += 1;
            }
        }
        for (id, exp) in &log.revoked {
            out.extend_from_slice(&record_line(&Record::Revoke {
                id: id.clone(),
                exp: *exp,
            }));
            records += 1;
        }
        let swapped = crate::store::write_atomic_mode(&self.path, &out, 0o600)
            .and_then(|_| open_append(&self.path));
        match swapped {
            Ok(file) => {
                log.file = Some(file);
                log.len = out.len() as u64;
                log.records = records;
            }
            Err(e) => {
                // The old log is intact (the rename is atomic): go on with it.
                crate::log_warn!("could not compact {}: {e}", self.path.display());
                // Try again only after as many records once more.
                log.records = records;
            }
        }
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
        if self.read().taken(username) {
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
        // Writers take the log lock first: no one else can add this name
        // between the check and the insert.
        let mut log = self.log();
        if self.read().taken(username) {
            return Err(RegisterError::Taken);
        }
        self.append(&mut log, &Record::User(user.clone()))
            .map_err(RegisterError::Io)?;
        self.write().insert(user.clone());
        self.maybe_compact(&mut log);
        Ok(user)
    }

    /// Check a password and record the login time. Unknown users cost the same hashing
    /// time as known ones, so timing does not reveal which usernames exist.
    pub fn login(&self, username: &str, password: &str) -> Result<User, LoginError> {
        let (hash, known) = {
            let users = self.read();
            match users.by_name.get(username) {
                Some(u) => (u.password_hash.clone(), true),
                // Any stored hash has the cost real users have; its result is ignored.
                None => match users.by_name.values().next() {
                    Some(u) => (u.password_hash.clone(), false),
                    None => return Err(LoginError::Invalid),
                },
            }
        };
        let matches = password::verify_password(password, &hash).unwrap_or(false);
        if !(known && matches) {
            return Err(LoginError::Invalid);
        }
        let at = crate::log::now_iso8601();
        let mut log = self.log();
        self.append(
            &mut log,
            &Record::Login {
                username: username.to_owned(),
                at: at.clone(),
            },
        )
        .map_err(LoginError::Io)?;
        let updated = {
            let mut users = self.write();
            let Some(user) = users.by_name.get_mut(username) else {
                return Err(LoginError::Invalid);
            };
            user.last_login = Some(at);
            user.clone()
        };
        self.maybe_compact(&mut log);
        Ok(updated)
    }

    /// Records that token `id` is refused until `exp`. Returns once durable.
    pub fn persist_revocation(&self, id: &str, exp: u64) -> Result<(), String> {
        let mut log = self.log();
        self.append(
            &mut log,
            &Record::Revoke {
                id: id.to_owned(),
                exp,
            },
        )?;
        log.revoked.insert(id.to_owned(), exp);
        self.maybe_compact(&mut log);
        Ok(())
    }

    /// Records an issued node credential. Returns once durable.
    pub fn persist_credential(&self, c: &Credential) -> Result<(), String> {
        let mut log = self.log();
        self.append(&mut log, &Record::Credential(c.clone()))?;
        let now = unix_secs();
        let mut users = self.write();
        users.credentials.retain(|_, c| c.exp > now);
        users.credentials.insert(c.id.clone(), c.clone());
        drop(users);
        self.maybe_compact(&mut log);
        Ok(())
    }

    /// Node credentials not yet expired, oldest first.
    pub fn credentials(&self) -> Vec<Credential> {
        let now = unix_secs();
        let mut list: Vec<Credential> = self
            .read()
            .credentials
            .values()
            .filter(|c| c.exp > now)
            .cloned()
            .collect();
        list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        list
    }

    /// The revocations found at open (not yet expired); the caller keeps
    /// them from then on. Empty after the first call.
    pub fn take_revocations(&self) -> Vec<(String, u64)> {
        std::mem::take(
            &mut *self
                .revoked_at_open
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        )
    }

    pub fn get(&self, username: &str) -> Option<User> {
        self.read().by_name.get(username).cloned()
    }

    /// The display name of an account, if it exists.
    pub fn display_name(&self, username: &str) -> Option<String> {
        self.read()
            .by_name
            .get(username)
            .map(|u| u.display_name.clone())
    }

    pub fn exists(&self, username: &str) -> bool {
        self.read().by_name.contains_key(username)
    }

    pub fn count(&self) -> usize {
        self.read().by_name.len()
    }
}

#[cfg(test)]
mod tests;
