//! Planning an export: the entity, its issuers and key loaded once, and every file of every
//! asked format rendered in memory (each path once) before anything is written.

use super::layouts::{absolute, edge_config};
use super::source::{Files, Plan, Planned, Source, key_what};
use super::{Error, ExportOptions, ExportReport, Format, Result};

pub(super) fn plan(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
) -> Result<Vec<Planned>> {
    let name = src.name().to_string();
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
    let mut plan = Plan {
        src,
        opts,
        report,
        files: Files {
            dir: absolute(&opts.out_dir),
            list: Vec::new(),
        },
    };
    for f in &formats {
        match f {
            Format::Pem => plan.pem()?,
            Format::Der => plan.der()?,
            Format::Pfx => {
                let pw = opts.password.as_deref().ok_or(Error::PasswordNeeded)?;
                plan.pfx(format!("{name}.pfx"), pw)?;
            }
            Format::Azure => plan.azure()?,
            Format::Edge => plan.edge()?,
            Format::Aws => plan.aws()?,
        }
    }
    Ok(plan.files.list)
}

impl Plan<'_> {
    /// `pem`: certificate, key, chain, full chain and the root.
    pub(super) fn pem(&mut self) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
        let name = src.name().to_string();
        let kp = opts.key_password.as_deref();
        let self_signed_leaf = src.leaf.meta.self_signed && !src.leaf.meta.kind.is_ca();
        self.files.add(
            format!("{name}.cert.pem"),
            src.leaf.cert_pem.clone().into_bytes(),
            0o644,
            "certificate",
        );
        if src.key.is_some() {
            let key = src.key_pem(kp)?;
            self.files
                .add(format!("{name}.key.pem"), key, 0o600, &key_what(kp));
        } else {
            self.no_key(&name);
        }
        self.files.add(
            format!("{name}.chain.pem"),
            src.chain_pem().into_bytes(),
            0o644,
            "chain (leaf, then intermediates; what a device sends)",
        );
        self.files.add(
            format!("{name}.fullchain.pem"),
            src.fullchain_pem().into_bytes(),
            0o644,
            "full chain (leaf up to and including the root)",
        );
        match src.root() {
                Some(root) => {
                    self.files.add(format!("{}.root.pem", root.meta.name), root.cert_pem.clone().into_bytes(), 0o644, "root CA certificate (trust anchor)")
                }
                None if self_signed_leaf => self.report.notes.push(format!(
                    "\"{name}\" is self-signed: there is no root file; the hub trusts its thumbprint"
                )),
                None => self.report.notes.push(format!(
                    "the chain of \"{name}\" stops at \"{}\", which is not self-signed: no root file written",
                    src.issuers.last().map(|e| e.meta.name.as_str()).unwrap_or(name.as_str())
                )),
            }
        Ok(())
    }

    /// `der`: certificate and key.
    pub(super) fn der(&mut self) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
        let name = src.name().to_string();
        let kp = opts.key_password.as_deref();
        self.files.add(
            format!("{name}.cer"),
            src.leaf.cert_der.clone(),
            0o644,
            "certificate (DER)",
        );
        if src.key.is_some() {
            let key = src.key_der(kp)?;
            let what = format!("{} (DER)", key_what(kp));
            self.files.add(format!("{name}.key.der"), key, 0o600, &what);
        } else {
            self.no_key(&name);
        }
        Ok(())
    }

    /// `pfx`: the PKCS#12 file, under `password`.
    pub(super) fn pfx(&mut self, file: String, password: &str) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
        let bytes = src.pfx(opts.pfx_profile, password, opts.include_chain)?;
        let what = format!("PKCS#12 ({} profile)", opts.pfx_profile);
        self.files.add(file, bytes, 0o600, &what);
        Ok(())
    }

    /// Say that a format's key file was left out: the workspace holds no key for `name`.
    pub(super) fn no_key(&mut self, name: &str) {
        self.report.notes.push(format!(
            "\"{name}\" has no private key in the workspace: no key file written"
        ));
    }
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
        Format::Azure | Format::Aws => Err(Error::SeveralFiles),
    }
}
