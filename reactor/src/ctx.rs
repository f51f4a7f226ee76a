//! The loop's state and the calls services make on it: listen, connect,
//! read input, queue output, close, timers. The loop's own driving of
//! sockets is in `io`, the run loop in `reactor`.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::Mmap;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token, Waker};
use slab::Slab;

use crate::conn::{CloseReason, Conn, ConnId, ConnOptions, Phase};
use crate::service::{ListenerId, ServiceId, TimerId};
use crate::sockopt::Keepalive;
use crate::timer::Timers;
use crate::turns::{TurnStats, TurnSummary};

pub(crate) const WAKER: Token = Token(usize::MAX);
/// Listener tokens live above every possible connection slot.
pub(crate) const LISTENER_BASE: usize = 1 << 40;
/// Idle sweep: this many connection slots are looked at per tick.
pub(crate) const SWEEP_TICK: Duration = Duration::from_millis(100);
pub(crate) const SWEEP_PER_TICK: usize = 4096;
/// After running out of descriptors, accepting resumes after this pause.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Work a turn starts on events before it flushes answers and polls again;
/// the rest waits, in order, for the next turn.
pub(crate) const TURN_BUDGET: Duration = Duration::from_millis(1);
/// Connections accepted from one listener per step; more wait in the backlog.
pub(crate) const ACCEPT_PER_STEP: usize = 64;

/// An event a turn had no time for, handled first next turn. A connection
/// is queued once: later events for it while it waits are merged into its
/// record (`Conn::pending`), so a long backlog never holds duplicates that
/// each cost a read returning EAGAIN.
pub(crate) enum Pending {
    Accept(usize),
    Conn(usize),
}

/// `Conn::pending` bits: queued in the backlog, and what was reported.
pub(crate) const PENDING_QUEUED: u8 = 1;
pub(crate) const PENDING_READ: u8 = 2;
pub(crate) const PENDING_HUP: u8 = 4;
pub(crate) const PENDING_WRITE: u8 = 8;

/// How long a stopping loop keeps flushing output.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct Listener {
    pub(crate) sock: TcpListener,
    pub(crate) service: ServiceId,
    pub(crate) opts: ConnOptions,
    pub(crate) paused: bool,
}

pub(crate) enum TimerWhat {
    Service(ServiceId, u64),
    ResumeAccept(usize),
    Sweep,
    ShutdownDeadline,
}

/// The loop's state, handed to every callback.
pub struct Ctx {
    pub(crate) poll: Poll,
    pub(crate) waker: Arc<Waker>,
    pub(crate) conns: Slab<Conn>,
    pub(crate) listeners: Slab<Listener>,
    pub(crate) timers: Timers<TimerWhat>,
    pub(crate) now: Instant,
    pub(crate) next_gen: u32,
    /// Connections with output to flush before sleeping.
    pub(crate) dirty: Vec<usize>,
    /// Connections whose reading may resume (input consumed, output drained).
    pub(crate) resume: Vec<usize>,
    /// Connections to close, with why, after the current callback.
    pub(crate) closing: Vec<(usize, CloseReason)>,
    pub(crate) drained: Vec<ConnId>,
    pub(crate) reserve_fd: Option<File>,
    pub(crate) sweep_cursor: usize,
    pub(crate) stop_requested: bool,
    pub(crate) stop_flag: Option<Arc<AtomicBool>>,
    pub(crate) stopping: bool,
    pub(crate) log: Box<dyn Fn(&str)>,
    /// How long each turn's work took, for [`Ctx::loop_turns`].
    pub(crate) turns: TurnStats,
    /// Bytes written to sockets so far (for the slow-turn diagnostic).
    pub(crate) flushed: u64,
    /// Events left for the next turn, oldest first.
    pub(crate) backlog: std::collections::VecDeque<Pending>,
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

    /// The loop's turn times over the last minute: how long any connection
    /// may have waited behind the others' work.
    pub fn loop_turns(&mut self) -> TurnSummary {
        self.turns.summary(Instant::now())
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

    pub(crate) fn close_all_listeners(&mut self) {
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

    pub(crate) fn add_conn(
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
        entry.insert(Conn::new(sock, gen, service, opts, self.now, connecting));
        Ok(ConnId {
            idx: idx as u32,
            gen,
        })
    }

    pub(crate) fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns
            .get(id.index())
            .filter(|c| c.gen == id.gen && !c.is_closed())
    }

    pub(crate) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.index())
            .filter(|c| c.gen == id.gen && !c.is_closed())
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
            if c.is_paused() {
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
            if c.is_paused() {
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

    /// Turns TCP keepalive on (with these timings) or off for `id`.
    pub fn set_keepalive(&mut self, id: ConnId, ka: Option<Keepalive>) -> io::Result<()> {
        match self.conn(id) {
            Some(c) => crate::sockopt::set_keepalive(c.sock.as_raw_fd(), ka),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Gives every socket `listener` accepts from now on these keepalive
    /// timings (not keepalive itself): [`Ctx::keepalive_on`] then turns it
    /// on with one system call instead of four.
    pub fn set_listener_keepalive(&mut self, listener: ListenerId, k: Keepalive) -> io::Result<()> {
        match self.listeners.get(listener.0) {
            Some(l) => crate::sockopt::set_keepalive_timings(l.sock.as_raw_fd(), k),
            None => Err(io::ErrorKind::NotFound.into()),
        }
    }

    /// Turns TCP keepalive on for `id` with the timings its socket holds
    /// (its listener's, see [`Ctx::set_listener_keepalive`]).
    pub fn keepalive_on(&mut self, id: ConnId) -> io::Result<()> {
        match self.conn(id) {
            Some(c) => crate::sockopt::keepalive_on(c.sock.as_raw_fd()),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Whether the kernel holds bytes from `id`'s peer that the loop has not
    /// read yet (it is behind). A deadline for a peer's next line should not
    /// fire on a peer whose line is merely waiting for us. Bytes already read
    /// (a partial line in the input buffer) do not count: a peer trickling
    /// a line that never ends must not keep its connection this way.
    pub fn input_waiting(&self, id: ConnId) -> bool {
        self.conn(id).is_some_and(crate::io::unread_waiting)
    }

    /// How long ago the kernel last received anything from `id`'s peer,
    /// keepalive answers included: a silent peer's proof of life.
    pub fn last_heard(&self, id: ConnId) -> Option<Duration> {
        self.conn(id)
            .and_then(|c| crate::sockopt::last_heard(c.sock.as_raw_fd()).ok())
    }

    /// The keepalive settings the kernel holds for `id`'s socket.
    pub fn keepalive(&self, id: ConnId) -> io::Result<Option<Keepalive>> {
        match self.conn(id) {
            Some(c) => crate::sockopt::keepalive(c.sock.as_raw_fd()),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    pub fn local_addr(&self, id: ConnId) -> Option<SocketAddr> {
        self.conn(id).and_then(|c| c.sock.local_addr().ok())
    }

    pub(crate) fn mark_dirty(&mut self, idx: usize) {
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

    /// Queues the concatenation of shared `parts` (`len` bytes in all)
    /// without copying them; they go out by `writev`, within the write budget.
    pub fn send_parts(&mut self, id: ConnId, parts: Arc<Vec<Arc<[u8]>>>, len: u64) {
        if let Some(c) = self.conn_mut(id) {
            c.out.push_parts(parts, len);
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

    /// Stops reading and closes once queued output is written. A connection
    /// still connecting has nothing worth flushing: it is closed at once.
    pub fn close_after_flush(&mut self, id: ConnId) {
        let idx = id.index();
        let Some(c) = self.conn_mut(id) else {
            return;
        };
        match c.phase() {
            Phase::Open { .. } => c.to(Phase::Flushing { peer_done: false }),
            Phase::PeerDone => c.to(Phase::Flushing { peer_done: true }),
            Phase::Connecting => {
                self.closing.push((idx, CloseReason::Local));
                return;
            }
            Phase::Flushing { .. } | Phase::Closed => {}
        }
        self.mark_dirty(idx);
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
}
