//! How the loop drives sockets: accepting (and surviving running out of
//! descriptors), connect completion, edge-triggered reads up to the caps and
//! dispatch, flushing output within the write budget, closes, and the
//! incremental timeout sweep.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

use crate::conn::{CloseReason, Phase, CONNECT_TIMEOUT};
use crate::ctx::{
    Ctx, Pending, TimerWhat, ACCEPT_PAUSE, ACCEPT_PER_STEP, PENDING_HUP, PENDING_QUEUED,
    PENDING_READ, PENDING_WRITE, SWEEP_PER_TICK,
};
use crate::outq::Flush;
use crate::service::{ListenerId, Service};

impl Ctx {
    /// Handles one event now (a step of accepting, or a connection's
    /// readiness).
    pub(crate) fn handle_pending(&mut self, p: Pending, services: &mut [&mut dyn Service]) {
        match p {
            Pending::Accept(l) => {
                if self.accept_some(l, ACCEPT_PER_STEP, services) {
                    // Still more waiting: another step, after the others.
                    self.backlog.push_back(Pending::Accept(l));
                }
            }
            Pending::Conn(idx) => {
                let Some(c) = self.conns.get_mut(idx) else {
                    return;
                };
                let bits = std::mem::take(&mut c.pending);
                if bits & PENDING_QUEUED == 0 {
                    return;
                }
                self.conn_event(
                    idx,
                    bits & PENDING_READ != 0,
                    bits & PENDING_HUP != 0,
                    bits & PENDING_WRITE != 0,
                    services,
                );
            }
        }
    }

    /// Queues a connection's readiness for a later turn, once per connection.
    pub(crate) fn defer_conn(&mut self, idx: usize, readable: bool, hup: bool, writable: bool) {
        let Some(c) = self.conns.get_mut(idx) else {
            return;
        };
        let bits = (u8::from(readable) * PENDING_READ)
            | (u8::from(hup) * PENDING_HUP)
            | (u8::from(writable) * PENDING_WRITE);
        if c.pending & PENDING_QUEUED == 0 {
            self.backlog.push_back(Pending::Conn(idx));
        }
        c.pending |= PENDING_QUEUED | bits;
    }

    /// Accepts up to `max` connections; true when it stopped at `max` (more
    /// may wait: edge-triggered, no new event comes for them).
    pub(crate) fn accept_some(
        &mut self,
        l: usize,
        max: usize,
        services: &mut [&mut dyn Service],
    ) -> bool {
        for _ in 0..max {
            let Some(lst) = self.listeners.get(l) else {
                return false;
            };
            if lst.paused || self.stopping {
                return false;
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
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
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
                    return false;
                }
                Err(e) => {
                    // ECONNABORTED and friends concern one client only.
                    (self.log)(&format!("DEBUG accept failed: {e}"));
                    continue;
                }
            }
        }
        true
    }

    pub(crate) fn conn_event(
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
        if c.is_closed() {
            return;
        }
        c.hup |= hup;
        if c.is_connecting() {
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
            c.to(Phase::Open { paused: false });
            if c.opts.nodelay {
                let _ = c.sock.set_nodelay(true);
            }
            let id = c.id(idx);
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
    pub(crate) fn read_and_dispatch(&mut self, idx: usize, services: &mut [&mut dyn Service]) {
        // Each round reads what the caps allow and dispatches it; a service
        // that consumes everything lets the next round read more.
        for _round in 0..64 {
            let Some(c) = self.conns.get_mut(idx) else {
                return;
            };
            if !c.is_reading() {
                return;
            }
            let before = c.input.len();
            let mut eof = false;
            let mut failed: Option<io::Error> = None;
            c.set_paused(false);
            loop {
                if c.over_caps() {
                    c.set_paused(true);
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
            let id = c.id(idx);
            let svc = c.service;
            let paused = c.is_paused();
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
            if c.is_closed() || c.gen != id.gen {
                return;
            }
            if c.input.is_empty() && c.input.capacity() > c.opts.keep_buffer {
                c.input = Vec::new();
            }
            if eof {
                // Answer what was asked before the FIN: close once the output
                // is flushed and the service, told of the drain if it asked,
                // has nothing more to say.
                c.to(Phase::PeerDone);
                if c.out.is_empty() && !c.want_drained {
                    self.closing.push((idx, CloseReason::PeerClosed));
                } else {
                    self.mark_dirty(idx);
                }
                return;
            }
            // Still paused with the cap hit and nothing consumed: wait until
            // the service consumes (consume() queues a resume) or output drains.
            if !c.is_paused() || c.over_caps() {
                return;
            }
        }
        // Fairness: too many rounds in one turn; continue next turn.
        self.resume.push(idx);
    }

    pub(crate) fn flush_dirty(&mut self, services: &mut [&mut dyn Service]) {
        let dirty = std::mem::take(&mut self.dirty);
        for idx in dirty {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            c.dirty = false;
            if c.is_closed() || c.is_connecting() {
                continue;
            }
            let was_over = c.out.owned_len() >= c.opts.max_output;
            match c.out.flush(&mut c.sock, c.opts.write_budget) {
                Ok((state, n)) => {
                    if n > 0 {
                        c.last_active = self.now;
                        self.flushed += n as u64;
                    }
                    if state == Flush::Budget {
                        c.dirty = true;
                        self.dirty.push(idx);
                    }
                    if was_over && c.out.owned_len() < c.opts.max_output && c.is_paused() {
                        self.resume.push(idx);
                    }
                    if state == Flush::Empty {
                        if let Phase::Flushing { peer_done } = c.phase() {
                            let why = if peer_done {
                                CloseReason::PeerClosed
                            } else {
                                CloseReason::Local
                            };
                            self.closing.push((idx, why));
                            continue;
                        }
                        if c.want_drained {
                            c.want_drained = false;
                            self.drained.push(c.id(idx));
                        } else if c.peer_is_done() {
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
                if self.conn(id).is_some_and(|c| c.peer_is_done()) {
                    self.mark_dirty(id.index());
                }
            }
        }
    }

    /// Closes what was asked to close, calling `on_close` once each.
    pub(crate) fn process_closes(&mut self, services: &mut [&mut dyn Service]) {
        while let Some((idx, why)) = self.closing.pop() {
            let Some(c) = self.conns.get_mut(idx) else {
                continue;
            };
            if c.is_closed() {
                continue;
            }
            c.to(Phase::Closed);
            let id = c.id(idx);
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
    pub(crate) fn sweep(&mut self) {
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
            if c.is_closed() {
                continue;
            }
            let quiet = now.saturating_duration_since(c.last_active);
            let partial = !c.input.is_empty() && c.opts.partial_timeout.is_some_and(|t| quiet >= t);
            let idle = c.opts.idle_timeout.is_some_and(|t| quiet >= t);
            let stuck_connect = c.is_connecting() && quiet >= CONNECT_TIMEOUT;
            // Quiet only because the loop has not read what the peer sent
            // (it is behind): the peer is not at fault; its bytes are read
            // soon and count as activity then.
            let behind = (partial || idle) && !c.is_connecting() && unread_waiting(c);
            if (partial || idle || stuck_connect) && !behind {
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

/// Whether the kernel holds bytes from `c`'s peer that the loop has not read.
pub(crate) fn unread_waiting(c: &crate::conn::Conn) -> bool {
    crate::sockopt::unread(c.sock.as_raw_fd()).is_ok_and(|n| n > 0)
}
