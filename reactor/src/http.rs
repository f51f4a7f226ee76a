//! A minimal HTTP/1.1 layer on `httparse`: request and response codecs with
//! caps, and response heads. Pure: no I/O, no routes.
//!
//! Decoding works on the connection's read buffer: `Partial` means wait for
//! more, `Done` gives a request and how many bytes it used (so pipelined
//! requests are answered in order), `Reject` gives the status to answer
//! before closing, because after a bad head nobody knows where the next
//! request would start.

use std::fmt::Write as _;

/// Caps on what a request may be.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Request line and headers (431 beyond).
    pub max_head: usize,
    /// Body (413 beyond).
    pub max_body: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 16 * 1024,
            max_body: 1024 * 1024,
            max_headers: 64,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path as sent, without the query (still percent-encoded).
    pub path: String,
    /// What followed `?`, or empty.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the connection stays open after the answer.
    pub keep_alive: bool,
}

impl Request {
    /// The first header of that name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of a query parameter, percent-decoded.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k).as_deref() == Some(name))
                .then(|| percent_decode(v).unwrap_or_default())
        })
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Parse {
    Partial,
    Done(Request, usize),
    /// Answer with this status and message, then close.
    Reject {
        status: u16,
        message: &'static str,
    },
}

/// Decodes one request from the front of `buf`.
pub fn parse_request(buf: &[u8], limits: &Limits) -> Parse {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            if buf.len() > limits.max_head {
                return Parse::Reject {
                    status: 431,
                    message: "Request headers are too large (16 KiB at most)",
                };
            }
            return Parse::Partial;
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Parse::Reject {
                status: 431,
                message: "Too many request headers",
            }
        }
        Err(_) => {
            return Parse::Reject {
                status: 400,
                message: "Malformed HTTP request",
            }
        }
    };
    if head_len > limits.max_head {
        return Parse::Reject {
            status: 431,
            message: "Request headers are too large (16 KiB at most)",
        };
    }
    let (Some(method), Some(target), Some(version)) = (req.method, req.path, req.version) else {
        return Parse::Reject {
            status: 400,
            message: "Malformed HTTP request",
        };
    };
    let mut content_length: Option<usize> = None;
    let mut has_te = false;
    let mut conn_close = false;
    let mut conn_keep = false;
    let mut out_headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = value.trim();
            if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) || v.len() > 18 {
                return Parse::Reject {
                    status: 400,
                    message: "Invalid Content-Length",
                };
            }
            let n: usize = v.parse().unwrap_or(usize::MAX);
            if content_length.is_some_and(|c| c != n) {
                return Parse::Reject {
                    status: 400,
                    message: "Conflicting Content-Length headers",
                };
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            has_te = true;
        } else if h.name.eq_ignore_ascii_case("connection") {
            for tok in value.split(',') {
                let tok = tok.trim();
                conn_close |= tok.eq_ignore_ascii_case("close");
                conn_keep |= tok.eq_ignore_ascii_case("keep-alive");
            }
        }
        out_headers.push((h.name.to_string(), value));
    }
    if has_te {
        return if content_length.is_some() {
            Parse::Reject {
                status: 400,
                message: "Content-Length together with Transfer-Encoding is not allowed",
            }
        } else {
            Parse::Reject {
                status: 411,
                message: "Chunked request bodies are not supported; send Content-Length",
            }
        };
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > limits.max_body {
        return Parse::Reject {
            status: 413,
            message: "Request body is too large (1 MiB at most)",
        };
    }
    if buf.len() < head_len + body_len {
        return Parse::Partial;
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let keep_alive = if version == 1 {
        !conn_close
    } else {
        conn_keep && !conn_close
    };
    Parse::Done(
        Request {
            method: method.to_string(),
            path,
            query,
            headers: out_headers,
            body: buf[head_len..head_len + body_len].to_vec(),
            keep_alive,
        },
        head_len + body_len,
    )
}

/// Decodes `%XX` escapes (and `+` is left alone: paths, not forms). `None`
/// if an escape is broken or the result is not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let v = u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// Writes a response head; the body (of `body_len` bytes) follows separately.
pub fn write_head(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    body_len: usize,
    keep_alive: bool,
    date: &str,
    extra: &[(&str, &str)],
) {
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "HTTP/1.1 {} {}\r\nDate: {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        status,
        reason(status),
        date,
        content_type,
        body_len
    );
    if !keep_alive {
        s.push_str("Connection: close\r\n");
    }
    for (k, v) in extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
}

/// The IMF-fixdate form of a Unix time, for the `Date` header.
pub fn http_date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        d,
        MONTHS[(m - 1) as usize],
        y,
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A response read by the client side (the node asking the coordinator).
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ResponseParse {
    Partial,
    Done(Response, usize),
    Error(&'static str),
}

/// Decodes one response; it must carry `Content-Length` (ours always do).
pub fn parse_response(buf: &[u8], max_body: usize) -> ResponseParse {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > 64 * 1024 => {
            return ResponseParse::Error("response head too large")
        }
        Ok(httparse::Status::Partial) => return ResponseParse::Partial,
        Err(_) => return ResponseParse::Error("malformed HTTP response"),
    };
    let status = resp.code.unwrap_or(0);
    let mut len = None;
    let mut out = Vec::new();
    for h in resp.headers.iter() {
        let v = String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("content-length") {
            len = v.trim().parse::<usize>().ok();
            if len.is_none() {
                return ResponseParse::Error("invalid Content-Length in response");
            }
        }
        out.push((h.name.to_string(), v));
    }
    let Some(len) = len else {
        return ResponseParse::Error("response without Content-Length");
    };
    if len > max_body {
        return ResponseParse::Error("response body too large");
    }
    if buf.len() < head_len + len {
        return ResponseParse::Partial;
    }
    ResponseParse::Done(
        Response {
            status,
            headers: out,
            body: buf[head_len..head_len + len].to_vec(),
        },
        head_len + len,
    )
}

/// Writes a request with a body (the client side).
pub fn write_request(
    out: &mut Vec<u8>,
    method: &str,
    host: &str,
    path: &str,
    extra: &[(&str, &str)],
    body: &[u8],
) {
    let mut s = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !body.is_empty() {
        s.push_str("Content-Type: application/json\r\n");
    }
    for (k, v) in extra {
        let _ = write!(s, "{k}: {v}\r\n");
    }
    s.push_str("\r\n");
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(buf: &[u8]) -> (Request, usize) {
        match parse_request(buf, &Limits::default()) {
            Parse::Done(r, n) => (r, n),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_request_with_body_and_query() {
        let raw =
            b"POST /api/x?q=a%20b&n=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhelloGET";
        let (r, n) = done(raw);
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/api/x");
        assert_eq!(r.query_param("q").as_deref(), Some("a b"));
        assert_eq!(r.body, b"hello");
        assert!(r.keep_alive);
        assert_eq!(n, raw.len() - 3);
    }

    #[test]
    fn rejects_what_the_spec_rejects() {
        let l = Limits::default();
        let reject = |b: &[u8]| match parse_request(b, &l) {
            Parse::Reject { status, .. } => status,
            other => panic!("expected reject, got {other:?}"),
        };
        assert_eq!(reject(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nContent-Length: 2000000\r\n\r\n"),
            413
        );
        assert_eq!(
            reject(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            400
        );
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(vec![b'a'; 17 * 1024]);
        assert_eq!(reject(&big), 431);
        // A body shorter than its Content-Length is simply not complete yet.
        assert_eq!(
            parse_request(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", &l),
            Parse::Partial
        );
    }

    #[test]
    fn same_requests_whatever_the_split() {
        let input: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyzGET /c?d=1 HTTP/1.0\r\n\r\n";
        let whole = collect(&[input]);
        assert_eq!(whole.len(), 3);
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(collect(&[a, b]), whole, "split at {cut}");
        }
    }

    fn collect(parts: &[&[u8]]) -> Vec<Request> {
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for p in parts {
            buf.extend_from_slice(p);
            while let Parse::Done(r, n) = parse_request(&buf, &Limits::default()) {
                out.push(r);
                buf.drain(..n);
            }
        }
        out
    }

    #[test]
    fn formats_http_dates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_784_995_200), "Sat, 25 Jul 2026 16:00:00 GMT");
    }

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 2\r\n\r\n{}";
        match parse_response(raw, 100) {
            ResponseParse::Done(r, n) => {
                assert_eq!(r.status, 401);
                assert_eq!(r.body, b"{}");
                assert_eq!(n, raw.len());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(parse_response(&raw[..20], 100), ResponseParse::Partial);
    }
}
