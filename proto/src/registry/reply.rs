//! Replies (coordinator → client): the typed [`Reply`], its encoder (the
//! coordinator's, allocation-light: values are appended straight into the
//! output buffer) and its decoder (the node's and the tools').

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use super::json::{push_f64, push_files, push_hex, push_json_str, push_u64};
use super::FileMeta;

/// One reply line. Strings borrow where they can: the coordinator encodes
/// replies that borrow its registry; a decoded reply owns its strings.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply<'a> {
    /// `{"status":"OK"}`: REGISTER, UNREGISTER.
    Ok,
    /// `{"status":"ACK"}`: PUBLISH, UNPUBLISH.
    Ack,
    /// PING: the host asked about is online.
    Alive,
    /// PING: the host asked about is offline or unknown.
    Dead,
    /// REQUEST: the hosts offering the file, online hosts first.
    Found(Vec<Offer<'a>>),
    /// REQUEST: nobody offers it (`"hosts":[]`).
    NotFound,
    /// DISCOVER: a host's published files and address.
    Discover(Discovery<'a>),
    /// LIST, whole or one page.
    List(Listing<'a>),
    /// `{"status":"ERROR","reason":…}`; the connection stays usable.
    Error(Cow<'a, str>),
}

/// A SHA-256 in an offer: lower-case hex text (as decoded), or the 32 bytes
/// themselves, which the coordinator hands over as it stores them so that a
/// REQUEST's reply is written without building a string per digest.
#[derive(Debug, Clone, PartialEq)]
pub enum Hex<'a> {
    Text(Cow<'a, str>),
    Digest([u8; 32]),
}

impl Hex<'_> {
    /// The digest as lower-case hex.
    pub fn to_text(&self) -> String {
        match self {
            Hex::Text(t) => t.to_string(),
            Hex::Digest(d) => {
                let mut out = Vec::with_capacity(64);
                push_hex(&mut out, d);
                String::from_utf8(out).unwrap_or_default()
            }
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Hex::Text(t) => push_json_str(out, t),
            Hex::Digest(d) => {
                out.push(b'"');
                push_hex(out, d);
                out.push(b'"');
            }
        }
    }
}

impl<'a> From<String> for Hex<'a> {
    fn from(s: String) -> Self {
        Hex::Text(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for Hex<'a> {
    fn from(s: &'a str) -> Self {
        Hex::Text(Cow::Borrowed(s))
    }
}

/// One host offering a file, in a FOUND reply.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer<'a> {
    pub hostname: Cow<'a, str>,
    pub display_name: Cow<'a, str>,
    pub ip: Cow<'a, str>,
    pub port: u16,
    pub size: u64,
    pub modified: f64,
    pub sha256: Option<Hex<'a>>,
    pub root: Option<Hex<'a>>,
    pub online: bool,
}

/// A DISCOVER reply's body.
#[derive(Debug, Clone, PartialEq)]
pub struct Discovery<'a> {
    /// Published files, in name order.
    pub files: Vec<(Cow<'a, str>, Cow<'a, FileMeta>)>,
    pub ip: Cow<'a, str>,
    pub port: u16,
    pub online: bool,
}

/// A LIST reply's body.
#[derive(Debug, Clone, PartialEq)]
pub enum Listing<'a> {
    /// The whole registry as one finished reply line (newline included),
    /// serialised once on a worker and shared by every connection that asks
    /// until the registry changes. Decoding never yields it.
    Shared(Arc<Vec<u8>>),
    /// Hosts in hostname order; `page` is present when the request paged.
    Hosts {
        hosts: Vec<ListedHost<'a>>,
        page: Option<Page>,
    },
}

/// Paging fields of a paged LIST reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// Hosts matching the request, all pages together.
    pub total: u64,
    /// Where the next page starts; `None` on the last page.
    pub next_offset: Option<u64>,
}

/// One host in a LIST reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedHost<'a> {
    pub head: HostHead<'a>,
    pub last_seen: f64,
    pub connected_at: f64,
    pub online: bool,
}

/// The part of a listed host that changes only when the host does.
#[derive(Debug, Clone, PartialEq)]
pub enum HostHead<'a> {
    /// Already serialised by [`HostHead::encode_fields`]: the coordinator
    /// caches it per host until the host changes (a LIST of 100,000 hosts
    /// would otherwise re-serialise every file of every host).
    Encoded(Arc<[u8]>),
    Fields {
        hostname: Cow<'a, str>,
        ip: Cow<'a, str>,
        port: u16,
        display_name: Cow<'a, str>,
        /// Published files, in name order.
        files: Vec<(String, FileMeta)>,
    },
}

impl HostHead<'_> {
    /// Appends `"name":{"addr":[ip,port],"display_name":…,"files":{…}`: an
    /// unfinished object that [`ListedHost`] closes with the fields that
    /// change on every message.
    pub fn encode_fields<'f, M: AsRef<FileMeta> + 'f>(
        out: &mut Vec<u8>,
        hostname: &str,
        ip: &str,
        port: u16,
        display_name: &str,
        files: impl Iterator<Item = (&'f str, M)>,
    ) {
        push_json_str(out, hostname);
        out.extend_from_slice(b":{\"addr\":[");
        push_json_str(out, ip);
        out.push(b',');
        push_u64(out, u64::from(port));
        out.extend_from_slice(b"],\"display_name\":");
        push_json_str(out, display_name);
        out.extend_from_slice(b",\"files\":");
        push_files(out, files);
    }

    pub fn hostname(&self) -> Option<&str> {
        match self {
            HostHead::Fields { hostname, .. } => Some(hostname),
            HostHead::Encoded(_) => None,
        }
    }
}

impl ListedHost<'_> {
    pub fn encode(&self, out: &mut Vec<u8>) {
        match &self.head {
            HostHead::Encoded(b) => out.extend_from_slice(b),
            HostHead::Fields {
                hostname,
                ip,
                port,
                display_name,
                files,
            } => HostHead::encode_fields(
                out,
                hostname,
                ip,
                *port,
                display_name,
                files.iter().map(|(n, m)| (n.as_str(), m)),
            ),
        }
        out.extend_from_slice(b",\"last_seen\":");
        push_f64(out, self.last_seen);
        out.extend_from_slice(b",\"connected_at\":");
        push_f64(out, self.connected_at);
        out.extend_from_slice(if self.online {
            b",\"online\":true}"
        } else {
            b",\"online\":false}"
        });
    }
}

impl Offer<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"hostname\":");
        push_json_str(out, &self.hostname);
        out.extend_from_slice(b",\"display_name\":");
        push_json_str(out, &self.display_name);
        out.extend_from_slice(b",\"ip\":");
        push_json_str(out, &self.ip);
        out.extend_from_slice(b",\"port\":");
        push_u64(out, u64::from(self.port));
        out.extend_from_slice(b",\"size\":");
        push_u64(out, self.size);
        out.extend_from_slice(b",\"modified\":");
        push_f64(out, self.modified);
        // Offers are published files by definition; the field stays for
        // seed-design clients that read it.
        out.extend_from_slice(b",\"is_published\":true");
        if let Some(s) = &self.sha256 {
            out.extend_from_slice(b",\"sha256\":");
            s.encode(out);
        }
        if let Some(r) = &self.root {
            out.extend_from_slice(b",\"root\":");
            r.encode(out);
        }
        out.extend_from_slice(if self.online {
            b",\"online\":true}"
        } else {
            b",\"online\":false}"
        });
    }
}

impl Listing<'_> {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Listing::Shared(line) => out.extend_from_slice(line),
            Listing::Hosts { hosts, page } => {
                out.extend_from_slice(b"{\"status\":\"OK\",\"registry\":{");
                for (i, h) in hosts.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    h.encode(out);
                }
                out.push(b'}');
                if let Some(p) = page {
                    out.extend_from_slice(b",\"total\":");
                    push_u64(out, p.total);
                    out.extend_from_slice(b",\"next_offset\":");
                    match p.next_offset {
                        Some(n) => push_u64(out, n),
                        None => out.extend_from_slice(b"null"),
                    }
                }
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

impl Reply<'_> {
    /// The reply's `status` word.
    pub fn status(&self) -> &'static str {
        match self {
            Reply::Ok | Reply::Discover(_) | Reply::List(_) => "OK",
            Reply::Ack => "ACK",
            Reply::Alive => "ALIVE",
            Reply::Dead => "DEAD",
            Reply::Found(_) => "FOUND",
            Reply::NotFound => "NOTFOUND",
            Reply::Error(_) => "ERROR",
        }
    }

    /// An ERROR's reason.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Reply::Error(r) => Some(r),
            _ => None,
        }
    }

    /// The reply as one line, newline included.
    pub fn line(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode(&mut out);
        out
    }

    /// Appends the reply line, newline included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"{\"status\":\"OK\"}\n"),
            Reply::Ack => out.extend_from_slice(b"{\"status\":\"ACK\"}\n"),
            Reply::Alive => out.extend_from_slice(b"{\"status\":\"ALIVE\"}\n"),
            Reply::Dead => out.extend_from_slice(b"{\"status\":\"DEAD\"}\n"),
            Reply::NotFound => out.extend_from_slice(b"{\"status\":\"NOTFOUND\",\"hosts\":[]}\n"),
            Reply::Found(hosts) => {
                out.extend_from_slice(b"{\"status\":\"FOUND\",\"hosts\":[");
                for (i, h) in hosts.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    h.encode(out);
                }
                out.extend_from_slice(b"]}\n");
            }
            Reply::Discover(d) => {
                out.extend_from_slice(b"{\"status\":\"OK\",\"files\":");
                push_files(out, d.files.iter().map(|(n, m)| (n.as_ref(), m)));
                out.extend_from_slice(b",\"addr\":[");
                push_json_str(out, &d.ip);
                out.push(b',');
                push_u64(out, u64::from(d.port));
                out.extend_from_slice(if d.online {
                    b"],\"online\":true}\n"
                } else {
                    b"],\"online\":false}\n"
                });
            }
            Reply::List(l) => l.encode(out),
            Reply::Error(reason) => {
                out.extend_from_slice(b"{\"status\":\"ERROR\",\"reason\":");
                push_json_str(out, reason);
                out.extend_from_slice(b"}\n");
            }
        }
    }
}

#[derive(Deserialize)]
struct Wire {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    hosts: Option<Vec<WireOffer>>,
    #[serde(default)]
    files: Option<BTreeMap<String, FileMeta>>,
    #[serde(default)]
    addr: Option<(String, u16)>,
    #[serde(default)]
    online: Option<bool>,
    #[serde(default)]
    registry: Option<BTreeMap<String, WireListed>>,
    #[serde(default)]
    total: Option<u64>,
    #[serde(default)]
    next_offset: Option<u64>,
}

#[derive(Deserialize)]
struct WireOffer {
    hostname: String,
    #[serde(default)]
    display_name: String,
    ip: String,
    port: u16,
    size: u64,
    #[serde(default)]
    modified: f64,
    #[serde(default = "yes")]
    is_published: bool,
    #[serde(default)]
    sha256: Option<String>,
    #[serde(default)]
    root: Option<String>,
    #[serde(default = "yes")]
    online: bool,
}

#[derive(Deserialize)]
struct WireListed {
    addr: (String, u16),
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    files: BTreeMap<String, FileMeta>,
    #[serde(default)]
    last_seen: f64,
    #[serde(default)]
    connected_at: f64,
    #[serde(default = "yes")]
    online: bool,
}

fn yes() -> bool {
    true
}

/// Decodes one reply line (without its newline), the client's side. Fields
/// a seed-design coordinator leaves out take the defaults it implies
/// (`online` true, a missing `display_name` is the hostname); an offer
/// marked unpublished is not an offer and is dropped. `Err` says what was
/// wrong; nothing in the line can panic.
pub fn decode_reply(line: &[u8]) -> Result<Reply<'static>, String> {
    let w: Wire = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    Ok(match w.status.as_str() {
        "OK" => match (w.registry, w.files, w.addr) {
            (Some(reg), _, _) => Reply::List(Listing::Hosts {
                hosts: reg
                    .into_iter()
                    .map(|(hostname, h)| ListedHost {
                        head: HostHead::Fields {
                            display_name: Cow::Owned(
                                h.display_name.unwrap_or_else(|| hostname.clone()),
                            ),
                            hostname: Cow::Owned(hostname),
                            ip: Cow::Owned(h.addr.0),
                            port: h.addr.1,
                            files: h.files.into_iter().collect(),
                        },
                        last_seen: h.last_seen,
                        connected_at: h.connected_at,
                        online: h.online,
                    })
                    .collect(),
                page: w.total.map(|total| Page {
                    total,
                    next_offset: w.next_offset,
                }),
            }),
            (None, Some(files), Some((ip, port))) => Reply::Discover(Discovery {
                files: files
                    .into_iter()
                    .map(|(n, m)| (Cow::Owned(n), Cow::Owned(m)))
                    .collect(),
                ip: Cow::Owned(ip),
                port,
                online: w.online.unwrap_or(true),
            }),
            (None, Some(_), None) => return Err("DISCOVER answer without `addr`".into()),
            (None, None, _) => Reply::Ok,
        },
        "ACK" => Reply::Ack,
        "ALIVE" => Reply::Alive,
        "DEAD" => Reply::Dead,
        "NOTFOUND" => Reply::NotFound,
        "FOUND" => Reply::Found(
            w.hosts
                .unwrap_or_default()
                .into_iter()
                .filter(|o| o.is_published)
                .map(|o| Offer {
                    hostname: Cow::Owned(o.hostname),
                    display_name: Cow::Owned(o.display_name),
                    ip: Cow::Owned(o.ip),
                    port: o.port,
                    size: o.size,
                    modified: o.modified,
                    sha256: o.sha256.map(Hex::from),
                    root: o.root.map(Hex::from),
                    online: o.online,
                })
                .collect(),
        ),
        "ERROR" => Reply::Error(Cow::Owned(
            w.reason.unwrap_or_else(|| "no reason given".into()),
        )),
        other => {
            let shown: String = other.chars().take(40).collect();
            return Err(format!("unknown status '{shown}'"));
        }
    })
}
