//! # t4-sim: the deterministic simulator
//!
//! `t4-sim` runs the *same* [`t4_core::Core`] that users run — not a model of it — on a
//! simulated clock, disk, network and object store, with concurrent simulated clients, while
//! one seeded random stream decides everything: latencies, which message is lost, when the
//! node crashes, which unsynced bytes survive, which operation a client issues next. The same
//! seed gives the same run, event for event; a failure prints its seed and the command that
//! replays it. (The approach is TigerBeetle's VOPR and FoundationDB's simulation testing.)
//!
//! A run is a [`scenario::Scenario`]: seed + workload + fault plan + checkers. The checkers
//! ([`checker`]) judge the recorded [`history`] against the committed log: linearizability
//! under etcd's semantics, no lost acknowledged write, gap-free revisions, exactly-once watch
//! delivery, and store contents equal to a replay of the log.
//!
//! This crate must never depend on an async runtime, on threads, on the wall clock or on
//! hash-map iteration order: any of those would make a run depend on something other than its
//! seed. The workspace `clippy.toml` forbids `Instant::now`, `SystemTime::now` and thread RNGs
//! here, as in the core. (The CLI's timing of a swarm is the one exception, in `main.rs`.)
//!
//! ## Modules
//!
//! | module | concern |
//! |---|---|
//! | [`rng`] | the root seed and per-component streams |
//! | [`sched`] | simulated time; the event queue ordered by `(time, seq)` |
//! | [`trace`] | the event trace and its stable hash |
//! | [`disk`] | a disk with unsynced writes, torn writes, failing and lying fsync, slow IO |
//! | [`objstore`] | an S3-like object store with ETags, conditional puts, outages, ambiguous answers |
//! | [`bucket`] | a node's object-store requests carried out against the simulated bucket (prefix, retries) |
//! | [`net`] | message latency, loss and partitions |
//! | [`node`] | a node: what the tokio adapter does, on the simulated disk |
//! | [`watchers`] | a node's watch fan-out and catch-up |
//! | [`logbook`] | the committed log as witnessed, and the run-time log invariants |
//! | [`workload`] | the clients and their operations |
//! | [`history`] | what the clients saw |
//! | [`model`], [`timeline`] | etcd's semantics and the replay of a log, for the checkers |
//! | [`checker`] | the checkers (five on the history, two on the bucket) |
//! | [`fault`] | the fault plan and the faults that happened |
//! | [`scenario`] | one run, start to verdict |

pub mod bucket;
pub mod checker;
pub mod disk;
pub mod fault;
pub mod history;
pub mod logbook;
pub mod model;
pub mod net;
pub mod node;
pub mod objstore;
pub mod rng;
pub mod scenario;
pub mod sched;
pub mod timeline;
pub mod trace;
pub mod watchers;
pub mod workload;

pub use scenario::{Report, Scenario, run};
