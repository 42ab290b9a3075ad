//! Fleet provisioning by claim as the official Python SDK's `iotidentity` client
//! (tests/aws_sdk_provision.py) does it against the real `chainsmith aws serve`: a claim
//! certificate connects, CreateCertificateFromCsr or CreateKeysAndCertificate, RegisterThing
//! with a template taking `SerialNumber` and attaching an existing policy by name, then the
//! device reconnects with its new certificate and publishes. AWS's refusals: a spent token, an
//! expired one (the service's clock moved, in process), a template that does not exist; and
//! `aws serve --issuing-ca` refusing a missing name or a non-CA.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::sync::Arc;

use crate::aws_rules::{create_policy, register_root, serve_with};
use crate::common::Ws;

/// The claim certificate's policy: connect as `claim-*`, publish the provisioning requests,
/// subscribe to and receive their replies, as the fleet provisioning guide's claim policy.
const CLAIM_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect", "Resource": "arn:aws:iot:*:*:client/claim-*"},
    {"Effect": "Allow", "Action": "iot:Publish", "Resource": [
      "arn:aws:iot:*:*:topic/$aws/certificates/create/json",
      "arn:aws:iot:*:*:topic/$aws/certificates/create-from-csr/json",
      "arn:aws:iot:*:*:topic/$aws/provisioning-templates/*/provision/json"]},
    {"Effect": "Allow", "Action": ["iot:Subscribe"], "Resource": [
      "arn:aws:iot:*:*:topicfilter/$aws/certificates/*",
      "arn:aws:iot:*:*:topicfilter/$aws/provisioning-templates/*"]},
    {"Effect": "Allow", "Action": ["iot:Receive"], "Resource": [
      "arn:aws:iot:*:*:topic/$aws/certificates/*",
      "arn:aws:iot:*:*:topic/$aws/provisioning-templates/*"]}
  ]
}"#;

/// The policy the template attaches by name: connect as the thing, publish under `dev/THING/`.
const DEVICE_POLICY: &str = r#"{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": "iot:Connect",
     "Resource": "arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"},
    {"Effect": "Allow", "Action": "iot:Publish",
     "Resource": "arn:aws:iot:*:*:topic/dev/${iot:Connection.Thing.ThingName}/*"}
  ]
}"#;

const TEMPLATE: &str = r#"{
  "Parameters": {
    "SerialNumber": {"Type": "String"},
    "AWS::IoT::Certificate::Id": {"Type": "String"}
  },
  "Resources": {
    "thing": {"Type": "AWS::IoT::Thing",
              "Properties": {"ThingName": {"Fn::Join": ["", ["sensor-", {"Ref": "SerialNumber"}]]}}},
    "certificate": {"Type": "AWS::IoT::Certificate",
                    "Properties": {"CertificateId": {"Ref": "AWS::IoT::Certificate::Id"}, "Status": "ACTIVE"}},
    "policy": {"Type": "AWS::IoT::Policy", "Properties": {"PolicyName": "device-policy"}}
  },
  "DeviceConfiguration": {"Serial": {"Ref": "SerialNumber"}}
}"#;

/// A workspace with root CA `root` registered, claim certificate `claim` under it registered
/// ACTIVE with the claim policy, the device policy and template `fleet`.
fn setup() -> Ws {
    let w = Ws::new();
    register_root(&w, true);
    w.ok(&["new", "device", "claim", "--issuer", "root"]);
    w.ok(&["aws", "cert", "register", "claim", "--active"]);
    create_policy(&w, "claim-policy", CLAIM_POLICY);
    create_policy(&w, "device-policy", DEVICE_POLICY);
    w.ok(&["aws", "policy", "attach", "claim-policy", "--cert", "claim"]);
    let t = w.path("template.json");
    std::fs::write(&t, TEMPLATE).unwrap();
    w.ok(&[
        "aws",
        "template",
        "create",
        "fleet",
        "--file",
        t.to_str().unwrap(),
    ]);
    w
}

/// tests/aws_sdk_provision.py in `mode` as the claim device, not yet waited for.
fn provision_cmd(w: &Ws, port: u16, trust: &str, mode: &str, serial: &str) -> Command {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/aws_sdk_provision.py");
    let claim = w.ws().join("entities/claim");
    let out = w.path(&format!("out-{serial}"));
    std::fs::create_dir_all(&out).unwrap();
    let mut c = Command::new("python3");
    c.arg(script)
        .args([mode, "127.0.0.1", &port.to_string()])
        .arg(claim.join("cert.pem"))
        .arg(claim.join("key.pem"))
        .args([trust, "fleet", serial])
        .arg(out)
        .stderr(Stdio::inherit());
    c
}

fn lines_of(stdout: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::json!({ "unparsed": l })))
        .collect()
}

/// `aws serve` with `flags`, the SDK provisioning in `mode` to its end (which must succeed),
/// the server stopped; the SDK's steps.
fn provision(w: &Ws, flags: &[&str], mode: &str, serial: &str) -> Vec<serde_json::Value> {
    let (mut server, port, trust) = serve_with(w, flags);
    let out = provision_cmd(w, port, &trust, mode, serial)
        .output()
        .expect("python3");
    server.kill().unwrap();
    server.wait().unwrap();
    let lines = lines_of(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{lines:?}");
    lines
}

fn step<'a>(lines: &'a [serde_json::Value], name: &str) -> Option<&'a serde_json::Value> {
    lines.iter().find(|v| v["step"] == name)
}

#[test]
fn the_python_sdk_provisions_by_claim_from_a_csr_with_a_workspace_ca_and_reconnects() {
    let w = setup();
    w.ok(&["new", "root", "issuer", "--cn", "Fleet Issuer"]);
    let lines = provision(&w, &["--issuing-ca", "issuer"], "csr", "0042");
    let registered = step(&lines, "registered").expect("RegisterThing accepted");
    assert_eq!(registered["thing"], "sensor-0042", "{lines:?}");
    assert_eq!(registered["configuration"]["Serial"], "0042", "{lines:?}");
    assert!(step(&lines, "published").is_some(), "{lines:?}");
    // The certificate is the workspace CA's, for the CSR's key and CN, and the registry holds
    // it ACTIVE with the thing and the policy the template names.
    let cert = w.path("out-0042/certificate.pem.crt");
    let (ok, text) = crate::common::openssl(
        &[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-issuer",
            "-subject",
        ],
        &w.ws(),
    );
    assert!(
        ok && text.contains("Fleet Issuer") && text.contains("0042"),
        "{text}"
    );
    let certs = w.json(&["aws", "cert", "list", "--json"]);
    let id = step(&lines, "created").unwrap()["certificate_id"]
        .as_str()
        .unwrap()
        .to_string();
    let rec = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["certificateId"] == id.as_str() || c["id"] == id.as_str())
        .unwrap_or_else(|| panic!("{certs}"));
    assert_eq!(rec["status"], "ACTIVE", "{rec}");
}

#[test]
fn the_python_sdk_provisions_with_new_keys_and_a_spent_token_or_unknown_template_is_rejected() {
    let w = setup();
    let lines = provision(&w, &[], "keys", "7");
    assert_eq!(step(&lines, "created").unwrap()["has_key"], true);
    assert_eq!(step(&lines, "registered").unwrap()["thing"], "sensor-7");
    let reused = step(&lines, "reused_token").expect("the spent token is rejected");
    assert_eq!(reused["status"], 400, "{reused}");
    assert_eq!(
        reused["code"], "InvalidCertificateOwnershipToken",
        "{reused}"
    );
    let missing = step(&lines, "no_template").expect("an unknown template is rejected");
    assert_eq!(missing["status"], 404, "{missing}");
    assert!(step(&lines, "published").is_some(), "{lines:?}");
    // chainsmith's own issuer signed it, kept under WS/aws/issuer/.
    let issuer = w.ws().join("aws/issuer/ca.pem");
    let cert = w.path("out-7/certificate.pem.crt");
    let (ok, text) = crate::common::openssl(
        &[
            "verify",
            "-CAfile",
            issuer.to_str().unwrap(),
            cert.to_str().unwrap(),
        ],
        &w.ws(),
    );
    assert!(ok, "{text}");
    // Stable across restarts: the next serve signs with the same issuer.
    let before = std::fs::read(&issuer).unwrap();
    let again = provision(&w, &[], "keys", "8");
    assert!(step(&again, "published").is_some(), "{again:?}");
    assert_eq!(std::fs::read(&issuer).unwrap(), before, "the same issuer");
    let second = w.path("out-8/certificate.pem.crt");
    let (ok, text) = crate::common::openssl(
        &[
            "verify",
            "-CAfile",
            issuer.to_str().unwrap(),
            second.to_str().unwrap(),
        ],
        &w.ws(),
    );
    assert!(ok, "{text}");
}

#[test]
fn aws_serve_refuses_an_issuing_ca_that_is_missing_or_not_a_ca() {
    let w = Ws::new();
    w.ok(&["new", "root", "root", "--cn", "Example Root"]);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
    let missing = w.fails(&[
        "aws",
        "serve",
        "--port",
        "0",
        "--alpn-port",
        "0",
        "--issuing-ca",
        "nope",
    ]);
    assert!(missing.contains("--issuing-ca nope"), "{missing}");
    let leaf = w.fails(&[
        "aws",
        "serve",
        "--port",
        "0",
        "--alpn-port",
        "0",
        "--issuing-ca",
        "d1",
    ]);
    assert!(
        leaf.contains("--issuing-ca d1") && leaf.contains("CA"),
        "{leaf}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ownership_token_past_its_hour_is_rejected() {
    use chainsmith::aws::broker::{self, BrokerConfig};
    use chainsmith::aws::registry::{OWNERSHIP_TOKEN_LIFETIME, Registry};
    use chainsmith::clock::Clock;
    let w = setup();
    let ws = chainsmith::store::Workspace::open(&w.ws()).expect("workspace");
    // The claim certificate was just issued by the CLI on the real clock: the registry's
    // fixed clock starts at that moment and is moved from there, so this holds on any day.
    let start = time::OffsetDateTime::now_utc();
    let registry =
        Arc::new(Registry::open(&w.ws().join("aws"), Clock::Fixed(start)).expect("registry"));
    let own = ws.clone();
    registry.set_issuer(Box::new(move || {
        broker::tls::own_issuer(&own)
            .ensure_ca(&own)
            .map_err(|e| e.to_string())
    }));
    let handle = broker::start(
        &ws,
        registry.clone(),
        BrokerConfig {
            port: 0,
            ..Default::default()
        },
    )
    .await
    .expect("the broker starts");
    let trust = broker::tls::trust_path(&ws);
    let mut child = provision_cmd(
        &w,
        handle.mqtt.port(),
        trust.to_str().unwrap(),
        "expire",
        "9",
    )
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .spawn()
    .expect("python3");
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let r = registry.clone();
    let lines = tokio::task::spawn_blocking(move || {
        let mut lines = Vec::new();
        for l in BufReader::new(stdout).lines().map_while(Result::ok) {
            let v: serde_json::Value = serde_json::from_str(&l).unwrap_or_default();
            if v["step"] == "created" {
                // An hour and a second later by the service's clock.
                r.set_clock(Clock::Fixed(
                    start + OWNERSHIP_TOKEN_LIFETIME + time::Duration::seconds(1),
                ));
                writeln!(stdin, "go").unwrap();
            }
            lines.push(v);
        }
        let code = child.wait().unwrap().code();
        (lines, code)
    })
    .await
    .unwrap();
    handle.stop().await;
    let (lines, code) = lines;
    assert_eq!(code, Some(0), "{lines:?}");
    let rejected = step(&lines, "register_rejected").expect("RegisterThing rejected");
    assert_eq!(rejected["status"], 400, "{rejected}");
    assert_eq!(
        rejected["code"], "InvalidCertificateOwnershipToken",
        "{rejected}"
    );
    assert!(
        rejected["message"]
            .as_str()
            .unwrap_or_default()
            .contains("expired"),
        "{rejected}"
    );
}

/// The broker's test rules ([`crate::aws_broker::TestRules`]) with a registry's fleet service.
struct WithFleet {
    rules: Arc<crate::aws_broker::TestRules>,
    registry: chainsmith::aws::registry::Registry,
}

impl chainsmith::aws::rules::Rules for WithFleet {
    fn admit(
        &self,
        chain: &[Vec<u8>],
        client_id: &str,
    ) -> Result<chainsmith::aws::rules::Admitted, chainsmith::aws::rules::Refused> {
        self.rules.admit(chain, client_id)
    }

    fn allows(
        &self,
        who: &chainsmith::aws::rules::Admitted,
        action: chainsmith::aws::rules::Action,
        resource: &str,
    ) -> bool {
        self.rules.allows(who, action, resource)
    }

    fn fleet(&self) -> Option<&dyn chainsmith::aws::rules::Fleet> {
        Some(&self.registry)
    }
}

#[tokio::test]
async fn a_provisioning_reply_goes_to_the_requesting_connection_alone() {
    use crate::aws_broker::{TestRules, V5Client, client_tls, fixture};
    use chainsmith::aws::broker::{self, BrokerConfig};
    use rumqttc::v5::mqttbytes::{QoS as QoS5, v5};
    let fx = fixture(&["a", "b"]);
    let registry =
        chainsmith::aws::registry::Registry::open(&fx.ws.root().join("aws"), fx.ws.clock())
            .unwrap();
    let ws = fx.ws.clone();
    registry.set_issuer(Box::new(move || {
        broker::tls::own_issuer(&ws)
            .ensure_ca(&ws)
            .map_err(|e| e.to_string())
    }));
    let rules = Arc::new(WithFleet {
        rules: TestRules::new(&fx, &["a", "b"], Box::new(|_, _, _| true)),
        registry,
    });
    let config = BrokerConfig {
        port: 0,
        ..Default::default()
    };
    let handle = broker::start(&fx.ws, rules, config).await.unwrap();
    let (mut a, _) = V5Client::connect(handle.mqtt, client_tls(&fx, "a", None), "a").await;
    let (mut b, _) = V5Client::connect(handle.mqtt, client_tls(&fx, "b", None), "b").await;
    for c in [&mut a, &mut b] {
        c.subscribe("$aws/certificates/#", 1).await;
        c.subscribe("$aws/provisioning-templates/#", 2).await;
    }
    a.publish(
        "$aws/certificates/create/json",
        b"{}".to_vec(),
        QoS5::AtLeastOnce,
        1,
    )
    .await;
    a.publish(
        "$aws/provisioning-templates/nope/provision/json",
        br#"{"certificateOwnershipToken":"x"}"#.to_vec(),
        QoS5::AtMostOnce,
        0,
    )
    .await;
    let mut got = Vec::new();
    while let Some(p) = a.recv().await {
        if let v5::Packet::Publish(p) = p {
            let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
            got.push((String::from_utf8_lossy(&p.topic).into_owned(), body));
        }
        if got.len() == 2 {
            break;
        }
    }
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].0, "$aws/certificates/create/json/accepted");
    assert!(got[0].1["privateKey"].is_string(), "{:?}", got[0]);
    assert_eq!(
        got[1].0,
        "$aws/provisioning-templates/nope/provision/json/rejected"
    );
    assert_eq!(got[1].1["statusCode"], 404, "{:?}", got[1]);
    // The other connection, subscribed to the same topics, saw neither request nor reply.
    let other = b.recv().await;
    assert!(other.is_none(), "{other:?}");
    handle.stop().await;
}
