//! The one scenario both servers run: every step is recorded, and the two transcripts must
//! be equal.
//!
//! Both servers start empty at revision 1, so revisions are compared exactly. Steps are
//! sequential, and no step depends on timing except the lease expiry, which waits for it.

use std::time::{Duration, Instant};

use t4_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use t4_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use t4_proto::etcdserverpb::request_op::Request;
use t4_proto::etcdserverpb::watch_create_request::FilterType;
use t4_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest,
};

use crate::session::Session;

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn get(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

/// Every key (etcd's `"\0".."\0"`).
fn all() -> RangeRequest {
    range("\0", "\0")
}

fn del(k: &str, end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn op_put(k: &str, v: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestPut(put(k, v))),
    }
}

fn op_get(r: RangeRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestRange(r)),
    }
}

fn op_del(k: &str, end: &str) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestDeleteRange(del(k, end))),
    }
}

fn op_txn(t: TxnRequest) -> RequestOp {
    RequestOp {
        request: Some(Request::RequestTxn(t)),
    }
}

fn cmp(k: &str, result: CompareResult, value: TargetUnion) -> Compare {
    let target = match value {
        TargetUnion::Version(_) => CompareTarget::Version,
        TargetUnion::CreateRevision(_) => CompareTarget::Create,
        TargetUnion::ModRevision(_) => CompareTarget::Mod,
        TargetUnion::Value(_) => CompareTarget::Value,
        TargetUnion::Lease(_) => CompareTarget::Lease,
    };
    Compare {
        result: result as i32,
        target: target as i32,
        key: k.into(),
        range_end: Vec::new(),
        target_union: Some(value),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

/// Runs the whole scenario.
pub async fn run(s: &mut Session) {
    puts(s).await;
    ranges(s).await;
    deletes(s).await;
    txns(s).await;
    leases(s).await;
    watches(s).await;
    compaction(s).await;
}

async fn puts(s: &mut Session) {
    s.range(get("a")).await;
    s.put(put("a", "1")).await;
    s.put(PutRequest {
        prev_kv: true,
        ..put("b", "2")
    })
    .await;
    s.put(PutRequest {
        prev_kv: true,
        ..put("a", "11")
    })
    .await;
    for (k, v) in [
        ("c", "3"),
        ("d", "4"),
        ("e", "5"),
        ("foo", "bar"),
        ("foo/1", "x"),
        ("foo/2", "y"),
        ("foo0", "z"),
        ("empty", ""),
        ("b", "22"),
        ("b", "222"),
    ] {
        s.put(put(k, v)).await;
    }
    s.put(PutRequest {
        key: vec![0xff, 0x01],
        value: vec![0x00, 0xfe],
        ..Default::default()
    })
    .await;
    // ignore_value keeps the value and still writes a new version.
    s.put(PutRequest {
        ignore_value: true,
        prev_kv: true,
        ..put("a", "")
    })
    .await;
    s.range(get("a")).await;
    s.put(PutRequest {
        ignore_lease: true,
        ..put("c", "33")
    })
    .await;
    // Bad input.
    s.put(put("", "x")).await;
    s.put(PutRequest {
        ignore_value: true,
        ..put("a", "not empty")
    })
    .await;
    s.put(PutRequest {
        ignore_value: true,
        ..put("missing", "")
    })
    .await;
    s.put(PutRequest {
        ignore_lease: true,
        lease: 5,
        ..put("a", "1")
    })
    .await;
    s.put(PutRequest {
        lease: 123_456,
        ..put("a", "1")
    })
    .await;
    s.put(PutRequest {
        key: "big".into(),
        value: vec![b'v'; 1_600_000],
        ..Default::default()
    })
    .await;
    s.range(get("big")).await;
}

async fn ranges(s: &mut Session) {
    let rev = s.current_revision().await;
    s.range(get("b")).await;
    s.range(get("nope")).await;
    s.range(range("a", "e")).await;
    s.range(range("c", "\0")).await;
    s.range(range("foo", "fop")).await;
    s.range(range("foo/", "foo0")).await;
    s.range(range("e", "a")).await;
    s.range(range("a", "a")).await;
    s.range(all()).await;
    s.range(range("", "\0")).await;
    s.range(get("")).await;
    for limit in [1, 2, 3, 100, -1] {
        s.range(RangeRequest {
            limit,
            ..range("a", "foo0")
        })
        .await;
    }
    for (target, order) in [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ]
    .into_iter()
    .flat_map(|t| [SortOrder::None, SortOrder::Ascend, SortOrder::Descend].map(move |o| (t, o)))
    {
        for limit in [0, 3] {
            s.range(RangeRequest {
                sort_target: target as i32,
                sort_order: order as i32,
                limit,
                ..all()
            })
            .await;
        }
    }
    // An unknown sort order is accepted (and means no sorting: key order). An unknown sort target is not
    // tried: it makes etcd 3.4 panic.
    s.range(RangeRequest {
        sort_order: 7,
        ..all()
    })
    .await;
    s.range(RangeRequest {
        count_only: true,
        ..all()
    })
    .await;
    s.range(RangeRequest {
        count_only: true,
        limit: 2,
        ..all()
    })
    .await;
    s.range(RangeRequest {
        keys_only: true,
        ..range("a", "e")
    })
    .await;
    s.range(RangeRequest {
        keys_only: true,
        sort_target: SortTarget::Value as i32,
        sort_order: SortOrder::Descend as i32,
        ..range("a", "e")
    })
    .await;
    s.range(RangeRequest {
        keys_only: true,
        count_only: true,
        ..range("a", "e")
    })
    .await;
    s.range(RangeRequest {
        serializable: true,
        ..range("a", "e")
    })
    .await;
    for revision in [1, 2, 3, 5, 10, rev - 1, rev, rev + 1, rev + 100, -1] {
        s.range(RangeRequest { revision, ..all() }).await;
    }
    s.range(RangeRequest {
        revision: 3,
        ..get("a")
    })
    .await;
    // Revision filters; etcd counts before filtering and applies the limit after.
    for (min_mod, max_mod, min_create, max_create) in [
        (5, 0, 0, 0),
        (0, 5, 0, 0),
        (4, 8, 0, 0),
        (0, 0, 6, 0),
        (0, 0, 0, 6),
        (0, 0, 3, 9),
        (3, 12, 2, 10),
        (100, 0, 0, 0),
        (-1, -1, -1, -1),
    ] {
        for limit in [0, 2] {
            s.range(RangeRequest {
                min_mod_revision: min_mod,
                max_mod_revision: max_mod,
                min_create_revision: min_create,
                max_create_revision: max_create,
                limit,
                ..all()
            })
            .await;
        }
    }
    s.range(RangeRequest {
        min_mod_revision: 5,
        sort_target: SortTarget::Mod as i32,
        sort_order: SortOrder::Descend as i32,
        limit: 2,
        ..all()
    })
    .await;
    s.range(RangeRequest {
        min_mod_revision: 5,
        count_only: true,
        ..all()
    })
    .await;
    paged_list(s).await;
}

/// A paged list, as Kubernetes lists: pages of 2 keys, each from just after the previous
/// page's last key, every one at the first page's revision while writes move the store on;
/// each page's count is the rest of the range at that revision. Then the same pages at the
/// current revision, twice, and a page that starts at the first key the one before left out.
async fn paged_list(s: &mut Session) {
    let listed_at = s.current_revision().await;
    let page = |key: Vec<u8>, revision| RangeRequest {
        key,
        range_end: vec![0],
        limit: 2,
        revision,
        ..Default::default()
    };
    let after = |key: &[u8]| [key, &[0u8][..]].concat();
    for revision in [listed_at, 0, 0] {
        let mut start = vec![0];
        for i in 0.. {
            let Some(resp) = s.range(page(start, revision)).await else {
                break;
            };
            let Some(last) = resp.kvs.last().filter(|_| resp.more) else {
                break;
            };
            start = after(&last.key);
            if revision == listed_at {
                s.put(put(&format!("page{i}"), "x")).await;
                s.delete(del(&format!("page{}", i / 2), "")).await;
            }
        }
    }
    if let Some(resp) = s.range(RangeRequest { limit: 3, ..all() }).await
        && let Some(left_out) = resp.kvs.get(2)
    {
        s.range(page(left_out.key.to_vec(), 0)).await;
        s.range(page(after(&resp.kvs[1].key), 0)).await;
    }
    s.delete(del("page", "pagf")).await;
}

async fn deletes(s: &mut Session) {
    s.delete(DeleteRangeRequest {
        prev_kv: true,
        ..del("d", "")
    })
    .await;
    s.delete(del("d", "")).await;
    s.delete(DeleteRangeRequest {
        prev_kv: true,
        ..del("foo/", "foo0")
    })
    .await;
    s.delete(del("x", "y")).await;
    s.delete(del("", "")).await;
    s.delete(del("e", "a")).await;
    s.put(put("z/1", "1")).await;
    s.put(put("z/2", "2")).await;
    s.delete(DeleteRangeRequest {
        prev_kv: true,
        ..del("z/", "\0")
    })
    .await;
    s.range(all()).await;
    let before_delete = s.current_revision().await - 1;
    s.range(RangeRequest {
        revision: before_delete,
        ..range("z/", "z0")
    })
    .await;
}

async fn txns(s: &mut Session) {
    s.put(put("t/a", "1")).await;
    s.put(put("t/b", "1")).await;
    s.put(put("t/b", "2")).await;
    let rev = s.current_revision().await;

    // Every compare target and result on a present and a missing key, against values below,
    // at and above the key's; the branches only read, so the revision stays put.
    use CompareResult::{Equal, Greater, Less, NotEqual};
    for key in ["t/b", "t/missing"] {
        let values = [
            TargetUnion::Version(0),
            TargetUnion::Version(2),
            TargetUnion::Version(3),
            TargetUnion::CreateRevision(0),
            TargetUnion::CreateRevision(rev - 1),
            TargetUnion::CreateRevision(rev + 5),
            TargetUnion::ModRevision(rev - 1),
            TargetUnion::ModRevision(rev),
            TargetUnion::ModRevision(rev + 1),
            TargetUnion::Value("".into()),
            TargetUnion::Value("1".into()),
            TargetUnion::Value("2".into()),
            TargetUnion::Value("3".into()),
            TargetUnion::Lease(0),
            TargetUnion::Lease(1),
        ];
        for value in values {
            for result in [Equal, Greater, Less, NotEqual] {
                s.txn(
                    "",
                    txn(
                        vec![cmp(key, result, value.clone())],
                        vec![op_get(get(key))],
                        vec![op_get(get("t/a"))],
                    ),
                )
                .await;
            }
        }
    }
    // Compares over a key range hold when they hold for every key in it.
    for (end, result, value) in [
        ("t0", Greater, TargetUnion::Version(0)),
        ("t0", Equal, TargetUnion::Version(1)),
        ("t0", Less, TargetUnion::ModRevision(rev + 1)),
        ("t0", Equal, TargetUnion::Value("1".into())),
        ("t/b", Equal, TargetUnion::Value("1".into())),
        ("\0", Greater, TargetUnion::CreateRevision(0)),
    ] {
        let mut c = cmp("t/", result, value);
        c.range_end = end.into();
        s.txn("", txn(vec![c], vec![op_get(range("t/", "t0"))], vec![]))
            .await;
    }
    // Several compares: all must hold.
    s.txn(
        "",
        txn(
            vec![
                cmp("t/a", Equal, TargetUnion::Value("1".into())),
                cmp("t/b", Equal, TargetUnion::Version(2)),
            ],
            vec![op_put("t/c", "both"), op_get(get("t/c"))],
            vec![op_put("t/c", "not both")],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![
                cmp("t/a", Equal, TargetUnion::Value("1".into())),
                cmp("t/b", Equal, TargetUnion::Version(9)),
            ],
            vec![op_put("t/c", "both")],
            vec![
                op_put("t/c", "not both"),
                op_get(get("t/c")),
                op_del("t/a", ""),
            ],
        ),
    )
    .await;
    // Every kind of op in one branch, answered in order; reads see the txn's own writes.
    s.txn(
        "",
        txn(
            vec![],
            vec![
                op_get(range("t/", "t0")),
                op_put("t/d", "4"),
                RequestOp {
                    request: Some(Request::RequestPut(PutRequest {
                        prev_kv: true,
                        ..put("t/b", "3")
                    })),
                },
                op_get(range("t/", "t0")),
                RequestOp {
                    request: Some(Request::RequestDeleteRange(DeleteRangeRequest {
                        prev_kv: true,
                        ..del("t/c", "")
                    })),
                },
                op_get(RangeRequest {
                    count_only: true,
                    ..range("t/", "t0")
                }),
            ],
            vec![],
        ),
    )
    .await;
    // Nested txns.
    s.txn(
        "",
        txn(
            vec![cmp("t/d", Equal, TargetUnion::Value("4".into()))],
            vec![
                op_txn(txn(
                    vec![cmp("t/b", Equal, TargetUnion::Value("nope".into()))],
                    vec![op_put("t/e", "inner success")],
                    vec![
                        op_put("t/e", "inner failure"),
                        op_txn(txn(vec![], vec![op_get(get("t/e"))], vec![])),
                    ],
                )),
                op_put("t/f", "outer"),
            ],
            vec![op_put("t/e", "outer failure")],
        ),
    )
    .await;
    // The same key in both branches, and overlapping deletes, are allowed.
    s.txn(
        "",
        txn(vec![], vec![op_put("t/g", "1")], vec![op_put("t/g", "2")]),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![op_del("t/a", "t/c"), op_del("t/b", "t/e")],
            vec![],
        ),
    )
    .await;
    // An empty txn succeeds without a new revision.
    s.txn("", txn(vec![], vec![], vec![])).await;
    s.range(range("t/", "t0")).await;

    // Bad txns change nothing.
    s.txn(
        "",
        txn(vec![], vec![op_put("t/x", "1"), op_put("t/x", "2")], vec![]),
    )
    .await;
    s.txn(
        "",
        txn(vec![], vec![op_put("t/x", "1"), op_del("t/", "t0")], vec![]),
    )
    .await;
    s.txn(
        "",
        txn(vec![], vec![op_del("t/", "t0"), op_put("t/x", "1")], vec![]),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![
                op_put("t/x", "1"),
                op_txn(txn(vec![], vec![op_put("t/x", "2")], vec![])),
            ],
            vec![],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![
                op_txn(txn(vec![], vec![op_put("t/x", "1")], vec![])),
                op_txn(txn(vec![], vec![op_put("t/x", "2")], vec![])),
            ],
            vec![],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![op_txn(txn(
                vec![],
                vec![op_put("t/x", "1")],
                vec![op_put("t/x", "2")],
            ))],
            vec![],
        ),
    )
    .await;
    s.txn("", txn(vec![], vec![op_put("", "1")], vec![])).await;
    s.txn("", txn(vec![], vec![op_get(get(""))], vec![])).await;
    s.txn("", txn(vec![], vec![op_del("", "")], vec![])).await;
    s.txn(
        "",
        txn(
            vec![cmp("t/x", Equal, TargetUnion::Version(0))],
            vec![],
            vec![op_put("t/x", "1")],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![RequestOp {
                request: Some(Request::RequestPut(PutRequest {
                    lease: 99_999,
                    ..put("t/x", "1")
                })),
            }],
            vec![],
        ),
    )
    .await;
    let now = s.current_revision().await;
    s.txn(
        "",
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision: now + 10,
                ..get("t/a")
            })],
            vec![],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![],
            vec![
                op_put("t/x", "1"),
                op_get(RangeRequest {
                    revision: now + 1,
                    ..get("t/x")
                }),
            ],
            vec![],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![cmp("", Equal, TargetUnion::Version(0))],
            vec![op_get(get("t/x"))],
            vec![],
        ),
    )
    .await;
    let ops = |n: usize| -> Vec<RequestOp> {
        (0..n)
            .map(|i| op_put(&format!("t/many/{i:03}"), "v"))
            .collect()
    };
    s.txn("128 puts", txn(vec![], ops(128), vec![])).await;
    s.txn("129 puts", txn(vec![], ops(129), vec![])).await;
    s.txn("129 failure puts", txn(vec![], vec![], ops(129)))
        .await;
    let compares = |n: usize| -> Vec<Compare> {
        (0..n)
            .map(|i| cmp(&format!("t/many/{i:03}"), Greater, TargetUnion::Version(0)))
            .collect()
    };
    s.txn("129 compares", txn(compares(129), vec![], vec![]))
        .await;
    s.txn(
        "128 compares",
        txn(
            compares(128),
            vec![op_get(RangeRequest {
                count_only: true,
                ..range("t/many/", "t/many0")
            })],
            vec![],
        ),
    )
    .await;
    s.delete(del("t/many/", "t/many0")).await;
    s.range(range("t/", "t0")).await;
}

async fn leases(s: &mut Session) {
    s.lease_grant(60, 1000).await;
    s.lease_grant(60, 1000).await;
    s.lease_grant(9_000_000_001, 1001).await;
    s.lease_grant(9_000_000_000, 1001).await;
    s.lease_grant(1, 1002).await;
    s.lease_grant(0, 1003).await;
    s.lease_grant(-5, 1004).await;
    // A server-chosen id differs between servers: it is only named, never attached to a key
    // (a key's lease shows in ranges, events and etcd's HashKV).
    let chosen = s.lease_grant(30, 0).await.unwrap_or(0);
    let names = [
        (1000, "L1000"),
        (1001, "L1001"),
        (1002, "L1002"),
        (1003, "L1003"),
        (1004, "L1004"),
        (chosen, "chosen"),
    ];
    s.lease_leases(&names).await;

    s.put(PutRequest {
        lease: 1000,
        ..put("l/a", "1")
    })
    .await;
    s.put(PutRequest {
        lease: 1000,
        prev_kv: true,
        ..put("l/b", "1")
    })
    .await;
    s.put(PutRequest {
        ignore_lease: true,
        ..put("l/a", "2")
    })
    .await;
    s.put(PutRequest {
        lease: 1000,
        ..put("l/d", "1")
    })
    .await;
    // Overwriting without a lease detaches the key.
    s.put(put("l/d", "2")).await;
    s.range(range("l/", "l0")).await;
    s.lease_time_to_live(1000, true, "L1000").await;
    s.lease_time_to_live(1000, false, "L1000").await;
    s.lease_time_to_live(chosen, true, "chosen").await;
    s.lease_time_to_live(4242, true, "unknown").await;
    s.lease_keep_alive(1000, "L1000").await;
    s.lease_keep_alive(4242, "unknown").await;
    s.txn(
        "",
        txn(
            vec![cmp("l/a", CompareResult::Equal, TargetUnion::Lease(1000))],
            vec![op_get(get("l/a"))],
            vec![],
        ),
    )
    .await;
    s.txn(
        "",
        txn(
            vec![cmp("l/d", CompareResult::Equal, TargetUnion::Lease(1000))],
            vec![op_get(get("l/d"))],
            vec![],
        ),
    )
    .await;
    s.lease_revoke(1000, "L1000").await;
    s.range(range("l/", "l0")).await;
    s.lease_revoke(1000, "L1000 again").await;
    s.lease_revoke(4242, "unknown").await;
    s.lease_time_to_live(1000, true, "L1000 (revoked)").await;
    s.lease_revoke(chosen, "chosen").await;
    s.lease_leases(&names).await;
    for id in [1001, 1002, 1003, 1004] {
        s.lease_revoke(id, &format!("L{id}")).await;
    }

    // Expiry deletes the attached keys in one revision.
    s.lease_grant(2, 2000).await;
    s.put(PutRequest {
        lease: 2000,
        ..put("l/x", "1")
    })
    .await;
    s.put(PutRequest {
        lease: 2000,
        ..put("l/y", "1")
    })
    .await;
    let before = s.current_revision().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.current_revision().await == before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.record(
        "wait for lease L2000 (TTL 2) to expire",
        if Instant::now() < deadline {
            "a new revision"
        } else {
            "no new revision within 20 s"
        },
    );
    s.range(range("l/", "l0")).await;
    s.lease_time_to_live(2000, true, "L2000 (expired)").await;
    s.range(RangeRequest {
        revision: before,
        ..range("l/", "l0")
    })
    .await;
}

async fn watches(s: &mut Session) {
    let start = s.current_revision().await + 1;
    s.put(put("w/a", "1")).await;
    s.put(put("w/b", "1")).await;
    s.put(put("w/a", "2")).await;
    s.delete(del("w/b", "")).await;
    s.txn(
        "",
        txn(
            vec![],
            vec![op_put("w/c", "1"), op_put("w/d", "1"), op_del("w/a", "")],
            vec![],
        ),
    )
    .await;
    s.put(put("x/outside", "1")).await;

    let mut w = s.watch_stream("history");
    // Replays from a start revision, with and without prev_kv and filters; watch ids count
    // from 0 on the stream.
    let prefix = |start_revision: i64| WatchCreateRequest {
        key: "w/".into(),
        range_end: "w0".into(),
        start_revision,
        ..Default::default()
    };
    if let Some(id) = w.create(s, prefix(start)).await {
        w.expect_events(s, 7, "replay").await;
        w.cancel(s, id).await;
    }
    if let Some(id) = w
        .create(
            s,
            WatchCreateRequest {
                prev_kv: true,
                ..prefix(start)
            },
        )
        .await
    {
        w.expect_events(s, 7, "replay with prev_kv").await;
        w.cancel(s, id).await;
    }
    if let Some(id) = w
        .create(
            s,
            WatchCreateRequest {
                filters: vec![FilterType::Noput as i32],
                ..prefix(start)
            },
        )
        .await
    {
        w.expect_events(s, 2, "replay without puts").await;
        w.cancel(s, id).await;
    }
    if let Some(id) = w
        .create(
            s,
            WatchCreateRequest {
                filters: vec![FilterType::Nodelete as i32],
                prev_kv: true,
                ..prefix(start)
            },
        )
        .await
    {
        w.expect_events(s, 5, "replay without deletes").await;
        w.cancel(s, id).await;
    }
    if let Some(id) = w
        .create(
            s,
            WatchCreateRequest {
                key: "w/a".into(),
                start_revision: 1,
                ..Default::default()
            },
        )
        .await
    {
        w.expect_events(s, 3, "one key from revision 1").await;
        w.cancel(s, id).await;
    }
    w.expect_quiet(s, "after the replays").await;

    // Live watches: several on one stream, a future start revision, a client-chosen id.
    let mut live = s.watch_stream("live");
    let now = s.current_revision().await;
    let all_w = live.create(s, prefix(0)).await;
    let future = live.create(s, prefix(now + 2)).await;
    let chosen = live
        .create(
            s,
            WatchCreateRequest {
                watch_id: 100,
                prev_kv: true,
                ..prefix(0)
            },
        )
        .await;
    live.create(
        s,
        WatchCreateRequest {
            watch_id: 100,
            ..prefix(0)
        },
    )
    .await;
    let single = live
        .create(
            s,
            WatchCreateRequest {
                key: "w/e".into(),
                ..Default::default()
            },
        )
        .await;
    live.expect_quiet(s, "before live writes").await;
    s.put(put("w/e", "1")).await;
    live.expect_events(s, 3, "first live put").await;
    s.put(put("w/e", "2")).await;
    live.expect_events(s, 4, "second live put").await;
    s.txn(
        "",
        txn(vec![], vec![op_put("w/f", "1"), op_del("w/e", "")], vec![]),
    )
    .await;
    live.expect_events(s, 7, "a txn of two writes").await;
    live.expect_quiet(s, "after the live writes").await;
    for id in [all_w, future, chosen, single].into_iter().flatten() {
        live.cancel(s, id).await;
    }
    s.put(put("w/g", "1")).await;
    live.expect_quiet(s, "after cancelling every watch").await;
}

async fn compaction(s: &mut Session) {
    s.put(put("k/a", "1")).await;
    s.put(put("k/a", "2")).await;
    s.put(put("k/a", "3")).await;
    let rev = s.current_revision().await;
    s.hash_kv(0).await;
    s.hash_kv(rev - 1).await;
    s.compact(rev - 1, false).await;
    s.range(RangeRequest {
        revision: rev - 2,
        ..get("k/a")
    })
    .await;
    s.range(RangeRequest {
        revision: rev - 1,
        ..get("k/a")
    })
    .await;
    s.range(RangeRequest {
        revision: rev,
        ..get("k/a")
    })
    .await;
    s.compact(rev - 1, false).await;
    s.compact(rev - 2, false).await;
    s.compact(rev + 10, false).await;
    s.txn(
        "",
        txn(
            vec![],
            vec![op_get(RangeRequest {
                revision: rev - 2,
                ..get("k/a")
            })],
            vec![],
        ),
    )
    .await;
    {
        let mut w = s.watch_stream("compacted");
        w.create(
            s,
            WatchCreateRequest {
                key: "k/a".into(),
                start_revision: rev - 2,
                ..Default::default()
            },
        )
        .await;
        w.expect_control(s, "the compaction cancellation").await;
        w.create(
            s,
            WatchCreateRequest {
                key: "k/a".into(),
                start_revision: rev - 1,
                ..Default::default()
            },
        )
        .await;
        w.expect_events(s, 2, "from the compaction revision").await;
    }
    s.hash_kv(0).await;
    s.put(put("k/a", "4")).await;
    s.compact(rev + 1, true).await;
    s.hash_kv(0).await;
    s.range(RangeRequest {
        revision: rev,
        ..all()
    })
    .await;
    s.range(all()).await;
    s.status().await;
}
