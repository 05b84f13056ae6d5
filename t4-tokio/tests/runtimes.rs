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

/// A request that finds the core idle runs on the caller's task: it is answered within the
/// future's first poll, without waiting for the core's task to be scheduled (the lone
/// writer's fast path). On a single-threaded runtime the core's task cannot be busy while
/// the test's task runs, so the core is idle here by construction.
#[tokio::test(flavor = "current_thread")]
async fn a_request_to_an_idle_node_is_answered_within_its_first_poll() {
    use std::future::Future;
    use std::task::{Context, Poll, Waker};

    let dir = tempfile::tempdir().unwrap();
    let node = t4::Node::open(t4::Config::new(dir.path())).await.unwrap();
    let first = node.put("a", "1").await.unwrap();
    let mut put = std::pin::pin!(node.put("a", "2"));
    match put.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(Ok(revision)) => assert_eq!(revision, first + 1),
        Poll::Ready(Err(e)) => panic!("the put failed: {e}"),
        Poll::Pending => panic!("the put waited for the core's task"),
    }
    // Durable and visible like any other write.
    assert_eq!(node.get("a").await.unwrap().unwrap().value, "2".as_bytes());
    node.close().await.unwrap();
    let node = t4::Node::open(t4::Config::new(dir.path())).await.unwrap();
    assert_eq!(
        node.get("a").await.unwrap().unwrap().mod_revision,
        first + 1
    );
    node.close().await.unwrap();
}

/// Writers that find the core busy queue for its task, and every write gets its own
/// revision either way: concurrent tasks on a multi-threaded runtime, some running rounds
/// on their own tasks and some queued behind them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_one_revision_each_whether_they_run_the_core_or_queue() {
    const WRITERS: usize = 16;
    const PUTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let node = t4::Node::open(t4::Config::new(dir.path())).await.unwrap();
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let node = node.clone();
            tokio::spawn(async move {
                let mut revisions = Vec::new();
                for i in 0..PUTS {
                    revisions.push(node.put(format!("w{w}/{i}"), "v").await.unwrap());
                }
                revisions
            })
        })
        .collect();
    let mut revisions = Vec::new();
    for writer in writers {
        let own = writer.await.unwrap();
        assert!(
            own.windows(2).all(|r| r[0] < r[1]),
            "a writer's puts are ordered"
        );
        revisions.extend(own);
    }
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(
        revisions.len(),
        WRITERS * PUTS,
        "every put has a revision of its own"
    );
    assert_eq!(node.current_revision(), 1 + (WRITERS * PUTS) as i64);
    node.close().await.unwrap();
}
