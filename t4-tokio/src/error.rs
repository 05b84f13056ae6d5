//! Errors of the embedded API.

use std::path::PathBuf;

use t4_core::wal::WalError;
use t4_core::{OpenError, StoreError};

/// Why an embedded-API call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request was refused or failed; it changed nothing. Displays etcd's message where
    /// etcd has one (e.g. `etcdserver: mvcc: required revision has been compacted`).
    #[error(transparent)]
    Request(#[from] t4_core::Error),
    /// A watch cannot continue because the revisions it needs were compacted.
    #[error(
        "watch cancelled: revision {requested} has been compacted (compact revision is {compact_revision})"
    )]
    WatchCompacted {
        /// The revision the watch needed next.
        requested: t4_core::Revision,
        /// The store's compact revision.
        compact_revision: t4_core::Revision,
    },
    /// The data directory could not be used.
    #[error("t4: {context} ({path}): {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The data directory is not one this binary can open.
    #[error("t4: data dir {path}: {reason}")]
    DataDir {
        /// The data directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The WAL is damaged in a way recovery must not paper over.
    #[error("t4: data dir {path}: {source}")]
    Wal {
        /// The WAL directory.
        path: PathBuf,
        /// What recovery found.
        source: WalError,
    },
    /// The store failed.
    #[error("t4: store: {0}")]
    Store(#[from] StoreError),
    /// Recovery failed.
    #[error("t4: {0}")]
    Open(#[from] OpenError),
    /// A snapshot could not be used.
    #[error("t4: {0}")]
    Snapshot(#[from] t4_core::snapshot::SnapshotError),
    /// The node could not start from its object store: another node holds the prefix, the
    /// bucket is unreachable, or what it holds cannot be recovered. Nothing was served.
    #[error("t4: cannot start from the object store: {reason}")]
    Bootstrap {
        /// What went wrong, and what to do.
        reason: String,
    },
    /// An on-demand checkpoint could not be taken.
    #[error("t4: checkpoint failed: {reason}")]
    Checkpoint {
        /// Why.
        reason: String,
    },
    /// The node was closed.
    #[error("t4: node is closed")]
    Closed,
}

impl Error {
    /// The etcd-level error, if this is one.
    pub fn as_request_error(&self) -> Option<&t4_core::Error> {
        match self {
            Error::Request(e) => Some(e),
            _ => None,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
