//! Booting a node: recovery from its own disk, and the checks when it serves again.

use std::sync::Arc;

use bytes::Bytes;
use t4_core::wal::{self, parse_segment_file_name, segment_file_name};
use t4_core::{Config, Core, ReadView, Store};

use super::{Env, SimNode};
use crate::checker::{self, Kind};
use crate::logbook::{TapStore, lock};
use crate::scenario::Event as SimEvent;

impl SimNode {
    /// Starts the node from its disk and store, as `t4::Node::open` does.
    pub fn boot(&mut self, env: &mut Env<'_>) {
        self.generation += 1;
        self.boots += 1;
        let now = env.sched.now();
        lock(&self.book).tick(now);
        let mut segments: Vec<(u64, Bytes)> = self
            .disk
            .list()
            .into_iter()
            .filter_map(|name| {
                let id = parse_segment_file_name(&name)?;
                Some((id, self.disk.read(&name)?))
            })
            .collect();
        segments.sort_by_key(|(id, _)| *id);
        let store = TapStore::new(self.store.clone(), Arc::clone(&self.book));
        let applied = store.view().applied_index();
        let recovery = match wal::recover(&segments, applied) {
            Ok(r) => r,
            Err(e) => {
                self.report(
                    Kind::Recovery,
                    format!("n{} cannot recover from its own disk: {e}", self.id),
                );
                return;
            }
        };
        if let Some((segment, len)) = recovery.truncate {
            self.disk
                .truncate_durably(&segment_file_name(segment), len as usize);
            env.trace.record(
                now,
                format_args!(
                    "n{} recovery cuts torn tail of segment {segment} at {len}",
                    self.id
                ),
            );
        }
        if self.config.sync_on_recovery {
            for s in &recovery.segments {
                // A process crash leaves unsynced WAL bytes in the page cache, where recovery
                // reads them: make them durable before serving them, or give up and retry.
                let file = segment_file_name(s.id);
                if let Err(e) = self.disk.sync(&file, true) {
                    env.faults
                        .record(now, format!("n{} cannot start: {e}; retrying", self.id));
                    let delay = self.rng.log_uniform(10_000_000, 1_000_000_000);
                    env.sched.after_nanos(
                        delay,
                        SimEvent::Boot {
                            node: self.id,
                            generation: self.generation,
                        },
                    );
                    return;
                }
            }
        }
        let replayed = recovery.entries.len();
        lock(&self.book).recovered(&recovery.entries, applied, now);
        let rebuilding = lock(&self.book).is_rebuilding();
        let config = Config {
            seed: self.rng.next_u64(),
            ..self.config.core.clone()
        };
        let core = match Core::open(config, store, recovery, now) {
            Ok(c) => c,
            Err(e) => {
                self.report(Kind::Recovery, format!("n{} cannot open: {e}", self.id));
                return;
            }
        };
        env.trace.record(
            now,
            format_args!(
                "n{} boots (gen {}): store at entry {applied}, {replayed} WAL entries replayed, revision {}",
                self.id,
                self.generation,
                core.applied_revision()
            ),
        );
        if !rebuilding && self.config.core.remote.is_none() {
            // With a bucket the store may still catch up from it: checked when it serves.
            self.check_state(core.store());
        }
        self.core = Some(core);
        self.failed = false;
        self.serving = false;
        self.drain(env);
    }

    /// The core serves again after a boot: if it rebuilt from the bucket, the log book
    /// learns where the rebuilt log ends, and the store must equal its replay.
    pub(super) fn started_serving(&mut self, env: &mut Env<'_>) {
        self.serving = true;
        if let Some(since) = self.down_since.take() {
            self.down_total += env.sched.now().as_nanos().saturating_sub(since.as_nanos());
        }
        let Some(core) = &self.core else { return };
        let applied = core.store().view().applied_index();
        let mut book = lock(&self.book);
        if book.is_rebuilding() {
            book.rebuilt(applied);
            drop(book);
            env.trace.record(
                env.sched.now(),
                format_args!("n{} rebuilt from the bucket up to entry {applied}", self.id),
            );
        } else {
            drop(book);
        }
        if self.config.core.remote.is_some() {
            self.check_state(core.store());
            // History is gone below the compact revision, and a store loaded from a
            // checkpoint lacks the events of the checkpoint's own revision too.
            let compacted = core.store().view().events_floor();
            if compacted > 1 {
                env.history.rebuilds.push((env.sched.now(), compacted));
            }
        }
    }

    /// Compares the store with a replay of the committed log (checker 5, after every boot).
    pub(super) fn check_state(&self, store: &TapStore) {
        let book = lock(&self.book);
        let epoch = book.epochs().last().expect("never empty").clone();
        drop(book);
        match checker::replay(&epoch) {
            Ok(t) => {
                let restored = self.config.core.remote.is_some();
                let entries = epoch.entries.len() as u64;
                if let Some(v) = checker::state::check_with(store, &t, entries, restored) {
                    lock(&self.book).report(v);
                }
            }
            Err(v) => lock(&self.book).report(v),
        }
    }
}
