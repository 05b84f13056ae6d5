//! The randomized comparison of a store with [`MemStore`] and the model.

use std::cell::RefCell;

use bytes::Bytes;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use super::compare_pages;
use super::model::{
    Model, all, b, check_against_model, del, events_all, put_lease, scan_all, sorted,
};
use crate::kv::{KeyRange, LeaseId, Revision};
use crate::mvcc::{MemStore, MemView, ReadView, Store};

const RANDOM_KEYS: &[&[u8]] = &[
    b"\0",
    b"a",
    b"a\0",
    b"a\0b",
    b"a\xff",
    b"ab",
    b"b",
    b"ba",
    b"\xff",
    b"\xff\xff",
];
const RANDOM_LEASES: &[LeaseId] = &[0, 1, 2, 7];

#[derive(Clone, Debug)]
enum WriteSpec {
    Put { key: usize, value: u8, lease: usize },
    Del { key: usize },
}

#[derive(Clone, Debug)]
enum OpSpec {
    Write(Vec<WriteSpec>),
    Grant {
        lease: usize,
        ttl: u8,
    },
    Revoke {
        lease: usize,
    },
    /// A logical compaction somewhere between the current compact revision and revision.
    Compact {
        at: u8,
    },
}

#[derive(Clone, Debug)]
enum Step {
    Entry(Vec<OpSpec>),
    /// A physical compaction somewhere up to the logical compact revision.
    Compact {
        at: u8,
    },
    /// Compare both stores now, and hold their views to compare them again later.
    Check,
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    let write = prop_oneof![
        3 => (0..RANDOM_KEYS.len(), any::<u8>(), 0..RANDOM_LEASES.len())
            .prop_map(|(key, value, lease)| WriteSpec::Put { key, value, lease }),
        1 => (0..RANDOM_KEYS.len()).prop_map(|key| WriteSpec::Del { key }),
    ];
    let op = prop_oneof![
        8 => proptest::collection::vec(write, 1..4).prop_map(OpSpec::Write),
        1 => (1..RANDOM_LEASES.len(), any::<u8>()).prop_map(|(lease, ttl)| OpSpec::Grant { lease, ttl }),
        1 => (1..RANDOM_LEASES.len()).prop_map(|lease| OpSpec::Revoke { lease }),
        1 => any::<u8>().prop_map(|at| OpSpec::Compact { at }),
    ];
    let step = prop_oneof![
        8 => proptest::collection::vec(op, 0..4).prop_map(Step::Entry),
        1 => any::<u8>().prop_map(|at| Step::Compact { at }),
        1 => Just(Step::Check),
    ];
    proptest::collection::vec(step, 1..40)
}

/// A revision between `lo` and `hi` chosen by `at`.
fn pick(lo: Revision, hi: Revision, at: u8) -> Revision {
    if hi <= lo {
        return lo;
    }
    lo + (hi - lo) * Revision::from(at) / 255
}

fn compare_views(got: &impl ReadView, want: &MemView, what: &str) {
    assert_eq!(
        got.applied_index(),
        want.applied_index(),
        "{what}: applied index"
    );
    assert_eq!(got.revision(), want.revision(), "{what}: revision");
    assert_eq!(
        got.compact_revision(),
        want.compact_revision(),
        "{what}: compact revision"
    );
    let keys: Vec<Bytes> = RANDOM_KEYS.iter().map(|k| b(k)).collect();
    let mut ranges = vec![
        all(),
        KeyRange::prefix(b(b"a")),
        KeyRange::prefix(b(b"a\0")),
        KeyRange::Between(b(b"a\0"), b(b"b")),
        KeyRange::Between(b(b"b"), b(b"a")),
        KeyRange::From(b(b"b")),
        KeyRange::From(b(b"\xff")),
    ];
    ranges.extend(keys.iter().cloned().map(KeyRange::Single));
    let top = want.revision();
    for rev in 0..=top + 1 {
        for key in &keys {
            assert_eq!(
                got.get(key, rev),
                want.get(key, rev),
                "{what}: get {key:?} at {rev}"
            );
        }
        for range in &ranges {
            assert_eq!(
                scan_all(got, range, rev),
                scan_all(want, range, rev),
                "{what}: scan {range:?} at {rev}"
            );
        }
        for range in &ranges[..3] {
            for limit in [1, 2] {
                compare_pages(got, want, range, rev, limit, what);
            }
        }
        for to in [rev, rev + 2, i64::MAX] {
            assert_eq!(
                events_all(got, rev, to),
                events_all(want, rev, to),
                "{what}: events {rev}..={to}"
            );
        }
    }
}

fn compare_stores<S: Store>(got: &S, want: &MemStore, model: &Model, floor: Revision) {
    compare_views(&got.view(), &want.view(), "fresh view");
    // And against the model, so that MemStore checked against itself still means something.
    let keys: Vec<Bytes> = RANDOM_KEYS.iter().map(|k| b(k)).collect();
    check_against_model(&got.view(), model, &keys, floor);
    assert_eq!(
        sorted(got.lease_keys().unwrap()),
        model.lease_keys(),
        "lease keys (model)"
    );
    let leases: Vec<_> = model.leases.iter().map(|(id, ttl)| (*id, *ttl)).collect();
    assert_eq!(sorted(got.leases().unwrap()), leases, "leases (model)");
    assert_eq!(
        sorted(got.leases().unwrap()),
        sorted(want.leases().unwrap()),
        "leases"
    );
    assert_eq!(
        sorted(got.lease_keys().unwrap()),
        sorted(want.lease_keys().unwrap()),
        "lease keys"
    );
}

fn run_steps<S: Store>(store: &S, steps: &[Step]) {
    let mem = MemStore::new();
    let mut m = Model::new();
    let mut held: Option<(S::View, MemView)> = None;
    let mut floor = 0;
    for step in steps {
        match step {
            Step::Entry(specs) => {
                let mut ops = Vec::new();
                for spec in specs {
                    match spec {
                        OpSpec::Write(writes) => {
                            let mut seen = Vec::new();
                            let mut ws = Vec::new();
                            for w in writes {
                                // One change per key and revision, as etcd requires.
                                let key = match w {
                                    WriteSpec::Put { key, .. } | WriteSpec::Del { key } => *key,
                                };
                                if seen.contains(&key) {
                                    continue;
                                }
                                seen.push(key);
                                ws.push(match w {
                                    WriteSpec::Put { key, value, lease } => put_lease(
                                        RANDOM_KEYS[*key],
                                        &[*value],
                                        RANDOM_LEASES[*lease],
                                    ),
                                    WriteSpec::Del { key } => del(RANDOM_KEYS[*key]),
                                });
                            }
                            ops.extend(m.revision(&ws));
                        }
                        OpSpec::Grant { lease, ttl } => {
                            ops.push(m.grant(RANDOM_LEASES[*lease], i64::from(*ttl)));
                        }
                        OpSpec::Revoke { lease } => ops.extend(m.revoke(RANDOM_LEASES[*lease])),
                        OpSpec::Compact { at } => {
                            let r = pick(m.compact_revision, m.revision, *at);
                            ops.push(m.compact(r));
                        }
                    }
                }
                let entry = m.entry(ops);
                store.apply(&entry).unwrap();
                mem.apply(&entry).unwrap();
            }
            Step::Compact { at } => {
                if m.compact_revision > 0 {
                    let r = pick(1, m.compact_revision, *at);
                    store.compact(r).unwrap();
                    mem.compact(r).unwrap();
                    floor = floor.max(r);
                    // A MemStore view reads through to the live store, so views from
                    // before a physical compaction are not comparable.
                    held = None;
                }
            }
            Step::Check => {
                compare_stores(store, &mem, &m, floor);
                if let Some((got, want)) = &held {
                    compare_views(got, want, "held view");
                }
                held = Some((store.view(), mem.view()));
            }
        }
    }
    compare_stores(store, &mem, &m, floor);
    if let Some((got, want)) = &held {
        compare_views(got, want, "held view");
    }
}

/// Random etcd-consistent entries, logical and physical compactions applied to the store
/// under test and to a [`MemStore`]: every read at every revision, the leases and the lease
/// attachments agree, and views held across later entries keep agreeing.
///
/// Runs 64 cases, or `PROPTEST_CASES` if set.
pub fn randomized_against_mem_store<S: Store>(make: &mut dyn FnMut() -> S) {
    let mut config = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 64;
    }
    let make = RefCell::new(make);
    let mut runner = TestRunner::new(config);
    let result = runner.run(&arb_steps(), |steps| {
        let store = (make.borrow_mut())();
        run_steps(&store, &steps);
        Ok(())
    });
    if let Err(e) = result {
        panic!("the store disagrees with MemStore: {e}");
    }
}
