//! DPS's registration result as the REST reference defines it (`x509` with the group and the
//! certificate's info, no echoed payload), a custom allocation webhook (Python's http.server
//! on 127.0.0.1, `tests/dps_webhook.py`) and an enrollment's initial twin, each seen by the
//! official Python SDK (`tests/dps_allocation_device.py`) registering over MQTT on port 8883,
//! so every SDK test runs in its own network namespace (`isolated::in_own_netns`).

use crate::dps_protocol::group;
use crate::isolated;
use chainsmith_test_support::hub_util::Fixture;
use chainsmith_test_support::process::KillOnDrop;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use assert_cmd::prelude::*;
use chainsmith::hub::dps::{Allocation, read_initial_twin};
use chainsmith::hub::{Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;

const MODEL: &str = r#"{"modelId":"dtmi:com:example:Thermostat;1"}"#;

async fn hub_on_8883(fx: &Fixture, webhook_timeout: Duration) -> HubHandle {
    Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            clock: fx.ws.clock(),
            dps_webhook_timeout: webhook_timeout,
            ..Default::default()
        },
    )
    .await
    .expect("127.0.0.1:8883 is free in this network namespace")
}

/// Register with the Python SDK, sending `payload`: its one JSON line.
async fn python(fx: &Fixture, regid: &str, payload: &str) -> serde_json::Value {
    let args: Vec<String> = vec![
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/dps_allocation_device.py"
        )
        .into(),
        regid.into(),
        fx.store.dps_id_scope().unwrap(),
        fx.chain_file(&[regid]).display().to_string(),
        fx.key_file(regid).display().to_string(),
        fx.trust_file().display().to_string(),
        payload.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .arg("90")
            .arg("python3")
            .args(&args)
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let line = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok());
    assert!(
        out.status.success() && line.is_some(),
        "python exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    line.unwrap()
}

/// `tests/dps_webhook.py` in `mode`, on a free port of 127.0.0.1.
struct Webhook {
    _child: KillOnDrop,
    port: u16,
    record: PathBuf,
    _dir: tempfile::TempDir,
}

impl Webhook {
    fn start(mode: &str) -> Webhook {
        let dir = tempfile::tempdir().unwrap();
        let record = dir.path().join("requests.jsonl");
        let mut child = Command::new("python3")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dps_webhook.py"))
            .arg(mode)
            .arg(&record)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        Webhook {
            _child: KillOnDrop(child),
            port: first.trim().parse().expect("the webhook's port"),
            record,
            _dir: dir,
        }
    }
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/api/allocate?code=k1", self.port)
    }
    /// Every request it received, in order.
    fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.record)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// openssl's view of a certificate: `-fingerprint -sha1`, `-sha256` (hex, no colons) and
/// `-serial`.
fn openssl(cert: &Path) -> (String, String, String) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-in"])
            .arg(cert)
            .args(args)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        text.split_once('=').unwrap().1.replace(':', "")
    };
    (
        run(&["-fingerprint", "-sha1"]),
        run(&["-fingerprint", "-sha256"]),
        run(&["-serial"]),
    )
}

fn with_allocation(name: &str, ca: &str, allocation: Allocation) -> chainsmith::hub::dps::Group {
    let mut g = group(name, ca);
    g.settings.allocation = allocation;
    g
}

fn twin_file(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("twin.json");
    std::fs::write(&p, text).unwrap();
    p
}

/// The next DpsRefused, within 15 s.
async fn refusal(events: &mut tokio::sync::broadcast::Receiver<HubEvent>) -> HubEvent {
    loop {
        match tokio::time::timeout(Duration::from_secs(15), events.recv()).await {
            Ok(Ok(e @ HubEvent::DpsRefused { .. })) => return e,
            Ok(Ok(_)) => {}
            other => panic!("no DpsRefused: {other:?}"),
        }
    }
}

/// A group's device gets `x509.enrollmentGroupId` and `certificateInfo` (thumbprints and
/// serial as openssl reads them); an individual one gets `certificateInfo` alone; neither gets
/// its own payload back when no webhook ran. The SDK parses both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_result_has_x509_info_and_no_echoed_payload() {
    if !isolated::in_own_netns("dps_allocation::python_result_has_x509_info_and_no_echoed_payload")
    {
        return;
    }
    let fx = Fixture::new();
    fx.device("x509-dev-1", Some("line2"), ValidityArg::default());
    fx.device("solo-1", None, ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    fx.store
        .dps_add_group(group("Line2Group", "line2"))
        .unwrap();
    fx.store
        .dps_enroll(
            "solo-1",
            None,
            Some("solo-1"),
            None,
            None,
            false,
            None,
            Allocation::default(),
        )
        .unwrap();
    let hub = hub_on_8883(&fx, Duration::from_secs(10)).await;

    let r = python(&fx, "x509-dev-1", MODEL).await;
    assert_eq!(r["step"], "registered", "{r}");
    assert_eq!(r["status"], "assigned");
    let raw = &r["raw"];
    assert_eq!(raw["x509"]["enrollmentGroupId"], "Line2Group", "{raw}");
    let info = &raw["x509"]["certificateInfo"];
    let (sha1, sha256, serial) = openssl(&fx.chain_file(&["x509-dev-1"]));
    assert_eq!(info["sha1Thumbprint"], sha1.as_str(), "{info}");
    assert_eq!(info["sha256Thumbprint"], sha256.as_str());
    assert_eq!(info["serialNumber"], serial.as_str());
    assert_eq!(info["version"], 3);
    assert!(
        info["subjectName"]
            .as_str()
            .unwrap()
            .starts_with("CN=x509-dev-1"),
        "{info}"
    );
    assert!(
        info["issuerName"]
            .as_str()
            .unwrap()
            .starts_with("CN=Line 2"),
        "{info}"
    );
    for k in ["notBeforeUtc", "notAfterUtc"] {
        assert!(info[k].as_str().unwrap().ends_with('Z'), "{info}");
    }
    assert!(
        raw["x509"]["signingCertificateInfo"]["subjectName"]
            .as_str()
            .unwrap()
            .starts_with("CN=Line 2")
    );
    assert!(raw.get("payload").is_none(), "payload echoed: {raw}");
    assert_eq!(r["response_payload"], serde_json::Value::Null);

    let r = python(&fx, "solo-1", MODEL).await;
    assert_eq!(r["step"], "registered", "{r}");
    let x509 = &r["raw"]["x509"];
    assert!(x509.get("enrollmentGroupId").is_none(), "{x509}");
    let (sha1, _, _) = openssl(&fx.chain_file(&["solo-1"]));
    assert_eq!(x509["certificateInfo"]["sha1Thumbprint"], sha1.as_str());
    assert!(r["raw"].get("payload").is_none());
    // The device's own payload is still kept in the registration record.
    let rec = fx.store.dps_registration("solo-1").unwrap().unwrap();
    assert_eq!(
        rec.payload.unwrap()["modelId"],
        "dtmi:com:example:Thermostat;1"
    );
    hub.shutdown().await;
}

/// A webhook receives the documented AllocationRequest, and its AllocationResponse decides:
/// the device gets the webhook's payload, the twin the webhook's initial twin (replacing the
/// enrollment's), and a second registration tells the webhook where the device is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_webhook_allocates_with_payload_and_initial_twin() {
    if !isolated::in_own_netns(
        "dps_allocation::python_webhook_allocates_with_payload_and_initial_twin",
    ) {
        return;
    }
    let fx = Fixture::new();
    fx.device("hook-dev-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    let hook = Webhook::start("ok");
    let enrollment_twin = read_initial_twin(&twin_file(
        fx.root(),
        r#"{"tags":{"from":"enrollment","onlyEnrollment":true},"properties":{"desired":{"mode":"enrollment"}}}"#,
    ))
    .unwrap();
    fx.store
        .dps_add_group(with_allocation(
            "HookGroup",
            "line2",
            Allocation {
                allocation_webhook: Some(hook.url()),
                initial_twin: Some(enrollment_twin),
            },
        ))
        .unwrap();
    let hub = hub_on_8883(&fx, Duration::from_secs(10)).await;

    let r = python(&fx, "hook-dev-1", MODEL).await;
    assert_eq!(r["step"], "registered", "{r}");
    assert_eq!(r["assigned_hub"], "localhost");
    let expected = serde_json::json!({
        "greeting": "hello from the webhook",
        "yours": {"modelId": "dtmi:com:example:Thermostat;1"},
    });
    assert_eq!(r["raw"]["payload"], expected);
    assert_eq!(r["response_payload"], expected);

    let requests = hook.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0]["path"], "/api/allocate?code=k1");
    assert_eq!(requests[0]["content_type"], "application/json");
    let body = &requests[0]["body"];
    let eg = &body["enrollmentGroup"];
    assert_eq!(eg["enrollmentGroupId"], "HookGroup", "{body}");
    assert_eq!(eg["allocationPolicy"], "custom");
    assert_eq!(eg["attestation"]["type"], "x509");
    assert_eq!(eg["customAllocationDefinition"]["webhookUrl"], hook.url());
    assert_eq!(eg["initialTwin"]["tags"]["from"], "enrollment");
    assert!(body.get("individualEnrollment").is_none());
    let ctx = &body["deviceRuntimeContext"];
    assert_eq!(ctx["registrationId"], "hook-dev-1");
    assert!(ctx.get("currentIotHubHostName").is_none(), "{ctx}");
    assert_eq!(ctx["payload"]["modelId"], "dtmi:com:example:Thermostat;1");
    let (sha1, _, _) = openssl(&fx.chain_file(&["hook-dev-1"]));
    assert_eq!(
        ctx["x509"]["certificateInfo"]["sha1Thumbprint"],
        sha1.as_str()
    );
    assert_eq!(body["linkedHubs"], serde_json::json!(["localhost"]));

    // The webhook's initial twin, not the enrollment's.
    let twin = fx.store.load_twin("hook-dev-1").unwrap();
    assert_eq!(
        serde_json::Value::Object(twin.tags.clone()),
        serde_json::json!({"site": "hall-7", "from": "webhook"})
    );
    assert_eq!(twin.desired["interval"], 30);
    assert!(twin.desired.get("mode").is_none(), "{:?}", twin.desired);

    let r = python(&fx, "hook-dev-1", MODEL).await;
    assert_eq!(r["substatus"], "reprovisionedToInitialAssignment", "{r}");
    let again = &hook.requests()[1]["body"]["deviceRuntimeContext"];
    assert_eq!(again["currentIotHubHostName"], "localhost", "{again}");
    assert_eq!(again["currentDeviceId"], "hook-dev-1");
    hub.shutdown().await;
}

/// A webhook that times out, answers HTML or names a hub DPS is not linked to: the device
/// gets 400 (DPS's 400209, custom allocation failed), the hub's log line says which, and no
/// device is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_webhook_failures_refuse_the_device() {
    if !isolated::in_own_netns("dps_allocation::python_webhook_failures_refuse_the_device") {
        return;
    }
    let fx = Fixture::new();
    fx.device("bad-hook-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    let hub = hub_on_8883(&fx, Duration::from_secs(1)).await;
    let mut events = hub.events();
    for (mode, kind, says) in [
        ("slow", "webhook-timeout", "did not answer within 1 s"),
        ("notjson", "webhook-not-json", "not an AllocationResponse"),
        (
            "wronghub",
            "webhook-unknown-hub",
            "\"elsewhere.azure-devices.net\", which is not one of DPS's linked hubs",
        ),
    ] {
        let hook = Webhook::start(mode);
        fx.store
            .dps_add_group(with_allocation(
                "HookGroup",
                "line2",
                Allocation {
                    allocation_webhook: Some(hook.url()),
                    initial_twin: None,
                },
            ))
            .unwrap();
        let r = python(&fx, "bad-hook-1", MODEL).await;
        assert_eq!(r["step"], "error", "{mode}: {r}");
        let err = format!("{} / {}", r["error"], r["cause"]);
        assert!(err.contains("status code 400"), "{mode}: {err}");
        let e = refusal(&mut events).await;
        let line = e.line();
        let HubEvent::DpsRefused {
            kind: k,
            error_code,
            reason,
            ..
        } = e
        else {
            unreachable!()
        };
        assert_eq!(k, kind, "{mode}: {reason}");
        assert_eq!(error_code, 400209);
        assert!(reason.contains(says), "{mode}: {reason}");
        assert!(line.contains("custom allocation failed"), "{line}");
        assert!(line.contains(&hook.url()), "{line}");
        assert!(
            fx.store.device("bad-hook-1").is_err(),
            "{mode}: device created"
        );
        assert_eq!(hook.requests().len(), 1, "{mode}");
    }
    hub.shutdown().await;
}

/// `--initial-twin` alone: its tags and desired properties land at the first assignment
/// (`hub twin` shows them); after the operator changes the twin, registering again leaves it
/// as the operator made it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_initial_twin_lands_on_first_assignment_only() {
    if !isolated::in_own_netns("dps_allocation::python_initial_twin_lands_on_first_assignment_only")
    {
        return;
    }
    let fx = Fixture::new();
    fx.device("twin-dev-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    let file = twin_file(
        fx.root(),
        "{\n  \"tags\": {\"site\": \"hall-7\", \"floor\": {\"level\": 2}},\n  \"properties\": {\"desired\": {\"interval\": 30}}\n}\n",
    );
    let out = Command::cargo_bin("chainsmith")
        .unwrap()
        .env("CHAINSMITH_WORKSPACE", fx.root())
        .args(["hub", "dps", "group", "add", "TwinGroup", "--ca", "line2"])
        .arg("--initial-twin")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("initial twin"));
    let hub = hub_on_8883(&fx, Duration::from_secs(10)).await;

    let r = python(&fx, "twin-dev-1", MODEL).await;
    assert_eq!(r["substatus"], "initialAssignment", "{r}");
    assert!(r["raw"].get("payload").is_none());
    let shown = Command::cargo_bin("chainsmith")
        .unwrap()
        .env("CHAINSMITH_WORKSPACE", fx.root())
        .args(["--json", "hub", "twin", "twin-dev-1"])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(doc["tags"]["site"], "hall-7", "{doc}");
    assert_eq!(doc["tags"]["floor"]["level"], 2);
    assert_eq!(doc["desired"]["interval"], 30);
    let version = doc["desired"]["$version"].as_u64().unwrap();

    fx.store
        .patch_desired("twin-dev-1", &serde_json::json!({"interval": 99}))
        .unwrap();
    let r = python(&fx, "twin-dev-1", MODEL).await;
    assert_eq!(r["substatus"], "reprovisionedToInitialAssignment", "{r}");
    let twin = fx.store.load_twin("twin-dev-1").unwrap();
    assert_eq!(twin.desired["interval"], 99);
    assert_eq!(twin.desired_version(), version + 1);
    assert_eq!(twin.tags["site"], "hall-7");
    hub.shutdown().await;
}

/// Hostile `--initial-twin` files and webhook URLs the local DPS will not call are refused at
/// add time with the problem named, and nothing is stored.
#[test]
fn hostile_initial_twins_and_webhook_urls_are_refused_at_add() {
    let fx = Fixture::new();
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("{{\"tags\":{}1{}}}", "{\"a\":".repeat(11), "}".repeat(11));
    let big = format!(
        "{{\"properties\":{{\"desired\":{{\"blob\":\"{}\"}}}}}}",
        "x".repeat(40 * 1024)
    );
    let fifo = dir.path().join("fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success(),
        "mkfifo"
    );
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            write("deep.json", &deep),
            "levels deep; Azure allows at most 10",
        ),
        (write("big.json", &big), "bytes; Azure allows at most 32768"),
        (
            write("dollar.json", r#"{"tags":{"$owner":"x"}}"#),
            "key \"$owner\" is not allowed",
        ),
        (
            write(
                "version.json",
                r#"{"properties":{"desired":{"$version":4}}}"#,
            ),
            "\"$version\" is the twin's own",
        ),
        (
            write("reported.json", r#"{"properties":{"reported":{"a":1}}}"#),
            "is not an initial twin",
        ),
        (write("notjson.json", "tags: a"), "is not JSON"),
        (dir.path().to_path_buf(), "is not a regular file"),
        (fifo, "is not a regular file"),
    ];
    let cs = || {
        let mut c = Command::cargo_bin("chainsmith").unwrap();
        c.env("CHAINSMITH_WORKSPACE", fx.root());
        c
    };
    for (file, says) in cases {
        let out = cs()
            .args([
                "hub",
                "dps",
                "group",
                "add",
                "G",
                "--ca",
                "line2",
                "--initial-twin",
            ])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was taken", file.display());
        assert!(err.contains(says), "{}: {err}", file.display());
        assert!(err.contains("--initial-twin"), "{err}");
    }
    for (url, says) in [
        ("https://127.0.0.1:9/x", "plain http only"),
        ("http://example.com/alloc", "must be 127.0.0.1 or [::1]"),
        ("http://u:p@127.0.0.1/x", "user info"),
    ] {
        let out = cs()
            .args(["hub", "dps", "enroll", "dev-1", "--primary"])
            .arg("AB".repeat(20))
            .args(["--allocation-webhook", url])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{url} was taken");
        assert!(err.contains(says), "{url}: {err}");
    }
    let st = fx.store.dps_load().unwrap();
    assert!(st.groups.is_empty() && st.individuals.is_empty());
}
