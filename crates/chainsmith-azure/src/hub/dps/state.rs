//! What the local DPS keeps on disk: `WS/hub/dps.json` (ID scope, certificates, enrollments)
//! and one file per registration, read and written under the workspace lock.

use super::{Group, HubStore, Individual};
use crate::azure::dps as wire;
use crate::hub::registry::{HubCa, Registry, Result};
use crate::store;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

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
    pub(super) fn as_registry(&self, only: Option<&[&str]>) -> Registry {
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
    pub(super) fn dps_registration_path(&self, registration_id: &str) -> std::path::PathBuf {
        self.dps_registrations_dir().join(format!(
            "{}.json",
            crate::azure::url_encode(&registration_id.to_ascii_lowercase())
        ))
    }

    /// `dps.json` alone: ID scope, certificates and enrollments (and registrations an earlier
    /// version kept there). A file that cannot be read is set aside, keeping its ID scope.
    pub(super) fn dps_load_file(&self) -> Result<DpsState> {
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
    pub(crate) fn dps_modify<T>(&self, f: impl FnOnce(&mut DpsState) -> Result<T>) -> Result<T> {
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
    pub(super) fn dps_write_registration(&self, r: &Registration) -> Result<()> {
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
}
