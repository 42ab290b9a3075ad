//! The fix a diagnosis (or a preflight finding) offers, typed, so each face turns it into its
//! own hint: the CLI prints the command with the real names, the TUI the key.

use super::identity::Identity;
use crate::pki::lint::Finding;
use serde::Serialize;

/// The fix of a connection-test failure, typed, with the names a face needs to build a hint
/// a person can run as is (`chainsmith hub device enable sensor-7`, the TUI's `o` key).
///
/// It is the connection test's counterpart of [`crate::error::Remedy`]: an engine error's
/// message already names what it is about, so a `Remedy` carries no data, while a diagnosis
/// is read next to a whole chain of certificates, so its remedy says which device, CA or
/// thumbprint. Where the two mean the same act, the doc comment names the `Remedy`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConnectRemedy {
    /// Give each step more time (slow links, a busy broker): `timeout_ms` is the limit the
    /// test had.
    MoreTime {
        /// The limit of each step in the failed test, in milliseconds.
        timeout_ms: u64,
    },
    /// Try the connection although the pre-flight lint found errors.
    NotStrict,
    /// Trust the server's certificate through the CA that issued it.
    ServerCa {
        /// The CA that issued the server's certificate (its CN, as the certificate says).
        issuer: String,
    },
    /// Start the local hub, or test with no hub running so that one starts in-process
    /// (`Remedy::StartHub`).
    StartHub,
    /// Stop the running local hub and start it again: its certificate no longer chains to the
    /// hub CA of this workspace.
    RestartHub,
    /// Read the running local hub's log, which says why it refused (or test with no hub
    /// running: the in-process hub reports the reason itself).
    HubLog,
    /// Look closely at the server's certificate and re-issue it.
    InspectServerCert,
    /// Look closely at the device's certificate file.
    InspectDeviceCert,
    /// Connect with a client certificate: a workspace device, or certificate and key files.
    ClientCertificate,
    /// Speak IoT Hub's client id and user name (the Azure flavor of the test).
    AzureFlavor,
    /// Send these intermediates after the leaf.
    SendChain {
        /// The intermediates missing from the chain sent, nearest the leaf first.
        intermediates: Vec<String>,
    },
    /// Register the device with the local hub (`Remedy::RegisterDevice`).
    RegisterDevice {
        /// The device id.
        device: String,
        /// For a self-signed device, the thumbprint to register; `None`: authenticated by CA.
        self_signed: Option<Thumbprint>,
    },
    /// Enable the device in the local hub's registry.
    EnableDevice {
        /// The device id.
        device: String,
    },
    /// Prove possession of the CA to the hub with a verification certificate
    /// (`Remedy::VerificationCertificate`).
    ProveCa {
        /// The CA's name in the workspace.
        ca: String,
    },
    /// Register the CA with the hub and prove possession of it (`Remedy::RegisterCa`).
    UploadCa {
        /// The CA's name in the workspace.
        ca: String,
    },
    /// Renew the workspace device's certificate in place (same key and profile).
    Renew {
        /// The workspace entity to renew.
        name: String,
        /// A self-signed device's id: its new thumbprint must then be registered with the hub.
        then_update_hub: Option<String>,
    },
    /// Register this certificate's thumbprint in one of the device's slots on the hub.
    SlotThumbprint {
        /// The device id.
        device: String,
        /// The certificate's thumbprint, and the workspace device it can be taken from.
        thumbprint: Thumbprint,
    },
    /// Issue the device's certificate again, under a CA, with CN = the device id and the
    /// clientAuth EKU.
    IssueDevice {
        /// The device id (and the workspace name to issue it under).
        device: String,
        /// A workspace entity of that name already exists and must be replaced.
        replace: bool,
    },
    /// Re-issue the CA the hub names with a larger path length (`Remedy::Pathlen`).
    Pathlen,
    /// What fixes the rule of AWS IoT Core (the local one) that refused the device.
    Aws {
        /// Which fix.
        fix: AwsFix,
    },
}

/// The fix of a refusal by the local AWS IoT Core, with the names a face builds its command
/// from (the CLI: `chainsmith aws …`).
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(tag = "fix", rename_all = "kebab-case")]
pub enum AwsFix {
    /// Register the device's certificate, ACTIVE.
    RegisterCertificate {
        /// The workspace device (or the certificate's CN).
        device: String,
    },
    /// Set the device's certificate ACTIVE.
    ActivateCertificate {
        /// The workspace device.
        device: String,
    },
    /// Renew the revoked certificate and register the new one.
    ReplaceCertificate {
        /// The workspace device.
        device: String,
    },
    /// Register the CA with a verification certificate for the registration code.
    RegisterCa {
        /// The CA's workspace name.
        ca: String,
    },
    /// Set the CA ACTIVE.
    ActivateCa {
        /// The CA's workspace name.
        ca: String,
    },
    /// Attach a policy allowing what was refused to the device's certificate.
    AttachPolicy {
        /// The workspace device.
        device: String,
    },
    /// Give each connection its own client id (watch who connects).
    OwnClientId,
    /// Connect again (JITP provisioned the certificate on this connection).
    ConnectAgain {
        /// The workspace device.
        device: String,
    },
    /// Read the service's log, which names the rule.
    ServiceLog,
    /// Start the local AWS IoT Core.
    StartService,
}

/// A self-signed device certificate's thumbprint, as the hub registers it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Thumbprint {
    /// The SHA-1 thumbprint (hex), the form the Azure portal shows.
    pub sha1: String,
    /// The workspace device it belongs to, when it came from the workspace: the hub can take
    /// both of its slots from there.
    pub from: Option<String>,
}

impl Thumbprint {
    pub(super) fn of(id: &Identity) -> Thumbprint {
        Thumbprint {
            sha1: crate::pki::thumbprints(&id.leaf().der).0,
            from: id.workspace_name().map(str::to_string),
        }
    }
}

/// The typed remedy of one pre-flight finding, by the finding's code.
///
/// A pre-flight finding is a [`crate::pki::lint::Finding`], the type every lint of the crate
/// shares; `pki` sits below the connection test and must not know its remedies, so the
/// remedy travels beside the finding, keyed by its code (each hub finding's code is unique).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct FindingRemedy {
    /// The finding's code (`hub-device-disabled`, ...).
    pub code: &'static str,
    /// What fixes it.
    pub remedy: ConnectRemedy,
}

/// The remedies of the pre-flight findings that have one (the local hub's registry findings).
pub fn preflight_remedies(findings: &[Finding], id: &Identity) -> Vec<FindingRemedy> {
    findings
        .iter()
        .filter_map(|f| {
            Some(FindingRemedy {
                code: f.code,
                remedy: preflight_remedy(f.code, id)?,
            })
        })
        .collect()
}

/// The remedy for a pre-flight finding's code, given the identity it was found on.
pub(super) fn preflight_remedy(code: &str, id: &Identity) -> Option<ConnectRemedy> {
    let device = id.device_id.clone();
    Some(match code {
        "hub-device-unregistered" => ConnectRemedy::RegisterDevice {
            device,
            self_signed: id.leaf().view.self_signed.then(|| Thumbprint::of(id)),
        },
        "hub-device-disabled" => ConnectRemedy::EnableDevice { device },
        "hub-thumbprint" => ConnectRemedy::SlotThumbprint {
            device,
            thumbprint: Thumbprint::of(id),
        },
        _ => return None,
    })
}
