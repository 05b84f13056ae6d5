//! Per-RPC metrics of the etcd gRPC API: a tower layer around every tonic service that counts
//! each call by method and result code when it ends, and times unary calls.
//!
//! The code is read where gRPC puts it: in the response headers of a trailers-only answer (an
//! error before any message), else in the trailers after the last message. A call whose answer
//! is dropped before its status was sent (the client went away) counts as `Canceled`, as in
//! etcd's go-grpc-prometheus. Streams (Watch, LeaseKeepAlive, Snapshot) are counted when they
//! end; their lifetime is not a latency, so only unary calls are timed.
//!
//! Calls through the JSON gateway are recorded as the gRPC calls they are, as etcd's gateway
//! makes real gRPC calls: the gateway times them with [`GrpcMetrics::start`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use prost::Message as _;
use tonic::Code;

/// One gRPC method the server knows.
#[derive(Debug)]
pub struct Method {
    /// The fully qualified service, e.g. `etcdserverpb.KV`.
    pub service: Cow<'static, str>,
    /// The method, e.g. `Range`.
    pub method: Cow<'static, str>,
    /// Neither side streams: the call is timed.
    pub unary: bool,
}

/// What a call to a path the server does not serve is counted as, so that clients cannot
/// grow the label set without bound.
static UNKNOWN: Method = Method {
    service: Cow::Borrowed("unknown"),
    method: Cow::Borrowed("unknown"),
    unary: false,
};

/// Every method served, by path (`/etcdserverpb.KV/Range`), from the compiled-in descriptor
/// sets of the etcd protocol and of the reflection service.
static METHODS: LazyLock<HashMap<String, Method>> = LazyLock::new(|| {
    let mut methods = HashMap::new();
    for encoded in [
        t4_proto::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .expect("a descriptor set compiled into the binary decodes");
        for file in &set.file {
            for service in &file.service {
                let full = match file.package() {
                    "" => service.name().to_string(),
                    package => format!("{package}.{}", service.name()),
                };
                for m in &service.method {
                    methods.insert(
                        format!("/{full}/{}", m.name()),
                        Method {
                            service: Cow::Owned(full.clone()),
                            method: Cow::Owned(m.name().to_string()),
                            unary: !m.client_streaming() && !m.server_streaming(),
                        },
                    );
                }
            }
        }
    }
    methods
});

/// The method a request path calls (service and method `unknown` for any other path).
pub fn method_of(path: &str) -> &'static Method {
    METHODS.get(path).unwrap_or(&UNKNOWN)
}

/// Go's name of a gRPC code, as etcd's metrics label it (`OK`, `NotFound`, `Canceled`, ...).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: &'static str,
    method: &'static str,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    service: &'static str,
    method: &'static str,
}

/// Unary latency buckets: 50 µs (a read served from memory) doubling to about 6.5 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(50e-6, 2.0, 18))
}

/// The per-RPC counters and latency histograms.
#[derive(Debug)]
pub struct GrpcMetrics {
    calls: Family<CallLabels, Counter>,
    durations: Family<MethodLabels, Histogram, fn() -> Histogram>,
}

impl GrpcMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Arc<GrpcMetrics> {
        let metrics = GrpcMetrics {
            calls: Family::default(),
            durations: Family::new_with_constructor(duration_histogram),
        };
        registry.register(
            "t4_grpc_requests",
            "gRPC calls finished, by service, method and gRPC code",
            metrics.calls.clone(),
        );
        registry.register(
            "t4_grpc_request_duration_seconds",
            "Time from receiving a unary gRPC call to sending its status, by service and method",
            metrics.durations.clone(),
        );
        Arc::new(metrics)
    }

    /// Starts timing a call of the method at gRPC `path` (`/etcdserverpb.KV/Range`).
    pub fn start(self: &Arc<Self>, path: &str) -> Call {
        Call {
            metrics: self.clone(),
            method: method_of(path),
            started: Instant::now(),
            done: false,
        }
    }

    /// Records one finished call.
    pub fn record(&self, method: &'static Method, code: Code, elapsed: Duration) {
        self.calls
            .get_or_create(&CallLabels {
                service: &method.service,
                method: &method.method,
                code: code_name(code),
            })
            .inc();
        if method.unary {
            self.durations
                .get_or_create(&MethodLabels {
                    service: &method.service,
                    method: &method.method,
                })
                .observe(elapsed.as_secs_f64());
        }
    }

    /// How many calls of `service`/`method` ended with `code`.
    #[cfg(test)]
    fn count(&self, service: &str, method: &str, code: Code) -> u64 {
        let m = METHODS
            .values()
            .find(|m| m.service == service && m.method == method)
            .unwrap_or(&UNKNOWN);
        self.calls
            .get(&CallLabels {
                service: &m.service,
                method: &m.method,
                code: code_name(code),
            })
            .map_or(0, |c| c.get())
    }
}

/// A call in progress; records itself once, as `Canceled` if dropped before its status.
#[derive(Debug)]
pub struct Call {
    metrics: Arc<GrpcMetrics>,
    method: &'static Method,
    started: Instant,
    done: bool,
}

impl Call {
    /// Records the call as ended with `code`.
    pub fn finish(mut self, code: Code) {
        self.done = true;
        self.metrics
            .record(self.method, code, self.started.elapsed());
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        if !self.done {
            self.metrics
                .record(self.method, Code::Cancelled, self.started.elapsed());
        }
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|v| Code::from_bytes(v.as_bytes()))
}

/// The layer: `tonic::transport::Server::builder().layer(GrpcMetricsLayer::new(..))`.
/// Without metrics it passes calls through untouched.
#[derive(Clone, Debug)]
pub struct GrpcMetricsLayer {
    metrics: Option<Arc<GrpcMetrics>>,
}

impl GrpcMetricsLayer {
    /// Records into `metrics`, or nothing when `None` (no metrics endpoint configured).
    pub fn new(metrics: Option<Arc<GrpcMetrics>>) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = Metered<S>;

    fn layer(&self, inner: S) -> Metered<S> {
        Metered {
            inner,
            metrics: self.metrics.clone(),
        }
    }
}

/// A service whose calls are recorded.
#[derive(Clone, Debug)]
pub struct Metered<S> {
    inner: S,
    metrics: Option<Arc<GrpcMetrics>>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Metered<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = MeteredFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        // gRPC is HTTP/2: the plain HTTP/1.1 requests the client port also answers
        // (`/health`, `/version`) are not RPCs.
        let rpc = request.version() == http::Version::HTTP_2;
        let pending = self
            .metrics
            .as_ref()
            .filter(|_| rpc)
            .map(|metrics| metrics.start(request.uri().path()));
        MeteredFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

pin_project! {
    /// The response of a [`Metered`] service.
    pub struct MeteredFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Call>,
    }
}

impl<F, ResBody, E> Future for MeteredFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
{
    type Output = Result<http::Response<MeteredBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
        let mut pending = this.pending.take();
        Poll::Ready(match result {
            Ok(response) => {
                // A trailers-only answer: the status is already here.
                if let Some(code) = grpc_status(response.headers())
                    && let Some(p) = pending.take()
                {
                    p.finish(code);
                }
                Ok(response.map(|inner| MeteredBody { inner, pending }))
            }
            Err(e) => {
                if let Some(p) = pending {
                    p.finish(Code::Unknown);
                }
                Err(e)
            }
        })
    }
}

pin_project! {
    /// A response body that records its call when the trailers carrying its status pass.
    pub struct MeteredBody<B> {
        #[pin]
        inner: B,
        pending: Option<Call>,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        let code = match &frame {
            Some(Ok(f)) => f
                .trailers_ref()
                .map(|t| grpc_status(t).unwrap_or(Code::Unknown)),
            // The body failed, or ended without a status: not a proper gRPC answer.
            Some(Err(_)) | None => Some(Code::Unknown),
        };
        if let Some(code) = code
            && let Some(p) = this.pending.take()
        {
            p.finish(code);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use futures::executor::block_on;
    use http_body_util::{BodyExt, StreamBody};
    use tower::{Layer, Service};

    use super::*;

    type TestBody =
        StreamBody<futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

    /// A service answering every call with `answer()`, or never when `None`.
    #[derive(Clone)]
    struct Answers(Option<fn() -> http::Response<TestBody>>);

    impl Service<http::Request<()>> for Answers {
        type Response = http::Response<TestBody>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            match self.0 {
                Some(answer) => Box::pin(std::future::ready(Ok(answer()))),
                None => Box::pin(std::future::pending()),
            }
        }
    }

    fn body(frames: Vec<Frame<Bytes>>) -> TestBody {
        StreamBody::new(futures::stream::iter(
            frames.into_iter().map(Ok).collect::<Vec<_>>(),
        ))
    }

    fn message_then_ok() -> http::Response<TestBody> {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        http::Response::new(body(vec![
            Frame::data(Bytes::from_static(b"message")),
            Frame::trailers(trailers),
        ]))
    }

    fn trailers_only_out_of_range() -> http::Response<TestBody> {
        let mut response = http::Response::new(body(Vec::new()));
        response
            .headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static("11"));
        response
    }

    fn service(
        answer: Option<fn() -> http::Response<TestBody>>,
    ) -> (Arc<GrpcMetrics>, Metered<Answers>) {
        let metrics = GrpcMetrics::register(&mut Registry::default());
        let layer = GrpcMetricsLayer::new(Some(metrics.clone()));
        (metrics, layer.layer(Answers(answer)))
    }

    fn call(path: &str) -> http::Request<()> {
        http::Request::builder()
            .version(http::Version::HTTP_2)
            .uri(path)
            .body(())
            .expect("a valid request")
    }

    #[test]
    fn plain_http_requests_are_not_counted_as_calls() {
        let (metrics, mut svc) = service(Some(trailers_only_out_of_range));
        let mut plain = call("/health");
        *plain.version_mut() = http::Version::HTTP_11;
        drop(block_on(svc.call(plain)));
        assert_eq!(metrics.count("unknown", "unknown", Code::OutOfRange), 0);
        drop(block_on(svc.call(call("/health"))));
        assert_eq!(
            metrics.count("unknown", "unknown", Code::OutOfRange),
            1,
            "the same over HTTP/2 is"
        );
    }

    #[test]
    fn a_call_counts_once_its_trailers_carry_the_status() {
        let (metrics, mut svc) = service(Some(message_then_ok));
        let response = block_on(svc.call(call("/etcdserverpb.KV/Put"))).expect("answered");
        assert_eq!(
            metrics.count("etcdserverpb.KV", "Put", Code::Ok),
            0,
            "the status is not sent yet"
        );
        block_on(response.into_body().collect()).expect("the body");
        assert_eq!(metrics.count("etcdserverpb.KV", "Put", Code::Ok), 1);
        let timed = metrics.durations.get(&MethodLabels {
            service: "etcdserverpb.KV",
            method: "Put",
        });
        assert!(timed.is_some(), "a unary call is timed");
    }

    #[test]
    fn a_trailers_only_error_counts_with_its_code_at_once() {
        let (metrics, mut svc) = service(Some(trailers_only_out_of_range));
        let response = block_on(svc.call(call("/etcdserverpb.KV/Range"))).expect("answered");
        assert_eq!(
            metrics.count("etcdserverpb.KV", "Range", Code::OutOfRange),
            1
        );
        block_on(response.into_body().collect()).expect("the body");
        assert_eq!(
            metrics.count("etcdserverpb.KV", "Range", Code::OutOfRange),
            1,
            "counted once"
        );
        assert_eq!(metrics.count("etcdserverpb.KV", "Range", Code::Unknown), 0);
    }

    #[test]
    fn a_call_abandoned_before_its_status_counts_as_canceled() {
        let (metrics, mut svc) = service(Some(message_then_ok));
        let response = block_on(svc.call(call("/etcdserverpb.Watch/Watch"))).expect("answered");
        drop(response);
        assert_eq!(
            metrics.count("etcdserverpb.Watch", "Watch", Code::Cancelled),
            1
        );
        assert!(
            metrics
                .durations
                .get(&MethodLabels {
                    service: "etcdserverpb.Watch",
                    method: "Watch",
                })
                .is_none(),
            "a stream's lifetime is not a latency"
        );

        let (metrics, mut svc) = service(None);
        drop(svc.call(call("/etcdserverpb.KV/Txn")));
        assert_eq!(metrics.count("etcdserverpb.KV", "Txn", Code::Cancelled), 1);
    }

    #[test]
    fn unknown_paths_share_one_label_set() {
        let (metrics, mut svc) = service(Some(trailers_only_out_of_range));
        for path in ["/a.B/C", "/etcdserverpb.KV/Nope", "/"] {
            drop(block_on(svc.call(call(path))));
        }
        assert_eq!(metrics.count("unknown", "unknown", Code::OutOfRange), 3);
    }

    #[test]
    fn every_etcd_method_is_known_by_its_path() {
        let range = method_of("/etcdserverpb.KV/Range");
        assert_eq!(
            (&*range.service, &*range.method),
            ("etcdserverpb.KV", "Range")
        );
        assert!(range.unary);
        let watch = method_of("/etcdserverpb.Watch/Watch");
        assert_eq!(&*watch.method, "Watch");
        assert!(!watch.unary, "a stream is not timed");
        assert!(!method_of("/etcdserverpb.Lease/LeaseKeepAlive").unary);
        assert!(method_of("/grpc.health.v1.Health/Check").unary);
        assert_eq!(
            &*method_of("/grpc.reflection.v1.ServerReflection/ServerReflectionInfo").method,
            "ServerReflectionInfo"
        );
        assert!(std::ptr::eq(method_of("/etcdserverpb.KV/Nope"), &UNKNOWN));
        assert!(std::ptr::eq(method_of("/x"), &UNKNOWN));
    }

    #[test]
    fn codes_are_named_as_go_names_them() {
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::Cancelled), "Canceled");
        assert_eq!(code_name(Code::from_bytes(b"11")), "OutOfRange");
    }
}
