//! When to seal `latest`'s memtable early: once most of what it holds are versions that a
//! later write to the same key superseded.
//!
//! fjall's memtable keeps every version written to a key until the memtable is flushed, and a
//! scan steps over each of them. After many overwrites of the same keys, a range at the
//! current revision walks several entries per key it returns: `t4 run` served a 100-key
//! range 3,100–4,300 times a second after 70,000 overwrites of 10,000 keys, against
//! 8,900–15,900 fresh (docs/benchmarks.md). A flush keeps only the versions some snapshot can
//! still see, so sealing the memtable once its superseded versions outnumber the keys it
//! holds keeps a scan near one or two steps per key. Writes of new keys never seal it early:
//! a smaller memtable for every load would also make each new key's lookup search more
//! tables (it cost new-key puts 17 %).
//!
//! The store seals only once a scan of `latest` came since the last seal (an apply that finds
//! the memtable due then seals it, or the next scan does): each early seal costs a flush, and
//! a store that is only written gains nothing from it (sealing on overwrites alone cost `t4
//! run` 5 % of its throughput under 16 clients of puts, the flushes' writes beside the WAL's
//! syncs).
//!
//! The distinct keys written are estimated by linear counting (Whang et al., 1990): each
//! key's hash sets one bit of a fixed bitmap, and `n ≈ -m·ln(zero bits / m)` for `m` bits.
//! One bit set per write and 128 KiB per store, however many keys; within about 1 % up to a
//! few million keys, beyond which the count starts over (such a memtable holds few versions
//! per key anyway).

use std::hash::BuildHasher;

use foldhash::fast::RandomState;

/// Superseded versions the memtable must hold before it is sealed early, so that a small
/// store overwritten by a few writers does not flush a table every few puts.
pub(super) const MIN_SUPERSEDED: u64 = 8192;

/// Bits in the bitmap (a power of two).
const BITS: usize = 1 << 20;

/// The count starts over once fewer than this many bits are still zero (about 4.8 million
/// distinct keys), before the estimate loses its precision.
const MIN_ZERO_BITS: usize = BITS / 100;

/// The writes to `latest` since its memtable was last sealed here.
pub(super) struct Overwrites {
    hasher: RandomState,
    /// One bit per hash bucket of the keys written.
    bitmap: Box<[u64]>,
    /// Bits of `bitmap` still zero.
    zero_bits: usize,
    /// Every put and delete (a delete is a tombstone version in the memtable).
    writes: u64,
    /// Times the memtable was sealed early, since the store was opened.
    seals: u64,
}

impl Overwrites {
    pub(super) fn new() -> Overwrites {
        Overwrites {
            hasher: RandomState::default(),
            bitmap: vec![0; BITS / 64].into_boxed_slice(),
            zero_bits: BITS,
            writes: 0,
            seals: 0,
        }
    }

    /// Notes one write to `key`.
    pub(super) fn wrote(&mut self, key: &[u8]) {
        if self.zero_bits < MIN_ZERO_BITS {
            self.start_over();
        }
        let bit = self.hasher.hash_one(key) as usize % BITS;
        let word = &mut self.bitmap[bit / 64];
        let mask = 1u64 << (bit % 64);
        if *word & mask == 0 {
            *word |= mask;
            self.zero_bits -= 1;
        }
        self.writes += 1;
    }

    /// Distinct keys written since the count started (an estimate).
    fn keys(&self) -> u64 {
        let m = BITS as f64;
        (-m * (self.zero_bits as f64 / m).ln()).round() as u64
    }

    /// Whether the memtable should be sealed now: its superseded versions are at least
    /// [`MIN_SUPERSEDED`] and at least as many as its keys.
    pub(super) fn seal_due(&self) -> bool {
        let keys = self.keys();
        let superseded = self.writes.saturating_sub(keys);
        superseded >= MIN_SUPERSEDED && superseded >= keys
    }

    /// The memtable was sealed: count afresh for the next one.
    pub(super) fn sealed(&mut self) {
        self.seals += 1;
        self.start_over();
    }

    fn start_over(&mut self) {
        self.bitmap.fill(0);
        self.zero_bits = BITS;
        self.writes = 0;
    }

    /// Times the memtable was sealed early.
    pub(super) fn seals(&self) -> u64 {
        self.seals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> Vec<u8> {
        format!("key-{i:08}").into_bytes()
    }

    #[test]
    fn new_keys_never_make_a_seal_due() {
        let mut o = Overwrites::new();
        for i in 0..1_000_000u64 {
            o.wrote(&key(i));
            assert!(!o.seal_due(), "after {i} new keys");
        }
    }

    #[test]
    fn a_seal_is_due_once_superseded_versions_outnumber_the_keys_and_the_minimum() {
        let mut o = Overwrites::new();
        // 100 keys: due at the minimum of superseded versions.
        let mut writes = 0u64;
        while !o.seal_due() {
            o.wrote(&key(writes % 100));
            writes += 1;
        }
        assert_eq!(writes, 100 + MIN_SUPERSEDED);
        o.sealed();
        // One key written over and over is found just as well.
        let mut writes = 0u64;
        while !o.seal_due() {
            o.wrote(&key(7));
            writes += 1;
        }
        assert_eq!(writes, 1 + MIN_SUPERSEDED);
        o.sealed();
        assert_eq!(o.seals(), 2);
        assert!(!o.seal_due(), "the count starts afresh");

        // 20,000 keys: due once each was written about twice (more than the minimum); the
        // estimate of the keys is within 1 %.
        let keys = 20_000u64;
        let mut writes = 0u64;
        while !o.seal_due() {
            o.wrote(&key(writes % keys));
            writes += 1;
        }
        assert!(
            writes.abs_diff(2 * keys) <= 2 * keys / 100,
            "{writes} writes"
        );
    }

    #[test]
    fn the_estimate_of_distinct_keys_stays_within_one_percent() {
        let mut o = Overwrites::new();
        let mut written = 0u64;
        for n in [1_000u64, 100_000, 1_000_000, 3_000_000] {
            while written < n {
                o.wrote(&key(written));
                written += 1;
            }
            assert!(o.keys().abs_diff(n) <= n / 100, "{} for {n}", o.keys());
            assert!(!o.seal_due());
        }
    }

    #[test]
    fn a_full_bitmap_starts_the_count_over() {
        let mut o = Overwrites::new();
        let mut i = 0;
        while o.zero_bits >= MIN_ZERO_BITS {
            o.wrote(&key(i));
            i += 1;
        }
        o.wrote(&key(i));
        assert_eq!((o.writes, o.zero_bits), (1, BITS - 1));
    }
}
