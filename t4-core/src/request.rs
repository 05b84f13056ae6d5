//! Requests the core serves and their responses, shaped like etcd's v3 messages.
//!
//! Keys and ranges use etcd's `(key, range_end)` convention so that the gRPC server maps
//! messages one to one; the embedded API builds these for its users.

use std::sync::Arc;

use bytes::Bytes;

use crate::auth::{AuthChange, AuthState};
use crate::kv::{KeyValue, LeaseId, Revision};

/// Put a key.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutRequest {
    /// The key to write; must not be empty.
    pub key: Bytes,
    /// The new value.
    pub value: Bytes,
    /// Lease to attach, or 0.
    pub lease: LeaseId,
    /// Return the previous key-value pair.
    pub prev_kv: bool,
    /// Keep the current value (the key must exist; `value` must be empty).
    pub ignore_value: bool,
    /// Keep the current lease (the key must exist; `lease` must be 0).
    pub ignore_lease: bool,
}

/// Result of a put.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PutResponse {
    /// Revision of the put.
    pub revision: Revision,
    /// The previous pair, when asked for and present.
    pub prev_kv: Option<KeyValue>,
}

/// Sort order of a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// Key order, unless a sort target other than the key is given.
    #[default]
    None,
    /// Ascending.
    Ascend,
    /// Descending.
    Descend,
}

/// Field a range is sorted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SortTarget {
    /// The key.
    #[default]
    Key,
    /// The version.
    Version,
    /// The create revision.
    Create,
    /// The mod revision.
    Mod,
    /// The value.
    Value,
}

/// Read keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    /// First key; must not be empty.
    pub key: Bytes,
    /// etcd's range end: empty for one key, `"\0"` for every key from `key`.
    pub range_end: Bytes,
    /// At most this many keys (0 = no limit).
    pub limit: i64,
    /// Read at this revision (0 = current).
    pub revision: Revision,
    /// Sort order.
    pub sort_order: SortOrder,
    /// Sort field.
    pub sort_target: SortTarget,
    /// Serve from local state without a linearizability round (meaningful in a cluster).
    pub serializable: bool,
    /// Return keys without values.
    pub keys_only: bool,
    /// Return only the count.
    pub count_only: bool,
    /// Only keys with mod revision >= this (0 = no bound).
    pub min_mod_revision: Revision,
    /// Only keys with mod revision <= this (0 = no bound).
    pub max_mod_revision: Revision,
    /// Only keys with create revision >= this (0 = no bound).
    pub min_create_revision: Revision,
    /// Only keys with create revision <= this (0 = no bound).
    pub max_create_revision: Revision,
}

/// Result of a range.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeResponse {
    /// The store revision the read was served at (etcd's header revision).
    pub revision: Revision,
    /// The keys, after filters, sort and limit.
    pub kvs: Vec<KeyValue>,
    /// Whether the limit cut off more keys.
    pub more: bool,
    /// Number of keys in the range at the read revision (before limit and revision filters).
    pub count: i64,
}

/// Delete keys.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeRequest {
    /// First key; must not be empty.
    pub key: Bytes,
    /// etcd's range end.
    pub range_end: Bytes,
    /// Return the deleted pairs.
    pub prev_kv: bool,
}

/// Result of a delete.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeleteRangeResponse {
    /// Revision of the delete, or the current revision if nothing was deleted.
    pub revision: Revision,
    /// Number of keys deleted.
    pub deleted: i64,
    /// The deleted pairs, when asked for.
    pub prev_kvs: Vec<KeyValue>,
}

/// How a compare relates the key's field to the given operand.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CompareResult {
    /// `==`
    #[default]
    Equal,
    /// `>`
    Greater,
    /// `<`
    Less,
    /// `!=`
    NotEqual,
}

/// Which field a compare looks at, with the operand.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CompareTarget {
    /// The version (0 = absent).
    Version(i64),
    /// The create revision.
    Create(Revision),
    /// The mod revision.
    Mod(Revision),
    /// The value (byte order).
    Value(Bytes),
    /// The lease.
    Lease(LeaseId),
}

impl Default for CompareTarget {
    fn default() -> Self {
        CompareTarget::Version(0)
    }
}

/// One guard of a txn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compare {
    /// The relation.
    pub result: CompareResult,
    /// The field and operand.
    pub target: CompareTarget,
    /// The key; must not be empty.
    pub key: Bytes,
    /// etcd's range end: the compare must hold for every key in the range.
    pub range_end: Bytes,
}

/// One operation of a txn branch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestOp {
    /// A read.
    Range(RangeRequest),
    /// A put.
    Put(PutRequest),
    /// A delete.
    DeleteRange(DeleteRangeRequest),
    /// A nested txn.
    Txn(TxnRequest),
}

/// The response to one [`RequestOp`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseOp {
    /// Result of a read.
    Range(RangeResponse),
    /// Result of a put.
    Put(PutResponse),
    /// Result of a delete.
    DeleteRange(DeleteRangeResponse),
    /// Result of a nested txn.
    Txn(TxnResponse),
}

/// An atomic if/then/else over the store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnRequest {
    /// All must hold for `success` to run; otherwise `failure` runs.
    pub compare: Vec<Compare>,
    /// Operations run when every compare holds.
    pub success: Vec<RequestOp>,
    /// Operations run otherwise.
    pub failure: Vec<RequestOp>,
}

/// Result of a txn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnResponse {
    /// Revision after the txn (its write revision, or the current one if it wrote nothing).
    pub revision: Revision,
    /// Whether the compares held.
    pub succeeded: bool,
    /// One response per operation of the branch that ran.
    pub responses: Vec<ResponseOp>,
}

/// Compact history up to a revision.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactRequest {
    /// Revisions below this are discarded.
    pub revision: Revision,
    /// Reply only once the history is physically removed.
    pub physical: bool,
}

/// Result of a compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactResponse {
    /// The current revision.
    pub revision: Revision,
}

/// Result of a lease grant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseGrantResponse {
    /// The current revision.
    pub revision: Revision,
    /// The lease id (generated if 0 was asked).
    pub id: LeaseId,
    /// The granted TTL in seconds (raised to the minimum TTL if needed).
    pub ttl: i64,
}

/// Result of a lease revoke.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseRevokeResponse {
    /// The revision after the attached keys were deleted.
    pub revision: Revision,
}

/// Result of a keepalive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseKeepAliveResponse {
    /// The current revision.
    pub revision: Revision,
    /// The lease id.
    pub id: LeaseId,
    /// The new TTL in seconds; 0 when the lease does not exist (etcd's convention).
    pub ttl: i64,
}

/// Result of a time-to-live query.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseTimeToLiveResponse {
    /// The current revision.
    pub revision: Revision,
    /// The lease id.
    pub id: LeaseId,
    /// Remaining seconds (truncated), or -1 when the lease does not exist (etcd's convention).
    pub ttl: i64,
    /// TTL the lease was granted with.
    pub granted_ttl: i64,
    /// Attached keys, when asked for.
    pub keys: Vec<Bytes>,
}

/// Result of a lease listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LeaseLeasesResponse {
    /// The current revision.
    pub revision: Revision,
    /// Every live lease id, ascending.
    pub leases: Vec<LeaseId>,
}

/// A request the core serialises (every write, and lease queries).
///
/// Plain `Range` reads are served by adapters straight from the store and never reach the
/// core; a read-only `Txn` does, because it must be atomic with respect to writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Put one key.
    Put(PutRequest),
    /// Delete keys.
    DeleteRange(DeleteRangeRequest),
    /// Atomic if/then/else.
    Txn(TxnRequest),
    /// Compact history.
    Compact(CompactRequest),
    /// Grant a lease (`id` 0 = generate one).
    LeaseGrant {
        /// Requested id, or 0.
        id: LeaseId,
        /// Requested TTL in seconds.
        ttl: i64,
    },
    /// Revoke a lease and delete its keys.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Renew a lease.
    LeaseKeepAlive {
        /// The lease.
        id: LeaseId,
    },
    /// Query a lease.
    LeaseTimeToLive {
        /// The lease.
        id: LeaseId,
        /// Also list attached keys.
        keys: bool,
    },
    /// List leases.
    LeaseLeases,
    /// Change the auth state (users, roles, permissions, the enabled flag).
    Auth(AuthChange),
}

/// The successful result of a [`Request`], variant for variant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Put result.
    Put(PutResponse),
    /// Delete result.
    DeleteRange(DeleteRangeResponse),
    /// Txn result.
    Txn(TxnResponse),
    /// Compaction result.
    Compact(CompactResponse),
    /// Grant result.
    LeaseGrant(LeaseGrantResponse),
    /// Revoke result.
    LeaseRevoke(LeaseRevokeResponse),
    /// Keepalive result.
    LeaseKeepAlive(LeaseKeepAliveResponse),
    /// Time-to-live result.
    LeaseTimeToLive(LeaseTimeToLiveResponse),
    /// Lease listing.
    LeaseLeases(LeaseLeasesResponse),
    /// Auth change result.
    Auth(AuthResponse),
}

/// The result of an auth change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthResponse {
    /// The store revision when it was decided (for the response header).
    pub revision: Revision,
    /// The auth state after the change (the same state if the change was in effect already).
    pub state: Arc<AuthState>,
}

impl Request {
    /// An estimate of the request's encoded size, for the request-size limit (etcd checks
    /// the size of the encoded request; this counts its keys, values and a small overhead per
    /// field).
    pub fn approx_size(&self) -> usize {
        fn op_size(op: &RequestOp) -> usize {
            match op {
                RequestOp::Range(r) => 16 + r.key.len() + r.range_end.len(),
                RequestOp::Put(p) => 16 + p.key.len() + p.value.len(),
                RequestOp::DeleteRange(d) => 8 + d.key.len() + d.range_end.len(),
                RequestOp::Txn(t) => txn_size(t),
            }
        }
        fn txn_size(t: &TxnRequest) -> usize {
            let compares: usize = t
                .compare
                .iter()
                .map(|c| {
                    let operand = match &c.target {
                        CompareTarget::Value(v) => v.len(),
                        _ => 8,
                    };
                    12 + c.key.len() + c.range_end.len() + operand
                })
                .sum();
            8 + compares
                + t.success
                    .iter()
                    .chain(&t.failure)
                    .map(op_size)
                    .sum::<usize>()
        }
        match self {
            Request::Put(p) => 16 + p.key.len() + p.value.len(),
            Request::DeleteRange(d) => 8 + d.key.len() + d.range_end.len(),
            Request::Txn(t) => txn_size(t),
            _ => 32,
        }
    }
}
