//! Checks the embedded descriptor set against a table of etcd's wire facts:
//! packages, services, methods and their streaming flags, field names,
//! numbers and types, enum values and oneof membership.

use std::collections::BTreeMap;

use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    FileDescriptorSet,
};

struct Index {
    files: Vec<FileDescriptorProto>,
    messages: BTreeMap<String, DescriptorProto>,
    enums: BTreeMap<String, EnumDescriptorProto>,
}

fn index() -> Index {
    let fds = FileDescriptorSet::decode(t4_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let mut messages = BTreeMap::new();
    let mut enums = BTreeMap::new();
    fn walk(
        prefix: &str,
        d: &DescriptorProto,
        messages: &mut BTreeMap<String, DescriptorProto>,
        enums: &mut BTreeMap<String, EnumDescriptorProto>,
    ) {
        let name = format!("{prefix}.{}", d.name());
        for n in &d.nested_type {
            walk(&name, n, messages, enums);
        }
        for e in &d.enum_type {
            enums.insert(format!("{name}.{}", e.name()), e.clone());
        }
        messages.insert(name, d.clone());
    }
    for f in &fds.file {
        let prefix = format!(".{}", f.package());
        for d in &f.message_type {
            walk(&prefix, d, &mut messages, &mut enums);
        }
        for e in &f.enum_type {
            enums.insert(format!("{prefix}.{}", e.name()), e.clone());
        }
    }
    Index {
        files: fds.file,
        messages,
        enums,
    }
}

/// Renders a field's type as in the tables below: `bytes`, `int64`, an
/// enum or message type name, prefixed by `repeated ` when repeated.
fn type_of(f: &FieldDescriptorProto) -> String {
    let base = match f.r#type() {
        Type::Bytes => "bytes".to_string(),
        Type::String => "string".to_string(),
        Type::Bool => "bool".to_string(),
        Type::Int64 => "int64".to_string(),
        Type::Uint64 => "uint64".to_string(),
        Type::Uint32 => "uint32".to_string(),
        Type::Enum | Type::Message => f.type_name().to_string(),
        other => format!("{other:?}"),
    };
    if f.label() == Label::Repeated {
        format!("repeated {base}")
    } else {
        base
    }
}

/// The default JSON name protoc gives a field: underscores dropped, the
/// letter after each one upper-cased.
fn default_json_name(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

type FieldRow = (&'static str, i32, &'static str);

const HEADER: &str = ".etcdserverpb.ResponseHeader";

/// etcd's field facts for the messages t4 depends on most.
fn message_table() -> Vec<(&'static str, Vec<FieldRow>)> {
    vec![
        (
            ".etcdserverpb.ResponseHeader",
            vec![
                ("cluster_id", 1, "uint64"),
                ("member_id", 2, "uint64"),
                ("revision", 3, "int64"),
                ("raft_term", 4, "uint64"),
            ],
        ),
        (
            ".etcdserverpb.RangeRequest",
            vec![
                ("key", 1, "bytes"),
                ("range_end", 2, "bytes"),
                ("limit", 3, "int64"),
                ("revision", 4, "int64"),
                ("sort_order", 5, ".etcdserverpb.RangeRequest.SortOrder"),
                ("sort_target", 6, ".etcdserverpb.RangeRequest.SortTarget"),
                ("serializable", 7, "bool"),
                ("keys_only", 8, "bool"),
                ("count_only", 9, "bool"),
                ("min_mod_revision", 10, "int64"),
                ("max_mod_revision", 11, "int64"),
                ("min_create_revision", 12, "int64"),
                ("max_create_revision", 13, "int64"),
            ],
        ),
        (
            ".etcdserverpb.RangeResponse",
            vec![
                ("header", 1, HEADER),
                ("kvs", 2, "repeated .mvccpb.KeyValue"),
                ("more", 3, "bool"),
                ("count", 4, "int64"),
            ],
        ),
        (
            ".etcdserverpb.PutRequest",
            vec![
                ("key", 1, "bytes"),
                ("value", 2, "bytes"),
                ("lease", 3, "int64"),
                ("prev_kv", 4, "bool"),
                ("ignore_value", 5, "bool"),
                ("ignore_lease", 6, "bool"),
            ],
        ),
        (
            ".etcdserverpb.PutResponse",
            vec![("header", 1, HEADER), ("prev_kv", 2, ".mvccpb.KeyValue")],
        ),
        (
            ".etcdserverpb.DeleteRangeRequest",
            vec![
                ("key", 1, "bytes"),
                ("range_end", 2, "bytes"),
                ("prev_kv", 3, "bool"),
            ],
        ),
        (
            ".etcdserverpb.DeleteRangeResponse",
            vec![
                ("header", 1, HEADER),
                ("deleted", 2, "int64"),
                ("prev_kvs", 3, "repeated .mvccpb.KeyValue"),
            ],
        ),
        (
            ".etcdserverpb.TxnRequest",
            vec![
                ("compare", 1, "repeated .etcdserverpb.Compare"),
                ("success", 2, "repeated .etcdserverpb.RequestOp"),
                ("failure", 3, "repeated .etcdserverpb.RequestOp"),
            ],
        ),
        (
            ".etcdserverpb.TxnResponse",
            vec![
                ("header", 1, HEADER),
                ("succeeded", 2, "bool"),
                ("responses", 3, "repeated .etcdserverpb.ResponseOp"),
            ],
        ),
        (
            ".etcdserverpb.Compare",
            vec![
                ("result", 1, ".etcdserverpb.Compare.CompareResult"),
                ("target", 2, ".etcdserverpb.Compare.CompareTarget"),
                ("key", 3, "bytes"),
                ("version", 4, "int64"),
                ("create_revision", 5, "int64"),
                ("mod_revision", 6, "int64"),
                ("value", 7, "bytes"),
                ("lease", 8, "int64"),
                ("range_end", 64, "bytes"),
            ],
        ),
        (
            ".etcdserverpb.RequestOp",
            vec![
                ("request_range", 1, ".etcdserverpb.RangeRequest"),
                ("request_put", 2, ".etcdserverpb.PutRequest"),
                (
                    "request_delete_range",
                    3,
                    ".etcdserverpb.DeleteRangeRequest",
                ),
                ("request_txn", 4, ".etcdserverpb.TxnRequest"),
            ],
        ),
        (
            ".etcdserverpb.ResponseOp",
            vec![
                ("response_range", 1, ".etcdserverpb.RangeResponse"),
                ("response_put", 2, ".etcdserverpb.PutResponse"),
                (
                    "response_delete_range",
                    3,
                    ".etcdserverpb.DeleteRangeResponse",
                ),
                ("response_txn", 4, ".etcdserverpb.TxnResponse"),
            ],
        ),
        (
            ".etcdserverpb.CompactionRequest",
            vec![("revision", 1, "int64"), ("physical", 2, "bool")],
        ),
        (
            ".etcdserverpb.WatchRequest",
            vec![
                ("create_request", 1, ".etcdserverpb.WatchCreateRequest"),
                ("cancel_request", 2, ".etcdserverpb.WatchCancelRequest"),
                ("progress_request", 3, ".etcdserverpb.WatchProgressRequest"),
            ],
        ),
        (
            ".etcdserverpb.WatchCreateRequest",
            vec![
                ("key", 1, "bytes"),
                ("range_end", 2, "bytes"),
                ("start_revision", 3, "int64"),
                ("progress_notify", 4, "bool"),
                (
                    "filters",
                    5,
                    "repeated .etcdserverpb.WatchCreateRequest.FilterType",
                ),
                ("prev_kv", 6, "bool"),
                ("watch_id", 7, "int64"),
                ("fragment", 8, "bool"),
            ],
        ),
        (
            ".etcdserverpb.WatchCancelRequest",
            vec![("watch_id", 1, "int64")],
        ),
        (".etcdserverpb.WatchProgressRequest", vec![]),
        (
            ".etcdserverpb.WatchResponse",
            vec![
                ("header", 1, HEADER),
                ("watch_id", 2, "int64"),
                ("created", 3, "bool"),
                ("canceled", 4, "bool"),
                ("compact_revision", 5, "int64"),
                ("cancel_reason", 6, "string"),
                ("fragment", 7, "bool"),
                ("events", 11, "repeated .mvccpb.Event"),
            ],
        ),
        (
            ".etcdserverpb.LeaseGrantRequest",
            vec![("TTL", 1, "int64"), ("ID", 2, "int64")],
        ),
        (
            ".etcdserverpb.LeaseGrantResponse",
            vec![
                ("header", 1, HEADER),
                ("ID", 2, "int64"),
                ("TTL", 3, "int64"),
                ("error", 4, "string"),
            ],
        ),
        (
            ".etcdserverpb.LeaseKeepAliveRequest",
            vec![("ID", 1, "int64")],
        ),
        (
            ".etcdserverpb.LeaseKeepAliveResponse",
            vec![
                ("header", 1, HEADER),
                ("ID", 2, "int64"),
                ("TTL", 3, "int64"),
            ],
        ),
        (
            ".etcdserverpb.LeaseTimeToLiveResponse",
            vec![
                ("header", 1, HEADER),
                ("ID", 2, "int64"),
                ("TTL", 3, "int64"),
                ("grantedTTL", 4, "int64"),
                ("keys", 5, "repeated bytes"),
            ],
        ),
        (
            ".etcdserverpb.Member",
            vec![
                ("ID", 1, "uint64"),
                ("name", 2, "string"),
                ("peerURLs", 3, "repeated string"),
                ("clientURLs", 4, "repeated string"),
                ("isLearner", 5, "bool"),
            ],
        ),
        (
            ".etcdserverpb.StatusResponse",
            vec![
                ("header", 1, HEADER),
                ("version", 2, "string"),
                ("dbSize", 3, "int64"),
                ("leader", 4, "uint64"),
                ("raftIndex", 5, "uint64"),
                ("raftTerm", 6, "uint64"),
                ("raftAppliedIndex", 7, "uint64"),
                ("errors", 8, "repeated string"),
                ("dbSizeInUse", 9, "int64"),
                ("isLearner", 10, "bool"),
                ("storageVersion", 11, "string"),
                ("dbSizeQuota", 12, "int64"),
                ("downgradeInfo", 13, ".etcdserverpb.DowngradeInfo"),
            ],
        ),
        (
            ".etcdserverpb.DowngradeInfo",
            vec![("enabled", 1, "bool"), ("targetVersion", 2, "string")],
        ),
        (
            ".etcdserverpb.HashKVResponse",
            vec![
                ("header", 1, HEADER),
                ("hash", 2, "uint32"),
                ("compact_revision", 3, "int64"),
                ("hash_revision", 4, "int64"),
            ],
        ),
        (
            ".etcdserverpb.SnapshotResponse",
            vec![
                ("header", 1, HEADER),
                ("remaining_bytes", 2, "uint64"),
                ("blob", 3, "bytes"),
                ("version", 4, "string"),
            ],
        ),
        (
            ".etcdserverpb.AlarmRequest",
            vec![
                ("action", 1, ".etcdserverpb.AlarmRequest.AlarmAction"),
                ("memberID", 2, "uint64"),
                ("alarm", 3, ".etcdserverpb.AlarmType"),
            ],
        ),
        (
            ".etcdserverpb.AlarmMember",
            vec![
                ("memberID", 1, "uint64"),
                ("alarm", 2, ".etcdserverpb.AlarmType"),
            ],
        ),
        (
            ".mvccpb.KeyValue",
            vec![
                ("key", 1, "bytes"),
                ("create_revision", 2, "int64"),
                ("mod_revision", 3, "int64"),
                ("version", 4, "int64"),
                ("value", 5, "bytes"),
                ("lease", 6, "int64"),
            ],
        ),
        (
            ".mvccpb.Event",
            vec![
                ("type", 1, ".mvccpb.Event.EventType"),
                ("kv", 2, ".mvccpb.KeyValue"),
                ("prev_kv", 3, ".mvccpb.KeyValue"),
            ],
        ),
        (
            ".authpb.Permission",
            vec![
                ("permType", 1, ".authpb.Permission.Type"),
                ("key", 2, "bytes"),
                ("range_end", 3, "bytes"),
            ],
        ),
        (
            ".authpb.User",
            vec![
                ("name", 1, "bytes"),
                ("password", 2, "bytes"),
                ("roles", 3, "repeated string"),
                ("options", 4, ".authpb.UserAddOptions"),
            ],
        ),
        (
            ".authpb.Role",
            vec![
                ("name", 1, "bytes"),
                ("keyPermission", 2, "repeated .authpb.Permission"),
            ],
        ),
        (
            ".grpc.health.v1.HealthCheckResponse",
            vec![(
                "status",
                1,
                ".grpc.health.v1.HealthCheckResponse.ServingStatus",
            )],
        ),
        (
            ".v3lockpb.LockRequest",
            vec![("name", 1, "bytes"), ("lease", 2, "int64")],
        ),
        (
            ".v3lockpb.LockResponse",
            vec![("header", 1, HEADER), ("key", 2, "bytes")],
        ),
        (".v3lockpb.UnlockRequest", vec![("key", 1, "bytes")]),
        (".v3lockpb.UnlockResponse", vec![("header", 1, HEADER)]),
        (
            ".v3electionpb.CampaignRequest",
            vec![
                ("name", 1, "bytes"),
                ("lease", 2, "int64"),
                ("value", 3, "bytes"),
            ],
        ),
        (
            ".v3electionpb.CampaignResponse",
            vec![
                ("header", 1, HEADER),
                ("leader", 2, ".v3electionpb.LeaderKey"),
            ],
        ),
        (
            ".v3electionpb.LeaderKey",
            vec![
                ("name", 1, "bytes"),
                ("key", 2, "bytes"),
                ("rev", 3, "int64"),
                ("lease", 4, "int64"),
            ],
        ),
        (".v3electionpb.LeaderRequest", vec![("name", 1, "bytes")]),
        (
            ".v3electionpb.LeaderResponse",
            vec![("header", 1, HEADER), ("kv", 2, ".mvccpb.KeyValue")],
        ),
        (
            ".v3electionpb.ResignRequest",
            vec![("leader", 1, ".v3electionpb.LeaderKey")],
        ),
        (".v3electionpb.ResignResponse", vec![("header", 1, HEADER)]),
        (
            ".v3electionpb.ProclaimRequest",
            vec![
                ("leader", 1, ".v3electionpb.LeaderKey"),
                ("value", 2, "bytes"),
            ],
        ),
        (
            ".v3electionpb.ProclaimResponse",
            vec![("header", 1, HEADER)],
        ),
    ]
}

#[test]
fn message_fields_match_etcd() {
    let idx = index();
    for (name, want) in message_table() {
        let msg = idx
            .messages
            .get(name)
            .unwrap_or_else(|| panic!("missing message {name}"));
        let mut got: Vec<(String, i32, String)> = msg
            .field
            .iter()
            .map(|f| (f.name().to_string(), f.number(), type_of(f)))
            .collect();
        got.sort_by_key(|row| row.1);
        let want: Vec<(String, i32, String)> = want
            .iter()
            .map(|(n, num, t)| (n.to_string(), *num, t.to_string()))
            .collect();
        assert_eq!(got, want, "fields of {name}");
    }
}

#[test]
fn oneofs_match_etcd() {
    let idx = index();
    let table: &[(&str, &str, &[&str])] = &[
        (
            ".etcdserverpb.Compare",
            "target_union",
            &[
                "version",
                "create_revision",
                "mod_revision",
                "value",
                "lease",
            ],
        ),
        (
            ".etcdserverpb.RequestOp",
            "request",
            &[
                "request_range",
                "request_put",
                "request_delete_range",
                "request_txn",
            ],
        ),
        (
            ".etcdserverpb.ResponseOp",
            "response",
            &[
                "response_range",
                "response_put",
                "response_delete_range",
                "response_txn",
            ],
        ),
        (
            ".etcdserverpb.WatchRequest",
            "request_union",
            &["create_request", "cancel_request", "progress_request"],
        ),
    ];
    for (msg_name, oneof, members) in table {
        let msg = &idx.messages[*msg_name];
        assert_eq!(msg.oneof_decl.len(), 1, "{msg_name} has one oneof");
        assert_eq!(msg.oneof_decl[0].name(), *oneof);
        let got: Vec<&str> = msg
            .field
            .iter()
            .filter(|f| f.oneof_index == Some(0))
            .map(|f| f.name())
            .collect();
        assert_eq!(&got, members, "{msg_name}.{oneof}");
        for f in &msg.field {
            assert_ne!(
                f.proto3_optional,
                Some(true),
                "{msg_name}.{} is not optional",
                f.name()
            );
        }
    }
    // Compare's non-oneof fields stay outside the oneof.
    let cmp = &idx.messages[".etcdserverpb.Compare"];
    for f in &cmp.field {
        let inside = matches!(f.number(), 4..=8);
        assert_eq!(f.oneof_index.is_some(), inside, "Compare.{}", f.name());
    }
}

#[test]
fn enums_match_etcd() {
    let idx = index();
    let table: &[(&str, &[(&str, i32)])] = &[
        (
            ".etcdserverpb.RangeRequest.SortOrder",
            &[("NONE", 0), ("ASCEND", 1), ("DESCEND", 2)],
        ),
        (
            ".etcdserverpb.RangeRequest.SortTarget",
            &[
                ("KEY", 0),
                ("VERSION", 1),
                ("CREATE", 2),
                ("MOD", 3),
                ("VALUE", 4),
            ],
        ),
        (
            ".etcdserverpb.Compare.CompareResult",
            &[("EQUAL", 0), ("GREATER", 1), ("LESS", 2), ("NOT_EQUAL", 3)],
        ),
        (
            ".etcdserverpb.Compare.CompareTarget",
            &[
                ("VERSION", 0),
                ("CREATE", 1),
                ("MOD", 2),
                ("VALUE", 3),
                ("LEASE", 4),
            ],
        ),
        (
            ".etcdserverpb.WatchCreateRequest.FilterType",
            &[("NOPUT", 0), ("NODELETE", 1)],
        ),
        (
            ".etcdserverpb.AlarmType",
            &[("NONE", 0), ("NOSPACE", 1), ("CORRUPT", 2)],
        ),
        (
            ".etcdserverpb.AlarmRequest.AlarmAction",
            &[("GET", 0), ("ACTIVATE", 1), ("DEACTIVATE", 2)],
        ),
        (
            ".etcdserverpb.DowngradeRequest.DowngradeAction",
            &[("VALIDATE", 0), ("ENABLE", 1), ("CANCEL", 2)],
        ),
        (".mvccpb.Event.EventType", &[("PUT", 0), ("DELETE", 1)]),
        (
            ".authpb.Permission.Type",
            &[("READ", 0), ("WRITE", 1), ("READWRITE", 2)],
        ),
        (
            ".grpc.health.v1.HealthCheckResponse.ServingStatus",
            &[
                ("UNKNOWN", 0),
                ("SERVING", 1),
                ("NOT_SERVING", 2),
                ("SERVICE_UNKNOWN", 3),
            ],
        ),
    ];
    for (name, want) in table {
        let e = idx
            .enums
            .get(*name)
            .unwrap_or_else(|| panic!("missing enum {name}"));
        let got: Vec<(&str, i32)> = e.value.iter().map(|v| (v.name(), v.number())).collect();
        assert_eq!(&got, want, "values of {name}");
    }
}

type MethodRow = (&'static str, &'static str, &'static str, bool, bool);

fn service_table() -> Vec<(&'static str, Vec<MethodRow>)> {
    vec![
        (
            "etcdserverpb.KV",
            vec![
                ("Range", "RangeRequest", "RangeResponse", false, false),
                ("Put", "PutRequest", "PutResponse", false, false),
                (
                    "DeleteRange",
                    "DeleteRangeRequest",
                    "DeleteRangeResponse",
                    false,
                    false,
                ),
                ("Txn", "TxnRequest", "TxnResponse", false, false),
                (
                    "Compact",
                    "CompactionRequest",
                    "CompactionResponse",
                    false,
                    false,
                ),
            ],
        ),
        (
            "etcdserverpb.Watch",
            vec![("Watch", "WatchRequest", "WatchResponse", true, true)],
        ),
        (
            "etcdserverpb.Lease",
            vec![
                (
                    "LeaseGrant",
                    "LeaseGrantRequest",
                    "LeaseGrantResponse",
                    false,
                    false,
                ),
                (
                    "LeaseRevoke",
                    "LeaseRevokeRequest",
                    "LeaseRevokeResponse",
                    false,
                    false,
                ),
                (
                    "LeaseKeepAlive",
                    "LeaseKeepAliveRequest",
                    "LeaseKeepAliveResponse",
                    true,
                    true,
                ),
                (
                    "LeaseTimeToLive",
                    "LeaseTimeToLiveRequest",
                    "LeaseTimeToLiveResponse",
                    false,
                    false,
                ),
                (
                    "LeaseLeases",
                    "LeaseLeasesRequest",
                    "LeaseLeasesResponse",
                    false,
                    false,
                ),
            ],
        ),
        (
            "etcdserverpb.Cluster",
            vec![
                (
                    "MemberAdd",
                    "MemberAddRequest",
                    "MemberAddResponse",
                    false,
                    false,
                ),
                (
                    "MemberRemove",
                    "MemberRemoveRequest",
                    "MemberRemoveResponse",
                    false,
                    false,
                ),
                (
                    "MemberUpdate",
                    "MemberUpdateRequest",
                    "MemberUpdateResponse",
                    false,
                    false,
                ),
                (
                    "MemberList",
                    "MemberListRequest",
                    "MemberListResponse",
                    false,
                    false,
                ),
                (
                    "MemberPromote",
                    "MemberPromoteRequest",
                    "MemberPromoteResponse",
                    false,
                    false,
                ),
            ],
        ),
        (
            "etcdserverpb.Maintenance",
            vec![
                ("Alarm", "AlarmRequest", "AlarmResponse", false, false),
                ("Status", "StatusRequest", "StatusResponse", false, false),
                (
                    "Defragment",
                    "DefragmentRequest",
                    "DefragmentResponse",
                    false,
                    false,
                ),
                ("Hash", "HashRequest", "HashResponse", false, false),
                ("HashKV", "HashKVRequest", "HashKVResponse", false, false),
                (
                    "Snapshot",
                    "SnapshotRequest",
                    "SnapshotResponse",
                    false,
                    true,
                ),
                (
                    "MoveLeader",
                    "MoveLeaderRequest",
                    "MoveLeaderResponse",
                    false,
                    false,
                ),
                (
                    "Downgrade",
                    "DowngradeRequest",
                    "DowngradeResponse",
                    false,
                    false,
                ),
            ],
        ),
        (
            "etcdserverpb.Auth",
            vec![
                (
                    "AuthEnable",
                    "AuthEnableRequest",
                    "AuthEnableResponse",
                    false,
                    false,
                ),
                (
                    "AuthDisable",
                    "AuthDisableRequest",
                    "AuthDisableResponse",
                    false,
                    false,
                ),
                (
                    "AuthStatus",
                    "AuthStatusRequest",
                    "AuthStatusResponse",
                    false,
                    false,
                ),
                (
                    "Authenticate",
                    "AuthenticateRequest",
                    "AuthenticateResponse",
                    false,
                    false,
                ),
                (
                    "UserAdd",
                    "AuthUserAddRequest",
                    "AuthUserAddResponse",
                    false,
                    false,
                ),
                (
                    "UserGet",
                    "AuthUserGetRequest",
                    "AuthUserGetResponse",
                    false,
                    false,
                ),
                (
                    "UserList",
                    "AuthUserListRequest",
                    "AuthUserListResponse",
                    false,
                    false,
                ),
                (
                    "UserDelete",
                    "AuthUserDeleteRequest",
                    "AuthUserDeleteResponse",
                    false,
                    false,
                ),
                (
                    "UserChangePassword",
                    "AuthUserChangePasswordRequest",
                    "AuthUserChangePasswordResponse",
                    false,
                    false,
                ),
                (
                    "UserGrantRole",
                    "AuthUserGrantRoleRequest",
                    "AuthUserGrantRoleResponse",
                    false,
                    false,
                ),
                (
                    "UserRevokeRole",
                    "AuthUserRevokeRoleRequest",
                    "AuthUserRevokeRoleResponse",
                    false,
                    false,
                ),
                (
                    "RoleAdd",
                    "AuthRoleAddRequest",
                    "AuthRoleAddResponse",
                    false,
                    false,
                ),
                (
                    "RoleGet",
                    "AuthRoleGetRequest",
                    "AuthRoleGetResponse",
                    false,
                    false,
                ),
                (
                    "RoleList",
                    "AuthRoleListRequest",
                    "AuthRoleListResponse",
                    false,
                    false,
                ),
                (
                    "RoleDelete",
                    "AuthRoleDeleteRequest",
                    "AuthRoleDeleteResponse",
                    false,
                    false,
                ),
                (
                    "RoleGrantPermission",
                    "AuthRoleGrantPermissionRequest",
                    "AuthRoleGrantPermissionResponse",
                    false,
                    false,
                ),
                (
                    "RoleRevokePermission",
                    "AuthRoleRevokePermissionRequest",
                    "AuthRoleRevokePermissionResponse",
                    false,
                    false,
                ),
            ],
        ),
        (
            "v3lockpb.Lock",
            vec![
                ("Lock", "LockRequest", "LockResponse", false, false),
                ("Unlock", "UnlockRequest", "UnlockResponse", false, false),
            ],
        ),
        (
            "v3electionpb.Election",
            vec![
                (
                    "Campaign",
                    "CampaignRequest",
                    "CampaignResponse",
                    false,
                    false,
                ),
                (
                    "Proclaim",
                    "ProclaimRequest",
                    "ProclaimResponse",
                    false,
                    false,
                ),
                ("Leader", "LeaderRequest", "LeaderResponse", false, false),
                ("Observe", "LeaderRequest", "LeaderResponse", false, true),
                ("Resign", "ResignRequest", "ResignResponse", false, false),
            ],
        ),
        (
            "grpc.health.v1.Health",
            vec![
                (
                    "Check",
                    "HealthCheckRequest",
                    "HealthCheckResponse",
                    false,
                    false,
                ),
                (
                    "Watch",
                    "HealthCheckRequest",
                    "HealthCheckResponse",
                    false,
                    true,
                ),
            ],
        ),
    ]
}

#[test]
fn services_match_etcd() {
    let idx = index();
    let mut services = BTreeMap::new();
    for f in &idx.files {
        for s in &f.service {
            services.insert(
                format!("{}.{}", f.package(), s.name()),
                (f.package(), s.clone()),
            );
        }
    }
    let table = service_table();
    let want_names: Vec<&str> = {
        let mut v: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
        v.sort_unstable();
        v
    };
    let got_names: Vec<&str> = services.keys().map(String::as_str).collect();
    assert_eq!(got_names, want_names, "exactly these services");

    for (name, methods) in table {
        let (package, svc) = &services[name];
        let got: Vec<(String, String, String, bool, bool)> = svc
            .method
            .iter()
            .map(|m| {
                (
                    m.name().to_string(),
                    m.input_type().to_string(),
                    m.output_type().to_string(),
                    m.client_streaming(),
                    m.server_streaming(),
                )
            })
            .collect();
        let want: Vec<(String, String, String, bool, bool)> = methods
            .iter()
            .map(|(m, i, o, cs, ss)| {
                (
                    m.to_string(),
                    format!(".{package}.{i}"),
                    format!(".{package}.{o}"),
                    *cs,
                    *ss,
                )
            })
            .collect();
        assert_eq!(got, want, "methods of {name}");
    }
}

#[test]
fn files_are_plain_proto3_with_only_local_imports() {
    let idx = index();
    let got: BTreeMap<&str, (&str, Vec<&str>)> = idx
        .files
        .iter()
        .map(|f| {
            (
                f.name(),
                (
                    f.package(),
                    f.dependency.iter().map(String::as_str).collect(),
                ),
            )
        })
        .collect();
    let want: BTreeMap<&str, (&str, Vec<&str>)> = [
        ("mvccpb/kv.proto", ("mvccpb", vec![])),
        ("authpb/auth.proto", ("authpb", vec![])),
        (
            "etcdserverpb/rpc.proto",
            ("etcdserverpb", vec!["mvccpb/kv.proto", "authpb/auth.proto"]),
        ),
        ("grpc/health/v1/health.proto", ("grpc.health.v1", vec![])),
        (
            "v3lockpb/v3lock.proto",
            ("v3lockpb", vec!["etcdserverpb/rpc.proto"]),
        ),
        (
            "v3electionpb/v3election.proto",
            (
                "v3electionpb",
                vec!["etcdserverpb/rpc.proto", "mvccpb/kv.proto"],
            ),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
    for f in &idx.files {
        assert_eq!(f.syntax(), "proto3", "{}", f.name());
    }
}

#[test]
fn json_names_are_protoc_defaults() {
    let idx = index();
    let mut checked = 0;
    for (name, msg) in &idx.messages {
        for f in &msg.field {
            assert_eq!(
                f.json_name(),
                default_json_name(f.name()),
                "{name}.{}",
                f.name()
            );
            checked += 1;
        }
    }
    assert!(checked > 200, "checked {checked} fields");
    // Spot checks of what etcd's gateway JSON uses.
    let status = &idx.messages[".etcdserverpb.StatusResponse"];
    let json: Vec<&str> = status.field.iter().map(|f| f.json_name()).collect();
    assert!(json.contains(&"dbSizeInUse") && json.contains(&"raftAppliedIndex"));
    let put = &idx.messages[".etcdserverpb.PutRequest"];
    assert!(put.field.iter().any(|f| f.json_name() == "prevKv"));
}

#[test]
fn every_message_has_unique_positive_field_numbers() {
    let idx = index();
    for (name, msg) in &idx.messages {
        let mut nums: Vec<i32> = msg.field.iter().map(|f| f.number()).collect();
        nums.sort_unstable();
        let len = nums.len();
        nums.dedup();
        assert_eq!(nums.len(), len, "duplicate field number in {name}");
        assert!(nums.iter().all(|&n| n > 0), "{name}");
    }
    // Every message of etcd's rpc.proto (3.6) is present.
    let etcdserverpb = idx
        .messages
        .keys()
        .filter(|k| k.starts_with(".etcdserverpb."))
        .count();
    assert_eq!(etcdserverpb, 97);
}
