//! A model of etcd's KV semantics, written independently of t4-core.
//!
//! Given a state and a request, [`execute`] says what etcd answers and which log ops the
//! request must produce; [`range`] does the same for reads. The linearizability checker walks
//! the committed log with it: every step of the log must be what its request does at that
//! point, and every answer a client saw must be what the model answers at some point the
//! client could have observed.
//!
//! It shares only *data types* with t4-core (requests, responses, log ops), never logic: a bug
//! in t4's txn evaluation or range code must show up as a disagreement here. It covers what
//! the workload generates: put (with lease, prev_kv), range (revision, limit, count-only,
//! keys-only, revision filters, sort), delete range, txn (every compare target and relation,
//! nested txns, range/put/delete in both branches), compaction, lease grant / revoke /
//! keepalive / time-to-live / list, lease expiry, every auth change (etcd 3.4's rules, in
//! [`auth_change`]), and writes refused because the auth state changed after their caller
//! was checked (`AuthOldRevision`). Request validation that only rejects
//! malformed requests (duplicate keys in a txn, oversize requests) is not modelled because the
//! workload never sends such requests.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use t4_core::auth::{AuthChange, AuthState, ROOT, Role, User};
use t4_core::request::{
    AuthResponse, CompactResponse, Compare, CompareResult, CompareTarget, DeleteRangeResponse,
    LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseRevokeResponse,
    LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp,
    ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use t4_core::wal::{Change, LogOp};
use t4_core::{Error, KeyRange, KeyValue, LeaseId, Request, Response, Revision};

use crate::timeline::Timeline;

/// etcd's largest lease TTL.
const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// A store state the model can read.
pub trait KvState {
    /// The current revision.
    fn revision(&self) -> Revision;
    /// The compact revision.
    fn compact_revision(&self) -> Revision;
    /// `key` at revision `rev` (at most the current revision).
    fn get(&self, key: &[u8], rev: Revision) -> Option<KeyValue>;
    /// The keys of `range` that exist at `rev`, in key order.
    fn scan(&self, range: &KeyRange, rev: Revision) -> Vec<KeyValue>;
    /// The TTL of lease `id`, if it exists.
    fn lease_ttl(&self, id: LeaseId) -> Option<i64>;
    /// Every lease, ascending.
    fn lease_ids(&self) -> Vec<LeaseId>;
    /// The keys attached to lease `id`, in key order.
    fn lease_keys(&self, id: LeaseId) -> Vec<Bytes>;
    /// The auth state.
    fn auth(&self) -> Arc<AuthState>;
}

/// A [`Timeline`] as of one step.
#[derive(Clone, Copy, Debug)]
pub struct At<'a> {
    /// The timeline.
    pub timeline: &'a Timeline,
    /// The step.
    pub step: usize,
}

impl KvState for At<'_> {
    fn revision(&self) -> Revision {
        self.timeline.revision_at(self.step)
    }
    fn compact_revision(&self) -> Revision {
        self.timeline.compact_at(self.step)
    }
    fn get(&self, key: &[u8], rev: Revision) -> Option<KeyValue> {
        self.timeline.get_at_revision(key, rev.min(self.revision()))
    }
    fn scan(&self, range: &KeyRange, rev: Revision) -> Vec<KeyValue> {
        self.timeline
            .scan_at_revision(range, rev.min(self.revision()))
    }
    fn lease_ttl(&self, id: LeaseId) -> Option<i64> {
        self.timeline.lease_ttl(id, self.step)
    }
    fn lease_ids(&self) -> Vec<LeaseId> {
        self.timeline.lease_ids(self.step)
    }
    fn lease_keys(&self, id: LeaseId) -> Vec<Bytes> {
        self.timeline.lease_keys(id, self.revision())
    }
    fn auth(&self) -> Arc<AuthState> {
        self.timeline.auth_at(self.step)
    }
}

/// What a request does: etcd's answer and the log ops it must produce (none for a request
/// that fails or changes nothing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exec {
    /// The answer.
    pub result: Result<Response, Error>,
    /// The resolved writes, in log order.
    pub ops: Vec<LogOp>,
}

impl Exec {
    fn fail(e: Error) -> Exec {
        Exec {
            result: Err(e),
            ops: Vec::new(),
        }
    }
}

/// Executes `req` on `s`. `min_ttl` is the smallest lease TTL granted. `auth_revision` is
/// the auth revision a server checked the caller at, if it did: while authentication is
/// enabled, a request checked at another revision than the state's is refused.
pub fn execute(s: &impl KvState, req: &Request, auth_revision: Option<u64>, min_ttl: i64) -> Exec {
    let rev = s.revision();
    if let Some(checked) = auth_revision {
        let auth = s.auth();
        if auth.enabled && auth.revision != checked {
            return Exec::fail(Error::AuthOldRevision);
        }
    }
    match req {
        Request::Put(p) => {
            let mut w = Writer::new(s);
            match w.put(p, true) {
                Ok(resp) => w.finish(Response::Put(resp)),
                Err(e) => Exec::fail(e),
            }
        }
        Request::DeleteRange(d) => {
            if d.key.is_empty() {
                return Exec::fail(Error::EmptyKey);
            }
            let mut w = Writer::new(s);
            let deleted = w.delete(&KeyRange::from_etcd(&d.key, &d.range_end));
            let resp = DeleteRangeResponse {
                revision: w.current_revision(),
                deleted: deleted.len() as i64,
                prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
            };
            w.finish(Response::DeleteRange(resp))
        }
        Request::Txn(t) => txn(s, t),
        Request::Compact(c) => {
            if c.revision <= s.compact_revision() {
                return Exec::fail(Error::Compacted);
            }
            if c.revision > rev {
                return Exec::fail(Error::FutureRevision);
            }
            Exec {
                result: Ok(Response::Compact(CompactResponse { revision: rev })),
                ops: vec![LogOp::Compact {
                    revision: c.revision,
                }],
            }
        }
        Request::LeaseGrant { id, ttl } => {
            if *ttl > MAX_LEASE_TTL {
                return Exec::fail(Error::LeaseTtlTooLarge);
            }
            if *id != 0 && s.lease_ttl(*id).is_some() {
                return Exec::fail(Error::LeaseExists);
            }
            let ttl = (*ttl).max(min_ttl);
            Exec {
                result: Ok(Response::LeaseGrant(LeaseGrantResponse {
                    revision: rev,
                    id: *id,
                    ttl,
                })),
                ops: vec![LogOp::LeaseGrant { id: *id, ttl }],
            }
        }
        Request::LeaseRevoke { id } => revoke(s, *id),
        Request::LeaseKeepAlive { id } => Exec {
            result: Ok(Response::LeaseKeepAlive(LeaseKeepAliveResponse {
                revision: rev,
                id: *id,
                ttl: s.lease_ttl(*id).unwrap_or(0),
            })),
            ops: Vec::new(),
        },
        Request::LeaseTimeToLive { id, keys } => {
            let resp = match s.lease_ttl(*id) {
                // The remaining TTL depends on time, which the model does not know: it
                // answers the granted TTL and `matches` accepts anything in 0..=granted.
                Some(ttl) => LeaseTimeToLiveResponse {
                    revision: rev,
                    id: *id,
                    ttl,
                    granted_ttl: ttl,
                    keys: if *keys { s.lease_keys(*id) } else { Vec::new() },
                },
                None => LeaseTimeToLiveResponse {
                    revision: rev,
                    id: *id,
                    ttl: -1,
                    ..Default::default()
                },
            };
            Exec {
                result: Ok(Response::LeaseTimeToLive(resp)),
                ops: Vec::new(),
            }
        }
        Request::LeaseLeases => Exec {
            result: Ok(Response::LeaseLeases(LeaseLeasesResponse {
                revision: rev,
                leases: s.lease_ids(),
            })),
            ops: Vec::new(),
        },
        Request::Auth(change) => {
            let before = s.auth();
            match auth_change(&before, change) {
                Err(e) => Exec::fail(e),
                Ok(None) => Exec {
                    result: Ok(Response::Auth(AuthResponse {
                        revision: rev,
                        state: before,
                    })),
                    ops: Vec::new(),
                },
                Ok(Some(after)) => {
                    let after = Arc::new(after);
                    Exec {
                        result: Ok(Response::Auth(AuthResponse {
                            revision: rev,
                            state: after.clone(),
                        })),
                        ops: vec![LogOp::Auth(after)],
                    }
                }
            }
        }
    }
}

/// etcd 3.4's answer to an auth change on `s`: the new state (its auth revision one higher),
/// `None` when the change is already in effect (etcd answers success and writes nothing), or
/// etcd's error.
pub fn auth_change(s: &AuthState, change: &AuthChange) -> Result<Option<AuthState>, Error> {
    let mut next = s.clone();
    let has_root = |u: &User| u.roles.iter().any(|r| r == ROOT);
    match change {
        AuthChange::Enable if s.enabled => return Ok(None),
        AuthChange::Enable => match s.users.get(ROOT) {
            None => return Err(Error::RootUserNotExist),
            Some(root) if !has_root(root) => return Err(Error::RootRoleNotExist),
            Some(_) => next.enabled = true,
        },
        AuthChange::Disable if !s.enabled => return Ok(None),
        AuthChange::Disable => next.enabled = false,
        AuthChange::UserAdd { name, .. } if name.is_empty() => return Err(Error::UserEmpty),
        AuthChange::UserAdd {
            name,
            password,
            no_password,
        } => {
            if s.users.contains_key(name) {
                return Err(Error::UserAlreadyExist);
            }
            let password = if *no_password {
                String::new()
            } else {
                password.clone()
            };
            let user = User {
                password,
                no_password: *no_password,
                roles: Vec::new(),
            };
            next.users.insert(name.clone(), user);
        }
        AuthChange::UserDelete { name } => {
            if s.enabled && name == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            if next.users.remove(name).is_none() {
                return Err(Error::UserNotFound);
            }
        }
        AuthChange::UserChangePassword { name, password } => match next.users.get_mut(name) {
            None => return Err(Error::UserNotFound),
            Some(u) => u.password = password.clone(),
        },
        AuthChange::UserGrantRole { user, role } => {
            let Some(u) = next.users.get_mut(user) else {
                return Err(Error::UserNotFound);
            };
            if role != ROOT && !s.roles.contains_key(role) {
                return Err(Error::RoleNotFound);
            }
            if u.roles.contains(role) {
                return Ok(None);
            }
            u.roles.push(role.clone());
            u.roles.sort();
        }
        AuthChange::UserRevokeRole { user, role } => {
            if s.enabled && user == ROOT && role == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            let Some(u) = next.users.get_mut(user) else {
                return Err(Error::UserNotFound);
            };
            let before = u.roles.len();
            u.roles.retain(|r| r != role);
            if u.roles.len() == before {
                return Err(Error::RoleNotGranted);
            }
        }
        AuthChange::RoleAdd { name } if name.is_empty() => return Err(Error::RoleEmpty),
        AuthChange::RoleAdd { name } => {
            if s.roles.contains_key(name) {
                return Err(Error::RoleAlreadyExist);
            }
            next.roles.insert(name.clone(), Role::default());
        }
        AuthChange::RoleDelete { name } => {
            if s.enabled && name == ROOT {
                return Err(Error::InvalidAuthMgmt);
            }
            if next.roles.remove(name).is_none() {
                return Err(Error::RoleNotFound);
            }
            // A deleted role is revoked from every user that had it.
            for u in next.users.values_mut() {
                u.roles.retain(|r| r != name);
            }
        }
        AuthChange::RoleGrantPermission { role, permission } => {
            let Some(r) = next.roles.get_mut(role) else {
                return Err(Error::RoleNotFound);
            };
            // A grant on the same key and range end replaces that permission's type; otherwise
            // it joins the list, which stays ordered by key (grant order among equal keys).
            let same = r
                .permissions
                .iter_mut()
                .find(|p| p.key == permission.key && p.range_end == permission.range_end);
            match same {
                Some(p) => p.kind = permission.kind,
                None => {
                    let at = r.permissions.partition_point(|p| p.key <= permission.key);
                    r.permissions.insert(at, permission.clone());
                }
            }
        }
        AuthChange::RoleRevokePermission {
            role,
            key,
            range_end,
        } => {
            let Some(r) = next.roles.get_mut(role) else {
                return Err(Error::RoleNotFound);
            };
            let at = r
                .permissions
                .iter()
                .position(|p| p.key == *key && p.range_end == *range_end);
            match at {
                Some(at) => {
                    r.permissions.remove(at);
                }
                None => return Err(Error::PermissionNotGranted),
            }
        }
    }
    next.revision += 1;
    Ok(Some(next))
}

/// A lease running out: the same as a revoke, without a client.
pub fn expire(s: &impl KvState, id: LeaseId) -> Exec {
    revoke(s, id)
}

fn revoke(s: &impl KvState, id: LeaseId) -> Exec {
    if s.lease_ttl(id).is_none() {
        return Exec::fail(Error::LeaseNotFound);
    }
    let mut w = Writer::new(s);
    for key in s.lease_keys(id) {
        w.delete(&KeyRange::Single(key));
    }
    let revision = w.current_revision();
    let mut exec = w.finish(Response::LeaseRevoke(LeaseRevokeResponse { revision }));
    exec.ops.push(LogOp::LeaseRevoke { id });
    exec
}

/// Whether an answer a client saw is the answer the model gives (exact, except that the
/// remaining TTL of a lease can be anything up to its granted TTL).
pub fn matches(model: &Result<Response, Error>, seen: &Result<Response, Error>) -> bool {
    match (model, seen) {
        (Ok(Response::LeaseTimeToLive(m)), Ok(Response::LeaseTimeToLive(s))) => {
            let ttl_ok = if m.ttl < 0 {
                s.ttl == -1
            } else {
                (0..=m.granted_ttl).contains(&s.ttl)
            };
            ttl_ok
                && m.revision == s.revision
                && m.id == s.id
                && m.granted_ttl == s.granted_ttl
                && m.keys == s.keys
        }
        _ => model == seen,
    }
}

/// Serves a range read on `s` with etcd's semantics.
pub fn range(s: &impl KvState, req: &RangeRequest) -> Result<RangeResponse, Error> {
    range_with(s, req, s.revision(), &BTreeMap::new())
}

/// A range over `s` with `pending` (writes of the running txn at revision `current`) on top.
fn range_with(
    s: &impl KvState,
    req: &RangeRequest,
    current: Revision,
    pending: &BTreeMap<Bytes, Option<KeyValue>>,
) -> Result<RangeResponse, Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    let at = if req.revision <= 0 {
        current
    } else if req.revision > current {
        return Err(Error::FutureRevision);
    } else if req.revision < s.compact_revision() {
        return Err(Error::Compacted);
    } else {
        req.revision
    };
    let mut resp = RangeResponse {
        revision: current,
        ..Default::default()
    };
    let keys = KeyRange::from_etcd(&req.key, &req.range_end);
    if keys.is_empty() {
        return Ok(resp);
    }
    let mut kvs = merged_scan(s, &keys, at, current, pending);
    resp.count = kvs.len() as i64;
    if req.count_only {
        return Ok(resp);
    }
    kvs.retain(|kv| {
        (req.max_mod_revision == 0 || kv.mod_revision <= req.max_mod_revision)
            && (req.min_mod_revision == 0 || kv.mod_revision >= req.min_mod_revision)
            && (req.max_create_revision == 0 || kv.create_revision <= req.max_create_revision)
            && (req.min_create_revision == 0 || kv.create_revision >= req.min_create_revision)
    });
    let order = match (req.sort_target, req.sort_order) {
        (SortTarget::Key, SortOrder::None) => SortOrder::Ascend,
        (_, SortOrder::None) => SortOrder::Ascend,
        (_, o) => o,
    };
    let key_of = |kv: &KeyValue| -> (Option<i64>, Bytes) {
        match req.sort_target {
            SortTarget::Key => (None, kv.key.clone()),
            SortTarget::Value => (None, kv.value.clone()),
            SortTarget::Version => (Some(kv.version), Bytes::new()),
            SortTarget::Create => (Some(kv.create_revision), Bytes::new()),
            SortTarget::Mod => (Some(kv.mod_revision), Bytes::new()),
        }
    };
    // Stable sorts: ties keep key order, as etcd's.
    match order {
        SortOrder::Descend => kvs.sort_by_key(|kv| std::cmp::Reverse(key_of(kv))),
        _ => kvs.sort_by_key(key_of),
    }
    if req.limit > 0 && kvs.len() > req.limit as usize {
        kvs.truncate(req.limit as usize);
        resp.more = true;
    }
    if req.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    resp.kvs = kvs;
    Ok(resp)
}

fn merged_scan(
    s: &impl KvState,
    keys: &KeyRange,
    at: Revision,
    current: Revision,
    pending: &BTreeMap<Bytes, Option<KeyValue>>,
) -> Vec<KeyValue> {
    let mut out: BTreeMap<Bytes, KeyValue> = s
        .scan(keys, at.min(s.revision()))
        .into_iter()
        .map(|kv| (kv.key.clone(), kv))
        .collect();
    if at == current {
        for (k, v) in pending.iter().filter(|(k, _)| keys.contains(k)) {
            match v {
                Some(kv) => out.insert(k.clone(), kv.clone()),
                None => out.remove(k),
            };
        }
    }
    out.into_values().collect()
}

/// The changes of one revision, as a txn (or a put, delete, revoke) makes them.
struct Writer<'a, S: KvState> {
    s: &'a S,
    rev: Revision,
    pending: BTreeMap<Bytes, Option<KeyValue>>,
    changes: Vec<Change>,
}

impl<'a, S: KvState> Writer<'a, S> {
    fn new(s: &'a S) -> Self {
        Writer {
            s,
            rev: s.revision() + 1,
            pending: BTreeMap::new(),
            changes: Vec::new(),
        }
    }

    fn current_revision(&self) -> Revision {
        if self.changes.is_empty() {
            self.rev - 1
        } else {
            self.rev
        }
    }

    fn get(&self, key: &[u8]) -> Option<KeyValue> {
        match self.pending.get(key) {
            Some(v) => v.clone(),
            None => self.s.get(key, self.s.revision()),
        }
    }

    fn put(&mut self, p: &PutRequest, check: bool) -> Result<PutResponse, Error> {
        if check {
            check_put(self.s, p)?;
        }
        let prev = self.get(&p.key);
        let (create_revision, version) = match &prev {
            Some(prev) => (prev.create_revision, prev.version + 1),
            None => (self.rev, 1),
        };
        let value = match (&prev, p.ignore_value) {
            (Some(prev), true) => prev.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(prev), true) => prev.lease,
            _ => p.lease,
        };
        let kv = KeyValue {
            key: p.key.clone(),
            create_revision,
            mod_revision: self.rev,
            version,
            value,
            lease,
        };
        self.pending.insert(p.key.clone(), Some(kv.clone()));
        self.changes.push(Change::Put {
            kv,
            prev_lease: prev.as_ref().map_or(0, |p| p.lease),
        });
        Ok(PutResponse {
            revision: self.rev,
            prev_kv: if p.prev_kv { prev } else { None },
        })
    }

    fn delete(&mut self, keys: &KeyRange) -> Vec<KeyValue> {
        if keys.is_empty() {
            return Vec::new();
        }
        let doomed = merged_scan(
            self.s,
            keys,
            self.s.revision(),
            self.s.revision(),
            &self.pending,
        );
        for kv in &doomed {
            self.pending.insert(kv.key.clone(), None);
            self.changes.push(Change::Delete {
                key: kv.key.clone(),
                prev_lease: kv.lease,
            });
        }
        doomed
    }

    fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        range_with(self.s, r, self.current_revision(), &self.pending)
    }

    fn finish(self, response: Response) -> Exec {
        let ops = if self.changes.is_empty() {
            Vec::new()
        } else {
            vec![LogOp::Revision {
                revision: self.rev,
                changes: self.changes,
            }]
        };
        Exec {
            result: Ok(response),
            ops,
        }
    }
}

/// The checks of a put against the state (before the txn runs).
fn check_put(s: &impl KvState, p: &PutRequest) -> Result<(), Error> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    if p.lease != 0 && s.lease_ttl(p.lease).is_none() {
        return Err(Error::LeaseNotFound);
    }
    if (p.ignore_value || p.ignore_lease) && s.get(&p.key, s.revision()).is_none() {
        return Err(Error::KeyNotFound);
    }
    Ok(())
}

fn compare_holds(s: &impl KvState, c: &Compare) -> bool {
    let keys = KeyRange::from_etcd(&c.key, &c.range_end);
    let kvs = if keys.is_empty() {
        Vec::new()
    } else {
        s.scan(&keys, s.revision())
    };
    if kvs.is_empty() {
        // etcd: a value compare against a missing key always fails; other targets compare
        // with the zero key.
        if matches!(c.target, CompareTarget::Value(_)) {
            return false;
        }
        return compare_kv(c, &KeyValue::default());
    }
    kvs.iter().all(|kv| compare_kv(c, kv))
}

fn compare_kv(c: &Compare, kv: &KeyValue) -> bool {
    let ord = match &c.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(r) => kv.create_revision.cmp(r),
        CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
        CompareTarget::Value(v) => kv.value.as_ref().cmp(v.as_ref()),
        CompareTarget::Lease(l) => kv.lease.cmp(l),
    };
    match c.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

fn txn(s: &impl KvState, t: &TxnRequest) -> Exec {
    // Every compare, nested ones included, sees the state before the txn; then the chosen
    // branches are checked; only then does anything run.
    let mut path = Vec::new();
    compare_path(s, t, &mut path);
    if let Err(e) = check_branches(s, t, &path, &mut 0) {
        return Exec::fail(e);
    }
    let mut w = Writer::new(s);
    match run_txn(&mut w, t, &path, &mut 0) {
        Ok(mut resp) => {
            resp.revision = w.current_revision();
            w.finish(Response::Txn(resp))
        }
        Err(e) => Exec::fail(e),
    }
}

fn compare_path(s: &impl KvState, t: &TxnRequest, path: &mut Vec<bool>) {
    let ok = t.compare.iter().all(|c| compare_holds(s, c));
    path.push(ok);
    for op in if ok { &t.success } else { &t.failure } {
        if let RequestOp::Txn(nested) = op {
            compare_path(s, nested, path);
        }
    }
}

fn check_branches(
    s: &impl KvState,
    t: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<(), Error> {
    let ok = path[*at];
    *at += 1;
    for op in if ok { &t.success } else { &t.failure } {
        match op {
            RequestOp::Range(r) => {
                if r.revision > s.revision() {
                    return Err(Error::FutureRevision);
                }
                if r.revision > 0 && r.revision < s.compact_revision() {
                    return Err(Error::Compacted);
                }
            }
            RequestOp::Put(p) => check_put(s, p)?,
            RequestOp::DeleteRange(_) => {}
            RequestOp::Txn(nested) => check_branches(s, nested, path, at)?,
        }
    }
    Ok(())
}

fn run_txn<S: KvState>(
    w: &mut Writer<'_, S>,
    t: &TxnRequest,
    path: &[bool],
    at: &mut usize,
) -> Result<TxnResponse, Error> {
    let succeeded = path[*at];
    *at += 1;
    let mut responses = Vec::new();
    for op in if succeeded { &t.success } else { &t.failure } {
        responses.push(match op {
            RequestOp::Range(r) => ResponseOp::Range(w.range(r)?),
            RequestOp::Put(p) => ResponseOp::Put(w.put(p, false)?),
            RequestOp::DeleteRange(d) => {
                let deleted = w.delete(&KeyRange::from_etcd(&d.key, &d.range_end));
                ResponseOp::DeleteRange(DeleteRangeResponse {
                    revision: w.current_revision(),
                    deleted: deleted.len() as i64,
                    prev_kvs: if d.prev_kv { deleted } else { Vec::new() },
                })
            }
            // etcd leaves a nested txn's header revision at 0.
            RequestOp::Txn(nested) => ResponseOp::Txn(run_txn(w, nested, path, at)?),
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

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    fn put(key: &str, value: &str) -> Request {
        Request::Put(PutRequest {
            key: b(key),
            value: b(value),
            ..Default::default()
        })
    }

    /// Runs requests in order on a fresh timeline, returning the answers.
    fn run(reqs: &[Request]) -> (Timeline, Vec<Result<Response, Error>>) {
        let mut t = Timeline::new();
        let mut out = Vec::new();
        for r in reqs {
            let exec = execute(
                &At {
                    timeline: &t,
                    step: t.last_step(),
                },
                r,
                None,
                2,
            );
            if !exec.ops.is_empty() {
                t.step(&exec.ops).unwrap();
            }
            out.push(exec.result);
        }
        (t, out)
    }

    #[test]
    fn puts_count_versions_and_keep_the_create_revision() {
        let (t, out) = run(&[put("a", "1"), put("b", "1"), put("a", "2")]);
        assert!(matches!(&out[2], Ok(Response::Put(p)) if p.revision == 4));
        let a = t.get_at_revision(b"a", 4).unwrap();
        assert_eq!((a.create_revision, a.mod_revision, a.version), (2, 4, 2));
    }

    #[test]
    fn a_cas_txn_succeeds_once() {
        let cas = Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Mod(2),
                key: b("a"),
                range_end: Bytes::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b("a"),
                value: b("x"),
                ..Default::default()
            })],
            failure: vec![RequestOp::Range(RangeRequest {
                key: b("a"),
                ..Default::default()
            })],
        });
        let (_, out) = run(&[put("a", "1"), cas.clone(), cas]);
        assert!(matches!(&out[1], Ok(Response::Txn(t)) if t.succeeded && t.revision == 3));
        match &out[2] {
            Ok(Response::Txn(t)) => {
                assert!(!t.succeeded);
                assert_eq!(t.revision, 3);
                assert!(matches!(&t.responses[0], ResponseOp::Range(r) if r.kvs[0].value == "x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_value_compare_on_a_missing_key_fails() {
        let txn = Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::NotEqual,
                target: CompareTarget::Value(b("v")),
                key: b("missing"),
                range_end: Bytes::new(),
            }],
            success: vec![],
            failure: vec![],
        });
        let (_, out) = run(&[txn]);
        assert!(matches!(&out[0], Ok(Response::Txn(t)) if !t.succeeded));
    }

    #[test]
    fn leases_delete_their_keys_in_one_revision() {
        let with_lease = |k: &str| {
            Request::Put(PutRequest {
                key: b(k),
                value: b("v"),
                lease: 9,
                ..Default::default()
            })
        };
        let (t, out) = run(&[
            with_lease("a"),
            Request::LeaseGrant { id: 9, ttl: 1 },
            with_lease("a"),
            with_lease("b"),
            Request::LeaseRevoke { id: 9 },
            Request::LeaseKeepAlive { id: 9 },
        ]);
        assert_eq!(out[0], Err(Error::LeaseNotFound));
        assert!(matches!(&out[1], Ok(Response::LeaseGrant(g)) if g.ttl == 2));
        assert!(matches!(&out[4], Ok(Response::LeaseRevoke(r)) if r.revision == 4));
        assert!(matches!(&out[5], Ok(Response::LeaseKeepAlive(k)) if k.ttl == 0));
        assert_eq!(t.scan_at_revision(&KeyRange::From(b("a")), 4), vec![]);
    }

    #[test]
    fn ranges_follow_etcd_revision_rules() {
        let (t, _) = run(&[
            put("a", "1"),
            put("a", "2"),
            Request::Compact(t4_core::request::CompactRequest {
                revision: 3,
                physical: false,
            }),
        ]);
        let at = At {
            timeline: &t,
            step: t.last_step(),
        };
        let read = |rev| {
            range(
                &at,
                &RangeRequest {
                    key: b("a"),
                    revision: rev,
                    ..Default::default()
                },
            )
        };
        assert_eq!(read(2), Err(Error::Compacted));
        assert_eq!(read(4), Err(Error::FutureRevision));
        assert_eq!(read(3).unwrap().kvs[0].value, "2");
        assert_eq!(read(3).unwrap().revision, 3);
    }

    #[test]
    fn auth_changes_follow_etcds_rules() {
        use t4_core::auth::{Permission, PermissionKind};
        fn apply(s: &mut AuthState, change: AuthChange) -> Result<bool, Error> {
            let next = auth_change(s, &change)?;
            let changed = next.is_some();
            if let Some(next) = next {
                assert_eq!(next.revision, s.revision + 1);
                *s = next;
            }
            Ok(changed)
        }
        let mut s = AuthState::default();
        assert_eq!(
            apply(&mut s, AuthChange::Enable),
            Err(Error::RootUserNotExist)
        );
        let user = |name: &str| AuthChange::UserAdd {
            name: name.into(),
            password: "h".into(),
            no_password: false,
        };
        assert_eq!(apply(&mut s, user("root")), Ok(true));
        assert_eq!(
            apply(&mut s, AuthChange::Enable),
            Err(Error::RootRoleNotExist)
        );
        let grant = |user: &str, role: &str| AuthChange::UserGrantRole {
            user: user.into(),
            role: role.into(),
        };
        assert_eq!(apply(&mut s, grant("root", ROOT)), Ok(true));
        assert_eq!(
            apply(&mut s, grant("root", ROOT)),
            Ok(false),
            "already in effect"
        );
        assert_eq!(apply(&mut s, AuthChange::Enable), Ok(true));
        assert_eq!(apply(&mut s, AuthChange::Enable), Ok(false));
        assert_eq!(
            apply(&mut s, AuthChange::UserDelete { name: ROOT.into() }),
            Err(Error::InvalidAuthMgmt)
        );
        assert_eq!(apply(&mut s, user("alice")), Ok(true));
        assert_eq!(apply(&mut s, user("alice")), Err(Error::UserAlreadyExist));
        assert_eq!(
            apply(&mut s, grant("alice", "reader")),
            Err(Error::RoleNotFound)
        );
        let role = |name: &str| AuthChange::RoleAdd { name: name.into() };
        assert_eq!(apply(&mut s, role("reader")), Ok(true));
        assert_eq!(apply(&mut s, grant("alice", "reader")), Ok(true));
        let perm = |key: &str, kind| AuthChange::RoleGrantPermission {
            role: "reader".into(),
            permission: Permission {
                kind,
                key: key.into(),
                range_end: Vec::new(),
            },
        };
        assert_eq!(apply(&mut s, perm("b", PermissionKind::Read)), Ok(true));
        assert_eq!(apply(&mut s, perm("a", PermissionKind::Read)), Ok(true));
        // Granting again replaces the type, and still counts as a change.
        assert_eq!(apply(&mut s, perm("b", PermissionKind::Write)), Ok(true));
        let keys: Vec<_> = s.roles["reader"]
            .permissions
            .iter()
            .map(|p| (p.key.clone(), p.kind))
            .collect();
        assert_eq!(
            keys,
            vec![
                (b"a".to_vec(), PermissionKind::Read),
                (b"b".to_vec(), PermissionKind::Write)
            ]
        );
        // Deleting a role takes it from its users.
        assert_eq!(
            apply(
                &mut s,
                AuthChange::RoleDelete {
                    name: "reader".into()
                }
            ),
            Ok(true)
        );
        assert!(s.users["alice"].roles.is_empty());
        assert_eq!(
            apply(
                &mut s,
                AuthChange::UserRevokeRole {
                    user: "alice".into(),
                    role: "reader".into()
                }
            ),
            Err(Error::RoleNotGranted)
        );
    }
}
