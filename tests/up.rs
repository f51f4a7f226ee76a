//! `p2pshare up`: the coordinator and a node on one reactor in one process.

mod harness;

use harness::*;
use serde_json::json;

/// `up` on ports 0 in `tmp` (data in `tmp/data`, `tmp` the share root), with
/// `extra` flags, and the environment every `up` test uses.
fn spawn_up(tmp: &std::path::Path, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = [
        "up",
        "--registry-port",
        "0",
        "--admin-api-port",
        "0",
        "--client-api-port",
        "0",
        "--port-range",
        "0-0",
        // Tests stay on loopback; `up` would advertise the LAN address.
        "--advertise-ip",
        "127.0.0.1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([
        "--data-dir".to_string(),
        tmp.join("data").display().to_string(),
    ]);
    // Shared files live in the temp folder, which is the share root.
    args.extend(["--share-root".to_string(), tmp.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let env = [
        ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
        ("P2PSHARE_LOG", "warn".to_string()),
    ];
    Proc::spawn("up", &args, &env)
}

#[test]
fn up_runs_both_services_and_they_talk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = spawn_up(tmp.path(), &[]);
    let registry = reachable(&p.wait_line("registry listening on "));
    let admin = reachable(&p.wait_line("admin api listening on "));
    let password =
        p.wait_line("admin login (shown once, stored only as a hash): username 'admin' password ");
    let client = reachable(&p.wait_line("client api listening on "));
    let banner = p.wait_line("p2pshare is up: open ");
    assert!(
        banner.contains(&client.to_string()) && banner.contains(&admin.to_string()),
        "{banner}"
    );

    // A user registers through the node, which forwards to the coordinator in-process.
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/register",
        None,
        Some(json!({"username":"uma","password":PASSWORD,"display_name":"Uma"})),
    );
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_string();
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/init",
        Some(&token),
        Some(json!({})),
    );
    assert_eq!(s, 200, "{v}");
    let file = tmp.path().join("shared notes.txt");
    std::fs::write(&file, b"hello from up").unwrap();
    let (s, v) = http_json(
        client,
        "POST",
        "/api/client/add-file",
        Some(&token),
        Some(json!({"path": file})),
    );
    assert_eq!(s, 200, "{v}");
    let published = wait_for("publish", || {
        let (s, v) = http_json(
            client,
            "POST",
            "/api/client/publish",
            Some(&token),
            Some(json!({"fname":"shared notes.txt"})),
        );
        (s == 200).then_some(v)
    });
    assert_eq!(published["success"], true);

    let mut r = RegistryClient::connect(registry);
    let found = r.req("REQUEST", json!({"fname":"shared notes.txt"}));
    assert_eq!(found["status"], "FOUND");
    assert_eq!(found["hosts"][0]["hostname"], "uma");

    // The admin sees the client, with the password printed on first start.
    let password = password.trim_matches('\'');
    let (s, v) = http_json(
        admin,
        "POST",
        "/api/admin/login",
        None,
        Some(json!({"username":"admin","password":password})),
    );
    assert_eq!(s, 200, "{v}");
    let admin_token = v["token"].as_str().unwrap().to_string();
    let (_, v) = http_json(
        admin,
        "GET",
        "/api/admin/registry",
        Some(&admin_token),
        None,
    );
    assert_eq!(v["clients"][0]["hostname"], "uma");
    let (_, v) = http_json(
        admin,
        "GET",
        "/api/admin/ping/uma",
        Some(&admin_token),
        None,
    );
    assert_eq!(v["status"], "online", "{v}");

    // Both UIs are served.
    assert_eq!(
        http_raw(
            client,
            format!("GET / HTTP/1.1\r\nHost: {client}\r\nConnection: close\r\n\r\n").as_bytes()
        )
        .status,
        200
    );
    assert_eq!(
        http_raw(
            admin,
            b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .status,
        200
    );

    // SIGTERM: a clean exit.
    unsafe { libc::kill(p.pid() as i32, libc::SIGTERM) };
    wait_until(
        "up to exit on SIGTERM",
        std::time::Duration::from_secs(10),
        || (!p.is_running()).then_some(()),
    );
}

#[test]
fn up_with_host_0_0_0_0_keeps_the_client_api_on_loopback() {
    let tmp = tempfile::tempdir().unwrap();
    let mut p = spawn_up(tmp.path(), &["--host", "0.0.0.0"]);
    let registry = p.wait_line("registry listening on ");
    let printed = p.wait_line("client api listening on ");
    // The coordinator's listeners follow --host; the file-reading client API does not.
    assert!(registry.starts_with("0.0.0.0:"), "{registry}");
    let addr: std::net::SocketAddr = printed
        .trim_start_matches("http://")
        .parse()
        .unwrap_or_else(|_| panic!("bad address {printed:?}"));
    assert!(addr.ip().is_loopback(), "client api on {addr}");
    let (s, _) = http_json(addr, "GET", "/api/client/status", None, None);
    assert_eq!(s, 401);
}

#[test]
fn a_busy_port_names_the_flag_that_picks_another() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Hold a port, then ask `up` for it: it must stop and say what to change.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = held.local_addr().expect("addr").port().to_string();
    let out = std::process::Command::new(bin())
        .args([
            "up",
            "--host",
            "127.0.0.1",
            "--registry-port",
            &port,
            "--admin-api-port",
            "0",
            "--client-api-port",
            "0",
            "--data-dir",
        ])
        .arg(tmp.path().join("data"))
        .env("P2PSHARE_PBKDF2_ITERATIONS", "1000")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run up");
    assert!(!out.status.success(), "up must fail on a busy port");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("already in use") && err.contains("--registry-port"),
        "stderr: {err}"
    );
    assert!(!err.contains("os error"), "stderr: {err}");
}

/// `up` with the default ports of `P2PSHARE_TEST_DEFAULT_PORTS` (tests
/// only): a suite running in parallel cannot hold the real 9000/5500/5501,
/// and must not, so the test holds three free ports and names them the
/// defaults. What it checks is the real rule (src/config: a port no flag,
/// environment variable or .env chose) on real sockets.
fn up_with_defaults(
    tmp: &std::path::Path,
    defaults: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin());
    cmd.args([
        "up",
        "--port-range",
        "0-0",
        "--advertise-ip",
        "127.0.0.1",
        "--data-dir",
    ])
    .arg(tmp.join("data"))
    .args(["--share-root"])
    .arg(tmp)
    .args(extra)
    .env("P2PSHARE_TEST_DEFAULT_PORTS", defaults)
    .env("P2PSHARE_PBKDF2_ITERATIONS", "1000")
    .env("P2PSHARE_LOG", "warn")
    .env_remove("SERVER_PORT")
    .env_remove("ADMIN_API_PORT")
    .env_remove("CLIENT_API_PORT")
    .current_dir(tmp)
    .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn a_busy_default_port_moves_and_a_chosen_one_fails_naming_its_flag() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Held on every interface, so binding either 0.0.0.0 or 127.0.0.1 there fails.
    let held: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("0.0.0.0:0").expect("bind"))
        .collect();
    let ports: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().expect("addr").port())
        .collect();
    let defaults = format!("{},{},{}", ports[0], ports[1], ports[2]);

    // Nobody chose them: each moves to a free port and says so.
    let args: Vec<String> = up_with_defaults(tmp.path(), &defaults, &[], &[])
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let env = [
        ("P2PSHARE_TEST_DEFAULT_PORTS", defaults.clone()),
        ("P2PSHARE_PBKDF2_ITERATIONS", "1000".to_string()),
        ("P2PSHARE_LOG", "warn".to_string()),
    ];
    let mut up = Proc::spawn("up", &args, &env);
    let note = up.wait_line(&format!(
        "the default port {} for the registry is in use",
        ports[0]
    ));
    assert!(note.contains("--registry-port PORT"), "{note}");
    up.wait_line(&format!(
        "the default port {} for the admin API is in use",
        ports[1]
    ));
    let registry = reachable(&up.wait_line("registry listening on "));
    let admin = reachable(&up.wait_line("admin api listening on "));
    up.wait_line(&format!(
        "the default port {} for the client API is in use",
        ports[2]
    ));
    let client = reachable(&up.wait_line("client api listening on "));
    let hint = up.wait_line("the command line reaches this node with --node ");
    assert!(hint.contains(&client.to_string()), "{hint}");
    let banner = up.wait_line("p2pshare is up: open ");
    assert!(banner.contains(&client.to_string()), "{banner}");
    for (a, p) in [(registry, ports[0]), (admin, ports[1]), (client, ports[2])] {
        assert_ne!(a.port(), p);
    }
    let page = http_raw(
        client,
        format!("GET / HTTP/1.1\r\nHost: {client}\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(page.status, 200);
    drop(up);

    // Chosen by flag or by environment: a busy port stops `up`, naming the flag.
    let by_flag = up_with_defaults(
        tmp.path(),
        &defaults,
        &["--client-api-port", &ports[2].to_string()],
        &[],
    )
    .output()
    .expect("run up");
    let by_env = up_with_defaults(
        tmp.path(),
        &defaults,
        &[],
        &[("CLIENT_API_PORT", &ports[2].to_string())],
    )
    .output()
    .expect("run up");
    for out in [by_flag, by_env] {
        assert!(!out.status.success(), "up must fail on a chosen busy port");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("already in use") && err.contains("--client-api-port PORT"),
            "stderr: {err}"
        );
    }
    drop(held);
}
