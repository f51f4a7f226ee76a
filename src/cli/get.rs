//! `p2pshare get NAME|SHA256 [--to DIR]` (`docs/cli.md`): which content is
//! meant (a name, or a SHA-256 or a prefix of one as `ls` shows it), the
//! `/fetch` that starts the download on the node, then its progress until
//! it ends: exit 0 when completed, 1 when it failed or was cancelled, 5
//! with the choices printed when the name means several contents. The
//! download runs in the node: interrupting `get` does not stop it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::{self, Api};
use super::commands::{hosts_text, network_files};
use super::progress::{bytes, Display, Snapshot};
use super::{code, tty, Failure};

/// A SHA-256 prefix shorter than this is taken as a name.
const MIN_PREFIX: usize = 8;

pub fn run(
    node: Option<&str>,
    what: &str,
    to: Option<&str>,
    overwrite: bool,
) -> Result<(), Failure> {
    let (api, _) = Api::logged_in(node)?;
    api.join_network()?;
    let (fname, sha256) = resolve(&api, what)?;
    let mut body = json!({"fname": fname});
    if let Some(h) = &sha256 {
        body["sha256"] = json!(h);
    }
    if overwrite {
        body["overwrite"] = json!(true);
    }
    if let Some(dir) = to {
        let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
        let target = cwd.join(dir).join(&fname);
        if !overwrite && std::fs::symlink_metadata(&target).is_ok() {
            return Err(Failure::error(format!(
                "{} already exists — pass --overwrite to replace it",
                target.display()
            )));
        }
        body["save_path"] = json!(target);
    }
    let (status, v) = api.call_linked("POST", "fetch", Some(&body))?;
    if !(200..300).contains(&status) {
        return Err(refused(status, &v, &fname));
    }
    let Some(id) = v.get("fetch_id").and_then(Value::as_str) else {
        return Err(Failure::error("the node started no download (no fetch_id)"));
    };
    follow(&api, id)
}

/// What a refused `/fetch` means, the choices printed for an ambiguous name.
fn refused(status: u16, v: &Value, fname: &str) -> Failure {
    if let (409, Some(choices)) = (status, v.get("choices").and_then(Value::as_array)) {
        println!(
            "{} different files are called '{fname}' on the network:",
            choices.len()
        );
        for c in choices {
            let sha = c.get("sha256").and_then(Value::as_str).unwrap_or("?");
            let size = bytes(c.get("size").and_then(Value::as_u64).unwrap_or(0));
            println!("  {sha}  {size:>10}  {}", hosts_text(c));
        }
        return Failure::new(
            code::AMBIGUOUS,
            format!("'{fname}' is ambiguous — get one by its SHA-256: `p2pshare get <sha256>`"),
        );
    }
    let text = api::error_text(status, v);
    if status == 409 && text.contains("already exists") {
        let what = text.split(';').next().unwrap_or(&text);
        return Failure::error(format!("{what} — pass --overwrite to replace it"));
    }
    api::failure(status, v)
}

/// A name, or the content a SHA-256 (prefix) names: (file name, full hash).
fn resolve(api: &Api, what: &str) -> Result<(String, Option<String>), Failure> {
    let hex =
        what.len() >= MIN_PREFIX && what.len() <= 64 && what.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex {
        return Ok((what.to_owned(), None));
    }
    let want = what.to_ascii_lowercase();
    let files = network_files(api, "", 1_000_000)?;
    let mut hits: Vec<&Value> = files
        .iter()
        .filter(|f| {
            f.get("sha256")
                .and_then(Value::as_str)
                .is_some_and(|s| s.starts_with(&want))
        })
        .collect();
    // One content under several names is still one content.
    hits.dedup_by(|a, b| a.get("sha256") == b.get("sha256"));
    let mut shas: Vec<&str> = hits
        .iter()
        .filter_map(|f| f.get("sha256").and_then(Value::as_str))
        .collect();
    shas.sort_unstable();
    shas.dedup();
    match shas.len() {
        0 if what.len() == 64 => Err(Failure::new(
            code::NOT_FOUND,
            format!("no file on the network has SHA-256 {want}"),
        )),
        // Not a known hash: perhaps a file named like one.
        0 => Ok((what.to_owned(), None)),
        1 => {
            let sha = shas[0].to_owned();
            let name = hits
                .iter()
                .find(|f| f.get("sha256").and_then(Value::as_str) == Some(&sha))
                .and_then(|f| f.get("name").and_then(Value::as_str))
                .unwrap_or(what)
                .to_owned();
            Ok((name, Some(sha)))
        }
        n => {
            println!("{n} different files start with SHA-256 {want}:");
            for f in &hits {
                let sha = f.get("sha256").and_then(Value::as_str).unwrap_or("?");
                let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
                println!("  {sha}  {name}");
            }
            Err(Failure::new(
                code::AMBIGUOUS,
                format!("{want} is ambiguous — give more of the SHA-256"),
            ))
        }
    }
}

/// Polls the download's progress and shows it until it ends.
fn follow(api: &Api, id: &str) -> Result<(), Failure> {
    let is_tty = tty::stdout_is_tty();
    let mut display = Display::new(is_tty, if is_tty { tty::width() } else { 0 });
    let every = if is_tty {
        Duration::from_millis(250)
    } else {
        Duration::from_millis(500)
    };
    let path = format!("fetch-progress/{}", percent_path(id));
    loop {
        let v = match api.ok("GET", &path, None) {
            Ok(v) => v,
            Err(f) => {
                display.interrupt();
                return Err(Failure {
                    msg: format!("lost track of the download: {}", f.msg),
                    ..f
                });
            }
        };
        let snap = Snapshot::from_json(&v);
        if snap.is_final() {
            display.finish(&snap);
            return match snap.status.as_str() {
                "completed" => {
                    if let Some(p) = &snap.save_path {
                        println!("saved {}", p);
                    }
                    Ok(())
                }
                "cancelled" => Err(Failure::error("the download was cancelled")),
                _ => Err(Failure::error(format!(
                    "the download failed: {}",
                    snap.error.as_deref().unwrap_or("no reason given")
                ))),
            };
        }
        display.show(&snap, Instant::now());
        std::thread::sleep(every);
    }
}

fn percent_path(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
