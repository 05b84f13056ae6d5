//! KV over the wire: Range with every option, Put, DeleteRange, Txn, Compact, headers.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use etcd_client::{
    CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, PutOptions, SortOrder,
    SortTarget, Txn, TxnOp, TxnOpResponse,
};
use t4_e2e::{T4, status, t4_bin};
use tonic::Code;

#[tokio::test]
async fn range_honours_every_option_and_reports_the_read_revision() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let r1 = c
        .put("a/1", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r2 = c
        .put("a/2", "yy", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r3 = c
        .put("a/3", "z", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("b/1", "other", None).await.unwrap();
    let r5 = c
        .put("a/1", "x2", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!((r2, r3, r5), (r1 + 1, r1 + 2, r1 + 4));

    let all = c
        .get("a/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.header().unwrap().revision(), r5);
    assert_eq!(all.count(), 3);
    let keys: Vec<&str> = all.kvs().iter().map(|kv| kv.key_str().unwrap()).collect();
    assert_eq!(keys, ["a/1", "a/2", "a/3"]);
    let a1 = &all.kvs()[0];
    assert_eq!(
        (a1.create_revision(), a1.mod_revision(), a1.version()),
        (r1, r5, 2)
    );

    let limited = c
        .get("a/", Some(GetOptions::new().with_prefix().with_limit(2)))
        .await
        .unwrap();
    assert_eq!(
        (limited.kvs().len(), limited.more(), limited.count()),
        (2, true, 3)
    );

    let counted = c
        .get(
            "a/",
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap();
    assert!(counted.kvs().is_empty());
    assert_eq!(counted.count(), 3);

    let keys_only = c
        .get("a/", Some(GetOptions::new().with_prefix().with_keys_only()))
        .await
        .unwrap();
    assert!(keys_only.kvs().iter().all(|kv| kv.value().is_empty()));

    let by_value_desc = c
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Value, SortOrder::Descend),
            ),
        )
        .await
        .unwrap();
    let values: Vec<&str> = by_value_desc
        .kvs()
        .iter()
        .map(|kv| kv.value_str().unwrap())
        .collect();
    assert_eq!(values, ["z", "yy", "x2"]);

    let old = c
        .get("a/1", Some(GetOptions::new().with_revision(r2)))
        .await
        .unwrap();
    assert_eq!(old.kvs()[0].value(), b"x");
    // The header says the store revision the read was served at, not the requested one.
    assert_eq!(old.header().unwrap().revision(), r5);

    let filtered = c
        .get(
            "a/",
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_min_mod_revision(r2)
                    .with_max_mod_revision(r3),
            ),
        )
        .await
        .unwrap();
    let keys: Vec<&str> = filtered
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(keys, ["a/2", "a/3"]);
    let created = c
        .get(
            "a/",
            Some(GetOptions::new().with_prefix().with_min_create_revision(r2)),
        )
        .await
        .unwrap();
    assert_eq!(created.kvs().len(), 2);

    let from = c
        .get("a/3", Some(GetOptions::new().with_from_key()))
        .await
        .unwrap();
    assert_eq!(from.count(), 2);
    let ser = c
        .get("a/2", Some(GetOptions::new().with_serializable()))
        .await
        .unwrap();
    assert_eq!(ser.kvs()[0].value(), b"yy");
    // A range whose end sorts before its key is empty, not an error (etcd).
    let backwards = c
        .get("b", Some(GetOptions::new().with_range("a")))
        .await
        .unwrap();
    assert_eq!(backwards.count(), 0);

    let future = c
        .get("a/1", Some(GetOptions::new().with_revision(r5 + 10)))
        .await
        .unwrap_err();
    let s = status(future);
    assert_eq!(s.code(), Code::OutOfRange);
    assert_eq!(
        s.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[tokio::test]
async fn put_and_delete_return_previous_pairs_and_honour_ignore_flags() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    c.put("k", "v1", None).await.unwrap();
    let p = c
        .put("k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .unwrap();
    assert_eq!(p.prev_key().unwrap().value(), b"v1");
    let lease = c.lease_grant(60, None).await.unwrap().id();
    c.put(
        "k",
        "",
        Some(PutOptions::new().with_ignore_value().with_lease(lease)),
    )
    .await
    .unwrap();
    let kv = c.get("k", None).await.unwrap().kvs()[0].clone();
    assert_eq!(
        (kv.value(), kv.lease(), kv.version()),
        (&b"v2"[..], lease, 3)
    );
    c.put("k", "v3", Some(PutOptions::new().with_ignore_lease()))
        .await
        .unwrap();
    assert_eq!(c.get("k", None).await.unwrap().kvs()[0].lease(), lease);
    let e = status(
        c.put("missing", "", Some(PutOptions::new().with_ignore_value()))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code(), e.message()),
        (Code::InvalidArgument, "etcdserver: key not found")
    );

    for k in ["d/1", "d/2", "d/3"] {
        c.put(k, k, None).await.unwrap();
    }
    let before = c
        .get("d/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let rev = before.header().unwrap().revision();
    let d = c
        .delete(
            "d/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .unwrap();
    assert_eq!(d.deleted(), 3);
    assert_eq!(d.prev_kvs().len(), 3);
    assert_eq!(
        d.header().unwrap().revision(),
        rev + 1,
        "one revision for the whole range"
    );
    let nothing = c
        .delete("d/", Some(DeleteOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(nothing.deleted(), 0);
    assert_eq!(
        nothing.header().unwrap().revision(),
        rev + 1,
        "no write, no new revision"
    );
    let backwards = c
        .delete("z", Some(DeleteOptions::new().with_range("a")))
        .await
        .unwrap();
    assert_eq!(backwards.deleted(), 0);
}

#[tokio::test]
async fn txn_runs_the_branch_its_compares_choose_atomically() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let rev = c
        .put("cas", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();

    let ok = c
        .txn(
            Txn::new()
                .when([
                    Compare::mod_revision("cas", CompareOp::Equal, rev),
                    Compare::version("cas", CompareOp::Equal, 1),
                    Compare::create_revision("cas", CompareOp::Equal, rev),
                    Compare::value("cas", CompareOp::Equal, "1"),
                    Compare::lease("cas", CompareOp::Equal, 0),
                    Compare::version("absent", CompareOp::Equal, 0),
                ])
                .and_then([
                    TxnOp::put("cas", "2", None),
                    TxnOp::put("other", "x", None),
                    TxnOp::get("cas", None),
                ])
                .or_else([TxnOp::get("cas", None)]),
        )
        .await
        .unwrap();
    assert!(ok.succeeded());
    assert_eq!(
        ok.header().unwrap().revision(),
        rev + 1,
        "two puts, one revision"
    );
    match &ok.op_responses()[2] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2", "reads see the txn's writes"),
        other => panic!("expected a get, got {other:?}"),
    }

    let failed = c
        .txn(
            Txn::new()
                .when([Compare::mod_revision("cas", CompareOp::Equal, rev)])
                .and_then([TxnOp::put("cas", "3", None)])
                .or_else([TxnOp::get("cas", None), TxnOp::delete("other", None)]),
        )
        .await
        .unwrap();
    assert!(!failed.succeeded());
    match &failed.op_responses()[0] {
        TxnOpResponse::Get(g) => assert_eq!(g.kvs()[0].value(), b"2"),
        other => panic!("expected a get, got {other:?}"),
    }
    match &failed.op_responses()[1] {
        TxnOpResponse::Delete(d) => assert_eq!(d.deleted(), 1),
        other => panic!("expected a delete, got {other:?}"),
    }
    let nested = c
        .txn(
            Txn::new().and_then([TxnOp::txn(
                Txn::new()
                    .when([Compare::value("cas", CompareOp::Greater, "1")])
                    .and_then([TxnOp::put("nested", "y", None)]),
            )]),
        )
        .await
        .unwrap();
    assert!(nested.succeeded());
    assert_eq!(c.get("nested", None).await.unwrap().kvs()[0].value(), b"y");
}

#[tokio::test]
async fn compaction_discards_history_and_physical_waits_for_it() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let first = c
        .put("h", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("h", "2", None).await.unwrap();
    let last = c
        .put("h", "3", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let resp = c
        .compact(last, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    assert_eq!(resp.header().unwrap().revision(), last);
    let e = status(
        c.get("h", Some(GetOptions::new().with_revision(first)))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code(), Code::OutOfRange);
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(
        c.get("h", Some(GetOptions::new().with_revision(last)))
            .await
            .unwrap()
            .kvs()[0]
            .value(),
        b"3"
    );
    let again = status(c.compact(last, None).await.unwrap_err());
    assert_eq!(
        again.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    let future = status(c.compact(last + 100, None).await.unwrap_err());
    assert_eq!(
        future.message(),
        "etcdserver: mvcc: required revision is a future revision"
    );
}

#[tokio::test]
async fn headers_carry_a_cluster_and_member_id_that_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut t4 = T4::start_in(t4_bin!(), &data, &["--node-id", "n1"]).await;
    let mut c = t4.client().await;
    let h = c
        .put("k", "v", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .clone();
    assert_ne!(h.cluster_id(), 0);
    assert_ne!(h.member_id(), 0);
    let members = c.member_list().await.unwrap();
    assert_eq!(members.members()[0].id(), h.member_id());
    t4.stop().await;

    let t4 = T4::start_in(t4_bin!(), &data, &["--node-id", "n1"]).await;
    let mut c = t4.client().await;
    let r = c.get("k", None).await.unwrap();
    let h2 = r.header().unwrap();
    assert_eq!(
        (h2.cluster_id(), h2.member_id()),
        (h.cluster_id(), h.member_id())
    );
    assert_eq!(
        h2.revision(),
        h.revision(),
        "the write survived the restart"
    );
    assert_eq!(r.kvs()[0].value(), b"v");
}
