//! The store as the node's handles and watches see it: there until the node closes.
//!
//! Closing must let go of the data dir — fjall holds a lock on it as long as any handle to
//! the database lives — so that `Node::close().await` followed by `Node::open` of the same
//! directory works even while old `Node` clones or `Watch`es are still around. Every reader
//! therefore goes through this slot, and `close` takes the store out of it.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use t4_core::{ReadView, Revision, Store};

use crate::error::{Error, Result};
use crate::store::{FjallStore, FjallView};

enum State {
    /// The store, and a view of it as of the last apply that reads share: taking a fjall
    /// snapshot per read would cost a point get about as much as the lookup itself.
    Open {
        store: FjallStore,
        latest: Arc<FjallView>,
    },
    /// The node closed; reads fail with [`Error::Closed`]. The revisions at close stay
    /// readable through the infallible getters.
    Closed {
        revision: Revision,
        compact_revision: Revision,
    },
}

/// The store until the node closes.
pub(crate) struct StoreSlot {
    state: RwLock<State>,
    /// The newest revision a writer has been told of. A write is answered once it is
    /// durable, possibly before its apply to the store is done; reads wait until the view
    /// reaches this revision, so an answered write is visible to every read after the answer.
    acknowledged: AtomicI64,
    /// An apply failed: the writes answered after the last good one never become visible
    /// (until a restart replays them from the WAL), so reads waiting for them fail.
    apply_failed: AtomicBool,
    /// Reads waiting right now for the view to reach the acknowledged revision: the driver
    /// then applies on the core's task rather than hand the apply to a thread to wake.
    readers_waiting: AtomicUsize,
}

/// Counts a read as waiting for an apply while it lives.
pub(crate) struct WaitingReader<'a>(&'a AtomicUsize);

impl Drop for WaitingReader<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StoreSlot {
    pub(crate) fn new(store: FjallStore) -> StoreSlot {
        let latest = store.view();
        StoreSlot {
            acknowledged: AtomicI64::new(latest.revision()),
            apply_failed: AtomicBool::new(false),
            readers_waiting: AtomicUsize::new(0),
            state: RwLock::new(State::Open {
                latest: Arc::new(latest),
                store,
            }),
        }
    }

    /// Runs `read` on the store, or fails with [`Error::Closed`]. The slot stays locked for
    /// reading meanwhile, so [`StoreSlot::close`] waits for reads in progress: no view of the
    /// store outlives the close.
    pub(crate) fn read<T>(&self, read: impl FnOnce(&FjallStore) -> T) -> Result<T> {
        // A panic inside `read` cannot leave the state half-changed (readers do not change
        // it), so a poisoned lock is still right.
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Open { store, .. } => Ok(read(store)),
            State::Closed { .. } => Err(Error::Closed),
        }
    }

    /// Runs `read` on the view as of the last [`StoreSlot::refresh`], or fails with
    /// [`Error::Closed`].
    pub(crate) fn read_latest<T>(&self, read: impl FnOnce(&FjallView) -> T) -> Result<T> {
        let latest = match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Open { latest, .. } => latest.clone(),
            State::Closed { .. } => return Err(Error::Closed),
        };
        Ok(read(&latest))
    }

    /// Like [`StoreSlot::read_latest`], but reads under the slot's lock instead of taking
    /// a reference to the view: for reads as short as a point get, where the reference
    /// count's two atomic operations are a noticeable part of the cost. A refresh waits for
    /// such reads, so keep them short.
    pub(crate) fn read_latest_briefly<T>(&self, read: impl FnOnce(&FjallView) -> T) -> Result<T> {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Open { latest, .. } => Ok(read(latest)),
            State::Closed { .. } => Err(Error::Closed),
        }
    }

    /// Shares `view` as the latest, after an apply. Writes may be answered before (they are
    /// durable), after [`StoreSlot::acknowledge`]: reads wait for the view to catch up.
    pub(crate) fn refresh(&self, view: FjallView) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        if let State::Open { latest, .. } = &mut *state {
            *latest = Arc::new(view);
        }
    }

    /// Records that writes up to `revision` may be answered (they are durable), before the
    /// answers go out.
    pub(crate) fn acknowledge(&self, revision: Revision) {
        self.acknowledged.fetch_max(revision, Ordering::SeqCst);
    }

    /// The newest revision a writer may have been told of.
    pub(crate) fn acknowledged(&self) -> Revision {
        self.acknowledged.load(Ordering::SeqCst)
    }

    /// Counts a read as waiting for an apply until the returned guard is dropped.
    pub(crate) fn reader_waits(&self) -> WaitingReader<'_> {
        self.readers_waiting.fetch_add(1, Ordering::SeqCst);
        WaitingReader(&self.readers_waiting)
    }

    /// Whether a read waits for an apply right now.
    pub(crate) fn readers_waiting(&self) -> bool {
        self.readers_waiting.load(Ordering::SeqCst) > 0
    }

    /// Records that an apply failed (before the applied revision's watchers are woken).
    pub(crate) fn fail_applies(&self) {
        self.apply_failed.store(true, Ordering::SeqCst);
    }

    /// Whether an apply failed.
    pub(crate) fn applies_failed(&self) -> bool {
        self.apply_failed.load(Ordering::SeqCst)
    }

    /// The current and compact revision: the store's, or the last ones after close.
    pub(crate) fn revisions(&self) -> (Revision, Revision) {
        match &*self.state.read().unwrap_or_else(|e| e.into_inner()) {
            State::Open { latest, .. } => (latest.revision(), latest.compact_revision()),
            State::Closed {
                revision,
                compact_revision,
            } => (*revision, *compact_revision),
        }
    }

    /// Takes the store away: later reads fail with [`Error::Closed`]. Waits for reads in
    /// progress. Dropping the returned store releases the data dir once the node's threads
    /// dropped theirs.
    pub(crate) fn close(&self) -> Option<FjallStore> {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let State::Open { latest, .. } = &*state else {
            return None;
        };
        let closed = State::Closed {
            revision: latest.revision(),
            compact_revision: latest.compact_revision(),
        };
        match std::mem::replace(&mut *state, closed) {
            State::Open { store, .. } => Some(store),
            State::Closed { .. } => None,
        }
    }
}
