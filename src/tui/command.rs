//! What the app asks the loop to run off the draw path: a [`Command`]; its result comes back
//! as an `Action`. Tabs hand these up (inside a `Request`), so this module knows no tab.

use super::target::ConnectTarget;
use crate::ops::{CaRequest, DeviceRequest};
use std::path::PathBuf;

/// What to create from the "new" form.
#[derive(Clone, Debug)]
pub enum CreateRequest {
    /// A root CA (no issuer) or an intermediate (issued by a workspace CA).
    Ca(CaRequest),
    /// One device, or a range of them, CA-signed or self-signed.
    Devices(DeviceRequest),
}

impl CreateRequest {
    /// What the spinner says while it runs.
    pub(crate) fn describe(&self) -> String {
        match self {
            CreateRequest::Ca(r) => format!(
                "generating {} key and issuing {} \"{}\"",
                r.key.label(),
                if r.issuer.is_some() {
                    "intermediate"
                } else {
                    "root"
                },
                r.name
            ),
            CreateRequest::Devices(r) => format!(
                "generating {} key and issuing device {}",
                r.key.unwrap_or_default_alg().label(),
                r.ids.join(" ")
            ),
        }
    }
}

trait DefaultAlg {
    fn unwrap_or_default_alg(self) -> crate::pki::KeyAlg;
}

impl DefaultAlg for Option<crate::pki::KeyAlg> {
    fn unwrap_or_default_alg(self) -> crate::pki::KeyAlg {
        self.unwrap_or(crate::pki::KeyAlg::EcP256)
    }
}

/// A side effect for the loop to run off the draw path; its result comes back as an [`Action`].
#[derive(Clone, Debug)]
pub enum Command {
    /// Read the workspace list (at start, after a change, or when the guide finds it stale);
    /// the workspace index makes it one file read however many entities there are.
    LoadList,
    /// Build the details report of this entity (the PKI tab's selection).
    LoadReport(String),
    /// Generate the key and issue what the "new" form (`n`) describes.
    Create(CreateRequest),
    /// Issue the verification certificate for a hub's proof-of-possession code (`v` on the
    /// PKI tab).
    MakeVerification {
        /// The CA to prove.
        issuer: String,
        /// The code the hub showed for it.
        code: String,
        /// Where the certificate's PEM is written.
        out: PathBuf,
    },
    /// Delete this entity and its key from the workspace (confirmed with `y`).
    Delete(String),
    /// Put text on the clipboard with OSC 52 (written to the terminal by the loop).
    Copy(String),
    /// Write an entity's files as the export form (`e`) chose.
    Export {
        /// The entity to export.
        name: String,
        /// Formats, password, PFX profile and directory from the form.
        opts: crate::export::ExportOptions,
    },
    /// Bring a certificate (and key) into the workspace (the import form, `i`).
    Import(crate::ops::lifecycle::ImportRequest),
    /// Renew a certificate (the renew form, `r`).
    Renew(crate::ops::lifecycle::RenewRequest),
    /// Mark an entity revoked (the revoke form, `x`).
    Revoke {
        /// The entity to revoke.
        name: String,
        /// The CRL reason the user chose (`key-compromise`, `superseded`, ...).
        reason: String,
        /// Disable the hub devices that use the certificate (and drop them from the Hub tab's hub).
        disable_on_hub: bool,
    },
    /// Start the local hub in-process (async; the loop owns its handle).
    StartHub {
        /// The port from the Hub tab (`p`); 0 asks for a free one.
        port: u16,
    },
    /// Stop the Hub tab's hub (`s` while it runs), closing its connections.
    StopHub,
    /// Re-read the hub registry (CAs, devices).
    HubRegistry,
    /// Proof of possession against the local hub: add the CA → code → verification
    /// certificate (`ops::new_verification`) → verify.
    HubProve {
        /// The workspace CA selected on the PKI tab.
        ca: String,
    },
    /// Register a workspace device with the hub (CA auth, or self-signed by thumbprint).
    HubRegister {
        /// The workspace device selected on the PKI tab.
        device: String,
    },
    /// Enable or disable a device in the hub's registry (`o` on the Hub tab).
    HubEnable {
        /// The hub device to change.
        device: String,
        /// Its new state: disabled devices are refused from their next connection.
        enabled: bool,
    },
    /// DPS's proof of possession for a workspace CA (`hub::dps_prove`).
    DpsProve {
        /// The workspace CA selected on the PKI tab.
        ca: String,
    },
    /// An enrollment group from a workspace CA, proving it to DPS first if needed
    /// (`hub::dps_group_from_ca`).
    DpsGroup {
        /// The workspace CA the group's devices chain to.
        ca: String,
    },
    /// An individual enrollment for a workspace device (its thumbprints).
    DpsEnroll {
        /// The workspace device selected on the PKI tab.
        device: String,
    },
    /// Re-read what the guide checks besides entities: hub registry, renewals.
    GuideFacts,
    /// Run the connection test (async; its events come back as `Action::Connect`).
    RunTest {
        /// The device to connect as (chosen with `c` on the PKI tab).
        device: String,
        /// Where to connect (`t` on the Connect tab).
        target: ConnectTarget,
        /// MQTT or AMQP, over TLS or WebSockets (the target form's Protocol field).
        transport: crate::mqtt::Transport,
        /// The Hub tab's port, for the hub the test starts when none runs.
        hub_port: u16,
    },
    /// Many devices at once: ranges/names, or every device under `issuer`.
    RunFleet {
        /// Device names or ranges (`sensor-{00001..10000}`), typed with `r` or the PKI
        /// tab's selected device; empty when `issuer` picks them.
        patterns: Vec<String>,
        /// Every device issued by this CA (the PKI tab's selected CA).
        issuer: Option<String>,
        /// Where the devices connect, as for the single test.
        target: ConnectTarget,
        /// The Hub tab's port, for the hub the run starts when none runs.
        hub_port: u16,
    },
    /// Stop the running fleet (`s` in the Fleet view); its report still comes back.
    StopFleet,
}
