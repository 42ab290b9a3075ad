//! What can go wrong after a certificate is made, typed in the rustls style: each variant
//! carries the facts and its `#[error]` says the sentence in domain words; [`Error::remedy`]
//! gives the fix to the faces as a value.

use super::CloudError;
use crate::error::Remedy;
use crate::pki::HUB_DOES_NOT_CHECK_CRLS;
use crate::pki::issue::rfc3339;
use crate::store::{self, Slot};
use time::OffsetDateTime;

/// What can go wrong after a certificate is made; each message says the fix in domain words,
/// and [`Error::remedy`] gives it to the faces as a value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the workspace.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Making or checking a certificate.
    #[error(transparent)]
    Pki(crate::pki::Error),
    /// Input to import that is not one certificate with at most its one key: empty, damaged,
    /// a CSR, a key alone, several keys, or not a certificate at all.
    #[error(transparent)]
    ImportInput(#[from] ImportInputError),
    /// A private key given with a certificate it was not made with.
    #[error(
        "the private key in {key_file} does not belong to the certificate {certificate} (from {certificate_file}); give the key that was made with this certificate"
    )]
    KeyMismatch {
        /// The file the key came from.
        key_file: String,
        /// The certificate's subject.
        certificate: String,
        /// The file the certificate came from.
        certificate_file: String,
    },
    /// A certificate chainsmith cannot re-sign: trust-only and self-signed, no issuer, or a
    /// public key it cannot read.
    #[error(transparent)]
    CannotRenew(#[from] CannotRenewError),
    /// Only a CA certificate goes to the hub; this entity is not one.
    #[error("\"{name}\" is a {kind}, not a CA: only a CA certificate is uploaded to the hub")]
    NotACa {
        /// The entity.
        name: String,
        /// Its kind ("device", ...).
        kind: &'static str,
    },
    /// A revocation reason that is not one of RFC 5280's.
    #[error("revocation reason \"{given}\" is not one of RFC 5280's: {}", .choices.join(", "))]
    RevocationReason {
        /// The reason given.
        given: String,
        /// RFC 5280's reason names.
        choices: &'static [&'static str],
    },
    /// The certificate was revoked before.
    #[error(
        "\"{name}\" was already revoked on {} ({reason}); {}",
        rfc3339(*.at),
        HUB_DOES_NOT_CHECK_CRLS
    )]
    AlreadyRevoked {
        /// The entity.
        name: String,
        /// When it was revoked.
        at: OffsetDateTime,
        /// The RFC 5280 reason it was revoked for.
        reason: String,
    },
    /// A revoked certificate's serial in the workspace's metadata that is not hex.
    #[error("serial \"{serial}\" of \"{name}\" in meta.toml is not hex")]
    Metadata {
        /// The serial as recorded.
        serial: String,
        /// The entity it was recorded for.
        name: String,
    },
    /// An expiry window that does not parse or reaches past X.509's last time.
    #[error(transparent)]
    ExpiryWindow(#[from] ExpiryWindowError),
    /// The local cloud (hub or DPS) could not do its part.
    #[error("{0}")]
    Cloud(CloudError),
    /// A password is missing for an encrypted key or a PKCS#12 file.
    #[error(transparent)]
    Password(#[from] PasswordNeeded),
    /// The password does not open the file.
    #[error(
        "the password for {file} is wrong (the PKCS#12 MAC does not verify); check the password"
    )]
    WrongPassword {
        /// The file, as the user named it.
        file: String,
    },
    /// The thumbprint slot asked for is taken.
    #[error(
        "the {} slot of \"{id}\" is taken; replace it to roll it (the {} slot keeps working meanwhile)",
        .slot.dir_name(),
        .slot.other().dir_name()
    )]
    SlotTaken {
        /// The device.
        id: String,
        /// The slot asked for.
        slot: Slot,
    },
    /// The issuer of a certificate to renew is not in the workspace.
    #[error(
        "\"{name}\" was issued by a CA that is not in this workspace ({issuer}); renew it there, or import that CA with its key first"
    )]
    ForeignIssuer {
        /// The entity to renew.
        name: String,
        /// Its issuer's distinguished name.
        issuer: String,
    },
    #[error(
        "the key of \"{name}\" is compromised (certificate serial {serial} was revoked for keyCompromise on {at}){}",
        if *.on_device {
            ", and it lives on the device: have the device make a new key and CSR, and sign that"
        } else {
            "; a renewal with the same key would be compromised too: renew with a new key"
        }
    )]
    /// Renewing with a key that was revoked for keyCompromise.
    Compromised {
        /// The entity.
        name: String,
        /// The serial of the certificate revoked for the compromise.
        serial: String,
        /// When it was revoked (RFC 3339).
        at: String,
        /// The key was never here (a signed CSR).
        on_device: bool,
    },
    /// A CRL asked to be valid for zero days.
    #[error("a CRL must be valid for at least 1 day (its nextUpdate)")]
    CrlDays,
}

/// Input to import that is not one certificate with at most its one key.
#[derive(Debug, thiserror::Error)]
pub enum ImportInputError {
    /// No file at all.
    #[error("no file given; pass the certificate and key files (PEM, DER) or a PKCS#12 file")]
    NoFile,
    /// An empty file.
    #[error("{file} is empty; give a PEM or DER certificate, a private key or a PKCS#12 file")]
    Empty {
        /// The file.
        file: String,
    },
    /// PEM text that does not parse.
    #[error("{file}: the PEM text is damaged ({source})")]
    DamagedPem {
        /// The file.
        file: String,
        /// The PEM parser's refusal.
        source: pem::PemError,
    },
    /// PEM text without a complete block.
    #[error("{file}: the PEM text is damaged (no complete BEGIN/END block)")]
    NoPemBlock {
        /// The file.
        file: String,
    },
    /// A CERTIFICATE block that is not X.509.
    #[error("{file}: a CERTIFICATE block is not a valid X.509 certificate")]
    NotX509 {
        /// The file.
        file: String,
    },
    /// A certificate request where a certificate was expected.
    #[error("{file} holds a certificate request, not a certificate; sign it with a CA instead")]
    Csr {
        /// The file.
        file: String,
    },
    /// A PEM block of a kind import does not take.
    #[error(
        "{file} holds a \"{label}\" PEM block; import takes certificates, private keys and PKCS#12 files"
    )]
    UnknownBlock {
        /// The file.
        file: String,
        /// The block's label (`-----BEGIN label-----`).
        label: String,
    },
    /// Bytes that are nothing import reads.
    #[error(
        "{file} is not a certificate, private key or PKCS#12 file (neither PEM nor DER); nothing was imported"
    )]
    Unrecognised {
        /// The file.
        file: String,
    },
    /// An unencrypted private key OpenSSL cannot read.
    #[error("{file}: the private key cannot be read ({source})")]
    UnreadableKey {
        /// The file.
        file: String,
        /// OpenSSL's refusal.
        source: openssl::error::ErrorStack,
    },
    /// More than one private key.
    #[error(
        "{} private keys were given ({}); import one certificate with its one key at a time",
        .files.len(),
        .files.join(", ")
    )]
    SeveralKeys {
        /// The file of each key.
        files: Vec<String>,
    },
    /// Keys but no certificate.
    #[error(
        "no certificate in the input: a key alone cannot be imported; add the certificate file"
    )]
    NoCertificate,
}

/// A certificate chainsmith cannot re-sign.
#[derive(Debug, thiserror::Error)]
pub enum CannotRenewError {
    /// Self-signed without its key.
    #[error(
        "\"{name}\" is self-signed and trust-only (no private key here), so chainsmith cannot re-sign it; import it with its key"
    )]
    SelfSignedTrustOnly {
        /// The entity.
        name: String,
    },
    /// A signed CSR without an issuer to sign it again.
    #[error("\"{name}\" has no issuer to renew it")]
    NoIssuer {
        /// The entity.
        name: String,
    },
    /// A certificate whose public key does not parse.
    #[error("the certificate's public key cannot be read")]
    UnreadablePublicKey,
}

/// An expiry window that does not parse or reaches past X.509's last time.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryWindowError {
    /// No number first.
    #[error("expiry window \"{given}\" is not a number with a unit; write it like 30d, 12h or 2w")]
    NotANumber {
        /// The window as given.
        given: String,
    },
    /// A unit that is not one of d, h, w, m, y.
    #[error(
        "expiry window \"{given}\" has an unknown unit \"{unit}\"; use d, h, w or y (e.g. 30d)"
    )]
    UnknownUnit {
        /// The window as given.
        given: String,
        /// The unit.
        unit: String,
    },
    /// Longer than [`super::MAX_WINDOW_DAYS`].
    #[error(
        "expiry window \"{given}\" is longer than {max_days} days, beyond 9999-12-31T23:59:59Z, the latest time X.509 can express; use a shorter window"
    )]
    TooLong {
        /// The window as given.
        given: String,
        /// The longest window.
        max_days: i64,
    },
    /// A window from now that ends past 9999-12-31T23:59:59Z.
    #[error(
        "an expiry window of {days} days from now reaches past 9999-12-31T23:59:59Z, the latest time X.509 can express; every certificate expires before that, so use at most {most} days"
    )]
    PastLatest {
        /// The window's length in days.
        days: i64,
        /// The most days from now that X.509 can express.
        most: i64,
    },
}

/// A password that is missing for an encrypted key or a PKCS#12 file.
#[derive(Debug, thiserror::Error)]
pub enum PasswordNeeded {
    /// A PKCS#12 file.
    #[error("{file} is a PKCS#12 (PFX) file and needs its password")]
    Pkcs12 {
        /// The file.
        file: String,
    },
    /// An encrypted PEM private key.
    #[error("the private key in {file} is encrypted; give its password")]
    EncryptedKey {
        /// The file.
        file: String,
    },
}

/// A lifecycle result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::pki::Error> for Error {
    /// A wrong PFX password keeps its own kind (`wrong-password`) whichever module found it.
    fn from(e: crate::pki::Error) -> Self {
        match e {
            crate::pki::Error::WrongPassword { file } => Error::WrongPassword { file },
            other => Error::Pki(other),
        }
    }
}

crate::pki::classified_by_inherent_methods!(Error);

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Pki(e.into())
    }
}

impl Error {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Store(s) => s.kind(),
            Error::Pki(p) => p.kind(),
            Error::WrongPassword { .. } => "wrong-password",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Store(s) => s.remedy(),
            Error::Pki(p) => p.remedy(),
            Error::Password(_) | Error::WrongPassword { .. } => Some(Remedy::Password),
            Error::SlotTaken { .. } => Some(Remedy::Replace),
            Error::ForeignIssuer { .. } => Some(Remedy::ImportIssuer),
            Error::Compromised {
                on_device: false, ..
            } => Some(Remedy::Rekey),
            Error::Compromised {
                on_device: true, ..
            } => Some(Remedy::SignCsr),
            Error::CrlDays => Some(Remedy::CrlDays),
            Error::ImportInput(_)
            | Error::KeyMismatch { .. }
            | Error::CannotRenew(_)
            | Error::NotACa { .. }
            | Error::RevocationReason { .. }
            | Error::AlreadyRevoked { .. }
            | Error::Metadata { .. }
            | Error::ExpiryWindow(_)
            | Error::Cloud(_) => None,
        }
    }
}
