//! Recovery from the bucket: a node whose disk is gone comes back with every acknowledged
//! write, from the log alone and from a checkpoint after GC (users and roles included). Against a real S3 server (moto).

#![allow(clippy::disallowed_methods)] // end-to-end tests run against real processes and real time

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use t4_e2e::etcd_client::{Client, GetOptions};
use t4_e2e::moto::Moto;
use t4_e2e::{T4, t4_bin};

async fn start(moto: &Moto, data_dir: &Path, extra: &[&str]) -> T4 {
    let mut flags = moto.flags("t4");
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    T4::start_in(t4_bin!(), data_dir, &flags).await
}

/// Every key under `/` with (value, create revision, mod revision, version).
async fn state(client: &mut Client) -> BTreeMap<String, (String, i64, i64, i64)> {
    let resp = client
        .get("/", Some(GetOptions::new().with_prefix()))
        .await
        .expect("range");
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().expect("utf-8").to_string(),
                (
                    kv.value_str().expect("utf-8").to_string(),
                    kv.create_revision(),
                    kv.mod_revision(),
                    kv.version(),
                ),
            )
        })
        .collect()
}

/// The first number in the last path segment of `key` (`t4/seg/00..05-00..09` → 5).
fn first_index(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap_or_default();
    name.split('-')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

/// The last number in the last path segment of `key` (`t4/seg/00..05-00..09` → 9).
fn last_index(key: &str) -> u64 {
    let name = key.rsplit('/').next().unwrap_or_default();
    name.rsplit('-')
        .next()
        .unwrap_or_default()
        .parse()
        .unwrap_or(0)
}

/// GC has run for `checkpoint` (`t4/ckp/<index>-<revision>`, the only one kept): most of the
/// log it covers is gone (GC may keep a little before it, and keeps the term-start marker,
/// a fence), and no merged segment ends before the older half of it.
fn gc_done(checkpoint: &str, wal: &[String], segments: &[String]) -> bool {
    let index = first_index(checkpoint);
    let old_tails = wal.iter().filter(|w| first_index(w) <= index).count() as u64;
    let old_segments = segments
        .iter()
        .filter(|s| last_index(s) < index / 2)
        .count();
    index > 1 && old_tails < index / 2 && old_segments == 0
}

async fn kill_and_lose_the_disk(mut server: T4, data_dir: &Path) {
    server.stop_with("KILL", Duration::from_secs(10)).await;
    drop(server);
    std::fs::remove_dir_all(data_dir).expect("deleting the data dir");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_kill_9_and_a_lost_data_dir() {
    let moto = Moto::start("recovery");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let server = start(&moto, &data_dir, &[]).await;
    let mut client = server.client().await;
    let mut revisions = BTreeMap::new();
    for i in 0..40 {
        let key = format!("/k/{i:03}");
        let resp = client
            .put(key.clone(), format!("v{i}"), None)
            .await
            .expect("put");
        revisions.insert(key, resp.header().expect("header").revision());
    }
    client.delete("/k/007", None).await.expect("delete");
    let before = state(&mut client).await;
    let revision = client
        .get("/k/000", None)
        .await
        .expect("get")
        .header()
        .expect("header")
        .revision();
    assert!(
        !moto.keys("t4/wal/").await.is_empty(),
        "sync upload wrote tail objects"
    );

    kill_and_lose_the_disk(server, &data_dir).await;
    let server = start(&moto, &data_dir, &[]).await;
    let mut client = server.client().await;
    let after = state(&mut client).await;
    assert_eq!(after, before, "every acknowledged write is back");
    assert_eq!(after.len(), 39);
    for (key, (_, _, mod_revision, _)) in &after {
        assert_eq!(revisions[key], *mod_revision, "{key} keeps its revision");
    }
    let now = client.get("/k/000", None).await.expect("get");
    assert!(
        now.header().expect("header").revision() >= revision,
        "the revision does not go back"
    );
    // The node serves writes after recovery, after the recovered revisions.
    let put = client.put("/k/new", "x", None).await.expect("put");
    assert!(put.header().expect("header").revision() > revision);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_from_a_checkpoint_after_gc_is_complete() {
    let moto = Moto::start("checkpoints");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data_dir = tmp.path().join("data");
    let settings = ["--checkpoint-entries", "25", "--checkpoint-retain", "1"];
    let server = start(&moto, &data_dir, &settings).await;
    let mut client = server.client().await;
    // Users and roles go into the log the checkpoint covers, which GC then deletes: only the
    // checkpoint can bring them back.
    client.role_add("ops").await.expect("role add");
    client
        .user_add("alice", "pw", None)
        .await
        .expect("user add");
    client
        .user_grant_role("alice", "ops")
        .await
        .expect("grant role");
    for round in 0..3 {
        for i in 0..40 {
            client
                .put(format!("/k/{i:03}"), format!("r{round}-{i}"), None)
                .await
                .expect("put");
        }
        client
            .delete(format!("/k/{round:03}"), None)
            .await
            .expect("delete");
    }
    let lease = client.lease_grant(600, None).await.expect("lease").id();
    client
        .put(
            "/leased",
            "x",
            Some(t4_e2e::etcd_client::PutOptions::new().with_lease(lease)),
        )
        .await
        .expect("put with lease");
    for i in 0..30 {
        client
            .put(format!("/tail/{i}"), "t", None)
            .await
            .expect("put");
    }
    let before = state(&mut client).await;

    // Checkpoints are published and GC keeps only the newest one (retain 1) and the log
    // after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let checkpoints = moto.keys("t4/ckp/").await;
        let wal = moto.keys("t4/wal/").await;
        let segments = moto.keys("t4/seg/").await;
        if let [checkpoint] = checkpoints.as_slice()
            && gc_done(checkpoint, &wal, &segments)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint + GC; ckp {checkpoints:?}, seg {segments:?}, wal {wal:?}; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        !moto.keys("t4/data/").await.is_empty(),
        "data files uploaded"
    );

    kill_and_lose_the_disk(server, &data_dir).await;
    let server = start(&moto, &data_dir, &settings).await;
    let mut client = server.client().await;
    assert_eq!(
        state(&mut client).await,
        before,
        "recovered from the checkpoint"
    );
    let ttl = client
        .lease_time_to_live(lease, None)
        .await
        .expect("lease ttl");
    assert!(ttl.ttl() > 0, "the lease survived");
    let alice = client.user_get("alice").await.expect("the user survived");
    assert_eq!(alice.roles(), ["ops".to_string()]);
    let roles = client.role_list().await.expect("role list");
    assert_eq!(roles.roles(), ["ops".to_string()]);
}
