//! The tail-object pipeline: entries become `wal/<first index>` objects, strictly in order,
//! one upload at a time.
//!
//! Sync mode uploads each batch's entry as soon as it is decided, in parallel with the local
//! append, and the batch completes when both have (see `Core::maybe_complete_batch`). Async
//! mode lets entries collect and uploads them when the oldest is `upload_max_delay` old or
//! they reach `upload_max_bytes`. A failed upload keeps its exact bytes and name and is retried
//! with backoff; when its outcome was unknown it is read back first.

use crate::core::{Action, Core};
use crate::error::Error;
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse, PutMode};
use crate::time::Instant;

use super::layout;
use super::writer::{Found, classify, fenced_reason};
use super::{Op, Tail, Upload};

impl<S: Store> Core<S> {
    /// Starts the next upload if one is due.
    pub(crate) fn pump_upload(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        if r.upload.is_some() || r.upload_retry_at.is_some() || r.pending.is_empty() {
            return;
        }
        let due = r.config.sync_upload
            || r.pending_bytes >= r.config.upload_max_bytes
            || r.pending_since
                .is_some_and(|t| now >= t + r.config.upload_max_delay);
        if !due {
            return;
        }
        let first = r.pending.front().expect("checked non-empty").0;
        let last = r.pending.back().expect("checked non-empty").0;
        let mut bytes = Vec::with_capacity(r.pending_bytes as usize);
        for (_, frame) in r.pending.drain(..) {
            bytes.extend_from_slice(&frame);
        }
        r.pending_bytes = 0;
        r.pending_since = None;
        let bytes = bytes::Bytes::from(bytes);
        r.upload = Some(Upload {
            first,
            last,
            bytes: bytes.clone(),
            unknown: false,
            busy: true,
        });
        self.object(
            Op::UploadPut,
            ObjectRequest::Put {
                key: layout::wal_key(first),
                bytes,
                mode: PutMode::Create,
            },
        );
    }

    /// Tries the failed upload again: read it back first if it may have happened.
    pub(crate) fn retry_upload(&mut self, _now: Instant) {
        let Some(u) = self.remote.as_mut().and_then(|r| r.upload.as_mut()) else {
            return;
        };
        u.busy = true;
        let key = layout::wal_key(u.first);
        if u.unknown {
            self.object(Op::UploadGet, ObjectRequest::Get { key });
        } else {
            let bytes = u.bytes.clone();
            self.object(
                Op::UploadPut,
                ObjectRequest::Put {
                    key,
                    bytes,
                    mode: PutMode::Create,
                },
            );
        }
    }

    pub(crate) fn on_upload_put(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(_) => self.upload_done(now),
            // The name is taken: by our own earlier attempt, or by a newer writer.
            Err(ObjectError::PreconditionFailed) => {
                if let Some(u) = self.remote.as_mut().and_then(|r| r.upload.as_mut()) {
                    u.unknown = true;
                }
                self.retry_upload(now);
            }
            Err(e) => self.upload_failed(now, e),
        }
    }

    pub(crate) fn on_upload_get(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(r) = &mut self.remote else { return };
        let Some(u) = &mut r.upload else { return };
        let key = layout::wal_key(u.first);
        match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                match classify(u.first, &u.bytes, &bytes, r.term) {
                    Found::Ours => self.upload_done(now),
                    Found::Newer(their) => {
                        let reason = fenced_reason(&key, their, r.term);
                        self.fail(reason)
                    }
                    Found::Older(_) => self.fail(format!(
                        "{key} holds entries of an older writer term although this node wrote \
                         its term-start marker before them; refusing to continue"
                    )),
                    Found::Foreign(reason) => self.fail(format!(
                        "{key} holds data this node did not write ({reason}); refusing to continue"
                    )),
                }
            }
            Err(ObjectError::NotFound) => {
                // The earlier attempt did not happen: write it now.
                u.unknown = false;
                self.retry_upload(now);
            }
            Ok(other) => self.fail(format!("GET {key} answered {other:?}")),
            Err(e) => self.upload_failed(now, e),
        }
    }

    /// The bucket failed the upload: keep the bytes, retry later, and in sync mode answer the
    /// waiting writes with a retryable error now instead of letting them hang.
    fn upload_failed(&mut self, now: Instant, err: ObjectError) {
        let Some(r) = &mut self.remote else { return };
        let Some(u) = &mut r.upload else { return };
        u.unknown |= err.outcome_unknown();
        u.busy = false;
        r.upload_retry_at = Some(r.backoff.next(now));
        let reason = err.to_string();
        let first_failure = r.outage.is_none();
        r.outage = Some(reason.clone());
        if first_failure && r.config.sync_upload {
            self.answer_waiting_writes(&reason);
        }
    }

    /// Sync mode, bucket failing: every request waiting on a batch gets
    /// [`Error::ObjectStoreUnavailable`]. The batches themselves stay: their entries are
    /// decided (the in-flight one is in the local WAL) and become durable once the bucket
    /// answers, hence "may or may not have happened".
    fn answer_waiting_writes(&mut self, reason: &str) {
        let err = Error::ObjectStoreUnavailable(reason.to_string());
        let mut ids = Vec::new();
        for batch in [
            self.in_flight.as_mut().map(|f| &mut f.batch),
            Some(&mut self.open),
        ]
        .into_iter()
        .flatten()
        {
            ids.extend(batch.replies.drain(..).map(|(id, _)| id));
            ids.extend(batch.physical.drain(..).map(|(id, _, _)| id));
        }
        for id in ids {
            self.actions.push_back(Action::Reply {
                id,
                result: Err(err.clone()),
            });
        }
    }

    /// The upload is in the bucket.
    fn upload_done(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        let Some(u) = r.upload.take() else { return };
        r.uploaded = r.uploaded.max(u.last);
        r.unmerged.push_back(Tail {
            first: u.first,
            last: u.last,
            bytes: u.bytes,
            marker: false,
        });
        r.backoff.reset();
        r.outage = None;
        r.upload_retry_at = None;
        self.delete_covered_segments();
        self.maybe_persist();
        self.maybe_complete_batch(now);
        self.maybe_flush(now);
    }
}
