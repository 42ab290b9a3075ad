//! The connection test: a device connects over mutual TLS, sends telemetry, times round trips,
//! and explains every failure in one sentence of cause and one of fix.
//!
//! The engine is one async task ([`run`]) that emits [`Event`]s over a tokio channel as each
//! step happens; the CLI prints them (text or JSON lines) and the TUI renders the same stream.
//! The TLS handshake is done here with tokio-rustls (so the version, cipher suite, server
//! certificate and the exact alert are known) and MQTT 3.1.1 packets are driven with
//! `rumqttc::mqttbytes::v4`, the codec the local hub uses too.

mod amqp;
pub mod aws;
pub mod diagnose;
pub mod identity;
pub mod local;
pub mod record;
mod remedy;
pub(crate) mod session;
mod state;
pub mod stats;
mod tls;

pub use diagnose::{ConnectRemedy, Diagnosis, Failure, FailureKind};
pub use identity::Identity;
pub use remedy::AwsFix;
pub use session::run;
pub use stats::LatencyStats;

use crate::pki::lint::Finding;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// Which protocol conventions the device follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// Azure IoT Hub: username `{host}/{id}/?api-version=…`, telemetry with a property bag,
    /// round trips through the device twin (and the local hub's C2D echo).
    Azure,
    /// Any MQTT broker: the device subscribes to its own telemetry topic.
    Generic,
    /// AWS IoT Core: client id = thing name, telemetry on `device/{id}/telemetry`, which the
    /// device subscribes to for its round trip.
    Aws,
}

impl std::str::FromStr for Flavor {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        [Flavor::Azure, Flavor::Aws, Flavor::Generic]
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| ChoiceError::Flavor(s.to_string()))
    }
}

/// A flavor, transport or TLS version the connection test does not know (each variant holds
/// the value as written; the message lists what is accepted).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChoiceError {
    /// Not `azure`, `aws` nor `generic`.
    #[error("flavor \"{0}\" is not known; use azure, aws or generic")]
    Flavor(String),
    /// Not one of [`Transport::ALL`].
    #[error("transport \"{0}\" is not known; use mqtt, mqtt-ws, amqp or amqp-ws")]
    Transport(String),
    /// Neither TLS 1.2 nor 1.3.
    #[error("TLS version \"{0}\" is not supported; use 1.2 or 1.3 (IoT Hub requires 1.2 or later)")]
    TlsVersion(String),
}

/// How the device reaches the hub or broker: what the device SDKs offer with X.509.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// MQTT 3.1.1 over TLS (8883).
    #[default]
    Mqtt,
    /// MQTT over a WebSocket over TLS (443, `/$iothub/websocket`, subprotocol `mqtt`).
    MqttWs,
    /// AMQP 1.0 over TLS (5671).
    Amqp,
    /// AMQP over a WebSocket over TLS (443, subprotocol `AMQPWSB10`).
    AmqpWs,
}

impl Transport {
    /// Every transport, in the order the faces list them.
    pub const ALL: [Transport; 4] = [
        Transport::Mqtt,
        Transport::MqttWs,
        Transport::Amqp,
        Transport::AmqpWs,
    ];
    /// The name the CLI and the JSON output use (`mqtt`, `mqtt-ws`, `amqp`, `amqp-ws`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Mqtt => "mqtt",
            Transport::MqttWs => "mqtt-ws",
            Transport::Amqp => "amqp",
            Transport::AmqpWs => "amqp-ws",
        }
    }
    /// The port IoT Hub serves this transport on.
    fn default_port(self) -> u16 {
        match self {
            Transport::Mqtt => crate::azure::MQTT_PORT,
            Transport::Amqp => crate::azure::amqp::AMQP_PORT,
            Transport::MqttWs | Transport::AmqpWs => crate::azure::websocket::WS_PORT,
        }
    }
    /// Whether the transport runs inside a WebSocket (port 443, an upgrade step first).
    pub fn websocket(self) -> bool {
        matches!(self, Transport::MqttWs | Transport::AmqpWs)
    }
    /// What the protocol calls a message's acknowledgement: MQTT's PUBACK, AMQP's
    /// disposition (the settlement of the delivery).
    pub fn ack_name(self) -> &'static str {
        if self.amqp() { "disposition" } else { "PUBACK" }
    }

    /// What a clean close sends: MQTT's DISCONNECT, AMQP's detach of the links and close of
    /// the connection.
    pub fn close_name(self) -> &'static str {
        if self.amqp() {
            "detach/close"
        } else {
            "DISCONNECT"
        }
    }

    /// Whether the transport speaks AMQP 1.0 (IoT Hub's AMQP device protocol) rather than MQTT.
    pub fn amqp(self) -> bool {
        matches!(self, Transport::Amqp | Transport::AmqpWs)
    }
}

impl std::str::FromStr for Transport {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| ChoiceError::Transport(s.to_string()))
    }
}

/// A TLS version to insist on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TlsVersion {
    /// TLS 1.2 (the least IoT Hub accepts).
    #[serde(rename = "1.2")]
    V1_2,
    /// TLS 1.3.
    #[serde(rename = "1.3")]
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = ChoiceError;
    fn from_str(s: &str) -> Result<Self, ChoiceError> {
        match s
            .trim()
            .trim_start_matches("TLS")
            .trim_start_matches("tls")
            .trim()
        {
            "1.2" | "12" => Ok(TlsVersion::V1_2),
            "1.3" | "13" => Ok(TlsVersion::V1_3),
            _ => Err(ChoiceError::TlsVersion(s.to_string())),
        }
    }
}

/// What kind of peer the device talks to; decides the defaults and the diagnosis wording.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PeerKind {
    /// chainsmith's own local hub (it can tell exactly why it refused).
    LocalHub,
    /// A real Azure IoT Hub (`*.azure-devices.net`).
    AzureHub,
    /// Any other MQTT broker (Mosquitto, ...).
    Broker,
    /// The workspace's running local AWS IoT Core (`aws serve`; it can tell why it refused).
    AwsLocal,
    /// A real AWS IoT Core endpoint (`PREFIX-ats.iot.REGION.amazonaws.com`): it closes the
    /// connection without a reason.
    AwsIot,
}

impl PeerKind {
    /// AWS IoT Core, local or real.
    pub fn is_aws(self) -> bool {
        matches!(self, PeerKind::AwsLocal | PeerKind::AwsIot)
    }
}

/// Where to connect.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// The host name or IP address dialled (also the TLS server name); IPv6 without brackets.
    pub host: String,
    /// The TCP port (1–65535).
    pub port: u16,
    /// What is expected at the other end; decides defaults and the diagnosis wording.
    pub peer: PeerKind,
}

impl Endpoint {
    /// Parse the `--to` value: `HOST`, `HOST:PORT` (an Azure IoT Hub) or `mqtts://HOST[:PORT]`
    /// (any broker). `local` is handled by the caller, which knows the hub's port.
    pub fn parse(to: &str) -> Result<Endpoint, EndpointError> {
        let to = to.trim();
        let (rest, peer) = match to.split_once("://") {
            Some(("mqtts", rest)) | Some(("ssl", rest)) | Some(("tls", rest)) => {
                (rest, PeerKind::Broker)
            }
            // A broker's WebSocket listener: the path is the test's `websocket_path` (see `websocket_path`).
            Some(("wss", rest)) => (
                rest.split_once('/').map_or(rest, |(h, _)| h),
                PeerKind::Broker,
            ),
            Some((scheme, _)) => {
                return Err(EndpointError::Scheme {
                    to: to.to_string(),
                    scheme: scheme.to_string(),
                });
            }
            None => (to, PeerKind::AzureHub),
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Err(EndpointError::NoHost(to.to_string()));
        }
        let (host, port) = split_host_port(rest).map_err(|problem| EndpointError::HostPort {
            to: to.to_string(),
            problem,
        })?;
        if host.is_empty() || host.contains('/') || host.contains(' ') {
            return Err(EndpointError::NotAHost(to.to_string()));
        }
        Ok(Endpoint {
            host,
            port: port.unwrap_or(8883),
            peer,
        })
    }

    /// [`Endpoint::parse`] for a transport: without a port, the transport's (IoT Hub's 8883,
    /// 5671 or 443); a broker is tested over MQTT only (plain or over WebSockets).
    pub(crate) fn parse_for(to: &str, transport: Transport) -> Result<Endpoint, EndpointError> {
        let mut e = Endpoint::parse(to)?;
        if transport.amqp() && e.peer == PeerKind::Broker {
            return Err(EndpointError::BrokerOverAmqp {
                to: to.to_string(),
                transport,
            });
        }
        let rest = to.trim().split_once("://").map_or(to.trim(), |(_, r)| r);
        let hostport = rest.split('/').next().unwrap_or("");
        let has_port = match hostport.rsplit_once(':') {
            Some((h, p)) => !p.is_empty() && (!h.contains(':') || h.ends_with(']')),
            None => false,
        };
        if !has_port {
            e.port = transport.default_port();
        }
        Ok(e)
    }

    /// The path of a `wss://HOST:PORT/PATH` target (None for other forms).
    pub fn websocket_path(to: &str) -> Option<String> {
        let rest = to.trim().strip_prefix("wss://")?;
        let (_, path) = rest.split_once('/')?;
        Some(format!("/{path}"))
    }

    /// `host:port`, with an IPv6 address in brackets.
    pub fn display(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Why a `--to` value (a hub's `HOST[:PORT]` or a broker's `mqtts://HOST:PORT`) is not an
/// address to dial; each variant holds the value as written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndpointError {
    /// A scheme other than TLS's (`mqtt://`, `http://`): the test never connects in the clear.
    #[error(
        "\"{to}\": scheme \"{scheme}://\" is not supported; the test always uses TLS: write mqtts://HOST:PORT (or wss://HOST:PORT/PATH for MQTT over WebSockets)"
    )]
    Scheme {
        /// The value as written.
        to: String,
        /// The scheme before `://`.
        scheme: String,
    },
    /// Nothing where the host should be (`mqtts://`).
    #[error("\"{0}\" names no host; write HOST, HOST:PORT or mqtts://HOST:PORT")]
    NoHost(String),
    /// The host and port do not split (an unclosed IPv6 bracket, a port out of range).
    #[error("\"{to}\": {problem}")]
    HostPort {
        /// The value as written.
        to: String,
        /// What is wrong with the host and port.
        problem: HostPortError,
    },
    /// The host holds a space or a path, or is empty.
    #[error("\"{0}\" is not a host name; write HOST, HOST:PORT or mqtts://HOST:PORT")]
    NotAHost(String),
    /// An AMQP transport asked of a broker: only IoT Hub speaks its AMQP device protocol.
    #[error(
        "\"{to}\": transport {} speaks IoT Hub's AMQP device protocol; test a broker with mqtt or mqtt-ws",
        .transport.as_str()
    )]
    BrokerOverAmqp {
        /// The value as written.
        to: String,
        /// The AMQP transport asked for.
        transport: Transport,
    },
}

/// What is wrong with the `HOST:PORT` part of a target.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HostPortError {
    /// `[::1` without its `]`.
    #[error("an IPv6 address needs a closing ]")]
    UnclosedBracket,
    /// Something other than `:PORT` after `[ADDRESS]` (the text that follows).
    #[error("unexpected \"{0}\" after the address")]
    AfterAddress(String),
    /// The port (as written) is not 1–65535.
    #[error("port \"{0}\" is not a number from 1 to 65535")]
    Port(String),
}

fn split_host_port(s: &str) -> Result<(String, Option<u16>), HostPortError> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(HostPortError::UnclosedBracket)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(HostPortError::AfterAddress(after.to_string())),
        };
        return Ok((host.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Ok((h.to_string(), Some(parse_port(p)?))),
        _ => Ok((s.to_string(), None)),
    }
}

fn parse_port(p: &str) -> Result<u16, HostPortError> {
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(HostPortError::Port(p.to_string())),
        Ok(n) => Ok(n),
    }
}

/// Everything a connection test needs; build it, then hand it to [`run`].
#[derive(Clone, Debug)]
pub struct ConnectionTest {
    /// The device: its id, certificate chain and key.
    pub identity: Identity,
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Which protocol conventions to follow (Azure topics or a generic broker's).
    pub flavor: Flavor,
    /// Extra trust anchors for the server certificate (DER).
    pub extra_ca: Vec<Vec<u8>>,
    /// Also trust the system store (Azure and public brokers); off for the local hub and
    /// for brokers given with --ca only.
    pub system_roots: bool,
    /// Telemetry messages to send (default 5, as the seeds' test does).
    pub count: u32,
    /// Pause between two messages (default none).
    pub interval: Duration,
    /// 0 or 1.
    pub qos: u8,
    /// Limit for every network step and for each message's acknowledgement and round trips.
    pub timeout: Duration,
    /// Stop after the pre-flight lint when it finds errors.
    pub strict: bool,
    /// The local hub echoes every telemetry message back as a C2D message.
    pub c2d_echo: bool,
    /// Subscribe to twin responses and GET the twin for every message (azure flavor).
    pub twin: bool,
    /// Emit one event per message (off for 10,000-message benchmarks).
    pub per_message_events: bool,
    /// The host name for the Azure username when it differs from the host dialled (the
    /// local hub's configured name).
    pub hub_hostname: Option<String>,
    /// Only this TLS version (default: 1.2 or 1.3, whichever the peer prefers).
    pub tls_version: Option<TlsVersion>,
    /// More pre-flight findings from what the target is known to trust (the local hub's registry).
    pub preflight_extra: Vec<Finding>,
    /// The local hub, when the test can see inside it: refusal reasons, recorded messages.
    pub hub: Option<Arc<dyn HubView>>,
    /// How to reach the peer: MQTT or AMQP, plain TLS or over WebSockets.
    pub transport: Transport,
    /// The WebSocket path (default: IoT Hub's `/$iothub/websocket`; a broker's from its URL).
    pub websocket_path: Option<String>,
}

/// Why the local hub refused a device: its refusal kind and exact sentence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HubRefusal {
    /// The refusal's kind (`crate::hub::Refusal::kind`), e.g. `cn-mismatch`.
    pub kind: String,
    /// The hub's sentence: what was wrong and what would fix it.
    pub reason: String,
}

/// What the test can ask the local hub (implemented by [`local::HubWatch`]).
pub trait HubView: Send + Sync + std::fmt::Debug {
    /// Why the hub refused `device_id` (waits briefly for the hub's event).
    fn refusal<'a>(
        &'a self,
        device_id: &'a str,
    ) -> futures::future::BoxFuture<'a, Option<HubRefusal>>;
    /// Which of `ids` (telemetry message ids) the hub has not recorded, after waiting up to `wait`.
    fn missing<'a>(
        &'a self,
        device_id: &'a str,
        ids: &'a [u32],
        wait: Duration,
    ) -> futures::future::BoxFuture<'a, Vec<u32>>;
}

impl ConnectionTest {
    /// A test of `identity` against `endpoint` with the defaults: 5 messages at QoS 1, no
    /// pause, 10 s per step, the system trust store only for an Azure hub, twin round trips
    /// for the Azure flavor, over MQTT.
    pub fn new(identity: Identity, endpoint: Endpoint, flavor: Flavor) -> ConnectionTest {
        let system_roots = endpoint.peer == PeerKind::AzureHub;
        ConnectionTest {
            identity,
            endpoint,
            flavor,
            extra_ca: vec![],
            system_roots,
            count: 5,
            interval: Duration::from_millis(0),
            qos: 1,
            timeout: Duration::from_secs(10),
            strict: false,
            c2d_echo: false,
            twin: flavor.dialect().has_twin(),
            per_message_events: true,
            hub_hostname: None,
            tls_version: None,
            preflight_extra: vec![],
            hub: None,
            transport: Transport::Mqtt,
            websocket_path: None,
        }
    }
}

/// The steps of a test, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Check the device's certificate and key before dialling.
    Lint,
    /// Resolve the host name.
    Resolve,
    /// Open the TCP connection.
    TcpConnect,
    /// The TLS handshake with the client certificate.
    TlsHandshake,
    /// The HTTP upgrade to a WebSocket (WebSocket transports).
    WebSocketUpgrade,
    /// AMQP's protocol header, SASL and Open (AMQP transports).
    AmqpOpen,
    /// Attaching the AMQP links (telemetry, C2D, twin, methods).
    LinkAttach,
    /// MQTT CONNECT and CONNACK: the hub's authentication verdict.
    MqttConnect,
    /// Subscribing to the round-trip topics.
    Subscribe,
    /// Sending telemetry and waiting for acknowledgements and round trips.
    Telemetry,
    /// Closing the session.
    Disconnect,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 11] = [
        Step::Lint,
        Step::Resolve,
        Step::TcpConnect,
        Step::TlsHandshake,
        Step::WebSocketUpgrade,
        Step::AmqpOpen,
        Step::LinkAttach,
        Step::MqttConnect,
        Step::Subscribe,
        Step::Telemetry,
        Step::Disconnect,
    ];

    /// The widest [`Step::label`], in columns: step lists pad their names to it so the
    /// timings line up whichever steps a transport has ("WebSocket upgrade" is the widest).
    pub const LABEL_WIDTH: usize = {
        let mut widest = 0;
        let mut i = 0;
        while i < Step::ALL.len() {
            let n = Step::ALL[i].label().len();
            if n > widest {
                widest = n;
            }
            i += 1;
        }
        widest
    };

    /// The step's name in sentences and on screen (`TLS handshake`, `MQTT CONNECT`, …).
    pub const fn label(self) -> &'static str {
        match self {
            Step::Lint => "pre-flight lint",
            Step::Resolve => "resolve",
            Step::TcpConnect => "TCP connect",
            Step::TlsHandshake => "TLS handshake",
            Step::WebSocketUpgrade => "WebSocket upgrade",
            Step::AmqpOpen => "AMQP open",
            Step::LinkAttach => "AMQP link attach",
            Step::MqttConnect => "MQTT CONNECT",
            Step::Subscribe => "subscribe",
            Step::Telemetry => "telemetry",
            Step::Disconnect => "disconnect",
        }
    }
}

/// A certificate as the test reports it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject DN, as one line.
    pub subject: String,
    /// The issuer DN, as one line.
    pub issuer: String,
    /// End of validity (notAfter), RFC 3339.
    pub not_after: String,
    /// Whether that end is already past.
    pub expired: bool,
}

impl CertSummary {
    /// Summarise a DER certificate; `None` when it does not parse.
    pub fn from_der(der: &[u8]) -> Option<CertSummary> {
        let v = crate::pki::inspect::CertView::from_der(der).ok()?;
        Some(CertSummary {
            subject: v.subject,
            issuer: v.issuer,
            not_after: v.not_after,
            expired: v.status == crate::pki::inspect::ValidityStatus::Expired,
        })
    }
}

/// What the TLS handshake established.
#[derive(Clone, Debug, Serialize)]
pub struct TlsFacts {
    /// The negotiated protocol version, `TLS 1.2` or `TLS 1.3`.
    pub version: String,
    /// The negotiated cipher suite, e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher_suite: String,
    /// The server's leaf certificate.
    pub server_cert: Option<CertSummary>,
    /// The server sent these intermediates.
    pub server_chain_len: usize,
    /// The server certificate verified against the trust anchors for the server name.
    pub server_verified: bool,
    /// Whether the server asked for a client certificate.
    pub client_cert_requested: bool,
    /// The CAs the server said it accepts (CertificateRequest), when it said.
    pub acceptable_cas: Vec<String>,
    /// Subjects of the client certificates sent, leaf first.
    pub client_chain_sent: Vec<String>,
}

/// One thing that happened; the CLI prints them, the TUI renders them.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event {
    /// The test begins.
    Start {
        /// The device id under test.
        device: String,
        /// `host:port` dialled.
        endpoint: String,
        /// What is expected at the other end.
        peer: PeerKind,
        /// MQTT or AMQP, plain or over WebSockets.
        transport: Transport,
        /// Azure or generic topic conventions.
        flavor: Flavor,
        /// Telemetry messages to send.
        count: u32,
        /// The QoS they are published with (0 or 1).
        qos: u8,
    },
    /// Pre-flight lint of the identity (empty when clean).
    Lint {
        /// What the lint found (errors stop a strict test).
        findings: Vec<Finding>,
        /// The typed remedies of the findings that have one, by finding code.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        remedies: Vec<diagnose::FindingRemedy>,
    },
    /// The host name resolved.
    Resolved {
        /// How long the step took, in milliseconds.
        ms: f64,
        /// Every address it resolved to.
        addresses: Vec<String>,
    },
    /// The TCP connection is open.
    TcpConnected {
        /// How long the step took, in milliseconds.
        ms: f64,
        /// The address that answered.
        address: String,
    },
    /// The TLS handshake completed.
    TlsEstablished {
        /// How long the step took, in milliseconds.
        ms: f64,
        /// What the handshake established (flattened into the JSON event).
        #[serde(flatten)]
        facts: TlsFacts,
    },
    /// A transport's own step went through: the WebSocket upgrade, the AMQP open (SASL and
    /// Open), the AMQP link attach.
    StepDone {
        /// Which step.
        step: Step,
        /// How long the step took, in milliseconds.
        ms: f64,
        /// What it did: the path and subprotocol, the SASL mechanism, the links attached.
        detail: String,
    },
    /// The broker answered the MQTT CONNECT (any return code; a refusal is followed by
    /// [`Event::Failed`]).
    Connack {
        /// How long the step took, in milliseconds.
        ms: f64,
        /// The CONNACK return code (MQTT 3.1.1: 0 accepted … 5 not authorized).
        code: u8,
        /// The return code in words.
        meaning: String,
        /// The username the device sent (Azure: `{host}/{id}/?api-version=…`).
        username: String,
    },
    /// The SUBACK for the round-trip subscriptions came back.
    Subscribed {
        /// How long the step took, in milliseconds.
        ms: f64,
        /// Each filter and what the broker granted.
        topics: Vec<SubscriptionResult>,
    },
    /// A telemetry message was published; `ack_ms` is its PUBACK latency (QoS 1).
    Published {
        /// The message's number in this test (0-based; the payload's `messageId`).
        message_id: u32,
        /// The topic it went to (Azure: with its property bag).
        topic: String,
        /// The JSON body: `{"deviceId","messageId","temperature","humidity"}`.
        payload: String,
        /// Whether the `temperatureAlert` property is `true` (temperature above 30).
        temperature_alert: bool,
        /// PUBACK latency in milliseconds (QoS 1); `None` at QoS 0.
        ack_ms: Option<f64>,
    },
    /// A message's acknowledgement never came within the timeout.
    AckMissing {
        /// The message's number in this test.
        message_id: u32,
    },
    /// A round trip came back.
    RoundTrip {
        /// The telemetry message it belongs to.
        message_id: u32,
        /// Which kind of round trip.
        kind: RoundTripKind,
        /// Milliseconds from the request to its answer.
        ms: f64,
        /// What came back: the twin answer's status and version, or the echo's size in bytes.
        detail: String,
    },
    /// A round trip did not come back within the timeout.
    RoundTripMissing {
        /// The telemetry message it belongs to.
        message_id: u32,
        /// Which kind of round trip.
        kind: RoundTripKind,
    },
    /// The local hub's own record: which messages it received as telemetry.
    HubRecorded {
        /// How many of the messages sent the hub recorded.
        recorded: u32,
        /// The message numbers it did not record.
        missing: Vec<u32>,
    },
    /// The session closed cleanly.
    Disconnected {
        /// How long the step took, in milliseconds.
        ms: f64,
    },
    /// The test stopped: the step, what happened, and what to do.
    Failed {
        /// The step that failed.
        step: Step,
        /// Cause and fix (flattened into the JSON event).
        #[serde(flatten)]
        diagnosis: Diagnosis,
    },
    /// The last event: the whole test's outcome.
    Summary(Summary),
}

/// One subscribe filter and the broker's answer to it in the SUBACK.
#[derive(Clone, Debug, Serialize)]
pub struct SubscriptionResult {
    /// The filter subscribed to.
    pub topic: String,
    /// Granted QoS, or None when the broker refused (0x80).
    pub granted: Option<u8>,
}

/// How a message's round trip is observed (it proves the peer received the message).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundTripKind {
    /// Generic flavor: the device receives its own telemetry.
    Echo,
    /// Azure flavor: twin GET request → response.
    Twin,
    /// The local hub's echo of the telemetry as a cloud-to-device message.
    C2d,
}

impl RoundTripKind {
    /// The name in text output and JSON (`echo`, `twin`, `c2d`).
    pub fn as_str(self) -> &'static str {
        match self {
            RoundTripKind::Echo => "echo",
            RoundTripKind::Twin => "twin",
            RoundTripKind::C2d => "c2d",
        }
    }
}

/// The outcome of a whole test.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Every message was sent and acknowledged, every round trip came back, and the local
    /// hub (when visible) recorded them all.
    pub ok: bool,
    /// Telemetry messages published.
    pub sent: u32,
    /// Acknowledged by PUBACK (QoS 1); equals `sent` for QoS 0 once published.
    pub acked: u32,
    /// Round trips the test waited for (per message, one per kind in use).
    pub round_trips_expected: u32,
    /// Round trips that came back in time.
    pub round_trips_seen: u32,
    /// Messages with a missing acknowledgement or round trip.
    pub lost: u32,
    /// PUBACK latency (QoS 1).
    pub ack_latency: Option<LatencyStats>,
    /// Round-trip latency.
    pub round_trip_latency: Option<LatencyStats>,
    /// Messages the local hub recorded (when the test can see inside it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_recorded: Option<u32>,
    /// The whole test's duration, in milliseconds.
    pub total_ms: f64,
    /// Set when the test stopped early.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<Step>,
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1_000_000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each refusal is a typed variant, and its sentence is the one `connect --to` always
    /// printed (the CLI's text and `--json` output do not change).
    #[test]
    fn refusals_are_typed_with_their_sentences() {
        let cases: [(Result<Endpoint, EndpointError>, &str); 7] = [
            (
                Endpoint::parse("mqtt://h:1883"),
                "\"mqtt://h:1883\": scheme \"mqtt://\" is not supported; the test always uses TLS: write mqtts://HOST:PORT (or wss://HOST:PORT/PATH for MQTT over WebSockets)",
            ),
            (
                Endpoint::parse("mqtts://"),
                "\"mqtts://\" names no host; write HOST, HOST:PORT or mqtts://HOST:PORT",
            ),
            (
                Endpoint::parse("h:0"),
                "\"h:0\": port \"0\" is not a number from 1 to 65535",
            ),
            (
                Endpoint::parse("mqtts://[::1"),
                "\"mqtts://[::1\": an IPv6 address needs a closing ]",
            ),
            (
                Endpoint::parse("[::1]x"),
                "\"[::1]x\": unexpected \"x\" after the address",
            ),
            (
                Endpoint::parse("my hub"),
                "\"my hub\" is not a host name; write HOST, HOST:PORT or mqtts://HOST:PORT",
            ),
            (
                Endpoint::parse_for("mqtts://b:1", Transport::AmqpWs),
                "\"mqtts://b:1\": transport amqp-ws speaks IoT Hub's AMQP device protocol; test a broker with mqtt or mqtt-ws",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got.unwrap_err().to_string(), want);
        }
        assert!(matches!(
            Endpoint::parse("h:99999"),
            Err(EndpointError::HostPort {
                problem: HostPortError::Port(p),
                ..
            }) if p == "99999"
        ));
        assert_eq!("x".parse::<Flavor>(), Err(ChoiceError::Flavor("x".into())));
        assert_eq!(
            "1.1".parse::<TlsVersion>().unwrap_err().to_string(),
            "TLS version \"1.1\" is not supported; use 1.2 or 1.3 (IoT Hub requires 1.2 or later)"
        );
        assert_eq!(
            "http".parse::<Transport>().unwrap_err().to_string(),
            "transport \"http\" is not known; use mqtt, mqtt-ws, amqp or amqp-ws"
        );
        assert_eq!(
            "x".parse::<Flavor>().unwrap_err().to_string(),
            "flavor \"x\" is not known; use azure, aws or generic"
        );
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse_for("myhub.azure-devices.net", Transport::Amqp).unwrap();
        assert_eq!(e.port, 5671);
        let e = Endpoint::parse_for("myhub.azure-devices.net", Transport::MqttWs).unwrap();
        assert_eq!(e.port, 443);
        let e = Endpoint::parse_for("myhub.azure-devices.net:8443", Transport::AmqpWs).unwrap();
        assert_eq!(e.port, 8443);
        let e = Endpoint::parse_for("wss://127.0.0.1:9001/mqtt", Transport::MqttWs).unwrap();
        assert_eq!((e.port, e.peer), (9001, PeerKind::Broker));
        assert_eq!(
            Endpoint::websocket_path("wss://127.0.0.1:9001/mqtt").as_deref(),
            Some("/mqtt")
        );
        assert!(
            Endpoint::parse_for("mqtts://b:1", Transport::Amqp)
                .unwrap_err()
                .to_string()
                .contains("mqtt-ws")
        );
        assert_eq!("amqp-ws".parse::<Transport>(), Ok(Transport::AmqpWs));
        assert!(
            "http"
                .parse::<Transport>()
                .unwrap_err()
                .to_string()
                .contains("mqtt-ws")
        );
        let e = Endpoint::parse("myhub.azure-devices.net").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.peer),
            ("myhub.azure-devices.net", 8883, PeerKind::AzureHub)
        );
        let e = Endpoint::parse("myhub.azure-devices.net:443").unwrap();
        assert_eq!(e.port, 443);
        let e = Endpoint::parse("mqtts://127.0.0.1:18883").unwrap();
        assert_eq!(
            (e.host.as_str(), e.port, e.peer),
            ("127.0.0.1", 18883, PeerKind::Broker)
        );
        let e = Endpoint::parse("mqtts://[::1]:9000").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 9000));
        assert_eq!(e.display(), "[::1]:9000");
        assert!(
            Endpoint::parse("mqtt://h:1883")
                .unwrap_err()
                .to_string()
                .contains("mqtts://")
        );
        assert!(
            Endpoint::parse("h:0")
                .unwrap_err()
                .to_string()
                .contains("1 to 65535")
        );
        assert!(Endpoint::parse("h:x").is_err());
        assert!(Endpoint::parse("mqtts://").is_err());
    }
}
