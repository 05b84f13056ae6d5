//! The committed log, as the simulator witnessed it, and the run-time log invariants.
//!
//! The log book records every WAL entry a node wrote, and moves it to the *committed log*
//! when the node was told it is durable (its fsync succeeded) — or when recovery found it on
//! disk and adopted it (an entry written but never acknowledged may survive a crash; once
//! recovered it is as committed as any other). It checks, as the run goes:
//!
//! * **no acknowledged write is lost**: after every restart, recovery finds every committed
//!   entry, unchanged (a lying disk fails here);
//! * **the applied log is a prefix of the committed log**: the store applies only committed
//!   entries, in order, each exactly as committed ([`TapStore`] reports every apply);
//! * **revisions are strictly increasing and gap-free**, entry indexes too.
//!
//! When the disk is lost without a bucket the database starts over: the book starts a new
//! *epoch* and later checks judge each epoch against its own log. With a bucket the node
//! *rebuilds* from it ([`LogBook::disk_lost`]): the log goes on, entries the bucket returns
//! are checked against (or adopted into) the committed log, and what the lost disk had
//! committed but the bucket never received is dropped from it when the node serves again
//! ([`LogBook::rebuilt`]) — the history checkers then report it if a client was told it
//! happened.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use t4_core::mvcc::{CheckpointImage, MemStore, MemView};
use t4_core::wal::{LogEntry, LogOp};
use t4_core::{Instant, LeaseId, Response, Revision, Store, StoreError};

use crate::checker::{Kind, Violation};
use crate::objstore::{SharedStore, lock_store};

/// One committed entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    /// The entry.
    pub entry: LogEntry,
    /// When the node started writing it (no request decided later can be in it).
    pub written_at: Instant,
    /// When it became committed.
    pub committed_at: Instant,
    /// Whether it was adopted by recovery rather than acknowledged by an fsync.
    pub adopted: bool,
}

/// The committed log of one life of the database.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Epoch {
    /// When it began.
    pub start: Instant,
    /// Its entries; entry `i` has index `i + 1`.
    pub entries: Vec<Committed>,
}

/// The log book.
#[derive(Clone, Debug, Default)]
pub struct LogBook {
    epochs: Vec<Epoch>,
    /// Entries written to the WAL and not committed yet, by index.
    written: BTreeMap<u64, (LogEntry, Instant)>,
    last_revision: Revision,
    violations: Vec<Violation>,
    /// A bucket holds the log too: entries written but not acknowledged may come back from
    /// it, so they are kept across restarts and adopted when the store applies them.
    bucket: bool,
    /// The bucket and prefix, to adopt entries the node never wrote to its WAL but applied
    /// from the bucket (a term-start marker, entries of an earlier writer).
    source: Option<(SharedStore, String)>,
    /// The node lost its disk and is rebuilding from the bucket.
    rebuilding: bool,
    /// `(when, index)`: a client was told of the effect of entry `index`.
    acks: Vec<(Instant, u64)>,
    /// The simulated time of the node's current event (see [`LogBook::tick`]).
    now: Instant,
}

impl LogBook {
    /// An empty book.
    pub fn new() -> LogBook {
        LogBook {
            epochs: vec![Epoch::default()],
            written: BTreeMap::new(),
            last_revision: 1,
            violations: Vec::new(),
            bucket: false,
            source: None,
            rebuilding: false,
            acks: Vec::new(),
            now: Instant::ZERO,
        }
    }

    /// A book for a node whose log is also kept in `bucket` under `prefix`.
    pub fn with_bucket(bucket: SharedStore, prefix: &str) -> LogBook {
        LogBook {
            bucket: true,
            source: Some((bucket, prefix.to_string())),
            ..LogBook::new()
        }
    }

    /// The node handles an event at `now` (applies happen "now").
    pub fn tick(&mut self, now: Instant) {
        self.now = now;
    }

    /// Whether the bucket holds exactly `entry` (in a tail object or a merged segment).
    fn in_bucket(&self, entry: &LogEntry) -> bool {
        self.source.as_ref().is_some_and(|(store, prefix)| {
            let store = lock_store(store);
            crate::checker::bucket_log::scan(&store, prefix)
                .0
                .get(&entry.index)
                == Some(entry)
        })
    }

    /// Whether the node is rebuilding from the bucket after losing its disk.
    pub fn is_rebuilding(&self) -> bool {
        self.rebuilding
    }

    /// Every entry the book knows, in index order: the committed log, then the entries
    /// written after it (contiguously) and not yet committed — what a bucket may hold.
    pub fn known_log(&self) -> Vec<LogEntry> {
        let mut out: Vec<LogEntry> = self.entries().iter().map(|c| c.entry.clone()).collect();
        while let Some((e, _)) = self.written.get(&(out.len() as u64 + 1)) {
            out.push(e.clone());
        }
        out
    }

    /// A client was answered `response` at `now`: remembers which entry holds what it
    /// reported, so that the bucket checks know what must be recoverable.
    pub fn client_acked(&mut self, response: &Response, now: Instant) {
        let find = |f: &dyn Fn(&LogOp) -> bool| -> Option<u64> {
            self.entries()
                .iter()
                .rev()
                .find(|c| c.entry.ops.iter().any(f))
                .map(|c| c.entry.index)
        };
        let revision = match response {
            Response::Put(r) => r.revision,
            Response::DeleteRange(r) => r.revision,
            Response::Txn(r) => r.revision,
            Response::Compact(r) => r.revision,
            Response::LeaseRevoke(r) => r.revision,
            Response::LeaseGrant(r) => {
                let id = r.id;
                if let Some(i) =
                    find(&|op| matches!(op, LogOp::LeaseGrant { id: g, .. } if *g == id))
                {
                    self.acks.push((now, i));
                }
                r.revision
            }
            _ => return,
        };
        let index = self
            .entries()
            .iter()
            .find(|c| c.entry.last_revision().is_some_and(|r| r >= revision))
            .map(|c| c.entry.index);
        if let Some(i) = index {
            self.acks.push((now, i));
        }
    }

    /// The highest entry index a client had been told of by `by` (0 if none).
    pub fn acked_index(&self, by: Instant) -> u64 {
        self.acks
            .iter()
            .filter(|(at, _)| *at <= by)
            .map(|(_, i)| *i)
            .max()
            .unwrap_or(0)
    }

    fn current(&mut self) -> &mut Epoch {
        self.epochs.last_mut().expect("never empty")
    }

    /// Every epoch's committed log.
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs
    }

    /// The committed log of the current epoch.
    pub fn entries(&self) -> &[Committed] {
        &self.epochs.last().expect("never empty").entries
    }

    /// Violations found so far.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Takes the violations found so far.
    pub fn take_violations(&mut self) -> Vec<Violation> {
        std::mem::take(&mut self.violations)
    }

    /// Records a violation found elsewhere during the run.
    pub fn report(&mut self, v: Violation) {
        self.violations.push(v);
    }

    fn violate(&mut self, kind: Kind, detail: String) {
        self.violations.push(Violation { kind, detail });
    }

    /// The node wrote `entry` to its WAL at `now` (not yet durable).
    pub fn written(&mut self, entry: LogEntry, now: Instant) {
        let committed = self.entries().len() as u64;
        if entry.index <= committed {
            if self.entries()[entry.index as usize - 1].entry == entry {
                // A committed entry written again: recovered from the bucket into a new WAL.
                return;
            }
            if self.rebuilding {
                // The lost disk had committed entries the bucket never received; the new
                // writer's log goes another way from here.
                self.truncate(entry.index - 1);
            } else {
                let detail = format!(
                    "committed entry {} was written again with different contents: the log forks",
                    entry.index
                );
                self.violate(Kind::Revisions, detail);
                return;
            }
        }
        self.written.insert(entry.index, (entry, now));
    }

    fn truncate(&mut self, keep: u64) {
        self.current().entries.truncate(keep as usize);
        self.last_revision = self
            .entries()
            .iter()
            .rev()
            .find_map(|c| c.entry.last_revision())
            .unwrap_or(1);
    }

    /// The node was told entry `index` is durable.
    pub fn acknowledged(&mut self, index: u64, now: Instant) {
        if (index as usize) <= self.entries().len() && !self.written.contains_key(&index) {
            return; // An entry recovered from the bucket, committed already.
        }
        let Some((entry, written_at)) = self.written.remove(&index) else {
            self.violate(
                Kind::Revisions,
                format!("entry {index} acknowledged durable but never written"),
            );
            return;
        };
        self.commit(entry, written_at, now, false);
    }

    fn commit(&mut self, entry: LogEntry, written_at: Instant, now: Instant, adopted: bool) {
        let expected = self.entries().len() as u64 + 1;
        if entry.index != expected {
            self.violate(
                Kind::Revisions,
                format!(
                    "entry {} committed after entry {}: the log must be gap-free",
                    entry.index,
                    expected - 1
                ),
            );
            return;
        }
        for op in &entry.ops {
            if let LogOp::Revision { revision, .. } = op {
                if *revision != self.last_revision + 1 {
                    let detail = format!(
                        "entry {} writes revision {revision} after revision {}: revisions must be strictly increasing and gap-free",
                        entry.index, self.last_revision
                    );
                    self.violate(Kind::Revisions, detail);
                }
                self.last_revision = *revision;
            }
        }
        self.current().entries.push(Committed {
            entry,
            written_at,
            committed_at: now,
            adopted,
        });
    }

    /// The store applied `entry`: it must be the committed entry of that index.
    pub fn applied(&mut self, entry: &LogEntry) {
        let committed = self.entries().len() as u64;
        if self.bucket && entry.index == committed + 1 {
            // Written (and uploaded), not acknowledged locally, and now applied from the
            // bucket: as committed as an entry recovery adopts from the disk.
            if let Some((w, at)) = self.written.get(&entry.index).cloned()
                && w == *entry
            {
                self.written.remove(&entry.index);
                self.commit(w, at, at, true);
                return;
            }
            if self.in_bucket(entry) {
                // Never in this node's WAL, but durable in the bucket: a term-start marker
                // written straight to the bucket, or an entry of an earlier writer.
                self.written.remove(&entry.index);
                let now = self.now;
                self.commit(entry.clone(), now, now, true);
                return;
            }
        }
        if self.rebuilding
            && entry.index <= committed
            && self.entries()[entry.index as usize - 1].entry != *entry
            && self.in_bucket(entry)
        {
            // The lost disk (or the frozen old writer) had committed entries the bucket never
            // received; the new writer's log goes another way from here.
            self.truncate(entry.index - 1);
            let now = self.now;
            self.commit(entry.clone(), now, now, true);
            return;
        }
        let ok = self
            .entries()
            .get((entry.index as usize).wrapping_sub(1))
            .is_some_and(|c| c.entry == *entry);
        if !ok {
            let detail = if entry.index as usize > self.entries().len() {
                format!(
                    "the store applied entry {} but only {} entries are committed: the applied log must be a prefix of the committed log",
                    entry.index,
                    self.entries().len()
                )
            } else {
                format!(
                    "the store applied an entry {} that differs from the committed entry {}",
                    entry.index, entry.index
                )
            };
            self.violate(Kind::Revisions, detail);
        }
    }

    /// A node recovered: `entries` from its WAL (past the store's applied index), with the
    /// store at `store_applied`. Adopts what was written but not acknowledged; reports what
    /// was acknowledged and is gone.
    pub fn recovered(&mut self, entries: &[LogEntry], store_applied: u64, now: Instant) {
        if self.rebuilding {
            // A fresh disk: whatever the node rebuilds comes from the bucket, judged as it
            // applies and when it serves again (`rebuilt`).
            return;
        }
        let committed = self.entries().len() as u64;
        if store_applied > committed {
            self.violate(
                Kind::Revisions,
                format!("after a restart the store has applied entry {store_applied} but only {committed} are committed"),
            );
        }
        let mut last = store_applied;
        for e in entries {
            last = e.index;
            if e.index <= committed {
                if self.entries()[e.index as usize - 1].entry != *e {
                    let detail = format!(
                        "acknowledged entry {} came back from the WAL with different contents after a restart",
                        e.index
                    );
                    self.violate(Kind::LostWrite, detail);
                }
                continue;
            }
            match self.written.remove(&e.index) {
                Some((w, at)) if w == *e => self.commit(w, at, now, true),
                _ => {
                    let detail = format!(
                        "recovery found entry {} in the WAL, which the node never wrote",
                        e.index
                    );
                    self.violate(Kind::Revisions, detail);
                    return;
                }
            }
        }
        if last < committed
            && self.bucket
            && self.entries()[last as usize..]
                .iter()
                .all(|c| self.in_bucket(&c.entry))
        {
            // Not on the local disk (applied from the bucket, or the store's crash image lost
            // them), but durable in the bucket: the node must fetch them again before it
            // serves, which the state check then verifies.
        } else if last < committed {
            let lost: Vec<String> = self.entries()[last as usize..]
                .iter()
                .map(|c| {
                    let how = if c.adopted {
                        "recovered by an earlier restart and served, but never made durable"
                    } else {
                        "acknowledged by fsync"
                    };
                    format!("{} ({how})", describe_entry(&c.entry))
                })
                .collect();
            let detail = format!(
                "committed entries {}..={committed} are gone after the restart (the node recovered up to entry {last}): {}",
                last + 1,
                lost.join("; ")
            );
            self.violate(Kind::LostWrite, detail);
            // Carry on from what the node has, so that one loss is reported once.
            self.truncate(last);
        }
        if !self.bucket {
            self.written.clear();
        }
    }

    /// The store loaded a checkpoint at entry `index` (recovering from the bucket): entries
    /// up to it that were written but not committed are adopted — the checkpoint was built
    /// from a store that had applied them. Their contents are judged by the state check when
    /// the node serves again.
    pub fn loaded_checkpoint(&mut self, index: u64) {
        while (self.entries().len() as u64) < index {
            let next = self.entries().len() as u64 + 1;
            match self.written.remove(&next) {
                Some((w, at)) => self.commit(w, at, at, true),
                None => {
                    let detail = format!(
                        "the store loaded a checkpoint at entry {index}, but entry {next} was never written"
                    );
                    self.violate(Kind::Revisions, detail);
                    return;
                }
            }
        }
    }

    /// The disk was lost and the node will rebuild from the bucket.
    pub fn disk_lost(&mut self) {
        self.rebuilding = true;
    }

    /// The rebuilt node serves again with its store at entry `applied`: committed entries
    /// after it were on the lost disk only, and leave the committed log.
    pub fn rebuilt(&mut self, applied: u64) {
        self.rebuilding = false;
        let committed = self.entries().len() as u64;
        if applied > committed {
            let detail = format!(
                "the node rebuilt from the bucket up to entry {applied}, past the {committed} committed entries"
            );
            self.violate(Kind::Revisions, detail);
        } else {
            self.truncate(applied);
        }
    }

    /// The disk was lost: a new, empty database begins at `now`.
    pub fn new_epoch(&mut self, now: Instant) {
        self.written.clear();
        self.last_revision = 1;
        self.epochs.push(Epoch {
            start: now,
            entries: Vec::new(),
        });
    }
}

/// A one-line summary of an entry.
pub fn describe_entry(e: &LogEntry) -> String {
    let ops: Vec<String> = e
        .ops
        .iter()
        .map(|op| match op {
            LogOp::Revision { revision, changes } => {
                let keys: Vec<String> = changes
                    .iter()
                    .map(|c| match c {
                        t4_core::wal::Change::Put { kv, .. } => format!(
                            "put {}={}",
                            crate::history::show_bytes(&kv.key),
                            crate::history::show_bytes(&kv.value)
                        ),
                        t4_core::wal::Change::Delete { key, .. } => {
                            format!("delete {}", crate::history::show_bytes(key))
                        }
                    })
                    .collect();
                format!("rev {revision}: {}", keys.join(", "))
            }
            LogOp::LeaseGrant { id, ttl } => format!("grant {id:x} ttl {ttl}"),
            LogOp::LeaseRevoke { id } => format!("revoke {id:x}"),
            LogOp::Compact { revision } => format!("compact {revision}"),
            LogOp::Auth(state) => format!("auth revision {}", state.revision),
        })
        .collect();
    format!("entry {} [{}]", e.index, ops.join(" | "))
}

/// A shared handle to a log book.
pub type SharedBook = Arc<Mutex<LogBook>>;

/// Locks a shared book (a poisoned lock still holds a usable book).
pub fn lock(book: &SharedBook) -> MutexGuard<'_, LogBook> {
    book.lock().unwrap_or_else(|e| e.into_inner())
}

/// A [`MemStore`] that reports every apply to the log book: the simulator's window on what
/// the store actually holds.
#[derive(Clone, Debug)]
pub struct TapStore {
    inner: MemStore,
    book: SharedBook,
}

impl TapStore {
    /// Wraps `inner`.
    pub fn new(inner: MemStore, book: SharedBook) -> TapStore {
        TapStore { inner, book }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &MemStore {
        &self.inner
    }
}

impl Store for TapStore {
    type View = MemView;

    fn view(&self) -> MemView {
        self.inner.view()
    }

    fn apply(&self, entry: &LogEntry) -> Result<(), StoreError> {
        self.inner.apply(entry)?;
        lock(&self.book).applied(entry);
        Ok(())
    }

    fn leases(&self) -> Result<Vec<(LeaseId, i64)>, StoreError> {
        self.inner.leases()
    }

    fn lease_keys(&self) -> Result<Vec<(LeaseId, Bytes)>, StoreError> {
        self.inner.lease_keys()
    }

    fn auth(&self) -> Result<std::sync::Arc<t4_core::auth::AuthState>, StoreError> {
        self.inner.auth()
    }

    fn persist(&self) -> Result<(), StoreError> {
        self.inner.persist()
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision)
    }

    fn load_checkpoint(&self, image: &CheckpointImage) -> Result<(), StoreError> {
        self.inner.load_checkpoint(image)?;
        lock(&self.book).loaded_checkpoint(image.index);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64, revision: Option<Revision>) -> LogEntry {
        LogEntry {
            index,
            term,
            ops: revision
                .map(|revision| LogOp::Revision {
                    revision,
                    changes: Vec::new(),
                })
                .into_iter()
                .collect(),
        }
    }

    const T: Instant = Instant(1);

    fn bucket() -> SharedStore {
        use crate::objstore::{ObjConfig, SimObjectStore};
        use crate::rng::SimRng;
        SharedStore::new(std::sync::Mutex::new(SimObjectStore::new(
            SimRng::new(1),
            ObjConfig::default(),
        )))
    }

    #[test]
    fn an_uploaded_entry_the_disk_lost_is_adopted_when_applied_from_the_bucket() {
        let mut book = LogBook::with_bucket(bucket(), "t4");
        for i in 1..=3 {
            book.written(entry(i, 1, Some(i as i64 + 1)), T);
        }
        book.acknowledged(1, T);
        book.acknowledged(2, T);
        // A process crash: the WAL kept entries 1 and 2; entry 3 was only in the bucket.
        book.recovered(&[entry(1, 1, Some(2)), entry(2, 1, Some(3))], 0, T);
        book.applied(&entry(1, 1, Some(2)));
        book.applied(&entry(2, 1, Some(3)));
        book.applied(&entry(3, 1, Some(4)));
        assert_eq!(book.violations(), &[]);
        assert_eq!(book.entries().len(), 3);
        assert!(book.entries()[2].adopted);
    }

    #[test]
    fn a_rebuild_drops_what_only_the_lost_disk_had() {
        let mut book = LogBook::with_bucket(bucket(), "t4");
        for i in 1..=3 {
            book.written(entry(i, 1, Some(i as i64 + 1)), T);
            book.acknowledged(i, T);
        }
        book.disk_lost();
        book.recovered(&[], 0, T);
        book.applied(&entry(1, 1, Some(2)));
        book.applied(&entry(2, 1, Some(3)));
        // The new term's marker takes index 3: entry 3 never reached the bucket.
        book.written(entry(3, 2, None), T);
        assert_eq!(book.entries().len(), 2);
        book.acknowledged(3, T);
        book.applied(&entry(3, 2, None));
        book.rebuilt(3);
        assert_eq!(book.violations(), &[]);
        assert_eq!(book.entries().len(), 3);
        assert!(!book.is_rebuilding());
    }

    #[test]
    fn a_bucket_entry_that_differs_from_a_committed_one_is_reported() {
        let mut book = LogBook::with_bucket(bucket(), "t4");
        book.written(entry(1, 1, Some(2)), T);
        book.acknowledged(1, T);
        book.disk_lost();
        book.applied(&entry(1, 2, Some(2)));
        assert!(
            book.violations()
                .iter()
                .any(|v| v.kind == Kind::Revisions && v.detail.contains("differs")),
            "{:?}",
            book.violations()
        );
    }

    #[test]
    fn outside_a_rebuild_rewriting_a_committed_entry_is_a_fork() {
        let mut book = LogBook::with_bucket(bucket(), "t4");
        book.written(entry(1, 1, Some(2)), T);
        book.acknowledged(1, T);
        book.written(entry(1, 2, None), T);
        assert_eq!(book.violations().len(), 1, "{:?}", book.violations());
    }

    #[test]
    fn acknowledged_indexes_follow_the_replies() {
        let mut book = LogBook::with_bucket(bucket(), "t4");
        for i in 1..=2 {
            book.written(entry(i, 1, Some(i as i64 + 1)), T);
            book.acknowledged(i, T);
        }
        let put = |revision| {
            Response::Put(t4_core::request::PutResponse {
                revision,
                prev_kv: None,
            })
        };
        book.client_acked(&put(3), Instant(10));
        book.client_acked(&put(2), Instant(20));
        assert_eq!(book.acked_index(Instant(5)), 0);
        assert_eq!(book.acked_index(Instant(10)), 2);
        assert_eq!(book.acked_index(Instant(30)), 2);
    }
}
