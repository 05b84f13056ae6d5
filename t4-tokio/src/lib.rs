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
//!   outcomes, lease expiry, which WAL segments to delete). A dedicated thread owns it.
//! * A WAL thread appends group-committed batches to segment files and fdatasyncs them; a
//!   write is acknowledged only after that.
//! * The store is [fjall](https://docs.rs/fjall), written without fsync (the WAL is the
//!   truth); reads are served from it directly, concurrently, at a consistent revision.
//!
//! Everything decided lives in `t4-core` so the deterministic simulator (`t4-sim`) exercises
//! the same code. This crate only performs IO.

mod config;
mod driver;
mod error;
mod node;
pub mod store;
mod wal_dir;
mod watch;

pub use config::Config;
pub use error::{Error, Result};
pub use node::Node;
pub use t4_core::request::{
    CompactResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseLeasesResponse, LeaseTimeToLiveResponse,
    PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp, SortOrder,
    SortTarget, TxnRequest, TxnResponse,
};
pub use t4_core::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};
pub use watch::{Watch, WatchOptions};
