//! The command line's top level: configuration, logging, limits, and which
//! services run on this process's one reactor.

use crate::config::{self, Command, Config};
use crate::coordinator::Coordinator;
use crate::log;

/// Runs the command given by `args` (without the program name).
pub fn main(args: &[String]) -> Result<(), String> {
    let cmd = config::load(args)?;
    let cfg = match &cmd {
        Command::Help(text) => {
            println!("{text}");
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
        Ok((before, after)) => crate::log_info!("open-file limit: {after} (was {before})"),
        Err(e) => crate::log_warn!("could not raise the open-file limit: {e}"),
    }
    Ok(())
}
