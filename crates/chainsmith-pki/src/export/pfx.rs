//! PKCS#12 (PFX) export: build with OpenSSL in one of two profiles. Reading a PFX back
//! (open, decode, iteration checks) is bytes in, bytes out and lives in [`crate::pki::pkcs12`].

use super::{Error, Result};
pub use crate::pki::pkcs12::{PfxAlgorithms, Protection, check_iterations, decode, open};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::X509;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// Iteration count for key derivation and MAC in both profiles: OpenSSL's default, and far
/// below the 600,000 that Windows refuses.
pub(crate) const ITERATIONS: u32 = 2048;

/// Which algorithms a new PFX uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PfxProfile {
    /// PBES2 / PBKDF2-HMAC-SHA256 / AES-256-CBC for key and certificates, SHA-256 MAC
    /// (OpenSSL 3's default).
    #[default]
    Modern,
    /// pbeWithSHAAnd3-KeyTripleDES-CBC for key and certificates, SHA-1 MAC: what Windows
    /// Server 2016 and older, older macOS keychains and Java 8 read. Never RC2.
    Compat,
}

impl PfxProfile {
    /// The name the CLI and the manifest use.
    pub fn as_str(self) -> &'static str {
        match self {
            PfxProfile::Modern => "modern",
            PfxProfile::Compat => "compat",
        }
    }
}

impl fmt::Display for PfxProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PfxProfile {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "modern" | "aes" | "aes-256" => Ok(PfxProfile::Modern),
            "compat" | "legacy" | "3des" => Ok(PfxProfile::Compat),
            _ => Err(super::UnknownChoice::PfxProfile {
                given: s.to_string(),
            }
            .into()),
        }
    }
}

/// Build a PFX: leaf, key, optional extra certificates (the chain), friendly name.
pub fn build(
    profile: PfxProfile,
    password: &str,
    friendly_name: &str,
    leaf_der: &[u8],
    key: &PKey<Private>,
    chain_der: &[Vec<u8>],
) -> Result<Vec<u8>> {
    if password.contains('\0') {
        return Err(Error::PasswordNul);
    }
    let cert = X509::from_der(leaf_der)?;
    let mut b = Pkcs12::builder();
    b.name(friendly_name)
        .pkey(key)
        .cert(&cert)
        .key_iter(ITERATIONS)
        .mac_iter(ITERATIONS);
    if !chain_der.is_empty() {
        let mut stack = Stack::new()?;
        for der in chain_der {
            stack.push(X509::from_der(der)?)?;
        }
        b.ca(stack);
    }
    match profile {
        PfxProfile::Modern => {
            b.key_algorithm(Nid::AES_256_CBC)
                .cert_algorithm(Nid::AES_256_CBC)
                .mac_md(MessageDigest::sha256());
        }
        PfxProfile::Compat => {
            b.key_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
                .cert_algorithm(Nid::PBE_WITHSHA1AND3_KEY_TRIPLEDES_CBC)
                .mac_md(MessageDigest::sha1());
        }
    }
    Ok(b.build2(password)?.to_der()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::subject::cn_only;
    use crate::pki::{IssueSpec, KeyAlg, Profile, Validity, issue};

    fn sample() -> (Vec<u8>, PKey<Private>) {
        let spec = IssueSpec {
            subject: cn_only("dev1").unwrap(),
            profile: Profile::Root { pathlen: None },
            validity: Validity::days(1),
        };
        let i = issue::issue(&spec, KeyAlg::EcP256, None).unwrap();
        (
            i.cert_der,
            PKey::private_key_from_pem(i.key_pem.unwrap().as_bytes()).unwrap(),
        )
    }

    #[test]
    fn profiles_decode_to_what_was_asked() {
        let (cert, key) = sample();
        let modern = build(PfxProfile::Modern, "pw", "dev1", &cert, &key, &[]).unwrap();
        let a = decode(&modern).unwrap();
        assert_eq!(a.mac_digest.as_deref(), Some("SHA-256"));
        assert_eq!(a.mac_iterations, Some(u64::from(ITERATIONS)));
        assert_eq!(
            a.key_bags[0].algorithm,
            "PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)"
        );
        assert_eq!(
            a.cert_bags[0].algorithm,
            "PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)"
        );
        let compat = build(PfxProfile::Compat, "pw", "dev1", &cert, &key, &[]).unwrap();
        let a = decode(&compat).unwrap();
        assert_eq!(a.mac_digest.as_deref(), Some("SHA-1"));
        assert_eq!(a.key_bags[0].algorithm, "pbeWithSHAAnd3-KeyTripleDES-CBC");
        assert_eq!(a.cert_bags[0].algorithm, "pbeWithSHAAnd3-KeyTripleDES-CBC");
        assert!(a.key_bags[0].iterations.unwrap() <= 600_000);
        assert!(!a.uses_rc2());
        assert!(matches!(
            open(&compat, "nope", "x.pfx"),
            Err(crate::pki::Error::WrongPassword { .. })
        ));
        assert!(open(&compat, "pw", "x.pfx").unwrap().key.is_some());
    }
}
