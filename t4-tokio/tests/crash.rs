//! Crash test on the real adapter: a child process writes continuously through `t4::Node`
//! and prints every acknowledged write; the parent SIGKILLs it at a random moment, reopens
//! the data dir, and checks that every acknowledged write is there with its revision.
//!
//! The child is this same test binary, re-executed with `T4_CRASH_CHILD_DIR` set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rand::{Rng, SeedableRng};

const CHILD_ENV: &str = "T4_CRASH_CHILD_DIR";
const WRITERS: usize = 8;

/// The child: writes unique keys from several tasks forever, printing `ack <key> <rev>` after
/// each acknowledgement. Does nothing when run as a normal test.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let round: u64 = std::env::var("T4_CRASH_ROUND")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let node = t4::Node::open(t4::Config::new(dir))
            .await
            .expect("child opens the data dir");
        println!("\nready");
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let node = node.clone();
            tasks.push(tokio::spawn(async move {
                for n in 0u64.. {
                    let key = format!("r{round:03}/w{w}/{n:08}");
                    let rev = node
                        .put(key.clone(), format!("value-{key}"))
                        .await
                        .expect("put");
                    // Printed only after the put returned, i.e. after it was acknowledged.
                    println!("ack {key} {rev}");
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("T4_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("T4_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (replay with T4_CRASH_SEED={seed})");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();

    for round in 0..rounds {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                "crash_child_writer",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, dir.path())
            .env("T4_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the child has opened the node, then let it write for a random time.
        loop {
            match rx.recv_timeout(Duration::from_secs(60)) {
                Ok(line) if line.ends_with("ready") => break,
                Ok(_) => {}
                Err(e) => panic!("round {round}: child never became ready: {e} (seed {seed})"),
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(20..400)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut round_acks = 0;
        for line in rx.try_iter() {
            let mut parts = line.split(' ');
            if parts.next() != Some("ack") {
                continue;
            }
            let (Some(key), Some(rev)) = (parts.next(), parts.next()) else {
                continue;
            };
            // Each line reaches the pipe in one write(2) of under PIPE_BUF bytes, so a kill
            // cannot leave half a line.
            let rev: i64 = rev
                .parse()
                .unwrap_or_else(|_| panic!("malformed ack line {line:?}"));
            acked.insert(key.to_string(), rev);
            round_acks += 1;
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let node = t4::Node::open(t4::Config::new(dir.path()))
                .await
                .unwrap_or_else(|e| panic!("round {round}: reopen failed: {e} (seed {seed})"));
            for (key, rev) in &acked {
                let kv = node.get(key.clone()).await.unwrap().unwrap_or_else(|| {
                    panic!(
                        "round {round}: acknowledged {key} at revision {rev} is lost (seed {seed})"
                    )
                });
                assert_eq!(
                    kv.mod_revision, *rev,
                    "round {round}: {key} has the wrong revision (seed {seed})"
                );
                assert_eq!(
                    kv.value,
                    format!("value-{key}"),
                    "round {round}: {key} has the wrong value"
                );
            }
            node.close().await.unwrap();
        });
        eprintln!(
            "round {round}: {round_acks} acknowledged writes before SIGKILL, {} checked in total",
            acked.len()
        );
    }
    assert!(
        acked.len() as u64 >= rounds,
        "the child acknowledged too few writes to test anything"
    );
}
