//! Authentication state through `t4::Node`: changes are published to every handle once made,
//! and writes checked against an older auth state are refused.

#![allow(clippy::unwrap_used)]

mod common;

use common::{b, open, request_error};
use t4::auth::{AuthChange, AuthStatus, ROOT};
use t4::{DeleteRangeRequest, PutRequest, TxnRequest};

fn role_add(name: &str) -> AuthChange {
    AuthChange::RoleAdd { name: name.into() }
}

#[tokio::test]
async fn a_change_is_published_even_when_its_caller_has_gone() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    // The change is sent on its first poll; the caller then gives up on it.
    let change = node.auth_change(role_add("reader"));
    tokio::select! {
        biased;
        _ = change => panic!("answered before its WAL append"),
        _ = std::future::ready(()) => {}
    }
    // A put sent afterwards is decided after the change: once it is answered, so is the
    // change.
    node.put(b("after"), b("v")).await.unwrap();
    assert!(node.auth().roles.contains_key("reader"));
    assert_eq!(
        node.auth_status(),
        AuthStatus {
            enabled: false,
            revision: 1
        }
    );
}

#[tokio::test]
async fn writes_checked_against_an_older_auth_state_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    let put = PutRequest {
        key: b("k"),
        value: b("v"),
        ..Default::default()
    };
    let lease = node.lease_grant(60, 0).await.unwrap().id;
    let checked_at = node.auth_status().revision;
    assert_eq!(checked_at, 0);
    node.checked(checked_at)
        .put_with(put.clone())
        .await
        .unwrap();

    for change in [
        AuthChange::UserAdd {
            name: ROOT.into(),
            password: String::new(),
            no_password: true,
        },
        AuthChange::UserGrantRole {
            user: ROOT.into(),
            role: ROOT.into(),
        },
        AuthChange::Enable,
    ] {
        node.auth_change(change).await.unwrap();
    }
    let status = node.auth_status();
    assert_eq!(
        status,
        AuthStatus {
            enabled: true,
            revision: 3
        }
    );

    let revision = node.current_revision();
    let stale = node.checked(checked_at);
    let refused = t4::RequestError::AuthOldRevision;
    let delete = DeleteRangeRequest {
        key: b("k"),
        ..Default::default()
    };
    assert_eq!(
        request_error(stale.put_with(put.clone()).await.unwrap_err()),
        refused
    );
    assert_eq!(
        request_error(stale.delete_range(delete.clone()).await.unwrap_err()),
        refused
    );
    assert_eq!(
        request_error(stale.txn(TxnRequest::default()).await.unwrap_err()),
        refused
    );
    assert_eq!(
        request_error(stale.lease_revoke(lease).await.unwrap_err()),
        refused
    );
    assert_eq!(node.current_revision(), revision, "nothing was written");
    assert_eq!(node.lease_leases().await.unwrap().leases, vec![lease]);

    // Checked again, at the current state: made.
    let fresh = node.checked(status.revision);
    fresh.put_with(put).await.unwrap();
    assert_eq!(fresh.delete_range(delete).await.unwrap().deleted, 1);
    fresh.lease_revoke(lease).await.unwrap();
    // The embedded API itself checks nothing.
    node.put(b("k"), b("again")).await.unwrap();
}
