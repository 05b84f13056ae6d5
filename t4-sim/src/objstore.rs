//! A simulated S3-compatible object store.
//!
//! It keeps S3's semantics that t4's design leans on (DESIGN.md §6):
//!
//! * objects carry an **ETag that is a hash of their bytes**, so writing identical bytes twice
//!   gives the same ETag;
//! * **put-if-absent** (`If-None-Match: *`) fails with `PreconditionFailed` when the key
//!   exists, and **put-if-match** (`If-Match: etag`) fails unless the current ETag matches;
//! * **list** returns keys in lexicographic (byte) order, from a prefix, after an optional
//!   start-after key, in pages;
//!
//! and its failures:
//!
//! * every request takes time (log-uniform latency, some slow);
//! * **transient errors** (HTTP 500/503) that did nothing;
//! * **outages**: a window during which every request fails;
//! * **ambiguous outcomes**: the PUT (or DELETE) happened but its answer was lost, so the
//!   caller sees a timeout. A caller that treats this as "did not happen" is wrong — t4 must
//!   re-read before deciding (DESIGN.md §6). A bulk DELETE whose answer is lost may have
//!   deleted any subset of its keys (S3 deletes them one by one).
//!
//! The store is a small deterministic state machine: every request is a call that returns its
//! outcome and the latency after which the caller may learn it. Its only randomness is its own
//! [`SimRng`].

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;

use bytes::Bytes;
use t4_core::Instant;

use crate::rng::SimRng;
use crate::trace::fnv64;

/// An object's entity tag: a hash of its contents.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ETag(pub String);

impl ETag {
    /// The ETag S3 would give `data` (here: a stable 64-bit hash, quoted like S3's).
    pub fn of(data: &[u8]) -> ETag {
        ETag(format!("\"{:016x}\"", fnv64(data)))
    }
}

/// How a PUT treats an existing object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutMode {
    /// Replace whatever is there.
    Overwrite,
    /// Only create (`If-None-Match: *`).
    IfAbsent,
    /// Only replace the version with this ETag (`If-Match`).
    IfMatch(ETag),
}

/// Why a request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ObjError {
    /// No such key (GET).
    NotFound,
    /// The put's condition did not hold (HTTP 412).
    PreconditionFailed,
    /// A server error that changed nothing; retrying may succeed.
    Transient,
    /// The store was unreachable (an outage); nothing happened.
    Unavailable,
    /// The request timed out: it may or may not have taken effect.
    Timeout,
}

impl fmt::Display for ObjError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjError::NotFound => "object not found",
            ObjError::PreconditionFailed => "precondition failed (412)",
            ObjError::Transient => "internal error (500); nothing was done",
            ObjError::Unavailable => "service unavailable (503)",
            ObjError::Timeout => "request timed out; the outcome is unknown",
        })
    }
}

/// One listed object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Its key.
    pub key: String,
    /// Its size in bytes.
    pub size: usize,
    /// Its ETag.
    pub etag: ETag,
}

/// How the object store misbehaves; chosen per run by the fault plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjConfig {
    /// Usual request latency bounds, in nanoseconds.
    pub latency: (u64, u64),
    /// Chance of a slow request, in parts per million.
    pub slow_ppm: u32,
    /// Latency bounds of a slow request.
    pub slow_latency: (u64, u64),
    /// Chance of a transient error that did nothing.
    pub error_ppm: u32,
    /// Chance that a mutating request takes effect but its answer is lost.
    pub ambiguous_ppm: u32,
    /// Windows `[start, end)` during which the store is unreachable.
    pub outages: Vec<(Instant, Instant)>,
    /// A **lying** store: the chance that a successful create (`If-None-Match: *`) is
    /// acknowledged but the object is silently dropped. A correct system cannot survive
    /// this; the simulator must report it (`--lying-bucket`).
    pub lose_created_ppm: u32,
}

impl Default for ObjConfig {
    fn default() -> ObjConfig {
        ObjConfig {
            latency: (5_000_000, 60_000_000),
            slow_ppm: 0,
            slow_latency: (500_000_000, 10_000_000_000),
            error_ppm: 0,
            ambiguous_ppm: 0,
            outages: Vec::new(),
            lose_created_ppm: 0,
        }
    }
}

/// The outcome of a request and when the caller learns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply<T> {
    /// The outcome.
    pub result: Result<T, ObjError>,
    /// Nanoseconds until the answer arrives.
    pub latency: u64,
}

#[derive(Clone, Debug)]
struct Object {
    data: Bytes,
    etag: ETag,
}

/// A bucket shared by the nodes of a run and the checkers that look into it.
pub type SharedStore = std::sync::Arc<std::sync::Mutex<SimObjectStore>>;

/// Locks a shared bucket (a poisoned lock still holds a usable store).
pub fn lock_store(store: &SharedStore) -> std::sync::MutexGuard<'_, SimObjectStore> {
    store.lock().unwrap_or_else(|e| e.into_inner())
}

/// The bucket.
#[derive(Clone, Debug)]
pub struct SimObjectStore {
    rng: SimRng,
    config: ObjConfig,
    objects: BTreeMap<String, Object>,
    /// Requests served, by kind: get, put, list, delete.
    pub requests: [u64; 4],
    /// Creates acknowledged and dropped by a lying store.
    pub dropped: u64,
}

enum Fate {
    Fail(ObjError),
    Apply,
    ApplyButLoseAnswer,
}

impl SimObjectStore {
    /// An empty bucket.
    pub fn new(rng: SimRng, config: ObjConfig) -> SimObjectStore {
        SimObjectStore {
            rng,
            config,
            objects: BTreeMap::new(),
            requests: [0; 4],
            dropped: 0,
        }
    }

    /// The store's behaviour.
    pub fn config(&self) -> &ObjConfig {
        &self.config
    }

    /// Stops injecting faults (the end of a run's fault phase); a lying store keeps lying.
    pub fn calm(&mut self) {
        self.config.slow_ppm = 0;
        self.config.error_ppm = 0;
        self.config.ambiguous_ppm = 0;
        self.config.outages.clear();
    }

    /// A fault-free store holding a copy of this one's objects, for checkers: what a fresh
    /// node would find in the bucket right now.
    pub fn snapshot(&self) -> SimObjectStore {
        SimObjectStore {
            rng: SimRng::new(0),
            config: ObjConfig {
                latency: (0, 0),
                ..ObjConfig::default()
            },
            objects: self.objects.clone(),
            requests: [0; 4],
            dropped: 0,
        }
    }

    /// Every object's key and contents, in key order, bypassing faults (for checkers).
    pub fn objects(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.objects.iter().map(|(k, o)| (k.as_str(), &o.data))
    }

    /// Removes `key`, bypassing faults (for tests that build a known-bad bucket).
    pub fn remove(&mut self, key: &str) -> bool {
        self.objects.remove(key).is_some()
    }

    /// Stores `key` = `data`, bypassing faults (for tests that build a known-bad bucket).
    pub fn insert(&mut self, key: &str, data: Bytes) {
        let etag = ETag::of(&data);
        self.objects.insert(key.to_string(), Object { data, etag });
    }

    fn latency(&mut self) -> u64 {
        if self.rng.chance(self.config.slow_ppm) {
            let (lo, hi) = self.config.slow_latency;
            self.rng.log_uniform(lo, hi)
        } else {
            let (lo, hi) = self.config.latency;
            self.rng.log_uniform(lo, hi)
        }
    }

    fn in_outage(&self, now: Instant) -> bool {
        self.config
            .outages
            .iter()
            .any(|(start, end)| *start <= now && now < *end)
    }

    fn fate(&mut self, now: Instant, mutating: bool) -> Fate {
        if self.in_outage(now) {
            return Fate::Fail(ObjError::Unavailable);
        }
        if self.rng.chance(self.config.error_ppm) {
            return Fate::Fail(ObjError::Transient);
        }
        if mutating && self.rng.chance(self.config.ambiguous_ppm) {
            return Fate::ApplyButLoseAnswer;
        }
        Fate::Apply
    }

    /// GET `key`.
    pub fn get(&mut self, now: Instant, key: &str) -> Reply<(Bytes, ETag)> {
        self.requests[0] += 1;
        let latency = self.latency();
        let result = match self.fate(now, false) {
            Fate::Fail(e) => Err(e),
            _ => self
                .objects
                .get(key)
                .map(|o| (o.data.clone(), o.etag.clone()))
                .ok_or(ObjError::NotFound),
        };
        Reply { result, latency }
    }

    /// PUT `key` = `data` with `mode`; returns the new ETag.
    pub fn put(&mut self, now: Instant, key: &str, data: Bytes, mode: PutMode) -> Reply<ETag> {
        self.requests[1] += 1;
        let latency = self.latency();
        let fate = self.fate(now, true);
        let result = match fate {
            Fate::Fail(e) => Err(e),
            Fate::Apply | Fate::ApplyButLoseAnswer => {
                let applied = self.apply_put(key, data, &mode);
                match (fate, applied) {
                    (Fate::ApplyButLoseAnswer, Ok(_)) => Err(ObjError::Timeout),
                    (_, r) => r,
                }
            }
        };
        Reply { result, latency }
    }

    fn apply_put(&mut self, key: &str, data: Bytes, mode: &PutMode) -> Result<ETag, ObjError> {
        let current = self.objects.get(key).map(|o| &o.etag);
        let allowed = match mode {
            PutMode::Overwrite => true,
            PutMode::IfAbsent => current.is_none(),
            PutMode::IfMatch(etag) => current == Some(etag),
        };
        if !allowed {
            return Err(ObjError::PreconditionFailed);
        }
        let etag = ETag::of(&data);
        if *mode == PutMode::IfAbsent && self.rng.chance(self.config.lose_created_ppm) {
            self.dropped += 1;
            return Ok(etag);
        }
        self.objects.insert(
            key.to_string(),
            Object {
                data,
                etag: etag.clone(),
            },
        );
        Ok(etag)
    }

    /// LIST keys starting with `prefix`, after `start_after` (exclusive), at most `limit`.
    pub fn list(
        &mut self,
        now: Instant,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
    ) -> Reply<Vec<ObjectMeta>> {
        self.requests[2] += 1;
        let latency = self.latency();
        let result = match self.fate(now, false) {
            Fate::Fail(e) => Err(e),
            _ => {
                let lower = match start_after {
                    Some(s) if s >= prefix => Bound::Excluded(s.to_string()),
                    _ => Bound::Included(prefix.to_string()),
                };
                Ok(self
                    .objects
                    .range((lower, Bound::Unbounded))
                    .take_while(|(k, _)| k.starts_with(prefix))
                    .take(limit)
                    .map(|(k, o)| ObjectMeta {
                        key: k.clone(),
                        size: o.data.len(),
                        etag: o.etag.clone(),
                    })
                    .collect())
            }
        };
        Reply { result, latency }
    }

    /// DELETE `keys` in one request (S3 `DeleteObjects`; deleting a missing key succeeds).
    /// It succeeds only when every key is gone; when its answer is lost, each key may or may
    /// not have been deleted.
    pub fn delete_many(&mut self, now: Instant, keys: &[String]) -> Reply<()> {
        self.requests[3] += 1;
        let latency = self.latency();
        let result = match self.fate(now, true) {
            Fate::Fail(e) => Err(e),
            Fate::Apply => {
                for key in keys {
                    self.objects.remove(key);
                }
                Ok(())
            }
            Fate::ApplyButLoseAnswer => {
                for key in keys {
                    if self.rng.chance(500_000) {
                        self.objects.remove(key);
                    }
                }
                Err(ObjError::Timeout)
            }
        };
        Reply { result, latency }
    }

    /// Number of objects held.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether the bucket is empty.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// The contents of `key`, bypassing faults (for checkers).
    pub fn peek(&self, key: &str) -> Option<&Bytes> {
        self.objects.get(key).map(|o| &o.data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SimObjectStore {
        SimObjectStore::new(SimRng::new(1), ObjConfig::default())
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    const T: Instant = Instant(0);

    #[test]
    fn etags_are_content_hashes() {
        let mut s = store();
        let e1 = s.put(T, "a", b("x"), PutMode::Overwrite).result.unwrap();
        let e2 = s.put(T, "b", b("x"), PutMode::Overwrite).result.unwrap();
        let e3 = s.put(T, "a", b("y"), PutMode::Overwrite).result.unwrap();
        assert_eq!(e1, e2);
        assert_ne!(e1, e3);
        assert_eq!(s.get(T, "a").result.unwrap(), (b("y"), e3));
    }

    #[test]
    fn put_if_absent_creates_once() {
        let mut s = store();
        assert!(s.put(T, "lock", b("1"), PutMode::IfAbsent).result.is_ok());
        assert_eq!(
            s.put(T, "lock", b("2"), PutMode::IfAbsent).result,
            Err(ObjError::PreconditionFailed)
        );
        assert_eq!(s.get(T, "lock").result.unwrap().0, "1");
    }

    #[test]
    fn put_if_match_fences_a_stale_writer() {
        let mut s = store();
        let v1 = s.put(T, "m", b("gen1"), PutMode::IfAbsent).result.unwrap();
        let v2 = s
            .put(T, "m", b("gen2"), PutMode::IfMatch(v1.clone()))
            .result
            .unwrap();
        // A zombie still holding v1 cannot overwrite gen2.
        assert_eq!(
            s.put(T, "m", b("zombie"), PutMode::IfMatch(v1)).result,
            Err(ObjError::PreconditionFailed)
        );
        assert_eq!(
            s.put(T, "missing", b("x"), PutMode::IfMatch(v2.clone()))
                .result,
            Err(ObjError::PreconditionFailed)
        );
        assert_eq!(s.get(T, "m").result.unwrap(), (b("gen2"), v2));
    }

    #[test]
    fn list_is_lexicographic_prefixed_and_paged() {
        let mut s = store();
        for k in ["p/b", "p/a", "q/a", "p/c", "o"] {
            s.put(T, k, b("x"), PutMode::Overwrite);
        }
        let keys = |r: Reply<Vec<ObjectMeta>>| -> Vec<String> {
            r.result.unwrap().into_iter().map(|m| m.key).collect()
        };
        assert_eq!(keys(s.list(T, "p/", None, 10)), vec!["p/a", "p/b", "p/c"]);
        assert_eq!(keys(s.list(T, "p/", None, 2)), vec!["p/a", "p/b"]);
        assert_eq!(keys(s.list(T, "p/", Some("p/b"), 10)), vec!["p/c"]);
        assert_eq!(keys(s.list(T, "", Some("p/c"), 10)), vec!["q/a"]);
    }

    #[test]
    fn an_ambiguous_put_happened_although_the_caller_saw_a_timeout() {
        let config = ObjConfig {
            ambiguous_ppm: 1_000_000,
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(2), config);
        assert_eq!(
            s.put(T, "k", b("v"), PutMode::IfAbsent).result,
            Err(ObjError::Timeout)
        );
        assert_eq!(s.peek("k").unwrap(), "v");
        // The caller must re-read: a retried put-if-absent now fails its precondition.
        assert_eq!(
            s.put(T, "k", b("v"), PutMode::IfAbsent).result,
            Err(ObjError::PreconditionFailed)
        );
    }

    #[test]
    fn a_bulk_delete_removes_every_key_and_ignores_missing_ones() {
        let mut s = store();
        for k in ["a", "b", "c"] {
            s.put(T, k, b("x"), PutMode::Overwrite);
        }
        let keys = ["a".to_string(), "c".to_string(), "missing".to_string()];
        assert_eq!(s.delete_many(T, &keys).result, Ok(()));
        assert_eq!(s.objects().map(|(k, _)| k).collect::<Vec<_>>(), ["b"]);
        assert_eq!(s.requests[3], 1, "one request");
    }

    #[test]
    fn a_bulk_delete_whose_answer_is_lost_may_have_deleted_only_some_keys() {
        let config = ObjConfig {
            ambiguous_ppm: 1_000_000,
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(6), config);
        let keys: Vec<String> = (0..32).map(|i| format!("k{i:02}")).collect();
        for k in &keys {
            s.insert(k, b("x"));
        }
        assert_eq!(s.delete_many(T, &keys).result, Err(ObjError::Timeout));
        let left = s.len();
        assert!(
            0 < left && left < keys.len(),
            "{left} of {} keys left: a lost answer hides a partial delete",
            keys.len()
        );
    }

    #[test]
    fn transient_errors_and_outages_change_nothing() {
        let config = ObjConfig {
            error_ppm: 1_000_000,
            outages: vec![(Instant(100), Instant(200))],
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(3), config);
        assert_eq!(
            s.put(T, "k", b("v"), PutMode::Overwrite).result,
            Err(ObjError::Transient)
        );
        assert!(s.is_empty());
        assert_eq!(s.get(Instant(150), "k").result, Err(ObjError::Unavailable));
    }

    #[test]
    fn a_lying_store_acknowledges_a_create_and_drops_it() {
        let config = ObjConfig {
            lose_created_ppm: 1_000_000,
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(4), config);
        assert!(s.put(T, "k", b("v"), PutMode::IfAbsent).result.is_ok());
        assert_eq!(s.get(T, "k").result, Err(ObjError::NotFound));
        assert_eq!(s.dropped, 1);
        // Overwrites are kept: the lie is only about creates.
        assert!(s.put(T, "m", b("v"), PutMode::Overwrite).result.is_ok());
        assert_eq!(s.peek("m").unwrap(), "v");
    }

    #[test]
    fn a_snapshot_is_a_fault_free_copy() {
        let config = ObjConfig {
            error_ppm: 1_000_000,
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(5), config);
        s.objects.insert(
            "k".into(),
            Object {
                data: b("v"),
                etag: ETag::of(b"v"),
            },
        );
        let mut copy = s.snapshot();
        assert_eq!(copy.get(T, "k").result.unwrap().0, "v");
        assert!(copy.put(T, "k2", b("w"), PutMode::IfAbsent).result.is_ok());
        assert!(s.peek("k2").is_none());
    }

    #[test]
    fn latency_is_seeded() {
        let mut a = store();
        let mut c = store();
        for _ in 0..20 {
            let (x, y) = (a.get(T, "k").latency, c.get(T, "k").latency);
            assert_eq!(x, y);
            assert!((5_000_000..=60_000_000).contains(&x));
        }
    }
}
