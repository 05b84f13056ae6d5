//! Leases over the wire: grant, time-to-live, list, keepalive stream, revoke, expiry.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::time::Duration;

use etcd_client::{GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};
use t4_e2e::{T4, status, t4_bin};
use t4_proto::etcdserverpb as pb;
use tokio::time::timeout;
use tonic::Code;

#[tokio::test]
async fn grant_ttl_list_and_revoke_delete_the_attached_keys_in_one_revision() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let g = c
        .lease_grant(60, Some(LeaseGrantOptions::new().with_id(4242)))
        .await
        .unwrap();
    assert_eq!((g.id(), g.ttl()), (4242, 60));
    let exists = status(
        c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(4242)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (exists.code(), exists.message()),
        (Code::FailedPrecondition, "etcdserver: lease already exists")
    );
    for k in ["l/1", "l/2"] {
        c.put(k, "v", Some(PutOptions::new().with_lease(4242)))
            .await
            .unwrap();
    }
    let ttl = c
        .lease_time_to_live(4242, Some(LeaseTimeToLiveOptions::new().with_keys()))
        .await
        .unwrap();
    assert_eq!(ttl.granted_ttl(), 60);
    assert!(ttl.ttl() > 0 && ttl.ttl() <= 60);
    let mut keys: Vec<Vec<u8>> = ttl.keys().to_vec();
    keys.sort();
    assert_eq!(keys, [b"l/1".to_vec(), b"l/2".to_vec()]);
    let ids: Vec<i64> = c
        .leases()
        .await
        .unwrap()
        .leases()
        .iter()
        .map(|l| l.id())
        .collect();
    assert_eq!(ids, [4242]);

    let before = c
        .get("l/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap()
        .header()
        .unwrap()
        .revision();
    let revoked = c.lease_revoke(4242).await.unwrap();
    assert_eq!(
        revoked.header().unwrap().revision(),
        before + 1,
        "both keys go in one revision"
    );
    assert_eq!(
        c.get("l/", Some(GetOptions::new().with_prefix()))
            .await
            .unwrap()
            .count(),
        0
    );
    let gone = status(c.lease_revoke(4242).await.unwrap_err());
    assert_eq!(
        (gone.code(), gone.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
    // An unknown lease has TTL -1 in TimeToLive (etcd).
    assert_eq!(c.lease_time_to_live(4242, None).await.unwrap().ttl(), -1);

    let too_long = status(c.lease_grant(9_000_000_001, None).await.unwrap_err());
    assert_eq!(
        (too_long.code(), too_long.message()),
        (Code::OutOfRange, "etcdserver: too large lease TTL")
    );
    let unknown = status(
        c.put("k", "v", Some(PutOptions::new().with_lease(777)))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (unknown.code(), unknown.message()),
        (Code::NotFound, "etcdserver: requested lease not found")
    );
}

#[tokio::test]
async fn keepalive_renews_and_an_unknown_lease_does_not_end_the_stream() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let id = c.lease_grant(30, None).await.unwrap().id();
    // The raw stream: several requests on one stream, answered in order.
    let mut lease = pb::lease_client::LeaseClient::new(t4.channel().await);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
    let mut responses = lease.lease_keep_alive(requests).await.unwrap().into_inner();
    for (ask, want_ttl) in [(id, 30), (987_654, 0), (id, 30)] {
        tx.send(pb::LeaseKeepAliveRequest { id: ask })
            .await
            .unwrap();
        let r = timeout(Duration::from_secs(10), responses.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!((r.id, r.ttl), (ask, want_ttl));
        assert!(r.header.unwrap().revision > 0);
    }
    // etcd-client's keeper works too.
    let (mut keeper, mut stream) = c.lease_keep_alive(id).await.unwrap();
    keeper.keep_alive().await.unwrap();
    let r = timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(r.ttl(), 30);
}
