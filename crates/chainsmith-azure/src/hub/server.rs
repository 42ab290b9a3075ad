//! The hub: its lifecycle ([`Hub::start`], [`HubHandle`]), the state its transports share
//! ([`Shared`]) and the rules every transport applies (admission, one session per device id).
//! The transports are [`super::mqtt`], [`super::amqp`] and [`super::https`] (WebSockets and
//! DPS's REST API on 443); the events
//! they emit are [`super::events`].
//!
//! One tokio task per connection; the registry is re-read when it changes and IoT Hub's rules
//! applied ([`super::auth`]) by every transport alike.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, oneshot, watch};
use tokio::task::JoinHandle;

use super::budget::PeerBudget;
use super::registry::{HubStore, RegistryError};
use crate::azure::{self, DeviceSubscription, Properties};
use chainsmith_server::listener::{self, Accepted, Gate, Service};

use super::control::Request;
pub use super::events::*;
use super::mqtt::mqtt_connection;
use super::shared::*;
pub use super::shared::{
    CONNECT_TIMEOUT, DPS_SESSION_LIFETIME, HubConfig, MAX_CONNECT_BYTES, REFUSAL_RING,
    RefusalRecord,
};
use tokio::io::AsyncWriteExt;

pub use super::amqp::{MAX_LINKS_PER_CONNECTION, MAX_REFUSED_LINKS};
pub use super::budget::{
    MAX_DPS_SESSIONS, MAX_DPS_SESSIONS_PER_PEER, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PEER,
};
pub use super::dps::amqp::{
    MAX_DPS_ANSWERS_QUEUED, MAX_DPS_LINKS, MAX_DPS_REQUESTS_IN_FLIGHT, MAX_DPS_REQUESTS_PER_SESSION,
};
pub use super::https::{MAX_REQUEST_HEAD_BYTES, MAX_REQUESTS_PER_CONNECTION};
pub use crate::MAX_PACKET;
pub use chainsmith_server::listener::TLS_HANDSHAKE_TIMEOUT;

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
    /// The WebSocket port (MQTT and AMQP over WebSockets), when on (`ws_port` in the JSON,
    /// as `hub status --json` has always said).
    #[serde(default, rename = "ws_port")]
    pub websocket_port: Option<u16>,
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
        let websocket = bind_extra(config.bind, config.websocket_port)?;
        let amqp_addr = amqp.as_ref().and_then(|l| l.local_addr().ok());
        let websocket_addr = websocket.as_ref().and_then(|l| l.local_addr().ok());
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
        for (l, transport) in [(amqp, Transport::Amqp), (websocket, Transport::WebSocket)] {
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
            websocket_addr,
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
    pub websocket_addr: Option<SocketAddr>,
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
            (self.websocket_addr, Transport::WebSocket),
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
                let _ = h.tx.try_send(Outbound::Kick(reason.into()));
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
            websocket_port: self.websocket_addr.map(|a| a.port()),
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
            .send(Outbound::publish(
                azure::method_request_topic(name, &rid),
                payload.to_vec(),
            ))
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
                .send(Outbound::publish(
                    azure::twin_desired_topic(version),
                    pushed.to_string().into_bytes(),
                ))
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
            Transport::WebSocket => "MQTT and AMQP over WebSockets, DPS over HTTPS",
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

    fn serve(
        self: Arc<Self>,
        transport: Transport,
        c: Accepted,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        // The TLS stream (rustls's connection state and the socket, ~1.2 KB) is boxed before
        // the session's future is made, so that future and each async function it passes the
        // stream down to hold a pointer, not a copy of the stream each: the connection's task
        // was ~12 KB, sized by these copies and by the larger transports (issue 25).
        let tls = Box::new(c.tls);
        let (chain, peer, permit, start) = (c.chain, c.peer, c.unauthenticated, c.start);
        async move {
            // A task's future is as large as its largest state: AMQP's and the
            // WebSocket/HTTPS's sessions are boxed, so that an MQTT device, the common case,
            // does not pay for their larger futures.
            match transport {
                Transport::Mqtt => mqtt_connection(self, tls, chain, peer, permit, start).await,
                Transport::Amqp => {
                    Box::pin(super::amqp::connection(self, tls, chain, peer, permit)).await;
                }
                Transport::WebSocket => {
                    Box::pin(super::https::connection(self, tls, chain, peer, permit)).await;
                }
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

// ---------------------------------------------------------------- the control channel

/// Serve the control socket ([`super::control`]) for `hub` until the task is dropped.
pub async fn serve_control(
    hub: std::sync::Arc<HubHandle>,
    path: std::path::PathBuf,
) -> std::io::Result<()> {
    chainsmith_server::control::serve(path, move |line, w| client(hub.clone(), line, w)).await
}

async fn client(
    hub: std::sync::Arc<HubHandle>,
    line: Vec<u8>,
    mut w: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    let req: Request = match serde_json::from_slice(&line) {
        Ok(r) => r,
        Err(e) => {
            let msg = serde_json::json!({ "error": format!("bad request: {e}") });
            w.write_all(format!("{msg}\n").as_bytes()).await?;
            return Ok(());
        }
    };
    let answer = match req {
        Request::Monitor { device } => {
            let mut rx = hub.events();
            // Say so once subscribed: a client that acts on this line (sends telemetry, starts a
            // device) knows the hub will stream what follows; before it, events may be missed.
            w.write_all(
                format!("{}\n", serde_json::json!({ "ok": { "monitoring": true } })).as_bytes(),
            )
            .await?;
            loop {
                match rx.recv().await {
                    Ok(e) => {
                        let matches = match (&device, &e) {
                            (None, _) => true,
                            (Some(d), HubEvent::Telemetry { device, .. }) => d == device,
                            (Some(_), _) => false,
                        };
                        if matches && matches!(e, HubEvent::Telemetry { .. }) {
                            let line = serde_json::to_string(&e).unwrap_or_default();
                            w.write_all(format!("{line}\n").as_bytes()).await?;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(_) => return Ok(()),
                }
            }
        }
        Request::C2d {
            device,
            body,
            props,
        } => hub.c2d(&device, body.as_bytes(), &props).map(
            |(mid, delivered)| serde_json::json!({ "message_id": mid, "delivered": delivered }),
        ),
        Request::Method {
            device,
            name,
            payload,
            timeout,
        } => hub
            .method(
                &device,
                &name,
                payload.to_string().as_bytes(),
                Duration::from_secs(timeout),
            )
            .await
            .map(|(status, body)| {
                let payload = serde_json::from_slice::<serde_json::Value>(&body)
                    .unwrap_or_else(|_| String::from_utf8_lossy(&body).into_owned().into());
                serde_json::json!({ "status": status, "payload": payload })
            }),
        Request::Status => Ok(serde_json::to_value(hub.status()).unwrap_or_default()),
        Request::Kick { device, reason } => {
            Ok(serde_json::json!({ "connected": hub.kick(&device, &reason) }))
        }
        Request::Refusals { device, since } => {
            Ok(serde_json::to_value(hub.refusals(device.as_deref(), since)).unwrap_or_default())
        }
        Request::Desired { device, patch } => hub
            .set_desired(&device, &patch)
            .await
            .map(|v| serde_json::json!({ "version": v })),
    };
    let msg = match answer {
        Ok(v) => serde_json::json!({ "ok": v }),
        Err(e) => serde_json::json!({ "error": e.to_string(), "kind": e.kind() }),
    };
    w.write_all(format!("{msg}\n").as_bytes()).await?;
    Ok(())
}
