//! Planning an export: the entity, its issuers and key loaded once, and every file of every
//! asked format rendered in memory (each path once) before anything is written.

use super::layouts::{absolute, edge_config, plan_azure, plan_edge};
use super::source::{Files, Planned, Source, key_what};
use super::{Error, ExportOptions, ExportReport, Format, Result};

pub(super) fn plan(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> Result<Vec<Planned>> {
    let name = src.name().to_string();
    let mut files = Files {
        dir: absolute(&opts.out_dir),
        list: Vec::new(),
    };
    let mut formats = if opts.formats.is_empty() {
        vec![Format::Pem]
    } else {
        opts.formats.clone()
    };
    formats.dedup();
    if let Some(r) = &src.leaf.meta.revoked {
        report.notes.push(format!(
            "\"{name}\" is revoked ({}); {}",
            r.reason,
            crate::pki::HUB_DOES_NOT_CHECK_CRLS
        ));
    }
    for f in &formats {
        match f {
            Format::Pem => plan_pem(src, opts, report, &mut files)?,
            Format::Der => plan_der(src, opts, report, &mut files)?,
            Format::Pfx => {
                let pw = opts.password.as_deref().ok_or(Error::PasswordNeeded)?;
                files.add(
                    format!("{name}.pfx"),
                    src.pfx(opts.pfx_profile, pw, opts.include_chain)?,
                    0o600,
                    &format!("PKCS#12 ({} profile)", opts.pfx_profile),
                );
            }
            Format::Azure => plan_azure(src, opts, report, &mut files)?,
            Format::Edge => plan_edge(src, opts, report, &mut files)?,
        }
    }
    Ok(files.list)
}

/// `pem`: certificate, key, chain, full chain and the root.
pub(super) fn plan_pem(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
    files: &mut Files,
) -> Result<()> {
    let name = src.name().to_string();
    let kp = opts.key_password.as_deref();
    let self_signed_leaf = src.leaf.meta.self_signed && !src.leaf.meta.kind.is_ca();
    files.add(
        format!("{name}.cert.pem"),
        src.leaf.cert_pem.clone().into_bytes(),
        0o644,
        "certificate",
    );
    if src.key.is_some() {
        let key = src.key_pem(kp)?;
        files.add(format!("{name}.key.pem"), key, 0o600, &key_what(kp));
    } else {
        no_key(report, &name);
    }
    files.add(
        format!("{name}.chain.pem"),
        src.chain_pem().into_bytes(),
        0o644,
        "chain (leaf, then intermediates; what a device sends)",
    );
    files.add(
        format!("{name}.fullchain.pem"),
        src.fullchain_pem().into_bytes(),
        0o644,
        "full chain (leaf up to and including the root)",
    );
    match src.root() {
            Some(root) => {
                files.add(format!("{}.root.pem", root.meta.name), root.cert_pem.clone().into_bytes(), 0o644, "root CA certificate (trust anchor)")
            }
            None if self_signed_leaf => report.notes.push(format!(
                "\"{name}\" is self-signed: there is no root file; the hub trusts its thumbprint"
            )),
            None => report.notes.push(format!(
                "the chain of \"{name}\" stops at \"{}\", which is not self-signed: no root file written",
                src.issuers.last().map(|e| e.meta.name.as_str()).unwrap_or(name.as_str())
            )),
        }
    Ok(())
}

/// `der`: certificate and key.
pub(super) fn plan_der(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
    files: &mut Files,
) -> Result<()> {
    let name = src.name().to_string();
    let kp = opts.key_password.as_deref();
    files.add(
        format!("{name}.cer"),
        src.leaf.cert_der.clone(),
        0o644,
        "certificate (DER)",
    );
    if src.key.is_some() {
        let key = src.key_der(kp)?;
        let what = format!("{} (DER)", key_what(kp));
        files.add(format!("{name}.key.der"), key, 0o600, &what);
    } else {
        no_key(report, &name);
    }
    Ok(())
}

/// Say that a format's key file was left out: the workspace holds no key for `name`.
fn no_key(report: &mut ExportReport, name: &str) {
    report.notes.push(format!(
        "\"{name}\" has no private key in the workspace: no key file written"
    ));
}

/// The bytes `--stdout` prints for a single-file format.
pub(super) fn render_stdout(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> Result<Vec<u8>> {
    let formats = if opts.formats.is_empty() {
        vec![Format::Pem]
    } else {
        opts.formats.clone()
    };
    let [format] = formats.as_slice() else {
        return Err(Error::OneFormat);
    };
    match format {
        Format::Pem => Ok(src.chain_pem().into_bytes()),
        Format::Der => Ok(src.leaf.cert_der.clone()),
        Format::Pfx => {
            let pw = opts.password.as_deref().ok_or(Error::PasswordNeeded)?;
            src.pfx(opts.pfx_profile, pw, opts.include_chain)
        }
        Format::Edge => {
            let text = edge_config(src, &absolute(&opts.out_dir), opts);
            report.edge_config = Some(text.clone());
            Ok(text.into_bytes())
        }
        Format::Azure => Err(Error::SeveralFiles),
    }
}
