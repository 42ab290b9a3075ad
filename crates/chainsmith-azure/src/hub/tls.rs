//! The hub's TLS: a hub-internal CA kept in `WS/hub/tls/` (made on first use; `hub trust`
//! prints its path), a server certificate issued from it at every start (SANs `localhost`,
//! `127.0.0.1`, `::1` and `--hostname`), served with the shared server's verifier
//! (`chainsmith_server::tls`), which *requests* a certificate and checks the handshake
//! signature, but leaves chain and registry checks to CONNECT time, where the hub can say
//! exactly why it refuses. The CA and certificate are made as every local cloud makes its own
//! (`chainsmith_server::local_tls`).

use std::path::PathBuf;
use std::sync::Arc;

use chainsmith_server::local_tls::{LocalTls, LocalTlsError};

use super::registry::{HubStore, RegistryError, Result};
use crate::pki::CaHandle;

const CA_CN: &str = "chainsmith local hub TLS CA";

impl From<LocalTlsError> for RegistryError {
    fn from(e: LocalTlsError) -> Self {
        match e {
            LocalTlsError::Store(e) => e.into(),
            LocalTlsError::Pki(e) => e.into(),
            LocalTlsError::Tls(e) => RegistryError::ServerTls(e),
        }
    }
}

impl HubStore {
    /// `WS/hub/tls/`: the hub's own TLS CA and server certificate.
    pub(crate) fn tls_dir(&self) -> PathBuf {
        self.dir().join("tls")
    }

    fn local_tls(&self) -> LocalTls {
        LocalTls {
            dir: self.tls_dir(),
            ca_cn: CA_CN,
        }
    }

    /// The PEM clients must trust to talk to the hub (what `hub trust` prints).
    pub fn trust_path(&self) -> PathBuf {
        self.local_tls().trust_path()
    }

    /// The hub's TLS CA, created on first use.
    pub fn ensure_tls_ca(&self) -> Result<CaHandle> {
        Ok(self.local_tls().ensure_ca(&self.ws)?)
    }

    /// A rustls server config for this hub: a fresh server certificate from the hub CA.
    pub fn server_config(&self, hostname: Option<&str>) -> Result<Arc<rustls::ServerConfig>> {
        Ok(self.local_tls().server_config(&self.ws, hostname, None)?)
    }
}
