//! Keys, certificate profiles, issuing, CSRs, chain checks and lint.
//!
//! Nothing here touches the terminal or the workspace: every function takes bytes or
//! parameters and returns certificates, views or findings, so the CLI, the TUI, the
//! fixture factory and the local hub all share one implementation.

pub mod csr;
pub mod identity;
pub mod inspect;
pub mod issue;
pub mod keys;
pub mod lint;
pub mod pkcs12;
pub mod subject;
pub mod verify;

pub use identity::Target;
pub use issue::{CaHandle, Eku, IssueSpec, Issued, Profile, Validity};
pub use keys::KeyAlg;

/// Everything that can go wrong in the engine, each message naming the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Invalid(String),
    #[error("{what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("OpenSSL: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error(
        "the password for {0} is wrong (the PKCS#12 MAC does not verify); check --password, --password-file or CHAINSMITH_PFX_PASSWORD"
    )]
    WrongPassword(String),
}

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
    pub fn parse(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Upper-case hex without separators: the form Azure shows thumbprints in.
pub fn hex_upper(bytes: &[u8]) -> String {
    hex::encode_upper(bytes)
}

/// SHA-1 and SHA-256 thumbprints of a DER certificate, upper-case hex.
pub fn thumbprints(der: &[u8]) -> (String, String) {
    use aws_lc_rs::digest;
    let sha1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, der);
    let sha256 = digest::digest(&digest::SHA256, der);
    (hex_upper(sha1.as_ref()), hex_upper(sha256.as_ref()))
}
