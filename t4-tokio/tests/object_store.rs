//! An embedded node with an object store: any `object_store` implementation (here `InMemory`)
//! makes it durable beyond its disk.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::within;
use t4::object_store::ObjectStore;
use t4::object_store::memory::InMemory;

fn config(dir: &std::path::Path, store: &Arc<InMemory>, prefix: &str, node: &str) -> t4::Config {
    let mut config = common::config(dir);
    config.object_store = Some(store.clone() as Arc<dyn ObjectStore>);
    config.object_prefix = prefix.to_string();
    config.remote.node_id = node.to_string();
    config
}

async fn keys(store: &InMemory) -> Vec<String> {
    use futures::TryStreamExt;
    store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("listing")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_data_dir_is_recovered_from_the_object_store() {
    let store = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let node = within(
        "open",
        t4::Node::open(config(&dir.path().join("a"), &store, "t4/", "n1")),
    )
    .await
    .expect("open");
    let mut revisions = Vec::new();
    for i in 0..20 {
        revisions.push(
            node.put(format!("k{i:02}"), format!("v{i}"))
                .await
                .expect("put"),
        );
    }
    assert_eq!(
        node.unuploaded_entries(),
        0,
        "sync upload leaves nothing behind"
    );
    node.close().await.expect("close");
    assert!(
        keys(&store).await.iter().all(|k| k.starts_with("t4/")),
        "every object is under the prefix"
    );

    // A new, empty data dir; the prefix spelled differently.
    let node = within(
        "open",
        t4::Node::open(config(&dir.path().join("b"), &store, "/t4", "n1")),
    )
    .await
    .expect("recovering");
    for (i, rev) in revisions.iter().enumerate() {
        let kv = node
            .get(format!("k{i:02}"))
            .await
            .expect("get")
            .expect("recovered");
        assert_eq!(kv.mod_revision, *rev);
        assert_eq!(kv.value, format!("v{i}"));
    }
    assert!(node.put("after", "x").await.expect("put") > *revisions.last().expect("some"));
    node.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_on_demand_checkpoint_is_published_and_recovered_from() {
    let store = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let node = within(
        "open",
        t4::Node::open(config(&dir.path().join("a"), &store, "p", "n1")),
    )
    .await
    .expect("open");
    for i in 0..10 {
        node.put(format!("k{i}"), "v").await.expect("put");
    }
    node.delete("k3").await.expect("delete");
    let revision = node.current_revision();
    let info = within("checkpoint", node.checkpoint())
        .await
        .expect("checkpoint");
    assert_eq!(info.revision, revision);
    assert!(keys(&store).await.iter().any(|k| k.starts_with("p/ckp/")));
    node.put("later", "x").await.expect("put");
    node.close().await.expect("close");

    let node = within(
        "open",
        t4::Node::open(config(&dir.path().join("b"), &store, "p", "n1")),
    )
    .await
    .expect("recovering");
    assert_eq!(node.get_prefix("k").await.expect("range").len(), 9);
    assert!(node.get("later").await.expect("get").is_some());
    node.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_a_held_prefix_fails_to_open_with_a_clear_error() {
    let store = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let first = within(
        "open",
        t4::Node::open(config(&dir.path().join("a"), &store, "p", "alpha")),
    )
    .await
    .expect("open");
    first.put("k", "v").await.expect("put");
    let second = tokio::time::timeout(
        Duration::from_secs(60),
        t4::Node::open(config(&dir.path().join("b"), &store, "p", "beta")),
    )
    .await
    .expect("open answers");
    match second {
        Err(t4::Error::Bootstrap { reason }) => {
            assert!(reason.contains("alpha"), "names the holder: {reason}");
        }
        other => panic!("expected a bootstrap error, got {other:?}"),
    }
    first
        .put("k", "still")
        .await
        .expect("the holder keeps serving");
    first.close().await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_upload_drains_its_loss_window_into_the_bucket() {
    let store = Arc::new(InMemory::new());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(&dir.path().join("a"), &store, "p", "n1");
    cfg.remote.sync_upload = false;
    cfg.remote.upload_max_delay = Duration::from_millis(20);
    let node = within("open", t4::Node::open(cfg)).await.expect("open");
    for i in 0..20 {
        node.put(format!("k{i:02}"), "v").await.expect("put");
    }
    within("the upload", node.wait_uploaded())
        .await
        .expect("uploaded");
    assert_eq!(node.unuploaded_entries(), 0);
    node.close().await.expect("close");

    let node = within(
        "open",
        t4::Node::open(config(&dir.path().join("b"), &store, "p", "n1")),
    )
    .await
    .expect("recovering");
    assert_eq!(node.get_prefix("k").await.expect("range").len(), 20);
    node.close().await.expect("close");
}

#[tokio::test]
async fn a_checkpoint_without_an_object_store_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = common::open(dir.path()).await;
    assert!(matches!(
        node.checkpoint().await,
        Err(t4::Error::Checkpoint { .. })
    ));
    assert_eq!(node.unuploaded_entries(), 0);
    node.close().await.expect("close");
}
