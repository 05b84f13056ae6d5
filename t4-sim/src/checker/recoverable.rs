//! Checker 6: the bucket always holds a recoverable database (DESIGN.md §8, invariant 5).
//!
//! At random points of a run, and at its end, the simulator copies the bucket's contents and
//! starts a **fresh core on an empty store** against the copy — a new machine with nothing
//! but the bucket — and drives it, without faults, until it serves. Then:
//!
//! * every entry it recovered (applied to its store, or wrote to its new WAL) must be the
//!   entry of that index the log book knows (committed, or written and maybe uploaded): the
//!   bucket never holds an entry nobody wrote, nor a second version of one;
//! * it must recover at least up to `required`: every entry a client was told about (sync
//!   upload), or told about longer ago than the loss window (async upload);
//! * its store must equal a replay of the log up to where it recovered.
//!
//! The fresh core takes the prefix over (a new term) in the *copy*, never in the real bucket.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use t4_core::mvcc::{CheckpointImage, MemStore, MemView};
use t4_core::wal::{self, LogEntry};
use t4_core::{
    Action, Config, Core, Input, Instant, LeaseId, ReadView, Revision, Store, StoreError,
};

use super::{Kind, Violation, replay, state};
use crate::bucket;
use crate::logbook::{Committed, Epoch};
use crate::objstore::SimObjectStore;

/// Most timeouts the fresh core may wait through before it must serve.
const MAX_TIMEOUTS: usize = 200;
/// Most rounds of IO (drain, perform, report) before the fresh core must serve.
const MAX_ROUNDS: usize = 100_000;

/// A store that records every entry applied to it.
#[derive(Clone, Debug)]
struct Recording {
    inner: MemStore,
    applied: Arc<Mutex<Vec<LogEntry>>>,
}

impl Store for Recording {
    type View = MemView;

    fn view(&self) -> MemView {
        self.inner.view()
    }

    fn apply(&self, entry: &LogEntry) -> Result<(), StoreError> {
        self.inner.apply(entry)?;
        self.applied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(entry.clone());
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
        self.inner.load_checkpoint(image)
    }
}

/// What a fresh node recovered from a bucket.
#[derive(Clone, Debug)]
pub struct Recovered {
    /// Index of the last entry of the recovered log (the fresh node's own term-start marker
    /// excluded).
    pub index: u64,
    /// Entries the fresh node applied or wrote, as recovered from the bucket.
    pub entries: Vec<LogEntry>,
}

/// Starts a fresh core with `config` (its `remote` set) on an empty store against a
/// fault-free copy of `bucket` under `prefix`, at `now`, and drives it until it serves.
/// Returns what it recovered, or why it could not start.
pub fn recover(
    bucket: &SimObjectStore,
    prefix: &str,
    config: &Config,
    now: Instant,
) -> Result<(Recovered, MemStore), String> {
    let mut copy = bucket.snapshot();
    let applied = Arc::new(Mutex::new(Vec::new()));
    let store = Recording {
        inner: MemStore::new(),
        applied: Arc::clone(&applied),
    };
    let mut remote = config
        .remote
        .clone()
        .ok_or("the recoverability check needs a remote configuration")?;
    remote.node_id = "recoverability-check".to_string();
    remote.takeover = true;
    let config = Config {
        remote: Some(remote),
        ..config.clone()
    };
    let recovery = wal::recover(&[], 0).map_err(|e| e.to_string())?;
    let mut core = Core::open(config, store, recovery, now).map_err(|e| e.to_string())?;
    let mut now = now;
    let mut written: Vec<LogEntry> = Vec::new();
    let mut timeouts = 0;
    let mut rounds = 0;
    loop {
        rounds += 1;
        if rounds > MAX_ROUNDS {
            return Err(format!(
                "the fresh node did not serve after {MAX_ROUNDS} rounds of IO"
            ));
        }
        let mut inputs = Vec::new();
        while let Some(action) = core.poll_action() {
            match action {
                Action::Object { io, request } => {
                    let a = bucket::attempt(&mut copy, now, prefix, &request);
                    inputs.push(Input::ObjectDone {
                        io,
                        result: bucket::to_core(a.result),
                    });
                }
                Action::WalAppend {
                    io, bytes, create, ..
                } => {
                    written.extend(decode_append(&bytes, create));
                    inputs.push(Input::IoDone { io, result: Ok(()) });
                }
                Action::Apply { io, entry } => inputs.push(Input::IoDone {
                    io,
                    result: core.store().apply(&entry).map_err(|e| e.to_string()),
                }),
                Action::PersistStore { io } => inputs.push(Input::IoDone {
                    io,
                    result: core.store().persist().map_err(|e| e.to_string()),
                }),
                Action::CompactStore { io, revision } => inputs.push(Input::IoDone {
                    io,
                    result: core.store().compact(revision).map_err(|e| e.to_string()),
                }),
                Action::BuildCheckpoint { io, spec } => inputs.push(Input::CheckpointBuilt {
                    io,
                    result: t4_core::checkpoint::build(&core.store().view(), &spec),
                }),
                Action::Failed { reason } => return Err(reason),
                Action::WalDelete { .. }
                | Action::Publish { .. }
                | Action::Reply { .. }
                | Action::CheckpointDone { .. } => {}
            }
        }
        if core.is_serving() && inputs.is_empty() {
            break;
        }
        if inputs.is_empty() {
            let Some(at) = core.poll_timeout() else {
                return Err(
                    "the fresh node stalled: no IO in flight, no timer, not serving".into(),
                );
            };
            timeouts += 1;
            if timeouts > MAX_TIMEOUTS {
                return Err(format!(
                    "the fresh node did not serve after {MAX_TIMEOUTS} timeouts"
                ));
            }
            now = now.max(at);
            core.handle_timeout(now);
            continue;
        }
        for input in inputs {
            core.handle(now, input);
        }
    }
    let store = core.store().inner.clone();
    let applied = applied.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // The fresh node's own entries (its term-start marker) are not part of what it
    // recovered; its term is in the writer record it wrote to the copy.
    let own_term = copy
        .peek(&bucket::full_key(prefix, "writer"))
        .and_then(|b| json_u64(b, "term"))
        .unwrap_or(u64::MAX);
    let own_applied = applied.iter().filter(|e| e.term >= own_term).count() as u64;
    let mut entries: Vec<LogEntry> = applied.into_iter().chain(written).collect();
    entries.retain(|e| e.term < own_term);
    entries.sort_by_key(|e| e.index);
    entries.dedup();
    // A checkpoint loads the store without applying entries one by one.
    let index =
        (store.view().applied_index() - own_applied).max(entries.last().map_or(0, |e| e.index));
    Ok((Recovered { index, entries }, store))
}

/// The unsigned number after `"field":` in a JSON record (the records are flat).
pub fn json_u64(bytes: &[u8], field: &str) -> Option<u64> {
    let text = std::str::from_utf8(bytes).ok()?;
    let at = text.find(&format!("\"{field}\""))?;
    let rest = text[at + field.len() + 2..]
        .trim_start()
        .strip_prefix(':')?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Decodes the entries in a WAL append's bytes.
fn decode_append(bytes: &Bytes, create: bool) -> Vec<LogEntry> {
    let offset = if create {
        t4_core::wal::segment::SEGMENT_HEADER_LEN
    } else {
        0
    };
    super::bucket_log::decode_frames(bytes, offset)
}

/// Checks that a fresh node recovers from `bucket` every entry up to `required`, each as the
/// log book has it, and a store equal to the replay of that prefix. `known` is the log book's
/// committed log (its first `committed` entries), then the entries written after it and not
/// committed yet, which the bucket may or may not hold. `rebuilding`: a node is rebuilding
/// from the bucket after the serving disk was lost (a takeover), so committed entries after
/// `required` that only that disk held may be superseded by the new writer's term-start
/// marker before the new writer applies it. `when` says which check this is.
#[allow(clippy::too_many_arguments)]
pub fn check(
    bucket: &SimObjectStore,
    prefix: &str,
    config: &Config,
    known: &[LogEntry],
    committed: u64,
    required: u64,
    rebuilding: bool,
    now: Instant,
    when: &str,
) -> Vec<Violation> {
    let bad = |d: String| Violation::new(Kind::Recoverable, format!("{when}: {d}"));
    let (recovered, store) = match recover(bucket, prefix, config, now) {
        Ok(r) => r,
        Err(e) => {
            return vec![bad(format!(
                "a fresh node cannot start from the bucket ({} objects): {e}",
                bucket.len()
            ))];
        }
    };
    let mut out = Vec::new();
    // The log the recovered store must equal: the committed entries, then what the bucket
    // returned beyond them (each one written by the node, or a term-start marker).
    let mut reference: Vec<LogEntry> = known.to_vec();
    for e in &recovered.entries {
        if e.index > recovered.index {
            continue;
        }
        let at = e.index as usize - 1;
        match known.get(at) {
            Some(k) if k == e => {}
            // Never acknowledged to a client and never in the bucket: the lost disk's entry
            // is superseded by the new writer's marker (the log book drops it when the
            // rebuilt node applies the marker).
            Some(_) if rebuilding && e.ops.is_empty() && e.index > required => {
                reference.truncate(at);
                reference.push(e.clone());
            }
            Some(_) if e.index <= committed => out.push(bad(format!(
                "the bucket holds an entry {} that differs from the log's entry {}: the history forked",
                e.index, e.index
            ))),
            // A term-start marker the serving node wrote straight to the bucket and has not
            // applied yet (where an older incarnation's unsynced entry had been written).
            _ if e.ops.is_empty() => {
                reference.truncate(at);
                reference.push(e.clone());
            }
            _ => out.push(bad(format!(
                "the bucket holds an entry {} that no node wrote (the log commits {committed})",
                e.index
            ))),
        }
    }
    if recovered.index < required {
        out.push(bad(format!(
            "a fresh node recovers the log only up to entry {}, but entry {required} was acknowledged to a client: acknowledged writes are missing from the bucket",
            recovered.index
        )));
        return out;
    }
    if !out.is_empty() {
        return out;
    }
    let prefix_log = Epoch {
        start: Instant::ZERO,
        entries: reference[..(recovered.index as usize).min(reference.len())]
            .iter()
            .map(|e| Committed {
                entry: e.clone(),
                written_at: Instant::ZERO,
                committed_at: Instant::ZERO,
                adopted: false,
            })
            .collect(),
    };
    match replay(&prefix_log) {
        Ok(t) => {
            let applied = store.view().applied_index();
            if let Some(v) = state::check_with(&store, &t, applied, true) {
                out.push(bad(format!(
                    "the state a fresh node recovers is wrong: {}",
                    v.detail
                )));
            }
        }
        Err(v) => out.push(v),
    }
    out
}
