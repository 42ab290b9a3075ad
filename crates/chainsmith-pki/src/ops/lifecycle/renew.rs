//! Renewing a certificate with the same subject and profile (and, for a CA, uploading it again).

use super::cloud::{CloudCa, LocalCloud};
use super::history::{extras_of, history_entry};
use super::revoke::compromised;
use super::{CannotRenewError, Error, Result};
use crate::ops::{ValidityArg, load_ca};
use crate::pki::inspect::CertView;
use crate::pki::issue::{self, San};
use crate::pki::{Eku, IssueSpec, KeyAlg, Profile, subject, thumbprints};
use crate::store::{Kind, Meta, NewEntity, Slot, Workspace};
use serde::Serialize;
use time::OffsetDateTime;

/// A certificate to renew, and how.
#[derive(Clone, Debug, Default)]
pub struct RenewRequest {
    /// The entity.
    pub name: String,
    /// Validity in days (the profile's default when None).
    pub days: Option<u32>,
    /// A fresh key (of the same algorithm unless `key` says otherwise).
    pub rekey: bool,
    /// The algorithm of the new key (with `rekey`).
    pub key: Option<KeyAlg>,
    /// For a CA: upload the new certificate to the local hub beside the ones it holds
    /// (unverified until its proof of possession, unless `verified`).
    pub upload_to_hub: bool,
    /// Upload it as Verified, skipping the proof of possession.
    pub verified: bool,
}

/// What a renewal did.
#[derive(Clone, Debug, Serialize)]
pub struct Renewed {
    /// The certificate before.
    pub old: Meta,
    /// The certificate now.
    pub new: Meta,
    /// Whether the key is new.
    pub rekeyed: bool,
    /// What the user should know.
    pub notes: Vec<String>,
    /// The steps the notes recommend, for a face to offer as its own commands or keys.
    pub next: Vec<super::NextStep>,
    /// The hub entry of the uploaded certificate (`upload_to_hub`), with its verification code.
    pub uploaded: Option<CloudCa>,
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

/// `old`'s record for the certificate `issued` in its place, made at `created`.
pub(super) fn meta_from(
    old: &Meta,
    issued: &issue::Issued,
    created: OffsetDateTime,
) -> Result<Meta> {
    let view = CertView::from_der_at(&issued.cert_der, created)?;
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
        created,
        ..old.clone()
    })
}

/// A new certificate for the same subject, same profile and (unless `rekey`) the same key.
/// The old certificate moves to `history/SERIAL/`.
/// A CA's new certificate reaches `cloud` when the request asks to upload it.
pub fn renew(ws: &Workspace, req: &RenewRequest, cloud: &dyn LocalCloud) -> Result<Renewed> {
    let entity = ws.load(&req.name)?;
    let old = entity.meta.clone();
    let ca = match &old.issuer {
        Some(i) if !old.self_signed => Some(load_ca(ws, i)?),
        None if !old.self_signed => {
            let issuer = CertView::from_der(&entity.cert_der)
                .map(|v| v.issuer)
                .unwrap_or_default();
            return Err(Error::ForeignIssuer {
                name: req.name.clone(),
                issuer,
            });
        }
        _ => None,
    };
    if old.self_signed && !old.has_key {
        return Err(CannotRenewError::SelfSignedTrustOnly {
            name: req.name.clone(),
        }
        .into());
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
        return Err(Error::Compromised {
            name: req.name.clone(),
            serial: m.serial.clone(),
            at,
            on_device: !(old.has_key || old.self_signed),
        });
    }
    let issued = if rekey {
        let alg = req.key.or(old.key_alg).unwrap_or(KeyAlg::EcP256);
        issue::issue(&spec, alg, ca.as_ref())?
    } else if old.has_key {
        let key = crate::pki::keys::load_key_pem(&entity.read_key_pem()?)?;
        issue::issue_with_key(&spec, &key, ca.as_ref())?
    } else {
        // A signed CSR: the key lives on the device; certify the same public key again.
        let ca = ca.as_ref().ok_or_else(|| CannotRenewError::NoIssuer {
            name: req.name.clone(),
        })?;
        let spki = crate::pki::inspect::cert_spki(&entity.cert_der)
            .ok_or(CannotRenewError::UnreadablePublicKey)?;
        let mut i = issue::issue_for_public_key(&spec, &spki, ca)?;
        i.key_pem = None;
        i
    };
    notes.extend(crate::ops::outlives_issuer(
        "the new certificate is",
        &validity,
        ca.as_ref(),
    ));
    let new = meta_from(&old, &issued, ws.now())?;
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
    let mut next = Vec::new();
    let uploaded = upload_renewed_ca(cloud, req, &old, rekey, &mut notes, &mut next)?;
    Ok(Renewed {
        old,
        new,
        rekeyed: rekey,
        notes,
        next,
        uploaded,
    })
}

/// After renewing a CA: upload the new certificate to the local hub when asked (it keeps the
/// earlier ones, so devices issued under them still connect), or say that the hub holds only
/// the earlier certificate.
fn upload_renewed_ca(
    cloud: &dyn LocalCloud,
    req: &RenewRequest,
    old: &Meta,
    rekey: bool,
    notes: &mut Vec<String>,
    next: &mut Vec<super::NextStep>,
) -> Result<Option<CloudCa>> {
    let name = &req.name;
    if !old.kind.is_ca() {
        if req.upload_to_hub {
            return Err(Error::NotACa {
                name: name.clone(),
                kind: old.kind.as_str(),
            });
        }
        return Ok(None);
    }
    let hub_err = Error::Cloud;
    if !req.upload_to_hub {
        let registered = cloud.holds_ca(name).map_err(hub_err)?;
        if registered && rekey {
            notes.push(format!(
                "the local hub holds only \"{name}\"'s earlier certificate: devices issued under the new one are refused until it is uploaded"
            ));
            next.push(super::NextStep::UploadCa { name: name.clone() });
        }
        return Ok(None);
    }
    let ca = cloud.upload_ca(name, req.verified).map_err(hub_err)?;
    notes.push(if ca.verified {
        format!(
            "uploaded to the local hub beside its earlier certificate(s), verified (SHA-256 {})",
            ca.thumbprint()
        )
    } else {
        next.push(super::NextStep::ProveCa {
            name: name.clone(),
            code: ca.code.clone(),
        });
        format!(
            "uploaded to the local hub beside its earlier certificate(s), unverified (SHA-256 {}); verification code {}: prove possession with a verification certificate for that code",
            ca.thumbprint(),
            ca.code
        )
    });
    Ok(Some(ca))
}
