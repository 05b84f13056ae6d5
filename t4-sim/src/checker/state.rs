//! Checker 5: the store's contents equal a replay of the committed log.
//!
//! Compared: the revision, the compact revision, the applied index, every live key with all
//! its metadata, every lease with its TTL, the auth state, and the events of every retained
//! revision. The
//! check runs after every restart (the crash image of the store plus WAL replay must rebuild
//! exactly the committed state) and at the end of the run, where it also yields the state
//! hash that is printed.

use std::ops::ControlFlow;

use bytes::Bytes;
use t4_core::{Event, KeyRange, KeyValue, ReadView, Store};

use super::{Kind, Violation};
use crate::history::show_bytes;
use crate::timeline::{Timeline, digest_auth, digest_kv};
use crate::trace::Fnv64;

/// A digest of a store in the same form as [`Timeline::digest`].
pub fn store_digest<S: Store>(store: &S) -> Result<u64, String> {
    let view = store.view();
    let rev = view.revision();
    let mut h = Fnv64::new();
    h.write_i64(rev);
    h.write_i64(view.compact_revision());
    view.scan(&KeyRange::From(Bytes::new()), rev, &mut |kv| {
        digest_kv(&mut h, &kv);
        ControlFlow::Continue(())
    })
    .map_err(|e| e.to_string())?;
    for (id, ttl) in store.leases().map_err(|e| e.to_string())? {
        h.write_i64(id);
        h.write_i64(ttl);
    }
    let auth = store.auth().map_err(|e| e.to_string())?;
    digest_auth(&mut h, &auth);
    Ok(h.finish())
}

/// Compares `store` with `timeline` (the replay of the `entries` committed entries).
pub fn check<S: Store>(store: &S, timeline: &Timeline, entries: u64) -> Option<Violation> {
    check_with(store, timeline, entries, false)
}

/// [`check`], for a store that may have been rebuilt from a checkpoint (`restored`): its
/// history before the checkpoint is gone, so its compact revision may be later than the
/// log's (never later than its revision); everything else must match.
pub fn check_with<S: Store>(
    store: &S,
    timeline: &Timeline,
    entries: u64,
    restored: bool,
) -> Option<Violation> {
    compare(store, timeline, entries, restored).err().map(|d| {
        Violation::new(
            Kind::State,
            format!("the store differs from a replay of the committed log: {d}"),
        )
    })
}

fn compare<S: Store>(
    store: &S,
    timeline: &Timeline,
    entries: u64,
    restored: bool,
) -> Result<(), String> {
    let view = store.view();
    let q = timeline.last_step();
    let rev = timeline.revision_at(q);
    if view.applied_index() != entries {
        return Err(format!(
            "the store has applied {} entries, the log commits {entries}",
            view.applied_index()
        ));
    }
    if view.revision() != rev {
        return Err(format!(
            "store revision {}, log revision {rev}",
            view.revision()
        ));
    }
    let compact_ok = if restored {
        view.compact_revision() >= timeline.compact_at(q) && view.compact_revision() <= rev
    } else {
        view.compact_revision() == timeline.compact_at(q)
    };
    if !compact_ok {
        return Err(format!(
            "store compact revision {}, log compact revision {}",
            view.compact_revision(),
            timeline.compact_at(q)
        ));
    }
    let mut got: Vec<KeyValue> = Vec::new();
    view.scan(&KeyRange::From(Bytes::new()), rev, &mut |kv| {
        got.push(kv);
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("scanning the store: {e}"))?;
    let want = timeline.scan_at_revision(&KeyRange::From(Bytes::new()), rev);
    if got != want {
        let diff = got
            .iter()
            .zip(&want)
            .find(|(g, w)| g != w)
            .map(|(g, w)| {
                format!(
                    "store has {} = {:?}, log says {} = {:?}",
                    show_bytes(&g.key),
                    g,
                    show_bytes(&w.key),
                    w
                )
            })
            .unwrap_or_else(|| format!("store has {} keys, log {}", got.len(), want.len()));
        return Err(diff);
    }
    let leases = store.leases().map_err(|e| format!("reading leases: {e}"))?;
    let want_leases: Vec<_> = timeline
        .lease_ids(q)
        .into_iter()
        .map(|id| (id, timeline.lease_ttl(id, q).unwrap_or(0)))
        .collect();
    if leases != want_leases {
        return Err(format!(
            "store leases {leases:x?}, log leases {want_leases:x?}"
        ));
    }
    let auth = store
        .auth()
        .map_err(|e| format!("reading the auth state: {e}"))?;
    let want_auth = timeline.auth_at(q);
    if auth != want_auth {
        return Err(format!(
            "store auth state {auth:?}, log auth state {want_auth:?}"
        ));
    }
    // A store restored from a checkpoint at revision C holds C's state but not C's events.
    let from = if restored && view.compact_revision() >= timeline.compact_at(q) {
        view.compact_revision() + 1
    } else {
        view.compact_revision().max(2)
    };
    let mut events: Vec<Event> = Vec::new();
    view.events(from, rev, &mut |e| {
        events.push(e);
        ControlFlow::Continue(())
    })
    .map_err(|e| format!("reading events from revision {from}: {e}"))?;
    let want_events: Vec<Event> = timeline
        .events(from, rev)
        .map(|e| Event {
            prev_kv: None,
            ..e.clone()
        })
        .collect();
    if events != want_events {
        let (at, detail) = events
            .iter()
            .zip(&want_events)
            .find(|(a, b)| a != b)
            .map(|(a, b)| (a.kv.mod_revision, format!(": store {a:?}, log {b:?}")))
            .unwrap_or((
                rev,
                format!(": store {} events, log {}", events.len(), want_events.len()),
            ));
        return Err(format!(
            "the event history from revision {from} differs at revision {at}{detail}"
        ));
    }
    Ok(())
}
