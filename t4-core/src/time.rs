//! The core's own notion of time.
//!
//! Time enters the core only as a `now` argument. An [`Instant`] is a count of nanoseconds on
//! a monotonic clock chosen by the adapter (the runtime adapter counts from node start; the
//! simulator counts simulated time), so the core never reads a clock and replays exactly.

use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the adapter's monotonic clock, in nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant(0);

    /// Nanoseconds since the origin.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_wrapping() {
        let t = Instant(5);
        assert_eq!(t - Duration::from_nanos(10), Instant::ZERO);
        assert_eq!(
            Instant(u64::MAX) + Duration::from_secs(1),
            Instant(u64::MAX)
        );
        assert_eq!(
            Instant(10).saturating_since(Instant(4)),
            Duration::from_nanos(6)
        );
        assert_eq!(Instant(4).saturating_since(Instant(10)), Duration::ZERO);
    }
}
