//! The core against a reference model of etcd's semantics.
//!
//! Random sequences of requests, plain reads, clock jumps, restarts and crashes run through
//! a [`Driver`] (the core plus a fake WAL directory and a [`MemStore`]) and, independently,
//! through [`Model`] (`etcd.rs`), a deliberately naive etcd. Every reply, every plain read,
//! every published event, the revision, the leases and — after restarts and at the end —
//! every retained revision and the watch replay must be identical.
//!
//! A failure prints the shrunk case and a `T4_SEED=…` that replays the run;
//! `PROPTEST_CASES=n` runs longer, `T4_MODEL_STATS=1` prints how often each behaviour occurred.
//!
//! [`MemStore`]: t4_core::mvcc::MemStore

#[path = "../support/mod.rs"]
mod support;

mod etcd;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
use t4_core::kv::KeyRange;
use t4_core::mvcc;
use t4_core::request::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, ResponseOp, SortOrder, SortTarget, TxnRequest,
};
use t4_core::watch::{self, WatchFilter};
use t4_core::{Action, Config, Error, Event, ReadView, Request, Response, Store};

use etcd::{MAX_TTL, Model};
use support::{Driver, b};

/// A small `--max-txn-ops` so that the limit is hit, nested levels included.
const MAX_OPS: usize = 6;

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

const KEYS: [&[u8]; 6] = [b"a", b"a/x", b"b", b"c", b"\x00k", b"\xff\x01"];
const ENDS: [&[u8]; 7] = [b"a", b"a/", b"b", b"b\x00", b"c", b"d", b"\xff\x02"];
const PREFIXES: [&[u8]; 5] = [b"a", b"a/", b"b", b"\x00", b"\xff"];
const VALUES: [&[u8]; 4] = [b"", b"v1", b"v2", b"zz"];
const TTLS: [i64; 8] = [-1, 0, 1, 2, 3, 5, MAX_TTL, MAX_TTL + 1];

/// etcd's `GetPrefixRangeEnd`.
fn prefix_end(prefix: &[u8]) -> Bytes {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Bytes::from(end);
        }
    }
    b("\0")
}

fn key() -> impl Strategy<Value = Bytes> {
    prop_oneof![
        30 => select(KEYS.to_vec()).prop_map(b),
        1 => Just(Bytes::new()),
    ]
}

/// One key, a span (possibly inverted), a prefix, from-key, or everything.
fn key_range() -> impl Strategy<Value = (Bytes, Bytes)> {
    prop_oneof![
        3 => key().prop_map(|k| (k, Bytes::new())),
        2 => (key(), select(ENDS.to_vec())).prop_map(|(k, e)| (k, b(e))),
        2 => select(PREFIXES.to_vec()).prop_map(|p| (b(p), prefix_end(p))),
        1 => key().prop_map(|k| (k, b("\0"))),
        2 => Just((b("\0"), b("\0"))),
    ]
}

fn some_revision() -> impl Strategy<Value = i64> {
    prop_oneof![3 => Just(0i64), 2 => 1i64..=12]
}

fn range_request() -> impl Strategy<Value = RangeRequest> {
    let sort = prop_oneof![
        3 => Just((SortOrder::None, SortTarget::Key)),
        2 => (
            select(vec![SortOrder::None, SortOrder::Ascend, SortOrder::Descend]),
            select(vec![
                SortTarget::Key,
                SortTarget::Version,
                SortTarget::Create,
                SortTarget::Mod,
                SortTarget::Value,
            ]),
        ),
    ];
    let filter = || prop_oneof![6 => Just(0i64), 1 => 1i64..=12];
    (
        key_range(),
        select(vec![0i64, 0, 1, 2, 3, -1]),
        some_revision(),
        sort,
        (prop::bool::weighted(0.2), prop::bool::weighted(0.1)),
        (filter(), filter(), filter(), filter()),
    )
        .prop_map(
            |(
                (key, range_end),
                limit,
                revision,
                (sort_order, sort_target),
                (keys_only, count_only),
                (min_mod, max_mod, min_create, max_create),
            )| RangeRequest {
                key,
                range_end,
                limit,
                revision,
                sort_order,
                sort_target,
                serializable: false,
                keys_only,
                count_only,
                min_mod_revision: min_mod,
                max_mod_revision: max_mod,
                min_create_revision: min_create,
                max_create_revision: max_create,
            },
        )
}

/// A lease to attach or compare: none, one of the ids tests grant, or one never granted.
fn lease_ref() -> impl Strategy<Value = i64> {
    prop_oneof![6 => Just(0i64), 3 => 1i64..=3, 1 => Just(9i64)]
}

fn lease_id() -> impl Strategy<Value = i64> {
    prop_oneof![3 => 1i64..=3, 1 => Just(9i64)]
}

fn put_request() -> impl Strategy<Value = PutRequest> {
    (
        key(),
        select(VALUES.to_vec()),
        lease_ref(),
        any::<bool>(),
        (prop::bool::weighted(0.15), prop::bool::weighted(0.15)),
        // Sometimes keep a value / lease next to an ignore flag, which etcd refuses.
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(key, value, lease, prev_kv, (ignore_value, ignore_lease), sloppy)| PutRequest {
                key,
                value: if ignore_value && !sloppy {
                    Bytes::new()
                } else {
                    b(value)
                },
                lease: if ignore_lease && !sloppy { 0 } else { lease },
                prev_kv,
                ignore_value,
                ignore_lease,
            },
        )
}

fn delete_request() -> impl Strategy<Value = DeleteRangeRequest> {
    (key_range(), any::<bool>()).prop_map(|((key, range_end), prev_kv)| DeleteRangeRequest {
        key,
        range_end,
        prev_kv,
    })
}

fn compare_request() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        (0i64..=3).prop_map(CompareTarget::Version),
        (0i64..=12).prop_map(CompareTarget::Create),
        (0i64..=12).prop_map(CompareTarget::Mod),
        select(VALUES.to_vec()).prop_map(|v| CompareTarget::Value(b(v))),
        lease_ref().prop_map(CompareTarget::Lease),
    ];
    (
        prop_oneof![4 => key().prop_map(|k| (k, Bytes::new())), 1 => key_range()],
        select(vec![
            CompareResult::Equal,
            CompareResult::NotEqual,
            CompareResult::Greater,
            CompareResult::Less,
        ]),
        target,
    )
        .prop_map(|((key, range_end), result, target)| Compare {
            result,
            target,
            key,
            range_end,
        })
}

fn txn_request(depth: u32) -> BoxedStrategy<TxnRequest> {
    let leaf = prop_oneof![
        2 => range_request().prop_map(RequestOp::Range),
        3 => put_request().prop_map(RequestOp::Put),
        2 => delete_request().prop_map(RequestOp::DeleteRange),
    ];
    let op = if depth == 0 {
        leaf.boxed()
    } else {
        prop_oneof![6 => leaf, 1 => txn_request(depth - 1).prop_map(RequestOp::Txn)].boxed()
    };
    // Nested levels are smaller (each level may use only what its parents left of
    // MAX_OPS); now and then a level has one more than MAX_OPS.
    let most = if depth == 2 { 3 } else { 2 };
    let ops = prop_oneof![
        100 => prop::collection::vec(op.clone(), 0..=most),
        1 => prop::collection::vec(op, MAX_OPS + 1),
    ];
    let compares = prop_oneof![
        100 => prop::collection::vec(compare_request(), 0..=most),
        1 => prop::collection::vec(compare_request(), MAX_OPS + 1),
    ];
    (compares, ops.clone(), ops)
        .prop_map(|(compare, success, failure)| TxnRequest {
            compare,
            success,
            failure,
        })
        .boxed()
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        6 => put_request().prop_map(Request::Put),
        3 => delete_request().prop_map(Request::DeleteRange),
        6 => txn_request(2).prop_map(Request::Txn),
        1 => (1i64..=12, any::<bool>())
            .prop_map(|(revision, physical)| Request::Compact(CompactRequest { revision, physical })),
        3 => (prop_oneof![Just(0i64), 1i64..=3], select(TTLS.to_vec()))
            .prop_map(|(id, ttl)| Request::LeaseGrant { id, ttl }),
        1 => lease_id().prop_map(|id| Request::LeaseRevoke { id }),
        1 => lease_id().prop_map(|id| Request::LeaseKeepAlive { id }),
        1 => (lease_id(), any::<bool>())
            .prop_map(|(id, keys)| Request::LeaseTimeToLive { id, keys }),
        1 => Just(Request::LeaseLeases),
    ]
}

/// A request for a batch: the model learns a generated lease id only from the reply, which a
/// batch delays, so batches grant fixed ids.
fn batch_request() -> impl Strategy<Value = Request> {
    request().prop_map(|r| match r {
        Request::LeaseGrant { id: 0, ttl } => Request::LeaseGrant { id: 3, ttl },
        r => r,
    })
}

#[derive(Clone, Debug)]
enum Step {
    /// One request, its IO completed at once.
    One(Request),
    /// Several requests submitted before any IO completes (group commit).
    Batch(Vec<Request>),
    /// A plain read, served from the store like adapters do.
    Read(RangeRequest),
    /// Move the clock (milliseconds) and run due timers.
    Advance(u64),
    /// Stop and reopen from the WAL, over the same store or a crash image of it.
    Restart { crash_image: Option<usize> },
    /// Submit requests, then crash while the first append is in flight: it reaches the disk
    /// whole (`keep: None`) or torn after `keep/255` of its bytes.
    Crash {
        requests: Vec<Request>,
        keep: Option<u8>,
        crash_image: usize,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        12 => request().prop_map(Step::One),
        3 => prop::collection::vec(batch_request(), 2..=5).prop_map(Step::Batch),
        4 => range_request().prop_map(Step::Read),
        2 => select(vec![100u64, 1000, 1500, 2000, 3000, 6000]).prop_map(Step::Advance),
        1 => prop::option::of(0usize..4).prop_map(|crash_image| Step::Restart { crash_image }),
        1 => (
            prop::collection::vec(batch_request(), 1..=4),
            prop::option::of(0u8..255),
            0usize..4,
        )
            .prop_map(|(requests, keep, crash_image)| Step::Crash {
                requests,
                keep,
                crash_image,
            }),
    ]
}

// ---------------------------------------------------------------------------------------
// The runner
// ---------------------------------------------------------------------------------------

fn config() -> Config {
    Config {
        max_txn_ops: MAX_OPS,
        // Small segments, so that rotation, persist and WAL deletion happen in most cases.
        segment_max_bytes: 400,
        segment_max_age: Duration::from_secs(5),
        ..Config::default()
    }
}

/// What must hold after every step (all IO completed but, after a restart, a persist).
fn check(d: &Driver, m: &Model, unpublished: &BTreeSet<i64>) -> Result<(), TestCaseError> {
    prop_assert!(d.failures.is_empty(), "core failed: {:?}", d.failures);
    let only_persists = d
        .pending
        .iter()
        .all(|io| matches!(io, support::Io::Persist { .. }));
    prop_assert!(only_persists, "pending IO {:?}", d.pending);
    prop_assert!(d.replies.is_empty(), "unexpected replies {:?}", d.replies);
    prop_assert_eq!(d.core.revision(), m.rev());
    prop_assert_eq!(d.store.view().revision(), m.rev());

    // Watch events: every committed revision's events, in order, each revision in one
    // Publish (revisions recovered from an unacknowledged append are never published live).
    let want: Vec<Event> = m
        .events
        .iter()
        .filter(|e| !unpublished.contains(&e.kv.mod_revision))
        .cloned()
        .collect();
    prop_assert_eq!(d.events(), want);
    let mut last = 0;
    for batch in &d.published {
        prop_assert!(!batch.is_empty());
        prop_assert!(
            batch[0].revision() > last,
            "a revision split across publishes"
        );
        for pair in batch.windows(2) {
            prop_assert!(pair[0].revision() <= pair[1].revision());
        }
        last = batch[batch.len() - 1].revision();
    }

    // Leases and their keys.
    let leases = d.core.leases();
    prop_assert_eq!(leases.ids(), m.leases.keys().copied().collect::<Vec<_>>());
    for id in m.leases.keys() {
        let lease = leases.get(*id).expect("ids match");
        prop_assert_eq!(
            lease.keys.iter().cloned().collect::<Vec<_>>(),
            m.lease_keys(*id)
        );
        prop_assert_eq!(lease.ttl, m.leases[id].ttl);
    }
    Ok(())
}

/// Every retained revision and the watch replay of all retained history match the model.
fn check_history(d: &Driver, m: &Model) -> Result<(), TestCaseError> {
    let view = d.store.view();
    prop_assert_eq!(view.compact_revision(), m.compacted);
    let everything = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    for revision in m.compacted.max(1)..=m.rev() {
        let r = RangeRequest {
            revision,
            ..everything.clone()
        };
        prop_assert_eq!(
            mvcc::range(&view, &r),
            m.range(&r),
            "at revision {}",
            revision
        );
    }
    if m.compacted > 1 {
        let r = RangeRequest {
            revision: m.compacted - 1,
            ..everything.clone()
        };
        prop_assert_eq!(mvcc::range(&view, &r), Err(Error::Compacted));
    }

    let from = m.compacted.max(1);
    let filter = WatchFilter {
        range: KeyRange::From(Bytes::new()),
        no_put: false,
        no_delete: false,
        prev_kv: true,
    };
    let replay = watch::replay(&view, &filter, from, usize::MAX).expect("retained history replays");
    // A previous pair at a compacted revision is gone, as in etcd.
    let want: Vec<Event> = m
        .events
        .iter()
        .filter(|e| e.revision() >= from)
        .map(|e| {
            let mut e = e.clone();
            if e.revision() - 1 < m.compacted {
                e.prev_kv = None;
            }
            e
        })
        .collect();
    prop_assert_eq!(replay.events, want);
    Ok(())
}

/// Runs one case. `io_order` chooses which pending IO completes next (cycled; empty = oldest
/// first), so persists and compactions also finish after later appends.
fn run(
    (steps, io_order): (Vec<Step>, Vec<u8>),
    seen: &mut BTreeMap<String, usize>,
) -> Result<(), TestCaseError> {
    let mut picks = io_order.into_iter().cycle();
    let mut settle = |d: &mut Driver| d.settle_in_order(|_| picks.next().map_or(0, usize::from));
    let mut d = Driver::new(config());
    let mut m = Model::new(MAX_OPS);
    let mut unpublished = BTreeSet::new();
    let mut see = |label: &str| *seen.entry(label.to_string()).or_default() += 1;
    for step in steps {
        let now = d.now.as_nanos();
        match step {
            Step::One(req) => {
                let id = d.submit(req.clone());
                settle(&mut d);
                let got = d.take_reply(id);
                let generated = match (&req, &got) {
                    (Request::LeaseGrant { id: 0, .. }, Some(Ok(Response::LeaseGrant(r)))) => {
                        prop_assert!(r.id > 0, "generated lease id {}", r.id);
                        prop_assert!(!m.leases.contains_key(&r.id), "reused id {}", r.id);
                        Some(r.id)
                    }
                    _ => None,
                };
                let want = m.apply(&req, now, generated);
                label(&req, &want).iter().for_each(|l| see(l));
                prop_assert_eq!(got, Some(want), "reply to {:?}", req);
            }
            Step::Batch(reqs) => {
                let before = m.clone();
                let mut want = Vec::new();
                for req in &reqs {
                    let id = d.submit(req.clone());
                    want.push((id, m.apply(req, now, None), req));
                }
                prop_assert!(d.pending_appends() <= 1, "one append at a time");
                // Reads never see decided writes before they are durable.
                let everything = RangeRequest {
                    key: b("\0"),
                    range_end: b("\0"),
                    ..Default::default()
                };
                prop_assert_eq!(
                    mvcc::range(&d.store.view(), &everything),
                    before.range(&everything)
                );
                settle(&mut d);
                for (id, want, req) in want {
                    label(req, &want).iter().for_each(|l| see(l));
                    prop_assert_eq!(d.take_reply(id), Some(want), "reply to {:?}", req);
                }
            }
            Step::Read(r) => {
                let want = m.range(&r);
                match &want {
                    Ok(resp) => {
                        see("read: ok");
                        if resp.more {
                            see("read: more");
                        }
                        let sorted =
                            r.sort_order != SortOrder::None || r.sort_target != SortTarget::Key;
                        if sorted && resp.kvs.len() > 1 {
                            see("read: sorted");
                        }
                    }
                    Err(e) => see(&format!("read: {}", error_name(e))),
                }
                prop_assert_eq!(mvcc::range(&d.store.view(), &r), want, "read {:?}", r);
            }
            Step::Advance(ms) => {
                d.advance(Duration::from_millis(ms));
                settle(&mut d);
                let before = m.rev();
                m.expire(d.now.as_nanos());
                if m.rev() > before {
                    see("expiry: deleted keys");
                }
            }
            Step::Restart { crash_image } => {
                see(if crash_image.is_some() {
                    "restart: crash image"
                } else {
                    "restart: clean"
                });
                d.restart(crash_image);
                // The persist the reopened core asks for may finish after later appends.
                d.complete_compactions();
                m.restart(now);
                check_history(&d, &m)?;
            }
            Step::Crash {
                requests,
                keep,
                crash_image,
            } => {
                // The model after each request, and the request whose submission started
                // the (only) append: the ones before it wrote nothing and were answered.
                let mut models = vec![m.clone()];
                let mut want = Vec::new();
                let mut first_write = None;
                for (i, req) in requests.iter().enumerate() {
                    let id = d.submit(req.clone());
                    if first_write.is_none() && d.pending_appends() > 0 {
                        first_write = Some(i);
                    }
                    want.push((id, m.apply(req, now, None)));
                    models.push(m.clone());
                }
                let answered = first_write.unwrap_or(requests.len());
                for (i, (id, want)) in want.into_iter().enumerate() {
                    let got = d.take_reply(id);
                    if i < answered {
                        prop_assert_eq!(got, Some(want));
                    } else {
                        prop_assert_eq!(got, None, "answered before its append completed");
                    }
                }
                let survivors = match first_write {
                    None => requests.len(),
                    Some(j) => {
                        let len = d
                            .pending
                            .iter()
                            .find_map(|io| match io {
                                support::Io::Append { bytes, .. } => Some(bytes.len()),
                                _ => None,
                            })
                            .expect("the append is in flight");
                        let kept = keep.map_or(len, |k| len * usize::from(k) / 255);
                        if d.tear_append(kept) {
                            see("crash: append survived");
                            // Durable but never acknowledged: recovered, not published live.
                            unpublished.extend(models[j].rev() + 1..=models[j + 1].rev());
                            j + 1
                        } else {
                            see("crash: append torn");
                            j
                        }
                    }
                };
                m = models.swap_remove(survivors);
                d.restart(Some(crash_image));
                d.complete_compactions();
                m.restart(now);
                check_history(&d, &m)?;
            }
        }
        check(&d, &m, &unpublished)?;
    }
    if d.trace
        .iter()
        .any(|a| matches!(a, Action::WalDelete { .. }))
    {
        see("wal: segment deleted");
    }
    check_history(&d, &m)
}

/// A name for what a request did, to show that each behaviour was exercised.
fn label(req: &Request, result: &Result<Response, Error>) -> Vec<String> {
    let kind = match req {
        Request::Put(_) => "put",
        Request::DeleteRange(_) => "delete",
        Request::Txn(_) => "txn",
        Request::Compact(_) => "compact",
        Request::LeaseGrant { .. } => "lease grant",
        Request::LeaseRevoke { .. } => "lease revoke",
        Request::LeaseKeepAlive { .. } => "lease keepalive",
        Request::LeaseTimeToLive { .. } => "lease ttl",
        Request::LeaseLeases => "lease list",
        Request::Auth(_) => "auth",
    };
    let mut labels = vec![match result {
        Ok(_) => format!("{kind}: ok"),
        Err(e) => format!("{kind}: {}", error_name(e)),
    }];
    match result {
        Ok(Response::Txn(t)) => {
            labels.push(format!("txn: succeeded={}", t.succeeded));
            if t.responses.iter().any(|r| matches!(r, ResponseOp::Txn(_))) {
                labels.push("txn: nested".into());
            }
            if t.responses
                .iter()
                .any(|r| matches!(r, ResponseOp::Range(r) if !r.kvs.is_empty()))
            {
                labels.push("txn: read keys".into());
            }
        }
        Ok(Response::DeleteRange(r)) if r.deleted > 1 => labels.push("delete: several".into()),
        Ok(Response::LeaseTimeToLive(r)) if r.ttl > 0 => labels.push("lease ttl: live".into()),
        _ => {}
    }
    labels
}

fn error_name(e: &Error) -> String {
    let name = format!("{e:?}");
    name.split(['(', ' ', '{'])
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Behaviours every run must exercise, or the test proves less than it claims.
const MUST_SEE: &[&str] = &[
    "put: ok",
    "put: EmptyKey",
    "put: LeaseNotFound",
    "put: KeyNotFound",
    "put: ValueProvided",
    "put: LeaseProvided",
    "delete: ok",
    "delete: several",
    "txn: succeeded=true",
    "txn: succeeded=false",
    "txn: nested",
    "txn: read keys",
    "txn: DuplicateKey",
    "txn: TooManyOps",
    "txn: FutureRevision",
    "txn: Compacted",
    "txn: LeaseNotFound",
    "compact: ok",
    "compact: Compacted",
    "compact: FutureRevision",
    "lease grant: ok",
    "lease grant: LeaseExists",
    "lease grant: LeaseTtlTooLarge",
    "lease revoke: ok",
    "lease revoke: LeaseNotFound",
    "lease keepalive: ok",
    "lease ttl: live",
    "lease list: ok",
    "read: ok",
    "read: more",
    "read: sorted",
    "read: Compacted",
    "read: FutureRevision",
    "expiry: deleted keys",
    "crash: append survived",
    "crash: append torn",
    "restart: crash image",
    "wal: segment deleted",
];

/// A seed for this run: `T4_SEED`, or a fresh one (from the std hasher's per-process keys,
/// since tests must not read clocks or thread RNGs either).
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    match std::env::var("T4_SEED") {
        Ok(s) => s.parse().expect("T4_SEED is a u64"),
        Err(_) => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    }
}

#[test]
fn the_core_behaves_like_the_etcd_model() {
    let seed = seed();
    let mut bytes = [0u8; 32];
    for chunk in bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &bytes);
    let config = ProptestConfig {
        // PROPTEST_CASES=n for a longer run.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(512),
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let seen = RefCell::new(BTreeMap::<String, usize>::new());
    let cases = (
        prop::collection::vec(step(), 1..64),
        prop::collection::vec(any::<u8>(), 0..6),
    );
    let result =
        TestRunner::new_with_rng(config, rng).run(&cases, |case| run(case, &mut seen.borrow_mut()));
    if let Err(e) = result {
        panic!("{e}\nreplay: T4_SEED={seed} cargo test -p t4-core --test model");
    }
    let seen = seen.into_inner();
    if std::env::var_os("T4_MODEL_STATS").is_some() {
        for (label, n) in &seen {
            eprintln!("{n:8} {label}");
        }
    }
    let missing: Vec<_> = MUST_SEE
        .iter()
        .filter(|l| !seen.contains_key(**l))
        .collect();
    assert!(
        missing.is_empty(),
        "never exercised: {missing:?} (T4_SEED={seed})"
    );
}
