//! The command line's saved login: which node, which user, and the token,
//! in `$XDG_CONFIG_HOME/p2pshare/credentials.json` (or
//! `~/.config/p2pshare/`), the folder 0700 and the file 0600 (`docs/cli.md`).
//! A token is as good as a password until it expires, so nobody else on
//! the machine may read it. Only this module touches the file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

const FILE: &str = "credentials.json";

/// What `p2pshare login` keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creds {
    /// The node's client API as `host:port`.
    pub node: String,
    pub username: String,
    pub token: String,
}

/// The folder: `$XDG_CONFIG_HOME/p2pshare`, else `$HOME/.config/p2pshare`.
/// A relative `XDG_CONFIG_HOME` is ignored, as the XDG base directory
/// specification asks.
pub fn dir() -> Result<PathBuf, String> {
    if let Some(x) = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        if x.is_absolute() {
            return Ok(x.join("p2pshare"));
        }
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(h) if h.is_absolute() => Ok(h.join(".config").join("p2pshare")),
        _ => Err(
            "cannot tell where to keep the login: set HOME (or XDG_CONFIG_HOME) to your home folder"
                .into(),
        ),
    }
}

pub fn path() -> Result<PathBuf, String> {
    Ok(dir()?.join(FILE))
}

/// The saved login, if any. A file others may read is refused: its token
/// may have leaked, and the user is told how to start over.
pub fn load() -> Result<Option<Creds>, String> {
    let p = path()?;
    let text = match fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "cannot read your saved login {}: {}",
                p.display(),
                super::io_words(&e)
            ))
        }
    };
    if let Ok(m) = fs::metadata(&p) {
        if m.permissions().mode() & 0o077 != 0 {
            return Err(format!(
                "{} can be read by other users, so its token may have leaked: delete it and run `p2pshare login` again",
                p.display()
            ));
        }
    }
    match serde_json::from_str::<Creds>(&text) {
        Ok(c) => Ok(Some(c)),
        Err(_) => Err(format!(
            "your saved login {} is damaged: run `p2pshare login` again",
            p.display()
        )),
    }
}

/// Writes the login: the folder made 0700, the file written 0600 beside
/// and renamed over the old one, so a crash leaves the old or the new.
pub fn save(c: &Creds) -> Result<PathBuf, String> {
    let d = dir()?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .map_err(|e| format!("cannot create {}: {}", d.display(), super::io_words(&e)))?;
    // The folder may predate us with looser rights; it is ours alone.
    fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(|e| {
        format!(
            "cannot restrict {} to you: {}",
            d.display(),
            super::io_words(&e)
        )
    })?;
    let p = d.join(FILE);
    let tmp = d.join(format!(".{FILE}.{}", std::process::id()));
    let body = serde_json::to_vec_pretty(c).map_err(|e| e.to_string())?;
    let written = write_private(&tmp, &body);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, &p)) {
        let _ = fs::remove_file(&tmp);
        return Err(format!(
            "cannot save your login in {}: {}",
            p.display(),
            super::io_words(&e)
        ));
    }
    Ok(p)
}

fn write_private(p: &Path, body: &[u8]) -> std::io::Result<()> {
    let _ = fs::remove_file(p);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(p)?;
    f.write_all(body)?;
    f.write_all(b"\n")?;
    f.sync_all()
}

/// Forgets the login; true if there was one.
pub fn remove() -> Result<bool, String> {
    let p = path()?;
    match fs::remove_file(&p) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(format!(
            "cannot delete {}: {}",
            p.display(),
            super::io_words(&e)
        )),
    }
}
