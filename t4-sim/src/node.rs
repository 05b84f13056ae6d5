//! A simulated node: exactly what the tokio adapter does, on the simulated disk and clock.
//!
//! * **Boot:** list the WAL segments on the disk, [`t4_core::wal::recover`] them with the
//!   store's applied index, cut the torn tail recovery asks for, [`Core::open`].
//! * **Actions:** `WalAppend` → write to the disk, then (after the disk's latency) fsync it
//!   and report `IoDone` with the fsync's result; `WalDelete` → delete the file;
//!   `PersistStore` / `CompactStore` → run them on the store after a delay and report;
//!   `Publish` → fan out to watchers through [`t4_core::watch::WatchCursor`]s (a watcher that falls behind
//!   replays from the store); `Reply` → send the answer to the client over the network;
//!   `Failed` → schedule a restart, as a supervisor would (a zombie-to-be stays down);
//!   `Object` → send the request to the shared bucket (`scenario::Event::BucketArrive`,
//!   see [`crate::bucket`]) and report `ObjectDone` when its answer comes back;
//!   `BuildCheckpoint` → take a store view now, [`t4_core::checkpoint::build`] it, report
//!   `CheckpointBuilt` after a disk latency.
//! * **Serving:** a node whose core is not serving yet (recovering from the bucket) drops
//!   client messages, as an adapter that has not finished `open` does; when it starts
//!   serving, the log book learns where a rebuild from the bucket ended.
//! * **Reads:** plain ranges are served from `store.view()` with [`t4_core::mvcc::range`],
//!   never through the core, as adapters do.
//! * **Crash:** drop the core; the disk keeps its durable bytes (and, on power loss, a random
//!   prefix of the rest, maybe torn); the store keeps a crash image (its last persist plus a
//!   random prefix of later applies). **Disk loss:** a fresh disk and an empty store.
//!
//! The node never decides anything the core should: if this file grows policy, move it into
//! the core where the simulator exercises it for every adapter.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use t4_core::mvcc::{MemStore, MemView};
use t4_core::object::{ObjectError, ObjectResponse};
use t4_core::wal::frame::FrameRead;
use t4_core::wal::segment::SEGMENT_HEADER_LEN;
use t4_core::wal::{LogEntry, decode_entry, read_frame, segment_file_name};
use t4_core::watch::WatchFilter;
use t4_core::{
    Action, Config, Core, Error, Event, Input, IoId, RequestId, Response, Revision, Store,
};

use crate::checker::{Kind, Violation};
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

mod boot;

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
    /// A store apply is reported done (the apply itself ran when it was asked for).
    Applied {
        /// Completion id.
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
    /// An object-store request's answer arrives (after the adapter's retries).
    ObjectDone {
        /// Completion id.
        io: IoId,
        /// The answer.
        result: Result<ObjectResponse, ObjectError>,
    },
    /// A checkpoint build finishes.
    CheckpointBuilt {
        /// Completion id.
        io: IoId,
        /// What it built.
        result: Result<t4_core::checkpoint::Built, String>,
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
    /// A zombie: when the core fails (fenced), the process stays down instead of being
    /// restarted, so the scenario can check that it stopped.
    pub retire_on_failure: bool,
    /// Model t4-tokio's adapter, which appends to the WAL on the task that runs the core:
    /// requests that arrive while an append syncs wait in the adapter and are fed together
    /// (`Core::handle_all`) once it completes. Otherwise each request is fed on arrival.
    pub inline_appends: bool,
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
    /// Applies performed and not reported yet, oldest first, each with the view taken right
    /// after it (offered to the core with the report, as t4-tokio's applier does).
    applies: VecDeque<(IoId, MemView)>,
    /// With [`NodeConfig::inline_appends`]: requests that arrived during the append in flight.
    queued: Vec<Input>,
    watchers: Watchers,
    pump_scheduled: bool,
    timer_at: Option<t4_core::Instant>,
    /// Whether the core refuses writes (a restart is scheduled).
    pub failed: bool,
    /// Boots so far.
    pub boots: u64,
    /// Lease keepalives and queries answered (not refused) while a sync-mode bucket was
    /// down: answers from the durable state, which the checkers judge like any other.
    pub outage_lease_answers: usize,
    /// Crash (by the fault plan) in the middle of the next WAL append.
    pub crash_during_next_append: bool,
    /// Object-store requests in flight.
    objects: BTreeMap<IoId, String>,
    /// Whether the core served since its last boot (a rebuild from the bucket is over).
    serving: bool,
    /// Whether the core ever served (in the zombie scenario: n1 has fenced the prefix).
    pub has_served: bool,
    /// Since when the node has not served: crashed, or starting up again (None while it
    /// serves, and before its first crash).
    down_since: Option<t4_core::Instant>,
    /// Nanoseconds spent down, over every crash that the node has recovered from.
    down_total: u64,
    /// The process is paused (a long GC pause, a frozen VM) until then: nothing it does
    /// happens, its timers and answers wait.
    pub paused_until: Option<t4_core::Instant>,
    /// The core failed and the process was retired (see [`NodeConfig::retire_on_failure`]).
    pub retired: bool,
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
            applies: VecDeque::new(),
            queued: Vec::new(),
            watchers: Watchers::default(),
            pump_scheduled: false,
            timer_at: None,
            failed: false,
            boots: 0,
            outage_lease_answers: 0,
            crash_during_next_append: false,
            objects: BTreeMap::new(),
            serving: false,
            has_served: false,
            down_since: None,
            down_total: 0,
            paused_until: None,
            retired: false,
        }
    }

    /// Nanoseconds the node has not served since it first crashed, up to `now`: crashed, or
    /// starting up again. Entries that async upload acknowledged cannot reach the bucket
    /// meanwhile, so the loss window stretches by this much.
    pub fn downtime(&self, now: t4_core::Instant) -> u64 {
        self.down_total
            + self
                .down_since
                .map_or(0, |s| now.as_nanos().saturating_sub(s.as_nanos()))
    }

    /// The book this node reports to.
    pub fn book(&self) -> &SharedBook {
        &self.book
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// Makes this node a zombie-to-be: when its core fails, it is not restarted.
    pub fn retire_on_failure(&mut self) {
        self.config.retire_on_failure = true;
    }

    /// Whether the node is paused at `now`.
    pub fn is_paused(&self, now: t4_core::Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
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
            .is_some_and(|c| c.is_quiescent() && c.failure().is_none() && c.is_serving())
            && self.appends.is_empty()
            && self.objects.is_empty()
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

    /// Crashes the node. `power_loss`: the machine lost power (unsynced disk writes are at
    /// risk); otherwise only the process died. `lose_disk`: the machine is gone, and a fresh
    /// one takes its place.
    pub fn crash(&mut self, env: &mut Env<'_>, power_loss: bool, lose_disk: bool) {
        let now = env.sched.now();
        self.down_since.get_or_insert(now);
        self.core = None;
        self.generation += 1;
        self.pending.clear();
        self.appends.clear();
        self.applies.clear();
        self.queued.clear();
        self.objects.clear();
        self.timer_at = None;
        self.pump_scheduled = false;
        self.watchers.close_all(env.history, now);
        if lose_disk {
            self.disk = self.disk.replaced();
            self.store = MemStore::new();
            if self.config.core.remote.is_some() {
                lock(&self.book).disk_lost();
                env.faults.record(
                    now,
                    format!(
                        "n{} disk lost: the node starts empty and rebuilds from the bucket",
                        self.id
                    ),
                );
            } else {
                lock(&self.book).new_epoch(now);
                env.history.new_epoch(now);
                env.faults.record(
                    now,
                    format!("n{} disk lost: the node starts empty", self.id),
                );
            }
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
        lock(&self.book).tick(now);
        let Some(core) = self.core.as_mut() else {
            env.trace
                .record(now, format_args!("n{} is down: message dropped", self.id));
            return;
        };
        if !core.is_serving() {
            // Still recovering from the bucket: an adapter does not listen yet (`open`
            // returns once the core serves), and its store is not caught up.
            env.trace.record(
                now,
                format_args!("n{} is not serving yet: message dropped", self.id),
            );
            return;
        }
        match msg {
            ToNode::Call { client, op, call } => {
                let auth_revision = call.auth_revision();
                let request = match call {
                    Call::Range(req) => {
                        let view = core.store().view();
                        let result = t4_core::mvcc::range(&view, &req).map(Reply::Range);
                        self.send_reply(env, client, op, result);
                        return;
                    }
                    Call::Request(request) | Call::Checked { request, .. } => request,
                };
                self.next_request += 1;
                let id = RequestId(self.next_request);
                self.pending.insert(id, (client, op));
                let input = Input::Request {
                    id,
                    request,
                    auth_revision,
                };
                if self.config.inline_appends && !self.appends.is_empty() {
                    self.queued.push(input);
                    return;
                }
                core.handle(now, input);
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
        lock(&self.book).tick(now);
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
                    if !self.queued.is_empty() {
                        core.handle_all(now, std::mem::take(&mut self.queued));
                    }
                }
            }
            NodeTimer::Applied { io } => {
                // Reports come in the order of the applies: this one, and every older one
                // not reported yet (their own timers, due later, then find nothing).
                let Some(last) = self.applies.iter().position(|(i, _)| *i == io) else {
                    return;
                };
                for (io, view) in self.applies.drain(..=last).collect::<Vec<_>>() {
                    env.trace
                        .record(now, format_args!("n{} apply reported", self.id));
                    if let Some(core) = self.core.as_mut() {
                        core.offer_view(view);
                        core.handle(now, Input::IoDone { io, result: Ok(()) });
                    }
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
            NodeTimer::ObjectDone { io, result } => {
                let Some(what) = self.objects.remove(&io) else {
                    return;
                };
                env.trace.record(
                    now,
                    format_args!(
                        "n{} bucket {what}: {}",
                        self.id,
                        match &result {
                            Ok(_) => "ok".to_string(),
                            Err(e) => e.to_string(),
                        }
                    ),
                );
                if let Some(core) = self.core.as_mut() {
                    core.handle(now, Input::ObjectDone { io, result });
                }
            }
            NodeTimer::CheckpointBuilt { io, result } => {
                env.trace.record(
                    now,
                    format_args!(
                        "n{} checkpoint built: {}",
                        self.id,
                        match &result {
                            Ok(b) => format!(
                                "entry {} revision {}, {} new files",
                                b.index,
                                b.revision,
                                b.new_files.len()
                            ),
                            Err(e) => e.clone(),
                        }
                    ),
                );
                if let Some(core) = self.core.as_mut() {
                    core.handle(now, Input::CheckpointBuilt { io, result });
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
        if !self.serving && self.core.as_ref().is_some_and(|c| c.is_serving()) {
            self.has_served = true;
            self.started_serving(env);
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
            Action::Apply { io, entry } => {
                // Applied now, so that the replies polled after it find it in the store; the
                // report comes later, so the next append may complete first (as in t4-tokio,
                // where the apply overlaps the next fsync).
                let result = self
                    .core
                    .as_ref()
                    .map_or(Ok(()), |c| c.store().apply(&entry));
                if let Err(e) = result {
                    self.report(
                        Kind::Recovery,
                        format!("n{} could not apply entry {}: {e}", self.id, entry.index),
                    );
                    return;
                }
                env.trace.record(
                    now,
                    format_args!("n{} apply entry {}", self.id, entry.index),
                );
                if let Some(core) = &self.core {
                    self.applies.push_back((io, core.store().view()));
                }
                let delay = self.rng.log_uniform(1_000, 2_000_000);
                self.schedule(env, delay, NodeTimer::Applied { io });
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
                if let Ok(response) = &result {
                    lock(&self.book).client_acked(response, now);
                }
                if self.answered_during_outage(&result) {
                    self.outage_lease_answers += 1;
                }
                if let Some((client, op)) = self.pending.remove(&id) {
                    self.send_reply(env, client, op, result.map(Reply::Response));
                }
            }
            Action::Object { io, request } => {
                let what = crate::bucket::describe(&request);
                env.trace
                    .record(now, format_args!("n{} bucket {what} sent", self.id));
                self.objects.insert(io, what);
                let delay = crate::bucket::request_delay(&mut self.rng);
                env.sched.after_nanos(
                    delay,
                    SimEvent::BucketArrive {
                        node: self.id,
                        generation: self.generation,
                        io,
                        attempt: 0,
                        request,
                    },
                );
            }
            Action::BuildCheckpoint { io, spec } => {
                // The view is taken now, as the contract asks; the build runs "in the
                // background" for as long as the disk takes.
                let result = self.core.as_ref().map_or_else(
                    || Err("the node is down".to_string()),
                    |c| t4_core::checkpoint::build(&c.store().view(), &spec),
                );
                let latency = self.disk.latency();
                self.schedule(env, latency, NodeTimer::CheckpointBuilt { io, result });
            }
            Action::CheckpointDone { id, result } => {
                env.trace.record(
                    now,
                    format_args!(
                        "n{} checkpoint demand {id:?}: {:?}",
                        self.id,
                        result.is_ok()
                    ),
                );
            }
            Action::Failed { reason } if self.config.retire_on_failure => {
                self.failed = true;
                self.retired = true;
                env.faults.record(
                    now,
                    format!("n{} stops ({reason}) and is not restarted", self.id),
                );
                self.crash(env, false, false);
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

    /// Whether `result` is a lease answer given while the core has a sync-mode bucket that is
    /// down.
    fn answered_during_outage(&self, result: &Result<Response, Error>) -> bool {
        let sync = self
            .config
            .core
            .remote
            .as_ref()
            .is_some_and(|r| r.sync_upload);
        let lease = matches!(
            result,
            Ok(Response::LeaseKeepAlive(_)
                | Response::LeaseTimeToLive(_)
                | Response::LeaseLeases(_))
        );
        sync && lease
            && self
                .core
                .as_ref()
                .is_some_and(|c| c.object_store_outage().is_some())
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
