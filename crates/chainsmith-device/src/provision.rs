//! Provisioning a device through the local DPS as one engine call: the registration request
//! (with a CSR for a fresh key when asked), the DPS exchange ([`crate::dps_client`]), the
//! issued chain decoded and written beside its key, and the identity the hub test then uses.
//! The faces pass a progress callback and print what it reports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

use crate::azure::dps as wire;
use crate::dps_client::{self, ProvisionStep};
use crate::hub::HubStore;
use crate::mqtt::{Endpoint, Identity};
use crate::store::Workspace;

/// What to provision with.
pub struct ProvisionSpec<'a> {
    /// The local hub's listener, where its DPS answers too.
    pub endpoint: &'a Endpoint,
    /// The ID scope to register with; None: the local DPS's own.
    pub id_scope: Option<String>,
    /// Register with a CSR for a fresh P-256 key (api-version 2025-07-01-preview) and use the
    /// certificate DPS issues.
    pub csr: bool,
    /// Limit for each network step (at least a second).
    pub timeout: Duration,
    /// Trust anchors for the DPS server certificate (DER).
    pub trust: Vec<Vec<u8>>,
}

/// What a provisioning reports as it goes.
#[derive(Debug)]
pub enum Progress<'a> {
    /// About to dial: who registers, where and how.
    Begin {
        /// The registration id (the device id).
        registration_id: &'a str,
        /// The ID scope registered with.
        id_scope: &'a str,
        /// The DPS api-version used.
        api_version: &'a str,
        /// Whether a CSR for a fresh key is sent.
        csr: bool,
    },
    /// One step of the DPS exchange.
    Step(ProvisionStep),
    /// The certificate DPS issued was written beside the fresh key.
    Issued {
        /// The registration id.
        registration_id: &'a str,
        /// The issued chain (PEM, leaf first).
        cert: &'a Path,
        /// The fresh key (PEM, mode 0600).
        key: &'a Path,
        /// Where the certificate the device onboarded with went: the DPS stores the issued
        /// one as the workspace entity, so the onboarding certificate and key move to the
        /// entity's history (`entities/REGID/history/SERIAL/cert.pem`, `key.pem`). None when
        /// the device did not come from the workspace.
        onboarding: Option<&'a Path>,
    },
}

/// Why a provisioning did not give an identity.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The ID scope given is not one DPS accepts (the error says why).
    #[error(transparent)]
    IdScope(crate::azure::dps::IdScopeError),
    /// The local DPS's ID scope could not be read.
    #[error("{0}")]
    Registry(#[source] crate::hub::RegistryError),
    /// The CSR for a fresh key could not be made.
    #[error("making a CSR: {0}")]
    Csr(#[source] crate::dps_client::CsrError),
    /// The hub's endpoint is not an address to dial.
    #[error("the local hub's address {0} is not an IP address and port")]
    Address(String),
    /// The device's chain, key or the trust anchors do not make a TLS client.
    #[error(transparent)]
    Tls(#[from] crate::dial::TlsSetupError),
    /// DPS did not assign the device (the sentence has DPS's status and answer).
    #[error(transparent)]
    Refused(crate::dps_client::DpsError),
    /// DPS assigned the device after a CSR but issued no certificate.
    #[error("DPS assigned the device but returned no issuedCertificateChain for the CSR")]
    NoIssuedChain,
    /// DPS's issued chain is not base64 DER.
    #[error("issuedCertificateChain holds something other than base64")]
    IssuedNotBase64,
    /// Writing the issued chain or its key failed.
    #[error("{0}")]
    Store(#[source] crate::store::Error),
    /// The written chain and key do not make an identity.
    #[error("{0}")]
    Identity(#[source] crate::mqtt::identity::IdentityError),
}

/// Provision `identity` at the local hub's DPS, reporting each step to `on`; returns the
/// identity the hub test uses: the device id DPS assigned, and with a CSR the issued chain and
/// the fresh key, written under the hub's `dps-issued/` so the user can use them too.
pub async fn provision(
    ws: &Workspace,
    store: &HubStore,
    mut identity: Identity,
    spec: ProvisionSpec<'_>,
    on: &mut (dyn FnMut(Progress<'_>) + Send),
) -> Result<Identity, ProvisionError> {
    let scope = match spec.id_scope {
        Some(s) => {
            wire::check_id_scope(&s).map_err(ProvisionError::IdScope)?;
            s
        }
        None => store.dps_id_scope().map_err(ProvisionError::Registry)?,
    };
    let regid = identity.device_id.clone();
    let device = dps_client::Device {
        registration_id: regid.clone(),
        chain: identity.sent.iter().map(|c| c.der.clone()).collect(),
        key_pem: identity.key_pem.clone(),
        trust: spec.trust,
    };
    let mut request = wire::RegisterRequest {
        registration_id: regid.clone(),
        payload: None,
        csr: None,
    };
    let mut fresh_key = None;
    let api = if spec.csr {
        let (key, csr) = dps_client::fresh_csr(&regid).map_err(ProvisionError::Csr)?;
        request.csr = Some(base64::engine::general_purpose::STANDARD.encode(csr));
        fresh_key = Some(key);
        wire::API_VERSION_CSR
    } else {
        wire::API_VERSION
    };
    let endpoint = spec.endpoint;
    let addr: SocketAddr = format!("{}:{}", endpoint.host, endpoint.port)
        .parse()
        .map_err(|_| ProvisionError::Address(endpoint.display()))?;
    on(Progress::Begin {
        registration_id: &regid,
        id_scope: &scope,
        api_version: api,
        csr: spec.csr,
    });
    let config = dps_client::tls_config(&device)?;
    let st = dps_client::provision(
        addr,
        &endpoint.host,
        config,
        &device,
        &scope,
        api,
        &request,
        spec.timeout.max(Duration::from_secs(1)),
        None,
        &mut |s| on(Progress::Step(s)),
    )
    .await
    .map_err(ProvisionError::Refused)?;
    if let Some(d) = &st.device_id {
        identity.device_id = d.clone();
    }
    let Some(key) = fresh_key else {
        return Ok(identity);
    };
    let chain = st
        .issued_certificate_chain
        .as_ref()
        .ok_or(ProvisionError::NoIssuedChain)?;
    let (cert, key_path) = write_issued(store, &regid, chain, &key)?;
    let onboarding = identity
        .sent
        .first()
        .and_then(|leaf| history_holding(ws, &regid, &leaf.der));
    on(Progress::Issued {
        registration_id: &regid,
        cert: &cert,
        key: &key_path,
        onboarding: onboarding.as_deref(),
    });
    let mut issued =
        Identity::from_files(&cert, &key_path, Some(ws)).map_err(ProvisionError::Identity)?;
    issued.device_id = identity.device_id;
    Ok(issued)
}

/// The history directory of workspace entity `name` that holds the certificate `der` (where
/// the onboarding certificate went when DPS stored the issued one in its place).
fn history_holding(ws: &Workspace, name: &str, der: &[u8]) -> Option<PathBuf> {
    let entity = ws.load(name).ok()?;
    let dir = entity.dir.join(crate::store::HISTORY_DIR);
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| crate::store::Entity::read_dir(p.clone()).is_ok_and(|old| old.cert_der == der))
}

/// The issued chain (base64 DER, leaf first) as PEM and the fresh key, under the hub's
/// `dps-issued/` (a private directory; the key 0600): returns (chain path, key path).
fn write_issued(
    store: &HubStore,
    registration_id: &str,
    chain: &[String],
    key_pem: &str,
) -> Result<(PathBuf, PathBuf), ProvisionError> {
    let mut pem_text = String::new();
    for c in chain {
        let der = base64::engine::general_purpose::STANDARD
            .decode(c)
            .map_err(|_| ProvisionError::IssuedNotBase64)?;
        pem_text.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", der)));
    }
    let dir = store.dir().join("dps-issued");
    crate::store::make_private_dir_all(&dir).map_err(ProvisionError::Store)?;
    let file = crate::azure::url_encode(registration_id);
    let cert = dir.join(format!("{file}_fullchain.pem"));
    let key = dir.join(format!("{file}_key.pem"));
    crate::store::write_atomic(&key, key_pem.as_bytes(), 0o600).map_err(ProvisionError::Store)?;
    crate::store::write_atomic(&cert, pem_text.as_bytes(), 0o644).map_err(ProvisionError::Store)?;
    Ok((cert, key))
}
