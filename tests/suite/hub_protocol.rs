//! IoT Hub fidelity of the MQTT session: QoS rules, subscription limit, namespaces, one
//! connection per device, 256 KB limit, keep-alive, twin, desired push, methods, --echo.

use chainsmith_test_support::hub_util;

use std::time::Duration;

use chainsmith::azure::{self, Properties};
use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use hub_util::{Client, Fixture, publish_acked, username};
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish, Subscribe, SubscribeReasonCode};

async fn setup(echo: bool, ids: &[&str]) -> (Fixture, HubHandle) {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    for id in ids {
        fx.device(id, Some("line2"), ValidityArg::default());
        fx.register(id, Auth::Ca, None);
    }
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            echo,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (fx, hub)
}

async fn device(fx: &Fixture, hub: &HubHandle, id: &str) -> Client {
    let cfg = fx.tls(Some(&fx.identity(&[id, "line2"])));
    let (c, ack) = Client::connect(hub.addr, cfg, id, Some(&username(id)))
        .await
        .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);
    c
}

async fn subscribe(c: &mut Client, filters: &[(&str, QoS)]) -> Vec<SubscribeReasonCode> {
    let mut s = Subscribe::new(filters[0].0, filters[0].1);
    for (f, q) in &filters[1..] {
        s.add(f.to_string(), *q);
    }
    s.pkid = 7;
    c.send(&Packet::Subscribe(s)).await.unwrap();
    match c.recv(Duration::from_secs(5)).await {
        Some(Packet::SubAck(a)) => a.return_codes,
        other => panic!("expected SUBACK, got {other:?}"),
    }
}

async fn disconnect_reason(ev: &mut tokio::sync::broadcast::Receiver<HubEvent>) -> String {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.recv()).await {
            Ok(Ok(HubEvent::Disconnected { reason, .. })) => return reason,
            Ok(Ok(_)) => {}
            other => panic!("no disconnect event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_qos_and_namespace() {
    let (fx, hub) = setup(false, &["d1"]).await;
    let mut ev = hub.events();
    let mut c = device(&fx, &hub, "d1").await;
    // QoS 2 subscribe is granted QoS 1.
    let codes = subscribe(
        &mut c,
        &[
            ("devices/d1/messages/devicebound/#", QoS::ExactlyOnce),
            (azure::TWIN_RESPONSE_FILTER, QoS::AtMostOnce),
            (azure::TWIN_DESIRED_FILTER, QoS::AtLeastOnce),
            (azure::METHODS_FILTER, QoS::AtLeastOnce),
            ("devices/d1/messages/devicebound/+", QoS::AtLeastOnce),
            ("devices/d1/messages/devicebound/x/#", QoS::AtLeastOnce),
        ],
    )
    .await;
    use SubscribeReasonCode::*;
    assert_eq!(
        codes,
        vec![
            Success(QoS::AtLeastOnce),
            Success(QoS::AtMostOnce),
            Success(QoS::AtLeastOnce),
            Success(QoS::AtLeastOnce),
            Success(QoS::AtLeastOnce),
            Failure // the sixth subscription
        ]
    );
    // Subscribing outside its namespace disconnects the device.
    let mut s = Subscribe::new("devices/d2/messages/devicebound/#", QoS::AtLeastOnce);
    s.pkid = 9;
    c.send(&Packet::Subscribe(s)).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert!(
        disconnect_reason(&mut ev)
            .await
            .contains("outside device \"d1\"'s namespace")
    );

    // Publishing outside its namespace, too.
    let mut c = device(&fx, &hub, "d1").await;
    let mut p = Publish::new(
        "devices/d2/messages/events/",
        QoS::AtLeastOnce,
        b"x".to_vec(),
    );
    p.pkid = 1;
    c.send(&Packet::Publish(p)).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert!(disconnect_reason(&mut ev).await.contains("PUBLISH refused"));

    // QoS 2 PUBLISH closes the connection.
    let mut c = device(&fx, &hub, "d1").await;
    let mut p = Publish::new(
        "devices/d1/messages/events/",
        QoS::ExactlyOnce,
        b"x".to_vec(),
    );
    p.pkid = 3;
    c.send(&Packet::Publish(p)).await.unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    assert!(disconnect_reason(&mut ev).await.contains("QoS 2"));
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_per_device_limits_and_keepalive() {
    let (fx, hub) = setup(false, &["d1"]).await;
    let mut ev = hub.events();
    let mut first = device(&fx, &hub, "d1").await;
    let mut second = device(&fx, &hub, "d1").await;
    assert!(first.closed_within(Duration::from_secs(5)).await);
    assert!(disconnect_reason(&mut ev).await.contains("took over"));
    assert_eq!(hub.connected(), vec!["d1".to_string()]);

    // 256 KB is the limit: exactly 256 KB passes, one byte more closes.
    let topic = "devices/d1/messages/events/";
    assert!(publish_acked(&mut second, topic, &vec![b'a'; 256 * 1024], 1).await);
    let mut p = Publish::new(topic, QoS::AtLeastOnce, vec![b'a'; 256 * 1024 + 1]);
    p.pkid = 2;
    second.send(&Packet::Publish(p)).await.unwrap();
    assert!(second.closed_within(Duration::from_secs(5)).await);
    loop {
        let r = disconnect_reason(&mut ev).await;
        if r.contains("256 KB") {
            break;
        }
    }

    // A retained message is acknowledged but not kept: nothing arrives on subscribe.
    let mut c = device(&fx, &hub, "d1").await;
    let mut p = Publish::new(topic, QoS::AtLeastOnce, b"r".to_vec());
    p.retain = true;
    p.pkid = 5;
    c.send(&Packet::Publish(p)).await.unwrap();
    assert!(matches!(
        c.recv(Duration::from_secs(5)).await,
        Some(Packet::PubAck(_))
    ));

    // Keep-alive: 1 s asked, silence, closed after 1.5 × keep-alive.
    let cfg = fx.tls(Some(&fx.identity(&["d1", "line2"])));
    let mut k = Client::tls(hub.addr, cfg).await.unwrap();
    let mut conn = rumqttc::mqttbytes::v4::Connect::new("d1");
    conn.keep_alive = 1;
    conn.set_login(username("d1"), "");
    k.send(&Packet::Connect(conn)).await.unwrap();
    assert!(matches!(
        k.recv(Duration::from_secs(5)).await,
        Some(Packet::ConnAck(_))
    ));
    assert!(k.closed_within(Duration::from_secs(6)).await);
    loop {
        if disconnect_reason(&mut ev).await.contains("keep-alive") {
            break;
        }
    }
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twin_desired_methods_and_echo() {
    let (fx, hub) = setup(true, &["d1"]).await;
    let mut c = device(&fx, &hub, "d1").await;
    subscribe(
        &mut c,
        &[
            ("devices/d1/messages/devicebound/#", QoS::AtLeastOnce),
            (azure::TWIN_RESPONSE_FILTER, QoS::AtLeastOnce),
            (azure::TWIN_DESIRED_FILTER, QoS::AtLeastOnce),
            (azure::METHODS_FILTER, QoS::AtLeastOnce),
        ],
    )
    .await;
    let next_publish = async |c: &mut Client| loop {
        match c.recv(Duration::from_secs(5)).await {
            Some(Packet::Publish(p)) => return p,
            Some(_) => {}
            None => panic!("no PUBLISH from the hub"),
        }
    };
    // Twin GET with a numeric $rid.
    let p = Publish::new(azure::twin_get_topic("1"), QoS::AtMostOnce, Vec::new());
    c.send(&Packet::Publish(p)).await.unwrap();
    let r = next_publish(&mut c).await;
    assert_eq!(r.topic, "$iothub/twin/res/200/?$rid=1");
    let doc: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(doc["reported"]["$version"], 1);
    // Reported PATCH: 204 with the new version.
    let p = Publish::new(
        azure::twin_patch_reported_topic("2"),
        QoS::AtMostOnce,
        br#"{"fw":"2.0"}"#.to_vec(),
    );
    c.send(&Packet::Publish(p)).await.unwrap();
    let r = next_publish(&mut c).await;
    assert_eq!(r.topic, "$iothub/twin/res/204/?$rid=2&$version=2");
    // A patch that is not a JSON object: 400.
    let p = Publish::new(
        azure::twin_patch_reported_topic("3"),
        QoS::AtMostOnce,
        b"[1]".to_vec(),
    );
    c.send(&Packet::Publish(p)).await.unwrap();
    assert_eq!(
        next_publish(&mut c).await.topic,
        "$iothub/twin/res/400/?$rid=3"
    );
    // Desired update pushed with its version.
    let v = hub
        .set_desired("d1", &serde_json::json!({"interval": 9}))
        .await
        .unwrap();
    let r = next_publish(&mut c).await;
    assert_eq!(r.topic, azure::twin_desired_topic(v));
    let patch: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
    assert_eq!(patch["interval"], 9);
    assert_eq!(patch["$version"], v);
    // --echo: telemetry comes back as C2D correlated to the original message id.
    let bag = Properties::new().with("$.mid", "orig-42").with("a", "b");
    let mut p = Publish::new(
        azure::telemetry_topic("d1", &bag),
        QoS::AtLeastOnce,
        b"ping".to_vec(),
    );
    p.pkid = 11;
    c.send(&Packet::Publish(p)).await.unwrap();
    let mut acked = false;
    let echo = loop {
        match c.recv(Duration::from_secs(5)).await {
            Some(Packet::PubAck(a)) if a.pkid == 11 => acked = true,
            Some(Packet::Publish(p)) => break p,
            other => panic!("{other:?}"),
        }
    };
    let (id, props) = azure::parse_c2d_topic(&echo.topic).unwrap();
    assert_eq!(id, "d1");
    assert_eq!(props.get("$.cid"), Some("orig-42"));
    assert_eq!(props.get("original-message-id"), Some("orig-42"));
    assert_eq!(&echo.payload[..], b"ping");
    if !acked {
        assert!(matches!(
            c.recv(Duration::from_secs(5)).await,
            Some(Packet::PubAck(_))
        ));
    }
    // A method nobody answers times out with a clear error.
    let e = hub
        .method("d1", "slow", b"{}", Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        e.to_string().contains("did not answer method \"slow\""),
        "{e}"
    );
    let req = next_publish(&mut c).await;
    let (name, rid) = azure::parse_method_request(&req.topic).unwrap();
    assert_eq!(name, "slow");
    assert!(!rid.is_empty());
    hub.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_12_and_13_request_a_client_certificate() {
    let (fx, hub) = setup(false, &["d1"]).await;
    let chain = fx.chain_file(&["d1", "line2"]);
    for (flag, proto) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let out = tokio::process::Command::new("openssl")
            .args(["s_client", flag, "-connect", &hub.addr.to_string()])
            .arg("-CAfile")
            .arg(fx.trust_file())
            .arg("-cert")
            .arg(&chain)
            .arg("-key")
            .arg(fx.key_file("d1"))
            .args(["-servername", "localhost", "-verify_return_error"])
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(proto), "{flag}: {text}");
        // The server asked for a client certificate and verified the server chain.
        assert!(
            text.contains("Requested Signature Algorithms"),
            "{flag}: {text}"
        );
        assert!(
            text.contains("Verify return code: 0 (ok)"),
            "{flag}: {text}"
        );
    }
    hub.shutdown().await;
}

/// IoT Hub speaks MQTT 3.1.1: a CONNECT of MQTT 5 is answered in MQTT 5's format with reason
/// 0x84 (unsupported protocol version), one of MQTT 3.1 with CONNACK 1, both then closed, and
/// the hub log says which (issue 22: an MQTT 5 CONNECT with properties used to be dropped
/// silently as "malformed CONNECT: BoundaryCrossed").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_and_3_1_connects_get_their_connack() {
    let (fx, hub) = setup(false, &["d1"]).await;
    let mut events = hub.events();
    let refused_with = |raw: &'static [u8]| {
        let cfg = fx.tls(Some(&fx.identity(&["d1", "line2"])));
        let addr = hub.addr;
        async move {
            let mut c = Client::tls(addr, cfg).await.unwrap();
            c.send_raw(raw).await.unwrap();
            let mut got = Vec::new();
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                tokio::io::AsyncReadExt::read_to_end(&mut c.stream, &mut got),
            )
            .await
            .expect("the hub closes after its CONNACK");
            got
        }
    };
    // MQTT 5 as its clients send it: a session-expiry property before the client id.
    let v5: &[u8] = &[
        0x10, 20, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 5, 0x11, 0, 0, 0, 10, 0, 2, b'd',
        b'1',
    ];
    assert_eq!(refused_with(v5).await, [0x20, 3, 0, 0x84, 0]);
    let said = next_dropped(&mut events).await;
    assert!(said.contains("MQTT 5") && said.contains("0x84"), "{said}");
    // MQTT 3.1 ("MQIsdp", level 3).
    let v31: &[u8] = &[
        0x10, 16, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 2, b'd', b'1',
    ];
    assert_eq!(refused_with(v31).await, [0x20, 2, 0, 1]);
    let said = next_dropped(&mut events).await;
    assert!(
        said.contains("MQTT 3.1") && said.contains("CONNACK 1"),
        "{said}"
    );

    // The real peer: mosquitto_pub in each version reports the refusal it understood.
    for (version, expect) in [
        ("mqttv5", "Unsupported Protocol Version"),
        ("mqttv31", "unacceptable protocol version"),
    ] {
        let out = tokio::process::Command::new("mosquitto_pub")
            .args(["-V", version, "-h", "localhost", "-p"])
            .arg(hub.addr.port().to_string())
            .arg("--cafile")
            .arg(fx.trust_file())
            .arg("--cert")
            .arg(fx.chain_file(&["d1", "line2"]))
            .arg("--key")
            .arg(fx.key_file("d1"))
            .args(["-i", "d1", "-u", &username("d1"), "-q", "1", "-m", "x"])
            .args(["-t", "devices/d1/messages/events/"])
            .output()
            .await
            .expect("mosquitto_pub installed");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{version}: {stderr}");
        assert!(
            stderr.to_lowercase().contains(&expect.to_lowercase()),
            "{version}: {stderr}"
        );
    }
    hub.shutdown().await;
}

/// The reason of the next `Dropped` event the hub reports.
async fn next_dropped(ev: &mut tokio::sync::broadcast::Receiver<HubEvent>) -> String {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), ev.recv())
            .await
            .expect("hub said nothing")
            .expect("event channel");
        if let HubEvent::Dropped { reason, .. } = e {
            return reason;
        }
    }
}

/// The next `C2d` event the hub reports.
async fn next_c2d(ev: &mut tokio::sync::broadcast::Receiver<HubEvent>) -> HubEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), ev.recv()).await {
            Ok(Ok(e @ HubEvent::C2d { .. })) => return e,
            Ok(Ok(_)) => {}
            other => panic!("no C2D event: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_reports_queued_until_the_device_subscribes_to_devicebound() {
    let (fx, hub) = setup(true, &["d1"]).await;
    let mut ev = hub.events();
    let mut c = device(&fx, &hub, "d1").await;
    // Telemetry from a device that never subscribed to devicebound: the echo is queued.
    let topic = azure::telemetry_topic("d1", &Properties::new().with("$.mid", "m-1"));
    assert!(publish_acked(&mut c, &topic, b"one", 3).await);
    let e = next_c2d(&mut ev).await;
    assert!(
        matches!(
            e,
            HubEvent::C2d {
                delivered: false,
                ..
            }
        ),
        "{e:?}"
    );
    let line = e.line();
    assert!(
        line.contains("queued") && line.contains("not subscribed") && !line.contains("delivered"),
        "{line}"
    );
    // Subscribing delivers the queued echo.
    subscribe(
        &mut c,
        &[("devices/d1/messages/devicebound/#", QoS::AtLeastOnce)],
    )
    .await;
    let queued = loop {
        match c.recv(Duration::from_secs(5)).await {
            Some(Packet::Publish(p)) => break p,
            Some(_) => {}
            None => panic!("the queued echo never came"),
        }
    };
    assert_eq!(&queued.payload[..], b"one");
    // Subscribed now: the next echo goes out at once and says so.
    assert!(publish_acked(&mut c, &topic, b"two", 4).await);
    let e = next_c2d(&mut ev).await;
    assert!(
        matches!(
            e,
            HubEvent::C2d {
                delivered: true,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.line().ends_with(" delivered"), "{}", e.line());
    hub.shutdown().await;
}
