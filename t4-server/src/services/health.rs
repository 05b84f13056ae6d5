//! The standard gRPC health service (`grpc.health.v1.Health`), telling the truth: a node that
//! stopped accepting writes (a failed disk) or is shutting down is NOT_SERVING.

use std::pin::Pin;

use futures::Stream;
use t4_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_server::Health,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::Shared;

/// The services a health check may name ("" is the whole server).
const SERVICES: &[&str] = &[
    "",
    "etcdserverpb.KV",
    "etcdserverpb.Watch",
    "etcdserverpb.Lease",
    "etcdserverpb.Cluster",
    "etcdserverpb.Maintenance",
    "etcdserverpb.Auth",
];

/// gRPC health over the node's state.
#[derive(Clone, Debug)]
pub struct HealthService {
    ctx: Shared,
}

impl HealthService {
    /// The service.
    pub fn new(ctx: Shared) -> HealthService {
        HealthService { ctx }
    }

    fn status(&self) -> ServingStatus {
        if self.ctx.not_serving().is_some() {
            ServingStatus::NotServing
        } else {
            ServingStatus::Serving
        }
    }
}

fn known(service: &str) -> Result<(), Status> {
    if SERVICES.contains(&service) {
        Ok(())
    } else {
        Err(Status::not_found(format!("unknown service {service:?}")))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<HealthCheckResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Health for HealthService {
    async fn check(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        known(&request.into_inner().service)?;
        Ok(Response::new(HealthCheckResponse {
            status: self.status() as i32,
        }))
    }

    type WatchStream = WatchStream;

    async fn watch(
        &self,
        request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        known(&request.into_inner().service)?;
        let (tx, rx) = mpsc::channel(2);
        let me = self.clone();
        tokio::spawn(async move {
            let now = HealthCheckResponse {
                status: me.status() as i32,
            };
            if tx.send(Ok(now)).await.is_err() {
                return;
            }
            tokio::select! {
                () = me.ctx.shutting_down() => {
                    let _ = tx.send(Ok(HealthCheckResponse {
                        status: ServingStatus::NotServing as i32,
                    })).await;
                }
                () = tx.closed() => {}
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
