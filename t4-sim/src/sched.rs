//! The scheduler: simulated time and the queue of future events.
//!
//! Events fire in `(time, seq)` order, where `seq` counts insertions: two events due at the
//! same instant fire in the order they were scheduled. Nothing else (no hash order, no
//! thread timing) can reorder them, which is what makes a run a function of its seed.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use t4_core::Instant;

struct Entry<E> {
    at: Instant,
    seq: u64,
    event: E,
}

impl<E> PartialEq for Entry<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl<E> Eq for Entry<E> {}
impl<E> PartialOrd for Entry<E> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<E> Ord for Entry<E> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// Simulated time plus the pending events.
pub struct Scheduler<E> {
    now: Instant,
    seq: u64,
    queue: BinaryHeap<Reverse<Entry<E>>>,
}

impl<E> Default for Scheduler<E> {
    fn default() -> Self {
        Scheduler::new()
    }
}

impl<E> Scheduler<E> {
    /// An empty queue at time zero.
    pub fn new() -> Scheduler<E> {
        Scheduler {
            now: Instant::ZERO,
            seq: 0,
            queue: BinaryHeap::new(),
        }
    }

    /// The current simulated time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Schedules `event` at `at` (an instant in the past fires now).
    pub fn at(&mut self, at: Instant, event: E) {
        self.seq += 1;
        let at = at.max(self.now);
        self.queue.push(Reverse(Entry {
            at,
            seq: self.seq,
            event,
        }));
    }

    /// Schedules `event` after `delay`.
    pub fn after(&mut self, delay: Duration, event: E) {
        self.at(self.now + delay, event);
    }

    /// Schedules `event` after `nanos` nanoseconds.
    pub fn after_nanos(&mut self, nanos: u64, event: E) {
        self.at(Instant(self.now.as_nanos().saturating_add(nanos)), event);
    }

    /// Pops the next event and advances time to it.
    pub fn pop(&mut self) -> Option<E> {
        let Reverse(entry) = self.queue.pop()?;
        self.now = entry.at;
        Some(entry.event)
    }

    /// When the next event is due.
    pub fn peek_time(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(e)| e.at)
    }

    /// Number of pending events.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether no event is pending.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_fire_in_time_then_insertion_order() {
        let mut s = Scheduler::new();
        s.at(Instant(5), "c");
        s.at(Instant(1), "a");
        s.at(Instant(5), "d");
        s.at(Instant(1), "b");
        let order: Vec<_> = std::iter::from_fn(|| s.pop()).collect();
        assert_eq!(order, vec!["a", "b", "c", "d"]);
        assert_eq!(s.now(), Instant(5));
    }

    #[test]
    fn the_past_is_now() {
        let mut s = Scheduler::new();
        s.at(Instant(10), 1);
        s.pop();
        s.at(Instant(3), 2);
        assert_eq!(s.peek_time(), Some(Instant(10)));
    }
}
