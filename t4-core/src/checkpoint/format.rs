//! The checkpoint data file format.
//!
//! ```text
//! file   := "T4CKP\n" | version u8 | kind u8 (0 base, 1 delta) | count u64 LE | record*
//! record := 1u8 | key | value | create_revision i64 | mod_revision i64 | version i64 | lease i64
//!         | 2u8 | key                                  (a deletion; deltas only)
//! key, value := len u32 LE | bytes
//! ```
//!
//! Integrity comes from the name: a file is stored as `data/<sha-256 of its bytes>` and the
//! reader checks the hash before decoding.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::FileKind;
use crate::kv::KeyValue;

/// Version of the data file format written by this binary.
pub const DATA_FORMAT_VERSION: u8 = 1;
const MAGIC: &[u8; 6] = b"T4CKP\n";
const HEADER_LEN: usize = 16;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// One record of a data file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The key holds `kv`.
    Put(KeyValue),
    /// The key was deleted.
    Delete(Bytes),
}

/// Lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// Encodes records into a data file.
#[derive(Debug)]
pub struct FileWriter {
    buf: Vec<u8>,
    count: u64,
}

impl FileWriter {
    /// An empty file of `kind`.
    pub fn new(kind: FileKind) -> FileWriter {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(MAGIC);
        buf.push(DATA_FORMAT_VERSION);
        buf.push(match kind {
            FileKind::Base => 0,
            FileKind::Delta => 1,
        });
        buf.extend_from_slice(&0u64.to_le_bytes());
        FileWriter { buf, count: 0 }
    }

    /// Bytes so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a record.
    pub fn push(&mut self, record: &Record) {
        match record {
            Record::Put(kv) => {
                self.buf.push(PUT);
                put_bytes(&mut self.buf, &kv.key);
                put_bytes(&mut self.buf, &kv.value);
                for n in [kv.create_revision, kv.mod_revision, kv.version, kv.lease] {
                    self.buf.extend_from_slice(&n.to_le_bytes());
                }
            }
            Record::Delete(key) => {
                self.buf.push(DELETE);
                put_bytes(&mut self.buf, key);
            }
        }
        self.count += 1;
    }

    /// The finished file.
    pub fn finish(mut self) -> Bytes {
        self.buf[8..16].copy_from_slice(&self.count.to_le_bytes());
        Bytes::from(self.buf)
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    let len = u32::try_from(b.len()).expect("keys and values are bounded by the request size");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
}

/// Decodes a data file, calling `visit` for each record in order. Returns the file's kind.
pub fn decode_file(bytes: &Bytes, visit: &mut dyn FnMut(Record)) -> Result<FileKind, String> {
    if bytes.len() < HEADER_LEN || &bytes[..6] != MAGIC {
        return Err("not a t4 checkpoint data file (bad header)".to_string());
    }
    if bytes[6] > DATA_FORMAT_VERSION {
        return Err(format!(
            "data file format {} is newer than this binary supports ({DATA_FORMAT_VERSION}); upgrade t4",
            bytes[6]
        ));
    }
    let kind = match bytes[7] {
        0 => FileKind::Base,
        1 => FileKind::Delta,
        k => return Err(format!("unknown data file kind {k}")),
    };
    let count = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let mut pos = HEADER_LEN;
    let truncated = || "data file is truncated".to_string();
    let take = |pos: &mut usize, n: usize| -> Result<Bytes, String> {
        let end = pos
            .checked_add(n)
            .filter(|e| *e <= bytes.len())
            .ok_or_else(truncated)?;
        let out = bytes.slice(*pos..end);
        *pos = end;
        Ok(out)
    };
    let take_bytes = |pos: &mut usize| -> Result<Bytes, String> {
        let len = take(pos, 4)?;
        let len = u32::from_le_bytes(len[..].try_into().expect("4 bytes")) as usize;
        take(pos, len)
    };
    let take_i64 = |pos: &mut usize| -> Result<i64, String> {
        Ok(i64::from_le_bytes(
            take(pos, 8)?[..].try_into().expect("8 bytes"),
        ))
    };
    for _ in 0..count {
        let tag = take(&mut pos, 1)?[0];
        let record = match tag {
            PUT => {
                let key = take_bytes(&mut pos)?;
                let value = take_bytes(&mut pos)?;
                Record::Put(KeyValue {
                    key,
                    value,
                    create_revision: take_i64(&mut pos)?,
                    mod_revision: take_i64(&mut pos)?,
                    version: take_i64(&mut pos)?,
                    lease: take_i64(&mut pos)?,
                })
            }
            DELETE => Record::Delete(take_bytes(&mut pos)?),
            t => return Err(format!("unknown record tag {t}")),
        };
        visit(record);
    }
    if pos != bytes.len() {
        return Err(format!("{} trailing bytes", bytes.len() - pos));
    }
    Ok(kind)
}
