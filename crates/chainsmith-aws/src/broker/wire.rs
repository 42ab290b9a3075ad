//! The two MQTT versions AWS IoT Core speaks (3.1.1 and 5) behind one set of packets the broker
//! handles: decoded and encoded with rumqttc's `mqttbytes::v4` and `v5` codecs, picked by the
//! CONNECT's protocol level.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

use super::limits::{MAX_CONNECT_BYTES, MAX_PACKET_BYTES};

/// A reason string sent to a device is cut to this many characters (they are the broker's
/// log words, which may quote a topic).
pub const MAX_REASON_STRING_CHARS: usize = 512;

/// The MQTT version of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// MQTT 3.1.1 (level 4).
    V311,
    /// MQTT 5 (level 5).
    V5,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Version::V311 => "MQTT 3.1.1",
            Version::V5 => "MQTT 5",
        })
    }
}

/// What the broker takes from a CONNECT.
#[derive(Clone, Debug)]
pub struct Connect {
    /// Its version.
    pub version: Version,
    /// The client id.
    pub client_id: String,
    /// The keep-alive it asked for, in seconds.
    pub keep_alive: u16,
    /// The username (the SDKs send `?SDK=Python&Version=…`), if any.
    pub username: Option<String>,
    /// MQTT 5: the largest packet the client takes (its CONNECT's Maximum Packet Size).
    pub max_packet_size: Option<u32>,
}

/// A PUBLISH from a device.
#[derive(Clone, Debug)]
pub struct Publish {
    /// The topic (empty when an MQTT 5 device sent only a topic alias).
    pub topic: String,
    /// The payload.
    pub payload: Bytes,
    /// 0, 1 or 2.
    pub qos: u8,
    /// The packet id (QoS 1 and 2).
    pub pkid: u16,
    /// The retain flag.
    pub retain: bool,
}

/// A packet from a device after its CONNECT.
#[derive(Clone, Debug)]
pub enum Incoming {
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK for a message the broker delivered at QoS 1: its packet id.
    PubAck(u16),
    /// SUBSCRIBE: packet id and (filter, QoS asked) pairs.
    Subscribe(u16, Vec<(String, u8)>),
    /// UNSUBSCRIBE: packet id and filters.
    Unsubscribe(u16, Vec<String>),
    /// PINGREQ.
    PingReq,
    /// DISCONNECT.
    Disconnect,
    /// A packet a device never sends after CONNECT (its name).
    Unexpected(&'static str),
}

/// Why the bytes a device sent cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Larger than the broker reads.
    #[error("a packet of {0} bytes is larger than AWS IoT Core's 128 KB message limit allows")]
    TooLarge(usize),
    /// The first packet is not a CONNECT.
    #[error("the first packet is not an MQTT CONNECT (first byte 0x{0:02x})")]
    NotConnect(u8),
    /// A CONNECT of another protocol level.
    #[error(
        "CONNECT with MQTT protocol level {0}; AWS IoT Core speaks MQTT 3.1.1 (level 4) and 5 (level 5)"
    )]
    Level(u8),
    /// What the decoder said.
    #[error("malformed packet: {0}")]
    Malformed(String),
}

/// The protocol level of a whole or partial CONNECT in `frame`: after the first byte and the
/// remaining length (1 to 4 bytes), the protocol name (two length bytes and the name), then
/// the level. None until enough bytes are there.
fn connect_level(frame: &[u8]) -> Option<u8> {
    connect_byte(frame, 0)
}

/// The byte `n` places after the protocol name of a whole or partial CONNECT (0: the level,
/// 1: the connect flags).
fn connect_byte(frame: &[u8], n: usize) -> Option<u8> {
    let length_bytes = frame.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let header = frame.get(1 + length_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*header.first()?, *header.get(1)?]));
    header.get(2 + name_len + n).copied()
}

/// Read a CONNECT from `buf`: Ok(None) until it is whole.
pub fn read_connect(buf: &mut BytesMut) -> Result<Option<Connect>, WireError> {
    if let Some(b) = buf.first().filter(|b| **b != 0x10) {
        return Err(WireError::NotConnect(*b));
    }
    // A remaining length takes at most 4 bytes (MQTT 3.1.1 section 2.2.3).
    if buf
        .get(1..5)
        .is_some_and(|l| l.iter().all(|b| b & 0x80 != 0))
    {
        return Err(WireError::Malformed(
            "the remaining length runs past 4 bytes".into(),
        ));
    }
    // The connect flags' bit 0 is reserved: the server must close the connection when it is
    // set (MQTT 3.1.1 section 3.1.2.3, MQTT 5 section 3.1.2.3).
    if connect_byte(buf, 1).is_some_and(|f| f & 0x01 != 0) {
        return Err(WireError::Malformed(
            "the CONNECT's reserved flag is set".into(),
        ));
    }
    let Some(level) = connect_level(buf) else {
        return if buf.len() >= MAX_CONNECT_BYTES {
            Err(WireError::TooLarge(buf.len()))
        } else {
            Ok(None)
        };
    };
    match level {
        4 => match v4::Packet::read(buf, MAX_CONNECT_BYTES) {
            Ok(v4::Packet::Connect(c)) => Ok(Some(Connect {
                version: Version::V311,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                username: c.login.map(|l| l.username),
                max_packet_size: None,
            })),
            Ok(_) => Err(WireError::NotConnect(0)),
            Err(e) => v4_error(e, buf.len()),
        },
        5 => match v5::Packet::read(buf, Some(MAX_CONNECT_BYTES as u32)) {
            Ok(v5::Packet::Connect(c, _, login)) => Ok(Some(Connect {
                version: Version::V5,
                client_id: c.client_id,
                keep_alive: c.keep_alive,
                max_packet_size: c.properties.as_ref().and_then(|p| p.max_packet_size),
                username: login.map(|l| l.username),
            })),
            Ok(_) => Err(WireError::NotConnect(0)),
            Err(e) => v5_error(e, buf.len(), MAX_CONNECT_BYTES),
        },
        other => Err(WireError::Level(other)),
    }
}

fn v4_error<T>(e: rumqttc::mqttbytes::Error, held: usize) -> Result<Option<T>, WireError> {
    use rumqttc::mqttbytes::Error as E;
    match e {
        E::InsufficientBytes(_) => Ok(None),
        E::PayloadSizeLimitExceeded(n) => Err(WireError::TooLarge(n)),
        e => {
            let _ = held;
            Err(WireError::Malformed(format!("{e:?}")))
        }
    }
}

fn v5_error<T>(
    e: rumqttc::v5::mqttbytes::Error,
    held: usize,
    limit: usize,
) -> Result<Option<T>, WireError> {
    use rumqttc::v5::mqttbytes::Error as E;
    match e {
        E::InsufficientBytes(_) if held < limit => Ok(None),
        E::InsufficientBytes(_) => Err(WireError::TooLarge(held)),
        E::PayloadSizeLimitExceeded { pkt_size, .. } => Err(WireError::TooLarge(pkt_size)),
        e => Err(WireError::Malformed(e.to_string())),
    }
}

fn qos_u8(q: QoS) -> u8 {
    q as u8
}

fn qos5_u8(q: rumqttc::v5::mqttbytes::QoS) -> u8 {
    q as u8
}

fn qos5_of(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    if q == 0 {
        rumqttc::v5::mqttbytes::QoS::AtMostOnce
    } else {
        rumqttc::v5::mqttbytes::QoS::AtLeastOnce
    }
}

/// Read the next packet of a connection of `version` from `buf`: Ok(None) until one is whole.
pub fn read(version: Version, buf: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
    match version {
        Version::V311 => match v4::Packet::read(buf, MAX_PACKET_BYTES) {
            Ok(p) => Ok(Some(match p {
                v4::Packet::Publish(p) => Incoming::Publish(Publish {
                    topic: p.topic,
                    payload: p.payload,
                    qos: qos_u8(p.qos),
                    pkid: p.pkid,
                    retain: p.retain,
                }),
                v4::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
                v4::Packet::Subscribe(s) => Incoming::Subscribe(
                    s.pkid,
                    s.filters
                        .into_iter()
                        .map(|f| (f.path, qos_u8(f.qos)))
                        .collect(),
                ),
                v4::Packet::Unsubscribe(u) => Incoming::Unsubscribe(u.pkid, u.topics),
                v4::Packet::PingReq => Incoming::PingReq,
                v4::Packet::Disconnect => Incoming::Disconnect,
                other => Incoming::Unexpected(v4_name(&other)),
            })),
            Err(e) => v4_error(e, buf.len()),
        },
        Version::V5 => match v5::Packet::read(buf, Some(MAX_PACKET_BYTES as u32)) {
            Ok(p) => Ok(Some(match p {
                v5::Packet::Publish(p) => Incoming::Publish(Publish {
                    topic: String::from_utf8(p.topic.to_vec())
                        .map_err(|_| WireError::Malformed("a topic that is not UTF-8".into()))?,
                    payload: p.payload,
                    qos: qos5_u8(p.qos),
                    pkid: p.pkid,
                    retain: p.retain,
                }),
                v5::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
                v5::Packet::Subscribe(s) => Incoming::Subscribe(
                    s.pkid,
                    s.filters
                        .into_iter()
                        .map(|f| (f.path, qos5_u8(f.qos)))
                        .collect(),
                ),
                v5::Packet::Unsubscribe(u) => Incoming::Unsubscribe(u.pkid, u.filters),
                v5::Packet::PingReq(_) => Incoming::PingReq,
                v5::Packet::Disconnect(_) => Incoming::Disconnect,
                v5::Packet::Connect(..) => Incoming::Unexpected("CONNECT"),
                v5::Packet::Auth(_) => Incoming::Unexpected("AUTH"),
                v5::Packet::PubRec(_) => Incoming::Unexpected("PUBREC"),
                v5::Packet::PubRel(_) => Incoming::Unexpected("PUBREL"),
                v5::Packet::PubComp(_) => Incoming::Unexpected("PUBCOMP"),
                _ => Incoming::Unexpected("a server's packet"),
            })),
            // A PUBLISH over the limit is framed whole in the buffer before it is refused.
            Err(e) => v5_error(e, buf.len(), usize::MAX),
        },
    }
}

fn v4_name(p: &v4::Packet) -> &'static str {
    match p {
        v4::Packet::Connect(_) => "CONNECT",
        v4::Packet::PubRec(_) => "PUBREC",
        v4::Packet::PubRel(_) => "PUBREL",
        v4::Packet::PubComp(_) => "PUBCOMP",
        _ => "a server's packet",
    }
}

/// MQTT 5 reason codes the broker sends (MQTT 5.0 §2.4), named as AWS IoT Core's developer
/// guide lists them in "MQTT 5 reason codes" (<https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html>).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// 0x87: a CONNECT, PUBLISH or SUBSCRIBE the policy does not allow.
    NotAuthorized,
    /// 0x85: a client id AWS does not take (empty, over 128 bytes).
    ClientIdNotValid,
    /// 0x90: a topic name over AWS's limits.
    TopicNameInvalid,
    /// 0x8F: a topic filter over AWS's limits.
    TopicFilterInvalid,
    /// 0x97: more subscriptions than AWS's quota.
    QuotaExceeded,
    /// 0x95: a packet over the 128 KB message limit.
    PacketTooLarge,
    /// 0x9B: QoS 2, which AWS IoT Core does not support.
    QosNotSupported,
    /// 0x8E: another connection with the same client id took over.
    SessionTakenOver,
    /// 0x8D: silent for 1.5 × keep-alive.
    KeepAliveTimeout,
    /// 0x8B: the broker stops.
    ServerShuttingDown,
    /// 0x82: a packet a device may not send.
    ProtocolError,
    /// 0x81: bytes that are not MQTT.
    MalformedPacket,
    /// 0x94: a topic alias (the broker offers none).
    TopicAliasInvalid,
    /// 0x89: the broker holds its share of sessions.
    ServerBusy,
}

impl Reason {
    /// The byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            Reason::NotAuthorized => 0x87,
            Reason::ClientIdNotValid => 0x85,
            Reason::TopicNameInvalid => 0x90,
            Reason::TopicFilterInvalid => 0x8F,
            Reason::QuotaExceeded => 0x97,
            Reason::PacketTooLarge => 0x95,
            Reason::QosNotSupported => 0x9B,
            Reason::SessionTakenOver => 0x8E,
            Reason::KeepAliveTimeout => 0x8D,
            Reason::ServerShuttingDown => 0x8B,
            Reason::ProtocolError => 0x82,
            Reason::MalformedPacket => 0x81,
            Reason::TopicAliasInvalid => 0x94,
            Reason::ServerBusy => 0x89,
        }
    }
}

/// A SUBACK entry: granted at a QoS, or refused for a reason (MQTT 3.1.1 says 0x80 for all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granted {
    /// Granted at QoS 0 or 1.
    Qos(u8),
    /// Refused.
    Refused(Reason),
}

fn qos_of(q: u8) -> QoS {
    if q == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    }
}

/// CONNACK accepted. MQTT 5's says what the broker offers: at most QoS 1, retained messages,
/// no topic aliases, no shared subscriptions, the largest packet.
pub fn connack_ok(version: Version, out: &mut BytesMut) {
    match version {
        Version::V311 => {
            let _ = v4::ConnAck::new(v4::ConnectReturnCode::Success, false).write(out);
        }
        Version::V5 => {
            let properties = v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: None,
                max_qos: Some(1),
                retain_available: Some(1),
                max_packet_size: Some(MAX_PACKET_BYTES as u32),
                assigned_client_identifier: None,
                topic_alias_max: Some(0),
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: Some(1),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive: None,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            };
            let _ = v5::ConnAck {
                session_present: false,
                code: v5::ConnectReturnCode::Success,
                properties: Some(properties),
            }
            .write(out);
        }
    }
}

/// MQTT 5 CONNACK refusing with `reason` (MQTT 3.1.1 connections are closed without one, as
/// AWS IoT Core does).
pub fn connack_refused_v5(reason: Reason, out: &mut BytesMut) {
    let code = match reason {
        Reason::ClientIdNotValid => v5::ConnectReturnCode::ClientIdentifierNotValid,
        Reason::PacketTooLarge => v5::ConnectReturnCode::PacketTooLarge,
        Reason::ServerBusy => v5::ConnectReturnCode::ServerBusy,
        _ => v5::ConnectReturnCode::NotAuthorized,
    };
    let _ = v5::ConnAck {
        session_present: false,
        code,
        properties: None,
    }
    .write(out);
}

/// How a PUBLISH to a device goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishFlags {
    /// 0 or 1.
    pub qos: u8,
    /// The packet id (QoS 1).
    pub pkid: u16,
    /// A retained message sent at SUBSCRIBE.
    pub retain: bool,
    /// A redelivery of a QoS 1 message not acknowledged (MQTT §3.3.1.1).
    pub dup: bool,
}

/// A PUBLISH to a device.
pub fn publish(
    version: Version,
    topic: &str,
    payload: &Bytes,
    f: PublishFlags,
    out: &mut BytesMut,
) {
    match version {
        Version::V311 => {
            let mut p = v4::Publish::from_bytes(topic, qos_of(f.qos), payload.clone());
            p.pkid = f.pkid;
            p.retain = f.retain;
            p.dup = f.dup;
            let _ = p.write(out);
        }
        Version::V5 => {
            let mut p = v5::Publish::new(topic, qos5_of(f.qos), payload.clone(), None);
            p.pkid = f.pkid;
            p.retain = f.retain;
            p.dup = f.dup;
            let _ = p.write(out);
        }
    }
}

/// PUBACK for a QoS 1 PUBLISH; MQTT 5 carries `refused`'s reason when the message was not
/// accepted.
pub fn puback(version: Version, pkid: u16, refused: Option<Reason>, out: &mut BytesMut) {
    match version {
        Version::V311 => {
            let _ = v4::PubAck::new(pkid).write(out);
        }
        Version::V5 => {
            let mut ack = v5::PubAck::new(pkid, None);
            ack.reason = match refused {
                None => v5::PubAckReason::Success,
                Some(Reason::NotAuthorized) => v5::PubAckReason::NotAuthorized,
                Some(Reason::TopicNameInvalid) => v5::PubAckReason::TopicNameInvalid,
                Some(Reason::QuotaExceeded) => v5::PubAckReason::QuotaExceeded,
                Some(_) => v5::PubAckReason::UnspecifiedError,
            };
            let _ = ack.write(out);
        }
    }
}

/// SUBACK with one entry per filter.
pub fn suback(version: Version, pkid: u16, granted: &[Granted], out: &mut BytesMut) {
    match version {
        Version::V311 => {
            let codes = granted
                .iter()
                .map(|g| match g {
                    Granted::Qos(q) => v4::SubscribeReasonCode::Success(qos_of(*q)),
                    Granted::Refused(_) => v4::SubscribeReasonCode::Failure,
                })
                .collect();
            let _ = v4::SubAck::new(pkid, codes).write(out);
        }
        Version::V5 => {
            let codes = granted
                .iter()
                .map(|g| match g {
                    Granted::Qos(q) => v5::SubscribeReasonCode::Success(qos5_of(*q)),
                    Granted::Refused(Reason::NotAuthorized) => {
                        v5::SubscribeReasonCode::NotAuthorized
                    }
                    Granted::Refused(Reason::TopicFilterInvalid) => {
                        v5::SubscribeReasonCode::TopicFilterInvalid
                    }
                    Granted::Refused(Reason::QuotaExceeded) => {
                        v5::SubscribeReasonCode::QuotaExceeded
                    }
                    Granted::Refused(_) => v5::SubscribeReasonCode::Unspecified,
                })
                .collect();
            let _ = v5::SubAck {
                pkid,
                return_codes: codes,
                properties: None,
            }
            .write(out);
        }
    }
}

/// UNSUBACK for `count` filters.
pub fn unsuback(version: Version, pkid: u16, count: usize, out: &mut BytesMut) {
    match version {
        Version::V311 => {
            let _ = v4::UnsubAck::new(pkid).write(out);
        }
        Version::V5 => {
            let _ = v5::UnsubAck {
                pkid,
                reasons: vec![v5::UnsubAckReason::Success; count],
                properties: None,
            }
            .write(out);
        }
    }
}

/// PINGRESP.
pub fn pingresp(version: Version, out: &mut BytesMut) {
    match version {
        Version::V311 => {
            let _ = v4::PingResp.write(out);
        }
        Version::V5 => {
            let _ = v5::PingResp::write(out);
        }
    }
}

/// MQTT 5 DISCONNECT with `reason` and `why` as its reason string before the broker closes;
/// MQTT 3.1.1 has none (the connection is just closed). The reason string is always sent:
/// rumqttc 0.25 miscounts the length of a DISCONNECT with a reason code and no properties.
pub fn disconnect(version: Version, reason: Reason, why: &str, out: &mut BytesMut) {
    if version == Version::V5 {
        let code = match reason {
            Reason::NotAuthorized => v5::DisconnectReasonCode::NotAuthorized,
            Reason::TopicNameInvalid => v5::DisconnectReasonCode::TopicNameInvalid,
            Reason::TopicFilterInvalid => v5::DisconnectReasonCode::TopicFilterInvalid,
            Reason::QuotaExceeded => v5::DisconnectReasonCode::QuotaExceeded,
            Reason::PacketTooLarge => v5::DisconnectReasonCode::PacketTooLarge,
            Reason::QosNotSupported => v5::DisconnectReasonCode::QoSNotSupported,
            Reason::SessionTakenOver => v5::DisconnectReasonCode::SessionTakenOver,
            Reason::KeepAliveTimeout => v5::DisconnectReasonCode::KeepAliveTimeout,
            Reason::ServerShuttingDown => v5::DisconnectReasonCode::ServerShuttingDown,
            Reason::ProtocolError => v5::DisconnectReasonCode::ProtocolError,
            Reason::MalformedPacket => v5::DisconnectReasonCode::MalformedPacket,
            Reason::TopicAliasInvalid => v5::DisconnectReasonCode::TopicAliasInvalid,
            Reason::ClientIdNotValid | Reason::ServerBusy => {
                v5::DisconnectReasonCode::UnspecifiedError
            }
        };
        let properties = v5::DisconnectProperties {
            session_expiry_interval: None,
            reason_string: Some(why.chars().take(MAX_REASON_STRING_CHARS).collect()),
            user_properties: Vec::new(),
            server_reference: None,
        };
        let _ = v5::Disconnect {
            reason_code: code,
            properties: Some(properties),
        }
        .write(out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_read_from_a_partial_connect() {
        let v5 = [0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02];
        assert_eq!(connect_level(&v5), Some(5));
        for cut in 0..9 {
            assert_eq!(connect_level(&v5[..cut]), None, "{cut}");
        }
    }
}
