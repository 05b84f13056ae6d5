//! etcd's `concurrency` recipes, run inside the server over the node: the building blocks of
//! the Lock and Election services, which etcd also runs as clients of its own KV API.
//!
//! A holder (a lock owner, an election candidate) is a key `name/<lease in hex>` created with
//! its lease; holders queue in the order of their keys' create revisions, and the first one
//! holds. A waiting holder watches the deletion of the key just before its own until no older
//! key is left, so no holder is ever woken by a change that does not concern it.

use super::access::Credentials;
use bytes::Bytes;
use t4::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, EventKind, KeyRange, KeyValue,
    LeaseId, Node, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseOp, Revision,
    SortOrder, SortTarget, TxnRequest, TxnResponse, WatchOptions,
};
use tonic::Status;

use super::Context;
use crate::status::{core_status, node_status};

/// TTL of the lease granted for a holder that names none (etcd's session default). Nobody
/// keeps that lease alive, as in etcd, so such a hold ends within this many seconds.
pub const SESSION_TTL: i64 = 60;

/// An error as etcd's Lock and Election services answer it: they call etcd's KV API as a
/// client, which turns the server's errors into plain ones, so every error reaches their
/// callers with gRPC code Unknown and the original message.
pub fn as_client_error(status: Status) -> Status {
    Status::unknown(status.message())
}

/// The check etcd's recipes make by running as their caller: with authentication enabled,
/// the caller must be able to read the queue of `name` (every key under `name/`), and to
/// write it when `write`. Refusals come as the recipes' errors ([`as_client_error`]).
pub fn check_queue(
    ctx: &Context,
    credentials: &Credentials,
    name: &[u8],
    write: bool,
) -> Result<(), Status> {
    check_queue_as_server(ctx, credentials, name, write).map_err(as_client_error)
}

fn check_queue_as_server(
    ctx: &Context,
    credentials: &Credentials,
    name: &[u8],
    write: bool,
) -> Result<(), Status> {
    let caller = ctx.caller_with(credentials)?;
    let start = prefix(name);
    // The queue's range ends where `/` ends: at `0`, the next byte.
    let mut end = start.to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    caller.read(&start, &end)?;
    if write {
        caller.write(&start, &end)?;
    }
    Ok(())
}

/// The lease a holder uses: `lease`, or a new one of [`SESSION_TTL`] seconds when 0.
pub async fn session_lease(node: &Node, lease: LeaseId) -> Result<LeaseId, Status> {
    if lease != 0 {
        return Ok(lease);
    }
    let granted = node
        .lease_grant(SESSION_TTL, 0)
        .await
        .map_err(node_status)?;
    Ok(granted.id)
}

/// The queue of holders of `name`: every key under `name/`.
pub fn prefix(name: &[u8]) -> Bytes {
    [name, b"/"].concat().into()
}

/// The key of the holder with `lease` in the queue `prefix` (Go's `%x` of the lease id).
pub fn holder_key(prefix: &[u8], lease: LeaseId) -> Bytes {
    [prefix, format!("{lease:x}").as_bytes()].concat().into()
}

/// Reads one key.
pub fn get(key: &Bytes) -> RangeRequest {
    RangeRequest {
        key: key.clone(),
        ..RangeRequest::default()
    }
}

/// Reads the oldest holder of the queue `prefix` (etcd's `WithFirstCreate`).
pub fn first_created(prefix: &Bytes) -> RangeRequest {
    let range = KeyRange::prefix(prefix.clone());
    RangeRequest {
        key: prefix.clone(),
        range_end: range
            .end_exclusive()
            .unwrap_or_else(|| Bytes::from_static(b"\0")),
        limit: 1,
        sort_order: SortOrder::Ascend,
        sort_target: SortTarget::Create,
        ..RangeRequest::default()
    }
}

/// "`key` was created at `revision`" (0: `key` does not exist).
pub fn created_at(key: &Bytes, revision: Revision) -> Compare {
    Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Create(revision),
        key: key.clone(),
        range_end: Bytes::new(),
    }
}

/// A put of `key` with `lease`.
pub fn put(key: &Bytes, value: Bytes, lease: LeaseId) -> RequestOp {
    RequestOp::Put(PutRequest {
        key: key.clone(),
        value,
        lease,
        ..PutRequest::default()
    })
}

/// A delete of `key`.
pub fn delete(key: &Bytes) -> RequestOp {
    RequestOp::DeleteRange(DeleteRangeRequest {
        key: key.clone(),
        ..DeleteRangeRequest::default()
    })
}

/// The keys read by the `index`-th operation of a txn's branch.
pub fn read(txn: &TxnResponse, index: usize) -> &[KeyValue] {
    match txn.responses.get(index) {
        Some(ResponseOp::Range(range)) => &range.kvs,
        _ => &[],
    }
}

/// Joins the queue `prefix` with `key` and `value` unless `key` is there already: the txn's
/// answer, and the create revision of `key` (its place in the queue).
pub async fn enqueue(
    node: &Node,
    prefix: &Bytes,
    key: &Bytes,
    value: Bytes,
    lease: LeaseId,
) -> Result<(TxnResponse, Revision), Status> {
    let txn = TxnRequest {
        compare: vec![created_at(key, 0)],
        success: vec![
            put(key, value, lease),
            RequestOp::Range(first_created(prefix)),
        ],
        failure: vec![
            RequestOp::Range(get(key)),
            RequestOp::Range(first_created(prefix)),
        ],
    };
    let resp = node.txn(txn).await.map_err(node_status)?;
    let created = if resp.succeeded {
        resp.revision
    } else {
        read(&resp, 0).first().map_or(0, |kv| kv.create_revision)
    };
    Ok((resp, created))
}

/// Waits until no key of the queue `prefix` created at or before `max_create_revision` is
/// left (etcd's `waitDeletes`); answers the revision at which that was read. Ends with
/// etcd's "server stopped" when the server starts shutting down, so that a waiting lock
/// never holds up a graceful stop.
pub async fn wait_deletes(
    ctx: &Context,
    prefix: &Bytes,
    max_create_revision: Revision,
) -> Result<Revision, Status> {
    let node = &ctx.node;
    let wait = async {
        loop {
            let newest_older = RangeRequest {
                sort_order: SortOrder::Descend,
                max_create_revision,
                ..first_created(prefix)
            };
            let resp: RangeResponse = node.range(newest_older).await.map_err(node_status)?;
            let Some(older) = resp.kvs.into_iter().next() else {
                return Ok(resp.revision);
            };
            wait_delete(node, older.key, resp.revision).await?;
        }
    };
    tokio::select! {
        waited = wait => waited,
        () = ctx.shutting_down() => Err(core_status(&t4_core::Error::Stopped)),
    }
}

/// Waits for the deletion of `key`, which existed at `revision`.
async fn wait_delete(node: &Node, key: Bytes, revision: Revision) -> Result<(), Status> {
    let options = WatchOptions {
        start_revision: revision,
        no_put: true,
        ..WatchOptions::default()
    };
    let mut watch = node
        .watch(KeyRange::Single(key), options)
        .await
        .map_err(node_status)?;
    loop {
        let events = watch.next_batch().await.map_err(node_status)?;
        if events.iter().any(|e| e.kind == EventKind::Delete) {
            return Ok(());
        }
    }
}

/// Gives a holder's key up when dropped armed: a lock or candidacy whose request ended
/// before it was granted (the client left, or waiting failed) leaves the queue, as etcd's
/// recipes do. The delete only happens while `key` is still the one created at `revision`.
pub struct LeaveOnDrop {
    node: Node,
    key: Bytes,
    revision: Revision,
    armed: bool,
}

impl LeaveOnDrop {
    /// Leaves the queue with `key` (created at `revision`) on drop, unless disarmed.
    pub fn new(node: &Node, key: &Bytes, revision: Revision) -> LeaveOnDrop {
        LeaveOnDrop {
            node: node.clone(),
            key: key.clone(),
            revision,
            armed: true,
        }
    }

    /// The holder got what it waited for: keep its key.
    pub fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for LeaveOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (node, key, revision) = (self.node.clone(), self.key.clone(), self.revision);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let leave = TxnRequest {
                    compare: vec![created_at(&key, revision)],
                    success: vec![delete(&key)],
                    failure: Vec::new(),
                };
                match node.txn(leave).await {
                    Ok(_) => {}
                    // The server is stopping: the key goes with its lease, as in etcd.
                    Err(t4::Error::Closed) => {
                        tracing::debug!("left a lock or election queue at shutdown")
                    }
                    Err(e) => tracing::warn!(error = %e, "leaving a lock or election queue"),
                }
            });
        }
    }
}
