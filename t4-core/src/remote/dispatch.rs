//! Routing object-store answers and timeouts to the flow that asked, and the `pump` that
//! starts new work after every input.

use crate::checkpoint::Built;
use crate::core::{Action, Core, IoId, RequestId};
use crate::error::Error;
use crate::kv::LeaseId;
use crate::lease::Durable;
use crate::mvcc::Store;
use crate::object::{MAX_DELETE_KEYS, ObjectError, ObjectRequest, ObjectResponse};
use crate::request::{LeaseKeepAliveResponse, LeaseLeasesResponse, Request, Response};
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

    /// Deletes `keys` with as few requests as the store allows: one
    /// [`ObjectRequest::DeleteMany`] per [`MAX_DELETE_KEYS`] keys, none for no keys. The next
    /// maintenance task waits until every one has been answered (see `pump_maintenance`);
    /// nothing else depends on them, and a failure is not retried: the next sweep finds the
    /// checkpoints, segments and data files a failed delete left (tail objects it left below
    /// the merged mark stay, never read again).
    pub(crate) fn delete_objects(&mut self, keys: Vec<String>) {
        for chunk in keys.chunks(MAX_DELETE_KEYS) {
            self.object(
                Op::Delete,
                ObjectRequest::DeleteMany {
                    keys: chunk.to_vec(),
                },
            );
        }
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
            (self.applying.is_empty()
                && r.building.is_none()
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

    /// The answer a request gets without being decided, if the bucket state gives it one.
    /// While the node recovers from the bucket, every request is refused. While a sync-mode
    /// bucket fails, writes are refused (they could not be made durable) and lease
    /// keepalives and queries are answered from the durable state.
    pub(crate) fn remote_answer(
        &mut self,
        now: Instant,
        request: &Request,
    ) -> Option<Result<Response, Error>> {
        let r = self.remote.as_ref()?;
        if !r.is_serving() {
            return Some(Err(Error::ObjectStoreUnavailable(
                "the node is still recovering from the object store".to_string(),
            )));
        }
        let reason = r.outage.clone().filter(|_| r.config.sync_upload)?;
        let answer = self.outage_lease_answer(now, request, &reason);
        Some(answer.unwrap_or(Err(Error::ObjectStoreUnavailable(reason))))
    }

    /// Answers a lease keepalive or query during a sync-mode outage; `None` for any other
    /// request.
    ///
    /// Keepalives are not writes (expiry deadlines are leader memory), so renewing a lease
    /// needs no bucket, and clients' leases must not run out only because the bucket is
    /// down. But the lease table is the *decided* state: it includes the batches stuck
    /// waiting for the bucket, which were never acknowledged and may never become durable
    /// (the node may lose its disk first). So the answer comes from the durable state — the
    /// table minus the changes of entries after `applied_index` — and a lease that such a
    /// change grants or revokes (or, asked for its keys, attaches or detaches keys of) gets the
    /// retryable error rather than either answer.
    ///
    /// Lease expiry goes on meanwhile: an expired lease's revoke is decided into the open
    /// batch like any write, waits there for the bucket, and makes the lease pending here.
    fn outage_lease_answer(
        &mut self,
        now: Instant,
        request: &Request,
        reason: &str,
    ) -> Option<Result<Response, Error>> {
        self.leases.forget_durable(self.applied_index);
        let revision = self.applied_revision();
        let undurable = |id: LeaseId| {
            Error::ObjectStoreUnavailable(format!(
                "{reason}; lease {id} was changed by a write not yet in the bucket"
            ))
        };
        let answer = match *request {
            Request::LeaseKeepAlive { id } => match self.leases.durable(id) {
                Durable::Pending => Err(undurable(id)),
                Durable::Live => Ok(self.leases.renew(id, now).unwrap_or(0)),
                // etcd's answer for an unknown lease (the server maps it to TTL 0).
                Durable::Absent => Ok(0),
            }
            .map(|ttl| Response::LeaseKeepAlive(LeaseKeepAliveResponse { revision, id, ttl })),
            Request::LeaseTimeToLive { id, keys } => match self.leases.durable(id) {
                Durable::Pending => Err(undurable(id)),
                Durable::Live if keys && !self.leases.keys_durable(id) => Err(undurable(id)),
                Durable::Live | Durable::Absent => Ok(Response::LeaseTimeToLive(
                    self.leases.time_to_live(id, keys, now, revision),
                )),
            },
            Request::LeaseLeases => Ok(Response::LeaseLeases(LeaseLeasesResponse {
                revision,
                leases: self.leases.durable_ids(),
            })),
            _ => return None,
        };
        Some(answer)
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
