//! The node's core runs as a task on the runtime that opened it: what that asks of the
//! runtime, and that callers on other threads and runtimes are served all the same.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

/// Timers are needed (lease expiry, segment age): `open` says so at once, with tokio's own
/// message, instead of the core's task failing later.
#[test]
#[should_panic(expected = "enable_time")]
fn open_on_a_runtime_without_timers_panics_with_tokios_message() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let _ = rt.block_on(t4::Node::open(t4::Config::new(dir.path())));
}

/// A node opened on a multi-threaded runtime answers callers that run elsewhere: on plain
/// threads with runtimes of their own, while the opening runtime's workers run the core.
#[test]
fn callers_on_other_threads_and_runtimes_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let node = rt
        .block_on(t4::Node::open(t4::Config::new(dir.path())))
        .unwrap();
    let callers: Vec<_> = (0..4)
        .map(|t| {
            let node = node.clone();
            std::thread::spawn(move || {
                let own = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                own.block_on(async {
                    for i in 0..50 {
                        let key = format!("t{t}/{i}");
                        let rev = node.put(key.clone(), "v").await.unwrap();
                        assert_eq!(node.get(key).await.unwrap().unwrap().mod_revision, rev);
                    }
                });
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    assert_eq!(node.current_revision(), 1 + 4 * 50);
    rt.block_on(node.close()).unwrap();
    rt.shutdown_timeout(Duration::from_secs(5));
}
