//! The Lock and Election scenario: etcd's `v3lockpb.Lock` and `v3electionpb.Election`
//! services called the same way on both servers, with leases of chosen ids so that the
//! holders' keys (`name/<lease in hex>`) match, and a waiter that is handed the lock.

#![allow(clippy::unwrap_used)] // a test: unwrap is the assertion

use std::time::{Duration, Instant};

use t4_proto::etcdserverpb::kv_client::KvClient;
use t4_proto::etcdserverpb::lease_client::LeaseClient;
use t4_proto::etcdserverpb::{LeaseGrantRequest, RangeRequest};
use t4_proto::v3electionpb::election_client::ElectionClient;
use t4_proto::v3electionpb::{
    CampaignRequest, LeaderKey, LeaderRequest, ProclaimRequest, ResignRequest,
};
use t4_proto::v3lockpb::lock_client::LockClient;
use t4_proto::v3lockpb::{LockRequest, UnlockRequest};
use tonic::transport::Channel;

use crate::render;
use crate::session::Entry;

const A: i64 = 0x7a01;
const B: i64 = 0x7a02;

fn outcome<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    show: impl Fn(&T) -> String,
) -> String {
    match result {
        Ok(response) => show(response.get_ref()),
        Err(status) => render::status(&status),
    }
}

fn leader_key(l: &Option<LeaderKey>) -> String {
    match l {
        Some(l) => format!(
            "leader {} key={} rev={} lease={}",
            render::bytes(&l.name),
            render::bytes(&l.key),
            l.rev,
            l.lease
        ),
        None => "no leader key".into(),
    }
}

/// Waits until `count` keys are queued under `prefix`.
async fn until_queued(kv: &mut KvClient<Channel>, prefix: &[u8], count: i64) {
    let mut end = prefix.to_vec();
    *end.last_mut().unwrap() += 1;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let range = RangeRequest {
            key: prefix.to_vec(),
            range_end: end.clone(),
            count_only: true,
            ..Default::default()
        };
        if kv.range(range).await.unwrap().into_inner().count == count {
            return;
        }
        assert!(Instant::now() < deadline, "never {count} queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs the scenario over `channel`.
pub async fn transcript(channel: Channel) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut record = |step: &str, outcome: String| {
        out.push(Entry {
            step: step.into(),
            outcome,
        })
    };
    let mut lock = LockClient::new(channel.clone());
    let mut election = ElectionClient::new(channel.clone());
    let mut leases = LeaseClient::new(channel.clone());
    let mut kv = KvClient::new(channel.clone());
    for id in [A, B] {
        let grant = LeaseGrantRequest { ttl: 600, id };
        leases.lease_grant(grant).await.unwrap();
    }
    let lock_as = |lease: i64| LockRequest {
        name: b"job".to_vec(),
        lease,
    };
    let show_lock = |r: &t4_proto::v3lockpb::LockResponse| {
        format!(
            "{} key={}",
            render::header(&r.header),
            render::bytes(&r.key)
        )
    };

    let held = lock.lock(lock_as(A)).await;
    let held_key = held
        .as_ref()
        .map(|r| r.get_ref().key.clone())
        .unwrap_or_default();
    record("lock job as A", outcome(held, show_lock));
    record(
        "lock job as A again",
        outcome(lock.lock(lock_as(A)).await, show_lock),
    );
    let mut waiter = LockClient::new(channel.clone());
    let waiting = tokio::spawn(async move { waiter.lock(lock_as(B)).await });
    until_queued(&mut kv, b"job/", 2).await;
    let unlocked = lock.unlock(UnlockRequest { key: held_key }).await;
    record(
        "unlock A's key",
        outcome(unlocked, |r| render::header(&r.header)),
    );
    record(
        "B's waiting lock",
        outcome(waiting.await.unwrap(), show_lock),
    );
    let unlocked = lock.unlock(UnlockRequest { key: Vec::new() }).await;
    record(
        "unlock no key",
        outcome(unlocked, |r| render::header(&r.header)),
    );
    record(
        "lock with an unknown lease",
        outcome(lock.lock(lock_as(0x999)).await, show_lock),
    );

    let vote = |lease: i64, value: &str| CampaignRequest {
        name: b"vote".to_vec(),
        lease,
        value: value.as_bytes().to_vec(),
    };
    let show_campaign = |r: &t4_proto::v3electionpb::CampaignResponse| {
        format!("{} {}", render::header(&r.header), leader_key(&r.leader))
    };
    let show_leader = |r: &t4_proto::v3electionpb::LeaderResponse| {
        let kv = r.kv.as_ref().map_or("no kv".into(), render::kv);
        format!("{} {kv}", render::header(&r.header))
    };
    let leader_of = |name: &str| LeaderRequest {
        name: name.as_bytes().to_vec(),
    };
    record(
        "leader of vote",
        outcome(election.leader(leader_of("vote")).await, show_leader),
    );
    let won = election.campaign(vote(A, "a1")).await;
    let leader = won.as_ref().ok().and_then(|r| r.get_ref().leader.clone());
    record("campaign A a1", outcome(won, show_campaign));
    record(
        "campaign A a2",
        outcome(election.campaign(vote(A, "a2")).await, show_campaign),
    );
    record(
        "leader of vote",
        outcome(election.leader(leader_of("vote")).await, show_leader),
    );
    let proclaim = |leader: Option<LeaderKey>, value: &str| ProclaimRequest {
        leader,
        value: value.as_bytes().to_vec(),
    };
    let stale = leader.clone().map(|l| LeaderKey {
        rev: l.rev - 1,
        ..l
    });
    let header = |r: &t4_proto::v3electionpb::ProclaimResponse| render::header(&r.header);
    record(
        "proclaim with a stale leader key",
        outcome(election.proclaim(proclaim(stale, "x")).await, header),
    );
    record(
        "proclaim a3",
        outcome(
            election.proclaim(proclaim(leader.clone(), "a3")).await,
            header,
        ),
    );
    record(
        "proclaim without a leader key",
        outcome(election.proclaim(proclaim(None, "x")).await, header),
    );
    record(
        "leader of vote",
        outcome(election.leader(leader_of("vote")).await, show_leader),
    );

    let mut observer = ElectionClient::new(channel.clone());
    let mut observed = observer
        .observe(leader_of("vote"))
        .await
        .unwrap()
        .into_inner();
    let first = observed.message().await;
    record(
        "observe vote",
        format!("{:?}", first.map(|m| m.map(|m| show_leader(&m)))),
    );
    let mut challenger = ElectionClient::new(channel.clone());
    let challenging = tokio::spawn(async move { challenger.campaign(vote(B, "b1")).await });
    until_queued(&mut kv, b"vote/", 2).await;
    let resign = |leader: Option<LeaderKey>| ResignRequest { leader };
    let show_resign = |r: &t4_proto::v3electionpb::ResignResponse| render::header(&r.header);
    record(
        "resign A",
        outcome(election.resign(resign(leader.clone())).await, show_resign),
    );
    record(
        "B's waiting campaign",
        outcome(challenging.await.unwrap(), show_campaign),
    );
    let next = observed.message().await;
    record(
        "observe vote, next",
        format!("{:?}", next.map(|m| m.map(|m| show_leader(&m)))),
    );
    record(
        "resign A again",
        outcome(election.resign(resign(leader)).await, show_resign),
    );
    record(
        "resign without a leader key",
        outcome(election.resign(resign(None)).await, show_resign),
    );
    record(
        "leader of vote",
        outcome(election.leader(leader_of("vote")).await, show_leader),
    );
    out
}
