//! The coordinator's token-signing secret and admin password hash, from the environment or
//! kept in `<data_dir>/secrets.json` (mode 0600). It never logs a secret, never stores an
//! environment-supplied one, and never replaces a file it cannot read.

use crate::auth::{password, random};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

const FILE_NAME: &str = "secrets.json";
const JWT_SECRET_LEN: usize = 32;
/// 12 random bytes give 16 URL-safe characters (96 bits).
const GENERATED_PASSWORD_BYTES: usize = 12;

pub struct Secrets {
    pub jwt_secret: Vec<u8>,
    pub admin_password_hash: String,
    /// Set only on the start that generated the admin password, so the caller can print
    /// it once; it is stored nowhere.
    pub generated_admin_password: Option<String>,
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Secrets")
            .field("jwt_secret", &"<redacted>")
            .field("admin_password_hash", &"<redacted>")
            .field(
                "generated_admin_password",
                &self.generated_admin_password.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// On-disk form. Fields are optional because values supplied by the environment are
/// never written.
#[derive(Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Stored {
    version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jwt_secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin_password_hash: Option<String>,
}

use crate::util::hex;

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn corrupt(path: &Path, detail: impl fmt::Display) -> String {
    format!(
        "secrets file {} is corrupt: {detail}; refusing to start (restore it from a backup or move it away)",
        path.display()
    )
}

fn read_stored(path: &Path) -> Result<Option<Stored>, String> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read secrets file {}: {e}", path.display())),
    };
    let stored: Stored = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e))?;
    if stored.version != 1 {
        return Err(corrupt(
            path,
            format!("unsupported version {}", stored.version),
        ));
    }
    if let Some(j) = &stored.jwt_secret {
        if unhex(j).is_none_or(|k| k.len() < 16) {
            return Err(corrupt(path, "jwt_secret is not at least 16 bytes of hex"));
        }
    }
    if let Some(h) = &stored.admin_password_hash {
        // A shape check only: a full verify would cost a whole PBKDF2 run at start-up.
        if !h.starts_with("pbkdf2-sha256$") || h.split('$').count() != 4 {
            return Err(corrupt(
                path,
                "admin_password_hash is not a pbkdf2-sha256 hash",
            ));
        }
    }
    Ok(Some(stored))
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Resolve the secrets: environment values win and stay in memory; missing ones are read
/// from `<data_dir>/secrets.json` or, on first start, generated and saved there before
/// this returns. Creates `data_dir` (mode 0700) if needed.
pub fn load_or_create(
    data_dir: &Path,
    env_jwt: Option<&str>,
    env_admin_password: Option<&str>,
    iterations: u32,
) -> Result<Secrets, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", data_dir.display()))?;
    let path = data_dir.join(FILE_NAME);
    let mut stored = read_stored(&path)?;
    if stored.is_some() {
        if let Ok(meta) = std::fs::metadata(&path) {
            if meta.permissions().mode() & 0o077 != 0 {
                crate::log_warn!(
                    "{} is readable by other users; run chmod 600 on it",
                    path.display()
                );
            }
        }
    }
    let mut dirty = false;
    let rand_err = |e: std::io::Error| format!("cannot get random bytes: {e}");

    let jwt_secret = match (
        non_empty(env_jwt),
        stored.as_ref().and_then(|s| s.jwt_secret.as_deref()),
    ) {
        (Some(env), _) => env.as_bytes().to_vec(),
        // Validated in read_stored.
        (None, Some(h)) => unhex(h).unwrap_or_default(),
        (None, None) => {
            let key = random::bytes(JWT_SECRET_LEN).map_err(rand_err)?;
            stored.get_or_insert_with(Stored::default).jwt_secret = Some(hex(&key));
            dirty = true;
            key
        }
    };

    let mut generated_admin_password = None;
    let stored_hash = stored.as_ref().and_then(|s| s.admin_password_hash.clone());
    let admin_password_hash = match (non_empty(env_admin_password), stored_hash) {
        (Some(pw), _) => password::hash_password(pw, iterations)
            .map_err(|e| format!("cannot hash the admin password: {e}"))?,
        (None, Some(h)) => h,
        (None, None) => {
            let pw = random::token_string(GENERATED_PASSWORD_BYTES).map_err(rand_err)?;
            let h = password::hash_password(&pw, iterations)
                .map_err(|e| format!("cannot hash the admin password: {e}"))?;
            stored
                .get_or_insert_with(Stored::default)
                .admin_password_hash = Some(h.clone());
            generated_admin_password = Some(pw);
            dirty = true;
            h
        }
    };

    if let (true, Some(mut s)) = (dirty, stored) {
        s.version = 1;
        let json = serde_json::to_vec_pretty(&s).map_err(|e| e.to_string())?;
        crate::store::write_atomic_mode(&path, &json, 0o600)
            .map_err(|e| format!("cannot write secrets file {}: {e}", path.display()))?;
    }
    Ok(Secrets {
        jwt_secret,
        admin_password_hash,
        generated_admin_password,
    })
}

/// `p2pshare admin reset-password`: keeps `hash` as the admin password hash in
/// `<data_dir>/secrets.json` (made 0600; the JWT secret, if kept there, stays).
/// A file it cannot read or understand is refused and left as it is.
/// Returns the file's path.
pub fn store_admin_password_hash(data_dir: &Path, hash: &str) -> Result<PathBuf, String> {
    let words = |e: std::io::Error| e.kind().to_string();
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .map_err(|e| {
            format!(
                "cannot create data directory {}: {}",
                data_dir.display(),
                words(e)
            )
        })?;
    let path = data_dir.join(FILE_NAME);
    let mut stored = read_stored(&path)?.unwrap_or_default();
    stored.version = 1;
    stored.admin_password_hash = Some(hash.to_owned());
    let json = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string())?;
    crate::store::write_atomic_mode(&path, &json, 0o600)
        .map_err(|e| format!("cannot write secrets file {}: {}", path.display(), words(e)))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::password::verify_password;
    use std::fs;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_start_generates_and_later_starts_reuse() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested/data");
        let first = load_or_create(&dir, None, None, 2).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join(FILE_NAME);
        assert_eq!(mode(&file), 0o600);
        assert_eq!(first.jwt_secret.len(), 32);
        let pw = first.generated_admin_password.clone().unwrap();
        assert!(pw.len() >= 16, "{pw}");
        assert_eq!(verify_password(&pw, &first.admin_password_hash), Ok(true));
        let text = fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&pw), "the password itself is never stored");
        assert!(text.contains(&hex(&first.jwt_secret)));

        let second = load_or_create(&dir, None, None, 2).unwrap();
        assert_eq!(second.jwt_secret, first.jwt_secret);
        assert_eq!(second.admin_password_hash, first.admin_password_hash);
        assert_eq!(second.generated_admin_password, None);
        assert_eq!(fs::read_to_string(&file).unwrap(), text, "not rewritten");
    }

    #[test]
    fn environment_values_win_and_are_not_stored() {
        let tmp = tempfile::tempdir().unwrap();
        let s =
            load_or_create(tmp.path(), Some("env-jwt-secret"), Some("env-admin-pw"), 2).unwrap();
        assert_eq!(s.jwt_secret, b"env-jwt-secret");
        assert_eq!(
            verify_password("env-admin-pw", &s.admin_password_hash),
            Ok(true)
        );
        assert_eq!(s.generated_admin_password, None);
        assert!(!tmp.path().join(FILE_NAME).exists(), "nothing to keep");

        // Only the missing one is generated and kept.
        let s = load_or_create(tmp.path(), Some("env-jwt-secret"), None, 2).unwrap();
        assert!(s.generated_admin_password.is_some());
        let text = fs::read_to_string(tmp.path().join(FILE_NAME)).unwrap();
        assert!(!text.contains("jwt_secret"), "{text}");
        assert!(!text.contains(&hex(b"env-jwt-secret")));

        // Empty environment values count as unset.
        let again = load_or_create(tmp.path(), Some(""), Some(""), 2).unwrap();
        assert_eq!(again.admin_password_hash, s.admin_password_hash);
        assert_eq!(again.jwt_secret.len(), 32);
    }

    #[test]
    fn corrupt_file_is_refused_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join(FILE_NAME);
        load_or_create(tmp.path(), None, None, 2).unwrap();
        let full = fs::read_to_string(&file).unwrap();
        let cases = [
            full[..full.len() / 2].to_owned(),
            String::new(),
            "not json".into(),
            r#"{"version":2,"jwt_secret":"00112233445566778899aabbccddeeff"}"#.into(),
            r#"{"version":1,"jwt_secret":"zz"}"#.into(),
            r#"{"version":1,"admin_password_hash":"plain"}"#.into(),
            r#"{"version":1,"surprise":true}"#.into(),
        ];
        for bad in cases {
            fs::write(&file, &bad).unwrap();
            let err = load_or_create(tmp.path(), None, None, 2).unwrap_err();
            assert!(err.contains(&file.display().to_string()), "{err}");
            assert!(err.contains("corrupt"), "{err}");
            assert_eq!(fs::read_to_string(&file).unwrap(), bad, "never replaced");
        }
    }

    #[test]
    fn a_reset_keeps_the_jwt_secret_and_never_replaces_a_bad_file() {
        let tmp = tempfile::tempdir().unwrap();
        let first = load_or_create(tmp.path(), None, None, 2).unwrap();
        let h = password::hash_password("a new password", 2).unwrap();
        let file = store_admin_password_hash(tmp.path(), &h).unwrap();
        assert_eq!(mode(&file), 0o600);
        let again = load_or_create(tmp.path(), None, None, 2).unwrap();
        assert_eq!(again.jwt_secret, first.jwt_secret);
        assert_eq!(again.admin_password_hash, h);
        assert_eq!(again.generated_admin_password, None);

        fs::write(&file, "not json").unwrap();
        let err = store_admin_password_hash(tmp.path(), &h).unwrap_err();
        assert!(err.contains("corrupt"), "{err}");
        assert_eq!(fs::read_to_string(&file).unwrap(), "not json");

        // No file yet: only the hash is written; the secret comes at first start.
        let fresh = tmp.path().join("fresh");
        let file = store_admin_password_hash(&fresh, &h).unwrap();
        assert!(!fs::read_to_string(&file).unwrap().contains("jwt_secret"));
        let s = load_or_create(&fresh, None, None, 2).unwrap();
        assert_eq!(s.admin_password_hash, h);
        assert_eq!(s.generated_admin_password, None);
    }

    #[test]
    fn debug_redacts() {
        let tmp = tempfile::tempdir().unwrap();
        let s = load_or_create(tmp.path(), Some("visible?"), None, 2).unwrap();
        let d = format!("{s:?}");
        assert!(!d.contains("visible") && !d.contains("pbkdf2"), "{d}");
    }
}
