//! A fast path for the request lines a coordinator reads most: PING,
//! REQUEST, DISCOVER, UNREGISTER, PUBLISH and REGISTER written the way every encoder
//! writes them (`{"action":"…","data":{…}}`, no spaces, no escapes, keys in
//! any order). It reads the line once, borrowing every string, where the
//! general decoder parses it twice (the envelope, then its `data`) through
//! serde. Anything it does not recognise exactly — whitespace, an escape, an
//! unknown or repeated key, `null`, a sign, an integer too long to be exact,
//! a name the rules refuse — is `None`, and the general decoder decides (and
//! words the error). Numbers with a fraction or an exponent are read by
//! serde_json's own parser. A REGISTER (every node after a coordinator
//! restart, all at once) cost the general decoder ~18,000 instructions. So it never accepts what the general decoder refuses, and what it
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
    /// A non-negative number with a fraction or an exponent, as written
    /// (checked against JSON's grammar; read by serde_json's own number
    /// parser, so both decoders get the same f64).
    Float(&'a str),
    Bool(bool),
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
            b'0'..=b'9' => self.number(),
            b't' => self.lit(b"true").map(|()| Value::Bool(true)),
            b'f' => self.lit(b"false").map(|()| Value::Bool(false)),
            _ => None,
        }
    }

    /// `int frac? exp?` of JSON's grammar, without a sign.
    fn number(&mut self) -> Option<Value<'a>> {
        let rest = &self.b[self.i..];
        let digits = |from: usize| {
            rest[from..]
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count()
        };
        let whole = digits(0);
        // JSON has no leading zeros.
        if whole > 1 && rest[0] == b'0' {
            return None;
        }
        let mut n = whole;
        let mut float = false;
        if rest.get(n) == Some(&b'.') {
            let d = digits(n + 1);
            if d == 0 {
                return None;
            }
            n += 1 + d;
            float = true;
        }
        if matches!(rest.get(n), Some(b'e' | b'E')) {
            let mut m = n + 1;
            if matches!(rest.get(m), Some(b'+' | b'-')) {
                m += 1;
            }
            let d = digits(m);
            if d == 0 {
                return None;
            }
            n = m + d;
            float = true;
        }
        let token = self.s.get(self.i..self.i + n)?;
        self.i += n;
        if float {
            return Some(Value::Float(token));
        }
        // Longer integers may not be exact as an f64: the general decoder's.
        if whole > 15 {
            return None;
        }
        let v = token
            .bytes()
            .fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
        Some(Value::Int(v))
    }

    /// `"key":value` pairs up to the closing `}` of an object whose `{` was
    /// read; `take` reads each value and stores it (None: not a key this
    /// path knows, or a value it does not take).
    fn members(&mut self, mut take: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.lit(b"\"")?;
            // No key this path knows holds an escape or a control character.
            let key = self.string()?;
            self.lit(b":")?;
            take(self, key)?;
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

    /// [`Self::members`] whose values are all scalars.
    fn fields(&mut self, mut take: impl FnMut(&'a str, Value<'a>) -> Option<()>) -> Option<()> {
        self.members(|p, key| {
            let v = p.value()?;
            take(key, v)
        })
    }

    /// REGISTER's `files_metadata`: `{"name":{meta},...}`, in name order
    /// as the general decoder's map gives them. A repeated name is the
    /// general decoder's (its map keeps the last).
    fn files(&mut self) -> Option<Vec<(String, FileMeta)>> {
        self.lit(b"{")?;
        let mut files = Vec::new();
        self.members(|p, name| {
            p.lit(b"{")?;
            let meta = p.meta()?;
            files.push((name.to_owned(), meta));
            Some(())
        })?;
        files.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        if files.windows(2).any(|w| w[0].0 == w[1].0) || !files.iter().all(|(n, _)| valid_name(n)) {
            return None;
        }
        Some(files)
    }

    /// One file's metadata object, after its `{`.
    fn meta(&mut self) -> Option<FileMeta> {
        let mut m = MetaFields::default();
        self.fields(|k, v| m.take(k, v))?;
        m.finish()
    }
}

/// A file's metadata fields as they arrive, in REGISTER's `files_metadata`
/// and in PUBLISH (which has no `is_published`: a published file is).
#[derive(Default)]
struct MetaFields {
    size: Option<u64>,
    modified: Option<f64>,
    published_at: Option<f64>,
    is_published: Option<bool>,
    sha256: Option<String>,
    root: Option<String>,
}

impl MetaFields {
    /// Stores field `k` (None: not a metadata field, or a value it does not take).
    fn take(&mut self, k: &str, v: Value<'_>) -> Option<()> {
        match k {
            "size" => once(&mut self.size, int(v)),
            "modified" => once(&mut self.modified, unix_time(v)),
            "published_at" => once(&mut self.published_at, number(v)),
            "is_published" => once(&mut self.is_published, boolean(v)),
            "sha256" => once(&mut self.sha256, text(v).and_then(hex)),
            "root" => once(&mut self.root, text(v).and_then(hex)),
            _ => None,
        }
    }

    fn finish(self) -> Option<FileMeta> {
        Some(FileMeta {
            size: self.size?,
            modified: self.modified?,
            published_at: self.published_at,
            is_published: self.is_published.unwrap_or(true),
            sha256: self.sha256,
            root: self.root,
        })
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
        _ => None,
    }
}

fn int(v: Value<'_>) -> Option<u64> {
    match v {
        Value::Int(n) => Some(n),
        _ => None,
    }
}

fn boolean(v: Value<'_>) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(b),
        _ => None,
    }
}

/// A number as an f64 field reads it: integers exactly, the rest through
/// serde_json's parser (the one the general decoder uses).
fn number(v: Value<'_>) -> Option<f64> {
    match v {
        Value::Int(n) => Some(n as f64),
        Value::Float(t) => serde_json::from_str::<f64>(t).ok(),
        _ => None,
    }
}

/// A `modified` time as the general decoder accepts it.
fn unix_time(v: Value<'_>) -> Option<f64> {
    number(v).filter(|t| t.is_finite() && *t >= 0.0)
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
                "hostname" => once(&mut hostname, text(v)),
                "state" => once(
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
                "fname" => once(&mut fname, text(v)),
                "sha256" => once(&mut sha256, text(v).and_then(hex)),
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
                "hostname" => once(&mut hostname, text(v)),
                _ => None,
            })?;
            let hostname = name(hostname?)?;
            if action == "DISCOVER" {
                Request::Discover { hostname }
            } else {
                Request::Unregister { hostname }
            }
        }
        "REGISTER" => {
            let (mut hostname, mut port, mut ip) = (None, None, None);
            let (mut display_name, mut files, mut token) = (None, None, None);
            p.members(|p, k| match k {
                "hostname" => once(&mut hostname, text(p.value()?)),
                "port" => once(
                    &mut port,
                    int(p.value()?).and_then(|n| u16::try_from(n).ok()),
                ),
                "ip" => once(&mut ip, text(p.value()?).filter(|s| s.len() <= 64)),
                "display_name" => once(
                    &mut display_name,
                    text(p.value()?).filter(|s| s.len() <= 256),
                ),
                "files_metadata" => once(&mut files, p.files()),
                "token" => once(&mut token, text(p.value()?)),
                _ => None,
            })?;
            Request::Register {
                hostname: name(hostname?)?,
                port: port?,
                ip: ip.map(Cow::Borrowed),
                display_name: display_name.map(Cow::Borrowed),
                files: files.unwrap_or_default(),
                token: token.map(Cow::Borrowed),
            }
        }
        "PUBLISH" => {
            let (mut hostname, mut fname) = (None, None);
            let mut m = MetaFields::default();
            p.fields(|k, v| match k {
                "hostname" => once(&mut hostname, text(v)),
                "fname" => once(&mut fname, text(v)),
                // Not a PUBLISH field: the general decoder ignores it.
                "is_published" => None,
                _ => m.take(k, v),
            })?;
            Request::Publish {
                hostname: name(hostname?)?,
                fname: name(fname?)?,
                meta: m.finish()?,
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
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":0,"modified":1700000000.123456,"published_at":1.5e9}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":0,"modified":0.1e-3}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1}}"#,
            r#"{"action":"REGISTER","data":{"port":65535,"hostname":"h","ip":"10.0.0.1","display_name":"Ann Ü","token":"a.b.c","files_metadata":{}}}"#,
            &format!(
                r#"{{"action":"REGISTER","data":{{"hostname":"h","port":9,"files_metadata":{{"z.txt":{{"size":3,"modified":1.25,"is_published":false}},"a b.bin":{{"sha256":"{SHA}","root":"{SHA}","size":0,"modified":7,"published_at":8,"is_published":true}}}},"token":"t"}}}}"#
            ),
            &format!(
                r#"{{"action":"PUBLISH","data":{{"root":"{SHA}","size":123456789012345,"fname":"f","modified":0,"published_at":5,"hostname":"h","sha256":"{SHA}"}}}}"#
            ),
        ] {
            assert!(agrees(line), "not on the fast path: {line}");
        }
        // Encoders' own lines take it too.
        let meta = |modified: f64, sha: bool| FileMeta {
            size: 123,
            modified,
            published_at: Some(modified + 0.5),
            is_published: true,
            sha256: sha.then(|| SHA.to_ascii_lowercase()),
            root: None,
        };
        for enc in [
            Request::Ping {
                hostname: "h".into(),
                state: Some(HeartbeatState::Active),
            },
            Request::Register {
                hostname: "node-1".into(),
                port: 40000,
                ip: Some("127.0.0.1".into()),
                display_name: Some("Node One".into()),
                files: vec![
                    ("a.txt".into(), meta(1_700_000_000.25, true)),
                    ("b.txt".into(), meta(1_700_000_001.0, false)),
                ],
                token: Some("x.y.z".into()),
            },
            Request::Publish {
                hostname: "node-1".into(),
                fname: "a.txt".into(),
                meta: meta(1_699_999_999.123_456_7, true),
            },
        ] {
            let line = enc.line();
            let text = std::str::from_utf8(&line[..line.len() - 1]).unwrap();
            assert!(agrees(text), "not on the fast path: {text}");
            assert_eq!(decode(&line[..line.len() - 1]), Some(enc));
        }
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
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1.5,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1,"modified":1.}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1,"modified":1e}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1,"modified":1e999}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1,"modified":null}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":65536}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":{"a":{"size":1,"modified":2},"a":{"size":1,"modified":2}}}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":{"a/b":{"size":1,"modified":2}}}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":{"a":{"size":1,"modified":2,"path":"/x"}}}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":null}}"#,
            r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"token":null}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":01,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":-1,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1e3,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":1234567890123456,"modified":1}}"#,
            r#"{"action":"PUBLISH","data":{"hostname":"h","size":1,"modified":1}}"#,
            r#"{"action":"LIST","data":{}}"#,
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
            r#"{"action":"PUBLISH","data":{"hostname":"h","fname":"f","size":10,"modified":17.25e1,"published_at":0.5}}"#
                .to_string(),
            format!(
                r#"{{"action":"REGISTER","data":{{"hostname":"h","port":80,"ip":"1.2.3.4","files_metadata":{{"b":{{"size":1,"modified":2.5,"is_published":false}},"a":{{"size":3,"modified":4,"sha256":"{SHA}"}}}},"token":"t.t.t"}}}}"#
            ),
        ];
        let alphabet = b"{}\":,\\ 0123456789.eE+-abcxyz/\x01\xc3\xbctruefalsn";
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
