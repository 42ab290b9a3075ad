//! `chainsmith connect` against the local hub started in-process: success with twin and C2D
//! round trips confirmed by the hub's own record, and each refusal reason the hub can give
//! for a client that sends a certificate, turned into the intended diagnosis.

use crate::connect_support;
use connect_support::*;
use std::path::Path;

/// The codes of the pre-flight findings.
fn lint_codes(ev: &[serde_json::Value]) -> Vec<String> {
    find(ev, "lint").expect("lint event")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap().to_string())
        .collect()
}

/// What a refusal said: the engine's cause and fix (domain words) and the CLI's hint.
struct Refusal {
    cause: String,
    fix: String,
    hint: String,
}

/// Connect, expect a refusal of `kind` (and the pre-flight finding `lint` first), return what
/// it said. The engine's sentences never name a flag or a command: that is the hint's job.
fn refused(ws: &Path, args: &[&str], kind: &str, lint: Option<&str>) -> Refusal {
    let (ok, ev) = connect(ws, args);
    assert!(!ok, "{ev:#?}");
    if let Some(code) = lint {
        assert!(
            lint_codes(&ev).iter().any(|c| c == code),
            "pre-flight should find {code}: {:?}",
            lint_codes(&ev)
        );
    }
    let connack = find(&ev, "connack").unwrap_or_else(|| panic!("no CONNACK in {ev:#?}"));
    assert_eq!(connack["code"], 5, "IoT Hub refuses with CONNACK 5");
    let f = find(&ev, "failed").expect("failed event");
    assert_eq!(f["step"], "mqtt-connect");
    assert_eq!(f["code"], format!("hub-{kind}"), "{f:#}");
    let r = Refusal {
        cause: f["cause"].as_str().unwrap().to_string(),
        fix: f["fix"].as_str().unwrap().to_string(),
        hint: f["hint"].as_str().unwrap_or_default().to_string(),
    };
    for text in [&r.cause, &r.fix] {
        assert!(
            !text.contains("--") && !text.contains("chainsmith "),
            "a flag or command in the engine's words: {text}"
        );
    }
    r
}

/// The hint of the pre-flight finding `code`.
fn lint_hint(ev: &[serde_json::Value], code: &str) -> Option<String> {
    find(ev, "lint").expect("lint event")["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == code)?["hint"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn success_with_twin_and_c2d_round_trips_recorded_by_the_hub() {
    let (_t, ws) = setup();
    let (ok, ev) = connect(&ws, &["sensor-7", "--count", "4"]);
    assert!(ok, "{ev:#?}");
    assert!(lint_codes(&ev).is_empty(), "{:?}", lint_codes(&ev));
    let start = find(&ev, "start").unwrap();
    assert_eq!(
        (start["peer"].as_str(), start["flavor"].as_str()),
        (Some("local-hub"), Some("azure"))
    );
    let connack = find(&ev, "connack").unwrap();
    assert_eq!(connack["code"], 0);
    assert!(
        connack["username"]
            .as_str()
            .unwrap()
            .ends_with("/sensor-7/?api-version=2021-04-12")
    );
    let tls = find(&ev, "tls-established").unwrap();
    assert_eq!(tls["server_verified"], true);
    assert_eq!(tls["client_chain_sent"].as_array().unwrap().len(), 2);
    let kinds: Vec<&str> = ev
        .iter()
        .filter(|e| e["event"] == "round-trip")
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "twin").count(), 4);
    assert_eq!(kinds.iter().filter(|k| **k == "c2d").count(), 4);
    let rec = find(&ev, "hub-recorded").unwrap();
    assert_eq!(
        (
            rec["recorded"].as_u64(),
            rec["missing"].as_array().map(Vec::len)
        ),
        (Some(4), Some(0))
    );
    let sum = ev.last().unwrap();
    assert_eq!(
        (
            sum["ok"].as_bool(),
            sum["acked"].as_u64(),
            sum["round_trips_seen"].as_u64(),
            sum["hub_recorded"].as_u64()
        ),
        (Some(true), Some(4), Some(8), Some(4))
    );
}

#[test]
fn qos0_telemetry_passes_on_round_trips_and_the_hubs_record() {
    // QoS 0 telemetry has no PUBACK: the test passes on round trips and the hub's record.
    let (_t, ws) = setup();
    let (ok, ev) = connect(&ws, &["sensor-7", "--count", "2", "--qos", "0"]);
    assert!(ok, "{ev:#?}");
    assert!(
        ev.iter()
            .filter(|e| e["event"] == "published")
            .all(|e| e["ack_ms"].is_null())
    );
}

#[test]
fn unregistered_device() {
    let (_t, ws) = setup();
    ok(&ws, &["new", "device", "sensor-8", "--issuer", "Line 2"]);
    let r = refused(
        &ws,
        &["sensor-8"],
        "unknown-device",
        Some("hub-device-unregistered"),
    );
    assert!(r.cause.contains("not registered"), "{}", r.cause);
    assert_eq!(
        r.fix,
        "register the device \"sensor-8\" with the hub, authenticated by its CA"
    );
    assert_eq!(r.hint, "chainsmith hub device add sensor-8 --auth ca");
    run_hint(&ws, &r.hint);
    let (ok, ev) = connect(&ws, &["sensor-8", "--count", "1"]);
    assert!(ok, "{ev:#?}");
}

#[test]
fn disabled_device() {
    let (_t, ws) = setup();
    ok(&ws, &["hub", "device", "disable", "sensor-7"]);
    let r = refused(&ws, &["sensor-7"], "disabled", Some("hub-device-disabled"));
    assert!(r.cause.contains("disabled"), "{}", r.cause);
    assert_eq!(r.fix, "enable the device \"sensor-7\" on the hub");
    assert_eq!(r.hint, "chainsmith hub device enable sensor-7");
    // The pre-flight finding says it in domain words too, and carries the same hint.
    let (_, ev) = connect(&ws, &["sensor-7"]);
    let lint = find(&ev, "lint").unwrap();
    let finding = lint["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["code"] == "hub-device-disabled")
        .unwrap();
    assert_eq!(
        finding["message"],
        "device \"sensor-7\" is disabled in the local hub; enable it"
    );
    assert_eq!(
        lint_hint(&ev, "hub-device-disabled").as_deref(),
        Some("chainsmith hub device enable sensor-7")
    );
    // The text output: the engine's fix, then the CLI's command with the real name.
    let out = bin(&ws)
        .args(["connect", "sensor-7", "--interval", "0", "--timeout", "5s"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("    fix:   enable the device \"sensor-7\" on the hub\n    hint:  chainsmith hub device enable sensor-7\n"),
        "{text}"
    );
    assert!(
        text.contains("hub-device-disabled: device \"sensor-7\" is disabled in the local hub; enable it\n      hint: chainsmith hub device enable sensor-7\n"),
        "{text}"
    );
    // The hint, run as printed, lets the device in.
    run_hint(&ws, &r.hint);
    let (ok, ev) = connect(&ws, &["sensor-7", "--count", "1"]);
    assert!(ok, "{ev:#?}");
}

#[test]
fn expired_and_not_yet_valid_devices() {
    let (_t, ws) = setup();
    ok(
        &ws,
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
    ok(&ws, &["hub", "device", "add", "old-1", "--auth", "ca"]);
    let r = refused(&ws, &["old-1"], "expired", Some("expired"));
    assert!(r.cause.contains("expired"), "{}", r.cause);
    assert!(
        r.fix.contains("renew \"old-1\" in the workspace"),
        "{}",
        r.fix
    );
    // The lifecycle command, not re-creating the device: pasted as it is, it fixes it.
    assert_eq!(r.hint, "chainsmith renew old-1");
    run_hint(&ws, &r.hint);
    let (renewed, ev) = connect(&ws, &["old-1", "--count", "1"]);
    assert!(renewed, "{ev:#?}");

    ok(
        &ws,
        &[
            "new",
            "device",
            "early-1",
            "--issuer",
            "Line 2",
            "--not-before",
            "2099-01-01T00:00:00Z",
            "--not-after",
            "2099-02-01T00:00:00Z",
        ],
    );
    ok(&ws, &["hub", "device", "add", "early-1", "--auth", "ca"]);
    let r = refused(&ws, &["early-1"], "not-yet-valid", Some("not-yet-valid"));
    assert!(r.cause.contains("not valid yet"), "{}", r.cause);
}

#[test]
fn unverified_ca() {
    let (_t, ws) = setup();
    ok(&ws, &["new", "root", "Fresh Root"]);
    ok(&ws, &["new", "device", "fresh-1", "--issuer", "Fresh Root"]);
    ok(&ws, &["hub", "ca", "add", "Fresh Root"]);
    ok(&ws, &["hub", "device", "add", "fresh-1", "--auth", "ca"]);
    let r = refused(&ws, &["fresh-1"], "unverified", Some("ca-unverified"));
    assert!(r.cause.contains("not verified"), "{}", r.cause);
    assert!(
        r.fix.contains(
            "prove possession of \"Fresh Root\" to the hub with a verification certificate"
        ),
        "{}",
        r.fix
    );
    assert_eq!(r.hint, "chainsmith hub ca prove 'Fresh Root'");
    run_hint(&ws, &r.hint);
    let (ok, ev) = connect(&ws, &["fresh-1", "--count", "1"]);
    assert!(ok, "{ev:#?}");
}

#[test]
fn root_unknown_to_the_hub() {
    let (_t, ws) = setup();
    ok(&ws, &["new", "root", "Other Root"]);
    ok(&ws, &["new", "device", "rogue-1", "--issuer", "Other Root"]);
    ok(&ws, &["hub", "device", "add", "rogue-1", "--auth", "ca"]);
    // Devices do not send their root, so IoT Hub cannot tell a missing intermediate from an
    // unregistered root; the local hub asks the workspace, and says "root" (issue 21).
    let r = refused(&ws, &["rogue-1"], "unknown-root", Some("ca-not-trusted"));
    assert!(r.cause.contains("root \"Other Root\""), "{}", r.cause);
    assert!(
        r.fix
            .contains("register the CA \"Other Root\" with the hub"),
        "{}",
        r.fix
    );
    assert_eq!(r.hint, "chainsmith hub ca prove 'Other Root'");
    run_hint(&ws, &r.hint);
    let (ok, ev) = connect(&ws, &["rogue-1", "--count", "1"]);
    assert!(ok, "{ev:#?}");
}

#[test]
fn leaf_sent_without_its_intermediate() {
    let (_t, ws) = setup();
    let dir = ws.join("entities/sensor-7");
    let r = refused(
        &ws,
        &[
            "--cert",
            dir.join("cert.pem").to_str().unwrap(),
            "--key",
            dir.join("key.pem").to_str().unwrap(),
        ],
        "missing-intermediate",
        Some("chain-short-of-trusted-ca"),
    );
    assert!(r.cause.contains("Line 2"), "{}", r.cause);
    assert!(
        r.fix.contains("send \"Line 2\" after the leaf"),
        "{}",
        r.fix
    );
    assert_eq!(
        r.hint,
        "append \"Line 2\" to the --cert file after the leaf"
    );
}

/// Run a hint's command as a user would paste it into a shell (words split at spaces outside
/// single quotes).
fn run_hint(ws: &Path, hint: &str) {
    let (mut words, mut cur, mut quoted) = (Vec::new(), String::new(), false);
    for c in hint.chars() {
        match c {
            '\'' => quoted = !quoted,
            ' ' if !quoted => words.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    words.push(cur);
    assert_eq!(words[0], "chainsmith", "not a command: {hint:?}");
    let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    ok(ws, &args);
}

#[test]
fn self_signed_thumbprint_mismatch() {
    let (_t, ws) = setup();
    ok(&ws, &["new", "device", "ss-1", "--self-signed"]);
    ok(&ws, &["new", "device", "ss-2", "--self-signed"]);
    ok(
        &ws,
        &[
            "hub",
            "device",
            "add",
            "ss-1",
            "--auth",
            "self-signed",
            "--from",
            "ss-2",
        ],
    );
    let r = refused(&ws, &["ss-1"], "thumbprint", Some("hub-thumbprint"));
    assert!(
        r.cause.contains("thumbprint matches neither slot"),
        "{}",
        r.cause
    );
    // The hub's own reason and the diagnosis say the fix in domain words; the hint names the
    // command.
    assert!(
        r.cause
            .contains("put that thumbprint in one of the device's slots"),
        "{}",
        r.cause
    );
    assert!(
        r.fix
            .contains("take both slots from the workspace device \"ss-1\""),
        "{}",
        r.fix
    );
    assert_eq!(r.hint, "chainsmith hub device update ss-1 --from ss-1");
    // The hint, pasted as it is, makes the device connect.
    run_hint(&ws, &r.hint);
    let (ok, ev) = connect(&ws, &["ss-1", "--count", "1"]);
    assert!(ok, "{ev:#?}");
}

#[test]
fn rolling_one_slot_of_a_two_slot_device() {
    // Both slots registered from the workspace device; roll the primary in the workspace:
    // the hub refuses the new certificate until the pasted fix updates the slots.
    let (_t, ws) = setup();
    ok(&ws, &["new", "device", "duo-1", "--self-signed"]);
    ok(
        &ws,
        &[
            "new",
            "device",
            "duo-1",
            "--self-signed",
            "--slot",
            "secondary",
        ],
    );
    ok(
        &ws,
        &[
            "hub",
            "device",
            "add",
            "duo-1",
            "--auth",
            "self-signed",
            "--from",
            "duo-1",
        ],
    );
    let (ok1, ev) = connect(&ws, &["duo-1", "--count", "1"]);
    assert!(ok1, "{ev:#?}");
    ok(
        &ws,
        &[
            "new",
            "device",
            "duo-1",
            "--self-signed",
            "--slot",
            "primary",
            "--force",
        ],
    );
    let r = refused(&ws, &["duo-1"], "thumbprint", Some("hub-thumbprint"));
    run_hint(&ws, &r.hint);
    let (ok2, ev) = connect(&ws, &["duo-1", "--count", "1"]);
    assert!(ok2, "{ev:#?}");
}

#[test]
fn cn_that_differs_from_the_device_id() {
    let (_t, ws) = setup();
    // A device whose CN is not its id. sign-csr gives a certificate the CN of the name it is
    // signed for (issue 21), so the entity is made by hand, as a user editing the workspace
    // would: entity "other-name" copied to "cnx-1", with the CSR's key.
    let (key, csr) = crate::common::openssl_csr(&ws, "other-name", &[]);
    ok(
        &ws,
        &["sign-csr", csr.to_str().unwrap(), "--issuer", "Line 2"],
    );
    let (from, to) = (ws.join("entities/other-name"), ws.join("entities/cnx-1"));
    std::fs::create_dir(&to).unwrap();
    for f in std::fs::read_dir(&from).unwrap().flatten() {
        if f.path().is_file() {
            std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
        }
    }
    std::fs::copy(&key, to.join("key.pem")).unwrap();
    let w = chainsmith::store::Workspace::open(&ws).unwrap();
    w.update_meta("cnx-1", |m| {
        m.name = "cnx-1".into();
        m.has_key = true;
    })
    .unwrap();
    ok(&ws, &["hub", "device", "add", "cnx-1", "--auth", "ca"]);
    let (ok, ev) = connect(&ws, &["cnx-1"]);
    assert!(!ok);
    let lint = find(&ev, "lint").unwrap();
    assert!(
        lint["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "cn-mismatch"),
        "the pre-flight lint names it first"
    );
    let f = find(&ev, "failed").unwrap();
    assert_eq!(f["code"], "hub-cn-mismatch", "{f:#}");
    assert!(f["cause"].as_str().unwrap().contains("other-name"));
    assert!(f["fix"].as_str().unwrap().contains("CN = \"cnx-1\""));
}

#[test]
fn telemetry_is_in_the_seed_format_with_the_alert_property_on_every_message() {
    // DOMAIN.md §5: {"deviceId":"dev1","messageId":0,"temperature":27,"humidity":71}, integers,
    // keys in that order, and temperatureAlert = "true" above 30, "false" otherwise — always sent.
    let (_t, ws) = setup();
    let (ok, ev) = connect(&ws, &["sensor-7", "--count", "6"]);
    assert!(ok, "{ev:#?}");
    let published: Vec<&serde_json::Value> =
        ev.iter().filter(|e| e["event"] == "published").collect();
    assert_eq!(published.len(), 6, "{ev:#?}");
    for (i, p) in published.iter().enumerate() {
        let payload = p["payload"].as_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(payload).unwrap();
        let t = v["temperature"]
            .as_u64()
            .unwrap_or_else(|| panic!("integer temperature: {payload}"));
        let h = v["humidity"]
            .as_u64()
            .unwrap_or_else(|| panic!("integer humidity: {payload}"));
        assert_eq!(
            payload,
            format!(
                r#"{{"deviceId":"sensor-7","messageId":{i},"temperature":{t},"humidity":{h}}}"#
            )
        );
        assert!(
            (20..=35).contains(&t) && (60..=80).contains(&h),
            "{payload}"
        );
        let alert = t > 30;
        let topic = p["topic"].as_str().unwrap();
        assert!(
            topic.starts_with("devices/sensor-7/messages/events/")
                && topic.contains(&format!("temperatureAlert={alert}")),
            "{topic} for {payload}"
        );
        assert_eq!(p["temperature_alert"], alert);
    }
}
