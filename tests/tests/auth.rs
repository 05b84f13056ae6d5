//! Authentication end to end: users, roles and permissions set up through the Auth service
//! (by `etcd-client` and by etcd 3.4's `etcdctl`), then enforced on every request once
//! authentication is on, and kept across a restart of `t4 run`.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::path::Path;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, GetOptions, Permission, PermissionType, Txn, TxnOp};
use t4_e2e::tool::{Ran, run};
use t4_e2e::{T4, status, t4_bin};
use t4_proto::etcdserverpb::auth_client::AuthClient;
use t4_proto::etcdserverpb::{AuthStatusRequest, AuthStatusResponse};
use tonic::Code;

const ROOT_PASSWORD: &str = "root-secret";
const ALICE_PASSWORD: &str = "alice-secret";

const USER_NAME_IS_EMPTY: &str = "etcdserver: user name is empty";
const PERMISSION_DENIED: &str = "etcdserver: permission denied";
const AUTHENTICATION_FAILED: &str =
    "etcdserver: authentication failed, invalid user ID or password";

/// A client that authenticates as `name` (and sends the token with every request).
async fn login(t4: &T4, name: &str, password: &str) -> Result<Client, etcd_client::Error> {
    let options = ConnectOptions::new().with_user(name, password);
    Client::connect([&t4.endpoint], Some(options)).await
}

/// Why logging in as `name` fails.
async fn login_refusal(t4: &T4, name: &str, password: &str) -> (Code, String) {
    refusal(login(t4, name, password).await.map(|_| ()))
}

/// `AuthStatus`, which etcd-client does not call (etcd 3.5 added it; it needs no token).
async fn auth_status(t4: &T4) -> AuthStatusResponse {
    AuthClient::new(t4.channel().await)
        .auth_status(AuthStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

/// The code and message of a failed request.
fn refusal<T: std::fmt::Debug>(result: Result<T, etcd_client::Error>) -> (Code, String) {
    let e = status(result.expect_err("the request must be refused"));
    (e.code(), e.message().to_string())
}

fn denied() -> (Code, String) {
    (Code::PermissionDenied, PERMISSION_DENIED.to_string())
}

fn anonymous() -> (Code, String) {
    (Code::InvalidArgument, USER_NAME_IS_EMPTY.to_string())
}

/// Sets up, as etcd's documentation does: a root user with the root role, and alice, who may
/// read `app/` only. Authentication is still off.
async fn add_root_and_alice(c: &mut Client) {
    // As etcd's documentation, with the root role added explicitly first.
    c.auth_client().role_add("root").await.unwrap();
    t4_e2e::add_root_and_alice(c, ROOT_PASSWORD, ALICE_PASSWORD).await;
}

/// What alice may and may not do: read `app/`, nothing else.
async fn assert_alice_reads_only_app(t4: &T4) {
    let mut alice = login(t4, "alice", ALICE_PASSWORD).await.unwrap();
    let got = alice.get("app/1", None).await.unwrap();
    assert_eq!(got.kvs()[0].value(), b"one");
    let listed = alice
        .get("app/", Some(GetOptions::new().with_prefix()))
        .await
        .unwrap();
    let keys: Vec<&str> = listed
        .kvs()
        .iter()
        .map(|kv| kv.key_str().unwrap())
        .collect();
    assert_eq!(keys, ["app/1", "app/2"]);
    assert_eq!(refusal(alice.get("secret", None).await), denied());
    assert_eq!(
        refusal(alice.get("", Some(GetOptions::new().with_all_keys())).await),
        denied()
    );
    // The ops of a txn inside a txn are checked too (etcd 3.4 lets them through unchecked,
    // which would read around every permission).
    let nested = Txn::new().and_then([TxnOp::get("secret", None)]);
    let outer = Txn::new().and_then([TxnOp::get("app/1", None), TxnOp::txn(nested)]);
    assert_eq!(refusal(alice.txn(outer).await), denied());
    assert_eq!(refusal(alice.put("app/1", "mine", None).await), denied());
    assert_eq!(refusal(alice.delete("app/1", None).await), denied());
    assert_eq!(
        refusal(alice.auth_client().user_add("mallory", "pw", None).await),
        denied()
    );
    assert_eq!(refusal(alice.auth_client().auth_disable().await), denied());
    assert_eq!(
        login_refusal(t4, "alice", "wrong").await,
        (Code::InvalidArgument, AUTHENTICATION_FAILED.to_string())
    );
}

#[tokio::test]
async fn once_auth_is_on_requests_need_a_token_and_a_permission() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    let before = auth_status(&t4).await;
    assert!(!before.enabled);
    add_root_and_alice(&mut c).await;
    c.put("app/1", "one", None).await.unwrap();
    c.put("app/2", "two", None).await.unwrap();
    c.put("secret", "s", None).await.unwrap();
    c.auth_client().auth_enable().await.unwrap();
    let after = auth_status(&t4).await;
    assert!(after.enabled);
    assert!(
        after.auth_revision > before.auth_revision,
        "adding users and roles must move the auth revision: {before:?} then {after:?}"
    );

    // The same client, without credentials, is now refused.
    assert_eq!(refusal(c.get("app/1", None).await), anonymous());
    assert_eq!(refusal(c.put("secret", "stolen", None).await), anonymous());
    assert_eq!(refusal(c.auth_client().user_list().await), anonymous());

    let mut root = login(&t4, "root", ROOT_PASSWORD).await.unwrap();
    root.put("secret", "s2", None).await.unwrap();
    assert_eq!(
        root.get("secret", None).await.unwrap().kvs()[0].value(),
        b"s2"
    );
    let users = root.auth_client().user_list().await.unwrap();
    assert_eq!(users.users(), ["alice", "root"]);

    assert_alice_reads_only_app(&t4).await;

    // Once it is off again, anyone may do anything.
    root.auth_client().auth_disable().await.unwrap();
    assert!(!auth_status(&t4).await.enabled);
    assert_eq!(c.get("secret", None).await.unwrap().kvs()[0].value(), b"s2");
    c.put("secret", "s3", None).await.unwrap();
}

/// etcd's Lock and Election services run their recipes as the caller: a user needs read and
/// write on `name/` to lock or campaign, and read to ask for the leader; refusals come back as
/// the recipes' errors (code Unknown, etcd's message).
#[tokio::test]
async fn locks_and_elections_need_the_callers_permissions() {
    let t4 = T4::start(t4_bin!(), &[]).await;
    let mut c = t4.client().await;
    add_root_and_alice(&mut c).await;
    let mut auth = c.auth_client();
    auth.role_add("locker").await.unwrap();
    auth.role_grant_permission("locker", Permission::read_write("locks/").with_prefix())
        .await
        .unwrap();
    auth.user_grant_role("alice", "locker").await.unwrap();
    auth.auth_enable().await.unwrap();
    let unknown = |message: &str| (Code::Unknown, message.to_string());

    let mut alice = login(&t4, "alice", ALICE_PASSWORD).await.unwrap();
    let held = alice.lock("locks/a", None).await.unwrap();
    assert!(held.key().starts_with(b"locks/a/"));
    alice.unlock(held.key()).await.unwrap();
    assert_eq!(
        refusal(alice.lock("elsewhere", None).await),
        unknown(PERMISSION_DENIED)
    );
    // `app/` is only readable: no lock there.
    assert_eq!(
        refusal(alice.lock("app", None).await),
        unknown(PERMISSION_DENIED)
    );
    assert_eq!(
        refusal(c.lock("locks/a", None).await),
        unknown(USER_NAME_IS_EMPTY)
    );

    let lease = alice.lease_grant(30, None).await.unwrap().id();
    let won = alice.campaign("locks/e", "v1", lease).await.unwrap();
    let leader = won.leader().unwrap().clone();
    assert_eq!(
        alice.leader("locks/e").await.unwrap().kv().unwrap().value(),
        b"v1"
    );
    assert_eq!(
        refusal(alice.campaign("elsewhere", "v1", lease).await),
        unknown(PERMISSION_DENIED)
    );
    assert_eq!(
        refusal(c.leader("locks/e").await),
        unknown(USER_NAME_IS_EMPTY)
    );
    alice
        .resign(Some(etcd_client::ResignOptions::new().with_leader(leader)))
        .await
        .unwrap();
}

#[tokio::test]
async fn users_roles_permissions_and_the_enabled_flag_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut t4 = T4::start_in(t4_bin!(), &data, &[]).await;
    let mut c = t4.client().await;
    add_root_and_alice(&mut c).await;
    c.put("app/1", "one", None).await.unwrap();
    c.put("app/2", "two", None).await.unwrap();
    c.put("secret", "s", None).await.unwrap();
    c.auth_client().auth_enable().await.unwrap();
    // A change made while authentication is on, by root, must survive too.
    let root = login(&t4, "root", ROOT_PASSWORD).await.unwrap();
    root.auth_client()
        .role_grant_permission("app-reader", Permission::write("app/2"))
        .await
        .unwrap();
    drop((c, root));
    t4.stop().await;

    let t4 = T4::start_in(t4_bin!(), &data, &[]).await;
    let mut c = t4.client().await;
    assert!(auth_status(&t4).await.enabled);
    assert_eq!(refusal(c.get("app/1", None).await), anonymous());
    assert_eq!(
        login_refusal(&t4, "root", "not-the-password").await,
        (Code::InvalidArgument, AUTHENTICATION_FAILED.to_string())
    );
    let mut root = login(&t4, "root", ROOT_PASSWORD).await.unwrap();
    let mut auth = root.auth_client();
    assert_eq!(auth.user_list().await.unwrap().users(), ["alice", "root"]);
    assert_eq!(
        auth.role_list().await.unwrap().roles(),
        ["app-reader", "root"]
    );
    assert_eq!(
        auth.user_get("alice").await.unwrap().roles(),
        ["app-reader"]
    );
    let perms = auth.role_get("app-reader").await.unwrap().permissions();
    let perms: Vec<(i32, &[u8], &[u8])> = perms
        .iter()
        .map(|p| (p.get_type(), p.key(), p.range_end()))
        .collect();
    assert_eq!(
        perms,
        [
            (PermissionType::Read as i32, &b"app/"[..], &b"app0"[..]),
            (PermissionType::Write as i32, &b"app/2"[..], &b""[..]),
        ]
    );
    assert_alice_reads_only_app(&t4).await;
    let mut alice = login(&t4, "alice", ALICE_PASSWORD).await.unwrap();
    alice.put("app/2", "written by alice", None).await.unwrap();
    assert_eq!(
        root.get("app/2", None).await.unwrap().kvs()[0].value(),
        b"written by alice"
    );
}

/// Runs etcd 3.4's `etcdctl` against `t4` with `args`.
fn etcdctl(t4: &T4, args: &[&str]) -> Ran {
    let endpoints = format!("--endpoints={}", t4.endpoint);
    let args: Vec<&str> = [endpoints.as_str(), "--dial-timeout=3s"]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    run(Path::new("etcdctl"), &args, Duration::from_secs(60))
}

/// Runs etcdctl and asserts it succeeds with exactly `stdout`.
fn etcdctl_says(t4: &T4, args: &[&str], stdout: &str) {
    let ran = etcdctl(t4, args);
    assert!(ran.success(), "etcdctl {args:?} failed: {ran:?}");
    assert_eq!(ran.stdout, stdout, "etcdctl {args:?}: {ran:?}");
}

/// Runs etcdctl and asserts it fails with exit code `code` and `error` as its last line
/// (before it, etcdctl logs its client's retry warnings).
fn etcdctl_fails(t4: &T4, args: &[&str], code: i32, error: &str) {
    let ran = etcdctl(t4, args);
    assert_eq!(
        ran.status.and_then(|s| s.code()),
        Some(code),
        "etcdctl {args:?}: {ran:?}"
    );
    assert_eq!(ran.stdout, "", "etcdctl {args:?}: {ran:?}");
    assert_eq!(
        ran.stderr.lines().last(),
        Some(error),
        "etcdctl {args:?}: {ran:?}"
    );
}

#[tokio::test]
async fn etcdctl_manages_auth_and_authenticates_with_user() {
    assert!(
        std::process::Command::new("etcdctl")
            .arg("version")
            .output()
            .is_ok(),
        "etcdctl is not installed: run scripts/install-test-deps.sh"
    );
    let t4 = T4::start(t4_bin!(), &[]).await;
    let root = format!("root:{ROOT_PASSWORD}");
    let alice = format!("alice:{ALICE_PASSWORD}");
    etcdctl_says(&t4, &["user", "add", &root], "User root created\n");
    etcdctl_says(&t4, &["role", "add", "root"], "Role root created\n");
    etcdctl_says(
        &t4,
        &["user", "grant-role", "root", "root"],
        "Role root is granted to user root\n",
    );
    etcdctl_says(&t4, &["role", "add", "reader"], "Role reader created\n");
    etcdctl_says(
        &t4,
        &[
            "role",
            "grant-permission",
            "reader",
            "read",
            "/app/",
            "--prefix",
        ],
        "Role reader updated\n",
    );
    etcdctl_says(&t4, &["user", "add", &alice], "User alice created\n");
    etcdctl_says(
        &t4,
        &["user", "grant-role", "alice", "reader"],
        "Role reader is granted to user alice\n",
    );
    etcdctl_says(&t4, &["put", "/app/a", "1"], "OK\n");
    etcdctl_says(&t4, &["put", "/secret", "s"], "OK\n");
    etcdctl_says(&t4, &["auth", "enable"], "Authentication Enabled\n");

    etcdctl_fails(
        &t4,
        &["get", "/app/a"],
        1,
        "Error: etcdserver: user name is empty",
    );
    etcdctl_says(&t4, &["--user", &alice, "get", "/app/a"], "/app/a\n1\n");
    etcdctl_fails(
        &t4,
        &["--user", &alice, "get", "/secret"],
        1,
        "Error: etcdserver: permission denied",
    );
    etcdctl_fails(
        &t4,
        &["--user", &alice, "put", "/app/a", "2"],
        1,
        "Error: etcdserver: permission denied",
    );
    etcdctl_fails(
        &t4,
        &["--user", "alice:wrong", "get", "/app/a"],
        2,
        "Error: etcdserver: authentication failed, invalid user ID or password",
    );
    etcdctl_says(
        &t4,
        &["--user", &root, "role", "get", "reader"],
        "Role reader\nKV Read:\n\t[/app/, /app0) (prefix /app/)\nKV Write:\n",
    );
    etcdctl_says(&t4, &["--user", &root, "user", "list"], "alice\nroot\n");
    etcdctl_says(
        &t4,
        &["--user", &root, "user", "get", "alice"],
        "User: alice\nRoles: reader\n",
    );
    etcdctl_fails(
        &t4,
        &["--user", &alice, "auth", "disable"],
        1,
        "Error: etcdserver: permission denied",
    );
    etcdctl_says(&t4, &["--user", &root, "get", "/secret"], "/secret\ns\n");
    etcdctl_says(
        &t4,
        &["--user", &root, "auth", "disable"],
        "Authentication Disabled\n",
    );
    etcdctl_says(&t4, &["get", "/secret"], "/secret\ns\n");
}
