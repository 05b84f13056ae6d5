//! The checkers: what every run must satisfy.
//!
//! | checker | file | property |
//! |---|---|---|
//! | linearizability | [`linearizable`] | the history has a linearization under etcd's semantics ([`crate::model`]) |
//! | lost writes | [`lost_writes`] | every acknowledged write is in the committed log, at its revision, with its effect; no restart loses an acknowledged entry |
//! | revisions | [`revisions`] | the log's indexes and revisions are gap-free and strictly increasing; every applied log is a prefix of the committed log; no two acknowledged writes share a revision |
//! | watches | [`watches`] | each watch delivers exactly the committed events from its start revision, in order, once, whole revisions per batch |
//! | state | [`state`] | the store's contents equal a replay of the committed log |
//! | bucket recoverability | [`recoverable`] | a fresh node started from (a copy of) the bucket alone recovers every acknowledged entry, unchanged, and the state they make |
//! | bucket history | [`bucket_log`] | no two objects in the bucket hold different entries for one index (the history never forks) |
//!
//! The run-time parts (recovery lost nothing, applies follow commits) are checked by
//! [`crate::logbook::LogBook`] as the run goes and reported under the same kinds. Each checker
//! is a plain function of the history and the committed log, so the tests in
//! `tests/bites.rs` can feed it a known-bad history and watch it bite.

pub mod bucket_log;
pub mod linearizable;
pub mod lost_writes;
pub mod recoverable;
pub mod revisions;
pub mod state;
pub mod watches;

use std::fmt;

use t4_core::Instant;

use crate::history::History;
use crate::logbook::Epoch;
use crate::timeline::Timeline;

/// Which property a violation breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Checker 1: no linearization exists.
    Linearizability,
    /// Checker 2: an acknowledged write was lost.
    LostWrite,
    /// Checker 3: the log or the revisions are broken.
    Revisions,
    /// Checker 4: a watch delivered the wrong events.
    Watch,
    /// Checker 5: the store disagrees with the committed log.
    State,
    /// The node could not recover from its own disk.
    Recovery,
    /// The system stopped making progress once faults stopped.
    Liveness,
    /// Checker 6: a fresh node cannot recover every acknowledged write from the bucket.
    Recoverable,
    /// Two writers' histories forked in the bucket, or a fenced writer did not stop.
    Fencing,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Linearizability => "linearizability",
            Kind::LostWrite => "lost write",
            Kind::Revisions => "revisions",
            Kind::Watch => "watch",
            Kind::State => "state",
            Kind::Recovery => "recovery",
            Kind::Liveness => "liveness",
            Kind::Recoverable => "bucket recoverability",
            Kind::Fencing => "fencing",
        })
    }
}

/// A broken property, with what shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Which property.
    pub kind: Kind,
    /// What happened, precisely enough to start debugging from.
    pub detail: String,
}

impl Violation {
    /// A violation of `kind`.
    pub fn new(kind: Kind, detail: impl Into<String>) -> Violation {
        Violation {
            kind,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} violation: {}", self.kind, self.detail)
    }
}

/// Settings the checkers need to know about the system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckConfig {
    /// The smallest lease TTL the node grants.
    pub min_lease_ttl: i64,
    /// Treat `Error::Failed` as "did not happen". It is not: when a WAL append's fsync fails,
    /// the core answers `Failed` to the requests of that batch, yet their bytes may be on the
    /// disk (or in the page cache) and a restart recovers them — the outcome is unknown, as
    /// after a timeout. By default the checkers treat `Failed` as an unknown outcome; with
    /// this set they report every `Failed` request that took effect (the simulator's first
    /// finding: seed 1).
    pub failed_is_definite: bool,
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig {
            min_lease_ttl: t4_core::lease::DEFAULT_MIN_LEASE_TTL,
            failed_is_definite: false,
        }
    }
}

/// What the history checkers found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Operations the linearizability checker placed.
    pub ops_checked: usize,
    /// Unknown outcomes that turned out to have happened.
    pub unknown_applied: usize,
    /// Unknown outcomes that did not happen (or cannot matter).
    pub unknown_dropped: usize,
    /// Watch events checked.
    pub watch_events: usize,
}

/// Runs every history checker over every epoch.
pub fn check_history(history: &History, epochs: &[Epoch], config: CheckConfig) -> Findings {
    let mut f = Findings::default();
    let bounds = history.epoch_bounds();
    for (i, epoch) in epochs.iter().enumerate() {
        let (start, end) = bounds
            .get(i)
            .copied()
            .unwrap_or((epoch.start, Instant(u64::MAX)));
        let window = Window { start, end };
        let timeline = match replay(epoch) {
            Ok(t) => t,
            Err(v) => {
                f.violations.push(v);
                continue;
            }
        };
        let lin = linearizable::check(history, epoch, window, config);
        f.ops_checked += lin.ops_checked;
        f.unknown_applied += lin.unknown_applied;
        f.unknown_dropped += lin.unknown_dropped;
        f.violations.extend(capped(lin.violations));
        f.violations
            .extend(capped(lost_writes::check(history, epoch, window)));
        f.violations
            .extend(capped(revisions::check(history, epoch, window)));
        let w = watches::check(history, &timeline, window);
        f.watch_events += w.events;
        f.violations.extend(capped(w.violations));
    }
    f
}

/// Most violations reported per checker and epoch: the first few say what broke, the rest
/// are usually consequences.
pub const MAX_REPORTED: usize = 5;

/// Keeps the first [`MAX_REPORTED`] violations and says how many more there were.
fn capped(mut v: Vec<Violation>) -> Vec<Violation> {
    if v.len() > MAX_REPORTED {
        let more = v.len() - MAX_REPORTED;
        let kind = v[0].kind;
        v.truncate(MAX_REPORTED);
        v.push(Violation::new(kind, format!("... and {more} more")));
    }
    v
}

/// The part of the run one epoch covers: operations that returned in `[start, end)` belong
/// to it, and so may operations still unanswered at `end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// When the epoch began.
    pub start: Instant,
    /// When the next one began (or `u64::MAX`).
    pub end: Instant,
}

impl Window {
    /// The whole run.
    pub const ALL: Window = Window {
        start: Instant::ZERO,
        end: Instant(u64::MAX),
    };

    /// Whether something that happened at `t` is in the window.
    pub fn contains(&self, t: Instant) -> bool {
        self.start <= t && t < self.end
    }
}

/// Replays an epoch's committed log, one entry op per step.
pub fn replay(epoch: &Epoch) -> Result<Timeline, Violation> {
    let mut t = Timeline::new();
    for c in &epoch.entries {
        for op in &c.entry.ops {
            t.step(std::slice::from_ref(op)).map_err(|e| {
                Violation::new(
                    Kind::Revisions,
                    format!("committed entry {}: {e}", c.entry.index),
                )
            })?;
        }
    }
    Ok(t)
}
