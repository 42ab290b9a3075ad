//! Registered devices: thumbprints from the workspace, adding, enabling and disabling (with
//! the sessions that must end), removal, and what a revocation in the workspace disables.

use super::{
    Auth, DisabledDevice, HubDevice, HubStore, RegistryError, Result, RevokedCert,
    normalize_thumbprint,
};
use crate::pki::{self, Target};
use crate::store::{self, Kind};

impl HubStore {
    /// A registered device.
    pub fn device(&self, id: &str) -> Result<HubDevice> {
        self.load()?
            .devices
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| RegistryError::UnknownDevice(id.to_string()))
    }

    /// The SHA-256 thumbprints of a workspace device's slots, (primary, secondary). A
    /// self-signed device may hold both (`new device ID --self-signed --slot secondary`), or
    /// only the one it was made as; any other device has one certificate: the primary.
    pub(crate) fn workspace_thumbprints(
        &self,
        name: &str,
    ) -> Result<(Option<String>, Option<String>)> {
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
            if crate::hub::control::kick_blocking(&path, id, why).is_err() {
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
