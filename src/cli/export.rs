//! `export`: a thin face over `crate::export`.

use super::{CliResult, Global, print_json};
use crate::export::{ExportOptions, Format, PfxProfile, export_entity, export_slot};
use clap::Args;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

pub const PASSWORD_ENV: &str = "CHAINSMITH_PFX_PASSWORD";

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The entity to export.
    pub name: String,
    /// Directory for the files (created 0700 when missing).
    #[arg(long, value_name = "DIR", required_unless_present = "stdout")]
    pub out: Option<PathBuf>,
    /// pem (default), der, pfx, azure, edge; repeat or comma-separate for several.
    #[arg(long = "format", value_name = "FORMAT", value_delimiter = ',', value_parser = parse_format)]
    pub formats: Vec<Format>,
    /// PFX password (visible in the process list: prefer --password-file or CHAINSMITH_PFX_PASSWORD).
    #[arg(long, value_name = "P", conflicts_with = "password_file")]
    pub password: Option<String>,
    /// Read the PFX password from the first line of FILE.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// modern (AES-256, SHA-256 MAC) or compat (3DES, SHA-1 MAC: Windows Server 2016, older macOS, Java 8).
    #[arg(long, value_name = "PROFILE", default_value = "modern", value_parser = parse_profile)]
    pub pfx_profile: PfxProfile,
    /// Leave the issuers out of the PFX.
    #[arg(long)]
    pub no_chain: bool,
    /// Encrypt exported key files with this password (PKCS#8, AES-256-CBC).
    #[arg(long, value_name = "P")]
    pub key_password: Option<String>,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
    /// Write the one file of a single-file format to standard output (pem: leaf + intermediates).
    #[arg(long, conflicts_with = "force")]
    pub stdout: bool,
    /// For a self-signed device with two thumbprint slots: which one (default: the main one).
    #[arg(long, value_name = "SLOT", value_parser = parse_slot)]
    pub slot: Option<crate::store::Slot>,
    /// DPS ID scope for the edge snippet.
    #[arg(long, value_name = "SCOPE")]
    pub id_scope: Option<String>,
    /// File names of the azure layout: exact (the device id as is, default) or node-sdk
    /// (the CN camelCased as the Azure Node SDK's create_test_cert.js does: sampleDevice01_cert.pem).
    #[arg(long, value_name = "NAMES", default_value = "exact", value_parser = parse_names)]
    pub names: crate::export::AzureNames,
}

fn parse_names(s: &str) -> Result<crate::export::AzureNames, String> {
    s.parse().map_err(|e: crate::export::Error| e.to_string())
}

fn parse_format(s: &str) -> Result<Format, String> {
    s.parse().map_err(|e: crate::export::Error| e.to_string())
}

fn parse_slot(s: &str) -> Result<crate::store::Slot, String> {
    match s.to_ascii_lowercase().as_str() {
        "primary" => Ok(crate::store::Slot::Primary),
        "secondary" => Ok(crate::store::Slot::Secondary),
        _ => Err(format!("slot \"{s}\" must be primary or secondary")),
    }
}

fn parse_profile(s: &str) -> Result<PfxProfile, String> {
    s.parse().map_err(|e: crate::export::Error| e.to_string())
}

/// A password from --password, --password-file or the environment, in that order.
pub fn resolve_password(flag: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let pw = if let Some(p) = flag {
        Some(p.to_string())
    } else if let Some(f) = file {
        let text = crate::store::read_input_text(f)
            .map_err(|e| anyhow::anyhow!("cannot read the password file: {e}"))?;
        Some(text.lines().next().unwrap_or("").to_string())
    } else {
        std::env::var(PASSWORD_ENV).ok()
    };
    if pw.as_deref() == Some("") {
        anyhow::bail!(
            "the PFX password is empty; give a non-empty one with --password-file FILE or {PASSWORD_ENV}"
        );
    }
    Ok(pw)
}

pub fn run(global: &Global, a: ExportArgs) -> CliResult {
    let ws = global.existing_workspace()?;
    let password = resolve_password(a.password.as_deref(), a.password_file.as_deref())?;
    let opts = ExportOptions {
        out_dir: a.out.clone().unwrap_or_else(|| PathBuf::from(".")),
        formats: if a.formats.is_empty() {
            vec![Format::Pem]
        } else {
            a.formats.clone()
        },
        password,
        pfx_profile: a.pfx_profile,
        include_chain: !a.no_chain,
        key_password: a.key_password.clone(),
        force: a.force,
        stdout: a.stdout,
        id_scope: a.id_scope.clone(),
        names: a.names,
    };
    if a.stdout
        && matches!(opts.formats.as_slice(), [Format::Pfx] | [Format::Der])
        && std::io::stdout().is_terminal()
    {
        anyhow::bail!(
            "--stdout with --format {} writes binary data; redirect it to a file or a pipe",
            opts.formats[0]
        );
    }
    let report = match a.slot {
        Some(slot) => export_slot(&ws, &a.name, slot, &opts)?,
        None => export_entity(&ws, &a.name, &opts)?,
    };
    if let Some(bytes) = &report.stdout {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        out.flush()?;
        return Ok(());
    }
    if global.json {
        print_json(&report);
        return Ok(());
    }
    for f in &report.files {
        say!(
            "wrote {}  ({}, mode {:04o})",
            f.path.display(),
            f.what,
            f.mode
        );
    }
    for p in &report.pfx {
        let a = &p.algorithms;
        say!(
            "{}: read back with the password: {} certificate(s){}, friendly name \"{}\", {} profile",
            p.path.display(),
            p.certificates,
            if p.has_key {
                " and the private key"
            } else {
                ", no key"
            },
            p.friendly_name,
            p.profile
        );
        let mac = match (&a.mac_digest, a.mac_iterations) {
            (Some(d), Some(i)) => format!("HMAC-{d}, {i} iterations"),
            (Some(d), None) => format!("HMAC-{d}"),
            _ => "none".into(),
        };
        say!("  MAC           {mac}");
        let bags = a.key_bags.iter().map(|k| ("key", k));
        for (what, bag) in bags.chain(a.cert_bags.iter().map(|c| ("certificates", c))) {
            let iterations = bag
                .iterations
                .map(|i| format!(", {i} iterations"))
                .unwrap_or_default();
            say!("  {what:<13} {}{iterations}", bag.algorithm);
        }
    }
    if let Some(cfg) = &report.edge_config {
        say!();
        super::out(cfg);
    }
    for n in &report.notes {
        say!("note: {n}");
    }
    Ok(())
}
