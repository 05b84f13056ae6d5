//! The Cluster service: this member, and a clear refusal of membership changes.

use t4_proto::etcdserverpb::{self as pb, cluster_server::Cluster};
use tonic::{Request, Response, Status};

use super::Shared;
use crate::status::core_status;

const MEMBERSHIP: t4_core::Error = t4_core::Error::Unsupported(
    "membership changes are not supported yet: this t4 server is a single-member cluster",
);

/// etcd's Cluster service for a single-member cluster.
#[derive(Clone, Debug)]
pub struct ClusterService {
    ctx: Shared,
}

impl ClusterService {
    /// The service.
    pub fn new(ctx: Shared) -> ClusterService {
        ClusterService { ctx }
    }

    /// This member on the wire.
    pub fn member(&self) -> pb::Member {
        pb::Member {
            id: self.ctx.id.member_id,
            name: self.ctx.member.name.clone(),
            peer_ur_ls: self.ctx.member.peer_urls.clone(),
            client_ur_ls: self.ctx.member.client_urls.clone(),
            is_learner: false,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(
        &self,
        _: Request<pb::MemberAddRequest>,
    ) -> Result<Response<pb::MemberAddResponse>, Status> {
        Err(core_status(&MEMBERSHIP))
    }

    async fn member_remove(
        &self,
        _: Request<pb::MemberRemoveRequest>,
    ) -> Result<Response<pb::MemberRemoveResponse>, Status> {
        Err(core_status(&MEMBERSHIP))
    }

    async fn member_update(
        &self,
        _: Request<pb::MemberUpdateRequest>,
    ) -> Result<Response<pb::MemberUpdateResponse>, Status> {
        Err(core_status(&MEMBERSHIP))
    }

    async fn member_list(
        &self,
        _: Request<pb::MemberListRequest>,
    ) -> Result<Response<pb::MemberListResponse>, Status> {
        Ok(Response::new(pb::MemberListResponse {
            header: self.ctx.id.header(self.ctx.node.current_revision()),
            members: vec![self.member()],
        }))
    }

    async fn member_promote(
        &self,
        _: Request<pb::MemberPromoteRequest>,
    ) -> Result<Response<pb::MemberPromoteResponse>, Status> {
        Err(core_status(&MEMBERSHIP))
    }
}
