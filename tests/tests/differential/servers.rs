//! Starting the two servers under comparison on loopback ports with temporary data dirs.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use t4_proto::etcdserverpb::RangeRequest;
use t4_proto::etcdserverpb::kv_client::KvClient;
use tonic::transport::{Channel, Endpoint};

/// The real etcd 3.4 (Debian's etcd-server, installed by `scripts/install-test-deps.sh`).
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// A running server, killed when dropped.
pub struct Server {
    /// What it is, for messages.
    pub name: String,
    /// `http://127.0.0.1:port`.
    pub endpoint: String,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A connection to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint.clone())
            .expect("a valid URI")
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.name))
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a loopback port")
        .port()
}

fn spawn(name: &str, dir: tempfile::TempDir, port: u16, cmd: &mut Command) -> Server {
    let log = std::fs::File::create(dir.path().join("log")).expect("creating the log file");
    let err = log.try_clone().expect("cloning the log file handle");
    let child = cmd
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {name}: {e}"));
    Server {
        name: name.to_string(),
        endpoint: format!("http://127.0.0.1:{port}"),
        child,
        dir,
    }
}

/// Starts a single-member etcd 3.4 on free loopback ports.
pub async fn start_etcd() -> Server {
    assert!(
        Path::new(ETCD_BIN).exists(),
        "{ETCD_BIN} is missing: run scripts/install-test-deps.sh (Debian's etcd-server)"
    );
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let (client, peer) = (free_port(), free_port());
    let client_url = format!("http://127.0.0.1:{client}");
    let peer_url = format!("http://127.0.0.1:{peer}");
    let mut cmd = Command::new(ETCD_BIN);
    cmd.arg("--name")
        .arg("default")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen-client-urls", &client_url])
        .args(["--advertise-client-urls", &client_url])
        .args(["--listen-peer-urls", &peer_url])
        .args(["--initial-advertise-peer-urls", &peer_url])
        .args(["--initial-cluster", &format!("default={peer_url}")])
        .args(["--logger", "zap", "--log-level", "warn"]);
    let server = spawn("etcd 3.4", dir, client, &mut cmd);
    wait_ready(server).await
}

/// Starts `t4 run` (the binary at `bin`) on a free loopback port.
pub async fn start_t4(bin: &str) -> Server {
    let dir = tempfile::tempdir().expect("creating a temp dir");
    let port = free_port();
    let mut cmd = Command::new(bin);
    cmd.arg("run")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let server = spawn("t4", dir, port, &mut cmd);
    wait_ready(server).await
}

/// Waits until the server answers a range request.
async fn wait_ready(mut server: Server) -> Server {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!(
                "{} exited ({status}) before serving; its log:\n{}",
                server.name,
                server.log_tail()
            );
        }
        if let Ok(endpoint) = Endpoint::from_shared(server.endpoint.clone()) {
            let endpoint = endpoint.connect_timeout(Duration::from_secs(1));
            if let Ok(channel) = endpoint.connect().await {
                let request = RangeRequest {
                    key: b"ready?".to_vec(),
                    ..Default::default()
                };
                let answered = tokio::time::timeout(
                    Duration::from_secs(2),
                    KvClient::new(channel).range(request),
                )
                .await;
                if matches!(answered, Ok(Ok(_))) {
                    return server;
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} did not serve on {} within 30 s; its log:\n{}",
            server.name,
            server.endpoint,
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
