//! A reference model of etcd's semantics, deliberately naive: it keeps the whole keyspace of
//! every revision and recomputes everything from that.
//!
//! Written from etcd's source (server/etcdserver/txn/{txn,range,put,delete}.go,
//! server/storage/mvcc/kvstore_txn.go, server/lease/lessor.go, api/v3rpc/key.go for the
//! request checks, api/v3rpc/watch.go for `prev_kv`), not from t4's code. Where etcd leaves
//! something unspecified, the model pins the choice t4 documents:
//! * ties of a sort on a field other than the key keep key order (etcd uses an unstable sort);
//! * `keys_only` keeps each pair's lease (etcd 3.7's in-memory keys-only path drops it);
//! * a put with `ignore_value`/`ignore_lease` whose key an earlier from-key delete (`"\0"`)
//!   of the same txn removed writes the request's (empty) value and no lease: etcd's interval
//!   check lets that txn through and its `put` then panics indexing the missing pair.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use t4_core::request::{
    CompactResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, LeaseGrantResponse, LeaseKeepAliveResponse, LeaseLeasesResponse,
    LeaseRevokeResponse, LeaseTimeToLiveResponse, PutRequest, PutResponse, RangeRequest,
    RangeResponse, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use t4_core::{Error, Event, EventKind, KeyValue, Request, Response};

const SEC: u64 = 1_000_000_000;
/// etcd's minimum lease TTL with default timing, and t4's default.
pub const MIN_TTL: i64 = 2;
/// etcd's `MaxLeaseTTL`.
pub const MAX_TTL: i64 = 9_000_000_000;

/// The whole keyspace at one revision.
type State = BTreeMap<Bytes, KeyValue>;

/// etcd's `(key, range_end)` convention: empty end = one key, `"\0"` = from key, else
/// `[key, end)` (empty when `end <= key`).
fn in_range(key: &[u8], range_end: &[u8], k: &[u8]) -> bool {
    match range_end {
        [] => k == key,
        [0] => k >= key,
        end => k >= key && k < end,
    }
}

/// A live lease.
#[derive(Clone, Debug)]
pub struct Lease {
    /// The granted TTL (after raising to the minimum).
    pub ttl: i64,
    /// Nanoseconds on the driver's clock.
    pub expiry: u64,
}

/// etcd, as one state machine.
#[derive(Clone, Debug)]
pub struct Model {
    /// `history[r - 1]` is the keyspace at revision `r`; an empty store is at revision 1.
    history: Vec<State>,
    /// etcd's compactMainRev (0 until the first compaction).
    pub compacted: i64,
    /// Live leases by id.
    pub leases: BTreeMap<i64, Lease>,
    /// Every committed event, with `prev_kv` as etcd's watch reports it.
    pub events: Vec<Event>,
    /// `--max-txn-ops`.
    max_ops: usize,
}

/// The changes of one write request, at revision `base + 1`.
struct Tx {
    base: i64,
    work: State,
    changed: bool,
    events: Vec<Event>,
}

impl Tx {
    fn new(m: &Model) -> Tx {
        Tx {
            base: m.rev(),
            work: m.current().clone(),
            changed: false,
            events: Vec::new(),
        }
    }

    /// etcd's `storeTxnWrite.Range`/`DeleteRange` revision: the txn's once it changed a key.
    fn read_rev(&self) -> i64 {
        self.base + i64::from(self.changed)
    }

    fn range(&self, m: &Model, r: &RangeRequest) -> RangeResponse {
        // Revision 0 reads the txn's own writes; an explicit (checked) revision reads history.
        let state = if r.revision <= 0 {
            &self.work
        } else {
            m.at(r.revision)
        };
        serve(state, self.read_rev(), r)
    }

    fn put(&mut self, p: &PutRequest) -> PutResponse {
        let rev = self.base + 1;
        let prev = self.work.get(&p.key).cloned();
        let value = match (&prev, p.ignore_value) {
            (Some(kv), true) => kv.value.clone(),
            _ => p.value.clone(),
        };
        let lease = match (&prev, p.ignore_lease) {
            (Some(kv), true) => kv.lease,
            _ => p.lease,
        };
        let kv = KeyValue {
            key: p.key.clone(),
            value,
            lease,
            create_revision: prev.as_ref().map_or(rev, |kv| kv.create_revision),
            mod_revision: rev,
            version: prev.as_ref().map_or(1, |kv| kv.version + 1),
        };
        self.work.insert(p.key.clone(), kv.clone());
        self.changed = true;
        self.events.push(Event {
            kind: EventKind::Put,
            kv,
            prev_kv: None,
        });
        PutResponse {
            revision: rev,
            prev_kv: if p.prev_kv { prev } else { None },
        }
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> DeleteRangeResponse {
        let rev = self.base + 1;
        let doomed: Vec<KeyValue> = self
            .work
            .values()
            .filter(|kv| in_range(&d.key, &d.range_end, &kv.key))
            .cloned()
            .collect();
        for kv in &doomed {
            self.work.remove(&kv.key);
            self.changed = true;
            self.events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: kv.key.clone(),
                    mod_revision: rev,
                    ..Default::default()
                },
                prev_kv: None,
            });
        }
        DeleteRangeResponse {
            revision: self.read_rev(),
            deleted: doomed.len() as i64,
            prev_kvs: if d.prev_kv { doomed } else { Vec::new() },
        }
    }
}

/// etcd's range over one state: count before filters, filters, sort, limit, keys-only.
fn serve(state: &State, header: i64, r: &RangeRequest) -> RangeResponse {
    let all: Vec<&KeyValue> = state
        .values()
        .filter(|kv| in_range(&r.key, &r.range_end, &kv.key))
        .collect();
    let mut resp = RangeResponse {
        revision: header,
        count: all.len() as i64,
        ..Default::default()
    };
    if r.count_only {
        return resp;
    }
    // etcd's `rangeLimit`: with order NONE (whatever the target) or key-ascending, and no
    // revision filter, it reads only `limit + 1` keys (in key order) and sorts just those.
    let default_ordering = r.sort_order == SortOrder::None
        || (r.sort_target == SortTarget::Key && r.sort_order == SortOrder::Ascend);
    let filters = [
        r.min_mod_revision,
        r.max_mod_revision,
        r.min_create_revision,
        r.max_create_revision,
    ];
    let mut all = all;
    if default_ordering && filters.iter().all(|f| *f == 0) && r.limit > 0 {
        all.truncate(r.limit as usize + 1);
    }
    let within =
        |bound: i64, lower: bool, v: i64| bound == 0 || if lower { v >= bound } else { v <= bound };
    let mut kvs: Vec<KeyValue> = all
        .into_iter()
        .filter(|kv| {
            within(r.min_mod_revision, true, kv.mod_revision)
                && within(r.max_mod_revision, false, kv.mod_revision)
                && within(r.min_create_revision, true, kv.create_revision)
                && within(r.max_create_revision, false, kv.create_revision)
        })
        .cloned()
        .collect();
    let by = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match r.sort_target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    // Order NONE sorts ascending (for the key target that is the scan order already).
    match r.sort_order {
        SortOrder::Descend => kvs.sort_by(|a, b| by(b, a)),
        SortOrder::Ascend | SortOrder::None => kvs.sort_by(by),
    }
    if r.limit > 0 && kvs.len() as i64 > r.limit {
        kvs.truncate(r.limit as usize);
        resp.more = true;
    }
    if r.keys_only {
        for kv in &mut kvs {
            kv.value = Bytes::new();
        }
    }
    resp.kvs = kvs;
    resp
}

fn compare(state: &State, c: &Compare) -> bool {
    let holds = |kv: &KeyValue| {
        let ord = match &c.target {
            CompareTarget::Version(v) => kv.version.cmp(v),
            CompareTarget::Create(r) => kv.create_revision.cmp(r),
            CompareTarget::Mod(r) => kv.mod_revision.cmp(r),
            CompareTarget::Value(v) => kv.value.cmp(v),
            CompareTarget::Lease(l) => kv.lease.cmp(l),
        };
        match c.result {
            CompareResult::Equal => ord == Ordering::Equal,
            CompareResult::NotEqual => ord != Ordering::Equal,
            CompareResult::Greater => ord == Ordering::Greater,
            CompareResult::Less => ord == Ordering::Less,
        }
    };
    let kvs: Vec<&KeyValue> = state
        .values()
        .filter(|kv| in_range(&c.key, &c.range_end, &kv.key))
        .collect();
    if kvs.is_empty() {
        // No key: compare a zero pair, except a value, which a missing key never matches.
        return !matches!(c.target, CompareTarget::Value(_)) && holds(&KeyValue::default());
    }
    kvs.into_iter().all(holds)
}

/// etcd's `compareToPath`: this level's outcome, then each nested txn of the branch taken.
fn compare_path(state: &State, t: &TxnRequest, path: &mut Vec<bool>) {
    let ok = t.compare.iter().all(|c| compare(state, c));
    path.push(ok);
    for op in branch(t, ok) {
        if let RequestOp::Txn(n) = op {
            compare_path(state, n, path);
        }
    }
}

fn branch(t: &TxnRequest, succeeded: bool) -> &[RequestOp] {
    if succeeded { &t.success } else { &t.failure }
}

/// etcd's `checkPutRequest`.
fn check_put_request(p: &PutRequest) -> Result<(), Error> {
    if p.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if p.ignore_value && !p.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if p.ignore_lease && p.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest`: op counts per level (a nested level gets what is left), then
/// every key.
fn check_txn_request(t: &TxnRequest, max_ops: usize) -> Result<(), Error> {
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > max_ops {
        return Err(Error::TooManyOps);
    }
    if t.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in t.success.iter().chain(&t.failure) {
        match op {
            RequestOp::Range(r) if r.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::Range(_) => {}
            RequestOp::Put(p) => check_put_request(p)?,
            RequestOp::DeleteRange(d) if d.key.is_empty() => return Err(Error::EmptyKey),
            RequestOp::DeleteRange(_) => {}
            RequestOp::Txn(n) => check_txn_request(n, max_ops - opc)?,
        }
    }
    Ok(())
}

/// A deleted interval as etcd's `adt` interval tree holds it.
enum Deleted {
    Point(Bytes),
    /// `[start, end)` with `end` compared as a plain string, so from-key (`"\0"`) and inverted
    /// ranges contain nothing.
    Span(Bytes, Bytes),
}

impl Deleted {
    fn hits(&self, k: &[u8]) -> bool {
        match self {
            Deleted::Point(p) => p.as_ref() == k,
            Deleted::Span(s, e) => k >= s.as_ref() && k < e.as_ref(),
        }
    }
}

/// etcd's `checkIntervals`: no key put twice or put and deleted within one branch, nested
/// txns included (the two branches of one nested txn may put the same key).
fn check_intervals(ops: &[RequestOp]) -> Result<(BTreeSet<Bytes>, Vec<Deleted>), Error> {
    let mut dels: Vec<Deleted> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) if d.range_end.is_empty() => {
                Some(Deleted::Point(d.key.clone()))
            }
            RequestOp::DeleteRange(d) => Some(Deleted::Span(d.key.clone(), d.range_end.clone())),
            _ => None,
        })
        .collect();
    let hit = |dels: &[Deleted], k: &[u8]| dels.iter().any(|d| d.hits(k));
    let mut puts = BTreeSet::new();
    for op in ops {
        let RequestOp::Txn(n) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&n.success)?;
        let (puts_else, dels_else) = check_intervals(&n.failure)?;
        for k in &puts_then {
            if puts.contains(k) || hit(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        for k in &puts_else {
            if (puts.contains(k) && !puts_then.contains(k)) || hit(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(p) = op else { continue };
        if !puts.insert(p.key.clone()) || hit(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
    }
    Ok((puts, dels))
}

impl Model {
    /// An empty etcd with `--max-txn-ops` = `max_ops`.
    pub fn new(max_ops: usize) -> Model {
        Model {
            history: vec![State::new()],
            compacted: 0,
            leases: BTreeMap::new(),
            events: Vec::new(),
            max_ops,
        }
    }

    /// The current revision.
    pub fn rev(&self) -> i64 {
        self.history.len() as i64
    }

    fn at(&self, rev: i64) -> &State {
        &self.history[(rev - 1) as usize]
    }

    fn current(&self) -> &State {
        self.history
            .last()
            .expect("the history starts with revision 1")
    }

    /// The keys attached to lease `id`, in key order.
    pub fn lease_keys(&self, id: i64) -> Vec<Bytes> {
        self.current()
            .values()
            .filter(|kv| kv.lease == id)
            .map(|kv| kv.key.clone())
            .collect()
    }

    /// Applies a request decided at `now`; `generated` is the id the core chose for a
    /// `LeaseGrant` with id 0.
    pub fn apply(
        &mut self,
        req: &Request,
        now: u64,
        generated: Option<i64>,
    ) -> Result<Response, Error> {
        let revision = self.rev();
        match req {
            Request::Put(p) => self.put(p).map(Response::Put),
            Request::DeleteRange(d) => self.delete(d).map(Response::DeleteRange),
            Request::Txn(t) => self.txn(t).map(Response::Txn),
            Request::Compact(c) => self.compact(c.revision).map(Response::Compact),
            Request::LeaseGrant { id, ttl } => self
                .grant(*id, *ttl, now, generated)
                .map(Response::LeaseGrant),
            Request::LeaseRevoke { id } => self
                .revoke(*id)
                .map(|revision| Response::LeaseRevoke(LeaseRevokeResponse { revision })),
            Request::LeaseKeepAlive { id } => {
                // etcd's keepalive stream answers TTL 0 for an unknown lease.
                let ttl = match self.leases.get_mut(id) {
                    Some(l) => {
                        l.expiry = now.saturating_add(l.ttl as u64 * SEC);
                        l.ttl
                    }
                    None => 0,
                };
                Ok(Response::LeaseKeepAlive(LeaseKeepAliveResponse {
                    revision,
                    id: *id,
                    ttl,
                }))
            }
            // Auth changes are checked by `t4_core::auth`'s own tests; this model generates none.
            Request::Auth(_) => unreachable!("the model test generates no auth changes"),
            Request::LeaseTimeToLive { id, keys } => {
                let resp = match self.leases.get(id) {
                    Some(l) => LeaseTimeToLiveResponse {
                        revision,
                        id: *id,
                        ttl: (l.expiry.saturating_sub(now) / SEC) as i64,
                        granted_ttl: l.ttl,
                        keys: if *keys {
                            self.lease_keys(*id)
                        } else {
                            Vec::new()
                        },
                    },
                    // etcd answers TTL -1 for an unknown lease.
                    None => LeaseTimeToLiveResponse {
                        revision,
                        id: *id,
                        ttl: -1,
                        granted_ttl: 0,
                        keys: Vec::new(),
                    },
                };
                Ok(Response::LeaseTimeToLive(resp))
            }
            Request::LeaseLeases => Ok(Response::LeaseLeases(LeaseLeasesResponse {
                revision,
                leases: self.leases.keys().copied().collect(),
            })),
        }
    }

    /// A plain Range, as served outside a txn.
    pub fn range(&self, r: &RangeRequest) -> Result<RangeResponse, Error> {
        if r.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let current = self.rev();
        if r.revision > current {
            return Err(Error::FutureRevision);
        }
        let at = if r.revision <= 0 { current } else { r.revision };
        if at < self.compacted {
            return Err(Error::Compacted);
        }
        Ok(serve(self.at(at), current, r))
    }

    /// etcd's `checkPut` against the state before the request.
    fn check_put_state(&self, state: &State, p: &PutRequest) -> Result<(), Error> {
        if p.lease != 0 && !self.leases.contains_key(&p.lease) {
            return Err(Error::LeaseNotFound);
        }
        if (p.ignore_value || p.ignore_lease) && !state.contains_key(&p.key) {
            return Err(Error::KeyNotFound);
        }
        Ok(())
    }

    fn put(&mut self, p: &PutRequest) -> Result<PutResponse, Error> {
        check_put_request(p)?;
        self.check_put_state(self.current(), p)?;
        let mut tx = Tx::new(self);
        let resp = tx.put(p);
        self.commit(tx);
        Ok(resp)
    }

    fn delete(&mut self, d: &DeleteRangeRequest) -> Result<DeleteRangeResponse, Error> {
        if d.key.is_empty() {
            return Err(Error::EmptyKey);
        }
        let mut tx = Tx::new(self);
        let resp = tx.delete(d);
        self.commit(tx);
        Ok(resp)
    }

    fn txn(&mut self, t: &TxnRequest) -> Result<TxnResponse, Error> {
        check_txn_request(t, self.max_ops)?;
        check_intervals(&t.success)?;
        check_intervals(&t.failure)?;
        // Every compare and every check, nested ones included, sees the state before the txn.
        let before = self.current();
        let mut path = Vec::new();
        compare_path(before, t, &mut path);
        self.check_branch(before, t, &path, &mut 0)?;
        let mut tx = Tx::new(self);
        let mut resp = self.execute(&mut tx, t, &path, &mut 0);
        resp.revision = tx.read_rev();
        self.commit(tx);
        Ok(resp)
    }

    /// etcd's `checkTxn` over the branches the path selects.
    fn check_branch(
        &self,
        state: &State,
        t: &TxnRequest,
        path: &[bool],
        at: &mut usize,
    ) -> Result<(), Error> {
        let ok = path[*at];
        *at += 1;
        for op in branch(t, ok) {
            match op {
                RequestOp::Range(r) if r.revision > self.rev() => {
                    return Err(Error::FutureRevision);
                }
                RequestOp::Range(r) if r.revision > 0 && r.revision < self.compacted => {
                    return Err(Error::Compacted);
                }
                RequestOp::Range(_) | RequestOp::DeleteRange(_) => {}
                RequestOp::Put(p) => self.check_put_state(state, p)?,
                RequestOp::Txn(n) => self.check_branch(state, n, path, at)?,
            }
        }
        Ok(())
    }

    /// Runs the branches the path selects. A nested txn's header revision stays 0, as etcd
    /// leaves it.
    fn execute(&self, tx: &mut Tx, t: &TxnRequest, path: &[bool], at: &mut usize) -> TxnResponse {
        let succeeded = path[*at];
        *at += 1;
        let mut responses = Vec::new();
        for op in branch(t, succeeded) {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(tx.range(self, r)),
                RequestOp::Put(p) => ResponseOp::Put(tx.put(p)),
                RequestOp::DeleteRange(d) => ResponseOp::DeleteRange(tx.delete(d)),
                RequestOp::Txn(n) => ResponseOp::Txn(self.execute(tx, n, path, at)),
            });
        }
        TxnResponse {
            revision: 0,
            succeeded,
            responses,
        }
    }

    /// Ends a write: a new revision if anything changed. Watch events carry `prev_kv` the
    /// way etcd's watch server fills it: the key at the previous revision, except for an
    /// event that creates the key.
    fn commit(&mut self, tx: Tx) {
        if !tx.changed {
            return;
        }
        let before = &self.history[self.history.len() - 1];
        for mut event in tx.events {
            let creates =
                event.kind == EventKind::Put && event.kv.create_revision == event.kv.mod_revision;
            event.prev_kv = if creates {
                None
            } else {
                before.get(&event.kv.key).cloned()
            };
            self.events.push(event);
        }
        self.history.push(tx.work);
    }

    fn compact(&mut self, revision: i64) -> Result<CompactResponse, Error> {
        if revision <= self.compacted {
            return Err(Error::Compacted);
        }
        if revision > self.rev() {
            return Err(Error::FutureRevision);
        }
        self.compacted = revision;
        Ok(CompactResponse {
            revision: self.rev(),
        })
    }

    fn grant(
        &mut self,
        id: i64,
        ttl: i64,
        now: u64,
        generated: Option<i64>,
    ) -> Result<LeaseGrantResponse, Error> {
        if ttl > MAX_TTL {
            return Err(Error::LeaseTtlTooLarge);
        }
        if id != 0 && self.leases.contains_key(&id) {
            return Err(Error::LeaseExists);
        }
        let ttl = ttl.max(MIN_TTL);
        let id = if id != 0 {
            id
        } else {
            generated.expect("the runner passes the id the core generated")
        };
        self.leases.insert(
            id,
            Lease {
                ttl,
                expiry: now.saturating_add(ttl as u64 * SEC),
            },
        );
        Ok(LeaseGrantResponse {
            revision: self.rev(),
            id,
            ttl,
        })
    }

    /// etcd's `lessor.Revoke`: the attached keys, in key order, deleted in one write.
    fn revoke(&mut self, id: i64) -> Result<i64, Error> {
        if !self.leases.contains_key(&id) {
            return Err(Error::LeaseNotFound);
        }
        let mut tx = Tx::new(self);
        for key in self.lease_keys(id) {
            tx.delete(&DeleteRangeRequest {
                key,
                ..Default::default()
            });
        }
        self.commit(tx);
        self.leases.remove(&id);
        Ok(self.rev())
    }

    /// Revokes every lease due at `now`, earliest first (ties by id).
    pub fn expire(&mut self, now: u64) {
        let mut due: Vec<(u64, i64)> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expiry <= now)
            .map(|(id, l)| (l.expiry, *id))
            .collect();
        due.sort();
        for (_, id) in due {
            self.revoke(id).expect("a due lease exists");
        }
    }

    /// After a restart every lease has its full TTL again.
    pub fn restart(&mut self, now: u64) {
        for l in self.leases.values_mut() {
            l.expiry = now.saturating_add(l.ttl as u64 * SEC);
        }
    }
}
