//! IoT Hub's X.509 authentication rules, applied at CONNECT, with the exact reason for a refusal.
//!
//! Azure answers every one of these with CONNACK 5 "not authorized"; the local hub sends the
//! same CONNACK and puts the reason in its log and events.

use ::time::OffsetDateTime;
use serde::Serialize;
use x509_parser::prelude::*;

use super::registry::{Auth, HubDevice, Registry, pem_to_der};
use crate::azure;
use crate::pki;

/// Why a CONNECT was refused. `Display` is the sentence the hub logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    #[error(
        "no client certificate was sent in the TLS handshake; IoT Hub X.509 devices must present their certificate"
    )]
    NoCertificate,
    #[error("client certificate is not X.509 DER: {detail}")]
    BadCertificate { detail: String },
    #[error("{reason}")]
    Username { reason: String },
    #[error(
        "username names device \"{username_device}\" but the client id is \"{client_id}\"; both must be the device id"
    )]
    UsernameMismatch {
        client_id: String,
        username_device: String,
    },
    #[error(
        "device {device}: not registered with the hub; add it with `chainsmith hub device add {device} --auth ca|self-signed`"
    )]
    UnknownDevice { device: String },
    #[error("device {device}: device disabled")]
    Disabled { device: String },
    #[error("device {device}: leaf CN \"{cn}\" != device id \"{device}\"")]
    CnMismatch { device: String, cn: String },
    #[error("device {device}: certificate expired {ago} (\"{cn}\")")]
    Expired {
        device: String,
        cn: String,
        ago: String,
    },
    #[error("device {device}: certificate not valid yet, starts {when} (\"{cn}\")")]
    NotYetValid {
        device: String,
        cn: String,
        when: String,
    },
    #[error("device {device}: chain ends at \"{cn}\", which is registered but not verified")]
    Unverified { device: String, cn: String },
    #[error("device {device}: intermediate \"{cn}\" not sent and not registered")]
    MissingIntermediate { device: String, cn: String },
    #[error("device {device}: chain ends at root \"{cn}\", which is not registered with the hub")]
    UnknownRoot { device: String, cn: String },
    /// The issuer's name is a registered CA's, but no certificate the hub holds for it signed
    /// the device's chain: a CA renewed with a new key whose earlier certificate was removed.
    #[error(
        "device {device}: issued by an earlier certificate of CA \"{ca}\" that the hub no longer holds (same name, another key); upload that certificate too (`chainsmith hub ca add` keeps several per CA), or renew the device under the current one"
    )]
    EarlierCaCertificate { device: String, ca: String },
    #[error(
        "device {device}: thumbprint matches neither slot (the certificate's SHA-1 is {sha1}); put it in a slot with `chainsmith hub device update {device} --secondary {sha1}` (or --primary, or --from NAME for a workspace device)"
    )]
    Thumbprint { device: String, sha1: String },
    #[error("hub registry unreadable: {detail}")]
    Registry { detail: String },
}

impl Refusal {
    /// A short machine-friendly name (for JSON logs and tests).
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::NoCertificate => "no-certificate",
            Refusal::BadCertificate { .. } => "bad-certificate",
            Refusal::Username { .. } => "username",
            Refusal::UsernameMismatch { .. } => "username-mismatch",
            Refusal::UnknownDevice { .. } => "unknown-device",
            Refusal::Disabled { .. } => "disabled",
            Refusal::CnMismatch { .. } => "cn-mismatch",
            Refusal::Expired { .. } => "expired",
            Refusal::NotYetValid { .. } => "not-yet-valid",
            Refusal::Unverified { .. } => "unverified",
            Refusal::MissingIntermediate { .. } => "missing-intermediate",
            Refusal::UnknownRoot { .. } => "unknown-root",
            Refusal::EarlierCaCertificate { .. } => "earlier-ca-certificate",
            Refusal::Thumbprint { .. } => "thumbprint",
            Refusal::Registry { .. } => "registry",
        }
    }
}

struct Parsed<'a> {
    der: &'a [u8],
    cert: X509Certificate<'a>,
}

fn cn_of(name: &X509Name<'_>) -> String {
    name.iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string)
        .unwrap_or_else(|| name.to_string())
}

/// "3 days ago", "5 hours ago", "12 minutes ago".
pub fn ago(d: ::time::Duration) -> String {
    let plural = |n: i64, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    if d.whole_days() >= 1 {
        plural(d.whole_days(), "day")
    } else if d.whole_hours() >= 1 {
        plural(d.whole_hours(), "hour")
    } else if d.whole_minutes() >= 1 {
        plural(d.whole_minutes(), "minute")
    } else {
        plural(d.whole_seconds().max(0), "second")
    }
}

/// Apply IoT Hub's rules. `chain` is what the client sent in TLS, leaf first.
/// Returns the device record on success.
pub fn authenticate(
    reg: &Registry,
    client_id: &str,
    username: Option<&str>,
    chain: &[Vec<u8>],
    now: OffsetDateTime,
) -> Result<HubDevice, Refusal> {
    // Identity first: what the client claims to be.
    let user = username.unwrap_or("");
    let parsed = azure::parse_username(user).map_err(|e| Refusal::Username {
        reason: format!("device {client_id}: {e}"),
    })?;
    if parsed.device_id != client_id {
        return Err(Refusal::UsernameMismatch {
            client_id: client_id.to_string(),
            username_device: parsed.device_id,
        });
    }
    let device = client_id.to_string();
    let dev = reg
        .devices
        .iter()
        .find(|d| d.id == client_id)
        .ok_or_else(|| Refusal::UnknownDevice {
            device: device.clone(),
        })?;
    if !dev.enabled {
        return Err(Refusal::Disabled { device });
    }
    if chain.is_empty() {
        return Err(Refusal::NoCertificate);
    }
    let mut certs = Vec::with_capacity(chain.len());
    for der in chain {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| Refusal::BadCertificate {
            detail: e.to_string(),
        })?;
        certs.push(Parsed { der, cert });
    }
    let now_asn1 = ASN1Time::from(now);
    let check_time = |c: &X509Certificate<'_>| -> Result<(), Refusal> {
        let cn = cn_of(c.subject());
        let v = c.validity();
        if v.not_after < now_asn1 {
            return Err(Refusal::Expired {
                device: device.clone(),
                cn,
                ago: format!("{} ago", ago(now - v.not_after.to_datetime())),
            });
        }
        if v.not_before > now_asn1 {
            return Err(Refusal::NotYetValid {
                device: device.clone(),
                cn,
                when: pki::issue::rfc3339(v.not_before.to_datetime()),
            });
        }
        Ok(())
    };
    let leaf = &certs[0];
    match dev.auth {
        Auth::SelfSigned => {
            check_time(&leaf.cert)?;
            let (sha1, sha256) = pki::thumbprints(leaf.der);
            let matches = |slot: &Option<String>| {
                slot.as_deref().is_some_and(|t| {
                    t.eq_ignore_ascii_case(&sha1) || t.eq_ignore_ascii_case(&sha256)
                })
            };
            if matches(&dev.primary) || matches(&dev.secondary) {
                Ok(dev.clone())
            } else {
                Err(Refusal::Thumbprint {
                    device,
                    sha1: sha1.to_string(),
                })
            }
        }
        Auth::Ca => {
            let cn = cn_of(leaf.cert.subject());
            if cn != client_id {
                return Err(Refusal::CnMismatch { device, cn });
            }
            let cas: Vec<(Vec<u8>, &super::registry::HubCa)> = reg
                .cas
                .iter()
                .filter_map(|c| pem_to_der(&c.cert_pem).map(|d| (d, c)))
                .collect();
            // Walk up from the leaf: each step is either a registered CA (stop) or a sent cert.
            let mut current = 0usize;
            for _ in 0..=certs.len() {
                let cur = &certs[current];
                check_time(&cur.cert)?;
                // The sent certificate itself may be a registered CA.
                if current > 0
                    && let Some((_, ca)) = cas.iter().find(|(d, _)| d.as_slice() == cur.der)
                {
                    return finish(ca, dev, &device, now_asn1, &cas);
                }
                if let Some((_, ca)) = cas
                    .iter()
                    .find(|(d, _)| pki::inspect::signed_by(cur.der, d))
                {
                    return finish(ca, dev, &device, now_asn1, &cas);
                }
                let next = certs.iter().enumerate().find(|(i, c)| {
                    *i != current
                        && c.cert.subject() == cur.cert.issuer()
                        && pki::inspect::signed_by(cur.der, c.der)
                });
                match next {
                    Some((i, c)) if i != current && c.cert.subject() != cur.cert.subject() => {
                        current = i
                    }
                    _ => {
                        // The issuer, or a CA certificate the device sent, has the name of a
                        // registered CA but is not one the hub holds.
                        let named = std::iter::once(cur.cert.issuer().as_raw())
                            .chain(certs[1..].iter().map(|c| c.cert.subject().as_raw()))
                            .find_map(|n| reg.ca_named(n));
                        if let Some(ca) = named {
                            return Err(Refusal::EarlierCaCertificate {
                                device,
                                ca: ca.name.clone(),
                            });
                        }
                        let issuer_cn = cn_of(cur.cert.issuer());
                        return Err(if cur.cert.subject() == cur.cert.issuer() {
                            Refusal::UnknownRoot {
                                device,
                                cn: issuer_cn,
                            }
                        } else {
                            Refusal::MissingIntermediate {
                                device,
                                cn: issuer_cn,
                            }
                        });
                    }
                }
            }
            Err(Refusal::BadCertificate {
                detail: "the sent chain loops".into(),
            })
        }
    }
}

fn finish(
    ca: &super::registry::HubCa,
    dev: &HubDevice,
    device: &str,
    now: ASN1Time,
    _cas: &[(Vec<u8>, &super::registry::HubCa)],
) -> Result<HubDevice, Refusal> {
    if !ca.verified {
        return Err(Refusal::Unverified {
            device: device.to_string(),
            cn: ca.cn.clone(),
        });
    }
    if let Some(der) = pem_to_der(&ca.cert_pem)
        && let Ok((_, c)) = X509Certificate::from_der(&der)
        && c.validity().not_after < now
    {
        return Err(Refusal::Expired {
            device: device.to_string(),
            cn: ca.cn.clone(),
            ago: format!(
                "{} ago",
                ago(now.to_datetime() - c.validity().not_after.to_datetime())
            ),
        });
    }
    Ok(dev.clone())
}
