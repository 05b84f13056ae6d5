//! [`Node`]: the embedded API.

use std::path::Path;
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
use crate::driver::{self, Clock, Command, Outlets, Serving, Shared};
use crate::error::{Error, Result};
use crate::object_io::ObjectIo;
use crate::slot::StoreSlot;
use crate::store::FjallStore;
use crate::wal_dir::WalDir;
use crate::watch::{Watch, WatchOptions};

/// Version of the data directory layout written by this binary.
const DATA_DIR_FORMAT: u32 = 1;
pub(crate) const FORMAT_FILE: &str = "t4-format";

/// An embedded t4 node: a durable, watchable, transactional key-value store with etcd's data
/// model, running inside your process.
///
/// `Node` is a cheap handle; clone it freely. Writes are serialised through the core and
/// acknowledged only once durable (synced to the WAL); reads are served concurrently from
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
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("revision", &self.current_revision())
            .finish()
    }
}

pub(crate) fn check_format(data_dir: &Path) -> Result<()> {
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
    ///
    /// Fails with [`Error::DataDir`] for a data dir written by a newer t4, [`Error::Wal`] for
    /// a damaged WAL (naming the file and byte offset; nothing on disk is changed), and
    /// [`Error::Store`] if the store cannot be opened — for instance because another node
    /// in this or another process has the directory open.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// assert_eq!(node.current_revision(), 1); // a new store starts at revision 1, as etcd
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// The node's core runs as a task on the runtime `open` is called on: keep that runtime
    /// running while the node is used (callers may be anywhere, on any runtime). The runtime
    /// needs timers (`enable_all` or `enable_time`, as `#[tokio::main]` and `#[tokio::test]`
    /// give); without them `open` panics with tokio's message.
    ///
    /// With [`Config::object_store`], `open` returns once the node has taken the prefix's
    /// writer term and recovered from the bucket whatever the data dir lacks (logging its
    /// progress); it fails with [`Error::Bootstrap`] if that cannot be done (another node
    /// holds the prefix, the bucket is unreachable or damaged).
    pub async fn open(config: Config) -> Result<Node> {
        // The core's task waits on timers (lease expiry, segment age): on a runtime without
        // them, fail here, with tokio's own message, rather than later inside that task.
        tokio::time::sleep(std::time::Duration::ZERO).await;
        let runtime = tokio::runtime::Handle::current();
        let remote = config.object_store.clone().map(|store| driver::Remote {
            io: ObjectIo::new(store, &config.object_prefix),
            runtime: runtime.clone(),
        });
        let node =
            tokio::task::spawn_blocking(move || Node::open_blocking(config, remote, runtime))
                .await
                .map_err(|e| Error::DataDir {
                    path: Default::default(),
                    reason: format!("open panicked: {e}"),
                })??;
        node.wait_serving().await?;
        // Serving, with nothing asked yet: the store holds the decided auth state, recovered
        // from the WAL or the bucket.
        let auth = node.shared.store.read(|s| s.auth())??;
        node.shared.publish_auth(&auth);
        Ok(node)
    }

    fn open_blocking(
        config: Config,
        remote: Option<driver::Remote>,
        runtime: tokio::runtime::Handle,
    ) -> Result<Node> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            context: "creating the data dir",
            path: dir.clone(),
            source,
        })?;
        check_format(dir)?;
        let wal_path = dir.join("wal");
        let (mut wal, segments) = WalDir::open(&wal_path, config.segment_max_bytes)?;
        // Refuse a damaged WAL before opening the store: opening fjall replays and rewrites
        // its own files, and a data dir refused for a damaged WAL must be left exactly as it
        // was, for the operator to repair. (`recover` below repeats these checks and adds the
        // ones that need the store's applied index.)
        let last = segments.len().saturating_sub(1);
        for (i, (id, bytes)) in segments.iter().enumerate() {
            t4_core::wal::segment::scan_segment(*id, bytes, i == last).map_err(|source| {
                Error::Wal {
                    path: wal_path.clone(),
                    source,
                }
            })?;
        }
        let store = FjallStore::open_with_cache(&dir.join("store"), config.read_cache_bytes)?;
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
                "cutting the last WAL segment after its last whole entry: a crash left \
                 preallocated space or an append that was never acknowledged"
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
        let (wal_segments_tx, wal_segments_rx) = watch::channel(wal.segment_count());
        let (commands_tx, commands_rx) = tokio::sync::mpsc::unbounded_channel();
        let (serving_tx, serving_rx) = watch::channel(Serving::Starting);
        let (unuploaded_tx, unuploaded_rx) = watch::channel(0);
        let shared = Arc::new(Shared {
            data_dir: dir.clone(),
            store: Arc::new(StoreSlot::new(store)),
            commands: commands_tx,
            engine: Arc::new(driver::Engine::empty()),
            events: Mutex::new(events_rx),
            applied: applied_rx,
            wal_segments: wal_segments_rx,
            failure: Mutex::new(None),
            serving: serving_rx,
            unuploaded: unuploaded_rx,
            auth: Mutex::default(),
            auth_status: Default::default(),
        });
        let outlets = Outlets {
            events: events_tx,
            applied: applied_tx,
            wal_segments: wal_segments_tx,
            serving: serving_tx,
            unuploaded: unuploaded_tx,
        };
        driver::spawn(
            &runtime,
            core,
            wal,
            clock,
            &shared,
            outlets,
            commands_rx,
            remote,
        );
        Ok(Node { shared })
    }

    pub(crate) async fn request(&self, request: Request) -> Result<Response> {
        self.request_checked(request, None).await
    }

    /// A request whose caller's permissions were checked at `auth_revision` (see
    /// [`t4_core::Input::Request`]).
    pub(crate) async fn request_checked(
        &self,
        request: Request,
        auth_revision: Option<u64>,
    ) -> Result<Response> {
        let (reply, answer) = oneshot::channel();
        driver::submit(&self.shared, request, auth_revision, reply).map_err(|()| Error::Closed)?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(|e| match e {
                t4_core::Error::Stopped => Error::Closed,
                e => Error::Request(e),
            })
    }

    /// Puts `key` = `value`; returns the write's revision. Returns once the write is durable
    /// (synced to the WAL) and visible to reads. etcd: `Put`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let r1 = node.put("a", "1").await?;
    /// let r2 = node.put("a", "2").await?;
    /// assert_eq!(r2, r1 + 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put(&self, key: impl Into<Bytes>, value: impl Into<Bytes>) -> Result<Revision> {
        let req = PutRequest {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        };
        Ok(self.put_with(req).await?.revision)
    }

    /// A put with every etcd option (lease, prev_kv, ignore_value, ignore_lease).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// node.put("k", "old").await?;
    /// let resp = node
    ///     .put_with(t4::PutRequest {
    ///         key: "k".into(),
    ///         value: "new".into(),
    ///         prev_kv: true,
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// assert_eq!(resp.prev_kv.unwrap().value, "old");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn put_with(&self, req: PutRequest) -> Result<PutResponse> {
        self.unchecked().put_with(req).await
    }

    /// The current value of `key`, with its etcd metadata (create/mod revision, version,
    /// lease). Served from the store, never waits for writes. etcd: `Range` of one key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let rev = node.put("k", "v").await?;
    /// let kv = node.get("k").await?.expect("just written");
    /// assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (rev, rev, 1));
    /// assert!(node.get("missing").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn get(&self, key: impl Into<Bytes>) -> Result<Option<KeyValue>> {
        // What `range` answers for a single key at the current revision, without building a
        // range request and response around it: the point get is the hottest read.
        let key = key.into();
        t4_core::txn::check_key(&key)?;
        let floor = self.shared.store.acknowledged();
        // The view is checked under the same lock as the read; behind, the key comes back.
        let found = self.shared.store.read_latest_briefly(|view| {
            if view.revision() >= floor {
                Ok(view.get_current(key))
            } else {
                Err(key)
            }
        })?;
        let found = match found {
            Ok(found) => found,
            Err(key) => {
                let _waiting = self.shared.store.reader_waits();
                self.wait_for_revision(floor).await?;
                self.shared
                    .store
                    .read_latest_briefly(|view| view.get_current(key))?
            }
        };
        Ok(found.map_err(t4_core::Error::from)?)
    }

    /// Waits until every write answered so far is visible to reads. A write is answered as
    /// soon as it is durable, and its apply to the store may still be running (for a few
    /// microseconds to a few milliseconds); a read that starts after the answer must see it.
    pub(crate) async fn caught_up(&self) -> Result<()> {
        let floor = self.shared.store.acknowledged();
        if self.shared.store.revisions().0 < floor {
            let _waiting = self.shared.store.reader_waits();
            self.wait_for_revision(floor).await?;
        }
        Ok(())
    }

    /// Every key starting with `prefix`, in key order, at the current revision (etcd's
    /// `get --prefix`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// node.put("/app/a", "1").await?;
    /// node.put("/app/b", "2").await?;
    /// node.put("/other", "3").await?;
    /// assert_eq!(node.get_prefix("/app/").await?.len(), 2);
    /// # Ok(())
    /// # }
    /// ```
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
    /// from the store at one consistent revision, concurrently with writes. Fails with
    /// etcd's `Compacted` / `FutureRevision` for a revision out of range.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// for k in ["a", "b", "c"] {
    ///     node.put(k, "v").await?;
    /// }
    /// let first_two = node
    ///     .range(t4::RangeRequest {
    ///         key: "a".into(),
    ///         range_end: "\0".into(), // every key from "a" on
    ///         limit: 2,
    ///         ..Default::default()
    ///     })
    ///     .await?;
    /// assert_eq!(first_two.kvs.len(), 2);
    /// assert!(first_two.more);
    /// assert_eq!(first_two.count, 3);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn range(&self, req: RangeRequest) -> Result<RangeResponse> {
        // The same checks as a range inside a txn: an empty key, a key over MAX_KEY_LEN.
        t4_core::txn::check_range_request(&req)?;
        self.caught_up().await?;
        Ok(self
            .shared
            .store
            .read_latest(|view| t4_core::mvcc::range(view, &req))??)
    }

    /// Deletes `key`; returns whether it existed. Deleting a missing key uses no revision.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// node.put("k", "v").await?;
    /// assert!(node.delete("k").await?);
    /// assert!(!node.delete("k").await?);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete(&self, key: impl Into<Bytes>) -> Result<bool> {
        let req = DeleteRangeRequest {
            key: key.into(),
            ..Default::default()
        };
        Ok(self.delete_range(req).await?.deleted > 0)
    }

    /// Deletes keys with every etcd option (range end, prev_kv). All deletions share one
    /// revision. etcd: `DeleteRange`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// node.put("tmp/1", "a").await?;
    /// node.put("tmp/2", "b").await?;
    /// let resp = node
    ///     .delete_range(t4::DeleteRangeRequest {
    ///         key: "tmp/".into(),
    ///         range_end: "tmp0".into(), // the prefix end of "tmp/"
    ///         prev_kv: true,
    ///     })
    ///     .await?;
    /// assert_eq!(resp.deleted, 2);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        self.unchecked().delete_range(req).await
    }

    /// An atomic if/then/else over the store, with etcd's semantics: every compare is
    /// evaluated against the same state, then one branch runs whole, at one revision.
    /// etcd: `Txn`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// use t4::{Compare, CompareResult, CompareTarget, PutRequest, RequestOp, TxnRequest};
    ///
    /// let rev = node.put("config", "v1").await?;
    /// // Compare-and-swap: replace the value only if nobody wrote it since we read it.
    /// let cas = TxnRequest {
    ///     compare: vec![Compare {
    ///         key: "config".into(),
    ///         result: CompareResult::Equal,
    ///         target: CompareTarget::Mod(rev),
    ///         ..Default::default()
    ///     }],
    ///     success: vec![RequestOp::Put(PutRequest {
    ///         key: "config".into(),
    ///         value: "v2".into(),
    ///         ..Default::default()
    ///     })],
    ///     failure: vec![],
    /// };
    /// assert!(node.txn(cas.clone()).await?.succeeded);
    /// assert!(!node.txn(cas).await?.succeeded, "the mod revision moved on");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        self.unchecked().txn(req).await
    }

    /// Discards history below `revision`: reads and watches at older revisions fail with
    /// `Compacted` from then on. With `physical`, returns only once the old versions are
    /// removed from the store (etcd's `physical` flag). etcd: `Compact`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let old = node.put("k", "1").await?;
    /// let now = node.put("k", "2").await?;
    /// node.compact(now, true).await?;
    /// assert_eq!(node.compact_revision(), now);
    /// let err = node
    ///     .range(t4::RangeRequest { key: "k".into(), revision: old, ..Default::default() })
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.as_request_error(), Some(&t4::RequestError::Compacted));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn compact(&self, revision: Revision, physical: bool) -> Result<CompactResponse> {
        match self
            .request(Request::Compact(CompactRequest { revision, physical }))
            .await?
        {
            Response::Compact(r) => Ok(r),
            other => unreachable!("compact answered with {other:?}"),
        }
    }

    /// Watches `range` (see [`KeyRange::prefix`] and friends) from a revision: every
    /// matching event, exactly once, in revision order, starting in the past if
    /// [`WatchOptions::start_revision`] says so. A slow watcher never slows writers; it
    /// catches up from the store. Fails with [`Error::WatchCompacted`] if the start revision
    /// was compacted, and with [`t4::RequestError::InvalidRange`](crate::RequestError) for an
    /// empty range. etcd: `Watch`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// use t4::{EventKind, KeyRange, WatchOptions};
    ///
    /// let first = node.put("jobs/1", "queued").await?;
    /// node.delete("jobs/1").await?;
    /// // Replay from `first`, then follow live writes.
    /// let options = WatchOptions { start_revision: first, prev_kv: true, ..Default::default() };
    /// let mut watch = node.watch(KeyRange::prefix("jobs/"), options).await?;
    /// let mut events = Vec::new();
    /// while events.len() < 2 {
    ///     events.extend(watch.next_batch().await?);
    /// }
    /// assert_eq!(events[0].kind, EventKind::Put);
    /// assert_eq!(events[1].kind, EventKind::Delete);
    /// assert_eq!(events[1].prev_kv.as_ref().unwrap().value, "queued");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn watch(&self, range: KeyRange, options: WatchOptions) -> Result<Watch> {
        if range.is_empty() {
            // etcd refuses a watch whose range_end sorts at or before its key, too.
            return Err(Error::Request(t4_core::Error::InvalidRange));
        }
        let live = self
            .shared
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resubscribe();
        // A watch from "now" starts after every answered write.
        self.caught_up().await?;
        Watch::start(range, &options, live, self.shared.store.clone())
    }

    /// Grants a lease of `ttl` seconds (raised to [`Config::min_lease_ttl`]); `id` 0 picks
    /// an id. Keys put with the lease are deleted, in one revision, when it expires or is
    /// revoked. Grants are durable; a restart gives every lease its full TTL again (as
    /// etcd). etcd: `LeaseGrant`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let lease = node.lease_grant(30, 0).await?;
    /// node.put_with(t4::PutRequest {
    ///     key: "session".into(),
    ///     value: "alive".into(),
    ///     lease: lease.id,
    ///     ..Default::default()
    /// })
    /// .await?;
    /// assert_eq!(node.lease_keep_alive(lease.id).await?, 30);
    /// let ttl = node.lease_time_to_live(lease.id, true).await?;
    /// assert_eq!(ttl.keys.len(), 1);
    /// assert_eq!(node.lease_leases().await?.leases, vec![lease.id]);
    /// node.lease_revoke(lease.id).await?;
    /// assert!(node.get("session").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn lease_grant(&self, ttl: i64, id: LeaseId) -> Result<LeaseGrantResponse> {
        match self.request(Request::LeaseGrant { id, ttl }).await? {
            Response::LeaseGrant(r) => Ok(r),
            other => unreachable!("lease grant answered with {other:?}"),
        }
    }

    /// Revokes a lease, deleting its keys in one revision; returns that revision. Fails
    /// with etcd's `LeaseNotFound` for an unknown lease. etcd: `LeaseRevoke`.
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<Revision> {
        self.unchecked().lease_revoke(id).await
    }

    /// Renews a lease to its full TTL; returns the TTL, or 0 if the lease does not exist
    /// (etcd's answer). Keepalives are not written to the WAL. etcd: `LeaseKeepAlive`.
    pub async fn lease_keep_alive(&self, id: LeaseId) -> Result<i64> {
        match self.request(Request::LeaseKeepAlive { id }).await? {
            Response::LeaseKeepAlive(r) => Ok(r.ttl),
            other => unreachable!("keepalive answered with {other:?}"),
        }
    }

    /// Remaining and granted TTL of a lease (TTL -1 if it does not exist), with its keys
    /// when `keys` is set. etcd: `LeaseTimeToLive`.
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

    /// Every live lease, ascending. etcd: `LeaseLeases`.
    pub async fn lease_leases(&self) -> Result<LeaseLeasesResponse> {
        match self.request(Request::LeaseLeases).await? {
            Response::LeaseLeases(r) => Ok(r),
            other => unreachable!("lease list answered with {other:?}"),
        }
    }

    /// Waits until every write up to `revision` is applied and visible to reads; returns
    /// the revision then (at least `revision`). Useful after learning a revision from
    /// another handle or a watch. Fails if a store apply failed before reaching it (the
    /// writes are in the WAL; a restart applies them).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let writer = node.clone();
    /// let task = tokio::spawn(async move { writer.put("k", "v").await });
    /// let rev = task.await.unwrap()?;
    /// assert!(node.wait_for_revision(rev).await? >= rev);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_revision(&self, revision: Revision) -> Result<Revision> {
        let mut applied = self.shared.applied.clone();
        let store = &self.shared.store;
        let r = *applied
            .wait_for(|r| *r >= revision || store.applies_failed())
            .await
            .map_err(|_| Error::Closed)?;
        if r < revision {
            return Err(Error::Request(t4_core::Error::Failed(format!(
                "a store apply failed: the writes after revision {r} are durable but cannot \
                 be read until the node restarts"
            ))));
        }
        Ok(r)
    }

    /// The latest answered revision: every write up to it is durable, and every read that
    /// starts now sees it (a read waits for the store to apply a write answered a moment
    /// ago). Cheap; never waits.
    pub fn current_revision(&self) -> Revision {
        let store = &self.shared.store;
        store.revisions().0.max(store.acknowledged())
    }

    /// The compact revision (0 if never compacted).
    pub fn compact_revision(&self) -> Revision {
        self.shared.store.revisions().1
    }

    /// Why the node refuses writes, if it does (a WAL or store write failed; restart it).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many WAL segment files the node's `wal/` directory holds: the segment being
    /// appended to plus sealed ones not yet deleted. For monitoring and tests.
    ///
    /// A segment is sealed once it reaches [`Config::segment_max_bytes`] or
    /// [`Config::segment_max_age`], and deleted once the store has durably persisted every
    /// entry in it, so under a steady load this stays small.
    pub fn wal_segments(&self) -> usize {
        *self.shared.wal_segments.borrow()
    }

    /// Waits until the `wal/` directory holds at most `max` segment files (see
    /// [`Node::wal_segments`]); returns the count then. Fails with [`Error::Closed`] if the
    /// node closes first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut config = t4::Config::new(dir.path());
    /// config.segment_max_age = std::time::Duration::from_millis(10);
    /// let node = t4::Node::open(config).await?;
    /// node.put("k", "v").await?;
    /// // The idle segment is sealed by age, the store persisted, the segment deleted.
    /// assert_eq!(node.wait_for_wal_segments(0).await?, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn wait_for_wal_segments(&self, max: usize) -> Result<usize> {
        let mut segments = self.shared.wal_segments.clone();
        let n = segments
            .wait_for(|n| *n <= max)
            .await
            .map_err(|_| Error::Closed)?;
        Ok(*n)
    }

    /// Stops taking requests, waits for in-flight writes (and background store work),
    /// persists the store, stops the node's threads and releases the data dir: once `close`
    /// returns, the directory can be opened again, even while clones of this handle or
    /// watches still exist. Watches end with [`Error::Closed`]; every handle's reads and
    /// writes fail with [`Error::Closed`] afterwards ([`Node::current_revision`] and
    /// [`Node::compact_revision`] keep answering with the values at close). Closing a closed
    /// node does nothing.
    ///
    /// Dropping the last handle without `close` also shuts the node down cleanly, in the
    /// background; acknowledged writes are durable either way.
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
