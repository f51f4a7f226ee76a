//! p2pshare's wire protocols, each defined once and used by every side (the
//! coordinator, the node, the bench tools): typed messages with encode and
//! decode. Pure: no sockets, no files, no registry state
//! (docs/registry-protocol.md, docs/peer-protocol.md).

pub mod names;
pub mod peer;
pub mod registry;
