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
use crate::pki::verify::{
    ChainError, ChainErrorKind, TrustAnchors, VerifiedChain, verify_device_chain,
};

/// Most certificates a device's TLS chain may hold: the leaf and up to 7 intermediates, deeper
/// than any IoT PKI we have seen (chainsmith's own chains are 2 to 4). IoT Hub documents no
/// number. Checked before any verification: a chain of 150 self-made "CAs" cost the hub 28 ms
/// of CPU per attempt, 20 times a real device's (hostile pass).
pub const MAX_CLIENT_CHAIN: usize = 8;

/// Why a CONNECT was refused. `Display` is the sentence the hub logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Refusal {
    /// The TLS handshake carried no client certificate.
    #[error(
        "no client certificate was sent in the TLS handshake; IoT Hub X.509 devices must present their certificate"
    )]
    NoCertificate,
    /// The client certificate does not parse.
    #[error("client certificate is not X.509 DER: {detail}")]
    BadCertificate {
        /// What is wrong.
        detail: String,
    },
    /// The MQTT username is not IoT Hub's form.
    #[error("{reason}")]
    Username {
        /// Why.
        reason: String,
    },
    /// The username and the client id name different devices.
    #[error(
        "username names device \"{username_device}\" but the client id is \"{client_id}\"; both must be the device id"
    )]
    UsernameMismatch {
        /// The MQTT client id.
        client_id: String,
        /// The device the username names.
        username_device: String,
    },
    /// The device is not in the registry.
    #[error("device {device}: not registered with the hub; register it, by CA or as self-signed")]
    UnknownDevice {
        /// The device id.
        device: String,
    },
    /// The device is disabled.
    #[error("device {device}: device disabled")]
    Disabled {
        /// The device id.
        device: String,
    },
    /// The leaf's CN is not the device id.
    #[error("device {device}: leaf CN \"{cn}\" != device id \"{device}\"")]
    CnMismatch {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// The certificate has expired.
    #[error("device {device}: certificate expired {ago} (\"{cn}\")")]
    Expired {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
        /// How long ago it expired.
        ago: String,
    },
    /// The certificate is not valid yet.
    #[error("device {device}: certificate not valid yet, starts {when} (\"{cn}\")")]
    NotYetValid {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
        /// When it starts.
        when: String,
    },
    /// The chain ends at a registered CA that is not verified.
    #[error("device {device}: chain ends at \"{cn}\", which is registered but not verified")]
    Unverified {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// The device's issuer was neither sent nor registered: an intermediate the device should
    /// send, or a root the hub does not hold (the hub alone cannot tell which; see
    /// [`Refusal::explained_by`]).
    #[error(
        "device {device}: issuer \"{cn}\" was neither sent in the TLS chain nor registered with the hub"
    )]
    MissingIntermediate {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// The chain ends at a root the hub does not hold.
    #[error("device {device}: chain ends at root \"{cn}\", which is not registered with the hub")]
    UnknownRoot {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// The issuer's name is a registered CA's, but no certificate the hub holds for it signed
    /// the device's chain: a CA renewed with a new key whose earlier certificate was removed.
    #[error(
        "device {device}: issued by an earlier certificate of CA \"{ca}\" that the hub no longer holds (same name, another key); register that certificate too (the hub keeps several per CA), or renew the device under the current one"
    )]
    EarlierCaCertificate {
        /// The device id.
        device: String,
        /// The CA's name.
        ca: String,
    },
    /// An issuer is not a CA.
    #[error("device {device}: issuer \"{cn}\" is not a CA (its basicConstraints lack CA:TRUE)")]
    NotCa {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// An issuer may not sign certificates.
    #[error(
        "device {device}: issuer \"{cn}\" may not sign certificates (its keyUsage lacks keyCertSign)"
    )]
    NoCertSign {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// The chain is longer than a CA's pathlen allows.
    #[error("device {device}: the chain has more CAs below \"{cn}\" than its pathlen allows")]
    PathLen {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// A certificate is not for client authentication.
    #[error(
        "device {device}: certificate \"{cn}\" is not for client authentication (its extendedKeyUsage lacks clientAuth)"
    )]
    NotClientAuth {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
    },
    /// A certificate uses cryptography IoT Hub refuses.
    #[error(
        "device {device}: certificate \"{cn}\" uses weak cryptography ({reason}); IoT Hub needs RSA 2048+ or ECC keys and SHA-256+ signatures"
    )]
    Weak {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
        /// Why.
        reason: String,
    },
    /// The device certificate's subject holds more than one CN: an ambiguous identity (which CN
    /// names the device depends on who reads it), refused as the CSR path refuses it.
    #[error(
        "device {device}: the certificate's subject holds {count} CNs ({cns}); a device certificate names one device"
    )]
    SeveralCns {
        /// The device id.
        device: String,
        /// How many.
        count: usize,
        /// The CNs, quoted and escaped.
        cns: String,
    },
    /// The certificate presented as the device's is a CA's (CA:TRUE or keyCertSign): a CA's
    /// key never authenticates as a device, whatever its thumbprint (DPS refuses it too).
    #[error(
        "device {device}: the certificate presented is a CA certificate (CA:TRUE or keyCertSign), not a device certificate"
    )]
    CaCertificate {
        /// The device id.
        device: String,
    },
    /// The client sent more certificates than any real chain has.
    #[error(
        "device {device}: the TLS handshake carried {count} certificates; the hub checks at most {MAX_CLIENT_CHAIN} (the device certificate and its intermediates)"
    )]
    ChainTooLong {
        /// The device id.
        device: String,
        /// How many were sent.
        count: usize,
    },
    /// The chain was refused for another reason.
    #[error("device {device}: chain refused at \"{cn}\": {reason}")]
    Chain {
        /// The device id.
        device: String,
        /// The CN of the certificate concerned.
        cn: String,
        /// Why.
        reason: String,
    },
    /// A self-signed device's thumbprint matches neither slot.
    #[error(
        "device {device}: thumbprint matches neither slot (the certificate's SHA-1 is {sha1}); put that thumbprint in one of the device's slots (or take both from the workspace device)"
    )]
    Thumbprint {
        /// The device id.
        device: String,
        /// The certificate's SHA-1 thumbprint.
        sha1: String,
    },
    /// The registry could not be read.
    #[error("hub registry unreadable: {detail}")]
    Registry {
        /// What is wrong.
        detail: String,
    },
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
            Refusal::NotCa { .. } => "issuer-not-ca",
            Refusal::NoCertSign { .. } => "issuer-cannot-sign",
            Refusal::PathLen { .. } => "pathlen-exceeded",
            Refusal::NotClientAuth { .. } => "not-client-auth",
            Refusal::Weak { .. } => "weak-crypto",
            Refusal::Chain { .. } => "chain",
            Refusal::SeveralCns { .. } => "several-cns",
            Refusal::CaCertificate { .. } => "ca-as-device",
            Refusal::ChainTooLong { .. } => "chain-too-long",
            Refusal::Thumbprint { .. } => "thumbprint",
            Refusal::Registry { .. } => "registry",
        }
    }

    /// The fix a face can name for the refusals whose fix is a registry change (the
    /// connection test's diagnosis spells out the others).
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        use crate::error::Remedy;
        match self {
            Refusal::UnknownDevice { .. } => Some(Remedy::RegisterDevice),
            Refusal::Thumbprint { .. } => Some(Remedy::Thumbprints),
            Refusal::UnknownRoot { .. } | Refusal::EarlierCaCertificate { .. } => {
                Some(Remedy::RegisterCa)
            }
            Refusal::Unverified { .. } => Some(Remedy::VerificationCertificate),
            _ => None,
        }
    }
}

impl crate::error::Classified for Refusal {
    fn kind(&self) -> &'static str {
        Refusal::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        Refusal::remedy(self)
    }
}

/// A CA certificate presented as a device's: basicConstraints CA:TRUE, or a keyUsage that
/// allows keyCertSign (DOMAIN.md: DPS failures in the wild came from leaves that were CAs).
pub(crate) fn is_ca_certificate(c: &X509Certificate<'_>) -> bool {
    let ca = c
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|b| b.value.ca);
    let cert_sign = c
        .key_usage()
        .ok()
        .flatten()
        .is_some_and(|k| k.value.key_cert_sign());
    ca || cert_sign
}

/// The one CN of a device certificate's subject, or the refusal when it holds several.
pub(crate) fn single_cn(device: &str, name: &X509Name<'_>) -> Result<(), Refusal> {
    let cns: Vec<String> = name
        .iter_common_name()
        .map(|a| a.as_str().unwrap_or("(not text)").to_string())
        .collect();
    if cns.len() > 1 {
        return Err(Refusal::SeveralCns {
            device: device.to_string(),
            count: cns.len(),
            cns: cns
                .iter()
                .map(|c| format!("\"{}\"", crate::text::escape_controls(c)))
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(())
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
/// `trust` is [`HubTrust::new`] of the same registry (cached by the caller). Returns the
/// device record on success.
pub fn authenticate(
    reg: &Registry,
    trust: &HubTrust,
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
    if chain.len() > MAX_CLIENT_CHAIN {
        return Err(Refusal::ChainTooLong {
            device,
            count: chain.len(),
        });
    }
    let (_, leaf) = X509Certificate::from_der(&chain[0]).map_err(|e| Refusal::BadCertificate {
        detail: e.to_string(),
    })?;
    single_cn(&device, leaf.subject())?;
    if is_ca_certificate(&leaf) {
        return Err(Refusal::CaCertificate { device });
    }
    // Validity is judged here, after the TLS handshake, not in it: IoT Hub completes the
    // handshake with an expired device certificate and refuses the device when it connects.
    // Microsoft's "Authenticate identities with X.509 certificates" (IoT Hub authorizes at the
    // MQTT CONNECT or the AMQP link attach), and Azure/azure-iot-sdk-node#776 (maintainer,
    // 2020: with an expired certificate AMQP and HTTP "claim to be connected", and MQTT's
    // connection ends at CONNECT; the SDK saw only the close there, where the local hub sends
    // CONNACK 5 first so the device learns it was refused).
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
    match dev.auth {
        Auth::SelfSigned => {
            check_time(&leaf)?;
            let (sha1, sha256) = pki::thumbprints(&chain[0]);
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
            let cn = cn_of(leaf.subject());
            if cn != client_id {
                return Err(Refusal::CnMismatch { device, cn });
            }
            trust
                .verify(&device, chain, now)
                .map(|_| dev.clone())
                .map_err(|r| match r {
                    Refusal::MissingIntermediate { .. } | Refusal::UnknownRoot { .. } => {
                        earlier_ca_certificate(reg, &device, chain).unwrap_or(r)
                    }
                    r => r,
                })
        }
    }
}

/// The registry's CAs as the chain check sees them: the verified ones are OpenSSL trust
/// anchors (root or intermediate, partial chains allowed, as on IoT Hub); the unverified ones
/// only explain a refusal. So a verified root admits devices under an intermediate that was
/// uploaded but never verified, as IoT Hub does: "an X.509 CA certificate can authenticate any
/// device that has the CA in its certificate chain of trust" (Microsoft Learn, "Authenticate
/// identities with third-party X.509 certificates", iot-hub/authenticate-authorize-x509; test
/// `hub_auth::verified_root_admits_devices_under_an_unverified_intermediate`).
/// Built once per registry version.
#[derive(Debug)]
pub struct HubTrust {
    anchors: TrustAnchors,
    /// Every registered CA: (DER, CN, verified).
    registered: Vec<(Vec<u8>, String, bool)>,
}

impl Refusal {
    /// A hub that was not sent a device's issuer cannot tell a root it does not hold from an
    /// intermediate the device should have sent; the workspace can, when the device is one of
    /// its entities: walking the device's issuers there, an issuer named `cn` that is a root
    /// makes the refusal [`Refusal::UnknownRoot`] (issue 21: "a chain that ends at an
    /// unregistered root is not a missing intermediate"). A few file reads, only on refusal.
    pub(crate) fn explained_by(self, ws: &crate::store::Workspace) -> Refusal {
        let Refusal::MissingIntermediate { device, cn } = &self else {
            return self;
        };
        let chain = crate::store::chain_of(ws, device).unwrap_or_default();
        if let Some(issuer) = chain.iter().skip(1).find(|e| e.meta.cn == *cn)
            && issuer.meta.kind == crate::store::Kind::Root
        {
            return Refusal::UnknownRoot {
                device: device.clone(),
                cn: cn.clone(),
            };
        }
        self
    }
}

impl HubTrust {
    /// The trust anchors and registered CAs of a registry, ready for the chain check.
    pub fn new(reg: &Registry) -> HubTrust {
        let registered: Vec<(Vec<u8>, String, bool)> = reg
            .cas
            .iter()
            .filter_map(|c| pem_to_der(&c.cert_pem).map(|d| (d, c.cn.clone(), c.verified)))
            .collect();
        // A CA whose certificate OpenSSL cannot read anchors nothing (as before: skipped).
        let verified = registered
            .iter()
            .filter(|(d, _, v)| *v && openssl::x509::X509::from_der(d).is_ok())
            .map(|(d, _, _)| d);
        let anchors = TrustAnchors::new(verified).unwrap_or_else(|_| {
            TrustAnchors::new(std::iter::empty::<Vec<u8>>()).expect("no anchors")
        });
        HubTrust {
            anchors,
            registered,
        }
    }

    /// The chain check of a CA-signed device: OpenSSL's verdict with the hub's anchors at
    /// `now`, a refusal in IoT Hub's words. The connection test's pre-flight calls it too.
    pub fn verify(
        &self,
        device: &str,
        chain: &[Vec<u8>],
        now: OffsetDateTime,
    ) -> Result<VerifiedChain, Refusal> {
        if chain.len() > MAX_CLIENT_CHAIN {
            return Err(Refusal::ChainTooLong {
                device: device.to_string(),
                count: chain.len(),
            });
        }
        verify_device_chain(&self.anchors, chain, now).map_err(|e| self.refusal(device, &e, now))
    }

    /// The registered but unverified CA that is `cert` or issued it.
    fn unverified_for(&self, cert: &[u8]) -> Option<&str> {
        self.registered
            .iter()
            .filter(|(_, _, v)| !v)
            .find(|(d, _, _)| d.as_slice() == cert || pki::inspect::signed_by(cert, d))
            .map(|(_, cn, _)| cn.as_str())
    }

    /// IoT Hub's sentence for OpenSSL's verdict.
    fn refusal(&self, device: &str, e: &ChainError, now: OffsetDateTime) -> Refusal {
        let device = device.to_string();
        let cert = e.cert.as_deref().unwrap_or_default();
        let parsed = X509Certificate::from_der(cert).ok().map(|(_, c)| c);
        let cn = e.subject_cn.clone();
        match e.kind {
            ChainErrorKind::Expired => Refusal::Expired {
                device,
                cn,
                ago: parsed
                    .map(|c| format!("{} ago", ago(now - c.validity().not_after.to_datetime())))
                    .unwrap_or_default(),
            },
            ChainErrorKind::NotYetValid => Refusal::NotYetValid {
                device,
                cn,
                when: parsed
                    .map(|c| pki::issue::rfc3339(c.validity().not_before.to_datetime()))
                    .unwrap_or_default(),
            },
            ChainErrorKind::IssuerNotFound | ChainErrorKind::UntrustedSelfSigned => {
                if let Some(ca) = self.unverified_for(cert) {
                    Refusal::Unverified {
                        device,
                        cn: ca.to_string(),
                    }
                } else if e.cert_is_self_signed() {
                    Refusal::UnknownRoot { device, cn }
                } else {
                    Refusal::MissingIntermediate {
                        device,
                        cn: e.issuer_cn.clone(),
                    }
                }
            }
            ChainErrorKind::NotCa => Refusal::NotCa { device, cn },
            ChainErrorKind::NoCertSign => Refusal::NoCertSign { device, cn },
            ChainErrorKind::PathLen => Refusal::PathLen { device, cn },
            ChainErrorKind::Purpose => Refusal::NotClientAuth { device, cn },
            ChainErrorKind::WeakKey | ChainErrorKind::WeakSignature => Refusal::Weak {
                device,
                cn,
                reason: e.text.clone(),
            },
            ChainErrorKind::Malformed => Refusal::BadCertificate {
                detail: e.text.clone(),
            },
            ChainErrorKind::BadSignature | ChainErrorKind::Other => Refusal::Chain {
                device,
                cn,
                reason: e.text.clone(),
            },
        }
    }
}

/// A chain that stops at a name the hub knows, signed by none of the certificates it holds for
/// that name: the CA was renewed with a new key and the certificate that issued this device is
/// gone from the hub. Said as such, instead of blaming the root.
fn earlier_ca_certificate(reg: &Registry, device: &str, chain: &[Vec<u8>]) -> Option<Refusal> {
    let certs: Vec<X509Certificate> = chain
        .iter()
        .filter_map(|d| X509Certificate::from_der(d).ok().map(|(_, c)| c))
        .collect();
    let names = certs
        .iter()
        .map(|c| c.issuer().as_raw())
        .chain(certs.iter().skip(1).map(|c| c.subject().as_raw()));
    let ca = names.into_iter().find_map(|n| reg.ca_named(n))?;
    Some(Refusal::EarlierCaCertificate {
        device: device.to_string(),
        ca: ca.name.clone(),
    })
}
