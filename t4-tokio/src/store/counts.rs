//! Counts of key ranges at a revision, remembered so that a paged list counts the rest of
//! its range once instead of once per page.
//!
//! etcd's `count` covers the whole range, so every page of a list (`limit` plus a next
//! page that starts after the last key, all at the first page's revision, as Kubernetes
//! lists) answers the count of everything from its start to the range's end. Walking that
//! rest in fjall costs ~140 ns a key, so a list of `n` keys in pages of `p` walked `n² / 2p`
//! keys. A range that stopped at its limit knows the next page's count (its own minus the
//! page, [`t4_core::ReadView::note_count`]); this cache keeps it, and every count it
//! computes, for the next request of the same range at the same revision.
//!
//! **Why a hit is right.** A count is a function of the range and the revision for as long
//! as the store is the same store: applies only add revisions, and a compaction only makes
//! old revisions unreadable (a view checks the revision before it asks). What replaces the
//! store is a checkpoint install, so entries carry the store's generation and are read and
//! added only while the view's generation is current ([`LatestCache::while_current`]):
//! a view whose snapshot might be of another store than its generation says never touches
//! the cache.

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use t4_core::{KeyRange, Revision};

use super::cache::LatestCache;

/// Bytes of keys the cache holds at most (with [`ENTRY_OVERHEAD`] per entry): about 4,000
/// entries of 64-byte keys, enough for as many lists at once.
const CAPACITY_BYTES: u64 = 1 << 20;

/// What an entry costs besides its keys' bytes.
const ENTRY_OVERHEAD: u64 = 96;

/// A cache key: the store's generation, the revision, the range.
type Key = (u64, Revision, KeyRange);

#[derive(Clone)]
struct ByKeyBytes;

impl Weighter<Key, u64> for ByKeyBytes {
    fn weight(&self, (_, _, range): &Key, _: &u64) -> u64 {
        let end = match range {
            KeyRange::Single(_) | KeyRange::From(_) => 0,
            KeyRange::Between(_, end) => end.len(),
        };
        (range.start().len() + end) as u64 + ENTRY_OVERHEAD
    }
}

/// The cache of range counts; see the module documentation.
pub(super) struct RangeCounts {
    entries: Cache<Key, u64, ByKeyBytes>,
    #[cfg(test)]
    hits: std::sync::atomic::AtomicU64,
}

impl RangeCounts {
    pub(super) fn new() -> RangeCounts {
        let estimated_items = (CAPACITY_BYTES / 256) as usize;
        RangeCounts {
            entries: Cache::with_weighter(estimated_items, CAPACITY_BYTES, ByKeyBytes),
            #[cfg(test)]
            hits: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The remembered count of `range` at `rev`, for a view of `generation`.
    pub(super) fn get(
        &self,
        stores: &LatestCache,
        generation: u64,
        rev: Revision,
        range: &KeyRange,
    ) -> Option<u64> {
        let key = (generation, rev, range.clone());
        let hit = stores.while_current(generation, || self.entries.get(&key))??;
        #[cfg(test)]
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(hit)
    }

    /// Remembers that `range` holds `count` keys at `rev`, as a view of `generation` found.
    pub(super) fn insert(
        &self,
        stores: &LatestCache,
        generation: u64,
        rev: Revision,
        range: &KeyRange,
        count: u64,
    ) {
        // Copies: a range from a request shares the request's whole buffer, which the cache
        // would keep alive while weighing only the keys.
        let copy = |b: &Bytes| Bytes::copy_from_slice(b);
        let range = match range {
            KeyRange::Single(k) => KeyRange::Single(copy(k)),
            KeyRange::From(s) => KeyRange::From(copy(s)),
            KeyRange::Between(s, e) => KeyRange::Between(copy(s), copy(e)),
        };
        stores.while_current(generation, || {
            self.entries.insert((generation, rev, range), count);
        });
    }

    /// How many counts were answered from the cache.
    #[cfg(test)]
    pub(super) fn hits(&self) -> u64 {
        self.hits.load(std::sync::atomic::Ordering::Relaxed)
    }
}
