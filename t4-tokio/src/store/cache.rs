//! A bounded in-memory cache of keys' latest versions, in front of the `latest` keyspace.
//!
//! A point get at the current revision — the hottest read, and the lookup the core makes
//! for every put it decides — costs a fjall memtable search (a skiplist walk with a key
//! compare per level) or a block lookup. The cache answers it with one hash probe instead.
//!
//! **What is cached.** Key → its latest version (encoded as in `latest`) and that version's
//! mod revision. Reads fill it (a point read that went to fjall at the newest revision);
//! writes keep it right: an apply replaces the entries of the keys it puts (without adding
//! keys that are not cached) and removes those it deletes. Eviction is quick_cache's
//! (S3-FIFO), bounded by bytes.
//!
//! **Why a hit is right.** An entry always holds the version of the last *applied* write to
//! its key, or there is no entry: an apply updates the cache *before* it commits to fjall,
//! and a fill is only admitted when no apply of a later revision has started (the gate
//! below). So for a view at revision `V`, an entry with `mod_revision <= V` is the key's
//! version at `V` — a later write at or below `V` would have replaced it — and an entry
//! with `mod_revision > V` (a write the view does not see yet) sends the read to the view's
//! snapshot. A miss does too.
//!
//! **The gate.** A fill holds the gate for reading while it checks that the gate's
//! `applying` revision is at most its view's revision and inserts; an apply sets `applying`
//! to its revision while holding the gate for writing, before it touches the cache. So a
//! fill read from a view older than a started apply is never admitted, and a fill admitted
//! before the apply started is replaced by that apply. Installing a checkpoint replaces the
//! whole store: under the gate it bumps the `generation` (views remember theirs) and empties the
//! cache at both ends, so no view from before or during it ever fills.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use quick_cache::Weighter;
use quick_cache::sync::Cache;
use t4_core::Revision;

/// What an entry costs besides its key and version bytes (the cache's own bookkeeping and
/// the two `Bytes` handles), so that many tiny entries still count.
const ENTRY_OVERHEAD: u64 = 96;

/// A cached latest version of one key.
#[derive(Clone)]
struct Cached {
    mod_revision: Revision,
    /// The version as stored in `latest` (see `format::encode_version`).
    version: Bytes,
}

#[derive(Clone)]
struct ByBytes;

impl Weighter<Bytes, Cached> for ByBytes {
    fn weight(&self, key: &Bytes, cached: &Cached) -> u64 {
        (key.len() + cached.version.len()) as u64 + ENTRY_OVERHEAD
    }
}

/// The cache of latest versions; see the module documentation.
pub(super) struct LatestCache {
    /// `None` when the cache is switched off (zero bytes).
    entries: Option<Cache<Bytes, Cached, ByBytes>>,
    /// The gate: the newest revision an apply has started to write (or the current
    /// revision); fills hold it for reading, applies and checkpoint installs for writing.
    applying: RwLock<Revision>,
    /// Bumped (under the gate) when the whole store is replaced; a fill from a view of
    /// another generation is refused.
    generation: AtomicU64,
}

impl LatestCache {
    /// A cache of at most `bytes` (0 switches it off) for a store at `revision`.
    pub(super) fn new(bytes: u64, revision: Revision) -> LatestCache {
        let entries = (bytes > 0).then(|| {
            // quick_cache sizes its tables from the expected count; guess small versions.
            let estimated_items = usize::try_from(bytes / 256).unwrap_or(usize::MAX).max(64);
            Cache::with_weighter(estimated_items, bytes, ByBytes)
        });
        LatestCache {
            entries,
            applying: RwLock::new(revision),
            generation: AtomicU64::new(0),
        }
    }

    /// The generation a view taken now belongs to. Read it *before* taking the snapshot.
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The cached version of `key` if it is the key's version at revision `at`:
    /// `None` when the key is not cached or was written after `at`.
    pub(super) fn get(&self, key: &[u8], at: Revision) -> Option<Bytes> {
        let cached = self.entries.as_ref()?.get(key)?;
        (cached.mod_revision <= at).then_some(cached.version)
    }

    /// Offers `version` of `key` (with its mod revision), read from a view of `generation`
    /// at `view_revision`, the key's latest version there. Admitted only if no apply of a
    /// later revision has started since, nor a checkpoint install.
    pub(super) fn fill(
        &self,
        key: &[u8],
        mod_revision: Revision,
        version: &[u8],
        view_revision: Revision,
        generation: u64,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        let applying = self.read_gate();
        if *applying <= view_revision && self.generation() == generation {
            // Copies: a slice read from fjall (or a key from a request) may share a much
            // larger buffer, which the cache would keep alive while counting only the slice.
            entries.insert(
                Bytes::copy_from_slice(key),
                Cached {
                    mod_revision,
                    version: Bytes::copy_from_slice(version),
                },
            );
        }
    }

    /// Called by an apply that writes revision `revision`, before it updates the cache and
    /// commits: fills from older views are refused from now on.
    pub(super) fn start_apply(&self, revision: Revision) {
        if self.entries.is_some() {
            let mut applying = self.write_gate();
            *applying = (*applying).max(revision);
        }
    }

    /// The apply puts `version` (at `mod_revision`; a buffer of its own) as `key`'s latest:
    /// replaces a cached entry, adds none.
    pub(super) fn put(&self, key: &[u8], mod_revision: Revision, version: Bytes) {
        // No fill is admitted once the apply started, so a key not cached now stays so; the
        // check spares the copy of the key for the (many) writes of keys not cached.
        if let Some(entries) = self.entries.as_ref().filter(|e| e.contains_key(key)) {
            let _evicted_meanwhile = entries.replace(
                Bytes::copy_from_slice(key),
                Cached {
                    mod_revision,
                    version,
                },
                false,
            );
        }
    }

    /// The apply deletes `key`.
    pub(super) fn delete(&self, key: &[u8]) {
        if let Some(entries) = &self.entries {
            entries.remove(key);
        }
    }

    /// Forgets everything: an apply failed after touching the cache (so the cache may hold
    /// writes the store lacks; `applying` stays ahead, so nothing older fills again).
    pub(super) fn clear(&self) {
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// A checkpoint install starts (`revision: None`: nothing may fill meanwhile) or ends
    /// (at `revision`): empties the cache and moves to a new generation, so no view from
    /// before the switch fills.
    pub(super) fn replace_store(&self, revision: Option<Revision>) {
        let mut applying = self.write_gate();
        *applying = revision.unwrap_or(Revision::MAX);
        self.generation.fetch_add(1, Ordering::AcqRel);
        if let Some(entries) = &self.entries {
            entries.clear();
        }
    }

    /// Runs `f` if a view of `generation` reads the current store: no checkpoint install
    /// started since the view was taken, and none is running. The gate is held meanwhile, so
    /// none starts before `f` is done. For state shared by views that a view may only read
    /// or add to while its snapshot is of the current store (`counts.rs`).
    pub(super) fn while_current<R>(&self, generation: u64, f: impl FnOnce() -> R) -> Option<R> {
        let applying = self.read_gate();
        (*applying != Revision::MAX && self.generation() == generation).then(f)
    }

    fn read_gate(&self) -> RwLockReadGuard<'_, Revision> {
        // The gate holds one number written whole; a panic cannot leave it half-changed.
        self.applying.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_gate(&self) -> RwLockWriteGuard<'_, Revision> {
        self.applying.write().unwrap_or_else(|e| e.into_inner())
    }
}
