//! WAL segment files on the local disk.
//!
//! The core decides what to write and when; this module only performs it: a durable append
//! (plus a directory fsync when a segment is created), truncate a torn tail, delete sealed
//! segments. File names and formats come from [`t4_core::wal`].
//!
//! A new segment is preallocated (`fallocate`) to its maximum size and written in place, so
//! the file's size does not change with each append and `fdatasync` need not write the inode
//! every time (measured on ext4: ~200 µs per append-and-sync → ~140 µs; see
//! docs/benchmarks.md). Space that `fallocate` reserves is still *unwritten* to the file
//! system: the first write into each block converts it, and that conversion is metadata the
//! next `fdatasync` must write too (an extra write the sync waits for, on every append that
//! reaches a new block). So appends keep [`ZERO_AHEAD`] bytes of real zeros written ahead of
//! the log's end, a chunk at a time, flushed by the same `fdatasync` as the append that writes
//! them: one conversion per chunk instead of one per block. The space after the last entry
//! reads as zeros either way, which recovery treats as the end of the log (no valid frame
//! follows). A segment is cut to its written length before the next one is created and when
//! the directory is closed, so only the last segment can ever be longer than what it holds,
//! and only after a crash.
//!
//! Where the file system takes them, a new segment is appended to with direct, synchronous
//! writes of whole blocks (`Direct`: `O_DIRECT | O_DSYNC`) instead of `pwrite` and
//! `fdatasync`; the zeros ahead are written the same way. Each append rewrites the segment's
//! last, partly written block with the same bytes it already held, as the page cache's
//! writeback of a partly written page does, so a torn write leaves each sector either as it
//! was or as it is meant to be, both holding every byte acknowledged before.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use t4_core::wal::{SegmentId, parse_segment_file_name, segment_file_name};

use crate::error::{Error, Result};

/// Bytes of zeros written at a time ahead of the log's end, up to the preallocated size; a
/// new chunk is written when less than half of one is left after an append.
const ZERO_AHEAD: u64 = 1 << 20;

/// The zeros written ahead (static: too large for a task's stack), aligned for direct writes.
static ZEROS: Aligned<{ ZERO_AHEAD as usize }> = Aligned([0; ZERO_AHEAD as usize]);

/// Bytes at a [`BLOCK`]-aligned address.
#[repr(C, align(4096))]
struct Aligned<const N: usize>([u8; N]);

/// What direct writes are aligned to: file offsets, lengths and memory addresses. A multiple
/// of the logical block size of the devices we run on (512 bytes or 4 KiB).
const BLOCK: u64 = 4096;

/// The directory of WAL segments, with the segment being appended to.
pub(crate) struct WalDir {
    path: PathBuf,
    active: Option<Active>,
    /// The segment files in the directory, as this process created and deleted them.
    files: BTreeSet<SegmentId>,
    /// Bytes to preallocate for a new segment (0: none).
    preallocate: u64,
}

/// The segment being appended to.
struct Active {
    id: SegmentId,
    file: File,
    /// The same file opened for direct, synchronous writes, when the file system allows:
    /// appends then write whole blocks that are durable when the write returns (`Direct`).
    direct: Option<Direct>,
    /// Where the next append goes: the length of what the segment holds.
    len: u64,
    /// The file's size when that is more than `len` (preallocated space); else 0.
    allocated: u64,
    /// Where the zeros written ahead of `len` end (`len` when there are none).
    zeroed: u64,
}

/// Direct writes (`O_DIRECT | O_DSYNC`) to the active segment: each append rewrites the
/// segment's last, partly written block with the new bytes after it, padded with zeros to
/// whole blocks, in one write that is durable when it returns. No page cache and no
/// separate `fdatasync`: measured on ext4 in a VM, a 415-byte append went from 74–81 µs
/// (`pwrite` + `fdatasync`) to 62–68 µs p50, and the kernel no longer runs its writeback
/// path for each append (docs/benchmarks.md). The zeros after the new bytes in their last
/// block read as the end of the log, as preallocated space does.
struct Direct {
    file: File,
    /// The bytes from the start of the block that holds the segment's end up to the end.
    tail: Vec<u8>,
    /// Where each write is assembled: over-allocated so that a [`BLOCK`]-aligned part of it
    /// holds the write (direct writes need aligned memory).
    buf: Vec<u8>,
}

impl Direct {
    /// Opens the new, empty segment at `path` for direct writes; `None` where the file
    /// system refuses them (tmpfs).
    fn open(path: &Path) -> Option<Direct> {
        let flags = rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::DSYNC;
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(flags.bits() as i32)
            .open(path)
            .map_err(|e| tracing::debug!(error = %e, "no direct writes to WAL segments here"))
            .ok()?;
        Some(Direct {
            file,
            tail: Vec::new(),
            buf: Vec::new(),
        })
    }

    /// Writes `bytes` at `len`, the segment's end, durably.
    fn append(&mut self, len: u64, bytes: &[u8]) -> std::io::Result<()> {
        let start = len - self.tail.len() as u64;
        let total = self.tail.len() + bytes.len();
        let padded = total.next_multiple_of(BLOCK as usize);
        if self.buf.len() < padded + BLOCK as usize {
            self.buf = vec![0; padded + BLOCK as usize];
        }
        let at = self.buf.as_ptr().align_offset(BLOCK as usize);
        let out = &mut self.buf[at..at + padded];
        out[..self.tail.len()].copy_from_slice(&self.tail);
        out[self.tail.len()..total].copy_from_slice(bytes);
        out[total..].fill(0);
        self.file.write_all_at(out, start)?;
        let kept = total % BLOCK as usize;
        self.tail.clear();
        self.tail.extend_from_slice(&out[total - kept..total]);
        Ok(())
    }

    /// Writes zeros over `from..to` (both [`BLOCK`]-aligned), durably.
    fn zero(&self, from: u64, to: u64) -> std::io::Result<()> {
        self.file
            .write_all_at(&ZEROS.0[..(to - from) as usize], from)
    }
}

impl Active {
    /// Writes `bytes` at the segment's end; returns whether they are durable already (a
    /// direct write), or wait for `sync_data`.
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<bool> {
        if let Some(direct) = &mut self.direct {
            match direct.append(self.len, bytes) {
                Ok(()) => {
                    self.len += bytes.len() as u64;
                    return Ok(true);
                }
                // Refused before anything was written (an alignment the file system does
                // not take): appends to this segment go through the page cache instead.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    tracing::warn!(error = %e, "direct writes to the WAL refused; using buffered writes and fdatasync");
                    self.direct = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(bytes, self.len)?;
        self.len += bytes.len() as u64;
        Ok(false)
    }

    /// The zeros to write ahead of the log's end after an append, if any: a chunk once less
    /// than half of one is left, whole blocks for direct writes (from the block after the
    /// one the log ends in). Never past the preallocated size: zeros there would only make
    /// the file longer (they do make it longer where `fallocate` is not supported: then the
    /// file's size, too, changes once per chunk instead of with every append).
    fn zeros_ahead(&self, preallocate: u64) -> Option<(u64, u64)> {
        let block = if self.direct.is_some() { BLOCK } else { 1 };
        let from = self.zeroed.max(self.len).next_multiple_of(block);
        let to = (from + ZERO_AHEAD).min(preallocate) / block * block;
        (self.len + ZERO_AHEAD / 2 > self.zeroed && to > from).then_some((from, to))
    }

    /// Writes zeros over `from..to`, the way the segment's appends are written.
    fn write_zeros(&self, from: u64, to: u64) -> std::io::Result<()> {
        match &self.direct {
            Some(direct) => direct.zero(from, to),
            None => self
                .file
                .write_all_at(&ZEROS.0[..(to - from) as usize], from),
        }
    }
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
    /// New segments are preallocated to `preallocate` bytes (0: none).
    pub(crate) fn open(path: &Path, preallocate: u64) -> Result<(WalDir, Vec<(SegmentId, Bytes)>)> {
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
            preallocate,
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
        if create || self.active.as_ref().is_none_or(|a| a.id != id) {
            // Only the newest segment may end in preallocated space.
            self.cut_active()?;
            let file = self.file(id);
            let f = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(create)
                .open(&file)
                .map_err(io_err("opening a WAL segment", &file))?;
            let len = f
                .metadata()
                .map_err(io_err("reading a WAL segment's size", &file))?
                .len();
            self.files.insert(id);
            let allocated = if create && self.preallocate > 0 {
                preallocate(&f, self.preallocate)
            } else {
                0
            };
            // Only for a new, preallocated segment: its blocks are the log's alone.
            let direct = if allocated > 0 && len == 0 {
                Direct::open(&file)
            } else {
                None
            };
            self.active = Some(Active {
                id,
                file: f,
                direct,
                len,
                allocated,
                zeroed: len,
            });
        }
        let file = self.file(id);
        let active = self.active.as_mut().expect("set above");
        let durable = active
            .write(bytes)
            .map_err(io_err("writing the WAL", &file))?;
        if let Some((from, to)) = active.zeros_ahead(self.preallocate) {
            active
                .write_zeros(from, to)
                .map_err(io_err("writing zeros ahead in the WAL", &file))?;
            active.zeroed = to;
            active.allocated = active.allocated.max(to);
        }
        if !durable {
            active
                .file
                .sync_data()
                .map_err(io_err("syncing the WAL", &file))?;
        }
        if create {
            self.sync_dir()?;
        }
        Ok(())
    }

    /// Cuts the active segment's preallocated space after what it holds, durably.
    fn cut_active(&mut self) -> Result<()> {
        let Some(active) = self.active.as_mut() else {
            return Ok(());
        };
        if active.allocated > active.len {
            let file = self.path.join(segment_file_name(active.id));
            active
                .file
                .set_len(active.len)
                .and_then(|()| active.file.sync_all())
                .map_err(io_err("cutting a WAL segment's preallocated space", &file))?;
            active.allocated = 0;
        }
        Ok(())
    }

    /// Deletes a sealed segment.
    pub(crate) fn delete(&mut self, id: SegmentId) -> Result<()> {
        if self.active.as_ref().is_some_and(|a| a.id == id) {
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

impl Drop for WalDir {
    /// A clean close leaves every segment exactly as long as what it holds.
    fn drop(&mut self) {
        if let Err(e) = self.cut_active() {
            tracing::warn!(error = %e, "could not cut the WAL segment's preallocated space; the next start does");
        }
    }
}

/// Reserves `len` bytes for a new, empty segment file; returns the size reserved (0 when the
/// file system cannot: the segment then grows with each append, only slower to sync).
fn preallocate(file: &File, len: u64) -> u64 {
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => len,
        Err(e) => {
            tracing::debug!(error = %e, "cannot preallocate WAL segments on this file system");
            0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use t4_core::wal::{LogEntry, encode_entry_frame, encode_segment_header, recover};

    const PREALLOCATE: u64 = 1 << 20;

    /// The bytes of entries `first..first + n` (no ops), the first one with the header.
    fn appends(first: u64, n: u64) -> Vec<Vec<u8>> {
        (first..first + n)
            .map(|index| {
                let frame = encode_entry_frame(&LogEntry {
                    index,
                    term: 1,
                    ops: Vec::new(),
                });
                if index == first {
                    let mut bytes = encode_segment_header(first).to_vec();
                    bytes.extend_from_slice(&frame);
                    bytes
                } else {
                    frame
                }
            })
            .collect()
    }

    fn write(wal: &mut WalDir, first: u64, n: u64) -> u64 {
        let mut len = 0;
        for (i, bytes) in appends(first, n).iter().enumerate() {
            wal.append(first, i == 0, bytes).unwrap();
            len += bytes.len() as u64;
        }
        len
    }

    fn file_len(dir: &Path, id: SegmentId) -> u64 {
        fs::metadata(dir.join(segment_file_name(id))).unwrap().len()
    }

    #[test]
    fn a_new_segment_is_preallocated_and_cut_when_the_next_one_starts() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        let len = write(&mut wal, 1, 5);
        assert_eq!(file_len(dir.path(), 1), PREALLOCATE, "preallocated");
        write(&mut wal, 6, 1);
        assert_eq!(
            file_len(dir.path(), 1),
            len,
            "cut before segment 6 was created"
        );
        assert_eq!(file_len(dir.path(), 6), PREALLOCATE);
        drop(wal);
        assert!(file_len(dir.path(), 6) < PREALLOCATE, "cut at close");
    }

    /// Where the first hole at or after 0 is: unwritten (`fallocate`d) space counts as one on
    /// ext4, xfs and btrfs.
    fn first_hole(dir: &Path, id: SegmentId) -> u64 {
        let file = File::open(dir.join(segment_file_name(id))).unwrap();
        rustix::fs::seek(&file, rustix::fs::SeekFrom::Hole(0)).unwrap()
    }

    #[test]
    fn appends_keep_zeros_written_ahead_of_the_end_of_the_log() {
        const LARGE: u64 = 8 * ZERO_AHEAD;
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalDir::open(dir.path(), LARGE).unwrap();
        let len = write(&mut wal, 1, 5);
        let hole = first_hole(dir.path(), 1);
        assert!(
            hole < LARGE,
            "the file system reports the preallocated space that was never written as a hole \
             (this test needs ext4, xfs or btrfs): first hole at {hole}"
        );
        assert!(
            hole >= len + ZERO_AHEAD / 2,
            "zeros are written ahead of the log's end {len}: first hole at {hole}"
        );
        // Appends past half of the chunk write the next one.
        let big = vec![7u8; (ZERO_AHEAD * 3 / 4) as usize];
        wal.append(1, false, &big).unwrap();
        let end = len + big.len() as u64;
        let next = first_hole(dir.path(), 1);
        assert!(
            next >= end + ZERO_AHEAD / 2 && next < LARGE,
            "the next chunk follows the log's end {end}: first hole at {next}"
        );
        // What a crash leaves reads as the end of the log, zeros and unwritten space alike.
        std::mem::forget(wal);
        let (_, segments) = WalDir::open(dir.path(), LARGE).unwrap();
        assert_eq!(segments[0].1.len() as u64, LARGE);
        assert!(segments[0].1[end as usize..].iter().all(|b| *b == 0));
    }

    /// Whether `dir`'s file system takes direct, synchronous writes (tmpfs does not).
    fn takes_direct_writes(dir: &Path) -> bool {
        let probe = dir.join("probe");
        File::create(&probe).unwrap();
        let flags = rustix::fs::OFlags::DIRECT | rustix::fs::OFlags::DSYNC;
        OpenOptions::new()
            .write(true)
            .custom_flags(flags.bits() as i32)
            .open(&probe)
            .is_ok()
    }

    #[test]
    fn appends_go_through_direct_writes_where_the_file_system_takes_them() {
        let dir = tempfile::tempdir().unwrap();
        let direct = takes_direct_writes(dir.path());
        let (mut wal, _) = WalDir::open(&dir.path().join("wal"), PREALLOCATE).unwrap();
        write(&mut wal, 1, 3);
        assert_eq!(
            wal.active.as_ref().unwrap().direct.is_some(),
            direct,
            "direct writes are used exactly where the file system takes them"
        );
    }

    /// Appends of every size, across block boundaries and larger than a block, read back
    /// exactly, followed by zeros, with the direct writes (where available) and without.
    #[test]
    fn appends_of_any_size_read_back_exactly() {
        for direct in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (mut wal, _) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
            let mut expected = Vec::new();
            // Sizes chosen to end inside a block, exactly on a block's end, and to span
            // several blocks.
            let sizes = [1usize, 415, 3680, 4096, 1, 4095, 9000, 17, 8192, 100];
            for (i, size) in sizes.into_iter().enumerate() {
                let bytes: Vec<u8> = (0..size).map(|j| (i * 31 + j) as u8 | 1).collect();
                wal.append(1, i == 0, &bytes).unwrap();
                if i == 0 && !direct {
                    wal.active.as_mut().unwrap().direct = None;
                }
                expected.extend_from_slice(&bytes);
            }
            // A crash: nothing cuts the segment.
            std::mem::forget(wal);
            let (_, segments) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
            let got = &segments[0].1;
            assert_eq!(&got[..expected.len()], &expected[..], "direct: {direct}");
            assert!(
                got[expected.len()..].iter().all(|b| *b == 0),
                "direct: {direct}"
            );
        }
    }

    #[test]
    fn a_reopened_segment_takes_appends_after_its_last_partial_block() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        let first = write(&mut wal, 1, 7);
        drop(wal);
        // Reopened without `create`: the segment is appended to where it ends.
        let (mut wal, segments) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        assert_eq!(segments[0].1.len() as u64, first);
        let all = appends(1, 10);
        for bytes in &all[7..] {
            wal.append(1, false, bytes).unwrap();
        }
        drop(wal);
        let (_, segments) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        let recovery = recover(&segments, 0).unwrap();
        assert_eq!(recovery.entries.len(), 10);
    }

    #[test]
    fn preallocated_space_left_by_a_crash_reads_as_the_end_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (mut wal, _) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        let len = write(&mut wal, 1, 10);
        // A crash: nothing cuts the segment.
        std::mem::forget(wal);
        let (mut wal, segments) = WalDir::open(dir.path(), PREALLOCATE).unwrap();
        assert_eq!(segments[0].1.len() as u64, PREALLOCATE);
        let recovery = recover(&segments, 0).unwrap();
        assert_eq!(recovery.entries.len(), 10, "every entry is recovered");
        assert_eq!(recovery.truncate, Some((1, len)), "the zeros are cut");
        wal.truncate(1, len).unwrap();
        assert_eq!(file_len(dir.path(), 1), len);
    }
}
