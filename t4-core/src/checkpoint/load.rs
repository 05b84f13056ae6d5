//! Turning a checkpoint's data files back into a store image.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::format::{Record, decode_file, sha256_hex};
use crate::kv::KeyValue;

/// Accumulates a checkpoint's data files, in load order, into the live key set.
#[derive(Debug, Default)]
pub struct Loader {
    keys: BTreeMap<Bytes, KeyValue>,
}

impl Loader {
    /// Checks `bytes` against its content address `sha256` and applies its records.
    pub fn add(&mut self, sha256: &str, bytes: &Bytes) -> Result<(), String> {
        let actual = sha256_hex(bytes);
        if actual != sha256 {
            return Err(format!(
                "content hash is {actual}, not the {sha256} it is named by"
            ));
        }
        let keys = &mut self.keys;
        decode_file(bytes, &mut |record| match record {
            Record::Put(kv) => {
                keys.insert(kv.key.clone(), kv);
            }
            Record::Delete(key) => {
                keys.remove(&key);
            }
        })?;
        Ok(())
    }

    /// The live keys, in key order.
    pub fn finish(self) -> Vec<KeyValue> {
        self.keys.into_values().collect()
    }
}
