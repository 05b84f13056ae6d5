//! An in-memory [`Store`], used by unit tests and the simulator.
//!
//! It models the durability of a real storage engine that is written without fsync: state
//! applied since the last [`Store::persist`] survives a crash only in part
//! ([`MemStore::crash_image`] chooses how much), which is exactly what the core must cope with.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;

use super::store::{CheckpointImage, ReadView, Store, StoreError};
use super::versions::{VersionMap, Versions, in_range, state_at};
use crate::auth::AuthState;
use crate::kv::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
use crate::wal::{Change, LogEntry, LogOp};

#[derive(Clone, Debug)]
struct State {
    applied_index: u64,
    revision: Revision,
    compact_revision: Revision,
    /// History below this revision has been physically removed.
    physically_compacted: Revision,
    /// The first revision whose events the log holds, if the state was loaded from a
    /// checkpoint (which holds the state at its revision, not that revision's events); 0
    /// otherwise (a compaction keeps the events of its own revision).
    events_from: Revision,
    /// Every retained version of every key, oldest first; `None` is a deletion.
    keys: VersionMap,
    /// Events per revision.
    log: BTreeMap<Revision, Vec<Event>>,
    leases: BTreeMap<LeaseId, i64>,
    auth: Arc<AuthState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            applied_index: 0,
            revision: 1,
            compact_revision: 0,
            physically_compacted: 0,
            events_from: 0,
            keys: BTreeMap::new(),
            log: BTreeMap::new(),
            leases: BTreeMap::new(),
            auth: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    state: State,
    /// The state as of the last persist.
    durable: State,
    /// Entries applied since the last persist, in order.
    since_persist: Vec<LogEntry>,
}

/// An in-memory store. Cloning gives another handle to the same store.
#[derive(Clone, Debug, Default)]
pub struct MemStore {
    inner: Arc<RwLock<Inner>>,
}

impl MemStore {
    /// An empty store (revision 1, nothing applied).
    pub fn new() -> MemStore {
        MemStore::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// What a crash leaves behind: the state at the last persist plus the first
    /// `extra_entries` entries applied after it (a storage engine's journal survives as a
    /// prefix). The returned store is independent of `self`.
    pub fn crash_image(&self, extra_entries: usize) -> MemStore {
        let inner = self.read();
        let image = MemStore::new();
        {
            let mut w = image.write();
            w.state = inner.durable.clone();
            w.durable = inner.durable.clone();
        }
        for entry in inner.since_persist.iter().take(extra_entries) {
            image
                .apply(entry)
                .expect("re-applying entries that applied once succeeds");
        }
        image.persist().expect("in-memory persist cannot fail");
        image
    }

    /// Number of entries applied since the last persist.
    pub fn unpersisted_entries(&self) -> usize {
        self.read().since_persist.len()
    }
}

/// A view of a [`MemStore`].
#[derive(Clone, Debug)]
pub struct MemView {
    store: MemStore,
    applied_index: u64,
    revision: Revision,
    compact_revision: Revision,
}

fn latest_at(versions: &Versions, rev: Revision) -> Option<&KeyValue> {
    state_at(versions, rev).flatten()
}

impl MemView {
    fn state_at(&self, rev: Revision) -> Result<RwLockReadGuard<'_, Inner>, StoreError> {
        let inner = self.store.read();
        if rev < inner.state.physically_compacted {
            return Err(StoreError::Compacted);
        }
        Ok(inner)
    }
}

impl ReadView for MemView {
    fn applied_index(&self) -> u64 {
        self.applied_index
    }

    fn revision(&self) -> Revision {
        self.revision
    }

    fn compact_revision(&self) -> Revision {
        self.compact_revision
    }

    fn events_floor(&self) -> Revision {
        self.compact_revision
            .max(self.store.read().state.events_from)
    }

    fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
        let rev = rev.min(self.revision);
        let inner = self.state_at(rev)?;
        Ok(inner
            .state
            .keys
            .get(key)
            .and_then(|v| latest_at(v, rev))
            .cloned())
    }

    fn scan(
        &self,
        range: &KeyRange,
        rev: Revision,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let rev = rev.min(self.revision);
        let inner = self.state_at(rev)?;
        for (_, versions) in in_range(&inner.state.keys, range) {
            if let Some(kv) = latest_at(versions, rev)
                && visit(kv.clone()).is_break()
            {
                break;
            }
        }
        Ok(())
    }

    fn events(
        &self,
        from: Revision,
        to: Revision,
        visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let to = to.min(self.revision);
        if from > to {
            return Ok(());
        }
        let inner = self.state_at(from)?;
        if from < inner.state.events_from {
            return Err(StoreError::Compacted);
        }
        for events in inner.state.log.range(from..=to).map(|(_, e)| e) {
            for event in events {
                if visit(event.clone()).is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl Store for MemStore {
    type View = MemView;

    fn view(&self) -> MemView {
        let inner = self.read();
        MemView {
            store: self.clone(),
            applied_index: inner.state.applied_index,
            revision: inner.state.revision,
            compact_revision: inner.state.compact_revision,
        }
    }

    fn apply(&self, entry: &LogEntry) -> Result<(), StoreError> {
        let mut inner = self.write();
        let state = &mut inner.state;
        if entry.index != state.applied_index + 1 {
            return Err(StoreError::Corrupt(format!(
                "entry {} applied out of order (store has applied {})",
                entry.index, state.applied_index
            )));
        }
        for op in &entry.ops {
            match op {
                LogOp::Revision { revision, changes } => {
                    let mut events = Vec::with_capacity(changes.len());
                    for change in changes {
                        let (key, kv, event) = match change {
                            Change::Put { kv, .. } => (
                                kv.key.clone(),
                                Some(kv.clone()),
                                Event {
                                    kind: EventKind::Put,
                                    kv: kv.clone(),
                                    prev_kv: None,
                                },
                            ),
                            Change::Delete { key, .. } => {
                                let kv = KeyValue {
                                    key: key.clone(),
                                    mod_revision: *revision,
                                    ..Default::default()
                                };
                                (
                                    key.clone(),
                                    None,
                                    Event {
                                        kind: EventKind::Delete,
                                        kv,
                                        prev_kv: None,
                                    },
                                )
                            }
                        };
                        state.keys.entry(key).or_default().push((*revision, kv));
                        events.push(event);
                    }
                    state.log.insert(*revision, events);
                    state.revision = *revision;
                }
                LogOp::LeaseGrant { id, ttl } => {
                    state.leases.insert(*id, *ttl);
                }
                LogOp::LeaseRevoke { id } => {
                    state.leases.remove(id);
                }
                LogOp::Compact { revision } => {
                    state.compact_revision = state.compact_revision.max(*revision);
                }
                LogOp::Auth(auth) => state.auth = auth.clone(),
            }
        }
        state.applied_index = entry.index;
        inner.since_persist.push(entry.clone());
        Ok(())
    }

    fn leases(&self) -> Result<Vec<(LeaseId, i64)>, StoreError> {
        Ok(self
            .read()
            .state
            .leases
            .iter()
            .map(|(id, ttl)| (*id, *ttl))
            .collect())
    }

    fn auth(&self) -> Result<Arc<AuthState>, StoreError> {
        Ok(self.read().state.auth.clone())
    }

    fn lease_keys(&self) -> Result<Vec<(LeaseId, Bytes)>, StoreError> {
        let inner = self.read();
        let rev = inner.state.revision;
        Ok(inner
            .state
            .keys
            .values()
            .filter_map(|v| latest_at(v, rev))
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.lease, kv.key.clone()))
            .collect())
    }

    fn persist(&self) -> Result<(), StoreError> {
        let mut inner = self.write();
        inner.durable = inner.state.clone();
        inner.since_persist.clear();
        Ok(())
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let mut inner = self.write();
        let state = &mut inner.state;
        if revision <= state.physically_compacted {
            return Ok(());
        }
        state.keys.retain(|_, versions| {
            if let Some(p) = versions.iter().rposition(|(r, _)| *r <= revision) {
                let drop = if versions[p].1.is_none() { p + 1 } else { p };
                versions.drain(..drop);
            }
            !versions.is_empty()
        });
        state.log = state.log.split_off(&revision);
        state.physically_compacted = revision;
        Ok(())
    }

    fn load_checkpoint(&self, image: &CheckpointImage) -> Result<(), StoreError> {
        let compacted = image.compact_revision.max(image.revision);
        let state = State {
            applied_index: image.index,
            revision: image.revision,
            compact_revision: compacted,
            physically_compacted: compacted,
            events_from: image.events_from(),
            keys: image
                .kvs
                .iter()
                .map(|kv| (kv.key.clone(), vec![(kv.mod_revision, Some(kv.clone()))]))
                .collect(),
            log: BTreeMap::new(),
            leases: image.leases.iter().copied().collect(),
            auth: image.auth.clone(),
        };
        let mut inner = self.write();
        inner.durable = state.clone();
        inner.state = state;
        inner.since_persist.clear();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(
        rev: Revision,
        key: &'static str,
        value: &'static str,
        create: Revision,
        version: i64,
    ) -> LogOp {
        LogOp::Revision {
            revision: rev,
            changes: vec![Change::Put {
                kv: KeyValue {
                    key: Bytes::from_static(key.as_bytes()),
                    value: Bytes::from_static(value.as_bytes()),
                    create_revision: create,
                    mod_revision: rev,
                    version,
                    lease: 0,
                },
                prev_lease: 0,
            }],
        }
    }

    fn del(rev: Revision, key: &'static str) -> LogOp {
        LogOp::Revision {
            revision: rev,
            changes: vec![Change::Delete {
                key: Bytes::from_static(key.as_bytes()),
                prev_lease: 0,
            }],
        }
    }

    fn entry(index: u64, ops: Vec<LogOp>) -> LogEntry {
        LogEntry {
            index,
            term: 1,
            ops,
        }
    }

    #[test]
    fn reads_see_each_revision_as_it_was() {
        let s = MemStore::new();
        s.apply(&entry(1, vec![put(2, "a", "1", 2, 1)])).unwrap();
        s.apply(&entry(2, vec![put(3, "a", "2", 2, 2), del(4, "a")]))
            .unwrap();
        let v = s.view();
        assert_eq!(v.revision(), 4);
        assert_eq!(v.get(b"a", 2).unwrap().unwrap().value, "1");
        assert_eq!(v.get(b"a", 3).unwrap().unwrap().version, 2);
        assert_eq!(v.get(b"a", 4).unwrap(), None);
        assert_eq!(v.get(b"a", 1).unwrap(), None);
    }

    #[test]
    fn a_view_does_not_see_later_applies() {
        let s = MemStore::new();
        s.apply(&entry(1, vec![put(2, "a", "1", 2, 1)])).unwrap();
        let v = s.view();
        s.apply(&entry(2, vec![put(3, "a", "2", 2, 2)])).unwrap();
        assert_eq!(v.get(b"a", i64::MAX).unwrap().unwrap().value, "1");
        assert_eq!(v.revision(), 2);
    }

    #[test]
    fn out_of_order_apply_is_refused() {
        let s = MemStore::new();
        assert!(s.apply(&entry(2, vec![])).is_err());
    }

    #[test]
    fn physical_compaction_keeps_what_later_revisions_need() {
        let s = MemStore::new();
        s.apply(&entry(
            1,
            vec![put(2, "a", "1", 2, 1), put(3, "b", "1", 3, 1)],
        ))
        .unwrap();
        s.apply(&entry(
            2,
            vec![
                del(4, "b"),
                put(5, "a", "2", 2, 2),
                LogOp::Compact { revision: 4 },
            ],
        ))
        .unwrap();
        s.compact(4).unwrap();
        let v = s.view();
        assert_eq!(v.compact_revision(), 4);
        assert_eq!(v.get(b"a", 4).unwrap().unwrap().value, "1");
        assert_eq!(v.get(b"b", 4).unwrap(), None);
        assert_eq!(v.get(b"a", 3), Err(StoreError::Compacted));
        let mut revs = vec![];
        v.events(1, 10, &mut |e| {
            revs.push(e.revision());
            ControlFlow::Continue(())
        })
        .unwrap_err();
        v.events(4, 10, &mut |e| {
            revs.push(e.revision());
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(revs, vec![4, 5]);
    }

    #[test]
    fn a_crash_keeps_the_persisted_state_and_a_prefix_of_the_rest() {
        let s = MemStore::new();
        s.apply(&entry(1, vec![put(2, "a", "1", 2, 1)])).unwrap();
        s.persist().unwrap();
        s.apply(&entry(2, vec![put(3, "b", "1", 3, 1)])).unwrap();
        s.apply(&entry(3, vec![put(4, "c", "1", 4, 1)])).unwrap();
        assert_eq!(s.crash_image(0).view().applied_index(), 1);
        assert_eq!(s.crash_image(1).view().applied_index(), 2);
        assert_eq!(s.crash_image(9).view().applied_index(), 3);
        assert_eq!(s.crash_image(0).view().get(b"b", 10).unwrap(), None);
    }
}
