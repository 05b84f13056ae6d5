//! The HTTP metrics and health endpoint of `t4 run --metrics-listen`: Prometheus metrics read
//! from the node at scrape time, per-RPC counters, etcd's `/health`, and the async-upload loss
//! window (`t4_unuploaded_entries`) growing while the bucket is unreachable and draining to 0.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, GetOptions};
use t4_e2e::http::{self, sample};
use t4_e2e::moto::Moto;
use t4_e2e::proxy::Proxy;
use t4_e2e::{T4, status, t4_bin};

const METRICS: &[&str] = &["--metrics-listen", "127.0.0.1:0"];

async fn scrape(address: &str) -> String {
    let answer = http::get(address, "/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    answer.body
}

/// The value of a sample that must be there.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(text, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?} in:\n{text}"))
}

fn put_calls(code: &'static str) -> [(&'static str, &'static str); 3] {
    [
        ("service", "etcdserverpb.KV"),
        ("method", "Put"),
        ("code", code),
    ]
}

#[tokio::test]
async fn metrics_show_the_node_and_count_every_call_by_method_and_code() {
    let t4 = T4::start(t4_bin!(), METRICS).await;
    let address = t4.metrics_endpoint();
    let mut c = t4.client().await;

    let before = scrape(&address).await;
    assert_eq!(
        sample(&before, "t4_grpc_requests_total", &put_calls("OK")),
        None
    );
    let mut revision = 0;
    for i in 0..5 {
        revision = c
            .put(format!("k{i}"), "v", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
    }
    // An error answered before any message (trailers-only): etcd's ErrFutureRev.
    let e = status(
        c.get("k0", Some(GetOptions::new().with_revision(revision + 100)))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), tonic::Code::OutOfRange);
    c.compact(revision - 2, None).await.unwrap();

    let text = scrape(&address).await;
    assert_eq!(value(&text, "t4_applied_revision", &[]), revision as f64);
    assert_eq!(
        value(&text, "t4_compact_revision", &[]),
        (revision - 2) as f64
    );
    assert_eq!(
        value(&text, "t4_grpc_requests_total", &put_calls("OK")),
        5.0
    );
    assert_eq!(
        value(
            &text,
            "t4_grpc_requests_total",
            &[("method", "Range"), ("code", "OutOfRange")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "t4_grpc_request_duration_seconds_count",
            &[("service", "etcdserverpb.KV"), ("method", "Put")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &text,
            "t4_grpc_request_duration_seconds_bucket",
            &[("method", "Put"), ("le", "+Inf")]
        ),
        5.0
    );
    assert_eq!(value(&text, "t4_serving", &[]), 1.0);
    assert_eq!(
        value(&text, "t4_unuploaded_entries", &[]),
        0.0,
        "no bucket: nothing can wait for upload"
    );
    assert!(value(&text, "t4_db_size_bytes", &[]) > 0.0);
    assert!(value(&text, "t4_wal_segments", &[]) >= 0.0);
    assert_eq!(
        value(
            &text,
            "t4_build_info",
            &[
                ("version", env!("CARGO_PKG_VERSION")),
                ("etcd_api", "3.5.0")
            ]
        ),
        1.0
    );

    // Gauges are read at scrape time: a later write shows at once.
    let next = c
        .put("k9", "v", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let text = scrape(&address).await;
    assert_eq!(value(&text, "t4_applied_revision", &[]), next as f64);
    assert_eq!(
        value(&text, "t4_grpc_requests_total", &put_calls("OK")),
        6.0
    );

    let health = http::get(&address, "/health").await;
    assert_eq!(health.status, 200, "{health:?}");
    assert_eq!(health.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["health"], "true", "{}", health.body);

    assert_eq!(http::get(&address, "/").await.status, 404);
    assert_eq!(http::get(&address, "/metricsx").await.status, 404);
    let post = http::request(&address, "POST", "/metrics").await.unwrap();
    assert_eq!(post.status, 405, "{post:?}");
}

#[tokio::test]
async fn health_answers_503_with_the_reason_while_an_alarm_is_raised() {
    let t4 = T4::start(t4_bin!(), METRICS).await;
    let address = t4.metrics_endpoint();
    let mut c = t4.client().await;
    let member = c.status().await.unwrap().header().unwrap().member_id();
    let mut on_member = AlarmOptions::new();
    on_member.with_member(member);

    c.alarm(
        AlarmAction::Activate,
        AlarmType::Nospace,
        Some(on_member.clone()),
    )
    .await
    .unwrap();
    let health = http::get(&address, "/health").await;
    assert_eq!(health.status, 503, "{health:?}");
    let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(body["health"], "false");
    assert_eq!(body["reason"], "ALARM NOSPACE");
    // As in etcd, a probe may choose to ignore NOSPACE.
    let excluded = http::get(&address, "/health?exclude=NOSPACE").await;
    assert_eq!(excluded.status, 200, "{excluded:?}");

    c.alarm(AlarmAction::Deactivate, AlarmType::Nospace, Some(on_member))
        .await
        .unwrap();
    let health = http::get(&address, "/health").await;
    assert_eq!(health.status, 200, "{health:?}");
}

#[tokio::test]
async fn the_endpoint_is_configured_by_its_variable_and_stops_with_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut t4 = T4::start_with_env(
        t4_bin!(),
        &dir.path().join("data"),
        &[],
        &[("T4_METRICS_LISTEN", "127.0.0.1:0")],
    )
    .await;
    let address = t4.metrics_endpoint();
    assert_eq!(http::get(&address, "/health").await.status, 200);
    t4.stop().await;
    assert!(
        http::request(&address, "GET", "/health").await.is_err(),
        "the endpoint outlived the server"
    );

    // Off by default: no endpoint is logged.
    let plain = T4::start(t4_bin!(), &[]).await;
    assert!(!plain.log().contains("serving metrics"), "{}", plain.log());
}

/// Polls `/metrics` until `t4_unuploaded_entries` satisfies `done`; returns its value then.
async fn wait_unuploaded(t4: &T4, address: &str, what: &str, done: impl Fn(f64) -> bool) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = scrape(address).await;
        let n = value(&text, "t4_unuploaded_entries", &[]);
        if done(n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "t4_unuploaded_entries stayed at {n}, expected {what}; log:\n{}",
            t4.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_async_upload_loss_window_is_a_metric() {
    let moto = Moto::start("metrics");
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().unwrap();
    let mut flags = moto.flags_via(&proxy.endpoint, "t4");
    flags.extend(["--wal-sync-upload=false".to_string()]);
    flags.extend(METRICS.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let t4 = T4::start_in(t4_bin!(), &tmp.path().join("data"), &flags).await;
    let address = t4.metrics_endpoint();
    let mut c = t4.client().await;

    c.put("before", "1", None).await.unwrap();
    wait_unuploaded(&t4, &address, "0 (uploaded)", |n| n == 0.0).await;

    // The bucket is unreachable: writes are still acknowledged (after the local fsync),
    // and each one widens the window.
    proxy.cut();
    for i in 0..3 {
        c.put(format!("during{i}"), "2", None).await.unwrap();
    }
    let window = wait_unuploaded(&t4, &address, "at least 3", |n| n >= 3.0).await;
    assert!(window >= 3.0);
    let health = http::get(&address, "/health").await;
    assert_eq!(health.status, 200, "an outage is not a failure: {health:?}");

    // The bucket is back: the window drains.
    proxy.restore();
    wait_unuploaded(&t4, &address, "0 (uploaded)", |n| n == 0.0).await;
}
