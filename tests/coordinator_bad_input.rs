//! Bad input on both coordinator protocols; after each, the same connection
//! (where it should survive) and another connection still work.

mod harness;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use harness::*;
use serde_json::json;

fn still_works(c: &Coordinator, r: &mut RegistryClient) {
    assert_eq!(
        r.req("PING", json!({"hostname":"nobody"}))["status"],
        "DEAD"
    );
    let mut fresh = c.reg();
    assert_eq!(
        fresh.req("PING", json!({"hostname":"nobody"}))["status"],
        "DEAD"
    );
}

#[test]
fn registry_bad_lines_get_a_reason_and_the_connection_lives() {
    let c = Coordinator::start();
    let mut r = c.reg();
    r.register("alice");
    let cases: Vec<(&[u8], &str)> = vec![
        (b"{not json}\n", "invalid JSON"),
        (b"\xff\xfe\xfd\n", "UTF-8"),
        (b"[1,2,3]\n", "invalid JSON"),
        (br#"{"action":"PUBLISH","data":{"hostname":"alice","fname":"x","size":"10","modified":1}}"#, "invalid type"),
        (br#"{"action":"PUBLISH","data":{"hostname":"alice","fname":"x","size":-1,"modified":1}}"#, "invalid"),
        (br#"{"action":"REGISTER","data":{"hostname":"alice","port":70000}}"#, "invalid"),
        (br#"{"action":"EXPLODE","data":{}}"#, "unknown action"),
        (br#"{"data":{}}"#, "invalid JSON"),
        (br#"{"action":"REQUEST","data":{"fname":"a/b"}}"#, "invalid name"),
        (br#"{"action":"REQUEST","data":{"fname":".."}}"#, "invalid name"),
        (br#"{"action":"REQUEST","data":{"fname":"..\\x"}}"#, "invalid name"),
        (br#"{"action":"REQUEST","data":{"fname":"tab\there"}}"#, "invalid name"),
        (br#"{"action":"REQUEST","data":{"fname":""}}"#, "invalid name"),
        (br#"{"action":"PUBLISH","data":{"hostname":"alice","fname":"../../etc/passwd","size":1,"modified":1}}"#, "invalid name"),
    ];
    for (line, want) in cases {
        let mut l = line.to_vec();
        if !l.ends_with(b"\n") {
            l.push(b'\n');
        }
        r.send_raw(&l);
        let v = r.line().expect("an answer");
        assert_eq!(v["status"], "ERROR", "{}", String::from_utf8_lossy(line));
        let reason = v["reason"].as_str().unwrap();
        assert!(reason.contains(want), "{reason:?} should mention {want:?}");
        still_works(&c, &mut r);
    }
    // Names of 255 bytes pass, 256 do not.
    let ok = "n".repeat(255);
    assert_eq!(
        r.req(
            "PUBLISH",
            json!({"hostname":"alice","fname":ok,"size":1,"modified":1})
        )["status"],
        "ACK"
    );
    let long = "n".repeat(256);
    assert_eq!(
        r.req(
            "PUBLISH",
            json!({"hostname":"alice","fname":long,"size":1,"modified":1})
        )["reason"],
        "invalid name"
    );
}

#[test]
fn a_line_over_one_mib_is_refused_and_closed() {
    let c = Coordinator::start();
    let mut r = c.reg();
    let mut other = c.reg();
    // No newline at all: the cap applies before one arrives.
    let big = vec![b'a'; 1024 * 1024 + 10];
    let _ = r.stream.write_all(&big);
    let v = r.line().expect("an ERROR line before the close");
    assert_eq!(v, json!({"status":"ERROR","reason":"line too long"}));
    assert!(r.is_closed());
    still_works(&c, &mut other);
}

#[test]
fn a_slow_client_with_half_a_line_disturbs_nobody() {
    let c = Coordinator::start();
    let mut slow = c.reg();
    slow.send_raw(br#"{"action":"PING","da"#);
    let mut other = c.reg();
    for _ in 0..50 {
        assert_eq!(other.req("PING", json!({"hostname":"x"}))["status"], "DEAD");
    }
    // The rest of the line arrives later and is answered.
    slow.send_raw(br#"ta":{"hostname":"x"}}"#);
    slow.send_raw(b"\n");
    assert_eq!(slow.line().unwrap()["status"], "DEAD");
}

#[test]
fn five_hundred_pipelined_requests_are_answered_in_order() {
    let c = Coordinator::start();
    let mut r = c.reg();
    r.register("pipe");
    let mut batch = Vec::new();
    for i in 0..500 {
        let line = if i % 2 == 0 {
            json!({"action":"PUBLISH","data":{"hostname":"pipe","fname":format!("f{i}"),"size":i,"modified":1}})
        } else {
            json!({"action":"REQUEST","data":{"fname":format!("f{}", i - 1)}})
        };
        batch.extend_from_slice(line.to_string().as_bytes());
        batch.push(b'\n');
    }
    r.send_raw(&batch);
    for i in 0..500 {
        let v = r.line().expect("reply");
        if i % 2 == 0 {
            assert_eq!(v["status"], "ACK", "reply {i}");
        } else {
            assert_eq!(
                v["hosts"][0]["size"],
                i - 1,
                "reply {i} answers its own request"
            );
        }
    }
    still_works(&c, &mut r);
}

#[test]
fn a_client_that_does_not_read_is_bounded_and_disturbs_nobody() {
    let c = Coordinator::start();
    let mut r = c.reg();
    r.register("hoarder");
    for i in 0..200 {
        r.req("PUBLISH", json!({"hostname":"hoarder","fname":format!("file-with-a-longish-name-{i:04}.bin"),"size":i,"modified":1}));
    }
    // Pipeline many LIST pages (each ~20 KB) and never read.
    let line = json!({"action":"LIST","data":{"limit":1000}}).to_string() + "\n";
    let mut w = r.stream.try_clone().unwrap();
    w.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let mut sent = 0usize;
    let chunk = line.repeat(1000);
    for _ in 0..1000 {
        if w.write_all(chunk.as_bytes()).is_err() {
            break;
        }
        sent += 1000;
    }
    assert!(
        sent < 1_000_000,
        "the coordinator stopped reading from a client that does not read"
    );
    // Each page answer is ~20 KB: had it kept reading, it would hold gigabytes.
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.proc.pid())).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(
        rss_kb < 200 * 1024,
        "coordinator RSS {rss_kb} kB stays bounded"
    );
    let mut other = c.reg();
    for _ in 0..20 {
        assert_eq!(
            other.req("PING", json!({"hostname":"hoarder"}))["status"],
            "ALIVE"
        );
    }
}

fn raw_http(c: &Coordinator, bytes: &[u8]) -> (u16, String, Vec<u8>) {
    http_raw(c.api, bytes).parts()
}

#[test]
fn http_bad_requests_get_clear_errors_and_others_are_served() {
    let c = Coordinator::start();
    let check_others = || {
        let (s, v) = c.call("GET", "/api/stats", None, None);
        assert_eq!(s, 200, "{v}");
    };
    // Huge headers: 431.
    let mut req = b"GET /api/stats HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    req.extend(vec![b'a'; 20 * 1024]);
    req.extend_from_slice(b"\r\n\r\n");
    let (s, _, body) = raw_http(&c, &req);
    assert_eq!(s, 431);
    assert!(String::from_utf8_lossy(&body).contains("too large"));
    check_others();
    // Huge body: 413 before it is read.
    let (s, _, _) = raw_http(
        &c,
        b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n",
    );
    assert_eq!(s, 413);
    check_others();
    // Malformed head: 400 and close.
    let (s, head, _) = raw_http(&c, b"GET /\x01bad HTTP/1.1\r\n\r\n");
    assert_eq!(s, 400);
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    check_others();
    // Content-Length with Transfer-Encoding: 400 and close.
    let (s, _, _) = raw_http(&c, b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}");
    assert_eq!(s, 400);
    // Not JSON, wrong types.
    let (s, _, body) = raw_http(&c, b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 3\r\n\r\n{x}");
    assert_eq!(s, 400);
    assert!(String::from_utf8_lossy(&body).contains("not valid JSON"));
    let (s, v) = c.call(
        "POST",
        "/api/user/login",
        None,
        Some(json!({"username": 5, "password": "x"})),
    );
    assert_eq!((s, v["success"].clone()), (400, json!(false)));
    // Unknown path, wrong method.
    assert_eq!(c.call("GET", "/api/nope", None, None).0, 404);
    assert_eq!(c.call("GET", "/api/user/login", None, None).0, 405);
    // Static paths never leave www/.
    for p in ["/../Cargo.toml", "/%2e%2e/Cargo.toml", "/..%2fCargo.toml"] {
        let (s, _, _) = raw_http(
            &c,
            format!("GET {p} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(s, 404, "{p}");
    }
    check_others();
}

#[test]
fn a_body_shorter_than_its_length_waits_without_blocking_others() {
    let c = Coordinator::start();
    let mut s = TcpStream::connect(c.api).unwrap();
    s.write_all(b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"user")
        .unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    assert!(s.read(&mut buf).is_err(), "no answer to an incomplete body");
    let (st, _) = c.call("GET", "/api/stats", None, None);
    assert_eq!(st, 200);
}

#[test]
fn pipelined_http_is_answered_in_order() {
    let c = Coordinator::start();
    let mut req = Vec::new();
    for _ in 0..3 {
        req.extend_from_slice(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n");
        // A login runs on a worker; the answers still keep their order.
        let body = br#"{"username":"admin","password":"wrong-password"}"#;
        req.extend_from_slice(
            format!(
                "POST /api/admin/login HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        );
        req.extend_from_slice(body);
    }
    req.extend_from_slice(b"GET /nope-final HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut s = TcpStream::connect(c.api).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&req).unwrap();
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(i, _)| &text[i + 9..i + 12])
        .collect();
    assert_eq!(
        statuses,
        vec!["200", "401", "200", "401", "200", "401", "404"]
    );
}
