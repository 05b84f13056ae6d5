//! Errors the core reports, with etcd's exact messages.
//!
//! Every variant that etcd also has displays etcd's `rpctypes` string verbatim, because etcd
//! clients match on those strings; [`Error::grpc_code`] gives etcd's gRPC status code. This is
//! the one place those facts are written down.

use crate::kv::MAX_KEY_LEN;

/// gRPC status codes used by etcd's errors (numbers as in the gRPC specification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum GrpcCode {
    /// The operation was cancelled.
    Cancelled = 1,
    /// An error without a better code (etcd's errors that bypass its code mapping).
    Unknown = 2,
    /// The client sent something invalid.
    InvalidArgument = 3,
    /// The deadline expired.
    DeadlineExceeded = 4,
    /// The named entity does not exist.
    NotFound = 5,
    /// The caller may not do this.
    PermissionDenied = 7,
    /// A quota or limit is exhausted.
    ResourceExhausted = 8,
    /// The system is not in a state where the operation can run.
    FailedPrecondition = 9,
    /// An argument is outside the valid range (compacted or future revisions).
    OutOfRange = 11,
    /// The operation is not implemented.
    Unimplemented = 12,
    /// An internal invariant broke.
    Internal = 13,
    /// The service is temporarily unavailable; retrying may succeed.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request carries no valid credentials.
    Unauthenticated = 16,
}

/// Why a request failed. A failed request changed nothing — except possibly one answered
/// [`Error::Failed`], whose outcome can be unknown (see there).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request has an empty key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value` / `ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// A txn with more compares or operations than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// A txn that writes one key twice (or puts inside a deleted range).
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// An unknown sort order or target.
    #[error("etcdserver: invalid sort option")]
    InvalidSortOption,
    /// The requested revision was compacted away.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// The requested revision has not happened yet.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRevision,
    /// The lease does not exist (never granted, revoked or expired).
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with the requested id already exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// A lease TTL above etcd's maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The request is larger than the configured maximum request size.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// The key is longer than t4 supports.
    #[error("t4: key is {len} bytes, larger than the {MAX_KEY_LEN}-byte limit")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
    },
    /// `range_end` sorts at or before `key`, so the range holds no key.
    #[error("t4: invalid range: range_end sorts at or before key")]
    InvalidRange,
    /// The node can no longer make writes durable (a WAL or store write failed); it keeps
    /// serving reads and must be restarted to accept writes again.
    ///
    /// For a write that was in the WAL append in flight when the node failed (whether that
    /// append's fsync or another IO failed), the outcome is **unknown**, as after a timeout:
    /// its bytes may have reached the disk (or the page cache), and a restart then recovers
    /// and applies it. Requests that arrive later, or that were still waiting for the next
    /// append, did not happen.
    #[error("t4: node is failed and no longer accepts writes ({0}); restart it to recover")]
    Failed(String),
    /// The node could not make the write durable in the object store (the bucket is
    /// unreachable or failing). The outcome is **unknown**: the write may or may not have
    /// happened (it is in the local WAL and is uploaded when the bucket returns). Retryable:
    /// the node resumes by itself once the bucket answers again; reads keep working.
    #[error(
        "t4: the object store is unavailable ({0}); the write may or may not have happened; retry later"
    )]
    ObjectStoreUnavailable(String),
    /// The node is shutting down.
    #[error("etcdserver: server stopped")]
    Stopped,
    /// The backend is over its space quota (the NOSPACE alarm is raised): writes are refused
    /// until space is freed (compact, defragment) and the alarm is disarmed.
    #[error("etcdserver: mvcc: database space exceeded")]
    NoSpace,
    /// An auth request while authentication is disabled.
    #[error("etcdserver: authentication is not enabled")]
    AuthNotEnabled,
    /// `AuthEnable` without a `root` user.
    #[error("etcdserver: root user does not exist")]
    RootUserNotExist,
    /// `AuthEnable` while the `root` user lacks the `root` role.
    #[error("etcdserver: root user does not have root role")]
    RootRoleNotExist,
    /// `UserAdd` of a user that exists.
    #[error("etcdserver: user name already exists")]
    UserAlreadyExist,
    /// An empty user name, or a request without a token while authentication is enabled.
    #[error("etcdserver: user name is empty")]
    UserEmpty,
    /// An unknown user.
    #[error("etcdserver: user name not found")]
    UserNotFound,
    /// `RoleAdd` of a role that exists.
    #[error("etcdserver: role name already exists")]
    RoleAlreadyExist,
    /// An unknown role.
    #[error("etcdserver: role name not found")]
    RoleNotFound,
    /// An empty role name.
    #[error("etcdserver: role name is empty")]
    RoleEmpty,
    /// A wrong user name or password.
    #[error("etcdserver: authentication failed, invalid user ID or password")]
    AuthFailed,
    /// The user may not do this.
    #[error("etcdserver: permission denied")]
    PermissionDenied,
    /// `UserRevokeRole` of a role the user does not have.
    #[error("etcdserver: role is not granted to the user")]
    RoleNotGranted,
    /// `RoleRevokePermission` of a permission the role does not have.
    #[error("etcdserver: permission is not granted to the role")]
    PermissionNotGranted,
    /// `Authenticate` with a password for a user added without one (etcd 3.4 answers this
    /// with its internal error, code Unknown).
    #[error("auth: authentication failed, password was given for no password user")]
    NoPasswordUser,
    /// An unknown or expired token.
    #[error("etcdserver: invalid auth token")]
    InvalidAuthToken,
    /// A change that would lock everyone out (deleting `root`, or its `root` role, while
    /// authentication is enabled).
    #[error("etcdserver: invalid auth management")]
    InvalidAuthMgmt,
    /// A write whose caller's permissions were checked against an auth state that has changed
    /// since (etcd checks them again when it applies the write; its clients authenticate
    /// again and retry).
    #[error("etcdserver: revision of auth store is old")]
    AuthOldRevision,
    /// A leader transfer to a member that is not in the cluster.
    #[error("etcdserver: bad leader transferee")]
    BadLeaderTransferee,
    /// A watch id the stream already uses (a watch cancel reason, not a status).
    #[error("mvcc: duplicate watch ID provided on the WatchStream")]
    WatchIdInUse,
    /// A watch whose `range_end` sorts at or before its key (a watch cancel reason).
    #[error("mvcc: watcher range is empty")]
    EmptyWatcherRange,
    /// An RPC t4 does not serve (yet); the message names it and says why.
    #[error("t4: {0}")]
    Unsupported(&'static str),
    /// The store could not be read.
    #[error("t4: store read failed: {0}")]
    Store(String),
}

impl Error {
    /// The gRPC status code etcd uses for this error.
    pub fn grpc_code(&self) -> GrpcCode {
        use Error::*;
        match self {
            EmptyKey
            | KeyNotFound
            | ValueProvided
            | LeaseProvided
            | TooManyOps
            | DuplicateKey
            | InvalidSortOption
            | RequestTooLarge
            | KeyTooLarge { .. }
            | InvalidRange => GrpcCode::InvalidArgument,
            Compacted | FutureRevision | LeaseTtlTooLarge => GrpcCode::OutOfRange,
            LeaseNotFound => GrpcCode::NotFound,
            LeaseExists => GrpcCode::FailedPrecondition,
            Failed(_) | Stopped | ObjectStoreUnavailable(_) => GrpcCode::Unavailable,
            Store(_) => GrpcCode::Internal,
            NoSpace => GrpcCode::ResourceExhausted,
            AuthNotEnabled | BadLeaderTransferee => GrpcCode::FailedPrecondition,
            RootUserNotExist | RootRoleNotExist | UserAlreadyExist | UserNotFound
            | RoleAlreadyExist | RoleNotFound | RoleNotGranted | PermissionNotGranted => {
                GrpcCode::FailedPrecondition
            }
            UserEmpty | RoleEmpty | AuthFailed | InvalidAuthMgmt | AuthOldRevision => {
                GrpcCode::InvalidArgument
            }
            PermissionDenied => GrpcCode::PermissionDenied,
            InvalidAuthToken => GrpcCode::Unauthenticated,
            NoPasswordUser => GrpcCode::Unknown,
            WatchIdInUse | EmptyWatcherRange => GrpcCode::InvalidArgument,
            Unsupported(_) => GrpcCode::Unimplemented,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etcd_errors_use_etcd_strings_and_codes() {
        assert_eq!(
            Error::Compacted.to_string(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(Error::Compacted.grpc_code(), GrpcCode::OutOfRange);
        assert_eq!(
            Error::LeaseNotFound.to_string(),
            "etcdserver: requested lease not found"
        );
        assert_eq!(Error::LeaseNotFound.grpc_code(), GrpcCode::NotFound);
        assert_eq!(
            Error::DuplicateKey.to_string(),
            "etcdserver: duplicate key given in txn request"
        );
        assert_eq!(Error::EmptyKey.grpc_code(), GrpcCode::InvalidArgument);
        assert_eq!(Error::LeaseExists.grpc_code(), GrpcCode::FailedPrecondition);
        assert_eq!(
            Error::NoSpace.to_string(),
            "etcdserver: mvcc: database space exceeded"
        );
        assert_eq!(Error::NoSpace.grpc_code(), GrpcCode::ResourceExhausted);
        assert_eq!(
            Error::AuthNotEnabled.to_string(),
            "etcdserver: authentication is not enabled"
        );
        assert_eq!(
            Error::BadLeaderTransferee.to_string(),
            "etcdserver: bad leader transferee"
        );
        assert_eq!(
            Error::BadLeaderTransferee.grpc_code(),
            GrpcCode::FailedPrecondition
        );
        assert_eq!(
            Error::WatchIdInUse.to_string(),
            "mvcc: duplicate watch ID provided on the WatchStream"
        );
        assert_eq!(
            Error::AuthOldRevision.to_string(),
            "etcdserver: revision of auth store is old"
        );
        assert_eq!(
            Error::AuthOldRevision.grpc_code(),
            GrpcCode::InvalidArgument
        );
    }
}
