//! A device's session with the hub, whatever its transport: IoT Hub's device protocol
//! (telemetry, cloud-to-device, twin, direct methods), spoken in MQTT packets. The MQTT
//! transport feeds it packets as they arrive; the AMQP transport translates its links to and
//! from them ([`crate::amqp`]).

use std::sync::Arc;

use bytes::BytesMut;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Packet, PubAck, Publish, SubAck, SubscribeReasonCode, UnsubAck};

use super::registry::RegistryError;
use crate::azure::{self, DevicePublish, DeviceSubscription, Properties};

use super::events::*;
use super::mqtt_packets::*;
use super::shared::*;

/// A device's session with the hub: IoT Hub's device protocol, spoken in MQTT packets (the
/// AMQP transport translates its links to and from them, see [`crate::amqp`]).
pub(super) struct DeviceSession {
    sh: Arc<Shared>,
    device: String,
    subs: Subscriptions,
    next_pkid: u16,
}

impl DeviceSession {
    pub(super) fn new(sh: Arc<Shared>, device: String, subs: Subscriptions) -> DeviceSession {
        DeviceSession {
            sh,
            device,
            subs,
            next_pkid: 1,
        }
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
    pub(super) async fn handle(&mut self, p: Packet, out: &mut BytesMut) -> Result<(), SessionEnd> {
        match p {
            Packet::Publish(p) => self.on_publish(p, out).await,
            Packet::PubAck(_) => Ok(()),
            Packet::Subscribe(s) => {
                let mut codes = Vec::with_capacity(s.filters.len());
                let mut drain = false;
                for f in s.filters {
                    let kind = azure::classify_subscribe(&self.device, &f.path)
                        .map_err(|e| SessionEnd::OutsideNamespace("SUBSCRIBE", e))?;
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
            other => Err(SessionEnd::Unexpected(packet_name(&other))),
        }
    }

    async fn on_publish(&mut self, p: Publish, out: &mut BytesMut) -> Result<(), SessionEnd> {
        if p.qos == QoS::ExactlyOnce {
            return Err(SessionEnd::ExactlyOnce(
                "IoT Hub supports QoS 0 and 1 only and closes the connection",
            ));
        }
        if p.payload.len() > azure::MAX_MESSAGE_BYTES {
            return Err(SessionEnd::MessageTooLarge(p.payload.len()));
        }
        let what = azure::classify_publish(&self.device, &p.topic)
            .map_err(|e| SessionEnd::OutsideNamespace("PUBLISH", e))?;
        let ack = |out: &mut BytesMut| {
            if p.qos == QoS::AtLeastOnce {
                let _ = PubAck::new(p.pkid).write(out);
            }
        };
        match what {
            DevicePublish::Telemetry(props) => {
                ack(out);
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
                // The event's copies of topic, properties and payload are made only for a
                // listener (the log, a monitor, the TUI): `hub serve --log off` has none.
                if self.sh.listened() {
                    self.sh.emit(HubEvent::Telemetry {
                        device: self.device.clone(),
                        topic: clip(&p.topic),
                        properties: clip_properties(props),
                        payload: clip(&String::from_utf8_lossy(&p.payload)),
                        size: p.payload.len(),
                        qos: p.qos as u8,
                        enqueued: self.sh.config.clock.now(),
                    });
                }
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
