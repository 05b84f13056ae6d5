//! Snapshots: a portable, self-checking image of the store at one revision.
//!
//! A snapshot *is* a t4 WAL segment (see [`crate::wal`]), so it has one format, one set of
//! checksums and one recovery path: restoring one means making it the only WAL segment of a
//! fresh data directory and letting recovery replay it.
//!
//! ```text
//! snapshot := segment header (first index 1)
//!             entry?      the auth state (users, roles, the enabled flag), if not the default
//!             entry*      LeaseGrant ops for every lease, then Revision ops in ascending
//!                         revision, each holding the live keys last written at that revision
//!                         (Put changes with their create revision, version and lease)
//!             seal entry  [Revision { R, [] }, Compact { R }]
//! ```
//!
//! Replaying it recreates every live key with the same create/mod revisions and versions,
//! sets the store revision to the snapshot revision `R`, and compacts at `R` (history before
//! it is not in the snapshot). The seal entry must end the file: a snapshot cut short is
//! refused, never restored in part.
//!
//! # Snapshot files
//!
//! etcd's `Snapshot` RPC streams a database file and then the SHA-256 of every byte it sent;
//! `etcdctl snapshot save` stores both and accepts the result only if its length is 32 more
//! than a multiple of 512 (etcd's databases are page-aligned). t4 streams its snapshot the same
//! way, as the file [`encode_file`] builds:
//!
//! ```text
//! file := snapshot  zero padding to a multiple of 512 bytes  SHA-256(snapshot ‖ padding)
//! ```
//!
//! [`decode_file`] takes such a file, or a bare snapshot (what [`SnapshotEncoder`] yields),
//! and returns the snapshot inside. A bare snapshot needs no digest to be trusted: every frame
//! carries a CRC-32C and the seal proves it is complete.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::auth::AuthState;
use crate::kv::{KeyValue, LeaseId, Revision};
use crate::wal::segment::{SegmentScan, scan_segment};
use crate::wal::{Change, LogEntry, LogOp, WalError, encode_entry_frame, encode_segment_header};

/// Entries are cut once their keys and values reach about this many bytes.
const ENTRY_TARGET_BYTES: usize = 1 << 20;

/// A snapshot file's length before its digest is a multiple of this: etcdctl looks for the
/// digest only where `length % 512 == 32`.
pub const FILE_ALIGN: usize = 512;

/// Length of the SHA-256 digest that ends a snapshot file.
pub const FILE_DIGEST_LEN: usize = 32;

/// What a snapshot holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The revision the snapshot was taken at.
    pub revision: Revision,
    /// Number of live keys.
    pub keys: usize,
    /// Number of leases.
    pub leases: usize,
    /// Number of log entries (the last one is the seal).
    pub entries: u64,
}

/// Why bytes are not a usable snapshot.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    /// The bytes are not a well-formed segment (bad checksum, truncated frame, newer format).
    #[error("not a valid t4 snapshot: {0}")]
    Invalid(#[from] WalError),
    /// The segment is well-formed but does not end with the seal entry: it was cut short or
    /// is not a snapshot.
    #[error(
        "not a complete t4 snapshot: {0} (a snapshot ends with an entry that sets and compacts its revision)"
    )]
    Incomplete(&'static str),
    /// The file ends like one saved by `etcdctl snapshot save` (its length is 32 more than a
    /// multiple of 512) but its last 32 bytes are not the SHA-256 of the rest, and it is not a
    /// bare snapshot either: bytes changed after the server sent them.
    #[error(
        "snapshot file is damaged: its SHA-256 digest does not match its contents, and it is not a complete t4 snapshot without one ({0}); take a new snapshot"
    )]
    DigestMismatch(Box<SnapshotError>),
}

/// Encodes a snapshot frame by frame, so that it can be streamed without holding the whole
/// encoding in memory. Yields the segment header first, then one frame per entry.
#[derive(Debug)]
pub struct SnapshotEncoder {
    revision: Revision,
    leases: Vec<(LeaseId, i64)>,
    kvs: std::iter::Peekable<std::vec::IntoIter<KeyValue>>,
    next_index: u64,
    header_sent: bool,
    sealed: bool,
    auth: Option<Arc<AuthState>>,
}

impl SnapshotEncoder {
    /// A snapshot at `revision` of `kvs` (every live key at that revision, in any order) and
    /// `leases` (every lease with its granted TTL).
    pub fn new(
        revision: Revision,
        leases: Vec<(LeaseId, i64)>,
        mut kvs: Vec<KeyValue>,
    ) -> SnapshotEncoder {
        kvs.sort_by(|a, b| (a.mod_revision, &a.key).cmp(&(b.mod_revision, &b.key)));
        SnapshotEncoder {
            revision,
            leases,
            kvs: kvs.into_iter().peekable(),
            next_index: 1,
            header_sent: false,
            sealed: false,
            auth: None,
        }
    }

    /// Includes the auth state (users, roles, the enabled flag), as one entry before the
    /// leases; a default state is left out.
    pub fn with_auth(mut self, auth: Arc<AuthState>) -> SnapshotEncoder {
        self.auth = (*auth != AuthState::default()).then_some(auth);
        self
    }

    /// The revision the snapshot is taken at.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    fn entry(&mut self, ops: Vec<LogOp>) -> Vec<u8> {
        let entry = LogEntry {
            index: self.next_index,
            term: 1,
            ops,
        };
        self.next_index += 1;
        encode_entry_frame(&entry)
    }
}

impl Iterator for SnapshotEncoder {
    type Item = Vec<u8>;

    fn next(&mut self) -> Option<Vec<u8>> {
        if !self.header_sent {
            self.header_sent = true;
            return Some(encode_segment_header(1).to_vec());
        }
        if let Some(auth) = self.auth.take() {
            return Some(self.entry(vec![LogOp::Auth(auth)]));
        }
        if !self.leases.is_empty() {
            let ops = std::mem::take(&mut self.leases)
                .into_iter()
                .map(|(id, ttl)| LogOp::LeaseGrant { id, ttl })
                .collect();
            return Some(self.entry(ops));
        }
        if self.kvs.peek().is_some() {
            let mut ops: Vec<LogOp> = Vec::new();
            let mut bytes = 0;
            while bytes < ENTRY_TARGET_BYTES {
                let Some(kv) = self.kvs.next() else { break };
                bytes += kv.key.len() + kv.value.len() + 32;
                let revision = kv.mod_revision;
                let change = Change::Put { kv, prev_lease: 0 };
                match ops.last_mut() {
                    Some(LogOp::Revision {
                        revision: r,
                        changes,
                    }) if *r == revision => changes.push(change),
                    _ => ops.push(LogOp::Revision {
                        revision,
                        changes: vec![change],
                    }),
                }
            }
            // A revision's keys must stay in one op: finish the one in progress.
            if let Some(LogOp::Revision { revision, changes }) = ops.last_mut() {
                while let Some(kv) = self.kvs.next_if(|kv| kv.mod_revision == *revision) {
                    changes.push(Change::Put { kv, prev_lease: 0 });
                }
            }
            return Some(self.entry(ops));
        }
        if !self.sealed {
            self.sealed = true;
            let revision = self.revision;
            return Some(self.entry(vec![
                LogOp::Revision {
                    revision,
                    changes: Vec::new(),
                },
                LogOp::Compact { revision },
            ]));
        }
        None
    }
}

/// Checks that `bytes` are a complete, undamaged snapshot and says what it holds.
pub fn verify(bytes: &Bytes) -> Result<SnapshotInfo, SnapshotError> {
    info(&scan_segment(1, bytes, false)?)
}

/// Builds the snapshot file etcd's `Snapshot` RPC streams and `etcdctl snapshot save` stores
/// from `snapshot` (the bytes of a [`SnapshotEncoder`]): the snapshot, zeros up to a multiple
/// of [`FILE_ALIGN`] bytes, then the SHA-256 of everything before it.
pub fn encode_file(mut snapshot: Vec<u8>) -> Vec<u8> {
    snapshot.resize(snapshot.len().next_multiple_of(FILE_ALIGN), 0);
    let digest = Sha256::digest(&snapshot);
    snapshot.extend_from_slice(&digest);
    snapshot
}

/// The snapshot inside `file` and what it holds. `file` is either what [`encode_file`] built
/// (the digest is checked, then it and the padding are stripped) or a bare snapshot.
pub fn decode_file(file: &Bytes) -> Result<(Bytes, SnapshotInfo), SnapshotError> {
    let len = file.len();
    let has_digest = len % FILE_ALIGN == FILE_DIGEST_LEN && {
        let (body, digest) = file.split_at(len - FILE_DIGEST_LEN);
        Sha256::digest(body).as_slice() == digest
    };
    let body = if has_digest {
        file.slice(..len - FILE_DIGEST_LEN)
    } else {
        file.clone()
    };
    match unpad(&body) {
        Ok(found) => Ok(found),
        // The length says a digest ends the file, but it does not match: more likely a
        // damaged etcdctl file than a bare snapshot whose length happens to end that way.
        Err(e) if !has_digest && len % FILE_ALIGN == FILE_DIGEST_LEN => {
            Err(SnapshotError::DigestMismatch(Box::new(e)))
        }
        Err(e) => Err(e),
    }
}

/// The snapshot at the start of `body`, followed by fewer than [`FILE_ALIGN`] zero bytes.
fn unpad(body: &Bytes) -> Result<(Bytes, SnapshotInfo), SnapshotError> {
    // Scanned as a last WAL segment, the snapshot's frames end where the padding starts.
    let scan = scan_segment(1, body, true)?;
    let end = usize::try_from(scan.valid_len).unwrap_or(usize::MAX);
    match body.get(end..) {
        Some(padding) if padding.len() < FILE_ALIGN && padding.iter().all(|&b| b == 0) => {
            Ok((body.slice(..end), info(&scan)?))
        }
        // Not padding: say what is wrong with the bytes as a whole.
        _ => {
            verify(body)?;
            Err(SnapshotError::Incomplete("bytes follow its last entry"))
        }
    }
}

/// What the entries of a scanned snapshot hold, if they are a complete snapshot.
fn info(scan: &SegmentScan) -> Result<SnapshotInfo, SnapshotError> {
    let Some(seal) = scan.entries.last() else {
        return Err(SnapshotError::Incomplete("it holds no entry"));
    };
    let revision = match seal.ops.as_slice() {
        [
            LogOp::Revision { revision, changes },
            LogOp::Compact { revision: compact },
        ] if changes.is_empty() && revision == compact => *revision,
        _ => return Err(SnapshotError::Incomplete("its last entry is not the seal")),
    };
    let mut info = SnapshotInfo {
        revision,
        keys: 0,
        leases: 0,
        entries: scan.entries.len() as u64,
    };
    for entry in &scan.entries[..scan.entries.len() - 1] {
        for op in &entry.ops {
            match op {
                LogOp::Revision {
                    revision: r,
                    changes,
                } if *r <= revision => {
                    info.keys += changes.len();
                }
                LogOp::LeaseGrant { .. } => info.leases += 1,
                LogOp::Auth(_) => {}
                _ => return Err(SnapshotError::Incomplete("an entry holds an unexpected op")),
            }
        }
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{MemStore, ReadView, Store};
    use crate::wal::recover;

    fn kv(key: &str, create: Revision, modr: Revision, version: i64, lease: LeaseId) -> KeyValue {
        KeyValue {
            key: Bytes::from(key.to_string()),
            value: Bytes::from(format!("value of {key}")),
            create_revision: create,
            mod_revision: modr,
            version,
            lease,
        }
    }

    fn encode(enc: SnapshotEncoder) -> Bytes {
        Bytes::from(enc.flatten().collect::<Vec<u8>>())
    }

    #[test]
    fn a_snapshot_replays_into_the_same_keys_revision_and_leases() {
        let kvs = vec![
            kv("b", 3, 7, 2, 0),
            kv("a", 2, 2, 1, 42),
            kv("c", 5, 7, 1, 0),
            kv("d", 4, 9, 3, 0),
        ];
        let bytes = encode(SnapshotEncoder::new(10, vec![(42, 60)], kvs.clone()));
        let info = verify(&bytes).expect("valid snapshot");
        assert_eq!((info.revision, info.keys, info.leases), (10, 4, 1));

        let recovery = recover(&[(1, bytes)], 0).expect("recovers");
        let store = MemStore::new();
        for e in &recovery.entries {
            store.apply(e).expect("apply");
        }
        let view = store.view();
        assert_eq!(view.revision(), 10);
        assert_eq!(view.compact_revision(), 10);
        for want in &kvs {
            assert_eq!(view.get(&want.key, 10).expect("read").as_ref(), Some(want));
        }
        assert_eq!(store.leases().expect("leases"), vec![(42, 60)]);
        assert_eq!(
            store.lease_keys().expect("lease keys"),
            vec![(42, Bytes::from_static(b"a"))]
        );
    }

    #[test]
    fn a_snapshot_carries_the_auth_state() {
        let mut auth = AuthState::default();
        let add = crate::auth::AuthChange::UserAdd {
            name: "root".into(),
            password: "hash".into(),
            no_password: false,
        };
        auth.change(&add).expect("user add");
        let auth = Arc::new(auth);
        let enc = SnapshotEncoder::new(3, vec![], vec![kv("a", 2, 2, 1, 0)]);
        let bytes = encode(enc.with_auth(auth.clone()));
        assert_eq!(verify(&bytes).expect("valid snapshot").keys, 1);
        let recovery = recover(&[(1, bytes)], 0).expect("recovers");
        let store = MemStore::new();
        for e in &recovery.entries {
            store.apply(e).expect("apply");
        }
        assert_eq!(store.auth().expect("auth"), auth);
    }

    #[test]
    fn an_empty_store_snapshots_to_just_the_seal() {
        let bytes = encode(SnapshotEncoder::new(1, vec![], vec![]));
        let info = verify(&bytes).expect("valid");
        assert_eq!((info.revision, info.keys, info.entries), (1, 0, 1));
    }

    #[test]
    fn a_truncated_or_damaged_snapshot_is_refused() {
        let kvs = (0..100)
            .map(|i| kv(&format!("k{i:03}"), i + 2, i + 2, 1, 0))
            .collect();
        let bytes = encode(SnapshotEncoder::new(200, vec![], kvs));
        for cut in [0, 10, 25, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                verify(&bytes.slice(..cut)).is_err(),
                "a snapshot cut at {cut} bytes was accepted"
            );
        }
        let mut damaged = bytes.to_vec();
        let mid = damaged.len() / 2;
        damaged[mid] ^= 0x55;
        assert!(verify(&Bytes::from(damaged)).is_err());
    }

    /// A snapshot of `n` keys with `value_len`-byte values, and its bytes.
    fn snapshot_of(n: i64, value_len: usize) -> Bytes {
        let kvs = (0..n)
            .map(|i| KeyValue {
                value: Bytes::from(vec![b'v'; value_len]),
                ..kv(&format!("k{i:04}"), i + 2, i + 2, 1, 0)
            })
            .collect();
        encode(SnapshotEncoder::new(n + 2, vec![(7, 60)], kvs))
    }

    #[test]
    fn a_snapshot_file_has_the_length_etcdctl_expects_and_decodes_to_the_snapshot() {
        for (n, value_len) in [(0, 0), (1, 10), (30, 100), (500, 3000)] {
            let snapshot = snapshot_of(n, value_len);
            let file = Bytes::from(encode_file(snapshot.to_vec()));
            assert_eq!(file.len() % FILE_ALIGN, FILE_DIGEST_LEN, "etcdctl's check");
            let (body, digest) = file.split_at(file.len() - FILE_DIGEST_LEN);
            assert_eq!(Sha256::digest(body).as_slice(), digest);
            let (got, info) = decode_file(&file).expect("decodes");
            assert_eq!(got, snapshot);
            assert_eq!(info, verify(&snapshot).expect("valid"));
            // A bare snapshot is a snapshot file too.
            assert_eq!(decode_file(&snapshot).expect("bare").0, snapshot);
            // So is the padded stream of a client that stopped before the digest.
            let padded = file.slice(..file.len() - FILE_DIGEST_LEN);
            assert_eq!(decode_file(&padded).expect("padded").0, snapshot);
        }
    }

    #[test]
    fn a_snapshot_already_aligned_gets_no_padding() {
        // Find a snapshot whose length is a multiple of 512 by growing one value.
        let aligned = (0..FILE_ALIGN)
            .map(|extra| snapshot_of(3, 100 + extra))
            .find(|s| s.len() % FILE_ALIGN == 0)
            .expect("some value length aligns the snapshot");
        let file = encode_file(aligned.to_vec());
        assert_eq!(file.len(), aligned.len() + FILE_DIGEST_LEN);
        assert_eq!(decode_file(&Bytes::from(file)).expect("decodes").0, aligned);
    }

    #[test]
    fn a_bare_snapshot_whose_length_looks_like_a_file_is_still_accepted() {
        let bare = (0..FILE_ALIGN)
            .map(|extra| snapshot_of(3, 100 + extra))
            .find(|s| s.len() % FILE_ALIGN == FILE_DIGEST_LEN)
            .expect("some value length gives 32 mod 512");
        assert_eq!(decode_file(&bare).expect("bare").0, bare);
    }

    #[test]
    fn a_damaged_snapshot_file_is_refused_with_the_digest_error() {
        let file = encode_file(snapshot_of(3, 100).to_vec());
        let mut damaged = file.clone();
        damaged[40] ^= 0x01;
        let e = decode_file(&Bytes::from(damaged)).expect_err("refused");
        assert!(matches!(e, SnapshotError::DigestMismatch(_)), "{e}");
        assert!(
            e.to_string().contains("SHA-256 digest does not match"),
            "{e}"
        );
    }

    #[test]
    fn non_zero_bytes_after_a_snapshot_are_refused() {
        let mut body = snapshot_of(3, 100).to_vec();
        body.extend_from_slice(b"junk");
        assert!(decode_file(&Bytes::from(body.clone())).is_err());
        // Even under a matching digest: the body is not a snapshot and padding.
        let mut file = body;
        file.resize(file.len().next_multiple_of(FILE_ALIGN), 0);
        let digest = Sha256::digest(&file);
        file.extend_from_slice(&digest);
        assert!(decode_file(&Bytes::from(file)).is_err());
        // Nor is a whole sector of zeros padding.
        let mut long = snapshot_of(3, 100).to_vec();
        long.extend_from_slice(&[0; FILE_ALIGN]);
        assert!(decode_file(&Bytes::from(long)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_flipped_byte_of_a_snapshot_file_is_refused(
            n in 0i64..40,
            value_len in 0usize..300,
            at in proptest::prelude::any::<proptest::sample::Index>(),
            bit in 0u8..8,
        ) {
            let snapshot = snapshot_of(n, value_len);
            let file = encode_file(snapshot.to_vec());
            let (got, _) = decode_file(&Bytes::from(file.clone())).expect("decodes");
            proptest::prop_assert_eq!(&got, &snapshot);
            let mut damaged = file;
            let i = at.index(damaged.len());
            damaged[i] ^= 1 << bit;
            let refused = decode_file(&Bytes::from(damaged));
            proptest::prop_assert!(
                matches!(refused, Err(SnapshotError::DigestMismatch(_))),
                "flipping bit {} of byte {} gave {:?}", bit, i, refused.map(|(_, info)| info)
            );
        }
    }

    #[test]
    fn big_revisions_stay_in_one_op_across_entry_cuts() {
        // 3 MiB of keys all written at one revision: one op, even though entries are cut at 1 MiB.
        let kvs: Vec<KeyValue> = (0..3)
            .map(|i| KeyValue {
                value: Bytes::from(vec![b'x'; 1 << 20]),
                ..kv(&format!("k{i}"), 2, 2, 1, 0)
            })
            .collect();
        let bytes = encode(SnapshotEncoder::new(2, vec![], kvs));
        let scan = scan_segment(1, &bytes, false).expect("valid");
        let revision_ops: Vec<usize> = scan
            .entries
            .iter()
            .flat_map(|e| &e.ops)
            .filter_map(|op| match op {
                LogOp::Revision { changes, .. } if !changes.is_empty() => Some(changes.len()),
                _ => None,
            })
            .collect();
        assert_eq!(revision_ops, vec![3]);
    }
}
