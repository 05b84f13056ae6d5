//! Installing a checkpoint image (recovery from the bucket): [`Store::load_checkpoint`].
//!
//! The store is emptied and refilled in bounded batches, then the `state` record is written
//! and everything is fsynced. First the state is reset to an empty store and fsynced, so a
//! crash in the middle leaves a store at applied index 0: the core then finds it behind the
//! bucket again and loads the checkpoint anew, which empties the leftovers first.
//!
//! [`Store::load_checkpoint`]: t4_core::Store::load_checkpoint

use bytes::Bytes;
use fjall::{Keyspace, PersistMode, Readable};
use t4_core::{CheckpointImage, StoreError};

use super::format::{self, State};
use super::{COMPACTION_BATCH_BYTES, COMPACTION_BATCH_ITEMS, Deletes, Inner, io};

pub(super) fn load(inner: &Inner, image: &CheckpointImage) -> Result<(), StoreError> {
    let mut state = inner.lock_state();
    inner.commit_state(&State::default())?;
    *state = State::default();
    inner
        .db
        .persist(PersistMode::SyncAll)
        .map_err(io("loading a checkpoint"))?;
    let snapshot = inner.db.snapshot();
    let mut deletes = Deletes::new(inner);
    for keyspace in [
        &inner.latest,
        &inner.history,
        &inner.revlog,
        &inner.leases,
        &inner.lease_keys,
    ] {
        for guard in snapshot.iter(keyspace) {
            let key = guard.key().map_err(io("emptying the store"))?;
            deletes.push(keyspace, Bytes::from(key.to_vec()))?;
        }
    }
    deletes.commit()?;
    let mut inserts = Inserts::new(inner);
    for kv in &image.kvs {
        let version = Bytes::from(format::encode_version(kv));
        inserts.push(&inner.latest, kv.key.to_vec(), version.clone())?;
        inserts.push(
            &inner.history,
            format::history_key(&kv.key, kv.mod_revision),
            version,
        )?;
        if kv.lease != 0 {
            inserts.push(
                &inner.lease_keys,
                format::lease_key(kv.lease, &kv.key),
                Bytes::new(),
            )?;
        }
    }
    for (id, ttl) in &image.leases {
        inserts.push(
            &inner.leases,
            format::encode_i64(*id).to_vec(),
            Bytes::copy_from_slice(&ttl.to_be_bytes()),
        )?;
    }
    inserts.commit()?;
    let compacted = image.compact_revision.max(image.revision);
    let next = State {
        applied_index: image.index,
        revision: image.revision,
        compact_revision: compacted,
        compacting: compacted,
        physically_compacted: compacted,
        events_from: image.revision + 1,
    };
    inner.commit_state(&next)?;
    inner
        .db
        .persist(PersistMode::SyncAll)
        .map_err(io("loading a checkpoint"))?;
    *state = next;
    Ok(())
}

/// Inserts committed in bounded batches.
struct Inserts<'a> {
    inner: &'a Inner,
    batch: fjall::OwnedWriteBatch,
    bytes: usize,
}

impl<'a> Inserts<'a> {
    fn new(inner: &'a Inner) -> Inserts<'a> {
        Inserts {
            inner,
            batch: inner.db.batch(),
            bytes: 0,
        }
    }

    fn push(&mut self, keyspace: &Keyspace, key: Vec<u8>, value: Bytes) -> Result<(), StoreError> {
        self.bytes += key.len() + value.len();
        self.batch.insert(keyspace, key, value);
        if self.batch.len() >= COMPACTION_BATCH_ITEMS || self.bytes >= COMPACTION_BATCH_BYTES {
            self.commit()?;
        }
        Ok(())
    }

    fn commit(&mut self) -> Result<(), StoreError> {
        let batch = std::mem::replace(&mut self.batch, self.inner.db.batch());
        self.bytes = 0;
        batch.commit().map_err(io("loading a checkpoint"))
    }
}
