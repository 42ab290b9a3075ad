//! The hub's TLS: a hub-internal CA kept in `WS/hub/tls/` (made on first use; `hub trust`
//! prints its path), a server certificate issued from it at every start (SANs `localhost`,
//! `127.0.0.1`, `::1` and `--hostname`), served with the shared server's verifier
//! (`chainsmith_server::tls`), which *requests* a certificate and checks the handshake
//! signature, but leaves chain and registry checks to CONNECT time, where the hub can say
//! exactly why it refuses.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::registry::{HubStore, RegistryError, Result};
use crate::pki::issue::{self, San};
use crate::pki::{CaHandle, IssueSpec, KeyAlg, Profile, Validity, subject};
use crate::store;

const CA_CN: &str = "chainsmith local hub TLS CA";

impl HubStore {
    /// `WS/hub/tls/`: the hub's own TLS CA and server certificate.
    pub(crate) fn tls_dir(&self) -> PathBuf {
        self.dir().join("tls")
    }
    /// The PEM clients must trust to talk to the hub (what `hub trust` prints).
    pub fn trust_path(&self) -> PathBuf {
        self.tls_dir().join("ca.pem")
    }

    /// The hub's TLS CA, created on first use.
    pub fn ensure_tls_ca(&self) -> Result<CaHandle> {
        let dir = self.tls_dir();
        store::make_private_dir_all(&dir)?;
        let cert_p = self.trust_path();
        let key_p = dir.join("ca.key");
        let _lock = self.ws.lock()?;
        if !cert_p.exists() {
            let profile = Profile::Root { pathlen: Some(0) };
            let spec = IssueSpec {
                subject: subject::cn_only(CA_CN)?,
                validity: Validity::days(3650),
                profile,
            };
            let issued = issue::issue(&spec, KeyAlg::EcP256, None)?;
            let key = issued.key_pem.clone().unwrap_or_default();
            // Key first (0600), then the certificate whose presence means "done".
            store::write_atomic(&key_p, key.as_bytes(), 0o600)?;
            store::write_atomic(&cert_p, issued.cert_pem.as_bytes(), 0o644)?;
        }
        let cert_pem =
            std::fs::read_to_string(&cert_p).map_err(|e| store::io_error("reading", &cert_p, e))?;
        let key_pem =
            std::fs::read_to_string(&key_p).map_err(|e| store::io_error("reading", &key_p, e))?;
        let der = super::registry::pem_to_der(&cert_pem).unwrap_or_default();
        Ok(CaHandle::new("hub-tls-ca", der, &key_pem)?)
    }

    /// A rustls server config for this hub: a fresh server certificate from the hub CA.
    pub fn server_config(&self, hostname: Option<&str>) -> Result<Arc<rustls::ServerConfig>> {
        let ca = self.ensure_tls_ca()?;
        let mut sans = vec![
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().expect("ip")),
            San::Ip("::1".parse().expect("ip")),
        ];
        if let Some(h) = hostname.filter(|h| *h != "localhost") {
            sans.push(San::parse(h).unwrap_or(San::Dns(h.to_string())));
        }
        let profile = Profile::Server { sans };
        let spec = IssueSpec {
            subject: subject::cn_only(hostname.unwrap_or("localhost"))?,
            validity: Validity::days(825),
            profile,
        };
        let issued = issue::issue(&spec, KeyAlg::EcP256, Some(&ca))?;
        let key_pem = issued.key_pem.unwrap_or_default();
        let key = PrivateKeyDer::Pkcs8(
            super::registry::pem_to_der(&key_pem)
                .unwrap_or_default()
                .into(),
        );
        let chain = vec![
            CertificateDer::from(issued.cert_der),
            CertificateDer::from(ca.cert_der.clone()),
        ];
        chainsmith_server::tls::server_config(chain, key).map_err(RegistryError::ServerTls)
    }
}
