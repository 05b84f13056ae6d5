//! Log entries: the resolved effects of one group-committed batch.
//!
//! An entry records *results*, never requests: a put carries the key's new create revision,
//! version and lease, a txn is already reduced to the changes it made. Replaying an entry (on
//! recovery, on a follower, from the bucket) is therefore a plain write that never
//! re-evaluates a compare.

use std::sync::Arc;

use bytes::Bytes;

use crate::auth::AuthState;
use crate::kv::{KeyValue, LeaseId, Revision};

/// Version of the entry encoding, the first byte of every payload.
pub const ENTRY_FORMAT_VERSION: u8 = 1;

/// The resolved effects of one batch, at one position of the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogEntry {
    /// Position in the log, starting at 1 and gap-free.
    pub index: u64,
    /// The writer term that produced the entry (1 for a single node).
    pub term: u64,
    /// The operations, in the order they were decided.
    pub ops: Vec<LogOp>,
}

impl LogEntry {
    /// The highest revision this entry writes, if it writes any.
    pub fn last_revision(&self) -> Option<Revision> {
        self.ops.iter().rev().find_map(|op| match op {
            LogOp::Revision { revision, .. } => Some(*revision),
            _ => None,
        })
    }
}

/// One decided operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogOp {
    /// Every change made at one revision (one put, one delete range, one txn, or a lease
    /// revocation's deletions).
    Revision {
        /// The revision.
        revision: Revision,
        /// The changes, one per key.
        changes: Vec<Change>,
    },
    /// A lease was granted.
    LeaseGrant {
        /// The lease.
        id: LeaseId,
        /// Its TTL in seconds.
        ttl: i64,
    },
    /// A lease was revoked (its keys are deleted by a preceding `Revision` op).
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// History below `revision` was compacted (this does not consume a revision).
    Compact {
        /// The new compact revision.
        revision: Revision,
    },
    /// The auth state changed; this is the whole new state (it does not consume a
    /// revision).
    Auth(Arc<AuthState>),
}

/// One key's change at a revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The key now holds `kv` (whose `mod_revision` is the op's revision).
    Put {
        /// The new state of the key.
        kv: KeyValue,
        /// The lease the key was attached to before, or 0.
        prev_lease: LeaseId,
    },
    /// The key was deleted.
    Delete {
        /// The key.
        key: Bytes,
        /// The lease the key was attached to before, or 0.
        prev_lease: LeaseId,
    },
}

impl Change {
    /// The key changed.
    pub fn key(&self) -> &Bytes {
        match self {
            Change::Put { kv, .. } => &kv.key,
            Change::Delete { key, .. } => key,
        }
    }
}

/// Why an entry payload could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended early.
    #[error("entry payload is truncated")]
    Truncated,
    /// The payload was written by a newer t4.
    #[error("entry format version {0} is newer than this binary supports ({ENTRY_FORMAT_VERSION})")]
    NewerFormat(u8),
    /// An unknown tag.
    #[error("unknown {what} tag {tag}")]
    UnknownTag {
        /// What was being decoded.
        what: &'static str,
        /// The tag found.
        tag: u8,
    },
    /// An auth state that does not decode.
    #[error("{0}")]
    Auth(String),
    /// Bytes left over after the entry.
    #[error("{0} trailing bytes after the entry")]
    Trailing(usize),
}

const OP_REVISION: u8 = 1;
const OP_LEASE_GRANT: u8 = 2;
const OP_LEASE_REVOKE: u8 = 3;
const OP_COMPACT: u8 = 4;
const OP_AUTH: u8 = 5;
const CHANGE_PUT: u8 = 1;
const CHANGE_DELETE: u8 = 2;

/// The number of bytes [`encode_entry`] appends for `entry`, so that the buffer can be
/// allocated once (a group-commit entry is tens of kilobytes).
pub fn encoded_len(entry: &LogEntry) -> usize {
    const HEADER: usize = 1 + 8 + 8 + 4;
    let op_len = |op: &LogOp| match op {
        LogOp::Revision { changes, .. } => {
            1 + 8
                + 4
                + changes
                    .iter()
                    .map(|change| match change {
                        Change::Put { kv, .. } => {
                            1 + 4 + kv.key.len() + 8 + 4 + kv.value.len() + 32
                        }
                        Change::Delete { key, .. } => 1 + 4 + key.len() + 8,
                    })
                    .sum::<usize>()
        }
        LogOp::LeaseGrant { .. } => 1 + 16,
        LogOp::LeaseRevoke { .. } | LogOp::Compact { .. } => 1 + 8,
        LogOp::Auth(state) => 1 + 4 + state.encode().len(),
    };
    HEADER + entry.ops.iter().map(op_len).sum::<usize>()
}

/// Appends the encoding of `entry` to `out`.
pub fn encode_entry(entry: &LogEntry, out: &mut Vec<u8>) {
    out.push(ENTRY_FORMAT_VERSION);
    out.extend_from_slice(&entry.index.to_le_bytes());
    out.extend_from_slice(&entry.term.to_le_bytes());
    put_u32(out, entry.ops.len());
    for op in &entry.ops {
        match op {
            LogOp::Revision { revision, changes } => {
                out.push(OP_REVISION);
                out.extend_from_slice(&revision.to_le_bytes());
                put_u32(out, changes.len());
                for change in changes {
                    match change {
                        Change::Put { kv, prev_lease } => {
                            out.push(CHANGE_PUT);
                            put_bytes(out, &kv.key);
                            out.extend_from_slice(&prev_lease.to_le_bytes());
                            put_bytes(out, &kv.value);
                            out.extend_from_slice(&kv.create_revision.to_le_bytes());
                            out.extend_from_slice(&kv.mod_revision.to_le_bytes());
                            out.extend_from_slice(&kv.version.to_le_bytes());
                            out.extend_from_slice(&kv.lease.to_le_bytes());
                        }
                        Change::Delete { key, prev_lease } => {
                            out.push(CHANGE_DELETE);
                            put_bytes(out, key);
                            out.extend_from_slice(&prev_lease.to_le_bytes());
                        }
                    }
                }
            }
            LogOp::LeaseGrant { id, ttl } => {
                out.push(OP_LEASE_GRANT);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&ttl.to_le_bytes());
            }
            LogOp::LeaseRevoke { id } => {
                out.push(OP_LEASE_REVOKE);
                out.extend_from_slice(&id.to_le_bytes());
            }
            LogOp::Compact { revision } => {
                out.push(OP_COMPACT);
                out.extend_from_slice(&revision.to_le_bytes());
            }
            LogOp::Auth(state) => {
                out.push(OP_AUTH);
                put_bytes(out, &state.encode());
            }
        }
    }
}

/// Decodes an entry encoded by [`encode_entry`]. `payload` is shared, so keys and values of the
/// result point into it without copying.
pub fn decode_entry(payload: &Bytes) -> Result<LogEntry, DecodeError> {
    let mut r = Reader {
        buf: payload,
        pos: 0,
    };
    let version = r.u8()?;
    if version > ENTRY_FORMAT_VERSION {
        return Err(DecodeError::NewerFormat(version));
    }
    let index = r.u64()?;
    let term = r.u64()?;
    let op_count = r.u32()?;
    let mut ops = Vec::with_capacity(op_count.min(1024));
    for _ in 0..op_count {
        let op = match r.u8()? {
            OP_REVISION => {
                let revision = r.i64()?;
                let change_count = r.u32()?;
                let mut changes = Vec::with_capacity(change_count.min(1024));
                for _ in 0..change_count {
                    changes.push(match r.u8()? {
                        CHANGE_PUT => {
                            let key = r.bytes()?;
                            let prev_lease = r.i64()?;
                            let value = r.bytes()?;
                            let kv = KeyValue {
                                key,
                                value,
                                create_revision: r.i64()?,
                                mod_revision: r.i64()?,
                                version: r.i64()?,
                                lease: r.i64()?,
                            };
                            Change::Put { kv, prev_lease }
                        }
                        CHANGE_DELETE => Change::Delete {
                            key: r.bytes()?,
                            prev_lease: r.i64()?,
                        },
                        tag => {
                            return Err(DecodeError::UnknownTag {
                                what: "change",
                                tag,
                            });
                        }
                    });
                }
                LogOp::Revision { revision, changes }
            }
            OP_LEASE_GRANT => LogOp::LeaseGrant {
                id: r.i64()?,
                ttl: r.i64()?,
            },
            OP_LEASE_REVOKE => LogOp::LeaseRevoke { id: r.i64()? },
            OP_COMPACT => LogOp::Compact { revision: r.i64()? },
            OP_AUTH => {
                let state = AuthState::decode(&r.bytes()?).map_err(DecodeError::Auth)?;
                LogOp::Auth(Arc::new(state))
            }
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "operation",
                    tag,
                });
            }
        };
        ops.push(op);
    }
    if r.pos != payload.len() {
        return Err(DecodeError::Trailing(payload.len() - r.pos));
    }
    Ok(LogEntry { index, term, ops })
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("lengths are bounded by the request size limit");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_u32(out, b.len());
    out.extend_from_slice(b);
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        Ok(s.try_into().expect("take returned N bytes"))
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?) as usize)
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn bytes(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()?;
        let start = self.pos;
        self.take(len)?;
        Ok(self.buf.slice(start..start + len))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_kv() -> impl Strategy<Value = KeyValue> {
        (
            proptest::collection::vec(any::<u8>(), 1..8),
            proptest::collection::vec(any::<u8>(), 0..16),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
            any::<i64>(),
        )
            .prop_map(|(k, v, c, m, ver, l)| KeyValue {
                key: k.into(),
                value: v.into(),
                create_revision: c,
                mod_revision: m,
                version: ver,
                lease: l,
            })
    }

    fn arb_change() -> impl Strategy<Value = Change> {
        prop_oneof![
            (arb_kv(), any::<i64>()).prop_map(|(kv, prev_lease)| Change::Put { kv, prev_lease }),
            (proptest::collection::vec(any::<u8>(), 1..8), any::<i64>()).prop_map(
                |(k, prev_lease)| Change::Delete {
                    key: k.into(),
                    prev_lease
                }
            ),
        ]
    }

    pub(crate) fn arb_entry() -> impl Strategy<Value = LogEntry> {
        let op = prop_oneof![
            (any::<i64>(), proptest::collection::vec(arb_change(), 0..4))
                .prop_map(|(revision, changes)| LogOp::Revision { revision, changes }),
            (any::<i64>(), any::<i64>()).prop_map(|(id, ttl)| LogOp::LeaseGrant { id, ttl }),
            any::<i64>().prop_map(|id| LogOp::LeaseRevoke { id }),
            any::<i64>().prop_map(|revision| LogOp::Compact { revision }),
            (any::<bool>(), any::<u64>(), "[a-z]{0,4}").prop_map(|(enabled, revision, name)| {
                let mut state = crate::auth::AuthState {
                    enabled,
                    revision,
                    ..Default::default()
                };
                state.users.insert(name, crate::auth::User::default());
                LogOp::Auth(std::sync::Arc::new(state))
            }),
        ];
        (
            any::<u64>(),
            any::<u64>(),
            proptest::collection::vec(op, 0..6),
        )
            .prop_map(|(index, term, ops)| LogEntry { index, term, ops })
    }

    proptest! {
        #[test]
        fn entries_round_trip(entry in arb_entry()) {
            let mut buf = Vec::new();
            encode_entry(&entry, &mut buf);
            prop_assert_eq!(buf.len(), encoded_len(&entry));
            prop_assert_eq!(decode_entry(&Bytes::from(buf)).unwrap(), entry);
        }

        #[test]
        fn truncated_entries_are_rejected_not_misread(entry in arb_entry(), cut in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode_entry(&entry, &mut buf);
            let cut = cut.index(buf.len());
            let short = Bytes::from(buf[..cut].to_vec());
            prop_assert!(decode_entry(&short).is_err());
        }
    }

    #[test]
    fn a_newer_entry_format_is_refused() {
        let mut buf = Vec::new();
        encode_entry(
            &LogEntry {
                index: 1,
                term: 1,
                ops: vec![],
            },
            &mut buf,
        );
        buf[0] = ENTRY_FORMAT_VERSION + 1;
        assert_eq!(
            decode_entry(&Bytes::from(buf)),
            Err(DecodeError::NewerFormat(ENTRY_FORMAT_VERSION + 1))
        );
    }
}
