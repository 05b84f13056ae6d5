//! A simulated local disk with the failure semantics of a real one.
//!
//! * Writes land in the page cache: reads see them at once, but they are **durable only
//!   after an fsync** of the file. A crash keeps, for each file, a random prefix of its
//!   unsynced writes, and the last write kept may be **torn** at a random byte (optionally
//!   followed by a few bytes of garbage, as a half-written sector leaves).
//! * Creating and deleting files changes the directory, which is durable only after a
//!   **directory sync**; a crash keeps a random prefix of the unsynced directory changes
//!   (so a deleted file can come back, and a created one can vanish).
//! * **fsync can fail.** The data it covered stays unsynced: after a crash it may or may not
//!   be there, in part or whole, exactly as on a real machine after EIO.
//! * A **lying** disk acknowledges fsync without making anything durable (a drive with a
//!   volatile write cache that ignores flushes). The simulator must catch a node running on it.
//! * IO takes time: most syncs take tens of microseconds to a few milliseconds, a few are
//!   **slow** (up to seconds).
//! * The whole disk can be **lost** (a new machine): the owner replaces it with a fresh one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::Bytes;

use crate::rng::SimRng;

/// How a disk behaves; chosen per run by the fault plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskConfig {
    /// Usual fsync latency bounds, in nanoseconds (log-uniform between them).
    pub sync_latency: (u64, u64),
    /// Chance of a slow IO, in parts per million.
    pub slow_ppm: u32,
    /// Latency bounds of a slow IO, in nanoseconds.
    pub slow_latency: (u64, u64),
    /// Chance that an fsync fails, in parts per million.
    pub fsync_fail_ppm: u32,
    /// Acknowledge fsync without making anything durable.
    pub lying: bool,
    /// Chance that a crash keeps garbage after a torn write, in parts per million.
    pub garbage_ppm: u32,
}

impl Default for DiskConfig {
    fn default() -> DiskConfig {
        DiskConfig {
            sync_latency: (50_000, 2_000_000),
            slow_ppm: 0,
            slow_latency: (50_000_000, 2_000_000_000),
            fsync_fail_ppm: 0,
            lying: false,
            garbage_ppm: 300_000,
        }
    }
}

/// An IO error reported by the disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskError(pub String);

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Debug)]
enum DataOp {
    Write(Bytes),
    SetLen(usize),
}

#[derive(Clone, Debug)]
enum DirOp {
    Create(String),
    Remove(String),
}

#[derive(Clone, Debug, Default)]
struct File {
    /// What reads see.
    visible: Vec<u8>,
    /// What a crash is sure to keep.
    durable: Vec<u8>,
    /// Changes since the last successful fsync, oldest first.
    pending: Vec<DataOp>,
}

/// What a crash did to the disk, for the trace and the fault schedule.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CrashReport {
    /// Files whose unsynced writes were dropped (in part or whole), with bytes lost.
    pub lost: Vec<(String, usize)>,
    /// Files whose last surviving write was torn, with the byte offset of the tear.
    pub torn: Vec<(String, usize)>,
    /// Unsynced creations or deletions that were undone.
    pub dir_undone: usize,
}

/// One machine's disk.
#[derive(Debug)]
pub struct SimDisk {
    rng: SimRng,
    config: DiskConfig,
    /// Files by name, as reads see the directory.
    files: BTreeMap<String, File>,
    /// Names a crash is sure to keep.
    durable_names: BTreeSet<String>,
    /// Directory changes since the last directory sync.
    dir_pending: Vec<DirOp>,
    /// Contents of files removed from the directory but not durably (a crash may bring
    /// them back).
    removed: BTreeMap<String, File>,
    /// Number of fsyncs that failed.
    pub failed_syncs: u64,
    /// Number of fsyncs acknowledged without effect (lying disk).
    pub lies: u64,
}

impl SimDisk {
    /// An empty disk.
    pub fn new(rng: SimRng, config: DiskConfig) -> SimDisk {
        SimDisk {
            rng,
            config,
            files: BTreeMap::new(),
            durable_names: BTreeSet::new(),
            dir_pending: Vec::new(),
            removed: BTreeMap::new(),
            failed_syncs: 0,
            lies: 0,
        }
    }

    /// The disk's configuration.
    pub fn config(&self) -> &DiskConfig {
        &self.config
    }

    /// A fresh, empty disk with the same behaviour (the old one was lost).
    pub fn replaced(&mut self) -> SimDisk {
        SimDisk::new(self.rng.fork(), self.config.clone())
    }

    /// Names of the files present, sorted.
    pub fn list(&self) -> Vec<String> {
        self.files.keys().cloned().collect()
    }

    /// The contents of a file as reads see them.
    pub fn read(&self, name: &str) -> Option<Bytes> {
        self.files.get(name).map(|f| Bytes::from(f.visible.clone()))
    }

    /// Bytes of `name` that are durable (for tests and assertions).
    pub fn durable_len(&self, name: &str) -> Option<usize> {
        if !self.durable_names.contains(name) {
            return None;
        }
        self.files
            .get(name)
            .or_else(|| self.removed.get(name))
            .map(|f| f.durable.len())
    }

    /// Creates `name`, truncating any file of that name. Durable after [`SimDisk::sync`]
    /// with `dir = true`.
    pub fn create(&mut self, name: &str) {
        match self.files.get_mut(name) {
            Some(f) => {
                f.visible.clear();
                f.pending.push(DataOp::SetLen(0));
            }
            None => {
                self.removed.remove(name);
                self.files.insert(name.to_string(), File::default());
                self.dir_pending.push(DirOp::Create(name.to_string()));
            }
        }
    }

    /// Appends to `name` (created if missing).
    pub fn append(&mut self, name: &str, bytes: &Bytes) {
        if !self.files.contains_key(name) {
            self.create(name);
        }
        let f = self.files.get_mut(name).expect("created above");
        f.visible.extend_from_slice(bytes);
        f.pending.push(DataOp::Write(bytes.clone()));
    }

    /// Makes the data of `name` durable (fdatasync), and with `dir` the directory too.
    /// May fail, per the configuration; a failed sync leaves the data unsynced.
    pub fn sync(&mut self, name: &str, dir: bool) -> Result<(), DiskError> {
        if self.rng.chance(self.config.fsync_fail_ppm) {
            self.failed_syncs += 1;
            return Err(DiskError(format!(
                "fsync of {name}: Input/output error (os error 5)"
            )));
        }
        if self.config.lying {
            self.lies += 1;
            return Ok(());
        }
        if let Some(f) = self.files.get_mut(name) {
            f.durable = f.visible.clone();
            f.pending.clear();
        }
        if dir {
            self.sync_dir();
        }
        Ok(())
    }

    fn sync_dir(&mut self) {
        for op in std::mem::take(&mut self.dir_pending) {
            match op {
                DirOp::Create(n) => {
                    self.durable_names.insert(n);
                }
                DirOp::Remove(n) => {
                    self.durable_names.remove(&n);
                    self.removed.remove(&n);
                }
            }
        }
    }

    /// Removes `name` from the directory (durable after the next directory sync).
    pub fn delete(&mut self, name: &str) {
        if let Some(f) = self.files.remove(name) {
            self.removed.insert(name.to_string(), f);
            self.dir_pending.push(DirOp::Remove(name.to_string()));
        }
    }

    /// Cuts `name` to `len` bytes (removing it when `len` is 0) and syncs file and
    /// directory, as recovery does with a torn tail. Never fails and never lies: recovery
    /// runs before the node acknowledges anything, so its durability is not what the
    /// simulator is testing here.
    pub fn truncate_durably(&mut self, name: &str, len: usize) {
        if len == 0 {
            self.delete(name);
        } else if let Some(f) = self.files.get_mut(name) {
            f.visible.truncate(len);
            f.durable = f.visible.clone();
            f.pending.clear();
        }
        self.sync_dir();
    }

    /// Stops injecting fsync failures and slow IO (the end of a run's fault phase). A lying
    /// disk keeps lying: that is what it is.
    pub fn calm(&mut self) {
        self.config.fsync_fail_ppm = 0;
        self.config.slow_ppm = 0;
    }

    /// Latency of one synced IO, in nanoseconds.
    pub fn latency(&mut self) -> u64 {
        if self.rng.chance(self.config.slow_ppm) {
            let (lo, hi) = self.config.slow_latency;
            self.rng.log_uniform(lo, hi)
        } else {
            let (lo, hi) = self.config.sync_latency;
            self.rng.log_uniform(lo, hi)
        }
    }

    /// Power loss: every unsynced change survives only as a random prefix, the last kept
    /// write possibly torn.
    pub fn crash(&mut self) -> CrashReport {
        let mut report = CrashReport::default();
        // The directory: a prefix of the unsynced changes survives.
        let dir_ops = std::mem::take(&mut self.dir_pending);
        let keep = self.rng.index(dir_ops.len() + 1);
        report.dir_undone = dir_ops.len() - keep;
        let mut names = self.durable_names.clone();
        for op in &dir_ops[..keep] {
            match op {
                DirOp::Create(n) => {
                    names.insert(n.clone());
                }
                DirOp::Remove(n) => {
                    names.remove(n);
                }
            }
        }
        // Every file the surviving directory names, with its surviving contents.
        let mut all = std::mem::take(&mut self.files);
        for (name, f) in std::mem::take(&mut self.removed) {
            all.entry(name).or_insert(File {
                pending: Vec::new(),
                ..f
            });
        }
        let mut files = BTreeMap::new();
        for (name, f) in all {
            if !names.contains(&name) {
                continue;
            }
            let content = self.crash_file(&name, f, &mut report);
            files.insert(
                name,
                File {
                    visible: content.clone(),
                    durable: content,
                    pending: Vec::new(),
                },
            );
        }
        self.durable_names = names;
        self.files = files;
        report
    }

    fn crash_file(&mut self, name: &str, f: File, report: &mut CrashReport) -> Vec<u8> {
        let mut content = f.durable;
        if f.pending.is_empty() {
            return content;
        }
        let keep = self.rng.index(f.pending.len() + 1);
        let lost: usize = f.pending[keep..]
            .iter()
            .map(|op| match op {
                DataOp::Write(b) => b.len(),
                DataOp::SetLen(_) => 0,
            })
            .sum();
        for (i, op) in f.pending[..keep].iter().enumerate() {
            match op {
                DataOp::SetLen(len) => content.truncate(*len),
                DataOp::Write(bytes)
                    if i + 1 == keep && !bytes.is_empty() && self.rng.chance(500_000) =>
                {
                    // The last surviving write is torn.
                    let cut = self.rng.index(bytes.len());
                    content.extend_from_slice(&bytes[..cut]);
                    report.torn.push((name.to_string(), content.len()));
                    if self.rng.chance(self.config.garbage_ppm) {
                        let n = self.rng.range(1, 24) as usize;
                        for _ in 0..n {
                            let b = if self.rng.chance(500_000) {
                                0
                            } else {
                                self.rng.below(256) as u8
                            };
                            content.push(b);
                        }
                    }
                }
                DataOp::Write(bytes) => content.extend_from_slice(bytes),
            }
        }
        if lost > 0 {
            report.lost.push((name.to_string(), lost));
        }
        content
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(seed: u64) -> SimDisk {
        SimDisk::new(SimRng::new(seed), DiskConfig::default())
    }

    fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn synced_data_survives_a_crash() {
        let mut d = disk(1);
        d.create("a");
        d.append("a", &b("hello"));
        d.sync("a", true).unwrap();
        d.crash();
        assert_eq!(d.read("a").unwrap(), "hello");
    }

    #[test]
    fn unsynced_data_survives_only_as_a_prefix() {
        let mut outcomes = BTreeSet::new();
        for seed in 0..200 {
            let mut d = disk(seed);
            d.create("a");
            d.append("a", &b("durable."));
            d.sync("a", true).unwrap();
            d.append("a", &b("one."));
            d.append("a", &b("two."));
            d.crash();
            let got = d.read("a").unwrap();
            let full = b"durable.one.two.";
            assert!(got.len() >= 8, "synced bytes lost");
            let prefix_len = got
                .iter()
                .zip(full.iter())
                .take_while(|(x, y)| x == y)
                .count();
            // Everything up to the tear is a prefix of what was written; garbage may follow.
            assert!(prefix_len >= 8);
            outcomes.insert(prefix_len);
        }
        // All lost, all kept and torn in between all happen.
        assert!(outcomes.contains(&8));
        assert!(outcomes.contains(&16));
        assert!(outcomes.iter().any(|l| *l > 8 && *l < 16 && *l != 12));
    }

    #[test]
    fn an_unsynced_create_can_vanish_and_an_unsynced_delete_can_be_undone() {
        let (mut vanished, mut undeleted) = (false, false);
        for seed in 0..100 {
            let mut d = disk(seed);
            d.create("old");
            d.append("old", &b("x"));
            d.sync("old", true).unwrap();
            d.delete("old");
            d.create("new");
            d.append("new", &b("y"));
            d.sync("new", false).unwrap(); // data synced, directory not
            d.crash();
            vanished |= d.read("new").is_none();
            undeleted |= d.read("old").is_some_and(|c| c == "x");
        }
        assert!(vanished && undeleted);
    }

    #[test]
    fn a_failed_fsync_leaves_the_data_unsynced() {
        let config = DiskConfig {
            fsync_fail_ppm: 1_000_000,
            ..DiskConfig::default()
        };
        let mut d = SimDisk::new(SimRng::new(3), config);
        d.create("a");
        d.append("a", &b("data"));
        assert!(d.sync("a", true).is_err());
        assert_eq!(d.read("a").unwrap(), "data", "the page cache still has it");
        assert_eq!(d.durable_len("a"), None);
    }

    #[test]
    fn a_lying_disk_acknowledges_and_forgets() {
        let config = DiskConfig {
            lying: true,
            ..DiskConfig::default()
        };
        let mut lost = 0;
        for seed in 0..50 {
            let mut d = SimDisk::new(SimRng::new(seed), config.clone());
            d.create("a");
            d.append("a", &b("data"));
            d.sync("a", true).unwrap();
            d.crash();
            if d.read("a").is_none_or(|c| c != "data") {
                lost += 1;
            }
        }
        assert!(lost > 10, "{lost}");
    }

    #[test]
    fn durable_truncation_and_loss() {
        let mut d = disk(9);
        d.create("a");
        d.append("a", &b("0123456789"));
        d.sync("a", true).unwrap();
        d.truncate_durably("a", 4);
        d.crash();
        assert_eq!(d.read("a").unwrap(), "0123");
        d.truncate_durably("a", 0);
        d.crash();
        assert_eq!(d.list(), Vec::<String>::new());
        let fresh = d.replaced();
        assert!(fresh.list().is_empty());
    }
}
