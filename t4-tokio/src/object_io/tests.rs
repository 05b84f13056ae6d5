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
    let delete = ObjectRequest::Delete { key: "k".into() };
    assert_eq!(
        io.execute(delete.clone()).await,
        Ok(ObjectResponse::Deleted)
    );
    assert_eq!(io.execute(delete).await, Ok(ObjectResponse::Deleted));
    assert_eq!(io.execute(get("k")).await, Err(ObjectError::NotFound));
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
