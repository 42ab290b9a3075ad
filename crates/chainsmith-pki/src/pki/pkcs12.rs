//! PKCS#12 (PFX) read back: open a file with its password, and tell which algorithms protect
//! it by walking its ASN.1 (RFC 7292; asn1-rs reads each element), so a report names what is really in the file
//! rather than what was asked for. Bytes in, bytes out: `export` builds PFX files and `import`,
//! `inspect` and `export` read them with this.

use super::{Error, Pkcs12Error, Result};
use openssl::hash::MessageDigest;
use openssl::pkcs12::Pkcs12;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;
use serde::Serialize;
use x509_parser::asn1_rs::{Any, FromDer, Oid};

/// What a PFX holds once opened with its password.
pub struct Opened {
    /// The private key.
    pub key: Option<PKey<Private>>,
    /// The certificate the key belongs to.
    pub leaf: Option<X509>,
    /// The other certificates, in file order.
    pub chain: Vec<X509>,
}

/// The most key-derivation iterations chainsmith will run for one part of a PKCS#12 file or
/// an encrypted PKCS#8 key. OpenSSL writes 2,048, Windows reads at most 600,000; a count far
/// above this only makes opening the file take minutes.
pub(crate) const MAX_ITERATIONS: u64 = 2_000_000;

fn too_many(file: &str, part: &'static str, iterations: u64) -> Error {
    Pkcs12Error::TooManyIterations {
        file: file.to_string(),
        part,
        iterations,
        max: MAX_ITERATIONS,
    }
    .into()
}

/// Refuse a PFX whose MAC or bag encryption asks for more than [`MAX_ITERATIONS`]
/// iterations, before any password work. The counts are read from the file's structure.
pub fn check_iterations(der: &[u8], what: &str) -> Result<()> {
    let algs = decode(der)?;
    if let Some(n) = algs.mac_iterations.filter(|n| *n > MAX_ITERATIONS) {
        return Err(too_many(what, "MAC", n));
    }
    for (part, bags) in [("key", &algs.key_bags), ("certificates", &algs.cert_bags)] {
        if let Some(n) = bags
            .iter()
            .filter_map(|b| b.iterations)
            .find(|n| *n > MAX_ITERATIONS)
        {
            return Err(too_many(what, part, n));
        }
    }
    Ok(())
}

/// The same for an encrypted PKCS#8 key (`ENCRYPTED PRIVATE KEY`, DER):
/// EncryptedPrivateKeyInfo ::= SEQUENCE { encryptionAlgorithm, encryptedData }.
/// Bytes of another shape pass: OpenSSL's own parser reports them, and DER input of unknown
/// kind is tried as several formats in turn.
pub(crate) fn check_pkcs8_iterations(der: &[u8], what: &str) -> Result<()> {
    let iterations = || -> Result<Option<u64>> {
        let (epki, _) = tlv_tagged(der, 0x30, "EncryptedPrivateKeyInfo is not a SEQUENCE")?;
        let e = items(epki.body)?;
        let alg = e
            .first()
            .ok_or_else(|| bad("encrypted key without algorithm"))?;
        Ok(protection(alg.body)?.iterations)
    };
    match iterations() {
        Ok(Some(n)) if n > MAX_ITERATIONS => Err(too_many(what, "key", n)),
        _ => Ok(()),
    }
}

/// Open a PFX with its password; a wrong password is a clear error, not an OpenSSL stack.
pub fn open(bytes: &[u8], password: &str, what: &str) -> Result<Opened> {
    let p12 = Pkcs12::from_der(bytes).map_err(|_| Pkcs12Error::NotPkcs12 {
        file: what.to_string(),
    })?;
    check_iterations(bytes, what)?;
    // Tell a wrong password from an algorithm OpenSSL cannot read: check the MAC ourselves first.
    let algs = decode(bytes).ok();
    let mac_ok = mac_matches(bytes, password).ok().flatten();
    let parsed = p12.parse2(password).map_err(|_| {
        let rc2 = algs.as_ref().is_some_and(|a| a.uses_rc2());
        if mac_ok == Some(false) {
            Error::WrongPassword {
                file: what.to_string(),
            }
        } else if rc2 {
            Pkcs12Error::Rc2 {
                file: what.to_string(),
            }
            .into()
        } else {
            Error::WrongPassword {
                file: what.to_string(),
            }
        }
    })?;
    let chain = parsed
        .ca
        .map(|s| s.into_iter().collect())
        .unwrap_or_default();
    Ok(Opened {
        key: parsed.pkey,
        leaf: parsed.cert,
        chain,
    })
}

/// How one part of a PFX is protected.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Protection {
    /// e.g. "PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)" or "pbeWithSHAAnd3-KeyTripleDES-CBC".
    pub algorithm: String,
    /// Key-derivation iterations (None when the part is not encrypted).
    pub iterations: Option<u64>,
}

/// The algorithms found in a PFX file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PfxAlgorithms {
    /// MAC digest ("SHA-256", "SHA-1"), None when the file has no MAC.
    pub mac_digest: Option<String>,
    /// MAC iterations.
    pub mac_iterations: Option<u64>,
    /// Protection of each shrouded key bag.
    pub key_bags: Vec<Protection>,
    /// Protection of each encrypted SafeContents (where the certificate bags live);
    /// "none" for certificates stored in plain data.
    pub cert_bags: Vec<Protection>,
}

impl PfxAlgorithms {
    /// Whether any part uses RC2 (OpenSSL 3 reads it only with its legacy provider).
    pub(crate) fn uses_rc2(&self) -> bool {
        self.key_bags
            .iter()
            .chain(&self.cert_bags)
            .any(|p| p.algorithm.contains("RC2"))
    }

    /// One line: "MAC SHA-256 (2048 iterations); key PBES2 (...) x2048; certificates ..."
    pub fn summary(&self) -> String {
        let part = |v: &[Protection]| {
            if v.is_empty() {
                return "none".to_string();
            }
            let mut seen: Vec<String> = v
                .iter()
                .map(|p| match p.iterations {
                    Some(i) => format!("{}, {i} iterations", p.algorithm),
                    None => p.algorithm.clone(),
                })
                .collect();
            seen.dedup();
            seen.join("; ")
        };
        let mac = match (&self.mac_digest, self.mac_iterations) {
            (Some(d), Some(i)) => format!("HMAC-{d}, {i} iterations"),
            (Some(d), None) => format!("HMAC-{d}"),
            _ => "none".into(),
        };
        format!(
            "MAC {mac}; key {}; certificates {}",
            part(&self.key_bags),
            part(&self.cert_bags)
        )
    }
}

// ---- DER elements as the walk below needs them: identifier octet and content ----

struct Tlv<'a> {
    tag: u8,
    body: &'a [u8],
}

fn bad(what: &'static str) -> Error {
    Pkcs12Error::Malformed { what }.into()
}

/// Read one element from the front of `input` (asn1-rs reads its header and definite length);
/// returns it, with its identifier octet, and the rest.
fn tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8])> {
    let (rest, any) = Any::from_der(input).map_err(|e| match input.get(1) {
        Some(0x80) => bad("indefinite length (BER); re-encode the file as DER"),
        _ => Pkcs12Error::NotDer(e).into(),
    })?;
    let h = &any.header;
    let number = u8::try_from(h.tag().0)
        .ok()
        .filter(|n| *n < 0x1f)
        .ok_or_else(|| bad("multi-byte tag"))?;
    let tag = (h.class() as u8) << 6 | u8::from(h.is_constructed()) << 5 | number;
    Ok((
        Tlv {
            tag,
            body: any.data,
        },
        rest,
    ))
}

/// The TLV at the start of `input`, which must carry `tag` (else the error says `what`), and the rest.
fn tlv_tagged<'a>(input: &'a [u8], tag: u8, what: &'static str) -> Result<(Tlv<'a>, &'a [u8])> {
    let (t, rest) = tlv(input)?;
    if t.tag != tag {
        return Err(bad(what));
    }
    Ok((t, rest))
}

/// The elements of a constructed value.
/// The OCTET STRING inside the PFX's authSafe, ContentInfo { data, [0] EXPLICIT OCTET STRING
/// (AuthenticatedSafe) }: what the MAC covers and what holds the bags.
fn auth_safe_content<'a>(auth_safe: &Tlv<'a>) -> Result<Tlv<'a>> {
    let ci = items(auth_safe.body)?;
    let explicit = ci
        .get(1)
        .filter(|t| t.tag == 0xa0)
        .ok_or_else(|| bad("authSafe without content"))?;
    let (octets, _) = tlv_tagged(
        explicit.body,
        0x04,
        "authSafe content is not an OCTET STRING",
    )?;
    Ok(octets)
}

fn items(body: &[u8]) -> Result<Vec<Tlv<'_>>> {
    let mut out = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (t, r) = tlv(rest)?;
        out.push(t);
        rest = r;
    }
    Ok(out)
}

/// An OBJECT IDENTIFIER's content in dotted form.
fn oid_string(body: &[u8]) -> String {
    Oid::new(std::borrow::Cow::Borrowed(body)).to_id_string()
}

/// A DER INTEGER as u64; one too long to fit counts as u64::MAX (only counts are read).
fn uint(body: &[u8]) -> u64 {
    let first = body.iter().position(|b| *b != 0).unwrap_or(body.len());
    let digits = &body[first..];
    if digits.len() > 8 {
        return u64::MAX;
    }
    digits.iter().fold(0u64, |a, b| (a << 8) | u64::from(*b))
}

const OID_DATA: &str = "1.2.840.113549.1.7.1";
const OID_ENCRYPTED_DATA: &str = "1.2.840.113549.1.7.6";
const OID_SHROUDED_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.2";
const OID_KEY_BAG: &str = "1.2.840.113549.1.12.10.1.1";
const OID_PBES2: &str = "1.2.840.113549.1.5.13";
const OID_PBKDF2: &str = "1.2.840.113549.1.5.12";

fn digest_name(oid: &str) -> String {
    match oid {
        "1.3.14.3.2.26" => "SHA-1".into(),
        "2.16.840.1.101.3.4.2.1" => "SHA-256".into(),
        "2.16.840.1.101.3.4.2.2" => "SHA-384".into(),
        "2.16.840.1.101.3.4.2.3" => "SHA-512".into(),
        "1.2.840.113549.2.5" => "MD5".into(),
        "1.2.840.113549.2.7" => "SHA-1".into(), // hmacWithSHA1
        "1.2.840.113549.2.9" => "SHA-256".into(), // hmacWithSHA256
        "1.2.840.113549.2.10" => "SHA-384".into(),
        "1.2.840.113549.2.11" => "SHA-512".into(),
        other => other.to_string(),
    }
}

fn cipher_name(oid: &str) -> String {
    match oid {
        "2.16.840.1.101.3.4.1.2" => "AES-128-CBC".into(),
        "2.16.840.1.101.3.4.1.22" => "AES-192-CBC".into(),
        "2.16.840.1.101.3.4.1.42" => "AES-256-CBC".into(),
        "1.2.840.113549.3.7" => "DES-EDE3-CBC".into(),
        "1.2.840.113549.3.2" => "RC2-CBC".into(),
        other => other.to_string(),
    }
}

fn pkcs12_pbe_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "1.2.840.113549.1.12.1.1" => "pbeWithSHAAnd128BitRC4",
        "1.2.840.113549.1.12.1.2" => "pbeWithSHAAnd40BitRC4",
        "1.2.840.113549.1.12.1.3" => "pbeWithSHAAnd3-KeyTripleDES-CBC",
        "1.2.840.113549.1.12.1.4" => "pbeWithSHAAnd2-KeyTripleDES-CBC",
        "1.2.840.113549.1.12.1.5" => "pbeWithSHAAnd128BitRC2-CBC",
        "1.2.840.113549.1.12.1.6" => "pbeWithSHAAnd40BitRC2-CBC",
        _ => return None,
    })
}

/// Name an AlgorithmIdentifier used for password-based encryption.
fn protection(alg_id: &[u8]) -> Result<Protection> {
    let parts = items(alg_id)?;
    let oid = parts
        .first()
        .filter(|t| t.tag == 0x06)
        .map(|t| oid_string(t.body))
        .ok_or_else(|| bad("algorithm without OID"))?;
    if let Some(name) = pkcs12_pbe_name(&oid) {
        // params: SEQUENCE { salt OCTET STRING, iterations INTEGER }
        let iterations = parts
            .get(1)
            .and_then(|p| items(p.body).ok())
            .and_then(|v| v.get(1).filter(|t| t.tag == 0x02).map(|t| uint(t.body)));
        return Ok(Protection {
            algorithm: name.to_string(),
            iterations,
        });
    }
    if oid == OID_PBES2 {
        // params: SEQUENCE { keyDerivationFunc AlgId, encryptionScheme AlgId }
        let params = parts
            .get(1)
            .ok_or_else(|| bad("PBES2 without parameters"))?;
        let p = items(params.body)?;
        let (kdf, enc) = (
            p.first().ok_or_else(|| bad("PBES2 without KDF"))?,
            p.get(1).ok_or_else(|| bad("PBES2 without cipher"))?,
        );
        let kdf_parts = items(kdf.body)?;
        let kdf_oid = kdf_parts
            .first()
            .map(|t| oid_string(t.body))
            .unwrap_or_default();
        let enc_oid = items(enc.body)?
            .first()
            .map(|t| oid_string(t.body))
            .unwrap_or_default();
        let (kdf_name, iterations) = if kdf_oid == OID_PBKDF2 {
            // PBKDF2-params: SEQUENCE { salt, iterationCount, keyLength OPTIONAL, prf DEFAULT hmacWithSHA1 }
            let kp = kdf_parts
                .get(1)
                .map(|t| items(t.body))
                .transpose()?
                .unwrap_or_default();
            let iterations = kp.get(1).filter(|t| t.tag == 0x02).map(|t| uint(t.body));
            let prf = kp
                .iter()
                .skip(2)
                .find(|t| t.tag == 0x30)
                .and_then(|t| items(t.body).ok())
                .and_then(|v| v.first().map(|o| oid_string(o.body)))
                .map(|o| digest_name(&o))
                .unwrap_or_else(|| "SHA-1".into());
            (format!("PBKDF2-HMAC-{}", prf.replace('-', "")), iterations)
        } else {
            (kdf_oid, None)
        };
        return Ok(Protection {
            algorithm: format!("PBES2 ({kdf_name}, {})", cipher_name(&enc_oid)),
            iterations,
        });
    }
    Ok(Protection {
        algorithm: oid,
        iterations: None,
    })
}

/// Walk a PFX's ASN.1 and name its MAC and the encryption of its key and certificate bags.
/// Needs no password: the algorithm identifiers are stored in the clear.
pub fn decode(der: &[u8]) -> Result<PfxAlgorithms> {
    let (pfx, _) = tlv_tagged(der, 0x30, "PFX is not a SEQUENCE")?;
    let top = items(pfx.body)?;
    let auth_safe = top.get(1).ok_or_else(|| bad("no authSafe"))?;
    // MacData ::= SEQUENCE { mac DigestInfo, macSalt OCTET STRING, iterations INTEGER DEFAULT 1 }
    let (mut mac_digest, mut mac_iterations) = (None, None);
    if let Some(mac) = top.get(2) {
        let m = items(mac.body)?;
        if let Some(digest_info) = m.first() {
            let di = items(digest_info.body)?;
            if let Some(alg) = di.first() {
                mac_digest = items(alg.body)?
                    .first()
                    .map(|o| digest_name(&oid_string(o.body)));
            }
        }
        mac_iterations = Some(
            m.get(2)
                .filter(|t| t.tag == 0x02)
                .map(|t| uint(t.body))
                .unwrap_or(1),
        );
    }
    let octets = auth_safe_content(auth_safe)?;
    let (safe, _) = tlv_tagged(octets.body, 0x30, "AuthenticatedSafe is not a SEQUENCE")?;
    let mut key_bags = Vec::new();
    let mut cert_bags = Vec::new();
    for content in items(safe.body)? {
        let c = items(content.body)?;
        let oid = c.first().map(|t| oid_string(t.body)).unwrap_or_default();
        let inner = c
            .get(1)
            .filter(|t| t.tag == 0xa0)
            .ok_or_else(|| bad("ContentInfo without content"))?;
        if oid == OID_DATA {
            let (octets, _) = tlv_tagged(inner.body, 0x04, "data is not an OCTET STRING")?;
            let (bags, _) = tlv_tagged(octets.body, 0x30, "SafeContents is not a SEQUENCE")?;
            let mut has_cert = false;
            for bag in items(bags.body)? {
                let b = items(bag.body)?;
                let bag_oid = b.first().map(|t| oid_string(t.body)).unwrap_or_default();
                match bag_oid.as_str() {
                    OID_SHROUDED_KEY_BAG => {
                        let value = b.get(1).ok_or_else(|| bad("key bag without value"))?;
                        let (epki, _) =
                            tlv_tagged(value.body, 0x30, "shrouded key bag is not a SEQUENCE")?;
                        let e = items(epki.body)?;
                        let alg = e
                            .first()
                            .ok_or_else(|| bad("shrouded key without algorithm"))?;
                        key_bags.push(protection(alg.body)?);
                    }
                    OID_KEY_BAG => key_bags.push(Protection {
                        algorithm: "none (plain key bag)".into(),
                        iterations: None,
                    }),
                    _ => has_cert = true,
                }
            }
            if has_cert {
                cert_bags.push(Protection {
                    algorithm: "none".into(),
                    iterations: None,
                });
            }
        } else if oid == OID_ENCRYPTED_DATA {
            // EncryptedData ::= SEQUENCE { version, EncryptedContentInfo SEQUENCE { type, alg, [0] data } }
            let (ed, _) = tlv_tagged(inner.body, 0x30, "EncryptedData is not a SEQUENCE")?;
            let e = items(ed.body)?;
            let eci = e
                .get(1)
                .ok_or_else(|| bad("EncryptedData without content info"))?;
            let eci = items(eci.body)?;
            let alg = eci
                .get(1)
                .ok_or_else(|| bad("EncryptedContentInfo without algorithm"))?;
            cert_bags.push(protection(alg.body)?);
        } else {
            cert_bags.push(Protection {
                algorithm: format!("unsupported content type {oid}"),
                iterations: None,
            });
        }
    }
    Ok(PfxAlgorithms {
        mac_digest,
        mac_iterations,
        key_bags,
        cert_bags,
    })
}

/// Check a PFX's MAC with `password` ourselves (RFC 7292 appendix B key derivation, then
/// HMAC over the authenticated safe). Some(false) means the password is wrong; None means
/// the file has no MAC or uses a digest we do not check. This tells a wrong password apart
/// from an algorithm OpenSSL cannot decrypt (RC2), which OpenSSL reports the same way.
pub(crate) fn mac_matches(der: &[u8], password: &str) -> Result<Option<bool>> {
    use openssl::sign::Signer;
    let (pfx, _) = tlv_tagged(der, 0x30, "PFX is not a SEQUENCE")?;
    let top = items(pfx.body)?;
    let (Some(auth_safe), Some(mac)) = (top.get(1), top.get(2)) else {
        return Ok(None);
    };
    let octets = auth_safe_content(auth_safe)?;
    let m = items(mac.body)?;
    let di = items(m.first().ok_or_else(|| bad("MacData without digest"))?.body)?;
    let alg = items(
        di.first()
            .ok_or_else(|| bad("DigestInfo without algorithm"))?
            .body,
    )?;
    let digest_oid = alg.first().map(|o| oid_string(o.body)).unwrap_or_default();
    let expected = di
        .get(1)
        .filter(|t| t.tag == 0x04)
        .ok_or_else(|| bad("DigestInfo without digest"))?
        .body;
    let salt = m
        .get(1)
        .filter(|t| t.tag == 0x04)
        .ok_or_else(|| bad("MacData without salt"))?
        .body;
    let iterations = m
        .get(2)
        .filter(|t| t.tag == 0x02)
        .map(|t| uint(t.body))
        .unwrap_or(1);
    let md = match digest_oid.as_str() {
        "1.3.14.3.2.26" => MessageDigest::sha1(),
        "2.16.840.1.101.3.4.2.1" => MessageDigest::sha256(),
        "2.16.840.1.101.3.4.2.2" => MessageDigest::sha384(),
        "2.16.840.1.101.3.4.2.3" => MessageDigest::sha512(),
        _ => return Ok(None),
    };
    if iterations == 0 || iterations > MAX_ITERATIONS {
        return Err(bad("MAC iteration count out of range"));
    }
    let v = md.block_size();
    let u = md.size();
    // Password as a BMPString with a terminating NUL.
    let mut pw: Vec<u8> = password.encode_utf16().flat_map(u16::to_be_bytes).collect();
    pw.extend([0, 0]);
    let fill = |x: &[u8]| -> Vec<u8> {
        if x.is_empty() {
            return vec![];
        }
        let len = v * x.len().div_ceil(v);
        x.iter().copied().cycle().take(len).collect()
    };
    let mut input = vec![3u8; v]; // ID 3: MAC key
    input.extend(fill(salt));
    input.extend(fill(&pw));
    let mut a = openssl::hash::hash(md, &input)?.to_vec();
    for _ in 1..iterations {
        a = openssl::hash::hash(md, &a)?.to_vec();
    }
    let key = PKey::hmac(&a[..u])?;
    let mut signer = Signer::new(md, &key)?;
    signer.update(octets.body)?;
    let computed = signer.sign_to_vec()?;
    Ok(Some(
        computed.len() == expected.len() && openssl::memcmp::eq(&computed, expected),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"\x30\x80",
            b"\x30\x05\x02\x01\x03",
            b"hello world",
        ] {
            assert!(decode(bytes).is_err());
        }
    }
}
