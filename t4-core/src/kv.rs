//! etcd's data model: keys, values, revisions, events and key ranges.

use bytes::Bytes;

/// A revision of the whole store. The empty store is at revision 1; every committed write
/// request that changes something advances it by one, as in etcd.
pub type Revision = i64;

/// A lease identifier. `0` means "no lease".
pub type LeaseId = i64;

/// The largest key t4 accepts, in bytes.
///
/// etcd bounds keys only by the request size; t4 stores each key twice inside its on-disk
/// index (once escaped), and the storage engine limits keys to 64 KiB, hence this bound.
pub const MAX_KEY_LEN: usize = 32 * 1024 - 64;

/// One key as stored at some revision, with etcd's per-key metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct KeyValue {
    /// The key.
    pub key: Bytes,
    /// Revision of the write that created the key (since it last did not exist).
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since creation; 1 after the first put, 0 means absent.
    pub version: i64,
    /// The value.
    pub value: Bytes,
    /// The lease attached to the key, or 0.
    pub lease: LeaseId,
}

/// Whether an event created/updated or deleted its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The key was created or updated.
    Put,
    /// The key was deleted.
    Delete,
}

/// A change to one key at one revision, as delivered to watchers.
///
/// For a delete, `kv` holds only the key and `mod_revision` (the deleting revision), exactly
/// as etcd reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Event {
    /// Put or delete.
    pub kind: EventKind,
    /// The key after the change.
    pub kv: KeyValue,
    /// The key before the change, if it existed.
    pub prev_kv: Option<KeyValue>,
}

impl Event {
    /// The revision at which this event happened.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// The set of keys a request addresses, decoded from etcd's `(key, range_end)` convention.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KeyRange {
    /// Exactly one key (`range_end` empty).
    Single(Bytes),
    /// Every key `>= start` (`range_end` is `"\0"`).
    From(Bytes),
    /// Every key in `[start, end)`.
    Between(Bytes, Bytes),
}

impl KeyRange {
    /// Decodes etcd's `(key, range_end)` pair.
    pub fn from_etcd(key: &Bytes, range_end: &Bytes) -> KeyRange {
        if range_end.is_empty() {
            KeyRange::Single(key.clone())
        } else if range_end.as_ref() == [0] {
            KeyRange::From(key.clone())
        } else {
            KeyRange::Between(key.clone(), range_end.clone())
        }
    }

    /// The range of all keys starting with `prefix` (etcd's `--prefix`).
    pub fn prefix(prefix: impl Into<Bytes>) -> KeyRange {
        let prefix: Bytes = prefix.into();
        match prefix_end(&prefix) {
            Some(end) => KeyRange::Between(prefix, end),
            None => KeyRange::From(prefix),
        }
    }

    /// The first key of the range.
    pub fn start(&self) -> &Bytes {
        match self {
            KeyRange::Single(k) | KeyRange::From(k) | KeyRange::Between(k, _) => k,
        }
    }

    /// The exclusive end of the range, `None` when unbounded; a single key has end `key\0`.
    pub fn end_exclusive(&self) -> Option<Bytes> {
        match self {
            KeyRange::Single(k) => Some(key_after(k)),
            KeyRange::From(_) => None,
            KeyRange::Between(_, e) => Some(e.clone()),
        }
    }

    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            KeyRange::Single(k) => k.as_ref() == key,
            KeyRange::From(s) => key >= s.as_ref(),
            KeyRange::Between(s, e) => key >= s.as_ref() && key < e.as_ref(),
        }
    }

    /// Whether the range can contain no key at all (`end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(self, KeyRange::Between(s, e) if e <= s)
    }

    /// The keys of this range from `start` on: the same end (a single key's range ends
    /// after that key), another start.
    pub fn starting_at(&self, start: Bytes) -> KeyRange {
        match self.end_exclusive() {
            None => KeyRange::From(start),
            Some(end) => KeyRange::Between(start, end),
        }
    }
}

/// The smallest key greater than `key`: `key` followed by a zero byte (where a paged list's
/// next page starts).
pub fn key_after(key: &[u8]) -> Bytes {
    let mut after = Vec::with_capacity(key.len() + 1);
    after.extend_from_slice(key);
    after.push(0);
    Bytes::from(after)
}

/// The smallest key greater than every key that starts with `prefix`, or `None` if there is
/// none (the prefix is empty or all `0xff`).
pub fn prefix_end(prefix: &[u8]) -> Option<Bytes> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(Bytes::from(end));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn etcd_range_conventions_decode() {
        assert_eq!(
            KeyRange::from_etcd(&b("a"), &b("")),
            KeyRange::Single(b("a"))
        );
        assert_eq!(
            KeyRange::from_etcd(&b("a"), &b("\0")),
            KeyRange::From(b("a"))
        );
        assert_eq!(
            KeyRange::from_etcd(&b("a"), &b("c")),
            KeyRange::Between(b("a"), b("c"))
        );
    }

    #[test]
    fn prefix_range_covers_exactly_the_prefixed_keys() {
        let r = KeyRange::prefix(b("ab"));
        assert!(r.contains(b"ab"));
        assert!(r.contains(b"ab\xff\xff"));
        assert!(!r.contains(b"ac"));
        assert!(!r.contains(b"aa"));
        assert_eq!(
            KeyRange::prefix(Bytes::from_static(b"a\xff")),
            KeyRange::Between(Bytes::from_static(b"a\xff"), b("b"))
        );
        assert_eq!(
            KeyRange::prefix(Bytes::from_static(b"\xff")),
            KeyRange::From(Bytes::from_static(b"\xff"))
        );
    }

    #[test]
    fn single_key_range_ends_just_after_the_key() {
        let r = KeyRange::Single(b("k"));
        assert_eq!(r.end_exclusive(), Some(b("k\0")));
        assert!(r.contains(b"k"));
        assert!(!r.contains(b"k\0"));
    }
}
