//! Runs the core as one task on the runtime that opened the node. The task drives the
//! [`Core`] and the WAL files (the [`Engine`]): it feeds the core what queued up, performs
//! the actions, and appends to the WAL itself, after the round's replies. A request that
//! finds the engine idle runs its round on the caller's own task instead ([`submit`]), so
//! a lone writer's put involves no other task at all. A durable batch is answered at once and
//! applied to the store on the applier thread while the task runs the next batch's append,
//! or on the task itself when no append follows (`applier`); reads wait for the apply of
//! any write already answered (`StoreSlot::acknowledge`). Store persistence, compaction and
//! checkpoint builds run on short-lived background threads. Adapters are thin: every
//! decision is the core's.
//!
//! Why a task and not a thread of its own: a request from a runtime task (an application's,
//! or a gRPC handler) wakes the core's task on the same worker, and the answer wakes the
//! caller there too, where a thread of its own would cost a cross-thread wake-up each way
//! (about 100 µs on a small VM, measured: docs/benchmarks.md). The WAL append blocks the
//! worker for one durable write per batch, as a WAL thread would block its thread;
//! the other workers go on meanwhile, and on a multi-threaded runtime the callers just
//! answered do too: the worker's queue moves to another thread for the sync
//! (`Driver::append`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use bytes::Bytes;
use t4_core::checkpoint::{BuildSpec, Built};
use t4_core::object::{ObjectError, ObjectResponse};
use t4_core::remote::CheckpointInfo;
use t4_core::wal::SegmentId;
use t4_core::{
    Action, Core, Event, Input, IoId, ReadView, Request, RequestId, Response, Revision, Store,
};
use tokio::sync::mpsc::{UnboundedReceiver as Receiver, UnboundedSender as Sender};
use tokio::sync::{broadcast, oneshot, watch};

use crate::object_io::ObjectIo;
use crate::slot::StoreSlot;
use crate::store::FjallStore;
use crate::wal_dir::WalDir;

mod applier;
mod progress;

use applier::{Acker, Applier, Delivery, Job};

/// A monotonic clock mapped onto the core's [`t4_core::Instant`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: std::time::Instant,
}

impl Clock {
    #[allow(clippy::disallowed_methods)] // the adapter is where real time enters
    pub(crate) fn start() -> Clock {
        Clock {
            origin: std::time::Instant::now(),
        }
    }

    pub(crate) fn now(&self) -> t4_core::Instant {
        t4_core::Instant(self.origin.elapsed().as_nanos() as u64)
    }
}

/// A request for the core's task.
pub(crate) enum Command {
    /// A client request and where to send its answer.
    Request {
        request: Request,
        /// See [`t4_core::Input::Request`].
        auth_revision: Option<u64>,
        reply: oneshot::Sender<Result<Response, t4_core::Error>>,
    },
    /// An IO the core asked for finished.
    IoDone {
        io: IoId,
        result: Result<(), String>,
    },
    /// An object-store request the core asked for finished.
    ObjectDone {
        io: IoId,
        result: Result<ObjectResponse, ObjectError>,
    },
    /// A checkpoint the core asked for was built (or failed to be).
    CheckpointBuilt {
        io: IoId,
        result: Result<Built, String>,
    },
    /// Take a checkpoint now; answer when it is published.
    Checkpoint {
        reply: oneshot::Sender<Result<CheckpointInfo, String>>,
    },
    /// The applier thread applied an entry.
    Applied(applier::Done),
    /// Stop taking requests, finish what is in flight, persist the store, exit.
    Shutdown { done: Option<oneshot::Sender<()>> },
    /// Nothing to do but look at the core's next deadline again: a round run on a caller's
    /// task moved it earlier than the one the core's task waits for.
    Wake,
}

/// Whether the node serves yet: it does not while it recovers from the bucket at start-up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Serving {
    /// Recovering; `open` waits.
    Starting,
    /// Serving requests.
    Yes,
    /// The core failed before it served (or later); the reason.
    Failed(String),
}

/// What the node's handles share with the core's task.
pub(crate) struct Shared {
    /// The node's data directory.
    pub(crate) data_dir: std::path::PathBuf,
    /// Every read goes through it; the core's task empties it when the node closes.
    pub(crate) store: Arc<StoreSlot>,
    pub(crate) commands: Sender<Command>,
    /// The core and what drives it, for a caller's task to run a round on when the core's
    /// task is idle ([`submit`]).
    pub(crate) engine: Arc<Engine>,
    /// A receiver to `resubscribe` from; the core's task owns the only sender, so every
    /// watch ends when the node closes.
    pub(crate) events: Mutex<broadcast::Receiver<Arc<[Event]>>>,
    /// The applied revision; the core's task owns the sender.
    pub(crate) applied: watch::Receiver<Revision>,
    /// The number of local WAL segment files; the core's task owns the sender.
    pub(crate) wal_segments: watch::Receiver<usize>,
    pub(crate) failure: Mutex<Option<String>>,
    /// Whether the core serves yet; the core's task owns the sender.
    pub(crate) serving: watch::Receiver<Serving>,
    /// Entries acknowledged but not yet in the bucket (the loss window of async upload); the
    /// core's task owns the sender.
    pub(crate) unuploaded: watch::Receiver<u64>,
    /// The auth state as answered ([`crate::Node::auth`]).
    pub(crate) auth: Mutex<Arc<t4_core::auth::AuthState>>,
    /// The published auth state's revision and enabled flag, read together without the lock:
    /// `revision << 1 | enabled`.
    pub(crate) auth_status: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Makes `state` the published auth state unless a later one is published already.
    pub(crate) fn publish_auth(&self, state: &Arc<t4_core::auth::AuthState>) {
        let mut published = self.auth.lock().unwrap_or_else(|e| e.into_inner());
        if state.revision >= published.revision {
            let status = state.revision << 1 | u64::from(state.enabled);
            self.auth_status
                .store(status, std::sync::atomic::Ordering::Release);
            *published = state.clone();
        }
    }
}

/// The core's task's ends of the channels in [`Shared`].
pub(crate) struct Outlets {
    pub(crate) events: broadcast::Sender<Arc<[Event]>>,
    pub(crate) applied: watch::Sender<Revision>,
    /// Published after each WAL append or delete.
    pub(crate) wal_segments: watch::Sender<usize>,
    pub(crate) serving: watch::Sender<Serving>,
    pub(crate) unuploaded: watch::Sender<u64>,
}

/// Where the core's object requests go: the store and the runtime to run them on.
pub(crate) struct Remote {
    pub(crate) io: ObjectIo,
    pub(crate) runtime: tokio::runtime::Handle,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: let the core's task finish cleanly.
        let _ = self.commands.send(Command::Shutdown { done: None });
    }
}

/// Starts the core's task on the current runtime.
#[allow(clippy::too_many_arguments)] // each is one of the task's distinct parts
pub(crate) fn spawn(
    runtime: &tokio::runtime::Handle,
    core: Core<FjallStore>,
    wal: WalDir,
    clock: Clock,
    shared: &Arc<Shared>,
    outlets: Outlets,
    commands: Receiver<Command>,
    remote: Option<Remote>,
) {
    let acker = Acker {
        store: core.store().clone(),
        slot: shared.store.clone(),
        events: outlets.events,
        applied: Arc::new(outlets.applied),
    };
    let driver = Driver {
        applier: Applier::start(acker.clone(), shared.commands.clone()),
        acker,
        apply: None,
        core,
        clock,
        commands_tx: shared.commands.clone(),
        wal,
        wal_segments: outlets.wal_segments,
        append: None,
        multi_thread: runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread,
        answered: 0,
        background: Vec::new(),
        refreshed_index: 0,
        shared: Arc::downgrade(shared),
        pending: HashMap::new(),
        checkpoints: HashMap::new(),
        next_request: 0,
        remote,
        serving: outlets.serving,
        unuploaded: outlets.unuploaded,
        progress: progress::Reporter::new(),
        waiting: None,
        stopping: None,
        on_caller: false,
    };
    let clock = driver.clock;
    *shared
        .engine
        .driver
        .try_lock()
        .expect("nobody else holds a node's engine before its task starts") = Some(driver);
    runtime.spawn(run(shared.engine.clone(), clock, commands));
}

/// The core and everything that drives it, behind the lock that the core's task and a
/// caller running a round on its own task ([`run_here`]) take in turn. Empty once the
/// node has closed.
pub(crate) struct Engine {
    driver: tokio::sync::Mutex<Option<Driver>>,
    /// Requests sent to the core's task that it has not taken yet: while there are any, a
    /// request queues behind them rather than overtake them on its caller's task.
    queued: AtomicUsize,
}

impl Engine {
    /// An engine without a core yet: [`spawn`] puts one in.
    pub(crate) fn empty() -> Engine {
        Engine {
            driver: tokio::sync::Mutex::new(None),
            queued: AtomicUsize::new(0),
        }
    }
}

/// Sends a request to the core: runs its round on the caller's task when the core is idle
/// ([`run_here`]), else queues it for the core's task. Requests are decided in the order
/// they are submitted in either case. Fails when the node has closed.
pub(crate) fn submit(
    shared: &Shared,
    request: Request,
    auth_revision: Option<u64>,
    reply: oneshot::Sender<Result<Response, t4_core::Error>>,
) -> Result<(), ()> {
    let command = Command::Request {
        request,
        auth_revision,
        reply,
    };
    let Some(command) = run_here(&shared.engine, command) else {
        return Ok(());
    };
    shared.engine.queued.fetch_add(1, Ordering::AcqRel);
    shared.commands.send(command).map_err(|_| {
        shared.engine.queued.fetch_sub(1, Ordering::AcqRel);
    })
}

/// Runs the round for `command` (a request) on the caller's task when the core's task is
/// idle — waiting for commands, so nobody holds the engine — and nothing queued for it
/// waits; gives the command back otherwise, for the caller to queue for the core's task.
/// A lone writer's put then costs no task switch at all: the core's task would be woken on
/// the caller's worker, and the answer would wake the caller there again, one switch too
/// many for the runtime's "last in, first out" slot, which then hands the connection's
/// task to the other worker (measured with `t4 run` and one writer: docs/benchmarks.md).
/// A request that finds the core busy queues as before, so concurrent writers still share
/// batches. The reply goes out as it would from the core's task: usually it is ready when
/// this returns. The round blocks the caller's thread for the WAL append, as the core's
/// task blocks its worker.
fn run_here(engine: &Engine, command: Command) -> Option<Command> {
    let Ok(mut guard) = engine.driver.try_lock() else {
        return Some(command);
    };
    // Checked under the lock, which the core's task holds while it takes queued requests.
    if engine.queued.load(Ordering::Acquire) > 0 {
        return Some(command);
    }
    let Some(driver) = guard.as_mut().filter(|d| d.stopping.is_none()) else {
        return Some(command);
    };
    let mut requests = Vec::with_capacity(1);
    driver.take(command, &mut requests);
    driver.on_caller = true;
    driver.decide(requests, None);
    driver.on_caller = false;
    driver.wake_if_sooner();
    None
}

/// The core's task: waits for commands (or the core's next deadline), and runs a round for
/// what came, with the engine locked; a caller may run rounds meanwhile ([`run_here`]).
async fn run(engine: Arc<Engine>, clock: Clock, mut commands: Receiver<Command>) {
    let mut until = {
        let mut guard = engine.driver.lock().await;
        let driver = guard.as_mut().expect("spawn filled the engine");
        driver.drain(Some(&commands));
        driver.before_wait(&commands)
    };
    while let Some(deadline) = until {
        let wait = next_command(&mut commands, deadline, clock).await;
        let mut guard = engine.driver.lock().await;
        let driver = guard.as_mut().expect("only this task empties the engine");
        driver.waiting = None;
        match wait {
            Wait::Command(first) => driver.round(first, &mut commands, &engine.queued),
            Wait::Timeout => {
                driver.timeouts();
                driver.drain(Some(&commands));
            }
            Wait::Closed => break,
        }
        until = driver.before_wait(&commands);
    }
    let mut driver = engine
        .driver
        .lock()
        .await
        .take()
        .expect("only this task empties the engine");
    let shutdown = driver.stopping.take();
    // Joining threads and persisting the store block: not on a runtime worker.
    let _ = tokio::task::spawn_blocking(move || driver.release()).await;
    for done in shutdown.into_iter().flatten() {
        let _ = done.send(());
    }
    // Dropped only now: a `close` that raced with this shutdown returns after the release.
    drop(commands);
}

/// The next command, or `Timeout` if `deadline` comes first.
async fn next_command(
    commands: &mut Receiver<Command>,
    deadline: Option<t4_core::Instant>,
    clock: Clock,
) -> Wait {
    let received = match deadline {
        Some(at) => {
            let wait = at.saturating_since(clock.now());
            match tokio::time::timeout(wait.max(Duration::from_micros(1)), commands.recv()).await {
                Ok(received) => received,
                Err(_) => return Wait::Timeout,
            }
        }
        None => commands.recv().await,
    };
    received.map_or(Wait::Closed, Wait::Command)
}

/// Sets `value` on a watch channel, waking its receivers only if it changed.
fn publish<T: PartialEq>(channel: &watch::Sender<T>, value: T) {
    channel.send_if_modified(|current| {
        let changed = *current != value;
        if changed {
            *current = value;
        }
        changed
    });
}

/// An apply of at most this many revisions (and leases, compactions) with nothing else to
/// do runs on the core's task: quicker than waking the applier thread. A larger one goes
/// to the thread, so that the core's task decides and appends the next batch meanwhile
/// instead of leaving the writers waiting behind it; so does any apply while requests
/// wait, unless reads wait for it (measured: `t4 run` with 16 clients +14 %; handing every
/// apply over cost 16 closed-loop embedded writers, whose next puts come only after the
/// answers, 12 %; docs/benchmarks.md).
const INLINE_APPLY_MAX_OPS: usize = 32;

/// Most answers since the core's task last appended or waited for which a WAL append hands
/// the worker's queue to another thread (`Driver::append`). Beyond it the woken callers
/// overflow to the runtime's shared queue, where the other workers take them anyway, and the
/// task, left on a thread without a worker's queue, would wake each caller of the following
/// rounds through that shared queue (measured: the embedded bench's 16 × 64 pipelined puts,
/// ~1,000 answers a round, −8.5 % with no limit; docs/benchmarks.md).
const HAND_OVER_MAX_ANSWERS: usize = 64;

/// Most commands taken from the queue before the core's actions are performed.
const MAX_COMMANDS_PER_ROUND: usize = 1024;

struct Driver {
    core: Core<FjallStore>,
    clock: Clock,
    commands_tx: Sender<Command>,
    /// The WAL: appends and deletes run on the core's task, between rounds of the core.
    wal: WalDir,
    /// The number of local WAL segment files, for the node's handles.
    wal_segments: watch::Sender<usize>,
    /// The append the core asked for, performed once the round's other actions are done.
    append: Option<(IoId, SegmentId, bool, Bytes)>,
    /// Whether the task runs on a multi-threaded runtime, where an append can hand the
    /// worker's queue to another thread (`append`).
    multi_thread: bool,
    /// How many answers went out since this task last appended or waited for commands: the
    /// callers' tasks they woke may still be queued on this task's worker.
    answered: usize,
    /// Store persistence and compaction threads that may still run.
    background: Vec<JoinHandle<()>>,
    /// The applied index as of the slot's last refresh.
    refreshed_index: u64,
    /// Applies entries and delivers what waited on them; holds the node's store, its read
    /// slot, and the events and applied-revision channels.
    acker: Acker,
    applier: Applier,
    /// The apply the core asked for in this round, with what was polled after it.
    apply: Option<Job>,
    /// What the node's handles share (the failure reason, the published auth state).
    shared: std::sync::Weak<Shared>,
    pending: HashMap<RequestId, oneshot::Sender<Result<Response, t4_core::Error>>>,
    /// On-demand checkpoints waiting for the core's answer.
    checkpoints: HashMap<RequestId, oneshot::Sender<Result<CheckpointInfo, String>>>,
    next_request: u64,
    remote: Option<Remote>,
    serving: watch::Sender<Serving>,
    unuploaded: watch::Sender<u64>,
    progress: progress::Reporter,
    /// While the core's task waits for commands, the deadline it waits until (`None`
    /// inside: none); `None` while it runs a round.
    waiting: Option<Option<t4_core::Instant>>,
    /// Set by a shutdown: whom to tell when the node has closed.
    stopping: Option<Vec<oneshot::Sender<()>>>,
    /// Whether a round runs on a caller's task ([`run_here`]), which must not hand its
    /// worker over (`append`): it may not even be a runtime worker.
    on_caller: bool,
}

/// What waiting for the next command brought.
enum Wait {
    Command(Command),
    /// The core's next timeout came first.
    Timeout,
    /// Every sender is gone.
    Closed,
}

impl Driver {
    /// Before the core's task waits: `None` when it is to stop (a shutdown with nothing
    /// left in flight), else the core's next deadline, noted for [`run_here`].
    fn before_wait(&mut self, commands: &Receiver<Command>) -> Option<Option<t4_core::Instant>> {
        if self.stopping.is_some() && self.core.is_quiescent() {
            return None;
        }
        if commands.is_empty() {
            // This task is about to wait: the callers it answered run meanwhile.
            self.answered = 0;
        }
        let until = self.core.poll_timeout();
        self.waiting = Some(until);
        Some(until)
    }

    /// After a round on a caller's task: wakes the core's task if the core's next deadline
    /// is now sooner than the one it waits until.
    fn wake_if_sooner(&mut self) {
        let Some(until) = self.waiting else {
            return;
        };
        let next = self.core.poll_timeout();
        if next.is_some_and(|at| until.is_none_or(|u| at < u)) {
            self.waiting = Some(next);
            let _ = self.commands_tx.send(Command::Wake);
        }
    }

    /// Handles every deadline of the core's that has passed.
    fn timeouts(&mut self) {
        let now = self.clock.now();
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
        }
    }

    /// A round for `first` and everything that queued up meanwhile (while the last WAL
    /// append synced): its requests share the next batch. `queued` counts the requests
    /// sent to this task and not taken yet ([`submit`]).
    fn round(&mut self, first: Command, commands: &mut Receiver<Command>, queued: &AtomicUsize) {
        let mut requests = Vec::new();
        let mut next = Some(first);
        let mut taken = 0;
        while let Some(command) = next.take() {
            if matches!(command, Command::Request { .. }) {
                queued.fetch_sub(1, Ordering::AcqRel);
            }
            self.take(command, &mut requests);
            taken += 1;
            if taken < MAX_COMMANDS_PER_ROUND {
                next = commands.try_recv().ok();
            }
        }
        self.decide(requests, Some(commands));
    }

    /// Feeds the core `requests` and any passed deadline, then performs what it asks for.
    /// `commands` is the queue when the core's task runs the round (`None` on a caller's).
    fn decide(&mut self, requests: Vec<Input>, commands: Option<&Receiver<Command>>) {
        if !requests.is_empty() {
            self.core.handle_all(self.clock.now(), requests);
        }
        self.timeouts();
        self.drain(commands);
    }

    /// Takes one command into the round: a request joins `requests` (to be fed to the core
    /// together); anything else is fed to the core at once.
    fn take(&mut self, command: Command, requests: &mut Vec<Input>) {
        match command {
            Command::Request {
                request,
                auth_revision,
                reply,
            } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err(t4_core::Error::Stopped));
                } else {
                    self.next_request += 1;
                    let id = RequestId(self.next_request);
                    self.pending.insert(id, reply);
                    requests.push(Input::Request {
                        id,
                        request,
                        auth_revision,
                    });
                }
            }
            Command::IoDone { io, result } => self
                .core
                .handle(self.clock.now(), Input::IoDone { io, result }),
            Command::ObjectDone { io, result } => self
                .core
                .handle(self.clock.now(), Input::ObjectDone { io, result }),
            Command::Applied(done) => {
                self.applier.reported();
                self.apply_done(done);
            }
            Command::CheckpointBuilt { io, result } => self
                .core
                .handle(self.clock.now(), Input::CheckpointBuilt { io, result }),
            Command::Checkpoint { reply } => {
                if self.stopping.is_some() {
                    let _ = reply.send(Err("the node is shutting down".to_string()));
                } else {
                    self.next_request += 1;
                    let id = RequestId(self.next_request);
                    self.checkpoints.insert(id, reply);
                    self.core.handle(self.clock.now(), Input::Checkpoint { id });
                }
            }
            Command::Shutdown { done } => self.stopping.get_or_insert_with(Vec::new).extend(done),
            Command::Wake => {}
        }
    }

    /// Persists the store and lets go of the data dir: waits for the background threads,
    /// then drops every handle to the store, so that fjall releases its lock before
    /// `close` returns and the directory can be opened again at once.
    fn release(self) {
        let Driver {
            core,
            wal,
            background,
            mut applier,
            acker,
            ..
        } = self;
        applier.stop();
        let Acker { store, slot, .. } = acker;
        for job in background {
            let _ = job.join();
        }
        if let Err(e) = store.persist() {
            tracing::error!(error = %e, "could not persist the store at shutdown; the WAL still holds every write");
        }
        drop(wal);
        drop(core);
        drop(store);
        drop(slot.close());
    }

    /// Publishes what the node's handles watch: serving state, loss window, recovery
    /// progress.
    fn report(&mut self) {
        let serving = if let Some(reason) = self.core.failure() {
            Serving::Failed(reason.to_string())
        } else if self.core.is_serving() {
            Serving::Yes
        } else {
            Serving::Starting
        };
        self.serving.send_if_modified(|s| {
            // A node that served and then failed keeps serving reads: only a failure before
            // serving is reported to `open`.
            let changed = *s != serving && !(*s == Serving::Yes && serving != Serving::Yes);
            if changed {
                *s = serving;
            }
            changed
        });
        progress::report(&mut self.progress, &self.core);
    }

    /// Performs every action the core has queued, in order — the WAL append last, after the
    /// replies and events of the round, as its completion feeds the core again — then reports
    /// the state. An apply with an append after it runs on the applier thread (the events
    /// and checkpoint answers polled after it go with it), and so does whatever of those is
    /// polled while the thread has an apply unreported, a large apply, and any apply while
    /// commands wait in `commands` (the core's task then takes them meanwhile); a small
    /// apply with nothing else to do, or that reads wait for, runs here. Replies go out as
    /// they are polled.
    fn drain(&mut self, commands: Option<&Receiver<Command>>) {
        loop {
            self.perform();
            let append = self.append.take();
            let job = self.apply.take();
            if append.is_none() && job.is_none() {
                break;
            }
            if let Some(job) = job {
                let small = job
                    .apply
                    .as_ref()
                    .is_none_or(|(_, entry)| entry.ops.len() <= INLINE_APPLY_MAX_OPS);
                // Requests already waiting would wait for an inline apply too, unless reads
                // wait for this apply: then it runs at once, here.
                let idle = append.is_none()
                    && (commands.is_none_or(|c| c.is_empty()) || self.acker.slot.readers_waiting());
                let inline = if !idle || self.applier.busy() || !small {
                    self.applier.hand_over(job)
                } else {
                    Some(job)
                };
                if let Some(done) = inline.and_then(|job| self.acker.run(job)) {
                    self.apply_done(done);
                }
            }
            if let Some((io, segment, create, bytes)) = append {
                let result = self.append(segment, create, &bytes);
                // Before the completion: whoever it acknowledges already sees the new segment.
                self.publish_segments();
                self.core
                    .handle(self.clock.now(), Input::IoDone { io, result });
            }
        }
        self.report();
    }

    /// Delivers events or a checkpoint's answer now, or after the apply before it in the
    /// core's order.
    fn deliver(&mut self, delivery: Delivery) {
        if self.apply.is_none() && self.applier.busy() {
            self.apply = Some(Job {
                apply: None,
                then: Vec::new(),
            });
        }
        match &mut self.apply {
            Some(job) => job.then.push(delivery),
            None => self.acker.deliver(delivery),
        }
    }

    /// Reports a finished apply to the core, with the view taken after it.
    fn apply_done(&mut self, done: applier::Done) {
        if let Some(view) = done.view {
            // The apply refreshed the read slot with this view.
            self.refreshed_index = view.applied_index();
            self.core.offer_view(view);
        }
        self.core.handle(
            self.clock.now(),
            Input::IoDone {
                io: done.io,
                result: done.result,
            },
        );
    }

    /// Writes one WAL append durably, blocking the task's worker meanwhile. When
    /// answers went out since the task last appended or waited for commands (up to
    /// [`HAND_OVER_MAX_ANSWERS`]), the callers they woke are queued on this worker, where
    /// they would wait for the sync: `block_in_place` then hands the worker's queue to
    /// another thread first, so they run during it (measured: `t4 run` with 16 writing
    /// clients +4 to +20 %, txns +18 %; docs/benchmarks.md). A lone writer's answer ran
    /// while this task waited for its next request, so it pays no hand-over.
    fn append(&mut self, segment: SegmentId, create: bool, bytes: &[u8]) -> Result<(), String> {
        let wal = &mut self.wal;
        let answered = std::mem::take(&mut self.answered);
        let hand_over =
            self.multi_thread && !self.on_caller && (1..=HAND_OVER_MAX_ANSWERS).contains(&answered);
        let result = if hand_over {
            tokio::task::block_in_place(|| wal.append(segment, create, bytes))
        } else {
            wal.append(segment, create, bytes)
        };
        result.map_err(|e| e.to_string())
    }

    fn publish_segments(&self) {
        publish(&self.wal_segments, self.wal.segment_count());
    }

    fn perform(&mut self) {
        // The newest view for reads, as soon as the core has one.
        let index = self.core.applied_index();
        if index != self.refreshed_index {
            self.refreshed_index = index;
            // The core took a view right after the apply: share it rather than take another.
            let view = self
                .core
                .applied_view()
                .filter(|v| v.applied_index() == index)
                .cloned()
                .unwrap_or_else(|| self.acker.store.view());
            self.acker.slot.refresh(view);
        }
        applier::publish_newer(&self.acker.applied, self.core.applied_revision());
        // Likewise the loss window: a write answered in sync mode is already in the bucket.
        publish(&self.unuploaded, self.core.unuploaded_entries());
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::WalAppend {
                    io,
                    segment,
                    create,
                    bytes,
                } => {
                    // The core has at most one outstanding.
                    self.append = Some((io, segment, create, bytes));
                }
                Action::Apply { io, entry } => {
                    // Before the replies polled after it: they may be delivered at once.
                    if let Some(revision) = entry.last_revision() {
                        self.acker.slot.acknowledge(revision);
                    }
                    // An earlier apply polled in this round goes first, to the applier thread
                    // (in order), so that this one's deliveries follow both.
                    if let Some(earlier) = self.apply.take()
                        && let Some(job) = self.applier.hand_over(earlier)
                        && let Some(done) = self.acker.run(job)
                    {
                        self.apply_done(done);
                    }
                    self.apply = Some(Job {
                        apply: Some((io, entry)),
                        then: Vec::new(),
                    });
                }
                Action::WalDelete { segment } => {
                    if let Err(e) = self.wal.delete(segment) {
                        tracing::warn!(error = %e, "could not delete a sealed WAL segment; it will be retried at the next start");
                    }
                    self.publish_segments();
                }
                Action::PersistStore { io } => self.background(io, "t4-persist", |s| s.persist()),
                Action::CompactStore { io, revision } => {
                    self.background(io, "t4-compact", move |s| s.compact(revision))
                }
                Action::Publish { events } => self.deliver(Delivery::Publish(events)),
                Action::Reply { id, result } => {
                    // At once, even while the apply before it runs: the write is durable, the
                    // slot's acknowledged revision was raised when the apply was polled, and
                    // reads wait for the view to reach it.
                    if let Ok(Response::Auth(answer)) = &result
                        && let Some(shared) = self.shared.upgrade()
                    {
                        // Here rather than by the caller, who may be gone: the change is
                        // made, and the checks of every later request must see it.
                        shared.publish_auth(&answer.state);
                    }
                    if let Some(reply) = self.pending.remove(&id) {
                        let _ = reply.send(result);
                        self.answered += 1;
                    }
                }
                Action::Object { io, request } => self.object(io, request),
                Action::BuildCheckpoint { io, spec } => self.build_checkpoint(io, spec),
                Action::CheckpointDone { id, result } => {
                    if let Some(reply) = self.checkpoints.remove(&id) {
                        self.deliver(Delivery::Checkpoint(reply, result));
                    }
                }
                Action::Failed { reason } => {
                    if *self.serving.borrow() == Serving::Starting {
                        tracing::error!(%reason, "t4 node cannot start");
                    } else {
                        tracing::error!(%reason, "t4 node stopped accepting writes; reads continue; restart the node to recover");
                    }
                    if let Some(shared) = self.shared.upgrade() {
                        *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    }
                }
            }
        }
    }

    /// Runs an object request on the runtime; many may run at once.
    fn object(&mut self, io: IoId, request: t4_core::object::ObjectRequest) {
        let done = self.commands_tx.clone();
        let Some(remote) = &self.remote else {
            let _ = done.send(Command::ObjectDone {
                io,
                result: Err(ObjectError::Other(
                    "no object store is configured".to_string(),
                )),
            });
            return;
        };
        let objects = remote.io.clone();
        remote.runtime.spawn(async move {
            let result = objects.execute(request).await;
            let _ = done.send(Command::ObjectDone { io, result });
        });
    }

    /// Takes the view now (the core's contract: before anything else is fed to it), builds
    /// the checkpoint on a background thread.
    fn build_checkpoint(&mut self, io: IoId, spec: BuildSpec) {
        let view = self.acker.store.view();
        let done = self.commands_tx.clone();
        let spawned = thread::Builder::new()
            .name("t4-checkpoint".into())
            .spawn(move || {
                let result = t4_core::checkpoint::build(&view, &spec);
                let _ = done.send(Command::CheckpointBuilt { io, result });
            });
        match spawned {
            Ok(handle) => {
                self.background.retain(|h| !h.is_finished());
                self.background.push(handle);
            }
            Err(e) => {
                let _ = self.commands_tx.send(Command::CheckpointBuilt {
                    io,
                    result: Err(format!("cannot start a thread: {e}")),
                });
            }
        }
    }

    fn background(
        &mut self,
        io: IoId,
        name: &str,
        job: impl FnOnce(&FjallStore) -> Result<(), t4_core::StoreError> + Send + 'static,
    ) {
        let store = self.acker.store.clone();
        let done = self.commands_tx.clone();
        let spawned = thread::Builder::new().name(name.into()).spawn(move || {
            let result = job(&store).map_err(|e| e.to_string());
            let _ = done.send(Command::IoDone { io, result });
        });
        match spawned {
            Ok(handle) => {
                self.background.retain(|h| !h.is_finished());
                self.background.push(handle);
            }
            Err(e) => {
                let _ = self.commands_tx.send(Command::IoDone {
                    io,
                    result: Err(format!("cannot start a thread: {e}")),
                });
            }
        }
    }
}
