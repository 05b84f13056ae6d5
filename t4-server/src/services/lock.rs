//! The Lock service (`v3lockpb.Lock`): a mutex per name, held by a lease, as etcd's.
//!
//! `Lock` joins the queue of the name with the key `name/<lease in hex>` and answers once
//! every older key of the queue is gone; the key exists as long as the lock is held, and
//! ends with the lease. A `Lock` whose client leaves before it is granted leaves the queue.
//! Without a lease, a lease of 60 s is granted that nobody keeps alive, as in etcd. Errors
//! have gRPC code Unknown, as etcd's ([`recipe::as_client_error`]).

use t4_proto::v3lockpb::{self as pb, lock_server::Lock};
use tonic::{Request, Response, Status};

use super::Shared;
use super::access::Credentials;
use super::concurrency::{self as recipe, LeaveOnDrop};
use crate::status::node_status;

/// etcd's Lock service over the node.
#[derive(Clone, Debug)]
pub struct LockService {
    ctx: Shared,
}

impl LockService {
    /// The service.
    pub fn new(ctx: Shared) -> LockService {
        LockService { ctx }
    }
}

/// etcd's answer when the lock's key vanished while it waited (its lease ended).
const SESSION_EXPIRED: &str = "mutex: session is expired";

impl LockService {
    async fn acquire(&self, req: pb::LockRequest) -> Result<pb::LockResponse, Status> {
        let node = &self.ctx.node;
        self.ctx.check_space()?;
        let lease = recipe::session_lease(node, req.lease).await?;
        let prefix = recipe::prefix(&req.name);
        let key = recipe::holder_key(&prefix, lease);
        let (resp, created) =
            recipe::enqueue(node, &prefix, &key, Default::default(), lease).await?;
        let leave = LeaveOnDrop::new(node, &key, created);
        let owner = recipe::read(&resp, 1).first().map(|kv| kv.create_revision);
        let revision = if owner.is_none_or(|owner| owner == created) {
            resp.revision
        } else {
            recipe::wait_deletes(&self.ctx, &prefix, created - 1).await?;
            let mine = node.range(recipe::get(&key)).await.map_err(node_status)?;
            if mine.kvs.is_empty() {
                leave.disarm();
                return Err(Status::unknown(SESSION_EXPIRED));
            }
            mine.revision
        };
        leave.disarm();
        Ok(pb::LockResponse {
            header: self.ctx.id.header(revision),
            key: key.to_vec(),
        })
    }

    async fn release(&self, req: pb::UnlockRequest) -> Result<pb::UnlockResponse, Status> {
        let delete = t4::DeleteRangeRequest {
            key: req.key.into(),
            ..Default::default()
        };
        let resp = self
            .ctx
            .node
            .delete_range(delete)
            .await
            .map_err(node_status)?;
        Ok(pb::UnlockResponse {
            header: self.ctx.id.header(resp.revision),
        })
    }
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(
        &self,
        request: Request<pb::LockRequest>,
    ) -> Result<Response<pb::LockResponse>, Status> {
        recipe::check_queue(
            &self.ctx,
            &Credentials::of(&request),
            &request.get_ref().name,
            true,
        )?;
        let answer = self.acquire(request.into_inner()).await;
        answer.map(Response::new).map_err(recipe::as_client_error)
    }

    async fn unlock(
        &self,
        request: Request<pb::UnlockRequest>,
    ) -> Result<Response<pb::UnlockResponse>, Status> {
        self.ctx
            .caller(&request)
            .and_then(|caller| caller.write(&request.get_ref().key, &[]))
            .map_err(recipe::as_client_error)?;
        let answer = self.release(request.into_inner()).await;
        answer.map(Response::new).map_err(recipe::as_client_error)
    }
}
