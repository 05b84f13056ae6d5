//! The [`Store`] contract as an executable test-suite.
//!
//! Every store implementation runs the same checks, so that what the core relies on — and
//! what [`MemStore`](super::MemStore) (the simulator's store) does — is pinned down in one
//! place. A store crate calls [`run_all`] from a test with a function that makes a fresh,
//! empty store:
//!
//! ```text
//! #[test]
//! fn fjall_store_keeps_the_store_contract() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let mut n = 0;
//!     t4_core::mvcc::conformance::run_all(&mut || {
//!         n += 1;
//!         FjallStore::open(&dir.path().join(n.to_string())).unwrap()
//!     });
//! }
//! ```
//!
//! Each check makes its own store, so a failure names the behaviour that broke. The last
//! check, [`randomized_against_mem_store`], applies random (but etcd-consistent) entries to
//! the store under test and to a [`MemStore`](super::MemStore) and compares every read at
//! every revision.
//!
//! Compiled for t4-core's own tests and, for other crates, with the `test-suite` feature.

// A test-suite: a failing call is a failing test, and the panic message says where.
#![allow(clippy::unwrap_used)]

mod model;
mod random;

use std::ops::ControlFlow;

use bytes::Bytes;

use super::{MemView, ReadView, Store, StoreError};
use crate::kv::{Event, EventKind, KeyRange, KeyValue, Revision, key_after};
use crate::wal::{LogEntry, LogOp};
use model::{
    Model, W, all, b, check_against_model, del, delete_event, events_all, keys_of, put, put_lease,
    scan_all, sorted,
};
pub use random::randomized_against_mem_store;

/// Runs every check of the suite, each against a fresh store from `make`.
pub fn run_all<S: Store>(make: &mut dyn FnMut() -> S) {
    empty_store_is_at_revision_one(make);
    entries_apply_in_index_order_only(make);
    an_entry_without_ops_advances_only_the_index(make);
    reads_see_every_revision_as_it_was(make);
    a_txn_changes_many_keys_at_one_revision(make);
    an_entry_may_hold_many_revisions(make);
    scans_cover_exactly_their_range(make);
    empty_ranges_scan_nothing(make);
    scan_stops_when_the_visitor_breaks(make);
    paged_ranges_count_the_rest_of_their_range(make);
    a_view_is_a_consistent_snapshot(make);
    events_come_in_revision_order(make);
    leases_are_granted_and_revoked_through_the_log(make);
    the_auth_state_is_replaced_through_the_log(make);
    lease_keys_follow_puts_and_deletes(make);
    compact_op_sets_the_compact_revision(make);
    physical_compaction_keeps_every_read_at_or_above_it(make);
    physical_compaction_removes_deleted_keys_without_resurrecting_them(make);
    physical_compaction_is_idempotent_and_never_moves_back(make);
    persist_succeeds(make);
    a_loaded_checkpoint_replaces_everything(make);
    randomized_against_mem_store(make);
}

/// An empty store is at revision 1, index 0, never compacted, and holds nothing.
pub fn empty_store_is_at_revision_one<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let v = store.view();
    assert_eq!(v.applied_index(), 0);
    assert_eq!(v.revision(), 1);
    assert_eq!(v.compact_revision(), 0);
    assert_eq!(v.get(b"a", 1), Ok(None));
    assert_eq!(v.get(b"a", 0), Ok(None));
    assert_eq!(scan_all(&v, &all(), 1), Ok(vec![]));
    assert_eq!(events_all(&v, 0, 10), Ok(vec![]));
    assert_eq!(store.leases(), Ok(vec![]));
    assert_eq!(store.lease_keys(), Ok(vec![]));
}

/// `apply` takes entries in index order only; an entry out of order is refused with
/// [`StoreError::Corrupt`] and changes nothing.
pub fn entries_apply_in_index_order_only<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let op = m.revision(&[put(b"a", b"1")]).unwrap();
    let skip = LogEntry {
        index: 2,
        term: 1,
        ops: vec![op.clone()],
    };
    assert!(matches!(store.apply(&skip), Err(StoreError::Corrupt(_))));
    assert_eq!(store.view().applied_index(), 0);
    assert_eq!(store.view().revision(), 1);

    let first = m.entry(vec![op]);
    store.apply(&first).unwrap();
    assert!(
        matches!(store.apply(&first), Err(StoreError::Corrupt(_))),
        "re-applying an entry is refused"
    );
    let zero = LogEntry {
        index: 0,
        term: 1,
        ops: vec![],
    };
    assert!(matches!(store.apply(&zero), Err(StoreError::Corrupt(_))));
    let ahead = LogEntry {
        index: 3,
        term: 1,
        ops: vec![LogOp::LeaseGrant { id: 1, ttl: 5 }],
    };
    assert!(matches!(store.apply(&ahead), Err(StoreError::Corrupt(_))));

    let v = store.view();
    assert_eq!(v.applied_index(), 1);
    assert_eq!(v.revision(), 2);
    assert_eq!(v.get(b"a", 2).unwrap().unwrap().value, "1");
    assert_eq!(
        store.leases(),
        Ok(vec![]),
        "a refused entry changes nothing"
    );

    m.write(&store, &[put(b"a", b"2")]);
    assert_eq!(store.view().applied_index(), 2);
    assert_eq!(store.view().get(b"a", 3).unwrap().unwrap().value, "2");
}

/// An entry without operations (a leader's no-op) advances the applied index only.
pub fn an_entry_without_ops_advances_only_the_index<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"a", b"1")]);
    let noop = m.entry(vec![]);
    store.apply(&noop).unwrap();
    let v = store.view();
    assert_eq!(v.applied_index(), 2);
    assert_eq!(v.revision(), 2);
    assert_eq!(v.get(b"a", 2), Ok(m.get(b"a", 2)));
}

/// Gets and scans at any revision see the keys exactly as they were: puts, updates,
/// deletes and re-creation after a delete, with etcd's per-key metadata.
pub fn reads_see_every_revision_as_it_was<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"a", b"1")]); // 2
    m.write(&store, &[put(b"b", b"1")]); // 3
    m.write(&store, &[put(b"a", b"2")]); // 4
    m.write(&store, &[del(b"a")]); // 5
    m.write(&store, &[put(b"a", b"3")]); // 6: re-created
    m.write(&store, &[put(b"a", b"4")]); // 7
    m.write(&store, &[del(b"b")]); // 8

    let v = store.view();
    assert_eq!(v.revision(), 8);
    assert_eq!(v.applied_index(), 7);
    // Spelled out once, so that the model itself is checked too.
    let a4 = v.get(b"a", 4).unwrap().unwrap();
    assert_eq!(
        (a4.create_revision, a4.mod_revision, a4.version, a4.lease),
        (2, 4, 2, 0)
    );
    assert_eq!(a4.value, "2");
    assert_eq!(v.get(b"a", 5), Ok(None));
    let a7 = v.get(b"a", 7).unwrap().unwrap();
    assert_eq!(
        (a7.create_revision, a7.mod_revision, a7.version),
        (6, 7, 2),
        "a re-created key starts a new life"
    );
    assert_eq!(v.get(b"a", 100), v.get(b"a", 8), "reads clamp to the view");

    check_against_model(&v, &m, &[b(b"a"), b(b"b"), b(b"c")], 0);
}

/// One revision may change many keys (a txn, a delete range): they share the revision and
/// their events come in the order of the changes.
pub fn a_txn_changes_many_keys_at_one_revision<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"x", b"0"), put(b"y", b"0")]); // 2
    m.write(
        &store,
        &[put(b"z", b"1"), del(b"x"), put(b"y", b"1"), put(b"a", b"1")],
    ); // 3
    let v = store.view();
    assert_eq!(v.revision(), 3);
    assert_eq!(
        keys_of(&scan_all(&v, &all(), 3).unwrap()),
        vec![b(b"a"), b(b"y"), b(b"z")]
    );
    assert_eq!(
        keys_of(&scan_all(&v, &all(), 2).unwrap()),
        vec![b(b"x"), b(b"y")]
    );
    let events = events_all(&v, 3, 3).unwrap();
    let shape: Vec<(EventKind, Bytes)> =
        events.iter().map(|e| (e.kind, e.kv.key.clone())).collect();
    assert_eq!(
        shape,
        vec![
            (EventKind::Put, b(b"z")),
            (EventKind::Delete, b(b"x")),
            (EventKind::Put, b(b"y")),
            (EventKind::Put, b(b"a")),
        ]
    );
    check_against_model(&v, &m, &[b(b"a"), b(b"x"), b(b"y"), b(b"z")], 0);
}

/// One entry (a group commit) may hold many revisions, lease and compaction operations,
/// including several changes of one key; all of it applies at once.
pub fn an_entry_may_hold_many_revisions<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let mut ops = vec![m.grant(5, 30)];
    ops.extend(m.revision(&[put_lease(b"k", b"1", 5)]));
    ops.extend(m.revision(&[put(b"k", b"2")]));
    ops.extend(m.revision(&[put(b"j", b"1"), del(b"k")]));
    ops.extend(m.revision(&[put(b"k", b"3")]));
    ops.push(m.compact(3));
    m.apply(&store, ops);

    let v = store.view();
    assert_eq!(v.applied_index(), 1);
    assert_eq!(v.revision(), 5);
    assert_eq!(v.compact_revision(), 3);
    let k = v.get(b"k", 5).unwrap().unwrap();
    assert_eq!(
        (k.value.as_ref(), k.create_revision, k.version),
        (&b"3"[..], 5, 1)
    );
    assert_eq!(v.get(b"k", 2).unwrap().unwrap().lease, 5);
    assert_eq!(store.leases(), Ok(vec![(5, 30)]));
    assert_eq!(
        store.lease_keys(),
        Ok(vec![]),
        "the lease was detached in the same entry"
    );
    check_against_model(&v, &m, &[b(b"j"), b(b"k")], 0);
}

const BINARY_KEYS: &[&[u8]] = &[
    b"\0",
    b"\0\0",
    b"\0\xff",
    b"a",
    b"a\0",
    b"a\0b",
    b"a\x01",
    b"a\xff",
    b"ab",
    b"b",
    b"\xff",
    b"\xff\0",
    b"\xff\xff",
];

/// Scans visit exactly the keys of their range, in byte order, for every kind of range,
/// with binary keys (0x00, 0xff) and keys that are prefixes of one another.
pub fn scans_cover_exactly_their_range<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let writes: Vec<W> = BINARY_KEYS.iter().map(|k| put(k, k)).collect();
    m.write(&store, &writes); // 2
    m.write(&store, &[put(b"a\0", b"v2"), put(b"\xff", b"v2")]); // 3
    m.write(&store, &[del(b"a"), del(b"\0\0"), del(b"\xff\xff")]); // 4
    m.write(&store, &[put(b"a\0b\0", b"new")]); // 5

    let v = store.view();
    let bs = |keys: &[&[u8]]| keys.iter().map(|k| b(k)).collect::<Vec<_>>();
    let keys_at = |range: KeyRange, rev| keys_of(&scan_all(&v, &range, rev).unwrap());
    // A few spelled out, to check the model's notion of order too.
    assert_eq!(
        keys_at(KeyRange::prefix(b(b"a\0")), 2),
        bs(&[b"a\0", b"a\0b"])
    );
    assert_eq!(
        keys_at(KeyRange::prefix(b(b"a\0")), 5),
        bs(&[b"a\0", b"a\0b", b"a\0b\0"])
    );
    assert_eq!(
        keys_at(KeyRange::Between(b(b"a"), b(b"a\0b")), 2),
        bs(&[b"a", b"a\0"])
    );
    assert_eq!(
        keys_at(KeyRange::Between(b(b"a"), b(b"a\0b")), 4),
        bs(&[b"a\0"])
    );
    assert_eq!(
        keys_at(KeyRange::From(b(b"\xff")), 2),
        bs(&[b"\xff", b"\xff\0", b"\xff\xff"])
    );
    assert_eq!(
        keys_at(KeyRange::Between(b(b"\0"), b(b"\0\xff")), 2),
        bs(&[b"\0", b"\0\0"])
    );
    assert_eq!(keys_at(KeyRange::Single(b(b"a\0")), 4), bs(&[b"a\0"]));
    assert_eq!(keys_at(KeyRange::Single(b(b"a")), 4), bs(&[]));
    assert_eq!(keys_at(KeyRange::Single(b(b"a")), 3), bs(&[b"a"]));

    let mut bounds: Vec<Bytes> = BINARY_KEYS.iter().map(|k| b(k)).collect();
    bounds.extend([b(b""), b(b"a\0a"), b(b"a\0c"), b(b"c"), b(b"\xff\xff\xff")]);
    let mut ranges = vec![all()];
    for s in &bounds {
        ranges.push(KeyRange::Single(s.clone()));
        ranges.push(KeyRange::From(s.clone()));
        ranges.push(KeyRange::prefix(s.clone()));
        for e in &bounds {
            if s < e {
                ranges.push(KeyRange::Between(s.clone(), e.clone()));
            }
        }
    }
    for rev in 0..=6 {
        for range in &ranges {
            let at = rev.min(v.revision());
            assert_eq!(
                scan_all(&v, range, rev),
                Ok(m.scan(range, at)),
                "scan {range:?} at {rev}"
            );
            assert_eq!(
                v.count(range, rev),
                scan_all(&v, range, rev).map(|kvs| kvs.len() as u64),
                "count {range:?} at {rev}"
            );
        }
    }
}

/// A paged list (each page a range with a limit that starts after the previous page, as
/// Kubernetes lists) answers every page with the count of the rest of the range at the
/// list's revision — also when the store changed between pages, when a page starts at the
/// first key the previous one left out, and after a checkpoint replaced the store at the
/// same revision. A store may remember counts ([`ReadView::note_count`]); none may go stale.
pub fn paged_ranges_count_the_rest_of_their_range<S: Store>(make: &mut dyn FnMut() -> S) {
    use crate::mvcc::range;
    use crate::request::RangeRequest;

    let store = make();
    let mut m = Model::new();
    let key = |i: usize| format!("k{i:02}").into_bytes();
    let writes: Vec<W> = (0..30).map(|i| put(&key(i), b"v")).collect();
    m.write(&store, &writes);
    m.write(&store, &[put(b"j", b"outside"), put(b"l", b"outside")]);
    let prefix = KeyRange::prefix(b(b"k"));
    let end = prefix.end_exclusive().unwrap();
    // Pages: a page of `limit` keys from `start` at `rev`, checked against the model.
    let page = |m: &Model, start: Bytes, rev: Revision, limit: i64| {
        let req = RangeRequest {
            key: start.clone(),
            range_end: end.clone(),
            limit,
            revision: rev,
            ..Default::default()
        };
        let resp = range(&store.view(), &req).unwrap();
        let at = if rev == 0 { m.revision } else { rev };
        let want = m.scan(&KeyRange::Between(start.clone(), end.clone()), at);
        let shown = want.len().min(limit as usize);
        assert_eq!(resp.kvs, want[..shown], "page from {start:?} at {rev}");
        assert_eq!(
            resp.count,
            want.len() as i64,
            "count from {start:?} at {rev}"
        );
        assert_eq!(
            resp.more,
            want.len() > shown,
            "more from {start:?} at {rev}"
        );
        resp.kvs
    };
    let after = |kv: &KeyValue| key_after(&kv.key);

    // At the current revision, twice (the second list can use what the first remembered),
    // then while writes move the store on: pages stay at the first page's revision.
    for _ in 0..2 {
        let mut start = b(b"k");
        while let Some(last) = page(&m, start.clone(), 0, 4).last() {
            start = after(last);
        }
    }
    let listed_at = m.revision;
    let mut start = b(b"k");
    let mut written = 0;
    while let Some(last) = page(&m, start.clone(), listed_at, 4).last() {
        start = after(last);
        written += 1;
        let changes = [
            put(&key(written), b"changed"),
            del(&key(29 - written)),
            put(format!("k{written:02}x").as_bytes(), b"new"),
        ];
        m.write(&store, &changes);
    }
    // The next page from the first key a page left out (not after its last key).
    let now = m.revision;
    let first = page(&m, b(b"k"), now, 5);
    let rest = page(&m, b(b"k"), now, 6);
    page(&m, rest[5].key.clone(), now, 5);
    page(&m, after(&first[4]), now, 5);
    // count_only, twice.
    for _ in 0..2 {
        let req = RangeRequest {
            key: b(b"k"),
            range_end: end.clone(),
            count_only: true,
            revision: listed_at,
            ..Default::default()
        };
        let want = m.scan(&prefix, listed_at).len() as i64;
        assert_eq!(range(&store.view(), &req).unwrap().count, want);
    }

    // A checkpoint replaces the store at the revision just listed: the same pages now count
    // the image's keys.
    let image_kvs: Vec<KeyValue> = (0..7)
        .map(|i| KeyValue {
            key: b(format!("k{i:02}").as_bytes()),
            value: b(b"image"),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease: 0,
        })
        .collect();
    store
        .load_checkpoint(&super::CheckpointImage {
            index: m.index + 1,
            revision: now,
            compact_revision: 0,
            kvs: image_kvs.clone(),
            leases: vec![],
            auth: Default::default(),
        })
        .unwrap();
    let v = store.view();
    for start in [b(b"k"), after(&first[4]), rest[5].key.clone()] {
        let want = image_kvs.iter().filter(|kv| kv.key >= start).count() as i64;
        let req = RangeRequest {
            key: start.clone(),
            range_end: end.clone(),
            limit: 1,
            revision: now,
            ..Default::default()
        };
        let resp = range(&v, &req).unwrap();
        assert_eq!(
            resp.count, want,
            "count from {start:?} after the checkpoint"
        );
    }
}

/// Pages through `range` at `rev` with `limit` keys a page, as a paged list does (each page
/// from just after the previous page's last key), comparing every page's answer — keys,
/// `more` and the count of the rest, which a store may remember — with `want`'s. Returns
/// the number of pages.
pub fn compare_pages(
    got: &impl ReadView,
    want: &MemView,
    range: &KeyRange,
    rev: Revision,
    limit: i64,
    what: &str,
) -> u64 {
    let end = range.end_exclusive().unwrap_or_else(|| b(b"\0"));
    let mut start = range.start().clone();
    let mut pages = 0;
    loop {
        let req = crate::request::RangeRequest {
            key: start.clone(),
            range_end: end.clone(),
            limit,
            revision: rev,
            ..Default::default()
        };
        let page = super::range(got, &req);
        assert_eq!(
            page,
            super::range(want, &req),
            "{what}: page of {limit} from {start:?} at {rev}"
        );
        pages += 1;
        let Some(last) = page
            .ok()
            .filter(|p| p.more)
            .and_then(|p| p.kvs.last().cloned())
        else {
            return pages;
        };
        start = key_after(&last.key);
    }
}

/// A `Between` range whose end is not after its start holds no key; a single missing key
/// scans nothing.
pub fn empty_ranges_scan_nothing<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"a", b"1"), put(b"b", b"1"), put(b"c", b"1")]); // 2
    m.write(&store, &[put(b"b", b"2")]); // 3
    let v = store.view();
    for rev in [2, 3] {
        for range in [
            KeyRange::Between(b(b"b"), b(b"b")),
            KeyRange::Between(b(b"c"), b(b"a")),
            KeyRange::Between(b(b"b\0"), b(b"b")),
            KeyRange::Between(b(b"\xff"), b(b"")),
            KeyRange::Single(b(b"bb")),
            KeyRange::From(b(b"d")),
        ] {
            assert_eq!(scan_all(&v, &range, rev), Ok(vec![]), "{range:?} at {rev}");
        }
        assert_eq!(
            keys_of(&scan_all(&v, &KeyRange::Between(b(b"b"), b(b"b\0")), rev).unwrap()),
            vec![b(b"b")]
        );
    }
}

/// A scan stops as soon as the visitor breaks, at the current and at older revisions.
pub fn scan_stops_when_the_visitor_breaks<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let keys: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'k', i]).collect();
    let writes: Vec<W> = keys.iter().map(|k| put(k, b"v")).collect();
    m.write(&store, &writes); // 2
    m.write(&store, &[put(b"k\x05", b"w")]); // 3
    let v = store.view();
    for rev in [2, 3] {
        for stop_after in [1, 3, 10] {
            let mut seen = Vec::new();
            v.scan(&all(), rev, &mut |kv| {
                seen.push(kv.key);
                if seen.len() == stop_after {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
            let want: Vec<Bytes> = keys.iter().take(stop_after).map(|k| b(k)).collect();
            assert_eq!(seen, want, "stop after {stop_after} at {rev}");
        }
    }
    let mut count = 0;
    v.events(0, 3, &mut |_| {
        count += 1;
        if count == 4 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!(count, 4, "events stop when the visitor breaks");
}

/// A view is a consistent snapshot: entries applied after it was taken are invisible to
/// it, whatever revision it is asked for.
pub fn a_view_is_a_consistent_snapshot<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"a", b"1"), put(b"b", b"1")]); // 2
    let before = m.clone();
    let old = store.view();
    m.write(&store, &[put(b"a", b"2"), put(b"c", b"1")]); // 3
    m.write(&store, &[del(b"b")]); // 4
    let mut ops = vec![m.grant(9, 10)];
    ops.extend(m.revision(&[put(b"d", b"1")])); // 5
    ops.push(m.compact(4));
    m.apply(&store, ops);

    assert_eq!(old.applied_index(), 1);
    assert_eq!(old.revision(), 2);
    assert_eq!(old.compact_revision(), 0);
    assert_eq!(old.get(b"a", i64::MAX).unwrap().unwrap().value, "1");
    assert_eq!(old.get(b"c", 5), Ok(None));
    assert_eq!(old.get(b"b", 4).unwrap().unwrap().value, "1");
    assert_eq!(
        keys_of(&scan_all(&old, &all(), 5).unwrap()),
        vec![b(b"a"), b(b"b")]
    );
    assert_eq!(events_all(&old, 0, 100), Ok(before.events(0, 2)));
    let keys = [b(b"a"), b(b"b"), b(b"c"), b(b"d")];
    check_against_model(&old, &before, &keys, 0);

    let new = store.view();
    assert_eq!(new.applied_index(), 4);
    assert_eq!(new.revision(), 5);
    assert_eq!(new.compact_revision(), 4);
    check_against_model(&new, &m, &keys, 0);
}

/// `events(from, to)` visits the events of `from..=to` (clamped to the view) in revision
/// order, without `prev_kv`; a delete event holds only the key and its revision.
pub fn events_come_in_revision_order<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put_lease(b"a", b"1", 3)]); // 2
    m.write(&store, &[put(b"b", b"1")]); // 3
    m.write(&store, &[del(b"a"), put(b"b", b"2")]); // 4
    m.write(&store, &[put(b"a\0", b"x")]); // 5
    let v = store.view();
    let all_events = events_all(&v, 1, 5).unwrap();
    let revs: Vec<Revision> = all_events.iter().map(Event::revision).collect();
    assert_eq!(revs, vec![2, 3, 4, 4, 5]);
    assert_eq!(all_events[2], delete_event(&b(b"a"), 4));
    assert_eq!(
        all_events[0],
        Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: b(b"a"),
                create_revision: 2,
                mod_revision: 2,
                version: 1,
                value: b(b"1"),
                lease: 3,
            },
            prev_kv: None,
        }
    );
    for from in 0..=6 {
        for to in 0..=6 {
            assert_eq!(
                events_all(&v, from, to),
                Ok(m.events(from, to.min(5))),
                "events {from}..={to}"
            );
        }
    }
    assert_eq!(events_all(&v, 3, i64::MAX), Ok(m.events(3, 5)));
}

/// Leases are granted and revoked through the log, and listed by `leases()`.
pub fn leases_are_granted_and_revoked_through_the_log<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let op = m.grant(7, 10);
    m.apply(&store, vec![op]);
    let ops = vec![m.grant(3, 5), m.grant(i64::MAX, 1), m.grant(100, 60)];
    m.apply(&store, ops);
    assert_eq!(
        sorted(store.leases().unwrap()),
        vec![(3, 5), (7, 10), (100, 60), (i64::MAX, 1)]
    );
    let mut ops = m.revoke(7);
    ops.push(m.grant(3, 50)); // a re-grant replaces the TTL
    ops.push(m.grant(8, 1));
    ops.extend(m.revoke(8)); // granted and revoked in one entry
    m.apply(&store, ops);
    assert_eq!(
        sorted(store.leases().unwrap()),
        vec![(3, 50), (100, 60), (i64::MAX, 1)]
    );
    assert_eq!(
        store.view().revision(),
        1,
        "lease operations use no revision"
    );
}

/// An auth state with one user, `name`.
fn auth_state(name: &str) -> crate::auth::AuthState {
    let mut state = crate::auth::AuthState::default();
    let add = crate::auth::AuthChange::UserAdd {
        name: name.into(),
        password: "hash".into(),
        no_password: false,
    };
    state.change(&add).unwrap();
    state
}

/// The auth state starts as the default and each `Auth` op replaces it, using no revision.
pub fn the_auth_state_is_replaced_through_the_log<S: Store>(make: &mut dyn FnMut() -> S) {
    use std::sync::Arc;
    let store = make();
    assert_eq!(*store.auth().unwrap(), crate::auth::AuthState::default());
    let mut m = Model::new();
    let first = Arc::new(auth_state("alice"));
    m.apply(&store, vec![LogOp::Auth(first.clone())]);
    assert_eq!(store.auth().unwrap(), first);
    let second = Arc::new(auth_state("bob"));
    m.apply(
        &store,
        vec![LogOp::Auth(first), LogOp::Auth(second.clone())],
    );
    assert_eq!(
        store.auth().unwrap(),
        second,
        "the last op of an entry wins"
    );
    assert_eq!(store.view().revision(), 1, "auth changes use no revision");
    store.persist().unwrap();
    assert_eq!(store.auth().unwrap(), second);
}

/// `lease_keys()` lists the live keys attached to leases, following puts with a lease,
/// lease changes, detaching puts, deletes and revocations.
pub fn lease_keys_follow_puts_and_deletes<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    let ops = vec![m.grant(5, 10)];
    m.apply(&store, ops);
    let ops = vec![m.grant(6, 10)];
    m.apply(&store, ops);

    m.write(
        &store,
        &[
            put_lease(b"a", b"1", 5),
            put_lease(b"b", b"1", 5),
            put_lease(b"c", b"1", 6),
            put(b"d", b"1"),
        ],
    );
    assert_eq!(sorted(store.lease_keys().unwrap()), m.lease_keys());
    assert_eq!(m.lease_keys().len(), 3);

    m.write(&store, &[put(b"a", b"2")]); // detached
    m.write(&store, &[put_lease(b"b", b"2", 6)]); // moved to another lease
    m.write(&store, &[put_lease(b"c", b"2", 6)]); // same lease again
    m.write(&store, &[put_lease(b"d", b"2", 5)]); // attached later
    assert_eq!(sorted(store.lease_keys().unwrap()), m.lease_keys());
    assert_eq!(
        m.lease_keys(),
        vec![(5, b(b"d")), (6, b(b"b")), (6, b(b"c"))]
    );

    m.write(&store, &[del(b"c")]);
    assert_eq!(sorted(store.lease_keys().unwrap()), m.lease_keys());

    // Several changes of one key in one entry: the last one counts.
    let mut ops = Vec::new();
    ops.extend(m.revision(&[put_lease(b"e", b"1", 5)]));
    ops.extend(m.revision(&[put(b"e", b"2")]));
    ops.extend(m.revision(&[put_lease(b"f", b"1", 6)]));
    ops.extend(m.revision(&[del(b"f")]));
    ops.extend(m.revision(&[put_lease(b"g", b"1", 6)]));
    ops.extend(m.revision(&[put_lease(b"g", b"2", 5)]));
    m.apply(&store, ops);
    assert_eq!(sorted(store.lease_keys().unwrap()), m.lease_keys());

    let ops = m.revoke(6);
    m.apply(&store, ops);
    assert_eq!(sorted(store.lease_keys().unwrap()), m.lease_keys());
    assert_eq!(m.lease_keys(), vec![(5, b(b"d")), (5, b(b"g"))]);
    assert_eq!(sorted(store.leases().unwrap()), vec![(5, 10)]);
    check_against_model(&store.view(), &m, &[b(b"b"), b(b"d"), b(b"g")], 0);
}

/// A `Compact` operation sets the compact revision (never lowering it) without using a
/// revision or removing anything by itself.
pub fn compact_op_sets_the_compact_revision<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"a", b"1")]); // 2
    m.write(&store, &[put(b"a", b"2")]); // 3
    m.write(&store, &[put(b"a", b"3")]); // 4
    let op = m.compact(3);
    m.apply(&store, vec![op]);
    let v = store.view();
    assert_eq!(v.compact_revision(), 3);
    assert_eq!(v.revision(), 4);
    assert_eq!(v.applied_index(), 4);
    assert_eq!(v.get(b"a", 2).unwrap().unwrap().value, "1");

    let op = m.compact(2);
    m.apply(&store, vec![op]);
    assert_eq!(
        store.view().compact_revision(),
        3,
        "compaction never moves back"
    );
    let op = m.compact(4);
    m.apply(&store, vec![op]);
    assert_eq!(store.view().compact_revision(), 4);
    check_against_model(&store.view(), &m, &[b(b"a")], 0);
}

/// A store with a varied history: updates, deletes, re-creation, txns.
fn varied_history<S: Store>(store: &S) -> (Model, Vec<Bytes>) {
    let mut m = Model::new();
    m.write(store, &[put(b"a", b"1"), put(b"b", b"1"), put(b"c", b"1")]); // 2
    m.write(store, &[put(b"a", b"2")]); // 3
    m.write(store, &[del(b"b")]); // 4
    m.write(
        store,
        &[put(b"c", b"2"), put(b"d", b"1"), put(b"a\0", b"1")],
    ); // 5
    m.write(store, &[del(b"d")]); // 6
    m.write(store, &[put(b"b", b"again")]); // 7
    m.write(store, &[del(b"c"), put(b"a", b"3")]); // 8
    m.write(store, &[put(b"a", b"4")]); // 9
    m.write(store, &[put(b"e", b"1"), del(b"a\0")]); // 10
    m.write(store, &[put(b"e", b"2")]); // 11
    let keys = ["a", "a\0", "b", "c", "d", "e", "f"]
        .iter()
        .map(|k| b(k.as_bytes()))
        .collect();
    (m, keys)
}

/// After `compact(R)`, every read at `R` or later returns what it returned before (the
/// latest version at or below each revision, deleted keys absent), reads below `R` fail
/// with [`StoreError::Compacted`] and events below `R` are gone.
pub fn physical_compaction_keeps_every_read_at_or_above_it<S: Store>(make: &mut dyn FnMut() -> S) {
    for compactions in [
        &[2][..],
        &[4],
        &[6],
        &[8],
        &[11],
        &[3, 4, 7, 9, 10, 11],
        &[5, 8],
    ] {
        let store = make();
        let (mut m, keys) = varied_history(&store);
        check_against_model(&store.view(), &m, &keys, 0);
        for &r in compactions {
            let op = m.compact(r);
            m.apply(&store, vec![op]);
            store.compact(r).unwrap();
            let v = store.view();
            assert_eq!(v.compact_revision(), r);
            check_against_model(&v, &m, &keys, r);
        }
        // Writes after a compaction read back as usual.
        let floor = *compactions.last().expect("non-empty");
        m.write(&store, &[put(b"a", b"5"), put(b"b", b"x")]);
        m.write(&store, &[del(b"e")]);
        check_against_model(&store.view(), &m, &keys, floor);
    }
}

/// Compaction drops a key whose latest version at or below `R` is a deletion, and never
/// brings back an older version of it.
pub fn physical_compaction_removes_deleted_keys_without_resurrecting_them<S: Store>(
    make: &mut dyn FnMut() -> S,
) {
    let store = make();
    let mut m = Model::new();
    m.write(&store, &[put(b"k", b"1")]); // 2
    m.write(&store, &[put(b"k", b"2")]); // 3
    m.write(&store, &[del(b"k")]); // 4
    m.write(&store, &[put(b"other", b"1")]); // 5
    let op = m.compact(4);
    m.apply(&store, vec![op]);
    store.compact(4).unwrap();
    let v = store.view();
    for rev in 4..=6 {
        assert_eq!(v.get(b"k", rev), Ok(None), "at {rev}");
        assert_eq!(
            keys_of(&scan_all(&v, &KeyRange::prefix(b(b"k")), rev).unwrap()),
            Vec::<Bytes>::new()
        );
    }
    assert_eq!(
        events_all(&v, 4, 5),
        Ok(m.events(4, 5)),
        "the delete event at the compaction revision stays"
    );
    m.write(&store, &[put(b"k", b"3")]); // 6
    let v = store.view();
    let k = v.get(b"k", 6).unwrap().unwrap();
    assert_eq!((k.create_revision, k.version), (6, 1));
    assert_eq!(v.get(b"k", 5), Ok(None));
    check_against_model(&v, &m, &[b(b"k"), b(b"other")], 4);
}

/// `compact` is cheap and harmless when repeated, and a lower revision never undoes a
/// higher one.
pub fn physical_compaction_is_idempotent_and_never_moves_back<S: Store>(
    make: &mut dyn FnMut() -> S,
) {
    let store = make();
    let (mut m, keys) = varied_history(&store);
    let op = m.compact(7);
    m.apply(&store, vec![op]);
    store.compact(7).unwrap();
    store.compact(7).unwrap();
    store.compact(5).unwrap();
    store.compact(0).unwrap();
    let v = store.view();
    assert_eq!(v.get(b"a", 6), Err(StoreError::Compacted));
    assert_eq!(v.get(b"a", 7), Ok(m.get(b"a", 7)));
    check_against_model(&v, &m, &keys, 7);
    store.persist().unwrap();
    check_against_model(&store.view(), &m, &keys, 7);
}

/// `persist` succeeds and changes nothing visible.
pub fn persist_succeeds<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    store.persist().unwrap();
    let (m, keys) = varied_history(&store);
    store.persist().unwrap();
    store.persist().unwrap();
    let v = store.view();
    assert_eq!(v.applied_index(), m.index);
    check_against_model(&v, &m, &keys, 0);
}

/// `load_checkpoint` replaces every key, lease, revision and index with the image's; older
/// revisions read as compacted; applying continues after the image's index.
pub fn a_loaded_checkpoint_replaces_everything<S: Store>(make: &mut dyn FnMut() -> S) {
    let store = make();
    let _ = varied_history(&store);
    let kv = |k: &str, v: &str, c, m, ver, lease| KeyValue {
        key: b(k.as_bytes()),
        value: b(v.as_bytes()),
        create_revision: c,
        mod_revision: m,
        version: ver,
        lease,
    };
    let image = super::CheckpointImage {
        index: 40,
        revision: 30,
        compact_revision: 5,
        kvs: vec![kv("a", "x", 3, 20, 4, 0), kv("z", "y", 25, 30, 1, 7)],
        leases: vec![(7, 60)],
        auth: std::sync::Arc::new(auth_state("from-the-image")),
    };
    store.load_checkpoint(&image).unwrap();
    assert_eq!(
        store.auth().unwrap(),
        image.auth,
        "the image's auth state replaces the store's"
    );
    let v = store.view();
    assert_eq!(v.applied_index(), 40);
    assert_eq!(v.revision(), 30);
    assert!(v.compact_revision() >= 30);
    assert_eq!(scan_all(&v, &all(), 30).unwrap(), image.kvs);
    assert_eq!(
        v.get(b"b", 30).unwrap(),
        None,
        "keys not in the image are gone"
    );
    assert_eq!(store.leases().unwrap(), vec![(7, 60)]);
    assert_eq!(store.lease_keys().unwrap(), vec![(7, b(b"z"))]);
    assert_eq!(v.get(b"a", 29), Err(StoreError::Compacted));
    // The image holds no history: a watch from before it must be refused, not served from
    // an empty log (which would silently skip the revisions up to the image).
    assert!(
        matches!(events_all(&v, 29, 30), Err(StoreError::Compacted)),
        "events before a loaded checkpoint must read as compacted"
    );
    // Nor does it hold its own revision's events (which deleted what?): a watch from the
    // image's revision must be refused too, while reads at it work.
    assert!(
        matches!(events_all(&v, 30, 30), Err(StoreError::Compacted)),
        "the loaded checkpoint's own revision has no events to replay"
    );
    let next = LogEntry {
        index: 41,
        term: 1,
        ops: vec![LogOp::Revision {
            revision: 31,
            changes: vec![crate::wal::Change::Put {
                kv: kv("a", "w", 3, 31, 5, 0),
                prev_lease: 0,
            }],
        }],
    };
    store.apply(&next).unwrap();
    let v = store.view();
    assert_eq!(v.get(b"a", 31).unwrap().unwrap().value, b(b"w"));
    assert_eq!(v.get(b"a", 30).unwrap().unwrap().value, b(b"x"));
    assert_eq!(events_all(&v, 31, 31).unwrap().len(), 1);
    store.persist().unwrap();

    // An image at the initial revision (a checkpoint of a store nobody wrote to) misses no
    // events: revision 1 never has any, so a watch from 1 is served, not cancelled.
    let empty = make();
    empty
        .load_checkpoint(&super::CheckpointImage {
            index: 3,
            revision: 1,
            compact_revision: 0,
            kvs: vec![],
            leases: vec![],
            auth: Default::default(),
        })
        .unwrap();
    assert_eq!(events_all(&empty.view(), 1, 1), Ok(vec![]));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mvcc::MemStore;

    #[test]
    fn mem_store_keeps_the_store_contract() {
        run_all(&mut MemStore::new);
    }
}
