//! Leases: TTLs, expiry decided from `now`, and the keys attached to each lease.
//!
//! Lease *existence* is durable (grants and revokes are log entries); expiry deadlines are
//! leader memory only, so keepalives cost no write. After a restart every lease gets its full
//! TTL again, as in etcd.
//!
//! The table holds the *decided* state, which runs ahead of the durable one by the batches
//! not yet durable. Normally that does not show: an answer waits for every batch decided
//! before it. While a sync-mode bucket is down those batches wait indefinitely, and lease
//! keepalives and queries are answered at once from the durable state instead (see
//! `Core::outage_lease_answer`); for that the table remembers, per lease, the changes whose
//! batch may not be durable yet (`LeaseTable::deciding`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::kv::{LeaseId, Revision};
use crate::request::LeaseTimeToLiveResponse;
use crate::time::Instant;

/// etcd's largest lease TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

/// etcd's minimum TTL with default timing (1.5 × election timeout of 1 s, rounded up).
pub const DEFAULT_MIN_LEASE_TTL: i64 = 2;

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// TTL in seconds it was granted with.
    pub ttl: i64,
    /// When it expires unless renewed.
    pub expiry: Instant,
    /// Keys attached to it.
    pub keys: BTreeSet<Bytes>,
}

/// Every live lease, with an expiry queue.
#[derive(Debug, Default)]
pub struct LeaseTable {
    leases: BTreeMap<LeaseId, Lease>,
    queue: BTreeSet<(Instant, LeaseId)>,
    /// The log index of the entry that the changes being decided now go into; 0 outside a
    /// decision (leases loaded from the store are durable).
    deciding: u64,
    /// Changes whose entry may not be durable yet, per lease, oldest first, with the log
    /// index of their entry.
    undurable: BTreeMap<LeaseId, VecDeque<(u64, Change)>>,
    /// The same changes in log order, to forget them once their entry is durable.
    undurable_order: VecDeque<(u64, LeaseId)>,
}

/// A change to a lease, remembered until its log entry is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Grant,
    Revoke,
    /// A key was attached or detached.
    Keys,
}

/// What the durable state says about one lease (see [`LeaseTable::durable`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durable {
    /// The table's lease is the durable one: its grant is durable and no revoke of it is
    /// decided.
    Live,
    /// No such lease, durable or decided.
    Absent,
    /// A grant or revoke of it is decided but may not be durable: the durable state and the
    /// table disagree, or may.
    Pending,
}

fn ttl_duration(ttl: i64) -> Duration {
    Duration::from_secs(u64::try_from(ttl).unwrap_or(0))
}

impl LeaseTable {
    /// Whether `id` is live.
    pub fn contains(&self, id: LeaseId) -> bool {
        self.leases.contains_key(&id)
    }

    /// The lease `id`.
    pub fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Ids of all live leases, ascending.
    pub fn ids(&self) -> Vec<LeaseId> {
        self.leases.keys().copied().collect()
    }

    /// Number of live leases.
    pub fn len(&self) -> usize {
        self.leases.len()
    }

    /// Whether there are no leases.
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty()
    }

    /// Starts a decision whose changes go into the log entry `index`, and forgets the
    /// changes of entries up to `durable` (they are durable now). Called by the core before
    /// it decides anything that may grant, revoke or (re)attach keys.
    pub(crate) fn deciding(&mut self, index: u64, durable: u64) {
        self.deciding = index;
        self.forget_durable(durable);
    }

    /// Forgets the remembered changes of entries up to `durable`.
    pub(crate) fn forget_durable(&mut self, durable: u64) {
        while let Some(&(index, id)) = self.undurable_order.front() {
            if index > durable {
                break;
            }
            self.undurable_order.pop_front();
            if let Some(changes) = self.undurable.get_mut(&id) {
                changes.pop_front();
                if changes.is_empty() {
                    self.undurable.remove(&id);
                }
            }
        }
    }

    fn remember(&mut self, id: LeaseId, change: Change) {
        if self.deciding == 0 {
            return;
        }
        let index = self.deciding;
        let changes = self.undurable.entry(id).or_default();
        if change == Change::Keys && changes.back() == Some(&(index, Change::Keys)) {
            return;
        }
        changes.push_back((index, change));
        self.undurable_order.push_back((index, id));
    }

    /// What the durable state says about `id`. Call [`LeaseTable::forget_durable`] with
    /// the durable index first.
    pub(crate) fn durable(&self, id: LeaseId) -> Durable {
        let pending = self
            .undurable
            .get(&id)
            .is_some_and(|c| c.iter().any(|(_, c)| *c != Change::Keys));
        if pending {
            Durable::Pending
        } else if self.leases.contains_key(&id) {
            Durable::Live
        } else {
            Durable::Absent
        }
    }

    /// Whether `id`'s attached keys are the durable ones (no attach or detach, grant or
    /// revoke of it is waiting for its entry). Call [`LeaseTable::forget_durable`] first.
    pub(crate) fn keys_durable(&self, id: LeaseId) -> bool {
        !self.undurable.contains_key(&id)
    }

    /// Ids of the leases live in the durable state, ascending: those whose grant is durable
    /// and not revoked, and those whose first undurable change is a revoke (it may not
    /// happen). Call [`LeaseTable::forget_durable`] first.
    pub(crate) fn durable_ids(&self) -> Vec<LeaseId> {
        let mut ids: BTreeSet<LeaseId> = self
            .leases
            .keys()
            .copied()
            .filter(|id| self.durable(*id) == Durable::Live)
            .collect();
        for (id, changes) in &self.undurable {
            let first = changes.iter().map(|(_, c)| *c).find(|c| *c != Change::Keys);
            if first == Some(Change::Revoke) {
                ids.insert(*id);
            }
        }
        ids.into_iter().collect()
    }

    /// Adds a lease expiring `ttl` seconds after `now`.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) {
        self.remember(id, Change::Grant);
        let expiry = now + ttl_duration(ttl);
        if let Some(old) = self.leases.insert(
            id,
            Lease {
                id,
                ttl,
                expiry,
                keys: BTreeSet::new(),
            },
        ) {
            self.queue.remove(&(old.expiry, id));
        }
        self.queue.insert((expiry, id));
    }

    /// Removes a lease, returning it.
    pub fn revoke(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        self.remember(id, Change::Revoke);
        self.queue.remove(&(lease.expiry, id));
        Some(lease)
    }

    /// Renews a lease to a full TTL from `now`; returns the TTL, or `None` if it is unknown.
    pub fn renew(&mut self, id: LeaseId, now: Instant) -> Option<i64> {
        let lease = self.leases.get_mut(&id)?;
        self.queue.remove(&(lease.expiry, id));
        lease.expiry = now + ttl_duration(lease.ttl);
        self.queue.insert((lease.expiry, id));
        Some(lease.ttl)
    }

    /// Seconds left before `id` expires (truncated, never negative).
    pub fn remaining(&self, id: LeaseId, now: Instant) -> Option<i64> {
        let lease = self.leases.get(&id)?;
        Some(lease.expiry.saturating_since(now).as_secs() as i64)
    }

    /// etcd's `LeaseTimeToLive` answer for `id` at `now` (TTL -1 for an unknown lease),
    /// with the attached keys if `keys`, under header `revision`.
    pub fn time_to_live(
        &self,
        id: LeaseId,
        keys: bool,
        now: Instant,
        revision: Revision,
    ) -> LeaseTimeToLiveResponse {
        match self.leases.get(&id) {
            Some(lease) => LeaseTimeToLiveResponse {
                revision,
                id,
                ttl: self.remaining(id, now).unwrap_or(0),
                granted_ttl: lease.ttl,
                keys: if keys {
                    lease.keys.iter().cloned().collect()
                } else {
                    Vec::new()
                },
            },
            None => LeaseTimeToLiveResponse {
                revision,
                id,
                ttl: -1,
                ..Default::default()
            },
        }
    }

    /// Attaches `key` to `id` (no-op for lease 0 or an unknown lease).
    pub fn attach(&mut self, id: LeaseId, key: &Bytes) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.clone());
            self.remember(id, Change::Keys);
        }
    }

    /// Detaches `key` from `id`.
    pub fn detach(&mut self, id: LeaseId, key: &Bytes) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
            self.remember(id, Change::Keys);
        }
    }

    /// The earliest expiry of any lease.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.queue.first().map(|(t, _)| *t)
    }

    /// Leases whose expiry is at or before `now`, earliest first.
    pub fn expired(&self, now: Instant) -> Vec<LeaseId> {
        self.queue
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn expiry_follows_the_injected_clock() {
        let mut t = LeaseTable::default();
        t.grant(7, 10, Instant(0));
        t.grant(8, 5, Instant(0));
        assert_eq!(t.next_expiry(), Some(Instant(5 * SEC)));
        assert!(t.expired(Instant(5 * SEC - 1)).is_empty());
        assert_eq!(t.expired(Instant(5 * SEC)), vec![8]);
        assert_eq!(t.expired(Instant(10 * SEC)), vec![8, 7]);
    }

    #[test]
    fn renewal_restarts_the_full_ttl() {
        let mut t = LeaseTable::default();
        t.grant(7, 10, Instant(0));
        assert_eq!(t.remaining(7, Instant(4 * SEC)), Some(6));
        assert_eq!(t.renew(7, Instant(4 * SEC)), Some(10));
        assert_eq!(t.remaining(7, Instant(4 * SEC)), Some(10));
        assert_eq!(t.next_expiry(), Some(Instant(14 * SEC)));
        assert!(t.expired(Instant(13 * SEC)).is_empty());
        assert_eq!(t.renew(99, Instant(0)), None);
    }

    #[test]
    fn the_durable_view_leaves_out_changes_whose_entry_is_not_durable() {
        let mut t = LeaseTable::default();
        // Loaded from the store: durable.
        t.grant(1, 10, Instant(0));
        t.attach(1, &Bytes::from_static(b"a"));
        // Entry 5 revokes lease 1 and grants it again; entry 6 revokes it again, grants it
        // again and grants lease 2.
        t.deciding(5, 4);
        t.revoke(1);
        t.grant(1, 10, Instant(0));
        t.deciding(6, 4);
        t.revoke(1);
        t.grant(1, 10, Instant(0));
        t.grant(2, 10, Instant(0));
        t.attach(2, &Bytes::from_static(b"b"));
        for durable in [4, 5] {
            t.forget_durable(durable);
            assert_eq!(t.durable(1), Durable::Pending, "durable up to {durable}");
            assert_eq!(t.durable(2), Durable::Pending);
            assert_eq!(t.durable_ids(), [1], "durable up to {durable}");
        }
        t.forget_durable(6);
        assert_eq!((t.durable(1), t.durable(2)), (Durable::Live, Durable::Live));
        assert_eq!(t.durable(3), Durable::Absent);
        assert_eq!(t.durable_ids(), [1, 2]);
        assert!(t.keys_durable(2));
        // A key attached in entry 7 leaves the lease live but its keys undecided.
        t.deciding(7, 6);
        t.attach(2, &Bytes::from_static(b"c"));
        t.detach(2, &Bytes::from_static(b"b"));
        assert_eq!(t.durable(2), Durable::Live);
        assert!(!t.keys_durable(2));
        t.forget_durable(7);
        assert!(t.keys_durable(2));
        assert!(t.undurable.is_empty() && t.undurable_order.is_empty());
    }

    #[test]
    fn revoke_returns_the_attached_keys_and_forgets_the_deadline() {
        let mut t = LeaseTable::default();
        t.grant(7, 10, Instant(0));
        t.attach(7, &Bytes::from_static(b"a"));
        t.attach(7, &Bytes::from_static(b"b"));
        t.detach(7, &Bytes::from_static(b"a"));
        let lease = t.revoke(7).unwrap();
        assert_eq!(
            lease.keys.into_iter().collect::<Vec<_>>(),
            vec![Bytes::from_static(b"b")]
        );
        assert_eq!(t.next_expiry(), None);
        assert!(!t.contains(7));
    }
}
