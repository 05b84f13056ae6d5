//! Authentication state on a [`Node`]: etcd's users, roles and permissions, kept durably
//! with the data (WAL, store, checkpoints, snapshots).
//!
//! The embedded API never checks permissions itself — a Rust program holding a [`Node`]
//! may do anything. The state is there for servers in front of the node (the `t4`
//! binary's etcd Auth service checks every request against [`Node::auth`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

pub use t4_core::auth::{AuthChange, AuthState, Permission, PermissionKind, ROOT, Role, User};
pub use t4_core::request::AuthResponse;
use t4_core::request::{
    DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse, TxnRequest, TxnResponse,
};
use t4_core::{LeaseId, Request, Response, Revision};

use crate::error::Result;
use crate::node::Node;

/// Whether authentication is enabled, and the auth revision, of one published auth state
/// (etcd's `AuthStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthStatus {
    /// Whether requests are checked.
    pub enabled: bool,
    /// The state's [`AuthState::revision`].
    pub revision: u64,
}

/// The writes of a caller whose permissions a server checked against the auth state at one
/// revision ([`Node::checked`]). Each is refused with [`crate::RequestError::AuthOldRevision`]
/// if, by the time the write is decided, authentication is enabled and the auth state has
/// changed, so that a permission taken away is never used afterwards; etcd's clients then
/// authenticate again and retry.
#[derive(Clone, Copy, Debug)]
pub struct Checked<'a> {
    node: &'a Node,
    /// `None` for [`Node`]'s own writes, which no check precedes.
    auth_revision: Option<u64>,
}

impl Checked<'_> {
    async fn request(&self, request: Request) -> Result<Response> {
        self.node.request_checked(request, self.auth_revision).await
    }

    /// [`Node::put_with`], refused if the enabled auth state changed since the check.
    pub async fn put_with(&self, req: PutRequest) -> Result<PutResponse> {
        match self.request(Request::Put(req)).await? {
            Response::Put(r) => Ok(r),
            other => unreachable!("put answered with {other:?}"),
        }
    }

    /// [`Node::delete_range`], refused if the enabled auth state changed since the check.
    pub async fn delete_range(&self, req: DeleteRangeRequest) -> Result<DeleteRangeResponse> {
        match self.request(Request::DeleteRange(req)).await? {
            Response::DeleteRange(r) => Ok(r),
            other => unreachable!("delete answered with {other:?}"),
        }
    }

    /// [`Node::txn`], refused if the enabled auth state changed since the check.
    pub async fn txn(&self, req: TxnRequest) -> Result<TxnResponse> {
        match self.request(Request::Txn(req)).await? {
            Response::Txn(r) => Ok(r),
            other => unreachable!("txn answered with {other:?}"),
        }
    }

    /// [`Node::lease_revoke`], refused if the enabled auth state changed since the check.
    pub async fn lease_revoke(&self, id: LeaseId) -> Result<Revision> {
        match self.request(Request::LeaseRevoke { id }).await? {
            Response::LeaseRevoke(r) => Ok(r.revision),
            other => unreachable!("lease revoke answered with {other:?}"),
        }
    }
}

impl Node {
    /// The auth state: every change [`Node::auth_change`] answered is in it. Cheap (a
    /// shared pointer), for a check on every request.
    pub fn auth(&self) -> Arc<AuthState> {
        self.shared
            .auth
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether authentication is enabled in [`Node::auth`]'s state; cheaper than reading it.
    pub fn auth_enabled(&self) -> bool {
        self.auth_status().enabled
    }

    /// Whether authentication is enabled, and the auth revision, of [`Node::auth`]'s state;
    /// cheaper than reading it (one atomic load), and always of one state.
    pub fn auth_status(&self) -> AuthStatus {
        let status = self.shared.auth_status.load(Ordering::Acquire);
        AuthStatus {
            enabled: status & 1 == 1,
            revision: status >> 1,
        }
    }

    /// Writes for a caller whose permissions were checked against the auth state at
    /// `auth_revision` (from [`Node::auth`] or [`Node::auth_status`]): each is refused if,
    /// by the time it is decided, authentication is enabled and the auth state has changed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use t4::auth::{AuthChange, ROOT};
    /// let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let root = AuthChange::UserAdd { name: ROOT.into(), password: String::new(), no_password: true };
    /// node.auth_change(root).await?;
    /// node.auth_change(AuthChange::UserGrantRole { user: ROOT.into(), role: ROOT.into() }).await?;
    /// let checked_at = node.auth_status().revision;
    /// node.auth_change(AuthChange::Enable).await?;
    /// let put = t4::PutRequest { key: "k".into(), value: "v".into(), ..Default::default() };
    /// let err = node.checked(checked_at).put_with(put.clone()).await.unwrap_err();
    /// assert!(matches!(err, t4::Error::Request(t4::RequestError::AuthOldRevision)));
    /// node.checked(node.auth_status().revision).put_with(put).await?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn checked(&self, auth_revision: u64) -> Checked<'_> {
        Checked {
            node: self,
            auth_revision: Some(auth_revision),
        }
    }

    /// The node's own writes, made without a caller's check (never refused as stale).
    pub(crate) fn unchecked(&self) -> Checked<'_> {
        Checked {
            node: self,
            auth_revision: None,
        }
    }

    /// Changes the auth state with etcd's rules (see [`AuthChange`]), durably; returns the
    /// state after it. A change already in effect (enabling twice, granting a role twice)
    /// succeeds and writes nothing. Fails with etcd's errors (`UserAlreadyExist`,
    /// `RootUserNotExist`, `InvalidAuthMgmt`, ...) as [`crate::Error::Request`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), t4::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use t4::auth::AuthChange;
    /// let node = t4::Node::open(t4::Config::new(dir.path())).await?;
    /// let add = AuthChange::RoleAdd { name: "reader".into() };
    /// let r = node.auth_change(add).await?;
    /// assert!(r.state.roles.contains_key("reader"));
    /// assert!(node.auth().roles.contains_key("reader"));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn auth_change(&self, change: AuthChange) -> Result<AuthResponse> {
        // The core's task publishes the new state before it answers.
        match self.request(Request::Auth(change)).await? {
            Response::Auth(r) => Ok(r),
            other => unreachable!("auth change answered with {other:?}"),
        }
    }
}
