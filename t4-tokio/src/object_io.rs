//! Performs the core's [`ObjectRequest`]s against any [`object_store::ObjectStore`] (S3,
//! `InMemory`, `LocalFileSystem`, ...), under a key prefix.
//!
//! Nothing here decides anything: the core chose every key, mode and retry; this module only
//! translates its requests into `object_store` calls and the answers (and errors) back. The
//! client's own retry policy (see [`s3_retry_config`]) retries throttling and 5xx answers with
//! backoff and jitter for a bounded time; what still fails is reported as
//! [`ObjectError::Unavailable`], whose outcome the core treats as unknown.

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutOptions, PutPayload, UpdateVersion};
use t4_core::object::{ETag, ObjectError, ObjectMeta, ObjectRequest, ObjectResponse, PutMode};

/// Normalises a configured prefix: leading and trailing `/` are stripped (and runs of `/`
/// collapsed), so `t4`, `t4/` and `/t4/` name the same keys. An empty result means the bucket
/// root.
///
/// ```
/// assert_eq!(t4::object_io::normalize_prefix("/t4/"), "t4");
/// assert_eq!(t4::object_io::normalize_prefix("a//b/"), "a/b");
/// assert_eq!(t4::object_io::normalize_prefix("/"), "");
/// ```
pub fn normalize_prefix(prefix: &str) -> String {
    prefix
        .split('/')
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join("/")
}

/// A retry policy for S3 clients suited to t4: exponential backoff with jitter (which
/// `object_store` applies to every retry of 5xx, throttling and connection errors), bounded in
/// total so that, with the bucket unreachable, a synchronous write fails within a few seconds
/// with a retryable error instead of hanging. The core retries later by itself.
pub fn s3_retry_config() -> object_store::RetryConfig {
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(1),
            base: 2.0,
        },
        max_retries: 8,
        retry_timeout: Duration::from_secs(3),
    }
}

/// An object store and the prefix t4's keys live under.
#[derive(Clone, Debug)]
pub struct ObjectIo {
    store: Arc<dyn ObjectStore>,
    /// Normalised: no leading or trailing `/`; empty for the bucket root.
    prefix: String,
    /// Bounds the bulk deletes in flight: a merge deletes its tails in one request, but GC
    /// may send several (of up to 1,000 keys each) at once, and without a bound that burst
    /// queues ahead of the next WAL upload, which a client waits for.
    deletes: Arc<tokio::sync::Semaphore>,
}

/// Bulk delete requests ([`ObjectRequest::DeleteMany`]) [`ObjectIo`] runs at once.
const MAX_CONCURRENT_DELETES: usize = 4;

impl ObjectIo {
    /// Keys of requests are placed under `prefix` (normalised with [`normalize_prefix`]).
    pub fn new(store: Arc<dyn ObjectStore>, prefix: &str) -> ObjectIo {
        ObjectIo {
            store,
            prefix: normalize_prefix(prefix),
            deletes: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_DELETES)),
        }
    }

    /// The normalised prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full object path of a key relative to the prefix.
    pub fn path(&self, key: &str) -> Path {
        Path::from(self.full(key))
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        }
    }

    /// Performs one request. Requests are independent: callers may run many concurrently.
    pub async fn execute(&self, request: ObjectRequest) -> Result<ObjectResponse, ObjectError> {
        match request {
            ObjectRequest::Get { key } => self.get(&key).await,
            ObjectRequest::Put { key, bytes, mode } => self.put(&key, bytes, mode).await,
            ObjectRequest::List { prefix } => self
                .list(&prefix)
                .await
                .map(|objects| ObjectResponse::Listed { objects }),
            ObjectRequest::DeleteMany { keys } => self.delete_many(&keys).await,
        }
    }

    /// Deletes `keys` with the store's `delete_stream`: on S3 one `DeleteObjects` request
    /// per 1,000 keys (the core sends at most that many), elsewhere what the store does
    /// (`LocalFileSystem` deletes file by file). An absent key counts as deleted. Every key
    /// is attempted; the first failure is the answer.
    async fn delete_many(&self, keys: &[String]) -> Result<ObjectResponse, ObjectError> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.deletes.acquire().await;
        let paths: Vec<object_store::Result<Path>> =
            keys.iter().map(|key| Ok(self.path(key))).collect();
        let results: Vec<object_store::Result<Path>> = self
            .store
            .delete_stream(futures::stream::iter(paths).boxed())
            .collect()
            .await;
        let mut answered = 0;
        for result in results {
            // Through `map_error`, so that a missing bucket (404 too) is no absent key.
            match result.map_err(map_error) {
                Ok(_) | Err(ObjectError::NotFound) => answered += 1,
                Err(e) => return Err(e),
            }
        }
        if answered != keys.len() {
            // A store must answer for every path it was given; one that did not may have left
            // some in place.
            return Err(ObjectError::Unavailable(format!(
                "the store answered for {answered} of the {} objects to delete",
                keys.len()
            )));
        }
        Ok(ObjectResponse::Deleted)
    }

    async fn get(&self, key: &str) -> Result<ObjectResponse, ObjectError> {
        let got = self.store.get(&self.path(key)).await.map_err(map_error)?;
        let etag = ETag(got.meta.e_tag.clone().unwrap_or_default());
        let bytes = got.bytes().await.map_err(map_error)?;
        Ok(ObjectResponse::Got { bytes, etag })
    }

    async fn put(
        &self,
        key: &str,
        bytes: bytes::Bytes,
        mode: PutMode,
    ) -> Result<ObjectResponse, ObjectError> {
        let conditional = !matches!(mode, PutMode::Overwrite);
        let mode = match mode {
            PutMode::Overwrite => object_store::PutMode::Overwrite,
            PutMode::Create => object_store::PutMode::Create,
            PutMode::Update(ETag(e_tag)) => object_store::PutMode::Update(UpdateVersion {
                e_tag: Some(e_tag),
                version: None,
            }),
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.path(key), PutPayload::from(bytes), options)
            .await
        {
            Ok(put) => Ok(ObjectResponse::Put {
                etag: ETag(put.e_tag.unwrap_or_default()),
            }),
            // `If-Match` on an absent key: some stores answer 404 rather than 412.
            Err(e) => match map_error(e) {
                ObjectError::NotFound if conditional => Err(ObjectError::PreconditionFailed),
                other => Err(other),
            },
        }
    }

    /// Every object whose key (relative to the prefix) starts with `prefix`, sorted.
    /// `object_store` lists whole path segments, so this lists the directory `prefix` ends in
    /// and keeps the keys that match; the stream follows the store's pagination.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, ObjectError> {
        let dir = match prefix.rfind('/') {
            Some(at) => self.full(&prefix[..at]),
            None => self.prefix.clone(),
        };
        let dir = (!dir.is_empty()).then(|| Path::from(dir));
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut objects: Vec<ObjectMeta> = self
            .store
            .list(dir.as_ref())
            .map_err(map_error)
            .try_filter_map(|meta| {
                let key = meta
                    .location
                    .as_ref()
                    .strip_prefix(strip.as_str())
                    .filter(|key| key.starts_with(prefix))
                    .map(|key| ObjectMeta {
                        key: key.to_string(),
                        size: meta.size,
                    });
                async move { Ok(key) }
            })
            .try_collect()
            .await?;
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// Maps an `object_store` error onto the core's classes. Anything that may be transient or
/// whose outcome is unknown (timeouts, connection failures, 5xx, throttling — every generic
/// client error) is [`ObjectError::Unavailable`]; errors that certainly did nothing and will
/// not heal by retrying (permissions, bad requests) are [`ObjectError::Other`].
pub fn map_error(error: object_store::Error) -> ObjectError {
    use object_store::Error as E;
    let message = error.to_string();
    // S3 answers 404 for a missing bucket too; that is no absent object (nor a lost race for
    // a conditional write), and no retry will help.
    if message.contains("NoSuchBucket") {
        return ObjectError::Other(format!(
            "the bucket does not exist; create it or fix the bucket name ({message})"
        ));
    }
    match error {
        E::NotFound { .. } => ObjectError::NotFound,
        E::AlreadyExists { .. } | E::Precondition { .. } => ObjectError::PreconditionFailed,
        E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. }
        | E::InvalidPath { .. }
        | E::UnknownConfigurationKey { .. } => ObjectError::Other(error.to_string()),
        E::Generic { .. } if is_client_error(&error.to_string()) => {
            ObjectError::Other(error.to_string())
        }
        other => ObjectError::Unavailable(other.to_string()),
    }
}

/// A 4xx answer other than 408 (timeout) and 429 (throttling): the request was refused and
/// retrying will not help. (`object_store` does not expose the status of a generic error as a
/// type, only in its message.)
fn is_client_error(message: &str) -> bool {
    let Some(rest) = message.split("status code: ").nth(1) else {
        return false;
    };
    let code: String = rest.chars().take(3).collect();
    code.starts_with('4') && code != "408" && code != "429"
}

#[cfg(test)]
mod tests;
