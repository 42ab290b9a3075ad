//! What can go wrong in an export.

use crate::error::Remedy;
use crate::store;

/// What can go wrong in an export; each message says the fix in domain words.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading the entity or writing the files.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// Encoding the key or the PFX.
    #[error(transparent)]
    Pki(crate::pki::Error),
    /// A format, file-name style or PFX profile that is not one of the choices (the message
    /// lists them).
    #[error("{0}")]
    UnknownChoice(String),
    /// The entity's private key is in the workspace but cannot be read.
    #[error("{0}")]
    UnreadableKey(String),
    /// A file name the Node SDK tool's layout would give is not safe to write.
    #[error("{0}")]
    UnsafeFileName(String),
    /// The thumbprint slot asked for holds no certificate.
    #[error("{0}")]
    NoSlot(String),
    /// A PFX password with a NUL character, which PKCS#12's BMPString password cannot hold.
    #[error("the PFX password contains a NUL character; choose another password")]
    PasswordNul,
    /// A check of chainsmith's own output failed: a bug to report.
    #[error("{0}")]
    Internal(String),
    /// The PFX password does not open the file (its name in the message).
    #[error("the password for {0} is wrong (the PKCS#12 MAC does not verify); check the password")]
    WrongPassword(String),
    /// A PFX was asked for without a password.
    #[error("a PFX needs a password")]
    PasswordNeeded,
    /// A file that needs the private key, for an entity that has none here.
    #[error(
        "\"{name}\" has no private key in the workspace (trust-only import, or a CSR whose key stays on the device), so {what} cannot be written; export its certificates only (PEM)"
    )]
    NoKey {
        /// The entity.
        name: String,
        /// The file that needs the key.
        what: String,
    },
    /// Standard output takes a single format.
    #[error("writing to standard output takes exactly one format (pem, der, pfx or edge)")]
    OneFormat,
    /// The azure layout cannot go to standard output.
    #[error(
        "the azure layout is several files; write them into a directory, not to standard output"
    )]
    SeveralFiles,
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
            Error::WrongPassword(_) | Error::PasswordNeeded => Some(Remedy::Password),
            Error::NoKey { .. } => Some(Remedy::CertificatesOnly),
            Error::OneFormat => Some(Remedy::OneFormat),
            Error::SeveralFiles => Some(Remedy::OutDir),
            Error::UnknownChoice(_)
            | Error::UnreadableKey(_)
            | Error::UnsafeFileName(_)
            | Error::NoSlot(_)
            | Error::PasswordNul
            | Error::Internal(_) => None,
        }
    }
}

impl crate::error::Classified for Error {
    fn kind(&self) -> &'static str {
        Error::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        Error::remedy(self)
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::Pki(e.into())
    }
}

/// An export's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<crate::pki::Error> for Error {
    /// A wrong PFX password keeps its own kind (`wrong-password`) whichever module found it.
    fn from(e: crate::pki::Error) -> Self {
        match e {
            crate::pki::Error::WrongPassword { file } => Error::WrongPassword(file),
            other => Error::Pki(other),
        }
    }
}
