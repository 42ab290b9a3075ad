//! The hub: its lifecycle ([`Hub::start`], [`HubHandle`]), the state its transports share
//! ([`Shared`]) and the rules every transport applies (admission, one session per device id).
//! The transports are [`super::mqtt`], [`super::amqp`] and [`super::websocket`]; the events
//! they emit are [`super::events`].
//!
//! One tokio task per connection; the registry is re-read when it changes and IoT Hub's rules
//! applied ([`super::auth`]) by every transport alike.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use rumqttc::mqttbytes::QoS;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::auth;
use super::budget::PeerBudget;
use super::registry::{HubStore, Registry, RegistryError};
use crate::azure::{self, DeviceSubscription, Properties};
use chainsmith_server::listener::{self, Accepted, Gate, Service};

pub use super::events::*;
use super::mqtt::*;
use super::session::Subscriptions;

/// No CONNECT this long after the TCP accept: close.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many subscriptions per connection (IoT Hub's devices use 4: C2D, twin
/// responses, desired, methods; one spare).
pub(super) const MAX_SUBSCRIPTIONS: usize = 5;
/// Cloud-to-device messages queued per device while it is offline (IoT Hub's limit is 50).
const C2D_QUEUE: usize = 50;
pub use crate::MAX_PACKET;
/// Bytes a connection may send before its CONNECT is complete. An IoT Hub CONNECT holds a
/// client id (at most 128), a username (about 300) and at most a SAS token, so 8 KiB is ample,
/// and a peer nobody has authenticated yet cannot make the hub hold more.
pub const MAX_CONNECT_BYTES: usize = 8 * 1024;
pub use super::amqp::{MAX_LINKS_PER_CONNECTION, MAX_REFUSED_LINKS};
pub use super::budget::{
    MAX_DPS_SESSIONS, MAX_DPS_SESSIONS_PER_PEER, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PEER,
};
pub use chainsmith_server::listener::TLS_HANDSHAKE_TIMEOUT;
/// How long a DPS session may stay open. Azure documents no lifetime; a registration is one
/// register and a few polls `retry-after` (3 s) apart, done in seconds, so two minutes is
/// generous, and a session that idles on a self-signed certificate (which DPS accepts at
/// CONNECT) cannot hold its descriptor for the 44 minutes keep-alive would allow.
pub const DPS_SESSION_LIFETIME: Duration = Duration::from_secs(120);
/// Refusals a hub remembers for [`HubHandle::status`] and [`HubHandle::refusals`] (oldest dropped).
pub const REFUSAL_RING: usize = 100;

/// One CONNACK 5 the hub sent, as `{"op":"status"}` and `{"op":"refusals"}` report it.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct RefusalRecord {
    /// Increases by one per refusal since the hub started: ask for `since` the last one seen.
    pub seq: u64,
    /// The client id of the CONNECT (absent when it was empty).
    pub device: Option<String>,
    /// The TCP address the refused connection came from.
    pub peer: SocketAddr,
    /// [`auth::Refusal::kind`], e.g. `device-disabled`, `cn-mismatch`.
    pub kind: String,
    /// The hub's own sentence, as its log prints it.
    pub reason: String,
    /// When the hub refused (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub time: OffsetDateTime,
}

/// What a running hub says about itself (`{"op":"status"}`).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub struct HubStatus {
    /// The address the hub listens on (as bound: `0.0.0.0` when bound to every interface).
    pub addr: SocketAddr,
    /// The MQTT port actually bound (the one picked when 0 was asked for).
    pub port: u16,
    /// Whether every telemetry message is answered with a C2D echo (`--echo`).
    pub echo: bool,
    /// `--hostname`: the extra server-certificate name, when given.
    pub hostname: Option<String>,
    /// Devices connected now.
    pub connected: Vec<String>,
    /// The AMQP port, when AMQP is on.
    #[serde(default)]
    pub amqp_port: Option<u16>,
    /// The WebSocket port (MQTT and AMQP over WebSockets), when on.
    #[serde(default)]
    pub ws_port: Option<u16>,
    /// What the hub holds now against its budgets.
    #[serde(default)]
    pub load: HubLoad,
    /// The open-files limit at start and what the hub raised it to.
    #[serde(default)]
    pub open_files: Option<super::budget::OpenFiles>,
    /// Highest refusal `seq` so far (0: none yet).
    pub last_refusal: u64,
    /// The most recent refusals, oldest first (at most [`REFUSAL_RING`]).
    pub refusals: Vec<RefusalRecord>,
}

/// What a running hub holds against its budgets, for `{"op":"status"}`, tests and benches.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct HubLoad {
    /// Connections waiting to authenticate (at most [`MAX_UNAUTHENTICATED`]).
    pub unauthenticated: usize,
    /// Peers holding at least one of them.
    pub unauthenticated_peers: usize,
    /// Open DPS sessions (at most [`MAX_DPS_SESSIONS`]).
    pub dps_sessions: usize,
    /// Attached AMQP links, all connections together (at most
    /// [`super::amqp::MAX_LINKS_PER_CONNECTION`] per connection).
    pub amqp_links: usize,
}

/// How to start a hub: where it listens, which transports are on, how it answers.
#[derive(Clone, Debug)]
pub struct HubConfig {
    /// The address every listener binds (default 127.0.0.1; `0.0.0.0` lets other machines in).
    pub bind: IpAddr,
    /// 0 picks a free port (tests); `hub serve` defaults to 8883.
    pub port: u16,
    /// Answer every telemetry message with a C2D message correlated to it.
    pub echo: bool,
    /// Extra name for the server certificate's SANs.
    pub hostname: Option<String>,
    /// AMQP over TLS: `None` off, `Some(0)` a free port; `hub serve` defaults to 5671.
    pub amqp_port: Option<u16>,
    /// MQTT and AMQP over WebSockets (`/$iothub/websocket`): `None` off, `Some(0)` a free
    /// port; `hub serve` defaults to 443 when it may bind it.
    pub ws_port: Option<u16>,
    /// DPS's certificate issuance (`hub::dps_csr_signer()`); without it a CSR is refused.
    pub csr_signer: Option<super::dps::CsrSigner>,
    /// "Now" for every decision and stamp the hub makes: whether a device certificate is in
    /// its validity window, DPS registrations and issued certificates, refusal and enqueued
    /// times. `hub serve` passes the workspace's clock (running on); tests fix it. The hub's
    /// own TLS server certificate is the exception: the peers judge it by their real clocks.
    pub clock: Clock,
    /// How long a DPS session may stay open ([`DPS_SESSION_LIFETIME`]; tests shorten it).
    pub dps_session_lifetime: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: azure::MQTT_PORT,
            echo: false,
            hostname: None,
            amqp_port: None,
            ws_port: None,
            csr_signer: None,
            clock: Clock::System,
            dps_session_lifetime: DPS_SESSION_LIFETIME,
        }
    }
}

/// Why the hub could not start or could not do what the service side asked.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Reading or writing the hub's registry, twins or TLS files failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// A listener could not bind its address (the port is taken or needs privileges).
    #[error("cannot listen on {addr}: {source}; listen on another port, or stop what uses it")]
    Bind {
        /// The address that could not be bound.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// A direct method was called on a device with no open connection (or it went away
    /// before answering).
    #[error("device \"{0}\" is not connected to the hub")]
    Offline(String),
    /// A method call went to a device that has not subscribed to the topic filter it needs
    /// (device id, filter).
    #[error("device \"{0}\" has not subscribed to {1}")]
    NotSubscribed(String, &'static str),
    /// A device did not answer a direct method in time.
    #[error("device \"{device}\" did not answer method \"{name}\" within {secs} s")]
    Timeout {
        /// The device id.
        device: String,
        /// The method name.
        name: String,
        /// The time the hub waited, in seconds.
        secs: u64,
    },
    /// The hub stopped while the request was in flight.
    #[error("the hub is shutting down")]
    Closed,
}

impl HubError {
    /// A short machine-friendly name for `--json` errors and control-channel answers.
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::Registry(r) => r.kind(),
            HubError::Bind { .. } => "bind",
            HubError::Offline(_) => "device-offline",
            HubError::NotSubscribed(..) => "not-subscribed",
            HubError::Timeout { .. } => "timeout",
            HubError::Closed => "hub-closed",
        }
    }

    /// What would fix it, for a face to turn into its own hint.
    pub fn remedy(&self) -> Option<crate::error::Remedy> {
        match self {
            HubError::Registry(r) => r.remedy(),
            HubError::Bind { .. } => Some(crate::error::Remedy::Port),
            _ => None,
        }
    }
}

impl crate::error::Classified for HubError {
    fn kind(&self) -> &'static str {
        HubError::kind(self)
    }
    fn remedy(&self) -> Option<crate::error::Remedy> {
        HubError::remedy(self)
    }
}

pub(super) enum Outbound {
    Publish { topic: String, payload: Vec<u8> },
    Kick(String),
}

pub(super) struct SessionHandle {
    conn: u64,
    tx: mpsc::Sender<Outbound>,
    subs: Arc<Mutex<Vec<(String, QoS, DeviceSubscription)>>>,
}

/// Queued C2D messages per device: (topic, body).
type C2dQueue = HashMap<String, VecDeque<(String, Vec<u8>)>>;
/// Method calls waiting for their answer, by `$rid`: (status, payload).
type Pending = HashMap<String, oneshot::Sender<(u16, Vec<u8>)>>;

pub(super) struct Shared {
    pub(super) store: HubStore,
    pub(super) config: HubConfig,
    events: broadcast::Sender<HubEvent>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    pub(super) c2d_queue: Mutex<C2dQueue>,
    pub(super) pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// `serve --id-scope`: the ID scope DPS answers to instead of the workspace's.
    pub(super) id_scope: Option<String>,
    /// DPS operations (register answers) a device may poll, by operation id.
    pub(super) dps_ops: Mutex<super::dps::mqtt::Operations>,
    /// The registry as last read, keyed by the file's (inode, size, mtime): every CONNECT
    /// checks the file and re-reads it when it changed.
    /// The chain check's trust anchors are built with it, once per registry version.
    registry: Mutex<Option<(RegistryKey, RegistryNow)>>,
    /// The last [`REFUSAL_RING`] refusals and the highest seq handed out.
    refusals: Mutex<(VecDeque<RefusalRecord>, u64)>,
    /// The accept loops' shared state: the pre-authentication budget ([`MAX_UNAUTHENTICATED`],
    /// per peer [`MAX_UNAUTHENTICATED_PER_PEER`]), the over-cap log limiter and the stop.
    pub(super) gate: Gate,
    /// One slot per open DPS session ([`MAX_DPS_SESSIONS`], per peer
    /// [`MAX_DPS_SESSIONS_PER_PEER`]).
    pub(super) dps_sessions: PeerBudget,
    /// AMQP links attached now, all connections together.
    pub(super) amqp_links: Arc<AtomicUsize>,
    /// The open-files limit at start.
    open_files: super::budget::OpenFiles,
}

type RegistryKey = (u64, u64, Option<std::time::SystemTime>);
type RegistryNow = (Arc<Registry>, Arc<auth::HubTrust>);

/// The registry as it is on disk now (re-parsed only when the file changed).
async fn current_registry(sh: &Arc<Shared>) -> Result<Result<RegistryNow, RegistryError>, ()> {
    let sh2 = sh.clone();
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::MetadataExt;
        let key = std::fs::metadata(sh2.store.registry_path())
            .map(|m| (m.ino(), m.size(), m.modified().ok()))
            .unwrap_or((0, 0, None));
        if let Some((k, r)) = sh2.registry.lock().expect("registry").as_ref()
            && *k == key
            && key.0 != 0
        {
            return Ok(r.clone());
        }
        let reg = Arc::new(sh2.store.load()?);
        let trust = Arc::new(auth::HubTrust::new(&reg));
        *sh2.registry.lock().expect("registry") = Some((key, (reg.clone(), trust.clone())));
        Ok((reg, trust))
    })
    .await
    .map_err(|_| ())
}

impl Shared {
    pub(super) fn remember_refusal(
        &self,
        peer: SocketAddr,
        device: Option<String>,
        kind: &str,
        reason: String,
    ) {
        let mut r = self.refusals.lock().expect("refusals");
        r.1 += 1;
        let rec = RefusalRecord {
            seq: r.1,
            device,
            peer,
            kind: kind.to_string(),
            reason,
            time: self.config.clock.now(),
        };
        if r.0.len() >= REFUSAL_RING {
            r.0.pop_front();
        }
        r.0.push_back(rec);
    }
    pub(super) fn emit(&self, e: HubEvent) {
        // A state file found unreadable (and set aside) while serving is said before the
        // event it came with.
        for n in self.store.take_set_aside() {
            let _ = self.events.send(HubEvent::StateSetAside {
                note: n.to_string(),
            });
        }
        let _ = self.events.send(e);
    }
    pub(super) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    fn subscribed(&self, device: &str, kind: DeviceSubscription) -> Option<mpsc::Sender<Outbound>> {
        let s = self.sessions.lock().expect("sessions");
        let h = s.get(device)?;
        let subs = h.subs.lock().expect("subs");
        subs.iter()
            .any(|(_, _, k)| *k == kind)
            .then(|| h.tx.clone())
    }
}

/// The entry point: `Hub::start` binds and serves in the background.
pub struct Hub;

impl Hub {
    /// Bind the MQTT listener (and AMQP and WebSocket ones when asked) on `config`, serve the
    /// workspace at `ws_root` in background tasks, and return the handle that stops them.
    pub async fn start(ws_root: &Path, config: HubConfig) -> Result<HubHandle, HubError> {
        Hub::start_with_scope(ws_root, config, None).await
    }

    /// [`Hub::start`], with DPS answering to `id_scope` instead of the workspace's own
    /// (`serve --id-scope`).
    pub async fn start_with_scope(
        ws_root: &Path,
        config: HubConfig,
        id_scope: Option<String>,
    ) -> Result<HubHandle, HubError> {
        // The registry's stamps and the certificates DPS issues follow the hub's clock too.
        let store = HubStore::new(HubStore::open(ws_root)?.ws.with_clock(config.clock));
        let tls_store = store.clone();
        let hostname = config.hostname.clone();
        // Read the state files before anything listens: one that cannot be read is set aside
        // here (state_file), and the hub starts with the rest.
        let (tls, set_aside) = tokio::task::spawn_blocking(move || {
            let _ = tls_store.load();
            let _ = tls_store.dps_load();
            tls_store
                .server_config(hostname.as_deref())
                .map(|t| (t, tls_store.take_set_aside()))
        })
        .await
        .map_err(|_| HubError::Closed)??;
        let addr = SocketAddr::new(config.bind, config.port);
        let mqtt = TcpListener::bind(addr)
            .await
            .map_err(|source| HubError::Bind { addr, source })?;
        let addr = mqtt
            .local_addr()
            .map_err(|source| HubError::Bind { addr, source })?;
        // Bound before anything runs, so a taken port fails the start as a whole.
        let amqp = bind_extra(config.bind, config.amqp_port)?;
        let ws = bind_extra(config.bind, config.ws_port)?;
        let amqp_addr = amqp.as_ref().and_then(|l| l.local_addr().ok());
        let ws_addr = ws.as_ref().and_then(|l| l.local_addr().ok());
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        // Every budget is paid in descriptors; the soft default (often 1024) is below them.
        let open_files = super::budget::raise_open_files();
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            store,
            config,
            events,
            sessions: Mutex::new(HashMap::new()),
            c2d_queue: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            id_scope,
            dps_ops: Mutex::new(Default::default()),
            registry: Mutex::new(None),
            refusals: Mutex::new((VecDeque::with_capacity(REFUSAL_RING), 0)),
            gate: Gate::new(
                PeerBudget::new(
                    "connections waiting to authenticate",
                    MAX_UNAUTHENTICATED,
                    MAX_UNAUTHENTICATED_PER_PEER,
                ),
                stop_rx,
            ),
            dps_sessions: PeerBudget::new(
                "DPS sessions",
                MAX_DPS_SESSIONS,
                MAX_DPS_SESSIONS_PER_PEER,
            ),
            amqp_links: Arc::default(),
            open_files,
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        shared.emit(HubEvent::Listening { addr });
        let mut listeners = vec![tokio::spawn(listener::listen(
            shared.clone(),
            mqtt,
            acceptor.clone(),
            Transport::Mqtt,
        ))];
        for (l, transport) in [(amqp, Transport::Amqp), (ws, Transport::WebSocket)] {
            if let Some(l) = l {
                if let Ok(a) = l.local_addr() {
                    shared.emit(HubEvent::ListeningFor {
                        transport: transport.name(),
                        addr: a,
                    });
                }
                listeners.push(tokio::spawn(listener::listen(
                    shared.clone(),
                    l,
                    acceptor.clone(),
                    transport,
                )));
            }
        }
        Ok(HubHandle {
            addr,
            amqp_addr,
            ws_addr,
            set_aside,
            shared,
            stop: stop_tx,
            listeners,
        })
    }
}

/// A running hub. Dropping it stops the hub too (without waiting); `shutdown` waits.
pub struct HubHandle {
    /// The MQTT listener.
    pub addr: SocketAddr,
    /// The AMQP listener, when on.
    pub amqp_addr: Option<SocketAddr>,
    /// The WebSocket listener (MQTT and AMQP over WebSockets), when on.
    pub ws_addr: Option<SocketAddr>,
    /// State files that could not be read at start and were set aside (the faces say so);
    /// later ones arrive as [`HubEvent::StateSetAside`].
    pub set_aside: Vec<super::state_file::SetAside>,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    /// Every listener's accept loop (MQTT first).
    listeners: Vec<JoinHandle<()>>,
}

impl HubHandle {
    /// Subscribe to every [`HubEvent`] from now on (a slow receiver loses the oldest ones:
    /// `RecvError::Lagged`).
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.shared.events.subscribe()
    }

    /// One event per listener, MQTT's first: what `hub serve` prints at start. (The hub
    /// emits the same events as it binds, before any face can have subscribed.)
    pub fn listeners(&self) -> Vec<HubEvent> {
        let mut out = vec![HubEvent::Listening { addr: self.addr }];
        for (addr, transport) in [
            (self.amqp_addr, Transport::Amqp),
            (self.ws_addr, Transport::WebSocket),
        ] {
            if let Some(addr) = addr {
                out.push(HubEvent::ListeningFor {
                    transport: transport.name(),
                    addr,
                });
            }
        }
        out
    }

    /// The registry the hub serves (the same workspace files `hub device …` edits).
    pub fn store(&self) -> &HubStore {
        &self.shared.store
    }

    /// Devices connected now.
    pub fn connected(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .shared
            .sessions
            .lock()
            .expect("sessions")
            .keys()
            .cloned()
            .collect();
        v.sort();
        v
    }

    /// Close a device's connection (it was disabled, as IoT Hub closes a disabled device's
    /// connection). Returns whether it was connected.
    pub fn kick(&self, device: &str, reason: &str) -> bool {
        let s = self.shared.sessions.lock().expect("sessions");
        match s.get(device) {
            Some(h) => {
                let _ = h.tx.try_send(Outbound::Kick(reason.to_string()));
                true
            }
            None => false,
        }
    }

    /// Where the hub listens, whether it echoes, and its recent refusals.
    pub fn status(&self) -> HubStatus {
        let (refusals, last_refusal) = {
            let r = self.shared.refusals.lock().expect("refusals");
            (r.0.iter().cloned().collect(), r.1)
        };
        HubStatus {
            addr: self.addr,
            port: self.addr.port(),
            echo: self.shared.config.echo,
            hostname: self.shared.config.hostname.clone(),
            amqp_port: self.amqp_addr.map(|a| a.port()),
            ws_port: self.ws_addr.map(|a| a.port()),
            connected: self.connected(),
            load: self.load(),
            open_files: Some(self.shared.open_files),
            last_refusal,
            refusals,
        }
    }

    /// What the hub holds now against its budgets.
    pub fn load(&self) -> HubLoad {
        let sh = &self.shared;
        HubLoad {
            unauthenticated: sh.gate.pre_auth.held(),
            unauthenticated_peers: sh.gate.pre_auth.peers(),
            dps_sessions: sh.dps_sessions.held(),
            amqp_links: sh.amqp_links.load(Ordering::Relaxed),
        }
    }

    /// The open-files limit at start and what the hub raised it to.
    pub fn open_files(&self) -> super::budget::OpenFiles {
        self.shared.open_files
    }

    /// Remembered refusals with `seq > since`, of `device` when given (oldest first).
    pub fn refusals(&self, device: Option<&str>, since: u64) -> Vec<RefusalRecord> {
        let r = self.shared.refusals.lock().expect("refusals");
        r.0.iter()
            .filter(|x| x.seq > since)
            .filter(|x| device.is_none_or(|d| x.device.as_deref() == Some(d)))
            .cloned()
            .collect()
    }

    /// Send a cloud-to-device message; queued (up to 50) while the device is offline or not
    /// subscribed. Returns the message id and whether it went out now (false: queued).
    pub fn c2d(
        &self,
        device: &str,
        body: &[u8],
        props: &[(String, String)],
    ) -> Result<(String, bool), HubError> {
        self.shared.store.device(device)?;
        let mid = format!("c2d-{}", self.shared.id());
        let mut p = Properties::new().with(azure::sys::MESSAGE_ID, mid.clone());
        for (k, v) in props {
            p.0.push((k.clone(), v.clone()));
        }
        let delivered = send_c2d(
            &self.shared,
            device,
            azure::c2d_topic(device, &p),
            body.to_vec(),
        );
        self.shared.emit(HubEvent::C2d {
            device: device.to_string(),
            message_id: mid.clone(),
            delivered,
        });
        Ok((mid, delivered))
    }

    /// Invoke a direct method and wait for the device's answer: (status, payload).
    pub async fn method(
        &self,
        device: &str,
        name: &str,
        payload: &[u8],
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HubError> {
        let sh = &self.shared;
        if !sh.sessions.lock().expect("sessions").contains_key(device) {
            return Err(HubError::Offline(device.to_string()));
        }
        let tx = sh
            .subscribed(device, DeviceSubscription::Methods)
            .ok_or_else(|| HubError::NotSubscribed(device.to_string(), azure::METHODS_FILTER))?;
        let rid = sh.id().to_string();
        let (otx, orx) = oneshot::channel();
        sh.pending.lock().expect("pending").insert(rid.clone(), otx);
        sh.emit(HubEvent::MethodCall {
            device: device.to_string(),
            name: name.to_string(),
            rid: rid.clone(),
        });
        let _ = tx
            .send(Outbound::Publish {
                topic: azure::method_request_topic(name, &rid),
                payload: payload.to_vec(),
            })
            .await;
        let r = tokio::time::timeout(timeout, orx).await;
        sh.pending.lock().expect("pending").remove(&rid);
        match r {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(HubError::Offline(device.to_string())),
            Err(_) => Err(HubError::Timeout {
                device: device.to_string(),
                name: name.to_string(),
                secs: timeout.as_secs(),
            }),
        }
    }

    /// Patch the device twin's desired properties and push the patch if the device listens.
    pub async fn set_desired(
        &self,
        device: &str,
        patch: &serde_json::Value,
    ) -> Result<u64, HubError> {
        let store = self.shared.store.clone();
        let (d, p) = (device.to_string(), patch.clone());
        let (version, pushed) = tokio::task::spawn_blocking(move || store.patch_desired(&d, &p))
            .await
            .map_err(|_| HubError::Closed)??;
        let mut delivered = false;
        if let Some(tx) = self
            .shared
            .subscribed(device, DeviceSubscription::TwinDesired)
        {
            delivered = tx
                .send(Outbound::Publish {
                    topic: azure::twin_desired_topic(version),
                    payload: pushed.to_string().into_bytes(),
                })
                .await
                .is_ok();
        }
        self.shared.emit(HubEvent::TwinDesired {
            device: device.to_string(),
            version,
            delivered,
        });
        Ok(version)
    }

    /// Stop accepting, close every connection, wait for the accept loop.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        for l in self.listeners.drain(..) {
            let _ = l.await;
        }
        // Let connection tasks see the signal and close.
        for _ in 0..50 {
            if self.shared.sessions.lock().expect("sessions").is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for HubHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn send_c2d(sh: &Shared, device: &str, topic: String, body: Vec<u8>) -> bool {
    if let Some(tx) = sh.subscribed(device, DeviceSubscription::C2d) {
        match tx.try_send(Outbound::Publish {
            topic: topic.clone(),
            payload: body.clone(),
        }) {
            Ok(()) => return true,
            Err(mpsc::error::TrySendError::Full(Outbound::Publish { .. })) => {}
            Err(_) => {}
        }
    }
    queue_c2d(sh, device, topic, body);
    false
}

/// Keep a C2D message (up to [`C2D_QUEUE`] per device) until the device subscribes.
pub(super) fn queue_c2d(sh: &Shared, device: &str, topic: String, body: Vec<u8>) {
    let mut q = sh.c2d_queue.lock().expect("queue");
    let q = q.entry(device.to_string()).or_default();
    if q.len() >= C2D_QUEUE {
        q.pop_front();
    }
    q.push_back((topic, body));
}

/// A connection closed because a budget is full (`why`, [`PeerBudget::refusal`]): one log line
/// per second at most, counting the ones closed since the last.
pub(super) fn over_cap(sh: &Shared, peer: SocketAddr, why: String) {
    if let Some(reason) = sh.gate.over_cap_line(&why) {
        sh.emit(HubEvent::Dropped { peer, reason });
    }
}

// ------------------------------------------------ rules every transport shares

/// Decide whether `device`, presenting `chain` from `peer`, may connect (the same verifier,
/// registry and refusal sentences for every transport). A refusal is remembered for the
/// control socket and logged before the caller tells the device.
pub(super) async fn admit(
    sh: &Arc<Shared>,
    peer: SocketAddr,
    device: &str,
    username: Option<&str>,
    chain: &[Vec<u8>],
) -> Result<Option<super::registry::RevokedCert>, auth::Refusal> {
    let verdict = match current_registry(sh).await {
        Ok(Ok((reg, trust))) => {
            auth::authenticate(&reg, &trust, device, username, chain, sh.config.clock.now())
                .map(|_| chain.first().and_then(|d| reg.revoked_cert(d)).cloned())
                .map_err(|r| r.explained_by(&sh.store.ws))
        }
        Ok(Err(e)) => Err(auth::Refusal::Registry {
            detail: e.to_string(),
        }),
        Err(_) => Err(auth::Refusal::Registry {
            detail: "the registry could not be read".into(),
        }),
    };
    if let Err(refusal) = &verdict {
        let dev = Some(device.to_string()).filter(|d| !d.is_empty());
        sh.remember_refusal(peer, dev.clone(), refusal.kind(), refusal.to_string());
        sh.emit(HubEvent::Refused {
            peer,
            device: dev,
            kind: refusal.kind().to_string(),
            reason: refusal.to_string(),
        });
    }
    verdict
}

/// What a listener of the hub serves.
#[derive(Clone, Copy)]
pub(super) enum Transport {
    Mqtt,
    Amqp,
    WebSocket,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Mqtt => "MQTT",
            Transport::Amqp => "AMQP",
            Transport::WebSocket => "MQTT and AMQP over WebSockets",
        }
    }
}

/// Bind a listener when its port is configured (`Some(0)`: a free port).
fn bind_extra(ip: IpAddr, port: Option<u16>) -> Result<Option<TcpListener>, HubError> {
    let Some(port) = port else { return Ok(None) };
    listener::bind(ip, port)
        .map(Some)
        .map_err(|source| HubError::Bind {
            addr: SocketAddr::new(ip, port),
            source,
        })
}

/// The hub as the shared accept loop sees it: a connection of each transport goes to its
/// protocol, and a connection closed before that is logged as dropped.
impl Service for Shared {
    type Transport = Transport;

    async fn serve(self: Arc<Self>, transport: Transport, c: Accepted) {
        let (tls, chain, peer, permit) = (c.tls, c.chain, c.peer, c.unauthenticated);
        match transport {
            Transport::Mqtt => mqtt_connection(self, tls, chain, peer, permit, c.start).await,
            Transport::Amqp => super::amqp::connection(self, tls, chain, peer, permit).await,
            Transport::WebSocket => {
                super::websocket::connection(self, tls, chain, peer, permit).await
            }
        }
    }

    fn dropped(&self, peer: SocketAddr, reason: String) {
        self.emit(HubEvent::Dropped { peer, reason });
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }
}

/// One connection per device id across transports, as IoT Hub does: the new connection takes
/// over and the old one (MQTT or AMQP) is told to close. Returns the connection id, the
/// session's outbound queue and its subscription list.
pub(super) fn take_over(
    sh: &Shared,
    device: &str,
) -> (u64, mpsc::Receiver<Outbound>, Subscriptions) {
    let conn = sh.id();
    let (tx, rx) = mpsc::channel::<Outbound>(256);
    let subs: Subscriptions = Arc::new(Mutex::new(Vec::new()));
    let old = sh.sessions.lock().expect("sessions").insert(
        device.to_string(),
        SessionHandle {
            conn,
            tx,
            subs: subs.clone(),
        },
    );
    if let Some(old) = old {
        let _ = old.tx.try_send(Outbound::Kick(
            "another connection with the same device id took over".into(),
        ));
    }
    (conn, rx, subs)
}

/// The connection `conn` of `device` ended: forget it unless another one took over.
pub(super) fn release(sh: &Shared, device: &str, conn: u64) {
    let mut s = sh.sessions.lock().expect("sessions");
    if s.get(device).is_some_and(|h| h.conn == conn) {
        s.remove(device);
    }
}
