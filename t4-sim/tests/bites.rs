//! The simulator proves it bites: every checker rejects a known-bad history (and accepts the
//! same history made good), and a node on a lying disk is caught losing acknowledged writes.

use bytes::Bytes;
use t4_core::mvcc::MemStore;
use t4_core::request::{
    Compare, CompareResult, CompareTarget, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};
use t4_core::wal::{Change, LogEntry, LogOp};
use t4_core::watch::WatchFilter;
use t4_core::{Event, EventKind, Instant, KeyRange, KeyValue, Request, Response, Revision, Store};
use t4_sim::checker::{
    self, CheckConfig, Kind, Window, linearizable, lost_writes, revisions, watches,
};
use t4_sim::fault::{BucketChoice, FaultMode};
use t4_sim::history::{Call, History, Reply, WatchEnd};
use t4_sim::logbook::{Committed, Epoch, LogBook};
use t4_sim::{Scenario, run};

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn t(ms: u64) -> Instant {
    Instant(ms * 1_000_000)
}

fn kv(key: &str, value: &str, create: Revision, rev: Revision, version: i64) -> KeyValue {
    KeyValue {
        key: b(key),
        value: b(value),
        create_revision: create,
        mod_revision: rev,
        version,
        lease: 0,
    }
}

fn put_change(key: &str, value: &str, create: Revision, rev: Revision, version: i64) -> LogOp {
    LogOp::Revision {
        revision: rev,
        changes: vec![Change::Put {
            kv: kv(key, value, create, rev, version),
            prev_lease: 0,
        }],
    }
}

fn epoch(ops: Vec<Vec<LogOp>>) -> Epoch {
    Epoch {
        start: Instant::ZERO,
        entries: ops
            .into_iter()
            .enumerate()
            .map(|(i, ops)| Committed {
                entry: LogEntry {
                    index: i as u64 + 1,
                    term: 1,
                    ops,
                },
                // Late enough that any request of these tests could be in it.
                written_at: t(1000),
                committed_at: t(1000),
                adopted: false,
            })
            .collect(),
    }
}

fn put(key: &str, value: &str) -> Call {
    Call::Request(Request::Put(PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    }))
}

fn put_ok(rev: Revision) -> Result<Reply, t4_core::Error> {
    Ok(Reply::Response(Response::Put(PutResponse {
        revision: rev,
        prev_kv: None,
    })))
}

fn get(key: &str) -> Call {
    Call::Range(RangeRequest {
        key: b(key),
        ..Default::default()
    })
}

fn got(rev: Revision, kvs: Vec<KeyValue>) -> Result<Reply, t4_core::Error> {
    Ok(Reply::Range(RangeResponse {
        revision: rev,
        count: kvs.len() as i64,
        kvs,
        more: false,
    }))
}

fn record(
    h: &mut History,
    client: usize,
    call: Call,
    from: u64,
    to: u64,
    result: Result<Reply, t4_core::Error>,
) {
    let op = h.invoke(client, call, t(from));
    h.complete(op, t(to), result);
}

fn lin(h: &History, e: &Epoch) -> Vec<Kind> {
    linearizable::check(h, e, Window::ALL, CheckConfig::default())
        .violations
        .iter()
        .map(|v| v.kind)
        .collect()
}

/// One put of `a`, acknowledged at revision 2.
fn one_put() -> (History, Epoch) {
    let mut h = History::new();
    record(&mut h, 0, put("a", "v1"), 0, 10, put_ok(2));
    (h, epoch(vec![vec![put_change("a", "v1", 2, 2, 1)]]))
}

#[test]
fn linearizability_rejects_a_stale_read() {
    let (mut good, e) = one_put();
    record(
        &mut good,
        1,
        get("a"),
        20,
        30,
        got(2, vec![kv("a", "v1", 2, 2, 1)]),
    );
    assert!(lin(&good, &e).is_empty(), "a fresh read is fine");

    // The read began after the put was acknowledged, yet saw the store before it.
    let (mut bad, e) = one_put();
    record(&mut bad, 1, get("a"), 20, 30, got(1, vec![]));
    assert_eq!(lin(&bad, &e), vec![Kind::Linearizability]);

    // Concurrent with the put, the same stale read is fine.
    let (mut concurrent, e) = one_put();
    record(&mut concurrent, 1, get("a"), 5, 30, got(1, vec![]));
    assert!(lin(&concurrent, &e).is_empty());
}

#[test]
fn linearizability_rejects_a_read_of_a_value_never_written() {
    let (mut bad, e) = one_put();
    record(
        &mut bad,
        1,
        get("a"),
        20,
        30,
        got(2, vec![kv("a", "v2", 2, 2, 1)]),
    );
    assert_eq!(lin(&bad, &e), vec![Kind::Linearizability]);
}

#[test]
fn linearizability_rejects_a_compare_and_swap_that_succeeded_twice() {
    let cas = |value: &str| {
        Call::Request(Request::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Mod(2),
                key: b("a"),
                range_end: Bytes::new(),
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b("a"),
                value: b(value),
                ..Default::default()
            })],
            failure: vec![],
        }))
    };
    let won = |rev| {
        Ok(Reply::Response(Response::Txn(TxnResponse {
            revision: rev,
            succeeded: true,
            responses: vec![ResponseOp::Put(PutResponse {
                revision: rev,
                prev_kv: None,
            })],
        })))
    };
    let (mut h, _) = one_put();
    record(&mut h, 1, cas("x"), 20, 30, won(3));
    record(&mut h, 2, cas("y"), 21, 31, won(4));
    let e = epoch(vec![
        vec![put_change("a", "v1", 2, 2, 1)],
        vec![put_change("a", "x", 2, 3, 2)],
        vec![put_change("a", "y", 2, 4, 3)],
    ]);
    assert!(lin(&h, &e).contains(&Kind::Linearizability));
}

#[test]
fn linearizability_accepts_an_unknown_outcome_either_way() {
    for happened in [false, true] {
        let (mut h, _) = one_put();
        let op = h.invoke(1, put("a", "maybe"), t(20));
        h.unknown(op);
        let mut log = vec![vec![put_change("a", "v1", 2, 2, 1)]];
        let mut seen = kv("a", "v1", 2, 2, 1);
        if happened {
            log.push(vec![put_change("a", "maybe", 2, 3, 2)]);
            seen = kv("a", "maybe", 2, 3, 2);
        }
        let rev = seen.mod_revision;
        record(&mut h, 2, get("a"), 40, 50, got(rev, vec![seen]));
        assert!(lin(&h, &epoch(log)).is_empty(), "happened: {happened}");
    }
}

#[test]
fn lost_writes_rejects_an_acknowledged_write_missing_from_the_log() {
    let (mut h, e) = one_put();
    assert!(lost_writes::check(&h, &e, Window::ALL).is_empty());
    record(&mut h, 0, put("b", "v2"), 20, 30, put_ok(3));
    let v = lost_writes::check(&h, &e, Window::ALL);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].kind, Kind::LostWrite);
    // The linearizability checker sees it too.
    assert!(lin(&h, &e).contains(&Kind::Linearizability));
}

#[test]
fn the_log_book_reports_a_restart_that_lost_an_acknowledged_entry() {
    let mut book = LogBook::new();
    let entry = |index: u64, rev| LogEntry {
        index,
        term: 1,
        ops: vec![put_change("a", "v", 2, rev, 1)],
    };
    book.written(entry(1, 2), t(1));
    book.acknowledged(1, t(2));
    book.written(entry(2, 3), t(3));
    book.acknowledged(2, t(4));
    assert!(book.violations().is_empty());
    // The restart finds only entry 1 (the disk lied about entry 2).
    book.recovered(&[entry(1, 2)], 0, t(5));
    assert_eq!(book.violations().len(), 1);
    assert_eq!(book.violations()[0].kind, Kind::LostWrite);
}

#[test]
fn revisions_rejects_a_gap_and_a_shared_revision() {
    let (h, e) = one_put();
    assert!(revisions::check(&h, &e, Window::ALL).is_empty());
    let gap = epoch(vec![
        vec![put_change("a", "v1", 2, 2, 1)],
        vec![put_change("a", "v2", 2, 4, 2)],
    ]);
    assert_eq!(
        revisions::check(&h, &gap, Window::ALL)[0].kind,
        Kind::Revisions
    );

    let mut twice = h.clone();
    record(&mut twice, 1, put("b", "v2"), 20, 30, put_ok(2));
    assert!(
        revisions::check(&twice, &e, Window::ALL)
            .iter()
            .any(|v| v.kind == Kind::Revisions)
    );
}

#[test]
fn the_log_book_rejects_an_apply_that_is_not_the_committed_entry() {
    let mut book = LogBook::new();
    let e = LogEntry {
        index: 1,
        term: 1,
        ops: vec![put_change("a", "v", 2, 2, 1)],
    };
    book.applied(&e);
    assert_eq!(book.violations()[0].kind, Kind::Revisions);
}

/// A watch on `a` from revision 2 with the given deliveries, live at the end.
fn watch_history(batches: Vec<Vec<Event>>) -> History {
    let mut h = History::new();
    let filter = WatchFilter {
        range: KeyRange::Single(b("a")),
        no_put: false,
        no_delete: false,
        prev_kv: false,
    };
    let w = h.open_watch(0, filter, 2, 2, t(0));
    for (i, events) in batches.into_iter().enumerate() {
        h.deliver(w, t(i as u64 + 1), events);
    }
    h.end_watch(w, WatchEnd::Live { next: 4 });
    h
}

fn put_event(value: &str, rev: Revision, version: i64) -> Event {
    Event {
        kind: EventKind::Put,
        kv: kv("a", value, 2, rev, version),
        prev_kv: None,
    }
}

fn watch_kinds(h: &History) -> Vec<Kind> {
    let e = epoch(vec![
        vec![put_change("a", "v1", 2, 2, 1)],
        vec![put_change("a", "v2", 2, 3, 2)],
    ]);
    let timeline = checker::replay(&e).expect("valid log");
    watches::check(h, &timeline, Window::ALL)
        .violations
        .iter()
        .map(|v| v.kind)
        .collect()
}

#[test]
fn watches_reject_a_duplicated_event() {
    let good = watch_history(vec![
        vec![put_event("v1", 2, 1)],
        vec![put_event("v2", 3, 2)],
    ]);
    assert!(watch_kinds(&good).is_empty());
    let dup = watch_history(vec![
        vec![put_event("v1", 2, 1)],
        vec![put_event("v1", 2, 1)],
        vec![put_event("v2", 3, 2)],
    ]);
    assert_eq!(watch_kinds(&dup), vec![Kind::Watch]);
}

#[test]
fn watches_reject_a_missing_or_reordered_event() {
    let missing = watch_history(vec![vec![put_event("v2", 3, 2)]]);
    assert_eq!(watch_kinds(&missing), vec![Kind::Watch]);
    let reordered = watch_history(vec![vec![put_event("v2", 3, 2), put_event("v1", 2, 1)]]);
    assert_eq!(watch_kinds(&reordered), vec![Kind::Watch]);
    let behind = watch_history(vec![vec![put_event("v1", 2, 1)]]);
    assert_eq!(
        watch_kinds(&behind),
        vec![Kind::Watch],
        "a live watch must catch up"
    );
}

#[test]
fn state_rejects_a_store_that_differs_from_the_log() {
    let e = epoch(vec![
        vec![put_change("a", "v1", 2, 2, 1)],
        vec![put_change("a", "v2", 2, 3, 2)],
    ]);
    let timeline = checker::replay(&e).expect("valid log");
    let store = MemStore::new();
    store.apply(&e.entries[0].entry).expect("apply");
    assert!(
        checker::state::check(&store, &timeline, 2).is_some(),
        "one entry short"
    );
    store.apply(&e.entries[1].entry).expect("apply");
    assert_eq!(checker::state::check(&store, &timeline, 2), None);
    assert_eq!(
        checker::state::store_digest(&store).expect("digest"),
        timeline.digest()
    );
}

#[test]
fn a_lying_disk_is_reported_as_lost_writes_with_its_seed() {
    for seed in 0..5 {
        let scenario = Scenario {
            lying_disk: true,
            faults: FaultMode::Crash,
            bucket: BucketChoice::Off,
            ..Scenario::new(seed)
        };
        let report = run(&scenario);
        // Usually acknowledged entries are missing after the crash; when the disk also
        // dropped a segment's header, the node refuses to start instead of skipping entries
        // (a recovery violation). Either way the lie is caught.
        assert!(
            report.has(Kind::LostWrite) || report.has(Kind::Recovery),
            "seed {seed} on a lying disk was not caught:\n{report}"
        );
        let text = report.to_string();
        assert!(text.contains(&format!("seed {seed}: FAIL")), "{text}");
        assert!(
            text.contains(&format!(
                "cargo run -p t4-sim --release -- --seed {seed} --faults crash --lying-disk --bucket none"
            )),
            "{text}"
        );
    }
}

#[test]
fn an_honest_disk_with_the_same_seeds_passes() {
    for seed in 0..5 {
        let report = run(&Scenario {
            faults: FaultMode::Crash,
            bucket: BucketChoice::Off,
            ..Scenario::new(seed)
        });
        assert!(report.passed(), "{report}");
    }
}

/// The first failing run among `seeds`, if any.
fn first_failure(seeds: std::ops::Range<u64>, template: Scenario) -> Option<t4_sim::Report> {
    seeds
        .map(|seed| {
            run(&Scenario {
                seed,
                ..template.clone()
            })
        })
        .find(|r| !r.passed())
}

#[test]
fn a_node_that_serves_unsynced_recovered_wal_bytes_is_caught() {
    // What t4-tokio's recovery does today: after a process crash (or a restart after a failed
    // fsync) it serves WAL bytes that are only in the page cache. A later power loss takes
    // them away (a lost write clients may have read), or leaves a resurrected, shorter
    // segment that recovery refuses.
    let template = Scenario {
        faults: FaultMode::Disk,
        sync_on_recovery: false,
        bucket: BucketChoice::Off,
        ..Scenario::new(0)
    };
    let report = first_failure(0..1000, template).expect("no seed caught the unsynced recovery");
    assert!(
        report.has(Kind::LostWrite) || report.has(Kind::Recovery),
        "{report}"
    );
    assert!(report.to_string().contains("--no-sync-on-recovery"));
}

#[test]
fn a_failed_answer_that_took_effect_is_caught_when_judged_definite() {
    // The core answers `Failed` to the requests of an append whose fsync failed, yet a
    // restart can recover them: "failed" is an unknown outcome, not "did not happen".
    let template = Scenario {
        failed_is_definite: true,
        bucket: BucketChoice::Off,
        ..Scenario::new(0)
    };
    let report =
        first_failure(0..200, template).expect("no seed showed a failed request taking effect");
    assert!(
        report.violations.iter().any(
            |v| v.kind == Kind::Linearizability && v.detail.contains("was answered \"failed\"")
        ),
        "{report}"
    );
}

#[test]
fn linearizability_rejects_a_lease_that_expires_before_its_keepalive_ran_out() {
    use t4_core::request::{LeaseGrantResponse, LeaseKeepAliveResponse};
    for (revoked_at, bad) in [(6_000, true), (8_000, false)] {
        let mut h = History::new();
        let grant = Request::LeaseGrant { id: 7, ttl: 5 };
        let granted = Response::LeaseGrant(LeaseGrantResponse {
            revision: 1,
            id: 7,
            ttl: 5,
        });
        record(
            &mut h,
            0,
            Call::Request(grant),
            0,
            10,
            Ok(Reply::Response(granted)),
        );
        // Renewed at 3 s for 5 s: the lease may not run out before 8 s.
        let renewed = Response::LeaseKeepAlive(LeaseKeepAliveResponse {
            revision: 1,
            id: 7,
            ttl: 5,
        });
        let keep_alive = Call::Request(Request::LeaseKeepAlive { id: 7 });
        record(
            &mut h,
            0,
            keep_alive,
            3_000,
            3_010,
            Ok(Reply::Response(renewed)),
        );
        let mut e = epoch(vec![
            vec![LogOp::LeaseGrant { id: 7, ttl: 5 }],
            vec![LogOp::LeaseRevoke { id: 7 }],
        ]);
        e.entries[0].written_at = t(0);
        e.entries[1].written_at = t(revoked_at);
        let found = linearizable::check(&h, &e, Window::ALL, CheckConfig::default()).violations;
        assert_eq!(
            !found.is_empty(),
            bad,
            "revoked at {revoked_at} ms: {found:?}"
        );
        if bad {
            assert!(found[0].detail.contains("expired too early"), "{found:?}");
        }
    }
}

/// The auth changes that enable authentication, each as a request and its log op.
fn enabling() -> Vec<(Request, std::sync::Arc<t4_core::auth::AuthState>)> {
    use t4_core::auth::{AuthChange, AuthState, ROOT};
    let changes = [
        AuthChange::UserAdd {
            name: ROOT.into(),
            password: "h".into(),
            no_password: false,
        },
        AuthChange::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        },
        AuthChange::Enable,
    ];
    let mut state = AuthState::default();
    changes
        .into_iter()
        .map(|change| {
            assert!(state.change(&change).expect("a valid change"));
            (Request::Auth(change), std::sync::Arc::new(state.clone()))
        })
        .collect()
}

#[test]
fn linearizability_rejects_a_write_checked_against_an_older_auth_state() {
    let mut h = History::new();
    let mut log = Vec::new();
    for (i, (request, state)) in enabling().into_iter().enumerate() {
        let at = i as u64 * 10;
        let answer = Response::Auth(t4_core::request::AuthResponse {
            revision: 1,
            state: state.clone(),
        });
        record(
            &mut h,
            0,
            Call::Request(request),
            at,
            at + 5,
            Ok(Reply::Response(answer)),
        );
        log.push(vec![LogOp::Auth(state)]);
    }
    assert!(
        lin(&h, &epoch(log.clone())).is_empty(),
        "the changes alone are fine"
    );
    // A put checked at auth revision 2, after authentication was enabled at revision 3: etcd
    // refuses it; a log that holds it is wrong.
    let checked = Call::Checked {
        request: Request::Put(PutRequest {
            key: b("a"),
            value: b("v1"),
            ..Default::default()
        }),
        auth_revision: 2,
    };
    let mut accepted = h.clone();
    record(&mut accepted, 1, checked.clone(), 40, 50, put_ok(2));
    let mut with_put = log.clone();
    with_put.push(vec![put_change("a", "v1", 2, 2, 1)]);
    assert!(lin(&accepted, &epoch(with_put)).contains(&Kind::Linearizability));
    // Refused, as it must be.
    record(
        &mut h,
        1,
        checked,
        40,
        50,
        Err(t4_core::Error::AuthOldRevision),
    );
    assert!(lin(&h, &epoch(log)).is_empty());
}

#[test]
fn state_rejects_a_store_whose_auth_state_differs_from_the_log() {
    let states: Vec<_> = enabling().into_iter().map(|(_, state)| state).collect();
    let log = |last: std::sync::Arc<t4_core::auth::AuthState>| {
        let mut ops: Vec<Vec<LogOp>> = states[..2]
            .iter()
            .map(|s| vec![LogOp::Auth(s.clone())])
            .collect();
        ops.push(vec![LogOp::Auth(last)]);
        epoch(ops)
    };
    let e = log(states[2].clone());
    let timeline = checker::replay(&e).expect("valid log");
    // A store that applied as many entries, the last with another state (not enabled).
    let mut other = (*states[2]).clone();
    other.enabled = false;
    let wrong = MemStore::new();
    for entry in &log(std::sync::Arc::new(other)).entries {
        wrong.apply(&entry.entry).expect("apply");
    }
    let found = checker::state::check(&wrong, &timeline, 3).expect("a difference");
    assert!(found.detail.contains("auth state"), "{found:?}");
    let right = MemStore::new();
    for entry in &e.entries {
        right.apply(&entry.entry).expect("apply");
    }
    assert_eq!(checker::state::check(&right, &timeline, 3), None);
    assert_eq!(
        checker::state::store_digest(&right).expect("digest"),
        timeline.digest()
    );
}
