//! The core's IO contract, one behaviour per test: group commit, nothing answered before it is
//! durable, failure handling, WAL segment lifecycle, timers, physical compaction, and bad
//! requests that must change nothing.

mod support;

use std::time::Duration;

use bytes::Bytes;
use t4_core::kv::MAX_KEY_LEN;
use t4_core::mvcc;
use t4_core::request::{
    CompactRequest, Compare, CompareResult, CompareTarget, DeleteRangeRequest, PutRequest,
    RangeRequest, RequestOp, TxnRequest,
};
use t4_core::wal::{self, LogOp, SegmentId};
use t4_core::{
    Action, Config, Error, EventKind, Instant, ReadView, Request, RequestId, Response, Store,
};

use support::{Driver, Io, b};

const SEC: u64 = 1_000_000_000;

fn put(key: &str, value: &str) -> Request {
    Request::Put(PutRequest {
        key: b(key),
        value: b(value),
        ..Default::default()
    })
}

fn put_with_lease(key: &str, lease: i64) -> Request {
    Request::Put(PutRequest {
        key: b(key),
        value: b("v"),
        lease,
        ..Default::default()
    })
}

fn get(key: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        ..Default::default()
    }
}

/// A txn that only reads `key`.
fn read_txn(key: &str) -> Request {
    Request::Txn(TxnRequest {
        success: vec![RequestOp::Range(get(key))],
        ..Default::default()
    })
}

fn revision_of(result: &Result<Response, Error>) -> i64 {
    match result {
        Ok(Response::Put(r)) => r.revision,
        Ok(Response::DeleteRange(r)) => r.revision,
        Ok(Response::Txn(r)) => r.revision,
        Ok(Response::Compact(r)) => r.revision,
        Ok(Response::LeaseGrant(r)) => r.revision,
        Ok(Response::LeaseRevoke(r)) => r.revision,
        Ok(Response::LeaseKeepAlive(r)) => r.revision,
        Ok(Response::LeaseTimeToLive(r)) => r.revision,
        Ok(Response::LeaseLeases(r)) => r.revision,
        Ok(Response::Auth(r)) => r.revision,
        Err(e) => panic!("expected a response, got {e}"),
    }
}

fn appends(trace: &[Action]) -> Vec<(SegmentId, bool)> {
    trace
        .iter()
        .filter_map(|a| match a {
            Action::WalAppend {
                segment, create, ..
            } => Some((*segment, *create)),
            _ => None,
        })
        .collect()
}

fn deletes(trace: &[Action]) -> Vec<SegmentId> {
    trace
        .iter()
        .filter_map(|a| match a {
            Action::WalDelete { segment } => Some(*segment),
            _ => None,
        })
        .collect()
}

fn reply_ids(trace: &[Action]) -> Vec<RequestId> {
    trace
        .iter()
        .filter_map(|a| match a {
            Action::Reply { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

/// The entries in the driver's WAL directory.
fn wal_entries(d: &Driver) -> Vec<wal::LogEntry> {
    let segments: Vec<(SegmentId, Bytes)> = d
        .wal
        .iter()
        .map(|(id, bytes)| (*id, Bytes::from(bytes.clone())))
        .collect();
    wal::recover(&segments, 0)
        .expect("the WAL recovers")
        .entries
}

/// Completes pending appends (only) until none is in flight.
fn complete_appends(d: &mut Driver) {
    while let Some(i) = d
        .pending
        .iter()
        .position(|io| matches!(io, Io::Append { .. }))
    {
        d.complete_at(i);
    }
}

#[test]
fn requests_that_arrive_during_an_append_share_the_next_one() {
    let mut d = Driver::new(Config::default());
    let first = d.submit(put("k0", "v"));
    assert_eq!(d.pending_appends(), 1);
    let waiting: Vec<RequestId> = (1..=5)
        .map(|i| d.submit(put(&format!("k{i}"), "v")))
        .collect();
    assert_eq!(
        d.pending_appends(),
        1,
        "no second append while one is in flight"
    );
    assert!(d.replies.is_empty());

    d.clear_trace();
    d.complete_next();
    assert_eq!(d.take_reply(first).map(|r| revision_of(&r)), Some(2));
    assert_eq!(
        appends(&d.trace).len(),
        1,
        "the five waiting requests make one append"
    );
    assert!(waiting.iter().all(|id| d.take_reply(*id).is_none()));

    d.clear_trace();
    d.complete_next();
    // One completion releases all five: the apply, their events in one publish, then the
    // replies.
    assert!(matches!(&d.trace[0], Action::Apply { entry, .. } if entry.ops.len() == 5));
    assert!(matches!(&d.trace[1], Action::Publish { events } if events.len() == 5));
    assert_eq!(reply_ids(&d.trace), waiting);
    let revisions: Vec<i64> = waiting
        .iter()
        .map(|id| revision_of(&d.take_reply(*id).expect("answered")))
        .collect();
    assert_eq!(
        revisions,
        vec![3, 4, 5, 6, 7],
        "each put still has its own revision"
    );

    let entries = wal_entries(&d);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[1].ops.len(), 5);
}

/// The apply of a durable batch overlaps the next batch's append: the next append starts
/// while the apply is outstanding, the batch after it waits for that apply when only one
/// may be outstanding (entries reach the store in order), and the core counts an entry
/// applied only once it is reported.
#[test]
fn the_next_append_runs_while_a_durable_batch_is_applied() {
    let mut d = Driver::new(Config {
        max_applies_in_flight: 1,
        ..Config::default()
    });
    d.hold_applies = true;
    let first = d.submit(put("a", "1"));
    d.clear_trace();
    d.complete_next();
    assert!(matches!(&d.trace[0], Action::Apply { entry, .. } if entry.index == 1));
    let reply = d
        .trace
        .iter()
        .position(|a| matches!(a, Action::Reply { .. }));
    assert!(
        reply.is_some_and(|at| at > 0),
        "the reply follows the apply"
    );
    assert!(d.take_reply(first).is_some());
    assert_eq!(
        d.core.applied_index(),
        0,
        "not applied before it is reported"
    );

    // A write decided meanwhile is appended at once, without waiting for the apply.
    let second = d.submit(put("a", "2"));
    assert_eq!(d.pending_appends(), 1, "the next append overlaps the apply");
    let at = d
        .pending
        .iter()
        .position(|io| matches!(io, Io::Append { .. }))
        .expect("an append");
    d.clear_trace();
    d.complete_at(at);
    assert!(
        !d.trace.iter().any(|a| matches!(a, Action::Apply { .. })) && d.trace.is_empty(),
        "the second batch waits for the first apply: {:?}",
        d.trace
    );
    assert!(d.take_reply(second).is_none(), "answered before its apply");

    // The first apply is done: the second is applied (in order) and answered.
    d.clear_trace();
    d.complete_next();
    assert_eq!(d.core.applied_index(), 1);
    assert!(matches!(&d.trace[0], Action::Apply { entry, .. } if entry.index == 2));
    assert_eq!(revision_of(&d.take_reply(second).expect("answered")), 3);
    d.settle();
    assert_eq!(d.core.applied_index(), 2);
    assert_eq!(d.store.view().applied_index(), 2);
    assert!(d.core.is_quiescent());
}

/// With two applies allowed outstanding, two durable batches are handed out for applying and
/// answered while neither is reported; the third waits (unanswered, and no append starts)
/// until the oldest is reported. Decisions meanwhile see both pending batches' writes.
#[test]
fn applies_trail_appends_up_to_the_configured_bound() {
    let mut d = Driver::new(Config {
        max_applies_in_flight: 2,
        ..Config::default()
    });
    d.hold_applies = true;
    let applies = |d: &Driver| {
        d.pending
            .iter()
            .filter(|io| matches!(io, Io::Apply { .. }))
            .count()
    };
    let complete_append = |d: &mut Driver| {
        let at = d
            .pending
            .iter()
            .position(|io| matches!(io, Io::Append { .. }))
            .expect("an append in flight");
        d.complete_at(at);
    };

    let first = d.submit(put("a", "1"));
    complete_append(&mut d);
    let second = d.submit(put("a", "2"));
    complete_append(&mut d);
    assert_eq!(applies(&d), 2, "two applies outstanding");
    assert_eq!(revision_of(&d.take_reply(first).expect("answered")), 2);
    assert_eq!(revision_of(&d.take_reply(second).expect("answered")), 3);
    assert_eq!(d.core.applied_index(), 0, "neither apply is reported yet");
    assert_eq!(d.store.view().revision(), 1, "the store has neither");

    // Decided over the store plus both pending entries: `a` is at version 2.
    let third = d.submit(Request::Txn(TxnRequest {
        compare: vec![Compare {
            key: b("a"),
            result: CompareResult::Equal,
            target: CompareTarget::Version(2),
            ..Default::default()
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: b("a"),
            value: b("3"),
            ..Default::default()
        })],
        ..Default::default()
    }));
    d.clear_trace();
    complete_append(&mut d);
    assert!(
        d.trace.is_empty(),
        "a third durable batch waits for the oldest apply: {:?}",
        d.trace
    );
    assert!(d.take_reply(third).is_none(), "answered beyond the bound");
    let fourth = d.submit(put("b", "1"));
    assert_eq!(
        d.pending_appends(),
        0,
        "no append starts while a batch waits"
    );

    // The oldest apply is reported: the third batch is handed out and answered, the
    // fourth appended.
    d.clear_trace();
    d.complete_next();
    assert_eq!(d.core.applied_index(), 1);
    assert!(matches!(&d.trace[0], Action::Apply { entry, .. } if entry.index == 3));
    match d.take_reply(third).expect("answered") {
        Ok(Response::Txn(r)) => assert!(r.succeeded, "the compare saw both pending writes"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(d.pending_appends(), 1);
    d.settle();
    assert_eq!(revision_of(&d.take_reply(fourth).expect("answered")), 5);
    assert_eq!(d.core.applied_index(), 4);
    assert_eq!(d.store.view().applied_index(), 4);
    assert!(d.core.is_quiescent());
}

/// An adapter that appends on the thread that runs the core feeds what queued up during an
/// append with `handle_all`: all of it is one batch, even with no append in flight.
#[test]
fn requests_fed_together_make_one_append_with_their_own_revisions() {
    let mut d = Driver::new(Config::default());
    let ids = d.submit_all((0..4).map(|i| put(&format!("k{i}"), "v")).collect());
    assert_eq!(d.pending_appends(), 1, "one append for the four");
    assert!(
        d.replies.is_empty(),
        "nothing answered before it is durable"
    );
    d.settle();
    let revisions: Vec<i64> = ids
        .iter()
        .map(|id| revision_of(&d.take_reply(*id).expect("answered")))
        .collect();
    assert_eq!(revisions, vec![2, 3, 4, 5]);
    let entries = wal_entries(&d);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].ops.len(), 4);

    // A read-only request fed alone, with nothing to write, is answered at once, and a bad
    // request among good ones is refused without holding the others back.
    let ids = d.submit_all(vec![Request::Txn(TxnRequest::default())]);
    assert!(d.take_reply(ids[0]).is_some());
    let ids = d.submit_all(vec![put("", "v"), put("k9", "v")]);
    d.settle();
    assert!(matches!(d.take_reply(ids[0]), Some(Err(Error::EmptyKey))));
    assert_eq!(d.take_reply(ids[1]).map(|r| revision_of(&r)), Some(6));
}

#[test]
fn nothing_is_answered_or_published_before_the_append_holding_what_it_saw_is_durable() {
    let mut d = Driver::new(Config::default());
    let grant = d.submit(Request::LeaseGrant { id: 7, ttl: 10 });
    // Decided while the grant's append is in flight, so they go in the next append.
    let write = d.submit(put_with_lease("a", 7));
    // Reads that observe the pending put: they write nothing, but must not be answered
    // before what they saw is durable.
    let read = d.submit(read_txn("a"));
    let ttl = d.submit(Request::LeaseTimeToLive { id: 7, keys: true });
    assert!(d.replies.is_empty() && d.published.is_empty());

    d.complete_next();
    assert!(d.take_reply(grant).expect("grant is durable").is_ok());
    assert!(d.published.is_empty(), "a grant has no events");
    for id in [write, read, ttl] {
        assert!(
            d.take_reply(id).is_none(),
            "answered before its append completed"
        );
    }

    d.clear_trace();
    d.complete_next();
    assert!(
        matches!(
            &d.trace[..2],
            [Action::Apply { .. }, Action::Publish { .. }, ..]
        ),
        "apply, then publish, before the replies"
    );
    assert_eq!(reply_ids(&d.trace), vec![write, read, ttl]);
    assert_eq!(revision_of(&d.take_reply(write).expect("answered")), 2);
    match d.take_reply(read) {
        Some(Ok(Response::Txn(t))) => assert_eq!(t.revision, 2),
        other => panic!("unexpected {other:?}"),
    }
    match d.take_reply(ttl) {
        Some(Ok(Response::LeaseTimeToLive(r))) => assert_eq!(r.keys, vec![b("a")]),
        other => panic!("unexpected {other:?}"),
    }

    // With nothing pending, a read-only txn is answered at once and writes nothing.
    d.clear_trace();
    let read = d.submit(read_txn("a"));
    assert!(d.take_reply(read).expect("answered at once").is_ok());
    assert!(appends(&d.trace).is_empty());
}

#[test]
fn a_failed_append_fails_every_waiting_request_once_and_refuses_later_writes() {
    let mut d = Driver::new(Config::default());
    d.call(put("a", "1")).expect("put");
    let in_flight = d.submit(put("b", "1"));
    let waiting = [
        d.submit(put("c", "1")),
        d.submit(read_txn("b")),
        d.submit(Request::LeaseGrant { id: 1, ttl: 5 }),
        d.submit(Request::Compact(CompactRequest {
            revision: 2,
            physical: true,
        })),
    ];
    d.clear_trace();
    d.fail_next("disk full");
    for id in std::iter::once(in_flight).chain(waiting) {
        assert!(
            matches!(d.take_reply(id), Some(Err(Error::Failed(_)))),
            "request {id:?} not failed"
        );
    }
    assert_eq!(d.failures.len(), 1);
    assert!(!d.trace.iter().any(|a| matches!(a, Action::Publish { .. })));
    assert_eq!(
        d.store.view().revision(),
        2,
        "the store holds only durable writes"
    );
    assert_eq!(d.core.poll_timeout(), None);

    // Later writes are refused at once; nothing is appended; Failed is not repeated.
    d.clear_trace();
    let later = d.submit(put("d", "1"));
    assert!(matches!(d.take_reply(later), Some(Err(Error::Failed(_)))));
    assert!(appends(&d.trace).is_empty());
    d.settle();
    assert_eq!(d.failures.len(), 1);
    assert!(d.core.failure().is_some());

    // A restart recovers what was durable, and takes writes again.
    d.restart(None);
    d.settle();
    assert_eq!(d.core.revision(), 2);
    assert_eq!(revision_of(&d.call(put("d", "1"))), 3);
}

#[test]
fn a_failed_physical_compaction_fails_the_request_waiting_for_it() {
    let mut d = Driver::new(Config::default());
    d.call(put("a", "1")).expect("put");
    let compact = d.submit(Request::Compact(CompactRequest {
        revision: 2,
        physical: true,
    }));
    complete_appends(&mut d);
    assert!(d.take_reply(compact).is_none());
    assert!(matches!(d.pending.front(), Some(Io::Compact { .. })));
    d.fail_next("compaction failed");
    assert!(
        matches!(d.take_reply(compact), Some(Err(Error::Failed(_)))),
        "the compaction request must be answered"
    );
    assert_eq!(d.failures.len(), 1);
}

#[test]
fn a_physical_compaction_is_answered_only_once_the_store_compacted() {
    let mut d = Driver::new(Config::default());
    for v in ["1", "2", "3"] {
        d.call(put("a", v)).expect("put");
    }
    let physical = d.submit(Request::Compact(CompactRequest {
        revision: 3,
        physical: true,
    }));
    complete_appends(&mut d);
    assert!(
        d.take_reply(physical).is_none(),
        "the store has not compacted yet"
    );
    assert!(matches!(
        d.pending.front(),
        Some(Io::Compact { revision: 3, .. })
    ));
    d.complete_next();
    assert_eq!(revision_of(&d.take_reply(physical).expect("answered")), 4);
    let old = RangeRequest {
        revision: 2,
        ..get("a")
    };
    assert_eq!(mvcc::range(&d.store.view(), &old), Err(Error::Compacted));

    // Without `physical`, the reply only waits for the WAL.
    let logical = d.submit(Request::Compact(CompactRequest {
        revision: 4,
        physical: false,
    }));
    complete_appends(&mut d);
    assert!(d.take_reply(logical).expect("answered").is_ok());
    assert!(matches!(
        d.pending.front(),
        Some(Io::Compact { revision: 4, .. })
    ));
}

#[test]
fn a_full_segment_is_sealed_and_deleted_only_after_a_persist_covering_it() {
    let config = Config {
        segment_max_bytes: 300,
        ..Config::default()
    };
    let mut d = Driver::new(config);
    let value = "x".repeat(100);
    // Fill segment 1 until it is sealed.
    let mut n = 0;
    while !d.pending.iter().any(|io| matches!(io, Io::Persist { .. })) {
        n += 1;
        d.submit(put(&format!("k{n}"), &value));
        complete_appends(&mut d);
    }
    assert_eq!(d.wal.keys().copied().collect::<Vec<_>>(), vec![1]);

    // The next append creates segment 2; fill it too while the first persist is pending.
    d.clear_trace();
    d.submit(put("next", &value));
    assert_eq!(appends(&d.trace), vec![(n as u64 + 1, true)]);
    complete_appends(&mut d);
    while d.wal.len() < 3 {
        n += 1;
        d.submit(put(&format!("k{n}"), &value));
        complete_appends(&mut d);
    }
    assert!(
        deletes(&d.trace).is_empty(),
        "nothing deleted before a persist completed"
    );

    // The first persist covers segment 1 only: segment 2 was sealed after it was asked for.
    d.clear_trace();
    let Some(Io::Persist { .. }) = d.pending.front() else {
        panic!("expected the first persist, got {:?}", d.pending);
    };
    d.complete_next();
    assert_eq!(deletes(&d.trace), vec![1]);
    assert!(matches!(d.pending.front(), Some(Io::Persist { .. })));
    d.clear_trace();
    d.complete_next();
    assert_eq!(deletes(&d.trace).len(), 1);
    assert_eq!(d.wal.len(), 1, "only the active segment remains");

    // Everything survives a crash that keeps only what the store persisted.
    let revision = d.core.revision();
    d.restart(Some(0));
    d.settle();
    assert_eq!(d.core.revision(), revision);
    assert_eq!(
        mvcc::range(&d.store.view(), &get("next"))
            .expect("read")
            .kvs
            .len(),
        1
    );
}

#[test]
fn an_old_segment_is_sealed_by_the_timer() {
    let config = Config {
        segment_max_age: Duration::from_secs(10),
        ..Config::default()
    };
    let mut d = Driver::new(config);
    assert_eq!(d.core.poll_timeout(), None, "an idle node has no timer");
    d.call(put("a", "1")).expect("put");
    assert_eq!(d.core.poll_timeout(), Some(Instant(10 * SEC)));

    d.advance(Duration::from_secs(9));
    assert!(d.pending.is_empty());
    d.clear_trace();
    d.advance(Duration::from_secs(1));
    assert!(matches!(d.pending.front(), Some(Io::Persist { .. })));
    assert_eq!(d.core.poll_timeout(), None, "no active segment, no lease");

    d.submit(put("b", "1"));
    assert_eq!(
        appends(&d.trace),
        vec![(2, true)],
        "a new segment after the seal"
    );
    d.settle();
    assert_eq!(deletes(&d.trace), vec![1]);
    assert_eq!(d.wal.keys().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn poll_timeout_is_never_left_in_the_past_by_handle_timeout() {
    // An adapter sleeps until poll_timeout: a deadline handle_timeout cannot act on would
    // make it spin.
    let config = Config {
        segment_max_age: Duration::from_secs(10),
        ..Config::default()
    };
    let mut d = Driver::new(config);
    d.call(put("a", "1")).expect("put");
    d.now = Instant(10 * SEC);
    d.submit(put("b", "1")); // in flight when the segment's age runs out
    d.core.handle_timeout(d.now);
    d.drain();
    assert!(
        d.core.poll_timeout().is_none_or(|t| t > d.now),
        "poll_timeout {:?} at {:?}",
        d.core.poll_timeout(),
        d.now
    );
    // The seal happens as soon as the append completes.
    d.clear_trace();
    d.complete_next();
    assert!(
        d.trace
            .iter()
            .any(|a| matches!(a, Action::PersistStore { .. }))
    );
}

#[test]
fn an_expired_lease_deletes_its_keys_in_one_revision_and_publishes_the_deletes() {
    let mut d = Driver::new(Config::default());
    d.call(Request::LeaseGrant { id: 5, ttl: 5 })
        .expect("grant");
    d.call(put_with_lease("a", 5)).expect("put");
    d.call(put_with_lease("b", 5)).expect("put");
    d.call(put("c", "1")).expect("put");
    assert_eq!(d.core.poll_timeout(), Some(Instant(5 * SEC)));

    d.advance(Duration::from_millis(4999));
    assert!(d.pending.is_empty());
    d.published.clear();
    d.advance(Duration::from_millis(1));
    assert_eq!(d.pending_appends(), 1);
    assert!(d.published.is_empty(), "published before durable");
    d.settle();

    assert_eq!(d.published.len(), 1);
    let events = &d.published[0];
    assert_eq!(events.len(), 2);
    for (event, key) in events.iter().zip(["a", "b"]) {
        assert_eq!(event.kind, EventKind::Delete);
        assert_eq!(event.kv.key, b(key));
        assert_eq!(event.revision(), 5);
        assert_eq!(event.prev_kv.as_ref().map(|kv| kv.lease), Some(5));
    }
    assert_eq!(d.core.revision(), 5);
    let all = RangeRequest {
        key: b("\0"),
        range_end: b("\0"),
        ..Default::default()
    };
    let kvs = mvcc::range(&d.store.view(), &all).expect("read").kvs;
    assert_eq!(
        kvs.iter().map(|kv| kv.key.clone()).collect::<Vec<_>>(),
        vec![b("c")]
    );
    match d.call(Request::LeaseTimeToLive { id: 5, keys: false }) {
        Ok(Response::LeaseTimeToLive(r)) => assert_eq!(r.ttl, -1),
        other => panic!("unexpected {other:?}"),
    }

    // A lease without keys expires without a revision (but durably: it is logged).
    d.call(Request::LeaseGrant { id: 6, ttl: 2 })
        .expect("grant");
    d.published.clear();
    d.clear_trace();
    d.advance(Duration::from_secs(2));
    d.settle();
    assert_eq!(appends(&d.trace).len(), 1);
    assert_eq!(d.core.revision(), 5);
    assert!(d.published.is_empty());
    assert!(d.core.leases().is_empty());
}

#[test]
fn leases_get_their_full_ttl_again_after_a_restart() {
    let mut d = Driver::new(Config::default());
    d.call(Request::LeaseGrant { id: 1, ttl: 10 })
        .expect("grant");
    d.call(put_with_lease("a", 1)).expect("put");
    d.advance(Duration::from_secs(8));
    d.restart(None);
    d.settle();
    match d.call(Request::LeaseTimeToLive { id: 1, keys: true }) {
        Ok(Response::LeaseTimeToLive(r)) => {
            assert_eq!((r.ttl, r.granted_ttl, r.keys), (10, 10, vec![b("a")]));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(d.core.poll_timeout(), Some(Instant(18 * SEC)));
}

#[test]
fn a_crash_while_creating_a_segment_does_not_cost_the_next_segment_its_entries() {
    let config = Config {
        segment_max_age: Duration::from_secs(10),
        ..Config::default()
    };
    let mut d = Driver::new(config);
    d.call(put("a", "1")).expect("put");
    d.advance(Duration::from_secs(10)); // seals segment 1
    d.settle();
    assert!(d.wal.is_empty(), "segment 1 was persisted and deleted");
    // The crash tears the append that creates segment 2 just after its header.
    d.submit(put("b", "1"));
    assert!(!d.tear_append(wal::segment::SEGMENT_HEADER_LEN + 3));
    d.restart(None);
    // The reopened core writes segment 2 anew, and acknowledges a put in it.
    let c = d.submit(put("c", "1"));
    let append = d
        .pending
        .iter()
        .position(|io| matches!(io, Io::Append { segment: 2, .. }))
        .expect("segment 2 is written again");
    d.complete_at(append);
    assert_eq!(revision_of(&d.take_reply(c).expect("answered")), 3);
    // Whatever else completes, the active segment stays...
    d.settle();
    assert!(d.wal.contains_key(&2), "the active segment was deleted");
    // ...and a crash keeps the acknowledged put.
    d.restart(Some(0));
    d.settle();
    assert_eq!(d.core.revision(), 3, "an acknowledged write was lost");
}

#[test]
fn bad_requests_change_nothing() {
    let config = Config {
        max_txn_ops: 2,
        ..Config::default()
    };
    let mut d = Driver::new(config);
    d.call(put("a", "1")).expect("put");
    d.call(Request::LeaseGrant { id: 1, ttl: 60 })
        .expect("grant");
    d.clear_trace();
    d.published.clear();

    let put_req = |f: &dyn Fn(&mut PutRequest)| {
        let mut p = PutRequest {
            key: b("k"),
            value: b("v"),
            ..Default::default()
        };
        f(&mut p);
        Request::Put(p)
    };
    let txn = |compare: Vec<Compare>, success: Vec<RequestOp>| {
        Request::Txn(TxnRequest {
            compare,
            success,
            failure: vec![],
        })
    };
    let cmp = |key: &str| Compare {
        result: CompareResult::Equal,
        target: CompareTarget::Version(1),
        key: b(key),
        range_end: Bytes::new(),
    };
    let put_op = |key: &str| {
        RequestOp::Put(PutRequest {
            key: b(key),
            ..Default::default()
        })
    };
    let cases: Vec<(Request, Error)> = vec![
        (
            put_req(&|p| p.value = Bytes::from(vec![0u8; 2 << 20])),
            Error::RequestTooLarge,
        ),
        (put_req(&|p| p.key = Bytes::new()), Error::EmptyKey),
        (
            put_req(&|p| p.key = Bytes::from(vec![b'k'; MAX_KEY_LEN + 1])),
            Error::KeyTooLarge {
                len: MAX_KEY_LEN + 1,
            },
        ),
        (put_req(&|p| p.ignore_value = true), Error::ValueProvided),
        (
            put_req(&|p| {
                p.ignore_lease = true;
                p.lease = 1;
            }),
            Error::LeaseProvided,
        ),
        (put_req(&|p| p.lease = 99), Error::LeaseNotFound),
        (
            put_req(&|p| {
                p.ignore_value = true;
                p.value = Bytes::new();
            }),
            Error::KeyNotFound,
        ),
        (
            Request::DeleteRange(DeleteRangeRequest::default()),
            Error::EmptyKey,
        ),
        (txn(vec![cmp("a"); 3], vec![]), Error::TooManyOps),
        (txn(vec![cmp("")], vec![]), Error::EmptyKey),
        (
            txn(vec![], vec![put_op("k"), put_op("k")]),
            Error::DuplicateKey,
        ),
        (
            txn(
                vec![],
                vec![RequestOp::Range(RangeRequest {
                    revision: 99,
                    ..get("a")
                })],
            ),
            Error::FutureRevision,
        ),
        (
            Request::Compact(CompactRequest {
                revision: 99,
                physical: false,
            }),
            Error::FutureRevision,
        ),
        (Request::LeaseRevoke { id: 42 }, Error::LeaseNotFound),
        (
            Request::LeaseGrant {
                id: 2,
                ttl: 9_000_000_001,
            },
            Error::LeaseTtlTooLarge,
        ),
        (Request::LeaseGrant { id: 1, ttl: 5 }, Error::LeaseExists),
    ];
    for (request, error) in cases {
        let id = d.submit(request.clone());
        assert_eq!(d.take_reply(id), Some(Err(error)), "{request:?}");
    }

    // Valid requests that find nothing to change: an inverted or missing range.
    for (key, end) in [("c", "a"), ("zz", "")] {
        let reply = d.call(Request::DeleteRange(DeleteRangeRequest {
            key: b(key),
            range_end: b(end),
            prev_kv: true,
        }));
        match reply {
            Ok(Response::DeleteRange(r)) => assert_eq!((r.revision, r.deleted), (2, 0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    assert!(appends(&d.trace).is_empty(), "nothing was written");
    assert!(d.published.is_empty());
    assert_eq!(d.core.revision(), 2);
    assert_eq!(d.store.view().revision(), 2);
    assert_eq!(d.core.leases().ids(), vec![1]);
}

#[test]
fn the_log_holds_resolved_writes_not_requests() {
    let mut d = Driver::new(Config::default());
    d.call(put("a", "1")).expect("put");
    // A txn whose compare fails and whose failure branch deletes: the log records only the
    // delete, and replay never evaluates the compare again.
    d.call(Request::Txn(TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Value(b("2")),
            key: b("a"),
            range_end: Bytes::new(),
        }],
        success: vec![],
        failure: vec![RequestOp::DeleteRange(DeleteRangeRequest {
            key: b("a"),
            ..Default::default()
        })],
    }))
    .expect("txn");
    let entries = wal_entries(&d);
    assert!(matches!(
        &entries[1].ops[..],
        [LogOp::Revision { revision: 3, changes }] if changes.len() == 1
    ));
}

#[test]
fn an_auth_change_is_answered_once_durable_and_recovered_from_the_wal() {
    use t4_core::auth::AuthChange;
    let role = |name: &str| Request::Auth(AuthChange::RoleAdd { name: name.into() });
    let mut d = Driver::new(Config::default());
    let add = d.submit(role("reader"));
    assert!(d.take_reply(add).is_none(), "answered before its append");
    d.settle();
    match d.take_reply(add) {
        Some(Ok(Response::Auth(r))) => {
            assert!(r.state.roles.contains_key("reader"));
            assert_eq!(r.state.revision, 1);
            assert_eq!(r.revision, 1, "an auth change takes no revision");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(matches!(
        d.call(role("reader")),
        Err(Error::RoleAlreadyExist)
    ));
    let logged = wal_entries(&d).len();
    // Disabling what is disabled succeeds and logs nothing.
    assert!(d.call(Request::Auth(AuthChange::Disable)).is_ok());
    assert_eq!(wal_entries(&d).len(), logged);
    assert!(
        wal_entries(&d)
            .iter()
            .any(|e| e.ops.iter().any(|op| matches!(op, LogOp::Auth(_))))
    );

    // A crash that loses every store apply: the WAL brings the change back.
    d.restart(Some(0));
    assert!(d.core.auth().roles.contains_key("reader"));
    assert_eq!(d.core.auth().revision, 1);
    assert!(d.store.auth().expect("auth").roles.contains_key("reader"));
}

#[test]
fn a_write_checked_against_an_older_auth_state_is_refused() {
    use t4_core::auth::{AuthChange, ROOT};
    let auth = |change: AuthChange| Request::Auth(change);
    let mut d = Driver::new(Config::default());
    // While authentication is disabled a check is never stale (etcd allows everything).
    assert!(
        d.call(auth(AuthChange::RoleAdd { name: "r".into() }))
            .is_ok()
    );
    let ok = d.submit_checked(put("a", "v"), Some(0));
    d.settle();
    assert!(matches!(d.take_reply(ok), Some(Ok(Response::Put(_)))));
    for change in [
        AuthChange::UserAdd {
            name: ROOT.into(),
            password: String::new(),
            no_password: true,
        },
        AuthChange::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        },
    ] {
        assert!(d.call(auth(change)).is_ok());
    }
    assert_eq!(d.core.auth().revision, 3);

    // Enabling, decided in the same batch before two writes: the first write's check, made
    // while authentication was disabled, is stale although the change is not durable yet
    // when the write is decided.
    let ids = d.submit_all_checked(vec![
        (auth(AuthChange::Enable), None),
        (put("b", "v"), Some(3)),
        (put("c", "v"), Some(4)),
    ]);
    d.settle();
    assert!(matches!(d.take_reply(ids[0]), Some(Ok(Response::Auth(_)))));
    assert!(matches!(
        d.take_reply(ids[1]),
        Some(Err(Error::AuthOldRevision))
    ));
    match d.take_reply(ids[2]) {
        Some(Ok(Response::Put(p))) => assert_eq!(p.revision, 3, "only a and c were written"),
        other => panic!("unexpected {other:?}"),
    }
    // Unchecked requests (the embedded API) are never refused for it.
    assert!(d.call(put("d", "v")).is_ok());
    // A check at a revision the state has not reached is as stale as an older one.
    let ahead = d.submit_checked(put("e", "v"), Some(7));
    d.settle();
    assert!(matches!(
        d.take_reply(ahead),
        Some(Err(Error::AuthOldRevision))
    ));
    let keys: Vec<Bytes> = wal_entries(&d)
        .iter()
        .flat_map(|e| e.ops.iter())
        .filter_map(|op| match op {
            LogOp::Revision { changes, .. } => Some(changes.iter().map(|c| c.key().clone())),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(keys, vec![b("a"), b("c"), b("d")]);
}
