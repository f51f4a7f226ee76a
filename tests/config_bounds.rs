//! Settings a user or a `.env` file can get wrong end the process with one
//! line and exit code 2 — never a panic (exit 101), never a process that
//! starts with a nonsense value (a token lifetime that wraps so every token
//! is born expired).

use std::process::{Command, Stdio};

fn run(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_p2pshare"));
    cmd.args(args)
        .args(["--data-dir", &tmp.path().join("d").display().to_string()])
        .current_dir(tmp.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run p2pshare");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_one_line_error(args: &[&str], env: &[(&str, &str)], mentions: &str) {
    let (code, err) = run(args, env);
    assert_eq!(code, 2, "{args:?} {env:?}: exit {code}, stderr {err}");
    assert_eq!(err.lines().count(), 1, "one line, got: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(mentions), "{err} should mention {mentions}");
}

#[test]
fn a_cleanup_interval_of_1e300_is_a_one_line_error_not_a_panic() {
    assert_one_line_error(
        &[
            "coordinator",
            "--registry-port",
            "0",
            "--admin-api-port",
            "0",
        ],
        &[("CLIENT_CLEANUP_INTERVAL", "1e300")],
        "at most one year",
    );
}

#[test]
fn a_heartbeat_of_1e300_is_a_one_line_error_not_a_panic() {
    assert_one_line_error(
        &[
            "node",
            "--client-api-port",
            "0",
            "--heartbeat-idle",
            "1e300",
        ],
        &[],
        "at most one year",
    );
}

#[test]
fn a_session_timeout_that_would_wrap_is_refused() {
    assert_one_line_error(
        &[
            "coordinator",
            "--registry-port",
            "0",
            "--admin-api-port",
            "0",
        ],
        &[("SESSION_TIMEOUT", "18446744073709551615")],
        "30 days",
    );
}

#[test]
fn a_client_api_on_the_lan_needs_allowed_hosts() {
    assert_one_line_error(
        &[
            "node",
            "--client-api-port",
            "0",
            "--client-api-host",
            "0.0.0.0",
        ],
        &[],
        "--allowed-hosts",
    );
}
