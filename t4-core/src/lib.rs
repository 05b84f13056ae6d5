//! # t4-core: the deterministic heart of t4
//!
//! Everything in t4 that *decides* lives here, as plain data driven by calls: which revision
//! a write gets, which requests share a WAL append (group commit), when a batch is durable,
//! what a txn does, when a lease expires, which WAL segments may be deleted. The same
//! [`Core`] runs inside the runtime adapter (the embedded API), the etcd server, and the simulator
//! (`t4-sim`), so a bug the simulator finds is a bug in the code users run.
//!
//! This crate must never depend on an async runtime, on IO, or on a clock: no files, no
//! sockets, no reading of the system clock, no thread-local RNG. Time comes in as [`Instant`] arguments and
//! randomness from [`core::Config::seed`]. CI checks `cargo tree -p t4-core` for that.
//!
//! ## The machine
//!
//! ```text
//!   Input::{Request, IoDone, ObjectDone,          Action::{WalAppend, Apply, WalDelete,
//!           CheckpointBuilt, Checkpoint}  ──▶ Core ──▶ PersistStore, CompactStore, Object,
//!          ◀──────────────── poll_action() ───────     BuildCheckpoint, CheckpointDone,
//!                                                      Publish, Reply, Failed}
//!           handle_timeout(now) at poll_timeout()
//! ```
//!
//! * [`Core::handle`] feeds a client [`Request`] or the completion of an IO the core asked
//!   for. [`Core::handle_timeout`] is called when [`Core::poll_timeout`] is reached.
//! * **Drain rule:** after every `handle*` call the adapter drains [`Core::poll_action`] until
//!   it returns `None`, performs the actions in that order, and sleeps until
//!   [`Core::poll_timeout`] or the next input.
//!
//! ## IO ordering contract
//!
//! * A write is decided (revision assigned, changes resolved) when its request arrives, and
//!   joins the *open batch*. When no append is in flight, the open batch becomes one
//!   [`Action::WalAppend`]: one write and one fdatasync for every request waiting.
//! * Only after that append's `IoDone(Ok)` does the core emit [`Action::Apply`] for the entry,
//!   then the next batch's append, then [`Action::Publish`] for its events and the
//!   [`Action::Reply`]s. **No reply is emitted before the data it reports is durable**, and
//!   this includes replies to reads (read-only txns, lease queries) that observed a
//!   decided-but-not-durable write. Up to [`core::Config::max_applies_in_flight`] applies
//!   may be outstanding, and the adapter may run them concurrently with the next appends'
//!   fsyncs, but delivers the events polled after an apply only once it is done; replies go
//!   out with it too, or at once if reads that start after them wait for the apply (see
//!   [`Action::Apply`]), so a client told of a write finds it in the store.
//! * If an append fails, the core stops: every waiting request gets [`Error::Failed`], later
//!   writes too, and [`Action::Failed`] tells the adapter. The store only ever holds durable
//!   entries, so reads stay correct; a restart recovers from the WAL. The requests of the
//!   append in flight when the core failed have an unknown outcome: their bytes may be on
//!   disk, and the restart may recover them.
//! * Sealed WAL segments are deleted ([`Action::WalDelete`]) only after a
//!   [`Action::PersistStore`] completed that covers every entry in them.
//!
//! ## With a bucket ([`remote`])
//!
//! When [`core::Config::remote`] is set, the core also decides everything about the object
//! store (see `docs/object-store-layout.md` and `docs/durability.md`):
//!
//! * At open it takes a writer term, claims the manifest, recovers from the bucket what the
//!   local store lacks, uploads local entries the bucket lacks, and writes a term-start
//!   marker; until then [`Core::is_serving`] is false and requests are refused. A failure that
//!   is not an outage is reported with [`Action::Failed`].
//! * [`Action::Object`] requests may be outstanding concurrently; the core orders the ones
//!   whose order matters itself (tail objects are created strictly one after the other).
//! * In sync upload mode a batch is applied and answered only after **both** its local append
//!   and its tail object's PUT completed. While the bucket fails, waiting and new writes get
//!   [`Error::ObjectStoreUnavailable`]; the core retries by itself (via [`Core::poll_timeout`]).
//! * A WAL segment is deleted only once the store persisted it and the bucket holds it.
//! * [`Action::BuildCheckpoint`] is emitted only at the end of an input: the adapter takes its
//!   store view before feeding the next input, so the view is at the index asked for.
//!
//! Plain `Range` reads never enter the core: adapters serve them from a [`Store`] view with
//! [`mvcc::range`], concurrently with writes, and a view never shows a half-applied entry.
//!
//! ## Modules
//!
//! * [`kv`] — etcd's data model; [`request`] — requests and responses; [`error`] — errors
//!   with etcd's exact strings and codes.
//! * [`wal`] — the log format (entries, frames, segments) and recovery.
//! * [`mvcc`] — the [`Store`] contract, [`mvcc::MemStore`], etcd's range semantics, the
//!   overlay of pending writes.
//! * [`snapshot`] — the portable snapshot format (a WAL segment) and its check.
//! * [`remote`] — S3 durability decisions (fencing, upload, merge, checkpoints, GC, recovery);
//!   [`object`] — the object-store requests; [`checkpoint`] — the checkpoint format and build.
//! * [`auth`] — users, roles, permissions and etcd's checks over them.
//! * [`txn`] — put/delete/txn semantics; [`lease`] — leases; [`watch`] — watch filters;
//!   [`time`] — the core's clock type.

pub mod auth;
pub mod checkpoint;
pub mod core;
pub mod error;
pub mod kv;
pub mod lease;
pub mod mvcc;
pub mod object;
pub mod remote;
pub mod request;
pub mod snapshot;
pub mod time;
pub mod txn;
pub mod wal;
pub mod watch;
mod write;

pub use crate::core::{Action, Config, Core, Input, IoId, OpenError, RequestId};
pub use crate::error::{Error, GrpcCode};
pub use crate::kv::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
pub use crate::mvcc::{CheckpointImage, ReadView, Store, StoreError};
pub use crate::request::{Request, Response};
pub use crate::time::Instant;
