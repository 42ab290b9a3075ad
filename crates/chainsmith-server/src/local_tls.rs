//! A local cloud's own TLS: a cloud-internal CA kept in a directory of the workspace (made on
//! first use; its certificate is the PEM clients trust), and a server certificate issued from
//! it at every start (SANs `localhost`, `127.0.0.1`, `::1` and the hostname asked for), served
//! with [`crate::tls`]'s verifier. The local IoT Hub keeps it in `WS/hub/tls/`, the local AWS
//! IoT Core in `WS/aws/tls/`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chainsmith_pki::pki::issue::{self, San};
use chainsmith_pki::pki::{self, CaHandle, IssueSpec, KeyAlg, Profile, Validity, subject};
use chainsmith_pki::store::{self, Workspace};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a local cloud's TLS could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalTlsError {
    /// Reading or writing the CA's files.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Issuing the CA or the server certificate.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// rustls refused the certificate or key.
    #[error("the server's TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

/// One cloud's TLS CA in `dir`, named `ca_cn`.
#[derive(Clone, Debug)]
pub struct LocalTls {
    /// `WS/hub/tls/`, `WS/aws/tls/`.
    pub dir: PathBuf,
    /// The CA's common name.
    pub ca_cn: &'static str,
}

impl LocalTls {
    /// The PEM clients must trust to talk to this cloud.
    pub fn trust_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA, created on first use (under the workspace's lock, so two starts make one).
    pub fn ensure_ca(&self, ws: &Workspace) -> Result<CaHandle, LocalTlsError> {
        store::make_private_dir_all(&self.dir)?;
        let cert_p = self.trust_path();
        let key_p = self.dir.join("ca.key");
        let _lock = ws.lock()?;
        if !cert_p.exists() {
            let spec = IssueSpec {
                subject: subject::cn_only(self.ca_cn)?,
                validity: Validity::days(3650),
                profile: Profile::Root { pathlen: Some(0) },
            };
            let issued = issue::issue(&spec, KeyAlg::EcP256, None)?;
            let key = issued.key_pem.clone().unwrap_or_default();
            // Key first (0600), then the certificate whose presence means "done".
            store::write_atomic(&key_p, key.as_bytes(), 0o600)?;
            store::write_atomic(&cert_p, issued.cert_pem.as_bytes(), 0o644)?;
        }
        let cert_pem = read(&cert_p)?;
        let key_pem = read(&key_p)?;
        let der = pki::pem_to_der(&cert_pem).unwrap_or_default();
        let name = self
            .dir
            .parent()
            .and_then(Path::file_name)
            .map(|n| format!("{}-tls-ca", n.to_string_lossy()))
            .unwrap_or_else(|| "tls-ca".into());
        Ok(CaHandle::new(&name, der, &key_pem)?)
    }

    /// A rustls server config with a fresh server certificate from the CA for `hostname`
    /// (default `localhost`); `alpn` as [`crate::tls::server_config_for_alpn`] takes it.
    pub fn server_config(
        &self,
        ws: &Workspace,
        hostname: Option<&str>,
        alpn: Option<&[u8]>,
    ) -> Result<Arc<rustls::ServerConfig>, LocalTlsError> {
        let ca = self.ensure_ca(ws)?;
        let mut sans = vec![
            San::Dns("localhost".into()),
            San::Ip("127.0.0.1".parse().expect("ip")),
            San::Ip("::1".parse().expect("ip")),
        ];
        if let Some(h) = hostname.filter(|h| *h != "localhost") {
            sans.push(San::parse(h).unwrap_or(San::Dns(h.to_string())));
        }
        let spec = IssueSpec {
            subject: subject::cn_only(hostname.unwrap_or("localhost"))?,
            validity: Validity::days(825),
            profile: Profile::Server { sans },
        };
        let issued = issue::issue(&spec, KeyAlg::EcP256, Some(&ca))?;
        let key_pem = issued.key_pem.unwrap_or_default();
        let key = PrivateKeyDer::Pkcs8(pki::pem_to_der(&key_pem).unwrap_or_default().into());
        let chain = vec![
            CertificateDer::from(issued.cert_der),
            CertificateDer::from(ca.cert_der.clone()),
        ];
        Ok(crate::tls::server_config_for_alpn(chain, key, alpn)?)
    }
}

fn read(p: &Path) -> Result<String, store::Error> {
    std::fs::read_to_string(p).map_err(|e| store::io_error("reading", p, e))
}
