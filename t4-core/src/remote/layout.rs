//! Object names and the records kept in the bucket: the one definition of the layout in
//! `docs/object-store-layout.md`.
//!
//! Every number in a name is zero-padded to 20 decimal digits, so lexicographic order is
//! numeric order. Records updated in place (`writer`, `manifest`) carry a `generation` that
//! grows with every write, so their bytes, and therefore their ETags, always change.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::auth::AuthState;
use crate::checkpoint::{FileKind, FileRef};
use crate::kv::{LeaseId, Revision};
use crate::wal::segment::scan_segment;
use crate::wal::{
    LogEntry, decode_entry, encode_entry_frame, encode_segment_header, frame::FrameRead, read_frame,
};

/// Version of the JSON records written by this binary; a newer one is refused.
pub const RECORD_FORMAT: u32 = 1;

/// The writer record's key.
pub const WRITER: &str = "writer";
/// The manifest's key.
pub const MANIFEST: &str = "manifest";
/// Prefix of tail objects.
pub const WAL_PREFIX: &str = "wal/";

/// The tail object whose first entry has index `first`.
pub fn wal_key(first: u64) -> String {
    format!("{WAL_PREFIX}{first:020}")
}

/// The index a tail object's key names, if it is one.
pub fn parse_wal_key(key: &str) -> Option<u64> {
    let digits = key.strip_prefix(WAL_PREFIX)?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The merged segment holding entries `first..=last`.
pub fn seg_key(first: u64, last: u64) -> String {
    format!("seg/{first:020}-{last:020}")
}

/// The checkpoint index record at log index `index` and store revision `revision`.
pub fn ckp_key(index: u64, revision: Revision) -> String {
    format!("ckp/{index:020}-{revision:020}")
}

/// The content-addressed checkpoint data file named by its SHA-256 (lower-case hex).
pub fn data_key(sha256_hex: &str) -> String {
    format!("data/{sha256_hex}")
}

/// Why an object's contents are unusable. Always names the object.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("object {key} is corrupt: {reason}")]
pub struct CorruptObject {
    /// The object's key (relative to the prefix).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

fn corrupt(key: &str, reason: impl ToString) -> CorruptObject {
    CorruptObject {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// `P/writer`: who writes the prefix, in which term.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriterRecord {
    /// Record format version.
    pub format: u32,
    /// The writer term; each start-up increments it.
    pub term: u64,
    /// The node holding the prefix.
    pub node_id: String,
    /// Grows with every write of the record.
    pub generation: u64,
}

/// A segment listed in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentRef {
    /// Index of its first entry.
    pub first: u64,
    /// Index of its last entry.
    pub last: u64,
}

/// A checkpoint listed in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CheckpointRef {
    /// The last log index it covers.
    pub index: u64,
    /// Its store revision.
    pub revision: Revision,
}

impl CheckpointRef {
    /// Its index record's key.
    pub fn key(&self) -> String {
        ckp_key(self.index, self.revision)
    }
}

/// `P/manifest`: the sealed part of the log and the retained checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Record format version.
    pub format: u32,
    /// Grows with every write of the manifest.
    pub generation: u64,
    /// Term of the writer that wrote this version.
    pub term: u64,
    /// Retained checkpoints, oldest first.
    pub checkpoints: Vec<CheckpointRef>,
    /// Merged segments, in log order, gap-free.
    pub segments: Vec<SegmentRef>,
    /// Every entry up to this index is in a segment (or covered by a checkpoint); the tail
    /// chain starts after it.
    pub merged_through: u64,
    /// Indexes of term-start markers; their tail objects are never deleted.
    pub fences: Vec<u64>,
}

impl Manifest {
    /// The first log index the bucket still holds as log objects.
    pub fn log_start(&self) -> u64 {
        self.segments
            .first()
            .map_or(self.merged_through + 1, |s| s.first)
    }
}

/// One data file in a checkpoint record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// SHA-256 (hex) of the file.
    pub sha256: String,
    /// `"base"` or `"delta"`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
}

/// `P/ckp/<index>-<revision>`: a checkpoint's index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointRecord {
    /// Record format version.
    pub format: u32,
    /// The last log index covered.
    pub index: u64,
    /// The store revision held.
    pub revision: Revision,
    /// The store's compact revision.
    pub compact_revision: Revision,
    /// Term of the writer that published it.
    pub term: u64,
    /// Data files in load order.
    pub files: Vec<FileRecord>,
    /// Leases `(id, granted ttl)`.
    pub leases: Vec<(LeaseId, i64)>,
    /// The auth state (absent while it is the default: no users, roles, disabled).
    #[serde(default, skip_serializing_if = "is_default_auth")]
    pub auth: AuthState,
}

fn is_default_auth(auth: &AuthState) -> bool {
    *auth == AuthState::default()
}

impl CheckpointRecord {
    /// The data files as [`FileRef`]s.
    pub fn file_refs(&self) -> Vec<FileRef> {
        self.files
            .iter()
            .map(|f| FileRef {
                name: f.sha256.clone(),
                kind: if f.kind == "delta" {
                    FileKind::Delta
                } else {
                    FileKind::Base
                },
                size: f.size,
            })
            .collect()
    }

    /// Its reference in the manifest.
    pub fn reference(&self) -> CheckpointRef {
        CheckpointRef {
            index: self.index,
            revision: self.revision,
        }
    }
}

/// The record for `files`.
pub fn file_records(files: &[FileRef]) -> Vec<FileRecord> {
    files
        .iter()
        .map(|f| FileRecord {
            sha256: f.name.clone(),
            kind: match f.kind {
                FileKind::Base => "base",
                FileKind::Delta => "delta",
            }
            .to_string(),
            size: f.size,
        })
        .collect()
}

/// Encodes a JSON record.
pub fn encode_record<T: Serialize>(record: &T) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(record).expect("records always serialize"))
}

/// A record type with a format version.
pub trait Versioned {
    /// The record's format version.
    fn format(&self) -> u32;
}

impl Versioned for WriterRecord {
    fn format(&self) -> u32 {
        self.format
    }
}
impl Versioned for Manifest {
    fn format(&self) -> u32 {
        self.format
    }
}
impl Versioned for CheckpointRecord {
    fn format(&self) -> u32 {
        self.format
    }
}

/// Decodes the JSON record stored at `key`, refusing a newer format.
pub fn decode_record<T: for<'de> Deserialize<'de> + Versioned>(
    key: &str,
    bytes: &[u8],
) -> Result<T, CorruptObject> {
    let record: T = serde_json::from_slice(bytes).map_err(|e| corrupt(key, e))?;
    if record.format() > RECORD_FORMAT {
        return Err(corrupt(
            key,
            format!(
                "record format {} is newer than this binary supports ({RECORD_FORMAT}); upgrade t4",
                record.format()
            ),
        ));
    }
    Ok(record)
}

/// The bytes of a tail object holding `entries` (consecutive): their WAL frames, back to back.
pub fn encode_tail<'a>(entries: impl IntoIterator<Item = &'a LogEntry>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&encode_entry_frame(e));
    }
    out
}

/// Decodes the tail object `wal/<first>`: every frame must be valid and the entries must be
/// consecutive from `first`.
pub fn decode_tail(first: u64, bytes: &Bytes) -> Result<Vec<LogEntry>, CorruptObject> {
    let key = wal_key(first);
    let mut entries: Vec<LogEntry> = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        match read_frame(bytes, offset) {
            FrameRead::Frame { payload, len } => {
                let entry = decode_entry(&payload).map_err(|e| {
                    corrupt(&key, format!("undecodable entry at byte {offset}: {e}"))
                })?;
                let expected = first + entries.len() as u64;
                if entry.index != expected {
                    return Err(corrupt(
                        &key,
                        format!("holds entry {} where entry {expected} belongs", entry.index),
                    ));
                }
                entries.push(entry);
                offset += len;
            }
            FrameRead::Incomplete => {
                return Err(corrupt(
                    &key,
                    format!("frame at byte {offset} is truncated"),
                ));
            }
            FrameRead::Invalid(reason) => {
                return Err(corrupt(&key, format!("byte {offset}: {reason}")));
            }
        }
    }
    if entries.is_empty() {
        return Err(corrupt(&key, "holds no entry"));
    }
    Ok(entries)
}

/// The bytes of a merged segment: a WAL segment header for `first`, then the tail objects'
/// frames (`frames`, already concatenated).
pub fn encode_seg(first: u64, frames: &[u8]) -> Vec<u8> {
    let mut out = encode_segment_header(first).to_vec();
    out.extend_from_slice(frames);
    out
}

/// Decodes the merged segment `seg/<first>-<last>`.
pub fn decode_seg(first: u64, last: u64, bytes: &Bytes) -> Result<Vec<LogEntry>, CorruptObject> {
    let key = seg_key(first, last);
    let scan = scan_segment(first, bytes, false).map_err(|e| corrupt(&key, e))?;
    let got_last = first + scan.entries.len() as u64;
    if scan.entries.is_empty() || got_last - 1 != last {
        return Err(corrupt(
            &key,
            format!("holds entries {first}..{got_last} instead of {first}..={last}"),
        ));
    }
    Ok(scan.entries)
}

/// Whether a tail object's entries are a term-start marker (one entry, no operations).
pub fn is_marker(entries: &[LogEntry]) -> bool {
    entries.len() == 1 && entries[0].ops.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::LogOp;

    #[test]
    fn names_sort_numerically() {
        assert_eq!(wal_key(42), "wal/00000000000000000042");
        assert!(wal_key(9) < wal_key(10));
        assert_eq!(parse_wal_key(&wal_key(123)), Some(123));
        assert_eq!(parse_wal_key("wal/12"), None);
        assert_eq!(
            seg_key(1, 20),
            "seg/00000000000000000001-00000000000000000020"
        );
        assert_eq!(
            ckp_key(7, 9),
            "ckp/00000000000000000007-00000000000000000009"
        );
    }

    #[test]
    fn records_round_trip_and_newer_formats_are_refused() {
        let m = Manifest {
            format: RECORD_FORMAT,
            generation: 3,
            term: 2,
            checkpoints: vec![CheckpointRef {
                index: 5,
                revision: 9,
            }],
            segments: vec![SegmentRef { first: 1, last: 4 }],
            merged_through: 4,
            fences: vec![1],
        };
        let bytes = encode_record(&m);
        assert_eq!(decode_record::<Manifest>(MANIFEST, &bytes), Ok(m.clone()));
        let newer = Manifest {
            format: RECORD_FORMAT + 1,
            ..m
        };
        let err = decode_record::<Manifest>(MANIFEST, &encode_record(&newer)).unwrap_err();
        assert!(err.to_string().contains("manifest"), "{err}");
        assert!(decode_record::<WriterRecord>(WRITER, b"{not json").is_err());
    }

    #[test]
    fn tails_and_segments_round_trip_and_detect_damage() {
        let entries: Vec<LogEntry> = (3..6)
            .map(|index| LogEntry {
                index,
                term: 1,
                ops: vec![LogOp::Compact { revision: 1 }],
            })
            .collect();
        let tail = Bytes::from(encode_tail(&entries));
        assert_eq!(decode_tail(3, &tail).unwrap(), entries);
        assert!(decode_tail(4, &tail).is_err());
        let mut bad = tail.to_vec();
        bad[20] ^= 1;
        let err = decode_tail(3, &Bytes::from(bad)).unwrap_err();
        assert_eq!(err.key, wal_key(3));
        let seg = Bytes::from(encode_seg(3, &tail));
        assert_eq!(decode_seg(3, 5, &seg).unwrap(), entries);
        assert!(decode_seg(3, 6, &seg).is_err());
    }
}
