//! One hand-rolled mio event loop: mechanism only.
//!
//! The loop owns sockets, read buffers, bounded output queues (owned bytes or
//! ranges of a shared memory map), timers, a waker and the accept path. It
//! knows nothing of JSON, HTTP routes, tokens or files: the application
//! implements [`Service`] and drives its protocols from the callbacks.
//!
//! Several services may share one loop (the `up` command runs the
//! coordinator and the node on one). Every listener, connection and timer
//! belongs to exactly one service, which receives its callbacks.

pub mod buckets;
pub mod bytes;
mod conn;
pub mod conn_map;
mod ctx;
pub mod http;
mod io;
pub mod limits;
pub mod line;
mod listen;
pub mod outq;
mod reactor;
mod service;
pub mod signals;
mod slow;
mod sockopt;
mod timer;
mod turns;
pub mod workers;

pub use conn::{CloseReason, ConnId, ConnOptions};
pub use conn_map::ConnMap;
pub use ctx::Ctx;
pub use outq::Chunk;
pub use reactor::Reactor;
pub use service::{ListenerId, Service, ServiceId, TimerId};
pub use sockopt::Keepalive;
pub use turns::TurnSummary;
pub use workers::{Busy, Pool};
