//! Building etcd-consistent entries, and a model of what a store must then return.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use bytes::Bytes;

use crate::kv::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
use crate::mvcc::{ReadView, Store, StoreError};
use crate::wal::{Change, LogEntry, LogOp};

/// One write of a revision.
#[derive(Clone, Debug)]
pub(super) enum W {
    Put(Bytes, Bytes, LeaseId),
    Del(Bytes),
}

pub(super) fn put(key: &[u8], value: &[u8]) -> W {
    put_lease(key, value, 0)
}

pub(super) fn put_lease(key: &[u8], value: &[u8], lease: LeaseId) -> W {
    W::Put(b(key), b(value), lease)
}

pub(super) fn del(key: &[u8]) -> W {
    W::Del(b(key))
}

/// What an etcd node would decide: tracks live keys so that every change carries the right
/// create revision, version and previous lease, and remembers the state at every revision.
#[derive(Clone, Debug)]
pub(super) struct Model {
    pub(super) index: u64,
    pub(super) revision: Revision,
    pub(super) compact_revision: Revision,
    pub(super) live: BTreeMap<Bytes, KeyValue>,
    /// The live keys at each revision (revision 1 is the empty store).
    pub(super) states: BTreeMap<Revision, BTreeMap<Bytes, KeyValue>>,
    /// The events of each revision.
    pub(super) events: BTreeMap<Revision, Vec<Event>>,
    pub(super) leases: BTreeMap<LeaseId, i64>,
}

impl Model {
    pub(super) fn new() -> Model {
        Model {
            index: 0,
            revision: 1,
            compact_revision: 0,
            live: BTreeMap::new(),
            states: BTreeMap::from([(1, BTreeMap::new())]),
            events: BTreeMap::new(),
            leases: BTreeMap::new(),
        }
    }

    /// The operation of one write request (the next revision). Deletes of absent keys are
    /// dropped, as etcd does; `None` when nothing changes.
    pub(super) fn revision(&mut self, writes: &[W]) -> Option<LogOp> {
        let rev = self.revision + 1;
        let mut changes = Vec::new();
        let mut events = Vec::new();
        for w in writes {
            match w {
                W::Put(key, value, lease) => {
                    let (key, lease) = (key.clone(), *lease);
                    let prev = self.live.get(&key);
                    let prev_lease = prev.map_or(0, |p| p.lease);
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.map_or(1, |p| p.version + 1),
                        value: value.clone(),
                        lease,
                    };
                    self.live.insert(key, kv.clone());
                    events.push(Event {
                        kind: EventKind::Put,
                        kv: kv.clone(),
                        prev_kv: None,
                    });
                    changes.push(Change::Put { kv, prev_lease });
                }
                W::Del(key) => {
                    let key = key.clone();
                    if let Some(prev) = self.live.remove(&key) {
                        events.push(delete_event(&key, rev));
                        changes.push(Change::Delete {
                            key,
                            prev_lease: prev.lease,
                        });
                    }
                }
            }
        }
        if changes.is_empty() {
            return None;
        }
        self.revision = rev;
        self.states.insert(rev, self.live.clone());
        self.events.insert(rev, events);
        Some(LogOp::Revision {
            revision: rev,
            changes,
        })
    }

    pub(super) fn grant(&mut self, id: LeaseId, ttl: i64) -> LogOp {
        self.leases.insert(id, ttl);
        LogOp::LeaseGrant { id, ttl }
    }

    /// A revocation as the core decides it: delete the lease's keys, then revoke.
    pub(super) fn revoke(&mut self, id: LeaseId) -> Vec<LogOp> {
        let keys: Vec<Bytes> = self
            .live
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect();
        let writes: Vec<W> = keys.into_iter().map(W::Del).collect();
        let mut ops: Vec<LogOp> = self.revision(&writes).into_iter().collect();
        self.leases.remove(&id);
        ops.push(LogOp::LeaseRevoke { id });
        ops
    }

    pub(super) fn compact(&mut self, revision: Revision) -> LogOp {
        self.compact_revision = self.compact_revision.max(revision);
        LogOp::Compact { revision }
    }

    pub(super) fn entry(&mut self, ops: Vec<LogOp>) -> LogEntry {
        self.index += 1;
        LogEntry {
            index: self.index,
            term: 1,
            ops,
        }
    }

    /// Applies one entry holding `ops`.
    pub(super) fn apply<S: Store>(&mut self, store: &S, ops: Vec<LogOp>) {
        let entry = self.entry(ops);
        store.apply(&entry).unwrap();
    }

    /// Applies one entry holding one revision made of `writes`.
    pub(super) fn write<S: Store>(&mut self, store: &S, writes: &[W]) {
        let ops = self.revision(writes).into_iter().collect();
        self.apply(store, ops);
    }

    pub(super) fn state_at(&self, rev: Revision) -> &BTreeMap<Bytes, KeyValue> {
        self.states
            .range(..=rev.max(1))
            .next_back()
            .map(|(_, s)| s)
            .expect("revision 1 is always there")
    }

    pub(super) fn get(&self, key: &[u8], rev: Revision) -> Option<KeyValue> {
        self.state_at(rev).get(key).cloned()
    }

    pub(super) fn scan(&self, range: &KeyRange, rev: Revision) -> Vec<KeyValue> {
        self.state_at(rev)
            .values()
            .filter(|kv| range.contains(&kv.key))
            .cloned()
            .collect()
    }

    pub(super) fn events(&self, from: Revision, to: Revision) -> Vec<Event> {
        if from > to {
            return Vec::new();
        }
        self.events
            .range(from..=to)
            .flat_map(|(_, e)| e.iter().cloned())
            .collect()
    }

    pub(super) fn lease_keys(&self) -> Vec<(LeaseId, Bytes)> {
        let mut out: Vec<_> = self
            .live
            .values()
            .filter(|kv| kv.lease != 0)
            .map(|kv| (kv.lease, kv.key.clone()))
            .collect();
        out.sort();
        out
    }
}

pub(super) fn delete_event(key: &Bytes, rev: Revision) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.clone(),
            mod_revision: rev,
            ..Default::default()
        },
        prev_kv: None,
    }
}

pub(super) fn b(s: &[u8]) -> Bytes {
    Bytes::copy_from_slice(s)
}

pub(super) fn scan_all(
    view: &impl ReadView,
    range: &KeyRange,
    rev: Revision,
) -> Result<Vec<KeyValue>, StoreError> {
    let mut out = Vec::new();
    view.scan(range, rev, &mut |kv| {
        out.push(kv);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

pub(super) fn events_all(
    view: &impl ReadView,
    from: Revision,
    to: Revision,
) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    view.events(from, to, &mut |e| {
        out.push(e);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

pub(super) fn keys_of(kvs: &[KeyValue]) -> Vec<Bytes> {
    kvs.iter().map(|kv| kv.key.clone()).collect()
}

pub(super) fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

pub(super) fn all() -> KeyRange {
    KeyRange::From(Bytes::new())
}

/// Checks every read of `view` against `model`, for every revision from 0 to one past the
/// view's revision, over `keys` and a few ranges, with compaction floor `floor`.
pub(super) fn check_against_model(
    view: &impl ReadView,
    model: &Model,
    keys: &[Bytes],
    floor: Revision,
) {
    let top = view.revision();
    for rev in 0..=top + 1 {
        let at = rev.min(top);
        for key in keys {
            let got = view.get(key, rev);
            if at < floor {
                assert_eq!(got, Err(StoreError::Compacted), "get {key:?} at {rev}");
            } else {
                assert_eq!(got, Ok(model.get(key, at)), "get {key:?} at {rev}");
            }
        }
        for range in [
            all(),
            KeyRange::prefix(b(b"a")),
            KeyRange::Between(b(b"a\0"), b(b"b")),
        ] {
            let got = scan_all(view, &range, rev);
            if at < floor {
                assert_eq!(got, Err(StoreError::Compacted), "scan {range:?} at {rev}");
            } else {
                assert_eq!(got, Ok(model.scan(&range, at)), "scan {range:?} at {rev}");
            }
        }
        let got = events_all(view, rev, i64::MAX);
        if rev > top {
            assert_eq!(
                got,
                Ok(vec![]),
                "events from {rev} past the view's revision"
            );
        } else if rev < floor {
            assert_eq!(got, Err(StoreError::Compacted), "events from {rev}");
        } else {
            assert_eq!(got, Ok(model.events(rev, top)), "events from {rev}");
        }
    }
}
