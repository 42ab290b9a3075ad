//! The device session: resolve, TCP, TLS, CONNECT, SUBSCRIBE, telemetry with acknowledgements
//! and round trips, DISCONNECT; one event per step, one diagnosis per failure.

use super::diagnose::{self, Context, Failure, FailureKind};
pub(crate) use super::state::{
    Conn, Io, State, emit, hub_record, message_id_of, recv_failure, round_trip_kinds, seed_message,
    step, subscribe_packet,
};
use super::{
    ConnectionTest, Event, RoundTripKind, Step, SubscriptionResult, Summary, TlsFacts, ms,
};
use crate::azure;
use crate::pki::lint::has_errors;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, PubAck, Publish, SubscribeReasonCode};
use rumqttc::mqttbytes::{self, QoS};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::client::TlsStream;

/// Run the test, sending events to `tx` as they happen; returns the summary (also sent as the
/// last event). Never panics on network input; every step has `test.timeout`.
pub async fn run(test: ConnectionTest, tx: mpsc::Sender<Event>) -> Summary {
    let started = Instant::now();
    let mut s = State::default();
    let result = run_inner(&test, &tx, &mut s).await;
    let mut summary = s.summary(&test);
    summary.total_ms = ms(started.elapsed());
    if let Err(f) = result {
        let f = match (f.kind, test.hub.as_ref()) {
            (
                FailureKind::Connack {
                    code,
                    hub_reason: None,
                },
                Some(lookup),
            ) => Failure::new(
                f.step,
                FailureKind::Connack {
                    code,
                    hub_reason: lookup.refusal(&test.identity.device_id).await,
                },
            ),
            (kind, _) => Failure::new(f.step, kind),
        };
        let cx = Context {
            identity: &test.identity,
            endpoint: &test.endpoint,
            server_cert: s.server_cert.as_deref(),
            acceptable_cas: &s.acceptable_cas,
            preflight: &s.findings,
            timeout: test.timeout,
        };
        let aws = super::aws::explain(test.hub.as_deref(), &f, &test.identity, &test.endpoint);
        let mut diagnosis = match aws.await {
            Some(d) => d,
            None => diagnose::diagnose(&f, &cx),
        };
        if let Some(note) = websocket_preview_note(&test, f.step) {
            diagnosis.fix.push_str(note);
        }
        summary.ok = false;
        summary.failed_step = Some(f.step);
        let _ = tx
            .send(Event::Failed {
                step: f.step,
                diagnosis,
            })
            .await;
    }
    if summary.ok {
        record_pass(&test);
    }
    let _ = tx.send(Event::Summary(summary.clone())).await;
    summary
}

/// A test that passed for a workspace device is recorded in its workspace, before the summary
/// goes out (a face that reads the guide after the summary sees the pass). Best effort: a
/// read-only workspace does not turn a passed test into a failed one.
fn record_pass(test: &ConnectionTest) {
    if let Some(ws) = &test.identity.workspace {
        let _ = super::record::record_passed(
            ws,
            super::record::Passed {
                device: test.identity.device_id.clone(),
                transport: test.transport.as_str().to_string(),
                endpoint: test.endpoint.display(),
            },
        );
    }
}

/// Azure IoT Hub serves MQTT and AMQP over WebSockets to X.509 CA-signed devices only in
/// preview ("not yet generally available, preview mode must be enabled", Microsoft's X.509
/// docs); thumbprint devices are GA. Said where a CA-signed device fails to get in that way.
fn websocket_preview_note(test: &ConnectionTest, step: Step) -> Option<&'static str> {
    let ca_signed = !test.identity.leaf().view.self_signed;
    (test.transport.websocket()
        && test.endpoint.peer == super::PeerKind::AzureHub
        && ca_signed
        && step >= Step::TlsHandshake
        && step <= Step::MqttConnect)
        .then_some(
            "; note: on Azure IoT Hub, MQTT and AMQP over WebSockets for X.509 CA-signed devices are a preview that must be enabled on the hub (thumbprint devices are GA): test over MQTT or AMQP without WebSockets to tell",
        )
}

fn tls_version(v: Option<rustls::ProtocolVersion>) -> String {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".into(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".into(),
        Some(other) => format!("{other:?}"),
        None => "unknown".into(),
    }
}

async fn run_inner(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
) -> Result<(), Failure> {
    announce(test, tx).await;
    preflight(test, tx, s).await?;
    let tls = open_tls(test, tx, s).await?;
    let io: Box<dyn Io> = if test.transport.websocket() {
        Box::new(websocket(test, tx, tls).await?)
    } else {
        Box::new(tls)
    };
    if test.transport.amqp() {
        return super::amqp::session(test, tx, s, io).await;
    }
    let mut conn = Conn::with_capacity(io, 4096);
    let keep_alive = mqtt_connect(test, tx, &mut conn).await?;
    subscribe(test, tx, &mut conn).await?;
    telemetry_loop(test, tx, s, &mut conn, keep_alive).await?;
    hub_record(test, tx, s).await;
    disconnect(test, tx, &mut conn).await
}

/// The WebSocket upgrade over TLS: IoT Hub's path (or the broker's) and the transport's
/// subprotocol, which the server must agree to.
async fn websocket(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    tls: TlsStream<TcpStream>,
) -> Result<crate::azure::websocket::WsIo<TlsStream<TcpStream>>, Failure> {
    use crate::azure::websocket;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let path = test
        .websocket_path
        .clone()
        .unwrap_or_else(|| websocket::PATH.to_string());
    let sub = if test.transport.amqp() {
        websocket::AMQP_SUBPROTOCOL
    } else {
        websocket::MQTT_SUBPROTOCOL
    };
    let fail = |kind| Failure::new(Step::WebSocketUpgrade, kind);
    let url = format!("wss://{}{path}", test.endpoint.display());
    let mut req = url
        .as_str()
        .into_client_request()
        .map_err(|e| fail(FailureKind::Setup(format!("WebSocket URL {url}: {e}"))))?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        tokio_tungstenite::tungstenite::http::HeaderValue::from_static(sub),
    );
    let t = Instant::now();
    let upgrade = tokio_tungstenite::client_async_with_config(req, tls, Some(websocket::config()));
    let (stream, resp) = match tokio::time::timeout(test.timeout, upgrade).await {
        Err(_) => return Err(fail(FailureKind::Timeout(test.timeout))),
        Ok(Err(e)) => {
            return Err(fail(FailureKind::Protocol(format!(
                "the WebSocket upgrade at {path} was refused: {e}"
            ))));
        }
        Ok(Ok(x)) => x,
    };
    let agreed = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !agreed.eq_ignore_ascii_case(sub) {
        return Err(fail(FailureKind::Protocol(format!(
            "the server did not agree to the WebSocket subprotocol \"{sub}\" (it answered \"{}\")",
            crate::text::escape_controls(agreed)
        ))));
    }
    emit(
        tx,
        Event::StepDone {
            step: Step::WebSocketUpgrade,
            ms: ms(t.elapsed()),
            detail: format!("{path}, subprotocol {sub}"),
        },
    )
    .await;
    Ok(websocket::WsIo::new(stream))
}

async fn announce(test: &ConnectionTest, tx: &mpsc::Sender<Event>) {
    emit(
        tx,
        Event::Start {
            device: test.identity.device_id.clone(),
            endpoint: test.endpoint.display(),
            peer: test.endpoint.peer,
            transport: test.transport,
            flavor: test.flavor,
            count: test.count,
            qos: test.qos,
        },
    )
    .await;
}

/// The pre-flight lint of the identity (and what the target is known to trust).
async fn preflight(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
) -> Result<(), Failure> {
    let mut findings = test.identity.preflight();
    findings.extend(test.preflight_extra.iter().cloned());
    findings.sort_by_key(|f| f.severity);
    let errors = findings
        .iter()
        .filter(|f| f.severity == crate::pki::lint::Severity::Error)
        .count();
    let strict_stop = test.strict && has_errors(&findings);
    s.findings = findings.clone();
    let remedies = diagnose::preflight_remedies(&findings, &test.identity);
    emit(tx, Event::Lint { findings, remedies }).await;
    if strict_stop {
        return Err(Failure::new(Step::Lint, FailureKind::LintErrors(errors)));
    }
    if test.qos > 1 {
        return Err(Failure::new(
            Step::Lint,
            FailureKind::Setup(format!(
                "QoS {} is not supported by IoT Hub; send with QoS 0 or 1",
                test.qos
            )),
        ));
    }
    Ok(())
}

/// Resolve, dial the first address that answers, and complete the TLS handshake: the part
/// every transport shares (MQTT, AMQP, and both over WebSockets ride on this stream).
pub(crate) async fn open_tls(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
) -> Result<TlsStream<TcpStream>, Failure> {
    let (config, server_name, recorder) = super::tls::client_config(
        &test.identity,
        &test.extra_ca,
        test.system_roots,
        &test.endpoint.host,
        test.tls_version,
    )
    .map_err(|e| Failure::new(Step::TlsHandshake, FailureKind::Setup(e.to_string())))?;
    let tcp = dial(test, tx).await?;

    let t = Instant::now();
    let connector = tokio_rustls::TlsConnector::from(config);
    let handshake = step(
        Step::TlsHandshake,
        test.timeout,
        connector.connect(server_name, tcp),
    )
    .await;
    {
        let seen = recorder
            .lock()
            .map(|g| (g.server_leaf.clone(), g.acceptable_cas.clone()))
            .unwrap_or_default();
        s.server_cert = seen.0;
        s.acceptable_cas = seen.1;
    }
    let tls = handshake?;
    let facts = tls_facts(test, s, &tls, &recorder);
    emit(
        tx,
        Event::TlsEstablished {
            ms: ms(t.elapsed()),
            facts,
        },
    )
    .await;
    Ok(tls)
}

/// Resolve the endpoint and connect TCP to the first address that answers.
async fn dial(test: &ConnectionTest, tx: &mpsc::Sender<Event>) -> Result<TcpStream, Failure> {
    let ep = &test.endpoint;
    let limit = test.timeout;
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = step(Step::Resolve, limit, async {
        tokio::net::lookup_host((ep.host.as_str(), ep.port))
            .await
            .map(|a| a.collect())
    })
    .await?;
    if addrs.is_empty() {
        return Err(Failure::new(
            Step::Resolve,
            FailureKind::Dns("no addresses".into()),
        ));
    }
    emit(
        tx,
        Event::Resolved {
            ms: ms(t.elapsed()),
            addresses: addrs.iter().map(|a| a.to_string()).collect(),
        },
    )
    .await;

    let t = Instant::now();
    let tcp = step(Step::TcpConnect, limit, crate::dial::tcp_first(&addrs)).await?;
    let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    emit(
        tx,
        Event::TcpConnected {
            ms: ms(t.elapsed()),
            address: peer,
        },
    )
    .await;
    Ok(tcp)
}

fn tls_facts(
    test: &ConnectionTest,
    s: &State,
    tls: &TlsStream<TcpStream>,
    recorder: &super::tls::Recorder,
) -> TlsFacts {
    let (_, conn) = tls.get_ref();
    let seen = recorder.lock().ok();
    let requested = seen.as_ref().is_some_and(|g| g.client_requested);
    TlsFacts {
        version: tls_version(conn.protocol_version()),
        cipher_suite: conn
            .negotiated_cipher_suite()
            .map(|c| format!("{:?}", c.suite()))
            .unwrap_or_default(),
        server_cert: s
            .server_cert
            .as_deref()
            .and_then(super::CertSummary::from_der),
        server_chain_len: seen.as_ref().map(|g| g.server_intermediates).unwrap_or(0),
        server_verified: seen
            .as_ref()
            .is_some_and(|g| matches!(g.server_result, Some(Ok(())))),
        client_cert_requested: requested,
        acceptable_cas: s.acceptable_cas.clone(),
        client_chain_sent: if requested {
            test.identity
                .sent
                .iter()
                .map(|c| c.view.subject.clone())
                .collect()
        } else {
            vec![]
        },
    }
}

/// CONNECT / CONNACK; returns the keep-alive in seconds.
async fn mqtt_connect(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    conn: &mut Conn,
) -> Result<u64, Failure> {
    let id = &test.identity;
    let limit = test.timeout;
    let t = Instant::now();
    let mut connect = mqttbytes::v4::Connect::new(id.device_id.clone());
    let keep_alive = (test.interval.as_secs() * 2 + limit.as_secs() * 2).clamp(60, 1177);
    connect.keep_alive = keep_alive as u16;
    let host = test.hub_hostname.as_deref().unwrap_or(&test.endpoint.host);
    let username = test
        .flavor
        .dialect()
        .username(host, &id.device_id)
        .unwrap_or_default();
    if !username.is_empty() {
        connect.set_login(username.clone(), "");
    }
    step(
        Step::MqttConnect,
        limit,
        conn.send(&Packet::Connect(connect)),
    )
    .await?;
    let connack = match tokio::time::timeout(limit, conn.recv()).await {
        Err(_) => return Err(Failure::new(Step::MqttConnect, FailureKind::Timeout(limit))),
        Ok(Err(e)) => return Err(recv_failure(Step::MqttConnect, e)),
        Ok(Ok(Packet::ConnAck(a))) => a,
        Ok(Ok(other)) => {
            return Err(Failure::new(
                Step::MqttConnect,
                FailureKind::Protocol(format!("expected CONNACK, got {other:?}")),
            ));
        }
    };
    let code = connack.code as u8;
    emit(
        tx,
        Event::Connack {
            ms: ms(t.elapsed()),
            code,
            meaning: diagnose::connack_text(code),
            username,
        },
    )
    .await;
    if connack.code != ConnectReturnCode::Success {
        return Err(Failure::new(
            Step::MqttConnect,
            FailureKind::Connack {
                code,
                hub_reason: None,
            },
        ));
    }
    Ok(keep_alive)
}

/// SUBSCRIBE to what the round trips answer on (twin responses, C2D, a broker's echo).
async fn subscribe(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    conn: &mut Conn,
) -> Result<(), Failure> {
    let id = &test.identity;
    let limit = test.timeout;
    let dialect = test.flavor.dialect();
    let mut filters: Vec<String> = round_trip_kinds(test)
        .into_iter()
        .map(|k| dialect.subscription(&id.device_id, k))
        .collect();
    filters.dedup();
    if filters.is_empty() {
        return Ok(());
    }
    let t = Instant::now();
    let sub = subscribe_packet(&filters);
    step(Step::Subscribe, limit, conn.send(&sub)).await?;
    let deadline = tokio::time::Instant::now() + limit;
    let suback = loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Err(_) => return Err(Failure::new(Step::Subscribe, FailureKind::Timeout(limit))),
            Ok(Err(e)) => return Err(recv_failure(Step::Subscribe, e)),
            Ok(Ok(Packet::SubAck(a))) if a.pkid == 1 => break a,
            Ok(Ok(_)) => continue,
        }
    };
    let topics: Vec<SubscriptionResult> = filters
        .iter()
        .enumerate()
        .map(|(i, f)| SubscriptionResult {
            topic: f.clone(),
            granted: match suback.return_codes.get(i) {
                Some(SubscribeReasonCode::Success(q)) => Some(*q as u8),
                _ => None,
            },
        })
        .collect();
    let refused = topics
        .iter()
        .find(|r| r.granted.is_none())
        .map(|r| r.topic.clone());
    emit(
        tx,
        Event::Subscribed {
            ms: ms(t.elapsed()),
            topics,
        },
    )
    .await;
    match refused {
        Some(topic) => Err(Failure::new(
            Step::Subscribe,
            FailureKind::SubscribeRefused(topic),
        )),
        None => Ok(()),
    }
}

/// Telemetry, acknowledgements and round trips, one message at a time.
async fn telemetry_loop(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
    conn: &mut Conn,
    keep_alive: u64,
) -> Result<(), Failure> {
    let kinds = round_trip_kinds(test);
    let mut next_pkid: u16 = 1;
    for message_id in 0..test.count {
        if message_id > 0 && !test.interval.is_zero() {
            // Long pauses: keep the session alive with PINGREQ (IoT Hub drops idle devices).
            let half = Duration::from_secs(keep_alive / 2);
            let mut left = test.interval;
            while left > half {
                tokio::time::sleep(half).await;
                left -= half;
                step(Step::Telemetry, test.timeout, conn.send(&Packet::PingReq)).await?;
            }
            tokio::time::sleep(left).await;
        }
        one_message(test, tx, s, conn, &kinds, message_id, &mut next_pkid).await?;
    }
    Ok(())
}

/// Publish one message (and a twin GET), then wait for its PUBACK and round trips.
async fn one_message(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    s: &mut State,
    conn: &mut Conn,
    kinds: &[RoundTripKind],
    message_id: u32,
    next_pkid: &mut u16,
) -> Result<(), Failure> {
    let limit = test.timeout;
    let qos = if test.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    let mut pending = seed_message(test.flavor, &test.identity.device_id, message_id);
    let mut publish = Publish::new(pending.topic.clone(), qos, pending.payload.clone());
    let mut ack_pending = None;
    if qos == QoS::AtLeastOnce {
        *next_pkid = if *next_pkid == u16::MAX {
            2
        } else {
            *next_pkid + 1
        };
        publish.pkid = *next_pkid;
        ack_pending = Some(*next_pkid);
    }
    pending.sent_at = Instant::now();
    step(Step::Telemetry, limit, conn.send(&Packet::Publish(publish))).await?;
    let mut outstanding: HashMap<RoundTripKind, Instant> =
        kinds.iter().map(|k| (*k, pending.sent_at)).collect();
    if test.flavor.dialect().has_twin() && test.twin {
        outstanding.insert(RoundTripKind::Twin, Instant::now());
        let get = Publish::new(
            azure::twin_get_topic(&message_id.to_string()),
            QoS::AtMostOnce,
            Vec::new(),
        );
        step(Step::Telemetry, limit, conn.send(&Packet::Publish(get))).await?;
    }
    s.sent += 1;
    s.rt_expected += kinds.len() as u32;
    if ack_pending.is_none() && test.per_message_events {
        emit(tx, pending.event(None)).await;
    }
    let deadline = tokio::time::Instant::now() + limit;
    while ack_pending.is_some() || !outstanding.is_empty() {
        let packet = match tokio::time::timeout_at(deadline, conn.recv()).await {
            Err(_) => break,
            Ok(Err(e)) => return Err(recv_failure(Step::Telemetry, e)),
            Ok(Ok(p)) => p,
        };
        match packet {
            Packet::PubAck(a) if Some(a.pkid) == ack_pending => {
                ack_pending = None;
                s.acked(tx, test, &pending).await;
            }
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    step(
                        Step::Telemetry,
                        limit,
                        conn.send(&Packet::PubAck(PubAck::new(p.pkid))),
                    )
                    .await?;
                }
                let Some((kind, mid, detail)) = classify_incoming(test, &p) else {
                    continue;
                };
                if mid == message_id {
                    // (a late answer to an earlier message was already counted lost)
                    s.round_trip(tx, test, &mut outstanding, message_id, kind, detail)
                        .await;
                }
            }
            _ => {}
        }
    }
    s.settle(tx, &pending, ack_pending.is_some(), outstanding)
        .await;
    Ok(())
}

/// Clean disconnect.
async fn disconnect(
    test: &ConnectionTest,
    tx: &mpsc::Sender<Event>,
    conn: &mut Conn,
) -> Result<(), Failure> {
    let t = Instant::now();
    step(Step::Disconnect, test.timeout, async {
        conn.send(&Packet::Disconnect).await?;
        conn.io.shutdown().await
    })
    .await?;
    let ms = ms(t.elapsed());
    emit(tx, Event::Disconnected { ms }).await;
    Ok(())
}

/// Which round trip an incoming PUBLISH answers: (kind, message id, detail).
fn classify_incoming(test: &ConnectionTest, p: &Publish) -> Option<(RoundTripKind, u32, String)> {
    let id = &test.identity.device_id;
    if let Ok(r) = azure::parse_twin_response(&p.topic) {
        let mid: u32 = r.rid.parse().ok()?;
        return Some((
            RoundTripKind::Twin,
            mid,
            format!(
                "status {}{}",
                r.status,
                r.version
                    .map(|v| format!(", $version {v}"))
                    .unwrap_or_default()
            ),
        ));
    }
    if let Ok((dev, _props)) = azure::parse_c2d_topic(&p.topic) {
        if &dev == id {
            return Some((
                RoundTripKind::C2d,
                message_id_of(&p.payload)?,
                format!("{} bytes", p.payload.len()),
            ));
        }
    }
    if round_trip_kinds(test).contains(&RoundTripKind::Echo)
        && test.flavor.dialect().is_own_telemetry(id, &p.topic)
    {
        return Some((
            RoundTripKind::Echo,
            message_id_of(&p.payload)?,
            format!("{} bytes", p.payload.len()),
        ));
    }
    None
}
