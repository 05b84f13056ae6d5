//! Reads run concurrently with writes, straight from the store: they never wait for the
//! writer, and never see half of a write (a txn's keys change together, at one revision).

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{b, config, open, within};
use t4::{KeyRange, PutRequest, RangeRequest, RequestOp, TxnRequest, WatchOptions};

/// Held by each test of this file for its whole run. They observe how reads and writes
/// interleave, and on a 2-core machine five of them at once (each with a 2-worker runtime,
/// reader threads and writers) starve each other's readers of CPU.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn pair_txn(i: u64) -> TxnRequest {
    let put = |k: &str| {
        RequestOp::Put(PutRequest {
            key: b(k),
            value: format!("{i}").into(),
            ..Default::default()
        })
    };
    TxnRequest {
        success: vec![put("pair/a"), put("pair/b")],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_never_see_half_of_a_txn_while_writers_run() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    node.txn(pair_txn(0)).await.unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    // Writes submitted and not yet acknowledged, and acknowledgements so far: a read that
    // starts while a write is pending and ends before any acknowledgement did not wait for
    // that write.
    let pending = Arc::new(AtomicU64::new(0));
    let acks = Arc::new(AtomicU64::new(0));
    let overlapped = Arc::new(AtomicU64::new(0));
    // Readers on plain threads, outside the runtime: a read needs no executor and no core.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (node, stop, reads) = (node.clone(), stop.clone(), reads.clone());
            let (pending, acks, overlapped) = (pending.clone(), acks.clone(), overlapped.clone());
            std::thread::spawn(move || {
                let mut revisions = BTreeSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let acks_before = acks.load(Ordering::SeqCst);
                    let write_pending = pending.load(Ordering::SeqCst) > 0;
                    let resp = futures::executor::block_on(node.range(RangeRequest {
                        key: b("pair/"),
                        range_end: b("pair0"),
                        ..Default::default()
                    }))
                    .unwrap();
                    let [a, b] = &resp.kvs[..] else {
                        panic!("expected both keys, got {:?}", resp.kvs)
                    };
                    assert_eq!(a.mod_revision, b.mod_revision, "half a txn is visible");
                    assert_eq!(a.value, b.value, "half a txn is visible");
                    assert!(a.mod_revision <= resp.revision);
                    revisions.insert(a.mod_revision);
                    reads.fetch_add(1, Ordering::Relaxed);
                    if write_pending && acks.load(Ordering::SeqCst) == acks_before {
                        overlapped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                revisions
            })
        })
        .collect();

    // Several writers, so that group commit puts many txns into one WAL append and one
    // store batch: the reader must not see a batch half-applied either.
    const WRITERS: u64 = 4;
    const TXNS: u64 = 150;
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (node, pending, acks) = (node.clone(), pending.clone(), acks.clone());
            tokio::spawn(async move {
                for i in 0..TXNS {
                    pending.fetch_add(1, Ordering::SeqCst);
                    node.txn(pair_txn(w * TXNS + i + 1)).await.unwrap();
                    acks.fetch_add(1, Ordering::SeqCst);
                    pending.fetch_sub(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for w in writers {
        within("writers", w).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut seen = BTreeSet::new();
    for r in readers {
        seen.extend(r.join().unwrap());
    }
    let reads = reads.load(Ordering::Relaxed);
    let overlapped = overlapped.load(Ordering::Relaxed);
    eprintln!(
        "{reads} reads saw {} distinct revisions during {} txns; {overlapped} of them \
         started and ended while a write was pending",
        seen.len(),
        WRITERS * TXNS
    );
    assert!(seen.len() > 1, "the readers ran while the writers did");
    // Reads queued behind the writer would each end after the write pending when they
    // started was acknowledged. (Not a comparison of rates: on a busy machine the readers
    // may do fewer reads than the writers do txns, yet none of them waits.)
    assert!(
        overlapped >= 10,
        "only {overlapped} of {reads} reads completed while a write was in flight: reads wait for the writer"
    );
    node.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_is_visible_to_every_read_that_starts_after_it_is_acknowledged() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let reader = node.clone();
    for i in 0..200 {
        let rev = node.put("k", format!("{i}")).await.unwrap();
        let kv = reader.get("k").await.unwrap().unwrap();
        assert_eq!(kv.mod_revision, rev, "read-your-writes after the ack");
        assert!(reader.current_revision() >= rev);
    }
    node.close().await.unwrap();
}

/// A write is answered as soon as it is durable, possibly while its apply to the store is
/// still running on another thread; every read that starts after the answer must see it
/// anyway. Many writers keep batches (and applies) overlapping; each reads its own key back
/// right after each put, through each read path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_read_path_sees_a_write_answered_while_other_writes_are_applied() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let writers: Vec<_> = (0..16)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                let key = format!("own/{w:02}");
                for i in 0..150 {
                    let rev = node.put(key.clone(), format!("{i}")).await.unwrap();
                    let kv = node.get(key.clone()).await.unwrap().unwrap();
                    assert_eq!(kv.mod_revision, rev, "{key}: get after the answer");
                    let resp = node
                        .range(RangeRequest {
                            key: key.clone().into(),
                            ..Default::default()
                        })
                        .await
                        .unwrap();
                    assert_eq!(
                        resp.kvs[0].mod_revision, rev,
                        "{key}: range after the answer"
                    );
                    assert!(resp.revision >= rev, "{key}: range header revision");
                    assert!(node.current_revision() >= rev, "{key}: current revision");
                    if i % 30 == 0 {
                        assert!(
                            node.status().await.unwrap().revision >= rev,
                            "{key}: status"
                        );
                    }
                }
            })
        })
        .collect();
    for w in writers {
        within("writers", w).await.unwrap();
    }
    node.close().await.unwrap();
}

/// With hundreds of writers, batches are large: their applies run on the applier thread,
/// several outstanding at once behind the appends, and writes are answered meanwhile. A
/// writer still reads its own write back right after each answer, and a watcher started
/// at the beginning gets every write once, in revision order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answered_writes_are_read_back_while_several_large_applies_trail_the_log() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    const WRITERS: usize = 256;
    const PUTS: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let mut watch = node
        .watch(KeyRange::prefix("many/"), WatchOptions::default())
        .await
        .unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                let key = format!("many/{w:03}");
                for i in 0..PUTS {
                    let rev = node.put(key.clone(), format!("{i}")).await.unwrap();
                    let kv = node.get(key.clone()).await.unwrap().unwrap();
                    assert_eq!(kv.mod_revision, rev, "{key}: get after the answer");
                    assert_eq!(kv.version, i as i64 + 1, "{key}: version");
                }
            })
        })
        .collect();
    for w in writers {
        within("writers", w).await.unwrap();
    }
    let mut last = 0;
    let mut seen = 0;
    while seen < WRITERS * PUTS {
        for event in within("events", watch.next_batch()).await.unwrap() {
            assert!(event.kv.mod_revision > last, "events in revision order");
            last = event.kv.mod_revision;
            seen += 1;
        }
    }
    assert_eq!(last, node.current_revision());
    node.close().await.unwrap();
}

/// Point gets go through the latest-version cache. With a cache of a few entries (evicted
/// and refilled all the time) and readers on other threads, a get never answers a value
/// older than one already acknowledged, nor older than one it saw before, and never one
/// written to another key: stale fills from views older than a write would break this.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_gets_through_a_small_cache_never_go_back_while_writers_run() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    for cache_bytes in [1024, 64 << 20] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.read_cache_bytes = cache_bytes;
        let node = t4::Node::open(config).await.unwrap();
        const KEYS: usize = 24;
        let key = |k: usize| format!("cached/{k:02}");
        // The newest value of each key whose put was acknowledged (values are counters,
        // `i * KEYS + k` for key `k`, so they only grow).
        let acked: Arc<Vec<AtomicU64>> = Arc::new((0..KEYS).map(|_| AtomicU64::new(0)).collect());
        for k in 0..KEYS {
            node.put(key(k), format!("{k}")).await.unwrap();
            acked[k].store(k as u64, Ordering::SeqCst);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|r| {
                let (node, stop, acked) = (node.clone(), stop.clone(), acked.clone());
                std::thread::spawn(move || {
                    let mut last = [0u64; KEYS];
                    let mut reads = 0u64;
                    let mut k = r;
                    while !stop.load(Ordering::Relaxed) {
                        k = (k * 7 + 3) % KEYS;
                        let floor = acked[k].load(Ordering::SeqCst);
                        let kv = futures::executor::block_on(node.get(key(k)))
                            .unwrap()
                            .unwrap();
                        let v: u64 = std::str::from_utf8(&kv.value).unwrap().parse().unwrap();
                        assert_eq!(v as usize % KEYS, k, "a value of another key");
                        assert!(
                            v >= floor,
                            "{}: read {v} after {floor} was acknowledged",
                            key(k)
                        );
                        assert!(
                            v >= last[k],
                            "{}: read {v} after reading {}",
                            key(k),
                            last[k]
                        );
                        last[k] = v;
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();
        let writers: Vec<_> = (0..2)
            .map(|w| {
                let (node, acked) = (node.clone(), acked.clone());
                tokio::spawn(async move {
                    // Writer `w` owns the keys `k % 2 == w`, so each key's values grow.
                    for i in 1..300u64 {
                        for k in (w..KEYS).step_by(2) {
                            if (i + k as u64).is_multiple_of(5) {
                                let v = i * KEYS as u64 + k as u64;
                                node.put(key(k), format!("{v}")).await.unwrap();
                                acked[k].store(v, Ordering::SeqCst);
                            }
                        }
                    }
                })
            })
            .collect();
        for w in writers {
            within("writers", w).await.unwrap();
        }
        stop.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
        assert!(reads > 0);
        node.close().await.unwrap();
    }
}
