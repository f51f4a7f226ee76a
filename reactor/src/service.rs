//! What an application implements to run on the loop, and the ids it is
//! handed: services, listeners, timers.

use std::net::SocketAddr;

use crate::conn::{CloseReason, ConnId};
use crate::ctx::Ctx;

/// Index of a service in the slice given to [`Reactor::run`].
pub type ServiceId = usize;
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct ListenerId(pub(crate) usize);

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TimerId(pub(crate) u64);
/// What the application implements. Every callback gets the loop's context,
/// through which it reads input, queues output, arms timers and so on.
#[allow(unused_variables)]
pub trait Service {
    /// A listener of this service accepted `id`.
    fn on_accept(&mut self, cx: &mut Ctx, listener: ListenerId, id: ConnId, peer: SocketAddr) {}
    /// An outbound connection finished connecting (or failed; then `on_close` follows).
    fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {}
    /// New bytes wait in `cx.input(id)`; consume what forms whole frames.
    fn on_input(&mut self, cx: &mut Ctx, id: ConnId);
    /// The output queue of `id` became empty after `cx.notify_drained(id)`.
    fn on_drained(&mut self, cx: &mut Ctx, id: ConnId) {}
    /// `id` is gone; called exactly once per connection.
    fn on_close(&mut self, cx: &mut Ctx, id: ConnId, why: CloseReason) {}
    /// A timer armed by this service fired.
    fn on_timer(&mut self, cx: &mut Ctx, key: u64) {}
    /// The waker fired (worker results, another thread's news).
    fn on_wake(&mut self, cx: &mut Ctx) {}
    /// SIGINT/SIGTERM or `cx.stop()`: stop accepting, say goodbye.
    fn on_shutdown(&mut self, cx: &mut Ctx) {}
}
