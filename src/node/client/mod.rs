//! The client API (`docs/client-api.md`): the HTTP front (`api`: Host check,
//! authentication, routing, pages), the request guard (`guard`), token
//! checks (`tokens`), requests forwarded to the server API (`forward`), the
//! endpoints themselves (`routes`) and the choice of content a fetch by name
//! means (`pick`).

pub mod api;
pub mod forward;
mod guard;
mod pick;
mod routes;
pub mod tokens;
