//! The write-ahead log format: entries, frames, segments, recovery.
//!
//! Pure encode/decode/scan functions; the adapters own the files. The format is versioned at
//! two levels (segment header and entry payload) and a newer version is always refused.

pub mod entry;
pub mod frame;
pub mod segment;

pub use entry::{Change, DecodeError, LogEntry, LogOp, decode_entry, encode_entry, encoded_len};
pub use frame::{encode_frame, read_frame};
pub use segment::{
    Recovery, SegmentId, SegmentInfo, WalError, encode_segment_header, parse_segment_file_name,
    recover, segment_file_name,
};

/// Encodes `entry` as one frame ready to append to a segment.
pub fn encode_entry_frame(entry: &LogEntry) -> Vec<u8> {
    // One allocation of the exact size, the payload encoded in place after the header.
    let mut out = Vec::with_capacity(frame::FRAME_HEADER_LEN + entry::encoded_len(entry));
    out.resize(frame::FRAME_HEADER_LEN, 0);
    encode_entry(entry, &mut out);
    frame::seal_frame(&mut out);
    out
}
