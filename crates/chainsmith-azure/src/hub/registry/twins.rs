//! Device twins: desired and reported properties with their versions, merged as IoT Hub
//! merges a PATCH and held to its limits at the door.

use super::{HubStore, RegistryError, Result};
use crate::store;
use serde::{Deserialize, Serialize};

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
    pub(crate) fn desired_version(&self) -> u64 {
        self.desired["$version"].as_u64().unwrap_or(1)
    }
    /// The reported properties' `$version`.
    pub(crate) fn reported_version(&self) -> u64 {
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
    crate::hub::state_file::check_document(
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

impl HubStore {
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
            crate::hub::state_file::check_document(
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
}
