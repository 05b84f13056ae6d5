//! `t4 restore` and `t4 status`: tools that read a bucket prefix t4 writes to. They never
//! write to the bucket, so they are safe to run while a node serves the prefix.

pub mod read;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use t4::object_io::ObjectIo;
use t4_core::remote::layout::{CheckpointRecord, parse_wal_key};

use crate::s3::S3Args;
use read::Bucket;

/// `t4 restore` subcommands.
#[derive(Subcommand, Debug)]
pub enum RestoreCommand {
    /// List the checkpoints in the bucket (newest last), with their index, revision, term,
    /// files and size.
    List {
        /// The bucket.
        #[command(flatten)]
        s3: S3Args,
    },
    /// Materialise a checkpoint into a new data dir: `t4 run --data-dir DIR` then serves its
    /// keys at its revision (add the bucket flags to continue from the log after it).
    Checkpoint {
        /// Which checkpoint: `latest`, a name from `t4 restore list`
        /// (`<index>-<revision>`, with or without `ckp/`), or a log index.
        name: String,
        /// The data directory to create; it must not exist or be empty.
        #[arg(long, env = "T4_DATA_DIR")]
        data_dir: PathBuf,
        /// The bucket.
        #[command(flatten)]
        s3: S3Args,
    },
}

/// `t4 status` settings.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The bucket.
    #[command(flatten)]
    s3: S3Args,
}

fn open(s3: &S3Args) -> anyhow::Result<Bucket> {
    Ok(Bucket {
        io: ObjectIo::new(s3.require_store()?, &s3.s3_prefix),
        name: s3.describe(),
    })
}

fn total_size(record: &CheckpointRecord) -> u64 {
    record.files.iter().map(|f| f.size).sum()
}

fn pick<'a>(
    checkpoints: &'a [(String, CheckpointRecord)],
    name: &str,
) -> Option<&'a (String, CheckpointRecord)> {
    if name == "latest" {
        return checkpoints.last();
    }
    let name = name.strip_prefix("ckp/").unwrap_or(name);
    checkpoints.iter().find(|(key, record)| {
        key.strip_prefix("ckp/") == Some(name) || name.parse() == Ok(record.index)
    })
}

/// Runs a `t4 restore` command.
pub async fn restore(command: RestoreCommand) -> anyhow::Result<()> {
    match command {
        RestoreCommand::List { s3 } => {
            let bucket = open(&s3)?;
            let checkpoints = bucket.checkpoints().await?;
            if checkpoints.is_empty() {
                println!("no checkpoints in {}", bucket.name);
            }
            for (key, record) in &checkpoints {
                println!(
                    "{}\tindex={} revision={} term={} files={} bytes={} leases={}",
                    key.trim_start_matches("ckp/"),
                    record.index,
                    record.revision,
                    record.term,
                    record.files.len(),
                    total_size(record),
                    record.leases.len()
                );
            }
        }
        RestoreCommand::Checkpoint { name, data_dir, s3 } => {
            let bucket = open(&s3)?;
            let checkpoints = bucket.checkpoints().await?;
            let Some((key, record)) = pick(&checkpoints, &name) else {
                anyhow::bail!(
                    "no checkpoint {name:?} in {} ({} checkpoints; see `t4 restore list`)",
                    bucket.name,
                    checkpoints.len()
                );
            };
            let image = bucket.image(record).await?;
            let keys = image.kvs.len();
            let dir = data_dir.clone();
            tokio::task::spawn_blocking(move || t4::restore_checkpoint(&image, &dir)).await??;
            println!(
                "restored {key} ({keys} keys, {} leases, revision {}, log index {}) into {}",
                record.leases.len(),
                record.revision,
                record.index,
                data_dir.display()
            );
        }
    }
    Ok(())
}

/// Runs `t4 status`: who writes the prefix, the newest checkpoint and the log after it.
pub async fn status(args: StatusArgs) -> anyhow::Result<()> {
    let bucket = open(&args.s3)?;
    println!("bucket:            {}", bucket.name);
    match bucket.writer().await? {
        Some(w) => println!(
            "writer:            {} (term {}, generation {})",
            w.node_id, w.term, w.generation
        ),
        None => {
            println!("writer:            none (no t4 node has used this prefix)");
            return Ok(());
        }
    }
    let manifest = bucket.manifest().await?.unwrap_or_default();
    println!(
        "manifest:          generation {}, term {}, merged through index {}, {} segments, fences {:?}",
        manifest.generation,
        manifest.term,
        manifest.merged_through,
        manifest.segments.len(),
        manifest.fences
    );
    let checkpoints = bucket.checkpoints().await?;
    let after = match checkpoints.last() {
        Some((key, record)) => {
            println!(
                "latest checkpoint: {} (index {}, revision {}, {} files, {} bytes); {} in the bucket",
                key.trim_start_matches("ckp/"),
                record.index,
                record.revision,
                record.files.len(),
                total_size(record),
                checkpoints.len()
            );
            record.index
        }
        None => {
            println!("latest checkpoint: none");
            0
        }
    };
    let tails: Vec<u64> = bucket
        .list("wal/")
        .await?
        .iter()
        .filter_map(|m| parse_wal_key(&m.key))
        .filter(|i| *i > after)
        .collect();
    let segments: Vec<_> = manifest
        .segments
        .iter()
        .filter(|s| s.last > after)
        .collect();
    println!(
        "after it:          {} WAL objects{}, {} merged segments{}",
        tails.len(),
        match (tails.first(), tails.last()) {
            (Some(a), Some(b)) => format!(" (first index {a}..{b})"),
            _ => String::new(),
        },
        segments.len(),
        match (segments.first(), segments.last()) {
            (Some(a), Some(b)) => format!(" (entries {}..={})", a.first, b.last),
            _ => String::new(),
        }
    );
    Ok(())
}
