//! README.md's "Share a file and fetch it" run as written: its shell code
//! blocks are taken out of the README and run with bash in a temporary
//! HOME, so a renamed flag, a changed message or a command that stops
//! working fails this test. Only what a test must change is changed, each
//! named where it happens below:
//!
//! - the README uses the fixed default ports (9000, 5500, 5501, and 5502 for
//!   Bob's node) and peer ports 6000–7000; tests never use fixed ports, so
//!   `up` runs on port 0 and the addresses it prints are put in their place;
//! - `cargo run --release -- up` is the built binary started the same way;
//! - `cd p2pshare` and `./target/release/p2pshare` find the built binary
//!   through a `p2pshare/target/release/p2pshare` link in the temp folder.

mod harness;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use harness::*;

/// The ```sh blocks of the README section headed `heading`, in order.
fn shell_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("README has no '## {heading}' section"));
    let section = &readme[start + 1..];
    let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in section[..end].lines() {
        match current.as_mut() {
            None if line.trim() == "```sh" => current = Some(String::new()),
            None => {}
            Some(_) if line.trim() == "```" => blocks.extend(current.take()),
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
        }
    }
    blocks
}

/// Replaces `from` by `to` in `text`, failing if the README no longer has it
/// (then this test's adaptation, not the README, needs changing).
fn adapt(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the README block no longer contains {from:?}:\n{text}"
    );
    text.replace(from, to)
}

/// Runs `script` with bash -e in `dir` with only `env` (and PATH), giving up
/// after a minute; returns stdout and stderr, panicking on failure.
fn run_block(name: &str, dir: &Path, script: &str, env: &[(&str, String)]) -> (String, String) {
    let mut cmd = Command::new("timeout");
    cmd.args(["60", "bash", "-e", "-o", "pipefail", "-c", script])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "{name} failed ({}):\n--- script\n{script}--- stdout\n{stdout}--- stderr\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

#[test]
fn the_readme_walk_through_works_as_pasted() {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let blocks = shell_blocks(&readme, "Share a file and fetch it");
    assert_eq!(
        blocks.len(),
        3,
        "expected three blocks (up, Alice, Bob): {blocks:?}"
    );
    assert_eq!(blocks[0].trim(), "cargo run --release -- up");

    // The temp folder is everyone's HOME (and so the default share root) and
    // holds the clone's place: `cd p2pshare` then `./target/release/p2pshare`.
    let tmp = tempfile::tempdir().expect("tempdir");
    let home = std::fs::canonicalize(tmp.path()).expect("canonical temp dir");
    let release = home.join("p2pshare").join("target").join("release");
    std::fs::create_dir_all(&release).expect("mkdir");
    std::os::unix::fs::symlink(bin(), release.join("p2pshare")).expect("link the binary");

    // First terminal: `cargo run --release -- up`, the built binary started
    // the same way from the clone, on port 0 in place of 9000/5500/5501, peer
    // ports free ones in place of 6000–7000, and loopback advertised (`up`
    // would advertise the LAN address).
    let up_env = [
        ("HOME", home.display().to_string()),
        ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
        ("P2PSHARE_LOG", "warn".to_string()),
    ];
    let up_args: Vec<String> = [
        "up",
        "--registry-port",
        "0",
        "--admin-api-port",
        "0",
        "--client-api-port",
        "0",
        "--port-range",
        "0-0",
        "--advertise-ip",
        "127.0.0.1",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([home
        .join("p2pshare")
        .join("p2pshare-data")
        .display()
        .to_string()])
    .collect();
    let mut up = Proc::spawn("up", &up_args, &up_env);
    let registry = reachable(&up.wait_line("registry listening on "));
    let admin = reachable(&up.wait_line("admin api listening on "));
    let client = reachable(&up.wait_line("client api listening on "));
    up.wait_line("p2pshare is up: open ");

    let env = |extra: Option<(&'static str, String)>| {
        let mut v = vec![
            ("HOME", home.display().to_string()),
            ("P2PSHARE_LOG", "warn".to_string()),
        ];
        v.extend(extra);
        v
    };

    // Second terminal: Alice, exactly as written. The CLI's default node is
    // 127.0.0.1:5501; `up` is on a port-0 address instead, given the way a
    // user would (docs/cli.md "Which node").
    let (alice_out, _) = run_block(
        "Alice's block",
        &home,
        &blocks[1],
        &env(Some(("P2PSHARE_NODE", client.to_string()))),
    );
    assert!(alice_out.contains("report.txt"), "{alice_out}");

    // Third terminal: Bob. His node names the coordinator it would find on
    // the default ports, takes port 0 for its client API in place of 5502
    // (and free peer ports), and the CLI is pointed at the address that node
    // printed in place of 127.0.0.1:5502. The README's "Stop Bob's node with
    // `kill %1`" ends the block; a trap does it if a command fails first.
    let bob = adapt(
        &blocks[2],
        "$P node --client-api-port 5502 ",
        &format!(
            "$P node --client-api-port 0 --port-range 0-0 --coordinator {registry} \
             --coordinator-api http://{admin} "
        ),
    );
    let bob = adapt(
        &bob,
        "P2PSHARE_NODE=127.0.0.1:5502",
        "P2PSHARE_NODE=$(sed -n 's|^client api listening on http://||p' ~/p2pshare-bob.log)",
    );
    let bob = format!("trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{bob}kill %1\n");
    let (bob_out, bob_err) = run_block("Bob's block", &home, &bob, &env(None));
    assert!(
        bob_out.contains("report.txt"),
        "ls shows the file: {bob_out}"
    );
    assert!(
        format!("{bob_out}{bob_err}").contains("saved"),
        "get ends with 'saved': {bob_out}{bob_err}"
    );
    let fetched = home.join("Downloads").join("report.txt");
    assert_eq!(
        std::fs::read_to_string(&fetched).expect("the fetched file"),
        "Quarterly numbers: up 12%\n"
    );
    // Bob's node was stopped by the block's `kill %1`.
    let log = home.join("p2pshare-bob.log");
    wait_until("Bob's node to stop", Duration::from_secs(10), || {
        let bob_api = std::fs::read_to_string(&log).ok()?.lines().find_map(|l| {
            l.strip_prefix("client api listening on http://")
                .map(str::to_owned)
        })?;
        std::net::TcpStream::connect(bob_api.trim())
            .is_err()
            .then_some(())
    });
}
