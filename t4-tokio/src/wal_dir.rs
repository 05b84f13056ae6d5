//! WAL segment files on the local disk.
//!
//! The core decides what to write and when; this module only performs it: append + fdatasync
//! (plus a directory fsync when a segment is created), truncate a torn tail, delete sealed
//! segments. File names and formats come from [`t4_core::wal`].

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use t4_core::wal::{SegmentId, parse_segment_file_name, segment_file_name};

use crate::error::{Error, Result};

/// The directory of WAL segments, with the segment being appended to.
pub(crate) struct WalDir {
    path: PathBuf,
    active: Option<(SegmentId, File)>,
    /// The segment files in the directory, as this process created and deleted them.
    files: BTreeSet<SegmentId>,
}

fn io_err<'a>(context: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

impl WalDir {
    /// Opens (creating) the directory and reads every segment, sorted by id.
    ///
    /// Every segment and the directory are fsynced first: after a process crash (or a failed
    /// fsync) the files may hold bytes that are only in the page cache, and recovery must not
    /// serve entries that a later power loss could take back.
    pub(crate) fn open(path: &Path) -> Result<(WalDir, Vec<(SegmentId, Bytes)>)> {
        fs::create_dir_all(path).map_err(io_err("creating the WAL directory", path))?;
        let mut segments = Vec::new();
        for entry in fs::read_dir(path).map_err(io_err("listing the WAL directory", path))? {
            let entry = entry.map_err(io_err("listing the WAL directory", path))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(parse_segment_file_name) else {
                continue;
            };
            let file = entry.path();
            File::open(&file)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing a WAL segment before recovery", &file))?;
            let bytes = fs::read(&file).map_err(io_err("reading a WAL segment", &file))?;
            segments.push((id, Bytes::from(bytes)));
        }
        segments.sort_by_key(|(id, _)| *id);
        let dir = WalDir {
            path: path.to_path_buf(),
            active: None,
            files: segments.iter().map(|(id, _)| *id).collect(),
        };
        dir.sync_dir()?;
        Ok((dir, segments))
    }

    fn file(&self, id: SegmentId) -> PathBuf {
        self.path.join(segment_file_name(id))
    }

    /// Number of segment files in the directory.
    pub(crate) fn segment_count(&self) -> usize {
        self.files.len()
    }

    /// Cuts segment `id` to `len` bytes (removing it when `len` is 0), durably.
    pub(crate) fn truncate(&mut self, id: SegmentId, len: u64) -> Result<()> {
        let file = self.file(id);
        if len == 0 {
            fs::remove_file(&file).map_err(io_err("removing a torn WAL segment", &file))?;
            self.files.remove(&id);
        } else {
            let f = OpenOptions::new()
                .write(true)
                .open(&file)
                .map_err(io_err("opening a WAL segment", &file))?;
            f.set_len(len)
                .map_err(io_err("truncating a torn WAL tail", &file))?;
            f.sync_all()
                .map_err(io_err("syncing a WAL segment", &file))?;
        }
        self.sync_dir()
    }

    fn sync_dir(&self) -> Result<()> {
        File::open(&self.path)
            .and_then(|d| d.sync_all())
            .map_err(io_err("syncing the WAL directory", &self.path))
    }

    /// Appends `bytes` to segment `id` (creating it when `create`) and makes them durable.
    pub(crate) fn append(&mut self, id: SegmentId, create: bool, bytes: &[u8]) -> Result<()> {
        if create || self.active.as_ref().is_none_or(|(a, _)| *a != id) {
            let file = self.file(id);
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(create)
                .append(!create)
                .open(&file)
                .map_err(io_err("opening a WAL segment", &file))?;
            self.active = Some((id, f));
            self.files.insert(id);
        }
        let (_, f) = self.active.as_mut().expect("set above");
        let file = self.path.join(segment_file_name(id));
        f.write_all(bytes)
            .map_err(io_err("writing the WAL", &file))?;
        f.sync_data().map_err(io_err("syncing the WAL", &file))?;
        if create {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Deletes a sealed segment.
    pub(crate) fn delete(&mut self, id: SegmentId) -> Result<()> {
        if self.active.as_ref().is_some_and(|(a, _)| *a == id) {
            self.active = None;
        }
        let file = self.file(id);
        match fs::remove_file(&file) {
            Ok(()) => {
                self.files.remove(&id);
                Ok(())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.files.remove(&id);
                Ok(())
            }
            Err(e) => Err(io_err("deleting a WAL segment", &file)(e)),
        }
    }
}
