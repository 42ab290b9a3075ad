//! The connection test over AMQP 1.0 (plain or over a WebSocket): Open,
//! the device's links (telemetry, twin pair, C2D), then the same telemetry, acknowledgement
//! (the delivery's settlement) and round trips (twin GET, the local hub's C2D echo) as over
//! MQTT, reported with the same events. Addresses and properties: [`crate::azure::amqp`].

use std::collections::HashMap;
use std::time::Instant;

use fe2o3_amqp::connection::ConnectionHandle;
use fe2o3_amqp::session::SessionHandle;
use fe2o3_amqp::types::definitions::{AmqpError, ErrorCondition, Fields};
use fe2o3_amqp::types::messaging::{
    Body, Data, MessageAnnotations, MessageId, Outcome, Properties as AmqpProperties,
    annotations::OwnedKey, message::Message,
};
use fe2o3_amqp::types::primitives::{Binary, SimpleValue, Symbol, Value};
use fe2o3_amqp::{Receiver, Sender, Session};
use tokio::sync::mpsc;

use super::diagnose::{Failure, FailureKind};
use super::state::{Io, State, emit, hub_record, round_trip_kinds, seed_message};
use super::{ConnectionTest, Event, RoundTripKind, Step, ms};
use crate::azure::amqp as proto;

fn attach_failure(
    what: &str,
    e: impl std::fmt::Display,
    condition: Option<&ErrorCondition>,
) -> Failure {
    let unauthorized = matches!(
        condition,
        Some(ErrorCondition::AmqpError(AmqpError::UnauthorizedAccess))
    );
    if unauthorized {
        // The same refusal as MQTT's CONNACK 5; the hub's reason is looked up after.
        return Failure::new(
            Step::LinkAttach,
            FailureKind::Connack {
                code: 5,
                hub_reason: None,
            },
        );
    }
    Failure::new(
        Step::LinkAttach,
        FailureKind::Protocol(format!("attaching the {what} link failed: {e}")),
    )
}

fn link_properties(channel: &str) -> Fields {
    let mut f = Fields::default();
    f.insert(
        Symbol::from(proto::CHANNEL_CORRELATION_ID),
        Value::String(channel.to_string()),
    );
    f.insert(
        Symbol::from(proto::API_VERSION_PROPERTY),
        Value::String(crate::azure::API_VERSION.to_string()),
    );
    f
}

struct Links {
    telemetry: Sender,
    twin: Option<(Sender, Receiver)>,
    c2d: Option<Receiver>,
}

/// Open the connection without a SASL layer, as the Node SDK does with X.509 (fe2o3's
/// SASL EXTERNAL insists on doing the TLS itself; the hub accepts both).
async fn open(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    io: Box<dyn Io>,
) -> Result<ConnectionHandle<()>, Failure> {
    let t = Instant::now();
    let host = test
        .hub_hostname
        .clone()
        .unwrap_or_else(|| test.endpoint.host.clone());
    let opening = fe2o3_amqp::Connection::builder()
        .container_id(format!("chainsmith-{}", test.identity.device_id))
        .hostname(host.as_str())
        .max_frame_size(crate::azure::amqp::MAX_FRAME)
        .open_with_stream(io);
    let conn = match tokio::time::timeout(test.timeout, opening).await {
        Err(_) => {
            return Err(Failure::new(
                Step::AmqpOpen,
                FailureKind::Timeout(test.timeout),
            ));
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                Step::AmqpOpen,
                FailureKind::Protocol(format!("AMQP open failed: {e}")),
            ));
        }
        Ok(Ok(c)) => c,
    };
    emit(
        tx,
        Event::StepDone {
            step: Step::AmqpOpen,
            ms: ms(t.elapsed()),
            detail: "AMQP 1.0 open (no SASL layer: the TLS client certificate is the credential, as the Node SDK sends it)".into(),
        },
    )
    .await;
    Ok(conn)
}

/// Attach the links this test uses.
async fn attach(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    session: &mut SessionHandle<()>,
) -> Result<Links, Failure> {
    let id = &test.identity.device_id;
    let t = Instant::now();
    let base = format!("/devices/{}", crate::azure::url_encode(id));
    let mut names = Vec::new();
    let telemetry_addr = format!("{base}/messages/events");
    let telemetry = Sender::attach(session, "chainsmith-telemetry", telemetry_addr.as_str())
        .await
        .map_err(|e| {
            let c = attach_condition(&e);
            attach_failure("telemetry", e, c.as_ref())
        })?;
    names.push(telemetry_addr);
    let kinds = test.flavor.dialect().round_trips(test.twin, test.c2d_echo);
    let twin = if kinds.contains(&RoundTripKind::Twin) {
        let addr = format!("{base}/twin");
        let channel = format!("twin:{}", uuid_like());
        let s = Sender::builder()
            .name("chainsmith-twin-sender")
            .target(addr.as_str())
            .properties(link_properties(&channel))
            .attach(session)
            .await
            .map_err(|e| {
                let c = attach_condition(&e);
                attach_failure("twin", e, c.as_ref())
            })?;
        let r = Receiver::builder()
            .name("chainsmith-twin-receiver")
            .source(addr.as_str())
            .properties(link_properties(&channel))
            .attach(session)
            .await
            .map_err(|e| attach_failure("twin", e, None))?;
        names.push(addr);
        Some((s, r))
    } else {
        None
    };
    let c2d = if kinds.contains(&RoundTripKind::C2d) {
        let addr = format!("{base}/messages/devicebound");
        let r = Receiver::builder()
            .name("chainsmith-c2d")
            .source(addr.as_str())
            .auto_accept(false)
            .attach(session)
            .await
            .map_err(|e| attach_failure("cloud-to-device", e, None))?;
        names.push(addr);
        Some(r)
    } else {
        None
    };
    emit(
        tx,
        Event::StepDone {
            step: Step::LinkAttach,
            ms: ms(t.elapsed()),
            detail: names.join(", "),
        },
    )
    .await;
    Ok(Links {
        telemetry,
        twin,
        c2d,
    })
}

fn attach_condition(e: &fe2o3_amqp::link::SenderAttachError) -> Option<ErrorCondition> {
    use fe2o3_amqp::link::SenderAttachError as E;
    match e {
        E::RemoteClosedWithError(err) => Some(err.condition.clone()),
        _ => None,
    }
}

fn refusal_condition(e: &fe2o3_amqp::link::SendError) -> Option<ErrorCondition> {
    use fe2o3_amqp::link::{LinkStateError as L, SendError as S};
    match e {
        S::LinkStateError(L::RemoteClosedWithError(err) | L::RemoteDetachedWithError(err)) => {
            Some(err.condition.clone())
        }
        _ => None,
    }
}

fn uuid_like() -> String {
    use rand::Rng;
    let b: [u8; 16] = rand::rng().random();
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The whole AMQP session of a test, after TLS (and the WebSocket, for amqp-ws).
pub(crate) async fn session(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
    io: Box<dyn Io>,
) -> Result<(), Failure> {
    let mut conn = open(test, tx, io).await?;
    let mut session = Session::begin(&mut conn).await.map_err(|e| {
        Failure::new(
            Step::AmqpOpen,
            FailureKind::Protocol(format!("AMQP session begin failed: {e}")),
        )
    })?;
    let mut links = attach(test, tx, &mut session).await?;
    for message_id in 0..test.count {
        if message_id > 0 && !test.interval.is_zero() {
            tokio::time::sleep(test.interval).await;
        }
        one_message(test, tx, s, &mut links, message_id).await?;
    }
    hub_record(test, tx, s).await;
    let t = Instant::now();
    let closing = async {
        let _ = links.telemetry.close().await;
        if let Some((a, b)) = links.twin {
            let _ = a.close().await;
            let _ = b.close().await;
        }
        if let Some(r) = links.c2d {
            let _ = r.close().await;
        }
        let _ = session.end().await;
        conn.close().await
    };
    match tokio::time::timeout(test.timeout, closing).await {
        Err(_) => {
            return Err(Failure::new(
                Step::Disconnect,
                FailureKind::Timeout(test.timeout),
            ));
        }
        Ok(Err(e)) => {
            return Err(Failure::new(
                Step::Disconnect,
                FailureKind::Protocol(format!("AMQP close failed: {e}")),
            ));
        }
        Ok(Ok(())) => {}
    }
    let ms = ms(t.elapsed());
    emit(tx, Event::Disconnected { ms }).await;
    Ok(())
}

/// The seed message as an AMQP message: the property bag's system properties in the AMQP
/// properties, `temperatureAlert` as an application property.
fn telemetry_message(device_id: &str, message_id: u32) -> (super::state::Pending, Message<Data>) {
    let pending = seed_message(super::Flavor::Azure, device_id, message_id);
    let props = AmqpProperties {
        message_id: Some(MessageId::String(format!("{device_id}-{message_id}"))),
        content_type: Some(Symbol::from("application/json")),
        content_encoding: Some(Symbol::from("utf-8")),
        ..AmqpProperties::default()
    };
    let mut app = fe2o3_amqp::types::messaging::ApplicationProperties::default();
    app.0.insert(
        "temperatureAlert".into(),
        SimpleValue::String(if pending.alert { "true" } else { "false" }.into()),
    );
    let msg = Message::builder()
        .properties(props)
        .application_properties(app)
        .body(Data(Binary::from(pending.payload.clone().into_bytes())))
        .build();
    (pending, msg)
}

fn twin_get(message_id: u32) -> Message<Data> {
    let mut ann = MessageAnnotations::default();
    ann.0.insert(
        OwnedKey::Symbol(Symbol::from(proto::TWIN_OPERATION)),
        Value::String("GET".into()),
    );
    let props = AmqpProperties {
        correlation_id: Some(MessageId::String(message_id.to_string())),
        ..AmqpProperties::default()
    };
    Message::builder()
        .properties(props)
        .message_annotations(ann)
        .body(Data(Binary::from(Vec::new())))
        .build()
}

async fn one_message(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
    links: &mut Links,
    message_id: u32,
) -> Result<(), Failure> {
    let limit = test.timeout;
    let kinds = round_trip_kinds(test);
    let (mut pending, msg) = telemetry_message(&test.identity.device_id, message_id);
    let mut outstanding: HashMap<RoundTripKind, Instant> = HashMap::new();
    pending.sent_at = Instant::now();
    for k in &kinds {
        outstanding.insert(*k, pending.sent_at);
    }
    // The delivery's settlement is the acknowledgement (PUBACK's counterpart).
    let outcome = tokio::time::timeout(limit, links.telemetry.send(msg)).await;
    let acked = match outcome {
        Err(_) => false,
        Ok(Ok(Outcome::Accepted(_))) => true,
        Ok(Ok(other)) => {
            return Err(Failure::new(
                Step::Telemetry,
                FailureKind::Protocol(format!(
                    "the hub did not accept message {message_id}: {other:?}"
                )),
            ));
        }
        Ok(Err(e)) => {
            // The hub attaches and then detaches a link it refuses, with the reason.
            if let Some(c) = refusal_condition(&e) {
                return Err(attach_failure("telemetry", &e, Some(&c)));
            }
            return Err(Failure::new(
                Step::Telemetry,
                FailureKind::Protocol(format!("sending message {message_id} failed: {e}")),
            ));
        }
    };
    s.sent += 1;
    s.rt_expected += kinds.len() as u32;
    if acked {
        s.acked(tx, test, &pending).await;
    }
    let deadline = tokio::time::Instant::now() + limit;
    if let Some((sender, receiver)) = links.twin.as_mut() {
        outstanding.insert(RoundTripKind::Twin, Instant::now());
        let _ = tokio::time::timeout_at(deadline, sender.send(twin_get(message_id))).await;
        while let Ok(Ok(d)) =
            tokio::time::timeout_at(deadline, receiver.recv::<Body<Value>>()).await
        {
            let _ = receiver.accept(&d).await;
            let m = d.message();
            let corr = m
                .properties
                .as_ref()
                .and_then(|p| p.correlation_id.as_ref())
                .map(proto::id_text);
            if corr.as_deref() == Some(message_id.to_string().as_str()) {
                let status = m
                    .message_annotations
                    .as_ref()
                    .and_then(|a| a.0.get(&OwnedKey::Symbol(Symbol::from(proto::TWIN_STATUS))))
                    .map(proto::value_text)
                    .unwrap_or_default();
                s.round_trip(
                    tx,
                    test,
                    &mut outstanding,
                    message_id,
                    RoundTripKind::Twin,
                    format!("status {status}"),
                )
                .await;
                break;
            }
        }
    }
    if let Some(receiver) = links.c2d.as_mut() {
        while let Ok(Ok(d)) =
            tokio::time::timeout_at(deadline, receiver.recv::<Body<Value>>()).await
        {
            let _ = receiver.accept(&d).await;
            let body = proto::body_bytes(&d.message().body);
            if super::state::message_id_of(&body) == Some(message_id) {
                let detail = format!("{} bytes", body.len());
                s.round_trip(
                    tx,
                    test,
                    &mut outstanding,
                    message_id,
                    RoundTripKind::C2d,
                    detail,
                )
                .await;
                break;
            }
        }
    }
    s.settle(tx, &pending, !acked, outstanding).await;
    Ok(())
}
