//! A replay of a committed log, queryable at every point of it.
//!
//! The checkers' reference store: it applies log ops (resolved writes, lease grants and
//! revokes, compactions) in *steps* and answers reads as of any step, at any retained
//! revision. It knows nothing of requests — that is [`crate::model`]'s job — so it serves both
//! as the "replay of the committed log" that the final state is compared with and as the
//! sequence of states a linearization walks through.
//!
//! Step `q` is the state after `q` steps (step 0 is the empty store at revision 1).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;
use t4_core::auth::AuthState;
use t4_core::wal::{Change, LogOp};
use t4_core::{Event, EventKind, KeyRange, KeyValue, LeaseId, Revision};

use crate::trace::Fnv64;

/// One version of a key.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Version {
    step: usize,
    rev: Revision,
    kv: Option<KeyValue>,
}

/// When a lease lived.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LeaseLife {
    ttl: i64,
    granted: usize,
    revoked: Option<usize>,
}

/// The replayed log.
#[derive(Clone, Debug)]
pub struct Timeline {
    keys: BTreeMap<Bytes, Vec<Version>>,
    /// `revs[q]` is the revision after step `q`.
    revs: Vec<Revision>,
    /// `(step, revision)` of every compaction.
    compacts: Vec<(usize, Revision)>,
    /// Every lease ever granted (ids are never reused).
    leases: BTreeMap<LeaseId, Vec<LeaseLife>>,
    /// The events of every revision, with `prev_kv`, in log order.
    events: BTreeMap<Revision, Vec<Event>>,
    /// `(step, state)` of every auth change, in log order.
    auths: Vec<(usize, Arc<AuthState>)>,
}

impl Default for Timeline {
    fn default() -> Timeline {
        Timeline::new()
    }
}

impl Timeline {
    /// The empty store.
    pub fn new() -> Timeline {
        Timeline {
            keys: BTreeMap::new(),
            revs: vec![1],
            compacts: Vec::new(),
            leases: BTreeMap::new(),
            events: BTreeMap::new(),
            auths: Vec::new(),
        }
    }

    /// The number of steps applied.
    pub fn last_step(&self) -> usize {
        self.revs.len() - 1
    }

    /// The revision after step `q`.
    pub fn revision_at(&self, q: usize) -> Revision {
        self.revs[q]
    }

    /// The steps whose revision is `rev`, as an inclusive range, if any.
    pub fn steps_of_revision(&self, rev: Revision) -> Option<(usize, usize)> {
        let first = self.revs.partition_point(|r| *r < rev);
        let end = self.revs.partition_point(|r| *r <= rev);
        (first < end).then(|| (first, end - 1))
    }

    /// Applies `ops` as one step. Fails (changing nothing) if they do not follow from the
    /// state: a revision that is not the next one, a revoke of an unknown lease...
    pub fn step(&mut self, ops: &[LogOp]) -> Result<(), String> {
        self.validate(ops)?;
        let step = self.revs.len();
        let mut rev = *self.revs.last().expect("never empty");
        for op in ops {
            match op {
                LogOp::Revision { revision, changes } => {
                    rev = *revision;
                    let mut events = Vec::with_capacity(changes.len());
                    for change in changes {
                        let (key, kv) = match change {
                            Change::Put { kv, .. } => (kv.key.clone(), Some(kv.clone())),
                            Change::Delete { key, .. } => (key.clone(), None),
                        };
                        let versions = self.keys.entry(key.clone()).or_default();
                        let prev_kv = versions.last().and_then(|v| v.kv.clone());
                        let event = match &kv {
                            Some(kv) => Event {
                                kind: EventKind::Put,
                                kv: kv.clone(),
                                prev_kv,
                            },
                            None => Event {
                                kind: EventKind::Delete,
                                kv: KeyValue {
                                    key: key.clone(),
                                    mod_revision: rev,
                                    ..Default::default()
                                },
                                prev_kv,
                            },
                        };
                        versions.push(Version { step, rev, kv });
                        events.push(event);
                    }
                    self.events.insert(rev, events);
                }
                LogOp::LeaseGrant { id, ttl } => {
                    self.leases.entry(*id).or_default().push(LeaseLife {
                        ttl: *ttl,
                        granted: step,
                        revoked: None,
                    });
                }
                LogOp::LeaseRevoke { id } => {
                    if let Some(life) = self.leases.get_mut(id).and_then(|l| l.last_mut()) {
                        life.revoked = Some(step);
                    }
                }
                LogOp::Compact { revision } => self.compacts.push((step, *revision)),
                LogOp::Auth(state) => self.auths.push((step, state.clone())),
            }
        }
        self.revs.push(rev);
        Ok(())
    }

    fn validate(&self, ops: &[LogOp]) -> Result<(), String> {
        let q = self.last_step();
        let mut rev = self.revs[q];
        let mut compact = self.compact_at(q);
        let mut live: BTreeMap<LeaseId, bool> = BTreeMap::new();
        let mut auth: Option<Arc<AuthState>> = None;
        for op in ops {
            match op {
                LogOp::Revision { revision, changes } => {
                    if *revision != rev + 1 {
                        return Err(format!(
                            "revision {revision} follows revision {rev}: revisions must advance by exactly one"
                        ));
                    }
                    if changes.is_empty() {
                        return Err(format!("revision {revision} changes nothing"));
                    }
                    for c in changes {
                        if let Change::Put { kv, .. } = c
                            && kv.mod_revision != *revision
                        {
                            return Err(format!(
                                "a put at revision {revision} carries mod_revision {}",
                                kv.mod_revision
                            ));
                        }
                    }
                    rev = *revision;
                }
                LogOp::LeaseGrant { id, .. } => {
                    let alive = *live
                        .entry(*id)
                        .or_insert_with(|| self.lease_ttl(*id, q).is_some());
                    if alive {
                        return Err(format!("lease {id:x} granted while it exists"));
                    }
                    live.insert(*id, true);
                }
                LogOp::LeaseRevoke { id } => {
                    let alive = *live
                        .entry(*id)
                        .or_insert_with(|| self.lease_ttl(*id, q).is_some());
                    if !alive {
                        return Err(format!("lease {id:x} revoked but it does not exist"));
                    }
                    live.insert(*id, false);
                }
                LogOp::Compact { revision } => {
                    if *revision <= compact || *revision > rev {
                        return Err(format!(
                            "compaction to {revision} with compact revision {compact} and revision {rev}"
                        ));
                    }
                    compact = *revision;
                }
                LogOp::Auth(state) => {
                    let before = auth.unwrap_or_else(|| self.auth_at(q));
                    if state.revision != before.revision + 1 {
                        return Err(format!(
                            "auth revision {} follows auth revision {}: a change must raise it by one",
                            state.revision, before.revision
                        ));
                    }
                    auth = Some(state.clone());
                }
            }
        }
        Ok(())
    }

    /// The auth state after step `q`.
    pub fn auth_at(&self, q: usize) -> Arc<AuthState> {
        let i = self.auths.partition_point(|(s, _)| *s <= q);
        match i.checked_sub(1) {
            Some(i) => self.auths[i].1.clone(),
            None => Arc::default(),
        }
    }

    /// The compact revision after step `q`.
    pub fn compact_at(&self, q: usize) -> Revision {
        let i = self.compacts.partition_point(|(s, _)| *s <= q);
        if i == 0 { 0 } else { self.compacts[i - 1].1 }
    }

    /// The highest compaction ever applied.
    pub fn max_compact(&self) -> Revision {
        self.compacts.last().map_or(0, |(_, r)| *r)
    }

    /// `key` as of revision `rev` (history is never forgotten here).
    pub fn get_at_revision(&self, key: &[u8], rev: Revision) -> Option<KeyValue> {
        let versions = self.keys.get(key)?;
        let i = versions.partition_point(|v| v.rev <= rev);
        if i == 0 {
            None
        } else {
            versions[i - 1].kv.clone()
        }
    }

    /// Every key of `range` that exists at revision `rev`, in key order.
    pub fn scan_at_revision(&self, range: &KeyRange, rev: Revision) -> Vec<KeyValue> {
        let start = Bound::Included(range.start().clone());
        let end = match range.end_exclusive() {
            Some(e) if e <= *range.start() => return Vec::new(),
            Some(e) => Bound::Excluded(e),
            None => Bound::Unbounded,
        };
        let mut out = Vec::new();
        for (_, versions) in self.keys.range((start, end)) {
            let i = versions.partition_point(|v| v.rev <= rev);
            if i > 0
                && let Some(kv) = &versions[i - 1].kv
            {
                out.push(kv.clone());
            }
        }
        out
    }

    /// The TTL of lease `id` after step `q`, if it exists then.
    pub fn lease_ttl(&self, id: LeaseId, q: usize) -> Option<i64> {
        self.leases
            .get(&id)?
            .iter()
            .find_map(|l| (l.granted <= q && l.revoked.is_none_or(|r| r > q)).then_some(l.ttl))
    }

    /// Ids of the leases that exist after step `q`, ascending.
    pub fn lease_ids(&self, q: usize) -> Vec<LeaseId> {
        self.leases
            .keys()
            .copied()
            .filter(|id| self.lease_ttl(*id, q).is_some())
            .collect()
    }

    /// Keys attached to lease `id` at revision `rev`, in key order.
    pub fn lease_keys(&self, id: LeaseId, rev: Revision) -> Vec<Bytes> {
        self.keys
            .iter()
            .filter_map(|(k, versions)| {
                let i = versions.partition_point(|v| v.rev <= rev);
                let kv = versions.get(i.checked_sub(1)?)?.kv.as_ref()?;
                (kv.lease == id).then(|| k.clone())
            })
            .collect()
    }

    /// The events of revisions `from..=to`, in order, with `prev_kv`.
    pub fn events(&self, from: Revision, to: Revision) -> impl Iterator<Item = &Event> {
        self.events
            .range(from..=to.max(from))
            .filter(move |(r, _)| **r <= to)
            .flat_map(|(_, e)| e.iter())
    }

    /// A digest of the state after the last step: revision, compact revision, every live
    /// key, every live lease, the auth state. Two stores with equal digests hold the same data.
    pub fn digest(&self) -> u64 {
        let q = self.last_step();
        let rev = self.revs[q];
        let mut h = Fnv64::new();
        h.write_i64(rev);
        h.write_i64(self.compact_at(q));
        for kv in self.scan_at_revision(&KeyRange::From(Bytes::new()), rev) {
            digest_kv(&mut h, &kv);
        }
        for id in self.lease_ids(q) {
            h.write_i64(id);
            h.write_i64(self.lease_ttl(id, q).unwrap_or(0));
        }
        digest_auth(&mut h, &self.auth_at(q));
        h.finish()
    }
}

/// Adds an auth state to a digest.
pub fn digest_auth(h: &mut Fnv64, auth: &AuthState) {
    h.write(&auth.encode());
}

/// Adds one key-value pair to a digest.
pub fn digest_kv(h: &mut Fnv64, kv: &KeyValue) {
    h.write_field(&kv.key);
    h.write_field(&kv.value);
    h.write_i64(kv.create_revision);
    h.write_i64(kv.mod_revision);
    h.write_i64(kv.version);
    h.write_i64(kv.lease);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(rev: Revision, key: &'static str, value: &'static str, version: i64) -> LogOp {
        LogOp::Revision {
            revision: rev,
            changes: vec![Change::Put {
                kv: KeyValue {
                    key: Bytes::from_static(key.as_bytes()),
                    value: Bytes::from_static(value.as_bytes()),
                    create_revision: rev - version + 1,
                    mod_revision: rev,
                    version,
                    lease: 0,
                },
                prev_lease: 0,
            }],
        }
    }

    #[test]
    fn reads_at_every_step_and_revision() {
        let mut t = Timeline::new();
        t.step(&[put(2, "a", "1", 1)]).unwrap();
        t.step(&[LogOp::LeaseGrant { id: 7, ttl: 5 }]).unwrap();
        t.step(&[put(3, "a", "2", 2)]).unwrap();
        t.step(&[LogOp::Compact { revision: 3 }]).unwrap();
        assert_eq!(t.revision_at(1), 2);
        assert_eq!(t.steps_of_revision(2), Some((1, 2)));
        assert_eq!(t.steps_of_revision(9), None);
        assert_eq!(t.get_at_revision(b"a", 2).unwrap().value, "1");
        assert_eq!(t.lease_ttl(7, 1), None);
        assert_eq!(t.lease_ttl(7, 2), Some(5));
        assert_eq!(t.compact_at(3), 0);
        assert_eq!(t.compact_at(4), 3);
        let ev: Vec<_> = t.events(2, 3).map(|e| e.kv.mod_revision).collect();
        assert_eq!(ev, vec![2, 3]);
        assert_eq!(
            t.events(3, 3)
                .next()
                .unwrap()
                .prev_kv
                .as_ref()
                .unwrap()
                .value,
            "1"
        );
    }

    #[test]
    fn a_gap_or_a_double_revision_is_refused() {
        let mut t = Timeline::new();
        assert!(t.step(&[put(3, "a", "1", 1)]).is_err());
        t.step(&[put(2, "a", "1", 1)]).unwrap();
        assert!(t.step(&[put(2, "a", "2", 2)]).is_err());
        assert!(t.step(&[LogOp::LeaseRevoke { id: 1 }]).is_err());
        assert!(t.step(&[LogOp::Compact { revision: 5 }]).is_err());
        assert_eq!(t.last_step(), 1);
    }
}
