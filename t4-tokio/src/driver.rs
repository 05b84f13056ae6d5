//! Runs the core on real threads: one thread owns the [`Core`] and drains its actions, one
//! thread owns the WAL files, and store persistence and compaction run on short-lived
//! background threads. Adapters are thin: every decision is the core's.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use t4_core::wal::SegmentId;
use t4_core::{Action, Core, Event, Input, IoId, Request, RequestId, Response, Revision, Store};
use tokio::sync::{broadcast, oneshot, watch};

use crate::store::FjallStore;
use crate::wal_dir::WalDir;

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

/// A request for the core thread.
pub(crate) enum Command {
    /// A client request and where to send its answer.
    Request {
        request: Request,
        reply: oneshot::Sender<Result<Response, t4_core::Error>>,
    },
    /// An IO the core asked for finished.
    IoDone {
        io: IoId,
        result: Result<(), String>,
    },
    /// Stop taking requests, finish what is in flight, persist the store, exit.
    Shutdown { done: Option<oneshot::Sender<()>> },
}

/// What the node's handles share with the core thread.
pub(crate) struct Shared {
    pub(crate) store: FjallStore,
    pub(crate) commands: Sender<Command>,
    /// A receiver to `resubscribe` from; the core thread owns the only sender, so every
    /// watch ends when the node closes.
    pub(crate) events: Mutex<broadcast::Receiver<Arc<[Event]>>>,
    /// The applied revision; the core thread owns the sender.
    pub(crate) applied: watch::Receiver<Revision>,
    pub(crate) failure: Mutex<Option<String>>,
}

/// The core thread's ends of the channels in [`Shared`].
pub(crate) struct Outlets {
    pub(crate) events: broadcast::Sender<Arc<[Event]>>,
    pub(crate) applied: watch::Sender<Revision>,
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The last handle is gone: let the core thread finish cleanly.
        let _ = self.commands.send(Command::Shutdown { done: None });
    }
}

enum WalJob {
    Append {
        io: IoId,
        segment: SegmentId,
        create: bool,
        bytes: Bytes,
    },
    Delete {
        segment: SegmentId,
    },
}

/// Starts the core thread and the WAL thread.
pub(crate) fn spawn(
    core: Core<FjallStore>,
    wal: WalDir,
    clock: Clock,
    shared: &Arc<Shared>,
    outlets: Outlets,
    commands: Receiver<Command>,
) -> std::io::Result<()> {
    let (wal_tx, wal_rx) = channel::<WalJob>();
    let io_done = shared.commands.clone();
    thread::Builder::new()
        .name("t4-wal".into())
        .spawn(move || wal_thread(wal, wal_rx, io_done))?;
    let driver = Driver {
        core,
        clock,
        commands_tx: shared.commands.clone(),
        wal: wal_tx,
        store: shared.store.clone(),
        events: outlets.events,
        applied: outlets.applied,
        failure: Arc::downgrade(shared),
        pending: HashMap::new(),
        next_request: 0,
    };
    thread::Builder::new()
        .name("t4-core".into())
        .spawn(move || driver.run(commands))?;
    Ok(())
}

fn wal_thread(mut wal: WalDir, jobs: Receiver<WalJob>, done: Sender<Command>) {
    for job in jobs {
        match job {
            WalJob::Append {
                io,
                segment,
                create,
                bytes,
            } => {
                let result = wal
                    .append(segment, create, &bytes)
                    .map_err(|e| e.to_string());
                if done.send(Command::IoDone { io, result }).is_err() {
                    return;
                }
            }
            WalJob::Delete { segment } => {
                if let Err(e) = wal.delete(segment) {
                    tracing::warn!(error = %e, "could not delete a sealed WAL segment; it will be retried at the next start");
                }
            }
        }
    }
}

struct Driver {
    core: Core<FjallStore>,
    clock: Clock,
    commands_tx: Sender<Command>,
    wal: Sender<WalJob>,
    store: FjallStore,
    events: broadcast::Sender<Arc<[Event]>>,
    applied: watch::Sender<Revision>,
    failure: std::sync::Weak<Shared>,
    pending: HashMap<RequestId, oneshot::Sender<Result<Response, t4_core::Error>>>,
    next_request: u64,
}

impl Driver {
    fn run(mut self, commands: Receiver<Command>) {
        let mut shutdown: Option<Vec<oneshot::Sender<()>>> = None;
        self.drain();
        loop {
            if shutdown.is_some() && self.core.is_quiescent() {
                break;
            }
            let received = match self.core.poll_timeout() {
                Some(at) => {
                    let wait = at.saturating_since(self.clock.now());
                    commands.recv_timeout(wait.max(Duration::from_micros(1)))
                }
                None => commands.recv().map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(Command::Request { request, reply }) => {
                    if shutdown.is_some() {
                        let _ = reply.send(Err(t4_core::Error::Stopped));
                        continue;
                    }
                    self.next_request += 1;
                    let id = RequestId(self.next_request);
                    self.pending.insert(id, reply);
                    self.core
                        .handle(self.clock.now(), Input::Request { id, request });
                }
                Ok(Command::IoDone { io, result }) => self
                    .core
                    .handle(self.clock.now(), Input::IoDone { io, result }),
                Ok(Command::Shutdown { done }) => {
                    shutdown.get_or_insert_with(Vec::new).extend(done)
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let now = self.clock.now();
            if self.core.poll_timeout().is_some_and(|at| at <= now) {
                self.core.handle_timeout(now);
            }
            self.drain();
        }
        if let Err(e) = self.store.persist() {
            tracing::error!(error = %e, "could not persist the store at shutdown; the WAL still holds every write");
        }
        for done in shutdown.into_iter().flatten() {
            let _ = done.send(());
        }
    }

    /// Performs every action the core has queued, in order.
    fn drain(&mut self) {
        let applied = self.core.applied_revision();
        self.applied.send_if_modified(|r| {
            let changed = *r != applied;
            *r = applied;
            changed
        });
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::WalAppend {
                    io,
                    segment,
                    create,
                    bytes,
                } => {
                    let _ = self.wal.send(WalJob::Append {
                        io,
                        segment,
                        create,
                        bytes,
                    });
                }
                Action::WalDelete { segment } => {
                    let _ = self.wal.send(WalJob::Delete { segment });
                }
                Action::PersistStore { io } => self.background(io, "t4-persist", |s| s.persist()),
                Action::CompactStore { io, revision } => {
                    self.background(io, "t4-compact", move |s| s.compact(revision))
                }
                Action::Publish { events } => {
                    // No receivers is fine; lagging receivers catch up from the store.
                    let _ = self.events.send(events);
                }
                Action::Reply { id, result } => {
                    if let Some(reply) = self.pending.remove(&id) {
                        let _ = reply.send(result.map_err(|e| e.clone()));
                    }
                }
                Action::Failed { reason } => {
                    tracing::error!(%reason, "t4 node stopped accepting writes; reads continue; restart the node to recover");
                    if let Some(shared) = self.failure.upgrade() {
                        *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                    }
                }
            }
        }
    }

    fn background(
        &self,
        io: IoId,
        name: &str,
        job: impl FnOnce(&FjallStore) -> Result<(), t4_core::StoreError> + Send + 'static,
    ) {
        let store = self.store.clone();
        let done = self.commands_tx.clone();
        let spawned = thread::Builder::new().name(name.into()).spawn(move || {
            let result = job(&store).map_err(|e| e.to_string());
            let _ = done.send(Command::IoDone { io, result });
        });
        if let Err(e) = spawned {
            let _ = self.commands_tx.send(Command::IoDone {
                io,
                result: Err(format!("cannot start a thread: {e}")),
            });
        }
    }
}
