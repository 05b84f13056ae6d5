//! `t4 run`: open the node, serve the etcd v3 API, stop cleanly on SIGINT/SIGTERM.
//!
//! Shutdown order (bounded by `--shutdown-timeout`): stop accepting connections, end every
//! stream (watch, lease keepalive, snapshot, health watch) with "server stopped" so that no
//! client can hold the server open, let in-flight unary requests finish, then close the node
//! (which persists the store) and exit 0. If requests are still running when the timeout
//! ends, their connections are dropped and the node is closed anyway: acknowledged writes
//! are durable in the WAL either way.

mod authority;
mod coalesce;
pub mod config;
pub mod identity;
pub mod quota;
pub mod remote;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use futures::StreamExt as _;
use t4_proto::etcdserverpb::{
    auth_server::AuthServer, cluster_server::ClusterServer, kv_server::KvServer,
    lease_server::LeaseServer, maintenance_server::MaintenanceServer, watch_server::WatchServer,
};
use t4_proto::health::v1::health_server::HealthServer;
use t4_proto::v3electionpb::election_server::ElectionServer;
use t4_proto::v3lockpb::lock_server::LockServer;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::RunArgs;

use crate::header::{Identity, member_id};
use crate::metrics::{Metrics, grpc::GrpcMetricsLayer};
use crate::services::{
    Alarms, Context, Member, Settings,
    access::Tokens,
    auth::AuthService,
    cluster::ClusterService,
    election::ElectionService,
    health::HealthService,
    kv::KvService,
    lease::LeaseService,
    lock::LockService,
    maintenance::{ETCD_VERSION, MaintenanceService},
    watch::GRPC_OVERHEAD_BYTES,
    watch::WatchService,
};

/// The client URL advertised for `listen` when none is configured.
fn default_client_url(listen: SocketAddr, hostname: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    if listen.ip().is_unspecified() {
        format!("{scheme}://{hostname}:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}

async fn wait_for_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Resolves `address` (the value of `flag`) and listens on it; returns the listener and the
/// address it got (port 0 picks one).
async fn bind(flag: &str, address: &str) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let addr = tokio::net::lookup_host(address)
        .await
        .with_context(|| format!("{flag} {address:?} is not a host:port address"))?
        .next()
        .with_context(|| format!("{flag} {address:?} resolves to no address"))?;
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("{flag}: listening on {addr}"))?;
    let local = listener
        .local_addr()
        .with_context(|| format!("{flag}: reading the listen address"))?;
    Ok((listener, local))
}

/// Runs the server until a signal stops it.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    args.validate()?;
    let hostname = identity::hostname();
    let name = args.node_id.clone().unwrap_or_else(|| hostname.clone());
    // Before the node opens: a bad certificate or key is a start-up error that touches no
    // data.
    let tls = args.client_tls()?;
    let tokens = Tokens::from_flag(&args.auth_token, args.auth_token_ttl)?;

    let mut config = t4::Config::new(&args.data_dir);
    config.max_request_bytes = args.max_request_bytes as usize;
    config.max_txn_ops = args.max_txn_ops as usize;
    config.read_cache_bytes = args.read_cache_mb.saturating_mul(1 << 20);
    args.remote.apply(&mut config, &name)?;
    let bucket = args.remote.s3.enabled().then(|| args.remote.s3.describe());
    if let Some(bucket) = &bucket {
        tracing::info!(%bucket, sync_upload = args.remote.wal_sync_upload, "starting from the bucket: taking the writer term, recovering what the data dir lacks");
    }
    let node = t4::Node::open(config)
        .await
        .with_context(|| match &bucket {
            Some(bucket) => format!(
                "opening the data dir {} with the bucket {bucket}",
                args.data_dir.display()
            ),
            None => format!("opening the data dir {}", args.data_dir.display()),
        })?;
    let cluster_id = identity::cluster_id(&args.data_dir)?;

    // Each `--listen` address, with the TLS its connections may get, and whether they may
    // be plain text.
    let mut listeners = Vec::new();
    for listen in args.listen_addresses()? {
        let (listener, local) = bind("--listen", &listen.address).await?;
        let tls = tls.clone().filter(|_| listen.tls);
        listeners.push((listener, local, tls, listen.plain));
    }
    let locals: Vec<SocketAddr> = listeners.iter().map(|(_, local, ..)| *local).collect();
    let metrics_listener = match args.metrics_listen() {
        Some(address) => Some(bind("--metrics-listen", address).await?),
        None => None,
    };
    let client_urls = if args.advertise_client_urls.is_empty() {
        let mut urls = Vec::new();
        for (_, local, tls, plain) in &listeners {
            if tls.is_some() {
                urls.push(default_client_url(*local, &hostname, true));
            }
            if *plain {
                urls.push(default_client_url(*local, &hostname, false));
            }
        }
        urls
    } else {
        args.advertise_client_urls.clone()
    };

    let id = Identity {
        cluster_id,
        member_id: member_id(&name),
    };
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        etcd_api = ETCD_VERSION,
        data_dir = %args.data_dir.display(),
        listen = ?locals,
        client_tls = match &tls {
            None => "off",
            Some(tls) if tls.verifies_clients() => "on, client certificates required",
            Some(_) => "on",
        },
        metrics_listen = ?metrics_listener.as_ref().map(|(_, a)| *a),
        advertise_client_urls = ?client_urls,
        node_id = %name,
        member_id = format_args!("{:x}", id.member_id),
        cluster_id = format_args!("{:x}", id.cluster_id),
        log_level = %args.log_level,
        max_request_bytes = args.max_request_bytes,
        max_txn_ops = args.max_txn_ops,
        quota_backend_bytes = args.quota(),
        watch_progress_notify_interval = ?args.watch_progress_notify_interval,
        grpc_keepalive_interval = ?args.grpc_keepalive_interval,
        grpc_keepalive_timeout = ?args.grpc_keepalive_timeout,
        shutdown_timeout = ?args.shutdown_timeout,
        bucket = bucket.as_deref().unwrap_or("none (local durability only)"),
        wal_sync_upload = args.remote.wal_sync_upload,
        revision = node.current_revision(),
        "starting t4"
    );

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ctx = Arc::new(Context {
        node: node.clone(),
        id,
        member: Member {
            name,
            client_urls,
            peer_urls: Vec::new(),
        },
        settings: Settings {
            max_request_bytes: args.max_request_bytes as usize,
            watch_progress_interval: args.watch_progress_notify_interval,
            quota_backend_bytes: args.quota(),
            bcrypt_cost: args.bcrypt_cost,
        },
        alarms: Alarms::default(),
        tokens,
        shutdown: shutdown_rx.clone(),
    });
    tokio::spawn(quota::monitor(ctx.clone()));

    // Logged before the gRPC API is served, so that whoever waits for that line finds this.
    let metrics = metrics_listener.map(|(listener, address)| {
        let metrics = Arc::new(Metrics::new());
        tracing::info!(%address, "serving metrics and health over HTTP");
        let server = tokio::spawn(crate::metrics::http::serve(
            listener,
            ctx.clone(),
            metrics.clone(),
        ));
        (metrics, server)
    });

    // As etcd: requests up to --max-request-bytes plus gRPC overhead are read (and then
    // refused with etcd's "request is too large" if over the limit); responses are unbounded.
    let recv_limit = args.max_request_bytes as usize + GRPC_OVERHEAD_BYTES;
    let send_limit = i32::MAX as usize;
    macro_rules! limits {
        ($server:expr) => {
            $server
                .max_decoding_message_size(recv_limit)
                .max_encoding_message_size(send_limit)
        };
    }
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(t4_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the gRPC reflection service")?;
    let keepalive =
        (!args.grpc_keepalive_interval.is_zero()).then_some(args.grpc_keepalive_interval);
    let mut routes = tonic::service::RoutesBuilder::default();
    routes
        .add_service(limits!(KvServer::new(KvService::new(ctx.clone()))))
        .add_service(limits!(WatchServer::new(WatchService::new(ctx.clone()))))
        .add_service(limits!(LeaseServer::new(LeaseService::new(ctx.clone()))))
        .add_service(limits!(ClusterServer::new(ClusterService::new(
            ctx.clone()
        ))))
        .add_service(limits!(MaintenanceServer::new(MaintenanceService::new(
            ctx.clone()
        ))))
        .add_service(limits!(AuthServer::new(AuthService::new(ctx.clone()))))
        .add_service(limits!(LockServer::new(LockService::new(ctx.clone()))))
        .add_service(limits!(ElectionServer::new(ElectionService::new(
            ctx.clone()
        ))))
        .add_service(HealthServer::new(HealthService::new(ctx.clone())))
        .add_service(reflection);
    // Like etcd, the client port also serves the JSON gateway under `/v3/`, answers plain
    // HTTP/1.1 `GET /health` and `/version`, and 404 to other HTTP/1.1 paths; an unknown gRPC
    // method still gets gRPC's Unimplemented.
    let plain_http = {
        let ctx = ctx.clone();
        let grpc_metrics = metrics.as_ref().map(|(m, _)| m.grpc.clone());
        let gateway = Arc::new(crate::gateway::Gateway::new(ctx.clone(), grpc_metrics));
        tower::service_fn(move |request: http::Request<tonic::service::AxumBody>| {
            let (ctx, gateway) = (ctx.clone(), gateway.clone());
            async move {
                let response = if crate::gateway::wants(&request) {
                    gateway.handle(request).await
                } else if request.version() < http::Version::HTTP_2 {
                    crate::metrics::http::client_port(&request, &ctx).map(tonic::body::Body::new)
                } else {
                    tonic::Status::unimplemented("").into_http()
                };
                Ok::<_, std::convert::Infallible>(response)
            }
        })
    };
    // The gRPC routes are `/{service}/{method}`: every other path falls back to `plain_http`.
    let routes = routes
        .routes()
        .into_axum_router()
        .fallback_service(plain_http);
    let answering = coalesce::Answering::default();
    let router = tonic::transport::Server::builder()
        .layer(GrpcMetricsLayer::new(
            metrics.as_ref().map(|(m, _)| m.grpc.clone()),
        ))
        .layer(coalesce::AnsweringLayer::new(answering.clone()))
        .http2_keepalive_interval(keepalive)
        .http2_keepalive_timeout(Some(args.grpc_keepalive_timeout))
        .tcp_nodelay(true)
        .max_concurrent_streams(Some(u32::MAX))
        .accept_http1(true)
        .add_routes(routes.into());

    let mut stopping = shutdown_rx.clone();
    // `Server::tcp_nodelay` applies only to listeners tonic binds itself: `incoming` sets it
    // on ours, and runs each connection's TLS handshake when TLS is on for its address.
    let incoming = futures::stream::select_all(
        listeners
            .into_iter()
            .map(|(listener, _, tls, plain)| tls::incoming(listener, tls, plain).boxed()),
    );
    // Each connection's answers to one batch leave in one write (`coalesce.rs`), and requests
    // with an `:authority` that `h2` would refuse are served as etcd serves them
    // (`authority.rs`).
    let incoming = incoming.map(move |conn| {
        conn.map(|tcp| {
            authority::AuthorityRepair::new(coalesce::Coalescing::new(tcp, answering.clone()))
        })
    });
    let serve = router.serve_with_incoming_shutdown(incoming, async move {
        let _ = stopping.wait_for(|s| *s).await;
    });
    for local in &locals {
        tracing::info!(address = %local, "serving the etcd v3 API");
    }
    // Boxed so that it can be dropped (closing every connection) before the node closes.
    let mut serve = Box::pin(serve);
    let served = tokio::select! {
        result = &mut serve => Some(result),
        signal = wait_for_signal() => {
            // Every write answered from here on has a revision above this one.
            tracing::info!(
                signal = signal?,
                revision = node.current_revision(),
                "stopping: ending streams, finishing in-flight requests"
            );
            None
        }
    };
    let _ = shutdown_tx.send(true);
    match served {
        Some(result) => result.context("serving gRPC")?,
        None => match tokio::time::timeout(args.shutdown_timeout, &mut serve).await {
            Ok(result) => result.context("serving gRPC")?,
            Err(_) => tracing::warn!(
                timeout = ?args.shutdown_timeout,
                "requests still running at the shutdown timeout; dropping their connections"
            ),
        },
    }
    drop(serve);
    if let Some((_, server)) = metrics {
        // It stops accepting as soon as shutdown is signalled.
        let _ = server.await;
    }
    drop(ctx);
    node.close().await.context("closing the node")?;
    tracing::info!("stopped");
    Ok(())
}
