//! The run loop: poll, accept, read, dispatch, run timers, flush before
//! sleeping, close. Mechanism lives in `ctx` (what services call) and `io`
//! (how sockets are driven).

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Waker};
use slab::Slab;

use crate::conn::CloseReason;
use crate::ctx::{
    Ctx, Pending, TimerWhat, LISTENER_BASE, SHUTDOWN_GRACE, SWEEP_TICK, TURN_BUDGET, WAKER,
};
use crate::service::Service;
use crate::slow::{Phase, SlowTurns};
use crate::timer::Timers;

pub struct Reactor {
    cx: Ctx,
    events: Events,
    slow: SlowTurns,
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
                turns: crate::turns::TurnStats::new(Instant::now()),
                flushed: 0,
                backlog: std::collections::VecDeque::new(),
            },
            events: Events::with_capacity(1024),
            slow: SlowTurns::from_env(),
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

            let timeout = if !cx.dirty.is_empty() || !cx.resume.is_empty() || !cx.backlog.is_empty()
            {
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
            let slow = &mut self.slow;
            if slow.enabled() {
                slow.begin(cx.now, self.events.iter().count(), cx.flushed);
            }

            // Events are handled oldest first within a time budget: what a
            // turn could not reach (a reconnect storm's thousands of accepts
            // and REGISTERs) waits for the next turn, after this turn's
            // answers are flushed, instead of holding every answer back.
            let deadline = cx.now + TURN_BUDGET;
            for _ in 0..cx.backlog.len() {
                if Instant::now() >= deadline {
                    break;
                }
                if let Some(p) = cx.backlog.pop_front() {
                    cx.handle_pending(p, services);
                    cx.process_closes(services);
                }
            }
            slow.mark(Phase::Backlog);
            let mut woken = false;
            for ev in self.events.iter() {
                let t = ev.token();
                if t == WAKER {
                    woken = true;
                    continue;
                }
                let late = !cx.backlog.is_empty() || Instant::now() >= deadline;
                if t.0 >= LISTENER_BASE {
                    let l = t.0 - LISTENER_BASE;
                    if late {
                        cx.backlog.push_back(Pending::Accept(l));
                    } else {
                        cx.handle_pending(Pending::Accept(l), services);
                    }
                } else {
                    let hup = ev.is_read_closed() || ev.is_error();
                    let (r, w) = (ev.is_readable() || hup, ev.is_writable());
                    if late {
                        cx.defer_conn(t.0, r, hup, w);
                    } else {
                        cx.conn_event(t.0, r, hup, w, services);
                    }
                }
                cx.process_closes(services);
            }
            slow.mark(Phase::Events);
            if woken {
                for s in services.iter_mut() {
                    s.on_wake(cx);
                }
                cx.process_closes(services);
            }
            slow.mark(Phase::Wake);
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
                            cx.handle_pending(Pending::Accept(l), services);
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
            slow.mark(Phase::Timers);
            // Connections whose reading was paused and may go on now.
            let resume = std::mem::take(&mut cx.resume);
            for i in resume {
                cx.read_and_dispatch(i, services);
                cx.process_closes(services);
            }
            slow.mark(Phase::Resume);
            cx.flush_dirty(services);
            cx.process_closes(services);
            slow.mark(Phase::Flush);
            let end = Instant::now();
            cx.turns.record(cx.now, end);
            if let Some(line) = slow.end(end, cx.flushed) {
                (cx.log)(&line);
            }
        }
    }
}
