use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use t4_core::object::{ETag, ObjectError, ObjectRequest, ObjectResponse, PutMode};

use super::{ObjectIo, is_client_error, normalize_prefix};

fn put(key: &str, bytes: &'static [u8], mode: PutMode) -> ObjectRequest {
    ObjectRequest::Put {
        key: key.to_string(),
        bytes: Bytes::from_static(bytes),
        mode,
    }
}

fn get(key: &str) -> ObjectRequest {
    ObjectRequest::Get {
        key: key.to_string(),
    }
}

fn list(prefix: &str) -> ObjectRequest {
    ObjectRequest::List {
        prefix: prefix.to_string(),
    }
}

fn delete(keys: &[&str]) -> ObjectRequest {
    ObjectRequest::DeleteMany {
        keys: keys.iter().map(|k| k.to_string()).collect(),
    }
}

fn keys(response: ObjectResponse) -> Vec<String> {
    match response {
        ObjectResponse::Listed { objects } => objects.into_iter().map(|o| o.key).collect(),
        other => panic!("not a listing: {other:?}"),
    }
}

async fn raw_keys(store: &dyn ObjectStore) -> Vec<String> {
    use futures::TryStreamExt;
    let mut keys: Vec<String> = store
        .list(None)
        .map_ok(|m| m.location.to_string())
        .try_collect()
        .await
        .expect("listing");
    keys.sort();
    keys
}

#[test]
fn prefixes_with_or_without_slashes_normalise_alike() {
    for p in ["t4", "t4/", "/t4/", "/t4", "//t4//"] {
        assert_eq!(normalize_prefix(p), "t4", "{p:?}");
    }
    assert_eq!(normalize_prefix("a/b/"), "a/b");
    assert_eq!(normalize_prefix(""), "");
    assert_eq!(normalize_prefix("/"), "");
}

#[tokio::test]
async fn prefixes_with_or_without_slashes_give_identical_keys() {
    let mut seen = Vec::new();
    for p in ["t4", "t4/", "/t4/"] {
        let store = Arc::new(InMemory::new());
        let io = ObjectIo::new(store.clone(), p);
        io.execute(put("writer", b"w", PutMode::Create))
            .await
            .expect("put");
        io.execute(put("wal/00000000000000000001", b"e", PutMode::Create))
            .await
            .expect("put");
        seen.push(raw_keys(store.as_ref()).await);
        assert_eq!(io.path("writer").as_ref(), "t4/writer");
    }
    assert_eq!(seen[0], ["t4/wal/00000000000000000001", "t4/writer"]);
    assert!(seen.iter().all(|k| *k == seen[0]), "{seen:?}");

    // One store, written under one spelling, read under another.
    let store = Arc::new(InMemory::new());
    ObjectIo::new(store.clone(), "/t4/")
        .execute(put("writer", b"w", PutMode::Create))
        .await
        .expect("put");
    let got = ObjectIo::new(store, "t4")
        .execute(get("writer"))
        .await
        .expect("get");
    assert!(matches!(got, ObjectResponse::Got { bytes, .. } if bytes == "w"));
}

#[tokio::test]
async fn an_empty_prefix_is_the_bucket_root() {
    let store = Arc::new(InMemory::new());
    let io = ObjectIo::new(store.clone(), "/");
    io.execute(put("manifest", b"m", PutMode::Create))
        .await
        .expect("put");
    assert_eq!(raw_keys(store.as_ref()).await, ["manifest"]);
    assert_eq!(
        keys(io.execute(list("")).await.expect("list")),
        ["manifest"]
    );
}

#[tokio::test]
async fn create_refuses_an_existing_key() {
    let io = ObjectIo::new(Arc::new(InMemory::new()), "p");
    io.execute(put("writer", b"1", PutMode::Create))
        .await
        .expect("first create");
    assert_eq!(
        io.execute(put("writer", b"2", PutMode::Create)).await,
        Err(ObjectError::PreconditionFailed)
    );
    let got = io.execute(get("writer")).await.expect("get");
    assert!(matches!(got, ObjectResponse::Got { bytes, .. } if bytes == "1"));
}

#[tokio::test]
async fn update_needs_the_current_etag() {
    let io = ObjectIo::new(Arc::new(InMemory::new()), "p");
    assert_eq!(
        io.execute(put("manifest", b"0", PutMode::Update(ETag("x".into()))))
            .await,
        Err(ObjectError::PreconditionFailed),
        "update of an absent key"
    );
    let ObjectResponse::Put { etag: first } = io
        .execute(put("manifest", b"1", PutMode::Create))
        .await
        .expect("create")
    else {
        panic!("not a put")
    };
    let ObjectResponse::Got { etag, .. } = io.execute(get("manifest")).await.expect("get") else {
        panic!("not a get")
    };
    assert_eq!(etag, first, "get reports the etag put returned");
    let ObjectResponse::Put { etag: second } = io
        .execute(put("manifest", b"2", PutMode::Update(first.clone())))
        .await
        .expect("update with the current etag")
    else {
        panic!("not a put")
    };
    assert_ne!(first, second);
    assert_eq!(
        io.execute(put("manifest", b"3", PutMode::Update(first)))
            .await,
        Err(ObjectError::PreconditionFailed),
        "update with a stale etag"
    );
    io.execute(put("manifest", b"4", PutMode::Overwrite))
        .await
        .expect("overwrite");
}

#[tokio::test]
async fn get_of_a_missing_key_is_not_found_and_delete_is_idempotent() {
    let io = ObjectIo::new(Arc::new(InMemory::new()), "p");
    assert_eq!(io.execute(get("nope")).await, Err(ObjectError::NotFound));
    io.execute(put("k", b"v", PutMode::Create))
        .await
        .expect("put");
    let delete = delete(&["k"]);
    assert_eq!(
        io.execute(delete.clone()).await,
        Ok(ObjectResponse::Deleted)
    );
    assert_eq!(io.execute(delete).await, Ok(ObjectResponse::Deleted));
    assert_eq!(io.execute(get("k")).await, Err(ObjectError::NotFound));
}

/// Writes `wal/0..n` and `seg/x` under `t4`, and `other/wal/1` beside it; deletes
/// `wal/0..n` and two absent keys in one request; only `seg/x` and the other prefix's key
/// remain.
async fn bulk_delete_removes_exactly_its_keys(store: Arc<dyn ObjectStore>, n: usize) {
    store
        .put(&"other/wal/1".into(), Bytes::from_static(b"x").into())
        .await
        .expect("put");
    let io = ObjectIo::new(store.clone(), "t4");
    let tails: Vec<String> = (0..n).map(|i| format!("wal/{i:020}")).collect();
    for key in tails.iter().map(String::as_str).chain(["seg/x"]) {
        io.execute(put(key, b"e", PutMode::Create))
            .await
            .expect("put");
    }
    let mut doomed: Vec<&str> = tails.iter().map(String::as_str).collect();
    doomed.extend(["wal/absent", "nothing/here"]);
    assert_eq!(
        io.execute(delete(&doomed)).await,
        Ok(ObjectResponse::Deleted)
    );
    assert_eq!(
        raw_keys(store.as_ref()).await,
        ["other/wal/1", "t4/seg/x"],
        "every named key is gone, nothing else"
    );
    assert_eq!(
        io.execute(delete(&doomed)).await,
        Ok(ObjectResponse::Deleted),
        "deleting them again succeeds"
    );
}

#[tokio::test]
async fn a_bulk_delete_in_memory_removes_every_key_and_ignores_absent_ones() {
    bulk_delete_removes_exactly_its_keys(Arc::new(InMemory::new()), 64).await;
}

#[tokio::test]
async fn a_bulk_delete_on_the_local_file_system_removes_every_key_and_ignores_absent_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    bulk_delete_removes_exactly_its_keys(Arc::new(store), 64).await;
    assert!(!dir.path().join("t4/wal/00000000000000000000").exists());
}

#[tokio::test]
async fn a_bulk_delete_that_cannot_delete_one_key_fails_and_still_deletes_the_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    let io = ObjectIo::new(Arc::new(store), "t4");
    for key in ["wal/1", "wal/2", "dir/inside"] {
        io.execute(put(key, b"e", PutMode::Create))
            .await
            .expect("put");
    }
    // `dir` is a directory on disk: no file to remove, and not absent either.
    let result = io.execute(delete(&["wal/1", "dir", "wal/2"])).await;
    assert!(
        matches!(&result, Err(e) if e.outcome_unknown()),
        "a key that stays is a failure: {result:?}"
    );
    assert!(!dir.path().join("t4/wal/1").exists());
    assert!(!dir.path().join("t4/wal/2").exists());
    assert!(dir.path().join("t4/dir/inside").exists());
}

#[tokio::test]
async fn list_matches_partial_names_sorted_and_stays_inside_the_prefix() {
    let store = Arc::new(InMemory::new());
    for key in ["t4x/wal/00000000000000000001", "other/wal/1"] {
        store
            .put(&key.into(), Bytes::from_static(b"x").into())
            .await
            .expect("put");
    }
    let io = ObjectIo::new(store, "t4");
    for key in [
        "wal/00000000000000000020",
        "wal/00000000000000000003",
        "wal/00000000000000000010",
        "seg/00000000000000000001-00000000000000000002",
        "writer",
    ] {
        io.execute(put(key, b"abc", PutMode::Create))
            .await
            .expect("put");
    }
    assert_eq!(
        keys(io.execute(list("wal/")).await.expect("list")),
        [
            "wal/00000000000000000003",
            "wal/00000000000000000010",
            "wal/00000000000000000020"
        ]
    );
    assert_eq!(
        keys(
            io.execute(list("wal/0000000000000000001"))
                .await
                .expect("list")
        ),
        ["wal/00000000000000000010"]
    );
    assert_eq!(
        keys(io.execute(list("w")).await.expect("list")),
        [
            "wal/00000000000000000003",
            "wal/00000000000000000010",
            "wal/00000000000000000020",
            "writer"
        ]
    );
    let all = io.execute(list("")).await.expect("list");
    let ObjectResponse::Listed { objects } = &all else {
        panic!("not a listing")
    };
    assert_eq!(objects.len(), 5);
    assert!(objects.iter().all(|o| o.size == 3));
    assert!(keys(io.execute(list("nothing/")).await.expect("list")).is_empty());
}

#[tokio::test]
async fn local_file_system_supports_create_and_list() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        object_store::local::LocalFileSystem::new_with_prefix(dir.path()).expect("local store");
    let io = ObjectIo::new(Arc::new(store), "/t4/");
    io.execute(put("wal/00000000000000000001", b"e", PutMode::Create))
        .await
        .expect("create");
    assert_eq!(
        io.execute(put("wal/00000000000000000001", b"e", PutMode::Create))
            .await,
        Err(ObjectError::PreconditionFailed)
    );
    assert_eq!(
        keys(io.execute(list("wal/")).await.expect("list")),
        ["wal/00000000000000000001"]
    );
    assert!(dir.path().join("t4/wal/00000000000000000001").exists());
}

#[test]
fn a_missing_bucket_is_neither_an_absent_key_nor_retryable() {
    let e = object_store::Error::NotFound {
        path: "t4/writer".into(),
        source: "Server returned non-2xx status code: 404 Not Found: <Error><Code>NoSuchBucket</Code></Error>".into(),
    };
    match super::map_error(e) {
        ObjectError::Other(m) => assert!(m.contains("bucket does not exist"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn only_definite_client_errors_are_not_retryable() {
    assert!(is_client_error(
        "Generic S3 error: Error performing PUT in 1ms - Server returned non-2xx status code: 400 Bad Request: "
    ));
    assert!(!is_client_error(
        "Server returned non-2xx status code: 503 Service Unavailable"
    ));
    assert!(!is_client_error("status code: 429 Too Many Requests"));
    assert!(!is_client_error("HTTP error: error sending request"));
}
