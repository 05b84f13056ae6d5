//! Byte-level wire guards: messages encoded by prost must carry exactly the
//! field numbers and wire types etcd uses, and must round-trip.

use prost::Message;
use t4_proto::authpb::{Permission, UserAddOptions, permission};
use t4_proto::etcdserverpb::{
    AlarmMember, AlarmType, AuthRoleGrantPermissionRequest, AuthUserAddRequest, Compare,
    DeleteRangeRequest, DowngradeInfo, HashKvResponse, LeaseGrantRequest, LeaseKeepAliveResponse,
    Member, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, ResponseOp,
    SnapshotResponse, StatusResponse, TxnRequest, TxnResponse, WatchCancelRequest,
    WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse, compare, range_request,
    request_op, response_op, watch_create_request, watch_request,
};
use t4_proto::health::v1::{HealthCheckResponse, health_check_response};
use t4_proto::mvccpb::{Event, KeyValue, event};

fn round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M) {
    let bytes = msg.encode_to_vec();
    let back = M::decode(bytes.as_slice()).expect("decode");
    assert_eq!(&back, msg);
}

#[test]
fn put_request_bytes() {
    let req = PutRequest {
        key: b"foo".to_vec(),
        value: b"bar".to_vec(),
        lease: 7,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    };
    #[rustfmt::skip]
    let want = [
        0x0a, 3, b'f', b'o', b'o', // 1: key
        0x12, 3, b'b', b'a', b'r', // 2: value
        0x18, 7,                   // 3: lease
        0x20, 1,                   // 4: prev_kv
        0x28, 1,                   // 5: ignore_value
        0x30, 1,                   // 6: ignore_lease
    ];
    assert_eq!(req.encode_to_vec(), want);
    round_trip(&req);
}

#[test]
fn range_request_bytes() {
    let req = RangeRequest {
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
        limit: 10,
        revision: 5,
        sort_order: range_request::SortOrder::Descend as i32,
        sort_target: range_request::SortTarget::Mod as i32,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: 4,
    };
    #[rustfmt::skip]
    let want = [
        0x0a, 1, b'a', // 1: key
        0x12, 1, b'b', // 2: range_end
        0x18, 10,      // 3: limit
        0x20, 5,       // 4: revision
        0x28, 2,       // 5: sort_order = DESCEND
        0x30, 3,       // 6: sort_target = MOD
        0x38, 1,       // 7: serializable
        0x40, 1,       // 8: keys_only
        0x48, 1,       // 9: count_only
        0x50, 1,       // 10: min_mod_revision
        0x58, 2,       // 11: max_mod_revision
        0x60, 3,       // 12: min_create_revision
        0x68, 4,       // 13: max_create_revision
    ];
    assert_eq!(req.encode_to_vec(), want);
    round_trip(&req);
}

#[test]
fn negative_revision_is_ten_byte_varint() {
    // int64 (not sint64): -1 encodes as a 10-byte two's-complement varint, as in Go.
    let req = RangeRequest {
        revision: -1,
        ..Default::default()
    };
    let mut want = vec![0x20];
    want.extend([0xff; 9]);
    want.push(0x01);
    assert_eq!(req.encode_to_vec(), want);
}

#[test]
fn delete_range_request_bytes() {
    let req = DeleteRangeRequest {
        key: b"k".to_vec(),
        range_end: vec![0],
        prev_kv: true,
    };
    assert_eq!(req.encode_to_vec(), [0x0a, 1, b'k', 0x12, 1, 0, 0x18, 1]);
}

#[test]
fn watch_create_request_bytes() {
    let create = WatchCreateRequest {
        key: b"k".to_vec(),
        range_end: b"l".to_vec(),
        start_revision: 3,
        progress_notify: true,
        filters: vec![watch_create_request::FilterType::Nodelete as i32],
        prev_kv: true,
        watch_id: 9,
        fragment: true,
    };
    #[rustfmt::skip]
    let inner = [
        0x0a, 1, b'k', // 1: key
        0x12, 1, b'l', // 2: range_end
        0x18, 3,       // 3: start_revision
        0x20, 1,       // 4: progress_notify
        0x2a, 1, 1,    // 5: filters, packed, [NODELETE]
        0x30, 1,       // 6: prev_kv
        0x38, 9,       // 7: watch_id
        0x40, 1,       // 8: fragment
    ];
    assert_eq!(create.encode_to_vec(), inner);

    let req = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(create)),
    };
    let mut want = vec![0x0a, inner.len() as u8];
    want.extend(inner);
    assert_eq!(req.encode_to_vec(), want);
    round_trip(&req);

    // An unpacked `filters` encoding (as an older encoder may send) decodes the same.
    let mut unpacked = inner.to_vec();
    let at = unpacked
        .iter()
        .position(|&b| b == 0x2a)
        .expect("filters tag");
    unpacked.splice(at..at + 3, [0x28, 1]);
    let decoded = WatchCreateRequest::decode(unpacked.as_slice()).expect("decode");
    assert_eq!(
        decoded.filters,
        vec![watch_create_request::FilterType::Nodelete as i32]
    );
}

#[test]
fn watch_cancel_and_progress_bytes() {
    let cancel = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CancelRequest(
            WatchCancelRequest { watch_id: 4 },
        )),
    };
    assert_eq!(cancel.encode_to_vec(), [0x12, 2, 0x08, 4]);

    let progress = WatchRequest {
        request_union: Some(watch_request::RequestUnion::ProgressRequest(
            WatchProgressRequest {},
        )),
    };
    // An empty oneof member is still present on the wire: field 3, length 0.
    assert_eq!(progress.encode_to_vec(), [0x1a, 0]);
    round_trip(&progress);
}

#[test]
fn compare_bytes() {
    let cmp = Compare {
        result: compare::CompareResult::NotEqual as i32,
        target: compare::CompareTarget::Lease as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::Lease(5)),
        range_end: b"z".to_vec(),
    };
    #[rustfmt::skip]
    let want = [
        0x08, 3,          // 1: result = NOT_EQUAL
        0x10, 4,          // 2: target = LEASE
        0x1a, 1, b'k',    // 3: key
        0x40, 5,          // 8: lease (target_union)
        0x82, 0x04, 1, b'z', // 64: range_end, a two-byte tag
    ];
    assert_eq!(cmp.encode_to_vec(), want);
    round_trip(&cmp);

    // A zero in a oneof member is still written, unlike a plain proto3 scalar.
    let cmp = Compare {
        result: compare::CompareResult::Equal as i32,
        target: compare::CompareTarget::Version as i32,
        key: b"k".to_vec(),
        target_union: Some(compare::TargetUnion::Version(0)),
        range_end: vec![],
    };
    assert_eq!(cmp.encode_to_vec(), [0x1a, 1, b'k', 0x20, 0]);

    let members: Vec<(compare::TargetUnion, &[u8])> = vec![
        (compare::TargetUnion::Version(1), &[0x20, 1]),
        (compare::TargetUnion::CreateRevision(1), &[0x28, 1]),
        (compare::TargetUnion::ModRevision(1), &[0x30, 1]),
        (compare::TargetUnion::Value(vec![1]), &[0x3a, 1, 1]),
        (compare::TargetUnion::Lease(1), &[0x40, 1]),
    ];
    for (member, want) in members {
        let cmp = Compare {
            target_union: Some(member.clone()),
            ..Default::default()
        };
        assert_eq!(cmp.encode_to_vec(), want, "{member:?}");
    }
}

#[test]
fn request_op_tags() {
    let ops: Vec<(request_op::Request, u8)> = vec![
        (
            request_op::Request::RequestRange(RangeRequest::default()),
            0x0a,
        ),
        (request_op::Request::RequestPut(PutRequest::default()), 0x12),
        (
            request_op::Request::RequestDeleteRange(DeleteRangeRequest::default()),
            0x1a,
        ),
        (request_op::Request::RequestTxn(TxnRequest::default()), 0x22),
    ];
    for (op, tag) in ops {
        let msg = RequestOp { request: Some(op) };
        assert_eq!(msg.encode_to_vec(), [tag, 0]);
    }
    let resps: Vec<(response_op::Response, u8)> = vec![
        (
            response_op::Response::ResponseRange(RangeResponse::default()),
            0x0a,
        ),
        (response_op::Response::ResponsePut(Default::default()), 0x12),
        (
            response_op::Response::ResponseDeleteRange(Default::default()),
            0x1a,
        ),
        (
            response_op::Response::ResponseTxn(TxnResponse::default()),
            0x22,
        ),
    ];
    for (resp, tag) in resps {
        let msg = ResponseOp {
            response: Some(resp),
        };
        assert_eq!(msg.encode_to_vec(), [tag, 0]);
    }
}

#[test]
fn key_value_and_event_bytes() {
    let kv = KeyValue {
        key: b"k".to_vec().into(),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b"v".to_vec().into(),
        lease: 6,
    };
    #[rustfmt::skip]
    let kv_bytes = [
        0x0a, 1, b'k', // 1: key
        0x10, 2,       // 2: create_revision
        0x18, 3,       // 3: mod_revision
        0x20, 4,       // 4: version
        0x2a, 1, b'v', // 5: value
        0x30, 6,       // 6: lease
    ];
    assert_eq!(kv.encode_to_vec(), kv_bytes);

    let ev = Event {
        r#type: event::EventType::Delete as i32,
        kv: Some(kv.clone()),
        prev_kv: Some(kv),
    };
    let mut want = vec![0x08, 1, 0x12, kv_bytes.len() as u8];
    want.extend(kv_bytes);
    want.extend([0x1a, kv_bytes.len() as u8]);
    want.extend(kv_bytes);
    assert_eq!(ev.encode_to_vec(), want);
    round_trip(&ev);
}

#[test]
fn response_header_and_watch_response_bytes() {
    let header = ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    };
    assert_eq!(header.encode_to_vec(), [0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4]);

    let resp = WatchResponse {
        header: Some(header),
        watch_id: 5,
        created: true,
        canceled: true,
        compact_revision: 6,
        cancel_reason: "x".into(),
        fragment: true,
        events: vec![Event::default()],
    };
    #[rustfmt::skip]
    let want = [
        0x0a, 8, 0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4, // 1: header
        0x10, 5,       // 2: watch_id
        0x18, 1,       // 3: created
        0x20, 1,       // 4: canceled
        0x28, 6,       // 5: compact_revision
        0x32, 1, b'x', // 6: cancel_reason
        0x38, 1,       // 7: fragment
        0x5a, 0,       // 11: events (one empty event)
    ];
    assert_eq!(resp.encode_to_vec(), want);
    round_trip(&resp);
}

#[test]
fn lease_bytes() {
    let grant = LeaseGrantRequest { ttl: 60, id: 0 };
    assert_eq!(grant.encode_to_vec(), [0x08, 60]);
    let grant = LeaseGrantRequest { ttl: 1, id: 2 };
    assert_eq!(grant.encode_to_vec(), [0x08, 1, 0x10, 2]);
    let ka = LeaseKeepAliveResponse {
        header: None,
        id: 3,
        ttl: 4,
    };
    assert_eq!(ka.encode_to_vec(), [0x10, 3, 0x18, 4]);
}

#[test]
fn status_and_maintenance_bytes() {
    let status = StatusResponse {
        errors: vec!["e".into()],
        db_size_in_use: 9,
        is_learner: true,
        storage_version: "3.6.0".into(),
        db_size_quota: 12,
        downgrade_info: Some(DowngradeInfo {
            enabled: true,
            target_version: "3.5.0".into(),
        }),
        ..Default::default()
    };
    let bytes = status.encode_to_vec();
    #[rustfmt::skip]
    let want: Vec<u8> = [
        &[0x42, 1, b'e'][..],               // 8: errors
        &[0x48, 9],                         // 9: dbSizeInUse
        &[0x50, 1],                         // 10: isLearner
        &[0x5a, 5], b"3.6.0",               // 11: storageVersion
        &[0x60, 12],                        // 12: dbSizeQuota
        &[0x6a, 9, 0x08, 1, 0x12, 5], b"3.5.0", // 13: downgradeInfo
    ]
    .concat();
    assert_eq!(bytes, want);
    round_trip(&status);

    let hash = HashKvResponse {
        header: None,
        hash: 1,
        compact_revision: 2,
        hash_revision: 3,
    };
    assert_eq!(hash.encode_to_vec(), [0x10, 1, 0x18, 2, 0x20, 3]);

    let snap = SnapshotResponse {
        header: None,
        remaining_bytes: 1,
        blob: vec![2],
        version: "3.6.0".into(),
    };
    let mut want = vec![0x10, 1, 0x1a, 1, 2, 0x22, 5];
    want.extend(b"3.6.0");
    assert_eq!(snap.encode_to_vec(), want);

    let alarm = AlarmMember {
        member_id: 1,
        alarm: AlarmType::Corrupt as i32,
    };
    assert_eq!(alarm.encode_to_vec(), [0x08, 1, 0x10, 2]);

    let member = Member {
        id: 1,
        name: "n".into(),
        peer_ur_ls: vec!["p".into()],
        client_ur_ls: vec!["c".into()],
        is_learner: true,
    };
    assert_eq!(
        member.encode_to_vec(),
        [
            0x08, 1, 0x12, 1, b'n', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1
        ]
    );
}

#[test]
fn auth_bytes() {
    let perm = Permission {
        perm_type: permission::Type::Readwrite as i32,
        key: b"a".to_vec(),
        range_end: b"b".to_vec(),
    };
    assert_eq!(
        perm.encode_to_vec(),
        [0x08, 2, 0x12, 1, b'a', 0x1a, 1, b'b']
    );

    let grant = AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: Some(perm),
    };
    round_trip(&grant);

    let add = AuthUserAddRequest {
        name: "u".into(),
        password: String::new(),
        options: Some(UserAddOptions { no_password: true }),
        hashed_password: "h".into(),
    };
    assert_eq!(
        add.encode_to_vec(),
        [0x0a, 1, b'u', 0x1a, 2, 0x08, 1, 0x22, 1, b'h']
    );
}

#[test]
fn nested_txn_round_trips() {
    let inner = TxnRequest {
        compare: vec![Compare {
            result: compare::CompareResult::Greater as i32,
            target: compare::CompareTarget::Mod as i32,
            key: b"x".to_vec(),
            target_union: Some(compare::TargetUnion::ModRevision(10)),
            range_end: vec![],
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestPut(PutRequest {
                key: b"x".to_vec(),
                value: b"1".to_vec(),
                ..Default::default()
            })),
        }],
        failure: vec![],
    };
    let outer = TxnRequest {
        compare: vec![Compare {
            target: compare::CompareTarget::Value as i32,
            key: b"y".to_vec(),
            target_union: Some(compare::TargetUnion::Value(b"v".to_vec())),
            ..Default::default()
        }],
        success: vec![RequestOp {
            request: Some(request_op::Request::RequestTxn(inner)),
        }],
        failure: vec![RequestOp {
            request: Some(request_op::Request::RequestDeleteRange(
                DeleteRangeRequest {
                    key: b"y".to_vec(),
                    ..Default::default()
                },
            )),
        }],
    };
    round_trip(&outer);

    let resp = TxnResponse {
        header: Some(ResponseHeader {
            revision: 11,
            ..Default::default()
        }),
        succeeded: true,
        responses: vec![ResponseOp {
            response: Some(response_op::Response::ResponseRange(RangeResponse {
                header: None,
                kvs: vec![KeyValue {
                    key: b"x".to_vec().into(),
                    ..Default::default()
                }],
                more: true,
                count: 2,
            })),
        }],
    };
    round_trip(&resp);
}

#[test]
fn unknown_fields_are_skipped() {
    // A newer peer may send fields we do not know; decoding must not fail.
    let mut bytes = PutRequest {
        key: b"k".to_vec(),
        ..Default::default()
    }
    .encode_to_vec();
    bytes.extend([0xf8, 0x06, 1]); // field 111, varint
    bytes.extend([0x82, 0x07, 2, 9, 9]); // field 112, length-delimited
    let req = PutRequest::decode(bytes.as_slice()).expect("decode");
    assert_eq!(req.key, b"k");
}

#[test]
fn health_bytes() {
    let resp = HealthCheckResponse {
        status: health_check_response::ServingStatus::ServiceUnknown as i32,
    };
    assert_eq!(resp.encode_to_vec(), [0x08, 3]);
}
