//! The CAs the hub holds: upload, proof of possession, removal.

use super::{HubCa, HubStore, RegistryError, Result, new_code, pem_to_der};
use crate::pki;

impl HubStore {
    /// Upload a workspace CA. Returns the registered entry (with its verification code).
    pub fn add_ca(&self, name: &str, verified: bool) -> Result<HubCa> {
        let ca = self.ca_entry(name, verified)?;
        self.modify(|r| {
            if r.cas
                .iter()
                .any(|c| c.name == name && c.cert_pem == ca.cert_pem)
            {
                return Err(RegistryError::CaTaken(name.to_string()));
            }
            r.cas.push(ca.clone());
            Ok(ca)
        })
    }

    /// Proof of possession: `cert_bytes` must be a certificate with CN = the current code,
    /// signed by the CA's key.
    pub fn verify_ca(&self, name: &str, cert_bytes: &[u8]) -> Result<HubCa> {
        let reg = self.load()?;
        if !reg.cas.iter().any(|c| c.name == name) {
            return Err(RegistryError::UnknownCa(name.to_string()));
        }
        let ca = self.check_proof(name, &reg.cas, cert_bytes)?;
        self.modify(|r| {
            let c = r
                .cas
                .iter_mut()
                .find(|c| c.name == name && c.cert_pem == ca.cert_pem)
                .ok_or_else(|| RegistryError::UnknownCa(name.to_string()))?;
            c.verified = true;
            Ok(c.clone())
        })
    }

    /// A registry entry for workspace CA `name` with a fresh verification code: what the hub
    /// and DPS certificate lists both hold.
    pub(crate) fn ca_entry(&self, name: &str, verified: bool) -> Result<HubCa> {
        let entity = self.ws.load(name)?;
        if !entity.meta.kind.is_ca() {
            return Err(RegistryError::NotACa(name.to_string()));
        }
        Ok(HubCa {
            name: name.to_string(),
            cn: entity.meta.cn.clone(),
            cert_pem: entity.cert_pem.clone(),
            verified,
            code: new_code(),
            added: self.ws.now(),
        })
    }

    /// Proof of possession against a certificate list (the hub's or DPS's): `cert_bytes` must
    /// be a certificate with CN = the current code of one of `name`'s entries in `cas`, signed
    /// by that CA's key. Returns the entry it proves (the caller marks it verified).
    pub(crate) fn check_proof(
        &self,
        name: &str,
        cas: &[HubCa],
        cert_bytes: &[u8],
    ) -> Result<HubCa> {
        let mine: Vec<&HubCa> = cas.iter().filter(|c| c.name == name).collect();
        let refuse = |reason: String| RegistryError::Proof {
            ca: name.to_string(),
            reason,
        };
        let text = String::from_utf8_lossy(cert_bytes);
        if text.contains("PRIVATE KEY") {
            return Err(refuse(
                "the file contains a private key; upload only the verification certificate (never a key)".into(),
            ));
        }
        let der = if text.contains("-----BEGIN") {
            pem::parse_many(cert_bytes)
                .ok()
                .and_then(|blocks| blocks.into_iter().find(|b| b.tag() == "CERTIFICATE"))
                .map(|b| b.into_contents())
        } else {
            Some(cert_bytes.to_vec())
        };
        let view = der.as_deref().and_then(|d| {
            pki::inspect::CertView::from_der(d)
                .ok()
                .map(|v| (d.to_vec(), v))
        });
        let Some((der, view)) = view else {
            return Err(refuse(
                "the file is not a certificate (PEM or DER); give the verification certificate made with the CA's current code".into(),
            ));
        };
        let cn = view.cn.clone().unwrap_or_default();
        // With several certificates of one CA, the code says which one is being proved.
        let Some(ca) = mine.iter().find(|c| c.code == cn).map(|c| (*c).clone()) else {
            let codes: Vec<&str> = mine
                .iter()
                .filter(|c| !c.verified)
                .map(|c| c.code.as_str())
                .collect();
            return Err(refuse(match codes.as_slice() {
                [] => format!(
                    "wrong code: the certificate's CN is \"{cn}\", and every certificate of \"{name}\" is verified already"
                ),
                [one] => format!(
                    "wrong code: the certificate's CN is \"{cn}\" but the current verification code is {one}; make a new verification certificate with that code"
                ),
                many => format!(
                    "wrong code: the certificate's CN is \"{cn}\" but the codes of \"{name}\"'s unverified certificates are {}; make a new verification certificate with one of them",
                    many.join(", ")
                ),
            }));
        };
        let ca_der = pem_to_der(&ca.cert_pem).unwrap_or_default();
        if !pki::inspect::signed_by(&der, &ca_der) {
            let other = self.ws.signing_ca(&der);
            return Err(refuse(match other {
                Some(other) => format!(
                    "the certificate is signed by \"{other}\", another CA, not by \"{name}\"; sign it with \"{name}\"'s key"
                ),
                None => format!(
                    "the certificate is not signed by \"{name}\"'s key (nor by any CA in the workspace); sign it with \"{name}\"'s key"
                ),
            }));
        }
        Ok(ca)
    }

    /// Remove every certificate of a CA from the hub.
    pub fn remove_ca(&self, name: &str) -> Result<()> {
        self.modify(|r| {
            let before = r.cas.len();
            r.cas.retain(|c| c.name != name);
            if r.cas.len() == before {
                return Err(RegistryError::UnknownCa(name.to_string()));
            }
            Ok(())
        })
    }
}
