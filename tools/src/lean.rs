//! The lean load client for held registry connections at high rates (registry-bench
//! `--hold`, open and closed loop, pipelined or not): request lines built once, answers
//! matched to requests by counting newlines and judged by their first bytes, writes
//! batched per connection and turn. No JSON on the hot path: only a line that is neither a
//! known good answer nor complete in one piece is looked at closer. It owns the streams it
//! is given and its own `Poll`, and sends only the two lines each connection was given.

use crate::hist::{OpSet, Reasons};
use crate::net::{classify, find_newline};
use crate::pacing::EARLY;
use crate::prng::SplitMix64;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

/// Good answers of PING and REQUEST, and the echo server's line: the first bytes of
/// `p2pshare_proto::registry::Reply`'s encodings (a test holds them to it). Anything
/// else (ERROR in particular) goes to `net::classify`.
const GOOD: [&[u8]; 5] = [
    b"{\"status\":\"ALIVE\"",
    b"{\"status\":\"FOUND\"",
    b"{\"status\":\"NOTFOUND\"",
    b"{\"status\":\"DEAD\"",
    b"{\"status\":\"OK\"",
];

/// None for a good answer, else the ERROR reason or why the line is unusable. Known good
/// answers are recognised by their first bytes; only the rest is parsed.
pub fn judge(line: &[u8]) -> Option<String> {
    if GOOD.iter().any(|g| line.starts_with(g)) {
        return None;
    }
    classify(line)
}

/// How a load phase sends.
#[derive(Debug, Clone)]
pub struct Spec {
    pub duration: Duration,
    /// Requests per second for this process (open loop); None: closed loop.
    pub rate: Option<f64>,
    /// Closed loop: requests outstanding per connection (written together at the start).
    pub pipeline: usize,
    /// Share of requests that use a connection's first line (the rest use its second).
    pub first_share: f64,
    /// The caller's operation numbers (in its `OpSet`) for the first and second line.
    pub ops: [u8; 2],
    /// Give up on a connection whose oldest request is older than this.
    pub timeout: Duration,
    pub seed: u64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub sent: u64,
    /// Answers received inside the window (what throughput is computed from).
    pub answered_in_window: u64,
    pub answered: u64,
    pub window: Duration,
    pub conns_lost: u64,
}

struct Conn {
    stream: TcpStream,
    lines: [Vec<u8>; 2],
    out: Vec<u8>,
    out_pos: usize,
    /// Unanswered requests: (nanoseconds after the start it was meant to go out, line).
    pending: VecDeque<(u64, u8)>,
    /// The beginning of a line whose newline has not arrived yet.
    tail: Vec<u8>,
    alive: bool,
    dirty: bool,
}

/// Held connections driven by the lean loop; dropping it closes them.
pub struct Lean {
    poll: Poll,
    conns: Vec<Conn>,
}

/// The per-run counters and sinks, apart from the connections (so both can be borrowed).
struct Tally<'a> {
    spec: &'a Spec,
    ops: &'a mut OpSet,
    reasons: &'a mut Reasons,
    rng: SplitMix64,
    out: Outcome,
    errors: u64,
    in_flight: u64,
    start: Instant,
    end: Instant,
    dirty: Vec<usize>,
}

impl Lean {
    /// Take over connected streams, each with its two request lines (ending in `\n`).
    pub fn new(streams: Vec<(TcpStream, [Vec<u8>; 2])>) -> io::Result<Lean> {
        let poll = Poll::new()?;
        let mut conns = Vec::with_capacity(streams.len());
        for (k, (mut stream, lines)) in streams.into_iter().enumerate() {
            poll.registry().register(
                &mut stream,
                Token(k),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            conns.push(Conn {
                stream,
                lines,
                out: Vec::new(),
                out_pos: 0,
                pending: VecDeque::new(),
                tail: Vec::new(),
                alive: true,
                dirty: false,
            });
        }
        Ok(Lean { poll, conns })
    }

    pub fn len(&self) -> usize {
        self.conns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Connections still usable.
    pub fn alive(&self) -> usize {
        self.conns.iter().filter(|c| c.alive).count()
    }

    /// Drive load for `spec.duration`, then wait (up to 10 s) for the answers still due.
    /// Latency counts from each request's intended send time (open loop: its slot in the
    /// schedule, so a slow server cannot hide by slowing the client). `progress(sent,
    /// answered, errors)` is called twice a second.
    pub fn run(
        &mut self,
        spec: &Spec,
        ops: &mut OpSet,
        reasons: &mut Reasons,
        mut progress: impl FnMut(u64, u64, u64),
    ) -> Result<Outcome, String> {
        let start = Instant::now();
        let mut t = Tally {
            spec,
            ops,
            reasons,
            rng: SplitMix64::new(spec.seed),
            out: Outcome::default(),
            errors: 0,
            in_flight: 0,
            start,
            end: start + spec.duration,
            dirty: Vec::new(),
        };
        let live: Vec<usize> = (0..self.conns.len())
            .filter(|&k| self.conns[k].alive)
            .collect();
        if live.is_empty() {
            t.out.window = spec.duration;
            return Ok(t.out);
        }
        if spec.rate.is_none() {
            for &k in &live {
                for _ in 0..spec.pipeline.max(1) {
                    t.queue(&mut self.conns[k], k, 0);
                }
            }
        }
        let mut events = Events::with_capacity(4096);
        let mut scratch = vec![0u8; 64 * 1024];
        let mut k_next: u64 = 0;
        let mut rr = 0usize;
        let mut last_sweep = start;
        let mut last_prog = start;
        let drain_until = t.end + Duration::from_secs(10);
        loop {
            let now = Instant::now();
            let now_ns = now.duration_since(start).as_nanos() as u64;
            let mut wait = Duration::from_millis(50);
            if let Some(rate) = spec.rate {
                // Everything whose intended time has come goes out now, late or not (timed
                // from that time); what falls due within `EARLY` a little early.
                loop {
                    let due_ns = (k_next as f64 * 1e9 / rate) as u64;
                    let due = start + Duration::from_nanos(due_ns);
                    if due >= t.end {
                        break;
                    }
                    if due > now + EARLY {
                        wait = wait.min(due - now - EARLY);
                        break;
                    }
                    let mut tries = 0;
                    while tries < live.len() && !self.conns[live[rr % live.len()]].alive {
                        rr += 1;
                        tries += 1;
                    }
                    let k = live[rr % live.len()];
                    rr += 1;
                    if self.conns[k].alive {
                        t.queue(&mut self.conns[k], k, due_ns.min(now_ns));
                    } else {
                        // No connection left: the request is lost.
                        let i = t.pick();
                        t.ops.get(spec.ops[i as usize] as usize).lost += 1;
                        t.errors += 1;
                    }
                    k_next += 1;
                }
            }
            if now >= t.end && (t.in_flight == 0 || now >= drain_until) {
                break;
            }
            for k in std::mem::take(&mut t.dirty) {
                let c = &mut self.conns[k];
                c.dirty = false;
                if c.alive {
                    if let Err(e) = flush(c) {
                        t.fail(&self.poll, c, &format!("write failed: {e}"));
                    }
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(format!("poll: {e}"));
                }
            }
            for ev in events.iter() {
                let k = ev.token().0;
                let Some(c) = self.conns.get_mut(k) else {
                    continue;
                };
                if !c.alive {
                    continue;
                }
                let closed = ev.is_read_closed() || ev.is_error();
                if ev.is_writable() {
                    if let Err(e) = flush(c) {
                        t.fail(&self.poll, c, &format!("write failed: {e}"));
                        continue;
                    }
                }
                if ev.is_readable() || closed {
                    if let Err(e) = t.read(c, k, &mut scratch, closed) {
                        t.fail(&self.poll, c, &e);
                    }
                }
            }
            let now = Instant::now();
            if now.duration_since(last_sweep) >= Duration::from_millis(500) {
                last_sweep = now;
                let limit = now.duration_since(start).saturating_sub(spec.timeout);
                let limit_ns = limit.as_nanos() as u64;
                for c in self.conns.iter_mut() {
                    let late = c.pending.front().is_some_and(|&(t0, _)| t0 < limit_ns);
                    if c.alive && late && !limit.is_zero() {
                        let secs = spec.timeout.as_secs_f64();
                        t.fail(&self.poll, c, &format!("no answer within {secs} s"));
                    }
                }
            }
            if now.duration_since(last_prog) >= Duration::from_millis(500) {
                last_prog = now;
                progress(t.out.sent, t.out.answered, t.errors);
            }
        }
        t.out.window = spec.duration;
        progress(t.out.sent, t.out.answered, t.errors);
        Ok(t.out)
    }
}

impl Tally<'_> {
    /// Which of the two lines the next request uses.
    fn pick(&mut self) -> u8 {
        u8::from(self.rng.unit() >= self.spec.first_share)
    }

    /// Append one request to `c`'s output (written before the next wait).
    fn queue(&mut self, c: &mut Conn, k: usize, t0_ns: u64) {
        let i = self.pick();
        c.out.extend_from_slice(&c.lines[i as usize]);
        c.pending.push_back((t0_ns, i));
        self.out.sent += 1;
        self.in_flight += 1;
        if !c.dirty {
            c.dirty = true;
            self.dirty.push(k);
        }
    }

    /// Read what is there and account for every complete answer. A read shorter than the
    /// buffer emptied the socket (epoll reports new data with a new edge), so the read that
    /// would only say WouldBlock is skipped unless the peer closed.
    fn read(&mut self, c: &mut Conn, k: usize, buf: &mut [u8], closed: bool) -> Result<(), String> {
        loop {
            match c.stream.read(buf) {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(n) => {
                    self.lines(c, k, &buf[..n])?;
                    if n < buf.len() && !closed {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(format!("read failed: {e}")),
            }
        }
    }

    fn lines(&mut self, c: &mut Conn, k: usize, data: &[u8]) -> Result<(), String> {
        let now = Instant::now();
        let now_ns = now.duration_since(self.start).as_nanos() as u64;
        let in_window = now <= self.end;
        let mut rest = data;
        while let Some(nl) = find_newline(rest) {
            let (line, after) = rest.split_at(nl);
            rest = &after[1..];
            let verdict = if c.tail.is_empty() {
                judge(line)
            } else {
                c.tail.extend_from_slice(line);
                let v = judge(&c.tail);
                c.tail.clear();
                v
            };
            let Some((t0, i)) = c.pending.pop_front() else {
                return Err("an answer arrived with no request outstanding".into());
            };
            self.in_flight -= 1;
            let op = self.spec.ops[i as usize] as usize;
            let h = self.ops.get(op);
            h.record(Duration::from_nanos(now_ns.saturating_sub(t0)));
            self.out.answered += 1;
            if in_window {
                self.out.answered_in_window += 1;
            }
            if let Some(e) = verdict {
                h.errors += 1;
                self.errors += 1;
                let name = self.ops.names.get(op).copied().unwrap_or("?");
                self.reasons.add(&format!("{name}: {e}"));
            }
            if self.spec.rate.is_none() && in_window {
                self.queue(c, k, now_ns);
            }
        }
        if !rest.is_empty() {
            if c.tail.len() + rest.len() > 1 << 30 {
                return Err("answer line longer than 1 GiB".into());
            }
            c.tail.extend_from_slice(rest);
        }
        Ok(())
    }

    /// The connection broke: its unanswered requests are lost.
    fn fail(&mut self, poll: &Poll, c: &mut Conn, error: &str) {
        c.alive = false;
        let _ = poll.registry().deregister(&mut c.stream);
        let lost = c.pending.len() as u64;
        for &(_, i) in &c.pending {
            self.ops.get(self.spec.ops[i as usize] as usize).lost += 1;
        }
        c.pending.clear();
        self.in_flight -= lost;
        self.errors += lost;
        self.out.conns_lost += 1;
        self.reasons.add_n(error, lost.max(1));
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
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::Echo;
    use p2pshare_proto::registry::Reply;

    #[test]
    fn good_prefixes_are_the_protocols_own_replies() {
        // GOOD is a byte-prefix shortcut; it must follow the encoder in
        // proto/, and never match an ERROR.
        for reply in [
            Reply::Alive,
            Reply::Found(Vec::new()),
            Reply::NotFound,
            Reply::Dead,
            Reply::Ok,
        ] {
            let line = reply.line();
            assert!(GOOD.iter().any(|g| line.starts_with(g)), "{reply:?}");
            assert_eq!(judge(&line[..line.len() - 1]), None);
        }
        let err = Reply::Error("nope".into()).line();
        assert!(!GOOD.iter().any(|g| err.starts_with(g)));
        assert_eq!(judge(&err[..err.len() - 1]).as_deref(), Some("nope"));
    }

    static NAMES: &[&str] = &["A", "B"];

    fn connect(addr: std::net::SocketAddr, n: usize) -> Vec<(TcpStream, [Vec<u8>; 2])> {
        (0..n)
            .map(|_| {
                let s = std::net::TcpStream::connect(addr).unwrap();
                s.set_nonblocking(true).unwrap();
                (
                    TcpStream::from_std(s),
                    [b"ping\n".to_vec(), b"request\n".to_vec()],
                )
            })
            .collect()
    }

    fn spec(rate: Option<f64>, pipeline: usize) -> Spec {
        Spec {
            duration: Duration::from_millis(500),
            rate,
            pipeline,
            first_share: 0.5,
            ops: [0, 1],
            timeout: Duration::from_secs(5),
            seed: 1,
        }
    }

    #[test]
    fn judge_knows_good_answers_by_prefix_and_parses_the_rest() {
        assert_eq!(judge(br#"{"status":"ALIVE"}"#), None);
        assert_eq!(judge(br#"{"status":"FOUND","hosts":[{"x":1}]}"#), None);
        assert_eq!(judge(br#"{"status":"NOTFOUND","hosts":[]}"#), None);
        assert_eq!(
            judge(br#"{"status":"ERROR","reason":"forbidden"}"#).as_deref(),
            Some("forbidden")
        );
        // Spaced JSON is still understood, just not on the fast path.
        assert_eq!(judge(br#"{"status": "ALIVE"}"#), None);
        assert!(judge(b"garbage").is_some());
    }

    #[test]
    fn pipelined_closed_loop_matches_every_answer() {
        let echo = Echo::start(b"{\"status\":\"ALIVE\"}\n").unwrap();
        let mut lean = Lean::new(connect(echo.addr, 4)).unwrap();
        let mut ops = OpSet::new(NAMES);
        let mut reasons = Reasons::default();
        let out = lean
            .run(&spec(None, 8), &mut ops, &mut reasons, |_, _, _| {})
            .unwrap();
        assert!(out.answered > 1000, "{out:?}");
        assert_eq!(out.answered, out.sent, "every request answered: {out:?}");
        assert_eq!(ops.answered(), out.answered);
        assert!(!ops.ops[0].hist.is_empty() && !ops.ops[1].hist.is_empty());
        assert_eq!(ops.ops[0].errors + ops.ops[1].errors, 0);
        assert_eq!(out.conns_lost, 0);
        assert!(reasons.0.is_empty());
    }

    #[test]
    fn open_loop_keeps_its_rate_and_counts_error_answers() {
        let echo = Echo::start(b"{\"status\":\"ERROR\",\"reason\":\"nope\"}\n").unwrap();
        let mut lean = Lean::new(connect(echo.addr, 3)).unwrap();
        let mut ops = OpSet::new(NAMES);
        let mut reasons = Reasons::default();
        let out = lean
            .run(&spec(Some(1000.0), 1), &mut ops, &mut reasons, |_, _, _| {})
            .unwrap();
        assert_eq!(out.sent, 500, "{out:?}");
        assert_eq!(out.answered, 500);
        assert_eq!(ops.ops[0].errors + ops.ops[1].errors, 500);
        assert_eq!(reasons.0.values().sum::<u64>(), 500);
        assert!(
            reasons.0.keys().all(|k| k.ends_with(": nope")),
            "{reasons:?}"
        );
    }

    #[test]
    fn a_server_that_closes_loses_the_requests_in_flight() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let conns = connect(addr, 1);
        let (s, _) = l.accept().unwrap();
        drop(s);
        let mut lean = Lean::new(conns).unwrap();
        let mut ops = OpSet::new(NAMES);
        let mut reasons = Reasons::default();
        let out = lean
            .run(&spec(None, 4), &mut ops, &mut reasons, |_, _, _| {})
            .unwrap();
        assert_eq!(out.conns_lost, 1);
        assert_eq!(out.answered, 0);
        assert_eq!(ops.ops[0].lost + ops.ops[1].lost, 4);
        assert_eq!(lean.alive(), 0);
    }
}
