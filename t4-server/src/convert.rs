//! Protobuf messages ↔ `t4_core` requests and responses.
//!
//! A one-to-one mapping: the core's request types follow etcd's messages field by field, so
//! this module only changes representations (enums, oneofs, byte buffers). Headers are added
//! by the services, which know the identity.

use bytes::Bytes;
use t4_core::request as core;
use t4_core::{Event, EventKind, KeyValue};
use t4_proto::etcdserverpb as pb;
use t4_proto::mvccpb;
use tonic::Status;

use crate::header::Identity;

/// A request that cannot be mapped (an enum value etcd does not define, an empty op).
fn invalid(what: &str) -> Status {
    Status::invalid_argument(format!("t4: {what}"))
}

/// A key-value pair on the wire: the store's buffers, not a copy (`mvccpb.KeyValue` holds
/// `Bytes`, see t4-proto's build script).
pub fn kv_to_pb(kv: KeyValue) -> mvccpb::KeyValue {
    mvccpb::KeyValue {
        key: kv.key,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        value: kv.value,
        lease: kv.lease,
    }
}

/// A watch event on the wire.
pub fn event_to_pb(e: Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            EventKind::Put => mvccpb::event::EventType::Put as i32,
            EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(kv_to_pb(e.kv)),
        prev_kv: e.prev_kv.map(kv_to_pb),
    }
}

/// A range request.
///
/// An unknown sort order is accepted and means "no sorting" (key order), as in etcd 3.4,
/// whatever the target; an unknown target with a known order is refused with etcd's
/// `invalid sort option` (etcd 3.4 panics on it, etcd 3.5+ refuses it).
pub fn range_from_pb(r: pb::RangeRequest) -> Result<core::RangeRequest, Status> {
    use pb::range_request::{SortOrder, SortTarget};
    let (sort_order, sort_target) = match SortOrder::try_from(r.sort_order) {
        Err(_) => (core::SortOrder::None, core::SortTarget::Key),
        Ok(order) => {
            let order = match order {
                SortOrder::None => core::SortOrder::None,
                SortOrder::Ascend => core::SortOrder::Ascend,
                SortOrder::Descend => core::SortOrder::Descend,
            };
            let target = match SortTarget::try_from(r.sort_target) {
                Ok(SortTarget::Key) => core::SortTarget::Key,
                Ok(SortTarget::Version) => core::SortTarget::Version,
                Ok(SortTarget::Create) => core::SortTarget::Create,
                Ok(SortTarget::Mod) => core::SortTarget::Mod,
                Ok(SortTarget::Value) => core::SortTarget::Value,
                Err(_) => {
                    return Err(crate::status::core_status(
                        &t4_core::Error::InvalidSortOption,
                    ));
                }
            };
            (order, target)
        }
    };
    Ok(core::RangeRequest {
        key: r.key.into(),
        range_end: r.range_end.into(),
        limit: r.limit,
        revision: r.revision,
        sort_order,
        sort_target,
        serializable: r.serializable,
        keys_only: r.keys_only,
        count_only: r.count_only,
        min_mod_revision: r.min_mod_revision,
        max_mod_revision: r.max_mod_revision,
        min_create_revision: r.min_create_revision,
        max_create_revision: r.max_create_revision,
    })
}

/// A range response.
pub fn range_to_pb(id: &Identity, r: core::RangeResponse) -> pb::RangeResponse {
    pb::RangeResponse {
        header: id.header(r.revision),
        kvs: r.kvs.into_iter().map(kv_to_pb).collect(),
        more: r.more,
        count: r.count,
    }
}

/// A put request.
pub fn put_from_pb(p: pb::PutRequest) -> core::PutRequest {
    core::PutRequest {
        key: p.key.into(),
        value: p.value.into(),
        lease: p.lease,
        prev_kv: p.prev_kv,
        ignore_value: p.ignore_value,
        ignore_lease: p.ignore_lease,
    }
}

/// A put response.
pub fn put_to_pb(id: &Identity, p: core::PutResponse) -> pb::PutResponse {
    pb::PutResponse {
        header: id.header(p.revision),
        prev_kv: p.prev_kv.map(kv_to_pb),
    }
}

/// A delete request.
pub fn delete_from_pb(d: pb::DeleteRangeRequest) -> core::DeleteRangeRequest {
    core::DeleteRangeRequest {
        key: d.key.into(),
        range_end: d.range_end.into(),
        prev_kv: d.prev_kv,
    }
}

/// A delete response.
pub fn delete_to_pb(id: &Identity, d: core::DeleteRangeResponse) -> pb::DeleteRangeResponse {
    pb::DeleteRangeResponse {
        header: id.header(d.revision),
        deleted: d.deleted,
        prev_kvs: d.prev_kvs.into_iter().map(kv_to_pb).collect(),
    }
}

fn compare_from_pb(c: pb::Compare) -> Result<core::Compare, Status> {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => core::CompareResult::Equal,
        Ok(CompareResult::Greater) => core::CompareResult::Greater,
        Ok(CompareResult::Less) => core::CompareResult::Less,
        Ok(CompareResult::NotEqual) => core::CompareResult::NotEqual,
        Err(_) => return Err(invalid("unknown compare result")),
    };
    // Like etcd, the target decides; an operand of another kind counts as zero / empty.
    let union = c.target_union;
    let target = match CompareTarget::try_from(c.target) {
        Ok(CompareTarget::Version) => core::CompareTarget::Version(match union {
            Some(TargetUnion::Version(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Create) => core::CompareTarget::Create(match union {
            Some(TargetUnion::CreateRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Mod) => core::CompareTarget::Mod(match union {
            Some(TargetUnion::ModRevision(v)) => v,
            _ => 0,
        }),
        Ok(CompareTarget::Value) => core::CompareTarget::Value(match union {
            Some(TargetUnion::Value(v)) => Bytes::from(v),
            _ => Bytes::new(),
        }),
        Ok(CompareTarget::Lease) => core::CompareTarget::Lease(match union {
            Some(TargetUnion::Lease(v)) => v,
            _ => 0,
        }),
        Err(_) => return Err(invalid("unknown compare target")),
    };
    Ok(core::Compare {
        result,
        target,
        key: c.key.into(),
        range_end: c.range_end.into(),
    })
}

fn op_from_pb(op: pb::RequestOp) -> Result<core::RequestOp, Status> {
    use pb::request_op::Request;
    Ok(match op.request {
        Some(Request::RequestRange(r)) => core::RequestOp::Range(range_from_pb(r)?),
        Some(Request::RequestPut(p)) => core::RequestOp::Put(put_from_pb(p)),
        Some(Request::RequestDeleteRange(d)) => core::RequestOp::DeleteRange(delete_from_pb(d)),
        Some(Request::RequestTxn(t)) => core::RequestOp::Txn(txn_from_pb(t)?),
        None => return Err(invalid("a txn operation holds no request")),
    })
}

/// A txn request.
pub fn txn_from_pb(t: pb::TxnRequest) -> Result<core::TxnRequest, Status> {
    Ok(core::TxnRequest {
        compare: t
            .compare
            .into_iter()
            .map(compare_from_pb)
            .collect::<Result<_, _>>()?,
        success: t
            .success
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<_, _>>()?,
        failure: t
            .failure
            .into_iter()
            .map(op_from_pb)
            .collect::<Result<_, _>>()?,
    })
}

/// A txn response; each nested response carries its own revision, as the core computed it.
pub fn txn_to_pb(id: &Identity, t: core::TxnResponse) -> pb::TxnResponse {
    use pb::response_op::Response;
    let responses = t
        .responses
        .into_iter()
        .map(|r| pb::ResponseOp {
            response: Some(match r {
                core::ResponseOp::Range(r) => Response::ResponseRange(range_to_pb(id, r)),
                core::ResponseOp::Put(p) => Response::ResponsePut(put_to_pb(id, p)),
                core::ResponseOp::DeleteRange(d) => {
                    Response::ResponseDeleteRange(delete_to_pb(id, d))
                }
                core::ResponseOp::Txn(t) => Response::ResponseTxn(txn_to_pb(id, t)),
            }),
        })
        .collect();
    pb::TxnResponse {
        header: id.header(t.revision),
        succeeded: t.succeeded,
        responses,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_operands_of_another_kind_count_as_zero_like_etcd() {
        let c = pb::Compare {
            result: pb::compare::CompareResult::Equal as i32,
            target: pb::compare::CompareTarget::Mod as i32,
            key: b"k".to_vec(),
            range_end: vec![],
            target_union: Some(pb::compare::TargetUnion::Version(5)),
        };
        assert_eq!(
            compare_from_pb(c).expect("valid").target,
            core::CompareTarget::Mod(0)
        );
    }

    #[test]
    fn an_unknown_sort_order_means_key_order_like_etcd_3_4() {
        let r = pb::RangeRequest {
            key: b"k".to_vec(),
            sort_order: 7,
            sort_target: pb::range_request::SortTarget::Value as i32,
            ..Default::default()
        };
        let r = range_from_pb(r).expect("accepted");
        assert_eq!(
            (r.sort_order, r.sort_target),
            (core::SortOrder::None, core::SortTarget::Key)
        );
    }

    #[test]
    fn an_unknown_sort_target_is_etcds_invalid_sort_option() {
        let r = pb::RangeRequest {
            key: b"k".to_vec(),
            sort_target: 9,
            ..Default::default()
        };
        let s = range_from_pb(r).expect_err("refused");
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "etcdserver: invalid sort option");
    }
}
