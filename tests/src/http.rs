//! A minimal HTTP/1.1 client for the metrics and health endpoint of `t4 run
//! --metrics-listen`, and a reader of the Prometheus text format it serves — written here so
//! that the tests check the wire format, not a library's view of it.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The header lines, as `(lower-case name, value)`.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `method path` to `address` (`host:port`) with `Connection: close` and reads the
/// answer; fails on a connection error or an answer that is not HTTP.
pub async fn request(address: &str, method: &str, path: &str) -> std::io::Result<Answer> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream
            .write_all(
                format!("{method} {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        parse(&String::from_utf8_lossy(&raw))
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| std::io::Error::other(format!("{method} {path}: no answer in 10 s")))?
}

/// `GET path` from `address`, which must answer.
pub async fn get(address: &str, path: &str) -> Answer {
    request(address, "GET", path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{address}{path}: {e}"))
}

fn parse(raw: &str) -> std::io::Result<Answer> {
    let bad = || std::io::Error::other(format!("not an HTTP answer: {raw:?}"));
    let (head, body) = raw.split_once("\r\n\r\n").ok_or_else(bad)?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .ok_or_else(bad)?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        return Err(std::io::Error::other(
            "chunked answers are not expected here",
        ));
    }
    Ok(Answer {
        status,
        headers,
        body: body.to_string(),
    })
}

/// The value of the sample of metric `name` whose labels include every one of `labels`, in
/// a Prometheus text exposition; `None` if there is no such sample.
///
/// ```
/// let text = "# TYPE x_total counter\nx_total{method=\"Put\",code=\"OK\"} 3\n";
/// assert_eq!(t4_e2e::http::sample(text, "x_total", &[("method", "Put")]), Some(3.0));
/// assert_eq!(t4_e2e::http::sample(text, "x_total", &[("method", "Range")]), None);
/// ```
pub fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find_map(|(series, value)| {
            let (metric, set) = match series.split_once('{') {
                Some((metric, rest)) => (metric, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let has = |(k, v): &(&str, &str)| {
                set.split(',')
                    .any(|pair| pair == format!("{k}=\"{v}\"").as_str())
            };
            (metric == name && labels.iter().all(has)).then(|| value.parse().ok())?
        })
}
