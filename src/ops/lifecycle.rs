//! Import, renew, self-signed slots, revoke, CRL and expiry: what happens to certificates
//! after they are made. The CLI's `import`, `renew`, `revoke`, `crl`, `list --expiring` and
//! `show --history` call these; so can the TUI.
//!
//! On disk, an entity keeps its past in its own directory:
//! ```text
//! entities/NAME/history/SERIAL/{cert.pem, meta.toml[, key.pem]}   every replaced certificate
//! entities/NAME/secondary/{cert.pem, key.pem, meta.toml}          the other thumbprint slot
//! ```
//! (`primary/` instead when the entity was made as the secondary slot first.)

use super::{Created, TreeRow, ValidityArg, load_ca, tree};
use crate::azure::HUB_DOES_NOT_CHECK_CRLS;
use crate::export::{Error, Result};
use crate::hub::registry::DisabledDevice;
use crate::pki::identity::check_entity_name;
use crate::pki::inspect::{CertView, signed_by};
use crate::pki::issue::{self, San};
use crate::pki::pkcs12;
use crate::pki::{CaHandle, Eku, IssueSpec, KeyAlg, Profile, subject, thumbprints};
use crate::store::{
    self, Entity, HISTORY_DIR, Kind, Meta, NewEntity, Revocation, Slot, Workspace, chain_of,
};
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

// ---------------------------------------------------------------- import

/// An existing CA or certificate to bring into the workspace.
#[derive(Clone, Debug, Default)]
pub struct ImportRequest {
    pub files: Vec<PathBuf>,
    pub name: String,
    /// For PKCS#12 files and encrypted keys.
    pub password: Option<String>,
    pub force: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Imported {
    pub meta: Meta,
    /// True when no key came with the certificate: it can anchor chains but not issue.
    pub trust_only: bool,
    pub notes: Vec<String>,
}

#[derive(Default)]
struct Found {
    certs: Vec<(X509, String)>,
    keys: Vec<(PKey<Private>, String)>,
}

fn read_input(path: &Path, bytes: &[u8], password: Option<&str>, found: &mut Found) -> Result<()> {
    let label = path.display().to_string();
    if bytes.is_empty() {
        return Err(invalid(format!(
            "{label} is empty; give a PEM or DER certificate, a private key or a PKCS#12 file"
        )));
    }
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN "));
    if let Some(text) = text {
        let blocks = pem::parse_many(text)
            .map_err(|e| invalid(format!("{label}: the PEM text is damaged ({e})")))?;
        if blocks.is_empty() {
            return Err(invalid(format!(
                "{label}: the PEM text is damaged (no complete BEGIN/END block)"
            )));
        }
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" | "TRUSTED CERTIFICATE" | "X509 CERTIFICATE" => {
                    let c = X509::from_der(b.contents()).map_err(|_| {
                        invalid(format!(
                            "{label}: a CERTIFICATE block is not a valid X.509 certificate"
                        ))
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
                    return Err(invalid(format!(
                        "{label} holds a certificate request, not a certificate; sign it with `chainsmith sign-csr {label} --issuer CA`"
                    )));
                }
                other => {
                    return Err(invalid(format!(
                        "{label} holds a \"{other}\" PEM block; import takes certificates, private keys and PKCS#12 files"
                    )));
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
            return Err(invalid(format!(
                "{label} is a PKCS#12 (PFX) file and needs its password: pass --password P, or set CHAINSMITH_PFX_PASSWORD"
            )));
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
    Err(invalid(format!(
        "{label} is not a certificate, private key or PKCS#12 file (neither PEM nor DER); nothing was imported"
    )))
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
        (true, None) => Err(invalid(format!(
            "the private key in {label} is encrypted; pass its password with --password (or CHAINSMITH_PFX_PASSWORD)"
        ))),
        (true, Some(pw)) => PKey::private_key_from_pem_callback(block.as_bytes(), |buf| {
            let pw = pw.as_bytes();
            if pw.len() > buf.len() {
                return Err(openssl::error::ErrorStack::get());
            }
            buf[..pw.len()].copy_from_slice(pw);
            Ok(pw.len())
        })
        .map_err(|_| Error::WrongPassword(format!("the encrypted key in {label}"))),
        (false, _) => PKey::private_key_from_pem_callback(block.as_bytes(), |_| {
            Err(openssl::error::ErrorStack::get())
        })
        .map_err(|e| invalid(format!("{label}: the private key cannot be read ({e})"))),
    }
}

fn describe(c: &X509) -> String {
    let der = c.to_der().unwrap_or_default();
    CertView::from_der(&der)
        .map(|v| v.subject)
        .unwrap_or_else(|_| "?".into())
}

/// Bring a certificate (with or without its key) into the workspace under `req.name`.
pub fn import(ws: &Workspace, req: &ImportRequest) -> Result<Imported> {
    check_entity_name(&req.name)?;
    if req.files.is_empty() {
        return Err(invalid(
            "no file given; pass the certificate and key files (PEM, DER) or a PKCS#12 file",
        ));
    }
    if !req.force {
        ws.check_free(std::slice::from_ref(&req.name))?;
    }
    let mut found = Found::default();
    for f in &req.files {
        let bytes = std::fs::read(f).map_err(|e| store::io_error("reading", f, e))?;
        read_input(f, &bytes, req.password.as_deref(), &mut found)?;
    }
    if found.keys.len() > 1 {
        return Err(invalid(format!(
            "{} private keys were given ({}); import one certificate with its one key at a time",
            found.keys.len(),
            found
                .keys
                .iter()
                .map(|k| k.1.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if found.certs.is_empty() {
        return Err(invalid(
            "no certificate in the input: a key alone cannot be imported; add the certificate file",
        ));
    }
    let key = found.keys.pop();
    let index = match &key {
        Some((k, klabel)) => found.certs.iter().position(|(c, _)| c.public_key().map(|p| p.public_eq(k)).unwrap_or(false)).ok_or_else(|| {
            invalid(format!(
                "the private key in {klabel} does not belong to the certificate {} (from {}); give the key that was made with this certificate",
                describe(&found.certs[0].0),
                found.certs[0].1
            ))
        })?,
        None => 0,
    };
    let (leaf, _) = found.certs.remove(index);
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
        let (metas, _) = ws.list()?;
        for m in metas
            .iter()
            .filter(|m| m.kind.is_ca() && m.name != req.name)
        {
            if let Ok(e) = ws.load(&m.name) {
                if signed_by(&der, &e.cert_der) {
                    issuer = Some(m.name.clone());
                    break;
                }
            }
        }
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
        created: OffsetDateTime::now_utc(),
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

// ---------------------------------------------------------------- history helpers

/// Every file of an entity directory except its current cert, key and meta (history, slots),
/// as (relative path, bytes); `skip_dir` leaves one top-level subdirectory out.
fn extras_of(dir: &Path, skip_dir: Option<&str>) -> Result<Vec<(String, Vec<u8>)>> {
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
fn history_entry(entity: &Entity, with_key: bool) -> Result<Vec<(String, Vec<u8>)>> {
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
pub fn keep_replaced(ws: &Workspace, new: &mut NewEntity) -> store::Result<()> {
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
            what: e.to_string(),
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

// ---------------------------------------------------------------- renew

#[derive(Clone, Debug, Default)]
pub struct RenewRequest {
    pub name: String,
    pub days: Option<u32>,
    /// A fresh key (of the same algorithm unless `key` says otherwise).
    pub rekey: bool,
    pub key: Option<KeyAlg>,
    /// For a CA: upload the new certificate to the local hub beside the ones it holds
    /// (unverified until its proof of possession, unless `verified`).
    pub upload_to_hub: bool,
    pub verified: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Renewed {
    pub old: Meta,
    pub new: Meta,
    pub rekeyed: bool,
    pub notes: Vec<String>,
    /// The hub entry of the uploaded certificate (`upload_to_hub`), with its verification code.
    pub uploaded: Option<crate::hub::HubCa>,
}

/// The profile of an existing certificate: kind from meta, EKU and SANs from the certificate.
fn profile_of(meta: &Meta, der: &[u8]) -> Result<Profile> {
    use x509_parser::prelude::*;
    Ok(match meta.kind {
        Kind::Root => Profile::Root {
            pathlen: meta.pathlen.map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
        },
        Kind::Intermediate => Profile::Intermediate {
            pathlen: meta.pathlen.map(|p| u8::try_from(p).unwrap_or(u8::MAX)),
        },
        Kind::Verification => Profile::Verification,
        Kind::Device => {
            let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
                crate::pki::Error::parse(format!("certificate of \"{}\"", meta.name), e)
            })?;
            let eku = match cert.extended_key_usage().ok().flatten().map(|e| e.value) {
                Some(e) if e.client_auth && e.server_auth => Eku::ClientServer,
                Some(e) if e.server_auth && !e.client_auth => Eku::Server,
                _ => Eku::Client,
            };
            let mut sans = Vec::new();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for n in &san.value.general_names {
                    match n {
                        GeneralName::DNSName(d) => sans.push(San::Dns(d.to_string())),
                        GeneralName::RFC822Name(e) => sans.push(San::Email(e.to_string())),
                        GeneralName::URI(u) => sans.push(San::Uri(u.to_string())),
                        GeneralName::IPAddress(ip) => match ip.len() {
                            4 => sans.push(San::Ip(std::net::IpAddr::from(
                                <[u8; 4]>::try_from(*ip).unwrap_or_default(),
                            ))),
                            16 => sans.push(San::Ip(std::net::IpAddr::from(
                                <[u8; 16]>::try_from(*ip).unwrap_or_default(),
                            ))),
                            _ => {}
                        },
                        _ => {}
                    }
                }
            }
            Profile::Device { eku, sans }
        }
    })
}

fn subject_of(der: &[u8]) -> Result<rcgen::DistinguishedName> {
    use x509_parser::prelude::*;
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| crate::pki::Error::parse("certificate", e))?;
    Ok(subject::from_x509_name(cert.subject())?)
}

fn meta_from(old: &Meta, issued: &issue::Issued) -> Result<Meta> {
    let view = CertView::from_der(&issued.cert_der)?;
    let (sha1, sha256) = thumbprints(&issued.cert_der);
    Ok(Meta {
        serial: issued.serial_hex.clone(),
        not_before: view.not_before_t,
        not_after: view.not_after_t,
        sha1,
        sha256,
        has_key: issued.key_pem.is_some() || old.has_key,
        key_alg: issued.key_alg.or(old.key_alg),
        revoked: None,
        created: OffsetDateTime::now_utc(),
        ..old.clone()
    })
}

/// A new certificate for the same subject, same profile and (unless `rekey`) the same key.
/// The old certificate moves to `history/SERIAL/`.
pub fn renew(ws: &Workspace, req: &RenewRequest) -> Result<Renewed> {
    let entity = ws.load(&req.name)?;
    let old = entity.meta.clone();
    let ca = match &old.issuer {
        Some(i) if !old.self_signed => Some(load_ca(ws, i)?),
        None if !old.self_signed => {
            let issuer = CertView::from_der(&entity.cert_der)
                .map(|v| v.issuer)
                .unwrap_or_default();
            return Err(invalid(format!(
                "\"{}\" was issued by a CA that is not in this workspace ({issuer}); renew it there, or import that CA with its key (`chainsmith import CA.pem CA.key --name NAME`) first",
                req.name
            )));
        }
        _ => None,
    };
    if old.self_signed && !old.has_key {
        return Err(invalid(format!(
            "\"{}\" is self-signed and trust-only (no private key here), so chainsmith cannot re-sign it; import it with its key",
            req.name
        )));
    }
    let profile = profile_of(&old, &entity.cert_der)?;
    let validity = ValidityArg {
        days: req.days,
        ..Default::default()
    }
    .resolve(&profile, ws.now())?;
    let spec = IssueSpec {
        subject: subject_of(&entity.cert_der)?,
        profile,
        validity,
    };
    let mut notes = Vec::new();
    let rekey = req.rekey || req.key.is_some();
    if !rekey && let Some(m) = compromised(&entity) {
        let at = m
            .revoked
            .as_ref()
            .map(|r| issue::rfc3339(r.at))
            .unwrap_or_default();
        return Err(invalid(if old.has_key || old.self_signed {
            format!(
                "the key of \"{}\" is compromised (certificate serial {} was revoked for keyCompromise on {at}); a renewal with the same key would be compromised too: renew with a new key (`chainsmith renew {} --rekey`)",
                req.name, m.serial, req.name
            )
        } else {
            format!(
                "the key of \"{}\" is compromised (certificate serial {} was revoked for keyCompromise on {at}), and it lives on the device: have the device make a new key and CSR, and sign that (`chainsmith sign-csr NEW.csr --issuer CA --force`)",
                req.name, m.serial
            )
        }));
    }
    let issued = if rekey {
        let alg = req.key.or(old.key_alg).unwrap_or(KeyAlg::EcP256);
        issue::issue(&spec, alg, ca.as_ref())?
    } else if old.has_key {
        let key = crate::pki::keys::load_key_pem(&entity.read_key_pem()?)?;
        issue::issue_with_key(&spec, &key, ca.as_ref())?
    } else {
        // A signed CSR: the key lives on the device; certify the same public key again.
        let ca = ca
            .as_ref()
            .ok_or_else(|| invalid(format!("\"{}\" has no issuer to renew it", req.name)))?;
        let spki = crate::pki::inspect::cert_spki(&entity.cert_der)
            .ok_or_else(|| invalid("the certificate's public key cannot be read"))?;
        let mut i = issue::issue_for_public_key(&spec, &spki, ca)?;
        i.key_pem = None;
        i
    };
    if let Some(ca) = &ca {
        if validity.not_after > ca.not_after {
            notes.push(format!(
                "the new certificate is valid until {} but \"{}\" expires earlier ({})",
                issue::rfc3339(validity.not_after),
                ca.name,
                issue::rfc3339(ca.not_after)
            ));
        }
    }
    let new = meta_from(&old, &issued)?;
    let mut extra = extras_of(&entity.dir, None)?;
    extra.extend(history_entry(&entity, rekey)?);
    let key_pem = match (rekey, issued.key_pem) {
        (true, k) => k,
        (false, _) if old.has_key => Some(entity.read_key_pem()?),
        (false, _) => None,
    };
    ws.replace(&[NewEntity {
        meta: new.clone(),
        cert_pem: issued.cert_pem,
        key_pem,
        extra,
    }])?;
    match (old.kind, old.self_signed) {
        (Kind::Device, true) => notes.push(format!(
            "the thumbprint changed: update the {} thumbprint of \"{}\" in the hub to {} (SHA-1) / {} (SHA-256)",
            match old.slot { Some(Slot::Secondary) => "secondary", _ => "primary" },
            old.name,
            new.sha1,
            new.sha256
        )),
        (Kind::Device, false) => notes.push("same CA, same subject: the hub needs no change (no re-registration)".into()),
        (k, _) if k.is_ca() && rekey => notes.push(
            "this CA has a new key: certificates it issued before chain to its earlier certificate (kept in its history), not to the new one".into(),
        ),
        (k, _) if k.is_ca() => notes.push("same key and subject: certificates this CA issued still chain to it".into()),
        _ => {}
    }
    let uploaded = upload_renewed_ca(ws, req, &old, rekey, &mut notes)?;
    Ok(Renewed {
        old,
        new,
        rekeyed: rekey,
        notes,
        uploaded,
    })
}

/// After renewing a CA: upload the new certificate to the local hub when asked (it keeps the
/// earlier ones, so devices issued under them still connect), or say that the hub holds only
/// the earlier certificate.
fn upload_renewed_ca(
    ws: &Workspace,
    req: &RenewRequest,
    old: &Meta,
    rekey: bool,
    notes: &mut Vec<String>,
) -> Result<Option<crate::hub::HubCa>> {
    let name = &req.name;
    if !old.kind.is_ca() {
        if req.upload_to_hub {
            return Err(invalid(format!(
                "\"{name}\" is a {}, not a CA: only a CA certificate is uploaded to the hub",
                old.kind.as_str()
            )));
        }
        return Ok(None);
    }
    let hub = crate::hub::HubStore::new(ws.clone());
    let hub_err = |e: crate::hub::RegistryError| invalid(e.to_string());
    if !req.upload_to_hub {
        let registered = hub
            .load()
            .map_err(hub_err)?
            .cas
            .iter()
            .any(|c| &c.name == name);
        if registered && rekey {
            notes.push(format!(
                "the local hub holds only \"{name}\"'s earlier certificate: devices issued under the new one are refused until it is uploaded (`chainsmith hub ca add {name}`, or renew with --upload-to-hub)"
            ));
        }
        return Ok(None);
    }
    let ca = hub.add_ca(name, req.verified).map_err(hub_err)?;
    notes.push(if ca.verified {
        format!(
            "uploaded to the local hub beside its earlier certificate(s), verified (SHA-256 {})",
            ca.thumbprint()
        )
    } else {
        format!(
            "uploaded to the local hub beside its earlier certificate(s), unverified (SHA-256 {}); verification code {}: chainsmith new verification --issuer {name} --code {} ; chainsmith hub ca verify {name} --cert FILE",
            ca.thumbprint(),
            ca.code,
            ca.code
        )
    });
    Ok(Some(ca))
}

// ---------------------------------------------------------------- self-signed slots

/// One thumbprint slot of a self-signed device.
#[derive(Clone, Debug, Serialize)]
pub struct SlotView {
    pub slot: Slot,
    pub sha1: String,
    pub sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub dir: PathBuf,
}

fn slot_dir_name(s: Slot) -> &'static str {
    match s {
        Slot::Primary => "primary",
        Slot::Secondary => "secondary",
    }
}

fn other(s: Slot) -> Slot {
    match s {
        Slot::Primary => Slot::Secondary,
        Slot::Secondary => Slot::Primary,
    }
}

/// Both slots of a self-signed device (empty for other entities).
pub fn slots(ws: &Workspace, name: &str) -> Result<Vec<SlotView>> {
    let e = ws.load(name)?;
    if !(e.meta.self_signed && e.meta.kind == Kind::Device) {
        return Ok(vec![]);
    }
    let main = e.meta.slot.unwrap_or(Slot::Primary);
    let od = e.dir.join(slot_dir_name(other(main)));
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
    if od.join(store::META_FILE).exists() {
        let m = store::read_meta(&od.join(store::META_FILE))?;
        v.push(SlotView {
            slot: other(main),
            sha1: m.sha1,
            sha256: m.sha256,
            not_after: m.not_after,
            dir: od,
        });
    }
    v.sort_by_key(|s| s.slot != Slot::Primary);
    Ok(v)
}

/// The layout of a self-signed device holding both thumbprint slots: `main` is the entity
/// itself (its `slot` set to the one `second` does not hold), and `second` (a certificate for the
/// same id, its `meta.slot` saying which slot) goes into `main`'s `primary/` or `secondary/`
/// subdirectory as cert.pem, key.pem and meta.toml. `new_slot` and `chainsmith apply` both
/// store what this returns.
pub fn with_other_slot(mut main: NewEntity, second: &NewEntity) -> NewEntity {
    let slot = second.meta.slot.unwrap_or(Slot::Secondary);
    let sub = slot_dir_name(slot);
    main.extra.push((
        format!("{sub}/{}", store::CERT_FILE),
        second.cert_pem.clone().into_bytes(),
    ));
    if let Some(k) = &second.key_pem {
        main.extra
            .push((format!("{sub}/{}", store::KEY_FILE), k.clone().into_bytes()));
    }
    main.extra.push((
        format!("{sub}/{}", store::META_FILE),
        second.meta.to_toml().into_bytes(),
    ));
    main.meta.slot = Some(other(slot));
    main
}

/// New devices, or, for one self-signed device that already exists and a `slot` in the
/// request, its other thumbprint slot filled (or, with `force`, rolled). Every face creates
/// devices through this, so the CLI and the TUI make the same choice.
pub fn new_devices_or_slot(ws: &Workspace, req: &super::DeviceRequest) -> Result<Created> {
    match new_slot(ws, req)? {
        Some(c) => Ok(c),
        None => Ok(super::new_devices(ws, req)?),
    }
}

/// `new device ID --self-signed --slot S` when ID already exists: fill (or, with `force`,
/// roll) slot S and keep the other one working.
/// Returns None when the device does not exist yet (the ordinary `new device` path applies).
fn new_slot(ws: &Workspace, req: &super::DeviceRequest) -> Result<Option<Created>> {
    let (Some(slot), [id]) = (req.slot, req.ids.as_slice()) else {
        return Ok(None);
    };
    if req.issuer.is_some() || !ws.exists(id) {
        return Ok(None);
    }
    let entity = ws.load(id)?;
    if !(entity.meta.self_signed && entity.meta.kind == Kind::Device) {
        if req.force {
            return Ok(None);
        }
        return Err(store::Error::NameTaken(vec![id.clone()]).into());
    }
    let main = entity.meta.slot.unwrap_or(Slot::Primary);
    let key = req.key.unwrap_or(KeyAlg::EcP256);
    let profile = Profile::Device {
        eku: req.eku,
        sans: req
            .sans
            .iter()
            .map(|s| San::parse(s))
            .collect::<Result<_, _>>()?,
    };
    let validity = req.validity.resolve(&profile, ws.now())?;
    let spec = IssueSpec {
        subject: subject::cn_only(id)?,
        profile,
        validity,
    };
    let issued = issue::issue(&spec, key, None)?;
    let mut meta = meta_from(&entity.meta, &issued)?;
    meta.slot = Some(slot);
    meta.key_alg = Some(key);
    let mut warnings: Vec<String> = key.warning().map(str::to_string).into_iter().collect();
    if slot == main {
        if !req.force {
            return Err(invalid(format!(
                "the {} slot of \"{id}\" is taken; pass --force to roll it (the {} slot keeps working meanwhile)",
                slot_dir_name(slot),
                slot_dir_name(other(slot))
            )));
        }
        let mut extra = extras_of(&entity.dir, None)?;
        extra.extend(history_entry(&entity, true)?);
        ws.replace(&[NewEntity {
            meta: meta.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra,
        }])?;
    } else {
        let sub = slot_dir_name(slot);
        let sub_dir = entity.dir.join(sub);
        if sub_dir.join(store::META_FILE).exists() && !req.force {
            return Err(invalid(format!(
                "the {sub} slot of \"{id}\" is taken; pass --force to roll it (the {} slot keeps working meanwhile)",
                slot_dir_name(main)
            )));
        }
        let mut extra = extras_of(&entity.dir, Some(sub))?;
        if sub_dir.join(store::META_FILE).exists() {
            // The replaced slot certificate goes to history as well.
            let old_meta = store::read_meta(&sub_dir.join(store::META_FILE))?;
            let base = format!("{HISTORY_DIR}/{}", old_meta.serial);
            for f in [store::CERT_FILE, store::KEY_FILE, store::META_FILE] {
                if let Ok(b) = std::fs::read(sub_dir.join(f)) {
                    extra.push((format!("{base}/{f}"), b));
                }
            }
        }
        let main_key = if entity.meta.has_key {
            Some(entity.read_key_pem()?)
        } else {
            None
        };
        let main_entity = NewEntity {
            meta: entity.meta.clone(),
            cert_pem: entity.cert_pem.clone(),
            key_pem: main_key,
            extra,
        };
        let slot_entity = NewEntity {
            meta: meta.clone(),
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra: vec![],
        };
        ws.replace(&[with_other_slot(main_entity, &slot_entity)])?;
    }
    warnings.push(format!(
        "\"{id}\" now holds both thumbprint slots; `chainsmith show {id}` lists them"
    ));
    Ok(Some(Created {
        entities: vec![meta],
        warnings,
        file: None,
    }))
}

// ---------------------------------------------------------------- revoke and CRL

pub const REASONS: [&str; 10] = [
    "unspecified",
    "keyCompromise",
    "cACompromise",
    "affiliationChanged",
    "superseded",
    "cessationOfOperation",
    "certificateHold",
    "removeFromCRL",
    "privilegeWithdrawn",
    "aACompromise",
];

/// The RFC 5280 reason name for what the user typed (case and dashes ignored).
pub fn parse_reason(s: &str) -> Result<&'static str> {
    let norm = |x: &str| x.to_ascii_lowercase().replace(['-', '_', ' '], "");
    REASONS
        .iter()
        .copied()
        .find(|r| norm(r) == norm(s))
        .ok_or_else(|| {
            invalid(format!(
                "revocation reason \"{s}\" is not one of RFC 5280's: {}",
                REASONS.join(", ")
            ))
        })
}

fn rcgen_reason(r: &str) -> rcgen::RevocationReason {
    use rcgen::RevocationReason as R;
    match r {
        "keyCompromise" => R::KeyCompromise,
        "cACompromise" => R::CaCompromise,
        "affiliationChanged" => R::AffiliationChanged,
        "superseded" => R::Superseded,
        "cessationOfOperation" => R::CessationOfOperation,
        "certificateHold" => R::CertificateHold,
        "removeFromCRL" => R::RemoveFromCrl,
        "privilegeWithdrawn" => R::PrivilegeWithdrawn,
        "aACompromise" => R::AaCompromise,
        _ => R::Unspecified,
    }
}

/// What to revoke, and whether to cut the device off in the local hub too.
#[derive(Clone, Debug, Default)]
pub struct RevokeRequest {
    pub name: String,
    /// RFC 5280 reason as the user typed it (see [`parse_reason`]).
    pub reason: String,
    /// Disable every hub device whose credential is the revoked certificate (by CN for
    /// CA-authenticated devices, by thumbprint for self-signed ones) and drop its connection
    /// from a running hub.
    pub disable_on_hub: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct Revoked {
    pub meta: Meta,
    /// Earlier certificates of the entity revoked with it: those in its history carrying the
    /// same key, when the reason is keyCompromise.
    pub also_revoked: Vec<Meta>,
    /// Hub devices disabled (with `disable_on_hub`).
    pub disabled: Vec<DisabledDevice>,
    /// Of those, the ones a running hub was holding a connection for and dropped.
    pub dropped: Vec<String>,
    /// What to tell the user: the hub note, and how to publish a CRL.
    pub message: String,
}

fn revocation_now(now: OffsetDateTime, reason: &str) -> Revocation {
    Revocation {
        at: now.replace_nanosecond(0).unwrap_or(now),
        reason: reason.to_string(),
    }
}

/// Mark an entity revoked. The CRL (`crl`) of its issuer lists it from then on. With
/// keyCompromise, every certificate in its history that carries the same key is revoked too
/// (a renewal keeps the key by default), and `renew` without a new key is refused afterwards.
pub fn revoke(ws: &Workspace, req: &RevokeRequest) -> Result<Revoked> {
    let name = req.name.as_str();
    let reason = parse_reason(&req.reason)?;
    let current = ws.load(name)?;
    if let Some(r) = &current.meta.revoked {
        return Err(invalid(format!(
            "\"{name}\" was already revoked on {} ({}); {HUB_DOES_NOT_CHECK_CRLS}",
            issue::rfc3339(r.at),
            r.reason
        )));
    }
    let revocation = revocation_now(ws.now(), reason);
    let mut meta = current.meta.clone();
    meta.revoked = Some(revocation.clone());
    // The whole entity is rewritten in one swap: its current meta and the history entries
    // revoked with it.
    let spki = crate::pki::inspect::cert_spki(&current.cert_der);
    let mut extra = extras_of(&current.dir, None)?;
    let mut also_revoked = Vec::new();
    if reason == "keyCompromise" {
        for (path, bytes) in extra.iter_mut() {
            let Some(dir) = path
                .strip_prefix(&format!("{HISTORY_DIR}/"))
                .and_then(|p| p.strip_suffix(&format!("/{}", store::META_FILE)))
            else {
                continue;
            };
            let hdir = current.dir.join(HISTORY_DIR).join(dir);
            let Ok(cert) = std::fs::read_to_string(hdir.join(store::CERT_FILE)) else {
                continue;
            };
            let same_key = crate::hub::registry::pem_to_der(&cert)
                .and_then(|d| crate::pki::inspect::cert_spki(&d))
                .is_some_and(|k| Some(&k) == spki.as_ref());
            let mut old = store::read_meta(&hdir.join(store::META_FILE))?;
            if same_key && old.revoked.is_none() {
                old.revoked = Some(revocation.clone());
                *bytes = old.to_toml().into_bytes();
                also_revoked.push(old);
            }
        }
    }
    let key_pem = if current.meta.has_key {
        Some(current.read_key_pem()?)
    } else {
        None
    };
    ws.replace(&[NewEntity {
        meta: meta.clone(),
        cert_pem: current.cert_pem.clone(),
        key_pem,
        extra,
    }])?;
    let hub = crate::hub::HubStore::new(ws.clone());
    let gone: Vec<&Meta> = std::iter::once(&meta).chain(&also_revoked).collect();
    hub.note_revoked(
        gone.iter()
            .map(|m| crate::hub::registry::RevokedCert {
                sha256: m.sha256.clone(),
                name: name.to_string(),
                serial: m.serial.clone(),
                reason: reason.to_string(),
            })
            .collect(),
    )
    .map_err(|e| invalid(e.to_string()))?;
    let (disabled, dropped) = if req.disable_on_hub && meta.kind == Kind::Device {
        disable_on_hub(&hub, &gone)?
    } else {
        (vec![], vec![])
    };

    let crl_hint = match (&meta.issuer, meta.self_signed) {
        (Some(i), false) => {
            format!("publish a new CRL with `chainsmith crl {i} --out {i}.crl.pem`")
        }
        _ => "it is self-signed, so no CA's CRL can list it: delete its thumbprint from the hub"
            .to_string(),
    };
    let mut message = format!(
        "revoked \"{name}\" (serial {}, reason {reason}); {crl_hint}.",
        meta.serial
    );
    if !also_revoked.is_empty() {
        message.push_str(&format!(
            " The key is compromised: also revoked {} earlier certificate(s) with the same key (serial {}); a renewal must make a new key (`chainsmith renew {name} --rekey`).",
            also_revoked.len(),
            also_revoked
                .iter()
                .map(|m| m.serial.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if req.disable_on_hub && meta.kind != Kind::Device {
        message.push_str(&format!(
            " \"{name}\" is a {}, not a device credential: no hub device was disabled (remove it from the hub with `chainsmith hub ca remove {name}`).",
            meta.kind.as_str()
        ));
        message.push_str(&format!(" {HUB_DOES_NOT_CHECK_CRLS}."));
    } else if req.disable_on_hub && disabled.is_empty() {
        message.push_str(&format!(
            " No local-hub device uses this certificate: nothing to disable. {HUB_DOES_NOT_CHECK_CRLS}."
        ));
    } else if req.disable_on_hub {
        for d in &disabled {
            message.push_str(&format!(
                " Disabled hub device \"{}\" ({} auth, by {}){}{}.",
                d.id,
                d.auth.as_str(),
                d.matched,
                if d.was_enabled {
                    ""
                } else {
                    ", already disabled"
                },
                if dropped.contains(&d.id) {
                    "; the running hub dropped its connection"
                } else {
                    ""
                }
            ));
        }
        message.push_str(&format!(" {HUB_DOES_NOT_CHECK_CRLS}."));
    } else {
        message.push_str(&format!(" {HUB_DOES_NOT_CHECK_CRLS}; for the local hub: `chainsmith revoke {name} --disable-on-hub` or `chainsmith hub device disable ID`."));
    }
    Ok(Revoked {
        meta,
        also_revoked,
        disabled,
        dropped,
        message,
    })
}

/// Disable the hub devices whose credential is one of `certs`, and drop their connections from
/// a running hub (IoT Hub closes a disabled device's connection as well).
fn disable_on_hub(
    hub: &crate::hub::HubStore,
    certs: &[&Meta],
) -> Result<(Vec<DisabledDevice>, Vec<String>)> {
    let mut disabled: Vec<DisabledDevice> = Vec::new();
    for m in certs {
        for d in hub
            .disable_credential(&m.cn, &m.sha1, &m.sha256)
            .map_err(|e| invalid(e.to_string()))?
        {
            if !disabled.iter().any(|x| x.id == d.id) {
                disabled.push(d);
            }
        }
    }
    let mut dropped = Vec::new();
    for d in &disabled {
        let why = "device disabled: its certificate was revoked";
        // No running hub is fine: the registry on disk already refuses the next CONNECT.
        if let Ok(Some(true)) = crate::hub::control::kick_blocking(&hub.control_path(), &d.id, why)
        {
            dropped.push(d.id.clone());
        }
    }
    Ok((disabled, dropped))
}

/// The keyCompromise revocation that covers `entity`'s current key, if any: of its current
/// certificate or of one in its history with the same public key.
fn compromised(entity: &Entity) -> Option<Meta> {
    let is_kc = |m: &Meta| {
        m.revoked
            .as_ref()
            .is_some_and(|r| r.reason == "keyCompromise")
    };
    if is_kc(&entity.meta) {
        return Some(entity.meta.clone());
    }
    let spki = crate::pki::inspect::cert_spki(&entity.cert_der)?;
    let rd = std::fs::read_dir(entity.dir.join(HISTORY_DIR)).ok()?;
    rd.flatten().find_map(|e| {
        let m = store::read_meta(&e.path().join(store::META_FILE)).ok()?;
        let cert = std::fs::read_to_string(e.path().join(store::CERT_FILE)).ok()?;
        let k = crate::hub::registry::pem_to_der(&cert)
            .and_then(|d| crate::pki::inspect::cert_spki(&d))?;
        (is_kc(&m) && k == spki).then_some(m)
    })
}

#[derive(Clone, Debug, Serialize)]
pub struct RevokedEntry {
    pub name: String,
    pub serial: String,
    pub reason: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(Clone, Debug, Serialize)]
pub struct Crl {
    pub issuer: String,
    #[serde(skip)]
    pub pem: String,
    #[serde(skip)]
    pub der: Vec<u8>,
    pub number: String,
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    pub revoked: Vec<RevokedEntry>,
    pub note: &'static str,
}

/// Revoked certificates `ca` issued: current entities and replaced ones kept in history.
pub fn revoked_by(ws: &Workspace, ca: &str) -> Result<Vec<RevokedEntry>> {
    let (metas, _) = ws.list()?;
    let mut out = Vec::new();
    let mut push = |m: &Meta, name: &str| {
        if let (Some(r), Some(i)) = (&m.revoked, &m.issuer) {
            if i == ca && !m.self_signed {
                out.push(RevokedEntry {
                    name: name.to_string(),
                    serial: m.serial.clone(),
                    reason: r.reason.clone(),
                    at: r.at,
                });
            }
        }
    };
    for m in &metas {
        push(m, &m.name);
        let history = ws.dir_of(&m.name).map(|d| d.join(HISTORY_DIR));
        if let Some(rd) = history.ok().and_then(|h| std::fs::read_dir(h).ok()) {
            for e in rd.flatten() {
                if let Ok(h) = store::read_meta(&e.path().join(store::META_FILE)) {
                    push(&h, &m.name);
                }
            }
        }
    }
    out.sort_by(|a, b| (a.at, &a.serial).cmp(&(b.at, &b.serial)));
    out.dedup_by(|a, b| a.serial == b.serial);
    Ok(out)
}

fn subject_key_id(cert_der: &[u8]) -> Option<Vec<u8>> {
    use x509_parser::prelude::*;
    let (_, cert) = X509Certificate::from_der(cert_der).ok()?;
    cert.extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// A CRL signed by `ca` listing every certificate it issued that is revoked.
pub fn crl(ws: &Workspace, ca_name: &str, days: Option<u32>) -> Result<Crl> {
    let ca = load_ca(ws, ca_name)?;
    let revoked = revoked_by(ws, ca_name)?;
    let days = days.unwrap_or(30);
    if days == 0 {
        return Err(invalid("--days must be at least 1 (the CRL's nextUpdate)"));
    }
    let now = ws.now();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let this_update = now - issue::BACKDATE;
    let next_update = issue::days_after("a CRL", now, days)?;
    // A CRL number that grows with time keeps successive CRLs ordered without shared state.
    let number = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    let revoked_certs = revoked
        .iter()
        .map(|r| {
            let serial = hex::decode(&r.serial).map_err(|_| {
                invalid(format!(
                    "serial \"{}\" of \"{}\" in meta.toml is not hex",
                    r.serial, r.name
                ))
            })?;
            Ok(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&serial),
                revocation_time: r.at,
                reason_code: Some(rcgen_reason(&r.reason)),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let params = rcgen::CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: rcgen::SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        // The CRL's authority key identifier must equal the CA certificate's own subject key
        // identifier, however that was made (OpenSSL uses SHA-1): otherwise verifiers skip the CRL.
        key_identifier_method: match subject_key_id(&ca.cert_der) {
            Some(ski) => rcgen::KeyIdMethod::PreSpecified(ski),
            None => rcgen::KeyIdMethod::Sha256,
        },
    };
    let signed = params
        .signed_by(ca.issuer())
        .map_err(crate::pki::Error::from)?;
    let pem = signed.pem().map_err(crate::pki::Error::from)?;
    Ok(Crl {
        issuer: ca_name.to_string(),
        der: signed.der().to_vec(),
        pem,
        number: number.to_string(),
        this_update,
        next_update,
        revoked,
        note: HUB_DOES_NOT_CHECK_CRLS,
    })
}

// ---------------------------------------------------------------- expiry

/// The longest expiry window: past 9999-12-31 there is nothing left to expire.
pub const MAX_WINDOW_DAYS: i64 = 3_660_000;

/// Parse a window like `30d`, `12h`, `2w` or a bare number of days, up to
/// [`MAX_WINDOW_DAYS`] (about 10,000 years, more than X.509 time can span).
pub fn parse_window(s: &str) -> Result<Duration> {
    let t = s.trim().to_ascii_lowercase();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let not_a_number = || {
        invalid(format!(
            "expiry window \"{s}\" is not a number with a unit; write it like 30d, 12h or 2w"
        ))
    };
    if num.is_empty() {
        return Err(not_a_number());
    }
    // Digits only, so a failed parse means too many of them.
    let n: i64 = num.parse().unwrap_or(i64::MAX);
    let minutes_per_unit: i64 = match unit {
        "" | "d" | "day" | "days" => 24 * 60,
        "h" | "hour" | "hours" => 60,
        "w" | "week" | "weeks" => 7 * 24 * 60,
        "m" | "min" | "minutes" => 1,
        "y" | "year" | "years" => 365 * 24 * 60,
        _ => {
            return Err(invalid(format!(
                "expiry window \"{s}\" has an unknown unit \"{unit}\"; use d, h, w or y (e.g. 30d)"
            )));
        }
    };
    match n.checked_mul(minutes_per_unit) {
        Some(m) if m <= MAX_WINDOW_DAYS * 24 * 60 => Ok(Duration::minutes(m)),
        _ => Err(invalid(format!(
            "expiry window \"{s}\" is longer than {MAX_WINDOW_DAYS} days, beyond 9999-12-31T23:59:59Z, the latest time X.509 can express; use a shorter window"
        ))),
    }
}

/// Entities whose certificate ends within `window` from `now` (already expired included),
/// soonest first.
pub fn expiring(ws: &Workspace, window: Duration, now: OffsetDateTime) -> Result<Vec<TreeRow>> {
    let (metas, _) = ws.list()?;
    let limit = now
        .checked_add(window)
        .filter(|l| *l <= issue::LATEST)
        .ok_or_else(|| {
            invalid(format!(
                "an expiry window of {} days from now reaches past 9999-12-31T23:59:59Z, the latest time X.509 can express; every certificate expires before that, so use at most {} days",
                window.whole_days(),
                (issue::LATEST - now).whole_days().max(0)
            ))
        })?;
    let mut rows: Vec<TreeRow> = tree(metas, now)
        .into_iter()
        .filter(|r| r.meta.not_after <= limit)
        .map(|mut r| {
            r.depth = 0;
            r
        })
        .collect();
    rows.sort_by(|a, b| (a.meta.not_after, &a.meta.name).cmp(&(b.meta.not_after, &b.meta.name)));
    Ok(rows)
}

/// The issuers of an entity (nearest first), for showing a renewed chain.
pub fn issuers_of(ws: &Workspace, name: &str) -> Result<Vec<String>> {
    Ok(chain_of(ws, name)?
        .into_iter()
        .skip(1)
        .map(|e| e.meta.name)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_reasons() {
        assert_eq!(parse_window("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_window("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_window("12").unwrap(), Duration::days(12));
        assert!(parse_window("soon").is_err());
        assert!(parse_window("3x").unwrap_err().to_string().contains("unit"));
        assert_eq!(parse_reason("key-compromise").unwrap(), "keyCompromise");
        assert_eq!(parse_reason("Superseded").unwrap(), "superseded");
        assert!(
            parse_reason("bored")
                .unwrap_err()
                .to_string()
                .contains("keyCompromise")
        );
    }
}
