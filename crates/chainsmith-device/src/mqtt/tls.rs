//! The client side of the TLS handshake, instrumented: which server certificate came and
//! whether it verified, whether the server asked for a client certificate and which CAs it
//! said it accepts, which client chain we sent.

use super::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, Mutex};

/// What the handshake showed, filled in by the verifier and the certificate resolver.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub server_leaf: Option<Vec<u8>>,
    pub server_intermediates: usize,
    pub server_result: Option<Result<(), rustls::Error>>,
    pub client_requested: bool,
    pub acceptable_cas: Vec<String>,
}

pub(crate) type Recorder = Arc<Mutex<Seen>>;

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error(
        "the device key cannot be used for TLS: {0}; workspace devices use PKCS#8 PEM keys (ec-p256 by default)"
    )]
    Key(String),
    #[error(
        "no trust anchors for the server certificate: the system trust store is empty and none was given; give the CA that issued the server's certificate as a trust anchor"
    )]
    NoRoots,
    #[error("a certificate given as the server's trust anchor is not usable: {0}")]
    BadCa(String),
    #[error("\"{0}\" is not a valid TLS server name")]
    ServerName(String),
    #[error("TLS setup failed: {0}")]
    Other(String),
}

static ONLY_12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
static ONLY_13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Build the client configuration and the server name; returns the recorder the handshake fills.
pub(crate) fn client_config(
    identity: &Identity,
    extra_ca: &[Vec<u8>],
    system_roots: bool,
    host: &str,
    version: Option<super::TlsVersion>,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>, Recorder), TlsSetupError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for der in extra_ca {
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
    let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::Other(e.to_string()))?;
    let recorder: Recorder = Arc::default();
    let chain: Vec<CertificateDer<'static>> = identity
        .sent
        .iter()
        .map(|c| CertificateDer::from(c.der.clone()))
        .collect();
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| TlsSetupError::Key(e.to_string()))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(match version {
            None => rustls::DEFAULT_VERSIONS,
            Some(super::TlsVersion::V1_2) => ONLY_12,
            Some(super::TlsVersion::V1_3) => ONLY_13,
        })
        .map_err(|e| TlsSetupError::Other(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(RecordingVerifier {
            inner,
            seen: recorder.clone(),
        }))
        .with_client_cert_resolver(Arc::new(RecordingResolver {
            key: Arc::new(certified),
            seen: recorder.clone(),
        }));
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| TlsSetupError::ServerName(host.to_string()))?;
    Ok((Arc::new(config), name, recorder))
}

/// Delegates to webpki and records what it saw (the server certificate is reported even when
/// it does not verify).
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<WebPkiServerVerifier>,
    seen: Recorder,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let result =
            self.inner
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now);
        if let Ok(mut seen) = self.seen.lock() {
            seen.server_leaf = Some(end_entity.to_vec());
            seen.server_intermediates = intermediates.len();
            seen.server_result = Some(result.as_ref().map(|_| ()).map_err(Clone::clone));
        }
        result
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Always offers the device's chain and records the server's CertificateRequest.
#[derive(Debug)]
struct RecordingResolver {
    key: Arc<CertifiedKey>,
    seen: Recorder,
}

impl ResolvesClientCert for RecordingResolver {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        use x509_parser::prelude::FromDer;
        if let Ok(mut seen) = self.seen.lock() {
            seen.client_requested = true;
            seen.acceptable_cas = root_hint_subjects
                .iter()
                .map(|dn| match x509_parser::x509::X509Name::from_der(dn) {
                    Ok((_, name)) => name.to_string(),
                    Err(_) => format!("(undecodable name, {} bytes)", dn.len()),
                })
                .collect();
        }
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
