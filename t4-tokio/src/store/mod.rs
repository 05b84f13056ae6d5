//! The fjall store: t4's [`Store`] on disk.
//!
//! One fjall [`Database`] in the store directory, with six keyspaces:
//!
//! | keyspace     | key                                 | value                                  |
//! |--------------|-------------------------------------|----------------------------------------|
//! | `meta`       | `format_version`                    | format version (`u32`), written once   |
//! | `meta`       | `state`                             | applied index, revision, compact revision, compaction progress |
//! | `latest`     | user key                            | the key's current version              |
//! | `history`    | escaped user key ++ revision        | the version written then, or a tombstone |
//! | `changes`    | revision ++ index of its first change | a run of changes: revision, put or delete, user key |
//! | `leases`     | lease id                            | TTL                                    |
//! | `lease_keys` | lease id ++ user key                | empty                                  |
//!
//! (encodings in `format.rs`). Current reads — the common case — are one lookup in `latest`;
//! reads at older revisions find the newest `history` version at or below the revision;
//! watch catch-up walks `changes` and takes put values from `history` (so a value is stored
//! twice, not three times). A `changes` record holds every change of one applied entry
//! (cut into several records past `CHANGES_PER_RECORD` changes or `RECORD_BYTES`), so
//! group commit also groups the revision log: a put in a batch of hundreds costs two fjall
//! inserts and a share of a third. Format version 1 had one `revlog` record per change;
//! opening such a store converts them (see `upgrade_revlog`). The meta numbers share one
//! `state` record so that a view costs a snapshot and one lookup.
//!
//! Every entry is applied as **one** fjall write batch holding all its changes and the new
//! `state` record (applied index, revision, compact revision), so a view — a fjall snapshot
//! that reads `state` from itself — never sees half an entry, and after a crash the store
//! holds a prefix of the applied entries with `state` saying exactly which.
//!
//! ## Why there is no fsync on apply
//!
//! The t4 WAL is the source of truth: an entry reaches the store only after the WAL made it
//! durable, and on open the core replays the WAL past the store's applied index. So the store
//! only has to be *consistent* after a crash, not complete; batches are handed to the OS
//! without `fsync`, and [`Store::persist`] (`fsync` of fjall's journal) is called when the
//! core wants to delete WAL segments that the store then covers.
//!
//! ## Overwritten keys
//!
//! fjall's memtable keeps every version written to a key until it is flushed, and a scan of
//! `latest` steps over all of them; once most of the memtable is superseded versions and
//! something scans it, the store seals the memtable early so that fjall flushes it to one
//! version per key (`overwrites.rs`).
//!
//! ## Physical compaction
//!
//! [`Store::compact`] runs beside applies and reads. It first records `compacting = R` (reads
//! below `R` are refused from then on, so no view ever sees history half-removed), then for
//! every key changed since the previous compaction (found through `changes`) deletes the
//! `history` versions no read at `R` or later can reach, deletes the `changes` records
//! wholly below `R`, all in bounded batches, and finally records `physically_compacted`. A crash in between leaves
//! extra history that the next compaction removes.

mod batch;
mod cache;
mod checkpoint;
mod counts;
mod format;
mod overwrites;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};
use std::thread::JoinHandle;

use bytes::Bytes;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use t4_core::auth::AuthState;
use t4_core::kv::MAX_KEY_LEN;
use t4_core::wal::{Change, LogEntry, LogOp};
use t4_core::{LeaseId, Revision, Store, StoreError};

use batch::BoundedBatch;
use cache::LatestCache;
use counts::RangeCounts;
use format::State;
use overwrites::Overwrites;
pub use view::FjallView;

/// Keys remembered as already compacted while walking `changes` (then forgotten, which
/// only costs a repeated, idempotent look at a key).
const COMPACTION_SEEN_KEYS: usize = 65_536;

/// Most changes in one `changes` record: an entry with more is cut into several records.
pub(crate) const CHANGES_PER_RECORD: usize = 4096;
/// A `changes` record is cut once it holds this many bytes.
pub(crate) const RECORD_BYTES: usize = 256 << 10;

/// t4's store on fjall. Cloning gives another handle to the same store.
#[derive(Clone)]
pub struct FjallStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    meta: Keyspace,
    latest: Keyspace,
    history: Keyspace,
    changes: Keyspace,
    leases: Keyspace,
    lease_keys: Keyspace,
    /// The `state` record as last committed. Every writer of `state` (apply, compact) holds
    /// this lock across building and committing its batch, so writers never lose each
    /// other's fields. Readers never take it: a view reads `state` from its snapshot.
    state: Mutex<State>,
    /// The auth state as last committed (in `meta`, beside `state`).
    auth: Mutex<Arc<AuthState>>,
    /// Latest versions of recently read keys, kept right by every apply (`cache.rs`).
    cache: LatestCache,
    /// Counts of key ranges at a revision, for the pages of a paged list (`counts.rs`).
    counts: RangeCounts,
    /// Writes to `latest` since its memtable was last sealed early (`overwrites.rs`); taken
    /// by applies under the state lock, and tried by scans.
    overwrites: Mutex<Overwrites>,
    /// Whether `latest` was scanned since its memtable was last sealed early: only then is
    /// it worth sealing.
    latest_scanned: AtomicBool,
    /// Whether an apply found the memtable due to be sealed before any scan came: the next
    /// scan seals it.
    latest_seal_due: AtomicBool,
    /// The thread sealing `latest`'s memtable, if one was started: fjall's rotation can
    /// take milliseconds (it also maintains its version files and journals), too long for
    /// an apply or a read to wait. Joined before the store lets go of the database.
    sealing: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The thread holds a handle to the keyspace: the database stays open until it ends.
        let sealing = self.sealing.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some(thread) = sealing.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for FjallStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallStore")
            .field("state", &*self.inner.lock_state())
            .finish_non_exhaustive()
    }
}

/// Maps a fjall error to [`StoreError::Io`], saying what was being done.
fn io(what: &'static str) -> impl FnOnce(fjall::Error) -> StoreError {
    move |e| StoreError::Io(format!("{what}: {e}"))
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// Default bound of the latest-version cache: 64 MiB.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

const KEYSPACES: [&str; 5] = ["latest", "history", "changes", "leases", "lease_keys"];

/// The fjall options a keyspace is created with (fjall keeps them with the keyspace, so a
/// store keeps the options it was created with).
///
/// `history` and `changes` are built without Bloom filters: a filter only spares a point
/// read of a key that is absent, and these keyspaces are read by range scans, or point
/// reads of a version `changes` says is there (watch catch-up). Building the filters at
/// every flush and compaction cost a few percent of a write-heavy load's CPU for nothing
/// (docs/benchmarks.md). `latest` keeps its filters: every put looks up its key's current
/// version there, and most new keys are absent.
fn keyspace_options(name: &str) -> KeyspaceCreateOptions {
    let options = KeyspaceCreateOptions::default();
    match name {
        "history" | "changes" => options.filter_policy(fjall::config::FilterPolicy::disabled()),
        _ => options,
    }
}

impl FjallStore {
    /// Opens the store in directory `path`, creating it if needed, with a latest-version
    /// cache of [`DEFAULT_CACHE_BYTES`].
    ///
    /// Fails with [`StoreError::Corrupt`] if the directory holds a store written by a newer
    /// t4 (a higher format version) or something that is not a t4 store, and with
    /// [`StoreError::Io`] if fjall cannot open it.
    pub fn open(path: &Path) -> Result<FjallStore, StoreError> {
        FjallStore::open_with_cache(path, DEFAULT_CACHE_BYTES)
    }

    /// [`FjallStore::open`] with a latest-version cache of at most `cache_bytes` (0: none).
    /// The cache answers point reads at the current revision — and the core's lookups of
    /// the keys it writes — without searching fjall.
    pub fn open_with_cache(path: &Path, cache_bytes: u64) -> Result<FjallStore, StoreError> {
        let db = Database::builder(path)
            .open()
            .map_err(|e| StoreError::Io(format!("opening the store at {}: {e}", path.display())))?;
        let fresh = !db.keyspace_exists("meta");
        if fresh && db.keyspace_count() > 0 {
            return Err(corrupt(format_args!(
                "{} holds a fjall database that is not a t4 store",
                path.display()
            )));
        }
        let meta = db
            .keyspace("meta", KeyspaceCreateOptions::default)
            .map_err(io("opening keyspace meta"))?;
        // Check the format before touching anything else: a newer store must stay untouched.
        let existing = existing_state(&meta, path)?;
        let fresh_state = existing.is_none();
        let version = existing.map(|(version, _)| version);
        let state = existing.map(|(_, state)| state);
        let [latest, history, changes, leases, lease_keys] = KEYSPACES.map(|name| {
            db.keyspace(name, || keyspace_options(name))
                .map_err(|e| StoreError::Io(format!("opening store keyspace {name}: {e}")))
        });
        let state = state.unwrap_or_default();
        let auth = match meta
            .get(format::AUTH_KEY)
            .map_err(io("reading the auth state"))?
        {
            Some(bytes) => AuthState::decode(&bytes)
                .map_err(|e| corrupt(format_args!("{}: {e}", path.display())))?,
            None => AuthState::default(),
        };
        let inner = Inner {
            auth: Mutex::new(Arc::new(auth)),
            latest: latest?,
            history: history?,
            changes: changes?,
            leases: leases?,
            lease_keys: lease_keys?,
            state: Mutex::new(state),
            cache: LatestCache::new(cache_bytes, state.revision),
            counts: RangeCounts::new(),
            overwrites: Mutex::new(Overwrites::new()),
            latest_scanned: AtomicBool::new(false),
            latest_seal_due: AtomicBool::new(false),
            sealing: Mutex::new(None),
            meta,
            db,
        };
        if fresh_state {
            let mut batch = inner.db.batch();
            batch.insert(
                &inner.meta,
                format::FORMAT_KEY,
                format::FORMAT_VERSION.to_be_bytes(),
            );
            batch.insert(&inner.meta, format::STATE_KEY, State::default().encode());
            batch.commit().map_err(io("creating the store"))?;
            inner
                .db
                .persist(PersistMode::SyncAll)
                .map_err(io("creating the store"))?;
        }
        if version.is_some_and(|v| v < format::FORMAT_VERSION) {
            upgrade_revlog(&inner)?;
        }
        Ok(FjallStore {
            inner: Arc::new(inner),
        })
    }
}

/// The format version and state of the store in `meta`; `None` if the store was never
/// created (or its creation was interrupted: format and state are written together, before
/// anything else). Refuses a store of a newer format.
fn existing_state(meta: &Keyspace, path: &Path) -> Result<Option<(u32, State)>, StoreError> {
    let at = path.display();
    let version = meta
        .get(format::FORMAT_KEY)
        .map_err(io("reading the format version"))?;
    let state = meta
        .get(format::STATE_KEY)
        .map_err(io("reading the store state"))?;
    let (version, state) = match (version, state) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(corrupt(format_args!("{at} has no format version"))),
        (Some(version), state) => (version, state),
    };
    let version = <[u8; 4]>::try_from(version.as_ref())
        .map(u32::from_be_bytes)
        .map_err(|_| corrupt(format_args!("{at} has a malformed format version")))?;
    if version > format::FORMAT_VERSION {
        return Err(corrupt(format_args!(
            "the store at {at} was written by a newer t4 (store format version {version}; this t4 reads \
             version {} and older): upgrade t4 to open it",
            format::FORMAT_VERSION
        )));
    }
    let state = state.ok_or_else(|| corrupt(format_args!("{at} has no state record")))?;
    let state = State::decode(&state)
        .ok_or_else(|| corrupt(format_args!("{at} has a malformed state record")))?;
    Ok(Some((version, state)))
}

/// Upgrades a store of format version 1: each `revlog` record (one change, keyed by its
/// revision and index) becomes a `changes` record of that one change under the same key;
/// then `revlog` is deleted and the format version raised. Every step can be redone: a
/// crash in between leaves version 1, and the next open converts (again, to the same
/// records) whatever `revlog` still holds.
fn upgrade_revlog(inner: &Inner) -> Result<(), StoreError> {
    const WHAT: &str = "upgrading the store format";
    if inner.db.keyspace_exists("revlog") {
        let revlog = inner
            .db
            .keyspace("revlog", KeyspaceCreateOptions::default)
            .map_err(io(WHAT))?;
        let snapshot = inner.db.snapshot();
        let mut inserts = BoundedBatch::new(inner, WHAT);
        for guard in snapshot.iter(&revlog) {
            let (key, value) = guard.into_inner().map_err(io(WHAT))?;
            let revision = format::changes_key_revision(&key)
                .ok_or_else(|| corrupt("malformed revision log key"))?;
            let (tombstone, user_key) = format::decode_revlog_value(value.into())
                .filter(|(_, k)| !k.is_empty() && k.len() <= MAX_KEY_LEN)
                .ok_or_else(|| {
                    corrupt(format_args!("malformed revision log entry at {revision}"))
                })?;
            let mut record = Vec::new();
            format::push_change(&mut record, revision, tombstone, &user_key);
            inserts.insert(&inner.changes, key.to_vec(), record.into())?;
        }
        inserts.commit()?;
        drop(snapshot);
        inner.db.persist(PersistMode::SyncAll).map_err(io(WHAT))?;
        inner.db.delete_keyspace(revlog).map_err(io(WHAT))?;
    }
    let mut batch = inner.db.batch();
    batch.insert(
        &inner.meta,
        format::FORMAT_KEY,
        format::FORMAT_VERSION.to_be_bytes(),
    );
    batch.commit().map_err(io(WHAT))?;
    inner.db.persist(PersistMode::SyncAll).map_err(io(WHAT))
}

impl FjallStore {
    /// Times `latest`'s memtable was sealed early since the store was opened.
    #[cfg(test)]
    fn latest_memtable_seals(&self) -> u64 {
        self.inner.lock_overwrites().seals()
    }

    /// Waits for the last seal of `latest`'s memtable, then for fjall to flush it.
    #[cfg(test)]
    fn wait_for_seal(&self) {
        let thread = self
            .inner
            .sealing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(thread) = thread {
            thread.join().unwrap();
        }
        // fjall has no event to await for the flush.
        for _ in 0..60_000 {
            if self.inner.latest.sealed_memtable_count() == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        panic!("fjall did not flush the sealed memtable within a minute");
    }
}

impl Inner {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave `State` half-written (it is replaced
        // whole, after a successful commit), so a poisoned lock is still right.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_overwrites(&self) -> MutexGuard<'_, Overwrites> {
        // Counts only: whatever a panic left is still a usable estimate.
        self.overwrites.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A scan of `latest` is starting: seals the memtable if an apply found it due, else
    /// notes the scan so that the apply that finds it due seals it.
    fn scanning_latest(&self) {
        if self.latest_seal_due.load(Ordering::Relaxed) {
            // Never wait for an apply: the next scan tries again.
            let mut overwrites = match self.overwrites.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(e)) => e.into_inner(),
                Err(TryLockError::WouldBlock) => return,
            };
            if overwrites.seal_due() {
                self.seal_latest_memtable(&mut overwrites);
            } else {
                self.latest_seal_due.store(false, Ordering::Relaxed);
            }
        } else if !self.latest_scanned.load(Ordering::Relaxed) {
            self.latest_scanned.store(true, Ordering::Relaxed);
        }
    }

    /// Seals `latest`'s active memtable so that fjall flushes it without the versions no
    /// snapshot can see (`overwrites.rs`), on a thread of its own. Not while an earlier seal
    /// runs or its sealed memtable waits for the flush (fjall stalls writers once several
    /// queue up): the memtable stays due, and the next apply or scan seals it. A failure
    /// only leaves the memtable as it is.
    fn seal_latest_memtable(&self, overwrites: &mut Overwrites) {
        let mut sealing = self.sealing.lock().unwrap_or_else(|e| e.into_inner());
        // `rotate_memtable` and `sealed_memtable_count` are public but hidden from fjall's
        // docs; fjall's own size-triggered rotation does the same through its worker.
        if sealing.as_ref().is_some_and(|t| !t.is_finished())
            || self.latest.sealed_memtable_count() > 0
        {
            self.latest_seal_due.store(true, Ordering::Relaxed);
            return;
        }
        if let Some(done) = sealing.take() {
            let _ = done.join();
        }
        let latest = self.latest.clone();
        let spawned = std::thread::Builder::new()
            .name("t4-seal".into())
            .spawn(move || {
                if let Err(e) = latest.rotate_memtable() {
                    tracing::warn!(error = %e, "could not seal the overwritten memtable of keyspace latest");
                }
            });
        match spawned {
            Ok(thread) => {
                *sealing = Some(thread);
                overwrites.sealed();
                self.latest_seal_due.store(false, Ordering::Relaxed);
                self.latest_scanned.store(false, Ordering::Relaxed);
                tracing::debug!(
                    seals = overwrites.seals(),
                    "sealing the memtable of keyspace latest: mostly overwritten versions"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a thread to seal the memtable of keyspace latest")
            }
        }
    }

    fn lock_auth(&self) -> MutexGuard<'_, Arc<AuthState>> {
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits `state` alone; the caller holds the state lock.
    fn commit_state(&self, state: &State) -> Result<(), StoreError> {
        let mut batch = self.db.batch();
        batch.insert(&self.meta, format::STATE_KEY, state.encode());
        batch.commit().map_err(io("writing the store state"))
    }
}

/// The `changes` record being filled by an apply.
#[derive(Default)]
struct ChangesRecord {
    /// Its key: the revision and index of its first change; `None` while it is empty.
    key: Option<[u8; 12]>,
    bytes: Vec<u8>,
    changes: usize,
}

impl ChangesRecord {
    fn push(&mut self, revision: Revision, index: u32, tombstone: bool, key: &[u8]) {
        self.key
            .get_or_insert_with(|| format::changes_key(revision, index));
        format::push_change(&mut self.bytes, revision, tombstone, key);
        self.changes += 1;
    }

    fn is_full(&self) -> bool {
        self.changes >= CHANGES_PER_RECORD || self.bytes.len() >= RECORD_BYTES
    }

    /// Adds the record to `batch` (if it holds anything) and starts an empty one.
    fn write(&mut self, batch: &mut fjall::OwnedWriteBatch, changes: &Keyspace) {
        if let Some(key) = self.key.take() {
            batch.insert(changes, key, std::mem::take(&mut self.bytes));
            self.changes = 0;
        }
    }
}

/// Changes of one entry to keys that one entry may write more than once (the same key in
/// several revisions of a group commit); the last write wins, and each key goes into the
/// batch once.
#[derive(Default)]
struct LastWrites {
    /// Key → its new version and mod revision, or `None` for a delete.
    latest: BTreeMap<Bytes, Option<(Revision, Bytes)>>,
    lease_keys: BTreeMap<Vec<u8>, bool>,
    leases: BTreeMap<LeaseId, Option<i64>>,
}

impl LastWrites {
    fn detach(&mut self, lease: LeaseId, key: &[u8]) {
        if lease != 0 {
            self.lease_keys.insert(format::lease_key(lease, key), false);
        }
    }

    fn attach(&mut self, lease: LeaseId, key: &[u8]) {
        if lease != 0 {
            self.lease_keys.insert(format::lease_key(lease, key), true);
        }
    }
}

impl Store for FjallStore {
    type View = FjallView;

    fn view(&self) -> FjallView {
        FjallView::new(self.inner.clone())
    }

    fn apply(&self, entry: &LogEntry) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let mut state = inner.lock_state();
        if entry.index != state.applied_index + 1 {
            return Err(StoreError::Corrupt(format!(
                "entry {} applied out of order (store has applied {})",
                entry.index, state.applied_index
            )));
        }
        let mut next = *state;
        // No journal flush per batch (fjall's default hands every batch to the OS with a
        // write call): the t4 WAL is the truth, so a crash may lose the store's last batches,
        // which recovery replays; `persist` flushes and syncs before WAL segments go.
        let mut batch = inner.db.batch().durability(None);
        let mut last = LastWrites::default();
        let mut record = ChangesRecord::default();
        let mut auth = None;
        for op in &entry.ops {
            match op {
                LogOp::Revision { revision, changes } => {
                    for (i, change) in changes.iter().enumerate() {
                        let index = u32::try_from(i).map_err(|_| {
                            corrupt(format_args!("revision {revision} has too many changes"))
                        })?;
                        let key = change.key();
                        // fjall panics on empty or oversized keys; the core never sends them.
                        if key.is_empty() || key.len() > MAX_KEY_LEN {
                            return Err(corrupt(format_args!(
                                "revision {revision} writes a key of {} bytes (1 to {MAX_KEY_LEN} allowed)",
                                key.len()
                            )));
                        }
                        // etcd changes a key at most once per revision, so history keys are
                        // unique within the batch.
                        let hk = format::history_key(key, *revision);
                        match change {
                            Change::Put { kv, prev_lease } => {
                                let version = Bytes::from(format::encode_version(kv));
                                batch.insert(&inner.history, hk, version.clone());
                                last.latest.insert(key.clone(), Some((*revision, version)));
                                if *prev_lease != kv.lease {
                                    last.detach(*prev_lease, key);
                                }
                                last.attach(kv.lease, key);
                            }
                            Change::Delete { prev_lease, .. } => {
                                batch.insert(&inner.history, hk, format::TOMBSTONE);
                                last.latest.insert(key.clone(), None);
                                last.detach(*prev_lease, key);
                            }
                        }
                        let tombstone = matches!(change, Change::Delete { .. });
                        record.push(*revision, index, tombstone, key);
                        if record.is_full() {
                            record.write(&mut batch, &inner.changes);
                        }
                    }
                    next.revision = *revision;
                }
                LogOp::LeaseGrant { id, ttl } => {
                    last.leases.insert(*id, Some(*ttl));
                }
                LogOp::LeaseRevoke { id } => {
                    last.leases.insert(*id, None);
                }
                LogOp::Compact { revision } => {
                    next.compact_revision = next.compact_revision.max(*revision);
                }
                LogOp::Auth(state) => auth = Some(state),
            }
        }
        record.write(&mut batch, &inner.changes);
        // The cache changes before the commit, so that no view at the new revision can find
        // an entry older than its snapshot (`cache.rs`).
        if next.revision > state.revision {
            inner.cache.start_apply(next.revision);
        }
        let mut overwrites = inner.lock_overwrites();
        for (key, version) in last.latest {
            overwrites.wrote(&key);
            match version {
                Some((revision, v)) => {
                    inner.cache.put(&key, revision, v.clone());
                    batch.insert(&inner.latest, key, v);
                }
                None => {
                    inner.cache.delete(&key);
                    batch.remove(&inner.latest, key);
                }
            }
        }
        for (key, attached) in last.lease_keys {
            if attached {
                batch.insert(&inner.lease_keys, key, Bytes::new());
            } else {
                batch.remove(&inner.lease_keys, key);
            }
        }
        for (id, ttl) in last.leases {
            let key = format::encode_i64(id);
            match ttl {
                Some(ttl) => batch.insert(&inner.leases, key, ttl.to_be_bytes()),
                None => batch.remove(&inner.leases, key),
            }
        }
        next.applied_index = entry.index;
        batch.insert(&inner.meta, format::STATE_KEY, next.encode());
        if let Some(auth) = auth {
            batch.insert(&inner.meta, format::AUTH_KEY, auth.encode());
        }
        if let Err(e) = batch.commit() {
            inner.cache.clear();
            return Err(io("applying an entry")(e));
        }
        *state = next;
        if let Some(auth) = auth {
            *inner.lock_auth() = auth.clone();
        }
        if overwrites.seal_due() {
            if inner.latest_scanned.load(Ordering::Relaxed) {
                inner.seal_latest_memtable(&mut overwrites);
            } else {
                inner.latest_seal_due.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    fn leases(&self) -> Result<Vec<(LeaseId, i64)>, StoreError> {
        read_leases(&self.inner, &self.inner.db.snapshot())
    }

    fn auth(&self) -> Result<Arc<AuthState>, StoreError> {
        Ok(self.inner.lock_auth().clone())
    }

    fn lease_keys(&self) -> Result<Vec<(LeaseId, Bytes)>, StoreError> {
        let snapshot = self.inner.db.snapshot();
        let mut out = Vec::new();
        for guard in snapshot.iter(&self.inner.lease_keys) {
            let key = guard.key().map_err(io("reading lease attachments"))?;
            out.push(
                format::split_lease_key(key.into())
                    .ok_or_else(|| corrupt("malformed lease attachment"))?,
            );
        }
        Ok(out)
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.inner
            .db
            .persist(PersistMode::SyncAll)
            .map_err(io("persisting"))
    }

    fn load_checkpoint(&self, image: &t4_core::CheckpointImage) -> Result<(), StoreError> {
        checkpoint::load(&self.inner, image)
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        let inner = &*self.inner;
        let (snapshot, start, walked_to) = {
            let mut state = inner.lock_state();
            if revision <= state.physically_compacted {
                return Ok(());
            }
            if revision > state.compacting {
                let mut next = *state;
                next.compacting = revision;
                inner.commit_state(&next)?;
                *state = next;
            }
            // Taken under the lock, so it holds exactly the entries up to `state.revision`.
            // Changes after it are at later revisions; if `revision` is in the future, the
            // next compaction walks from where this one could see.
            (
                inner.db.snapshot(),
                state.physically_compacted,
                state.revision.min(revision),
            )
        };

        let mut deletes = BoundedBatch::new(inner, "compacting");
        let mut seen: HashSet<Bytes> = HashSet::new();
        let upper = format::changes_key(revision, u32::MAX);
        let lower = record_holding(&snapshot, &inner.changes, start)?;
        for guard in snapshot.range(&inner.changes, lower..=upper.to_vec()) {
            let (ck, record) = guard.into_inner().map_err(io("reading the revision log"))?;
            let changes = decode_record(&ck, record.into())?;
            for change in changes.iter().filter(|c| c.revision <= revision) {
                // A key not changed since the last compaction has at most one version at
                // or below it, which is not a tombstone: nothing to remove. So only keys in
                // the revision log since then need a look (and those of the record that
                // holds the start, once more: compacting a key twice changes nothing).
                if seen.len() >= COMPACTION_SEEN_KEYS {
                    seen.clear();
                }
                if seen.insert(change.key.clone()) {
                    compact_key(inner, &snapshot, &change.key, revision, &mut deletes)?;
                }
            }
            // A record that reaches `revision` stays: watches from `revision` on read it.
            if changes.last().is_none_or(|c| c.revision < revision) {
                deletes.remove(&inner.changes, ck.into())?;
            }
        }
        deletes.commit()?;

        let mut state = inner.lock_state();
        if walked_to > state.physically_compacted {
            let mut next = *state;
            next.physically_compacted = walked_to;
            inner.commit_state(&next)?;
            *state = next;
        }
        Ok(())
    }
}

/// The key of the `changes` record that holds the first change at or after `revision`: the
/// last record that starts at or before it (records hold runs of consecutive revisions), or
/// where such a record would start if there is none.
pub(crate) fn record_holding(
    snapshot: &fjall::Snapshot,
    changes: &Keyspace,
    revision: Revision,
) -> Result<Vec<u8>, StoreError> {
    let at = format::changes_key(revision, 0);
    match snapshot.range(changes, ..=at).next_back() {
        Some(guard) => Ok(guard
            .key()
            .map_err(io("reading the revision log"))?
            .to_vec()),
        None => Ok(at.to_vec()),
    }
}

/// Decodes the `changes` record stored under `key`, or says it is malformed.
pub(crate) fn decode_record(
    key: &[u8],
    record: Bytes,
) -> Result<Vec<format::ChangeRecord>, StoreError> {
    let revision =
        format::changes_key_revision(key).ok_or_else(|| corrupt("malformed revision log key"))?;
    format::decode_changes(record)
        .filter(|changes| changes.first().is_some_and(|c| c.revision == revision))
        .ok_or_else(|| corrupt(format_args!("malformed revision log record at {revision}")))
}

/// Every lease with its granted TTL, as `snapshot` sees them.
fn read_leases(
    inner: &Inner,
    snapshot: &fjall::Snapshot,
) -> Result<Vec<(LeaseId, i64)>, StoreError> {
    let mut out = Vec::new();
    for guard in snapshot.iter(&inner.leases) {
        let (key, ttl) = guard.into_inner().map_err(io("reading leases"))?;
        let id = format::decode_lease_id(&key).ok_or_else(|| corrupt("malformed lease id"))?;
        let ttl = <[u8; 8]>::try_from(ttl.as_ref())
            .map(i64::from_be_bytes)
            .map_err(|_| corrupt(format_args!("malformed TTL of lease {id}")))?;
        out.push((id, ttl));
    }
    Ok(out)
}

/// Deletes the versions of `key` that no read at `revision` or later reaches: all but the
/// newest at or below `revision`, and that one too if it is a tombstone.
fn compact_key(
    inner: &Inner,
    snapshot: &fjall::Snapshot,
    key: &[u8],
    revision: Revision,
    deletes: &mut BoundedBatch<'_>,
) -> Result<(), StoreError> {
    let lower = format::history_key(key, Revision::MIN);
    let upper = format::history_key(key, revision);
    // Oldest first, so that a tombstone is deleted only after (or with) the versions it
    // hides: a crash or a concurrent view never sees an old version resurface.
    let mut previous: Option<(Bytes, bool)> = None;
    for guard in snapshot.range(&inner.history, lower..=upper) {
        let (hk, version) = guard.into_inner().map_err(io("reading history"))?;
        if let Some((older, _)) = previous.take() {
            deletes.remove(&inner.history, older)?;
        }
        previous = Some((hk.into(), format::is_tombstone(&version)));
    }
    if let Some((newest, true)) = previous {
        deletes.remove(&inner.history, newest)?;
    }
    Ok(())
}
