//! What can go wrong with the hub's (or DPS's) registry.

use crate::error::{Classified, Remedy};
use crate::{pki, store};
use std::path::PathBuf;
use thiserror::Error;

/// What went wrong with the hub's (or DPS's) registry. Each message says the problem and its
/// fix in domain words; [`RegistryError::remedy`] gives the fix as a value for a face's hint.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The workspace could not be read or written.
    #[error(transparent)]
    Store(#[from] store::Error),
    /// The named entity is not a CA.
    #[error(
        "\"{0}\" is not a CA in the workspace; the hub takes a root or intermediate CA of the workspace"
    )]
    NotACa(String),
    /// This certificate of the CA is registered already.
    #[error(
        "this certificate of CA \"{0}\" is already registered with the hub; remove it from the hub first (a renewed certificate of the CA is added beside it)"
    )]
    CaTaken(String),
    /// The CA is not registered.
    #[error("CA \"{0}\" is not registered with the hub; register it with the hub first")]
    UnknownCa(String),
    /// The device is registered already.
    #[error("device \"{0}\" is already registered; remove it from the hub first")]
    DeviceTaken(String),
    /// The device is not registered.
    #[error(
        "device \"{0}\" is not registered with the hub; register it first, by CA or as self-signed"
    )]
    UnknownDevice(String),
    /// A thumbprint that is neither SHA-1 nor SHA-256 hex.
    #[error(
        "thumbprint {0:?} is neither SHA-1 (40 hex digits) nor SHA-256 (64 hex digits); copy it from the device certificate's details"
    )]
    Thumbprint(String),
    /// A self-signed device with no thumbprint.
    #[error(
        "self-signed device \"{0}\" needs a thumbprint: give its primary thumbprint, or a workspace device to take it from"
    )]
    NoThumbprint(String),
    /// The workspace entity to take thumbprints from is not a device.
    #[error(
        "\"{0}\" is a {1}, not a device certificate; take the thumbprints from a device of the workspace"
    )]
    FromNotDevice(String, &'static str),
    /// Thumbprints given for a device authenticated by CA.
    #[error(
        "device \"{0}\" authenticates by CA, which takes no thumbprints (the hub checks its chain up to a verified CA instead); give no thumbprints, or register it as self-signed"
    )]
    ThumbprintWithCa(String),
    /// An update that changes nothing.
    #[error(
        "nothing to update for device \"{0}\"; give a primary or secondary thumbprint, or a workspace device to take them from"
    )]
    NothingToUpdate(String),
    /// A certificate or name the PKI refused.
    #[error(transparent)]
    Pki(#[from] pki::Error),
    /// A registry file that does not parse.
    #[error("{path}: {what}; fix or remove the file")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        what: String,
    },
    /// Proof of possession refused, with the reason and its fix.
    #[error("proof of possession refused for CA \"{ca}\": {reason}")]
    Proof {
        /// The CA being proved.
        ca: String,
        /// Why, and what would fix it.
        reason: String,
    },
    /// A twin patch deeper or larger than IoT Hub allows (refused before it is stored).
    #[error("twin of device \"{device}\": {limit}")]
    TwinLimit {
        /// The device.
        device: String,
        /// Which limit, with the figures.
        limit: crate::hub::state_file::DocumentError,
    },
    /// A twin patch with a key IoT Hub does not take.
    #[error(
        "twin of device \"{device}\": key {key:?} is not allowed; IoT Hub takes keys of at most 1 KB without control characters, '.', '$' or spaces"
    )]
    TwinKey {
        /// The device.
        device: String,
        /// The key (cut to 64 characters).
        key: String,
    },
    /// A twin patch that is not a JSON object.
    #[error("twin patch {0:?} is not a JSON object; give one, e.g. '{{\"interval\": 5}}'")]
    Patch(String),
    /// This certificate of the CA is in DPS's list already.
    #[error("this certificate of CA \"{0}\" is already in DPS's certificate list")]
    DpsCaTaken(String),
    /// The CA is not in DPS's list.
    #[error(
        "CA \"{0}\" is not in DPS's certificate list (DPS keeps its own, apart from the hub's)"
    )]
    DpsUnknownCa(String),
    /// The CA is an enrollment group's certificate.
    #[error(
        "CA \"{0}\" is the certificate of enrollment group \"{1}\"; remove or change the group first"
    )]
    DpsCaInUse(String, String),
    /// No enrollment of that name.
    #[error("no enrollment group or individual enrollment is named \"{0}\"")]
    DpsUnknownEnrollment(String),
    /// No registration of that id.
    #[error("DPS has no registration \"{0}\"")]
    DpsUnknownRegistration(String),
    /// An enrollment group name DPS does not allow.
    #[error("enrollment group name {0:?} is not 1-128 letters, digits, '-', '.' or '_'")]
    DpsGroupName(String),
    /// A custom allocation webhook URL the local DPS will not call.
    #[error("allocation webhook {url:?}: {why}")]
    DpsWebhookUrl {
        /// The URL (cut to 120 characters).
        url: String,
        /// Why, and what it takes.
        why: String,
    },
    /// An initial twin that is not one or breaks IoT Hub's twin rules.
    #[error("{what}: {why}")]
    InitialTwin {
        /// Where it came from (`--initial-twin FILE`, the enrollment's).
        what: String,
        /// Why, and what it takes.
        why: String,
    },
    /// rustls refused the hub's own server certificate and key (made by the hub's TLS CA).
    #[error("TLS server certificate: {0}")]
    ServerTls(#[source] rustls::Error),
}

impl RegistryError {
    /// A short machine-friendly name for `--json` errors (`{"error": {"kind": …}}`).
    pub fn kind(&self) -> &'static str {
        match self {
            RegistryError::Store(s) => s.kind(),
            RegistryError::NotACa(_) => "not-a-ca",
            RegistryError::CaTaken(_) | RegistryError::DeviceTaken(_) => "already-registered",
            RegistryError::UnknownCa(_) | RegistryError::UnknownDevice(_) => "not-registered",
            RegistryError::Thumbprint(_) => "bad-thumbprint",
            RegistryError::NoThumbprint(_) => "no-thumbprint",
            RegistryError::FromNotDevice(..) => "not-a-device",
            RegistryError::ThumbprintWithCa(_) => "thumbprint-with-ca",
            RegistryError::NothingToUpdate(_) => "nothing-to-update",
            RegistryError::Pki(_) => "invalid",
            RegistryError::Damaged { .. } => "damaged",
            RegistryError::Proof { .. } => "proof-refused",
            RegistryError::Patch(_) => "bad-patch",
            RegistryError::TwinLimit { .. } => "twin-limit",
            RegistryError::TwinKey { .. } => "twin-key",
            RegistryError::DpsCaTaken(_) => "already-registered",
            RegistryError::DpsUnknownCa(_)
            | RegistryError::DpsUnknownEnrollment(_)
            | RegistryError::DpsUnknownRegistration(_) => "not-registered",
            RegistryError::DpsCaInUse(..) => "in-use",
            RegistryError::DpsGroupName(_) | RegistryError::ServerTls(_) => "invalid",
            RegistryError::DpsWebhookUrl { .. } => "bad-webhook-url",
            RegistryError::InitialTwin { .. } => "bad-initial-twin",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<Remedy> {
        match self {
            RegistryError::Store(s) => s.remedy(),
            RegistryError::Pki(p) => p.remedy(),
            RegistryError::NotACa(_) => Some(Remedy::PickCa),
            RegistryError::CaTaken(_) => Some(Remedy::UnregisterCa),
            RegistryError::DeviceTaken(_) => Some(Remedy::UnregisterDevice),
            RegistryError::UnknownCa(_) => Some(Remedy::RegisterCa),
            RegistryError::UnknownDevice(_) => Some(Remedy::RegisterDevice),
            RegistryError::Thumbprint(_) => Some(Remedy::CopyThumbprint),
            RegistryError::NoThumbprint(_) | RegistryError::NothingToUpdate(_) => {
                Some(Remedy::Thumbprints)
            }
            RegistryError::FromNotDevice(..) => Some(Remedy::PickDevice),
            RegistryError::ThumbprintWithCa(_) => Some(Remedy::NoThumbprints),
            RegistryError::Proof { .. } => Some(Remedy::VerificationCertificate),
            RegistryError::Damaged { .. }
            | RegistryError::Patch(_)
            | RegistryError::TwinLimit { .. }
            | RegistryError::TwinKey { .. }
            | RegistryError::DpsCaTaken(_)
            | RegistryError::DpsUnknownCa(_)
            | RegistryError::DpsCaInUse(..)
            | RegistryError::DpsUnknownEnrollment(_)
            | RegistryError::DpsUnknownRegistration(_)
            | RegistryError::DpsGroupName(_)
            | RegistryError::DpsWebhookUrl { .. }
            | RegistryError::InitialTwin { .. }
            | RegistryError::ServerTls(_) => None,
        }
    }
}

impl Classified for RegistryError {
    fn kind(&self) -> &'static str {
        RegistryError::kind(self)
    }
    fn remedy(&self) -> Option<Remedy> {
        RegistryError::remedy(self)
    }
}

/// The registry's result.
pub type Result<T> = std::result::Result<T, RegistryError>;
