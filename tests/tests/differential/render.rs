//! Renders requests and responses as short, readable, normalised text.
//!
//! What must differ between two servers is left out: a header shows only its revision
//! (cluster id, member id and raft term are per-deployment), lease TTLs that tick down are
//! shown as "about the granted TTL", and lists that etcd returns in map order are sorted.

use t4_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use t4_proto::etcdserverpb::request_op::Request;
use t4_proto::etcdserverpb::response_op::Response;
use t4_proto::etcdserverpb::watch_create_request::FilterType;
use t4_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseHeader, ResponseOp, TxnRequest, TxnResponse,
    WatchCreateRequest, WatchResponse,
};
use t4_proto::mvccpb::event::EventType;
use t4_proto::mvccpb::{Event, KeyValue};

/// Bytes as a quoted string, escaping what is not printable ASCII; long values are
/// abbreviated to their length and first bytes.
pub fn bytes(b: &[u8]) -> String {
    const SHOWN: usize = 24;
    let escaped: String = b
        .iter()
        .take(SHOWN)
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    if b.len() > SHOWN {
        format!("\"{escaped}\"...({} bytes)", b.len())
    } else {
        format!("\"{escaped}\"")
    }
}

/// A gRPC error: code and message, which clients match on.
pub fn status(s: &tonic::Status) -> String {
    format!("ERROR {:?} {:?}", s.code(), s.message())
}

/// The revision of a header; the rest is per-deployment.
pub fn header(h: &Option<ResponseHeader>) -> String {
    match h {
        Some(h) => format!("rev={}", h.revision),
        None => "no-header".into(),
    }
}

/// A key-value pair.
pub fn kv(kv: &KeyValue) -> String {
    let mut s = format!(
        "{}={} c{} m{} v{}",
        bytes(&kv.key),
        bytes(&kv.value),
        kv.create_revision,
        kv.mod_revision,
        kv.version
    );
    if kv.lease != 0 {
        s += &format!(" lease={}", kv.lease);
    }
    s
}

fn kvs(kvs: &[KeyValue]) -> String {
    let items: Vec<String> = kvs.iter().map(kv).collect();
    format!("[{}]", items.join(", "))
}

fn flag(on: bool, name: &str) -> String {
    if on {
        format!(" {name}")
    } else {
        String::new()
    }
}

fn nonzero(v: i64, name: &str) -> String {
    if v != 0 {
        format!(" {name}={v}")
    } else {
        String::new()
    }
}

fn range_end(end: &[u8]) -> String {
    if end.is_empty() {
        String::new()
    } else {
        format!("..{}", bytes(end))
    }
}

/// A range request.
pub fn range_req(r: &RangeRequest) -> String {
    let mut s = format!("range {}{}", bytes(&r.key), range_end(&r.range_end));
    s += &nonzero(r.limit, "limit");
    s += &nonzero(r.revision, "rev");
    if r.sort_order != 0 || r.sort_target != 0 {
        s += &format!(" sort={}/{}", r.sort_target, r.sort_order);
    }
    s += &flag(r.serializable, "serializable");
    s += &flag(r.keys_only, "keys_only");
    s += &flag(r.count_only, "count_only");
    s += &nonzero(r.min_mod_revision, "min_mod");
    s += &nonzero(r.max_mod_revision, "max_mod");
    s += &nonzero(r.min_create_revision, "min_create");
    s += &nonzero(r.max_create_revision, "max_create");
    s
}

/// A range response.
pub fn range_resp(r: &RangeResponse) -> String {
    format!(
        "{} count={}{} {}",
        header(&r.header),
        r.count,
        flag(r.more, "more"),
        kvs(&r.kvs)
    )
}

/// A put request.
pub fn put_req(r: &PutRequest) -> String {
    let mut s = format!("put {}={}", bytes(&r.key), bytes(&r.value));
    s += &nonzero(r.lease, "lease");
    s += &flag(r.prev_kv, "prev_kv");
    s += &flag(r.ignore_value, "ignore_value");
    s += &flag(r.ignore_lease, "ignore_lease");
    s
}

/// A put response.
pub fn put_resp(r: &PutResponse) -> String {
    let mut s = header(&r.header);
    if let Some(prev) = &r.prev_kv {
        s += &format!(" prev={}", kv(prev));
    }
    s
}

/// A delete-range request.
pub fn delete_req(r: &DeleteRangeRequest) -> String {
    format!(
        "delete {}{}{}",
        bytes(&r.key),
        range_end(&r.range_end),
        flag(r.prev_kv, "prev_kv")
    )
}

/// A delete-range response.
pub fn delete_resp(r: &DeleteRangeResponse) -> String {
    let mut s = format!("{} deleted={}", header(&r.header), r.deleted);
    if !r.prev_kvs.is_empty() {
        s += &format!(" prev={}", kvs(&r.prev_kvs));
    }
    s
}

fn compare(c: &Compare) -> String {
    let target = CompareTarget::try_from(c.target)
        .map(|t| t.as_str_name().to_lowercase())
        .unwrap_or_else(|_| format!("target{}", c.target));
    let result = match CompareResult::try_from(c.result) {
        Ok(CompareResult::Equal) => "==".to_string(),
        Ok(CompareResult::NotEqual) => "!=".to_string(),
        Ok(CompareResult::Greater) => ">".to_string(),
        Ok(CompareResult::Less) => "<".to_string(),
        Err(_) => format!("result{}", c.result),
    };
    let value = match &c.target_union {
        Some(TargetUnion::Version(v))
        | Some(TargetUnion::CreateRevision(v))
        | Some(TargetUnion::ModRevision(v))
        | Some(TargetUnion::Lease(v)) => v.to_string(),
        Some(TargetUnion::Value(v)) => bytes(v),
        None => "unset".into(),
    };
    format!(
        "{target}({}{}) {result} {value}",
        bytes(&c.key),
        range_end(&c.range_end)
    )
}

fn request_op(op: &RequestOp) -> String {
    match &op.request {
        Some(Request::RequestRange(r)) => range_req(r),
        Some(Request::RequestPut(r)) => put_req(r),
        Some(Request::RequestDeleteRange(r)) => delete_req(r),
        Some(Request::RequestTxn(r)) => format!("{{{}}}", txn_req(r)),
        None => "empty-op".into(),
    }
}

fn response_op(op: &ResponseOp) -> String {
    match &op.response {
        Some(Response::ResponseRange(r)) => format!("range: {}", range_resp(r)),
        Some(Response::ResponsePut(r)) => format!("put: {}", put_resp(r)),
        Some(Response::ResponseDeleteRange(r)) => format!("delete: {}", delete_resp(r)),
        Some(Response::ResponseTxn(r)) => format!("txn: {{{}}}", txn_resp(r)),
        None => "empty-response".into(),
    }
}

fn list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    let items: Vec<String> = items.iter().map(f).collect();
    format!("[{}]", items.join("; "))
}

/// A txn request. Long lists are summarised.
pub fn txn_req(r: &TxnRequest) -> String {
    let summarise = |n: usize, f: &dyn Fn() -> String| {
        if n > 8 { format!("<{n} items>") } else { f() }
    };
    format!(
        "txn if {} then {} else {}",
        summarise(r.compare.len(), &|| list(&r.compare, compare)),
        summarise(r.success.len(), &|| list(&r.success, request_op)),
        summarise(r.failure.len(), &|| list(&r.failure, request_op)),
    )
}

/// A txn response.
pub fn txn_resp(r: &TxnResponse) -> String {
    format!(
        "{} {} {}",
        header(&r.header),
        if r.succeeded { "succeeded" } else { "failed" },
        list(&r.responses, response_op)
    )
}

/// A watch create request.
pub fn watch_create(r: &WatchCreateRequest) -> String {
    let mut s = format!("watch {}{}", bytes(&r.key), range_end(&r.range_end));
    s += &nonzero(r.start_revision, "start");
    s += &flag(r.prev_kv, "prev_kv");
    s += &flag(r.progress_notify, "progress_notify");
    s += &nonzero(r.watch_id, "watch_id");
    for f in &r.filters {
        match FilterType::try_from(*f) {
            Ok(f) => s += &format!(" {}", f.as_str_name()),
            Err(_) => s += &format!(" filter{f}"),
        }
    }
    s
}

/// A watch event.
pub fn event(e: &Event) -> String {
    let kind = match EventType::try_from(e.r#type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("type{}", e.r#type),
    };
    let mut s = format!("{kind} {}", e.kv.as_ref().map_or("no-kv".into(), kv));
    if let Some(prev) = &e.prev_kv {
        s += &format!(" prev={}", kv(prev));
    }
    s
}

/// A watch response other than its events (which are compared as one flat list, since how
/// they are batched into responses may differ).
pub fn watch_resp(r: &WatchResponse) -> String {
    let mut s = format!("{} watch_id={}", header(&r.header), r.watch_id);
    s += &flag(r.created, "created");
    s += &flag(r.canceled, "canceled");
    s += &nonzero(r.compact_revision, "compact_revision");
    if !r.cancel_reason.is_empty() {
        s += &format!(" reason={:?}", r.cancel_reason);
    }
    s += &flag(r.fragment, "fragment");
    if !r.events.is_empty() {
        s += &format!(" events={}", list(&r.events, event));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_quoted_escaped_and_abbreviated() {
        assert_eq!(bytes(b"a\xff\n"), "\"a\\xff\\n\"");
        assert_eq!(
            bytes(&[b'x'; 30]),
            format!("\"{}\"...(30 bytes)", "x".repeat(24))
        );
    }
}
