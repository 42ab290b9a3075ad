//! The hub's registry, kept in the workspace under `WS/hub/`:
//!
//! - `registry.json`: uploaded CAs (verified flag, current verification code) and devices
//!   (auth type, thumbprints, enabled). Written atomically under the workspace lock.
//! - `twins/{deviceId}.json`: each device's twin (desired/reported with versions).
//! - `tls/`: the hub-internal TLS CA and server certificate (see `tls.rs`).
//!
//! The server re-reads `registry.json` on every CONNECT, so changes need no restart.

/// A CA certificate the hub holds, with its proof-of-possession state (the PKI core's
/// [`CloudCa`](crate::ops::lifecycle::CloudCa), since a renewal uploads one).
pub use crate::ops::lifecycle::CloudCa as HubCa;
use crate::ops::lifecycle::CloudError;
pub use crate::ops::lifecycle::{Auth, DisabledDevice, RevokedCert};
pub use crate::pki::pem_to_der;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

use crate::pki;
use crate::store::{self, Workspace};

mod cas;
mod devices;
mod error;
mod twins;

pub use error::{RegistryError, Result};
pub use twins::{Twin, merge};
pub(crate) use twins::{TwinRule, check_twin_document};

/// A registered device.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HubDevice {
    /// The device id.
    pub id: String,
    /// How it authenticates.
    pub auth: Auth,
    /// Primary thumbprint (self-signed devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// Secondary thumbprint (self-signed devices).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// A disabled device is refused.
    pub enabled: bool,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub added: OffsetDateTime,
    /// Who created it when it was not the operator: `DPS, group NAME` or `DPS, individual
    /// REGID` (Azure's DPS creates devices by their certificate's thumbprint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned_by: Option<String>,
}

impl HubDevice {
    /// An enabled device the operator registers, added `now`.
    pub fn new(
        id: &str,
        auth: Auth,
        primary: Option<String>,
        secondary: Option<String>,
        now: OffsetDateTime,
    ) -> HubDevice {
        HubDevice {
            id: id.to_string(),
            auth,
            primary,
            secondary,
            enabled: true,
            added: now,
            provisioned_by: None,
        }
    }
}

/// The hub's registry (`registry.json`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Registry {
    /// Uploaded CA certificates.
    #[serde(default)]
    pub cas: Vec<HubCa>,
    /// Registered devices.
    #[serde(default)]
    pub devices: Vec<HubDevice>,
    /// Certificates revoked in this workspace (`chainsmith revoke`). Like IoT Hub, the hub does
    /// not refuse them (it checks no CRL); it only warns when one connects.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoked: Vec<RevokedCert>,
}

impl Registry {
    /// A registered CA certificate whose subject is `name` (DER), when none of them signed the
    /// certificate in hand: it was issued by another certificate of that CA (before a re-key).
    pub(crate) fn ca_named(&self, name_der: &[u8]) -> Option<&HubCa> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        self.cas.iter().find(|c| {
            self::pem_to_der(&c.cert_pem).is_some_and(|d| {
                X509Certificate::from_der(&d).is_ok_and(|(_, x)| x.subject().as_raw() == name_der)
            })
        })
    }

    /// The revocation recorded for this certificate (DER), if any.
    pub(crate) fn revoked_cert(&self, der: &[u8]) -> Option<&RevokedCert> {
        if self.revoked.is_empty() {
            return None;
        }
        let (_, sha256) = pki::thumbprints(der);
        self.revoked
            .iter()
            .find(|r| r.sha256.eq_ignore_ascii_case(&sha256))
    }
}

/// Normalise a thumbprint: upper hex, colons and spaces removed, 40 or 64 digits.
pub(crate) fn normalize_thumbprint(t: &str) -> Result<String> {
    let s: String = t
        .chars()
        .filter(|c| *c != ':' && !c.is_whitespace())
        .collect::<String>()
        .to_ascii_uppercase();
    if (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s)
    } else {
        Err(RegistryError::Thumbprint(t.to_string()))
    }
}

/// A fresh 48-hex-digit verification code, like Azure's.
pub(crate) fn new_code() -> String {
    let mut b = [0u8; 24];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    pki::hex_upper(&b)
}

/// Where the hub keeps its files.
#[derive(Clone, Debug)]
pub struct HubStore {
    /// The workspace the hub lives in.
    pub ws: Workspace,
    /// State files set aside since the faces last asked ([`HubStore::take_set_aside`]).
    set_aside: std::sync::Arc<std::sync::Mutex<Vec<super::state_file::SetAside>>>,
}

impl HubStore {
    /// The hub of a workspace.
    pub fn new(ws: Workspace) -> Self {
        HubStore {
            ws,
            set_aside: Default::default(),
        }
    }

    /// The state files found unreadable (and set aside) since the last call, for a face to say.
    pub fn take_set_aside(&self) -> Vec<super::state_file::SetAside> {
        std::mem::take(&mut *self.set_aside.lock().expect("set-aside notes"))
    }

    /// Read a JSON state file, setting it aside if it cannot be read ([`super::state_file`]).
    pub(crate) fn load_state<T: serde::de::DeserializeOwned + Serialize>(
        &self,
        path: &Path,
        salvage: impl FnOnce(&[u8]) -> (T, String),
    ) -> Result<Option<T>> {
        let Some((value, note)) = super::state_file::load(path, salvage)? else {
            return Ok(None);
        };
        if let Some(n) = note {
            self.set_aside.lock().expect("set-aside notes").push(n);
        }
        Ok(Some(value))
    }
    /// The hub of the workspace at `root` (made if need be).
    pub fn open(root: &Path) -> Result<Self> {
        Ok(HubStore::new(Workspace::open_or_create(root)?))
    }
    /// `WS/hub/`.
    pub fn dir(&self) -> PathBuf {
        self.ws.root().join("hub")
    }
    /// `WS/hub/registry.json`.
    pub fn registry_path(&self) -> PathBuf {
        self.dir().join("registry.json")
    }
    /// A device's twin file (the id encoded for the file name).
    pub fn twin_path(&self, id: &str) -> PathBuf {
        // Device ids may hold characters that are awkward in file names: encode.
        self.dir()
            .join("twins")
            .join(format!("{}.json", crate::azure::url_encode(id)))
    }
    /// The control socket of a running `hub serve`.
    pub fn control_path(&self) -> PathBuf {
        self.dir().join("control.sock")
    }

    fn ensure_dirs(&self) -> Result<()> {
        store::make_private_dir_all(&self.dir().join("twins"))?;
        Ok(())
    }

    /// The registry as it is on disk now (empty when none yet; set aside and empty when it
    /// cannot be read).
    pub fn load(&self) -> Result<Registry> {
        Ok(self
            .load_state(&self.registry_path(), |_| {
                (
                    Registry::default(),
                    "an empty registry (no CAs, no devices)".into(),
                )
            })?
            .unwrap_or_default())
    }

    /// Read-modify-write the registry under the workspace lock, atomically.
    pub fn modify<T>(&self, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        self.ensure_dirs()?;
        let _lock = self.ws.lock()?;
        self.modify_locked(f)
    }

    /// [`HubStore::modify`] for a caller that holds the workspace lock already.
    pub(crate) fn modify_locked<T>(&self, f: impl FnOnce(&mut Registry) -> Result<T>) -> Result<T> {
        self.ensure_dirs()?;
        let mut reg = self.load()?;
        let out = f(&mut reg)?;
        let text = serde_json::to_vec_pretty(&reg).expect("serialisable");
        store::write_atomic(&self.registry_path(), &text, 0o600)?;
        Ok(out)
    }
}

/// What a revocation or renewal in the workspace asks of the local hub.
impl crate::ops::lifecycle::LocalCloud for HubStore {
    fn note_revoked(&self, certs: Vec<RevokedCert>) -> std::result::Result<(), CloudError> {
        HubStore::note_revoked(self, certs).map_err(Into::into)
    }

    fn disable_credential(
        &self,
        cn: &str,
        sha1: &str,
        sha256: &str,
    ) -> std::result::Result<Vec<DisabledDevice>, CloudError> {
        HubStore::disable_credential(self, cn, sha1, sha256).map_err(Into::into)
    }

    fn end_session(&self, device_id: &str, why: &str) -> bool {
        matches!(
            super::control::kick_blocking(&self.control_path(), device_id, why),
            Ok(Some(true))
        )
    }

    fn holds_ca(&self, name: &str) -> std::result::Result<bool, CloudError> {
        Ok(self.load()?.cas.iter().any(|c| c.name == name))
    }

    fn upload_ca(&self, name: &str, verified: bool) -> std::result::Result<HubCa, CloudError> {
        Ok(self.add_ca(name, verified)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprints_normalise() {
        let colons = "AB:".repeat(19) + "AB";
        assert_eq!(normalize_thumbprint(&colons).unwrap(), "AB".repeat(20));
        assert_eq!(
            normalize_thumbprint(&"a".repeat(40)).unwrap(),
            "A".repeat(40)
        );
        assert!(normalize_thumbprint(&"a".repeat(64)).is_ok());
        assert!(normalize_thumbprint("abc").is_err());
        assert!(normalize_thumbprint(&"g".repeat(40)).is_err());
    }

    /// rustls refusing the hub's server certificate is its own variant (it was a
    /// `pki::Error::invalid` string), with the message and `--json` kind it always had.
    #[test]
    fn a_refused_server_certificate_keeps_its_message_and_kind() {
        let e = RegistryError::ServerTls(rustls::Error::General("no usable key".into()));
        assert_eq!(
            e.to_string(),
            "TLS server certificate: unexpected error: no usable key"
        );
        assert_eq!(e.kind(), "invalid");
        assert!(std::error::Error::source(&e).is_some());
    }

    #[test]
    fn codes_are_48_hex() {
        let c = new_code();
        assert_eq!(c.len(), 48);
        assert!(pki::identity::check_verification_code(&c).is_ok());
    }

    #[test]
    fn merge_deletes_nulls_and_keeps_version() {
        let mut d = serde_json::json!({"$version": 3, "a": 1, "b": {"c": 2, "d": 3}});
        merge(
            &mut d,
            &serde_json::json!({"a": null, "b": {"c": 5}, "e": true}),
        );
        assert_eq!(
            d,
            serde_json::json!({"$version": 3, "b": {"c": 5, "d": 3}, "e": true})
        );
    }
}
