//! What survives `close` and `open` of the same data dir: every acknowledged write with its
//! revision and history, the revision counter, leases (with a full TTL), compaction.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b, open, request_error};
use t4::RangeRequest;

#[tokio::test]
async fn acknowledged_writes_and_their_history_survive_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let mut revs = Vec::new();
    for i in 0..50 {
        revs.push(
            node.put(format!("key/{:02}", i % 10), format!("v{i}"))
                .await
                .unwrap(),
        );
    }
    node.delete("key/00").await.unwrap();
    let before = node.current_revision();
    let snapshot = node.get_prefix("key/").await.unwrap();
    node.close().await.unwrap();

    let node = open(dir.path()).await;
    assert_eq!(node.current_revision(), before);
    assert_eq!(node.get_prefix("key/").await.unwrap(), snapshot);
    // Older revisions are still readable: the history survived too.
    let old = node
        .range(RangeRequest {
            key: b("key/03"),
            revision: revs[3],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, "v3");
    assert_eq!(old.kvs[0].version, 1);
    node.close().await.unwrap();
}

#[tokio::test]
async fn revisions_continue_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("a", "1").await.unwrap();
    let last = node.put("a", "2").await.unwrap();
    node.close().await.unwrap();

    for round in 1..=3 {
        let node = open(dir.path()).await;
        let rev = node.put("a", format!("round {round}")).await.unwrap();
        assert_eq!(
            rev,
            last + round,
            "no revision is reused or skipped across restarts"
        );
        let kv = node.get("a").await.unwrap().unwrap();
        assert_eq!(kv.version, 2 + round);
        assert_eq!(kv.create_revision, 2);
        node.close().await.unwrap();
    }
}

#[tokio::test]
async fn after_close_every_handle_fails_with_closed_and_the_dir_reopens_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let other = node.clone();
    let rev = node.put("a", "1").await.unwrap();
    node.close().await.unwrap();
    assert!(matches!(other.put("a", "2").await, Err(t4::Error::Closed)));
    assert!(matches!(
        other.lease_grant(10, 0).await,
        Err(t4::Error::Closed)
    ));
    assert!(matches!(other.get("a").await, Err(t4::Error::Closed)));
    assert_eq!(
        other.current_revision(),
        rev,
        "the revision at close stays readable"
    );
    // Closing twice is harmless.
    other.close().await.unwrap();

    // `other` is still alive: close released the data dir anyway.
    let node = open(dir.path()).await;
    assert_eq!(node.get("a").await.unwrap().unwrap().value, "1");
    node.close().await.unwrap();
}

#[tokio::test]
async fn leases_survive_restart_with_their_full_ttl_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let lease = node.lease_grant(600, 0).await.unwrap();
    assert_eq!(lease.ttl, 600);
    node.put_with(t4::PutRequest {
        key: b("session/a"),
        value: b("alive"),
        lease: lease.id,
        ..Default::default()
    })
    .await
    .unwrap();
    let revoked = node.lease_grant(600, 42).await.unwrap();
    node.lease_revoke(revoked.id).await.unwrap();
    node.close().await.unwrap();

    let node = open(dir.path()).await;
    assert_eq!(node.lease_leases().await.unwrap().leases, vec![lease.id]);
    let ttl = node.lease_time_to_live(lease.id, true).await.unwrap();
    assert_eq!(ttl.granted_ttl, 600);
    // As in etcd, a restart gives every lease its full TTL again.
    assert!(ttl.ttl >= 599, "remaining TTL {} after restart", ttl.ttl);
    assert_eq!(ttl.keys, vec![b("session/a")]);
    assert_eq!(
        node.get("session/a").await.unwrap().unwrap().lease,
        lease.id
    );
    // The revoked lease stays gone.
    assert_eq!(node.lease_time_to_live(42, false).await.unwrap().ttl, -1);
    // The surviving lease still owns its key: revoking it deletes the key.
    node.lease_revoke(lease.id).await.unwrap();
    assert_eq!(node.get("session/a").await.unwrap(), None);
    node.close().await.unwrap();
}

#[tokio::test]
async fn compaction_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let r1 = node.put("k", "1").await.unwrap();
    let r2 = node.put("k", "2").await.unwrap();
    node.compact(r2, true).await.unwrap();
    node.close().await.unwrap();

    let node = open(dir.path()).await;
    assert_eq!(node.compact_revision(), r2);
    let err = node
        .range(RangeRequest {
            key: b("k"),
            revision: r1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(request_error(err), t4::RequestError::Compacted);
    assert_eq!(node.get("k").await.unwrap().unwrap().value, "2");
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_data_dir_open_in_one_node_cannot_be_opened_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("a", "1").await.unwrap();
    let err = t4::Node::open(common::config(dir.path()))
        .await
        .unwrap_err();
    eprintln!("second open: {err}");
    assert!(matches!(err, t4::Error::Store(_)), "{err:?}");
    // The first node is unaffected.
    node.put("a", "2").await.unwrap();
    assert_eq!(node.get("a").await.unwrap().unwrap().value, "2");
    node.close().await.unwrap();
}
