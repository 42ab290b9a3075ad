//! `chainsmith connect` (default `--to local`) while `chainsmith hub serve` runs for the
//! workspace: it dials the running hub on the port the hub reports through its control
//! socket (`{"op":"status"}`), confirms each message through the hub's monitor stream, and
//! quotes the hub's own refusal reason (`{"op":"refusals"}`).

use crate::connect_support;
use connect_support::*;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn running_hub_serve_is_used_and_confirms_every_message() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    let port = free_port();
    let exe = assert_cmd::cargo::cargo_bin("chainsmith");
    let serve = std::process::Command::new(exe)
        .arg("--workspace")
        .arg(&ws)
        .args(["hub", "serve", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _serve = Serve(serve);
    let control = ws.join("hub/control.sock");
    let start = Instant::now();
    while std::os::unix::net::UnixStream::connect(&control).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "hub serve did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let out = bin(&ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--count",
            "3",
            "--interval",
            "0",
        ])
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:#?}");
    assert_eq!(
        find(&ev, "start").unwrap()["endpoint"],
        format!("127.0.0.1:{port}")
    );
    assert_eq!(find(&ev, "hub-recorded").unwrap()["recorded"], 3);
    assert_eq!(
        ev.iter()
            .filter(|e| e["event"] == "round-trip" && e["kind"] == "twin")
            .count(),
        3
    );

    ok(&ws, &["new", "device", "sensor-9", "--issuer", "Line 2"]);
    let out = bin(&ws)
        .args(["connect", "--json", "sensor-9", "--count", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out.stdout);
    let f = find(&ev, "failed").unwrap();
    assert_eq!(f["code"], "hub-unknown-device");
    let cause = f["cause"].as_str().unwrap();
    assert!(
        cause.contains("the local hub refused \"sensor-9\"") && cause.contains("not registered"),
        "{cause}"
    );
}
