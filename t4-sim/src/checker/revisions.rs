//! Checker 3: revisions are strictly increasing and gap-free.
//!
//! * The committed log's entry indexes run 1, 2, 3, … and its revisions 2, 3, 4, … with no
//!   gap and no repeat; compactions never pass the current revision nor go backwards.
//! * No two acknowledged writes report the same revision, and none reports a revision the log
//!   never reached.
//!
//! That every applied log is a prefix of the committed log is checked as the run goes, at
//! every apply ([`crate::logbook::TapStore`]), and reported under this checker's kind.

use std::collections::BTreeMap;

use t4_core::Revision;

use super::{Kind, Violation, Window};
use crate::history::{History, Op, Outcome, Reply};
use crate::logbook::Epoch;

/// Checks `epoch`'s log and the revisions acknowledged in `window`.
pub fn check(history: &History, epoch: &Epoch, window: Window) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut rev: Revision = 1;
    let mut compact: Revision = 0;
    for (i, c) in epoch.entries.iter().enumerate() {
        if c.entry.index != i as u64 + 1 {
            out.push(Violation::new(
                Kind::Revisions,
                format!(
                    "committed entry #{} has index {}: the log has a gap",
                    i + 1,
                    c.entry.index
                ),
            ));
            return out;
        }
        for op in &c.entry.ops {
            match op {
                t4_core::wal::LogOp::Revision { revision, .. } => {
                    if *revision != rev + 1 {
                        out.push(Violation::new(
                            Kind::Revisions,
                            format!(
                                "entry {} writes revision {revision} after revision {rev}",
                                c.entry.index
                            ),
                        ));
                        return out;
                    }
                    rev = *revision;
                }
                t4_core::wal::LogOp::Compact { revision } => {
                    if *revision <= compact || *revision > rev {
                        out.push(Violation::new(
                            Kind::Revisions,
                            format!(
                                "entry {} compacts to {revision} (compact revision {compact}, revision {rev})",
                                c.entry.index
                            ),
                        ));
                    }
                    compact = compact.max(*revision);
                }
                _ => {}
            }
        }
    }
    let mut claimed: BTreeMap<Revision, &Op> = BTreeMap::new();
    for op in &history.ops {
        if !op.complete.is_some_and(|t| window.contains(t)) {
            continue;
        }
        let (Some(req), Outcome::Ok(Reply::Response(resp))) = (op.call.request(), &op.outcome)
        else {
            continue;
        };
        let written = match (req, resp) {
            (t4_core::Request::Put(_), t4_core::Response::Put(p)) => Some(p.revision),
            (t4_core::Request::DeleteRange(_), t4_core::Response::DeleteRange(d))
                if d.deleted > 0 =>
            {
                Some(d.revision)
            }
            (t4_core::Request::Txn(_), t4_core::Response::Txn(t))
                if t.responses
                    .iter()
                    .any(|r| matches!(r, t4_core::request::ResponseOp::Put(_))) =>
            {
                Some(t.revision)
            }
            _ => None,
        };
        let Some(w) = written else { continue };
        if w > rev {
            out.push(Violation::new(
                Kind::Revisions,
                format!("{op} reports revision {w}, beyond the last committed revision {rev}"),
            ));
        }
        if let Some(other) = claimed.insert(w, op) {
            out.push(Violation::new(
                Kind::Revisions,
                format!(
                    "{other} and {op} both report revision {w}: each revision belongs to one write"
                ),
            ));
        }
    }
    out
}
