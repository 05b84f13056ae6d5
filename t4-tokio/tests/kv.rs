//! put / get / range / delete / txn / compact through `t4::Node`, with etcd's semantics.
//!
//! The core's model tests cover the semantics exhaustively; these check that the embedded
//! API hands requests to the core and serves reads from the store the way etcd would.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b, open, pairs, request_error};
use t4::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest,
};

#[tokio::test]
async fn puts_get_etcd_revisions_versions_and_create_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    assert_eq!(
        node.current_revision(),
        1,
        "an empty store is at revision 1"
    );

    let r1 = node.put("a", "1").await.unwrap();
    assert_eq!(r1, 2);
    let r2 = node.put("b", "x").await.unwrap();
    let r3 = node.put("a", "2").await.unwrap();
    assert_eq!((r2, r3), (3, 4));
    assert_eq!(node.current_revision(), 4);

    let a = node.get("a").await.unwrap().unwrap();
    assert_eq!(a.value, "2");
    assert_eq!(a.create_revision, 2);
    assert_eq!(a.mod_revision, 4);
    assert_eq!(a.version, 2);
    assert_eq!(a.lease, 0);
    assert_eq!(node.get("missing").await.unwrap(), None);

    // A put after a delete starts a new generation of the key.
    node.delete("a").await.unwrap();
    let r6 = node.put("a", "3").await.unwrap();
    let a = node.get("a").await.unwrap().unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (r6, r6, 1));
    node.close().await.unwrap();
}

/// `get` has its own read path (no range request around it); it must answer exactly what a
/// single-key range answers, for live, rewritten, leased, deleted and missing keys, also
/// after a compaction and across a restart.
#[tokio::test]
async fn a_point_get_answers_what_a_single_key_range_answers() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let lease = node.lease_grant(60, 0).await.unwrap().id;
    node.put("live", "1").await.unwrap();
    node.put("rewritten", "1").await.unwrap();
    node.put("rewritten", "2").await.unwrap();
    node.put_with(PutRequest {
        key: b("leased"),
        value: b("v"),
        lease,
        ..Default::default()
    })
    .await
    .unwrap();
    node.put("deleted", "1").await.unwrap();
    node.delete("deleted").await.unwrap();
    let keys = ["live", "rewritten", "leased", "deleted", "missing"];
    let agree = |node: t4::Node| async move {
        for key in keys {
            let range = node
                .range(RangeRequest {
                    key: b(key),
                    ..Default::default()
                })
                .await
                .unwrap();
            let got = node.get(key).await.unwrap();
            assert_eq!(got, range.kvs.first().cloned(), "key {key}");
            assert_eq!(got.is_some(), !["deleted", "missing"].contains(&key));
        }
    };
    agree(node.clone()).await;
    node.compact(node.current_revision(), true).await.unwrap();
    agree(node.clone()).await;
    assert_eq!(node.get("leased").await.unwrap().unwrap().lease, lease);
    node.close().await.unwrap();
    let node = open(dir.path()).await;
    agree(node.clone()).await;
    node.close().await.unwrap();
}

#[tokio::test]
async fn put_options_return_the_previous_pair_and_keep_value_or_lease() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("k", "old").await.unwrap();
    let resp = node
        .put_with(PutRequest {
            key: b("k"),
            value: b("new"),
            prev_kv: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(resp.prev_kv.unwrap().value, "old");

    // ignore_value keeps the value and bumps the version.
    let resp = node
        .put_with(PutRequest {
            key: b("k"),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap();
    let kv = node.get("k").await.unwrap().unwrap();
    assert_eq!(
        (kv.value.as_ref(), kv.version, kv.mod_revision),
        (&b"new"[..], 3, resp.revision)
    );

    // ignore_value on a missing key is etcd's "key not found".
    let err = node
        .put_with(PutRequest {
            key: b("absent"),
            ignore_value: true,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(request_error(err), t4::RequestError::KeyNotFound);
    node.close().await.unwrap();
}

#[tokio::test]
async fn ranges_honour_prefix_limit_sort_count_and_old_revisions() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    for (k, v) in [("p/c", "3"), ("p/a", "1"), ("p/b", "2"), ("q", "x")] {
        node.put(k, v).await.unwrap();
    }
    let before_update = node.current_revision();
    node.put("p/a", "1b").await.unwrap();

    let all = node.get_prefix("p/").await.unwrap();
    assert_eq!(
        pairs(&all),
        [("p/a", "1b"), ("p/b", "2"), ("p/c", "3")].map(|(k, v)| (k.into(), v.into()))
    );

    let prefix = |limit, sort_order, sort_target| RangeRequest {
        key: b("p/"),
        range_end: b("p0"),
        limit,
        sort_order,
        sort_target,
        ..Default::default()
    };
    let limited = node
        .range(prefix(2, SortOrder::None, SortTarget::Key))
        .await
        .unwrap();
    assert_eq!(limited.kvs.len(), 2);
    assert!(limited.more);
    assert_eq!(limited.count, 3);
    assert_eq!(limited.revision, node.current_revision());

    let by_mod_desc = node
        .range(prefix(0, SortOrder::Descend, SortTarget::Mod))
        .await
        .unwrap();
    assert_eq!(by_mod_desc.kvs[0].key, "p/a", "p/a was written last");

    let count_only = node
        .range(RangeRequest {
            count_only: true,
            ..prefix(0, SortOrder::None, SortTarget::Key)
        })
        .await
        .unwrap();
    assert!(count_only.kvs.is_empty());
    assert_eq!(count_only.count, 3);

    let keys_only = node
        .range(RangeRequest {
            keys_only: true,
            ..prefix(0, SortOrder::None, SortTarget::Key)
        })
        .await
        .unwrap();
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty()));

    // A read at an older revision sees the store as it was then.
    let old = node
        .range(RangeRequest {
            key: b("p/a"),
            revision: before_update,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.kvs[0].value, "1");
    assert_eq!(
        old.revision,
        node.current_revision(),
        "the header revision is the current one"
    );

    // `"\0"` as range end means every key from `key` on.
    let from = node
        .range(RangeRequest {
            key: b("p/b"),
            range_end: b("\0"),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        from.kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        [b("p/b"), b("p/c"), b("q")]
    );
    node.close().await.unwrap();
}

#[tokio::test]
async fn deletes_report_what_they_removed_and_deleting_nothing_keeps_the_revision() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    for k in ["d/1", "d/2", "d/3", "e"] {
        node.put(k, k).await.unwrap();
    }
    let resp = node
        .delete_range(DeleteRangeRequest {
            key: b("d/"),
            range_end: b("d0"),
            prev_kv: true,
        })
        .await
        .unwrap();
    assert_eq!(resp.deleted, 3);
    assert_eq!(resp.prev_kvs.len(), 3);
    assert_eq!(resp.revision, node.current_revision());
    assert!(node.get_prefix("d/").await.unwrap().is_empty());

    let rev = node.current_revision();
    assert!(!node.delete("d/1").await.unwrap(), "already gone");
    assert_eq!(
        node.current_revision(),
        rev,
        "deleting nothing uses no revision"
    );
    assert!(node.delete("e").await.unwrap());
    assert_eq!(node.current_revision(), rev + 1);
    node.close().await.unwrap();
}

#[tokio::test]
async fn txn_compare_and_swap_runs_exactly_one_branch_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let rev = node.put("lock", "free").await.unwrap();

    let cas = |expected_mod: i64, new: &str| TxnRequest {
        compare: vec![Compare {
            key: b("lock"),
            result: CompareResult::Equal,
            target: CompareTarget::Mod(expected_mod),
            ..Default::default()
        }],
        success: vec![
            RequestOp::Put(PutRequest {
                key: b("lock"),
                value: b(new),
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: b("owner"),
                value: b(new),
                ..Default::default()
            }),
        ],
        failure: vec![RequestOp::Range(RangeRequest {
            key: b("lock"),
            ..Default::default()
        })],
    };

    let won = node.txn(cas(rev, "alice")).await.unwrap();
    assert!(won.succeeded);
    assert_eq!(won.revision, rev + 1, "both puts share one revision");
    let lock = node.get("lock").await.unwrap().unwrap();
    let owner = node.get("owner").await.unwrap().unwrap();
    assert_eq!((lock.mod_revision, owner.mod_revision), (rev + 1, rev + 1));

    // The same compare now fails: the failure branch runs and writes nothing.
    let lost = node.txn(cas(rev, "bob")).await.unwrap();
    assert!(!lost.succeeded);
    assert_eq!(lost.revision, rev + 1);
    let ResponseOp::Range(seen) = &lost.responses[0] else {
        panic!("the failure branch is a range: {:?}", lost.responses)
    };
    assert_eq!(seen.kvs[0].value, "alice");
    assert_eq!(node.current_revision(), rev + 1);

    // Value and version compares, and etcd's duplicate-key check.
    let by_value = TxnRequest {
        compare: vec![
            Compare {
                key: b("owner"),
                target: CompareTarget::Value(b("alice")),
                ..Default::default()
            },
            Compare {
                key: b("nobody"),
                target: CompareTarget::Version(0),
                ..Default::default()
            },
        ],
        success: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("owner"),
            ..Default::default()
        })],
        failure: vec![],
    };
    assert!(node.txn(by_value).await.unwrap().succeeded);
    assert_eq!(node.get("owner").await.unwrap(), None);

    let twice = TxnRequest {
        success: vec![
            RequestOp::Put(PutRequest {
                key: b("x"),
                ..Default::default()
            }),
            RequestOp::Put(PutRequest {
                key: b("x"),
                ..Default::default()
            }),
        ],
        ..Default::default()
    };
    let rev = node.current_revision();
    assert_eq!(
        request_error(node.txn(twice).await.unwrap_err()),
        t4::RequestError::DuplicateKey
    );
    assert_eq!(node.current_revision(), rev);
    node.close().await.unwrap();
}

#[tokio::test]
async fn compaction_discards_older_revisions_and_refuses_reads_below_it() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let r1 = node.put("k", "1").await.unwrap();
    let r2 = node.put("k", "2").await.unwrap();
    let r3 = node.put("k", "3").await.unwrap();
    assert_eq!(node.compact_revision(), 0);

    let resp = node.compact(r2, true).await.unwrap();
    assert_eq!(resp.revision, r3);
    assert_eq!(node.compact_revision(), r2);
    assert_eq!(node.current_revision(), r3, "compaction uses no revision");

    let at = |revision| RangeRequest {
        key: b("k"),
        revision,
        ..Default::default()
    };
    assert_eq!(
        request_error(node.range(at(r1)).await.unwrap_err()),
        t4::RequestError::Compacted
    );
    assert_eq!(node.range(at(r2)).await.unwrap().kvs[0].value, "2");
    assert_eq!(node.range(at(r3)).await.unwrap().kvs[0].value, "3");
    assert_eq!(
        request_error(node.range(at(r3 + 1)).await.unwrap_err()),
        t4::RequestError::FutureRevision
    );

    // etcd refuses compacting at or below the compact revision, or in the future.
    assert_eq!(
        request_error(node.compact(r2, false).await.unwrap_err()),
        t4::RequestError::Compacted
    );
    assert_eq!(
        request_error(node.compact(r3 + 10, false).await.unwrap_err()),
        t4::RequestError::FutureRevision
    );
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_revision_returns_once_a_write_from_another_task_is_visible() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let target = node.current_revision() + 3;
    let waiter = {
        let node = node.clone();
        tokio::spawn(async move { node.wait_for_revision(target).await })
    };
    for i in 0..3 {
        node.put(format!("k{i}"), "v").await.unwrap();
    }
    let seen = common::within("wait_for_revision", waiter)
        .await
        .unwrap()
        .unwrap();
    assert!(seen >= target);
    assert_eq!(node.get("k2").await.unwrap().unwrap().mod_revision, target);
    // An already-reached revision returns at once.
    assert_eq!(
        node.wait_for_revision(2).await.unwrap(),
        node.current_revision()
    );
    node.close().await.unwrap();
}
