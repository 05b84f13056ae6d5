//! A session against one server: every call records `(step, outcome)` in a transcript.

use std::collections::VecDeque;
use std::time::Duration;

use t4_proto::etcdserverpb::kv_client::KvClient;
use t4_proto::etcdserverpb::lease_client::LeaseClient;
use t4_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use t4_proto::etcdserverpb::watch_client::WatchClient;
use t4_proto::etcdserverpb::watch_request::RequestUnion;
use t4_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, HashKvRequest, LeaseGrantRequest, LeaseKeepAliveRequest,
    LeaseLeasesRequest, LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest,
    StatusRequest, TxnRequest, WatchCancelRequest, WatchCreateRequest, WatchProgressRequest,
    WatchRequest, WatchResponse,
};
use t4_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::render;

/// How long one request may take before the step is recorded as a timeout.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a watch step waits for the responses it expects.
const WATCH_TIMEOUT: Duration = Duration::from_secs(5);

/// One step of a transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// What was asked.
    pub step: String,
    /// What came back, normalised.
    pub outcome: String,
}

/// The clients of one server and what they have seen.
pub struct Session {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
    channel: Channel,
    /// Everything recorded so far.
    pub transcript: Vec<Entry>,
    /// The distinct HashKV values seen, in order: a hash is recorded as its position here.
    hashes: Vec<u32>,
}

async fn timed<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(render::status(&status)),
        Err(_) => Err(format!("TIMEOUT after {RPC_TIMEOUT:?}")),
    }
}

impl Session {
    /// A session over `channel`.
    pub fn new(channel: Channel) -> Session {
        Session {
            kv: KvClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel.clone()),
            channel,
            transcript: Vec::new(),
            hashes: Vec::new(),
        }
    }

    /// The server's current revision (not recorded; 0 if the server does not answer).
    pub async fn current_revision(&mut self) -> i64 {
        let req = RangeRequest {
            key: b"\0".to_vec(),
            ..Default::default()
        };
        timed(self.kv.range(req))
            .await
            .ok()
            .and_then(|r| r.header)
            .map_or(0, |h| h.revision)
    }

    /// Records a step and its outcome.
    pub fn record(&mut self, step: impl Into<String>, outcome: impl Into<String>) {
        self.transcript.push(Entry {
            step: step.into(),
            outcome: outcome.into(),
        });
    }

    fn record_result<T>(
        &mut self,
        step: String,
        result: Result<T, String>,
        render: impl Fn(&T) -> String,
    ) -> Option<T> {
        match result {
            Ok(resp) => {
                self.record(step, render(&resp));
                Some(resp)
            }
            Err(e) => {
                self.record(step, e);
                None
            }
        }
    }

    /// Range, recorded.
    pub async fn range(
        &mut self,
        req: RangeRequest,
    ) -> Option<t4_proto::etcdserverpb::RangeResponse> {
        let step = render::range_req(&req);
        let result = timed(self.kv.range(req)).await;
        self.record_result(step, result, render::range_resp)
    }

    /// Put, recorded.
    pub async fn put(&mut self, req: PutRequest) -> Option<t4_proto::etcdserverpb::PutResponse> {
        let step = render::put_req(&req);
        let result = timed(self.kv.put(req)).await;
        self.record_result(step, result, render::put_resp)
    }

    /// Delete-range, recorded.
    pub async fn delete(
        &mut self,
        req: DeleteRangeRequest,
    ) -> Option<t4_proto::etcdserverpb::DeleteRangeResponse> {
        let step = render::delete_req(&req);
        let result = timed(self.kv.delete_range(req)).await;
        self.record_result(step, result, render::delete_resp)
    }

    /// Txn, recorded; `label` names txns whose request is too long to show.
    pub async fn txn(
        &mut self,
        label: &str,
        req: TxnRequest,
    ) -> Option<t4_proto::etcdserverpb::TxnResponse> {
        let step = if label.is_empty() {
            render::txn_req(&req)
        } else {
            format!("{label}: {}", render::txn_req(&req))
        };
        let result = timed(self.kv.txn(req)).await;
        self.record_result(step, result, render::txn_resp)
    }

    /// Compaction, recorded.
    pub async fn compact(&mut self, revision: i64, physical: bool) {
        let step = format!(
            "compact {revision}{}",
            if physical { " physical" } else { "" }
        );
        let result = timed(self.kv.compact(CompactionRequest { revision, physical })).await;
        self.record_result(step, result, |r| render::header(&r.header));
    }

    /// Lease grant, recorded. A server-chosen id (when `id` is 0) is recorded only as
    /// "chosen", since servers choose differently; the id is returned for later steps.
    pub async fn lease_grant(&mut self, ttl: i64, id: i64) -> Option<i64> {
        let step = format!("lease grant ttl={ttl} id={id}");
        let result = timed(self.lease.lease_grant(LeaseGrantRequest { ttl, id })).await;
        let resp = self.record_result(step, result, |r| {
            let shown_id = if id == 0 && r.id != 0 {
                "chosen".to_string()
            } else {
                r.id.to_string()
            };
            format!(
                "{} id={shown_id} ttl={} error={:?}",
                render::header(&r.header),
                r.ttl,
                r.error
            )
        })?;
        Some(resp.id)
    }

    /// Lease revoke, recorded.
    pub async fn lease_revoke(&mut self, id: i64, label: &str) {
        let step = format!("lease revoke {label}");
        let result = timed(self.lease.lease_revoke(LeaseRevokeRequest { id })).await;
        self.record_result(step, result, |r| render::header(&r.header));
    }

    /// Lease time-to-live, recorded; the remaining TTL is shown as "about the granted TTL" when
    /// it is within 3 s of it, since it ticks down at different moments on two servers.
    pub async fn lease_time_to_live(&mut self, id: i64, keys: bool, label: &str) {
        let step = format!(
            "lease timetolive {label}{}",
            if keys { " keys" } else { "" }
        );
        let result = timed(
            self.lease
                .lease_time_to_live(LeaseTimeToLiveRequest { id, keys }),
        )
        .await;
        self.record_result(step, result, |r| {
            let ttl = if r.granted_ttl > 0 && r.ttl <= r.granted_ttl && r.ttl > r.granted_ttl - 3 {
                "~granted".to_string()
            } else {
                r.ttl.to_string()
            };
            let mut keys: Vec<String> = r.keys.iter().map(|k| render::bytes(k)).collect();
            keys.sort();
            format!(
                "{} id={} ttl={ttl} granted_ttl={} keys=[{}]",
                render::header(&r.header),
                if r.id == id {
                    label.to_string()
                } else {
                    r.id.to_string()
                },
                r.granted_ttl,
                keys.join(", ")
            )
        });
    }

    /// One keep-alive on a fresh stream, recorded.
    pub async fn lease_keep_alive(&mut self, id: i64, label: &str) {
        let step = format!("lease keepalive {label}");
        let (tx, rx) = mpsc::channel(1);
        tx.send(LeaseKeepAliveRequest { id })
            .await
            .expect("the receiver is alive");
        let mut lease = self.lease.clone();
        let outcome = async {
            let mut stream =
                timed(lease.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)))
                    .await?;
            match tokio::time::timeout(RPC_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(r))) => Ok(format!(
                    "{} id={} ttl={}",
                    render::header(&r.header),
                    if r.id == id {
                        label.to_string()
                    } else {
                        r.id.to_string()
                    },
                    r.ttl
                )),
                Ok(Ok(None)) => Err("stream ended without a response".to_string()),
                Ok(Err(status)) => Err(render::status(&status)),
                Err(_) => Err(format!("TIMEOUT after {RPC_TIMEOUT:?}")),
            }
        }
        .await;
        drop(tx);
        self.record(step, outcome.unwrap_or_else(|e| e));
    }

    /// Lease list, recorded (sorted, with `names` naming known ids).
    pub async fn lease_leases(&mut self, names: &[(i64, &str)]) {
        let result = timed(self.lease.lease_leases(LeaseLeasesRequest {})).await;
        self.record_result("lease list".into(), result, |r| {
            let mut ids: Vec<String> = r
                .leases
                .iter()
                .map(|l| {
                    names
                        .iter()
                        .find(|(id, _)| *id == l.id)
                        .map_or(l.id.to_string(), |(_, n)| n.to_string())
                })
                .collect();
            ids.sort();
            format!("{} [{}]", render::header(&r.header), ids.join(", "))
        });
    }

    /// Maintenance status, recorded: the revision, and whether this member leads.
    pub async fn status(&mut self) {
        let result = timed(self.maintenance.status(StatusRequest {})).await;
        self.record_result("status".into(), result, |r| {
            let member = r.header.as_ref().map_or(0, |h| h.member_id);
            format!(
                "{} leader_is_self={} errors={:?} is_learner={}",
                render::header(&r.header),
                r.leader == member && member != 0,
                r.errors,
                r.is_learner
            )
        });
    }

    /// HashKV. The hash value is engine-specific (etcd hashes its bbolt bucket bytes, which
    /// include sub-revisions t4 does not keep after a compaction), so it is recorded as
    /// "the n-th distinct hash of this transcript": equal histories must hash equal and
    /// different ones differently, at the same steps as in etcd. Everything else is exact.
    pub async fn hash_kv(&mut self, revision: i64) {
        let step = format!("hashkv rev={revision}");
        let result = timed(self.maintenance.hash_kv(HashKvRequest { revision })).await;
        let label = result.as_ref().ok().map(|r| {
            let n = match self.hashes.iter().position(|h| *h == r.hash) {
                Some(i) => i + 1,
                None => {
                    self.hashes.push(r.hash);
                    self.hashes.len()
                }
            };
            format!("#{n}")
        });
        self.record_result(step, result, |r| {
            format!(
                "{} hash={} compact_revision={}",
                render::header(&r.header),
                label.as_deref().unwrap_or("?"),
                r.compact_revision
            )
        });
    }

    /// A watch stream; it opens with its first request (etcd sends the stream's response
    /// headers only with its first message, so opening it before sending would wait forever).
    pub fn watch_stream(&self, name: &str) -> WatchStream {
        let (tx, rx) = mpsc::channel(16);
        WatchStream {
            name: name.to_string(),
            client: WatchClient::new(self.channel.clone()),
            requests: Some(tokio_stream::wrappers::ReceiverStream::new(rx)),
            tx,
            rx: None,
            pending: VecDeque::new(),
        }
    }
}

/// A watch stream; what it receives is recorded in the session.
pub struct WatchStream {
    name: String,
    client: WatchClient<Channel>,
    /// The request side, until the stream is opened.
    requests: Option<tokio_stream::wrappers::ReceiverStream<WatchRequest>>,
    tx: mpsc::Sender<WatchRequest>,
    rx: Option<Streaming<WatchResponse>>,
    /// Events received but not yet recorded, with their watch ids.
    pending: VecDeque<(i64, Event)>,
}

impl WatchStream {
    async fn send(&mut self, req: RequestUnion) -> Result<(), String> {
        self.tx
            .send(WatchRequest {
                request_union: Some(req),
            })
            .await
            .map_err(|_| "the watch stream is closed".to_string())?;
        if let Some(requests) = self.requests.take() {
            self.rx = Some(timed(self.client.watch(requests)).await?);
        }
        Ok(())
    }

    /// The next response, or an error string.
    async fn next(&mut self) -> Result<WatchResponse, String> {
        let Some(rx) = self.rx.as_mut() else {
            return Err("the watch stream is not open".into());
        };
        match tokio::time::timeout(WATCH_TIMEOUT, rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err("the server closed the watch stream".into()),
            Ok(Err(status)) => Err(render::status(&status)),
            Err(_) => Err(format!("no response within {WATCH_TIMEOUT:?}")),
        }
    }

    /// The next response that is not only events (events go to `pending`).
    async fn next_control(&mut self) -> Result<WatchResponse, String> {
        loop {
            let mut r = self.next().await?;
            let events = std::mem::take(&mut r.events);
            let is_events_only =
                !events.is_empty() && !r.created && !r.canceled && r.compact_revision == 0;
            self.pending
                .extend(events.into_iter().map(|e| (r.watch_id, e)));
            if !is_events_only {
                return Ok(r);
            }
        }
    }

    /// Creates a watch and records the server's answer (`created`, and the cancellation that
    /// follows at once for a compacted start revision).
    pub async fn create(&mut self, s: &mut Session, req: WatchCreateRequest) -> Option<i64> {
        let step = format!("[{}] {}", self.name, render::watch_create(&req));
        let outcome = async {
            self.send(RequestUnion::CreateRequest(req)).await?;
            self.next_control().await
        }
        .await;
        match outcome {
            Ok(r) => {
                s.record(step, render::watch_resp(&r));
                Some(r.watch_id)
            }
            Err(e) => {
                s.record(step, e);
                None
            }
        }
    }

    /// Records the next control response (e.g. the cancellation of a compacted watch).
    pub async fn expect_control(&mut self, s: &mut Session, what: &str) {
        let step = format!("[{}] await {what}", self.name);
        match self.next_control().await {
            Ok(r) => s.record(step, render::watch_resp(&r)),
            Err(e) => s.record(step, e),
        }
    }

    /// Waits for `n` events (over all watches of the stream) and records them, one step each.
    pub async fn expect_events(&mut self, s: &mut Session, n: usize, what: &str) {
        while self.pending.len() < n {
            match self.next().await {
                Ok(r) => {
                    let extra = !r.events.is_empty() && (r.created || r.canceled);
                    let mut r = r;
                    let events = std::mem::take(&mut r.events);
                    if events.is_empty() || extra {
                        s.record(
                            format!("[{}] awaiting {what}", self.name),
                            format!("unexpected response {}", render::watch_resp(&r)),
                        );
                    }
                    self.pending
                        .extend(events.into_iter().map(|e| (r.watch_id, e)));
                }
                Err(e) => {
                    s.record(
                        format!("[{}] awaiting {what}", self.name),
                        format!("{e} after {} of {n} events", self.pending.len()),
                    );
                    break;
                }
            }
        }
        // The order of events of one revision across different watches is not defined (etcd
        // notifies watchers in map order); each watch's own events keep their order.
        let mut batch: Vec<(i64, Event)> =
            self.pending.drain(..n.min(self.pending.len())).collect();
        batch.sort_by_key(|(id, _)| *id);
        for i in 0..n {
            let step = format!("[{}] {what} event {}/{n}", self.name, i + 1);
            match batch.get(i) {
                Some((id, e)) => s.record(step, format!("watch_id={id} {}", render::event(e))),
                None => s.record(step, "missing"),
            }
        }
    }

    /// Checks that no event is waiting (after a step that must not produce any), by asking for
    /// progress: the progress response comes after any event already sent.
    pub async fn expect_quiet(&mut self, s: &mut Session, what: &str) {
        let step = format!("[{}] {what}: progress request", self.name);
        let outcome = async {
            self.send(RequestUnion::ProgressRequest(WatchProgressRequest {}))
                .await?;
            self.next_control().await
        }
        .await;
        match outcome {
            Ok(r) => s.record(step, render::watch_resp(&r)),
            Err(e) => s.record(step, e),
        }
        let stray: Vec<String> = self
            .pending
            .drain(..)
            .map(|(id, e)| format!("watch_id={id} {}", render::event(&e)))
            .collect();
        s.record(
            format!("[{}] {what}: no events", self.name),
            format!("[{}]", stray.join("; ")),
        );
    }

    /// Cancels a watch and records the answer.
    pub async fn cancel(&mut self, s: &mut Session, watch_id: i64) {
        let step = format!("[{}] cancel watch {watch_id}", self.name);
        let outcome = async {
            self.send(RequestUnion::CancelRequest(WatchCancelRequest { watch_id }))
                .await?;
            self.next_control().await
        }
        .await;
        match outcome {
            Ok(r) => s.record(step, render::watch_resp(&r)),
            Err(e) => s.record(step, e),
        }
    }
}
