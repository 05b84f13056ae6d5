//! Checkpoints: when to take one, and publishing a built one (data files the bucket lacks,
//! then the index record, then the manifest).

use std::collections::BTreeSet;

use crate::checkpoint::{BuildSpec, Previous};
use crate::core::{Action, Core};
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse, PutMode};
use crate::time::Instant;

use super::layout::{self, CheckpointRecord, RECORD_FORMAT, encode_record, file_records};
use super::{BootStep, CheckpointInfo, Maint, Op};

/// Base data files are cut at about this size.
pub(crate) const FILE_TARGET_BYTES: usize = 8 << 20;
/// A new base is written once the deltas would pass this share of the base (percent).
pub(crate) const REBASE_PERCENT: u64 = 50;

impl<S: Store> Core<S> {
    /// Emits [`Action::BuildCheckpoint`] when one is due (or demanded). Called only at the end
    /// of an input, so the adapter's view is at the index asked for.
    pub(crate) fn pump_checkpoint(&mut self, now: Instant) {
        if !self.applying.is_empty() {
            // The store is between two entries: its view would not be at `applied_index`.
            return;
        }
        let applied = self.applied_index;
        let Some(r) = &mut self.remote else { return };
        let publishing = matches!(r.maint, Some(Maint::Publish { .. }));
        if r.building.is_some() || r.built.is_some() || publishing || r.ckp_retry_at.is_some() {
            return;
        }
        let since = applied.saturating_sub(r.last_ckp_index);
        if r.ckp_demanded
            && since == 0
            && let Some(info) = r.last_published.clone()
        {
            r.ckp_demanded = false;
            for id in std::mem::take(&mut r.ckp_waiters) {
                self.actions.push_back(Action::CheckpointDone {
                    id,
                    result: Ok(info.clone()),
                });
            }
            return;
        }
        let due = r.ckp_demanded
            || since >= r.config.checkpoint_entries.max(1)
            || (since > 0 && now >= r.last_ckp_at + r.config.checkpoint_interval);
        if !due {
            return;
        }
        let (leases, auth) = match self
            .store
            .leases()
            .and_then(|l| Ok((l, self.store.auth()?)))
        {
            Ok(x) => x,
            Err(e) => return self.fail(format!("reading leases for a checkpoint: {e}")),
        };
        let Some(r) = &mut self.remote else { return };
        let previous = r.checkpoints.last().map(|c| Previous {
            revision: c.revision,
            files: c.file_refs(),
        });
        r.last_ckp_at = now;
        let spec = BuildSpec {
            index: applied,
            leases,
            auth,
            previous,
            file_target_bytes: FILE_TARGET_BYTES,
            rebase_percent: REBASE_PERCENT,
        };
        let io = self.io_id();
        if let Some(r) = &mut self.remote {
            r.building = Some((io, applied));
        }
        self.actions.push_back(Action::BuildCheckpoint { io, spec });
    }

    /// The built checkpoint's log is in the bucket: upload its files.
    pub(crate) fn start_publish(&mut self, _now: Instant) {
        let Some(r) = &mut self.remote else { return };
        let Some(built) = r.built.take() else { return };
        let record = CheckpointRecord {
            format: RECORD_FORMAT,
            index: built.index,
            revision: built.revision,
            compact_revision: built.compact_revision,
            term: r.term,
            files: file_records(&built.files),
            leases: built.leases.clone(),
            auth: (*built.auth).clone(),
        };
        r.maint = Some(Maint::Publish {
            built,
            record: Box::new(record),
            files_left: 0,
            files_failed: false,
            uploaded_bytes: 0,
            drop_segments: Vec::new(),
        });
        self.upload_checkpoint_files();
    }

    /// Uploads the files of the checkpoint being published that the bucket lacks (those no
    /// retained checkpoint lists), then its record.
    pub(crate) fn upload_checkpoint_files(&mut self) {
        let Some(r) = &mut self.remote else { return };
        let known: BTreeSet<&str> = r
            .checkpoints
            .iter()
            .flat_map(|c| c.files.iter().map(|f| f.sha256.as_str()))
            .collect();
        let Some(Maint::Publish {
            built,
            files_left,
            files_failed,
            uploaded_bytes,
            ..
        }) = &mut r.maint
        else {
            return;
        };
        let mut seen = BTreeSet::new();
        let uploads: Vec<_> = built
            .new_files
            .iter()
            .filter(|(f, _)| !known.contains(f.name.as_str()) && seen.insert(f.name.clone()))
            .map(|(f, bytes)| (layout::data_key(&f.name), bytes.clone()))
            .collect();
        *files_left = uploads.len();
        *files_failed = false;
        *uploaded_bytes = uploads.iter().map(|(_, b)| b.len() as u64).sum();
        r.maint_busy = true;
        if uploads.is_empty() {
            return self.put_checkpoint_record();
        }
        for (key, bytes) in uploads {
            self.object(
                Op::DataPut,
                ObjectRequest::Put {
                    key,
                    bytes,
                    mode: PutMode::Create,
                },
            );
        }
    }

    pub(crate) fn on_data_put(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(Maint::Publish {
            files_left,
            files_failed,
            ..
        }) = self.remote.as_mut().and_then(|r| r.maint.as_mut())
        else {
            return;
        };
        *files_left = files_left.saturating_sub(1);
        // Content-addressed: an existing object of that name has these bytes.
        if !matches!(result, Ok(_) | Err(ObjectError::PreconditionFailed)) {
            *files_failed = true;
        }
        if *files_left == 0 {
            if *files_failed {
                self.maint_failed(now);
            } else {
                self.put_checkpoint_record();
            }
        }
    }

    fn put_checkpoint_record(&mut self) {
        let Some(Maint::Publish {
            record,
            uploaded_bytes,
            ..
        }) = self.remote.as_mut().and_then(|r| r.maint.as_mut())
        else {
            return;
        };
        let bytes = encode_record(record.as_ref());
        *uploaded_bytes += bytes.len() as u64;
        let key = record.reference().key();
        self.object(
            Op::RecordPut,
            ObjectRequest::Put {
                key,
                bytes,
                mode: PutMode::Create,
            },
        );
    }

    pub(crate) fn on_record_put(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(_) | Err(ObjectError::PreconditionFailed) => self.publish_manifest(),
            Err(_) => self.maint_failed(now),
        }
    }

    fn publish_manifest(&mut self) {
        let Some(r) = &mut self.remote else { return };
        let Some(Maint::Publish {
            record,
            drop_segments,
            ..
        }) = &mut r.maint
        else {
            return;
        };
        let (mut next, dropped) =
            super::gc::retain(&r.manifest, record.reference(), r.config.checkpoint_retain);
        let seeding = r.boot.as_ref().is_some_and(|b| b.step == BootStep::Seed);
        if seeding {
            // The bucket's log starts after the seed checkpoint.
            next.merged_through = next.merged_through.max(record.index);
        }
        *drop_segments = dropped;
        self.put_manifest(next);
    }

    /// The manifest lists the new checkpoint: collect garbage and answer demands.
    pub(crate) fn checkpoint_published(
        &mut self,
        now: Instant,
        record: CheckpointRecord,
        uploaded_bytes: u64,
        drop_segments: Vec<super::layout::SegmentRef>,
    ) {
        let Some(r) = &mut self.remote else { return };
        let info = CheckpointInfo {
            index: record.index,
            revision: record.revision,
            uploaded_bytes,
        };
        let before = std::mem::take(&mut r.checkpoints);
        r.last_ckp_index = record.index;
        r.last_ckp_at = now;
        r.last_published = Some(info.clone());
        let mut all = before.clone();
        all.push(record);
        r.checkpoints = all
            .iter()
            .filter(|c| r.manifest.checkpoints.contains(&c.reference()))
            .cloned()
            .collect();
        let deletes = super::gc::garbage(&all, &r.checkpoints, &drop_segments);
        r.ckp_demanded = false;
        let waiters = std::mem::take(&mut r.ckp_waiters);
        self.delete_objects(deletes);
        for id in waiters {
            self.actions.push_back(Action::CheckpointDone {
                id,
                result: Ok(info.clone()),
            });
        }
    }
}
