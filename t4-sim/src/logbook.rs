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
//! When the disk is lost (a new machine, no S3 yet) the database starts over: the book
//! starts a new *epoch* and later checks judge each epoch against its own log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use t4_core::mvcc::{MemStore, MemView};
use t4_core::wal::{LogEntry, LogOp};
use t4_core::{Instant, LeaseId, Revision, Store, StoreError};

use crate::checker::{Kind, Violation};

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
#[derive(Debug, Default)]
pub struct LogBook {
    epochs: Vec<Epoch>,
    /// Entries written to the WAL and not committed yet, by index.
    written: BTreeMap<u64, (LogEntry, Instant)>,
    last_revision: Revision,
    violations: Vec<Violation>,
}

impl LogBook {
    /// An empty book.
    pub fn new() -> LogBook {
        LogBook {
            epochs: vec![Epoch::default()],
            written: BTreeMap::new(),
            last_revision: 1,
            violations: Vec::new(),
        }
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
        self.written.insert(entry.index, (entry, now));
    }

    /// The node was told entry `index` is durable.
    pub fn acknowledged(&mut self, index: u64, now: Instant) {
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
        if last < committed {
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
            let keep = last as usize;
            self.current().entries.truncate(keep);
            self.last_revision = self
                .entries()
                .iter()
                .rev()
                .find_map(|c| c.entry.last_revision())
                .unwrap_or(1);
        }
        self.written.clear();
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

    fn persist(&self) -> Result<(), StoreError> {
        self.inner.persist()
    }

    fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        self.inner.compact(revision)
    }
}
