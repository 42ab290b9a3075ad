//! Import, renew, self-signed slots, revoke, CRL and expiry: what happens to certificates
//! after they are made. The CLI's `import`, `renew`, `revoke`, `crl`, `list --expiring` and
//! `show --history` call these; so can the TUI.
//!
//! On disk, an entity keeps its past in its own directory:
//! ```text
//! entities/NAME/history/SERIAL/{cert.pem, meta.toml[, key.pem]}   every replaced certificate
//! entities/NAME/secondary/{cert.pem, key.pem, meta.toml}          the other thumbprint slot
//! ```
//! (`primary/` instead when the entity was made as the secondary slot first.)

mod cloud;
mod expiry;
mod history;
mod import;
mod renew;
mod revoke;
mod slots;

pub use cloud::*;
pub use expiry::*;
pub use history::*;
pub use import::*;
pub use renew::*;
pub use revoke::*;
pub use slots::*;

use crate::error::Remedy;
use crate::store::{self, Slot};

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
    #[error("{0}")]
    ImportInput(String),
    /// A private key given with a certificate it was not made with.
    #[error("{0}")]
    KeyMismatch(String),
    /// A certificate chainsmith cannot re-sign: trust-only and self-signed, no issuer, or a
    /// public key it cannot read.
    #[error("{0}")]
    CannotRenew(String),
    /// Only a CA certificate goes to the hub; this entity is not one.
    #[error("{0}")]
    NotACa(String),
    /// A revocation reason that is not one of RFC 5280's.
    #[error("{0}")]
    RevocationReason(String),
    /// The certificate was revoked before.
    #[error("{0}")]
    AlreadyRevoked(String),
    /// A record in the workspace's metadata that does not read (a serial that is not hex).
    #[error("{0}")]
    Metadata(String),
    /// An expiry window that does not parse or reaches past X.509's last time.
    #[error("{0}")]
    ExpiryWindow(String),
    /// The local cloud (hub or DPS) could not do its part.
    #[error("{0}")]
    Cloud(CloudError),
    /// A password is missing for an encrypted key or a PKCS#12 file.
    #[error("{0}")]
    Password(String),
    /// The password does not open the file (its name in the message).
    #[error("the password for {0} is wrong (the PKCS#12 MAC does not verify); check the password")]
    WrongPassword(String),
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
    #[error("{0}")]
    ForeignIssuer(String),
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

/// A lifecycle result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub use super::NextStep;

impl From<crate::pki::Error> for Error {
    /// A wrong PFX password keeps its own kind (`wrong-password`) whichever module found it.
    fn from(e: crate::pki::Error) -> Self {
        match e {
            crate::pki::Error::WrongPassword { file } => Error::WrongPassword(file),
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
            Error::WrongPassword(_) => "wrong-password",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Store(s) => s.remedy(),
            Error::Pki(p) => p.remedy(),
            Error::Password(_) | Error::WrongPassword(_) => Some(Remedy::Password),
            Error::SlotTaken { .. } => Some(Remedy::Replace),
            Error::ForeignIssuer(_) => Some(Remedy::ImportIssuer),
            Error::Compromised {
                on_device: false, ..
            } => Some(Remedy::Rekey),
            Error::Compromised {
                on_device: true, ..
            } => Some(Remedy::SignCsr),
            Error::CrlDays => Some(Remedy::CrlDays),
            Error::ImportInput(_)
            | Error::KeyMismatch(_)
            | Error::CannotRenew(_)
            | Error::NotACa(_)
            | Error::RevocationReason(_)
            | Error::AlreadyRevoked(_)
            | Error::Metadata(_)
            | Error::ExpiryWindow(_)
            | Error::Cloud(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Duration;

    #[test]
    fn windows_and_reasons() {
        assert_eq!(parse_window("30d").unwrap(), Duration::days(30));
        assert_eq!(parse_window("2w").unwrap(), Duration::days(14));
        assert_eq!(parse_window("12").unwrap(), Duration::days(12));
        assert!(parse_window("soon").is_err());
        assert!(parse_window("3x").unwrap_err().to_string().contains("unit"));
        assert_eq!(parse_reason("key-compromise").unwrap(), "keyCompromise");
        assert_eq!(parse_reason("Superseded").unwrap(), "superseded");
        assert!(
            parse_reason("bored")
                .unwrap_err()
                .to_string()
                .contains("keyCompromise")
        );
    }
}
