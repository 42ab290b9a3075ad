//! The engines the loop drives on tokio, off the draw path: the in-process local hub (its
//! events forwarded as actions), the connection test and the fleet. Their progress comes back
//! as [`Action`]s over the loop's channel; nothing here draws or reads a key.

use super::action::Action;
use super::{connect, fleet, forms, hub};
use crate::store::Workspace;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::mpsc;

/// What the loop owns besides the app: the in-process hub while it runs.
#[derive(Default, Clone)]
pub struct Engines {
    /// The Hub tab's hub (None while stopped).
    pub(crate) hub: Arc<tokio::sync::Mutex<Option<crate::hub::HubHandle>>>,
    /// The Fleet view's run (None while none runs).
    pub(crate) fleet: Arc<tokio::sync::Mutex<Option<crate::fleet::run::Control>>>,
    /// The session's clock (the workspace's, running on), for the hub and the tests it starts.
    pub(crate) clock: crate::clock::Clock,
}

impl Engines {
    /// Where the Hub tab's hub listens, if it runs.
    pub async fn hub_addr(&self) -> Option<std::net::SocketAddr> {
        self.hub.lock().await.as_ref().map(|h| h.addr)
    }

    /// Stop the Fleet view's run, if one runs (`s`); its report still comes.
    pub async fn stop_fleet(&self) {
        if let Some(c) = self.fleet.lock().await.as_ref() {
            c.stop();
        }
    }

    /// Stop the hub (on quit), waiting for it to close its connections.
    pub async fn shutdown(&self) {
        if let Some(h) = self.hub.lock().await.take() {
            h.shutdown().await;
        }
    }
}

/// Forward the hub's events as actions: whatever has queued up is sent as one batch, so a
/// burst of 1,000 events is a handful of actions and frames.
pub(crate) fn forward_hub_events(
    mut rx: tokio::sync::broadcast::Receiver<crate::hub::HubEvent>,
    tx: mpsc::UnboundedSender<Action>,
) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    tokio::spawn(async move {
        loop {
            let first = match rx.recv().await {
                Ok(e) => e,
                Err(RecvError::Lagged(n)) => {
                    let _ = tx.send(Action::Hub(hub::HubAction::Event(hub::LogLine {
                        at: OffsetDateTime::now_utc(),
                        kind: hub::LogKind::Info,
                        device: String::new(),
                        text: format!("{n} events skipped (the log could not keep up)"),
                    })));
                    continue;
                }
                Err(RecvError::Closed) => break,
            };
            let now = OffsetDateTime::now_utc();
            let mut batch = vec![hub::log_line(&first, now)];
            loop {
                match rx.try_recv() {
                    Ok(e) => batch.push(hub::log_line(&e, now)),
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
            if tx.send(Action::Hub(hub::HubAction::Events(batch))).is_err() {
                break;
            }
        }
    });
}

/// One connection test the Connect tab asked for (what [`Command::RunTest`] carries).
pub struct TestRequest {
    /// The workspace device to connect as.
    pub device: String,
    /// The local hub, an IoT Hub host or an MQTT broker.
    pub target: connect::ConnectTarget,
    /// MQTT or AMQP, over TLS or WebSockets.
    pub transport: crate::mqtt::Transport,
    /// The Hub tab's port, for the hub the test starts when none runs.
    pub hub_port: u16,
}

/// The engine's target for the Connect tab's or the Fleet view's choice: the local hub is the
/// Hub tab's hub (one hub, one truth: started when stopped, so the Hub tab shows it running and
/// logs the connections), anything else resolved as the CLI resolves it.
async fn resolve_target(
    engines: &Engines,
    ws: &Workspace,
    target: &connect::ConnectTarget,
    (transport, watching): (crate::mqtt::Transport, crate::target::HubWatching),
    hub_port: u16,
    tx: &mpsc::UnboundedSender<Action>,
) -> Result<crate::target::Target, String> {
    use crate::target::{Destination, TargetSpec};
    let spec = |to| TargetSpec {
        to,
        transport,
        flavor: None,
        anchors: vec![],
        watching,
    };
    match target {
        connect::ConnectTarget::LocalHub => {
            let h = local_hub(engines, ws.root(), hub_port, tx).await?;
            let source = crate::mqtt::local::HubSource::InProcess(&h);
            crate::target::resolve(Some(ws), spec(Destination::Local(source))).await
        }
        connect::ConnectTarget::AzureHub(to) | connect::ConnectTarget::Broker(to) => {
            crate::target::resolve(Some(ws), spec(Destination::Remote(to))).await
        }
    }
    .map_err(|e| forms::error_text(&e))
}

/// Run the connection test for `device` against `target`, sending its events back as
/// `Action::Connect(ConnectAction::Engine(..))`. The local hub target uses the hub of the Hub
/// tab when it runs (else one started for the test, as `connect --to local` does); a broker or
/// an IoT Hub host trusts the system store plus the workspace's roots (a test broker's server
/// certificate is usually issued by one of them).
pub async fn run_test(
    ws_root: std::path::PathBuf,
    engines: Engines,
    req: TestRequest,
    tx: mpsc::UnboundedSender<Action>,
) -> Result<(), String> {
    let TestRequest {
        device,
        target,
        transport,
        hub_port,
    } = req;
    use crate::target::HubWatching;
    let ws = Workspace::open(&ws_root)
        .map_err(|e| forms::error_text(&e))?
        .with_clock(engines.clock);
    let identity =
        crate::mqtt::Identity::from_workspace(&ws, &device).map_err(|e| forms::error_text(&e))?;
    let target = resolve_target(
        &engines,
        &ws,
        &target,
        (transport, HubWatching::RecordsAndRefusals),
        hub_port,
        &tx,
    )
    .await?;
    let mut test = target
        .connection_test(identity)
        .map_err(|e| forms::error_text(&e))?;
    test.count = connect::COUNT;
    test.interval = Duration::from_millis(300);
    let (etx, mut erx) = mpsc::channel(256);
    let task = tokio::spawn(crate::mqtt::run(test, etx));
    while let Some(e) = erx.recv().await {
        let _ = tx.send(Action::Connect(connect::ConnectAction::Engine(Box::new(e))));
    }
    task.await
        .map(|_| ())
        .map_err(|e| format!("the connection test stopped unexpectedly: {e}"))
}

/// New connections per second during ramp-up.
const FLEET_CONNECT_RATE: f64 = 500.0;

/// Telemetry messages per second per device in a run from the TUI (until `s` stops it).
const FLEET_RATE: f64 = 1.0;

/// Run a fleet from the TUI: the devices, the target (the Hub tab's hub for `local`, started
/// when stopped, on a free port when the Hub tab's is taken), figures forwarded as actions
/// until the run ends ([`Engines::stop_fleet`](Engines::stop_fleet) stops it).
pub async fn run_fleet(
    ws_root: std::path::PathBuf,
    engines: Engines,
    patterns: Vec<String>,
    issuer: Option<String>,
    target: connect::ConnectTarget,
    hub_port: u16,
    tx: mpsc::UnboundedSender<Action>,
) -> Result<Box<crate::fleet::Report>, String> {
    use crate::fleet::{Load, Plan};
    use crate::target::HubWatching;
    let ws = crate::store::Workspace::open(&ws_root)
        .map_err(|e| forms::error_text(&e))?
        .with_clock(engines.clock);
    let target = resolve_target(
        &engines,
        &ws,
        &target,
        (crate::mqtt::Transport::Mqtt, HubWatching::RefusalsOnly),
        hub_port,
        &tx,
    )
    .await?;
    let (extra_ca, system_roots) = (target.trust.anchors.clone(), target.trust.system_roots);
    let devices = tokio::task::spawn_blocking(move || {
        let names = crate::fleet::select(&ws, &patterns, issuer.as_deref())?.names;
        crate::fleet::raise_open_files(names.len() as u64)?;
        crate::fleet::load_devices(&ws, &names, &extra_ca, system_roots)
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| forms::error_text(&e))?;
    let _ = tx.send(Action::Fleet(fleet::FleetAction::Started {
        devices: devices.len(),
    }));
    let mut plan = Plan::new(devices, target.endpoint.clone(), target.flavor);
    plan.connect_rate = FLEET_CONNECT_RATE;
    plan.load = Load::Rate(FLEET_RATE);
    plan.round_trip = target.fleet_round_trip();
    plan.hub = target.hub.clone();
    let run = crate::fleet::start(plan);
    *engines.fleet.lock().await = Some(run.control());
    let mut figures = run.figures.clone();
    while figures.changed().await.is_ok() {
        let f = figures.borrow_and_update().clone();
        let done = f.phase == crate::fleet::Phase::Done;
        let _ = tx.send(Action::Fleet(fleet::FleetAction::Figures(Box::new(f))));
        if done {
            break;
        }
    }
    let report = run.finish().await;
    *engines.fleet.lock().await = None;
    Ok(Box::new(report))
}

/// The Hub tab's hub for a connection test or a fleet run: the running one, else started on
/// the Hub tab's port, else (that port taken, by a local Mosquitto on 8883, say) on a free
/// one, with a log line saying so. A started hub's events go to the Hub tab's log and the tab
/// shows it running. The hub stays locked while the returned guard lives.
async fn local_hub<'a>(
    engines: &'a Engines,
    ws_root: &std::path::Path,
    hub_port: u16,
    tx: &mpsc::UnboundedSender<Action>,
) -> Result<tokio::sync::MappedMutexGuard<'a, crate::hub::HubHandle>, String> {
    let mut guard = engines.hub.lock().await;
    if guard.is_none() {
        let h = match start_hub(ws_root, hub_port, engines.clock).await {
            Ok(h) => h,
            Err(first) if hub_port != 0 => {
                let h = start_hub(ws_root, 0, engines.clock).await.map_err(|e| {
                    format!(
                        "starting the local hub: {first}; on a free port: {}",
                        forms::error_text(&e)
                    )
                })?;
                let _ = tx.send(Action::Hub(hub::HubAction::Event(hub::LogLine {
                    at: OffsetDateTime::now_utc(),
                    kind: hub::LogKind::Info,
                    device: String::new(),
                    text: format!(
                        "port {hub_port} is taken ({first}); the hub listens on free port {}",
                        h.addr.port()
                    ),
                })));
                h
            }
            Err(e) => return Err(format!("starting the local hub: {}", forms::error_text(&e))),
        };
        announce_hub(&h, tx);
        *guard = Some(h);
    }
    tokio::sync::MutexGuard::try_map(guard, Option::as_mut)
        .map_err(|_| "the local hub stopped as the run began".to_string())
}

/// A hub just started: its events go to the Hub tab's log, and the tab shows it running.
pub(crate) fn announce_hub(h: &crate::hub::HubHandle, tx: &mpsc::UnboundedSender<Action>) {
    forward_hub_events(h.events(), tx.clone());
    let _ = tx.send(Action::Hub(hub::HubAction::Started {
        port: h.addr.port(),
    }));
}

/// The in-process hub as the Hub tab runs it (C2D echo on).
pub(crate) async fn start_hub(
    root: &std::path::Path,
    port: u16,
    clock: crate::clock::Clock,
) -> Result<crate::hub::HubHandle, crate::hub::HubError> {
    // AMQP and WebSockets on free ports, so every transport can be tested from the Connect tab.
    let config = crate::hub::HubConfig {
        csr_signer: Some(crate::hub::dps_csr_signer()),
        port,
        echo: true,
        amqp_port: Some(0),
        websocket_port: Some(0),
        clock,
        ..Default::default()
    };
    crate::hub::Hub::start(root, config).await
}
