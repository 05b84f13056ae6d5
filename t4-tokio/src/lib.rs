//! # t4: an embeddable, S3-durable key-value store with etcd's data model
//!
//! This crate (package `t4-tokio`, library `t4`) runs the t4 core on tokio and gives Rust
//! programs the whole store in-process: put, get, range, delete, multi-key txn, watch,
//! leases, compaction — with etcd's revisions, versions and semantics — and no daemon.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), t4::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! use t4::{Config, Node};
//!
//! let node = Node::open(Config::new(dir.path())).await?;
//! node.put("/config/a", "1").await?;
//! node.put("/config/b", "2").await?;
//! let all = node.get_prefix("/config/").await?;
//! assert_eq!(all.len(), 2);
//! node.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## What runs where
//!
//! * The [`t4_core::Core`] state machine decides everything (revisions, batching, txn
//!   outcomes, lease expiry, which WAL segments to delete). One task on the runtime that
//!   opened the node owns it, so keep that runtime running while the node is in use (a
//!   current-thread runtime runs the task only while it is driven). The runtime needs
//!   timers enabled (`enable_all`, as `#[tokio::main]` does); `open` panics without them.
//! * The same task appends group-committed batches to WAL segment files, each append
//!   durable when it returns (direct synchronous writes, or write + fdatasync), after
//!   answering the previous batch; a write is acknowledged only after that. A request that
//!   finds the core idle runs that round on its caller's task instead.
//! * The store is [fjall](https://docs.rs/fjall), written without fsync (the WAL is the
//!   truth); reads are served from it directly, concurrently, at a consistent revision.
//! * With [`Config::object_store`] (S3 or any `object_store` implementation), the core's
//!   object requests run concurrently on the tokio runtime ([`object_io`]), checkpoints are
//!   built on background threads, and [`Node::open`] returns once the node has recovered
//!   from the bucket what its data dir lacks.
//!
//! Everything decided lives in `t4-core` so the deterministic simulator (`t4-sim`) exercises
//! the same code. This crate only performs IO.

pub mod auth;
mod config;
mod driver;
mod error;
mod maintenance;
mod node;
pub mod object_io;
mod remote;
mod restore;
mod slot;
pub mod store;
mod wal_dir;
mod watch;

pub use config::Config;
pub use error::{Error, Result};
pub use maintenance::{NodeStatus, restore_snapshot};
pub use node::Node;
/// The `object_store` crate this version of t4 is built with: give [`Config::object_store`]
/// any of its stores (`aws::AmazonS3`, `memory::InMemory`, `local::LocalFileSystem`, ...).
pub use object_store;
pub use remote::CheckpointInfo;
pub use restore::restore_checkpoint;
/// Why a request was refused, with etcd's messages; carried by [`Error::Request`].
pub use t4_core::Error as RequestError;
pub use t4_core::kv::MAX_KEY_LEN;
pub use t4_core::mvcc::KvHash;
/// How a node with an object store uses it (upload mode, checkpoints, takeover); see
/// [`Config::remote`].
pub use t4_core::remote::RemoteConfig;
pub use t4_core::request::{
    CompactResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesResponse, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
pub use t4_core::snapshot::{SnapshotEncoder, SnapshotInfo};
pub use t4_core::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
pub use watch::{Watch, WatchOptions};
