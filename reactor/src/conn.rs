//! One connection's record inside the loop: its socket, buffers, output
//! queue and lifecycle [`Phase`], changed only through [`Conn::to`]. Also the
//! public ids, options and close reasons services see.

use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::outq::OutQueue;
use crate::service::ServiceId;

/// A connection: its slab slot and a generation, so a stale id never
/// reaches a later connection that reused the slot.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) idx: u32,
    pub(crate) gen: u32,
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

/// Why a connection ended; given to [`crate::Service::on_close`].
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
/// Where a connection is in its life. Every change goes through [`Conn::to`],
/// which checks the move is one the loop makes:
///
/// ```text
/// Connecting ──connected──▶ Open ──peer's EOF──▶ PeerDone ──close_after_flush──▶ Flushing
///      │                     │  └──close_after_flush──▶ Flushing                   │
///      └──────── close / error / timeout (from any phase) ──▶ Closed ◀─────────────┘
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Outbound, waiting for the connect to finish.
    Connecting,
    /// Reading and writing. `paused`: reading stopped at a cap (input or
    /// output) with data possibly left in the kernel; consuming input or
    /// draining output resumes it.
    Open { paused: bool },
    /// The peer sent EOF: no more reading; answer what it asked (the
    /// service may still be told of a drain and queue more), then close.
    PeerDone,
    /// The service asked to close once the queued output is written; no
    /// more reading. `peer_done` keeps why, for the close reason.
    Flushing { peer_done: bool },
    /// `on_close` ran or is running; the slot is freed next.
    Closed,
}

impl Phase {
    fn may_become(self, next: Phase) -> bool {
        use Phase::*;
        matches!(
            (self, next),
            (Connecting, Open { paused: false })
                | (Open { .. }, Open { .. })
                | (Open { .. }, PeerDone)
                | (Open { .. }, Flushing { peer_done: false })
                | (PeerDone, Flushing { peer_done: true })
                | (
                    Connecting | Open { .. } | PeerDone | Flushing { .. },
                    Closed
                )
        )
    }
}

pub(crate) struct Conn {
    pub sock: TcpStream,
    pub gen: u32,
    pub service: ServiceId,
    pub opts: ConnOptions,
    pub input: Vec<u8>,
    pub out: OutQueue,
    pub last_active: Instant,
    phase: Phase,
    // Not lifecycle, so not in the phase: list membership and one-shot requests.
    /// On the loop's dirty list this turn.
    pub dirty: bool,
    /// The service asked for `on_drained` when the output queue empties.
    pub want_drained: bool,
    /// The peer's FIN (or an error) was reported: read to EOF, no shortcut.
    pub hup: bool,
    /// Readiness waiting in the loop's backlog (`ctx::PENDING_*` bits).
    pub pending: u8,
}

impl Conn {
    pub fn new(
        sock: TcpStream,
        gen: u32,
        service: ServiceId,
        opts: ConnOptions,
        now: Instant,
        connecting: bool,
    ) -> Conn {
        Conn {
            sock,
            gen,
            service,
            opts,
            input: Vec::new(),
            out: OutQueue::default(),
            last_active: now,
            phase: if connecting {
                Phase::Connecting
            } else {
                Phase::Open { paused: false }
            },
            dirty: false,
            want_drained: false,
            hup: false,
            pending: 0,
        }
    }

    pub fn id(&self, idx: usize) -> ConnId {
        ConnId {
            idx: idx as u32,
            gen: self.gen,
        }
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The one place a connection changes phase.
    pub fn to(&mut self, next: Phase) {
        debug_assert!(
            self.phase.may_become(next),
            "connection phase {:?} -> {next:?} is not a move the loop makes",
            self.phase
        );
        self.phase = next;
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    pub fn is_connecting(&self) -> bool {
        self.phase == Phase::Connecting
    }

    /// Open and reading (paused or not).
    pub fn is_reading(&self) -> bool {
        matches!(self.phase, Phase::Open { .. })
    }

    pub fn is_paused(&self) -> bool {
        self.phase == Phase::Open { paused: true }
    }

    /// Marks reading paused or not; only an open connection reads.
    pub fn set_paused(&mut self, paused: bool) {
        if self.is_reading() {
            self.to(Phase::Open { paused });
        }
    }

    /// The peer has sent EOF.
    pub fn peer_is_done(&self) -> bool {
        matches!(
            self.phase,
            Phase::PeerDone | Phase::Flushing { peer_done: true }
        )
    }

    /// Over one of its caps: reading must wait.
    pub fn over_caps(&self) -> bool {
        self.input.len() >= self.opts.max_input || self.out.owned_len() >= self.opts.max_output
    }
}

/// Used by the sweep: how long a connection may sit in connect.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::Phase::*;

    #[test]
    fn the_loop_moves_only_forward_through_the_phases() {
        assert!(Connecting.may_become(Open { paused: false }));
        assert!(Open { paused: false }.may_become(Open { paused: true }));
        assert!(Open { paused: true }.may_become(PeerDone));
        assert!(PeerDone.may_become(Flushing { peer_done: true }));
        assert!(Flushing { peer_done: false }.may_become(Closed));
        assert!(!Closed.may_become(Open { paused: false }));
        assert!(!PeerDone.may_become(Open { paused: false }));
        assert!(!Flushing { peer_done: false }.may_become(PeerDone));
        assert!(!Connecting.may_become(PeerDone));
        assert!(!Closed.may_become(Closed), "on_close runs once");
    }
}
