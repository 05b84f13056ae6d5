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
//! | disk loss | disk | without a bucket: a fresh, empty node (a new epoch of the database) |
//! | lying disk | disk | nothing: the simulator must *detect* the lost acknowledged writes |
//! | message loss | network | requests and replies vanish: unknown outcomes |
//! | partition | network | a client cannot reach the node for a while |
//! | lagging watcher | node | a watcher misses live events and must catch up from the store |
//! | bucket latency, 5xx, outages, ambiguous answers | bucket ([`BucketPlan`]) | sync: no acknowledged write missing from the bucket; async: none older than the loss window |
//! | disk loss with a sync bucket | node | rebuild from the bucket, lose nothing acknowledged |
//! | zombie writer | node + bucket | the old writer is fenced and stops; the bucket's history never forks |
//! | lying bucket | bucket | nothing: the simulator must *detect* unrecoverable acknowledged writes |

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use t4_core::Instant;

use t4_core::remote::RemoteConfig;

use crate::disk::DiskConfig;
use crate::net::NetConfig;
use crate::objstore::ObjConfig;
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

/// Whether a run has a bucket, and how it uploads (`--bucket`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BucketChoice {
    /// Drawn from the seed: no bucket, sync upload or async upload.
    #[default]
    Drawn,
    /// Local durability only.
    Off,
    /// Every write is in the bucket before it is acknowledged.
    Sync,
    /// Writes are acknowledged after the local fsync and uploaded in the background.
    Async,
}

impl FromStr for BucketChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<BucketChoice, String> {
        Ok(match s {
            "drawn" => BucketChoice::Drawn,
            "none" | "off" => BucketChoice::Off,
            "sync" => BucketChoice::Sync,
            "async" => BucketChoice::Async,
            other => {
                return Err(format!(
                    "unknown bucket mode {other:?} (expected drawn, none, sync or async)"
                ));
            }
        })
    }
}

impl fmt::Display for BucketChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BucketChoice::Drawn => "drawn",
            BucketChoice::Off => "none",
            BucketChoice::Sync => "sync",
            BucketChoice::Async => "async",
        })
    }
}

/// The bucket of one run and how it misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BucketPlan {
    /// Sync upload (acknowledge after the bucket has the write) or async.
    pub sync: bool,
    /// The object store's latency, errors, ambiguous answers and outages.
    pub obj: ObjConfig,
    /// The core's remote configuration (node id and takeover are set per node).
    pub remote: RemoteConfig,
    /// Time between recoverability checks (a fresh node from a copy of the bucket).
    pub check_every: (Duration, Duration),
    /// A zombie writer: the node pauses, a new node takes the prefix over, the old one wakes.
    pub zombie: Option<ZombiePlan>,
}

/// When the zombie scenario strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZombiePlan {
    /// When the first node pauses and the second takes over.
    pub at: Duration,
    /// How long the first node stays paused.
    pub pause: Duration,
}

impl BucketPlan {
    /// Draws the bucket of a run from `rng` (`None`: no bucket). `zombie`: force the zombie
    /// scenario on or off (`None`: drawn). `lying`: a bucket that drops acknowledged creates.
    pub fn draw(
        rng: &mut SimRng,
        choice: BucketChoice,
        mode: FaultMode,
        zombie: Option<bool>,
        lying: bool,
    ) -> Option<BucketPlan> {
        let sync = match choice {
            BucketChoice::Off => return None,
            BucketChoice::Sync => true,
            BucketChoice::Async => false,
            BucketChoice::Drawn => match rng.weighted(&[2, 2, 1]) {
                0 => return None,
                1 => true,
                _ => false,
            },
        };
        let faults = matches!(mode, FaultMode::All | FaultMode::Net | FaultMode::Disk);
        let mut obj = ObjConfig {
            latency: *rng.pick(&[(1_000_000, 20_000_000), (5_000_000, 100_000_000)]),
            ..ObjConfig::default()
        };
        if faults {
            obj.slow_ppm = *rng.pick(&[0, 5_000, 50_000]);
            obj.slow_latency = (200_000_000, 3_000_000_000);
            obj.error_ppm = *rng.pick(&[0, 10_000, 100_000]);
            obj.ambiguous_ppm = *rng.pick(&[0, 10_000, 50_000]);
            for _ in 0..*rng.pick(&[0, 0, 1, 3]) {
                let start = rng.range(1_000, 40_000) * 1_000_000;
                let len = rng.log_uniform(200, 15_000) * 1_000_000;
                obj.outages
                    .push((Instant(start), Instant(start.saturating_add(len))));
            }
        }
        if lying {
            obj.lose_created_ppm = 200_000;
        }
        let remote = RemoteConfig {
            node_id: "n0".into(),
            takeover: false,
            sync_upload: sync,
            upload_max_delay: ms(*rng.pick(&[5, 100, 1_000])),
            upload_max_bytes: *rng.pick(&[512, 64 << 10, 8 << 20]),
            merge_min_objects: *rng.pick(&[2, 8, 64]),
            checkpoint_interval: ms(*rng.pick(&[2_000, 20_000, 900_000])),
            checkpoint_entries: *rng.pick(&[10, 100, 100_000]),
            checkpoint_retain: *rng.pick(&[1, 2, 3]),
            retry_min: ms(50),
            retry_max: ms(*rng.pick(&[500, 5_000])),
            ..RemoteConfig::default()
        };
        let lo = rng.range(2_000, 15_000);
        let zombie = match zombie {
            Some(z) => z,
            // A frozen process is a fault: only when the run injects crashes.
            None => {
                sync && matches!(mode, FaultMode::Crash | FaultMode::Disk | FaultMode::All)
                    && rng.chance(250_000)
            }
        }
        .then(|| ZombiePlan {
            at: ms(rng.range(2_000, 12_000)),
            pause: ms(rng.range(8_000, 20_000)),
        });
        Some(BucketPlan {
            sync,
            obj,
            remote,
            check_every: (ms(lo), ms(lo * 3)),
            zombie,
        })
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!(
            "bucket {} upload (max delay {}ms, merge {}, checkpoint every {}s/{} entries, keep {})",
            if self.sync { "sync" } else { "async" },
            self.remote.upload_max_delay.as_millis(),
            self.remote.merge_min_objects,
            self.remote.checkpoint_interval.as_secs(),
            self.remote.checkpoint_entries,
            self.remote.checkpoint_retain
        )];
        let o = &self.obj;
        if o.error_ppm > 0 {
            parts.push(format!("5xx {}ppm", o.error_ppm));
        }
        if o.ambiguous_ppm > 0 {
            parts.push(format!("ambiguous {}ppm", o.ambiguous_ppm));
        }
        if o.slow_ppm > 0 {
            parts.push(format!("slow {}ppm", o.slow_ppm));
        }
        if !o.outages.is_empty() {
            let w: Vec<String> = o
                .outages
                .iter()
                .map(|(a, b)| format!("{}-{}", crate::trace::secs(*a), crate::trace::secs(*b)))
                .collect();
            parts.push(format!("outages {}", w.join(" ")));
        }
        if o.lose_created_ppm > 0 {
            parts.push("LYING BUCKET".into());
        }
        if let Some(z) = self.zombie {
            parts.push(format!(
                "zombie writer at {}s paused {}s",
                z.at.as_secs_f32(),
                z.pause.as_secs_f32()
            ));
        }
        parts.join(", ")
    }
}
