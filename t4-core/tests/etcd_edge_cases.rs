//! Corners of etcd's semantics that t4 reproduces on purpose, each pinned by the etcd code
//! that decides it. The model test (`model.rs`) found the first three.

mod support;

use bytes::Bytes;
use t4_core::kv::KeyRange;
use t4_core::mvcc;
use t4_core::request::{
    DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, SortOrder, SortTarget, TxnRequest,
};
use t4_core::watch::{self, WatchFilter};
use t4_core::{Config, Event, EventKind, Request, Response, Store};

use support::{Driver, b};

fn put(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    })
}

fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare: vec![],
        success,
        failure,
    }
}

/// Every event of `revision`, as published live and as replayed from the store.
fn events_at(d: &Driver, revision: i64) -> (Vec<Event>, Vec<Event>) {
    let live = d
        .events()
        .into_iter()
        .filter(|e| e.revision() == revision)
        .collect();
    let filter = WatchFilter {
        range: KeyRange::From(Bytes::new()),
        no_put: false,
        no_delete: false,
        prev_kv: true,
    };
    let replayed = watch::replay(&d.store.view(), &filter, revision, usize::MAX)
        .expect("replay")
        .events;
    (live, replayed)
}

/// etcd's `checkIntervals` keeps the keys a level puts in a set: a key that both branches of a
/// nested txn put counts once for the levels above.
#[test]
fn a_key_both_branches_of_a_nested_txn_put_is_not_a_duplicate_further_up() {
    let mut d = Driver::new(Config::default());
    let inner = txn(vec![put("c", "then")], vec![put("c", "else")]);
    let middle = txn(vec![RequestOp::Txn(inner)], vec![]);
    let outer = txn(vec![RequestOp::Txn(middle)], vec![]);
    match d.call(Request::Txn(outer)) {
        Ok(Response::Txn(t)) => assert_eq!(t.revision, 2),
        other => panic!("etcd accepts this txn, got {other:?}"),
    }
}

/// A txn may put a key and then delete it (a from-key delete, `"\0"`, is an empty interval to
/// etcd's duplicate check). etcd's watch fills `prev_kv` by reading the key at the previous
/// revision, so the delete event carries the key as it was before the txn, live or replayed.
#[test]
fn a_key_put_then_deleted_in_one_txn_shows_watchers_its_value_before_the_txn() {
    let mut d = Driver::new(Config::default());
    d.call(Request::Put(PutRequest {
        key: b("b"),
        value: b("old"),
        ..Default::default()
    }))
    .expect("put");
    let delete_all = RequestOp::DeleteRange(DeleteRangeRequest {
        key: b("a"),
        range_end: b("\0"),
        prev_kv: true,
    });
    let reply = d.call(Request::Txn(txn(vec![put("b", "new"), delete_all], vec![])));
    match reply {
        // The delete itself saw the txn's own put.
        Ok(Response::Txn(t)) => match &t.responses[1] {
            t4_core::request::ResponseOp::DeleteRange(r) => {
                assert_eq!(r.prev_kvs[0].value, b("new"));
            }
            other => panic!("unexpected {other:?}"),
        },
        other => panic!("unexpected {other:?}"),
    }
    let (live, replayed) = events_at(&d, 3);
    assert_eq!(live, replayed);
    assert_eq!(
        live.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EventKind::Put, EventKind::Delete]
    );
    for event in &live {
        assert_eq!(
            event.prev_kv.as_ref().map(|kv| kv.value.clone()),
            Some(b("old"))
        );
    }
}

/// The reverse: deleted, then created again in the same txn. The put creates the key (version
/// 1), and etcd's watch gives a create event no `prev_kv`, live or replayed.
#[test]
fn a_key_deleted_then_created_in_one_txn_is_a_create_event_without_prev_kv() {
    let mut d = Driver::new(Config::default());
    d.call(Request::Put(PutRequest {
        key: b("b"),
        value: b("old"),
        ..Default::default()
    }))
    .expect("put");
    let delete_all = RequestOp::DeleteRange(DeleteRangeRequest {
        key: b("a"),
        range_end: b("\0"),
        prev_kv: false,
    });
    d.call(Request::Txn(txn(vec![delete_all, put("b", "new")], vec![])))
        .expect("txn");
    let (live, replayed) = events_at(&d, 3);
    assert_eq!(live, replayed);
    assert_eq!(live[0].kind, EventKind::Delete);
    assert_eq!(
        live[0].prev_kv.as_ref().map(|kv| kv.value.clone()),
        Some(b("old"))
    );
    assert_eq!(live[1].kind, EventKind::Put);
    assert_eq!((live[1].kv.version, live[1].kv.create_revision), (1, 3));
    assert_eq!(live[1].prev_kv, None);
}

/// etcd's `rangeLimit` treats order NONE as the default ordering whatever the target, so it
/// reads only `limit + 1` keys (in key order) and sorts just those by the target.
#[test]
fn a_sort_on_another_field_with_order_none_sorts_only_the_keys_the_limit_reads() {
    let mut d = Driver::new(Config::default());
    for (key, times) in [("a", 3), ("b", 2), ("c", 1)] {
        for _ in 0..times {
            d.call(Request::Put(PutRequest {
                key: b(key),
                ..Default::default()
            }))
            .expect("put");
        }
    }
    let by_version = |sort_order| RangeRequest {
        key: b("a"),
        range_end: b("z"),
        limit: 1,
        sort_order,
        sort_target: SortTarget::Version,
        ..Default::default()
    };
    let keys = |r: &RangeRequest| {
        let resp = mvcc::range(&d.store.view(), r).expect("read");
        assert!(resp.more);
        assert_eq!(resp.count, 3);
        resp.kvs.into_iter().map(|kv| kv.key).collect::<Vec<_>>()
    };
    // NONE: only "a" (version 3) and "b" (version 2) are read; "b" sorts first.
    assert_eq!(keys(&by_version(SortOrder::None)), vec![b("b")]);
    // ASCEND reads every key: "c" (version 1) sorts first.
    assert_eq!(keys(&by_version(SortOrder::Ascend)), vec![b("c")]);
}
