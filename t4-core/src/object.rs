//! The object-store requests the core asks an adapter to perform, and their answers.
//!
//! The core decides every object it reads, writes or deletes in the bucket (see
//! `docs/object-store-layout.md`); an adapter only carries the requests out, with whatever
//! client it has (`object_store` in the runtime adapter, the simulated store in `t4-sim`). Keys are
//! **relative to the configured prefix** (`"writer"`, `"wal/00000000000000000042"`): the
//! adapter prepends the prefix, so the core never sees it.
//!
//! The adapter retries throttling and 5xx answers itself, with backoff and jitter, for a
//! bounded time; what still fails comes back as [`ObjectError::Unavailable`], whose outcome is
//! **unknown** (a PUT may have happened even though its answer was lost). The core re-reads
//! before it decides such a request failed.

use bytes::Bytes;

/// An object's entity tag, as the store reported it (opaque to the core).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ETag(pub String);

/// How a PUT treats an object that already exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Create only (`If-None-Match: *`); fails with [`ObjectError::PreconditionFailed`] when
    /// the key exists.
    Create,
    /// Replace only the version with this ETag (`If-Match`); fails with
    /// [`ObjectError::PreconditionFailed`] otherwise (including when the key is absent).
    Update(ETag),
}

/// One request to the object store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectRequest {
    /// Read a whole object.
    Get {
        /// The key, relative to the prefix.
        key: String,
    },
    /// Write a whole object.
    Put {
        /// The key, relative to the prefix.
        key: String,
        /// The contents.
        bytes: Bytes,
        /// Conditional-write mode.
        mode: PutMode,
    },
    /// List every object whose key starts with `prefix` (relative to the configured
    /// prefix), in lexicographic order. The adapter follows pagination itself.
    List {
        /// The key prefix, e.g. `"wal/"`.
        prefix: String,
    },
    /// Delete objects, in one request (S3 `DeleteObjects`): at most [`MAX_DELETE_KEYS`]
    /// keys. Deleting an absent object succeeds. The request succeeds only when every key is
    /// gone; whatever it fails with, any of the keys may have been deleted (the outcome is
    /// unknown, key by key).
    DeleteMany {
        /// The keys, relative to the prefix.
        keys: Vec<String>,
    },
}

/// The most keys one [`ObjectRequest::DeleteMany`] may name: S3 `DeleteObjects`' limit.
pub const MAX_DELETE_KEYS: usize = 1000;

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The key, relative to the configured prefix.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// The answer to a successful [`ObjectRequest`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjectResponse {
    /// The object's contents and ETag.
    Got {
        /// The contents.
        bytes: Bytes,
        /// The ETag of this version.
        etag: ETag,
    },
    /// The write happened; the new version's ETag.
    Put {
        /// The ETag of the version written.
        etag: ETag,
    },
    /// The objects under the prefix, sorted by key.
    Listed {
        /// The objects.
        objects: Vec<ObjectMeta>,
    },
    /// Every object named is gone.
    Deleted,
}

/// Why an [`ObjectRequest`] failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ObjectError {
    /// `Get` of a key that does not exist.
    #[error("object not found")]
    NotFound,
    /// A conditional `Put` whose condition did not hold; nothing was written.
    #[error("precondition failed")]
    PreconditionFailed,
    /// The store could not be reached or kept failing (timeouts, 5xx, throttling) after the
    /// adapter's retries. The outcome is unknown: a `Put` or a `DeleteMany` may have
    /// happened, wholly or (a `DeleteMany`) in part.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
    /// Any other failure (access denied, bad bucket, ...): the request did not happen (a
    /// `DeleteMany` may still have deleted the keys it did not fail for).
    #[error("object store error: {0}")]
    Other(String),
}

impl ObjectError {
    /// True when the request may have happened although it failed.
    pub fn outcome_unknown(&self) -> bool {
        matches!(self, ObjectError::Unavailable(_))
    }
}
