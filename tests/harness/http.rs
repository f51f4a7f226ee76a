//! The one HTTP/1.1 client of the tests: a request per connection, the
//! response framed by Content-Length (or read to the close), parsed into
//! status, head, headers and body.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::Value;

use super::IO_TIMEOUT;

/// One parsed HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// The status line and headers as sent, without the blank line.
    pub head: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// (status, head, body).
    pub fn parts(self) -> (u16, String, Vec<u8>) {
        (self.status, self.head, self.body)
    }
}

/// Reads one response from `r`: the head, then Content-Length bytes of body,
/// or everything up to the close when there is no Content-Length.
pub fn read_response(r: &mut impl BufRead) -> HttpResponse {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("response head");
        if n == 0 {
            panic!("connection closed inside the head: {head:?}");
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
    }
    let head = head.trim_end().to_owned();
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|h| h.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let mut body = Vec::new();
    match len {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body).expect("body");
        }
        None => {
            // A read timeout ends it too; what came is what is checked.
            let _ = r.read_to_end(&mut body);
        }
    }
    HttpResponse {
        status,
        head,
        headers,
        body,
    }
}

/// Sends raw bytes on a fresh connection and reads one response.
pub fn http_raw(addr: SocketAddr, raw: &[u8]) -> HttpResponse {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).ok();
    s.write_all(raw).expect("send");
    read_response(&mut BufReader::new(s))
}

/// Builds a request with `Host: <addr>` and `Connection: close`.
pub fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Vec<u8> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    // Both APIs refuse state-changing requests without it (CSRF).
    if !body.is_empty() || method == "POST" || method == "DELETE" {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    req.into_bytes()
}

/// A JSON request; answers (status, JSON body or Null).
pub fn http_json(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let r = http_raw(
        addr,
        &request_bytes(addr, method, path, token, body.as_ref()),
    );
    let v = r.json();
    (r.status, v)
}
