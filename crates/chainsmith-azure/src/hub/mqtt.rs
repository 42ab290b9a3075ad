//! The MQTT 3.1.1 transport of the hub, over TLS or a WebSocket: CONNECT within 10 s, then by
//! the username either DPS's protocol ([`super::dps::mqtt`]) or the hub's: authenticate,
//! serve the device session. Packets are decoded and encoded with `rumqttc::mqttbytes::v4`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{ConnAck, ConnectReturnCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
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

    let mut session = DeviceSession::new(sh.clone(), device.clone(), subs);
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
                        break why.to_string();
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
