//! The bucket as a node sees it: the core's [`ObjectRequest`]s carried out against the
//! simulated object store, exactly as an adapter's S3 client would.
//!
//! * Keys are **relative** in the core; the adapter prepends the configured prefix
//!   (`docs/object-store-layout.md`), so two prefixes in one bucket never see each other.
//! * The adapter **retries** transient errors, outages and timeouts itself, with backoff, a
//!   bounded number of times ([`RETRIES`]); what still fails reaches the core as
//!   [`ObjectError::Unavailable`], whose outcome is unknown. A retried create whose first
//!   attempt happened although its answer was lost comes back `PreconditionFailed`: the core
//!   must re-read (DESIGN.md §6), and the simulator makes sure it has to.
//! * A `List` follows pagination in one request here (the simulated store lists atomically).
//!
//! One request travels to the store ([`request_delay`]), takes effect there at that instant
//! — even if the process that sent it has crashed or is paused meanwhile, as a real request
//! already on the wire would — and its answer comes back after the store's latency.

use bytes::Bytes;
use t4_core::Instant;
use t4_core::object::{
    ETag, ObjectError, ObjectMeta, ObjectRequest, ObjectResponse, PutMode as CorePutMode,
};

use crate::objstore::{self, ObjError, PutMode, SimObjectStore};
use crate::rng::SimRng;

/// How many times the adapter retries a request that failed transiently.
pub const RETRIES: u32 = 4;

/// The key of `relative` under `prefix` (already normalised: no leading or trailing `/`).
pub fn full_key(prefix: &str, relative: &str) -> String {
    if prefix.is_empty() {
        relative.to_string()
    } else {
        format!("{prefix}/{relative}")
    }
}

/// The time a request takes to reach the store.
pub fn request_delay(rng: &mut SimRng) -> u64 {
    rng.log_uniform(200_000, 5_000_000)
}

/// The backoff before retry number `attempt` (1-based), with jitter.
pub fn backoff(rng: &mut SimRng, attempt: u32) -> u64 {
    let base = 50_000_000u64 << attempt.min(6);
    rng.range(base / 2, base)
}

/// One attempt's result: the answer, and nanoseconds until the caller receives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    /// The store's answer.
    pub result: Result<ObjectResponse, ObjError>,
    /// When the answer arrives, from now.
    pub latency: u64,
}

impl Attempt {
    /// Whether the adapter retries this answer (a 5xx, an outage, a timeout).
    pub fn retryable(&self) -> bool {
        matches!(
            self.result,
            Err(ObjError::Transient | ObjError::Unavailable | ObjError::Timeout)
        )
    }
}

/// Performs one attempt of `request` at `now` under `prefix`.
pub fn attempt(
    store: &mut SimObjectStore,
    now: Instant,
    prefix: &str,
    request: &ObjectRequest,
) -> Attempt {
    let strip = |key: &str| -> String {
        if prefix.is_empty() {
            key.to_string()
        } else {
            key.strip_prefix(prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(key)
                .to_string()
        }
    };
    match request {
        ObjectRequest::Get { key } => {
            let r = store.get(now, &full_key(prefix, key));
            Attempt {
                result: r.result.map(|(bytes, etag)| ObjectResponse::Got {
                    bytes,
                    etag: ETag(etag.0),
                }),
                latency: r.latency,
            }
        }
        ObjectRequest::Put { key, bytes, mode } => {
            let mode = match mode {
                CorePutMode::Overwrite => PutMode::Overwrite,
                CorePutMode::Create => PutMode::IfAbsent,
                CorePutMode::Update(etag) => PutMode::IfMatch(objstore::ETag(etag.0.clone())),
            };
            let r = store.put(now, &full_key(prefix, key), Bytes::clone(bytes), mode);
            Attempt {
                result: r
                    .result
                    .map(|etag| ObjectResponse::Put { etag: ETag(etag.0) }),
                latency: r.latency,
            }
        }
        ObjectRequest::List { prefix: under } => {
            let r = store.list(now, &full_key(prefix, under), None, usize::MAX);
            Attempt {
                result: r.result.map(|objects| ObjectResponse::Listed {
                    objects: objects
                        .into_iter()
                        .map(|m| ObjectMeta {
                            key: strip(&m.key),
                            size: m.size as u64,
                        })
                        .collect(),
                }),
                latency: r.latency,
            }
        }
        ObjectRequest::DeleteMany { keys } => {
            let keys: Vec<String> = keys.iter().map(|k| full_key(prefix, k)).collect();
            let r = store.delete_many(now, &keys);
            Attempt {
                result: r.result.map(|()| ObjectResponse::Deleted),
                latency: r.latency,
            }
        }
    }
}

/// What the core is told when the adapter gives up or the store answered definitely.
pub fn to_core(result: Result<ObjectResponse, ObjError>) -> Result<ObjectResponse, ObjectError> {
    result.map_err(|e| match e {
        ObjError::NotFound => ObjectError::NotFound,
        ObjError::PreconditionFailed => ObjectError::PreconditionFailed,
        ObjError::Transient | ObjError::Unavailable | ObjError::Timeout => {
            ObjectError::Unavailable(format!("{e} (after {RETRIES} retries)"))
        }
    })
}

/// A short description of a request for the trace.
pub fn describe(request: &ObjectRequest) -> String {
    match request {
        ObjectRequest::Get { key } => format!("GET {key}"),
        ObjectRequest::Put { key, bytes, mode } => {
            let mode = match mode {
                CorePutMode::Overwrite => "",
                CorePutMode::Create => " if-absent",
                CorePutMode::Update(_) => " if-match",
            };
            format!("PUT{mode} {key} ({} bytes)", bytes.len())
        }
        ObjectRequest::List { prefix } => format!("LIST {prefix}"),
        ObjectRequest::DeleteMany { keys } => match keys.as_slice() {
            [key] => format!("DELETE {key}"),
            [first, .., last] => format!("DELETE {} keys {first} .. {last}", keys.len()),
            [] => "DELETE no keys".to_string(),
        },
    }
}

/// A short description of an answer for the trace.
pub fn describe_result(result: &Result<ObjectResponse, ObjError>) -> String {
    match result {
        Ok(ObjectResponse::Got { bytes, .. }) => format!("ok ({} bytes)", bytes.len()),
        Ok(ObjectResponse::Listed { objects }) => format!("ok ({} objects)", objects.len()),
        Ok(_) => "ok".to_string(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::objstore::ObjConfig;

    fn put(key: &str, data: &'static str, mode: CorePutMode) -> ObjectRequest {
        ObjectRequest::Put {
            key: key.into(),
            bytes: Bytes::from_static(data.as_bytes()),
            mode,
        }
    }

    #[test]
    fn keys_are_relative_to_the_prefix() {
        let mut s = SimObjectStore::new(SimRng::new(1), ObjConfig::default());
        let now = Instant::ZERO;
        assert!(
            attempt(&mut s, now, "t4", &put("wal/1", "a", CorePutMode::Create))
                .result
                .is_ok()
        );
        assert!(
            attempt(
                &mut s,
                now,
                "other",
                &put("wal/1", "b", CorePutMode::Create)
            )
            .result
            .is_ok()
        );
        assert_eq!(s.peek("t4/wal/1").unwrap(), "a");
        let listed = attempt(
            &mut s,
            now,
            "t4",
            &ObjectRequest::List {
                prefix: "wal/".into(),
            },
        );
        assert_eq!(
            listed.result,
            Ok(ObjectResponse::Listed {
                objects: vec![ObjectMeta {
                    key: "wal/1".into(),
                    size: 1
                }]
            })
        );
        assert_eq!(full_key("", "writer"), "writer");
    }

    #[test]
    fn a_bulk_delete_deletes_its_keys_under_the_prefix_only() {
        let mut s = SimObjectStore::new(SimRng::new(4), ObjConfig::default());
        let now = Instant::ZERO;
        for (prefix, key) in [
            ("t4", "wal/1"),
            ("t4", "wal/2"),
            ("t4", "seg/1"),
            ("x", "wal/1"),
        ] {
            let put = attempt(&mut s, now, prefix, &put(key, "v", CorePutMode::Create));
            assert!(put.result.is_ok());
        }
        let delete = ObjectRequest::DeleteMany {
            keys: vec!["wal/1".into(), "wal/2".into(), "wal/3".into()],
        };
        assert_eq!(
            to_core(attempt(&mut s, now, "t4", &delete).result),
            Ok(ObjectResponse::Deleted)
        );
        let left: Vec<&str> = s.objects().map(|(k, _)| k).collect();
        assert_eq!(left, ["t4/seg/1", "x/wal/1"]);
        assert_eq!(describe(&delete), "DELETE 3 keys wal/1 .. wal/3");
    }

    #[test]
    fn conditional_puts_map_to_s3_preconditions() {
        let mut s = SimObjectStore::new(SimRng::new(2), ObjConfig::default());
        let now = Instant::ZERO;
        let Ok(ObjectResponse::Put { etag }) =
            attempt(&mut s, now, "p", &put("writer", "1", CorePutMode::Create)).result
        else {
            panic!("create failed");
        };
        let again = attempt(&mut s, now, "p", &put("writer", "2", CorePutMode::Create));
        assert_eq!(to_core(again.result), Err(ObjectError::PreconditionFailed));
        let update = put("writer", "2", CorePutMode::Update(etag.clone()));
        assert!(attempt(&mut s, now, "p", &update).result.is_ok());
        let stale = put("writer", "3", CorePutMode::Update(etag));
        assert_eq!(
            to_core(attempt(&mut s, now, "p", &stale).result),
            Err(ObjectError::PreconditionFailed)
        );
        let missing = attempt(&mut s, now, "p", &ObjectRequest::Get { key: "x".into() });
        assert_eq!(to_core(missing.result), Err(ObjectError::NotFound));
    }

    #[test]
    fn transient_failures_are_retried_and_then_unknown() {
        let config = ObjConfig {
            ambiguous_ppm: 1_000_000,
            ..ObjConfig::default()
        };
        let mut s = SimObjectStore::new(SimRng::new(3), config);
        let a = attempt(
            &mut s,
            Instant::ZERO,
            "p",
            &put("k", "v", CorePutMode::Create),
        );
        assert!(a.retryable());
        let e = to_core(a.result).unwrap_err();
        assert!(e.outcome_unknown(), "{e}");
        assert_eq!(s.peek("p/k").unwrap(), "v");
    }
}
