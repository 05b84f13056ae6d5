//! Term acquisition and fencing: the writer record, the term-start marker, and what an
//! object found at our next name means.

use std::collections::VecDeque;

use bytes::Bytes;

use crate::core::Core;
use crate::mvcc::Store;
use crate::object::{ObjectError, ObjectRequest, ObjectResponse, PutMode};
use crate::time::Instant;
use crate::wal::LogEntry;

use super::layout::{self, RECORD_FORMAT, WRITER, WriterRecord, decode_record, encode_record};
use super::{BootStep, BootstrapPhase, Op, Tail};

/// Writer-record conflicts tolerated at start-up before giving up.
const MAX_WRITER_CONFLICTS: u32 = 8;

/// What the tail object found at one of our names means.
pub(crate) enum Found {
    /// Our own bytes: our PUT happened although its answer was lost.
    Ours,
    /// Entries of an older term: the previous writer made them durable.
    Older(Vec<LogEntry>),
    /// A newer term wrote there: we are fenced.
    Newer(u64),
    /// Something else (reason).
    Foreign(String),
}

/// Classifies `found`, the contents of `wal/<first>`, against what we wrote there.
pub(crate) fn classify(first: u64, ours: &Bytes, found: &Bytes, term: u64) -> Found {
    if found == ours {
        return Found::Ours;
    }
    match layout::decode_tail(first, found) {
        Err(e) => Found::Foreign(e.to_string()),
        Ok(entries) => {
            let their = entries.iter().map(|e| e.term).max().unwrap_or(0);
            if their > term {
                Found::Newer(their)
            } else if their < term {
                Found::Older(entries)
            } else {
                Found::Foreign(format!(
                    "{} holds entries of this node's own term {term} that it did not write",
                    layout::wal_key(first)
                ))
            }
        }
    }
}

/// The reason a fenced writer gives.
pub(crate) fn fenced_reason(key: &str, their: u64, ours: u64) -> String {
    format!(
        "fenced: {key} in the object store was written by writer term {their}, newer than this \
         node's term {ours}; another node has taken over this prefix, so this node stops \
         accepting writes (reads continue). Check the `writer` object for the current holder"
    )
}

impl<S: Store> Core<S> {
    /// Begins start-up with a bucket: take the writer record.
    pub(crate) fn start_bootstrap(&mut self, now: Instant) {
        self.boot_step(now);
    }

    /// (Re)issues the requests of the current start-up step.
    pub(crate) fn boot_step(&mut self, now: Instant) {
        let Some(boot) = self.remote.as_ref().and_then(|r| r.boot.as_ref()) else {
            return;
        };
        match boot.step {
            BootStep::Writer => {
                self.object(
                    Op::WriterGet,
                    ObjectRequest::Get {
                        key: WRITER.to_string(),
                    },
                );
            }
            BootStep::Manifest => self.request_manifest_parts(),
            BootStep::Checkpoint => self.request_checkpoint_files(),
            BootStep::Segments => self.next_segment(now),
            BootStep::Chain => self.request_tail(),
            BootStep::Local | BootStep::Marker => {
                // After an unknown outcome, read before writing again.
                if let Some((first, _)) = boot.writing {
                    let op = if boot.step == BootStep::Local {
                        Op::LocalGet
                    } else {
                        Op::MarkerGet
                    };
                    self.object(
                        op,
                        ObjectRequest::Get {
                            key: layout::wal_key(first),
                        },
                    );
                }
            }
            BootStep::Confirm => {
                self.object(
                    Op::ManifestConfirm,
                    ObjectRequest::Get {
                        key: layout::MANIFEST.to_string(),
                    },
                );
            }
            BootStep::Seed => self.pump_maintenance(now),
            BootStep::Persist => self.maybe_persist(),
        }
    }

    /// A start-up request failed: retry later when the bucket may come back, or stop.
    pub(crate) fn boot_error(&mut self, now: Instant, what: &str, err: ObjectError) {
        match err {
            ObjectError::Unavailable(_) => {
                let Some(r) = &mut self.remote else { return };
                let at = r.backoff.next(now);
                if let Some(boot) = &mut r.boot {
                    boot.retry_at = Some(at);
                }
            }
            err => self.fail(format!(
                "start-up from the object store failed: {what}: {err}"
            )),
        }
    }

    pub(crate) fn on_writer_get(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        if !self.boot_at(BootStep::Writer) {
            return;
        }
        let Some(r) = &mut self.remote else { return };
        let (record, mode) = match result {
            Ok(ObjectResponse::Got { bytes, etag }) => {
                let current: WriterRecord = match decode_record(WRITER, &bytes) {
                    Ok(c) => c,
                    Err(e) => return self.fail(e.to_string()),
                };
                let claimed = r.boot.as_mut().and_then(|b| b.claimed.take());
                if claimed.as_ref() == Some(&current) {
                    return self.term_acquired(now, current);
                }
                if current.node_id != r.config.node_id && !r.config.takeover {
                    let reason = format!(
                        "the object store prefix is held by node {:?} (writer term {}); this node \
                         ({:?}) refuses to serve it. If that node is gone for good, restart this \
                         one with takeover enabled (--s3-takeover)",
                        current.node_id, current.term, r.config.node_id
                    );
                    return self.fail(reason);
                }
                let next = WriterRecord {
                    format: RECORD_FORMAT,
                    term: current.term + 1,
                    node_id: r.config.node_id.clone(),
                    generation: current.generation + 1,
                };
                (next, PutMode::Update(etag))
            }
            Err(ObjectError::NotFound) => {
                let first = WriterRecord {
                    format: RECORD_FORMAT,
                    term: 1,
                    node_id: r.config.node_id.clone(),
                    generation: 1,
                };
                (first, PutMode::Create)
            }
            Ok(other) => {
                return self.fail(format!(
                    "object store answered a GET of `writer` with {other:?}"
                ));
            }
            Err(e) => return self.boot_error(now, "reading `writer`", e),
        };
        let bytes = encode_record(&record);
        self.object(
            Op::WriterPut(record),
            ObjectRequest::Put {
                key: WRITER.to_string(),
                bytes,
                mode,
            },
        );
    }

    pub(crate) fn on_writer_put(
        &mut self,
        now: Instant,
        record: WriterRecord,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        if !self.boot_at(BootStep::Writer) {
            return;
        }
        match result {
            Ok(_) => self.term_acquired(now, record),
            Err(ObjectError::PreconditionFailed) => {
                let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) else {
                    return;
                };
                boot.conflicts += 1;
                if boot.conflicts > MAX_WRITER_CONFLICTS {
                    return self.fail(
                        "another process keeps rewriting the `writer` object of this prefix; \
                         refusing to start while it does"
                            .to_string(),
                    );
                }
                self.boot_step(now);
            }
            Err(ObjectError::Unavailable(e)) => {
                if let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) {
                    boot.claimed = Some(record);
                }
                self.boot_error(now, "writing `writer`", ObjectError::Unavailable(e));
            }
            Err(e) => self.boot_error(now, "writing `writer`", e),
        }
    }

    fn term_acquired(&mut self, now: Instant, record: WriterRecord) {
        let Some(r) = &mut self.remote else { return };
        r.term = record.term;
        r.backoff.reset();
        r.progress.phase = BootstrapPhase::ReadingManifest;
        if let Some(boot) = &mut r.boot {
            boot.step = BootStep::Manifest;
        }
        self.boot_step(now);
    }

    /// Writes the term-start marker after the end of the log (`end`).
    pub(crate) fn write_marker(&mut self, end: u64) {
        let Some(r) = &mut self.remote else { return };
        let marker = LogEntry {
            index: end + 1,
            term: r.term,
            ops: Vec::new(),
        };
        let bytes = Bytes::from(layout::encode_tail([&marker]));
        r.progress.phase = BootstrapPhase::Fencing;
        if let Some(boot) = &mut r.boot {
            boot.step = BootStep::Marker;
            boot.writing = Some((end + 1, bytes.clone()));
        }
        self.object(
            Op::MarkerPut,
            ObjectRequest::Put {
                key: layout::wal_key(end + 1),
                bytes,
                mode: PutMode::Create,
            },
        );
    }

    /// The answer to the local-entries upload or the marker.
    pub(crate) fn on_boot_put(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(_) => self.boot_written(now),
            Err(ObjectError::PreconditionFailed) => {
                // Someone else created that name: find out who.
                self.boot_step(now);
            }
            Err(e) => self.boot_error(now, "writing the log end", e),
        }
    }

    /// The answer to reading back our name after a conflict or an unknown outcome.
    pub(crate) fn on_boot_check(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(r) = &self.remote else { return };
        let Some(boot) = &r.boot else { return };
        let Some((first, ours)) = boot.writing.clone() else {
            return;
        };
        let step = boot.step;
        let term = r.term;
        let key = layout::wal_key(first);
        match result {
            Ok(ObjectResponse::Got { bytes, .. }) => match classify(first, &ours, &bytes, term) {
                Found::Ours => self.boot_written(now),
                Found::Newer(their) => self.fail(fenced_reason(&key, their, term)),
                Found::Older(entries) if step == BootStep::Marker => {
                    // The previous writer extended the log after we read its end: adopt it.
                    let last = entries.last().map_or(first, |e| e.index);
                    for entry in &entries {
                        if let Err(e) = self.apply_from_bucket(entry) {
                            return self.fail(format!("applying {key} during start-up: {e}"));
                        }
                    }
                    if let Some(r) = &mut self.remote {
                        r.unmerged.push_back(Tail {
                            first,
                            last,
                            bytes,
                            marker: layout::is_marker(&entries),
                        });
                    }
                    self.write_marker(last);
                }
                Found::Older(_) => self.fail(format!(
                    "the local data dir diverges from the object store: it holds entries from \
                     index {first} on that are not in the bucket, but {key} holds other entries \
                     written meanwhile; refusing to start (move the data dir away to rebuild \
                     from the bucket)"
                )),
                Found::Foreign(reason) => self.fail(format!(
                    "{key} holds data this node cannot account for ({reason}); refusing to start"
                )),
            },
            Err(ObjectError::NotFound) => {
                // Our PUT never happened: write it now.
                let op = if step == BootStep::Local {
                    Op::LocalPut
                } else {
                    Op::MarkerPut
                };
                self.object(
                    op,
                    ObjectRequest::Put {
                        key,
                        bytes: ours,
                        mode: PutMode::Create,
                    },
                );
            }
            Ok(other) => self.fail(format!(
                "object store answered a GET of {key} with {other:?}"
            )),
            Err(e) => self.boot_error(now, "reading back the log end", e),
        }
    }

    /// Our local-entries upload or marker is in the bucket.
    fn boot_written(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        let Some(boot) = &mut r.boot else { return };
        if boot.step == BootStep::Marker {
            // Not ours until the manifest says no newer term has claimed the prefix.
            boot.step = BootStep::Confirm;
            return self.boot_step(now);
        }
        let Some((first, bytes)) = boot.writing.take() else {
            return;
        };
        // The local entries take the name the previous term's writer would create next: it
        // stays, like the marker after it.
        let last = match keep_as_fence(&mut r.unmerged, first, bytes) {
            Ok(entries) => entries.last().map_or(first, |e| e.index),
            Err(e) => return self.fail(e),
        };
        self.write_marker(last);
    }

    /// The manifest re-read after our marker was created. Our create succeeding proves only
    /// that the name was free, not that it is still ours to take: a newer writer may have
    /// claimed the prefix after we did, merged the tail objects from there on and deleted
    /// them. Every newer writer claims the manifest before it deletes anything, and manifest
    /// terms never go back, so a manifest still at our term, read after the create, proves no
    /// newer writer had begun: it will read the chain through our marker.
    pub(crate) fn on_manifest_confirm(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        if !self.boot_at(BootStep::Confirm) {
            return;
        }
        let manifest = match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                match decode_record::<layout::Manifest>(layout::MANIFEST, &bytes) {
                    Ok(m) => m,
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            Err(ObjectError::NotFound) => {
                return self.fail(
                    "the `manifest` object disappeared during start-up; refusing to start"
                        .to_string(),
                );
            }
            Ok(other) => return self.fail(format!("GET manifest answered {other:?}")),
            Err(e) => return self.boot_error(now, "re-reading `manifest`", e),
        };
        let Some(r) = &mut self.remote else { return };
        if manifest.term > r.term {
            let reason = fenced_reason(layout::MANIFEST, manifest.term, r.term);
            return self.fail(reason);
        }
        let Some(boot) = &mut r.boot else { return };
        let Some((first, bytes)) = boot.writing.take() else {
            // Confirming after a listed tail vanished (see `chain_end`), yet no newer writer.
            let gone = boot.next_tail;
            return self.fail(format!(
                "log object {} was listed at start-up but was gone when read, and no newer \
                 writer has claimed the prefix: something else deleted it; refusing to start \
                 rather than skip entries (restore the object)",
                layout::wal_key(gone)
            ));
        };
        let entries = match keep_as_fence(&mut r.unmerged, first, bytes) {
            Ok(entries) => entries,
            Err(e) => return self.fail(e),
        };
        let last = entries.last().map_or(first, |e| e.index);
        if let Some(m) = entries.first()
            && let Err(e) = self.apply_from_bucket(m)
        {
            return self.fail(format!("applying the term-start marker: {e}"));
        }
        if let Some(r) = &mut self.remote {
            r.uploaded = last;
            r.progress.phase = BootstrapPhase::Persisting;
            if let Some(boot) = &mut r.boot {
                boot.step = BootStep::Persist;
            }
        }
        self.boot_step(now);
    }
}

/// Decodes a tail object we created at start-up (local entries or the term-start marker)
/// and keeps it in `unmerged` as a fence, which merging never deletes.
fn keep_as_fence(
    unmerged: &mut VecDeque<Tail>,
    first: u64,
    bytes: Bytes,
) -> Result<Vec<LogEntry>, String> {
    let entries = layout::decode_tail(first, &bytes)
        .map_err(|e| format!("re-reading our own upload: {e}"))?;
    let last = entries.last().map_or(first, |e| e.index);
    unmerged.push_back(Tail {
        first,
        last,
        bytes,
        marker: true,
    });
    Ok(entries)
}
