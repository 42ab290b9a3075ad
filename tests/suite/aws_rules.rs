//! AWS's refusals as the official Python SDK (tests/aws_sdk_device.py) sees them through the
//! real `chainsmith aws serve`, the workspace set up with the real `chainsmith aws …` commands.
//! One serve per case (it reads the registry when it starts), on free ports, so no namespace.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

use crate::common::Ws;

/// A policy allowing `iot:Connect` for client ids `allowed` and everything else on `dev/*`,
/// except publishing to `dev/*/forbidden`, with `*` for region and account as AWS accepts.
fn policy_doc(connect_client: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": "iot:Connect",
             "Resource": format!("arn:aws:iot:*:*:client/{connect_client}")},
            {"Effect": "Allow", "Action": ["iot:Publish", "iot:Receive"],
             "Resource": "arn:aws:iot:*:*:topic/dev/*"},
            {"Effect": "Allow", "Action": "iot:Subscribe",
             "Resource": "arn:aws:iot:*:*:topicfilter/dev/*"},
            {"Effect": "Deny", "Action": "iot:Publish",
             "Resource": "arn:aws:iot:*:*:topic/dev/*/forbidden"}
        ]
    })
    .to_string()
}

/// `aws policy create NAME` from the document `doc`.
pub fn create_policy(w: &Ws, name: &str, doc: &str) {
    let file = w.path(&format!("{name}.json"));
    std::fs::write(&file, doc).unwrap();
    w.ok(&[
        "aws",
        "policy",
        "create",
        name,
        "--document",
        file.to_str().unwrap(),
    ]);
}

/// Root CA `root` made and registered with its verification certificate (ACTIVE when
/// `active`).
pub fn register_root(w: &Ws, active: bool) {
    register_root_with(w, if active { &["--active"] } else { &[] });
}

/// Root CA `root` made and registered with `flags` (`--active`, `--auto-registration`, …).
fn register_root_with(w: &Ws, flags: &[&str]) {
    w.ok(&["new", "root", "root", "--cn", "Example Root"]);
    let code = w.ok(&["aws", "registration-code"]).trim().to_string();
    let proof = w.path("proof.pem");
    let proof_s = proof.to_str().unwrap();
    w.ok(&[
        "new",
        "verification",
        "--issuer",
        "root",
        "--code",
        &code,
        "--out",
        proof_s,
    ]);
    let mut ca = vec![
        "aws",
        "ca",
        "register",
        "root",
        "--verification-cert",
        proof_s,
    ];
    ca.extend(flags);
    w.ok(&ca);
}

/// Root CA `root` registered (then INACTIVE unless `ca_active`), device `d1` under it registered with `cert_status`
/// (None: not registered), thing d1 attached, a policy allowing Connect for `connect_client`.
pub(crate) fn setup(ca_active: bool, cert_status: Option<&str>, connect_client: &str) -> Ws {
    let w = Ws::new();
    register_root(&w, ca_active);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
    if let Some(status) = cert_status {
        w.ok(&["aws", "cert", "register", "d1", "--active"]);
        if status != "ACTIVE" {
            w.ok(&["aws", "cert", "update", "d1", "--status", status]);
        }
        w.ok(&["aws", "thing", "create", "d1"]);
        w.ok(&["aws", "thing", "attach", "d1", "--cert", "d1"]);
        create_policy(&w, "p1", &policy_doc(connect_client));
        w.ok(&["aws", "policy", "attach", "p1", "--cert", "d1"]);
    }
    // A CA is deactivated after its certificates registered, as on AWS.
    if !ca_active {
        w.ok(&["aws", "ca", "update", "root", "--status", "INACTIVE"]);
    }
    w
}

/// `chainsmith aws serve` on free ports; the child, the MQTT port and the trust PEM.
pub(crate) fn serve(w: &Ws) -> (Child, u16, String) {
    serve_with(w, &[])
}

/// [`serve`] with `extra` flags (`--issuing-ca CA`).
pub fn serve_with(w: &Ws, extra: &[&str]) -> (Child, u16, String) {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .env("CHAINSMITH_WORKSPACE", w.ws())
        .args(["aws", "serve", "--port", "0", "--alpn-port", "0"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("chainsmith aws serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let port = first
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .expect(&first);
    let trust = lines.next().unwrap().unwrap();
    let trust = trust.strip_prefix("trust: ").expect(&trust).to_string();
    // Keep draining the log so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    (child, port, trust)
}

/// The SDK connecting as `client_id` in `mode` with d1's certificate; its steps and exit code.
fn sdk(w: &Ws, port: u16, trust: &str, mode: &str, client_id: &str) -> (Vec<String>, Option<i32>) {
    let d = w.ws().join("entities/d1");
    sdk_as(
        w,
        port,
        trust,
        mode,
        client_id,
        &d.join("cert.pem"),
        &d.join("key.pem"),
    )
}

/// [`sdk`] presenting `cert` (one certificate or a chain) and `key`.
fn sdk_as(
    _w: &Ws,
    port: u16,
    trust: &str,
    mode: &str,
    client_id: &str,
    cert: &std::path::Path,
    key: &std::path::Path,
) -> (Vec<String>, Option<i32>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_device.py");
    let out = Command::new("python3")
        .arg(script)
        .args([mode, "127.0.0.1", &port.to_string(), client_id])
        .arg(cert)
        .arg(key)
        .arg(trust)
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    let steps = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_str().map(String::from))
                .unwrap_or_else(|| l.to_string())
        })
        .collect();
    (steps, out.status.code())
}

/// One rule: its name, CA active, the certificate's status (None: not registered), the
/// policy's Connect client, the SDK's client id, admitted.
type Case<'a> = (&'a str, bool, Option<&'a str>, &'a str, &'a str, bool);

#[test]
fn the_python_sdk_is_refused_by_each_of_awss_rules_and_admitted_when_all_hold() {
    let cases: &[Case] = &[
        (
            "all rules hold, policy with * region/account",
            true,
            Some("ACTIVE"),
            "d1",
            "d1",
            true,
        ),
        ("certificate not registered", true, None, "d1", "d1", false),
        (
            "certificate INACTIVE",
            true,
            Some("INACTIVE"),
            "d1",
            "d1",
            false,
        ),
        (
            "certificate REVOKED",
            true,
            Some("REVOKED"),
            "d1",
            "d1",
            false,
        ),
        (
            "no policy allows iot:Connect for the client id",
            true,
            Some("ACTIVE"),
            "d1",
            "other",
            false,
        ),
    ];
    for &(rule, ca_active, status, connect_client, client_id, admitted) in cases {
        let w = setup(ca_active, status, connect_client);
        let (mut server, port, trust) = serve(&w);
        let mode = if admitted { "roundtrip" } else { "hold" };
        let (steps, code) = sdk(&w, port, &trust, mode, client_id);
        server.kill().unwrap();
        server.wait().unwrap();
        if admitted {
            assert_eq!(code, Some(0), "{rule}: {steps:?}");
            assert!(steps.iter().any(|s| s == "message"), "{rule}: {steps:?}");
        } else {
            assert_eq!(code, Some(3), "{rule}: the SDK's connect fails: {steps:?}");
            assert_eq!(
                steps.first().map(String::as_str),
                Some("connect_failed"),
                "{rule}"
            );
        }
    }
}

#[test]
fn a_second_sdk_connection_with_the_same_client_id_takes_over_the_first() {
    let w = setup(true, Some("ACTIVE"), "d1");
    let (mut server, port, trust) = serve(&w);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_device.py");
    let d = w.ws().join("entities/d1");
    let mut first = Command::new("python3")
        .arg(script)
        .args(["hold", "127.0.0.1", &port.to_string(), "d1"])
        .arg(d.join("cert.pem"))
        .arg(d.join("key.pem"))
        .arg(&trust)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut first_lines = BufReader::new(first.stdout.take().unwrap()).lines();
    assert!(
        first_lines.next().unwrap().unwrap().contains("connected"),
        "the first connection is admitted"
    );
    let (steps, code) = sdk(&w, port, &trust, "roundtrip", "d1");
    let rest: Vec<String> = first_lines.map_while(Result::ok).collect();
    first.wait().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, Some(0), "the second connection works: {steps:?}");
    assert!(
        rest.iter().any(|l| l.contains("interrupted")),
        "the first was disconnected: {rest:?}"
    );
}

#[test]
fn a_publish_the_policy_denies_disconnects_the_mqtt_3_1_1_sdk() {
    let w = setup(true, Some("ACTIVE"), "d1");
    let (mut server, port, trust) = serve(&w);
    let (steps, code) = sdk(&w, port, &trust, "denied", "d1");
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, Some(0), "{steps:?}");
    assert!(!steps.iter().any(|s| s == "puback"), "no PUBACK: {steps:?}");
    assert!(
        steps.iter().any(|s| s == "interrupted"),
        "disconnected: {steps:?}"
    );
}

/// `aws cert list --json`'s status of the certificate whose id is `id`, if listed.
fn listed_status(w: &Ws, id: &str) -> Option<String> {
    let list = w.json(&["aws", "cert", "list", "--json"]);
    list.as_array()?
        .iter()
        .find(|c| c["certificateId"] == id)
        .and_then(|c| c["status"].as_str().map(String::from))
}

fn id_of(w: &Ws, entity: &str) -> String {
    let der = std::fs::read(w.ws().join(format!("entities/{entity}/cert.pem"))).unwrap();
    let der = pem::parse(der).unwrap().into_contents();
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &der).as_ref())
}

#[test]
fn a_device_under_a_ca_never_registered_is_refused() {
    let w = setup(true, Some("ACTIVE"), "d2");
    w.ok(&["new", "root", "stranger-root", "--cn", "Never Registered"]);
    w.ok(&["new", "device", "d2", "--issuer", "stranger-root"]);
    let (mut server, port, trust) = serve(&w);
    let d = w.ws().join("entities/d2");
    let (steps, code) = sdk_as(
        &w,
        port,
        &trust,
        "hold",
        "d2",
        &d.join("cert.pem"),
        &d.join("key.pem"),
    );
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, Some(3), "{steps:?}");
    assert_eq!(steps.first().map(String::as_str), Some("connect_failed"));
}

/// An auto-registering CA (`--template` for JITP, none for JITR), d1 exported as AWS names its
/// files (`deviceCertAndCACert.crt`: the device certificate and its CA's).
fn auto_registering(template: bool) -> (Ws, std::path::PathBuf) {
    let w = Ws::new();
    create_policy(&w, "p1", &policy_doc("d1"));
    let mut flags = vec!["--active", "--auto-registration"];
    if template {
        let t = w.path("jitp.json");
        std::fs::write(
            &t,
            serde_json::json!({
                "Parameters": {
                    "AWS::IoT::Certificate::CommonName": {"Type": "String"},
                    "AWS::IoT::Certificate::Id": {"Type": "String"}
                },
                "Resources": {
                    "thing": {"Type": "AWS::IoT::Thing", "Properties": {
                        "ThingName": {"Ref": "AWS::IoT::Certificate::CommonName"}}},
                    "certificate": {"Type": "AWS::IoT::Certificate", "Properties": {
                        "CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
                    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "p1"}}
                }
            })
            .to_string(),
        )
        .unwrap();
        w.ok(&[
            "aws",
            "template",
            "create",
            "jitp",
            "--file",
            t.to_str().unwrap(),
        ]);
        flags.extend(["--template", "jitp"]);
    }
    register_root_with(&w, &flags);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
    let out = w.path("d1-aws");
    w.ok(&[
        "export",
        "d1",
        "--format",
        "aws",
        "--out",
        out.to_str().unwrap(),
    ]);
    (w, out)
}

#[test]
fn jitp_with_the_sdk_the_first_connection_provisions_and_is_closed_the_next_connects() {
    let (w, files) = auto_registering(true);
    let (mut server, port, trust) = serve(&w);
    let chain = files.join("deviceCertAndCACert.crt");
    let key = files.join("private.pem.key");
    let first = sdk_as(&w, port, &trust, "hold", "d1", &chain, &key);
    assert_eq!(
        first.1,
        Some(3),
        "AWS closes the provisioning connection: {first:?}"
    );
    assert_eq!(
        listed_status(&w, &id_of(&w, "d1")).as_deref(),
        Some("ACTIVE")
    );
    let things = w.ok(&["aws", "thing", "list"]);
    assert!(things.contains("d1"), "{things}");
    let again = sdk_as(&w, port, &trust, "roundtrip", "d1", &chain, &key);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(again.1, Some(0), "{again:?}");
    assert!(again.0.iter().any(|s| s == "message"), "{again:?}");
}

#[test]
fn jitr_leaves_the_certificate_pending_activation_and_the_sdk_is_refused_until_activated() {
    let (w, files) = auto_registering(false);
    let (mut server, port, trust) = serve(&w);
    let chain = files.join("deviceCertAndCACert.crt");
    let key = files.join("private.pem.key");
    let id = id_of(&w, "d1");
    for attempt in ["registers it", "finds it PENDING_ACTIVATION"] {
        let (steps, code) = sdk_as(&w, port, &trust, "hold", "d1", &chain, &key);
        assert_eq!(code, Some(3), "{attempt}: {steps:?}");
        assert_eq!(
            listed_status(&w, &id).as_deref(),
            Some("PENDING_ACTIVATION"),
            "{attempt}"
        );
    }
    // Activated and given a policy, as a JITR rule's function would.
    w.ok(&["aws", "cert", "update", &id, "--status", "ACTIVE"]);
    w.ok(&["aws", "policy", "attach", "p1", "--cert", &id]);
    let (steps, code) = sdk_as(&w, port, &trust, "roundtrip", "d1", &chain, &key);
    server.kill().unwrap();
    server.wait().unwrap();
    assert_eq!(code, Some(0), "{steps:?}");
}

/// MQTT 5: AWS answers a publish or subscribe its policies deny with reason code 0x87 (Not
/// authorized) in the PUBACK / SUBACK and keeps the connection ("MQTT 5 reason codes" and
/// "Differences between AWS IoT and the MQTT specifications" in the developer guide's "MQTT"
/// page, <https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html>).
#[test]
fn the_sdks_mqtt5_client_sees_not_authorized_for_a_denied_publish_and_subscribe() {
    let w = setup(true, Some("ACTIVE"), "d1");
    let (mut server, port, trust) = serve(&w);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_mqtt5.py");
    let d = w.ws().join("entities/d1");
    let out = Command::new("python3")
        .arg(script)
        .args(["127.0.0.1", &port.to_string(), "d1"])
        .arg(d.join("cert.pem"))
        .arg(d.join("key.pem"))
        .arg(&trust)
        .stderr(Stdio::inherit())
        .output()
        .expect("python3");
    server.kill().unwrap();
    server.wait().unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    let reason = |step: &str| {
        lines
            .iter()
            .find(|v| v["step"] == step)
            .map(|v| v["reason"].clone())
    };
    assert_eq!(reason("puback"), Some(serde_json::json!(0x87)), "{lines:?}");
    assert_eq!(reason("suback"), Some(serde_json::json!(0x87)), "{lines:?}");
    assert_eq!(
        reason("puback_after"),
        Some(serde_json::json!(0)),
        "{lines:?}"
    );
}
