//! Read certificates, chains, CSRs, keys and PKCS#12 files into views a person (or a
//! script, through serde) can read. Private keys are described, never printed.

use super::keys::KeyAlg;
use super::{Error, PasswordError, Result, thumbprints};
use serde::Serialize;
use x509_parser::prelude::*;

/// Everything a person needs to know about one certificate.
#[derive(Clone, Debug, Serialize)]
pub struct CertView {
    /// Subject, one line.
    pub subject: String,
    /// Subject CN.
    pub cn: Option<String>,
    /// Issuer, one line.
    pub issuer: String,
    /// Serial number, hex.
    pub serial: String,
    /// Start of validity, RFC 3339.
    pub not_before: String,
    /// End of validity, RFC 3339.
    pub not_after: String,
    /// Whole days until notAfter; negative once expired.
    pub days_left: i64,
    /// Within its window or not.
    pub status: ValidityStatus,
    /// Its public key.
    pub key: KeyView,
    /// Its signature algorithm.
    pub signature_algorithm: String,
    /// basicConstraints CA:TRUE.
    pub is_ca: bool,
    /// Path length constraint.
    pub pathlen: Option<u32>,
    /// Its own issuer, by name and signature.
    pub self_signed: bool,
    /// Every extension.
    pub extensions: Vec<ExtensionView>,
    /// SHA-1 thumbprint, upper-case hex.
    pub sha1: String,
    /// SHA-256 thumbprint, upper-case hex.
    pub sha256: String,
    /// Start of validity.
    #[serde(skip)]
    pub not_before_t: ::time::OffsetDateTime,
    /// End of validity.
    #[serde(skip)]
    pub not_after_t: ::time::OffsetDateTime,
    /// Whether the EKU allows clientAuth (None without an EKU).
    #[serde(skip)]
    pub eku_client_auth: Option<bool>,
    /// Whether basicConstraints is present.
    #[serde(skip)]
    pub basic_constraints_present: bool,
    /// Whether keyUsage is present and allows keyCertSign.
    #[serde(skip)]
    pub key_cert_sign: bool,
}

/// Where now lies against a certificate's validity window.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum ValidityStatus {
    /// Within its window.
    Valid,
    /// After its window.
    Expired,
    /// Before its window.
    NotYetValid,
}

impl ValidityStatus {
    /// The words `show` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidityStatus::Valid => "valid",
            ValidityStatus::Expired => "expired",
            ValidityStatus::NotYetValid => "not yet valid",
        }
    }
}

/// A public key, described.
#[derive(Clone, Debug, Serialize)]
pub struct KeyView {
    /// "ECDSA P-256", "RSA 2048", ...
    pub algorithm: String,
    /// Key size in bits.
    pub bits: u32,
    /// Our name for it when it is one chainsmith makes.
    pub key_alg: Option<KeyAlg>,
}

/// One extension, described.
#[derive(Clone, Debug, Serialize)]
pub struct ExtensionView {
    /// Its name.
    pub name: String,
    /// Its OID.
    pub oid: String,
    /// Whether it is critical.
    pub critical: bool,
    /// Its value, as text.
    pub value: String,
}

/// Describe a public key from its SubjectPublicKeyInfo DER.
pub(crate) fn describe_spki(spki: &[u8]) -> KeyView {
    use openssl::pkey::{Id, PKey};
    // The keys chainsmith knows need no OpenSSL decoder, whose per-call cost dominated
    // inspecting a large bundle. Bits as OpenSSL counts them (Ed25519: 253).
    if let Some(a) = KeyAlg::from_spki(spki) {
        let bits = match a {
            KeyAlg::EcP256 => 256,
            KeyAlg::EcP384 => 384,
            KeyAlg::Rsa2048 => 2048,
            KeyAlg::Rsa3072 => 3072,
            KeyAlg::Rsa4096 => 4096,
            KeyAlg::Ed25519 => 253,
        };
        return KeyView {
            algorithm: a.label().to_string(),
            bits,
            key_alg: Some(a),
        };
    }
    let Ok(pkey) = PKey::public_key_from_der(spki) else {
        return KeyView {
            algorithm: "unknown".into(),
            bits: 0,
            key_alg: None,
        };
    };
    let key_alg = KeyAlg::from_spki(spki);
    let bits = pkey.bits();
    let algorithm = match (key_alg, pkey.id()) {
        (Some(a), _) => a.label().to_string(),
        (None, Id::RSA) => format!("RSA {bits}"),
        (None, Id::EC) => format!("ECDSA ({bits}-bit curve)"),
        (None, Id::ED448) => "Ed448".to_string(),
        (None, id) => format!("key type {}", id.as_raw()),
    };
    KeyView {
        algorithm,
        bits,
        key_alg,
    }
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_string)
        .unwrap_or_else(|_| oid.to_id_string())
}

/// Signature algorithms built on SHA-1 (OID, the name OpenSSL prints).
const SHA1_SIGNATURES: [(&str, &str); 4] = [
    ("1.2.840.113549.1.1.5", "sha1WithRSAEncryption"),
    ("1.2.840.10045.4.1", "ecdsa-with-SHA1"),
    ("1.2.840.10040.4.3", "dsa_with_SHA1"),
    ("1.3.14.3.2.29", "sha1WithRSA"),
];

/// The signature algorithm as OpenSSL names it; x509-parser's registry lacks some (ECDSA).
fn signature_name(oid: &x509_parser::der_parser::oid::Oid) -> String {
    let id = oid.to_id_string();
    let known = [
        ("1.2.840.10045.4.3.2", "ecdsa-with-SHA256"),
        ("1.2.840.10045.4.3.3", "ecdsa-with-SHA384"),
        ("1.2.840.10045.4.3.4", "ecdsa-with-SHA512"),
        ("1.2.840.113549.1.1.11", "sha256WithRSAEncryption"),
        ("1.2.840.113549.1.1.12", "sha384WithRSAEncryption"),
        ("1.2.840.113549.1.1.13", "sha512WithRSAEncryption"),
        ("1.2.840.113549.1.1.10", "rsassaPss"),
        ("1.3.101.112", "ED25519"),
    ];
    known
        .iter()
        .chain(SHA1_SIGNATURES.iter())
        .find(|(o, _)| *o == id)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| oid_name(oid))
}

fn colon_hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn describe_extension(ext: &X509Extension<'_>) -> (String, String) {
    match ext.parsed_extension() {
        ParsedExtension::BasicConstraints(bc) => (
            "Basic Constraints".into(),
            match (bc.ca, bc.path_len_constraint) {
                (true, Some(n)) => format!("CA:TRUE, pathlen:{n}"),
                (true, None) => "CA:TRUE".into(),
                (false, _) => "CA:FALSE".into(),
            },
        ),
        ParsedExtension::KeyUsage(ku) => ("Key Usage".into(), ku.to_string()),
        ParsedExtension::ExtendedKeyUsage(eku) => {
            let mut v = Vec::new();
            if eku.any {
                v.push("Any".to_string());
            }
            if eku.server_auth {
                v.push("TLS Web Server Authentication".into());
            }
            if eku.client_auth {
                v.push("TLS Web Client Authentication".into());
            }
            if eku.code_signing {
                v.push("Code Signing".into());
            }
            if eku.email_protection {
                v.push("E-mail Protection".into());
            }
            if eku.time_stamping {
                v.push("Time Stamping".into());
            }
            if eku.ocsp_signing {
                v.push("OCSP Signing".into());
            }
            v.extend(eku.other.iter().map(oid_name));
            ("Extended Key Usage".into(), v.join(", "))
        }
        ParsedExtension::SubjectKeyIdentifier(k) => {
            ("Subject Key Identifier".into(), colon_hex(k.0))
        }
        ParsedExtension::AuthorityKeyIdentifier(a) => (
            "Authority Key Identifier".into(),
            a.key_identifier
                .as_ref()
                .map(|k| colon_hex(k.0))
                .unwrap_or_else(|| "(no key id)".into()),
        ),
        ParsedExtension::SubjectAlternativeName(san) => (
            "Subject Alternative Name".into(),
            san.general_names
                .iter()
                .map(general_name)
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ParsedExtension::CRLDistributionPoints(_) => {
            ("CRL Distribution Points".into(), "present".into())
        }
        ParsedExtension::AuthorityInfoAccess(_) => {
            ("Authority Information Access".into(), "present".into())
        }
        ParsedExtension::CertificatePolicies(p) => (
            "Certificate Policies".into(),
            p.iter()
                .map(|pi| oid_name(&pi.policy_id))
                .collect::<Vec<_>>()
                .join(", "),
        ),
        ParsedExtension::NameConstraints(_) => ("Name Constraints".into(), "present".into()),
        _ => (oid_name(&ext.oid), format!("{} bytes", ext.value.len())),
    }
}

/// A SAN entry as OpenSSL prints it: `DNS:x`, `IP Address:127.0.0.1`, `URI:...`.
fn general_name(g: &GeneralName<'_>) -> String {
    match g {
        GeneralName::DNSName(d) => format!("DNS:{d}"),
        GeneralName::RFC822Name(e) => format!("email:{e}"),
        GeneralName::URI(u) => format!("URI:{u}"),
        GeneralName::IPAddress(b) => match b.len() {
            4 => format!(
                "IP Address:{}",
                std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3])
            ),
            16 => {
                let a: [u8; 16] = (*b).try_into().unwrap_or([0; 16]);
                format!("IP Address:{}", std::net::Ipv6Addr::from(a))
            }
            _ => format!("IP Address:{}", hex::encode(b)),
        },
        other => other.to_string(),
    }
}

fn days_between(from: ::time::OffsetDateTime, to: ::time::OffsetDateTime) -> i64 {
    let secs = (to - from).whole_seconds();
    secs.div_euclid(86_400)
}

impl CertView {
    /// Decode a DER certificate, its status and days left by the system clock: for callers
    /// that read names and dates; a verdict on validity goes through [`CertView::from_der_at`]
    /// with the workspace's "now".
    pub fn from_der(der: &[u8]) -> Result<CertView> {
        Self::from_der_at(der, ::time::OffsetDateTime::now_utc())
    }

    /// The view as of `now` (tests and snapshots inject a fixed clock).
    pub fn from_der_at(der: &[u8], now: ::time::OffsetDateTime) -> Result<CertView> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| {
            Error::parse("certificate", format!("not a DER X.509 certificate ({e})"))
        })?;
        let nb = cert.validity().not_before.to_datetime();
        let na = cert.validity().not_after.to_datetime();
        let status = if now < nb {
            ValidityStatus::NotYetValid
        } else if now > na {
            ValidityStatus::Expired
        } else {
            ValidityStatus::Valid
        };
        let bc = cert
            .basic_constraints()
            .ok()
            .flatten()
            .map(|b| b.value.clone());
        let eku_client_auth = cert
            .extended_key_usage()
            .ok()
            .flatten()
            .map(|e| e.value.client_auth || e.value.any);
        let key_cert_sign = cert
            .key_usage()
            .ok()
            .flatten()
            .map(|k| k.value.key_cert_sign())
            .unwrap_or(false);
        let self_signed = cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok();
        let (sha1, sha256) = thumbprints(der);
        let extensions = cert
            .extensions()
            .iter()
            .map(|e| {
                let (name, value) = describe_extension(e);
                ExtensionView {
                    name,
                    oid: e.oid.to_id_string(),
                    critical: e.critical,
                    value,
                }
            })
            .collect();
        Ok(CertView {
            subject: cert.subject().to_string(),
            cn: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string),
            issuer: cert.issuer().to_string(),
            serial: hex::encode_upper(cert.raw_serial()),
            not_before: super::issue::rfc3339(nb),
            not_after: super::issue::rfc3339(na),
            days_left: days_between(now, na),
            status,
            key: describe_spki(cert.public_key().raw),
            signature_algorithm: signature_name(&cert.signature_algorithm.algorithm),
            is_ca: bc.as_ref().is_some_and(|b| b.ca),
            pathlen: bc.as_ref().and_then(|b| b.path_len_constraint),
            self_signed,
            extensions,
            sha1,
            sha256,
            not_before_t: nb,
            not_after_t: na,
            eku_client_auth,
            basic_constraints_present: bc.is_some(),
            key_cert_sign,
        })
    }

    /// Whether it is signed with SHA-1.
    pub(crate) fn uses_sha1_signature(&self) -> bool {
        SHA1_SIGNATURES.iter().any(|(oid, name)| {
            self.signature_algorithm == *oid || self.signature_algorithm == *name
        })
    }
}

/// Does `issuer` (DER) carry the key that signed `cert` (DER)?
pub fn signed_by(cert: &[u8], issuer: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, i))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(issuer),
    ) else {
        return false;
    };
    c.verify_signature(Some(i.public_key())).is_ok()
}

/// Is `next` the issuer of `cert` in a chain: its subject is `cert`'s issuer name (RFC 5280
/// name chaining) and its key verifies the signature. The name check comes first, so a bundle
/// of unrelated certificates costs no signature verification.
fn chains_to(cert: &[u8], next: &[u8]) -> bool {
    let (Ok((_, c)), Ok((_, n))) = (
        X509Certificate::from_der(cert),
        X509Certificate::from_der(next),
    ) else {
        return false;
    };
    let names_chain = c.issuer().as_raw() == n.subject().as_raw()
        || c.issuer()
            .to_string()
            .eq_ignore_ascii_case(&n.subject().to_string());
    names_chain && c.verify_signature(Some(n.public_key())).is_ok()
}

/// The SubjectPublicKeyInfo DER of a certificate.
pub(crate) fn cert_spki(cert: &[u8]) -> Option<Vec<u8>> {
    X509Certificate::from_der(cert)
        .ok()
        .map(|(_, c)| c.public_key().raw.to_vec())
}

/// One thing found in a file.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Item {
    /// A certificate.
    Certificate {
        /// The certificate, decoded.
        #[serde(flatten)]
        view: Box<CertView>,
        /// Whether the next certificate in the file signed this one (chain order).
        #[serde(skip_serializing_if = "Option::is_none")]
        signed_by_next: Option<bool>,
    },
    /// A certificate request.
    Csr {
        /// Subject, one line.
        subject: String,
        /// Subject CN.
        cn: Option<String>,
        /// Its public key.
        key: KeyView,
        /// Whether its signature verifies.
        signature_valid: bool,
        /// Extensions it asks for.
        requested_extensions: Vec<String>,
    },
    /// A private key.
    PrivateKey {
        /// PKCS#8, PKCS#1, SEC1, encrypted, ...
        format: String,
        /// The key, described (None while encrypted).
        key: Option<KeyView>,
        /// SHA-256 thumbprint of the certificate in the same file this key belongs to.
        matches_certificate: Option<String>,
    },
    /// A CRL.
    Crl {
        /// Issuer, one line.
        issuer: String,
        /// thisUpdate, RFC 3339.
        this_update: String,
        /// nextUpdate, RFC 3339.
        next_update: Option<String>,
        /// Serials it lists, hex.
        revoked_serials: Vec<String>,
    },
}

/// What a file holds.
#[derive(Clone, Debug, Serialize)]
pub struct FileReport {
    /// PEM, DER, PKCS#12, ...
    pub format: String,
    /// What it holds, in file order.
    pub items: Vec<Item>,
}

/// Inspect the bytes of any certificate-ish file, validity judged at `now`. PKCS#12 needs
/// `password`.
pub fn inspect_bytes(
    bytes: &[u8],
    password: Option<&str>,
    now: ::time::OffsetDateTime,
) -> Result<FileReport> {
    let text = std::str::from_utf8(bytes)
        .ok()
        .filter(|t| t.contains("-----BEGIN "));
    let mut certs = Vec::new();
    let mut items = Vec::new();
    let mut keys: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    let format;
    if let Some(text) = text {
        format = "PEM".to_string();
        let blocks = ::pem::parse_many(text)
            .map_err(|e| Error::parse("PEM file", format!("broken PEM block ({e})")))?;
        for b in blocks {
            match b.tag() {
                "CERTIFICATE" | "TRUSTED CERTIFICATE" => certs.push(b.into_contents()),
                "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                    items.push(csr_item(b.contents())?)
                }
                "PRIVATE KEY" => keys.push(("PKCS#8".into(), private_spki_der(b.contents()))),
                "EC PRIVATE KEY" => {
                    keys.push(("SEC1 EC".into(), private_spki_pem(&::pem::encode(&b))))
                }
                "RSA PRIVATE KEY" => {
                    keys.push(("PKCS#1 RSA".into(), private_spki_pem(&::pem::encode(&b))))
                }
                "ENCRYPTED PRIVATE KEY" => keys.push(("encrypted PKCS#8".into(), None)),
                "X509 CRL" => items.push(crl_item(b.contents())?),
                other => {
                    return Err(Error::parse(
                        "PEM file",
                        format!("block \"{other}\" is not a certificate, request, key or CRL"),
                    ));
                }
            }
        }
    } else if let Ok((_, _)) = X509Certificate::from_der(bytes) {
        format = "DER certificate".into();
        certs.push(bytes.to_vec());
    } else if X509CertificationRequest::from_der(bytes).is_ok() {
        format = "DER certificate request".into();
        items.push(csr_item(bytes)?);
    } else if let Ok(p12) = openssl::pkcs12::Pkcs12::from_der(bytes) {
        format = "PKCS#12".into();
        let Some(pw) = password else {
            return Err(PasswordError::Pkcs12Needed.into());
        };
        // Refuse a stalling iteration count before any key derivation.
        super::pkcs12::check_iterations(bytes, "this PKCS#12 file")?;
        let parsed = p12
            .parse2(pw)
            .map_err(|_| PasswordError::Pkcs12WrongOrUnreadable)?;
        if let Some(c) = parsed.cert {
            certs.push(c.to_der()?);
        }
        if let Some(chain) = parsed.ca {
            for c in chain {
                certs.push(c.to_der()?);
            }
        }
        if let Some(k) = parsed.pkey {
            keys.push(("PKCS#12 key bag".into(), k.public_key_to_der().ok()));
        }
    } else if let Ok(k) = openssl::pkey::PKey::private_key_from_der(bytes) {
        format = "DER private key".into();
        keys.push(("PKCS#8 DER".into(), k.public_key_to_der().ok()));
    } else if let Ok((_, _)) =
        x509_parser::revocation_list::CertificateRevocationList::from_der(bytes)
    {
        format = "DER CRL".into();
        items.push(crl_item(bytes)?);
    } else {
        return Err(Error::parse(
            "file",
            "not a certificate, chain, CSR, private key, CRL or PKCS#12 in PEM or DER form",
        ));
    }
    let n = certs.len();
    for (i, der) in certs.iter().enumerate() {
        let view = CertView::from_der_at(der, now)?;
        let signed_by_next = (i + 1 < n).then(|| chains_to(der, &certs[i + 1]));
        items.push(Item::Certificate {
            view: Box::new(view),
            signed_by_next,
        });
    }
    // Each certificate's key once, not once per private key.
    let spkis: Vec<Option<Vec<u8>>> = certs.iter().map(|c| cert_spki(c)).collect();
    for (fmt, spki) in keys {
        let matches = spki.as_ref().and_then(|s| {
            spkis
                .iter()
                .position(|c| c.as_deref() == Some(s.as_slice()))
                .map(|i| thumbprints(&certs[i]).1)
        });
        items.push(Item::PrivateKey {
            format: fmt,
            key: spki.as_deref().map(describe_spki),
            matches_certificate: matches,
        });
    }
    Ok(FileReport { format, items })
}

fn private_spki_der(pkcs8: &[u8]) -> Option<Vec<u8>> {
    openssl::pkey::PKey::private_key_from_der(pkcs8)
        .ok()?
        .public_key_to_der()
        .ok()
}

fn private_spki_pem(pem_text: &str) -> Option<Vec<u8>> {
    openssl::pkey::PKey::private_key_from_pem(pem_text.as_bytes())
        .ok()?
        .public_key_to_der()
        .ok()
}

fn csr_item(der: &[u8]) -> Result<Item> {
    let (_, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| Error::parse("CSR", format!("not a PKCS#10 request ({e})")))?;
    let info = &csr.certification_request_info;
    Ok(Item::Csr {
        subject: info.subject.to_string(),
        cn: info
            .subject
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .map(str::to_string),
        key: describe_spki(info.subject_pki.raw),
        signature_valid: csr.verify_signature().is_ok(),
        requested_extensions: csr
            .requested_extensions()
            .map(|it| {
                it.map(|e| {
                    format!("{e:?}")
                        .split('(')
                        .next()
                        .unwrap_or("?")
                        .to_string()
                })
                .collect()
            })
            .unwrap_or_default(),
    })
}

fn crl_item(der: &[u8]) -> Result<Item> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(|e| Error::parse("CRL", e))?;
    Ok(Item::Crl {
        issuer: crl.issuer().to_string(),
        this_update: super::issue::rfc3339(crl.last_update().to_datetime()),
        next_update: crl
            .next_update()
            .map(|t| super::issue::rfc3339(t.to_datetime())),
        revoked_serials: crl
            .iter_revoked_certificates()
            .map(|r| hex::encode_upper(r.raw_serial()))
            .collect(),
    })
}
