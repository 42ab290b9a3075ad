//! The local AWS IoT Core's broker (the wire) against real peers: the official AWS IoT Device
//! SDK v2 for Python on 8883 and on 443 with ALPN `x-amzn-mqtt-ca` (in its own network
//! namespace, where those ports are free), and raw MQTT 3.1.1 / 5 sockets for the reason codes,
//! QoS 2, ALPN refusal and AWS's size limits. AWS's rules are a small [`Rules`] here (the
//! devices the test registered, a policy as a closure); the registry's own are tested with it.

use crate::isolated;
use chainsmith_test_support::hub_util::{self, Fixture, Identity};

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use chainsmith::aws::broker::events::BrokerEvent;
use chainsmith::aws::broker::{self, BrokerConfig, BrokerHandle};
use chainsmith::aws::rules::{Action, Admitted, Refused, Rules};
use chainsmith::ops::ValidityArg;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5;

/// A policy: may `client_id` do `action` on `resource`?
pub type Policy = dyn Fn(&str, Action, &str) -> bool + Send + Sync;

/// AWS's rules for these tests: the devices registered here are ACTIVE; `policy` decides.
pub struct TestRules {
    registered: HashSet<Vec<u8>>,
    policy: Box<Policy>,
}

impl TestRules {
    /// `devices` of `fx` registered, deciding by `policy`.
    pub fn new(fx: &Fixture, devices: &[&str], policy: Box<Policy>) -> Arc<TestRules> {
        let registered = devices
            .iter()
            .map(|d| fx.ws.load(d).expect("device").cert_der)
            .collect();
        Arc::new(TestRules { registered, policy })
    }
}

fn certificate_id(der: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der).as_ref())
}

impl Rules for TestRules {
    fn admit(&self, chain: &[Vec<u8>], client_id: &str) -> Result<Admitted, Refused> {
        let leaf = chain.first().ok_or(Refused::Unreadable {
            what: "no client certificate".into(),
        })?;
        let certificate_id = certificate_id(leaf);
        if !self.registered.contains(leaf) {
            return Err(Refused::CertificateNotRegistered { certificate_id });
        }
        if !(self.policy)(client_id, Action::Connect, client_id) {
            return Err(Refused::ConnectNotAllowed {
                client_id: client_id.into(),
            });
        }
        Ok(Admitted {
            client_id: client_id.into(),
            certificate_id,
            thing_name: Some(client_id.into()),
        })
    }
    fn allows(&self, who: &Admitted, action: Action, resource: &str) -> bool {
        (self.policy)(&who.client_id, action, resource)
    }
}

/// The policy of most tests: everything under `dev/CLIENT/` and `$aws/things/CLIENT/`, except
/// `dev/CLIENT/forbidden`; Receive on `dev/CLIENT/secret` denied.
pub fn own_topics() -> Box<Policy> {
    Box::new(|client, action, resource| {
        if action == Action::Connect {
            return true;
        }
        let own = resource.starts_with(&format!("dev/{client}/"))
            || resource.starts_with(&format!("$aws/things/{client}/"));
        own && !resource.ends_with("/forbidden")
            && !(action == Action::Receive && resource.ends_with("/secret"))
    })
}

/// A workspace with devices `names` under the intermediate.
pub fn fixture(names: &[&str]) -> Fixture {
    let fx = Fixture::new();
    for n in names {
        fx.device(n, Some("line2"), ValidityArg::default());
    }
    fx
}

pub async fn start(
    fx: &Fixture,
    rules: Arc<TestRules>,
    port: u16,
    alpn: Option<u16>,
) -> BrokerHandle {
    broker::start(
        &fx.ws,
        rules,
        BrokerConfig {
            port,
            alpn_port: alpn,
            ..Default::default()
        },
    )
    .await
    .expect("the broker starts")
}

/// The broker on a free port, `thing-1` registered, [`own_topics`] its policy.
pub async fn on_free_port(fx: &Fixture) -> BrokerHandle {
    start(fx, TestRules::new(fx, &["thing-1"], own_topics()), 0, None).await
}

/// The PEM a device trusts to reach the broker.
pub fn trust(fx: &Fixture) -> std::path::PathBuf {
    broker::tls::trust_path(&fx.ws)
}

/// Run tests/aws_sdk_device.py in `mode`; its JSON lines and exit code.
pub async fn python(
    fx: &Fixture,
    mode: &str,
    port: u16,
    client_id: &str,
    device: &str,
) -> (Vec<serde_json::Value>, Option<i32>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_device.py");
    let cmd = Command::new("python3")
        .arg(script)
        .arg(mode)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(client_id)
        .arg(fx.chain_file(&[device]))
        .arg(fx.key_file(device))
        .arg(trust(fx))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let out = tokio::task::spawn_blocking(move || cmd.wait_with_output())
        .await
        .unwrap()
        .expect("python3 ran");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "unparsed": l })))
        .collect();
    (lines, out.status.code())
}

fn steps(lines: &[serde_json::Value]) -> Vec<&str> {
    lines.iter().filter_map(|v| v["step"].as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_round_trip_on_8883_and_on_443_with_alpn() {
    if !isolated::in_own_netns("aws_broker::python_sdk_round_trip_on_8883_and_on_443_with_alpn") {
        return;
    }
    let fx = fixture(&["thing-1"]);
    let b = start(
        &fx,
        TestRules::new(&fx, &["thing-1"], own_topics()),
        8883,
        Some(443),
    )
    .await;
    let mut events = b.events();
    for port in [8883, 443] {
        let (lines, code) = python(&fx, "roundtrip", port, "thing-1", "thing-1").await;
        assert_eq!(code, Some(0), "port {port}: {lines:?}");
        let msg = lines.iter().find(|v| v["step"] == "message").unwrap();
        assert_eq!(msg["payload"], "hello from the SDK");
        assert_eq!(msg["topic"], "dev/thing-1/echo");
        let sub = lines.iter().find(|v| v["step"] == "subscribed").unwrap();
        assert_eq!(sub["granted"], 1, "QoS 1 granted");
    }
    // The SDK's username (`?SDK=Python&Version=…`) was accepted, and its publish seen.
    let mut saw_username = false;
    let mut saw_publish = false;
    while let Ok(e) = events.try_recv() {
        match e {
            BrokerEvent::Connected { username, .. } => {
                // `?SDK=IoTDeviceSDK/Python&Platform=Unix&Metadata=(…)`
                saw_username |=
                    username.is_some_and(|u| u.starts_with("?SDK=") && u.contains("Python"));
            }
            BrokerEvent::Published { topic, .. } => saw_publish |= topic == "dev/thing-1/echo",
            _ => {}
        }
    }
    assert!(saw_username, "the SDK's username was seen");
    assert!(saw_publish, "the SDK's publish was seen");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_second_connection_with_the_same_client_id_takes_over() {
    if !isolated::in_own_netns(
        "aws_broker::python_sdk_second_connection_with_the_same_client_id_takes_over",
    ) {
        return;
    }
    let fx = fixture(&["thing-1", "thing-2"]);
    let rules = TestRules::new(&fx, &["thing-1", "thing-2"], Box::new(|_, _, _| true));
    let b = start(&fx, rules, 8883, None).await;
    let mut events = b.events();
    // The first holds "shared-id" and waits to be interrupted.
    let fx = Arc::new(fx);
    let holder = {
        let fx = fx.clone();
        tokio::spawn(async move { python(&fx, "hold", 8883, "shared-id", "thing-1").await })
    };
    wait_connected(&mut events, "shared-id").await;
    let (lines, code) = python(&fx, "roundtrip", 8883, "shared-id", "thing-2").await;
    assert_eq!(code, Some(0), "{lines:?}");
    let (held, code) = holder.await.unwrap();
    assert_eq!(
        code,
        Some(0),
        "the first connection was interrupted: {held:?}"
    );
    assert!(steps(&held).contains(&"interrupted"), "{held:?}");
    b.stop().await;
}

async fn wait_connected(events: &mut tokio::sync::broadcast::Receiver<BrokerEvent>, id: &str) {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if let Ok(BrokerEvent::Connected { client_id, .. }) = events.recv().await
                && client_id == id
            {
                return;
            }
        }
    })
    .await
    .expect("the device connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_publish_the_policy_denies_is_disconnected_on_mqtt_311() {
    if !isolated::in_own_netns(
        "aws_broker::python_sdk_publish_the_policy_denies_is_disconnected_on_mqtt_311",
    ) {
        return;
    }
    let fx = fixture(&["thing-1"]);
    let b = start(
        &fx,
        TestRules::new(&fx, &["thing-1"], own_topics()),
        8883,
        None,
    )
    .await;
    let mut events = b.events();
    let (lines, code) = python(&fx, "denied", 8883, "thing-1", "thing-1").await;
    assert_eq!(code, Some(0), "{lines:?}");
    assert!(!steps(&lines).contains(&"puback"), "no PUBACK: {lines:?}");
    let mut denied = false;
    while let Ok(e) = events.try_recv() {
        if let BrokerEvent::Denied {
            action, resource, ..
        } = e
        {
            denied |= action == Action::Publish && resource == "dev/thing-1/forbidden";
        }
    }
    assert!(denied);
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_unregistered_certificate_is_refused() {
    if !isolated::in_own_netns("aws_broker::python_sdk_unregistered_certificate_is_refused") {
        return;
    }
    let fx = fixture(&["thing-1", "stranger"]);
    let b = start(
        &fx,
        TestRules::new(&fx, &["thing-1"], own_topics()),
        8883,
        None,
    )
    .await;
    let (lines, code) = python(&fx, "roundtrip", 8883, "stranger", "stranger").await;
    assert_eq!(code, Some(3), "{lines:?}");
    assert!(steps(&lines).contains(&"connect_failed"), "{lines:?}");
    b.stop().await;
}

/// A raw MQTT 5 client over TLS.
pub struct V5Client {
    c: hub_util::Client,
    buf: BytesMut,
}

impl V5Client {
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
    ) -> (V5Client, Option<v5::ConnAck>) {
        V5Client::connect_with(addr, config, client_id, None).await
    }

    /// [`V5Client::connect`] with CONNECT properties (a Maximum Packet Size, say).
    pub async fn connect_with(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        client_id: &str,
        properties: Option<v5::ConnectProperties>,
    ) -> (V5Client, Option<v5::ConnAck>) {
        let c = hub_util::Client::tls(addr, config).await.expect("TLS");
        let mut me = V5Client {
            c,
            buf: BytesMut::new(),
        };
        let connect = v5::Connect {
            keep_alive: 60,
            client_id: client_id.into(),
            clean_start: true,
            properties,
        };
        me.send(v5::Packet::Connect(connect, None, None)).await;
        let ack = match me.recv().await {
            Some(v5::Packet::ConnAck(a)) => Some(a),
            _ => None,
        };
        (me, ack)
    }

    /// Send bytes as they are (several packets in one write).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        let _ = self.c.send_raw(bytes).await;
    }

    pub async fn send(&mut self, p: v5::Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, None).expect("encode");
        let _ = self.c.send_raw(&out).await;
    }

    /// The next packet; None when the broker closed (or 5 s passed).
    pub async fn recv(&mut self) -> Option<v5::Packet> {
        use tokio::io::AsyncReadExt;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match v5::Packet::read(&mut self.buf, None) {
                Ok(p) => return Some(p),
                Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(_) => return None,
            }
            match tokio::time::timeout_at(deadline, self.c.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return None,
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: Vec<u8>, qos: QoS5, pkid: u16) {
        let mut p = v5::Publish::new(topic, qos, payload, None);
        p.pkid = pkid;
        self.send(v5::Packet::Publish(p)).await;
    }

    pub async fn subscribe(&mut self, filter: &str, pkid: u16) -> Vec<v5::SubscribeReasonCode> {
        let mut s = v5::Subscribe {
            pkid,
            filters: vec![v5::Filter::new(filter, QoS5::AtLeastOnce)],
            properties: None,
        };
        s.pkid = pkid;
        self.send(v5::Packet::Subscribe(s)).await;
        match self.recv().await {
            Some(v5::Packet::SubAck(a)) => a.return_codes,
            other => panic!("no SUBACK: {other:?}"),
        }
    }
}

fn identity(fx: &Fixture, name: &str) -> Identity {
    fx.identity(&[name])
}

pub fn client_tls(fx: &Fixture, name: &str, alpn: Option<&[u8]>) -> Arc<rustls::ClientConfig> {
    let pem = std::fs::read(trust(fx)).unwrap();
    let base = hub_util::client_config(&pem, Some(&identity(fx, name)));
    let mut c = (*base).clone();
    if let Some(a) = alpn {
        c.alpn_protocols = vec![a.to_vec()];
    }
    Arc::new(c)
}

#[tokio::test]
async fn mqtt5_reason_codes_for_refused_connect_publish_and_subscribe() {
    let fx = fixture(&["thing-1", "stranger"]);
    let b = on_free_port(&fx).await;
    // An unregistered certificate: CONNACK 0x87 not authorized.
    let (_, ack) = V5Client::connect(b.mqtt, client_tls(&fx, "stranger", None), "stranger").await;
    assert_eq!(ack.unwrap().code, v5::ConnectReturnCode::NotAuthorized);
    // A client id over 128 bytes: CONNACK 0x85.
    let long = "x".repeat(129);
    let (_, ack) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), &long).await;
    assert_eq!(
        ack.unwrap().code,
        v5::ConnectReturnCode::ClientIdentifierNotValid
    );

    let (mut c, ack) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1").await;
    let ack = ack.unwrap();
    assert_eq!(ack.code, v5::ConnectReturnCode::Success);
    assert_eq!(
        ack.properties.unwrap().max_qos,
        Some(1),
        "AWS offers QoS 1 at most"
    );
    // Subscribe denied: 0x87 for that filter; the connection stays.
    assert_eq!(
        c.subscribe("dev/other/#", 1).await,
        vec![v5::SubscribeReasonCode::NotAuthorized]
    );
    // Publish denied at QoS 1: PUBACK 0x87.
    c.publish("dev/thing-1/forbidden", b"x".to_vec(), QoS5::AtLeastOnce, 2)
        .await;
    match c.recv().await {
        Some(v5::Packet::PubAck(a)) => assert_eq!(a.reason, v5::PubAckReason::NotAuthorized),
        other => panic!("{other:?}"),
    }
    // A topic of 257 bytes: PUBACK 0x90 topic name invalid.
    let topic = format!("dev/thing-1/{}", "t".repeat(257 - "dev/thing-1/".len()));
    c.publish(&topic, b"x".to_vec(), QoS5::AtLeastOnce, 3).await;
    match c.recv().await {
        Some(v5::Packet::PubAck(a)) => assert_eq!(a.reason, v5::PubAckReason::TopicNameInvalid),
        other => panic!("{other:?}"),
    }
    // Still connected: a round trip through its own subscription.
    assert_eq!(
        c.subscribe("dev/thing-1/+", 4).await,
        vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
    c.publish("dev/thing-1/echo", b"hi".to_vec(), QoS5::AtMostOnce, 0)
        .await;
    match c.recv().await {
        Some(v5::Packet::Publish(p)) => assert_eq!(&p.payload[..], b"hi"),
        other => panic!("{other:?}"),
    }
    // A payload over 128 KB: DISCONNECT 0x95 packet too large.
    c.publish(
        "dev/thing-1/big",
        vec![b'x'; 128 * 1024 + 1],
        QoS5::AtMostOnce,
        0,
    )
    .await;
    match c.recv().await {
        Some(v5::Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::PacketTooLarge)
        }
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn qos2_is_refused_as_aws_does() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    // MQTT 5: DISCONNECT 0x9B QoS not supported.
    let (mut c, _) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1").await;
    c.publish("dev/thing-1/x", b"x".to_vec(), QoS5::ExactlyOnce, 1)
        .await;
    match c.recv().await {
        Some(v5::Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::QoSNotSupported)
        }
        other => panic!("{other:?}"),
    }
    // MQTT 3.1.1: the connection is closed.
    let (mut c, ack) =
        hub_util::Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1", None)
            .await
            .unwrap();
    assert!(ack.is_some());
    let mut p = rumqttc::mqttbytes::v4::Publish::new(
        "dev/thing-1/x",
        rumqttc::mqttbytes::QoS::ExactlyOnce,
        b"x".to_vec(),
    );
    p.pkid = 1;
    c.send(&rumqttc::mqttbytes::v4::Packet::Publish(p))
        .await
        .unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    b.stop().await;
}

#[tokio::test]
async fn the_alpn_port_refuses_clients_without_x_amzn_mqtt_ca_at_tls() {
    let fx = fixture(&["thing-1"]);
    let b = start(
        &fx,
        TestRules::new(&fx, &["thing-1"], own_topics()),
        0,
        Some(0),
    )
    .await;
    let alpn = b.alpn.unwrap();
    for offered in [None, Some(&b"mqtt"[..])] {
        let r = hub_util::Client::tls(alpn, client_tls(&fx, "thing-1", offered)).await;
        assert!(r.is_err(), "offering {offered:?} was let through TLS");
    }
    let (_, ack) = hub_util::Client::connect(
        alpn,
        client_tls(&fx, "thing-1", Some(b"x-amzn-mqtt-ca")),
        "thing-1",
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        ack.unwrap().code,
        rumqttc::mqttbytes::v4::ConnectReturnCode::Success
    );
    // The MQTT port takes clients without ALPN.
    let (_, ack) =
        hub_util::Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1", None)
            .await
            .unwrap();
    assert!(ack.is_some());
    b.stop().await;
}

#[tokio::test]
async fn retained_messages_and_denied_receive() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let (mut c, _) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1").await;
    let mut p = v5::Publish::new(
        "dev/thing-1/config",
        QoS5::AtMostOnce,
        b"kept".to_vec(),
        None,
    );
    p.retain = true;
    c.send(v5::Packet::Publish(p)).await;
    // Receive on dev/thing-1/secret is denied: the message is not delivered.
    let mut p = v5::Publish::new("dev/thing-1/secret", QoS5::AtMostOnce, b"no".to_vec(), None);
    p.retain = true;
    c.send(v5::Packet::Publish(p)).await;
    assert_eq!(
        c.subscribe("dev/thing-1/#", 1).await,
        vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
    match c.recv().await {
        Some(v5::Packet::Publish(p)) => {
            assert_eq!(&p.payload[..], b"kept");
            assert!(p.retain);
        }
        other => panic!("{other:?}"),
    }
    c.publish("dev/thing-1/secret", b"no".to_vec(), QoS5::AtMostOnce, 0)
        .await;
    c.publish("dev/thing-1/open", b"yes".to_vec(), QoS5::AtMostOnce, 0)
        .await;
    match c.recv().await {
        Some(v5::Packet::Publish(p)) => assert_eq!(&p.payload[..], b"yes"),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test]
async fn mqtt311_subscribe_denied_is_disconnected_and_a_nine_level_topic_too() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let tls = client_tls(&fx, "thing-1", None);
    let (mut c, _) = hub_util::Client::connect(b.mqtt, tls.clone(), "thing-1", None)
        .await
        .unwrap();
    let s =
        rumqttc::mqttbytes::v4::Subscribe::new("dev/other/#", rumqttc::mqttbytes::QoS::AtLeastOnce);
    c.send(&rumqttc::mqttbytes::v4::Packet::Subscribe(s))
        .await
        .unwrap();
    assert!(c.closed_within(Duration::from_secs(5)).await);
    let (mut c, _) = hub_util::Client::connect(b.mqtt, tls, "thing-1", None)
        .await
        .unwrap();
    assert!(!hub_util::publish_acked(&mut c, "dev/thing-1/3/4/5/6/7/8/9", b"x", 1).await);
    b.stop().await;
}

#[tokio::test]
async fn subscribe_quotas_and_mqtt5_takeover_reason_code() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let tls = client_tls(&fx, "thing-1", None);
    let (mut c, _) = V5Client::connect(b.mqtt, tls.clone(), "thing-1").await;
    // Nine filters in one SUBSCRIBE: AWS takes at most 8 per request.
    let nine = v5::Subscribe {
        pkid: 1,
        filters: (0..9)
            .map(|i| v5::Filter::new(format!("dev/thing-1/{i}"), QoS5::AtLeastOnce))
            .collect(),
        properties: None,
    };
    c.send(v5::Packet::Subscribe(nine)).await;
    match c.recv().await {
        Some(v5::Packet::SubAck(a)) => assert_eq!(
            a.return_codes,
            vec![v5::SubscribeReasonCode::QuotaExceeded; 9]
        ),
        other => panic!("{other:?}"),
    }
    // 50 subscriptions per connection: the 51st is refused; subscribing again to one held is not.
    for i in 0..50u16 {
        let codes = c.subscribe(&format!("dev/thing-1/s{i}"), 10 + i).await;
        assert_eq!(
            codes,
            vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
        );
    }
    assert_eq!(
        c.subscribe("dev/thing-1/s50", 100).await,
        vec![v5::SubscribeReasonCode::QuotaExceeded]
    );
    assert_eq!(
        c.subscribe("dev/thing-1/s0", 101).await,
        vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
    // A second connection with the same client id: the first gets DISCONNECT 0x8E.
    let (_second, ack) = V5Client::connect(b.mqtt, tls, "thing-1").await;
    assert_eq!(ack.unwrap().code, v5::ConnectReturnCode::Success);
    match c.recv().await {
        Some(v5::Packet::Disconnect(d)) => {
            assert_eq!(d.reason_code, v5::DisconnectReasonCode::SessionTakenOver)
        }
        other => panic!("{other:?}"),
    }
    b.stop().await;
}
