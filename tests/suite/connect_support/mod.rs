//! Shared by the connect tests: a workspace with a chain made by the real binary, and a real
//! Mosquitto broker on 127.0.0.1 with mutual TLS (`chainsmith_test_support::broker`).
#![allow(dead_code)] // each area uses a different part

use assert_cmd::Command;
use std::path::{Path, PathBuf};

// The broker is shared with the fleet bench; the connect tests take it from here with the rest.
pub use chainsmith_test_support::broker::{
    Mosquitto, free_port, mosquitto, mosquitto_with, server_cert,
};

pub fn bin(ws: &Path) -> Command {
    let mut c = Command::cargo_bin("chainsmith").expect("binary");
    c.arg("--workspace")
        .arg(ws)
        .env_remove("CHAINSMITH_WORKSPACE");
    c
}

pub fn ok(ws: &Path, args: &[&str]) {
    let out = bin(ws).args(args).output().expect("run");
    assert!(
        out.status.success(),
        "chainsmith {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Root "Test Root" -> intermediate "Line 2" -> device "sensor-7".
pub fn chain_workspace(dir: &Path) -> PathBuf {
    let ws = dir.join("ws");
    ok(&ws, &["new", "root", "Test Root"]);
    ok(
        &ws,
        &["new", "intermediate", "Line 2", "--issuer", "Test Root"],
    );
    ok(&ws, &["new", "device", "sensor-7", "--issuer", "Line 2"]);
    ws
}

/// The JSON event lines of `connect --json`.
pub fn events(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect()
}

/// Events as compact JSON, one per line, for a failure message: a log viewer that keeps only
/// part of a long message still shows whole events (the last one says what failed).
pub fn shown(events: &[serde_json::Value]) -> String {
    events
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn find<'a>(events: &'a [serde_json::Value], kind: &str) -> Option<&'a serde_json::Value> {
    events.iter().find(|e| e["event"] == kind)
}

/// Test Root -> Line 2 -> sensor-7 in a new workspace, Test Root uploaded to the local hub and
/// verified, sensor-7 registered (CA-authenticated): the starting point of the local-hub tests.
pub fn setup() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    (tmp, ws)
}

/// `chainsmith connect --json` (no interval, a 5 s timeout) with `args`: whether it passed, and
/// its events. A panic in the child fails the test.
pub fn connect(ws: &Path, args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let out = bin(ws)
        .args(["connect", "--json", "--interval", "0", "--timeout", "5s"])
        .args(args)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.success(), events(&out.stdout))
}
