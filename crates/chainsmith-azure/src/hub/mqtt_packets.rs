//! MQTT 3.1.1 on the hub's side of the wire, for the hub's device sessions and DPS alike: the
//! stream a device speaks on, reading the CONNECT (with its size and time limits), the
//! CONNACKs that refuse, framing packets and naming them for the log. Packets are decoded and
//! encoded with `rumqttc::mqttbytes::v4`.

use std::net::SocketAddr;
use std::ops::ControlFlow;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use rumqttc::mqttbytes::{self};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use crate::MAX_PACKET;

use super::events::*;
use super::shared::*;

/// A stream a device speaks MQTT on: TCP+TLS, or a WebSocket over TLS.
pub(super) trait DeviceStream:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static
{
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> DeviceStream for S {}

/// CONNECT, within what is left of the 10 s and at most MAX_CONNECT_BYTES. None: the
/// connection was dropped (and said why).
pub(super) async fn read_connect<S: DeviceStream>(
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
            r = tokio::time::timeout_at(deadline, read_some(tls, buf)) => r,
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

/// CONNACK `code`, then close.
pub(super) async fn close_with_connack<S: DeviceStream>(tls: &mut S, code: ConnectReturnCode) {
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

/// Why the hub (or its DPS) ends a device's MQTT session because of what the device sent;
/// the text is the reason the log and the device's refusal record give.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionEnd {
    /// The device said goodbye.
    #[error("device sent DISCONNECT")]
    Disconnect,
    /// A packet a device never sends (CONNACK, SUBACK, a second CONNECT, ...).
    #[error("unexpected {0} from a device; closed")]
    Unexpected(&'static str),
    /// QoS 2, which neither IoT Hub nor DPS takes; the text says which.
    #[error("QoS 2 PUBLISH; {0}")]
    ExactlyOnce(&'static str),
    /// A message over IoT Hub's 256 KB.
    #[error("message of {0} bytes exceeds IoT Hub's 256 KB limit")]
    MessageTooLarge(usize),
    /// A packet over the hub's largest ([`MAX_PACKET`]).
    #[error("packet of {0} bytes exceeds IoT Hub's 256 KB message limit")]
    PacketTooLarge(usize),
    /// A PUBLISH or SUBSCRIBE (the packet's name) outside the device's own topics.
    #[error("{0} refused, {1}; IoT Hub disconnects such devices")]
    OutsideNamespace(&'static str, crate::azure::NamespaceError),
    /// A PUBLISH to a topic DPS does not serve.
    #[error("PUBLISH refused, {0}; DPS disconnects such devices")]
    NotDpsTopic(crate::azure::AzureError),
    /// A topic name with a wildcard (MQTT 3.1.1 §3.3.2.1); the topic, escaped.
    #[error(
        "PUBLISH to \"{0}\" holds a wildcard (+ or #), which MQTT 3.1.1 forbids in a topic name (§3.3.2.1); protocol violation, closed without acknowledging"
    )]
    WildcardTopic(String),
    /// A topic name holding U+0000 (MQTT 3.1.1 §1.5.3); the topic, escaped.
    #[error(
        "PUBLISH to \"{0}\" holds U+0000, which MQTT 3.1.1 forbids in a string (§1.5.3); protocol violation, closed without acknowledging"
    )]
    NulInTopic(String),
    /// Bytes the MQTT decoder could not read as a packet.
    #[error("malformed packet: {0:?}")]
    Malformed(mqttbytes::Error),
}

/// What a session on the hub's MQTT listener does with a device's packets. The loop around it
/// ([`serve_packets`]: reading, framing, keep-alive, PINGREQ, DISCONNECT, shutting down) is
/// the same for the hub's device sessions and DPS's.
pub(super) trait PacketHandler {
    /// Handle one packet (never PINGREQ or DISCONNECT), writing any answer to `out`; Err
    /// closes the connection with that reason.
    async fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Result<(), SessionEnd>;

    /// Wait for something the hub sends unasked (a cloud-to-device message) and write it to
    /// `out`; Break(reason) ends the session (the device was taken over, the hub closed it).
    /// DPS sends nothing unasked, so by default this never returns.
    async fn unasked(&mut self, out: &mut BytesMut) -> ControlFlow<String> {
        let _ = out;
        std::future::pending().await
    }
}

/// The keep-alive the hub holds a device to: what it asked for, at most IoT Hub's
/// [`crate::azure::MAX_KEEP_ALIVE_SECS`]; 0 (no keep-alive) means that maximum.
pub(super) fn keep_alive(asked: u16) -> u16 {
    match asked {
        0 => crate::azure::MAX_KEEP_ALIVE_SECS,
        k => k.min(crate::azure::MAX_KEEP_ALIVE_SECS),
    }
}

/// Bytes one read takes from the TLS stream, on the stack: enough for any telemetry message
/// of a device in one read; larger packets take several. The session's own buffers hold only
/// what is read and not yet handled ([`read_some`]).
const READ_CHUNK: usize = 4096;

/// Read what the stream has (at most [`READ_CHUNK`]) onto the end of `buf`: 0 at its end. The
/// bytes land on the stack first, so an idle session, waiting for its next packet, holds no
/// read buffer of its own: 10,000 idle devices held 4 KiB each when every session read
/// straight into a 4 KiB buffer.
pub(super) async fn read_some<S: tokio::io::AsyncRead + Unpin>(
    tls: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        let mut chunk = [0u8; READ_CHUNK];
        let mut read = tokio::io::ReadBuf::new(&mut chunk);
        std::task::ready!(std::pin::Pin::new(&mut *tls).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        std::task::Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

/// Give back a buffer's memory once everything in it is handled or sent: a connected device
/// between packets holds none (see [`read_some`]).
fn release_if_empty(b: &mut BytesMut) {
    if b.is_empty() && b.capacity() > 0 {
        *b = BytesMut::new();
    }
}

/// Serve a session after its CONNACK (already in `out`): write what is pending, read packets
/// and hand each to `handler` until the device leaves, stays silent for 1.5 × keep-alive
/// (MQTT 3.1.1 §3.1.2.10), breaks the protocol, or the hub stops. Returns why it ended.
pub(super) async fn serve_packets<S: DeviceStream, H: PacketHandler>(
    tls: &mut S,
    buf: &mut BytesMut,
    out: &mut BytesMut,
    keep_alive: u16,
    stop: &mut watch::Receiver<bool>,
    handler: &mut H,
) -> String {
    let idle = std::time::Duration::from_millis(u64::from(keep_alive) * 1500);
    // One timer for the whole session, moved on only when it fires: a timeout around every
    // read put a timer in the runtime's wheel and took it out again for every packet.
    let mut heard = tokio::time::Instant::now();
    let silence = tokio::time::sleep_until(heard + idle);
    tokio::pin!(silence);
    loop {
        if !out.is_empty() {
            if tls.write_all(out).await.is_err() || tls.flush().await.is_err() {
                return "write failed (client gone)".into();
            }
            out.clear();
            release_if_empty(out);
        }
        tokio::select! {
            r = read_some(tls, buf) => match r {
                Err(e) => return format!("read failed: {e}"),
                Ok(0) => return "connection closed by the device".into(),
                Ok(_) => {
                    heard = tokio::time::Instant::now();
                    if let Err(why) = drain(buf, out, handler).await {
                        // Flush acknowledgements already earned, then close.
                        let _ = tls.write_all(out).await;
                        return why.to_string();
                    }
                    release_if_empty(buf);
                }
            },
            () = &mut silence => {
                if heard.elapsed() >= idle {
                    return format!("no packet within 1.5 × keep-alive ({keep_alive} s)");
                }
                silence.as_mut().reset(heard + idle);
            }
            r = handler.unasked(out) => {
                if let ControlFlow::Break(why) = r {
                    return why;
                }
            }
            _ = stop.changed() => return "hub shutting down".into(),
        }
    }
}

/// Handle every whole packet in `buf`.
async fn drain<H: PacketHandler>(
    buf: &mut BytesMut,
    out: &mut BytesMut,
    handler: &mut H,
) -> Result<(), SessionEnd> {
    while let Some(p) = next_packet(buf)? {
        match p {
            Packet::PingReq => {
                let _ = rumqttc::mqttbytes::v4::PingResp.write(out);
            }
            Packet::Disconnect => return Err(SessionEnd::Disconnect),
            p => handler.handle(p, out).await?,
        }
    }
    Ok(())
}

/// Read every whole packet in `buf`: Err(reason) when one is fatal (too large, malformed, or
/// one the device may not send). The one MQTT decoder of device and DPS sessions.
pub(super) fn next_packet(buf: &mut BytesMut) -> Result<Option<Packet>, SessionEnd> {
    match Packet::read(buf, MAX_PACKET) {
        // MQTT 3.1.1 §3.3.2.1: "The Topic Name in the PUBLISH Packet MUST NOT contain wildcard
        // characters"; a server that receives one closes the connection and acknowledges
        // nothing (§4.8: a protocol violation).
        Ok(Packet::Publish(p)) if p.topic.contains(['+', '#']) => Err(SessionEnd::WildcardTopic(
            crate::text::escape_controls(&p.topic).into_owned(),
        )),
        // §1.5.3: a UTF-8 string "MUST NOT include an encoding of the null character U+0000".
        Ok(Packet::Publish(p)) if p.topic.contains('\0') => Err(SessionEnd::NulInTopic(
            crate::text::escape_controls(&p.topic).into_owned(),
        )),
        Ok(p) => Ok(Some(p)),
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(mqttbytes::Error::PayloadSizeLimitExceeded(n)) => Err(SessionEnd::PacketTooLarge(n)),
        Err(e) => Err(SessionEnd::Malformed(e)),
    }
}

/// CONNECT of another MQTT version: CONNACK 1 (unacceptable protocol version), then close.
/// An MQTT version the hub does not speak, by the protocol name and level of a CONNECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OtherVersion {
    /// MQTT 3.1 (`MQIsdp`, level 3).
    Mqtt31,
    /// MQTT 5 (level 5).
    Mqtt5,
}

/// The protocol of the whole CONNECT frame in `frame`, when it is MQTT 3.1 or 5. The variable
/// header starts after the first byte and the remaining length (1 to 4 bytes, the last without
/// its continuation bit): protocol name (two length bytes and the name), then the level.
pub(super) fn other_version(frame: &[u8]) -> Option<OtherVersion> {
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
pub(super) async fn refuse_version<S: DeviceStream>(
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

pub(super) async fn refuse_protocol<S: tokio::io::AsyncWrite + Unpin>(
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
