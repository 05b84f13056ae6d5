//! Resolving writes: the changes one request makes at one revision.
//!
//! A [`RevisionWriter`] reads through the overlay (so it sees every earlier decision and its
//! own earlier changes), records each change in the overlay and the lease table as it goes,
//! and finally yields the [`LogOp`] and watch events of its revision — or nothing, if the
//! request changed nothing (a delete of absent keys does not consume a revision, as in etcd).

use std::ops::ControlFlow;

use bytes::Bytes;

use crate::kv::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
use crate::lease::LeaseTable;
use crate::mvcc::{Overlay, OverlayView, ReadView, StoreError};
use crate::wal::{Change, LogOp};

/// Collects the changes of one revision.
pub(crate) struct RevisionWriter<'a, V: ReadView> {
    base: &'a V,
    overlay: &'a mut Overlay,
    leases: &'a mut LeaseTable,
    revision: Revision,
    changes: Vec<Change>,
    events: Vec<Event>,
}

impl<'a, V: ReadView> RevisionWriter<'a, V> {
    /// A writer for the revision after everything decided so far.
    pub(crate) fn new(base: &'a V, overlay: &'a mut Overlay, leases: &'a mut LeaseTable) -> Self {
        let revision = overlay.revision + 1;
        RevisionWriter {
            base,
            overlay,
            leases,
            revision,
            changes: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Reads as of now, including this writer's own changes.
    pub(crate) fn view(&self) -> OverlayView<'_, V> {
        self.overlay.view(self.base)
    }

    /// The lease table as of now.
    pub(crate) fn leases(&self) -> &LeaseTable {
        self.leases
    }

    /// The revision reads see: this writer's revision once it changed something.
    pub(crate) fn current_revision(&self) -> Revision {
        if self.changes.is_empty() {
            self.revision - 1
        } else {
            self.revision
        }
    }

    fn mark_changed(&mut self) {
        self.overlay.revision = self.revision;
    }

    /// Puts `key`; `prev` is its current state (the caller read it already).
    pub(crate) fn put(&mut self, key: Bytes, value: Bytes, lease: LeaseId, prev: Option<KeyValue>) {
        let (create_revision, version) = match &prev {
            Some(p) => (p.create_revision, p.version + 1),
            None => (self.revision, 1),
        };
        let kv = KeyValue {
            key: key.clone(),
            value,
            create_revision,
            mod_revision: self.revision,
            version,
            lease,
        };
        let prev_lease = prev.as_ref().map_or(0, |p| p.lease);
        if prev_lease != lease {
            self.leases.detach(prev_lease, &key);
            self.leases.attach(lease, &key);
        }
        self.overlay.record(key, self.revision, Some(kv.clone()));
        self.mark_changed();
        self.changes.push(Change::Put {
            kv: kv.clone(),
            prev_lease,
        });
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: prev,
        });
    }

    /// Deletes every key in `range`, returning the deleted pairs.
    pub(crate) fn delete_range(&mut self, range: &KeyRange) -> Result<Vec<KeyValue>, StoreError> {
        let mut doomed = Vec::new();
        let at = self.current_revision();
        self.view().scan(range, at, &mut |kv| {
            doomed.push(kv);
            ControlFlow::Continue(())
        })?;
        // Watchers get the key as of the previous revision (etcd reads it at rev - 1), even
        // when this revision put it first: a txn may put a key and then delete it with a
        // from-key delete or a later nested txn, which etcd's duplicate check lets through.
        let mut event_prevs = Vec::with_capacity(doomed.len());
        for prev in &doomed {
            event_prevs.push(if prev.mod_revision == self.revision {
                self.view().get(&prev.key, self.revision - 1)?
            } else {
                Some(prev.clone())
            });
        }
        for (prev, event_prev) in doomed.iter().zip(event_prevs) {
            self.leases.detach(prev.lease, &prev.key);
            self.overlay.record(prev.key.clone(), self.revision, None);
            self.mark_changed();
            self.changes.push(Change::Delete {
                key: prev.key.clone(),
                prev_lease: prev.lease,
            });
            let kv = KeyValue {
                key: prev.key.clone(),
                mod_revision: self.revision,
                ..Default::default()
            };
            self.events.push(Event {
                kind: EventKind::Delete,
                kv,
                prev_kv: event_prev,
            });
        }
        Ok(doomed)
    }

    /// The revision's log op and events, or `None` if nothing changed.
    pub(crate) fn finish(self) -> Option<(LogOp, Vec<Event>)> {
        if self.changes.is_empty() {
            return None;
        }
        Some((
            LogOp::Revision {
                revision: self.revision,
                changes: self.changes,
            },
            self.events,
        ))
    }
}
