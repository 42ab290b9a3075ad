//! DPS's device protocol on the hub's listener: a CONNECT whose username is
//! `{idScope}/registrations/{registrationId}/api-version=…` lands here (see
//! [`crate::hub::server`]'s `connection`). The device subscribes to `$dps/registrations/res/#`,
//! registers, and polls its operation; the decision is [`HubStore::dps_register`].

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::exchange::{self, Registrant};
use crate::azure::dps as wire;
use crate::azure::filter_matches;
use crate::hub::events::HubEvent;
use crate::hub::mqtt_packets::{
    DeviceStream, PacketHandler, SessionEnd, keep_alive, packet_name, refuse_connect, serve_packets,
};
use crate::hub::shared::Shared;

/// A connection that sent a DPS CONNECT: what the hub's accept steps already have.
pub(in crate::hub) struct DpsConn<S> {
    pub tls: S,
    pub buf: BytesMut,
    pub peer: SocketAddr,
    pub chain: Vec<Vec<u8>>,
    pub stop: watch::Receiver<bool>,
}

/// Check the CONNECT (username, client id, ID scope, api-version, a client certificate),
/// then serve the registration session.
pub(in crate::hub) async fn serve<S: DeviceStream>(
    sh: Arc<Shared>,
    mut c: DpsConn<S>,
    connect: rumqttc::mqttbytes::v4::Connect,
    unauthenticated: crate::hub::budget::BudgetPermit,
) {
    let username = connect
        .login
        .as_ref()
        .map(|l| l.username.clone())
        .unwrap_or_default();
    let scope = exchange::id_scope(&sh).await;
    let verdict = check_connect(&connect.client_id, &username, &c.chain, scope);
    let (registration_id, api_version) = match verdict {
        Ok(v) => v,
        Err((kind, reason)) => {
            let who = Some(connect.client_id.clone()).filter(|d| !d.is_empty());
            refuse_connect(&sh, &mut c.tls, c.peer, who, kind, reason).await;
            return;
        }
    };
    // DPS takes any certificate at CONNECT, so its sessions are budgeted like connections
    // that are not yet authenticated: per peer, in total, and in time.
    // A peer holding little gets in even when other peers fill the budget: the session of
    // the peer holding the most is shut down (two addresses held every DPS slot: hostile pass).
    let session_slot = match sh
        .dps_sessions
        .charge_evicting(c.peer.ip(), unauthenticated.socket())
    {
        Ok((slot, _)) => slot,
        Err(full) => {
            let why = sh.dps_sessions.refusal(full, c.peer.ip()).to_string();
            crate::hub::mqtt_packets::refuse_unavailable(&sh, &mut c.tls, c.peer, why).await;
            return;
        }
    };
    drop(unauthenticated);
    sh.emit(HubEvent::DpsConnected {
        registration_id: registration_id.clone(),
        peer: c.peer,
        api_version: api_version.clone(),
    });
    let keep_alive = keep_alive(connect.keep_alive);
    let mut s = DpsSession {
        device: Registrant {
            sh: sh.clone(),
            registration_id,
            api_version,
            peer: c.peer,
            chain: std::mem::take(&mut c.chain),
        },
        subs: Vec::new(),
        next_pkid: 1,
    };
    let lifetime = sh.config.dps_session_lifetime;
    let mut out = BytesMut::new();
    let _ = ConnAck::new(ConnectReturnCode::Success, false).write(&mut out);
    let session = serve_packets(
        &mut c.tls,
        &mut c.buf,
        &mut out,
        keep_alive,
        &mut c.stop,
        &mut s,
    );
    let reason = tokio::time::timeout(lifetime, session)
        .await
        .unwrap_or_else(|_| {
            format!(
                "the DPS session was open for {} s, the hub's limit for one registration; closed",
                lifetime.as_secs_f64()
            )
        });
    let _ = c.tls.shutdown().await;
    drop(session_slot);
    sh.emit(HubEvent::DpsDisconnected {
        registration_id: s.device.registration_id,
        reason,
    });
}

/// The CONNECT rules: (registration id, api-version), or (kind, reason) for CONNACK 5.
fn check_connect(
    client_id: &str,
    username: &str,
    chain: &[Vec<u8>],
    scope: Result<String, crate::hub::registry::RegistryError>,
) -> Result<(String, String), (&'static str, String)> {
    let u = wire::parse_username(username).map_err(|e| ("dps-username", e.to_string()))?;
    if u.registration_id != client_id {
        return Err((
            "dps-username-mismatch",
            format!(
                "DPS username names registration \"{}\" but the client id is \"{client_id}\"; both must be the registration id",
                u.registration_id
            ),
        ));
    }
    let api = u.api_version.clone().unwrap_or_default();
    exchange::admit(&u.id_scope, &u.registration_id, &api, chain, scope)?;
    Ok((u.registration_id, api))
}

/// A DPS session over MQTT: the device and what it subscribed to.
struct DpsSession {
    device: Registrant,
    subs: Vec<(String, QoS)>,
    next_pkid: u16,
}

impl PacketHandler for DpsSession {
    async fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Result<(), SessionEnd> {
        match p {
            Packet::Publish(p) => self.on_publish(p, out).await,
            Packet::PubAck(_) => Ok(()),
            Packet::Subscribe(s) => {
                let codes = s
                    .filters
                    .into_iter()
                    .map(|f| {
                        // DPS answers only on its response topics.
                        if f.path != wire::RESPONSE_FILTER {
                            return SubscribeReasonCode::Failure;
                        }
                        let q = match f.qos {
                            QoS::AtMostOnce => QoS::AtMostOnce,
                            _ => QoS::AtLeastOnce,
                        };
                        self.subs.retain(|(p, _)| *p != f.path);
                        self.subs.push((f.path, q));
                        SubscribeReasonCode::Success(q)
                    })
                    .collect();
                let _ = SubAck::new(s.pkid, codes).write(out);
                Ok(())
            }
            Packet::Unsubscribe(u) => {
                self.subs.retain(|(p, _)| !u.topics.contains(p));
                let _ = UnsubAck::new(u.pkid).write(out);
                Ok(())
            }
            other => Err(SessionEnd::Unexpected(packet_name(&other))),
        }
    }
}

impl DpsSession {
    fn publish(&mut self, topic: String, payload: Vec<u8>, out: &mut BytesMut) {
        let qos = self
            .subs
            .iter()
            .filter(|(f, _)| filter_matches(f, &topic))
            .map(|(_, q)| *q)
            .max_by_key(|q| *q as u8);
        let Some(qos) = qos else { return };
        let mut p = Publish::new(topic, qos, payload);
        if qos != QoS::AtMostOnce {
            p.pkid = self.next_pkid;
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        }
        let _ = p.write(out);
    }

    async fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Result<(), SessionEnd> {
        if p.qos == QoS::ExactlyOnce {
            return Err(SessionEnd::ExactlyOnce("DPS takes QoS 0 and 1 only"));
        }
        let req = wire::parse_request(&p.topic).map_err(SessionEnd::NotDpsTopic)?;
        if p.qos == QoS::AtLeastOnce {
            let _ = PubAck::new(p.pkid).write(out);
        }
        let (rid, answer) = match req {
            wire::Request::Register { rid } => {
                let answer = self.device.register(&p.payload).await;
                (rid, answer)
            }
            wire::Request::Status { rid, operation_id } => {
                (rid, self.device.operation_status(&operation_id))
            }
        };
        let topic = wire::response_topic(answer.status, &rid, answer.retry_after);
        self.publish(topic, answer.body, out);
        Ok(())
    }
}
