//! `t4 status`, `t4 restore list` and `t4 restore checkpoint` against a bucket a running node
//! writes (moto).

#![allow(clippy::disallowed_methods)] // end-to-end tests run against real processes and real time

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use t4_e2e::etcd_client::{Client, GetOptions};
use t4_e2e::moto::Moto;
use t4_e2e::{T4, t4_bin, tool};

async fn state_at(client: &mut Client, revision: i64) -> BTreeMap<String, (String, i64, i64)> {
    let mut options = GetOptions::new().with_prefix();
    if revision > 0 {
        options = options.with_revision(revision);
    }
    let resp = client.get("/", Some(options)).await.expect("range");
    resp.kvs()
        .iter()
        .map(|kv| {
            (
                kv.key_str().expect("utf-8").to_string(),
                (
                    kv.value_str().expect("utf-8").to_string(),
                    kv.create_revision(),
                    kv.mod_revision(),
                ),
            )
        })
        .collect()
}

fn t4(args: &[String]) -> tool::Ran {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool::run(t4_bin!().as_ref(), &args, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_lists_the_writer_and_restore_materialises_the_latest_checkpoint() {
    let moto = Moto::start("restore");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut flags = moto.flags("backups/t4");
    flags.extend(
        ["--node-id", "primary", "--checkpoint-entries", "10"]
            .iter()
            .map(|s| s.to_string()),
    );
    let run_flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let server = T4::start_in(t4_bin!(), &tmp.path().join("data"), &run_flags).await;
    let mut client = server.client().await;
    for i in 0..30 {
        client
            .put(format!("/k/{i:02}"), format!("v{i}"), None)
            .await
            .expect("put");
    }
    client.delete("/k/03", None).await.expect("delete");
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.keys("backups/t4/ckp/").await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no checkpoint; log:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The bucket flags of the tools are those of `t4 run`.
    let bucket = moto.flags("backups/t4");
    let with = |cmd: &[&str]| {
        let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
        args.extend(bucket.iter().cloned());
        args
    };

    let status = t4(&with(&["status"]));
    assert!(status.success(), "{}", status.stderr);
    assert!(
        status.stdout.contains("writer:            primary (term "),
        "{}",
        status.stdout
    );
    assert!(
        status.stdout.contains("latest checkpoint: 0"),
        "{}",
        status.stdout
    );
    assert!(status.stdout.contains("WAL objects"), "{}", status.stdout);

    let list = t4(&with(&["restore", "list"]));
    assert!(list.success(), "{}", list.stderr);
    let latest = list
        .stdout
        .lines()
        .last()
        .expect("a checkpoint")
        .to_string();
    let revision: i64 = latest
        .split("revision=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision in {latest:?}"));
    let want = state_at(&mut client, revision).await;
    assert!(!want.is_empty());

    let restored = tmp.path().join("restored");
    let dir = restored.display().to_string();
    let done = t4(&with(&[
        "restore",
        "checkpoint",
        "latest",
        "--data-dir",
        &dir,
    ]));
    assert!(done.success(), "{}", done.stderr);
    assert!(done.stdout.contains("restored"), "{}", done.stdout);
    // Never into a non-empty directory.
    let again = t4(&with(&[
        "restore",
        "checkpoint",
        "latest",
        "--data-dir",
        &dir,
    ]));
    assert!(!again.success());
    assert!(again.stderr.contains("not empty"), "{}", again.stderr);
    let unknown = t4(&with(&[
        "restore",
        "checkpoint",
        "nope",
        "--data-dir",
        "/nonexistent",
    ]));
    assert!(!unknown.success());
    assert!(
        unknown.stderr.contains("no checkpoint"),
        "{}",
        unknown.stderr
    );

    // The restored dir serves the checkpoint's state, locally, at its revision.
    let copy = T4::start_in(t4_bin!(), &restored, &[]).await;
    let mut copy_client = copy.client().await;
    assert_eq!(state_at(&mut copy_client, 0).await, want);
    let header = copy_client.get("/k/00", None).await.expect("get");
    assert_eq!(header.header().expect("header").revision(), revision);
}

#[test]
fn status_of_an_unused_prefix_says_so_and_tools_need_a_bucket() {
    let moto = Moto::start("empty");
    let mut args = vec!["status".to_string()];
    args.extend(moto.flags("nobody"));
    let ran = t4(&args);
    assert!(ran.success(), "{}", ran.stderr);
    assert!(
        ran.stdout.contains("writer:            none"),
        "{}",
        ran.stdout
    );

    let ran = t4(&["restore".to_string(), "list".to_string()]);
    assert!(!ran.success());
    assert!(ran.stderr.contains("--s3-bucket"), "{}", ran.stderr);
}
