//! The core's bucket decisions, driven against an in-test object store.

mod harness;
mod outage_leases;

use std::time::Duration;

use harness::{Bucket, Io, Node, remote};

use crate::error::{Error, GrpcCode};
use crate::object::ObjectRequest;
use crate::remote::layout;
use crate::remote::{BootstrapPhase, RemoteConfig};

fn is_wal_put(io: &Io) -> bool {
    matches!(io, Io::Object(_, ObjectRequest::Put { key, .. }) if key.starts_with("wal/"))
}

fn tail_puts(bucket: &Bucket) -> usize {
    bucket.puts.iter().filter(|k| k.starts_with("wal/")).count()
}

#[test]
fn start_up_takes_the_term_and_writes_a_marker_before_serving() {
    let bucket = Bucket::shared();
    let mut node = Node::open(remote("a"), &bucket);
    assert!(!node.core.is_serving());
    let early = node.put("k", "v");
    assert!(matches!(
        node.replies.get(&early),
        Some(Err(Error::ObjectStoreUnavailable(_)))
    ));
    node.settle();
    assert!(node.core.is_serving(), "{:?}", node.failures);
    assert_eq!(node.core.bootstrap_progress().phase, BootstrapPhase::Done);
    assert_eq!(node.core.remote_term(), 1);
    let b = bucket.borrow();
    assert!(b.objects.contains_key("writer"));
    assert!(
        b.objects.contains_key(&layout::wal_key(1)),
        "marker at index 1"
    );
}

#[test]
fn a_sync_write_is_acknowledged_only_after_its_batch_is_in_the_bucket() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    let id = node.put("k", "v");
    // The local fsync completes first: no reply yet.
    assert!(node.complete(|io| matches!(io, Io::Wal(_))));
    assert!(!node.replies.contains_key(&id), "acked before the upload");
    assert!(node.get("k").is_none(), "applied before the upload");
    assert!(node.complete(is_wal_put));
    assert!(matches!(node.replies.get(&id), Some(Ok(_))));
    assert_eq!(node.get("k").as_deref(), Some("v"));
    assert!(node.complete(|io| matches!(io, Io::Applied(_))));
    assert_eq!(node.core.uploaded_index(), node.core.applied_index());
    // And the other way round: upload first, then fsync.
    let id = node.put("k2", "v");
    assert!(node.complete(is_wal_put));
    assert!(!node.replies.contains_key(&id), "acked before the fsync");
    assert!(node.complete(|io| matches!(io, Io::Wal(_))));
    assert!(matches!(node.replies.get(&id), Some(Ok(_))));
}

/// With a bucket one apply is outstanding at a time, whatever `max_applies_in_flight` says
/// (the harness leaves it at its default, 4): checkpoints are taken between applies, and
/// under a steady load several in flight would put them off.
#[test]
fn with_a_bucket_one_apply_is_outstanding_at_a_time() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    let first = node.put("a", "1");
    assert!(node.complete(|io| matches!(io, Io::Wal(_))));
    assert!(node.complete(is_wal_put));
    assert!(matches!(node.replies.get(&first), Some(Ok(_))));
    let second = node.put("b", "1");
    assert!(node.complete(|io| matches!(io, Io::Wal(_))));
    assert!(node.complete(is_wal_put));
    assert!(
        !node.replies.contains_key(&second),
        "a second apply was handed out while the first is outstanding"
    );
    assert!(node.complete(|io| matches!(io, Io::Applied(_))));
    assert!(matches!(node.replies.get(&second), Some(Ok(_))));
}

#[test]
fn concurrent_writes_share_one_put() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    let before = tail_puts(&bucket.borrow());
    let ids: Vec<_> = (0..20).map(|i| node.put(&format!("k{i}"), "v")).collect();
    node.settle();
    for id in &ids {
        assert!(matches!(node.replies.get(id), Some(Ok(_))));
    }
    // The first request goes alone; the 19 that arrived meanwhile share the next batch.
    assert_eq!(tail_puts(&bucket.borrow()) - before, 2);
}

#[test]
fn an_outage_fails_writes_fast_with_a_retryable_error_and_the_node_resumes_by_itself() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    node.put_now("before", "1").expect("written");
    bucket.borrow_mut().down = true;
    let id = node.put("during", "2");
    node.settle_for(Duration::from_millis(10));
    let err = node
        .replies
        .remove(&id)
        .expect("answered fast")
        .unwrap_err();
    assert!(matches!(err, Error::ObjectStoreUnavailable(_)), "{err}");
    assert_eq!(err.grpc_code(), GrpcCode::Unavailable);
    assert!(err.to_string().contains("may or may not"), "{err}");
    // Later writes are refused at once, without being decided; reads keep working.
    let refused = node.put("refused", "3");
    assert!(matches!(
        node.replies.remove(&refused),
        Some(Err(Error::ObjectStoreUnavailable(_)))
    ));
    assert_eq!(node.get("before").as_deref(), Some("1"));
    assert!(node.core.object_store_outage().is_some());
    assert!(node.failures.is_empty(), "never fails for an outage");
    // The node keeps retrying with backoff and comes back when the bucket does.
    node.settle_for(Duration::from_secs(30));
    bucket.borrow_mut().down = false;
    node.settle_for(Duration::from_secs(30));
    assert!(node.core.object_store_outage().is_none());
    assert_eq!(
        node.get("during").as_deref(),
        Some("2"),
        "the unknown write happened"
    );
    assert!(
        node.get("refused").is_none(),
        "a refused write did not happen"
    );
    node.put_now("after", "4").expect("writes resume");
    let fresh = Node::start(remote("a"), &bucket);
    assert_eq!(fresh.get("after").as_deref(), Some("4"));
}

#[test]
fn an_ambiguous_create_is_resolved_by_reading_it_back() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    bucket.borrow_mut().lose_next_put_answer = true;
    let id = node.put("k", "v");
    node.settle_for(Duration::from_secs(5));
    // The client was told the outcome is unknown; the core found its object and went on.
    assert!(matches!(
        node.replies.remove(&id),
        Some(Err(Error::ObjectStoreUnavailable(_)))
    ));
    assert!(node.failures.is_empty(), "{:?}", node.failures);
    assert!(node.core.object_store_outage().is_none());
    assert_eq!(node.get("k").as_deref(), Some("v"));
    let wal_puts = bucket
        .borrow()
        .puts
        .iter()
        .filter(|k| **k == layout::wal_key(2))
        .count();
    assert_eq!(wal_puts, 1, "the object was not written twice");
    node.put_now("k2", "v").expect("continues");
}

#[test]
fn a_second_node_refuses_a_prefix_another_node_holds() {
    let bucket = Bucket::shared();
    let _a = Node::start(remote("a"), &bucket);
    let b = Node::start(remote("b"), &bucket);
    assert!(!b.core.is_serving());
    let reason = b.failures.first().expect("refuses");
    assert!(
        reason.contains("\"a\"") && reason.contains("takeover"),
        "{reason}"
    );
}

#[test]
fn a_zombie_writer_is_fenced_by_the_marker_and_never_forks_the_log() {
    let bucket = Bucket::shared();
    let mut old = Node::start(remote("a"), &bucket);
    old.put_now("k", "old").expect("written");
    // A new process takes the prefix over while the old one is paused.
    let mut new = Node::start(
        RemoteConfig {
            takeover: true,
            ..remote("b")
        },
        &bucket,
    );
    assert!(new.core.is_serving(), "{:?}", new.failures);
    assert_eq!(new.get("k").as_deref(), Some("old"));
    // The old one wakes up and writes: it must not be acknowledged.
    let id = old.put("k", "zombie");
    old.settle();
    let err = old.replies.remove(&id).expect("answered").unwrap_err();
    assert!(matches!(err, Error::Failed(_)), "{err}");
    let reason = old.failures.first().expect("fenced");
    assert!(
        reason.contains("fenced") && reason.contains("term 2"),
        "{reason}"
    );
    new.put_now("k", "new").expect("the new writer goes on");
    let fresh = Node::start(remote("b"), &bucket);
    assert_eq!(fresh.get("k").as_deref(), Some("new"));
}

#[test]
fn a_writer_that_slept_through_a_takeover_mid_start_up_stops_at_the_newer_terms_entries() {
    let bucket = Bucket::shared();
    let _old = Node::start(remote("a"), &bucket);
    let takeover = |id: &str| RemoteConfig {
        takeover: true,
        ..remote(id)
    };
    let mut zombie = Node::open(takeover("z"), &bucket);
    let reads_chain = |io: &Io| matches!(io, Io::Object(_, ObjectRequest::Get { key }) if key.starts_with("wal/"));
    zombie.run_until_asked(reads_chain);
    let mut new = Node::start(takeover("n"), &bucket);
    new.put_now("k", "new").expect("written");
    let before = zombie.core.applied_index();
    zombie.wakes_fenced_by("term 3");
    assert!(
        zombie.core.applied_index() <= before + 1,
        "the zombie applied the newer term's entries"
    );
    assert_eq!(zombie.get("k"), None);
    // Its own older-term marker never extends the newer log.
    let fresh = Node::start(remote("n"), &bucket);
    assert_eq!(fresh.get("k").as_deref(), Some("new"));
}

#[test]
fn a_writer_that_slept_through_a_takeover_mid_start_up_is_fenced_even_at_a_freed_name() {
    let bucket = Bucket::shared();
    let mut old = Node::start(remote("a"), &bucket);
    // A second process claims the prefix (term 2) and the manifest, then freezes just
    // before it reads the tail chain.
    let takeover = |id: &str| RemoteConfig {
        takeover: true,
        merge_min_objects: 2,
        ..remote(id)
    };
    let mut zombie = Node::open(takeover("z"), &bucket);
    let reads_chain = |io: &Io| matches!(io, Io::Object(_, ObjectRequest::Get { key }) if key.starts_with("wal/"));
    zombie.run_until_asked(reads_chain);
    // The first writer does not know yet and goes on: its writes are acknowledged and
    // are the log (wal/2, wal/3).
    old.put_now("k", "1").expect("written");
    old.put_now("k", "2").expect("written");
    // A third process takes over (term 3), reads the chain, writes its marker and merges,
    // deleting the merged tail objects: `wal/2`, the name the frozen one will look for next,
    // is free again.
    let mut new = Node::start(takeover("n"), &bucket);
    assert!(new.core.is_serving(), "{:?}", new.failures);
    for i in 0..4 {
        new.put_now("k", &format!("new{i}")).expect("written");
    }
    assert!(
        !bucket.borrow().objects.contains_key(&layout::wal_key(2)),
        "the test needs wal/2 merged and deleted: {:?}",
        bucket.borrow().keys("wal/")
    );
    // The frozen one wakes: its chain ends at the free name, its marker create there
    // succeeds, and only the manifest re-read after it shows the newer term.
    zombie.wakes_fenced_by("term 3");
    // Nothing it did reaches the log: a fresh node recovers the newest writer's state.
    new.put_now("k", "last").expect("the new writer goes on");
    let fresh = Node::start(remote("n"), &bucket);
    assert!(fresh.core.is_serving(), "{:?}", fresh.failures);
    assert_eq!(fresh.get("k").as_deref(), Some("last"));
}

#[test]
fn a_writer_that_slept_through_a_takeover_after_listing_the_log_writes_nothing() {
    let bucket = Bucket::shared();
    let mut old = Node::start(remote("a"), &bucket);
    old.put_now("k", "1").expect("written");
    let takeover = |id: &str| RemoteConfig {
        takeover: true,
        merge_min_objects: 2,
        ..remote(id)
    };
    // A second process lists `wal/`, claims the manifest, reads the first marker, then
    // freezes just before it reads `wal/2`, the last tail it listed.
    let mut zombie = Node::open(takeover("z"), &bucket);
    let wanted = layout::wal_key(2);
    let reads_wanted =
        |io: &Io| matches!(io, Io::Object(_, ObjectRequest::Get { key }) if *key == wanted);
    zombie.run_until_asked(reads_wanted);
    // A third process takes over, merges the tails the frozen one listed and deletes them.
    let mut new = Node::start(takeover("n"), &bucket);
    for i in 0..4 {
        new.put_now("k", &format!("new{i}")).expect("written");
    }
    assert!(
        !bucket.borrow().objects.contains_key(&wanted),
        "the test needs {wanted} merged and deleted: {:?}",
        bucket.borrow().keys("wal/")
    );
    let before = bucket.borrow().keys("wal/");
    // The frozen one wakes: the tail it listed is gone. That is not the end of the log, so
    // it writes nothing (no marker or upload into the merged range) and finds it is fenced.
    zombie.wakes_fenced_by("term 3");
    assert_eq!(
        bucket.borrow().keys("wal/"),
        before,
        "the zombie wrote a tail"
    );
    new.put_now("k", "last").expect("the new writer goes on");
    let fresh = Node::start(remote("n"), &bucket);
    assert_eq!(fresh.get("k").as_deref(), Some("last"));
}

#[test]
fn a_late_write_of_the_old_term_before_the_marker_is_adopted() {
    let bucket = Bucket::shared();
    let mut old = Node::start(remote("a"), &bucket);
    old.put_now("k", "1").expect("written");
    // The old writer's upload is in flight while a new writer starts up.
    let id = old.put("k", "2");
    let mut new = Node::open(
        RemoteConfig {
            takeover: true,
            ..remote("b")
        },
        &bucket,
    );
    // The new writer reads the log end, then the old upload lands before its marker.
    while !new.pending.iter().any(
        |io| matches!(io, Io::Object(_, ObjectRequest::Put { key, .. }) if key.starts_with("wal/")),
    ) {
        assert!(new.complete(|_| true));
    }
    old.settle();
    assert!(matches!(old.replies.remove(&id), Some(Ok(_))), "acked");
    new.settle();
    assert!(new.core.is_serving(), "{:?}", new.failures);
    assert_eq!(
        new.get("k").as_deref(),
        Some("2"),
        "the acked write was adopted"
    );
}

#[test]
fn a_fresh_node_recovers_every_acknowledged_write_from_the_bucket_alone() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    for i in 0..50 {
        node.put_now(&format!("k{i}"), &format!("v{i}"))
            .expect("written");
    }
    drop(node);
    let fresh = Node::start(remote("a"), &bucket);
    assert!(fresh.core.is_serving(), "{:?}", fresh.failures);
    for i in 0..50 {
        assert_eq!(fresh.get(&format!("k{i}")), Some(format!("v{i}")));
    }
    assert_eq!(fresh.core.remote_term(), 2);
}

#[test]
fn a_restart_uploads_local_entries_the_bucket_lacks() {
    let bucket = Bucket::shared();
    let mut node = Node::start(
        RemoteConfig {
            sync_upload: false,
            ..remote("a")
        },
        &bucket,
    );
    let id = node.put("k", "v");
    // Acked after the local fsync; the machine stops before the upload.
    while node.complete(|io| !is_wal_put(io)) {}
    assert!(matches!(node.replies.remove(&id), Some(Ok(_))));
    assert_eq!(node.core.unuploaded_entries(), 1);
    assert!(node.core.unuploaded_bytes() > 0);
    let (store, wal) = (node.store.crash_image(0), node.wal.clone());
    drop(node);
    let restarted = Node::open_with(remote("a"), &bucket, store, wal);
    let mut restarted = restarted;
    restarted.settle();
    assert!(restarted.core.is_serving(), "{:?}", restarted.failures);
    assert_eq!(restarted.core.unuploaded_entries(), 0);
    let fresh = Node::start(remote("a"), &bucket);
    assert_eq!(fresh.get("k").as_deref(), Some("v"));
}

#[test]
fn async_mode_acks_after_fsync_and_uploads_by_age_and_an_idle_node_is_silent() {
    let bucket = Bucket::shared();
    let mut node = Node::start(
        RemoteConfig {
            sync_upload: false,
            upload_max_delay: Duration::from_millis(100),
            ..remote("a")
        },
        &bucket,
    );
    let before = tail_puts(&bucket.borrow());
    for i in 0..10 {
        let id = node.put(&format!("k{i}"), "v");
        while node.complete(|io| !is_wal_put(io)) {}
        assert!(matches!(node.replies.remove(&id), Some(Ok(_))));
    }
    assert_eq!(node.core.unuploaded_entries(), 10);
    assert_eq!(tail_puts(&bucket.borrow()), before);
    node.advance(Duration::from_millis(100));
    node.settle_for(Duration::ZERO);
    assert_eq!(
        tail_puts(&bucket.borrow()),
        before + 1,
        "one PUT for ten entries"
    );
    assert_eq!(node.core.unuploaded_entries(), 0);
    let requests = bucket.borrow().requests;
    node.settle_for(Duration::from_secs(3600));
    assert_eq!(
        bucket.borrow().requests,
        requests,
        "an idle node polls nothing"
    );
    assert!(node.pending.is_empty());
}

#[test]
fn merging_replaces_tail_objects_by_a_segment_and_keeps_markers() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 4,
        ..remote("a")
    };
    let mut node = Node::start(config.clone(), &bucket);
    for i in 0..10 {
        node.put_now(&format!("k{i}"), "v").expect("written");
    }
    let b = bucket.borrow();
    assert!(!b.keys("seg/").is_empty(), "{:?}", b.objects.keys());
    let manifest: layout::Manifest =
        layout::decode_record("manifest", &b.objects["manifest"].0).expect("manifest");
    assert!(manifest.merged_through >= 8);
    assert!(manifest.fences.contains(&1));
    assert!(
        b.objects.contains_key(&layout::wal_key(1)),
        "the marker stays"
    );
    let tails = b.keys("wal/").len();
    assert!(tails < 5, "merged tails were deleted: {:?}", b.keys("wal/"));
    drop(b);
    let fresh = Node::start(config, &bucket);
    for i in 0..10 {
        assert_eq!(fresh.get(&format!("k{i}")).as_deref(), Some("v"));
    }
}

fn is_delete(io: &Io) -> bool {
    matches!(io, Io::Object(_, ObjectRequest::DeleteMany { .. }))
}

#[test]
fn a_merge_deletes_its_tail_objects_in_one_bulk_request() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 8,
        ..remote("a")
    };
    let mut node = Node::start(config, &bucket);
    for i in 0..7 {
        node.put_now(&format!("k{i}"), "v").expect("written");
    }
    let b = bucket.borrow();
    assert_eq!(
        b.keys("seg/"),
        [layout::seg_key(1, 8)],
        "one merge of 8 tails"
    );
    // The marker (wal/1) is a fence and stays; the other 7 go in one request.
    let merged: Vec<String> = (2..=8).map(layout::wal_key).collect();
    assert_eq!(b.deletes, [merged]);
    assert_eq!(b.keys("wal/"), [layout::wal_key(1)]);
}

#[test]
fn a_merge_of_more_than_a_thousand_tails_deletes_them_in_requests_of_a_thousand() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 1_201,
        ..remote("a")
    };
    let mut node = Node::start(config, &bucket);
    for i in 0..1_200 {
        node.put_now(&format!("k{i}"), "v").expect("written");
    }
    let b = bucket.borrow();
    assert_eq!(b.keys("seg/"), [layout::seg_key(1, 1_201)]);
    let sizes: Vec<usize> = b.deletes.iter().map(Vec::len).collect();
    assert_eq!(sizes, [1_000, 200]);
    let deleted: Vec<String> = b.deletes.concat();
    let merged: Vec<String> = (2..=1_201).map(layout::wal_key).collect();
    assert_eq!(deleted, merged);
    assert_eq!(b.keys("wal/"), [layout::wal_key(1)]);
}

#[test]
fn the_next_merge_waits_until_the_bulk_delete_of_the_last_one_is_answered() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 4,
        ..remote("a")
    };
    let mut node = Node::start(config, &bucket);
    let write = |node: &mut Node, key: &str| {
        let id = node.put(key, "v");
        while node.complete(|io| !is_delete(io)) {}
        assert!(
            matches!(node.replies.remove(&id), Some(Ok(_))),
            "{key} acknowledged"
        );
    };
    for i in 0..3 {
        write(&mut node, &format!("k{i}"));
    }
    let held: Vec<_> = node.pending.iter().filter(|io| is_delete(io)).collect();
    assert_eq!(held.len(), 1, "the first merge's delete: {held:?}");
    for i in 3..12 {
        write(&mut node, &format!("k{i}"));
    }
    assert_eq!(
        bucket.borrow().keys("seg/").len(),
        1,
        "no merge starts while a delete is in flight"
    );
    node.settle();
    let b = bucket.borrow();
    assert!(b.keys("seg/").len() > 1, "{:?}", b.keys("seg/"));
    assert!(b.deletes.len() > 1);
}

#[test]
fn checkpoints_gc_and_recovery_from_the_newest_checkpoint() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 2,
        checkpoint_retain: 1,
        ..remote("a")
    };
    let mut node = Node::start(config.clone(), &bucket);
    for i in 0..10 {
        node.put_now(&format!("k{i}"), "1").expect("written");
    }
    let first = node.demand_checkpoint().expect("checkpoint");
    assert_eq!(first.index, node.core.applied_index());
    for i in 0..10 {
        node.put_now(&format!("k{i}"), "2").expect("written");
    }
    node.put_now("extra", "x").expect("written");
    // Leftovers of interrupted requests: swept by the next publication.
    for orphan in [
        "data/00ff",
        "seg/99999999999999999990-99999999999999999999",
        "ckp/x",
    ] {
        let mut b = bucket.borrow_mut();
        b.objects
            .insert(orphan.to_string(), (bytes::Bytes::from_static(b"?"), 1));
    }
    let second = node.demand_checkpoint().expect("checkpoint");
    node.settle();
    for orphan in [
        "data/00ff",
        "seg/99999999999999999990-99999999999999999999",
        "ckp/x",
    ] {
        assert!(
            !bucket.borrow().objects.contains_key(orphan),
            "{orphan} swept"
        );
    }
    assert!(second.index > first.index);
    node.put_now("after", "y").expect("written");
    {
        let b = bucket.borrow();
        let ckps = b.keys("ckp/");
        assert_eq!(ckps, vec![layout::ckp_key(second.index, second.revision)]);
        let manifest: layout::Manifest =
            layout::decode_record("manifest", &b.objects["manifest"].0).expect("manifest");
        assert!(
            manifest.segments.iter().all(|s| s.last > second.index),
            "segments before the only retained checkpoint were collected: {manifest:?}"
        );
        for seg in b.keys("seg/") {
            assert!(
                manifest
                    .segments
                    .iter()
                    .any(|s| layout::seg_key(s.first, s.last) == seg),
                "{seg} is not listed"
            );
        }
        let record: layout::CheckpointRecord =
            layout::decode_record("ckp", &b.objects[&ckps[0]].0).expect("record");
        let mut data = b.keys("data/");
        data.sort();
        let mut listed: Vec<String> = record
            .files
            .iter()
            .map(|f| layout::data_key(&f.sha256))
            .collect();
        listed.sort();
        listed.dedup();
        assert_eq!(
            data, listed,
            "exactly the retained checkpoint's files remain"
        );
        assert!(
            b.objects.contains_key(&layout::wal_key(1)),
            "markers survive GC"
        );
    }
    let mut fresh = Node::open(config, &bucket);
    fresh.settle();
    assert!(fresh.core.is_serving(), "{:?}", fresh.failures);
    let progress = fresh.core.bootstrap_progress();
    assert!(
        progress.files_total > 0,
        "loaded from the checkpoint: {progress:?}"
    );
    for i in 0..10 {
        assert_eq!(fresh.get(&format!("k{i}")).as_deref(), Some("2"));
    }
    assert_eq!(fresh.get("extra").as_deref(), Some("x"));
    assert_eq!(fresh.get("after").as_deref(), Some("y"));
}

#[test]
fn a_delta_checkpoint_uploads_only_what_changed() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 1_000,
        ..remote("a")
    };
    let mut node = Node::start(config.clone(), &bucket);
    let value = "x".repeat(100);
    for i in 0..1_000 {
        node.put(&format!("key{i:05}"), &value);
    }
    node.settle();
    let base = node.demand_checkpoint().expect("base");
    for i in 0..10 {
        node.put_now(&format!("key{:05}", i * 100), "changed")
            .expect("written");
    }
    node.submit(crate::request::Request::DeleteRange(
        crate::request::DeleteRangeRequest {
            key: bytes::Bytes::from_static(b"key00001"),
            ..Default::default()
        },
    ));
    node.settle();
    let delta = node.demand_checkpoint().expect("delta");
    assert!(
        delta.uploaded_bytes * 20 < base.uploaded_bytes,
        "delta uploaded {} bytes, base {}",
        delta.uploaded_bytes,
        base.uploaded_bytes
    );
    let fresh = Node::start(config, &bucket);
    assert_eq!(fresh.get("key00000").as_deref(), Some("changed"));
    assert_eq!(fresh.get("key00001"), None, "the tombstone applies");
    assert_eq!(fresh.get("key00002").as_deref(), Some(value.as_str()));
}

#[test]
fn a_missing_or_corrupt_log_object_stops_recovery_with_its_name() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    for i in 0..5 {
        node.put_now(&format!("k{i}"), "v").expect("written");
    }
    drop(node);
    let victim = layout::wal_key(3);
    let saved = bucket.borrow_mut().objects.remove(&victim).expect("exists");
    let fresh = Node::start(remote("a"), &bucket);
    assert!(!fresh.core.is_serving());
    let reason = fresh.failures.first().expect("refuses");
    assert!(
        reason.contains(&victim) && reason.contains("missing"),
        "{reason}"
    );

    let mut corrupt = saved.0.to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    bucket
        .borrow_mut()
        .objects
        .insert(victim.clone(), (corrupt.into(), 999));
    let fresh = Node::start(remote("a"), &bucket);
    let reason = fresh.failures.first().expect("refuses");
    assert!(
        reason.contains(&victim) && reason.contains("corrupt"),
        "{reason}"
    );

    // The explicit override recovers what precedes the break.
    let salvaged = Node::start(
        RemoteConfig {
            allow_missing_objects: true,
            ..remote("a")
        },
        &bucket,
    );
    assert!(salvaged.core.is_serving(), "{:?}", salvaged.failures);
    assert_eq!(salvaged.get("k0").as_deref(), Some("v"));
    assert!(!salvaged.core.bootstrap_progress().skipped.is_empty());
}

#[test]
fn a_missing_checkpoint_file_is_named() {
    let bucket = Bucket::shared();
    let config = RemoteConfig {
        merge_min_objects: 1,
        checkpoint_retain: 1,
        ..remote("a")
    };
    let mut node = Node::start(config.clone(), &bucket);
    for i in 0..5 {
        node.put_now(&format!("k{i}"), "v").expect("written");
    }
    node.demand_checkpoint().expect("checkpoint");
    node.put_now("k9", "v").expect("written");
    node.demand_checkpoint().expect("checkpoint");
    drop(node);
    let data = bucket.borrow().keys("data/");
    let victim = data.first().expect("a data file").clone();
    bucket.borrow_mut().objects.remove(&victim);
    let fresh = Node::start(config, &bucket);
    let reason = fresh.failures.first().expect("refuses");
    assert!(reason.contains(&victim), "{reason}");
}

#[test]
fn a_recovering_node_does_not_wake_for_leases_or_segment_age_it_cannot_act_on() {
    let bucket = Bucket::shared();
    let mut node = Node::start(remote("a"), &bucket);
    let id = node.submit(crate::request::Request::LeaseGrant { id: 7, ttl: 600 });
    node.settle_for(Duration::ZERO);
    assert!(matches!(node.replies.remove(&id), Some(Ok(_))));
    node.put_now("k", "v").expect("written");
    crate::mvcc::Store::persist(&node.store).expect("persists");
    let (store, wal) = (node.store.clone(), node.wal.clone());
    drop(node);
    // The restart recovers from an unavailable bucket for longer than the lease's TTL and
    // the segment's age limit; `settle_for` asserts the timer never spins meanwhile.
    bucket.borrow_mut().down = true;
    let mut restarted = Node::open_with(remote("a"), &bucket, store, wal);
    restarted.settle_for(Duration::from_secs(3_600));
    assert!(!restarted.core.is_serving());
    bucket.borrow_mut().down = false;
    restarted.settle_for(Duration::from_secs(60));
    assert!(restarted.core.is_serving(), "{:?}", restarted.failures);
}

#[test]
fn start_up_waits_out_an_unavailable_bucket() {
    let bucket = Bucket::shared();
    bucket.borrow_mut().down = true;
    let mut node = Node::open(remote("a"), &bucket);
    node.settle_for(Duration::from_secs(30));
    assert!(!node.core.is_serving());
    assert!(node.failures.is_empty());
    bucket.borrow_mut().down = false;
    node.settle_for(Duration::from_secs(30));
    assert!(node.core.is_serving(), "{:?}", node.failures);
}

#[test]
fn a_restart_whose_unuploaded_entry_was_superseded_refuses_to_start() {
    let bucket = Bucket::shared();
    let mut old = Node::start(remote("a"), &bucket);
    old.put_now("k", "1").expect("written");
    // The old writer's entry reaches its local WAL but never the bucket...
    let id = old.put("k", "lost");
    assert!(old.complete(|io| matches!(io, Io::Wal(_))));
    assert!(!old.replies.contains_key(&id), "not acknowledged");
    // ...a new writer takes over and writes its marker at that index...
    let mut new = Node::start(
        RemoteConfig {
            takeover: true,
            ..remote("b")
        },
        &bucket,
    );
    new.put_now("k", "2").expect("written");
    // ...and the old machine restarts with its data dir.
    let (store, wal) = (old.store.crash_image(0), old.wal.clone());
    drop(old);
    let restarted = Node::open_with(
        RemoteConfig {
            takeover: true,
            ..remote("a")
        },
        &bucket,
        store,
        wal,
    );
    let mut restarted = restarted;
    restarted.settle();
    assert!(!restarted.core.is_serving());
    let reason = restarted.failures.first().expect("refuses");
    assert!(reason.contains("diverges"), "{reason}");
}

#[test]
fn a_data_dir_with_history_seeds_an_empty_bucket_with_a_checkpoint_first() {
    use crate::kv::KeyValue;
    use crate::mvcc::{MemStore, Store};
    use crate::wal::{Change, LogEntry, LogOp};
    // A store whose WAL is long gone (as after local-only operation).
    let store = MemStore::new();
    for i in 1..=20u64 {
        let rev = i as i64 + 1;
        let kv = KeyValue {
            key: bytes::Bytes::from(format!("k{i}")),
            value: bytes::Bytes::from_static(b"v"),
            create_revision: rev,
            mod_revision: rev,
            version: 1,
            lease: 0,
        };
        let ops = vec![LogOp::Revision {
            revision: rev,
            changes: vec![Change::Put { kv, prev_lease: 0 }],
        }];
        store
            .apply(&LogEntry {
                index: i,
                term: 1,
                ops,
            })
            .expect("applies");
    }
    store.persist().expect("persists");
    let bucket = Bucket::shared();
    let mut node = Node::open_with(remote("a"), &bucket, store, Default::default());
    node.settle();
    assert!(node.core.is_serving(), "{:?}", node.failures);
    assert_eq!(
        bucket.borrow().keys("ckp/").len(),
        1,
        "seeded before serving"
    );
    node.put_now("after", "x").expect("written");
    let fresh = Node::start(remote("a"), &bucket);
    assert!(fresh.core.is_serving(), "{:?}", fresh.failures);
    assert_eq!(fresh.get("k1").as_deref(), Some("v"));
    assert_eq!(fresh.get("k20").as_deref(), Some("v"));
    assert_eq!(fresh.get("after").as_deref(), Some("x"));
}

/// Random writes, outages, lost answers, checkpoints and crashes: a fresh node started on the
/// bucket alone always holds every acknowledged write (or a later write whose outcome was
/// reported unknown).
#[test]
fn random_faults_never_lose_an_acknowledged_write() {
    use rand_core::{RngCore, SeedableRng};
    use std::collections::BTreeMap;
    for seed in 0..150u64 {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let config = RemoteConfig {
            merge_min_objects: 2 + (rng.next_u64() % 5) as usize,
            checkpoint_retain: 1 + (rng.next_u64() % 2) as usize,
            sync_upload: true,
            ..remote("a")
        };
        let bucket = Bucket::shared();
        let mut node = Node::start(config.clone(), &bucket);
        // Per key: the last acknowledged value and the values written after it whose
        // outcome is unknown.
        let mut model: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
        for step in 0..80 {
            match rng.next_u64() % 12 {
                0..=5 => {
                    let key = format!("k{}", rng.next_u64() % 8);
                    let value = format!("v{step}");
                    let id = node.put(&key, &value);
                    node.settle_for(Duration::from_millis(50));
                    let entry = model.entry(key).or_default();
                    match node.replies.remove(&id) {
                        Some(Ok(_)) => *entry = (Some(value), Vec::new()),
                        _ => entry.1.push(value),
                    }
                }
                6 => {
                    let mut b = bucket.borrow_mut();
                    b.down = !b.down;
                }
                7 => bucket.borrow_mut().lose_next_put_answer = true,
                8 => {
                    node.core.handle(
                        node.now,
                        crate::core::Input::Checkpoint {
                            id: crate::core::RequestId(1 << 40 | step),
                        },
                    );
                    node.drain();
                    node.settle_for(Duration::from_millis(50));
                }
                9 => {
                    let keep = (rng.next_u64() % 4) as usize;
                    let (store, wal) = (node.store.crash_image(keep), node.wal.clone());
                    node = Node::open_with(config.clone(), &bucket, store, wal);
                    node.settle_for(Duration::from_millis(50));
                }
                _ => node.advance(Duration::from_millis(500)),
            }
            assert!(node.failures.is_empty(), "seed {seed}: {:?}", node.failures);
        }
        bucket.borrow_mut().down = false;
        node.settle_for(Duration::from_secs(60));
        assert!(node.failures.is_empty(), "seed {seed}: {:?}", node.failures);
        drop(node);
        let fresh = Node::start(config, &bucket);
        assert!(fresh.core.is_serving(), "seed {seed}: {:?}", fresh.failures);
        for (key, (acked, unknown)) in &model {
            let got = fresh.get(key);
            let ok = got == *acked || got.as_ref().is_some_and(|g| unknown.contains(g));
            assert!(
                ok,
                "seed {seed}: {key} = {got:?}, acked {acked:?}, unknown {unknown:?}"
            );
        }
    }
}

/// Two processes taking the prefix from each other at random (a zombie keeps writing after
/// losing it): the log never forks, a fenced process never acknowledges, and a fresh node
/// holds every acknowledged write.
#[test]
fn random_takeovers_never_fork_the_log() {
    use rand_core::{RngCore, SeedableRng};
    use std::collections::BTreeMap;
    let mut fenced = 0;
    for seed in 0..100u64 {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let config = |id: &str| RemoteConfig {
            takeover: true,
            merge_min_objects: 3,
            checkpoint_retain: 1,
            ..remote(id)
        };
        let bucket = Bucket::shared();
        let mut nodes = [
            Node::start(config("a"), &bucket),
            Node::start(config("b"), &bucket),
        ];
        let mut model: BTreeMap<String, (Option<String>, Vec<String>)> = BTreeMap::new();
        for step in 0..60 {
            let n = (rng.next_u64() % 2) as usize;
            match rng.next_u64() % 10 {
                0..=6 => {
                    let key = format!("k{}", rng.next_u64() % 5);
                    let value = format!("v{step}");
                    let node = &mut nodes[n];
                    let id = node.put(&key, &value);
                    node.settle_for(Duration::from_millis(50));
                    let entry = model.entry(key).or_default();
                    match node.replies.remove(&id) {
                        Some(Ok(_)) => *entry = (Some(value), Vec::new()),
                        Some(Err(Error::Failed(_)))
                        | Some(Err(Error::ObjectStoreUnavailable(_)))
                        | None => entry.1.push(value),
                        Some(Err(e)) => panic!("seed {seed}: unexpected {e}"),
                    }
                }
                7 => {
                    let _ = nodes[n].demand_checkpoint();
                }
                _ => {
                    // Node n restarts (taking the prefix over) from its data dir, or from an
                    // empty one if that diverged.
                    let id = if n == 0 { "a" } else { "b" };
                    let (store, wal) = (nodes[n].store.crash_image(0), nodes[n].wal.clone());
                    let mut restarted = Node::open_with(config(id), &bucket, store, wal);
                    restarted.settle();
                    if !restarted.core.is_serving() {
                        let reason = restarted.failures.first().cloned().unwrap_or_default();
                        assert!(reason.contains("diverges"), "seed {seed}: {reason}");
                        restarted = Node::start(config(id), &bucket);
                    }
                    assert!(
                        restarted.core.is_serving(),
                        "seed {seed}: {:?}",
                        restarted.failures
                    );
                    nodes[n] = restarted;
                }
            }
            for node in &nodes {
                for f in &node.failures {
                    assert!(f.contains("fenced"), "seed {seed}: {f}");
                    fenced += 1;
                }
            }
        }
        drop(nodes);
        let fresh = Node::start(config("c"), &bucket);
        assert!(fresh.core.is_serving(), "seed {seed}: {:?}", fresh.failures);
        for (key, (acked, unknown)) in &model {
            let got = fresh.get(key);
            let ok = got == *acked || got.as_ref().is_some_and(|g| unknown.contains(g));
            assert!(
                ok,
                "seed {seed}: {key} = {got:?}, acked {acked:?}, unknown {unknown:?}"
            );
        }
    }
    assert!(fenced > 0, "the scenario never fenced anyone");
}
