//! Export an entity as files other tools read: PEM, DER, PKCS#12 (two profiles), the Azure
//! IoT Node SDK tool's layout, and an IoT Edge provisioning snippet.
//!
//! Every file is rendered in memory first; nothing is written if any target exists (unless
//! `force`), files holding a private key are created 0600 before their first byte, and a
//! failure part-way removes what this call wrote. A PFX is decoded again after writing and
//! the report names the algorithms really found in it.

pub mod pfx;

pub use pfx::{PfxAlgorithms, PfxProfile, Protection};

use crate::error::Remedy;
use crate::store::{self, Entity, Kind, Slot, Workspace, chain_of, write_atomic, write_new};
use openssl::pkey::{PKey, Private};
use openssl::symm::Cipher;
use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The password the Azure IoT tutorials use for `NAME.pfx`; used by the azure layout only
/// when no password is given, and always announced.
pub const AZURE_DEFAULT_PASSWORD: &str = "1234";

/// What can go wrong in an export; each message says the fix in domain words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the entity or writing the files.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Encoding the key or the PFX.
    #[error(transparent)]
    Pki(crate::pki::Error),
    /// A format, file-name style or PFX profile that is not one of the choices (the message
    /// lists them).
    #[error("{0}")]
    UnknownChoice(String),
    /// The entity's private key is in the workspace but cannot be read.
    #[error("{0}")]
    UnreadableKey(String),
    /// A file name the Node SDK tool's layout would give is not safe to write.
    #[error("{0}")]
    UnsafeFileName(String),
    /// The thumbprint slot asked for holds no certificate.
    #[error("{0}")]
    NoSlot(String),
    /// A PFX password with a NUL character, which PKCS#12's BMPString password cannot hold.
    #[error("the PFX password contains a NUL character; choose another password")]
    PasswordNul,
    /// A check of chainsmith's own output failed: a bug to report.
    #[error("{0}")]
    Internal(String),
    /// The PFX password does not open the file (its name in the message).
    #[error("the password for {0} is wrong (the PKCS#12 MAC does not verify); check the password")]
    WrongPassword(String),
    /// A PFX was asked for without a password.
    #[error("a PFX needs a password")]
    PasswordNeeded,
    /// A file that needs the private key, for an entity that has none here.
    #[error(
        "\"{name}\" has no private key in the workspace (trust-only import, or a CSR whose key stays on the device), so {what} cannot be written; export its certificates only (PEM)"
    )]
    NoKey {
        /// The entity.
        name: String,
        /// The file that needs the key.
        what: String,
    },
    /// Standard output takes a single format.
    #[error("writing to standard output takes exactly one format (pem, der, pfx or edge)")]
    OneFormat,
    /// The azure layout cannot go to standard output.
    #[error(
        "the azure layout is several files; write them into a directory, not to standard output"
    )]
    SeveralFiles,
}

impl Error {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Store(s) => s.kind(),
            Error::Pki(p) => p.kind(),
            Error::WrongPassword(_) => "wrong-password",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Store(s) => s.remedy(),
            Error::Pki(p) => p.remedy(),
            Error::WrongPassword(_) | Error::PasswordNeeded => Some(Remedy::Password),
            Error::NoKey { .. } => Some(Remedy::CertificatesOnly),
            Error::OneFormat => Some(Remedy::OneFormat),
            Error::SeveralFiles => Some(Remedy::OutDir),
            Error::UnknownChoice(_)
            | Error::UnreadableKey(_)
            | Error::UnsafeFileName(_)
            | Error::NoSlot(_)
            | Error::PasswordNul
            | Error::Internal(_) => None,
        }
    }
}

impl crate::error::Classified for Error {
    fn kind(&self) -> &'static str {
        Error::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        Error::remedy(self)
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Pki(e.into())
    }
}

/// An export's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::pki::Error> for Error {
    /// A wrong PFX password keeps its own kind (`wrong-password`) whichever module found it.
    fn from(e: crate::pki::Error) -> Self {
        match e {
            crate::pki::Error::WrongPassword(what) => Error::WrongPassword(what),
            other => Error::Pki(other),
        }
    }
}

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
}

impl Format {
    /// Every format, in the order menus list them.
    pub const ALL: [Format; 5] = [
        Format::Pem,
        Format::Der,
        Format::Pfx,
        Format::Azure,
        Format::Edge,
    ];
    /// The name the CLI and the manifest use.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Pem => "pem",
            Format::Der => "der",
            Format::Pfx => "pfx",
            Format::Azure => "azure",
            Format::Edge => "edge",
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
            _ => Err(Error::UnknownChoice(format!(
                "export format \"{s}\" is unknown; choose from pem, der, pfx, azure, edge"
            ))),
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

/// File names of the `azure` layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AzureNames {
    /// NAME = the entity name (the device id) exactly: `sample-device-01_cert.pem`.
    #[default]
    Exact,
    /// What the Azure IoT Node SDK's `provisioning/tools/create_test_cert.js` writes: the
    /// certificate's CN through npm `camelcase` 4.1: `sampleDevice01_cert.pem`. Guides built on
    /// that tool (IoT Central's) name these files.
    NodeSdk,
}

impl std::str::FromStr for AzureNames {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "exact" | "id" => Ok(AzureNames::Exact),
            "node-sdk" | "node" => Ok(AzureNames::NodeSdk),
            _ => Err(Error::UnknownChoice(format!(
                "file names \"{s}\" are unknown; choose exact (the device id as is) or node-sdk (create_test_cert.js's camelCase)"
            ))),
        }
    }
}

/// npm `camelcase` 4.1.0, the version `create_test_cert.js` depends on (`^4.1.0`), step for
/// step: trim; one character is lower-cased; all lower-case letters and digits stay; with
/// upper case, a `-` goes before each case change (`preserveCamelCase`); then leading `_ . -
/// space` go, everything is lower-cased, and each run of them with the word character after it
/// becomes that character upper-cased (a run at the end just goes).
pub fn node_camelcase(input: &str) -> String {
    let s: Vec<char> = input.trim().chars().collect();
    if s.is_empty() {
        return String::new();
    }
    if s.len() == 1 {
        return s[0].to_lowercase().collect();
    }
    if s.iter()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return s.into_iter().collect();
    }
    let lower = |c: char| c.to_lowercase().collect::<String>() == c.to_string();
    let upper = |c: char| c.to_uppercase().collect::<String>() == c.to_string();
    let mut s = s;
    if s.iter().any(|c| !lower(*c)) {
        // preserveCamelCase
        let (mut last_lower, mut last_upper, mut last_last_upper) = (false, false, false);
        let mut i = 0;
        while i < s.len() {
            let c = s[i];
            if last_lower && c.is_ascii_alphabetic() && upper(c) {
                s.insert(i, '-');
                last_lower = false;
                last_last_upper = last_upper;
                last_upper = true;
                i += 1;
            } else if last_upper && last_last_upper && c.is_ascii_alphabetic() && lower(c) {
                s.insert(i - 1, '-');
                last_last_upper = last_upper;
                last_upper = false;
                last_lower = true;
            } else {
                last_lower = lower(c);
                last_last_upper = last_upper;
                last_upper = upper(c);
            }
            i += 1;
        }
    }
    let sep = |c: char| matches!(c, '_' | '.' | '-' | ' ');
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let start = s.iter().position(|c| !sep(*c)).unwrap_or(s.len());
    let s: Vec<char> = s[start..].iter().flat_map(|c| c.to_lowercase()).collect();
    // /[_.\- ]+(\w|$)/g with the regex engine's backtracking: the longest run that is
    // followed by a word character or the end.
    let mut out = String::new();
    let mut i = 0;
    'scan: while i < s.len() {
        if sep(s[i]) {
            let mut end = i;
            while end < s.len() && sep(s[end]) {
                end += 1;
            }
            for k in (i + 1..=end).rev() {
                if k == s.len() {
                    break 'scan;
                }
                if word(s[k]) {
                    out.extend(s[k].to_uppercase());
                    i = k + 1;
                    continue 'scan;
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
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

struct Planned {
    path: PathBuf,
    bytes: Vec<u8>,
    mode: u32,
    what: String,
}

/// Everything an export needs from the workspace, loaded once.
struct Source {
    leaf: Entity,
    /// Issuers, nearest first, including the root when the chain reaches one.
    issuers: Vec<Entity>,
    key: Option<PKey<Private>>,
}

impl Source {
    fn load(ws: &Workspace, name: &str, slot: Option<Slot>) -> Result<Source> {
        let mut chain = chain_of(ws, name)?;
        let mut leaf = chain.remove(0);
        if let Some(slot) = slot.filter(|s| leaf.meta.slot.unwrap_or(Slot::Primary) != *s) {
            leaf = slot_entity(&leaf, slot)?;
        }
        let key = if leaf.meta.has_key {
            let pem = leaf.read_key_pem()?;
            Some(PKey::private_key_from_pem(pem.as_bytes()).map_err(|e| {
                Error::UnreadableKey(format!("the key of \"{name}\" in {} cannot be read ({e}); restore it or re-import the entity", leaf.key_path().display()))
            })?)
        } else {
            None
        };
        Ok(Source {
            leaf,
            issuers: chain,
            key,
        })
    }

    fn name(&self) -> &str {
        &self.leaf.meta.name
    }

    /// The root at the top of the chain, if the chain reaches a self-signed CA.
    fn root(&self) -> Option<&Entity> {
        match self.issuers.last() {
            Some(top) if top.meta.self_signed => Some(top),
            Some(_) => None,
            None if self.leaf.meta.kind.is_ca() && self.leaf.meta.self_signed => Some(&self.leaf),
            None => None,
        }
    }

    /// Issuers below the root: what a device sends after its leaf.
    fn intermediates(&self) -> Vec<&Entity> {
        let root_name = self.root().map(|r| r.meta.name.clone());
        self.issuers
            .iter()
            .filter(|e| Some(&e.meta.name) != root_name.as_ref())
            .collect()
    }

    fn chain_pem(&self) -> String {
        let mut s = self.leaf.cert_pem.clone();
        for e in self.intermediates() {
            s.push_str(&e.cert_pem);
        }
        s
    }

    fn fullchain_pem(&self) -> String {
        let mut s = self.leaf.cert_pem.clone();
        for e in &self.issuers {
            s.push_str(&e.cert_pem);
        }
        s
    }

    fn need_key(&self, what: &str) -> Result<&PKey<Private>> {
        self.key.as_ref().ok_or_else(|| Error::NoKey {
            name: self.name().to_string(),
            what: what.to_string(),
        })
    }

    fn key_pem(&self, key_password: Option<&str>) -> Result<Vec<u8>> {
        let key = self.need_key("a key file")?;
        Ok(match key_password {
            Some(pw) => {
                key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), pw.as_bytes())?
            }
            None => key.private_key_to_pem_pkcs8()?,
        })
    }

    fn key_der(&self, key_password: Option<&str>) -> Result<Vec<u8>> {
        let key = self.need_key("a key file")?;
        Ok(match key_password {
            Some(pw) => {
                key.private_key_to_pkcs8_passphrase(Cipher::aes_256_cbc(), pw.as_bytes())?
            }
            None => key.private_key_to_pkcs8()?,
        })
    }

    fn pfx(&self, profile: PfxProfile, password: &str, include_chain: bool) -> Result<Vec<u8>> {
        let key = self.need_key("a PFX")?;
        let chain: Vec<Vec<u8>> = if include_chain {
            self.issuers.iter().map(|e| e.cert_der.clone()).collect()
        } else {
            vec![]
        };
        pfx::build(
            profile,
            password,
            self.name(),
            &self.leaf.cert_der,
            key,
            &chain,
        )
    }
}

fn key_what(key_password: Option<&str>) -> String {
    if key_password.is_some() {
        "private key (encrypted PKCS#8, AES-256-CBC)".into()
    } else {
        "private key (PKCS#8)".into()
    }
}

/// A `file://` URI for an absolute path, percent-encoding what a URI may not hold.
pub fn file_uri(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::from("file://");
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"/-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn edge_config(src: &Source, dir: &Path, opts: &ExportOptions) -> String {
    let name = src.name();
    let registration_id = if src.leaf.meta.cn.is_empty() {
        name
    } else {
        &src.leaf.meta.cn
    };
    let cert = dir.join(format!("{name}.chain.pem"));
    let key = dir.join(format!("{name}.key.pem"));
    let scope = opts.id_scope.clone().unwrap_or_else(|| "<ID_SCOPE>".into());
    let mut s = String::new();
    s.push_str(&format!("# IoT Edge /etc/aziot/config.toml: DPS provisioning with X.509 for \"{name}\" (written by chainsmith).\n"));
    s.push_str(
        "# Copy the files below to the device and apply with `sudo iotedge config apply`.\n",
    );
    if opts.id_scope.is_none() {
        s.push_str("# Replace <ID_SCOPE> with your DPS ID scope (Azure portal: DPS > Overview), or give the ID scope when exporting.\n");
    }
    if opts.key_password.is_some() {
        s.push_str(
            "# The key file is encrypted (a key password was given); IoT Edge needs an unencrypted key.\n",
        );
    }
    s.push_str("\n[provisioning]\nsource = \"dps\"\nglobal_endpoint = \"https://global.azure-devices-provisioning.net\"\n");
    s.push_str(&format!("id_scope = {}\n\n", toml_string(&scope)));
    s.push_str("[provisioning.attestation]\nmethod = \"x509\"\n");
    s.push_str(&format!(
        "registration_id = {}\n",
        toml_string(registration_id)
    ));
    s.push_str("# The device's certificate followed by its intermediates: DPS needs the chain up to the enrolled CA.\n");
    s.push_str(&format!(
        "identity_cert = {}\n",
        toml_string(&file_uri(&cert))
    ));
    s.push_str(&format!("identity_pk = {}\n", toml_string(&file_uri(&key))));
    s
}

/// The absolute form of the output directory (it may not exist yet).
fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// The files of one export, each path once (formats share some: pem and edge both write the
/// chain and key).
struct Files {
    dir: PathBuf,
    list: Vec<Planned>,
}

impl Files {
    fn add(&mut self, file: String, bytes: Vec<u8>, mode: u32, what: &str) {
        let path = self.dir.join(file);
        if !self.list.iter().any(|p| p.path == path) {
            self.list.push(Planned {
                path,
                bytes,
                mode,
                what: what.to_string(),
            });
        }
    }
}

fn plan(src: &Source, opts: &ExportOptions, report: &mut ExportReport) -> Result<Vec<Planned>> {
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
fn plan_pem(
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
        files.add(
            format!("{name}.key.pem"),
            src.key_pem(kp)?,
            0o600,
            &key_what(kp),
        );
    } else {
        report.notes.push(format!(
            "\"{name}\" has no private key in the workspace: no key file written"
        ));
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
fn plan_der(
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
        files.add(
            format!("{name}.key.der"),
            src.key_der(kp)?,
            0o600,
            &format!("{} (DER)", key_what(kp)),
        );
    } else {
        report.notes.push(format!(
            "\"{name}\" has no private key in the workspace: no key file written"
        ));
    }
    Ok(())
}

/// `azure`: the Azure IoT Node SDK tool's layout.
fn plan_azure(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
    files: &mut Files,
) -> Result<()> {
    let kp = opts.key_password.as_deref();
    let name = match opts.names {
        AzureNames::Exact => src.name().to_string(),
        AzureNames::NodeSdk => {
            let cn = if src.leaf.meta.cn.is_empty() {
                &src.leaf.meta.name
            } else {
                &src.leaf.meta.cn
            };
            node_camelcase(cn)
        }
    };
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(Error::UnsafeFileName(format!(
            "the Node SDK tool's file name for \"{}\" would be \"{name}\", which is not a safe file name; export with the exact names instead",
            src.leaf.meta.name
        )));
    }
    if src.leaf.meta.kind == Kind::Verification {
        files.add(
            "verification_cert.pem".into(),
            src.leaf.cert_pem.clone().into_bytes(),
            0o644,
            "verification certificate (upload to the hub)",
        );
        return Ok(());
    }
    files.add(
        format!("{name}_cert.pem"),
        src.leaf.cert_pem.clone().into_bytes(),
        0o644,
        "certificate",
    );
    files.add(
        format!("{name}_key.pem"),
        src.key_pem(kp)?,
        0o600,
        &key_what(kp),
    );
    files.add(
        format!("{name}_fullchain.pem"),
        src.fullchain_pem().into_bytes(),
        0o644,
        "full chain (leaf first, then issuers)",
    );
    let pw = match opts.password.as_deref() {
        Some(p) => p,
        None => {
            report.notes.push(format!(
                    "{name}.pfx uses the Azure tutorials' password \"{AZURE_DEFAULT_PASSWORD}\"; give a password of your own for a real one"
                ));
            AZURE_DEFAULT_PASSWORD
        }
    };
    files.add(
        format!("{name}.pfx"),
        src.pfx(opts.pfx_profile, pw, opts.include_chain)?,
        0o600,
        &format!("PKCS#12 ({} profile)", opts.pfx_profile),
    );
    Ok(())
}

/// `edge`: the IoT Edge provisioning snippet, with the chain and key it points at.
fn plan_edge(
    src: &Source,
    opts: &ExportOptions,
    report: &mut ExportReport,
    files: &mut Files,
) -> Result<()> {
    let name = src.name().to_string();
    let kp = opts.key_password.as_deref();
    if src.leaf.meta.kind != Kind::Device {
        report.notes.push(format!(
            "\"{name}\" is a {} certificate; IoT Edge provisioning expects a device certificate",
            src.leaf.meta.kind.as_str()
        ));
    }
    // The snippet points at the chain and key, so write them too.
    files.add(
        format!("{name}.chain.pem"),
        src.chain_pem().into_bytes(),
        0o644,
        "chain (leaf, then intermediates; what a device sends)",
    );
    files.add(
        format!("{name}.key.pem"),
        src.key_pem(kp)?,
        0o600,
        &key_what(kp),
    );
    let text = edge_config(src, &files.dir, opts);
    files.add(
        format!("{name}.edge-config.toml"),
        text.clone().into_bytes(),
        0o644,
        "IoT Edge config.toml provisioning section",
    );
    report.edge_config = Some(text);
    Ok(())
}

/// The bytes `--stdout` prints for a single-file format.
fn render_stdout(src: &Source, opts: &ExportOptions, report: &mut ExportReport) -> Result<Vec<u8>> {
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

/// The certificate in the other thumbprint slot of a self-signed device, as an entity.
fn slot_entity(main: &Entity, slot: Slot) -> Result<Entity> {
    let sub = match slot {
        Slot::Primary => "primary",
        Slot::Secondary => "secondary",
    };
    let dir = main.dir.join(sub);
    let meta_path = dir.join(store::META_FILE);
    if !meta_path.exists() {
        return Err(Error::NoSlot(format!(
            "\"{}\" has no {sub} slot; make a self-signed certificate for it in that slot first",
            main.meta.name
        )));
    }
    Ok(Entity::read_dir(dir)?)
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

fn write_planned(
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
fn readback_pfx(
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
            return Err(Error::Internal(format!(
                "internal check failed: {} uses RC2; please report this",
                p.path.display()
            )));
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
