//! Starting p2pshare processes for a bench (coordinator, nodes) and learning their
//! addresses from the `... listening on ...` lines they print; the processes are ended when
//! the handle is dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::channel;
use std::time::{Duration, Instant};

pub struct Proc {
    pub name: String,
    pub child: Child,
    /// `"registry"` → `127.0.0.1:41873`, `"admin api"` → `http://...`, ...
    pub addrs: HashMap<String, String>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self, what: &str) -> Result<&str, String> {
        self.addrs
            .get(what)
            .map(String::as_str)
            .ok_or_else(|| format!("{} printed no '{what} listening on' line", self.name))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `bin args...` in `cwd` (so no stray `.env` is read) with `env`, its stderr to
/// `log` (a file), and wait up to `timeout` until it has printed a
/// `<what> listening on <addr>` line for each of `want`.
#[allow(clippy::too_many_arguments)]
pub fn start(
    name: &str,
    bin: &Path,
    args: &[String],
    env: &[(&str, String)],
    cwd: &Path,
    log: &Path,
    want: &[&str],
    timeout: Duration,
) -> Result<Proc, String> {
    let errf = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(errf));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {} ({name}): {e}", bin.display()))?;
    let out = child.stdout.take();
    let (tx, rx) = channel::<String>();
    std::thread::spawn(move || {
        if let Some(out) = out {
            // Keep reading to the end so the child never blocks on a full pipe.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }
    });
    let mut p = Proc {
        name: name.to_string(),
        child,
        addrs: HashMap::new(),
    };
    let deadline = Instant::now() + timeout;
    while !want.iter().all(|w| p.addrs.contains_key(*w)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some((what, addr)) = line.split_once(" listening on ") {
                    p.addrs
                        .insert(what.trim().to_string(), addr.trim().to_string());
                }
            }
            Err(_) => {
                let status = match p.child.try_wait() {
                    Ok(Some(s)) => format!("exited with {s}"),
                    _ => "still running".to_string(),
                };
                let tail = std::fs::read_to_string(log).unwrap_or_default();
                let last = tail.lines().last().unwrap_or("").to_string();
                return Err(format!(
                    "{name} did not print its addresses ({status}); last stderr line: {last}"
                ));
            }
        }
    }
    Ok(p)
}
