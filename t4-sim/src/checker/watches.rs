//! Checker 4: each watch delivers exactly the committed events after its start revision, in
//! order, once.
//!
//! For every watch the expected stream is computed from the committed log: every event of
//! every revision from the watch's start on that its filter selects, shaped as the watch asked
//! (with or without `prev_kv`). Then:
//!
//! * what it delivered, concatenated, is that stream cut at the revision its cursor reached —
//!   nothing missing, nothing extra, nothing twice, nothing out of order;
//! * each delivery holds whole revisions (a revision's events never straddle two deliveries);
//! * a watch still open at the end of the run has caught up with the last revision;
//! * a watch cancelled for compaction really needed a compacted revision;
//! * a watch asked to start at revision `r > 0` starts there.
//!
//! `prev_kv` is compared exactly, except that a watch replaying history may legitimately omit
//! it when the previous version was compacted away (etcd does the same).

use t4_core::{Event, EventKind, Revision};

use t4_core::Instant;

use super::{Kind, Violation, Window};
use crate::history::{History, Watch, WatchEnd};
use crate::timeline::Timeline;

/// What the watch checker found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WatchResult {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Events checked.
    pub events: usize,
}

fn selects(w: &Watch, e: &Event) -> bool {
    let kind_ok = match e.kind {
        EventKind::Put => !w.filter.no_put,
        EventKind::Delete => !w.filter.no_delete,
    };
    kind_ok && w.filter.range.contains(&e.kv.key)
}

fn same_event(delivered: &Event, expected: &Event, max_compact: Revision) -> bool {
    if delivered.kind != expected.kind || delivered.kv != expected.kv {
        return false;
    }
    match (&delivered.prev_kv, &expected.prev_kv) {
        (d, e) if d == e => true,
        (None, Some(prev)) => prev.mod_revision < max_compact,
        _ => false,
    }
}

/// Checks the watches created in `window` against the committed log replayed in `timeline`.
pub fn check(history: &History, timeline: &Timeline, window: Window) -> WatchResult {
    let mut out = WatchResult::default();
    let last = timeline.revision_at(timeline.last_step());
    // A store rebuilt from a bucket checkpoint has no history before it: as if compacted.
    let max_compact = timeline
        .max_compact()
        .max(history.rebuild_floor(Instant(u64::MAX)));
    for w in history
        .watches
        .iter()
        .filter(|w| window.contains(w.created))
    {
        if let Some(v) = check_one(w, timeline, last, max_compact, &mut out.events) {
            out.violations.push(Violation::new(
                Kind::Watch,
                format!(
                    "watch #{} (client c{}, from revision {}): {v}",
                    w.id, w.client, w.start
                ),
            ));
        }
    }
    out
}

fn check_one(
    w: &Watch,
    timeline: &Timeline,
    last: Revision,
    max_compact: Revision,
    count: &mut usize,
) -> Option<String> {
    if w.requested_start > 0 && w.start != w.requested_start {
        return Some(format!(
            "asked to start at {} but started at {}",
            w.requested_start, w.start
        ));
    }
    // Deliveries hold whole revisions, in order.
    let mut prev_last: Option<Revision> = None;
    for (i, b) in w.batches.iter().enumerate() {
        let (Some(first), Some(end)) = (b.events.first(), b.events.last()) else {
            return Some(format!("delivery {i} is empty"));
        };
        if b.events
            .windows(2)
            .any(|p| p[0].kv.mod_revision > p[1].kv.mod_revision)
        {
            return Some(format!("delivery {i} is out of revision order"));
        }
        if prev_last.is_some_and(|p| p >= first.kv.mod_revision) {
            return Some(format!(
                "delivery {i} starts at revision {} but an earlier delivery already reached revision {}: a revision was split or repeated",
                first.kv.mod_revision,
                prev_last.unwrap_or_default()
            ));
        }
        prev_last = Some(end.kv.mod_revision);
    }
    let delivered: Vec<&Event> = w.batches.iter().flat_map(|b| b.events.iter()).collect();
    *count += delivered.len();
    let (upto, what) = match &w.end {
        WatchEnd::Open => return None,
        WatchEnd::Live { next } => {
            if *next <= last {
                return Some(format!(
                    "still open at the end of the run but only delivered up to revision {} of {last}",
                    next - 1
                ));
            }
            (last, "everything")
        }
        WatchEnd::Closed { next, .. } => (next - 1, "up to where its stream broke"),
        WatchEnd::Compacted { next, .. } => {
            if *next >= max_compact {
                return Some(format!(
                    "cancelled for compaction at revision {next}, but nothing at or above it was ever compacted (compact revision {max_compact})"
                ));
            }
            (next - 1, "up to its cancellation")
        }
    };
    let expected: Vec<Event> = timeline
        .events(w.start, upto)
        .filter(|e| selects(w, e))
        .map(|e| Event {
            kind: e.kind,
            kv: e.kv.clone(),
            prev_kv: if w.filter.prev_kv {
                e.prev_kv.clone()
            } else {
                None
            },
        })
        .collect();
    for (i, e) in expected.iter().enumerate() {
        match delivered.get(i) {
            None => {
                return Some(format!(
                    "should have delivered {what} ({} events) but delivered {}; first missing: {} {} at revision {}",
                    expected.len(),
                    delivered.len(),
                    if e.kind == EventKind::Put {
                        "put"
                    } else {
                        "delete"
                    },
                    crate::history::show_bytes(&e.kv.key),
                    e.kv.mod_revision
                ));
            }
            Some(d) if !same_event(d, e, max_compact) => {
                return Some(format!(
                    "event {i} is {:?} {} at revision {}, expected {:?} {} at revision {} (missing, duplicated or reordered)",
                    d.kind,
                    crate::history::show_bytes(&d.kv.key),
                    d.kv.mod_revision,
                    e.kind,
                    crate::history::show_bytes(&e.kv.key),
                    e.kv.mod_revision
                ));
            }
            Some(_) => {}
        }
    }
    if delivered.len() > expected.len() {
        let extra = delivered[expected.len()];
        return Some(format!(
            "delivered {} events but only {} were committed {what}; first extra: {:?} {} at revision {}",
            delivered.len(),
            expected.len(),
            extra.kind,
            crate::history::show_bytes(&extra.kv.key),
            extra.kv.mod_revision
        ));
    }
    None
}
