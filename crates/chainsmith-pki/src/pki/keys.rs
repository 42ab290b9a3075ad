//! Key algorithms: parse their names, generate keys, recognise existing ones.

use super::{Error, Result, UnknownChoice};
use rcgen::{KeyPair, RsaKeySize, SignatureAlgorithm};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A key algorithm chainsmith makes keys of.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlg {
    /// ECDSA P-256 (the default).
    #[serde(rename = "ec-p256")]
    EcP256,
    /// ECDSA P-384 (signs with SHA-384).
    #[serde(rename = "ec-p384")]
    EcP384,
    /// RSA 2048.
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// RSA 3072.
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    /// RSA 4096.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    /// Ed25519 (not documented for Azure or AWS: allowed, with a warning).
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyAlg {
    /// Every algorithm, in the order menus list them.
    pub const ALL: [KeyAlg; 6] = [
        KeyAlg::EcP256,
        KeyAlg::EcP384,
        KeyAlg::Rsa2048,
        KeyAlg::Rsa3072,
        KeyAlg::Rsa4096,
        KeyAlg::Ed25519,
    ];

    /// The names of [`KeyAlg::ALL`], in that order.
    pub const NAMES: [&'static str; 6] = {
        let mut names = [""; 6];
        let mut i = 0;
        while i < names.len() {
            names[i] = KeyAlg::ALL[i].as_str();
            i += 1;
        }
        names
    };

    /// The name the CLI and spec files use.
    pub const fn as_str(self) -> &'static str {
        match self {
            KeyAlg::EcP256 => "ec-p256",
            KeyAlg::EcP384 => "ec-p384",
            KeyAlg::Rsa2048 => "rsa-2048",
            KeyAlg::Rsa3072 => "rsa-3072",
            KeyAlg::Rsa4096 => "rsa-4096",
            KeyAlg::Ed25519 => "ed25519",
        }
    }

    /// How a person would name it: "ECDSA P-256", "RSA 4096".
    pub fn label(self) -> &'static str {
        match self {
            KeyAlg::EcP256 => "ECDSA P-256",
            KeyAlg::EcP384 => "ECDSA P-384",
            KeyAlg::Rsa2048 => "RSA 2048",
            KeyAlg::Rsa3072 => "RSA 3072",
            KeyAlg::Rsa4096 => "RSA 4096",
            KeyAlg::Ed25519 => "Ed25519",
        }
    }

    /// A caveat to show whenever this algorithm is chosen.
    pub fn warning(self) -> Option<&'static str> {
        match self {
            KeyAlg::Ed25519 => Some(
                "Ed25519 is not documented for Azure IoT Hub, DPS or AWS IoT; use ec-p256 for devices that must connect there",
            ),
            _ => None,
        }
    }

    /// The aws-lc signing algorithm of an EC key (None for RSA and Ed25519).
    pub(crate) fn ecdsa_signing(
        self,
    ) -> Option<&'static aws_lc_rs::signature::EcdsaSigningAlgorithm> {
        match self {
            KeyAlg::EcP256 => Some(&aws_lc_rs::signature::ECDSA_P256_SHA256_ASN1_SIGNING),
            KeyAlg::EcP384 => Some(&aws_lc_rs::signature::ECDSA_P384_SHA384_ASN1_SIGNING),
            _ => None,
        }
    }

    pub(crate) fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyAlg::EcP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlg::EcP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyAlg::Rsa2048 | KeyAlg::Rsa3072 | KeyAlg::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
            KeyAlg::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// A fresh key pair. RSA-4096 takes about half a second: never call this on a draw loop.
    pub fn generate(self) -> Result<KeyPair> {
        let alg = self.signature_algorithm();
        let key = match self {
            KeyAlg::Rsa2048 => KeyPair::generate_rsa_for(alg, RsaKeySize::_2048)?,
            KeyAlg::Rsa3072 => KeyPair::generate_rsa_for(alg, RsaKeySize::_3072)?,
            KeyAlg::Rsa4096 => KeyPair::generate_rsa_for(alg, RsaKeySize::_4096)?,
            _ => KeyPair::generate_for(alg)?,
        };
        Ok(key)
    }

    /// Recognise the algorithm of a public key (SubjectPublicKeyInfo DER). Pure parsing, no
    /// OpenSSL: its decoders take global locks that serialise parallel issuing.
    pub(crate) fn from_spki(spki_der: &[u8]) -> Option<KeyAlg> {
        use x509_parser::prelude::FromDer;
        use x509_parser::public_key::PublicKey;
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(spki_der).ok()?;
        let alg_oid = spki.algorithm.algorithm.to_id_string();
        match spki.parsed().ok()? {
            PublicKey::RSA(rsa) => match rsa.key_size() {
                2048 => Some(KeyAlg::Rsa2048),
                3072 => Some(KeyAlg::Rsa3072),
                4096 => Some(KeyAlg::Rsa4096),
                _ => None,
            },
            PublicKey::EC(_) => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()?
                    .as_oid()
                    .ok()?
                    .to_id_string();
                match curve.as_str() {
                    "1.2.840.10045.3.1.7" => Some(KeyAlg::EcP256),
                    "1.3.132.0.34" => Some(KeyAlg::EcP384),
                    _ => None,
                }
            }
            _ if alg_oid == "1.3.101.112" => Some(KeyAlg::Ed25519),
            _ => None,
        }
    }
}

impl fmt::Display for KeyAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyAlg {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        let alg = match norm.as_str() {
            "ec-p256" | "p256" | "p-256" | "ecdsa-p256" | "ec" | "ecdsa" | "prime256v1" => {
                KeyAlg::EcP256
            }
            "ec-p384" | "p384" | "p-384" | "ecdsa-p384" | "secp384r1" => KeyAlg::EcP384,
            "rsa-2048" | "rsa2048" | "rsa" => KeyAlg::Rsa2048,
            "rsa-3072" | "rsa3072" => KeyAlg::Rsa3072,
            "rsa-4096" | "rsa4096" => KeyAlg::Rsa4096,
            "ed25519" => KeyAlg::Ed25519,
            "rsa-1024" | "rsa1024" => {
                return Err(Error::WeakKey);
            }
            _ => {
                return Err(UnknownChoice::KeyAlg {
                    given: s.to_string(),
                    choices: &KeyAlg::NAMES,
                }
                .into());
            }
        };
        Ok(alg)
    }
}

/// Load a PKCS#8 (or traditional EC/RSA) private key from PEM into a signing key pair.
pub(crate) fn load_key_pem(pem_text: &str) -> Result<KeyPair> {
    if let Ok(k) = KeyPair::from_pem(pem_text) {
        return Ok(k);
    }
    // Traditional "EC PRIVATE KEY"/"RSA PRIVATE KEY" files: convert to PKCS#8 through OpenSSL.
    let pkey = openssl::pkey::PKey::private_key_from_pem(pem_text.as_bytes()).map_err(|e| {
        Error::parse(
            "private key",
            format!("not a readable PEM private key ({e})"),
        )
    })?;
    let pkcs8 = pkey.private_key_to_pem_pkcs8()?;
    let text = String::from_utf8_lossy(&pkcs8).into_owned();
    KeyPair::from_pem(&text).map_err(|e| Error::parse("private key", e))
}

/// The private key as PEM PKCS#8 that every tool reads. aws-lc writes Ed25519 keys as
/// PKCS#8 v2 (with the public key), which OpenSSL 3.0 refuses; those are rewritten as v1.
pub fn key_pem(key: &KeyPair) -> String {
    const V2_PREFIX: [u8; 16] = [
        0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    const V1_PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    let der = key.serialized_der();
    if der.len() >= 48 && der[..16] == V2_PREFIX {
        let mut v1 = V1_PREFIX.to_vec();
        v1.extend_from_slice(&der[16..48]);
        return ::pem::encode(&::pem::Pem::new("PRIVATE KEY", v1));
    }
    key.serialize_pem()
}

/// The algorithm of a loaded key pair.
pub(crate) fn key_alg_of(key: &KeyPair) -> Option<KeyAlg> {
    KeyAlg::from_spki(&rcgen::PublicKeyData::subject_public_key_info(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for alg in KeyAlg::ALL {
            assert_eq!(alg.as_str().parse::<KeyAlg>().unwrap(), alg);
        }
        assert_eq!("P-256".parse::<KeyAlg>().unwrap(), KeyAlg::EcP256);
        let err = "dsa".parse::<KeyAlg>().unwrap_err().to_string();
        assert!(err.contains("ec-p256, ec-p384"), "{err}");
        assert!(
            "rsa-1024"
                .parse::<KeyAlg>()
                .unwrap_err()
                .to_string()
                .contains("too weak")
        );
    }

    #[test]
    fn generated_keys_are_recognised() {
        for alg in [
            KeyAlg::EcP256,
            KeyAlg::EcP384,
            KeyAlg::Ed25519,
            KeyAlg::Rsa2048,
        ] {
            let key = alg.generate().unwrap();
            assert_eq!(key_alg_of(&key), Some(alg));
            let pem = key_pem(&key);
            openssl::pkey::PKey::private_key_from_pem(pem.as_bytes())
                .expect("OpenSSL reads our key PEM");
            let reloaded = load_key_pem(&pem).unwrap();
            assert_eq!(key_alg_of(&reloaded), Some(alg));
        }
    }
}
