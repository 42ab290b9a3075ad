//! DPS's certificates and enrollments: groups (a CA, primary and secondary) and individual
//! enrollments (a registration id and its thumbprints), as the operator's commands change them.

use super::{Allocation, HubStore, Registration};
use crate::hub::registry::{HubCa, RegistryError, Result, normalize_thumbprint};
use crate::pki::{self, Target};
use crate::store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    /// What every enrollment has: enabled, edge, issuing CA, allocation, when it was made.
    #[serde(flatten)]
    pub settings: EnrollmentSettings,
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
    /// What every enrollment has: enabled, edge, issuing CA, allocation, when it was made.
    #[serde(flatten)]
    pub settings: EnrollmentSettings,
}

/// What a group and an individual enrollment both hold beside whom they enroll (stored
/// flattened into each, so `dps.json` reads as it always has).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct EnrollmentSettings {
    /// IoT Edge devices.
    #[serde(default)]
    pub edge: bool,
    /// A disabled enrollment refuses its devices.
    pub enabled: bool,
    /// A workspace CA that signs the CSRs of the enrollment's devices (certificate management).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issue_from: Option<String>,
    /// A custom allocation webhook and an initial twin for the enrollment's devices.
    #[serde(flatten)]
    pub allocation: Allocation,
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

impl HubStore {
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

    /// Add an enrollment group, or change one: its CAs must be in DPS's list.
    pub fn dps_add_group(&self, group: Group) -> Result<Group> {
        check_name(&group.name)?;
        group.settings.allocation.check()?;
        if let Some(ca) = &group.settings.issue_from {
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
                    // A changed group keeps when it was first made.
                    let added = g.settings.added;
                    *g = group.clone();
                    g.settings.added = added;
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
        allocation: Allocation,
    ) -> Result<(Individual, Vec<String>)> {
        let mut warnings = pki::identity::check_device_id(registration_id, Target::Dps)?;
        allocation.check()?;
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
            settings: EnrollmentSettings {
                edge,
                enabled: true,
                issue_from: issue_from.map(str::to_string),
                allocation,
                added: self.ws.now(),
            },
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
                g.settings.enabled = enabled;
                return Ok(format!("group {name}"));
            }
            if let Some(i) = s
                .individuals
                .iter_mut()
                .find(|i| i.registration_id.eq_ignore_ascii_case(name))
            {
                i.settings.enabled = enabled;
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
}
