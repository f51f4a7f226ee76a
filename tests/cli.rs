//! The command line (`docs/cli.md`) against real processes: a coordinator
//! and nodes on port 0, the real `p2pshare` binary as the CLI with its own
//! config folder, no terminal (stdin null or a pipe, stdout a pipe). Also
//! the node's reconnect within 2 s of a restarted coordinator.

mod harness;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::Value;

/// One person at a terminal-less shell: a home and config folder of their own.
struct Shell {
    home: tempfile::TempDir,
    node: String,
}

impl Shell {
    fn new(node: &Node) -> Shell {
        Shell {
            home: tempfile::tempdir().expect("tempdir"),
            node: node.api.to_string(),
        }
    }

    fn config(&self) -> PathBuf {
        self.home.path().join("config")
    }

    fn creds(&self) -> PathBuf {
        self.config().join("p2pshare").join("credentials.json")
    }

    /// `p2pshare <args> --node <node>` with `stdin` piped in (or none).
    fn run(&self, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Out {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .args(["--node", &self.node])
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.config())
            .env_remove("P2PSHARE_NODE")
            .env_remove("P2PSHARE_PASSWORD")
            .current_dir(self.home.path());
        Out(run_to_end(&mut cmd, stdin, env))
    }

    /// Registers `user` and logs in (password piped on stdin).
    fn register(&self, user: &str) -> Out {
        let o = self.run(
            &["login", user, "--register", "--password-stdin"],
            Some(&format!("{PASSWORD}\n")),
            &[],
        );
        assert_eq!(o.code(), 0, "register {user}: {o:?}");
        o
    }

    fn token(&self) -> String {
        let text = std::fs::read_to_string(self.creds()).expect("credentials");
        let v: Value = serde_json::from_str(&text).expect("credentials JSON");
        v["token"].as_str().expect("token").to_owned()
    }
}

struct Out(Output);

impl Out {
    fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
}

impl std::fmt::Debug for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code(),
            self.stdout(),
            self.stderr()
        )
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

/// Runs `ls` until its output mentions `what` (publishing reaches other
/// nodes' views within a moment, not at once).
fn ls_until(sh: &Shell, args: &[&str], what: &str) -> String {
    wait_for(&format!("`ls` to show {what}"), || {
        let o = sh.run(args, None, &[]);
        assert_eq!(o.code(), 0, "{o:?}");
        o.stdout().contains(what).then(|| o.stdout())
    })
}

#[test]
fn share_ls_get_status_unshare_and_logout_through_the_command_line() {
    let coord = Coordinator::start();
    let n1 = Node::start(&coord);
    let n2 = Node::start(&coord);
    let alice = Shell::new(&n1);
    let bob = Shell::new(&n2);

    let o = alice.register("alice");
    assert!(o.stdout().contains("logged in as alice"), "{o:?}");
    assert!(o.stdout().contains("on the network"), "{o:?}");
    // The token is kept for alice alone.
    assert_eq!(mode(&alice.creds()), 0o600);
    assert_eq!(mode(&alice.config().join("p2pshare")), 0o700);

    let o = alice.run(&["status"], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
    assert!(o.stdout().contains("alice"), "{o:?}");
    assert!(o.stdout().contains("connected to"), "{o:?}");

    // A folder: its regular files are shared, the hidden one skipped.
    let dir = tempfile::tempdir().expect("tempdir");
    let content = pattern(3 << 20, 7);
    std::fs::write(dir.path().join("report.bin"), &content).expect("write");
    std::fs::write(dir.path().join("notes.txt"), b"small notes").expect("write");
    std::fs::write(dir.path().join(".secret"), b"hidden").expect("write");
    let o = alice.run(&["share", &dir.path().display().to_string()], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
    assert!(o.stdout().contains("shared report.bin"), "{o:?}");
    assert!(o.stdout().contains("shared notes.txt"), "{o:?}");
    assert!(o.stdout().contains("skipped 1 hidden"), "{o:?}");
    let o = alice.run(&["status"], None, &[]);
    assert!(o.stdout().contains("2 tracked, 2 shared"), "{o:?}");
    assert!(
        o.stdout()
            .lines()
            .any(|l| l.contains("report.bin") && l.ends_with("shared")),
        "{o:?}"
    );

    // Bob logs in with the password in the environment, and sees them.
    let o = bob.run(
        &["login", "bob", "--register"],
        None,
        &[("P2PSHARE_PASSWORD", PASSWORD)],
    );
    assert_eq!(o.code(), 0, "{o:?}");
    // A wrong password: exit 3, the login kept as it was.
    let before = std::fs::read(bob.creds()).expect("credentials");
    let o = bob.run(
        &["login", "bob", "--password-stdin"],
        Some("not the password\n"),
        &[],
    );
    assert_eq!(o.code(), 3, "{o:?}");
    assert!(o.stderr().contains("could not log in as bob"), "{o:?}");
    assert_eq!(std::fs::read(bob.creds()).expect("credentials"), before);
    let listing = ls_until(&bob, &["ls", "report"], "report.bin");
    let sha = sha256_hex(&content);
    assert!(listing.contains(&sha[..12]), "{listing}");
    assert!(listing.contains("alice"), "{listing}");
    assert!(listing.contains("3.0 MiB"), "{listing}");
    assert!(
        !listing.contains("notes.txt"),
        "the query filters: {listing}"
    );

    // get by name into a folder: exit 0, the same bytes, progress as lines.
    let into = tempfile::tempdir().expect("tempdir");
    let to = into.path().join("fresh");
    let o = bob.run(
        // Kept private: the unshare below must take it off the network.
        &[
            "get",
            "report.bin",
            "--to",
            &to.display().to_string(),
            "--no-share",
        ],
        None,
        &[],
    );
    assert_eq!(o.code(), 0, "{o:?}");
    assert_eq!(
        std::fs::read(to.join("report.bin")).expect("downloaded"),
        content
    );
    let out = o.stdout();
    assert!(
        out.lines().any(|l| l.starts_with("report.bin ")
            && l.contains("100.0%")
            && l.contains("3.0 MiB/3.0 MiB")
            && l.ends_with("completed")),
        "a final progress line: {o:?}"
    );
    assert!(
        !out.contains('\r') && !out.contains('\x1b'),
        "no terminal codes on a pipe: {o:?}"
    );
    assert!(
        out.contains(&format!("saved {}", to.join("report.bin").display())),
        "{o:?}"
    );

    // Again: the file is there, and is not replaced without --overwrite.
    let o = bob.run(
        &["get", "report.bin", "--to", &to.display().to_string()],
        None,
        &[],
    );
    assert_eq!(o.code(), 1, "{o:?}");
    assert!(o.stderr().contains("--overwrite"), "{o:?}");

    // An unknown name: exit 4, said plainly.
    let o = bob.run(&["get", "no-such-file.iso"], None, &[]);
    assert_eq!(o.code(), 4, "{o:?}");
    assert!(o.stderr().contains("no-such-file.iso"), "{o:?}");
    assert!(!o.stderr().contains("os error"), "{o:?}");

    // Two contents under one name: exit 5 with the choices; a SHA-256 prefix picks one.
    let carol = Shell::new(&n1);
    carol.register("carol");
    let cdir = tempfile::tempdir().expect("tempdir");
    std::fs::write(cdir.path().join("notes.txt"), b"carol's other notes").expect("write");
    let o = carol.run(
        &[
            "share",
            &cdir.path().join("notes.txt").display().to_string(),
        ],
        None,
        &[],
    );
    assert_eq!(o.code(), 0, "{o:?}");
    let carols = sha256_hex(b"carol's other notes");
    ls_until(&bob, &["ls", "notes"], &carols[..12]);
    let o = bob.run(
        &[
            "get",
            "notes.txt",
            "--to",
            &into.path().display().to_string(),
        ],
        None,
        &[],
    );
    assert_eq!(o.code(), 5, "{o:?}");
    assert!(o.stdout().contains(&carols), "the choices: {o:?}");
    assert!(
        o.stdout().contains(&sha256_hex(b"small notes")),
        "the choices: {o:?}"
    );
    let o = bob.run(
        &[
            "get",
            &carols[..10],
            "--to",
            &into.path().display().to_string(),
        ],
        None,
        &[],
    );
    assert_eq!(o.code(), 0, "{o:?}");
    assert_eq!(
        std::fs::read(into.path().join("notes.txt")).expect("downloaded"),
        b"carol's other notes"
    );

    // unshare: gone from the network; an unknown name is exit 4.
    let o = alice.run(&["unshare", "report.bin"], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
    // Bob shares what he fetched (the default), so report.bin stays on the
    // network from him; alice no longer offers it.
    wait_for("alice's report.bin to leave bob's view", || {
        let o = bob.run(&["ls", "report"], None, &[]);
        (o.code() == 0 && !o.stdout().contains("alice")).then_some(())
    });
    let o = alice.run(&["unshare", "never-shared.txt"], None, &[]);
    assert_eq!(o.code(), 4, "{o:?}");

    // logout forgets the login; then commands say so with exit 3.
    let o = alice.run(&["logout"], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
    assert!(!alice.creds().exists());
    let o = alice.run(&["status"], None, &[]);
    assert_eq!(o.code(), 3, "{o:?}");
}

#[test]
fn errors_have_their_own_exit_codes_and_human_words() {
    let home = tempfile::tempdir().expect("tempdir");
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .env("HOME", home.path())
            .env("XDG_CONFIG_HOME", home.path().join("config"))
            .env_remove("P2PSHARE_NODE")
            .env_remove("P2PSHARE_PASSWORD")
            .current_dir(home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn");
        if let Some(t) = stdin {
            let _ = child.stdin.take().expect("stdin").write_all(t.as_bytes());
        }
        Out(child.wait_with_output().expect("output"))
    };
    let node = format!("127.0.0.1:{port}");

    // Not logged in: 3, whatever the command.
    for cmd in [&["status"][..], &["ls"], &["get", "x"], &["share", "/tmp"]] {
        let o = run(cmd, None);
        assert_eq!(o.code(), 3, "{cmd:?}: {o:?}");
        assert!(o.stderr().contains("not logged in"), "{o:?}");
    }

    // A login file others may read is refused: its token may have leaked.
    let dir = home.path().join("config").join("p2pshare");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let file = dir.join("credentials.json");
    std::fs::write(
        &file,
        br#"{"node":"127.0.0.1:1","username":"x","token":"t"}"#,
    )
    .expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let o = run(&["status"], None);
    assert_eq!(o.code(), 3, "{o:?}");
    assert!(o.stderr().contains("can be read by other users"), "{o:?}");
    std::fs::remove_file(&file).expect("rm");

    // No node there: 1, and a sentence that says what to do.
    let o = run(
        &["login", "alice", "--password-stdin", "--node", &node],
        Some("pw-12345678\n"),
    );
    assert_eq!(o.code(), 1, "{o:?}");
    assert!(
        o.stderr().contains(&format!(
            "node is not running at {node} — start it with `p2pshare up`"
        )),
        "{o:?}"
    );
    assert!(!o.stderr().contains("os error"), "{o:?}");

    // Something else answers there (the coordinator's port by mistake).
    let coord = Coordinator::start();
    let wrong = coord.api.to_string();
    let o = run(
        &["login", "alice", "--password-stdin", "--node", &wrong],
        Some("pw-12345678\n"),
    );
    assert_eq!(o.code(), 1, "{o:?}");
    assert!(
        o.stderr().contains("is not a p2pshare node's client API"),
        "{o:?}"
    );

    // No password and no terminal: a usage error, nothing sent.
    let o = run(&["login", "alice", "--node", &node], None);
    assert_eq!(o.code(), 2, "{o:?}");
    assert!(o.stderr().contains("--password-stdin"), "{o:?}");

    // Usage mistakes: 2.
    for bad in [&["get"][..], &["ls", "--bogus"], &["share"]] {
        let o = run(bad, None);
        assert_eq!(o.code(), 2, "{bad:?}: {o:?}");
        assert!(o.stderr().contains("--help"), "{o:?}");
    }
}

/// The registry port of a restarted coordinator is the one it had: nodes
/// keep their `--coordinator` address.
#[test]
fn a_node_registers_again_within_two_seconds_of_its_coordinator_coming_back() {
    let mut coord = Coordinator::start();
    let n = Node::start(&coord);
    let alice = Shell::new(&n);
    alice.register("alice");
    let token = alice.token();
    let (reg, api, data) = (coord.registry, coord.api, coord.data.clone());

    coord.kill();
    wait_for("the node to notice the coordinator is gone", || {
        let (_, v) = n.call("GET", "/api/client/status", Some(&token), None);
        (v["coordinator"]["state"] == "reconnecting").then_some(())
    });
    // Down until the backoff has grown to its cap (1.5 s, jittered down to
    // no less than 1.125 s): the worst case for coming back.
    wait_for("the backoff at its cap", || {
        let (_, v) = n.call("GET", "/api/client/status", Some(&token), None);
        (v["coordinator"]["retry_in_s"].as_f64()? > 1.1).then_some(())
    });

    let back = Coordinator::start_in(
        &data,
        &[
            "--registry-port",
            &reg.port().to_string(),
            "--admin-api-port",
            &api.port().to_string(),
        ],
        &[],
    );
    assert_eq!((back.registry, back.api), (reg, api));
    let up_at = Instant::now();
    let admin = back.admin_token();
    // The bound is 1.75 s (the capped backoff plus a cron tick) and a
    // REGISTER; the rest is slack for a loaded machine running tests in parallel.
    wait_until("alice registered again", Duration::from_secs(3), || {
        let (s, v) = back.call("GET", "/api/admin/registry", Some(&admin), None);
        assert_eq!(s, 200, "{v}");
        v["clients"]
            .as_array()?
            .iter()
            .any(|c| c["hostname"] == "alice" && c["status"] == "online")
            .then_some(())
    });
    eprintln!(
        "re-registered {:?} after the coordinator came back",
        up_at.elapsed()
    );

    // And the command line works at once.
    let o = alice.run(&["ls"], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
}

#[test]
fn a_cancelled_download_ends_get_with_exit_1_and_says_so() {
    let coord = Coordinator::start();
    // A slow sender, so the download is still running when it is cancelled.
    let n1 = Node::start_with(&coord, &["--max-upload-rate", "512KB"], &[]);
    let n2 = Node::start(&coord);
    let alice = Shell::new(&n1);
    let bob = Shell::new(&n2);
    alice.register("alice");
    bob.register("bob");
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("slow.bin");
    std::fs::write(&file, pattern(16 << 20, 3)).expect("write");
    let o = alice.run(&["share", &file.display().to_string()], None, &[]);
    assert_eq!(o.code(), 0, "{o:?}");
    ls_until(&bob, &["ls", "slow"], "slow.bin");

    let into = tempfile::tempdir().expect("tempdir");
    let get = Command::new(bin())
        .args([
            "get",
            "slow.bin",
            "--to",
            &into.path().display().to_string(),
        ])
        .args(["--node", &bob.node])
        .env("HOME", bob.home.path())
        .env("XDG_CONFIG_HOME", bob.config())
        .env_remove("P2PSHARE_NODE")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn get");
    let token = bob.token();
    let id = wait_for("the download to run", || {
        let (_, v) = n2.call("GET", "/api/client/fetches", Some(&token), None);
        v["fetches"]
            .as_array()?
            .iter()
            .find(|f| f["status"] == "downloading" && f["downloaded_size"].as_u64() > Some(0))
            .and_then(|f| f["fetch_id"].as_str().map(str::to_owned))
    });
    let (s, v) = n2.call(
        "DELETE",
        &format!("/api/client/fetch/{id}"),
        Some(&token),
        None,
    );
    assert_eq!(s, 200, "{v}");
    let o = Out(get.wait_with_output().expect("get's output"));
    assert_eq!(o.code(), 1, "{o:?}");
    assert!(o.stderr().contains("the download was cancelled"), "{o:?}");
    assert!(
        o.stdout().lines().any(|l| l.ends_with("cancelled")),
        "{o:?}"
    );
    assert!(!into.path().join("slow.bin").exists());
}
