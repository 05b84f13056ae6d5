//! The store contract: what the core needs from whatever keeps the data.
//!
//! The core decides; the store keeps. A store applies resolved [`LogEntry`]s atomically and
//! serves reads at any retained revision. It is *not* responsible for durability of recent
//! writes — the WAL is the source of truth, and the core replays the WAL past the store's
//! applied index on open — but it must record its applied index atomically with every entry
//! so that replay starts at the right place, and make everything applied durable on
//! [`Store::persist`] (after which the core may delete the WAL that holds it).

use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::Bytes;

use crate::auth::AuthState;
use crate::kv::{Event, KeyRange, KeyValue, LeaseId, Revision};
use crate::wal::LogEntry;

/// A store failure.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The revision asked for was compacted (possible for a view older than a compaction).
    #[error("required revision has been compacted")]
    Compacted,
    /// The data on disk could not be read or written.
    #[error("{0}")]
    Io(String),
    /// The data on disk is damaged or from an unknown format.
    #[error("{0}")]
    Corrupt(String),
}

/// A consistent read-only view of a store: every read through one view sees the same applied
/// state, however many entries are applied meanwhile.
pub trait ReadView {
    /// Index of the last log entry applied in this view (0 for an empty store).
    fn applied_index(&self) -> u64;
    /// The store revision in this view (1 for an empty store).
    fn revision(&self) -> Revision;
    /// Revisions below this are compacted (0 = never compacted).
    fn compact_revision(&self) -> Revision;
    /// The oldest revision whose events this view can replay, where a compacted watch may
    /// restart: the compact revision, or, in a store loaded from a checkpoint, the revision
    /// after the checkpoint's (see [`CheckpointImage::events_from`]).
    fn events_floor(&self) -> Revision {
        self.compact_revision()
    }
    /// The key as of revision `rev` (`rev <= self.revision()`).
    fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError>;
    /// Visits, in key order, every key of `range` that exists at revision `rev`, until the
    /// visitor breaks.
    fn scan(
        &self,
        range: &KeyRange,
        rev: Revision,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;
    /// The number of keys [`ReadView::scan`] would visit for `range` at `rev` (and its
    /// error, if it would fail). A store may count without decoding the keys' versions;
    /// this default scans.
    fn count(&self, range: &KeyRange, rev: Revision) -> Result<u64, StoreError> {
        count_by_scan(self, range, rev)
    }
    /// Tells the view that `range` holds `count` keys at `rev`, a count its caller learnt
    /// without asking for it (a range that stopped at its limit knows how many keys follow
    /// its page). A store may keep it to answer a later [`ReadView::count`] of the same range
    /// at the same revision — a paged list then counts the rest of the range once, not once
    /// per page. `count` must be exact. This default forgets it.
    fn note_count(&self, range: &KeyRange, rev: Revision, count: u64) {
        let _ = (range, rev, count);
    }
    /// Visits, in revision order, the events of revisions `from..=to` (without `prev_kv`),
    /// until the visitor breaks.
    fn events(
        &self,
        from: Revision,
        to: Revision,
        visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<(), StoreError>;
}

/// The number of keys `view` scans for `range` at `rev`: a count that walks every version.
pub(crate) fn count_by_scan(
    view: &(impl ReadView + ?Sized),
    range: &KeyRange,
    rev: Revision,
) -> Result<u64, StoreError> {
    let mut n = 0;
    view.scan(range, rev, &mut |_| {
        n += 1;
        ControlFlow::Continue(())
    })?;
    Ok(n)
}

/// The state of a store at one log index, as a checkpoint holds it: what
/// [`Store::load_checkpoint`] installs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointImage {
    /// The log index the image is at: the store's applied index after loading.
    pub index: u64,
    /// The store revision.
    pub revision: Revision,
    /// The compact revision (history before the image is not in it, so reads below
    /// `revision` answer "compacted" after a load).
    pub compact_revision: Revision,
    /// Every live key, in key order.
    pub kvs: Vec<KeyValue>,
    /// Every lease with its granted TTL.
    pub leases: Vec<(LeaseId, i64)>,
    /// The auth state.
    pub auth: Arc<AuthState>,
}

impl CheckpointImage {
    /// The first revision whose events a store loaded from this image can replay: the image
    /// holds state, not the events that made it, so its own revision's events are gone —
    /// unless that is the initial revision 1, which never has events.
    pub fn events_from(&self) -> Revision {
        if self.revision <= 1 {
            0
        } else {
            self.revision + 1
        }
    }
}

/// Keeps the data: applies committed entries, serves consistent views.
///
/// Implementations: [`crate::mvcc::MemStore`] (tests, simulator) and the fjall store of the
/// adapters. `apply` is called by the core only, one entry at a time, in index order; views
/// and reads may run concurrently from any thread.
pub trait Store: Send + Sync + 'static {
    /// The view type.
    type View: ReadView + Send + 'static;

    /// A consistent view of everything applied so far.
    fn view(&self) -> Self::View;
    /// Applies one entry atomically (all of it or, after a crash, none of it), recording its
    /// index as applied.
    fn apply(&self, entry: &LogEntry) -> Result<(), StoreError>;
    /// Every lease with its granted TTL, as applied.
    fn leases(&self) -> Result<Vec<(LeaseId, i64)>, StoreError>;
    /// The auth state, as applied (the default state if none was ever logged).
    fn auth(&self) -> Result<Arc<AuthState>, StoreError>;
    /// Every `(lease, key)` attachment of live keys, as applied.
    fn lease_keys(&self) -> Result<Vec<(LeaseId, Bytes)>, StoreError>;
    /// Makes every applied entry durable.
    fn persist(&self) -> Result<(), StoreError>;
    /// Physically removes history that compaction to `revision` made unreachable. Cheap when
    /// already done. May run concurrently with `apply` and reads.
    fn compact(&self, revision: Revision) -> Result<(), StoreError>;
    /// Replaces everything the store holds with `image` (live keys, leases, revision,
    /// compact revision `max(image.compact_revision, image.revision)`, applied index, auth state), and
    /// makes it durable before returning: a crash afterwards finds the image, a crash during
    /// it finds either the old state or the image. Used when recovering from the bucket.
    fn load_checkpoint(&self, image: &CheckpointImage) -> Result<(), StoreError> {
        let _ = image;
        Err(StoreError::Io(
            "this store cannot load checkpoints".to_string(),
        ))
    }
}
