//! The on-disk format of the fjall store: every key and value encoding, defined once.
//!
//! Integers in keys are big-endian with the sign bit flipped, so that byte order is numeric
//! order for every `i64` (revisions and lease ids are positive in practice; the flip makes
//! the encoding total rather than trusting that).
//!
//! `history` keys must sort by user key, then revision. User keys are arbitrary bytes, and
//! a raw key followed by a revision would not sort that way (`"a" ++ rev` vs `"a\0" ++ rev`
//! interleave), so the user key is escaped first: `0x00` becomes `0x00 0xff` and the key ends
//! with the terminator `0x00 0x01`. The escaped form preserves order, and no escaped key is
//! a prefix of another, so the revision that follows never decides between two keys.

use bytes::{Buf, Bytes};
use t4_core::{KeyValue, LeaseId, Revision};

/// Version of this format, stored in `meta` when a store is created. A store written by a
/// newer t4 (a higher number) is refused, never misread; one of an older version is
/// upgraded when it is opened.
///
/// * 1: one `revlog` record per change.
/// * 2: `changes` records holding a run of changes each (one per applied entry, mostly).
pub(crate) const FORMAT_VERSION: u32 = 2;

/// `meta` key of the format version (`u32` big-endian).
pub(crate) const FORMAT_KEY: &[u8] = b"format_version";
/// `meta` key of the [`State`] record.
pub(crate) const STATE_KEY: &[u8] = b"state";
/// `meta` key of the auth state ([`t4_core::auth::AuthState::encode`]); absent until the
/// first auth change.
pub(crate) const AUTH_KEY: &[u8] = b"auth";

const SIGN: u64 = 1 << 63;

/// Order-preserving encoding of an `i64` (a revision or a lease id).
pub(crate) fn encode_i64(n: i64) -> [u8; 8] {
    ((n as u64) ^ SIGN).to_be_bytes()
}

/// Inverse of [`encode_i64`].
pub(crate) fn decode_i64(b: [u8; 8]) -> i64 {
    (u64::from_be_bytes(b) ^ SIGN) as i64
}

fn array<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    b.try_into().ok()
}

// ---------------------------------------------------------------------------------------
// history: escaped key ++ terminator ++ revision

const ESCAPE: u8 = 0xff;
const TERMINATOR: u8 = 0x01;

/// Appends the escaped form of `key`, terminator included.
pub(crate) fn escape_into(key: &[u8], out: &mut Vec<u8>) {
    for &byte in key {
        out.push(byte);
        if byte == 0 {
            out.push(ESCAPE);
        }
    }
    out.extend_from_slice(&[0, TERMINATOR]);
}

/// The escaped form of `key`, terminator included: every history key of `key` starts with
/// it, and it sorts before all of them and after every history key of a smaller key.
pub(crate) fn escaped(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2 + 8);
    escape_into(key, &mut out);
    out
}

/// The user key of an escaped key (terminator included), or `None` if it is malformed.
pub(crate) fn unescape(escaped: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(escaped.len().saturating_sub(2));
    let mut bytes = escaped.iter();
    while let Some(&byte) = bytes.next() {
        if byte != 0 {
            out.push(byte);
            continue;
        }
        match bytes.next() {
            Some(&ESCAPE) => out.push(0),
            Some(&TERMINATOR) if bytes.as_slice().is_empty() => return Some(out),
            _ => return None,
        }
    }
    None
}

/// The `history` key of `key` at `revision`.
pub(crate) fn history_key(key: &[u8], revision: Revision) -> Vec<u8> {
    let mut out = escaped(key);
    out.extend_from_slice(&encode_i64(revision));
    out
}

/// Splits a `history` key into its escaped user key (terminator included) and revision.
pub(crate) fn split_history_key(key: &[u8]) -> Option<(&[u8], Revision)> {
    let split = key.len().checked_sub(8)?;
    let (escaped, revision) = key.split_at(split);
    Some((escaped, decode_i64(array(revision)?)))
}

// ---------------------------------------------------------------------------------------
// Versions: the values of `latest` and `history`

const TAG_PUT: u8 = 1;
const TAG_TOMBSTONE: u8 = 2;
const PUT_HEADER: usize = 1 + 4 * 8;

/// Encodes a key's state at a revision, without the key itself (it is in the store key).
pub(crate) fn encode_version(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(PUT_HEADER + kv.value.len());
    out.push(TAG_PUT);
    out.extend_from_slice(&kv.create_revision.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.to_be_bytes());
    out.extend_from_slice(&kv.version.to_be_bytes());
    out.extend_from_slice(&kv.lease.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

/// The `history` value of a deletion.
pub(crate) const TOMBSTONE: &[u8] = &[TAG_TOMBSTONE];

/// Whether a version is a deletion.
pub(crate) fn is_tombstone(version: &[u8]) -> bool {
    version.first() == Some(&TAG_TOMBSTONE)
}

/// The mod revision of a put's version, read from its header alone; `None` for a deletion
/// or a malformed version.
pub(crate) fn version_mod_revision(version: &[u8]) -> Option<Revision> {
    match version.first() {
        Some(&TAG_PUT) if version.len() >= PUT_HEADER => Some(put_field(version, 1)),
        _ => None,
    }
}

/// Field `i` of a put's header (create revision, mod revision, version, lease); the caller
/// checked that the header is whole.
fn put_field(version: &[u8], i: usize) -> i64 {
    let at = 1 + 8 * i;
    i64::from_be_bytes(array(&version[at..at + 8]).expect("8 bytes"))
}

/// Decodes a version of `key`: `Ok(None)` for a deletion. The value shares `version`'s
/// memory.
pub(crate) fn decode_version(key: Bytes, version: Bytes) -> Result<Option<KeyValue>, String> {
    match version.first() {
        Some(&TAG_TOMBSTONE) if version.len() == 1 => Ok(None),
        Some(&TAG_PUT) if version.len() >= PUT_HEADER => {
            let field = |i| put_field(&version, i);
            let (create_revision, mod_revision, kv_version, lease) =
                (field(0), field(1), field(2), field(3));
            // Advancing takes the value without touching the shared reference count, which
            // `slice` would (a point get pays for every atomic on a cold cache line).
            let mut value = version;
            value.advance(PUT_HEADER);
            Ok(Some(KeyValue {
                create_revision,
                mod_revision,
                version: kv_version,
                lease,
                value,
                key,
            }))
        }
        _ => Err(format!("malformed version of key {key:?}")),
    }
}

// ---------------------------------------------------------------------------------------
// changes: revision ++ index of the record's first change in its revision -> the changes
//
// A record holds a run of consecutive changes, in revision order and, within a revision,
// in the order of the revision's changes: for each, the revision (8 bytes, as
// `encode_i64`), the kind (`TAG_PUT` or `TAG_TOMBSTONE`), the user key's length (`u16`
// big-endian; keys are at most `MAX_KEY_LEN` bytes) and the user key. An apply writes one
// record per entry, cut into several when it is large, so a put costs one insert into
// `history` and `latest` but only a share of one into `changes`.

/// The `changes` key of a record whose first change is the `index`-th at `revision`.
pub(crate) fn changes_key(revision: Revision, index: u32) -> [u8; 12] {
    let mut out = [0; 12];
    out[..8].copy_from_slice(&encode_i64(revision));
    out[8..].copy_from_slice(&index.to_be_bytes());
    out
}

/// The revision of the first change of a `changes` record, from its key.
pub(crate) fn changes_key_revision(key: &[u8]) -> Option<Revision> {
    if key.len() != 12 {
        return None;
    }
    Some(decode_i64(array(&key[..8])?))
}

/// Appends one change to a `changes` record; `key` is at most `u16::MAX` bytes (the store
/// refuses longer keys before it gets here).
pub(crate) fn push_change(record: &mut Vec<u8>, revision: Revision, tombstone: bool, key: &[u8]) {
    let len = u16::try_from(key.len()).expect("keys are at most MAX_KEY_LEN bytes");
    record.extend_from_slice(&encode_i64(revision));
    record.push(if tombstone { TAG_TOMBSTONE } else { TAG_PUT });
    record.extend_from_slice(&len.to_be_bytes());
    record.extend_from_slice(key);
}

/// One change read from a `changes` record; the key shares the record's memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChangeRecord {
    pub(crate) revision: Revision,
    pub(crate) tombstone: bool,
    pub(crate) key: Bytes,
}

/// The changes of a `changes` record, in order; `None` if it is malformed.
pub(crate) fn decode_changes(record: Bytes) -> Option<Vec<ChangeRecord>> {
    const HEADER: usize = 8 + 1 + 2;
    let mut out = Vec::new();
    let mut at = 0;
    while at < record.len() {
        let header = record.get(at..at + HEADER)?;
        let revision = decode_i64(array(&header[..8])?);
        let tombstone = match header[8] {
            TAG_PUT => false,
            TAG_TOMBSTONE => true,
            _ => return None,
        };
        let len = usize::from(u16::from_be_bytes(array(&header[9..])?));
        let end = (at + HEADER).checked_add(len)?;
        if end > record.len() {
            return None;
        }
        out.push(ChangeRecord {
            revision,
            tombstone,
            key: record.slice(at + HEADER..end),
        });
        at = end;
    }
    Some(out)
}

/// Decodes a format-1 `revlog` value into (is a deletion, user key), for the upgrade to
/// `changes` records (the `revlog` key is a `changes_key` of that one change).
pub(crate) fn decode_revlog_value(value: Bytes) -> Option<(bool, Bytes)> {
    let tombstone = match *value.first()? {
        TAG_PUT => false,
        TAG_TOMBSTONE => true,
        _ => return None,
    };
    Some((tombstone, value.slice(1..)))
}

// ---------------------------------------------------------------------------------------
// leases and lease_keys

/// The `lease_keys` key of `key` attached to `lease`.
pub(crate) fn lease_key(lease: LeaseId, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len());
    out.extend_from_slice(&encode_i64(lease));
    out.extend_from_slice(key);
    out
}

/// Splits a `lease_keys` key into lease and user key.
pub(crate) fn split_lease_key(key: Bytes) -> Option<(LeaseId, Bytes)> {
    let lease = decode_i64(array(key.get(..8)?)?);
    Some((lease, key.slice(8..)))
}

/// Decodes a lease id key of `leases`.
pub(crate) fn decode_lease_id(key: &[u8]) -> Option<LeaseId> {
    Some(decode_i64(array(key)?))
}

// ---------------------------------------------------------------------------------------
// meta: the state record

/// What the store has applied and compacted, stored under [`STATE_KEY`] in the same write
/// batch as every entry, so that it always matches the data beside it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct State {
    /// Index of the last applied entry.
    pub applied_index: u64,
    /// The store revision.
    pub revision: Revision,
    /// The logical compact revision (from `LogOp::Compact`).
    pub compact_revision: Revision,
    /// The revision a physical compaction has started to remove history below; reads below
    /// it are refused from the moment the first version may be gone.
    pub compacting: Revision,
    /// History below this is gone: every deletion of a physical compaction to it is done.
    pub physically_compacted: Revision,
    /// The first revision whose events the revision log holds once a checkpoint was loaded
    /// (a checkpoint holds the state at its revision, not that revision's events); 0
    /// otherwise. Encoded only when non-zero, so other stores' records are unchanged.
    pub events_from: Revision,
}

impl Default for State {
    fn default() -> State {
        State {
            applied_index: 0,
            revision: 1,
            compact_revision: 0,
            compacting: 0,
            physically_compacted: 0,
            events_from: 0,
        }
    }
}

/// The record without `events_from`, and with it.
const STATE_LEN: usize = 5 * 8;
const STATE_LEN_LOADED: usize = 6 * 8;

impl State {
    /// Reads below this revision fail with `Compacted`.
    pub fn floor(&self) -> Revision {
        self.compacting.max(self.physically_compacted)
    }

    /// Encodes the record.
    pub fn encode(&self) -> Vec<u8> {
        let len = if self.events_from == 0 {
            STATE_LEN
        } else {
            STATE_LEN_LOADED
        };
        let mut out = vec![0; len];
        out[..8].copy_from_slice(&self.applied_index.to_be_bytes());
        if self.events_from != 0 {
            out[STATE_LEN..].copy_from_slice(&self.events_from.to_be_bytes());
        }
        for (i, n) in [
            self.revision,
            self.compact_revision,
            self.compacting,
            self.physically_compacted,
        ]
        .into_iter()
        .enumerate()
        {
            out[8 + 8 * i..16 + 8 * i].copy_from_slice(&n.to_be_bytes());
        }
        out
    }

    /// Decodes a record written by [`State::encode`].
    pub fn decode(b: &[u8]) -> Option<State> {
        if b.len() != STATE_LEN && b.len() != STATE_LEN_LOADED {
            return None;
        }
        let field = |i: usize| array(&b[8 * i..8 * i + 8]);
        Some(State {
            applied_index: u64::from_be_bytes(field(0)?),
            revision: i64::from_be_bytes(field(1)?),
            compact_revision: i64::from_be_bytes(field(2)?),
            compacting: i64::from_be_bytes(field(3)?),
            physically_compacted: i64::from_be_bytes(field(4)?),
            events_from: match b.len() {
                STATE_LEN_LOADED => i64::from_be_bytes(field(5)?),
                _ => 0,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_key() -> impl Strategy<Value = Vec<u8>> {
        // Bytes biased towards 0x00, 0x01 and 0xff, where escaping can go wrong.
        let byte = prop_oneof![Just(0u8), Just(1u8), Just(0xffu8), Just(b'a'), any::<u8>()];
        proptest::collection::vec(byte, 0..8)
    }

    proptest! {
        #[test]
        fn escaping_round_trips(key in arb_key()) {
            prop_assert_eq!(unescape(&escaped(&key)), Some(key));
        }

        #[test]
        fn escaping_preserves_key_order(a in arb_key(), b in arb_key()) {
            prop_assert_eq!(escaped(&a).cmp(&escaped(&b)), a.cmp(&b));
        }

        #[test]
        fn history_keys_sort_by_key_then_revision(
            a in arb_key(), ra in any::<i64>(), b in arb_key(), rb in any::<i64>()
        ) {
            prop_assert_eq!(
                history_key(&a, ra).cmp(&history_key(&b, rb)),
                (&a, ra).cmp(&(&b, rb))
            );
            let hk = history_key(&a, ra);
            let (esc, rev) = split_history_key(&hk).unwrap();
            prop_assert_eq!(rev, ra);
            prop_assert_eq!(unescape(esc), Some(a.clone()));
        }

        #[test]
        fn history_bounds_of_a_key_range_bracket_exactly_its_keys(
            k in arb_key(), r in any::<i64>(), start in arb_key(), end in arb_key()
        ) {
            // A scan of [start, end) reads history from escaped(start) to escaped(end).
            let hk = history_key(&k, r);
            let inside = hk >= escaped(&start) && hk < escaped(&end);
            prop_assert_eq!(inside, k >= start && k < end);
        }

        #[test]
        fn i64_encoding_preserves_order(a in any::<i64>(), b in any::<i64>()) {
            prop_assert_eq!(encode_i64(a).cmp(&encode_i64(b)), a.cmp(&b));
            prop_assert_eq!(decode_i64(encode_i64(a)), a);
        }

        #[test]
        fn changes_keys_sort_by_revision_then_index(
            ra in any::<i64>(), ia in any::<u32>(), rb in any::<i64>(), ib in any::<u32>()
        ) {
            prop_assert_eq!(changes_key(ra, ia).cmp(&changes_key(rb, ib)), (ra, ia).cmp(&(rb, ib)));
            prop_assert_eq!(changes_key_revision(&changes_key(ra, ia)), Some(ra));
        }

        #[test]
        fn changes_records_round_trip(
            changes in proptest::collection::vec((any::<i64>(), any::<bool>(), arb_key()), 0..8)
        ) {
            let mut record = Vec::new();
            for (revision, tombstone, key) in &changes {
                push_change(&mut record, *revision, *tombstone, key);
            }
            let expected: Vec<ChangeRecord> = changes
                .into_iter()
                .map(|(revision, tombstone, key)| ChangeRecord { revision, tombstone, key: key.into() })
                .collect();
            let record = Bytes::from(record);
            prop_assert_eq!(decode_changes(record.clone()), Some(expected));
            // Short of its last byte, a record is refused rather than misread.
            if !record.is_empty() {
                prop_assert_eq!(decode_changes(record.slice(..record.len() - 1)), None);
            }
        }

        #[test]
        fn versions_round_trip(
            key in arb_key(), value in proptest::collection::vec(any::<u8>(), 0..16),
            create in any::<i64>(), modr in any::<i64>(), version in any::<i64>(), lease in any::<i64>()
        ) {
            let kv = KeyValue {
                key: key.into(),
                value: value.into(),
                create_revision: create,
                mod_revision: modr,
                version,
                lease,
            };
            let enc = Bytes::from(encode_version(&kv));
            prop_assert!(!is_tombstone(&enc));
            prop_assert_eq!(version_mod_revision(&enc), Some(modr));
            prop_assert_eq!(version_mod_revision(TOMBSTONE), None);
            prop_assert_eq!(decode_version(kv.key.clone(), enc), Ok(Some(kv)));
        }

        #[test]
        fn lease_keys_round_trip(key in arb_key(), lease in any::<i64>()) {
            let lk = Bytes::from(lease_key(lease, &key));
            prop_assert_eq!(split_lease_key(lk), Some((lease, Bytes::from(key))));
        }

        #[test]
        fn state_round_trips(
            applied_index in any::<u64>(), revision in any::<i64>(), compact_revision in any::<i64>(),
            compacting in any::<i64>(), physically_compacted in any::<i64>(),
            events_from in any::<i64>()
        ) {
            let s = State {
                applied_index, revision, compact_revision, compacting, physically_compacted, events_from,
            };
            prop_assert_eq!(State::decode(&s.encode()), Some(s));
        }
    }

    #[test]
    fn tombstones_decode_as_absent() {
        assert!(is_tombstone(TOMBSTONE));
        assert_eq!(
            decode_version(Bytes::from_static(b"k"), Bytes::from_static(TOMBSTONE)),
            Ok(None)
        );
        assert!(decode_version(Bytes::from_static(b"k"), Bytes::from_static(&[9])).is_err());
        assert!(
            decode_version(Bytes::from_static(b"k"), Bytes::from_static(&[TAG_PUT, 0])).is_err()
        );
    }

    #[test]
    fn format_1_revlog_values_decode() {
        let put = Bytes::from_static(&[TAG_PUT, b'k']);
        assert_eq!(
            decode_revlog_value(put),
            Some((false, Bytes::from_static(b"k")))
        );
        let delete = Bytes::from_static(&[TAG_TOMBSTONE, b'k']);
        assert_eq!(
            decode_revlog_value(delete),
            Some((true, Bytes::from_static(b"k")))
        );
        assert_eq!(decode_revlog_value(Bytes::from_static(&[9, b'k'])), None);
        assert_eq!(decode_revlog_value(Bytes::new()), None);
    }

    #[test]
    fn malformed_escapes_are_refused() {
        assert_eq!(unescape(b"a"), None, "no terminator");
        assert_eq!(unescape(b"a\0\x01b"), None, "bytes after the terminator");
        assert_eq!(unescape(b"a\0\x02"), None, "unknown escape");
        assert_eq!(unescape(b"a\0\xff\0\x01"), Some(b"a\0".to_vec()));
    }
}
