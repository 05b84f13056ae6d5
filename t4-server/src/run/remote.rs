//! `t4 run`'s durability settings: the bucket, upload mode, WAL segments, checkpoints.
//! docs/configuration.md ("S3") lists the same flags.

use std::time::Duration;

use clap::Args;

use crate::s3::S3Args;

/// The durability flags of `t4 run`.
#[derive(Args, Clone, Debug)]
pub struct RemoteArgs {
    /// The bucket.
    #[command(flatten)]
    pub s3: S3Args,

    /// With a bucket: acknowledge a write only once it is in the bucket (true), or right after
    /// the local fsync, uploading in the background (false: faster, but a lost disk loses the
    /// writes not yet uploaded).
    #[arg(long, env = "T4_WAL_SYNC_UPLOAD", default_value_t = true, action = clap::ArgAction::Set)]
    pub wal_sync_upload: bool,

    /// A local WAL segment file is sealed at this size (MiB); sealed segments are deleted once
    /// the store holds their entries.
    #[arg(long, env = "T4_SEGMENT_MAX_SIZE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_max_size_mb: u64,

    /// A local WAL segment file is sealed at this age (seconds).
    #[arg(long, env = "T4_SEGMENT_MAX_AGE_SEC", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub segment_max_age_sec: u64,

    /// With a bucket: take a checkpoint when this many minutes passed since the last one and
    /// something was written since.
    #[arg(long, env = "T4_CHECKPOINT_INTERVAL_MIN", default_value_t = 15, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_interval_min: u64,

    /// With a bucket: take a checkpoint once this many log entries were written since the
    /// last one.
    #[arg(long, env = "T4_CHECKPOINT_ENTRIES", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_entries: u64,

    /// With a bucket: how many checkpoints to keep; older checkpoints, the log before the
    /// oldest kept one and data files no kept checkpoint uses are deleted.
    #[arg(long, env = "T4_CHECKPOINT_RETAIN", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub checkpoint_retain: u64,

    /// With a bucket: take the prefix over even though its writer record names another node
    /// (after replacing a machine). The old node, if still running, is fenced.
    #[arg(long, env = "T4_S3_TAKEOVER", default_value_t = false)]
    pub s3_takeover: bool,

    /// Recovery override: when a log object in the bucket is missing or damaged, end the log
    /// there (discarding the entries after it) instead of refusing to start. Loses those
    /// writes; only for salvaging a damaged bucket.
    #[arg(
        long,
        alias = "s3-allow-missing-objects",
        env = "T4_ALLOW_MISSING_OBJECTS",
        default_value_t = false
    )]
    pub allow_missing_objects: bool,
}

impl RemoteArgs {
    /// Applies these settings to the node's configuration; `node_id` names this node in the
    /// bucket's writer record.
    pub fn apply(&self, config: &mut t4::Config, node_id: &str) -> anyhow::Result<()> {
        config.segment_max_bytes = self.segment_max_size_mb << 20;
        config.segment_max_age = Duration::from_secs(self.segment_max_age_sec);
        config.object_store = self.s3.store()?;
        config.object_prefix = self.s3.s3_prefix.clone();
        let remote = &mut config.remote;
        remote.node_id = node_id.to_string();
        remote.takeover = self.s3_takeover;
        remote.sync_upload = self.wal_sync_upload;
        remote.checkpoint_interval = Duration::from_secs(self.checkpoint_interval_min * 60);
        remote.checkpoint_entries = self.checkpoint_entries;
        remote.checkpoint_retain = self.checkpoint_retain as usize;
        remote.allow_missing_objects = self.allow_missing_objects;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        remote: RemoteArgs,
    }

    fn parse(args: &[&str]) -> RemoteArgs {
        let mut all = vec!["t4"];
        all.extend_from_slice(args);
        Flags::try_parse_from(all).expect("parses").remote
    }

    #[test]
    fn without_flags_there_is_no_bucket_and_the_documented_defaults() {
        let args = parse(&[]);
        assert!(!args.s3.enabled());
        let mut config = t4::Config::new("/tmp/unused");
        args.apply(&mut config, "n1").expect("applies");
        assert!(config.object_store.is_none());
        assert!(config.remote.sync_upload);
        assert_eq!(config.remote.checkpoint_retain, 2);
        assert_eq!(config.remote.checkpoint_entries, 100_000);
        assert_eq!(
            config.remote.checkpoint_interval,
            Duration::from_secs(15 * 60)
        );
        assert_eq!(config.segment_max_bytes, 64 << 20);
        assert_eq!(config.segment_max_age, Duration::from_secs(10));
    }

    #[test]
    fn flags_reach_the_node_config() {
        let args = parse(&[
            "--s3-bucket",
            "b",
            "--s3-prefix",
            "/t4/",
            "--s3-endpoint",
            "http://127.0.0.1:9",
            "--wal-sync-upload",
            "false",
            "--segment-max-size-mb",
            "8",
            "--segment-max-age-sec",
            "3",
            "--checkpoint-interval-min",
            "5",
            "--checkpoint-entries",
            "50",
            "--checkpoint-retain",
            "4",
            "--s3-takeover",
            "--s3-allow-missing-objects",
        ]);
        let mut config = t4::Config::new("/tmp/unused");
        args.apply(&mut config, "node-7").expect("applies");
        assert!(config.object_store.is_some());
        assert_eq!(config.object_prefix, "/t4/");
        let r = &config.remote;
        assert_eq!(r.node_id, "node-7");
        assert!(!r.sync_upload && r.takeover && r.allow_missing_objects);
        assert_eq!(r.checkpoint_interval, Duration::from_secs(300));
        assert_eq!((r.checkpoint_entries, r.checkpoint_retain), (50, 4));
        assert_eq!(config.segment_max_bytes, 8 << 20);
        assert_eq!(config.segment_max_age, Duration::from_secs(3));
    }
}
