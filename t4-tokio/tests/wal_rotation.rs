//! Local WAL segments on the real disk: rotated by size and by age, deleted once the store
//! holds their entries durably, so the `wal/` directory does not grow without bound.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{open, wal_files, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_rotate_by_size_and_are_deleted_so_the_wal_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.segment_max_bytes = 8 * 1024;
    config.segment_max_age = Duration::from_secs(3600);
    let node = t4::Node::open(config).await.unwrap();

    const WRITERS: usize = 4;
    const PUTS: usize = 250;
    let value = "x".repeat(200);
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (node, value) = (node.clone(), value.clone());
            tokio::spawn(async move {
                let mut max_live = 0;
                for i in 0..PUTS {
                    node.put(format!("w{w}/{i:04}"), value.clone())
                        .await
                        .unwrap();
                    max_live = max_live.max(node.wal_segments());
                }
                max_live
            })
        })
        .collect();
    // Meanwhile, look at the directory itself.
    let mut names_seen = BTreeSet::new();
    let mut max_on_disk = 0;
    while writers.iter().any(|w| !w.is_finished()) {
        let files = wal_files(dir.path());
        max_on_disk = max_on_disk.max(files.len());
        names_seen.extend(files);
        tokio::task::yield_now().await;
    }
    let mut max_live = 0;
    for w in writers {
        max_live = max_live.max(within("writers", w).await.unwrap());
    }
    // About 200 KB of values went through 8 KiB segments.
    let written = (WRITERS * PUTS * value.len()) as u64;
    let created_at_least = written / (8 * 1024 + 1024);
    eprintln!(
        "{} segment files seen on disk, at least {created_at_least} created; at most {max_live} \
         live (node's count) and {max_on_disk} on disk at once",
        names_seen.len()
    );
    assert!(names_seen.len() > 5, "segments rotated by size");
    assert!(
        (max_live as u64) < created_at_least / 2 && (max_on_disk as u64) < created_at_least / 2,
        "sealed segments are deleted while writes go on"
    );

    // Once the writes stop, every sealed segment goes; only the active one may remain.
    within(
        "sealed segments to be deleted",
        node.wait_for_wal_segments(1),
    )
    .await
    .unwrap();
    assert!(
        wal_files(dir.path()).len() <= 1,
        "{:?}",
        wal_files(dir.path())
    );

    // Nothing was lost with them.
    assert_eq!(node.get_prefix("w").await.unwrap().len(), WRITERS * PUTS);
    node.close().await.unwrap();
    let node = open(dir.path()).await;
    assert_eq!(node.get_prefix("w").await.unwrap().len(), WRITERS * PUTS);
    node.close().await.unwrap();
}

#[tokio::test]
async fn an_idle_segment_is_sealed_by_age_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.segment_max_age = Duration::from_millis(20);
    let node = t4::Node::open(config).await.unwrap();
    node.put("a", "1").await.unwrap();

    // The segment reaches its age with no write coming: the core seals it, persists the
    // store, and deletes it.
    within(
        "the aged segment to be deleted",
        node.wait_for_wal_segments(0),
    )
    .await
    .unwrap();
    assert!(wal_files(dir.path()).is_empty());

    // The next write opens a fresh segment, and the data is all there after a restart.
    node.put("b", "2").await.unwrap();
    node.close().await.unwrap();
    let node = open(dir.path()).await;
    assert_eq!(node.get("a").await.unwrap().unwrap().value, "1");
    assert_eq!(node.get("b").await.unwrap().unwrap().value, "2");
    node.close().await.unwrap();
}

#[tokio::test]
async fn segments_recovered_at_open_are_deleted_once_the_store_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = common::config(dir.path());
    config.segment_max_age = Duration::from_secs(3600);
    let node = t4::Node::open(config.clone()).await.unwrap();
    for i in 0..10 {
        node.put(format!("k{i}"), "v").await.unwrap();
    }
    node.close().await.unwrap();
    assert_eq!(
        wal_files(dir.path()).len(),
        1,
        "close keeps the active segment"
    );

    // A reopened node appends to a fresh segment; the recovered one is deleted after the
    // store persisted.
    let node = t4::Node::open(config).await.unwrap();
    within(
        "the recovered segment to be deleted",
        node.wait_for_wal_segments(0),
    )
    .await
    .unwrap();
    assert!(wal_files(dir.path()).is_empty());
    assert_eq!(node.get_prefix("k").await.unwrap().len(), 10);
    node.close().await.unwrap();
}
