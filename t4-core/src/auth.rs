//! Authentication state and etcd's rules over it: users, roles, key-range permissions and
//! the enabled flag.
//!
//! [`AuthState`] is what the core keeps, logs and checkpoints. Every change to it is decided
//! here by [`AuthState::change`] with etcd's errors (the auth store of etcd 3.4), and a change
//! that changed something is logged as the whole new state ([`crate::wal::LogOp::Auth`]): the
//! state is small and changes rarely, so replay is a plain replacement.
//!
//! Checks ([`AuthState::check`], [`AuthState::check_admin`]) are pure functions of the state,
//! called by the server for every request while authentication is enabled. Passwords are not
//! seen here: the server hashes them (bcrypt, as etcd) and checks them against
//! [`User::password`]; tokens live in the server too.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The user that may enable authentication, and the role that grants everything.
pub const ROOT: &str = "root";

/// What a permission allows (etcd's `authpb.Permission.Type` numbers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PermissionKind {
    /// Reads (`READ` = 0).
    Read,
    /// Writes (`WRITE` = 1).
    Write,
    /// Both (`READWRITE` = 2).
    ReadWrite,
}

impl PermissionKind {
    /// From etcd's wire number; unknown numbers are refused.
    pub fn from_i32(n: i32) -> Option<PermissionKind> {
        match n {
            0 => Some(PermissionKind::Read),
            1 => Some(PermissionKind::Write),
            2 => Some(PermissionKind::ReadWrite),
            _ => None,
        }
    }

    /// etcd's wire number.
    pub fn as_i32(self) -> i32 {
        match self {
            PermissionKind::Read => 0,
            PermissionKind::Write => 1,
            PermissionKind::ReadWrite => 2,
        }
    }

    fn allows(self, wanted: PermissionKind) -> bool {
        self == PermissionKind::ReadWrite || self == wanted
    }
}

/// A key-range permission, with etcd's range conventions: an empty `range_end` is the key
/// alone, `[0]` is every key from `key` on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Permission {
    /// What it allows.
    pub kind: PermissionKind,
    /// The first key.
    pub key: Vec<u8>,
    /// The end of the range (exclusive), or empty, or `[0]`.
    pub range_end: Vec<u8>,
}

/// A user.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    /// The bcrypt hash of the password (empty for a user added without one).
    pub password: String,
    /// Added with etcd's `no_password` option: never authenticates with a password.
    pub no_password: bool,
    /// Granted roles, sorted.
    pub roles: Vec<String>,
}

/// A role.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Its permissions, sorted by key.
    pub permissions: Vec<Permission>,
}

/// Everything authentication keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    /// Whether requests are checked.
    pub enabled: bool,
    /// etcd's auth revision: how many changes the state has seen.
    pub revision: u64,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// Roles by name.
    pub roles: BTreeMap<String, Role>,
}

/// A change to the auth state, as etcd's Auth RPCs ask for them. Passwords arrive hashed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthChange {
    /// `AuthEnable`.
    Enable,
    /// `AuthDisable`.
    Disable,
    /// `UserAdd`.
    UserAdd {
        /// The name.
        name: String,
        /// The bcrypt hash of the password (ignored with `no_password`).
        password: String,
        /// etcd's `options.no_password`.
        no_password: bool,
    },
    /// `UserDelete`.
    UserDelete {
        /// The name.
        name: String,
    },
    /// `UserChangePassword`.
    UserChangePassword {
        /// The name.
        name: String,
        /// The bcrypt hash of the new password.
        password: String,
    },
    /// `UserGrantRole`.
    UserGrantRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// `UserRevokeRole`.
    UserRevokeRole {
        /// The user.
        user: String,
        /// The role.
        role: String,
    },
    /// `RoleAdd`.
    RoleAdd {
        /// The name.
        name: String,
    },
    /// `RoleDelete`.
    RoleDelete {
        /// The name.
        name: String,
    },
    /// `RoleGrantPermission`.
    RoleGrantPermission {
        /// The role.
        role: String,
        /// The permission (replaces one on the same key and range end).
        permission: Permission,
    },
    /// `RoleRevokePermission`.
    RoleRevokePermission {
        /// The role.
        role: String,
        /// The permission's key.
        key: Vec<u8>,
        /// The permission's range end.
        range_end: Vec<u8>,
    },
}

impl AuthChange {
    /// The user whose tokens stop being valid once this change is made, if any (etcd
    /// invalidates a user's tokens when the user is deleted or its password changes).
    pub fn invalidates_user(&self) -> Option<&str> {
        match self {
            AuthChange::UserDelete { name } | AuthChange::UserChangePassword { name, .. } => {
                Some(name)
            }
            _ => None,
        }
    }
}

/// Where a key range ends: before a key (exclusive) or never.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum End {
    Key(Vec<u8>),
    Never,
}

impl AuthState {
    /// Applies `change` with etcd's rules. `Ok(true)` if the state changed (its revision is
    /// then one higher), `Ok(false)` if the change was already in effect (etcd answers
    /// success and changes nothing), or etcd's error.
    pub fn change(&mut self, change: &AuthChange) -> Result<bool, Error> {
        let changed = self.change_inner(change)?;
        if changed {
            self.revision += 1;
        }
        Ok(changed)
    }

    fn change_inner(&mut self, change: &AuthChange) -> Result<bool, Error> {
        match change {
            AuthChange::Enable => {
                if self.enabled {
                    return Ok(false);
                }
                let root = self.users.get(ROOT).ok_or(Error::RootUserNotExist)?;
                if !has_root_role(root) {
                    return Err(Error::RootRoleNotExist);
                }
                self.enabled = true;
            }
            AuthChange::Disable => {
                if !self.enabled {
                    return Ok(false);
                }
                self.enabled = false;
            }
            AuthChange::UserAdd {
                name,
                password,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(Error::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(Error::UserAlreadyExist);
                }
                let user = User {
                    password: if *no_password {
                        String::new()
                    } else {
                        password.clone()
                    },
                    no_password: *no_password,
                    roles: Vec::new(),
                };
                self.users.insert(name.clone(), user);
            }
            AuthChange::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                self.users.remove(name).ok_or(Error::UserNotFound)?;
            }
            AuthChange::UserChangePassword { name, password } => {
                let user = self.users.get_mut(name).ok_or(Error::UserNotFound)?;
                user.password = password.clone();
            }
            AuthChange::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(Error::UserNotFound);
                }
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(Error::RoleNotFound);
                }
                let u = self.users.get_mut(user).ok_or(Error::UserNotFound)?;
                match u.roles.binary_search(role) {
                    Ok(_) => return Ok(false),
                    Err(at) => u.roles.insert(at, role.clone()),
                }
            }
            AuthChange::UserRevokeRole { user, role } => {
                if self.enabled && user == ROOT && role == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                let u = self.users.get_mut(user).ok_or(Error::UserNotFound)?;
                let at = u
                    .roles
                    .binary_search(role)
                    .map_err(|_| Error::RoleNotGranted)?;
                u.roles.remove(at);
            }
            AuthChange::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(Error::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(Error::RoleAlreadyExist);
                }
                self.roles.insert(name.clone(), Role::default());
            }
            AuthChange::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(Error::InvalidAuthMgmt);
                }
                self.roles.remove(name).ok_or(Error::RoleNotFound)?;
                for user in self.users.values_mut() {
                    user.roles.retain(|r| r != name);
                }
            }
            AuthChange::RoleGrantPermission { role, permission } => {
                let r = self.roles.get_mut(role).ok_or(Error::RoleNotFound)?;
                let perms = &mut r.permissions;
                let at = perms.partition_point(|p| p.key < permission.key);
                match perms.get_mut(at) {
                    Some(p) if p.key == permission.key && p.range_end == permission.range_end => {
                        p.kind = permission.kind;
                    }
                    _ => {
                        perms.push(permission.clone());
                        // Stable, as etcd's: permissions on one key keep their grant order.
                        perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
            }
            AuthChange::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let r = self.roles.get_mut(role).ok_or(Error::RoleNotFound)?;
                let before = r.permissions.len();
                r.permissions
                    .retain(|p| p.key != *key || p.range_end != *range_end);
                if r.permissions.len() == before {
                    return Err(Error::PermissionNotGranted);
                }
            }
        }
        Ok(true)
    }

    /// Whether `user` has the root role.
    pub fn is_root(&self, user: &str) -> bool {
        self.users.get(user).is_some_and(has_root_role)
    }

    /// Whether `user` was granted `role`.
    pub fn has_role(&self, user: &str, role: &str) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.roles.binary_search_by(|r| r.as_str().cmp(role)).is_ok())
    }

    /// etcd's check for administrative requests (user and role management, `AuthDisable`,
    /// `Hash`, `HashKV`, `Defragment`, `Snapshot`): passes while authentication is disabled,
    /// else only for a user with the root role. `user` is `None` when the request carried no
    /// token.
    pub fn check_admin(&self, user: Option<&str>) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|u| !u.is_empty()).ok_or(Error::UserEmpty)?;
        let u = self.users.get(name).ok_or(Error::UserNotFound)?;
        if has_root_role(u) {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// etcd's check that `user` may `wanted` (read or write) the keys `[key, range_end)`
    /// (range conventions as in [`Permission`]). Passes while authentication is disabled and
    /// for users with the root role; otherwise the range must be covered by the union of the
    /// matching permissions of the user's roles.
    pub fn check(
        &self,
        user: Option<&str>,
        key: &[u8],
        range_end: &[u8],
        wanted: PermissionKind,
    ) -> Result<(), Error> {
        if !self.enabled {
            return Ok(());
        }
        let name = user.filter(|u| !u.is_empty()).ok_or(Error::UserEmpty)?;
        let u = self.users.get(name).ok_or(Error::PermissionDenied)?;
        if has_root_role(u) {
            return Ok(());
        }
        let mut granted: Vec<(&[u8], End)> = u
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| &r.permissions)
            .filter(|p| p.kind.allows(wanted))
            .map(|p| (p.key.as_slice(), end_of(&p.key, &p.range_end)))
            .collect();
        granted.sort();
        let end = end_of(key, range_end);
        let covered = if range_end.is_empty() || end <= End::Key(key.to_vec()) {
            let at = End::Key(key.to_vec());
            granted
                .iter()
                .any(|(start, end)| *start <= key && at < *end)
        } else {
            // Sweep the granted ranges in start order, extending the covered prefix.
            let mut reached = End::Key(key.to_vec());
            for (start, granted_end) in granted {
                if reached >= end || End::Key(start.to_vec()) > reached {
                    break;
                }
                reached = reached.max(granted_end);
            }
            reached >= end
        };
        if covered {
            Ok(())
        } else {
            Err(Error::PermissionDenied)
        }
    }

    /// The state as bytes (JSON), for the store and the log.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the auth state always serializes")
    }

    /// The state [`AuthState::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<AuthState, String> {
        serde_json::from_slice(bytes).map_err(|e| format!("malformed auth state: {e}"))
    }
}

fn has_root_role(user: &User) -> bool {
    user.roles.iter().any(|r| r == ROOT)
}

/// The end of the range `[key, range_end)` with etcd's conventions; a single key's range
/// ends before the key followed by a zero byte, the next key in byte order.
fn end_of(key: &[u8], range_end: &[u8]) -> End {
    match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Key(next)
        }
        [0] => End::Never,
        end => End::Key(end.to_vec()),
    }
}

#[cfg(test)]
mod tests;
