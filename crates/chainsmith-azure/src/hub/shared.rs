//! What every transport of the hub shares while it serves: the configuration, the state
//! ([`Shared`]: sessions, queued cloud-to-device messages, pending method calls, the registry
//! as last read, the refusals remembered) and the rules every transport applies: admission
//! ([`admit`]), one session per device id ([`take_over`]), the over-cap log line.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use rumqttc::mqttbytes::QoS;
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::auth;
use super::budget::PeerBudget;
use super::events::HubEvent;
use super::registry::{HubStore, Registry, RegistryError};
use crate::azure::{self, DeviceSubscription};
use chainsmith_server::listener::Gate;

/// A session's subscriptions: (filter, QoS granted, what it subscribes to).
pub(super) type Subscriptions = Arc<Mutex<Vec<(String, QoS, DeviceSubscription)>>>;

/// No CONNECT this long after the TCP accept: close.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many subscriptions per connection (IoT Hub's devices use 4: C2D, twin
/// responses, desired, methods; one spare).
pub(super) const MAX_SUBSCRIPTIONS: usize = 5;

/// Cloud-to-device messages queued per device while it is offline (IoT Hub's limit is 50).
const C2D_QUEUE: usize = 50;

/// Bytes a connection may send before its CONNECT is complete. An IoT Hub CONNECT holds a
/// client id (at most 128), a username (about 300) and at most a SAS token, so 8 KiB is ample,
/// and a peer nobody has authenticated yet cannot make the hub hold more.
pub const MAX_CONNECT_BYTES: usize = 8 * 1024;

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
    pub websocket_port: Option<u16>,
    /// DPS's certificate issuance (`hub::dps_csr_signer()`); without it a CSR is refused.
    pub csr_signer: Option<super::dps::CsrSigner>,
    /// "Now" for every decision and stamp the hub makes: whether a device certificate is in
    /// its validity window, DPS registrations and issued certificates, refusal and enqueued
    /// times. `hub serve` passes the workspace's clock (running on); tests fix it. The hub's
    /// own TLS server certificate is the exception: the peers judge it by their real clocks.
    pub clock: Clock,
    /// How long a DPS session may stay open ([`DPS_SESSION_LIFETIME`]; tests shorten it).
    pub dps_session_lifetime: Duration,
    /// How long DPS waits for a custom allocation webhook
    /// ([`super::dps::DPS_WEBHOOK_TIMEOUT`]; tests shorten it).
    pub dps_webhook_timeout: Duration,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            bind: IpAddr::from([127, 0, 0, 1]),
            port: azure::MQTT_PORT,
            echo: false,
            hostname: None,
            amqp_port: None,
            websocket_port: None,
            csr_signer: None,
            clock: Clock::System,
            dps_session_lifetime: DPS_SESSION_LIFETIME,
            dps_webhook_timeout: super::dps::DPS_WEBHOOK_TIMEOUT,
        }
    }
}

/// What the hub sends a connected session unasked, through its queue ([`SessionHandle::tx`]).
/// The queue allocates its first block of slots for every session at connect, so a slot is
/// kept to a pointer's size: a message and a reason are boxed.
pub(super) enum Outbound {
    /// A PUBLISH: cloud-to-device, a method request, a desired-properties patch.
    Publish(Box<OutboundPublish>),
    /// Close the session, for this reason.
    Kick(Box<str>),
}

/// A PUBLISH the hub sends a device unasked.
pub(super) struct OutboundPublish {
    pub(super) topic: String,
    pub(super) payload: Vec<u8>,
}

impl Outbound {
    pub(super) fn publish(topic: String, payload: Vec<u8>) -> Outbound {
        Outbound::Publish(Box::new(OutboundPublish { topic, payload }))
    }
}

pub(super) struct SessionHandle {
    pub(super) conn: u64,
    pub(super) tx: mpsc::Sender<Outbound>,
    pub(super) subs: Arc<Mutex<Vec<(String, QoS, DeviceSubscription)>>>,
}

/// Queued C2D messages per device: (topic, body).
type C2dQueue = HashMap<String, VecDeque<(String, Vec<u8>)>>;

/// Method calls waiting for their answer, by `$rid`: (status, payload).
type Pending = HashMap<String, oneshot::Sender<(u16, Vec<u8>)>>;

pub(super) struct Shared {
    pub(super) store: HubStore,
    pub(super) config: HubConfig,
    pub(super) events: broadcast::Sender<HubEvent>,
    pub(super) sessions: Mutex<HashMap<String, SessionHandle>>,
    pub(super) c2d_queue: Mutex<C2dQueue>,
    pub(super) pending: Mutex<Pending>,
    pub(super) next_id: AtomicU64,
    /// `serve --id-scope`: the ID scope DPS answers to instead of the workspace's.
    pub(super) id_scope: Option<String>,
    /// DPS operations (register answers) a device may poll, by operation id.
    pub(super) dps_ops: Mutex<super::dps::Operations>,
    /// The registry as last read, keyed by the file's (inode, size, mtime): every CONNECT
    /// checks the file and re-reads it when it changed.
    /// The chain check's trust anchors are built with it, once per registry version.
    pub(super) registry: Mutex<Option<(RegistryKey, RegistryNow)>>,
    /// The last [`REFUSAL_RING`] refusals and the highest seq handed out.
    pub(super) refusals: Mutex<(VecDeque<RefusalRecord>, u64)>,
    /// The accept loops' shared state: the pre-authentication budget ([`MAX_UNAUTHENTICATED`],
    /// per peer [`MAX_UNAUTHENTICATED_PER_PEER`]), the over-cap log limiter and the stop.
    pub(super) gate: Gate,
    /// One slot per open DPS session ([`MAX_DPS_SESSIONS`], per peer
    /// [`MAX_DPS_SESSIONS_PER_PEER`]).
    pub(super) dps_sessions: PeerBudget,
    /// AMQP links attached now, all connections together.
    pub(super) amqp_links: Arc<AtomicUsize>,
    /// The open-files limit at start.
    pub(super) open_files: super::budget::OpenFiles,
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
    /// Log a device let in, on any transport, and the revoked certificate it was let in with
    /// (the hub checks no CRL, as IoT Hub; the log says so).
    pub(super) fn announce_accepted(
        &self,
        device: &str,
        peer: std::net::SocketAddr,
        keep_alive: u16,
        revoked: Option<super::registry::RevokedCert>,
    ) {
        self.emit(HubEvent::Accepted {
            device: device.to_string(),
            peer,
            keep_alive,
        });
        if let Some(r) = revoked {
            self.emit(HubEvent::RevokedCertificate {
                device: device.to_string(),
                name: r.name,
                serial: r.serial,
                reason: r.reason,
            });
        }
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
    /// Whether anything receives the hub's events now (a log, a monitor, a face): events
    /// that cost copies per message are built only then.
    pub(super) fn listened(&self) -> bool {
        self.events.receiver_count() > 0
    }
    pub(super) fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
    pub(super) fn subscribed(
        &self,
        device: &str,
        kind: DeviceSubscription,
    ) -> Option<mpsc::Sender<Outbound>> {
        let s = self.sessions.lock().expect("sessions");
        let h = s.get(device)?;
        let subs = h.subs.lock().expect("subs");
        subs.iter()
            .any(|(_, _, k)| *k == kind)
            .then(|| h.tx.clone())
    }
}

pub(super) fn send_c2d(sh: &Shared, device: &str, topic: String, body: Vec<u8>) -> bool {
    if let Some(tx) = sh.subscribed(device, DeviceSubscription::C2d) {
        if tx
            .try_send(Outbound::publish(topic.clone(), body.clone()))
            .is_ok()
        {
            return true;
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
