//! Benchmark keys: a prefix and a zero-padded index, exactly `key_size` bytes, sorting in
//! index order.

/// The keys of one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeySpace {
    prefix: Vec<u8>,
    key_size: usize,
    keyspace: u64,
}

/// Decimal digits of `n` (at least one).
pub(crate) fn digits(n: u64) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

impl KeySpace {
    /// Keys `0..keyspace` under `prefix`; `Err(bytes needed)` if they do not fit in `key_size`.
    pub fn new(prefix: &[u8], key_size: usize, keyspace: u64) -> Result<KeySpace, usize> {
        let need = prefix.len() + digits(keyspace.saturating_sub(1));
        if key_size < need {
            return Err(need);
        }
        Ok(KeySpace {
            prefix: prefix.to_vec(),
            key_size,
            keyspace,
        })
    }

    /// Number of distinct keys.
    pub fn keyspace(&self) -> u64 {
        self.keyspace
    }

    /// Bytes per key.
    pub fn key_size(&self) -> usize {
        self.key_size
    }

    /// The key of index `i` (which may be `keyspace`, as the exclusive end of a range).
    pub fn key(&self, i: u64) -> Vec<u8> {
        let width = self.key_size - self.prefix.len();
        let mut key = Vec::with_capacity(self.key_size.max(self.prefix.len() + digits(i)));
        key.extend_from_slice(&self.prefix);
        key.extend_from_slice(format!("{i:0width$}").as_bytes());
        key
    }

    /// The index of a benchmark key of this key space, or `None` for any other key.
    pub fn index(&self, key: &[u8]) -> Option<u64> {
        if key.len() != self.key_size {
            return None;
        }
        let digits = key.strip_prefix(self.prefix.as_slice())?;
        let i: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
        (i < self.keyspace).then_some(i)
    }

    /// The prefix.
    pub fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The smallest key after every key starting with the prefix (etcd's prefix `range_end`), or
    /// `None` if the prefix is empty or all `0xff`.
    pub fn prefix_end(&self) -> Option<Vec<u8>> {
        let mut end = self.prefix.clone();
        while let Some(last) = end.pop() {
            if last < 0xff {
                end.push(last + 1);
                return Some(end);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_have_the_exact_size_and_sort_by_index() {
        let ks = KeySpace::new(b"/b/", 64, 10_000).unwrap();
        let a = ks.key(9);
        let b = ks.key(10);
        let c = ks.key(9_999);
        assert_eq!((a.len(), b.len(), c.len()), (64, 64, 64));
        assert!(a < b && b < c);
        assert!(a.starts_with(b"/b/000"));
        assert!(a.ends_with(b"0009"));
    }

    #[test]
    fn index_inverts_key() {
        let ks = KeySpace::new(b"/b/", 16, 1_000).unwrap();
        assert_eq!(ks.index(&ks.key(0)), Some(0));
        assert_eq!(ks.index(&ks.key(999)), Some(999));
        assert_eq!(ks.index(&ks.key(1_000)), None);
        assert_eq!(ks.index(b"/b/0000000000x12"), None);
        assert_eq!(ks.index(b"/c/0000000000012"), None);
        assert_eq!(ks.index(b"/b/12"), None);
    }

    #[test]
    fn a_key_space_too_small_for_its_keys_is_refused() {
        assert_eq!(KeySpace::new(b"/b/", 6, 10_000), Err(7));
        assert!(KeySpace::new(b"/b/", 7, 10_000).is_ok());
        assert!(KeySpace::new(b"/b/", 4, 1).is_ok());
    }

    #[test]
    fn digit_counts() {
        assert_eq!(
            [0, 9, 10, 99, 100, u64::MAX].map(digits),
            [1, 1, 2, 2, 3, 20]
        );
    }

    #[test]
    fn prefix_end_is_etcds() {
        let end = |p: &[u8]| KeySpace::new(p, 64, 1).unwrap().prefix_end();
        assert_eq!(end(b"/t4/"), Some(b"/t40".to_vec()));
        assert_eq!(end(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(end(b"\xff\xff"), None);
        assert_eq!(end(b""), None);
    }
}
