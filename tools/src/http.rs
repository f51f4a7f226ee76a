//! A small blocking HTTP/1.1 JSON client (keep-alive, Content-Length or chunked bodies) for
//! the server and client APIs; no TLS, no redirects.

use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// One keep-alive connection to `http://host:port`, reopened when it breaks.
pub struct Client {
    host: String,
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    pub timeout: Duration,
}

/// Split `http://host:port/prefix` into `host:port` (the path part is ignored).
pub fn host_of(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("not an http:// URL: {url}"))?;
    let host = rest.split('/').next().unwrap_or("");
    if host.is_empty() {
        return Err(format!("no host in URL: {url}"));
    }
    Ok(host.to_string())
}

impl Client {
    pub fn new(url: &str) -> Result<Client, String> {
        let host = host_of(url)?;
        let addr = host
            .to_socket_addrs()
            .map_err(|e| format!("bad address {host}: {e}"))?
            .next()
            .ok_or_else(|| format!("{host} resolves to nothing"))?;
        Ok(Client {
            host,
            addr,
            conn: None,
            timeout: Duration::from_secs(60),
        })
    }

    /// Send a request; a JSON body if `body` is given. Returns the status and JSON answer
    /// (`Value::Null` for an empty or non-JSON body).
    pub fn call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        // A kept-alive connection the server has since closed fails on first use; one retry
        // on a fresh connection tells that apart from a real failure.
        let fresh = self.conn.is_none();
        match self.try_call(method, path, body, token) {
            Ok(r) => Ok(r),
            Err(_) if !fresh => {
                self.conn = None;
                self.try_call(method, path, body, token)
            }
            Err(e) => Err(e),
        }
    }

    fn try_call(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        if self.conn.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .map_err(|e| format!("cannot connect to {}: {e}", self.host))?;
            let _ = s.set_nodelay(true);
            let _ = s.set_read_timeout(Some(self.timeout));
            self.conn = Some(BufReader::new(s));
        }
        let res = self.exchange(method, path, body, token);
        if res.is_err() {
            self.conn = None;
        }
        res
    }

    fn exchange(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<(u16, Value), String> {
        let conn = self.conn.as_mut().ok_or("not connected")?;
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        // The client API refuses POST and DELETE without it (CSRF).
        if body.is_some() || method == "POST" || method == "DELETE" {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n\r\n", payload.len()));
        req.push_str(&payload);
        conn.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("{method} {path}: write failed: {e}"))?;

        let mut line = String::new();
        let read_line = |c: &mut BufReader<TcpStream>, l: &mut String| -> Result<(), String> {
            l.clear();
            match c.read_line(l) {
                Ok(0) => Err(format!("{method} {path}: connection closed")),
                Ok(_) => Ok(()),
                Err(e) => Err(format!("{method} {path}: read failed: {e}")),
            }
        };
        read_line(conn, &mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{method} {path}: bad status line {line:?}"))?;
        let mut length: Option<usize> = None;
        let mut chunked = false;
        let mut close = false;
        loop {
            read_line(conn, &mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((k, v)) = l.split_once(':') {
                let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
                match k.as_str() {
                    "content-length" => length = v.parse().ok(),
                    "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                    "connection" => close = v.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        let mut bodybuf = Vec::new();
        if chunked {
            loop {
                read_line(conn, &mut line)?;
                let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                    .map_err(|_| format!("{method} {path}: bad chunk size"))?;
                if size == 0 {
                    read_line(conn, &mut line)?;
                    break;
                }
                let at = bodybuf.len();
                bodybuf.resize(at + size, 0);
                conn.read_exact(&mut bodybuf[at..])
                    .map_err(|e| format!("{method} {path}: body: {e}"))?;
                read_line(conn, &mut line)?;
            }
        } else if let Some(n) = length {
            bodybuf.resize(n, 0);
            conn.read_exact(&mut bodybuf)
                .map_err(|e| format!("{method} {path}: body: {e}"))?;
        } else {
            conn.read_to_end(&mut bodybuf)
                .map_err(|e| format!("{method} {path}: body: {e}"))?;
            close = true;
        }
        if close {
            self.conn = None;
        }
        let v = serde_json::from_slice(&bodybuf).unwrap_or(Value::Null);
        Ok((status, v))
    }

    /// `call` that wants a 2xx answer with `success: true`; otherwise the server's error.
    pub fn ok(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        token: Option<&str>,
    ) -> Result<Value, String> {
        let (st, v) = self.call(method, path, body, token)?;
        if (200..300).contains(&st) && v["success"] != Value::Bool(false) {
            Ok(v)
        } else {
            let msg = v["error"].as_str().unwrap_or("(no error message)");
            Err(format!("{method} {path}: HTTP {st}: {msg}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keep_alive_and_chunked_bodies() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut w = s;
            for i in 0..2 {
                let mut len = 0;
                loop {
                    let mut line = String::new();
                    r.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                if i == 0 {
                    let b = String::from_utf8(body).unwrap();
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                        b.len(),
                        b
                    );
                    w.write_all(resp.as_bytes()).unwrap();
                } else {
                    w.write_all(
                        b"HTTP/1.1 409 Conflict\r\nTransfer-Encoding: chunked\r\n\r\n\
                          5\r\n{\"suc\r\n24\r\ncess\":false,\"error\":\"taken already\"}\r\n0\r\n\r\n",
                    )
                    .unwrap();
                }
            }
        });
        let mut c = Client::new(&format!("http://{addr}/api")).unwrap();
        let v = c
            .ok("POST", "/x", Some(&json!({"a": 1})), Some("t"))
            .unwrap();
        assert_eq!(v["a"], 1);
        let e = c.ok("GET", "/y", None, None).unwrap_err();
        assert!(e.contains("409") && e.contains("taken already"), "{e}");
        assert!(host_of("ftp://x").is_err());
    }
}
