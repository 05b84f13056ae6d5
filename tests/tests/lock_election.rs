//! etcd's Lock and Election services through the `etcd-client` crate's `lock`, `campaign`,
//! `proclaim`, `leader`, `observe` and `resign`: mutual exclusion, hand-over in queue order,
//! release by unlock, by lease end and by a waiter leaving, and etcd's errors.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions, LeaderKey, LockOptions, ProclaimOptions, ResignOptions};
use t4_e2e::{T4, status, t4_bin};
use tokio::task::JoinHandle;

/// How many keys are queued under `prefix`.
async fn queued(client: &mut Client, prefix: &str) -> i64 {
    client
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_count_only()),
        )
        .await
        .unwrap()
        .count()
}

/// Waits until `count` keys are queued under `prefix` (a waiter has joined or left).
async fn until_queued(client: &mut Client, prefix: &str, count: i64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued(client, prefix).await != count {
        assert!(Instant::now() < deadline, "{prefix}: never {count} queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn lease(client: &mut Client) -> i64 {
    client.lease_grant(60, None).await.unwrap().id()
}

fn lock_in_background(mut client: Client, name: &str, lease: i64) -> JoinHandle<Vec<u8>> {
    let name = name.to_string();
    tokio::spawn(async move {
        let options = LockOptions::new().with_lease(lease);
        client
            .lock(name, Some(options))
            .await
            .unwrap()
            .key()
            .to_vec()
    })
}

#[tokio::test]
async fn a_lock_is_held_by_one_lease_at_a_time_and_handed_over_in_order() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let (a, b, d) = (
        lease(&mut c).await,
        lease(&mut c).await,
        lease(&mut c).await,
    );

    let held = c
        .lock("job", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    assert_eq!(held.key(), format!("job/{a:x}").as_bytes());
    // Locking again with the same lease is the same hold.
    let again = c.lock("job", Some(LockOptions::new().with_lease(a))).await;
    assert_eq!(again.unwrap().key(), held.key());

    let second = lock_in_background(t4.client().await, "job", b);
    until_queued(&mut c, "job/", 2).await;
    let third = lock_in_background(t4.client().await, "job", d);
    until_queued(&mut c, "job/", 3).await;
    assert!(!second.is_finished() && !third.is_finished());

    // Unlock hands the lock to the oldest waiter only.
    let unlocked = c.unlock(held.key()).await.unwrap();
    assert!(unlocked.header().unwrap().revision() > 0);
    let second_key = second.await.unwrap();
    assert_eq!(second_key, format!("job/{b:x}").as_bytes());
    assert!(!third.is_finished());
    // The end of a lease releases its lock too.
    c.lease_revoke(b).await.unwrap();
    assert_eq!(third.await.unwrap(), format!("job/{d:x}").as_bytes());
    assert_eq!(queued(&mut c, "job/").await, 1);
}

#[tokio::test]
async fn a_waiter_that_leaves_leaves_the_queue() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let (a, b) = (lease(&mut c).await, lease(&mut c).await);
    let held = c.lock("q", Some(LockOptions::new().with_lease(a))).await;
    let waiter = lock_in_background(t4.client().await, "q", b);
    until_queued(&mut c, "q/", 2).await;
    waiter.abort();
    until_queued(&mut c, "q/", 1).await;
    assert_eq!(
        c.get("q/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .kvs()[0]
            .key(),
        held.unwrap().key()
    );
}

#[tokio::test]
async fn locks_without_a_lease_and_bad_locks_answer_like_etcd() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    // No lease: a lease of etcd's session TTL (60 s) holds the lock.
    let held = c.lock("free", None).await.unwrap();
    let key = c.get(held.key(), None).await.unwrap().kvs()[0].clone();
    let ttl = c.lease_time_to_live(key.lease(), None).await.unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert_eq!(
        held.key(),
        format!("free/{:x}", key.lease()).as_bytes(),
        "the key names its lease"
    );

    let e = status(
        c.lock("x", Some(LockOptions::new().with_lease(12345)))
            .await
            .unwrap_err(),
    );
    // etcd answers every error of these services with code Unknown (they call its KV API as
    // a client, which drops the code); the message is the KV API's.
    assert_eq!(
        (e.code(), e.message()),
        (
            tonic::Code::Unknown,
            "etcdserver: requested lease not found"
        )
    );
    assert_eq!(
        queued(&mut c, "x/").await,
        0,
        "a refused lock leaves nothing"
    );
    let e = status(c.unlock("").await.unwrap_err());
    assert_eq!(e.message(), "etcdserver: key is not provided");
}

#[tokio::test]
async fn an_election_is_led_by_its_oldest_candidate_and_observed_in_order() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let (a, b) = (lease(&mut c).await, lease(&mut c).await);

    let e = status(c.leader("vote").await.unwrap_err());
    assert_eq!(
        (e.code(), e.message()),
        (tonic::Code::Unknown, "election: no leader")
    );
    let mut observer = t4.client().await.observe("vote").await.unwrap();

    let won = c.campaign("vote", "a1", a).await.unwrap();
    let leader: LeaderKey = won.leader().unwrap().clone();
    assert_eq!(leader.key(), format!("vote/{a:x}").as_bytes());
    assert_eq!(leader.lease(), a);
    assert_eq!(leader.rev(), won.header().unwrap().revision());
    let seen = observer.message().await.unwrap().unwrap();
    assert_eq!(seen.kv().unwrap().value(), b"a1");

    let mut other = t4.client().await;
    let challenger = tokio::spawn(async move { other.campaign("vote", "b1", b).await.unwrap() });
    until_queued(&mut c, "vote/", 2).await;

    let as_leader = || Some(ProclaimOptions::new().with_leader(leader.clone()));
    c.proclaim("a2", as_leader()).await.unwrap();
    assert_eq!(
        observer
            .message()
            .await
            .unwrap()
            .unwrap()
            .kv()
            .unwrap()
            .value(),
        b"a2"
    );
    let now = c.leader("vote").await.unwrap();
    assert_eq!(now.kv().unwrap().value(), b"a2");
    assert!(!challenger.is_finished());

    // A LeaderKey that is not the leader's (wrong revision) cannot proclaim.
    let stale = leader.clone().with_rev(leader.rev() - 1);
    let e = status(
        c.proclaim("x", Some(ProclaimOptions::new().with_leader(stale)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code(), e.message()),
        (tonic::Code::Unknown, "election: not leader")
    );

    c.resign(Some(ResignOptions::new().with_leader(leader.clone())))
        .await
        .unwrap();
    let b_won = challenger.await.unwrap();
    assert_eq!(
        b_won.leader().unwrap().key(),
        format!("vote/{b:x}").as_bytes()
    );
    let seen = observer.message().await.unwrap().unwrap();
    assert_eq!(seen.kv().unwrap().key(), format!("vote/{b:x}").as_bytes());
    assert_eq!(seen.kv().unwrap().value(), b"b1");
    assert_eq!(c.leader("vote").await.unwrap().kv().unwrap().value(), b"b1");

    // The old leader is no longer one.
    let e = status(c.proclaim("a3", as_leader()).await.unwrap_err());
    assert_eq!(e.message(), "election: not leader");
    let e = status(c.resign(None).await.unwrap_err());
    assert_eq!(e.message(), r#""leader" field must be provided"#);
}

#[tokio::test]
async fn a_waiting_lock_ends_when_the_server_stops() {
    // A shutdown timeout far longer than the test allows: the stop must not wait for it.
    let mut t4 = T4::start(t4_bin!(), &["--shutdown-timeout", "120s"]).await;
    let mut c = t4.client().await;
    let (a, b) = (lease(&mut c).await, lease(&mut c).await);
    c.lock("stop", Some(LockOptions::new().with_lease(a)))
        .await
        .unwrap();
    let mut other = t4.client().await;
    let waiter = tokio::spawn(async move {
        let options = LockOptions::new().with_lease(b);
        other.lock("stop", Some(options)).await
    });
    until_queued(&mut c, "stop/", 2).await;

    t4.signal("TERM");
    let e = status(waiter.await.unwrap().unwrap_err());
    assert_eq!(e.message(), "etcdserver: server stopped");
    let exit = t4.wait_for_exit(Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit}: {}", t4.log());
}
