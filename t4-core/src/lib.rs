//! # t4-core: the deterministic heart of t4
//!
//! Everything in t4 that *decides* lives here, as plain data driven by calls: which revision
//! a write gets, which requests share a WAL append (group commit), when a batch is durable,
//! what a txn does, when a lease expires, which WAL segments may be deleted. The same
//! [`Core`] runs inside the tokio adapter (`t4-tokio`), the etcd server, and the simulator
//! (`t4-sim`), so a bug the simulator finds is a bug in the code users run.
//!
//! This crate must never depend on an async runtime, on IO, or on a clock: no files, no
//! sockets, no `Instant::now()`, no thread RNG. Time comes in as [`Instant`] arguments and
//! randomness from [`core::Config::seed`]. CI checks `cargo tree -p t4-core` for that.
//!
//! ## The machine
//!
//! ```text
//!            Input::Request / Input::IoDone           Action::{WalAppend, WalDelete,
//!  adapter ───────────────────────────────▶  Core  ───▶ PersistStore, CompactStore,
//!          ◀─────────────── poll_action() ───────       Publish, Reply, Failed}
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
//! * Only after that append's `IoDone(Ok)` does the core apply the entry to the [`Store`],
//!   then emit [`Action::Publish`] for its events, then the [`Action::Reply`]s. **No reply is
//!   emitted before the data it reports is durable**, and this includes replies to reads
//!   (read-only txns, lease queries) that observed a decided-but-not-durable write.
//! * If an append fails, the core stops: every waiting request gets [`Error::Failed`], later
//!   writes too, and [`Action::Failed`] tells the adapter. The store only ever holds durable
//!   entries, so reads stay correct; a restart recovers from the WAL. The requests of the
//!   append in flight when the core failed have an unknown outcome: their bytes may be on
//!   disk, and the restart may recover them.
//! * Sealed WAL segments are deleted ([`Action::WalDelete`]) only after a
//!   [`Action::PersistStore`] completed that covers every entry in them.
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
//! * [`txn`] — put/delete/txn semantics; [`lease`] — leases; [`watch`] — watch filters;
//!   [`time`] — the core's clock type.

pub mod core;
pub mod error;
pub mod kv;
pub mod lease;
pub mod mvcc;
pub mod request;
pub mod time;
pub mod txn;
pub mod wal;
pub mod watch;
mod write;

pub use crate::core::{Action, Config, Core, Input, IoId, OpenError, RequestId};
pub use crate::error::{Error, GrpcCode};
pub use crate::kv::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
pub use crate::mvcc::{ReadView, Store, StoreError};
pub use crate::request::{Request, Response};
pub use crate::time::Instant;
