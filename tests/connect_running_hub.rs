//! `chainsmith connect` (default `--to local`) while `chainsmith hub serve` runs for the
//! workspace: it dials the running hub on its configured port (8883, the port IoT Hub
//! clients use, so this one test takes that fixed port), confirms each message through the
//! hub's monitor stream, and explains a refusal from the hub's registry.

mod connect_support;
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
    // Another test (the Azure SDK one) may hold 8883 for a moment: wait for it.
    let start = Instant::now();
    while std::net::TcpListener::bind("127.0.0.1:8883").is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "port 8883 stays busy; this test needs it for `hub serve`"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let exe = assert_cmd::cargo::cargo_bin("chainsmith");
    let serve = std::process::Command::new(exe)
        .arg("--workspace")
        .arg(&ws)
        .args(["hub", "serve", "--port", "8883"])
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
    assert_eq!(find(&ev, "start").unwrap()["endpoint"], "127.0.0.1:8883");
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
    assert_eq!(f["code"], "connack-5");
    let cause = f["cause"].as_str().unwrap();
    assert!(
        cause.contains("its registry shows why") && cause.contains("not registered"),
        "{cause}"
    );
}
