//! TLS on the client port, as etcd's `--cert-file`, `--key-file`, `--trusted-ca-file` and
//! `--client-cert-auth`.
//!
//! With `--client-tls-cert` and `--client-tls-key`, every connection to the client port is
//! TLS (1.2 or 1.3; ALPN `h2` for gRPC, `http/1.1` for the gateway and `/health`). With
//! `--client-tls-ca` as well, a client must present a certificate signed by that CA, and while
//! authentication is enabled a request that carries no token is made as the user named by
//! the certificate's common name (etcd's rule; a token wins over the certificate).
//!
//! Handshakes run on tasks of their own, so a slow or silent client never holds up the
//! others' connections; one that does not finish within [`HANDSHAKE_TIMEOUT`] is dropped.
//!
//! The certificate and key are read again when either file changes (as etcd reads them for
//! each handshake), so a rotated certificate (cert-manager, a renewal cron) is served to
//! new connections without a restart; a pair that fails to load keeps the previous one in
//! use and is logged.

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use futures::{Stream, StreamExt as _};
use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::{Connected, TcpIncoming};

/// How long a client may take to finish its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client port's TLS settings, loaded and checked at start-up.
#[derive(Clone)]
pub struct ClientTls {
    acceptor: TlsAcceptor,
    verifies_clients: bool,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("verifies_clients", &self.verifies_clients)
            .finish_non_exhaustive()
    }
}

fn read_certs(flag: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("{flag}: reading PEM certificates from {}", path.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{flag}: {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

impl ClientTls {
    /// Loads the server's certificate chain and key, and the CA that client certificates
    /// must be signed by, if any. Fails with a message naming the flag and file at fault.
    pub fn load(cert: &Path, key: &Path, client_ca: Option<&Path>) -> anyhow::Result<ClientTls> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let certified = ReloadingCert::new(cert, key, provider.clone())?;
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("choosing the TLS versions")?;
        let builder = match client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs("--client-tls-ca", ca)? {
                    roots.add(cert).with_context(|| {
                        format!("--client-tls-ca: a certificate in {}", ca.display())
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .context("--client-tls-ca: building the client certificate verifier")?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_cert_resolver(Arc::new(certified));
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(ClientTls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            verifies_clients: client_ca.is_some(),
        })
    }

    /// Whether clients must present a certificate (`--client-tls-ca`).
    pub fn verifies_clients(&self) -> bool {
        self.verifies_clients
    }

    async fn handshake(&self, tcp: TcpStream) -> io::Result<ClientStream> {
        let remote = tcp.peer_addr().ok();
        let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))??;
        // The verifier has checked the chain: the leaf's common name is the etcd user.
        let common_name = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|leaf| common_name(leaf));
        Ok(ClientStream {
            inner: Inner::Tls(Box::new(tls)),
            info: ClientConnInfo {
                remote,
                common_name,
            },
        })
    }
}

/// The server's certificate and key, read again when either file changes.
#[derive(Debug)]
struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    /// The files' modification times when `current` was loaded (or last failed to load), and
    /// the pair in use.
    loaded: Mutex<(FileStamps, Arc<CertifiedKey>)>,
}

/// What tells that a file changed: its modification time and length.
type FileStamps = [Option<(SystemTime, u64)>; 2];

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl ReloadingCert {
    fn new(cert: &Path, key: &Path, provider: Arc<CryptoProvider>) -> anyhow::Result<Self> {
        let stamps = [stamp(cert), stamp(key)];
        let current = load_pair(cert, key, &provider)?;
        Ok(ReloadingCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            loaded: Mutex::new((stamps, Arc::new(current))),
        })
    }
}

/// Reads a certificate chain and its key, and checks that they belong together.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
    let chain = read_certs("--client-tls-cert", cert)?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "--client-tls-key: reading a PEM private key from {}",
            key.display()
        )
    })?;
    CertifiedKey::from_der(chain, key, provider)
        .context("--client-tls-cert / --client-tls-key: the key does not fit the certificate")
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let stamps = [stamp(&self.cert), stamp(&self.key)];
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if stamps != loaded.0 {
            // Tried once per change: a half-written pair is tried again when the writer
            // finishes (and the stamps change again).
            loaded.0 = stamps;
            match load_pair(&self.cert, &self.key, &self.provider) {
                Ok(pair) => {
                    tracing::info!(cert = %self.cert.display(), "serving the client port's new TLS certificate");
                    loaded.1 = Arc::new(pair);
                }
                Err(e) => {
                    tracing::warn!(
                        error = format!("{e:#}"),
                        "the client port's TLS certificate changed but cannot be loaded; still serving the previous one"
                    );
                }
            }
        }
        Some(loaded.1.clone())
    }
}

/// The first common name of a DER certificate's subject, if it has one.
fn common_name(der: &CertificateDer<'_>) -> Option<Arc<str>> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    let name = cert.subject().iter_common_name().next()?.as_str().ok()?;
    Some(Arc::from(name))
}

/// The client port's connections: accepted with `TCP_NODELAY` (or Nagle's algorithm and
/// delayed ACKs add ~40 ms to every small answer), each through its TLS handshake first
/// when `tls` is set — with `plain` too, only a connection whose first byte starts a TLS
/// record (a handshake, 0x16), the others served in plain text, as etcd serves an address
/// listed under both schemes. Ends when the listener fails for good or the stream is
/// dropped.
pub fn incoming(
    listener: TcpListener,
    tls: Option<ClientTls>,
    plain: bool,
) -> impl Stream<Item = io::Result<ClientStream>> + Send + 'static {
    let accepted = TcpIncoming::from(listener).with_nodelay(Some(true));
    let Some(tls) = tls else {
        return accepted
            .map(|conn| conn.map(ClientStream::plain))
            .left_stream();
    };
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let mut accepted = std::pin::pin!(accepted);
        loop {
            let conn = tokio::select! {
                conn = accepted.next() => conn,
                // The server stopped serving: stop accepting.
                _ = tx.closed() => break,
            };
            let Some(conn) = conn else { break };
            let tcp = match conn {
                Ok(tcp) => tcp,
                Err(e) => {
                    if tx.send(Err(e)).await.is_err() {
                        break;
                    }
                    continue;
                }
            };
            let (tls, tx) = (tls.clone(), tx.clone());
            tokio::spawn(async move {
                if plain {
                    match starts_with_handshake(&tcp).await {
                        Some(true) => {}
                        Some(false) => {
                            let _ = tx.send(Ok(ClientStream::plain(tcp))).await;
                            return;
                        }
                        // Gone, or silent for the handshake's whole timeout.
                        None => return,
                    }
                }
                match tls.handshake(tcp).await {
                    Ok(stream) => {
                        let _ = tx.send(Ok(stream)).await;
                    }
                    // The client's problem, not the server's: nothing to serve.
                    Err(e) => tracing::debug!(error = %e, "a client's TLS handshake failed"),
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).right_stream()
}

/// Whether a client's first byte starts a TLS handshake record; `None` when the client
/// closes or sends nothing within [`HANDSHAKE_TIMEOUT`].
async fn starts_with_handshake(tcp: &TcpStream) -> Option<bool> {
    /// The content type of a TLS handshake record: what a ClientHello starts with.
    const HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) => Some(first[0] == HANDSHAKE),
        _ => None,
    }
}

/// Who is on the other end of a client connection; tonic puts it in every request's
/// extensions.
#[derive(Clone, Debug, Default)]
pub struct ClientConnInfo {
    /// The client's address.
    pub remote: Option<SocketAddr>,
    /// The common name of the certificate the client presented and `--client-tls-ca`
    /// verified, if any.
    pub common_name: Option<Arc<str>>,
}

/// A connection to the client port, plain or TLS.
#[derive(Debug)]
pub struct ClientStream {
    inner: Inner,
    info: ClientConnInfo,
}

#[derive(Debug)]
enum Inner {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl ClientStream {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> ClientStream {
        let remote = tcp.peer_addr().ok();
        ClientStream {
            inner: Inner::Plain(tcp),
            info: ClientConnInfo {
                remote,
                common_name: None,
            },
        }
    }
}

impl Connected for ClientStream {
    type ConnectInfo = ClientConnInfo;

    fn connect_info(&self) -> ClientConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for ClientStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Inner::Tls(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Inner::Tls(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Inner::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Inner::Plain(s) => s.is_write_vectored(),
            Inner::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_flush(cx),
            Inner::Tls(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().inner {
            Inner::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Inner::Tls(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
