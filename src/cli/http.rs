//! The command line's blocking HTTP/1.1 client for the node's client API
//! (`docs/client-api.md`): one request per connection (`Connection: close`),
//! `Content-Length` bodies both ways (the node's server driver,
//! `src/http_server.rs`, never sends chunked answers), timeouts on every
//! socket call and a cap on what an answer may hold. The command line is not
//! an event loop, so plain blocking `std::net` is the right tool here. It
//! sends no `Origin`: the node refuses cross-site ones.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// The most an answer's head may hold (the node's own cap on requests).
const MAX_HEAD: usize = 16 * 1024;
/// The most an answer's body may hold: a page of 1000 network files with
/// their hosts stays far below.
const MAX_BODY: usize = 32 * 1024 * 1024;
/// Connecting to a local node takes microseconds; a far one, milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the node's client API is: what the user gave, as a host and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The host as written (a name, an IPv4 address, or `[v6]`).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// `host:port`, as shown to the user and sent as `Host` (the node answers
    /// only its listening address, `localhost`, or an allowed name).
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.authority())
    }
}

/// `http://127.0.0.1:5501`, `127.0.0.1:5501`, `localhost:5501/`, `[::1]:5501`,
/// or a bare host (port 5501, the client API's default).
pub fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    let t = s.trim();
    if t.starts_with("https://") {
        return Err(format!(
            "'{t}': the node's client API speaks plain HTTP (it listens on loopback); use http://"
        ));
    }
    let rest = t.strip_prefix("http://").unwrap_or(t);
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let bad = || format!("'{t}' is not a node address (expected HOST:PORT or http://HOST:PORT)");
    if rest.is_empty() || rest.contains('/') || rest.contains('@') || rest.contains(' ') {
        return Err(bad());
    }
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (inner, tail) = v6.split_once(']').ok_or_else(bad)?;
        let port = match tail {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(bad)?),
        };
        (format!("[{inner}]"), port)
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (rest.to_owned(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad());
    }
    let port = match port {
        None => 5501,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => n,
            _ => return Err(bad()),
        },
    };
    Ok(Endpoint { host, port })
}

/// One answer: its status and body.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Why a request got no answer.
#[derive(Debug, PartialEq, Eq)]
pub enum Failed {
    /// Nothing listens there (connection refused).
    NotRunning,
    /// The address does not resolve.
    Unresolved(String),
    /// No connection or no answer in time.
    TimedOut,
    /// The connection broke, or the answer was not HTTP we can read.
    Broken(String),
}

/// Sends one request and reads its answer. `body` is JSON; POST and DELETE
/// always say `Content-Type: application/json` (the node requires it).
pub fn request(
    ep: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<Response, Failed> {
    let mut stream = connect(ep)?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let _ = stream.set_nodelay(true);
    let head = request_head(ep, method, path, token, body.map_or(0, <[u8]>::len));
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    stream.write_all(&out).map_err(io_failed)?;
    read_response(&mut stream)
}

fn request_head(
    ep: &Endpoint,
    method: &str,
    path: &str,
    token: Option<&str>,
    body_len: usize,
) -> String {
    let mut h = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\nUser-Agent: p2pshare-cli/{}\r\n",
        ep.authority(),
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = token {
        h.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if body_len > 0 || method == "POST" || method == "DELETE" {
        h.push_str("Content-Type: application/json\r\n");
        h.push_str(&format!("Content-Length: {body_len}\r\n"));
    }
    h.push_str("\r\n");
    h
}

fn connect(ep: &Endpoint) -> Result<TcpStream, Failed> {
    let host = ep.host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = (host, ep.port)
        .to_socket_addrs()
        .map_err(|e| Failed::Unresolved(e.to_string()))?
        .collect();
    if addrs.is_empty() {
        return Err(Failed::Unresolved("no address".into()));
    }
    let mut last = Failed::NotRunning;
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = io_failed(e),
        }
    }
    Err(last)
}

fn io_failed(e: std::io::Error) -> Failed {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => Failed::NotRunning,
        K::TimedOut | K::WouldBlock => Failed::TimedOut,
        _ => Failed::Broken(super::io_words(&e)),
    }
}

fn read_response(r: &mut impl Read) -> Result<Response, Failed> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i;
        }
        if buf.len() > MAX_HEAD {
            return Err(Failed::Broken("the answer's head is too large".into()));
        }
        let n = r.read(&mut chunk).map_err(io_failed)?;
        if n == 0 {
            return Err(Failed::Broken(
                "the connection closed before an answer came".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Failed::Broken("the answer's head is not text".into()))?;
    let (status, len, chunked) = parse_head(head)?;
    if chunked {
        return Err(Failed::Broken(
            "the answer is chunked, which this client does not read".into(),
        ));
    }
    let mut body = buf[head_end + 4..].to_vec();
    match len {
        Some(n) if n > MAX_BODY => return Err(Failed::Broken("the answer is too large".into())),
        Some(n) => {
            while body.len() < n {
                let k = r.read(&mut chunk).map_err(io_failed)?;
                if k == 0 {
                    return Err(Failed::Broken("the answer was cut short".into()));
                }
                body.extend_from_slice(&chunk[..k]);
            }
            body.truncate(n);
        }
        None => loop {
            let k = r.read(&mut chunk).map_err(io_failed)?;
            if k == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..k]);
            if body.len() > MAX_BODY {
                return Err(Failed::Broken("the answer is too large".into()));
            }
        },
    }
    Ok(Response { status, body })
}

/// Status, `Content-Length` and whether the body is chunked.
fn parse_head(head: &str) -> Result<(u16, Option<usize>, bool), Failed> {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().and_then(|s| s.parse::<u16>().ok());
    let (true, Some(status)) = (version.starts_with("HTTP/1."), status) else {
        return Err(Failed::Broken(format!(
            "not an HTTP answer: {:?}",
            first.chars().take(60).collect::<String>()
        )));
    };
    let mut len = None;
    let mut chunked = false;
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            len = Some(
                v.parse::<usize>()
                    .map_err(|_| Failed::Broken("a bad Content-Length".into()))?,
            );
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        }
    }
    Ok((status, len, chunked))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_in_every_spelling() {
        let ep = |h: &str, p| Endpoint {
            host: h.into(),
            port: p,
        };
        assert_eq!(
            parse_endpoint("http://127.0.0.1:5501"),
            Ok(ep("127.0.0.1", 5501))
        );
        assert_eq!(parse_endpoint("localhost:6000/"), Ok(ep("localhost", 6000)));
        assert_eq!(parse_endpoint("[::1]:7000"), Ok(ep("[::1]", 7000)));
        assert_eq!(parse_endpoint("[::1]"), Ok(ep("[::1]", 5501)));
        assert_eq!(parse_endpoint("box"), Ok(ep("box", 5501)));
        for bad in [
            "",
            "http://",
            "a:0",
            "a:x",
            "a:70000",
            "http://a/b",
            "u@a:1",
            "[::1",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert!(parse_endpoint("https://a:1")
            .err()
            .is_some_and(|e| e.contains("plain HTTP")));
    }

    #[test]
    fn requests_carry_host_json_and_no_origin() {
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 5501,
        };
        let h = request_head(&ep, "POST", "/api/client/x", Some("t"), 2);
        assert!(h.starts_with("POST /api/client/x HTTP/1.1\r\nHost: 127.0.0.1:5501\r\n"));
        assert!(h.contains("Authorization: Bearer t\r\n"));
        assert!(h.contains("Content-Type: application/json\r\nContent-Length: 2\r\n"));
        assert!(!h.to_ascii_lowercase().contains("origin"));
        assert!(h.ends_with("\r\n\r\n"));
        let g = request_head(&ep, "GET", "/", None, 0);
        assert!(!g.contains("Content-Type") && !g.contains("Authorization"));
    }

    #[test]
    fn reads_answers_split_anywhere_and_caps_them() {
        let whole = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\nX: y\r\n\r\nhello";
        struct Drip<'a>(&'a [u8], usize);
        impl Read for Drip<'_> {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                let n = self.1.min(self.0.len()).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for step in 1..whole.len() {
            let r = read_response(&mut Drip(whole, step)).expect("an answer");
            assert_eq!((r.status, r.body.as_slice()), (404, &b"hello"[..]));
        }
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        assert!(read_response(&mut &cut[..]).is_err());
        let huge = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(read_response(&mut huge.as_bytes()).is_err());
        assert!(read_response(&mut &b"SSH-2.0-x\r\n\r\n"[..]).is_err());
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(read_response(&mut &chunked[..]).is_err());
        let to_close = b"HTTP/1.1 200 OK\r\n\r\nall of it";
        let r = read_response(&mut &to_close[..]).expect("an answer");
        assert_eq!(r.body, b"all of it");
    }
}
