//! Leases: TTLs, expiry decided from `now`, and the keys attached to each lease.
//!
//! Lease *existence* is durable (grants and revokes are log entries); expiry deadlines are
//! leader memory only, so keepalives cost no write. After a restart every lease gets its full
//! TTL again, as in etcd.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;

use crate::kv::LeaseId;
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

    /// Adds a lease expiring `ttl` seconds after `now`.
    pub fn grant(&mut self, id: LeaseId, ttl: i64, now: Instant) {
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

    /// Attaches `key` to `id` (no-op for lease 0 or an unknown lease).
    pub fn attach(&mut self, id: LeaseId, key: &Bytes) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.clone());
        }
    }

    /// Detaches `key` from `id`.
    pub fn detach(&mut self, id: LeaseId, key: &Bytes) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.remove(key);
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
