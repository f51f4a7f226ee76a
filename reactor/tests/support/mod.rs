//! A tiny line service and a loop running on its own thread, for the reactor's
//! loopback tests. Commands, one per line:
//! `ECHO x` → `x`; `BIG n` → n bytes of a known pattern; `STALE` → the service
//! sends to the first connection it ever accepted (which may be gone) and
//! answers whether the loop still called that id open; `SPIN ms` → busy
//! for ms in the loop, then `spun`; `TURNS` → `count max_ms p99_ms over_2ms`
//! of the loop's turns; `KEEPALIVE idle interval count` → sets it and
//! answers what the kernel holds; `KEEPALIVE_ON` → turns it on with the
//! timings inherited from the listener (40 20 5) and answers them; `PARTS n` → n shared pieces of the `BIG`
//! pattern (n × 100 bytes), queued by reference.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use reactor::{CloseReason, ConnId, ConnOptions, Ctx, ListenerId, Reactor, Service};

/// What the service saw, shared with the test thread.
#[derive(Default)]
pub struct Seen {
    pub accepted: Vec<ConnId>,
    pub closed: Vec<(ConnId, CloseReason)>,
    /// The most owned output ever queued on one connection.
    pub max_output: usize,
    /// `BIG` requests handled so far.
    pub bigs: usize,
    pub timers: Vec<(u64, Instant)>,
    pub logs: Vec<String>,
}

pub struct LineService {
    pub seen: Arc<Mutex<Seen>>,
    /// Timers armed on the first turn: (delay, key, cancel it).
    pub arm: Vec<(Duration, u64, bool)>,
    pub armed: bool,
}

/// The service takes no new request while this much output waits.
pub const OUTPUT_CAP: usize = 256 * 1024;

pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

impl Service for LineService {
    fn on_accept(&mut self, cx: &mut Ctx, _l: ListenerId, id: ConnId, _peer: SocketAddr) {
        self.seen.lock().unwrap().accepted.push(id);
        if !self.armed {
            self.armed = true;
            for (after, key, cancel) in std::mem::take(&mut self.arm) {
                let t = cx.timer(0, after, key);
                if cancel {
                    cx.cancel_timer(t);
                }
            }
        }
    }

    fn on_input(&mut self, cx: &mut Ctx, id: ConnId) {
        loop {
            // A well-behaved service stops taking requests while its answers
            // are over the cap, and asks to hear when they have drained.
            if cx.output_len(id) >= OUTPUT_CAP {
                cx.notify_drained(id);
                return;
            }
            let input = cx.input(id);
            let Some(nl) = input.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line = String::from_utf8_lossy(&input[..nl]).into_owned();
            cx.consume(id, nl + 1);
            if let Some(x) = line.strip_prefix("ECHO ") {
                cx.send(id, format!("{x}\n").as_bytes());
            } else if let Some(n) = line.strip_prefix("BIG ") {
                let n: usize = n.parse().unwrap_or(0);
                cx.send_vec(id, (0..n).map(pattern).collect());
                let mut s = self.seen.lock().unwrap();
                s.bigs += 1;
                s.max_output = s.max_output.max(cx.output_len(id));
            } else if let Some(ms) = line.strip_prefix("SPIN ") {
                let until = Instant::now() + Duration::from_millis(ms.parse().unwrap_or(0));
                while Instant::now() < until {
                    std::hint::spin_loop();
                }
                cx.send(id, b"spun\n");
            } else if line == "TURNS" {
                let t = cx.loop_turns();
                let a = format!("{} {} {} {}\n", t.count, t.max_ms, t.p99_ms, t.over_2ms);
                cx.send(id, a.as_bytes());
            } else if line == "KEEPALIVE_ON" {
                let on = cx.keepalive_on(id).is_ok();
                cx.send(id, keepalive_answer(cx, id, on).as_bytes());
            } else if let Some(args) = line.strip_prefix("KEEPALIVE ") {
                let v: Vec<u64> = args.split(' ').filter_map(|x| x.parse().ok()).collect();
                let ka = reactor::Keepalive {
                    idle: Duration::from_secs(v[0]),
                    interval: Duration::from_secs(v[1]),
                    count: v[2] as u32,
                };
                let set = cx.set_keepalive(id, Some(ka)).is_ok();
                cx.send(id, keepalive_answer(cx, id, set).as_bytes());
            } else if let Some(n) = line.strip_prefix("PARTS ") {
                let n: usize = n.parse().unwrap_or(0);
                let parts: Vec<Arc<[u8]>> = (0..n)
                    .map(|i| {
                        (i * 100..(i + 1) * 100)
                            .map(pattern)
                            .collect::<Vec<u8>>()
                            .into()
                    })
                    .collect();
                cx.send_parts(id, Arc::new(parts), (n * 100) as u64);
            } else if line == "HEARD" {
                let ms = cx.last_heard(id).map_or(u128::MAX, |d| d.as_millis());
                cx.send(id, format!("{ms}\n").as_bytes());
            } else if line == "STALE" {
                let first = self.seen.lock().unwrap().accepted[0];
                cx.send(first, b"leaked to a stale id\n");
                let open = cx.is_open(first);
                cx.send(id, format!("first open: {open}\n").as_bytes());
            } else {
                cx.send(id, b"?\n");
            }
        }
    }

    fn on_drained(&mut self, cx: &mut Ctx, id: ConnId) {
        self.on_input(cx, id);
    }

    fn on_close(&mut self, _cx: &mut Ctx, id: ConnId, why: CloseReason) {
        self.seen.lock().unwrap().closed.push((id, why));
    }

    fn on_timer(&mut self, _cx: &mut Ctx, key: u64) {
        self.seen.lock().unwrap().timers.push((key, Instant::now()));
    }
}

/// A loop serving [`LineService`] on a thread; stopped and joined on drop.
pub struct Running {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Seen>>,
    pub started: Instant,
    stop: Arc<AtomicBool>,
    waker: Arc<mio::Waker>,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn start(opts: ConnOptions, arm: Vec<(Duration, u64, bool)>) -> Running {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut r = Reactor::new().expect("reactor");
            let cx = r.ctx();
            let logs = seen2.clone();
            cx.set_logger(Box::new(move |m| {
                logs.lock().unwrap().logs.push(m.to_owned())
            }));
            cx.set_stop_flag(stop2);
            let (listener, addr) = cx
                .listen("127.0.0.1:0".parse().unwrap(), 0, opts)
                .expect("listen");
            // Inherited by every accepted socket (see `KEEPALIVE_ON`).
            let inherited = reactor::Keepalive {
                idle: Duration::from_secs(40),
                interval: Duration::from_secs(20),
                count: 5,
            };
            cx.set_listener_keepalive(listener, inherited)
                .expect("listener keepalive timings");
            tx.send((addr, cx.waker())).unwrap();
            let mut svc = LineService {
                seen: seen2,
                arm,
                armed: false,
            };
            r.run(&mut [&mut svc]).expect("loop runs");
        });
        let (addr, waker) = rx.recv().expect("loop started");
        Running {
            addr,
            seen,
            started: Instant::now(),
            stop,
            waker,
            thread: Some(thread),
        }
    }

    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s
    }

    /// Waits (polling, with a deadline) until `check` holds on what was seen.
    pub fn wait_until(&self, what: &str, check: impl Fn(&Seen) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if check(&self.seen.lock().unwrap()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("timed out waiting until {what}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sends one line and reads one answer line, byte by byte (no second
/// descriptor, no read-ahead past the answer).
pub fn ask(s: &mut TcpStream, line: &str) -> String {
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    while s.read(&mut b).unwrap_or(0) == 1 && b[0] != b'\n' {
        out.push(b[0]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads exactly `n` bytes and checks they are the `BIG` pattern.
pub fn read_pattern(s: &mut TcpStream, n: usize) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0;
    while got < n {
        let want = (n - got).min(buf.len());
        let k = s.read(&mut buf[..want]).expect("read");
        assert!(k > 0, "EOF after {got} of {n} bytes");
        for (j, b) in buf[..k].iter().enumerate() {
            assert_eq!(*b, pattern(got + j), "byte {} differs", got + j);
        }
        got += k;
    }
}

/// `idle interval count` as the kernel holds them for `id`, or `off` (also
/// when setting them failed: `ok` false).
fn keepalive_answer(cx: &Ctx, id: ConnId, ok: bool) -> String {
    match cx.keepalive(id).ok().flatten() {
        Some(k) if ok => format!(
            "{} {} {}\n",
            k.idle.as_secs(),
            k.interval.as_secs(),
            k.count
        ),
        _ => "off\n".to_string(),
    }
}
