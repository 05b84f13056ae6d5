//! Merging tail objects into sealed segments, and the manifest updates that merging and
//! checkpoint publication share (one maintenance task at a time, `If-Match` on the manifest).

use bytes::Bytes;

use crate::core::Core;
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse, PutMode};
use crate::time::Instant;

use super::layout::{self, MANIFEST, Manifest, SegmentRef, decode_record, encode_record};
use super::{BootStep, Maint, Op};

/// Unmerged tail objects are merged once they hold this many bytes, whatever their number.
const MERGE_MAX_BYTES: usize = 64 << 20;

impl<S: Store> Core<S> {
    /// Starts, resumes or plans the maintenance task.
    pub(crate) fn pump_maintenance(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        if r.maint_busy || r.maint_retry_at.is_some() {
            return;
        }
        // Deletes (of merged tails, dropped checkpoints, a sweep's finds) must land before the
        // next task may create objects: a publication can re-upload a content-addressed data
        // file, a merge re-create a segment name, that a delete in flight would then remove.
        if r.ops.values().any(|op| matches!(op, Op::Delete)) {
            return;
        }
        if r.manifest_stale {
            r.maint_busy = true;
            self.object(
                Op::ManifestReGet,
                ObjectRequest::Get {
                    key: MANIFEST.to_string(),
                },
            );
            return;
        }
        if r.maint.is_none() {
            if r.built.as_ref().is_some_and(|b| r.uploaded >= b.index) {
                return self.start_publish(now);
            }
            let mergeable = r
                .unmerged
                .iter()
                .take_while(|t| t.last <= r.uploaded)
                .count();
            let bytes: usize = r
                .unmerged
                .iter()
                .take(mergeable)
                .map(|t| t.bytes.len())
                .sum();
            // Tail bytes wait in memory until merged: bound them too.
            if mergeable == 0
                || (mergeable < r.config.merge_min_objects.max(1) && bytes < MERGE_MAX_BYTES)
            {
                return;
            }
            let tails: Vec<_> = r.unmerged.iter().take(mergeable).collect();
            let first = tails[0].first;
            let last = tails[mergeable - 1].last;
            let mut frames = Vec::new();
            for t in &tails {
                frames.extend_from_slice(&t.bytes);
            }
            r.maint = Some(Maint::Merge {
                first,
                last,
                count: mergeable,
                bytes: Bytes::from(layout::encode_seg(first, &frames)),
            });
        }
        match &r.maint {
            Some(Maint::Merge {
                first, last, bytes, ..
            }) => {
                let request = ObjectRequest::Put {
                    key: layout::seg_key(*first, *last),
                    bytes: bytes.clone(),
                    mode: PutMode::Create,
                };
                r.maint_busy = true;
                self.object(Op::MergeSegPut, request);
            }
            Some(Maint::Publish { .. }) => self.upload_checkpoint_files(),
            // A sweep is never resumed: the next publication sweeps again.
            Some(Maint::Sweep { .. }) => {
                r.maint = None;
                self.pump_maintenance(now);
            }
            None => {}
        }
    }

    /// A maintenance request failed: keep the task, re-read the manifest, retry later.
    pub(crate) fn maint_failed(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        r.maint_busy = false;
        r.manifest_stale = true;
        r.maint_retry_at = Some(r.backoff.next(now));
        // A demanded checkpoint is answered now rather than after the outage; its
        // publication is still retried.
        if matches!(r.maint, Some(Maint::Publish { .. })) && !r.ckp_waiters.is_empty() {
            r.ckp_demanded = false;
            for id in std::mem::take(&mut r.ckp_waiters) {
                self.actions.push_back(crate::core::Action::CheckpointDone {
                    id,
                    result: Err(
                        "the object store is unavailable; the checkpoint will be published \
                         when it answers again"
                            .to_string(),
                    ),
                });
            }
        }
    }

    pub(crate) fn on_merge_seg_put(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(_) => self.merge_manifest(),
            Err(ObjectError::PreconditionFailed) => {
                let Some(Maint::Merge { first, last, .. }) =
                    self.remote.as_ref().and_then(|r| r.maint.as_ref())
                else {
                    return;
                };
                let key = layout::seg_key(*first, *last);
                self.object(Op::MergeSegGet, ObjectRequest::Get { key });
            }
            Err(_) => self.maint_failed(now),
        }
    }

    pub(crate) fn on_merge_seg_get(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(Maint::Merge {
            first, last, bytes, ..
        }) = self.remote.as_ref().and_then(|r| r.maint.as_ref())
        else {
            return;
        };
        let key = layout::seg_key(*first, *last);
        match result {
            Ok(ObjectResponse::Got { bytes: found, .. }) if found == bytes => self.merge_manifest(),
            Ok(ObjectResponse::Got { .. }) => self.fail(format!(
                "{key} already exists with other contents than the log this node holds; \
                 refusing to continue"
            )),
            Err(ObjectError::NotFound) => {
                if let Some(r) = &mut self.remote {
                    r.maint_busy = false;
                }
                self.pump_maintenance(now);
            }
            _ => self.maint_failed(now),
        }
    }

    fn merge_manifest(&mut self) {
        let Some(r) = &self.remote else { return };
        let Some(Maint::Merge {
            first, last, count, ..
        }) = &r.maint
        else {
            return;
        };
        let mut next = r.manifest.clone();
        if next.merged_through < *last {
            next.segments.push(SegmentRef {
                first: *first,
                last: *last,
            });
            next.merged_through = *last;
        }
        for t in r.unmerged.iter().take(*count).filter(|t| t.marker) {
            if !next.fences.contains(&t.first) {
                next.fences.push(t.first);
            }
        }
        self.put_manifest(next);
    }

    /// Writes the next manifest version with `If-Match` on the one we hold.
    pub(crate) fn put_manifest(&mut self, mut next: Manifest) {
        let Some(r) = &mut self.remote else { return };
        next.format = layout::RECORD_FORMAT;
        next.term = r.term;
        next.generation = r.manifest.generation + 1;
        let mode = match &r.manifest_etag {
            Some(etag) => PutMode::Update(etag.clone()),
            None => PutMode::Create,
        };
        r.maint_busy = true;
        let bytes = encode_record(&next);
        self.object(
            Op::ManifestPut(Box::new(next)),
            ObjectRequest::Put {
                key: MANIFEST.to_string(),
                bytes,
                mode,
            },
        );
    }

    pub(crate) fn on_manifest_put(
        &mut self,
        now: Instant,
        next: Manifest,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(ObjectResponse::Put { etag }) => {
                if let Some(r) = &mut self.remote {
                    r.manifest = next;
                    r.manifest_etag = Some(etag);
                }
                self.maint_done(now);
            }
            Ok(other) => self.fail(format!("PUT manifest answered {other:?}")),
            // Changed under us, or our own earlier write: re-read and reconcile.
            Err(_) => self.maint_failed(now),
        }
    }

    /// The manifest re-read after a failure or conflict.
    pub(crate) fn on_manifest_reget(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let (manifest, etag) = match result {
            Ok(ObjectResponse::Got { bytes, etag }) => {
                match decode_record::<Manifest>(MANIFEST, &bytes) {
                    Ok(m) => (m, Some(etag)),
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            Err(ObjectError::NotFound) => (Manifest::default(), None),
            Ok(other) => return self.fail(format!("GET manifest answered {other:?}")),
            Err(_) => {
                let Some(r) = &mut self.remote else { return };
                r.maint_busy = false;
                r.maint_retry_at = Some(r.backoff.next(now));
                return;
            }
        };
        let Some(r) = &mut self.remote else { return };
        if manifest.term > r.term {
            let reason = super::writer::fenced_reason(MANIFEST, manifest.term, r.term);
            return self.fail(reason);
        }
        r.maint_busy = false;
        r.manifest_stale = false;
        r.manifest = manifest;
        r.manifest_etag = etag;
        // Did our own update land although its answer was lost?
        let landed = match &r.maint {
            Some(Maint::Merge { last, .. }) => r.manifest.merged_through >= *last,
            Some(Maint::Publish { record, .. }) => {
                r.manifest.checkpoints.contains(&record.reference())
            }
            Some(Maint::Sweep { .. }) | None => false,
        };
        if landed {
            return self.maint_done(now);
        }
        self.pump_maintenance(now);
    }

    /// The manifest now reflects the maintenance task: finish it.
    fn maint_done(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        r.maint_busy = false;
        r.backoff.reset();
        match r.maint.take() {
            Some(Maint::Merge { count, .. }) => {
                let merged: Vec<String> = r
                    .unmerged
                    .drain(..count)
                    .filter(|t| !t.marker)
                    .map(|t| layout::wal_key(t.first))
                    .collect();
                self.delete_objects(merged);
            }
            Some(Maint::Publish {
                record,
                uploaded_bytes,
                drop_segments,
                ..
            }) => {
                self.checkpoint_published(now, *record, uploaded_bytes, drop_segments);
                if self.remote.as_ref().is_some_and(|r| r.boot.is_none()) {
                    return self.start_sweep();
                }
            }
            Some(Maint::Sweep { .. }) | None => {}
        }
        let Some(r) = &self.remote else { return };
        match &r.boot {
            Some(boot) if boot.step == BootStep::Seed => self.seeded(),
            Some(_) => {}
            None => self.pump_maintenance(now),
        }
    }
}
