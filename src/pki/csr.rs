//! Certificate signing requests: read PEM or DER, check the signature, and keep only the
//! subject and public key. The request's extensions are ignored on purpose: CA flag, key
//! usage and EKU always come from our profile (STYLE.md §8).

use super::{Error, Result};
use rcgen::DistinguishedName;
use x509_parser::prelude::*;

pub struct ParsedCsr {
    pub subject: DistinguishedName,
    pub cn: Option<String>,
    pub spki_der: Vec<u8>,
    /// Extensions the request asked for and we did not honour, to tell the user.
    pub ignored_extensions: Vec<String>,
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
    Ok(ParsedCsr {
        subject,
        cn,
        spki_der: info.subject_pki.raw.to_vec(),
        ignored_extensions,
    })
}
