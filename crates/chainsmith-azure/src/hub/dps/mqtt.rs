//! DPS's device protocol on the hub's listener: a CONNECT whose username is
//! `{idScope}/registrations/{registrationId}/api-version=…` lands here (see
//! [`crate::hub::server`]'s `connection`). The device subscribes to `$dps/registrations/res/#`,
//! registers, and polls its operation; the decision is [`HubStore::dps_register`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use super::issuing::issue_from_csr;
use super::{DpsRefusal, DpsRefusalKind};
use crate::azure::dps::{self as wire, code};
use crate::azure::{self, filter_matches};
use crate::hub::events::HubEvent;
use crate::hub::mqtt_packets::{
    DeviceStream, SessionEnd, next_packet, packet_name, refuse_connect,
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
    let scope = match &sh.id_scope {
        Some(s) => Ok(s.clone()),
        None => {
            let store = sh.store.clone();
            tokio::task::spawn_blocking(move || store.dps_id_scope())
                .await
                .unwrap_or_else(|_| Ok(String::new()))
        }
    };
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
            let why = sh.dps_sessions.refusal(full, c.peer.ip());
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
    let keep_alive = match connect.keep_alive {
        0 => azure::MAX_KEEP_ALIVE_SECS,
        k => k.min(azure::MAX_KEEP_ALIVE_SECS),
    };
    let mut s = DpsSession {
        sh: sh.clone(),
        registration_id,
        api_version,
        peer: c.peer,
        chain: std::mem::take(&mut c.chain),
        subs: Vec::new(),
        next_pkid: 1,
    };
    let lifetime = sh.config.dps_session_lifetime;
    let reason = tokio::time::timeout(lifetime, s.run(&mut c, keep_alive))
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
        registration_id: s.registration_id,
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
    let scope = scope.map_err(|e| ("registry", format!("DPS state unreadable: {e}")))?;
    if u.id_scope != scope {
        return Err((
            "dps-id-scope",
            format!(
                "registration {client_id}: ID scope \"{}\" is not this DPS's (\"{scope}\")",
                u.id_scope
            ),
        ));
    }
    let api = u.api_version.clone().unwrap_or_default();
    if !wire::API_VERSIONS.contains(&api.as_str()) {
        return Err((
            "dps-api-version",
            format!(
                "registration {client_id}: api-version \"{api}\" is not one the local DPS speaks ({})",
                wire::API_VERSIONS.join(", ")
            ),
        ));
    }
    if chain.is_empty() {
        return Err((
            "no-certificate",
            format!(
                "registration {client_id}: no client certificate was sent in the TLS handshake; X.509 attestation needs the device's certificate"
            ),
        ));
    }
    Ok((u.registration_id, api))
}

struct DpsSession {
    sh: Arc<Shared>,
    registration_id: String,
    api_version: String,
    peer: SocketAddr,
    chain: Vec<Vec<u8>>,
    subs: Vec<(String, QoS)>,
    next_pkid: u16,
}

impl DpsSession {
    async fn run<S: DeviceStream>(&mut self, c: &mut DpsConn<S>, keep_alive: u16) -> String {
        let idle = Duration::from_millis(u64::from(keep_alive) * 1500);
        let mut out = BytesMut::with_capacity(4096);
        let _ = ConnAck::new(ConnectReturnCode::Success, false).write(&mut out);
        loop {
            if !out.is_empty() {
                if c.tls.write_all(&out).await.is_err() || c.tls.flush().await.is_err() {
                    return "write failed (client gone)".into();
                }
                out.clear();
            }
            tokio::select! {
                r = tokio::time::timeout(idle, c.tls.read_buf(&mut c.buf)) => match r {
                    Err(_) => return format!("no packet within 1.5 × keep-alive ({keep_alive} s)"),
                    Ok(Err(e)) => return format!("read failed: {e}"),
                    Ok(Ok(0)) => return "connection closed by the device".into(),
                    Ok(Ok(_)) => loop {
                        match next_packet(&mut c.buf) {
                            Ok(Some(p)) => {
                                if let Err(why) = self.handle(p, &mut out).await {
                                    let _ = c.tls.write_all(&out).await;
                                    return why.to_string();
                                }
                            }
                            Ok(None) => break,
                            Err(why) => return why.to_string(),
                        }
                    },
                },
                _ = c.stop.changed() => return "hub shutting down".into(),
            }
        }
    }

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
            Packet::PingReq => {
                let _ = rumqttc::mqttbytes::v4::PingResp.write(out);
                Ok(())
            }
            Packet::Disconnect => Err(SessionEnd::Disconnect),
            other => Err(SessionEnd::Unexpected(packet_name(&other))),
        }
    }

    async fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Result<(), SessionEnd> {
        if p.qos == QoS::ExactlyOnce {
            return Err(SessionEnd::ExactlyOnce("DPS takes QoS 0 and 1 only"));
        }
        let req = wire::parse_request(&p.topic).map_err(SessionEnd::NotDpsTopic)?;
        if p.qos == QoS::AtLeastOnce {
            let _ = PubAck::new(p.pkid).write(out);
        }
        match req {
            wire::Request::Register { rid } => self.register(&rid, &p.payload, out).await,
            wire::Request::Status { rid, operation_id } => {
                let answer = self
                    .sh
                    .dps_ops
                    .lock()
                    .expect("dps ops")
                    .answer(&operation_id, &self.registration_id);
                match answer {
                    Some(body) => self.publish(wire::response_topic(200, &rid, None), body, out),
                    None => self.refuse(
                        &rid,
                        DpsRefusal {
                            status: 404,
                            error_code: code::OPERATION_NOT_FOUND,
                            kind: DpsRefusalKind::OperationNotFound,
                            reason: format!(
                                "registration {}: no operation \"{operation_id}\" (register first)",
                                self.registration_id
                            ),
                        },
                        out,
                    ),
                }
            }
        }
        Ok(())
    }

    async fn register(&mut self, rid: &str, body: &[u8], out: &mut BytesMut) {
        let req: wire::RegisterRequest = match serde_json::from_slice(body) {
            Ok(r) => r,
            // The SDKs always send a body; a device that sends none means itself.
            Err(_) if body.iter().all(u8::is_ascii_whitespace) => wire::RegisterRequest {
                registration_id: self.registration_id.clone(),
                ..Default::default()
            },
            Err(e) => {
                let r = DpsRefusal {
                    status: 400,
                    error_code: code::BAD_REQUEST,
                    kind: DpsRefusalKind::BadRequest,
                    reason: format!(
                        "registration {}: the register body is not DPS's JSON ({e}); send {{\"registrationId\":\"{}\"}}",
                        self.registration_id, self.registration_id
                    ),
                };
                return self.refuse(rid, r, out);
            }
        };
        if req.csr.is_some() && !self.api_version.ends_with("-preview") {
            let r = DpsRefusal {
                status: 400,
                error_code: code::BAD_REQUEST,
                kind: DpsRefusalKind::CsrApiVersion,
                reason: format!(
                    "registration {}: a CSR needs api-version {} (the certificate-management preview); this connection uses {}",
                    self.registration_id,
                    wire::API_VERSION_CSR,
                    self.api_version
                ),
            };
            return self.refuse(rid, r, out);
        }
        let store = self.sh.store.clone();
        let regid = self.registration_id.clone();
        let chain = self.chain.clone();
        let hub = self
            .sh
            .config
            .hostname
            .clone()
            .unwrap_or_else(|| "localhost".into());
        let signer = self.sh.config.csr_signer.clone();
        let now = self.sh.config.clock.now();
        let decided = tokio::task::spawn_blocking(move || {
            let issue = |ca: &str, regid: &str, csr: &[u8]| {
                issue_from_csr(&store, signer.as_ref(), ca, regid, csr)
            };
            store.dps_register(&regid, &chain, &req, &hub, now, &issue)
        })
        .await;
        let assigned = match decided {
            Ok(Ok(a)) => a,
            Ok(Err(r)) => return self.refuse(rid, r, out),
            Err(_) => return,
        };
        let operation_id = wire::new_operation_id();
        let issued = assigned.state.issued_certificate_chain.is_some();
        let done = wire::OperationResponse {
            operation_id: operation_id.clone(),
            status: "assigned".into(),
            registration_state: Some(assigned.state.clone()),
        };
        self.sh.dps_ops.lock().expect("dps ops").insert(
            operation_id.clone(),
            self.registration_id.clone(),
            serde_json::to_vec(&done).expect("serialisable"),
        );
        let assigning = wire::OperationResponse {
            operation_id: operation_id.clone(),
            status: "assigning".into(),
            registration_state: None,
        };
        self.publish(
            wire::response_topic(202, rid, Some(wire::RETRY_AFTER_SECS)),
            serde_json::to_vec(&assigning).expect("serialisable"),
            out,
        );
        self.sh.emit(HubEvent::DpsRegistering {
            registration_id: self.registration_id.clone(),
            operation_id,
        });
        let st = assigned.state;
        self.sh.emit(HubEvent::DpsAssigned {
            registration_id: st.registration_id,
            device_id: st.device_id.unwrap_or_default(),
            assigned_hub: st.assigned_hub.unwrap_or_default(),
            substatus: st.substatus.unwrap_or_default(),
            enrollment: assigned.enrollment,
            issued,
            note: assigned.note,
        });
    }

    /// DPS's error answer on `$dps/registrations/res/{status}/?$rid=…`, and the exact reason in
    /// the hub's refusals and events.
    fn refuse(&mut self, rid: &str, r: DpsRefusal, out: &mut BytesMut) {
        let tracking_id = wire::new_operation_id()
            .trim_start_matches("4.")
            .replace('.', "-");
        let body = wire::ErrorBody {
            error_code: r.error_code,
            tracking_id,
            message: r.reason.clone(),
            timestamp_utc: crate::pki::issue::rfc3339(self.sh.config.clock.now()),
        };
        self.publish(
            wire::response_topic(r.status, rid, None),
            serde_json::to_vec(&body).expect("serialisable"),
            out,
        );
        let who = Some(self.registration_id.clone());
        self.sh
            .remember_refusal(self.peer, who, r.kind.as_str(), r.reason.clone());
        self.sh.emit(HubEvent::DpsRefused {
            registration_id: self.registration_id.clone(),
            peer: self.peer,
            status: r.status,
            error_code: r.error_code,
            kind: r.kind.to_string(),
            reason: r.reason,
        });
    }
}
