//! The `t4` command line and the server's lifecycle: help, environment variables, bad
//! flags, and a clean stop on SIGTERM/SIGINT even with streams open and requests in flight.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;
use t4_e2e::{T4, t4_bin};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(t4_bin!())
        .args(args)
        .env_remove("T4_LOG_LEVEL")
        .output()
        .expect("runs")
}

#[test]
fn help_explains_the_commands_and_every_flag_with_its_environment_variable() {
    let top = run(&["--help"]);
    assert!(top.status.success());
    let text = String::from_utf8_lossy(&top.stdout);
    for word in ["run", "bench", "snapshot"] {
        assert!(text.contains(word), "t4 --help lacks {word}:\n{text}");
    }
    let help = run(&["run", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for (flag, env) in [
        ("--data-dir", "T4_DATA_DIR"),
        ("--listen", "T4_LISTEN"),
        ("--metrics-listen", "T4_METRICS_LISTEN"),
        ("--advertise-client-urls", "T4_ADVERTISE_CLIENT_URLS"),
        ("--log-level", "T4_LOG_LEVEL"),
        ("--node-id", "T4_NODE_ID"),
        ("--max-request-bytes", "T4_MAX_REQUEST_BYTES"),
        ("--max-txn-ops", "T4_MAX_TXN_OPS"),
        ("--read-cache-mb", "T4_READ_CACHE_MB"),
        ("--quota-backend-bytes", "T4_QUOTA_BACKEND_BYTES"),
        (
            "--watch-progress-notify-interval",
            "T4_WATCH_PROGRESS_NOTIFY_INTERVAL",
        ),
        ("--grpc-keepalive-interval", "T4_GRPC_KEEPALIVE_INTERVAL"),
        ("--grpc-keepalive-timeout", "T4_GRPC_KEEPALIVE_TIMEOUT"),
        ("--shutdown-timeout", "T4_SHUTDOWN_TIMEOUT"),
    ] {
        assert!(
            text.contains(flag) && text.contains(env),
            "t4 run --help lacks {flag} / {env}"
        );
    }
    assert!(text.contains("./t4-data") && text.contains("0.0.0.0:3379"));
    let version = run(&["--version"]);
    assert!(String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn bad_flags_fail_clearly_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    for args in [
        vec!["run", "--data-dir", data, "--log-level", "loud"],
        vec!["run", "--data-dir", data, "--max-txn-ops", "0"],
        vec![
            "run",
            "--data-dir",
            data,
            "--watch-progress-notify-interval",
            "1ms",
        ],
        vec!["run", "--data-dir", data, "--listen", "not an address"],
        vec![
            "run",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "not an address",
        ],
    ] {
        let out = run(&args);
        assert!(!out.status.success(), "{args:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.is_empty(), "{args:?} failed silently");
    }
    let out = Command::new(t4_bin!())
        .args(["run", "--data-dir", data])
        .env("T4_MAX_REQUEST_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lots"));
}

#[tokio::test]
async fn environment_variables_configure_run_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let t4 = T4::start_with_env(
        t4_bin!(),
        &dir.path().join("a"),
        &[],
        &[("T4_NODE_ID", "from-env")],
    )
    .await;
    let mut c = t4.client().await;
    assert_eq!(
        c.member_list().await.unwrap().members()[0].name(),
        "from-env"
    );
    drop(t4);
    let t4 = T4::start_with_env(
        t4_bin!(),
        &dir.path().join("b"),
        &["--node-id", "from-flag"],
        &[("T4_NODE_ID", "from-env")],
    )
    .await;
    let mut c = t4.client().await;
    assert_eq!(
        c.member_list().await.unwrap().members()[0].name(),
        "from-flag"
    );
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_0_with_every_write_kept() {
    for signal in ["TERM", "INT"] {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut t4 = T4::start_in(t4_bin!(), &data, &[]).await;
        let mut c = t4.client().await;
        let rev = c
            .put("k", signal, None)
            .await
            .unwrap()
            .header()
            .unwrap()
            .revision();
        let mut watch = c.watch("k", Some(WatchOptions::new())).await.unwrap();
        assert!(watch.message().await.unwrap().unwrap().created());
        let lease = c.lease_grant(60, None).await.unwrap().id();
        let (mut keeper, mut keepalives) = c.lease_keep_alive(lease).await.unwrap();
        keeper.keep_alive().await.unwrap();
        assert!(keepalives.message().await.unwrap().is_some());

        let started = Instant::now();
        let status = t4.stop_with(signal, Duration::from_secs(15)).await;
        assert!(status.success(), "exit status {status}; log:\n{}", t4.log());
        // Well inside the 10 s shutdown timeout: open streams do not hold the server.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "stopping took {:?}",
            started.elapsed()
        );
        // The watch stream ended with etcd's "server stopped" (or the connection closed).
        match watch.message().await {
            Ok(None) => {}
            Ok(Some(r)) => panic!("a watch response after shutdown: {r:?}"),
            Err(etcd_client::Error::GRpcStatus(s)) => {
                assert!(
                    s.message().contains("server stopped") || s.code() == tonic::Code::Unavailable,
                    "{s:?}"
                )
            }
            Err(_) => {}
        }
        assert!(t4.log().contains("stopped"));

        let t4 = T4::start_in(t4_bin!(), &data, &[]).await;
        let mut c = t4.client().await;
        let r = c.get("k", None).await.unwrap();
        assert_eq!(r.kvs()[0].value(), signal.as_bytes());
        assert_eq!(r.header().unwrap().revision(), rev);
    }
}

/// What one writer of `sigterm_lets_in_flight_puts_finish_and_keeps_every_acknowledged_one`
/// saw: the puts answered OK (key, value, revision) and the key of the put that failed.
struct Writer {
    acked: Vec<(String, String, i64)>,
    failed: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_lets_in_flight_puts_finish_and_keeps_every_acknowledged_one() {
    const CONNECTIONS: usize = 4;
    const WRITERS_PER_CONNECTION: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut t4 = T4::start_in(t4_bin!(), &data, &[]).await;
    let (first_ack_tx, mut first_ack) = tokio::sync::mpsc::channel(1);
    let mut writers = Vec::new();
    for connection in 0..CONNECTIONS {
        let client = t4.client().await;
        for w in 0..WRITERS_PER_CONNECTION {
            let (mut c, first_ack) = (client.clone(), first_ack_tx.clone());
            // Each writer puts its own keys one after the other until a put fails (the server
            // refuses it or is gone).
            writers.push(tokio::spawn(async move {
                let mut acked = Vec::new();
                for n in 0.. {
                    let key = format!("w{connection:02}-{w:02}/{n:06}");
                    let value = format!("value {n}");
                    match c.put(key.as_str(), value.as_str(), None).await {
                        Ok(r) => {
                            acked.push((key, value, r.header().unwrap().revision()));
                            if n == 0 {
                                first_ack.send(()).await.unwrap();
                            }
                        }
                        Err(_) => {
                            return Writer { acked, failed: key };
                        }
                    }
                }
                unreachable!("a writer stops at its first failed put")
            }));
        }
    }
    drop(first_ack_tx);
    // Every writer has a put answered, so all of them are writing when the signal arrives.
    for _ in 0..CONNECTIONS * WRITERS_PER_CONNECTION {
        first_ack.recv().await.unwrap();
    }
    t4.signal("TERM");
    let status = t4.wait_for_exit(Duration::from_secs(15)).await;
    assert!(status.success(), "exit status {status}; log:\n{}", t4.log());
    let mut writes = Vec::new();
    for writer in writers {
        writes.push(
            tokio::time::timeout(Duration::from_secs(30), writer)
                .await
                .expect("every writer sees its last put fail once the server is gone")
                .unwrap(),
        );
    }
    // The writers were busy across the signal: puts in flight when the server took it were
    // answered, with revisions above the one it logged then (a server that exits at once
    // fails here or below: its last puts break with the connection, some after they took
    // effect). The server's revision, not the test's clock, tells "after": `kill` returns
    // only once the server may have drained already.
    let log = t4.log();
    let stopping_at: i64 = log
        .lines()
        .find(|l| l.contains("stopping:"))
        .and_then(|l| l.split("revision=").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("no revision logged at the signal; log:\n{log}"));
    let after = writes
        .iter()
        .flat_map(|w| &w.acked)
        .filter(|(_, _, revision)| *revision > stopping_at)
        .count();
    assert!(
        after > 0,
        "no put was answered after the signal (revision {stopping_at})"
    );

    let t4 = T4::start_in(t4_bin!(), &data, &[]).await;
    let mut c = t4.client().await;
    let mut acked = 0;
    for w in &writes {
        for (key, value, revision) in &w.acked {
            let r = c.get(key.as_str(), None).await.unwrap();
            let kv = &r.kvs()[0];
            assert_eq!(
                (kv.value(), kv.mod_revision()),
                (value.as_bytes(), *revision),
                "{key}"
            );
            acked += 1;
        }
        // A put that failed was refused, not cut off after it took effect.
        let r = c.get(w.failed.as_str(), None).await.unwrap();
        assert!(r.kvs().is_empty(), "{} failed but was written", w.failed);
    }
    // Nothing else was written either: the revision counts exactly the acknowledged puts.
    let all = c
        .get("w", Some(etcd_client::GetOptions::new().with_prefix()))
        .await
        .unwrap();
    assert_eq!(all.kvs().len(), acked);
    assert_eq!(all.header().unwrap().revision(), 1 + acked as i64);
}

#[tokio::test]
async fn keepalive_pings_both_ways_keep_an_idle_watch_stream_open() {
    // The server pings idle connections every 100 ms and drops one that does not answer
    // within 1 s; the client pings every 200 ms (etcd clients' keepalive). A connection that
    // either side considered dead would end the watch stream.
    let t4 = T4::start(
        t4_bin!(),
        &[
            "--grpc-keepalive-interval",
            "100ms",
            "--grpc-keepalive-timeout",
            "1s",
        ],
    )
    .await;
    let options = etcd_client::ConnectOptions::new()
        .with_keep_alive(Duration::from_millis(200), Duration::from_secs(1))
        .with_keep_alive_while_idle(true);
    let mut c = etcd_client::Client::connect([&t4.endpoint], Some(options))
        .await
        .unwrap();
    let mut watch = c.watch("idle", None).await.unwrap();
    assert!(watch.message().await.unwrap().unwrap().created());
    // Idle for many ping intervals of both sides: nothing arrives and nothing breaks.
    let idle = tokio::time::timeout(Duration::from_millis(2500), watch.message()).await;
    assert!(idle.is_err(), "the idle stream ended or got {idle:?}");
    let rev = c
        .put("idle", "still here", None)
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let r = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the event in time")
        .unwrap()
        .unwrap();
    assert_eq!(r.events()[0].kv().unwrap().mod_revision(), rev);
}
