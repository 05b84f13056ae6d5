//! Applies durable entries to the store and delivers what waited on them: on the core's task
//! when nothing else is to be done, or on the applier thread while the core's task runs the
//! next WAL append, so that one batch's apply overlaps the next batch's fsync.
//!
//! The core's contract ([`t4_core::Action::Apply`]): the events and checkpoint answers
//! polled after an apply are delivered only once it is done. A [`Job`] carries them and
//! [`Acker::run`] delivers them right after the apply and the refresh of the read view.
//! Replies do not wait: a write is answered once it is durable, after the driver has raised
//! the read slot's acknowledged revision, and reads wait for the view to reach that (see
//! [`StoreSlot::acknowledge`]), so an answered write is visible to every read that follows
//! the answer.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::thread::{self, JoinHandle};

use t4_core::remote::CheckpointInfo;
use t4_core::wal::LogEntry;
use t4_core::{Event, IoId, ReadView, Revision, Store};
use tokio::sync::{broadcast, oneshot, watch};

use super::{Command, Sender};
use crate::slot::StoreSlot;
use crate::store::{FjallStore, FjallView};

/// Something the core emitted after an apply, delivered once the apply is done.
pub(super) enum Delivery {
    Publish(Arc<[Event]>),
    Checkpoint(
        oneshot::Sender<Result<CheckpointInfo, String>>,
        Result<CheckpointInfo, String>,
    ),
}

impl Delivery {
    /// Answers with `reason` instead: what it would have acknowledged did not happen (events
    /// are dropped).
    fn refuse(self, reason: &str) {
        match self {
            Delivery::Publish(_) => {}
            Delivery::Checkpoint(reply, _) => {
                let _ = reply.send(Err(reason.to_string()));
            }
        }
    }
}

/// An apply and what waits on it, or (with no apply) what waits on the apply before it.
pub(super) struct Job {
    pub(super) apply: Option<(IoId, LogEntry)>,
    pub(super) then: Vec<Delivery>,
}

/// What an apply reports to the core: its completion, and the view taken right after it
/// (the core can use it rather than take another).
pub(crate) struct Done {
    pub(super) io: IoId,
    pub(super) result: Result<(), String>,
    pub(super) view: Option<FjallView>,
}

/// Everything an apply touches; shared by the core's task and the applier thread.
#[derive(Clone)]
pub(super) struct Acker {
    pub(super) store: FjallStore,
    pub(super) slot: Arc<StoreSlot>,
    pub(super) events: broadcast::Sender<Arc<[Event]>>,
    pub(super) applied: Arc<watch::Sender<Revision>>,
}

impl Acker {
    /// Applies the job's entry, shares the new view for reads, then delivers what waited;
    /// returns the apply's report. If the apply fails, its events are dropped, a waiting
    /// checkpoint gets the failure, and reads waiting for its writes fail (the entry is in
    /// the WAL; a restart applies it).
    pub(super) fn run(&self, job: Job) -> Option<Done> {
        let Job { apply, then } = job;
        let Some((io, entry)) = apply else {
            then.into_iter().for_each(|d| self.deliver(d));
            return None;
        };
        if let Err(e) = self.store.apply(&entry) {
            let reason = format!("store apply failed: {e}");
            self.failed();
            then.into_iter().for_each(|d| d.refuse(&reason));
            return Some(Done {
                io,
                result: Err(e.to_string()),
                view: None,
            });
        }
        let view = self.store.view();
        self.slot.refresh(view.clone());
        publish_newer(&self.applied, view.revision());
        then.into_iter().for_each(|d| self.deliver(d));
        Some(Done {
            io,
            result: Ok(()),
            view: Some(view),
        })
    }

    /// Marks applies failed and wakes the reads that wait for an answered write: they fail
    /// instead of waiting for an apply that will not come.
    fn failed(&self) {
        self.slot.fail_applies();
        self.applied.send_modify(|_| {});
    }

    /// Hands one answer or event batch to whoever waits for it.
    pub(super) fn deliver(&self, delivery: Delivery) {
        match delivery {
            // No receivers is fine; lagging receivers catch up from the store.
            Delivery::Publish(events) => {
                let _ = self.events.send(events);
            }
            Delivery::Checkpoint(reply, result) => {
                let _ = reply.send(result);
            }
        }
    }
}

/// Publishes `revision` unless a newer one is already out (the applier and the core's task
/// both publish; the applied revision never goes back).
pub(super) fn publish_newer(channel: &watch::Sender<Revision>, revision: Revision) {
    channel.send_if_modified(|current| {
        let newer = revision > *current;
        if newer {
            *current = revision;
        }
        newer
    });
}

/// The applier thread: runs jobs one at a time, in the order given, and reports each apply
/// to the core's task as a [`Command::Applied`].
pub(super) struct Applier {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    /// Applies handed over whose reports have not been taken yet.
    unreported: usize,
}

impl Applier {
    /// Starts the thread. If it cannot start, jobs run on the caller's thread.
    pub(super) fn start(acker: Acker, commands: Sender<Command>) -> Applier {
        let (jobs_tx, jobs) = mpsc::channel::<Job>();
        let thread = thread::Builder::new()
            .name("t4-apply".into())
            .spawn(move || {
                for job in jobs {
                    let io = job.apply.as_ref().map(|(io, _)| *io);
                    let run = std::panic::catch_unwind(AssertUnwindSafe(|| acker.run(job)));
                    let done = run.unwrap_or_else(|_| {
                        acker.failed();
                        io.map(|io| Done {
                            io,
                            result: Err("the store apply panicked".to_string()),
                            view: None,
                        })
                    });
                    if let Some(done) = done
                        && commands.send(Command::Applied(done)).is_err()
                    {
                        break;
                    }
                }
            });
        let (jobs, thread) = match thread {
            Ok(handle) => (Some(jobs_tx), Some(handle)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the apply thread; applying on the core's task");
                (None, None)
            }
        };
        Applier {
            jobs,
            thread,
            unreported: 0,
        }
    }

    /// Hands `job` to the thread; gives it back if there is no thread.
    pub(super) fn hand_over(&mut self, job: Job) -> Option<Job> {
        let Some(jobs) = &self.jobs else {
            return Some(job);
        };
        let applies = job.apply.is_some();
        match jobs.send(job) {
            Ok(()) => {
                self.unreported += usize::from(applies);
                None
            }
            Err(mpsc::SendError(job)) => Some(job),
        }
    }

    /// Whether an apply handed over has not been reported yet: what the core emits
    /// meanwhile must go through the thread too, to be delivered after it.
    pub(super) fn busy(&self) -> bool {
        self.unreported > 0
    }

    /// The report of the oldest apply handed over was taken.
    pub(super) fn reported(&mut self) {
        self.unreported = self.unreported.saturating_sub(1);
    }

    /// Stops the thread once its jobs are done.
    pub(super) fn stop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
