//! `t4 run`'s settings: every flag, its `T4_*` environment variable and its default.
//!
//! A flag on the command line wins over its environment variable, which wins over the
//! default. docs/configuration.md lists the same table; keep them together.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

/// etcd's default backend quota (`--quota-backend-bytes` 0 means this).
pub const DEFAULT_QUOTA_BACKEND_BYTES: u64 = 2 << 30;

/// etcd's smallest progress-notify interval.
pub const MIN_PROGRESS_NOTIFY_INTERVAL: Duration = Duration::from_millis(100);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (use e.g. 500ms, 20s, 10m, 2h)"))
}

/// One address of `--listen`: what its connections speak. An address given under both
/// schemes takes both, as etcd's `--listen-client-urls` does: each connection is TLS when it
/// starts with a TLS handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listen {
    /// `host:port`.
    pub address: String,
    /// Connections may be TLS.
    pub tls: bool,
    /// Connections may be plain text.
    pub plain: bool,
}

/// Settings of `t4 run`.
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Directory of the node's data (WAL, store, cluster id). Created if missing.
    #[arg(long, env = "T4_DATA_DIR", default_value = "./t4-data")]
    pub data_dir: PathBuf,

    /// Addresses the etcd v3 gRPC API listens on, comma-separated or repeated: `host:port`
    /// (TLS when --client-tls-cert is given), `http://host:port` (plain, also with TLS
    /// configured) or `https://host:port` (TLS, needs --client-tls-cert). Port 0 picks a free
    /// port.
    #[arg(
        long,
        env = "T4_LISTEN",
        default_value = "0.0.0.0:3379",
        value_delimiter = ','
    )]
    pub listen: Vec<String>,

    /// Address of the HTTP endpoint serving Prometheus metrics (`/metrics`) and etcd's
    /// `/health` (`host:port`; port 0 picks a free port). Default: none, no endpoint.
    #[arg(long, env = "T4_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,

    /// URLs clients reach this member at, comma-separated, as `MemberList` reports them.
    /// Default: one per --listen address, `http://` or `https://` (TLS) + the address, with
    /// an unspecified host (0.0.0.0, ::) replaced by this machine's hostname.
    #[arg(long, env = "T4_ADVERTISE_CLIENT_URLS", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,

    /// This member's name; its member id is derived from it. Default: the hostname.
    #[arg(long, env = "T4_NODE_ID")]
    pub node_id: Option<String>,

    /// Log level: error, warn, info, debug or trace.
    #[arg(long, env = "T4_LOG_LEVEL", default_value = "info", value_parser = ["error", "warn", "info", "debug", "trace"])]
    pub log_level: String,

    /// Largest write request accepted, in bytes (etcd's default, 1.5 MiB). gRPC messages up to
    /// 512 KiB more are read, so that a too-large request gets etcd's "request is too large".
    #[arg(long, env = "T4_MAX_REQUEST_BYTES", default_value_t = 1_572_864, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_request_bytes: u32,

    /// Most compares, and most operations per branch, in one txn (etcd's default, 128).
    #[arg(long, env = "T4_MAX_TXN_OPS", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_txn_ops: u32,

    /// Size, in MiB, of the in-memory cache of keys' latest versions that answers point
    /// reads without searching the store; 0 turns it off.
    #[arg(long, env = "T4_READ_CACHE_MB", default_value_t = 64)]
    pub read_cache_mb: u64,

    /// Size of the data directory (bytes) above which the NOSPACE alarm is raised and writes
    /// that add data are refused, as in etcd. 0 means etcd's default, 2 GiB.
    #[arg(long, env = "T4_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// Interval of the progress notifications of watches created with `progress_notify`
    /// (etcd's default, 10m; at least 100ms).
    #[arg(long, env = "T4_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub watch_progress_notify_interval: Duration,

    /// How often the server pings an idle client connection (HTTP/2 keepalive), as etcd's
    /// `--grpc-keepalive-interval`. 0 disables the pings.
    #[arg(long, env = "T4_GRPC_KEEPALIVE_INTERVAL", default_value = "2h", value_parser = parse_duration)]
    pub grpc_keepalive_interval: Duration,

    /// How long the server waits for a keepalive ping's answer before closing the connection,
    /// as etcd's `--grpc-keepalive-timeout`.
    #[arg(long, env = "T4_GRPC_KEEPALIVE_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub grpc_keepalive_timeout: Duration,

    /// The tokens `Authenticate` hands out, as etcd's `--auth-token`: `simple` (in memory),
    /// or `jwt,sign-method=RS256|PS256|ES256|EdDSA|HS256|…,pub-key=PATH,priv-key=PATH,ttl=5m`
    /// (signed tokens that survive a restart).
    #[arg(long, env = "T4_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// How long a simple token handed out by `Authenticate` stays valid after its last use,
    /// as etcd's `--auth-token-ttl`.
    #[arg(long, env = "T4_AUTH_TOKEN_TTL", default_value = "5m", value_parser = parse_duration)]
    pub auth_token_ttl: Duration,

    /// bcrypt cost of the password hashes of users added or changed (etcd's `--bcrypt-cost`,
    /// 4 to 31; each step doubles the time to add a user or authenticate).
    #[arg(long, env = "T4_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Serve TLS on the client port with this PEM certificate (chain), with
    /// `--client-tls-key` (etcd's `--cert-file`). Plain TCP without it.
    #[arg(long, env = "T4_CLIENT_TLS_CERT", value_name = "PATH")]
    pub client_tls_cert: Option<PathBuf>,

    /// The PEM private key of `--client-tls-cert` (etcd's `--key-file`).
    #[arg(long, env = "T4_CLIENT_TLS_KEY", value_name = "PATH")]
    pub client_tls_key: Option<PathBuf>,

    /// Require every client to present a certificate signed by a CA in this PEM file
    /// (etcd's `--trusted-ca-file` with `--client-cert-auth`); while authentication is
    /// enabled, a request without a token is then made as the user named by the
    /// certificate's common name. Needs `--client-tls-cert`.
    #[arg(long, env = "T4_CLIENT_TLS_CA", value_name = "PATH")]
    pub client_tls_ca: Option<PathBuf>,

    /// On SIGINT/SIGTERM, how long in-flight requests may take to finish before the server
    /// drops them and closes the store anyway.
    #[arg(long, env = "T4_SHUTDOWN_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Durability beyond the local disk (S3) and WAL / checkpoint settings.
    #[command(flatten)]
    pub remote: super::remote::RemoteArgs,
}

impl RunArgs {
    /// The metrics address, if the endpoint is on (an empty value means off).
    pub fn metrics_listen(&self) -> Option<&str> {
        self.metrics_listen.as_deref().filter(|a| !a.is_empty())
    }

    /// The client port's TLS settings, loaded from their files, if TLS is on.
    pub fn client_tls(&self) -> anyhow::Result<Option<super::tls::ClientTls>> {
        match (&self.client_tls_cert, &self.client_tls_key) {
            (Some(cert), Some(key)) => Ok(Some(super::tls::ClientTls::load(
                cert,
                key,
                self.client_tls_ca.as_deref(),
            )?)),
            _ => Ok(None),
        }
    }

    /// The addresses of `--listen`, in the order given (checked by [`RunArgs::validate`]).
    pub fn listen_addresses(&self) -> anyhow::Result<Vec<Listen>> {
        let tls = self.client_tls_cert.is_some();
        let mut addresses: Vec<Listen> = Vec::new();
        for item in &self.listen {
            let (address, tls) = match item.split_once("://") {
                None => (item.as_str(), tls),
                Some(("http", address)) => (address, false),
                Some(("https", address)) if tls => (address, true),
                Some(("https", _)) => anyhow::bail!(
                    "--listen {item:?}: https needs --client-tls-cert and --client-tls-key"
                ),
                // Another scheme: refused below, as a malformed address is.
                Some(_) => ("", false),
            };
            if address.is_empty() || address.contains('/') {
                anyhow::bail!(
                    "--listen {item:?}: not host:port, http://host:port or https://host:port"
                );
            }
            match addresses.iter_mut().find(|l| l.address == address) {
                Some(listen) => {
                    let kind = if tls {
                        &mut listen.tls
                    } else {
                        &mut listen.plain
                    };
                    if *kind {
                        anyhow::bail!("--listen {item:?}: given twice");
                    }
                    *kind = true;
                }
                None => addresses.push(Listen {
                    address: address.to_string(),
                    tls,
                    plain: !tls,
                }),
            }
        }
        Ok(addresses)
    }

    /// The quota in effect.
    pub fn quota(&self) -> u64 {
        if self.quota_backend_bytes == 0 {
            DEFAULT_QUOTA_BACKEND_BYTES
        } else {
            self.quota_backend_bytes
        }
    }

    /// Checks what clap cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.watch_progress_notify_interval < MIN_PROGRESS_NOTIFY_INTERVAL {
            anyhow::bail!(
                "--watch-progress-notify-interval must be at least {:?}, got {:?}",
                MIN_PROGRESS_NOTIFY_INTERVAL,
                self.watch_progress_notify_interval
            );
        }
        if self.grpc_keepalive_timeout.is_zero() {
            anyhow::bail!("--grpc-keepalive-timeout must be greater than 0");
        }
        match (&self.client_tls_cert, &self.client_tls_key) {
            (Some(_), None) => anyhow::bail!("--client-tls-cert needs --client-tls-key"),
            (None, Some(_)) => anyhow::bail!("--client-tls-key needs --client-tls-cert"),
            (None, None) if self.client_tls_ca.is_some() => {
                anyhow::bail!("--client-tls-ca needs --client-tls-cert and --client-tls-key")
            }
            _ => {}
        }
        self.listen_addresses()?;
        for url in &self.advertise_client_urls {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                anyhow::bail!("--advertise-client-urls: {url:?} is not an http:// or https:// URL");
            }
        }
        Ok(())
    }
}
