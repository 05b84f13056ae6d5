//! Installing a checkpoint image (recovery from the bucket): [`Store::load_checkpoint`].
//!
//! The store is emptied and refilled in bounded batches, then the `state` record is written
//! and everything is fsynced. First the state is reset to an empty store and fsynced, so a
//! crash in the middle leaves a store at applied index 0: the core then finds it behind the
//! bucket again and loads the checkpoint anew, which empties the leftovers first.
//!
//! [`Store::load_checkpoint`]: t4_core::Store::load_checkpoint

use bytes::Bytes;
use fjall::{PersistMode, Readable};
use t4_core::{CheckpointImage, StoreError};

use super::batch::BoundedBatch;
use super::format::{self, State};
use super::{Inner, io};

pub(super) fn load(inner: &Inner, image: &CheckpointImage) -> Result<(), StoreError> {
    let mut state = inner.lock_state();
    inner.cache.replace_store(None);
    inner.commit_state(&State::default())?;
    *state = State::default();
    inner
        .db
        .persist(PersistMode::SyncAll)
        .map_err(io("loading a checkpoint"))?;
    let snapshot = inner.db.snapshot();
    let mut deletes = BoundedBatch::new(inner, "loading a checkpoint");
    for keyspace in [
        &inner.latest,
        &inner.history,
        &inner.changes,
        &inner.leases,
        &inner.lease_keys,
    ] {
        for guard in snapshot.iter(keyspace) {
            let key = guard.key().map_err(io("emptying the store"))?;
            deletes.remove(keyspace, Bytes::from(key.to_vec()))?;
        }
    }
    deletes.commit()?;
    let mut inserts = BoundedBatch::new(inner, "loading a checkpoint");
    for kv in &image.kvs {
        let version = Bytes::from(format::encode_version(kv));
        inserts.insert(&inner.latest, kv.key.to_vec(), version.clone())?;
        inserts.insert(
            &inner.history,
            format::history_key(&kv.key, kv.mod_revision),
            version,
        )?;
        if kv.lease != 0 {
            inserts.insert(
                &inner.lease_keys,
                format::lease_key(kv.lease, &kv.key),
                Bytes::new(),
            )?;
        }
    }
    for (id, ttl) in &image.leases {
        inserts.insert(
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
        events_from: image.events_from(),
    };
    let mut batch = inner.db.batch();
    batch.insert(&inner.meta, format::AUTH_KEY, image.auth.encode());
    batch.insert(&inner.meta, format::STATE_KEY, next.encode());
    batch.commit().map_err(io("loading a checkpoint"))?;
    inner
        .db
        .persist(PersistMode::SyncAll)
        .map_err(io("loading a checkpoint"))?;
    *state = next;
    *inner.lock_auth() = image.auth.clone();
    inner.cache.replace_store(Some(next.revision));
    Ok(())
}
