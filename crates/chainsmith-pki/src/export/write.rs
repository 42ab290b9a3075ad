//! Writing a planned export: the overwrite rule, keys 0600 from the first byte, undo on
//! failure, and every PFX read back to report what really protects it.

use super::source::Planned;
use super::{
    AZURE_DEFAULT_PASSWORD, Error, ExportOptions, ExportReport, PfxReport, Result, WrittenFile, pfx,
};
use crate::store::{self, write_atomic, write_new};
use std::path::PathBuf;

pub(super) fn write_planned(
    planned: &mut Vec<Planned>,
    report: &mut ExportReport,
    opts: &ExportOptions,
    force: bool,
) -> Result<()> {
    if !force {
        let unchanged = store::refuse_overwrite(
            planned
                .iter()
                .map(|p| (p.path.as_path(), p.bytes.as_slice())),
            false,
        )?;
        for u in &unchanged {
            report.notes.push(format!(
                "{} already holds the same content: left as it is",
                u.display()
            ));
        }
        planned.retain(|p| !unchanged.contains(&p.path));
    }
    if !opts.out_dir.exists() {
        store::make_private_dir_all(&opts.out_dir)?;
    }
    let mut written: Vec<PathBuf> = Vec::new();
    for p in planned.iter() {
        let r = if force {
            write_atomic(&p.path, &p.bytes, p.mode)
        } else {
            write_new(&p.path, &p.bytes, p.mode)
        };
        if let Err(e) = r {
            for w in &written {
                let _ = std::fs::remove_file(w);
            }
            return Err(match e {
                store::Error::Io { ref detail, .. } if detail.contains("exists") => {
                    store::Error::Exists(vec![p.path.clone()]).into()
                }
                other => other.into(),
            });
        }
        written.push(p.path.clone());
        report.files.push(WrittenFile {
            path: p.path.clone(),
            what: p.what.clone(),
            mode: p.mode,
        });
    }
    Ok(())
}

/// Read every PFX back with its password and name what protects it.
pub(super) fn readback_pfx(
    planned: &[Planned],
    report: &mut ExportReport,
    opts: &ExportOptions,
    name: &str,
) -> Result<()> {
    for p in planned
        .iter()
        .filter(|p| p.path.extension().is_some_and(|e| e == "pfx"))
    {
        let bytes =
            std::fs::read(&p.path).map_err(|e| store::io_error("reading back", &p.path, e))?;
        let default_password = opts.password.is_none();
        let pw = opts.password.as_deref().unwrap_or(AZURE_DEFAULT_PASSWORD);
        let opened = pfx::open(&bytes, pw, &p.path.display().to_string())?;
        let algorithms = pfx::decode(&bytes)?;
        if algorithms.uses_rc2() {
            return Err(Error::PfxWithRc2 {
                path: p.path.clone(),
            });
        }
        report.pfx.push(PfxReport {
            path: p.path.clone(),
            profile: opts.pfx_profile,
            friendly_name: name.to_string(),
            certificates: usize::from(opened.leaf.is_some()) + opened.chain.len(),
            has_key: opened.key.is_some(),
            default_password,
            algorithms,
        });
    }
    Ok(())
}
