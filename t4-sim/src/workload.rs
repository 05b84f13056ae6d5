//! The workload: concurrent clients issuing random etcd operations over a small key space.
//!
//! Each client runs one operation at a time (think, send, wait for the answer or time out)
//! and keeps what it learned — the latest revision, the values and mod revisions it saw, its
//! leases — so that its compare-and-swaps and past-revision reads hit interesting cases. The
//! key space is small so that clients collide. Every value written is unique (`c<client>.<n>`),
//! which is what lets the checkers tell which request a committed change came from.
//!
//! Each seed also draws the *mix* of operations (swarm testing): some runs are all CAS, some
//! compact hard, some live on leases, some change users, roles and permissions (client 0
//! may also create `root` and enable authentication) while puts claim the auth revision a
//! server would have checked them at.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use t4_core::auth::{AuthChange, Permission, PermissionKind, ROOT};
use t4_core::request::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, ResponseOp, TxnRequest,
};
use t4_core::watch::WatchFilter;
use t4_core::{Error, KeyRange, LeaseId, Request, Response, Revision};

use crate::history::{Call, Reply};
use crate::rng::SimRng;

/// The kinds of operation the workload issues.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OpKind {
    /// Put a key (sometimes with `prev_kv`).
    Put,
    /// Put a key attached to one of the client's leases.
    PutWithLease,
    /// Read one key at the current revision.
    Get,
    /// Read one key at a past (or future) revision.
    GetAtRevision,
    /// Read every key (sometimes with a limit, count-only or keys-only).
    RangeAll,
    /// Delete one key.
    Delete,
    /// Delete a range of keys.
    DeleteRange,
    /// Txn: if mod_revision(k) == seen, put k, else read k.
    CasMod,
    /// Txn: if value(k) == seen, put k (and another key), else read k.
    CasValue,
    /// Txn: if version(k) == 0, put k, else read k.
    CreateIfAbsent,
    /// Compact to a revision some way behind.
    Compact,
    /// Open a watch.
    Watch,
    /// Grant a lease.
    LeaseGrant,
    /// Renew one of the client's leases.
    LeaseKeepAlive,
    /// Revoke one of the client's leases.
    LeaseRevoke,
    /// Ask a lease's time to live.
    LeaseTimeToLive,
    /// List leases.
    LeaseLeases,
    /// Change users, roles or permissions (never a change already in effect).
    AuthChange,
    /// Put a key, claiming the auth revision last seen (as a server's permission check).
    CheckedPut,
}

/// Every kind, in a fixed order.
pub const ALL_KINDS: [OpKind; 19] = [
    OpKind::Put,
    OpKind::PutWithLease,
    OpKind::Get,
    OpKind::GetAtRevision,
    OpKind::RangeAll,
    OpKind::Delete,
    OpKind::DeleteRange,
    OpKind::CasMod,
    OpKind::CasValue,
    OpKind::CreateIfAbsent,
    OpKind::Compact,
    OpKind::Watch,
    OpKind::LeaseGrant,
    OpKind::LeaseKeepAlive,
    OpKind::LeaseRevoke,
    OpKind::LeaseTimeToLive,
    OpKind::LeaseLeases,
    OpKind::AuthChange,
    OpKind::CheckedPut,
];

/// The shape of a run's workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadConfig {
    /// Number of clients.
    pub clients: usize,
    /// Operations each client issues.
    pub ops_per_client: usize,
    /// Size of the key space.
    pub keys: usize,
    /// Think time between operations, in nanoseconds (log-uniform).
    pub think: (u64, u64),
    /// How long a client waits for an answer before calling the outcome unknown.
    pub timeout: Duration,
    /// Weight of each [`OpKind`], in [`ALL_KINDS`] order.
    pub weights: [u32; ALL_KINDS.len()],
    /// Most watches a client opens.
    pub max_watches: usize,
}

impl WorkloadConfig {
    /// Draws a workload from `rng`; `clients` and `ops` override the drawn sizes.
    pub fn draw(rng: &mut SimRng, clients: Option<usize>, ops: Option<usize>) -> WorkloadConfig {
        let clients = clients.unwrap_or_else(|| rng.range(2, 8) as usize).max(1);
        let total = ops.unwrap_or_else(|| rng.range(200, 600) as usize);
        let mut weights = [0u32; ALL_KINDS.len()];
        for (i, w) in weights.iter_mut().enumerate() {
            // Swarm testing: each kind is sometimes switched off, otherwise weighted 1..=10.
            *w = if rng.chance(200_000) {
                0
            } else {
                rng.range(1, 10) as u32
            };
            if ALL_KINDS[i] == OpKind::Put {
                *w = (*w).max(3);
            }
        }
        WorkloadConfig {
            clients,
            ops_per_client: total.div_ceil(clients).max(1),
            keys: rng.range(2, 12) as usize,
            // Busy clients make group commit batch many requests per append; idle ones let
            // leases expire and segments age.
            think: *rng.pick(&[
                (10_000, 5_000_000),
                (1_000_000, 200_000_000),
                (20_000_000, 2_000_000_000),
            ]),
            timeout: Duration::from_secs(rng.range(1, 4)),
            weights,
            max_watches: rng.range(0, 3) as usize,
        }
    }
}

/// What a client does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientAction {
    /// Send a request and wait for the answer.
    Call(Call),
    /// Open a watch (no answer awaited: events flow to the history).
    Watch {
        /// What to watch.
        filter: WatchFilter,
        /// Start revision (0 = from now).
        start: Revision,
    },
}

/// One simulated client.
#[derive(Debug)]
pub struct Client {
    /// Its index.
    pub id: usize,
    rng: SimRng,
    /// Operations still to issue.
    pub remaining: usize,
    /// The operation awaiting an answer.
    pub in_flight: Option<crate::history::OpId>,
    seq: u64,
    last_rev: Revision,
    /// `key -> (mod_revision, value)` as last seen.
    seen: BTreeMap<Bytes, (Revision, Bytes)>,
    leases: Vec<LeaseId>,
    next_lease: i64,
    watches: usize,
    /// The highest auth revision seen in an answer.
    auth_revision: u64,
    auth: OwnAuth,
}

/// The users, roles and permissions a client created and has not deleted. Names are the
/// client's own, so no other client touches them, and no change it sends is already in
/// effect (etcd would answer success and write nothing).
#[derive(Debug, Default)]
struct OwnAuth {
    users: Vec<String>,
    roles: Vec<String>,
    /// `(user, role)` granted.
    granted: Vec<(String, String)>,
    /// Every `(user, role)` ever granted: a pair is granted once only, since a revoke whose
    /// answer was lost may not have happened, and a second grant would then change nothing.
    ever_granted: Vec<(String, String)>,
    /// `(role, key, types granted so far)` of permissions granted: a grant on the same key
    /// again (which replaces the type) uses a type not granted there before, so that no two
    /// grants are alike (the checker tells requests apart by their effect).
    permissions: Vec<(String, Vec<u8>, Vec<PermissionKind>)>,
    /// Client 0's steps towards enabling authentication: add root, grant it the root role,
    /// enable (each sent once).
    root_steps: u8,
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("k{i:02}"))
}

impl Client {
    /// A client with its own random stream.
    pub fn new(id: usize, rng: SimRng, ops: usize) -> Client {
        Client {
            id,
            rng,
            remaining: ops,
            in_flight: None,
            seq: 0,
            last_rev: 1,
            seen: BTreeMap::new(),
            leases: Vec::new(),
            next_lease: 0,
            watches: 0,
            auth_revision: 0,
            auth: OwnAuth::default(),
        }
    }

    /// A fresh name for a user or role.
    fn name(&mut self, kind: &str) -> String {
        self.seq += 1;
        format!("{kind}{}.{}", self.id, self.seq)
    }

    /// An auth change that changes the state or fails, never one already in effect.
    fn auth_change(&mut self) -> AuthChange {
        if self.id == 0 && self.auth.root_steps < 3 && self.rng.chance(250_000) {
            self.auth.root_steps += 1;
            return match self.auth.root_steps {
                1 => AuthChange::UserAdd {
                    name: ROOT.into(),
                    password: "root-hash".into(),
                    no_password: false,
                },
                2 => AuthChange::UserGrantRole {
                    user: ROOT.into(),
                    role: ROOT.into(),
                },
                _ => AuthChange::Enable,
            };
        }
        let own = &mut self.auth;
        match self.rng.below(9) {
            0 if !own.users.is_empty() => {
                let name = own.users.swap_remove(self.rng.index(own.users.len()));
                own.granted.retain(|(u, _)| *u != name);
                AuthChange::UserDelete { name }
            }
            1 if !own.roles.is_empty() => {
                let name = own.roles.swap_remove(self.rng.index(own.roles.len()));
                own.granted.retain(|(_, r)| *r != name);
                own.permissions.retain(|(r, _, _)| *r != name);
                AuthChange::RoleDelete { name }
            }
            2 if !own.users.is_empty() && !own.roles.is_empty() => {
                let user = own.users[self.rng.index(own.users.len())].clone();
                let role = own.roles[self.rng.index(own.roles.len())].clone();
                let pair = (user.clone(), role.clone());
                if let Some(at) = own.granted.iter().position(|p| *p == pair) {
                    own.granted.swap_remove(at);
                    AuthChange::UserRevokeRole { user, role }
                } else if own.ever_granted.contains(&pair) {
                    AuthChange::UserRevokeRole { user, role }
                } else {
                    own.granted.push(pair.clone());
                    own.ever_granted.push(pair);
                    AuthChange::UserGrantRole { user, role }
                }
            }
            3 if !own.granted.is_empty() => {
                let (user, role) = own.granted.swap_remove(self.rng.index(own.granted.len()));
                AuthChange::UserRevokeRole { user, role }
            }
            4 | 5 if !own.roles.is_empty() => {
                const KINDS: [PermissionKind; 3] = [
                    PermissionKind::Read,
                    PermissionKind::Write,
                    PermissionKind::ReadWrite,
                ];
                let kind = *self.rng.pick(&KINDS);
                // Again on a key granted before (replacing its type), or on a new key.
                let again = own
                    .permissions
                    .iter()
                    .position(|(_, _, used)| !used.contains(&kind))
                    .filter(|_| self.rng.chance(300_000));
                let (role, key) = match again {
                    Some(at) => {
                        let (role, key, used) = &mut own.permissions[at];
                        used.push(kind);
                        (role.clone(), key.clone())
                    }
                    None => {
                        let role = own.roles[self.rng.index(own.roles.len())].clone();
                        self.seq += 1;
                        let key = format!("k{:02}/{}.{}", self.seq % 12, self.id, self.seq);
                        let key = key.into_bytes();
                        own.permissions
                            .push((role.clone(), key.clone(), vec![kind]));
                        (role, key)
                    }
                };
                AuthChange::RoleGrantPermission {
                    role,
                    permission: Permission {
                        kind,
                        key,
                        range_end: Vec::new(),
                    },
                }
            }
            6 if !own.permissions.is_empty() => {
                let at = self.rng.index(own.permissions.len());
                let (role, key, _) = own.permissions.swap_remove(at);
                AuthChange::RoleRevokePermission {
                    role,
                    key,
                    range_end: Vec::new(),
                }
            }
            7 if !own.users.is_empty() => {
                // A password never used before: no two changes are alike.
                self.seq += 1;
                AuthChange::UserChangePassword {
                    name: own.users[self.rng.index(own.users.len())].clone(),
                    password: format!("hash{}.{}", self.id, self.seq),
                }
            }
            0 | 2 | 7 => {
                let name = self.name("u");
                self.auth.users.push(name.clone());
                AuthChange::UserAdd {
                    name,
                    password: "hash".into(),
                    no_password: self.rng.chance(200_000),
                }
            }
            _ => {
                let name = self.name("r");
                self.auth.roles.push(name.clone());
                AuthChange::RoleAdd { name }
            }
        }
    }

    /// Whether the client has finished: nothing left to issue and nothing in flight.
    pub fn done(&self) -> bool {
        self.remaining == 0 && self.in_flight.is_none()
    }

    /// The think time before the next operation, in nanoseconds.
    pub fn think(&mut self, cfg: &WorkloadConfig) -> u64 {
        self.rng.log_uniform(cfg.think.0, cfg.think.1)
    }

    fn value(&mut self) -> Bytes {
        self.seq += 1;
        Bytes::from(format!("c{}.{}", self.id, self.seq))
    }

    fn any_key(&mut self, cfg: &WorkloadConfig) -> Bytes {
        key(self.rng.index(cfg.keys))
    }

    fn put_op(&mut self, k: Bytes) -> RequestOp {
        let value = self.value();
        RequestOp::Put(PutRequest {
            key: k,
            value,
            ..Default::default()
        })
    }

    fn get_op(k: Bytes) -> RequestOp {
        RequestOp::Range(RangeRequest {
            key: k,
            ..Default::default()
        })
    }

    fn cas(&mut self, k: Bytes, target: CompareTarget, success: Vec<RequestOp>) -> Call {
        Call::Request(Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target,
                key: k.clone(),
                range_end: Bytes::new(),
            }],
            success,
            failure: vec![Self::get_op(k)],
        }))
    }

    /// Chooses the next action (the caller counts it against `remaining`).
    pub fn next(&mut self, cfg: &WorkloadConfig) -> ClientAction {
        self.remaining = self.remaining.saturating_sub(1);
        loop {
            let kind = ALL_KINDS[self.rng.weighted(&cfg.weights)];
            if let Some(action) = self.make(kind, cfg) {
                return action;
            }
        }
    }

    fn make(&mut self, kind: OpKind, cfg: &WorkloadConfig) -> Option<ClientAction> {
        let call = match kind {
            OpKind::Put => {
                let k = self.any_key(cfg);
                let value = self.value();
                Call::Request(Request::Put(PutRequest {
                    key: k,
                    value,
                    prev_kv: self.rng.chance(300_000),
                    ..Default::default()
                }))
            }
            OpKind::PutWithLease => {
                if self.leases.is_empty() {
                    return None;
                }
                let lease = *self.rng.pick(&self.leases);
                let k = self.any_key(cfg);
                let value = self.value();
                Call::Request(Request::Put(PutRequest {
                    key: k,
                    value,
                    lease,
                    ..Default::default()
                }))
            }
            OpKind::Get => Call::Range(RangeRequest {
                key: self.any_key(cfg),
                ..Default::default()
            }),
            OpKind::GetAtRevision => {
                let back = self.rng.range(0, 20) as i64;
                let revision = (self.last_rev - back + 1).max(1);
                Call::Range(RangeRequest {
                    key: self.any_key(cfg),
                    revision,
                    ..Default::default()
                })
            }
            OpKind::RangeAll => {
                let limit = if self.rng.chance(300_000) {
                    self.rng.range(1, 3) as i64
                } else {
                    0
                };
                Call::Range(RangeRequest {
                    key: Bytes::from_static(b"k"),
                    range_end: Bytes::from_static(b"l"),
                    limit,
                    count_only: self.rng.chance(100_000),
                    keys_only: self.rng.chance(100_000),
                    ..Default::default()
                })
            }
            OpKind::Delete => Call::Request(Request::DeleteRange(DeleteRangeRequest {
                key: self.any_key(cfg),
                prev_kv: self.rng.chance(300_000),
                ..Default::default()
            })),
            OpKind::DeleteRange => {
                let a = self.rng.index(cfg.keys);
                let b = self.rng.range(a as u64 + 1, cfg.keys as u64) as usize;
                Call::Request(Request::DeleteRange(DeleteRangeRequest {
                    key: key(a),
                    range_end: key(b),
                    prev_kv: self.rng.chance(300_000),
                }))
            }
            OpKind::CasMod => {
                let k = self.any_key(cfg);
                let expected = match self.seen.get(&k) {
                    Some((m, _)) if !self.rng.chance(100_000) => *m,
                    _ => (self.last_rev - self.rng.range(0, 3) as i64).max(0),
                };
                let put = self.put_op(k.clone());
                self.cas(k, CompareTarget::Mod(expected), vec![put])
            }
            OpKind::CasValue => {
                let k = self.any_key(cfg);
                let expected = match self.seen.get(&k) {
                    Some((_, v)) => v.clone(),
                    None => Bytes::from_static(b"c0.1"),
                };
                let mut success = vec![self.put_op(k.clone())];
                if self.rng.chance(300_000) {
                    let other = self.any_key(cfg);
                    if other != k {
                        success.push(self.put_op(other));
                    }
                }
                self.cas(k, CompareTarget::Value(expected), success)
            }
            OpKind::CreateIfAbsent => {
                let k = self.any_key(cfg);
                let put = self.put_op(k.clone());
                self.cas(k, CompareTarget::Version(0), vec![put])
            }
            OpKind::Compact => {
                let back = self.rng.range(0, 40) as i64;
                let revision = self.last_rev - back;
                if revision < 2 {
                    return None;
                }
                Call::Request(Request::Compact(CompactRequest {
                    revision,
                    physical: self.rng.chance(300_000),
                }))
            }
            OpKind::Watch => {
                if self.watches >= cfg.max_watches {
                    return None;
                }
                self.watches += 1;
                let range = if self.rng.chance(500_000) {
                    KeyRange::prefix(Bytes::from_static(b"k"))
                } else {
                    KeyRange::Single(self.any_key(cfg))
                };
                let start = match self.rng.below(3) {
                    0 => 0,
                    1 => (self.last_rev - self.rng.range(0, 15) as i64).max(1),
                    _ => 1,
                };
                return Some(ClientAction::Watch {
                    filter: WatchFilter {
                        range,
                        no_put: self.rng.chance(50_000),
                        no_delete: self.rng.chance(50_000),
                        prev_kv: self.rng.chance(300_000),
                    },
                    start,
                });
            }
            OpKind::LeaseGrant => {
                self.next_lease += 1;
                let id = ((self.id as i64 + 1) << 32) | self.next_lease;
                Call::Request(Request::LeaseGrant {
                    id,
                    ttl: self.rng.range(1, 8) as i64,
                })
            }
            OpKind::LeaseKeepAlive => {
                let id = *self.leases.get(self.rng.index(self.leases.len().max(1)))?;
                Call::Request(Request::LeaseKeepAlive { id })
            }
            OpKind::LeaseRevoke => {
                let id = *self.leases.get(self.rng.index(self.leases.len().max(1)))?;
                Call::Request(Request::LeaseRevoke { id })
            }
            OpKind::LeaseTimeToLive => {
                let id = *self.leases.get(self.rng.index(self.leases.len().max(1)))?;
                Call::Request(Request::LeaseTimeToLive {
                    id,
                    keys: self.rng.chance(500_000),
                })
            }
            OpKind::LeaseLeases => Call::Request(Request::LeaseLeases),
            OpKind::AuthChange => Call::Request(Request::Auth(self.auth_change())),
            OpKind::CheckedPut => {
                let k = self.any_key(cfg);
                let value = self.value();
                Call::Checked {
                    request: Request::Put(PutRequest {
                        key: k,
                        value,
                        ..Default::default()
                    }),
                    auth_revision: self.auth_revision,
                }
            }
        };
        Some(ClientAction::Call(call))
    }

    /// Learns from an answer.
    pub fn observe(&mut self, call: &Call, result: &Result<Reply, Error>) {
        let Ok(reply) = result else {
            match (call, result) {
                (Call::Request(Request::LeaseKeepAlive { id }), Err(Error::LeaseNotFound)) => {
                    self.leases.retain(|l| l != id);
                }
                // The grant may or may not have happened (it waits for the bucket): keep
                // using the lease, as a client that retries its keepalives would. Until the
                // bucket returns the node must neither renew nor deny it; afterwards a TTL of
                // 0 says the grant was lost and the client forgets it.
                (
                    Call::Request(Request::LeaseGrant { id, .. }),
                    Err(Error::ObjectStoreUnavailable(_)),
                ) => self.leases.push(*id),
                _ => {}
            }
            return;
        };
        match reply {
            Reply::Range(r) => {
                self.last_rev = self.last_rev.max(r.revision);
                for kv in &r.kvs {
                    if !kv.value.is_empty() {
                        self.seen
                            .insert(kv.key.clone(), (kv.mod_revision, kv.value.clone()));
                    }
                }
            }
            Reply::Response(resp) => self.observe_response(call, resp),
        }
    }

    fn observe_response(&mut self, call: &Call, resp: &Response) {
        let rev = match resp {
            Response::Put(p) => {
                if let Some(Request::Put(req)) = call.request() {
                    self.seen
                        .insert(req.key.clone(), (p.revision, req.value.clone()));
                }
                p.revision
            }
            Response::DeleteRange(d) => d.revision,
            Response::Txn(t) => {
                for r in &t.responses {
                    if let ResponseOp::Range(r) = r {
                        for kv in &r.kvs {
                            self.seen
                                .insert(kv.key.clone(), (kv.mod_revision, kv.value.clone()));
                        }
                    }
                }
                if let (Call::Request(Request::Txn(req)), true) = (call, t.succeeded) {
                    for op in &req.success {
                        if let RequestOp::Put(p) = op {
                            self.seen
                                .insert(p.key.clone(), (t.revision, p.value.clone()));
                        }
                    }
                }
                t.revision
            }
            Response::Compact(c) => c.revision,
            Response::LeaseGrant(g) => {
                self.leases.push(g.id);
                g.revision
            }
            Response::LeaseRevoke(r) => {
                if let Call::Request(Request::LeaseRevoke { id }) = call {
                    self.leases.retain(|l| l != id);
                }
                r.revision
            }
            Response::LeaseKeepAlive(k) => {
                if k.ttl == 0 {
                    self.leases.retain(|l| *l != k.id);
                }
                k.revision
            }
            Response::LeaseTimeToLive(t) => t.revision,
            Response::LeaseLeases(l) => l.revision,
            Response::Auth(a) => {
                self.auth_revision = self.auth_revision.max(a.state.revision);
                a.revision
            }
        };
        self.last_rev = self.last_rev.max(rev);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_per_client_and_request() {
        let cfg = WorkloadConfig::draw(&mut SimRng::new(1), Some(2), Some(200));
        let mut c = Client::new(3, SimRng::new(2), 100);
        let mut values = std::collections::BTreeSet::new();
        for _ in 0..100 {
            if let ClientAction::Call(Call::Request(Request::Put(p))) = c.next(&cfg) {
                assert!(values.insert(p.value));
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_workload() {
        let cfg = WorkloadConfig::draw(&mut SimRng::new(5), None, None);
        let mut a = Client::new(0, SimRng::new(9), 50);
        let mut b = Client::new(0, SimRng::new(9), 50);
        for _ in 0..50 {
            assert_eq!(a.next(&cfg), b.next(&cfg));
        }
    }
}
