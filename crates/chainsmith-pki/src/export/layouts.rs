//! The layouts other tools expect: the Azure IoT Node SDK tool's file names (its npm
//! `camelcase` naming reproduced) and the IoT Edge provisioning snippet.

use super::source::{Plan, Source, key_what};
use super::{AZURE_DEFAULT_PASSWORD, Error, ExportOptions, Result};
use crate::store::Kind;
use serde::Serialize;
use std::path::{Path, PathBuf};

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
            _ => Err(super::UnknownChoice::FileNames {
                given: s.to_string(),
            }
            .into()),
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

pub(super) fn edge_config(src: &Source, dir: &Path, opts: &ExportOptions) -> String {
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
pub(super) fn absolute(dir: &Path) -> PathBuf {
    if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|c| c.join(dir))
            .unwrap_or_else(|_| dir.to_path_buf())
    }
}

/// Where Debian's and Fedora's system trust stores keep Amazon Root CA 1, the root AWS IoT
/// Core's ATS endpoints chain to
/// (<https://docs.aws.amazon.com/iot/latest/developerguide/server-authentication.html>).
const SYSTEM_AMAZON_ROOT_CA_1: [&str; 2] = [
    "/etc/ssl/certs/Amazon_Root_CA_1.pem",
    "/etc/pki/ca-trust/extracted/pem/directory-hash/Amazon_Root_CA_1.pem",
];

/// Amazon Root CA 1 from the system trust store, when it is there and is that certificate.
fn system_amazon_root_ca_1() -> Option<Vec<u8>> {
    SYSTEM_AMAZON_ROOT_CA_1.iter().find_map(|p| {
        let bytes = std::fs::read(p).ok()?;
        let der = pem::parse(&bytes).ok()?.into_contents();
        let view = crate::pki::inspect::CertView::from_der(&der).ok()?;
        (view.cn.as_deref() == Some("Amazon Root CA 1") && view.self_signed).then_some(bytes)
    })
}

impl Plan<'_> {
    /// `aws`: the file names the AWS IoT console writes and the AWS IoT Device SDK samples
    /// take (`--cert certificate.pem.crt --key private.pem.key --ca_file AmazonRootCA1.pem`),
    /// and the device-and-CA bundle the JITP page has a device present
    /// (<https://docs.aws.amazon.com/iot/latest/developerguide/jit-provisioning.html>:
    /// `deviceCertAndCACert.crt`).
    pub(super) fn aws(&mut self) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
        let kp = opts.key_password.as_deref();
        let name = src.name().to_string();
        self.files.add(
            "certificate.pem.crt".into(),
            src.leaf.cert_pem.clone().into_bytes(),
            0o644,
            "certificate",
        );
        if src.key.is_some() {
            self.files.add(
                "private.pem.key".into(),
                src.key_pem(kp)?,
                0o600,
                &key_what(kp),
            );
        } else {
            self.no_key(&name);
        }
        self.files.add(
            "deviceCertAndCACert.crt".into(),
            src.fullchain_pem().into_bytes(),
            0o644,
            "certificate and its CAs (what a JITP device presents)",
        );
        match system_amazon_root_ca_1() {
            Some(root) => self.files.add(
                "AmazonRootCA1.pem".into(),
                root,
                0o644,
                "server trust for a real AWS IoT endpoint (Amazon Root CA 1, from the system trust store)",
            ),
            None => self.report.notes.push(
                "Amazon Root CA 1 is not in the system trust store: for a real AWS IoT endpoint download https://www.amazontrust.com/repository/AmazonRootCA1.pem".into(),
            ),
        }
        self.report.notes.push(
            "for the local AWS IoT Core, trust its own TLS CA (WS/aws/tls/ca.pem) instead of AmazonRootCA1.pem".into(),
        );
        Ok(())
    }

    /// `azure`: the Azure IoT Node SDK tool's layout.
    pub(super) fn azure(&mut self) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
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
            return Err(Error::UnsafeFileName {
                name: src.leaf.meta.name.clone(),
                file_name: name,
            });
        }
        if src.leaf.meta.kind == Kind::Verification {
            self.files.add(
                "verification_cert.pem".into(),
                src.leaf.cert_pem.clone().into_bytes(),
                0o644,
                "verification certificate (upload to the hub)",
            );
            return Ok(());
        }
        self.files.add(
            format!("{name}_cert.pem"),
            src.leaf.cert_pem.clone().into_bytes(),
            0o644,
            "certificate",
        );
        self.files.add(
            format!("{name}_key.pem"),
            src.key_pem(kp)?,
            0o600,
            &key_what(kp),
        );
        self.files.add(
            format!("{name}_fullchain.pem"),
            src.fullchain_pem().into_bytes(),
            0o644,
            "full chain (leaf first, then issuers)",
        );
        let pw = match opts.password.as_deref() {
            Some(p) => p,
            None => {
                self.report.notes.push(format!(
                        "{name}.pfx uses the Azure tutorials' password \"{AZURE_DEFAULT_PASSWORD}\"; give a password of your own for a real one"
                    ));
                AZURE_DEFAULT_PASSWORD
            }
        };
        self.pfx(format!("{name}.pfx"), pw)
    }

    /// `edge`: the IoT Edge provisioning snippet, with the chain and key it points at.
    pub(super) fn edge(&mut self) -> Result<()> {
        let (src, opts) = (self.src, self.opts);
        let name = src.name().to_string();
        let kp = opts.key_password.as_deref();
        if src.leaf.meta.kind != Kind::Device {
            self.report.notes.push(format!(
                "\"{name}\" is a {} certificate; IoT Edge provisioning expects a device certificate",
                src.leaf.meta.kind.as_str()
            ));
        }
        // The snippet points at the chain and key, so write them too.
        self.files.add(
            format!("{name}.chain.pem"),
            src.chain_pem().into_bytes(),
            0o644,
            "chain (leaf, then intermediates; what a device sends)",
        );
        self.files.add(
            format!("{name}.key.pem"),
            src.key_pem(kp)?,
            0o600,
            &key_what(kp),
        );
        let text = edge_config(src, &self.files.dir, opts);
        self.files.add(
            format!("{name}.edge-config.toml"),
            text.clone().into_bytes(),
            0o644,
            "IoT Edge config.toml provisioning section",
        );
        self.report.edge_config = Some(text);
        Ok(())
    }
}
