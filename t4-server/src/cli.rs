//! The `t4` command line.
//!
//! ```text
//! t4 run                       serve the etcd v3 API (flags or T4_* environment variables)
//! t4 bench                     load-test an etcd v3 endpoint
//! t4 snapshot restore FILE     create a data dir from a snapshot (etcdctl snapshot save)
//! t4 snapshot status FILE      check a snapshot and print what it holds
//! t4 inspect meta|list|get|history|diff --data-dir DIR
//!                              look into a data dir offline, read-only
//! t4 restore list|checkpoint   checkpoints in a bucket; materialise one into a data dir
//! t4 status                    a bucket prefix: writer, term, latest checkpoint, log after it
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::bench;
use crate::run::{self, RunArgs};
use crate::services::maintenance::ETCD_VERSION;

const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (serves the etcd v3 API, reported to clients as etcd ",
    "3.5.0",
    ")"
);

/// t4: an embeddable, S3-durable key-value store with an etcd v3 compatible server.
#[derive(Parser, Debug)]
#[command(name = "t4", version, long_version = LONG_VERSION, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the etcd v3 gRPC API (KV, Watch, Lease, Cluster, Maintenance, Auth, health) from a
    /// local data directory. Every flag can also be set with its T4_* environment variable;
    /// flags win. Stops cleanly on SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Measure an etcd v3 endpoint (a t4 server or a real etcd) under a workload.
    Bench(Box<bench::BenchArgs>),
    /// Snapshots taken with the Maintenance Snapshot RPC (`etcdctl snapshot save`).
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Look into a data directory offline, read-only (stop the node first): meta, list, get,
    /// history, diff.
    #[command(subcommand)]
    Inspect(crate::inspect::InspectCommand),
    /// Checkpoints in a bucket: list them, or materialise one into a new data directory.
    #[command(subcommand)]
    Restore(crate::bucket::RestoreCommand),
    /// Show a bucket prefix: the writer node and term, the latest checkpoint, the WAL objects
    /// after it. Read-only; safe while a node serves the prefix.
    Status(crate::bucket::StatusArgs),
}

/// `t4 snapshot` subcommands.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Create a new data directory from a snapshot file; `t4 run --data-dir DIR` then serves
    /// the snapshot's keys at the snapshot's revision.
    Restore {
        /// The snapshot file: saved by `etcdctl snapshot save` from a t4 server (its trailing
        /// SHA-256 digest is checked) or the bytes of an embedded node's `Node::snapshot()`.
        file: PathBuf,
        /// The data directory to create; it must not exist or be empty.
        #[arg(long, env = "T4_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Check a snapshot file (digest, checksums, completeness) and print its revision and size.
    Status {
        /// The snapshot file.
        file: PathBuf,
    },
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::new(format!(
        "warn,t4={level},t4_server={level},t4_tokio={level}"
    ));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn read_snapshot(file: &PathBuf) -> anyhow::Result<bytes::Bytes> {
    Ok(bytes::Bytes::from(
        std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
    ))
}

fn snapshot(command: SnapshotCommand) -> anyhow::Result<()> {
    match command {
        SnapshotCommand::Restore { file, data_dir } => {
            let info = t4::restore_snapshot(read_snapshot(&file)?, &data_dir)?;
            println!(
                "restored {} keys and {} leases at revision {} into {}",
                info.keys,
                info.leases,
                info.revision,
                data_dir.display()
            );
        }
        SnapshotCommand::Status { file } => {
            let bytes = read_snapshot(&file)?;
            let (_, info) = t4_core::snapshot::decode_file(&bytes)?;
            println!(
                "revision {}, {} keys, {} leases, {} bytes: complete and undamaged",
                info.revision,
                info.keys,
                info.leases,
                bytes.len()
            );
        }
    }
    Ok(())
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let runtime = || {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("starting the tokio runtime")
    };
    match cli.command {
        Command::Run(args) => {
            init_logging(&args.log_level);
            runtime()?.block_on(run::run(*args))
        }
        Command::Bench(args) => runtime()?.block_on(bench::run(*args)),
        Command::Snapshot(command) => snapshot(command),
        Command::Inspect(command) => crate::inspect::run(command),
        Command::Restore(command) => runtime()?.block_on(crate::bucket::restore(command)),
        Command::Status(args) => runtime()?.block_on(crate::bucket::status(args)),
    }
}

/// Runs the `t4` command; exits 1 with the error on stderr if it fails.
pub fn main() -> ExitCode {
    debug_assert_eq!(ETCD_VERSION, "3.5.0", "keep LONG_VERSION in step");
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("t4: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_defaults_need_no_flags() {
        let cli = Cli::try_parse_from(["t4", "run"]).expect("parses");
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.listen, ["0.0.0.0:3379"]);
        assert_eq!(args.data_dir, PathBuf::from("./t4-data"));
        assert_eq!(args.max_request_bytes, 1_572_864);
        assert_eq!(args.max_txn_ops, 128);
        assert_eq!(args.read_cache_mb, 64);
        assert_eq!(args.quota(), 2 << 30);
        assert_eq!(
            args.metrics_listen(),
            None,
            "no metrics endpoint by default"
        );
    }

    #[test]
    fn an_empty_metrics_address_means_no_endpoint() {
        let parse = |value: &str| {
            let cli =
                Cli::try_parse_from(["t4", "run", "--metrics-listen", value]).expect("parses");
            let Command::Run(args) = cli.command else {
                panic!("not run")
            };
            args.metrics_listen().map(str::to_string)
        };
        assert_eq!(parse(""), None);
        assert_eq!(parse("127.0.0.1:2112").as_deref(), Some("127.0.0.1:2112"));
    }

    #[test]
    fn listen_takes_several_addresses_each_with_its_scheme() {
        use crate::run::config::Listen;
        let parse = |flags: &[&str]| {
            let cli = Cli::try_parse_from([&["t4", "run"], flags].concat()).expect("parses");
            let Command::Run(args) = cli.command else {
                panic!("not run")
            };
            args.listen_addresses().map_err(|e| e.to_string())
        };
        let listen = |address: &str, tls, plain| Listen {
            address: address.to_string(),
            tls,
            plain,
        };
        let cert = ["--client-tls-cert", "c.pem", "--client-tls-key", "k.pem"];
        assert_eq!(parse(&[]), Ok(vec![listen("0.0.0.0:3379", false, true)]));
        // Comma-separated and repeated; a bare address is TLS when a certificate is given.
        assert_eq!(
            parse(&["--listen", "127.0.0.1:1,[::1]:2", "--listen", "http://h:3"]),
            Ok(vec![
                listen("127.0.0.1:1", false, true),
                listen("[::1]:2", false, true),
                listen("h:3", false, true)
            ])
        );
        assert_eq!(
            parse(&[&cert[..], &["--listen", "a:1,http://b:2,https://c:3"]].concat()),
            Ok(vec![
                listen("a:1", true, false),
                listen("b:2", false, true),
                listen("c:3", true, false)
            ])
        );
        // An address under both schemes serves both (as etcd), wherever the second comes.
        assert_eq!(
            parse(
                &[
                    &cert[..],
                    &["--listen", "https://a:1,http://b:2,http://a:1"]
                ]
                .concat()
            ),
            Ok(vec![listen("a:1", true, true), listen("b:2", false, true)])
        );
        assert_eq!(
            parse(&[&cert[..], &["--listen", "a:1", "--listen", "http://a:1"]].concat()),
            Ok(vec![listen("a:1", true, true)])
        );
        let error = |flags: &[&str]| parse(flags).expect_err("refused");
        assert!(error(&["--listen", "a:1,http://a:1"]).contains("\"http://a:1\": given twice"));
        assert!(
            error(&[&cert[..], &["--listen", "https://a:1,http://a:1,a:1"]].concat())
                .contains("given twice")
        );
        assert!(error(&["--listen", "https://c:3"]).contains("https needs --client-tls-cert"));
        assert!(error(&["--listen", "unix://x"]).contains("not host:port, http://"));
        assert!(error(&["--listen", "http://"]).contains("not host:port"));
        assert!(error(&["--listen", "http://h:1/path"]).contains("not host:port"));
        assert!(error(&["--listen", "a:1,"]).contains("not host:port"));
    }

    #[test]
    fn an_invalid_log_level_is_a_clear_error() {
        let e = Cli::try_parse_from(["t4", "run", "--log-level", "loud"]).expect_err("refused");
        assert!(e.to_string().contains("loud"), "{e}");
    }
}
