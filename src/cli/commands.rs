//! The remote command line's commands (`docs/cli.md`) but `share` and
//! `get`, which have modules of their own: `login`, `logout`, `status`,
//! `ls`, `unshare`. Each prints for people on stdout and returns a
//! [`Failure`] (an exit code and a sentence) when it did not succeed.

use std::path::PathBuf;

use serde_json::{json, Value};

use super::api::{self, Api};
use super::args::{Cmd, Invocation};
use super::creds::{self, Creds};
use super::progress::bytes;
use super::{code, tty, Failure};

/// Runs one parsed command line.
pub fn run(inv: Invocation) -> Result<(), Failure> {
    let node = inv.node.as_deref();
    match inv.cmd {
        Cmd::Help(text) => {
            println!("{text}");
            Ok(())
        }
        Cmd::Login {
            username,
            password_stdin,
            register,
            display_name,
        } => login(node, username, password_stdin, register, display_name),
        Cmd::Logout => logout(node),
        Cmd::Status => status(node),
        Cmd::Ls { query } => ls(node, query.as_deref()),
        Cmd::Unshare { names, forget } => unshare(node, &names, forget),
        Cmd::Share {
            paths,
            recursive,
            force,
            once,
        } => super::share::run(node, &paths, recursive, force, once),
        Cmd::Get {
            what,
            to,
            overwrite,
            no_share,
        } => super::get::run(node, &what, to.as_deref(), overwrite, !no_share),
    }
}

fn login(
    node: Option<&str>,
    username: Option<String>,
    password_stdin: bool,
    register: bool,
    display_name: Option<String>,
) -> Result<(), Failure> {
    let username = match username {
        Some(u) => u,
        None if tty::stdin_is_tty() && !password_stdin => {
            eprint!("username: ");
            tty::read_line().map_err(|e| {
                Failure::error(format!("cannot read the username: {}", super::io_words(&e)))
            })?
        }
        None => {
            return Err(Failure::new(
                code::USAGE,
                "name the user: `p2pshare login USERNAME`",
            ))
        }
    };
    let username = username.trim().to_owned();
    if username.is_empty() {
        return Err(Failure::new(code::USAGE, "the username is empty"));
    }
    let password = read_password(password_stdin, register)?;
    // A saved login for another node does not choose this one: only --node,
    // P2PSHARE_NODE or the default do.
    let ep = api::resolve_node(node, None)?;
    let api = Api { ep, token: None };
    let (path, body) = if register {
        let display = display_name.unwrap_or_else(|| username.clone());
        (
            "register",
            json!({"username": username, "password": password, "display_name": display}),
        )
    } else {
        ("login", json!({"username": username, "password": password}))
    };
    let (status, v) = api.call("POST", path, Some(&body))?;
    if !(200..300).contains(&status) {
        let text = api::error_text(status, &v);
        let c = if status == 401 {
            code::AUTH
        } else {
            code::ERROR
        };
        let what = if register { "register" } else { "log in" };
        return Err(Failure::new(
            c,
            format!("could not {what} as {username}: {text}"),
        ));
    }
    let Some(token) = v.get("token").and_then(Value::as_str) else {
        return Err(Failure::error("the node answered without a token"));
    };
    let c = Creds {
        node: api.ep.authority(),
        username: username.clone(),
        token: token.to_owned(),
    };
    let saved = creds::save(&c).map_err(Failure::error)?;
    let api = Api {
        ep: api.ep,
        token: Some(c.token),
    };
    if register {
        println!("registered {username}");
    }
    println!(
        "logged in as {username} on the node at {} (login saved in {})",
        api.ep.authority(),
        saved.display()
    );
    let info = api.join_network().map_err(|f| Failure {
        msg: format!("logged in, but could not join the network: {}", f.msg),
        ..f
    })?;
    match info.pointer("/client/port").and_then(Value::as_u64) {
        Some(p) => println!("on the network, serving your shared files on port {p}"),
        None => println!("on the network"),
    }
    Ok(())
}

/// `--password-stdin`, else `P2PSHARE_PASSWORD`, else a prompt on a terminal.
fn read_password(from_stdin: bool, register: bool) -> Result<String, Failure> {
    let read_err = |e: std::io::Error| {
        Failure::error(format!("cannot read the password: {}", super::io_words(&e)))
    };
    let pw = if from_stdin {
        tty::read_line().map_err(read_err)?
    } else if let Some(p) = std::env::var("P2PSHARE_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        p
    } else if tty::stdin_is_tty() {
        let p = tty::read_hidden("password: ").map_err(read_err)?;
        if register {
            let again = tty::read_hidden("password again: ").map_err(read_err)?;
            if again != p {
                return Err(Failure::error("the two passwords differ"));
            }
        }
        p
    } else {
        return Err(Failure::new(
            code::USAGE,
            "no password: stdin is not a terminal, so pass --password-stdin (and pipe it in) or set P2PSHARE_PASSWORD",
        ));
    };
    if pw.is_empty() {
        return Err(Failure::new(code::USAGE, "the password is empty"));
    }
    Ok(pw)
}

fn logout(node: Option<&str>) -> Result<(), Failure> {
    let (api, c) = Api::logged_in(node)?;
    let outcome = api.call("POST", "logout", Some(&json!({})));
    // Forgotten here whatever the node says: a login the user asked to end
    // must not linger in the file.
    let removed = creds::remove().map_err(Failure::error)?;
    match outcome {
        Ok((s, v)) if (200..300).contains(&s) => {
            println!(
                "logged out {} from the node at {}",
                c.username,
                api.ep.authority()
            );
            if let Some(n) = v.get("note").and_then(Value::as_str) {
                println!("note: {}", api::without_os_numbers(n));
            }
            Ok(())
        }
        // The token is no longer good there: logged out either way.
        Ok((401, _)) => {
            println!(
                "logged out {} (the node had already ended that login)",
                c.username
            );
            Ok(())
        }
        Ok((s, v)) => Err(Failure::error(format!(
            "the saved login is forgotten{}, but the node answered: {}",
            if removed { "" } else { " (there was none)" },
            api::error_text(s, &v)
        ))),
        Err(f) => Err(Failure {
            msg: format!("the saved login is forgotten, but {}", f.msg),
            ..f
        }),
    }
}

fn status(node: Option<&str>) -> Result<(), Failure> {
    let (api, _) = Api::logged_in(node)?;
    let v = api.ok("GET", "status", None)?;
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let n = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let user = s("/username");
    let display = s("/display_name");
    if display.is_empty() || display == user {
        println!("user         {user}");
    } else {
        println!("user         {user} ({display})");
    }
    println!("node         {}", api.ep.url());
    let coordinator = s("/coordinator/address");
    let network = if v.get("initialized").and_then(Value::as_bool) != Some(true) {
        "not joined — `p2pshare login` (or share, ls, get) joins it".to_owned()
    } else {
        match s("/coordinator/state").as_str() {
            "connected" => format!(
                "connected to {coordinator}, serving on port {}",
                n("/peer_port")
            ),
            state => {
                let mut t = format!("{state} to {coordinator}");
                if let Some(r) = v.pointer("/coordinator/retry_in_s").and_then(Value::as_f64) {
                    t.push_str(&format!(", next try in {r:.1} s"));
                }
                let e = api::without_os_numbers(&s("/coordinator/last_error"));
                if !e.is_empty() {
                    t.push_str(&format!(" ({e})"));
                }
                t
            }
        }
    };
    println!("network      {network}");
    println!(
        "files        {} tracked, {} shared",
        n("/counts/local_files"),
        n("/counts/published_files")
    );
    println!(
        "transfers    {} download(s) running, {} upload(s)",
        n("/counts/active_fetches"),
        n("/counts/uploads")
    );
    followed_folders(&api)?;
    if n("/counts/local_files") > 0 {
        your_files(&api)?;
    }
    if n("/counts/active_fetches") > 0 {
        let f = api.ok("GET", "fetches", None)?;
        for x in f
            .get("fetches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let snap = super::progress::Snapshot::from_json(x);
            if !snap.is_final() {
                println!("  {}", super::progress::plain_line(&snap));
            }
        }
    }
    Ok(())
}

/// How many of the user's files `status` lists.
const STATUS_FILES: usize = 20;

/// The user's tracked files, one line each, and a notice for those that
/// changed or vanished on disk (the node stops offering them).
fn your_files(api: &Api) -> Result<(), Failure> {
    let v = api.ok("GET", "local-files", None)?;
    let files = v
        .get("files")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    println!("your files");
    for f in files.iter().take(STATUS_FILES) {
        let name = f.get("name").and_then(Value::as_str).unwrap_or("?");
        let path = f.get("path").and_then(Value::as_str).unwrap_or("?");
        let shared = f.get("is_published").and_then(Value::as_bool) == Some(true);
        let state = match f.get("status").and_then(Value::as_str) {
            Some("missing") => format!("missing from disk ({path}): no longer offered"),
            Some("changed") => {
                "changed on disk: no longer offered; share it again once it is hashed".to_owned()
            }
            _ if f.get("hashing").and_then(Value::as_bool) == Some(true) => {
                "being hashed".to_owned()
            }
            _ if shared => "shared".to_owned(),
            _ => "tracked, not shared".to_owned(),
        };
        println!(
            "  {name}  {}  {state}",
            bytes(f.get("size").and_then(Value::as_u64).unwrap_or(0))
        );
    }
    if files.len() > STATUS_FILES {
        println!("  … and {} more", files.len() - STATUS_FILES);
    }
    Ok(())
}

/// Every page of `network-files` for `query` (the node serves up to 1000 a
/// page), up to `cap` rows.
pub fn network_files(api: &Api, query: &str, cap: usize) -> Result<Vec<Value>, Failure> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        let path = format!(
            "network-files?q={}&offset={offset}&limit=1000",
            percent_encode(query)
        );
        let v = api.ok_linked("GET", &path, None)?;
        let files = v
            .get("files")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let got = files.len();
        out.extend(files);
        match v.get("next_offset").and_then(Value::as_u64) {
            Some(next) if got > 0 && out.len() < cap => offset = next as usize,
            _ => break,
        }
    }
    out.truncate(cap);
    Ok(out)
}

fn percent_encode(s: &str) -> String {
    let mut o = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// Host names of a network file, online ones first, at most three shown.
pub fn hosts_text(f: &Value) -> String {
    let hosts: Vec<&Value> = f
        .get("hosts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .collect();
    let names: Vec<String> = hosts
        .iter()
        .map(|h| {
            let n = h.get("hostname").and_then(Value::as_str).unwrap_or("?");
            if h.get("online").and_then(Value::as_bool) == Some(false) {
                format!("{n} (offline)")
            } else {
                n.to_owned()
            }
        })
        .collect();
    if names.len() > 3 {
        format!("{} +{}", names[..3].join(","), names.len() - 3)
    } else if names.is_empty() {
        "-".into()
    } else {
        names.join(",")
    }
}

fn ls(node: Option<&str>, query: Option<&str>) -> Result<(), Failure> {
    let (api, _) = Api::logged_in(node)?;
    api.join_network()?;
    let files = network_files(&api, query.unwrap_or(""), 100_000)?;
    if files.is_empty() {
        match query {
            Some(q) => println!("no file on the network matches '{q}'"),
            None => println!("no file on the network yet"),
        }
        return Ok(());
    }
    let rows: Vec<[String; 4]> = files
        .iter()
        .map(|f| {
            let sha = f.get("sha256").and_then(Value::as_str).unwrap_or("-");
            [
                f.get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
                    .to_owned(),
                bytes(f.get("size").and_then(Value::as_u64).unwrap_or(0)),
                hosts_text(f),
                sha.chars().take(12).collect(),
            ]
        })
        .collect();
    let head = ["NAME", "SIZE", "HOSTS", "SHA256"].map(str::to_owned);
    let mut w = [0usize; 4];
    for r in std::iter::once(&head).chain(rows.iter()) {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    for r in std::iter::once(&head).chain(rows.iter()) {
        println!(
            "{:<a$}  {:>b$}  {:<c$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            a = w[0],
            b = w[1],
            c = w[2]
        );
    }
    Ok(())
}

/// A followed folder's path (absolute), when `arg` names a folder rather
/// than a shared file: file names never hold a `/`.
fn folder_arg(arg: &str) -> Option<PathBuf> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let abs: PathBuf = cwd.join(arg).components().collect();
    (arg.contains('/') || abs.is_dir()).then_some(abs)
}

fn unshare(node: Option<&str>, names: &[String], forget: bool) -> Result<(), Failure> {
    let (api, _) = Api::logged_in(node)?;
    let mut worst: Option<Failure> = None;
    for name in names {
        if let Some(dir) = folder_arg(name) {
            let body = json!({"path": dir, "remove_files": forget});
            match api.ok("POST", "remove-folder", Some(&body)) {
                Ok(v) => {
                    let kept = v.get("kept").and_then(Value::as_u64).unwrap_or(0);
                    let removed = v.get("removed").and_then(Value::as_u64).unwrap_or(0);
                    if forget {
                        println!("stopped following {}; {removed} file(s) from it unshared and no longer tracked", dir.display());
                    } else {
                        println!("stopped following {}; its {kept} file(s) stay shared (`p2pshare unshare NAME` for each)", dir.display());
                    }
                }
                Err(f) if f.code == code::AUTH => return Err(f),
                Err(f) => {
                    eprintln!("p2pshare: {}: {}", dir.display(), f.msg);
                    worst = Some(Failure {
                        msg: String::new(),
                        ..f
                    });
                }
            }
            continue;
        }
        let path = if forget { "remove-file" } else { "unpublish" };
        match api.ok("POST", path, Some(&json!({"fname": name}))) {
            Ok(v) => {
                if forget {
                    println!("unshared {name} and stopped tracking it");
                } else {
                    println!("unshared {name}");
                }
                if let Some(n) = v.get("note").and_then(Value::as_str) {
                    println!("  note: {}", api::without_os_numbers(n));
                }
            }
            Err(f) if f.code == code::AUTH => return Err(f),
            Err(f) => {
                let msg = if f.code == code::NOT_FOUND {
                    format!("{name}: not among your files (see `p2pshare status`)")
                } else {
                    format!("{name}: {}", f.msg)
                };
                eprintln!("p2pshare: {msg}");
                worst = Some(Failure {
                    msg: String::new(),
                    ..f
                });
            }
        }
    }
    match worst {
        Some(f) => Err(f),
        None => Ok(()),
    }
}

/// `status`'s lines for followed folders: path, files, last scan, and
/// what was not followed (name collisions, unreadable entries, the cap).
fn followed_folders(api: &Api) -> Result<(), Failure> {
    let v = api.ok("GET", "folders", None)?;
    let list = v
        .get("folders")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        return Ok(());
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    println!(
        "following    {} folder(s); files added to them are shared too",
        list.len()
    );
    for d in &list {
        let path = d.get("path").and_then(Value::as_str).unwrap_or("?");
        let files = d.get("files").and_then(Value::as_u64).unwrap_or(0);
        let scan = match d.get("last_scan").and_then(Value::as_f64) {
            Some(t) => format!("looked {:.0} s ago", (now - t).max(0.0)),
            None => "not looked at yet".to_owned(),
        };
        let sub = if d.get("recursive").and_then(Value::as_bool) == Some(true) {
            ", with sub-folders"
        } else {
            ""
        };
        println!("  {path}  {files} file(s){sub}, {scan}");
        for s in d
            .get("skipped")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .take(10)
        {
            println!(
                "    not shared: {}: {}",
                s.get("path").and_then(Value::as_str).unwrap_or("?"),
                s.get("reason").and_then(Value::as_str).unwrap_or("?")
            );
        }
    }
    Ok(())
}
