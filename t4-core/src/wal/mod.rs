//! The write-ahead log format: entries, frames, segments, recovery.
//!
//! Pure encode/decode/scan functions; the adapters own the files. The format is versioned at
//! two levels (segment header and entry payload) and a newer version is always refused.

pub mod entry;
pub mod frame;
pub mod segment;

pub use entry::{Change, DecodeError, LogEntry, LogOp, decode_entry, encode_entry};
pub use frame::{encode_frame, read_frame};
pub use segment::{
    Recovery, SegmentId, SegmentInfo, WalError, encode_segment_header, parse_segment_file_name,
    recover, segment_file_name,
};

/// Encodes `entry` as one frame ready to append to a segment.
pub fn encode_entry_frame(entry: &LogEntry) -> Vec<u8> {
    let mut payload = Vec::with_capacity(256);
    encode_entry(entry, &mut payload);
    let mut out = Vec::with_capacity(payload.len() + frame::FRAME_HEADER_LEN);
    encode_frame(&payload, &mut out);
    out
}
