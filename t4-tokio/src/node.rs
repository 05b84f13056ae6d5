//! [`Node`]: the embedded API.

use std::path::Path;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use t4_core::request::{
    CompactRequest, CompactResponse, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantResponse,
    LeaseLeasesResponse, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, TxnRequest, TxnResponse,
};
use t4_core::{Core, KeyRange, KeyValue, LeaseId, ReadView, Request, Response, Revision, Store};
use tokio::sync::{broadcast, oneshot, watch};

use crate::config::Config;
use crate::driver::{self, Clock, Command, Outlets, Shared};
use crate::error::{Error, Result};
use crate::store::FjallStore;
use crate::wal_dir::WalDir;
use crate::watch::{Watch, WatchOptions};

/// Version of the data directory layout written by this binary.
const DATA_DIR_FORMAT: u32 = 1;
const FORMAT_FILE: &str = "t4-format";

/// An embedded t4 node: a durable, watchable, transactional key-value store with etcd's data
/// model, running inside your process.
///
/// `Node` is a cheap handle; clone it freely. Writes are serialised through the core and
/// acknowledged only once durable (fdatasync of the WAL); reads are served concurrently from
/// the store and never wait behind writes.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), t4::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// let node = t4::Node::open(t4::Config::new(dir.path())).await?;
/// let rev = node.put("greeting", "hello").await?;
/// let kv = node.get("greeting").await?.expect("just written");
/// assert_eq!(kv.value, "hello");
/// assert_eq!(kv.mod_revision, rev);
/// node.close().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Node {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("revision", &self.current_revision())
            .finish()
    }
}

fn check_format(data_dir: &Path) -> Result<()> {
    let file = data_dir.join(FORMAT_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => {
            let version: u32 = text.trim().parse().map_err(|_| Error::DataDir {
                path: data_dir.to_path_buf(),
                reason: format!("{FORMAT_FILE} holds {text:?}, not a format number"),
            })?;
            if version > DATA_DIR_FORMAT {
                return Err(Error::DataDir {
                    path: data_dir.to_path_buf(),
                    reason: format!(
                        "written by a newer t4 (data dir format {version}; this binary supports up to {DATA_DIR_FORMAT}). Upgrade t4 to open it"
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&file, format!("{DATA_DIR_FORMAT}\n")).map_err(|source| Error::Io {
                context: "writing the data dir format file",
                path: file,
                source,
            })
        }
        Err(source) => Err(Error::Io {
            context: "reading the data dir format file",
            path: file,
            source,
        }),
    }
}

impl Node {
    /// Opens (creating if needed) the node in `config.data_dir`: opens the store, replays the
    /// WAL past the store's applied index (truncating a torn tail; refusing, with the file and
    /// offset, any other damage), and starts serving.
    pub async fn open(config: Config) -> Result<Node> {
        tokio::task::spawn_blocking(move || Node::open_blocking(config))
            .await
            .map_err(|e| Error::DataDir {
                path: Default::default(),
                reason: format!("open panicked: {e}"),
            })?
    }

    fn open_blocking(config: Config) -> Result<Node> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "creating the data dir",
            path: dir.clone(),
            source,
        })?;
        check_format(dir)?;
        let store = FjallStore::open(&dir.join("store"))?;
        let wal_path = dir.join("wal");
        let (wal, segments) = WalDir::open(&wal_path)?;
        let recovery =
            t4_core::wal::recover(&segments, store.view().applied_index()).map_err(|source| {
                Error::Wal {
                    path: wal_path.clone(),
                    source,
                }
            })?;
        drop(segments);
        if let Some((segment, len)) = recovery.truncate {
            tracing::warn!(
                segment,
                len,
                "truncating a torn WAL tail left by a crash (never acknowledged)"
            );
            wal.truncate(segment, len)?;
        }
        let seed = config.seed.unwrap_or_else(rand::random);
        let clock = Clock::start();
        let core = Core::open(
            config.core_config(seed),
            store.clone(),
            recovery,
            clock.now(),
        )?;
        let (events_tx, events_rx) = broadcast::channel(config.watch_buffer.max(1));
        let (applied_tx, applied_rx) = watch::channel(core.applied_revision());
        let (commands_tx, commands_rx) = channel();
        let shared = Arc::new(Shared {
            store,
            commands: commands_tx,
            events: Mutex::new(events_rx),
            applied: applied_rx,
            failure: Mutex::new(None),
        });
        let outlets = Outlets {
            events: events_tx,
            applied: applied_tx,
        };
        driver::spawn(core, wal, clock, &shared, outlets, commands_rx).map_err(|source| {
            Error::Io {
                context: "starting the node threads",
                path: dir.clone(),
                source,
            }
        })?;
        Ok(Node { shared })
    }

    async fn request(&self, request: Request) -> Result<Response> {
        let (reply, answer) = oneshot::channel();
        self.shared
            .commands
            .send(Command::Request { request, reply })
            .map_err(|_| Error::Closed)?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|e| match e {
                t4_core::Error::Stopped => Error::Closed,
                e => Error::Request(e),
            })
    }

    /// Puts `key` = `value`; returns the write's revision.
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Revision> {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        Ok(self.put_with(req).await?.revision)
    }

    /// A put with every etcd option (lease, prev_kv, ignore_value, ignore_lease).
    pub async fn put_with(&self, req: PutRequest) -> Result<PutResponse> {
        match self.request(Request::Put(req)).await? {
            Response::Put(r) => Ok(r),
            other => unreachable!("put answered with {other:?}"),
        }
    }

    /// The current value of `key`.
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        let resp = self
            .range(RangeRequest {
                key: key.into(),
                ..Default::default()
            })
            .await?;
        Ok(resp.kvs.into_iter().next())
    }

    /// Every key starting with `prefix`, in key order, at the current revision.
    pub async fn get_prefix(&self, prefix: impl Into<Bytes>) -> Result<Vec<KeyValue>> {
        let prefix: Bytes = prefix.into();
        let range_end = match KeyRange::prefix(prefix.clone()) {
            KeyRange::Between(_, end) => end,
            _ => Bytes::from_static(b"\0"),
        };
        Ok(self
            .range(RangeRequest {
                key: prefix,
                range_end,
                ..Default::default()
            })
            .await?
            .kvs)
    }

    /// A read with every etcd option (range end, limit, revision, sort, filters...). Served
    /// from the store at one consistent revision, concurrently with writes.
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        let view = self.shared.store.view();
        Ok(t4_core::mvcc::range(&view, &req)?)
    }

    /// Deletes `key`; returns whether it existed.
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        let req = DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        };
        Ok(self.delete_range(req).await?.deleted > 0)
    }

    /// Deletes keys with every etcd option (range end, prev_kv).
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.request(Request::DeleteRange(req)).await? {
            Response::DeleteRange(r) => Ok(r),
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    /// An atomic if/then/else over the store, with etcd's semantics.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.request(Request::Txn(req)).await? {
            Response::Txn(r) => Ok(r),
            other => unreachable!("txn answered with {other:?}"),
        }
    }

    /// Discards history below `revision`. With `physical`, returns only once the old
    /// versions are removed from the store.
    pub async fn compact(&self, revision: Revision, physical: bool) -> Result<CompactResponse> {
        match self
            .request(Request::Compact(CompactRequest { revision, physical }))
            .await?
        {
            Response::Compact(r) => Ok(r),
            other => unreachable!("compact answered with {other:?}"),
        }
    }

    /// Watches `range` (see [`KeyRange::prefix`] and friends) from a revision.
    pub async fn watch(&self, range: KeyRange, options: WatchOptions) -> Result<Watch> {
        let live = self
            .shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resubscribe();
        Watch::start(range, &options, live, self.shared.store.clone())
    }

    /// Grants a lease of `ttl` seconds (raised to the minimum TTL); `id` 0 picks an id.
    pub async fn lease_grant(&self, ttl: i64, id: LeaseId) -> Result<LeaseGrantResponse> {
        match self.request(Request::LeaseGrant { id, ttl }).await? {
            Response::LeaseGrant(r) => Ok(r),
            other => unreachable!("lease grant answered with {other:?}"),
        }
    }

    /// Revokes a lease, deleting its keys in one revision; returns that revision.
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<Revision> {
        match self.request(Request::LeaseRevoke { id }).await? {
            Response::LeaseRevoke(r) => Ok(r.revision),
            other => unreachable!("lease revoke answered with {other:?}"),
        }
    }

    /// Renews a lease; returns its TTL, or 0 if the lease does not exist (etcd's answer).
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        match self.request(Request::LeaseKeepAlive { id }).await? {
            Response::LeaseKeepAlive(r) => Ok(r.ttl),
            other => unreachable!("keepalive answered with {other:?}"),
        }
    }

    /// Remaining and granted TTL of a lease (TTL -1 if it does not exist), with its keys
    /// when `keys` is set.
    pub async fn lease_time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
    ) -> Result<LeaseTimeToLiveResponse> {
        match self.request(Request::LeaseTimeToLive { id, keys }).await? {
            Response::LeaseTimeToLive(r) => Ok(r),
            other => unreachable!("time-to-live answered with {other:?}"),
        }
    }

    /// Every live lease.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse> {
        match self.request(Request::LeaseLeases).await? {
            Response::LeaseLeases(r) => Ok(r),
            other => unreachable!("lease list answered with {other:?}"),
        }
    }

    /// Waits until every write up to `revision` is applied and visible to reads.
    pub async fn wait_for_revision(&self, revision: Revision) -> Result<Revision> {
        let mut applied = self.shared.applied.clone();
        let r = applied
            .wait_for(|r| *r >= revision)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(*r)
    }

    /// The latest durable, visible revision.
    pub fn current_revision(&self) -> Revision {
        self.shared.store.view().revision()
    }

    /// The compact revision (0 if never compacted).
    pub fn compact_revision(&self) -> Revision {
        self.shared.store.view().compact_revision()
    }

    /// Why the node refuses writes, if it does (a WAL or store write failed; restart it).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Stops taking requests, waits for in-flight writes, persists the store and stops the
    /// node's threads. Watches end with [`Error::Closed`]. Other handles get
    /// [`Error::Closed`] afterwards.
    pub async fn close(&self) -> Result<()> {
        let (done, finished) = oneshot::channel();
        if self
            .shared
            .commands
            .send(Command::Shutdown { done: Some(done) })
            .is_err()
        {
            return Ok(());
        }
        let _ = finished.await;
        Ok(())
    }
}
