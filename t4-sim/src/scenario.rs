//! A scenario: seed + workload + fault plan + checkers.
//!
//! [`run`] builds a world from one seed — a node on a simulated disk, a simulated network,
//! clients — and runs it on simulated time:
//!
//! 1. **Fault phase.** Clients issue their operations; the fault plan crashes the node, fails
//!    fsyncs, slows IO, loses messages and partitions clients. The log book checks, at every
//!    commit, apply and restart, that nothing acknowledged is lost and the log stays
//!    gap-free; the first violation stops the run.
//! 2. **Settling.** Faults stop; the node must come back, finish what is in flight and bring
//!    every watcher up to date, then acknowledge a probe write (liveness).
//! 3. **Final restart.** The node loses power once more and restarts: everything committed
//!    must come back, and the store must equal a replay of the committed log.
//! 4. **Checkers** judge the history against the committed log.
//!
//! Everything random comes from child streams of the seed, so a seed replays exactly.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use t4_core::request::PutRequest;
use t4_core::{Config, Error, Instant, Request};

use t4_core::IoId;
use t4_core::object::ObjectRequest;

use crate::checker::{self, CheckConfig, Kind, Violation};
use crate::disk::SimDisk;
use crate::fault::{BucketPlan, FaultLog, FaultPlan};
use crate::history::{Call, History, OpId, Outcome, Reply};
use crate::logbook::{LogBook, SharedBook, lock};
use crate::net::{Endpoint, SimNet};
use crate::node::{Env, NodeConfig, NodeTimer, SimNode, ToNode};
use crate::objstore::{SharedStore, SimObjectStore, lock_store};
use crate::rng::SimRng;
use crate::sched::Scheduler;
use crate::trace::Trace;
use crate::workload::{Client, ClientAction, WorkloadConfig};

mod remote;
mod report;

pub use report::{Report, Scenario, Stats};

/// How long the system has to settle once faults stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// A run that handles more events than this at one simulated instant is spinning.
const EVENTS_PER_INSTANT: u64 = 100_000;
/// A run that goes on longer than this (simulated) has stalled.
const RUN_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// Everything that can happen, scheduled on simulated time.
#[derive(Debug)]
pub enum Event {
    /// A client's think time is over.
    ClientWake {
        /// The client.
        client: usize,
    },
    /// A client gives up waiting.
    ClientTimeout {
        /// The client.
        client: usize,
        /// The operation.
        op: OpId,
    },
    /// A message reaches a node.
    ToNode {
        /// The node.
        node: usize,
        /// The message.
        msg: ToNode,
    },
    /// An answer reaches a client.
    ToClient {
        /// The client.
        client: usize,
        /// The operation.
        op: OpId,
        /// The answer.
        result: Result<Reply, Error>,
    },
    /// A node's own timer.
    Node {
        /// The node.
        node: usize,
        /// The incarnation that set it.
        generation: u64,
        /// Which timer.
        timer: NodeTimer,
    },
    /// The fault plan crashes a node.
    Crash {
        /// The node.
        node: usize,
    },
    /// The crash the fault plan aimed at the middle of a WAL append.
    CrashNow {
        /// The node.
        node: usize,
    },
    /// A crashed node starts again.
    Boot {
        /// The node.
        node: usize,
        /// The incarnation that crashed.
        generation: u64,
    },
    /// A failed node is restarted by its supervisor.
    Restart {
        /// The node.
        node: usize,
        /// The incarnation that failed.
        generation: u64,
    },
    /// The fault plan cuts a client off.
    Partition {
        /// The client.
        client: usize,
    },
    /// A partition heals.
    Heal {
        /// The client.
        client: usize,
    },
    /// Settling: check whether the system is ready for the probe.
    Settle,
    /// A node's object-store request reaches the bucket (attempt `attempt`, 0-based). It
    /// takes effect even if the node crashed since it was sent.
    BucketArrive {
        /// The node.
        node: usize,
        /// The incarnation that sent it.
        generation: u64,
        /// The core's id for it.
        io: IoId,
        /// Retries so far.
        attempt: u32,
        /// The request.
        request: ObjectRequest,
    },
    /// Check that a fresh node recovers from a copy of the bucket.
    BucketCheck,
    /// The zombie scenario: the serving node pauses and a new node takes the prefix over.
    Takeover,
    /// The paused node wakes up.
    ZombieWakes,
    /// A client that still knows only the old node sends it a write (again every few
    /// seconds until the old node stopped: a lost message must not let it idle unfenced).
    StaleWrite,
    /// The end of the run: the last power loss and restart.
    FinalRestart,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Settling { since: Instant },
    Probing { op: OpId, since: Instant },
    Done,
}

/// The bucket of a run, shared by every node.
struct Bucket {
    store: SharedStore,
    prefix: String,
    plan: BucketPlan,
    /// The adapters' retry jitter.
    rng: SimRng,
}

struct World {
    scenario: Scenario,
    sched: Scheduler<Event>,
    trace: Trace,
    net: SimNet,
    /// Node 0, and the node that took the prefix over from it in the zombie scenario.
    nodes: Vec<SimNode>,
    /// The node clients talk to.
    target: usize,
    bucket: Option<Bucket>,
    clients: Vec<Client>,
    workload: WorkloadConfig,
    plan: FaultPlan,
    rng: SimRng,
    history: History,
    faults: FaultLog,
    book: SharedBook,
    phase: Phase,
    violations: Vec<Violation>,
}

/// Runs one scenario to its verdict.
pub fn run(scenario: &Scenario) -> Report {
    let mut w = World::new(scenario.clone());
    w.start();
    let (mut instant, mut at_instant) = (Instant::ZERO, 0u64);
    while let Some(event) = w.sched.pop() {
        if w.sched.now() == instant {
            at_instant += 1;
            if at_instant > EVENTS_PER_INSTANT {
                w.violations.push(Violation::new(
                    Kind::Liveness,
                    format!(
                        "more than {EVENTS_PER_INSTANT} events at {} without time moving on (a timer that fires again and again?)",
                        crate::trace::secs(instant)
                    ),
                ));
                break;
            }
        } else {
            (instant, at_instant) = (w.sched.now(), 0);
        }
        w.handle(event);
        for n in &w.nodes {
            let found = lock(n.book()).take_violations();
            w.violations.extend(found);
        }
        if !w.violations.is_empty() || w.phase == Phase::Done {
            break;
        }
        if w.sched.now() > Instant::ZERO + RUN_LIMIT {
            w.violations.push(Violation::new(
                Kind::Liveness,
                "the run exceeded its time limit",
            ));
            break;
        }
    }
    if w.violations.is_empty() && w.phase != Phase::Done {
        let detail = format!(
            "the run stalled in phase {:?} with nothing left to do",
            w.phase
        );
        w.violations.push(Violation::new(Kind::Liveness, detail));
    }
    w.finish()
}

impl World {
    fn new(scenario: Scenario) -> World {
        let seed = scenario.seed;
        let mut rng = SimRng::child(seed, "faults");
        let plan = FaultPlan::draw(&mut rng, scenario.faults, scenario.lying_disk);
        let mut wl_rng = SimRng::child(seed, "workload");
        let workload = WorkloadConfig::draw(&mut wl_rng, scenario.clients, scenario.ops);
        let clients = (0..workload.clients)
            .map(|c| Client::new(c, wl_rng.fork(), workload.ops_per_client))
            .collect();
        let mut plan = plan;
        let bucket_plan = BucketPlan::draw(
            &mut SimRng::child(seed, "bucket-plan"),
            scenario.bucket,
            scenario.faults,
            scenario.zombie,
            scenario.lying_bucket,
        );
        if bucket_plan.as_ref().is_some_and(|b| !b.sync) {
            // Async upload acknowledges writes the bucket does not have yet: losing the disk
            // loses them, by design (the loss window). Such runs check the bucket instead.
            plan.disk_loss_ppm = 0;
        }
        let mut cfg_rng = SimRng::child(seed, "config");
        let core = Config {
            segment_max_bytes: *cfg_rng.pick(&[1 << 10, 8 << 10, 64 << 10, 64 << 20]),
            segment_max_age: Duration::from_millis(*cfg_rng.pick(&[200, 2_000, 10_000])),
            remote: bucket_plan.as_ref().map(|b| b.remote.clone()),
            max_applies_in_flight: *cfg_rng.pick(&[1, 2, 4]),
            ..Config::default()
        };
        let node_config = NodeConfig {
            core,
            watch_lag_ppm: plan.watch_lag_ppm,
            persist_fail_ppm: plan.disk.fsync_fail_ppm,
            restart_after: (Duration::from_millis(50), Duration::from_millis(1000)),
            sync_on_recovery: scenario.sync_on_recovery,
            retire_on_failure: false,
            inline_appends: SimRng::child(seed, "adapter").chance(500_000),
        };
        let bucket = bucket_plan.map(|plan| Bucket {
            store: Arc::new(Mutex::new(SimObjectStore::new(
                SimRng::child(seed, "objstore"),
                plan.obj.clone(),
            ))),
            prefix: "t4".to_string(),
            plan,
            rng: SimRng::child(seed, "bucket"),
        });
        let book: SharedBook = Arc::new(Mutex::new(match &bucket {
            Some(b) => LogBook::with_bucket(Arc::clone(&b.store), &b.prefix),
            None => LogBook::new(),
        }));
        let disk = SimDisk::new(SimRng::child(seed, "disk"), plan.disk.clone());
        let node = SimNode::new(
            0,
            node_config,
            SimRng::child(seed, "node"),
            disk,
            Arc::clone(&book),
        );
        World {
            trace: Trace::new(scenario.keep_trace),
            net: SimNet::new(SimRng::child(seed, "net"), plan.net.clone()),
            scenario,
            sched: Scheduler::new(),
            nodes: vec![node],
            target: 0,
            bucket,
            clients,
            workload,
            plan,
            rng,
            history: History::new(),
            faults: FaultLog::default(),
            book,
            phase: Phase::Faults,
            violations: Vec::new(),
        }
    }

    fn env(&mut self, node: usize) -> (&mut SimNode, Env<'_>) {
        (
            &mut self.nodes[node],
            Env {
                sched: &mut self.sched,
                net: &mut self.net,
                trace: &mut self.trace,
                history: &mut self.history,
                faults: &mut self.faults,
            },
        )
    }

    fn between(&mut self, range: (Duration, Duration)) -> u64 {
        self.rng
            .range(range.0.as_nanos() as u64, range.1.as_nanos() as u64)
    }

    fn start(&mut self) {
        let now = self.sched.now();
        self.trace.record(
            now,
            format_args!(
                "seed {} plan: {}; workload: {:?}",
                self.scenario.seed,
                self.plan_summary(),
                self.workload
            ),
        );
        let (node, mut env) = self.env(0);
        node.boot(&mut env);
        if let Some(b) = &mut self.bucket {
            let d = b.rng.range(
                b.plan.check_every.0.as_nanos() as u64,
                b.plan.check_every.1.as_nanos() as u64,
            );
            self.sched.after_nanos(d, Event::BucketCheck);
            if let Some(z) = b.plan.zombie {
                self.sched.after(z.at, Event::Takeover);
            }
        }
        for c in 0..self.clients.len() {
            let delay = self.clients[c].think(&self.workload);
            self.sched
                .after_nanos(delay, Event::ClientWake { client: c });
        }
        if let Some(every) = self.plan.crash_every {
            let d = self.between(every);
            self.sched.after_nanos(d, Event::Crash { node: 0 });
        }
        if let Some(every) = self.plan.partition_every {
            for client in 0..self.clients.len() {
                let d = self.between(every);
                self.sched.after_nanos(d, Event::Partition { client });
            }
        }
    }

    /// The node an event is for, if it must wait for that node to wake up from a pause.
    fn paused_target(&self, event: &Event) -> Option<t4_core::Instant> {
        let node = match event {
            Event::ToNode { node, .. }
            | Event::Node { node, .. }
            | Event::Boot { node, .. }
            | Event::Restart { node, .. }
            | Event::CrashNow { node } => *node,
            _ => return None,
        };
        let now = self.sched.now();
        let n = &self.nodes[node];
        if node == 0 && self.zombie_waits(now) {
            return Some(now + Duration::from_millis(100));
        }
        n.is_paused(now).then(|| n.paused_until.expect("paused"))
    }

    fn handle(&mut self, event: Event) {
        let now = self.sched.now();
        if let Some(wake) = self.paused_target(&event) {
            // A paused process does nothing: what reaches it waits until it wakes.
            self.sched.at(wake, event);
            return;
        }
        match event {
            Event::ClientWake { client } => self.client_wake(client),
            Event::ClientTimeout { client, op } => {
                if client < self.clients.len() && self.clients[client].in_flight == Some(op) {
                    self.trace
                        .record(now, format_args!("c{client} times out on op#{op}"));
                    self.history.unknown(op);
                    self.clients[client].in_flight = None;
                    self.after_client_op(client);
                } else if let Phase::Probing { op: probe, .. } = self.phase
                    && probe == op
                    && self.history.ops[op].outcome == Outcome::Pending
                {
                    self.history.unknown(op);
                    self.violations.push(Violation::new(
                        Kind::Liveness,
                        "the probe write got no answer although every fault had stopped",
                    ));
                } else if client > self.clients.len() {
                    self.history.unknown(op);
                }
            }
            Event::ToNode { node, msg } => {
                if let ToNode::Call { client, op, call } = &msg {
                    self.trace
                        .record(now, format_args!("n{node} <- c{client} op#{op} {call}"));
                }
                let (n, mut env) = self.env(node);
                n.receive(&mut env, msg);
            }
            Event::ToClient { client, op, result } => self.answer(client, op, result),
            Event::Node {
                node,
                generation,
                timer,
            } => {
                if generation == self.nodes[node].generation {
                    let (n, mut env) = self.env(node);
                    n.on_timer(&mut env, timer);
                }
            }
            Event::Crash { node: _ } => {
                if self.phase != Phase::Faults {
                    return;
                }
                let node = self.target;
                if self.nodes[node].is_up() && self.rng.chance(self.plan.crash_mid_io_ppm) {
                    // Crash at the most interesting moment: while the next WAL append is
                    // written but not yet synced.
                    self.nodes[node].crash_during_next_append = true;
                } else {
                    self.crash_now(node);
                }
                if let Some(every) = self.plan.crash_every {
                    let d = self.between(every);
                    self.sched.after_nanos(d, Event::Crash { node: 0 });
                }
            }
            Event::CrashNow { node } => {
                if self.phase == Phase::Faults {
                    self.crash_now(node);
                }
            }
            Event::Boot { node, generation } => {
                let n = &self.nodes[node];
                if generation == n.generation && !n.is_up() && !n.retired {
                    let (n, mut env) = self.env(node);
                    n.boot(&mut env);
                }
            }
            Event::Restart { node, generation } => {
                if generation == self.nodes[node].generation && self.nodes[node].is_up() {
                    let power = self.rng.chance(self.plan.power_loss_ppm);
                    self.trace.record(
                        now,
                        format_args!("n{node} restarted by its supervisor (power_loss={power})"),
                    );
                    let (n, mut env) = self.env(node);
                    n.crash(&mut env, power, false);
                    n.boot(&mut env);
                }
            }
            Event::Partition { client } => {
                if self.phase == Phase::Faults {
                    for n in 0..self.nodes.len() {
                        self.net
                            .partition(Endpoint::Client(client), Endpoint::Node(n));
                    }
                    let d = self.between(self.plan.partition_for);
                    self.faults.record(
                        now,
                        format!(
                            "c{client} partitioned from the nodes for {}ms",
                            d / 1_000_000
                        ),
                    );
                    self.trace
                        .record(now, format_args!("FAULT partition c{client} | nodes"));
                    self.sched.after_nanos(d, Event::Heal { client });
                }
            }
            Event::Heal { client } => {
                for n in 0..self.nodes.len() {
                    self.net.heal(Endpoint::Client(client), Endpoint::Node(n));
                }
                self.trace
                    .record(now, format_args!("heal c{client} | nodes"));
                if self.phase == Phase::Faults
                    && let Some(every) = self.plan.partition_every
                {
                    let d = self.between(every);
                    self.sched.after_nanos(d, Event::Partition { client });
                }
            }
            Event::Settle => self.settle(),
            Event::BucketArrive {
                node,
                generation,
                io,
                attempt,
                request,
            } => self.bucket_arrive(node, generation, io, attempt, request),
            Event::BucketCheck => self.bucket_check(),
            Event::Takeover => self.takeover(),
            Event::ZombieWakes => self.zombie_wakes(),
            Event::StaleWrite => self.stale_write(),
            Event::FinalRestart => self.final_restart(),
        }
    }

    fn crash_now(&mut self, node: usize) {
        let now = self.sched.now();
        self.nodes[node].crash_during_next_append = false;
        if !self.nodes[node].is_up() {
            return;
        }
        let power = self.rng.chance(self.plan.power_loss_ppm);
        let lose_disk = self.rng.chance(self.plan.disk_loss_ppm);
        self.trace.record(
            now,
            format_args!("FAULT crash n{node} power_loss={power} disk_loss={lose_disk}"),
        );
        let (n, mut env) = self.env(node);
        n.crash(&mut env, power, lose_disk);
        let generation = self.nodes[node].generation;
        let down = self.between(self.plan.down_for);
        self.sched
            .after_nanos(down, Event::Boot { node, generation });
    }

    fn client_wake(&mut self, client: usize) {
        let now = self.sched.now();
        let c = &mut self.clients[client];
        if c.remaining == 0 || c.in_flight.is_some() {
            self.maybe_settle();
            return;
        }
        match c.next(&self.workload) {
            ClientAction::Call(call) => {
                let op = self.history.invoke(client, call.clone(), now);
                self.clients[client].in_flight = Some(op);
                self.trace
                    .record(now, format_args!("c{client} -> op#{op} {call}"));
                self.send(client, ToNode::Call { client, op, call });
                let timeout = self.workload.timeout;
                self.sched
                    .after(timeout, Event::ClientTimeout { client, op });
            }
            ClientAction::Watch { filter, start } => {
                self.trace.record(
                    now,
                    format_args!("c{client} -> watch {:?} from {start}", filter.range),
                );
                self.send(
                    client,
                    ToNode::Watch {
                        client,
                        filter,
                        start,
                    },
                );
                self.after_client_op(client);
            }
        }
    }

    fn send(&mut self, client: usize, msg: ToNode) {
        let node = self.target;
        self.send_to(client, node, msg);
    }

    fn send_to(&mut self, client: usize, node: usize, msg: ToNode) {
        match self
            .net
            .send(Endpoint::Client(client), Endpoint::Node(node))
        {
            Some(latency) => self.sched.after_nanos(latency, Event::ToNode { node, msg }),
            None => self.trace.record(
                self.sched.now(),
                format_args!("net loses request from c{client}"),
            ),
        }
    }

    fn after_client_op(&mut self, client: usize) {
        if self.clients[client].remaining > 0 {
            let delay = self.clients[client].think(&self.workload);
            self.sched.after_nanos(delay, Event::ClientWake { client });
        } else {
            self.maybe_settle();
        }
    }

    fn answer(&mut self, client: usize, op: OpId, result: Result<Reply, Error>) {
        let now = self.sched.now();
        let outcome = match &result {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        self.trace
            .record(now, format_args!("c{client} <- op#{op} {outcome}"));
        if client == self.clients.len() {
            // The probe.
            if self.history.ops[op].outcome == Outcome::Pending {
                let ok = result.is_ok();
                let retry_later = matches!(result, Err(Error::ObjectStoreUnavailable(_)));
                self.history.complete(op, now, result);
                if ok {
                    self.finish_run();
                } else if retry_later
                    && let Phase::Probing { since, .. } = self.phase
                    && now.saturating_since(since) < SETTLE_LIMIT
                {
                    // The core has not seen the bucket answer again since the faults stopped
                    // and says "retry later": a client would.
                    self.phase = Phase::Settling { since };
                    self.sched.after(Duration::from_millis(500), Event::Settle);
                } else {
                    self.violations.push(Violation::new(
                        Kind::Liveness,
                        format!(
                            "the probe write failed although every fault had stopped: {outcome}"
                        ),
                    ));
                }
            }
            return;
        }
        if client > self.clients.len() {
            // The client that still talks to the zombie.
            self.history.complete(op, now, result);
            return;
        }
        if self.clients[client].in_flight != Some(op) {
            // A late answer: the client already gave up. A node acknowledged it all the same.
            if let Ok(reply @ Reply::Response(_)) = result {
                self.history.late_answer(op, now, reply);
            }
            return;
        }
        self.clients[client].in_flight = None;
        let call = self.history.ops[op].call.clone();
        self.clients[client].observe(&call, &result);
        self.history.complete(op, now, result);
        self.after_client_op(client);
    }

    fn maybe_settle(&mut self) {
        if self.phase != Phase::Faults || !self.clients.iter().all(Client::done) {
            return;
        }
        // A zombie planned for later than the clients' work still happens.
        self.takeover();
        let now = self.sched.now();
        self.trace
            .record(now, format_args!("every client is done: faults stop"));
        self.phase = Phase::Settling { since: now };
        self.net.heal_all();
        self.net.calm();
        for n in &mut self.nodes {
            n.disk.calm();
            n.calm();
        }
        if let Some(b) = &mut self.bucket {
            lock_store(&b.store).calm();
        }
        self.sched.after(Duration::from_millis(100), Event::Settle);
    }

    fn settle(&mut self) {
        let now = self.sched.now();
        let Phase::Settling { since } = self.phase else {
            return;
        };
        if self.nodes[self.target].is_settled() {
            let client = self.clients.len();
            let call = Call::Request(Request::Put(PutRequest {
                key: Bytes::from_static(b"probe"),
                value: Bytes::from_static(b"probe"),
                ..Default::default()
            }));
            let op = self.history.invoke(client, call.clone(), now);
            self.trace.record(now, format_args!("probe -> op#{op}"));
            self.phase = Phase::Probing { op, since: now };
            self.send(client, ToNode::Call { client, op, call });
            self.sched
                .after(Duration::from_secs(30), Event::ClientTimeout { client, op });
            return;
        }
        if now.saturating_since(since) > SETTLE_LIMIT {
            let detail = format!(
                "the node did not settle within {}s after faults stopped (up: {}, failed: {})",
                SETTLE_LIMIT.as_secs(),
                self.nodes[self.target].is_up(),
                self.nodes[self.target].failed
            );
            self.violations.push(Violation::new(Kind::Liveness, detail));
            return;
        }
        self.sched.after(Duration::from_millis(100), Event::Settle);
    }

    /// The probe was acknowledged. With an async bucket, give the uploads their loss window
    /// to drain first; then the final restart.
    fn finish_run(&mut self) {
        let wait = self.drain_time();
        if wait.is_zero() && !self.zombie_pending() {
            self.final_restart();
        } else {
            self.sched.after(wait, Event::FinalRestart);
        }
    }

    /// Closes the watches, loses power once more, restarts; checks the bucket a last time.
    fn final_restart(&mut self) {
        if self.zombie_pending() {
            // The old writer has not woken up and stopped yet: give it the time.
            self.sched
                .after(Duration::from_secs(1), Event::FinalRestart);
            return;
        }
        let target = self.target;
        let (node, mut env) = self.env(target);
        node.end_watches(&mut env);
        let now = env.sched.now();
        env.trace
            .record(now, format_args!("final power loss and restart"));
        node.crash(&mut env, true, false);
        node.boot(&mut env);
        for n in 0..self.nodes.len() {
            if n != target {
                let (node, mut env) = self.env(n);
                node.end_watches(&mut env);
            }
        }
        self.final_bucket_checks();
        self.phase = Phase::Done;
    }

    fn finish(mut self) -> Report {
        let book = lock(&self.book);
        let epochs = book.epochs().to_vec();
        drop(book);
        let check = CheckConfig {
            min_lease_ttl: Config::default().min_lease_ttl,
            failed_is_definite: self.scenario.failed_is_definite,
        };
        let findings = checker::check_history(&self.history, &epochs, check);
        self.violations.extend(findings.violations.iter().cloned());
        let last = epochs.last().cloned().unwrap_or_default();
        let state_hash = checker::replay(&last).map(|t| t.digest()).unwrap_or(0);
        let revision = last
            .entries
            .iter()
            .rev()
            .find_map(|c| c.entry.last_revision())
            .unwrap_or(1);
        let count =
            |f: fn(&Outcome) -> bool| self.history.ops.iter().filter(|o| f(&o.outcome)).count();
        let stats = Stats {
            ops: self.history.ops.len(),
            ok: count(|o| matches!(o, Outcome::Ok(_))),
            errors: count(|o| matches!(o, Outcome::Err(_))),
            unknown: count(|o| matches!(o, Outcome::Unknown | Outcome::Pending)),
            watches: self.history.watches.len(),
            entries: last.entries.len(),
            revision,
            boots: self.nodes.iter().map(|n| n.boots).sum(),
            outage_lease_answers: self.nodes.iter().map(|n| n.outage_lease_answers).sum(),
            findings,
            state_hash,
        };
        let w = &self.workload;
        let workload = format!(
            "{} clients x {} ops, {} keys, think {}-{}ms, timeout {}s",
            w.clients,
            w.ops_per_client,
            w.keys,
            w.think.0 / 1_000_000,
            w.think.1 / 1_000_000,
            w.timeout.as_secs()
        );
        let plan = self.plan_summary();
        let book = lock(&self.book);
        let known_log = book.known_log();
        let acked_index = book.acked_index(self.sched.now());
        let committed = book.entries().len() as u64;
        drop(book);
        Report {
            bucket: self
                .bucket
                .as_ref()
                .map(|b| lock_store(&b.store).snapshot()),
            config: self.nodes[self.target].config().core.clone(),
            known_log,
            acked_index,
            committed,
            violations: self.violations,
            trace_hash: self.trace.hash(),
            events: self.trace.events(),
            trace: self.trace.take_text(),
            sim_time: self.sched.now(),
            plan,
            faults: self.faults,
            workload,
            stats,
            history: self.history,
            scenario: self.scenario,
        }
    }
}
