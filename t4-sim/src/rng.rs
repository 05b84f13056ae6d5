//! Seeded randomness: one root seed, one independent stream per component.
//!
//! Every random choice of a run comes from a [`SimRng`] derived from the run's root seed and
//! a fixed label ("disk", "net", "workload", ...). Adding a random choice to one component
//! therefore does not shift the choices of the others, and the generator
//! (`rand_pcg::Pcg64Mcg`, pinned to an exact version in the workspace) gives the same stream
//! on every platform and build. Only integer arithmetic is used, so no float rounding can make
//! two machines disagree.

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

/// SplitMix64's finaliser: a fast, well-mixed bijection on `u64`.
pub fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The seed of the component called `label` in the run with seed `root`.
pub fn child_seed(root: u64, label: &str) -> u64 {
    let mut h = mix64(root);
    for b in label.bytes() {
        h = mix64(h ^ u64::from(b));
    }
    h
}

/// One component's random stream.
#[derive(Clone, Debug)]
pub struct SimRng {
    inner: Pcg64Mcg,
}

impl SimRng {
    /// A stream from a seed.
    pub fn new(seed: u64) -> SimRng {
        SimRng {
            inner: Pcg64Mcg::seed_from_u64(seed),
        }
    }

    /// The stream of component `label` of the run with seed `root`.
    pub fn child(root: u64, label: &str) -> SimRng {
        SimRng::new(child_seed(root, label))
    }

    /// A fresh stream split off this one (for a sub-component created during the run).
    pub fn fork(&mut self) -> SimRng {
        SimRng::new(self.next_u64())
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// A uniform value in `0..n` (`n > 0`), without modulo bias worth caring about (the
    /// 128-bit multiply-shift maps 64 random bits onto the range).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0, "below(0)");
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// A uniform value in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.below(hi - lo + 1)
    }

    /// A uniform index into a collection of `len` elements (`len > 0`).
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// True with probability `ppm` parts per million.
    pub fn chance(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.below(1_000_000) < u64::from(ppm)
    }

    /// A uniform element of `items` (non-empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// An index chosen with the given weights (at least one non-zero).
    pub fn weighted(&mut self, weights: &[u32]) -> usize {
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        debug_assert!(total > 0, "all weights are zero");
        let mut x = self.below(total.max(1));
        for (i, w) in weights.iter().enumerate() {
            if x < u64::from(*w) {
                return i;
            }
            x -= u64::from(*w);
        }
        weights.len() - 1
    }

    /// A duration in nanoseconds, log-uniform between `lo` and `hi`: most values are near
    /// `lo`, a few reach `hi` (the shape of real IO and network latency).
    pub fn log_uniform(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo.max(1) {
            return lo;
        }
        let lo = lo.max(1);
        // Pick an exponent between log2(lo) and log2(hi), then a value inside that octave.
        let (lo_bits, hi_bits) = (63 - lo.leading_zeros(), 63 - hi.leading_zeros());
        let bits = self.range(u64::from(lo_bits), u64::from(hi_bits)) as u32;
        let base = 1u64 << bits;
        let v = base + self.below(base);
        v.clamp(lo, hi)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = SimRng::child(42, "disk");
        let mut b = SimRng::child(42, "disk");
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn components_get_independent_streams() {
        let mut a = SimRng::child(42, "disk");
        let mut b = SimRng::child(42, "net");
        let mut c = SimRng::child(43, "disk");
        let (x, y, z) = (a.next_u64(), b.next_u64(), c.next_u64());
        assert_ne!(x, y);
        assert_ne!(x, z);
    }

    #[test]
    fn the_stream_is_pinned_across_builds() {
        // If this fails, the RNG (or its seeding) changed and every recorded seed replays
        // differently: pin the crate back or accept that old seeds no longer reproduce.
        let mut r = SimRng::new(0);
        assert_eq!(r.next_u64(), SimRng::new(0).next_u64());
        assert_eq!(child_seed(1, "x"), child_seed(1, "x"));
        assert_eq!(mix64(0), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn helpers_stay_in_range() {
        let mut r = SimRng::new(7);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
            let v = r.range(5, 9);
            assert!((5..=9).contains(&v));
            let l = r.log_uniform(100, 10_000);
            assert!((100..=10_000).contains(&l), "{l}");
            assert!(r.weighted(&[0, 3, 0, 1]) % 2 == 1);
        }
        assert!(!r.chance(0));
        assert!(r.chance(1_000_000));
    }
}
