//! Configuration of an embedded node.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use t4_core::remote::RemoteConfig;

/// How to open a [`crate::Node`]. Only `data_dir` is required:
///
/// ```
/// let config = t4::Config::new("/tmp/my-t4-data");
/// assert_eq!(config.max_txn_ops, 128);
/// ```
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory holding the WAL (`wal/`) and the store (`store/`). Created if missing.
    pub data_dir: PathBuf,
    /// Most compares / operations per txn level (etcd `--max-txn-ops`).
    pub max_txn_ops: usize,
    /// Largest request accepted, in bytes (etcd `--max-request-bytes`, 1.5 MiB).
    pub max_request_bytes: usize,
    /// A local WAL segment is sealed at this size.
    pub segment_max_bytes: u64,
    /// A local WAL segment is sealed at this age; sealed segments are deleted once the store
    /// holds their entries durably.
    pub segment_max_age: Duration,
    /// Minimum lease TTL in seconds (etcd: 2).
    pub min_lease_ttl: i64,
    /// Seed for generated lease ids; `None` draws one from the OS.
    pub seed: Option<u64>,
    /// How many published batches a watcher may lag before it catches up from the store
    /// instead (it never misses events either way).
    pub watch_buffer: usize,
    /// Bound, in bytes, of the in-memory cache of keys' latest versions that answers point
    /// gets (and the lookups each write makes) without searching the store; `0` switches it
    /// off. Default 64 MiB.
    pub read_cache_bytes: u64,
    /// The bucket that makes the node durable beyond its disk (S3 via
    /// `object_store::aws::AmazonS3Builder`, or any other implementation such as
    /// `InMemory` or `LocalFileSystem`). `None` (the default): local durability only.
    ///
    /// With a store, the node takes the writer term of [`Config::object_prefix`] at start-up,
    /// recovers from the bucket whatever its data dir lacks (an empty data dir restores the
    /// whole state), and uploads every write (see [`RemoteConfig::sync_upload`]).
    /// Conditional writes are needed: `LocalFileSystem` supports create but not update.
    pub object_store: Option<Arc<dyn ObjectStore>>,
    /// Where in the store t4 keeps its objects. Leading and trailing `/` are ignored, so
    /// `t4`, `t4/` and `/t4/` are the same prefix; empty means the bucket root.
    pub object_prefix: String,
    /// How the node uses the object store (upload mode, checkpoints, takeover). Ignored
    /// without [`Config::object_store`].
    pub remote: RemoteConfig,
}

impl Config {
    /// Defaults (etcd's limits) for a node keeping its data in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Config {
        let core = t4_core::Config::default();
        Config {
            data_dir: data_dir.into(),
            max_txn_ops: core.max_txn_ops,
            max_request_bytes: core.max_request_bytes,
            segment_max_bytes: core.segment_max_bytes,
            segment_max_age: core.segment_max_age,
            min_lease_ttl: core.min_lease_ttl,
            seed: None,
            watch_buffer: 1024,
            read_cache_bytes: crate::store::DEFAULT_CACHE_BYTES,
            object_store: None,
            object_prefix: String::new(),
            remote: RemoteConfig::default(),
        }
    }

    pub(crate) fn core_config(&self, seed: u64) -> t4_core::Config {
        t4_core::Config {
            max_txn_ops: self.max_txn_ops,
            max_request_bytes: self.max_request_bytes,
            segment_max_bytes: self.segment_max_bytes,
            segment_max_age: self.segment_max_age,
            min_lease_ttl: self.min_lease_ttl,
            term: 1,
            seed,
            remote: self.object_store.is_some().then(|| self.remote.clone()),
            max_applies_in_flight: t4_core::core::DEFAULT_MAX_APPLIES_IN_FLIGHT,
        }
    }
}
