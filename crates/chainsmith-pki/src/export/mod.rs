//! Export an entity as files other tools read: PEM, DER, PKCS#12 (two profiles), the Azure
//! IoT Node SDK tool's layout, and an IoT Edge provisioning snippet.
//!
//! Every file is rendered in memory first; nothing is written if any target exists (unless
//! `force`), files holding a private key are created 0600 before their first byte, and a
//! failure part-way removes what this call wrote. A PFX is decoded again after writing and
//! the report names the algorithms really found in it.

mod error;
mod layouts;
pub mod pfx;
mod plan;
mod source;
mod write;

pub use error::{Error, Result, UnknownChoice};
pub use layouts::{AzureNames, file_uri, node_camelcase};
pub use pfx::{PfxAlgorithms, PfxProfile, Protection};

use plan::{plan, render_stdout};
use source::{Planned, Source};
use write::{readback_pfx, write_planned};

use crate::store::{Slot, Workspace};
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The password the Azure IoT tutorials use for `NAME.pfx`; used by the azure layout only
/// when no password is given, and always announced.
pub(crate) const AZURE_DEFAULT_PASSWORD: &str = "1234";

/// What to write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// NAME.cert.pem, NAME.key.pem, NAME.chain.pem, NAME.fullchain.pem, ROOT.root.pem.
    Pem,
    /// NAME.cer and NAME.key.der.
    Der,
    /// NAME.pfx.
    Pfx,
    /// NAME_cert.pem, NAME_key.pem, NAME_fullchain.pem, NAME.pfx (Azure Node SDK tool layout).
    Azure,
    /// NAME.edge-config.toml: IoT Edge DPS X.509 provisioning.
    Edge,
    /// certificate.pem.crt, private.pem.key, deviceCertAndCACert.crt, AmazonRootCA1.pem (the
    /// AWS console's and SDK samples' names).
    Aws,
}

impl Format {
    /// Every format, in the order menus list them.
    pub const ALL: [Format; 6] = [
        Format::Pem,
        Format::Der,
        Format::Pfx,
        Format::Azure,
        Format::Edge,
        Format::Aws,
    ];
    /// The names of [`Format::ALL`], in that order.
    pub const NAMES: [&'static str; 6] = {
        let mut names = [""; 6];
        let mut i = 0;
        while i < names.len() {
            names[i] = Format::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// The name the CLI and the manifest use.
    pub const fn as_str(self) -> &'static str {
        match self {
            Format::Pem => "pem",
            Format::Der => "der",
            Format::Pfx => "pfx",
            Format::Azure => "azure",
            Format::Edge => "edge",
            Format::Aws => "aws",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Format {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "pem" => Ok(Format::Pem),
            "der" | "cer" => Ok(Format::Der),
            "pfx" | "p12" | "pkcs12" => Ok(Format::Pfx),
            "azure" => Ok(Format::Azure),
            "edge" => Ok(Format::Edge),
            "aws" => Ok(Format::Aws),
            _ => Err(UnknownChoice::Format {
                given: s.to_string(),
                choices: &Format::NAMES,
            }
            .into()),
        }
    }
}

/// How to export.
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Directory for the files (created 0700 when missing).
    pub out_dir: PathBuf,
    /// Formats to write (empty means pem).
    pub formats: Vec<Format>,
    /// PFX password. Required for `pfx`; `azure` falls back to "1234" and says so.
    pub password: Option<String>,
    /// Which algorithms protect the PFX.
    pub pfx_profile: PfxProfile,
    /// Put the issuers in the PFX (default true).
    pub include_chain: bool,
    /// Encrypt exported key files (PKCS#8, PBES2 AES-256-CBC).
    pub key_password: Option<String>,
    /// Overwrite existing files.
    pub force: bool,
    /// Render the single file of the one format into `ExportReport::stdout` instead of writing.
    pub stdout: bool,
    /// DPS ID scope for the edge snippet (a placeholder when None).
    pub id_scope: Option<String>,
    /// How the `azure` layout names its files.
    pub names: AzureNames,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            out_dir: PathBuf::from("."),
            formats: vec![Format::Pem],
            password: None,
            pfx_profile: PfxProfile::Modern,
            include_chain: true,
            key_password: None,
            force: false,
            stdout: false,
            id_scope: None,
            names: AzureNames::Exact,
        }
    }
}

impl ExportOptions {
    /// Options for `formats` into `out_dir`, everything else at its default.
    pub fn new(out_dir: impl Into<PathBuf>, formats: &[Format]) -> Self {
        ExportOptions {
            out_dir: out_dir.into(),
            formats: formats.to_vec(),
            ..Default::default()
        }
    }
}

/// One file written.
#[derive(Clone, Debug, Serialize)]
pub struct WrittenFile {
    /// Where it was written.
    pub path: PathBuf,
    /// "certificate", "private key (PKCS#8)", "chain (leaf + intermediates)", ...
    pub what: String,
    /// Unix mode, e.g. 0o600 (JSON: the octal string "0600").
    #[serde(serialize_with = "octal")]
    pub mode: u32,
}

fn octal<S: serde::Serializer>(mode: &u32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{mode:04o}"))
}

/// A PFX written and read back.
#[derive(Clone, Debug, Serialize)]
pub struct PfxReport {
    /// Where it was written.
    pub path: PathBuf,
    /// The profile asked for.
    pub profile: PfxProfile,
    /// The friendly name stored with the key and certificate.
    pub friendly_name: String,
    /// Certificates found when opening it with the password (leaf + chain).
    pub certificates: usize,
    /// Whether it holds the private key.
    pub has_key: bool,
    /// True when the azure layout used the tutorials' password "1234".
    pub default_password: bool,
    /// The algorithms found in the file when read back.
    pub algorithms: PfxAlgorithms,
}

/// What an export did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ExportReport {
    /// The entity exported.
    pub name: String,
    /// Every file written.
    pub files: Vec<WrittenFile>,
    /// Each PFX written, as read back.
    pub pfx: Vec<PfxReport>,
    /// The edge snippet, to print as well as write.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edge_config: Option<String>,
    /// Things the user should know (default password, missing key, ...).
    pub notes: Vec<String>,
    /// With `stdout`: the bytes to write to standard output.
    #[serde(skip)]
    pub stdout: Option<Vec<u8>>,
}

/// Export one entity (for a self-signed device with two slots: the main one). See the module
/// docs for the guarantees.
pub fn export_entity(ws: &Workspace, name: &str, opts: &ExportOptions) -> Result<ExportReport> {
    export_impl(ws, name, None, opts)
}

/// Export one thumbprint slot of a self-signed device (files are still named after the device).
pub fn export_slot(
    ws: &Workspace,
    name: &str,
    slot: Slot,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    export_impl(ws, name, Some(slot), opts)
}

fn export_impl(
    ws: &Workspace,
    name: &str,
    slot: Option<Slot>,
    opts: &ExportOptions,
) -> Result<ExportReport> {
    if opts.stdout {
        let src = Source::load(ws, name, slot)?;
        let mut report = ExportReport {
            name: name.to_string(),
            ..Default::default()
        };
        report.stdout = Some(render_stdout(&src, opts, &mut report)?);
        return Ok(report);
    }
    prepare(ws, name, slot, opts)?.write(opts.force)
}

/// An export rendered in memory, not written yet: a caller exporting many entities (`apply`)
/// checks every target of every export before it writes any.
pub struct Prepared {
    planned: Vec<Planned>,
    report: ExportReport,
    opts: ExportOptions,
}

/// Render an export (see `export_entity`, `export_slot`) without writing anything.
pub fn prepare(
    ws: &Workspace,
    name: &str,
    slot: Option<Slot>,
    opts: &ExportOptions,
) -> Result<Prepared> {
    let src = Source::load(ws, name, slot)?;
    let mut report = ExportReport {
        name: name.to_string(),
        ..Default::default()
    };
    let planned = plan(&src, opts, &mut report)?;
    Ok(Prepared {
        planned,
        report,
        opts: opts.clone(),
    })
}

impl Prepared {
    /// Every file the export would write, with its bytes.
    pub fn targets(&self) -> impl Iterator<Item = (&Path, &[u8])> {
        self.planned
            .iter()
            .map(|p| (p.path.as_path(), p.bytes.as_slice()))
    }

    /// Write the files: without `force` under `store::refuse_overwrite`'s rule, with it
    /// replacing whatever is there.
    pub fn write(self, force: bool) -> Result<ExportReport> {
        let Prepared {
            mut planned,
            mut report,
            opts,
        } = self;
        let opts = &opts;
        let name = report.name.clone();
        write_planned(&mut planned, &mut report, opts, force)?;
        readback_pfx(&planned, &mut report, opts, &name)?;
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_camelcase_matches_npm_camelcase_4_1_0() {
        // Each right-hand side printed by node with npm camelcase 4.1.0 itself.
        for (input, want) in [
            ("sample-device-01", "sampleDevice01"),
            ("sampleDevice01", "sampleDevice01"),
            ("dev1", "dev1"),
            ("Test Root Cert", "testRootCert"),
            ("EZCA Test Root", "ezcaTestRoot"),
            ("device_01", "device01"),
            ("my.device.7", "myDevice7"),
            ("ABC-def", "abcDef"),
            ("XMLHttpRequest", "xmlHttpRequest"),
            ("a--b", "aB"),
            ("x_", "x"),
            ("_lead", "lead"),
            ("dev-{001}", "dev-{001}"),
            ("Dev 01 A", "dev01A"),
            ("sensor-7", "sensor7"),
            ("A", "a"),
            ("a-_#b", "a_#b"),
            ("foo-#bar", "foo-#bar"),
            ("HTTPServer2", "httpServer2"),
        ] {
            assert_eq!(node_camelcase(input), want, "{input}");
        }
    }

    #[test]
    fn formats_parse() {
        for f in Format::ALL {
            assert_eq!(f.as_str().parse::<Format>().unwrap(), f);
        }
        assert!(
            "zip"
                .parse::<Format>()
                .unwrap_err()
                .to_string()
                .contains("pem, der, pfx, azure, edge")
        );
    }

    #[test]
    fn file_uris_are_encoded() {
        assert_eq!(
            file_uri(Path::new("/a b/line-7.sensor.01.key.pem")),
            "file:///a%20b/line-7.sensor.01.key.pem"
        );
    }
}
