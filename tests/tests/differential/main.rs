//! Differential test: `t4 run` must answer like a real etcd 3.4.
//!
//! Starts `/usr/bin/etcd` (etcd 3.4, Debian's etcd-server) and the `t4` binary built by cargo,
//! each on loopback ports with a fresh data directory, runs one scenario of operations
//! (`scenario.rs`) against each through the generated etcd v3 clients of `t4-proto`, and
//! compares the two transcripts step by step: puts, gets and ranges with every option, delete
//! ranges, txns (every compare target and result, nesting, both branches), errors (gRPC code
//! and message) for bad input, leases, watches (replay from a revision, prev_kv, filters,
//! progress requests, cancellation) and compaction.
//!
//! What must differ is normalised away (see `render.rs`): cluster and member ids and the raft
//! term are not compared, server-chosen lease ids are named, ticking TTLs are compared as
//! "about the granted TTL", HashKV values as "the n-th distinct hash of the transcript" (the
//! value is engine-specific; where it changes is not). Both servers start at revision 1, so
//! revisions must match exactly.
//!
//! Any difference fails the test with a table of the differing steps. Setting
//! `T4_DIFFERENTIAL_SELF_CHECK=1` compares etcd with a second etcd instead, which checks that
//! the scenario itself is deterministic; `T4_DIFFERENTIAL_DUMP=DIR` writes both transcripts to
//! `DIR/etcd.txt` and `DIR/t4.txt`.

#![allow(clippy::disallowed_methods)] // a test of real servers reads real clocks

mod auth;
mod auth_session;
mod gateway;
mod recipes;
mod render;
mod scenario;
mod servers;
mod session;

use session::{Entry, Session};

/// Differences shown in full in the failure message; the rest are counted.
const SHOWN_DIFFERENCES: usize = 25;

async fn transcript(server: &servers::Server) -> Vec<Entry> {
    let mut session = Session::new(server.channel().await);
    scenario::run(&mut session).await;
    session.transcript
}

/// The readable difference of two transcripts, or `None` if they are equal.
fn difference(etcd: &[Entry], t4: &[Entry], t4_name: &str) -> Option<String> {
    if etcd == t4 {
        return None;
    }
    let mut out = String::new();
    let mut differing = 0;
    for i in 0..etcd.len().max(t4.len()) {
        let (e, t) = (etcd.get(i), t4.get(i));
        if e == t {
            continue;
        }
        differing += 1;
        if differing > SHOWN_DIFFERENCES {
            continue;
        }
        let missing = Entry {
            step: "(no step)".into(),
            outcome: "(no outcome)".into(),
        };
        let (e, t) = (e.unwrap_or(&missing), t.unwrap_or(&missing));
        out += &format!("step {}:\n", i + 1);
        if e.step == t.step {
            out += &format!("  request: {}\n", e.step);
        } else {
            out += &format!(
                "  request (etcd): {}\n  request ({t4_name}):   {}\n",
                e.step, t.step
            );
        }
        out += &format!("  etcd: {}\n  {t4_name}:   {}\n", e.outcome, t.outcome);
    }
    if differing > SHOWN_DIFFERENCES {
        out += &format!("... and {} more\n", differing - SHOWN_DIFFERENCES);
    }
    Some(format!(
        "{t4_name} differs from etcd 3.4 in {differing} of {} steps (a difference early on can \
         cause later ones: fix from the top):\n{out}",
        etcd.len().max(t4.len())
    ))
}

/// Writes a transcript to `dir/name.txt`, one `step => outcome` line per step.
fn dump(dir: &std::path::Path, name: &str, transcript: &[Entry]) {
    let text: String = transcript
        .iter()
        .map(|e| format!("{} => {}\n", e.step, e.outcome))
        .collect();
    std::fs::write(dir.join(format!("{name}.txt")), text).expect("writing the transcript");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_answers_the_scenario_exactly_like_etcd_3_4() {
    let self_check = std::env::var_os("T4_DIFFERENTIAL_SELF_CHECK").is_some();
    let etcd = servers::start_etcd().await;
    let other = if self_check {
        servers::start_etcd().await
    } else {
        servers::start_t4(env!("CARGO_BIN_EXE_t4-e2e-server")).await
    };
    let (expected, actual) = tokio::join!(transcript(&etcd), transcript(&other));
    let other_name = if self_check { "etcd#2" } else { "t4" };
    if let Some(dir) = std::env::var_os("T4_DIFFERENTIAL_DUMP") {
        dump(std::path::Path::new(&dir), "etcd", &expected);
        dump(std::path::Path::new(&dir), other_name, &actual);
    }
    assert!(
        expected.len() > 300,
        "the scenario recorded only {} steps against etcd",
        expected.len()
    );
    if let Some(diff) = difference(&expected, &actual, other_name) {
        panic!(
            "{diff}\nthe end of the {} log:\n{}",
            other.name,
            other.log_tail()
        );
    }
}

/// The JSON gateway (`POST /v3/kv/put` and the rest, as curl and non-gRPC clients use it)
/// answers like etcd 3.4's: same HTTP statuses, same JSON, same streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_json_gateway_answers_like_etcd_3_4() {
    let etcd = servers::start_etcd().await;
    let t4 = servers::start_t4(env!("CARGO_BIN_EXE_t4-e2e-server")).await;
    let (expected, actual) = tokio::join!(
        gateway::transcript(&etcd.endpoint),
        gateway::transcript(&t4.endpoint)
    );
    if let Some(dir) = std::env::var_os("T4_DIFFERENTIAL_DUMP") {
        dump(std::path::Path::new(&dir), "etcd-gateway", &expected);
        dump(std::path::Path::new(&dir), "t4-gateway", &actual);
    }
    assert!(expected.len() > 40, "only {} steps", expected.len());
    if let Some(diff) = difference(&expected, &actual, "t4") {
        panic!("{diff}\nthe end of the t4 log:\n{}", t4.log_tail());
    }
}

/// The Lock and Election services answer like etcd 3.4's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_and_elections_answer_like_etcd_3_4() {
    let etcd = servers::start_etcd().await;
    let t4 = servers::start_t4(env!("CARGO_BIN_EXE_t4-e2e-server")).await;
    let (expected, actual) = tokio::join!(
        async { recipes::transcript(etcd.channel().await).await },
        async { recipes::transcript(t4.channel().await).await }
    );
    if let Some(dir) = std::env::var_os("T4_DIFFERENTIAL_DUMP") {
        dump(std::path::Path::new(&dir), "etcd-recipes", &expected);
        dump(std::path::Path::new(&dir), "t4-recipes", &actual);
    }
    if let Some(diff) = difference(&expected, &actual, "t4") {
        panic!("{diff}\nthe end of the t4 log:\n{}", t4.log_tail());
    }
}

/// Authentication answers like etcd 3.4's: users, roles and permissions through the Auth
/// service, its errors, simple tokens, and the permission checks on KV, Watch, Lease and
/// Maintenance calls once it is on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authentication_answers_like_etcd_3_4() {
    let self_check = std::env::var_os("T4_DIFFERENTIAL_SELF_CHECK").is_some();
    let etcd = servers::start_etcd().await;
    let other = if self_check {
        servers::start_etcd().await
    } else {
        servers::start_t4(env!("CARGO_BIN_EXE_t4-e2e-server")).await
    };
    let (expected, actual) = tokio::join!(
        async { auth::transcript(etcd.channel().await).await },
        async { auth::transcript(other.channel().await).await }
    );
    let other_name = if self_check { "etcd#2" } else { "t4" };
    if let Some(dir) = std::env::var_os("T4_DIFFERENTIAL_DUMP") {
        dump(std::path::Path::new(&dir), "etcd-auth", &expected);
        dump(
            std::path::Path::new(&dir),
            &format!("{other_name}-auth"),
            &actual,
        );
    }
    assert!(
        expected.len() > 100,
        "the scenario recorded only {} steps against etcd",
        expected.len()
    );
    if let Some(diff) = difference(&expected, &actual, other_name) {
        panic!(
            "{diff}\nthe end of the {} log:\n{}",
            other.name,
            other.log_tail()
        );
    }
}

/// `t4 bench` speaks the etcd v3 protocol well enough to measure a real etcd: every workload
/// completes against etcd 3.4 without one error (its KV calls use a hand-written HTTP/2
/// client, `t4-server/src/bench/unary.rs`, so a real server other than `t4 run` checks it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t4_bench_measures_a_real_etcd_too() {
    let etcd = servers::start_etcd().await;
    for (workload, clients, conns) in [
        ("seq-put", "1", "1"),
        ("par-put", "4", "2"),
        ("par-get", "4", "2"),
        ("mixed", "4", "2"),
        ("txn", "4", "2"),
        ("range", "2", "2"),
        ("list", "2", "2"),
        ("watch-latency", "2", "2"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_t4-e2e-server"))
            .args(["bench", "--endpoints", &etcd.endpoint, "--json"])
            .args([
                "--workload",
                workload,
                "--clients",
                clients,
                "--conns",
                conns,
            ])
            .args(["--ops", "30", "--keyspace", "40", "--range-size", "10"])
            .args(["--prefix", &format!("/bench/{workload}/")])
            .output()
            .expect("running t4 bench");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{workload}: {}\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{workload}: not one JSON object ({e}): {stdout}"));
        assert_eq!(report["errors"], 0, "{workload}: {report}");
        assert_eq!(report["ops"], 30, "{workload}: {report}");
    }
}

#[test]
fn a_difference_names_the_step_and_both_outcomes() {
    let entry = |step: &str, outcome: &str| Entry {
        step: step.into(),
        outcome: outcome.into(),
    };
    let etcd = [entry("put a", "rev=2"), entry("get a", "rev=2 count=1")];
    let t4 = [entry("put a", "rev=2"), entry("get a", "rev=2 count=0")];
    assert_eq!(difference(&etcd, &etcd, "t4"), None);
    let diff = difference(&etcd, &t4, "t4").unwrap();
    assert!(
        diff.contains("in 1 of 2 steps")
            && diff.contains(
                "step 2:\n  request: get a\n  etcd: rev=2 count=1\n  t4:   rev=2 count=0"
            ),
        "{diff}"
    );
    let diff = difference(&etcd, &t4[..1], "t4").unwrap();
    assert!(diff.contains("t4:   (no outcome)"), "{diff}");
}
