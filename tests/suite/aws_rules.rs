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

/// Root CA `root` registered (then INACTIVE unless `ca_active`), device `d1` under it registered with `cert_status`
/// (None: not registered), thing d1 attached, a policy allowing Connect for `connect_client`.
pub(crate) fn setup(ca_active: bool, cert_status: Option<&str>, connect_client: &str) -> Ws {
    let w = Ws::new();
    w.ok(&["new", "root", "root", "--cn", "Example Root"]);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
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
    if ca_active {
        ca.push("--active");
    }
    w.ok(&ca);
    if let Some(status) = cert_status {
        w.ok(&["aws", "cert", "register", "d1", "--active"]);
        if status != "ACTIVE" {
            w.ok(&["aws", "cert", "update", "d1", "--status", status]);
        }
        w.ok(&["aws", "thing", "create", "d1"]);
        w.ok(&["aws", "thing", "attach", "d1", "--cert", "d1"]);
        let doc = w.path("policy.json");
        std::fs::write(&doc, policy_doc(connect_client)).unwrap();
        w.ok(&[
            "aws",
            "policy",
            "create",
            "p1",
            "--document",
            doc.to_str().unwrap(),
        ]);
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
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .env("CHAINSMITH_WORKSPACE", w.ws())
        .args(["aws", "serve", "--port", "0", "--alpn-port", "0"])
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

/// The SDK connecting as `client_id` in `mode`; its steps and exit code.
fn sdk(w: &Ws, port: u16, trust: &str, mode: &str, client_id: &str) -> (Vec<String>, Option<i32>) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_device.py");
    let d = w.ws().join("entities/d1");
    let out = Command::new("python3")
        .arg(script)
        .args([mode, "127.0.0.1", &port.to_string(), client_id])
        .arg(d.join("cert.pem"))
        .arg(d.join("key.pem"))
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
