//! Deadlines in a min-heap with lazy cancellation: one entry per armed timer,
//! nothing per connection. A cancelled timer stays in the heap until it
//! surfaces and is skipped.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

pub(crate) struct Timers<T> {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    live: HashMap<u64, T>,
    next: u64,
}

impl<T> Timers<T> {
    pub fn new() -> Self {
        Timers {
            heap: BinaryHeap::new(),
            live: HashMap::new(),
            next: 1,
        }
    }

    pub fn insert(&mut self, at: Instant, what: T) -> u64 {
        let id = self.next;
        self.next += 1;
        self.heap.push(Reverse((at, id)));
        self.live.insert(id, what);
        id
    }

    pub fn cancel(&mut self, id: u64) -> bool {
        self.live.remove(&id).is_some()
    }

    /// The earliest live deadline, dropping cancelled entries on the way.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if self.live.contains_key(id) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one timer due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<T> {
        loop {
            let Reverse((at, id)) = *self.heap.peek()?;
            if at > now {
                return None;
            }
            self.heap.pop();
            if let Some(what) = self.live.remove(&id) {
                return Some(what);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_deadline_order_and_skips_cancelled() {
        let t0 = Instant::now();
        let mut t = Timers::new();
        let a = t.insert(t0 + Duration::from_millis(30), "a");
        t.insert(t0 + Duration::from_millis(10), "b");
        t.insert(t0 + Duration::from_millis(20), "c");
        assert!(t.cancel(a));
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        let now = t0 + Duration::from_millis(100);
        assert_eq!(t.pop_due(now), Some("b"));
        assert_eq!(t.pop_due(now), Some("c"));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.next_deadline(), None);
    }
}
