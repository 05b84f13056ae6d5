//! The state machine: request intake, group commit, apply, replies, WAL segment lifecycle,
//! lease expiry.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::auth::AuthState;
use crate::checkpoint;
use crate::error::Error;
use crate::kv::{Event, KeyRange, LeaseId, Revision};
use crate::lease::{DEFAULT_MIN_LEASE_TTL, LeaseTable, MAX_LEASE_TTL};
use crate::mvcc::{Overlay, ReadView, Store, StoreError};
use crate::object::{ObjectError, ObjectRequest, ObjectResponse};
use crate::remote::{CheckpointInfo, Remote, RemoteConfig};
use crate::request::{
    AuthResponse, CompactRequest, CompactResponse, LeaseGrantResponse, LeaseKeepAliveResponse,
    LeaseLeasesResponse, LeaseRevokeResponse, Request, Response,
};
use crate::time::Instant;
use crate::txn;
use crate::wal::{
    LogEntry, LogOp, Recovery, SegmentId, SegmentInfo, encode_entry_frame, encode_segment_header,
};
use crate::write::RevisionWriter;

/// Tunables of the core. [`Config::default`] gives etcd's limits.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most compares / ops per txn level (etcd `--max-txn-ops`, default 128).
    pub max_txn_ops: usize,
    /// Largest request accepted, in bytes (etcd `--max-request-bytes`, default 1.5 MiB).
    pub max_request_bytes: usize,
    /// A WAL segment is sealed once it reaches this size.
    pub segment_max_bytes: u64,
    /// A WAL segment is sealed once it is this old (and holds entries).
    pub segment_max_age: Duration,
    /// Leases are granted at least this TTL, in seconds.
    pub min_lease_ttl: i64,
    /// The writer term stamped on entries. With a bucket, the core replaces it with the term
    /// it takes in the bucket's writer record at start-up.
    pub term: u64,
    /// Seed of the core's random choices (generated lease ids, retry jitter).
    pub seed: u64,
    /// The bucket, if any: `None` is local-only durability.
    pub remote: Option<RemoteConfig>,
    /// Most durable entries handed out with [`Action::Apply`] and not yet reported applied
    /// (at least 1; 0 is taken as 1), local-only: with a bucket ([`Config::remote`]) it is
    /// always 1, so that checkpoints, which are taken between applies, are not put off
    /// under a steady load. A batch that becomes durable while this many are
    /// outstanding is answered and applied only once the oldest is reported, and no append
    /// starts meanwhile. More than one lets the applies of several batches trail their
    /// appends when applying is slower than an fsync (writes answered before their apply
    /// is done, as an adapter may answer them, then keep flowing); the core keeps every pending
    /// entry's writes in its overlay until its apply is reported.
    pub max_applies_in_flight: usize,
}

/// Default of [`Config::max_applies_in_flight`].
pub const DEFAULT_MAX_APPLIES_IN_FLIGHT: usize = 4;

impl Default for Config {
    fn default() -> Config {
        Config {
            max_txn_ops: 128,
            max_request_bytes: 3 * 512 * 1024,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(10),
            min_lease_ttl: DEFAULT_MIN_LEASE_TTL,
            term: 1,
            seed: 0,
            remote: None,
            max_applies_in_flight: DEFAULT_MAX_APPLIES_IN_FLIGHT,
        }
    }
}

/// Identifies a client request; chosen by the adapter, echoed in [`Action::Reply`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(pub u64);

/// Identifies an IO the core asked for; echoed in [`Input::IoDone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IoId(pub u64);

/// Everything that can happen to the core.
#[derive(Clone, Debug)]
pub enum Input {
    /// A client request.
    Request {
        /// The adapter's id for it.
        id: RequestId,
        /// The request.
        request: Request,
        /// The auth revision ([`crate::auth::AuthState::revision`]) at which a server checked
        /// the caller's permissions for this request, if it did: the request is refused with
        /// [`Error::AuthOldRevision`] when the auth state decided by now is another one and
        /// enabled, so that no write is made on a permission taken away before it (etcd's
        /// check when it applies a write).
        auth_revision: Option<u64>,
    },
    /// An IO the core asked for has finished.
    IoDone {
        /// Which IO.
        io: IoId,
        /// `Err` carries a description of the failure.
        result: Result<(), String>,
    },
    /// An [`Action::Object`] request has finished.
    ObjectDone {
        /// Which request.
        io: IoId,
        /// The store's answer.
        result: Result<ObjectResponse, ObjectError>,
    },
    /// An [`Action::BuildCheckpoint`] has finished.
    CheckpointBuilt {
        /// Which build.
        io: IoId,
        /// The built checkpoint, or why it failed.
        result: Result<checkpoint::Built, String>,
    },
    /// Take a checkpoint now (on demand); answered with [`Action::CheckpointDone`].
    Checkpoint {
        /// The adapter's id for the demand, echoed in the answer.
        id: RequestId,
    },
}

/// Something the adapter must do. Perform them in the order they are polled.
#[derive(Clone, Debug)]
pub enum Action {
    /// Append `bytes` to WAL segment `segment` — creating the file first (with
    /// `create`, `bytes` then starts with the segment header) — then make it durable
    /// (fdatasync, plus a directory sync after a create), then report `IoDone(io)`.
    /// At most one is outstanding at a time.
    WalAppend {
        /// Completion id.
        io: IoId,
        /// The segment (its file name is [`crate::wal::segment_file_name`]).
        segment: SegmentId,
        /// Create the file (truncating any leftover of that name) before writing.
        create: bool,
        /// The bytes to append.
        bytes: Bytes,
    },
    /// Apply a durable entry to the store with [`Store::apply`], then report `IoDone(io)`.
    /// Up to [`Config::max_applies_in_flight`] are outstanding at a time; the adapter applies
    /// them in the order emitted and reports them in that order, so entries reach the store
    /// in log order.
    ///
    /// It may run concurrently with the [`Action::WalAppend`]s that follow it (that is the
    /// point: the next batches' fsyncs overlap this batch's apply), but every
    /// [`Action::Publish`] and [`Action::CheckpointDone`] polled after it must be delivered
    /// only once it has completed: they describe what it writes. The [`Action::Reply`]s
    /// polled after it answer writes that are durable already; an adapter may deliver them
    /// at once, provided that a read which starts after such an answer waits until the store
    /// has applied the entry (a reader told of a write must find it in the store), or else it
    /// must hold them until the apply completes too. If the apply fails, report the error and
    /// deliver none of the held actions (the core fails; the entry is in the WAL, so a
    /// restart applies it).
    Apply {
        /// Completion id.
        io: IoId,
        /// The entry.
        entry: LogEntry,
    },
    /// Delete a sealed WAL segment: the store holds its entries durably. No report needed.
    WalDelete {
        /// The segment.
        segment: SegmentId,
    },
    /// Call [`Store::persist`], then report `IoDone(io)`. May run in the background.
    PersistStore {
        /// Completion id.
        io: IoId,
    },
    /// Call [`Store::compact`] with `revision`, then report `IoDone(io)`. May run in the
    /// background.
    CompactStore {
        /// Completion id.
        io: IoId,
        /// The compaction revision.
        revision: Revision,
    },
    /// Deliver these events, already applied to the store, to watchers. Events are in
    /// revision order and each revision's events arrive together.
    Publish {
        /// The events.
        events: Arc<[Event]>,
    },
    /// Answer a request.
    Reply {
        /// The request.
        id: RequestId,
        /// The answer.
        result: Result<Response, Error>,
    },
    /// Perform `request` against the object store (keys are relative to the configured
    /// prefix), then report [`Input::ObjectDone`]. Several may be outstanding at once; perform
    /// them concurrently in any order: the core orders the ones whose order matters itself.
    Object {
        /// Completion id.
        io: IoId,
        /// What to do.
        request: ObjectRequest,
    },
    /// Take a view with `store.view()` **now** (before feeding the core anything else, so the
    /// view is at `spec.index`), then on a background thread call
    /// [`checkpoint::build`]`(&view, &spec)` and report [`Input::CheckpointBuilt`].
    BuildCheckpoint {
        /// Completion id.
        io: IoId,
        /// What to build.
        spec: checkpoint::BuildSpec,
    },
    /// The answer to an [`Input::Checkpoint`] demand.
    CheckpointDone {
        /// The demand.
        id: RequestId,
        /// The checkpoint published, or why none could be.
        result: Result<CheckpointInfo, String>,
    },
    /// The core can no longer make writes durable; it refuses writes from now on. Reads
    /// from the store stay correct. Emitted once.
    Failed {
        /// Why.
        reason: String,
    },
}

/// Why [`Core::open`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The store failed while replaying the WAL or loading leases.
    #[error("store failed during recovery: {0}")]
    Store(#[from] StoreError),
}

/// Decided work not yet durable: the log ops, their events, and the replies that wait on it.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub(crate) ops: Vec<LogOp>,
    pub(crate) events: Vec<Event>,
    pub(crate) replies: Vec<(RequestId, Result<Response, Error>)>,
    /// Compaction replies that wait for the physical compaction too.
    pub(crate) physical: Vec<(RequestId, Response, Revision)>,
}

impl Batch {
    pub(crate) fn is_idle(&self) -> bool {
        self.ops.is_empty() && self.replies.is_empty() && self.physical.is_empty()
    }
}

#[derive(Debug)]
pub(crate) struct InFlight {
    pub(crate) io: IoId,
    pub(crate) entry: LogEntry,
    pub(crate) batch: Batch,
    /// The local WAL append has completed.
    pub(crate) local_done: bool,
}

/// A durable entry the adapter is applying to the store.
#[derive(Debug)]
pub(crate) struct Applying {
    io: IoId,
    index: u64,
    /// The entry's last revision, if it writes keys.
    revision: Option<Revision>,
    /// The compaction revisions it records.
    compacts: Vec<Revision>,
}

#[derive(Debug)]
pub(crate) struct ActiveSegment {
    id: SegmentId,
    len: u64,
    last_index: u64,
    opened_at: Instant,
}

/// The physical compaction pipeline: one at a time, coalescing requests.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    pub(crate) in_flight: Option<(IoId, Revision)>,
    pub(crate) wanted: Revision,
    pub(crate) done: Revision,
    pub(crate) waiters: Vec<(RequestId, Response, Revision)>,
}

/// The t4 state machine. See the crate docs for the contract.
pub struct Core<S: Store> {
    pub(crate) config: Config,
    pub(crate) store: S,
    /// A view of the store as of the last apply (the store changes only when the core applies).
    pub(crate) view: Option<S::View>,
    pub(crate) failed: Option<String>,
    pub(crate) overlay: Overlay,
    pub(crate) leases: LeaseTable,
    /// The auth state as decided (it may be ahead of the store's).
    pub(crate) auth: Arc<AuthState>,
    pub(crate) rng: Pcg64Mcg,
    pub(crate) next_index: u64,
    pub(crate) applied_index: u64,
    pub(crate) open: Batch,
    /// Set by [`Core::handle_all`] while it feeds its inputs: the open batch starts after.
    pub(crate) holding: bool,
    pub(crate) in_flight: Option<InFlight>,
    /// The durable entries being applied ([`Action::Apply`]), oldest first: until an
    /// entry's apply is reported, the overlay keeps its writes, and the store may be
    /// anywhere between the last reported entry and the newest handed out.
    pub(crate) applying: VecDeque<Applying>,
    /// A view the adapter took right after an apply, before reporting it ([`Core::offer_view`]).
    pub(crate) offered: Option<S::View>,
    pub(crate) active: Option<ActiveSegment>,
    pub(crate) sealed: VecDeque<SegmentInfo>,
    pub(crate) persist_in_flight: Option<(IoId, u64)>,
    pub(crate) durable_index: u64,
    pub(crate) compactor: Compactor,
    pub(crate) next_io: u64,
    pub(crate) actions: VecDeque<Action>,
    /// The bucket's state, when one is configured.
    pub(crate) remote: Option<Remote>,
}

impl<S: Store> Core<S> {
    /// Opens the core over `store`, replaying `recovery` (from [`crate::wal::recover`] over the
    /// local segments, already truncated by the adapter as it asked). Every lease restarts with
    /// its full TTL from `now`.
    pub fn open(
        config: Config,
        store: S,
        recovery: Recovery,
        now: Instant,
    ) -> Result<Core<S>, OpenError> {
        for entry in &recovery.entries {
            store.apply(entry)?;
        }
        let recovery = recovery;
        let view = store.view();
        let mut leases = LeaseTable::default();
        for (id, ttl) in store.leases()? {
            leases.grant(id, ttl, now);
        }
        for (id, key) in store.lease_keys()? {
            leases.attach(id, &key);
        }
        let auth = store.auth()?;
        let applied_index = view.applied_index();
        let compact_revision = view.compact_revision();
        let mut core = Core {
            auth,
            rng: Pcg64Mcg::seed_from_u64(config.seed),
            overlay: Overlay::new(view.revision(), compact_revision),
            next_index: recovery.last_index.max(applied_index) + 1,
            applied_index,
            view: Some(view),
            config,
            store,
            failed: None,
            leases,
            open: Batch::default(),
            holding: false,
            in_flight: None,
            applying: VecDeque::new(),
            offered: None,
            // Appends resume in a fresh segment; every recovered one is sealed.
            active: None,
            sealed: recovery.segments.into(),
            persist_in_flight: None,
            durable_index: 0,
            compactor: Compactor {
                done: 0,
                ..Default::default()
            },
            next_io: 0,
            actions: VecDeque::new(),
            remote: None,
        };
        if let Some(remote) = core.config.remote.clone() {
            let mut local = recovery.covered;
            local.extend(recovery.entries);
            core.remote = Some(Remote::new(remote, core.config.seed, local, now));
            core.start_bootstrap(now);
        }
        if compact_revision > 0 {
            core.request_physical_compaction(compact_revision);
        }
        core.maybe_persist();
        Ok(core)
    }

    /// Feeds one input. Afterwards drain [`Core::poll_action`].
    pub fn handle(&mut self, now: Instant, input: Input) {
        match input {
            Input::Request {
                id,
                request,
                auth_revision,
            } => self.handle_request(now, id, request, auth_revision),
            Input::IoDone { io, result } => self.handle_io(now, io, result),
            Input::ObjectDone { io, result } => self.handle_object(now, io, result),
            Input::CheckpointBuilt { io, result } => self.handle_built(now, io, result),
            Input::Checkpoint { id } => self.demand_checkpoint(now, id),
        }
        self.pump(now);
    }

    /// Feeds several inputs at once: the requests among them join one batch (and one WAL
    /// append), which starts after the last of them. An adapter that performs the WAL append
    /// on the thread that runs the core feeds what queued up meanwhile this way.
    pub fn handle_all(&mut self, now: Instant, inputs: impl IntoIterator<Item = Input>) {
        self.holding = true;
        for input in inputs {
            self.handle(now, input);
        }
        self.holding = false;
        self.maybe_flush(now);
        self.pump(now);
    }

    /// The next action to perform, in order.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.failed.is_some() {
            return None;
        }
        if !self.is_serving() {
            // Exactly what `handle_timeout` acts on while recovering: leases and the segment
            // age wait until the node serves, so their deadlines must not wake it (a deadline
            // that has passed but is not acted on would fire again and again at once).
            return self.remote_deadline();
        }
        // While an append is in flight the segment cannot be sealed (the append's completion
        // seals it), so its deadline is not one `handle_timeout` could act on.
        let seal = self
            .active
            .as_ref()
            .filter(|_| self.in_flight.is_none())
            .map(|a| a.opened_at + self.config.segment_max_age);
        [self.leases.next_expiry(), seal, self.remote_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Handles every deadline that has passed at `now`: lease expiry, segment age.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.failed.is_some() {
            return;
        }
        if !self.is_serving() {
            // Leases wait: the lease table is rebuilt from the recovered store.
            self.remote_timeout(now);
            return;
        }
        for id in self.leases.expired(now) {
            if let Err(e) = self.revoke(id) {
                self.fail(format!("revoking expired lease {id}: {e}"));
                return;
            }
        }
        self.maybe_seal(now);
        self.maybe_flush(now);
        self.remote_timeout(now);
        self.pump(now);
    }

    /// The latest revision decided (it may not be durable yet).
    pub fn revision(&self) -> Revision {
        self.overlay.revision
    }

    /// The store revision as of the last apply: every write up to it is durable and visible
    /// to reads.
    pub fn applied_revision(&self) -> Revision {
        self.view
            .as_ref()
            .map_or_else(|| self.store.view().revision(), |v| v.revision())
    }

    /// The store view the core took after its last apply, which it reads its decisions
    /// from: an adapter that publishes a view for reads after each apply can share it.
    pub fn applied_view(&self) -> Option<&S::View> {
        self.view.as_ref()
    }

    /// Offers the view the adapter took right after performing an [`Action::Apply`], before
    /// it reports that apply: the core then uses it rather than take another. A view of any
    /// other index than the reported entry's is ignored.
    pub fn offer_view(&mut self, view: S::View) {
        self.offered = Some(view);
    }

    /// Whether nothing is in flight or waiting: no append, no unanswered request. A node that
    /// shuts down stops taking requests and waits for this before closing the store.
    ///
    /// While the bucket fails in sync mode, a batch whose local append is done and whose
    /// requests were already answered does not hold shutdown up: the local WAL holds it and
    /// the next start uploads it.
    pub fn is_quiescent(&self) -> bool {
        let waiting = |b: &Batch| !b.replies.is_empty() || !b.physical.is_empty();
        let outage = self
            .remote
            .as_ref()
            .is_some_and(|r| r.config.sync_upload && r.outage.is_some());
        let in_flight = self
            .in_flight
            .as_ref()
            .is_none_or(|f| outage && f.local_done && !waiting(&f.batch));
        let open = self.open.is_idle() || (outage && !waiting(&self.open));
        in_flight && open && self.applying.is_empty() && self.compactor.waiters.is_empty()
    }

    /// Whether the core serves requests: false while it recovers from the bucket at start-up
    /// (adapters' `open` waits for it, or for [`Action::Failed`]); always true local-only.
    pub fn is_serving(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.is_serving())
    }

    /// Index of the last entry applied to the store (an [`Action::Apply`] in progress is not
    /// counted until it is reported done).
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Why the core refuses writes, if it does.
    pub fn failure(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// The store the core applies to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The live leases.
    pub fn leases(&self) -> &LeaseTable {
        &self.leases
    }

    /// The auth state as decided: every change the core answered, or will answer once it is
    /// durable, is in it.
    pub fn auth(&self) -> &Arc<AuthState> {
        &self.auth
    }

    pub(crate) fn io_id(&mut self) -> IoId {
        self.next_io += 1;
        IoId(self.next_io)
    }

    pub(crate) fn fail(&mut self, reason: String) {
        let in_flight = self.in_flight.take().map(|f| f.batch);
        self.fail_with(reason, in_flight);
    }

    /// Enters the failed state: every waiting request (in `batch`, in flight, open) gets the
    /// failure, and the adapter is told.
    fn fail_with(&mut self, reason: String, batch: Option<Batch>) {
        if self.failed.is_some() {
            return;
        }
        self.failed = Some(reason.clone());
        let err = Error::Failed(reason.clone());
        let batches = [
            batch,
            self.in_flight.take().map(|f| f.batch),
            Some(std::mem::take(&mut self.open)),
        ];
        for batch in batches.into_iter().flatten() {
            for (id, _) in batch.replies {
                self.actions.push_back(Action::Reply {
                    id,
                    result: Err(err.clone()),
                });
            }
            for (id, _, _) in batch.physical {
                self.actions.push_back(Action::Reply {
                    id,
                    result: Err(err.clone()),
                });
            }
        }
        // Physical compactions that will now never be reported done.
        for (id, _, _) in std::mem::take(&mut self.compactor.waiters) {
            self.actions.push_back(Action::Reply {
                id,
                result: Err(err.clone()),
            });
        }
        for id in self
            .remote
            .as_mut()
            .map(|r| std::mem::take(&mut r.ckp_waiters))
            .unwrap_or_default()
        {
            self.actions.push_back(Action::CheckpointDone {
                id,
                result: Err(format!("the node failed: {reason}")),
            });
        }
        self.actions.push_back(Action::Failed { reason });
    }

    fn handle_request(
        &mut self,
        now: Instant,
        id: RequestId,
        request: Request,
        auth_revision: Option<u64>,
    ) {
        if let Some(reason) = &self.failed {
            let result = Err(Error::Failed(reason.clone()));
            self.actions.push_back(Action::Reply { id, result });
            return;
        }
        if let Some(result) = self.remote_answer(now, &request) {
            self.actions.push_back(Action::Reply { id, result });
            return;
        }
        if request.approx_size() > self.config.max_request_bytes {
            self.open.replies.push((id, Err(Error::RequestTooLarge)));
            self.maybe_flush(now);
            return;
        }
        if auth_revision.is_some_and(|r| self.auth.enabled && r != self.auth.revision) {
            // Answered in order with the batch, like every refusal decided here. While
            // authentication is disabled every request is allowed, as in etcd.
            self.open.replies.push((id, Err(Error::AuthOldRevision)));
            self.maybe_flush(now);
            return;
        }
        let physical = matches!(
            request,
            Request::Compact(CompactRequest { physical: true, .. })
        );
        let result = self.decide(now, request);
        match result {
            Err(Error::Store(e)) => {
                // A read failed while deciding: the overlay may hold half a request.
                self.fail(format!("store read failed: {e}"));
                self.actions.push_back(Action::Reply {
                    id,
                    result: Err(Error::Store(e)),
                });
                return;
            }
            Ok(resp @ Response::Compact(_)) if physical => {
                let rev = self.overlay.compact_revision;
                self.open.physical.push((id, resp, rev));
            }
            result => self.open.replies.push((id, result)),
        }
        self.maybe_flush(now);
    }

    /// Decides one request: validates it, resolves its changes into the open batch.
    fn decide(&mut self, now: Instant, request: Request) -> Result<Response, Error> {
        // What is decided now goes into the open batch, written as entry `next_index`.
        self.leases.deciding(self.next_index, self.applied_index);
        let revision = self.overlay.revision;
        match request {
            Request::Put(p) => {
                txn::check_put_request(&p)?;
                self.write(|w| txn::put(w, &p)).map(Response::Put)
            }
            Request::DeleteRange(d) => {
                txn::check_delete_request(&d)?;
                self.write(|w| txn::do_delete(w, &d))
                    .map(Response::DeleteRange)
            }
            Request::Txn(t) => {
                txn::check_txn_request(&t, self.config.max_txn_ops)?;
                self.write(|w| txn::txn(w, &t)).map(Response::Txn)
            }
            Request::Compact(c) => {
                if c.revision <= self.overlay.compact_revision {
                    return Err(Error::Compacted);
                }
                if c.revision > revision {
                    return Err(Error::FutureRevision);
                }
                self.overlay.compact_revision = c.revision;
                self.open.ops.push(LogOp::Compact {
                    revision: c.revision,
                });
                Ok(Response::Compact(CompactResponse { revision }))
            }
            Request::LeaseGrant { id, ttl } => {
                if ttl > MAX_LEASE_TTL {
                    return Err(Error::LeaseTtlTooLarge);
                }
                if id != 0 && self.leases.contains(id) {
                    return Err(Error::LeaseExists);
                }
                let ttl = ttl.max(self.config.min_lease_ttl);
                let id = if id != 0 { id } else { self.new_lease_id() };
                self.leases.grant(id, ttl, now);
                self.open.ops.push(LogOp::LeaseGrant { id, ttl });
                Ok(Response::LeaseGrant(LeaseGrantResponse {
                    revision,
                    id,
                    ttl,
                }))
            }
            Request::LeaseRevoke { id } => {
                if !self.leases.contains(id) {
                    return Err(Error::LeaseNotFound);
                }
                self.revoke(id)?;
                Ok(Response::LeaseRevoke(LeaseRevokeResponse {
                    revision: self.overlay.revision,
                }))
            }
            Request::LeaseKeepAlive { id } => {
                let ttl = self.leases.renew(id, now).unwrap_or(0);
                Ok(Response::LeaseKeepAlive(LeaseKeepAliveResponse {
                    revision,
                    id,
                    ttl,
                }))
            }
            Request::LeaseTimeToLive { id, keys } => Ok(Response::LeaseTimeToLive(
                self.leases.time_to_live(id, keys, now, revision),
            )),
            Request::LeaseLeases => Ok(Response::LeaseLeases(LeaseLeasesResponse {
                revision,
                leases: self.leases.ids(),
            })),
            Request::Auth(change) => {
                let mut next = (*self.auth).clone();
                if next.change(&change)? {
                    self.auth = Arc::new(next);
                    self.open.ops.push(LogOp::Auth(self.auth.clone()));
                }
                Ok(Response::Auth(AuthResponse {
                    revision,
                    state: self.auth.clone(),
                }))
            }
        }
    }

    /// Runs `f` with a writer for the next revision and moves what it changed into the open
    /// batch.
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut RevisionWriter<'_, S::View>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let base = self.view.take().unwrap_or_else(|| self.store.view());
        let mut w = RevisionWriter::new(&base, &mut self.overlay, &mut self.leases);
        let result = f(&mut w);
        let change = w.finish();
        self.view = Some(base);
        if let Some((op, events)) = change {
            self.open.ops.push(op);
            self.open.events.extend(events);
        }
        result
    }

    /// Revokes a lease: deletes its keys at one revision, then forgets it.
    fn revoke(&mut self, id: LeaseId) -> Result<(), Error> {
        self.leases.deciding(self.next_index, self.applied_index);
        let keys: Vec<Bytes> = self
            .leases
            .get(id)
            .map(|l| l.keys.iter().cloned().collect())
            .unwrap_or_default();
        self.write(|w| {
            for key in keys {
                w.delete_range(&KeyRange::Single(key))?;
            }
            Ok(())
        })?;
        self.leases.revoke(id);
        self.open.ops.push(LogOp::LeaseRevoke { id });
        Ok(())
    }

    fn new_lease_id(&mut self) -> LeaseId {
        loop {
            let id = (self.rng.next_u64() >> 1) as i64;
            if id != 0 && !self.leases.contains(id) {
                return id;
            }
        }
    }

    /// Starts writing the open batch if nothing is in flight; releases replies that wait on
    /// nothing.
    pub(crate) fn maybe_flush(&mut self, now: Instant) {
        if self.failed.is_some()
            || self.holding
            || self.in_flight.is_some()
            || self.open.is_idle()
            || self.remote.as_ref().is_some_and(|r| r.holds_flush())
        {
            return;
        }
        if self.open.ops.is_empty() {
            // Nothing new to write and nothing in flight: what these replies saw is durable.
            let batch = std::mem::take(&mut self.open);
            self.release(batch);
            return;
        }
        let mut batch = std::mem::take(&mut self.open);
        let entry = LogEntry {
            index: self.next_index,
            term: self.config.term,
            ops: std::mem::take(&mut batch.ops),
        };
        self.next_index += 1;
        let frame = Bytes::from(encode_entry_frame(&entry));
        if let Some(remote) = &mut self.remote {
            remote.enqueue(entry.index, frame.clone(), now);
        }
        let (segment, create, bytes) = match &mut self.active {
            Some(active) => {
                active.len += frame.len() as u64;
                (active.id, false, frame)
            }
            None => {
                let mut bytes = encode_segment_header(entry.index).to_vec();
                bytes.extend_from_slice(&frame);
                self.active = Some(ActiveSegment {
                    id: entry.index,
                    len: bytes.len() as u64,
                    last_index: entry.index - 1,
                    opened_at: now,
                });
                (entry.index, true, Bytes::from(bytes))
            }
        };
        let io = self.io_id();
        self.actions.push_back(Action::WalAppend {
            io,
            segment,
            create,
            bytes,
        });
        self.in_flight = Some(InFlight {
            io,
            entry,
            batch,
            local_done: false,
        });
    }

    /// Emits the events and replies of a durable batch.
    pub(crate) fn release(&mut self, batch: Batch) {
        if !batch.events.is_empty() {
            self.actions.push_back(Action::Publish {
                events: batch.events.into(),
            });
        }
        for (id, result) in batch.replies {
            self.actions.push_back(Action::Reply { id, result });
        }
        for (id, resp, rev) in batch.physical {
            if rev <= self.compactor.done {
                self.actions.push_back(Action::Reply {
                    id,
                    result: Ok(resp),
                });
            } else {
                self.compactor.waiters.push((id, resp, rev));
            }
        }
    }

    fn handle_io(&mut self, now: Instant, io: IoId, result: Result<(), String>) {
        if self.applying.front().is_some_and(|a| a.io == io) {
            let applying = self.applying.pop_front().expect("checked above");
            match result {
                Ok(()) => self.applied(now, applying),
                Err(e) => self.fail(format!("store apply failed: {e}")),
            }
        } else if self.in_flight.as_ref().is_some_and(|f| f.io == io) {
            match result {
                Ok(()) => {
                    if let Some(f) = &mut self.in_flight {
                        f.local_done = true;
                    }
                    self.maybe_complete_batch(now);
                }
                Err(e) => self.fail(format!("WAL write failed: {e}")),
            }
        } else if self.persist_in_flight.is_some_and(|(p, _)| p == io) {
            let (_, target) = self.persist_in_flight.take().expect("checked above");
            match result {
                Ok(()) => {
                    self.durable_index = self.durable_index.max(target);
                    self.delete_covered_segments();
                    self.maybe_persist();
                    self.persisted(now);
                }
                Err(e) => self.fail(format!("store persist failed: {e}")),
            }
        } else if self.compactor.in_flight.is_some_and(|(c, _)| c == io) {
            let (_, rev) = self.compactor.in_flight.take().expect("checked above");
            match result {
                Ok(()) => {
                    self.compactor.done = self.compactor.done.max(rev);
                    let done = self.compactor.done;
                    let (ready, waiting) = std::mem::take(&mut self.compactor.waiters)
                        .into_iter()
                        .partition(|(_, _, r)| *r <= done);
                    self.compactor.waiters = waiting;
                    for (id, resp, _) in ready {
                        self.actions.push_back(Action::Reply {
                            id,
                            result: Ok(resp),
                        });
                    }
                    if self.compactor.wanted > done {
                        self.request_physical_compaction(self.compactor.wanted);
                    }
                }
                Err(e) => self.fail(format!("compaction failed: {e}")),
            }
        }
    }

    /// How many applies may be outstanding: [`Config::max_applies_in_flight`] local-only,
    /// one with a bucket, where a checkpoint is taken only when none is (`pump_checkpoint`):
    /// with several in flight under a steady load that moment might never come.
    fn max_applies_in_flight(&self) -> usize {
        if self.remote.is_some() {
            1
        } else {
            self.config.max_applies_in_flight.max(1)
        }
    }

    /// Completes the in-flight batch once it is durable by the configured rule: the local
    /// append done and, in sync upload mode, its tail object in the bucket.
    pub(crate) fn maybe_complete_batch(&mut self, now: Instant) {
        let Some(f) = &self.in_flight else { return };
        if self.applying.len() >= self.max_applies_in_flight() {
            // Entries reach the store in order, at most this many outstanding: this one
            // waits for the oldest apply.
            return;
        }
        let uploaded = self
            .remote
            .as_ref()
            .is_none_or(|r| !r.config.sync_upload || r.uploaded >= f.entry.index);
        if f.local_done && uploaded {
            self.complete_batch(now);
        }
    }

    /// The in-flight batch is durable: have it applied, start the next append, then publish
    /// and reply (the adapter delivers those once the apply is done).
    fn complete_batch(&mut self, now: Instant) {
        let InFlight { entry, batch, .. } = self
            .in_flight
            .take()
            .expect("called with a batch in flight");
        if let Some(active) = &mut self.active {
            active.last_index = entry.index;
        }
        let io = self.io_id();
        self.applying.push_back(Applying {
            io,
            index: entry.index,
            revision: entry.last_revision(),
            compacts: entry
                .ops
                .iter()
                .filter_map(|op| match op {
                    LogOp::Compact { revision } => Some(*revision),
                    _ => None,
                })
                .collect(),
        });
        self.actions.push_back(Action::Apply { io, entry });
        self.maybe_seal(now);
        // Start the next append before answering this batch: the adapter can run its fsync
        // while this batch is applied and answered.
        self.maybe_flush(now);
        self.release(batch);
    }

    /// The store has applied an entry: reads of the store see it from now on.
    fn applied(&mut self, now: Instant, applying: Applying) {
        let view = self
            .offered
            .take()
            .filter(|v| v.applied_index() == applying.index)
            .unwrap_or_else(|| self.store.view());
        self.view = Some(view);
        self.applied_index = applying.index;
        if let Some(rev) = applying.revision {
            self.overlay.applied_up_to(rev);
        }
        for revision in applying.compacts {
            self.request_physical_compaction(revision);
        }
        self.maybe_persist();
        // The next batch may have become durable meanwhile.
        self.maybe_complete_batch(now);
    }

    fn request_physical_compaction(&mut self, revision: Revision) {
        self.compactor.wanted = self.compactor.wanted.max(revision);
        if self.compactor.in_flight.is_none() && self.compactor.wanted > self.compactor.done {
            let io = self.io_id();
            let revision = self.compactor.wanted;
            self.compactor.in_flight = Some((io, revision));
            self.actions
                .push_back(Action::CompactStore { io, revision });
        }
    }

    /// Seals the active segment once it is full or old, when no append to it is in flight.
    fn maybe_seal(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(active) = &self.active else { return };
        let full = active.len >= self.config.segment_max_bytes;
        let old = now >= active.opened_at + self.config.segment_max_age;
        if full || old {
            let active = self.active.take().expect("checked above");
            self.sealed.push_back(SegmentInfo {
                id: active.id,
                last_index: active.last_index,
                len: active.len,
            });
            self.maybe_persist();
        }
    }

    /// Deletes the sealed segments whose entries the store holds durably (and, with a bucket,
    /// the bucket holds too).
    pub(crate) fn delete_covered_segments(&mut self) {
        let uploaded = self.remote.as_ref().map_or(u64::MAX, |r| r.uploaded);
        while self
            .sealed
            .front()
            .is_some_and(|s| s.last_index <= self.durable_index && s.last_index <= uploaded)
        {
            let seg = self.sealed.pop_front().expect("checked non-empty");
            self.actions
                .push_back(Action::WalDelete { segment: seg.id });
        }
    }

    /// Asks the store to persist when sealed segments wait for it, so they can be deleted.
    pub(crate) fn maybe_persist(&mut self) {
        if self.persist_in_flight.is_some() || self.failed.is_some() {
            return;
        }
        let uploaded = self.remote.as_ref().map_or(u64::MAX, |r| r.uploaded);
        // A segment whose last entry is still being applied waits for that apply, so that
        // the persist covers it.
        let deletable = self.sealed.front().is_some_and(|s| {
            s.last_index <= uploaded
                && s.last_index > self.durable_index
                && s.last_index <= self.applied_index
        });
        let boot = self.remote.as_ref().is_some_and(|r| r.wants_persist())
            && self.durable_index < self.applied_index;
        if deletable || boot {
            let io = self.io_id();
            self.persist_in_flight = Some((io, self.applied_index));
            self.actions.push_back(Action::PersistStore { io });
        }
    }
}
