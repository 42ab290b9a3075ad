//! One device connection: the CONNECT (within [`CONNECT_TIMEOUT`] and [`MAX_CONNECT_BYTES`]),
//! AWS's rules asked at CONNECT, SUBSCRIBE and PUBLISH, then packets both ways until one side
//! closes. Each refusal is answered as AWS IoT Core answers it ("MQTT" in the developer guide,
//! <https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html>): on MQTT 3.1.1 the
//! connection is closed; on MQTT 5 with the reason code AWS lists.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Core;
use super::events::BrokerEvent;
use super::fleet;
use super::limits::*;
use super::router::Delivery;
use super::wire::{self, Granted, Incoming, PublishFlags, Reason, Version};
use crate::rules::{Action, Admitted};
use chainsmith_server::listener::Accepted;

/// A CONNECT must arrive this long after the TCP accept, or the connection is closed (AWS
/// documents no figure; the local IoT Hub uses the same 10 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a session ends when another connection with its client id takes over (AWS IoT Core
/// allows one connection per client id and disconnects the older one: "MQTT" in the
/// developer guide). The control channel's `watch` names it `taken-over`.
pub const TAKEN_OVER: &str = "another connection with the same client id took over";

type Tls = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;

/// Serve one accepted TLS connection to its end.
pub async fn serve(core: Arc<Core>, conn: Accepted) {
    let Accepted {
        mut tls,
        chain,
        peer,
        unauthenticated,
        start,
    } = conn;
    let mut buf = BytesMut::with_capacity(4096);
    let Some(connect) = read_connect(&core, &mut tls, &mut buf, peer, start).await else {
        return;
    };
    let Some(who) = admit(&core, &mut tls, &connect, &chain, peer).await else {
        return;
    };
    let session_slot = match core.sessions.charge(peer.ip()) {
        Ok(slot) => slot,
        Err(full) => {
            let why = core.sessions.refusal(full, peer.ip());
            refuse(
                &core,
                &mut tls,
                &connect,
                peer,
                Reason::ServerBusy,
                ("server-busy".into(), why.to_string()),
            )
            .await;
            return;
        }
    };
    drop(unauthenticated);
    let number = core.next_conn();
    let registration = core.router.register(number, who.clone());
    let mut out = BytesMut::with_capacity(4096);
    wire::connack_ok(connect.version, &mut out);
    let _ = core.events.send(BrokerEvent::Connected {
        client_id: who.client_id.clone(),
        peer,
        version: connect.version,
        username: connect.username.clone(),
    });
    let mut session = Session {
        core: core.clone(),
        who,
        version: connect.version,
        conn: number,
        next_pkid: 0,
        inflight: VecDeque::new(),
        rate: RateWindow::new(),
        max_packet: connect.max_packet_size.map(|m| m as usize),
    };
    let keep_alive = match connect.keep_alive {
        0 => MAX_KEEP_ALIVE_SECS,
        k => k.min(MAX_KEEP_ALIVE_SECS),
    };
    let reason = session
        .run(&mut tls, buf, out, keep_alive, registration)
        .await;
    let _ = tls.shutdown().await;
    core.router.release(&session.who.client_id, number);
    drop(session_slot);
    let _ = core.events.send(BrokerEvent::Disconnected {
        client_id: session.who.client_id.clone(),
        reason,
    });
}

async fn read_connect(
    core: &Core,
    tls: &mut Tls,
    buf: &mut BytesMut,
    peer: SocketAddr,
    start: tokio::time::Instant,
) -> Option<wire::Connect> {
    let deadline = start + CONNECT_TIMEOUT;
    let mut stop = core.gate.shutdown.clone();
    let dropped = |reason: String| {
        let _ = core.events.send(BrokerEvent::Dropped { peer, reason });
        None
    };
    loop {
        match wire::read_connect(buf) {
            Ok(Some(c)) => return Some(c),
            Ok(None) => {}
            Err(e) => return dropped(format!("{e}; closed")),
        }
        let r = tokio::select! {
            r = tokio::time::timeout_at(deadline, tls.read_buf(buf)) => r,
            _ = stop.changed() => return None,
        };
        match r {
            Ok(Ok(0)) => return dropped("closed before CONNECT".into()),
            Ok(Err(e)) => return dropped(format!("read failed before CONNECT: {e}")),
            Ok(Ok(_)) => {}
            Err(_) => {
                return dropped(format!(
                    "no CONNECT within {} s of connecting; closed",
                    CONNECT_TIMEOUT.as_secs()
                ));
            }
        }
    }
}

/// The client id within AWS's limits, then AWS's rules ([`crate::rules::Rules::admit`]).
async fn admit(
    core: &Core,
    tls: &mut Tls,
    connect: &wire::Connect,
    chain: &[Vec<u8>],
    peer: SocketAddr,
) -> Option<Admitted> {
    let id = &connect.client_id;
    if id.is_empty() || id.len() > MAX_CLIENT_ID_BYTES {
        let why = if id.is_empty() {
            "an empty client id; AWS IoT Core needs one (it assigns none)".to_string()
        } else {
            format!(
                "a client id of {} bytes; AWS IoT Core allows at most {MAX_CLIENT_ID_BYTES}",
                id.len()
            )
        };
        let why = ("client-id-not-valid".into(), why);
        refuse(core, tls, connect, peer, Reason::ClientIdNotValid, why).await;
        return None;
    }
    match core.rules.admit(chain, id) {
        Ok(who) => Some(who),
        Err(refused) => {
            refuse(
                core,
                tls,
                connect,
                peer,
                Reason::NotAuthorized,
                (refused.kind(), refused.to_string()),
            )
            .await;
            None
        }
    }
}

/// Refuse a CONNECT: AWS IoT Core closes an MQTT 3.1.1 connection without a CONNACK, and
/// answers MQTT 5 with a CONNACK carrying the reason code (0x87 not authorized, 0x85 client
/// identifier not valid, 0x89 server busy), then closes.
async fn refuse(
    core: &Core,
    tls: &mut Tls,
    connect: &wire::Connect,
    peer: SocketAddr,
    reason: Reason,
    (kind, why): (String, String),
) {
    let _ = core.events.send(BrokerEvent::Refused {
        peer,
        client_id: Some(connect.client_id.clone()),
        kind,
        reason: why,
    });
    if connect.version == Version::V5 {
        let mut out = BytesMut::new();
        wire::connack_refused_v5(reason, &mut out);
        let _ = tls.write_all(&out).await;
        let _ = tls.flush().await;
    }
    let _ = tls.shutdown().await;
}

/// An admitted connection.
struct Session {
    core: Arc<Core>,
    who: Admitted,
    version: Version,
    conn: u64,
    next_pkid: u16,
    /// QoS 1 messages sent and not yet acknowledged, oldest (earliest due) first.
    inflight: VecDeque<InFlight>,
    rate: RateWindow,
    /// MQTT 5: the largest packet the device takes; larger messages are not sent to it.
    max_packet: Option<usize>,
}

/// A QoS 1 message to the device waiting for its PUBACK.
struct InFlight {
    pkid: u16,
    delivery: Delivery,
    /// When it is sent again (MQTT 3.1.1).
    due: tokio::time::Instant,
    /// How many times it was sent.
    sends: u32,
}

/// Publishes counted in the current one-second window (which opens at the first publish
/// after the last one closed), for AWS's per-connection rate quota.
struct RateWindow {
    start: Option<tokio::time::Instant>,
    count: u32,
}

impl RateWindow {
    fn new() -> RateWindow {
        RateWindow {
            start: None,
            count: 0,
        }
    }

    /// Count one publish: false when it is over [`MAX_PUBLISHES_PER_SECOND`] in this second.
    fn admit(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        if self
            .start
            .is_none_or(|s| now.duration_since(s) >= Duration::from_secs(1))
        {
            self.start = Some(now);
            self.count = 0;
        }
        self.count += 1;
        self.count <= MAX_PUBLISHES_PER_SECOND
    }
}

/// Why a session ends because of what the device sent: the log's words and, on MQTT 5, the
/// DISCONNECT's reason code.
struct End(Reason, String);

impl Session {
    async fn run(
        &mut self,
        tls: &mut Tls,
        mut buf: BytesMut,
        mut out: BytesMut,
        keep_alive: u16,
        mut reg: super::router::Registration,
    ) -> String {
        let idle = Duration::from_millis(u64::from(keep_alive) * 1500);
        let mut stop = self.core.gate.shutdown.clone();
        // What the device wrote right behind its CONNECT came in with it: MQTT lets a client
        // send on before the CONNACK (3.1.1 section 3.2), so it is served before reading more.
        if let Err(End(reason, why)) = self.drain(&mut buf, &mut out) {
            wire::disconnect(self.version, reason, &why, &mut out);
            let _ = tls.write_all(&out).await;
            let _ = tls.flush().await;
            return why;
        }
        let mut recheck = tokio::time::interval(ADMISSION_RECHECK);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.tick().await;
        loop {
            if !out.is_empty() {
                if tls.write_all(&out).await.is_err() || tls.flush().await.is_err() {
                    return "write failed (client gone)".into();
                }
                out.clear();
            }
            // MQTT 3.1.1 only: MQTT 5 forbids resending within a connection (§4.4).
            let retry_due = match (self.version, self.inflight.front()) {
                (Version::V311, Some(f)) => Some(f.due),
                _ => None,
            };
            let window_open = self.inflight.len() < MAX_INFLIGHT_TO_DEVICE;
            let end = tokio::select! {
                r = tokio::time::timeout(idle, tls.read_buf(&mut buf)) => match r {
                    Err(_) => End(
                        Reason::KeepAliveTimeout,
                        format!("no packet within 1.5 × keep-alive ({keep_alive} s)"),
                    ),
                    Ok(Err(e)) => return format!("read failed: {e}"),
                    Ok(Ok(0)) => return "connection closed by the device".into(),
                    Ok(Ok(_)) => match self.drain(&mut buf, &mut out) {
                        Ok(()) => continue,
                        Err(end) => end,
                    },
                },
                d = reg.outbox.recv(), if window_open => {
                    if let Some(d) = d {
                        self.deliver(d, &mut out);
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(retry_due.unwrap_or_else(tokio::time::Instant::now)),
                    if retry_due.is_some() => {
                    self.resend_due(&mut out);
                    continue;
                }
                _ = recheck.tick() => {
                    if self.core.rules.still_admitted(&self.who) {
                        continue;
                    }
                    End(
                        Reason::NotAuthorized,
                        "the certificate or its CA is no longer ACTIVE".into(),
                    )
                }
                _ = &mut reg.taken_over => End(
                    Reason::SessionTakenOver,
                    TAKEN_OVER.into(),
                ),
                _ = stop.changed() => End(Reason::ServerShuttingDown, "the broker stops".into()),
            };
            let End(reason, why) = end;
            wire::disconnect(self.version, reason, &why, &mut out);
            let _ = tls.write_all(&out).await;
            let _ = tls.flush().await;
            return why;
        }
    }

    /// A packet id no message in flight holds (the window is far smaller than 65535).
    fn free_pkid(&mut self) -> u16 {
        loop {
            self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
            if !self.inflight.iter().any(|f| f.pkid == self.next_pkid) {
                return self.next_pkid;
            }
        }
    }

    /// Send a message; a QoS 1 one is held in flight until its PUBACK.
    fn deliver(&mut self, d: Delivery, out: &mut BytesMut) {
        let pkid = if d.qos > 0 { self.free_pkid() } else { 0 };
        let flags = PublishFlags {
            qos: d.qos,
            pkid,
            retain: d.retain,
            dup: false,
        };
        let before = out.len();
        wire::publish(self.version, &d.topic, &d.payload, flags, out);
        let size = out.len() - before;
        if let Some(max) = self.max_packet.filter(|m| size > *m) {
            out.truncate(before);
            let _ = self.core.events.send(BrokerEvent::TooLargeForDevice {
                client_id: self.who.client_id.clone(),
                topic: d.topic,
                size,
                max,
            });
            return;
        }
        if d.qos > 0 {
            self.inflight.push_back(InFlight {
                pkid,
                delivery: d,
                due: tokio::time::Instant::now() + QOS1_RETRY_INTERVAL,
                sends: 1,
            });
        }
    }

    /// Send again, with DUP, each message whose PUBACK is overdue; give up on one sent
    /// [`MAX_QOS1_SENDS`] times.
    fn resend_due(&mut self, out: &mut BytesMut) {
        let now = tokio::time::Instant::now();
        while self.inflight.front().is_some_and(|f| f.due <= now) {
            let Some(mut f) = self.inflight.pop_front() else {
                break;
            };
            if f.sends >= MAX_QOS1_SENDS {
                let _ = self.core.events.send(BrokerEvent::Undelivered {
                    client_id: self.who.client_id.clone(),
                    topic: f.delivery.topic.clone(),
                    sends: f.sends,
                });
                continue;
            }
            let flags = PublishFlags {
                qos: 1,
                pkid: f.pkid,
                retain: f.delivery.retain,
                dup: true,
            };
            wire::publish(
                self.version,
                &f.delivery.topic,
                &f.delivery.payload,
                flags,
                out,
            );
            f.sends += 1;
            f.due = now + QOS1_RETRY_INTERVAL;
            self.inflight.push_back(f);
        }
    }

    fn drain(&mut self, buf: &mut BytesMut, out: &mut BytesMut) -> Result<(), End> {
        loop {
            let p = match wire::read(self.version, buf) {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(()),
                Err(wire::WireError::TooLarge(n)) => {
                    return Err(End(
                        Reason::PacketTooLarge,
                        format!(
                            "a packet of {n} bytes; AWS IoT Core's message limit is {} KB",
                            MAX_PAYLOAD_BYTES / 1024
                        ),
                    ));
                }
                Err(e) => return Err(End(Reason::MalformedPacket, e.to_string())),
            };
            match p {
                Incoming::Publish(p) => self.publish(p, out)?,
                Incoming::PubAck(pkid) => self.inflight.retain(|f| f.pkid != pkid),
                Incoming::Subscribe(pkid, filters) => self.subscribe(pkid, filters, out)?,
                Incoming::Unsubscribe(pkid, filters) => {
                    self.core
                        .router
                        .unsubscribe(&self.who.client_id, self.conn, &filters);
                    wire::unsuback(self.version, pkid, filters.len(), out);
                }
                Incoming::PingReq => wire::pingresp(self.version, out),
                Incoming::Disconnect => {
                    return Err(End(Reason::ProtocolError, "device sent DISCONNECT".into()));
                }
                Incoming::Unexpected(name) => {
                    return Err(End(
                        Reason::ProtocolError,
                        format!("unexpected {name} from a device; closed"),
                    ));
                }
            }
        }
    }

    fn denied(&self, action: Action, resource: &str) {
        let _ = self.core.events.send(BrokerEvent::Denied {
            client_id: self.who.client_id.clone(),
            action,
            resource: resource.to_string(),
        });
    }

    /// A PUBLISH: QoS 2 ends the connection (AWS IoT Core supports QoS 0 and 1 only, and
    /// disconnects a client publishing at QoS 2); a topic over AWS's limits or a publish the
    /// policy denies ends an MQTT 3.1.1 connection and gets a PUBACK with 0x90 / 0x87 on MQTT 5
    /// (QoS 0: dropped), the connection staying up. Past AWS's publishes per second per
    /// connection the message is discarded as AWS throttles ([`MAX_PUBLISHES_PER_SECOND`]).
    fn publish(&mut self, p: wire::Publish, out: &mut BytesMut) -> Result<(), End> {
        if p.qos == 2 {
            return Err(End(
                Reason::QosNotSupported,
                "a QoS 2 PUBLISH; AWS IoT Core supports QoS 0 and 1 only".into(),
            ));
        }
        if p.topic.is_empty() && self.version == Version::V5 {
            return Err(End(
                Reason::TopicAliasInvalid,
                "a PUBLISH with a topic alias; the broker offers none (CONNACK topic alias maximum 0)"
                    .into(),
            ));
        }
        if p.payload.len() > MAX_PAYLOAD_BYTES {
            return Err(End(
                Reason::PacketTooLarge,
                format!(
                    "a payload of {} bytes; AWS IoT Core allows at most {} KB",
                    p.payload.len(),
                    MAX_PAYLOAD_BYTES / 1024
                ),
            ));
        }
        if !self.rate.admit() {
            let _ = self.core.events.send(BrokerEvent::Throttled {
                client_id: self.who.client_id.clone(),
                topic: p.topic.clone(),
            });
            if p.qos == 1 && self.version == Version::V5 {
                wire::puback(self.version, p.pkid, Some(Reason::QuotaExceeded), out);
            }
            return Ok(());
        }
        let refused = if let Err(e) = check_topic_name(&p.topic) {
            Some((Reason::TopicNameInvalid, format!("PUBLISH refused: {e}")))
        } else if service_only_topic(&p.topic) {
            // Whatever the policies say: AWS's reserved topics list these as Subscribe only.
            self.denied(Action::Publish, &p.topic);
            Some((
                Reason::NotAuthorized,
                "PUBLISH refused: only AWS's services publish on this reserved topic".to_string(),
            ))
        } else if !self.core.rules.allows(&self.who, Action::Publish, &p.topic) {
            self.denied(Action::Publish, &p.topic);
            Some((
                Reason::NotAuthorized,
                "PUBLISH refused: no attached policy allows iot:Publish on this topic".to_string(),
            ))
        } else {
            None
        };
        if let Some((reason, why)) = refused {
            if self.version == Version::V311 {
                return Err(End(reason, why));
            }
            if p.qos == 1 {
                wire::puback(self.version, p.pkid, Some(reason), out);
            }
            return Ok(());
        }
        let _ = self.core.events.send(BrokerEvent::Published {
            client_id: self.who.client_id.clone(),
            topic: p.topic.clone(),
            payload: p.payload.clone(),
        });
        if p.qos == 1 {
            wire::puback(self.version, p.pkid, None, out);
        }
        if let Some(request) = fleet::request_of(&p.topic)
            && self.core.rules.fleet().is_some()
        {
            self.answer_fleet(&request, &p);
            return Ok(());
        }
        let _ = self.core.deliver(&p.topic, &p.payload, p.qos, p.retain);
        Ok(())
    }

    /// A provisioning request, answered to this connection alone; it goes to no other
    /// subscriber (its answer holds a private key or a token).
    fn answer_fleet(&self, request: &crate::rules::FleetRequest, p: &wire::Publish) {
        let Some(service) = self.core.rules.fleet() else {
            return;
        };
        // A request makes a key, signs a certificate and rewrites the registry: seconds of
        // blocking work under a flood of claim devices. On a multi-threaded runtime (the
        // server's) the worker thread hands its other tasks on first, so handshakes and the
        // other devices are not held up behind it (a flood of CreateKeysAndCertificate within
        // AWS's per-connection rate had new devices' TLS handshakes time out).
        let handle = || fleet::body(&p.payload).and_then(|b| service.handle(request, &b));
        let answer = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(handle),
            _ => handle(),
        };
        let outcome = match &answer {
            Ok(_) => "accepted".to_string(),
            Err(r) => format!(
                "rejected {} {}: {}",
                r.status_code, r.error_code, r.error_message
            ),
        };
        let _ = self.core.events.send(BrokerEvent::Provisioning {
            client_id: self.who.client_id.clone(),
            topic: p.topic.clone(),
            outcome,
        });
        let (topic, payload) = fleet::reply(&p.topic, answer);
        self.core
            .router
            .reply(&self.who.client_id, self.conn, &topic, payload.into());
    }

    /// A SUBSCRIBE: more than [`MAX_FILTERS_PER_SUBSCRIBE`] filters is refused as a whole;
    /// each filter over AWS's limits or past [`MAX_SUBSCRIPTIONS_PER_CONNECTION`] gets a
    /// failure code; one the policy denies ends an MQTT 3.1.1 connection and gets 0x87 on
    /// MQTT 5. QoS 2 is granted as 1.
    fn subscribe(
        &mut self,
        pkid: u16,
        filters: Vec<(String, u8)>,
        out: &mut BytesMut,
    ) -> Result<(), End> {
        let router = &self.core.router;
        if filters.len() > MAX_FILTERS_PER_SUBSCRIBE {
            let refused = vec![Granted::Refused(Reason::QuotaExceeded); filters.len()];
            wire::suback(self.version, pkid, &refused, out);
            return Ok(());
        }
        let mut granted = Vec::with_capacity(filters.len());
        let mut accepted = Vec::new();
        for (filter, qos) in filters {
            if check_topic_filter(&filter).is_err() {
                granted.push(Granted::Refused(Reason::TopicFilterInvalid));
                continue;
            }
            if !self
                .core
                .rules
                .allows(&self.who, Action::Subscribe, &filter)
            {
                self.denied(Action::Subscribe, &filter);
                if self.version == Version::V311 {
                    return Err(End(
                        Reason::NotAuthorized,
                        "SUBSCRIBE refused: no attached policy allows iot:Subscribe on this topic filter"
                            .into(),
                    ));
                }
                granted.push(Granted::Refused(Reason::NotAuthorized));
                continue;
            }
            // A filter held already is replaced, not counted again.
            let (already, held) = router.subscriptions(&self.who.client_id, self.conn, &filter);
            if !already && held + accepted.len() >= MAX_SUBSCRIPTIONS_PER_CONNECTION {
                granted.push(Granted::Refused(Reason::QuotaExceeded));
                continue;
            }
            let qos = qos.min(1);
            granted.push(Granted::Qos(qos));
            accepted.push((filter, qos));
        }
        wire::suback(self.version, pkid, &granted, out);
        // Retained messages follow the SUBACK.
        for (filter, qos) in accepted {
            router.subscribe(&self.who.client_id, self.conn, &filter, qos);
        }
        Ok(())
    }
}
