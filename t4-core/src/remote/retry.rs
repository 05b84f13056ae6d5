//! Retry timing after the bucket failed: exponential backoff with seeded jitter.

use std::time::Duration;

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::time::Instant;

/// Exponential backoff between `min` and `max`, each delay jittered to 50–100% of its value
/// by a seeded RNG (so a seed replays exactly, and nodes do not retry in lockstep).
#[derive(Debug)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: Pcg64Mcg,
}

impl Backoff {
    pub(crate) fn new(min: Duration, max: Duration, seed: u64) -> Backoff {
        Backoff {
            min: min.max(Duration::from_millis(1)),
            max: max.max(min),
            attempt: 0,
            // Its own stream, so retries never change the generated lease ids.
            rng: Pcg64Mcg::seed_from_u64(seed ^ 0x7434_5245_5452_5921),
        }
    }

    /// When to try again after one more failure.
    pub(crate) fn next(&mut self, now: Instant) -> Instant {
        let factor = 1u32 << self.attempt.min(20);
        let delay = self.min.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let nanos = u64::try_from(delay.as_nanos()).unwrap_or(u64::MAX).max(2);
        let jittered = nanos / 2 + self.rng.next_u64() % (nanos / 2);
        now + Duration::from_nanos(jittered)
    }

    /// A success: the next failure starts from `min` again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_are_capped_and_replay_from_the_seed() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        let mut a = Backoff::new(min, max, 7);
        let mut b = Backoff::new(min, max, 7);
        let mut last = Duration::ZERO;
        for i in 0..10 {
            let at = a.next(Instant::ZERO);
            assert_eq!(at, b.next(Instant::ZERO));
            let d = at.saturating_since(Instant::ZERO);
            assert!(d <= max, "attempt {i}: {d:?}");
            assert!(d >= min / 2);
            if i < 3 {
                assert!(d >= last / 2);
            }
            last = d;
        }
        a.reset();
        assert!(a.next(Instant::ZERO).saturating_since(Instant::ZERO) <= min);
    }
}
