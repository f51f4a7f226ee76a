//! `p2pshare admin reset-password`: on the coordinator's machine, sets a new
//! admin password by writing its hash into `<data>/secrets.json`
//! (`docs/server-api.md`, "The admin password"). It talks to no process: a
//! running coordinator keeps the old password until its next start.

use std::process::ExitCode;

use super::{code, tty, Failure};
use crate::config::{self, Command};

const USAGE: &str = "usage: p2pshare admin reset-password [--data-dir DIR] [--password-stdin]

Sets a new admin password for the coordinator whose data directory is DIR
(--data-dir, else P2PSHARE_DATA, else ./p2pshare-data). The password is read
from the first line of stdin with --password-stdin, else taken from
ADMIN_PASSWORD, else asked for twice on the terminal with echo off.
A running coordinator uses the new password from its next start.";

/// Runs `args` if they start with `admin`; `None` leaves them to the others.
pub fn run(args: &[String]) -> Option<ExitCode> {
    if args.first().map(String::as_str) != Some("admin") {
        return None;
    }
    Some(match reset(&args[1..]) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.msg.is_empty() {
                eprintln!("p2pshare: {}", f.msg);
            }
            ExitCode::from(f.code)
        }
    })
}

fn usage_error(msg: &str) -> Failure {
    Failure::new(
        code::USAGE,
        format!("{msg}; see p2pshare admin reset-password --help"),
    )
}

fn reset(args: &[String]) -> Result<(), Failure> {
    match args.first().map(String::as_str) {
        Some("reset-password") => {}
        Some("--help" | "-h" | "help") | None => {
            println!("{USAGE}");
            return Ok(());
        }
        Some(other) => {
            return Err(usage_error(&format!(
                "unknown admin command '{other}' (the one there is: reset-password)"
            )))
        }
    }
    let mut from_stdin = false;
    let mut data_dir: Option<String> = None;
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_str();
        i += 1;
        match a {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--password-stdin" => from_stdin = true,
            "--data-dir" => match args.get(i) {
                Some(v) if !v.is_empty() && !v.starts_with("--") => {
                    data_dir = Some(v.clone());
                    i += 1;
                }
                _ => return Err(usage_error("--data-dir needs a folder")),
            },
            _ => match a.strip_prefix("--data-dir=") {
                Some(v) if !v.is_empty() => data_dir = Some(v.to_owned()),
                _ => return Err(usage_error(&format!("unexpected argument '{a}'"))),
            },
        }
    }
    // The coordinator's own settings (flag > environment > .env > default),
    // so the data directory and hashing cost are the ones it will use.
    let mut cfg_args = vec!["coordinator".to_string()];
    if let Some(d) = data_dir {
        cfg_args.extend(["--data-dir".to_string(), d]);
    }
    let cfg = match config::load(&cfg_args).map_err(|e| Failure::new(code::USAGE, e))? {
        Command::Coordinator(c) => c,
        _ => return Err(Failure::error("cannot read the coordinator's settings")),
    };
    let env_password = cfg.admin_password.clone().filter(|p| !p.is_empty());
    let password = read_new_password(from_stdin, env_password.as_deref())?;
    if password.chars().count() < 8 {
        return Err(Failure::new(
            code::USAGE,
            "the new admin password is too short: use at least 8 characters",
        ));
    }
    let hash = crate::auth::password::hash_password(&password, cfg.pbkdf2_iterations)
        .map_err(|e| Failure::error(format!("cannot hash the new password: {e}")))?;
    let file = crate::coordinator::secrets::store_admin_password_hash(&cfg.data_dir, &hash)
        .map_err(Failure::error)?;
    println!(
        "The admin password of '{}' is reset; its hash is kept in {} (mode 0600).",
        cfg.admin_username,
        file.display()
    );
    println!(
        "A coordinator already running on this data directory keeps the old password until it restarts; its next start uses the new one."
    );
    if from_stdin && env_password.is_some() {
        println!(
            "ADMIN_PASSWORD is set here: a coordinator started with it uses that password instead of the stored one."
        );
    }
    Ok(())
}

/// `--password-stdin`, else `ADMIN_PASSWORD`, else asked twice on a terminal;
/// with none of them, a usage error and nothing written.
fn read_new_password(from_stdin: bool, env: Option<&str>) -> Result<String, Failure> {
    let read_err = |e: std::io::Error| {
        Failure::error(format!("cannot read the password: {}", super::io_words(&e)))
    };
    let pw = if from_stdin {
        tty::read_line().map_err(read_err)?
    } else if let Some(p) = env {
        p.to_owned()
    } else if tty::stdin_is_tty() {
        let p = tty::read_hidden("new admin password: ").map_err(read_err)?;
        let again = tty::read_hidden("new admin password again: ").map_err(read_err)?;
        if again != p {
            return Err(Failure::error(
                "the two passwords differ; nothing was changed",
            ));
        }
        p
    } else {
        return Err(Failure::new(
            code::USAGE,
            "no password: stdin is not a terminal, so pass --password-stdin (and pipe it in) or set ADMIN_PASSWORD; nothing was changed",
        ));
    };
    if pw.is_empty() {
        return Err(Failure::new(
            code::USAGE,
            "the new admin password is empty; nothing was changed",
        ));
    }
    Ok(pw)
}
