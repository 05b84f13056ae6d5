//! The Maintenance service: Status, Alarm, Hash, HashKV, Snapshot, Defragment, MoveLeader.

use std::pin::Pin;

use futures::Stream;
use t4_core::snapshot::{FILE_DIGEST_LEN, encode_file};
use t4_proto::etcdserverpb::{self as pb, maintenance_server::Maintenance};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;
use crate::header::TERM;
use crate::status::{core_status, node_status};

/// The etcd version t4 reports in `Status` and in the `version` of snapshot messages (where
/// etcd 3.6 reports its storage version; etcd 3.5 leaves it empty): the etcd v3 API level it
/// serves.
/// Clients (etcdctl, Kubernetes) gate features on this number; t4's own version is printed
/// by `t4 --version` and logged at startup.
pub const ETCD_VERSION: &str = "3.5.0";

/// Bytes per snapshot message, like etcd.
const SNAPSHOT_CHUNK: usize = 32 * 1024;

/// etcd's Maintenance service over the node.
#[derive(Clone, Debug)]
pub struct MaintenanceService {
    ctx: Shared,
}

impl MaintenanceService {
    /// The service.
    pub fn new(ctx: Shared) -> MaintenanceService {
        MaintenanceService { ctx }
    }

    /// etcd's check of `Hash`, `HashKV`, `Defragment` and `Snapshot`: root only. etcd 3.4
    /// answers these refusals with its auth store's own errors, code Unknown and an `auth:`
    /// prefix, not with the usual gRPC mapping.
    fn admin<T>(&self, request: &Request<T>) -> Result<(), Status> {
        self.ctx
            .caller(request)
            .and_then(|caller| caller.admin())
            .map_err(|status| {
                let message = status.message();
                let reason = message.strip_prefix("etcdserver: ").unwrap_or(message);
                Status::unknown(format!("auth: {reason}"))
            })
    }

    fn alarms(&self) -> Vec<pb::AlarmMember> {
        self.ctx
            .alarms
            .list()
            .into_iter()
            .map(|(member_id, alarm)| pb::AlarmMember { member_id, alarm })
            .collect()
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<pb::SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    async fn alarm(
        &self,
        request: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        use pb::alarm_request::AlarmAction;
        let req = request.into_inner();
        let ctx = &self.ctx;
        let alarms = match AlarmAction::try_from(req.action) {
            Ok(AlarmAction::Get) => self.alarms(),
            // etcd answers ACTIVATE / DEACTIVATE with the alarm it changed (none if nothing
            // changed).
            Ok(AlarmAction::Activate) => {
                if req.alarm == pb::AlarmType::None as i32 {
                    Vec::new()
                } else {
                    ctx.alarms.raise(req.member_id, req.alarm);
                    vec![pb::AlarmMember {
                        member_id: req.member_id,
                        alarm: req.alarm,
                    }]
                }
            }
            Ok(AlarmAction::Deactivate) => {
                if ctx.alarms.clear(req.member_id, req.alarm) {
                    tracing::info!(
                        member_id = req.member_id,
                        alarm = req.alarm,
                        "alarm disarmed"
                    );
                    vec![pb::AlarmMember {
                        member_id: req.member_id,
                        alarm: req.alarm,
                    }]
                } else {
                    Vec::new()
                }
            }
            Err(_) => return Err(Status::invalid_argument("t4: unknown alarm action")),
        };
        Ok(Response::new(pb::AlarmResponse {
            header: ctx.id.header(ctx.node.current_revision()),
            alarms,
        }))
    }

    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        let ctx = &self.ctx;
        let status = ctx.node.status().await.map_err(node_status)?;
        let mut errors: Vec<String> = self
            .alarms()
            .iter()
            .map(|a| {
                let name = pb::AlarmType::try_from(a.alarm).map_or("UNKNOWN", |t| t.as_str_name());
                format!("memberID:{} alarm:{name} ", a.member_id)
            })
            .collect();
        if let Some(failure) = ctx.node.failure() {
            errors.push(failure);
        }
        let size = i64::try_from(status.db_size_bytes).unwrap_or(i64::MAX);
        Ok(Response::new(pb::StatusResponse {
            header: ctx.id.header(status.revision),
            version: ETCD_VERSION.to_string(),
            db_size: size,
            leader: ctx.id.member_id,
            raft_index: status.applied_index,
            raft_term: TERM,
            raft_applied_index: status.applied_index,
            errors,
            db_size_in_use: size,
            is_learner: false,
            storage_version: ETCD_VERSION.to_string(),
            db_size_quota: i64::try_from(ctx.settings.quota_backend_bytes).unwrap_or(i64::MAX),
            downgrade_info: None,
        }))
    }

    async fn defragment(
        &self,
        request: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        self.admin(&request)?;
        // The store (an LSM tree) reclaims space in the background after compaction; there
        // is nothing to do on request.
        // etcd's answer has no header.
        Ok(Response::new(pb::DefragmentResponse { header: None }))
    }

    async fn hash(
        &self,
        request: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        self.admin(&request)?;
        // etcd hashes its whole backend file; t4 hashes the retained history (HashKV at the
        // current revision), which is what two equal stores have in common.
        let h = self.ctx.node.hash_kv(0).await.map_err(node_status)?;
        Ok(Response::new(pb::HashResponse {
            header: self.ctx.id.header(h.hash_revision),
            hash: h.hash,
        }))
    }

    async fn hash_kv(
        &self,
        request: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        self.admin(&request)?;
        let h = self
            .ctx
            .node
            .hash_kv(request.into_inner().revision)
            .await
            .map_err(node_status)?;
        Ok(Response::new(pb::HashKvResponse {
            header: self.ctx.id.header(self.ctx.node.current_revision()),
            hash: h.hash,
            // etcd's compact revision starts at -1: a store never compacted says so.
            compact_revision: if h.compact_revision > 0 {
                h.compact_revision
            } else {
                -1
            },
            hash_revision: h.hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(
        &self,
        request: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        self.admin(&request)?;
        let ctx = self.ctx.clone();
        let encoder = ctx.node.snapshot().await.map_err(node_status)?;
        let header = ctx.id.header(encoder.revision());
        // Encoded whole first, so that every message can say how many bytes remain. Like etcd,
        // the stream is the snapshot (padded to a multiple of 512 bytes) and then, in a message
        // of its own, the SHA-256 of those bytes: `etcdctl snapshot save` refuses a stream
        // without it.
        let file = tokio::task::spawn_blocking(move || encode_file(encoder.flatten().collect()))
            .await
            .map_err(|e| Status::internal(format!("t4: encoding the snapshot failed: {e}")))?;
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let (body, digest) = file.split_at(file.len() - FILE_DIGEST_LEN);
            // etcd's remaining_bytes counts the snapshot bytes still to come, not the digest:
            // the digest message says 0.
            let mut remaining = body.len();
            let messages = body
                .chunks(SNAPSHOT_CHUNK)
                .map(|chunk| {
                    remaining -= chunk.len();
                    (chunk, remaining)
                })
                .chain(std::iter::once((digest, 0)));
            for (blob, remaining_bytes) in messages {
                let msg = pb::SnapshotResponse {
                    header,
                    remaining_bytes: remaining_bytes as u64,
                    blob: blob.to_vec(),
                    version: ETCD_VERSION.to_string(),
                };
                tokio::select! {
                    sent = tx.send(Ok(msg)) => if sent.is_err() { return },
                    () = ctx.shutting_down() => {
                        let _ = tx.send(Err(core_status(&t4_core::Error::Stopped))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    /// This server is the whole cluster and its leader: a transfer to itself is done at once
    /// (etcd answers it with an empty response), a transfer to any other member id is refused
    /// with etcd's error for a transferee that is not a member.
    async fn move_leader(
        &self,
        request: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        if request.into_inner().target_id != self.ctx.id.member_id {
            return Err(core_status(&t4_core::Error::BadLeaderTransferee));
        }
        Ok(Response::new(pb::MoveLeaderResponse::default()))
    }

    async fn downgrade(
        &self,
        _: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(core_status(&t4_core::Error::Unsupported(
            "Downgrade is not supported: t4 has no etcd cluster versions to downgrade",
        )))
    }
}
