//! The registry protocol (docs/registry-protocol.md): one JSON object per
//! line, both directions. [`Request`] (client → coordinator) and [`Reply`]
//! (coordinator → client), each with its encoder and decoder; the only place
//! that knows the wire shape. Pure: no I/O, no registry state.

use serde::Deserialize;

mod fast;
mod json;
mod reply;
mod request;
#[cfg(test)]
mod tests;

pub use json::{error_line, push_f64, push_files, push_hex, push_json_str, push_meta, push_u64};
pub use reply::{decode_reply, Discovery, Hex, HostHead, ListedHost, Listing, Offer, Page, Reply};
pub use request::{decode_request, decode_request_general, Action, HeartbeatState, Request};

/// A line longer than this is refused and the connection closed.
pub const MAX_LINE: usize = 1024 * 1024;
/// LIST pages hold at most this many hosts.
pub const MAX_PAGE: u64 = 1000;

/// One file's metadata as a peer reports it.
/// Unknown fields (a seed client's `path`, `added_at`) are ignored, never stored.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FileMeta {
    pub size: u64,
    pub modified: f64,
    #[serde(default)]
    pub published_at: Option<f64>,
    #[serde(default = "yes")]
    pub is_published: bool,
    #[serde(default)]
    pub sha256: Option<String>,
    /// SHA-256 (hex) of the file's piece hashes: lets a download check each
    /// piece from several hosts. Stored and returned as given.
    #[serde(default)]
    pub root: Option<String>,
}

impl AsRef<FileMeta> for FileMeta {
    fn as_ref(&self) -> &FileMeta {
        self
    }
}

fn yes() -> bool {
    true
}
