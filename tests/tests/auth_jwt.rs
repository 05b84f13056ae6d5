//! JWT auth tokens end to end (`t4 run --auth-token jwt,…`, etcd's flag): tokens are JWTs with
//! etcd's claims, survive a restart, go stale when the auth state changes (etcd's "revision
//! of auth store is old", on which etcd's clients authenticate again), and refuse tampering;
//! bad options stop the server. Keys are made by rcgen (and aws-lc-rs, for a SEC1 EC key) for
//! each test.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use etcd_client::Client;
use rcgen::KeyPair;
use t4_e2e::tool::run;
use t4_e2e::{T4, t4_bin};
use t4_proto::etcdserverpb::auth_client::AuthClient;
use t4_proto::etcdserverpb::kv_client::KvClient;
use t4_proto::etcdserverpb::{AuthenticateRequest, RangeRequest};
use tonic::Code;

const ROOT_PASSWORD: &str = "root-secret";
const ALICE_PASSWORD: &str = "alice-secret";

/// An ES256 key pair in PEM files: `priv.pem` (PKCS#8) and `pub.pem`.
fn keys(dir: &Path) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let private = dir.join("priv.pem");
    let public = dir.join("pub.pem");
    std::fs::write(&private, key.serialize_pem()).unwrap();
    std::fs::write(&public, key.public_key_pem()).unwrap();
    (
        private.to_str().unwrap().to_string(),
        public.to_str().unwrap().to_string(),
    )
}

async fn authenticate(t4: &T4, name: &str, password: &str) -> Result<String, tonic::Status> {
    let request = AuthenticateRequest {
        name: name.into(),
        password: password.into(),
    };
    let resp = AuthClient::new(t4.channel().await)
        .authenticate(request)
        .await?;
    Ok(resp.into_inner().token)
}

/// A Range of `key` sent with `token`.
async fn get_with(t4: &T4, token: &str, key: &str) -> Result<usize, tonic::Status> {
    let mut request = tonic::Request::new(RangeRequest {
        key: key.into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("token", token.parse().unwrap());
    let resp = KvClient::new(t4.channel().await).range(request).await?;
    Ok(resp.into_inner().kvs.len())
}

#[tokio::test]
async fn jwt_tokens_carry_etcds_claims_survive_a_restart_and_go_stale_on_auth_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keys(dir.path());
    let spec = format!("jwt,sign-method=ES256,pub-key={public},priv-key={private},ttl=10m");
    let flags = ["--auth-token", spec.as_str()];
    let data = dir.path().join("data");
    let mut t4 = T4::start_in(t4_bin!(), &data, &flags).await;

    let mut c: Client = t4.client().await;
    c.put("app/1", "one", None).await.unwrap();
    t4_e2e::add_root_and_alice(&mut c, ROOT_PASSWORD, ALICE_PASSWORD).await;
    c.auth_client().auth_enable().await.unwrap();

    let token = authenticate(&t4, "alice", ALICE_PASSWORD).await.unwrap();
    // A JWT with etcd's claims: username, the auth revision, and an expiry 10 minutes out.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT: {token}");
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[0])
        .unwrap();
    let header: serde_json::Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(parts[1])
        .unwrap();
    let claims: serde_json::Value = serde_json::from_slice(&claims).unwrap();
    assert_eq!(claims["username"], "alice");
    let revision = claims["revision"].as_u64().unwrap();
    assert!(revision > 0, "{claims}");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let exp = claims["exp"].as_u64().unwrap();
    assert!(
        (now + 590..=now + 610).contains(&exp),
        "exp {exp}, now {now}"
    );

    assert_eq!(get_with(&t4, &token, "app/1").await.unwrap(), 1);
    let denied = get_with(&t4, &token, "other").await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // A restart forgets nothing a JWT needs: the same token still works.
    t4.stop().await;
    drop(t4);
    let t4 = T4::start_in(t4_bin!(), &data, &flags).await;
    assert_eq!(get_with(&t4, &token, "app/1").await.unwrap(), 1);

    // A tampered token (another signature) is not accepted.
    let mut forged = token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let refused = get_with(&t4, &forged, "app/1").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated);
    assert_eq!(refused.message(), "etcdserver: invalid auth token");

    // Any change to the auth state makes older tokens stale, as in etcd.
    let root = authenticate(&t4, "root", ROOT_PASSWORD).await.unwrap();
    let mut add = tonic::Request::new(t4_proto::etcdserverpb::AuthRoleAddRequest {
        name: "another".into(),
    });
    add.metadata_mut().insert("token", root.parse().unwrap());
    AuthClient::new(t4.channel().await)
        .role_add(add)
        .await
        .unwrap();
    let stale = get_with(&t4, &token, "app/1").await.unwrap_err();
    assert_eq!(stale.code(), Code::InvalidArgument);
    assert_eq!(stale.message(), "etcdserver: revision of auth store is old");
    // Authenticating again gives a token of the new revision.
    let fresh = authenticate(&t4, "alice", ALICE_PASSWORD).await.unwrap();
    assert_eq!(get_with(&t4, &fresh, "app/1").await.unwrap(), 1);

    // etcdctl (which authenticates per command) works unchanged with JWTs.
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", t4.endpoint))
        .args(["--user", &format!("alice:{ALICE_PASSWORD}")])
        .args(["get", "app/1", "--print-value-only"])
        .output()
        .expect("running etcdctl (scripts/install-test-deps.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "one");
}

#[tokio::test]
async fn a_public_key_alone_verifies_tokens_but_issues_none() {
    let dir = tempfile::tempdir().unwrap();
    let (_, public) = keys(dir.path());
    let spec = format!("jwt,sign-method=ES256,pub-key={public}");
    let t4 = T4::start(t4_bin!(), &["--auth-token", &spec]).await;
    let c = t4.client().await;
    let mut auth = c.auth_client();
    auth.user_add("root", ROOT_PASSWORD, None).await.unwrap();
    auth.user_grant_role("root", "root").await.unwrap();
    auth.auth_enable().await.unwrap();
    let refused = authenticate(&t4, "root", ROOT_PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unknown);
    assert_eq!(
        refused.message(),
        "auth: token signing attempted with verify-only key"
    );
}

/// A private key file alone, written as `openssl` writes one — an EC key in SEC1 after its
/// curve's parameters (`openssl ecparam -name prime256v1 -genkey`), an Ed25519 key in
/// PKCS#8 v1 (`openssl genpkey -algorithm ed25519`) — signs tokens that the server then
/// accepts, as etcd's do.
#[tokio::test]
async fn a_private_key_alone_as_openssl_writes_it_signs_and_verifies() {
    use aws_lc_rs::encoding::{AsDer as _, EcPrivateKeyRfc5915Der};
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let dir = tempfile::tempdir().unwrap();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let sec1: EcPrivateKeyRfc5915Der = ec.private_key().as_der().unwrap();
    let ec_path = dir.path().join("ec.pem");
    let blocks = [
        pem::Pem::new("EC PARAMETERS", P256.to_vec()),
        pem::Pem::new("EC PRIVATE KEY", sec1.as_ref().to_vec()),
    ];
    std::fs::write(&ec_path, pem::encode_many(&blocks)).unwrap();
    let ed_path = dir.path().join("ed.pem");
    let ed = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(&ed_path, ed.serialize_pem()).unwrap();

    for (method, key) in [("ES256", &ec_path), ("EdDSA", &ed_path)] {
        let spec = format!("jwt,sign-method={method},priv-key={}", key.display());
        let t4 = T4::start(t4_bin!(), &["--auth-token", &spec]).await;
        let mut c = t4.client().await;
        c.put("app/1", "one", None).await.unwrap();
        t4_e2e::add_root_and_alice(&mut c, ROOT_PASSWORD, ALICE_PASSWORD).await;
        c.auth_client().auth_enable().await.unwrap();
        let token = authenticate(&t4, "alice", ALICE_PASSWORD).await.unwrap();
        assert_eq!(token.split('.').count(), 3, "{method}: not a JWT: {token}");
        assert_eq!(get_with(&t4, &token, "app/1").await.unwrap(), 1, "{method}");
        // Another signature: its first character changed.
        let at = token.rfind('.').unwrap() + 1;
        let other = if token[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        let forged = format!("{}{other}{}", &token[..at], &token[at + 1..]);
        let refused = get_with(&t4, &forged, "app/1").await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{method}");
    }
}

#[test]
fn bad_jwt_options_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let (private, public) = keys(dir.path());
    let other = tempfile::tempdir().unwrap();
    let (other_private, _) = keys(other.path());
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let cases = [
        ("jwt".to_string(), "jwt needs sign-method"),
        (
            format!("jwt,sign-method=XX256,pub-key={public}"),
            "unknown sign-method \"XX256\"",
        ),
        (
            "jwt,sign-method=ES256".to_string(),
            "sign-method ES256 needs priv-key or pub-key",
        ),
        (
            format!("jwt,sign-method=RS256,priv-key={private}"),
            "priv-key is not a PEM key for RS256",
        ),
        (
            format!("jwt,sign-method=ES256,pub-key={public},priv-key={other_private}"),
            "priv-key and pub-key are not a pair",
        ),
        (
            format!("jwt,sign-method=ES256,pub-key={public},ttl=soon"),
            "ttl=soon is not a duration",
        ),
        (
            format!("jwt,sign-method=ES256,pub-key={public},colour=blue"),
            "unknown JWT option \"colour\"",
        ),
        ("opaque".to_string(), "is neither simple nor jwt"),
    ];
    for (spec, message) in cases {
        let args = [
            "run",
            "--data-dir",
            data,
            "--listen",
            "127.0.0.1:0",
            "--auth-token",
            &spec,
        ];
        let ran = run(Path::new(t4_bin!()), &args, Duration::from_secs(30));
        assert!(ran.status.is_some() && !ran.success(), "{spec}: {ran:?}");
        assert!(ran.stderr.contains(message), "{spec}: {}", ran.stderr);
        assert!(!Path::new(data).exists(), "{spec} created the data dir");
    }
}
