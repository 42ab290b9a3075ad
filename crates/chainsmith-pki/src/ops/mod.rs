//! Operations on a workspace: what the CLI's and the TUI's commands do, in one place.
//! Each combines `pki` (make and check certificates) with `store` (keep them).

pub mod lifecycle;
pub use lifecycle::new_devices_or_slot;

use crate::pki::identity::{self, check_device_id, check_entity_name, expand_range};
use crate::pki::inspect::CertView;
use crate::pki::issue::{self, San, parse_rfc3339};
use crate::pki::lint::{self, Finding, LintContext};
use crate::pki::verify::{ChainCheck, Purpose, verify_chain};
use crate::pki::{
    CaHandle, CannotSignError, DeviceIdError, Eku, InternalError, IssueSpec, IssuerError, KeyAlg,
    Profile, Target, Validity, ValidityError, subject, thumbprints,
};
use crate::progress::{Progress, Unwatched};
use crate::store::{Entity, Error, Kind, Meta, NewEntity, Result, Slot, Workspace};
use rayon::prelude::*;
use serde::Serialize;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// How long a new certificate is valid, as the user asked.
#[derive(Clone, Debug, Default)]
pub struct ValidityArg {
    /// Validity in days from now (or from `not_before`).
    pub days: Option<u32>,
    /// Start, RFC 3339.
    pub not_before: Option<String>,
    /// End, RFC 3339.
    pub not_after: Option<String>,
}

impl ValidityArg {
    /// Just a length in days.
    pub fn days(days: u32) -> Self {
        ValidityArg {
            days: Some(days),
            ..Default::default()
        }
    }

    /// The window this argument means, with `now` as the start when none is given.
    pub fn resolve(&self, profile: &Profile, now: OffsetDateTime) -> Result<Validity> {
        let days = self.days.unwrap_or_else(|| Validity::default_days(profile));
        if days == 0 {
            return Err(crate::pki::Error::from(ValidityError::ZeroDays).into());
        }
        if self.days.is_some() && self.not_before.is_some() && self.not_after.is_some() {
            return Err(crate::pki::Error::from(ValidityError::OverDetermined).into());
        }
        let nb = self.not_before.as_deref().map(parse_rfc3339).transpose()?;
        let na = self.not_after.as_deref().map(parse_rfc3339).transpose()?;
        // Every given time is checked before any arithmetic on it, so no sum can overflow.
        for (what, t) in [("not-before", nb), ("not-after", na)] {
            if let Some(t) = t {
                issue::check_x509_time(what, t)?;
            }
        }
        Ok(match (nb, na) {
            (None, None) => Validity::try_days_from(now, days)?,
            (Some(nb), None) => {
                Validity::explicit(nb, issue::days_after("a certificate", nb, days)?)?
            }
            (None, Some(na)) => {
                let back = na
                    .checked_sub(time::Duration::days(i64::from(days)))
                    .unwrap_or(issue::EARLIEST)
                    .max(issue::EARLIEST);
                let nb = (now - issue::BACKDATE).min(back);
                Validity::explicit(nb, na)?
            }
            (Some(nb), Some(na)) => Validity::explicit(nb, na)?,
        })
    }
}

/// A step an engine call leaves to the user: the engine says it in words and lists it as
/// this value, and each face offers it as its own command or key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "kebab-case")]
pub enum NextStep {
    /// Publish a new CRL of this CA.
    PublishCrl {
        /// The issuing CA.
        ca: String,
    },
    /// Renew with a new key (the old one is compromised).
    Rekey {
        /// The entity.
        name: String,
    },
    /// Remove this CA from the local hub (revoking a CA disables no device).
    RemoveHubCa {
        /// The CA.
        name: String,
    },
    /// Disable the device on the local hub, where revocation alone changes nothing.
    DisableOnHub {
        /// The entity.
        name: String,
    },
    /// Copy the subject alternative names a CSR asks for, or set names explicitly.
    CsrSans,
    /// Upload the CA's new certificate to the local hub.
    UploadCa {
        /// The CA.
        name: String,
    },
    /// Prove possession of the CA's new certificate for the hub's verification code.
    ProveCa {
        /// The CA.
        name: String,
        /// The hub's verification code.
        code: String,
    },
    /// Renew the CA rather than replace it: a renewal keeps the key, so what it issued
    /// still verifies.
    KeepKey {
        /// The CA.
        name: String,
    },
    /// Look at the entity's details (its thumbprint slots, issuer and key).
    Show {
        /// The entity.
        name: String,
    },
}

/// What a command made, for printing.
#[derive(Clone, Debug, Serialize)]
pub struct Created {
    /// What was made.
    pub entities: Vec<Meta>,
    /// What the user should know.
    pub warnings: Vec<String>,
    /// The steps the warnings recommend, for a face to offer as its own commands or keys.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<NextStep>,
    /// The file written (verification certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

/// Which CAs (with keys) the workspace has, for an error that refused a non-CA as issuer.
fn issuing_cas(ws: &Workspace) -> Vec<String> {
    let mut cas: Vec<String> = ws
        .list()
        .map(|(metas, _)| metas)
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.kind.is_ca() && m.has_key)
        .map(|m| m.name)
        .collect();
    cas.sort();
    cas
}

/// Load a CA that can issue, with errors for every way it cannot.
pub fn load_ca(ws: &Workspace, name: &str) -> Result<CaHandle> {
    let entity = ws.load(name).map_err(|e| match e {
        Error::NotFound {
            name,
            workspace,
            hint,
        } => Error::NoIssuer {
            name,
            workspace,
            hint,
        },
        other => other,
    })?;
    if !entity.meta.kind.is_ca() {
        return Err(Error::NotACa {
            name: name.to_string(),
            kind: entity.meta.kind.as_str(),
            cas: issuing_cas(ws),
        });
    }
    if !entity.meta.has_key {
        return Err(crate::pki::Error::from(CannotSignError::TrustOnly {
            name: name.to_string(),
        })
        .into());
    }
    let key = entity.read_key_pem()?;
    Ok(CaHandle::new(name, entity.cert_der, &key)?)
}

fn subject_for(
    name: &str,
    cn: Option<&str>,
    subject_text: Option<&str>,
) -> Result<rcgen::DistinguishedName> {
    Ok(match (cn, subject_text) {
        (_, Some(s)) => subject::parse_subject(s)?,
        (Some(cn), None) => subject::cn_only(cn)?,
        (None, None) => subject::cn_only(name)?,
    })
}

/// What a new certificate's meta takes from the certificate itself.
struct Written {
    cn: String,
    subject: String,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

/// The record of a certificate we just made at `created` (the workspace's "now"). Cheap on
/// purpose (one parse, two digests): it runs once per device in batches of thousands.
pub(crate) fn meta_for(
    name: &str,
    kind: Kind,
    issued: &issue::Issued,
    issuer: Option<&str>,
    pathlen: Option<u32>,
    target: Option<Target>,
    created: OffsetDateTime,
) -> Result<Meta> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(&issued.cert_der)
        .map_err(|e| crate::pki::Error::parse("new certificate", e))?;
    let written = Written {
        cn: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("")
            .to_string(),
        subject: cert.subject().to_string(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
    };
    Ok(new_meta(
        name, kind, issued, issuer, pathlen, target, created, written,
    ))
}

/// [`meta_for`] of a device certificate [`device_entity`] has just made with CN = `id` from
/// `validity`, without parsing it back: its subject and window are what we asked rcgen for
/// (rcgen drops the sub-second part and writes UTC). The parse cost 4% of a device's CPU
/// (perf, 20,000 devices); a unit test holds this equal to [`meta_for`].
fn device_meta(
    id: &str,
    issued: &issue::Issued,
    validity: &Validity,
    ca: Option<&CaHandle>,
    target: Target,
    created: OffsetDateTime,
) -> Meta {
    let as_written = |t: OffsetDateTime| {
        t.replace_nanosecond(0)
            .unwrap_or(t)
            .to_offset(time::UtcOffset::UTC)
    };
    let written = Written {
        cn: id.to_string(),
        subject: format!("CN={id}"),
        not_before: as_written(validity.not_before),
        not_after: as_written(validity.not_after),
    };
    let issuer = ca.map(|c| c.name.as_str());
    new_meta(
        id,
        Kind::Device,
        issued,
        issuer,
        None,
        Some(target),
        created,
        written,
    )
}

#[allow(clippy::too_many_arguments)] // the fields of a meta, passed through
fn new_meta(
    name: &str,
    kind: Kind,
    issued: &issue::Issued,
    issuer: Option<&str>,
    pathlen: Option<u32>,
    target: Option<Target>,
    created: OffsetDateTime,
    written: Written,
) -> Meta {
    let (sha1, sha256) = thumbprints(&issued.cert_der);
    Meta {
        format: 1,
        name: name.to_string(),
        kind,
        cn: written.cn,
        subject: written.subject,
        issuer: issuer.map(str::to_string),
        key_alg: issued.key_alg,
        serial: issued.serial_hex.clone(),
        not_before: written.not_before,
        not_after: written.not_after,
        sha1,
        sha256,
        pathlen,
        target,
        has_key: issued.key_pem.is_some(),
        self_signed: issuer.is_none(),
        slot: None,
        code: None,
        revoked: None,
        created,
        spec_hash: None,
        fixture: None,
    }
}

fn store(ws: &Workspace, batch: Vec<NewEntity>, force: bool) -> Result<Vec<Meta>> {
    store_watched(ws, batch, force, &Unwatched)
}

/// [`store`], telling `progress` of each entity written.
fn store_watched(
    ws: &Workspace,
    batch: Vec<NewEntity>,
    force: bool,
    progress: &dyn Progress,
) -> Result<Vec<Meta>> {
    if force {
        ws.replace_watched(&batch, progress)?;
    } else {
        ws.create_watched(&batch, progress)?;
    }
    Ok(batch.into_iter().map(|e| e.meta).collect())
}

/// A CA (root when `issuer` is None) as the user described it.
#[derive(Clone, Debug)]
pub struct CaRequest {
    /// The entity name.
    pub name: String,
    /// The CN (the name when None).
    pub cn: Option<String>,
    /// A whole subject instead of a CN.
    pub subject: Option<String>,
    /// The key algorithm.
    pub key: KeyAlg,
    /// How long it is valid.
    pub validity: ValidityArg,
    /// The path length (one less than the issuer's when None).
    pub pathlen: Option<u8>,
    /// The issuing CA (a root when None).
    pub issuer: Option<String>,
    /// Replace an entity of that name.
    pub force: bool,
}

/// Make a root or intermediate CA.
pub fn new_ca(ws: &Workspace, req: &CaRequest) -> Result<Created> {
    check_entity_name(&req.name)?;
    if !req.force {
        ws.check_free(std::slice::from_ref(&req.name))?;
    }
    let subject = subject_for(&req.name, req.cn.as_deref(), req.subject.as_deref())?;
    let mut warnings: Vec<String> = req.key.warning().map(str::to_string).into_iter().collect();
    let mut next = Vec::new();
    if req.force && ws.exists(&req.name) {
        let (metas, _) = ws.list()?;
        let children: Vec<&str> = metas
            .iter()
            .filter(|m| m.issuer.as_deref() == Some(req.name.as_str()) && m.name != req.name)
            .map(|m| m.name.as_str())
            .collect();
        if !children.is_empty() {
            warnings.push(format!(
                "\"{}\" was replaced with a new key: the {} certificate(s) it issued ({}{}) no longer verify; re-issue them (a renewal keeps the key instead)",
                req.name,
                children.len(),
                children.iter().take(3).copied().collect::<Vec<_>>().join(", "),
                if children.len() > 3 { ", ..." } else { "" },
            ));
            next.push(NextStep::KeepKey {
                name: req.name.clone(),
            });
        }
    }
    let (issued, kind, pathlen) = match &req.issuer {
        None => {
            let profile = Profile::Root {
                pathlen: req.pathlen,
            };
            let spec = IssueSpec {
                subject,
                validity: req.validity.resolve(&profile, ws.now())?,
                profile,
            };
            (issue::issue(&spec, req.key, None)?, Kind::Root, req.pathlen)
        }
        Some(issuer) => {
            if issuer == &req.name {
                return Err(crate::pki::Error::from(IssuerError::Itself {
                    name: req.name.clone(),
                })
                .into());
            }
            let ca = load_ca(ws, issuer)?;
            let pathlen = req.pathlen.unwrap_or_else(|| ca.default_child_pathlen());
            ca.check_child_ca(&req.name, Some(pathlen))?;
            let profile = Profile::Intermediate {
                pathlen: Some(pathlen),
            };
            let spec = IssueSpec {
                subject,
                validity: req.validity.resolve(&profile, ws.now())?,
                profile,
            };
            if spec.validity.not_after > ca.not_after {
                warnings.push(format!(
                    "\"{}\" is valid until {} but its issuer \"{issuer}\" expires earlier ({}); the chain stops verifying when \"{issuer}\" expires",
                    req.name,
                    issue::rfc3339(spec.validity.not_after),
                    issue::rfc3339(ca.not_after)
                ));
            }
            (
                issue::issue(&spec, req.key, Some(&ca))?,
                Kind::Intermediate,
                Some(pathlen),
            )
        }
    };
    let meta = meta_for(
        &req.name,
        kind,
        &issued,
        req.issuer.as_deref(),
        pathlen.map(u32::from),
        None,
        ws.now(),
    )?;
    let entities = store(
        ws,
        vec![NewEntity {
            meta,
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra: vec![],
        }],
        req.force,
    )?;
    Ok(Created {
        entities,
        warnings,
        next,
        file: None,
    })
}

/// Devices, CA-signed or self-signed (`issuer` None).
#[derive(Clone, Debug, Default)]
pub struct DeviceRequest {
    /// Ids or ranges like `dev-{001..500}`.
    pub ids: Vec<String>,
    /// The issuing CA (self-signed devices when None).
    pub issuer: Option<String>,
    /// The key algorithm (the default when None).
    pub key: Option<KeyAlg>,
    /// How long they are valid.
    pub validity: ValidityArg,
    /// Client, or client and server authentication.
    pub eku: Eku,
    /// Subject alternative names.
    pub sans: Vec<String>,
    /// Whose identity rules the ids must follow.
    pub target: Target,
    /// For a self-signed device: the thumbprint slot.
    pub slot: Option<Slot>,
    /// Replace entities of those names.
    pub force: bool,
}

/// Expand ranges and check every id against the target's rules, collecting warnings.
pub fn expand_ids(patterns: &[String], target: Target) -> Result<(Vec<String>, Vec<String>)> {
    let mut ids = Vec::new();
    for p in patterns {
        ids.extend(expand_range(p)?);
    }
    if ids.is_empty() {
        return Err(crate::pki::Error::from(DeviceIdError::NoneGiven).into());
    }
    let mut warnings = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for id in &ids {
        let w = check_device_id(id, target)?;
        if warnings.len() < 5 {
            warnings.extend(w);
        }
        check_entity_name(id)?;
        if !seen.insert(id.as_str()) {
            return Err(crate::pki::Error::from(DeviceIdError::Twice { id: id.clone() }).into());
        }
    }
    Ok((ids, warnings))
}

/// One device certificate with a fresh key (CN = id), ready to store: what `new device` and
/// `apply` both make, on every core (call it from a rayon iterator); `created` is the
/// workspace's "now".
#[allow(clippy::too_many_arguments)] // each is one field of the device; a struct would only rename them
pub fn device_entity(
    id: &str,
    ca: Option<&CaHandle>,
    key: KeyAlg,
    profile: &Profile,
    validity: Validity,
    target: Target,
    slot: Option<Slot>,
    created: OffsetDateTime,
) -> Result<NewEntity> {
    let spec = IssueSpec {
        subject: subject::cn_only(id)?,
        profile: profile.clone(),
        validity,
    };
    let issued = issue::issue(&spec, key, ca)?;
    let mut meta = device_meta(id, &issued, &validity, ca, target, created);
    meta.slot = slot;
    Ok(NewEntity {
        meta,
        cert_pem: issued.cert_pem,
        key_pem: issued.key_pem,
        extra: vec![],
    })
}

/// The warning when certificates valid for `validity` would outlive their issuer `ca`: a chain
/// is refused once its CA has expired, however long the leaf is valid. `what` begins it
/// ("the devices are", "the new certificate is").
pub(crate) fn outlives_issuer(
    what: &str,
    validity: &Validity,
    ca: Option<&CaHandle>,
) -> Option<String> {
    let ca = ca.filter(|ca| validity.not_after > ca.not_after)?;
    Some(format!(
        "{what} valid until {} but \"{}\" expires earlier ({})",
        issue::rfc3339(validity.not_after),
        ca.name,
        issue::rfc3339(ca.not_after)
    ))
}

/// Make devices (ranges expanded) under a CA, or self-signed.
pub fn new_devices(ws: &Workspace, req: &DeviceRequest) -> Result<Created> {
    new_devices_watched(ws, req, &Unwatched)
}

/// [`new_devices`], telling `progress` how far it has got: stage "issuing" (one per device
/// made and stored, see [`Workspace::create_streamed`]), then "syncing"; with `force`,
/// "issuing" (keys and signatures) then "writing" (each swapped in).
pub fn new_devices_watched(
    ws: &Workspace,
    req: &DeviceRequest,
    progress: &dyn Progress,
) -> Result<Created> {
    let (ids, mut warnings) = expand_ids(&req.ids, req.target)?;
    if !req.force {
        ws.check_free(&ids)?;
    }
    let key = req.key.unwrap_or(KeyAlg::EcP256);
    warnings.extend(key.warning().map(str::to_string));
    let sans: Vec<San> = req
        .sans
        .iter()
        .map(|s| San::parse(s))
        .collect::<Result<_, _>>()?;
    let ca = req.issuer.as_deref().map(|i| load_ca(ws, i)).transpose()?;
    let profile = Profile::Device { eku: req.eku, sans };
    let validity = req.validity.resolve(&profile, ws.now())?;
    warnings.extend(outlives_issuer("the devices are", &validity, ca.as_ref()));
    let make = |id: &String| {
        device_entity(
            id,
            ca.as_ref(),
            key,
            &profile,
            validity,
            req.target,
            req.slot,
            ws.now(),
        )
    };
    let entities = if req.force {
        // Replacing keeps each old entity's history, read before anything is swapped.
        progress.stage("issuing", crate::progress::total(ids.len()));
        let mut batch: Vec<NewEntity> = ids
            .par_iter()
            .map(|id| {
                let made = make(id);
                progress.done(1);
                made
            })
            .collect::<Result<_>>()?;
        for e in &mut batch {
            lifecycle::keep_replaced(ws, e)?;
        }
        store_watched(ws, batch, true, progress)?
    } else {
        ws.create_streamed(&ids, make, progress)?
    };
    Ok(Created {
        entities,
        warnings,
        next: vec![],
        file: None,
    })
}

/// Where proof of possession writes the verification certificate of CA `issuer`: beside the
/// workspace's entities, one file per CA (a new code replaces the old certificate).
pub fn verification_out(ws_root: &Path, issuer: &str) -> PathBuf {
    ws_root
        .join("verification")
        .join(format!("{issuer}_verification_cert.pem"))
}

/// The proof-of-possession certificate for a hub's verification code, written to `out`; an
/// existing `out` (the certificate for an earlier code, or a user's file) is replaced only
/// with `replace_out`.
pub fn new_verification(
    ws: &Workspace,
    issuer: &str,
    code: &str,
    out: &Path,
    days: Option<u32>,
    replace_out: bool,
) -> Result<Created> {
    identity::check_verification_code(code)?;
    if let Some(dir) = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty() && !d.is_dir())
    {
        return Err(Error::MissingDir {
            file: out.to_path_buf(),
            dir: dir.to_path_buf(),
        });
    }
    let ca = load_ca(ws, issuer)?;
    let profile = Profile::Verification;
    let validity = ValidityArg {
        days,
        ..Default::default()
    }
    .resolve(&profile, ws.now())?;
    let spec = IssueSpec {
        subject: subject::cn_only(code)?,
        profile,
        validity,
    };
    let issued = issue::issue(&spec, KeyAlg::EcP256, Some(&ca))?;
    // Check our own work the way the hub will: the signature must verify with the CA's key.
    if !crate::pki::inspect::signed_by(&issued.cert_der, &ca.cert_der) {
        return Err(
            crate::pki::Error::from(InternalError::VerificationCertificate {
                issuer: issuer.to_string(),
            })
            .into(),
        );
    }
    // The whole code goes into the name, so two codes never share an entity; a code may hold
    // characters a file name cannot.
    let safe_code: String = code
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut name = format!("verify-{issuer}-{safe_code}");
    name.truncate(128);
    let mut meta = meta_for(
        &name,
        Kind::Verification,
        &issued,
        Some(issuer),
        None,
        None,
        ws.now(),
    )?;
    meta.code = Some(code.to_string());
    let cert_pem = issued.cert_pem.clone();
    // Refuse before anything is stored: the file is the user's until they say otherwise.
    crate::store::refuse_overwrite([(out, cert_pem.as_bytes())], replace_out)?;
    // The same code again replaces its own entity (a re-run); the entity is stored before the
    // file is written, so a failure never leaves a file the workspace does not know.
    let entities = store(
        ws,
        vec![NewEntity {
            meta,
            cert_pem: issued.cert_pem,
            key_pem: issued.key_pem,
            extra: vec![],
        }],
        true,
    )?;
    crate::store::write_user_file(out, cert_pem.as_bytes(), 0o644, replace_out)?;
    Ok(Created {
        entities,
        warnings: identity::verification_code_warning(code)
            .into_iter()
            .collect(),
        next: vec![],
        file: Some(out.to_path_buf()),
    })
}

/// Sign a device's CSR with a workspace CA.
#[derive(Clone, Debug, Default)]
pub struct CsrRequest {
    /// The signing CA.
    pub issuer: String,
    /// The entity name (the CSR's CN when None).
    pub name: Option<String>,
    /// How long it is valid.
    pub validity: ValidityArg,
    /// Client, or client and server authentication.
    pub eku: Eku,
    /// Whose identity rules the CN must follow.
    pub target: Target,
    /// Replace an entity of that name.
    pub force: bool,
    /// subjectAltNames to put in, as `new device --san` takes them.
    pub sans: Vec<String>,
    /// Copy the CSR's own DNS, IP and URI names, after checking them.
    pub keep_san: bool,
    /// Issue `CN = name` alone, without the O/OU/L/ST/C the CSR asks for (DPS's issuance).
    pub cn_only: bool,
}

/// Sign a device's CSR: the key from the request; the CN from the name (`req.name`, else the
/// request's one CN) and at most the allowed attributes of its subject
/// ([`crate::pki::csr::CSR_SUBJECT_EXTRAS`]); the profile from chainsmith.
pub fn sign_csr(ws: &Workspace, csr_bytes: &[u8], req: &CsrRequest) -> Result<Created> {
    let csr = crate::pki::csr::parse_csr(csr_bytes)?;
    let name = match (&req.name, &csr.cn) {
        (Some(n), _) => n.clone(),
        (None, Some(cn)) => cn.clone(),
        (None, None) => {
            return Err(crate::pki::Error::CsrWithoutCn.into());
        }
    };
    check_entity_name(&name)?;
    let mut warnings = Vec::new();
    let mut next = Vec::new();
    // The certificate's CN is the name chosen here, never the request's own subject: a CSR
    // cannot name a device other than the one the operator (or DPS) signs it for.
    match check_device_id(&name, req.target) {
        Ok(w) => warnings.extend(w),
        Err(e) => warnings.push(format!(
            "the CN \"{name}\" does not fit {} rules: {e}",
            req.target
        )),
    }
    if let Some(cn) = csr.cn.as_ref().filter(|cn| **cn != name) {
        warnings.push(format!(
            "the CSR asks for CN \"{}\"; the certificate's CN is the name \"{name}\", the device id the hub will expect",
            crate::text::escape_controls(cn)
        ));
    }
    let mut sans: Vec<San> = req
        .sans
        .iter()
        .map(|s| San::parse(s))
        .collect::<Result<_, _>>()?;
    let mut ignored = csr.ignored_extensions.clone();
    if req.keep_san {
        ignored.retain(|e| e != "SubjectAlternativeName");
        for san in &csr.sans {
            if let San::Dns(d) = san
                && *d == name
            {
                check_device_id(d, req.target)?;
            }
            crate::pki::csr::check_requested_san(san, Some(&name))?;
            if !sans.contains(san) {
                sans.push(san.clone());
            }
        }
        if !csr.other_sans.is_empty() {
            warnings.push(format!(
                "the CSR's other subjectAltNames were not copied (only DNS, IP and URI are): {}",
                csr.other_sans.join(", ")
            ));
        }
    } else if !csr.sans.is_empty() {
        warnings.push(format!(
            "the CSR asks for subjectAltName {}; not copied: copy it, or set names",
            csr.sans
                .iter()
                .map(crate::pki::csr::san_text)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        ignored.retain(|e| e != "SubjectAlternativeName");
        next.push(NextStep::CsrSans);
    }
    if !ignored.is_empty() {
        warnings.push(format!(
            "the CSR asked for extensions ({}); they were ignored: CA flag, key usage and EKU come from chainsmith's device profile",
            ignored.join(", ")
        ));
    }
    if !req.force {
        ws.check_free(std::slice::from_ref(&name))?;
    }
    let ca = load_ca(ws, &req.issuer)?;
    let profile = Profile::Device { eku: req.eku, sans };
    let subject = if req.cn_only {
        crate::pki::subject::cn_only(&name)?
    } else {
        csr.issued_subject(&name)?
    };
    let spec = IssueSpec {
        subject,
        validity: req.validity.resolve(&profile, ws.now())?,
        profile,
    };
    let issued = issue::issue_for_public_key(&spec, &csr.spki_der, &ca)?;
    let meta = meta_for(
        &name,
        Kind::Device,
        &issued,
        Some(&req.issuer),
        None,
        Some(req.target),
        ws.now(),
    )?;
    let mut entity = NewEntity {
        meta,
        cert_pem: issued.cert_pem,
        key_pem: None,
        extra: vec![],
    };
    if req.force {
        lifecycle::keep_replaced(ws, &mut entity)?;
    }
    let entities = store(ws, vec![entity], req.force)?;
    Ok(Created {
        entities,
        warnings,
        next,
        file: None,
    })
}

/// Everything `show` prints about an entity.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The entity.
    pub name: String,
    /// Its meta.toml.
    pub meta: Meta,
    /// Its certificate, decoded.
    pub certificate: CertView,
    /// Entity names from this one up to the root.
    pub chain: Vec<String>,
    /// The chain judged as OpenSSL would.
    pub chain_check: ChainCheck,
    /// Lint findings.
    pub lint: Vec<Finding>,
    /// Where its files lie.
    pub paths: Paths,
}

/// Where an entity's files lie.
#[derive(Clone, Debug, Serialize)]
pub struct Paths {
    /// Its directory.
    pub dir: PathBuf,
    /// Its certificate.
    pub cert: PathBuf,
    /// Its private key, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Its meta.toml.
    pub meta: PathBuf,
}

/// The paths of an entity's files.
pub(crate) fn paths_of(entity: &Entity) -> Paths {
    Paths {
        dir: entity.dir.clone(),
        cert: entity.cert_path(),
        key: entity.meta.has_key.then(|| entity.key_path()),
        meta: entity.meta_path(),
    }
}

/// Everything `show` prints about an entity.
pub fn report(ws: &Workspace, name: &str) -> Result<Report> {
    let chain = crate::store::chain_of(ws, name)?;
    let entity = &chain[0];
    let now = ws.now();
    let view = CertView::from_der_at(&entity.cert_der, now)?;
    let issuer_views: Vec<CertView> = chain[1..]
        .iter()
        .map(|e| CertView::from_der_at(&e.cert_der, now))
        .collect::<Result<_, _>>()?;
    let top = chain.last().expect("chain has the entity");
    let (roots, intermediates): (Vec<Vec<u8>>, Vec<Vec<u8>>) = if chain.len() == 1 {
        (vec![entity.cert_der.clone()], vec![])
    } else {
        (
            vec![top.cert_der.clone()],
            chain[1..chain.len() - 1]
                .iter()
                .map(|e| e.cert_der.clone())
                .collect(),
        )
    };
    let purpose = if entity.meta.kind == Kind::Device && view.eku_client_auth == Some(true) {
        Purpose::SslClient
    } else {
        Purpose::Any
    };
    let partial = !top.meta.self_signed && top.meta.kind != Kind::Root;
    let chain_check = verify_chain(
        &entity.cert_der,
        &intermediates,
        &roots,
        purpose,
        partial,
        now,
    )?;
    let ctx = LintContext {
        device_id: (entity.meta.kind == Kind::Device).then_some(entity.meta.name.as_str()),
        target: entity.meta.target,
        issuers: &issuer_views,
    };
    let mut findings = lint::lint(&view, &ctx);
    // A CA re-keyed since this was issued: say which of its certificates the chain carries.
    for pair in chain.windows(2) {
        let (child, issuer) = (&pair[0], &pair[1]);
        if issuer.dir.parent().and_then(|p| p.file_name())
            == Some(crate::store::HISTORY_DIR.as_ref())
        {
            findings.push(Finding {
                severity: lint::Severity::Info,
                code: "earlier-ca-certificate",
                message: format!(
                    "\"{}\" was issued by an earlier certificate of \"{}\" (serial {}, SHA-256 {}, kept in its history, found by key identifier and signature): its chain carries that one; a hub must hold it too",
                    child.meta.name, issuer.meta.name, issuer.meta.serial, issuer.meta.sha256
                ),
            });
        }
    }
    if let Some(r) = &entity.meta.revoked {
        findings.insert(0, Finding {
            severity: lint::Severity::Warning,
            code: "revoked",
            message: format!("revoked ({}); Azure IoT Hub does not check CRLs: disable the device in the hub too", r.reason),
        });
    }
    Ok(Report {
        name: name.to_string(),
        meta: entity.meta.clone(),
        certificate: view,
        chain: chain.iter().map(|e| e.meta.name.clone()).collect(),
        chain_check,
        lint: findings,
        paths: paths_of(entity),
    })
}

/// One node of the hierarchy for `list` and the TUI's tree.
#[derive(Clone, Debug, Serialize)]
pub struct TreeRow {
    /// How deep in the tree (0 for roots).
    pub depth: usize,
    /// The entity.
    #[serde(flatten)]
    pub meta: Meta,
    /// Days until it expires (negative once expired).
    pub days_left: i64,
    /// "valid", "expired", "not yet valid" or "revoked" (`Meta::status`).
    pub status: &'static str,
}

/// The hierarchy, depth-first: roots (and orphans) first, children sorted by kind then name.
pub fn tree(metas: Vec<Meta>, now: OffsetDateTime) -> Vec<TreeRow> {
    // Positions are sorted and walked, not metas: a meta is some 400 bytes, and moving
    // 100,000 of them through maps and stacks was a third of `list`'s time.
    let order = tree_order(&metas);
    let mut slots: Vec<Option<Meta>> = metas.into_iter().map(Some).collect();
    let mut out = Vec::with_capacity(order.len());
    for (depth, i) in order {
        if let Some(meta) = slots[i].take() {
            out.push(TreeRow {
                depth,
                days_left: meta.days_left(now),
                status: meta.status(now),
                meta,
            });
        }
    }
    out
}

/// (depth, position in `metas`) of each entity, depth-first: an entity whose issuer is
/// among `metas` (and not itself) under it, the rest as roots; siblings by kind then name.
fn tree_order(metas: &[Meta]) -> Vec<(usize, usize)> {
    use std::collections::HashMap;
    let position: HashMap<&str, usize> = metas
        .iter()
        .enumerate()
        .map(|(i, m)| (m.name.as_str(), i))
        .collect();
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); metas.len()];
    let mut roots = Vec::new();
    for (i, m) in metas.iter().enumerate() {
        match m.issuer.as_deref().and_then(|n| position.get(n)) {
            Some(&p) if p != i => children[p].push(i),
            _ => roots.push(i),
        }
    }
    let by_kind_then_name = |a: &usize, b: &usize| {
        let (a, b) = (&metas[*a], &metas[*b]);
        (a.kind, &a.name).cmp(&(b.kind, &b.name))
    };
    roots.sort_by(by_kind_then_name);
    for c in &mut children {
        c.sort_by(by_kind_then_name);
    }
    let mut order = Vec::with_capacity(metas.len());
    let mut stack: Vec<(usize, usize)> = roots.into_iter().rev().map(|i| (0, i)).collect();
    while let Some((depth, i)) = stack.pop() {
        order.push((depth, i));
        stack.extend(children[i].iter().rev().map(|&k| (depth + 1, k)));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    /// The meta of a new device, built from what was asked, is the meta parsed from the
    /// certificate: under a CA and self-signed, with a window given to the nanosecond in
    /// another time zone and one past 2049 (GeneralizedTime).
    #[test]
    fn device_meta_is_what_the_certificate_says() {
        let created = datetime!(2026-03-01 12:00:00 UTC);
        let root_spec = IssueSpec {
            subject: subject::cn_only("root").unwrap(),
            profile: Profile::Root { pathlen: None },
            validity: Validity::days_from(created, 36_500),
        };
        let root = issue::issue(&root_spec, KeyAlg::EcP256, None).unwrap();
        let ca = CaHandle::new("root", root.cert_der, root.key_pem.as_deref().unwrap()).unwrap();
        let profile = Profile::Device {
            eku: Eku::Client,
            sans: vec![],
        };
        let windows = [
            Validity::days_from(created, 365),
            Validity::explicit(
                datetime!(2026-03-01 13:14:15.987654321 +02:30),
                datetime!(2061-07-08 09:10:11.5 -05:00),
            )
            .unwrap(),
        ];
        for validity in windows {
            for ca in [Some(&ca), None] {
                let made = device_entity(
                    "dev-01",
                    ca,
                    KeyAlg::EcP256,
                    &profile,
                    validity,
                    Target::Hub,
                    None,
                    created,
                )
                .unwrap();
                let issued = issue::Issued {
                    cert_der: crate::pki::pem_to_der(&made.cert_pem).unwrap(),
                    cert_pem: made.cert_pem.clone(),
                    key_pem: made.key_pem.clone(),
                    key_alg: made.meta.key_alg,
                    serial_hex: made.meta.serial.clone(),
                };
                let parsed = meta_for(
                    "dev-01",
                    Kind::Device,
                    &issued,
                    ca.map(|c| c.name.as_str()),
                    None,
                    Some(Target::Hub),
                    created,
                )
                .unwrap();
                assert_eq!(made.meta, parsed);
                assert_eq!(made.meta.to_toml(), parsed.to_toml());
            }
        }
    }

    /// An entity of a batch whose files fail midway (its key and certificate written, then a
    /// file that cannot be created) leaves no directory, whole or half, in the workspace or
    /// its staging area; the rest of the batch lands, when creating and when replacing.
    #[test]
    fn a_batch_entity_failing_midway_leaves_nothing_half_written() {
        let created = datetime!(2026-03-01 12:00:00 UTC);
        let tmp = tempfile::tempdir().unwrap();
        let ws = Workspace::init(&tmp.path().join("ws"))
            .unwrap()
            .with_clock(crate::clock::Clock::Fixed(created));
        let profile = Profile::Device {
            eku: Eku::Client,
            sans: vec![],
        };
        let make = |id: &str| {
            let validity = Validity::days_from(created, 30);
            device_entity(
                id,
                None,
                KeyAlg::EcP256,
                &profile,
                validity,
                Target::Hub,
                None,
                created,
            )
            .unwrap()
        };
        let broken = |id: &str| {
            let mut e = make(id);
            e.extra = vec![("history/twice.pem".to_string(), b"x".to_vec()); 2];
            e
        };
        let staging_left = || {
            std::fs::read_dir(ws.root().join(".staging"))
                .unwrap()
                .count()
        };
        let err = ws
            .create(&[make("a"), broken("b"), make("c")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("twice.pem"), "{err}");
        assert!(ws.load("a").is_ok() && ws.load("c").is_ok());
        assert!(!ws.entities_dir().join("b").exists());
        assert_eq!(staging_left(), 0);

        let again = make("a");
        let serial = again.meta.serial.clone();
        assert!(ws.replace(&[again, broken("b"), make("d")]).is_err());
        assert_eq!(ws.load("a").unwrap().meta.serial, serial, "replaced");
        assert!(ws.load("d").is_ok());
        assert!(!ws.entities_dir().join("b").exists());
        assert_eq!(staging_left(), 0);
    }
}
