//! The reference server: a minimal mio line server on its own thread and `Poll` that
//! answers every request line with one fixed short line. It measures this machine's
//! ceiling for the same connections and request lines; it understands no protocol.

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
/// Stop reading a connection while this much output waits (the client is not reading).
const OUT_CAP: usize = 4 << 20;

/// A running echo server; dropping it stops the thread.
pub struct Echo {
    pub addr: SocketAddr,
    pub lines: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    thread: Option<JoinHandle<()>>,
}

struct Conn {
    stream: TcpStream,
    out: Vec<u8>,
    out_pos: usize,
}

impl Echo {
    /// Listen on 127.0.0.1 port 0 and answer each line with `reply` (which ends in `\n`).
    pub fn start(reply: &'static [u8]) -> io::Result<Echo> {
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind("127.0.0.1:0".parse().map_err(io::Error::other)?)?;
        let addr = listener.local_addr()?;
        // mio listens with std's backlog of 128; a burst of connects would overflow it and
        // measure SYN retries (1 s) instead of the server. Linux lets listen() raise it.
        // SAFETY: listen on a descriptor the listener owns.
        unsafe {
            use std::os::fd::AsRawFd;
            libc::listen(listener.as_raw_fd(), 4096);
        }
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let stop = Arc::new(AtomicBool::new(false));
        let lines = Arc::new(AtomicU64::new(0));
        let (stop2, lines2) = (stop.clone(), lines.clone());
        let thread = std::thread::Builder::new()
            .name("echo-server".into())
            .spawn(move || serve(poll, listener, reply, stop2, lines2))?;
        Ok(Echo {
            addr,
            lines,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(
    mut poll: Poll,
    listener: TcpListener,
    reply: &'static [u8],
    stop: Arc<AtomicBool>,
    lines: Arc<AtomicU64>,
) {
    let mut events = Events::with_capacity(4096);
    let mut conns: Slab<Conn> = Slab::new();
    let mut buf = vec![0u8; 256 * 1024];
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            eprintln!("echo server: poll failed: {e}");
            return;
        }
        for ev in events.iter() {
            match ev.token() {
                WAKER => {}
                LISTENER => loop {
                    match listener.accept() {
                        Ok((mut s, _)) => {
                            let _ = s.set_nodelay(true);
                            let entry = conns.vacant_entry();
                            let tok = Token(entry.key());
                            if poll
                                .registry()
                                .register(&mut s, tok, Interest::READABLE | Interest::WRITABLE)
                                .is_ok()
                            {
                                entry.insert(Conn {
                                    stream: s,
                                    out: Vec::new(),
                                    out_pos: 0,
                                });
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        // Out of descriptors and the like: try again on the next event.
                        Err(_) => break,
                    }
                },
                Token(k) => {
                    let Some(c) = conns.get_mut(k) else { continue };
                    let closed = ev.is_read_closed() || ev.is_error();
                    if !pump(c, &mut buf, reply, &lines, closed) {
                        let mut c = conns.remove(k);
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                }
            }
        }
    }
}

/// Read what is there, answer each line, write what we can. False when the connection is
/// finished (closed or broken). A read shorter than the buffer emptied the socket (new
/// data brings a new edge), so the read that would only say WouldBlock is skipped unless
/// the peer closed: a ceiling should not pay a syscall the servers it is compared with
/// need not.
fn pump(c: &mut Conn, buf: &mut [u8], reply: &[u8], lines: &AtomicU64, closed: bool) -> bool {
    loop {
        if !flush(c) {
            return false;
        }
        if c.out.len() - c.out_pos >= OUT_CAP {
            // Wait for the writable edge; reading resumes then.
            return true;
        }
        match c.stream.read(buf) {
            Ok(0) => return false,
            Ok(n) => {
                let count = buf[..n].iter().filter(|&&b| b == b'\n').count();
                lines.fetch_add(count as u64, Ordering::Relaxed);
                for _ in 0..count {
                    c.out.extend_from_slice(reply);
                }
                if n < buf.len() && !closed {
                    return flush(c);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return flush(c),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
}

fn flush(c: &mut Conn) -> bool {
    while c.out_pos < c.out.len() {
        match c.stream.write(&c.out[c.out_pos..]) {
            Ok(0) => return false,
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        }
    }
    c.out.clear();
    c.out_pos = 0;
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn answers_every_line_even_when_pipelined() {
        let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n").unwrap();
        let mut s = std::net::TcpStream::connect(echo.addr).unwrap();
        s.write_all(b"a\nb\nc").unwrap();
        s.write_all(b"\n").unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        for _ in 0..3 {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert_eq!(line, "{\"status\":\"ALIVE\"}\n");
        }
        assert_eq!(echo.lines.load(Ordering::Relaxed), 3);
        drop(echo);
    }
}
