//! The official Azure IoT device SDK for Python against the local hub: connect with X.509,
//! telemetry with custom properties, twin GET, reported PATCH, C2D and a direct method.
//! The SDK always dials port 8883, so this test binds 127.0.0.1:8883 inside its own network
//! namespace (`isolated::in_own_netns`): a local Mosquitto on 8883 does not get in the way.

use crate::isolated;
use chainsmith_test_support::hub_util;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent};
use chainsmith::ops::ValidityArg;
use hub_util::Fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_python_sdk_full_round() {
    if !isolated::in_own_netns("hub_sdk::azure_python_sdk_full_round") {
        return;
    }
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    fx.device("sdk-dev-1", Some("line2"), ValidityArg::default());
    fx.register("sdk-dev-1", Auth::Ca, None);
    fx.store
        .patch_desired("sdk-dev-1", &serde_json::json!({"interval": 5}))
        .unwrap();
    let chain = fx.chain_file(&["sdk-dev-1", "line2"]);

    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            ..Default::default()
        },
    )
    .await
    .expect("127.0.0.1:8883 is free in this network namespace");
    let mut events = hub.events();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hub_sdk_device.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg("sdk-dev-1")
        .arg(&chain)
        .arg(fx.key_file("sdk-dev-1"))
        .arg(fx.trust_file())
        .stdout(Stdio::piped())
        // Inherited: the SDK's own words when it stops early show in the failure output (and a
        // pipe nobody reads could fill and stall the SDK).
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let stdout = child.stdout.take().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<serde_json::Value>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // A line that is not JSON is kept, so a failure shows it instead of a missing step.
            let v = serde_json::from_str(&line)
                .unwrap_or_else(|_| serde_json::json!({ "unparsed": line }));
            let _ = tx.send(v);
        }
    });
    let mut steps = Vec::new();
    while let Some(v) = next(&mut rx).await {
        let step = v["step"].as_str().unwrap_or("").to_string();
        steps.push(v);
        if step == "ready" {
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
    // The twin the SDK got holds what we set, and the reported patch is in the second GET.
    assert_eq!(find(&steps, "twin")["twin"]["desired"]["interval"], 5);
    assert_eq!(find(&steps, "twin")["twin"]["desired"]["$version"], 2);
    let twin2 = find(&steps, "twin2");
    assert_eq!(twin2["twin"]["reported"]["firmware"], "1.2.3");
    assert_eq!(twin2["twin"]["reported"]["$version"], 2);

    // C2D and a direct method, from the cloud side.
    hub.c2d(
        "sdk-dev-1",
        b"hello device",
        &[("color".to_string(), "blue sky/1".to_string())],
    )
    .unwrap();
    let (status, payload) = hub
        .method(
            "sdk-dev-1",
            "reboot",
            br#"{"delay":2}"#,
            Duration::from_secs(20),
        )
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
    assert!(status.success(), "python exited {status:?}");

    // What the hub recorded: three telemetry messages with system and custom properties.
    let mut telemetry = Vec::new();
    let mut reported = false;
    while let Ok(e) = events.try_recv() {
        match e {
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
    assert!(reported);
    let twin = fx.store.load_twin("sdk-dev-1").unwrap();
    assert_eq!(twin.reported["nested"]["x"], 1);
    hub.shutdown().await;
}

async fn next(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> Option<serde_json::Value> {
    tokio::time::timeout(Duration::from_secs(40), rx.recv())
        .await
        .ok()
        .flatten()
}
