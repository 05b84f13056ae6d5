//! Put, DeleteRange and Txn with etcd's semantics: validation, compares, execution.
//!
//! The order of checks follows etcd: static checks of the request (empty keys, flags, too
//! many ops, duplicate keys) first; then every compare of the txn — nested ones included —
//! is evaluated against the state *before* the txn; then the chosen branches are checked
//! against that state (revisions of reads, leases and `ignore_*` of puts); only then does
//! anything execute, so a txn either runs whole or fails without a change.

use bytes::Bytes;

use crate::error::Error;
use crate::kv::{KeyRange, KeyValue, MAX_KEY_LEN};
use crate::lease::LeaseTable;
use crate::mvcc::{ReadView, range, read_revision};
use crate::request::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, DeleteRangeResponse, PutRequest,
    PutResponse, RangeRequest, RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use crate::write::RevisionWriter;

/// etcd's checks of a request's key: not empty, at most [`MAX_KEY_LEN`] bytes.
pub fn check_key(key: &Bytes) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(Error::KeyTooLarge { len: key.len() });
    }
    Ok(())
}

/// etcd's request-level checks of a put.
pub fn check_put_request(r: &PutRequest) -> Result<(), Error> {
    check_key(&r.key)?;
    if r.ignore_value && !r.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if r.ignore_lease && r.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd's request-level checks of a range.
pub fn check_range_request(r: &RangeRequest) -> Result<(), Error> {
    check_key(&r.key)
}

/// etcd's request-level checks of a delete.
pub fn check_delete_request(r: &DeleteRangeRequest) -> Result<(), Error> {
    check_key(&r.key)
}

/// etcd's request-level checks of a txn: op counts, empty keys, then duplicate keys.
pub fn check_txn_request(r: &TxnRequest, max_ops: usize) -> Result<(), Error> {
    check_txn_shape(r, max_ops)?;
    check_intervals(&r.success)?;
    check_intervals(&r.failure)?;
    Ok(())
}

fn check_txn_shape(r: &TxnRequest, max_ops: usize) -> Result<(), Error> {
    let opc = r.compare.len().max(r.success.len()).max(r.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    for c in &r.compare {
        check_key(&c.key)?;
    }
    for op in r.success.iter().chain(&r.failure) {
        match op {
            RequestOp::Range(r) => check_range_request(r)?,
            RequestOp::Put(p) => check_put_request(p)?,
            RequestOp::DeleteRange(d) => check_delete_request(d)?,
            RequestOp::Txn(t) => check_txn_shape(t, max_ops - opc)?,
        }
    }
    Ok(())
}

/// A deleted interval as etcd's duplicate check sees it: `[start, end)`, where an end of
/// `"\0"` (from-key) is an ordinary string and so contains no key at all.
struct DelInterval {
    start: Bytes,
    end: Option<Bytes>,
}

impl DelInterval {
    fn contains(&self, key: &[u8]) -> bool {
        match &self.end {
            None => self.start.as_ref() == key,
            Some(end) => key >= self.start.as_ref() && key < end.as_ref(),
        }
    }
}

/// etcd's `checkIntervals`: no key is put twice, and no key is both put and deleted, across
/// a branch and its nested txns (the two branches of a nested txn may put the same key).
fn check_intervals(ops: &[RequestOp]) -> Result<(Vec<Bytes>, Vec<DelInterval>), Error> {
    let mut dels: Vec<DelInterval> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(DelInterval {
                start: d.key.clone(),
                end: (!d.range_end.is_empty()).then(|| d.range_end.clone()),
            }),
            _ => None,
        })
        .collect();
    let mut puts: Vec<Bytes> = Vec::new();
    let deleted = |dels: &[DelInterval], k: &[u8]| dels.iter().any(|d| d.contains(k));
    for op in ops {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.push(k.clone());
        }
        for k in &puts_else {
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(Error::DuplicateKey);
            }
            if deleted(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            // etcd keeps a set: a key both branches put is listed once, or an enclosing
            // level would see it "twice" and refuse a valid txn.
            if !puts.contains(k) {
                puts.push(k.clone());
            }
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || deleted(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.push(p.key.clone());
    }
    Ok((puts, dels))
}

/// Evaluates one compare against `view` at its current revision.
pub fn eval_compare(view: &impl ReadView, c: &Compare) -> Result<bool, Error> {
    let keys = KeyRange::from_etcd(&c.key, &c.range_end);
    let mut kvs = Vec::new();
    if !keys.is_empty() {
        view.scan(&keys, view.revision(), &mut |kv| {
            kvs.push(kv);
            std::ops::ControlFlow::Continue(())
        })?;
    }
    if kvs.is_empty() {
        if matches!(c.target, CompareTarget::Value(_)) {
            // A missing key has no value to compare, so a value compare on it always fails.
            return Ok(false);
        }
        return Ok(compare_kv(c, &KeyValue::default()));
    }
    Ok(kvs.iter().all(|kv| compare_kv(c, kv)))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
        CompareTarget::Create(r) => kv.create_revision.cmp(r),
        CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

/// etcd's `compareToPath`: the outcome of this txn's compares, then of each nested txn in the
/// branch taken (depth first), all evaluated before anything executes.
fn compare_path(view: &impl ReadView, r: &TxnRequest, path: &mut Vec<bool>) -> Result<(), Error> {
    let mut ok = true;
    for c in &r.compare {
        if !eval_compare(view, c)? {
            ok = false;
            break;
        }
    }
    path.push(ok);
    for op in if ok { &r.success } else { &r.failure } {
        if let RequestOp::Txn(t) = op {
            compare_path(view, t, path)?;
        }
    }
    Ok(())
}

/// Checks of a put that depend on state: the lease exists; `ignore_*` needs the key.
fn check_put_state(view: &impl ReadView, leases: &LeaseTable, p: &PutRequest) -> Result<(), Error> {
    if p.lease != 0 && !leases.contains(p.lease) {
        return Err(Error::LeaseNotFound);
    }
    if (p.ignore_value || p.ignore_lease) && view.get(&p.key, view.revision())?.is_none() {
        return Err(Error::KeyNotFound);
    }
    Ok(())
}

/// etcd's `checkTxn` over the branches the path selects.
fn check_txn_state(
    view: &impl ReadView,
    leases: &LeaseTable,
    r: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<(), Error> {
    let ok = path[*at];
    *at += 1;
    for op in if ok { &r.success } else { &r.failure } {
        match op {
            RequestOp::Range(rr) => {
                read_revision(view, rr.revision)?;
            }
            RequestOp::Put(p) => check_put_state(view, leases, p)?,
            RequestOp::DeleteRange(_) => {}
            RequestOp::Txn(t) => check_txn_state(view, leases, t, path, at)?,
        }
    }
    Ok(())
}

/// Executes a checked put.
pub(crate) fn do_put<V: ReadView>(
    w: &mut RevisionWriter<'_, V>,
    p: &PutRequest,
) -> Result<PutResponse, Error> {
    let prev = w.view().get(&p.key, w.current_revision())?;
    let value = match (&prev, p.ignore_value) {
        (Some(prev), true) => prev.value.clone(),
        _ => p.value.clone(),
    };
    let lease = match (&prev, p.ignore_lease) {
        (Some(prev), true) => prev.lease,
        _ => p.lease,
    };
    let prev_kv = if p.prev_kv { prev.clone() } else { None };
    w.put(p.key.clone(), value, lease, prev);
    Ok(PutResponse {
        revision: w.current_revision(),
        prev_kv,
    })
}

/// Executes a checked delete.
pub(crate) fn do_delete<V: ReadView>(
    w: &mut RevisionWriter<'_, V>,
    d: &DeleteRangeRequest,
) -> Result<DeleteRangeResponse, Error> {
    let keys = KeyRange::from_etcd(&d.key, &d.range_end);
    let deleted = if keys.is_empty() {
        Vec::new()
    } else {
        w.delete_range(&keys)?
    };
    Ok(DeleteRangeResponse {
        revision: w.current_revision(),
        deleted: deleted.len() as i64,
        prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
    })
}

/// Checks a put against state and executes it.
pub(crate) fn put<V: ReadView>(
    w: &mut RevisionWriter<'_, V>,
    p: &PutRequest,
) -> Result<PutResponse, Error> {
    check_put_state(&w.view(), w.leases(), p)?;
    do_put(w, p)
}

/// Runs a txn (already checked with [`check_txn_request`]) to completion.
pub(crate) fn txn<V: ReadView>(
    w: &mut RevisionWriter<'_, V>,
    r: &TxnRequest,
) -> Result<TxnResponse, Error> {
    let mut path = Vec::new();
    compare_path(&w.view(), r, &mut path)?;
    check_txn_state(&w.view(), w.leases(), r, &path, &mut 0)?;
    let mut at = 0;
    let mut resp = execute(w, r, &path, &mut at)?;
    resp.revision = w.current_revision();
    Ok(resp)
}

fn execute<V: ReadView>(
    w: &mut RevisionWriter<'_, V>,
    r: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse, Error> {
    let succeeded = path[*at];
    *at += 1;
    let mut responses = Vec::new();
    for op in if succeeded { &r.success } else { &r.failure } {
        responses.push(match op {
            RequestOp::Range(rr) => ResponseOp::Range(range(&w.view(), rr)?),
            RequestOp::Put(p) => ResponseOp::Put(do_put(w, p)?),
            RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(do_delete(w, d)?),
            // etcd leaves a nested txn's header revision at 0.
            RequestOp::Txn(t) => ResponseOp::Txn(execute(w, t, path, at)?),
        });
    }
    Ok(TxnResponse {
        revision: 0,
        succeeded,
        responses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }
    fn put(k: &'static str) -> RequestOp {
        RequestOp::Put(PutRequest {
            key: b(k),
            ..Default::default()
        })
    }
    fn del(k: &'static str, end: &'static str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: b(k),
            range_end: b(end),
            prev_kv: false,
        })
    }
    fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
        RequestOp::Txn(TxnRequest {
            compare: vec![],
            success,
            failure,
        })
    }
    fn check(success: Vec<RequestOp>) -> Result<(), Error> {
        check_txn_request(
            &TxnRequest {
                compare: vec![],
                success,
                failure: vec![],
            },
            128,
        )
    }

    #[test]
    fn duplicate_puts_are_refused_like_etcd() {
        assert_eq!(check(vec![put("a"), put("a")]), Err(Error::DuplicateKey));
        assert_eq!(check(vec![put("a"), put("b")]), Ok(()));
        assert_eq!(
            check(vec![del("a", "c"), put("b")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(check(vec![del("a", "c"), put("c")]), Ok(()));
        assert_eq!(check(vec![del("a", ""), del("a", "")]), Ok(()));
        // etcd's interval tree treats a from-key end ("\0") as an ordinary, empty interval.
        assert_eq!(check(vec![del("a", "\0"), put("b")]), Ok(()));
        // The two branches of a nested txn may put the same key; the outer level may not.
        assert_eq!(check(vec![nested(vec![put("a")], vec![put("a")])]), Ok(()));
        assert_eq!(
            check(vec![nested(vec![put("a")], vec![]), put("a")]),
            Err(Error::DuplicateKey)
        );
        assert_eq!(
            check(vec![nested(vec![], vec![put("b")]), del("a", "c")]),
            Err(Error::DuplicateKey)
        );
    }

    #[test]
    fn op_counts_are_limited_per_level() {
        let many = (0..129)
            .map(|_| {
                RequestOp::Range(RangeRequest {
                    key: b("a"),
                    ..Default::default()
                })
            })
            .collect();
        assert_eq!(check(many), Err(Error::TooManyOps));
        let compares = vec![
            Compare {
                key: b("a"),
                ..Default::default()
            };
            129
        ];
        assert_eq!(
            check_txn_request(
                &TxnRequest {
                    compare: compares,
                    success: vec![],
                    failure: vec![]
                },
                128
            ),
            Err(Error::TooManyOps)
        );
    }

    #[test]
    fn empty_keys_anywhere_are_refused() {
        assert_eq!(check(vec![put("")]), Err(Error::EmptyKey));
        assert_eq!(
            check(vec![nested(vec![del("", "")], vec![])]),
            Err(Error::EmptyKey)
        );
        let c = Compare {
            key: Bytes::new(),
            ..Default::default()
        };
        assert_eq!(
            check_txn_request(
                &TxnRequest {
                    compare: vec![c],
                    success: vec![],
                    failure: vec![]
                },
                128
            ),
            Err(Error::EmptyKey)
        );
    }

    #[test]
    fn compare_operators_follow_etcd() {
        let kv = KeyValue {
            key: b("k"),
            value: b("m"),
            create_revision: 5,
            mod_revision: 7,
            version: 3,
            lease: 9,
        };
        let c = |result, target| Compare {
            result,
            target,
            key: b("k"),
            range_end: Bytes::new(),
        };
        use CompareResult::*;
        assert!(compare_kv(&c(Equal, CompareTarget::Version(3)), &kv));
        assert!(compare_kv(&c(Greater, CompareTarget::Mod(6)), &kv));
        assert!(compare_kv(&c(Less, CompareTarget::Create(6)), &kv));
        assert!(compare_kv(&c(NotEqual, CompareTarget::Lease(8)), &kv));
        assert!(compare_kv(&c(Greater, CompareTarget::Value(b("a"))), &kv));
        assert!(compare_kv(&c(Less, CompareTarget::Value(b("z"))), &kv));
        assert!(!compare_kv(&c(Equal, CompareTarget::Value(b("m2"))), &kv));
    }
}
