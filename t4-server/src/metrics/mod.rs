//! Prometheus metrics and the HTTP endpoint that serves them (`t4 run --metrics-listen`).
//!
//! The node's numbers (revisions, WAL segments, the async-upload loss window, size on disk,
//! serving) are read from [`t4::Node`] at scrape time, not pushed: a scrape always shows the
//! node as it is. Per-RPC counters and latencies are recorded by [`grpc::GrpcMetricsLayer`]
//! around the gRPC services. [`http`] serves `/metrics` and `/health`.

pub mod grpc;
pub mod http;

use std::sync::Arc;

use prometheus_client::encoding::{prometheus_text, text};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use crate::services::Context;
use crate::services::maintenance::ETCD_VERSION;
use grpc::GrpcMetrics;

/// A text exposition and its `Content-Type`.
#[derive(Debug)]
pub struct Exposition {
    /// The `Content-Type` header.
    pub content_type: &'static str,
    /// The metrics.
    pub body: String,
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    applied_revision: Gauge,
    compact_revision: Gauge,
    wal_segments: Gauge,
    unuploaded_entries: Gauge,
    db_size_bytes: Gauge,
    serving: Gauge,
    /// The per-RPC metrics, shared with the gRPC layer.
    pub grpc: Arc<GrpcMetrics>,
}

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// The registry with every metric at zero.
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        registry.register(
            "t4_build",
            "The t4 version and the etcd API version it serves",
            Info::new(vec![
                ("version", env!("CARGO_PKG_VERSION")),
                ("etcd_api", ETCD_VERSION),
            ]),
        );
        let r = &mut registry;
        let applied_revision = gauge(
            r,
            "t4_applied_revision",
            "The latest durable revision visible to reads",
        );
        let compact_revision = gauge(
            r,
            "t4_compact_revision",
            "The compact revision (0 if never compacted)",
        );
        let wal_segments = gauge(
            r,
            "t4_wal_segments",
            "Segment files in the local wal/ directory (the open one and sealed ones not yet deleted)",
        );
        let unuploaded_entries = gauge(
            r,
            "t4_unuploaded_entries",
            "Acknowledged log entries not yet in the bucket: what losing this machine's disk would \
             lose (the async-upload loss window; 0 without a bucket or with sync upload)",
        );
        let db_size_bytes = gauge(
            r,
            "t4_db_size_bytes",
            "Bytes the data directory takes on disk (store and WAL), as Maintenance Status reports",
        );
        let serving = gauge(
            r,
            "t4_serving",
            "1 while the node serves, 0 once it failed (a WAL or store write failed) or is stopping",
        );
        let grpc = GrpcMetrics::register(&mut registry);
        Metrics {
            registry,
            applied_revision,
            compact_revision,
            wal_segments,
            unuploaded_entries,
            db_size_bytes,
            serving,
            grpc,
        }
    }

    /// Reads the node's numbers now.
    pub async fn refresh(&self, ctx: &Context) {
        let node = &ctx.node;
        self.applied_revision.set(node.current_revision());
        self.compact_revision.set(node.compact_revision());
        self.wal_segments
            .set(i64::try_from(node.wal_segments()).unwrap_or(i64::MAX));
        self.unuploaded_entries
            .set(saturating_i64(node.unuploaded_entries()));
        self.serving.set(i64::from(ctx.not_serving().is_none()));
        // The size walks the data directory (on a blocking thread); a closed node keeps
        // the last size.
        if let Ok(status) = node.status().await {
            self.db_size_bytes.set(saturating_i64(status.db_size_bytes));
        }
    }

    /// The metrics as of now, in the Prometheus text format, or in OpenMetrics when the
    /// scraper asks for it (`Accept: application/openmetrics-text`).
    pub async fn expose(&self, ctx: &Context, openmetrics: bool) -> Exposition {
        self.refresh(ctx).await;
        let mut body = String::new();
        let (encoded, content_type) = if openmetrics {
            (
                text::encode(&mut body, &self.registry),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
        } else {
            (
                prometheus_text::encode(&mut body, &self.registry),
                prometheus_text::CONTENT_TYPE,
            )
        };
        // Writing into a String cannot fail.
        encoded.expect("encoding metrics into a String");
        Exposition { content_type, body }
    }
}
