//! `connect --transport mqtt-ws` against an independent broker: the npm `aedes` broker behind
//! a TLS WebSocket server (the `ws` package) with client certificates required, started and
//! stopped by the test (Debian's Mosquitto 2.0.11 cannot open a websockets listener here).

use crate::connect_support;
use connect_support::*;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn aedes(cert: &std::path::Path, key: &std::path::Path, ca: &std::path::Path) -> (Broker, u16) {
    let mut child = Command::new("node")
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node"))
        .arg("aedes_wss_broker.mjs")
        .args([cert, key, ca])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("the broker prints its port");
    let v: serde_json::Value =
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    (Broker(child), v["port"].as_u64().unwrap() as u16)
}

#[test]
fn mqtt_over_websockets_against_aedes_with_echo_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    let root_pem = ws.join("entities/Test Root/cert.pem");
    let (cert, key) = server_cert(&ws, "Test Root", tmp.path());
    let (_broker, port) = aedes(&cert, &key, &root_pem);
    let to = format!("wss://127.0.0.1:{port}/mqtt");
    let out = bin(&ws)
        .args([
            "connect",
            "sensor-7",
            "--json",
            "--interval",
            "0",
            "--count",
            "3",
        ])
        .args(["--to", &to, "--transport", "mqtt-ws", "--ca", "Test Root"])
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    assert!(
        out.status.success(),
        "{ev:#?}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let start = find(&ev, "start").unwrap();
    assert_eq!(
        (start["peer"].as_str(), start["flavor"].as_str()),
        (Some("broker"), Some("generic"))
    );
    let up = find(&ev, "step-done").unwrap();
    assert_eq!(up["detail"], "/mqtt, subprotocol mqtt");
    let sum = ev.last().unwrap();
    assert_eq!(
        (sum["acked"].as_u64(), sum["round_trips_seen"].as_u64()),
        (Some(3), Some(3))
    );

    // The wrong path: the upgrade is refused and the diagnosis names the step.
    let out = bin(&ws)
        .args([
            "connect",
            "sensor-7",
            "--json",
            "--interval",
            "0",
            "--count",
            "1",
        ])
        .args([
            "--to",
            &format!("wss://127.0.0.1:{port}/nope"),
            "--transport",
            "mqtt-ws",
            "--ca",
            "Test Root",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let ev = events(&out.stdout);
    let f = find(&ev, "failed").unwrap();
    assert_eq!(f["step"], "web-socket-upgrade", "{f:#}");
}
