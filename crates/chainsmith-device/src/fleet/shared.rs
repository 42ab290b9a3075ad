//! What a fleet run and its device sessions share: the plan's load and round trips, the run's
//! state every session reads and counts into ([`Shared`]), and its events.

use super::figures::Live;
use crate::mqtt::{Endpoint, Flavor, HubView, Step};
use serde::Serialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// What each device sends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Load {
    /// Messages per second per device, until the run stops.
    Rate(f64),
    /// This many messages per device, each waited for; the run ends when all are done.
    Messages(u32),
}

/// How round trips are timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundTrip {
    /// No round trips: only PUBACKs are timed.
    None,
    /// A broker: the device subscribes to its own telemetry topic.
    Echo,
    /// The local hub with echo on: every telemetry message comes back as a C2D message.
    C2d,
}

/// What happens, for `--json` and a log; figures go separately (see [`FleetRun::figures`]).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum FleetEvent {
    /// The run begins.
    Start {
        /// Devices in the run.
        devices: u64,
        /// `host:port` they connect to.
        target: String,
        /// Azure or generic topics.
        flavor: Flavor,
        /// Telemetry QoS.
        qos: u8,
        /// `K/N` when the run is one shard of a fleet.
        #[serde(skip_serializing_if = "Option::is_none")]
        shard: Option<String>,
    },
    /// Every device has made its first connect attempt.
    RampedUp {
        /// Seconds since the start.
        s: f64,
        /// Devices connected at that moment.
        connected: u64,
        /// Devices failed by then.
        failed: u64,
    },
    /// A device gave up, with the connection test's diagnosis.
    DeviceFailed {
        /// The device id.
        device: String,
        /// The diagnosis kind (failures are grouped by it).
        kind: String,
        /// The step that failed.
        step: Step,
        /// The diagnosis's cause sentence.
        cause: String,
    },
    /// The reconnect storm fired: every connected device was dropped.
    StormBegin {
        /// Devices connected when it fired.
        devices: u64,
    },
    /// Every dropped device is back or has given up.
    StormEnd {
        /// Seconds from the drop until then.
        s: f64,
        /// Devices back connected.
        back: u64,
        /// Devices that gave up.
        failed: u64,
    },
    /// The run is stopping.
    Stopping {
        /// `completed`, `duration` or `interrupted`.
        reason: String,
    },
}

/// State the devices share.
pub(crate) struct Shared {
    pub addrs: Vec<SocketAddr>,
    pub server_name: rustls::pki_types::ServerName<'static>,
    pub endpoint: Endpoint,
    pub flavor: Flavor,
    pub username_host: String,
    pub qos: u8,
    pub timeout: Duration,
    pub load: Load,
    pub round_trip: RoundTrip,
    pub live: Live,
    pub stop: watch::Receiver<bool>,
    pub storm: watch::Receiver<u64>,
    /// Devices whose message count is done.
    pub finished: AtomicU64,
    /// Devices past their first connect attempt (ramp-up is over when all are).
    pub attempted: AtomicU64,
    pub storm_dropped: AtomicU64,
    pub storm_back: AtomicU64,
    pub storm_failed: AtomicU64,
    /// DPS: (ID scope, its address, its TLS name).
    pub(super) dps: Option<(String, Option<SocketAddr>, String)>,
    pub(super) hub: Option<Arc<dyn HubView>>,
    pub(super) events: mpsc::UnboundedSender<FleetEvent>,
    pub(super) gate: Semaphore,
    /// Failed devices' identities being read back from the workspace ([`super::run`]).
    pub(super) reading: Semaphore,
    pub(super) t0: Instant,
    pub(super) connect_rate: f64,
}

/// Resolves when the flag is set (or its sender is gone); holds no borrow across awaits.
pub(crate) async fn until_true(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// Resolves when the storm generation passes `seen`.
pub(crate) async fn until_past(rx: &mut watch::Receiver<u64>, seen: u64) {
    let _ = rx.wait_for(|g| *g > seen).await;
}
