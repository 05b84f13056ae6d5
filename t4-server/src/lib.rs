//! # t4-server: the `t4` binary
//!
//! Serves the etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth, health) over the
//! embedded store of `t4-tokio`, and provides the `t4` command line (`t4 run`, `t4 bench`, ...).
//! Every `t4 run` flag can also be given as a `T4_*` environment variable.

#![allow(clippy::disallowed_methods)] // a server reads real clocks

pub mod bench;
pub mod cli;
