//! What a run is given ([`Scenario`]) and what it reports ([`Report`]).

use std::fmt;

use t4_core::{Config, Instant};

use crate::checker::{Findings, Kind, Violation};
use crate::fault::{BucketChoice, FaultLog, FaultMode};
use crate::history::History;
use crate::objstore::SimObjectStore;
use crate::trace::secs;

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
    /// [`crate::checker::CheckConfig::failed_is_definite`]).
    pub failed_is_definite: bool,
    /// Whether the run has a bucket and how it uploads.
    pub bucket: BucketChoice,
    /// Force the zombie-writer scenario on or off (`None`: drawn; needs a sync bucket).
    pub zombie: Option<bool>,
    /// Run on a bucket that acknowledges creates and drops them (the run must FAIL).
    pub lying_bucket: bool,
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
            bucket: BucketChoice::Drawn,
            zombie: None,
            lying_bucket: false,
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
        if self.bucket != BucketChoice::Drawn {
            cmd.push_str(&format!(" --bucket {}", self.bucket));
        }
        match self.zombie {
            Some(true) => cmd.push_str(" --zombie"),
            Some(false) => cmd.push_str(" --no-zombie"),
            None => {}
        }
        if self.lying_bucket {
            cmd.push_str(" --lying-bucket");
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
    /// Lease keepalives and queries answered while a sync-mode bucket was down.
    pub outage_lease_answers: usize,
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
    /// The bucket's contents at the end, if the run had one (for tests and post-mortems).
    pub bucket: Option<SimObjectStore>,
    /// The last node's core configuration (what a fresh node would start from the bucket
    /// with).
    pub config: Config,
    /// The committed log, then the entries written after it, as the log book knows them.
    pub known_log: Vec<t4_core::wal::LogEntry>,
    /// The highest entry index acknowledged to a client.
    pub acked_index: u64,
    /// How many entries of `known_log` are committed.
    pub committed: u64,
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
            "  history      {} ops: {} ok, {} errors, {} unknown ({} happened); {} watches, {} events checked; {} lease answers during bucket outages",
            s.ops,
            s.ok,
            s.errors,
            s.unknown,
            s.findings.unknown_applied,
            s.watches,
            s.findings.watch_events,
            s.outage_lease_answers
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
