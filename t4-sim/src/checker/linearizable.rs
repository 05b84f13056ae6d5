//! Checker 1: linearizability of the history against etcd's semantics.
//!
//! # How the search works
//!
//! A WGL/Porcupine search looks for a total order of the operations that respects real time
//! (if `a` returned before `b` was invoked, `a` comes first) and in which a sequential model
//! gives every answer the clients saw. Its cost comes from guessing the order of concurrent
//! *writes* and whether each unknown outcome happened. etcd removes both guesses:
//!
//! * every write takes a **revision** and reports it; a linearization must order writes by
//!   revision (the model hands out revisions one by one), so acknowledged writes have exactly
//!   one place in any linearization;
//! * the **committed log** lists every state change in revision order. A write with an unknown
//!   outcome happened iff the log holds its effect (values written are unique per request, so
//!   the effect names the request), and then it sits at that point of the log.
//!
//! So the checker walks the log once, step by step, and at each step asks the model
//! ([`crate::model`]) what the request that produced it does there: the log must hold exactly
//! those changes and an acknowledged request must have received exactly that answer. This
//! fixes a position for every write; lease expiries are the only writes no client asked for
//! (and none may come before the TTL of an acknowledged keepalive has run out).
//! What is left is placing the *observations* (reads, failed compares, errors, lease
//! queries), which change nothing: each may go at any step within its real-time window (after
//! every write that returned before it began, before every write that began after it
//! returned, not before an observation that returned before it began) where the model gives
//! the answer the client saw — at its header revision when it has one. Taking, in invocation
//! order, the earliest such step is exact: an earlier place never constrains later
//! observations more. The whole check is therefore `O(n log n)` plus the model's work, with no
//! exponential search and no partitioning.
//!
//! # Soundness
//!
//! * *No false alarms:* in a correct system the log *is* the order in which writes took
//!   effect, so the linearization that orders writes by the log and reads by when they were
//!   served is one the checker finds. Choices the log leaves open (which of two unknown
//!   deletes of the same key ran) are made by the model: the earliest-invoked candidate whose
//!   effect is exactly the log's is taken, which constrains real time least.
//! * *No missed violations of etcd's contract:* the checker demands a linearization whose write
//!   order is the system's own commit order. That is stronger than bare linearizability, and it
//!   is what etcd promises (revisions are the commit order, and watchers and past-revision
//!   reads expose it). The log is not trusted: every step must be explained by a request (or
//!   a lease expiry) doing exactly that; every acknowledged write must be in it; the final
//!   store must equal its replay ([`super::state`]); recovery must never lose an
//!   acknowledged entry ([`crate::logbook`]).
//! * Partitioning by key, which Porcupine uses to tame its search, would be unsound here as
//!   the sole check (the global revision couples every key) and is unnecessary, since there
//!   is no search to tame.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use t4_core::request::{RequestOp, ResponseOp, TxnRequest};
use t4_core::wal::{Change, LogOp};
use t4_core::{Error, Instant, LeaseId, Request, Response, Revision};

use super::{CheckConfig, Kind, Violation, Window};
use crate::history::{Call, History, Op, Outcome, Reply};
use crate::logbook::{Committed, Epoch, describe_entry};
use crate::model::{self, At, Exec};
use crate::timeline::Timeline;

/// What the linearizability checker found in one epoch.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinResult {
    /// Every violation.
    pub violations: Vec<Violation>,
    /// Operations placed in the linearization.
    pub ops_checked: usize,
    /// Unknown outcomes that happened.
    pub unknown_applied: usize,
    /// Unknown outcomes that did not happen (or could not matter).
    pub unknown_dropped: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    /// Acknowledged, and changed state.
    Write,
    /// Answered, and changed nothing (including definite errors).
    Observe,
    /// Answered "the node failed": the core promises it changed nothing.
    Failed,
    /// No answer: may or may not have happened.
    Unknown,
}

struct Item<'h> {
    op: &'h Op,
    class: Class,
    ret: Instant,
    /// The step of its effect, once placed.
    pos: Option<usize>,
}

impl Item<'_> {
    fn request(&self) -> Option<&Request> {
        self.op.call.request()
    }

    fn response(&self) -> Option<Result<&Response, &Error>> {
        match &self.op.outcome {
            Outcome::Ok(Reply::Response(r)) => Some(Ok(r)),
            Outcome::Err(e) => Some(Err(e)),
            _ => None,
        }
    }
}

/// Whether an acknowledged response shows that the request changed state.
fn changed_state(req: &Request, resp: &Response) -> bool {
    fn ops_wrote(ops: &[ResponseOp]) -> bool {
        ops.iter().any(|op| match op {
            ResponseOp::Put(_) => true,
            ResponseOp::DeleteRange(d) => d.deleted > 0,
            ResponseOp::Txn(t) => ops_wrote(&t.responses),
            ResponseOp::Range(_) => false,
        })
    }
    match (req, resp) {
        (Request::Put(_), _) => true,
        (Request::DeleteRange(_), Response::DeleteRange(d)) => d.deleted > 0,
        (Request::Txn(_), Response::Txn(t)) => ops_wrote(&t.responses),
        (Request::Compact(_) | Request::LeaseGrant { .. } | Request::LeaseRevoke { .. }, _) => true,
        // The workload sends no change that is already in effect (etcd answers those with
        // success and writes nothing), so an accepted change wrote.
        (Request::Auth(_), _) => true,
        _ => false,
    }
}

/// The revision an acknowledged put/delete/txn wrote at.
fn claimed_revision(resp: &Response) -> Option<Revision> {
    match resp {
        Response::Put(p) => Some(p.revision),
        Response::DeleteRange(d) => Some(d.revision),
        Response::Txn(t) => Some(t.revision),
        _ => None,
    }
}

fn classify(op: &Op, config: CheckConfig) -> Class {
    match (&op.call, &op.outcome) {
        (_, Outcome::Pending | Outcome::Unknown) => Class::Unknown,
        (_, Outcome::Err(Error::Failed(_))) if !config.failed_is_definite => Class::Unknown,
        // The bucket could not take the write: it is in the local WAL and may be uploaded
        // (and acknowledged to nobody) later, or lost with its batch — unknown, as documented.
        (_, Outcome::Err(Error::ObjectStoreUnavailable(_))) => Class::Unknown,
        (_, Outcome::Err(Error::Failed(_) | Error::Stopped)) => Class::Failed,
        (call, Outcome::Ok(Reply::Response(resp)))
            if call.request().is_some_and(|req| changed_state(req, resp)) =>
        {
            Class::Write
        }
        _ => Class::Observe,
    }
}

/// Values a request may write, at any depth of a txn.
fn put_values(req: &Request) -> Vec<Bytes> {
    fn from_txn(t: &TxnRequest, out: &mut Vec<Bytes>) {
        for op in t.success.iter().chain(&t.failure) {
            match op {
                RequestOp::Put(p) => out.push(p.value.clone()),
                RequestOp::Txn(n) => from_txn(n, out),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    match req {
        Request::Put(p) => out.push(p.value.clone()),
        Request::Txn(t) => from_txn(t, &mut out),
        _ => {}
    }
    out
}

fn may_delete(req: &Request) -> bool {
    fn txn_deletes(t: &TxnRequest) -> bool {
        t.success.iter().chain(&t.failure).any(|op| match op {
            RequestOp::DeleteRange(_) => true,
            RequestOp::Txn(n) => txn_deletes(n),
            _ => false,
        })
    }
    match req {
        Request::DeleteRange(_) => true,
        Request::Txn(t) => txn_deletes(t),
        _ => false,
    }
}

/// How many ops one request produced, and which request (`None`: none explains them).
type Reading = (usize, Option<Producer>);

/// Most alternative readings open at once in a walk (each may double its length).
const MAX_OPEN_CHOICES: u32 = 8;

/// One op, made by request `item` if there is one.
fn one(item: Option<usize>) -> Reading {
    (1, item.map(Producer::Item))
}

/// A walk's state at a choice, to rewind to.
struct Saved {
    positions: Vec<Option<usize>>,
    timeline: Timeline,
    expiries: Vec<(LeaseId, Instant)>,
    out: LinResult,
}

/// Who produced a step of the log.
#[derive(Clone, Copy, Debug)]
enum Producer {
    Item(usize),
    Expiry(LeaseId),
}

/// Checks the operations of `window` against the committed log of `epoch`.
pub fn check(history: &History, epoch: &Epoch, window: Window, config: CheckConfig) -> LinResult {
    Checker::new(history, window, config).run(epoch)
}

struct Checker<'h> {
    items: Vec<Item<'h>>,
    config: CheckConfig,
    timeline: Timeline,
    out: LinResult,
    by_rev: BTreeMap<Revision, usize>,
    by_value: BTreeMap<Bytes, Vec<usize>>,
    deleters: Vec<usize>,
    grants: BTreeMap<LeaseId, Vec<usize>>,
    revokes: BTreeMap<LeaseId, Vec<usize>>,
    compacts: BTreeMap<Revision, Vec<usize>>,
    /// Auth changes that may have written.
    auths: Vec<usize>,
    /// Lease expiries in the log: the lease, and when the entry holding its revoke was
    /// started (the expiry was decided no later).
    expiries: Vec<(LeaseId, Instant)>,
    /// See [`History::rebuilds`].
    rebuilds: &'h [(Instant, Revision)],
}

impl<'h> Checker<'h> {
    fn new(history: &'h History, window: Window, config: CheckConfig) -> Checker<'h> {
        let mut items = Vec::new();
        for op in &history.ops {
            let in_window = match op.complete {
                Some(t) => window.contains(t),
                None => op.invoke < window.end,
            };
            // An answer after the window is, within it, no answer.
            let late = op.complete.is_some_and(|t| t >= window.end) && op.invoke < window.end;
            if !(in_window || late) {
                continue;
            }
            let class = if late {
                Class::Unknown
            } else {
                classify(op, config)
            };
            let ret = match class {
                Class::Unknown => Instant(u64::MAX),
                _ => op.returned(),
            };
            items.push(Item {
                op,
                class,
                ret,
                pos: None,
            });
        }
        let mut c = Checker {
            items,
            config,
            timeline: Timeline::new(),
            out: LinResult::default(),
            by_rev: BTreeMap::new(),
            by_value: BTreeMap::new(),
            deleters: Vec::new(),
            grants: BTreeMap::new(),
            revokes: BTreeMap::new(),
            auths: Vec::new(),
            compacts: BTreeMap::new(),
            expiries: Vec::new(),
            rebuilds: &history.rebuilds,
        };
        c.index();
        c
    }

    fn violate(&mut self, detail: String) {
        self.out
            .violations
            .push(Violation::new(Kind::Linearizability, detail));
    }

    fn index(&mut self) {
        for (i, item) in self.items.iter().enumerate() {
            let Some(req) = item.request() else { continue };
            if item.class == Class::Observe {
                continue;
            }
            if item.class == Class::Write
                && let Some(Ok(resp)) = item.response()
                && let Some(rev) = claimed_revision(resp)
                && let Some(other) = self.by_rev.insert(rev, i)
            {
                let detail = format!(
                    "two acknowledged writes report revision {rev}: {} and {}",
                    self.items[other].op, item.op
                );
                self.out
                    .violations
                    .push(Violation::new(Kind::Linearizability, detail));
            }
            for v in put_values(req) {
                self.by_value.entry(v).or_default().push(i);
            }
            if may_delete(req) {
                self.deleters.push(i);
            }
            match req {
                Request::LeaseGrant { id, .. } => self.grants.entry(*id).or_default().push(i),
                Request::LeaseRevoke { id } => self.revokes.entry(*id).or_default().push(i),
                Request::Compact(c) => self.compacts.entry(c.revision).or_default().push(i),
                Request::Auth(_) => self.auths.push(i),
                _ => {}
            }
        }
    }

    fn run(mut self, epoch: &Epoch) -> LinResult {
        if !self.place_writes(epoch) {
            return self.out;
        }
        self.unplaced_writes();
        self.real_time_of_writes();
        self.place_observations();
        self.early_expiries();
        self.out
    }

    fn at(&self) -> At<'_> {
        At {
            timeline: &self.timeline,
            step: self.timeline.last_step(),
        }
    }

    fn exec(&self, producer: Producer) -> Exec {
        let at = self.at();
        match producer {
            Producer::Expiry(id) => model::expire(&at, id),
            Producer::Item(i) => match self.items[i].request() {
                Some(req) => {
                    let checked = self.items[i].op.call.auth_revision();
                    model::execute(&at, req, checked, self.config.min_lease_ttl)
                }
                None => Exec {
                    result: Err(Error::Store("a read cannot write".into())),
                    ops: Vec::new(),
                },
            },
        }
    }

    /// The first unused candidate (acknowledged first, then unknown, in invocation order,
    /// sent before `written_at`) whose effect here is exactly `group`.
    fn pick(&self, candidates: &[usize], group: &[LogOp], written_at: Instant) -> Option<usize> {
        self.picks(candidates, group, written_at).next()
    }

    /// Every candidate [`Checker::pick`] could choose, in its order of preference.
    fn picks<'a>(
        &'a self,
        candidates: &[usize],
        group: &'a [LogOp],
        written_at: Instant,
    ) -> impl Iterator<Item = usize> + 'a {
        let mut sorted: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|i| {
                let it = &self.items[*i];
                // An acknowledged put/delete/txn goes only where its revision says.
                let claims = it.class == Class::Write
                    && matches!(it.response(), Some(Ok(r)) if claimed_revision(r).is_some());
                it.pos.is_none() && matches!(it.class, Class::Write | Class::Unknown) && !claims
            })
            .collect();
        sorted.sort_by_key(|i| {
            let it = &self.items[*i];
            (it.class != Class::Write, it.op.invoke, *i)
        });
        sorted.into_iter().filter(move |i| {
            self.items[*i].op.invoke <= written_at && self.exec(Producer::Item(*i)).ops == group
        })
    }

    /// A request answered "failed" whose effect is `group` (a broken promise, not a
    /// producer): sent before the entry was written, answered after.
    fn failed_producer(
        &self,
        candidates: &[usize],
        group: &[LogOp],
        written_at: Instant,
    ) -> Option<usize> {
        candidates.iter().copied().find(|i| {
            let it = &self.items[*i];
            it.class == Class::Failed
                && it.pos.is_none()
                && it.op.invoke <= written_at
                && it.ret >= written_at
                && self.exec(Producer::Item(*i)).ops == group
        })
    }

    /// Walks the log, explaining each step by a request; false if the walk had to stop.
    fn place_writes(&mut self, epoch: &Epoch) -> bool {
        self.place_from(epoch, 0, 0, 0)
    }

    /// Walks the log from op `i` of entry `k` on. Where two readings of the log are possible
    /// (see [`Checker::producer_of`]), the first is tried on the rest of the walk and, if
    /// that finds a violation, the walk is rewound and the second taken: `choices` counts
    /// the open alternatives, so that a log full of them cannot make the walk exponential.
    fn place_from(&mut self, epoch: &Epoch, mut k: usize, mut i: usize, choices: u32) -> bool {
        while let Some(c) = epoch.entries.get(k) {
            let ops = &c.entry.ops;
            while i < ops.len() {
                let (first, second) = self.producer_of(ops, i, c.written_at);
                if let Some(second) = second.filter(|_| choices < MAX_OPEN_CHOICES) {
                    let saved = self.save();
                    let before = self.out.violations.len();
                    let done = self.place_step(c, i, first)
                        && self.place_from(epoch, k, i + first.0, choices + 1);
                    if self.out.violations.len() == before {
                        return done;
                    }
                    self.restore(saved);
                    return self.place_step(c, i, second)
                        && self.place_from(epoch, k, i + second.0, choices + 1);
                }
                if !self.place_step(c, i, first) {
                    return false;
                }
                i += first.0;
            }
            k += 1;
            i = 0;
        }
        true
    }

    /// Explains the `len` ops of `c` from `i` on by `producer`, and steps the timeline;
    /// false if the walk has to stop.
    fn place_step(&mut self, c: &Committed, i: usize, (len, producer): Reading) -> bool {
        let group = &c.entry.ops[i..i + len];
        match producer {
            Some(p) => {
                if let Producer::Expiry(id) = p {
                    self.expiries.push((id, c.written_at));
                }
                self.explain(p, group, &describe_entry(&c.entry))
            }
            None => {
                let failed = self.failed_candidates(group);
                let detail = match self.failed_producer(&failed, group, c.written_at) {
                    Some(f) => format!(
                        "{} was answered \"failed\" (which promises it changed nothing), yet it took effect: {}",
                        self.items[f].op,
                        describe_entry(&c.entry)
                    ),
                    None => format!(
                        "no request explains this committed change (a write nobody asked for, or one applied twice): {:?} in {}",
                        group,
                        describe_entry(&c.entry)
                    ),
                };
                self.violate(detail);
            }
        }
        if let Err(e) = self.timeline.step(group) {
            let detail = format!(
                "the committed log is inconsistent at {}: {e}",
                describe_entry(&c.entry)
            );
            self.violate(detail);
            return false;
        }
        if let Some(Producer::Item(p)) = producer {
            self.items[p].pos = Some(self.timeline.last_step());
        }
        true
    }

    /// What placing writes changes, to rewind to.
    fn save(&self) -> Saved {
        Saved {
            positions: self.items.iter().map(|it| it.pos).collect(),
            timeline: self.timeline.clone(),
            expiries: self.expiries.clone(),
            out: self.out.clone(),
        }
    }

    fn restore(&mut self, saved: Saved) {
        for (it, pos) in self.items.iter_mut().zip(saved.positions) {
            it.pos = pos;
        }
        self.timeline = saved.timeline;
        self.expiries = saved.expiries;
        self.out = saved.out;
    }

    fn failed_candidates(&self, group: &[LogOp]) -> Vec<usize> {
        let mut out = Vec::new();
        for op in group {
            match op {
                LogOp::Revision { changes, .. } => {
                    for ch in changes {
                        if let Change::Put { kv, .. } = ch {
                            out.extend(self.by_value.get(&kv.value).into_iter().flatten().copied());
                        }
                    }
                    out.extend(self.deleters.iter().copied());
                }
                LogOp::LeaseGrant { id, .. } => {
                    out.extend(self.grants.get(id).into_iter().flatten().copied())
                }
                LogOp::LeaseRevoke { id } => {
                    out.extend(self.revokes.get(id).into_iter().flatten().copied())
                }
                LogOp::Compact { revision } => {
                    out.extend(self.compacts.get(revision).into_iter().flatten().copied())
                }
                LogOp::Auth(_) => out.extend(self.auths.iter().copied()),
            }
        }
        out
    }

    /// Decides how many ops starting at `ops[i]` one request produced, and which.
    fn producer_of(
        &self,
        ops: &[LogOp],
        i: usize,
        written_at: Instant,
    ) -> (Reading, Option<Reading>) {
        match &ops[i] {
            LogOp::Revision { revision, changes } => {
                if let Some(&w) = self.by_rev.get(revision) {
                    return (one(Some(w)), None);
                }
                // A revoke (by a client or by expiry) deletes its keys, then forgets the lease.
                // The same two ops also come from a delete of exactly the lease's keys followed,
                // in the same entry, by a revoke that found no keys left (etcd's revoke takes
                // no revision then). Both are possible when such a deleter's outcome is
                // unknown. The split is tried first, as it only adds a state (the keys gone,
                // the lease still there) between the two, so it never refuses an answer the
                // grouped reading allows; but it uses up the deleter, which a later change may
                // need: if the rest of the walk then finds a violation, it rewinds and takes
                // the grouped reading.
                if let Some(LogOp::LeaseRevoke { id }) = ops.get(i + 1)
                    && changes
                        .iter()
                        .all(|c| matches!(c, Change::Delete { prev_lease, .. } if prev_lease == id))
                {
                    let grouped = (2, Some(self.revoker(*id, &ops[i..i + 2], written_at)));
                    return match self.pick(&self.deleters, &ops[i..i + 1], written_at) {
                        Some(w) => (one(Some(w)), Some(grouped)),
                        None => (grouped, None),
                    };
                }
                let group = &ops[i..i + 1];
                let mut candidates = Vec::new();
                for ch in changes {
                    if let Change::Put { kv, .. } = ch {
                        candidates
                            .extend(self.by_value.get(&kv.value).into_iter().flatten().copied());
                    }
                }
                if candidates.is_empty() {
                    candidates = self.deleters.clone();
                }
                // Two requests of unknown outcome may both do exactly this here (a delete of a
                // range whose other keys are already gone, say), and only one of them may fit
                // a later change: the first is tried, then the second if the walk fails.
                let mut picks = self.picks(&candidates, group, written_at);
                let first = picks.next();
                let second = picks.next().map(|w| one(Some(w)));
                (one(first), second)
            }
            LogOp::LeaseRevoke { id } => (
                (1, Some(self.revoker(*id, &ops[i..i + 1], written_at))),
                None,
            ),
            LogOp::LeaseGrant { id, .. } => {
                let c = self.grants.get(id).cloned().unwrap_or_default();
                (one(self.pick(&c, &ops[i..i + 1], written_at)), None)
            }
            LogOp::Compact { revision } => {
                let c = self.compacts.get(revision).cloned().unwrap_or_default();
                (one(self.pick(&c, &ops[i..i + 1], written_at)), None)
            }
            // The new state names no request: the first candidate whose change here gives
            // exactly this state.
            LogOp::Auth(_) => (
                one(self.pick(&self.auths, &ops[i..i + 1], written_at)),
                None,
            ),
        }
    }

    /// An acknowledged revoke of `id` if there is one, else the lease's expiry (an unknown
    /// revoke and an expiry are indistinguishable, and an expiry constrains nothing).
    fn revoker(&self, id: LeaseId, group: &[LogOp], written_at: Instant) -> Producer {
        let acked: Vec<usize> = self
            .revokes
            .get(&id)
            .into_iter()
            .flatten()
            .copied()
            .filter(|i| self.items[*i].class == Class::Write)
            .collect();
        match self.pick(&acked, group, written_at) {
            Some(i) => Producer::Item(i),
            None => match acked.first() {
                // Let `explain` report what the acknowledged revoke should have done.
                Some(&i) if self.items[i].pos.is_none() => Producer::Item(i),
                _ => Producer::Expiry(id),
            },
        }
    }

    /// Checks that `producer` does exactly `group` here and answered what the model answers.
    fn explain(&mut self, producer: Producer, group: &[LogOp], entry: &str) {
        let exec = self.exec(producer);
        let who = match producer {
            Producer::Item(i) => self.items[i].op.to_string(),
            Producer::Expiry(id) => format!("expiry of lease {id:x}"),
        };
        if exec.ops != group {
            let detail = format!(
                "{who} at revision {} should have written {:?} but the committed log has {:?} ({entry})",
                self.timeline.revision_at(self.timeline.last_step()) + 1,
                exec.ops,
                group
            );
            self.violate(detail);
            return;
        }
        if let Producer::Item(i) = producer {
            let item = &self.items[i];
            if item.class == Class::Unknown {
                self.out.unknown_applied += 1;
            }
            if item.class == Class::Write
                && let Some(Ok(seen)) = item.response()
                && !model::matches(&exec.result, &Ok(seen.clone()))
            {
                let detail = format!(
                    "{} got an answer etcd would not give: at its place in the log the answer is {:?}",
                    item.op, exec.result
                );
                self.violate(detail);
            }
        }
    }

    fn unplaced_writes(&mut self) {
        let lost: Vec<String> = self
            .items
            .iter()
            .filter(|it| it.class == Class::Write && it.pos.is_none())
            .map(|it| it.op.to_string())
            .collect();
        for op in lost {
            self.violate(format!("acknowledged {op} is not in the committed log"));
        }
        self.out.unknown_dropped += self
            .items
            .iter()
            .filter(|it| it.class == Class::Unknown && it.pos.is_none())
            .count();
    }

    /// Placed writes as `(invoke, return, step)`.
    fn writes(&self) -> Vec<(Instant, Instant, usize, usize)> {
        self.items
            .iter()
            .enumerate()
            .filter_map(|(i, it)| it.pos.map(|p| (it.op.invoke, it.ret, p, i)))
            .collect()
    }

    /// A write that returned before another began must precede it in the log.
    fn real_time_of_writes(&mut self) {
        let mut by_ret = self.writes();
        by_ret.sort_by_key(|w| w.1);
        let mut by_inv = self.writes();
        by_inv.sort_by_key(|w| w.0);
        let mut j = 0;
        let mut latest: Option<(usize, usize)> = None; // (step, item) of the latest returned
        let mut problems = Vec::new();
        for (inv, _, pos, i) in &by_inv {
            while j < by_ret.len() && by_ret[j].1 < *inv {
                if latest.is_none_or(|(p, _)| by_ret[j].2 > p) {
                    latest = Some((by_ret[j].2, by_ret[j].3));
                }
                j += 1;
            }
            if let Some((p, earlier)) = latest
                && p >= *pos
            {
                problems.push(format!(
                    "{} returned before {} was invoked, yet the log orders it after (step {p} vs {pos}): a stale decision",
                    self.items[earlier].op, self.items[*i].op
                ));
            }
        }
        for p in problems {
            self.violate(p);
        }
    }

    /// A lease must not expire before the TTL of a keepalive that renewed it has run out:
    /// the renewal happened after the keepalive was sent, so its deadline is at least the
    /// sending time plus the TTL it answered, and a restart only gives leases a full TTL
    /// again from later still. (A keepalive answered while the lease's renewal could not be
    /// made — say from the in-memory table of a node that then lost it — shows here as an
    /// early expiry.) An unknown client revoke may be what the log shows as an expiry; such
    /// leases are skipped.
    fn early_expiries(&mut self) {
        let mut found = Vec::new();
        for &(id, written_at) in &self.expiries {
            let maybe_revoked = self.revokes.get(&id).into_iter().flatten().any(|i| {
                let it = &self.items[*i];
                it.op.invoke <= written_at && matches!(it.class, Class::Unknown | Class::Failed)
            });
            if maybe_revoked {
                continue;
            }
            for it in &self.items {
                let renewed = match (it.request(), it.response()) {
                    (
                        Some(Request::LeaseKeepAlive { id: k }),
                        Some(Ok(Response::LeaseKeepAlive(r))),
                    ) if *k == id && r.ttl > 0 && it.class == Class::Observe => r.ttl,
                    _ => continue,
                };
                let deadline = it.op.invoke + std::time::Duration::from_secs(renewed as u64);
                if written_at < deadline {
                    found.push(format!(
                        "lease {id:x} expired too early: its revoke was written at {} although \
                         {} (sent at {}) renewed it for {renewed}s",
                        crate::trace::secs(written_at),
                        it.op,
                        crate::trace::secs(it.op.invoke),
                    ));
                }
            }
        }
        for detail in found {
            self.violate(detail);
        }
    }

    fn observes(&self, i: usize, step: usize) -> bool {
        let at = At {
            timeline: &self.timeline,
            step,
        };
        let op = self.items[i].op;
        if op.outcome == Outcome::Err(Error::Compacted) {
            // A store rebuilt from a bucket checkpoint has no history before it.
            let floor = op.complete.map_or(0, |t| {
                self.rebuilds
                    .iter()
                    .filter(|(at, _)| *at <= t)
                    .map(|(_, r)| *r)
                    .max()
                    .unwrap_or(0)
            });
            let asked = match (&op.call, op.call.request()) {
                (Call::Range(r), _) => r.revision,
                (_, Some(Request::Compact(c))) => c.revision,
                _ => 0,
            };
            if asked > 0 && asked <= floor {
                return true;
            }
        }
        match (&op.call, &op.outcome) {
            (Call::Range(req), Outcome::Ok(Reply::Range(seen))) => {
                matches!(model::range(&at, req), Ok(ref r) if r == seen)
            }
            (Call::Range(req), Outcome::Err(e)) => {
                matches!(model::range(&at, req), Err(ref m) if m == e)
            }
            (call, Outcome::Ok(Reply::Response(seen))) => call.request().is_some_and(|req| {
                let exec =
                    model::execute(&at, req, call.auth_revision(), self.config.min_lease_ttl);
                exec.ops.is_empty() && model::matches(&exec.result, &Ok(seen.clone()))
            }),
            (call, Outcome::Err(e)) => call.request().is_some_and(|req| {
                let exec =
                    model::execute(&at, req, call.auth_revision(), self.config.min_lease_ttl);
                exec.ops.is_empty() && exec.result.as_ref().err() == Some(e)
            }),
            _ => false,
        }
    }

    fn header_revision(op: &Op) -> Option<Revision> {
        match &op.outcome {
            Outcome::Ok(Reply::Range(r)) => Some(r.revision),
            Outcome::Ok(Reply::Response(r)) => Some(match r {
                Response::Put(x) => x.revision,
                Response::DeleteRange(x) => x.revision,
                Response::Txn(x) => x.revision,
                Response::Compact(x) => x.revision,
                Response::LeaseGrant(x) => x.revision,
                Response::LeaseRevoke(x) => x.revision,
                Response::LeaseKeepAlive(x) => x.revision,
                Response::LeaseTimeToLive(x) => x.revision,
                Response::LeaseLeases(x) => x.revision,
                Response::Auth(x) => x.revision,
            }),
            _ => None,
        }
    }

    fn place_observations(&mut self) {
        let last = self.timeline.last_step();
        // Writes by return time (prefix max of step) and by invocation (suffix min of step).
        let mut by_ret: Vec<(Instant, usize)> = self.writes().iter().map(|w| (w.1, w.2)).collect();
        by_ret.sort();
        let mut prefix_max = Vec::with_capacity(by_ret.len());
        let mut m = 0;
        for (_, p) in &by_ret {
            m = m.max(*p);
            prefix_max.push(m);
        }
        let mut by_inv: Vec<(Instant, usize)> = self.writes().iter().map(|w| (w.0, w.2)).collect();
        by_inv.sort();
        let mut suffix_min = vec![usize::MAX; by_inv.len() + 1];
        for k in (0..by_inv.len()).rev() {
            suffix_min[k] = suffix_min[k + 1].min(by_inv[k].1);
        }

        let mut obs: Vec<usize> = (0..self.items.len())
            .filter(|i| self.items[*i].class == Class::Observe)
            .collect();
        obs.sort_by_key(|i| (self.items[*i].op.invoke, *i));
        let mut returned: BinaryHeap<Reverse<(Instant, usize)>> = BinaryHeap::new();
        let mut floor = 0;
        for i in obs {
            let (inv, ret) = (self.items[i].op.invoke, self.items[i].ret);
            while returned.peek().is_some_and(|Reverse((r, _))| *r < inv) {
                let Reverse((_, p)) = returned.pop().expect("peeked");
                floor = floor.max(p);
            }
            let k = by_ret.partition_point(|(r, _)| *r < inv);
            let lo_w = if k == 0 { 0 } else { prefix_max[k - 1] };
            let k = by_inv.partition_point(|(v, _)| *v <= ret);
            let hi = suffix_min[k].saturating_sub(1).min(last);
            let lo = lo_w.max(floor);
            let header = Self::header_revision(self.items[i].op);
            let (from, to) = match header.map(|h| self.timeline.steps_of_revision(h)) {
                None => (lo, hi),
                Some(Some((s1, s2))) => (lo.max(s1), hi.min(s2)),
                Some(None) => (1, 0),
            };
            let placed = (from..=to).find(|q| self.observes(i, *q));
            self.out.ops_checked += 1;
            let pos = match placed {
                Some(q) => q,
                None => {
                    let detail = self.explain_observation(i, lo, hi, header);
                    self.violate(detail);
                    lo.min(last)
                }
            };
            self.items[i].pos = Some(pos);
            returned.push(Reverse((ret, pos)));
        }
        self.out.ops_checked += self
            .items
            .iter()
            .filter(|it| it.class == Class::Write)
            .count();
    }

    fn explain_observation(
        &self,
        i: usize,
        lo: usize,
        hi: usize,
        header: Option<Revision>,
    ) -> String {
        let op = self.items[i].op;
        let (rlo, rhi) = (
            self.timeline.revision_at(lo.min(self.timeline.last_step())),
            self.timeline.revision_at(hi.min(self.timeline.last_step())),
        );
        let window = if lo > hi {
            "no point at all (operations that finished before it began are ordered after operations that began after it finished)".to_string()
        } else {
            format!("revisions {rlo}..={rhi}")
        };
        let probe = match header.and_then(|h| self.timeline.steps_of_revision(h)) {
            Some((s, _)) => s,
            None => lo.min(self.timeline.last_step()),
        };
        let at = At {
            timeline: &self.timeline,
            step: probe,
        };
        let model_says = match &op.call {
            Call::Range(r) => match model::range(&at, r) {
                Ok(resp) => Outcome::Ok(Reply::Range(resp)).to_string(),
                Err(e) => Outcome::Err(e).to_string(),
            },
            Call::Request(r) | Call::Checked { request: r, .. } => {
                let checked = op.call.auth_revision();
                match model::execute(&at, r, checked, self.config.min_lease_ttl).result {
                    Ok(resp) => Outcome::Ok(Reply::Response(resp)).to_string(),
                    Err(e) => Outcome::Err(e).to_string(),
                }
            }
        };
        let header_note = match header {
            Some(h) if self.timeline.steps_of_revision(h).is_none() => {
                format!(" It reports revision {h}, which the committed log never reached.")
            }
            Some(h) => format!(" It reports revision {h}."),
            None => String::new(),
        };
        format!(
            "{op}: no point in its real-time window ({window}) where etcd gives this answer (a stale read or a wrong answer).{header_note} At revision {} etcd answers: {model_says}",
            self.timeline.revision_at(probe)
        )
    }
}
