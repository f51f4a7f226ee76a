//! A raw peer-protocol connection, for tests that speak to a peer listener
//! themselves.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use super::IO_TIMEOUT;

pub struct PeerConn {
    pub s: TcpStream,
    buf: Vec<u8>,
}

impl PeerConn {
    pub fn connect(addr: SocketAddr) -> PeerConn {
        let s = TcpStream::connect(addr).expect("connect peer");
        s.set_read_timeout(Some(IO_TIMEOUT)).ok();
        PeerConn { s, buf: Vec::new() }
    }

    pub fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).expect("send");
    }

    fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 64 * 1024];
        match self.s.read(&mut tmp) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
        }
    }

    /// The next line without its newline; "" at EOF.
    pub fn line(&mut self) -> String {
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                let l: Vec<u8> = self.buf.drain(..=i).collect();
                return String::from_utf8_lossy(&l[..i]).into_owned();
            }
            if !self.fill() {
                return String::new();
            }
        }
    }

    /// Exactly `n` payload bytes (fewer if the peer closes).
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            if !self.fill() {
                break;
            }
        }
        let n = n.min(self.buf.len());
        self.buf.drain(..n).collect()
    }

    /// True when the peer closed (EOF or reset) with nothing more to read.
    pub fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill()
    }
}
