//! Helpers shared by the end-to-end tests in `tests/tests/`: start the built `t4` binary on a
//! free loopback port with a fresh data directory, wait until it answers a real RPC, connect
//! the independent `etcd-client` crate to it, stop it with a signal, kill it on drop.
//!
//! In an integration test of this package, pass `t4_e2e::t4_bin!()` (the binary cargo built
//! for the tests) as the path; elsewhere, any `t4` binary:
//!
//! ```no_run
//! # async fn f() {
//! let server = t4_e2e::T4::start("target/debug/t4", &[]).await;
//! let mut client = server.client().await;
//! client.put("k", "v", None).await.unwrap();
//! # }
//! ```

// End-to-end tests run against real processes and real time.
#![allow(clippy::disallowed_methods)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use etcd_client;

pub mod http;
pub mod moto;
pub mod proxy;
pub mod tool;

/// The path of the `t4` binary under test (use inside an integration test of this package).
#[macro_export]
macro_rules! t4_bin {
    () => {
        env!("CARGO_BIN_EXE_t4-e2e-server")
    };
}

/// How long a server may take to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What precedes an address the server serves the etcd API on, in its log: one line per
/// `--listen` address.
const SERVING: &str = "serving the etcd v3 API address=";

/// The address in a log line announcing one the etcd API is served on.
fn serving_address(line: &str) -> Option<String> {
    line.split(SERVING)
        .nth(1)
        .map(|rest| rest.trim().to_string())
}

/// A running `t4 run` process.
pub struct T4 {
    child: Option<Child>,
    bin: PathBuf,
    /// `host:port` the server listens on.
    pub endpoint: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// Keeps a temporary data directory alive (none when the caller chose the directory).
    _tempdir: Option<tempfile::TempDir>,
    /// How clients reach a server started with TLS on its client port.
    tls: Option<etcd_client::TlsOptions>,
    /// Everything the server logged so far.
    log: Arc<Mutex<String>>,
    /// The thread that copies the server's stderr into `log`; it ends when the process does.
    log_reader: Option<std::thread::JoinHandle<()>>,
}

impl T4 {
    /// Starts `bin run` with a fresh temporary data directory, on a free loopback port, with
    /// `extra` flags.
    pub async fn start(bin: &str, extra: &[&str]) -> T4 {
        let dir = tempfile::tempdir().expect("creating a temporary data dir");
        let path = dir.path().join("data");
        let mut t4 = T4::start_in(bin, &path, extra).await;
        t4._tempdir = Some(dir);
        t4
    }

    /// Starts `bin run --data-dir data_dir` on a free loopback port with `extra` flags.
    pub async fn start_in(bin: &str, data_dir: &Path, extra: &[&str]) -> T4 {
        T4::start_with_env(bin, data_dir, extra, &[]).await
    }

    /// Like [`T4::start`] for a server with TLS on its client port (`--client-tls-*` among
    /// `extra`): `tls` is what the clients of [`T4::client`] (and the readiness check) use.
    pub async fn start_tls(bin: &str, extra: &[&str], tls: etcd_client::TlsOptions) -> T4 {
        let dir = tempfile::tempdir().expect("creating a temporary data dir");
        let path = dir.path().join("data");
        let mut t4 = T4::launch(bin, &path, extra, &[], Some(tls)).await;
        t4._tempdir = Some(dir);
        t4
    }

    /// Like [`T4::start_in`], with environment variables set for the process.
    pub async fn start_with_env(
        bin: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> T4 {
        T4::launch(bin, data_dir, extra, env, None).await
    }

    async fn launch(
        bin: &str,
        data_dir: &Path,
        extra: &[&str],
        env: &[(&str, &str)],
        tls: Option<etcd_client::TlsOptions>,
    ) -> T4 {
        let mut cmd = Command::new(bin);
        cmd.arg("run")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        // Settings from the environment of the test run must not leak into the server.
        for (key, _) in std::env::vars() {
            if key.starts_with("T4_") && !env.iter().any(|(k, _)| *k == key) {
                cmd.env_remove(key);
            }
        }
        let mut child = cmd.spawn().expect("starting the t4 binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let sink = log.clone();
        let log_reader = std::thread::spawn(move || {
            let mut addr_tx = Some(addr_tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(address) = serving_address(&line)
                    && let Some(tx) = addr_tx.take()
                {
                    let _ = tx.send(address);
                }
                let mut log = sink.lock().unwrap_or_else(|e| e.into_inner());
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut t4 = T4 {
            child: Some(child),
            bin: PathBuf::from(bin),
            endpoint: String::new(),
            data_dir: data_dir.to_path_buf(),
            _tempdir: None,
            tls,
            log,
            log_reader: Some(log_reader),
        };
        let addr = tokio::task::spawn_blocking(move || addr_rx.recv_timeout(START_TIMEOUT))
            .await
            .expect("waiting for the server");
        t4.endpoint = match addr {
            Ok(addr) => addr,
            Err(_) => panic!("t4 did not start; its log:\n{}", t4.log()),
        };
        t4.wait_ready().await;
        t4
    }

    /// Polls a real RPC until the server answers it.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut c) = self.try_client().await
                && c.status().await.is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "t4 at {} never answered Status; its log:\n{}",
                self.endpoint,
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A new client connected to the server.
    pub async fn client(&self) -> etcd_client::Client {
        self.try_client().await.expect("connecting to t4")
    }

    async fn try_client(&self) -> Result<etcd_client::Client, etcd_client::Error> {
        let options = self
            .tls
            .clone()
            .map(|tls| etcd_client::ConnectOptions::new().with_tls(tls));
        etcd_client::Client::connect([&self.endpoint], options).await
    }

    /// A raw gRPC channel to the server, for the generated `t4_proto` clients (to see wire
    /// fields `etcd-client` does not expose).
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.endpoint))
            .expect("endpoint")
            .connect()
            .await
            .expect("connecting to t4")
    }

    /// `host:port` of the metrics and health endpoint (the server was started with
    /// `--metrics-listen`; it logs the address before it serves gRPC).
    pub fn metrics_endpoint(&self) -> String {
        let log = self.log();
        log.split("serving metrics and health over HTTP address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_string)
            .unwrap_or_else(|| panic!("t4 serves no metrics endpoint; its log:\n{log}"))
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every address the server serves the etcd API on, in `--listen` order (the first is
    /// [`T4::endpoint`]).
    pub fn serving_addresses(&self) -> Vec<String> {
        self.log().lines().filter_map(serving_address).collect()
    }

    /// The binary this server runs.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// Sends `signal` (e.g. "TERM", "INT") and waits for the process to exit, at most
    /// `within`; panics if it does not. Async, so that the test's own clients keep running
    /// (they answer the server's goodbye on their connections) while the server stops.
    pub async fn stop_with(&mut self, signal: &str, within: Duration) -> ExitStatus {
        self.signal(signal);
        self.wait_for_exit(within).await
    }

    /// Sends `signal` (e.g. "TERM") to the process, without waiting for it to act on it.
    pub fn signal(&self, signal: &str) {
        let sent = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("running kill");
        assert!(sent.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `within` (it was sent a signal); panics if it
    /// does not.
    pub async fn wait_for_exit(&mut self, within: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().expect("waiting for t4") {
                // The process is gone, so its stderr ends: after this the log is complete.
                if let Some(reader) = self.log_reader.take() {
                    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "t4 did not exit within {within:?}; its log:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops the server with SIGTERM and asserts it exits 0 within 15 s.
    pub async fn stop(&mut self) {
        let status = self.stop_with("TERM", Duration::from_secs(15)).await;
        assert!(
            status.success(),
            "t4 exited with {status}; its log:\n{}",
            self.log()
        );
    }
}

impl Drop for T4 {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Sets up users as etcd's documentation does: `root` with the root role, and `alice`, whose
/// role `app-reader` may read `app/` only. Authentication stays off.
pub async fn add_root_and_alice(
    client: &mut etcd_client::Client,
    root_password: &str,
    alice_password: &str,
) {
    let mut auth = client.auth_client();
    auth.user_add("root", root_password, None)
        .await
        .expect("adding root");
    auth.user_grant_role("root", "root")
        .await
        .expect("granting root the root role");
    auth.role_add("app-reader")
        .await
        .expect("adding app-reader");
    let read_app = etcd_client::Permission::read("app/").with_prefix();
    auth.role_grant_permission("app-reader", read_app)
        .await
        .expect("granting app-reader its permission");
    auth.user_add("alice", alice_password, None)
        .await
        .expect("adding alice");
    auth.user_grant_role("alice", "app-reader")
        .await
        .expect("granting alice app-reader");
}

/// The gRPC status of an `etcd-client` error (panics if it is not one).
pub fn status(e: etcd_client::Error) -> tonic::Status {
    match e {
        etcd_client::Error::GRpcStatus(s) => s,
        other => panic!("expected a gRPC status, got {other:?}"),
    }
}
