//! The walkthrough of docs/getting-started.md, as a program CI compiles and runs:
//!
//! ```sh
//! cargo run -p t4-tokio --example getting_started -- ./my-data
//! ```
//!
//! Opens a node, writes and reads keys, does a compare-and-swap, watches a prefix, uses a
//! lease, and closes the node.

use std::time::Duration;

use futures::StreamExt;
use t4::{
    Compare, CompareResult, CompareTarget, Config, EventKind, KeyRange, Node, PutRequest,
    RequestOp, TxnRequest, WatchOptions,
};

#[tokio::main]
async fn main() -> Result<(), t4::Error> {
    let data_dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "./t4-example-data".into());

    // Open (or create) the data directory.
    let node = Node::open(Config::new(&data_dir)).await?;

    // Put and get: every write returns its revision, every key carries etcd's metadata.
    let rev = node.put("/config/greeting", "hello").await?;
    let kv = node.get("/config/greeting").await?.expect("just written");
    assert_eq!(kv.value, "hello");
    assert_eq!(kv.mod_revision, rev);
    println!(
        "put /config/greeting at revision {rev} (version {})",
        kv.version
    );

    // A range with etcd's options: here, the first 100 keys under a prefix.
    let page = node
        .range(t4::RangeRequest {
            key: "/config/".into(),
            range_end: "/config0".into(), // the end of the "/config/" prefix
            limit: 100,
            ..Default::default()
        })
        .await?;
    println!("{} of {} keys under /config/", page.kvs.len(), page.count);

    // Compare-and-swap with a txn: update only if nobody changed the key since we read it.
    let cas = TxnRequest {
        compare: vec![Compare {
            key: "/config/greeting".into(),
            result: CompareResult::Equal,
            target: CompareTarget::Mod(kv.mod_revision),
            ..Default::default()
        }],
        success: vec![RequestOp::Put(PutRequest {
            key: "/config/greeting".into(),
            value: "bonjour".into(),
            ..Default::default()
        })],
        failure: vec![],
    };
    let resp = node.txn(cas).await?;
    println!(
        "compare-and-swap {} at revision {}",
        if resp.succeeded { "won" } else { "lost" },
        resp.revision
    );

    // Watch a prefix: a stream of events, each exactly once, in revision order.
    let watch = node
        .watch(KeyRange::prefix("/config/"), WatchOptions::default())
        .await?;
    let mut events = watch.into_stream();
    node.put("/config/color", "blue").await?;
    node.delete("/config/color").await?;
    for _ in 0..2 {
        let event = events.next().await.expect("the stream is open")?;
        let kind = match event.kind {
            EventKind::Put => "PUT",
            EventKind::Delete => "DELETE",
        };
        println!(
            "watch: {kind} {} at revision {}",
            String::from_utf8_lossy(&event.kv.key),
            event.kv.mod_revision
        );
    }

    // Leases: keys that disappear unless kept alive.
    let lease = node.lease_grant(10, 0).await?; // 10 s; id 0 = pick one
    node.put_with(PutRequest {
        key: "/sessions/worker-1".into(),
        value: "alive".into(),
        lease: lease.id,
        ..Default::default()
    })
    .await?;
    let keepalive = {
        let node = node.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3));
            loop {
                tick.tick().await;
                if node.lease_keep_alive(lease.id).await.unwrap_or(0) == 0 {
                    break; // revoked, expired or the node closed
                }
            }
        })
    };
    let ttl = node.lease_time_to_live(lease.id, true).await?;
    println!(
        "lease {:x}: {} s left of {}, keys {:?}",
        lease.id, ttl.ttl, ttl.granted_ttl, ttl.keys
    );
    node.lease_revoke(lease.id).await?; // deletes /sessions/worker-1 now
    keepalive.await.expect("keepalive task");

    // Close: waits for in-flight writes, persists the store, releases the directory.
    node.close().await?;
    println!("closed; reopen {data_dir} to find everything where it was");
    Ok(())
}
