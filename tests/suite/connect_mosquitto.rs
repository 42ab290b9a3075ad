//! `chainsmith connect` against a real Mosquitto broker (mutual TLS, require_certificate,
//! use_identity_as_username) started by the test on 127.0.0.1.

use crate::connect_support;
use connect_support::*;

struct Setup {
    _tmp: tempfile::TempDir,
    ws: std::path::PathBuf,
    root_pem: std::path::PathBuf,
    broker: Mosquitto,
}

/// Workspace chain Test Root -> Line 2 -> sensor-7; the broker trusts Test Root only.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().expect("tmp");
    let ws = chain_workspace(tmp.path());
    let root_pem = ws.join("entities/Test Root/cert.pem");
    let (cert, key) = server_cert(&ws, "Test Root", tmp.path());
    let broker = mosquitto(tmp.path(), &root_pem, &cert, &key);
    Setup {
        ws,
        root_pem,
        broker,
        _tmp: tmp,
    }
}

fn connect(s: &Setup, args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let to = format!("mqtts://127.0.0.1:{}", s.broker.port);
    let out = bin(&s.ws)
        .args([
            "connect",
            "--json",
            "--to",
            &to,
            "--interval",
            "0",
            "--timeout",
            "5s",
        ])
        .arg("--ca")
        .arg(&s.root_pem)
        .args(args)
        .output()
        .expect("run");
    let ev = events(&out.stdout);
    assert!(
        out.stderr.is_empty() || !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), ev)
}

/// The failed event's code, cause and fix; the engine's cause and fix never name a flag or a
/// command (the CLI's `hint` does).
fn diagnosis(ev: &[serde_json::Value]) -> (String, String, String) {
    let f = find(ev, "failed").unwrap_or_else(|| panic!("no failed event in {ev:#?}"));
    for key in ["cause", "fix"] {
        let text = f[key].as_str().unwrap();
        assert!(
            !text.contains("--") && !text.contains("chainsmith "),
            "a flag or command in the engine's {key}: {text}"
        );
    }
    (
        f["code"].as_str().unwrap().into(),
        f["cause"].as_str().unwrap().into(),
        f["fix"].as_str().unwrap().into(),
    )
}

#[test]
fn generic_round_trips_succeed_with_the_full_chain() {
    let s = setup();
    let (ok, ev) = connect(&s, &["sensor-7", "--count", "5"]);
    assert!(ok, "{ev:#?}");
    let tls = find(&ev, "tls-established").expect("tls event");
    assert!(tls["version"].as_str().unwrap().starts_with("TLS 1."));
    assert_eq!(tls["server_verified"], true);
    assert_eq!(tls["client_cert_requested"], true);
    let sent: Vec<&str> = tls["client_chain_sent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(
        sent,
        ["CN=sensor-7", "CN=Line 2"],
        "leaf and intermediate are sent"
    );
    assert!(
        tls["server_cert"]["subject"]
            .as_str()
            .unwrap()
            .contains("test broker")
    );
    assert_eq!(find(&ev, "connack").unwrap()["code"], 0);
    let published: Vec<_> = ev.iter().filter(|e| e["event"] == "published").collect();
    assert_eq!(published.len(), 5);
    for (i, p) in published.iter().enumerate() {
        let body: serde_json::Value = serde_json::from_str(p["payload"].as_str().unwrap()).unwrap();
        assert_eq!(body["deviceId"], "sensor-7");
        assert_eq!(body["messageId"], i as u64);
        assert!(body["temperature"].is_number() && body["humidity"].is_number());
        let alert = body["temperature"].as_f64().unwrap() > 30.0;
        assert_eq!(p["temperature_alert"], alert);
        assert_eq!(
            p["topic"]
                .as_str()
                .unwrap()
                .contains("temperatureAlert=true"),
            alert
        );
        assert!(
            p["ack_ms"].as_f64().is_some(),
            "PUBACK latency for message {i}"
        );
    }
    let rts: Vec<_> = ev.iter().filter(|e| e["event"] == "round-trip").collect();
    assert_eq!(rts.len(), 5);
    assert!(rts.iter().all(|r| r["kind"] == "echo"));
    assert!(find(&ev, "disconnected").is_some());
    let sum = ev.last().unwrap();
    assert_eq!(sum["event"], "summary");
    assert_eq!(
        (
            sum["ok"].as_bool(),
            sum["sent"].as_u64(),
            sum["acked"].as_u64(),
            sum["round_trips_seen"].as_u64(),
            sum["lost"].as_u64()
        ),
        (Some(true), Some(5), Some(5), Some(5), Some(0))
    );
    assert!(
        sum["round_trip_latency"]["p99_ms"].as_f64().unwrap()
            >= sum["round_trip_latency"]["p50_ms"].as_f64().unwrap()
    );
}

#[test]
fn human_output_shows_steps_and_summary() {
    let s = setup();
    let to = format!("mqtts://127.0.0.1:{}", s.broker.port);
    let out = bin(&s.ws)
        .args([
            "connect",
            "sensor-7",
            "--to",
            &to,
            "--interval",
            "0",
            "--count",
            "2",
            "--qos",
            "0",
            "--ca",
        ])
        .arg(&s.root_pem)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    for needle in [
        "resolve",
        "TCP connect",
        "TLS handshake",
        "CONNACK 0 (accepted)",
        "subscribe",
        "round trip",
        "disconnect",
        "summary: 2 sent",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
}

#[test]
fn device_from_an_unknown_ca_is_diagnosed() {
    let s = setup();
    ok(&s.ws, &["new", "root", "Other Root"]);
    ok(
        &s.ws,
        &["new", "device", "rogue-1", "--issuer", "Other Root"],
    );
    let (ok, ev) = connect(&s, &["rogue-1", "--count", "1"]);
    assert!(!ok);
    let (code, cause, fix) = diagnosis(&ev);
    assert_eq!(code, "unknown-ca", "{cause}");
    assert!(
        cause.contains("does not trust the CA that issued \"rogue-1\""),
        "{cause}"
    );
    assert!(fix.contains("Other Root"), "{fix}");
    assert_eq!(ev.last().unwrap()["ok"], false);
}

#[test]
fn expired_device_is_diagnosed() {
    let s = setup();
    ok(
        &s.ws,
        &[
            "new",
            "device",
            "old-1",
            "--issuer",
            "Line 2",
            "--not-after",
            "2021-01-01T00:00:00Z",
        ],
    );
    let (ok, ev) = connect(&s, &["old-1", "--count", "1"]);
    assert!(!ok);
    let lint = find(&ev, "lint").unwrap();
    assert!(
        lint["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "expired"),
        "the pre-flight lint shows it first"
    );
    let (code, cause, fix) = diagnosis(&ev);
    assert_eq!(code, "expired", "{cause}");
    assert!(
        cause.contains("device certificate \"old-1\"") && cause.contains("expired on"),
        "{cause}"
    );
    assert!(fix.contains("renew \"old-1\" in the workspace"), "{fix}");
    assert_eq!(
        find(&ev, "failed").unwrap()["hint"],
        "chainsmith renew old-1"
    );
}

#[test]
fn strict_stops_before_connecting_when_lint_finds_errors() {
    let s = setup();
    ok(
        &s.ws,
        &[
            "new",
            "device",
            "old-2",
            "--issuer",
            "Line 2",
            "--not-after",
            "2021-01-01T00:00:00Z",
        ],
    );
    let (ok, ev) = connect(&s, &["old-2", "--strict"]);
    assert!(!ok);
    assert_eq!(diagnosis(&ev).0, "lint");
    assert_eq!(find(&ev, "failed").unwrap()["hint"], "drop --strict");
    assert!(
        find(&ev, "resolved").is_none(),
        "no network step under --strict"
    );
}

#[test]
fn leaf_without_its_intermediate_is_diagnosed() {
    let s = setup();
    let dir = s.ws.join("entities/sensor-7");
    let (ok, ev) = connect(
        &s,
        &[
            "--cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--key",
            dir.join("key.pem").to_str().unwrap(),
            "--count",
            "1",
        ],
    );
    assert!(!ok);
    let lint = find(&ev, "lint").unwrap();
    assert!(
        lint["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "chain-incomplete")
    );
    let tls_sent =
        find(&ev, "tls-established").map(|t| t["client_chain_sent"].as_array().unwrap().len());
    assert!(tls_sent.is_none() || tls_sent == Some(1));
    let (code, cause, fix) = diagnosis(&ev);
    assert_eq!(code, "chain-incomplete", "{cause}");
    assert!(
        cause.contains("without its intermediate \"Line 2\""),
        "{cause}"
    );
    assert!(fix.contains("Line 2"), "{fix}");
}

#[test]
fn full_chain_file_succeeds_where_the_leaf_alone_fails() {
    let s = setup();
    let dir = s.ws.join("entities");
    let chain = s.ws.join("sensor-7-chain.pem");
    let text = std::fs::read_to_string(dir.join("sensor-7/cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("Line 2/cert.pem")).unwrap();
    std::fs::write(&chain, text).unwrap();
    let (ok, ev) = connect(
        &s,
        &[
            "--cert",
            chain.to_str().unwrap(),
            "--key",
            dir.join("sensor-7/key.pem").to_str().unwrap(),
            "--count",
            "1",
        ],
    );
    assert!(ok, "{ev:#?}");
}

#[test]
fn server_name_mismatch_and_untrusted_server_are_diagnosed() {
    let s = setup();
    // The broker's certificate has only IP:127.0.0.1; "localhost" is another name.
    let out = bin(&s.ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--count",
            "1",
            "--timeout",
            "5s",
            "--to",
            &format!("mqtts://localhost:{}", s.broker.port),
            "--ca",
        ])
        .arg(&s.root_pem)
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    assert!(!out.status.success());
    let (code, cause, fix) = diagnosis(&ev);
    assert_eq!(code, "server-name-mismatch", "{cause}");
    assert!(
        cause.contains("127.0.0.1") && cause.contains("\"localhost\""),
        "{cause}"
    );
    assert!(fix.contains("SAN DNS:localhost"), "{fix}");

    // A named anchor replaces the workspace's roots: trusting "Line 2" alone, the device
    // does not know the test root that vouches for the broker.
    let out = bin(&s.ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--count",
            "1",
            "--to",
            &format!("mqtts://127.0.0.1:{}", s.broker.port),
            "--ca",
            "Line 2",
        ])
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    let (code, cause, fix) = diagnosis(&ev);
    assert_eq!(code, "server-untrusted", "{cause}");
    assert!(cause.contains("Test Root"), "{cause}");
    assert_eq!(
        fix,
        "give the CA \"Test Root\" that issued the broker's certificate as the server's trust anchor"
    );
    assert_eq!(
        find(&ev, "failed").unwrap()["hint"],
        "--ca FILE, the PEM of \"Test Root\" (or --ca NAME for a workspace CA)"
    );
}

#[test]
fn nothing_listening_is_connection_refused() {
    let s = setup();
    let port = free_port();
    let out = bin(&s.ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--to",
            &format!("mqtts://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out.stdout);
    let (code, cause, _) = diagnosis(&ev);
    assert_eq!(code, "connection-refused");
    assert!(
        cause.contains(&format!("nothing listens on 127.0.0.1:{port}")),
        "{cause}"
    );
}

#[test]
fn with_tls_1_2_the_refusal_comes_during_the_handshake() {
    // TLS 1.2: the broker checks the client certificate inside the handshake, so the alert
    // arrives at the handshake step (with TLS 1.3 it arrives while waiting for CONNACK).
    // (Mosquitto 2's tls_version only sets a minimum, so the client insists on 1.2.)
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    let root_pem = ws.join("entities/Test Root/cert.pem");
    let (cert, key) = server_cert(&ws, "Test Root", tmp.path());
    let broker = mosquitto_with(tmp.path(), &root_pem, &cert, &key, "");
    ok(&ws, &["new", "root", "Other Root"]);
    ok(&ws, &["new", "device", "rogue-2", "--issuer", "Other Root"]);
    let to = format!("mqtts://127.0.0.1:{}", broker.port);
    let out = bin(&ws)
        .args([
            "connect",
            "--json",
            "rogue-2",
            "--tls-version",
            "1.2",
            "--count",
            "1",
            "--to",
            &to,
            "--ca",
        ])
        .arg(&root_pem)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out.stdout);
    assert!(find(&ev, "tls-established").is_none(), "{ev:#?}");
    let f = find(&ev, "failed").unwrap();
    assert_eq!(
        (f["step"].as_str(), f["code"].as_str()),
        (Some("tls-handshake"), Some("unknown-ca")),
        "{f:#}"
    );
    assert!(
        f["detail"]
            .as_str()
            .unwrap()
            .contains("during the TLS handshake")
    );

    // And a good device over TLS 1.2 reports the version it negotiated.
    let out = bin(&ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--tls-version",
            "1.2",
            "--count",
            "1",
            "--to",
            &to,
            "--ca",
        ])
        .arg(&root_pem)
        .output()
        .unwrap();
    let ev = events(&out.stdout);
    assert!(out.status.success(), "{ev:#?}");
    assert_eq!(find(&ev, "tls-established").unwrap()["version"], "TLS 1.2");
}
