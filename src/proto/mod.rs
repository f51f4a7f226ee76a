//! The wire codecs live in the `p2pshare-proto` crate (`proto/`), shared with
//! the bench tools; re-exported here so the crate says `crate::proto::…`.

pub use p2pshare_proto::{names, peer, registry};
