//! The MQTT 3.1.1 transport of the hub, over TLS or a WebSocket: CONNECT within 10 s, then by
//! the username either DPS's protocol ([`super::dps::mqtt`]) or the hub's: authenticate,
//! serve the device session. Packets are decoded and encoded with `rumqttc::mqttbytes::v4`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::{self};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::budget::BudgetPermit;
use crate::azure::{self};

use super::events::*;
use super::server::*;
use super::session::*;

/// A stream a device speaks MQTT on: TCP+TLS, or a WebSocket over TLS.
pub(super) trait DeviceStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}
impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> DeviceStream for S {}

/// An MQTT connection on an authenticated-TLS stream: CONNECT within 10 s of `start`, then by
/// the username either DPS's protocol ([`super::dps::mqtt`]) or the hub's: authenticate,
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
        let conn = super::dps::mqtt::DpsConn {
            tls,
            buf,
            peer,
            chain,
            stop,
        };
        super::dps::mqtt::serve(sh, conn, connect, unauthenticated).await;
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
        // Whole CONNECTs of another MQTT version are answered in their own format: rumqttc's
        // 3.1.1 reader takes MQTT 5's properties for the client id and fails mid-packet.
        if mqttbytes::check(buf.iter(), MAX_CONNECT_BYTES).is_ok()
            && let Some(version) = other_version(buf)
        {
            refuse_version(sh, tls, peer, version).await;
            return None;
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

/// Admit the device of `connect` ([`admit`]: the rules every transport shares, the refusal
/// remembered and logged), or answer CONNACK 5 and close. None: refused.
async fn authenticate<S: DeviceStream>(
    sh: &Arc<Shared>,
    tls: &mut S,
    connect: &rumqttc::mqttbytes::v4::Connect,
    chain: &[Vec<u8>],
    peer: SocketAddr,
) -> Option<Option<super::registry::RevokedCert>> {
    let username = connect.login.as_ref().map(|l| l.username.as_str());
    match admit(sh, peer, &connect.client_id, username, chain).await {
        Ok(revoked) => Some(revoked),
        Err(_) => {
            close_with_connack(tls, ConnectReturnCode::NotAuthorized).await;
            None
        }
    }
}

/// CONNACK `code`, then close.
async fn close_with_connack<S: DeviceStream>(tls: &mut S, code: ConnectReturnCode) {
    let mut out = BytesMut::new();
    let _ = ConnAck::new(code, false).write(&mut out);
    let _ = tls.write_all(&out).await;
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
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
    sh.emit(HubEvent::Refused {
        peer,
        device,
        kind: kind.to_string(),
        reason,
    });
    close_with_connack(tls, ConnectReturnCode::NotAuthorized).await;
}

/// CONNACK 3 "server unavailable" (a budget is full: the client may retry later), the reason
/// logged at most once a second like the accept-time caps; then close.
pub(super) async fn refuse_unavailable<S: DeviceStream>(
    sh: &Shared,
    tls: &mut S,
    peer: SocketAddr,
    why: String,
) {
    close_with_connack(tls, ConnectReturnCode::ServiceUnavailable).await;
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
/// An MQTT version the hub does not speak, by the protocol name and level of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OtherVersion {
    /// MQTT 3.1 (`MQIsdp`, level 3).
    Mqtt31,
    /// MQTT 5 (level 5).
    Mqtt5,
}

/// The protocol of the whole CONNECT frame in `frame`, when it is MQTT 3.1 or 5. The variable
/// header starts after the first byte and the remaining length (1 to 4 bytes, the last without
/// its continuation bit): protocol name (two length bytes and the name), then the level.
fn other_version(frame: &[u8]) -> Option<OtherVersion> {
    let length_bytes = frame.get(1..)?.iter().take(4).position(|b| b & 0x80 == 0)? + 1;
    let header = frame.get(1 + length_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*header.first()?, *header.get(1)?]));
    let name = header.get(2..2 + name_len)?;
    let level = *header.get(2 + name_len)?;
    match (name, level) {
        (b"MQIsdp", 3) => Some(OtherVersion::Mqtt31),
        (b"MQTT", 5) => Some(OtherVersion::Mqtt5),
        _ => None,
    }
}

/// Refuse a CONNECT of MQTT 3.1 or 5 in that version's CONNACK, then close. IoT Hub speaks
/// MQTT 3.1.1 (MQTT 5 is a preview of it, not generally available): 3.1 gets return code 1
/// (unacceptable protocol version, the 3.1 and 3.1.1 format); 5 gets reason code 0x84
/// (unsupported protocol version) in MQTT 5's format (MQTT 5.0 §3.1.2.2: a server that does
/// not support the level may answer with 0x84 and must then close).
async fn refuse_version<S: DeviceStream>(
    sh: &Shared,
    tls: &mut S,
    peer: SocketAddr,
    version: OtherVersion,
) {
    let (connack, said): (&[u8], &str) = match version {
        // Fixed header, acknowledge flags, return code 1.
        OtherVersion::Mqtt31 => (&[0x20, 2, 0, 1], "MQTT 3.1 (MQIsdp, level 3): CONNACK 1"),
        // Fixed header, acknowledge flags, reason code 0x84, no properties.
        OtherVersion::Mqtt5 => (
            &[0x20, 3, 0, 0x84, 0],
            "MQTT 5 (level 5): CONNACK 0x84 unsupported protocol version",
        ),
    };
    let _ = tls.write_all(connack).await;
    let _ = tls.flush().await;
    let _ = tls.shutdown().await;
    sh.emit(HubEvent::Dropped {
        peer,
        reason: format!("CONNECT with {said}; IoT Hub speaks MQTT 3.1.1 (level 4)"),
    });
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_versions_are_told_by_name_and_level() {
        // CONNECT of MQTT 5 with a session-expiry property, 3.1, 3.1.1, and cut ones.
        let v5 = [
            0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 5, 0x11, 0, 0, 0, 10, 0, 2,
            b'd', b'1',
        ];
        assert_eq!(other_version(&v5), Some(OtherVersion::Mqtt5));
        let v31 = [
            0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 2, b'd', b'1',
        ];
        assert_eq!(other_version(&v31), Some(OtherVersion::Mqtt31));
        let v311 = [
            0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 2, b'd', b'1',
        ];
        assert_eq!(other_version(&v311), None);
        for cut in 0..8 {
            assert_eq!(other_version(&v5[..cut]), None, "{cut}");
        }
        // A remaining length of five continuation bytes is not MQTT at all.
        assert_eq!(
            other_version(&[0x10, 0x80, 0x80, 0x80, 0x80, 0x80, 0]),
            None
        );
        // A name length past the frame.
        assert_eq!(other_version(&[0x10, 4, 0xff, 0xff, b'M', b'Q']), None);
    }
}
