use std::collections::HashMap;
use std::ops::ControlFlow;

use bytes::Bytes;
use t4_core::mvcc::{MemStore, conformance};
use t4_core::wal::{Change, LogEntry, LogOp};
use t4_core::{Event, KeyRange, KeyValue, LeaseId, ReadView, Revision, Store, StoreError};

use super::{FjallStore, format};

#[test]
fn fjall_store_keeps_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    conformance::run_all(&mut || {
        n += 1;
        FjallStore::open(&dir.path().join(n.to_string())).unwrap()
    });
}

/// Builds etcd-consistent entries and applies them to every store given.
struct Writer {
    index: u64,
    revision: Revision,
    live: HashMap<Bytes, KeyValue>,
}

enum W {
    Put(Bytes, Bytes, LeaseId),
    Del(Bytes),
}

impl Writer {
    fn new() -> Writer {
        Writer {
            index: 0,
            revision: 1,
            live: HashMap::new(),
        }
    }

    fn revision(&mut self, writes: Vec<W>) -> LogOp {
        self.revision += 1;
        let rev = self.revision;
        let changes = writes
            .into_iter()
            .map(|w| match w {
                W::Put(key, value, lease) => {
                    let prev = self.live.get(&key);
                    let kv = KeyValue {
                        key: key.clone(),
                        create_revision: prev.map_or(rev, |p| p.create_revision),
                        mod_revision: rev,
                        version: prev.map_or(1, |p| p.version + 1),
                        value,
                        lease,
                    };
                    let prev_lease = prev.map_or(0, |p| p.lease);
                    self.live.insert(key, kv.clone());
                    Change::Put { kv, prev_lease }
                }
                W::Del(key) => {
                    let prev = self.live.remove(&key).expect("deletes only live keys");
                    Change::Delete {
                        key,
                        prev_lease: prev.lease,
                    }
                }
            })
            .collect();
        LogOp::Revision {
            revision: rev,
            changes,
        }
    }

    fn entry(&mut self, ops: Vec<LogOp>) -> LogEntry {
        self.index += 1;
        LogEntry {
            index: self.index,
            term: 1,
            ops,
        }
    }
}

fn key(i: usize) -> Bytes {
    Bytes::from(format!("/registry/pods/{i:06}"))
}

fn scan(
    view: &impl ReadView,
    range: &KeyRange,
    rev: Revision,
) -> Result<Vec<KeyValue>, StoreError> {
    let mut out = Vec::new();
    view.scan(range, rev, &mut |kv| {
        out.push(kv);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

fn events(view: &impl ReadView, from: Revision, to: Revision) -> Result<Vec<Event>, StoreError> {
    let mut out = Vec::new();
    view.events(from, to, &mut |e| {
        out.push(e);
        ControlFlow::Continue(())
    })?;
    Ok(out)
}

fn all() -> KeyRange {
    KeyRange::From(Bytes::new())
}

/// Applies one entry of `ops` to both stores.
fn apply_both(stores: (&FjallStore, &MemStore), w: &mut Writer, ops: Vec<LogOp>) {
    let entry = w.entry(ops);
    stores.0.apply(&entry).unwrap();
    stores.1.apply(&entry).unwrap();
}

/// Logs a compaction to `revision` in both stores, then compacts both physically.
fn compact_both(stores: (&FjallStore, &MemStore), w: &mut Writer, revision: Revision) {
    apply_both(stores, w, vec![LogOp::Compact { revision }]);
    stores.0.compact(revision).unwrap();
    stores.1.compact(revision).unwrap();
}

/// `keys` keys, each written `versions` times (one revision per write, many revisions per
/// entry), every third key deleted at the end and every ninth re-created; applied to both
/// stores. Returns the revision after each round of writes.
fn fill(
    stores: (&FjallStore, &MemStore),
    w: &mut Writer,
    keys: usize,
    versions: usize,
) -> Vec<Revision> {
    let mut rounds = Vec::new();
    for round in 0..versions {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(500) {
            let ops = chunk
                .iter()
                .map(|&i| {
                    let value = Bytes::from(format!("value {i} round {round}"));
                    w.revision(vec![W::Put(key(i), value, (i % 4) as LeaseId)])
                })
                .collect();
            apply_both(stores, w, ops);
        }
        rounds.push(w.revision);
    }
    for chunk in (0..keys).step_by(3).collect::<Vec<_>>().chunks(500) {
        // One delete-range-like revision per chunk.
        let op = w.revision(chunk.iter().map(|&i| W::Del(key(i))).collect());
        apply_both(stores, w, vec![op]);
    }
    rounds.push(w.revision);
    for chunk in (0..keys).step_by(9).collect::<Vec<_>>().chunks(500) {
        let ops = chunk
            .iter()
            .map(|&i| w.revision(vec![W::Put(key(i), Bytes::from_static(b"again"), 0)]))
            .collect();
        apply_both(stores, w, ops);
    }
    rounds.push(w.revision);
    rounds
}

#[test]
fn reopening_after_drop_keeps_every_applied_entry() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mem = MemStore::new();
    let mut w = Writer::new();
    {
        let store = FjallStore::open(&path).unwrap();
        fill((&store, &mem), &mut w, 300, 3);
        let ops = vec![
            LogOp::LeaseGrant { id: 1, ttl: 30 },
            LogOp::LeaseGrant { id: 2, ttl: 60 },
            LogOp::Compact { revision: 5 },
        ];
        apply_both((&store, &mem), &mut w, ops);
        store.persist().unwrap();
        // Applied after the last persist: a clean drop keeps it too.
        let op = w.revision(vec![W::Put(key(0), Bytes::from_static(b"last"), 1)]);
        apply_both(
            (&store, &mem),
            &mut w,
            vec![op, LogOp::LeaseRevoke { id: 2 }],
        );
    }
    let store = FjallStore::open(&path).unwrap();
    let (v, m) = (store.view(), mem.view());
    assert_eq!(v.applied_index(), w.index);
    assert_eq!(v.revision(), w.revision);
    assert_eq!(v.compact_revision(), 5);
    for rev in [1, 2, 5, 300, 600, 700, w.revision] {
        assert_eq!(
            scan(&v, &all(), rev),
            scan(&m, &all(), rev),
            "scan at {rev}"
        );
    }
    assert_eq!(events(&v, 1, i64::MAX), events(&m, 1, i64::MAX));
    assert_eq!(store.leases(), Ok(vec![(1, 30)]));
    let mut want = mem.lease_keys().unwrap();
    want.sort();
    assert_eq!(store.lease_keys(), Ok(want));

    // And it carries on from there.
    let op = w.revision(vec![W::Put(key(1), Bytes::from_static(b"next"), 0)]);
    let entry = w.entry(vec![op]);
    store.apply(&entry).unwrap();
    assert_eq!(
        store
            .view()
            .get(&key(1), w.revision)
            .unwrap()
            .unwrap()
            .value,
        "next"
    );
    let stale = LogEntry {
        index: w.index,
        term: 1,
        ops: vec![],
    };
    assert!(matches!(store.apply(&stale), Err(StoreError::Corrupt(_))));
}

#[test]
fn a_store_from_a_newer_t4_is_refused_and_left_untouched() {
    let newer = format::FORMAT_VERSION + 1;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(FjallStore::open(&path).unwrap());
    {
        let db = fjall::Database::builder(&path).open().unwrap();
        let meta = db
            .keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        meta.insert(format::FORMAT_KEY, newer.to_be_bytes())
            .unwrap();
        db.persist(fjall::PersistMode::SyncAll).unwrap();
    }
    let err = FjallStore::open(&path).unwrap_err();
    let StoreError::Corrupt(msg) = &err else {
        panic!("expected Corrupt, got {err:?}");
    };
    assert!(msg.contains(&format!("format version {newer}")), "{msg}");
    assert!(msg.contains("upgrade t4"), "{msg}");
    assert!(msg.contains(&path.display().to_string()), "{msg}");

    let db = fjall::Database::builder(&path).open().unwrap();
    let meta = db
        .keyspace("meta", fjall::KeyspaceCreateOptions::default)
        .unwrap();
    assert_eq!(
        meta.get(format::FORMAT_KEY).unwrap().as_deref(),
        Some(&newer.to_be_bytes()[..]),
        "the newer store is not rewritten"
    );
}

#[test]
fn a_fjall_database_that_is_not_a_t4_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        let other = db
            .keyspace("other", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        other.insert("k", "v").unwrap();
    }
    let err = FjallStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Corrupt(msg) if msg.contains("not a t4 store")),
        "{err:?}"
    );
}

#[test]
fn a_view_is_unaffected_by_a_concurrent_compaction_and_applies() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let mut w = Writer::new();
    let rounds = fill((&store, &mem), &mut w, 2000, 4);
    let compact_at = rounds[2];
    let entry = w.entry(vec![LogOp::Compact {
        revision: compact_at,
    }]);
    store.apply(&entry).unwrap();
    mem.apply(&entry).unwrap();

    // What the old view must keep showing, read before anything is removed.
    let old = store.view();
    let old_revs = [rounds[0], rounds[1], compact_at, rounds[3], w.revision];
    let expected: Vec<Vec<KeyValue>> = old_revs
        .iter()
        .map(|&rev| scan(&mem.view(), &all(), rev).unwrap())
        .collect();
    let expected_events = events(&mem.view(), 1, i64::MAX).unwrap();

    let mut w2 = Writer {
        index: w.index,
        revision: w.revision,
        live: w.live.clone(),
    };
    let store_ref = &store;
    w = std::thread::scope(|s| {
        let compactor = s.spawn(|| store_ref.compact(compact_at));
        let writer = s.spawn(move || {
            let store = store_ref;
            let mut applied = Vec::new();
            for i in 0..200 {
                let op = w2.revision(vec![W::Put(key(i), Bytes::from_static(b"during"), 0)]);
                let entry = w2.entry(vec![op]);
                store.apply(&entry).unwrap();
                applied.push(entry);
            }
            (w2, applied)
        });
        // Read the old view while both run.
        loop {
            let done = compactor.is_finished() && writer.is_finished();
            for (rev, want) in old_revs.iter().zip(&expected) {
                assert_eq!(
                    scan(&old, &all(), *rev).as_ref(),
                    Ok(want),
                    "old view at {rev}"
                );
            }
            if done {
                break;
            }
        }
        compactor.join().unwrap().unwrap();
        let (w2, applied) = writer.join().unwrap();
        for entry in &applied {
            mem.apply(entry).unwrap();
        }
        w2
    });
    mem.compact(compact_at).unwrap();

    for (rev, want) in old_revs.iter().zip(&expected) {
        assert_eq!(
            scan(&old, &all(), *rev).as_ref(),
            Ok(want),
            "old view at {rev} after"
        );
    }
    assert_eq!(
        events(&old, 1, i64::MAX),
        Ok(expected_events),
        "old view's events"
    );

    let (v, m) = (store.view(), mem.view());
    assert_eq!(v.revision(), w.revision);
    assert_eq!(v.get(&key(3), compact_at - 1), Err(StoreError::Compacted));
    assert_eq!(scan(&v, &all(), rounds[1]), Err(StoreError::Compacted));
    for rev in [compact_at, rounds[3], rounds[4], rounds[5], w.revision] {
        assert_eq!(
            scan(&v, &all(), rev),
            scan(&m, &all(), rev),
            "scan at {rev}"
        );
    }
    assert_eq!(
        events(&v, compact_at, i64::MAX),
        events(&m, compact_at, i64::MAX)
    );
}

fn count(store: &FjallStore, keyspace: &fjall::Keyspace) -> usize {
    use fjall::Readable;
    store.inner.db.snapshot().iter(keyspace).count()
}

#[test]
fn compacting_a_large_store_keeps_reads_right_and_removes_history() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let mut w = Writer::new();
    let keys = 20_000;
    let rounds = fill((&store, &mem), &mut w, keys, 4);
    let history_before = count(&store, &store.inner.history);

    // First to the middle of the history, then to the end (the second walks only the
    // revision log since the first).
    for compact_at in [rounds[1] + 1234, w.revision] {
        compact_both((&store, &mem), &mut w, compact_at);
        store.compact(compact_at).unwrap();

        let (v, m) = (store.view(), mem.view());
        let revs = rounds
            .iter()
            .copied()
            .filter(|&r| r >= compact_at)
            .chain([compact_at]);
        for rev in revs {
            assert_eq!(
                scan(&v, &all(), rev),
                scan(&m, &all(), rev),
                "scan at {rev}"
            );
            for i in (0..keys).step_by(97) {
                assert_eq!(v.get(&key(i), rev), m.get(&key(i), rev), "get {i} at {rev}");
            }
        }
        assert_eq!(scan(&v, &all(), compact_at - 1), Err(StoreError::Compacted));
        assert_eq!(
            events(&v, compact_at, i64::MAX),
            events(&m, compact_at, i64::MAX)
        );
        assert_eq!(
            events(&v, compact_at - 1, i64::MAX),
            Err(StoreError::Compacted)
        );
    }
    // Everything is compacted: history holds exactly the live keys, the revision log only
    // the record that holds the last revision.
    let live = scan(&store.view(), &all(), w.revision).unwrap().len();
    assert_eq!(count(&store, &store.inner.history), live);
    assert!(history_before > 4 * keys);
    assert_eq!(count(&store, &store.inner.changes), 1);
}

/// An entry with more changes than a `changes` record holds — many revisions, or one
/// revision deleting many keys — is cut into several records, one starting in the middle
/// of a revision; events from any revision, and compaction to one inside a record, still
/// match the model.
#[test]
fn long_entries_are_cut_into_several_change_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let mut w = Writer::new();
    let keys = super::CHANGES_PER_RECORD + 1000;
    let puts = (0..keys)
        .map(|i| w.revision(vec![W::Put(key(i), Bytes::from_static(b"v"), 0)]))
        .collect();
    apply_both((&store, &mem), &mut w, puts);
    let first_delete = w.revision + 1;
    let delete_all = w.revision((0..keys).map(|i| W::Del(key(i))).collect());
    let last_put = w.revision(vec![W::Put(key(7), Bytes::from_static(b"again"), 0)]);
    apply_both((&store, &mem), &mut w, vec![delete_all, last_put]);
    assert_eq!(
        count(&store, &store.inner.changes),
        4,
        "two records per entry"
    );

    let (v, m) = (store.view(), mem.view());
    let cut = 2 + super::CHANGES_PER_RECORD as Revision;
    for from in [1, 2, 3, cut - 1, cut, cut + 1, first_delete, w.revision] {
        assert_eq!(
            events(&v, from, i64::MAX),
            events(&m, from, i64::MAX),
            "events from {from}"
        );
        assert_eq!(
            events(&v, from, from),
            events(&m, from, from),
            "events at {from}"
        );
    }

    let compact_at = cut + 10;
    compact_both((&store, &mem), &mut w, compact_at);
    assert_eq!(
        count(&store, &store.inner.changes),
        3,
        "only the record wholly below the compaction goes"
    );
    let (v, m) = (store.view(), mem.view());
    assert_eq!(
        events(&v, compact_at, i64::MAX),
        events(&m, compact_at, i64::MAX)
    );
    assert_eq!(scan(&v, &all(), w.revision), scan(&m, &all(), w.revision));
}

/// A store of format version 1 (one `revlog` record per change) is upgraded when opened:
/// its history of events reads the same, `revlog` is gone, the format is now the current
/// one, and it takes applies and compactions as any other.
#[test]
fn a_format_1_store_is_upgraded_when_opened() {
    use fjall::Readable;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mem = MemStore::new();
    let mut w = Writer::new();
    {
        let store = FjallStore::open(&path).unwrap();
        fill((&store, &mem), &mut w, 300, 3);
        store.persist().unwrap();
    }
    downgrade_to_format_1(&path);

    let store = FjallStore::open(&path).unwrap();
    let (v, m) = (store.view(), mem.view());
    assert_eq!(v.revision(), w.revision);
    for from in [1, 2, 150, 301, 302, 900, w.revision] {
        assert_eq!(
            events(&v, from, i64::MAX),
            events(&m, from, i64::MAX),
            "events from {from}"
        );
    }
    assert!(!store.inner.db.keyspace_exists("revlog"));
    assert_eq!(
        store.inner.meta.get(format::FORMAT_KEY).unwrap().as_deref(),
        Some(&format::FORMAT_VERSION.to_be_bytes()[..])
    );
    assert!(
        store.inner.db.snapshot().iter(&store.inner.changes).count() > 0,
        "the changes were carried over"
    );

    let op = w.revision(vec![W::Put(key(1), Bytes::from_static(b"next"), 0)]);
    apply_both((&store, &mem), &mut w, vec![op]);
    let compact_at = 700;
    compact_both((&store, &mem), &mut w, compact_at);
    let (v, m) = (store.view(), mem.view());
    assert_eq!(
        events(&v, compact_at, i64::MAX),
        events(&m, compact_at, i64::MAX)
    );
    assert_eq!(scan(&v, &all(), w.revision), scan(&m, &all(), w.revision));
}

/// Rewrites a store into format version 1: each change of every `changes` record becomes
/// a `revlog` record keyed by its revision and index in it, and the version goes back to 1.
fn downgrade_to_format_1(path: &std::path::Path) {
    use fjall::Readable;
    let db = fjall::Database::builder(path).open().unwrap();
    let open = |name: &str| {
        db.keyspace(name, fjall::KeyspaceCreateOptions::default)
            .unwrap()
    };
    let (meta, changes, revlog) = (open("meta"), open("changes"), open("revlog"));
    let snapshot = db.snapshot();
    let mut batch = db.batch();
    let mut previous: Option<(Revision, u32)> = None;
    for guard in snapshot.iter(&changes) {
        let (ck, record) = guard.into_inner().unwrap();
        for change in format::decode_changes(Bytes::from(record.to_vec())).unwrap() {
            let index = match previous {
                Some((rev, i)) if rev == change.revision => i + 1,
                _ => 0,
            };
            previous = Some((change.revision, index));
            let tag = if change.tombstone { 2u8 } else { 1 };
            let mut value = vec![tag];
            value.extend_from_slice(&change.key);
            batch.insert(&revlog, format::changes_key(change.revision, index), value);
        }
        batch.remove(&changes, ck.to_vec());
    }
    batch.insert(&meta, format::FORMAT_KEY, 1u32.to_be_bytes());
    batch.commit().unwrap();
    drop(snapshot);
    db.persist(fjall::PersistMode::SyncAll).unwrap();
}

#[test]
fn views_and_handles_cross_threads() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    fn assert_send<T: Send + 'static>() {}
    assert_send_sync::<FjallStore>();
    assert_send::<super::FjallView>();
}

#[test]
fn a_creation_interrupted_before_anything_was_written_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = fjall::Database::builder(dir.path()).open().unwrap();
        db.keyspace("meta", fjall::KeyspaceCreateOptions::default)
            .unwrap();
        db.keyspace("latest", fjall::KeyspaceCreateOptions::default)
            .unwrap();
    }
    let store = FjallStore::open(dir.path()).unwrap();
    assert_eq!(store.view().revision(), 1);
    drop(store);
    assert_eq!(
        FjallStore::open(dir.path()).unwrap().view().applied_index(),
        0
    );
}

#[test]
fn keys_fjall_cannot_hold_are_refused_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let longest = Bytes::from(vec![0u8; t4_core::kv::MAX_KEY_LEN]);
    for (key, ok) in [
        (Bytes::new(), false),
        (Bytes::from(vec![0u8; t4_core::kv::MAX_KEY_LEN + 1]), false),
        (longest.clone(), true),
    ] {
        let index = store.view().applied_index() + 1;
        let revision = store.view().revision() + 1;
        let entry = LogEntry {
            index,
            term: 1,
            ops: vec![LogOp::Revision {
                revision,
                changes: vec![Change::Delete { key, prev_lease: 0 }],
            }],
        };
        assert_eq!(store.apply(&entry).is_ok(), ok);
    }
    // The longest key, all 0x00 (the worst case for escaping), reads back.
    assert_eq!(events(&store.view(), 2, 2).unwrap()[0].kv.key, longest);
}

#[test]
fn reads_with_keys_or_bounds_longer_than_any_key_match_the_model_and_do_not_panic() {
    let dir = tempfile::tempdir().unwrap();
    let fjall = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let max = t4_core::kv::MAX_KEY_LEN;
    let repeat = |byte: u8, n: usize| Bytes::from(vec![byte; n]);
    let with_last = |n: usize, last: u8| {
        let mut k = vec![b'b'; n - 1];
        k.push(last);
        Bytes::from(k)
    };
    let keys = [
        Bytes::from_static(b"a"),
        repeat(b'b', max),
        with_last(max, 0),
        with_last(max, b'c'),
        Bytes::from_static(b"c"),
    ];
    let mut w = Writer::new();
    for round in 0..2 {
        let ops = keys
            .iter()
            .map(|k| w.revision(vec![W::Put(k.clone(), Bytes::from(format!("{round}")), 0)]))
            .collect();
        let entry = w.entry(ops);
        fjall.apply(&entry).unwrap();
        mem.apply(&entry).unwrap();
    }
    let bounds = [
        repeat(b'b', max + 1),
        repeat(b'b', max + 2),
        repeat(b'b', 100_000),
        with_last(max + 1, 0),
        with_last(100_000, 0),
        with_last(100_000, b'c'),
        repeat(0, 70_000),
        repeat(0xff, 70_000),
    ];
    let (fv, mv) = (fjall.view(), mem.view());
    let current = fv.revision();
    for rev in [current, current - 3] {
        for b in &bounds {
            let ranges = [
                KeyRange::From(b.clone()),
                KeyRange::Between(Bytes::from_static(b"a"), b.clone()),
                KeyRange::Between(b.clone(), Bytes::from_static(b"d")),
                KeyRange::Single(b.clone()),
            ];
            for range in &ranges {
                assert_eq!(
                    scan(&fv, range, rev).unwrap(),
                    scan(&mv, range, rev).unwrap(),
                    "bound of {} bytes at revision {rev}",
                    b.len()
                );
            }
            assert_eq!(fv.get(b, rev).unwrap(), None);
        }
    }
}

// The latest-version cache (cache.rs): point reads through it answer exactly what the
// snapshot holds, whatever was cached, evicted, or read from an older view meanwhile.

#[test]
fn fjall_store_keeps_the_store_contract_with_a_tiny_cache_and_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for cache_bytes in [0, 2048] {
        conformance::run_all(&mut || {
            n += 1;
            FjallStore::open_with_cache(&dir.path().join(n.to_string()), cache_bytes).unwrap()
        });
    }
}

fn get(view: &impl ReadView, k: &Bytes) -> Option<Bytes> {
    view.get(k, view.revision()).unwrap().map(|kv| kv.value)
}

fn put(store: &FjallStore, w: &mut Writer, k: &Bytes, value: &'static str) {
    let op = w.revision(vec![W::Put(
        k.clone(),
        Bytes::from_static(value.as_bytes()),
        0,
    )]);
    store.apply(&w.entry(vec![op])).unwrap();
}

#[test]
fn a_read_from_a_view_older_than_an_apply_does_not_fill_the_cache_with_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mut w = Writer::new();
    let k = key(1);
    put(&store, &mut w, &k, "v1");
    let old = store.view();
    put(&store, &mut w, &k, "v2");
    // The old view reads v1 from its snapshot; were that admitted to the cache as the key's
    // latest version, the next read at the newest revision would answer v1.
    assert_eq!(get(&old, &k).unwrap(), "v1");
    assert_eq!(get(&store.view(), &k).unwrap(), "v2");
    assert_eq!(
        store.view().get_current(k.clone()).unwrap().unwrap().value,
        "v2"
    );
}

#[test]
fn cached_versions_follow_puts_and_deletes_and_old_views_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mut w = Writer::new();
    let k = key(7);
    put(&store, &mut w, &k, "v1");
    let at_v1 = store.view();
    // Read twice: the first read fills the cache, the second is answered by it.
    for _ in 0..2 {
        assert_eq!(get(&store.view(), &k).unwrap(), "v1");
    }
    put(&store, &mut w, &k, "v2");
    let at_v2 = store.view();
    assert_eq!(get(&at_v2, &k).unwrap(), "v2");
    // The cache holds v2 now; the view at v1 must not take it.
    assert_eq!(get(&at_v1, &k).unwrap(), "v1");
    let del = w.revision(vec![W::Del(k.clone())]);
    store.apply(&w.entry(vec![del])).unwrap();
    assert_eq!(get(&store.view(), &k), None);
    assert_eq!(store.view().get_current(k.clone()).unwrap(), None);
    assert_eq!(get(&at_v2, &k).unwrap(), "v2");
    put(&store, &mut w, &k, "v3");
    let kv = store.view().get_current(k.clone()).unwrap().unwrap();
    assert_eq!((kv.value.as_ref(), kv.version), (&b"v3"[..], 1));
    assert_eq!(get(&at_v1, &k).unwrap(), "v1");
}

#[test]
fn a_loaded_checkpoint_replaces_cached_versions_even_for_views_from_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mut w = Writer::new();
    let (a, gone) = (key(1), key(2));
    put(&store, &mut w, &a, "before");
    put(&store, &mut w, &gone, "before");
    let before = store.view();
    assert_eq!(get(&before, &a).unwrap(), "before");
    assert_eq!(get(&before, &gone).unwrap(), "before");
    // An image at the same revision as the view from before it, so that only the cache's
    // generation tells the two stores apart.
    let image = t4_core::CheckpointImage {
        index: 10,
        revision: before.revision(),
        compact_revision: 0,
        kvs: vec![KeyValue {
            key: a.clone(),
            value: Bytes::from_static(b"loaded"),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            lease: 0,
        }],
        leases: vec![],
        auth: Default::default(),
    };
    store.load_checkpoint(&image).unwrap();
    // The old view still reads its own snapshot, and its reads must not fill the cache.
    assert_eq!(get(&before, &a).unwrap(), "before");
    assert_eq!(get(&before, &gone).unwrap(), "before");
    let after = store.view();
    assert_eq!(get(&after, &a).unwrap(), "loaded");
    assert_eq!(get(&after, &gone), None);
}

mod cache_model {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Put(usize, u8),
        Delete(usize),
        /// Keep a view of the current revision.
        Hold,
        /// Read a key through the newest view.
        Read(usize),
        /// Read a key through the `n`th held view (modulo how many are held).
        ReadOld(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0..12usize, any::<u8>()).prop_map(|(k, v)| Op::Put(k, v)),
            1 => (0..12usize).prop_map(Op::Delete),
            1 => Just(Op::Hold),
            3 => (0..12usize).prop_map(Op::Read),
            2 => (0..12usize, any::<usize>()).prop_map(|(k, n)| Op::ReadOld(k, n)),
        ]
    }

    proptest! {
        /// Point reads of a store with a cache that holds a few entries (so they are
        /// evicted and refilled all the time) answer what the in-memory store answers,
        /// through the newest view and through views held across later writes.
        #[test]
        fn point_reads_through_a_small_cache_match_the_model(
            ops in proptest::collection::vec(op(), 1..120)
        ) {
            let dir = tempfile::tempdir().unwrap();
            let fjall = FjallStore::open_with_cache(dir.path(), 1024).unwrap();
            let mem = MemStore::new();
            let mut w = Writer::new();
            let mut held = Vec::new();
            for op in ops {
                let writes = match op {
                    Op::Put(k, v) => vec![W::Put(key(k), Bytes::from(vec![v; 1 + v as usize]), 0)],
                    Op::Delete(k) if w.live.contains_key(&key(k)) => vec![W::Del(key(k))],
                    Op::Delete(_) => vec![],
                    Op::Hold => {
                        held.push((fjall.view(), mem.view()));
                        vec![]
                    }
                    Op::Read(k) => {
                        let (f, m) = (fjall.view(), mem.view());
                        prop_assert_eq!(f.get(&key(k), f.revision()), m.get(&key(k), m.revision()));
                        prop_assert_eq!(
                            f.get_current(key(k)).unwrap(),
                            m.get(&key(k), m.revision()).unwrap()
                        );
                        vec![]
                    }
                    Op::ReadOld(k, n) if !held.is_empty() => {
                        let (f, m) = &held[n % held.len()];
                        prop_assert_eq!(f.get(&key(k), f.revision()), m.get(&key(k), m.revision()));
                        vec![]
                    }
                    Op::ReadOld(..) => vec![],
                };
                if !writes.is_empty() {
                    let op = w.revision(writes);
                    let entry = w.entry(vec![op]);
                    fjall.apply(&entry).unwrap();
                    mem.apply(&entry).unwrap();
                }
            }
        }
    }
}

#[test]
fn overwritten_keys_that_are_scanned_seal_latest_early_and_reads_still_match_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let mut w = Writer::new();
    let current = |store: &FjallStore| {
        let view = store.view();
        scan(&view, &all(), view.revision()).unwrap()
    };
    // 200 keys written 60 times: 11,800 superseded versions, but nothing scanned them.
    let mut rounds = fill((&store, &mem), &mut w, 200, 60);
    assert_eq!(store.latest_memtable_seals(), 0, "sealed with no scan");
    // A view from before the seal, with what it must keep showing.
    let old = store.view();
    let old_revs = [rounds[0], rounds[30], w.revision];
    let expected: Vec<Vec<KeyValue>> = old_revs
        .iter()
        .map(|&rev| scan(&mem.view(), &all(), rev).unwrap())
        .collect();
    // The first scan seals it.
    current(&store);
    assert_eq!(store.latest_memtable_seals(), 1, "a scan of a due memtable");
    store.wait_for_seal();
    // Writes alone seal nothing more; after a scan, the apply that finds it due seals.
    rounds.extend(fill((&store, &mem), &mut w, 200, 60));
    assert_eq!(
        store.latest_memtable_seals(),
        1,
        "sealed with no scan since"
    );
    current(&store);
    assert_eq!(store.latest_memtable_seals(), 2);
    store.wait_for_seal();
    current(&store);
    rounds.extend(fill((&store, &mem), &mut w, 200, 60));
    assert_eq!(store.latest_memtable_seals(), 3, "an apply after a scan");

    let (now, model) = (store.view(), mem.view());
    for &rev in rounds.iter().chain([&w.revision]) {
        assert_eq!(
            scan(&now, &all(), rev).unwrap(),
            scan(&model, &all(), rev).unwrap(),
            "at revision {rev}"
        );
    }
    for (rev, want) in old_revs.iter().zip(&expected) {
        assert_eq!(
            &scan(&old, &all(), *rev).unwrap(),
            want,
            "old view at {rev}"
        );
    }

    // New keys, scanned or not, seal nothing.
    let dir = tempfile::tempdir().unwrap();
    let fresh = FjallStore::open(dir.path()).unwrap();
    let mut w = Writer::new();
    for chunk in (0..20_000).collect::<Vec<_>>().chunks(500) {
        let op = w.revision(
            chunk
                .iter()
                .map(|&i| W::Put(key(i), Bytes::from_static(b"v"), 0))
                .collect(),
        );
        fresh.apply(&w.entry(vec![op])).unwrap();
        current(&fresh);
    }
    assert_eq!(fresh.latest_memtable_seals(), 0);
}

#[test]
fn a_paged_list_counts_the_rest_of_its_range_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = FjallStore::open(dir.path()).unwrap();
    let mem = MemStore::new();
    let mut w = Writer::new();
    let rounds = fill((&store, &mem), &mut w, 2_000, 2);
    let hits = || store.inner.counts.hits();
    let pods = KeyRange::prefix(Bytes::from_static(b"/registry/pods/"));
    let list_in_pages =
        |rev| conformance::compare_pages(&store.view(), &mem.view(), &pods, rev, 50, "list");

    // At the current revision (the `latest` keyspace), then at an older one (history):
    // only the first page walks the rest of the range; every other page's count is the one
    // the page before it left.
    for rev in [0, rounds[0]] {
        let before = hits();
        let pages = list_in_pages(rev);
        assert!(pages > 20, "{pages} pages");
        assert_eq!(
            hits() - before,
            pages - 2,
            "pages counted from the cache at {rev}"
        );
    }
    // A write moves the current revision on: a list at the new revision counts anew, and
    // its pages are right.
    let op = w.revision(vec![W::Put(key(1), Bytes::from_static(b"new"), 0)]);
    apply_both((&store, &mem), &mut w, vec![op]);
    list_in_pages(0);
}
