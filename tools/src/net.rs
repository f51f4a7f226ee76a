//! Many non-blocking registry connections on one mio `Poll`: open (optionally from rotating
//! loopback source addresses), queue request lines, split and time response lines, report
//! broken connections and timeouts as events. It knows nothing of actions or scenarios.

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// A connection as the caller sees it: slab key plus a generation, so an event for a
/// closed connection can never be taken for the one that reused its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    key: u32,
    gen: u32,
}

/// A request in flight: which operation, when it should have been sent (latency is taken
/// from here, so open-loop runs are corrected for coordinated omission) and when it was.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub op: u8,
    pub t0: Instant,
    pub sent: Instant,
}

#[derive(Debug)]
pub enum NetEvent {
    Connected {
        id: ConnId,
        tag: usize,
        took: Duration,
    },
    /// The connect failed or timed out; `lost` are requests queued before it finished.
    ConnectFailed {
        id: ConnId,
        tag: usize,
        took: Duration,
        error: String,
        lost: Vec<Sent>,
    },
    /// One response line. `error` is the ERROR reason (or why the line is unusable).
    Reply {
        id: ConnId,
        tag: usize,
        op: u8,
        latency: Duration,
        error: Option<String>,
    },
    /// The connection broke (closed by the peer, reset, timed out, bad line); `lost` are
    /// the requests that will never be answered.
    Closed {
        id: ConnId,
        tag: usize,
        error: String,
        lost: Vec<Sent>,
    },
}

struct Conn {
    gen: u32,
    tag: usize,
    stream: TcpStream,
    connecting: Option<Instant>,
    out: Vec<u8>,
    out_pos: usize,
    /// The unfinished tail of the last read (no newline yet).
    inb: Vec<u8>,
    pending: VecDeque<Sent>,
}

/// Largest response line we accept (a full LIST of a big registry is tens of MiB).
const MAX_LINE: usize = 1 << 30;
/// Lines up to this size are parsed as JSON; larger ones are only checked for status
/// (parsing every 60 KiB LIST page would cost the client as much CPU as the server).
const PARSE_LIMIT: usize = 4 * 1024;

pub struct Net {
    poll: Poll,
    events: Events,
    conns: Slab<Conn>,
    next_gen: u32,
    dirty: Vec<ConnId>,
    scratch: Vec<u8>,
    sources: Vec<Ipv4Addr>,
    next_src: usize,
    /// A request (or connect) older than this is given up and its connection closed.
    pub timeout: Duration,
    last_sweep: Instant,
    /// Connections that stopped reading at `READS_PER_TURN` with data still there (and
    /// whether their peer had closed).
    again: Vec<(usize, bool)>,
}

/// Reads of one connection per turn. A full LIST answer of a big registry is 100 MiB or
/// more; read in one go it would stall every other connection of this process for tens of
/// milliseconds and the client, not the server, would make their latencies.
const READS_PER_TURN: usize = 8;

impl Net {
    /// `source_ips`: for loopback destinations, spread connections over 127.0.0.1..=N so
    /// closed connections' TIME_WAIT never exhausts one address's ephemeral ports.
    pub fn new(source_ips: usize, timeout: Duration) -> io::Result<Net> {
        let sources = (1..=source_ips.clamp(1, 250))
            .map(|i| Ipv4Addr::new(127, 0, 0, i as u8))
            .collect();
        Ok(Net {
            poll: Poll::new()?,
            events: Events::with_capacity(4096),
            conns: Slab::new(),
            next_gen: 1,
            dirty: Vec::new(),
            scratch: vec![0; 256 * 1024],
            sources,
            next_src: 0,
            timeout,
            last_sweep: Instant::now(),
            again: Vec::new(),
        })
    }

    pub fn open(&self) -> usize {
        self.conns.len()
    }

    /// Start connecting; `tag` comes back with every event of this connection.
    pub fn connect(&mut self, addr: SocketAddr, tag: usize) -> io::Result<ConnId> {
        let mut stream = match addr {
            SocketAddr::V4(v4) if v4.ip().is_loopback() => {
                let src = self.sources[self.next_src % self.sources.len()];
                self.next_src += 1;
                connect_from(src, v4.ip(), v4.port())?
            }
            _ => TcpStream::connect(addr)?,
        };
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        self.poll.registry().register(
            &mut stream,
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        entry.insert(Conn {
            gen,
            tag,
            stream,
            connecting: Some(Instant::now()),
            out: Vec::new(),
            out_pos: 0,
            inb: Vec::new(),
            pending: VecDeque::new(),
        });
        Ok(ConnId {
            key: key as u32,
            gen,
        })
    }

    fn get(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.key as usize)
            .filter(|c| c.gen == id.gen)
    }

    /// Requests not yet answered on `id`.
    pub fn in_flight(&self, id: ConnId) -> usize {
        match self.conns.get(id.key as usize) {
            Some(c) if c.gen == id.gen => c.pending.len(),
            _ => 0,
        }
    }

    /// Queue one request line (ending in `\n`); it is written before the next wait.
    /// Returns false if the connection is gone.
    pub fn send(&mut self, id: ConnId, op: u8, line: &[u8], t0: Instant) -> bool {
        let now = Instant::now();
        let Some(c) = self.get(id) else {
            return false;
        };
        let was_idle = c.out.len() == c.out_pos;
        c.out.extend_from_slice(line);
        c.pending.push_back(Sent { op, t0, sent: now });
        if was_idle {
            self.dirty.push(id);
        }
        true
    }

    /// Hand `id`'s stream over (deregistered from this poll) to a client that drives it
    /// itself; None if it is gone, still connecting, or has requests or output pending.
    pub fn take(&mut self, id: ConnId) -> Option<TcpStream> {
        let c = self.get(id)?;
        if c.connecting.is_some() || !c.pending.is_empty() || c.out_pos < c.out.len() {
            return None;
        }
        let mut c = self.conns.remove(id.key as usize);
        let _ = self.poll.registry().deregister(&mut c.stream);
        Some(c.stream)
    }

    /// Close `id` now (our decision, not an error); returns requests still unanswered.
    pub fn close(&mut self, id: ConnId) -> Vec<Sent> {
        if self.get(id).is_none() {
            return Vec::new();
        }
        let mut c = self.conns.remove(id.key as usize);
        let _ = self.poll.registry().deregister(&mut c.stream);
        c.pending.into_iter().collect()
    }

    fn fail(&mut self, key: usize, error: String, out: &mut Vec<NetEvent>) {
        let Some(mut c) = self.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut c.stream);
        let id = ConnId {
            key: key as u32,
            gen: c.gen,
        };
        let lost = c.pending.into_iter().collect();
        out.push(match c.connecting {
            Some(t) => NetEvent::ConnectFailed {
                id,
                tag: c.tag,
                took: t.elapsed(),
                error,
                lost,
            },
            None => NetEvent::Closed {
                id,
                tag: c.tag,
                error,
                lost,
            },
        });
    }

    /// Write queued output, wait up to `timeout` for readiness, handle it; events are
    /// appended to `out`.
    pub fn turn(&mut self, timeout: Option<Duration>, out: &mut Vec<NetEvent>) -> io::Result<()> {
        let dirty = std::mem::take(&mut self.dirty);
        for id in &dirty {
            let key = id.key as usize;
            let res = match self.conns.get_mut(key) {
                Some(c) if c.gen == id.gen && c.connecting.is_none() => flush(c),
                _ => Ok(()),
            };
            if let Err(e) = res {
                self.fail(key, format!("write failed: {e}"), out);
            }
        }
        self.dirty = dirty;
        self.dirty.clear();

        // Connections with unread data must not wait for a new edge that may never come.
        let again = std::mem::take(&mut self.again);
        let timeout = if again.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        let ready: Vec<(usize, bool, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let closed = e.is_read_closed() || e.is_error();
                (
                    e.token().0,
                    e.is_readable() || closed,
                    e.is_writable() || e.is_error(),
                    closed,
                )
            })
            .collect();
        for (key, readable, writable, closed) in ready {
            if writable {
                self.on_writable(key, out);
            }
            if readable && !self.again.iter().any(|a| a.0 == key) {
                self.on_readable(key, closed, out);
            }
        }
        for (key, closed) in again {
            if !self.again.iter().any(|a| a.0 == key) {
                self.on_readable(key, closed, out);
            }
        }
        if self.last_sweep.elapsed() >= Duration::from_millis(500) {
            self.sweep(out);
        }
        Ok(())
    }

    fn on_writable(&mut self, key: usize, out: &mut Vec<NetEvent>) {
        let Some(c) = self.conns.get_mut(key) else {
            return;
        };
        if let Some(started) = c.connecting {
            if let Ok(Some(e)) | Err(e) = c.stream.take_error() {
                self.fail(key, format!("connect failed: {e}"), out);
                return;
            }
            match c.stream.peer_addr() {
                Ok(_) => {
                    c.connecting = None;
                    let _ = c.stream.set_nodelay(true);
                    out.push(NetEvent::Connected {
                        id: ConnId {
                            key: key as u32,
                            gen: c.gen,
                        },
                        tag: c.tag,
                        took: started.elapsed(),
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.fail(key, format!("connect failed: {e}"), out);
                    return;
                }
            }
        }
        if let Err(e) = flush(c) {
            self.fail(key, format!("write failed: {e}"), out);
        }
    }

    /// Read what is there. A read shorter than the buffer has emptied the socket, and
    /// epoll signals new data with a new edge, so the extra read that would only say
    /// WouldBlock is skipped (it halves read calls at high rates), unless the peer closed:
    /// then we read on to the end-of-file.
    fn on_readable(&mut self, key: usize, closed: bool, out: &mut Vec<NetEvent>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut failure = None;
        if let Some(c) = self.conns.get_mut(key) {
            if c.connecting.is_none() {
                let mut reads = 0;
                loop {
                    if reads == READS_PER_TURN {
                        self.again.push((key, closed));
                        break;
                    }
                    reads += 1;
                    match c.stream.read(&mut scratch) {
                        Ok(0) => {
                            failure = Some("connection closed by the server".to_string());
                            break;
                        }
                        Ok(n) => {
                            if let Err(e) = take_lines(key, c, &scratch[..n], out) {
                                failure = Some(e);
                                break;
                            }
                            if n < scratch.len() && !closed {
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            failure = Some(format!("read failed: {e}"));
                            break;
                        }
                    }
                }
            }
        }
        self.scratch = scratch;
        if let Some(e) = failure {
            self.fail(key, e, out);
        }
    }

    /// Give up on connections whose oldest request (or connect) is older than `timeout`.
    fn sweep(&mut self, out: &mut Vec<NetEvent>) {
        let now = Instant::now();
        self.last_sweep = now;
        let late: Vec<usize> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                let since = c.connecting.or_else(|| c.pending.front().map(|s| s.sent));
                since.is_some_and(|t| now.duration_since(t) > self.timeout)
            })
            .map(|(k, _)| k)
            .collect();
        for key in late {
            let secs = self.timeout.as_secs_f64();
            self.fail(key, format!("no answer within {secs} s"), out);
        }
    }
}

fn flush(c: &mut Conn) -> io::Result<()> {
    while c.out_pos < c.out.len() {
        match c.stream.write(&c.out[c.out_pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => c.out_pos += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    c.out.clear();
    c.out_pos = 0;
    if c.out.capacity() > 256 * 1024 {
        c.out.shrink_to(4096);
    }
    Ok(())
}

/// Split `data` (just read) into lines, using and refilling the connection's partial tail.
fn take_lines(
    key: usize,
    c: &mut Conn,
    data: &[u8],
    out: &mut Vec<NetEvent>,
) -> Result<(), String> {
    let mut rest = data;
    while let Some(nl) = find_newline(rest) {
        let now = Instant::now();
        let (line_part, after) = rest.split_at(nl);
        rest = &after[1..];
        let error = if c.inb.is_empty() {
            classify(line_part)
        } else {
            c.inb.extend_from_slice(line_part);
            let e = classify(&c.inb);
            c.inb.clear();
            if c.inb.capacity() > 1 << 20 {
                c.inb = Vec::new();
            }
            e
        };
        let Some(s) = c.pending.pop_front() else {
            return Err("a response line arrived with no request outstanding".into());
        };
        out.push(NetEvent::Reply {
            id: ConnId {
                key: key as u32,
                gen: c.gen,
            },
            tag: c.tag,
            op: s.op,
            latency: now.saturating_duration_since(s.t0),
            error,
        });
    }
    if !rest.is_empty() {
        if c.inb.len() + rest.len() > MAX_LINE {
            return Err("response line longer than 1 GiB".into());
        }
        c.inb.extend_from_slice(rest);
    }
    Ok(())
}

/// Position of the first `\n`, eight bytes at a time (full LIST answers are tens of MiB;
/// a byte-by-byte scan would make the client, not the server, the bottleneck).
pub fn find_newline(s: &[u8]) -> Option<usize> {
    reactor::line::find_byte(b'\n', s)
}

#[derive(serde::Deserialize)]
struct Head {
    status: String,
    #[serde(default)]
    reason: Option<serde_json::Value>,
}

/// None for a usable answer; otherwise the ERROR reason or why the line is unusable.
pub fn classify(line: &[u8]) -> Option<String> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() <= PARSE_LIMIT {
        return match serde_json::from_slice::<Head>(line) {
            Ok(h) if h.status == "ERROR" => Some(match h.reason {
                Some(serde_json::Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => "ERROR".to_string(),
            }),
            Ok(_) => None,
            Err(e) => Some(format!("malformed response: {e}")),
        };
    }
    // Big answers (a full LIST) are never ERROR lines; parsing tens of MiB here would stall
    // every other connection, so only look for the status near either end.
    let head = &line[..512];
    let tail = &line[line.len() - 512..];
    for part in [head, tail] {
        if let Some(v) = status_value(part) {
            return if v == b"ERROR" {
                Some("ERROR".into())
            } else {
                None
            };
        }
    }
    Some("malformed response: no status near either end of a large line".into())
}

fn status_value(s: &[u8]) -> Option<&[u8]> {
    let key = b"\"status\"";
    let at = s.windows(key.len()).position(|w| w == key)?;
    let mut i = at + key.len();
    while i < s.len() && (s[i] == b' ' || s[i] == b':') {
        i += 1;
    }
    if s.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = s[start..].iter().position(|&b| b == b'"')?;
    Some(&s[start..start + len])
}

/// A non-blocking connect from `src` (port chosen at connect time, so many source
/// addresses do not each reserve a port per socket).
fn connect_from(src: Ipv4Addr, dst: &Ipv4Addr, port: u16) -> io::Result<TcpStream> {
    use std::os::fd::FromRawFd;
    let sin = |ip: &Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(ip.octets()),
        },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: plain socket calls on a descriptor we own; the std stream takes ownership
    // right after creation so every error path closes it.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let owned = std::net::TcpStream::from_raw_fd(fd);
        if src != Ipv4Addr::LOCALHOST || *dst != Ipv4Addr::LOCALHOST {
            let one: libc::c_int = 1;
            libc::setsockopt(
                fd,
                libc::IPPROTO_IP,
                libc::IP_BIND_ADDRESS_NO_PORT,
                &one as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
            let a = sin(&src, 0);
            if libc::bind(
                fd,
                &a as *const libc::sockaddr_in as *const libc::sockaddr,
                len,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        let d = sin(dst, port);
        if libc::connect(
            fd,
            &d as *const libc::sockaddr_in as *const libc::sockaddr,
            len,
        ) != 0
        {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(owned))
    }
}

/// Whether `addr` is IPv4 loopback (where rotating source addresses is possible).
pub fn is_loopback_v4(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(v4) if v4.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};

    #[test]
    fn find_newline_agrees_with_a_plain_scan() {
        let mut buf = vec![b'x'; 40];
        assert_eq!(find_newline(&buf), None);
        for at in 0..40 {
            buf.fill(b'x');
            buf[at] = b'\n';
            if at + 3 < 40 {
                buf[at + 3] = b'\n';
            }
            for start in 0..=at {
                assert_eq!(find_newline(&buf[start..]), Some(at - start));
            }
        }
        // Bytes near '\n' (0x0a) and high bytes must not look like one.
        let tricky: Vec<u8> = (0u8..=255).filter(|&b| b != b'\n').collect();
        assert_eq!(find_newline(&tricky), None);
        assert_eq!(find_newline(b""), None);
    }

    #[test]
    fn classify_small_and_large_lines() {
        assert_eq!(classify(br#"{"status":"OK"}"#), None);
        assert_eq!(
            classify(br#"{"status":"ERROR","reason":"unknown host"}"#).as_deref(),
            Some("unknown host")
        );
        assert!(classify(b"not json").unwrap().starts_with("malformed"));
        assert!(classify(br#"{"nostatus":1}"#).is_some());
        let mut big = br#"{"status": "OK","registry":{"#.to_vec();
        big.extend(std::iter::repeat_n(b' ', 100_000));
        big.extend_from_slice(b"}}");
        assert_eq!(classify(&big), None);
        let mut big2 = br#"{"registry":{"#.to_vec();
        big2.extend(std::iter::repeat_n(b' ', 100_000));
        big2.extend_from_slice(br#"},"status":"OK"}"#);
        assert_eq!(classify(&big2), None);
        let big3 = vec![b' '; 100_000];
        assert!(classify(&big3).is_some());
    }

    /// A line server in a thread answering each line; split writes exercise reassembly.
    fn line_server(answer: &'static [u8], split: bool) -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(s) = s else { return };
                std::thread::spawn(move || {
                    let mut w = s.try_clone().unwrap();
                    let r = BufReader::new(s);
                    for line in r.lines() {
                        if line.is_err() {
                            return;
                        }
                        if split {
                            let (a, b) = answer.split_at(answer.len() / 2);
                            let _ = w.write_all(a);
                            let _ = w.flush();
                            std::thread::sleep(Duration::from_millis(2));
                            let _ = w.write_all(b);
                        } else {
                            let _ = w.write_all(answer);
                        }
                    }
                });
            }
        });
        addr
    }

    fn run_until(net: &mut Net, mut done: impl FnMut(&[NetEvent]) -> bool) -> Vec<NetEvent> {
        let mut all = Vec::new();
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            let mut ev = Vec::new();
            net.turn(Some(Duration::from_millis(50)), &mut ev).unwrap();
            all.extend(ev);
            if done(&all) {
                return all;
            }
        }
        panic!("timed out: {all:?}");
    }

    #[test]
    fn pipelined_requests_get_their_replies_in_order_across_split_reads() {
        let addr = line_server(b"{\"status\":\"ERROR\",\"reason\":\"nope\"}\n", true);
        let mut net = Net::new(4, Duration::from_secs(5)).unwrap();
        let id = net.connect(addr, 7).unwrap();
        let t0 = Instant::now();
        for op in 0..3u8 {
            assert!(net.send(id, op, b"{}\n", t0));
        }
        let ev = run_until(&mut net, |e| {
            e.iter()
                .filter(|x| matches!(x, NetEvent::Reply { .. }))
                .count()
                == 3
        });
        let ops: Vec<u8> = ev
            .iter()
            .filter_map(|e| match e {
                NetEvent::Reply { op, error, tag, .. } => {
                    assert_eq!(error.as_deref(), Some("nope"));
                    assert_eq!(*tag, 7);
                    Some(*op)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ops, vec![0, 1, 2]);
        assert!(matches!(ev[0], NetEvent::Connected { tag: 7, .. }));
        assert_eq!(net.close(id).len(), 0);
        assert!(
            !net.send(id, 0, b"{}\n", t0),
            "closed id must not be usable"
        );
    }

    #[test]
    fn a_huge_answer_arrives_whole_while_read_in_turns() {
        // 12 MiB: many times READS_PER_TURN reads, so the rest must be read on later turns.
        let mut big = br#"{"status":"OK","x":""#.to_vec();
        big.extend(std::iter::repeat_n(b'a', 12 << 20));
        big.extend_from_slice(b"\"}\n");
        let big: &'static [u8] = big.leak();
        let addr = line_server(big, false);
        let small = line_server(b"{\"status\":\"OK\"}\n", false);
        let mut net = Net::new(1, Duration::from_secs(5)).unwrap();
        let a = net.connect(addr, 1).unwrap();
        let b = net.connect(small, 2).unwrap();
        net.send(a, 0, b"{}\n", Instant::now());
        for _ in 0..5 {
            net.send(b, 1, b"{}\n", Instant::now());
        }
        let ev = run_until(&mut net, |e| {
            e.iter()
                .filter(|x| matches!(x, NetEvent::Reply { .. }))
                .count()
                == 6
        });
        for e in &ev {
            if let NetEvent::Reply { error, .. } = e {
                assert_eq!(error, &None);
            }
        }
        assert!(net.again.is_empty());
    }

    #[test]
    fn refused_connect_and_server_close_are_events() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = l.local_addr().unwrap();
        drop(l);
        let mut net = Net::new(1, Duration::from_secs(5)).unwrap();
        match net.connect(dead, 1) {
            Err(_) => {}
            Ok(_) => {
                let ev = run_until(&mut net, |e| !e.is_empty());
                assert!(
                    matches!(ev[0], NetEvent::ConnectFailed { tag: 1, .. }),
                    "{ev:?}"
                );
            }
        }
        // A server that accepts and closes at once: the queued request is lost.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((s, _)) = l.accept() {
                drop(s);
            }
        });
        let id = net.connect(addr, 2).unwrap();
        net.send(id, 5, b"{}\n", Instant::now());
        let ev = run_until(&mut net, |e| {
            e.iter().any(|x| matches!(x, NetEvent::Closed { .. }))
        });
        let lost = ev.iter().find_map(|e| match e {
            NetEvent::Closed { lost, tag: 2, .. } => Some(lost.len()),
            _ => None,
        });
        assert_eq!(lost, Some(1));
        assert_eq!(net.open(), 0);
    }

    #[test]
    fn unanswered_request_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let _keep = std::thread::spawn(move || {
            let s = l.accept();
            std::thread::sleep(Duration::from_secs(5));
            drop(s);
        });
        let mut net = Net::new(1, Duration::from_millis(300)).unwrap();
        let id = net.connect(addr, 3).unwrap();
        net.send(id, 1, b"{}\n", Instant::now());
        let ev = run_until(&mut net, |e| {
            e.iter().any(|x| matches!(x, NetEvent::Closed { .. }))
        });
        assert!(ev
            .iter()
            .any(|e| matches!(e, NetEvent::Closed { error, .. } if error.contains("no answer"))));
    }
}
