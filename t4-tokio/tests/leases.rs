//! Leases through `t4::Node`: grant, keepalive, time-to-live, list, revoke, and expiry
//! deleting the attached keys (observed through a watch, as a client would).

#![allow(clippy::unwrap_used)]

mod common;

use common::{b, open, request_error, within};
use t4::{EventKind, KeyRange, PutRequest, WatchOptions};

#[tokio::test]
async fn grant_keepalive_ttl_list_and_revoke_behave_like_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let rev = node.current_revision();

    let a = node.lease_grant(60, 0).await.unwrap();
    assert_ne!(a.id, 0, "id 0 asks for a generated id");
    assert_eq!(a.ttl, 60);
    let b_lease = node.lease_grant(30, 77).await.unwrap();
    assert_eq!(b_lease.id, 77);
    assert_eq!(
        request_error(node.lease_grant(30, 77).await.unwrap_err()),
        t4::RequestError::LeaseExists
    );
    // A TTL below the minimum is raised to it.
    let short = node.lease_grant(1, 0).await.unwrap();
    assert_eq!(short.ttl, t4::Config::new("unused").min_lease_ttl);
    assert_eq!(node.current_revision(), rev, "grants use no revision");

    let mut ids = vec![a.id, 77, short.id];
    ids.sort();
    assert_eq!(node.lease_leases().await.unwrap().leases, ids);

    assert_eq!(node.lease_keep_alive(a.id).await.unwrap(), 60);
    assert_eq!(
        node.lease_keep_alive(12345).await.unwrap(),
        0,
        "unknown lease: TTL 0"
    );
    let ttl = node.lease_time_to_live(a.id, false).await.unwrap();
    assert_eq!(ttl.granted_ttl, 60);
    assert!((59..=60).contains(&ttl.ttl), "remaining {}", ttl.ttl);
    assert_eq!(node.lease_time_to_live(12345, false).await.unwrap().ttl, -1);

    // Revoking deletes every attached key in one revision.
    for k in ["s/1", "s/2"] {
        node.put_with(PutRequest {
            key: b(k),
            value: b("v"),
            lease: a.id,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    node.put("s/3", "no lease").await.unwrap();
    let ttl = node.lease_time_to_live(a.id, true).await.unwrap();
    assert_eq!(ttl.keys, vec![b("s/1"), b("s/2")]);
    let before = node.current_revision();
    let revoked_at = node.lease_revoke(a.id).await.unwrap();
    assert_eq!(revoked_at, before + 1);
    assert_eq!(
        common::pairs(&node.get_prefix("s/").await.unwrap()),
        vec![("s/3".to_string(), "no lease".to_string())]
    );
    assert_eq!(
        request_error(node.lease_revoke(a.id).await.unwrap_err()),
        t4::RequestError::LeaseNotFound
    );
    node.close().await.unwrap();
}

#[tokio::test]
async fn moving_a_key_to_another_lease_detaches_it_from_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let first = node.lease_grant(60, 1).await.unwrap().id;
    let second = node.lease_grant(60, 2).await.unwrap().id;
    for lease in [first, second] {
        node.put_with(PutRequest {
            key: b("k"),
            value: b("v"),
            lease,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    node.lease_revoke(first).await.unwrap();
    assert_eq!(node.get("k").await.unwrap().unwrap().lease, second);
    node.lease_revoke(second).await.unwrap();
    assert_eq!(node.get("k").await.unwrap(), None);
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_deletes_its_keys_in_one_revision_seen_by_a_watch() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.min_lease_ttl = 1;
    let node = t4::Node::open(config).await.unwrap();
    let lease = node.lease_grant(1, 0).await.unwrap();
    assert_eq!(lease.ttl, 1);
    for k in ["eph/a", "eph/b"] {
        node.put_with(PutRequest {
            key: b(k),
            value: b("v"),
            lease: lease.id,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    node.put("eph/keep", "no lease").await.unwrap();
    let mut watch = node
        .watch(KeyRange::prefix("eph/"), WatchOptions::default())
        .await
        .unwrap();

    // No sleeping: the expiry's DELETE events are what we wait for.
    let mut deleted = Vec::new();
    while deleted.len() < 2 {
        for event in within("the lease to expire", watch.next_batch())
            .await
            .unwrap()
        {
            assert_eq!(event.kind, EventKind::Delete, "{event:?}");
            deleted.push(event);
        }
    }
    assert_eq!(deleted[0].kv.key, "eph/a");
    assert_eq!(deleted[1].kv.key, "eph/b");
    assert_eq!(
        deleted[0].kv.mod_revision, deleted[1].kv.mod_revision,
        "an expiry deletes every key of the lease in one revision"
    );
    node.wait_for_revision(deleted[0].kv.mod_revision)
        .await
        .unwrap();
    assert_eq!(
        common::pairs(&node.get_prefix("eph/").await.unwrap()),
        vec![("eph/keep".to_string(), "no lease".to_string())]
    );
    assert_eq!(
        node.lease_time_to_live(lease.id, false).await.unwrap().ttl,
        -1
    );
    assert!(node.lease_leases().await.unwrap().leases.is_empty());
    node.close().await.unwrap();
}
