//! The run loop: poll, accept, read, dispatch, flush before sleeping, close.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::Mmap;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::outq::{Flush, OutQueue};
use crate::timer::Timers;

/// Index of a service in the slice given to [`Reactor::run`].
pub type ServiceId = usize;

/// A connection: its slab slot and a generation, so a stale id never
/// reaches a later connection that reused the slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId {
    idx: u32,
    gen: u32,
}

impl ConnId {
    pub fn index(self) -> usize {
        self.idx as usize
    }
    pub fn generation(self) -> u32 {
        self.gen
    }
    pub fn from_parts(idx: u32, gen: u32) -> Self {
        ConnId { idx, gen }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId(usize);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(u64);

/// Why a connection ended; given to [`Service::on_close`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed its side.
    PeerClosed,
    /// The application asked for it.
    Local,
    /// A read or write failed.
    Error(String),
    /// A partial frame or an idle connection outlived its timeout.
    Timeout,
    /// An outbound connect failed.
    ConnectFailed(String),
    /// The loop is stopping.
    Shutdown,
}

/// Per-connection settings, chosen by the listener or by `connect`.
#[derive(Clone, Debug)]
pub struct ConnOptions {
    /// Read buffer cap: reading pauses while this much input waits.
    pub max_input: usize,
    /// Owned output cap: reading pauses while this much output waits, so a
    /// client that sends but does not read cannot grow our memory.
    pub max_output: usize,
    /// Bytes written to this connection per loop turn at most.
    pub write_budget: usize,
    /// Close when input is pending (a partial frame) with no progress this long.
    pub partial_timeout: Option<Duration>,
    /// Close after no traffic at all for this long.
    pub idle_timeout: Option<Duration>,
    /// An empty read buffer bigger than this is freed, so idle connections
    /// hold almost no memory. Data connections raise it to keep theirs.
    pub keep_buffer: usize,
    /// Bytes asked of each read system call at least.
    pub read_chunk: usize,
    pub nodelay: bool,
}

impl Default for ConnOptions {
    fn default() -> Self {
        ConnOptions {
            max_input: 64 * 1024,
            max_output: 4 * 1024 * 1024,
            write_budget: 4 * 1024 * 1024,
            partial_timeout: Some(Duration::from_secs(30)),
            idle_timeout: None,
            keep_buffer: 1024,
            read_chunk: 16 * 1024,
            nodelay: true,
        }
    }
}

/// What the application implements. Every callback gets the loop's context,
/// through which it reads input, queues output, arms timers and so on.
#[allow(unused_variables)]
pub trait Service {
    /// A listener of this service accepted `id`.
    fn on_accept(&mut self, cx: &mut Ctx, listener: ListenerId, id: ConnId, peer: SocketAddr) {}
    /// An outbound connection finished connecting (or failed; then `on_close` follows).
    fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {}
    /// New bytes wait in `cx.input(id)`; consume what forms whole frames.
    fn on_input(&mut self, cx: &mut Ctx, id: ConnId);
    /// The output queue of `id` became empty after `cx.notify_drained(id)`.
    fn on_drained(&mut self, cx: &mut Ctx, id: ConnId) {}
    /// `id` is gone; called exactly once per connection.
    fn on_close(&mut self, cx: &mut Ctx, id: ConnId, why: CloseReason) {}
    /// A timer armed by this service fired.
    fn on_timer(&mut self, cx: &mut Ctx, key: u64) {}
    /// The waker fired (worker results, another thread's news).
    fn on_wake(&mut self, cx: &mut Ctx) {}
    /// SIGINT/SIGTERM or `cx.stop()`: stop accepting, say goodbye.
    fn on_shutdown(&mut self, cx: &mut Ctx) {}
}

const WAKER: Token = Token(usize::MAX);
/// Listener tokens live above every possible connection slot.
const LISTENER_BASE: usize = 1 << 40;
/// Idle sweep: this many connection slots are looked at per tick.
const SWEEP_TICK: Duration = Duration::from_millis(100);
const SWEEP_PER_TICK: usize = 4096;
/// After running out of descriptors, accepting resumes after this pause.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long a stopping loop keeps flushing output.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

struct Conn {
    sock: TcpStream,
    gen: u32,
    service: ServiceId,
    opts: ConnOptions,
    input: Vec<u8>,
    out: OutQueue,
    last_active: Instant,
    /// Outbound and not yet connected.
    connecting: bool,
    /// Reading stopped with data possibly left in the kernel (cap reached).
    read_paused: bool,
    /// The peer sent EOF; close once the answers are flushed.
    peer_done: bool,
    /// Stop reading and close when output is flushed.
    close_after_flush: bool,
    want_drained: bool,
    /// On the dirty list this turn.
    dirty: bool,
    closed: bool,
    /// The peer's FIN (or an error) was reported: read to EOF, no shortcut.
    hup: bool,
}

struct Listener {
    sock: TcpListener,
    service: ServiceId,
    opts: ConnOptions,
    paused: bool,
}

enum TimerWhat {
    Service(ServiceId, u64),
    ResumeAccept(usize),
    Sweep,
    ShutdownDeadline,
}

/// The loop's state, handed to every callback.
pub struct Ctx {
    poll: Poll,
    waker: Arc<Waker>,
    conns: Slab<Conn>,
    listeners: Slab<Listener>,
    timers: Timers<TimerWhat>,
    now: Instant,
    next_gen: u32,
    /// Connections with output to flush before sleeping.
    dirty: Vec<usize>,
    /// Connections whose reading may resume (input consumed, output drained).
    resume: Vec<usize>,
    /// Connections to close, with why, after the current callback.
    closing: Vec<(usize, CloseReason)>,
    drained: Vec<ConnId>,
    reserve_fd: Option<File>,
    sweep_cursor: usize,
    stop_requested: bool,
    stop_flag: Option<Arc<AtomicBool>>,
    stopping: bool,
    log: Box<dyn Fn(&str)>,
}

pub struct Reactor {
    cx: Ctx,
    events: Events,
}

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut timers = Timers::new();
        timers.insert(Instant::now() + SWEEP_TICK, TimerWhat::Sweep);
        Ok(Reactor {
            cx: Ctx {
                poll,
                waker,
                conns: Slab::with_capacity(1024),
                listeners: Slab::new(),
                timers,
                now: Instant::now(),
                next_gen: 1,
                dirty: Vec::new(),
                resume: Vec::new(),
                closing: Vec::new(),
                drained: Vec::new(),
                reserve_fd: File::open("/dev/null").ok(),
                sweep_cursor: 0,
                stop_requested: false,
                stop_flag: None,
                stopping: false,
                log: Box::new(|m| eprintln!("{m}")),
            },
            events: Events::with_capacity(1024),
        })
    }

    /// The context, for setting up listeners before `run`.
    pub fn ctx(&mut self) -> &mut Ctx {
        &mut self.cx
    }

    /// Runs until stopped (signal flag or `cx.stop()`), then flushes what is
    /// queued for up to two seconds and returns.
    pub fn run(&mut self, services: &mut [&mut dyn Service]) -> io::Result<()> {
        let mut shutdown_deadline: Option<Instant> = None;
        loop {
            let cx = &mut self.cx;
            if cx
                .stop_flag
                .as_ref()
                .is_some_and(|f| f.load(Ordering::SeqCst))
            {
                cx.stop_requested = true;
            }
            if cx.stop_requested && !cx.stopping {
                cx.stopping = true;
                for s in services.iter_mut() {
                    s.on_shutdown(cx);
                }
                cx.close_all_listeners();
                shutdown_deadline = Some(cx.now + SHUTDOWN_GRACE);
                cx.timers
                    .insert(cx.now + SHUTDOWN_GRACE, TimerWhat::ShutdownDeadline);
                cx.process_closes(services);
            }
            if cx.stopping {
                let pending = cx.conns.iter().any(|(_, c)| !c.out.is_empty());
                let past = shutdown_deadline.is_some_and(|d| cx.now >= d);
                if !pending || past {
                    let ids: Vec<usize> = cx.conns.iter().map(|(i, _)| i).collect();
                    for i in ids {
                        cx.closing.push((i, CloseReason::Shutdown));
                    }
                    cx.process_closes(services);
                    return Ok(());
                }
            }

            let timeout = if !cx.dirty.is_empty() || !cx.resume.is_empty() {
                Some(Duration::ZERO)
            } else {
                cx.timers
                    .next_deadline()
                    .map(|d| d.saturating_duration_since(Instant::now()))
            };
            match cx.poll.poll(&mut self.events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            cx.now = Instant::now();

            let mut woken = false;
            for ev in self.events.iter() {
                let t = ev.token();
                if t == WAKER {
                    woken = true;
                } else if t.0 >= LISTENER_BASE {
                    cx.accept_all(t.0 - LISTENER_BASE, services);
                } else {
                    let hup = ev.is_read_closed() || ev.is_error();
                    cx.conn_event(
                        t.0,
                        ev.is_readable() || hup,
                        hup,
                        ev.is_writable(),
                        services,
                    );
                }
                cx.process_closes(services);
            }
            if woken {
                for s in services.iter_mut() {
                    s.on_wake(cx);
                }
                cx.process_closes(services);
            }
            while let Some(what) = cx.timers.pop_due(cx.now) {
                match what {
                    TimerWhat::Service(s, key) => {
                        if let Some(svc) = services.get_mut(s) {
                            svc.on_timer(cx, key);
                        }
                    }
                    TimerWhat::ResumeAccept(l) => {
                        if let Some(lst) = cx.listeners.get_mut(l) {
                            lst.paused = false;
                            cx.accept_all(l, services);
                        }
                    }
                    TimerWhat::Sweep => {
                        cx.sweep();
                        cx.timers.insert(cx.now + SWEEP_TICK, TimerWhat::Sweep);
                    }
                    TimerWhat::ShutdownDeadline => {}
                }
                cx.process_closes(services);
            }
            // Connections whose reading was paused and may go on now.
            let resume = std::mem::take(&mut cx.resume);
            for i in resume {
                cx.read_and_dispatch(i, services);
                cx.process_closes(services);
            }
            cx.flush_dirty(services);
            cx.process_closes(services);
        }
    }
}

impl Ctx {
    /// Where reactor-level events (out of descriptors and such) are logged.
    pub fn set_logger(&mut self, log: Box<dyn Fn(&str)>) {
        self.log = log;
    }

    /// The stop flag set by [`crate::signals::watch`].
    pub fn set_stop_flag(&mut self, flag: Arc<AtomicBool>) {
        self.stop_flag = Some(flag);
    }

    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The time this loop turn started.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Asks the loop to stop (as SIGTERM does).
    pub fn stop(&mut self) {
        self.stop_requested = true;
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    pub fn listen(
        &mut self,
        addr: SocketAddr,
        service: ServiceId,
        opts: ConnOptions,
    ) -> io::Result<(ListenerId, SocketAddr)> {
        let mut sock = crate::listen::bind_listener(addr)?;
        let local = sock.local_addr()?;
        let entry = self.listeners.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(&mut sock, Token(LISTENER_BASE + key), Interest::READABLE)?;
        entry.insert(Listener {
            sock,
            service,
            opts,
            paused: false,
        });
        Ok((ListenerId(key), local))
    }

    pub fn close_listener(&mut self, id: ListenerId) {
        if self.listeners.contains(id.0) {
            let mut l = self.listeners.remove(id.0);
            let _ = self.poll.registry().deregister(&mut l.sock);
        }
    }

    fn close_all_listeners(&mut self) {
        let keys: Vec<usize> = self.listeners.iter().map(|(k, _)| k).collect();
        for k in keys {
            self.close_listener(ListenerId(k));
        }
    }

    /// Starts a non-blocking connect; `on_connect` or `on_close` follows.
    pub fn connect(
        &mut self,
        addr: SocketAddr,
        service: ServiceId,
        opts: ConnOptions,
    ) -> io::Result<ConnId> {
        let sock = TcpStream::connect(addr)?;
        self.add_conn(sock, service, opts, true)
    }

    fn add_conn(
        &mut self,
        mut sock: TcpStream,
        service: ServiceId,
        opts: ConnOptions,
        connecting: bool,
    ) -> io::Result<ConnId> {
        if opts.nodelay && !connecting {
            let _ = sock.set_nodelay(true);
        }
        let entry = self.conns.vacant_entry();
        let idx = entry.key();
        self.poll.registry().register(
            &mut sock,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1).max(1);
        entry.insert(Conn {
            sock,
            gen,
            service,
            opts,
            input: Vec::new(),
            out: OutQueue::default(),
            last_active: self.now,
            connecting,
            read_paused: false,
            peer_done: false,
            close_after_flush: false,
            want_drained: false,
            dirty: false,
            closed: false,
            hup: false,
        });
        Ok(ConnId {
            idx: idx as u32,
            gen,
        })
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index())
            .filter(|c| c.gen == id.gen && !c.closed)
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index())
            .filter(|c| c.gen == id.gen && !c.closed)
    }

    pub fn is_open(&self, id: ConnId) -> bool {
        self.conn(id).is_some()
    }

    /// Bytes read and not yet consumed.
    pub fn input(&self, id: ConnId) -> &[u8] {
        self.conn(id).map(|c| c.input.as_slice()).unwrap_or(&[])
    }

    /// Marks `n` bytes of input as handled.
    pub fn consume(&mut self, id: ConnId, n: usize) {
        let idx = id.index();
        if let Some(c) = self.conn_mut(id) {
            let n = n.min(c.input.len());
            if n == c.input.len() {
                c.input.clear();
            } else {
                c.input.drain(..n);
            }
            if c.read_paused {
                self.resume.push(idx);
            }
        }
    }

    /// Takes the whole read buffer out (no copy), so the service can parse it
    /// while queueing output; give it back with [`Ctx::put_back_input`].
    pub fn take_input(&mut self, id: ConnId) -> Vec<u8> {
        self.conn_mut(id)
            .map(|c| std::mem::take(&mut c.input))
            .unwrap_or_default()
    }

    /// Returns a buffer taken with [`Ctx::take_input`], minus `consumed` bytes
    /// at its front. Bytes read in between (none in practice) stay after it.
    pub fn put_back_input(&mut self, id: ConnId, mut buf: Vec<u8>, consumed: usize) {
        let idx = id.index();
        if let Some(c) = self.conn_mut(id) {
            let n = consumed.min(buf.len());
            if n == buf.len() {
                buf.clear();
            } else if n > 0 {
                buf.drain(..n);
            }
            if !c.input.is_empty() {
                buf.extend_from_slice(&c.input);
            }
            c.input = buf;
            if c.read_paused {
                self.resume.push(idx);
            }
        }
    }

    /// Changes a connection's settings (e.g. a fetch raises its buffers).
    pub fn set_options(&mut self, id: ConnId, opts: ConnOptions) {
        if let Some(c) = self.conn_mut(id) {
            c.opts = opts;
        }
    }

    pub fn peer_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.conn(id).and_then(|c| c.sock.peer_addr().ok())
    }

    pub fn local_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.conn(id).and_then(|c| c.sock.local_addr().ok())
    }

    fn mark_dirty(&mut self, idx: usize) {
        if let Some(c) = self.conns.get_mut(idx) {
            if !c.dirty {
                c.dirty = true;
                self.dirty.push(idx);
            }
        }
    }

    /// Queues bytes (copied) for `id`.
    pub fn send(&mut self, id: ConnId, data: &[u8]) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_slice(data);
            self.mark_dirty(id.index());
        }
    }

    pub fn send_vec(&mut self, id: ConnId, data: Vec<u8>) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_vec(data);
            self.mark_dirty(id.index());
        }
    }

    pub fn send_static(&mut self, id: ConnId, data: &'static [u8]) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_static(data);
            self.mark_dirty(id.index());
        }
    }

    /// Queues bytes shared with other connections, without copying them.
    pub fn send_shared(&mut self, id: ConnId, data: Arc<Vec<u8>>) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_shared(data);
            self.mark_dirty(id.index());
        }
    }

    /// Queues `map[start..end]`, written `step` bytes per system call.
    pub fn send_map(&mut self, id: ConnId, map: Arc<Mmap>, start: usize, end: usize, step: usize) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_map(map, start, end, step);
            self.mark_dirty(id.index());
        }
    }

    /// Owned bytes waiting to be written.
    pub fn output_len(&self, id: ConnId) -> usize {
        self.conn(id).map(|c| c.out.owned_len()).unwrap_or(0)
    }

    /// All bytes (mapped included) waiting to be written.
    pub fn output_total(&self, id: ConnId) -> u64 {
        self.conn(id).map(|c| c.out.total_len()).unwrap_or(0)
    }

    /// Calls `on_drained` once the output queue of `id` is empty.
    pub fn notify_drained(&mut self, id: ConnId) {
        let idx = id.index();
        if let Some(c) = self.conn_mut(id) {
            c.want_drained = true;
            if c.out.is_empty() {
                self.mark_dirty(idx);
            }
        }
    }

    /// Closes at once, dropping queued output; `on_close(Local)` follows.
    pub fn close(&mut self, id: ConnId) {
        if self.conn(id).is_some() {
            self.closing.push((id.index(), CloseReason::Local));
        }
    }

    /// Stops reading and closes once queued output is written.
    pub fn close_after_flush(&mut self, id: ConnId) {
        let idx = id.index();
        if let Some(c) = self.conn_mut(id) {
            c.close_after_flush = true;
            self.mark_dirty(idx);
        }
    }

    /// When the connection last moved bytes.
    pub fn last_active(&self, id: ConnId) -> Option<Instant> {
        self.conn(id).map(|c| c.last_active)
    }

    /// Arms a one-shot timer; `on_timer(key)` of `service` fires after `after`.
    pub fn timer(&mut self, service: ServiceId, after: Duration, key: u64) -> TimerId {
        TimerId(
            self.timers
                .insert(self.now + after, TimerWhat::Service(service, key)),
        )
    }

    pub fn cancel_timer(&mut self, id: TimerId) {
        self.timers.cancel(id.0);
    }

    fn accept_all(&mut self, l: usize, services: &mut [&mut dyn Service]) {
        loop {
            let Some(lst) = self.listeners.get(l) else {
                return;
            };
            if lst.paused || self.stopping {
                return;
            }
            match lst.sock.accept() {
                Ok((sock, peer)) => {
                    let (service, opts) = (lst.service, lst.opts.clone());
                    match self.add_conn(sock, service, opts, false) {
                        Ok(id) => {
                            if let Some(s) = services.get_mut(service) {
                                s.on_accept(self, ListenerId(l), id, peer);
                            }
                            self.process_closes(services);
                        }
                        Err(e) => (self.log)(&format!(
                            "WARN  could not register an accepted connection: {e}"
                        )),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_out_of_files(&e) => {
                    // Out of descriptors: free the reserve to accept and drop
                    // one waiting client (it sees a close, not a hang), then
                    // stop accepting for a moment so the loop does not spin.
                    drop(self.reserve_fd.take());
                    if let Some(lst) = self.listeners.get(l) {
                        if let Ok((sock, _)) = lst.sock.accept() {
                            drop(sock);
                        }
                    }
                    self.reserve_fd = File::open("/dev/null").ok();
                    if let Some(lst) = self.listeners.get_mut(l) {
                        lst.paused = true;
                    }
                    (self.log)(&format!(
                        "WARN  out of file descriptors with {} connections open; pausing accept for {} ms",
                        self.conns.len(),
                        ACCEPT_PAUSE.as_millis()
                    ));
                    self.timers
                        .insert(self.now + ACCEPT_PAUSE, TimerWhat::ResumeAccept(l));
                    return;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one client only.
                    (self.log)(&format!("DEBUG accept failed: {e}"));
                    continue;
                }
            }
        }
    }

    fn conn_event(
        &mut self,
        idx: usize,
        readable: bool,
        hup: bool,
        writable: bool,
        services: &mut [&mut dyn Service],
    ) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        if c.closed {
            return;
        }
        c.hup |= hup;
        if c.connecting {
            if !writable && !readable {
                return;
            }
            match c.sock.take_error() {
                Ok(Some(e)) | Err(e) => {
                    self.closing
                        .push((idx, CloseReason::ConnectFailed(e.to_string())));
                    return;
                }
                Ok(None) => {}
            }
            match c.sock.peer_addr() {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    self.closing
                        .push((idx, CloseReason::ConnectFailed(e.to_string())));
                    return;
                }
            }
            c.connecting = false;
            if c.opts.nodelay {
                let _ = c.sock.set_nodelay(true);
            }
            let id = ConnId {
                idx: idx as u32,
                gen: c.gen,
            };
            let svc = c.service;
            if let Some(s) = services.get_mut(svc) {
                s.on_connect(self, id);
            }
            self.process_closes(services);
            self.mark_dirty(idx);
        }
        if writable {
            self.mark_dirty(idx);
        }
        if readable {
            self.read_and_dispatch(idx, services);
        }
    }

    /// Reads until `WouldBlock` or a cap, then hands the input to the service.
    fn read_and_dispatch(&mut self, idx: usize, services: &mut [&mut dyn Service]) {
        // Each round reads what the caps allow and dispatches it; a service
        // that consumes everything lets the next round read more.
        for _round in 0..64 {
            let Some(c) = self.conns.get_mut(idx) else {
                return;
            };
            if c.closed || c.connecting || c.close_after_flush || c.peer_done {
                return;
            }
            let before = c.input.len();
            let mut eof = false;
            let mut failed: Option<io::Error> = None;
            c.read_paused = false;
            loop {
                if c.input.len() >= c.opts.max_input || c.out.owned_len() >= c.opts.max_output {
                    c.read_paused = true;
                    break;
                }
                let room = c.opts.max_input - c.input.len();
                let want = room.min(c.opts.read_chunk.max(c.input.capacity() - c.input.len()));
                c.input.reserve(want);
                let spare = c.input.capacity() - c.input.len();
                let want = want.min(spare);
                // SAFETY: we read into the Vec's spare capacity and only
                // extend its length by what the kernel wrote.
                let n = unsafe {
                    libc::read(
                        c.sock.as_raw_fd(),
                        c.input.as_mut_ptr().add(c.input.len()) as *mut libc::c_void,
                        want,
                    )
                };
                if n > 0 {
                    unsafe { c.input.set_len(c.input.len() + n as usize) };
                    if (n as usize) < want && !c.hup {
                        // A short read means the kernel buffer is empty for
                        // now, and any later data raises a new edge. Not so
                        // for a FIN that came with this data: then read on.
                        break;
                    }
                } else if n == 0 {
                    eof = true;
                    break;
                } else {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::WouldBlock => break,
                        io::ErrorKind::Interrupted => continue,
                        _ => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
            }
            let got = c.input.len() > before;
            if got {
                c.last_active = self.now;
            }
            let id = ConnId {
                idx: idx as u32,
                gen: c.gen,
            };
            let svc = c.service;
            let paused = c.read_paused;
            if got || (paused && !c.input.is_empty()) {
                if let Some(s) = services.get_mut(svc) {
                    s.on_input(self, id);
                }
            }
            if let Some(e) = failed {
                self.closing.push((idx, CloseReason::Error(e.to_string())));
                return;
            }
            let Some(c) = self.conns.get_mut(idx) else {
                return;
            };
            if c.closed || c.gen != id.gen {
                return;
            }
            if c.input.is_empty() && c.input.capacity() > c.opts.keep_buffer {
                c.input = Vec::new();
            }
            if eof {
                // Answer what was asked before the FIN: close once the output
                // is flushed and the service, told of the drain if it asked,
                // has nothing more to say.
                c.peer_done = true;
                if c.out.is_empty() && !c.want_drained {
                    self.closing.push((idx, CloseReason::PeerClosed));
                } else {
                    self.mark_dirty(idx);
                }
                return;
            }
            // Still paused with the cap hit and nothing consumed: wait until
            // the service consumes (consume() queues a resume) or output drains.
            if !c.read_paused
                || c.input.len() >= c.opts.max_input
                || c.out.owned_len() >= c.opts.max_output
            {
                return;
            }
        }
        // Fairness: too many rounds in one turn; continue next turn.
        self.resume.push(idx);
    }

    fn flush_dirty(&mut self, services: &mut [&mut dyn Service]) {
        let dirty = std::mem::take(&mut self.dirty);
        for idx in dirty {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            c.dirty = false;
            if c.closed || c.connecting {
                continue;
            }
            let was_over = c.out.owned_len() >= c.opts.max_output;
            match c.out.flush(&mut c.sock, c.opts.write_budget) {
                Ok((state, n)) => {
                    if n > 0 {
                        c.last_active = self.now;
                    }
                    if state == Flush::Budget {
                        c.dirty = true;
                        self.dirty.push(idx);
                    }
                    if was_over && c.out.owned_len() < c.opts.max_output && c.read_paused {
                        self.resume.push(idx);
                    }
                    if state == Flush::Empty {
                        if c.close_after_flush {
                            let why = if c.peer_done {
                                CloseReason::PeerClosed
                            } else {
                                CloseReason::Local
                            };
                            self.closing.push((idx, why));
                            continue;
                        }
                        if c.want_drained {
                            c.want_drained = false;
                            self.drained.push(ConnId {
                                idx: idx as u32,
                                gen: c.gen,
                            });
                        } else if c.peer_done {
                            self.closing.push((idx, CloseReason::PeerClosed));
                            continue;
                        }
                    }
                }
                Err(e) => {
                    self.closing.push((idx, CloseReason::Error(e.to_string())));
                }
            }
        }
        let drained = std::mem::take(&mut self.drained);
        for id in drained {
            if let Some(c) = self.conn(id) {
                let svc = c.service;
                if let Some(s) = services.get_mut(svc) {
                    s.on_drained(self, id);
                }
                // A peer that is done sending is closed by the next flush
                // unless the service queued more for it.
                if self.conn(id).is_some_and(|c| c.peer_done) {
                    self.mark_dirty(id.index());
                }
            }
        }
    }

    /// Closes what was asked to close, calling `on_close` once each.
    fn process_closes(&mut self, services: &mut [&mut dyn Service]) {
        while let Some((idx, why)) = self.closing.pop() {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            if c.closed {
                continue;
            }
            c.closed = true;
            let id = ConnId {
                idx: idx as u32,
                gen: c.gen,
            };
            let svc = c.service;
            if let Some(s) = services.get_mut(svc) {
                s.on_close(self, id, why);
            }
            let mut c = self.conns.remove(idx);
            let _ = self.poll.registry().deregister(&mut c.sock);
            c.out.clear();
        }
    }

    /// Looks at a slice of the connections for timeouts (one tick serves all).
    fn sweep(&mut self) {
        let cap = self.conns.capacity();
        if cap == 0 {
            return;
        }
        let now = self.now;
        for _ in 0..SWEEP_PER_TICK.min(cap) {
            let idx = self.sweep_cursor % cap;
            self.sweep_cursor = (self.sweep_cursor + 1) % cap;
            let Some(c) = self.conns.get(idx) else {
                continue;
            };
            if c.closed {
                continue;
            }
            let quiet = now.saturating_duration_since(c.last_active);
            let partial = !c.input.is_empty() && c.opts.partial_timeout.is_some_and(|t| quiet >= t);
            let idle = c.opts.idle_timeout.is_some_and(|t| quiet >= t);
            let stuck_connect = c.connecting && quiet >= Duration::from_secs(10);
            if partial || idle || stuck_connect {
                self.closing.push((idx, CloseReason::Timeout));
            }
        }
    }
}

fn is_out_of_files(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE) | Some(libc::ENFILE) | Some(libc::ENOBUFS) | Some(libc::ENOMEM)
    )
}
