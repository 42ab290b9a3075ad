//! `{"op":"status"}` / `{"op":"refusals"}` on a running `hub serve`, and `connect --to local`
//! against it: it dials the address and port the hub reports (not 8883), expects the C2D
//! echo when the hub runs with `--echo`, and quotes the hub's own refusal sentence.
//! Real binaries throughout: the hub in a child process, connect as a second one.

use crate::connect_support;
use connect_support::*;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `hub serve --port P` plus `extra` on a free port P, waited for until its control socket
/// answers. A hub that exits first (its port taken between `free_port` and its bind, as
/// another process's outgoing connections can take it on 0.0.0.0) is started again on another
/// port; its standard error is in the panic otherwise.
fn serve(ws: &Path, extra: &[&str]) -> (Serve, u16) {
    let exe = assert_cmd::cargo::cargo_bin("chainsmith");
    let control = ws.join("hub/control.sock");
    let mut last = String::new();
    for _ in 0..5 {
        let port = free_port();
        let child = std::process::Command::new(&exe)
            .arg("--workspace")
            .arg(ws)
            .env_remove("CHAINSMITH_WORKSPACE")
            .args(["hub", "serve", "--port", &port.to_string()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut serve = Serve(child);
        let start = Instant::now();
        loop {
            if UnixStream::connect(&control).is_ok() {
                return (serve, port);
            }
            if let Some(status) = serve.0.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                let _ = serve.0.stderr.take().unwrap().read_to_string(&mut err);
                last = format!("{status}: {err}");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "hub serve did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    panic!("hub serve exited five times; the last said {last}");
}

/// One control request line, one answer line.
fn control(ws: &Path, request: &str) -> serde_json::Value {
    let mut s = UnixStream::connect(ws.join("hub/control.sock")).unwrap();
    s.write_all(format!("{request}\n").as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
}

fn connect(ws: &Path, device: &str, count: &str) -> (Option<i32>, Vec<serde_json::Value>) {
    let out = bin(ws)
        .args([
            "connect",
            "--json",
            device,
            // Spelled out, as the docs show it (connect_running_hub.rs covers the default).
            "--to",
            "local",
            "--count",
            count,
            "--interval",
            "0",
        ])
        .output()
        .unwrap();
    (out.status.code(), events(&out.stdout))
}

#[test]
fn status_op_reports_address_echo_hostname_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    let (_hub, port) = serve(&ws, &["--echo", "--hostname", "hub.test"]);

    let s = control(&ws, r#"{"op":"status"}"#);
    let st = &s["ok"];
    assert_eq!(st["addr"], format!("127.0.0.1:{port}"), "{s}");
    assert_eq!(st["port"], port);
    assert_eq!(st["echo"], true);
    assert_eq!(st["hostname"], "hub.test");
    assert_eq!(st["last_refusal"], 0);
    assert_eq!(st["refusals"].as_array().unwrap().len(), 0);

    // Two refusals for different devices: both remembered, in order, with the hub's sentence.
    ok(&ws, &["hub", "device", "disable", "sensor-7"]);
    assert_eq!(connect(&ws, "sensor-7", "1").0, Some(1));
    ok(&ws, &["new", "device", "sensor-9", "--issuer", "Line 2"]);
    assert_eq!(connect(&ws, "sensor-9", "1").0, Some(1));

    let s = control(&ws, r#"{"op":"status"}"#);
    let st = &s["ok"];
    assert_eq!(st["last_refusal"], 2, "{s}");
    let r = st["refusals"].as_array().unwrap();
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["seq"], 1);
    assert_eq!(r[0]["device"], "sensor-7");
    assert_eq!(r[0]["kind"], "disabled");
    assert!(r[0]["reason"].as_str().unwrap().contains("disabled"), "{s}");
    assert!(r[0]["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(
        time::OffsetDateTime::parse(
            r[0]["time"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339
        )
        .is_ok(),
        "{s}"
    );
    assert_eq!(r[1]["device"], "sensor-9");
    assert_eq!(r[1]["kind"], "unknown-device");

    // The refusals op filters by device and by seq.
    let f = control(&ws, r#"{"op":"refusals","device":"sensor-9"}"#);
    let f = f["ok"].as_array().unwrap().clone();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0]["seq"], 2);
    let f = control(&ws, r#"{"op":"refusals","since":2}"#);
    assert_eq!(f["ok"].as_array().unwrap().len(), 0, "{f}");
    let f = control(&ws, r#"{"op":"refusals","since":1}"#);
    assert_eq!(f["ok"][0]["device"], "sensor-9", "{f}");

    // A request the hub does not know gets an error line, not silence.
    let bad = control(&ws, r#"{"op":"stats"}"#);
    assert!(
        bad["error"].as_str().unwrap().contains("bad request"),
        "{bad}"
    );
}

#[test]
fn connect_uses_the_reported_port_echo_and_the_hubs_own_refusal_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    let (_hub, port) = serve(&ws, &["--echo"]);

    // Success: the reported port, twin and C2D echo round trips, the hub's record.
    let (code, ev) = connect(&ws, "sensor-7", "3");
    assert_eq!(code, Some(0), "{ev:#?}");
    assert_eq!(
        find(&ev, "start").unwrap()["endpoint"],
        format!("127.0.0.1:{port}")
    );
    let trips = |kind: &str| {
        ev.iter()
            .filter(|e| e["event"] == "round-trip" && e["kind"] == kind)
            .count()
    };
    assert_eq!(trips("twin"), 3, "{ev:#?}");
    assert_eq!(trips("c2d"), 3, "{ev:#?}");
    assert_eq!(find(&ev, "hub-recorded").unwrap()["recorded"], 3);
    let summary = find(&ev, "summary").unwrap();
    assert_eq!(summary["round_trips_seen"], 6, "{summary}");
    assert_eq!(summary["round_trips_expected"], 6, "{summary}");

    // A disabled device: the diagnosis quotes the sentence the hub itself recorded.
    ok(&ws, &["hub", "device", "disable", "sensor-7"]);
    let (code, ev) = connect(&ws, "sensor-7", "1");
    assert_eq!(code, Some(1));
    let f = find(&ev, "failed").unwrap();
    assert_eq!(f["code"], "hub-disabled", "{f}");
    let hub = control(&ws, r#"{"op":"refusals","device":"sensor-7"}"#);
    let reason = hub["ok"][0]["reason"].as_str().unwrap().to_string();
    let cause = f["cause"].as_str().unwrap();
    assert!(cause.ends_with(&reason), "{cause} / {reason}");
    assert!(!cause.contains("its registry shows why"), "{cause}");
    assert_eq!(f["fix"], "enable the device \"sensor-7\" on the hub", "{f}");
    assert_eq!(f["hint"], "chainsmith hub device enable sensor-7", "{f}");

    // An unregistered device gets the hub's own sentence too, not an older refusal's.
    ok(&ws, &["new", "device", "sensor-9", "--issuer", "Line 2"]);
    let (code, ev) = connect(&ws, "sensor-9", "1");
    assert_eq!(code, Some(1));
    let f = find(&ev, "failed").unwrap();
    assert_eq!(f["code"], "hub-unknown-device", "{f}");
    let hub = control(&ws, r#"{"op":"refusals","device":"sensor-9"}"#);
    let reason = hub["ok"][0]["reason"].as_str().unwrap();
    assert!(f["cause"].as_str().unwrap().ends_with(reason), "{f}");
}

/// Without `--echo` only twin round trips are expected; a hub bound to every interface is
/// dialled on loopback, at the port it reports.
#[test]
fn connect_without_echo_expects_only_twin_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    ok(&ws, &["hub", "ca", "add", "Test Root", "--verified"]);
    ok(&ws, &["hub", "device", "add", "sensor-7", "--auth", "ca"]);
    let (_hub, port) = serve(&ws, &["--bind", "0.0.0.0"]);
    let st = control(&ws, r#"{"op":"status"}"#);
    assert_eq!(st["ok"]["echo"], false, "{st}");
    assert_eq!(st["ok"]["addr"], format!("0.0.0.0:{port}"), "{st}");
    assert!(st["ok"]["hostname"].is_null(), "{st}");
    let (code, ev) = connect(&ws, "sensor-7", "2");
    assert_eq!(code, Some(0), "{ev:#?}");
    assert_eq!(
        find(&ev, "start").unwrap()["endpoint"],
        format!("127.0.0.1:{port}")
    );
    let summary = find(&ev, "summary").unwrap();
    assert_eq!(summary["round_trips_expected"], 2, "{summary}");
    assert_eq!(summary["round_trips_seen"], 2, "{summary}");
}
