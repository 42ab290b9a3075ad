//! An entity's past certificates: what goes into `history/` and reading it back.

use super::{Error, Result};
use crate::store::{self, Entity, HISTORY_DIR, Meta, NewEntity, Workspace};
use std::path::Path;

/// Every file of an entity directory except its current cert, key and meta (history, slots),
/// as (relative path, bytes); `skip_dir` leaves one top-level subdirectory out.
pub(super) fn extras_of(dir: &Path, skip_dir: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
    fn walk(base: &Path, rel: &str, out: &mut Vec<(String, Vec<u8>)>) -> Result<()> {
        let dir = if rel.is_empty() {
            base.to_path_buf()
        } else {
            base.join(rel)
        };
        for e in std::fs::read_dir(&dir).map_err(|e| store::io_error("reading", &dir, e))? {
            let e = e.map_err(|e| store::io_error("reading", &dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let r = if rel.is_empty() {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let p = e.path();
            if p.is_dir() {
                walk(base, &r, out)?;
            } else {
                out.push((
                    r,
                    std::fs::read(&p).map_err(|e| store::io_error("reading", &p, e))?,
                ));
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| store::io_error("reading", dir, e))? {
        let e = e.map_err(|e| store::io_error("reading", dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if e.path().is_dir() && Some(name.as_str()) != skip_dir {
            walk(dir, &name, &mut out)?;
        }
    }
    Ok(out)
}

/// The files that put the current certificate of `entity` into its history.
pub(super) fn history_entry(entity: &Entity, with_key: bool) -> Result<Vec<(String, Vec<u8>)>> {
    let base = format!("{HISTORY_DIR}/{}", entity.meta.serial);
    let mut v = vec![
        (
            format!("{base}/{}", store::CERT_FILE),
            entity.cert_pem.clone().into_bytes(),
        ),
        (
            format!("{base}/{}", store::META_FILE),
            entity.meta.to_toml().into_bytes(),
        ),
    ];
    if with_key && entity.meta.has_key {
        v.push((
            format!("{base}/{}", store::KEY_FILE),
            entity.read_key_pem()?.into_bytes(),
        ));
    }
    Ok(v)
}

/// `new ... --force` over an existing entity: its certificate (and key) go to the new entity's
/// history like a renewal's, with the history and slots it already had, so a replaced
/// certificate can still be listed and revoked.
pub(crate) fn keep_replaced(ws: &Workspace, new: &mut NewEntity) -> store::Result<()> {
    if !ws.exists(&new.meta.name) {
        return Ok(());
    }
    let old = ws.load(&new.meta.name)?;
    let kept = extras_of(&old.dir, None).and_then(|mut v| {
        v.extend(history_entry(&old, true)?);
        Ok(v)
    });
    match kept {
        Ok(v) => {
            new.extra.extend(v);
            Ok(())
        }
        Err(Error::Store(e)) => Err(e),
        Err(e) => Err(store::Error::Damaged {
            path: old.dir,
            what: store::Damage::Other(e.to_string()),
        }),
    }
}

/// Past certificates of an entity, oldest first.
pub fn history(ws: &Workspace, name: &str) -> Result<Vec<Meta>> {
    let entity = ws.load(name)?;
    let dir = entity.dir.join(HISTORY_DIR);
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&dir) {
        for e in rd.flatten() {
            out.push(store::read_meta(&e.path().join(store::META_FILE))?);
        }
    }
    out.sort_by_key(|m| (m.not_before, m.created));
    Ok(out)
}
