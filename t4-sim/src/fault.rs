//! The fault plan: which faults a run may inject, how often, and what actually happened.
//!
//! A plan is drawn from the run's seed ("swarm testing": each seed also picks *which* faults
//! are likely, so that rare combinations get runs where they dominate). Faults happen only
//! during the run's fault phase; afterwards the system must settle and every checker runs.
//!
//! | fault | where | what the system must survive |
//! |---|---|---|
//! | process/machine crash | node | unsynced writes lost, last write torn, store rolled back to a crash image; acked writes survive |
//! | fsync failure | disk | the core stops acknowledging; the node restarts itself; nothing unsynced was acked |
//! | slow IO | disk | nothing but latency |
//! | disk loss | disk | a fresh, empty node (a new epoch of the database while there is no S3) |
//! | lying disk | disk | nothing: the simulator must *detect* the lost acknowledged writes |
//! | message loss | network | requests and replies vanish: unknown outcomes |
//! | partition | network | a client cannot reach the node for a while |
//! | lagging watcher | node | a watcher misses live events and must catch up from the store |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use t4_core::Instant;

use crate::disk::DiskConfig;
use crate::net::NetConfig;
use crate::rng::SimRng;

/// Which families of faults a run may use (`--faults`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FaultMode {
    /// No faults: only the workload's own concurrency.
    None,
    /// Crashes and restarts.
    Crash,
    /// Disk faults: fsync failures, slow IO, disk loss (and crashes, which make them visible).
    Disk,
    /// Network faults: message loss and partitions.
    Net,
    /// Everything.
    #[default]
    All,
}

impl FromStr for FaultMode {
    type Err = String;
    fn from_str(s: &str) -> Result<FaultMode, String> {
        Ok(match s {
            "none" => FaultMode::None,
            "crash" => FaultMode::Crash,
            "disk" => FaultMode::Disk,
            "net" => FaultMode::Net,
            "all" => FaultMode::All,
            other => {
                return Err(format!(
                    "unknown fault mode {other:?} (expected none, crash, disk, net or all)"
                ));
            }
        })
    }
}

impl fmt::Display for FaultMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FaultMode::None => "none",
            FaultMode::Crash => "crash",
            FaultMode::Disk => "disk",
            FaultMode::Net => "net",
            FaultMode::All => "all",
        })
    }
}

/// The faults of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Time between crashes (uniform in the range), if crashes happen.
    pub crash_every: Option<(Duration, Duration)>,
    /// Chance that a crash waits for the next WAL append and strikes between its write and
    /// its fsync, in parts per million.
    pub crash_mid_io_ppm: u32,
    /// Time a crashed node stays down.
    pub down_for: (Duration, Duration),
    /// Chance that a crash is a power loss (unsynced data at risk) rather than a process
    /// crash (the OS keeps the page cache), in parts per million.
    pub power_loss_ppm: u32,
    /// Chance that a crash also destroys the disk, in parts per million.
    pub disk_loss_ppm: u32,
    /// The disk's behaviour.
    pub disk: DiskConfig,
    /// The network's behaviour.
    pub net: NetConfig,
    /// Time between partitions of one client from the node, if they happen.
    pub partition_every: Option<(Duration, Duration)>,
    /// How long a partition lasts.
    pub partition_for: (Duration, Duration),
    /// Chance that a watcher misses a live batch, in parts per million.
    pub watch_lag_ppm: u32,
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

impl FaultPlan {
    /// A plan without faults.
    pub fn none() -> FaultPlan {
        FaultPlan {
            crash_every: None,
            crash_mid_io_ppm: 0,
            down_for: (ms(100), ms(2000)),
            power_loss_ppm: 1_000_000,
            disk_loss_ppm: 0,
            disk: DiskConfig::default(),
            net: NetConfig::default(),
            partition_every: None,
            partition_for: (ms(500), ms(5000)),
            watch_lag_ppm: 0,
        }
    }

    /// Draws a plan for `mode` from `rng`.
    pub fn draw(rng: &mut SimRng, mode: FaultMode, lying_disk: bool) -> FaultPlan {
        let mut p = FaultPlan::none();
        let crashes =
            matches!(mode, FaultMode::Crash | FaultMode::Disk | FaultMode::All) || lying_disk;
        let disk = matches!(mode, FaultMode::Disk | FaultMode::All);
        let net = matches!(mode, FaultMode::Net | FaultMode::All);
        let lag = *rng.pick(&[0, 20_000, 200_000]);
        if mode != FaultMode::None {
            p.watch_lag_ppm = lag;
        }
        if crashes {
            let lo = rng.range(2_000, 15_000);
            p.crash_every = Some((ms(lo), ms(lo * 3)));
            p.power_loss_ppm = *rng.pick(&[500_000, 900_000, 1_000_000]);
            p.crash_mid_io_ppm = *rng.pick(&[0, 300_000, 800_000]);
        }
        if disk {
            p.disk.fsync_fail_ppm = *rng.pick(&[0, 0, 2_000, 20_000]);
            p.disk.slow_ppm = *rng.pick(&[0, 5_000, 50_000]);
            p.disk_loss_ppm = *rng.pick(&[0, 0, 0, 50_000]);
        }
        if net {
            p.net.drop_ppm = *rng.pick(&[0, 5_000, 30_000]);
            if rng.chance(600_000) {
                let lo = rng.range(3_000, 20_000);
                p.partition_every = Some((ms(lo), ms(lo * 2)));
            }
        }
        p.net.latency = *rng.pick(&[(50_000, 2_000_000), (200_000, 20_000_000)]);
        p.disk.sync_latency = *rng.pick(&[(50_000, 2_000_000), (1_000_000, 20_000_000)]);
        if lying_disk {
            p.disk.lying = true;
            // Make the lie matter: every crash is a power loss.
            p.power_loss_ppm = 1_000_000;
        }
        p
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some((lo, hi)) = self.crash_every {
            parts.push(format!(
                "crash every {}-{}s ({}% power loss)",
                lo.as_secs_f32(),
                hi.as_secs_f32(),
                self.power_loss_ppm / 10_000
            ));
        }
        if self.disk.fsync_fail_ppm > 0 {
            parts.push(format!("fsync fails {}ppm", self.disk.fsync_fail_ppm));
        }
        if self.disk.slow_ppm > 0 {
            parts.push(format!("slow IO {}ppm", self.disk.slow_ppm));
        }
        if self.disk_loss_ppm > 0 {
            parts.push(format!("disk loss {}ppm/crash", self.disk_loss_ppm));
        }
        if self.disk.lying {
            parts.push("LYING DISK".into());
        }
        if self.net.drop_ppm > 0 {
            parts.push(format!("message loss {}ppm", self.net.drop_ppm));
        }
        if self.partition_every.is_some() {
            parts.push("partitions".into());
        }
        if self.watch_lag_ppm > 0 {
            parts.push(format!("watch lag {}ppm", self.watch_lag_ppm));
        }
        if parts.is_empty() {
            "no faults".into()
        } else {
            parts.join(", ")
        }
    }
}

/// The faults that actually happened, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FaultLog {
    /// `(when, what)`.
    pub entries: Vec<(Instant, String)>,
}

impl FaultLog {
    /// Records a fault.
    pub fn record(&mut self, at: Instant, what: String) {
        self.entries.push((at, what));
    }

    /// Number of entries whose text starts with `prefix`.
    pub fn count(&self, prefix: &str) -> usize {
        self.entries
            .iter()
            .filter(|(_, w)| w.starts_with(prefix))
            .count()
    }
}

impl fmt::Display for FaultLog {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (at, what) in &self.entries {
            writeln!(f, "  {:>12} {what}", crate::trace::secs(*at))?;
        }
        Ok(())
    }
}
