//! The clients of the authentication scenario (`auth.rs`) and how they record: every call is
//! sent as someone (with a token in the gRPC metadata, as etcd's clients send it, or without)
//! and recorded as `(step, outcome)`.
//!
//! Tokens are random per server, so each is recorded as its position among the tokens of the
//! transcript (`token#1`, `token#2`, ...): equal tokens must be equal at the same steps, and a
//! new token must be new. Hashes are recorded only as present or zero (`render.rs` says why
//! they are engine-specific; here the password hashes in the backend differ too, being
//! salted). Everything else, errors above all, is compared exactly.
use std::time::Duration;

use t4_proto::authpb::permission::Type as PermType;
use t4_proto::authpb::{Permission, UserAddOptions};
use t4_proto::etcdserverpb::auth_client::AuthClient;
use t4_proto::etcdserverpb::kv_client::KvClient;
use t4_proto::etcdserverpb::lease_client::LeaseClient;
use t4_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use t4_proto::etcdserverpb::watch_client::WatchClient;
use t4_proto::etcdserverpb::watch_request::RequestUnion;
use t4_proto::etcdserverpb::{
    AuthDisableRequest, AuthEnableRequest, AuthRoleAddRequest, AuthRoleDeleteRequest,
    AuthRoleGetRequest, AuthRoleGetResponse, AuthRoleGrantPermissionRequest, AuthRoleListRequest,
    AuthRoleRevokePermissionRequest, AuthUserAddRequest, AuthUserChangePasswordRequest,
    AuthUserDeleteRequest, AuthUserGetRequest, AuthUserGrantRoleRequest, AuthUserListRequest,
    AuthUserRevokeRoleRequest, AuthenticateRequest, CompactionRequest, DefragmentRequest,
    DeleteRangeRequest, HashKvRequest, HashRequest, LeaseGrantRequest, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest, PutRequest, RangeRequest, ResponseHeader,
    StatusRequest, TxnRequest, WatchCreateRequest, WatchRequest, WatchResponse,
};
use t4_proto::v3electionpb::election_client::ElectionClient;
use t4_proto::v3electionpb::{CampaignRequest, LeaderRequest};
use t4_proto::v3lockpb::lock_client::LockClient;
use t4_proto::v3lockpb::{LockRequest, UnlockRequest};
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::transport::Channel;

use crate::render;
use crate::session::Entry;

/// How long one request may take before the step is recorded as a timeout.
const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// Who a request is sent as: the token it carries (none, or one from Authenticate or made up).
#[derive(Clone)]
pub struct Who {
    name: String,
    token: Option<String>,
    /// The metadata key the token is sent under.
    key: &'static str,
}

impl Who {
    pub fn nobody() -> Who {
        Who {
            name: "nobody".into(),
            token: None,
            key: "token",
        }
    }

    /// A token no server issued.
    pub fn forger() -> Who {
        Who {
            name: "a garbage token".into(),
            token: Some("garbage.1".into()),
            key: "token",
        }
    }

    /// `self`'s token, named for a later step ("alice's old token").
    pub fn renamed(&self, name: &str) -> Who {
        Who {
            name: name.into(),
            token: self.token.clone(),
            key: self.key,
        }
    }

    /// `self`'s token under the metadata key `authorization` (etcd's gRPC gateway's).
    pub fn as_authorization(&self) -> Who {
        Who {
            name: format!("{} (metadata authorization)", self.name),
            token: self.token.clone(),
            key: "authorization",
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            let value = token.parse().expect("a token is ASCII");
            request.metadata_mut().insert(self.key, value);
        }
        request
    }
}

/// The clients of one server and what they have seen.
pub struct Run {
    auth: AuthClient<Channel>,
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    maintenance: MaintenanceClient<Channel>,
    lock: LockClient<Channel>,
    election: ElectionClient<Channel>,
    channel: Channel,
    pub out: Vec<Entry>,
    /// The distinct tokens seen, in order: a token is recorded as its position here.
    tokens: Vec<String>,
}

async fn call<T>(
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, String> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(Ok(resp)) => Ok(resp.into_inner()),
        Ok(Err(status)) => Err(render::status(&status)),
        Err(_) => Err(format!("TIMEOUT after {RPC_TIMEOUT:?}")),
    }
}

/// One recorded call: `rpc!(run, who, "step", client.method(message), show)`.
macro_rules! rpc {
    ($run:ident, $who:expr, $step:expr, $client:ident . $method:ident ($msg:expr), $show:expr) => {{
        let who: &Who = $who;
        let step = format!("{} as {}", $step, who.name);
        let result = call($run.$client.$method(who.request($msg))).await;
        $run.record(step, result, $show)
    }};
}

fn header<T: HasHeader>(r: &T) -> String {
    render::header(r.header())
}

/// Responses that carry only a header worth showing.
trait HasHeader {
    fn header(&self) -> &Option<ResponseHeader>;
}

macro_rules! has_header {
    ($($t:ident),*) => {$(
        impl HasHeader for t4_proto::etcdserverpb::$t {
            fn header(&self) -> &Option<ResponseHeader> {
                &self.header
            }
        }
    )*};
}

has_header!(
    AuthEnableResponse,
    AuthDisableResponse,
    AuthUserAddResponse,
    AuthUserDeleteResponse,
    AuthUserChangePasswordResponse,
    AuthUserGrantRoleResponse,
    AuthUserRevokeRoleResponse,
    AuthRoleAddResponse,
    AuthRoleDeleteResponse,
    AuthRoleGrantPermissionResponse,
    AuthRoleRevokePermissionResponse,
    LeaseRevokeResponse,
    DefragmentResponse
);

pub fn show_perm(p: &Permission) -> String {
    let t = PermType::try_from(p.perm_type)
        .map(|t| t.as_str_name().to_string())
        .unwrap_or_else(|_| format!("type{}", p.perm_type));
    if p.range_end.is_empty() {
        format!("{t} {}", render::bytes(&p.key))
    } else {
        format!(
            "{t} {}..{}",
            render::bytes(&p.key),
            render::bytes(&p.range_end)
        )
    }
}

fn show_role(r: &AuthRoleGetResponse) -> String {
    let perms: Vec<String> = r.perm.iter().map(show_perm).collect();
    format!("{} perms=[{}]", render::header(&r.header), perms.join(", "))
}

fn names(header: &Option<ResponseHeader>, names: &[String]) -> String {
    format!("{} [{}]", render::header(header), names.join(", "))
}

impl Run {
    /// The clients of a session over `channel`.
    pub fn new(channel: Channel) -> Run {
        Run {
            auth: AuthClient::new(channel.clone()),
            kv: KvClient::new(channel.clone()),
            lease: LeaseClient::new(channel.clone()),
            maintenance: MaintenanceClient::new(channel.clone()),
            lock: LockClient::new(channel.clone()),
            election: ElectionClient::new(channel.clone()),
            channel,
            out: Vec::new(),
            tokens: Vec::new(),
        }
    }

    fn record<T>(
        &mut self,
        step: String,
        result: Result<T, String>,
        show: impl Fn(&mut Self, &T) -> String,
    ) -> Option<T> {
        match result {
            Ok(resp) => {
                let outcome = show(self, &resp);
                self.out.push(Entry { step, outcome });
                Some(resp)
            }
            Err(e) => {
                self.out.push(Entry { step, outcome: e });
                None
            }
        }
    }

    fn token_name(&mut self, token: &str) -> String {
        if token.is_empty() {
            return "no token".into();
        }
        let n = match self.tokens.iter().position(|t| t == token) {
            Some(i) => i + 1,
            None => {
                self.tokens.push(token.to_string());
                self.tokens.len()
            }
        };
        format!("token#{n}")
    }

    /// Authenticates `name`; the returned `Who` carries the token (none if refused).
    pub async fn authenticate(&mut self, name: &str, password: &str) -> Who {
        let message = AuthenticateRequest {
            name: name.into(),
            password: password.into(),
        };
        let step = format!("authenticate {name:?} password {password:?}");
        let resp = rpc!(
            self,
            &Who::nobody(),
            step,
            auth.authenticate(message),
            |s, r| format!("{} {}", render::header(&r.header), s.token_name(&r.token))
        );
        Who {
            name: name.into(),
            token: resp.map(|r| r.token).filter(|t| !t.is_empty()),
            key: "token",
        }
    }

    pub async fn auth_enable(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "auth enable",
            auth.auth_enable(AuthEnableRequest {}),
            |_, r| header(r)
        );
    }

    pub async fn auth_disable(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "auth disable",
            auth.auth_disable(AuthDisableRequest {}),
            |_, r| header(r)
        );
    }

    pub async fn user_add(&mut self, who: &Who, name: &str, password: &str, no_password: bool) {
        let message = AuthUserAddRequest {
            name: name.into(),
            password: password.into(),
            options: Some(UserAddOptions { no_password }),
            hashed_password: String::new(),
        };
        let step = format!(
            "user add {name:?} password {password:?}{}",
            if no_password { " no_password" } else { "" }
        );
        rpc!(self, who, step, auth.user_add(message), |_, r| header(r));
    }

    pub async fn user_get(&mut self, who: &Who, name: &str) {
        let message = AuthUserGetRequest { name: name.into() };
        rpc!(
            self,
            who,
            format!("user get {name:?}"),
            auth.user_get(message),
            |_, r| names(&r.header, &r.roles)
        );
    }

    pub async fn user_list(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "user list",
            auth.user_list(AuthUserListRequest {}),
            |_, r| names(&r.header, &r.users)
        );
    }

    pub async fn user_delete(&mut self, who: &Who, name: &str) {
        let message = AuthUserDeleteRequest { name: name.into() };
        rpc!(
            self,
            who,
            format!("user delete {name:?}"),
            auth.user_delete(message),
            |_, r| header(r)
        );
    }

    pub async fn user_change_password(&mut self, who: &Who, name: &str, password: &str) {
        let message = AuthUserChangePasswordRequest {
            name: name.into(),
            password: password.into(),
            hashed_password: String::new(),
        };
        rpc!(
            self,
            who,
            format!("user change password {name:?} to {password:?}"),
            auth.user_change_password(message),
            |_, r| header(r)
        );
    }

    pub async fn user_grant_role(&mut self, who: &Who, user: &str, role: &str) {
        let message = AuthUserGrantRoleRequest {
            user: user.into(),
            role: role.into(),
        };
        rpc!(
            self,
            who,
            format!("user grant role {user:?} {role:?}"),
            auth.user_grant_role(message),
            |_, r| header(r)
        );
    }

    pub async fn user_revoke_role(&mut self, who: &Who, name: &str, role: &str) {
        let message = AuthUserRevokeRoleRequest {
            name: name.into(),
            role: role.into(),
        };
        rpc!(
            self,
            who,
            format!("user revoke role {name:?} {role:?}"),
            auth.user_revoke_role(message),
            |_, r| header(r)
        );
    }

    pub async fn role_add(&mut self, who: &Who, name: &str) {
        let message = AuthRoleAddRequest { name: name.into() };
        rpc!(
            self,
            who,
            format!("role add {name:?}"),
            auth.role_add(message),
            |_, r| header(r)
        );
    }

    pub async fn role_get(&mut self, who: &Who, role: &str) {
        let message = AuthRoleGetRequest { role: role.into() };
        rpc!(
            self,
            who,
            format!("role get {role:?}"),
            auth.role_get(message),
            |_, r| show_role(r)
        );
    }

    pub async fn role_list(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "role list",
            auth.role_list(AuthRoleListRequest {}),
            |_, r| names(&r.header, &r.roles)
        );
    }

    pub async fn role_delete(&mut self, who: &Who, role: &str) {
        let message = AuthRoleDeleteRequest { role: role.into() };
        rpc!(
            self,
            who,
            format!("role delete {role:?}"),
            auth.role_delete(message),
            |_, r| header(r)
        );
    }

    pub async fn role_grant(&mut self, who: &Who, role: &str, p: Permission) {
        let step = format!("role grant {role:?} {}", show_perm(&p));
        let message = AuthRoleGrantPermissionRequest {
            name: role.into(),
            perm: Some(p),
        };
        rpc!(
            self,
            who,
            step,
            auth.role_grant_permission(message),
            |_, r| header(r)
        );
    }

    pub async fn role_revoke(&mut self, who: &Who, role: &str, key: &str, end: &str) {
        let message = AuthRoleRevokePermissionRequest {
            role: role.into(),
            key: key.into(),
            range_end: end.into(),
        };
        let step = format!(
            "role revoke {role:?} {}..{}",
            render::bytes(key.as_bytes()),
            render::bytes(end.as_bytes())
        );
        rpc!(
            self,
            who,
            step,
            auth.role_revoke_permission(message),
            |_, r| header(r)
        );
    }

    pub async fn range(&mut self, who: &Who, r: RangeRequest) {
        let step = render::range_req(&r);
        rpc!(self, who, step, kv.range(r), |_, r| render::range_resp(r));
    }

    pub async fn put(&mut self, who: &Who, r: PutRequest) {
        let step = render::put_req(&r);
        rpc!(self, who, step, kv.put(r), |_, r| render::put_resp(r));
    }

    pub async fn delete(&mut self, who: &Who, r: DeleteRangeRequest) {
        let step = render::delete_req(&r);
        rpc!(self, who, step, kv.delete_range(r), |_, r| {
            render::delete_resp(r)
        });
    }

    pub async fn txn(&mut self, who: &Who, r: TxnRequest) {
        let step = render::txn_req(&r);
        rpc!(self, who, step, kv.txn(r), |_, r| render::txn_resp(r));
    }

    pub async fn lease_grant(&mut self, who: &Who, id: i64, label: &str) {
        let message = LeaseGrantRequest { ttl: 600, id };
        rpc!(
            self,
            who,
            format!("lease grant {label}"),
            lease.lease_grant(message),
            |_, r| format!(
                "{} {} ttl={} error={:?}",
                render::header(&r.header),
                if r.id == id { label } else { "another id" },
                r.ttl,
                r.error
            )
        );
    }

    pub async fn lease_revoke(&mut self, who: &Who, id: i64, label: &str) {
        rpc!(
            self,
            who,
            format!("lease revoke {label}"),
            lease.lease_revoke(LeaseRevokeRequest { id }),
            |_, r| header(r)
        );
    }

    pub async fn lease_time_to_live(&mut self, who: &Who, id: i64, label: &str) {
        let message = LeaseTimeToLiveRequest { id, keys: true };
        rpc!(
            self,
            who,
            format!("lease timetolive {label} keys"),
            lease.lease_time_to_live(message),
            |_, r| {
                let keys: Vec<String> = r.keys.iter().map(|k| render::bytes(k)).collect();
                format!(
                    "{} granted_ttl={} keys=[{}]",
                    render::header(&r.header),
                    r.granted_ttl,
                    keys.join(", ")
                )
            }
        );
    }

    /// etcd's Lock service: `name` held with `lease`; answers the holder's key.
    pub async fn lock(&mut self, who: &Who, name: &str, lease: i64) -> Option<Vec<u8>> {
        let message = LockRequest {
            name: name.into(),
            lease,
        };
        rpc!(
            self,
            who,
            format!("lock {name:?}"),
            lock.lock(message),
            |_, r| {
                format!(
                    "{} key={}",
                    render::header(&r.header),
                    render::bytes(&r.key)
                )
            }
        )
        .map(|r| r.key)
    }

    pub async fn unlock(&mut self, who: &Who, key: &[u8]) {
        let message = UnlockRequest { key: key.to_vec() };
        let step = format!("unlock {}", render::bytes(key));
        rpc!(self, who, step, lock.unlock(message), |_, r| {
            render::header(&r.header)
        });
    }

    /// etcd's Election service: a campaign for `name` with `lease`.
    pub async fn campaign(&mut self, who: &Who, name: &str, lease: i64) {
        let message = CampaignRequest {
            name: name.into(),
            lease,
            value: b"candidate".to_vec(),
        };
        rpc!(
            self,
            who,
            format!("campaign {name:?}"),
            election.campaign(message),
            |_, r| {
                let key = r.leader.as_ref().map(|l| render::bytes(&l.key));
                format!("{} leader={key:?}", render::header(&r.header))
            }
        );
    }

    pub async fn leader(&mut self, who: &Who, name: &str) {
        let message = LeaderRequest { name: name.into() };
        rpc!(
            self,
            who,
            format!("leader {name:?}"),
            election.leader(message),
            |_, r| {
                let kv = r.kv.as_ref().map(|kv| render::bytes(&kv.value));
                format!("{} value={kv:?}", render::header(&r.header))
            }
        );
    }

    pub async fn lease_leases(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "lease list",
            lease.lease_leases(LeaseLeasesRequest {}),
            |_, r| format!("{} count={}", render::header(&r.header), r.leases.len())
        );
    }

    pub async fn compact(&mut self, who: &Who, revision: i64) {
        let message = CompactionRequest {
            revision,
            physical: true,
        };
        rpc!(
            self,
            who,
            format!("compact {revision} physical"),
            kv.compact(message),
            |_, r| render::header(&r.header)
        );
    }

    pub async fn status(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "status",
            maintenance.status(StatusRequest {}),
            |_, r| format!("{} errors={:?}", render::header(&r.header), r.errors)
        );
    }

    pub async fn hash(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "hash",
            maintenance.hash(HashRequest {}),
            |_, r| format!(
                "{} hash={}",
                render::header(&r.header),
                if r.hash == 0 { "0" } else { "present" }
            )
        );
    }

    pub async fn hash_kv(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "hashkv",
            maintenance.hash_kv(HashKvRequest { revision: 0 }),
            |_, r| format!(
                "{} hash={} compact_revision={}",
                render::header(&r.header),
                if r.hash == 0 { "0" } else { "present" },
                r.compact_revision
            )
        );
    }

    pub async fn defragment(&mut self, who: &Who) {
        rpc!(
            self,
            who,
            "defragment",
            maintenance.defragment(DefragmentRequest {}),
            |_, r| header(r)
        );
    }
}

/// A watch stream opened with `who`'s token; what it receives is recorded.
pub struct Watch {
    name: String,
    tx: mpsc::Sender<WatchRequest>,
    rx: Option<Streaming<WatchResponse>>,
    who: Who,
    client: WatchClient<Channel>,
    requests: Option<tokio_stream::wrappers::ReceiverStream<WatchRequest>>,
}

impl Watch {
    pub fn new(run: &Run, who: &Who) -> Watch {
        let (tx, rx) = mpsc::channel(16);
        Watch {
            name: format!("watch stream as {}", who.name),
            tx,
            rx: None,
            who: who.clone(),
            client: WatchClient::new(run.channel.clone()),
            requests: Some(tokio_stream::wrappers::ReceiverStream::new(rx)),
        }
    }

    pub async fn next(&mut self) -> Result<WatchResponse, String> {
        let Some(rx) = self.rx.as_mut() else {
            return Err("the watch stream is not open".into());
        };
        match tokio::time::timeout(RPC_TIMEOUT, rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err("the server closed the watch stream".into()),
            Ok(Err(status)) => Err(render::status(&status)),
            Err(_) => Err(format!("no response within {RPC_TIMEOUT:?}")),
        }
    }

    /// Sends a create request (opening the stream with the first, since etcd sends the
    /// stream's response headers only with its first message) and records the answer.
    pub async fn create(&mut self, run: &mut Run, req: WatchCreateRequest) {
        let step = format!("[{}] {}", self.name, render::watch_create(&req));
        let outcome = async {
            let req = WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(req)),
            };
            self.tx
                .send(req)
                .await
                .map_err(|_| "the watch stream is closed".to_string())?;
            if let Some(requests) = self.requests.take() {
                let request = self.who.request(requests);
                self.rx = Some(call(self.client.watch(request)).await?);
            }
            self.next().await
        }
        .await;
        run.out.push(Entry {
            step,
            outcome: outcome.map_or_else(|e| e, |r| render::watch_resp(&r)),
        });
    }

    /// Waits for `n` events and records them, one step each (how a server batches events
    /// into responses is its own business).
    pub async fn expect_events(&mut self, run: &mut Run, n: usize, what: &str) {
        let mut events = Vec::new();
        while events.len() < n {
            match self.next().await {
                Ok(r) if !r.events.is_empty() && !r.created && !r.canceled => {
                    events.extend(r.events.iter().map(|e| (r.watch_id, render::event(e))));
                }
                Ok(r) => {
                    run.out.push(Entry {
                        step: format!("[{}] awaiting {what}", self.name),
                        outcome: format!("unexpected response {}", render::watch_resp(&r)),
                    });
                }
                Err(e) => {
                    run.out.push(Entry {
                        step: format!("[{}] awaiting {what}", self.name),
                        outcome: format!("{e} after {} of {n} events", events.len()),
                    });
                    break;
                }
            }
        }
        for i in 0..n {
            run.out.push(Entry {
                step: format!("[{}] {what} event {}/{n}", self.name, i + 1),
                outcome: events
                    .get(i)
                    .map_or("missing".into(), |(id, e)| format!("watch_id={id} {e}")),
            });
        }
    }
}
