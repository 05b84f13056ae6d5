//! Big rewrites of the store (physical compaction, loading a checkpoint) committed in
//! bounded write batches, so that memory stays bounded however big the store is.

use bytes::Bytes;
use fjall::{Keyspace, OwnedWriteBatch};
use t4_core::StoreError;

use super::{Inner, io};

/// Changes per write batch.
const BATCH_ITEMS: usize = 4096;
/// Bytes of keys and values per write batch.
const BATCH_BYTES: usize = 4 << 20;

/// Inserts and removals, committed in order whenever a batch is full, and by [`commit`].
///
/// [`commit`]: BoundedBatch::commit
pub(super) struct BoundedBatch<'a> {
    inner: &'a Inner,
    batch: OwnedWriteBatch,
    bytes: usize,
    /// What the batches are for, for errors ("compacting", "loading a checkpoint").
    what: &'static str,
}

impl<'a> BoundedBatch<'a> {
    pub(super) fn new(inner: &'a Inner, what: &'static str) -> BoundedBatch<'a> {
        BoundedBatch {
            inner,
            batch: inner.db.batch(),
            bytes: 0,
            what,
        }
    }

    pub(super) fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: Vec<u8>,
        value: Bytes,
    ) -> Result<(), StoreError> {
        self.bytes += key.len() + value.len();
        self.batch.insert(keyspace, key, value);
        self.commit_if_full()
    }

    pub(super) fn remove(&mut self, keyspace: &Keyspace, key: Bytes) -> Result<(), StoreError> {
        self.bytes += key.len();
        self.batch.remove(keyspace, key);
        self.commit_if_full()
    }

    fn commit_if_full(&mut self) -> Result<(), StoreError> {
        if self.batch.len() >= BATCH_ITEMS || self.bytes >= BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    /// Commits what is pending.
    pub(super) fn commit(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::replace(&mut self.batch, self.inner.db.batch());
        self.bytes = 0;
        batch.commit().map_err(io(self.what))
    }
}
