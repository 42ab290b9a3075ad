//! The fleet runner: ramps devices up at a controlled rate, keeps their sessions, fires the
//! reconnect storm, stops cleanly, and turns it all into live figures and a report.

use super::figures::{Live, Phase, Sampler, record};
use super::report::{FORMAT, FailureGroup, Latencies, Messages, Report, StormReport};
use super::session::{self, End, Progress};
use super::shared::{FleetEvent, Load, RoundTrip, Shared, until_true};
use super::{Figures, FleetError, Shard};
use crate::mqtt::diagnose::{self, Context, Failure, FailureKind};
use crate::mqtt::{Endpoint, Flavor, HubRefusal, HubView, Identity, Step};
use crate::store::Workspace;
use rayon::prelude::*;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

/// One simulated device: its id and TLS configuration. What only a failure's diagnosis needs
/// (the parsed certificates, the CAs above them: about 4 KB a device) is read again from the
/// workspace when the device fails ([`FleetDevice::identity`]), not held by every device.
#[derive(Clone)]
pub struct FleetDevice {
    /// The device id (MQTT client id).
    pub id: String,
    /// Its chain as sent (leaf first) and its key; the configuration offers the same one.
    key: Arc<rustls::sign::CertifiedKey>,
    config: Arc<rustls::ClientConfig>,
    /// The workspace it was loaded from (one, shared by the fleet).
    ws: Arc<Workspace>,
}

impl FleetDevice {
    /// Its certificate chain and key, as the connection test knows them, read again from the
    /// workspace. When the workspace no longer holds the device (changed during the run), what
    /// the device sends stands alone: its chain, named by CN, with no CA above it known.
    pub fn identity(&self) -> Identity {
        Identity::from_workspace(&self.ws, &self.id).unwrap_or_else(|_| self.sent_identity())
    }

    fn sent_identity(&self) -> Identity {
        let now = self.ws.now();
        let sent = self
            .key
            .cert
            .iter()
            .filter_map(|c| {
                let view = crate::pki::inspect::CertView::from_der_at(c, now).ok()?;
                let name = view.cn.clone().unwrap_or_else(|| view.subject.clone());
                Some(crate::mqtt::identity::ChainCert {
                    name,
                    der: c.to_vec(),
                    view,
                })
            })
            .collect();
        Identity {
            device_id: self.id.clone(),
            source: format!("workspace device \"{}\"", self.id),
            sent,
            above: vec![],
            key_pem: String::new(),
            target: None,
            workspace: Some(self.ws.root().to_path_buf()),
        }
    }
}

impl std::fmt::Debug for FleetDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetDevice").field("id", &self.id).finish()
    }
}

/// Load the named workspace devices (in parallel) with the trust anchors for the server; a
/// failure names the first device of `names` that could not be loaded.
pub fn load_devices(
    ws: &Workspace,
    names: &[String],
    extra_ca: &[Vec<u8>],
    system_roots: bool,
) -> Result<Vec<FleetDevice>, FleetError> {
    // One verifier (the anchors parsed once) and one template for every device's
    // configuration: each device adds only its own key.
    let verifier = crate::dial::server_verifier(extra_ca, system_roots)
        .map_err(|e| FleetError::Selection(e.to_string()))?;
    let template =
        crate::dial::fleet_template(verifier).map_err(|e| FleetError::Selection(e.to_string()))?;
    let shared_ws = Arc::new(ws.clone());
    // Loaded in parallel, judged in order: the error names the first bad device of the list,
    // whichever thread finished first (rayon's own Result collect returns any of them).
    let loaded: Vec<Result<FleetDevice, FleetError>> = names
        .par_iter()
        .map(|name| {
            let identity = Identity::from_workspace(ws, name).map_err(|e| FleetError::Device {
                device: name.clone(),
                problem: e.to_string(),
            })?;
            let chain: Vec<Vec<u8>> = identity.sent.iter().map(|c| c.der.clone()).collect();
            let key = crate::dial::device_key(&chain, &identity.key_pem).map_err(|e| {
                FleetError::Device {
                    device: name.clone(),
                    problem: e.to_string(),
                }
            })?;
            let config = Arc::new(crate::dial::with_client_key(&template, key.clone()));
            Ok(FleetDevice {
                id: identity.device_id,
                key,
                config,
                ws: shared_ws.clone(),
            })
        })
        .collect();
    loaded.into_iter().collect()
}

/// Everything a fleet run needs.
pub struct Plan {
    /// The devices, each with its own TLS configuration.
    pub devices: Vec<FleetDevice>,
    /// The hub or broker they all connect to.
    pub endpoint: Endpoint,
    /// Azure topics (a hub) or plain ones (a broker).
    pub flavor: Flavor,
    /// The hub name for the Azure username when it differs from the host dialled.
    pub hub_hostname: Option<String>,
    /// New connections per second during ramp-up.
    pub connect_rate: f64,
    /// What each device sends.
    pub load: Load,
    /// Stop after this long (`None`: when the message counts are done, or on stop).
    pub duration: Option<Duration>,
    /// Telemetry QoS, 0 or 1.
    pub qos: u8,
    /// Drop and reconnect every device at once, `storm_after` after ramp-up (the steady
    /// state measured before it).
    pub storm: bool,
    /// How long after ramp-up the storm fires.
    pub storm_after: Duration,
    /// Every network step, acknowledgement and round trip.
    pub timeout: Duration,
    /// How round trips are timed.
    pub round_trip: RoundTrip,
    /// Handshakes in flight at once during ramp-up.
    pub in_flight: usize,
    /// The local hub, which can say why it refused a device.
    pub hub: Option<Arc<dyn HubView>>,
    /// Which shard of the fleet this run is, for the report.
    pub shard: Option<Shard>,
    /// How often the figures are refreshed.
    pub tick: Duration,
    /// Provision each device through DPS first (once, not again on a storm reconnect).
    pub dps: Option<DpsPlan>,
}

/// Where and how devices provision with `--dps`.
#[derive(Clone, Debug)]
pub struct DpsPlan {
    /// The DPS instance's ID scope (in each device's DPS username).
    pub id_scope: String,
    /// The DPS endpoint (the local hub's own address for the local DPS).
    pub host: String,
    /// The DPS port (8883 for Azure's).
    pub port: u16,
}

impl Plan {
    /// A plan with the defaults: 100 connects a second, 200 handshakes in flight, 5 messages
    /// per device at QoS 1, 10 s per network step, no storm, no round trips, figures every
    /// 250 ms.
    pub fn new(devices: Vec<FleetDevice>, endpoint: Endpoint, flavor: Flavor) -> Plan {
        Plan {
            devices,
            endpoint,
            flavor,
            hub_hostname: None,
            connect_rate: 100.0,
            load: Load::Messages(5),
            duration: None,
            qos: 1,
            storm: false,
            storm_after: Duration::from_secs(10),
            timeout: Duration::from_secs(10),
            round_trip: RoundTrip::None,
            in_flight: 200,
            hub: None,
            shard: None,
            tick: Duration::from_millis(250),
            dps: None,
        }
    }
}

/// A run in progress: read its figures, stop it, await its report.
pub struct FleetRun {
    /// The latest [`Figures`], refreshed every [`Plan::tick`]; read whenever a face draws.
    pub figures: watch::Receiver<Figures>,
    /// [`FleetEvent`]s in order, for logs and `--json`.
    pub events: mpsc::UnboundedReceiver<FleetEvent>,
    stop: Arc<watch::Sender<bool>>,
    storm: Arc<watch::Sender<u64>>,
    task: tokio::task::JoinHandle<Report>,
}

/// A handle that stops a run (or fires a storm) from anywhere, e.g. a Ctrl-C handler.
#[derive(Clone)]
pub struct Control {
    stop: Arc<watch::Sender<bool>>,
    storm: Arc<watch::Sender<u64>>,
}

impl Control {
    /// Stop the run: devices disconnect and the report is written (`stopped: interrupted`).
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
    /// Fire a reconnect storm now: every connected device is dropped and reconnects.
    pub fn storm(&self) {
        self.storm.send_modify(|g| *g += 1);
    }
}

impl FleetRun {
    /// A handle that stops the run or fires a storm, usable after `self` is awaited.
    pub fn control(&self) -> Control {
        Control {
            stop: self.stop.clone(),
            storm: self.storm.clone(),
        }
    }
    /// The report, once every device has stopped.
    pub async fn finish(self) -> Report {
        match self.task.await {
            Ok(r) => r,
            Err(_) => Report {
                format: FORMAT,
                stopped: "interrupted".into(),
                ..Default::default()
            },
        }
    }
}

/// Start the run on the current tokio runtime.
pub fn start(plan: Plan) -> FleetRun {
    let (fig_tx, fig_rx) = watch::channel(Figures::default());
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let (stop_tx, _) = watch::channel(false);
    let (storm_tx, _) = watch::channel(0u64);
    let stop_tx = Arc::new(stop_tx);
    let storm_tx = Arc::new(storm_tx);
    let task = tokio::spawn(drive(
        plan,
        fig_tx,
        ev_tx,
        stop_tx.clone(),
        storm_tx.clone(),
    ));
    FleetRun {
        figures: fig_rx,
        events: ev_rx,
        stop: stop_tx,
        storm: storm_tx,
        task,
    }
}

/// Failed devices whose identity is read back from the workspace at once (on the blocking
/// pool), to explain their failure.
const READERS: usize = 2;

/// Storm reconnects: attempts per device before it counts as failed.
const STORM_ATTEMPTS: u32 = 8;

/// When the phases of a run began and ended, for its report.
#[derive(Default)]
struct Marks {
    /// Ramp-up over: (seconds, handshakes by then).
    ramp: Option<(f64, u64)>,
    ramp_sent: u64,
    /// (when, devices connected) as the storm began.
    storm_began: Option<(Instant, u64)>,
    storm_report: Option<StormReport>,
    /// (seconds, messages sent) as the storm began: steady state ends there.
    storm_steady: Option<(f64, u64)>,
    steady_end_t: f64,
    steady_end_sent: u64,
    stopped: &'static str,
    elapsed_s: f64,
}

/// Resolve the target once and build what the devices share.
async fn prepare(
    plan: &Plan,
    events: &mpsc::UnboundedSender<FleetEvent>,
    stop_tx: &watch::Sender<bool>,
    storm_tx: &watch::Sender<u64>,
    t0: Instant,
) -> (Arc<Shared>, FailureKind) {
    let server_name = rustls::pki_types::ServerName::try_from(plan.endpoint.host.clone())
        .unwrap_or_else(|_| {
            rustls::pki_types::ServerName::try_from("invalid.invalid").expect("a valid name")
        });
    let resolved = tokio::time::timeout(
        plan.timeout,
        tokio::net::lookup_host((plan.endpoint.host.as_str(), plan.endpoint.port)),
    )
    .await;
    let (addrs, resolve_failure): (Vec<SocketAddr>, FailureKind) = match resolved {
        Ok(Ok(a)) => (a.collect(), FailureKind::Dns("no addresses".into())),
        Ok(Err(e)) => (vec![], FailureKind::Dns(e.to_string())),
        Err(_) => (vec![], FailureKind::Timeout(plan.timeout)),
    };
    let dps = match &plan.dps {
        None => None,
        Some(p) => {
            let addr = tokio::time::timeout(
                plan.timeout,
                tokio::net::lookup_host((p.host.as_str(), p.port)),
            )
            .await
            .ok()
            .and_then(|r| r.ok())
            .and_then(|mut a| a.next());
            Some((p.id_scope.clone(), addr, p.host.clone()))
        }
    };
    let sh = Arc::new(Shared {
        dps,
        addrs,
        server_name,
        endpoint: plan.endpoint.clone(),
        flavor: plan.flavor,
        username_host: plan
            .hub_hostname
            .clone()
            .unwrap_or_else(|| plan.endpoint.host.clone()),
        qos: plan.qos,
        timeout: plan.timeout,
        load: plan.load,
        round_trip: plan.round_trip,
        live: Live::default(),
        stop: stop_tx.subscribe(),
        storm: storm_tx.subscribe(),
        finished: AtomicU64::new(0),
        attempted: AtomicU64::new(0),
        storm_dropped: AtomicU64::new(0),
        storm_back: AtomicU64::new(0),
        storm_failed: AtomicU64::new(0),
        hub: plan.hub.clone(),
        events: events.clone(),
        gate: Semaphore::new(plan.in_flight.max(1)),
        reading: Semaphore::new(READERS),
        t0,
        connect_rate: plan.connect_rate,
    });
    (sh, resolve_failure)
}

async fn drive(
    mut plan: Plan,
    figures: watch::Sender<Figures>,
    events: mpsc::UnboundedSender<FleetEvent>,
    stop_tx: Arc<watch::Sender<bool>>,
    storm_tx: Arc<watch::Sender<u64>>,
) -> Report {
    let t0 = Instant::now();
    let n = plan.devices.len() as u64;
    let _ = events.send(FleetEvent::Start {
        devices: n,
        target: plan.endpoint.display(),
        flavor: plan.flavor,
        qos: plan.qos,
        shard: plan.shard.map(|s| s.to_string()),
    });
    let (sh, resolve_failure) = prepare(&plan, &events, &stop_tx, &storm_tx, t0).await;
    let mut devices = tokio::task::JoinSet::new();
    // Each device moves into its task: the run holds no second copy of any of them.
    let fleet = std::mem::take(&mut plan.devices);
    if sh.addrs.is_empty() {
        // Nothing to dial: every device fails the same way, explained once per device.
        for d in &fleet {
            fail(&sh, d, Failure::new(Step::Resolve, resolve_failure.clone())).await;
            sh.attempted.fetch_add(1, Relaxed);
        }
    } else {
        for (i, d) in fleet.into_iter().enumerate() {
            let sh = sh.clone();
            devices.spawn(device(sh, d, i));
        }
    }

    let mut sampler = Sampler::default();
    let mut phase = Phase::RampUp;
    let mut m = Marks::default();
    let mut storm_at: Option<Instant> = None;
    let mut stop = stop_tx.subscribe();
    let mut ticker = tokio::time::interval(
        plan.tick
            .min(Duration::from_millis(50))
            .max(Duration::from_millis(10)),
    );
    let mut last_figures = Instant::now() - plan.tick;
    let deadline = plan.duration.map(|d| t0 + d);
    let stopped = loop {
        tokio::select! {
            _ = until_true(&mut stop) => break "interrupted",
            _ = ticker.tick() => {}
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break "duration";
        }
        let attempted = sh.attempted.load(Relaxed);
        if m.ramp.is_none() && attempted >= n {
            let s = t0.elapsed().as_secs_f64();
            m.ramp = Some((s, sh.live.handshakes.load(Relaxed)));
            m.ramp_sent = sh.live.sent.load(Relaxed);
            phase = Phase::Steady;
            let _ = events.send(FleetEvent::RampedUp {
                s,
                connected: sh.live.connected.load(Relaxed),
                failed: sh.live.failed.load(Relaxed),
            });
            if plan.storm {
                storm_at = Some(now + plan.storm_after);
            }
        }
        if storm_at.is_some_and(|t| now >= t) && m.storm_began.is_none() {
            storm_at = None;
            let c = sh.live.connected.load(Relaxed);
            m.storm_began = Some((now, c));
            m.storm_steady = Some((t0.elapsed().as_secs_f64(), sh.live.sent.load(Relaxed)));
            phase = Phase::Storm;
            let _ = events.send(FleetEvent::StormBegin { devices: c });
            storm_tx.send_modify(|g| *g += 1);
        }
        if let Some((at, c)) = m.storm_began {
            if m.storm_report.is_none() {
                let back = sh.storm_back.load(Relaxed);
                let failed = sh.storm_failed.load(Relaxed);
                if back + failed >= c {
                    let s = at.elapsed().as_secs_f64();
                    m.storm_report = Some(StormReport {
                        devices: c,
                        back,
                        failed,
                        still_reconnecting: 0,
                        retries: sh.live.storm_retries.load(Relaxed),
                        time_to_all_back_s: Some(s),
                    });
                    phase = Phase::Steady;
                    let _ = events.send(FleetEvent::StormEnd { s, back, failed });
                }
            }
        }
        let storm_over = !plan.storm || m.storm_report.is_some();
        if let Load::Messages(_) = plan.load {
            let done = sh.finished.load(Relaxed) + sh.live.failed.load(Relaxed);
            if m.ramp.is_some() && done >= n && storm_over {
                break "completed";
            }
        }
        if m.ramp.is_some() && sh.live.failed.load(Relaxed) >= n {
            break "completed";
        }
        if now >= last_figures + plan.tick {
            last_figures = now;
            figures.send_replace(sampler.sample(&sh.live, n, t0.elapsed().as_secs_f64(), phase));
        }
    };
    let _ = events.send(FleetEvent::Stopping {
        reason: stopped.to_string(),
    });
    let stop_t = t0.elapsed().as_secs_f64();
    let sent_at_stop = sh.live.sent.load(Relaxed);
    // Steady state ends where the storm begins.
    (m.steady_end_t, m.steady_end_sent) = m.storm_steady.unwrap_or((stop_t, sent_at_stop));
    figures.send_replace(sampler.sample(&sh.live, n, stop_t, Phase::Stopping));
    stop_tx.send_replace(true);
    // Devices stop within their own timeouts (drain, DISCONNECT); keep the figures moving.
    loop {
        tokio::select! {
            r = devices.join_next() => if r.is_none() { break },
            _ = tokio::time::sleep(plan.tick) => {
                figures.send_replace(sampler.sample(&sh.live, n, t0.elapsed().as_secs_f64(), Phase::Stopping));
            }
        }
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    figures.send_replace(sampler.sample(&sh.live, n, elapsed_s, Phase::Done));
    if let (Some((_, c)), None) = (m.storm_began, &m.storm_report) {
        let (back, failed) = (sh.storm_back.load(Relaxed), sh.storm_failed.load(Relaxed));
        m.storm_report = Some(StormReport {
            devices: c,
            back,
            failed,
            still_reconnecting: c.saturating_sub(back + failed),
            retries: sh.live.storm_retries.load(Relaxed),
            time_to_all_back_s: None,
        });
    }
    m.elapsed_s = elapsed_s;
    m.stopped = stopped;
    report(&plan, n, &sh, &m)
}

/// What a run of `n` devices measured, once every device has stopped.
fn report(plan: &Plan, n: u64, sh: &Shared, m: &Marks) -> Report {
    let live = &sh.live;
    let failed = live.failed.load(Relaxed);
    let steady = m
        .ramp
        .map(|(t, _)| {
            (
                m.steady_end_sent.saturating_sub(m.ramp_sent),
                m.steady_end_t - t,
            )
        })
        .filter(|(_, s)| *s > 0.5);
    Report {
        format: FORMAT,
        target: plan.endpoint.display(),
        flavor: plan.flavor.as_str().into(),
        qos: plan.qos,
        shards: plan.shard.into_iter().collect(),
        runs: 1,
        devices: n,
        connected: live.ever_connected.load(Relaxed),
        failed,
        provisioned: live.provisioned.load(Relaxed),
        handshakes: live.handshakes.load(Relaxed),
        messages: Messages {
            sent: live.sent.load(Relaxed),
            acked: live.acked.load(Relaxed),
            ack_lost: live.ack_lost.load(Relaxed),
            storm_dropped: live.ack_dropped_by_storm.load(Relaxed),
            round_trips: live.round_trips.load(Relaxed),
            round_trips_lost: live.round_trips_lost.load(Relaxed),
        },
        stopped: m.stopped.into(),
        elapsed_s: m.elapsed_s,
        ramp_up_s: m.ramp.map(|r| r.0),
        handshakes_per_s_ramp: m.ramp.filter(|r| r.0 > 0.0).map(|(t, h)| h as f64 / t),
        messages_per_s: match steady {
            Some((sent, s)) => sent as f64 / s,
            None if m.elapsed_s > 0.0 => live.sent.load(Relaxed) as f64 / m.elapsed_s,
            None => 0.0,
        },
        failures: live
            .failures
            .lock()
            .map(|f| {
                f.iter()
                    .map(|(k, g)| {
                        let devices = super::select::compress_ids(&g.devices);
                        (
                            k.clone(),
                            FailureGroup {
                                devices,
                                ..g.clone()
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
        latency: Latencies {
            handshake: Live::latency(&live.handshake_us),
            ack: Live::latency(&live.ack_us),
            round_trip: Live::latency(&live.round_trip_us),
            provision: Live::latency(&live.provision_us),
        },
        storm: m.storm_report.clone(),
    }
}

/// Bytes of one device's task as tokio holds it (the state of [`device`]'s future, the
/// boxed step under way not included): the fleet bench prints it beside the memory a device
/// costs.
#[doc(hidden)]
pub fn device_task_bytes() -> usize {
    fn state<F, Fut>(_: &F) -> usize
    where
        F: FnOnce(Arc<Shared>, FleetDevice, usize) -> Fut,
    {
        std::mem::size_of::<Fut>()
    }
    state(&device)
}

/// One device from ramp-up to stop.
async fn device(sh: Arc<Shared>, d: FleetDevice, index: usize) {
    let mut stop = sh.stop.clone();
    // Ramp-up: this device's slot at the connect rate.
    let slot = sh.t0 + Duration::from_secs_f64(index as f64 / sh.connect_rate);
    tokio::select! {
        _ = tokio::time::sleep_until(slot) => {}
        _ = until_true(&mut stop) => { sh.attempted.fetch_add(1, Relaxed); return; }
    }
    // Every longer step below is boxed, so the task holds only the one under way (the
    // session while connected) and not the largest of them all at once: the fleet's memory
    // is mostly its idle devices' tasks.
    let assigned = match &sh.dps {
        None => None,
        Some(_) => match Box::pin(provision(&sh, &d)).await {
            Some(id) => Some(id),
            None => {
                sh.attempted.fetch_add(1, Relaxed);
                return;
            }
        },
    };
    let id = assigned.as_deref().unwrap_or(&d.id);
    let mut progress = Progress::default();
    let mut first = true;
    let mut in_storm = false;
    let mut attempt = 0u32;
    loop {
        let storm_seen = *sh.storm.borrow();
        // A storm's devices want back all at once, and they queue for the same handshake
        // slots as the ramp-up: one address holding more than the hub lets one peer hold
        // before authentication (256) had most of them closed at accept, where each sat out
        // its backoff while the hub idled; the storm outlasted the run (or gave up after
        // STORM_ATTEMPTS) unless the run was made longer.
        let permit = tokio::select! {
            p = sh.gate.acquire() => p.ok(),
            _ = until_true(&mut stop) => { if first { sh.attempted.fetch_add(1, Relaxed); } return; }
        };
        sh.live.connecting.fetch_add(1, Relaxed);
        let t = Instant::now();
        let result = tokio::select! {
            r = Box::pin(session::connect(&sh, id, d.config.clone())) => Some(r),
            _ = until_true(&mut stop) => None,
        };
        sh.live.connecting.fetch_sub(1, Relaxed);
        drop(permit);
        let conn = match result {
            // Stopped while connecting: a storm device still on its way back is not a failure.
            None => {
                if first {
                    sh.attempted.fetch_add(1, Relaxed);
                }
                return;
            }
            Some(Ok(c)) => c,
            Some(Err(f)) => {
                if in_storm && attempt + 1 < STORM_ATTEMPTS {
                    attempt += 1;
                    sh.live.storm_retries.fetch_add(1, Relaxed);
                    // Back off with jitter, as device SDKs do, so retries do not collide again.
                    let base = Duration::from_millis(100) * 2u32.pow(attempt.min(6));
                    let wait = base
                        .min(Duration::from_secs(5))
                        .mul_f64(0.5 + rand::random::<f64>());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => continue,
                        _ = until_true(&mut stop) => return,
                    }
                }
                if in_storm {
                    sh.storm_failed.fetch_add(1, Relaxed);
                }
                Box::pin(fail(&sh, &d, f)).await;
                if first {
                    sh.attempted.fetch_add(1, Relaxed);
                }
                return;
            }
        };
        record(&sh.live.handshake_us, t.elapsed());
        sh.live.handshakes.fetch_add(1, Relaxed);
        sh.live.connected.fetch_add(1, Relaxed);
        if first {
            sh.live.ever_connected.fetch_add(1, Relaxed);
            sh.attempted.fetch_add(1, Relaxed);
            first = false;
        }
        if in_storm {
            sh.storm_back.fetch_add(1, Relaxed);
        }
        attempt = 0;
        let end = Box::pin(session::session(&sh, id, conn, &mut progress, storm_seen)).await;
        sh.live.connected.fetch_sub(1, Relaxed);
        match end {
            End::Stopped => return,
            End::Storm => {
                sh.storm_dropped.fetch_add(1, Relaxed);
                in_storm = true;
                continue;
            }
            End::Failed(f) => {
                Box::pin(fail(&sh, &d, f)).await;
                return;
            }
        }
    }
}

/// Provision `d` through DPS (its own certificate, polling until assigned, as `connect --dps`
/// does): the assigned device id, or None when it failed (counted) or the run stopped.
async fn provision(sh: &Shared, d: &FleetDevice) -> Option<String> {
    use crate::azure::dps as wire;
    use crate::dps_client;
    let (scope, addr, host) = sh.dps.as_ref()?;
    let mut stop = sh.stop.clone();
    let _permit = tokio::select! {
        p = sh.gate.acquire() => p.ok(),
        _ = until_true(&mut stop) => return None,
    };
    let Some(addr) = *addr else {
        fail_dps(
            sh,
            d,
            "dps-failed",
            format!("the DPS host {host} did not resolve"),
        )
        .await;
        return None;
    };
    let device = dps_client::Device {
        registration_id: d.id.clone(),
        chain: d.key.cert.iter().map(|c| c.to_vec()).collect(),
        key_pem: String::new(), // the TLS configuration below already holds the key
        trust: vec![],
    };
    let request = wire::RegisterRequest {
        registration_id: d.id.clone(),
        payload: None,
        csr: None,
    };
    sh.live.connecting.fetch_add(1, Relaxed);
    let t = Instant::now();
    let mut quiet = |_| {};
    let r = tokio::select! {
        r = dps_client::provision(
            addr, host, d.config.clone(), &device, scope, wire::API_VERSION, &request,
            sh.timeout, None, &mut quiet,
        ) => Some(r),
        _ = until_true(&mut stop) => None,
    };
    sh.live.connecting.fetch_sub(1, Relaxed);
    match r? {
        Ok(st) => {
            record(&sh.live.provision_us, t.elapsed());
            sh.live.provisioned.fetch_add(1, Relaxed);
            Some(st.device_id.unwrap_or_else(|| d.id.clone()))
        }
        Err(e) => {
            fail_dps(sh, d, e.kind(), e.to_string()).await;
            None
        }
    }
}

/// Count a device whose provisioning failed: DPS's message is the cause, with the local hub's
/// own reason when it has one. `kind` groups it ([`crate::dps_client::DpsError::kind`]).
async fn fail_dps(sh: &Shared, d: &FleetDevice, kind: &'static str, reason: String) {
    let kind = kind.to_string();
    let hub_says = match sh.hub.as_ref() {
        Some(hub) => hub.refusal(&d.id).await,
        None => None,
    };
    let cause = match hub_says {
        Some(r) if !reason.contains(&r.reason) => {
            format!("{reason}; the hub log says: {} ({})", r.reason, r.kind)
        }
        _ => reason,
    };
    // Domain words: a face adds its commands by the kind (the CLI's fleet report does).
    let fix = match kind.as_str() {
        "dps-unauthorized" => {
            "enroll the device in DPS, or its CA in an enrollment group, and prove possession of that CA to DPS"
        }
        "dps-forbidden" => "enable the device's enrollment",
        "dps-not-found" => "check the ID scope and the enrollment",
        "dps-connect-refused" => "check the ID scope against this DPS's (the hub log says why)",
        "dps-timeout" => "check that DPS is reachable, or allow a longer timeout",
        _ => "see the cause; a connection test through DPS shows each step",
    };
    let fix = fix.to_string();
    // DPS's registration is an MQTT exchange before the hub's CONNECT.
    count_failure(sh, d, kind, Step::MqttConnect, cause, fix, None);
}

/// Count a failed device in its group (the first one's cause and fix stand for the group)
/// and tell the face.
fn count_failure(
    sh: &Shared,
    d: &FleetDevice,
    kind: String,
    step: Step,
    cause: String,
    fix: String,
    remedy: Option<crate::mqtt::ConnectRemedy>,
) {
    if let Ok(mut g) = sh.live.failures.lock() {
        let group = g.entry(kind.clone()).or_insert_with(|| FailureGroup {
            count: 0,
            example: d.id.clone(),
            cause: cause.clone(),
            fix,
            remedy,
            peer: Some(sh.endpoint.peer),
            devices: Vec::new(),
        });
        group.count += 1;
        group.devices.push(d.id.clone());
    }
    sh.live.failed.fetch_add(1, Relaxed);
    let _ = sh.events.send(FleetEvent::DeviceFailed {
        device: d.id.clone(),
        kind,
        step,
        cause,
    });
}

/// The diagnosis kind a failure is grouped under: the connection test's code, with the
/// local hub's refusal kinds as they are (`disabled`, `unknown-device`, ...).
fn group_of(code: &str) -> String {
    match code {
        "connack-3" => "throttled".into(),
        c => c.strip_prefix("hub-").unwrap_or(c).to_string(),
    }
}

/// Count a device as failed under its diagnosis.
async fn fail(sh: &Shared, d: &FleetDevice, f: Failure) {
    let f = match (f.kind, sh.hub.as_ref()) {
        (
            FailureKind::Connack {
                code,
                hub_reason: None,
            },
            Some(hub),
        ) => Failure::new(
            f.step,
            FailureKind::Connack {
                code,
                hub_reason: hub.refusal(&d.id).await,
            },
        ),
        (kind, _) => Failure::new(f.step, kind),
    };
    // Read back from the workspace off the runtime's threads and a few at a time, so a fleet
    // whose every device fails at once neither stalls the others' timers nor starts a
    // thread for each.
    let identity = {
        let _reading = sh.reading.acquire().await.ok();
        let of = d.clone();
        tokio::task::spawn_blocking(move || of.identity())
            .await
            .unwrap_or_else(|_| d.sent_identity())
    };
    let cx = Context {
        identity: &identity,
        endpoint: &sh.endpoint,
        server_cert: None,
        acceptable_cas: &[],
        preflight: &[],
        timeout: sh.timeout,
    };
    let aws = crate::mqtt::aws::explain(sh.hub.as_deref(), &f, &identity, &sh.endpoint);
    let dx = match aws.await {
        Some(dx) => dx,
        None => diagnose::diagnose(&f, &cx),
    };
    let kind = group_of(&dx.code);
    count_failure(sh, d, kind, f.step, dx.cause, dx.fix, dx.remedy);
}

/// A running `hub serve` asked through its control socket why it refused a device.
#[derive(Debug)]
pub(crate) struct ControlRefusals {
    /// The running hub's control socket (`WS/hub/control.sock`).
    pub control: std::path::PathBuf,
    /// Refusals before the run (by seq) do not count.
    pub since: u64,
}

impl HubView for ControlRefusals {
    fn refusal<'a>(
        &'a self,
        device_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<HubRefusal>> {
        Box::pin(async move {
            // The hub records the refusal as it sends CONNACK 5: a few quick asks suffice.
            for _ in 0..10 {
                if let Ok(list) =
                    crate::hub::control::refusals(&self.control, Some(device_id), self.since).await
                {
                    if let Some(r) = list.last() {
                        return Some(HubRefusal {
                            kind: r.kind.clone(),
                            reason: r.reason.clone(),
                        });
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            None
        })
    }

    fn missing<'a>(
        &'a self,
        _device_id: &'a str,
        ids: &'a [u32],
        _wait: Duration,
    ) -> futures::future::BoxFuture<'a, Vec<u32>> {
        Box::pin(async move { ids.to_vec() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainsmith_test_support::workspace::{new_ca, new_devices, with_root};

    fn names(certs: &[crate::mqtt::identity::ChainCert]) -> Vec<&str> {
        certs.iter().map(|c| c.name.as_str()).collect()
    }

    #[test]
    fn a_failed_device_is_explained_from_the_workspace_or_from_what_it_sends() {
        let dir = tempfile::tempdir().unwrap();
        let ws = with_root(&dir.path().join("ws"), "root");
        new_ca(&ws, "line2", Some("root"));
        new_devices(&ws, "d-1", "line2");
        let root = ws.load("root").unwrap().cert_der;
        let devices = load_devices(&ws, &["d-1".to_string()], &[root], false).unwrap();
        // Read back as the connection test knows it: the chain it sends, the root above.
        let id = devices[0].identity();
        assert_eq!(id.device_id, "d-1");
        assert_eq!(names(&id.sent), ["d-1", "line2"]);
        assert_eq!(names(&id.above), ["root"]);
        assert!(!id.key_pem.is_empty());
        // The workspace lost the device during the run: what it sends, named by CN.
        std::fs::remove_dir_all(ws.root().join("entities/d-1")).unwrap();
        let id = devices[0].identity();
        assert_eq!(id.device_id, "d-1");
        assert_eq!(names(&id.sent), ["d-1", "line2"]);
        assert!(id.above.is_empty());
    }
}
