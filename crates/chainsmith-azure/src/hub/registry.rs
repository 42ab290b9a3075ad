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
use thiserror::Error;
use time::OffsetDateTime;

use crate::error::{Classified, Remedy};
use crate::pki::{self, Target};
use crate::store::{self, Kind, Workspace};

/// What went wrong with the hub's (or DPS's) registry. Each message says the problem and its
/// fix in domain words; [`RegistryError::remedy`] gives the fix as a value for a face's hint.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The workspace could not be read or written.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The named entity is not a CA.
    #[error(
        "\"{0}\" is not a CA in the workspace; the hub takes a root or intermediate CA of the workspace"
    )]
    NotACa(String),
    /// This certificate of the CA is registered already.
    #[error(
        "this certificate of CA \"{0}\" is already registered with the hub; remove it from the hub first (a renewed certificate of the CA is added beside it)"
    )]
    CaTaken(String),
    /// The CA is not registered.
    #[error("CA \"{0}\" is not registered with the hub; register it with the hub first")]
    UnknownCa(String),
    /// The device is registered already.
    #[error("device \"{0}\" is already registered; remove it from the hub first")]
    DeviceTaken(String),
    /// The device is not registered.
    #[error(
        "device \"{0}\" is not registered with the hub; register it first, by CA or as self-signed"
    )]
    UnknownDevice(String),
    /// A thumbprint that is neither SHA-1 nor SHA-256 hex.
    #[error(
        "thumbprint {0:?} is neither SHA-1 (40 hex digits) nor SHA-256 (64 hex digits); copy it from the device certificate's details"
    )]
    Thumbprint(String),
    /// A self-signed device with no thumbprint.
    #[error(
        "self-signed device \"{0}\" needs a thumbprint: give its primary thumbprint, or a workspace device to take it from"
    )]
    NoThumbprint(String),
    /// The workspace entity to take thumbprints from is not a device.
    #[error(
        "\"{0}\" is a {1}, not a device certificate; take the thumbprints from a device of the workspace"
    )]
    FromNotDevice(String, &'static str),
    /// Thumbprints given for a device authenticated by CA.
    #[error(
        "device \"{0}\" authenticates by CA, which takes no thumbprints (the hub checks its chain up to a verified CA instead); give no thumbprints, or register it as self-signed"
    )]
    ThumbprintWithCa(String),
    /// An update that changes nothing.
    #[error(
        "nothing to update for device \"{0}\"; give a primary or secondary thumbprint, or a workspace device to take them from"
    )]
    NothingToUpdate(String),
    /// A certificate or name the PKI refused.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// A registry file that does not parse.
    #[error("{path}: {what}; fix or remove the file")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        what: String,
    },
    /// Proof of possession refused, with the reason and its fix.
    #[error("proof of possession refused for CA \"{ca}\": {reason}")]
    Proof {
        /// The CA being proved.
        ca: String,
        /// Why, and what would fix it.
        reason: String,
    },
    /// A twin patch deeper or larger than IoT Hub allows (refused before it is stored).
    #[error("twin of device \"{device}\": {limit}")]
    TwinLimit {
        /// The device.
        device: String,
        /// Which limit, with the figures.
        limit: super::state_file::DocumentError,
    },
    /// A twin patch with a key IoT Hub does not take.
    #[error(
        "twin of device \"{device}\": key {key:?} is not allowed; IoT Hub takes keys of at most 1 KB without control characters, '.', '$' or spaces"
    )]
    TwinKey {
        /// The device.
        device: String,
        /// The key (cut to 64 characters).
        key: String,
    },
    /// A twin patch that is not a JSON object.
    #[error("twin patch {0:?} is not a JSON object; give one, e.g. '{{\"interval\": 5}}'")]
    Patch(String),
    /// This certificate of the CA is in DPS's list already.
    #[error("this certificate of CA \"{0}\" is already in DPS's certificate list")]
    DpsCaTaken(String),
    /// The CA is not in DPS's list.
    #[error(
        "CA \"{0}\" is not in DPS's certificate list (DPS keeps its own, apart from the hub's)"
    )]
    DpsUnknownCa(String),
    /// The CA is an enrollment group's certificate.
    #[error(
        "CA \"{0}\" is the certificate of enrollment group \"{1}\"; remove or change the group first"
    )]
    DpsCaInUse(String, String),
    /// No enrollment of that name.
    #[error("no enrollment group or individual enrollment is named \"{0}\"")]
    DpsUnknownEnrollment(String),
    /// No registration of that id.
    #[error("DPS has no registration \"{0}\"")]
    DpsUnknownRegistration(String),
    /// An enrollment group name DPS does not allow.
    #[error("enrollment group name {0:?} is not 1-128 letters, digits, '-', '.' or '_'")]
    DpsGroupName(String),
}

impl RegistryError {
    /// A short machine-friendly name for `--json` errors (`{"error": {"kind": …}}`).
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Store(s) => s.kind(),
            RegistryError::NotACa(_) => "not-a-ca",
            RegistryError::CaTaken(_) | RegistryError::DeviceTaken(_) => "already-registered",
            RegistryError::UnknownCa(_) | RegistryError::UnknownDevice(_) => "not-registered",
            RegistryError::Thumbprint(_) => "bad-thumbprint",
            RegistryError::NoThumbprint(_) => "no-thumbprint",
            RegistryError::FromNotDevice(..) => "not-a-device",
            RegistryError::ThumbprintWithCa(_) => "thumbprint-with-ca",
            RegistryError::NothingToUpdate(_) => "nothing-to-update",
            RegistryError::Pki(_) => "invalid",
            RegistryError::Damaged { .. } => "damaged",
            RegistryError::Proof { .. } => "proof-refused",
            RegistryError::Patch(_) => "bad-patch",
            RegistryError::TwinLimit { .. } => "twin-limit",
            RegistryError::TwinKey { .. } => "twin-key",
            RegistryError::DpsCaTaken(_) => "already-registered",
            RegistryError::DpsUnknownCa(_)
            | RegistryError::DpsUnknownEnrollment(_)
            | RegistryError::DpsUnknownRegistration(_) => "not-registered",
            RegistryError::DpsCaInUse(..) => "in-use",
            RegistryError::DpsGroupName(_) => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            RegistryError::Store(s) => s.remedy(),
            RegistryError::Pki(p) => p.remedy(),
            RegistryError::NotACa(_) => Some(Remedy::PickCa),
            RegistryError::CaTaken(_) => Some(Remedy::UnregisterCa),
            RegistryError::DeviceTaken(_) => Some(Remedy::UnregisterDevice),
            RegistryError::UnknownCa(_) => Some(Remedy::RegisterCa),
            RegistryError::UnknownDevice(_) => Some(Remedy::RegisterDevice),
            RegistryError::Thumbprint(_) => Some(Remedy::CopyThumbprint),
            RegistryError::NoThumbprint(_) | RegistryError::NothingToUpdate(_) => {
                Some(Remedy::Thumbprints)
            }
            RegistryError::FromNotDevice(..) => Some(Remedy::PickDevice),
            RegistryError::ThumbprintWithCa(_) => Some(Remedy::NoThumbprints),
            RegistryError::Proof { .. } => Some(Remedy::VerificationCertificate),
            RegistryError::Damaged { .. }
            | RegistryError::Patch(_)
            | RegistryError::TwinLimit { .. }
            | RegistryError::TwinKey { .. }
            | RegistryError::DpsCaTaken(_)
            | RegistryError::DpsUnknownCa(_)
            | RegistryError::DpsCaInUse(..)
            | RegistryError::DpsUnknownEnrollment(_)
            | RegistryError::DpsUnknownRegistration(_)
            | RegistryError::DpsGroupName(_) => None,
        }
    }
}

impl Classified for RegistryError {
    fn kind(&self) -> &'static str {
        RegistryError::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        RegistryError::remedy(self)
    }
}

/// The registry's result.
pub type Result<T> = std::result::Result<T, RegistryError>;

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
    pub fn ca_named(&self, name_der: &[u8]) -> Option<&HubCa> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        self.cas.iter().find(|c| {
            self::pem_to_der(&c.cert_pem).is_some_and(|d| {
                X509Certificate::from_der(&d).is_ok_and(|(_, x)| x.subject().as_raw() == name_der)
            })
        })
    }

    /// The revocation recorded for this certificate (DER), if any.
    pub fn revoked_cert(&self, der: &[u8]) -> Option<&RevokedCert> {
        if self.revoked.is_empty() {
            return None;
        }
        let (_, sha256) = pki::thumbprints(der);
        self.revoked
            .iter()
            .find(|r| r.sha256.eq_ignore_ascii_case(&sha256))
    }
}

/// A device twin: desired and reported properties, each with its `$version`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Twin {
    /// What the back end wants.
    pub desired: serde_json::Value,
    /// What the device reported.
    pub reported: serde_json::Value,
}

impl Default for Twin {
    fn default() -> Self {
        Twin {
            desired: serde_json::json!({ "$version": 1 }),
            reported: serde_json::json!({ "$version": 1 }),
        }
    }
}

impl Twin {
    /// The desired properties' `$version`.
    pub fn desired_version(&self) -> u64 {
        self.desired["$version"].as_u64().unwrap_or(1)
    }
    /// The reported properties' `$version`.
    pub fn reported_version(&self) -> u64 {
        self.reported["$version"].as_u64().unwrap_or(1)
    }
    /// The document a device gets for `$iothub/twin/GET`.
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({ "desired": self.desired, "reported": self.reported })
    }
}

/// Merge a JSON patch (null deletes) into `doc`, as twin PATCHes do.
pub fn merge(doc: &mut serde_json::Value, patch: &serde_json::Value) {
    match (doc.as_object_mut(), patch.as_object()) {
        (Some(d), Some(p)) => {
            for (k, v) in p {
                if k.starts_with('$') {
                    continue;
                }
                if v.is_null() {
                    d.remove(k);
                } else if v.is_object() && d.get(k).is_some_and(|x| x.is_object()) {
                    merge(d.get_mut(k).expect("present"), v);
                } else {
                    d.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *doc = patch.clone(),
    }
}

/// IoT Hub's twin limits at the door ([`crate::azure::MAX_TWIN_DEPTH`],
/// [`crate::azure::MAX_TWIN_PROPERTIES_BYTES`]): what is stored can always be read back.
fn check_twin_patch(device: &str, what: &'static str, patch: &serde_json::Value) -> Result<()> {
    // Keys as IoT Hub takes them; `$version` at the top is the twin's own and never merged.
    let mut stack = vec![(patch, true)];
    while let Some((v, top)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    // A null deletes: a key stored before these rules can still be cleaned.
                    let own_version = top && k == "$version";
                    if !own_version && !child.is_null() && !crate::azure::twin_key_allowed(k) {
                        return Err(RegistryError::TwinKey {
                            device: device.to_string(),
                            key: k.chars().take(64).collect(),
                        });
                    }
                    stack.push((child, false));
                }
            }
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|c| (c, false))),
            _ => {}
        }
    }
    super::state_file::check_document(
        what,
        patch,
        crate::azure::MAX_TWIN_DEPTH,
        crate::azure::MAX_TWIN_PROPERTIES_BYTES,
    )
    .map_err(|limit| RegistryError::TwinLimit {
        device: device.to_string(),
        limit,
    })
}

/// Normalise a thumbprint: upper hex, colons and spaces removed, 40 or 64 digits.
pub fn normalize_thumbprint(t: &str) -> Result<String> {
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
pub fn new_code() -> String {
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

    /// A device's twin (a fresh one if it has none yet, or if its file cannot be read).
    pub fn load_twin(&self, id: &str) -> Result<Twin> {
        Ok(self
            .load_state(&self.twin_path(id), |_| {
                (Twin::default(), "an empty twin for this device".into())
            })?
            .unwrap_or_default())
    }

    /// Change a twin under the workspace lock and write it back.
    pub fn modify_twin<T>(&self, id: &str, f: impl FnOnce(&mut Twin) -> T) -> Result<T> {
        self.ensure_dirs()?;
        let _lock = self.ws.lock()?;
        let mut twin = self.load_twin(id)?;
        let out = f(&mut twin);
        let text = serde_json::to_vec_pretty(&twin).expect("serialisable");
        store::write_atomic(&self.twin_path(id), &text, 0o600)?;
        Ok(out)
    }

    /// Apply a desired-properties patch; returns (new version, the patch as pushed to devices).
    pub fn patch_desired(
        &self,
        id: &str,
        patch: &serde_json::Value,
    ) -> Result<(u64, serde_json::Value)> {
        if !patch.is_object() {
            return Err(RegistryError::Patch(patch.to_string()));
        }
        check_twin_patch(id, "the desired-properties patch", patch)?;
        self.device(id)?;
        self.modify_twin(id, |t| {
            merge(&mut t.desired, patch);
            let v = t.desired_version() + 1;
            t.desired["$version"] = v.into();
            let mut pushed = patch.clone();
            pushed["$version"] = v.into();
            (v, pushed)
        })
    }

    /// Apply a reported-properties patch from a device; returns the new version.
    pub fn patch_reported(&self, id: &str, patch: &serde_json::Value) -> Result<u64> {
        if !patch.is_object() {
            return Err(RegistryError::Patch(patch.to_string()));
        }
        check_twin_patch(id, "the reported-properties patch", patch)?;
        self.modify_twin(id, |t| {
            let mut reported = t.reported.clone();
            merge(&mut reported, patch);
            // Depth and size of the whole; keys only in the patch, so a twin stored before the key
            // rules can still be patched and cleaned (a null deletes a key).
            super::state_file::check_document(
                "the reported properties after this patch",
                &reported,
                crate::azure::MAX_TWIN_DEPTH,
                crate::azure::MAX_TWIN_PROPERTIES_BYTES,
            )
            .map_err(|limit| RegistryError::TwinLimit {
                device: id.to_string(),
                limit,
            })?;
            t.reported = reported;
            let v = t.reported_version() + 1;
            t.reported["$version"] = v.into();
            Ok(v)
        })?
    }

    /// A registered device.
    pub fn device(&self, id: &str) -> Result<HubDevice> {
        self.load()?
            .devices
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| RegistryError::UnknownDevice(id.to_string()))
    }

    // ------------------------------------------------------------ CAs

    /// Upload a workspace CA. Returns the registered entry (with its verification code).
    pub fn add_ca(&self, name: &str, verified: bool) -> Result<HubCa> {
        let ca = self.ca_entry(name, verified)?;
        self.modify(|r| {
            if r.cas
                .iter()
                .any(|c| c.name == name && c.cert_pem == ca.cert_pem)
            {
                return Err(RegistryError::CaTaken(name.to_string()));
            }
            r.cas.push(ca.clone());
            Ok(ca)
        })
    }

    /// Proof of possession: `cert_bytes` must be a certificate with CN = the current code,
    /// signed by the CA's key.
    pub fn verify_ca(&self, name: &str, cert_bytes: &[u8]) -> Result<HubCa> {
        let reg = self.load()?;
        if !reg.cas.iter().any(|c| c.name == name) {
            return Err(RegistryError::UnknownCa(name.to_string()));
        }
        let ca = self.check_proof(name, &reg.cas, cert_bytes)?;
        self.modify(|r| {
            let c = r
                .cas
                .iter_mut()
                .find(|c| c.name == name && c.cert_pem == ca.cert_pem)
                .ok_or_else(|| RegistryError::UnknownCa(name.to_string()))?;
            c.verified = true;
            Ok(c.clone())
        })
    }

    /// A registry entry for workspace CA `name` with a fresh verification code: what the hub
    /// and DPS certificate lists both hold.
    pub(crate) fn ca_entry(&self, name: &str, verified: bool) -> Result<HubCa> {
        let entity = self.ws.load(name)?;
        if !entity.meta.kind.is_ca() {
            return Err(RegistryError::NotACa(name.to_string()));
        }
        Ok(HubCa {
            name: name.to_string(),
            cn: entity.meta.cn.clone(),
            cert_pem: entity.cert_pem.clone(),
            verified,
            code: new_code(),
            added: self.ws.now(),
        })
    }

    /// Proof of possession against a certificate list (the hub's or DPS's): `cert_bytes` must
    /// be a certificate with CN = the current code of one of `name`'s entries in `cas`, signed
    /// by that CA's key. Returns the entry it proves (the caller marks it verified).
    pub(crate) fn check_proof(
        &self,
        name: &str,
        cas: &[HubCa],
        cert_bytes: &[u8],
    ) -> Result<HubCa> {
        let mine: Vec<&HubCa> = cas.iter().filter(|c| c.name == name).collect();
        let refuse = |reason: String| RegistryError::Proof {
            ca: name.to_string(),
            reason,
        };
        let text = String::from_utf8_lossy(cert_bytes);
        if text.contains("PRIVATE KEY") {
            return Err(refuse(
                "the file contains a private key; upload only the verification certificate (never a key)".into(),
            ));
        }
        let der = if text.contains("-----BEGIN") {
            pem::parse_many(cert_bytes)
                .ok()
                .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
                .map(|b| b.into_contents())
        } else {
            Some(cert_bytes.to_vec())
        };
        let view = der.as_deref().and_then(|d| {
            pki::inspect::CertView::from_der(d)
                .ok()
                .map(|v| (d.to_vec(), v))
        });
        let Some((der, view)) = view else {
            return Err(refuse(
                "the file is not a certificate (PEM or DER); give the verification certificate made with the CA's current code".into(),
            ));
        };
        let cn = view.cn.clone().unwrap_or_default();
        // With several certificates of one CA, the code says which one is being proved.
        let Some(ca) = mine.iter().find(|c| c.code == cn).map(|c| (*c).clone()) else {
            let codes: Vec<&str> = mine
                .iter()
                .filter(|c| !c.verified)
                .map(|c| c.code.as_str())
                .collect();
            return Err(refuse(match codes.as_slice() {
                [] => format!(
                    "wrong code: the certificate's CN is \"{cn}\", and every certificate of \"{name}\" is verified already"
                ),
                [one] => format!(
                    "wrong code: the certificate's CN is \"{cn}\" but the current verification code is {one}; make a new verification certificate with that code"
                ),
                many => format!(
                    "wrong code: the certificate's CN is \"{cn}\" but the codes of \"{name}\"'s unverified certificates are {}; make a new verification certificate with one of them",
                    many.join(", ")
                ),
            }));
        };
        let ca_der = pem_to_der(&ca.cert_pem).unwrap_or_default();
        if !pki::inspect::signed_by(&der, &ca_der) {
            let other = self.ws.list().ok().and_then(|(metas, _)| {
                metas.into_iter().filter(|m| m.kind.is_ca()).find(|m| {
                    self.ws
                        .load(&m.name)
                        .is_ok_and(|e| pki::inspect::signed_by(&der, &e.cert_der))
                })
            });
            return Err(refuse(match other {
                Some(m) => format!(
                    "the certificate is signed by \"{}\", another CA, not by \"{name}\"; sign it with \"{name}\"'s key",
                    m.name
                ),
                None => format!(
                    "the certificate is not signed by \"{name}\"'s key (nor by any CA in the workspace); sign it with \"{name}\"'s key"
                ),
            }));
        }
        Ok(ca)
    }

    /// Remove every certificate of a CA from the hub.
    pub fn remove_ca(&self, name: &str) -> Result<()> {
        self.modify(|r| {
            let before = r.cas.len();
            r.cas.retain(|c| c.name != name);
            if r.cas.len() == before {
                return Err(RegistryError::UnknownCa(name.to_string()));
            }
            Ok(())
        })
    }

    // ------------------------------------------------------------ devices

    /// The SHA-256 thumbprints of a workspace device's slots, (primary, secondary). A
    /// self-signed device may hold both (`new device ID --self-signed --slot secondary`), or
    /// only the one it was made as; any other device has one certificate: the primary.
    pub fn workspace_thumbprints(&self, name: &str) -> Result<(Option<String>, Option<String>)> {
        let e = self.ws.load(name)?;
        if e.meta.kind != Kind::Device {
            return Err(RegistryError::FromNotDevice(
                name.to_string(),
                e.meta.kind.as_str(),
            ));
        }
        let slots = store::slots(&self.ws, name)?;
        if slots.is_empty() {
            return Ok((Some(e.meta.sha256.clone()), None));
        }
        let of = |want: store::Slot| {
            slots
                .iter()
                .find(|s| s.slot == want)
                .map(|s| s.sha256.clone())
        };
        Ok((of(store::Slot::Primary), of(store::Slot::Secondary)))
    }

    /// Register a device. `from` takes the thumbprints of a workspace device: both slots of a
    /// self-signed device that holds two, else its certificate's SHA-256 as primary; explicit
    /// `primary`/`secondary` win over `from`. `ca` devices take no thumbprints.
    pub fn add_device(
        &self,
        id: &str,
        auth: Auth,
        primary: Option<&str>,
        secondary: Option<&str>,
        from: Option<&str>,
    ) -> Result<(HubDevice, Vec<String>)> {
        let warnings = pki::identity::check_device_id(id, Target::Hub)?;
        if auth == Auth::Ca && (primary.is_some() || secondary.is_some() || from.is_some()) {
            return Err(RegistryError::ThumbprintWithCa(id.to_string()));
        }
        let (primary, secondary) = self.slots_from(primary, secondary, from)?;
        if auth == Auth::SelfSigned && primary.is_none() && secondary.is_none() {
            return Err(RegistryError::NoThumbprint(id.to_string()));
        }
        let dev = HubDevice::new(id, auth, primary, secondary, self.ws.now());
        self.modify(|r| {
            if r.devices.iter().any(|d| d.id == id) {
                return Err(RegistryError::DeviceTaken(id.to_string()));
            }
            r.devices.push(dev.clone());
            Ok(())
        })?;
        Ok((dev, warnings))
    }

    /// The slots `--primary`, `--secondary` and `--from` name: `None` for a slot none names.
    fn slots_from(
        &self,
        primary: Option<&str>,
        secondary: Option<&str>,
        from: Option<&str>,
    ) -> Result<(Option<String>, Option<String>)> {
        let primary = primary.map(normalize_thumbprint).transpose()?;
        let secondary = secondary.map(normalize_thumbprint).transpose()?;
        match from {
            Some(name) => {
                let (p, s) = self.workspace_thumbprints(name)?;
                Ok((primary.or(p), secondary.or(s)))
            }
            None => Ok((primary, secondary)),
        }
    }

    /// Change a self-signed device's thumbprints, one slot at a time (roll the secondary,
    /// switch, roll the primary). `from` mirrors a workspace device's slots (a slot it does not
    /// hold is cleared); explicit `primary`/`secondary` replace just that slot.
    pub fn update_device(
        &self,
        id: &str,
        primary: Option<&str>,
        secondary: Option<&str>,
        from: Option<&str>,
    ) -> Result<HubDevice> {
        if primary.is_none() && secondary.is_none() && from.is_none() {
            return Err(RegistryError::NothingToUpdate(id.to_string()));
        }
        if self.device(id)?.auth == Auth::Ca {
            return Err(RegistryError::ThumbprintWithCa(id.to_string()));
        }
        let (p, s) = self.slots_from(primary, secondary, from)?;
        self.modify(|r| {
            let d = r
                .devices
                .iter_mut()
                .find(|d| d.id == id)
                .ok_or_else(|| RegistryError::UnknownDevice(id.to_string()))?;
            if from.is_some() {
                d.primary = p;
                d.secondary = s;
            } else {
                d.primary = p.or(d.primary.take());
                d.secondary = s.or(d.secondary.take());
            }
            Ok(d.clone())
        })
    }

    /// Turn a device on or off.
    pub fn set_enabled(&self, id: &str, enabled: bool) -> Result<HubDevice> {
        let mut changed = self.set_enabled_all(&[id.to_string()], enabled)?;
        Ok(changed.remove(0))
    }

    /// Turn devices on or off, all or none: an unknown id changes nothing. A device turned off
    /// is disconnected from a running hub at once ([`HubStore::disconnect`]).
    pub fn set_enabled_all(&self, ids: &[String], enabled: bool) -> Result<Vec<HubDevice>> {
        let changed = self.set_enabled_in_registry(ids, enabled)?;
        if !enabled {
            self.disconnect(ids, "device disabled by the operator");
        }
        Ok(changed)
    }

    /// Close the live sessions of `ids` on the hub running for this workspace, if one is: IoT
    /// Hub disconnects a device that is disabled or deleted, and an open session outliving the
    /// operator's decision kept sending (hostile pass: PUBACKs after `hub device disable`).
    fn disconnect(&self, ids: &[String], why: &str) {
        let path = self.control_path();
        if !path.exists() {
            return;
        }
        for id in ids {
            // No hub running (the socket is stale) is fine: the registry on disk refuses the
            // next CONNECT already.
            if super::control::kick_blocking(&path, id, why).is_err() {
                return;
            }
        }
    }

    fn set_enabled_in_registry(&self, ids: &[String], enabled: bool) -> Result<Vec<HubDevice>> {
        self.modify(|r| {
            if let Some(id) = ids
                .iter()
                .find(|id| !r.devices.iter().any(|d| &d.id == *id))
            {
                return Err(RegistryError::UnknownDevice(id.clone()));
            }
            let wanted: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            Ok(r.devices
                .iter_mut()
                .filter(|d| wanted.contains(d.id.as_str()))
                .map(|d| {
                    d.enabled = enabled;
                    d.clone()
                })
                .collect())
        })
    }

    /// Register several devices at once, all or none, in one write of the registry: each
    /// `Auth::Ca` device by its id, each `Auth::SelfSigned` one with the thumbprints of the
    /// workspace device of the same name. A device already registered is an error, unless
    /// `keep_registered` (fleet's `--register`), which leaves it exactly as it is (a disabled
    /// device stays disabled: the operator disabled it). Returns the devices added.
    pub fn add_devices(
        &self,
        devices: &[(String, Auth)],
        keep_registered: bool,
    ) -> Result<(Vec<HubDevice>, Vec<String>)> {
        let mut warnings = Vec::new();
        let mut new = Vec::with_capacity(devices.len());
        let registered: std::collections::HashSet<String> = match keep_registered {
            true => self.load()?.devices.into_iter().map(|d| d.id).collect(),
            false => Default::default(),
        };
        for (id, auth) in devices.iter().filter(|(id, _)| !registered.contains(id)) {
            warnings.extend(pki::identity::check_device_id(id, Target::Hub)?);
            let (primary, secondary) = match auth {
                Auth::Ca => (None, None),
                Auth::SelfSigned => self.slots_from(None, None, Some(id))?,
            };
            new.push(HubDevice::new(id, *auth, primary, secondary, self.ws.now()));
        }
        self.modify(|r| {
            let known: std::collections::HashSet<&str> =
                r.devices.iter().map(|d| d.id.as_str()).collect();
            let mut seen = std::collections::HashSet::new();
            let mut fresh = Vec::with_capacity(new.len());
            for d in &new {
                match (known.contains(d.id.as_str()), keep_registered) {
                    (true, true) => continue,
                    (true, false) => return Err(RegistryError::DeviceTaken(d.id.clone())),
                    _ if !seen.insert(d.id.as_str()) => continue,
                    _ => fresh.push(d.clone()),
                }
            }
            r.devices.extend(fresh.iter().cloned());
            Ok(fresh)
        })
        .map(|added| (added, warnings))
    }

    /// Remove devices and their twins, all or none: an unknown id removes nothing.
    pub fn remove_devices(&self, ids: &[String]) -> Result<()> {
        self.modify(|r| {
            if let Some(id) = ids
                .iter()
                .find(|id| !r.devices.iter().any(|d| &d.id == *id))
            {
                return Err(RegistryError::UnknownDevice(id.clone()));
            }
            let gone: std::collections::HashSet<&str> = ids.iter().map(String::as_str).collect();
            r.devices.retain(|d| !gone.contains(d.id.as_str()));
            Ok(())
        })?;
        self.disconnect(ids, "device removed from the hub by the operator");
        for id in ids {
            let _ = std::fs::remove_file(self.twin_path(id));
        }
        Ok(())
    }

    /// Disable every device whose credential is this certificate: a CA-authenticated device
    /// whose id is the certificate's CN (any certificate with that CN under a verified CA
    /// opens it), a self-signed device holding its SHA-1 or SHA-256 in a slot.
    pub fn disable_credential(
        &self,
        cn: &str,
        sha1: &str,
        sha256: &str,
    ) -> Result<Vec<DisabledDevice>> {
        self.modify(|r| {
            let mut out = Vec::new();
            for d in r.devices.iter_mut() {
                let slot = |t: &Option<String>| {
                    t.as_deref().is_some_and(|t| {
                        t.eq_ignore_ascii_case(sha1) || t.eq_ignore_ascii_case(sha256)
                    })
                };
                let matched = match d.auth {
                    Auth::Ca if d.id == cn => "CN",
                    Auth::SelfSigned if slot(&d.primary) => "primary thumbprint",
                    Auth::SelfSigned if slot(&d.secondary) => "secondary thumbprint",
                    _ => continue,
                };
                out.push(DisabledDevice {
                    id: d.id.clone(),
                    auth: d.auth,
                    matched: matched.to_string(),
                    was_enabled: d.enabled,
                });
                d.enabled = false;
            }
            Ok(out)
        })
    }

    /// Remember revoked certificates so a running hub can warn when one connects.
    pub fn note_revoked(&self, certs: Vec<RevokedCert>) -> Result<()> {
        self.modify(|r| {
            for c in certs {
                if !r.revoked.iter().any(|x| x.sha256 == c.sha256) {
                    r.revoked.push(c);
                }
            }
            Ok(())
        })
    }

    /// Remove a device and its twin.
    pub fn remove_device(&self, id: &str) -> Result<()> {
        self.remove_devices(&[id.to_string()])
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
