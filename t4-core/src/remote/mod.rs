//! S3 durability: every decision about the bucket (see `docs/object-store-layout.md` and
//! `docs/durability.md`).
//!
//! The core owns a [`RemoteConfig`] when a bucket is configured. It then takes a writer term
//! at start-up, recovers from the bucket what the local store lacks, uploads every log entry
//! as a tail object (in the batch's critical path in sync mode, in the background in async
//! mode), merges tail objects into sealed segments, publishes checkpoints and collects garbage.
//! The adapter only performs [`crate::Action::Object`] requests and reports their answers.
//!
//! Files by concern: [`layout`] (names and records), `writer` (term acquisition and fencing),
//! `upload` (the tail-object pipeline), `merge`, `publish` (checkpoints), `gc`, `bootstrap`
//! (recovery from the bucket), `retry` (backoff).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;

use crate::checkpoint::Built;
use crate::core::{IoId, RequestId};
use crate::object::ETag;
use crate::time::Instant;
use crate::wal::LogEntry;

mod bootstrap;
mod dispatch;
mod gc;
pub mod layout;
mod merge;
mod publish;
mod retry;
mod upload;
mod writer;

use layout::{CheckpointRecord, Manifest, WriterRecord};
use retry::Backoff;

/// How the node uses the bucket. [`RemoteConfig::default`] gives the documented defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteConfig {
    /// Who this node is; recorded in the writer record. A node refuses a prefix whose writer
    /// record names another node unless [`RemoteConfig::takeover`] is set.
    pub node_id: String,
    /// Take the prefix over even if the writer record names another node.
    pub takeover: bool,
    /// Acknowledge a write only once the batch holding it is in the bucket (default). When
    /// false, writes are acknowledged after the local fsync and uploaded in the background.
    pub sync_upload: bool,
    /// Async mode: upload pending entries once the oldest has waited this long.
    pub upload_max_delay: Duration,
    /// Async mode: upload pending entries once they reach this many bytes.
    pub upload_max_bytes: u64,
    /// Merge tail objects into a segment once at least this many are unmerged.
    pub merge_min_objects: usize,
    /// Take a checkpoint when this long has passed since the last one (and entries were
    /// written since).
    pub checkpoint_interval: Duration,
    /// Take a checkpoint once this many entries were written since the last one.
    pub checkpoint_entries: u64,
    /// Checkpoints kept in the bucket (at least 1).
    pub checkpoint_retain: usize,
    /// Recovery override: skip missing or corrupt objects instead of stopping. Loses data;
    /// only for salvaging a damaged bucket.
    pub allow_missing_objects: bool,
    /// First retry delay after the bucket was unavailable.
    pub retry_min: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
}

impl Default for RemoteConfig {
    fn default() -> RemoteConfig {
        RemoteConfig {
            node_id: "t4".to_string(),
            takeover: false,
            sync_upload: true,
            upload_max_delay: Duration::from_millis(100),
            upload_max_bytes: 8 << 20,
            merge_min_objects: 64,
            checkpoint_interval: Duration::from_secs(15 * 60),
            checkpoint_entries: 100_000,
            checkpoint_retain: 2,
            allow_missing_objects: false,
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// A checkpoint published in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Index of the last log entry it covers.
    pub index: u64,
    /// The store revision it holds.
    pub revision: crate::Revision,
    /// Bytes uploaded for it (new data files and the index object).
    pub uploaded_bytes: u64,
}

/// Where recovery from the bucket stands; see [`crate::Core::bootstrap_progress`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootstrapProgress {
    /// What recovery is doing now.
    pub phase: BootstrapPhase,
    /// Checkpoint data files loaded / to load.
    pub files_loaded: usize,
    /// Checkpoint data files to load.
    pub files_total: usize,
    /// Log entries applied from the bucket.
    pub entries_applied: u64,
    /// Index of the last entry applied so far.
    pub applied_index: u64,
    /// Objects skipped because `allow_missing_objects` was set (data lost), with why.
    pub skipped: Vec<String>,
}

/// The phases of start-up with a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BootstrapPhase {
    /// Taking the writer record.
    #[default]
    AcquiringTerm,
    /// Reading the manifest and the object listing.
    ReadingManifest,
    /// Loading the newest checkpoint.
    LoadingCheckpoint,
    /// Replaying log objects after the local store's state.
    ReplayingLog,
    /// Uploading local entries the bucket lacks, writing the term-start marker.
    Fencing,
    /// The bucket is empty but the local store is not: publishing a first checkpoint of it.
    SeedingCheckpoint,
    /// Persisting the store before serving.
    Persisting,
    /// Serving.
    Done,
}

/// One tail object of the chain not yet merged into a segment.
#[derive(Clone, Debug)]
pub(crate) struct Tail {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) bytes: Bytes,
    /// Never deleted, also after merging (the manifest lists it in `fences`): a term-start
    /// marker, or the object just before one (a start-up's upload of local entries is
    /// there). Each is the name an older writer would create next, so it must stay taken.
    pub(crate) marker: bool,
}

/// The tail object being uploaded.
#[derive(Debug)]
pub(crate) struct Upload {
    pub(crate) first: u64,
    pub(crate) last: u64,
    pub(crate) bytes: Bytes,
    /// A PUT of it may have happened although it failed: read before writing again.
    pub(crate) unknown: bool,
    /// A request is outstanding.
    pub(crate) busy: bool,
}

/// What an outstanding object request is for.
#[derive(Debug)]
pub(crate) enum Op {
    WriterGet,
    WriterPut(WriterRecord),
    ManifestGet,
    ManifestClaim(Box<Manifest>),
    WalList,
    RecordGet(String),
    DataGet(usize),
    SegGet(u64, u64),
    TailGet(u64),
    LocalPut,
    LocalGet,
    MarkerPut,
    MarkerGet,
    ManifestConfirm,
    UploadPut,
    UploadGet,
    MergeSegPut,
    MergeSegGet,
    ManifestPut(Box<Manifest>),
    ManifestReGet,
    Delete,
    SweepList,
    SweepManifest,
    DataPut,
    RecordPut,
}

/// Start-up with a bucket.
#[derive(Debug, Default)]
pub(crate) struct Boot {
    pub(crate) step: BootStep,
    /// Write conflicts on the writer record so far.
    pub(crate) conflicts: u32,
    /// A writer record we tried to write whose outcome is unknown.
    pub(crate) claimed: Option<WriterRecord>,
    /// The manifest has been read.
    pub(crate) manifest_read: bool,
    /// Keys of the checkpoint records the manifest lists.
    pub(crate) records_wanted: Vec<String>,
    /// `wal/` names in the bucket.
    pub(crate) listed: Option<BTreeSet<u64>>,
    /// Checkpoint records still being fetched.
    pub(crate) records_left: usize,
    pub(crate) records: BTreeMap<String, CheckpointRecord>,
    /// The checkpoint being loaded, its files received so far.
    pub(crate) load: Option<(CheckpointRecord, BTreeMap<usize, Bytes>)>,
    /// Index of the next segment of the manifest to replay.
    pub(crate) next_segment: usize,
    /// The tail object name to read next.
    pub(crate) next_tail: u64,
    /// Local WAL entries (the store has applied them), by index.
    pub(crate) local: BTreeMap<u64, LogEntry>,
    /// Entries the store got from the bucket rather than the local WAL.
    pub(crate) applied_from_bucket: bool,
    /// The local-only upload or marker being written.
    pub(crate) writing: Option<(u64, Bytes)>,
    /// When to retry the current step.
    pub(crate) retry_at: Option<Instant>,
}

/// The steps of start-up with a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum BootStep {
    #[default]
    Writer,
    Manifest,
    Checkpoint,
    Segments,
    Chain,
    Local,
    Marker,
    /// The marker is in the bucket: re-read the manifest to check no newer term claimed it
    /// meanwhile (the marker's name may have been one a newer writer merged and deleted).
    Confirm,
    Seed,
    Persist,
}

/// The maintenance task (merge or checkpoint publication) in progress: one at a time, as
/// both advance the manifest.
#[derive(Debug)]
pub(crate) enum Maint {
    /// Merging `count` unmerged tails into `seg/<first>-<last>`.
    Merge {
        first: u64,
        last: u64,
        count: usize,
        bytes: Bytes,
    },
    /// After a publication: listing `ckp/`, `seg/` and `data/` to delete what nothing
    /// references any more (leftovers of failed or interrupted requests).
    Sweep {
        /// Listings still to come.
        lists_left: usize,
        /// Keys listed so far.
        listed: Vec<String>,
    },
    /// Publishing a built checkpoint.
    Publish {
        built: Box<Built>,
        record: Box<CheckpointRecord>,
        files_left: usize,
        /// A file upload failed: retry the publication once all have answered.
        files_failed: bool,
        uploaded_bytes: u64,
        /// Segments the new manifest no longer lists, deleted once it is written.
        drop_segments: Vec<layout::SegmentRef>,
    },
}

/// The core's state of the bucket.
#[derive(Debug)]
pub(crate) struct Remote {
    pub(crate) config: RemoteConfig,
    pub(crate) boot: Option<Boot>,
    pub(crate) progress: BootstrapProgress,
    pub(crate) term: u64,
    pub(crate) manifest: Manifest,
    pub(crate) manifest_etag: Option<ETag>,
    /// The manifest may have changed under us (a failed or conflicting update).
    pub(crate) manifest_stale: bool,
    pub(crate) ops: BTreeMap<IoId, Op>,
    pub(crate) backoff: Backoff,
    /// Index of the last entry in the bucket.
    pub(crate) uploaded: u64,
    /// Entries decided and not yet uploaded, with their frames.
    pub(crate) pending: VecDeque<(u64, Bytes)>,
    pub(crate) pending_bytes: u64,
    pub(crate) pending_since: Option<Instant>,
    pub(crate) upload: Option<Upload>,
    /// Why the bucket is failing, while it is.
    pub(crate) outage: Option<String>,
    pub(crate) upload_retry_at: Option<Instant>,
    pub(crate) unmerged: VecDeque<Tail>,
    pub(crate) maint: Option<Maint>,
    pub(crate) maint_retry_at: Option<Instant>,
    /// A maintenance request (or a manifest re-read) is outstanding.
    pub(crate) maint_busy: bool,
    /// Retained checkpoints, oldest first.
    pub(crate) checkpoints: Vec<CheckpointRecord>,
    pub(crate) building: Option<(IoId, u64)>,
    pub(crate) built: Option<Box<Built>>,
    pub(crate) ckp_waiters: Vec<RequestId>,
    pub(crate) ckp_demanded: bool,
    pub(crate) last_ckp_at: Instant,
    pub(crate) last_ckp_index: u64,
    pub(crate) ckp_retry_at: Option<Instant>,
    pub(crate) last_published: Option<CheckpointInfo>,
}

impl Remote {
    pub(crate) fn new(
        config: RemoteConfig,
        seed: u64,
        local: Vec<LogEntry>,
        now: Instant,
    ) -> Remote {
        Remote {
            backoff: Backoff::new(config.retry_min, config.retry_max, seed),
            config,
            boot: Some(Boot {
                local: local.into_iter().map(|e| (e.index, e)).collect(),
                ..Default::default()
            }),
            progress: BootstrapProgress::default(),
            term: 0,
            manifest: Manifest::default(),
            manifest_etag: None,
            manifest_stale: false,
            ops: BTreeMap::new(),
            uploaded: 0,
            pending: VecDeque::new(),
            pending_bytes: 0,
            pending_since: None,
            upload: None,
            outage: None,
            upload_retry_at: None,
            unmerged: VecDeque::new(),
            maint: None,
            maint_retry_at: None,
            maint_busy: false,
            checkpoints: Vec::new(),
            building: None,
            built: None,
            ckp_waiters: Vec::new(),
            ckp_demanded: false,
            last_ckp_at: now,
            last_ckp_index: 0,
            ckp_retry_at: None,
            last_published: None,
        }
    }

    /// Whether start-up is over.
    pub(crate) fn is_serving(&self) -> bool {
        self.boot.is_none()
    }

    /// Whether the open batch must wait: during start-up, and in sync mode while the bucket
    /// fails (nothing new is decided durable until it answers).
    pub(crate) fn holds_flush(&self) -> bool {
        !self.is_serving() || (self.config.sync_upload && self.outage.is_some())
    }

    /// Whether start-up waits for the store to persist.
    pub(crate) fn wants_persist(&self) -> bool {
        self.boot
            .as_ref()
            .is_some_and(|b| b.step == BootStep::Persist)
    }

    /// Queues a decided entry's frame for upload.
    pub(crate) fn enqueue(&mut self, index: u64, frame: Bytes, now: Instant) {
        if self.pending.is_empty() {
            self.pending_since = Some(now);
        }
        self.pending_bytes += frame.len() as u64;
        self.pending.push_back((index, frame));
    }
}

impl<S: crate::Store> crate::Core<S> {
    /// Entries acknowledged or decided but not yet in the bucket: with async upload, what
    /// losing the machine would lose (the loss-window metric). 0 without a bucket.
    pub fn unuploaded_entries(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| {
            r.pending.len() as u64 + r.upload.as_ref().map_or(0, |u| u.last - u.first + 1)
        })
    }

    /// Bytes of [`crate::Core::unuploaded_entries`].
    pub fn unuploaded_bytes(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| {
            r.pending_bytes + r.upload.as_ref().map_or(0, |u| u.bytes.len() as u64)
        })
    }

    /// Index of the last log entry known to be in the bucket.
    pub fn uploaded_index(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.uploaded)
    }

    /// Why the bucket is failing, while it is (writes then fail fast in sync mode).
    pub fn object_store_outage(&self) -> Option<&str> {
        self.remote.as_ref().and_then(|r| r.outage.as_deref())
    }

    /// Where start-up from the bucket stands (phase `Done` once serving).
    pub fn bootstrap_progress(&self) -> BootstrapProgress {
        self.remote.as_ref().map_or_else(
            || BootstrapProgress {
                phase: BootstrapPhase::Done,
                ..Default::default()
            },
            |r| r.progress.clone(),
        )
    }

    /// The writer term held in the bucket (0 without a bucket or before it is taken).
    pub fn remote_term(&self) -> u64 {
        self.remote.as_ref().map_or(0, |r| r.term)
    }

    /// The newest checkpoint this node published.
    pub fn last_checkpoint(&self) -> Option<&CheckpointInfo> {
        self.remote.as_ref().and_then(|r| r.last_published.as_ref())
    }
}

#[cfg(test)]
mod tests;
