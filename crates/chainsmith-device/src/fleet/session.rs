//! One device's MQTT session in a fleet: connect (TCP, TLS, CONNECT, SUBSCRIBE), then
//! telemetry, acknowledgements and round trips in one select loop until the run stops, a
//! storm drops the connection, or the peer fails it. Same packets and topics as the
//! connection test (`rumqttc::mqttbytes::v4`, [`crate::azure`]); every step has a timeout.

use super::figures::record;
use super::shared::{Load, RoundTrip, Shared};
use crate::azure;
use crate::mqtt::diagnose::{Failure, FailureKind};
use crate::mqtt::session::recv_failure;
use crate::mqtt::session::{step, subscribe_packet};
use crate::mqtt::{RoundTripKind, Step};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{
    Connect, ConnectReturnCode, Packet, PubAck, Publish, SubscribeReasonCode,
};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;

/// Keep-alive announced in CONNECT; a PINGREQ goes out after half of it without traffic.
const KEEP_ALIVE: u16 = 60;

/// Each device's MQTT read and write buffers to begin with: a telemetry PUBLISH (topic and the
/// seed's body) is under 200 bytes and a PUBACK 4; a larger packet grows them (up to the
/// connection test's packet limit). 10,000 devices hold 5 MB in them at this size.
const BUFFER: usize = 256;

/// A device's MQTT connection: the connection test's framing over this device's TLS stream.
pub(crate) type Conn = crate::mqtt::session::Conn<TlsStream<TcpStream>>;

/// The subscriptions a device makes for its round trips.
fn filters(sh: &Shared, id: &str) -> Vec<String> {
    match sh.round_trip {
        RoundTrip::None => vec![],
        RoundTrip::Echo => vec![sh.flavor.dialect().subscription(id, RoundTripKind::Echo)],
        RoundTrip::C2d => vec![azure::c2d_filter(id)],
    }
}

/// TCP, TLS, CONNECT/CONNACK and SUBSCRIBE/SUBACK, each within the timeout.
pub(crate) async fn connect(
    sh: &Shared,
    id: &str,
    config: Arc<rustls::ClientConfig>,
) -> Result<Box<Conn>, Failure> {
    let limit = sh.timeout;
    let tcp = step(Step::TcpConnect, limit, crate::dial::tcp_first(&sh.addrs)).await?;
    let connector = tokio_rustls::TlsConnector::from(config);
    let tls = step(
        Step::TlsHandshake,
        limit,
        connector.connect(sh.server_name.clone(), tcp),
    )
    .await?;
    // Boxed: the connection (rustls's state is 1 KB of it) is moved from this step to the
    // session and on to the drain, and each task and future it passes through keeps only
    // this pointer in its state.
    let mut conn = Box::new(Conn::with_capacity(tls, BUFFER));
    let mut connect = Connect::new(id.to_string());
    connect.keep_alive = KEEP_ALIVE;
    connect.clean_session = true;
    if let Some(username) = sh.flavor.dialect().username(&sh.username_host, id) {
        connect.set_login(username, "");
    }
    step(
        Step::MqttConnect,
        limit,
        conn.send(&Packet::Connect(connect)),
    )
    .await?;
    match tokio::time::timeout(limit, conn.recv()).await {
        Err(_) => return Err(Failure::new(Step::MqttConnect, FailureKind::Timeout(limit))),
        Ok(Err(e)) => return Err(recv_failure(Step::MqttConnect, e)),
        Ok(Ok(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {}
        Ok(Ok(Packet::ConnAck(a))) => {
            return Err(Failure::new(
                Step::MqttConnect,
                FailureKind::Connack {
                    code: a.code as u8,
                    hub_reason: None,
                },
            ));
        }
        Ok(Ok(other)) => {
            return Err(Failure::new(
                Step::MqttConnect,
                FailureKind::Protocol(format!("expected CONNACK, got {other:?}")),
            ));
        }
    }
    let filters = filters(sh, id);
    if !filters.is_empty() {
        let sub = subscribe_packet(&filters);
        step(Step::Subscribe, limit, conn.send(&sub)).await?;
        let deadline = Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, conn.recv()).await {
                Err(_) => return Err(Failure::new(Step::Subscribe, FailureKind::Timeout(limit))),
                Ok(Err(e)) => return Err(recv_failure(Step::Subscribe, e)),
                Ok(Ok(Packet::SubAck(a))) if a.pkid == 1 => {
                    if let Some(i) = a
                        .return_codes
                        .iter()
                        .position(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                    {
                        return Err(Failure::new(
                            Step::Subscribe,
                            FailureKind::SubscribeRefused(filters[i].clone()),
                        ));
                    }
                    break;
                }
                Ok(Ok(_)) => continue,
            }
        }
    }
    Ok(conn)
}

/// What a device carries from one connection to the next.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    pub next_message: u32,
    /// The message count is done (counted once in `Shared::finished`).
    pub finished: bool,
}

/// How a session ended.
pub(crate) enum End {
    Stopped,
    Storm,
    Failed(Failure),
}

/// The seed's telemetry body (DOMAIN.md §5), keys in its order.
fn telemetry(id: &str, message_id: u32) -> (Vec<u8>, bool) {
    use rand::Rng;
    let mut rng = rand::rng();
    let temperature: u32 = rng.random_range(20..=35);
    let humidity: u32 = rng.random_range(60..=80);
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".into());
    (
        format!(
            "{{\"deviceId\":{id},\"messageId\":{message_id},\"temperature\":{temperature},\"humidity\":{humidity}}}"
        )
        .into_bytes(),
        temperature > 30,
    )
}

fn message_id_of(payload: &[u8]) -> Option<u32> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    v.get("messageId")?
        .as_u64()
        .and_then(|n| u32::try_from(n).ok())
}

/// Telemetry until the run stops or a storm drops the connection.
pub(crate) async fn session(
    sh: &Shared,
    id: &str,
    mut conn: Box<Conn>,
    progress: &mut Progress,
    storm_seen: u64,
) -> End {
    let limit = sh.timeout;
    let live = &sh.live;
    let qos = if sh.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let mut acks: VecDeque<(u16, Instant)> = VecDeque::new();
    let mut trips: VecDeque<(u32, Instant)> = VecDeque::new();
    let mut pkid: u16 = 1;
    let interval = match sh.load {
        Load::Rate(r) => Some(Duration::from_secs_f64(1.0 / r)),
        Load::Messages(_) => None,
    };
    // Spread the devices' sends over the interval instead of sending in lockstep.
    let mut next_send = Instant::now()
        + interval
            .map(|i| i.mul_f64(rand::random::<f64>()))
            .unwrap_or_default();
    let mut last_out = Instant::now();
    let mut stop = sh.stop.clone();
    let mut storm = sh.storm.clone();
    loop {
        let may_send = match sh.load {
            Load::Rate(_) => true,
            // A count is sent one message at a time, each waited for (as `connect` does).
            Load::Messages(n) => progress.next_message < n && acks.is_empty() && trips.is_empty(),
        };
        if !may_send
            && !progress.finished
            && acks.is_empty()
            && trips.is_empty()
            && matches!(sh.load, Load::Messages(n) if progress.next_message >= n)
        {
            progress.finished = true;
            sh.finished.fetch_add(1, Relaxed);
        }
        let expiry = acks
            .front()
            .map(|a| a.1)
            .into_iter()
            .chain(trips.front().map(|t| t.1))
            .min()
            .map(|t| t + limit);
        let ping_at = last_out + Duration::from_secs(u64::from(KEEP_ALIVE) / 2);
        tokio::select! {
            biased;
            _ = super::shared::until_true(&mut stop) => {
                // Boxed: only a stopping device holds the drain's state.
                return Box::pin(drain_and_disconnect(sh, conn, acks, trips)).await;
            }
            _ = super::shared::until_past(&mut storm, storm_seen) => {
                // Dropped without a word, as a network outage or a hub failover drops devices.
                // What was in flight is lost by the storm's design, not by the peer.
                lost(sh, &acks, &trips);
                sh.live.ack_dropped_by_storm.fetch_add(acks.len() as u64, Relaxed);
                return End::Storm;
            }
            r = conn.recv() => match r {
                Err(e) => {
                    lost(sh, &acks, &trips);
                    return End::Failed(recv_failure(Step::Telemetry, e));
                }
                Ok(Packet::PubAck(a)) => {
                    if let Some(i) = acks.iter().position(|x| x.0 == a.pkid) {
                        if let Some((_, at)) = acks.remove(i) {
                            record(&live.ack_us, at.elapsed());
                            live.acked.fetch_add(1, Relaxed);
                        }
                    }
                }
                Ok(Packet::Publish(p)) => {
                    if p.qos == QoS::AtLeastOnce {
                        if let Err(f) = step(Step::Telemetry, limit, conn.send(&Packet::PubAck(PubAck::new(p.pkid)))).await {
                            lost(sh, &acks, &trips);
                            return End::Failed(f);
                        }
                        last_out = Instant::now();
                    }
                    if let Some(mid) = message_id_of(&p.payload) {
                        if let Some(i) = trips.iter().position(|x| x.0 == mid) {
                            if let Some((_, at)) = trips.remove(i) {
                                record(&live.round_trip_us, at.elapsed());
                                live.round_trips.fetch_add(1, Relaxed);
                            }
                        }
                    }
                }
                Ok(_) => {}
            },
            _ = tokio::time::sleep_until(next_send), if may_send => {
                let mid = progress.next_message;
                progress.next_message = progress.next_message.wrapping_add(1);
                let (body, alert) = telemetry(id, mid);
                let topic = sh.flavor.dialect().telemetry_topic(id, alert);
                let mut publish = Publish::new(topic, qos, body);
                let now = Instant::now();
                if qos == QoS::AtLeastOnce {
                    pkid = if pkid == u16::MAX { 2 } else { pkid + 1 };
                    publish.pkid = pkid;
                    acks.push_back((pkid, now));
                }
                if sh.round_trip != RoundTrip::None {
                    trips.push_back((mid, now));
                }
                if let Err(f) = step(Step::Telemetry, limit, conn.send(&Packet::Publish(publish))).await {
                    lost(sh, &acks, &trips);
                    return End::Failed(f);
                }
                live.sent.fetch_add(1, Relaxed);
                last_out = Instant::now();
                next_send = match interval {
                    // Keep the rate: the next slot, unless this device fell more than one behind.
                    Some(i) => (next_send + i).max(Instant::now() - i),
                    None => Instant::now(),
                };
            }
            _ = tokio::time::sleep_until(expiry.unwrap_or(ping_at)), if expiry.is_some() => {
                let now = Instant::now();
                while acks.front().is_some_and(|a| now >= a.1 + limit) {
                    acks.pop_front();
                    live.ack_lost.fetch_add(1, Relaxed);
                }
                while trips.front().is_some_and(|t| now >= t.1 + limit) {
                    trips.pop_front();
                    live.round_trips_lost.fetch_add(1, Relaxed);
                }
            }
            _ = tokio::time::sleep_until(ping_at) => {
                if let Err(f) = step(Step::Telemetry, limit, conn.send(&Packet::PingReq)).await {
                    lost(sh, &acks, &trips);
                    return End::Failed(f);
                }
                last_out = Instant::now();
            }
        }
    }
}

fn lost(sh: &Shared, acks: &VecDeque<(u16, Instant)>, trips: &VecDeque<(u32, Instant)>) {
    sh.live.ack_lost.fetch_add(acks.len() as u64, Relaxed);
    sh.live
        .round_trips_lost
        .fetch_add(trips.len() as u64, Relaxed);
}

/// The clean stop: wait (up to the timeout) for what is still owed, then DISCONNECT and
/// close_notify.
async fn drain_and_disconnect(
    sh: &Shared,
    mut conn: Box<Conn>,
    mut acks: VecDeque<(u16, Instant)>,
    mut trips: VecDeque<(u32, Instant)>,
) -> End {
    let live = &sh.live;
    let deadline = Instant::now() + sh.timeout;
    while !acks.is_empty() || !trips.is_empty() {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Ok(Packet::PubAck(a))) => {
                if let Some(i) = acks.iter().position(|x| x.0 == a.pkid) {
                    if let Some((_, at)) = acks.remove(i) {
                        record(&live.ack_us, at.elapsed());
                        live.acked.fetch_add(1, Relaxed);
                    }
                }
            }
            Ok(Ok(Packet::Publish(p))) => {
                if p.qos == QoS::AtLeastOnce {
                    let _ = conn.send(&Packet::PubAck(PubAck::new(p.pkid))).await;
                }
                if let Some(mid) = message_id_of(&p.payload) {
                    if let Some(i) = trips.iter().position(|x| x.0 == mid) {
                        if let Some((_, at)) = trips.remove(i) {
                            record(&live.round_trip_us, at.elapsed());
                            live.round_trips.fetch_add(1, Relaxed);
                        }
                    }
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) | Err(_) => break,
        }
    }
    lost(sh, &acks, &trips);
    let _ = step(Step::Disconnect, sh.timeout, async {
        conn.send(&Packet::Disconnect).await?;
        conn.io.shutdown().await
    })
    .await;
    End::Stopped
}
