//! `p2pshare share PATH…` (`docs/cli.md`): every named file, and every
//! regular file in a named folder (its sub-folders too with `-r`; hidden
//! entries skipped), tracked with `/add-file` and published with
//! `/publish` once the node has hashed it; then each named folder is
//! followed (`/add-folder`), so files added to it later are shared too,
//! unless `--once`. Each file's outcome is reported; the exit code is that
//! of the worst.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::api::{self, Api};
use super::progress::bytes;
use super::{code, Failure};

/// A folder share stops listing here: one host may list 10000 files
/// (`--max-files-per-host`'s default).
const MAX_FILES: usize = 10_000;

/// The files `paths` name, made absolute (the node wants absolute paths),
/// with the problems found on the way.
fn collect(paths: &[String], recursive: bool) -> (Vec<PathBuf>, Vec<String>, usize) {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut hidden = 0;
    for p in paths {
        let abs = cwd.join(p);
        match std::fs::metadata(&abs) {
            Ok(m) if m.is_dir() => walk(&abs, recursive, &mut files, &mut problems, &mut hidden),
            Ok(m) if m.is_file() => files.push(abs),
            Ok(_) => problems.push(format!("{p}: not a regular file or folder")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                problems.push(format!("{p}: no such file or folder"))
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                problems.push(format!("{p}: you may not read it"))
            }
            Err(e) => problems.push(format!("{p}: cannot look at it ({})", super::io_words(&e))),
        }
    }
    files.truncate(MAX_FILES);
    (files, problems, hidden)
}

fn walk(
    dir: &Path,
    recursive: bool,
    files: &mut Vec<PathBuf>,
    problems: &mut Vec<String>,
    hidden: &mut usize,
) {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) => {
            problems.push(format!(
                "{}: cannot list the folder ({})",
                dir.display(),
                super::io_words(&e)
            ));
            return;
        }
    };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for e in entries {
        if files.len() >= MAX_FILES {
            return;
        }
        if e.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            *hidden += 1;
            continue;
        }
        match std::fs::metadata(&e) {
            Ok(m) if m.is_file() => files.push(e),
            Ok(m) if m.is_dir() && recursive => walk(&e, recursive, files, problems, hidden),
            _ => {}
        }
    }
}

/// What became of one file.
enum Outcome {
    Shared(Value, Option<String>),
    Failed(Failure),
}

/// The named paths that are folders, absolute and without `.` parts.
fn folders(paths: &[String]) -> Vec<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    paths
        .iter()
        .map(|p| cwd.join(p).components().collect::<PathBuf>())
        .filter(|p| p.is_dir())
        .collect()
}

pub fn run(
    node: Option<&str>,
    paths: &[String],
    recursive: bool,
    force: bool,
    once: bool,
) -> Result<(), Failure> {
    let (api, _) = Api::logged_in(node)?;
    let (files, problems, hidden) = collect(paths, recursive);
    let follow = if once { Vec::new() } else { folders(paths) };
    let mut worst: Option<u8> = None;
    for p in &problems {
        eprintln!("p2pshare: {p}");
        note_worst(&mut worst, code::NOT_FOUND);
    }
    if hidden > 0 {
        println!("skipped {hidden} hidden file(s) or folder(s)");
    }
    if files.is_empty() && follow.is_empty() {
        return match worst {
            Some(c) => Err(Failure::new(c, "")),
            None => Err(Failure::error("nothing to share: no regular file there")),
        };
    }
    api.join_network()?;
    // Add them all first: the node hashes them meanwhile, on its workers.
    let mut added: Vec<(PathBuf, String)> = Vec::new();
    for f in &files {
        match api.ok("POST", "add-file", Some(&json!({"path": f}))) {
            Ok(v) => match v.pointer("/file/name").and_then(Value::as_str) {
                Some(n) => added.push((f.clone(), n.to_owned())),
                None => {
                    eprintln!("p2pshare: {}: the node did not name the file", f.display());
                    note_worst(&mut worst, code::ERROR);
                }
            },
            Err(e) if e.code == code::AUTH => return Err(e),
            Err(e) => {
                eprintln!("p2pshare: {}: {}", f.display(), e.msg);
                note_worst(&mut worst, code::ERROR);
            }
        }
    }
    for (path, name) in &added {
        match publish(&api, name, force) {
            Outcome::Shared(file, note) => {
                let size = file.get("size").and_then(Value::as_u64).unwrap_or(0);
                let sha: String = file
                    .get("sha256")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .chars()
                    .take(12)
                    .collect();
                println!(
                    "shared {name}  {}  sha256 {sha}  ({})",
                    bytes(size),
                    path.display()
                );
                if let Some(n) = note {
                    println!("  note: {}", api::without_os_numbers(&n));
                }
            }
            Outcome::Failed(e) if e.code == code::AUTH => return Err(e),
            Outcome::Failed(e) => {
                eprintln!("p2pshare: {name}: {}", e.msg);
                note_worst(&mut worst, e.code);
            }
        }
    }
    for dir in &follow {
        let body = json!({"path": dir, "recursive": recursive, "publish": true});
        match api.ok("POST", "add-folder", Some(&body)) {
            Ok(_) => println!(
                "following {0}: files added to it later are shared too; `p2pshare unshare {0}` stops",
                dir.display()
            ),
            Err(e) if e.code == code::AUTH => return Err(e),
            Err(e) => {
                eprintln!("p2pshare: {}: not followed: {}", dir.display(), e.msg);
                note_worst(&mut worst, code::ERROR);
            }
        }
    }
    match worst {
        Some(c) => Err(Failure::new(c, "")),
        None => Ok(()),
    }
}

/// Keeps the exit code of the worst outcome: not-found only when nothing
/// worse happened.
fn note_worst(worst: &mut Option<u8>, c: u8) {
    *worst = Some(match *worst {
        Some(w) if w != code::NOT_FOUND => w,
        _ => c,
    });
}

/// `/publish`, asked again while the node is still hashing the file.
fn publish(api: &Api, name: &str, force: bool) -> Outcome {
    let body = json!({"fname": name, "force": force});
    let mut said = false;
    let mut pause = Duration::from_millis(100);
    let started = Instant::now();
    loop {
        let (status, v) = match api.call("POST", "publish", Some(&body)) {
            Ok(x) => x,
            Err(f) => return Outcome::Failed(f),
        };
        if (200..300).contains(&status) {
            let file = v.get("file").cloned().unwrap_or(Value::Null);
            let note = v.get("note").and_then(Value::as_str).map(str::to_owned);
            return Outcome::Shared(file, note);
        }
        let hashing = v.get("hashing").and_then(Value::as_bool) == Some(true);
        let changing = v.get("changing").and_then(Value::as_bool) == Some(true);
        if status == 409 && hashing && !changing {
            if !said && started.elapsed() > Duration::from_secs(1) {
                println!("{name}: waiting for the node to hash it…");
                said = true;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
            continue;
        }
        if status == 409 && v.get("duplicates").is_some() {
            return Outcome::Failed(Failure::error(format!(
                "{} — run `p2pshare share --force` to share it anyway",
                api::error_text(status, &v)
                    .split("; publish with force")
                    .next()
                    .unwrap_or_default()
            )));
        }
        return Outcome::Failed(api::failure(status, &v));
    }
}
