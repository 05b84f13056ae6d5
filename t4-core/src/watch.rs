//! Watch semantics shared by every adapter: which events a watch wants, and replay of
//! history from the store for watches that start in the past or fell behind.

use std::ops::ControlFlow;

use crate::error::Error;
use crate::kv::{Event, EventKind, KeyRange, Revision};
use crate::mvcc::ReadView;

/// What one watch selects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchFilter {
    /// Keys watched.
    pub range: KeyRange,
    /// Drop put events (etcd's NOPUT filter).
    pub no_put: bool,
    /// Drop delete events (etcd's NODELETE filter).
    pub no_delete: bool,
    /// Include the previous key-value pair in events.
    pub prev_kv: bool,
}

impl WatchFilter {
    /// Whether `event` is for this watch.
    pub fn matches(&self, event: &Event) -> bool {
        let kind_ok = match event.kind {
            EventKind::Put => !self.no_put,
            EventKind::Delete => !self.no_delete,
        };
        kind_ok && self.range.contains(&event.kv.key)
    }

    /// `event` as this watch delivers it (without `prev_kv` unless asked).
    pub fn shape(&self, event: &Event) -> Event {
        Event {
            kind: event.kind,
            kv: event.kv.clone(),
            prev_kv: if self.prev_kv {
                event.prev_kv.clone()
            } else {
                None
            },
        }
    }
}

/// A chunk of replayed history.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// Matching events, in revision order, shaped for the watch.
    pub events: Vec<Event>,
    /// The first revision not yet replayed.
    pub next: Revision,
}

/// Replays the events of revisions `from..=view.revision()` that `filter` selects, stopping
/// after the revision during which `max_events` is reached (a revision is never split).
///
/// Fails with [`Error::Compacted`] if `from` is below the view's compact revision.
pub fn replay(
    view: &impl ReadView,
    filter: &WatchFilter,
    from: Revision,
    max_events: usize,
) -> Result<Replay, Error> {
    if from < view.compact_revision() {
        return Err(Error::Compacted);
    }
    let last = view.revision();
    let mut out = Replay {
        events: Vec::new(),
        next: last + 1,
    };
    let mut stop_after: Option<Revision> = None;
    let mut matched = Vec::new();
    view.events(from, last, &mut |event| {
        let rev = event.revision();
        if let Some(stop) = stop_after
            && rev > stop
        {
            out.next = rev;
            return ControlFlow::Break(());
        }
        if filter.matches(&event) {
            matched.push(event);
            if matched.len() >= max_events && stop_after.is_none() {
                stop_after = Some(rev);
            }
        }
        ControlFlow::Continue(())
    })?;
    for mut event in matched {
        // An event that creates its key has no prev_kv, as in etcd (which skips the lookup), even
        // when the same revision deleted an older version of the key first.
        let creates = event.kind == EventKind::Put && event.kv.create_revision == event.revision();
        if filter.prev_kv && !creates {
            // The store keeps no prev_kv with events; read it from the revision before.
            // A compacted previous version simply yields no prev_kv, as in etcd.
            event.prev_kv = view.get(&event.kv.key, event.revision() - 1).ok().flatten();
        }
        out.events.push(filter.shape(&event));
    }
    Ok(out)
}

/// Where one watch stands: the next revision it must deliver. Every adapter drives watches
/// through a cursor, which is what makes delivery exactly-once and in order whether events
/// arrive live (from [`crate::Action::Publish`]) or are replayed from the store after the
/// watch started in the past or fell behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchCursor {
    /// What the watch selects.
    pub filter: WatchFilter,
    /// The first revision not yet delivered.
    pub next: Revision,
}

impl WatchCursor {
    /// A cursor that delivers revisions from `start` on.
    pub fn new(filter: WatchFilter, start: Revision) -> WatchCursor {
        WatchCursor {
            filter,
            next: start,
        }
    }

    /// Takes a batch of live events. Returns what to deliver, or `None` if the batch starts
    /// after a revision the cursor has not seen yet (the watch fell behind or has not caught
    /// up: replay from the store first). Revisions already delivered are skipped.
    pub fn accept_live(&mut self, events: &[Event]) -> Option<Vec<Event>> {
        let first = events.first()?.revision();
        if first > self.next {
            return None;
        }
        let mut out = Vec::new();
        for event in events.iter().filter(|e| e.revision() >= self.next) {
            if self.filter.matches(event) {
                out.push(self.filter.shape(event));
            }
        }
        if let Some(last) = events.last() {
            self.next = self.next.max(last.revision() + 1);
        }
        Some(out)
    }

    /// Replays up to about `max_events` events from `view`, advancing the cursor. The watch
    /// is caught up with `view` when `self.next > view.revision()` afterwards.
    pub fn replay(&mut self, view: &impl ReadView, max_events: usize) -> Result<Vec<Event>, Error> {
        let r = replay(view, &self.filter, self.next, max_events)?;
        self.next = self.next.max(r.next);
        Ok(r.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KeyValue;
    use crate::mvcc::{MemStore, Store};
    use crate::wal::{Change, LogEntry, LogOp};
    use bytes::Bytes;

    fn put_entry(index: u64, rev: Revision, key: &'static str, version: i64) -> LogEntry {
        let kv = KeyValue {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from(format!("v{rev}")),
            create_revision: rev - version + 1,
            mod_revision: rev,
            version,
            lease: 0,
        };
        LogEntry {
            index,
            term: 1,
            ops: vec![LogOp::Revision {
                revision: rev,
                changes: vec![Change::Put { kv, prev_lease: 0 }],
            }],
        }
    }

    fn filter(prefix: &'static str, prev_kv: bool) -> WatchFilter {
        WatchFilter {
            range: KeyRange::prefix(Bytes::from_static(prefix.as_bytes())),
            no_put: false,
            no_delete: false,
            prev_kv,
        }
    }

    #[test]
    fn replay_returns_matching_events_with_prev_kv_and_stops_on_revision_boundaries() {
        let s = MemStore::new();
        s.apply(&put_entry(1, 2, "a/1", 1)).unwrap();
        s.apply(&put_entry(2, 3, "b/1", 1)).unwrap();
        s.apply(&put_entry(3, 4, "a/1", 2)).unwrap();
        s.apply(&put_entry(4, 5, "a/2", 1)).unwrap();
        let v = s.view();
        let r = replay(&v, &filter("a/", true), 1, 100).unwrap();
        assert_eq!(
            r.events.iter().map(|e| e.revision()).collect::<Vec<_>>(),
            vec![2, 4, 5]
        );
        assert_eq!(r.events[1].prev_kv.as_ref().unwrap().value, "v2");
        assert_eq!(r.next, 6);

        let r = replay(&v, &filter("a/", false), 3, 1).unwrap();
        assert_eq!(r.events.len(), 1);
        assert_eq!(r.events[0].revision(), 4);
        assert!(r.events[0].prev_kv.is_none());
        assert_eq!(r.next, 5);
    }

    #[test]
    fn replay_from_a_compacted_revision_fails() {
        let s = MemStore::new();
        s.apply(&put_entry(1, 2, "a", 1)).unwrap();
        s.apply(&LogEntry {
            index: 2,
            term: 1,
            ops: vec![LogOp::Compact { revision: 2 }],
        })
        .unwrap();
        assert_eq!(
            replay(&s.view(), &filter("a", false), 1, 10),
            Err(Error::Compacted)
        );
        assert!(replay(&s.view(), &filter("a", false), 2, 10).is_ok());
    }

    #[test]
    fn a_cursor_delivers_each_revision_once_across_replay_and_live_events() {
        let s = MemStore::new();
        s.apply(&put_entry(1, 2, "a", 1)).unwrap();
        s.apply(&put_entry(2, 3, "a", 2)).unwrap();
        let mut c = WatchCursor::new(filter("a", false), 2);
        // A live batch from the future cannot be taken before replay.
        let live4 = vec![Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: Bytes::from_static(b"a"),
                mod_revision: 4,
                ..Default::default()
            },
            prev_kv: None,
        }];
        assert_eq!(c.accept_live(&live4), None);
        let replayed = c.replay(&s.view(), 100).unwrap();
        assert_eq!(
            replayed.iter().map(|e| e.revision()).collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert_eq!(c.next, 4);
        // A live batch overlapping what replay delivered is deduplicated.
        s.apply(&put_entry(3, 4, "a", 3)).unwrap();
        let overlap = vec![replayed[1].clone(), live4[0].clone()];
        assert_eq!(
            c.accept_live(&overlap)
                .unwrap()
                .iter()
                .map(|e| e.revision())
                .collect::<Vec<_>>(),
            vec![4]
        );
        assert_eq!(c.accept_live(&overlap).unwrap(), vec![]);
        assert_eq!(c.next, 5);
    }

    #[test]
    fn filters_drop_puts_or_deletes() {
        let ev = |kind| Event {
            kind,
            kv: KeyValue {
                key: Bytes::from_static(b"k"),
                ..Default::default()
            },
            prev_kv: None,
        };
        let mut f = filter("k", false);
        f.no_put = true;
        assert!(!f.matches(&ev(EventKind::Put)));
        assert!(f.matches(&ev(EventKind::Delete)));
        f.no_put = false;
        f.no_delete = true;
        assert!(f.matches(&ev(EventKind::Put)));
        assert!(!f.matches(&ev(EventKind::Delete)));
    }
}
