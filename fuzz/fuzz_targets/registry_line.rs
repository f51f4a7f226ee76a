//! The registry's line framing (`reactor::line`) and request decoder
//! (`p2pshare::proto::registry`), fed a stream split at fuzzer-chosen points.
//!
//! Input: byte 0 picks the line cap (registry's 1 MiB, or a small one so the
//! cap is reached by short inputs), bytes 1..7 pick up to three cut points,
//! the rest is the stream.
//!
//! Invariants: no panic; a frame never uses more than the buffer and ends at
//! `\n` (or `\r\n`); `Partial` means no newline yet and under the cap; the
//! frames (and whether the stream ends in `TooLong`) are the same whatever the
//! split; a decoded request re-encodes to a line that decodes to the same
//! request; every refusal reason fits an ERROR reply that is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pshare::proto::registry::{
    error_line, decode_request, push_f64, push_json_str, push_u64, FileMeta, HeartbeatState,
    Request, MAX_LINE,
};
use reactor::line::{next_line, Line};

#[derive(Debug, PartialEq)]
enum Event {
    Frame(Vec<u8>),
    TooLong,
}

/// Feeds `parts` one after another into a buffer the way a connection does,
/// draining every complete line; stops at `TooLong` (the connection closes).
fn run(parts: &[&[u8]], cap: usize) -> Vec<Event> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        loop {
            match next_line(&buf, cap) {
                Line::Complete(line, used) => {
                    assert!(used <= buf.len(), "used {used} of {}", buf.len());
                    assert!(used > line.len());
                    assert!(line.len() <= cap);
                    assert!(!line.contains(&b'\n'));
                    let sep = &buf[line.len()..used];
                    assert!(sep == b"\n" || sep == b"\r\n", "separator {sep:?}");
                    assert_eq!(line.as_ptr(), buf.as_ptr());
                    out.push(Event::Frame(line.to_vec()));
                    buf.drain(..used);
                }
                Line::Partial => {
                    assert!(!buf.contains(&b'\n'), "Partial with a newline in reach");
                    assert!(buf.len() <= cap + 1, "Partial over the cap");
                    break;
                }
                Line::TooLong => {
                    out.push(Event::TooLong);
                    return out;
                }
            }
        }
    }
    out
}

fn json_str(out: &mut Vec<u8>, s: &str) {
    push_json_str(out, s);
}

fn field_str(out: &mut Vec<u8>, key: &str, v: &str) {
    json_str(out, key);
    out.push(b':');
    json_str(out, v);
    out.push(b',');
}

fn meta(out: &mut Vec<u8>, m: &FileMeta) {
    out.extend_from_slice(b"{\"size\":");
    push_u64(out, m.size);
    out.extend_from_slice(b",\"modified\":");
    push_f64(out, m.modified);
    if let Some(p) = m.published_at {
        out.extend_from_slice(b",\"published_at\":");
        push_f64(out, p);
    }
    out.extend_from_slice(if m.is_published {
        b",\"is_published\":true"
    } else {
        b",\"is_published\":false"
    });
    if let Some(s) = &m.sha256 {
        out.push(b',');
        json_str(out, "sha256");
        out.push(b':');
        json_str(out, s);
    }
    if let Some(r) = &m.root {
        out.push(b',');
        json_str(out, "root");
        out.push(b':');
        json_str(out, r);
    }
    out.push(b'}');
}

/// A request line for `req`, written with the crate's own JSON writers.
fn encode(req: &Request<'_>) -> Vec<u8> {
    let mut o = b"{\"action\":".to_vec();
    json_str(&mut o, req.action().name());
    o.extend_from_slice(b",\"data\":{");
    match req {
        Request::Register {
            hostname,
            port,
            ip,
            display_name,
            files,
            token,
        } => {
            field_str(&mut o, "hostname", hostname);
            if let Some(v) = ip {
                field_str(&mut o, "ip", v);
            }
            if let Some(v) = display_name {
                field_str(&mut o, "display_name", v);
            }
            if let Some(v) = token {
                field_str(&mut o, "token", v);
            }
            o.extend_from_slice(b"\"files_metadata\":{");
            for (i, (name, m)) in files.iter().enumerate() {
                if i > 0 {
                    o.push(b',');
                }
                json_str(&mut o, name);
                o.push(b':');
                meta(&mut o, m);
            }
            o.extend_from_slice(b"},\"port\":");
            push_u64(&mut o, u64::from(*port));
        }
        Request::Publish {
            hostname,
            fname,
            meta: m,
        } => {
            field_str(&mut o, "hostname", hostname);
            field_str(&mut o, "fname", fname);
            if let Some(s) = &m.sha256 {
                field_str(&mut o, "sha256", s);
            }
            if let Some(r) = &m.root {
                field_str(&mut o, "root", r);
            }
            if let Some(p) = m.published_at {
                o.extend_from_slice(b"\"published_at\":");
                push_f64(&mut o, p);
                o.push(b',');
            }
            o.extend_from_slice(b"\"size\":");
            push_u64(&mut o, m.size);
            o.extend_from_slice(b",\"modified\":");
            push_f64(&mut o, m.modified);
        }
        Request::Unpublish { hostname, fname } => {
            field_str(&mut o, "fname", fname);
            json_str(&mut o, "hostname");
            o.push(b':');
            json_str(&mut o, hostname);
        }
        Request::Request { fname, sha256 } => {
            if let Some(s) = sha256 {
                field_str(&mut o, "sha256", s);
            }
            json_str(&mut o, "fname");
            o.push(b':');
            json_str(&mut o, fname);
        }
        Request::Discover { hostname } | Request::Unregister { hostname } => {
            json_str(&mut o, "hostname");
            o.push(b':');
            json_str(&mut o, hostname);
        }
        Request::Ping { hostname, state } => {
            if let Some(s) = state {
                let s = match s {
                    HeartbeatState::Idle => "idle",
                    HeartbeatState::Active => "active",
                    HeartbeatState::Busy => "busy",
                };
                field_str(&mut o, "state", s);
            }
            json_str(&mut o, "hostname");
            o.push(b':');
            json_str(&mut o, hostname);
        }
        Request::List {
            offset,
            limit,
            query,
        } => {
            if let Some(q) = query {
                field_str(&mut o, "query", q);
            }
            if let Some(v) = offset {
                o.extend_from_slice(b"\"offset\":");
                push_u64(&mut o, *v);
                o.push(b',');
            }
            if let Some(v) = limit {
                o.extend_from_slice(b"\"limit\":");
                push_u64(&mut o, *v);
                o.push(b',');
            }
            o.extend_from_slice(b"\"x\":0");
        }
    }
    o.extend_from_slice(b"}}");
    o
}

/// serde_json's default float parser may be one unit in the last place off;
/// that is not a codec bug.
fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= a.abs().max(b.abs()) * 4.0 * f64::EPSILON
}

fn close_meta(a: &FileMeta, b: &FileMeta) -> bool {
    a.size == b.size
        && close(a.modified, b.modified)
        && match (a.published_at, b.published_at) {
            (None, None) => true,
            (Some(x), Some(y)) => close(x, y),
            _ => false,
        }
        && a.is_published == b.is_published
        && a.sha256 == b.sha256
}

fn same(a: &Request<'_>, b: &Request<'_>) -> bool {
    match (a, b) {
        (
            Request::Register {
                hostname: h1,
                port: p1,
                ip: i1,
                display_name: d1,
                files: f1,
                token: t1,
            },
            Request::Register {
                hostname: h2,
                port: p2,
                ip: i2,
                display_name: d2,
                files: f2,
                token: t2,
            },
        ) => {
            h1 == h2
                && p1 == p2
                && i1 == i2
                && d1 == d2
                && t1 == t2
                && f1.len() == f2.len()
                && f1
                    .iter()
                    .zip(f2)
                    .all(|((n1, m1), (n2, m2))| n1 == n2 && close_meta(m1, m2))
        }
        (
            Request::Publish {
                hostname: h1,
                fname: f1,
                meta: m1,
            },
            Request::Publish {
                hostname: h2,
                fname: f2,
                meta: m2,
            },
        ) => h1 == h2 && f1 == f2 && close_meta(m1, m2),
        _ => a == b,
    }
}

fn check_request(line: &[u8]) {
    match decode_request(line) {
        Ok(req) => {
            let again = encode(&req);
            assert!(
                !again.contains(&b'\n'),
                "an encoded request holds a newline"
            );
            match decode_request(&again) {
                Ok(back) => assert!(
                    same(&req, &back),
                    "round trip changed the request:\n{req:?}\n{back:?}\n{}",
                    String::from_utf8_lossy(&again)
                ),
                Err(e) => panic!(
                    "re-encoded request refused: {e}\n{req:?}\n{}",
                    String::from_utf8_lossy(&again)
                ),
            }
        }
        Err(reason) => {
            assert!(reason.len() <= 512, "reason of {} bytes", reason.len());
            let reply = error_line(&reason);
            assert_eq!(reply.last(), Some(&b'\n'));
            assert_eq!(reply.iter().filter(|&&b| b == b'\n').count(), 1);
            let v: serde_json::Value = serde_json::from_slice(&reply[..reply.len() - 1])
                .expect("an ERROR reply is valid JSON");
            assert_eq!(v["status"], "ERROR");
            assert_eq!(v["reason"].as_str(), Some(reason.as_str()));
        }
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 7 {
        return;
    }
    let (head, stream) = data.split_at(7);
    let cap = if head[0] & 0x80 != 0 {
        MAX_LINE
    } else {
        usize::from(head[0])
    };
    let mut cuts: Vec<usize> = head[1..]
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let mut parts = Vec::new();
    let mut at = 0;
    for c in cuts {
        parts.push(&stream[at..c]);
        at = c;
    }
    parts.push(&stream[at..]);

    let whole = run(&[stream], cap);
    let split = run(&parts, cap);
    assert_eq!(whole, split, "frames depend on the split {parts:?}");
    for ev in &whole {
        if let Event::Frame(line) = ev {
            check_request(line);
        }
    }
});
