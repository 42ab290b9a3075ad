//! What happens in the hub, as one stream: [`HubEvent`], for logs, `hub monitor`, the TUI and
//! tests, with what a peer sent cut to [`MAX_EVENT_TEXT`] so a slow reader bounds the queue.

use std::net::SocketAddr;

use serde::Serialize;
use time::OffsetDateTime;

use super::budget::{MAX_DPS_SESSIONS, MAX_UNAUTHENTICATED};
use crate::azure::{self, Properties};

/// Most bytes of a message's body, topic or property bag an event carries (the rest is cut,
/// marked `…`; `size` keeps the body's real length). Events wait in a broadcast queue of
/// [`EVENT_QUEUE`] for the slowest log, monitor or TUI; whole 256 KB bodies there let one
/// device grow the hub by ~200 KB a message while a monitor was paused (hostile pass: 617 MB
/// in 3 s). Cut, the queue holds at most ~50 MB.
pub const MAX_EVENT_TEXT: usize = 2048;
/// Events the hub keeps for its slowest subscriber; past it that subscriber skips the oldest
/// and says how many (`RecvError::Lagged`).
pub(crate) const EVENT_QUEUE: usize = 8192;

/// `text` cut to [`MAX_EVENT_TEXT`] bytes at a character boundary, `…` marking a cut.
pub(super) fn clip(text: &str) -> String {
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
pub(super) fn clip_properties(props: azure::Properties) -> azure::Properties {
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
