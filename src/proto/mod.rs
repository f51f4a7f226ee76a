//! Pure wire codecs: no I/O. Each turns bytes into frames or a reason.

pub mod names;
pub mod peer;
pub mod registry;
