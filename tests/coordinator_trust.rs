//! Attacks on the coordinator's trust boundaries, each written as the attack
//! through the real binary: what a stranger may cost it, what a host may
//! claim, and what an account may do with its tokens.

mod harness;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{json, Value};

fn sha(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

/// Open (true) or closed by the server (false), looking for up to `wait`.
fn still_open(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 256];
    match s.read(&mut b) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => true,
        Err(_) => false,
    }
}

/// One reply line on a raw stream (None when closed first).
fn read_line(s: &mut TcpStream) -> Option<Value> {
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match s.read(&mut b) {
            Ok(1) if b[0] == b'\n' => break,
            Ok(1) => line.push(b[0]),
            _ => return None,
        }
    }
    Some(serde_json::from_slice(&line).unwrap())
}

fn send(s: &mut TcpStream, action: &str, data: Value) {
    let line = json!({"action": action, "data": data}).to_string() + "\n";
    s.write_all(line.as_bytes()).unwrap();
}

/// An address of this machine that is not loopback, if it has one.
fn lan_ip() -> Option<IpAddr> {
    let u = UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks a route.
    u.connect("192.0.2.1:9").ok()?;
    let ip = u.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn an_idle_unregistered_connection_is_closed_after_30_seconds() {
    let c = Coordinator::start();
    let mut host = c.reg();
    assert_eq!(host.register("kept")["status"], "OK");
    let started = Instant::now();
    let mut idle = TcpStream::connect(c.registry).unwrap();
    // A slow loris: a byte every second, never a whole line.
    let mut loris = TcpStream::connect(c.registry).unwrap();
    loris.write_all(b"{\"action\":").unwrap();
    let (mut idle_closed, mut loris_closed) = (None, None);
    while (idle_closed.is_none() || loris_closed.is_none())
        && started.elapsed() < Duration::from_secs(45)
    {
        if loris_closed.is_none() {
            let wrote = loris.write_all(b" ").is_ok();
            if !wrote || !still_open(&mut loris, Duration::from_millis(500)) {
                loris_closed = Some(started.elapsed());
            }
        }
        if idle_closed.is_none() && !still_open(&mut idle, Duration::from_millis(500)) {
            idle_closed = Some(started.elapsed());
        }
    }
    let idle_closed = idle_closed.expect("the idle connection was closed");
    let loris_closed = loris_closed.expect("the trickling connection was closed");
    assert!(
        idle_closed >= Duration::from_secs(29) && idle_closed < Duration::from_secs(40),
        "{idle_closed:?}"
    );
    assert!(
        loris_closed >= Duration::from_secs(29) && loris_closed < Duration::from_secs(40),
        "{loris_closed:?}"
    );
    // A registered connection, as quiet, is kept.
    assert_eq!(
        host.req("PING", json!({"hostname":"kept"}))["status"],
        "ALIVE"
    );
}

#[test]
fn the_257th_unbound_connection_from_one_address_is_refused() {
    let c = Coordinator::start();
    let mut early = c.reg();
    assert_eq!(early.register("early")["status"], "OK");
    let mut held = Vec::new();
    for _ in 0..256 {
        let mut s = TcpStream::connect(c.registry).unwrap();
        send(&mut s, "PING", json!({"hostname":"x"}));
        held.push(s);
    }
    for s in held.iter_mut() {
        assert_eq!(read_line(s).unwrap()["status"], "DEAD");
    }
    // The 257th is refused at its first line, and closed.
    let mut extra = TcpStream::connect(c.registry).unwrap();
    send(&mut extra, "PING", json!({"hostname":"x"}));
    assert_eq!(
        read_line(&mut extra),
        Some(json!({"status":"ERROR","reason":"too many connections"}))
    );
    assert!(!still_open(&mut extra, Duration::from_secs(5)));
    // One that says nothing is refused too, within seconds.
    let mut silent = TcpStream::connect(c.registry).unwrap();
    let t = Instant::now();
    assert_eq!(
        read_line(&mut silent),
        Some(json!({"status":"ERROR","reason":"too many connections"}))
    );
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // Registering hosts are not capped per address (a NAT): REGISTER first is served.
    let mut node = TcpStream::connect(c.registry).unwrap();
    send(
        &mut node,
        "REGISTER",
        json!({"hostname":"behind-nat","port":6001,"token":token("behind-nat")}),
    );
    assert_eq!(read_line(&mut node).unwrap()["status"], "OK");
    send(&mut node, "PING", json!({"hostname":"early"}));
    assert_eq!(read_line(&mut node).unwrap()["status"], "ALIVE");
    // The host registered before the flood is still served.
    let r = early.req(
        "PUBLISH",
        json!({"hostname":"early","fname":"f","size":1,"modified":1}),
    );
    assert_eq!(r["status"], "ACK");
    assert_eq!(
        early.req("REQUEST", json!({"fname":"f"}))["status"],
        "FOUND"
    );
    // A held one leaves: a new stranger is served again.
    drop(held.pop());
    wait_until("a slot to come free", Duration::from_secs(10), || {
        let mut s = TcpStream::connect(c.registry).unwrap();
        send(&mut s, "PING", json!({"hostname":"x"}));
        let r = read_line(&mut s).unwrap();
        (r["status"] == "DEAD").then_some(())
    });
}

#[test]
fn a_host_cannot_publish_past_max_files_per_host() {
    let c = Coordinator::start_with(&["--max-files-per-host", "3"], &[]);
    let mut r = c.reg();
    let r1 = r.req(
        "REGISTER",
        json!({"hostname":"hoarder","port":6001,"token":token("hoarder"),
               "files_metadata":{"a":{"size":1,"modified":1},"b":{"size":1,"modified":1,"is_published":false}}}),
    );
    assert_eq!(r1["status"], "OK");
    let publish = |r: &mut RegistryClient, name: &str, size: u64| {
        r.req(
            "PUBLISH",
            json!({"hostname":"hoarder","fname":name,"size":size,"modified":1}),
        )
    };
    assert_eq!(publish(&mut r, "c", 1)["status"], "ACK");
    assert_eq!(
        publish(&mut r, "d", 1),
        json!({"status":"ERROR","reason":"too many files"})
    );
    // Updating a listed file is not a new one.
    assert_eq!(publish(&mut r, "b", 2)["status"], "ACK");
    // Nor can REGISTER bring more.
    let many: serde_json::Map<String, Value> = (0..4)
        .map(|i| (format!("m{i}"), json!({"size":1,"modified":1})))
        .collect();
    let r2 = r.req(
        "REGISTER",
        json!({"hostname":"hoarder","port":6001,"token":token("hoarder"),"files_metadata":many}),
    );
    assert_eq!(r2, json!({"status":"ERROR","reason":"too many files"}));
    let files = r.req("DISCOVER", json!({"hostname":"hoarder"}))["files"].clone();
    let mut names: Vec<&String> = files.as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["a", "b", "c"], "nothing changed");
    assert_eq!(r.req("REQUEST", json!({"fname":"d"}))["status"], "NOTFOUND");
}

#[test]
fn register_cannot_claim_another_display_name_or_ip() {
    let c = Coordinator::start_on_all(&[]);
    let token = c.account("mallory", "Mallory");
    let lan = lan_ip();
    let reg_addr = match lan {
        Some(ip) => SocketAddr::new(ip, c.registry.port()),
        None => c.registry,
    };
    let mut r = RegistryClient::connect(reg_addr);
    let ok = r.req(
        "REGISTER",
        json!({"hostname":"mallory","port":6001,"ip":"10.66.66.66",
               "display_name":"Alice (admin)","token":token}),
    );
    assert_eq!(ok["status"], "OK");
    r.req(
        "PUBLISH",
        json!({"hostname":"mallory","fname":"bait.pdf","size":1,"modified":1}),
    );
    let h = r.req("REQUEST", json!({"fname":"bait.pdf"}))["hosts"][0].clone();
    assert_eq!(
        h["display_name"], "Mallory",
        "the account's name, not the claim"
    );
    match lan {
        Some(ip) => assert_eq!(h["ip"], ip.to_string(), "the address seen, not the claim"),
        None => eprintln!("no non-loopback address here: the ip half is not exercised"),
    }
    let list = r.req("LIST", json!({"limit": 10}));
    assert_eq!(list["registry"]["mallory"]["display_name"], "Mallory");

    // From loopback (a node on the coordinator's machine) the claim stands.
    let mut local = RegistryClient::connect(c.registry);
    let t2 = c.account("local", "Local");
    local.req(
        "REGISTER",
        json!({"hostname":"local","port":6002,"ip":"10.1.2.3","token":t2}),
    );
    let d = local.req("DISCOVER", json!({"hostname":"local"}));
    assert_eq!(d["addr"], json!(["10.1.2.3", 6002]));

    // Under --trust-claimed-ip the claim stands from anywhere.
    let c2 = Coordinator::start_on_all(&["--trust-claimed-ip"]);
    let mut r = RegistryClient::connect(SocketAddr::new(
        lan.unwrap_or(c2.registry.ip()),
        c2.registry.port(),
    ));
    r.req(
        "REGISTER",
        json!({"hostname":"trusted","port":6003,"ip":"10.9.9.9","token":harness::token("trusted")}),
    );
    let d = r.req("DISCOVER", json!({"hostname":"trusted"}));
    assert_eq!(d["addr"], json!(["10.9.9.9", 6003]));
}

#[test]
fn an_anonymous_register_cannot_take_over_a_token_bound_host() {
    let c = Coordinator::start_with(&["--allow-anonymous"], &[]);
    let mut alice = c.reg();
    assert_eq!(alice.register("alice")["status"], "OK");
    alice.req(
        "PUBLISH",
        json!({"hostname":"alice","fname":"real.pdf","size":10,"modified":1}),
    );
    let mut anon = c.reg();
    let take = json!({"hostname":"alice","port":6666,"ip":"127.0.0.1"});
    assert_eq!(
        anon.req("REGISTER", take.clone()),
        json!({"status":"ERROR","reason":"forbidden"})
    );
    // Naming the host on an anonymous connection does not act for it either.
    let fake = json!({"hostname":"alice","fname":"real.pdf","size":99,"modified":1});
    assert_eq!(anon.req("PUBLISH", fake)["reason"], "forbidden");
    assert_eq!(
        anon.req("UNREGISTER", json!({"hostname":"alice"}))["reason"],
        "forbidden"
    );
    let h = anon.req("REQUEST", json!({"fname":"real.pdf"}))["hosts"][0].clone();
    assert_eq!(
        (h["port"].clone(), h["size"].clone()),
        (json!(6001), json!(10))
    );
    // Nor once the token's host has gone: the name was token-bound.
    assert_eq!(
        alice.req("UNREGISTER", json!({"hostname":"alice"}))["status"],
        "OK"
    );
    assert_eq!(anon.req("REGISTER", take)["reason"], "forbidden");
    // Seed-style hosts of their own still work.
    assert_eq!(
        anon.req("REGISTER", json!({"hostname":"seed","port":1}))["status"],
        "OK"
    );
}

#[test]
fn a_logged_out_token_is_refused_by_the_registry_and_verify_even_after_restart() {
    let mut c = Coordinator::start();
    let token = c.account("leaver", "Leaver");
    let login = |c: &Coordinator| {
        let (s, v) = c.call(
            "POST",
            "/api/user/login",
            None,
            Some(json!({"username":"leaver","password":PASSWORD})),
        );
        assert_eq!(s, 200, "{v}");
        v["token"].as_str().unwrap().to_string()
    };
    let other = login(&c);
    let (s, v) = c.call("POST", "/api/user/logout", Some(&token), None);
    assert_eq!((s, v["success"].clone()), (200, json!(true)), "{v}");
    let refused = |c: &Coordinator, t: &str| {
        let (s, v) = c.call("POST", "/api/user/verify", None, Some(json!({"token": t})));
        assert_eq!(s, 401, "{v}");
        assert_eq!(v["success"], false);
        let r = c.reg().req(
            "REGISTER",
            json!({"hostname":"leaver","port":6001,"token":t}),
        );
        assert_eq!(r, json!({"status":"ERROR","reason":"unauthorized"}));
    };
    let accepted = |c: &Coordinator, t: &str| {
        let (s, v) = c.call("POST", "/api/user/verify", None, Some(json!({"token": t})));
        assert_eq!(s, 200, "{v}");
        let r = c.reg().req(
            "REGISTER",
            json!({"hostname":"leaver","port":6001,"token":t}),
        );
        assert_eq!(r["status"], "OK");
    };
    refused(&c, &token);
    // Only that token: the same user's other session goes on.
    accepted(&c, &other);
    // A revoked token cannot log out again, nor be used for the API.
    assert_eq!(
        c.call("POST", "/api/user/logout", Some(&token), None).0,
        401
    );
    c.kill();
    let c2 = Coordinator::start_in(&c.data, &[], &[]);
    refused(&c2, &token);
    accepted(&c2, &other);
}

#[test]
fn the_21st_login_in_a_burst_gets_429_with_retry_after() {
    let c = Coordinator::start();
    let body = json!({"username":"nobody","password":"wrong-password"}).to_string();
    let raw = format!(
        "POST /api/user/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let started = Instant::now();
    let statuses: Vec<(u16, String, Vec<u8>)> = (0..21)
        .map(|_| http_raw(c.api, raw.as_bytes()).parts())
        .collect();
    let took = started.elapsed();
    for (i, (s, _, _)) in statuses[..20].iter().enumerate() {
        assert_eq!(*s, 401, "attempt {}", i + 1);
    }
    // One attempt comes back per second: the 21st is refused unless the
    // burst itself took that long.
    let (s, head, body) = &statuses[20];
    if took < Duration::from_millis(900) {
        assert_eq!(*s, 429, "{head}");
    }
    let (s, head, body) = if *s == 429 {
        (*s, head.clone(), body.clone())
    } else {
        (0..5)
            .map(|_| http_raw(c.api, raw.as_bytes()).parts())
            .find(|r| r.0 == 429)
            .expect("a 429 within the next five attempts")
    };
    assert_eq!(s, 429);
    let retry: u64 = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("retry-after:")
                .map(|v| v.trim().to_string())
        })
        .expect("a Retry-After header")
        .parse()
        .expect("whole seconds");
    assert!((1..=20).contains(&retry), "{retry}");
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["success"], false);
    assert!(v["error"].as_str().unwrap().len() > 10, "{v}");
    // Register is limited from the same address (one may slip through if a
    // second passed meanwhile); the registry is not.
    let register_refused = (0..3).any(|_| {
        let (s, _) = c.call(
            "POST",
            "/api/user/register",
            None,
            Some(json!({"username":"late","password":PASSWORD})),
        );
        s == 429
    });
    assert!(register_refused);
    for i in 0..30 {
        assert_eq!(c.reg().register(&format!("h{i}"))["status"], "OK");
    }
    assert_eq!(c.call("GET", "/api/stats", None, None).0, 200);
}

#[test]
fn register_writes_one_record_not_the_whole_store() {
    let mut c = Coordinator::start();
    for i in 0..5 {
        c.account(&format!("user{i}"), "");
    }
    let log = c.data.join("users.log");
    let before = std::fs::read(&log).expect("the user store is a log");
    c.account("user5", "Five");
    let after = std::fs::read(&log).unwrap();
    assert!(
        after.starts_with(&before),
        "the store was rewritten, not appended to"
    );
    let added = &after[before.len()..];
    assert_eq!(
        added.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one record: {}",
        String::from_utf8_lossy(added)
    );
    assert!(added.len() < 1024, "{} bytes", added.len());
    // Acknowledged means on disk: kill -9 right after the 200.
    c.account("last", "Last");
    c.kill();
    let c2 = Coordinator::start_in(&c.data, &[], &[]);
    let (s, v) = c2.call(
        "POST",
        "/api/user/login",
        None,
        Some(json!({"username":"last","password":PASSWORD})),
    );
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["user"]["display_name"], "Last");
}

#[test]
fn request_with_sha256_returns_only_that_content() {
    let c = Coordinator::start();
    let mut alice = c.reg();
    let mut erin = c.reg();
    alice.register("alice");
    erin.register("erin");
    let (a, e, root) = (sha('a'), sha('e'), sha('f'));
    alice.req(
        "PUBLISH",
        json!({"hostname":"alice","fname":"report.pdf","size":3_000_000,"modified":1,"sha256":a,"root":root}),
    );
    erin.req(
        "PUBLISH",
        json!({"hostname":"erin","fname":"report.pdf","size":1_000_000,"modified":1,"sha256":e}),
    );
    let all = alice.req("REQUEST", json!({"fname":"report.pdf"}));
    assert_eq!(all["hosts"].as_array().unwrap().len(), 2);
    let only = alice.req("REQUEST", json!({"fname":"report.pdf","sha256":a}));
    assert_eq!(only["status"], "FOUND");
    let hosts = only["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 1, "{only}");
    assert_eq!(hosts[0]["hostname"], "alice");
    assert_eq!(hosts[0]["size"], 3_000_000);
    assert_eq!(hosts[0]["root"], root, "root is passed through");
    // Upper-case hex names the same content.
    let upper = alice.req(
        "REQUEST",
        json!({"fname":"report.pdf","sha256":e.to_uppercase()}),
    );
    assert_eq!(upper["hosts"][0]["hostname"], "erin");
    assert_eq!(upper["hosts"].as_array().unwrap().len(), 1);
    assert_eq!(
        alice.req("REQUEST", json!({"fname":"report.pdf","sha256":sha('0')})),
        json!({"status":"NOTFOUND","hosts":[]})
    );
    assert_eq!(
        alice.req("REQUEST", json!({"fname":"report.pdf","sha256":"abc"}))["status"],
        "ERROR"
    );
    let d = erin.req("DISCOVER", json!({"hostname":"alice"}));
    assert_eq!(d["files"]["report.pdf"]["root"], root);
}

#[test]
fn re_registering_one_host_on_many_connections_does_not_escape_the_cap() {
    let c = Coordinator::start();
    let t = token("mallory");
    let mut conns = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(c.registry).unwrap();
        send(
            &mut s,
            "REGISTER",
            json!({"hostname":"mallory","port":6001,"token":t}),
        );
        assert_eq!(read_line(&mut s).unwrap()["status"], "OK");
        conns.push(s);
    }
    // Each REGISTER took the host over: the earlier connections speak for
    // nobody, so they count as strangers again, and past 256 are refused.
    let last_taken = &mut conns[298];
    send(last_taken, "PING", json!({"hostname":"mallory"}));
    assert_eq!(
        read_line(last_taken),
        Some(json!({"status":"ERROR","reason":"too many connections"}))
    );
    let first = &mut conns[0];
    send(first, "PING", json!({"hostname":"mallory"}));
    assert_eq!(read_line(first).unwrap()["status"], "ALIVE");
    // The current one is served as ever.
    let current = &mut conns[299];
    send(current, "PING", json!({"hostname":"mallory"}));
    assert_eq!(read_line(current).unwrap()["status"], "ALIVE");
}

/// A reconnect storm from behind one NAT while the coordinator is behind:
/// 300 connections past the per-address cap send their REGISTER while the
/// loop is stopped for longer than their 5 s grace. When it runs again it
/// cannot read them all in one turn; the ones it reaches after their
/// deadline must still be served, since their line was there in time.
#[test]
fn registers_waiting_unread_behind_a_late_loop_are_served_not_reset() {
    let c = Coordinator::start();
    // Fill the address's unbound quota so the storm is "over the cap".
    let mut quota = Vec::new();
    for _ in 0..256 {
        let mut s = TcpStream::connect(c.registry).unwrap();
        send(&mut s, "PING", json!({"hostname":"x"}));
        quota.push(s);
    }
    for s in quota.iter_mut() {
        assert_eq!(read_line(s).unwrap()["status"], "DEAD");
    }
    let mut storm: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(c.registry).unwrap())
        .collect();
    // Let the loop accept them all (their 5 s deadlines start now).
    std::thread::sleep(Duration::from_millis(500));
    let pid = c.proc.pid() as i32;
    // SAFETY: signals to the child process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    for (i, s) in storm.iter_mut().enumerate() {
        let host = format!("storm-{i}");
        send(
            s,
            "REGISTER",
            json!({"hostname": host, "port": 6001, "token": token(&host)}),
        );
    }
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    let mut refused = 0;
    for s in storm.iter_mut() {
        match read_line(s) {
            Some(v) if v["status"] == "OK" => {}
            other => {
                refused += 1;
                eprintln!("refused: {other:?}");
            }
        }
    }
    assert_eq!(refused, 0, "{refused} of 300 REGISTERs were not served");
}
