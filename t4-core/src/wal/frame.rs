//! Frames: how one encoded entry sits in a WAL segment.
//!
//! ```text
//! frame := magic u32 LE (FRAME_MAGIC) | payload_len u32 LE | crc u32 LE | payload
//! crc   := CRC-32C over (payload_len bytes ++ payload)
//! ```
//!
//! The checksum covers the length, so a corrupted length is detected rather than followed.
//! The magic lets recovery tell a torn tail (nothing valid after the bad frame) from
//! corruption in the middle of the log (a valid frame follows), which it must refuse.

use bytes::Bytes;

/// Marks the start of every frame ("T4FR" read as little-endian bytes).
pub const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"T4FR");
/// Bytes before the payload.
pub const FRAME_HEADER_LEN: usize = 12;
/// The largest payload a frame may carry; a larger length is corruption.
pub const MAX_FRAME_PAYLOAD: usize = 512 << 20;

/// Turns `frame` — [`FRAME_HEADER_LEN`] bytes of room followed by the payload — into a whole
/// frame by writing its header: the same bytes as [`encode_frame`] of the payload, without
/// copying the payload.
pub fn seal_frame(frame: &mut [u8]) {
    let (header, payload) = frame.split_at_mut(FRAME_HEADER_LEN);
    let len = u32::try_from(payload.len()).expect("payload is bounded by MAX_FRAME_PAYLOAD");
    let len_bytes = len.to_le_bytes();
    let crc = crc32c::crc32c_append(crc32c::crc32c(&len_bytes), payload);
    header[..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    header[4..8].copy_from_slice(&len_bytes);
    header[8..].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a frame holding `payload` to `out`.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.resize(start + FRAME_HEADER_LEN, 0);
    out.extend_from_slice(payload);
    seal_frame(&mut out[start..]);
}

/// What was found at an offset of a segment.
#[derive(Debug, PartialEq, Eq)]
pub enum FrameRead {
    /// A valid frame: its payload and the total frame length.
    Frame {
        /// The payload (shares the segment's buffer).
        payload: Bytes,
        /// Header plus payload length.
        len: usize,
    },
    /// Fewer bytes remain than the frame needs.
    Incomplete,
    /// The bytes at the offset are not a valid frame.
    Invalid(&'static str),
}

/// Reads the frame starting at `offset` of `buf`.
pub fn read_frame(buf: &Bytes, offset: usize) -> FrameRead {
    let Some(header) = buf.get(offset..offset.saturating_add(FRAME_HEADER_LEN)) else {
        return FrameRead::Incomplete;
    };
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if word(0) != FRAME_MAGIC {
        return FrameRead::Invalid("bad frame magic");
    }
    let len = word(4) as usize;
    if len > MAX_FRAME_PAYLOAD {
        return FrameRead::Invalid("frame length out of bounds");
    }
    let start = offset + FRAME_HEADER_LEN;
    let Some(payload) = buf.get(start..start + len) else {
        return FrameRead::Incomplete;
    };
    let crc = crc32c::crc32c_append(crc32c::crc32c(&header[4..8]), payload);
    if crc != word(8) {
        return FrameRead::Invalid("checksum mismatch");
    }
    FrameRead::Frame {
        payload: buf.slice(start..start + len),
        len: FRAME_HEADER_LEN + len,
    }
}

/// Whether any valid frame starts after `offset` (used to tell corruption from a torn tail).
pub fn valid_frame_after(buf: &Bytes, offset: usize) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    let mut pos = offset + 1;
    while pos + FRAME_HEADER_LEN <= buf.len() {
        let found = buf[pos..].windows(4).position(|w| w == magic)?;
        pos += found;
        if let FrameRead::Frame { .. } = read_frame(buf, pos) {
            return Some(pos);
        }
        pos += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn frames_round_trip(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut buf = Vec::new();
            encode_frame(&payload, &mut buf);
            let buf = Bytes::from(buf);
            match read_frame(&buf, 0) {
                FrameRead::Frame { payload: p, len } => {
                    prop_assert_eq!(p.as_ref(), payload.as_slice());
                    prop_assert_eq!(len, buf.len());
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }

        #[test]
        fn a_frame_sealed_in_place_is_the_encoded_frame(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut encoded = Vec::new();
            encode_frame(&payload, &mut encoded);
            let mut sealed = vec![0; FRAME_HEADER_LEN];
            sealed.extend_from_slice(&payload);
            seal_frame(&mut sealed);
            prop_assert_eq!(sealed, encoded);
        }

        #[test]
        fn any_single_bit_flip_is_detected(payload in proptest::collection::vec(any::<u8>(), 1..64), bit in any::<prop::sample::Index>()) {
            let mut buf = Vec::new();
            encode_frame(&payload, &mut buf);
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            let read = read_frame(&Bytes::from(buf), 0);
            prop_assert!(!matches!(read, FrameRead::Frame { .. }), "flip at bit {} went unnoticed", bit);
        }
    }

    #[test]
    fn a_cut_frame_is_incomplete() {
        let mut buf = Vec::new();
        encode_frame(b"hello", &mut buf);
        buf.pop();
        assert_eq!(read_frame(&Bytes::from(buf), 0), FrameRead::Incomplete);
    }
}
