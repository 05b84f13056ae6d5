//! The Auth service: etcd's users, roles, key-range permissions and tokens.
//!
//! Changes go through the node ([`t4::Node::auth_change`]), so they are durable and
//! recovered like the data; the rules are [`t4_core::auth`]'s. Passwords are hashed here with
//! bcrypt (`--bcrypt-cost`), as etcd does, and checked on `Authenticate`, which hands out a
//! token ([`super::access::Tokens`]). Management calls need the root role once
//! authentication is enabled, as in etcd 3.4; a user may read its own user and roles.

use std::future::Future;

use t4::auth::{AuthChange, Permission, PermissionKind};
use t4_proto::authpb;
use t4_proto::etcdserverpb::{self as pb, auth_server::Auth};
use tonic::{Request, Response, Status};

use super::Shared;
use super::access::Caller;
use crate::status::{core_status, node_status};

/// etcd's Auth service over the node.
#[derive(Clone, Debug)]
pub struct AuthService {
    ctx: Shared,
}

impl AuthService {
    /// The service.
    pub fn new(ctx: Shared) -> AuthService {
        AuthService { ctx }
    }

    fn header(&self, revision: i64) -> Option<pb::ResponseHeader> {
        self.ctx.id.header(revision)
    }

    /// Checks that the caller of `request` is an administrator, then makes `change`;
    /// answers the header for the response.
    async fn admin_change<T>(
        &self,
        request: &Request<T>,
        change: impl Future<Output = Result<AuthChange, Status>>,
    ) -> Result<Option<pb::ResponseHeader>, Status> {
        self.ctx.caller(request)?.admin()?;
        let change = change.await?;
        let invalidated = change.invalidates_user().map(str::to_string);
        let disabling = change == AuthChange::Disable;
        let resp = self
            .ctx
            .node
            .auth_change(change)
            .await
            .map_err(node_status)?;
        if let Some(user) = invalidated {
            self.ctx.tokens.invalidate_user(&user);
        }
        if disabling {
            self.ctx.tokens.clear();
        }
        Ok(self.header(resp.revision))
    }

    /// The bcrypt hash of `password` (on a blocking thread: a hash takes tens of ms).
    async fn hash(&self, password: String) -> Result<String, Status> {
        let cost = self.ctx.settings.bcrypt_cost;
        tokio::task::spawn_blocking(move || bcrypt::hash(password, cost))
            .await
            .map_err(|e| Status::internal(format!("hashing the password: {e}")))?
            .map_err(|e| Status::internal(format!("hashing the password: {e}")))
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        self.ctx.caller(request)
    }
}

fn ready<T>(value: T) -> std::future::Ready<Result<T, Status>> {
    std::future::ready(Ok(value))
}

#[tonic::async_trait]
impl Auth for AuthService {
    async fn auth_status(
        &self,
        _: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        let state = self.ctx.node.auth();
        Ok(Response::new(pb::AuthStatusResponse {
            header: self.header(self.ctx.node.current_revision()),
            enabled: state.enabled,
            auth_revision: state.revision,
        }))
    }

    async fn auth_enable(
        &self,
        request: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let header = self
            .admin_change(&request, ready(AuthChange::Enable))
            .await?;
        Ok(Response::new(pb::AuthEnableResponse { header }))
    }

    async fn auth_disable(
        &self,
        request: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let header = self
            .admin_change(&request, ready(AuthChange::Disable))
            .await?;
        Ok(Response::new(pb::AuthDisableResponse { header }))
    }

    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let req = request.into_inner();
        let state = self.ctx.node.auth();
        if !state.enabled {
            return Err(core_status(&t4_core::Error::AuthNotEnabled));
        }
        let failed = || core_status(&t4_core::Error::AuthFailed);
        let user = state.users.get(&req.name).ok_or_else(failed)?;
        if user.no_password {
            return Err(core_status(&t4_core::Error::NoPasswordUser));
        }
        let hash = user.password.clone();
        let matches = tokio::task::spawn_blocking(move || bcrypt::verify(req.password, &hash))
            .await
            .map_err(|e| Status::internal(format!("checking the password: {e}")))?
            .unwrap_or(false);
        if !matches {
            return Err(failed());
        }
        Ok(Response::new(pb::AuthenticateResponse {
            header: self.header(self.ctx.node.current_revision()),
            token: self.ctx.tokens.assign(&req.name, state.revision)?,
        }))
    }

    async fn user_add(
        &self,
        request: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let req = request.get_ref().clone();
        let no_password = req.options.is_some_and(|o| o.no_password);
        let change = async {
            let password = if no_password {
                String::new()
            } else {
                self.hash(req.password).await?
            };
            Ok(AuthChange::UserAdd {
                name: req.name,
                password,
                no_password,
            })
        };
        let header = self.admin_change(&request, change).await?;
        Ok(Response::new(pb::AuthUserAddResponse { header }))
    }

    async fn user_get(
        &self,
        request: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        let caller = self.caller(&request)?;
        let name = &request.get_ref().name;
        // A user may read itself.
        if caller.user() != Some(name.as_str()) {
            caller.admin()?;
        }
        let state = self.ctx.node.auth();
        let user = state
            .users
            .get(name)
            .ok_or_else(|| core_status(&t4_core::Error::UserNotFound))?;
        Ok(Response::new(pb::AuthUserGetResponse {
            header: self.header(self.ctx.node.current_revision()),
            roles: user.roles.clone(),
        }))
    }

    async fn user_list(
        &self,
        request: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.caller(&request)?.admin()?;
        Ok(Response::new(pb::AuthUserListResponse {
            header: self.header(self.ctx.node.current_revision()),
            users: self.ctx.node.auth().users.keys().cloned().collect(),
        }))
    }

    async fn user_delete(
        &self,
        request: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let name = request.get_ref().name.clone();
        let header = self
            .admin_change(&request, ready(AuthChange::UserDelete { name }))
            .await?;
        Ok(Response::new(pb::AuthUserDeleteResponse { header }))
    }

    async fn user_change_password(
        &self,
        request: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let req = request.get_ref().clone();
        let change = async {
            Ok(AuthChange::UserChangePassword {
                name: req.name,
                password: self.hash(req.password).await?,
            })
        };
        let header = self.admin_change(&request, change).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse { header }))
    }

    async fn user_grant_role(
        &self,
        request: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let req = request.get_ref().clone();
        let change = AuthChange::UserGrantRole {
            user: req.user,
            role: req.role,
        };
        let header = self.admin_change(&request, ready(change)).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse { header }))
    }

    async fn user_revoke_role(
        &self,
        request: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let req = request.get_ref().clone();
        let change = AuthChange::UserRevokeRole {
            user: req.name,
            role: req.role,
        };
        let header = self.admin_change(&request, ready(change)).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse { header }))
    }

    async fn role_add(
        &self,
        request: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let name = request.get_ref().name.clone();
        let header = self
            .admin_change(&request, ready(AuthChange::RoleAdd { name }))
            .await?;
        Ok(Response::new(pb::AuthRoleAddResponse { header }))
    }

    async fn role_get(
        &self,
        request: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        let caller = self.caller(&request)?;
        let name = &request.get_ref().role;
        let state = self.ctx.node.auth();
        // A user may read the roles it has.
        if !caller.user().is_some_and(|u| state.has_role(u, name)) {
            caller.admin()?;
        }
        let role = state
            .roles
            .get(name)
            .ok_or_else(|| core_status(&t4_core::Error::RoleNotFound))?;
        let perm = role
            .permissions
            .iter()
            .map(|p| authpb::Permission {
                perm_type: p.kind.as_i32(),
                key: p.key.clone(),
                range_end: p.range_end.clone(),
            })
            .collect();
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: self.header(self.ctx.node.current_revision()),
            perm,
        }))
    }

    async fn role_list(
        &self,
        request: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.caller(&request)?.admin()?;
        Ok(Response::new(pb::AuthRoleListResponse {
            header: self.header(self.ctx.node.current_revision()),
            roles: self.ctx.node.auth().roles.keys().cloned().collect(),
        }))
    }

    async fn role_delete(
        &self,
        request: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let name = request.get_ref().role.clone();
        let header = self
            .admin_change(&request, ready(AuthChange::RoleDelete { name }))
            .await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse { header }))
    }

    async fn role_grant_permission(
        &self,
        request: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let req = request.get_ref().clone();
        let perm = req.perm.unwrap_or_default();
        let kind = PermissionKind::from_i32(perm.perm_type).ok_or_else(|| {
            Status::invalid_argument(format!("t4: unknown permission type {}", perm.perm_type))
        })?;
        let change = AuthChange::RoleGrantPermission {
            role: req.name,
            permission: Permission {
                kind,
                key: perm.key,
                range_end: perm.range_end,
            },
        };
        let header = self.admin_change(&request, ready(change)).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header,
        }))
    }

    async fn role_revoke_permission(
        &self,
        request: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let req = request.get_ref().clone();
        let change = AuthChange::RoleRevokePermission {
            role: req.role,
            key: req.key,
            range_end: req.range_end,
        };
        let header = self.admin_change(&request, ready(change)).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header,
        }))
    }
}
