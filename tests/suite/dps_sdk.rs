//! The official SDKs provisioning through the local DPS as IoT Central's X.509 guide does:
//! the Python `ProvisioningDeviceClient` (group enrollment with a root and with an
//! intermediate, individual enrollment with the primary and the secondary certificate, every
//! refusal as the client sees it) and the Node provisioning client (group enrollment), each
//! followed by the SDK's device client sending telemetry to the assigned hub. The SDKs dial
//! port 8883, so every test runs in its own network namespace (`isolated::in_own_netns`).

use crate::dps_protocol::group;
use crate::isolated;
use chainsmith_test_support::hub_util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chainsmith::hub::{Auth, Hub, HubConfig, HubEvent, HubHandle};
use chainsmith::ops::{self, DeviceRequest, ValidityArg};
use chainsmith::store::Slot;
use hub_util::Fixture;

async fn hub_on_8883(fx: &Fixture) -> HubHandle {
    Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            // The workspace's clock: a fixture fixed in time makes a hub fixed in time.
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .expect("127.0.0.1:8883 is free in this network namespace")
}

/// Run `tests/dps_sdk_device.py`: its JSON lines.
async fn python(fx: &Fixture, regid: &str, cert: &Path, key: &Path) -> Vec<serde_json::Value> {
    let scope = fx.store.dps_id_scope().unwrap();
    let args: Vec<String> = vec![
        concat!(env!("CARGO_MANIFEST_DIR"), "/tests/dps_sdk_device.py").into(),
        regid.into(),
        scope,
        cert.display().to_string(),
        key.display().to_string(),
        fx.trust_file().display().to_string(),
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
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        out.status.success() && !lines.is_empty(),
        "python exited {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    lines
}

/// The assigned registration's line, asserting the telemetry made it through.
fn assigned(lines: &[serde_json::Value]) -> &serde_json::Value {
    let r = &lines[0];
    assert_eq!(r["step"], "registered", "{lines:?}");
    assert_eq!(r["status"], "assigned", "{lines:?}");
    assert_eq!(r["assigned_hub"], "localhost");
    assert_eq!(lines.last().unwrap()["step"], "sent", "{lines:?}");
    r
}

/// The telemetry the hub received from `device` since the last call.
fn telemetry_from(events: &mut tokio::sync::broadcast::Receiver<HubEvent>, device: &str) -> usize {
    let mut n = 0;
    while let Ok(e) = events.try_recv() {
        if let HubEvent::Telemetry { device: d, .. } = e
            && d == device
        {
            n += 1;
        }
    }
    n
}

/// Group enrollment as the guide's first track: a root in one group, an intermediate in
/// another; each device provisions with `ProvisioningDeviceClient`, then
/// `IoTHubDeviceClient` sends telemetry to the assigned hub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_group_enrollment_root_and_intermediate_then_telemetry() {
    if !isolated::in_own_netns(
        "dps_sdk::python_group_enrollment_root_and_intermediate_then_telemetry",
    ) {
        return;
    }
    let fx = Fixture::new();
    fx.device("sample-device-01", Some("root"), ValidityArg::default());
    fx.device("sample-device-02", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "root").unwrap();
    chainsmith::hub::dps_prove(&fx.store, "line2").unwrap();
    fx.store
        .dps_add_group(group("MyX509Group", "root"))
        .unwrap();
    fx.store
        .dps_add_group(group("Line2Group", "line2"))
        .unwrap();
    let hub = hub_on_8883(&fx).await;
    let mut events = hub.events();

    let lines = python(
        &fx,
        "sample-device-01",
        &fx.chain_file(&["sample-device-01"]),
        &fx.key_file("sample-device-01"),
    )
    .await;
    let r = assigned(&lines);
    assert_eq!(r["device_id"], "sample-device-01");
    assert_eq!(r["substatus"], "initialAssignment");
    assert_eq!(telemetry_from(&mut events, "sample-device-01"), 1);

    // The intermediate's device sends only its leaf: only the intermediate's group takes it.
    let lines = python(
        &fx,
        "sample-device-02",
        &fx.chain_file(&["sample-device-02"]),
        &fx.key_file("sample-device-02"),
    )
    .await;
    assigned(&lines);
    assert_eq!(telemetry_from(&mut events, "sample-device-02"), 1);

    let st = fx.store.dps_load().unwrap();
    let enrollment = |id: &str| st.registration(id).unwrap().enrollment.clone();
    assert_eq!(enrollment("sample-device-01"), "group MyX509Group");
    assert_eq!(enrollment("sample-device-02"), "group Line2Group");
    assert_eq!(
        st.registration("sample-device-01")
            .unwrap()
            .payload
            .as_ref()
            .unwrap()["modelId"],
        "dtmi:com:example:Thermostat;1"
    );
    // By thumbprint, as Azure's DPS registers every X.509 device (issue 21/22).
    assert_eq!(
        fx.store.device("sample-device-02").unwrap().auth,
        Auth::SelfSigned
    );
    hub.shutdown().await;
}

fn self_signed_both_slots(fx: &Fixture, id: &str) -> (PathBuf, PathBuf) {
    for slot in [Slot::Primary, Slot::Secondary] {
        ops::lifecycle::new_devices_or_slot(
            &fx.ws,
            &DeviceRequest {
                ids: vec![id.into()],
                slot: Some(slot),
                ..Default::default()
            },
        )
        .unwrap();
    }
    let slots = ops::lifecycle::slots(&fx.ws, id).unwrap();
    let dir_of = |s: Slot| slots.iter().find(|x| x.slot == s).unwrap().dir.clone();
    (dir_of(Slot::Primary), dir_of(Slot::Secondary))
}

/// Individual enrollment as the guide's second track: a self-signed device enrolled with its
/// primary and secondary certificates provisions with either, then sends telemetry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_individual_enrollment_primary_and_secondary() {
    if !isolated::in_own_netns("dps_sdk::python_individual_enrollment_primary_and_secondary") {
        return;
    }
    let fx = Fixture::new();
    let (primary, secondary) = self_signed_both_slots(&fx, "mytestselfcertprimary");
    fx.store
        .dps_enroll(
            "mytestselfcertprimary",
            None,
            Some("mytestselfcertprimary"),
            None,
            None,
            false,
            None,
            Default::default(),
        )
        .unwrap();
    let hub = hub_on_8883(&fx).await;
    let mut events = hub.events();
    let lines = python(
        &fx,
        "mytestselfcertprimary",
        &primary.join("cert.pem"),
        &primary.join("key.pem"),
    )
    .await;
    assert_eq!(assigned(&lines)["substatus"], "initialAssignment");
    assert_eq!(telemetry_from(&mut events, "mytestselfcertprimary"), 1);
    let lines = python(
        &fx,
        "mytestselfcertprimary",
        &secondary.join("cert.pem"),
        &secondary.join("key.pem"),
    )
    .await;
    assert_eq!(
        assigned(&lines)["substatus"],
        "reprovisionedToInitialAssignment"
    );
    assert_eq!(telemetry_from(&mut events, "mytestselfcertprimary"), 1);
    assert_eq!(
        fx.store.device("mytestselfcertprimary").unwrap().auth,
        Auth::SelfSigned
    );
    hub.shutdown().await;
}

/// Every refusal as the Python SDK reports it (a ServiceError naming the status), with the
/// exact reason in the hub's events.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sees_each_refusal() {
    if !isolated::in_own_netns("dps_sdk::python_sees_each_refusal") {
        return;
    }
    // The workspace and the hub share a fixed clock: the expired window does not depend on
    // the day the suite runs.
    let fixed = time::macros::datetime!(2031-03-01 00:00 UTC);
    let fx = Fixture::at(fixed);
    let now = fixed.unix_timestamp();
    let rfc = |t: i64| {
        chainsmith::pki::issue::rfc3339(time::OffsetDateTime::from_unix_timestamp(t).unwrap())
    };
    fx.device("good-1", Some("line2"), ValidityArg::default());
    fx.device("off-1", Some("root"), ValidityArg::default());
    fx.device(
        "old-1",
        Some("line2"),
        ValidityArg {
            days: None,
            not_before: Some(rfc(now - 30 * 86_400)),
            not_after: Some(rfc(now - 2 * 86_400)),
        },
    );
    fx.device("selfie-1", None, ValidityArg::default());
    ops::new_ca(
        &fx.ws,
        &chainsmith_test_support::workspace::ca_req("unproved", Some("Unproved Root"), None),
    )
    .unwrap();
    fx.device("unproved-1", Some("unproved"), ValidityArg::default());
    fx.store.dps_add_ca("line2", true).unwrap();
    fx.store.dps_add_ca("root", true).unwrap();
    fx.store.dps_add_ca("unproved", false).unwrap();
    fx.store.dps_add_group(group("lines", "line2")).unwrap();
    let mut off = group("off", "root");
    off.settings.enabled = false;
    fx.store.dps_add_group(off).unwrap();
    fx.store
        .dps_add_group(group("pending", "unproved"))
        .unwrap();
    let hub = hub_on_8883(&fx).await;
    let mut events = hub.events();

    // (registration id, certificate chain, key, status the SDK reports, the hub's kind)
    let cases = [
        (
            "selfie-1",
            fx.chain_file(&["selfie-1"]),
            fx.key_file("selfie-1"),
            401,
            "unknown-root",
        ),
        (
            "unproved-1",
            fx.chain_file(&["unproved-1"]),
            fx.key_file("unproved-1"),
            401,
            "unverified",
        ),
        (
            "old-1",
            fx.chain_file(&["old-1"]),
            fx.key_file("old-1"),
            401,
            "expired",
        ),
        (
            "not-good-1",
            fx.chain_file(&["good-1"]),
            fx.key_file("good-1"),
            401,
            "cn-mismatch",
        ),
        (
            "off-1",
            fx.chain_file(&["off-1"]),
            fx.key_file("off-1"),
            403,
            "enrollment-disabled",
        ),
    ];
    for (regid, chain, key, status, kind) in cases {
        let lines = python(&fx, regid, &chain, &key).await;
        assert_eq!(
            lines[0]["step"], "error",
            "{regid} was not refused: {lines:?}"
        );
        // ClientError("Unexpected failure") caused by the pipeline's ServiceError.
        let err = format!("{} / {}", lines[0]["error"], lines[0]["cause"]);
        assert!(
            err.contains(&format!("status code {status}")),
            "{regid}: the SDK said {err}"
        );
        let refusal = loop {
            match tokio::time::timeout(Duration::from_secs(5), events.recv()).await {
                Ok(Ok(HubEvent::DpsRefused { kind, reason, .. })) => break (kind, reason),
                Ok(Ok(_)) => {}
                other => panic!("no DpsRefused for {regid}: {other:?}"),
            }
        };
        assert_eq!(refusal.0, kind, "{regid}: {}", refusal.1);
        assert!(fx.store.device(regid).is_err(), "{regid} reached the hub");
    }
    hub.shutdown().await;
}

/// The Node SDK (`azure-iot-provisioning-device` + `-mqtt` + `azure-iot-security-x509`)
/// registers through a group, then the Node device client connects and sends telemetry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_group_registration_then_device_client() {
    if !isolated::in_own_netns("dps_sdk::node_group_registration_then_device_client") {
        return;
    }
    let fx = Fixture::new();
    fx.device("node-dev-1", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "root").unwrap();
    fx.store.dps_add_group(group("NodeGroup", "root")).unwrap();
    let scope = fx.store.dps_id_scope().unwrap();
    let hub = hub_on_8883(&fx).await;
    let mut events = hub.events();
    let lines = node_dps_device(&fx, "node-dev-1", &scope, "mqtt").await;
    let stdout = format!("{lines:?}");
    assert_eq!(lines[0]["step"], "registered", "{stdout}");
    assert_eq!(lines[0]["assignedHub"], "localhost");
    assert_eq!(lines[0]["deviceId"], "node-dev-1");
    assert_eq!(lines.last().unwrap()["step"], "sent", "{stdout}");
    assert_eq!(telemetry_from(&mut events, "node-dev-1"), 1);
    hub.shutdown().await;
}

/// IoT Central's X.509 guide the Node way, unmodified (`tests/node/central_sample_device.js`):
/// the provisioning SDK over MQTT dials `global.azure-devices-provisioning.net` (resolved to the
/// hub by a hosts file of the test's own), passes no server certificate, and trusts the hub
/// only through what `hub trust --install` prints for Node: `NODE_EXTRA_CA_CERTS`, or
/// `SSL_CERT_FILE=<bundle> node --use-openssl-ca`; without either it cannot connect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_central_sample_trusts_the_hub_through_node_extra_ca_certs() {
    if !isolated::in_own_netns(
        "dps_sdk::node_central_sample_trusts_the_hub_through_node_extra_ca_certs",
    ) {
        return;
    }
    if !Path::new("/usr/sbin/update-ca-certificates").exists() {
        isolated::skip(
            "dps_sdk::node_central_sample_trusts_the_hub_through_node_extra_ca_certs",
            "needs update-ca-certificates (Debian package ca-certificates) for `hub trust --install`",
        );
        return;
    }
    let global = chainsmith::azure::dps::GLOBAL_ENDPOINT;
    let fx = Fixture::new();
    fx.device("sample-device-01", Some("line2"), ValidityArg::default());
    chainsmith::hub::dps_prove(&fx.store, "root").unwrap();
    fx.store
        .dps_add_group(group("MyX509Group", "root"))
        .unwrap();
    // What the CLI prints for Node, read from `hub trust --install --json` (into a file tree
    // of the test's own: the system's store is not the test's to change).
    let image = fx.dir.path().join("image");
    let out = Command::new(env!("CARGO_BIN_EXE_chainsmith"))
        .arg("--workspace")
        .arg(fx.root())
        .args(["--json", "hub", "trust", "--install", "--system-root"])
        .arg(&image)
        .output()
        .unwrap();
    let trust: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let env = trust["node"]["env"].as_str().unwrap().to_string();
    let (env_name, ca_path) = env.split_once('=').unwrap();
    assert_eq!(env_name, "NODE_EXTRA_CA_CERTS");
    assert_eq!(ca_path, trust["trust"].as_str().unwrap());
    assert_eq!(trust["node"]["reads_system_store"], false);
    let bundle = trust["system"]["bundle"].as_str().unwrap().to_string();
    assert_eq!(
        trust["node"]["or"],
        format!("SSL_CERT_FILE={bundle} node --use-openssl-ca")
    );

    let hub = Hub::start(
        fx.root(),
        HubConfig {
            port: 8883,
            // The server certificate names the global endpoint, which is also the hub DPS assigns.
            hostname: Some(global.to_string()),
            clock: fx.ws.clock(),
            ..Default::default()
        },
    )
    .await
    .expect("127.0.0.1:8883 is free in this network namespace");
    let mut events = hub.events();
    let scope = fx.store.dps_id_scope().unwrap();
    let chain = fx.chain_file(&["sample-device-01", "line2"]);
    let key = fx.key_file("sample-device-01");
    let hosts = fx.dir.path().join("hosts");
    let run = |trust: Vec<(&'static str, String)>, openssl_ca: bool| {
        let mut cmd = isolated::with_hosts(&hosts, &[global], "timeout");
        cmd.args(["60", "node"]);
        if openssl_ca {
            cmd.arg("--use-openssl-ca");
        }
        cmd.arg("central_sample_device.js")
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node"))
            .env_remove("NODE_EXTRA_CA_CERTS")
            .env_remove("SSL_CERT_FILE")
            .env_remove("IOTHUB_DEVICE_DPS_ENDPOINT")
            .env("IOTHUB_DEVICE_DPS_ID_SCOPE", &scope)
            .env("IOTHUB_DEVICE_DPS_DEVICE_ID", "sample-device-01")
            .env("IOTHUB_DEVICE_X509_CERT", &chain)
            .env("IOTHUB_DEVICE_X509_KEY", &key)
            .envs(trust);
        tokio::task::spawn_blocking(move || cmd.output().expect("node"))
    };
    let lines = |out: &std::process::Output| -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };

    // Without the hub's CA Node refuses the hub's certificate at the provisioning step.
    let out = run(vec![], false).await.unwrap();
    let l = lines(&out);
    assert!(!out.status.success(), "{l:?}");
    assert_eq!(l[0]["where"], "provisioning", "{l:?}");

    for (trust, openssl_ca) in [
        (vec![("NODE_EXTRA_CA_CERTS", ca_path.to_string())], false),
        (vec![("SSL_CERT_FILE", bundle.clone())], true),
    ] {
        let out = run(trust, openssl_ca).await.unwrap();
        let l = lines(&out);
        assert!(
            out.status.success(),
            "node exited {:?}: {l:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(l[0]["step"], "registered", "{l:?}");
        assert_eq!(l[0]["host"], global);
        assert_eq!(l[0]["assignedHub"], global);
        assert_eq!(l[0]["deviceId"], "sample-device-01");
        assert_eq!(l.last().unwrap()["step"], "sent", "{l:?}");
        assert_eq!(telemetry_from(&mut events, "sample-device-01"), 1);
    }
    hub.shutdown().await;
}

/// Run `tests/node/dps_device.js` over `transport`: its JSON lines.
pub(crate) async fn node_dps_device(
    fx: &Fixture,
    regid: &str,
    scope: &str,
    transport: &str,
) -> Vec<serde_json::Value> {
    let chain = fx.chain_file(&[regid, "line2"]);
    let key = fx.key_file(regid);
    let trust = fx.trust_file();
    let args: Vec<String> = vec![
        "90".into(),
        "node".into(),
        "dps_device.js".into(),
        regid.into(),
        scope.into(),
        chain.display().to_string(),
        key.display().to_string(),
        transport.into(),
    ];
    let out = tokio::task::spawn_blocking(move || {
        Command::new("timeout")
            .args(&args)
            .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/node"))
            .env("NODE_EXTRA_CA_CERTS", &trust)
            .output()
            .expect("node")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "node exited {:?}: {stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<_> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(!lines.is_empty(), "node said nothing: {stdout}");
    lines
}
