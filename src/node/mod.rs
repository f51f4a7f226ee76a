//! (in progress)

pub mod fetch;
pub mod peer_server;
