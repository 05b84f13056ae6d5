//! A small adapter for tests: runs a `Core<MemStore>` the way `t4-tokio` does, with a fake
//! in-memory WAL directory and a synthetic clock.
//!
//! Actions are drained after every input, in order. Deletions, persists, publishes and
//! replies take effect at once; IOs that report back (`WalAppend`, `PersistStore`,
//! `CompactStore`) are queued in [`Driver::pending`] and reported (appends and compactions
//! also performed) only when the test completes them, so a test decides how long an append
//! stays in flight, which requests join the next batch, and in which order IO completes.

// Each test file uses a different part of the driver.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use t4_core::mvcc::MemStore;
use t4_core::wal::{self, SegmentId};
use t4_core::{
    Action, Config, Core, Error, Event, Input, Instant, IoId, ReadView, Request, RequestId,
    Response, Store,
};

/// An IO the core asked for that has not been reported back yet.
#[derive(Clone, Debug)]
pub enum Io {
    /// `Action::WalAppend`.
    Append {
        io: IoId,
        segment: SegmentId,
        create: bool,
        bytes: Bytes,
    },
    /// `Action::PersistStore`.
    Persist { io: IoId },
    /// `Action::CompactStore`.
    Compact { io: IoId, revision: i64 },
    /// `Action::Apply`, queued only with [`Driver::hold_applies`].
    Apply { io: IoId, entry: wal::LogEntry },
}

impl Io {
    pub fn id(&self) -> IoId {
        match self {
            Io::Append { io, .. }
            | Io::Persist { io }
            | Io::Compact { io, .. }
            | Io::Apply { io, .. } => *io,
        }
    }
}

/// One core over one store, one WAL directory and one clock.
pub struct Driver {
    pub config: Config,
    pub store: MemStore,
    pub core: Core<MemStore>,
    pub now: Instant,
    /// The WAL directory: segment id -> file contents.
    pub wal: BTreeMap<SegmentId, Vec<u8>>,
    /// IOs asked for and not yet completed, oldest first.
    pub pending: VecDeque<Io>,
    /// Replies not yet taken by the test, in the order they were emitted.
    pub replies: Vec<(RequestId, Result<Response, Error>)>,
    /// Every `Action::Publish`, in order.
    pub published: Vec<Arc<[Event]>>,
    /// Every `Action::Failed` reason.
    pub failures: Vec<String>,
    /// Every action the core emitted since the last [`Driver::clear_trace`], in order.
    pub trace: Vec<Action>,
    /// Queue `Action::Apply` in [`Driver::pending`] like the other IOs. Otherwise (the
    /// default) an apply is performed when it is polled and reported right after the
    /// actions polled with it, as `t4-tokio` does when no append follows it.
    pub hold_applies: bool,
    next_request: u64,
}

impl Driver {
    /// A fresh node over an empty store and an empty WAL directory, at time zero.
    pub fn new(config: Config) -> Driver {
        let store = MemStore::new();
        let recovery = wal::recover(&[], 0).expect("an empty WAL recovers");
        let core = Core::open(config.clone(), store.clone(), recovery, Instant::ZERO)
            .expect("an empty store opens");
        let mut d = Driver {
            config,
            store,
            core,
            now: Instant::ZERO,
            wal: BTreeMap::new(),
            pending: VecDeque::new(),
            replies: Vec::new(),
            published: Vec::new(),
            failures: Vec::new(),
            trace: Vec::new(),
            hold_applies: false,
            next_request: 0,
        };
        d.drain();
        d
    }

    /// Submits a request; returns its id. Completes no IO.
    pub fn submit(&mut self, request: Request) -> RequestId {
        self.submit_checked(request, None)
    }

    /// Submits a request whose caller was checked at `auth_revision`; returns its id.
    pub fn submit_checked(&mut self, request: Request, auth_revision: Option<u64>) -> RequestId {
        self.next_request += 1;
        let id = RequestId(self.next_request);
        let input = Input::Request {
            id,
            request,
            auth_revision,
        };
        self.core.handle(self.now, input);
        self.drain();
        id
    }

    /// Submits several requests with one [`Core::handle_all`]; returns their ids.
    pub fn submit_all(&mut self, requests: Vec<Request>) -> Vec<RequestId> {
        let requests = requests.into_iter().map(|r| (r, None)).collect();
        self.submit_all_checked(requests)
    }

    /// [`Driver::submit_all`] with the auth revision each caller was checked at.
    pub fn submit_all_checked(&mut self, requests: Vec<(Request, Option<u64>)>) -> Vec<RequestId> {
        let mut ids = Vec::new();
        let inputs: Vec<Input> = requests
            .into_iter()
            .map(|(request, auth_revision)| {
                self.next_request += 1;
                let id = RequestId(self.next_request);
                ids.push(id);
                Input::Request {
                    id,
                    request,
                    auth_revision,
                }
            })
            .collect();
        self.core.handle_all(self.now, inputs);
        self.drain();
        ids
    }

    /// Submits a request, completes every IO, and returns its reply.
    pub fn call(&mut self, request: Request) -> Result<Response, Error> {
        let id = self.submit(request);
        self.settle();
        self.take_reply(id)
            .expect("a request is answered once its IO completed")
    }

    /// Takes the reply to `id`, if it was emitted.
    pub fn take_reply(&mut self, id: RequestId) -> Option<Result<Response, Error>> {
        let at = self.replies.iter().position(|(r, _)| *r == id)?;
        let (_, result) = self.replies.remove(at);
        assert!(
            self.replies.iter().all(|(r, _)| *r != id),
            "request {id:?} was answered twice"
        );
        Some(result)
    }

    /// Drains the core's actions, performing the immediate ones and queueing the rest.
    pub fn drain(&mut self) {
        let mut applied = Vec::new();
        while let Some(action) = self.core.poll_action() {
            self.trace.push(action.clone());
            match action {
                Action::Apply { io, entry } if self.hold_applies => {
                    self.pending.push_back(Io::Apply { io, entry })
                }
                Action::Apply { io, entry } => {
                    self.store.apply(&entry).expect("MemStore applies");
                    applied.push(io);
                }
                Action::WalAppend {
                    io,
                    segment,
                    create,
                    bytes,
                } => self.pending.push_back(Io::Append {
                    io,
                    segment,
                    create,
                    bytes,
                }),
                Action::WalDelete { segment } => {
                    assert!(
                        self.wal.remove(&segment).is_some(),
                        "deleted segment {segment} does not exist"
                    );
                }
                // The persist runs as soon as it is asked for (so it covers exactly what the
                // core has applied by then); only its report waits.
                Action::PersistStore { io } => {
                    self.store.persist().expect("MemStore persists");
                    self.pending.push_back(Io::Persist { io })
                }
                Action::CompactStore { io, revision } => {
                    self.pending.push_back(Io::Compact { io, revision })
                }
                Action::Publish { events } => self.published.push(events),
                Action::Reply { id, result } => self.replies.push((id, result)),
                Action::Failed { reason } => self.failures.push(reason),
                // This harness runs local-only cores, which never ask for the bucket.
                Action::Object { .. }
                | Action::BuildCheckpoint { .. }
                | Action::CheckpointDone { .. } => {
                    panic!("a local-only core asked for the object store: {action:?}")
                }
            }
        }
        for io in applied {
            self.report(io, Ok(()));
        }
    }

    /// Performs the oldest pending IO and reports it done.
    pub fn complete_next(&mut self) -> bool {
        match self.pending.pop_front() {
            Some(io) => {
                self.perform(&io);
                self.report(io.id(), Ok(()));
                true
            }
            None => false,
        }
    }

    /// Performs and reports the pending IO at position `i` (out of order).
    pub fn complete_at(&mut self, i: usize) {
        let io = self.pending.remove(i).expect("no such pending IO");
        self.perform(&io);
        self.report(io.id(), Ok(()));
    }

    /// Reports the oldest pending IO as failed, without performing it.
    pub fn fail_next(&mut self, reason: &str) {
        let io = self.pending.pop_front().expect("no pending IO to fail");
        self.report(io.id(), Err(reason.to_string()));
    }

    /// Completes IO until none is pending.
    pub fn settle(&mut self) {
        while self.complete_next() {}
    }

    /// Completes the pending physical compactions (only).
    pub fn complete_compactions(&mut self) {
        while let Some(i) = self
            .pending
            .iter()
            .position(|io| matches!(io, Io::Compact { .. }))
        {
            self.complete_at(i);
        }
    }

    /// Completes IO until none is pending, `pick(n)` choosing which of the `n` pending IOs
    /// completes next (IOs of different kinds may finish in any order).
    pub fn settle_in_order(&mut self, mut pick: impl FnMut(usize) -> usize) {
        while !self.pending.is_empty() {
            let i = pick(self.pending.len()) % self.pending.len();
            self.complete_at(i);
        }
    }

    fn perform(&mut self, io: &Io) {
        match io {
            Io::Append {
                segment,
                create,
                bytes,
                ..
            } => {
                let file = self.wal.entry(*segment).or_default();
                if *create {
                    file.clear();
                } else {
                    assert!(!file.is_empty(), "append to missing segment {segment}");
                }
                file.extend_from_slice(bytes);
            }
            Io::Persist { .. } => {}
            Io::Apply { entry, .. } => self.store.apply(entry).expect("MemStore applies"),
            Io::Compact { revision, .. } => {
                self.store.compact(*revision).expect("MemStore compacts")
            }
        }
    }

    fn report(&mut self, io: IoId, result: Result<(), String>) {
        self.core.handle(self.now, Input::IoDone { io, result });
        self.drain();
    }

    /// Number of appends in flight.
    pub fn pending_appends(&self) -> usize {
        self.pending
            .iter()
            .filter(|io| matches!(io, Io::Append { .. }))
            .count()
    }

    /// Moves the clock forward and runs the core's timers if one is due.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.fire_timers();
    }

    /// Calls `handle_timeout` if `poll_timeout` says it is due.
    pub fn fire_timers(&mut self) {
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
            self.drain();
        }
    }

    /// Simulates a crash in the middle of the pending append: its first `keep` bytes reach the
    /// file. Returns whether the whole append did.
    pub fn tear_append(&mut self, keep: usize) -> bool {
        let at = self
            .pending
            .iter()
            .position(|io| matches!(io, Io::Append { .. }))
            .expect("an append is pending");
        let Some(Io::Append {
            segment,
            create,
            bytes,
            ..
        }) = self.pending.remove(at)
        else {
            unreachable!("position found an append")
        };
        let keep = keep.min(bytes.len());
        let file = self.wal.entry(segment).or_default();
        if create {
            file.clear();
        }
        file.extend_from_slice(&bytes[..keep]);
        keep == bytes.len()
    }

    /// Stops the node (pending IO is lost) and starts a new core from the WAL directory over
    /// the same store, or over what a crash leaves of it (`crash_image(k)`).
    pub fn restart(&mut self, crash_image: Option<usize>) {
        self.pending.clear();
        if let Some(k) = crash_image {
            self.store = self.store.crash_image(k);
        }
        let segments: Vec<(SegmentId, Bytes)> = self
            .wal
            .iter()
            .map(|(id, bytes)| (*id, Bytes::from(bytes.clone())))
            .collect();
        let recovery = wal::recover(&segments, self.store.view().applied_index())
            .expect("the WAL written by the core recovers");
        if let Some((segment, len)) = recovery.truncate {
            if len == 0 {
                self.wal.remove(&segment);
            } else {
                self.wal
                    .get_mut(&segment)
                    .expect("recovery truncates an existing segment")
                    .truncate(len as usize);
            }
        }
        self.core = Core::open(self.config.clone(), self.store.clone(), recovery, self.now)
            .expect("the core reopens");
        self.drain();
    }

    /// Forgets the trace so far.
    pub fn clear_trace(&mut self) {
        self.trace.clear();
    }

    /// Every event published so far, flattened.
    pub fn events(&self) -> Vec<Event> {
        self.published
            .iter()
            .flat_map(|e| e.iter().cloned())
            .collect()
    }
}

/// `Bytes` from a string or byte literal.
pub fn b(s: impl AsRef<[u8]>) -> Bytes {
    Bytes::copy_from_slice(s.as_ref())
}
