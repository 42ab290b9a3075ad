//! `chainsmith connect --transport mqtt|mqtt-ws|amqp|amqp-ws` against the local hub started
//! in-process: each transport reports its steps and passes with twin and C2D round trips the
//! hub confirms; a refusal over AMQP gets the hub's reason and the same diagnosis as MQTT.

use crate::connect_support;
use connect_support::*;
use std::path::Path;

fn steps_done(ev: &[serde_json::Value]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["event"] == "step-done")
        .map(|e| e["step"].as_str().unwrap().to_string())
        .collect()
}

fn passes_with_round_trips(transport: &str, own_steps: &[&str]) {
    let (_t, ws) = setup();
    let (ok, ev) = connect(&ws, &["sensor-7", "--count", "3", "--transport", transport]);
    assert!(ok, "{transport}:\n{}", shown(&ev));
    assert_eq!(find(&ev, "start").unwrap()["transport"], transport);
    assert_eq!(steps_done(&ev), own_steps, "{transport}");
    assert_eq!(
        find(&ev, "tls-established").unwrap()["server_verified"],
        true
    );
    let sum = ev.last().unwrap();
    assert_eq!(
        (
            sum["ok"].as_bool(),
            sum["acked"].as_u64(),
            sum["round_trips_seen"].as_u64(),
            sum["hub_recorded"].as_u64()
        ),
        (Some(true), Some(3), Some(6), Some(3)),
        "{transport}:\n{}",
        shown(&ev)
    );
    assert!(find(&ev, "disconnected").is_some());
}

#[test]
fn mqtt_over_websockets_passes() {
    passes_with_round_trips("mqtt-ws", &["web-socket-upgrade"]);
}

#[test]
fn amqp_passes() {
    passes_with_round_trips("amqp", &["amqp-open", "link-attach"]);
}

#[test]
fn amqp_over_websockets_passes() {
    passes_with_round_trips(
        "amqp-ws",
        &["web-socket-upgrade", "amqp-open", "link-attach"],
    );
}

#[test]
fn mqtt_is_still_the_default() {
    passes_with_round_trips("mqtt", &[]);
}

#[test]
fn unregistered_device_over_amqp_gets_the_hubs_reason() {
    let (_t, ws) = setup();
    ok(&ws, &["new", "device", "sensor-8", "--issuer", "Line 2"]);
    let (ok, ev) = connect(&ws, &["sensor-8", "--transport", "amqp"]);
    assert!(!ok, "{}", shown(&ev));
    let f = find(&ev, "failed").expect("failed event");
    assert_eq!(f["step"], "link-attach", "{f:#}");
    assert_eq!(f["code"], "hub-unknown-device", "{f:#}");
    assert!(
        f["fix"]
            .as_str()
            .unwrap()
            .contains("register the device \"sensor-8\" with the hub"),
        "{f:#}"
    );
    assert_eq!(
        f["hint"], "chainsmith hub device add sensor-8 --auth ca",
        "{f:#}"
    );
}

#[test]
fn amqp_to_a_broker_is_refused_with_the_reason() {
    let (_t, ws) = setup();
    let out = bin(&ws)
        .args([
            "connect",
            "sensor-7",
            "--to",
            "mqtts://127.0.0.1:1",
            "--transport",
            "amqp",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mqtt-ws"), "{err}");
}

struct Serve(std::process::Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(ws: &Path, args: &[&str]) -> (Serve, std::process::ChildStderr) {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
        .arg("--workspace")
        .arg(ws)
        .args(["hub", "serve", "--port", "0"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let control = ws.join("hub/control.sock");
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(&control).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "hub serve did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    (Serve(child), stderr)
}

/// `hub serve` defaults to 5671 and 443; when they are taken it listens on free ports and
/// says so, and `connect --transport` dials the ports the running hub reports. With
/// `--amqp-port 0` AMQP is off and `connect --transport amqp` says how to turn it on.
#[test]
fn hub_serve_ports_fall_back_and_connect_follows_the_running_hub() {
    if !crate::isolated::in_own_netns(
        "transport_connect::hub_serve_ports_fall_back_and_connect_follows_the_running_hub",
    ) {
        return;
    }
    let _amqp = std::net::TcpListener::bind("127.0.0.1:5671").unwrap();
    let _ws = std::net::TcpListener::bind("127.0.0.1:443").unwrap();
    let (_t, ws) = setup();
    let (hub, stderr) = serve(&ws, &[]);
    for t in ["amqp", "amqp-ws", "mqtt-ws"] {
        let (ok, ev) = connect(&ws, &["sensor-7", "--count", "2", "--transport", t]);
        assert!(ok, "{t}:\n{}", shown(&ev));
    }
    drop(hub);
    let notes = std::io::read_to_string(stderr).unwrap();
    assert!(notes.contains("cannot listen on port 5671"), "{notes}");
    assert!(notes.contains("cannot listen on port 443"), "{notes}");

    let (_hub, _stderr) = serve(&ws, &["--amqp-port", "0"]);
    let out = bin(&ws)
        .args(["--json", "connect", "sensor-7", "--transport", "amqp"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["error"]["kind"], "transport-off", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("does not listen for AMQP")
            && message.contains("(restart `chainsmith hub serve` with --amqp-port 5671"),
        "{message}"
    );
}
