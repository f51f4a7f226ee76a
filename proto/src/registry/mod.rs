//! The registry protocol: one JSON object per line. Parses a request
//! line into a typed [`Request`] with every bad-input rule applied, and writes
//! replies. Pure: no I/O, no registry state.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// A line longer than this is refused and the connection closed.
pub const MAX_LINE: usize = 1024 * 1024;
/// LIST pages hold at most this many hosts.
pub const MAX_PAGE: u64 = 1000;

/// One file's metadata as a peer reports it.
/// Unknown fields (a seed client's `path`, `added_at`) are ignored, never stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub modified: f64,
    #[serde(default)]
    pub published_at: Option<f64>,
    #[serde(default = "yes")]
    pub is_published: bool,
    #[serde(default)]
    pub sha256: Option<String>,
    /// SHA-256 (hex) of the file's piece hashes: lets a download check each
    /// piece from several hosts. Stored and returned as given.
    #[serde(default)]
    pub root: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq)]
pub enum Request<'a> {
    Register {
        hostname: Cow<'a, str>,
        port: u16,
        ip: Option<Cow<'a, str>>,
        display_name: Option<Cow<'a, str>>,
        files: Vec<(String, FileMeta)>,
        token: Option<Cow<'a, str>>,
    },
    Publish {
        hostname: Cow<'a, str>,
        fname: Cow<'a, str>,
        meta: FileMeta,
    },
    Unpublish {
        hostname: Cow<'a, str>,
        fname: Cow<'a, str>,
    },
    Request {
        fname: Cow<'a, str>,
        /// Only hosts offering this content (lower-case hex).
        sha256: Option<String>,
    },
    Discover {
        hostname: Cow<'a, str>,
    },
    Ping {
        hostname: Cow<'a, str>,
        state: Option<HeartbeatState>,
    },
    List {
        offset: Option<u64>,
        limit: Option<u64>,
        query: Option<Cow<'a, str>>,
    },
    Unregister {
        hostname: Cow<'a, str>,
    },
}

impl Request<'_> {
    pub fn action(&self) -> Action {
        match self {
            Request::Register { .. } => Action::Register,
            Request::Publish { .. } => Action::Publish,
            Request::Unpublish { .. } => Action::Unpublish,
            Request::Request { .. } => Action::Request,
            Request::Discover { .. } => Action::Discover,
            Request::Ping { .. } => Action::Ping,
            Request::List { .. } => Action::List,
            Request::Unregister { .. } => Action::Unregister,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Register,
    Publish,
    Unpublish,
    Request,
    Discover,
    Ping,
    List,
    Unregister,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::Register,
        Action::Publish,
        Action::Unpublish,
        Action::Request,
        Action::Discover,
        Action::Ping,
        Action::List,
        Action::Unregister,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::Register => "REGISTER",
            Action::Publish => "PUBLISH",
            Action::Unpublish => "UNPUBLISH",
            Action::Request => "REQUEST",
            Action::Discover => "DISCOVER",
            Action::Ping => "PING",
            Action::List => "LIST",
            Action::Unregister => "UNREGISTER",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeartbeatState {
    Idle,
    Active,
    Busy,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct RegisterData<'a> {
    #[serde(borrow)]
    hostname: Cow<'a, str>,
    port: u16,
    #[serde(borrow, default)]
    ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    display_name: Option<Cow<'a, str>>,
    #[serde(default)]
    files_metadata: Option<std::collections::BTreeMap<String, FileMeta>>,
    #[serde(borrow, default)]
    token: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PublishData<'a> {
    #[serde(borrow)]
    hostname: Cow<'a, str>,
    #[serde(borrow)]
    fname: Cow<'a, str>,
    size: u64,
    modified: f64,
    #[serde(default)]
    published_at: Option<f64>,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    root: Option<String>,
}

#[derive(Deserialize)]
struct HostFile<'a> {
    #[serde(borrow)]
    hostname: Cow<'a, str>,
    #[serde(borrow)]
    fname: Cow<'a, str>,
}

#[derive(Deserialize)]
struct RequestData<'a> {
    #[serde(borrow)]
    fname: Cow<'a, str>,
    #[serde(default)]
    sha256: Option<String>,
}

#[derive(Deserialize)]
struct Host<'a> {
    #[serde(borrow)]
    hostname: Cow<'a, str>,
}

#[derive(Deserialize)]
struct PingData<'a> {
    #[serde(borrow)]
    hostname: Cow<'a, str>,
    #[serde(default)]
    state: Option<HeartbeatState>,
}

#[derive(Deserialize, Default)]
struct ListData<'a> {
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(borrow, default)]
    query: Option<Cow<'a, str>>,
}

/// Parses one request line (without its newline). `Err` is the reason for
/// an ERROR reply; the connection stays usable.
pub fn parse_request(line: &[u8]) -> Result<Request<'_>, String> {
    let text = std::str::from_utf8(line)
        .map_err(|_| "invalid JSON: the line is not valid UTF-8".to_string())?;
    let env: Envelope =
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {}", clean(&e)))?;
    let data = |what: &str| -> Result<&str, String> {
        env.data
            .map(|d| d.get())
            .ok_or_else(|| format!("missing field `data` for {what}"))
    };
    fn typed<'b, T: Deserialize<'b>>(action: &str, raw: &'b str) -> Result<T, String> {
        serde_json::from_str(raw).map_err(|e| format!("invalid data for {action}: {}", clean(&e)))
    }
    let req = match env.action.as_ref() {
        "REGISTER" => {
            let d: RegisterData = typed("REGISTER", data("REGISTER")?)?;
            check_hostname(&d.hostname)?;
            let mut files = Vec::new();
            for (name, meta) in d.files_metadata.unwrap_or_default() {
                check_name(&name)?;
                let mut meta = meta;
                meta.sha256 = check_sha(meta.sha256.take())?;
                meta.root = check_hex("root", meta.root.take())?;
                check_time(meta.modified)?;
                files.push((name, meta));
            }
            if let Some(dn) = &d.display_name {
                if dn.len() > 256 {
                    return Err("invalid display_name: longer than 256 bytes".into());
                }
            }
            if let Some(ip) = &d.ip {
                if ip.len() > 64 {
                    return Err("invalid ip: longer than 64 bytes".into());
                }
            }
            Request::Register {
                hostname: d.hostname,
                port: d.port,
                ip: d.ip,
                display_name: d.display_name,
                files,
                token: d.token,
            }
        }
        "PUBLISH" => {
            let d: PublishData = typed("PUBLISH", data("PUBLISH")?)?;
            check_hostname(&d.hostname)?;
            check_name(&d.fname)?;
            let sha256 = check_sha(d.sha256)?;
            let root = check_hex("root", d.root)?;
            check_time(d.modified)?;
            Request::Publish {
                hostname: d.hostname,
                fname: d.fname,
                meta: FileMeta {
                    size: d.size,
                    modified: d.modified,
                    published_at: d.published_at,
                    is_published: true,
                    sha256,
                    root,
                },
            }
        }
        "UNPUBLISH" => {
            let d: HostFile = typed("UNPUBLISH", data("UNPUBLISH")?)?;
            check_hostname(&d.hostname)?;
            check_name(&d.fname)?;
            Request::Unpublish {
                hostname: d.hostname,
                fname: d.fname,
            }
        }
        "REQUEST" => {
            let d: RequestData = typed("REQUEST", data("REQUEST")?)?;
            check_name(&d.fname)?;
            Request::Request {
                fname: d.fname,
                sha256: check_sha(d.sha256)?,
            }
        }
        "DISCOVER" => {
            let d: Host = typed("DISCOVER", data("DISCOVER")?)?;
            check_hostname(&d.hostname)?;
            Request::Discover {
                hostname: d.hostname,
            }
        }
        "PING" => {
            let d: PingData = typed("PING", data("PING")?)?;
            check_hostname(&d.hostname)?;
            Request::Ping {
                hostname: d.hostname,
                state: d.state,
            }
        }
        "LIST" => {
            let d: ListData = match env.data {
                None => ListData::default(),
                Some(raw) if raw.get() == "null" => ListData::default(),
                Some(raw) => typed("LIST", raw.get())?,
            };
            if let Some(o) = d.offset {
                if o < 0 {
                    return Err("invalid offset: must be 0 or more".into());
                }
            }
            if let Some(l) = d.limit {
                if l < 1 {
                    return Err("invalid limit: must be 1 to 1000".into());
                }
            }
            if d.query.as_ref().is_some_and(|q| q.len() > 255) {
                return Err("invalid query: longer than 255 bytes".into());
            }
            Request::List {
                offset: d.offset.map(|o| o as u64),
                limit: d.limit.map(|l| (l as u64).min(MAX_PAGE)),
                query: d.query,
            }
        }
        "UNREGISTER" => {
            let d: Host = typed("UNREGISTER", data("UNREGISTER")?)?;
            check_hostname(&d.hostname)?;
            Request::Unregister {
                hostname: d.hostname,
            }
        }
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(format!("unknown action '{shown}'"));
        }
    };
    Ok(req)
}

/// serde_json's message without the trailing position noise is clear enough;
/// keep it, but bound its length (it may quote the input).
fn clean(e: &serde_json::Error) -> String {
    let s = e.to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

/// File names are base names: no `/`, `\`, control characters, not `.`/`..`,
/// 1–255 bytes.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_name(name) {
        Ok(())
    } else {
        Err("invalid name".into())
    }
}

/// Hostnames follow the same rule as names (they are usernames in practice).
fn check_hostname(h: &str) -> Result<(), String> {
    if valid_name(h) {
        Ok(())
    } else {
        Err("invalid hostname".into())
    }
}

fn check_sha(sha: Option<String>) -> Result<Option<String>, String> {
    check_hex("sha256", sha)
}

/// A SHA-256 in hex: 64 hex digits, kept lower-case so that comparing two
/// digests is comparing two strings.
fn check_hex(field: &str, hex: Option<String>) -> Result<Option<String>, String> {
    match hex {
        Some(s) if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Err(format!("invalid {field}: expected 64 hex digits"))
        }
        Some(mut s) => {
            s.make_ascii_lowercase();
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

fn check_time(t: f64) -> Result<(), String> {
    if t.is_finite() && t >= 0.0 {
        Ok(())
    } else {
        Err("invalid modified: expected Unix seconds".into())
    }
}

/// Appends `s` as a JSON string literal.
pub fn push_json_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        match esc {
            Some(e) => out.extend_from_slice(e),
            None => out.extend_from_slice(format!("\\u{:04x}", b).as_bytes()),
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Appends a number the way JSON wants it (integral floats without `.0` noise
/// is not required; serde_json's formatting is used for exactness).
pub fn push_f64(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            if v < 0.0 {
                out.push(b'-');
            }
            push_u64(out, v.abs() as u64);
        } else {
            let _ = serde_json::to_writer(&mut *out, &v);
        }
    } else {
        out.extend_from_slice(b"null");
    }
}

/// Appends an unsigned integer in decimal, without allocating (replies are
/// built per request on the hot path).
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// `{"status":"ERROR","reason":"..."}\n`
pub fn error_line(reason: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + reason.len());
    out.extend_from_slice(b"{\"status\":\"ERROR\",\"reason\":");
    push_json_str(&mut out, reason);
    out.extend_from_slice(b"}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_action() {
        let r = parse_request(br#"{"action":"PUBLISH","data":{"hostname":"alice","fname":"a b.txt","size":10,"modified":1.5,"sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}}"#).unwrap();
        assert_eq!(r.action(), Action::Publish);
        let r = parse_request(br#"{"action":"LIST"}"#).unwrap();
        assert_eq!(
            r,
            Request::List {
                offset: None,
                limit: None,
                query: None
            }
        );
        let r = parse_request(br#"{"action":"LIST","data":{"offset":5,"limit":5000}}"#).unwrap();
        assert_eq!(
            r,
            Request::List {
                offset: Some(5),
                limit: Some(1000),
                query: None
            }
        );
        let r = parse_request(br#"{"data":{"hostname":"b\u00e9","state":"busy"},"action":"PING"}"#)
            .unwrap();
        assert_eq!(
            r,
            Request::Ping {
                hostname: Cow::Borrowed("bé"),
                state: Some(HeartbeatState::Busy)
            }
        );
        let r = parse_request(br#"{"action":"REGISTER","data":{"hostname":"h","port":6001,"files_metadata":{"x":{"size":1,"modified":2,"is_published":false}},"token":"t"}}"#).unwrap();
        match r {
            Request::Register { files, .. } => assert!(!files[0].1.is_published),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn request_takes_an_optional_sha256_and_publish_a_root() {
        let h = "ABCDEF".repeat(10) + "0123";
        let line = format!(r#"{{"action":"REQUEST","data":{{"fname":"x","sha256":"{h}"}}}}"#);
        match parse_request(line.as_bytes()).unwrap() {
            Request::Request { sha256, .. } => assert_eq!(sha256, Some(h.to_lowercase())),
            other => panic!("{other:?}"),
        }
        let line = format!(
            r#"{{"action":"PUBLISH","data":{{"hostname":"a","fname":"x","size":1,"modified":1,"root":"{h}"}}}}"#
        );
        match parse_request(line.as_bytes()).unwrap() {
            Request::Publish { meta, .. } => assert_eq!(meta.root, Some(h.to_lowercase())),
            other => panic!("{other:?}"),
        }
        let bad = r#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","size":1,"modified":1,"root":"zz"}}"#;
        assert!(parse_request(bad.as_bytes())
            .unwrap_err()
            .contains("invalid root"));
        let bad = r#"{"action":"REQUEST","data":{"fname":"x","sha256":7}}"#;
        assert!(parse_request(bad.as_bytes()).is_err());
        let bad = r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":{"x":{"size":1,"modified":2,"root":"00"}}}}"#;
        assert!(parse_request(bad.as_bytes())
            .unwrap_err()
            .contains("invalid root"));
    }

    #[test]
    fn refuses_bad_input_with_a_reason() {
        let err = |l: &[u8]| parse_request(l).unwrap_err();
        assert!(err(b"{nope").starts_with("invalid JSON"));
        assert!(err(b"\xff\xfe").contains("UTF-8"));
        assert!(err(br#"{"action":"FROB","data":{}}"#).contains("unknown action"));
        assert!(err(
            br#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","size":"10","modified":1}}"#
        )
        .contains("invalid type"));
        assert!(
            err(br#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","modified":1}}"#)
                .contains("size")
        );
        assert_eq!(
            err(br#"{"action":"REQUEST","data":{"fname":"../etc/passwd"}}"#),
            "invalid name"
        );
        assert_eq!(
            err(br#"{"action":"REQUEST","data":{"fname":".."}}"#),
            "invalid name"
        );
        assert_eq!(
            err(br#"{"action":"REQUEST","data":{"fname":"a\\b"}}"#),
            "invalid name"
        );
        assert!(err(br#"{"action":"LIST","data":{"offset":-1}}"#).contains("offset"));
        assert!(err(br#"{"action":"LIST","data":{"limit":0}}"#).contains("limit"));
        assert!(err(br#"{"action":"REQUEST"}"#).contains("data"));
    }

    #[test]
    fn writes_numbers_like_json() {
        for v in [0u64, 7, 10, 65535, 1_699_267_200, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, v);
            assert_eq!(out, v.to_string().as_bytes());
        }
        for v in [0.0, -3.0, 1_699_267_200.0, 1.5, -0.25] {
            let mut out = Vec::new();
            push_f64(&mut out, v);
            let back: f64 = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, v);
        }
    }

    #[test]
    fn escapes_json_strings() {
        let mut out = Vec::new();
        push_json_str(&mut out, "a\"b\\c\n\u{1}é");
        let back: String = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, "a\"b\\c\n\u{1}é");
    }
}
