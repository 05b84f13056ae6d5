//! Checker 2: no acknowledged write is lost.
//!
//! Every write a client saw succeed must be in the committed log, at the revision it was told,
//! with the effect it asked for: a put's key and value, a delete's count of keys, a txn's puts,
//! a lease grant or revoke, a compaction. Together with the run-time check in
//! [`crate::logbook::LogBook::recovered`] (no restart loses a committed entry) this says that an
//! acknowledgement is a promise the disk keeps. Unlike the linearizability checker it needs
//! no model: it only reads the history and the log.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use t4_core::request::{RequestOp, ResponseOp, TxnRequest, TxnResponse};
use t4_core::wal::{Change, LogOp};
use t4_core::{KeyRange, LeaseId, Request, Response, Revision};

use super::{Kind, Violation, Window};
use crate::history::{History, Outcome, Reply};
use crate::logbook::Epoch;

/// The puts a txn made, following the branches its response says it took.
fn txn_puts(t: &TxnRequest, r: &TxnResponse, out: &mut Vec<(Bytes, Bytes)>) {
    let branch = if r.succeeded { &t.success } else { &t.failure };
    for (op, resp) in branch.iter().zip(&r.responses) {
        match (op, resp) {
            (RequestOp::Put(p), _) => out.push((p.key.clone(), p.value.clone())),
            (RequestOp::Txn(n), ResponseOp::Txn(nr)) => txn_puts(n, nr, out),
            _ => {}
        }
    }
}

/// Checks the acknowledged writes of `window` against `epoch`'s committed log.
pub fn check(history: &History, epoch: &Epoch, window: Window) -> Vec<Violation> {
    let mut revisions: BTreeMap<Revision, &Vec<Change>> = BTreeMap::new();
    let mut grants = BTreeSet::new();
    let mut revokes: BTreeSet<LeaseId> = BTreeSet::new();
    let mut compacts = BTreeSet::new();
    for c in &epoch.entries {
        for op in &c.entry.ops {
            match op {
                LogOp::Revision { revision, changes } => {
                    revisions.insert(*revision, changes);
                }
                LogOp::LeaseGrant { id, .. } => {
                    grants.insert(*id);
                }
                LogOp::LeaseRevoke { id } => {
                    revokes.insert(*id);
                }
                LogOp::Compact { revision } => {
                    compacts.insert(*revision);
                }
                LogOp::Auth(_) => {}
            }
        }
    }
    let mut out = Vec::new();
    // What the clients saw, and what nodes acknowledged after the client had given up.
    let answered = history.ops.iter().filter_map(|op| match &op.outcome {
        Outcome::Ok(reply) if op.complete.is_some_and(|t| window.contains(t)) => Some((op, reply)),
        _ => None,
    });
    let late = history
        .late
        .iter()
        .filter(|(_, at, _)| window.contains(*at))
        .map(|(id, _, reply)| (&history.ops[*id], reply));
    for (op, reply) in answered.chain(late) {
        let (Some(req), Reply::Response(resp)) = (op.call.request(), reply) else {
            continue;
        };
        let problem = match (req, resp) {
            (Request::Put(p), Response::Put(r)) => {
                let found = revisions.get(&r.revision).is_some_and(|changes| {
                    changes.iter().any(|c| {
                        matches!(c, Change::Put { kv, .. } if kv.key == p.key && kv.value == p.value)
                    })
                });
                (!found).then(|| format!("revision {} does not hold the put", r.revision))
            }
            (Request::DeleteRange(d), Response::DeleteRange(r)) if r.deleted > 0 => {
                let range = KeyRange::from_etcd(&d.key, &d.range_end);
                let found = revisions.get(&r.revision).is_some_and(|changes| {
                    changes
                        .iter()
                        .filter(|c| matches!(c, Change::Delete { key, .. } if range.contains(key)))
                        .count() as i64
                        == r.deleted
                });
                (!found).then(|| {
                    format!(
                        "revision {} does not hold its {} deletions",
                        r.revision, r.deleted
                    )
                })
            }
            (Request::Txn(t), Response::Txn(r)) => {
                let mut puts = Vec::new();
                txn_puts(t, r, &mut puts);
                let missing: Vec<String> = puts
                    .iter()
                    .filter(|(k, v)| {
                        !revisions.get(&r.revision).is_some_and(|changes| {
                            changes.iter().any(
                                |c| matches!(c, Change::Put { kv, .. } if kv.key == k && kv.value == v),
                            )
                        })
                    })
                    .map(|(k, v)| format!("{}={}", crate::history::show_bytes(k), crate::history::show_bytes(v)))
                    .collect();
                (!missing.is_empty()).then(|| {
                    format!(
                        "revision {} does not hold its puts {}",
                        r.revision,
                        missing.join(", ")
                    )
                })
            }
            (Request::LeaseGrant { id, .. }, _) => {
                (!grants.contains(id)).then(|| "the log never grants the lease".to_string())
            }
            (Request::LeaseRevoke { id }, _) => {
                (!revokes.contains(id)).then(|| "the log never revokes the lease".to_string())
            }
            (Request::Compact(c), _) => (!compacts.contains(&c.revision))
                .then(|| "the log holds no such compaction".to_string()),
            _ => None,
        };
        if let Some(p) = problem {
            out.push(Violation::new(
                Kind::LostWrite,
                format!("acknowledged {op} is lost: {p}"),
            ));
        }
    }
    out
}
