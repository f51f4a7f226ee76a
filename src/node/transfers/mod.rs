//! Bytes between peers: the peer server answers other nodes' requests for
//! published files from memory maps (`peer_server`), and fetches download
//! from them into `.part` files beneath the sandbox (`fetch`). Protocol:
//! `docs/peer-protocol.md`.

pub mod fetch;
pub mod peer_server;
