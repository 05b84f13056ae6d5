//! TLS on the client port end to end: `t4 run --client-tls-cert/--client-tls-key` serves
//! `etcd-client` and etcd 3.4's `etcdctl` over TLS and nothing in plain text;
//! `--client-tls-ca` requires a client certificate signed by that CA and, once
//! authentication is on, makes a request without a token as the user the certificate's common
//! name names (etcd's `--client-cert-auth`). Certificates are made by rcgen for each test.

#![allow(clippy::disallowed_methods, clippy::unwrap_used)] // end-to-end tests: real time; unwrap is the assertion

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use t4_e2e::tool::run;
use t4_e2e::{T4, status, t4_bin};
use tonic::Code;

const ROOT_PASSWORD: &str = "root-secret";

/// A test CA and the PEM files it signed, in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "t4 test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
            ca_key,
        };
        std::fs::write(pki.path("ca.pem"), pki.ca.pem()).unwrap();
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `<name>.pem` and `<name>-key.pem`: a certificate with common name `cn`, for a
    /// server (valid for localhost and 127.0.0.1) or a client.
    fn issue(&self, name: &str, cn: &str, server: bool) {
        let key = KeyPair::generate().unwrap();
        let names = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = params.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        std::fs::write(self.path(&format!("{name}.pem")), cert.pem()).unwrap();
        std::fs::write(self.path(&format!("{name}-key.pem")), key.serialize_pem()).unwrap();
    }

    fn file(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    /// What a client that trusts the CA (and presents `identity`'s certificate) uses.
    fn client_tls(&self, identity: Option<&str>) -> TlsOptions {
        let ca = std::fs::read(self.path("ca.pem")).unwrap();
        let tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name("localhost");
        match identity {
            None => tls,
            Some(name) => {
                let cert = std::fs::read(self.path(&format!("{name}.pem"))).unwrap();
                let key = std::fs::read(self.path(&format!("{name}-key.pem"))).unwrap();
                tls.identity(Identity::from_pem(cert, key))
            }
        }
    }

    /// The server flags: TLS, and client certificates required when `verify_clients`.
    fn server_flags(&self, verify_clients: bool) -> Vec<String> {
        let mut flags = vec![
            "--client-tls-cert".to_string(),
            self.file("server.pem"),
            "--client-tls-key".to_string(),
            self.file("server-key.pem"),
        ];
        if verify_clients {
            flags.extend(["--client-tls-ca".to_string(), self.file("ca.pem")]);
        }
        flags
    }
}

async fn start(pki: &Pki, verify_clients: bool, identity: Option<&str>) -> T4 {
    let flags = pki.server_flags(verify_clients);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    T4::start_tls(t4_bin!(), &flags, pki.client_tls(identity)).await
}

async fn connect(t4: &T4, tls: TlsOptions, user: Option<(&str, &str)>) -> Client {
    let mut options = ConnectOptions::new().with_tls(tls);
    if let Some((name, password)) = user {
        options = options.with_user(name, password);
    }
    Client::connect([&t4.endpoint], Some(options))
        .await
        .unwrap()
}

/// `etcdctl` 3.4 over TLS as the client `identity` (or with the CA only).
fn etcdctl(pki: &Pki, t4: &T4, identity: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=https://{}", t4.endpoint))
        .arg(format!("--cacert={}", pki.file("ca.pem")))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=10s");
    if let Some(name) = identity {
        cmd.arg(format!("--cert={}", pki.file(&format!("{name}.pem"))))
            .arg(format!("--key={}", pki.file(&format!("{name}-key.pem"))));
    }
    let out = cmd
        .args(args)
        .output()
        .expect("running etcdctl (scripts/install-test-deps.sh installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Starts a TLS server (client certificates not required) with `--listen` given once more,
/// as `listen`, after the harness's own `127.0.0.1:0` (TLS, as the certificate is given);
/// the addresses it serves on.
async fn start_with_listen(pki: &Pki, listen: &str) -> (T4, Vec<String>) {
    pki.issue("server", "t4 server", true);
    let mut flags = pki.server_flags(false);
    flags.extend(["--listen".to_string(), listen.to_string()]);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let t4 = T4::start_tls(t4_bin!(), &flags, pki.client_tls(None)).await;
    let addresses = t4.serving_addresses();
    assert_eq!(addresses[0], t4.endpoint);
    (t4, addresses)
}

/// `--listen` takes several addresses, as etcd's `--listen-client-urls` does, each with its
/// own scheme: one server serves TLS on one port and plain text on another, the same data on
/// both, and advertises both URLs.
#[tokio::test]
async fn one_server_listens_with_tls_and_in_plain_text_on_two_addresses() {
    let pki = Pki::new();
    let (t4, addresses) = start_with_listen(&pki, "http://127.0.0.2:0").await;
    assert_eq!(addresses.len(), 2, "{addresses:?}");
    let plain_endpoint = &addresses[1];
    assert!(plain_endpoint.starts_with("127.0.0.2:"), "{plain_endpoint}");

    let mut tls_client = t4.client().await;
    tls_client.put("k", "both", None).await.unwrap();
    let mut plain = Client::connect([plain_endpoint], None).await.unwrap();
    assert_eq!(
        plain.get("k", None).await.unwrap().kvs()[0].value(),
        b"both"
    );
    plain.put("k", "plain", None).await.unwrap();
    assert_eq!(
        tls_client.get("k", None).await.unwrap().kvs()[0].value(),
        b"plain"
    );

    let members = plain.member_list().await.unwrap();
    let urls = members.members()[0].client_urls();
    assert_eq!(
        urls,
        [
            format!("https://{}", t4.endpoint),
            format!("http://{plain_endpoint}")
        ],
    );

    // The TLS address still serves nothing in plain text.
    assert_plain_text_refused(&t4.endpoint).await;
}

/// An address listed under both schemes serves both, as etcd's does: a connection that
/// starts with a TLS handshake gets TLS, any other plain text, on the one port.
#[tokio::test]
async fn one_address_under_both_schemes_serves_tls_and_plain_text() {
    let pki = Pki::new();
    let (t4, addresses) = start_with_listen(&pki, "http://127.0.0.1:0").await;
    assert_eq!(
        addresses,
        std::slice::from_ref(&t4.endpoint),
        "one port for both"
    );

    let mut tls_client = t4.client().await;
    tls_client.put("k", "over tls", None).await.unwrap();
    let mut plain = Client::connect([&t4.endpoint], None).await.unwrap();
    assert_eq!(
        plain.get("k", None).await.unwrap().kvs()[0].value(),
        b"over tls"
    );
    let members = plain.member_list().await.unwrap();
    assert_eq!(
        members.members()[0].client_urls(),
        [
            format!("https://{}", t4.endpoint),
            format!("http://{}", t4.endpoint)
        ],
    );
    // The real CLI both ways.
    let (ok, out) = etcdctl(&pki, &t4, None, &["get", "k", "--print-value-only"]);
    assert!(ok && out.trim() == "over tls", "{out}");
    let out = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints=http://{}", t4.endpoint))
        .args(["get", "k", "--print-value-only"])
        .output()
        .expect("running etcdctl (scripts/install-test-deps.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "over tls");
}

/// A plain-text client gets nothing from the TLS address `endpoint`, and is told so promptly.
async fn assert_plain_text_refused(endpoint: &str) {
    let plain = async {
        let mut c = Client::connect([endpoint], None).await?;
        c.get("k", None).await
    };
    let plain = tokio::time::timeout(Duration::from_secs(10), plain)
        .await
        .expect("a plain-text client is refused promptly, not left hanging");
    assert!(plain.is_err(), "a plain-text client was served: {plain:?}");
}

#[tokio::test]
async fn tls_serves_etcd_clients_and_nothing_in_plain_text() {
    let pki = Pki::new();
    pki.issue("server", "t4 server", true);
    let t4 = start(&pki, false, None).await;

    let mut c = t4.client().await;
    c.put("k", "over tls", None).await.unwrap();
    assert_eq!(
        c.get("k", None).await.unwrap().kvs()[0].value(),
        b"over tls"
    );
    // The member advertises an https:// client URL.
    let members = c.member_list().await.unwrap();
    let urls = members.members()[0].client_urls();
    assert!(
        urls.iter().all(|u| u.starts_with("https://")),
        "client URLs {urls:?}"
    );

    // A plain-text client gets nothing from the TLS port.
    assert_plain_text_refused(&t4.endpoint).await;

    // The real CLI, trusting the CA.
    let (ok, out) = etcdctl(&pki, &t4, None, &["get", "k", "--print-value-only"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "over tls");
    let (ok, out) = etcdctl(&pki, &t4, None, &["put", "k2", "from etcdctl"]);
    assert!(ok && out.contains("OK"), "{out}");
    assert_eq!(
        c.get("k2", None).await.unwrap().kvs()[0].value(),
        b"from etcdctl"
    );
}

#[tokio::test]
async fn client_certificates_are_required_and_their_common_name_is_the_user() {
    let pki = Pki::new();
    pki.issue("server", "t4 server", true);
    pki.issue("root", "root", false);
    pki.issue("alice", "alice", false);
    // Signed by another CA: refused.
    let other = Pki::new();
    other.issue("mallory", "root", false);
    for file in ["mallory.pem", "mallory-key.pem"] {
        std::fs::copy(other.path(file), pki.path(file)).unwrap();
    }
    let t4 = start(&pki, true, Some("root")).await;

    // No certificate, or one from another CA: no connection.
    for identity in [None, Some("mallory")] {
        let attempt = async {
            let options = ConnectOptions::new().with_tls(pki.client_tls(identity));
            let mut c = Client::connect([&t4.endpoint], Some(options)).await?;
            c.get("k", None).await
        };
        let result = tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .expect("refused promptly");
        assert!(result.is_err(), "{identity:?} was served: {result:?}");
    }

    // Users and roles, set up over the root certificate (authentication is still off).
    let mut root = t4.client().await;
    root.put("app/1", "one", None).await.unwrap();
    t4_e2e::add_root_and_alice(&mut root, ROOT_PASSWORD, "alice-secret").await;
    root.auth_client().auth_enable().await.unwrap();

    // The root certificate alone, no token: root.
    root.put("app/2", "two", None).await.unwrap();
    assert_eq!(
        root.auth_client().user_list().await.unwrap().users().len(),
        2
    );

    // Alice's certificate: alice may read app/ and nothing more.
    let mut alice = connect(&t4, pki.client_tls(Some("alice")), None).await;
    assert_eq!(
        alice.get("app/1", None).await.unwrap().kvs()[0].value(),
        b"one"
    );
    let refused = status(alice.put("app/1", "mine", None).await.unwrap_err());
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(refused.message(), "etcdserver: permission denied");
    let admin = status(alice.auth_client().user_list().await.unwrap_err());
    assert_eq!(admin.code(), Code::PermissionDenied);

    // A token wins over the certificate: alice's connection, root's token.
    let mut as_root = connect(
        &t4,
        pki.client_tls(Some("alice")),
        Some(("root", ROOT_PASSWORD)),
    )
    .await;
    as_root.put("app/1", "root's", None).await.unwrap();

    // The real CLI with alice's certificate.
    let (ok, out) = etcdctl(
        &pki,
        &t4,
        Some("alice"),
        &["get", "app/2", "--print-value-only"],
    );
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "two");
    let (ok, out) = etcdctl(&pki, &t4, Some("alice"), &["put", "app/2", "x"]);
    assert!(!ok && out.contains("permission denied"), "{out}");
    let (ok, out) = etcdctl(&pki, &t4, Some("root"), &["put", "app/2", "x"]);
    assert!(ok && out.contains("OK"), "{out}");
    let (ok, out) = etcdctl(&pki, &t4, None, &["get", "app/2"]);
    assert!(!ok, "etcdctl without a certificate was served: {out}");
}

#[test]
fn bad_tls_settings_stop_the_server_before_it_opens_the_data_dir() {
    let pki = Pki::new();
    pki.issue("server", "t4 server", true);
    pki.issue("other", "other", true);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let data_dir = data_dir.to_str().unwrap();
    let cert = pki.file("server.pem");
    let key = pki.file("server-key.pem");
    let other_key = pki.file("other-key.pem");
    let missing = pki.file("missing.pem");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--client-tls-cert", &cert],
            "--client-tls-cert needs --client-tls-key",
        ),
        (
            &["--client-tls-key", &key],
            "--client-tls-key needs --client-tls-cert",
        ),
        (
            &["--client-tls-ca", &cert],
            "--client-tls-ca needs --client-tls-cert and --client-tls-key",
        ),
        (
            &["--client-tls-cert", &missing, "--client-tls-key", &key],
            "--client-tls-cert: reading PEM certificates from",
        ),
        (
            &["--client-tls-cert", &cert, "--client-tls-key", &other_key],
            "the key does not fit the certificate",
        ),
    ];
    for (flags, message) in cases {
        let mut args = vec!["run", "--data-dir", data_dir, "--listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let ran = run(Path::new(t4_bin!()), &args, Duration::from_secs(30));
        assert!(ran.status.is_some() && !ran.success(), "{flags:?}: {ran:?}");
        assert!(ran.stderr.contains(message), "{flags:?}: {}", ran.stderr);
        assert!(
            !Path::new(data_dir).exists(),
            "{flags:?} created the data dir"
        );
    }
}

/// Whether a new client trusting `pki`'s CA can read through the TLS port.
async fn served_to(pki: &Pki, t4: &T4) -> bool {
    let attempt = async {
        let options = ConnectOptions::new().with_tls(pki.client_tls(None));
        let mut c = Client::connect([&t4.endpoint], Some(options)).await?;
        c.get("k", None).await
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("answered or refused promptly")
        .is_ok()
}

/// Replaces `to` with `from`'s bytes in one rename, as a rotation tool would.
fn replace(from: &Path, to: &Path) {
    let staged = to.with_extension("staged");
    std::fs::copy(from, &staged).unwrap();
    std::fs::rename(&staged, to).unwrap();
}

#[tokio::test]
async fn a_rotated_certificate_is_served_to_new_connections_without_a_restart() {
    let old = Pki::new();
    old.issue("server", "t4 server", true);
    let new = Pki::new();
    new.issue("server", "t4 server", true);
    let t4 = start(&old, false, None).await;
    let mut before = t4.client().await;
    before.put("k", "v", None).await.unwrap();
    assert!(served_to(&old, &t4).await);
    assert!(
        !served_to(&new, &t4).await,
        "the new CA's clients cannot trust the old certificate"
    );

    // The files the server was started with now hold the new CA's pair.
    replace(&new.path("server-key.pem"), &old.path("server-key.pem"));
    replace(&new.path("server.pem"), &old.path("server.pem"));
    assert!(served_to(&new, &t4).await, "the new certificate is served");
    assert!(
        !served_to(&old, &t4).await,
        "the old certificate is no longer served"
    );
    // A connection made before the rotation keeps working.
    before.put("k", "still", None).await.unwrap();

    // A broken file: the server keeps the pair it has, and says so.
    std::fs::write(old.path("server.pem"), "not a certificate").unwrap();
    assert!(
        served_to(&new, &t4).await,
        "the last good certificate is still served"
    );
    assert!(
        t4.log().contains("cannot be loaded"),
        "no warning in the log:\n{}",
        t4.log()
    );
}
