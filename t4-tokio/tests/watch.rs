//! Watches through `t4::Node`: history replay, prev_kv, filters, many watchers, a slow
//! watcher that must not block writers nor lose events, compaction and close.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b, open, within};
use futures::StreamExt;
use t4::{
    DeleteRangeRequest, Event, EventKind, KeyRange, RequestOp, TxnRequest, Watch, WatchOptions,
};

/// Takes events from `watch` until `n` have arrived.
async fn take(watch: &mut Watch, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    while out.len() < n {
        out.extend(within("watch events", watch.next_batch()).await.unwrap());
    }
    assert_eq!(out.len(), n, "more events than expected: {out:?}");
    out
}

fn summary(events: &[Event]) -> Vec<(EventKind, String, i64)> {
    events
        .iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8_lossy(&e.kv.key).into_owned(),
                e.kv.mod_revision,
            )
        })
        .collect()
}

#[tokio::test]
async fn a_watch_from_a_past_revision_replays_history_then_follows_live_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let r1 = node.put("w/a", "1").await.unwrap();
    let r2 = node.put("other", "x").await.unwrap();
    let r3 = node.put("w/b", "2").await.unwrap();
    let r4 = node.put("w/a", "3").await.unwrap();
    node.delete("w/b").await.unwrap();
    let r5 = node.current_revision();

    let mut watch = node
        .watch(
            KeyRange::prefix("w/"),
            WatchOptions {
                start_revision: r1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let history = take(&mut watch, 4).await;
    assert_eq!(
        summary(&history),
        vec![
            (EventKind::Put, "w/a".into(), r1),
            (EventKind::Put, "w/b".into(), r3),
            (EventKind::Put, "w/a".into(), r4),
            (EventKind::Delete, "w/b".into(), r5),
        ]
    );
    assert!(
        history.iter().all(|e| e.prev_kv.is_none()),
        "prev_kv was not asked for"
    );
    assert_ne!(r2, r1, "the other key's revision is skipped, not delivered");
    assert_eq!(watch.next_revision(), r5 + 1);

    // Then it follows live writes.
    let r6 = node.put("w/c", "4").await.unwrap();
    let live = take(&mut watch, 1).await;
    assert_eq!(summary(&live), vec![(EventKind::Put, "w/c".into(), r6)]);
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_watch_from_now_sees_only_later_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("k", "before").await.unwrap();
    let mut watch = node
        .watch(KeyRange::Single(b("k")), WatchOptions::default())
        .await
        .unwrap();
    let rev = node.put("k", "after").await.unwrap();
    let events = take(&mut watch, 1).await;
    assert_eq!(events[0].kv.value, "after");
    assert_eq!(events[0].kv.mod_revision, rev);
    node.close().await.unwrap();
}

#[tokio::test]
async fn prev_kv_carries_the_previous_version_live_and_in_replay() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let start = node.put("k", "v1").await.unwrap();
    node.put("k", "v2").await.unwrap();
    node.delete("k").await.unwrap();

    let opts = WatchOptions {
        start_revision: start,
        prev_kv: true,
        ..Default::default()
    };
    let mut replay = node.watch(KeyRange::Single(b("k")), opts).await.unwrap();
    let mut live = node
        .watch(
            KeyRange::Single(b("k")),
            WatchOptions {
                prev_kv: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    node.put("k", "v3").await.unwrap();
    node.put("k", "v4").await.unwrap();

    let replayed = take(&mut replay, 5).await;
    let prevs: Vec<Option<String>> = replayed
        .iter()
        .map(|e| {
            e.prev_kv
                .as_ref()
                .map(|p| String::from_utf8_lossy(&p.value).into_owned())
        })
        .collect();
    // A creating put has no prev_kv; a delete's prev_kv is the deleted version.
    assert_eq!(
        prevs,
        [None, Some("v1"), Some("v2"), None, Some("v3")].map(|p| p.map(String::from))
    );
    let followed = take(&mut live, 2).await;
    assert_eq!(followed[0].prev_kv, None);
    assert_eq!(followed[1].prev_kv.as_ref().unwrap().value, "v3");
    assert_eq!(followed[1].prev_kv.as_ref().unwrap().version, 1);
    node.close().await.unwrap();
}

#[tokio::test]
async fn no_put_and_no_delete_filters_drop_those_events() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let from_now = |no_put, no_delete| WatchOptions {
        no_put,
        no_delete,
        ..Default::default()
    };
    let mut deletes_only = node
        .watch(KeyRange::prefix("f/"), from_now(true, false))
        .await
        .unwrap();
    let mut puts_only = node
        .watch(KeyRange::prefix("f/"), from_now(false, true))
        .await
        .unwrap();
    for i in 0..3 {
        node.put(format!("f/{i}"), "v").await.unwrap();
    }
    node.delete_range(DeleteRangeRequest {
        key: b("f/"),
        range_end: b("f0"),
        ..Default::default()
    })
    .await
    .unwrap();
    let puts = take(&mut puts_only, 3).await;
    assert!(puts.iter().all(|e| e.kind == EventKind::Put));
    let deletes = take(&mut deletes_only, 3).await;
    assert!(deletes.iter().all(|e| e.kind == EventKind::Delete));
    // The three deletes happened at one revision and arrive together.
    assert!(
        deletes
            .iter()
            .all(|e| e.kv.mod_revision == deletes[0].kv.mod_revision)
    );
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_watchers_each_see_every_event_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    const WATCHERS: usize = 100;
    const PUTS: usize = 200;
    let mut tasks = Vec::new();
    for _ in 0..WATCHERS {
        let watch = node
            .watch(KeyRange::prefix("m/"), WatchOptions::default())
            .await
            .unwrap();
        tasks.push(tokio::spawn(async move {
            let mut stream = watch.into_stream();
            let mut revs = Vec::with_capacity(PUTS);
            while revs.len() < PUTS {
                revs.push(stream.next().await.unwrap().unwrap().kv.mod_revision);
            }
            revs
        }));
    }
    let mut expected = Vec::new();
    for i in 0..PUTS {
        expected.push(
            node.put(format!("m/{}", i % 7), format!("{i}"))
                .await
                .unwrap(),
        );
    }
    for task in tasks {
        assert_eq!(within("a watcher", task).await.unwrap(), expected);
    }
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_watcher_with_a_tiny_buffer_blocks_no_writer_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.watch_buffer = 1;
    let node = t4::Node::open(config).await.unwrap();
    let mut slow = node
        .watch(
            KeyRange::prefix("s/"),
            WatchOptions {
                prev_kv: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();

    // Eight writers, two keys per txn, while the watcher is not read at all: with a
    // one-batch buffer it falls far behind. The writers must finish regardless.
    const WRITERS: usize = 8;
    const TXNS: usize = 100;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let node = node.clone();
        writers.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..TXNS {
                let put = |k: String| {
                    RequestOp::Put(t4::PutRequest {
                        key: k.into(),
                        value: format!("{i}").into(),
                        ..Default::default()
                    })
                };
                let txn = TxnRequest {
                    success: vec![put(format!("s/{w}/x")), put(format!("s/{w}/y"))],
                    ..Default::default()
                };
                revs.push(node.txn(txn).await.unwrap().revision);
            }
            revs
        }));
    }
    let mut all_revs = Vec::new();
    for w in writers {
        all_revs.extend(
            within("writers despite a stalled watcher", w)
                .await
                .unwrap(),
        );
    }
    all_revs.sort();

    // Now drain the watcher: every event exactly once, in revision order, whole revisions.
    let events = take(&mut slow, 2 * WRITERS * TXNS).await;
    let revs: Vec<i64> = events.iter().map(|e| e.kv.mod_revision).collect();
    assert!(revs.windows(2).all(|w| w[0] <= w[1]), "out of order");
    let mut distinct = revs.clone();
    distinct.dedup();
    assert_eq!(distinct, all_revs, "every revision once");
    for pair in events.chunks(2) {
        assert_eq!(pair[0].kv.mod_revision, pair[1].kv.mod_revision);
        let (x, y) = (&pair[0].kv.key, &pair[1].kv.key);
        assert_eq!(&x[..x.len() - 1], &y[..y.len() - 1], "both keys of one txn");
        assert_eq!(pair[0].kv.value, pair[1].kv.value);
    }
    // Keys written more than once carry their previous value.
    assert!(
        events
            .iter()
            .filter(|e| e.kv.version > 1)
            .all(|e| e.prev_kv.is_some())
    );
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_watch_from_a_compacted_revision_fails_with_watch_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let r1 = node.put("k", "1").await.unwrap();
    let r2 = node.put("k", "2").await.unwrap();
    // A watch that fell behind: created before the compaction, read after it.
    let mut behind = node
        .watch(
            KeyRange::Single(b("k")),
            WatchOptions {
                start_revision: r1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    node.put("k", "3").await.unwrap();
    node.compact(r2 + 1, true).await.unwrap();

    let err = node
        .watch(
            KeyRange::Single(b("k")),
            WatchOptions {
                start_revision: r1,
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, t4::Error::WatchCompacted { requested, compact_revision }
            if requested == r1 && compact_revision == r2 + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("compacted"), "{err}");
    let err = within("the lagging watch", behind.next_batch())
        .await
        .unwrap_err();
    assert!(matches!(err, t4::Error::WatchCompacted { .. }), "{err:?}");
    // At the compact revision itself the watch is fine.
    let mut ok = node
        .watch(
            KeyRange::Single(b("k")),
            WatchOptions {
                start_revision: r2 + 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(take(&mut ok, 1).await[0].kv.value, "3");
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_end_with_closed_when_the_node_closes() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("k", "v").await.unwrap();
    let synced = node
        .watch(KeyRange::prefix("k"), WatchOptions::default())
        .await
        .unwrap();
    let waiting = tokio::spawn(async move {
        let mut synced = synced;
        synced.next_batch().await
    });
    let mut replaying = node
        .watch(
            KeyRange::prefix("k"),
            WatchOptions {
                start_revision: 1,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let stream = node
        .watch(KeyRange::prefix("k"), WatchOptions::default())
        .await
        .unwrap()
        .into_stream();
    node.close().await.unwrap();

    assert!(matches!(
        within("the waiting watch", waiting).await.unwrap(),
        Err(t4::Error::Closed)
    ));
    assert!(matches!(
        replaying.next_batch().await,
        Err(t4::Error::Closed)
    ));
    let items: Vec<_> = within("the stream to end", stream.collect::<Vec<_>>()).await;
    assert_eq!(items.len(), 1, "the stream yields the error, then ends");
    assert!(matches!(items[0], Err(t4::Error::Closed)));
    assert!(matches!(
        node.watch(KeyRange::prefix("k"), WatchOptions::default())
            .await,
        Err(t4::Error::Closed)
    ));
}

#[tokio::test]
async fn a_watch_on_an_empty_range_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let err = node
        .watch(KeyRange::Between(b("b"), b("a")), WatchOptions::default())
        .await
        .unwrap_err();
    assert_eq!(common::request_error(err), t4::RequestError::InvalidRange);
    node.close().await.unwrap();
}

#[tokio::test]
async fn a_txn_deleting_and_putting_delivers_its_events_together() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.put("t/old", "x").await.unwrap();
    let mut watch = node
        .watch(KeyRange::prefix("t/"), WatchOptions::default())
        .await
        .unwrap();
    let resp = node
        .txn(TxnRequest {
            success: vec![
                RequestOp::DeleteRange(DeleteRangeRequest {
                    key: b("t/old"),
                    ..Default::default()
                }),
                RequestOp::Put(t4::PutRequest {
                    key: b("t/new"),
                    value: b("y"),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
        .await
        .unwrap();
    let batch = within("the txn's events", watch.next_batch())
        .await
        .unwrap();
    assert_eq!(
        summary(&batch),
        vec![
            (EventKind::Delete, "t/old".into(), resp.revision),
            (EventKind::Put, "t/new".into(), resp.revision),
        ],
        "one revision's events arrive in one batch"
    );
    node.close().await.unwrap();
}
