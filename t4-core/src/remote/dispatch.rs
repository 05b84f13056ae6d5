//! Routing object-store answers and timeouts to the flow that asked, and the `pump` that
//! starts new work after every input.

use crate::checkpoint::Built;
use crate::core::{Action, Core, IoId, RequestId};
use crate::error::Error;
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse};
use crate::time::Instant;

use super::{BootStep, Maint, Op};

impl<S: Store> Core<S> {
    /// Emits an object request on behalf of `op`.
    pub(crate) fn object(&mut self, op: Op, request: ObjectRequest) -> IoId {
        let io = self.io_id();
        if let Some(r) = &mut self.remote {
            r.ops.insert(io, op);
        }
        self.actions.push_back(Action::Object { io, request });
        io
    }

    pub(crate) fn handle_object(
        &mut self,
        now: Instant,
        io: IoId,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(op) = self.remote.as_mut().and_then(|r| r.ops.remove(&io)) else {
            return;
        };
        if self.failed.is_some() {
            return;
        }
        match op {
            Op::WriterGet => self.on_writer_get(now, result),
            Op::WriterPut(record) => self.on_writer_put(now, record, result),
            Op::ManifestGet => self.on_manifest_get(now, result),
            Op::ManifestClaim(m) => self.on_manifest_claim(now, *m, result),
            Op::WalList => self.on_wal_list(now, result),
            Op::RecordGet(key) => self.on_record_get(now, key, result),
            Op::DataGet(i) => self.on_data_get(now, i, result),
            Op::SegGet(first, last) => self.on_seg_get(now, first, last, result),
            Op::TailGet(index) => self.on_tail_get(now, index, result),
            Op::LocalPut | Op::MarkerPut => self.on_boot_put(now, result),
            Op::LocalGet | Op::MarkerGet => self.on_boot_check(now, result),
            Op::ManifestConfirm => self.on_manifest_confirm(now, result),
            Op::UploadPut => self.on_upload_put(now, result),
            Op::UploadGet => self.on_upload_get(now, result),
            Op::MergeSegPut => self.on_merge_seg_put(now, result),
            Op::MergeSegGet => self.on_merge_seg_get(now, result),
            Op::ManifestPut(manifest) => self.on_manifest_put(now, *manifest, result),
            Op::ManifestReGet => self.on_manifest_reget(now, result),
            Op::Delete => {}
            Op::SweepList => self.on_sweep_list(now, result),
            Op::SweepManifest => self.on_sweep_manifest(now, result),
            Op::DataPut => self.on_data_put(now, result),
            Op::RecordPut => self.on_record_put(now, result),
        }
    }

    pub(crate) fn handle_built(&mut self, now: Instant, io: IoId, result: Result<Built, String>) {
        let Some(r) = &mut self.remote else { return };
        if r.building.is_none_or(|(b, _)| b != io) {
            return;
        }
        r.building = None;
        let seeding = r.boot.as_ref().is_some_and(|b| b.step == BootStep::Seed);
        match result {
            Ok(built) if seeding => {
                r.built = Some(Box::new(built));
                self.start_publish(now);
            }
            Err(e) if seeding => self.fail(format!(
                "building the first checkpoint of the local store for the empty bucket: {e}"
            )),
            Ok(built) => r.built = Some(Box::new(built)),
            Err(e) => {
                r.last_ckp_at = now;
                let waiters = std::mem::take(&mut r.ckp_waiters);
                r.ckp_demanded = false;
                for id in waiters {
                    self.actions.push_back(Action::CheckpointDone {
                        id,
                        result: Err(format!("building the checkpoint failed: {e}")),
                    });
                }
            }
        }
    }

    pub(crate) fn demand_checkpoint(&mut self, _now: Instant, id: RequestId) {
        let refusal = match (&self.failed, &mut self.remote) {
            (Some(reason), _) => Some(format!("the node failed: {reason}")),
            (None, None) => Some("no object store is configured".to_string()),
            (None, Some(r)) => {
                r.ckp_waiters.push(id);
                r.ckp_demanded = true;
                None
            }
        };
        if let Some(reason) = refusal {
            self.actions.push_back(Action::CheckpointDone {
                id,
                result: Err(reason),
            });
        }
    }

    /// Starts whatever work the bucket needs now. Called at the end of every input, so that
    /// a [`Action::BuildCheckpoint`] is emitted only when the store will not change before
    /// the adapter takes its view.
    pub(crate) fn pump(&mut self, now: Instant) {
        if self.failed.is_some() || !self.remote.as_ref().is_some_and(|r| r.is_serving()) {
            return;
        }
        self.pump_upload(now);
        self.pump_maintenance(now);
        self.pump_checkpoint(now);
    }

    /// Retries whose time has come.
    pub(crate) fn remote_timeout(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        if let Some(boot) = &mut r.boot {
            if boot.retry_at.is_some_and(|t| t <= now) {
                boot.retry_at = None;
                self.boot_step(now);
            } else if boot.step == BootStep::Seed && r.maint_retry_at.is_some_and(|t| t <= now) {
                r.maint_retry_at = None;
                self.boot_step(now);
            }
            return;
        }
        if r.upload_retry_at.is_some_and(|t| t <= now) {
            r.upload_retry_at = None;
            self.retry_upload(now);
        }
        let Some(r) = &mut self.remote else { return };
        if r.maint_retry_at.is_some_and(|t| t <= now) {
            r.maint_retry_at = None;
        }
        if r.ckp_retry_at.is_some_and(|t| t <= now) {
            r.ckp_retry_at = None;
        }
    }

    /// The next time the bucket logic needs [`Core::handle_timeout`].
    pub(crate) fn remote_deadline(&self) -> Option<crate::Instant> {
        let r = self.remote.as_ref()?;
        if let Some(boot) = &r.boot {
            // Mirrors `remote_timeout`: the maintenance retry only drives the seeding step.
            let maint = r.maint_retry_at.filter(|_| boot.step == BootStep::Seed);
            return [boot.retry_at, maint].into_iter().flatten().min();
        }
        let flush = (!r.config.sync_upload && r.upload.is_none() && r.upload_retry_at.is_none())
            .then(|| r.pending_since.map(|t| t + r.config.upload_max_delay))
            .flatten();
        let ckp =
            // Mirrors the guards of `pump_checkpoint`, which is what acts on this deadline.
            (r.building.is_none()
                && r.built.is_none()
                && r.ckp_retry_at.is_none()
                && !matches!(r.maint, Some(Maint::Publish { .. }))
                && self.applied_index > r.last_ckp_index)
                .then(|| r.last_ckp_at + r.config.checkpoint_interval);
        [
            r.upload_retry_at,
            r.maint_retry_at,
            r.ckp_retry_at,
            flush,
            ckp,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The error a request gets without being decided, if the bucket state refuses it.
    pub(crate) fn remote_refusal(&self) -> Option<Error> {
        let r = self.remote.as_ref()?;
        if !r.is_serving() {
            return Some(Error::ObjectStoreUnavailable(
                "the node is still recovering from the object store".to_string(),
            ));
        }
        match &r.outage {
            Some(reason) if r.config.sync_upload => {
                Some(Error::ObjectStoreUnavailable(reason.clone()))
            }
            _ => None,
        }
    }

    /// A store persist completed.
    pub(crate) fn persisted(&mut self, now: Instant) {
        let target = self.applied_index;
        if self
            .remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .is_some_and(|b| b.step == BootStep::Persist)
        {
            if self.durable_index >= target {
                self.finish_bootstrap(now);
            } else {
                self.maybe_persist();
            }
        }
    }
}
