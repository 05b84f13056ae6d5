//! WAL segments: files of frames, their names, and recovery.
//!
//! ```text
//! segment := header frame*
//! header  := "T4WAL\n" | format_version u8 | 0u8 | first_index u64 LE | crc u32 LE
//!            (crc = CRC-32C over the 16 bytes before it)
//! name    := first_index as 20 zero-padded decimal digits, then ".wal"
//! ```
//!
//! Recovery rules (see docs/architecture.md): an incomplete or invalid frame at the end of
//! the *last* segment with no valid frame after it is a torn tail from a crash mid-append and
//! is truncated (it was never acknowledged: acks wait for fsync). Anything else that fails a
//! check — a bad frame followed by a valid one, a bad frame in an earlier segment, a gap in
//! the indexes — stops recovery with an error naming the file and byte offset.

use bytes::Bytes;

use super::entry::{DecodeError, LogEntry, decode_entry};
use super::frame::{FrameRead, read_frame, valid_frame_after};

/// Version of the segment format written by this binary.
pub const SEGMENT_FORMAT_VERSION: u8 = 1;
/// Length of the segment header.
pub const SEGMENT_HEADER_LEN: usize = 20;
const SEGMENT_MAGIC: &[u8; 6] = b"T4WAL\n";

/// A segment is named by the index of its first entry.
pub type SegmentId = u64;

/// The file name of segment `id`.
pub fn segment_file_name(id: SegmentId) -> String {
    format!("{id:020}.wal")
}

/// The segment id of a file name, if it is a segment name.
pub fn parse_segment_file_name(name: &str) -> Option<SegmentId> {
    let digits = name.strip_suffix(".wal")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The header of a segment whose first entry has index `first_index`.
pub fn encode_segment_header(first_index: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..6].copy_from_slice(SEGMENT_MAGIC);
    h[6] = SEGMENT_FORMAT_VERSION;
    h[8..16].copy_from_slice(&first_index.to_le_bytes());
    let crc = crc32c::crc32c(&h[..16]);
    h[16..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Why the WAL cannot be recovered. Nothing is skipped: every error stops `open`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WalError {
    /// A segment is damaged somewhere other than a torn tail.
    #[error(
        "WAL file {file} is corrupt at byte offset {offset}: {reason}; refusing to start rather than skip entries \
         (restore the file, or recover the node from a backup or the bucket)"
    )]
    Corrupt {
        /// The segment's file name.
        file: String,
        /// Byte offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A segment was written by a newer t4.
    #[error(
        "WAL file {file} has format version {version}; this binary supports up to {SEGMENT_FORMAT_VERSION}. Upgrade t4 to open this data dir"
    )]
    NewerFormat {
        /// The segment's file name.
        file: String,
        /// The version found.
        version: u8,
    },
    /// Entries are missing between two points of the log.
    #[error(
        "WAL is missing entries: expected index {expected} but {file} continues at {found}; refusing to start rather than skip entries"
    )]
    Gap {
        /// The segment where the gap shows.
        file: String,
        /// The index that should come next.
        expected: u64,
        /// The index found instead.
        found: u64,
    },
}

/// What one segment holds.
#[derive(Debug)]
pub struct SegmentScan {
    /// The entries, in order.
    pub entries: Vec<LogEntry>,
    /// Length of the valid prefix of the file.
    pub valid_len: u64,
    /// Whether bytes after `valid_len` are a torn tail to truncate.
    pub torn: bool,
}

/// Scans one segment. `is_last` allows a torn tail; elsewhere any damage is an error.
pub fn scan_segment(id: SegmentId, buf: &Bytes, is_last: bool) -> Result<SegmentScan, WalError> {
    let file = segment_file_name(id);
    let corrupt = |offset: usize, reason: String| WalError::Corrupt {
        file: file.clone(),
        offset: offset as u64,
        reason,
    };
    let Some(header) = buf.get(..SEGMENT_HEADER_LEN) else {
        return if is_last {
            Ok(SegmentScan {
                entries: Vec::new(),
                valid_len: 0,
                torn: true,
            })
        } else {
            Err(corrupt(0, "segment header is truncated".into()))
        };
    };
    let crc = u32::from_le_bytes(header[16..20].try_into().expect("4 bytes"));
    if &header[..6] != SEGMENT_MAGIC || crc != crc32c::crc32c(&header[..16]) {
        if is_last && valid_frame_after(buf, 0).is_none() {
            return Ok(SegmentScan {
                entries: Vec::new(),
                valid_len: 0,
                torn: true,
            });
        }
        return Err(corrupt(0, "bad segment header".into()));
    }
    if header[6] > SEGMENT_FORMAT_VERSION {
        return Err(WalError::NewerFormat {
            file,
            version: header[6],
        });
    }
    let first_index = u64::from_le_bytes(header[8..16].try_into().expect("8 bytes"));
    if id == 0 {
        return Err(corrupt(
            8,
            "segment index 0 is invalid (indexes start at 1)".into(),
        ));
    }
    if first_index != id {
        return Err(corrupt(
            8,
            format!("header says first index {first_index} but the file is named for {id}"),
        ));
    }

    let mut entries = Vec::new();
    let mut offset = SEGMENT_HEADER_LEN;
    let mut expected = first_index;
    while offset < buf.len() {
        let problem = match read_frame(buf, offset) {
            FrameRead::Frame { payload, len } => match decode_entry(&payload) {
                Ok(entry) if entry.index == expected => {
                    entries.push(entry);
                    expected += 1;
                    offset += len;
                    continue;
                }
                Ok(entry) => {
                    return Err(WalError::Gap {
                        file,
                        expected,
                        found: entry.index,
                    });
                }
                Err(DecodeError::NewerFormat(v)) => {
                    return Err(WalError::NewerFormat { file, version: v });
                }
                // A checksummed frame that does not decode is never a torn write.
                Err(e) => return Err(corrupt(offset, format!("undecodable entry: {e}"))),
            },
            FrameRead::Incomplete => "frame is truncated",
            FrameRead::Invalid(reason) => reason,
        };
        if is_last && valid_frame_after(buf, offset).is_none() {
            return Ok(SegmentScan {
                entries,
                valid_len: offset as u64,
                torn: true,
            });
        }
        return Err(corrupt(offset, problem.to_string()));
    }
    Ok(SegmentScan {
        entries,
        valid_len: offset as u64,
        torn: false,
    })
}

/// A segment known after recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentInfo {
    /// Its id (index of its first entry).
    pub id: SegmentId,
    /// Index of its last entry; `id - 1` when it holds none.
    pub last_index: u64,
    /// Its valid length in bytes.
    pub len: u64,
}

/// The outcome of scanning every local segment.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Entries after the store's applied index, to replay in order.
    pub entries: Vec<LogEntry>,
    /// Entries still in the WAL that the store has applied already (at or before its applied
    /// index). With a bucket configured, those the bucket lacks are uploaded at start-up.
    pub covered: Vec<LogEntry>,
    /// Every segment that remains, in order.
    pub segments: Vec<SegmentInfo>,
    /// A torn tail to cut: truncate this segment to this length (0 = remove the file).
    pub truncate: Option<(SegmentId, u64)>,
    /// Index of the last entry in the WAL (or the store's applied index if that is later).
    pub last_index: u64,
}

/// Scans the local segments (sorted by id, with their bytes) for a store that has applied
/// every entry up to `applied_index`, and decides what to replay and what to truncate.
pub fn recover(segments: &[(SegmentId, Bytes)], applied_index: u64) -> Result<Recovery, WalError> {
    let mut out = Recovery {
        last_index: applied_index,
        ..Default::default()
    };
    let mut prev_last: Option<u64> = None;
    for (i, (id, buf)) in segments.iter().enumerate() {
        let is_last = i + 1 == segments.len();
        let scan = scan_segment(*id, buf, is_last)?;
        if scan.torn {
            out.truncate = Some((*id, scan.valid_len));
        }
        if is_last && scan.entries.is_empty() {
            // The crash hit while the segment was being created (its first append carries the
            // header and the first entry together): it never held an entry. Remove it, or the
            // core would list it as sealed and later delete the new segment reusing its name.
            out.truncate = Some((*id, 0));
            continue;
        }
        if let Some(prev) = prev_last
            && *id != prev + 1
        {
            return Err(WalError::Gap {
                file: segment_file_name(*id),
                expected: prev + 1,
                found: *id,
            });
        }
        if prev_last.is_none() && *id > applied_index + 1 {
            return Err(WalError::Gap {
                file: segment_file_name(*id),
                expected: applied_index + 1,
                found: *id,
            });
        }
        let last = id + scan.entries.len() as u64 - 1;
        prev_last = Some(last);
        out.last_index = out.last_index.max(last);
        out.segments.push(SegmentInfo {
            id: *id,
            last_index: last,
            len: scan.valid_len,
        });
        let (covered, entries): (Vec<_>, Vec<_>) = scan
            .entries
            .into_iter()
            .partition(|e| e.index <= applied_index);
        out.covered.extend(covered);
        out.entries.extend(entries);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::entry::{LogOp, encode_entry};
    use crate::wal::frame::encode_frame;

    fn segment(first: u64, count: u64) -> Vec<u8> {
        let mut buf = encode_segment_header(first).to_vec();
        for index in first..first + count {
            let mut payload = Vec::new();
            let entry = LogEntry {
                index,
                term: 1,
                ops: vec![LogOp::Compact {
                    revision: index as i64,
                }],
            };
            encode_entry(&entry, &mut payload);
            encode_frame(&payload, &mut buf);
        }
        buf
    }

    fn frame_offsets(buf: &[u8]) -> Vec<usize> {
        let bytes = Bytes::from(buf.to_vec());
        let mut offsets = vec![];
        let mut off = SEGMENT_HEADER_LEN;
        while let FrameRead::Frame { len, .. } = read_frame(&bytes, off) {
            offsets.push(off);
            off += len;
        }
        offsets
    }

    #[test]
    fn names_are_fixed_width_and_sort_by_index() {
        assert_eq!(segment_file_name(42), "00000000000000000042.wal");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.wal"),
            Some(42)
        );
        assert_eq!(parse_segment_file_name("42.wal"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn clean_segments_replay_after_the_applied_index() {
        let segs = vec![
            (1, Bytes::from(segment(1, 3))),
            (4, Bytes::from(segment(4, 2))),
        ];
        let r = recover(&segs, 2).unwrap();
        assert_eq!(
            r.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(r.truncate, None);
        assert_eq!(r.last_index, 5);
        assert_eq!(r.segments.len(), 2);
    }

    #[test]
    fn a_torn_tail_is_truncated_at_the_last_good_frame() {
        let full = segment(1, 3);
        let offsets = frame_offsets(&full);
        for cut in offsets[2] + 1..full.len() {
            let segs = vec![(1, Bytes::from(full[..cut].to_vec()))];
            let r = recover(&segs, 0).unwrap();
            assert_eq!(r.entries.len(), 2, "cut at {cut}");
            assert_eq!(r.truncate, Some((1, offsets[2] as u64)));
        }
    }

    #[test]
    fn garbage_after_the_last_frame_is_a_torn_tail() {
        let mut buf = segment(1, 2);
        let good = buf.len() as u64;
        buf.extend_from_slice(&[0u8; 100]);
        let r = recover(&[(1, Bytes::from(buf))], 0).unwrap();
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.truncate, Some((1, good)));
    }

    #[test]
    fn a_bit_flip_before_the_tail_is_refused_with_file_and_offset() {
        let mut buf = segment(1, 3);
        let offsets = frame_offsets(&buf);
        buf[offsets[1] + 14] ^= 0x10;
        let err = recover(&[(1, Bytes::from(buf))], 0).unwrap_err();
        match &err {
            WalError::Corrupt { file, offset, .. } => {
                assert_eq!(file, "00000000000000000001.wal");
                assert_eq!(*offset, offsets[1] as u64);
            }
            other => panic!("unexpected {other:?}"),
        }
        let msg = err.to_string();
        assert!(
            msg.contains("00000000000000000001.wal") && msg.contains(&offsets[1].to_string()),
            "{msg}"
        );
    }

    #[test]
    fn a_flipped_length_before_the_tail_is_refused() {
        let mut buf = segment(1, 3);
        let offsets = frame_offsets(&buf);
        buf[offsets[0] + 5] ^= 0x01; // length field of the first frame
        assert!(matches!(
            recover(&[(1, Bytes::from(buf))], 0),
            Err(WalError::Corrupt { .. })
        ));
    }

    #[test]
    fn damage_in_an_earlier_segment_is_refused_even_at_its_end() {
        let mut first = segment(1, 2);
        first.pop();
        let segs = vec![(1, Bytes::from(first)), (3, Bytes::from(segment(3, 1)))];
        assert!(matches!(recover(&segs, 0), Err(WalError::Corrupt { .. })));
    }

    #[test]
    fn a_missing_segment_is_a_gap() {
        let segs = vec![
            (1, Bytes::from(segment(1, 2))),
            (5, Bytes::from(segment(5, 1))),
        ];
        assert!(matches!(
            recover(&segs, 0),
            Err(WalError::Gap {
                expected: 3,
                found: 5,
                ..
            })
        ));
    }

    #[test]
    fn a_wal_starting_after_the_store_is_a_gap() {
        let segs = vec![(5, Bytes::from(segment(5, 1)))];
        assert!(matches!(
            recover(&segs, 2),
            Err(WalError::Gap {
                expected: 3,
                found: 5,
                ..
            })
        ));
        assert!(recover(&segs, 4).is_ok());
    }

    #[test]
    fn a_half_created_last_segment_is_dropped() {
        let mut half = encode_segment_header(3).to_vec();
        half.truncate(7);
        let segs = vec![(1, Bytes::from(segment(1, 2))), (3, Bytes::from(half))];
        let r = recover(&segs, 0).unwrap();
        assert_eq!(r.truncate, Some((3, 0)));
        assert_eq!(r.segments.len(), 1);
        assert_eq!(r.last_index, 2);
    }

    #[test]
    fn a_newer_segment_format_is_refused() {
        let mut buf = segment(1, 1);
        buf[6] = SEGMENT_FORMAT_VERSION + 1;
        let crc = crc32c::crc32c(&buf[..16]);
        buf[16..20].copy_from_slice(&crc.to_le_bytes());
        let err = recover(&[(1, Bytes::from(buf))], 0).unwrap_err();
        assert!(matches!(err, WalError::NewerFormat { .. }));
        assert!(err.to_string().contains("Upgrade t4"));
    }
}
