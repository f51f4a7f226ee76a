//! `p2pshare admin reset-password` (docs/server-api.md, "The admin password")
//! against a real coordinator's data directory: the new password works from
//! the coordinator's next start, the old one no longer does; without a
//! password source it refuses and writes nothing.

mod harness;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};

use harness::*;
use serde_json::json;

/// A coordinator on `data` that keeps its secrets there (no JWT_SECRET_KEY
/// or ADMIN_PASSWORD in its environment); its admin API address and, on a
/// first start, the password it printed.
fn coordinator(data: &Path) -> (Proc, SocketAddr) {
    let args: Vec<String> = [
        "coordinator",
        "--host",
        "127.0.0.1",
        "--registry-port",
        "0",
        "--admin-api-port",
        "0",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([data.display().to_string()])
    .collect();
    let mut p = Proc::spawn(
        "coordinator",
        &args,
        &[
            ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
            ("P2PSHARE_LOG", "warn".to_string()),
        ],
    );
    let api = reachable(&p.wait_line("admin api listening on "));
    (p, api)
}

fn admin_login(api: SocketAddr, password: &str) -> u16 {
    http_json(
        api,
        "POST",
        "/api/admin/login",
        None,
        Some(json!({"username":"admin","password":password})),
    )
    .0
}

/// `p2pshare admin reset-password --data-dir DATA <extra>` with `stdin`
/// piped in (or none), no terminal, and no ADMIN_PASSWORD unless given.
fn reset(data: &Path, extra: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(bin());
    cmd.args(["admin", "reset-password", "--data-dir"])
        .arg(data)
        .args(extra)
        .env_remove("ADMIN_PASSWORD")
        .env_remove("P2PSHARE_DATA")
        .env("P2PSHARE_PBKDF2_ITERATIONS", "1000")
        .current_dir(data.parent().expect("parent"));
    run_to_end(&mut cmd, stdin, env)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn a_reset_password_works_from_the_next_start_and_the_old_one_stops() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let (mut first, api) = coordinator(&data);
    let old = first
        .wait_line("admin login (shown once, stored only as a hash): username 'admin' password ")
        .trim_matches('\'')
        .to_string();
    assert_eq!(admin_login(api, &old), 200);
    let secrets = data.join("secrets.json");
    let before = std::fs::read_to_string(&secrets).expect("secrets");

    // No terminal, no --password-stdin, no ADMIN_PASSWORD: refused, nothing written.
    let o = reset(&data, &[], None, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("--password-stdin"), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&secrets).expect("secrets"), before);
    // Too short: refused too.
    let o = reset(&data, &["--password-stdin"], Some("short\n"), &[]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert_eq!(std::fs::read_to_string(&secrets).expect("secrets"), before);

    // Reset while the coordinator runs: it keeps the old one until restarted.
    let o = reset(
        &data,
        &["--password-stdin"],
        Some("brand new admin pw\n"),
        &[],
    );
    assert!(o.status.success(), "{}", text(&o));
    let said = text(&o);
    assert!(
        said.contains("reset") && said.contains("next start"),
        "{said}"
    );
    assert!(said.contains(&secrets.display().to_string()), "{said}");
    let mode = std::fs::metadata(&secrets)
        .expect("meta")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(admin_login(api, &old), 200, "the running one keeps the old");
    first.kill();

    let (_second, api) = coordinator(&data);
    assert_eq!(admin_login(api, "brand new admin pw"), 200);
    assert_eq!(admin_login(api, &old), 401);
    drop(_second);

    // ADMIN_PASSWORD is a source too.
    let o = reset(
        &data,
        &[],
        None,
        &[("ADMIN_PASSWORD", "from the environment")],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (_third, api) = coordinator(&data);
    assert_eq!(admin_login(api, "from the environment"), 200);
    assert_eq!(admin_login(api, "brand new admin pw"), 401);

    // A secrets file it cannot understand is never replaced.
    std::fs::write(&secrets, "not json").expect("write");
    let o = reset(
        &data,
        &["--password-stdin"],
        Some("another password\n"),
        &[],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("corrupt"), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(&secrets).expect("secrets"),
        "not json"
    );
}
