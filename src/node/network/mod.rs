//! The network session of each user: the registry link (`session`: REGISTER,
//! PUBLISH, PING, reconnects), the heartbeat that paces it (`heartbeat`),
//! and the view of what other peers publish (`index` caches LIST pages,
//! `browse` answers the client API from it). Protocol: `docs/registry-protocol.md`.

pub mod browse;
pub mod heartbeat;
pub mod index;
pub mod session;
pub mod standing;
