//! `p2pshare up | coordinator | node`: parse the configuration, run.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match p2pshare::cli::main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("p2pshare: {msg}");
            ExitCode::from(2)
        }
    }
}
