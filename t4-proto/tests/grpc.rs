//! The generated tonic servers and clients talk to each other over a real
//! loopback connection, and every service is registered under etcd's name.

use std::pin::Pin;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::server::NamedService;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status, Streaming};

use t4_proto::etcdserverpb::{
    self as pb, auth_client::AuthClient, auth_server::AuthServer, cluster_client::ClusterClient,
    cluster_server::ClusterServer, kv_client::KvClient, kv_server::Kv, kv_server::KvServer,
    lease_client::LeaseClient, lease_server::LeaseServer, maintenance_client::MaintenanceClient,
    maintenance_server::Maintenance, maintenance_server::MaintenanceServer,
    watch_client::WatchClient, watch_server::Watch, watch_server::WatchServer,
};
use t4_proto::health::v1::{
    HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus,
    health_client::HealthClient, health_server::Health, health_server::HealthServer,
};
use t4_proto::mvccpb::{Event, KeyValue, event::EventType};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision,
        raft_term: 3,
    })
}

/// A KV that answers a Range with the requested key and rejects everything else.
struct EchoKv;

#[tonic::async_trait]
impl Kv for EchoKv {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let req = request.into_inner();
        let kv = KeyValue {
            key: req.key.into(),
            value: b"v".to_vec().into(),
            mod_revision: 7,
            ..Default::default()
        };
        Ok(Response::new(pb::RangeResponse {
            header: header(7),
            kvs: vec![kv],
            more: false,
            count: 1,
        }))
    }
    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        Err(Status::unimplemented("put"))
    }
    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("delete_range"))
    }
    async fn txn(
        &self,
        request: Request<pb::TxnRequest>,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let ops = request.into_inner().success.len();
        let responses = (0..ops)
            .map(|_| pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponsePut(
                    pb::PutResponse::default(),
                )),
            })
            .collect();
        Ok(Response::new(pb::TxnResponse {
            header: header(8),
            succeeded: true,
            responses,
        }))
    }
    async fn compact(
        &self,
        _: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(Status::unimplemented("compact"))
    }
}

/// A Watch that acknowledges each create and sends one event for its key.
struct EchoWatch;

#[tonic::async_trait]
impl Watch for EchoWatch {
    type WatchStream = BoxStream<pb::WatchResponse>;

    async fn watch(
        &self,
        request: Request<Streaming<pb::WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut next_id = 1;
            while let Some(Ok(msg)) = inbound.next().await {
                let out = match msg.request_union {
                    Some(pb::watch_request::RequestUnion::CreateRequest(create)) => {
                        let id = next_id;
                        next_id += 1;
                        let created = pb::WatchResponse {
                            header: header(1),
                            watch_id: id,
                            created: true,
                            ..Default::default()
                        };
                        let event = Event {
                            r#type: EventType::Put as i32,
                            kv: Some(KeyValue {
                                key: create.key.into(),
                                ..Default::default()
                            }),
                            prev_kv: None,
                        };
                        let events = pb::WatchResponse {
                            header: header(2),
                            watch_id: id,
                            events: vec![event],
                            ..Default::default()
                        };
                        vec![created, events]
                    }
                    Some(pb::watch_request::RequestUnion::CancelRequest(cancel)) => {
                        vec![pb::WatchResponse {
                            header: header(2),
                            watch_id: cancel.watch_id,
                            canceled: true,
                            cancel_reason: "client asked".into(),
                            ..Default::default()
                        }]
                    }
                    Some(pb::watch_request::RequestUnion::ProgressRequest(_)) | None => {
                        vec![pb::WatchResponse {
                            header: header(2),
                            watch_id: -1,
                            ..Default::default()
                        }]
                    }
                };
                for resp in out {
                    if tx.send(Ok(resp)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// Maintenance with a working Status and a three-chunk Snapshot.
struct FakeMaintenance;

#[tonic::async_trait]
impl Maintenance for FakeMaintenance {
    type SnapshotStream = BoxStream<pb::SnapshotResponse>;

    async fn alarm(
        &self,
        _: Request<pb::AlarmRequest>,
    ) -> Result<Response<pb::AlarmResponse>, Status> {
        Err(Status::unimplemented("alarm"))
    }
    async fn status(
        &self,
        _: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::StatusResponse>, Status> {
        Ok(Response::new(pb::StatusResponse {
            header: header(5),
            version: "3.6.0".into(),
            db_size_quota: 1 << 30,
            downgrade_info: Some(pb::DowngradeInfo::default()),
            ..Default::default()
        }))
    }
    async fn defragment(
        &self,
        _: Request<pb::DefragmentRequest>,
    ) -> Result<Response<pb::DefragmentResponse>, Status> {
        Err(Status::unimplemented("defragment"))
    }
    async fn hash(
        &self,
        _: Request<pb::HashRequest>,
    ) -> Result<Response<pb::HashResponse>, Status> {
        Err(Status::unimplemented("hash"))
    }
    async fn hash_kv(
        &self,
        _: Request<pb::HashKvRequest>,
    ) -> Result<Response<pb::HashKvResponse>, Status> {
        Err(Status::unimplemented("hash_kv"))
    }
    async fn snapshot(
        &self,
        _: Request<pb::SnapshotRequest>,
    ) -> Result<Response<Self::SnapshotStream>, Status> {
        let chunks = (0..3u64).map(|i| {
            Ok(pb::SnapshotResponse {
                header: if i == 0 { header(5) } else { None },
                remaining_bytes: 2 - i,
                blob: vec![i as u8],
                version: if i == 0 {
                    "3.6.0".into()
                } else {
                    String::new()
                },
            })
        });
        Ok(Response::new(Box::pin(tokio_stream::iter(
            chunks.collect::<Vec<_>>(),
        ))))
    }
    async fn move_leader(
        &self,
        _: Request<pb::MoveLeaderRequest>,
    ) -> Result<Response<pb::MoveLeaderResponse>, Status> {
        Err(Status::unimplemented("move_leader"))
    }
    async fn downgrade(
        &self,
        _: Request<pb::DowngradeRequest>,
    ) -> Result<Response<pb::DowngradeResponse>, Status> {
        Err(Status::unimplemented("downgrade"))
    }
}

struct AlwaysServing;

#[tonic::async_trait]
impl Health for AlwaysServing {
    type WatchStream = BoxStream<HealthCheckResponse>;

    async fn check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }
    async fn watch(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let first = HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![Ok(first)]))))
    }
}

/// Starts a server on a free loopback port; returns a channel to it and a
/// trigger that shuts it down.
async fn start() -> (Channel, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        Server::builder()
            .add_service(KvServer::new(EchoKv))
            .add_service(WatchServer::new(EchoWatch))
            .add_service(MaintenanceServer::new(FakeMaintenance))
            .add_service(HealthServer::new(AlwaysServing))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            })
            .await
            .expect("serve");
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    (channel, stop_tx, server)
}

#[tokio::test]
async fn generated_client_and_server_interoperate() {
    let (channel, stop, server) = start().await;

    // Unary KV.
    let mut kv = KvClient::new(channel.clone());
    let resp = kv
        .range(pb::RangeRequest {
            key: b"hello".to_vec(),
            ..Default::default()
        })
        .await
        .expect("range")
        .into_inner();
    assert_eq!(resp.kvs.len(), 1);
    assert_eq!(resp.kvs[0].key, &b"hello"[..]);
    assert_eq!(resp.header.expect("header").revision, 7);

    let txn = pb::TxnRequest {
        compare: vec![],
        success: vec![pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(
                pb::PutRequest::default(),
            )),
        }],
        failure: vec![],
    };
    let resp = kv.txn(txn).await.expect("txn").into_inner();
    assert!(resp.succeeded);
    assert_eq!(resp.responses.len(), 1);

    let err = kv
        .put(pb::PutRequest::default())
        .await
        .expect_err("put is rejected");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Bidirectional Watch.
    let mut watch = WatchClient::new(channel.clone());
    let requests = vec![
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                pb::WatchCreateRequest {
                    key: b"w".to_vec(),
                    ..Default::default()
                },
            )),
        },
        pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
                pb::WatchCancelRequest { watch_id: 1 },
            )),
        },
    ];
    let mut responses = watch
        .watch(tokio_stream::iter(requests))
        .await
        .expect("watch")
        .into_inner();
    let created = responses.message().await.expect("recv").expect("created");
    assert!(created.created);
    assert_eq!(created.watch_id, 1);
    let events = responses.message().await.expect("recv").expect("events");
    assert_eq!(events.events.len(), 1);
    assert_eq!(events.events[0].kv.as_ref().expect("kv").key, &b"w"[..]);
    let canceled = responses.message().await.expect("recv").expect("canceled");
    assert!(canceled.canceled);
    assert_eq!(canceled.cancel_reason, "client asked");
    assert!(responses.message().await.expect("end").is_none());

    // Unary and server-streaming Maintenance.
    let mut maint = MaintenanceClient::new(channel.clone());
    let status = maint
        .status(pb::StatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.version, "3.6.0");
    assert_eq!(status.db_size_quota, 1 << 30);
    let mut snap = maint
        .snapshot(pb::SnapshotRequest {})
        .await
        .expect("snapshot")
        .into_inner();
    let mut blobs = Vec::new();
    while let Some(chunk) = snap.message().await.expect("chunk") {
        blobs.extend(chunk.blob);
    }
    assert_eq!(blobs, [0, 1, 2]);

    // A service the server does not register answers Unimplemented.
    let mut lease = LeaseClient::new(channel.clone());
    let err = lease
        .lease_grant(pb::LeaseGrantRequest { ttl: 5, id: 0 })
        .await
        .expect_err("no lease");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    // Health.
    let mut health = HealthClient::new(channel);
    let resp = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("check")
        .into_inner();
    assert_eq!(resp.status, ServingStatus::Serving as i32);

    stop.send(()).expect("stop");
    server.await.expect("server task");
}

#[tokio::test]
async fn server_routes_etcd_literal_paths() {
    // Call with hand-written paths, as a Go etcd client would send them, rather
    // than through the generated client.
    let (channel, stop, server) = start().await;
    let mut grpc = tonic::client::Grpc::new(channel);

    grpc.ready().await.expect("ready");
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/Range");
    let codec = tonic_prost::ProstCodec::<pb::RangeRequest, pb::RangeResponse>::default();
    let req = pb::RangeRequest {
        key: b"literal".to_vec(),
        ..Default::default()
    };
    let resp = grpc
        .unary(Request::new(req), path, codec)
        .await
        .expect("range")
        .into_inner();
    assert_eq!(resp.kvs[0].key, &b"literal"[..]);

    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.Maintenance/Status");
    let codec = tonic_prost::ProstCodec::<pb::StatusRequest, pb::StatusResponse>::default();
    let resp = grpc
        .unary(Request::new(pb::StatusRequest {}), path, codec)
        .await
        .expect("status");
    assert_eq!(resp.into_inner().version, "3.6.0");

    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/etcdserverpb.KV/NoSuchMethod");
    let codec = tonic_prost::ProstCodec::<pb::RangeRequest, pb::RangeResponse>::default();
    let err = grpc
        .unary(Request::new(pb::RangeRequest::default()), path, codec)
        .await
        .expect_err("unknown method");
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    stop.send(()).expect("stop");
    server.await.expect("server task");
}

#[test]
fn services_are_registered_under_etcd_names() {
    assert_eq!(<KvServer<()> as NamedService>::NAME, "etcdserverpb.KV");
    assert_eq!(
        <WatchServer<()> as NamedService>::NAME,
        "etcdserverpb.Watch"
    );
    assert_eq!(
        <LeaseServer<()> as NamedService>::NAME,
        "etcdserverpb.Lease"
    );
    assert_eq!(
        <ClusterServer<()> as NamedService>::NAME,
        "etcdserverpb.Cluster"
    );
    assert_eq!(
        <MaintenanceServer<()> as NamedService>::NAME,
        "etcdserverpb.Maintenance"
    );
    assert_eq!(<AuthServer<()> as NamedService>::NAME, "etcdserverpb.Auth");
    assert_eq!(
        <HealthServer<()> as NamedService>::NAME,
        "grpc.health.v1.Health"
    );

    // The clients exist for every service too.
    let clients = [
        std::any::type_name::<KvClient<Channel>>(),
        std::any::type_name::<WatchClient<Channel>>(),
        std::any::type_name::<LeaseClient<Channel>>(),
        std::any::type_name::<ClusterClient<Channel>>(),
        std::any::type_name::<MaintenanceClient<Channel>>(),
        std::any::type_name::<AuthClient<Channel>>(),
        std::any::type_name::<HealthClient<Channel>>(),
    ];
    assert!(clients.iter().all(|c| c.contains("Client")));
}
