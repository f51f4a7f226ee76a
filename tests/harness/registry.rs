//! The one registry (JSON lines) client of the tests, and tokens minted
//! with the test secret.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

use serde_json::{json, Value};

use super::{now, IO_TIMEOUT, SECRET};

/// A registry connection speaking JSON lines.
pub struct RegistryClient {
    pub stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl RegistryClient {
    pub fn connect(addr: SocketAddr) -> RegistryClient {
        let stream = TcpStream::connect(addr).expect("connect registry");
        stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
        let reader = BufReader::new(stream.try_clone().expect("clone"));
        RegistryClient { stream, reader }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next reply line, parsed; None at EOF (or a read timeout).
    pub fn line(&mut self) -> Option<Value> {
        let mut s = String::new();
        match self.reader.read_line(&mut s) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                Some(serde_json::from_str(&s).unwrap_or_else(|e| panic!("bad reply {s:?}: {e}")))
            }
        }
    }

    /// Sends `{"action", "data"}` and returns the reply.
    pub fn req(&mut self, action: &str, data: Value) -> Value {
        let line = json!({"action": action, "data": data}).to_string() + "\n";
        self.send_raw(line.as_bytes());
        self.line().expect("a reply line")
    }

    /// REGISTER `host` with a valid token and no files.
    pub fn register(&mut self, host: &str) -> Value {
        self.req(
            "REGISTER",
            json!({"hostname": host, "port": 6001, "ip": "127.0.0.1", "token": token(host)}),
        )
    }

    /// True when the server closed the connection.
    pub fn is_closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

/// A user token minted with the test secret, valid for an hour.
pub fn token(sub: &str) -> String {
    token_exp(sub, now() + 3600)
}

pub fn token_exp(sub: &str, exp: u64) -> String {
    p2pshare::auth::jwt::sign(
        SECRET.as_bytes(),
        &p2pshare::auth::jwt::Claims {
            sub: sub.into(),
            role: "user".into(),
            iat: now(),
            exp,
        },
    )
}
