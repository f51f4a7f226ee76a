//! One fetch: its record and the phase it is in, each phase carrying what
//! it owns (the open `.part`, the piece table, the connections with their
//! buffers, the whole-file hash). Phases change only in `Fetches::enter`
//! (`mod.rs`), which releases what the old phase held; the record's status
//! is derived from the phase there.

use std::collections::{HashSet, VecDeque};
use std::fs::File;
use std::sync::Arc;
use std::time::Instant;

use super::link::Link;
use super::part::PartId;
use super::record::{Record, Status};
use super::sched::Sched;
use crate::node::catalog::pieces::Sha256State;
use crate::node::sandbox::Place;

/// How a fetch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Failed(String),
    Cancelled(Option<String>),
}

/// Where a fetch is.
pub enum Phase {
    /// Out of hosts: waiting for the registry's answer (the `.part` and
    /// what was verified kept in the transfer).
    Resolving(Box<Transfer>),
    /// A worker makes or finds the `.part`, the resume state, the piece list.
    Preparing,
    /// Getting the piece list for the root from one host (`PIECES`).
    Pieces(Box<Transfer>),
    /// Pieces flow in from the hosts.
    Downloading(Box<Transfer>),
    /// A worker checks the whole file, makes it durable and renames it.
    Finishing,
    /// Stopped by the user; the transfer kept while the node runs (None
    /// after a restart: the `.part` is found again on resume).
    Paused(Option<Box<Transfer>>),
    Done(Outcome),
}

/// Where a phase goes next; `enter` moves the resources across.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Resolving,
    Preparing,
    Pieces,
    Downloading,
    Finishing,
    Paused,
    Done(Outcome),
}

impl Phase {
    pub fn status(&self) -> Status {
        match self {
            Phase::Resolving(_) | Phase::Preparing => Status::Pending,
            Phase::Pieces(_) | Phase::Downloading(_) => Status::Downloading,
            Phase::Finishing => Status::Verifying,
            Phase::Paused(_) => Status::Paused,
            Phase::Done(Outcome::Completed) => Status::Completed,
            Phase::Done(Outcome::Failed(_)) => Status::Failed,
            Phase::Done(Outcome::Cancelled(_)) => Status::Cancelled,
        }
    }

    pub fn transfer(&self) -> Option<&Transfer> {
        match self {
            Phase::Resolving(t) | Phase::Pieces(t) | Phase::Downloading(t) => Some(t),
            Phase::Paused(t) => t.as_deref(),
            _ => None,
        }
    }

    pub fn transfer_mut(&mut self) -> Option<&mut Transfer> {
        match self {
            Phase::Resolving(t) | Phase::Pieces(t) | Phase::Downloading(t) => Some(t),
            Phase::Paused(t) => t.as_deref_mut(),
            _ => None,
        }
    }

    /// The transfer, taken out (the phase keeps nothing).
    pub fn take_transfer(self) -> Option<Box<Transfer>> {
        match self {
            Phase::Resolving(t) | Phase::Pieces(t) | Phase::Downloading(t) => Some(t),
            Phase::Paused(t) => t,
            _ => None,
        }
    }

    /// Connections may be open and asked for data.
    pub fn moving(&self) -> bool {
        matches!(self, Phase::Pieces(_) | Phase::Downloading(_))
    }
}

/// What a running download owns.
pub struct Transfer {
    pub file: Arc<File>,
    pub part_id: PartId,
    pub sched: Sched,
    /// The verified piece list (root mode), `DIGEST_LEN` bytes per piece.
    pub digests: Option<Arc<Vec<u8>>>,
    pub links: Vec<Link>,
    /// The host asked for the piece list.
    pub lister: Option<String>,
    /// The whole-file hash over pieces `..hashed`; None while a worker has it.
    pub sha: Option<Sha256State>,
    pub hashed: u64,
    /// The last (frontier, saved hash) at a piece boundary: the resume state.
    pub saved: Option<(u64, String)>,
    /// Pieces on a worker being checked and written.
    pub writing: usize,
    /// A resume-state save is out / more pieces were verified since.
    pub checkpointing: bool,
    pub dirty: bool,
    /// Hosts that failed in this pass over the list.
    pub tried: HashSet<String>,
    /// Passes over the host list (a second after a pause).
    pub round: u8,
    /// A retry timer is armed.
    pub backoff: bool,
    /// A timer to look at the endgame again is armed.
    pub endgame_timer: bool,
}

impl Transfer {
    pub fn new(file: Arc<File>, part_id: PartId, sched: Sched) -> Transfer {
        Transfer {
            file,
            part_id,
            sched,
            digests: None,
            links: Vec::new(),
            lister: None,
            sha: Some(Sha256State::new()),
            hashed: 0,
            saved: Some((0, Sha256State::new().save().unwrap_or_default())),
            writing: 0,
            checkpointing: false,
            dirty: false,
            tried: HashSet::new(),
            round: 0,
            backoff: false,
            endgame_timer: false,
        }
    }

    /// Bytes received: verified pieces and pieces arriving now.
    pub fn received(&self) -> u64 {
        self.sched.verified_bytes() + self.links.iter().map(Link::partial).sum::<u64>()
    }

    pub fn link(&mut self, host: &str) -> Option<&mut Link> {
        self.links.iter_mut().find(|l| l.host == host)
    }

    /// Buffers this download holds (asked pieces and pieces being written).
    pub fn buffers(&self) -> usize {
        self.links.iter().map(Link::ranges).sum::<usize>() + self.writing
    }
}

/// One fetch.
pub struct Job {
    pub rec: Record,
    pub phase: Phase,
    /// Bumped whenever workers' results for this fetch become stale.
    pub gen: u64,
    /// Where it is written, beneath a granted root.
    pub place: Option<Place>,
    /// The next `Preparing` makes a new `.part` (new fetch, or from zero).
    pub fresh: bool,
    /// Why the last host failed, to explain a final failure.
    pub last_error: Option<String>,
    /// Why a transfer stopped mid-way, the most telling reason.
    pub interrupted: Option<String>,
    /// Taken over from before a restart.
    pub resumed: bool,
    /// A registry lookup for hosts is out (its number) / was answered in
    /// this pass.
    pub lookup: Option<u64>,
    pub looked_up: bool,
    /// The finished file's modification time, once renamed into place.
    pub modified: Option<f64>,
    /// The deadline of the `Resolving` phase (timer, its key).
    pub resolve_timer: Option<(reactor::TimerId, u64)>,
    /// (when, bytes) for the speed, newest last.
    pub samples: VecDeque<(Instant, u64)>,
}

impl Job {
    pub fn new(rec: Record, phase: Phase, place: Option<Place>) -> Job {
        Job {
            rec,
            phase,
            gen: 0,
            place,
            fresh: false,
            last_error: None,
            interrupted: None,
            resumed: false,
            lookup: None,
            looked_up: false,
            resolve_timer: None,
            modified: None,
            samples: VecDeque::new(),
        }
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        match self.phase.transfer() {
            Some(t) => t.received(),
            None => self.rec.downloaded_size,
        }
    }
}
