//! Maintenance over the wire: Status, HashKV, Snapshot and restore, alarms and the quota.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::Duration;

use std::path::{Path, PathBuf};

use etcd_client::{AlarmAction, AlarmType, CompactionOptions, GetOptions, PutOptions};
use sha2::{Digest, Sha256};
use t4_e2e::tool::{Ran, run};
use t4_e2e::{T4, status, t4_bin};
use tonic::Code;

#[tokio::test]
async fn status_reports_version_leader_revision_and_size() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let before = c.status().await.unwrap();
    let rev = c
        .put("k", "v", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let s = c.status().await.unwrap();
    assert_eq!(s.version(), "3.5.0");
    assert_eq!(s.leader(), s.header().unwrap().member_id());
    assert_eq!(s.header().unwrap().revision(), rev);
    assert!(
        s.raft_index() > before.raft_index(),
        "the index moves with writes"
    );
    assert!(s.db_size() > 0);
    assert!(s.errors().is_empty());
    c.defragment().await.unwrap();
    assert_eq!(
        c.hash().await.unwrap().hash(),
        c.hash_kv(0).await.unwrap().hash()
    );
}

#[tokio::test]
async fn move_leader_to_this_member_succeeds_and_to_another_id_is_refused() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let me = c.status().await.unwrap().header().unwrap().member_id();
    c.move_leader(me).await.unwrap();
    assert_eq!(c.status().await.unwrap().leader(), me);
    let e = status(c.move_leader(me ^ 1).await.unwrap_err());
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert_eq!(e.message(), "etcdserver: bad leader transferee");
}

#[tokio::test]
async fn equal_histories_hash_equal() {
    let a = T4::start(t4_bin!(), &[]).await;
    let b = T4::start(t4_bin!(), &[]).await;
    let (mut ca, mut cb) = (a.client().await, b.client().await);
    for c in [&mut ca, &mut cb] {
        c.put("x", "1", None).await.unwrap();
        c.put("y", "2", None).await.unwrap();
        c.delete("x", None).await.unwrap();
    }
    let (ha, hb) = (ca.hash_kv(0).await.unwrap(), cb.hash_kv(0).await.unwrap());
    assert_eq!(ha.hash(), hb.hash());
    assert_eq!(ha.hash_revision(), 4);
    // etcd-client calls compact_revision "compact_version".
    assert_eq!(ha.compact_version(), -1, "etcd's 'never compacted'");
    cb.put("y", "different", None).await.unwrap();
    ca.put("y", "3", None).await.unwrap();
    assert_ne!(
        ca.hash_kv(0).await.unwrap().hash(),
        cb.hash_kv(0).await.unwrap().hash()
    );
    // Up to the common revision the histories are still equal.
    assert_eq!(ca.hash_kv(4).await.unwrap().hash(), ha.hash());
    ca.compact(4, Some(CompactionOptions::new().with_physical()))
        .await
        .unwrap();
    let e = status(ca.hash_kv(3).await.unwrap_err());
    assert_eq!(
        e.message(),
        "etcdserver: mvcc: required revision has been compacted"
    );
    assert_eq!(ca.hash_kv(0).await.unwrap().compact_version(), 4);
}

#[tokio::test]
async fn a_snapshot_restores_into_a_server_with_the_same_data_and_revisions() {
    let mut t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("s/a", "1", None).await.unwrap();
    c.put("s/b", "1", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("s/a", "2", None).await.unwrap();
    c.delete("gone", None).await.unwrap();
    let mut stream = c.snapshot().await.unwrap();
    let mut bytes = Vec::new();
    let mut messages = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        bytes.extend_from_slice(chunk.blob());
        messages.push((chunk.blob().len(), chunk.remaining_bytes()));
    }
    // Like etcd's: the snapshot, 512-byte aligned, each message saying how many snapshot
    // bytes remain; then a message of its own with the SHA-256 of those bytes.
    let (body, digest) = bytes.split_at(bytes.len() - 32);
    assert_eq!(body.len() % 512, 0);
    assert_eq!(digest, Sha256::digest(body).as_slice());
    assert_eq!(messages.last(), Some(&(32, 0)), "the digest comes alone");
    let mut remaining = body.len() as u64;
    for &(len, remaining_bytes) in &messages[..messages.len() - 1] {
        remaining -= len as u64;
        assert_eq!(remaining_bytes, remaining);
    }
    let original = c
        .get("s/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let revision = original.header().unwrap().revision();
    t4.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("snap.db");
    std::fs::write(&file, &bytes).unwrap();
    let restored = dir.path().join("restored");
    let out = std::process::Command::new(t4_bin!())
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A restore never overwrites a data dir.
    let again = std::process::Command::new(t4_bin!())
        .args(["snapshot", "restore"])
        .arg(&file)
        .arg("--data-dir")
        .arg(&restored)
        .output()
        .unwrap();
    assert!(!again.status.success());

    let t4 = T4::start_in(t4_bin!(), &restored, &[]).await;
    let mut c = t4.client().await;
    let got = c
        .get("s/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.header().unwrap().revision(), revision);
    assert_eq!(
        fields(&got),
        fields(&original),
        "same keys, values, revisions, versions, leases"
    );
    let ttl = c.lease_time_to_live(lease, None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 600);
    assert_eq!(
        c.put("s/c", "new", None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision(),
        revision + 1
    );
}

/// Every field of every key in `r`, to compare two servers' answers.
fn fields(r: &etcd_client::GetResponse) -> Vec<String> {
    r.kvs()
        .iter()
        .map(|kv| {
            format!(
                "{:?}={:?} create {} mod {} version {} lease {}",
                kv.key(),
                kv.value(),
                kv.create_revision(),
                kv.mod_revision(),
                kv.version(),
                kv.lease()
            )
        })
        .collect()
}

/// Runs etcdctl (etcd 3.4's, installed by `scripts/install-test-deps.sh`) against `t4`.
fn etcdctl(t4: &T4, args: &[&str]) -> Ran {
    let endpoints = format!("--endpoints={}", t4.endpoint);
    let args: Vec<&str> = [endpoints.as_str(), "--dial-timeout=3s"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run(Path::new("etcdctl"), &args, Duration::from_secs(60))
}

/// Saves a snapshot of `t4` with `etcdctl snapshot save` into `dir` and returns its path.
fn etcdctl_snapshot_save(t4: &T4, dir: &Path) -> PathBuf {
    let file = dir.join("etcdctl.db");
    let saved = etcdctl(t4, &["snapshot", "save", file.to_str().unwrap()]);
    assert!(
        saved.success() && saved.stdout.contains("Snapshot saved at"),
        "etcdctl snapshot save failed: {saved:?}"
    );
    file
}

/// Runs `t4 ARGS` to completion.
fn t4_tool(args: &[&str]) -> Ran {
    run(Path::new(t4_bin!()), args, Duration::from_secs(60))
}

#[tokio::test]
async fn a_snapshot_saved_by_etcdctl_restores_into_a_server_with_the_same_data() {
    let mut t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let lease = c.lease_grant(600, None).await.unwrap().id();
    c.put("e/a", "1", None).await.unwrap();
    c.put("e/big", vec![b'x'; 100_000], None).await.unwrap();
    c.put("e/leased", "l", Some(PutOptions::new().with_lease(lease)))
        .await
        .unwrap();
    c.put("e/a", "2", None).await.unwrap();
    let original = c
        .get("e/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let revision = original.header().unwrap().revision();

    let dir = tempfile::tempdir().unwrap();
    let file = etcdctl_snapshot_save(&t4, dir.path());
    t4.stop().await;

    let status = t4_tool(&["snapshot", "status", file.to_str().unwrap()]);
    assert!(status.success(), "{status:?}");
    assert!(
        status
            .stdout
            .contains(&format!("revision {revision}, 3 keys, 1 leases")),
        "{status:?}"
    );
    let restored = dir.path().join("restored");
    let restore = t4_tool(&[
        "snapshot",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(restore.success(), "{restore:?}");

    let t4 = T4::start_in(t4_bin!(), &restored, &[]).await;
    let mut c = t4.client().await;
    let got = c
        .get("e/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(got.header().unwrap().revision(), revision);
    assert_eq!(
        fields(&got),
        fields(&original),
        "same keys, values, revisions, versions, leases"
    );
    assert_eq!(
        c.lease_time_to_live(lease, None)
            .await
            .unwrap()
            .granted_ttl(),
        600
    );
    // And etcdctl reads the restored server like the original.
    let listed = etcdctl(&t4, &["get", "e/a"]);
    assert_eq!(listed.stdout, "e/a\n2\n", "{listed:?}");
}

#[tokio::test]
async fn a_snapshot_file_with_one_byte_changed_is_refused() {
    let mut t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    for i in 0..50 {
        c.put(format!("k{i}"), format!("value {i}"), None)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = etcdctl_snapshot_save(&t4, dir.path());
    t4.stop().await;

    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x10;
    let damaged = dir.path().join("damaged.db");
    std::fs::write(&damaged, &bytes).unwrap();
    let restored = dir.path().join("restored");
    let restore = t4_tool(&[
        "snapshot",
        "restore",
        damaged.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(!restore.success(), "a damaged snapshot was restored");
    assert!(
        restore
            .stderr
            .contains("snapshot file is damaged: its SHA-256 digest does not match its contents"),
        "{restore:?}"
    );
    assert!(
        !restored.exists(),
        "nothing is written for a refused snapshot"
    );
    let status = t4_tool(&["snapshot", "status", damaged.to_str().unwrap()]);
    assert!(
        !status.success() && status.stderr.contains("digest does not match"),
        "{status:?}"
    );
}

#[tokio::test]
async fn over_quota_raises_nospace_and_refuses_writes_but_serves_reads() {
    let t4 = T4::start(t4_bin!(), &["--quota-backend-bytes", "1"]).await;
    let mut c = t4.client().await;
    let member = c.status().await.unwrap().header().unwrap().member_id();
    // The quota is checked every second: wait for the alarm (polling, bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let alarms = c
            .alarm(AlarmAction::Get, AlarmType::None, None)
            .await
            .unwrap();
        if let Some(a) = alarms.alarms().first() {
            assert_eq!((a.member_id(), a.alarm()), (member, AlarmType::Nospace));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no NOSPACE alarm");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let e = status(c.put("k", "v", None).await.unwrap_err());
    assert_eq!(
        (e.code(), e.message()),
        (
            Code::ResourceExhausted,
            "etcdserver: mvcc: database space exceeded"
        )
    );
    let e = status(c.lease_grant(60, None).await.unwrap_err());
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(
        c.get("k", None).await.unwrap().kvs().is_empty(),
        "reads still work"
    );
    c.delete("k", None).await.unwrap();
    assert!(!c.status().await.unwrap().errors().is_empty());
}
