//! Requests (client → coordinator): the typed [`Request`], its decoder with
//! every bad-input rule of docs/registry-protocol.md, and its encoder.

use crate::names::valid_file_name;
use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::json::{push_f64, push_files, push_json_str, push_u64};
use super::{FileMeta, MAX_PAGE};

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

impl HeartbeatState {
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatState::Idle => "idle",
            HeartbeatState::Active => "active",
            HeartbeatState::Busy => "busy",
        }
    }
}

impl Request<'_> {
    /// The request as one line, newline included.
    pub fn line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        self.encode(&mut out);
        out
    }

    /// Appends the request line, newline included. Optional fields are
    /// written only when present; a LIST without paging has no `data`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"action\":\"");
        out.extend_from_slice(self.action().name().as_bytes());
        out.push(b'"');
        let field = |out: &mut Vec<u8>, name: &[u8], s: &str| {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name);
            out.extend_from_slice(b"\":");
            push_json_str(out, s);
        };
        match self {
            Request::Register {
                hostname,
                port,
                ip,
                display_name,
                files,
                token,
            } => {
                out.extend_from_slice(b",\"data\":{\"hostname\":");
                push_json_str(out, hostname);
                out.extend_from_slice(b",\"port\":");
                push_u64(out, u64::from(*port));
                if let Some(ip) = ip {
                    field(out, b"ip", ip);
                }
                if let Some(d) = display_name {
                    field(out, b"display_name", d);
                }
                if !files.is_empty() {
                    out.extend_from_slice(b",\"files_metadata\":");
                    push_files(out, files.iter().map(|(n, m)| (n.as_str(), m)));
                }
                if let Some(t) = token {
                    field(out, b"token", t);
                }
            }
            Request::Publish {
                hostname,
                fname,
                meta,
            } => {
                out.extend_from_slice(b",\"data\":{\"hostname\":");
                push_json_str(out, hostname);
                field(out, b"fname", fname);
                out.extend_from_slice(b",\"size\":");
                push_u64(out, meta.size);
                out.extend_from_slice(b",\"modified\":");
                push_f64(out, meta.modified);
                if let Some(p) = meta.published_at {
                    out.extend_from_slice(b",\"published_at\":");
                    push_f64(out, p);
                }
                if let Some(s) = &meta.sha256 {
                    field(out, b"sha256", s);
                }
                if let Some(r) = &meta.root {
                    field(out, b"root", r);
                }
            }
            Request::Unpublish { hostname, fname } => {
                out.extend_from_slice(b",\"data\":{\"hostname\":");
                push_json_str(out, hostname);
                field(out, b"fname", fname);
            }
            Request::Request { fname, sha256 } => {
                out.extend_from_slice(b",\"data\":{\"fname\":");
                push_json_str(out, fname);
                if let Some(s) = sha256 {
                    field(out, b"sha256", s);
                }
            }
            Request::Discover { hostname } | Request::Unregister { hostname } => {
                out.extend_from_slice(b",\"data\":{\"hostname\":");
                push_json_str(out, hostname);
            }
            Request::Ping { hostname, state } => {
                out.extend_from_slice(b",\"data\":{\"hostname\":");
                push_json_str(out, hostname);
                if let Some(st) = state {
                    field(out, b"state", st.as_str());
                }
            }
            Request::List {
                offset: None,
                limit: None,
                query: None,
            } => {
                out.extend_from_slice(b"}\n");
                return;
            }
            Request::List {
                offset,
                limit,
                query,
            } => {
                out.extend_from_slice(b",\"data\":{");
                let mut sep = "";
                for (name, v) in [("offset", offset), ("limit", limit)] {
                    if let Some(v) = v {
                        out.extend_from_slice(sep.as_bytes());
                        out.push(b'"');
                        out.extend_from_slice(name.as_bytes());
                        out.extend_from_slice(b"\":");
                        push_u64(out, *v);
                        sep = ",";
                    }
                }
                if let Some(q) = query {
                    out.extend_from_slice(sep.as_bytes());
                    out.extend_from_slice(b"\"query\":");
                    push_json_str(out, q);
                }
            }
        }
        out.extend_from_slice(b"}}\n");
    }
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

/// Decodes one request line (without its newline), the server's side. `Err` is the reason for
/// an ERROR reply; the connection stays usable. The usual shapes are read in one pass
/// (`fast.rs`); the rest, and every refusal, by [`decode_request_general`].
pub fn decode_request(line: &[u8]) -> Result<Request<'_>, String> {
    match super::fast::decode(line) {
        Some(req) => Ok(req),
        None => decode_request_general(line),
    }
}

/// The decoder for every line, through serde: the reference the fast path is held to.
pub fn decode_request_general(line: &[u8]) -> Result<Request<'_>, String> {
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

pub(super) fn valid_name(name: &str) -> bool {
    valid_file_name(name)
}

fn check_name(name: &str) -> Result<(), String> {
    if valid_file_name(name) {
        Ok(())
    } else {
        Err("invalid name".into())
    }
}

/// Hostnames follow the same rule as names (they are usernames in practice).
fn check_hostname(h: &str) -> Result<(), String> {
    if valid_file_name(h) {
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
pub(super) fn check_hex(field: &str, hex: Option<String>) -> Result<Option<String>, String> {
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
