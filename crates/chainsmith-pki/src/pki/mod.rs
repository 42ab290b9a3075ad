//! Keys, certificate profiles, issuing, CSRs, chain checks and lint.
//!
//! Nothing here touches the terminal or the workspace: every function takes bytes or
//! parameters and returns certificates, views or findings, so the CLI, the TUI, the
//! fixture factory and the local hub all share one implementation.

pub mod csr;
mod error;
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

pub use error::*;

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
