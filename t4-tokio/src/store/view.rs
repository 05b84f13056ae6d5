//! Reads: a view is a fjall snapshot plus the `state` record read from that same snapshot.

use std::borrow::Cow;
use std::ops::{Bound, ControlFlow};
use std::sync::Arc;

use bytes::Bytes;
use fjall::{Readable, Snapshot};
use t4_core::kv::MAX_KEY_LEN;
use t4_core::{Event, EventKind, KeyRange, KeyValue, LeaseId, ReadView, Revision, StoreError};

use super::format::{self, State};
use super::{Inner, corrupt, io, read_leases};

/// A consistent view of a [`super::FjallStore`]: a fjall snapshot, so entries applied (and
/// history compacted) after it was taken are invisible to it.
///
/// A view pins the versions it can see inside fjall; hold it for a read, not for ever.
/// Cloning shares the snapshot (no new one, no new read of the state record).
#[derive(Clone)]
pub struct FjallView {
    inner: Arc<Inner>,
    snapshot: Snapshot,
    state: State,
    /// The latest-version cache's generation when the snapshot was taken.
    generation: u64,
    /// Set when the view's own `state` could not be read: every read then fails with it.
    broken: Option<StoreError>,
}

impl std::fmt::Debug for FjallView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallView")
            .field("state", &self.state)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// A scan bound that selects the same stored keys as `bound` and that fjall can hold.
///
/// Stored keys are at most [`MAX_KEY_LEN`] bytes, and fjall panics on keys over 64 KiB, so a
/// longer bound (a client may send any range end) is replaced by the shortest equivalent
/// one: for every key `k` of at most `MAX_KEY_LEN` bytes, `k >= b` exactly when
/// `k >= b[..MAX_KEY_LEN] ++ [0]`, and `k < b` exactly when `k < b[..MAX_KEY_LEN] ++ [0]`.
/// The result (and its escaped form in `history`) stays under fjall's limit.
fn storable_bound(bound: &[u8]) -> Cow<'_, [u8]> {
    if bound.len() <= MAX_KEY_LEN + 1 {
        return Cow::Borrowed(bound);
    }
    let mut b = bound[..MAX_KEY_LEN].to_vec();
    b.push(0);
    Cow::Owned(b)
}

/// What a scan of a [`KeyRange`] reads in the store.
enum Bounds<'a> {
    /// One key: a point read.
    Key(&'a Bytes),
    /// No key at all.
    None,
    /// The keys from the first bound up to the second (excluded; `None`: to the end), as
    /// bounds fjall can hold ([`storable_bound`]).
    Range(Cow<'a, [u8]>, Option<Cow<'a, [u8]>>),
}

impl<'a> Bounds<'a> {
    fn of(range: &'a KeyRange) -> Bounds<'a> {
        match range {
            KeyRange::Single(key) => Bounds::Key(key),
            KeyRange::From(start) => Bounds::Range(storable_bound(start), None),
            KeyRange::Between(start, end) if end > start => {
                Bounds::Range(storable_bound(start), Some(storable_bound(end)))
            }
            KeyRange::Between(..) => Bounds::None,
        }
    }
}

impl FjallView {
    pub(super) fn new(inner: Arc<Inner>) -> FjallView {
        // Before the snapshot: a checkpoint install between the two then refuses this
        // view's fills instead of taking them as the new store's.
        let generation = inner.cache.generation();
        let snapshot = inner.db.snapshot();
        let read = match snapshot.get(&inner.meta, format::STATE_KEY) {
            Ok(Some(raw)) => State::decode(&raw).ok_or_else(|| corrupt("malformed state record")),
            Ok(None) => Err(corrupt("the state record is missing")),
            Err(e) => Err(io("reading the store state")(e)),
        };
        let (state, broken) = match read {
            Ok(state) => (state, None),
            // `Store::view` cannot fail; report the error on the view's first read, and give
            // the numbers of the latest apply meanwhile.
            Err(e) => (*inner.lock_state(), Some(e)),
        };
        FjallView {
            inner,
            snapshot,
            state,
            generation,
            broken,
        }
    }

    /// Every lease with its granted TTL, as of this view (consistent with its keys, so a
    /// snapshot never holds a key attached to a lease it lacks).
    pub fn leases(&self) -> Result<Vec<(LeaseId, i64)>, StoreError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        read_leases(&self.inner, &self.snapshot)
    }

    /// The revision a read at `rev` is served at, or why it cannot be.
    fn read_at(&self, rev: Revision) -> Result<Revision, StoreError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let rev = rev.min(self.state.revision);
        if rev < self.state.floor() {
            return Err(StoreError::Compacted);
        }
        Ok(rev)
    }

    /// The latest version of `key` (undecoded) at the view's revision: from the
    /// latest-version cache if it holds the key's version there, else from `latest` (and
    /// then offered to the cache).
    fn current_version(&self, key: &[u8]) -> Result<Option<Bytes>, StoreError> {
        let at = self.state.revision;
        if let Some(version) = self.inner.cache.get(key, at) {
            return Ok(Some(version));
        }
        let version = self
            .snapshot
            .get(&self.inner.latest, key)
            .map_err(io("reading a key"))?
            .map(Bytes::from);
        if let Some(version) = &version
            && let Some(mod_revision) = format::version_mod_revision(version)
        {
            self.inner
                .cache
                .fill(key, mod_revision, version, at, self.generation);
        }
        Ok(version)
    }

    /// `key` at the view's revision: what [`ReadView::get`] answers at
    /// [`ReadView::revision`], with the caller's key in the answer instead of a copy.
    pub(crate) fn get_current(&self, key: Bytes) -> Result<Option<KeyValue>, StoreError> {
        self.read_at(self.state.revision)?;
        if key.len() > MAX_KEY_LEN {
            return Ok(None);
        }
        match self.current_version(&key)? {
            None => Ok(None),
            Some(v) => format::decode_version(key, v).map_err(corrupt),
        }
    }

    fn get_history(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
        let lower = format::history_key(key, Revision::MIN);
        let upper = format::history_key(key, rev);
        match self
            .snapshot
            .range(&self.inner.history, lower..=upper)
            .next_back()
        {
            None => Ok(None),
            Some(guard) => {
                let v = guard.value().map_err(io("reading history"))?;
                format::decode_version(Bytes::copy_from_slice(key), v.into()).map_err(corrupt)
            }
        }
    }

    /// The entries of `latest` from `lower` up to `upper` (excluded; `None`: to the end), as
    /// the store's scans and counts walk them (and note the scan for `overwrites.rs`).
    fn latest_entries(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
    ) -> impl Iterator<Item = fjall::Guard> {
        self.inner.scanning_latest();
        let upper = upper.map_or(Bound::Unbounded, Bound::Excluded);
        self.snapshot
            .range::<&[u8], _>(&self.inner.latest, (Bound::Included(lower), upper))
    }

    fn scan_latest(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        for guard in self.latest_entries(lower, upper) {
            let (key, v) = guard.into_inner().map_err(io("scanning keys"))?;
            let kv = format::decode_version(key.into(), v.into())
                .map_err(corrupt)?
                .ok_or_else(|| corrupt("a tombstone in the latest keyspace"))?;
            if visit(kv).is_break() {
                break;
            }
        }
        Ok(())
    }

    /// Counts the keys of `latest` in the bounds: the same walk as [`Self::scan_latest`],
    /// without decoding a version.
    fn count_latest(&self, lower: &[u8], upper: Option<&[u8]>) -> Result<u64, StoreError> {
        let mut n = 0;
        for guard in self.latest_entries(lower, upper) {
            guard.key().map_err(io("counting keys"))?;
            n += 1;
        }
        Ok(n)
    }

    fn scan_history(
        &self,
        lower: &[u8],
        upper: Option<&[u8]>,
        rev: Revision,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let lower = format::escaped(lower);
        let upper = upper.map(format::escaped);
        let upper = upper.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
        // Versions come by key, oldest first: the last one at or below `rev` before the key
        // changes is the key's state at `rev`.
        let mut candidate: Option<(Bytes, Bytes)> = None;
        let emit = |candidate: Option<(Bytes, Bytes)>,
                    visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>|
         -> Result<ControlFlow<()>, StoreError> {
            let Some((hk, v)) = candidate else {
                return Ok(ControlFlow::Continue(()));
            };
            let (escaped, _) =
                format::split_history_key(&hk).ok_or_else(|| corrupt("malformed history key"))?;
            let key = format::unescape(escaped).ok_or_else(|| corrupt("malformed history key"))?;
            match format::decode_version(key.into(), v).map_err(corrupt)? {
                Some(kv) => Ok(visit(kv)),
                None => Ok(ControlFlow::Continue(())),
            }
        };
        for guard in self.snapshot.range::<&[u8], _>(
            &self.inner.history,
            (Bound::Included(lower.as_slice()), upper),
        ) {
            let (hk, v) = guard.into_inner().map_err(io("scanning history"))?;
            let (escaped, version_rev) =
                format::split_history_key(&hk).ok_or_else(|| corrupt("malformed history key"))?;
            let same_key = candidate
                .as_ref()
                .and_then(|(c, _)| format::split_history_key(c))
                .is_some_and(|(c, _)| c == escaped);
            if !same_key && emit(candidate.take(), visit)?.is_break() {
                return Ok(());
            }
            if version_rev <= rev {
                candidate = Some((hk.into(), v.into()));
            }
        }
        let _ = emit(candidate, visit)?;
        Ok(())
    }
}

impl ReadView for FjallView {
    fn applied_index(&self) -> u64 {
        self.state.applied_index
    }

    fn events_floor(&self) -> Revision {
        self.state.compact_revision.max(self.state.events_from)
    }

    fn revision(&self) -> Revision {
        self.state.revision
    }

    fn compact_revision(&self) -> Revision {
        self.state.compact_revision
    }

    fn get(&self, key: &[u8], rev: Revision) -> Result<Option<KeyValue>, StoreError> {
        let rev = self.read_at(rev)?;
        if key.len() > MAX_KEY_LEN {
            // No such key is ever stored (and fjall cannot look one up).
            return Ok(None);
        }
        if rev == self.state.revision {
            match self.current_version(key)? {
                None => Ok(None),
                Some(v) => format::decode_version(Bytes::copy_from_slice(key), v).map_err(corrupt),
            }
        } else {
            self.get_history(key, rev)
        }
    }

    fn scan(
        &self,
        range: &KeyRange,
        rev: Revision,
        visit: &mut dyn FnMut(KeyValue) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let rev = self.read_at(rev)?;
        match Bounds::of(range) {
            Bounds::Key(key) => {
                if let Some(kv) = self.get(key, rev)? {
                    let _ = visit(kv);
                }
                Ok(())
            }
            Bounds::None => Ok(()),
            Bounds::Range(lower, upper) if rev == self.state.revision => {
                self.scan_latest(&lower, upper.as_deref(), visit)
            }
            Bounds::Range(lower, upper) => self.scan_history(&lower, upper.as_deref(), rev, visit),
        }
    }

    fn count(&self, range: &KeyRange, rev: Revision) -> Result<u64, StoreError> {
        let rev = self.read_at(rev)?;
        let (lower, upper) = match Bounds::of(range) {
            Bounds::Key(key) => return Ok(u64::from(self.get(key, rev)?.is_some())),
            Bounds::None => return Ok(0),
            Bounds::Range(lower, upper) => (lower, upper),
        };
        let counts = &self.inner.counts;
        if let Some(n) = counts.get(&self.inner.cache, self.generation, rev, range) {
            return Ok(n);
        }
        let n = if rev == self.state.revision {
            self.count_latest(&lower, upper.as_deref())?
        } else {
            let mut n = 0;
            self.scan_history(&lower, upper.as_deref(), rev, &mut |_| {
                n += 1;
                ControlFlow::Continue(())
            })?;
            n
        };
        counts.insert(&self.inner.cache, self.generation, rev, range, n);
        Ok(n)
    }

    fn note_count(&self, range: &KeyRange, rev: Revision, count: u64) {
        if let Ok(rev) = self.read_at(rev)
            && matches!(Bounds::of(range), Bounds::Range(..))
        {
            let counts = &self.inner.counts;
            counts.insert(&self.inner.cache, self.generation, rev, range, count);
        }
    }

    fn events(
        &self,
        from: Revision,
        to: Revision,
        visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<(), StoreError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let to = to.min(self.state.revision);
        if from > to {
            return Ok(());
        }
        if from < self.state.floor() || from < self.state.events_from {
            return Err(StoreError::Compacted);
        }
        let lower = super::record_holding(&self.snapshot, &self.inner.changes, from)?;
        let upper = format::changes_key(to, u32::MAX);
        for guard in self
            .snapshot
            .range(&self.inner.changes, lower..=upper.to_vec())
        {
            let (ck, record) = guard.into_inner().map_err(io("reading the revision log"))?;
            for change in super::decode_record(&ck, record.into())? {
                if change.revision < from {
                    continue;
                }
                if change.revision > to {
                    return Ok(());
                }
                if self.visit_change(change, visit)?.is_break() {
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl FjallView {
    /// Hands `visit` the event of one change, its value read from `history`.
    fn visit_change(
        &self,
        change: format::ChangeRecord,
        visit: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, StoreError> {
        let format::ChangeRecord {
            revision: rev,
            tombstone,
            key,
        } = change;
        let event = if tombstone {
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key,
                    mod_revision: rev,
                    ..KeyValue::default()
                },
                prev_kv: None,
            }
        } else {
            let version = self
                .snapshot
                .get(&self.inner.history, format::history_key(&key, rev))
                .map_err(io("reading history"))?
                .ok_or_else(|| {
                    corrupt(format_args!("the version of {key:?} at {rev} is missing"))
                })?;
            let kv = format::decode_version(key, version.into())
                .map_err(corrupt)?
                .ok_or_else(|| corrupt(format_args!("a put event at {rev} has a tombstone")))?;
            Event {
                kind: EventKind::Put,
                kv,
                prev_kv: None,
            }
        };
        Ok(visit(event))
    }
}
