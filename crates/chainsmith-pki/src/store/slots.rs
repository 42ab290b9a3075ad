//! The two thumbprint slots of a self-signed device, as they lie in its directory: the entity
//! itself is one slot, `primary/` or `secondary/` the other. The hub reads them to register a
//! device; `ops::lifecycle` fills and rolls them.

use super::{Kind, META_FILE, Result, Slot, Workspace, read_meta};
use serde::Serialize;
use std::path::PathBuf;
use time::OffsetDateTime;

/// One thumbprint slot of a self-signed device.
#[derive(Clone, Debug, Serialize)]
pub struct SlotView {
    /// Which slot.
    pub slot: Slot,
    /// Its SHA-1 thumbprint.
    pub sha1: String,
    /// Its SHA-256 thumbprint.
    pub sha256: String,
    /// End of its validity window.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The directory holding its files.
    pub dir: PathBuf,
}

/// Both slots of a self-signed device (empty for other entities).
pub fn slots(ws: &Workspace, name: &str) -> Result<Vec<SlotView>> {
    let e = ws.load(name)?;
    if !(e.meta.self_signed && e.meta.kind == Kind::Device) {
        return Ok(vec![]);
    }
    let main = e.meta.slot.unwrap_or(Slot::Primary);
    let od = e.dir.join(main.other().dir_name());
    if e.meta.slot.is_none() && !od.exists() {
        return Ok(vec![]);
    }
    let mut v = vec![SlotView {
        slot: main,
        sha1: e.meta.sha1.clone(),
        sha256: e.meta.sha256.clone(),
        not_after: e.meta.not_after,
        dir: e.dir.clone(),
    }];
    if od.join(META_FILE).exists() {
        let m = read_meta(&od.join(META_FILE))?;
        v.push(SlotView {
            slot: main.other(),
            sha1: m.sha1,
            sha256: m.sha256,
            not_after: m.not_after,
            dir: od,
        });
    }
    v.sort_by_key(|s| s.slot != Slot::Primary);
    Ok(v)
}
