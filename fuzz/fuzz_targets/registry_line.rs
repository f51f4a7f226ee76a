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
//! request; the one-pass fast path and the general decoder agree on every
//! line; every refusal reason fits an ERROR reply that is valid JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pshare::proto::registry::{
    decode_request, decode_request_general, error_line, FileMeta, Request, MAX_LINE,
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
    // The one-pass fast path (taken first) and the general decoder agree:
    // the same request, or the same refusal.
    match (decode_request(line), decode_request_general(line)) {
        (Ok(a), Ok(b)) => assert!(same(&a, &b), "fast {a:?}\ngeneral {b:?}"),
        (Err(a), Err(b)) => assert_eq!(a, b),
        (a, b) => panic!(
            "the decoders disagree on {}:\n{a:?}\n{b:?}",
            String::from_utf8_lossy(line)
        ),
    }
    match decode_request(line) {
        Ok(req) => {
            // The protocol's own encoder, newline included: the newline
            // must be its last byte and the only one.
            let mut again = req.line();
            assert_eq!(again.pop(), Some(b'\n'), "a request line ends in a newline");
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
