//! Cluster membership, the Auth service while authentication is off, gRPC health.
//! (Authentication itself: `auth.rs`.)

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use t4_e2e::{T4, http, status, t4_bin};
use t4_proto::health::v1::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic::Code;

#[tokio::test]
async fn member_list_returns_this_member_and_membership_changes_are_unimplemented() {
    let t4 = T4::start(
        t4_bin!(),
        &[
            "--node-id",
            "alpha",
            "--advertise-client-urls",
            "http://db.example:3379",
        ],
    )
    .await;
    let mut c = t4.client().await;
    let list = c.member_list().await.unwrap();
    let members = list.members();
    assert_eq!(members.len(), 1);
    let m = &members[0];
    assert_eq!(m.id(), list.header().unwrap().member_id());
    assert_eq!(m.name(), "alpha");
    assert_eq!(m.client_urls(), ["http://db.example:3379"]);
    assert!(!m.is_learner());
    let e = status(c.member_add(["http://peer:2380"], None).await.unwrap_err());
    assert_eq!(e.code(), Code::Unimplemented);
    assert!(e.message().contains("membership"), "{}", e.message());
    assert_eq!(
        status(c.member_remove(m.id()).await.unwrap_err()).code(),
        Code::Unimplemented
    );
}

#[tokio::test]
async fn the_default_client_url_is_the_listen_address() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let list = c.member_list().await.unwrap();
    assert_eq!(
        list.members()[0].client_urls(),
        [format!("http://{}", t4.endpoint)]
    );
}

#[tokio::test]
async fn auth_is_reported_disabled_with_etcds_errors() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let mut auth = c.auth_client();
    let e = status(
        auth.authenticate("root".into(), "pw".into())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled"
        )
    );
    // Enabling needs a root user with the root role, as in etcd.
    let e = status(c.auth_enable().await.unwrap_err());
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::FailedPrecondition,
            "etcdserver: root user does not exist"
        )
    );
    c.auth_disable().await.unwrap();
    // A client configured with credentials fails clearly instead of hanging.
    let with_user = etcd_client::Client::connect(
        [&t4.endpoint],
        Some(etcd_client::ConnectOptions::new().with_user("root", "pw")),
    )
    .await;
    assert!(with_user.is_err());
}

#[tokio::test]
async fn health_says_serving() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut health = HealthClient::new(t4.channel().await);
    for service in ["", "etcdserverpb.KV"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.status, ServingStatus::Serving as i32);
    }
    let e = health
        .check(HealthCheckRequest {
            service: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn the_client_port_answers_plain_http_health_and_version_as_etcd() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let health = http::get(&t4.endpoint, "/health").await;
    assert_eq!(health.status, 200);
    assert_eq!(health.header("content-type"), Some("application/json"));
    assert_eq!(health.body, r#"{"health":"true","reason":""}"#);
    let version = http::get(&t4.endpoint, "/version").await;
    assert_eq!(version.status, 200);
    assert_eq!(
        version.body,
        r#"{"etcdserver":"3.5.0","etcdcluster":"3.5.0"}"#
    );
    assert_eq!(http::get(&t4.endpoint, "/no-such-path").await.status, 404);
    // The JSON gateway's methods take POST only, as etcd's (gateway.rs tests them).
    assert_eq!(http::get(&t4.endpoint, "/v3/kv/range").await.status, 405);
    let post = http::request(&t4.endpoint, "POST", "/health")
        .await
        .unwrap();
    assert_eq!(post.status, 405);
    // gRPC on the same port is unaffected.
    let mut c = t4.client().await;
    c.put("k", "v", None).await.unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].value(), b"v");
}
