//! The KV service: Range, Put, DeleteRange, Txn, Compact.

use prost::Message;
use t4_proto::etcdserverpb::{self as pb, kv_server::Kv};
use tonic::{Request, Response, Status};

use super::Shared;
use super::access::Caller;
use crate::convert;
use crate::status::node_status;

/// etcd's KV service over the node.
#[derive(Clone, Debug)]
pub struct KvService {
    ctx: Shared,
}

impl KvService {
    /// The service.
    pub fn new(ctx: Shared) -> KvService {
        KvService { ctx }
    }
}

/// Whether a txn can add data (a put in any branch, at any depth): refused under NOSPACE.
fn txn_puts(t: &pb::TxnRequest) -> bool {
    use pb::request_op::Request;
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Request::RequestPut(_)) => true,
            Some(Request::RequestTxn(t)) => txn_puts(t),
            _ => false,
        })
}

/// etcd's permission checks of a txn: reads of every compare's range, and what each
/// operation of both branches does (nested txns included, which etcd 3.4 skips).
fn check_txn(caller: &Caller, t: &pb::TxnRequest) -> Result<(), Status> {
    use pb::request_op::Request;
    for c in &t.compare {
        caller.read(&c.key, &c.range_end)?;
    }
    for op in t.success.iter().chain(&t.failure) {
        match &op.request {
            Some(Request::RequestRange(r)) => caller.read(&r.key, &r.range_end)?,
            Some(Request::RequestPut(p)) => caller.write(&p.key, &[])?,
            Some(Request::RequestDeleteRange(d)) => {
                if d.prev_kv {
                    caller.read(&d.key, &d.range_end)?;
                }
                caller.write(&d.key, &d.range_end)?;
            }
            Some(Request::RequestTxn(t)) => check_txn(caller, t)?,
            None => {}
        }
    }
    Ok(())
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        // `serializable` needs nothing more on a single node: every read is served from the
        // local store at one consistent revision, which is also the linearizable answer.
        let caller = self.ctx.caller(&request)?;
        let req = request.into_inner();
        caller.read(&req.key, &req.range_end)?;
        let req = convert::range_from_pb(req)?;
        let resp = self.ctx.node.range(req).await.map_err(node_status)?;
        Ok(Response::new(convert::range_to_pb(&self.ctx.id, resp)))
    }

    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let req = request.into_inner();
        self.ctx.check_size(req.encoded_len())?;
        caller.write(&req.key, &[])?;
        caller.lease_keys_writable(&self.ctx, req.lease).await?;
        if req.prev_kv {
            caller.read(&req.key, &[])?;
        }
        self.ctx.check_space()?;
        let resp = caller
            .writes(&self.ctx.node)
            .put_with(convert::put_from_pb(req))
            .await
            .map_err(node_status)?;
        Ok(Response::new(convert::put_to_pb(&self.ctx.id, resp)))
    }

    async fn delete_range(
        &self,
        request: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let req = request.into_inner();
        self.ctx.check_size(req.encoded_len())?;
        caller.write(&req.key, &req.range_end)?;
        if req.prev_kv {
            caller.read(&req.key, &req.range_end)?;
        }
        let resp = caller
            .writes(&self.ctx.node)
            .delete_range(convert::delete_from_pb(req))
            .await
            .map_err(node_status)?;
        Ok(Response::new(convert::delete_to_pb(&self.ctx.id, resp)))
    }

    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let caller = self.ctx.caller(&request)?;
        let req = request.into_inner();
        self.ctx.check_size(req.encoded_len())?;
        check_txn(&caller, &req)?;
        if txn_puts(&req) {
            self.ctx.check_space()?;
        }
        let resp = caller
            .writes(&self.ctx.node)
            .txn(convert::txn_from_pb(req)?)
            .await
            .map_err(node_status)?;
        Ok(Response::new(convert::txn_to_pb(&self.ctx.id, resp)))
    }

    async fn compact(
        &self,
        request: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        // etcd 3.4 checks no permission for a compaction, only a token if one is sent.
        self.ctx.caller(&request)?;
        let req = request.into_inner();
        // With `physical`, the node answers only once the old versions are gone.
        let resp = self
            .ctx
            .node
            .compact(req.revision, req.physical)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::CompactionResponse {
            header: self.ctx.id.header(resp.revision),
        }))
    }
}
