//! Merging against a real S3 server (moto): the merged tail objects are deleted with one
//! bulk `DeleteObjects` request, and are gone from the bucket.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use t4::object_store::path::Path;
use t4::object_store::{
    self, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use t4::{Node, RemoteConfig};
use t4_e2e::moto::Moto;
use tokio::sync::mpsc;

/// One `delete_stream` call: the paths it was given, and whether every one was deleted.
#[derive(Debug)]
struct DeleteCall {
    paths: Vec<String>,
    all_deleted: bool,
}

/// Forwards every call to moto's S3 store and reports each `delete_stream` call once the
/// store has answered for all its paths. On S3, one call of at most 1,000 paths is one
/// `DeleteObjects` request.
#[derive(Debug)]
struct Recording {
    inner: Arc<dyn ObjectStore>,
    deletes: mpsc::UnboundedSender<DeleteCall>,
}

impl fmt::Display for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Recording({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Recording {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let locations = locations
            .inspect(move |path| {
                if let Ok(path) = path {
                    seen.lock().expect("not poisoned").push(path.to_string());
                }
            })
            .boxed();
        let answers = self.inner.delete_stream(locations);
        let deletes = self.deletes.clone();
        futures::stream::once(async move {
            let results: Vec<_> = answers.collect().await;
            let paths = std::mem::take(&mut *paths.lock().expect("not poisoned"));
            let all_deleted = results.len() == paths.len() && results.iter().all(|r| r.is_ok());
            let _ = deletes.send(DeleteCall { paths, all_deleted });
            futures::stream::iter(results)
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// A node on `data_dir` durable in `store` under `t4/`, merging every 8 tail objects, with
/// no automatic checkpoint (so no GC deletes anything).
async fn open(data_dir: &std::path::Path, store: Arc<dyn ObjectStore>) -> Node {
    let mut config = t4::Config::new(data_dir);
    config.seed = Some(1);
    config.object_store = Some(store);
    config.object_prefix = "t4".to_string();
    config.remote = RemoteConfig {
        merge_min_objects: 8,
        checkpoint_interval: Duration::from_secs(24 * 3600),
        checkpoint_entries: u64::MAX,
        ..RemoteConfig::default()
    };
    Node::open(config).await.expect("opening the node")
}

fn wal_key(index: u64) -> String {
    format!("t4/wal/{index:020}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_deletes_its_tail_objects_with_one_bulk_request() {
    let moto = Moto::start("merge");
    let tmp = tempfile::tempdir().expect("tempdir");
    let (tx, mut deletes) = mpsc::unbounded_channel();
    let store = Arc::new(Recording {
        inner: moto.store(),
        deletes: tx,
    });
    let node = open(&tmp.path().join("a"), store).await;
    // The term-start marker is tail object 1; seven writes make tails 2..=8, and the eighth
    // tail starts the merge.
    for i in 0..7 {
        node.put(format!("k{i}"), format!("v{i}"))
            .await
            .expect("put");
    }
    let call = tokio::time::timeout(Duration::from_secs(30), deletes.recv())
        .await
        .expect("the merge deletes its tails within 30 s")
        .expect("the recorder is alive");
    let merged: Vec<String> = (2..=8).map(wal_key).collect();
    assert_eq!(
        call.paths, merged,
        "every merged tail but the marker, at once"
    );
    assert!(
        call.all_deleted,
        "moto answered DeleteObjects for every key"
    );
    assert_eq!(
        moto.keys("t4/wal/").await,
        [wal_key(1)],
        "only the marker (a fence) is left of the merged tails"
    );
    assert_eq!(
        moto.keys("t4/seg/").await,
        [format!("t4/seg/{:020}-{:020}", 1, 8)]
    );
    node.close().await.expect("closing the node");
    drop(node);
    assert!(
        deletes.try_recv().is_err(),
        "one delete request for one merge"
    );

    // The bucket alone still holds every write.
    let fresh = open(&tmp.path().join("b"), moto.store()).await;
    for i in 0..7 {
        let kv = fresh.get(format!("k{i}")).await.expect("get");
        assert_eq!(
            kv.map(|kv| kv.value),
            Some(format!("v{i}").into()),
            "k{i} recovered"
        );
    }
    fresh.close().await.expect("closing the node");
}
