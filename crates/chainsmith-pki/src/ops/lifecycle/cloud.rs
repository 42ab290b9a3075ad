//! The seam between a workspace's lifecycle and the local clouds that hold its certificates.
//!
//! A revocation reaches the local hub (it refuses the certificate, and can disable the devices
//! that use it) and a renewed CA can be uploaded to it; this crate knows no cloud, so those
//! operations take a [`LocalCloud`], which each cloud's crate implements for its registry
//! (`chainsmith-azure`'s `HubStore`). A face passes the registry of the cloud it runs.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use crate::pki::HUB_DOES_NOT_CHECK_CRLS;

/// An error of a local cloud's registry, as the lifecycle reports it (its message says the fix).
pub type CloudError = Box<dyn std::error::Error + Send + Sync>;

/// A workspace certificate that a revocation marked, as a local cloud remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct RevokedCert {
    /// SHA-256 thumbprint (upper hex) of the certificate: how several certificates of one CA
    /// are told apart.
    pub sha256: String,
    /// The workspace entity it belongs (or belonged) to.
    pub name: String,
    /// Its serial number (hex).
    pub serial: String,
    /// RFC 5280 reason name.
    pub reason: String,
}

/// How a device authenticates to a local cloud.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Auth {
    /// By a chain up to a verified CA.
    Ca,
    /// By the thumbprint of its own certificate.
    SelfSigned,
}

impl Auth {
    /// The name IoT Hub uses (`ca`, `self-signed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Ca => "ca",
            Auth::SelfSigned => "self-signed",
        }
    }
}

/// A cloud device a revocation turned off, and why it matched.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct DisabledDevice {
    /// The device id.
    pub id: String,
    /// How it authenticates.
    pub auth: Auth,
    /// "CN" for a CA-authenticated device, "primary thumbprint" / "secondary thumbprint".
    pub matched: String,
    /// False when it was disabled already.
    pub was_enabled: bool,
}

/// A CA certificate a local cloud holds, with its proof-of-possession state: several of one CA
/// share the name (a renewal uploads the new one beside the old), told apart by
/// [`CloudCa::thumbprint`].
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct CloudCa {
    /// Workspace entity name.
    pub name: String,
    /// Its common name.
    pub cn: String,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Proof of possession done (or it was added verified).
    pub verified: bool,
    /// The current verification code (48 hex digits); a new one on each upload.
    pub code: String,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub added: OffsetDateTime,
}

impl CloudCa {
    /// SHA-256 thumbprint (upper hex) of the certificate: how several certificates of one CA
    /// are told apart.
    pub fn thumbprint(&self) -> String {
        crate::pki::pem_to_der(&self.cert_pem)
            .map(|d| crate::pki::thumbprints(&d).1)
            .unwrap_or_default()
    }
}

/// What a lifecycle operation asks of a local cloud's registry.
pub trait LocalCloud {
    /// Remember these certificates as revoked, so the cloud refuses them from now on.
    fn note_revoked(&self, certs: Vec<RevokedCert>) -> Result<(), CloudError>;
    /// Disable the devices whose credential is this certificate (by CN for a CA-authenticated
    /// device, by thumbprint for a self-signed one).
    fn disable_credential(
        &self,
        cn: &str,
        sha1: &str,
        sha256: &str,
    ) -> Result<Vec<DisabledDevice>, CloudError>;
    /// End a running cloud's live session of `device_id`, saying `why`; true when one was
    /// ended (no running cloud is fine: its registry on disk refuses the next connection).
    fn end_session(&self, device_id: &str, why: &str) -> bool;
    /// Whether the cloud holds a certificate of CA `name`.
    fn holds_ca(&self, name: &str) -> Result<bool, CloudError>;
    /// Upload the current certificate of CA `name` beside the ones the cloud holds.
    fn upload_ca(&self, name: &str, verified: bool) -> Result<CloudCa, CloudError>;
}
