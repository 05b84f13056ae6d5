//! The trace: one line per simulated event, and a stable hash of all of them.
//!
//! Two runs of the same seed must produce the same trace byte for byte; the printed trace
//! hash is how a human (or CI) compares runs without keeping the whole text. The hash is
//! FNV-1a over 64 bits, written here so that its output can never change under us (std's
//! `DefaultHasher` makes no such promise).

use std::fmt::{self, Write as _};

use t4_core::Instant;

/// FNV-1a, 64-bit: a stable, dependency-free hash for traces and state digests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Fnv64 {
        Fnv64::new()
    }
}

impl Fnv64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;

    /// An empty hash.
    pub fn new() -> Fnv64 {
        Fnv64(Self::OFFSET)
    }

    /// Adds bytes.
    pub fn write(&mut self, bytes: &[u8]) {
        let mut h = self.0;
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(Self::PRIME);
        }
        self.0 = h;
    }

    /// Adds a length-prefixed byte string (so that `("ab","c")` and `("a","bc")` differ).
    pub fn write_field(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    /// Adds an integer.
    pub fn write_i64(&mut self, v: i64) {
        self.write(&v.to_le_bytes());
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// The hash of a byte string.
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h = Fnv64::new();
    h.write(bytes);
    h.finish()
}

/// The event trace of one run.
#[derive(Debug, Default)]
pub struct Trace {
    hash: Fnv64,
    events: u64,
    /// The text, when kept (`--trace`, the determinism self-test).
    text: Option<String>,
    line: String,
}

impl Trace {
    /// A trace that keeps only the hash (`keep = false`) or also the text.
    pub fn new(keep: bool) -> Trace {
        Trace {
            hash: Fnv64::new(),
            events: 0,
            text: keep.then(String::new),
            line: String::new(),
        }
    }

    /// Records one event at `now`.
    pub fn record(&mut self, now: Instant, what: fmt::Arguments<'_>) {
        self.line.clear();
        let ns = now.as_nanos();
        let _ = write!(
            self.line,
            "{:>6}.{:06} {}",
            ns / 1_000_000_000,
            (ns / 1000) % 1_000_000,
            what
        );
        self.line.push('\n');
        self.hash.write(self.line.as_bytes());
        self.events += 1;
        if let Some(text) = &mut self.text {
            text.push_str(&self.line);
        }
    }

    /// The hash of every line recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// Number of events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The text, if kept.
    pub fn text(&self) -> Option<&str> {
        self.text.as_deref()
    }

    /// Takes the text, if kept.
    pub fn take_text(&mut self) -> Option<String> {
        self.text.take()
    }
}

/// Formats a simulated instant as seconds with microseconds, e.g. `12.000345s`.
pub fn secs(t: Instant) -> String {
    let ns = t.as_nanos();
    format!("{}.{:06}s", ns / 1_000_000_000, (ns / 1000) % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv_matches_the_reference_vectors() {
        assert_eq!(fnv64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn the_trace_hash_covers_every_line() {
        let mut a = Trace::new(true);
        let mut b = Trace::new(false);
        a.record(Instant(1_500_000_000), format_args!("x {}", 1));
        b.record(Instant(1_500_000_000), format_args!("x {}", 1));
        assert_eq!(a.hash(), b.hash());
        assert_eq!(a.text(), Some("     1.500000 x 1\n"));
        b.record(Instant(2), format_args!("y"));
        assert_ne!(a.hash(), b.hash());
    }
}
