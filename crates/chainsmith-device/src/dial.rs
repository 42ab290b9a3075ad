//! How every device client reaches its peer, in one place for the connection test, the fleet
//! and the DPS client: TCP to the first address that answers, and the TLS client
//! configuration (the trust anchors parsed once into a server verifier, the device's chain
//! and key checked against each other, one crypto provider (aws-lc-rs), the TLS versions IoT
//! Hub accepts: 1.2 and 1.3). MQTT, AMQP and WebSockets ride on the stream this gives.

use rustls::client::danger::ServerCertVerifier;
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpStream;

/// TCP to the first of `addrs` that answers (in order: the resolver's preference), with
/// Nagle off (MQTT packets are small and each waits for its answer); the last error when none
/// does. The caller bounds the wait.
pub(crate) async fn tcp_first(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// The TLS server name for `host` (a DNS name or an IP address).
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsSetupError::ServerName(host.to_string()))
}

/// Why a device's TLS client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// The device's key is not a private key rustls can sign with, or does not fit its leaf.
    #[error(
        "the device key cannot be used for TLS: {0}; workspace devices use PKCS#8 PEM keys (ec-p256 by default)"
    )]
    Key(String),
    /// Neither a named anchor nor the system store gave a root.
    #[error(
        "no trust anchors for the server certificate: the system trust store is empty and none was given; give the CA that issued the server's certificate as a trust anchor"
    )]
    NoRoots,
    /// A named anchor is not a certificate webpki can use as a root.
    #[error("a certificate given as the server's trust anchor is not usable: {0}")]
    BadCa(String),
    /// The host is not a DNS name or an IP address.
    #[error("\"{0}\" is not a valid TLS server name")]
    ServerName(String),
    /// rustls refused the configuration otherwise.
    #[error("TLS setup failed: {0}")]
    Other(String),
}

/// The one crypto provider in the tree, made once: a fleet's 10,000 device configurations
/// share it instead of each holding its own copy of the suite and group lists.
fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<CryptoProvider>> = std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The server's side of the trust: the anchors (DER) and, when asked, the system store, as a
/// webpki verifier built once and shared by every device that dials the same server.
pub(crate) fn server_verifier(
    anchors: &[Vec<u8>],
    system_roots: bool,
) -> Result<Arc<WebPkiServerVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for der in anchors {
        roots
            .add(CertificateDer::from(der.clone()))
            .map_err(|e| TlsSetupError::BadCa(e.to_string()))?;
    }
    if system_roots {
        let found = rustls_native_certs::load_native_certs();
        let (_added, _ignored) = roots.add_parsable_certificates(found.certs);
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoRoots);
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsSetupError::Other(e.to_string()))
}

/// The device's chain (leaf first, DER) with its key (PEM: PKCS#8, SEC1 or PKCS#1), checked
/// to fit each other.
pub(crate) fn device_key(
    chain: &[Vec<u8>],
    key_pem: &str,
) -> Result<Arc<CertifiedKey>, TlsSetupError> {
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    let chain = chain.iter().cloned().map(CertificateDer::from).collect();
    CertifiedKey::from_der(chain, key, &provider())
        .map(Arc::new)
        .map_err(|e| TlsSetupError::Key(e.to_string()))
}

static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// The client configuration: `version` alone (default: 1.2 or 1.3, whichever the peer
/// prefers), server certificates judged by `verifier`, the client certificate from `client`.
pub(crate) fn client_config(
    version: Option<crate::mqtt::TlsVersion>,
    verifier: Arc<dyn ServerCertVerifier>,
    client: Arc<dyn ResolvesClientCert>,
) -> Result<ClientConfig, TlsSetupError> {
    Ok(builder(version, verifier)?.with_client_cert_resolver(client))
}

/// The builder of [`client_config`], up to the client certificate.
fn builder(
    version: Option<crate::mqtt::TlsVersion>,
    verifier: Arc<dyn ServerCertVerifier>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, TlsSetupError> {
    use crate::mqtt::TlsVersion;
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(match version {
            None => rustls::DEFAULT_VERSIONS,
            Some(TlsVersion::V1_2) => ONLY_12,
            Some(TlsVersion::V1_3) => ONLY_13,
        })
        .map_err(|e| TlsSetupError::Other(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier))
}

/// A fleet's configuration for `verifier`'s server before any device's key is in it (see
/// [`with_client_key`]): every handshake a full one, as a fleet test must measure.
pub(crate) fn fleet_template(
    verifier: Arc<WebPkiServerVerifier>,
) -> Result<ClientConfig, TlsSetupError> {
    let mut config = builder(None, verifier)?.with_no_client_auth();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// A device's configuration for `verifier`'s server with its chain and key, nothing recorded.
pub(crate) fn device_config(
    verifier: Arc<WebPkiServerVerifier>,
    chain: &[Vec<u8>],
    key_pem: &str,
) -> Result<ClientConfig, TlsSetupError> {
    let key = device_key(chain, key_pem)?;
    client_config(None, verifier, Arc::new(OneCert(key)))
}

/// A configuration like `template` that offers `key` as the client certificate: a fleet builds
/// its template once and gives each device its own copy, which shares the template's
/// verifier, provider and settings (only the configuration's own small fields are copied).
pub(crate) fn with_client_key(template: &ClientConfig, key: Arc<CertifiedKey>) -> ClientConfig {
    let mut config = template.clone();
    config.client_auth_cert_resolver = Arc::new(OneCert(key));
    config
}

/// Offers the device's one chain whenever the server asks.
#[derive(Debug)]
pub(crate) struct OneCert(pub Arc<CertifiedKey>);

impl ResolvesClientCert for OneCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
