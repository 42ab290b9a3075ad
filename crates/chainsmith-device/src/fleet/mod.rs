//! Fleet mode: many X.509 devices at once against a hub or broker, each with its own
//! certificate, key and MQTT session, speaking the connection test's protocol (Azure topics
//! for a hub, plain topics for a broker) and explained by its diagnosis.
//!
//! - [`select`](mod@select): which devices (names, ranges, every device under a CA) and
//!   the K-th of N shards of them;
//! - [`run`]: the runner on tokio: a controlled connect rate, telemetry at a rate or a count,
//!   an optional reconnect storm, a clean stop, a timeout on every network step;
//! - [`figures`]: live counts and HDR histograms, published on a watch channel so a face
//!   reads them whenever it draws;
//! - [`report`]: the JSON report with serialized histograms, and [`report::merge`].
//!
//! No printing here: the CLI (`chainsmith fleet`) and the TUI's Fleet view are the faces.

pub mod bundle;
pub mod figures;
pub mod report;
pub mod run;
pub mod select;
mod session;
mod shared;

pub use figures::{Figures, Phase};
pub use report::{Report, merge};
pub use run::{DpsPlan, FleetDevice, FleetRun, Plan, device_task_bytes, load_devices, start};
pub use select::{Selected, Shard, select};
pub use shared::{FleetEvent, Load, RoundTrip};

use std::collections::HashSet;

/// Why a fleet could not be selected, loaded, run or reported.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The device selection or shard is wrong: an unknown name or CA, an empty range, a
    /// shard index outside 1..=N.
    #[error("{0}")]
    Selection(String),
    /// One selected device cannot take part (not a device, no key, a bad chain).
    #[error("device \"{device}\": {problem}")]
    Device {
        /// The workspace device.
        device: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A report file is not a fleet report, has another format version, or reports do not merge.
    #[error("{0}")]
    Report(String),
    /// The process's open-file limit is below what the fleet's connections need.
    #[error("{0}")]
    Limit(String),
    /// Reading the workspace failed.
    #[error(transparent)]
    Store(crate::store::Error),
    /// A CA chosen as the fleet's selection that has no devices with keys under it.
    #[error("CA \"{0}\" has no devices with a key under it; issue some devices under it first")]
    NoDevicesUnder(String),
    /// A bundle directory that holds files already (bundles are never overwritten).
    #[error(
        "{} exists and is not empty; write the bundles to a new directory (they are never overwritten)",
        .0.display()
    )]
    BundleDirNotEmpty(std::path::PathBuf),
    /// The shard was to come from the environment, and the orchestrator's index is not there.
    #[error(
        "JOB_COMPLETION_INDEX is not set; a Kubernetes Indexed Job sets it (or name the shard, K of N, yourself)"
    )]
    NoShardIndex,
}

impl FleetError {
    /// A short machine-friendly name for `--json` errors.
    pub fn kind(&self) -> &'static str {
        match self {
            FleetError::Selection(_) | FleetError::NoDevicesUnder(_) | FleetError::NoShardIndex => {
                "fleet-selection"
            }
            FleetError::Device { .. } => "fleet-device",
            FleetError::Report(_) => "fleet-report",
            FleetError::Limit(_) => "open-files",
            FleetError::Store(e) => e.kind(),
            FleetError::BundleDirNotEmpty(_) => "exists",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        use crate::error::Remedy;
        match self {
            FleetError::Store(e) => e.remedy(),
            FleetError::NoDevicesUnder(_) => Some(Remedy::IssueDevices),
            FleetError::BundleDirNotEmpty(_) => Some(Remedy::NewOutDir),
            FleetError::NoShardIndex => Some(Remedy::Shard),
            FleetError::Selection(_)
            | FleetError::Device { .. }
            | FleetError::Report(_)
            | FleetError::Limit(_) => None,
        }
    }
}

impl crate::error::Classified for FleetError {
    fn kind(&self) -> &'static str {
        FleetError::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        FleetError::remedy(self)
    }
}

/// What `fleet run --register` did in the local hub.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Registered {
    /// Devices registered now.
    pub added: usize,
    /// Devices the hub had already, left exactly as they were (a disabled one stays disabled).
    pub kept: usize,
}

/// Register a fleet's devices in the local hub (`fleet run --register`), in one write: a
/// CA-issued device with `Auth::Ca`, a self-signed one with its own thumbprints. Devices the
/// hub has already are left as the operator set them.
pub fn register_in_local_hub(
    store: &crate::hub::HubStore,
    names: &[String],
) -> Result<Registered, crate::hub::RegistryError> {
    use crate::hub::Auth;
    let (metas, _damaged) = store.ws.list()?;
    let self_signed: HashSet<&str> = metas
        .iter()
        .filter(|m| m.self_signed)
        .map(|m| m.name.as_str())
        .collect();
    let devices: Vec<(String, Auth)> = names
        .iter()
        .map(|n| {
            let auth = match self_signed.contains(n.as_str()) {
                true => Auth::SelfSigned,
                false => Auth::Ca,
            };
            (n.clone(), auth)
        })
        .collect();
    let (added, _warnings) = store.add_devices(&devices, true)?;
    Ok(Registered {
        added: added.len(),
        kept: names.len() - added.len(),
    })
}

/// Make room for `devices` connections in this process's open-file limit (one socket per
/// device, plus room for the runtime and files): raise the soft limit up to the hard one.
/// Returns the limit now in force.
pub fn raise_open_files(devices: u64) -> Result<u64, FleetError> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let need = devices.saturating_add(256);
    let now = getrlimit(Resource::Nofile);
    let soft = now.current.unwrap_or(u64::MAX);
    if soft >= need {
        return Ok(soft);
    }
    let hard = now.maximum.unwrap_or(u64::MAX);
    if hard < need {
        return Err(FleetError::Limit(format!(
            "{devices} devices need about {need} open files, but this process may open at most {hard} (hard limit); raise it (ulimit -Hn, /etc/security/limits.conf, LimitNOFILE=) or split the fleet into shards on several processes or machines"
        )));
    }
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(need),
            maximum: now.maximum,
        },
    )
    .map_err(|e| {
        FleetError::Limit(format!(
            "raising the open-file limit from {soft} to {need} failed ({e}); raise it with ulimit -n or split the fleet into shards"
        ))
    })?;
    Ok(need)
}
