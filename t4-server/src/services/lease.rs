//! The Lease service: Grant, Revoke, KeepAlive (a stream), TimeToLive, Leases.
//!
//! Expiry is the node's business (keys are deleted in one revision when a lease expires);
//! this service only maps messages. Keepalives are not writes.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use t4_proto::etcdserverpb::{self as pb, lease_server::Lease};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::status::{core_status, node_status};

/// etcd's Lease service over the node.
#[derive(Clone, Debug)]
pub struct LeaseService {
    ctx: Shared,
}

impl LeaseService {
    /// The service.
    pub fn new(ctx: Shared) -> LeaseService {
        LeaseService { ctx }
    }

    /// Answers one stream of keepalives, from a gRPC stream or from the JSON gateway.
    pub fn keep_alive<S>(&self, requests: S) -> KeepAliveStream
    where
        S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Send + Unpin + 'static,
    {
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(keep_alive_loop(self.ctx.clone(), requests, tx));
        Box::pin(ReceiverStream::new(rx))
    }
}

/// The responses of one keepalive stream.
pub type KeepAliveStream =
    Pin<Box<dyn Stream<Item = Result<pb::LeaseKeepAliveResponse, Status>> + Send>>;

/// Answers the keepalives of one stream, in order, until the client ends it, an error
/// ends it, or the server shuts down.
async fn keep_alive_loop<S>(
    ctx: Shared,
    mut requests: S,
    out: mpsc::Sender<Result<pb::LeaseKeepAliveResponse, Status>>,
) where
    S: Stream<Item = Result<pb::LeaseKeepAliveRequest, Status>> + Unpin,
{
    loop {
        let next = tokio::select! {
            next = requests.next() => next,
            () = ctx.shutting_down() => {
                let _ = out.send(Err(core_status(&t4_core::Error::Stopped))).await;
                return;
            }
            () = out.closed() => return,
        };
        let reply = match next {
            None => return,
            Some(Err(status)) => Err(status),
            // An unknown lease answers TTL 0 for this request only and the stream stays up,
            // as etcd's `leaseKeepAlive` does (it maps ErrLeaseNotFound to TTL 0). Like
            // etcd, the header is taken before the renewal, so it never shows a revision
            // after the keepalive (a lease revoked later cannot look renewed after it).
            Some(Ok(req)) => {
                let header = ctx.id.header(ctx.node.current_revision());
                match ctx.node.lease_keep_alive(req.id).await {
                    Ok(ttl) => Ok(pb::LeaseKeepAliveResponse {
                        header,
                        id: req.id,
                        ttl,
                    }),
                    Err(e) => Err(node_status(e)),
                }
            }
        };
        let failed = reply.is_err();
        if out.send(reply).await.is_err() || failed {
            return;
        }
    }
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(
        &self,
        request: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        // etcd checks no permission to grant, only a token if one is sent.
        self.ctx.caller(&request)?;
        let req = request.into_inner();
        self.ctx.check_space()?;
        let resp = self
            .ctx
            .node
            .lease_grant(req.ttl, req.id)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::LeaseGrantResponse {
            header: self.ctx.id.header(resp.revision),
            id: resp.id,
            ttl: resp.ttl,
            error: String::new(),
        }))
    }

    async fn lease_revoke(
        &self,
        request: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let id = request.into_inner().id;
        // Revoking deletes the lease's keys: the caller must be able to write each.
        caller.lease_keys_writable(&self.ctx, id).await?;
        let revision = caller
            .writes(&self.ctx.node)
            .lease_revoke(id)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::LeaseRevokeResponse {
            header: self.ctx.id.header(revision),
        }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        Ok(Response::new(self.keep_alive(request.into_inner())))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let req = request.into_inner();
        let resp = self
            .ctx
            .node
            .lease_time_to_live(req.id, req.keys)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::LeaseTimeToLiveResponse {
            header: self.ctx.id.header(resp.revision),
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys.into_iter().map(Vec::from).collect(),
        }))
    }

    async fn lease_leases(
        &self,
        _request: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        let resp = self.ctx.node.lease_leases().await.map_err(node_status)?;
        Ok(Response::new(pb::LeaseLeasesResponse {
            header: self.ctx.id.header(resp.revision),
            leases: resp
                .leases
                .into_iter()
                .map(|id| pb::LeaseStatus { id })
                .collect(),
        }))
    }
}
