//! The Watch service: one bidirectional stream carries many watches.
//!
//! Each gRPC stream is served by one task that owns its watches: it reads create / cancel /
//! progress requests, polls every watch's next step ([`t4::Watch::advance`]) and writes the
//! responses in one order. A watch that falls behind (slow client, full output) catches up
//! from the store's history on its own — writers never wait for watchers, and no event is
//! skipped: a watch either delivers every revision in order or is cancelled with the
//! compaction that made it impossible.
//!
//! Progress is reported truthfully: a progress response at revision `R` (watch id -1 for a
//! `progress_request`, the watch's id for `progress_notify`) is sent only when every watch it
//! speaks for is synced and has delivered everything up to `R`. Like etcd 3.4, a
//! `progress_request` on a stream whose watches are all synced (or that has no watches) is
//! answered at once with the current revision; a watch whose start revision is still in the
//! future counts as synced. A request that arrives while a watch is catching up (or has not
//! yet stepped over the latest write) is answered as soon as it has — etcd 3.4 would answer
//! at once and could claim a revision whose events it had not sent yet.

use std::collections::HashMap;
use std::pin::Pin;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use futures::{Stream, StreamExt};
use prost::Message;
use t4::{KeyRange, Revision, WatchOptions};
use t4_core::Event;
use t4_proto::etcdserverpb::watch_create_request::FilterType;
use t4_proto::etcdserverpb::watch_request::RequestUnion;
use t4_proto::etcdserverpb::{self as pb, watch_server::Watch};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use super::access::Credentials;
use crate::convert::event_to_pb;
use crate::status::{core_status, node_status};

/// etcd's allowance for gRPC framing on top of `--max-request-bytes`.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// etcd's id for "the server picks the watch id".
const AUTO_WATCH_ID: i64 = 0;
/// etcd's id for responses that speak for no single watch.
const INVALID_WATCH_ID: i64 = -1;

/// etcd's Watch service over the node.
#[derive(Clone, Debug)]
pub struct WatchService {
    ctx: Shared,
}

impl WatchService {
    /// The service.
    pub fn new(ctx: Shared) -> WatchService {
        WatchService { ctx }
    }

    /// Serves one stream of watch requests, from a gRPC stream or from the JSON gateway:
    /// the responses, until the client leaves or the server shuts down. `credentials` are
    /// what the stream was opened with (its token, its connection's certificate), against
    /// which every watch is checked.
    pub fn serve<S>(&self, credentials: Credentials, requests: S) -> WatchStream
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(64);
        let task = StreamTask::new(self.ctx.clone(), credentials, tx);
        tokio::spawn(task.run(requests));
        Box::pin(ReceiverStream::new(rx))
    }
}

type Out = mpsc::Sender<Result<pb::WatchResponse, Status>>;
/// The responses of one watch stream.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let credentials = Credentials::of(&request);
        Ok(Response::new(self.serve(credentials, request.into_inner())))
    }
}

/// One watch of a stream.
struct WatchState {
    /// Tells this watch's step apart from a step of an earlier watch with the same id.
    token: u64,
    /// The requested start revision (0 = from now).
    start_revision: Revision,
    progress_notify: bool,
    fragment: bool,
    /// Every revision before this one has been delivered (or held nothing for the watch).
    next: Revision,
    /// Whether the watch had caught up with the store at its last step.
    synced: bool,
    /// No events since the last progress tick (etcd's `progress[id] = true`).
    quiet: bool,
    /// Dropping it cancels the watch's pending step.
    _cancel: oneshot::Sender<()>,
}

/// The outcome of one step of one watch: the watch comes back with its result, unless it was
/// cancelled meanwhile.
type Step = (
    i64,
    u64,
    Option<(t4::Watch, oneshot::Receiver<()>, t4::Result<Vec<Event>>)>,
);

fn step(
    id: i64,
    token: u64,
    mut watch: t4::Watch,
    mut cancel: oneshot::Receiver<()>,
) -> BoxFuture<'static, Step> {
    Box::pin(async move {
        tokio::select! {
            result = watch.advance() => (id, token, Some((watch, cancel, result))),
            _ = &mut cancel => (id, token, None),
        }
    })
}

/// The stream went away (the client left or the stream must end).
struct Gone;

struct StreamTask {
    ctx: Shared,
    /// What the stream was opened with to say who its caller is.
    credentials: Credentials,
    out: Out,
    watches: HashMap<i64, WatchState>,
    running: FuturesUnordered<BoxFuture<'static, Step>>,
    /// etcd's next automatic id; the first watch of a stream gets 0.
    next_id: i64,
    next_token: u64,
    /// `progress_request`s not answered yet: each gets its own response, as in etcd.
    progress_pending: usize,
    /// The store's revision when the latest pending `progress_request` arrived: the answer
    /// waits until every watch has stepped over it, so it never reports an older revision
    /// than the client could already have read.
    progress_target: Revision,
    /// The highest revision of an event or progress response sent: a progress response
    /// never goes back before it.
    high_water: Revision,
    /// Responses larger than this are fragmented when a watch asked for it.
    max_response_bytes: usize,
}

impl StreamTask {
    fn new(ctx: Shared, credentials: Credentials, out: Out) -> StreamTask {
        let max_response_bytes = ctx.settings.max_request_bytes + GRPC_OVERHEAD_BYTES;
        StreamTask {
            ctx,
            credentials,
            out,
            watches: HashMap::new(),
            running: FuturesUnordered::new(),
            next_id: 0,
            next_token: 0,
            progress_pending: 0,
            progress_target: 0,
            high_water: 0,
            max_response_bytes,
        }
    }

    async fn run<S>(mut self, mut input: S)
    where
        S: Stream<Item = Result<pb::WatchRequest, Status>> + Unpin,
    {
        let ctx = self.ctx.clone();
        let out = self.out.clone();
        let interval = ctx.settings.watch_progress_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Like etcd, a client that half-closes its side keeps receiving events.
        let mut input_open = true;
        loop {
            let result = tokio::select! {
                request = input.next(), if input_open => match request {
                    Some(Ok(request)) => self.handle(request).await,
                    Some(Err(status)) => {
                        let _ = out.send(Err(status)).await;
                        return;
                    }
                    None => {
                        input_open = false;
                        Ok(())
                    }
                },
                Some(step) = self.running.next(), if !self.running.is_empty() => {
                    self.on_step(step).await
                }
                _ = ticker.tick() => self.on_tick().await,
                () = ctx.shutting_down() => {
                    let _ = out.send(Err(core_status(&t4_core::Error::Stopped))).await;
                    return;
                }
                () = out.closed() => return,
            };
            if result.is_err() {
                return;
            }
        }
    }

    fn header(&self, revision: Revision) -> Option<pb::ResponseHeader> {
        self.ctx.id.header(revision)
    }

    fn current(&self) -> Option<pb::ResponseHeader> {
        self.header(self.ctx.node.current_revision())
    }

    async fn send(&mut self, response: pb::WatchResponse) -> Result<(), Gone> {
        self.out.send(Ok(response)).await.map_err(|_| Gone)
    }

    async fn handle(&mut self, request: pb::WatchRequest) -> Result<(), Gone> {
        match request.request_union {
            Some(RequestUnion::CreateRequest(create)) => self.create(create).await,
            Some(RequestUnion::CancelRequest(cancel)) => self.cancel(cancel.watch_id).await,
            Some(RequestUnion::ProgressRequest(_)) => {
                self.progress_pending += 1;
                self.progress_target = self.ctx.node.current_revision();
                self.try_progress().await
            }
            // etcd ignores a request it does not understand and keeps the stream.
            None => Ok(()),
        }
    }

    /// A created-and-cancelled response: the create request was refused.
    async fn refuse(&mut self, reason: &t4_core::Error) -> Result<(), Gone> {
        self.refuse_with(&reason.to_string()).await
    }

    async fn refuse_with(&mut self, reason: &str) -> Result<(), Gone> {
        self.send(pb::WatchResponse {
            header: self.current(),
            watch_id: INVALID_WATCH_ID,
            created: true,
            canceled: true,
            cancel_reason: reason.to_string(),
            ..Default::default()
        })
        .await
    }

    async fn create(&mut self, create: pb::WatchCreateRequest) -> Result<(), Gone> {
        // An empty key is the smallest key, as in etcd.
        let key = if create.key.is_empty() {
            Bytes::from_static(&[0])
        } else {
            Bytes::from(create.key)
        };
        // etcd refuses a watch the caller may not read like any bad watch: created and
        // cancelled at once, with the error as the reason.
        let permitted = self
            .ctx
            .caller_with(&self.credentials)
            .and_then(|caller| caller.read(&key, &create.range_end));
        if let Err(status) = permitted {
            // etcd's reason is the whole gRPC error, as Go prints it.
            let reason = format!(
                "rpc error: code = {:?} desc = {}",
                status.code(),
                status.message()
            );
            return self.refuse_with(&reason).await;
        }
        if create.start_revision < 0 {
            return self.refuse(&t4_core::Error::Compacted).await;
        }
        let range = KeyRange::from_etcd(&key, &Bytes::from(create.range_end));
        if range.is_empty() {
            return self.refuse(&t4_core::Error::EmptyWatcherRange).await;
        }
        let id = if create.watch_id == AUTO_WATCH_ID {
            while self.watches.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id += 1;
            self.next_id - 1
        } else if self.watches.contains_key(&create.watch_id) {
            return self.refuse(&t4_core::Error::WatchIdInUse).await;
        } else {
            create.watch_id
        };
        let filters = |f: FilterType| create.filters.contains(&(f as i32));
        let options = WatchOptions {
            start_revision: create.start_revision,
            prev_kv: create.prev_kv,
            no_put: filters(FilterType::Noput),
            no_delete: filters(FilterType::Nodelete),
        };
        let watch = match self.ctx.node.watch(range, options).await {
            Ok(watch) => watch,
            Err(t4::Error::WatchCompacted {
                compact_revision, ..
            }) => {
                // etcd creates the watch, then cancels it with the compact revision.
                self.send(pb::WatchResponse {
                    header: self.current(),
                    watch_id: id,
                    created: true,
                    ..Default::default()
                })
                .await?;
                return self.compacted(id, compact_revision).await;
            }
            Err(t4::Error::Request(e)) => return self.refuse(&e).await,
            Err(e) => return self.fail(e).await,
        };
        self.send(pb::WatchResponse {
            header: self.current(),
            watch_id: id,
            created: true,
            ..Default::default()
        })
        .await?;
        self.next_token += 1;
        let token = self.next_token;
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.watches.insert(
            id,
            WatchState {
                token,
                start_revision: create.start_revision,
                progress_notify: create.progress_notify,
                fragment: create.fragment,
                next: watch.next_revision(),
                synced: watch.is_synced(),
                quiet: true,
                _cancel: cancel_tx,
            },
        );
        self.running.push(step(id, token, watch, cancel_rx));
        Ok(())
    }

    async fn cancel(&mut self, id: i64) -> Result<(), Gone> {
        // Like etcd, cancelling an unknown watch is answered with nothing.
        if self.watches.remove(&id).is_some() {
            self.send(pb::WatchResponse {
                header: self.current(),
                watch_id: id,
                canceled: true,
                ..Default::default()
            })
            .await?;
            self.try_progress().await?;
        }
        Ok(())
    }

    async fn compacted(&mut self, id: i64, compact_revision: Revision) -> Result<(), Gone> {
        self.watches.remove(&id);
        self.send(pb::WatchResponse {
            // etcd's compaction cancellation carries no revision (its header says 0): it
            // reports what the watch can no longer read, not data read at some revision.
            header: self.header(0),
            watch_id: id,
            canceled: true,
            compact_revision,
            ..Default::default()
        })
        .await?;
        self.try_progress().await
    }

    /// The node failed under the stream: end it with the error.
    async fn fail(&mut self, e: t4::Error) -> Result<(), Gone> {
        let _ = self.out.send(Err(node_status(e))).await;
        Err(Gone)
    }

    async fn on_step(&mut self, (id, token, outcome): Step) -> Result<(), Gone> {
        let Some((watch, cancel, result)) = outcome else {
            return Ok(());
        };
        if self.watches.get(&id).is_none_or(|w| w.token != token) {
            return Ok(()); // cancelled while its step ran
        }
        let events = match result {
            Ok(events) => events,
            Err(t4::Error::WatchCompacted {
                compact_revision, ..
            }) => return self.compacted(id, compact_revision).await,
            Err(t4::Error::Closed) => return self.fail(t4::Error::Closed).await,
            Err(e) => {
                self.watches.remove(&id);
                return self
                    .send(pb::WatchResponse {
                        header: self.current(),
                        watch_id: id,
                        canceled: true,
                        cancel_reason: e.to_string(),
                        ..Default::default()
                    })
                    .await;
            }
        };
        let state = self.watches.get_mut(&id).expect("checked above");
        state.next = watch.next_revision();
        state.synced = watch.is_synced();
        let fragment = state.fragment;
        let through = state.next - 1;
        if let Some(last) = events.last() {
            state.quiet = false;
            self.high_water = self.high_water.max(last.revision());
            let response = pb::WatchResponse {
                header: self.header(through),
                watch_id: id,
                events: events.into_iter().map(event_to_pb).collect(),
                ..Default::default()
            };
            self.send_events(response, fragment).await?;
        }
        self.running.push(step(id, token, watch, cancel));
        self.try_progress().await
    }

    /// Sends an event response, split into fragments when the watch asked for it and the
    /// response is too big (etcd's `sendFragments`).
    async fn send_events(
        &mut self,
        response: pb::WatchResponse,
        fragment: bool,
    ) -> Result<(), Gone> {
        let limit = self.max_response_bytes;
        if !fragment || response.events.len() < 2 || response.encoded_len() < limit {
            return self.send(response).await;
        }
        let mut template = response;
        let events = std::mem::take(&mut template.events);
        let base = template.encoded_len();
        let mut current: Vec<t4_proto::mvccpb::Event> = Vec::new();
        let mut size = base;
        let n = events.len();
        for (i, event) in events.into_iter().enumerate() {
            let len = event.encoded_len();
            let event_size = 1 + prost::length_delimiter_len(len) + len;
            if !current.is_empty() && size + event_size >= limit {
                let part = pb::WatchResponse {
                    events: std::mem::take(&mut current),
                    fragment: true,
                    ..template.clone()
                };
                self.send(part).await?;
                size = base;
            }
            size += event_size;
            current.push(event);
            if i + 1 == n {
                let last = pb::WatchResponse {
                    events: std::mem::take(&mut current),
                    fragment: false,
                    ..template.clone()
                };
                self.send(last).await?;
            }
        }
        Ok(())
    }

    /// Answers the pending `progress_request`s once every watch is synced and has stepped
    /// over the revision the store had when the request arrived: all events up to the
    /// revision sent have then been delivered on this stream.
    async fn try_progress(&mut self) -> Result<(), Gone> {
        if self.progress_pending == 0 {
            return Ok(());
        }
        let current = self.ctx.node.current_revision();
        let mut revision = current;
        for w in self.watches.values() {
            if !w.synced {
                return Ok(());
            }
            // A watch that starts in the future has nothing to deliver up to `current`.
            revision = revision.min(w.next - 1);
        }
        if revision < self.progress_target || revision < self.high_water {
            return Ok(()); // a watch has not stepped over the latest writes yet
        }
        self.high_water = revision;
        while self.progress_pending > 0 {
            self.progress_pending -= 1;
            self.send(pb::WatchResponse {
                header: self.header(revision),
                watch_id: INVALID_WATCH_ID,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }

    /// The `progress_notify` tick: a synced watch that delivered nothing since the last tick
    /// gets a progress response with its own id.
    async fn on_tick(&mut self) -> Result<(), Gone> {
        let mut due = Vec::new();
        for (id, w) in self.watches.iter_mut() {
            let through = w.next - 1;
            if w.progress_notify && w.quiet && w.synced && w.start_revision <= through {
                due.push((*id, through));
            }
            w.quiet = true;
        }
        due.sort_unstable();
        for (id, through) in due {
            self.send(pb::WatchResponse {
                header: self.header(through),
                watch_id: id,
                ..Default::default()
            })
            .await?;
        }
        Ok(())
    }
}
