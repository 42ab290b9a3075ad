//! Certificate signing requests: read PEM or DER, check the key and the signature, and keep
//! only what chainsmith will put in a certificate: the CN the request asks for (checked, never
//! copied: the issued CN is the name the operator or DPS gives), the subject attributes the
//! device profile allows, and the public key. The request's extensions are ignored on purpose:
//! CA flag, key usage and EKU always come from our profile (STYLE.md §8).

use super::{Error, Result, SanError};
use rcgen::DnType;
use x509_parser::prelude::*;

/// Subject attributes a device CSR may carry besides its one CN, each at most once: the
/// attributes `--subject` takes (`subject::KNOWN`). Anything else (a second CN, a serial
/// number, an email address, a multi-valued RDN) is refused, so what a device asks for can never
/// smuggle a second identity into the certificate (issue 21: `/CN=dev-a/CN=victim`).
pub(crate) const CSR_SUBJECT_EXTRAS: &[(&str, DnType)] = &[
    ("O", DnType::OrganizationName),
    ("OU", DnType::OrganizationalUnitName),
    ("L", DnType::LocalityName),
    ("ST", DnType::StateOrProvinceName),
    ("C", DnType::CountryName),
];

/// The smallest RSA key a CSR may carry: 2048 bits, the floor of OpenSSL 3's default security
/// level 1 that the hubs and the SDKs' TLS stacks enforce (RSA-1024 fails at the handshake).
pub(crate) const MIN_CSR_RSA_BITS: usize = 2048;

/// The subject attributes besides the CN, in request order.
pub(crate) type SubjectExtras = Vec<(DnType, String)>;

/// A certificate request, read and checked.
pub struct ParsedCsr {
    /// The CN it asks for (exactly one; a request with none is kept with `None` so the face can
    /// say so with the name it would use).
    pub cn: Option<String>,
    /// The other subject attributes it asks for, from [`CSR_SUBJECT_EXTRAS`], in request order.
    pub subject_extras: SubjectExtras,
    /// Its public key (SubjectPublicKeyInfo, DER).
    pub spki_der: Vec<u8>,
    /// Extensions the request asked for and we did not honour, to tell the user.
    pub ignored_extensions: Vec<String>,
    /// The DNS, IP and URI names of its subjectAltName (copied only with `--keep-san`).
    pub sans: Vec<super::issue::San>,
    /// Other subjectAltName entries (email, directory names, …), never copied.
    pub other_sans: Vec<String>,
}

impl ParsedCsr {
    /// The subject chainsmith issues for this request: `CN = cn` (the name the caller chose,
    /// never the request's own), then the allowed attributes the request asked for.
    pub(crate) fn issued_subject(&self, cn: &str) -> Result<rcgen::DistinguishedName> {
        let mut dn = super::subject::cn_only(cn)?;
        for (ty, value) in &self.subject_extras {
            let value = if *ty == DnType::CountryName {
                rcgen::DnValue::PrintableString(value.to_ascii_uppercase().try_into()?)
            } else {
                rcgen::DnValue::Utf8String(value.clone())
            };
            dn.push(ty.clone(), value);
        }
        Ok(dn)
    }
}

/// Turn PEM or DER bytes into the DER of a CSR.
pub(crate) fn csr_der(bytes: &[u8]) -> Result<Vec<u8>> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        if text.contains("-----BEGIN") {
            let blocks = ::pem::parse_many(text)
                .map_err(|e| Error::parse("CSR", format!("broken PEM ({e})")))?;
            return blocks
                .into_iter()
                .find(|b| b.tag() == "CERTIFICATE REQUEST" || b.tag() == "NEW CERTIFICATE REQUEST")
                .map(|b| b.into_contents())
                .ok_or_else(|| Error::parse("CSR", "the PEM holds no CERTIFICATE REQUEST block; make one with `openssl req -new -key KEY -subj /CN=ID -out ID.csr`"));
        }
    }
    Ok(bytes.to_vec())
}

/// Read a CSR (PEM or DER): its key first (a weak or unsupported key is named as such, not
/// blamed on the signature), then its signature, then its subject ([`CSR_SUBJECT_EXTRAS`]).
pub fn parse_csr(bytes: &[u8]) -> Result<ParsedCsr> {
    let der = csr_der(bytes)?;
    let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        Error::parse(
            "CSR",
            format!("not a PKCS#10 certificate request ({e}); give a PEM or DER CSR"),
        )
    })?;
    let info = &csr.certification_request_info;
    check_csr_key(&info.subject_pki)?;
    csr.verify_signature().map_err(|_| Error::CsrSignature)?;
    let (cn, subject_extras) = csr_subject(&info.subject)?;
    let ignored_extensions = csr
        .requested_extensions()
        .map(|exts| {
            exts.map(|e| {
                format!("{e:?}")
                    .split('(')
                    .next()
                    .unwrap_or("extension")
                    .to_string()
            })
            .collect()
        })
        .unwrap_or_default();
    let (sans, other_sans) = requested_sans(&csr);
    Ok(ParsedCsr {
        cn,
        subject_extras,
        spki_der: info.subject_pki.raw.to_vec(),
        ignored_extensions,
        sans,
        other_sans,
    })
}

/// The request's subject, attribute by attribute: at most one CN, at most one of each
/// [`CSR_SUBJECT_EXTRAS`], one attribute per RDN, text values only.
fn csr_subject(name: &X509Name<'_>) -> Result<(Option<String>, SubjectExtras)> {
    let refuse = |problem: String| Err(Error::CsrSubject { problem });
    let mut cns: Vec<String> = Vec::new();
    let mut extras: SubjectExtras = Vec::new();
    for rdn in name.iter() {
        if rdn.iter().count() != 1 {
            return refuse("has a multi-valued RDN (several attributes joined with +)".into());
        }
        for attr in rdn.iter() {
            let oid = attr.attr_type();
            let text = attr.as_str().map_err(|_| Error::CsrSubject {
                problem: format!("has an attribute ({oid}) that is not a text string"),
            })?;
            if *oid == x509_parser::oid_registry::OID_X509_COMMON_NAME {
                cns.push(text.to_string());
                continue;
            }
            let arcs: Option<Vec<u64>> = oid.iter().map(|i| i.collect());
            let ty = arcs.map(|a| DnType::from_oid(&a));
            let Some((label, ty)) = CSR_SUBJECT_EXTRAS
                .iter()
                .find(|(_, t)| Some(t) == ty.as_ref())
            else {
                return refuse(format!(
                    "asks for attribute {} (\"{}\"), which a device certificate does not carry",
                    oid_text(oid),
                    crate::text::escape_controls(text)
                ));
            };
            if extras.iter().any(|(t, _)| t == ty) {
                return refuse(format!("asks for {label} twice"));
            }
            extras.push((ty.clone(), text.to_string()));
        }
    }
    if cns.len() > 1 {
        return refuse(format!(
            "asks for {} CNs ({}); a device certificate names one device",
            cns.len(),
            cns.iter()
                .map(|c| format!("\"{}\"", crate::text::escape_controls(c)))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok((cns.pop(), extras))
}

/// An OID as OpenSSL's short name where it has one (`secp112r1`), else dotted.
fn oid_text(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let dotted = oid.to_id_string();
    openssl::asn1::Asn1Object::from_str(&dotted)
        .ok()
        .and_then(|o| o.nid().short_name().ok().map(str::to_string))
        .unwrap_or(dotted)
}

/// A CSR's key must be one chainsmith issues for: RSA of at least [`MIN_CSR_RSA_BITS`], EC on
/// P-256, P-384 or P-521 (named, not explicit parameters), or Ed25519.
fn check_csr_key(spki: &SubjectPublicKeyInfo<'_>) -> Result<()> {
    use x509_parser::oid_registry::*;
    let alg = &spki.algorithm.algorithm;
    let refuse = |key: String| Err(Error::CsrKey { key });
    if *alg == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => {
                let bits = rsa.key_size();
                if bits < MIN_CSR_RSA_BITS {
                    refuse(format!("RSA-{bits}"))
                } else {
                    Ok(())
                }
            }
            _ => refuse("an RSA key that does not parse".into()),
        };
    }
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .filter(|p| p.tag() == x509_parser::der_parser::asn1_rs::Tag::Oid)
            .and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 || c == OID_NIST_EC_P384 || c == OID_NIST_EC_P521 => Ok(()),
            Some(c) => refuse(format!("EC on curve {}", oid_text(&c))),
            None => refuse(
                "EC with explicit curve parameters (RFC 5480 allows only a named curve)".into(),
            ),
        };
    }
    if *alg == OID_SIG_ED25519 {
        return Ok(());
    }
    refuse(format!("of algorithm {}", oid_text(alg)))
}

/// The subjectAltName a request asks for: (DNS/IP/URI names, everything else described).
fn requested_sans(csr: &X509CertificationRequest<'_>) -> (Vec<super::issue::San>, Vec<String>) {
    use super::issue::San;
    let (mut keep, mut other) = (Vec::new(), Vec::new());
    for ext in csr.requested_extensions().into_iter().flatten() {
        let ParsedExtension::SubjectAlternativeName(san) = ext else {
            continue;
        };
        for n in &san.general_names {
            match n {
                GeneralName::DNSName(d) => keep.push(San::Dns(d.to_string())),
                GeneralName::URI(u) => keep.push(San::Uri(u.to_string())),
                GeneralName::IPAddress(ip) => match <[u8; 4]>::try_from(*ip) {
                    Ok(v4) => keep.push(San::Ip(v4.into())),
                    Err(_) => match <[u8; 16]>::try_from(*ip) {
                        Ok(v6) => keep.push(San::Ip(v6.into())),
                        Err(_) => other.push(format!("IP of {} bytes", ip.len())),
                    },
                },
                GeneralName::RFC822Name(e) => other.push(format!("email:{e}")),
                n => other.push(format!("{n:?}").chars().take(60).collect()),
            }
        }
    }
    (keep, other)
}

/// A SAN as `--san` takes it: `DNS:x`, `IP:1.2.3.4`, `URI:…`, `email:…`.
pub(crate) fn san_text(san: &super::issue::San) -> String {
    use super::issue::San;
    match san {
        San::Dns(d) => format!("DNS:{d}"),
        San::Ip(ip) => format!("IP:{ip}"),
        San::Uri(u) => format!("URI:{u}"),
        San::Email(e) => format!("email:{e}"),
    }
}

/// Check a name the CSR asked for before it goes into a device certificate: a DNS name is the
/// device id itself (checked by the target's id rules by the caller) or a host name (RFC 1123
/// labels, no wildcard: a device is one host); a URI needs a scheme; all ASCII.
pub(crate) fn check_requested_san(san: &super::issue::San, device_id: Option<&str>) -> Result<()> {
    use super::issue::San;
    match san {
        San::Dns(d) if Some(d.as_str()) == device_id => Ok(()),
        San::Dns(d) => {
            let label_ok = |l: &str| {
                !l.is_empty()
                    && l.len() <= 63
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            };
            if d.len() <= 253 && d.trim_end_matches('.').split('.').all(label_ok) {
                Ok(())
            } else {
                Err(SanError::CsrDnsName { name: d.clone() }.into())
            }
        }
        San::Uri(u) => {
            let scheme = u.split_once(':').map(|(s, _)| s).unwrap_or("");
            let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
            if scheme_ok && u.is_ascii() && !u.chars().any(|c| c.is_ascii_control() || c == ' ') {
                Ok(())
            } else {
                Err(SanError::CsrUri { uri: u.clone() }.into())
            }
        }
        San::Ip(_) | San::Email(_) => Ok(()),
    }
}
