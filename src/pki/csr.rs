//! Certificate signing requests: read PEM or DER, check the signature, and keep only the
//! subject and public key. The request's extensions are ignored on purpose: CA flag, key
//! usage and EKU always come from our profile (STYLE.md §8).

use super::{Error, Result};
use rcgen::DistinguishedName;
use x509_parser::prelude::*;

/// A certificate request, read and checked.
pub struct ParsedCsr {
    /// The subject it asks for.
    pub subject: DistinguishedName,
    /// Its CN.
    pub cn: Option<String>,
    /// Its public key (SubjectPublicKeyInfo, DER).
    pub spki_der: Vec<u8>,
    /// Extensions the request asked for and we did not honour, to tell the user.
    pub ignored_extensions: Vec<String>,
    /// The DNS, IP and URI names of its subjectAltName (copied only with `--keep-san`).
    pub sans: Vec<super::issue::San>,
    /// Other subjectAltName entries (email, directory names, …), never copied.
    pub other_sans: Vec<String>,
}

/// Turn PEM or DER bytes into the DER of a CSR.
pub fn csr_der(bytes: &[u8]) -> Result<Vec<u8>> {
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

/// Read a CSR (PEM or DER) and check its signature.
pub fn parse_csr(bytes: &[u8]) -> Result<ParsedCsr> {
    let der = csr_der(bytes)?;
    let (_, csr) = X509CertificationRequest::from_der(&der).map_err(|e| {
        Error::parse(
            "CSR",
            format!("not a PKCS#10 certificate request ({e}); give a PEM or DER CSR"),
        )
    })?;
    csr.verify_signature().map_err(|_| {
        Error::invalid(
            "the CSR's signature does not verify against its own public key: the request was altered or corrupted; make it again on the device",
        )
    })?;
    let info = &csr.certification_request_info;
    let subject = super::subject::from_x509_name(&info.subject)?;
    let cn = info
        .subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .map(str::to_string);
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
        subject,
        cn,
        spki_der: info.subject_pki.raw.to_vec(),
        ignored_extensions,
        sans,
        other_sans,
    })
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
pub fn san_text(san: &super::issue::San) -> String {
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
pub fn check_requested_san(san: &super::issue::San, device_id: Option<&str>) -> Result<()> {
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
                Err(Error::invalid(format!(
                    "the CSR asks for DNS name {d:?}, which is neither the device id nor a host name (letters, digits and - in dot-separated labels, no wildcard)"
                )))
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
                Err(Error::invalid(format!(
                    "the CSR asks for URI {u:?}, which is not an absolute URI (scheme:rest, ASCII, no spaces)"
                )))
            }
        }
        San::Ip(_) | San::Email(_) => Ok(()),
    }
}
