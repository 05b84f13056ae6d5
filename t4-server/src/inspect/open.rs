//! Opens a data dir for inspection without changing it: the store is copied to a temporary
//! directory and opened there, and the WAL entries the store has not applied yet are replayed
//! into the copy, so the tools see exactly what `t4 run` would serve.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use bytes::Bytes;
use t4::store::FjallStore;
use t4_core::Store as _;
use t4_core::wal::segment::scan_segment;
use t4_core::wal::{SegmentId, parse_segment_file_name};

/// One local WAL segment file.
#[derive(Debug)]
pub struct WalSegment {
    /// Its file name.
    pub file: String,
    /// Index of its first entry (the segment id).
    pub first_index: u64,
    /// Index of its last entry, if it holds any.
    pub last_index: Option<u64>,
    /// Entries it holds.
    pub entries: usize,
    /// Size in bytes.
    pub bytes: u64,
    /// Whether it ends with a torn (never acknowledged) write.
    pub torn: bool,
}

/// A data dir opened for inspection.
pub struct Inspected {
    /// The store (a private copy, with the WAL replayed).
    pub store: FjallStore,
    /// The `t4-format` file's content, if any.
    pub format: Option<String>,
    /// The store's applied index before the WAL replay.
    pub store_index: u64,
    /// The WAL segments.
    pub wal: Vec<WalSegment>,
    /// WAL entries replayed into the copy (not yet in the store on disk).
    pub replayed: usize,
    /// Keeps the copy alive.
    _copy: tempfile::TempDir,
}

fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry.with_context(|| format!("reading {}", from.display()))?;
        let target = to.join(entry.file_name());
        let kind = entry.file_type().context("reading a file type")?;
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    Ok(())
}

fn read_wal(dir: &Path) -> anyhow::Result<Vec<(SegmentId, String, Bytes)>> {
    let mut segments = Vec::new();
    if !dir.exists() {
        return Ok(segments);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(id) = parse_segment_file_name(&name) else {
            continue;
        };
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("reading {}", entry.path().display()))?;
        segments.push((id, name, Bytes::from(bytes)));
    }
    segments.sort_by_key(|(id, _, _)| *id);
    Ok(segments)
}

/// Opens `data_dir` for inspection; nothing in it is written.
pub fn open(data_dir: &Path) -> anyhow::Result<Inspected> {
    let store_dir: PathBuf = data_dir.join("store");
    anyhow::ensure!(
        store_dir.is_dir(),
        "{} is not a t4 data dir (it has no store/ directory)",
        data_dir.display()
    );
    let format = std::fs::read_to_string(data_dir.join("t4-format"))
        .ok()
        .map(|s| s.trim().to_string());
    let copy = tempfile::tempdir().context("creating a temporary directory for the copy")?;
    copy_dir(&store_dir, &copy.path().join("store"))?;
    let store = FjallStore::open(&copy.path().join("store"))
        .with_context(|| format!("opening a copy of {}", store_dir.display()))?;
    let store_index = t4_core::ReadView::applied_index(&store.view());

    let wal_dir = data_dir.join("wal");
    let files = read_wal(&wal_dir)?;
    let mut wal = Vec::new();
    let last = files.len().saturating_sub(1);
    for (i, (id, file, bytes)) in files.iter().enumerate() {
        let scan = scan_segment(*id, bytes, i == last)
            .with_context(|| format!("the WAL in {} is damaged", wal_dir.display()))?;
        wal.push(WalSegment {
            file: file.clone(),
            first_index: *id,
            last_index: scan.entries.last().map(|e| e.index),
            entries: scan.entries.len(),
            bytes: bytes.len() as u64,
            torn: scan.torn,
        });
    }
    let segments: Vec<(SegmentId, Bytes)> = files
        .into_iter()
        .map(|(id, _, bytes)| (id, bytes))
        .collect();
    let recovery = t4_core::wal::recover(&segments, store_index)
        .with_context(|| format!("the WAL in {} is damaged", wal_dir.display()))?;
    for entry in &recovery.entries {
        store
            .apply(entry)
            .with_context(|| format!("replaying WAL entry {}", entry.index))?;
    }
    Ok(Inspected {
        store,
        format,
        store_index,
        wal,
        replayed: recovery.entries.len(),
        _copy: copy,
    })
}
