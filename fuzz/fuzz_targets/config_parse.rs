//! `p2pshare::config::parse(args, env, dotenv)` and `parse_dotenv` on
//! arbitrary command lines, environments and `.env` texts.
//!
//! Input: up to three sections separated by byte 0x01: the arguments
//! (separated by NUL), the environment (`KEY=VALUE` entries separated by NUL)
//! and, if present, the `.env` text. Bytes that are not UTF-8 become U+FFFD.
//!
//! Invariants: `Ok` or `Err`, never a panic, and the same answer twice; an
//! error is one line; every duration of an accepted config is finite, above
//! 0 and at most a year, so `Duration::from_secs_f64` and deadline arithmetic
//! cannot panic; a parsed `.env` re-renders (`KEY="value"` lines) to the same
//! map.
#![no_main]

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime};

use libfuzzer_sys::fuzz_target;
use p2pshare::config::{parse, parse_dotenv, Command, MAX_DURATION_S, MAX_SESSION_S};

fn check_config(c: &p2pshare::config::Config) {
    for (what, s) in [
        ("heartbeat_interval", c.heartbeat_interval_s),
        ("cleanup_interval", c.cleanup_interval_s),
        ("inactive_timeout", c.inactive_timeout_s),
        ("heartbeat_idle", c.heartbeat_idle_s),
        ("heartbeat_active", c.heartbeat_active_s),
        ("heartbeat_busy", c.heartbeat_busy_s),
        ("active_window", c.active_window_s),
    ] {
        assert!(
            s.is_finite() && s > 0.0 && s <= MAX_DURATION_S,
            "{what} = {s} accepted"
        );
        let d = Duration::from_secs_f64(s);
        assert!(Instant::now().checked_add(d).is_some());
        assert!(SystemTime::now().checked_add(d).is_some());
    }
    assert!((1..=MAX_SESSION_S).contains(&c.session_timeout_s));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.checked_add(c.session_timeout_s).is_some());
    assert!(c.port_min <= c.port_max);
    assert!((1..=256).contains(&c.workers));
    assert!(c.pbkdf2_iterations > 0);
    assert!(c.coordinator_api.starts_with("http://") && !c.coordinator_api.ends_with('/'));
    assert!(c.client_api_host.is_loopback() || !c.allowed_hosts.is_empty());
    assert!(!c.share_roots.is_empty());
    assert!(c.share_roots.iter().all(|p| p.is_absolute()));
    assert!(c.download_roots.iter().all(|p| p.is_absolute()));
    assert!(c.max_upload_rate.is_none_or(|r| r >= 1));
}

fn check_dotenv(text: &str) {
    let Ok(map) = parse_dotenv(text) else {
        return;
    };
    let mut again = String::new();
    for (k, v) in &map {
        assert!(
            !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "key {k:?}"
        );
        assert!(!v.contains('\n'), "value {v:?} holds a newline");
        again.push_str(&format!("{k}=\"{v}\"\n"));
    }
    assert_eq!(
        parse_dotenv(&again).as_ref(),
        Ok(&map),
        "re-rendered .env differs:\n{again}"
    );
}

fuzz_target!(|data: &[u8]| {
    let mut sections = data.splitn(3, |&b| b == 0x01);
    let args: Vec<String> = match sections.next() {
        Some(s) if !s.is_empty() => s
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
        _ => Vec::new(),
    };
    let env: HashMap<String, String> = sections
        .next()
        .unwrap_or(&[])
        .split(|&b| b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| {
            let e = String::from_utf8_lossy(e);
            match e.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (e.into_owned(), String::new()),
            }
        })
        .collect();
    let dotenv = sections
        .next()
        .map(|d| String::from_utf8_lossy(d).into_owned());

    if let Some(text) = &dotenv {
        check_dotenv(text);
    }
    let first = parse(&args, &env, dotenv.as_deref());
    let second = parse(&args, &env, dotenv.as_deref());
    assert_eq!(first, second, "parse is not deterministic");
    match first {
        Ok(Command::Up(c) | Command::Coordinator(c) | Command::Node(c)) => check_config(&c),
        Ok(Command::Help(text)) => assert!(!text.is_empty()),
        Ok(Command::Version) => {}
        Err(e) => {
            assert!(!e.is_empty());
            // One line, unless it quotes a value that holds a newline.
            let quoted_newline =
                args.iter().any(|a| a.contains('\n')) || env.values().any(|v| v.contains('\n'));
            assert!(
                !e.contains('\n') || quoted_newline,
                "a multi-line error: {e}"
            );
        }
    }
});
