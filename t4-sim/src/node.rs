//! A simulated node: exactly what the tokio adapter does, on the simulated disk and clock.
//!
//! * **Boot:** list the WAL segments on the disk, [`t4_core::wal::recover`] them with the
//!   store's applied index, cut the torn tail recovery asks for, [`Core::open`].
//! * **Actions:** `WalAppend` → write to the disk, then (after the disk's latency) fsync it
//!   and report `IoDone` with the fsync's result; `WalDelete` → delete the file;
//!   `PersistStore` / `CompactStore` → run them on the store after a delay and report;
//!   `Publish` → fan out to watchers through [`t4_core::watch::WatchCursor`]s (a watcher that falls behind
//!   replays from the store); `Reply` → send the answer to the client over the network;
//!   `Failed` → schedule a restart, as a supervisor would.
//! * **Reads:** plain ranges are served from `store.view()` with [`t4_core::mvcc::range`],
//!   never through the core, as adapters do.
//! * **Crash:** drop the core; the disk keeps its durable bytes (and, on power loss, a random
//!   prefix of the rest, maybe torn); the store keeps a crash image (its last persist plus a
//!   random prefix of later applies). **Disk loss:** a fresh disk and an empty store.
//!
//! The node never decides anything the core should: if this file grows policy, move it into
//! the core where the simulator exercises it for every adapter.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use t4_core::mvcc::MemStore;
use t4_core::wal::frame::FrameRead;
use t4_core::wal::segment::SEGMENT_HEADER_LEN;
use t4_core::wal::{
    self, LogEntry, decode_entry, parse_segment_file_name, read_frame, segment_file_name,
};
use t4_core::watch::WatchFilter;
use t4_core::{
    Action, Config, Core, Error, Event, Input, IoId, ReadView, RequestId, Revision, Store,
};

use crate::checker::{self, Kind, Violation};
use crate::disk::SimDisk;
use crate::fault::FaultLog;
use crate::history::{Call, History, OpId, Reply};
use crate::logbook::{SharedBook, TapStore, describe_entry, lock};
use crate::net::{Endpoint, SimNet};
use crate::rng::SimRng;
use crate::scenario::Event as SimEvent;
use crate::sched::Scheduler;
use crate::trace::Trace;
use crate::watchers::Watchers;

/// A message from a client to a node.
#[derive(Clone, Debug)]
pub enum ToNode {
    /// A request.
    Call {
        /// The client.
        client: usize,
        /// The history's id for the operation.
        op: OpId,
        /// The request.
        call: Call,
    },
    /// Open a watch.
    Watch {
        /// The client.
        client: usize,
        /// What to watch.
        filter: WatchFilter,
        /// Start revision (0 = from now).
        start: Revision,
    },
}

/// A node's own timed events; each carries the incarnation it belongs to.
#[derive(Clone, Debug)]
pub enum NodeTimer {
    /// The fsync of a WAL append completes.
    WalSynced {
        /// The append.
        io: IoId,
    },
    /// A store persist completes.
    Persisted {
        /// Completion id.
        io: IoId,
    },
    /// A store compaction completes.
    Compacted {
        /// Completion id.
        io: IoId,
        /// The compaction revision.
        revision: Revision,
    },
    /// The core's timeout.
    CoreTimeout,
    /// Lagging watchers catch up from the store.
    WatchPump,
}

/// What the node shares with the rest of the world while handling an event.
pub struct Env<'a> {
    /// The scheduler.
    pub sched: &'a mut Scheduler<SimEvent>,
    /// The network.
    pub net: &'a mut SimNet,
    /// The trace.
    pub trace: &'a mut Trace,
    /// The history.
    pub history: &'a mut History,
    /// Faults that happened.
    pub faults: &'a mut FaultLog,
}

/// Tunables of a simulated node.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The core's configuration (its seed is redrawn at every boot).
    pub core: Config,
    /// Chance that a watcher misses a live batch, in parts per million.
    pub watch_lag_ppm: u32,
    /// Chance that a store persist fails, in parts per million.
    pub persist_fail_ppm: u32,
    /// Delay before a failed node restarts.
    pub restart_after: (Duration, Duration),
    /// Make every WAL segment durable before serving after a restart. The adapter must do
    /// this: recovery may read bytes that are still only in the page cache (a process crash
    /// keeps them), and serving them before they are durable lets a later power loss undo
    /// what clients saw.
    pub sync_on_recovery: bool,
}

struct Append {
    file: String,
    create: bool,
    index: u64,
}

/// One simulated node.
pub struct SimNode {
    /// Its index.
    pub id: usize,
    config: NodeConfig,
    rng: SimRng,
    /// Its disk (survives crashes).
    pub disk: SimDisk,
    /// Its store as of the last crash (survives crashes as a crash image).
    store: MemStore,
    core: Option<Core<TapStore>>,
    /// Incarnation: bumped at every crash and boot, so that stale events are ignored.
    pub generation: u64,
    book: SharedBook,
    pending: BTreeMap<RequestId, (usize, OpId)>,
    next_request: u64,
    appends: BTreeMap<IoId, Append>,
    watchers: Watchers,
    pump_scheduled: bool,
    timer_at: Option<t4_core::Instant>,
    /// Whether the core refuses writes (a restart is scheduled).
    pub failed: bool,
    /// Boots so far.
    pub boots: u64,
    /// Crash (by the fault plan) in the middle of the next WAL append.
    pub crash_during_next_append: bool,
}

impl SimNode {
    /// A node that has not booted yet.
    pub fn new(
        id: usize,
        config: NodeConfig,
        rng: SimRng,
        disk: SimDisk,
        book: SharedBook,
    ) -> SimNode {
        SimNode {
            id,
            config,
            rng,
            disk,
            store: MemStore::new(),
            core: None,
            generation: 0,
            book,
            pending: BTreeMap::new(),
            next_request: 0,
            appends: BTreeMap::new(),
            watchers: Watchers::default(),
            pump_scheduled: false,
            timer_at: None,
            failed: false,
            boots: 0,
            crash_during_next_append: false,
        }
    }

    /// Stops injecting store failures and watcher lag (the end of a run's fault phase).
    pub fn calm(&mut self) {
        self.config.persist_fail_ppm = 0;
        self.config.watch_lag_ppm = 0;
    }

    fn endpoint(&self) -> Endpoint {
        Endpoint::Node(self.id)
    }

    /// Whether the node is running.
    pub fn is_up(&self) -> bool {
        self.core.is_some()
    }

    /// Whether the node is up, accepting writes, with nothing in flight and every watcher
    /// caught up.
    pub fn is_settled(&self) -> bool {
        self.core
            .as_ref()
            .is_some_and(|c| c.is_quiescent() && c.failure().is_none())
            && self.appends.is_empty()
            && self.watchers.all_synced()
    }

    /// The store the core applies to, while up.
    pub fn store(&self) -> Option<&TapStore> {
        self.core.as_ref().map(|c| c.store())
    }

    fn report(&self, kind: Kind, detail: String) {
        lock(&self.book).report(Violation::new(kind, detail));
    }

    fn schedule(&self, env: &mut Env<'_>, nanos: u64, timer: NodeTimer) {
        env.sched.after_nanos(
            nanos,
            SimEvent::Node {
                node: self.id,
                generation: self.generation,
                timer,
            },
        );
    }

    /// Starts the node from its disk and store, as `t4::Node::open` does.
    pub fn boot(&mut self, env: &mut Env<'_>) {
        self.generation += 1;
        self.boots += 1;
        let now = env.sched.now();
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
        self.check_state(core.store());
        self.core = Some(core);
        self.failed = false;
        self.drain(env);
    }

    /// Compares the store with a replay of the committed log (checker 5, after every boot).
    fn check_state(&self, store: &TapStore) {
        let book = lock(&self.book);
        let epoch = book.epochs().last().expect("never empty").clone();
        drop(book);
        match checker::replay(&epoch) {
            Ok(t) => {
                if let Some(v) = checker::state::check(store, &t, epoch.entries.len() as u64) {
                    lock(&self.book).report(v);
                }
            }
            Err(v) => lock(&self.book).report(v),
        }
    }

    /// Crashes the node. `power_loss`: the machine lost power (unsynced disk writes are at
    /// risk); otherwise only the process died. `lose_disk`: the machine is gone, and a fresh
    /// one takes its place.
    pub fn crash(&mut self, env: &mut Env<'_>, power_loss: bool, lose_disk: bool) {
        let now = env.sched.now();
        self.core = None;
        self.generation += 1;
        self.pending.clear();
        self.appends.clear();
        self.timer_at = None;
        self.pump_scheduled = false;
        self.watchers.close_all(env.history, now);
        if lose_disk {
            self.disk = self.disk.replaced();
            self.store = MemStore::new();
            lock(&self.book).new_epoch(now);
            env.history.new_epoch(now);
            env.faults.record(
                now,
                format!("n{} disk lost: the node starts empty", self.id),
            );
            return;
        }
        let image = self.rng.index(self.store.unpersisted_entries() + 1);
        let unpersisted = self.store.unpersisted_entries();
        self.store = self.store.crash_image(image);
        if power_loss {
            let report = self.disk.crash();
            let mut what = format!(
                "n{} power loss: store keeps {image}/{unpersisted} unpersisted entries",
                self.id
            );
            for (file, bytes) in &report.lost {
                what.push_str(&format!("; {file} loses {bytes} unsynced bytes"));
            }
            for (file, at) in &report.torn {
                what.push_str(&format!("; {file} torn at {at}"));
            }
            if report.dir_undone > 0 {
                what.push_str(&format!("; {} directory changes undone", report.dir_undone));
            }
            env.faults.record(now, what);
        } else {
            env.faults.record(
                now,
                format!(
                    "n{} process crash: store keeps {image}/{unpersisted} unpersisted entries",
                    self.id
                ),
            );
        }
    }

    /// A message arrives.
    pub fn receive(&mut self, env: &mut Env<'_>, msg: ToNode) {
        let now = env.sched.now();
        let Some(core) = self.core.as_mut() else {
            env.trace
                .record(now, format_args!("n{} is down: message dropped", self.id));
            return;
        };
        match msg {
            ToNode::Call {
                client,
                op,
                call: Call::Range(req),
            } => {
                let view = core.store().view();
                let result = t4_core::mvcc::range(&view, &req).map(Reply::Range);
                self.send_reply(env, client, op, result);
            }
            ToNode::Call {
                client,
                op,
                call: Call::Request(request),
            } => {
                self.next_request += 1;
                let id = RequestId(self.next_request);
                self.pending.insert(id, (client, op));
                core.handle(now, Input::Request { id, request });
                self.drain(env);
            }
            ToNode::Watch {
                client,
                filter,
                start,
            } => {
                let view = core.store().view();
                let (id, live) = self
                    .watchers
                    .open(env.history, &view, client, filter, start, now);
                let from = env.history.watches[id].start;
                env.trace.record(
                    now,
                    format_args!("n{} opens watch #{id} for c{client} from {from}", self.id),
                );
                if live {
                    self.schedule_pump(env);
                }
            }
        }
    }

    fn send_reply(
        &mut self,
        env: &mut Env<'_>,
        client: usize,
        op: OpId,
        result: Result<Reply, Error>,
    ) {
        match env.net.send(self.endpoint(), Endpoint::Client(client)) {
            Some(latency) => env
                .sched
                .after_nanos(latency, SimEvent::ToClient { client, op, result }),
            None => env.trace.record(
                env.sched.now(),
                format_args!("net loses reply to c{client} op#{op}"),
            ),
        }
    }

    /// One of the node's timers fired.
    pub fn on_timer(&mut self, env: &mut Env<'_>, timer: NodeTimer) {
        let now = env.sched.now();
        match timer {
            NodeTimer::WalSynced { io } => {
                let Some(append) = self.appends.remove(&io) else {
                    return;
                };
                let result = self.disk.sync(&append.file, append.create);
                match &result {
                    Ok(()) => lock(&self.book).acknowledged(append.index, now),
                    Err(e) => env
                        .faults
                        .record(now, format!("n{} {e} (entry {})", self.id, append.index)),
                }
                env.trace.record(
                    now,
                    format_args!(
                        "n{} fsync {} entry {}: {:?}",
                        self.id,
                        append.file,
                        append.index,
                        result.is_ok()
                    ),
                );
                if let Some(core) = self.core.as_mut() {
                    core.handle(
                        now,
                        Input::IoDone {
                            io,
                            result: result.map_err(|e| e.0),
                        },
                    );
                }
            }
            NodeTimer::Persisted { io } => {
                let result = if self.rng.chance(self.config.persist_fail_ppm) {
                    env.faults
                        .record(now, format!("n{} store persist fails", self.id));
                    Err("store persist: Input/output error (os error 5)".to_string())
                } else if self.disk.config().lying {
                    // The store lives on the same lying disk: its sync is a lie too.
                    Ok(())
                } else {
                    self.core
                        .as_ref()
                        .map_or(Ok(()), |c| c.store().persist().map_err(|e| e.to_string()))
                };
                env.trace.record(
                    now,
                    format_args!("n{} store persisted: {:?}", self.id, result.is_ok()),
                );
                if let Some(core) = self.core.as_mut() {
                    core.handle(now, Input::IoDone { io, result });
                }
            }
            NodeTimer::Compacted { io, revision } => {
                let result = self.core.as_ref().map_or(Ok(()), |c| {
                    c.store().compact(revision).map_err(|e| e.to_string())
                });
                env.trace.record(
                    now,
                    format_args!("n{} store compacted to {revision}", self.id),
                );
                if let Some(core) = self.core.as_mut() {
                    core.handle(now, Input::IoDone { io, result });
                }
            }
            NodeTimer::CoreTimeout => {
                self.timer_at = None;
                if let Some(core) = self.core.as_mut()
                    && core.poll_timeout().is_some_and(|t| t <= now)
                {
                    env.trace
                        .record(now, format_args!("n{} core timeout", self.id));
                    core.handle_timeout(now);
                }
            }
            NodeTimer::WatchPump => self.pump(env),
        }
        self.drain(env);
    }

    /// Performs every action the core queued, in order (the drain rule), then re-arms the
    /// core's timer.
    fn drain(&mut self, env: &mut Env<'_>) {
        while let Some(action) = self.core.as_mut().and_then(|c| c.poll_action()) {
            self.perform(env, action);
        }
        if let Some(core) = &self.core
            && let Some(at) = core.poll_timeout()
            && self.timer_at.is_none_or(|t| at < t)
        {
            self.timer_at = Some(at);
            env.sched.at(
                at,
                SimEvent::Node {
                    node: self.id,
                    generation: self.generation,
                    timer: NodeTimer::CoreTimeout,
                },
            );
        }
    }

    fn perform(&mut self, env: &mut Env<'_>, action: Action) {
        let now = env.sched.now();
        match action {
            Action::WalAppend {
                io,
                segment,
                create,
                bytes,
            } => {
                let file = segment_file_name(segment);
                if create {
                    self.disk.create(&file);
                }
                self.disk.append(&file, &bytes);
                let entry = decode_append(&bytes, create);
                let Some(entry) = entry else {
                    self.report(
                        Kind::Recovery,
                        format!("n{} wrote a WAL append that does not decode", self.id),
                    );
                    return;
                };
                env.trace.record(
                    now,
                    format_args!("n{} wal append {file}: {}", self.id, describe_entry(&entry)),
                );
                let index = entry.index;
                lock(&self.book).written(entry, now);
                self.appends.insert(
                    io,
                    Append {
                        file,
                        create,
                        index,
                    },
                );
                let latency = self.disk.latency();
                self.schedule(env, latency, NodeTimer::WalSynced { io });
                if std::mem::take(&mut self.crash_during_next_append) {
                    let at = self.rng.below(latency.max(1));
                    env.sched
                        .after_nanos(at, SimEvent::CrashNow { node: self.id });
                }
            }
            Action::WalDelete { segment } => {
                let file = segment_file_name(segment);
                env.trace
                    .record(now, format_args!("n{} wal delete {file}", self.id));
                self.disk.delete(&file);
            }
            Action::PersistStore { io } => {
                let latency = self.disk.latency();
                self.schedule(env, latency, NodeTimer::Persisted { io });
            }
            Action::CompactStore { io, revision } => {
                let latency = self.disk.latency();
                self.schedule(env, latency, NodeTimer::Compacted { io, revision });
            }
            Action::Publish { events } => self.publish(env, &events),
            Action::Reply { id, result } => {
                if let Some((client, op)) = self.pending.remove(&id) {
                    self.send_reply(env, client, op, result.map(Reply::Response));
                }
            }
            Action::Failed { reason } => {
                self.failed = true;
                let (lo, hi) = self.config.restart_after;
                let delay = self.rng.range(lo.as_nanos() as u64, hi.as_nanos() as u64);
                env.faults.record(
                    now,
                    format!(
                        "n{} stops accepting writes ({reason}); restarts in {}ms",
                        self.id,
                        delay / 1_000_000
                    ),
                );
                env.sched.after_nanos(
                    delay,
                    SimEvent::Restart {
                        node: self.id,
                        generation: self.generation,
                    },
                );
            }
        }
    }

    fn publish(&mut self, env: &mut Env<'_>, events: &[Event]) {
        let now = env.sched.now();
        let lag = self.config.watch_lag_ppm;
        if self
            .watchers
            .publish(&mut self.rng, env.history, events, lag, now)
        {
            self.schedule_pump(env);
        }
    }

    fn schedule_pump(&mut self, env: &mut Env<'_>) {
        if !self.pump_scheduled {
            self.pump_scheduled = true;
            let delay = self.rng.log_uniform(10_000, 50_000_000);
            self.schedule(env, delay, NodeTimer::WatchPump);
        }
    }

    fn pump(&mut self, env: &mut Env<'_>) {
        self.pump_scheduled = false;
        let Some(core) = &self.core else { return };
        let view = core.store().view();
        let now = env.sched.now();
        let pumped = self.watchers.pump(&mut self.rng, env.history, &view, now);
        for (id, e) in pumped.cancelled {
            env.trace
                .record(now, format_args!("n{} cancels watch #{id}: {e}", self.id));
            if e != Error::Compacted {
                self.report(Kind::Watch, format!("watch #{id} replay failed: {e}"));
            }
        }
        if pumped.again {
            self.schedule_pump(env);
        }
    }

    /// Records, for every open watch, that it is live at the end of the run.
    pub fn end_watches(&mut self, env: &mut Env<'_>) {
        self.watchers.end_all_live(env.history);
    }
}

/// The entry inside a `WalAppend`'s bytes (after the segment header when `create`).
fn decode_append(bytes: &Bytes, create: bool) -> Option<LogEntry> {
    let offset = if create { SEGMENT_HEADER_LEN } else { 0 };
    match read_frame(bytes, offset) {
        FrameRead::Frame { payload, .. } => decode_entry(&payload).ok(),
        _ => None,
    }
}
