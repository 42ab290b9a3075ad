//! Issue 21, items 6, 7, 8 and 14: no client takes the hub down or locks others out. Each test
//! is an attack over real sockets on 127.0.0.x against an in-process hub, and reads the hub's
//! own counts (`HubHandle::load`) rather than timing or RSS (the figures are in
//! `cargo bench --bench bounds -- floods`).

use chainsmith_test_support::hub_util::{Client, Fixture, Identity, publish_acked, username};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chainsmith::azure::dps as wire;
use chainsmith::hub::server::{
    HubLoad, MAX_DPS_SESSIONS_PER_PEER, MAX_UNAUTHENTICATED_PER_PEER, TLS_HANDSHAKE_TIMEOUT,
};
use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, Publish};
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};

const ATTACKER: [u8; 4] = [127, 0, 0, 2];

fn fixture() -> Fixture {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    fx
}

async fn hub(fx: &Fixture, dps_session_lifetime: Option<Duration>) -> HubHandle {
    let mut config = HubConfig {
        port: 0,
        amqp_port: Some(0),
        websocket_port: Some(0),
        ..Default::default()
    };
    if let Some(l) = dps_session_lifetime {
        config.dps_session_lifetime = l;
    }
    Hub::start(fx.root(), config).await.unwrap()
}

/// A TCP connection to `to` from the address `from` (any port).
async fn tcp_from(from: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    s.connect(to).await.unwrap()
}

/// Wait until the hub's load satisfies `ok` (the hub accepts in the background).
async fn load_reaches(hub: &HubHandle, what: &str, ok: impl Fn(&HubLoad) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    while !ok(&hub.load()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: the hub's load stayed at {:?}",
            hub.load()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// True when the peer closes `s` within `wait` (EOF or reset).
async fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 64];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

/// The good device connects from 127.0.0.1 and gets a PUBACK.
async fn good_device_publishes(fx: &Fixture, hub: &HubHandle) {
    let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    let (mut c, ack) = Client::connect(hub.addr, cfg, "good", Some(&username("good")))
        .await
        .unwrap();
    let ack = ack.expect("the good device got no CONNACK");
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert!(publish_acked(&mut c, "devices/good/messages/events/", b"ok", 1).await);
}

/// An event matching `want` within 8 s.
async fn event(
    ev: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    what: &str,
    want: impl Fn(&HubEvent) -> bool,
) -> HubEvent {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
    loop {
        match tokio::time::timeout_at(deadline, ev.recv()).await {
            Ok(Ok(e)) if want(&e) => return e,
            Ok(Ok(_)) | Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
            _ => panic!("no event: {what}"),
        }
    }
}

fn dropped_reason(e: &HubEvent) -> Option<&str> {
    match e {
        HubEvent::Dropped { reason, .. } => Some(reason),
        _ => None,
    }
}

// ------------------------------------------------------------------------ item 6

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_holding_its_share_of_idle_sockets_locks_out_only_itself() {
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let mut ev = hub.events();
    let amqp = hub.amqp_addr.unwrap();
    // Idle TCP sockets on the AMQP port, no TLS even started: the whole share of 127.0.0.2.
    let mut held = Vec::new();
    for _ in 0..MAX_UNAUTHENTICATED_PER_PEER {
        held.push(tcp_from(ATTACKER, amqp).await);
    }
    load_reaches(&hub, "the attacker's idle sockets", |l| {
        l.unauthenticated == MAX_UNAUTHENTICATED_PER_PEER && l.unauthenticated_peers == 1
    })
    .await;
    // One more from the same peer, on another listener: closed at accept.
    let mut extra = tcp_from(ATTACKER, hub.addr).await;
    assert!(
        closed_within(&mut extra, Duration::from_secs(2)).await,
        "socket {} of one peer was kept",
        MAX_UNAUTHENTICATED_PER_PEER + 1
    );
    let e = event(&mut ev, "the per-peer refusal", |e| {
        dropped_reason(e).is_some_and(|r| r.contains("per-peer cap"))
    })
    .await;
    let reason = dropped_reason(&e).unwrap();
    assert!(reason.contains("127.0.0.2"), "{reason}");
    assert!(
        reason.contains(&MAX_UNAUTHENTICATED_PER_PEER.to_string()),
        "{reason}"
    );
    // Everyone else still gets in, while the attacker holds its sockets.
    good_device_publishes(&fx, &hub).await;
    assert_eq!(hub.load().unauthenticated, MAX_UNAUTHENTICATED_PER_PEER);
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_socket_is_closed_after_the_pre_tls_window() {
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let mut ev = hub.events();
    let mut idle = tcp_from(ATTACKER, hub.amqp_addr.unwrap()).await;
    let t = tokio::time::Instant::now();
    assert!(
        closed_within(&mut idle, TLS_HANDSHAKE_TIMEOUT + Duration::from_secs(2)).await,
        "an idle socket outlived the pre-TLS window of {TLS_HANDSHAKE_TIMEOUT:?}"
    );
    assert!(t.elapsed() >= TLS_HANDSHAKE_TIMEOUT - Duration::from_millis(100));
    event(&mut ev, "the pre-TLS window's drop", |e| {
        dropped_reason(e).is_some_and(|r| r.contains("pre-TLS window"))
    })
    .await;
    load_reaches(&hub, "the slot freed", |l| l.unauthenticated == 0).await;
}

/// A DPS CONNECT for `registration_id` from `from`: the CONNACK code, and the client.
async fn dps_connect(
    hub: &HubHandle,
    from: [u8; 4],
    tls: std::sync::Arc<rustls::ClientConfig>,
    scope: &str,
    registration_id: &str,
) -> (Option<ConnectReturnCode>, Client) {
    let tcp = tcp_from(from, hub.addr).await;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut c = Client::from_stream(stream);
    let mut connect = Connect::new(registration_id);
    connect.keep_alive = 60;
    connect.set_login(
        wire::username(scope, registration_id, wire::API_VERSION),
        "",
    );
    c.send(&Packet::Connect(connect)).await.unwrap();
    let code = match c.recv(Duration::from_secs(5)).await {
        Some(Packet::ConnAck(a)) => Some(a.code),
        _ => None,
    };
    (code, c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dps_sessions_are_budgeted_per_peer() {
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let scope = fx.store.dps_id_scope().unwrap();
    // DPS takes any certificate at CONNECT: the attacker's sessions are all the good device's.
    let tls = fx.tls(Some(&fx.identity(&["good", "line2"])));
    let mut held = Vec::new();
    for i in 0..MAX_DPS_SESSIONS_PER_PEER {
        let (code, c) = dps_connect(&hub, ATTACKER, tls.clone(), &scope, &format!("r-{i}")).await;
        assert_eq!(code, Some(ConnectReturnCode::Success), "DPS session {i}");
        held.push(c);
    }
    assert_eq!(hub.load().dps_sessions, MAX_DPS_SESSIONS_PER_PEER);
    let (code, _) = dps_connect(&hub, ATTACKER, tls.clone(), &scope, "r-extra").await;
    assert_eq!(
        code,
        Some(ConnectReturnCode::ServiceUnavailable),
        "DPS session {} of one peer",
        MAX_DPS_SESSIONS_PER_PEER + 1
    );
    // A second address fills the total; a third that holds nothing still gets in, and the
    // oldest session of a peer holding the most is shut down (two addresses used to lock all
    // provisioning out: hostile pass).
    for i in 0..MAX_DPS_SESSIONS_PER_PEER {
        let (code, c) =
            dps_connect(&hub, [127, 0, 0, 3], tls.clone(), &scope, &format!("s-{i}")).await;
        assert_eq!(
            code,
            Some(ConnectReturnCode::Success),
            "second peer's session {i}"
        );
        held.push(c);
    }
    load_reaches(&hub, "the total held", |l| {
        l.dps_sessions == 2 * MAX_DPS_SESSIONS_PER_PEER
    })
    .await;
    let (code, _c) = dps_connect(&hub, [127, 0, 0, 1], tls, &scope, "r-other").await;
    assert_eq!(
        code,
        Some(ConnectReturnCode::Success),
        "another peer's DPS session"
    );
    let mut closed = 0;
    for c in &mut held {
        if c.closed_within(Duration::from_millis(5)).await {
            closed += 1;
        }
    }
    assert!(
        (1..8).contains(&closed),
        "{closed} sessions shut down for one newcomer"
    );
    drop(held);
    load_reaches(&hub, "DPS slots freed", |l| l.dps_sessions <= 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dps_session_is_closed_at_its_lifetime() {
    let fx = fixture();
    let lifetime = Duration::from_millis(600);
    let hub = hub(&fx, Some(lifetime)).await;
    let mut ev = hub.events();
    let scope = fx.store.dps_id_scope().unwrap();
    let tls = fx.tls(Some(&fx.identity(&["good", "line2"])));
    let (code, mut c) = dps_connect(&hub, ATTACKER, tls, &scope, "idler").await;
    assert_eq!(code, Some(ConnectReturnCode::Success));
    // Keep-alive would allow 90 s; the session's lifetime ends it.
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let e = event(&mut ev, "the lifetime's close", |e| {
        matches!(e, HubEvent::DpsDisconnected { .. })
    })
    .await;
    let HubEvent::DpsDisconnected { reason, .. } = e else {
        unreachable!()
    };
    assert!(reason.contains("the hub's limit"), "{reason}");
    load_reaches(&hub, "DPS slot freed", |l| l.dps_sessions == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_says_what_its_open_files_limit_is() {
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let files = hub.status().open_files.expect("open files in the status");
    // Raised to the hard limit at start (as servers do).
    assert_eq!(files.soft, files.hard, "{files:?}");
    let line = HubEvent::OpenFiles {
        before: Some(1024),
        soft: Some(2048),
        hard: Some(2048),
    }
    .line();
    assert!(line.contains("raised from 1024 to 2048"), "{line}");
    assert!(line.contains("WARNING"), "{line}");
    assert!(line.contains("ulimit -Hn"), "{line}");
}

// ------------------------------------------------------------------------ item 7

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_links_past_the_cap_are_refused_and_released_on_close() {
    use chainsmith::hub::server::{MAX_LINKS_PER_CONNECTION, MAX_REFUSED_LINKS};
    use fe2o3_amqp::{Connection, Sender, Session};
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let tcp = TcpStream::connect(hub.amqp_addr.unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(fx.tls(Some(&fx.identity(&["good", "line2"]))))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut conn = Connection::builder()
        .container_id("flood")
        .hostname("localhost")
        .open_with_stream(tls)
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let address = "/devices/good/messages/events";
    let mut links = Vec::new();
    for i in 0..MAX_LINKS_PER_CONNECTION {
        let s = Sender::attach(&mut session, format!("t-{i}"), address)
            .await
            .unwrap_or_else(|e| panic!("link {i} of {MAX_LINKS_PER_CONNECTION}: {e}"));
        links.push(s);
    }
    assert_eq!(hub.load().amqp_links, MAX_LINKS_PER_CONNECTION);
    // Past the cap: detached with amqp:resource-limit-exceeded, and nothing more is held
    // (short of MAX_REFUSED_LINKS, which closes the connection).
    for i in 0..MAX_REFUSED_LINKS - 1 {
        let refused = match Sender::attach(&mut session, format!("over-{i}"), address).await {
            Err(e) => format!("{e:?}"),
            Ok(mut s) => format!(
                "{:?}",
                tokio::time::timeout(Duration::from_secs(3), s.on_detach()).await
            ),
        };
        assert!(
            refused.contains("ResourceLimitExceeded") || refused.contains("resource-limit"),
            "link {} over the cap: {refused}",
            i + 1
        );
    }
    assert_eq!(hub.load().amqp_links, MAX_LINKS_PER_CONNECTION);
    drop(links);
    let _ = session.end().await;
    let _ = conn.close().await;
    load_reaches(&hub, "links released on close", |l| l.amqp_links == 0).await;
}

// ------------------------------------------------------------------------ item 8

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_ping_flood_that_never_reads_is_closed() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::{Bytes, Message, client::IntoClientRequest};
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let mut ev = hub.events();
    // A small receive buffer, so the hub's pongs back up after a few KB, not megabytes.
    let s = TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    let tcp = s.connect(hub.websocket_addr.unwrap()).await.unwrap();
    // No client certificate: the flood needs no identity.
    let tls = tokio_rustls::TlsConnector::from(fx.tls(None))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut req = "wss://localhost/$iothub/websocket"
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "mqtt".parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    let started = tokio::time::Instant::now();
    let ping = Bytes::from(vec![7u8; 125]);
    let mut sent = 0usize;
    // Pings, never reading a pong, until the hub closes (bounded: 4 M pings is 0.5 GB).
    let closed = loop {
        if sent >= 4_000_000 || started.elapsed() > Duration::from_secs(8) {
            break false;
        }
        if ws.feed(Message::Ping(ping.clone())).await.is_err() {
            break true;
        }
        sent += 1;
        if sent % 256 == 0 && ws.flush().await.is_err() {
            break true;
        }
    };
    assert!(closed, "{sent} pings and the connection is still open");
    let e = event(&mut ev, "the flood's drop", |e| {
        dropped_reason(e).is_some_and(|r| r.contains("ping flood"))
    })
    .await;
    assert!(dropped_reason(&e).unwrap().contains("pongs"));
    load_reaches(&hub, "the slot freed", |l| l.unauthenticated == 0).await;
}

// ------------------------------------------------------------------------ item 14

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_wildcard_topic_closes_the_connection_unacknowledged() {
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let mut ev = hub.events();
    let id: Identity = fx.identity(&["good", "line2"]);
    for topic in [
        "devices/good/messages/events/+",
        "devices/good/messages/events/#",
        "devices/good/messages/events/a=%23&b=+",
        "$iothub/twin/GET/?$rid=#",
        "devices/good/messages/events/\u{0}",
    ] {
        let (mut c, ack) =
            Client::connect(hub.addr, fx.tls(Some(&id)), "good", Some(&username("good")))
                .await
                .unwrap();
        assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);
        let mut p = Publish::new(topic, QoS::AtLeastOnce, b"x".to_vec());
        p.pkid = 9;
        c.send(&Packet::Publish(p)).await.unwrap();
        match c.recv(Duration::from_secs(3)).await {
            None => {}
            Some(other) => panic!("{topic}: the hub answered {other:?} instead of closing"),
        }
        let e = event(&mut ev, "the violation's disconnect", |e| {
            matches!(e, HubEvent::Disconnected { .. })
        })
        .await;
        let HubEvent::Disconnected { reason, .. } = e else {
            unreachable!()
        };
        assert!(
            reason.contains("§3.3.2.1") || reason.contains("§1.5.3"),
            "{topic}: {reason}"
        );
    }
    // A %-encoded wildcard is not one: the device still publishes.
    good_device_publishes(&fx, &hub).await;
}

/// A telemetry body, topic and property bag reach the hub's event queue (log, monitor, TUI)
/// cut to `MAX_EVENT_TEXT`, `size` keeping the real length: with whole 256 KB bodies queued
/// for a paused monitor, one device grew the hub by ~200 KB a message (hostile pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_at_most_a_cut_of_what_a_device_sends() {
    use chainsmith::hub::server::MAX_EVENT_TEXT;
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let mut events = hub.events();
    let id = fx.identity(&["good", "line2"]);
    let (mut c, ack) =
        Client::connect(hub.addr, fx.tls(Some(&id)), "good", Some(&username("good")))
            .await
            .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);
    let big = "x".repeat(200 * 1024);
    let topic = format!("devices/good/messages/events/k={}", "v".repeat(8000));
    assert!(publish_acked(&mut c, &topic, big.as_bytes(), 1).await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let e = tokio::time::timeout_at(deadline, events.recv())
            .await
            .expect("a telemetry event")
            .unwrap();
        if let HubEvent::Telemetry {
            payload,
            size,
            topic,
            properties,
            ..
        } = e
        {
            assert_eq!(size, big.len());
            assert!(payload.len() <= MAX_EVENT_TEXT + 3 && payload.ends_with('…'));
            assert!(topic.len() <= MAX_EVENT_TEXT + 3, "{}", topic.len());
            let bag: usize = properties.0.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(bag <= MAX_EVENT_TEXT + 6, "{bag}");
            break;
        }
    }
    hub.shutdown().await;
}

/// A connection that keeps attaching links the hub refuses (here: no client certificate) is
/// closed after `MAX_REFUSED_LINKS`: 80,000 refused attaches grew the hub by ~66 MB, kept
/// after close (hostile pass).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_keeps_attaching_refused_links_is_closed() {
    use chainsmith::hub::server::MAX_REFUSED_LINKS;
    use fe2o3_amqp::{Connection, Sender, Session};
    let fx = fixture();
    let hub = hub(&fx, None).await;
    let tcp = TcpStream::connect(hub.amqp_addr.unwrap()).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(fx.tls(None))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut conn = Connection::builder()
        .container_id("refused")
        .hostname("localhost")
        .open_with_stream(tls)
        .await
        .unwrap();
    let mut session = Session::begin(&mut conn).await.unwrap();
    let mut attempts = 0;
    for i in 0..MAX_REFUSED_LINKS * 4 {
        attempts = i + 1;
        let attach = tokio::time::timeout(
            Duration::from_secs(3),
            Sender::attach(
                &mut session,
                format!("r-{i}"),
                "/devices/good/messages/events",
            ),
        )
        .await;
        match attach {
            Ok(Ok(mut s)) => {
                let _ = tokio::time::timeout(Duration::from_secs(3), s.on_detach()).await;
            }
            // A refused link; a stopped session or connection is the hub closing it.
            Ok(Err(e)) if !format!("{e:?}").contains("Stopped") => {}
            // The session or connection is gone: closed by the hub.
            _ => break,
        }
    }
    assert!(
        attempts <= MAX_REFUSED_LINKS + 2,
        "still attaching after {attempts} refused links"
    );
    load_reaches(&hub, "nothing held after close", |l| l.amqp_links == 0).await;
}
