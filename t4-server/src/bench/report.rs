//! The result of a run: throughput and latency percentiles, as text for people and JSON for
//! scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Latency percentiles of one series, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest sample.
    pub max: f64,
}

impl LatencySummary {
    /// Summarises a histogram of nanoseconds.
    pub fn from_nanos(h: &Histogram<u64>) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1_000.0;
        if h.is_empty() {
            return LatencySummary {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                p999: 0.0,
                max: 0.0,
            };
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean() / 1_000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }

    fn to_text(self) -> String {
        format!(
            "mean {}  p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            micros(self.mean),
            micros(self.p50),
            micros(self.p90),
            micros(self.p99),
            micros(self.p999),
            micros(self.max)
        )
    }
}

/// A latency in microseconds, with a readable unit.
fn micros(us: f64) -> String {
    if us < 1_000.0 {
        format!("{us:.0}us")
    } else if us < 1_000_000.0 {
        format!("{:.2}ms", us / 1_000.0)
    } else {
        format!("{:.2}s", us / 1_000_000.0)
    }
}

/// The outcome of one `t4 bench` run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The workload's name.
    pub workload: &'static str,
    /// Endpoint URIs.
    pub endpoints: Vec<String>,
    /// Concurrent clients.
    pub clients: usize,
    /// gRPC connections.
    pub conns: usize,
    /// Bytes per key.
    pub key_size: usize,
    /// Bytes per value.
    pub value_size: usize,
    /// Distinct keys.
    pub keyspace: u64,
    /// Operations that succeeded.
    pub ops: u64,
    /// Operations that failed.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Seconds from the first operation to the last.
    pub elapsed_secs: f64,
    /// `ops / elapsed_secs`.
    pub ops_per_sec: f64,
    /// Latency of the successful operations (for `watch`: put response → watch event).
    pub latency_us: LatencySummary,
    /// Further latency series of the workload, by name.
    pub other_latencies_us: BTreeMap<&'static str, LatencySummary>,
    /// Workload-specific counts (gets and puts of `mixed`, conflicts of `txn`, ...).
    pub counters: BTreeMap<&'static str, u64>,
}

impl Report {
    /// One line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a report of numbers and strings always serialises")
    }

    /// The human-readable report, several lines.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let plural = |n: usize, what: &str| {
            if n == 1 {
                format!("{n} {what}")
            } else {
                format!("{n} {what}s")
            }
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "workload         {} ({} over {} to {})",
            self.workload,
            plural(self.clients, "client"),
            plural(self.conns, "connection"),
            self.endpoints.join(", ")
        );
        let _ = writeln!(
            out,
            "data             {}-byte keys ({} distinct), {}-byte values",
            self.key_size, self.keyspace, self.value_size
        );
        let _ = writeln!(
            out,
            "ops              {} in {:.3}s, {} errors",
            self.ops, self.elapsed_secs, self.errors
        );
        let _ = writeln!(out, "throughput       {:.0} ops/s", self.ops_per_sec);
        let _ = writeln!(out, "latency          {}", self.latency_us.to_text());
        for (name, summary) in &self.other_latencies_us {
            let _ = writeln!(out, "{name:<16} {}", summary.to_text());
        }
        for (name, count) in &self.counters {
            let _ = writeln!(out, "{name:<16} {count}");
        }
        if let Some(e) = &self.first_error {
            let _ = writeln!(out, "first error      {e}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: &[u64]) -> Histogram<u64> {
        let mut h = Histogram::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for v in values_us {
            h.record(v * 1_000).unwrap();
        }
        h
    }

    fn report() -> Report {
        let mut counters = BTreeMap::new();
        counters.insert("conflicts", 3);
        let mut other = BTreeMap::new();
        other.insert("put-sent", LatencySummary::from_nanos(&histogram(&[10])));
        Report {
            workload: "txn",
            endpoints: vec!["http://127.0.0.1:3379".into()],
            clients: 16,
            conns: 1,
            key_size: 64,
            value_size: 256,
            keyspace: 10_000,
            ops: 1_000,
            errors: 0,
            first_error: None,
            elapsed_secs: 0.5,
            ops_per_sec: 2_000.0,
            latency_us: LatencySummary::from_nanos(&histogram(&[100, 200, 300, 1_500])),
            other_latencies_us: other,
            counters,
        }
    }

    #[test]
    fn summary_is_in_microseconds() {
        let s = LatencySummary::from_nanos(&histogram(&(1..=1000).collect::<Vec<_>>()));
        assert_eq!(s.count, 1000);
        assert!((s.p50 - 500.0).abs() <= 1.0, "{s:?}");
        assert!((s.p99 - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p999 - 999.0).abs() <= 1.0, "{s:?}");
        assert!((s.max - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((s.mean - 500.5).abs() <= 1.0, "{s:?}");
    }

    #[test]
    fn an_empty_histogram_summarises_to_zeroes() {
        let s = LatencySummary::from_nanos(&histogram(&[]));
        assert_eq!((s.count, s.p50, s.max), (0, 0.0, 0.0));
    }

    #[test]
    fn latencies_get_readable_units() {
        assert_eq!(micros(812.4), "812us");
        assert_eq!(micros(1_234.0), "1.23ms");
        assert_eq!(micros(2_500_000.0), "2.50s");
    }

    #[test]
    fn text_report_names_everything_a_reader_needs() {
        let text = report().to_text();
        let expected = "\
workload         txn (16 clients over 1 connection to http://127.0.0.1:3379)
data             64-byte keys (10000 distinct), 256-byte values
ops              1000 in 0.500s, 0 errors
throughput       2000 ops/s
latency          mean 525us  p50 200us  p90 1.50ms  p99 1.50ms  p99.9 1.50ms  max 1.50ms
put-sent         mean 10us  p50 10us  p90 10us  p99 10us  p99.9 10us  max 10us
conflicts        3
";
        assert_eq!(text, expected);
    }

    #[test]
    fn json_report_has_a_stable_shape() {
        let v: serde_json::Value = serde_json::from_str(&report().to_json()).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "clients",
                "conns",
                "counters",
                "elapsed_secs",
                "endpoints",
                "errors",
                "first_error",
                "key_size",
                "keyspace",
                "latency_us",
                "ops",
                "ops_per_sec",
                "other_latencies_us",
                "value_size",
                "workload"
            ]
        );
        assert_eq!(v["workload"], "txn");
        assert_eq!(v["ops_per_sec"], 2000.0);
        assert_eq!(v["counters"]["conflicts"], 3);
        assert_eq!(v["first_error"], serde_json::Value::Null);
        let mut lat: Vec<&str> = v["latency_us"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        lat.sort_unstable();
        assert_eq!(lat, ["count", "max", "mean", "p50", "p90", "p99", "p999"]);
        let p50 = v["latency_us"]["p50"].as_f64().unwrap();
        assert!((p50 - 200.0).abs() < 1.0, "{p50}");
        assert_eq!(v["other_latencies_us"]["put-sent"]["count"], 1);
    }
}
