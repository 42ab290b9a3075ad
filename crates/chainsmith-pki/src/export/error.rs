//! What can go wrong in an export.

use crate::error::Remedy;
use crate::store;
use std::path::PathBuf;

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
    #[error(transparent)]
    UnknownChoice(#[from] UnknownChoice),
    /// The entity's private key is in the workspace but cannot be read.
    #[error(
        "the key of \"{name}\" in {} cannot be read ({source}); restore it or re-import the entity",
        .path.display()
    )]
    UnreadableKey {
        /// The entity.
        name: String,
        /// Its key file.
        path: PathBuf,
        /// OpenSSL's refusal.
        source: openssl::error::ErrorStack,
    },
    /// A file name the Node SDK tool's layout would give is not safe to write.
    #[error(
        "the Node SDK tool's file name for \"{name}\" would be \"{file_name}\", which is not a safe file name; export with the exact names instead"
    )]
    UnsafeFileName {
        /// The entity.
        name: String,
        /// The file name the tool's rule gives.
        file_name: String,
    },
    /// The thumbprint slot asked for holds no certificate.
    #[error(
        "\"{name}\" has no {slot} slot; make a self-signed certificate for it in that slot first"
    )]
    NoSlot {
        /// The entity.
        name: String,
        /// The slot ("primary", "secondary").
        slot: &'static str,
    },
    /// A PFX password with a NUL character, which PKCS#12's BMPString password cannot hold.
    #[error("the PFX password contains a NUL character; choose another password")]
    PasswordNul,
    /// A check of chainsmith's own output failed: a PFX it wrote uses RC2. A bug to report.
    #[error("internal check failed: {} uses RC2; please report this", .path.display())]
    PfxWithRc2 {
        /// The PFX written.
        path: PathBuf,
    },
    /// The PFX password does not open the file.
    #[error(
        "the password for {file} is wrong (the PKCS#12 MAC does not verify); check the password"
    )]
    WrongPassword {
        /// The file, as the user named it.
        file: String,
    },
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
            Error::WrongPassword { .. } => "wrong-password",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Store(s) => s.remedy(),
            Error::Pki(p) => p.remedy(),
            Error::WrongPassword { .. } | Error::PasswordNeeded => Some(Remedy::Password),
            Error::NoKey { .. } => Some(Remedy::CertificatesOnly),
            Error::OneFormat => Some(Remedy::OneFormat),
            Error::SeveralFiles => Some(Remedy::OutDir),
            Error::UnknownChoice(_)
            | Error::UnreadableKey { .. }
            | Error::UnsafeFileName { .. }
            | Error::NoSlot { .. }
            | Error::PasswordNul
            | Error::PfxWithRc2 { .. } => None,
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

/// A word that is not one of an export's choices; the message lists them.
#[derive(Debug, thiserror::Error)]
pub enum UnknownChoice {
    /// An export format.
    #[error("export format \"{given}\" is unknown; choose from {}", .choices.join(", "))]
    Format {
        /// The word given.
        given: String,
        /// The formats.
        choices: &'static [&'static str],
    },
    /// A style of file names for the azure layout.
    #[error(
        "file names \"{given}\" are unknown; choose exact (the device id as is) or node-sdk (create_test_cert.js's camelCase)"
    )]
    FileNames {
        /// The word given.
        given: String,
    },
    /// A PFX profile.
    #[error(
        "PFX profile \"{given}\" is unknown; use modern (AES-256, SHA-256 MAC) or compat (3DES, SHA-1 MAC, for Windows Server 2016 / older macOS / Java 8)"
    )]
    PfxProfile {
        /// The word given.
        given: String,
    },
}

/// An export's result.
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
