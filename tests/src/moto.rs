//! A real S3-compatible server for the end-to-end tests: `moto_server` (installed by
//! `scripts/install-test-deps.sh`) on a free loopback port, with a bucket, killed on drop.
//! moto keeps everything in memory: a restarted moto has lost every bucket, so outages are
//! simulated with [`crate::proxy::Proxy`] in front of it instead.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// The credentials and region every test uses (moto accepts any).
pub const ACCESS_KEY: &str = "t4-test";
/// See [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "t4-test-secret";
/// See [`ACCESS_KEY`].
pub const REGION: &str = "us-east-1";

/// A running `moto_server` with one bucket.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The port.
    pub port: u16,
    /// The bucket created at start.
    pub bucket: String,
}

/// A free loopback port (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// Sends one HTTP/1.1 request without a body and returns the status code.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {answer:?}")))
}

impl Moto {
    /// Starts `moto_server` on a free loopback port, waits until it answers, creates
    /// `bucket`. Panics with a hint when moto_server is not installed.
    pub fn start(bucket: &str) -> Moto {
        let port = free_port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server (install it with scripts/install-test-deps.sh)");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            bucket: bucket.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while http(port, "GET", "/").is_err() {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited with {status}");
            }
            assert!(Instant::now() < deadline, "moto_server never answered");
            std::thread::sleep(Duration::from_millis(50));
        }
        let status = http(port, "PUT", &format!("/{bucket}")).expect("creating the bucket");
        assert!(status < 300, "creating the bucket answered {status}");
        moto
    }

    /// Kills the server (its buckets are gone with it: moto keeps them in memory).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `t4` flags reaching this bucket under `prefix` through `endpoint` (this server's, or a
    /// proxy's in front of it).
    pub fn flags_via(&self, endpoint: &str, prefix: &str) -> Vec<String> {
        [
            "--s3-bucket",
            &self.bucket,
            "--s3-prefix",
            prefix,
            "--s3-endpoint",
            endpoint,
            "--s3-region",
            REGION,
            "--s3-access-key-id",
            ACCESS_KEY,
            "--s3-secret-access-key",
            SECRET_KEY,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// `t4` flags reaching this bucket under `prefix`.
    pub fn flags(&self, prefix: &str) -> Vec<String> {
        self.flags_via(&self.endpoint, prefix)
    }

    /// A client of the bucket, to look at what t4 wrote.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_bucket_name(&self.bucket)
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .build()
            .expect("an S3 client for moto");
        Arc::new(store)
    }

    /// Every key in the bucket under `prefix` (e.g. `"t4/wal/"`), sorted.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        use futures::TryStreamExt;
        let prefix = object_store::path::Path::from(prefix);
        let mut keys: Vec<String> = self
            .store()
            .list(Some(&prefix))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .expect("listing the bucket");
        keys.sort();
        keys
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
