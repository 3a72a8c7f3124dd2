//! The TCP listener closed the way the datastore is: TLS that asks for a client certificate
//! signed by the cluster's CA, so a pod that reaches the node's address gets no answer without
//! one. Handshakes run concurrently, each bounded, so a peer that connects and says nothing
//! holds up no one else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A handshake that takes longer is dropped.
const HANDSHAKE: Duration = Duration::from_secs(3);
/// Handshaken connections waiting for the server.
const BACKLOG: usize = 64;

/// The CA client certificates must chain to, and this server's certificate and key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The environment a process finds its files in (the lab sets them for its processes).
pub const ENV_CA: &str = "CILIA_METRICS_CA";
pub const ENV_CERT: &str = "CILIA_METRICS_CERT";
pub const ENV_KEY: &str = "CILIA_METRICS_KEY";

impl TlsFiles {
    /// From [`ENV_CA`], [`ENV_CERT`] and [`ENV_KEY`], when all three are set.
    pub fn from_env() -> Option<Self> {
        let var = |name| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        Some(TlsFiles { ca: var(ENV_CA)?, cert: var(ENV_CERT)?, key: var(ENV_KEY)? })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {what}", path.display())]
    Pem { path: PathBuf, what: String },
    #[error("the TLS configuration is refused: {0}")]
    Config(String),
}

fn pem_error(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem { path: path.into(), what: e.to_string() }
}

/// A server configuration that requires a client certificate signed by `files.ca`, for HTTP/1.1.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_for(files, b"http/1.1")
}

/// [`server_config`] for another application protocol (`h2` for gRPC).
pub fn server_config_for(files: &TlsFiles, alpn: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    // ring, as the datastore client uses: the project builds no aws-lc. Its provider is
    // deprecated only for lacking post-quantum key exchange.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).map_err(pem_error(&files.ca))? {
        roots.add(cert.map_err(pem_error(&files.ca))?).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(&files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error(&files.key))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// A client configuration that trusts the servers `files.ca` signed and presents `files.cert`,
/// offering `alpn`.
pub fn client_config(files: &TlsFiles, alpn: &[u8]) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&files.ca).map_err(pem_error(&files.ca))? {
        roots.add(cert.map_err(pem_error(&files.ca))?).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .map_err(pem_error(&files.cert))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error(&files.cert))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(pem_error(&files.key))?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts TCP connections, handshakes each on a task of its own and hands on the ones that
/// presented a valid client certificate.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::debug!(error = %e, "accepting a metrics connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, handed) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = handed.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake refused"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(TlsListener { local, ready })
    }
}

impl TlsListener {
    /// The next connection that completed its handshake; `None` once the listener failed for good.
    pub async fn next(&mut self) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
        self.ready.recv().await
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            // The accept task ended (its listener failed for good): serve nothing more.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType};
    use rustls::ClientConfig;
    use rustls::pki_types::ServerName;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::{Endpoints, Health, Listen, serve};

    struct Issued {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    fn ca() -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Issued { cert: p.self_signed(&key).unwrap(), key }
    }

    fn leaf(ca: &Issued, usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        p.extended_key_usages = vec![usage];
        Issued { cert: p.signed_by(&key, &ca.cert, &ca.key).unwrap(), key }
    }

    /// GET /healthz over TLS, with or without a client certificate; the answer's status line.
    async fn get(addr: SocketAddr, ca: &Issued, client: Option<&Issued>) -> Result<String, String> {
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert.der().clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match client {
            Some(c) => builder
                .with_client_auth_cert(
                    vec![c.cert.der().clone()],
                    PrivateKeyDer::try_from(c.key.serialize_der()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let name = ServerName::IpAddress(Ipv4Addr::LOCALHOST.into());
        let mut tls = TlsConnector::from(Arc::new(config)).connect(name, tcp).await.map_err(|e| e.to_string())?;
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        tls.read_to_string(&mut out).await.map_err(|e| e.to_string())?;
        Ok(out.lines().next().unwrap_or_default().to_string())
    }

    #[tokio::test]
    async fn the_tcp_listener_answers_only_clients_with_a_certificate_of_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, other_ca) = (ca(), ca());
        let server = leaf(&ca, ExtendedKeyUsagePurpose::ServerAuth);
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let files = TlsFiles {
            ca: write("ca.crt", ca.cert.pem()),
            cert: write("server.crt", server.cert.pem()),
            key: write("server.key", server.key.serialize_pem()),
        };
        // Bind a free port first, so the test knows it.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let health = Arc::new(Health::new(&[]));
        health.beat();
        let endpoints = Endpoints { metrics: Arc::new(String::new), health };
        let stop = CancellationToken::new();
        let listen = Listen { tcp: Some(addr), unix: None, tls: Some(files) };
        let _tasks = serve(endpoints, &listen, stop.clone()).await.unwrap();

        let client = leaf(&ca, ExtendedKeyUsagePurpose::ClientAuth);
        assert_eq!(get(addr, &ca, Some(&client)).await.unwrap(), "HTTP/1.1 200 OK");
        let without = get(addr, &ca, None).await;
        assert!(without.as_ref().is_err() || without.as_ref().is_ok_and(|l| l.is_empty()), "{without:?}");
        let stranger = leaf(&other_ca, ExtendedKeyUsagePurpose::ClientAuth);
        let foreign = get(addr, &ca, Some(&stranger)).await;
        assert!(foreign.as_ref().is_err() || foreign.as_ref().is_ok_and(|l| l.is_empty()), "{foreign:?}");
        // Plain HTTP gets no HTTP answer.
        let mut plain = TcpStream::connect(addr).await.unwrap();
        plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut buf)).await;
        assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));
        stop.cancel();
    }
}
