//! Importing an existing CA or certificate (PEM, DER, PKCS#12, encrypted keys).

use super::{Error, ImportInputError, PasswordNeeded, Result};
use crate::pki::identity::check_entity_name;
use crate::pki::inspect::{CertView, signed_by};
use crate::pki::pkcs12;
use crate::pki::{CaHandle, KeyAlg, thumbprints};
use crate::store::{self, Kind, Meta, NewEntity, Workspace};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// An existing CA or certificate to bring into the workspace.
#[derive(Clone, Debug, Default)]
pub struct ImportRequest {
    /// The files to read: certificates, keys (PEM or DER) and PKCS#12.
    pub files: Vec<PathBuf>,
    /// The entity name to import under.
    pub name: String,
    /// For PKCS#12 files and encrypted keys.
    pub password: Option<String>,
    /// Replace an entity of that name.
    pub force: bool,
}

/// What an import made.
#[derive(Clone, Debug, Serialize)]
pub struct Imported {
    /// The imported entity.
    pub meta: Meta,
    /// True when no key came with the certificate: it can anchor chains but not issue.
    pub trust_only: bool,
    /// What the user should know (linked issuer, certificates left out, ...).
    pub notes: Vec<String>,
}

/// A private key and the input it came from.
type LabelledKey = (PKey<Private>, String);

#[derive(Default)]
struct Found {
    certs: Vec<(X509, String)>,
    keys: Vec<(PKey<Private>, String)>,
}

fn read_input(path: &Path, bytes: &[u8], password: Option<&str>, found: &mut Found) -> Result<()> {
    let label = path.display().to_string();
    if bytes.is_empty() {
        return Err(ImportInputError::Empty { file: label }.into());
    }
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN "));
    if let Some(text) = text {
        let blocks = pem::parse_many(text).map_err(|source| ImportInputError::DamagedPem {
            file: label.clone(),
            source,
        })?;
        if blocks.is_empty() {
            return Err(ImportInputError::NoPemBlock { file: label }.into());
        }
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => {
                    let c =
                        X509::from_der(b.contents()).map_err(|_| ImportInputError::NotX509 {
                            file: label.clone(),
                        })?;
                    found.certs.push((c, label.clone()));
                }
                "PRIVATE KEY"
                | "EC PRIVATE KEY"
                | "RSA PRIVATE KEY"
                | "DSA PRIVATE KEY"
                | "ENCRYPTED PRIVATE KEY" => {
                    // PKCS#8 (PBES1/PBES2) says so in its label; OpenSSL's traditional format
                    // (`genrsa -aes256`, `ec -des3`, certGen.sh on OpenSSL 1.x) in a header.
                    let encrypted = b.tag() == "ENCRYPTED PRIVATE KEY"
                        || b.headers()
                            .get("Proc-Type")
                            .is_some_and(|v| v.contains("ENCRYPTED"));
                    let block = pem::encode(&b);
                    if b.tag() == "ENCRYPTED PRIVATE KEY" && password.is_some() {
                        // Refuse a key that asks for billions of PBKDF2 rounds before the work.
                        pkcs12::check_pkcs8_iterations(
                            b.contents(),
                            &format!("the encrypted key in {label}"),
                        )?;
                    }
                    found.keys.push((
                        read_key_pem(&block, encrypted, password, &label)?,
                        label.clone(),
                    ));
                }
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                    return Err(ImportInputError::Csr { file: label }.into());
                }
                other => {
                    return Err(ImportInputError::UnknownBlock {
                        file: label,
                        label: other.to_string(),
                    }
                    .into());
                }
            }
        }
        return Ok(());
    }
    if let Ok(c) = X509::from_der(bytes) {
        found.certs.push((c, label));
        return Ok(());
    }
    if password.is_some() {
        pkcs12::check_pkcs8_iterations(bytes, &format!("the encrypted key in {label}"))?;
    }
    if let Some(pw) = password
        && let Ok(k) = PKey::private_key_from_pkcs8_passphrase(bytes, pw.as_bytes())
    {
        found.keys.push((k, label));
        return Ok(());
    }
    if let Ok(k) = PKey::private_key_from_der(bytes) {
        found.keys.push((k, label));
        return Ok(());
    }
    if openssl::pkcs12::Pkcs12::from_der(bytes).is_ok() {
        let Some(pw) = password else {
            return Err(PasswordNeeded::Pkcs12 { file: label }.into());
        };
        let opened = pkcs12::open(bytes, pw, &label)?;
        if let Some(c) = opened.leaf {
            found.certs.push((c, label.clone()));
        }
        for c in opened.chain {
            found.certs.push((c, label.clone()));
        }
        if let Some(k) = opened.key {
            found.keys.push((k, label));
        }
        return Ok(());
    }
    Err(ImportInputError::Unrecognised { file: label }.into())
}

/// One PEM private key, in any format OpenSSL writes. OpenSSL would ask for a missing
/// passphrase on the terminal; the callback answers for it, so nothing ever prompts.
fn read_key_pem(
    block: &str,
    encrypted: bool,
    password: Option<&str>,
    label: &str,
) -> Result<PKey<Private>> {
    match (encrypted, password) {
        (true, None) => Err(PasswordNeeded::EncryptedKey {
            file: label.to_string(),
        }
        .into()),
        (true, Some(pw)) => PKey::private_key_from_pem_callback(block.as_bytes(), |buf| {
            let pw = pw.as_bytes();
            if pw.len() > buf.len() {
                return Err(openssl::error::ErrorStack::get());
            }
            buf[..pw.len()].copy_from_slice(pw);
            Ok(pw.len())
        })
        .map_err(|_| {
            crate::pki::Error::WrongKeyPassword {
                file: label.to_string(),
            }
            .into()
        }),
        (false, _) => PKey::private_key_from_pem_callback(block.as_bytes(), |_| {
            Err(openssl::error::ErrorStack::get())
        })
        .map_err(|source| {
            ImportInputError::UnreadableKey {
                file: label.to_string(),
                source,
            }
            .into()
        }),
    }
}

fn describe(c: &X509) -> String {
    let der = c.to_der().unwrap_or_default();
    CertView::from_der(&der)
        .map(|v| v.subject)
        .unwrap_or_else(|_| "?".into())
}

/// The certificate to import out of everything read: the one the key belongs to, or the first
/// when there is no key; the others stay in `found`.
fn pick_leaf(found: &mut Found) -> Result<(X509, Option<LabelledKey>)> {
    if found.keys.len() > 1 {
        return Err(ImportInputError::SeveralKeys {
            files: found.keys.iter().map(|k| k.1.clone()).collect(),
        }
        .into());
    }
    if found.certs.is_empty() {
        return Err(ImportInputError::NoCertificate.into());
    }
    let key = found.keys.pop();
    let index = match &key {
        Some((k, klabel)) => found
            .certs
            .iter()
            .position(|(c, _)| c.public_key().map(|p| p.public_eq(k)).unwrap_or(false))
            .ok_or_else(|| Error::KeyMismatch {
                key_file: klabel.clone(),
                certificate: describe(&found.certs[0].0),
                certificate_file: found.certs[0].1.clone(),
            })?,
        None => 0,
    };
    let (leaf, _) = found.certs.remove(index);
    Ok((leaf, key))
}

/// The workspace CA (other than `name`) whose key signed `der`, if any.
fn workspace_issuer(ws: &Workspace, name: &str, der: &[u8]) -> Result<Option<String>> {
    let (metas, _) = ws.list()?;
    for m in metas.iter().filter(|m| m.kind.is_ca() && m.name != name) {
        if let Ok(e) = ws.load(&m.name)
            && signed_by(der, &e.cert_der)
        {
            return Ok(Some(m.name.clone()));
        }
    }
    Ok(None)
}

/// Bring a certificate (with or without its key) into the workspace under `req.name`.
pub fn import(ws: &Workspace, req: &ImportRequest) -> Result<Imported> {
    check_entity_name(&req.name)?;
    if req.files.is_empty() {
        return Err(ImportInputError::NoFile.into());
    }
    if !req.force {
        ws.check_free(std::slice::from_ref(&req.name))?;
    }
    let mut found = Found::default();
    for f in &req.files {
        let bytes = store::read_input(f)?;
        read_input(f, &bytes, req.password.as_deref(), &mut found)?;
    }
    let (leaf, key) = pick_leaf(&mut found)?;
    let der = leaf.to_der()?;
    let view = CertView::from_der(&der)?;
    let mut notes = Vec::new();
    if !found.certs.is_empty() {
        notes.push(format!(
            "{} other certificate(s) in the input were not imported; import each CA you need under its own name",
            found.certs.len()
        ));
    }
    let key_pem = match &key {
        Some((k, _)) => Some(String::from_utf8_lossy(&k.private_key_to_pem_pkcs8()?).into_owned()),
        None => None,
    };
    let kind = if view.is_ca {
        if view.self_signed {
            Kind::Root
        } else {
            Kind::Intermediate
        }
    } else {
        Kind::Device
    };
    if kind.is_ca() {
        if let Some(kp) = &key_pem {
            // Make sure it can really issue: the same checks `new --issuer` will make.
            CaHandle::new(&req.name, der.clone(), kp)?;
        }
    }
    // Link to the workspace CA that signed it, so chains and CRLs work.
    let mut issuer = None;
    if !view.self_signed {
        issuer = workspace_issuer(ws, &req.name, &der)?;
        match &issuer {
            Some(i) => notes.push(format!("issued by \"{i}\" in this workspace: linked")),
            None => notes.push(format!(
                "its issuer ({}) is not in this workspace; import it too to check whole chains",
                view.issuer
            )),
        }
    }
    let trust_only = key_pem.is_none();
    if trust_only {
        notes.push(format!(
            "no private key given: \"{}\" is trust-only (it can anchor chains, not issue); import it again with its key to sign",
            req.name
        ));
    }
    if !kind.is_ca() {
        notes.push(format!(
            "\"{}\" is not a CA (no basicConstraints CA:TRUE), so it cannot issue",
            req.name
        ));
    }
    let (sha1, sha256) = thumbprints(&der);
    let meta = Meta {
        format: 1,
        name: req.name.clone(),
        kind,
        cn: view.cn.clone().unwrap_or_default(),
        subject: view.subject.clone(),
        issuer,
        key_alg: KeyAlg::from_spki(&leaf.public_key()?.public_key_to_der()?),
        serial: view.serial.replace(':', "").to_ascii_uppercase(),
        not_before: view.not_before_t,
        not_after: view.not_after_t,
        sha1,
        sha256,
        pathlen: view.pathlen,
        target: None,
        has_key: !trust_only,
        self_signed: view.self_signed,
        slot: None,
        code: None,
        revoked: None,
        created: ws.now(),
        spec_hash: None,
        fixture: None,
    };
    let cert_pem = pem::encode(&pem::Pem::new("CERTIFICATE", der));
    let entity = NewEntity {
        meta: meta.clone(),
        cert_pem,
        key_pem,
        extra: vec![],
    };
    if req.force {
        ws.replace(&[entity])?;
    } else {
        ws.create(&[entity])?;
    }
    Ok(Imported {
        meta,
        trust_only,
        notes,
    })
}
