//! TLS for thousands of devices: one server verifier (trust anchors parsed once) shared by
//! every device's client configuration, which holds only that device's chain and key.
//! Session resumption is off so every handshake is a full one, as a fleet test must measure.

use rustls::client::{Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::sync::Arc;

pub(crate) struct Trust {
    provider: Arc<rustls::crypto::CryptoProvider>,
    verifier: Arc<WebPkiServerVerifier>,
}

impl Trust {
    pub fn new(extra_ca: &[Vec<u8>], system_roots: bool) -> Result<Trust, String> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = RootCertStore::empty();
        for der in extra_ca {
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("a CA certificate is not usable as a trust anchor: {e}"))?;
        }
        if system_roots {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
        if roots.is_empty() {
            return Err("no trust anchors for the server certificate: give the CA that issued the server's certificate".into());
        }
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| e.to_string())?;
        Ok(Trust { provider, verifier })
    }

    /// One device's configuration: its chain (leaf first) and key.
    pub fn client(&self, chain: &[Vec<u8>], key_pem: &str) -> Result<Arc<ClientConfig>, String> {
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| format!("the device key cannot be used for TLS: {e}"))?;
        let chain = chain
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_webpki_verifier(self.verifier.clone())
            .with_client_auth_cert(chain, key)
            .map_err(|e| format!("the device key does not fit its certificate: {e}"))?;
        config.resumption = Resumption::disabled();
        Ok(Arc::new(config))
    }
}
