//! Helpers shared by the integration tests of `t4::Node`.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses a different subset

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

/// A guard against hangs: a test that waits for an event fails after this long instead of
/// running for ever. It is never used to let time pass.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// Awaits `f`, failing the test with `what` if it takes longer than [`HANG_GUARD`].
pub async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A config for a node in `dir` with a fixed seed.
pub fn config(dir: &Path) -> t4::Config {
    let mut config = t4::Config::new(dir);
    config.seed = Some(7);
    config
}

/// Opens a node in `dir` with [`config`].
pub async fn open(dir: &Path) -> t4::Node {
    t4::Node::open(config(dir)).await.unwrap()
}

/// `s` as bytes.
pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The etcd-level error inside `e`, or a panic saying what came instead.
pub fn request_error(e: t4::Error) -> t4::RequestError {
    match e {
        t4::Error::Request(e) => e,
        other => panic!("expected a request error, got {other:?}"),
    }
}

/// Keys and values of `kvs`, as strings.
pub fn pairs(kvs: &[t4::KeyValue]) -> Vec<(String, String)> {
    kvs.iter()
        .map(|kv| {
            (
                String::from_utf8_lossy(&kv.key).into_owned(),
                String::from_utf8_lossy(&kv.value).into_owned(),
            )
        })
        .collect()
}

/// Paths and contents of every file under `dir`, sorted: a fingerprint of a data dir.
pub fn snapshot_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&path).unwrap()));
            }
        }
    }
    out.sort();
    out
}

/// The WAL segment files of the data dir `dir`, sorted by name (= log order).
pub fn wal_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    files.sort();
    files
}
