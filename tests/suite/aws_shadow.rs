//! The local AWS IoT Core's Device Shadow service and the broker's delivery guarantees against
//! real peers: the AWS IoT Device SDK v2 for Python's `iotshadow` client (in its own network
//! namespace, on 8883), and raw MQTT sockets for malformed, oversize and too-deep shadow
//! documents, QoS 1 redelivery and AWS's per-connection publish rate.

use crate::aws_broker::{
    TestRules, V5Client, client_tls, fixture, on_free_port, own_topics, start, trust,
};
use crate::isolated;
use crate::lifecycle_hub::cli;
use chainsmith_test_support::hub_util::{self, Fixture};

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use chainsmith::aws::broker::events::BrokerEvent;
use chainsmith::aws::broker::{BrokerHandle, control};
use rumqttc::mqttbytes::QoS as QoS4;
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use rumqttc::v5::mqttbytes::v5;
use serde_json::{Value, json};

/// Start an SDK device: `program script 127.0.0.1 PORT THING CERT KEY TRUST` (the Python
/// and Node scripts take the same arguments), its standard output piped.
fn sdk_device(fx: &Fixture, program: &str, script: &str, port: u16, thing: &str) -> Child {
    Command::new(program)
        .arg(script)
        .arg("127.0.0.1")
        .arg(port.to_string())
        .arg(thing)
        .arg(fx.chain_file(&[thing]))
        .arg(fx.key_file(thing))
        .arg(trust(fx))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"))
}

/// Wait for an SDK device to end: its JSON lines and exit code.
async fn finished(child: Child) -> (Vec<Value>, Option<i32>) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| json!({ "unparsed": l })))
        .collect();
    (lines, out.status.code())
}

/// Wait for a device's publish on `topic`.
async fn wait_published(events: &mut tokio::sync::broadcast::Receiver<BrokerEvent>, on: &str) {
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Ok(BrokerEvent::Published { topic, .. }) = events.recv().await
                && topic == on
            {
                return;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no publish on {on}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_shadow_update_get_delta_named_and_version_conflict() {
    if !isolated::in_own_netns(
        "aws_shadow::python_sdk_shadow_update_get_delta_named_and_version_conflict",
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
    let ctl = tokio::spawn(control::serve(b.control(), control::socket_path(&fx.ws)));
    let mut events = b.events();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_shadow.py");
    let child = sdk_device(&fx, "python3", script, 8883, "thing-1");
    // The device asked for its shadow: it is subscribed to its delta by then.
    wait_published(&mut events, "$aws/things/thing-1/shadow/get").await;
    let (ok, out) = cli(
        &fx,
        &[
            "--json",
            "aws",
            "shadow",
            "update",
            "thing-1",
            "--desired",
            r#"{"color": "green"}"#,
        ],
    )
    .await;
    assert!(ok, "{out}");
    let doc: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["state"]["delta"], json!({"color": "green"}));
    let (lines, code) = finished(child).await;
    assert_eq!(code, Some(0), "{lines:?}");
    let step = |name: &str| {
        lines
            .iter()
            .find(|v| v["step"] == name)
            .unwrap_or_else(|| panic!("no {name}: {lines:?}"))
            .clone()
    };
    assert_eq!(step("reported")["version"], 1);
    assert_eq!(step("reported")["client_token"], "t-reported");
    assert_eq!(step("got")["reported"], json!({"color": "red"}));
    assert_eq!(step("delta")["state"], json!({"color": "green"}));
    assert_eq!(step("delta")["version"], 2);
    assert_eq!(
        step("named")["version"],
        1,
        "a named shadow has its own version"
    );
    assert_eq!(step("named")["reported"], json!({"mode": "eco"}));
    assert_eq!(step("conflict")["code"], 409);
    assert_eq!(step("conflict")["message"], "Version conflict");
    // What the device and the service wrote is on disk, under WS/aws/shadows.
    let classic: Value = serde_json::from_slice(
        &std::fs::read(fx.ws.root().join("aws/shadows/thing-1/classic.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(classic["version"], 2);
    assert!(
        fx.ws
            .root()
            .join("aws/shadows/thing-1/named/config.json")
            .exists()
    );
    ctl.abort();
    b.stop().await;
}

#[tokio::test]
async fn cli_publish_and_monitor_go_through_the_running_service_escaped() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let ctl = tokio::spawn(control::serve(b.control(), control::socket_path(&fx.ws)));
    let (mut c, _) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1").await;
    assert_eq!(
        c.subscribe("dev/thing-1/cmd", 1).await,
        vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
    let (ok, out) = cli(
        &fx,
        &["aws", "publish", "dev/thing-1/cmd", "reboot", "--qos", "1"],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("queued for 1 connection"), "{out}");
    match c.recv().await {
        Some(v5::Packet::Publish(p)) => assert_eq!(&p.payload[..], b"reboot"),
        other => panic!("{other:?}"),
    }
    // Refused before it reaches a device: QoS 2, a wildcard in a topic name.
    let (ok, out) = cli(
        &fx,
        &["aws", "publish", "dev/thing-1/cmd", "x", "--qos", "2"],
    )
    .await;
    assert!(!ok, "{out}");
    let (ok, out) = cli(&fx, &["aws", "publish", "dev/+/cmd", "x"]).await;
    assert!(!ok && out.contains("wildcard"), "{out}");

    // `aws monitor` streams what a device publishes, with its escape sequences made harmless.
    let mut monitor = std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
        .env("CHAINSMITH_WORKSPACE", fx.root())
        .args(["aws", "monitor", "--topic", "dev/+/up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = monitor.stderr.take().unwrap();
    tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(stderr)
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("Monitoring"), "{line}");
    })
    .await
    .unwrap();
    c.publish(
        "dev/thing-1/up",
        b"temp \x1b[31m hot".to_vec(),
        QoS5::AtMostOnce,
        0,
    )
    .await;
    c.publish(
        "dev/thing-1/up",
        b"\x1b]0;owned\x07".to_vec(),
        QoS5::AtMostOnce,
        0,
    )
    .await;
    let stdout = monitor.stdout.take().unwrap();
    let lines = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout)
            .lines()
            .take(2)
            .map(Result::unwrap)
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let _ = monitor.kill();
    let _ = monitor.wait();
    assert!(
        lines[0].starts_with("thing-1 dev/thing-1/up: temp "),
        "{lines:?}"
    );
    for l in &lines {
        assert!(
            !l.contains('\x1b') && !l.contains('\x07'),
            "unescaped: {l:?}"
        );
    }
    ctl.abort();
    b.stop().await;
}

#[tokio::test]
async fn cli_shadow_without_a_running_service_works_on_the_files() {
    let fx = fixture(&[]);
    let (ok, out) = cli(
        &fx,
        &[
            "aws",
            "shadow",
            "update",
            "lamp",
            "--name",
            "cfg",
            "--desired",
            r#"{"on": true}"#,
        ],
    )
    .await;
    assert!(ok, "{out}");
    assert!(out.contains("no aws serve is running"), "{out}");
    let (ok, out) = cli(
        &fx,
        &["--json", "aws", "shadow", "get", "lamp", "--name", "cfg"],
    )
    .await;
    assert!(ok, "{out}");
    let doc: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(doc["state"]["delta"], json!({"on": true}));
    assert_eq!(doc["version"], 1);
    // No classic shadow yet: AWS's 404, with what makes one.
    let (ok, out) = cli(&fx, &["aws", "shadow", "get", "lamp"]).await;
    assert!(!ok && out.contains("404") && out.contains("hint:"), "{out}");
    // Not JSON, not an object, a name AWS refuses: clear errors, nothing written.
    for bad in [
        vec!["aws", "shadow", "update", "lamp", "--desired", "{oops"],
        vec!["aws", "shadow", "update", "lamp", "--desired", "[1]"],
        vec!["aws", "shadow", "update", "../etc", "--desired", "{}"],
    ] {
        let (ok, out) = cli(&fx, &bad).await;
        assert!(!ok && out.contains("hint:"), "{bad:?}: {out}");
    }
    assert!(!fx.root().join("aws/shadows/lamp/classic.json").exists());
    assert!(!fx.root().join("aws/etc").exists());
}

/// The next answer on a shadow response topic (skipping anything else).
async fn answer(c: &mut V5Client) -> (String, Value) {
    loop {
        match c.recv().await {
            Some(v5::Packet::Publish(p)) => {
                let topic = String::from_utf8(p.topic.to_vec()).unwrap();
                return (topic, serde_json::from_slice(&p.payload).expect("JSON"));
            }
            Some(_) => {}
            None => panic!("the broker closed or said nothing"),
        }
    }
}

async fn connected_v5(fx: &Fixture, b: &BrokerHandle) -> V5Client {
    let (mut c, ack) = V5Client::connect(b.mqtt, client_tls(fx, "thing-1", None), "thing-1").await;
    assert!(ack.is_some());
    // accepted / rejected of get, update and delete, and update/delta.
    assert_eq!(
        c.subscribe("$aws/things/thing-1/shadow/+/+", 1).await,
        vec![v5::SubscribeReasonCode::Success(QoS5::AtLeastOnce)]
    );
    c
}

#[tokio::test]
async fn malformed_oversize_and_too_deep_shadow_documents_are_rejected_not_fatal() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let mut c = connected_v5(&fx, &b).await;
    let update = "$aws/things/thing-1/shadow/update";
    let rejected = "$aws/things/thing-1/shadow/update/rejected";
    let cases: Vec<(Vec<u8>, u64, &str)> = vec![
        (b"{\"state\": {\"reported\": ".to_vec(), 400, "Invalid JSON"),
        (b"\xff\xfe not utf-8".to_vec(), 400, "Invalid JSON"),
        (b"[1, 2]".to_vec(), 400, "Invalid JSON"),
        (
            br#"{"state": {"reported": {"a": 1}}, "clientToken": 7}"#.to_vec(),
            400,
            "Invalid clientToken",
        ),
        (
            br#"{"state": {"desired": {"1": {"2": {"3": {"4": {"5": {"6": {"7": 1}}}}}}}}}"#
                .to_vec(),
            400,
            "JSON contains too many levels of nesting; maximum is 6",
        ),
        (
            format!(
                r#"{{"state": {{"reported": {{"blob": "{}"}}}}}}"#,
                "x".repeat(8 * 1024)
            )
            .into_bytes(),
            413,
            "The payload exceeds the maximum size allowed",
        ),
        (
            format!("{}1{}", "[".repeat(200), "]".repeat(200)).into_bytes(),
            400,
            "Invalid JSON",
        ),
        (
            br#"{"state": {"reported": {"a": 1}}, "version": 5}"#.to_vec(),
            409,
            "Version conflict",
        ),
    ];
    for (i, (payload, code, message)) in cases.into_iter().enumerate() {
        c.publish(update, payload, QoS5::AtMostOnce, 0).await;
        let (topic, body) = answer(&mut c).await;
        assert_eq!(topic, rejected, "case {i}");
        assert_eq!(body["code"], code, "case {i}: {body}");
        assert_eq!(body["message"], message, "case {i}");
    }
    // A get of a shadow that does not exist yet: 404 on get/rejected.
    c.publish(
        "$aws/things/thing-1/shadow/get",
        b"{}".to_vec(),
        QoS5::AtMostOnce,
        0,
    )
    .await;
    let (topic, body) = answer(&mut c).await;
    assert_eq!(topic, "$aws/things/thing-1/shadow/get/rejected");
    assert_eq!(body["code"], 404);
    // The connection and the service are still there: a good update is accepted.
    c.publish(
        update,
        br#"{"state": {"reported": {"a": 1}}, "clientToken": "ok"}"#.to_vec(),
        QoS5::AtLeastOnce,
        9,
    )
    .await;
    match c.recv().await {
        Some(v5::Packet::PubAck(a)) => assert_eq!(a.pkid, 9),
        other => panic!("{other:?}"),
    }
    let (topic, body) = answer(&mut c).await;
    assert_eq!(topic, "$aws/things/thing-1/shadow/update/accepted");
    assert_eq!(body["version"], 1);
    assert_eq!(body["clientToken"], "ok");
    b.stop().await;
}

#[tokio::test]
async fn qos1_to_an_mqtt311_device_is_resent_with_dup_until_its_puback() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let (mut c, _) =
        hub_util::Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1", None)
            .await
            .unwrap();
    let mut s = v4::Subscribe::new("dev/thing-1/cmd", QoS4::AtLeastOnce);
    s.pkid = 1;
    c.send(&v4::Packet::Subscribe(s)).await.unwrap();
    assert!(matches!(
        c.recv(Duration::from_secs(5)).await,
        Some(v4::Packet::SubAck(_))
    ));
    assert_eq!(b.publish("dev/thing-1/cmd", "reboot".into(), 1, false), 1);
    let first = match c.recv(Duration::from_secs(5)).await {
        Some(v4::Packet::Publish(p)) => p,
        other => panic!("{other:?}"),
    };
    assert!(!first.dup);
    // Not acknowledged: the broker sends it again, DUP set, the same packet id.
    let again = match c.recv(Duration::from_secs(10)).await {
        Some(v4::Packet::Publish(p)) => p,
        other => panic!("no redelivery: {other:?}"),
    };
    assert!(again.dup);
    assert_eq!(again.pkid, first.pkid);
    assert_eq!(&again.payload[..], b"reboot");
    c.send(&v4::Packet::PubAck(v4::PubAck::new(first.pkid)))
        .await
        .unwrap();
    // Acknowledged: no more copies.
    assert!(
        c.recv(Duration::from_secs(5)).await.is_none(),
        "sent again after its PUBACK"
    );
    b.stop().await;
}

#[tokio::test]
async fn publishes_past_100_per_second_are_throttled_and_the_connection_stays() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let mut events = b.events();
    let (mut c, _) = V5Client::connect(b.mqtt, client_tls(&fx, "thing-1", None), "thing-1").await;
    // 150 QoS 1 publishes in one write: well within one second.
    let mut burst = bytes::BytesMut::new();
    for pkid in 1..=150u16 {
        let mut p = v5::Publish::new("dev/thing-1/burst", QoS5::AtLeastOnce, vec![b'x'], None);
        p.pkid = pkid;
        v5::Packet::Publish(p).write(&mut burst, None).unwrap();
    }
    c.send_raw(&burst).await;
    let (mut ok, mut quota) = (0, 0);
    while ok + quota < 150 {
        match c.recv().await {
            Some(v5::Packet::PubAck(a)) => match a.reason {
                v5::PubAckReason::Success => ok += 1,
                v5::PubAckReason::QuotaExceeded => quota += 1,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?} after {ok} + {quota} PUBACKs"),
        }
    }
    assert_eq!((ok, quota), (100, 50));
    let mut throttled = 0;
    while let Ok(e) = events.try_recv() {
        if matches!(e, BrokerEvent::Throttled { .. }) {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 50);
    // A second later the connection publishes again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.publish("dev/thing-1/burst", vec![b'y'], QoS5::AtLeastOnce, 151)
        .await;
    match c.recv().await {
        Some(v5::Packet::PubAck(a)) => assert_eq!(a.reason, v5::PubAckReason::Success),
        other => panic!("{other:?}"),
    }
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_round_trip_and_shadow_update() {
    let fx = fixture(&["thing-1"]);
    let b = on_free_port(&fx).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node/aws_device.js");
    let child = sdk_device(&fx, "node", script, b.mqtt.port(), "thing-1");
    let (lines, code) = finished(child).await;
    assert_eq!(code, Some(0), "{lines:?}");
    let step = |name: &str| lines.iter().find(|v| v["step"] == name).cloned();
    let msg = step("message").expect("a message");
    assert_eq!(msg["payload"], "hello from node");
    let shadow = step("shadow").expect("update/accepted");
    assert_eq!(shadow["version"], 1);
    assert_eq!(shadow["clientToken"], "node-1");
    assert_eq!(shadow["reported"], json!({"firmware": "2.1"}));
    b.stop().await;
}
