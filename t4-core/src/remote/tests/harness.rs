//! A tiny deterministic world for driving a core with a bucket: an in-memory object store
//! with ETags and conditional writes, a WAL kept as byte vectors, and a manual clock.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;

use crate::checkpoint;
use crate::core::{Action, Config, Core, Input, IoId, RequestId};
use crate::error::Error;
use crate::mvcc::{MemStore, ReadView, Store};
use crate::object::{ETag, ObjectError, ObjectMeta, ObjectRequest, ObjectResponse, PutMode};
use crate::remote::RemoteConfig;
use crate::request::{PutRequest, Request, Response};
use crate::time::Instant;
use crate::wal::{self, SegmentId};

/// The fake bucket.
#[derive(Debug, Default)]
pub struct Bucket {
    pub objects: BTreeMap<String, (Bytes, u64)>,
    next_etag: u64,
    /// Every request fails with `Unavailable` (nothing happens).
    pub down: bool,
    /// The next PUT happens but its answer is lost (`Unavailable`).
    pub lose_next_put_answer: bool,
    /// Every successful PUT, by key.
    pub puts: Vec<String>,
    /// The keys of every successful bulk delete, one entry per request.
    pub deletes: Vec<Vec<String>>,
    /// Every request seen.
    pub requests: usize,
}

pub type SharedBucket = Rc<RefCell<Bucket>>;

impl Bucket {
    pub fn shared() -> SharedBucket {
        Rc::new(RefCell::new(Bucket::default()))
    }

    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.objects
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect()
    }

    pub fn perform(&mut self, request: &ObjectRequest) -> Result<ObjectResponse, ObjectError> {
        self.requests += 1;
        if self.down {
            return Err(ObjectError::Unavailable("connection refused".into()));
        }
        match request {
            ObjectRequest::Get { key } => match self.objects.get(key) {
                Some((bytes, etag)) => Ok(ObjectResponse::Got {
                    bytes: bytes.clone(),
                    etag: ETag(etag.to_string()),
                }),
                None => Err(ObjectError::NotFound),
            },
            ObjectRequest::Put { key, bytes, mode } => {
                let current = self.objects.get(key).map(|(_, e)| ETag(e.to_string()));
                let ok = match mode {
                    PutMode::Overwrite => true,
                    PutMode::Create => current.is_none(),
                    PutMode::Update(etag) => current.as_ref() == Some(etag),
                };
                if !ok {
                    return Err(ObjectError::PreconditionFailed);
                }
                self.next_etag += 1;
                self.objects
                    .insert(key.clone(), (bytes.clone(), self.next_etag));
                self.puts.push(key.clone());
                if std::mem::take(&mut self.lose_next_put_answer) {
                    return Err(ObjectError::Unavailable("timeout".into()));
                }
                Ok(ObjectResponse::Put {
                    etag: ETag(self.next_etag.to_string()),
                })
            }
            ObjectRequest::List { prefix } => Ok(ObjectResponse::Listed {
                objects: self
                    .objects
                    .iter()
                    .filter(|(k, _)| k.starts_with(prefix.as_str()))
                    .map(|(k, (b, _))| ObjectMeta {
                        key: k.clone(),
                        size: b.len() as u64,
                    })
                    .collect(),
            }),
            ObjectRequest::DeleteMany { keys } => {
                assert!(
                    !keys.is_empty() && keys.len() <= crate::object::MAX_DELETE_KEYS,
                    "a bulk delete of {} keys",
                    keys.len()
                );
                for key in keys {
                    self.objects.remove(key);
                }
                self.deletes.push(keys.clone());
                Ok(ObjectResponse::Deleted)
            }
        }
    }
}

/// An IO the node has not completed yet.
#[derive(Debug)]
pub enum Io {
    Wal(IoId),
    /// An `Action::Apply`, performed when polled (the replies after it see it); only its
    /// report waits, so the next append can complete first.
    Applied(IoId),
    Object(IoId, ObjectRequest),
    Persist(IoId),
    Compact(IoId, i64),
    Built(IoId, Result<checkpoint::Built, String>),
}

/// One node: a core, its store and WAL, and the bucket it talks to.
pub struct Node {
    pub core: Core<MemStore>,
    pub store: MemStore,
    pub wal: BTreeMap<SegmentId, Vec<u8>>,
    pub bucket: SharedBucket,
    pub now: Instant,
    pub pending: VecDeque<Io>,
    pub replies: BTreeMap<RequestId, Result<Response, Error>>,
    pub checkpoints: Vec<Result<crate::remote::CheckpointInfo, String>>,
    pub failures: Vec<String>,
    next_id: u64,
}

pub fn remote(node_id: &str) -> RemoteConfig {
    RemoteConfig {
        node_id: node_id.to_string(),
        merge_min_objects: 1_000_000,
        checkpoint_entries: u64::MAX,
        checkpoint_interval: Duration::from_secs(1_000_000),
        ..Default::default()
    }
}

impl Node {
    /// Opens a node over `store` and `wal` (as a restart would find them).
    pub fn open_with(
        remote: RemoteConfig,
        bucket: &SharedBucket,
        store: MemStore,
        wal: BTreeMap<SegmentId, Vec<u8>>,
    ) -> Node {
        let segments: Vec<(SegmentId, Bytes)> = wal
            .iter()
            .map(|(id, b)| (*id, Bytes::from(b.clone())))
            .collect();
        let recovery =
            wal::recover(&segments, store.view().applied_index()).expect("local WAL recovers");
        let config = Config {
            remote: Some(remote),
            ..Default::default()
        };
        let core = Core::open(config, store.clone(), recovery, Instant::ZERO).expect("opens");
        let mut node = Node {
            core,
            store,
            wal,
            bucket: bucket.clone(),
            now: Instant::ZERO,
            pending: VecDeque::new(),
            replies: BTreeMap::new(),
            checkpoints: Vec::new(),
            failures: Vec::new(),
            next_id: 0,
        };
        node.drain();
        node
    }

    /// A node on an empty disk.
    pub fn open(remote: RemoteConfig, bucket: &SharedBucket) -> Node {
        Node::open_with(remote, bucket, MemStore::new(), BTreeMap::new())
    }

    /// Opens and runs start-up to the end.
    pub fn start(remote: RemoteConfig, bucket: &SharedBucket) -> Node {
        let mut node = Node::open(remote, bucket);
        node.settle();
        node
    }

    pub fn drain(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::WalAppend {
                    io,
                    segment,
                    create,
                    bytes,
                } => {
                    if create {
                        self.wal.insert(segment, Vec::new());
                    }
                    self.wal
                        .get_mut(&segment)
                        .expect("appends go to an existing segment")
                        .extend_from_slice(&bytes);
                    self.pending.push_back(Io::Wal(io));
                }
                Action::Apply { io, entry } => {
                    self.store.apply(&entry).expect("applies");
                    self.pending.push_back(Io::Applied(io));
                }
                Action::WalDelete { segment } => {
                    self.wal.remove(&segment);
                }
                Action::PersistStore { io } => {
                    self.store.persist().expect("persists");
                    self.pending.push_back(Io::Persist(io));
                }
                Action::CompactStore { io, revision } => {
                    self.pending.push_back(Io::Compact(io, revision))
                }
                Action::Publish { .. } => {}
                Action::Reply { id, result } => {
                    assert!(
                        self.replies.insert(id, result).is_none(),
                        "{id:?} answered twice"
                    );
                }
                Action::Failed { reason } => self.failures.push(reason),
                Action::Object { io, request } => self.pending.push_back(Io::Object(io, request)),
                Action::BuildCheckpoint { io, spec } => {
                    let view = self.store.view();
                    let built = checkpoint::build(&view, &spec);
                    self.pending.push_back(Io::Built(io, built));
                }
                Action::CheckpointDone { result, .. } => self.checkpoints.push(result),
            }
        }
    }

    /// Completes the oldest pending IO whose kind `pick` accepts.
    pub fn complete(&mut self, pick: impl Fn(&Io) -> bool) -> bool {
        let Some(at) = self.pending.iter().position(pick) else {
            return false;
        };
        let io = self.pending.remove(at).expect("position is valid");
        let now = self.now;
        match io {
            Io::Wal(io) | Io::Applied(io) | Io::Persist(io) => {
                self.core.handle(now, Input::IoDone { io, result: Ok(()) })
            }
            Io::Compact(io, revision) => {
                let result = self.store.compact(revision).map_err(|e| e.to_string());
                self.core.handle(now, Input::IoDone { io, result })
            }
            Io::Object(io, request) => {
                let result = self.bucket.borrow_mut().perform(&request);
                self.core.handle(now, Input::ObjectDone { io, result })
            }
            Io::Built(io, result) => self.core.handle(now, Input::CheckpointBuilt { io, result }),
        }
        self.drain();
        true
    }

    /// Completes the IOs `asked` does not match until one it matches is pending (and left
    /// pending): the node is frozen just before that request.
    pub fn run_until_asked(&mut self, asked: impl Fn(&Io) -> bool) {
        while !self.pending.iter().any(&asked) {
            assert!(self.complete(|io| !asked(io)), "start-up stalled");
        }
    }

    /// Lets a frozen writer go on to the end and checks that it stopped, fenced by `term`.
    pub fn wakes_fenced_by(&mut self, term: &str) {
        self.settle();
        assert!(!self.core.is_serving(), "a zombie must never serve");
        let reason = self.failures.first().expect("fenced");
        assert!(
            reason.contains("fenced") && reason.contains(term),
            "{reason}"
        );
    }

    /// Completes every IO, firing timeouts as time passes, until nothing is left to do
    /// within `limit` of simulated time.
    pub fn settle_for(&mut self, limit: Duration) {
        let end = self.now + limit;
        loop {
            while self.complete(|_| true) {}
            match self.core.poll_timeout() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.core.handle_timeout(self.now);
                    self.drain();
                    // `poll_timeout` and `handle_timeout` must agree: a deadline that has
                    // passed and was handled, with nothing else to do, must not come back.
                    assert!(
                        !self.pending.is_empty()
                            || self.core.poll_timeout().is_none_or(|next| next > self.now),
                        "the core's timer spins at {:?} (poll_timeout offers a deadline \
                         handle_timeout does not act on)",
                        self.now
                    );
                }
                _ => break,
            }
        }
    }

    pub fn settle(&mut self) {
        self.settle_for(Duration::from_secs(60));
    }

    pub fn submit(&mut self, request: Request) -> RequestId {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        self.core.handle(
            self.now,
            Input::Request {
                id,
                request,
                auth_revision: None,
            },
        );
        self.drain();
        id
    }

    pub fn put(&mut self, key: &str, value: &str) -> RequestId {
        self.submit(Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        }))
    }

    /// Puts and settles; returns the reply.
    pub fn put_now(&mut self, key: &str, value: &str) -> Result<Response, Error> {
        let id = self.put(key, value);
        self.settle();
        self.replies.remove(&id).expect("answered")
    }

    pub fn demand_checkpoint(&mut self) -> Result<crate::remote::CheckpointInfo, String> {
        self.next_id += 1;
        let id = RequestId(self.next_id);
        self.core.handle(self.now, Input::Checkpoint { id });
        self.drain();
        self.settle();
        self.checkpoints.pop().expect("the demand is answered")
    }

    /// The value of `key` in the store.
    pub fn get(&self, key: &str) -> Option<String> {
        let view = self.store.view();
        view.get(key.as_bytes(), view.revision())
            .expect("reads")
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
        if self.core.poll_timeout().is_some_and(|t| t <= self.now) {
            self.core.handle_timeout(self.now);
            self.drain();
        }
    }
}
