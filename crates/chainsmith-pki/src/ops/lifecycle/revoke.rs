//! Revocation and CRLs.

use super::cloud::{DisabledDevice, HUB_DOES_NOT_CHECK_CRLS, LocalCloud, RevokedCert};
use super::history::extras_of;
use super::{Error, NextStep, Result};
use crate::ops::load_ca;
use crate::pki::issue::{self};
use crate::store::{self, Entity, HISTORY_DIR, Kind, Meta, NewEntity, Revocation, Workspace};
use serde::Serialize;
use time::OffsetDateTime;

/// The RFC 5280 reason names `revoke` takes.
pub(crate) const REASONS: [&str; 10] = [
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
        .ok_or_else(|| Error::RevocationReason {
            given: s.to_string(),
            choices: &REASONS,
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
    /// The entity.
    pub name: String,
    /// RFC 5280 reason as the user typed it (see [`parse_reason`]).
    pub reason: String,
    /// Disable every hub device whose credential is the revoked certificate (by CN for
    /// CA-authenticated devices, by thumbprint for self-signed ones) and drop its connection
    /// from a running hub.
    pub disable_on_hub: bool,
}

/// What a revocation did.
#[derive(Clone, Debug, Serialize)]
pub struct Revoked {
    /// The revoked certificate.
    pub meta: Meta,
    /// Earlier certificates of the entity revoked with it: those in its history carrying the
    /// same key, when the reason is keyCompromise.
    pub also_revoked: Vec<Meta>,
    /// Hub devices disabled (with `disable_on_hub`).
    pub disabled: Vec<DisabledDevice>,
    /// Of those, the ones a running hub was holding a connection for and dropped.
    pub dropped: Vec<String>,
    /// What to tell the user, in domain words: the hub note, and what to do next.
    pub message: String,
    /// The steps the message recommends, for a face to offer as its own commands or keys.
    pub next: Vec<NextStep>,
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
/// The revocation reaches `cloud`: it refuses the certificate from then on, and with
/// `disable_on_hub` disables the devices that use it.
pub fn revoke(ws: &Workspace, req: &RevokeRequest, cloud: &dyn LocalCloud) -> Result<Revoked> {
    let name = req.name.as_str();
    let reason = parse_reason(&req.reason)?;
    let current = ws.load(name)?;
    if let Some(r) = &current.meta.revoked {
        return Err(Error::AlreadyRevoked {
            name: name.to_string(),
            at: r.at,
            reason: r.reason.clone(),
        });
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
            let same_key = crate::pki::pem_to_der(&cert)
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
    let gone: Vec<&Meta> = std::iter::once(&meta).chain(&also_revoked).collect();
    cloud
        .note_revoked(
            gone.iter()
                .map(|m| RevokedCert {
                    sha256: m.sha256.clone(),
                    name: name.to_string(),
                    serial: m.serial.clone(),
                    reason: reason.to_string(),
                })
                .collect(),
        )
        .map_err(Error::Cloud)?;
    let (disabled, dropped) = if req.disable_on_hub && meta.kind == Kind::Device {
        disable_on_hub(cloud, &gone)?
    } else {
        (vec![], vec![])
    };

    let mut next = Vec::new();
    let crl_hint = match (&meta.issuer, meta.self_signed) {
        (Some(i), false) => {
            next.push(NextStep::PublishCrl { ca: i.clone() });
            format!("publish a new CRL of \"{i}\"")
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
            " The key is compromised: also revoked {} earlier certificate(s) with the same key (serial {}); a renewal must make a new key.",
            also_revoked.len(),
            also_revoked
                .iter()
                .map(|m| m.serial.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        next.push(NextStep::Rekey {
            name: name.to_string(),
        });
    }
    hub_note(
        name,
        &meta,
        req,
        &disabled,
        &dropped,
        &mut message,
        &mut next,
    );
    Ok(Revoked {
        meta,
        also_revoked,
        disabled,
        dropped,
        message,
        next,
    })
}

/// What a revocation means for the hub: what was disabled, or how to cut the device off.
fn hub_note(
    name: &str,
    meta: &Meta,
    req: &RevokeRequest,
    disabled: &[DisabledDevice],
    dropped: &[String],
    message: &mut String,
    next: &mut Vec<NextStep>,
) {
    if req.disable_on_hub && meta.kind != Kind::Device {
        next.push(NextStep::RemoveHubCa {
            name: name.to_string(),
        });
        message.push_str(&format!(
            " \"{name}\" is a {}, not a device credential: no hub device was disabled (remove the CA from the hub instead).",
            meta.kind.as_str()
        ));
        message.push_str(&format!(" {HUB_DOES_NOT_CHECK_CRLS}."));
    } else if req.disable_on_hub && disabled.is_empty() {
        message.push_str(&format!(
            " No local-hub device uses this certificate: nothing to disable. {HUB_DOES_NOT_CHECK_CRLS}."
        ));
    } else if req.disable_on_hub {
        for d in disabled {
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
        next.push(NextStep::DisableOnHub {
            name: name.to_string(),
        });
        message.push_str(&format!(
            " {HUB_DOES_NOT_CHECK_CRLS}; on the local hub, disable the device there too."
        ));
    }
}

/// Disable the hub devices whose credential is one of `certs`, and drop their connections from
/// a running hub (IoT Hub closes a disabled device's connection as well).
fn disable_on_hub(
    cloud: &dyn LocalCloud,
    certs: &[&Meta],
) -> Result<(Vec<DisabledDevice>, Vec<String>)> {
    let mut disabled: Vec<DisabledDevice> = Vec::new();
    for m in certs {
        for d in cloud
            .disable_credential(&m.cn, &m.sha1, &m.sha256)
            .map_err(Error::Cloud)?
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
        if cloud.end_session(&d.id, why) {
            dropped.push(d.id.clone());
        }
    }
    Ok((disabled, dropped))
}

/// The keyCompromise revocation that covers `entity`'s current key, if any: of its current
/// certificate or of one in its history with the same public key.
pub(super) fn compromised(entity: &Entity) -> Option<Meta> {
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
        let k = crate::pki::pem_to_der(&cert).and_then(|d| crate::pki::inspect::cert_spki(&d))?;
        (is_kc(&m) && k == spki).then_some(m)
    })
}

/// One certificate a CRL lists.
#[derive(Clone, Debug, Serialize)]
pub struct RevokedEntry {
    /// Its entity.
    pub name: String,
    /// Its serial, upper-case hex.
    pub serial: String,
    /// The RFC 5280 reason.
    pub reason: String,
    /// When it was revoked.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A CRL made from the workspace.
#[derive(Clone, Debug, Serialize)]
pub struct Crl {
    /// The CA that signs it.
    pub issuer: String,
    /// The CRL, PEM.
    #[serde(skip)]
    pub pem: String,
    /// The CRL, DER.
    #[serde(skip)]
    pub der: Vec<u8>,
    /// Its CRL number.
    pub number: String,
    /// Its thisUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub this_update: OffsetDateTime,
    /// Its nextUpdate.
    #[serde(with = "time::serde::rfc3339")]
    pub next_update: OffsetDateTime,
    /// What it lists.
    pub revoked: Vec<RevokedEntry>,
    /// That IoT Hub does not check CRLs.
    pub note: &'static str,
}

/// Revoked certificates `ca` issued: current entities and replaced ones kept in history.
pub(crate) fn revoked_by(ws: &Workspace, ca: &str) -> Result<Vec<RevokedEntry>> {
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
        return Err(Error::CrlDays);
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
            let serial = hex::decode(&r.serial).map_err(|_| Error::Metadata {
                serial: r.serial.clone(),
                name: r.name.clone(),
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
