//! The MQTT 3.1.1-over-TLS server with IoT Hub's device protocol.
//!
//! One tokio task per connection. TLS (rustls) asks for a client certificate and checks the
//! handshake signature; CONNECT must follow within 10 s; the registry is re-read and IoT Hub's
//! rules applied ([`super::auth`]). Packets are decoded and encoded with `rumqttc::mqttbytes::v4`.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::Clock;
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use rumqttc::mqttbytes::{self, QoS};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::auth;
use super::budget::{BudgetPermit, PeerBudget};
use super::registry::{HubStore, Registry, RegistryError};
use crate::azure::{self, DevicePublish, DeviceSubscription, Properties};
use chainsmith_server::listener::{self, Accepted, Gate, Service};

/// No CONNECT this long after the TCP accept: close.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// At most this many subscriptions per connection (IoT Hub's devices use 4: C2D, twin
/// responses, desired, methods; one spare).
const MAX_SUBSCRIPTIONS: usize = 5;
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

/// Most bytes of a message's body, topic or property bag an event carries (the rest is cut,
/// marked `…`; `size` keeps the body's real length). Events wait in a broadcast queue of
/// [`EVENT_QUEUE`] for the slowest log, monitor or TUI; whole 256 KB bodies there let one
/// device grow the hub by ~200 KB a message while a monitor was paused (hostile pass: 617 MB
/// in 3 s). Cut, the queue holds at most ~50 MB.
pub const MAX_EVENT_TEXT: usize = 2048;
/// Events the hub keeps for its slowest subscriber; past it that subscriber skips the oldest
/// and says how many (`RecvError::Lagged`).
pub const EVENT_QUEUE: usize = 8192;

/// `text` cut to [`MAX_EVENT_TEXT`] bytes at a character boundary, `…` marking a cut.
fn clip(text: &str) -> String {
    if text.len() <= MAX_EVENT_TEXT {
        return text.to_string();
    }
    let mut end = MAX_EVENT_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A property bag cut to [`MAX_EVENT_TEXT`] bytes of keys and values, whole properties first.
fn clip_properties(props: azure::Properties) -> azure::Properties {
    let mut left = MAX_EVENT_TEXT;
    let mut kept = Vec::new();
    for (k, v) in props.0 {
        let (k, v) = (clip(&k), clip(&v));
        if k.len() + v.len() > left {
            break;
        }
        left -= k.len() + v.len();
        kept.push((k, v));
    }
    azure::Properties(kept)
}

/// Everything that happens in the hub, for logs, `hub monitor`, the TUI and tests.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum HubEvent {
    /// The MQTT listener is bound and accepting.
    Listening {
        /// The bound address (with the real port when 0 was asked for).
        addr: SocketAddr,
    },
    /// Another transport's listener (AMQP, WebSockets).
    ListeningFor {
        /// `amqp` or `websocket`.
        transport: &'static str,
        /// The bound address.
        addr: SocketAddr,
    },
    /// A device passed authentication: CONNACK 0 (MQTT) or an opened connection (AMQP).
    Accepted {
        /// The device id (the MQTT client id; over AMQP, the id in the link address).
        device: String,
        /// The TCP address it connected from.
        peer: SocketAddr,
        /// The MQTT keep-alive the device asked for, in seconds (0 over AMQP: none).
        keep_alive: u16,
    },
    /// A CONNECT was refused with CONNACK 5 "not authorized" (over AMQP: the link detached
    /// with `amqp:unauthorized-access`); IoT Hub gives no reason, this hub does.
    Refused {
        /// The TCP address the refused connection came from.
        peer: SocketAddr,
        /// The client id it claimed (absent when empty).
        device: Option<String>,
        /// [`auth::Refusal::kind`], e.g. `device-disabled`, `cn-mismatch`.
        kind: String,
        /// The hub's sentence: what was wrong and what would fix it.
        reason: String,
    },
    /// A connection closed before or without a valid CONNECT (garbage, TLS failure, timeout).
    Dropped {
        /// The TCP address of the dropped connection.
        peer: SocketAddr,
        /// What went wrong (TLS alert, timeout, malformed packet).
        reason: String,
    },
    /// An accepted device's connection ended.
    Disconnected {
        /// The device id.
        device: String,
        /// Why: the device closed, no packet within 1.5 × keep-alive, a read failure, a kick
        /// (disabled, or a newer connection with the same id), a protocol violation, or the
        /// hub shutting down.
        reason: String,
    },
    /// A device connected with a certificate revoked in this workspace. IoT Hub does not check
    /// CRLs and neither does this hub: it lets the device in and says how to cut it off.
    RevokedCertificate {
        /// The device id.
        device: String,
        /// The workspace name of the revoked certificate.
        name: String,
        /// Its serial number (hex).
        serial: String,
        /// The revocation reason recorded at revoke time (RFC 5280 reason name).
        reason: String,
    },
    /// A device-to-cloud message, published to `devices/{id}/messages/events/{property bag}`
    /// (or sent on the AMQP events link).
    Telemetry {
        /// The device id.
        device: String,
        /// The topic as published (with its property bag).
        topic: String,
        /// The application and system properties decoded from the property bag.
        properties: Properties,
        /// The message body, as text (invalid UTF-8 replaced).
        payload: String,
        /// The body's length in bytes, as sent.
        size: usize,
        /// The MQTT QoS it was published with (0 or 1).
        qos: u8,
        /// When the hub received it (IoT Hub's `iothub-enqueuedtime`).
        #[serde(with = "time::serde::rfc3339")]
        enqueued: OffsetDateTime,
    },
    /// A device asked for its twin (`$iothub/twin/GET/?$rid=…`).
    TwinGet {
        /// The device id.
        device: String,
        /// The request id the device chose; the answer carries it back.
        rid: String,
    },
    /// A device patched its reported properties (`$iothub/twin/PATCH/properties/reported/`).
    TwinReported {
        /// The device id.
        device: String,
        /// The request id the device chose; the 204 answer carries it back.
        rid: String,
        /// The reported properties' `$version` after the patch.
        version: u64,
        /// The patch as the device sent it (JSON merge patch).
        patch: serde_json::Value,
    },
    /// The service side patched a device's desired properties.
    TwinDesired {
        /// The device id.
        device: String,
        /// The desired properties' `$version` after the patch.
        version: u64,
        /// Whether the patch was pushed to the device now (it listens on
        /// `$iothub/twin/PATCH/properties/desired/#`); otherwise it reads it on its next GET.
        delivered: bool,
    },
    /// A cloud-to-device message was sent or queued.
    C2d {
        /// The device id.
        device: String,
        /// The message id the hub gave it (`$.mid` in the property bag).
        message_id: String,
        /// Whether it went out now; false: queued until the device subscribes.
        delivered: bool,
    },
    /// How an AMQP device settled a C2D message: `completed` (accepted), `rejected`,
    /// `abandoned` (released or modified: delivered again), or `dead-lettered` (abandoned
    /// 10 times, IoT Hub's maximum delivery count).
    C2dSettled {
        /// The device id.
        device: String,
        /// The settled message's id.
        message_id: String,
        /// `completed`, `rejected`, `abandoned` or `dead-lettered`.
        outcome: &'static str,
    },
    /// The service side invoked a direct method (`$iothub/methods/POST/{name}/?$rid=…`).
    MethodCall {
        /// The device id.
        device: String,
        /// The method name.
        name: String,
        /// The request id the device must answer with.
        rid: String,
    },
    /// A device answered a direct method (`$iothub/methods/res/{status}/?$rid=…`).
    MethodResponse {
        /// The device id.
        device: String,
        /// The request id of the call it answers.
        rid: String,
        /// The status the device chose (HTTP-like, e.g. 200).
        status: u16,
        /// The answer's body, as text.
        payload: String,
    },
    /// A device connected to DPS (CONNECT with a DPS username, accepted).
    DpsConnected {
        /// The DPS registration id (the MQTT client id).
        registration_id: String,
        /// The TCP address it connected from.
        peer: SocketAddr,
        /// The `api-version` in its username (e.g. `2019-03-31`).
        api_version: String,
    },
    /// A register request answered 202 (assigning).
    DpsRegistering {
        /// The DPS registration id.
        registration_id: String,
        /// The operation id the device polls with.
        operation_id: String,
    },
    /// DPS assigned a device to the hub.
    DpsAssigned {
        /// The DPS registration id.
        registration_id: String,
        /// The IoT Hub device id it was given.
        device_id: String,
        /// The hub host name in `registrationState.assignedHub`.
        assigned_hub: String,
        /// DPS's `substatus`: `initialAssignment` on a first registration,
        /// `reprovisionedToInitialAssignment` when the registration id registered before.
        substatus: String,
        /// The enrollment that matched: `group NAME` or `individual REGID`.
        enrollment: String,
        /// A certificate was issued from the request's CSR.
        issued: bool,
        /// Why the hub will still refuse the device (it is disabled there), if it will.
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A state file (registry, DPS state, a registration, a twin) could not be read: its bytes
    /// were copied aside and the hub goes on without it ([`super::state_file`]).
    StateSetAside {
        /// What happened, where the bytes are, and how to restore them.
        note: String,
    },
    /// DPS refused a registration (or a poll): the status and error code it answered.
    DpsRefused {
        /// The registration id the device claimed.
        registration_id: String,
        /// The TCP address it connected from.
        peer: SocketAddr,
        /// The HTTP-like status in the response topic (4xx).
        status: u16,
        /// DPS's six-digit `errorCode`, as the real service documents it.
        error_code: u32,
        /// A short machine-friendly name for the refusal.
        kind: String,
        /// The exact reason and the fix (the real DPS says less).
        reason: String,
    },
    /// A DPS connection ended.
    DpsDisconnected {
        /// The DPS registration id.
        registration_id: String,
        /// Why it ended.
        reason: String,
    },
    /// The hub's open-files limit at start (it raises the soft limit to the hard one).
    OpenFiles {
        /// The soft limit before (None: unlimited).
        before: Option<u64>,
        /// The soft limit now.
        soft: Option<u64>,
        /// The hard limit.
        hard: Option<u64>,
    },
}

impl HubEvent {
    /// One line for the text log. Client ids, payloads and property bags are the peer's
    /// choice: escaped, newlines included, so a peer can neither steer the terminal nor forge
    /// a log line.
    pub fn line(&self) -> String {
        crate::text::escape_controls(&self.raw_line()).into_owned()
    }

    fn raw_line(&self) -> String {
        match self {
            HubEvent::Listening { addr } => format!("listening on {addr}"),
            HubEvent::ListeningFor { transport, addr } => {
                format!("listening for {transport} on {addr}")
            }
            HubEvent::Accepted {
                device,
                peer,
                keep_alive,
            } => format!("device {device}: connected from {peer} (keep-alive {keep_alive} s)"),
            HubEvent::Refused { peer, reason, .. } => {
                format!("refused {peer}: CONNACK 5 not authorized: {reason}")
            }
            HubEvent::Dropped { peer, reason } => format!("dropped {peer}: {reason}"),
            HubEvent::Disconnected { device, reason } => {
                format!("device {device}: disconnected: {reason}")
            }
            HubEvent::RevokedCertificate {
                device,
                name,
                serial,
                reason,
            } => format!(
                "device {device}: WARNING: connected with certificate serial {serial} of \"{name}\", revoked in this workspace ({reason}); like IoT Hub, this hub checks no CRL: disable the device on the hub (a revocation can do that too)"
            ),
            HubEvent::Telemetry {
                device,
                properties,
                payload,
                ..
            } => format!(
                "device {device}: telemetry {} {payload}",
                properties.encode()
            ),
            HubEvent::TwinGet { device, rid } => format!("device {device}: twin GET rid={rid}"),
            HubEvent::TwinReported {
                device,
                version,
                patch,
                ..
            } => format!("device {device}: reported v{version} {patch}"),
            HubEvent::TwinDesired {
                device,
                version,
                delivered,
            } => format!("device {device}: desired v{version} (delivered: {delivered})"),
            HubEvent::C2dSettled {
                device,
                message_id,
                outcome,
            } => format!("device {device}: c2d {message_id} {outcome}"),
            HubEvent::C2d {
                device,
                message_id,
                delivered,
            } => {
                if *delivered {
                    format!("device {device}: c2d {message_id} delivered")
                } else {
                    format!(
                        "device {device}: c2d {message_id} queued (not subscribed to devices/{device}/messages/devicebound/#; sent when it subscribes)"
                    )
                }
            }
            HubEvent::MethodCall { device, name, rid } => {
                format!("device {device}: method {name} rid={rid}")
            }
            HubEvent::MethodResponse {
                device,
                rid,
                status,
                payload,
            } => format!("device {device}: method response rid={rid} status {status} {payload}"),
            HubEvent::DpsConnected {
                registration_id,
                peer,
                api_version,
            } => {
                format!("dps {registration_id}: connected from {peer} (api-version {api_version})")
            }
            HubEvent::DpsRegistering {
                registration_id,
                operation_id,
            } => {
                format!("dps {registration_id}: register: 202 assigning, operation {operation_id}")
            }
            HubEvent::DpsAssigned {
                registration_id,
                device_id,
                assigned_hub,
                substatus,
                enrollment,
                issued,
                note,
            } => format!(
                "dps {registration_id}: assigned device {device_id} to {assigned_hub} ({substatus}, {enrollment}{}){}",
                if *issued {
                    ", certificate issued from CSR"
                } else {
                    ""
                },
                note.as_ref().map(|n| format!("; {n}")).unwrap_or_default()
            ),
            HubEvent::StateSetAside { note } => format!("state file set aside: {note}"),
            HubEvent::DpsRefused {
                registration_id,
                status,
                error_code,
                reason,
                ..
            } => format!("dps {registration_id}: refused {status} ({error_code}): {reason}"),
            HubEvent::DpsDisconnected {
                registration_id,
                reason,
            } => format!("dps {registration_id}: disconnected: {reason}"),
            HubEvent::OpenFiles { before, soft, hard } => {
                let n = |v: &Option<u64>| v.map_or("unlimited".to_string(), |v| v.to_string());
                let mut line = if before == soft {
                    format!("open files: soft limit {} (hard {})", n(soft), n(hard))
                } else {
                    format!(
                        "open files: soft limit raised from {} to {} (the hard limit)",
                        n(before),
                        n(soft)
                    )
                };
                if hard.is_some_and(|h| h < super::budget::LOW_OPEN_FILES) {
                    line.push_str(&format!(
                        "; WARNING: the hard limit is below {}: connections waiting to authenticate and DPS sessions alone may hold {} descriptors; raise it (ulimit -Hn as root, LimitNOFILE= in a systemd unit, the nofile ulimit of a container)",
                        super::budget::LOW_OPEN_FILES,
                        MAX_UNAUTHENTICATED + MAX_DPS_SESSIONS
                    ));
                }
                line
            }
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
    c2d_queue: Mutex<C2dQueue>,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    /// `serve --id-scope`: the ID scope DPS answers to instead of the workspace's.
    pub(super) id_scope: Option<String>,
    /// DPS operations (register answers) a device may poll, by operation id.
    pub(super) dps_ops: Mutex<super::dps_server::Operations>,
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
fn queue_c2d(sh: &Shared, device: &str, topic: String, body: Vec<u8>) {
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

// ---------------------------------------------------------------- one connection

/// A stream a device speaks MQTT on: TCP+TLS, or a WebSocket over TLS.
pub(super) trait DeviceStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> DeviceStream for S {}

/// An MQTT connection on an authenticated-TLS stream: CONNECT within 10 s of `start`, then by
/// the username either DPS's protocol ([`super::dps_server`]) or the hub's: authenticate,
/// serve the device session.
pub(super) async fn mqtt_connection<S: DeviceStream>(
    sh: Arc<Shared>,
    mut tls: S,
    chain: Vec<Vec<u8>>,
    peer: SocketAddr,
    unauthenticated: BudgetPermit,
    start: tokio::time::Instant,
) {
    let deadline = start + CONNECT_TIMEOUT;
    let mut stop = sh.gate.shutdown.clone();
    let mut buf = BytesMut::with_capacity(4096);
    let Some(connect) = read_connect(&sh, &mut tls, &mut buf, peer, deadline, &mut stop).await
    else {
        return;
    };
    let username = connect.login.as_ref().map(|l| l.username.clone());
    if username.as_deref().is_some_and(azure::dps::is_dps_username) {
        let conn = super::dps_server::DpsConn {
            tls,
            buf,
            peer,
            chain,
            stop,
        };
        super::dps_server::serve(sh, conn, connect, unauthenticated).await;
        return;
    }
    let Some(revoked) = authenticate(&sh, &mut tls, &connect, &chain, peer).await else {
        return;
    };
    drop(unauthenticated);
    device_session(sh, tls, buf, connect, peer, revoked, stop).await;
}

/// CONNECT, within what is left of the 10 s and at most MAX_CONNECT_BYTES. None: the
/// connection was dropped (and said why).
async fn read_connect<S: DeviceStream>(
    sh: &Shared,
    tls: &mut S,
    buf: &mut BytesMut,
    peer: SocketAddr,
    deadline: tokio::time::Instant,
    stop: &mut watch::Receiver<bool>,
) -> Option<rumqttc::mqttbytes::v4::Connect> {
    let drop_with = |reason: String| {
        sh.emit(HubEvent::Dropped { peer, reason });
        None
    };
    loop {
        if buf.first().is_some_and(|b| *b != 0x10) {
            return drop_with(format!(
                "first bytes are not an MQTT CONNECT (0x{:02x}); closed",
                buf[0]
            ));
        }
        match Packet::read(buf, MAX_CONNECT_BYTES) {
            Ok(Packet::Connect(c)) if c.protocol == rumqttc::mqttbytes::Protocol::V4 => {
                return Some(c);
            }
            Ok(Packet::Connect(_)) => {
                refuse_protocol(sh, tls, peer, "5").await;
                return None;
            }
            Ok(other) => {
                return drop_with(format!(
                    "first packet was {:?}, not CONNECT",
                    packet_name(&other)
                ));
            }
            Err(mqttbytes::Error::InsufficientBytes(_)) if buf.len() < MAX_CONNECT_BYTES => {}
            Err(mqttbytes::Error::InsufficientBytes(_))
            | Err(mqttbytes::Error::PayloadSizeLimitExceeded(_)) => {
                return drop_with(format!(
                    "CONNECT is larger than {} KiB, the most accepted before authentication; closed",
                    MAX_CONNECT_BYTES / 1024
                ));
            }
            Err(mqttbytes::Error::InvalidProtocolLevel(level)) => {
                refuse_protocol(sh, tls, peer, &level.to_string()).await;
                return None;
            }
            Err(mqttbytes::Error::InvalidProtocol) => {
                refuse_protocol(sh, tls, peer, "3 (MQIsdp)").await;
                return None;
            }
            Err(e) => return drop_with(format!("malformed CONNECT: {e:?}")),
        }
        let r = tokio::select! {
            r = tokio::time::timeout_at(deadline, tls.read_buf(buf)) => r,
            _ = stop.changed() => return None,
        };
        match r {
            Ok(Ok(0)) => return drop_with("closed before CONNECT".into()),
            Ok(Err(e)) => return drop_with(format!("read failed before CONNECT: {e}")),
            Ok(Ok(_)) => {}
            Err(_) => return drop_with("no CONNECT within 10 s of connecting; closed".into()),
        }
    }
}

/// IoT Hub's rules for a device CONNECT. On refusal: CONNACK 5, the reason remembered and
/// emitted, None. On success: the revocation to warn about, if any.
async fn authenticate<S: DeviceStream>(
    sh: &Arc<Shared>,
    tls: &mut S,
    connect: &rumqttc::mqttbytes::v4::Connect,
    chain: &[Vec<u8>],
    peer: SocketAddr,
) -> Option<Option<super::registry::RevokedCert>> {
    let device = &connect.client_id;
    let username = connect.login.as_ref().map(|l| l.username.as_str());
    let mut revoked = None;
    let verdict = match current_registry(sh).await {
        Ok(Ok((reg, trust))) => {
            revoked = chain.first().and_then(|d| reg.revoked_cert(d)).cloned();
            auth::authenticate(&reg, &trust, device, username, chain, sh.config.clock.now())
                .map_err(|r| r.explained_by(&sh.store.ws))
        }
        Ok(Err(e)) => Err(auth::Refusal::Registry {
            detail: e.to_string(),
        }),
        Err(_) => return None,
    };
    match verdict {
        Ok(_) => Some(revoked),
        Err(refusal) => {
            let device = Some(device.clone()).filter(|d| !d.is_empty());
            refuse_connect(sh, tls, peer, device, refusal.kind(), refusal.to_string()).await;
            None
        }
    }
}

/// CONNACK 5 with the reason remembered (before the CONNACK goes out, so a client that asks
/// the control channel right after finds it) and emitted; then close.
pub(super) async fn refuse_connect<S: DeviceStream>(
    sh: &Shared,
    tls: &mut S,
    peer: SocketAddr,
    device: Option<String>,
    kind: &str,
    reason: String,
) {
    sh.remember_refusal(peer, device.clone(), kind, reason.clone());
    let mut out = BytesMut::new();
    let _ = ConnAck::new(ConnectReturnCode::NotAuthorized, false).write(&mut out);
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    sh.emit(HubEvent::Refused {
        peer,
        device,
        kind: kind.to_string(),
        reason,
    });
    let _ = tls.shutdown().await;
}

/// CONNACK 3 "server unavailable" (a budget is full: the client may retry later), the reason
/// logged at most once a second like the accept-time caps; then close.
pub(super) async fn refuse_unavailable<S: DeviceStream>(
    sh: &Shared,
    tls: &mut S,
    peer: SocketAddr,
    why: String,
) {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(ConnectReturnCode::ServiceUnavailable, false).write(&mut out);
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
    over_cap(sh, peer, format!("{why}; CONNACK 3 server unavailable"));
}

/// An accepted device: take over its id (a new connection drops the old one), CONNACK 0,
/// then packets both ways until one side closes.
async fn device_session<S: DeviceStream>(
    sh: Arc<Shared>,
    mut tls: S,
    mut buf: BytesMut,
    connect: rumqttc::mqttbytes::v4::Connect,
    peer: SocketAddr,
    revoked: Option<super::registry::RevokedCert>,
    mut stop: watch::Receiver<bool>,
) {
    let device = connect.client_id.clone();
    let mut out = BytesMut::with_capacity(4096);
    let (conn, mut rx, subs) = take_over(&sh, &device);
    let keep_alive = if connect.keep_alive == 0 {
        azure::MAX_KEEP_ALIVE_SECS
    } else {
        connect.keep_alive.min(azure::MAX_KEEP_ALIVE_SECS)
    };
    let idle = Duration::from_millis(u64::from(keep_alive) * 1500);
    let _ = ConnAck::new(ConnectReturnCode::Success, false).write(&mut out);
    sh.emit(HubEvent::Accepted {
        device: device.clone(),
        peer,
        keep_alive: connect.keep_alive,
    });
    if let Some(r) = revoked {
        sh.emit(HubEvent::RevokedCertificate {
            device: device.clone(),
            name: r.name,
            serial: r.serial,
            reason: r.reason,
        });
    }

    let mut session = Session::new(sh.clone(), device.clone(), subs);
    let reason = loop {
        if !out.is_empty() {
            if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                break "write failed (client gone)".to_string();
            }
            out.clear();
        }
        tokio::select! {
            r = tokio::time::timeout(idle, tls.read_buf(&mut buf)) => match r {
                Err(_) => break format!("no packet within 1.5 × keep-alive ({keep_alive} s)"),
                Ok(Err(e)) => break format!("read failed: {e}"),
                Ok(Ok(0)) => break "connection closed by the device".to_string(),
                Ok(Ok(_)) => {
                    if let Err(why) = session.drain(&mut buf, &mut out).await {
                        // Flush acknowledgements already earned, then close.
                        let _ = tls.write_all(&out).await;
                        break why;
                    }
                }
            },
            m = rx.recv() => match m {
                Some(Outbound::Publish { topic, payload }) => {
                    session.publish(topic, payload, &mut out);
                }
                Some(Outbound::Kick(why)) => break why,
                None => break "hub closed the session".to_string(),
            },
            _ = stop.changed() => break "hub shutting down".to_string(),
        }
    };
    let _ = tls.shutdown().await;
    release(&sh, &device, conn);
    sh.emit(HubEvent::Disconnected { device, reason });
}

/// Read every whole packet in `buf`: Err(reason) when one is fatal (too large, malformed, or
/// one the device may not send). The one MQTT decoder of device and DPS sessions.
pub(super) fn next_packet(buf: &mut BytesMut) -> Result<Option<Packet>, String> {
    match Packet::read(buf, MAX_PACKET) {
        // MQTT 3.1.1 §3.3.2.1: "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard
        // characters"; a server that receives one closes the connection and acknowledges
        // nothing (§4.8: a protocol violation).
        Ok(Packet::Publish(p)) if p.topic.contains(['+', '#']) => Err(format!(
            "PUBLISH to \"{}\" holds a wildcard (+ or #), which MQTT 3.1.1 forbids in a topic name (§3.3.2.1); protocol violation, closed without acknowledging",
            crate::text::escape_controls(&p.topic)
        )),
        // §1.5.3: a UTF-8 string "MUST NOT include an encoding of the null character U+0000".
        Ok(Packet::Publish(p)) if p.topic.contains('\0') => Err(format!(
            "PUBLISH to \"{}\" holds U+0000, which MQTT 3.1.1 forbids in a string (§1.5.3); protocol violation, closed without acknowledging",
            crate::text::escape_controls(&p.topic)
        )),
        Ok(p) => Ok(Some(p)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(format!(
            "packet of {n} bytes exceeds IoT Hub's 256 KB message limit"
        )),
        Err(e) => Err(format!("malformed packet: {e:?}")),
    }
}

/// CONNECT of another MQTT version: CONNACK 1 (unacceptable protocol version), then close.
async fn refuse_protocol<S: tokio::io::AsyncWrite + Unpin>(
    sh: &Shared,
    tls: &mut S,
    peer: SocketAddr,
    level: &str,
) {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(ConnectReturnCode::RefusedProtocolVersion, false).write(&mut out);
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    sh.emit(HubEvent::Dropped {
        peer,
        reason: format!(
            "CONNECT with MQTT protocol level {level}; IoT Hub speaks MQTT 3.1.1 (level 4): CONNACK 1"
        ),
    });
}

pub(super) fn packet_name(p: &Packet) -> &'static str {
    match p {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect => "DISCONNECT",
    }
}

/// A device's session with the hub: IoT Hub's device protocol, spoken in MQTT packets (the
/// AMQP transport translates its links to and from them, see [`crate::amqp`]).
pub(super) struct Session {
    sh: Arc<Shared>,
    device: String,
    subs: Subscriptions,
    next_pkid: u16,
}

type Subscriptions = Arc<Mutex<Vec<(String, QoS, DeviceSubscription)>>>;

impl Session {
    pub(super) fn new(sh: Arc<Shared>, device: String, subs: Subscriptions) -> Session {
        Session {
            sh,
            device,
            subs,
            next_pkid: 1,
        }
    }

    /// Handle every whole packet in `buf`.
    async fn drain(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<(), String> {
        while let Some(p) = next_packet(buf)? {
            self.handle(p, out).await?;
        }
        Ok(())
    }

    /// Queue a PUBLISH to the device if one of its subscriptions matches; false when none does
    /// (nothing is sent).
    pub(super) fn publish(&mut self, topic: String, payload: Vec<u8>, out: &mut BytesMut) -> bool {
        let qos = {
            let subs = self.subs.lock().expect("subs");
            subs.iter()
                .filter(|(f, _, _)| azure::filter_matches(f, &topic))
                .map(|(_, q, _)| *q)
                .max_by_key(|q| *q as u8)
        };
        let Some(qos) = qos else { return false };
        let mut p = Publish::new(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            p.pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        }
        let _ = p.write(out);
        true
    }

    /// Handle one packet; Err closes the connection with that reason.
    pub(super) async fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Result<(), String> {
        match p {
            Packet::Publish(p) => self.on_publish(p, out).await,
            Packet::PubAck(_) => Ok(()),
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut drain = false;
                for f in s.filters {
                    let kind = azure::classify_subscribe(&self.device, &f.path).map_err(|e| {
                        format!("SUBSCRIBE refused, {e}; IoT Hub disconnects such devices")
                    })?;
                    let granted = if f.qos == QoS::AtMostOnce {
                        QoS::AtMostOnce
                    } else {
                        QoS::AtLeastOnce
                    };
                    let mut subs = self.subs.lock().expect("subs");
                    if let Some(e) = subs.iter_mut().find(|(p, _, _)| *p == f.path) {
                        e.1 = granted;
                        codes.push(SubscribeReasonCode::Success(granted));
                    } else if subs.len() >= MAX_SUBSCRIPTIONS {
                        codes.push(SubscribeReasonCode::Failure);
                    } else {
                        subs.push((f.path, granted, kind));
                        codes.push(SubscribeReasonCode::Success(granted));
                        drain |= kind == DeviceSubscription::C2d;
                    }
                }
                let _ = SubAck::new(s.pkid, codes).write(out);
                if drain {
                    let queued = self
                        .sh
                        .c2d_queue
                        .lock()
                        .expect("queue")
                        .remove(&self.device)
                        .unwrap_or_default();
                    for (topic, body) in queued {
                        self.publish(topic, body, out);
                    }
                }
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.subs
                    .lock()
                    .expect("subs")
                    .retain(|(p, _, _)| !u.topics.contains(p));
                let _ = UnsubAck::new(u.pkid).write(out);
                Ok(())
            }
            Packet::PingReq => {
                let _ = rumqttc::mqttbytes::v4::PingResp.write(out);
                Ok(())
            }
            Packet::Disconnect => Err("device sent DISCONNECT".into()),
            other => Err(format!(
                "unexpected {} from a device; closed",
                packet_name(&other)
            )),
        }
    }

    async fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Result<(), String> {
        if p.qos == QoS::ExactlyOnce {
            return Err(
                "QoS 2 PUBLISH; IoT Hub supports QoS 0 and 1 only and closes the connection".into(),
            );
        }
        if p.payload.len() > azure::MAX_MESSAGE_BYTES {
            return Err(format!(
                "message of {} bytes exceeds IoT Hub's 256 KB limit",
                p.payload.len()
            ));
        }
        let what = azure::classify_publish(&self.device, &p.topic)
            .map_err(|e| format!("PUBLISH refused, {e}; IoT Hub disconnects such devices"))?;
        let ack = |out: &mut BytesMut| {
            if p.qos == QoS::AtLeastOnce {
                let _ = PubAck::new(p.pkid).write(out);
            }
        };
        match what {
            DevicePublish::Telemetry(props) => {
                ack(out);
                let enqueued = self.sh.config.clock.now();
                if self.sh.config.echo {
                    let orig = props.message_id().map(str::to_string).unwrap_or_default();
                    let mid = format!("echo-{}", self.sh.id());
                    let mut echo = Properties::new()
                        .with(azure::sys::MESSAGE_ID, mid.clone())
                        .with(azure::sys::CORRELATION_ID, orig.clone());
                    echo.0.push(("original-message-id".into(), orig));
                    let topic = azure::c2d_topic(&self.device, &echo);
                    // Only a device subscribed to devicebound gets it now; otherwise it is
                    // queued like any C2D message and goes out when the device subscribes.
                    let delivered = self.publish(topic.clone(), p.payload.to_vec(), out);
                    if !delivered {
                        queue_c2d(&self.sh, &self.device, topic, p.payload.to_vec());
                    }
                    self.sh.emit(HubEvent::C2d {
                        device: self.device.clone(),
                        message_id: mid,
                        delivered,
                    });
                }
                self.sh.emit(HubEvent::Telemetry {
                    device: self.device.clone(),
                    topic: clip(&p.topic),
                    properties: clip_properties(props),
                    payload: clip(&String::from_utf8_lossy(&p.payload)),
                    size: p.payload.len(),
                    qos: p.qos as u8,
                    enqueued,
                });
            }
            DevicePublish::TwinGet { rid } => {
                ack(out);
                let store = self.sh.store.clone();
                let id = self.device.clone();
                let twin = tokio::task::spawn_blocking(move || store.load_twin(&id))
                    .await
                    .ok()
                    .and_then(Result::ok);
                let (status, body) = match twin {
                    Some(t) => (200, t.document().to_string()),
                    None => (500, r#"{"message":"twin unreadable"}"#.to_string()),
                };
                self.publish(
                    azure::twin_response_topic(status, &rid, None),
                    body.into_bytes(),
                    out,
                );
                self.sh.emit(HubEvent::TwinGet {
                    device: self.device.clone(),
                    rid,
                });
            }
            DevicePublish::TwinPatchReported { rid } => {
                ack(out);
                let patch: Option<serde_json::Value> = serde_json::from_slice(&p.payload)
                    .ok()
                    .filter(|v: &serde_json::Value| v.is_object());
                let Some(patch) = patch else {
                    self.publish(azure::twin_response_topic(400, &rid, None), Vec::new(), out);
                    return Ok(());
                };
                let store = self.sh.store.clone();
                let id = self.device.clone();
                let pc = patch.clone();
                let r = tokio::task::spawn_blocking(move || store.patch_reported(&id, &pc)).await;
                match r {
                    Ok(Ok(version)) => {
                        self.publish(
                            azure::twin_response_topic(204, &rid, Some(version)),
                            Vec::new(),
                            out,
                        );
                        // A patch over MAX_EVENT_TEXT travels as its cut text.
                        let text = patch.to_string();
                        let patch = if text.len() > MAX_EVENT_TEXT {
                            serde_json::Value::String(clip(&text))
                        } else {
                            patch
                        };
                        self.sh.emit(HubEvent::TwinReported {
                            device: self.device.clone(),
                            rid,
                            version,
                            patch,
                        });
                    }
                    // Deeper or larger than IoT Hub allows: 400, as IoT Hub answers, and
                    // nothing stored, so the twin file stays readable.
                    Ok(Err(
                        e @ (RegistryError::TwinLimit { .. } | RegistryError::TwinKey { .. }),
                    )) => {
                        let body = serde_json::json!({ "message": e.to_string() });
                        self.publish(
                            azure::twin_response_topic(400, &rid, None),
                            body.to_string().into_bytes(),
                            out,
                        );
                    }
                    _ => {
                        self.publish(azure::twin_response_topic(500, &rid, None), Vec::new(), out);
                    }
                }
            }
            DevicePublish::MethodResponse { status, rid } => {
                ack(out);
                let waiter = self.sh.pending.lock().expect("pending").remove(&rid);
                self.sh.emit(HubEvent::MethodResponse {
                    device: self.device.clone(),
                    rid,
                    status,
                    payload: clip(&String::from_utf8_lossy(&p.payload)),
                });
                if let Some(w) = waiter {
                    let _ = w.send((status, p.payload.to_vec()));
                }
            }
        }
        Ok(())
    }
}
