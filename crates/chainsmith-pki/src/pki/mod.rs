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

use crate::error::Remedy;

/// Everything that can go wrong in the engine, each message naming the value and the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A word that is not one of the choices offered: a key algorithm, a target, an EKU, a
    /// SAN type (the message lists the choices).
    #[error("{0}")]
    UnknownChoice(String),
    /// A subject alternative name without a value or with a value of the wrong form, given
    /// or asked for by a CSR.
    #[error("{0}")]
    San(String),
    /// A time or validity length X.509 cannot express, that does not parse, or a window that
    /// ends before it starts.
    #[error("{0}")]
    Time(String),
    /// A device or registration id (or an id range, or a list of ids) Azure would not take.
    #[error("{0}")]
    DeviceId(String),
    /// A proof-of-possession verification code that cannot be a certificate's CN.
    #[error("{0}")]
    VerificationCode(String),
    /// An entity name that cannot be a file name in the workspace.
    #[error("{0}")]
    EntityName(String),
    /// A subject (`CN=…,O=…`) that does not parse or breaks RFC 5280's limits.
    #[error("{0}")]
    Subject(String),
    /// A PKCS#12 file that is damaged, uses an algorithm OpenSSL 3 does not read, or asks for
    /// an unreasonable amount of work.
    #[error("{0}")]
    Pkcs12(String),
    /// A CA that cannot sign here: no key (trust-only), a key that is not its certificate's,
    /// or no issuer at all where one is needed.
    #[error("{0}")]
    CannotSign(String),
    /// A check of chainsmith's own work failed: a bug to report, not a mistake of the user.
    #[error("{0}")]
    Internal(String),
    /// Bytes that do not parse as what they should be.
    #[error("{what}: {detail}")]
    Parse {
        /// What was read.
        what: String,
        /// The parser's words.
        detail: String,
    },
    /// The chosen issuer cannot issue this certificate (not a CA, or the certificate itself).
    #[error("{0}")]
    Issuer(String),
    /// A CA's path length does not allow the chain asked for.
    #[error("{0}")]
    Pathlen(String),
    /// A certificate without a CN.
    #[error("CN is empty; give a name such as \"Contoso Root\" (or none, to use the entity name)")]
    EmptyCn,
    /// A validity window that is empty or over-determined.
    #[error("{0}")]
    Validity(String),
    /// A password is missing, or cannot open the file.
    #[error("{0}")]
    Password(String),
    #[error(
        "the CSR's subject has no CN; name the entity, and make device CSRs with CN = the device id"
    )]
    /// A CSR whose subject has no CN.
    CsrWithoutCn,
    /// A CSR whose subject asks for more than one identity or for attributes a device
    /// certificate does not carry (`problem` says which).
    #[error(
        "the CSR's subject {problem}; a device CSR's subject is one CN (the device id) and at most one each of O, OU, L, ST and C: make it again with -subj /CN=ID"
    )]
    CsrSubject {
        /// What is wrong with it, with the values (escaped).
        problem: String,
    },
    /// A CSR whose key chainsmith will not certify (`key` names it: `RSA-1024`, `EC on curve
    /// secp112r1`, `EC with explicit curve parameters`).
    #[error(
        "the CSR's key is {key}, which hubs and OpenSSL 3 refuse or which chainsmith does not issue for; make the key again on the device as EC P-256 (openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256) or RSA 2048 or larger"
    )]
    CsrKey {
        /// The key as described above.
        key: String,
    },
    /// A CSR whose signature does not verify against its own public key.
    #[error(
        "the CSR's signature does not verify against its own public key: the request was altered or corrupted; make it again on the device"
    )]
    CsrSignature,
    /// The PFX password does not open the file (its name in the message).
    #[error("the password for {0} is wrong (the PKCS#12 MAC does not verify); check the password")]
    WrongPassword(String),
    /// The password does not decrypt an encrypted PEM private key (PKCS#8 `ENCRYPTED PRIVATE
    /// KEY` or OpenSSL's traditional `Proc-Type: 4,ENCRYPTED`); its name in the message.
    #[error(
        "the password for {0} is wrong (the key does not decrypt with it); give the password the key file was encrypted with"
    )]
    WrongKeyPassword(String),
    /// rcgen could not make the certificate.
    #[error("certificate generation failed: {0}")]
    Generation(Backend),
    /// OpenSSL refused an operation.
    #[error("OpenSSL: {0}")]
    OpenSsl(Backend),
    /// RSA-1024, which no hub accepts: chainsmith makes such a key only as a negative fixture.
    #[error(
        "key algorithm \"rsa-1024\" is too weak: hubs and OpenSSL 3 refuse it; use ec-p256 or rsa-2048 (for a negative test, a spec's weak_key fixture makes one)"
    )]
    WeakKey,
    /// Anything else, in the words of whoever found it (the hub's TLS setup).
    #[error("{0}")]
    Other(String),
}

/// An error from the cryptography libraries underneath (rcgen, OpenSSL), kept as their text so
/// that their types are no part of this API.
#[derive(Debug)]
pub struct Backend(String);

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<rcgen::Error> for Error {
    fn from(e: rcgen::Error) -> Self {
        Error::Generation(Backend(e.to_string()))
    }
}

impl From<openssl::error::ErrorStack> for Error {
    fn from(e: openssl::error::ErrorStack) -> Self {
        Error::OpenSsl(Backend(e.to_string()))
    }
}

impl Error {
    /// An [`Error::Other`]: for callers outside this crate with no variant of their own
    /// (the hub's TLS setup); inside it, a variant that says what went wrong.
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Other(msg.into())
    }
    /// An [`Error::Parse`].
    pub fn parse(what: impl Into<String>, detail: impl std::fmt::Display) -> Self {
        Error::Parse {
            what: what.into(),
            detail: detail.to_string(),
        }
    }

    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::WrongPassword(_) | Error::WrongKeyPassword(_) => "wrong-password",
            Error::CsrSubject { .. } => "csr-subject",
            Error::CsrKey { .. } => "csr-key",
            Error::CsrSignature => "csr-signature",
            _ => "invalid",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            Error::Issuer(_) => Some(Remedy::Issuer),
            Error::Pathlen(_) => Some(Remedy::Pathlen),
            Error::EmptyCn => Some(Remedy::CommonName),
            Error::CsrWithoutCn => Some(Remedy::Name),
            Error::Validity(_) => Some(Remedy::Validity),
            Error::Password(_) | Error::WrongPassword(_) | Error::WrongKeyPassword(_) => {
                Some(Remedy::Password)
            }
            Error::WeakKey => Some(Remedy::WeakKeyFixture),
            _ => None,
        }
    }
}

/// `impl Classified for $t` through its inherent `kind` and `remedy`: every engine error enum
/// has both as inherent methods (callers need not import the trait), and the trait only
/// forwards to them, for code generic over the engine's errors.
macro_rules! classified_by_inherent_methods {
    ($t:ty) => {
        impl $crate::error::Classified for $t {
            fn kind(&self) -> &'static str {
                <$t>::kind(self)
            }
            fn remedy(&self) -> Option<$crate::error::Remedy> {
                <$t>::remedy(self)
            }
        }
    };
}
pub(crate) use classified_by_inherent_methods;

classified_by_inherent_methods!(Error);

/// A pki result.
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

/// The DER of the first PEM block of `pem_text`, if it parses.
pub fn pem_to_der(pem_text: &str) -> Option<Vec<u8>> {
    pem::parse(pem_text).ok().map(|p| p.into_contents())
}

/// Said with every revocation and every export of a revoked certificate: the clouds check no
/// CRL, so revoking alone does not keep a device out.
pub const HUB_DOES_NOT_CHECK_CRLS: &str = "Azure IoT Hub does not check CRLs: to cut this device off, disable it in the hub (az iot hub device-identity update --hub-name HUB --device-id ID --status disabled), or disable its enrollment in DPS";
