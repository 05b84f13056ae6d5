//! Writes the core has decided but the store has not applied yet.
//!
//! Requests are resolved as they arrive, while earlier batches are still being made durable,
//! so every decision must see the effects of every earlier decision. The overlay holds those
//! pending versions; [`OverlayView`] reads through it to a store view. Entries leave the
//! overlay once the store has applied them.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::store::{ReadView, StoreError, count_by_scan};
use super::versions::{VersionMap, in_range, state_at};
use crate::kv::{Event, KeyRange, KeyValue, Revision};

/// Pending versions of keys, newest last, plus the pending revision counters.
#[derive(Debug, Default)]
pub struct Overlay {
    keys: VersionMap,
    /// The latest revision decided (applied or pending).
    pub revision: Revision,
    /// The latest compaction decided (applied or pending).
    pub compact_revision: Revision,
}

impl Overlay {
    /// An overlay over a store at `revision` / `compact_revision` with nothing pending.
    pub fn new(revision: Revision, compact_revision: Revision) -> Overlay {
        Overlay {
            keys: VersionMap::new(),
            revision,
            compact_revision,
        }
    }

    /// Records that `key` becomes `kv` (`None` = deleted) at `revision`.
    pub fn record(&mut self, key: Bytes, revision: Revision, kv: Option<KeyValue>) {
        let versions = self.keys.entry(key).or_default();
        match versions.last_mut() {
            // A second change to one key in one revision replaces the first.
            Some(last) if last.0 == revision => last.1 = kv,
            _ => versions.push((revision, kv)),
        }
    }

    /// Forgets versions the store has applied (at or below `applied`).
    pub fn applied_up_to(&mut self, applied: Revision) {
        self.keys.retain(|_, versions| {
            versions.retain(|(r, _)| *r > applied);
            !versions.is_empty()
        });
    }

    /// Number of keys with pending versions.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A view of `base` with the pending versions on top.
    pub fn view<'a, V: ReadView>(&'a self, base: &'a V) -> OverlayView<'a, V> {
        OverlayView {
            base,
            overlay: self,
        }
    }
}

/// A store view with the overlay's pending versions on top.
pub struct OverlayView<'a, V> {
    base: &'a V,
    overlay: &'a Overlay,
}

impl<V: ReadView> OverlayView<'_, V> {
    /// Whether a key of `range` has a pending version at or before `rev`: if not, the range
    /// at `rev` reads as the base at its own revision.
    fn pending_in(&self, range: &KeyRange, rev: Revision) -> bool {
        in_range(&self.overlay.keys, range).any(|(_, versions)| state_at(versions, rev).is_some())
    }
}

impl<V: ReadView> ReadView for OverlayView<'_, V> {
    fn applied_index(&self) -> u64 {
        self.base.applied_index()
    }

    fn revision(&self) -> Revision {
        self.overlay.revision.max(self.base.revision())
    }

    fn compact_revision(&self) -> Revision {
        self.overlay
            .compact_revision
            .max(self.base.compact_revision())
    }

    fn events_floor(&self) -> Revision {
        self.overlay.compact_revision.max(self.base.events_floor())
    }

    fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
        if let Some(state) = self.overlay.keys.get(key).and_then(|v| state_at(v, rev)) {
            return Ok(state.cloned());
        }
        self.base.get(key, rev.min(self.base.revision()))
    }

    fn scan(
        &self,
        range: &KeyRange,
        rev: Revision,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let base_rev = rev.min(self.base.revision());
        let pending: Vec<(&Bytes, Option<&KeyValue>)> = in_range(&self.overlay.keys, range)
            .filter_map(|(k, versions)| state_at(versions, rev).map(|state| (k, state)))
            .collect();
        if pending.is_empty() {
            return self.base.scan(range, base_rev, visit);
        }
        // Merge the two ordered streams; a pending version shadows the base one.
        let mut pending = pending.into_iter().peekable();
        let mut stopped = false;
        self.base.scan(range, base_rev, &mut |kv| {
            while let Some((k, state)) = pending.peek() {
                if k.as_ref() > kv.key.as_ref() {
                    break;
                }
                let shadows = k.as_ref() == kv.key.as_ref();
                if let Some(p) = state
                    && visit((*p).clone()).is_break()
                {
                    stopped = true;
                    return ControlFlow::Break(());
                }
                pending.next();
                if shadows {
                    return ControlFlow::Continue(());
                }
            }
            let flow = visit(kv);
            stopped = flow.is_break();
            flow
        })?;
        if !stopped {
            for (_, state) in pending {
                if let Some(p) = state
                    && visit(p.clone()).is_break()
                {
                    break;
                }
            }
        }
        Ok(())
    }

    fn count(&self, range: &KeyRange, rev: Revision) -> Result<u64, StoreError> {
        if !self.pending_in(range, rev) {
            // The base's own count, which may be quicker than a scan (or remembered).
            return self.base.count(range, rev.min(self.base.revision()));
        }
        count_by_scan(self, range, rev)
    }

    fn note_count(&self, range: &KeyRange, rev: Revision, count: u64) {
        // Only a count of the base's own keys may be kept for the base.
        if !self.pending_in(range, rev) {
            self.base
                .note_count(range, rev.min(self.base.revision()), count);
        }
    }

    fn events(
        &self,
        from: Revision,
        to: Revision,
        visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        // Pending revisions have no events yet: they are published once applied.
        self.base.events(from, to.min(self.base.revision()), visit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::{MemStore, Store};
    use crate::wal::{Change, LogEntry, LogOp};

    fn kv(key: &'static str, value: &'static str, rev: Revision) -> KeyValue {
        KeyValue {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(value.as_bytes()),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        }
    }

    /// A store holding keys `a`, `c` and `e` (value `store`) at revision 2.
    fn store_with_a_c_e() -> MemStore {
        let store = MemStore::new();
        let changes = ["a", "c", "e"]
            .iter()
            .map(|k| Change::Put {
                kv: kv(k, "store", 2),
                prev_lease: 0,
            })
            .collect();
        let ops = vec![LogOp::Revision {
            revision: 2,
            changes,
        }];
        let entry = LogEntry {
            index: 1,
            term: 1,
            ops,
        };
        store.apply(&entry).unwrap();
        store
    }

    fn scan_all(view: &impl ReadView, rev: Revision) -> Vec<(String, String)> {
        let mut out = vec![];
        view.scan(&KeyRange::From(Bytes::from_static(b"\0")), rev, &mut |kv| {
            out.push((
                String::from_utf8_lossy(&kv.key).into(),
                String::from_utf8_lossy(&kv.value).into(),
            ));
            ControlFlow::Continue(())
        })
        .unwrap();
        out
    }

    #[test]
    fn pending_versions_shadow_and_merge_with_the_store() {
        let store = store_with_a_c_e();
        let mut overlay = Overlay::new(2, 0);
        overlay.record(Bytes::from_static(b"b"), 3, Some(kv("b", "pending", 3)));
        overlay.record(Bytes::from_static(b"c"), 3, None);
        overlay.record(Bytes::from_static(b"e"), 4, Some(kv("e", "pending", 4)));
        overlay.record(Bytes::from_static(b"f"), 4, Some(kv("f", "pending", 4)));
        overlay.revision = 4;
        let base = store.view();
        let view = overlay.view(&base);
        let s = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            scan_all(&view, 4),
            vec![
                s("a", "store"),
                s("b", "pending"),
                s("e", "pending"),
                s("f", "pending")
            ]
        );
        assert_eq!(
            scan_all(&view, 3),
            vec![s("a", "store"), s("b", "pending"), s("e", "store")]
        );
        assert_eq!(
            scan_all(&view, 2),
            vec![s("a", "store"), s("c", "store"), s("e", "store")]
        );
        assert_eq!(view.get(b"c", 4).unwrap(), None);
        assert_eq!(view.get(b"c", 2).unwrap().unwrap().value, "store");
        assert_eq!(view.revision(), 4);

        overlay.applied_up_to(3);
        assert_eq!(overlay.len(), 2);
    }

    /// A base view that records the counts asked of it and the counts it is told.
    struct Recording<V> {
        inner: V,
        counts: std::cell::RefCell<Vec<(KeyRange, Revision)>>,
        notes: std::cell::RefCell<Vec<(KeyRange, Revision, u64)>>,
    }

    impl<V: ReadView> ReadView for Recording<V> {
        fn applied_index(&self) -> u64 {
            self.inner.applied_index()
        }
        fn revision(&self) -> Revision {
            self.inner.revision()
        }
        fn compact_revision(&self) -> Revision {
            self.inner.compact_revision()
        }
        fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
            self.inner.get(key, rev)
        }
        fn scan(
            &self,
            range: &KeyRange,
            rev: Revision,
            visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            self.inner.scan(range, rev, visit)
        }
        fn count(&self, range: &KeyRange, rev: Revision) -> Result<u64, StoreError> {
            self.counts.borrow_mut().push((range.clone(), rev));
            self.inner.count(range, rev)
        }
        fn note_count(&self, range: &KeyRange, rev: Revision, count: u64) {
            self.notes.borrow_mut().push((range.clone(), rev, count));
        }
        fn events(
            &self,
            from: Revision,
            to: Revision,
            visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
        ) -> Result<(), StoreError> {
            self.inner.events(from, to, visit)
        }
    }

    #[test]
    fn counts_go_to_the_base_only_where_nothing_is_pending() {
        let store = store_with_a_c_e();
        let mut overlay = Overlay::new(2, 0);
        overlay.record(Bytes::from_static(b"b"), 3, Some(kv("b", "pending", 3)));
        overlay.record(Bytes::from_static(b"f"), 4, Some(kv("f", "pending", 4)));
        overlay.revision = 4;
        let base = Recording {
            inner: store.view(),
            counts: Default::default(),
            notes: Default::default(),
        };
        let view = overlay.view(&base);
        let between = |s: &'static str, e: &'static str| {
            KeyRange::Between(
                Bytes::from_static(s.as_bytes()),
                Bytes::from_static(e.as_bytes()),
            )
        };
        let from_d = KeyRange::From(Bytes::from_static(b"d"));
        for range in [between("a", "b"), between("a", "d"), from_d.clone()] {
            for rev in 2..=4 {
                let mut scanned = 0;
                view.scan(&range, rev, &mut |_| {
                    scanned += 1;
                    ControlFlow::Continue(())
                })
                .unwrap();
                assert_eq!(view.count(&range, rev), Ok(scanned), "{range:?} at {rev}");
            }
        }
        // Asked of the base (at its own revision) exactly where no pending version shows.
        let asked = base.counts.borrow().clone();
        let want = vec![
            (between("a", "b"), 2),
            (between("a", "b"), 2),
            (between("a", "b"), 2),
            (between("a", "d"), 2),
            (from_d.clone(), 2),
            (from_d.clone(), 2),
        ];
        assert_eq!(asked, want);

        view.note_count(&from_d, 3, 1);
        view.note_count(&from_d, 4, 2);
        view.note_count(&between("a", "d"), 4, 3);
        assert_eq!(*base.notes.borrow(), vec![(from_d, 2, 1)]);
    }

    #[test]
    fn a_visitor_that_stops_is_not_called_again() {
        let store = MemStore::new();
        let mut overlay = Overlay::new(1, 0);
        for k in ["a", "b", "c"] {
            overlay.record(Bytes::from(k), 2, Some(kv(k, "v", 2)));
        }
        let base = store.view();
        let mut seen = 0;
        overlay
            .view(&base)
            .scan(&KeyRange::From(Bytes::from_static(b"a")), 2, &mut |_| {
                seen += 1;
                ControlFlow::Break(())
            })
            .unwrap();
        assert_eq!(seen, 1);
    }
}
