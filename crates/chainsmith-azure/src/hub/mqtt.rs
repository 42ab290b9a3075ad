//! The MQTT 3.1.1 transport of the hub, over TLS or a WebSocket: CONNECT within 10 s, then by
//! the username either DPS's protocol ([`super::dps::mqtt`]) or the hub's: authenticate,
//! serve the device session. Packets are decoded and encoded with `rumqttc::mqttbytes::v4`.

use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode, Packet};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::budget::BudgetPermit;
use crate::azure::{self};

use super::device_session::*;
use super::events::*;
use super::mqtt_packets::*;
use super::shared::*;

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
    let mut buf = BytesMut::new();
    let Some(mut connect) = read_connect(&sh, &mut tls, &mut buf, peer, deadline, &mut stop).await
    else {
        return;
    };
    let dps = connect
        .login
        .as_ref()
        .is_some_and(|l| azure::dps::is_dps_username(&l.username));
    if dps {
        let conn = super::dps::mqtt::DpsConn {
            tls,
            buf,
            peer,
            chain,
            stop,
        };
        // Boxed: a registration's future would otherwise size every device session's task.
        Box::pin(super::dps::mqtt::serve(sh, conn, connect, unauthenticated)).await;
        return;
    }
    let Some(revoked) = authenticate(&sh, &mut tls, &connect, &chain, peer).await else {
        return;
    };
    // Judged: neither the chain nor the CONNECT (username, will, password) is kept for the
    // rest of a session that may last days; the id and the keep-alive are.
    let (device, asked_keep_alive) = (std::mem::take(&mut connect.client_id), connect.keep_alive);
    drop((chain, connect, unauthenticated));
    let admitted = Admitted {
        device,
        asked_keep_alive,
        peer,
        revoked,
    };
    device_session(sh, tls, buf, admitted, stop).await;
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

/// A device let in: what its session keeps of the CONNECT and the admission.
struct Admitted {
    device: String,
    /// The keep-alive the CONNECT asked for (logged as asked).
    asked_keep_alive: u16,
    peer: SocketAddr,
    /// The revoked certificate it was let in with (IoT Hub checks no CRL; the log says so).
    revoked: Option<super::registry::RevokedCert>,
}

/// An accepted device: take over its id (a new connection drops the old one), CONNACK 0,
/// then packets both ways until one side closes.
async fn device_session<S: DeviceStream>(
    sh: Arc<Shared>,
    mut tls: S,
    mut buf: BytesMut,
    admitted: Admitted,
    mut stop: watch::Receiver<bool>,
) {
    let Admitted {
        device,
        asked_keep_alive,
        peer,
        revoked,
    } = admitted;
    let mut out = BytesMut::new();
    let (conn, rx, subs) = take_over(&sh, &device);
    let keep_alive = keep_alive(asked_keep_alive);
    let _ = ConnAck::new(ConnectReturnCode::Success, false).write(&mut out);
    sh.announce_accepted(&device, peer, asked_keep_alive, revoked);

    let mut session = LiveSession {
        session: DeviceSession::new(sh.clone(), device.clone(), subs),
        inbox: rx,
    };
    let reason = serve_packets(
        &mut tls,
        &mut buf,
        &mut out,
        keep_alive,
        &mut stop,
        &mut session,
    )
    .await;
    let _ = tls.shutdown().await;
    release(&sh, &device, conn);
    sh.emit(HubEvent::Disconnected { device, reason });
}

/// A device session on MQTT: its packets, and what the hub sends it unasked.
struct LiveSession {
    session: DeviceSession,
    inbox: tokio::sync::mpsc::Receiver<Outbound>,
}

impl PacketHandler for LiveSession {
    async fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Result<(), SessionEnd> {
        self.session.handle(p, out).await
    }

    async fn unasked(&mut self, out: &mut BytesMut) -> ControlFlow<String> {
        match self.inbox.recv().await {
            Some(Outbound::Publish(p)) => {
                self.session.publish(p.topic, p.payload, out);
                ControlFlow::Continue(())
            }
            Some(Outbound::Kick(why)) => ControlFlow::Break(why.into()),
            None => ControlFlow::Break("hub closed the session".into()),
        }
    }
}
