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
use t4_core::{Request, Response};

use crate::error::Result;
use crate::node::Node;

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
        self.shared.auth_enabled.load(Ordering::Acquire)
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
        let response = match self.request(Request::Auth(change)).await? {
            Response::Auth(r) => r,
            other => unreachable!("auth change answered with {other:?}"),
        };
        self.publish_auth(response.state.clone());
        Ok(response)
    }

    /// Makes `state` the published one unless a later one is published already (answers
    /// may be delivered out of order; the auth revision orders them).
    pub(crate) fn publish_auth(&self, state: Arc<AuthState>) {
        let mut published = self.shared.auth.lock().unwrap_or_else(|e| e.into_inner());
        if state.revision >= published.revision {
            self.shared
                .auth_enabled
                .store(state.enabled, Ordering::Release);
            *published = state;
        }
    }
}
