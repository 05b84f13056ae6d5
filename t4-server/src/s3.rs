//! The S3 bucket settings shared by `t4 run`, `t4 restore` and `t4 status`, and the client
//! built from them.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

/// Where the bucket is and how to reach it. Settings not given come from the standard AWS
/// environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT`, ...) and credential chain (web identity, ECS, instance
/// metadata).
#[derive(Args, Clone, Debug, Default)]
pub struct S3Args {
    /// S3 bucket that makes the node durable beyond its disk. Without it, t4 keeps data on the
    /// local disk only.
    #[arg(long, env = "T4_S3_BUCKET")]
    pub s3_bucket: Option<String>,

    /// Key prefix of every object t4 writes in the bucket (`t4`, `t4/` and `/t4/` are the same
    /// prefix; empty: the bucket root). One prefix holds one node's data.
    #[arg(long, env = "T4_S3_PREFIX", default_value = "")]
    pub s3_prefix: String,

    /// S3-compatible endpoint URL (MinIO, Ceph, moto, ...), e.g. `http://127.0.0.1:9000`.
    /// Default: AWS, or `AWS_ENDPOINT`.
    #[arg(long, env = "T4_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,

    /// Bucket region. Default: `AWS_REGION` / `AWS_DEFAULT_REGION`, else us-east-1.
    #[arg(long, env = "T4_S3_REGION")]
    pub s3_region: Option<String>,

    /// Access key id. Default: the standard AWS credential chain.
    #[arg(long, env = "T4_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,

    /// Secret access key. Default: the standard AWS credential chain.
    #[arg(long, env = "T4_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,

    /// Allow plain `http://` endpoints (implied by an `http://` --s3-endpoint).
    #[arg(long, env = "T4_S3_ALLOW_HTTP", default_value_t = false)]
    pub s3_allow_http: bool,
}

impl S3Args {
    /// Whether a bucket is configured.
    pub fn enabled(&self) -> bool {
        self.s3_bucket.is_some()
    }

    /// The S3 client, or `None` without a bucket. Throttling, 5xx and connection errors are
    /// retried with exponential backoff and jitter for a few seconds at most (see
    /// [`t4::object_io::s3_retry_config`]), so that writes fail fast while the bucket is
    /// unreachable.
    pub fn store(&self) -> anyhow::Result<Option<Arc<dyn ObjectStore>>> {
        let Some(bucket) = &self.s3_bucket else {
            return Ok(None);
        };
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_retry(t4::object_io::s3_retry_config())
            .with_client_options(
                object_store::ClientOptions::new()
                    .with_connect_timeout(Duration::from_secs(3))
                    .with_timeout(Duration::from_secs(30))
                    .with_allow_http(self.s3_allow_http),
            );
        if let Some(endpoint) = &self.s3_endpoint {
            builder = builder.with_endpoint(endpoint);
            if endpoint.starts_with("http://") {
                builder = builder.with_allow_http(true);
            }
        }
        if let Some(region) = &self.s3_region {
            builder = builder.with_region(region);
        }
        if let Some(key) = &self.s3_access_key_id {
            builder = builder.with_access_key_id(key);
        }
        if let Some(secret) = &self.s3_secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .with_context(|| format!("configuring the S3 client for bucket {bucket:?}"))?;
        Ok(Some(Arc::new(store)))
    }

    /// The bucket's client, failing with a clear message when no bucket is configured.
    pub fn require_store(&self) -> anyhow::Result<Arc<dyn ObjectStore>> {
        self.store()?
            .context("no bucket configured: give --s3-bucket (or T4_S3_BUCKET)")
    }

    /// A short description for logs and messages: `s3://bucket/prefix`.
    pub fn describe(&self) -> String {
        format!(
            "s3://{}/{}",
            self.s3_bucket.as_deref().unwrap_or(""),
            t4::object_io::normalize_prefix(&self.s3_prefix)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An HTTP server on a loopback port that answers 503 to the first `failures` requests
    /// and then 200 with a small body; returns its endpoint and the request count.
    fn flaky_server(failures: usize) -> (String, Arc<AtomicUsize>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let n = seen.fetch_add(1, Ordering::SeqCst);
                let answer = if n < failures {
                    "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"e1\"\r\nLast-Modified: Tue, 01 Dec 2026 05:00:00 GMT\r\nConnection: close\r\n\r\nhello".to_string()
                };
                let _ = stream.write_all(answer.as_bytes());
            }
        });
        (endpoint, count)
    }

    fn client(endpoint: &str) -> t4::object_io::ObjectIo {
        let args = S3Args {
            s3_bucket: Some("b".into()),
            s3_endpoint: Some(endpoint.to_string()),
            s3_region: Some("us-east-1".into()),
            s3_access_key_id: Some("k".into()),
            s3_secret_access_key: Some("s".into()),
            ..S3Args::default()
        };
        t4::object_io::ObjectIo::new(args.store().expect("client").expect("bucket"), "t4")
    }

    fn get() -> t4_core::object::ObjectRequest {
        t4_core::object::ObjectRequest::Get {
            key: "writer".into(),
        }
    }

    #[tokio::test]
    async fn server_errors_are_retried_with_backoff() {
        let (endpoint, count) = flaky_server(3);
        let got = client(&endpoint).execute(get()).await;
        assert!(
            matches!(&got, Ok(t4_core::object::ObjectResponse::Got { bytes, .. }) if bytes == "hello"),
            "{got:?}"
        );
        assert_eq!(count.load(Ordering::SeqCst), 4, "three 503s, then success");
    }

    #[tokio::test]
    async fn a_failing_bucket_is_unavailable_within_seconds() {
        let (endpoint, _) = flaky_server(usize::MAX);
        let started = std::time::Instant::now();
        let got = client(&endpoint).execute(get()).await;
        assert!(
            matches!(got, Err(t4_core::object::ObjectError::Unavailable(_))),
            "{got:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "bounded retries, not {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn no_bucket_means_no_store() {
        assert!(S3Args::default().store().expect("ok").is_none());
    }

    #[test]
    fn an_http_endpoint_builds_a_client() {
        let args = S3Args {
            s3_bucket: Some("b".into()),
            s3_endpoint: Some("http://127.0.0.1:9".into()),
            s3_region: Some("us-east-1".into()),
            s3_access_key_id: Some("k".into()),
            s3_secret_access_key: Some("s".into()),
            ..S3Args::default()
        };
        assert!(args.store().expect("builds").is_some());
        assert_eq!(args.describe(), "s3://b/");
    }
}
