//! # t4-server: the `t4` binary
//!
//! Serves the etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth, Lock, Election,
//! health) and etcd's JSON gateway over the embedded store of `t4-tokio`, and provides the `t4`
//! command line (`t4 run`, `t4 bench`, ...).
//! Every `t4 run` flag can also be given as a `T4_*` environment variable.
//!
//! * [`cli`] — the command line; [`run`] — `t4 run`: configuration, start, signals, shutdown.
//! * [`services`] — one module per etcd service, each a thin mapping onto [`t4::Node`].
//! * [`gateway`] — etcd's JSON gateway (`POST /v3/kv/range`, …) on the client port, over the
//!   same services.
//! * [`metrics`] — Prometheus metrics and the HTTP `/metrics` and `/health` endpoint
//!   (`--metrics-listen`).
//! * [`convert`] — protobuf messages ↔ `t4_core` requests; [`status`] — errors → gRPC
//!   statuses (etcd's codes and strings come from `t4_core::Error`); [`header`] — response
//!   headers.
//!
//! Decisions about data (revisions, txn outcomes, leases) are never made here: the server
//! maps messages and streams, the node decides.

#![allow(clippy::disallowed_methods)] // a server reads real clocks

pub mod bench;
pub mod bucket;
pub mod cli;
pub mod convert;
pub mod gateway;
pub mod header;
pub mod inspect;
pub mod metrics;
pub mod run;
pub mod s3;
pub mod services;
pub mod status;
