//! Who is calling and what they may do: etcd's simple tokens, and the permission checks the
//! services make while authentication is enabled.
//!
//! A client authenticates (`Authenticate`) and sends the token it got in the gRPC metadata
//! key `token` (or `authorization`, as etcd's JSON gateway passes it). Over TLS with
//! client certificates (`--client-tls-ca`), a request without a token is made as the user
//! named by the verified certificate's common name, as in etcd. Simple tokens (the default)
//! live in this server's memory only, as etcd's do: each is valid for `--auth-token-ttl`
//! after its last use, and a restart forgets them (clients authenticate again when told
//! "invalid auth token"). JWT tokens (`--auth-token jwt,…`, [`super::jwt`]) are signed and
//! carry their user and auth revision. The rules themselves are [`t4_core::auth`]'s.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng as _;
use t4::auth::{AuthState, PermissionKind};
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::Context;
use super::jwt::{IssueError, JwtTokens};
use crate::run::tls::ClientConnInfo;
use crate::status::core_status;

/// Letters of a token's random part, as etcd's simple tokens.
const TOKEN_LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
/// Length of a token's random part, as etcd's.
const TOKEN_RANDOM_LEN: usize = 16;

/// The tokens handed out by `Authenticate` (etcd's `--auth-token`).
#[derive(Debug)]
pub enum Tokens {
    /// etcd's simple tokens, kept in memory.
    Simple(SimpleTokens),
    /// etcd's JWT tokens.
    Jwt(JwtTokens),
}

impl Tokens {
    /// From `--auth-token`: `simple`, or `jwt,` and the JWT options; simple tokens are
    /// valid for `simple_ttl` after their last use.
    pub fn from_flag(spec: &str, simple_ttl: Duration) -> anyhow::Result<Tokens> {
        match spec.split_once(',') {
            None if spec == "simple" => Ok(Tokens::Simple(SimpleTokens::new(simple_ttl))),
            None if spec == "jwt" => Ok(Tokens::Jwt(JwtTokens::from_options("")?)),
            Some(("jwt", options)) => Ok(Tokens::Jwt(JwtTokens::from_options(options)?)),
            _ => anyhow::bail!("--auth-token: {spec:?} is neither simple nor jwt,…"),
        }
    }

    /// A new token for `user`, whose password was checked against auth revision
    /// `revision`.
    pub fn assign(&self, user: &str, revision: u64) -> Result<String, Status> {
        match self {
            Tokens::Simple(t) => Ok(t.assign(user)),
            Tokens::Jwt(t) => t.assign(user, revision).map_err(|e| match e {
                IssueError::VerifyOnly => Status::unknown(e.to_string()),
                IssueError::Signing(_) => Status::internal(e.to_string()),
            }),
        }
    }

    /// The user of a valid `token`, and the auth revision it carries (JWT only).
    fn user(&self, token: &str) -> Option<(String, Option<u64>)> {
        match self {
            Tokens::Simple(t) => t.user(token).map(|user| (user, None)),
            Tokens::Jwt(t) => t.user(token).map(|(user, rev)| (user, Some(rev))),
        }
    }

    /// Forgets every token of `user` (deleted, or its password changed). A JWT cannot be
    /// forgotten: the change raised the auth revision, which makes every older token stale.
    pub fn invalidate_user(&self, user: &str) {
        if let Tokens::Simple(t) = self {
            t.invalidate_user(user);
        }
    }

    /// Forgets every token (authentication was disabled); JWTs stay valid, as in etcd.
    pub fn clear(&self) {
        if let Tokens::Simple(t) = self {
            t.clear();
        }
    }
}

/// etcd's simple tokens.
#[derive(Debug)]
pub struct SimpleTokens {
    ttl: Duration,
    issued: Mutex<HashMap<String, Issued>>,
    next: AtomicU64,
}

#[derive(Debug)]
struct Issued {
    user: String,
    expires: Instant,
}

impl SimpleTokens {
    /// No tokens yet; each will be valid for `ttl` after its last use.
    pub fn new(ttl: Duration) -> SimpleTokens {
        SimpleTokens {
            ttl,
            issued: Mutex::default(),
            next: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Issued>> {
        self.issued.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new token for `user`: 16 random letters, a dot and a sequence number, as etcd's.
    pub fn assign(&self, user: &str) -> String {
        let mut rng = rand::rng();
        let random: String = (0..TOKEN_RANDOM_LEN)
            .map(|_| TOKEN_LETTERS[rng.random_range(0..TOKEN_LETTERS.len())] as char)
            .collect();
        let token = format!("{random}.{}", self.next.fetch_add(1, Ordering::Relaxed));
        let now = Instant::now();
        let mut issued = self.lock();
        issued.retain(|_, t| t.expires > now);
        issued.insert(
            token.clone(),
            Issued {
                user: user.to_string(),
                expires: now + self.ttl,
            },
        );
        token
    }

    /// The user `token` was issued to, if it is valid; its lifetime starts again.
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut issued = self.lock();
        let t = issued.get_mut(token)?;
        if t.expires <= now {
            issued.remove(token);
            return None;
        }
        t.expires = now + self.ttl;
        Some(t.user.clone())
    }

    /// Forgets every token of `user` (deleted, or its password changed).
    pub fn invalidate_user(&self, user: &str) {
        self.lock().retain(|_, t| t.user != user);
    }

    /// Forgets every token (authentication was disabled).
    pub fn clear(&self) {
        self.lock().clear();
    }
}

/// The caller of one request: who it is and the auth state it is checked against.
#[derive(Debug)]
pub struct Caller {
    /// `None` while authentication is disabled: everything is allowed.
    state: Option<Arc<AuthState>>,
    user: Option<String>,
    /// The revision of the auth state the caller is checked against (enabled or not): the
    /// state's, or the one its JWT was issued at.
    auth_revision: u64,
}

impl Caller {
    /// The node's writes for this caller: each is refused with etcd's "revision of auth
    /// store is old" if authentication is enabled when it is decided and the auth state is
    /// no longer the one it was checked against (etcd checks writes again as it applies
    /// them; its clients authenticate again and retry).
    pub fn writes<'a>(&self, node: &'a t4::Node) -> t4::auth::Checked<'a> {
        node.checked(self.auth_revision)
    }

    /// The authenticated user, if the request carried a valid token.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the caller may do everything (authentication disabled, or a root user).
    fn unrestricted(&self) -> bool {
        match (&self.state, &self.user) {
            (None, _) => true,
            (Some(state), Some(user)) => state.is_root(user),
            (Some(_), None) => false,
        }
    }

    /// etcd's check that the caller may read or write `[key, range_end)`.
    pub fn check(&self, key: &[u8], range_end: &[u8], kind: PermissionKind) -> Result<(), Status> {
        match &self.state {
            None => Ok(()),
            // A JWT issued before the auth state last changed: refused until the caller
            // authenticates again, as in etcd.
            Some(state) if self.auth_revision < state.revision => {
                Err(core_status(&t4_core::Error::AuthOldRevision))
            }
            Some(state) => state
                .check(self.user(), key, range_end, kind)
                .map_err(|e| core_status(&e)),
        }
    }

    /// [`Caller::check`] for reads.
    pub fn read(&self, key: &[u8], range_end: &[u8]) -> Result<(), Status> {
        self.check(key, range_end, PermissionKind::Read)
    }

    /// [`Caller::check`] for writes.
    pub fn write(&self, key: &[u8], range_end: &[u8]) -> Result<(), Status> {
        self.check(key, range_end, PermissionKind::Write)
    }

    /// etcd's check for administrative requests: only a user with the root role.
    pub fn admin(&self) -> Result<(), Status> {
        match &self.state {
            None => Ok(()),
            Some(state) => state.check_admin(self.user()).map_err(|e| core_status(&e)),
        }
    }

    /// etcd's check before a lease's keys change owner or go (a put attaching keys to the
    /// lease, a revoke): the caller may write every key the lease holds.
    pub async fn lease_keys_writable(&self, ctx: &Context, lease: i64) -> Result<(), Status> {
        if lease == 0 || self.unrestricted() {
            return Ok(());
        }
        let Ok(ttl) = ctx.node.lease_time_to_live(lease, true).await else {
            // An unknown lease: the request itself says so.
            return Ok(());
        };
        for key in &ttl.keys {
            self.write(key, &[])?;
        }
        Ok(())
    }
}

/// What a request presents to say who its caller is.
#[derive(Clone, Debug, Default)]
pub struct Credentials {
    /// The auth token of its metadata.
    pub token: Option<String>,
    /// The common name of the client certificate its connection presented, verified by
    /// `--client-tls-ca`.
    pub common_name: Option<Arc<str>>,
}

impl Credentials {
    /// What `request` presents: its metadata's token, its connection's certificate.
    pub fn of<T>(request: &tonic::Request<T>) -> Credentials {
        Credentials {
            token: token(request.metadata()),
            common_name: request
                .extensions()
                .get::<ClientConnInfo>()
                .and_then(|info| info.common_name.clone()),
        }
    }
}

impl Context {
    /// The caller of `request`. Fails with etcd's "invalid auth token" for a token that is
    /// not (or no longer) valid while authentication is enabled.
    pub fn caller<T>(&self, request: &tonic::Request<T>) -> Result<Caller, Status> {
        self.caller_with(&Credentials::of(request))
    }

    /// The caller presenting `credentials` (a request's, or those a stream was opened
    /// with). A token wins over a certificate, as in etcd.
    pub fn caller_with(&self, credentials: &Credentials) -> Result<Caller, Status> {
        let token = credentials.token.as_deref();
        let invalid = || core_status(&t4_core::Error::InvalidAuthToken);
        let status = self.node.auth_status();
        if !status.enabled {
            // etcd refuses a token it does not know even while authentication is off
            // (every token is forgotten when it is turned off).
            if token.is_some_and(|t| self.tokens.user(t).is_none()) {
                return Err(invalid());
            }
            return Ok(Caller {
                state: None,
                user: None,
                auth_revision: status.revision,
            });
        }
        let state = self.node.auth();
        let (user, token_revision) = match token {
            None => (credentials.common_name.as_deref().map(str::to_string), None),
            Some(token) => {
                let (user, revision) = self.tokens.user(token).ok_or_else(invalid)?;
                (Some(user), revision)
            }
        };
        Ok(Caller {
            // A JWT is checked as of the auth revision it was issued at, as in etcd.
            auth_revision: token_revision.unwrap_or(state.revision),
            state: Some(state),
            user,
        })
    }
}

/// The token in `metadata`, as [`Context::caller`] reads it.
pub fn token(metadata: &MetadataMap) -> Option<String> {
    ["token", "authorization"]
        .iter()
        .find_map(|k| metadata.get(*k))
        .map(|v| v.to_str().unwrap_or_default().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_look_like_etcds_and_expire_after_their_last_use() {
        let tokens = SimpleTokens::new(Duration::from_secs(300));
        let a = tokens.assign("alice");
        let (random, n) = a.split_once('.').expect("a dot");
        assert_eq!(random.len(), 16);
        assert!(random.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_eq!(n, "1");
        assert_eq!(tokens.user(&a).as_deref(), Some("alice"));
        assert_eq!(tokens.user("nope"), None);
        let b = tokens.assign("bob");
        tokens.invalidate_user("alice");
        assert_eq!(tokens.user(&a), None);
        assert_eq!(tokens.user(&b).as_deref(), Some("bob"));
        tokens.clear();
        assert_eq!(tokens.user(&b), None);

        let short = SimpleTokens::new(Duration::ZERO);
        let t = short.assign("carol");
        assert_eq!(short.user(&t), None, "an expired token is refused");
    }
}
