//! Everything that can happen to the app (keys, mouse, resize, ticks, background results) is
//! an [`Action`]; everything the app asks the loop to do is a [`Command`].

use crate::ops::{CaRequest, Created, DeviceRequest, Report, TreeRow};
use crossterm::event::{KeyEvent, MouseEvent};
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;

#[derive(Debug)]
pub enum Action {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Paste(String),
    Resize(u16, u16),
    /// The clock moved (the loop's tick); spinners advance, "days left" follow.
    Tick(OffsetDateTime),
    /// The workspace list was read (in the background).
    Listed {
        rows: Vec<TreeRow>,
        damaged: usize,
        took: Duration,
        /// From the TUI's list cache, shown at once while the real read runs.
        cached: bool,
    },
    ListFailed(String),
    /// `ops::report` for one entity finished.
    ReportLoaded {
        name: String,
        report: Result<Box<Report>, String>,
    },
    /// A new root / intermediate / device finished (key generation and all).
    Created(Result<Created, String>),
    /// A verification certificate was made: the result and its PEM text.
    Verified(Result<(Created, String), String>),
    Deleted {
        name: String,
        result: Result<(), String>,
    },
    /// An export / import / renew / revoke finished: the lines to show (files written, notes).
    FormDone(Result<Vec<String>, String>),
    /// Devices with a renewal in their history (for the guide).
    Renewed(Vec<String>),
    /// From the in-process local hub (see `hub`).
    Hub(super::hub::HubAction),
    /// From the connection test engine (see `connect`).
    Connect(super::connect::ConnectAction),
    /// The Fleet view's run.
    Fleet(super::fleet::FleetAction),
    Quit,
}

/// What to create from the "new" form.
#[derive(Clone, Debug)]
pub enum CreateRequest {
    Ca(CaRequest),
    Devices(DeviceRequest),
}

impl CreateRequest {
    /// What the spinner says while it runs.
    pub fn describe(&self) -> String {
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
    /// The first read: the cached list at once (large workspaces), then the real one.
    OpenList,
    LoadList,
    LoadReport(String),
    Create(CreateRequest),
    MakeVerification {
        issuer: String,
        code: String,
        out: PathBuf,
    },
    Delete(String),
    /// Put text on the clipboard with OSC 52 (written to the terminal by the loop).
    Copy(String),
    Export {
        name: String,
        opts: crate::export::ExportOptions,
    },
    Import(crate::ops::lifecycle::ImportRequest),
    Renew(crate::ops::lifecycle::RenewRequest),
    Revoke {
        name: String,
        reason: String,
        /// Disable the hub devices that use the certificate (and drop them from the Hub tab's hub).
        disable_on_hub: bool,
    },
    /// Start the local hub in-process (async; the loop owns its handle).
    StartHub {
        port: u16,
    },
    StopHub,
    /// Re-read the hub registry (CAs, devices).
    HubRegistry,
    /// Proof of possession against the local hub: add the CA → code → verification
    /// certificate (`ops::new_verification`) → verify.
    HubProve {
        ca: String,
    },
    /// Register a workspace device with the hub (CA auth, or self-signed by thumbprint).
    HubRegister {
        device: String,
    },
    HubEnable {
        device: String,
        enabled: bool,
    },
    /// DPS's proof of possession for a workspace CA (`ops::dps_prove`).
    DpsProve {
        ca: String,
    },
    /// An enrollment group from a workspace CA, proving it to DPS first if needed
    /// (`ops::dps_group_from_ca`).
    DpsGroup {
        ca: String,
    },
    /// An individual enrollment for a workspace device (its thumbprints).
    DpsEnroll {
        device: String,
    },
    /// Re-read what the guide checks besides entities: hub registry, renewals.
    GuideFacts,
    /// Run the connection test (async; its events come back as `Action::Connect`).
    RunTest {
        device: String,
        target: super::connect::ConnectTarget,
        transport: crate::mqtt::Transport,
        /// The Hub tab's port, for the hub the test starts when none runs.
        hub_port: u16,
    },
    /// Many devices at once: ranges/names, or every device under `issuer`.
    RunFleet {
        patterns: Vec<String>,
        issuer: Option<String>,
        target: super::connect::ConnectTarget,
        hub_port: u16,
    },
    StopFleet,
}
