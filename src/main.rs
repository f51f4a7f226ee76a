//! `p2pshare up | coordinator | node`: parse the configuration, run; the
//! command line's `login | share | ls | get | status | unshare | logout`
//! talk to a running node (`docs/cli.md`).

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(code) = p2pshare::cli::remote(&args) {
        return code;
    }
    match p2pshare::cli::main(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("p2pshare: {msg}");
            ExitCode::from(2)
        }
    }
}
