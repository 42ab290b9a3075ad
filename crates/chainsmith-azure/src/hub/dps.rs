//! The local Device Provisioning Service's state and decisions, kept beside the hub registry
//! in `WS/hub/dps.json`: the ID scope, DPS's own certificate list (a CA verified on the hub is
//! not thereby verified here, as in Azure), enrollment groups, individual enrollments and
//! registrations.
//!
//! [`HubStore::dps_register`] is the whole decision for one register request: which enrollment
//! the device's certificate matches (an individual enrollment for its registration id wins over
//! any group, as in DPS), the refusal in DPS's words when none does, and on success the device
//! created or updated in the hub registry so it connects to the assigned hub at once. Chains
//! are checked by the hub's OpenSSL-based verifier ([`super::auth::HubTrust`]).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::auth::{self, HubTrust, Refusal};
use super::registry::{
    Auth, HubCa, HubDevice, HubStore, Registry, RegistryError, Result, normalize_thumbprint,
    pem_to_der,
};
use crate::azure::dps::{self as wire, code};
use crate::pki::{self, Target};
use crate::store::{self, Workspace};
use std::sync::Arc;

/// An enrollment group: devices whose chain ends at one of its CAs (primary or secondary, as
/// IoT Central's device connection groups hold two) and whose CN is their registration id.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Names of CAs in DPS's certificate list.
    pub primary: String,
    /// A second CA of DPS's certificate list, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// IoT Edge devices.
    #[serde(default)]
    pub edge: bool,
    /// Devices of a disabled group are refused.
    pub enabled: bool,
    /// A workspace CA that signs the CSRs of this group's devices (certificate management).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_from: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub added: OffsetDateTime,
}

/// An individual enrollment: one registration id and the thumbprints of its certificates.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Individual {
    /// The registration id.
    pub registration_id: String,
    /// The hub device id when it differs from the registration id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// The primary thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<String>,
    /// The secondary thumbprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary: Option<String>,
    /// The workspace device the thumbprints were taken from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// An IoT Edge device.
    #[serde(default)]
    pub edge: bool,
    /// A disabled enrollment is refused.
    pub enabled: bool,
    /// A workspace CA that signs this device's CSR.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_from: Option<String>,
    /// When it was made.
    #[serde(with = "time::serde::rfc3339")]
    pub added: OffsetDateTime,
}

impl Individual {
    /// The hub device id it is assigned as.
    pub fn device_id(&self) -> &str {
        self.device_id.as_deref().unwrap_or(&self.registration_id)
    }
}

/// A device DPS assigned, as `hub dps registrations` lists it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Registration {
    /// The registration id.
    pub registration_id: String,
    /// The hub device id.
    pub device_id: String,
    /// The hub it was assigned to.
    pub assigned_hub: String,
    /// `assigned`, as DPS says it.
    pub status: String,
    /// `initialAssignment` or `reprovisionedToInitialAssignment`.
    pub substatus: String,
    /// When it was first assigned.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When it last registered.
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
    /// Changes with every registration.
    pub etag: String,
    /// The payload the device sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// `group NAME` or `individual REGID`.
    pub enrollment: String,
    /// What the device should know beyond the assignment: why it will still be refused by the
    /// hub (a device the operator disabled stays disabled: DPS does not undo the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Largest device payload a register request may carry, compact JSON. DPS documents no limit
/// that we found; chosen as a twin's reported-properties limit
/// ([`crate::azure::MAX_TWIN_PROPERTIES_BYTES`], 32 KB), since a payload often seeds a twin.
/// Depth as a twin's ([`crate::azure::MAX_TWIN_DEPTH`]), so a stored registration can always be
/// read back (serde_json stops at 128 levels).
pub const MAX_PAYLOAD_BYTES: usize = crate::azure::MAX_TWIN_PROPERTIES_BYTES;

/// Everything the local DPS keeps: `WS/hub/dps.json` (ID scope, certificates, enrollments:
/// written only by the operator's commands) and one compact file per registration under
/// `WS/hub/dps-registrations/` (written by devices, so a registration never rewrites the
/// enrollments, and one damaged record costs one device).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct DpsState {
    /// Made once (`0ne` + 8 hex) and kept.
    #[serde(default)]
    pub id_scope: String,
    /// DPS's certificate list, apart from the hub's.
    #[serde(default)]
    pub cas: Vec<HubCa>,
    /// Enrollment groups.
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Individual enrollments.
    #[serde(default)]
    pub individuals: Vec<Individual>,
    /// Devices assigned: read from their own files by [`HubStore::dps_load`]; in `dps.json`
    /// only as written by earlier versions (moved to their files on the next change).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registrations: Vec<Registration>,
}

impl DpsState {
    /// The individual enrollment of a registration id (case-insensitive, as DPS compares).
    pub fn individual(&self, registration_id: &str) -> Option<&Individual> {
        self.individuals
            .iter()
            .find(|i| i.registration_id.eq_ignore_ascii_case(registration_id))
    }
    /// The registration of a registration id (case-insensitive).
    pub fn registration(&self, registration_id: &str) -> Option<&Registration> {
        self.registrations
            .iter()
            .find(|r| r.registration_id.eq_ignore_ascii_case(registration_id))
    }
    /// DPS's certificate list in the shape the hub's chain check takes.
    fn as_registry(&self, only: Option<&[&str]>) -> Registry {
        Registry {
            cas: self
                .cas
                .iter()
                .filter(|c| only.is_none_or(|o| o.contains(&c.name.as_str())))
                .cloned()
                .collect(),
            ..Default::default()
        }
    }
}

/// Why DPS refused a registration: the status of the response topic, DPS's error code, a
/// short kind and the exact reason (the error body's `message` and the hub log's line).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{reason}")]
pub struct DpsRefusal {
    /// The status code of the response.
    pub status: u16,
    /// DPS's error code.
    pub error_code: u32,
    /// A short kind, for logs, `--json` and tests: [`DpsRefusalKind::as_str`]. (A string, not
    /// the enum, while the DPS server's event that carries it takes a `String`.)
    pub kind: String,
    /// The reason, as the device gets it.
    pub reason: String,
}

/// Why DPS refused a registration, as a value; [`DpsRefusalKind::as_str`] is the short kind
/// logs, `--json` and the hub's refusal list show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpsRefusalKind {
    /// DPS could not read or write its own state (`registry`).
    Registry,
    /// The registration id breaks DPS's rules for ids (`bad-registration-id`).
    BadRegistrationId,
    /// The register body names another registration than the connection (`registration-id-mismatch`).
    RegistrationIdMismatch,
    /// The register payload is deeper or larger than DPS takes (`payload-limit`).
    PayloadLimit,
    /// DPS holds the registration under another spelling (`registration-id-case`).
    RegistrationIdCase,
    /// A CSR sent for an enrollment with no issuing CA (`csr-not-enabled`).
    CsrNotEnabled,
    /// A CSR that is empty or not base64 DER (`bad-csr`).
    BadCsr,
    /// The certificate's CN is not the registration id (`cn-mismatch`).
    CnMismatch,
    /// The certificate's CN is the registration id in another case (`cn-case`).
    CnCase,
    /// A CA certificate presented as a device's (`ca-as-device`).
    CaAsDevice,
    /// The enrollment (group or individual) is disabled (`enrollment-disabled`).
    EnrollmentDisabled,
    /// The certificate is neither of an individual enrollment's (`thumbprint`).
    Thumbprint,
    /// The chain ends at a verified CA that no enrollment uses (`no-enrollment`).
    NoEnrollment,
    /// The hub's certificate check refused it; the kind is [`Refusal::kind`]'s.
    Certificate(&'static str),
    /// DPS would not sign the device's CSR; the kind is [`CsrRefusal::kind`].
    Csr(&'static str),
}

impl DpsRefusalKind {
    /// The short kind: the strings DPS's logs and `--json` have always used.
    pub fn as_str(self) -> &'static str {
        match self {
            DpsRefusalKind::Registry => "registry",
            DpsRefusalKind::BadRegistrationId => "bad-registration-id",
            DpsRefusalKind::RegistrationIdMismatch => "registration-id-mismatch",
            DpsRefusalKind::PayloadLimit => "payload-limit",
            DpsRefusalKind::RegistrationIdCase => "registration-id-case",
            DpsRefusalKind::CsrNotEnabled => "csr-not-enabled",
            DpsRefusalKind::BadCsr => "bad-csr",
            DpsRefusalKind::CnMismatch => "cn-mismatch",
            DpsRefusalKind::CnCase => "cn-case",
            DpsRefusalKind::CaAsDevice => "ca-as-device",
            DpsRefusalKind::EnrollmentDisabled => "enrollment-disabled",
            DpsRefusalKind::Thumbprint => "thumbprint",
            DpsRefusalKind::NoEnrollment => "no-enrollment",
            DpsRefusalKind::Certificate(kind) | DpsRefusalKind::Csr(kind) => kind,
        }
    }
}

impl std::fmt::Display for DpsRefusalKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl DpsRefusal {
    fn new(status: u16, error_code: u32, kind: DpsRefusalKind, reason: String) -> Self {
        DpsRefusal {
            status,
            error_code,
            kind: kind.as_str().to_string(),
            reason,
        }
    }
    fn unauthorized(r: Refusal) -> Self {
        Self::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::Certificate(r.kind()),
            r.to_string(),
        )
    }
}

/// Why DPS will not sign a device's CSR: a short kind (`csr-subject`, `csr-key`, `csr-cn`,
/// `csr-name-taken`, …) and the reason the device gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsrRefusal {
    /// A short kind, for logs and tests.
    pub kind: &'static str,
    /// The reason.
    pub reason: String,
}

/// Signs a CSR: (issuing CA, registration id, CSR DER) → the chain (DER, leaf first), or why not.
pub type IssueFn<'a> =
    dyn Fn(&str, &str, &[u8]) -> std::result::Result<Vec<Vec<u8>>, CsrRefusal> + 'a;

/// A successful registration: the registration state the device gets.
#[derive(Clone, Debug)]
pub struct Assigned {
    /// The registration state the device gets.
    pub state: wire::RegistrationState,
    /// `group NAME` or `individual REGID`.
    pub enrollment: String,
    /// Why the hub will still refuse the device, if it will ([`Registration::note`]).
    pub note: Option<String>,
}

impl HubStore {
    /// Where DPS's state is kept.
    pub fn dps_path(&self) -> std::path::PathBuf {
        self.dir().join("dps.json")
    }

    /// Where the registration records are kept, one file each.
    pub fn dps_registrations_dir(&self) -> std::path::PathBuf {
        self.dir().join("dps-registrations")
    }

    /// A registration's file: keyed by the lower-cased id, as DPS compares registration ids
    /// case-insensitively (the id encoded for the file name, as twins are).
    fn dps_registration_path(&self, registration_id: &str) -> std::path::PathBuf {
        self.dps_registrations_dir().join(format!(
            "{}.json",
            crate::azure::url_encode(&registration_id.to_ascii_lowercase())
        ))
    }

    /// `dps.json` alone: ID scope, certificates and enrollments (and registrations an earlier
    /// version kept there). A file that cannot be read is set aside, keeping its ID scope.
    fn dps_load_file(&self) -> Result<DpsState> {
        Ok(self
            .load_state(&self.dps_path(), |bytes| {
                let id_scope = salvage_id_scope(bytes).unwrap_or_default();
                let kept = if id_scope.is_empty() {
                    "a new ID scope and no enrollments".to_string()
                } else {
                    format!("its ID scope {id_scope} and no enrollments")
                };
                (
                    DpsState {
                        id_scope,
                        ..Default::default()
                    },
                    kept,
                )
            })?
            .unwrap_or_default())
    }

    /// DPS's state as it is on disk, registrations included (empty when none yet; the ID
    /// scope is made by [`HubStore::dps_id_scope`]).
    pub fn dps_load(&self) -> Result<DpsState> {
        let mut st = self.dps_load_file()?;
        let mut records = self.dps_registration_files()?;
        records.retain(|r| st.registration(&r.registration_id).is_none());
        st.registrations.extend(records);
        st.registrations
            .sort_by(|a, b| (a.created, &a.registration_id).cmp(&(b.created, &b.registration_id)));
        Ok(st)
    }

    fn dps_registration_files(&self) -> Result<Vec<Registration>> {
        let dir = self.dps_registrations_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(store::io_error("reading", &dir, e).into()),
        };
        let mut out = Vec::new();
        for e in entries.flatten() {
            let p = e.path();
            if p.extension().and_then(|x| x.to_str()) != Some("json") {
                continue;
            }
            if let Some(Some(r)) = self.load_state(&p, |_| {
                (
                    None::<Registration>,
                    "no record for this registration (it registers again as new)".into(),
                )
            })? {
                out.push(r);
            }
        }
        Ok(out)
    }

    /// One registration record (case-insensitive), from its file.
    pub fn dps_registration(&self, registration_id: &str) -> Result<Option<Registration>> {
        let p = self.dps_registration_path(registration_id);
        if let Some(Some(r)) = self.load_state(&p, |_| {
            (
                None::<Registration>,
                "no record for this registration (it registers again as new)".into(),
            )
        })? {
            return Ok(Some(r));
        }
        // One kept in dps.json by an earlier version.
        Ok(self.dps_load_file()?.registration(registration_id).cloned())
    }

    /// Read-modify-write `dps.json` under the workspace lock, atomically; makes the ID scope
    /// the first time, and moves registrations an earlier version kept there to their files.
    pub fn dps_modify<T>(&self, f: impl FnOnce(&mut DpsState) -> Result<T>) -> Result<T> {
        store::make_private_dir_all(&self.dir())?;
        let _lock = self.ws.lock()?;
        let mut st = self.dps_load_file()?;
        if st.id_scope.is_empty() {
            st.id_scope = wire::new_id_scope();
        }
        let out = f(&mut st)?;
        for r in std::mem::take(&mut st.registrations) {
            self.dps_write_registration(&r)?;
        }
        let text = serde_json::to_vec_pretty(&st).expect("serialisable");
        store::write_atomic(&self.dps_path(), &text, 0o600)?;
        Ok(out)
    }

    /// Write one registration record (compact JSON; the caller holds the workspace lock).
    fn dps_write_registration(&self, r: &Registration) -> Result<()> {
        store::make_private_dir_all(&self.dps_registrations_dir())?;
        let text = serde_json::to_vec(r).expect("serialisable");
        store::write_atomic(
            &self.dps_registration_path(&r.registration_id),
            &text,
            0o600,
        )?;
        Ok(())
    }

    /// The workspace's ID scope, made (and kept) the first time it is asked for.
    pub fn dps_id_scope(&self) -> Result<String> {
        // dps.json alone: every DPS CONNECT asks, and reading every registration file each
        // time made provisioning N devices O(N²) (hostile pass: 135 ms a CONNECT at 10,000).
        let st = self.dps_load_file()?;
        if !st.id_scope.is_empty() {
            return Ok(st.id_scope);
        }
        self.dps_modify(|s| Ok(s.id_scope.clone()))
    }

    // ------------------------------------------------------------ DPS's certificates

    /// Upload a workspace CA to DPS's list (unverified unless `verified`: self-attested).
    pub fn dps_add_ca(&self, name: &str, verified: bool) -> Result<HubCa> {
        let ca = self.ca_entry(name, verified)?;
        self.dps_modify(|s| {
            if s.cas
                .iter()
                .any(|c| c.name == name && c.cert_pem == ca.cert_pem)
            {
                return Err(RegistryError::DpsCaTaken(name.to_string()));
            }
            s.cas.push(ca.clone());
            Ok(ca)
        })
    }

    /// Proof of possession for DPS, by the same check as the hub's ([`HubStore::verify_ca`]).
    pub fn dps_verify_ca(&self, name: &str, cert_bytes: &[u8]) -> Result<HubCa> {
        let st = self.dps_load()?;
        if !st.cas.iter().any(|c| c.name == name) {
            return Err(RegistryError::DpsUnknownCa(name.to_string()));
        }
        let ca = self.check_proof(name, &st.cas, cert_bytes)?;
        self.dps_modify(|s| {
            let c = s
                .cas
                .iter_mut()
                .find(|c| c.name == name && c.cert_pem == ca.cert_pem)
                .ok_or_else(|| RegistryError::DpsUnknownCa(name.to_string()))?;
            c.verified = true;
            Ok(c.clone())
        })
    }

    /// Remove a CA from DPS's certificate list (refused while a group uses it).
    pub fn dps_remove_ca(&self, name: &str) -> Result<()> {
        self.dps_modify(|s| {
            if let Some(g) = s
                .groups
                .iter()
                .find(|g| g.primary == name || g.secondary.as_deref() == Some(name))
            {
                return Err(RegistryError::DpsCaInUse(name.to_string(), g.name.clone()));
            }
            let before = s.cas.len();
            s.cas.retain(|c| c.name != name);
            if s.cas.len() == before {
                return Err(RegistryError::DpsUnknownCa(name.to_string()));
            }
            Ok(())
        })
    }

    // ------------------------------------------------------------ enrollments

    /// Add an enrollment group, or change one: its CAs must be in DPS's list.
    pub fn dps_add_group(&self, group: Group) -> Result<Group> {
        check_name(&group.name)?;
        if let Some(ca) = &group.issue_from {
            self.issuing_ca(ca)?;
        }
        self.dps_modify(|s| {
            for ca in std::iter::once(&group.primary).chain(group.secondary.as_ref()) {
                if !s.cas.iter().any(|c| &c.name == ca) {
                    return Err(RegistryError::DpsUnknownCa(ca.clone()));
                }
            }
            match s.groups.iter_mut().find(|g| g.name == group.name) {
                Some(g) => {
                    let added = g.added;
                    *g = Group {
                        added,
                        ..group.clone()
                    };
                }
                None => s.groups.push(group.clone()),
            }
            Ok(group)
        })
    }

    /// Add an individual enrollment (thumbprints from `from`, a workspace device, or given).
    #[allow(clippy::too_many_arguments)]
    pub fn dps_enroll(
        &self,
        registration_id: &str,
        device_id: Option<&str>,
        from: Option<&str>,
        primary: Option<&str>,
        secondary: Option<&str>,
        edge: bool,
        issue_from: Option<&str>,
    ) -> Result<(Individual, Vec<String>)> {
        let mut warnings = pki::identity::check_device_id(registration_id, Target::Dps)?;
        if let Some(d) = device_id {
            warnings.extend(pki::identity::check_device_id(d, Target::Hub)?);
        }
        if let Some(ca) = issue_from {
            self.issuing_ca(ca)?;
        }
        let (mut p, mut s) = match from {
            Some(name) => self.workspace_thumbprints(name)?,
            None => (None, None),
        };
        if let Some(t) = primary {
            p = Some(normalize_thumbprint(t)?);
        }
        if let Some(t) = secondary {
            s = Some(normalize_thumbprint(t)?);
        }
        if p.is_none() && s.is_none() && issue_from.is_none() {
            return Err(RegistryError::NoThumbprint(registration_id.to_string()));
        }
        let ind = Individual {
            registration_id: registration_id.to_string(),
            device_id: device_id.map(str::to_string),
            primary: p,
            secondary: s,
            from: from.map(str::to_string),
            edge,
            enabled: true,
            issue_from: issue_from.map(str::to_string),
            added: self.ws.now(),
        };
        self.dps_modify(|st| {
            st.individuals
                .retain(|i| !i.registration_id.eq_ignore_ascii_case(registration_id));
            st.individuals.push(ind.clone());
            Ok(())
        })?;
        Ok((ind, warnings))
    }

    /// Enable or disable an enrollment: a group by name, else an individual enrollment by
    /// registration id. Returns what it changed ("group NAME" / "individual REGID").
    pub fn dps_set_enabled(&self, name: &str, enabled: bool) -> Result<String> {
        self.dps_modify(|s| {
            if let Some(g) = s.groups.iter_mut().find(|g| g.name == name) {
                g.enabled = enabled;
                return Ok(format!("group {name}"));
            }
            if let Some(i) = s
                .individuals
                .iter_mut()
                .find(|i| i.registration_id.eq_ignore_ascii_case(name))
            {
                i.enabled = enabled;
                return Ok(format!("individual {}", i.registration_id));
            }
            Err(RegistryError::DpsUnknownEnrollment(name.to_string()))
        })
    }

    /// Remove an enrollment (group by name, else individual by registration id).
    pub fn dps_remove_enrollment(&self, name: &str) -> Result<String> {
        self.dps_modify(|s| {
            if let Some(i) = s.groups.iter().position(|g| g.name == name) {
                s.groups.remove(i);
                return Ok(format!("group {name}"));
            }
            if let Some(i) = s
                .individuals
                .iter()
                .position(|i| i.registration_id.eq_ignore_ascii_case(name))
            {
                let ind = s.individuals.remove(i);
                return Ok(format!("individual {}", ind.registration_id));
            }
            Err(RegistryError::DpsUnknownEnrollment(name.to_string()))
        })
    }

    /// Delete a registration record (the device stays in the hub; registering again starts
    /// over with `initialAssignment`).
    pub fn dps_delete_registration(&self, registration_id: &str) -> Result<Registration> {
        let rec = self
            .dps_registration(registration_id)?
            .ok_or_else(|| RegistryError::DpsUnknownRegistration(registration_id.into()))?;
        // Moves a record an earlier version kept in dps.json to its file first.
        self.dps_modify(|_| Ok(()))?;
        let _lock = self.ws.lock()?;
        let p = self.dps_registration_path(registration_id);
        std::fs::remove_file(&p).map_err(|e| store::io_error("removing", &p, e))?;
        Ok(rec)
    }

    fn issuing_ca(&self, name: &str) -> Result<()> {
        let e = self.ws.load(name)?;
        if !e.meta.kind.is_ca() {
            return Err(RegistryError::NotACa(name.to_string()));
        }
        Ok(())
    }

    // ------------------------------------------------------------ registration

    /// One register request from `registration_id`, whose TLS chain is `chain` (leaf first):
    /// decide, and on success record the registration and create or update the device in the
    /// hub registry. `issue` signs a CSR when the request carries one.
    pub fn dps_register(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        req: &wire::RegisterRequest,
        assigned_hub: &str,
        now: OffsetDateTime,
        issue: &IssueFn<'_>,
    ) -> std::result::Result<Assigned, DpsRefusal> {
        let internal = |e: RegistryError| {
            DpsRefusal::new(
                500,
                500000,
                DpsRefusalKind::Registry,
                format!(
                    "DPS could not read or write its state ({e}); the device may register again"
                ),
            )
        };
        let bad_request = |kind: DpsRefusalKind, why: String| {
            DpsRefusal::new(
                400,
                code::BAD_REQUEST,
                kind,
                format!("registration {registration_id}: {why}"),
            )
        };
        // The id becomes a hub device id and a file-name part: DPS's rules, checked here.
        if let Err(e) = pki::identity::check_device_id(registration_id, Target::Dps) {
            return Err(bad_request(
                DpsRefusalKind::BadRegistrationId,
                e.to_string(),
            ));
        }
        if !req.registration_id.eq_ignore_ascii_case(registration_id) {
            return Err(bad_request(
                DpsRefusalKind::RegistrationIdMismatch,
                format!(
                    "the register body names \"{}\" but the connection is for \"{registration_id}\"",
                    crate::text::escape_controls(&req.registration_id)
                ),
            ));
        }
        if let Some(p) = &req.payload
            && let Err(e) = super::state_file::check_document(
                "the payload",
                p,
                crate::azure::MAX_TWIN_DEPTH,
                MAX_PAYLOAD_BYTES,
            )
        {
            return Err(bad_request(DpsRefusalKind::PayloadLimit, e.to_string()));
        }
        let st = self.dps_load_file().map_err(internal)?;
        let m = decide(&st, registration_id, chain, now)?;
        // Registration ids are case-insensitive, so "Victim" is registration "victim"; taking it
        // would re-pin hub device "victim" to another certificate and lock its owner out. A
        // registration answers only to the spelling it was first made with.
        if let Some(old) = self.dps_registration(registration_id).map_err(internal)?
            && old.registration_id != registration_id
        {
            return Err(DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::RegistrationIdCase,
                format!(
                    "registration {registration_id}: DPS holds this registration as \"{}\" (registration ids are case-insensitive), assigned to hub device \"{}\"; a device registers with its id exactly as first registered, so that no case variant takes over another device",
                    old.registration_id, old.device_id
                ),
            ));
        }
        let issued = match (&req.csr, &m.issue_from) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(bad_request(
                    DpsRefusalKind::CsrNotEnabled,
                    format!(
                        "the request carries a CSR but {} names no issuing CA; give the enrollment an issuing CA",
                        m.enrollment
                    ),
                ));
            }
            (Some(csr), Some(_)) if csr.trim().is_empty() => {
                return Err(bad_request(
                    DpsRefusalKind::BadCsr,
                    "csr is empty; send the base64 of a DER PKCS#10 request".into(),
                ));
            }
            (Some(csr), Some(ca)) => {
                use base64::Engine;
                let der = base64::engine::general_purpose::STANDARD
                    .decode(csr.trim())
                    .map_err(|e| {
                        bad_request(
                            DpsRefusalKind::BadCsr,
                            format!("csr is not base64 DER ({e})"),
                        )
                    })?;
                let chain = issue(ca, registration_id, &der).map_err(|r| {
                    DpsRefusal::new(
                        400,
                        code::BAD_REQUEST,
                        DpsRefusalKind::Csr(r.kind),
                        format!("registration {registration_id}: {}", r.reason),
                    )
                })?;
                Some(chain)
            }
        };
        self.assign(registration_id, chain, &m, req, assigned_hub, now, issued)
            .map_err(internal)
    }

    /// Record a decided registration in DPS and the hub registry. As Azure's DPS does, the
    /// device is created (or updated) in the hub with the thumbprint of the certificate it will
    /// connect with (the issued one, or the one it registered with), whatever its enrollment:
    /// the hub's CA list is never touched (MicrosoftDocs/azure-docs#70976,
    /// azure-iot-sdk-csharp#3360), and the device's enabled status is the operator's alone:
    /// DPS's deprovisioning guide keeps the two switches apart (disable the enrollment to stop
    /// provisioning, disable the device in the hub to stop it talking), and no Azure document
    /// says a registration re-enables a disabled device, so it does not here.
    #[allow(clippy::too_many_arguments)]
    fn assign(
        &self,
        registration_id: &str,
        chain: &[Vec<u8>],
        m: &Match,
        req: &wire::RegisterRequest,
        assigned_hub: &str,
        now: OffsetDateTime,
        issued: Option<Vec<Vec<u8>>>,
    ) -> Result<Assigned> {
        let _lock = self.ws.lock()?;
        let earlier = self.dps_registration(registration_id)?;
        // Case variants of one registration id are one registration, one hub device: the
        // device id of the first, while the same enrollment matches.
        let device_id = match (&earlier, m.individual_device_id.as_deref()) {
            (_, Some(d)) => d.to_string(),
            (Some(old), None) if old.enrollment == m.enrollment => old.device_id.clone(),
            _ => registration_id.to_string(),
        };
        let connects_with = issued
            .as_ref()
            .and_then(|c| c.first())
            .or_else(|| chain.first())
            .map(|der| pki::thumbprints(der).1);
        let provisioned_by = format!("DPS, {}", m.enrollment);
        // The hub first: the device must be able to connect the moment DPS answers. Written
        // only when the device's entry changes: a device registering again with the same
        // certificate rewrote the whole registry each time (hostile pass: 2.6 MB a
        // registration with 20,000 devices).
        let registry = self.load()?;
        let current = registry.devices.iter().find(|d| d.id == device_id);
        let note = current.filter(|d| !d.enabled).map(|_| {
            format!(
                "device \"{device_id}\" is disabled in the hub, by its operator; DPS assigned it but does not enable it, so the hub refuses it until the operator enables it again"
            )
        });
        let unchanged = current.is_some_and(|d| {
            d.auth == Auth::SelfSigned
                && d.primary == connects_with
                && d.provisioned_by.as_deref() == Some(provisioned_by.as_str())
        });
        if !unchanged {
            self.modify_locked(|r| {
                match r.devices.iter_mut().find(|d| d.id == device_id) {
                    Some(d) => {
                        d.auth = Auth::SelfSigned;
                        d.primary = connects_with.clone();
                        d.provisioned_by = Some(provisioned_by.clone());
                    }
                    None => r.devices.push(HubDevice {
                        provisioned_by: Some(provisioned_by.clone()),
                        ..HubDevice::new(
                            &device_id,
                            Auth::SelfSigned,
                            connects_with.clone(),
                            None,
                            now,
                        )
                    }),
                }
                Ok(())
            })?;
        }
        let etag = {
            use base64::Engine;
            let mut b = [0u8; 16];
            aws_lc_rs::rand::fill(&mut b).expect("system random source");
            base64::engine::general_purpose::STANDARD.encode(format!("\"{}\"", hex::encode(b)))
        };
        let (created, substatus, first_id) = match &earlier {
            Some(old) => (
                old.created,
                wire::REPROVISIONED_TO_INITIAL,
                old.registration_id.clone(),
            ),
            None => (now, wire::INITIAL_ASSIGNMENT, registration_id.to_string()),
        };
        let rec = Registration {
            registration_id: first_id,
            device_id,
            assigned_hub: assigned_hub.to_string(),
            status: "assigned".into(),
            substatus: substatus.into(),
            created,
            updated: now,
            etag,
            payload: req.payload.clone(),
            enrollment: m.enrollment.clone(),
            note,
        };
        self.dps_write_registration(&rec)?;
        let b64 = |d: &Vec<u8>| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(d)
        };
        Ok(Assigned {
            state: wire::RegistrationState {
                registration_id: registration_id.to_string(),
                created_date_time_utc: Some(pki::issue::rfc3339(rec.created)),
                assigned_hub: Some(rec.assigned_hub.clone()),
                device_id: Some(rec.device_id.clone()),
                status: rec.status.clone(),
                substatus: Some(rec.substatus.clone()),
                last_updated_date_time_utc: Some(pki::issue::rfc3339(rec.updated)),
                etag: Some(rec.etag.clone()),
                payload: rec.payload.clone(),
                issued_certificate_chain: issued.map(|c| c.iter().map(b64).collect()),
            },
            enrollment: rec.enrollment,
            note: rec.note,
        })
    }
}

/// The ID scope of a `dps.json` that does not parse, if its text still holds one (`0ne` and
/// hex, as [`wire::new_id_scope`] makes them), so a damaged file does not change the scope
/// every device was configured with.
fn salvage_id_scope(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let after = &text[text.find("\"id_scope\"")? + "\"id_scope\"".len()..];
    let value = after
        .trim_start()
        .strip_prefix(':')?
        .trim_start()
        .strip_prefix('"')?;
    let scope: String = value.chars().take_while(|c| *c != '"').collect();
    (scope.len() <= 32
        && scope.starts_with("0ne")
        && scope[3..].chars().all(|c| c.is_ascii_hexdigit()))
    .then_some(scope)
}

/// An enrollment a device matched.
#[derive(Debug)]
struct Match {
    enrollment: String,
    /// The hub device id an individual enrollment names (else the registration id, or the
    /// device id of an earlier registration of the same id in another case).
    individual_device_id: Option<String>,
    issue_from: Option<String>,
}

fn cn_of(der: &[u8]) -> Option<String> {
    let (_, c) = X509Certificate::from_der(der).ok()?;
    c.subject()
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
}

/// The certificate a device registers with names it, and only it: one CN, equal to the
/// registration id exactly, and not a CA's.
fn check_device_certificate(
    registration_id: &str,
    chain: &[Vec<u8>],
) -> std::result::Result<(), DpsRefusal> {
    let who = format!("registration {registration_id}");
    let leaf = chain
        .first()
        .ok_or_else(|| DpsRefusal::unauthorized(Refusal::NoCertificate))?;
    let cn = cn_of(leaf).ok_or_else(|| {
        DpsRefusal::unauthorized(Refusal::BadCertificate {
            detail: "no readable subject CN".into(),
        })
    })?;
    if let Ok((_, c)) = X509Certificate::from_der(leaf) {
        auth::single_cn(registration_id, c.subject()).map_err(DpsRefusal::unauthorized)?;
    }
    if !cn.eq_ignore_ascii_case(registration_id) {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CnMismatch,
            format!(
                "{who}: certificate CN \"{}\" is not the registration id \"{registration_id}\"; DPS takes the registration id from the CN",
                crate::text::escape_controls(&cn)
            ),
        ));
    }
    // Registration ids are case-insensitive in DPS but device ids are not in the hub: a CN
    // "Victim" registering as "victim" would take over hub device "victim" (hostile pass), so
    // the CN must be the registration id exactly.
    if cn != registration_id {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CnCase,
            format!(
                "{who}: certificate CN \"{}\" differs from the registration id \"{registration_id}\" in case; the hub compares device ids case-sensitively, so a device registers with its CN exactly",
                crate::text::escape_controls(&cn)
            ),
        ));
    }
    // A CA's key never registers as a device, nor a device as a workspace CA's name.
    if X509Certificate::from_der(leaf).is_ok_and(|(_, c)| auth::is_ca_certificate(&c)) {
        return Err(DpsRefusal::new(
            401,
            code::UNAUTHORIZED,
            DpsRefusalKind::CaAsDevice,
            format!(
                "{who}: the certificate presented is a CA certificate (CA:TRUE or keyCertSign), not a device certificate; a device registers with a leaf issued under the enrollment's CA"
            ),
        ));
    }
    Ok(())
}

/// DPS's decision for one device: an individual enrollment for the registration id wins;
/// else the group whose CA the chain ends at.
fn decide(
    st: &DpsState,
    registration_id: &str,
    chain: &[Vec<u8>],
    now: OffsetDateTime,
) -> std::result::Result<Match, DpsRefusal> {
    let who = format!("registration {registration_id}");
    check_device_certificate(registration_id, chain)?;
    if let Some(ind) = st.individual(registration_id) {
        if !ind.enabled {
            return Err(DpsRefusal::new(
                403,
                code::FORBIDDEN,
                DpsRefusalKind::EnrollmentDisabled,
                format!(
                    "{who}: individual enrollment \"{}\" is disabled",
                    ind.registration_id
                ),
            ));
        }
        // Only the validity window and the thumbprint: the certificate itself is enrolled.
        let reg = Registry {
            devices: vec![HubDevice::new(
                registration_id,
                Auth::SelfSigned,
                ind.primary.clone(),
                ind.secondary.clone(),
                ind.added,
            )],
            ..Default::default()
        };
        let user = crate::azure::username("dps", registration_id);
        auth::authenticate(
            &reg,
            &HubTrust::new(&reg),
            registration_id,
            Some(&user),
            chain,
            now,
        )
        .map_err(|r| match r {
            Refusal::Thumbprint { sha1, .. } => DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::Thumbprint,
                format!(
                    "{who}: the certificate (SHA-1 {sha1}) is neither the primary nor the secondary certificate of individual enrollment \"{}\"",
                    ind.registration_id
                ),
            ),
            r => DpsRefusal::unauthorized(r),
        })?;
        return Ok(Match {
            enrollment: format!("individual {}", ind.registration_id),
            individual_device_id: Some(ind.device_id().to_string()),
            issue_from: ind.issue_from.clone(),
        });
    }
    for g in &st.groups {
        let names: Vec<&str> = std::iter::once(g.primary.as_str())
            .chain(g.secondary.as_deref())
            .collect();
        let reg = st.as_registry(Some(&names));
        if HubTrust::new(&reg)
            .verify(registration_id, chain, now)
            .is_err()
        {
            continue;
        }
        if !g.enabled {
            return Err(DpsRefusal::new(
                403,
                code::FORBIDDEN,
                DpsRefusalKind::EnrollmentDisabled,
                format!("{who}: enrollment group \"{}\" is disabled", g.name),
            ));
        }
        return Ok(Match {
            enrollment: format!("group {}", g.name),
            individual_device_id: None,
            issue_from: g.issue_from.clone(),
        });
    }
    // No enrollment: say why in the chain check's own words against all of DPS's CAs.
    let all = st.as_registry(None);
    match HubTrust::new(&all).verify(registration_id, chain, now) {
        Err(r) => Err(DpsRefusal::unauthorized(r)),
        Ok(v) => {
            let anchor = v.chain.last().cloned().unwrap_or_default();
            let ca = all
                .cas
                .iter()
                .find(|c| pem_to_der(&c.cert_pem).is_some_and(|d| d == anchor))
                .map(|c| c.name.clone())
                .unwrap_or_default();
            Err(DpsRefusal::new(
                401,
                code::UNAUTHORIZED,
                DpsRefusalKind::NoEnrollment,
                format!(
                    "{who}: no enrollment: the chain ends at DPS's verified CA \"{ca}\" but no enrollment group uses it, and there is no individual enrollment \"{registration_id}\""
                ),
            ))
        }
    }
}

/// Enrollment group names: letters, digits, `- . _`, at most 128 (what DPS's portal takes).
fn check_name(name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(RegistryError::DpsGroupName(name.to_string()));
    }
    Ok(())
}

/// How the local DPS signs a device's CSR (certificate issuance): the workspace, the
/// enrollment's issuing CA, the registration id and the CSR (DER). Done means the certificate is
/// stored as workspace entity `registration_id`, its earlier one in the history. The engine's
/// `hub::dps_csr_signer()` is the one every face passes in [`super::HubConfig`]; the hub cannot
/// call `ops` itself (ops depends on the hub), and without a signer a CSR is refused.
#[derive(Clone)]
pub struct CsrSigner(pub Arc<SignCsr>);

/// The signing call inside a [`CsrSigner`]: (workspace, issuing CA, registration id, CSR DER).
pub type SignCsr =
    dyn Fn(&Workspace, &str, &str, &[u8]) -> std::result::Result<(), String> + Send + Sync;

impl std::fmt::Debug for CsrSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrSigner")
    }
}

#[cfg(test)]
mod tests {
    use super::DpsRefusalKind as K;

    /// The kinds are API (`--json`, the hub's refusal list, logs): each its old string, no two
    /// alike.
    #[test]
    fn refusal_kinds_keep_their_strings() {
        let all = [
            (K::Registry, "registry"),
            (K::BadRegistrationId, "bad-registration-id"),
            (K::RegistrationIdMismatch, "registration-id-mismatch"),
            (K::PayloadLimit, "payload-limit"),
            (K::RegistrationIdCase, "registration-id-case"),
            (K::CsrNotEnabled, "csr-not-enabled"),
            (K::BadCsr, "bad-csr"),
            (K::CnMismatch, "cn-mismatch"),
            (K::CnCase, "cn-case"),
            (K::CaAsDevice, "ca-as-device"),
            (K::EnrollmentDisabled, "enrollment-disabled"),
            (K::Thumbprint, "thumbprint"),
            (K::NoEnrollment, "no-enrollment"),
            (K::Certificate("no-certificate"), "no-certificate"),
            (K::Csr("csr-subject"), "csr-subject"),
        ];
        let mut seen = std::collections::BTreeSet::new();
        for (kind, text) in all {
            assert_eq!(kind.as_str(), text);
            assert_eq!(kind.to_string(), text);
            assert!(seen.insert(text), "{text} twice");
        }
    }
}
