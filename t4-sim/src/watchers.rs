//! A node's watchers: live fan-out of published events, catch-up from the store.
//!
//! This is what the tokio adapter's watch streams do, without channels: each watcher is a
//! [`WatchCursor`]. A watcher that is *synced* takes each published batch live
//! (`accept_live`); one that is behind — it started in the past, or it missed a live batch
//! because its consumer was slow (the fault plan's "watch lag") — replays from a store view
//! in small batches until it has caught up, then follows live batches again. The cursor makes
//! both paths deliver each revision exactly once, which checker 4 verifies.

use t4_core::mvcc::MemView;
use t4_core::watch::{WatchCursor, WatchFilter};
use t4_core::{Error, Event, Instant, ReadView, Revision};

use crate::history::{History, WatchEnd, WatchId};
use crate::rng::SimRng;

struct Watcher {
    id: WatchId,
    cursor: WatchCursor,
    synced: bool,
}

/// The watchers of one running node.
#[derive(Default)]
pub struct Watchers {
    list: Vec<Watcher>,
}

/// What a catch-up round did.
#[derive(Debug, Default)]
pub struct Pumped {
    /// Some watcher is still behind: run another round.
    pub again: bool,
    /// Watchers cancelled, with why (a compacted revision, or a store error).
    pub cancelled: Vec<(WatchId, Error)>,
}

impl Watchers {
    /// Opens a watch for `client` from `start` (0 = after the current revision). Returns
    /// whether it needs a catch-up round (false when it was refused as compacted).
    pub fn open(
        &mut self,
        history: &mut History,
        view: &MemView,
        client: usize,
        filter: WatchFilter,
        start: Revision,
        now: Instant,
    ) -> (WatchId, bool) {
        let resolved = if start <= 0 {
            view.revision() + 1
        } else {
            start
        };
        let id = history.open_watch(client, filter.clone(), start, resolved, now);
        if resolved < view.compact_revision() {
            let end = WatchEnd::Compacted {
                at: now,
                next: resolved,
            };
            history.end_watch(id, end);
            return (id, false);
        }
        self.list.push(Watcher {
            id,
            cursor: WatchCursor::new(filter, resolved),
            synced: false,
        });
        (id, true)
    }

    /// Delivers a published batch to every synced watcher; a watcher lags (misses the batch)
    /// with probability `lag_ppm`. Returns whether some watcher needs a catch-up round.
    pub fn publish(
        &mut self,
        rng: &mut SimRng,
        history: &mut History,
        events: &[Event],
        lag_ppm: u32,
        now: Instant,
    ) -> bool {
        let mut behind = false;
        for w in self.list.iter_mut().filter(|w| w.synced) {
            if rng.chance(lag_ppm) {
                // A slow consumer: the live batch is dropped for it (a lagged broadcast).
                w.synced = false;
                behind = true;
                continue;
            }
            match w.cursor.accept_live(events) {
                Some(out) if !out.is_empty() => history.deliver(w.id, now, out),
                Some(_) => {}
                None => {
                    w.synced = false;
                    behind = true;
                }
            }
        }
        behind
    }

    /// One catch-up round: every watcher behind `view` replays a few events from it.
    pub fn pump(
        &mut self,
        rng: &mut SimRng,
        history: &mut History,
        view: &MemView,
        now: Instant,
    ) -> Pumped {
        let mut out = Pumped::default();
        let mut i = 0;
        while i < self.list.len() {
            let w = &mut self.list[i];
            if w.synced || w.cursor.next > view.revision() {
                w.synced = true;
                i += 1;
                continue;
            }
            let max = 1 + rng.index(8);
            match w.cursor.replay(view, max) {
                Ok(events) => {
                    if !events.is_empty() {
                        history.deliver(w.id, now, events);
                    }
                    w.synced = w.cursor.next > view.revision();
                    out.again |= !w.synced;
                    i += 1;
                }
                Err(e) => {
                    let w = self.list.remove(i);
                    let end = WatchEnd::Compacted {
                        at: now,
                        next: w.cursor.next,
                    };
                    history.end_watch(w.id, end);
                    out.cancelled.push((w.id, e));
                }
            }
        }
        out
    }

    /// Whether every watcher has caught up.
    pub fn all_synced(&self) -> bool {
        self.list.iter().all(|w| w.synced)
    }

    /// The node crashed: every stream breaks where its cursor stands.
    pub fn close_all(&mut self, history: &mut History, now: Instant) {
        for w in self.list.drain(..) {
            let end = WatchEnd::Closed {
                at: now,
                next: w.cursor.next,
            };
            history.end_watch(w.id, end);
        }
    }

    /// The run ends: every watcher is recorded as live at its cursor.
    pub fn end_all_live(&self, history: &mut History) {
        for w in &self.list {
            history.end_watch(
                w.id,
                WatchEnd::Live {
                    next: w.cursor.next,
                },
            );
        }
    }
}
