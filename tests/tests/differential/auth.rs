//! The authentication scenario: users, roles and permissions managed through etcd's
//! `etcdserverpb.Auth` service, then enforced on KV, Watch, Lease and Maintenance calls that
//! carry a simple token (gRPC metadata `token`, as etcd's clients send it).
//! `auth_session.rs` has the clients, and how tokens and hashes are normalised.
//!
//! `AuthStatus` is not part of it: etcd 3.4 answers it `Unimplemented` (it came with 3.5);
//! `tests/tests/auth.rs` checks t4's answer.

use t4_proto::authpb::Permission;
use t4_proto::authpb::permission::Type as PermType;
use t4_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use t4_proto::etcdserverpb::request_op::Request;
use t4_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp, TxnRequest,
    WatchCreateRequest,
};
use tonic::transport::Channel;

use crate::auth_session::{Run, Watch, Who};
use crate::session::Entry;

/// Leases granted with chosen ids, so that both servers use the same ones.
const ALICES_LEASE: i64 = 0x7b01;
const ROOTS_LEASE: i64 = 0x7b02;
const ALICES_LOCK_LEASE: i64 = 0x7b03;

fn perm(t: PermType, key: &str, end: &str) -> Permission {
    Permission {
        perm_type: t as i32,
        key: key.into(),
        range_end: end.into(),
    }
}

fn get(k: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        ..Default::default()
    }
}

fn range(k: &str, end: &str) -> RangeRequest {
    RangeRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    }
}

fn put(k: &str, v: &str) -> PutRequest {
    PutRequest {
        key: k.into(),
        value: v.into(),
        ..Default::default()
    }
}

fn value_is(k: &str, v: &str) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: k.into(),
        target_union: Some(TargetUnion::Value(v.into())),
        ..Default::default()
    }
}

fn op(request: Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}
/// Runs the scenario over `channel`.
pub async fn transcript(channel: Channel) -> Vec<Entry> {
    let mut run = Run::new(channel);
    let s = &mut run;
    let nobody = Who::nobody();
    setting_up(s, &nobody).await;
    s.auth_enable(&nobody).await;
    // Now only root may, and enabling again changes nothing.
    s.auth_enable(&nobody).await;

    let (root, alice) = logging_in(s).await;
    s.auth_enable(&root).await;
    enforcing_key_permissions(s, &root, &alice).await;
    enforcing_watch_permissions(s, &root, &alice).await;
    enforcing_lease_permissions(s, &root, &alice).await;
    enforcing_recipe_permissions(s, &alice).await;
    enforcing_admin_permissions(s, &root, &alice).await;
    let alice = changing_users_and_roles(s, &root, &alice).await;

    s.auth_disable(&alice).await;
    s.auth_disable(&root).await;
    s.range(&nobody, get("/app/b")).await;
    s.range(&root.renamed("root's token from before"), get("/app/b"))
        .await;
    s.authenticate("root", "rootpw").await;
    s.user_list(&nobody).await;
    s.role_get(&nobody, "root").await;
    run.out
}

/// Users, roles and permissions before authentication is on, with their errors.
async fn setting_up(s: &mut Run, nobody: &Who) {
    s.authenticate("root", "rootpw").await;
    s.range(&Who::forger(), get("/app/a")).await;
    s.auth_enable(nobody).await;
    s.user_add(nobody, "", "pw", false).await;
    s.role_add(nobody, "").await;
    s.user_add(nobody, "root", "rootpw", false).await;
    s.user_add(nobody, "root", "other", false).await;
    s.auth_enable(nobody).await;
    s.role_add(nobody, "root").await;
    s.role_add(nobody, "root").await;
    s.user_grant_role(nobody, "root", "root").await;
    s.user_grant_role(nobody, "root", "nope").await;
    s.user_grant_role(nobody, "nobody", "root").await;
    s.role_get(nobody, "root").await;
    s.role_get(nobody, "nope").await;
    s.user_get(nobody, "nope").await;
    s.user_change_password(nobody, "nope", "pw").await;
    s.user_delete(nobody, "nope").await;
    s.role_delete(nobody, "nope").await;
    s.auth_disable(nobody).await;

    s.role_add(nobody, "reader").await;
    s.role_grant(nobody, "reader", perm(PermType::Read, "/app/", "/app0"))
        .await;
    s.role_grant(nobody, "reader", perm(PermType::Write, "/w", ""))
        .await;
    s.role_grant(nobody, "reader", perm(PermType::Readwrite, "/z/", "\0"))
        .await;
    s.role_get(nobody, "reader").await;
    // The same key and range end again replaces the permission's type.
    s.role_grant(nobody, "reader", perm(PermType::Read, "/z/", "\0"))
        .await;
    s.role_get(nobody, "reader").await;
    s.role_grant(nobody, "reader", perm(PermType::Readwrite, "/z/", "\0"))
        .await;
    s.role_grant(nobody, "nope", perm(PermType::Read, "/a", ""))
        .await;
    s.role_get(nobody, "reader").await;
    s.role_list(nobody).await;

    s.user_add(nobody, "alice", "alicepw", false).await;
    s.user_add(nobody, "bob", "", true).await;
    s.user_add(nobody, "carol", "", false).await;
    s.user_grant_role(nobody, "alice", "reader").await;
    s.user_grant_role(nobody, "alice", "reader").await;
    // Any user with the root role is an administrator.
    s.user_grant_role(nobody, "carol", "root").await;
    s.user_get(nobody, "alice").await;
    s.user_get(nobody, "bob").await;
    s.user_list(nobody).await;
    s.user_revoke_role(nobody, "alice", "root").await;
    s.role_revoke(nobody, "reader", "/nope", "").await;
    s.role_revoke(nobody, "reader", "/app/", "/app1").await;
}

/// Requests without a valid token once authentication is on, and who may log in.
async fn logging_in(s: &mut Run) -> (Who, Who) {
    s.range(&Who::nobody(), get("/app/a")).await;
    s.range(&Who::forger(), get("/app/a")).await;
    s.put(&Who::nobody(), put("/app/a", "x")).await;
    s.authenticate("root", "wrong").await;
    s.authenticate("nope", "pw").await;
    s.authenticate("bob", "").await;
    s.authenticate("", "").await;
    let carol = s.authenticate("carol", "").await;
    s.user_list(&carol).await;
    let root = s.authenticate("root", "rootpw").await;
    let alice = s.authenticate("alice", "alicepw").await;
    let again = s.authenticate("alice", "alicepw").await;
    // Both of alice's tokens are valid.
    s.range(&again.renamed("alice's second token"), get("/app/a"))
        .await;
    (root, alice)
}

/// Range, Put, DeleteRange and Txn as a user with some permissions.
async fn enforcing_key_permissions(s: &mut Run, root: &Who, alice: &Who) {
    s.put(root, put("/app/a", "1")).await;
    s.put(root, put("/app/b", "2")).await;
    s.put(root, put("/other", "3")).await;
    s.range(root, range("\0", "\0")).await;
    s.range(&root.as_authorization(), get("/app/a")).await;

    s.range(alice, get("/app/a")).await;
    s.range(
        alice,
        RangeRequest {
            serializable: true,
            ..get("/app/a")
        },
    )
    .await;
    s.range(
        alice,
        RangeRequest {
            serializable: true,
            ..get("/other")
        },
    )
    .await;
    s.range(
        alice,
        RangeRequest {
            count_only: true,
            ..range("\0", "\0")
        },
    )
    .await;
    s.range(alice, range("/app/", "/app0")).await;
    s.range(alice, range("/app/a", "/app/c")).await;
    s.range(alice, range("/app", "/app0")).await;
    s.range(alice, get("/other")).await;
    s.range(alice, range("\0", "\0")).await;
    s.put(alice, put("/app/x", "no")).await;
    s.put(alice, put("/w", "written")).await;
    s.range(alice, get("/w")).await;
    s.put(
        alice,
        PutRequest {
            prev_kv: true,
            ..put("/w", "again")
        },
    )
    .await;
    s.put(alice, put("/z/k", "z")).await;
    s.range(alice, range("/z/", "\0")).await;
    s.range(alice, range("/z/", "/z0")).await;
    s.range(alice, range("/y", "/z0")).await;
    s.delete(
        alice,
        DeleteRangeRequest {
            key: "/app/".into(),
            range_end: "/app0".into(),
            ..Default::default()
        },
    )
    .await;
    s.delete(
        alice,
        DeleteRangeRequest {
            key: "/z/k".into(),
            prev_kv: true,
            ..Default::default()
        },
    )
    .await;
    s.delete(
        alice,
        DeleteRangeRequest {
            key: "/w".into(),
            prev_kv: true,
            ..Default::default()
        },
    )
    .await;
    s.delete(
        alice,
        DeleteRangeRequest {
            key: "/w".into(),
            ..Default::default()
        },
    )
    .await;
    s.txn(
        alice,
        TxnRequest {
            compare: vec![value_is("/other", "3")],
            success: vec![op(Request::RequestRange(get("/app/a")))],
            failure: vec![],
        },
    )
    .await;
    s.txn(
        alice,
        TxnRequest {
            compare: vec![value_is("/app/a", "1")],
            success: vec![op(Request::RequestRange(range("/app/", "/app0")))],
            failure: vec![op(Request::RequestRange(get("/app/b")))],
        },
    )
    .await;
    // An op of the branch not taken is checked too. (The ops of a nested txn are not compared:
    // etcd 3.4 does not check them at all, a hole t4 does not copy; `tests/tests/auth.rs`
    // checks that t4 refuses them.)
    s.txn(
        alice,
        TxnRequest {
            compare: vec![value_is("/app/a", "1")],
            success: vec![op(Request::RequestPut(put("/w", "txn")))],
            failure: vec![op(Request::RequestPut(put("/app/x", "no")))],
        },
    )
    .await;
    s.txn(
        alice,
        TxnRequest {
            compare: vec![value_is("/app/a", "1")],
            success: vec![op(Request::RequestPut(put("/w", "txn")))],
            failure: vec![],
        },
    )
    .await;
    s.range(root, range("\0", "\0")).await;
}

/// A watch on keys the user may not read is refused on the stream; one it may read works.
async fn enforcing_watch_permissions(s: &mut Run, root: &Who, alice: &Who) {
    let mut w = Watch::new(s, alice);
    let watch = |k: &str, end: &str| WatchCreateRequest {
        key: k.into(),
        range_end: end.into(),
        ..Default::default()
    };
    w.create(s, watch("/other", "")).await;
    w.create(s, watch("/app/", "/app0")).await;
    s.put(root, put("/app/a", "watched")).await;
    s.put(root, put("/other", "not watched")).await;
    s.put(root, put("/app/b", "watched too")).await;
    w.expect_events(s, 2, "the puts on /app/").await;
    w.create(s, watch("\0", "\0")).await;

    let mut anonymous = Watch::new(s, &Who::nobody());
    anonymous.create(s, watch("/app/", "/app0")).await;
    let mut forged = Watch::new(s, &Who::forger());
    forged.create(s, watch("/app/", "/app0")).await;
}

/// LeaseRevoke, and Put with a lease, need write access to every key of the lease.
async fn enforcing_lease_permissions(s: &mut Run, root: &Who, alice: &Who) {
    s.lease_grant(alice, ALICES_LEASE, "alice's lease").await;
    s.put(
        alice,
        PutRequest {
            lease: ALICES_LEASE,
            ..put("/w", "leased")
        },
    )
    .await;
    s.lease_grant(root, ROOTS_LEASE, "root's lease").await;
    s.put(
        root,
        PutRequest {
            lease: ROOTS_LEASE,
            ..put("/other", "leased")
        },
    )
    .await;
    s.put(
        alice,
        PutRequest {
            lease: ROOTS_LEASE,
            ..put("/w", "on root's lease")
        },
    )
    .await;
    s.lease_time_to_live(alice, ROOTS_LEASE, "root's lease")
        .await;
    s.lease_time_to_live(&Who::nobody(), ALICES_LEASE, "alice's lease")
        .await;
    s.lease_leases(alice).await;
    s.lease_revoke(alice, ROOTS_LEASE, "root's lease").await;
    s.lease_revoke(alice, ALICES_LEASE, "alice's lease").await;
    s.lease_revoke(root, ROOTS_LEASE, "root's lease").await;
    s.range(root, range("\0", "\0")).await;
}

/// The Lock and Election services run their recipes as the caller: alice may lock and campaign
/// where she may read and write (`/z/` on), ask for a leader where she may read (`/app/`), and
/// nothing elsewhere; the refusals come as the recipes' client errors.
async fn enforcing_recipe_permissions(s: &mut Run, alice: &Who) {
    s.lease_grant(alice, ALICES_LOCK_LEASE, "alice's lock lease")
        .await;
    let held = s.lock(alice, "/z/lock", ALICES_LOCK_LEASE).await;
    s.lock(alice, "/other-lock", ALICES_LOCK_LEASE).await;
    s.lock(alice, "/app/lock", ALICES_LOCK_LEASE).await;
    s.lock(&Who::nobody(), "/z/lock", ALICES_LOCK_LEASE).await;
    if let Some(key) = held {
        s.unlock(&Who::nobody(), &key).await;
        s.unlock(alice, &key).await;
    }
    s.campaign(alice, "/z/election", ALICES_LOCK_LEASE).await;
    s.campaign(alice, "/other-election", ALICES_LOCK_LEASE)
        .await;
    s.leader(alice, "/z/election").await;
    s.leader(alice, "/app/election").await;
    s.leader(alice, "/other-election").await;
    s.leader(&Who::nobody(), "/z/election").await;
    s.lease_revoke(alice, ALICES_LOCK_LEASE, "alice's lock lease")
        .await;
}

/// The Auth service and the administrative Maintenance calls as a user without the root role.
async fn enforcing_admin_permissions(s: &mut Run, root: &Who, alice: &Who) {
    s.user_add(alice, "carol", "pw", false).await;
    s.user_add(&Who::nobody(), "carol", "pw", false).await;
    s.user_get(alice, "alice").await;
    s.user_get(alice, "root").await;
    s.role_get(alice, "reader").await;
    s.role_get(alice, "root").await;
    s.user_list(alice).await;
    s.role_list(alice).await;
    s.role_add(alice, "mine").await;
    s.role_grant(alice, "reader", perm(PermType::Readwrite, "\0", "\0"))
        .await;
    s.user_change_password(alice, "alice", "mine").await;
    s.auth_disable(alice).await;

    s.compact(alice, 3).await;
    s.compact(&Who::nobody(), 3).await;
    s.compact(root, 3).await;

    s.status(alice).await;
    s.hash(alice).await;
    s.hash_kv(alice).await;
    s.defragment(alice).await;
    s.status(&Who::nobody()).await;
    s.hash_kv(&Who::nobody()).await;
    s.hash(root).await;
    s.hash_kv(root).await;
    s.defragment(root).await;

    // The root user and role cannot be taken apart while authentication is on.
    s.user_delete(root, "root").await;
    s.user_revoke_role(root, "root", "root").await;
    s.role_delete(root, "root").await;
    s.user_list(root).await;
    s.role_list(root).await;
}

/// Password changes, permission and role revocation, user deletion: each takes effect at
/// once. Returns alice's last token.
async fn changing_users_and_roles(s: &mut Run, root: &Who, alice: &Who) -> Who {
    s.user_change_password(root, "alice", "newpw").await;
    s.range(&alice.renamed("alice's old token"), get("/app/a"))
        .await;
    s.authenticate("alice", "alicepw").await;
    let alice = s.authenticate("alice", "newpw").await;
    s.range(&alice, get("/app/a")).await;

    s.role_revoke(root, "reader", "/app/", "/app0").await;
    s.range(&alice, get("/app/a")).await;
    s.range(&alice, range("/z/", "\0")).await;
    s.role_get(root, "reader").await;

    s.role_delete(root, "reader").await;
    s.range(&alice, range("/z/", "\0")).await;
    s.user_get(root, "alice").await;
    s.user_get(&alice, "alice").await;
    s.role_list(root).await;

    s.user_delete(root, "alice").await;
    s.range(&alice, get("/app/a")).await;
    s.authenticate("alice", "newpw").await;
    s.user_delete(root, "alice").await;
    s.user_list(root).await;
    alice
}
