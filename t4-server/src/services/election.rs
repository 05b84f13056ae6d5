//! The Election service (`v3electionpb.Election`): leader election by name, as etcd's.
//!
//! A candidate is the key `name/<lease in hex>`, holding its value; the oldest candidate
//! leads. `Campaign` answers once the caller leads; `Proclaim` changes the leader's value
//! while it still leads (its key still has the create revision of its `LeaderKey`); `Resign`
//! deletes it on the same condition; `Leader` reads the oldest candidate; `Observe` streams
//! each leader in turn and each value it proclaims. A `Campaign` whose client leaves before
//! it leads withdraws its candidacy.

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use t4::{EventKind, KeyRange, KeyValue, Revision, TxnRequest, WatchOptions};
use t4_proto::v3electionpb::{self as pb, election_server::Election};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use super::access::Credentials;
use super::concurrency::{self as recipe, LeaveOnDrop};
use crate::convert::kv_to_pb;
use crate::status::{core_status, node_status};

/// etcd's errors, which it answers with gRPC code Unknown.
const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";
const MISSING_LEADER_KEY: &str = r#""leader" field must be provided"#;

/// etcd's Election service over the node.
#[derive(Clone, Debug)]
pub struct ElectionService {
    ctx: Shared,
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<pb::LeaderResponse, Status>> + Send>>;

/// Sends each leader of the queue `prefix` in turn, and each value it proclaims, until the
/// client leaves or the server shuts down (etcd's `Election.Observe`).
async fn observe(
    ctx: Shared,
    prefix: Bytes,
    out: mpsc::Sender<Result<pb::LeaderResponse, Status>>,
) {
    let send = |kv: KeyValue, revision: Revision| {
        let out = out.clone();
        let header = ctx.id.header(revision);
        async move {
            let response = pb::LeaderResponse {
                header,
                kv: Some(kv_to_pb(kv)),
            };
            out.send(Ok(response)).await.is_ok()
        }
    };
    let leaders = async {
        loop {
            let first = ctx.node.range(recipe::first_created(&prefix)).await?;
            // The leader, and the revision to follow it from.
            let (leader, from) = match first.kvs.into_iter().next() {
                Some(kv) => (kv, first.revision),
                None => {
                    // No candidate yet: the first one put leads.
                    let options = WatchOptions {
                        start_revision: first.revision + 1,
                        no_delete: true,
                        ..WatchOptions::default()
                    };
                    let mut watch = ctx
                        .node
                        .watch(KeyRange::prefix(prefix.clone()), options)
                        .await?;
                    let event = watch.next_batch().await?.swap_remove(0);
                    let revision = event.kv.mod_revision;
                    (event.kv, revision)
                }
            };
            let key = leader.key.clone();
            if !send(leader, from).await {
                return Ok(());
            }
            let options = WatchOptions {
                start_revision: from + 1,
                ..WatchOptions::default()
            };
            let mut watch = ctx.node.watch(KeyRange::Single(key), options).await?;
            'leading: loop {
                for event in watch.next_batch().await? {
                    if event.kind == EventKind::Delete {
                        break 'leading;
                    }
                    let revision = event.kv.mod_revision;
                    if !send(event.kv, revision).await {
                        return Ok(());
                    }
                }
            }
        }
    };
    let ended: t4::Result<()> = tokio::select! {
        ended = leaders => ended,
        () = ctx.shutting_down() => Err(t4::Error::Closed),
        () = out.closed() => Ok(()),
    };
    match ended {
        Err(t4::Error::Closed) => {
            let _ = out.send(Err(core_status(&t4_core::Error::Stopped))).await;
        }
        Err(e) => {
            let _ = out.send(Err(node_status(e))).await;
        }
        Ok(()) => {}
    }
}

impl ElectionService {
    /// The service.
    pub fn new(ctx: Shared) -> ElectionService {
        ElectionService { ctx }
    }

    /// Sets the value of the leader `leader` if it still leads: the txn's revision.
    async fn proclaim_as(&self, leader: &pb::LeaderKey, value: Bytes) -> Result<Revision, Status> {
        let key = Bytes::from(leader.key.clone());
        let txn = TxnRequest {
            compare: vec![recipe::created_at(&key, leader.rev)],
            success: vec![recipe::put(&key, value, leader.lease)],
            failure: Vec::new(),
        };
        let resp = self.ctx.node.txn(txn).await.map_err(node_status)?;
        if !resp.succeeded {
            return Err(Status::unknown(NOT_LEADER));
        }
        Ok(resp.revision)
    }

    async fn run_campaign(&self, req: pb::CampaignRequest) -> Result<pb::CampaignResponse, Status> {
        let node = &self.ctx.node;
        self.ctx.check_space()?;
        let lease = recipe::session_lease(node, req.lease).await?;
        let prefix = recipe::prefix(&req.name);
        let key = recipe::holder_key(&prefix, lease);
        let value = Bytes::from(req.value);
        let (resp, created) = recipe::enqueue(node, &prefix, &key, value.clone(), lease).await?;
        let leave = LeaveOnDrop::new(node, &key, created);
        let leader = pb::LeaderKey {
            name: req.name,
            key: key.to_vec(),
            rev: created,
            lease,
        };
        // Already a candidate: campaigning again sets the value.
        if !resp.succeeded
            && recipe::read(&resp, 0)
                .first()
                .is_some_and(|kv| kv.value != value)
        {
            self.proclaim_as(&leader, value).await?;
        }
        recipe::wait_deletes(&self.ctx, &prefix, created - 1).await?;
        leave.disarm();
        Ok(pb::CampaignResponse {
            header: self.ctx.id.header(resp.revision),
            leader: Some(leader),
        })
    }

    async fn run_proclaim(&self, req: pb::ProclaimRequest) -> Result<pb::ProclaimResponse, Status> {
        let leader = req
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        self.ctx.check_space()?;
        let revision = self.proclaim_as(&leader, req.value.into()).await?;
        Ok(pb::ProclaimResponse {
            header: self.ctx.id.header(revision),
        })
    }

    async fn run_leader(&self, req: pb::LeaderRequest) -> Result<pb::LeaderResponse, Status> {
        let prefix = recipe::prefix(&req.name);
        let first = self
            .ctx
            .node
            .range(recipe::first_created(&prefix))
            .await
            .map_err(node_status)?;
        let kv = first
            .kvs
            .into_iter()
            .next()
            .ok_or_else(|| Status::unknown(NO_LEADER))?;
        Ok(pb::LeaderResponse {
            header: self.ctx.id.header(first.revision),
            kv: Some(kv_to_pb(kv)),
        })
    }

    async fn run_resign(&self, req: pb::ResignRequest) -> Result<pb::ResignResponse, Status> {
        let leader = req
            .leader
            .ok_or_else(|| Status::unknown(MISSING_LEADER_KEY))?;
        let key = Bytes::from(leader.key);
        let txn = TxnRequest {
            compare: vec![recipe::created_at(&key, leader.rev)],
            success: vec![recipe::delete(&key)],
            failure: Vec::new(),
        };
        let resp = self.ctx.node.txn(txn).await.map_err(node_status)?;
        Ok(pb::ResignResponse {
            header: self.ctx.id.header(resp.revision),
        })
    }
}

/// Answers as etcd's Election service does: every error with gRPC code Unknown.
impl ElectionService {
    /// [`recipe::check_queue`] for a call naming a leader key: writes to its election.
    fn check_leader(
        &self,
        credentials: &Credentials,
        leader: Option<&pb::LeaderKey>,
    ) -> Result<(), Status> {
        let name = leader.map(|l| l.name.as_slice()).unwrap_or_default();
        recipe::check_queue(&self.ctx, credentials, name, true)
    }
}

fn answer<T>(result: Result<T, Status>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(recipe::as_client_error)
}

#[tonic::async_trait]
impl Election for ElectionService {
    async fn campaign(
        &self,
        request: Request<pb::CampaignRequest>,
    ) -> Result<Response<pb::CampaignResponse>, Status> {
        let name = &request.get_ref().name;
        recipe::check_queue(&self.ctx, &Credentials::of(&request), name, true)?;
        answer(self.run_campaign(request.into_inner()).await)
    }

    async fn proclaim(
        &self,
        request: Request<pb::ProclaimRequest>,
    ) -> Result<Response<pb::ProclaimResponse>, Status> {
        let leader = request.get_ref().leader.as_ref();
        self.check_leader(&Credentials::of(&request), leader)?;
        answer(self.run_proclaim(request.into_inner()).await)
    }

    async fn leader(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<pb::LeaderResponse>, Status> {
        let name = &request.get_ref().name;
        recipe::check_queue(&self.ctx, &Credentials::of(&request), name, false)?;
        answer(self.run_leader(request.into_inner()).await)
    }

    type ObserveStream = ObserveStream;

    async fn observe(
        &self,
        request: Request<pb::LeaderRequest>,
    ) -> Result<Response<Self::ObserveStream>, Status> {
        let name = &request.get_ref().name;
        recipe::check_queue(&self.ctx, &Credentials::of(&request), name, false)?;
        let prefix = recipe::prefix(&request.into_inner().name);
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(observe(self.ctx.clone(), prefix, tx));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn resign(
        &self,
        request: Request<pb::ResignRequest>,
    ) -> Result<Response<pb::ResignResponse>, Status> {
        let leader = request.get_ref().leader.as_ref();
        self.check_leader(&Credentials::of(&request), leader)?;
        answer(self.run_resign(request.into_inner()).await)
    }
}
