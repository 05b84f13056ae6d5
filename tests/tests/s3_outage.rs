//! The bucket becomes unreachable while t4 runs: in sync-upload mode writes fail fast with a
//! retryable error, reads and lease keepalives keep working, and writes resume by themselves
//! once the bucket is back. The outage is a TCP proxy between t4 and moto that the test cuts
//! and restores, or moto dying.

#![allow(clippy::disallowed_methods)] // end-to-end tests run against real processes and real time

use std::time::{Duration, Instant};

use t4_e2e::moto::Moto;
use t4_e2e::proxy::Proxy;
use t4_e2e::{T4, status, t4_bin};

/// Sends one keepalive of lease `id` on a new stream and returns the TTL it answers.
async fn keep_alive_once(client: &mut etcd_client::Client, id: i64) -> i64 {
    let (mut keeper, mut stream) = client.lease_keep_alive(id).await.expect("keepalive stream");
    keeper.keep_alive().await.expect("keepalive sent");
    let answer = tokio::time::timeout(Duration::from_secs(20), stream.message())
        .await
        .expect("the keepalive is answered")
        .expect("the keepalive is not refused")
        .expect("one answer");
    answer.ttl()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_fast_during_an_outage_and_resume_after_it() {
    let moto = Moto::start("outage");
    let proxy = Proxy::start(moto.port);
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags = moto.flags_via(&proxy.endpoint, "t4");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = T4::start_in(t4_bin!(), &tmp.path().join("data"), &flags).await;
    let mut client = server.client().await;
    client.put("before", "1", None).await.expect("put");
    let lease = client.lease_grant(30, None).await.expect("grant").id();

    proxy.cut();
    let started = Instant::now();
    let e = client
        .put("during", "2", None)
        .await
        .expect_err("a write cannot be made durable in the bucket");
    let elapsed = started.elapsed();
    let e = status(e);
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        e.message().contains("object store"),
        "the message says what is wrong: {e:?}"
    );
    assert!(
        elapsed < Duration::from_secs(20),
        "writes fail fast, not after {elapsed:?}"
    );
    // Reads keep working.
    let got = client.get("before", None).await.expect("reads work");
    assert_eq!(got.kvs()[0].value(), b"1");
    // The node knows the bucket is down (it just failed the write), yet keeps the lease alive.
    assert_eq!(keep_alive_once(&mut client, lease).await, 30);
    let ttl = client.lease_time_to_live(lease, None).await.expect("ttl");
    assert!((1..=30).contains(&ttl.ttl()), "{ttl:?}");
    let listed = client.leases().await.expect("lease list");
    assert!(listed.leases().iter().any(|l| l.id() == lease));

    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(60);
    let revision = loop {
        match client.put("after", "3", None).await {
            Ok(resp) => break resp.header().expect("header").revision(),
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "writes did not resume: {e}; log:\n{}",
                    server.log()
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let got = client.get("after", None).await.expect("get");
    assert_eq!(got.kvs()[0].mod_revision(), revision);
    assert!(
        !moto.keys("t4/wal/").await.is_empty(),
        "uploads reached the bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_fail_fast_and_reads_and_keepalives_work_when_the_s3_server_dies() {
    let mut moto = Moto::start("dies");
    let tmp = tempfile::tempdir().expect("tempdir");
    let flags = moto.flags("t4");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = T4::start_in(t4_bin!(), &tmp.path().join("data"), &flags).await;
    let mut client = server.client().await;
    client.put("k", "v", None).await.expect("put");
    let lease = client.lease_grant(30, None).await.expect("grant").id();

    moto.kill();
    let started = Instant::now();
    let e = status(
        client
            .put("k", "lost?", None)
            .await
            .expect_err("no bucket, no durable write"),
    );
    assert_eq!(e.code(), tonic::Code::Unavailable, "{e:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "fails fast, not after {:?}",
        started.elapsed()
    );
    let got = client.get("k", None).await.expect("reads work");
    assert_eq!(got.kvs().len(), 1);
    assert_eq!(
        keep_alive_once(&mut client, lease).await,
        30,
        "keepalives work without the bucket"
    );
}
