//! p2pshare: a hybrid peer-to-peer file-sharing system.
//!
//! A coordinator keeps accounts and the registry of peers and their files; a
//! node tracks local files, publishes them and fetches files from peers. Each
//! process runs one `reactor` event loop; `up` runs both services on it.

pub mod auth;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod http_server;
pub mod log;
pub mod node;
pub mod proto;
pub mod store;
pub mod up;
pub mod util;
pub mod web;
