//! The parser against the rules: precedence, bounds, one-line errors.

use super::flags::SPECS;
use super::*;

fn args(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn config(cmd: Result<Command, String>) -> Config {
    match cmd {
        Ok(Command::Up(c) | Command::Coordinator(c) | Command::Node(c)) => c,
        other => panic!("expected a config, got {other:?}"),
    }
}

fn err(a: &str, e: &[(&str, &str)], dotenv: Option<&str>) -> String {
    match parse(&args(a), &env(e), dotenv) {
        Err(e) => e,
        Ok(c) => panic!("expected an error for {a:?}, got {c:?}"),
    }
}

#[test]
fn defaults() {
    let home = env(&[("HOME", "/home/carol")]);
    let c = config(parse(&args("up"), &home, None));
    assert_eq!(
        c,
        Config {
            share_roots: vec![PathBuf::from("/home/carol")],
            ..Config::default()
        }
    );
    assert_eq!(c.registry_port, 9000);
    assert_eq!(c.client_api_host.to_string(), "127.0.0.1");
    assert_eq!(c.coordinator_host.to_string(), "0.0.0.0");
    assert_eq!((c.port_min, c.port_max), (6000, 7000));
    assert_eq!(c.pbkdf2_iterations, 600_000);
}

#[test]
fn commands() {
    let e = HashMap::new();
    assert!(matches!(parse(&args("up"), &e, None), Ok(Command::Up(_))));
    assert!(matches!(
        parse(&args("coordinator"), &e, None),
        Ok(Command::Coordinator(_))
    ));
    assert!(matches!(
        parse(&args("node"), &e, None),
        Ok(Command::Node(_))
    ));
    assert!(matches!(
        parse(&args("--version"), &e, None),
        Ok(Command::Version)
    ));
    assert!(matches!(
        parse(&args("node -h"), &e, None),
        Ok(Command::Help(_))
    ));
    assert!(err("", &[], None).starts_with("no command given"));
    assert!(err("serve", &[], None).starts_with("unknown command 'serve'"));
    assert!(err("up node", &[], None).starts_with("unexpected argument 'node'"));
}

#[test]
fn precedence_flag_env_dotenv_default() {
    let dotenv = "SERVER_PORT=1111\nADMIN_API_PORT=2222\nCLIENT_API_PORT=3333\n";
    let e = [("SERVER_PORT", "4444"), ("ADMIN_API_PORT", "5555")];
    let c = config(parse(
        &args("up --registry-port 7777"),
        &env(&e),
        Some(dotenv),
    ));
    assert_eq!(c.registry_port, 7777, "flag beats env");
    assert_eq!(c.admin_api_port, 5555, "env beats .env");
    assert_eq!(c.client_api_port, 3333, ".env beats default");
    assert_eq!(c.heartbeat_idle_s, 300.0, "default");
}

#[test]
fn flags_may_come_before_the_command_and_use_equals() {
    let c = config(parse(
        &args(
            "--data-dir=/tmp/x coordinator --host=127.0.0.2 --allow-anonymous --session-timeout 5",
        ),
        &HashMap::new(),
        None,
    ));
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.coordinator_host.to_string(), "127.0.0.2");
    assert_eq!(c.admin_api_host.to_string(), "127.0.0.2");
    assert_eq!(
        c.client_api_host.to_string(),
        "127.0.0.1",
        "--host never moves the client API"
    );
    assert!(c.allow_anonymous);
    assert_eq!(c.session_timeout_s, 5);
}

#[test]
fn host_envs_are_separate() {
    let e = [("SERVER_HOST", "10.0.0.1"), ("CLIENT_API_HOST", "::1")];
    let c = config(parse(&args("up"), &env(&e), None));
    assert_eq!(c.coordinator_host.to_string(), "10.0.0.1");
    assert_eq!(c.admin_api_host.to_string(), "0.0.0.0");
    assert_eq!(c.client_api_host.to_string(), "::1");
}

#[test]
fn bad_ports() {
    assert_eq!(
        err("up --registry-port abc", &[], None),
        "--registry-port: 'abc' is not a port number (0-65535)"
    );
    assert_eq!(
        err("up", &[("ADMIN_API_PORT", "70000")], None),
        "ADMIN_API_PORT: '70000' is not a port number (0-65535)"
    );
    assert_eq!(
        err("up", &[], Some("CLIENT_API_PORT=-1")),
        "CLIENT_API_PORT (in .env): '-1' is not a port number (0-65535)"
    );
    let c = config(parse(&args("up --registry-port 0"), &HashMap::new(), None));
    assert_eq!(c.registry_port, 0);
}

#[test]
fn unknown_flag_and_missing_value() {
    assert_eq!(
        err("up --foo", &[], None),
        "unknown flag --foo; see `p2pshare --help`"
    );
    assert_eq!(
        err("up --foo=1", &[], None),
        "unknown flag --foo; see `p2pshare --help`"
    );
    assert!(err("up --data-dir", &[], None).starts_with("--data-dir needs a value"));
    assert!(
        err("up --data-dir --registry-port 1", &[], None).starts_with("--data-dir needs a value")
    );
    assert!(err("up --data-dir=", &[], None).starts_with("--data-dir needs a value"));
    assert!(
        err("up --allow-anonymous=yes", &[], None).starts_with("--allow-anonymous takes no value")
    );
}

#[test]
fn port_ranges() {
    let c = config(parse(&args("node --port-range 0-0"), &HashMap::new(), None));
    assert_eq!((c.port_min, c.port_max), (0, 0));
    let e = [("CLIENT_PORT_MIN", "6500"), ("CLIENT_PORT_MAX", "6600")];
    let c = config(parse(&args("node"), &env(&e), None));
    assert_eq!((c.port_min, c.port_max), (6500, 6600));
    let c = config(parse(&args("node --port-range=7000-7001"), &env(&e), None));
    assert_eq!((c.port_min, c.port_max), (7000, 7001));
    assert!(err("node --port-range 7000-6000", &[], None).contains("minimum above its maximum"));
    assert!(err("node --port-range 6000", &[], None).contains("is not a port range"));
    assert!(err("node --port-range 1-99999", &[], None).contains("is not a port range"));
    assert!(err("node", &[("CLIENT_PORT_MIN", "8000")], None).contains("is above CLIENT_PORT_MAX"));
}

#[test]
fn coordinator_addresses() {
    let c = config(parse(
        &args("node --coordinator 10.1.2.3:9100 --coordinator-api http://10.1.2.3:5600/"),
        &HashMap::new(),
        None,
    ));
    assert_eq!(c.coordinator, "10.1.2.3:9100");
    assert_eq!(c.coordinator_api, "http://10.1.2.3:5600");
    assert!(err("node --coordinator 10.1.2.3", &[], None).contains("is not HOST:PORT"));
    assert!(err("node --coordinator :9000", &[], None).contains("is not HOST:PORT"));
    assert!(err("node --coordinator h:0", &[], None).contains("is not HOST:PORT"));
    for bad in ["10.1.2.3:5600", "https://h:1", "http://h", "http://h:1/api"] {
        assert!(
            err(&format!("node --coordinator-api {bad}"), &[], None).contains("http://HOST:PORT"),
            "{bad}"
        );
    }
}

#[test]
fn other_values() {
    let e = [
        ("P2PSHARE_LOG", "DEBUG"),
        ("JWT_SECRET_KEY", "s3cret"),
        ("ADMIN_PASSWORD", ""),
        ("P2PSHARE_PBKDF2_ITERATIONS", "2"),
        ("CLIENT_INACTIVE_TIMEOUT", "0.5"),
    ];
    let c = config(parse(
        &args("up --allowed-hosts Example.com,,box.lan --advertise-ip 192.168.1.5 --workers 4"),
        &env(&e),
        None,
    ));
    assert_eq!(c.log_level, "debug");
    assert_eq!(c.jwt_secret.as_deref(), Some("s3cret"));
    assert_eq!(c.admin_password, None, "empty env counts as unset");
    assert_eq!(c.pbkdf2_iterations, 2);
    assert_eq!(c.inactive_timeout_s, 0.5);
    assert_eq!(c.allowed_hosts, vec!["example.com", "box.lan"]);
    assert_eq!(c.advertise_ip, Some("192.168.1.5".parse().unwrap()));
    assert_eq!(c.workers, 4);

    assert!(err("up --log-level loud", &[], None).contains("is not a log level"));
    assert!(err("up --heartbeat-busy 0", &[], None).contains("above 0 and at most one year"));
    assert!(err("up --heartbeat-idle nan", &[], None).contains("above 0 and at most one year"));
    assert!(err("up --advertise-ip x", &[], None).contains("is not an IP address"));
    assert!(err("up --host 1.2.3", &[], None).contains("is not an IP address"));
    assert!(err("up", &[("P2PSHARE_PBKDF2_ITERATIONS", "0")], None).contains("iteration count"));
    assert!(err("up --workers 0", &[], None).contains("worker count"));
    // Secrets have no flags.
    assert!(err("up --jwt-secret-key x", &[], None).starts_with("unknown flag"));
}

#[test]
fn durations_are_bounded_to_a_year_and_tokens_to_30_days() {
    for bad in ["1e300", "31536001", "inf", "-1", "0"] {
        assert!(
            err(&format!("up --heartbeat-idle {bad}"), &[], None).contains("at most one year"),
            "{bad}"
        );
        assert!(
            err("up", &[("CLIENT_CLEANUP_INTERVAL", bad)], None).contains("at most one year"),
            "{bad}"
        );
    }
    let c = config(parse(
        &args("up --heartbeat-idle 31536000"),
        &HashMap::new(),
        None,
    ));
    assert_eq!(c.heartbeat_idle_s, 31_536_000.0);
    for bad in ["18446744073709551615", "2592001", "0"] {
        assert!(
            err("up", &[("SESSION_TIMEOUT", bad)], None).contains("30 days"),
            "{bad}"
        );
    }
    let c = config(parse(
        &args("up"),
        &env(&[("SESSION_TIMEOUT", "2592000")]),
        None,
    ));
    assert_eq!(c.session_timeout_s, 2_592_000);
}

#[test]
fn client_api_host_is_its_own_flag_and_needs_allowed_hosts_off_loopback() {
    let c = config(parse(&args("up --host 0.0.0.0"), &HashMap::new(), None));
    assert_eq!(c.client_api_host.to_string(), "127.0.0.1");
    assert!(err("up --client-api-host 0.0.0.0", &[], None).contains("--allowed-hosts"));
    assert!(err("up", &[("CLIENT_API_HOST", "10.0.0.2")], None).contains("--allowed-hosts"));
    let c = config(parse(
        &args("node --client-api-host 0.0.0.0 --allowed-hosts box.lan"),
        &HashMap::new(),
        None,
    ));
    assert_eq!(c.client_api_host.to_string(), "0.0.0.0");
}

#[test]
fn roots_repeat_and_come_from_the_environment() {
    let c = config(parse(
        &args("node --share-root /srv/a --share-root=/srv/b --download-root /dl --share-hidden"),
        &HashMap::new(),
        None,
    ));
    assert_eq!(
        c.share_roots,
        vec![PathBuf::from("/srv/a"), PathBuf::from("/srv/b")]
    );
    assert_eq!(c.download_roots, vec![PathBuf::from("/dl")]);
    assert!(c.share_hidden);
    let e = [
        ("P2PSHARE_SHARE_ROOTS", "/x:/y"),
        ("P2PSHARE_DOWNLOAD_ROOTS", "/z"),
    ];
    let c = config(parse(&args("node"), &env(&e), None));
    assert_eq!(
        c.share_roots,
        vec![PathBuf::from("/x"), PathBuf::from("/y")]
    );
    assert_eq!(c.download_roots, vec![PathBuf::from("/z")]);
    assert!(err("node --share-root rel/dir", &[], None).contains("absolute"));
    assert!(err("node --download-root rel", &[], None).contains("absolute"));
}

#[test]
fn rates_and_limits() {
    assert_eq!(parse_rate("20MB"), Some(20_000_000));
    assert_eq!(parse_rate("512KB"), Some(512_000));
    assert_eq!(parse_rate("1MiB"), Some(1_048_576));
    assert_eq!(parse_rate("1.5 MB/s"), Some(1_500_000));
    assert_eq!(parse_rate("1000"), Some(1000));
    for bad in ["", "MB", "0", "-5MB", "1e400", "5 parsecs", "1..2MB"] {
        assert_eq!(parse_rate(bad), None, "{bad}");
    }
    let c = config(parse(
        &args("up --max-upload-rate 20MB --max-files-per-host 5 --trust-claimed-ip"),
        &HashMap::new(),
        None,
    ));
    assert_eq!(c.max_upload_rate, Some(20_000_000));
    assert_eq!(c.max_files_per_host, 5);
    assert!(c.trust_claimed_ip);
    assert!(err("up --max-upload-rate fast", &[], None).contains("bytes per second"));
    assert!(err("up --max-files-per-host 0", &[], None).contains("file count"));
}

#[test]
fn dotenv_syntax() {
    let text = "# comment\n\nexport A=1\nB = \"two words\"\nC='x # y'\nD=plain # note\nE=\n";
    let m = parse_dotenv(text).unwrap();
    assert_eq!(m["A"], "1");
    assert_eq!(m["B"], "two words");
    assert_eq!(m["C"], "x # y");
    assert_eq!(m["D"], "plain");
    assert_eq!(m["E"], "");
    assert_eq!(
        parse_dotenv("JUNK").unwrap_err(),
        ".env line 1: expected KEY=VALUE"
    );
    assert!(parse_dotenv("A B=1").is_err());
    assert!(err("up", &[], Some("oops")).starts_with(".env line 1"));
}

#[test]
fn help_lists_every_flag_and_env() {
    let Ok(Command::Help(text)) = parse(&args("--help"), &HashMap::new(), None) else {
        panic!("no help");
    };
    for sp in SPECS {
        if !sp.flag.is_empty() {
            assert!(text.contains(sp.flag), "{}", sp.flag);
        }
        for e in sp.env {
            assert!(text.contains(e), "{e}");
        }
    }
    assert!(text.contains("coordinator") && text.contains("up") && text.contains("node"));
}

#[test]
fn ports_nobody_chose_are_known_and_only_up_moves_them() {
    let none = HashMap::new();
    let c = config(parse(&args("up"), &none, None));
    assert_eq!(c.unchosen_ports, Config::default().unchosen_ports);
    assert!(c.unchosen_ports.registry && c.unchosen_ports.client_api);
    let c = config(parse(&args("up --registry-port 9000"), &none, None));
    assert!(!c.unchosen_ports.registry && c.unchosen_ports.admin_api);
    let c = config(parse(
        &args("up"),
        &env(&[("CLIENT_API_PORT", "5501")]),
        None,
    ));
    assert!(!c.unchosen_ports.client_api && c.unchosen_ports.registry);
    let c = config(parse(&args("up"), &none, Some("ADMIN_API_PORT=5500\n")));
    assert!(!c.unchosen_ports.admin_api && c.unchosen_ports.client_api);
    for cmd in ["coordinator", "node"] {
        let c = config(parse(&args(cmd), &none, None));
        assert_eq!(c.unchosen_ports, UnchosenPorts::NONE, "{cmd}");
    }
    // The test-only defaults move the defaults, not the rule.
    let t = env(&[("P2PSHARE_TEST_DEFAULT_PORTS", "1,2,3")]);
    let c = config(parse(&args("up"), &t, None));
    assert_eq!(
        (c.registry_port, c.admin_api_port, c.client_api_port),
        (1, 2, 3)
    );
    assert!(c.unchosen_ports.registry);
    assert!(parse(
        &args("up"),
        &env(&[("P2PSHARE_TEST_DEFAULT_PORTS", "1,2")]),
        None
    )
    .is_err());
}
