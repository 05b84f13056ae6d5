//! Recovery from the bucket at start-up: the manifest, the newest checkpoint when the local
//! store is behind the log the bucket still holds, then every log object after the store's
//! state, in order, each verified. A missing or corrupt object stops recovery with an error
//! naming it; nothing is skipped unless `allow_missing_objects` says so.

use crate::checkpoint::load::Loader;
use crate::core::Core;
use crate::lease::LeaseTable;
use crate::mvcc::{CheckpointImage, Overlay, ReadView, Store};
use crate::object::{ETag, ObjectError, ObjectRequest, ObjectResponse, PutMode};
use crate::time::Instant;
use crate::wal::LogEntry;

use super::layout::{self, CheckpointRecord, MANIFEST, Manifest, decode_record};
use super::{BootStep, BootstrapPhase, Op, Tail};

impl<S: Store> Core<S> {
    /// Whether start-up is at `step`.
    pub(crate) fn boot_at(&self, step: BootStep) -> bool {
        self.remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .is_some_and(|b| b.step == step)
    }

    fn manifest_read(&self) -> bool {
        self.remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .is_some_and(|b| b.manifest_read)
    }

    /// Applies an entry read from the bucket (or written at start-up) to the store. An entry
    /// the store has already applied must be the one the local WAL holds at that index: a
    /// local entry that differs was never made durable in the bucket and was superseded by
    /// another writer, so the local store has diverged.
    pub(crate) fn apply_from_bucket(&mut self, entry: &LogEntry) -> Result<(), String> {
        if entry.index <= self.applied_index {
            let local = self
                .remote
                .as_ref()
                .and_then(|r| r.boot.as_ref())
                .and_then(|b| b.local.get(&entry.index));
            return match local {
                Some(local) if local != entry => Err(format!(
                    "the local data dir diverges from the object store at index {} (the local WAL \
                     holds an entry of term {}, the bucket one of term {}): writes this node never \
                     made durable in the bucket were superseded by another writer; move the data \
                     dir away to rebuild this node from the bucket",
                    entry.index, local.term, entry.term
                )),
                _ => Ok(()),
            };
        }
        self.store.apply(entry).map_err(|e| e.to_string())?;
        self.applied_index = entry.index;
        self.next_index = self.next_index.max(entry.index + 1);
        if let Some(r) = &mut self.remote {
            r.progress.entries_applied += 1;
            r.progress.applied_index = entry.index;
            if let Some(boot) = &mut r.boot {
                boot.applied_from_bucket = true;
            }
        }
        Ok(())
    }

    /// Refuses entries of a term newer than ours found while replaying: a newer writer has
    /// taken over since we took our term, so we are fenced. Checked before anything is
    /// applied, so a fenced node's store never holds the newer writer's entries.
    fn check_not_newer(&self, key: &str, entries: &[LogEntry]) -> Result<(), String> {
        let ours = self.remote.as_ref().map_or(0, |r| r.term);
        match entries.iter().map(|e| e.term).max() {
            Some(their) if their > ours => Err(super::writer::fenced_reason(key, their, ours)),
            _ => Ok(()),
        }
    }

    pub(crate) fn request_manifest_parts(&mut self) {
        let Some(boot) = self.remote.as_ref().and_then(|r| r.boot.as_ref()) else {
            return;
        };
        let manifest = !boot.manifest_read;
        let list = boot.listed.is_none();
        let records: Vec<String> = boot
            .records_wanted
            .iter()
            .filter(|k| !boot.records.contains_key(*k))
            .cloned()
            .collect();
        if manifest {
            self.object(
                Op::ManifestGet,
                ObjectRequest::Get {
                    key: MANIFEST.to_string(),
                },
            );
        }
        if list {
            self.object(
                Op::WalList,
                ObjectRequest::List {
                    prefix: layout::WAL_PREFIX.to_string(),
                },
            );
        }
        if !manifest {
            for key in records {
                self.object(Op::RecordGet(key.clone()), ObjectRequest::Get { key });
            }
        }
    }

    pub(crate) fn on_manifest_get(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        // A duplicate answer after a retry changes nothing.
        if !self.boot_at(BootStep::Manifest) || self.manifest_read() {
            return;
        }
        let (manifest, etag) = match result {
            Ok(ObjectResponse::Got { bytes, etag }) => {
                match decode_record::<Manifest>(MANIFEST, &bytes) {
                    Ok(m) => (m, Some(etag)),
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            Err(ObjectError::NotFound) => (
                Manifest {
                    format: layout::RECORD_FORMAT,
                    ..Default::default()
                },
                None,
            ),
            Ok(other) => return self.fail(format!("GET manifest answered {other:?}")),
            Err(e) => return self.boot_error(now, "reading `manifest`", e),
        };
        let Some(r) = &mut self.remote else { return };
        if manifest.term > r.term {
            let reason = super::writer::fenced_reason(MANIFEST, manifest.term, r.term);
            return self.fail(reason);
        }
        if manifest.term == r.term {
            return self.manifest_ready(now, manifest, etag);
        }
        // Claim the manifest for our term before trusting it: from then on an older writer's
        // merge or checkpoint can no longer change it (its If-Match fails), so what we read
        // here stays true.
        let mut next = manifest;
        next.format = layout::RECORD_FORMAT;
        next.term = r.term;
        next.generation += 1;
        let mode = match etag {
            Some(etag) => PutMode::Update(etag),
            None => PutMode::Create,
        };
        let bytes = layout::encode_record(&next);
        self.object(
            Op::ManifestClaim(Box::new(next)),
            ObjectRequest::Put {
                key: MANIFEST.to_string(),
                bytes,
                mode,
            },
        );
    }

    pub(crate) fn on_manifest_claim(
        &mut self,
        now: Instant,
        next: Manifest,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        if !self.boot_at(BootStep::Manifest) || self.manifest_read() {
            return;
        }
        match result {
            Ok(ObjectResponse::Put { etag }) => self.manifest_ready(now, next, Some(etag)),
            // Changed since we read it: read it again.
            Err(ObjectError::PreconditionFailed) => self.boot_step(now),
            Ok(other) => self.fail(format!("PUT manifest answered {other:?}")),
            Err(e) => self.boot_error(now, "claiming `manifest`", e),
        }
    }

    fn manifest_ready(&mut self, now: Instant, manifest: Manifest, etag: Option<ETag>) {
        let Some(r) = &mut self.remote else { return };
        let keys: Vec<String> = manifest.checkpoints.iter().map(|c| c.key()).collect();
        r.manifest = manifest;
        r.manifest_etag = etag;
        if let Some(boot) = &mut r.boot {
            boot.manifest_read = true;
            boot.records_left = keys.len();
            boot.records_wanted = keys.clone();
        }
        for key in keys {
            self.object(Op::RecordGet(key.clone()), ObjectRequest::Get { key });
        }
        self.maybe_decide(now);
    }

    pub(crate) fn on_wal_list(
        &mut self,
        now: Instant,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        match result {
            Ok(ObjectResponse::Listed { objects }) => {
                let names = objects
                    .iter()
                    .filter_map(|o| layout::parse_wal_key(&o.key))
                    .collect();
                if let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) {
                    boot.listed = Some(names);
                }
                self.maybe_decide(now);
            }
            Ok(other) => self.fail(format!("LIST wal/ answered {other:?}")),
            Err(e) => self.boot_error(now, "listing `wal/`", e),
        }
    }

    pub(crate) fn on_record_get(
        &mut self,
        now: Instant,
        key: String,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let record = match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                match decode_record::<CheckpointRecord>(&key, &bytes) {
                    Ok(r) => r,
                    Err(e) => return self.fail(e.to_string()),
                }
            }
            Err(ObjectError::NotFound) => {
                return self.fail(format!(
                    "checkpoint record {key}, listed in the manifest, is missing from the object \
                     store; refusing to start rather than skip data (restore the object)"
                ));
            }
            Ok(other) => return self.fail(format!("GET {key} answered {other:?}")),
            Err(e) => return self.boot_error(now, "reading a checkpoint record", e),
        };
        if let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut())
            && boot.records.insert(key, record).is_none()
        {
            boot.records_left = boot.records_left.saturating_sub(1);
        }
        self.maybe_decide(now);
    }

    /// With the manifest, the listing and the checkpoint records read: decide where replay
    /// starts.
    fn maybe_decide(&mut self, now: Instant) {
        let Some(r) = &mut self.remote else { return };
        let Some(boot) = &mut r.boot else { return };
        if boot.step != BootStep::Manifest
            || !boot.manifest_read
            || boot.listed.is_none()
            || boot.records_left > 0
        {
            return;
        }
        r.checkpoints = r
            .manifest
            .checkpoints
            .iter()
            .filter_map(|c| boot.records.get(&c.key()).cloned())
            .collect();
        let applied = self.applied_index;
        let log_start = r.manifest.log_start();
        if applied + 1 >= log_start {
            boot.step = BootStep::Segments;
            r.progress.phase = BootstrapPhase::ReplayingLog;
            return self.boot_step(now);
        }
        let Some(newest) = r.checkpoints.last().cloned() else {
            return self.fail(format!(
                "the object store's log starts at index {log_start} but no checkpoint covers the \
                 entries before it; refusing to start rather than skip data"
            ));
        };
        if newest.index + 1 < log_start {
            return self.fail(format!(
                "the newest checkpoint {} ends at index {} but the object store's log starts at \
                 {log_start}; refusing to start rather than skip data",
                layout::ckp_key(newest.index, newest.revision),
                newest.index
            ));
        }
        r.progress.phase = BootstrapPhase::LoadingCheckpoint;
        r.progress.files_total = newest.files.len();
        boot.step = BootStep::Checkpoint;
        boot.load = Some((newest, Default::default()));
        self.boot_step(now);
    }

    pub(crate) fn request_checkpoint_files(&mut self) {
        let Some((record, got)) = self
            .remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .and_then(|b| b.load.as_ref())
        else {
            return;
        };
        let wanted: Vec<(usize, String)> = record
            .files
            .iter()
            .enumerate()
            .filter(|(i, _)| !got.contains_key(i))
            .map(|(i, f)| (i, layout::data_key(&f.sha256)))
            .collect();
        if wanted.is_empty() {
            return self.load_checkpoint_files();
        }
        for (i, key) in wanted {
            self.object(Op::DataGet(i), ObjectRequest::Get { key });
        }
    }

    pub(crate) fn on_data_get(
        &mut self,
        now: Instant,
        i: usize,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) else {
            return;
        };
        let Some((record, got)) = &mut boot.load else {
            return;
        };
        let key = layout::data_key(&record.files[i].sha256);
        let ckp = layout::ckp_key(record.index, record.revision);
        match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                got.insert(i, bytes);
                let (done, total) = (got.len(), record.files.len());
                if let Some(r) = &mut self.remote {
                    r.progress.files_loaded = done;
                }
                if done == total {
                    self.load_checkpoint_files();
                }
            }
            Err(ObjectError::NotFound) => self.fail(format!(
                "checkpoint data file {key}, listed by {ckp}, is missing from the object store; \
                 refusing to start rather than skip data (restore the object)"
            )),
            Ok(other) => self.fail(format!("GET {key} answered {other:?}")),
            Err(e) => self.boot_error(now, "reading checkpoint data", e),
        }
    }

    fn load_checkpoint_files(&mut self) {
        let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) else {
            return;
        };
        let Some((record, got)) = boot.load.take() else {
            return;
        };
        let ckp = layout::ckp_key(record.index, record.revision);
        let mut loader = Loader::default();
        for (i, file) in record.files.iter().enumerate() {
            let bytes = got.get(&i).expect("every file was received");
            if let Err(e) = loader.add(&file.sha256, bytes) {
                return self.fail(format!(
                    "checkpoint data file {} (listed by {ckp}) is corrupt: {e}; refusing to start \
                     rather than skip data (restore the object)",
                    layout::data_key(&file.sha256)
                ));
            }
        }
        let image = CheckpointImage {
            index: record.index,
            revision: record.revision,
            compact_revision: record.compact_revision,
            kvs: loader.finish(),
            leases: record.leases.clone(),
            auth: std::sync::Arc::new(record.auth.clone()),
        };
        if let Err(e) = self.store.load_checkpoint(&image) {
            return self.fail(format!("loading checkpoint {ckp} into the store: {e}"));
        }
        self.applied_index = record.index;
        self.next_index = record.index + 1;
        if let Some(r) = &mut self.remote {
            r.progress.applied_index = record.index;
            r.progress.phase = BootstrapPhase::ReplayingLog;
            if let Some(boot) = &mut r.boot {
                boot.applied_from_bucket = true;
                boot.step = BootStep::Segments;
            }
        }
        self.next_segment(Instant::ZERO);
    }

    /// Reads the next manifest segment holding entries after the store's state, or moves on
    /// to the tail chain.
    pub(crate) fn next_segment(&mut self, _now: Instant) {
        let applied = self.applied_index;
        let Some(r) = &mut self.remote else { return };
        let Some(boot) = &mut r.boot else { return };
        while let Some(seg) = r.manifest.segments.get(boot.next_segment) {
            if seg.last <= applied {
                boot.next_segment += 1;
                continue;
            }
            if seg.first > applied + 1 {
                let reason = format!(
                    "log entries {}..{} are missing from the object store (the manifest's \
                     segments jump to {}); refusing to start rather than skip entries",
                    applied + 1,
                    seg.first,
                    layout::seg_key(seg.first, seg.last)
                );
                return self.fail(reason);
            }
            let (first, last) = (seg.first, seg.last);
            self.object(
                Op::SegGet(first, last),
                ObjectRequest::Get {
                    key: layout::seg_key(first, last),
                },
            );
            return;
        }
        boot.step = BootStep::Chain;
        boot.next_tail = r.manifest.merged_through + 1;
        self.request_tail();
    }

    pub(crate) fn on_seg_get(
        &mut self,
        now: Instant,
        first: u64,
        last: u64,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        if !self.boot_at(BootStep::Segments) {
            return;
        }
        let key = layout::seg_key(first, last);
        match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                let entries = match layout::decode_seg(first, last, &bytes) {
                    Ok(e) => e,
                    Err(e) => {
                        return self.fail(format!(
                            "{e}; refusing to start rather than skip entries (restore the object)"
                        ));
                    }
                };
                if let Err(reason) = self.check_not_newer(&key, &entries) {
                    return self.fail(reason);
                }
                for entry in &entries {
                    if let Err(e) = self.apply_from_bucket(entry) {
                        return self.fail(format!("replaying {key}: {e}"));
                    }
                }
                if let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) {
                    boot.next_segment += 1;
                }
                self.next_segment(now);
            }
            Err(ObjectError::NotFound) => self.fail(format!(
                "log segment {key}, listed in the manifest, is missing from the object store; \
                 refusing to start rather than skip entries (restore the object)"
            )),
            Ok(other) => self.fail(format!("GET {key} answered {other:?}")),
            Err(e) => self.boot_error(now, "reading a log segment", e),
        }
    }

    pub(crate) fn request_tail(&mut self) {
        let Some(next) = self
            .remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .map(|b| b.next_tail)
        else {
            return;
        };
        self.object(
            Op::TailGet(next),
            ObjectRequest::Get {
                key: layout::wal_key(next),
            },
        );
    }

    pub(crate) fn on_tail_get(
        &mut self,
        now: Instant,
        index: u64,
        result: Result<ObjectResponse, ObjectError>,
    ) {
        let expected = self
            .remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .is_some_and(|b| b.step == BootStep::Chain && b.next_tail == index);
        if !expected {
            return;
        }
        let key = layout::wal_key(index);
        let allow_missing = self
            .remote
            .as_ref()
            .is_some_and(|r| r.config.allow_missing_objects);
        match result {
            Ok(ObjectResponse::Got { bytes, .. }) => {
                let entries = match layout::decode_tail(index, &bytes) {
                    Ok(e) => e,
                    Err(e) if allow_missing => {
                        if let Some(r) = &mut self.remote {
                            r.progress.skipped.push(e.to_string());
                        }
                        return self.chain_broken(now, index);
                    }
                    Err(e) => {
                        return self.fail(format!(
                            "{e}; refusing to start rather than skip entries (restore the object, \
                             or start with allow_missing_objects to discard the log from here on)"
                        ));
                    }
                };
                if let Err(reason) = self.check_not_newer(&key, &entries) {
                    return self.fail(reason);
                }
                for entry in &entries {
                    if let Err(e) = self.apply_from_bucket(entry) {
                        return self.fail(format!("replaying {key}: {e}"));
                    }
                }
                let last = entries.last().map_or(index, |e| e.index);
                let marker = layout::is_marker(&entries);
                if let Some(r) = &mut self.remote {
                    // The object before a marker is the name its term's older writer would
                    // have created next (a start-up's local upload sits there): keep it too.
                    if marker
                        && let Some(prev) = r.unmerged.back_mut()
                        && prev.last + 1 == index
                    {
                        prev.marker = true;
                    }
                    r.unmerged.push_back(Tail {
                        first: index,
                        last,
                        bytes,
                        marker,
                    });
                    if let Some(boot) = &mut r.boot {
                        boot.next_tail = last + 1;
                    }
                }
                self.request_tail();
            }
            Err(ObjectError::NotFound) => self.chain_end(now, index),
            Ok(other) => self.fail(format!("GET {key} answered {other:?}")),
            Err(e) => self.boot_error(now, "reading a log tail object", e),
        }
    }

    /// The chain ends before `next`: check nothing lies beyond, then fence.
    fn chain_end(&mut self, now: Instant, next: u64) {
        let Some(r) = &mut self.remote else { return };
        let Some(boot) = &mut r.boot else { return };
        if boot.listed.as_ref().is_some_and(|l| l.contains(&next)) {
            // Listed, then gone: only a writer that claimed the manifest after us deletes
            // tails we have not seen merged, so this is not the end of the log. Read the
            // manifest to learn who, and write nothing.
            boot.step = BootStep::Confirm;
            return self.boot_step(now);
        }
        let beyond = boot
            .listed
            .as_ref()
            .and_then(|l| l.range(next + 1..).next().copied());
        if let Some(orphan) = beyond {
            if !r.config.allow_missing_objects {
                return self.fail(format!(
                    "log object {} is missing from the object store: the chain of tail objects \
                     breaks at index {next}, but {} exists after it; refusing to start rather \
                     than skip entries (restore the object, or start with allow_missing_objects \
                     to discard the log after the break)",
                    layout::wal_key(next),
                    layout::wal_key(orphan)
                ));
            }
            if let Some(r) = &mut self.remote {
                r.progress.skipped.push(format!(
                    "{} is missing; the log after it was discarded",
                    layout::wal_key(next)
                ));
            }
            return self.chain_broken(now, next);
        }
        self.log_end_reached(now, next - 1);
    }

    /// `allow_missing_objects`: the log ends before `next`; every later tail object, which can
    /// no longer be replayed, is deleted so the log continues linearly.
    fn chain_broken(&mut self, now: Instant, next: u64) {
        let orphans: Vec<String> = self
            .remote
            .as_ref()
            .and_then(|r| r.boot.as_ref())
            .and_then(|b| b.listed.as_ref())
            .map(|l| l.range(next..).map(|&i| layout::wal_key(i)).collect())
            .unwrap_or_default();
        self.delete_objects(orphans);
        self.log_end_reached(now, next - 1);
    }

    /// The bucket's log ends at `end`: upload what only the local WAL holds, then fence.
    fn log_end_reached(&mut self, _now: Instant, end: u64) {
        let end = end.max(
            self.remote
                .as_ref()
                .map_or(0, |r| r.manifest.merged_through),
        );
        let applied = self.applied_index;
        if applied <= end {
            if let Some(r) = &mut self.remote {
                r.uploaded = end;
            }
            return self.write_marker(end);
        }
        let empty_bucket = end == 0
            && self
                .remote
                .as_ref()
                .is_some_and(|r| r.checkpoints.is_empty() && r.manifest.segments.is_empty());
        let Some(boot) = self.remote.as_mut().and_then(|r| r.boot.as_mut()) else {
            return;
        };
        let complete = (end + 1..=applied).all(|i| boot.local.contains_key(&i));
        if !complete && empty_bucket {
            return self.start_seed();
        }
        let entries: Vec<&LogEntry> = (end + 1..=applied)
            .map_while(|i| boot.local.get(&i))
            .collect();
        if !complete {
            return self.fail(format!(
                "the local data dir is ahead of the object store (it has applied index {applied}, \
                 the bucket's log ends at {end}) but its WAL no longer holds entries {}..={applied} \
                 to upload; this data dir does not belong to this bucket prefix (use it with an \
                 empty prefix, or move the data dir away to rebuild from the bucket)",
                end + 1
            ));
        }
        let bytes = bytes::Bytes::from(layout::encode_tail(entries));
        boot.step = BootStep::Local;
        boot.writing = Some((end + 1, bytes.clone()));
        if let Some(r) = &mut self.remote {
            r.progress.phase = BootstrapPhase::Fencing;
        }
        self.object(
            Op::LocalPut,
            ObjectRequest::Put {
                key: layout::wal_key(end + 1),
                bytes,
                mode: crate::object::PutMode::Create,
            },
        );
    }

    /// A data dir with history meets an empty bucket: publish a checkpoint of the store
    /// first, so the bucket is recoverable before the node acknowledges anything.
    fn start_seed(&mut self) {
        let (leases, auth) = match self
            .store
            .leases()
            .and_then(|l| Ok((l, self.store.auth()?)))
        {
            Ok(x) => x,
            Err(e) => return self.fail(format!("reading leases for the first checkpoint: {e}")),
        };
        let index = self.applied_index;
        let io = self.io_id();
        let Some(r) = &mut self.remote else { return };
        r.progress.phase = BootstrapPhase::SeedingCheckpoint;
        r.building = Some((io, index));
        if let Some(boot) = &mut r.boot {
            boot.step = BootStep::Seed;
        }
        self.actions
            .push_back(crate::core::Action::BuildCheckpoint {
                io,
                spec: crate::checkpoint::BuildSpec {
                    index,
                    leases,
                    auth,
                    previous: None,
                    file_target_bytes: super::publish::FILE_TARGET_BYTES,
                    rebase_percent: super::publish::REBASE_PERCENT,
                },
            });
    }

    /// The seed checkpoint is published: the log continues after it.
    pub(crate) fn seeded(&mut self) {
        let end = self.applied_index;
        if let Some(r) = &mut self.remote {
            r.uploaded = end;
        }
        self.write_marker(end);
    }

    /// The store holds the whole log durably: start serving.
    pub(crate) fn finish_bootstrap(&mut self, now: Instant) {
        let view = self.store.view();
        let mut leases = LeaseTable::default();
        let loaded = self
            .store
            .leases()
            .and_then(|l| Ok((l, self.store.lease_keys()?)));
        let (granted, attached) = match loaded {
            Ok(x) => x,
            Err(e) => return self.fail(format!("reading leases after recovery: {e}")),
        };
        for (id, ttl) in granted {
            leases.grant(id, ttl, now);
        }
        for (id, key) in attached {
            leases.attach(id, &key);
        }
        self.leases = leases;
        match self.store.auth() {
            Ok(auth) => self.auth = auth,
            Err(e) => return self.fail(format!("reading the auth state after recovery: {e}")),
        }
        self.overlay = Overlay::new(view.revision(), view.compact_revision());
        self.applied_index = view.applied_index();
        self.next_index = self.applied_index + 1;
        self.view = Some(view);
        let Some(r) = &mut self.remote else { return };
        // Entries from now on carry the term this node holds in the bucket.
        self.config.term = r.term;
        r.boot = None;
        r.progress.phase = BootstrapPhase::Done;
        r.progress.applied_index = self.applied_index;
        r.uploaded = self.applied_index;
        r.backoff.reset();
        r.last_ckp_at = now;
        r.last_ckp_index = r.checkpoints.last().map_or(0, |c| c.index);
        self.delete_covered_segments();
        self.maybe_flush(now);
    }
}
