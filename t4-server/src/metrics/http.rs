//! The HTTP endpoint of `t4 run --metrics-listen`: plain HTTP/1.1 for scrapers and probes.
//!
//! * `GET /metrics`: every metric, in the Prometheus text format (OpenMetrics when the
//!   scraper's `Accept` asks for it).
//! * `GET /health`: etcd's answer, `{"health":"true","reason":""}` with 200 while the node
//!   serves; `{"health":"false","reason":"…"}` with 503 once it failed, is stopping, or has
//!   an alarm raised (etcd's `ALARM NOSPACE`; `?exclude=NOSPACE` ignores it, as in etcd).
//! * Any other path: 404; another method on these paths: 405.
//!
//! It stops accepting when the server starts shutting down, with the gRPC listener.
//! [`client_port`] answers the plain HTTP/1.1 requests etcd also answers on its client port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::{TokioIo, TokioTimer};
use t4_proto::etcdserverpb::AlarmType;
use tokio::net::TcpListener;

use super::Metrics;
use crate::services::Shared;

/// How long to wait before accepting again after `accept` failed (out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// etcd's health answer: `(healthy, reason)` for this member, not counting alarms named in
/// `excluded` (etcd's `?exclude=NOSPACE`).
pub fn health(ctx: &crate::services::Context, excluded: &[&str]) -> (bool, String) {
    if let Some(reason) = ctx.not_serving() {
        return (false, reason);
    }
    for (_, alarm) in ctx.alarms.list() {
        let name = AlarmType::try_from(alarm).map_or("UNKNOWN", |a| a.as_str_name());
        if !excluded.contains(&name) {
            return (false, format!("ALARM {name}"));
        }
    }
    (true, String::new())
}

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    if let Ok(value) = header::HeaderValue::from_str(content_type) {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

/// The alarm names of `exclude=` parameters in a query string.
fn excluded(query: Option<&str>) -> Vec<&str> {
    query
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.strip_prefix("exclude="))
        .collect()
}

/// The 404 or 405 answer to a request for anything but `GET`/`HEAD` of one of `paths`.
fn refuse(request: &Request<impl Sized>, paths: &[&str]) -> Option<Response<Full<Bytes>>> {
    if !paths.contains(&request.uri().path()) {
        return Some(respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "404 page not found\n",
        ));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "405 method not allowed\n",
        );
        response
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return Some(response);
    }
    None
}

/// etcd's `/health` answer for this member.
fn health_response(
    request: &Request<impl Sized>,
    ctx: &crate::services::Context,
) -> Response<Full<Bytes>> {
    let (healthy, reason) = health(ctx, &excluded(request.uri().query()));
    let body = serde_json::json!({
        "health": if healthy { "true" } else { "false" },
        "reason": reason,
    });
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    respond(status, "application/json", body.to_string())
}

/// Answers a plain HTTP/1.1 request on the gRPC client port, where etcd answers `/health`
/// (as on the metrics address) and `/version` (`{"etcdserver":…,"etcdcluster":…}`, here the
/// etcd API version t4 reports in `Status`).
pub fn client_port(
    request: &Request<impl Sized>,
    ctx: &crate::services::Context,
) -> Response<Full<Bytes>> {
    if let Some(refused) = refuse(request, &["/health", "/version"]) {
        return refused;
    }
    if request.uri().path() == "/version" {
        // In etcd's order of the fields.
        let version = crate::services::maintenance::ETCD_VERSION;
        let body = format!(r#"{{"etcdserver":"{version}","etcdcluster":"{version}"}}"#);
        return respond(StatusCode::OK, "application/json", body);
    }
    health_response(request, ctx)
}

/// Answers one request.
pub async fn handle(
    request: &Request<impl Sized>,
    ctx: &crate::services::Context,
    metrics: &Metrics,
) -> Response<Full<Bytes>> {
    if let Some(refused) = refuse(request, &["/metrics", "/health"]) {
        return refused;
    }
    if request.uri().path() == "/metrics" {
        let openmetrics = request
            .headers()
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/openmetrics-text"));
        let exposition = metrics.expose(ctx, openmetrics).await;
        return respond(StatusCode::OK, exposition.content_type, exposition.body);
    }
    health_response(request, ctx)
}

/// Serves `listener` until the server starts shutting down; connections still open then end
/// after their current request.
pub async fn serve(listener: TcpListener, ctx: Shared, metrics: Arc<Metrics>) {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "the metrics listener failed to accept a connection");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = ctx.shutting_down() => return,
        };
        let (ctx, metrics) = (ctx.clone(), metrics.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| {
                let (ctx, metrics) = (ctx.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(handle(&request, &ctx, &metrics).await) }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // The timer enforces hyper's header read timeout (30 s) on slow clients.
            builder.timer(TokioTimer::new());
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = ctx.shutting_down() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
}
