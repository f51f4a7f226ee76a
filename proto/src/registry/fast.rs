//! A fast path for the request lines a coordinator reads most: PING,
//! REQUEST, DISCOVER, UNREGISTER and PUBLISH written the way every encoder
//! writes them (`{"action":"…","data":{…}}`, no spaces, no escapes, keys in
//! any order). It reads the line once, borrowing every string, where the
//! general decoder parses it twice (the envelope, then its `data`) through
//! serde. Anything it does not recognise exactly — whitespace, an escape, an
//! unknown or repeated key, a number that is not a plain integer, a name the
//! rules refuse — is `None`, and the general decoder decides (and words the
//! error). So it never accepts what the general decoder refuses, and what it
//! accepts decodes the same: the `registry_line` fuzz target and the tests
//! below hold the two to it.

use std::borrow::Cow;

use reactor::bytes::{below, eq, first_of};

use super::request::{check_hex, valid_name};
use super::{FileMeta, HeartbeatState, Request};

/// The line, checked as UTF-8 once: every string is a slice of it between
/// ASCII quotes, so it is valid UTF-8 too without another check.
struct Cursor<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

/// Where a JSON string ends or stops being plain: `"`, `\\` or a control
/// character (eight bytes at a time: these scans were most of the decoder).
fn string_stop(w: u64) -> u64 {
    eq(w, b'"') | eq(w, b'\\') | below(w, 0x20)
}

/// A value as the fast path accepts it.
enum Value<'a> {
    Str(&'a str),
    /// A plain non-negative integer of at most 15 digits (exact as an f64).
    Int(u64),
}

impl<'a> Cursor<'a> {
    fn lit(&mut self, s: &[u8]) -> Option<()> {
        if self.b[self.i..].starts_with(s) {
            self.i += s.len();
            Some(())
        } else {
            None
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// The bytes up to the next `"` (which is consumed): no escape, no
    /// control character.
    fn string(&mut self) -> Option<&'a str> {
        let rest = &self.b[self.i..];
        let end = first_of(rest, string_stop)?;
        if rest[end] != b'"' {
            return None;
        }
        let s = self.s.get(self.i..self.i + end)?;
        self.i += end + 1;
        Some(s)
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.peek()? {
            b'"' => {
                self.i += 1;
                self.string().map(Value::Str)
            }
            b'0'..=b'9' => {
                let rest = &self.b[self.i..];
                let n = rest.iter().take_while(|c| c.is_ascii_digit()).count();
                // JSON has no leading zeros; longer numbers may not be exact.
                if n > 15 || (n > 1 && rest[0] == b'0') {
                    return None;
                }
                // A fraction or an exponent: the general decoder's job.
                if matches!(rest.get(n), Some(b'.' | b'e' | b'E')) {
                    return None;
                }
                let v = rest[..n]
                    .iter()
                    .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
                self.i += n;
                Some(Value::Int(v))
            }
            _ => None,
        }
    }

    /// `"key":value` pairs up to the closing `}` of an object whose `{` was
    /// read; `take` stores each (None: not a key this path knows).
    fn fields(&mut self, mut take: impl FnMut(&'a [u8], Value<'a>) -> Option<()>) -> Option<()> {
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.lit(b"\"")?;
            let rest = &self.b[self.i..];
            // No key this path knows holds a control character either.
            let end = first_of(rest, string_stop)?;
            if rest[end] != b'"' {
                return None;
            }
            let key = &rest[..end];
            self.i += end + 1;
            self.lit(b":")?;
            let v = self.value()?;
            take(key, v)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }
}

/// Stores `v` in an empty slot; a repeated key is the general decoder's
/// to refuse.
fn once<T>(slot: &mut Option<T>, v: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(v?);
    Some(())
}

fn text(v: Value<'_>) -> Option<&str> {
    match v {
        Value::Str(s) => Some(s),
        Value::Int(_) => None,
    }
}

fn int(v: Value<'_>) -> Option<u64> {
    match v {
        Value::Int(n) => Some(n),
        Value::Str(_) => None,
    }
}

fn name(s: &str) -> Option<Cow<'_, str>> {
    valid_name(s).then_some(Cow::Borrowed(s))
}

fn hex(s: &str) -> Option<String> {
    check_hex("sha256", Some(s.to_owned())).ok().flatten()
}

/// The request `line` means, when it has one of the shapes above.
pub(super) fn decode(line: &[u8]) -> Option<Request<'_>> {
    let whole = if line.is_ascii() {
        // SAFETY: ASCII bytes are UTF-8 (the full check cost three times
        // the ASCII one on every line).
        unsafe { std::str::from_utf8_unchecked(line) }
    } else {
        std::str::from_utf8(line).ok()?
    };
    let mut p = Cursor {
        s: whole,
        b: line,
        i: 0,
    };
    p.lit(b"{\"action\":\"")?;
    let action = p.string()?;
    p.lit(b",\"data\":{")?;
    let req = match action {
        "PING" => {
            let (mut hostname, mut state) = (None, None);
            p.fields(|k, v| match k {
                b"hostname" => once(&mut hostname, text(v)),
                b"state" => once(
                    &mut state,
                    match text(v)? {
                        "idle" => Some(HeartbeatState::Idle),
                        "active" => Some(HeartbeatState::Active),
                        "busy" => Some(HeartbeatState::Busy),
                        _ => None,
                    },
                ),
                _ => None,
            })?;
            Request::Ping {
                hostname: name(hostname?)?,
                state,
            }
        }
        "REQUEST" => {
            let (mut fname, mut sha256) = (None, None);
            p.fields(|k, v| match k {
                b"fname" => once(&mut fname, text(v)),
                b"sha256" => once(&mut sha256, text(v).and_then(hex)),
                _ => None,
            })?;
            Request::Request {
                fname: name(fname?)?,
                sha256,
            }
        }
        "DISCOVER" | "UNREGISTER" => {
            let mut hostname = None;
            p.fields(|k, v| match k {
                b"hostname" => once(&mut hostname, text(v)),
                _ => None,
            })?;
            let hostname = name(hostname?)?;
            if action == "DISCOVER" {
                Request::Discover { hostname }
            } else {
                Request::Unregister { hostname }
            }
        }
        "PUBLISH" => {
            let (mut hostname, mut fname, mut size, mut modified) = (None, None, None, None);
            let (mut published_at, mut sha256, mut root) = (None, None, None);
            p.fields(|k, v| match k {
                b"hostname" => once(&mut hostname, text(v)),
                b"fname" => once(&mut fname, text(v)),
                b"size" => once(&mut size, int(v)),
                b"modified" => once(&mut modified, int(v)),
                b"published_at" => once(&mut published_at, int(v)),
                b"sha256" => once(&mut sha256, text(v).and_then(hex)),
                b"root" => once(&mut root, text(v).and_then(hex)),
                _ => None,
            })?;
            Request::Publish {
                hostname: name(hostname?)?,
                fname: name(fname?)?,
                meta: FileMeta {
                    size: size?,
                    modified: modified? as f64,
                    published_at: published_at.map(|t| t as f64),
                    is_published: true,
                    sha256,
                    root,
                },
            }
        }
        _ => return None,
    };
    p.lit(b"}")?;
    (p.i == line.len()).then_some(req)
}

#[cfg(test)]
mod tests {
    use super::super::request::decode_request_general;
    use super::*;

    /// Every line: the fast path either passes or agrees with the general decoder.
    fn agrees(line: &str) -> bool {
        match decode(line.as_bytes()) {
            None => false,
            Some(fast) => {
                let general = decode_request_general(line.as_bytes());
                assert_eq!(general.as_ref(), Ok(&fast), "{line}");
                true
            }
        }
    }

    const SHA: &str = "ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789";

    #[test]
    fn the_common_shapes_take_the_fast_path_and_decode_the_same() {
        for line in [
            r#"{"action":"PING","data":{"hostname":"alice"}}"#,
            r#"{"action":"PING","data":{"hostname":"alice","state":"busy"}}"#,
            r#"{"action":"PING","data":{"state":"idle","hostname":"a b ü"}}"#,
            r#"{"action":"REQUEST","data":{"fname":"report.pdf"}}"#,
            &format!(r#"{{"action":"REQUEST","data":{{"fname":"r","sha256":"{SHA}"}}}}"#),
            r#"{"action":"DISCOVER","data":{"hostname":"bob"}}"#,
            r#"{"action":"UNREGISTER","data":{"hostname":"bob"}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":0,"modified":1700000000}}"#,
            &format!(
                r#"{{"action":"PUBLISH","data":{{"root":"{SHA}","size":123456789012345,"fname":"f","modified":0,"published_at":5,"hostname":"h","sha256":"{SHA}"}}}}"#
            ),
        ] {
            assert!(agrees(line), "not on the fast path: {line}");
        }
        // Encoders' own lines take it too.
        let enc = Request::Ping {
            hostname: "h".into(),
            state: Some(HeartbeatState::Active),
        }
        .line();
        assert!(agrees(std::str::from_utf8(&enc[..enc.len() - 1]).unwrap()));
    }

    #[test]
    fn anything_else_is_left_to_the_general_decoder() {
        for line in [
            r#"{"action":"PING","data":{"hostname":"a","hostname":"b"}}"#,
            r#"{"action":"PING","data":{"hostname":"a","extra":1}}"#,
            r#"{"action":"PING","data":{"hostname":"a\u0062"}}"#,
            r#"{"action":"PING","data":{"hostname":"a/b"}}"#,
            r#"{"action":"PING","data":{"hostname":".."}}"#,
            r#"{"action":"PING","data":{"hostname":""}}"#,
            r#"{"action":"PING","data":{"hostname":"a","state":"asleep"}}"#,
            r#"{"action":"PING","data":{"hostname":"a","state":null}}"#,
            r#"{"action":"PING","data":{}}"#,
            r#"{"action":"PING", "data":{"hostname":"a"}}"#,
            r#"{"data":{"hostname":"a"},"action":"PING"}"#,
            r#"{"action":"PING","data":{"hostname":"a"}} "#,
            r#"{"action":"PING","data":{"hostname":"a"}}}"#,
            r#"{"action":"PING","data":{"hostname":"a"}"#,
            r#"{"action":"REQUEST","data":{"fname":"f","sha256":"abc"}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1,"modified":1.5}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":01,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":-1,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1e3,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1234567890123456,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","size":1,"modified":1}}"#,
            r#"{"action":"LIST","data":{}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1}}"#,
        ] {
            assert!(
                decode(line.as_bytes()).is_none(),
                "took the fast path: {line}"
            );
        }
        assert!(decode(b"{\"action\":\"PING\",\"data\":{\"hostname\":\"\xff\"}}").is_none());
        assert!(decode(b"{\"action\":\"PING\",\"data\":{\"hostname\":\"a\tb\"}}").is_none());
    }

    /// Mutations of good lines (a deterministic walk, no crate needed): the
    /// fast path never accepts what the general decoder refuses, and agrees
    /// on what both accept.
    #[test]
    fn mutated_lines_never_split_the_two_decoders() {
        let seeds = [
            r#"{"action":"PING","data":{"hostname":"alice","state":"busy"}}"#.to_string(),
            format!(r#"{{"action":"REQUEST","data":{{"fname":"r.txt","sha256":"{SHA}"}}}}"#),
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":10,"modified":17}}"#
                .to_string(),
            r#"{"action":"DISCOVER","data":{"hostname":"bob"}}"#.to_string(),
        ];
        let alphabet = b"{}\":,\\ 0123456789.eE-abcxyz/\x01\xc3\xbc";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut fast_taken = 0;
        for _ in 0..200_000 {
            let seed = seeds[(next() % seeds.len() as u64) as usize].as_bytes();
            let mut line = seed.to_vec();
            for _ in 0..=(next() % 3) {
                let at = (next() % (line.len() as u64 + 1)) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 if at < line.len() => line[at] = c,
                    1 if at < line.len() => {
                        line.remove(at);
                    }
                    _ => line.insert(at, c),
                }
            }
            if let Some(fast) = decode(&line) {
                fast_taken += 1;
                assert_eq!(
                    decode_request_general(&line).as_ref(),
                    Ok(&fast),
                    "{}",
                    String::from_utf8_lossy(&line)
                );
            }
        }
        assert!(
            fast_taken > 1000,
            "only {fast_taken} mutants took the fast path"
        );
    }
}
