//! `t4 bench`: a load generator that speaks the etcd v3 gRPC protocol.
//!
//! Because it only uses the etcd v3 API, the same command measures a `t4 run` server and a real
//! etcd, which is how `scripts/bench-vs-etcd.sh` compares them. KV calls go through a lean
//! unary-call client on HTTP/2 (`unary.rs`: each request is two frames, as grpc-go sends it,
//! and costs the load generator about half the CPU of tonic's client); the watch stream goes
//! through the generated tonic client of `t4-proto`.
//!
//! Workloads (`--workload`):
//!
//! | name | what one operation is |
//! |---|---|
//! | `seq-put` | one client, one put at a time |
//! | `par-put` | `--clients` concurrent clients, each one put at a time |
//! | `seq-get` | one client, a linearizable get of a random preloaded key |
//! | `par-get` | `--clients` concurrent clients doing `seq-get`'s operation |
//! | `mixed` | a get (with probability `--read-ratio`, default 0.5) or a put of a random preloaded key |
//! | `txn` | compare-and-swap: `If(mod_revision(k) == last seen) Then(Put k) Else(Get k)`; a failed compare refreshes the client's view of `k` from the `Else` branch and retries, so a conflict costs one more txn |
//! | `range` | a range of `--range-size` (default 100) consecutive preloaded keys from a random start |
//! | `list` | a paged list of the whole keyspace, as Kubernetes lists: ranges of `--range-size` keys with `limit`, each page read at the first page's revision and answering the count of the rest of the range |
//! | `watch` (or `watch-latency`) | one watcher on the key prefix, `--clients` (default 1) putters; the latency is from the put's response to the watch event of its revision |
//!
//! The n-th put of the run writes key `n mod keyspace`; gets, ranges and mixed operations pick
//! keys uniformly at random with a fixed per-client seed, so two runs (against two servers) issue
//! the same requests. In `txn`, client `c` only uses keys `i` with `i mod clients == c`, so clients
//! never conflict with each other; conflicts come from other writers (or keys left by a previous
//! run) and are counted.
//!
//! Keys are `--prefix` followed by the key's index, zero-padded to exactly `--key-size` bytes,
//! so they sort in index order; values are `--value-size` random (incompressible) bytes.
//!
//! `--conns` gRPC connections are opened (round-robin over `--endpoints`) and client `i` uses
//! connection `i mod conns`. The run stops after `--ops` operations in total (default 10,000) or
//! after `--duration`, whichever comes first. It prints throughput and latency percentiles, or one
//! JSON object with `--json`.

mod keys;
mod report;
mod unary;
mod workload;

use std::time::Duration;

pub use report::{LatencySummary, Report};

/// Settings of `t4 bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(long, value_enum)]
    pub workload: Workload,

    /// etcd v3 endpoints (`host:port` or `http://host:port`), comma-separated; connections are
    /// spread over them round-robin.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:3379",
        env = "T4_BENCH_ENDPOINTS"
    )]
    pub endpoints: Vec<String>,

    /// Concurrent clients (each has one request in flight). Default: 1 for `seq-*` and `watch`,
    /// 16 otherwise.
    #[arg(long)]
    pub clients: Option<usize>,

    /// gRPC connections, shared round-robin by the clients.
    #[arg(long, default_value_t = 1)]
    pub conns: usize,

    /// Total operations over all clients. Default: 10000, or unlimited when `--duration` is given.
    #[arg(long)]
    pub ops: Option<u64>,

    /// Stop after this long (e.g. `10s`, `1m`).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub duration: Option<Duration>,

    /// Size of every key in bytes (the prefix plus the zero-padded key index).
    #[arg(long, default_value_t = 64)]
    pub key_size: usize,

    /// Size of every value in bytes.
    #[arg(long, default_value_t = 256)]
    pub value_size: usize,

    /// Number of distinct keys the workload uses.
    #[arg(long, default_value_t = 10_000)]
    pub keyspace: u64,

    /// Every benchmark key starts with this prefix (the watch workload watches it).
    #[arg(long, default_value = "/t4-bench/")]
    pub prefix: String,

    /// `mixed`: fraction of operations that are gets (the rest are puts).
    #[arg(long, default_value_t = 0.5)]
    pub read_ratio: f64,

    /// `range`: keys per range request; `list`: keys per page.
    #[arg(long, default_value_t = 100)]
    pub range_size: u64,

    /// Gets and ranges are serializable (served locally) instead of linearizable.
    #[arg(long)]
    pub serializable: bool,

    /// Print one JSON object instead of the human-readable report.
    #[arg(long)]
    pub json: bool,
}

/// A benchmark workload (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// One client, sequential puts.
    SeqPut,
    /// Concurrent puts.
    ParPut,
    /// One client, sequential linearizable gets of preloaded keys.
    SeqGet,
    /// Concurrent linearizable gets of preloaded keys.
    ParGet,
    /// Concurrent gets and puts of preloaded keys (`--read-ratio` gets).
    Mixed,
    /// Concurrent compare-and-swap txns on `mod_revision`.
    Txn,
    /// Concurrent ranges of `--range-size` keys.
    Range,
    /// Concurrent paged lists of the whole keyspace, `--range-size` keys per page.
    List,
    /// Put-to-watch-event latency (also accepted as `watch-latency`).
    #[value(alias = "watch-latency")]
    Watch,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::SeqPut => "seq-put",
            Workload::ParPut => "par-put",
            Workload::SeqGet => "seq-get",
            Workload::ParGet => "par-get",
            Workload::Mixed => "mixed",
            Workload::Txn => "txn",
            Workload::Range => "range",
            Workload::List => "list",
            Workload::Watch => "watch",
        }
    }

    /// Whether the workload is defined as a single sequential client.
    fn sequential(self) -> bool {
        matches!(self, Workload::SeqPut | Workload::SeqGet)
    }

    /// Whether the keyspace is written before the measurement starts.
    fn preloads(self) -> bool {
        matches!(
            self,
            Workload::SeqGet
                | Workload::ParGet
                | Workload::Mixed
                | Workload::Range
                | Workload::List
        )
    }

    fn default_clients(self) -> usize {
        if self.sequential() || self == Workload::Watch {
            1
        } else {
            16
        }
    }
}

/// A `t4 bench` setting that cannot work; the message says which flag to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ArgError {
    /// No endpoint to connect to.
    #[error("--endpoints is empty: give at least one host:port")]
    NoEndpoints,
    /// An endpoint that is not `host:port` or `http://host:port`.
    #[error("--endpoints: {0:?} is not host:port or http://host:port (TLS is not supported)")]
    BadEndpoint(String),
    /// A count that must be at least one.
    #[error("--{flag} must be at least 1")]
    Zero {
        /// The flag, without dashes.
        flag: &'static str,
    },
    /// A sequential workload with several clients.
    #[error("--workload {workload} uses exactly one client; drop --clients or use par-{rest}")]
    SequentialClients {
        /// The workload's name.
        workload: &'static str,
        /// The workload name without `seq-`.
        rest: &'static str,
    },
    /// More connections than clients would leave connections idle.
    #[error(
        "--conns ({conns}) is more than --clients ({clients}); each client uses one connection"
    )]
    ConnsOverClients {
        /// `--conns`.
        conns: usize,
        /// The number of clients.
        clients: usize,
    },
    /// The key index does not fit in the key.
    #[error(
        "--key-size {key_size} is too small: the prefix {prefix:?} and {digits} digits of key index need {need} bytes"
    )]
    KeyTooSmall {
        /// `--key-size`.
        key_size: usize,
        /// `--prefix`.
        prefix: String,
        /// Digits needed for the largest key index.
        digits: usize,
        /// Bytes needed.
        need: usize,
    },
    /// `--read-ratio` outside 0..=1.
    #[error("--read-ratio must be between 0 and 1, got {0}")]
    ReadRatio(f64),
    /// Fewer keys than one range request needs.
    #[error("--keyspace ({keyspace}) must be at least --range-size ({range_size})")]
    RangeOverKeyspace {
        /// `--keyspace`.
        keyspace: u64,
        /// `--range-size`.
        range_size: u64,
    },
    /// `txn` gives every client its own keys.
    #[error(
        "--workload txn gives each client its own keys: --keyspace ({keyspace}) must be at least --clients ({clients})"
    )]
    TxnKeyspace {
        /// `--keyspace`.
        keyspace: u64,
        /// The number of clients.
        clients: usize,
    },
    /// `--prefix` has no key after it to bound the watch range.
    #[error("--prefix must not be empty or consist only of 0xff bytes")]
    BadPrefix,
}

/// The validated settings of one run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    pub workload: Workload,
    /// Endpoint URIs (`http://host:port`).
    pub endpoints: Vec<String>,
    pub clients: usize,
    pub conns: usize,
    /// `None`: until the deadline.
    pub ops: Option<u64>,
    pub duration: Option<Duration>,
    pub keys: keys::KeySpace,
    pub value_size: usize,
    pub read_ratio: f64,
    pub range_size: u64,
    pub serializable: bool,
}

impl BenchArgs {
    /// Checks the settings and fills in the defaults that depend on the workload.
    pub(crate) fn plan(&self) -> Result<Plan, ArgError> {
        let workload = self.workload;
        if self.endpoints.is_empty() {
            return Err(ArgError::NoEndpoints);
        }
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| endpoint_uri(e))
            .collect::<Result<Vec<_>, _>>()?;
        let clients = match self.clients {
            Some(0) => return Err(ArgError::Zero { flag: "clients" }),
            Some(n) if n > 1 && workload.sequential() => {
                let name = workload.name();
                return Err(ArgError::SequentialClients {
                    workload: name,
                    rest: name.trim_start_matches("seq-"),
                });
            }
            Some(n) => n,
            None => workload.default_clients(),
        };
        if self.conns == 0 {
            return Err(ArgError::Zero { flag: "conns" });
        }
        if self.conns > clients {
            return Err(ArgError::ConnsOverClients {
                conns: self.conns,
                clients,
            });
        }
        if self.ops == Some(0) {
            return Err(ArgError::Zero { flag: "ops" });
        }
        if self.duration == Some(Duration::ZERO) {
            return Err(ArgError::Zero { flag: "duration" });
        }
        let ops = match (self.ops, self.duration) {
            (Some(n), _) => Some(n),
            (None, Some(_)) => None,
            (None, None) => Some(10_000),
        };
        if self.keyspace == 0 {
            return Err(ArgError::Zero { flag: "keyspace" });
        }
        let keys = keys::KeySpace::new(self.prefix.as_bytes(), self.key_size, self.keyspace)
            .map_err(|need| ArgError::KeyTooSmall {
                key_size: self.key_size,
                prefix: self.prefix.clone(),
                digits: keys::digits(self.keyspace - 1),
                need,
            })?;
        if keys.prefix_end().is_none() {
            return Err(ArgError::BadPrefix);
        }
        if !(0.0..=1.0).contains(&self.read_ratio) {
            return Err(ArgError::ReadRatio(self.read_ratio));
        }
        if self.range_size == 0 {
            return Err(ArgError::Zero { flag: "range-size" });
        }
        if workload == Workload::Range && self.keyspace < self.range_size {
            return Err(ArgError::RangeOverKeyspace {
                keyspace: self.keyspace,
                range_size: self.range_size,
            });
        }
        if workload == Workload::Txn && self.keyspace < clients as u64 {
            return Err(ArgError::TxnKeyspace {
                keyspace: self.keyspace,
                clients,
            });
        }
        Ok(Plan {
            workload,
            endpoints,
            clients,
            conns: self.conns,
            ops,
            duration: self.duration,
            keys,
            value_size: self.value_size,
            read_ratio: self.read_ratio,
            range_size: self.range_size,
            serializable: self.serializable,
        })
    }
}

/// `host:port` or `http://host:port` → `http://host:port`.
fn endpoint_uri(endpoint: &str) -> Result<String, ArgError> {
    let endpoint = endpoint.trim();
    let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
    let bad = || ArgError::BadEndpoint(endpoint.to_string());
    if rest.is_empty() || rest.contains("://") || rest.contains('/') {
        return Err(bad());
    }
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(bad());
    }
    Ok(format!("http://{rest}"))
}

/// Runs `t4 bench`: connects, preloads if the workload reads, measures, and prints the report.
pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let plan = args.plan()?;
    let report = workload::run(&plan, !args.json).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.ops == 0 {
        anyhow::bail!(
            "no operation succeeded{}",
            report
                .first_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn parse(args: &[&str]) -> BenchArgs {
        let mut argv = vec!["t4-bench"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).expect("arguments parse").bench
    }

    fn plan(args: &[&str]) -> Result<Plan, ArgError> {
        parse(args).plan()
    }

    #[test]
    fn defaults_follow_the_issue() {
        let p = plan(&["--workload", "par-put"]).unwrap();
        assert_eq!(p.endpoints, vec!["http://127.0.0.1:3379".to_string()]);
        assert_eq!(p.clients, 16);
        assert_eq!(p.conns, 1);
        assert_eq!(p.ops, Some(10_000));
        assert_eq!(p.keys.key_size(), 64);
        assert_eq!(p.value_size, 256);
        assert_eq!(p.keys.keyspace(), 10_000);
        assert_eq!(plan(&["--workload", "seq-put"]).unwrap().clients, 1);
        assert_eq!(plan(&["--workload", "watch"]).unwrap().clients, 1);
    }

    #[test]
    fn workload_is_required() {
        assert!(Cli::try_parse_from(["t4-bench"]).is_err());
        assert!(Cli::try_parse_from(["t4-bench", "--workload", "nope"]).is_err());
    }

    #[test]
    fn every_workload_name_parses_to_itself() {
        use clap::ValueEnum;
        for w in Workload::value_variants() {
            assert_eq!(parse(&["--workload", w.name()]).workload, *w);
        }
    }

    #[test]
    fn endpoints_accept_host_port_and_http_urls() {
        let p = plan(&[
            "--workload",
            "par-get",
            "--endpoints",
            "127.0.0.1:2379,http://localhost:3379",
        ])
        .unwrap();
        assert_eq!(
            p.endpoints,
            vec!["http://127.0.0.1:2379", "http://localhost:3379"]
        );
        for bad in [
            "localhost",
            "https://x:1",
            "x:notaport",
            ":80",
            "x:1/path",
            "",
        ] {
            assert_eq!(
                plan(&["--workload", "par-get", "--endpoints", bad]),
                Err(ArgError::BadEndpoint(bad.to_string())),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn sequential_workloads_refuse_several_clients() {
        let err = plan(&["--workload", "seq-get", "--clients", "4"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--workload seq-get uses exactly one client; drop --clients or use par-get"
        );
        assert!(plan(&["--workload", "seq-get", "--clients", "1"]).is_ok());
    }

    #[test]
    fn zero_counts_are_refused() {
        for flag in [
            "--clients",
            "--conns",
            "--ops",
            "--keyspace",
            "--range-size",
        ] {
            let err = plan(&["--workload", "par-put", flag, "0"]).unwrap_err();
            assert_eq!(err.to_string(), format!("{flag} must be at least 1"));
        }
        let err = plan(&["--workload", "par-put", "--duration", "0s"]).unwrap_err();
        assert_eq!(err.to_string(), "--duration must be at least 1");
    }

    #[test]
    fn more_conns_than_clients_is_refused() {
        let err = plan(&["--workload", "par-put", "--clients", "2", "--conns", "3"]).unwrap_err();
        assert_eq!(
            err,
            ArgError::ConnsOverClients {
                conns: 3,
                clients: 2
            }
        );
        assert!(plan(&["--workload", "par-put", "--clients", "3", "--conns", "3"]).is_ok());
    }

    #[test]
    fn duration_makes_ops_unlimited_unless_given() {
        let p = plan(&["--workload", "par-put", "--duration", "5s"]).unwrap();
        assert_eq!((p.ops, p.duration), (None, Some(Duration::from_secs(5))));
        let p = plan(&["--workload", "par-put", "--duration", "5s", "--ops", "7"]).unwrap();
        assert_eq!(p.ops, Some(7));
    }

    #[test]
    fn keys_must_fit_prefix_and_index() {
        // "/t4-bench/" is 10 bytes; 9,999 needs 4 digits.
        assert!(plan(&["--workload", "par-put", "--key-size", "14"]).is_ok());
        let err = plan(&["--workload", "par-put", "--key-size", "13"]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "--key-size 13 is too small: the prefix \"/t4-bench/\" and 4 digits of key index need 14 bytes"
        );
    }

    #[test]
    fn ratio_range_and_txn_limits() {
        assert_eq!(
            plan(&["--workload", "mixed", "--read-ratio", "1.5"]),
            Err(ArgError::ReadRatio(1.5))
        );
        assert!(plan(&["--workload", "mixed", "--read-ratio", "1"]).is_ok());
        assert_eq!(
            plan(&["--workload", "range", "--keyspace", "50"]),
            Err(ArgError::RangeOverKeyspace {
                keyspace: 50,
                range_size: 100
            })
        );
        assert_eq!(
            plan(&["--workload", "txn", "--keyspace", "8"]),
            Err(ArgError::TxnKeyspace {
                keyspace: 8,
                clients: 16
            })
        );
        assert_eq!(
            plan(&["--workload", "watch", "--prefix", ""]),
            Err(ArgError::BadPrefix)
        );
    }
}
