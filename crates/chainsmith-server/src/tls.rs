//! TLS as a local cloud serves it: the server asks every client for a certificate, checks
//! that the client holds its key (the handshake signature), and accepts any chain, because the
//! cloud's own admission rules decide after the handshake, with a reason the device is told.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// A server config presenting `chain` (server certificate first) with `key`, asking every
/// client for its certificate ([`RequestClientCert`]); aws-lc-rs is the one crypto provider.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    server_config_for_alpn(chain, key, None)
}

/// [`server_config`], and with `alpn` only clients offering that ALPN protocol get through the
/// handshake: the server picks no certificate for the others, so they are refused at TLS with
/// a `handshake_failure` alert, never reaching MQTT (as AWS IoT Core's port 443 serves MQTT
/// only to clients offering `x-amzn-mqtt-ca`).
pub fn server_config_for_alpn(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    alpn: Option<&[u8]>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    use rustls::crypto::aws_lc_rs::kx_group;
    let provider = Arc::new(rustls::crypto::CryptoProvider {
        // The key exchanges devices offer: X25519 and the NIST curves. aws-lc-rs puts the
        // post-quantum hybrid X25519MLKEM768 first, which IoT devices' TLS stacks (mbedTLS,
        // OpenSSL before 3.5, the SDKs built on them) do not offer; picking it for the clients
        // that do cost every handshake an ML-KEM encapsulation and 1.1 KB more ServerHello, and
        // made the local cloud slower to a fleet than to the same fleet's real cloud.
        kx_groups: vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1],
        ..rustls::crypto::aws_lc_rs::default_provider()
    });
    let verifier = Arc::new(RequestClientCert {
        algs: provider.signature_verification_algorithms,
    });
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier);
    let certified = Arc::new(CertifiedKey::from_der(chain, key, &provider)?);
    let mut config = match alpn {
        None => builder.with_cert_resolver(Arc::new(OneCertificate(certified))),
        Some(protocol) => {
            let mut config = builder.with_cert_resolver(Arc::new(OnlyForAlpn {
                certified,
                protocol: protocol.to_vec(),
            }));
            config.alpn_protocols = vec![protocol.to_vec()];
            config
        }
    };
    // No session resumption: a device's reconnect is a full handshake with its certificate,
    // which the cloud then judges again (a resumed session would carry the old verdict's
    // chain). Without this rustls sends two TLS 1.3 tickets after every handshake (encrypted,
    // written and remembered in a 256-entry cache) that no client here uses.
    config.send_tls13_tickets = 0;
    config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(config))
}

/// The one certificate for every client.
#[derive(Debug)]
struct OneCertificate(Arc<CertifiedKey>);

impl ResolvesServerCert for OneCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

/// The certificate only for clients offering `protocol` in their ALPN list.
#[derive(Debug)]
struct OnlyForAlpn {
    certified: Arc<CertifiedKey>,
    protocol: Vec<u8>,
}

impl ResolvesServerCert for OnlyForAlpn {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut offered = hello.alpn()?;
        offered
            .any(|p| p == self.protocol.as_slice())
            .then(|| self.certified.clone())
    }
}

/// Ask for a client certificate, prove the client holds its key (handshake signature),
/// accept any chain: the cloud's registry decides after the handshake.
#[derive(Debug)]
struct RequestClientCert {
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        // A client without a certificate still gets to its protocol and is refused with a reason.
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}
