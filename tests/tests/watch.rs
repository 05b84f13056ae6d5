//! Watch over the wire: replay, many watches per stream, ids, filters, cancel, compaction,
//! progress, fragments, slow watchers.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::Duration;

use etcd_client::{
    CompactionOptions, EventType, PutOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream,
};
use t4_e2e::{T4, t4_bin};
use t4_proto::etcdserverpb as pb;
use tokio::time::timeout;

/// Fails a test instead of hanging it when an expected response never comes.
const WAIT: Duration = Duration::from_secs(20);

async fn next(w: &mut WatchStream) -> WatchResponse {
    timeout(WAIT, w.message())
        .await
        .expect("a watch response in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

#[tokio::test]
async fn watches_replay_history_and_share_one_stream_in_order() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let r1 = c
        .put("w/a", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.put("w/b", "1", None).await.unwrap();
    c.put("w/a", "2", None).await.unwrap();
    c.delete("w/a", None).await.unwrap();

    let mut w = c
        .watch(
            "w/",
            Some(
                WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(r1)
                    .with_prev_key(),
            ),
        )
        .await
        .unwrap();
    let created = next(&mut w).await;
    assert!(created.created());
    assert_eq!(
        created.watch_id(),
        0,
        "etcd numbers a stream's watches from 0"
    );
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let r = next(&mut w).await;
        for e in r.events() {
            let kv = e.kv().unwrap();
            seen.push((
                e.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value().to_vec()),
            ));
        }
    }
    assert_eq!(
        seen,
        vec![
            (EventType::Put, "w/a".into(), r1, None),
            (EventType::Put, "w/b".into(), r1 + 1, None),
            (EventType::Put, "w/a".into(), r1 + 2, Some(b"1".to_vec())),
            (EventType::Delete, "w/a".into(), r1 + 3, Some(b"2".to_vec())),
        ]
    );

    // A second watch on the same stream, with a client-chosen id and a NOPUT filter.
    w.watch(
        "w/b",
        Some(
            WatchOptions::new()
                .with_watch_id(7)
                .with_filters([WatchFilterType::NoPut]),
        ),
    )
    .await
    .unwrap();
    let created = next(&mut w).await;
    assert!(created.created() && created.watch_id() == 7);
    // The id is taken: etcd refuses the duplicate on a created-and-cancelled response.
    w.watch("x", Some(WatchOptions::new().with_watch_id(7)))
        .await
        .unwrap();
    let dup = next(&mut w).await;
    assert!(dup.created() && dup.canceled());
    assert_eq!(dup.watch_id(), -1);
    assert_eq!(
        dup.cancel_reason(),
        "mvcc: duplicate watch ID provided on the WatchStream"
    );

    c.put("w/b", "2", None).await.unwrap();
    let put = next(&mut w).await;
    assert_eq!(put.watch_id(), 0, "the NOPUT watch does not see the put");
    c.delete("w/b", None).await.unwrap();
    let mut ids = vec![];
    while ids.len() < 2 {
        let r = next(&mut w).await;
        assert_eq!(r.events()[0].event_type(), EventType::Delete);
        ids.push(r.watch_id());
    }
    ids.sort();
    assert_eq!(ids, [0, 7]);

    // Cancelling an unknown watch is answered with nothing; a known one with canceled.
    w.cancel(99).await.unwrap();
    w.cancel(7).await.unwrap();
    let cancelled = next(&mut w).await;
    assert!(cancelled.canceled());
    assert_eq!(cancelled.watch_id(), 7);
    // A range whose end sorts before its key is refused like etcd.
    w.watch("b", Some(WatchOptions::new().with_range("a")))
        .await
        .unwrap();
    let empty = next(&mut w).await;
    assert!(empty.created() && empty.canceled());
    assert_eq!(empty.cancel_reason(), "mvcc: watcher range is empty");
}

#[tokio::test]
async fn a_watch_on_a_compacted_revision_is_cancelled_with_the_compact_revision() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let first = c
        .put("k", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let last = c
        .put("k", "2", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    c.compact(last, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();

    let mut w = c
        .watch("k", Some(WatchOptions::new().with_start_revision(first)))
        .await
        .unwrap();
    let created = next(&mut w).await;
    assert!(created.created() && !created.canceled());
    let cancelled = next(&mut w).await;
    assert!(cancelled.canceled());
    assert_eq!(cancelled.watch_id(), created.watch_id());
    assert_eq!(cancelled.compact_revision(), last);

    // At exactly the compact revision the history is still there (etcd allows it).
    w.watch("k", Some(WatchOptions::new().with_start_revision(last)))
        .await
        .unwrap();
    assert!(next(&mut w).await.created());
    let event = next(&mut w).await;
    assert_eq!(event.events()[0].kv().unwrap().mod_revision(), last);
}

#[tokio::test]
async fn progress_requests_answer_with_watch_id_minus_one_at_the_current_revision() {
    let t4 = T4::start(t4_bin!(), &["--watch-progress-notify-interval", "200ms"]).await;
    let mut c = t4.client().await;
    let rev = c
        .put("p", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut w = c.watch("p", None).await.unwrap();
    assert!(next(&mut w).await.created());
    w.request_progress().await.unwrap();
    let progress = next(&mut w).await;
    assert_eq!(progress.watch_id(), -1);
    assert!(progress.events().is_empty());
    assert_eq!(progress.header().unwrap().revision(), rev);

    // progress_notify: a quiet synced watch gets periodic progress with its own id.
    w.watch(
        "q",
        Some(WatchOptions::new().with_progress_notify().with_watch_id(5)),
    )
    .await
    .unwrap();
    assert!(next(&mut w).await.created());
    let rev = c
        .put("other", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    loop {
        let r = next(&mut w).await;
        if r.watch_id() == 5 && r.events().is_empty() && r.header().unwrap().revision() == rev {
            break;
        }
    }
}

/// The next response of a raw watch stream.
async fn next_raw(responses: &mut tonic::Streaming<pb::WatchResponse>) -> pb::WatchResponse {
    timeout(WAIT, responses.message())
        .await
        .expect("a watch response in time")
        .expect("the stream is healthy")
        .expect("the stream is open")
}

fn progress_request() -> pb::WatchRequest {
    pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::ProgressRequest(
            pb::WatchProgressRequest {},
        )),
    }
}

/// Asserts `r` is a progress response (watch id -1, nothing else) at `revision`.
fn assert_progress(r: &pb::WatchResponse, revision: i64) {
    assert_eq!(
        (r.watch_id, r.header.as_ref().unwrap().revision),
        (-1, revision),
        "{r:?}"
    );
    assert!(r.events.is_empty() && !r.created && !r.canceled, "{r:?}");
}

#[tokio::test]
async fn progress_is_answered_at_once_without_watches_and_with_future_watches_like_etcd_3_4() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let rev = c
        .put("f", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let mut client = pb::watch_client::WatchClient::new(t4.channel().await);
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    let mut responses = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();

    // A stream without watches: the current revision.
    tx.send(progress_request()).await.unwrap();
    assert_progress(&next_raw(&mut responses).await, rev);

    // A watch whose start revision is in the future counts as synced.
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"f".to_vec(),
                start_revision: rev + 2,
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let created = next_raw(&mut responses).await;
    assert!(created.created && !created.canceled, "{created:?}");
    tx.send(progress_request()).await.unwrap();
    assert_progress(&next_raw(&mut responses).await, rev);

    // A write the watch does not see: progress speaks for it, never for an older revision.
    let other = c
        .put("other", "x", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    assert_eq!(other, rev + 1);
    tx.send(progress_request()).await.unwrap();
    assert_progress(&next_raw(&mut responses).await, other);

    // The watch starts: its event comes first, then progress at its revision; every request
    // got exactly one answer (a late extra one would arrive before the event).
    let mine = c
        .put("f", "2", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let event = next_raw(&mut responses).await;
    assert_eq!(event.watch_id, 0, "{event:?}");
    assert_eq!(event.events.len(), 1, "{event:?}");
    assert_eq!(event.events[0].kv.as_ref().unwrap().mod_revision, mine);
    tx.send(progress_request()).await.unwrap();
    assert_progress(&next_raw(&mut responses).await, mine);

    // Cancelling the last watch leaves a stream that still answers at the current revision.
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CancelRequest(
            pb::WatchCancelRequest { watch_id: 0 },
        )),
    })
    .await
    .unwrap();
    assert!(next_raw(&mut responses).await.canceled);
    let last = c
        .put("g", "1", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    tx.send(progress_request()).await.unwrap();
    assert_progress(&next_raw(&mut responses).await, last);
}

#[tokio::test]
async fn a_slow_watcher_misses_nothing_and_never_blocks_writers() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let mut w = c
        .watch("s/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut w).await.created());
    // Thousands of revisions, written by concurrent clients while the watcher reads nothing.
    let first = c
        .get("s/", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision()
        + 1;
    let n: i64 = 2000;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let mut c = c.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(16) {
                    c.put(format!("s/{}", i % 10), "x".repeat(512), None)
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let mut expected = first;
    while expected < first + n {
        for e in next(&mut w).await.events() {
            assert_eq!(
                e.kv().unwrap().mod_revision(),
                expected,
                "events in order, none missing"
            );
            expected += 1;
        }
    }
}

#[tokio::test]
async fn lease_expiry_reaches_watchers_as_deletes() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let lease = c.lease_grant(2, None).await.unwrap().id();
    c.put("ephemeral", "v", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    let mut w = c.watch("ephemeral", None).await.unwrap();
    assert!(next(&mut w).await.created());
    let deleted = next(&mut w).await;
    assert_eq!(deleted.events()[0].event_type(), EventType::Delete);
    assert!(c.get("ephemeral", None).await.unwrap().kvs().is_empty());
    assert_eq!(c.lease_time_to_live(lease, None).await.unwrap().ttl(), -1);
}

/// etcd-client does not expose `fragment`, so this test reads the raw stream.
#[tokio::test]
async fn big_responses_are_fragmented_when_asked() {
    // The fragment limit is --max-request-bytes plus 512 KiB of gRPC overhead.
    let t4 = T4::start(t4_bin!(), &["--max-request-bytes", "65536"]).await;
    let mut c = t4.client().await;
    let value = "v".repeat(60_000);
    let mut first = 0;
    for i in 0..12 {
        let rev = c
            .put(format!("f/{i:02}"), value.clone(), None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        if i == 0 {
            first = rev;
        }
    }
    let mut client =
        pb::watch_client::WatchClient::new(t4.channel().await).max_decoding_message_size(64 << 20);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(pb::WatchRequest {
        request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
            pb::WatchCreateRequest {
                key: b"f/".to_vec(),
                range_end: b"f0".to_vec(),
                start_revision: first,
                fragment: true,
                ..Default::default()
            },
        )),
    })
    .await
    .unwrap();
    let mut stream = client
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let created = timeout(WAIT, stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(created.created);
    let mut events = 0;
    let mut fragments = 0;
    while events < 12 {
        let r = timeout(WAIT, stream.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert!(prost::Message::encoded_len(&r) < 65536 + 512 * 1024 + 70_000);
        if r.fragment {
            fragments += 1;
        }
        events += r.events.len();
    }
    assert_eq!(events, 12);
    assert!(fragments >= 1, "a 720 KB replay was sent in one piece");
    drop(tx);
}

#[tokio::test]
async fn a_txn_is_one_response_with_all_its_events() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let mut w = c
        .watch("t/", Some(WatchOptions::new().with_prefix()))
        .await
        .unwrap();
    assert!(next(&mut w).await.created());
    c.txn(Txn::new().and_then([TxnOp::put("t/1", "a", None), TxnOp::put("t/2", "b", None)]))
        .await
        .unwrap();
    let r = next(&mut w).await;
    assert_eq!(r.events().len(), 2);
    assert_eq!(
        r.events()[0].kv().unwrap().mod_revision(),
        r.events()[1].kv().unwrap().mod_revision()
    );
}
