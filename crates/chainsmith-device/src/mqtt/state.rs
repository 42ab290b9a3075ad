//! What a connection test keeps while it runs, whatever its transport: the state and figures
//! ([`State`]), the message in flight ([`Pending`]), the MQTT framing over any stream ([`Conn`]),
//! the timed step and the events. The MQTT session and the AMQP one both run on it.

use super::diagnose::{Failure, FailureKind};
use super::{ConnectionTest, Event, Flavor, RoundTripKind, Step, Summary, ms};
use bytes::BytesMut;
use rumqttc::mqttbytes::v4::Packet;
use rumqttc::mqttbytes::{self};
use std::collections::HashMap;
use std::io;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const MAX_PACKET: usize = 1024 * 1024;

#[derive(Default)]
pub(crate) struct State {
    pub(super) server_cert: Option<Vec<u8>>,
    pub(super) acceptable_cas: Vec<String>,
    pub(super) findings: Vec<crate::pki::lint::Finding>,
    pub(crate) sent: u32,
    pub(super) acked: u32,
    pub(super) rt_seen: u32,
    pub(crate) rt_expected: u32,
    pub(super) lost: u32,
    pub(super) ack_ms: Vec<f64>,
    pub(super) rt_ms: Vec<f64>,
    pub(super) hub_recorded: Option<u32>,
}

impl State {
    pub(super) fn summary(&self, test: &ConnectionTest) -> Summary {
        let all_acked = if test.qos == 0 {
            true
        } else {
            self.acked == self.sent
        };
        Summary {
            ok: self.sent == test.count
                && all_acked
                && self.rt_seen == self.rt_expected
                && self.hub_recorded.is_none_or(|n| n == self.sent),
            sent: self.sent,
            acked: self.acked,
            round_trips_expected: self.rt_expected,
            round_trips_seen: self.rt_seen,
            lost: self.lost,
            ack_latency: super::LatencyStats::from_ms(&self.ack_ms),
            round_trip_latency: super::LatencyStats::from_ms(&self.rt_ms),
            hub_recorded: self.hub_recorded,
            total_ms: 0.0,
            failed_step: None,
        }
    }
}

/// The one SUBSCRIBE a device sends (packet id 1): every filter at QoS 1.
pub(crate) fn subscribe_packet(filters: &[String]) -> Packet {
    let mut sub = rumqttc::mqttbytes::v4::Subscribe::new_many(filters.iter().map(|f| {
        rumqttc::mqttbytes::v4::SubscribeFilter::new(
            f.clone(),
            rumqttc::mqttbytes::QoS::AtLeastOnce,
        )
    }));
    sub.pkid = 1;
    Packet::Subscribe(sub)
}

/// Run one step of a connection within `limit`: its I/O error or its timeout is the step's
/// failure.
pub(crate) async fn step<T, F>(step: Step, limit: Duration, fut: F) -> Result<T, Failure>
where
    F: std::future::Future<Output = io::Result<T>>,
{
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::io(step, &e)),
        Err(_) => Err(Failure::new(step, FailureKind::Timeout(limit))),
    }
}

/// A byte stream a session runs over: TLS, or a WebSocket over TLS.
pub(crate) trait Io:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug + 'static
{
}

impl<T> Io for T where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + std::fmt::Debug + 'static
{
}

/// An MQTT connection, packets framed with rumqttc's v4 codec: the connection test's (over a
/// boxed TLS or WebSocket stream), each fleet device's and the DPS client's (over TLS).
pub(crate) struct Conn<S = Box<dyn Io>> {
    pub(crate) io: S,
    rbuf: BytesMut,
    wbuf: BytesMut,
}

pub(crate) enum RecvError {
    Io(io::Error),
    Closed,
    Protocol(String),
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Conn<S> {
    /// Buffers of `capacity` bytes each way (a fleet keeps them small).
    pub(crate) fn with_capacity(io: S, capacity: usize) -> Conn<S> {
        Conn {
            io,
            rbuf: BytesMut::with_capacity(capacity),
            wbuf: BytesMut::with_capacity(capacity),
        }
    }

    pub(crate) async fn send(&mut self, p: &Packet) -> io::Result<()> {
        self.wbuf.clear();
        p.write(&mut self.wbuf, MAX_PACKET)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        self.io.write_all(&self.wbuf).await?;
        self.io.flush().await
    }

    /// The next packet (cancel-safe: partial input stays in the buffer).
    pub(crate) async fn recv(&mut self) -> Result<Packet, RecvError> {
        loop {
            match Packet::read(&mut self.rbuf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => return Err(RecvError::Protocol(e.to_string())),
            }
            match self.io.read_buf(&mut self.rbuf).await {
                Ok(0) => return Err(RecvError::Closed),
                Ok(_) => {}
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }
}

pub(crate) fn recv_failure(step: Step, e: RecvError) -> Failure {
    match e {
        RecvError::Io(e) => Failure::io(step, &e),
        RecvError::Closed => Failure::new(step, FailureKind::Closed),
        RecvError::Protocol(p) => Failure::new(step, FailureKind::Protocol(p)),
    }
}

pub(crate) fn message_id_of(payload: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("messageId")?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// A telemetry message in flight.
pub(crate) struct Pending {
    pub message_id: u32,
    /// The MQTT topic with its property bag (what the event shows for every transport).
    pub topic: String,
    pub payload: String,
    pub alert: bool,
    pub sent_at: Instant,
}

impl Pending {
    pub(super) fn event(&self, ack_ms: Option<f64>) -> Event {
        Event::Published {
            message_id: self.message_id,
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            temperature_alert: self.alert,
            ack_ms,
        }
    }
}

pub(crate) async fn emit(tx: &mpsc::Sender<Event>, e: Event) {
    let _ = tx.send(e).await;
}

/// The round trips each message expects for this test.
pub(crate) fn round_trip_kinds(test: &ConnectionTest) -> Vec<RoundTripKind> {
    test.flavor.dialect().round_trips(test.twin, test.c2d_echo)
}

/// One seed message (DOMAIN.md §5) with the application property the seed sets on every
/// message, "true" or "false".
pub(crate) fn seed_message(flavor: Flavor, device_id: &str, message_id: u32) -> Pending {
    let (payload, alert) = telemetry(device_id, message_id);
    Pending {
        message_id,
        topic: flavor.dialect().telemetry_topic(device_id, alert),
        payload,
        alert,
        sent_at: Instant::now(),
    }
}

/// The local hub's own record of the telemetry.
pub(crate) async fn hub_record(test: &ConnectionTest, tx: &mpsc::Sender<Event>, s: &mut State) {
    if let Some(hub) = &test.hub {
        let ids: Vec<u32> = (0..s.sent).collect();
        let missing = hub
            .missing(&test.identity.device_id, &ids, test.timeout)
            .await;
        let recorded = s.sent - missing.len() as u32;
        s.hub_recorded = Some(recorded);
        emit(tx, Event::HubRecorded { recorded, missing }).await;
    }
}

impl State {
    /// A message's acknowledgement came back.
    pub(crate) async fn acked(
        &mut self,
        tx: &mpsc::Sender<Event>,
        test: &ConnectionTest,
        pending: &Pending,
    ) {
        let l = ms(pending.sent_at.elapsed());
        self.acked += 1;
        self.ack_ms.push(l);
        if test.per_message_events {
            emit(tx, pending.event(Some(l))).await;
        }
    }

    /// A round trip of `kind` came back for the message in flight.
    pub(crate) async fn round_trip(
        &mut self,
        tx: &mpsc::Sender<Event>,
        test: &ConnectionTest,
        outstanding: &mut HashMap<RoundTripKind, Instant>,
        message_id: u32,
        kind: RoundTripKind,
        detail: String,
    ) {
        if let Some(at) = outstanding.remove(&kind) {
            let l = ms(at.elapsed());
            self.rt_seen += 1;
            self.rt_ms.push(l);
            if test.per_message_events {
                emit(
                    tx,
                    Event::RoundTrip {
                        message_id,
                        kind,
                        ms: l,
                        detail,
                    },
                )
                .await;
            }
        }
    }

    /// The message's wait is over: report what never came.
    pub(crate) async fn settle(
        &mut self,
        tx: &mpsc::Sender<Event>,
        pending: &Pending,
        ack_missing: bool,
        outstanding: HashMap<RoundTripKind, Instant>,
    ) {
        let mut lost = false;
        if ack_missing {
            lost = true;
            emit(tx, pending.event(None)).await;
            emit(
                tx,
                Event::AckMissing {
                    message_id: pending.message_id,
                },
            )
            .await;
        }
        for kind in outstanding.into_keys() {
            lost = true;
            emit(
                tx,
                Event::RoundTripMissing {
                    message_id: pending.message_id,
                    kind,
                },
            )
            .await;
        }
        self.lost += u32::from(lost);
    }
}

/// The seed's telemetry message (DOMAIN.md §5), byte for byte:
/// `{"deviceId":"dev1","messageId":0,"temperature":27,"humidity":71}` — integer temperature
/// 20–35 and humidity 60–80, keys in that order; the alert is set above 30.
fn telemetry(device_id: &str, message_id: u32) -> (String, bool) {
    use rand::Rng;
    let mut rng = rand::rng();
    let temperature: u32 = rng.random_range(20..=35);
    let humidity: u32 = rng.random_range(60..=80);
    (
        telemetry_body(device_id, message_id, temperature, humidity),
        temperature > 30,
    )
}

/// The seed body with its keys in the seed's order (a struct serializes fields in order).
pub(crate) fn telemetry_body(
    device_id: &str,
    message_id: u32,
    temperature: u32,
    humidity: u32,
) -> String {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Body<'a> {
        device_id: &'a str,
        message_id: u32,
        temperature: u32,
        humidity: u32,
    }
    serde_json::to_string(&Body {
        device_id,
        message_id,
        temperature,
        humidity,
    })
    .expect("a struct of strings and integers serializes")
}
