//! Leases while a sync-mode bucket is down: keepalives and lease queries are answered from
//! the durable state; writes (grants and revokes among them) still fail fast.

use std::time::Duration;

use bytes::Bytes;

use super::harness::{Bucket, Node, remote};
use crate::core::RequestId;
use crate::error::Error;
use crate::kv::LeaseId;
use crate::remote::RemoteConfig;
use crate::request::{
    LeaseKeepAliveResponse, LeaseLeasesResponse, LeaseTimeToLiveResponse, PutRequest, Request,
    Response,
};
use crate::time::Instant;

const TTL: i64 = 10;

/// Retries at least every second, so that the node notices the bucket's return within the
/// leases' TTL.
fn config() -> RemoteConfig {
    RemoteConfig {
        retry_max: Duration::from_secs(1),
        ..remote("a")
    }
}

/// Completes every IO without letting time run (a settle would run the leases out).
fn settle_briefly(node: &mut Node) {
    node.settle_for(Duration::from_millis(10));
}

/// Runs the node (IO and timeouts) until `at`, then sets its clock to `at`.
fn run_until(node: &mut Node, at: Instant) {
    node.settle_for(at.saturating_since(node.now));
    assert!(node.now <= at);
    node.now = at;
}

fn secs(s: u64) -> Instant {
    Instant::ZERO + Duration::from_secs(s)
}

/// Submits `request` and returns its answer, which must come at once, without any IO.
fn answer_now(node: &mut Node, request: Request) -> Result<Response, Error> {
    let id = node.submit(request);
    node.replies.remove(&id).expect("answered at once")
}

fn keep_alive(node: &mut Node, id: LeaseId) -> Result<LeaseKeepAliveResponse, Error> {
    answer_now(node, Request::LeaseKeepAlive { id }).map(|r| match r {
        Response::LeaseKeepAlive(k) => k,
        other => panic!("keepalive answered {other:?}"),
    })
}

fn time_to_live(
    node: &mut Node,
    id: LeaseId,
    keys: bool,
) -> Result<LeaseTimeToLiveResponse, Error> {
    answer_now(node, Request::LeaseTimeToLive { id, keys }).map(|r| match r {
        Response::LeaseTimeToLive(t) => t,
        other => panic!("time-to-live answered {other:?}"),
    })
}

fn leases(node: &mut Node) -> LeaseLeasesResponse {
    match answer_now(node, Request::LeaseLeases) {
        Ok(Response::LeaseLeases(l)) => l,
        other => panic!("lease list answered {other:?}"),
    }
}

fn grant(node: &mut Node, id: LeaseId) -> RequestId {
    node.submit(Request::LeaseGrant { id, ttl: TTL })
}

fn put_with_lease(node: &mut Node, key: &str, lease: LeaseId) -> RequestId {
    node.submit(Request::Put(PutRequest {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from_static(b"v"),
        lease,
        ..Default::default()
    }))
}

fn ok(node: &mut Node, id: RequestId) {
    match node.replies.remove(&id) {
        Some(Ok(_)) => {}
        other => panic!("{id:?} answered {other:?}"),
    }
}

fn unavailable(result: Result<impl std::fmt::Debug, Error>) -> String {
    match result {
        Err(e @ Error::ObjectStoreUnavailable(_)) => e.to_string(),
        other => panic!("expected the retryable object-store error, got {other:?}"),
    }
}

#[test]
fn a_durable_lease_is_kept_alive_through_an_outage_and_its_expiry_really_moves() {
    let bucket = Bucket::shared();
    let mut node = Node::start(config(), &bucket);
    let (kept, left) = (7, 8);
    for id in [grant(&mut node, kept), grant(&mut node, left)] {
        settle_briefly(&mut node);
        ok(&mut node, id);
    }

    bucket.borrow_mut().down = true;
    let during = node.put("during", "1");
    settle_briefly(&mut node);
    unavailable(node.replies.remove(&during).expect("answered fast"));
    assert!(node.core.object_store_outage().is_some());

    // Eight seconds into the outage the lease is renewed: at once, for its full TTL.
    run_until(&mut node, secs(8));
    let k = keep_alive(&mut node, kept).expect("a durable lease is renewed during an outage");
    assert_eq!((k.id, k.ttl), (kept, TTL));
    assert_eq!(
        k.revision,
        node.core.applied_revision(),
        "the header shows the durable revision"
    );
    assert!(
        node.core.revision() > k.revision,
        "not the stuck write's revision"
    );
    assert_eq!(
        node.core.leases().get(kept).expect("live").expiry,
        secs(8) + Duration::from_secs(TTL as u64),
        "the renewal moved the deadline"
    );
    let t = time_to_live(&mut node, kept, true).expect("answered");
    assert_eq!((t.ttl, t.granted_ttl), (TTL, TTL));

    // Writes still fail fast, lease writes included.
    let refused = [
        node.put("refused", "2"),
        grant(&mut node, 9),
        node.submit(Request::LeaseRevoke { id: kept }),
    ];
    for id in refused {
        unavailable(node.replies.remove(&id).expect("answered at once"));
    }

    // Past the original deadline: the renewed lease lives; the other one ran out. Its revoke
    // is a write, stuck like the others, so it is not shown: the lease is still listed (it is
    // in the durable state) but neither renewed nor reported gone.
    run_until(&mut node, secs(16));
    assert!(node.core.leases().contains(kept));
    assert!(!node.core.leases().contains(left), "expiry goes on");
    assert_eq!(
        time_to_live(&mut node, kept, false).expect("answered").ttl,
        2
    );
    let e = unavailable(keep_alive(&mut node, left));
    assert!(e.contains(&format!("lease {left}")), "{e}");
    unavailable(time_to_live(&mut node, left, false));
    assert_eq!(leases(&mut node).leases, [kept, left]);
    let k = keep_alive(&mut node, kept).expect("renewed again");
    assert_eq!(k.ttl, TTL);

    // The bucket returns: the stuck batches land, the expiry's revoke with them.
    bucket.borrow_mut().down = false;
    run_until(&mut node, secs(19));
    assert!(node.core.object_store_outage().is_none());
    assert_eq!(leases(&mut node).leases, [kept]);
    assert_eq!(keep_alive(&mut node, left).expect("answered").ttl, 0);
    assert_eq!(keep_alive(&mut node, kept).expect("answered").ttl, TTL);
    assert_eq!(node.get("during").as_deref(), Some("1"));
    let mut fresh = Node::open(config(), &bucket);
    settle_briefly(&mut fresh);
    assert!(fresh.core.is_serving());
    assert_eq!(fresh.core.leases().ids(), [kept]);
}

#[test]
fn a_lease_changed_only_in_a_batch_stuck_on_the_bucket_is_not_revealed() {
    let bucket = Bucket::shared();
    let mut node = Node::start(config(), &bucket);
    let (revoked, attached) = (5, 6);
    let g = [
        grant(&mut node, revoked),
        grant(&mut node, attached),
        put_with_lease(&mut node, "a", attached),
    ];
    settle_briefly(&mut node);
    for id in g {
        ok(&mut node, id);
    }

    // The first batch goes in flight; the next requests collect in the open batch behind it;
    // then the bucket fails the upload and every one of them gets the retryable error.
    let (in_flight, open) = (9, 10);
    let stuck = [
        grant(&mut node, in_flight),
        node.submit(Request::LeaseRevoke { id: revoked }),
        grant(&mut node, open),
        put_with_lease(&mut node, "b", attached),
    ];
    bucket.borrow_mut().down = true;
    settle_briefly(&mut node);
    for id in stuck {
        unavailable(node.replies.remove(&id).expect("answered fast"));
    }
    assert!(node.core.leases().contains(in_flight) && node.core.leases().contains(open));

    // Neither the grants nor the revoke show: the durable state has lease 5 and not 9 or 10.
    for id in [in_flight, open, revoked] {
        unavailable(keep_alive(&mut node, id));
        unavailable(time_to_live(&mut node, id, false));
    }
    let listed = leases(&mut node);
    assert_eq!(listed.leases, [revoked, attached]);
    assert_eq!(listed.revision, node.core.applied_revision());
    // Lease 6 is durable and renewed, but its keys wait on the stuck put of "b".
    assert_eq!(keep_alive(&mut node, attached).expect("renewed").ttl, TTL);
    let t = time_to_live(&mut node, attached, false).expect("answered without keys");
    assert_eq!(t.granted_ttl, TTL);
    unavailable(time_to_live(&mut node, attached, true));
    // A lease nobody granted is unknown, as etcd answers it.
    assert_eq!(keep_alive(&mut node, 77).expect("answered").ttl, 0);
    assert_eq!(time_to_live(&mut node, 77, true).expect("answered").ttl, -1);

    // Once the bucket is back, everything decided lands and shows.
    bucket.borrow_mut().down = false;
    run_until(&mut node, secs(3));
    assert!(node.core.object_store_outage().is_none());
    assert_eq!(leases(&mut node).leases, [attached, in_flight, open]);
    assert_eq!(keep_alive(&mut node, in_flight).expect("answered").ttl, TTL);
    let t = time_to_live(&mut node, attached, true).expect("answered");
    assert_eq!(t.keys, [Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
}
