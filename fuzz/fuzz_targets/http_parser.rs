//! The HTTP/1.1 request codec (`reactor::http::parse_request`) with its caps,
//! fed a stream as one piece and split at fuzzer-chosen points; also the
//! response codec and the query/percent decoding a route uses.
//!
//! Input: byte 0 picks the limits (the defaults, or small caps so short
//! inputs reach them), bytes 1..3 the caps, bytes 4..9 up to three cut
//! points; the rest is the stream.
//!
//! Invariants: no panic; `Done` never uses more than the buffer and its body
//! is exactly `Content-Length` bytes within the caps; `Partial` only while
//! under the head cap; the requests decoded, and whether the stream ends in a
//! rejection, are the same whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use reactor::http::{parse_request, parse_response, percent_decode, Limits, Parse, Request};

#[derive(Debug, PartialEq)]
enum End {
    /// Ran out of input (waiting for more).
    Open,
    /// Answered with this status and closed.
    Rejected(u16),
}

fn run(parts: &[&[u8]], limits: &Limits) -> (Vec<Request>, End) {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        loop {
            match parse_request(&buf, limits) {
                Parse::Done(req, used) => {
                    assert!(
                        used > 0 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    assert!(req.body.len() <= limits.max_body);
                    assert!(used - req.body.len() <= limits.max_head);
                    assert_eq!(&buf[used - req.body.len()..used], &req.body[..]);
                    let cl = req
                        .headers
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                        .map(|(_, v)| v.trim().parse::<usize>().expect("a checked length"));
                    assert_eq!(cl.unwrap_or(0), req.body.len());
                    assert!(req.headers.len() <= limits.max_headers);
                    assert!(req.header("transfer-encoding").is_none());
                    assert!(!req.path.contains('?'));
                    let _ = percent_decode(&req.path);
                    for pair in req.query.split('&') {
                        let k = pair.split_once('=').map_or(pair, |(k, _)| k);
                        if let Some(k) = percent_decode(k) {
                            assert!(req.query_param(&k).is_some());
                        }
                    }
                    out.push(req);
                    buf.drain(..used);
                }
                Parse::Partial => {
                    assert!(buf.len() <= limits.max_head + limits.max_body);
                    break;
                }
                Parse::Reject { status, message } => {
                    assert!(matches!(status, 400 | 411 | 413 | 431), "status {status}");
                    assert!(!message.is_empty());
                    return (out, End::Rejected(status));
                }
            }
        }
    }
    (out, End::Open)
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let (head, stream) = data.split_at(10);
    let limits = if head[0] & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head: 16 + usize::from(head[1]),
            max_body: usize::from(head[2]),
            max_headers: usize::from(head[3] % 16),
        }
    };
    let mut cuts: Vec<usize> = head[4..]
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

    let (whole, whole_end) = run(&[stream], &limits);
    let (split, split_end) = run(&parts, &limits);
    assert_eq!(whole, split, "requests depend on the split {parts:?}");
    match (&whole_end, &split_end) {
        (a, b) if a == b => {}
        // A head that turns out malformed past the head cap is 400 when read
        // at once and 431 when the cap is crossed first: both close, and
        // which one the client sees depends on how the bytes arrived.
        (End::Rejected(400 | 431), End::Rejected(400 | 431)) => {}
        (a, b) => panic!("the end depends on the split: {a:?} whole, {b:?} split {parts:?}"),
    }

    // The client side's response codec on the same bytes.
    let _ = parse_response(stream, usize::from(head[2]) * 16);
});
