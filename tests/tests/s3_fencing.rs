//! Two nodes on one bucket prefix: exactly one serves; the other stops with a message naming
//! the holder and the override. Against a real S3 server (moto).

use std::time::Duration;

use t4_e2e::moto::Moto;
use t4_e2e::{T4, t4_bin, tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_prefix_refuses_to_start() {
    let moto = Moto::start("fencing");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut flags = moto.flags("shared/");
    flags.extend(["--node-id".to_string(), "node-a".to_string()]);
    let flags_a: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = T4::start_in(t4_bin!(), &tmp.path().join("a"), &flags_a).await;
    let mut client = a.client().await;
    client.put("k", "from a", None).await.expect("a serves");

    let b_dir = tmp.path().join("b");
    let mut args = vec![
        "run".to_string(),
        "--data-dir".to_string(),
        b_dir.display().to_string(),
        "--listen".to_string(),
        "127.0.0.1:0".to_string(),
        "--node-id".to_string(),
        "node-b".to_string(),
    ];
    // The same prefix, spelled differently.
    args.extend(moto.flags("/shared"));
    let b = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tool::run(t4_bin!().as_ref(), &args, Duration::from_secs(60))
    })
    .await
    .expect("running b");
    assert!(
        b.status.is_some_and(|s| !s.success()),
        "the second node must exit with an error; it did {:?}; stderr:\n{}",
        b.status,
        b.stderr
    );
    assert!(
        b.stderr.contains("node-a") && b.stderr.contains("--s3-takeover"),
        "the message names the holder and the override:\n{}",
        b.stderr
    );
    assert!(
        !b.stderr.contains("serving the etcd v3 API"),
        "{}",
        b.stderr
    );

    // The first node still serves, reads and writes.
    client
        .put("k", "still a", None)
        .await
        .expect("a still serves");
    let got = client.get("k", None).await.expect("get");
    assert_eq!(got.kvs()[0].value(), b"still a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_moves_the_prefix_and_keeps_its_data() {
    let moto = Moto::start("takeover");
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut flags = moto.flags("p");
    flags.extend(["--node-id".to_string(), "old".to_string()]);
    let flags_old: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut old = T4::start_in(t4_bin!(), &tmp.path().join("old"), &flags_old).await;
    old.client().await.put("k", "v", None).await.expect("put");
    old.stop().await;

    let mut flags = moto.flags("p");
    flags.extend(
        ["--node-id", "new", "--s3-takeover"]
            .iter()
            .map(|s| s.to_string()),
    );
    let flags_new: Vec<&str> = flags.iter().map(String::as_str).collect();
    let new = T4::start_in(t4_bin!(), &tmp.path().join("new"), &flags_new).await;
    let got = new.client().await.get("k", None).await.expect("get");
    assert_eq!(
        got.kvs()[0].value(),
        b"v",
        "the new node recovered the data"
    );
}
