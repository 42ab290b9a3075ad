//! The local DPS over MQTT, driven by a plain MQTT client (tokio-rustls + rumqttc's codec, as
//! `hub_util::Client`): the exact topics and bodies, the enrollment rules (re-registration,
//! disabled enrollments, deleted registrations, individual over group), refusals with DPS's
//! status topics and error bodies, and certificate issuance from a CSR.

use chainsmith_test_support::hub_util::{self, Client, Fixture, Identity};

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use chainsmith::azure::dps as wire;
use chainsmith::hub::dps::Group;
use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use rumqttc::mqttbytes::QoS;
use rumqttc::mqttbytes::v4::{ConnectReturnCode, Packet, Publish, Subscribe};

pub fn group(name: &str, ca: &str) -> Group {
    Group {
        name: name.into(),
        primary: ca.into(),
        secondary: None,
        settings: chainsmith::hub::dps::EnrollmentSettings {
            edge: false,
            enabled: true,
            issue_from: None,
            allocation: Default::default(),
            // When the group was made matters to nothing these tests check: a fixed day.
            added: time::macros::datetime!(2026-01-01 0:00 UTC),
        },
    }
}

async fn hub(fx: &Fixture) -> HubHandle {
    Hub::start(
        fx.root(),
        HubConfig {
            port: 0,
            // DPS's certificate issuance, as every face passes it.
            csr_signer: Some(chainsmith::hub::dps_csr_signer()),
            // The workspace's clock: a fixture fixed in time makes a hub fixed in time.
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .unwrap()
}

/// What one registration ended with: the last status and body, and every response seen.
#[derive(Debug)]
pub struct Outcome {
    pub status: u16,
    pub body: serde_json::Value,
    pub steps: Vec<(u16, serde_json::Value)>,
}

/// A registration as the SDKs send it: this API version, the registration id as the body's
/// `registrationId`, no CSR.
pub async fn register_as(
    addr: SocketAddr,
    fx: &Fixture,
    id: &Identity,
    regid: &str,
    scope: &str,
) -> Option<Outcome> {
    register(addr, fx, id, regid, scope, wire::API_VERSION, body(regid)).await
}

/// Register over MQTT as the SDKs do: CONNECT with the DPS username, SUBSCRIBE, PUT register,
/// poll GET operationstatus on 202 until 200 or an error. None when CONNECT was refused.
pub async fn register(
    addr: SocketAddr,
    fx: &Fixture,
    id: &Identity,
    regid: &str,
    scope: &str,
    api: &str,
    body: serde_json::Value,
) -> Option<Outcome> {
    let user = wire::username(scope, regid, api);
    let (mut c, ack) = Client::connect(addr, fx.tls(Some(id)), regid, Some(&user))
        .await
        .unwrap();
    if ack.map(|a| a.code) != Some(ConnectReturnCode::Success) {
        return None;
    }
    let mut sub = Subscribe::new(wire::RESPONSE_FILTER, QoS::AtLeastOnce);
    sub.pkid = 1;
    c.send(&Packet::Subscribe(sub)).await.unwrap();
    let mut p = Publish::new(
        wire::register_topic("1"),
        QoS::AtLeastOnce,
        body.to_string().into_bytes(),
    );
    p.pkid = 2;
    c.send(&Packet::Publish(p)).await.unwrap();
    let mut steps = Vec::new();
    let mut pkid = 3;
    loop {
        let Some(pkt) = c.recv(Duration::from_secs(10)).await else {
            panic!("DPS went quiet after {steps:?}");
        };
        let Packet::Publish(p) = pkt else { continue };
        let (status, rid, _) = wire::parse_response_topic(&p.topic).unwrap();
        let body: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
        steps.push((status, body.clone()));
        if status == 202 {
            let op = body["operationId"].as_str().unwrap().to_string();
            let mut q = Publish::new(
                wire::status_topic(&(rid.parse::<u32>().unwrap() + 1).to_string(), &op),
                QoS::AtLeastOnce,
                b" ".to_vec(),
            );
            q.pkid = pkid;
            pkid += 1;
            c.send(&Packet::Publish(q)).await.unwrap();
            continue;
        }
        return Some(Outcome {
            status,
            body,
            steps,
        });
    }
}

fn body(regid: &str) -> serde_json::Value {
    serde_json::json!({"registrationId": regid, "payload": {"modelId": "dtmi:com:example:Thermostat;1"}})
}

/// A group registration answers 202 assigning, then 200 assigned with the documented
/// registration state; registering again says reprovisionedToInitialAssignment and keeps the
/// created time; the device is in the hub registry and connects to the hub at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_registration_then_reregistration_then_hub() {
    let fx = Fixture::new();
    fx.device("sample-device-01", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    fx.store
        .dps_add_group(group("MyX509Group", "line2"))
        .unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    assert!(scope.starts_with("0ne") && scope.len() == 11, "{scope}");
    let hub = hub(&fx).await;
    let id = fx.identity(&["sample-device-01", "line2"]);

    let first = register_as(hub.addr, &fx, &id, "sample-device-01", &scope)
        .await
        .unwrap();
    assert_eq!(first.steps[0].0, 202);
    assert_eq!(first.steps[0].1["status"], "assigning");
    assert_eq!(first.status, 200, "{first:?}");
    let st = &first.body["registrationState"];
    assert_eq!(first.body["status"], "assigned");
    assert_eq!(st["registrationId"], "sample-device-01");
    assert_eq!(st["deviceId"], "sample-device-01");
    assert_eq!(st["assignedHub"], "localhost");
    assert_eq!(st["status"], "assigned");
    assert_eq!(st["substatus"], wire::INITIAL_ASSIGNMENT);
    // DPS returns a payload only from a custom allocation webhook: the device's is not echoed.
    assert!(st.get("payload").is_none(), "payload echoed: {st}");
    assert_eq!(st["x509"]["enrollmentGroupId"], "MyX509Group");
    for k in ["createdDateTimeUtc", "lastUpdatedDateTimeUtc", "etag"] {
        assert!(st[k].is_string(), "{k} missing: {st}");
    }
    // Registered by its certificate's thumbprint, as Azure's DPS does (issue 21/22).
    let dev = fx.store.device("sample-device-01").unwrap();
    assert_eq!(dev.auth, Auth::SelfSigned);
    assert!(dev.enabled);

    let again = register(
        hub.addr,
        &fx,
        &id,
        "sample-device-01",
        &scope,
        wire::API_VERSION_2021,
        body("sample-device-01"),
    )
    .await
    .unwrap();
    let st2 = &again.body["registrationState"];
    assert_eq!(st2["substatus"], wire::REPROVISIONED_TO_INITIAL);
    assert_eq!(st2["createdDateTimeUtc"], st["createdDateTimeUtc"]);
    assert_ne!(st2["etag"], st["etag"]);
    assert_eq!(fx.store.dps_load().unwrap().registrations.len(), 1);

    // The assigned hub takes the device at once (the hub had no CA before DPS assigned it).
    let (_c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(&id)),
        "sample-device-01",
        Some(&hub_util::username("sample-device-01")),
    )
    .await
    .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);

    // A deleted registration starts over: initialAssignment again, the device kept.
    fx.store
        .dps_delete_registration("sample-device-01")
        .unwrap();
    let fresh = register_as(hub.addr, &fx, &id, "sample-device-01", &scope)
        .await
        .unwrap();
    assert_eq!(
        fresh.body["registrationState"]["substatus"],
        wire::INITIAL_ASSIGNMENT
    );
    hub.shutdown().await;
}

/// Every refusal answers on `$dps/registrations/res/{401|403|404}/?$rid=…` with DPS's error
/// body, and the hub's events carry the exact reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_dps_status_topics_bodies_and_exact_reasons() {
    // The workspace and the hub share a fixed clock: the expired window does not depend on
    // the day the suite runs.
    let fixed = time::macros::datetime!(2031-03-01 00:00 UTC);
    let fx = Fixture::at(fixed);
    let day = 86_400;
    let now = fixed.unix_timestamp();
    let rfc = |t: i64| {
        chainsmith::pki::issue::rfc3339(time::OffsetDateTime::from_unix_timestamp(t).unwrap())
    };
    fx.device("good-1", Some("line2"), ValidityArg::default());
    fx.device(
        "old-1",
        Some("line2"),
        ValidityArg {
            days: None,
            not_before: Some(rfc(now - 30 * day)),
            not_after: Some(rfc(now - 3 * day)),
        },
    );
    fx.device("rooted-1", Some("root"), ValidityArg::default());
    chainsmith::ops::new_ca(
        &fx.ws,
        &chainsmith_test_support::workspace::ca_req("other", Some("Other Root"), None),
    )
    .unwrap();
    fx.device("stranger-1", Some("other"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_ca("root", false).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    fx.store.dps_add_group(group("roots", "root")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub(&fx).await;
    let mut events = hub.events();

    // (who, chain names, registration id, status, error code, the hub's kind)
    type Case<'a> = (&'a str, &'a [&'a str], &'a str, u16, u32, &'a str);
    let cases: [Case; 4] = [
        (
            "stranger-1",
            &["stranger-1", "other"],
            "stranger-1",
            401,
            401002,
            "unknown-root",
        ),
        (
            "rooted-1",
            &["rooted-1"],
            "rooted-1",
            401,
            401002,
            "unverified",
        ),
        (
            "old-1",
            &["old-1", "line2"],
            "old-1",
            401,
            401002,
            "expired",
        ),
        (
            "good-1",
            &["good-1", "line2"],
            "not-good-1",
            401,
            401002,
            "cn-mismatch",
        ),
    ];
    for (who, names, regid, status, code, kind) in cases {
        let id = fx.identity(names);
        let out = register(
            hub.addr,
            &fx,
            &id,
            regid,
            &scope,
            wire::API_VERSION,
            body(regid),
        )
        .await
        .unwrap();
        assert_eq!(out.status, status, "{who}: {out:?}");
        assert_eq!(out.body["errorCode"], code, "{who}: {out:?}");
        assert!(out.body["trackingId"].is_string());
        assert!(out.body["timestampUtc"].is_string());
        let msg = out.body["message"].as_str().unwrap().to_string();
        let refused = loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Ok(HubEvent::DpsRefused {
                    kind,
                    reason,
                    status: s,
                    ..
                })) => break (kind, reason, s),
                Ok(Ok(_)) => {}
                other => panic!("no DpsRefused for {who}: {other:?}"),
            }
        };
        assert_eq!(refused.0, kind, "{who}: {}", refused.1);
        assert_eq!(refused.1, msg);
        assert_eq!(refused.2, status);
    }

    // A disabled group: 403.
    fx.store.dps_set_enabled("lines", false).unwrap();
    let id = fx.identity(&["good-1", "line2"]);
    let out = register_as(hub.addr, &fx, &id, "good-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 403, "{out:?}");
    assert!(
        out.body["message"]
            .as_str()
            .unwrap()
            .contains("\"lines\" is disabled")
    );
    assert!(
        fx.store.device("good-1").is_err(),
        "a refused device reached the hub"
    );

    // Polling an operation nobody started: 404.
    let user = wire::username(&scope, "good-1", wire::API_VERSION);
    let (mut c, _) = Client::connect(hub.addr, fx.tls(Some(&id)), "good-1", Some(&user))
        .await
        .unwrap();
    let mut sub = Subscribe::new(wire::RESPONSE_FILTER, QoS::AtLeastOnce);
    sub.pkid = 1;
    c.send(&Packet::Subscribe(sub)).await.unwrap();
    let p = Publish::new(
        wire::status_topic("9", "4.nothing"),
        QoS::AtMostOnce,
        b" ".to_vec(),
    );
    c.send(&Packet::Publish(p)).await.unwrap();
    let topic = loop {
        match c.recv(Duration::from_secs(5)).await {
            Some(Packet::Publish(p)) => break p.topic,
            Some(_) => {}
            None => panic!("no answer to a poll of an unknown operation"),
        }
    };
    assert_eq!(topic, "$dps/registrations/res/404/?$rid=9");

    // CONNECT refusals: wrong ID scope, client id not the registration id.
    let bad_scope = wire::username("0ne00000000", "good-1", wire::API_VERSION);
    let (_c, ack) = Client::connect(hub.addr, fx.tls(Some(&id)), "good-1", Some(&bad_scope))
        .await
        .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::NotAuthorized);
    let (_c, ack) = Client::connect(hub.addr, fx.tls(Some(&id)), "other-id", Some(&user))
        .await
        .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::NotAuthorized);
    let refusals = hub.refusals(None, 0);
    // The hub's reason says what is wrong in its words; `hub serve` adds the command.
    let scope_refusal = refusals
        .iter()
        .find(|r| r.kind == "dps-id-scope")
        .expect("the wrong ID scope refused");
    assert!(
        scope_refusal.reason.contains("is not this DPS's")
            && !scope_refusal.reason.contains("chainsmith"),
        "{}",
        scope_refusal.reason
    );
    let printed = chainsmith::cli::hub_log_line(&chainsmith::hub::HubEvent::Refused {
        peer: scope_refusal.peer,
        device: scope_refusal.device.clone(),
        kind: scope_refusal.kind.clone(),
        reason: scope_refusal.reason.clone(),
    });
    assert!(printed.contains("(`chainsmith hub dps show`"), "{printed}");
    let kinds: Vec<String> = refusals.into_iter().map(|r| r.kind).collect();
    assert!(kinds.contains(&"dps-id-scope".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"dps-username-mismatch".to_string()),
        "{kinds:?}"
    );
    hub.shutdown().await;
}

/// An individual enrollment for the registration id wins over a group that would also take
/// the device (as in DPS), and a disabled individual enrollment is refused even though the
/// group would assign it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn individual_enrollment_wins_over_group() {
    let fx = Fixture::new();
    fx.device("both-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    fx.store
        .dps_enroll(
            "both-1",
            Some("both-1-hubid"),
            Some("both-1"),
            None,
            None,
            false,
            None,
            Default::default(),
        )
        .unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub(&fx).await;
    let id = fx.identity(&["both-1", "line2"]);
    let out = register_as(hub.addr, &fx, &id, "both-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.body["registrationState"]["deviceId"], "both-1-hubid");
    let reg = fx.store.dps_load().unwrap();
    assert_eq!(reg.registrations[0].enrollment, "individual both-1");
    assert_eq!(
        fx.store.device("both-1-hubid").unwrap().auth,
        Auth::SelfSigned
    );

    fx.store.dps_set_enabled("both-1", false).unwrap();
    let out = register_as(hub.addr, &fx, &id, "both-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 403, "{out:?}");
    assert!(
        out.body["message"]
            .as_str()
            .unwrap()
            .contains("individual enrollment")
    );
    // Without the individual enrollment, the group takes it.
    fx.store.dps_remove_enrollment("both-1").unwrap();
    let out = register_as(hub.addr, &fx, &id, "both-1", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(out.body["registrationState"]["deviceId"], "both-1");
    hub.shutdown().await;
}

/// DPS's certificate list is its own: a CA verified on the hub is not verified in DPS.
#[test]
fn dps_keeps_its_own_certificate_list() {
    let fx = Fixture::new();
    fx.store.add_ca("root", true).unwrap();
    let ca = fx.store.dps_add_ca("root", false).unwrap();
    assert!(!ca.verified);
    assert!(!fx.store.dps_load().unwrap().cas[0].verified);
    // The proof made for the hub's code does not verify DPS's (another code).
    fx.store.add_ca("line2", false).unwrap();
    let hub_code = fx.store.load().unwrap().cas[1].code.clone();
    let out = fx.dir.path().join("v.pem");
    chainsmith::ops::new_verification(&fx.ws, "line2", &hub_code, &out, None, true).unwrap();
    fx.store.dps_add_ca("line2", false).unwrap();
    let e = fx
        .store
        .dps_verify_ca("line2", &std::fs::read(&out).unwrap())
        .unwrap_err();
    assert!(e.to_string().contains("wrong code"), "{e}");
    fx.store
        .verify_ca("line2", &std::fs::read(&out).unwrap())
        .unwrap();
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    assert!(
        fx.store
            .dps_load()
            .unwrap()
            .cas
            .iter()
            .any(|c| c.name == "line2" && c.verified)
    );
}

/// Certificate issuance (2025-07-01-preview): a CSR in the register body comes back as a
/// chain that `openssl verify` accepts against the workspace root, kept in the workspace as
/// an entity, and the device connects to the hub with it and its own key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_registration_returns_a_chain_openssl_verifies_and_that_connects() {
    // On a fixed clock: the certificate DPS issues is dated from the hub's clock, not the day.
    let fixed = time::macros::datetime!(2031-03-01 00:00 UTC);
    let fx = Fixture::at(fixed);
    // Bootstrap identity: a device certificate under line2; the issued one comes from line2 too.
    fx.device("csr-dev-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    let mut g = group("issuing", "line2");
    g.settings.issue_from = Some("line2".into());
    fx.store.dps_add_group(g).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub(&fx).await;
    let boot = fx.identity(&["csr-dev-1", "line2"]);

    // A fresh key and CSR, made by openssl as a device would.
    let dir = fx.dir.path();
    let key = dir.join("fresh.key");
    let csr = dir.join("fresh.csr");
    let ok = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .args(["-subj", "/CN=csr-dev-1", "-outform", "DER", "-out"])
        .arg(&csr)
        .status()
        .unwrap();
    assert!(ok.success());
    use base64::Engine;
    let csr_b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let before = fx.ws.load("csr-dev-1").unwrap().meta.sha256.clone();

    // Without the preview api-version a CSR is refused with a reason.
    let out = register(
        hub.addr,
        &fx,
        &boot,
        "csr-dev-1",
        &scope,
        wire::API_VERSION,
        serde_json::json!({"registrationId": "csr-dev-1", "csr": csr_b64}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(
        out.body["message"]
            .as_str()
            .unwrap()
            .contains(wire::API_VERSION_CSR)
    );

    let out = register(
        hub.addr,
        &fx,
        &boot,
        "csr-dev-1",
        &scope,
        wire::API_VERSION_CSR,
        serde_json::json!({"registrationId": "csr-dev-1", "csr": csr_b64}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    let chain: Vec<Vec<u8>> = out.body["registrationState"]["issuedCertificateChain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            base64::engine::general_purpose::STANDARD
                .decode(c.as_str().unwrap())
                .unwrap()
        })
        .collect();
    assert_eq!(chain.len(), 3, "leaf, line2, root");
    let pem_of = |d: &[u8]| pem::encode(&pem::Pem::new("CERTIFICATE", d.to_vec()));
    let leaf = dir.join("issued.pem");
    let untrusted = dir.join("untrusted.pem");
    let root = dir.join("root.pem");
    std::fs::write(&leaf, pem_of(&chain[0])).unwrap();
    std::fs::write(&untrusted, pem_of(&chain[1])).unwrap();
    std::fs::write(&root, fx.ws.load("root").unwrap().cert_pem).unwrap();
    let v = Command::new("openssl")
        .args(["verify", "-x509_strict", "-purpose", "sslclient", "-attime"])
        .arg(fixed.unix_timestamp().to_string())
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&untrusted)
        .arg(&leaf)
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "{}",
        String::from_utf8_lossy(&v.stdout) + String::from_utf8_lossy(&v.stderr)
    );
    // Kept in the workspace (the bootstrap certificate went to history).
    let e = fx.ws.load("csr-dev-1").unwrap();
    assert_eq!(e.cert_der, chain[0]);
    assert_ne!(e.meta.sha256, before);

    // Connect to the hub with the issued chain and the device's own key.
    let key_der = pem::parse(std::fs::read_to_string(&key).unwrap())
        .unwrap()
        .into_contents();
    let issued = Identity {
        certs: chain[..2]
            .iter()
            .map(|d| rustls::pki_types::CertificateDer::from(d.clone()))
            .collect(),
        key: key_der,
    };
    let (_c, ack) = Client::connect(
        hub.addr,
        fx.tls(Some(&issued)),
        "csr-dev-1",
        Some(&hub_util::username("csr-dev-1")),
    )
    .await
    .unwrap();
    assert_eq!(ack.unwrap().code, ConnectReturnCode::Success);

    // A CSR whose CN is not the registration id is refused.
    let ok = Command::new("openssl")
        .args(["req", "-new", "-key"])
        .arg(&key)
        .args(["-subj", "/CN=someone-else", "-outform", "DER", "-out"])
        .arg(&csr)
        .status()
        .unwrap();
    assert!(ok.success());
    let bad = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&csr).unwrap());
    let out = register(
        hub.addr,
        &fx,
        &issued,
        "csr-dev-1",
        &scope,
        wire::API_VERSION_CSR,
        serde_json::json!({"registrationId": "csr-dev-1", "csr": bad}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(
        out.body["message"]
            .as_str()
            .unwrap()
            .contains("someone-else")
    );
    hub.shutdown().await;
}

/// Without --issue-from, a CSR is refused with the reason and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csr_without_issuing_ca_is_refused() {
    let fx = Fixture::new();
    fx.device("plain-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub(&fx).await;
    let id = fx.identity(&["plain-1", "line2"]);
    let out = register(
        hub.addr,
        &fx,
        &id,
        "plain-1",
        &scope,
        wire::API_VERSION_CSR,
        serde_json::json!({"registrationId": "plain-1", "csr": "MIIB"}),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(
        out.body["message"]
            .as_str()
            .unwrap()
            .contains("names no issuing CA; give the enrollment an issuing CA"),
        "{out:?}"
    );
    hub.shutdown().await;
}

/// `chainsmith hub dps …` through the real binary with --json: the ID scope is made once and
/// kept, DPS's CA list with proof of possession, groups, enrollments, registrations, and
/// errors that name the problem.
#[test]
fn cli_dps_commands_with_json() {
    let ws = crate::common::Ws::new();
    ws.chain("sample-device-01");
    ws.ok(&["new", "device", "selfie", "--self-signed"]);
    let show = ws.json(&["hub", "dps", "show"]);
    let scope = show["id_scope"].as_str().unwrap().to_string();
    assert!(scope.starts_with("0ne") && scope.len() == 11, "{scope}");
    assert_eq!(
        ws.json(&["hub", "dps", "show"])["id_scope"],
        scope,
        "the scope changed"
    );

    let ca = ws.json(&["hub", "dps", "ca", "add", "acme"]);
    assert_eq!(ca["verified"], false);
    let code = ca["code"].as_str().unwrap().to_string();
    // A group on a CA DPS does not hold is refused with the fix.
    let err = ws.fails(&["hub", "dps", "group", "add", "G", "--ca", "inter"]);
    assert!(err.contains("not in DPS's certificate list"), "{err}");
    let v = ws.path("v.pem");
    ws.ok(&[
        "new",
        "verification",
        "--issuer",
        "acme",
        "--code",
        &code,
        "--out",
        v.to_str().unwrap(),
    ]);
    let ca = ws.json(&[
        "hub",
        "dps",
        "ca",
        "verify",
        "acme",
        "--cert",
        v.to_str().unwrap(),
    ]);
    assert_eq!(ca["verified"], true);
    // The hub's own list is untouched: DPS keeps its own.
    assert_eq!(ws.json(&["hub", "ca", "list"]).as_array().unwrap().len(), 0);
    ws.ok(&["hub", "dps", "ca", "add", "inter", "--verified"]);
    assert_eq!(
        ws.json(&["hub", "dps", "ca", "list"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let g = ws.json(&[
        "hub",
        "dps",
        "group",
        "add",
        "MyX509Group",
        "--ca",
        "acme",
        "--secondary",
        "inter",
        "--edge",
    ]);
    assert_eq!(g["primary"], "acme");
    assert_eq!(g["secondary"], "inter");
    assert_eq!(g["edge"], true);
    assert_eq!(g["enabled"], true);
    let g = ws.json(&[
        "hub",
        "dps",
        "group",
        "add",
        "Off",
        "--ca",
        "inter",
        "--disable",
    ]);
    assert_eq!(g["enabled"], false);
    let e = ws.json(&[
        "hub",
        "dps",
        "enroll",
        "selfie",
        "--from",
        "selfie",
        "--device-id",
        "selfie-dev",
    ]);
    assert_eq!(e["device_id"], "selfie-dev");
    assert_eq!(e["primary"].as_str().unwrap().len(), 64);
    let list = ws.json(&["hub", "dps", "list"]);
    assert_eq!(list["groups"].as_array().unwrap().len(), 2);
    assert_eq!(list["individuals"].as_array().unwrap().len(), 1);
    assert_eq!(
        ws.json(&["hub", "dps", "disable", "selfie"])["disabled"],
        "individual selfie"
    );
    assert_eq!(
        ws.json(&["hub", "dps", "enable", "Off"])["enabled"],
        "group Off"
    );
    assert_eq!(
        ws.json(&["hub", "dps", "remove", "Off"])["removed"],
        "group Off"
    );
    // A CA a group uses cannot be removed.
    let err = ws.fails(&["hub", "dps", "ca", "remove", "acme"]);
    assert!(err.contains("MyX509Group"), "{err}");
    assert_eq!(
        ws.json(&["hub", "dps", "registrations"]),
        serde_json::json!([])
    );
    let err = ws.fails(&["--json", "hub", "dps", "registration", "nobody", "--delete"]);
    assert!(err.is_empty() || !err.contains("panicked"));
    let err = ws.fails(&["hub", "dps", "group", "add", "bad name", "--ca", "acme"]);
    assert!(err.contains("bad name"), "{err}");
    let err = ws.fails(&["hub", "serve", "--id-scope", "0ne 12", "--port", "0"]);
    assert!(err.contains("--id-scope"), "{err}");
}

/// `serve --id-scope` (Hub::start_with_scope): DPS answers to the given scope, not the
/// workspace's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_scope_override() {
    let fx = Fixture::new();
    fx.device("scoped-1", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let own = fx.store.dps_id_scope().unwrap();
    let hub = Hub::start_with_scope(
        fx.root(),
        HubConfig {
            port: 0,
            ..Default::default()
        },
        Some("0ne00C0FFEE".into()),
    )
    .await
    .unwrap();
    let id = fx.identity(&["scoped-1", "line2"]);
    let refused = register(
        hub.addr,
        &fx,
        &id,
        "scoped-1",
        &own,
        wire::API_VERSION,
        body("scoped-1"),
    )
    .await;
    assert!(refused.is_none(), "the workspace's scope was accepted");
    let out = register(
        hub.addr,
        &fx,
        &id,
        "scoped-1",
        "0ne00C0FFEE",
        wire::API_VERSION,
        body("scoped-1"),
    )
    .await
    .unwrap();
    assert_eq!(out.status, 200, "{out:?}");
    assert_eq!(
        fx.store.dps_id_scope().unwrap(),
        own,
        "the override was stored"
    );
    hub.shutdown().await;
}

/// `connect DEVICE --dps` shows the DPS steps and then the usual hub test; `--csr` does it with
/// a fresh key and the certificate DPS issues; a device no enrollment takes fails with DPS's
/// reason and a non-zero exit.
#[test]
fn connect_with_dps_and_csr() {
    let ws = crate::common::Ws::new();
    ws.chain("dev-9");
    ws.ok(&["new", "device", "nobody-9", "--issuer", "inter"]);
    ws.ok(&["hub", "dps", "ca", "add", "inter", "--verified"]);
    ws.ok(&[
        "hub",
        "dps",
        "group",
        "add",
        "G",
        "--ca",
        "inter",
        "--issue-from",
        "inter",
    ]);
    let out = ws.ok(&[
        "connect",
        "dev-9",
        "--dps",
        "--count",
        "1",
        "--interval",
        "0",
    ]);
    for step in [
        "dps CONNECT",
        "dps register",
        "dps poll",
        "dps assigned",
        "MQTT CONNECT",
        "summary: 1 sent, 1 acknowledged",
    ] {
        assert!(out.contains(step), "no {step:?} in:\n{out}");
    }
    let onboarding_pem = std::fs::read_to_string(ws.ws().join("entities/dev-9/cert.pem")).unwrap();
    let out = ws.ok(&[
        "connect",
        "dev-9",
        "--dps",
        "--csr",
        "--count",
        "1",
        "--interval",
        "0",
    ]);
    assert!(out.contains("api-version=2025-07-01-preview"), "{out}");
    assert!(out.contains("reprovisionedToInitialAssignment"), "{out}");
    assert!(out.contains("issued chain"), "{out}");
    assert!(out.contains("summary: 1 sent, 1 acknowledged"), "{out}");
    // The issued certificate is now the entity; the onboarding one moved to its history, and
    // the output says where (issue 22 item 9), with the command that onboards with it again.
    let moved = out
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("the onboarding certificate moved to \"dev-9\"'s history: ")
        })
        .unwrap_or_else(|| panic!("no onboarding line in:\n{out}"));
    let (cert, rest) = moved.split_once(" (key ").unwrap();
    let (key, again) = rest.split_once("); to onboard with it again: ").unwrap();
    assert_eq!(std::fs::read_to_string(cert).unwrap(), onboarding_pem);
    assert!(std::path::Path::new(key).is_file(), "{key}");
    assert_ne!(
        std::fs::read_to_string(ws.ws().join("entities/dev-9/cert.pem")).unwrap(),
        onboarding_pem
    );
    assert_eq!(
        again,
        format!("chainsmith connect dev-9 --dps --csr --cert {cert} --key {key}")
    );
    // That command works, and --json says the same in its dps-issued line.
    let json = ws
        .cmd()
        .args([
            "--json", "connect", "dev-9", "--dps", "--csr", "--cert", cert, "--key", key,
        ])
        .args(["--count", "1", "--interval", "0"])
        .output()
        .unwrap();
    assert!(
        json.status.success(),
        "{}",
        String::from_utf8_lossy(&json.stdout)
    );
    let issued: serde_json::Value = String::from_utf8_lossy(&json.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "dps-issued")
        .expect("a dps-issued line");
    assert_eq!(issued["entity"], "dev-9");
    assert_eq!(issued["onboarding"]["cert"], cert, "{issued}");
    assert_eq!(issued["onboarding"]["key"], key, "{issued}");
    for f in ["chain", "key"] {
        assert!(
            std::path::Path::new(issued[f].as_str().unwrap()).is_file(),
            "{issued}"
        );
    }
    // The key DPS never saw is the device's, kept private.
    use std::os::unix::fs::PermissionsExt;
    let key = ws.ws().join("hub/dps-issued/dev-9_key.pem");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    ws.ok(&["hub", "dps", "disable", "G"]);
    let err = ws.fails(&["connect", "nobody-9", "--dps", "--count", "1"]);
    assert!(
        err.contains("403") && err.contains("\"G\" is disabled"),
        "{err}"
    );
    let err = ws.fails(&[
        "connect",
        "nobody-9",
        "--dps",
        "--to",
        "example.azure-devices.net",
    ]);
    assert!(err.contains("--dps"), "{err}");
}

/// A registration id outside DPS's rules is refused (400) before anything reaches the hub,
/// even when the certificate's CN matches it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_id_outside_dps_rules_is_refused() {
    let fx = Fixture::new();
    fx.device("dev(1)", Some("line2"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub(&fx).await;
    let id = fx.identity(&["dev(1)", "line2"]);
    let out = register_as(hub.addr, &fx, &id, "dev(1)", &scope)
        .await
        .unwrap();
    assert_eq!(out.status, 400, "{out:?}");
    assert!(fx.store.device("dev(1)").is_err());
    hub.shutdown().await;
}
