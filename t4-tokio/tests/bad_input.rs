//! Bad input through `t4::Node`: each request gets etcd's error (or t4's, where etcd has
//! none) and changes nothing — the revision and the data stay as they were.

#![allow(clippy::unwrap_used)]

mod common;

use bytes::Bytes;
use common::{b, open, request_error};
use t4::{
    Compare, DeleteRangeRequest, KeyRange, PutRequest, RangeRequest, RequestError, RequestOp,
    TxnRequest, WatchOptions,
};

/// Asserts that `result` failed with `expected` and that the node's data did not change.
async fn refused<T: std::fmt::Debug>(
    node: &t4::Node,
    result: t4::Result<T>,
    expected: RequestError,
) {
    let rev = node.current_revision();
    let err = request_error(result.unwrap_err());
    assert_eq!(err, expected);
    assert!(!err.to_string().is_empty());
    assert_eq!(
        node.current_revision(),
        rev,
        "a refused request uses no revision"
    );
    let all = node
        .range(RangeRequest {
            key: b("\0"),
            range_end: b("\0"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        common::pairs(&all.kvs),
        vec![("existing".to_string(), "value".to_string())],
        "a refused request changes no key"
    );
}

async fn node_with_one_key(dir: &std::path::Path) -> t4::Node {
    let node = open(dir).await;
    node.put("existing", "value").await.unwrap();
    node
}

#[tokio::test]
async fn empty_keys_are_refused_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_one_key(dir.path()).await;
    refused(&node, node.put("", "v").await, RequestError::EmptyKey).await;
    refused(&node, node.get("").await, RequestError::EmptyKey).await;
    refused(&node, node.delete("").await, RequestError::EmptyKey).await;
    let txn = TxnRequest {
        compare: vec![Compare::default()],
        ..Default::default()
    };
    refused(&node, node.txn(txn).await, RequestError::EmptyKey).await;
    let txn = TxnRequest {
        success: vec![RequestOp::Put(PutRequest::default())],
        ..Default::default()
    };
    refused(&node, node.txn(txn).await, RequestError::EmptyKey).await;
    node.close().await.unwrap();
}

#[tokio::test]
async fn oversized_keys_and_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_one_key(dir.path()).await;
    let long = Bytes::from(vec![b'k'; t4::MAX_KEY_LEN + 1]);
    let too_long = RequestError::KeyTooLarge {
        len: t4::MAX_KEY_LEN + 1,
    };
    refused(&node, node.put(long.clone(), "v").await, too_long.clone()).await;
    refused(&node, node.get(long.clone()).await, too_long.clone()).await;
    let txn = TxnRequest {
        success: vec![RequestOp::Put(PutRequest {
            key: long.clone(),
            ..Default::default()
        })],
        ..Default::default()
    };
    refused(&node, node.txn(txn).await, too_long.clone()).await;
    // The longest allowed key works.
    let longest = Bytes::from(vec![b'k'; t4::MAX_KEY_LEN]);
    node.put(longest.clone(), "v").await.unwrap();
    assert_eq!(node.get(longest.clone()).await.unwrap().unwrap().value, "v");
    node.delete(longest).await.unwrap();

    // A value beyond max_request_bytes (etcd's 1.5 MiB by default).
    let huge = Bytes::from(vec![0u8; 2 << 20]);
    refused(
        &node,
        node.put("big", huge).await,
        RequestError::RequestTooLarge,
    )
    .await;
    node.close().await.unwrap();
}

#[tokio::test]
async fn range_ends_longer_than_any_key_are_valid_and_crash_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_one_key(dir.path()).await;
    // Far beyond what the storage engine can hold as a key (64 KiB).
    let huge = Bytes::from(vec![b'z'; 200_000]);
    // As a key it is over the limit, for reads as for writes.
    let too_long = RequestError::KeyTooLarge { len: huge.len() };
    refused(&node, node.get(huge.clone()).await, too_long.clone()).await;
    refused(&node, node.delete(huge.clone()).await, too_long).await;
    let up_to_huge = node
        .range(RangeRequest {
            key: b("a"),
            range_end: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        up_to_huge.kvs.len(),
        1,
        "a range end is only a bound: any length is valid"
    );
    let rev = node.current_revision();
    let resp = node
        .delete_range(DeleteRangeRequest {
            key: b("f"),
            range_end: huge.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((resp.deleted, resp.revision), (0, rev));
    // Through the core (a txn is evaluated on the core's thread): no panic there either.
    let txn = TxnRequest {
        compare: vec![Compare {
            key: b("a"),
            range_end: huge.clone(),
            target: t4::CompareTarget::Version(0),
            result: t4::CompareResult::Greater,
        }],
        success: vec![RequestOp::Range(RangeRequest {
            key: b("a"),
            range_end: huge.clone(),
            ..Default::default()
        })],
        ..Default::default()
    };
    let resp = node.txn(txn).await.unwrap();
    assert!(resp.succeeded);
    // The node is still healthy.
    assert_eq!(node.put("after", "ok").await.unwrap(), rev + 1);
    assert_eq!(node.failure(), None);
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_smaller_max_request_bytes_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.max_request_bytes = 1024;
    let node = t4::Node::open(config).await.unwrap();
    node.put("existing", "value").await.unwrap();
    refused(
        &node,
        node.put("k", "x".repeat(2000)).await,
        RequestError::RequestTooLarge,
    )
    .await;
    let txn = TxnRequest {
        success: (0..10)
            .map(|i| {
                RequestOp::Put(PutRequest {
                    key: format!("k{i}").into(),
                    value: "x".repeat(200).into(),
                    ..Default::default()
                })
            })
            .collect(),
        ..Default::default()
    };
    refused(&node, node.txn(txn).await, RequestError::RequestTooLarge).await;
    node.close().await.unwrap();
}

#[tokio::test]
async fn unknown_leases_and_bad_ttls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_one_key(dir.path()).await;
    let put = node
        .put_with(PutRequest {
            key: b("k"),
            value: b("v"),
            lease: 4242,
            ..Default::default()
        })
        .await;
    refused(&node, put, RequestError::LeaseNotFound).await;
    refused(
        &node,
        node.lease_revoke(4242).await,
        RequestError::LeaseNotFound,
    )
    .await;
    refused(
        &node,
        node.lease_grant(9_000_000_001, 0).await,
        RequestError::LeaseTtlTooLarge,
    )
    .await;
    assert!(node.lease_leases().await.unwrap().leases.is_empty());
    node.close().await.unwrap();
}

#[tokio::test]
async fn invalid_ranges_and_revisions_are_refused_or_match_nothing_as_in_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_with_one_key(dir.path()).await;
    let rev = node.current_revision();

    // A watch on a range whose end sorts before its start is refused (etcd too).
    let watch = node
        .watch(KeyRange::Between(b("z"), b("a")), WatchOptions::default())
        .await;
    refused(&node, watch, RequestError::InvalidRange).await;

    // Ranges and deletes over such a range hold no key, as in etcd: empty, and no revision.
    let inverted = RangeRequest {
        key: b("z"),
        range_end: b("a"),
        ..Default::default()
    };
    let resp = node.range(inverted).await.unwrap();
    assert!(resp.kvs.is_empty());
    assert_eq!(resp.count, 0);
    let resp = node
        .delete_range(DeleteRangeRequest {
            key: b("z"),
            range_end: b("a"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!((resp.deleted, resp.revision), (0, rev));

    // Reads at revisions that do not exist yet.
    let future = RangeRequest {
        key: b("existing"),
        revision: rev + 1,
        ..Default::default()
    };
    refused(
        &node,
        node.range(future).await,
        RequestError::FutureRevision,
    )
    .await;
    refused(
        &node,
        node.compact(rev + 1, false).await,
        RequestError::FutureRevision,
    )
    .await;

    // Too many operations in a txn.
    let txn = TxnRequest {
        success: (0..129)
            .map(|i| {
                RequestOp::Put(PutRequest {
                    key: format!("k{i}").into(),
                    ..Default::default()
                })
            })
            .collect(),
        ..Default::default()
    };
    refused(&node, node.txn(txn).await, RequestError::TooManyOps).await;
    node.close().await.unwrap();
}
