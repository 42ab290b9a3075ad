//! The client side of the TLS handshake, instrumented: which server certificate came and
//! whether it verified, whether the server asked for a client certificate and which CAs it
//! said it accepts, which client chain we sent.

use super::identity::Identity;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, SignatureScheme};
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

pub use crate::dial::TlsSetupError;

/// Build the client configuration (the shared builder, with a verifier and a certificate
/// resolver that record what the handshake showed) and the server name; returns the recorder
/// the handshake fills.
pub(crate) fn client_config(
    identity: &Identity,
    extra_ca: &[Vec<u8>],
    system_roots: bool,
    host: &str,
    version: Option<super::TlsVersion>,
) -> Result<(Arc<rustls::ClientConfig>, ServerName<'static>, Recorder), TlsSetupError> {
    let inner = crate::dial::server_verifier(extra_ca, system_roots)?;
    let chain: Vec<Vec<u8>> = identity.sent.iter().map(|c| c.der.clone()).collect();
    let key = crate::dial::device_key(&chain, &identity.key_pem)?;
    let recorder: Recorder = Arc::default();
    let config = crate::dial::client_config(
        version,
        Arc::new(RecordingVerifier {
            inner,
            seen: recorder.clone(),
        }),
        Arc::new(RecordingResolver {
            key,
            seen: recorder.clone(),
        }),
    )?;
    let name = crate::dial::server_name(host)?;
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
