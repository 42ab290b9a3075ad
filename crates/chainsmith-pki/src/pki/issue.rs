//! Certificate profiles (DOMAIN.md "Certificate profiles that work everywhere") and issuing.

use super::keys::{KeyAlg, key_alg_of, key_pem, load_key_pem};
use super::{
    CannotSignError, Error, IssuerError, PathlenError, Result, SanError, TimeError, UnknownChoice,
};
use ::time::{Duration, OffsetDateTime};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, PublicKeyData, SanType, SerialNumber,
};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use x509_parser::prelude::*;

/// How far notBefore is put in the past, to absorb clock skew between a laptop and a device.
pub(crate) const BACKDATE: Duration = Duration::minutes(5);

/// Which extended key usages a device certificate carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eku {
    /// TLS client authentication: what a device connecting to a hub needs.
    #[default]
    Client,
    /// Client and server authentication: the profile of seed 000's CSR flow.
    ClientServer,
    /// Server authentication only: the local hub's own TLS certificate.
    Server,
}

impl Eku {
    /// The name the CLI and spec files use.
    pub fn as_str(self) -> &'static str {
        match self {
            Eku::Client => "client",
            Eku::ClientServer => "client,server",
            Eku::Server => "server",
        }
    }
    fn purposes(self) -> Vec<ExtendedKeyUsagePurpose> {
        match self {
            Eku::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
            Eku::ClientServer => {
                vec![
                    ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsagePurpose::ServerAuth,
                ]
            }
            Eku::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        }
    }
}

impl FromStr for Eku {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let mut parts: Vec<String> = s
            .split(',')
            .map(|p| p.trim().to_ascii_lowercase())
            .filter(|p| !p.is_empty())
            .collect();
        parts.sort();
        parts.dedup();
        let parts: Vec<&str> = parts.iter().map(|s| s.as_str()).collect();
        match parts.as_slice() {
            ["client"] | ["clientauth"] => Ok(Eku::Client),
            ["client", "server"] | ["clientauth", "serverauth"] => Ok(Eku::ClientServer),
            ["server"] | ["serverauth"] => Ok(Eku::Server),
            _ => Err(UnknownChoice::Eku {
                given: s.to_string(),
            }
            .into()),
        }
    }
}

/// A subject alternative name a user asked for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(std::net::IpAddr),
    /// A URI.
    Uri(String),
    /// An e-mail address.
    Email(String),
}

impl San {
    /// Parse `DNS:x`, `IP:1.2.3.4`, `URI:...`, `email:...`; a bare value is a DNS name.
    pub fn parse(s: &str) -> Result<San> {
        let s = s.trim();
        let (kind, value) = s.split_once(':').unwrap_or(("DNS", s));
        let value = value.trim();
        if value.is_empty() {
            return Err(SanError::NoValue {
                given: s.to_string(),
            }
            .into());
        }
        match kind.to_ascii_uppercase().as_str() {
            "DNS" => Ok(San::Dns(value.to_string())),
            "IP" => value.parse().map(San::Ip).map_err(|_| {
                SanError::NotAnIp {
                    given: s.to_string(),
                    value: value.to_string(),
                }
                .into()
            }),
            "URI" => Ok(San::Uri(value.to_string())),
            "EMAIL" => Ok(San::Email(value.to_string())),
            other => Err(UnknownChoice::SanType {
                given: other.to_string(),
            }
            .into()),
        }
    }

    fn to_rcgen(&self) -> Result<SanType> {
        Ok(match self {
            San::Dns(d) => SanType::DnsName(d.clone().try_into()?),
            San::Ip(ip) => SanType::IpAddress(*ip),
            San::Uri(u) => SanType::URI(u.clone().try_into()?),
            San::Email(e) => SanType::Rfc822Name(e.clone().try_into()?),
        })
    }
}

/// What kind of certificate to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Self-signed CA; `pathlen` None means unconstrained (the default: roots with pathlen 0
    /// block deeper chains, a trap users hit with other tools).
    Root {
        /// The path length constraint.
        pathlen: Option<u8>,
    },
    /// A CA under another CA; pathlen = how many CA levels may follow below it.
    Intermediate {
        /// The path length constraint.
        pathlen: Option<u8>,
    },
    /// A device leaf: CA:FALSE, digitalSignature + keyEncipherment, EKU clientAuth.
    Device {
        /// Client, or client and server authentication.
        eku: Eku,
        /// Subject alternative names.
        sans: Vec<San>,
    },
    /// The proof-of-possession certificate: an ordinary short-lived leaf with CN = code.
    Verification,
    /// A TLS server leaf (the local hub's own certificate).
    Server {
        /// Subject alternative names.
        sans: Vec<San>,
    },
}

impl Profile {
    /// Whether the profile makes a CA.
    pub fn is_ca(&self) -> bool {
        matches!(self, Profile::Root { .. } | Profile::Intermediate { .. })
    }
}

/// The validity window of a new certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    /// Start.
    pub not_before: OffsetDateTime,
    /// End.
    pub not_after: OffsetDateTime,
}

/// The earliest time chainsmith writes into a certificate or CRL: RFC 5280 encodes 1950–2049 as
/// UTCTime, and earlier dates only confuse verifiers.
pub const EARLIEST: OffsetDateTime = ::time::macros::datetime!(1950-01-01 00:00:00 UTC);
/// The latest time X.509 can express: RFC 5280's GeneralizedTime 99991231235959Z (from 2050 on).
pub const LATEST: OffsetDateTime = ::time::macros::datetime!(9999-12-31 23:59:59 UTC);

/// Refuse a time X.509 cannot carry, naming the limit.
pub(crate) fn check_x509_time(what: &'static str, t: OffsetDateTime) -> Result<()> {
    if t < EARLIEST {
        return Err(TimeError::BeforeEarliest { what, at: t }.into());
    }
    if t > LATEST {
        return Err(TimeError::AfterLatest { what, at: t }.into());
    }
    Ok(())
}

/// `start` plus `days` days, refused (never a panic) when it would pass 9999-12-31T23:59:59Z.
pub fn days_after(what: &'static str, start: OffsetDateTime, days: u32) -> Result<OffsetDateTime> {
    let end = start
        .checked_add(Duration::days(i64::from(days)))
        .filter(|t| *t <= LATEST);
    end.ok_or_else(|| {
        TimeError::TooManyDays {
            what,
            start: start.replace_nanosecond(0).unwrap_or(start),
            days,
            most: (LATEST - start).whole_days().max(0),
        }
        .into()
    })
}

impl Validity {
    /// From a few minutes ago by the system clock (clock skew) for `days` days, stopping at
    /// the X.509 limit. Only for certificates that peers judge by their own real clocks (the
    /// hub's TLS CA and server certificate) and for tests: whatever a workspace makes starts
    /// from the workspace's "now" through [`Validity::days_from`] or
    /// [`Validity::try_days_from`].
    pub fn days(days: u32) -> Validity {
        Validity::days_from(crate::clock::Clock::System.now(), days)
    }

    /// From a few minutes before `now` (clock skew) for `days` days, stopping at the X.509
    /// limit instead of failing (fixed windows in code; a user's number goes through
    /// [`Validity::try_days_from`]).
    pub fn days_from(now: OffsetDateTime, days: u32) -> Validity {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Validity::try_days_from(now, days).unwrap_or(Validity {
            not_before: now - BACKDATE,
            not_after: LATEST,
        })
    }

    /// From a few minutes before `now` for `days` days, refusing a window that ends past
    /// 9999-12-31T23:59:59Z.
    pub(crate) fn try_days_from(now: OffsetDateTime, days: u32) -> Result<Validity> {
        let now = now.replace_nanosecond(0).unwrap_or(now);
        Ok(Validity {
            not_before: now - BACKDATE,
            not_after: days_after("a certificate", now, days)?,
        })
    }

    /// An explicit window; `not_after` before `not_before` is refused, and so is a time outside
    /// what X.509 can carry (1950 to 9999-12-31T23:59:59Z). Windows entirely in the past or
    /// future are allowed on purpose: they make expired and not-yet-valid fixtures.
    pub fn explicit(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Result<Validity> {
        let v = Validity {
            not_before,
            not_after,
        };
        v.check()?;
        Ok(v)
    }

    /// The window is ordered and within the X.509 time limits.
    pub fn check(&self) -> Result<()> {
        check_x509_time("not-before", self.not_before)?;
        check_x509_time("not-after", self.not_after)?;
        if self.not_after <= self.not_before {
            return Err(TimeError::Reversed {
                not_before: self.not_before,
                not_after: self.not_after,
            }
            .into());
        }
        Ok(())
    }

    /// Default validity of each profile, long enough that test PKIs don't die overnight.
    pub fn default_days(profile: &Profile) -> u32 {
        match profile {
            Profile::Root { .. } => 3650,
            Profile::Intermediate { .. } => 1825,
            Profile::Device { .. } => 365,
            Profile::Verification => 30,
            Profile::Server { .. } => 825,
        }
    }
}

/// A time as RFC 3339 text.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Parse an RFC 3339 timestamp from the command line.
pub(crate) fn parse_rfc3339(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s.trim(), &::time::format_description::well_known::Rfc3339).map_err(
        |source| {
            TimeError::NotRfc3339 {
                given: s.to_string(),
                source,
            }
            .into()
        },
    )
}

/// Everything needed to make one certificate.
#[derive(Clone, Debug)]
pub struct IssueSpec {
    /// The subject.
    pub subject: DistinguishedName,
    /// Its profile.
    pub profile: Profile,
    /// Its validity window.
    pub validity: Validity,
}

/// A CA that can sign: its certificate, key and the facts issuing checks against.
pub struct CaHandle {
    /// The entity name.
    pub name: String,
    /// Its certificate, DER.
    pub cert_der: Vec<u8>,
    /// Its CN.
    pub cn: String,
    /// None = unconstrained.
    pub pathlen: Option<u32>,
    /// End of its validity.
    pub not_after: OffsetDateTime,
    /// Its key's algorithm.
    pub key_alg: Option<KeyAlg>,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CaHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaHandle")
            .field("name", &self.name)
            .field("cn", &self.cn)
            .finish()
    }
}

impl CaHandle {
    /// Build from a CA certificate (DER) and its private key (PEM). Refuses certificates
    /// that are not CAs and keys that do not belong to the certificate.
    pub fn new(name: &str, cert_der: Vec<u8>, key_pem: &str) -> Result<CaHandle> {
        let key = load_key_pem(key_pem)?;
        let (_, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|e| Error::parse(format!("certificate of \"{name}\""), e))?;
        let bc = cert
            .basic_constraints()
            .ok()
            .flatten()
            .map(|b| b.value.clone());
        let Some(bc) = bc.filter(|b| b.ca) else {
            return Err(IssuerError::NotACa {
                name: name.to_string(),
            }
            .into());
        };
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(CannotSignError::KeyMismatch {
                name: name.to_string(),
            }
            .into());
        }
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("")
            .to_string();
        let not_after = cert.validity().not_after.to_datetime();
        let key_alg = key_alg_of(&key);
        let issuer = Issuer::from_ca_cert_der(&cert_der.clone().into(), key)?;
        drop(cert);
        Ok(CaHandle {
            name: name.to_string(),
            cert_der,
            cn,
            pathlen: bc.path_len_constraint,
            not_after,
            key_alg,
            issuer,
        })
    }

    /// Can this CA sign a CA with the given pathlen (None = unconstrained)?
    pub(crate) fn check_child_ca(&self, child_name: &str, child_pathlen: Option<u8>) -> Result<()> {
        match self.pathlen {
            Some(0) => Err(PathlenError::Zero {
                ca: self.name.clone(),
                child: child_name.to_string(),
            }
            .into()),
            Some(p) => match child_pathlen {
                Some(c) if u32::from(c) < p => Ok(()),
                _ => Err(PathlenError::TooLong {
                    ca: self.name.clone(),
                    pathlen: p,
                    child: child_name.to_string(),
                    max: p - 1,
                }
                .into()),
            },
            None => Ok(()),
        }
    }

    /// The pathlen a new intermediate gets when none is asked for: one less than the parent's,
    /// and 0 (the last CA level) under an unconstrained parent.
    pub(crate) fn default_child_pathlen(&self) -> u8 {
        match self.pathlen {
            Some(p) if p > 0 => u8::try_from(p - 1).unwrap_or(u8::MAX),
            _ => 0,
        }
    }

    /// Sign a CRL, for the lifecycle commands.
    pub fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }
}

/// A freshly made certificate.
pub struct Issued {
    /// The certificate, DER.
    pub cert_der: Vec<u8>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// PKCS#8 PEM; None when the key belongs to someone else (a signed CSR).
    pub key_pem: Option<String>,
    /// The key's algorithm.
    pub key_alg: Option<KeyAlg>,
    /// The serial, upper-case hex.
    pub serial_hex: String,
}

/// 16 random bytes, positive and with a non-zero first byte, so every serial is encoded in
/// exactly 16 bytes (DOMAIN.md: at least 64 bits of randomness).
pub(crate) fn random_serial() -> SerialNumber {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    b[0] = (b[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&b)
}

fn params_for(spec: &IssueSpec) -> Result<CertificateParams> {
    spec.validity.check()?;
    let mut p = CertificateParams::default();
    p.distinguished_name = spec.subject.clone();
    p.not_before = spec.validity.not_before;
    p.not_after = spec.validity.not_after;
    p.serial_number = Some(random_serial());
    p.use_authority_key_identifier_extension = true;
    match &spec.profile {
        Profile::Root { pathlen } | Profile::Intermediate { pathlen } => {
            p.is_ca = IsCa::Ca(match pathlen {
                Some(n) => BasicConstraints::Constrained(*n),
                None => BasicConstraints::Unconstrained,
            });
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
            // A self-signed root's AKI would only repeat its SKI.
            p.use_authority_key_identifier_extension =
                matches!(spec.profile, Profile::Intermediate { .. });
        }
        Profile::Device { eku, sans } => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = eku.purposes();
            p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        }
        Profile::Verification => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        Profile::Server { sans } => {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            p.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_>>()?;
        }
    }
    Ok(p)
}

fn finish(
    der: Vec<u8>,
    params: &CertificateParams,
    key_pem: Option<String>,
    key_alg: Option<KeyAlg>,
) -> Issued {
    let serial = params
        .serial_number
        .as_ref()
        .expect("params_for sets a serial");
    let serial_hex = hex::encode_upper(serial.to_bytes());
    let cert_pem = ::pem::encode(&::pem::Pem::new("CERTIFICATE", der.clone()));
    Issued {
        cert_der: der,
        cert_pem,
        key_pem,
        key_alg,
        serial_hex,
    }
}

/// Make a certificate with a fresh key of `alg`: self-signed when `issuer` is None.
pub fn issue(spec: &IssueSpec, alg: KeyAlg, issuer: Option<&CaHandle>) -> Result<Issued> {
    let key = alg.generate()?;
    issue_with_key(spec, &key, issuer)
}

/// Make a certificate for an existing key pair (renew without rekey, self-signed devices).
pub fn issue_with_key(
    spec: &IssueSpec,
    key: &KeyPair,
    issuer: Option<&CaHandle>,
) -> Result<Issued> {
    let params = params_for(spec)?;
    let cert = match issuer {
        Some(ca) => {
            check_issuer_allows(spec, ca)?;
            params.signed_by(key, &ca.issuer)?
        }
        None => params.self_signed(key)?,
    };
    Ok(finish(
        cert.der().to_vec(),
        &params,
        Some(key_pem(key)),
        key_alg_of(key),
    ))
}

/// Make a certificate for someone else's public key (a CSR, a deliberately weak key).
pub fn issue_for_public_key(
    spec: &IssueSpec,
    spki_der: &[u8],
    issuer: &CaHandle,
) -> Result<Issued> {
    let params = params_for(spec)?;
    check_issuer_allows(spec, issuer)?;
    let public = rcgen::SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| {
        Error::parse(
            "public key",
            format!("unsupported or malformed public key ({e})"),
        )
    })?;
    let cert = params.signed_by(&public, &issuer.issuer)?;
    Ok(finish(
        cert.der().to_vec(),
        &params,
        None,
        KeyAlg::from_spki(spki_der),
    ))
}

fn check_issuer_allows(spec: &IssueSpec, ca: &CaHandle) -> Result<()> {
    if let Profile::Intermediate { pathlen } = &spec.profile {
        let cn = super::subject::cn_of(&spec.subject).unwrap_or_default();
        ca.check_child_ca(&cn, *pathlen)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::subject::cn_only;

    fn spec(cn: &str, profile: Profile) -> IssueSpec {
        let validity = Validity::days(Validity::default_days(&profile));
        IssueSpec {
            subject: cn_only(cn).unwrap(),
            profile,
            validity,
        }
    }

    #[test]
    fn serials_are_16_positive_bytes() {
        for _ in 0..100 {
            let s = random_serial().to_bytes();
            assert_eq!(s.len(), 16);
            assert!(s[0] & 0x80 == 0 && s[0] != 0);
        }
    }

    #[test]
    fn chain_and_pathlen() {
        let root = issue(
            &spec("Root", Profile::Root { pathlen: Some(1) }),
            KeyAlg::EcP256,
            None,
        )
        .unwrap();
        let root_ca = CaHandle::new(
            "root",
            root.cert_der.clone(),
            root.key_pem.as_deref().unwrap(),
        )
        .unwrap();
        assert_eq!(root_ca.default_child_pathlen(), 0);
        let inter = issue(
            &spec("Inter", Profile::Intermediate { pathlen: Some(0) }),
            KeyAlg::EcP384,
            Some(&root_ca),
        )
        .unwrap();
        let inter_ca = CaHandle::new(
            "inter",
            inter.cert_der.clone(),
            inter.key_pem.as_deref().unwrap(),
        )
        .unwrap();
        let err = issue(
            &spec("Deeper", Profile::Intermediate { pathlen: Some(0) }),
            KeyAlg::EcP256,
            Some(&inter_ca),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(err.contains("pathlen 0") && err.contains("inter"), "{err}");
        let dev = issue(
            &spec(
                "dev1",
                Profile::Device {
                    eku: Eku::Client,
                    sans: vec![],
                },
            ),
            KeyAlg::EcP256,
            Some(&inter_ca),
        )
        .unwrap();
        assert_eq!(dev.serial_hex.len(), 32);
        let refusal = |name: &str, cert: &Issued, key: &Issued| {
            CaHandle::new(name, cert.cert_der.clone(), key.key_pem.as_deref().unwrap())
                .unwrap_err()
                .to_string()
        };
        let err = refusal("dev1", &dev, &dev);
        assert!(err.contains("not a CA"), "{err}");
        let err = refusal("inter", &inter, &root);
        assert!(err.contains("does not match"), "{err}");
    }

    #[test]
    fn eku_parsing() {
        assert_eq!("client".parse::<Eku>().unwrap(), Eku::Client);
        assert_eq!("server, client".parse::<Eku>().unwrap(), Eku::ClientServer);
        assert!("codesign".parse::<Eku>().is_err());
    }
}
