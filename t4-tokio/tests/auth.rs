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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_is_published_even_when_its_caller_has_gone() {
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::task::{Context, Waker};

    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;
    // Writers keep the core busy, so that a change finds it busy and queues for the core's
    // task (on an idle core it would be decided on its caller's task, within its first poll).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (node, stop) = (node.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    node.put(format!("w{w}"), "v").await.unwrap();
                }
            })
        })
        .collect();
    // The change is sent on its first poll; the caller then gives up on it.
    let mut queued = None;
    for i in 0..100_000 {
        let role = format!("reader{i}");
        let mut change = std::pin::pin!(node.auth_change(role_add(&role)));
        if change
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_pending()
        {
            queued = Some(role);
            break;
        }
        tokio::task::yield_now().await;
    }
    let role = queued.expect("a change found the core busy and queued");
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    // A put sent afterwards is decided after the change: once it is answered, so is the
    // change.
    node.put(b("after"), b("v")).await.unwrap();
    let roles = node.auth().roles.clone();
    assert!(roles.contains_key(role.as_str()), "{role} in {roles:?}");
    assert_eq!(
        node.auth_status(),
        AuthStatus {
            enabled: false,
            revision: roles.len() as u64
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
