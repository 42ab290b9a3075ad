//! Bad peers on the AMQP and WebSocket listeners never stop the hub serving a good device:
//! garbage and truncated AMQP frames, a SASL exchange that never finishes, oversized frames,
//! a WebSocket upgrade without a subprotocol (refused with the reason) and an oversized
//! WebSocket frame. The good device runs the whole connection test over AMQP, AMQP over
//! WebSockets and MQTT over WebSockets while the bad connections are held open.

use chainsmith_test_support::hub_util;

use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::mqtt::local::{HubSource, prepare};
use chainsmith::mqtt::{Flavor, Identity, Transport};
use chainsmith::ops::ValidityArg;
use hub_util::{Client, Fixture};

async fn good_device_passes(fx: &Fixture, hub: &HubHandle, transport: Transport) {
    let identity = Identity::from_workspace(&fx.ws, "good").unwrap();
    let mut test = prepare(
        &fx.ws,
        identity,
        Flavor::Azure,
        HubSource::InProcess(hub),
        transport,
    )
    .await
    .unwrap()
    .test;
    test.count = 3;
    test.timeout = Duration::from_secs(5);
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let drain = tokio::spawn(async move { while rx.recv().await.is_some() {} });
    let summary = chainsmith::mqtt::run(test, tx).await;
    drain.await.unwrap();
    assert!(summary.ok, "{transport:?}: {summary:?}");
    assert_eq!(
        (summary.acked, summary.round_trips_seen),
        (3, 6),
        "{transport:?}"
    );
}

fn dropped_with(events: &[HubEvent], needle: &str) -> bool {
    events
        .iter()
        .any(|e| matches!(e, HubEvent::Dropped { reason, .. } if reason.contains(needle)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_amqp_and_websocket_peers_never_stop_a_good_device() {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            echo: true,
            amqp_port: Some(0),
            websocket_port: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (amqp, ws) = (hub.amqp_addr.unwrap(), hub.websocket_addr.unwrap());
    let mut ev = hub.events();
    let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    let mut held = Vec::new();

    // Garbage where the AMQP header belongs: closed with the reason.
    let mut c = Client::tls(amqp, cfg.clone()).await.unwrap();
    c.send_raw(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    // A header, then a truncated frame (size 256, 6 bytes of it), held open.
    let mut c = Client::tls(amqp, cfg.clone()).await.unwrap();
    c.send_raw(b"AMQP\x00\x01\x00\x00\x00\x00\x01\x00\x02\x00")
        .await
        .unwrap();
    held.push(c);
    // A SASL header and then silence: the exchange never finishes.
    let mut c = Client::tls(amqp, cfg.clone()).await.unwrap();
    c.send_raw(b"AMQP\x03\x01\x00\x00").await.unwrap();
    held.push(c);
    // An oversized frame: 2 GiB announced, far above the hub's 64 KiB maximum.
    let mut oversized = Client::tls(amqp, cfg.clone()).await.unwrap();
    oversized
        .send_raw(b"AMQP\x00\x01\x00\x00\x7f\xff\xff\xff\x02\x00\x00\x00")
        .await
        .unwrap();
    // An AMQP open and then no link: closed after 10 s, like an MQTT client without CONNECT.
    let mut c = Client::tls(amqp, cfg.clone()).await.unwrap();
    c.send_raw(b"AMQP\x00\x01\x00\x00").await.unwrap();
    let open = open_frame();
    c.send_raw(&open).await.unwrap();
    held.push(c);
    // Random bytes after a valid header.
    let mut c = Client::tls(amqp, cfg.clone()).await.unwrap();
    let junk: Vec<u8> = (0..4000u32).map(|i| (i * 31 + 7) as u8).collect();
    c.send_raw(b"AMQP\x00\x01\x00\x00").await.unwrap();
    c.send_raw(&junk).await.unwrap();
    held.push(c);

    // A WebSocket upgrade without a subprotocol: 400 and the reason in the log.
    let mut c = Client::tls(ws, cfg.clone()).await.unwrap();
    c.send_raw(
        b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = [0u8; 512];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut c.stream, &mut answer),
    )
    .await
    .unwrap()
    .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    // An upgrade with the subprotocol, then one frame announcing 1 GiB.
    let mut c = Client::tls(ws, cfg.clone()).await.unwrap();
    c.send_raw(
        b"GET /$iothub/websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = [0u8; 512];
    let n = tokio::io::AsyncReadExt::read(&mut c.stream, &mut answer)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&answer[..n]).contains("101"),
        "upgraded"
    );
    // FIN + binary, masked, 64-bit length 2^30, mask key, a few bytes.
    c.send_raw(&[0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0, 1, 2, 3, 4, 9, 9])
        .await
        .unwrap();
    let mut ws_oversized = c;

    // Throughout: the good device over every transport.
    for t in [
        Transport::Amqp,
        Transport::AmqpWs,
        Transport::MqttWs,
        Transport::Mqtt,
    ] {
        good_device_passes(&fx, &hub, t).await;
    }
    assert!(
        oversized.closed_within(Duration::from_secs(5)).await,
        "oversized AMQP frame"
    );
    assert!(
        ws_oversized.closed_within(Duration::from_secs(5)).await,
        "oversized WebSocket frame"
    );

    // The SASL that never finished and the truncated frame are closed by the 10 s limit.
    for c in held.iter_mut() {
        assert!(
            c.closed_within(Duration::from_secs(12)).await,
            "held connection closed"
        );
    }
    let mut events = Vec::new();
    while let Ok(e) = ev.try_recv() {
        events.push(e);
    }
    assert!(
        dropped_with(&events, "not an AMQP 1.0 protocol header"),
        "{events:#?}"
    );
    assert!(
        dropped_with(&events, "without a subprotocol"),
        "{events:#?}"
    );
    assert!(dropped_with(&events, "within 10 s"), "{events:#?}");
    assert!(
        dropped_with(&events, "no device link attached"),
        "{events:#?}"
    );
    hub.shutdown().await;
}

/// An AMQP Open frame (container id "x"), encoded by hand: size, doff 2, type 0, channel 0,
/// described list 0x10 with one string field.
fn open_frame() -> Vec<u8> {
    let body = [0x00, 0x53, 0x10, 0xc0, 0x04, 0x01, 0xa1, 0x01, b'x'];
    let size = (8 + body.len()) as u32;
    let mut f = size.to_be_bytes().to_vec();
    f.extend_from_slice(&[2, 0, 0, 0]);
    f.extend_from_slice(&body);
    f
}

/// One connection per device across transports: AMQP takes over an MQTT connection of the
/// same device, and MQTT takes over an AMQP one, as IoT Hub does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_connection_takes_over_across_transports() {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default());
    fx.register("good", Auth::Ca, None);
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            echo: true,
            amqp_port: Some(0),
            websocket_port: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut ev = hub.events();
    let cfg = fx.tls(Some(&fx.identity(&["good", "line2"])));
    // MQTT first, then a whole AMQP test: the MQTT connection is closed.
    let (mut mqtt, ack) = Client::connect(
        hub.addr,
        cfg.clone(),
        "good",
        Some(&hub_util::username("good")),
    )
    .await
    .unwrap();
    assert!(ack.is_some());
    good_device_passes(&fx, &hub, Transport::Amqp).await;
    assert!(
        mqtt.closed_within(Duration::from_secs(5)).await,
        "MQTT taken over by AMQP"
    );

    // AMQP running (a slow test), then MQTT connects: the AMQP test loses its connection.
    let identity = Identity::from_workspace(&fx.ws, "good").unwrap();
    let mut test = prepare(
        &fx.ws,
        identity,
        Flavor::Azure,
        HubSource::InProcess(&hub),
        Transport::AmqpWs,
    )
    .await
    .unwrap()
    .test;
    test.count = 50;
    test.interval = Duration::from_millis(100);
    test.timeout = Duration::from_secs(3);
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let running = tokio::spawn(chainsmith::mqtt::run(test, tx));
    // MQTT connects once the AMQP test has published (a fixed sleep could end before the
    // AMQP connection is up on a loaded machine, and then MQTT would be the one taken over).
    let (publishing, published) = tokio::sync::oneshot::channel();
    let drain = tokio::spawn(async move {
        let mut publishing = Some(publishing);
        while let Some(e) = rx.recv().await {
            if matches!(e, chainsmith::mqtt::Event::Published { .. }) {
                if let Some(p) = publishing.take() {
                    let _ = p.send(());
                }
            }
        }
    });
    tokio::time::timeout(Duration::from_secs(20), published)
        .await
        .expect("the AMQP test published within 20 s")
        .expect("the AMQP test published");
    let (_mqtt2, ack) = Client::connect(hub.addr, cfg, "good", Some(&hub_util::username("good")))
        .await
        .unwrap();
    assert!(ack.is_some());
    let summary = running.await.unwrap();
    drain.await.unwrap();
    assert!(!summary.ok && summary.sent < 50, "{summary:?}");
    let mut took_over = 0;
    while let Ok(e) = ev.try_recv() {
        if let HubEvent::Disconnected { device, reason } = e {
            if device == "good" && reason.contains("took over") {
                took_over += 1;
            }
        }
    }
    assert_eq!(took_over, 2, "one takeover each way");
    hub.shutdown().await;
}

/// A CA-signed device refused over WebSockets by what the test takes for Azure IoT Hub gets
/// the note that Azure serves WebSockets to CA-signed devices only in preview.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_refusal_at_an_azure_hub_mentions_the_ca_preview() {
    use chainsmith::mqtt::{ConnectionTest, Endpoint, Event, PeerKind};
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("good", Some("line2"), ValidityArg::default()); // not registered: refused
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            websocket_port: Some(0),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: hub.websocket_addr.unwrap().port(),
        peer: PeerKind::AzureHub,
    };
    let identity = Identity::from_workspace(&fx.ws, "good").unwrap();
    let mut test = ConnectionTest::new(identity, ep, Flavor::Azure);
    test.transport = Transport::MqttWs;
    test.system_roots = false;
    let trust = std::fs::read(fx.trust_file()).unwrap();
    test.extra_ca = pem::parse_many(&trust)
        .unwrap()
        .into_iter()
        .map(|p| p.into_contents())
        .collect();
    test.timeout = Duration::from_secs(5);
    let (tx, mut rx) = tokio::sync::mpsc::channel(256);
    let task = tokio::spawn(chainsmith::mqtt::run(test, tx));
    let mut fix = None;
    while let Some(e) = rx.recv().await {
        if let Event::Failed { diagnosis, .. } = e {
            fix = Some(diagnosis.fix);
        }
    }
    assert!(!task.await.unwrap().ok);
    let fix = fix.expect("a diagnosis");
    assert!(fix.contains("preview"), "{fix}");
    hub.shutdown().await;
}
