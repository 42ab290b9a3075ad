//! Distinguished names: parse what a person types (`CN=x,O=y,C=z` or `/CN=x/O=y`), and
//! carry a parsed certificate's or request's subject into a new certificate.

use super::{Error, Result, SubjectError};
use rcgen::{DistinguishedName, DnType, DnValue};

const KNOWN: &[(&str, DnType)] = &[
    ("CN", DnType::CommonName),
    ("O", DnType::OrganizationName),
    ("OU", DnType::OrganizationalUnitName),
    ("C", DnType::CountryName),
    ("ST", DnType::StateOrProvinceName),
    ("L", DnType::LocalityName),
];

/// Parse `CN=Contoso Root,O=Contoso,C=US` (commas may be escaped as `\,`) or the OpenSSL
/// form `/CN=Contoso Root/O=Contoso`.
pub(crate) fn parse_subject(text: &str) -> Result<DistinguishedName> {
    let text = text.trim();
    let (sep, body) = match text.strip_prefix('/') {
        Some(rest) => ('/', rest),
        None => (',', text),
    };
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut cur));
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    let mut dn = DistinguishedName::new();
    let mut has_cn = false;
    for part in parts.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        let (key, value) = part.split_once('=').ok_or_else(|| SubjectError::NoEquals {
            part: part.to_string(),
        })?;
        let key = key.trim().to_ascii_uppercase();
        let value = value.trim();
        let ty = KNOWN
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, t)| t.clone())
            .ok_or_else(|| SubjectError::UnknownAttribute { key: key.clone() })?;
        if value.is_empty() {
            return Err(SubjectError::EmptyValue { key }.into());
        }
        if key == "C" && (value.len() != 2 || !value.chars().all(|c| c.is_ascii_alphabetic())) {
            return Err(SubjectError::Country {
                value: value.to_string(),
            }
            .into());
        }
        if key == "CN" {
            has_cn = true;
            if value.chars().count() > super::identity::MAX_CN {
                return Err(SubjectError::CnTooLongInSubject {
                    cn: value.to_string(),
                    max: super::identity::MAX_CN,
                }
                .into());
            }
        }
        let value = if key == "C" {
            DnValue::PrintableString(value.to_ascii_uppercase().try_into()?)
        } else {
            DnValue::Utf8String(value.to_string())
        };
        dn.push(ty, value);
    }
    if !has_cn {
        return Err(SubjectError::NoCn {
            subject: text.to_string(),
        }
        .into());
    }
    Ok(dn)
}

/// A subject with only a CN.
pub fn cn_only(cn: &str) -> Result<DistinguishedName> {
    if cn.is_empty() {
        return Err(Error::EmptyCn);
    }
    if cn.chars().count() > super::identity::MAX_CN {
        return Err(SubjectError::CnTooLong {
            cn: cn.to_string(),
            len: cn.chars().count(),
            max: super::identity::MAX_CN,
        }
        .into());
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, DnValue::Utf8String(cn.to_string()));
    Ok(dn)
}

/// The CN of a distinguished name we built.
pub fn cn_of(dn: &DistinguishedName) -> Option<String> {
    dn.get(&DnType::CommonName).map(dn_value_text)
}

fn dn_value_text(v: &DnValue) -> String {
    match v {
        DnValue::Utf8String(s) => s.clone(),
        DnValue::PrintableString(s) => s.as_str().to_string(),
        DnValue::Ia5String(s) => s.as_str().to_string(),
        DnValue::TeletexString(s) => s.as_str().to_string(),
        DnValue::BmpString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        DnValue::UniversalString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        _ => String::new(),
    }
}

/// Copy a parsed subject (from a CSR or certificate) into an rcgen name, attribute by
/// attribute, keeping order and unknown attributes.
pub(crate) fn from_x509_name(name: &x509_parser::x509::X509Name<'_>) -> Result<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        for attr in rdn.iter() {
            let oid: Vec<u64> = attr
                .attr_type()
                .iter()
                .ok_or_else(|| Error::parse("subject", "attribute OID too large"))?
                .collect();
            let ty = DnType::from_oid(&oid);
            let text = attr
                .as_str()
                .map_err(|_| Error::parse("subject", "an attribute is not a text string"))?;
            dn.push(ty, DnValue::Utf8String(text.to_string()));
        }
    }
    Ok(dn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_forms() {
        let dn = parse_subject("CN=Contoso Root, O=Contoso\\, Inc., C=us").unwrap();
        assert_eq!(cn_of(&dn).unwrap(), "Contoso Root");
        assert_eq!(dn.iter().count(), 3);
        let dn = parse_subject("/CN=a/O=b").unwrap();
        assert_eq!(cn_of(&dn).unwrap(), "a");
    }

    #[test]
    fn rejects_with_reasons() {
        assert!(
            parse_subject("O=x")
                .unwrap_err()
                .to_string()
                .contains("no CN")
        );
        assert!(
            parse_subject("CN=x,C=USA")
                .unwrap_err()
                .to_string()
                .contains("two-letter")
        );
        assert!(
            parse_subject("CN=x,FOO=y")
                .unwrap_err()
                .to_string()
                .contains("FOO")
        );
        assert!(
            parse_subject("CNx")
                .unwrap_err()
                .to_string()
                .contains("no '='")
        );
    }
}
