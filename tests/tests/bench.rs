//! `t4 bench` against a `t4 run` server: every workload completes a short run, reports what it
//! did (ops, latency percentiles, workload counters) in JSON and in text, and its writes are
//! really in the store afterwards.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real processes; unwrap is the assertion

use std::process::Command;

use etcd_client::GetOptions;
use serde_json::Value;
use t4_e2e::{T4, t4_bin};

/// Operations per workload: enough to exercise every client, small enough to be quick.
const OPS: u64 = 40;

/// Runs `t4 bench ARGS` against `t4` and returns its stdout; fails with its stderr if it fails.
fn bench(t4: &T4, args: &[&str]) -> String {
    let out = Command::new(t4_bin!())
        .arg("bench")
        .args(["--endpoints", &t4.endpoint])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "t4 bench {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn u64_at(report: &Value, path: &[&str]) -> u64 {
    let mut v = report;
    for p in path {
        v = &v[*p];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a count in {report}"))
}

fn f64_at(report: &Value, path: &[&str]) -> f64 {
    let mut v = report;
    for p in path {
        v = &v[*p];
    }
    v.as_f64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {report}"))
}

/// The report's latency summary is a real distribution of `count` samples.
fn assert_latencies(report: &Value, path: &[&str], count: u64) {
    let at = |field: &str| {
        let mut p = path.to_vec();
        p.push(field);
        f64_at(report, &p)
    };
    let mut p = path.to_vec();
    p.push("count");
    assert_eq!(u64_at(report, &p), count, "{report}");
    let (p50, p99, p999, max) = (at("p50"), at("p99"), at("p999"), at("max"));
    assert!(
        0.0 <= p50 && p50 <= p99 && p99 <= p999 && p999 <= max && max > 0.0,
        "percentiles out of order or all zero: {report}"
    );
}

async fn keys_under(c: &mut etcd_client::Client, prefix: &str) -> i64 {
    c.get(
        prefix,
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await
    .unwrap()
    .count()
}

#[tokio::test]
async fn every_workload_completes_a_short_run_and_reports_it() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let ops = OPS.to_string();
    for (workload, clients) in [
        ("seq-put", None),
        ("par-put", Some("4")),
        ("seq-get", None),
        ("par-get", Some("4")),
        ("mixed", Some("4")),
        ("txn", Some("4")),
        ("range", Some("2")),
        ("list", Some("2")),
        ("watch-latency", Some("2")),
    ] {
        let prefix = format!("/bench/{workload}/");
        let mut args = vec![
            "--workload",
            workload,
            "--ops",
            &ops,
            "--keyspace",
            "50",
            "--key-size",
            "32",
            "--value-size",
            "16",
            "--range-size",
            "10",
            "--prefix",
            &prefix,
            "--json",
        ];
        if let Some(n) = clients {
            args.extend(["--clients", n, "--conns", "2"]);
        }
        let stdout = bench(&t4, &args);
        let report: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{workload}: not one JSON object ({e}):\n{stdout}"));
        let name = workload.trim_end_matches("-latency");
        assert_eq!(report["workload"], name, "{report}");
        assert_eq!(u64_at(&report, &["ops"]), OPS, "{report}");
        assert_eq!(u64_at(&report, &["errors"]), 0, "{report}");
        assert!(f64_at(&report, &["ops_per_sec"]) > 0.0, "{report}");
        assert_latencies(&report, &["latency_us"], OPS);

        // What the workload did is visible in the store.
        let keys = keys_under(&mut c, &prefix).await;
        match workload {
            // The n-th put writes key n mod keyspace: 40 puts, 40 distinct keys.
            "seq-put" | "par-put" => assert_eq!(keys, 40, "{workload}"),
            // Reads run over a preloaded keyspace.
            "seq-get" | "par-get" | "range" => assert_eq!(keys, 50, "{workload}"),
            // Every list read the whole keyspace, 10 keys a page.
            "list" => {
                assert_eq!(keys, 50, "{workload}");
                assert_eq!(
                    u64_at(&report, &["counters", "keys-read"]),
                    50 * OPS,
                    "{report}"
                );
                assert_eq!(u64_at(&report, &["counters", "pages"]), 5 * OPS, "{report}");
            }
            "mixed" => {
                assert_eq!(keys, 50, "{workload}");
                let gets = u64_at(&report, &["counters", "gets"]);
                let puts = u64_at(&report, &["counters", "puts"]);
                assert_eq!(gets + puts, OPS, "{report}");
            }
            // Every successful CAS wrote; a key is written at least once.
            "txn" => assert!(keys > 0, "{workload}: nothing written"),
            // The latency is put → watch event, one per put.
            "watch-latency" => {
                assert_eq!(keys, 40, "{workload}");
                assert_latencies(&report, &["other_latencies_us", "put-to-event"], OPS);
            }
            other => unreachable!("{other}"),
        }
    }

    // The human-readable report names throughput and percentiles.
    let text = bench(
        &t4,
        &[
            "--workload",
            "seq-put",
            "--ops",
            "5",
            "--prefix",
            "/bench/text/",
        ],
    );
    for word in ["workload", "seq-put", "ops/s", "p50", "p99", "p99.9"] {
        assert!(
            text.contains(word),
            "the text report lacks {word:?}:\n{text}"
        );
    }
}

/// A request the server refuses is counted, and the first error is reported with etcd's code
/// and message; a run where nothing succeeds fails and says why.
#[tokio::test]
async fn server_errors_are_reported_with_etcds_code_and_message() {
    // A 256-byte value does not fit a 200-byte request limit.
    let t4 = T4::start(t4_bin!(), &["--max-request-bytes", "200"]).await;
    let out = Command::new(t4_bin!())
        .arg("bench")
        .args(["--endpoints", &t4.endpoint])
        .args(["--workload", "seq-put", "--ops", "3", "--value-size", "256"])
        .args(["--prefix", "/bench/too-large/", "--json"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "nothing succeeded, yet exit 0");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(u64_at(&report, &["ops"]), 0, "{report}");
    assert_eq!(u64_at(&report, &["errors"]), 3, "{report}");
    let first = report["first_error"].as_str().unwrap();
    assert!(
        first.contains("etcdserver: request is too large"),
        "first error: {first}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no operation succeeded") && stderr.contains("request is too large"),
        "{stderr}"
    );

    // Small requests still go through on the same server.
    let report: Value = serde_json::from_str(&bench(
        &t4,
        &[
            "--workload",
            "seq-put",
            "--ops",
            "3",
            "--value-size",
            "8",
            "--key-size",
            "16",
            "--prefix",
            "/b/ok/",
            "--json",
        ],
    ))
    .unwrap();
    assert_eq!(u64_at(&report, &["ops"]), 3, "{report}");
}
