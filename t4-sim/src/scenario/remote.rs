//! The bucket's part of a run: carrying requests to the simulated object store, the
//! recoverability checks, and the zombie-writer scenario.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use t4_core::IoId;
use t4_core::object::ObjectRequest;
use t4_core::request::PutRequest;
use t4_core::{Instant, Request};

use super::{Event, Phase, World};
use crate::bucket;
use crate::checker::{Kind, Violation, bucket_log, recoverable};
use crate::disk::SimDisk;
use crate::history::Call;
use crate::logbook::{SharedBook, lock};
use crate::node::{NodeTimer, SimNode, ToNode};
use crate::objstore::{ObjError, lock_store};
use crate::rng::SimRng;

impl World {
    /// The fault plan and the bucket's, in one line.
    pub(super) fn plan_summary(&self) -> String {
        match &self.bucket {
            Some(b) => format!("{}; {}", self.plan.summary(), b.plan.summary()),
            None => self.plan.summary(),
        }
    }

    /// A node's request reaches the bucket: it takes effect now, and its answer goes back
    /// (or the adapter retries) if the process that sent it is still there.
    pub(super) fn bucket_arrive(
        &mut self,
        node: usize,
        generation: u64,
        io: IoId,
        attempt: u32,
        request: ObjectRequest,
    ) {
        let now = self.sched.now();
        let Some(b) = &mut self.bucket else { return };
        let a = bucket::attempt(&mut lock_store(&b.store), now, &b.prefix, &request);
        let what = bucket::describe(&request);
        self.trace.record(
            now,
            format_args!(
                "bucket <- n{node} {what} (attempt {}): {}",
                attempt + 1,
                bucket::describe_result(&a.result)
            ),
        );
        if a.result == Err(ObjError::Timeout) {
            let effect = match request {
                ObjectRequest::DeleteMany { .. } => "took effect for some of its keys",
                _ => "took effect",
            };
            self.faults.record(
                now,
                format!("bucket: n{node} {what} {effect} but its answer was lost"),
            );
        }
        if generation != self.nodes[node].generation {
            return; // The process that sent it is gone; nobody hears the answer.
        }
        if a.retryable() && attempt < bucket::RETRIES {
            // A paused process retries once it runs again.
            let start = self.nodes[node].paused_until.map_or(now, |t| t.max(now));
            let delay = a.latency + bucket::backoff(&mut b.rng, attempt + 1);
            self.sched.at(
                start + Duration::from_nanos(delay),
                Event::BucketArrive {
                    node,
                    generation,
                    io,
                    attempt: attempt + 1,
                    request,
                },
            );
            return;
        }
        self.sched.after_nanos(
            a.latency,
            Event::Node {
                node,
                generation,
                timer: NodeTimer::ObjectDone {
                    io,
                    result: bucket::to_core(a.result),
                },
            },
        );
    }

    /// How long, in async mode, an acknowledged write may stay out of the bucket: the
    /// upload delay, the adapter's and the core's retries, slow requests, and every outage.
    fn loss_window(&self) -> Duration {
        let Some(b) = &self.bucket else {
            return Duration::ZERO;
        };
        let outages: u64 = b
            .plan
            .obj
            .outages
            .iter()
            .map(|(s, e)| e.as_nanos() - s.as_nanos())
            .sum();
        b.plan.remote.upload_max_delay
            + b.plan.remote.retry_max * 4
            + Duration::from_secs(15)
            + Duration::from_nanos(outages)
    }

    /// How long an async run idles after the probe before its last checks, so that every
    /// acknowledged write must be in the bucket by then.
    pub(super) fn drain_time(&self) -> Duration {
        match &self.bucket {
            Some(b) if !b.plan.sync => b.plan.remote.upload_max_delay * 2 + Duration::from_secs(5),
            _ => Duration::ZERO,
        }
    }

    /// Starts a fresh node from a copy of the bucket and checks what it recovers. With async
    /// upload, writes acknowledged within the loss window (or, at the end, within the drain
    /// time) need not be there yet.
    fn check_bucket(&mut self, when: &str, at_end: bool) {
        let now = self.sched.now();
        let Some(b) = &self.bucket else { return };
        let window = if at_end {
            self.drain_time()
        } else {
            // A node that is down (or starting up again) cannot upload what it acknowledged.
            self.loss_window() + Duration::from_nanos(self.nodes[self.target].downtime(now))
        };
        let book = lock(&self.book);
        let by = if b.plan.sync {
            now
        } else {
            Instant(now.as_nanos().saturating_sub(window.as_nanos() as u64))
        };
        let required = book.acked_index(by);
        let known = book.known_log();
        let committed = book.entries().len() as u64;
        let rebuilding = book.is_rebuilding();
        drop(book);
        let config = self.nodes[self.target].config().core.clone();
        let store = lock_store(&b.store).clone();
        let found = recoverable::check(
            &store,
            &b.prefix,
            &config,
            &known,
            committed,
            required,
            rebuilding,
            now,
            &format!("{when} ({} objects)", store.len()),
        );
        self.trace.record(
            now,
            format_args!(
                "bucket check {when}: entry {required} required, {} problems",
                found.len()
            ),
        );
        self.violations.extend(found);
        self.violations.extend(bucket_log::check(&store, &b.prefix));
    }

    /// A recoverability check at a random point of the run.
    pub(super) fn bucket_check(&mut self) {
        if !matches!(self.phase, Phase::Faults | Phase::Settling { .. }) {
            return;
        }
        let now = self.sched.now();
        self.check_bucket(&format!("at {}", crate::trace::secs(now)), false);
        if let Some(b) = &mut self.bucket {
            let (lo, hi) = b.plan.check_every;
            let d = b.rng.range(lo.as_nanos() as u64, hi.as_nanos() as u64);
            self.sched.after_nanos(d, Event::BucketCheck);
        }
    }

    /// The last checks: the bucket recovers everything acknowledged; a zombie stopped.
    pub(super) fn final_bucket_checks(&mut self) {
        if self.bucket.is_none() {
            return;
        }
        self.check_bucket("at the end", true);
        if self.nodes.len() > 1 && !self.nodes[0].retired {
            self.violations.push(Violation::new(
                Kind::Fencing,
                "the old writer n0 woke up after n1 took the prefix over and never stopped (no Action::Failed)",
            ));
        }
    }

    /// Whether the run must wait before its end for the zombie to wake up and stop.
    pub(super) fn zombie_pending(&self) -> bool {
        let now = self.sched.now();
        self.nodes.len() > 1
            && !self.nodes[0].retired
            && (self.zombie_waits(now)
                || self.nodes[0]
                    .paused_until
                    .is_some_and(|wake| now < wake + Duration::from_secs(40)))
    }

    /// The zombie scenario: node 0 freezes; node 1, on a fresh machine, takes the prefix
    /// over from the bucket; clients move to it.
    pub(super) fn takeover(&mut self) {
        let Some(b) = &self.bucket else { return };
        let Some(z) = b.plan.zombie else { return };
        if self.phase != Phase::Faults || self.nodes.len() > 1 {
            return;
        }
        let now = self.sched.now();
        let wake = now + z.pause;

        self.faults.record(
            now,
            format!(
                "n0 freezes for {}ms; n1 takes the prefix over on a fresh machine",
                z.pause.as_millis()
            ),
        );
        // n1 knows what n0 committed (the same database); it rebuilds it from the bucket.
        let mut book = lock(&self.book).clone();
        book.take_violations();
        book.disk_lost();
        let book: SharedBook = Arc::new(Mutex::new(book));
        let mut config = self.nodes[0].config().clone();
        if let Some(r) = &mut config.core.remote {
            r.node_id = "n1".into();
            r.takeover = true;
        }
        // n0 is frozen, and stays down once fenced (after n1's configuration is taken).
        self.nodes[0].paused_until = Some(wake);
        self.nodes[0].retire_on_failure();
        let seed = self.scenario.seed;
        let disk = SimDisk::new(SimRng::child(seed, "disk1"), self.plan.disk.clone());
        let node = SimNode::new(
            1,
            config,
            SimRng::child(seed, "node1"),
            disk,
            Arc::clone(&book),
        );
        self.nodes.push(node);
        self.target = 1;
        self.book = book;
        let (n, mut env) = self.env(1);
        n.boot(&mut env);
        self.sched.at(wake, Event::ZombieWakes);
    }

    /// Whether the frozen n0 must stay frozen past its planned wake-up at `now`: n1 has not
    /// served yet, so it has not fenced the prefix with its marker, and n0 is still the
    /// legitimate writer — its writes then are not a zombie's, they are the log (n1 adopts
    /// them when it reads the chain), which this scenario's log book does not model. The
    /// wait is bounded, so a takeover that never completes still ends the run.
    pub(super) fn zombie_waits(&self, now: Instant) -> bool {
        let Some(b) = &self.bucket else { return false };
        let Some(z) = b.plan.zombie else { return false };
        self.nodes.len() > 1
            && !self.nodes[1].has_served
            && self.nodes[0]
                .paused_until
                .is_some_and(|wake| now >= wake && now < wake + z.pause + Duration::from_secs(60))
    }

    /// The zombie wakes.
    pub(super) fn zombie_wakes(&mut self) {
        let now = self.sched.now();
        if self.zombie_waits(now) {
            self.sched
                .after(Duration::from_millis(100), Event::ZombieWakes);
            return;
        }
        self.faults
            .record(now, "n0 wakes up (a zombie)".to_string());
        self.stale_write();
    }

    /// A client that still knows only n0 sends it a write, which it must not acknowledge
    /// (it is fenced); again every 3 s until n0 stopped.
    pub(super) fn stale_write(&mut self) {
        if self.nodes[0].retired || self.phase == Phase::Done {
            return;
        }
        let now = self.sched.now();
        let client = self.clients.len() + 1;
        let call = Call::Request(Request::Put(PutRequest {
            key: Bytes::from_static(b"zombie"),
            value: Bytes::from(format!("zombie-write-{}", self.history.ops.len())),
            ..Default::default()
        }));
        let op = self.history.invoke(client, call.clone(), now);
        self.trace
            .record(now, format_args!("stale client -> n0 op#{op}"));
        self.send_to(client, 0, ToNode::Call { client, op, call });
        self.sched
            .after(Duration::from_secs(30), Event::ClientTimeout { client, op });
        self.sched.after(Duration::from_secs(3), Event::StaleWrite);
    }
}
