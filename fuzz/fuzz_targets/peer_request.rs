//! The peer protocol codec (`p2pshare::proto::peer`): request lines as a
//! serving peer reads them and answer lines as a fetcher reads them, fed a
//! stream split at fuzzer-chosen points.
//!
//! Input: bytes 0..4 pick up to two cut points; the rest is the stream.
//!
//! Invariants: no panic; a frame never uses more than the buffer; the frames
//! are the same whatever the split; a decoded request or answer re-encodes to
//! a line that decodes to the same value; `parse_u64` agrees with the
//! standard library on digit strings.
#![no_main]

use libfuzzer_sys::fuzz_target;
use p2pshare::proto::peer::{
    decode_reply, decode_request, encode_reply, encode_request, parse_u64, Decoded, MAX_LINE,
};

fn run<T: std::fmt::Debug>(
    parts: &[&[u8]],
    decode: impl Fn(&[u8]) -> Decoded<T>,
) -> Vec<Decoded<T>> {
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        loop {
            match decode(&buf) {
                Decoded::Partial => {
                    assert!(buf.len() <= MAX_LINE + 1, "Partial over the cap");
                    assert!(!buf.contains(&b'\n'));
                    break;
                }
                d @ (Decoded::Frame(_, used) | Decoded::Invalid(_, used)) => {
                    assert!(
                        used > 0 && used <= buf.len(),
                        "used {used} of {}",
                        buf.len()
                    );
                    assert_eq!(buf[used - 1], b'\n');
                    assert!(used <= MAX_LINE + 2);
                    buf.drain(..used);
                    out.push(d);
                }
                Decoded::TooLong => {
                    out.push(Decoded::TooLong);
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (head, stream) = data.split_at(4);
    let mut cuts: Vec<usize> = head
        .chunks(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (stream.len() + 1))
        .collect();
    cuts.sort_unstable();
    let parts = [
        &stream[..cuts[0]],
        &stream[cuts[0]..cuts[1]],
        &stream[cuts[1]..],
    ];

    let requests = run(&[stream], decode_request);
    assert_eq!(requests, run(&parts, decode_request), "split {parts:?}");
    for d in &requests {
        if let Decoded::Frame(req, _) = d {
            if let Some(line) = encode_request(req) {
                assert_eq!(
                    decode_request(&line),
                    Decoded::Frame(req.clone(), line.len()),
                    "round trip of {req:?}"
                );
            }
        }
    }

    let replies = run(&[stream], decode_reply);
    assert_eq!(replies, run(&parts, decode_reply), "split {parts:?}");
    for d in &replies {
        if let Decoded::Frame(reply, _) = d {
            let line = encode_reply(reply);
            assert_eq!(
                decode_reply(&line),
                Decoded::Frame(reply.clone(), line.len()),
                "round trip of {reply:?}"
            );
        }
    }

    // parse_u64 is the standard parser minus signs, within 20 digits.
    let word = stream.split(|&b| b == b' ').next().unwrap_or(&[]);
    let std = std::str::from_utf8(word)
        .ok()
        .filter(|w| !w.is_empty() && w.len() <= 20 && w.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|w| w.parse::<u64>().ok());
    assert_eq!(parse_u64(word), std, "{word:?}");
});
