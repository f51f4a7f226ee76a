//! The coordinator: the registry over TCP and the server API over HTTP.

pub mod secrets;
pub mod users;
