//! The official device SDKs over every transport but plain MQTT, against the local hub: the
//! Node SDK's `Amqp`, `AmqpWs` and `MqttWs` transports and the Python SDK with
//! `websockets=True`, each with X.509: connect, telemetry with properties, twin get and
//! reported patch, C2D and a direct method. The SDKs dial fixed ports (5671, 443), so each
//! test runs in its own network namespace.

use crate::isolated;
use chainsmith_test_support::hub_util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use hub_util::Fixture;

const NODE_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node");

fn sdk_hub_config() -> HubConfig {
    HubConfig {
        port: 8883,
        amqp_port: Some(5671),
        websocket_port: Some(443),
        ..Default::default()
    }
}

/// A registered CA-signed device with a desired property set; returns its chain file.
fn fixture(id: &str) -> (Fixture, std::path::PathBuf) {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device(id, Some("line2"), ValidityArg::default());
    fx.register(id, Auth::Ca, None);
    fx.store
        .patch_desired(id, &serde_json::json!({"interval": 5}))
        .unwrap();
    let chain = fx.chain_file(&[id, "line2"]);
    (fx, chain)
}

/// JSON lines of a child's stdout, as they come.
fn lines(
    child: &mut std::process::Child,
) -> tokio::sync::mpsc::UnboundedReceiver<serde_json::Value> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // A line that is not JSON is kept, so a failure shows it instead of a missing step.
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
            let _ = tx.send(v);
        }
    });
    rx
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> Option<serde_json::Value> {
    tokio::time::timeout(Duration::from_secs(40), rx.recv())
        .await
        .ok()
        .flatten()
}

/// Drive the scenario: wait for "ready", send C2D and call a method, wait for "done"; then
/// check what the SDK and the hub saw.
async fn scenario(
    hub: HubHandle,
    fx: &Fixture,
    id: &str,
    mut child: std::process::Child,
    twin_has_version: bool,
    amqp: bool,
) {
    let mut events = hub.events();
    let mut rx = lines(&mut child);
    let mut steps = Vec::new();
    while let Some(v) = next(&mut rx).await {
        let step = v["step"].as_str().unwrap_or("").to_string();
        steps.push(v);
        if step == "ready" || step == "error" {
            break;
        }
    }
    let find = |steps: &[serde_json::Value], s: &str| {
        steps
            .iter()
            .find(|v| v["step"] == s)
            .cloned()
            .unwrap_or_else(|| panic!("SDK never reached {s:?}; steps {steps:?}"))
    };
    let twin = find(&steps, "twin");
    assert_eq!(twin["twin"]["desired"]["interval"], 5, "{twin}");
    if twin_has_version {
        assert_eq!(twin["twin"]["desired"]["$version"], 2);
    }
    let mut rejected_id = None;
    let mut abandoned_id = None;
    if amqp {
        // Settlement over AMQP: a rejected and an abandoned message before the completed one.
        let settle = |how: &str| vec![("settle".to_string(), how.to_string())];
        rejected_id = Some(hub.c2d(id, b"no", &settle("reject")).unwrap().0);
        abandoned_id = Some(hub.c2d(id, b"later", &settle("abandon")).unwrap().0);
    }
    hub.c2d(
        id,
        b"hello device",
        &[("color".to_string(), "blue sky/1".to_string())],
    )
    .unwrap();
    let (status, payload) = hub
        .method(id, "reboot", br#"{"delay":2}"#, Duration::from_secs(20))
        .await
        .expect("method answered");
    assert_eq!(status, 200);
    let payload: serde_json::Value = serde_json::from_slice(&payload).unwrap();
    assert_eq!(payload["rebooted"], true);
    assert_eq!(payload["echo"]["delay"], 2);
    while let Some(v) = next(&mut rx).await {
        let done = v["step"] == "done";
        steps.push(v);
        if done {
            break;
        }
    }
    let c2d = find(&steps, "c2d");
    assert_eq!(c2d["data"], "hello device");
    assert_eq!(c2d["props"]["color"], "blue sky/1");
    assert_eq!(find(&steps, "done")["ok"], true);
    let status = child.wait().unwrap();
    assert!(status.success(), "device exited {status:?}");

    let mut telemetry = Vec::new();
    let mut reported = false;
    let mut settled = Vec::new();
    while let Ok(e) = events.try_recv() {
        match e {
            HubEvent::C2dSettled {
                message_id,
                outcome,
                ..
            } => settled.push((message_id, outcome)),
            HubEvent::Telemetry { properties, .. } => telemetry.push(properties),
            HubEvent::TwinReported { patch, .. } => reported = patch["nested"]["x"] == 1,
            _ => {}
        }
    }
    assert_eq!(telemetry.len(), 3, "{telemetry:?}");
    let p = &telemetry[2];
    assert_eq!(p.message_id(), Some("msg-2"));
    assert_eq!(p.content_type(), Some("application/json"));
    assert_eq!(p.content_encoding(), Some("utf-8"));
    assert_eq!(p.get("temperatureAlert"), Some("true"));
    assert_eq!(p.get("slash/and space"), Some("a&b=c"));
    assert_system_and_application_split(p, amqp);
    assert!(reported);
    assert_eq!(fx.store.load_twin(id).unwrap().reported["nested"]["x"], 1);
    if amqp {
        let count = |mid: &Option<String>, o: &str| {
            settled
                .iter()
                .filter(|(m, x)| Some(m) == mid.as_ref() && *x == o)
                .count()
        };
        assert_eq!(count(&rejected_id, "rejected"), 1, "{settled:?}");
        // Abandoned: delivered again, up to IoT Hub's maximum delivery count, then dead-lettered.
        assert_eq!(count(&abandoned_id, "abandoned"), 10, "{settled:?}");
        assert_eq!(count(&abandoned_id, "dead-lettered"), 1, "{settled:?}");
        assert!(
            settled.iter().any(|(_, o)| *o == "completed"),
            "{settled:?}"
        );
    }
    hub.shutdown().await;
}

/// The shape `hub monitor` shows (it splits with the same `Properties::system` and
/// `application`): the SDK's message id, correlation id, content type and encoding are system
/// properties whatever the transport, and only the two custom properties are application
/// properties. Over AMQP the Node SDK also stamps `to` (its telemetry address), a system
/// property too.
fn assert_system_and_application_split(p: &chainsmith::azure::Properties, amqp: bool) {
    let system: std::collections::BTreeMap<_, _> = p.system().collect();
    let mut expected: std::collections::BTreeMap<&str, &str> = [
        ("message_id", "msg-2"),
        ("correlation_id", "corr-2"),
        ("content_type", "application/json"),
        ("content_encoding", "utf-8"),
    ]
    .into_iter()
    .collect();
    if amqp {
        expected.insert("to", "/devices/node-dev-1/messages/events");
    }
    assert_eq!(system, expected, "system properties of {p:?}");
    let mut app: Vec<_> = p.application().collect();
    app.sort();
    assert_eq!(
        app,
        [("slash/and space", "a&b=c"), ("temperatureAlert", "true")],
        "application properties of {p:?}"
    );
}

fn node(transport: &str, fx: &Fixture, id: &str, chain: &std::path::Path) -> std::process::Child {
    Command::new("node")
        .current_dir(NODE_DIR)
        .arg("transport_device.js")
        .arg(transport)
        .arg(id)
        .arg(chain)
        .arg(fx.key_file(id))
        .arg(fx.trust_file())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node")
}

async fn node_round(test: &str, transport: &str) {
    if !isolated::in_own_netns(test) {
        return;
    }
    let id = "node-dev-1";
    let (fx, chain) = fixture(id);
    let hub = Hub::start(fx.root(), sdk_hub_config())
        .await
        .expect("ports free in this namespace");
    let child = node(transport, &fx, id, &chain);
    scenario(hub, &fx, id, child, false, transport.starts_with("Amqp")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_amqp_full_round() {
    node_round("transport_sdk::node_sdk_amqp_full_round", "Amqp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_amqp_ws_full_round() {
    node_round("transport_sdk::node_sdk_amqp_ws_full_round", "AmqpWs").await;
}

/// The same scenario over plain MQTT (8883): the differential for the property split.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_mqtt_full_round() {
    node_round("transport_sdk::node_sdk_mqtt_full_round", "Mqtt").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_mqtt_ws_full_round() {
    node_round("transport_sdk::node_sdk_mqtt_ws_full_round", "MqttWs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_websockets_full_round() {
    if !isolated::in_own_netns("transport_sdk::python_sdk_websockets_full_round") {
        return;
    }
    let id = "py-ws-1";
    let (fx, chain) = fixture(id);
    let hub = Hub::start(
        fx.root(),
        HubConfig {
            // Nothing on 8883: the SDK must use the WebSocket on 443.
            port: 0,
            websocket_port: Some(443),
            ..Default::default()
        },
    )
    .await
    .expect("443 free in this namespace");
    let child = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/hub_sdk_device.py"
        ))
        .arg(id)
        .arg(&chain)
        .arg(fx.key_file(id))
        .arg(fx.trust_file())
        .arg("websockets")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    scenario(hub, &fx, id, child, true, false).await;
}

/// Refusals over AMQP reach the Node SDK as `UnauthorizedError` and it stops (no retrying
/// forever); the hub logs the reason, as for MQTT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_sdk_amqp_refusals_stop_with_unauthorized_and_the_hub_says_why() {
    if !isolated::in_own_netns(
        "transport_sdk::node_sdk_amqp_refusals_stop_with_unauthorized_and_the_hub_says_why",
    ) {
        return;
    }
    let (fx, _) = fixture("good-1");
    fx.device("unreg-1", Some("line2"), ValidityArg::default());
    fx.device("off-1", Some("line2"), ValidityArg::default());
    fx.register("off-1", Auth::Ca, None);
    fx.store.set_enabled("off-1", false).unwrap();
    chainsmith::ops::new_ca(
        &fx.ws,
        &chainsmith_test_support::workspace::ca_req("other", Some("Other Root"), None),
    )
    .unwrap();
    fx.device("rogue-1", Some("other"), ValidityArg::default());
    fx.register("rogue-1", Auth::Ca, None);
    let hub = Hub::start(fx.root(), sdk_hub_config())
        .await
        .expect("ports free");
    let mut events = hub.events();
    for (id, issuer, kind) in [
        ("unreg-1", "line2", "unknown-device"),
        ("off-1", "line2", "disabled"),
        ("rogue-1", "other", ""),
    ] {
        let chain = fx.chain_file(&[id, issuer]);
        let mut child = node("Amqp", &fx, id, &chain);
        let mut rx = lines(&mut child);
        let mut error = None;
        while let Some(v) = next(&mut rx).await {
            if v["step"] == "error" {
                error = Some(v);
                break;
            }
        }
        let error = error.unwrap_or_else(|| panic!("{id}: the SDK never reported an error"));
        assert_eq!(error["name"], "UnauthorizedError", "{id}: {error}");
        // It stops: the process ends on its own.
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                assert_eq!(s.code(), Some(2), "{id}");
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id}: the SDK kept going"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let refused = loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Ok(HubEvent::Refused {
                    device,
                    kind,
                    reason,
                    ..
                })) if device.as_deref() == Some(id) => break (kind, reason),
                Ok(Ok(_)) => continue,
                other => panic!("{id}: no refusal logged: {other:?}"),
            }
        };
        if !kind.is_empty() {
            assert_eq!(refused.0, kind, "{id}: {refused:?}");
        }
        assert!(refused.1.contains(id), "{id}: {refused:?}");
        assert!(
            error["detail"].as_str().unwrap_or("").contains(&refused.1),
            "{id}: the SDK's error carries the hub's sentence: {error} vs {refused:?}"
        );
    }
    hub.shutdown().await;
}
