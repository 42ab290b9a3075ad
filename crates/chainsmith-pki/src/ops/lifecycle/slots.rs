//! The two thumbprint slots of a self-signed device.

use super::history::{extras_of, history_entry};
use super::renew::meta_from;
use super::{Error, Result};
use crate::ops::{Created, NextStep};
use crate::pki::issue::{self, San};
use crate::pki::{IssueSpec, KeyAlg, Profile, subject};
use crate::store::{self, HISTORY_DIR, Kind, NewEntity, Slot, Workspace};
pub use crate::store::{SlotView, slots};

/// The layout of a self-signed device holding both thumbprint slots: `main` is the entity
/// itself (its `slot` set to the one `second` does not hold), and `second` (a certificate for the
/// same id, its `meta.slot` saying which slot) goes into `main`'s `primary/` or `secondary/`
/// subdirectory as cert.pem, key.pem and meta.toml. `new_slot` and `chainsmith apply` both
/// store what this returns.
pub(crate) fn with_other_slot(mut main: NewEntity, second: &NewEntity) -> NewEntity {
    let slot = second.meta.slot.unwrap_or(Slot::Secondary);
    let sub = slot.dir_name();
    main.extra.push((
        format!("{sub}/{}", store::CERT_FILE),
        second.cert_pem.clone().into_bytes(),
    ));
    if let Some(k) = &second.key_pem {
        main.extra
            .push((format!("{sub}/{}", store::KEY_FILE), k.clone().into_bytes()));
    }
    main.extra.push((
        format!("{sub}/{}", store::META_FILE),
        second.meta.to_toml().into_bytes(),
    ));
    main.meta.slot = Some(slot.other());
    main
}

/// New devices, or, for one self-signed device that already exists and a `slot` in the
/// request, its other thumbprint slot filled (or, with `force`, rolled). Every face creates
/// devices through this, so the CLI and the TUI make the same choice.
pub fn new_devices_or_slot(ws: &Workspace, req: &crate::ops::DeviceRequest) -> Result<Created> {
    new_devices_or_slot_watched(ws, req, &crate::progress::Unwatched)
}

/// [`new_devices_or_slot`], telling `progress` how a batch of new devices gets on (a slot is
/// one certificate: nothing to tell).
pub fn new_devices_or_slot_watched(
    ws: &Workspace,
    req: &crate::ops::DeviceRequest,
    progress: &dyn crate::progress::Progress,
) -> Result<Created> {
    match new_slot(ws, req)? {
        Some(c) => Ok(c),
        None => Ok(crate::ops::new_devices_watched(ws, req, progress)?),
    }
}

/// `new device ID --self-signed --slot S` when ID already exists: fill (or, with `force`,
/// roll) slot S and keep the other one working.
/// Returns None when the device does not exist yet (the ordinary `new device` path applies).
fn new_slot(ws: &Workspace, req: &crate::ops::DeviceRequest) -> Result<Option<Created>> {
    let (Some(slot), [id]) = (req.slot, req.ids.as_slice()) else {
        return Ok(None);
    };
    if req.issuer.is_some() || !ws.exists(id) {
        return Ok(None);
    }
    let entity = ws.load(id)?;
    if !(entity.meta.self_signed && entity.meta.kind == Kind::Device) {
        if req.force {
            return Ok(None);
        }
        return Err(store::Error::NameTaken(vec![id.clone()]).into());
    }
    let main = entity.meta.slot.unwrap_or(Slot::Primary);
    let key = req.key.unwrap_or(KeyAlg::EcP256);
    let profile = Profile::Device {
        eku: req.eku,
        sans: req
            .sans
            .iter()
            .map(|s| San::parse(s))
            .collect::<Result<_, _>>()?,
    };
    let validity = req.validity.resolve(&profile, ws.now())?;
    let spec = IssueSpec {
        subject: subject::cn_only(id)?,
        profile,
        validity,
    };
    let issued = issue::issue(&spec, key, None)?;
    let mut meta = meta_from(&entity.meta, &issued, ws.now())?;
    meta.slot = Some(slot);
    meta.key_alg = Some(key);
    let mut warnings: Vec<String> = key.warning().map(str::to_string).into_iter().collect();
    if slot == main {
        if !req.force {
            return Err(Error::SlotTaken {
                id: id.clone(),
                slot,
            });
        }
        let mut extra = extras_of(&entity.dir, None)?;
        extra.extend(history_entry(&entity, true)?);
        ws.replace(&[NewEntity {
            meta: meta.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra,
        }])?;
    } else {
        let sub = slot.dir_name();
        let sub_dir = entity.dir.join(sub);
        if sub_dir.join(store::META_FILE).exists() && !req.force {
            return Err(Error::SlotTaken {
                id: id.clone(),
                slot,
            });
        }
        let mut extra = extras_of(&entity.dir, Some(sub))?;
        if sub_dir.join(store::META_FILE).exists() {
            // The replaced slot certificate goes to history as well.
            let old_meta = store::read_meta(&sub_dir.join(store::META_FILE))?;
            let base = format!("{HISTORY_DIR}/{}", old_meta.serial);
            for f in [store::CERT_FILE, store::KEY_FILE, store::META_FILE] {
                if let Ok(b) = std::fs::read(sub_dir.join(f)) {
                    extra.push((format!("{base}/{f}"), b));
                }
            }
        }
        let main_key = if entity.meta.has_key {
            Some(entity.read_key_pem()?)
        } else {
            None
        };
        let main_entity = NewEntity {
            meta: entity.meta.clone(),
            cert_pem: entity.cert_pem.clone(),
            key_pem: main_key,
            extra,
        };
        let slot_entity = NewEntity {
            meta: meta.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra: vec![],
        };
        ws.replace(&[with_other_slot(main_entity, &slot_entity)])?;
    }
    warnings.push(format!(
        "\"{id}\" now holds both thumbprint slots; its details list them"
    ));
    Ok(Some(Created {
        entities: vec![meta],
        warnings,
        next: vec![NextStep::Show { name: id.clone() }],
        file: None,
    }))
}
