//! Device twins: desired and reported properties with their versions, merged as IoT Hub
//! merges a PATCH and held to its limits at the door.

use super::{HubStore, RegistryError, Result};
use crate::store;
use serde::{Deserialize, Serialize};

/// A device twin: desired and reported properties, each with its `$version`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Twin {
    /// The back end's own notes on the device (never sent to it): set by an enrollment's
    /// initial twin at the device's first assignment.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub tags: serde_json::Map<String, serde_json::Value>,
    /// What the back end wants.
    pub desired: serde_json::Value,
    /// What the device reported.
    pub reported: serde_json::Value,
}

impl Default for Twin {
    fn default() -> Self {
        Twin {
            tags: serde_json::Map::new(),
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
    pub(crate) fn reported_version(&self) -> u64 {
        self.reported["$version"].as_u64().unwrap_or(1)
    }
    /// The document a device gets for `$iothub/twin/GET` (no tags: those are the back end's).
    pub fn document(&self) -> serde_json::Value {
        serde_json::json!({ "desired": self.desired, "reported": self.reported })
    }
    /// The operator's view: the device's document and the tags, when there are any.
    pub fn service_document(&self) -> serde_json::Value {
        let mut doc = self.document();
        if !self.tags.is_empty() {
            doc["tags"] = serde_json::Value::Object(self.tags.clone());
        }
        doc
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

/// Which of IoT Hub's twin rules a document breaks.
#[derive(Debug)]
pub(crate) enum TwinRule {
    /// A key IoT Hub does not take (cut to 64 characters).
    Key(String),
    /// Too deep or too large.
    Limit(crate::hub::state_file::DocumentError),
}

impl std::fmt::Display for TwinRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TwinRule::Key(k) => write!(
                f,
                "key {k:?} is not allowed; IoT Hub takes keys of at most 1 KB without control characters, '.', '$' or spaces"
            ),
            TwinRule::Limit(l) => l.fmt(f),
        }
    }
}

/// IoT Hub's twin rules for one document (tags, desired or reported properties): keys
/// ([`crate::azure::twin_key_allowed`]), depth ([`crate::azure::MAX_TWIN_DEPTH`]) and
/// `max_bytes`. `$version` at the top is the twin's own; a null deletes, so its key is not
/// checked (a key stored before these rules can still be cleaned).
pub(crate) fn check_twin_document(
    what: &'static str,
    doc: &serde_json::Value,
    max_bytes: usize,
) -> std::result::Result<(), TwinRule> {
    let mut stack = vec![(doc, true)];
    while let Some((v, top)) = stack.pop() {
        match v {
            serde_json::Value::Object(m) => {
                for (k, child) in m {
                    let own_version = top && k == "$version";
                    if !own_version && !child.is_null() && !crate::azure::twin_key_allowed(k) {
                        return Err(TwinRule::Key(k.chars().take(64).collect()));
                    }
                    stack.push((child, false));
                }
            }
            serde_json::Value::Array(a) => stack.extend(a.iter().map(|c| (c, false))),
            _ => {}
        }
    }
    crate::hub::state_file::check_document(what, doc, crate::azure::MAX_TWIN_DEPTH, max_bytes)
        .map_err(TwinRule::Limit)
}

/// IoT Hub's twin limits at the door ([`crate::azure::MAX_TWIN_DEPTH`],
/// [`crate::azure::MAX_TWIN_PROPERTIES_BYTES`]): what is stored can always be read back.
fn check_twin_patch(device: &str, what: &'static str, patch: &serde_json::Value) -> Result<()> {
    check_twin_document(what, patch, crate::azure::MAX_TWIN_PROPERTIES_BYTES).map_err(|r| match r {
        TwinRule::Key(key) => RegistryError::TwinKey {
            device: device.to_string(),
            key,
        },
        TwinRule::Limit(limit) => RegistryError::TwinLimit {
            device: device.to_string(),
            limit,
        },
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
        self.modify_twin_locked(id, f)
    }

    /// [`HubStore::modify_twin`] for a caller that holds the workspace lock.
    fn modify_twin_locked<T>(&self, id: &str, f: impl FnOnce(&mut Twin) -> T) -> Result<T> {
        self.ensure_dirs()?;
        let mut twin = self.load_twin(id)?;
        let out = f(&mut twin);
        let text = serde_json::to_vec_pretty(&twin).expect("serialisable");
        store::write_atomic(&self.twin_path(id), &text, 0o600)?;
        Ok(out)
    }

    /// Set an enrollment's initial twin on a device's twin (the caller holds the workspace
    /// lock): its tags and desired properties merged in, the desired `$version` moved on.
    /// The twin was checked against IoT Hub's rules when the enrollment (or webhook) gave it.
    pub(crate) fn apply_initial_twin_locked(
        &self,
        id: &str,
        initial: &crate::azure::dps::InitialTwin,
    ) -> Result<()> {
        self.modify_twin_locked(id, |t| {
            if let Some(tags) = &initial.tags {
                let mut doc = serde_json::Value::Object(std::mem::take(&mut t.tags));
                merge(&mut doc, &serde_json::Value::Object(tags.clone()));
                if let serde_json::Value::Object(m) = doc {
                    t.tags = m;
                }
            }
            if let Some(desired) = initial.desired() {
                merge(&mut t.desired, &serde_json::Value::Object(desired.clone()));
                let v = t.desired_version() + 1;
                t.desired["$version"] = v.into();
            }
        })
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
