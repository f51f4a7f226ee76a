//! The command line's top level. `up`, `coordinator` and `node` (here):
//! configuration, logging, limits, and which services run on this process's
//! one reactor. `login`, `share`, `ls`, `get`, `status`, `unshare` and
//! `logout` ([`remote`]): the command line that talks to a running node's
//! client API over plain HTTP (`docs/cli.md`); it runs no reactor. `admin
//! reset-password` ([`remote`] too) writes the coordinator's secrets file.

mod admin;
mod api;
mod args;
mod commands;
mod creds;
mod get;
mod http;
mod progress;
mod share;
mod tty;

use std::process::ExitCode;

use crate::config::{self, Command, Config};
use crate::coordinator::Coordinator;
use crate::log;

/// Exit codes of the command line a script can rely on (`docs/cli.md`).
pub mod code {
    pub const OK: u8 = 0;
    /// Anything else that went wrong; the message says what.
    pub const ERROR: u8 = 1;
    /// The command line itself is wrong (unknown flag, missing argument).
    pub const USAGE: u8 = 2;
    /// Not logged in, or the node refused the saved login.
    pub const AUTH: u8 = 3;
    /// No such file (on the network, or among the user's shares).
    pub const NOT_FOUND: u8 = 4;
    /// Several different files carry that name; the choices are printed.
    pub const AMBIGUOUS: u8 = 5;
}

/// Why a command line command ended unsuccessfully: an exit code and a
/// sentence for people.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub msg: String,
}

impl Failure {
    pub fn new(code: u8, msg: impl Into<String>) -> Failure {
        Failure {
            code,
            msg: msg.into(),
        }
    }

    pub fn error(msg: impl Into<String>) -> Failure {
        Failure::new(code::ERROR, msg)
    }
}

/// An I/O error in words ("permission denied", "no storage space"),
/// without the OS error number its `Display` adds.
pub fn io_words(e: &std::io::Error) -> String {
    e.kind().to_string()
}

/// Runs `args` if they name a command of the remote command line (`login`,
/// `share`, ...); `None` leaves them to [`main`].
pub fn remote(args: &[String]) -> Option<ExitCode> {
    if let Some(code) = admin::run(args) {
        return Some(code);
    }
    let cmd = args::remote_command(args)?;
    let outcome = args::parse(cmd, args).and_then(commands::run);
    Some(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            if !f.msg.is_empty() {
                eprintln!("p2pshare: {}", f.msg);
            }
            ExitCode::from(f.code)
        }
    })
}

/// Runs the command given by `args` (without the program name).
pub fn main(args: &[String]) -> Result<(), String> {
    let cmd = config::load(args)?;
    let cfg = match &cmd {
        Command::Help(text) => {
            println!("{text}");
            println!(
                "\nThe command line (talks to a running node; see docs/cli.md and\n`p2pshare COMMAND --help`):\n{}",
                args::summary()
            );
            println!(
                "On the coordinator's machine:\n  p2pshare admin reset-password [--data-dir DIR] [--password-stdin]\n      set a new admin password (used from the coordinator's next start)"
            );
            return Ok(());
        }
        Command::Version => {
            println!("{}", config::version_text());
            return Ok(());
        }
        Command::Up(c) | Command::Coordinator(c) | Command::Node(c) => c,
    };
    setup(cfg)?;
    match cmd {
        Command::Coordinator(cfg) => Coordinator::run(cfg),
        Command::Node(cfg) => crate::up::run_node(cfg),
        Command::Up(cfg) => crate::up::run_up(cfg),
        Command::Help(_) | Command::Version => Ok(()),
    }
}

fn setup(cfg: &Config) -> Result<(), String> {
    let level = log::level_from_str(&cfg.log_level)
        .ok_or_else(|| format!("unknown log level '{}'", cfg.log_level))?;
    log::set_level(level);
    match reactor::limits::raise_nofile() {
        Ok((before, after)) => {
            crate::log_info!("open-file limit: {after} (was {before})");
            // Before any thread starts: growing the table later stalls the loop.
            if let Err(e) = reactor::limits::presize_fd_table(after) {
                crate::log_warn!("could not size the descriptor table ahead: {e}");
            }
        }
        Err(e) => crate::log_warn!("could not raise the open-file limit: {e}"),
    }
    Ok(())
}
