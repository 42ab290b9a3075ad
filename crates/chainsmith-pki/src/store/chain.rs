//! Chain lookup: an entity and the certificates of its issuers, as the workspace holds them.

use super::{Damage, Entity, Error, Result, Workspace};

/// The directory inside an entity's own where every replaced certificate is kept
/// (`entities/NAME/history/SERIAL/`).
pub const HISTORY_DIR: &str = "history";

/// The entity and its issuers up to the root (or the first missing link).
pub fn chain_of(ws: &Workspace, name: &str) -> Result<Vec<Entity>> {
    let mut chain = vec![ws.load(name)?];
    while let Some(issuer) = chain.last().and_then(|e| e.meta.issuer.clone()) {
        if chain.len() > 32 || chain.iter().any(|e| e.meta.name == issuer) {
            return Err(Error::Damaged {
                path: chain[0].dir.clone(),
                what: Damage::IssuerLoop { issuer },
            });
        }
        let child = chain.last().expect("chain has the entity").cert_der.clone();
        chain.push(signing_certificate(ws.load(&issuer)?, &child));
    }
    Ok(chain)
}

/// The certificate of `issuer` that really signed `child`: its current one, or, when the CA was
/// re-keyed since, the one in its history whose subject key identifier is the child's authority
/// key identifier and whose key verifies the child's signature. Names alone cannot tell them
/// apart: every certificate of a CA has the same subject.
fn signing_certificate(issuer: Entity, child: &[u8]) -> Entity {
    use crate::pki::inspect::signed_by;
    if signed_by(child, &issuer.cert_der) {
        return issuer;
    }
    let akid = key_ids(child).1;
    let Ok(rd) = std::fs::read_dir(issuer.dir.join(HISTORY_DIR)) else {
        return issuer;
    };
    rd.flatten()
        .filter_map(|e| Entity::read_dir(e.path()).ok())
        .find(|old| {
            (akid.is_none() || key_ids(&old.cert_der).0 == akid) && signed_by(child, &old.cert_der)
        })
        .unwrap_or(issuer)
}

/// (subject key identifier, authority key identifier) of a certificate.
fn key_ids(der: &[u8]) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    use x509_parser::prelude::*;
    let Ok((_, cert)) = X509Certificate::from_der(der) else {
        return (None, None);
    };
    let (mut ski, mut aki) = (None, None);
    for e in cert.extensions() {
        match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => ski = Some(k.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                aki = a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => {}
        }
    }
    (ski, aki)
}
