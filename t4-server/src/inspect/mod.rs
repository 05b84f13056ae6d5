//! `t4 inspect`: read-only views of a data dir, offline (stop the node first, or inspect a
//! copy). The store is copied to a temporary directory and the WAL replayed into the copy
//! ([`open`]), so nothing in the data dir is changed and the tools show what `t4 run` would
//! serve.

pub mod open;

use std::ops::ControlFlow;
use std::path::PathBuf;

use bytes::Bytes;
use clap::{Args, Subcommand};
use t4_core::{EventKind, KeyRange, KeyValue, ReadView, Revision, Store as _};

/// Where the data dir is.
#[derive(Args, Clone, Debug)]
pub struct DataDirArg {
    /// The data directory to inspect (read-only).
    #[arg(long, env = "T4_DATA_DIR")]
    pub data_dir: PathBuf,
}

/// `t4 inspect` subcommands.
#[derive(Subcommand, Debug)]
pub enum InspectCommand {
    /// Format version, applied index and revision, compact revision, leases, authentication,
    /// WAL segments.
    Meta {
        /// The data directory.
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Keys (with create/mod revision, version, lease and value), in key order.
    List {
        /// The data directory.
        #[command(flatten)]
        dir: DataDirArg,
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
        /// As of this revision (default: the latest).
        #[arg(long)]
        revision: Option<Revision>,
        /// Print keys only.
        #[arg(long)]
        keys_only: bool,
    },
    /// One key, with its metadata and value.
    Get {
        /// The data directory.
        #[command(flatten)]
        dir: DataDirArg,
        /// The key.
        key: String,
        /// As of this revision (default: the latest).
        #[arg(long)]
        revision: Option<Revision>,
    },
    /// Every change of a key still in the history (since the compact revision).
    History {
        /// The data directory.
        #[command(flatten)]
        dir: DataDirArg,
        /// The key.
        key: String,
    },
    /// What changed between two revisions: keys added, changed and deleted.
    Diff {
        /// The data directory.
        #[command(flatten)]
        dir: DataDirArg,
        /// The older revision.
        #[arg(long)]
        from: Revision,
        /// The newer revision (default: the latest).
        #[arg(long)]
        to: Option<Revision>,
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// Shows bytes as text when they are UTF-8, escaped otherwise.
fn show(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.contains(['\n', '\t']) => s.to_string(),
        _ => bytes.escape_ascii().to_string(),
    }
}

fn describe(kv: &KeyValue) -> String {
    format!(
        "{}\tcreate_revision={} mod_revision={} version={} lease={}\t{}",
        show(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        kv.lease,
        show(&kv.value)
    )
}

fn range_of(prefix: &str) -> KeyRange {
    if prefix.is_empty() {
        KeyRange::From(Bytes::new())
    } else {
        KeyRange::prefix(Bytes::copy_from_slice(prefix.as_bytes()))
    }
}

fn at<V: ReadView>(view: &V, revision: Option<Revision>) -> anyhow::Result<Revision> {
    let latest = view.revision();
    let rev = revision.unwrap_or(latest);
    anyhow::ensure!(
        rev <= latest,
        "revision {rev} is in the future (the latest is {latest})"
    );
    anyhow::ensure!(
        rev >= view.compact_revision(),
        "revision {rev} has been compacted (the compact revision is {})",
        view.compact_revision()
    );
    Ok(rev)
}

fn scan<V: ReadView>(view: &V, range: &KeyRange, rev: Revision) -> anyhow::Result<Vec<KeyValue>> {
    let mut kvs = Vec::new();
    view.scan(range, rev, &mut |kv| {
        kvs.push(kv);
        ControlFlow::Continue(())
    })?;
    Ok(kvs)
}

/// Runs one `t4 inspect` command, printing to stdout.
pub fn run(command: InspectCommand) -> anyhow::Result<()> {
    match command {
        InspectCommand::Meta { dir } => {
            let data = open::open(&dir.data_dir)?;
            let view = data.store.view();
            println!("data dir:          {}", dir.data_dir.display());
            println!(
                "format:            {}",
                data.format.as_deref().unwrap_or("(no t4-format file)")
            );
            println!("applied index:     {}", view.applied_index());
            println!("revision:          {}", view.revision());
            println!("compact revision:  {}", view.compact_revision());
            println!("leases:            {}", data.store.leases()?.len());
            let auth = data.store.auth()?;
            println!(
                "authentication:    {} ({} users, {} roles, auth revision {})",
                if auth.enabled { "enabled" } else { "disabled" },
                auth.users.len(),
                auth.roles.len(),
                auth.revision
            );
            println!(
                "store index:       {} (persisted in store/)",
                data.store_index
            );
            println!(
                "WAL entries past the store: {} (replayed at start)",
                data.replayed
            );
            println!("WAL segments:      {}", data.wal.len());
            for s in &data.wal {
                let last = s
                    .last_index
                    .map_or_else(|| "-".to_string(), |i| i.to_string());
                println!(
                    "  {}  entries {}..={}  ({} entries, {} bytes{})",
                    s.file,
                    s.first_index,
                    last,
                    s.entries,
                    s.bytes,
                    if s.torn { ", torn tail" } else { "" }
                );
            }
        }
        InspectCommand::List {
            dir,
            prefix,
            revision,
            keys_only,
        } => {
            let data = open::open(&dir.data_dir)?;
            let view = data.store.view();
            let rev = at(&view, revision)?;
            for kv in scan(&view, &range_of(&prefix), rev)? {
                if keys_only {
                    println!("{}", show(&kv.key));
                } else {
                    println!("{}", describe(&kv));
                }
            }
        }
        InspectCommand::Get { dir, key, revision } => {
            let data = open::open(&dir.data_dir)?;
            let view = data.store.view();
            let rev = at(&view, revision)?;
            match view.get(key.as_bytes(), rev)? {
                Some(kv) => println!("{}", describe(&kv)),
                None => anyhow::bail!("key {key:?} does not exist at revision {rev}"),
            }
        }
        InspectCommand::History { dir, key } => {
            let data = open::open(&dir.data_dir)?;
            let view = data.store.view();
            let from = view.compact_revision().max(1);
            let mut found = 0;
            view.events(from, view.revision(), &mut |event| {
                if event.kv.key == key.as_bytes() {
                    found += 1;
                    match event.kind {
                        EventKind::Put => println!(
                            "{}\tPUT\tversion={} lease={}\t{}",
                            event.kv.mod_revision,
                            event.kv.version,
                            event.kv.lease,
                            show(&event.kv.value)
                        ),
                        EventKind::Delete => println!("{}\tDELETE", event.kv.mod_revision),
                    }
                }
                ControlFlow::Continue(())
            })?;
            if found == 0 {
                eprintln!(
                    "no change of {key:?} in revisions {from}..={} (older history is compacted)",
                    view.revision()
                );
            }
        }
        InspectCommand::Diff {
            dir,
            from,
            to,
            prefix,
        } => {
            let data = open::open(&dir.data_dir)?;
            let view = data.store.view();
            let from = at(&view, Some(from))?;
            let to = at(&view, to)?;
            let range = range_of(&prefix);
            let old = scan(&view, &range, from)?;
            let new = scan(&view, &range, to)?;
            let (mut i, mut j) = (0, 0);
            while i < old.len() || j < new.len() {
                let order = match (old.get(i), new.get(j)) {
                    (Some(a), Some(b)) => a.key.cmp(&b.key),
                    (Some(_), None) => std::cmp::Ordering::Less,
                    _ => std::cmp::Ordering::Greater,
                };
                match order {
                    std::cmp::Ordering::Less => {
                        println!("- {}", describe(&old[i]));
                        i += 1;
                    }
                    std::cmp::Ordering::Greater => {
                        println!("+ {}", describe(&new[j]));
                        j += 1;
                    }
                    std::cmp::Ordering::Equal => {
                        if old[i].mod_revision != new[j].mod_revision {
                            println!("~ {}", describe(&new[j]));
                        }
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
    }
    Ok(())
}
