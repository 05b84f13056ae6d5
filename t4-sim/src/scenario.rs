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

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use t4_core::request::PutRequest;
use t4_core::{Config, Error, Instant, Request};

use crate::checker::{self, CheckConfig, Findings, Kind, Violation};
use crate::disk::SimDisk;
use crate::fault::{FaultLog, FaultMode, FaultPlan};
use crate::history::{Call, History, OpId, Outcome, Reply};
use crate::logbook::{LogBook, SharedBook, lock};
use crate::net::{Endpoint, SimNet};
use crate::node::{Env, NodeConfig, NodeTimer, SimNode, ToNode};
use crate::rng::SimRng;
use crate::sched::Scheduler;
use crate::trace::{Trace, secs};
use crate::workload::{Client, ClientAction, WorkloadConfig};

/// How long the system has to settle once faults stop.
const SETTLE_LIMIT: Duration = Duration::from_secs(120);
/// A run that goes on longer than this (simulated) has stalled.
const RUN_LIMIT: Duration = Duration::from_secs(4 * 3600);

/// One simulation run's parameters. Everything not given here is drawn from the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// The seed.
    pub seed: u64,
    /// Number of clients (drawn from the seed if `None`).
    pub clients: Option<usize>,
    /// Total operations (drawn from the seed if `None`).
    pub ops: Option<usize>,
    /// Which faults may happen.
    pub faults: FaultMode,
    /// Run on a disk that acknowledges fsync without making anything durable.
    pub lying_disk: bool,
    /// Make recovered WAL segments durable before serving (what a correct adapter does).
    pub sync_on_recovery: bool,
    /// Keep the trace text (for `--trace` and the determinism test).
    pub keep_trace: bool,
    /// Judge `Error::Failed` answers as "did not happen" (see
    /// [`CheckConfig::failed_is_definite`]).
    pub failed_is_definite: bool,
}

impl Scenario {
    /// The default scenario for `seed`: everything drawn from it, every fault allowed.
    pub fn new(seed: u64) -> Scenario {
        Scenario {
            seed,
            clients: None,
            ops: None,
            faults: FaultMode::All,
            lying_disk: false,
            sync_on_recovery: true,
            keep_trace: false,
            failed_is_definite: false,
        }
    }

    /// The command that replays this scenario.
    pub fn replay_command(&self) -> String {
        let mut cmd = format!("cargo run -p t4-sim --release -- --seed {}", self.seed);
        if let Some(c) = self.clients {
            cmd.push_str(&format!(" --clients {c}"));
        }
        if let Some(o) = self.ops {
            cmd.push_str(&format!(" --ops {o}"));
        }
        if self.faults != FaultMode::All {
            cmd.push_str(&format!(" --faults {}", self.faults));
        }
        if self.lying_disk {
            cmd.push_str(" --lying-disk");
        }
        if !self.sync_on_recovery {
            cmd.push_str(" --no-sync-on-recovery");
        }
        if self.failed_is_definite {
            cmd.push_str(" --failed-is-definite");
        }
        cmd
    }
}

/// Counts from one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Operations issued.
    pub ops: usize,
    /// Answered with success.
    pub ok: usize,
    /// Answered with an error.
    pub errors: usize,
    /// Never answered.
    pub unknown: usize,
    /// Watches opened.
    pub watches: usize,
    /// Entries in the committed log (last epoch).
    pub entries: usize,
    /// The last revision (last epoch).
    pub revision: i64,
    /// Boots of the node.
    pub boots: u64,
    /// What the checkers counted.
    pub findings: Findings,
    /// Digest of the final state (a replay of the committed log).
    pub state_hash: u64,
}

/// The verdict of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// What ran.
    pub scenario: Scenario,
    /// Every violation (empty: the run passed).
    pub violations: Vec<Violation>,
    /// Hash of the event trace.
    pub trace_hash: u64,
    /// The trace text, if kept.
    pub trace: Option<String>,
    /// Events in the trace.
    pub events: u64,
    /// Simulated time at the end.
    pub sim_time: Instant,
    /// The faults that happened.
    pub faults: FaultLog,
    /// The fault plan, in one line.
    pub plan: String,
    /// The workload, in one line.
    pub workload: String,
    /// Counts.
    pub stats: Stats,
    /// The history (for tests and post-mortems).
    pub history: History,
}

impl Report {
    /// Whether every checker passed.
    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    /// Whether some violation is of `kind`.
    pub fn has(&self, kind: Kind) -> bool {
        self.violations.iter().any(|v| v.kind == kind)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        writeln!(
            f,
            "seed {}: {}",
            self.scenario.seed,
            if self.passed() { "PASS" } else { "FAIL" }
        )?;
        writeln!(
            f,
            "  trace hash   {:016x} ({} events)",
            self.trace_hash, self.events
        )?;
        writeln!(f, "  simulated    {}", secs(self.sim_time))?;
        writeln!(f, "  workload     {}", self.workload)?;
        writeln!(f, "  fault plan   {}", self.plan)?;
        writeln!(
            f,
            "  history      {} ops: {} ok, {} errors, {} unknown ({} happened); {} watches, {} events checked",
            s.ops,
            s.ok,
            s.errors,
            s.unknown,
            s.findings.unknown_applied,
            s.watches,
            s.findings.watch_events
        )?;
        writeln!(
            f,
            "  log          {} entries, revision {}, {} boots, state hash {:016x}",
            s.entries, s.revision, s.boots, s.state_hash
        )?;
        if self.faults.entries.is_empty() {
            writeln!(f, "  faults       none happened")?;
        } else {
            writeln!(f, "  faults ({}):", self.faults.entries.len())?;
            write!(f, "{}", self.faults)?;
        }
        for v in &self.violations {
            writeln!(f, "  VIOLATION {v}")?;
        }
        if !self.passed() {
            writeln!(f, "  replay with: {}", self.scenario.replay_command())?;
        }
        Ok(())
    }
}

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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Faults,
    Settling { since: Instant },
    Probing { op: OpId, since: Instant },
    Done,
}

struct World {
    scenario: Scenario,
    sched: Scheduler<Event>,
    trace: Trace,
    net: SimNet,
    node: SimNode,
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
    while let Some(event) = w.sched.pop() {
        w.handle(event);
        let found = lock(&w.book).take_violations();
        w.violations.extend(found);
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
        let mut cfg_rng = SimRng::child(seed, "config");
        let core = Config {
            segment_max_bytes: *cfg_rng.pick(&[1 << 10, 8 << 10, 64 << 10, 64 << 20]),
            segment_max_age: Duration::from_millis(*cfg_rng.pick(&[200, 2_000, 10_000])),
            ..Config::default()
        };
        let node_config = NodeConfig {
            core,
            watch_lag_ppm: plan.watch_lag_ppm,
            persist_fail_ppm: plan.disk.fsync_fail_ppm,
            restart_after: (Duration::from_millis(50), Duration::from_millis(1000)),
            sync_on_recovery: scenario.sync_on_recovery,
        };
        let book: SharedBook = Arc::new(Mutex::new(LogBook::new()));
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
            node,
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

    fn env(&mut self) -> (&mut SimNode, Env<'_>) {
        (
            &mut self.node,
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
                self.plan.summary(),
                self.workload
            ),
        );
        let (node, mut env) = self.env();
        node.boot(&mut env);
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

    fn handle(&mut self, event: Event) {
        let now = self.sched.now();
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
                }
            }
            Event::ToNode { node: _, msg } => {
                if let ToNode::Call { client, op, call } = &msg {
                    self.trace
                        .record(now, format_args!("n0 <- c{client} op#{op} {call}"));
                }
                let (node, mut env) = self.env();
                node.receive(&mut env, msg);
            }
            Event::ToClient { client, op, result } => self.answer(client, op, result),
            Event::Node {
                node: _,
                generation,
                timer,
            } => {
                if generation == self.node.generation {
                    let (node, mut env) = self.env();
                    node.on_timer(&mut env, timer);
                }
            }
            Event::Crash { node: _ } => {
                if self.phase != Phase::Faults {
                    return;
                }
                if self.node.is_up() && self.rng.chance(self.plan.crash_mid_io_ppm) {
                    // Crash at the most interesting moment: while the next WAL append is
                    // written but not yet synced.
                    self.node.crash_during_next_append = true;
                } else {
                    self.crash_now();
                }
                if let Some(every) = self.plan.crash_every {
                    let d = self.between(every);
                    self.sched.after_nanos(d, Event::Crash { node: 0 });
                }
            }
            Event::CrashNow { node: _ } => {
                if self.phase == Phase::Faults {
                    self.crash_now();
                }
            }
            Event::Boot {
                node: _,
                generation,
            } => {
                if generation == self.node.generation && !self.node.is_up() {
                    let (node, mut env) = self.env();
                    node.boot(&mut env);
                }
            }
            Event::Restart {
                node: _,
                generation,
            } => {
                if generation == self.node.generation && self.node.is_up() {
                    let power = self.rng.chance(self.plan.power_loss_ppm);
                    self.trace.record(
                        now,
                        format_args!("n0 restarted by its supervisor (power_loss={power})"),
                    );
                    let (node, mut env) = self.env();
                    node.crash(&mut env, power, false);
                    node.boot(&mut env);
                }
            }
            Event::Partition { client } => {
                if self.phase == Phase::Faults {
                    self.net
                        .partition(Endpoint::Client(client), Endpoint::Node(0));
                    let d = self.between(self.plan.partition_for);
                    self.faults.record(
                        now,
                        format!("c{client} partitioned from n0 for {}ms", d / 1_000_000),
                    );
                    self.trace
                        .record(now, format_args!("FAULT partition c{client} | n0"));
                    self.sched.after_nanos(d, Event::Heal { client });
                }
            }
            Event::Heal { client } => {
                self.net.heal(Endpoint::Client(client), Endpoint::Node(0));
                self.trace.record(now, format_args!("heal c{client} | n0"));
                if self.phase == Phase::Faults
                    && let Some(every) = self.plan.partition_every
                {
                    let d = self.between(every);
                    self.sched.after_nanos(d, Event::Partition { client });
                }
            }
            Event::Settle => self.settle(),
        }
    }

    fn crash_now(&mut self) {
        let now = self.sched.now();
        self.node.crash_during_next_append = false;
        if !self.node.is_up() {
            return;
        }
        let power = self.rng.chance(self.plan.power_loss_ppm);
        let lose_disk = self.rng.chance(self.plan.disk_loss_ppm);
        self.trace.record(
            now,
            format_args!("FAULT crash n0 power_loss={power} disk_loss={lose_disk}"),
        );
        let (node, mut env) = self.env();
        node.crash(&mut env, power, lose_disk);
        let generation = self.node.generation;
        let down = self.between(self.plan.down_for);
        self.sched.after_nanos(
            down,
            Event::Boot {
                node: 0,
                generation,
            },
        );
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
        match self.net.send(Endpoint::Client(client), Endpoint::Node(0)) {
            Some(latency) => self
                .sched
                .after_nanos(latency, Event::ToNode { node: 0, msg }),
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
                self.history.complete(op, now, result);
                if ok {
                    self.finish_run();
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
        if self.clients[client].in_flight != Some(op) {
            return; // A late answer: the client already gave up.
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
        let now = self.sched.now();
        self.trace
            .record(now, format_args!("every client is done: faults stop"));
        self.phase = Phase::Settling { since: now };
        self.net.heal_all();
        self.net.calm();
        self.node.disk.calm();
        self.node.calm();
        self.sched.after(Duration::from_millis(100), Event::Settle);
    }

    fn settle(&mut self) {
        let now = self.sched.now();
        let Phase::Settling { since } = self.phase else {
            return;
        };
        if self.node.is_settled() {
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
                self.node.is_up(),
                self.node.failed
            );
            self.violations.push(Violation::new(Kind::Liveness, detail));
            return;
        }
        self.sched.after(Duration::from_millis(100), Event::Settle);
    }

    /// The probe was acknowledged: close the watches, lose power once more, restart.
    fn finish_run(&mut self) {
        let (node, mut env) = self.env();
        node.end_watches(&mut env);
        let now = env.sched.now();
        env.trace
            .record(now, format_args!("final power loss and restart"));
        node.crash(&mut env, true, false);
        node.boot(&mut env);
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
            boots: self.node.boots,
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
        Report {
            violations: self.violations,
            trace_hash: self.trace.hash(),
            events: self.trace.events(),
            trace: self.trace.take_text(),
            sim_time: self.sched.now(),
            plan: self.plan.summary(),
            faults: self.faults,
            workload,
            stats,
            history: self.history,
            scenario: self.scenario,
        }
    }
}
