//! Garbage collection: what a new checkpoint lets the bucket forget.
//!
//! Kept: the newest `checkpoint_retain` checkpoints, the log after the oldest of them, every
//! data file a retained checkpoint lists, every term-start marker. Deleted, only once the
//! manifest no longer lists them: the other checkpoint records, data files only dropped
//! checkpoints list, and segments wholly before the oldest retained checkpoint. Tail objects
//! are never collected here (merging removes them, never markers).

use std::collections::BTreeSet;

use crate::core::Core;
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse};
use crate::time::Instant;

use super::layout::{self, CheckpointRecord, CheckpointRef, Manifest, SegmentRef};
use super::{Maint, Op};

/// The prefixes a sweep lists.
const SWEPT: [&str; 3] = ["ckp/", "seg/", "data/"];

impl<S: Store> Core<S> {
    /// Lists what a sweep may collect. Runs as the maintenance task, so no publication is
    /// uploading files the listing would wrongly find unreferenced.
    pub(crate) fn start_sweep(&mut self) {
        let Some(r) = &mut self.remote else { return };
        r.maint = Some(Maint::Sweep {
            lists_left: SWEPT.len(),
            listed: Vec::new(),
        });
        r.maint_busy = true;
        for prefix in SWEPT {
            self.object(
                Op::SweepList,
                ObjectRequest::List {
                    prefix: prefix.to_string(),
                },
            );
        }
    }

    pub(crate) fn on_sweep_list(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(r) = &mut self.remote else { return };
        let Some(Maint::Sweep { lists_left, listed }) = &mut r.maint else {
            return;
        };
        *lists_left -= 1;
        match result {
            Ok(ObjectResponse::Listed { objects }) => {
                listed.extend(objects.into_iter().map(|o| o.key));
            }
            // Sweeping is best effort; the next publication tries again.
            _ => listed.push(String::new()),
        }
        if *lists_left > 0 {
            return;
        }
        if listed.iter().any(|k| k.is_empty()) {
            r.maint = None;
            r.maint_busy = false;
            return self.pump_maintenance(now);
        }
        // What the listing holds is judged against the manifest as it is now, not as this
        // node last wrote it: a writer that slept through a takeover would otherwise delete
        // the newer writer's checkpoints and segments, which its own manifest does not know.
        self.object(
            Op::SweepManifest,
            ObjectRequest::Get {
                key: layout::MANIFEST.to_string(),
            },
        );
    }

    /// The manifest re-read after a sweep's listings: delete only if it is still the one this
    /// node holds (so no newer writer has claimed the prefix and nothing listed can be
    /// referenced by a manifest this node has not seen).
    pub(crate) fn on_sweep_manifest(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(r) = &mut self.remote else { return };
        let Some(Maint::Sweep { lists_left: 0, .. }) = &r.maint else {
            return;
        };
        let Some(Maint::Sweep { listed, .. }) = r.maint.take() else {
            return;
        };
        r.maint_busy = false;
        let current = match result {
            Ok(ObjectResponse::Got { bytes, etag }) => {
                match layout::decode_record::<Manifest>(layout::MANIFEST, &bytes) {
                    Ok(m) => Some((m, etag)),
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            // Best effort: the next publication sweeps again.
            _ => None,
        };
        let Some((manifest, etag)) = current else {
            return self.pump_maintenance(now);
        };
        if manifest.term > r.term {
            let reason = super::writer::fenced_reason(layout::MANIFEST, manifest.term, r.term);
            return self.fail(reason);
        }
        if r.manifest_etag.as_ref() != Some(&etag) {
            return self.pump_maintenance(now);
        }
        let garbage = unreferenced(&listed, &r.manifest, &r.checkpoints);
        self.delete_objects(garbage);
        self.pump_maintenance(now);
    }
}

/// The keys of `listed` (under `ckp/`, `seg/`, `data/`) that neither the manifest nor a
/// retained checkpoint references.
pub(crate) fn unreferenced(
    listed: &[String],
    manifest: &Manifest,
    retained: &[CheckpointRecord],
) -> Vec<String> {
    let mut keep: BTreeSet<String> = manifest.checkpoints.iter().map(|c| c.key()).collect();
    keep.extend(
        manifest
            .segments
            .iter()
            .map(|s| layout::seg_key(s.first, s.last)),
    );
    keep.extend(
        retained
            .iter()
            .flat_map(|c| c.files.iter().map(|f| layout::data_key(&f.sha256))),
    );
    listed
        .iter()
        .filter(|k| SWEPT.iter().any(|p| k.starts_with(p)) && !keep.contains(*k))
        .cloned()
        .collect()
}

/// The manifest listing `new` among the newest `retain` checkpoints, and the segments it
/// stops listing.
pub(crate) fn retain(
    manifest: &Manifest,
    new: CheckpointRef,
    retain: usize,
) -> (Manifest, Vec<SegmentRef>) {
    let mut next = manifest.clone();
    if !next.checkpoints.contains(&new) {
        next.checkpoints.push(new);
    }
    next.checkpoints.sort_by_key(|c| c.index);
    let excess = next.checkpoints.len().saturating_sub(retain.max(1));
    next.checkpoints.drain(..excess);
    let oldest = next.checkpoints.first().map_or(0, |c| c.index);
    let (dropped, kept): (Vec<_>, Vec<_>) = next.segments.iter().partition(|s| s.last <= oldest);
    next.segments = kept;
    (next, dropped)
}

/// The keys to delete once the manifest lists only `retained` of `all` checkpoints and no
/// longer lists `dropped_segments`.
pub(crate) fn garbage(
    all: &[CheckpointRecord],
    retained: &[CheckpointRecord],
    dropped_segments: &[SegmentRef],
) -> Vec<String> {
    let kept: BTreeSet<&str> = retained
        .iter()
        .flat_map(|c| c.files.iter().map(|f| f.sha256.as_str()))
        .collect();
    let kept_refs: BTreeSet<CheckpointRef> = retained.iter().map(|c| c.reference()).collect();
    let mut out = Vec::new();
    let mut files = BTreeSet::new();
    for c in all.iter().filter(|c| !kept_refs.contains(&c.reference())) {
        out.push(c.reference().key());
        for f in &c.files {
            if !kept.contains(f.sha256.as_str()) && files.insert(f.sha256.clone()) {
                out.push(layout::data_key(&f.sha256));
            }
        }
    }
    out.extend(
        dropped_segments
            .iter()
            .map(|s| layout::seg_key(s.first, s.last)),
    );
    out
}
