//! The local AWS IoT Core's broker: MQTT 3.1.1 and 5 over TLS with X.509 client certificates,
//! on the MQTT port (8883) and, for clients offering ALPN `x-amzn-mqtt-ca`, on the ALPN port
//! (443), on `chainsmith-server`'s accept loop and budgets. Every decision of AWS's rules
//! (admit at CONNECT, `iot:Publish`, `iot:Subscribe`, `iot:Receive`) is asked of the
//! [`crate::rules::Rules`] it is started with.
//!
//! - [`limits`]: AWS's message-broker quotas and topic rules.
//! - [`wire`]: the two MQTT versions behind one set of packets.
//! - [`router`]: sessions, subscriptions, retained messages, takeover.
//! - [`session`]: one connection from CONNECT to close.
//! - [`control`]: the channel `aws publish`, `aws monitor` and `aws shadow` use.
//! - [`shadow`]: the Device Shadow service, answering on the shadow topics.
//! - [`fleet`]: the device provisioning MQTT API's topics (fleet provisioning by claim).
//! - [`tls`]: the broker's own TLS CA and the ALPN protocol.
//! - [`events`]: what the faces see.
//! - [`endpoint`]: where the service answers (`aws endpoint`).

pub mod control;
pub mod endpoint;
pub mod events;
pub mod fleet;
pub mod limits;
pub mod router;
pub mod session;
pub mod shadow;
pub mod tls;
pub mod wire;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use chainsmith_pki::store::Workspace;
use chainsmith_server::budget::{MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_PEER, PeerBudget};
use chainsmith_server::listener::{self, Accepted, Gate};
use chainsmith_server::local_tls::LocalTlsError;
use tokio::sync::{broadcast, watch};

use crate::rules::Rules;
use events::{BrokerEvent, EVENTS_CAPACITY};
use router::Router;

/// How the broker listens.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// The address to bind (default 127.0.0.1).
    pub ip: IpAddr,
    /// The MQTT port (AWS's 8883; 0: a free one).
    pub port: u16,
    /// The ALPN port (AWS's 443), if served (0: a free one).
    pub alpn_port: Option<u16>,
    /// A name for the server certificate besides `localhost` and the loopback addresses.
    pub hostname: Option<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8883,
            alpn_port: None,
            hostname: None,
        }
    }
}

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Its TLS CA or server certificate.
    #[error(transparent)]
    Tls(#[from] LocalTlsError),
    /// A port could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Which listener a connection came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    /// MQTT over TLS (8883).
    Mqtt,
    /// MQTT over TLS with ALPN `x-amzn-mqtt-ca` (443).
    Alpn,
}

/// What every connection shares.
pub struct Core {
    rules: Arc<dyn Rules>,
    events: broadcast::Sender<BrokerEvent>,
    router: Router,
    shadows: shadow::Shadows,
    gate: Gate,
    /// One slot per admitted session.
    sessions: PeerBudget,
    conns: AtomicU64,
}

impl Core {
    fn next_conn(&self) -> u64 {
        self.conns.fetch_add(1, Ordering::Relaxed)
    }

    /// A message from `client_id` (or the CLI) on its way to subscribers.
    fn deliver(&self, topic: &str, payload: &Bytes, qos: u8, retain: bool) -> usize {
        let queued = self.router.route(topic, payload, qos, retain);
        // A shadow request is answered after it was routed like any message (AWS delivers
        // it to subscribers of the request topic too). Inline, not on another task: a
        // device's requests are answered in the order it sent them, as versions need.
        if let Some(answer) = self.shadows.handle(topic, payload) {
            self.publish_answer(answer);
        }
        queued
    }

    /// Publish what the shadow service answered, at QoS 1 (each subscriber gets it at the
    /// lower of that and its subscription's QoS), and say when a damaged file was set aside.
    fn publish_answer(&self, answer: shadow::Answer) {
        for m in answer.messages {
            self.router
                .route(&m.topic, &Bytes::from(m.payload), 1, false);
        }
        if let Some(note) = answer.set_aside {
            let _ = self.events.send(BrokerEvent::SetAside {
                note: note.to_string(),
            });
        }
    }
}

impl listener::Service for Core {
    type Transport = Listener;

    fn serve(
        self: Arc<Self>,
        _transport: Listener,
        conn: Accepted,
    ) -> impl Future<Output = ()> + Send + 'static {
        session::serve(self, conn)
    }

    fn dropped(&self, peer: SocketAddr, reason: String) {
        let _ = self.events.send(BrokerEvent::Dropped { peer, reason });
    }

    fn gate(&self) -> &Gate {
        &self.gate
    }
}

/// What the service itself does on a running broker (the control channel's operations):
/// cloneable, so each control client holds one while the handle keeps the way to stop.
#[derive(Clone)]
pub struct Control {
    core: Arc<Core>,
}

impl Control {
    /// A stream of what happens from now on.
    pub fn events(&self) -> broadcast::Receiver<BrokerEvent> {
        self.core.events.subscribe()
    }

    /// Publish as the service (`aws publish`, the shadow service): to every subscription
    /// allowed to receive it; returns how many connections it was queued for.
    pub fn publish(&self, topic: &str, payload: Bytes, qos: u8, retain: bool) -> usize {
        self.core.deliver(topic, &payload, qos.min(1), retain)
    }

    /// Update a shadow as the service (`aws shadow update`): the update is applied and its
    /// accepted, delta and documents messages go to the subscribed devices, as when a device
    /// or an application publishes to `…/shadow/update`. Returns the document after it.
    pub fn shadow_update(
        &self,
        id: &shadow::ShadowId,
        request: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, shadow::ShadowError> {
        let answer = self.core.shadows.update(id, request)?;
        self.core.publish_answer(answer);
        self.shadow_get(id)
    }

    /// A shadow's document (`aws shadow get`).
    pub fn shadow_get(
        &self,
        id: &shadow::ShadowId,
    ) -> Result<serde_json::Value, shadow::ShadowError> {
        self.core.shadows.get(id).map(|(doc, _)| doc)
    }
}

/// A running broker: its addresses, its events, and the way to stop it.
pub struct BrokerHandle {
    /// Where the MQTT listener is bound.
    pub mqtt: SocketAddr,
    /// Where the ALPN listener is bound, when served.
    pub alpn: Option<SocketAddr>,
    core: Arc<Core>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl BrokerHandle {
    /// The service's own operations on this broker.
    pub fn control(&self) -> Control {
        Control {
            core: self.core.clone(),
        }
    }

    /// A stream of what happens from now on.
    pub fn events(&self) -> broadcast::Receiver<BrokerEvent> {
        self.core.events.subscribe()
    }

    /// [`Control::publish`].
    pub fn publish(&self, topic: &str, payload: Bytes, qos: u8, retain: bool) -> usize {
        self.control().publish(topic, payload, qos, retain)
    }

    /// Client ids connected now.
    pub fn connected(&self) -> Vec<String> {
        self.core.router.connected()
    }

    /// How many retained messages the broker keeps, and their payload bytes together.
    pub fn retained(&self) -> (usize, usize) {
        self.core.router.retained()
    }

    /// [`Control::shadow_update`].
    pub fn shadow_update(
        &self,
        id: &shadow::ShadowId,
        request: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<serde_json::Value, shadow::ShadowError> {
        self.control().shadow_update(id, request)
    }

    /// Stop listening and close every connection (MQTT 5: DISCONNECT 0x8B).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Start the broker for workspace `ws` with `rules` deciding.
pub async fn start(
    ws: &Workspace,
    rules: Arc<dyn Rules>,
    config: BrokerConfig,
) -> Result<BrokerHandle, BrokerError> {
    let local = tls::local_tls(ws);
    let hostname = config.hostname.as_deref();
    let plain = local.server_config(ws, hostname, None)?;
    let alpn = match config.alpn_port {
        Some(_) => Some(local.server_config(ws, hostname, Some(tls::AWS_ALPN))?),
        None => None,
    };
    let bind = |port: u16| {
        let addr = SocketAddr::new(config.ip, port);
        listener::bind(config.ip, port).map_err(|source| BrokerError::Bind { addr, source })
    };
    let mqtt_listener = bind(config.port)?;
    let alpn_listener = match config.alpn_port {
        Some(p) => Some(bind(p)?),
        None => None,
    };
    let (stop, shutdown) = watch::channel(false);
    let (events, _) = broadcast::channel(EVENTS_CAPACITY);
    let core = Arc::new(Core {
        router: Router::new(rules.clone(), events.clone()),
        shadows: shadow::Shadows::new(ws),
        rules,
        events,
        gate: Gate::new(
            PeerBudget::new(
                "connections waiting to authenticate",
                MAX_UNAUTHENTICATED,
                MAX_UNAUTHENTICATED_PER_PEER,
            ),
            shutdown,
        ),
        sessions: PeerBudget::new(
            "connected sessions",
            limits::MAX_SESSIONS,
            limits::MAX_SESSIONS_PER_PEER,
        ),
        conns: AtomicU64::new(1),
    });
    let mqtt = mqtt_listener
        .local_addr()
        .map_err(|source| BrokerError::Bind {
            addr: SocketAddr::new(config.ip, config.port),
            source,
        })?;
    let mut tasks = vec![tokio::spawn(listener::listen(
        core.clone(),
        mqtt_listener,
        tokio_rustls::TlsAcceptor::from(plain),
        Listener::Mqtt,
    ))];
    let mut alpn_addr = None;
    if let (Some(l), Some(cfg)) = (alpn_listener, alpn) {
        alpn_addr = l.local_addr().ok();
        tasks.push(tokio::spawn(listener::listen(
            core.clone(),
            l,
            tokio_rustls::TlsAcceptor::from(cfg),
            Listener::Alpn,
        )));
    }
    Ok(BrokerHandle {
        mqtt,
        alpn: alpn_addr,
        core,
        stop,
        tasks,
    })
}
