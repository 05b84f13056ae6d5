//! etcd's `HashKV`: one checksum of the store's retained MVCC history up to a revision.
//!
//! Two stores with equal histories (the same writes at the same revisions, compacted at the
//! same revision) give equal hashes whatever engine holds them, so replicas, a restored
//! snapshot and its origin can be compared. The hash covers the state at the compact revision
//! (every live key with its full metadata) and then every event after it up to the requested
//! revision. It is CRC-32C, like the checksums of the WAL.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::range::read_revision;
use super::store::ReadView;
use crate::error::Error;
use crate::kv::{EventKind, KeyRange, KeyValue, Revision};

/// The answer to a `HashKV` request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvHash {
    /// CRC-32C over the retained history up to `hash_revision`.
    pub hash: u32,
    /// The revision the hash was computed at.
    pub hash_revision: Revision,
    /// The compact revision of the view (0 if never compacted).
    pub compact_revision: Revision,
}

struct Crc(u32);

impl Crc {
    fn bytes(&mut self, b: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, &(b.len() as u64).to_le_bytes());
        self.0 = crc32c::crc32c_append(self.0, b);
    }

    fn int(&mut self, n: i64) {
        self.0 = crc32c::crc32c_append(self.0, &n.to_le_bytes());
    }

    fn kv(&mut self, tag: u8, kv: &KeyValue) {
        self.0 = crc32c::crc32c_append(self.0, &[tag]);
        self.bytes(&kv.key);
        self.int(kv.mod_revision);
        self.int(kv.create_revision);
        self.int(kv.version);
        self.int(kv.lease);
        self.bytes(&kv.value);
    }
}

/// Hashes the history of `view` up to `revision` (0 = the view's revision), with etcd's
/// checks: a future revision fails with [`Error::FutureRevision`], a compacted one with
/// [`Error::Compacted`].
pub fn hash_kv(view: &impl ReadView, revision: Revision) -> Result<KvHash, Error> {
    let at = read_revision(view, revision)?;
    let compact = view.compact_revision();
    let mut crc = Crc(0);
    if compact > 0 {
        // History below the compact revision is gone: start from the state it left.
        view.scan(&KeyRange::From(Bytes::new()), compact, &mut |kv| {
            crc.kv(b'S', &kv);
            ControlFlow::Continue(())
        })?;
    }
    view.events((compact + 1).max(1), at, &mut |event| {
        let tag = match event.kind {
            EventKind::Put => b'P',
            EventKind::Delete => b'D',
        };
        crc.kv(tag, &event.kv);
        ControlFlow::Continue(())
    })?;
    Ok(KvHash {
        hash: crc.0,
        hash_revision: at,
        compact_revision: compact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{MemStore, Store};
    use crate::wal::{Change, LogEntry, LogOp};

    fn put(index: u64, rev: Revision, key: &'static str, value: &'static str) -> LogEntry {
        let kv = KeyValue {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        };
        LogEntry {
            index,
            term: 1,
            ops: vec![LogOp::Revision {
                revision: rev,
                changes: vec![Change::Put { kv, prev_lease: 0 }],
            }],
        }
    }

    fn store(entries: &[LogEntry]) -> MemStore {
        let s = MemStore::new();
        for e in entries {
            s.apply(e).expect("apply");
        }
        s
    }

    #[test]
    fn equal_histories_hash_equal_and_different_values_do_not() {
        let a = store(&[put(1, 2, "a", "1"), put(2, 3, "b", "2")]);
        let b = store(&[put(1, 2, "a", "1"), put(2, 3, "b", "2")]);
        let c = store(&[put(1, 2, "a", "1"), put(2, 3, "b", "X")]);
        let ha = hash_kv(&a.view(), 0).expect("hash");
        assert_eq!(ha, hash_kv(&b.view(), 0).expect("hash"));
        assert_ne!(ha.hash, hash_kv(&c.view(), 0).expect("hash").hash);
        assert_eq!(ha.hash_revision, 3);
        // Up to revision 2 the third store's history is the same.
        assert_eq!(
            hash_kv(&a.view(), 2).expect("hash"),
            hash_kv(&c.view(), 2).expect("hash")
        );
    }

    #[test]
    fn hash_kv_refuses_future_and_compacted_revisions() {
        let s = store(&[
            put(1, 2, "a", "1"),
            put(2, 3, "a", "2"),
            LogEntry {
                index: 3,
                term: 1,
                ops: vec![LogOp::Compact { revision: 3 }],
            },
        ]);
        assert_eq!(hash_kv(&s.view(), 4), Err(Error::FutureRevision));
        assert_eq!(hash_kv(&s.view(), 2), Err(Error::Compacted));
        let h = hash_kv(&s.view(), 3).expect("hash");
        assert_eq!(h.compact_revision, 3);
    }
}
