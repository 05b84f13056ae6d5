//! etcd's JSON gateway on the client port: `POST /v3/kv/range` with `{"key":"Zm9v"}`.
//!
//! Next to gRPC, etcd serves every RPC as JSON over HTTP (its grpc-gateway): a `POST` of the
//! request message to the method's path (`/v3/kv/put`, `/v3/watch`, `/v3/lease/grant`, …)
//! answers with the response message. curl users and non-gRPC clients (APISIX's
//! lua-resty-etcd, for one) use it. t4 answers the same paths by calling the same services
//! as its gRPC API, so the two never disagree:
//!
//! * JSON as etcd writes it: proto field names, 64-bit integers as strings, bytes in base64,
//!   enums by name, default values left out (the serde implementations of `t4_proto`).
//!   Requests may use proto or camelCase names; unknown fields are ignored.
//! * A unary call answers one object. Streams (`/v3/watch`, `/v3/lease/keepalive`,
//!   `/v3/maintenance/snapshot`) read any number of request messages from the request body
//!   and answer a chunked body of `{"result":…}` lines.
//! * An error answers the HTTP status grpc-gateway maps its gRPC code to, with
//!   `{"error":…,"message":…,"code":…}`; an error that ends a stream is its last line,
//!   `{"error":{"grpc_code":…,"http_code":…,"message":…,"http_status":…}}`.
//! * `/v3beta/…` is `/v3/…`, as in etcd 3.5. Answers carry the CORS headers of etcd's
//!   default `--cors=*`, and `OPTIONS` (a browser's preflight) answers 200.
//!
//! Not served: the websocket form of the streams.

pub mod json;

use std::sync::Arc;

use http::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use t4_proto::etcdserverpb::auth_server::Auth;
use t4_proto::etcdserverpb::cluster_server::Cluster;
use t4_proto::etcdserverpb::kv_server::Kv;
use t4_proto::etcdserverpb::lease_server::Lease;
use t4_proto::etcdserverpb::maintenance_server::Maintenance;
use t4_proto::v3electionpb::election_server::Election;
use t4_proto::v3lockpb::lock_server::Lock;
use tonic::Status;

use crate::metrics::grpc::{Call, GrpcMetrics};
use crate::services::Shared;
use crate::services::access::Credentials;
use crate::services::auth::AuthService;
use crate::services::cluster::ClusterService;
use crate::services::election::ElectionService;
use crate::services::kv::KvService;
use crate::services::lease::LeaseService;
use crate::services::lock::LockService;
use crate::services::maintenance::MaintenanceService;
use crate::services::watch::{GRPC_OVERHEAD_BYTES, WatchService};
use json::{Body, MessageReader, Reply};

/// Defines [`Rpc`]: every method the gateway serves, with its paths.
macro_rules! rpcs {
    ($( $($path:literal)|+ => $rpc:ident = $grpc:literal ),* $(,)?) => {
        /// A method the gateway serves.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Rpc { $($rpc),* }

        impl Rpc {
            /// The method served at `path` (under `/v3/`), as etcd's `rpc.proto` binds them.
            fn at(path: &str) -> Option<Rpc> {
                match path {
                    $($($path)|+ => Some(Rpc::$rpc),)*
                    _ => None,
                }
            }

            /// Every method.
            #[cfg(test)]
            const ALL: &'static [Rpc] = &[$(Rpc::$rpc),*];

            /// The method's gRPC path, which its metrics are recorded under.
            fn grpc_path(self) -> &'static str {
                match self {
                    $(Rpc::$rpc => $grpc,)*
                }
            }
        }
    };
}

rpcs! {
    "/v3/kv/range" => Range = "/etcdserverpb.KV/Range",
    "/v3/kv/put" => Put = "/etcdserverpb.KV/Put",
    "/v3/kv/deleterange" => DeleteRange = "/etcdserverpb.KV/DeleteRange",
    "/v3/kv/txn" => Txn = "/etcdserverpb.KV/Txn",
    "/v3/kv/compaction" => Compact = "/etcdserverpb.KV/Compact",
    "/v3/watch" => Watch = "/etcdserverpb.Watch/Watch",
    "/v3/lease/grant" => LeaseGrant = "/etcdserverpb.Lease/LeaseGrant",
    "/v3/lease/revoke" | "/v3/kv/lease/revoke" => LeaseRevoke = "/etcdserverpb.Lease/LeaseRevoke",
    "/v3/lease/keepalive" => LeaseKeepAlive = "/etcdserverpb.Lease/LeaseKeepAlive",
    "/v3/lease/timetolive" | "/v3/kv/lease/timetolive"
        => LeaseTimeToLive = "/etcdserverpb.Lease/LeaseTimeToLive",
    "/v3/lease/leases" | "/v3/kv/lease/leases" => LeaseLeases = "/etcdserverpb.Lease/LeaseLeases",
    "/v3/cluster/member/add" => MemberAdd = "/etcdserverpb.Cluster/MemberAdd",
    "/v3/cluster/member/remove" => MemberRemove = "/etcdserverpb.Cluster/MemberRemove",
    "/v3/cluster/member/update" => MemberUpdate = "/etcdserverpb.Cluster/MemberUpdate",
    "/v3/cluster/member/list" => MemberList = "/etcdserverpb.Cluster/MemberList",
    "/v3/cluster/member/promote" => MemberPromote = "/etcdserverpb.Cluster/MemberPromote",
    "/v3/maintenance/alarm" => Alarm = "/etcdserverpb.Maintenance/Alarm",
    "/v3/maintenance/status" => Status = "/etcdserverpb.Maintenance/Status",
    "/v3/maintenance/defragment" => Defragment = "/etcdserverpb.Maintenance/Defragment",
    // etcd 3.4 and 3.5 bind Hash and HashKV both here, and serve Hash; later versions serve
    // HashKV at its own path.
    "/v3/maintenance/hash" => Hash = "/etcdserverpb.Maintenance/Hash",
    "/v3/maintenance/hashkv" => HashKv = "/etcdserverpb.Maintenance/HashKV",
    "/v3/maintenance/snapshot" => Snapshot = "/etcdserverpb.Maintenance/Snapshot",
    "/v3/maintenance/transfer-leadership" => MoveLeader = "/etcdserverpb.Maintenance/MoveLeader",
    "/v3/maintenance/downgrade" => Downgrade = "/etcdserverpb.Maintenance/Downgrade",
    "/v3/auth/enable" => AuthEnable = "/etcdserverpb.Auth/AuthEnable",
    "/v3/auth/disable" => AuthDisable = "/etcdserverpb.Auth/AuthDisable",
    "/v3/auth/status" => AuthStatus = "/etcdserverpb.Auth/AuthStatus",
    "/v3/auth/authenticate" => Authenticate = "/etcdserverpb.Auth/Authenticate",
    "/v3/auth/user/add" => UserAdd = "/etcdserverpb.Auth/UserAdd",
    "/v3/auth/user/get" => UserGet = "/etcdserverpb.Auth/UserGet",
    "/v3/auth/user/list" => UserList = "/etcdserverpb.Auth/UserList",
    "/v3/auth/user/delete" => UserDelete = "/etcdserverpb.Auth/UserDelete",
    "/v3/auth/user/changepw" => UserChangePassword = "/etcdserverpb.Auth/UserChangePassword",
    "/v3/auth/user/grant" => UserGrantRole = "/etcdserverpb.Auth/UserGrantRole",
    "/v3/auth/user/revoke" => UserRevokeRole = "/etcdserverpb.Auth/UserRevokeRole",
    "/v3/auth/role/add" => RoleAdd = "/etcdserverpb.Auth/RoleAdd",
    "/v3/auth/role/get" => RoleGet = "/etcdserverpb.Auth/RoleGet",
    "/v3/auth/role/list" => RoleList = "/etcdserverpb.Auth/RoleList",
    "/v3/auth/role/delete" => RoleDelete = "/etcdserverpb.Auth/RoleDelete",
    "/v3/auth/role/grant" => RoleGrantPermission = "/etcdserverpb.Auth/RoleGrantPermission",
    "/v3/auth/role/revoke" => RoleRevokePermission = "/etcdserverpb.Auth/RoleRevokePermission",
    "/v3/lock/lock" => Lock = "/v3lockpb.Lock/Lock",
    "/v3/lock/unlock" => Unlock = "/v3lockpb.Lock/Unlock",
    "/v3/election/campaign" => Campaign = "/v3electionpb.Election/Campaign",
    "/v3/election/proclaim" => Proclaim = "/v3electionpb.Election/Proclaim",
    "/v3/election/leader" => Leader = "/v3electionpb.Election/Leader",
    "/v3/election/observe" => Observe = "/v3electionpb.Election/Observe",
    "/v3/election/resign" => Resign = "/v3electionpb.Election/Resign",
}

/// Whether `request` is for the gateway: a path under `/v3/` (or `/v3beta/`) that is not a
/// gRPC call (an HTTP/2 request of type `application/grpc`).
pub fn wants<B>(request: &http::Request<B>) -> bool {
    let path = request.uri().path();
    let grpc = request.version() >= http::Version::HTTP_2
        && request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|t| t.as_bytes().starts_with(b"application/grpc"));
    (path.starts_with("/v3/") || path.starts_with("/v3beta/")) && !grpc
}

/// The gateway: the services it calls.
#[derive(Clone, Debug)]
pub struct Gateway {
    kv: KvService,
    watch: WatchService,
    lease: LeaseService,
    cluster: ClusterService,
    maintenance: MaintenanceService,
    auth: AuthService,
    lock: LockService,
    election: ElectionService,
    /// Where calls are recorded, as gRPC calls (when `t4 run` serves metrics).
    metrics: Option<Arc<GrpcMetrics>>,
    /// The largest request body (and streamed request message) read: JSON and base64 take
    /// more room than protobuf, so twice what gRPC reads; the services then refuse requests
    /// over `--max-request-bytes` with etcd's error, as over gRPC.
    body_limit: usize,
}

/// The request message of a call whose client does not stream, read from the body, with
/// the auth token of the `Authorization` header in its metadata (as etcd's gateway passes it).
async fn read_request<Req>(
    body: Body,
    limit: usize,
    token: Option<&str>,
) -> Result<tonic::Request<Req>, Status>
where
    Req: DeserializeOwned + Default,
{
    let bytes = json::read_body(body, limit).await?;
    let mut request = json::first_message(&bytes).map(tonic::Request::new)?;
    if let Some(value) = token.and_then(|t| tonic::metadata::MetadataValue::try_from(t).ok()) {
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Calls a unary method with the request read from the body.
async fn unary<Req, Resp, Fut>(
    body: Body,
    limit: usize,
    token: Option<&str>,
    call: impl FnOnce(tonic::Request<Req>) -> Fut,
) -> Reply
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let request = match read_request(body, limit, token).await {
        Ok(request) => request,
        Err(status) => return json::error(&status),
    };
    match call(request).await {
        Ok(response) => json::message(response.get_ref()),
        Err(status) => json::error(&status),
    }
}

/// The first message of a streaming call, or the answer when it cannot be read (etcd's
/// gateway answers 500 with gRPC code Unknown).
async fn first<T: DeserializeOwned + Default>(
    reader: &mut MessageReader,
) -> Result<Option<T>, Reply> {
    match reader.next::<T>().await {
        None => Ok(None),
        Some(Ok(message)) => Ok(Some(message)),
        Some(Err(e)) => Err(json::error(&Status::unknown(e))),
    }
}

impl Gateway {
    /// The gateway over the services of `ctx`, recording its calls in `metrics`.
    pub fn new(ctx: Shared, metrics: Option<Arc<GrpcMetrics>>) -> Gateway {
        let body_limit = 2 * (ctx.settings.max_request_bytes + GRPC_OVERHEAD_BYTES);
        Gateway {
            kv: KvService::new(ctx.clone()),
            watch: WatchService::new(ctx.clone()),
            lease: LeaseService::new(ctx.clone()),
            cluster: ClusterService::new(ctx.clone()),
            maintenance: MaintenanceService::new(ctx.clone()),
            auth: AuthService::new(ctx.clone()),
            lock: LockService::new(ctx.clone()),
            election: ElectionService::new(ctx),
            metrics,
            body_limit,
        }
    }

    /// Answers one gateway request (one for which [`wants`] is true).
    pub async fn handle(&self, request: http::Request<Body>) -> Reply {
        let (parts, body) = request.into_parts();
        if parts.method == Method::OPTIONS {
            let mut reply = json::with_cors(http::Response::new(tonic::body::Body::empty()));
            *reply.status_mut() = StatusCode::OK;
            return reply;
        }
        let path = parts.uri.path();
        let path = match path.strip_prefix("/v3beta/") {
            Some(rest) => format!("/v3/{rest}"),
            None => path.to_string(),
        };
        let Some(rpc) = Rpc::at(&path) else {
            return json::plain(StatusCode::NOT_FOUND);
        };
        if parts.method != Method::POST {
            return json::plain(StatusCode::METHOD_NOT_ALLOWED);
        }
        let mut call = self.metrics.as_ref().map(|m| m.start(rpc.grpc_path()));
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let reply = self.call(rpc, body, token, &mut call).await;
        // A stream took `call` and records it when it ends.
        if let (Some(call), Some(json::Answered(code))) = (call, reply.extensions().get()) {
            call.finish(*code);
        }
        reply
    }

    /// Calls `rpc`; a stream takes `call` to record it when it ends.
    async fn call(
        &self,
        rpc: Rpc,
        body: Body,
        token: Option<&str>,
        call: &mut Option<Call>,
    ) -> Reply {
        let limit = self.body_limit;
        macro_rules! unary {
            ($service:ident . $method:ident) => {
                unary(body, limit, token, |request| self.$service.$method(request)).await
            };
        }
        // A call with one request and a stream of responses.
        macro_rules! server_stream {
            ($service:ident . $method:ident) => {
                match read_request(body, limit, token).await {
                    Ok(request) => match self.$service.$method(request).await {
                        Ok(responses) => json::lines(responses.into_inner(), call.take()),
                        Err(status) => json::error(&status),
                    },
                    Err(status) => json::error(&status),
                }
            };
        }
        match rpc {
            Rpc::Range => unary!(kv.range),
            Rpc::Put => unary!(kv.put),
            Rpc::DeleteRange => unary!(kv.delete_range),
            Rpc::Txn => unary!(kv.txn),
            Rpc::Compact => unary!(kv.compact),
            Rpc::Watch => self.watch(body, token, call.take()).await,
            Rpc::LeaseGrant => unary!(lease.lease_grant),
            Rpc::LeaseRevoke => unary!(lease.lease_revoke),
            Rpc::LeaseKeepAlive => self.keep_alive(body, call.take()).await,
            Rpc::LeaseTimeToLive => unary!(lease.lease_time_to_live),
            Rpc::LeaseLeases => unary!(lease.lease_leases),
            Rpc::MemberAdd => unary!(cluster.member_add),
            Rpc::MemberRemove => unary!(cluster.member_remove),
            Rpc::MemberUpdate => unary!(cluster.member_update),
            Rpc::MemberList => unary!(cluster.member_list),
            Rpc::MemberPromote => unary!(cluster.member_promote),
            Rpc::Alarm => unary!(maintenance.alarm),
            Rpc::Status => unary!(maintenance.status),
            Rpc::Defragment => unary!(maintenance.defragment),
            Rpc::Hash => unary!(maintenance.hash),
            Rpc::HashKv => unary!(maintenance.hash_kv),
            Rpc::Snapshot => server_stream!(maintenance.snapshot),
            Rpc::MoveLeader => unary!(maintenance.move_leader),
            Rpc::Downgrade => unary!(maintenance.downgrade),
            Rpc::AuthEnable => unary!(auth.auth_enable),
            Rpc::AuthDisable => unary!(auth.auth_disable),
            Rpc::AuthStatus => unary!(auth.auth_status),
            Rpc::Authenticate => unary!(auth.authenticate),
            Rpc::UserAdd => unary!(auth.user_add),
            Rpc::UserGet => unary!(auth.user_get),
            Rpc::UserList => unary!(auth.user_list),
            Rpc::UserDelete => unary!(auth.user_delete),
            Rpc::UserChangePassword => unary!(auth.user_change_password),
            Rpc::UserGrantRole => unary!(auth.user_grant_role),
            Rpc::UserRevokeRole => unary!(auth.user_revoke_role),
            Rpc::RoleAdd => unary!(auth.role_add),
            Rpc::RoleGet => unary!(auth.role_get),
            Rpc::RoleList => unary!(auth.role_list),
            Rpc::RoleDelete => unary!(auth.role_delete),
            Rpc::RoleGrantPermission => unary!(auth.role_grant_permission),
            Rpc::RoleRevokePermission => unary!(auth.role_revoke_permission),
            Rpc::Lock => unary!(lock.lock),
            Rpc::Unlock => unary!(lock.unlock),
            Rpc::Campaign => unary!(election.campaign),
            Rpc::Proclaim => unary!(election.proclaim),
            Rpc::Leader => unary!(election.leader),
            Rpc::Observe => server_stream!(election.observe),
            Rpc::Resign => unary!(election.resign),
        }
    }

    /// `/v3/watch`: the watch requests in the body, the watch responses as lines.
    async fn watch(&self, body: Body, token: Option<&str>, call: Option<Call>) -> Reply {
        let mut reader = MessageReader::new(body, self.body_limit);
        match first(&mut reader).await {
            Ok(first) => {
                // As etcd's gateway: the token only, never the connection's certificate.
                let credentials = Credentials {
                    token: token.map(str::to_string),
                    common_name: None,
                };
                json::lines(self.watch.serve(credentials, reader.rest(first)), call)
            }
            Err(reply) => reply,
        }
    }

    /// `/v3/lease/keepalive`: the keepalives in the body, their answers as lines.
    async fn keep_alive(&self, body: Body, call: Option<Call>) -> Reply {
        let mut reader = MessageReader::new(body, self.body_limit);
        match first(&mut reader).await {
            Ok(first) => json::lines(self.lease.keep_alive(reader.rest(first)), call),
            Err(reply) => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_of_etcds_rpc_proto_is_served() {
        assert_eq!(Rpc::at("/v3/kv/range"), Some(Rpc::Range));
        assert_eq!(Rpc::at("/v3/kv/lease/revoke"), Some(Rpc::LeaseRevoke));
        assert_eq!(Rpc::at("/v3/lease/revoke"), Some(Rpc::LeaseRevoke));
        assert_eq!(Rpc::at("/v3/maintenance/hash"), Some(Rpc::Hash));
        assert_eq!(Rpc::at("/v3/kv/range/"), None);
        assert_eq!(Rpc::at("/v3/lock/lock"), Some(Rpc::Lock));
        assert_eq!(Rpc::at("/v3/lock"), None);
    }

    #[test]
    fn every_method_is_recorded_under_a_grpc_method_of_the_protocol() {
        for rpc in Rpc::ALL {
            let method = crate::metrics::grpc::method_of(rpc.grpc_path());
            assert_ne!(method.service, "unknown", "{rpc:?}");
            assert_eq!(
                rpc.grpc_path(),
                format!("/{}/{}", method.service, method.method),
                "{rpc:?}"
            );
        }
    }

    #[test]
    fn only_non_grpc_requests_under_v3_go_to_the_gateway() {
        let request = |path: &str, content_type: Option<&str>| {
            let mut builder = http::Request::builder()
                .method("POST")
                .version(http::Version::HTTP_2)
                .uri(path);
            if let Some(t) = content_type {
                builder = builder.header(http::header::CONTENT_TYPE, t);
            }
            builder.body(()).unwrap()
        };
        assert!(wants(&request("/v3/kv/range", None)));
        assert!(wants(&request(
            "/v3beta/kv/range",
            Some("application/json")
        )));
        assert!(!wants(&request("/v3/kv/range", Some("application/grpc"))));
        assert!(!wants(&request("/health", None)));
        assert!(!wants(&request("/etcdserverpb.KV/Range", None)));
        // Over HTTP/1.1 a request cannot be a gRPC call, whatever its type says (etcd's
        // gateway answers it).
        let http1 = http::Request::builder()
            .uri("/v3/kv/range")
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        assert!(wants(&http1));
    }
}
