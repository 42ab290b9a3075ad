//! Every refusal reason of IoT Hub's X.509 rules, seen from the client (mosquitto_pub gets
//! CONNACK 5 "not authorised") and in the hub's events (the exact reason).

use chainsmith_test_support::hub_util;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chainsmith::hub::{Auth, HubEvent, HubHandle};
use chainsmith::ops::ValidityArg;
use hub_util::{Fixture, username};
use tokio::sync::broadcast::Receiver;

struct Attempt<'a> {
    client_id: &'a str,
    username: String,
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
}

/// mosquitto_pub one QoS 1 message; returns (exit code, stderr).
async fn mosquitto_pub(fx: &Fixture, addr: SocketAddr, a: &Attempt<'_>) -> (i32, String) {
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.args(["-h", "localhost", "-p", &addr.port().to_string()])
        .arg("--cafile")
        .arg(fx.trust_file())
        .args(["-i", a.client_id, "-u", &a.username, "-q", "1", "-m", "x"])
        .args(["-t", &format!("devices/{}/messages/events/", a.client_id)]);
    if let (Some(c), Some(k)) = (a.cert, a.key) {
        cmd.arg("--cert").arg(c).arg("--key").arg(k);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output())
        .await
        .expect("mosquitto_pub hung")
        .expect("mosquitto_pub installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The verdict the hub announced for the next connection: Ok(device) or Err(reason).
async fn verdict(events: &mut Receiver<HubEvent>) -> Result<String, String> {
    loop {
        let e = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("hub said nothing")
            .expect("event channel");
        match e {
            HubEvent::Accepted { device, .. } => return Ok(device),
            HubEvent::Refused { reason, .. } => return Err(reason),
            _ => {}
        }
    }
}

async fn expect_refused(
    fx: &Fixture,
    hub: &HubHandle,
    events: &mut Receiver<HubEvent>,
    a: Attempt<'_>,
    reason: &str,
) {
    let (code, stderr) = mosquitto_pub(fx, hub.addr, &a).await;
    assert_eq!(code, 5, "client should see CONNACK 5; stderr {stderr}");
    assert!(stderr.contains("not authorised"), "{stderr}");
    let got = verdict(events).await.expect_err("should be refused");
    assert!(got.contains(reason), "hub reason {got:?} lacks {reason:?}");
}

async fn expect_accepted(
    fx: &Fixture,
    hub: &HubHandle,
    events: &mut Receiver<HubEvent>,
    a: Attempt<'_>,
) {
    let (code, stderr) = mosquitto_pub(fx, hub.addr, &a).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(verdict(events).await, Ok(a.client_id.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_refusal_reason_is_named() {
    let fx = Fixture::new();
    let day = 86_400;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let rfc = |t: i64| {
        chainsmith::pki::issue::rfc3339(time::OffsetDateTime::from_unix_timestamp(t).unwrap())
    };
    fx.device("sensor-7", Some("line2"), ValidityArg::default());
    fx.device("sensor-07", Some("line2"), ValidityArg::default());
    fx.device(
        "old-1",
        Some("line2"),
        ValidityArg {
            days: None,
            not_before: Some(rfc(now - 30 * day)),
            not_after: Some(rfc(now - 3 * day - 3600)),
        },
    );
    fx.device("selfie", None, ValidityArg::default());
    fx.device("other-selfie", None, ValidityArg::default());
    fx.store.add_ca("root", false).unwrap();
    fx.register("sensor-7", Auth::Ca, None);
    fx.register("old-1", Auth::Ca, None);
    fx.register("selfie", Auth::SelfSigned, Some("other-selfie"));

    let hub = chainsmith_test_support::hub_util::start_hub(fx.root()).await;
    let mut ev = hub.events();
    let chain7 = fx.chain_file(&["sensor-7", "line2"]);
    let key7 = fx.key_file("sensor-7");
    let good = || Attempt {
        client_id: "sensor-7",
        username: username("sensor-7"),
        cert: Some(&chain7),
        key: Some(&key7),
    };

    // CA uploaded but not verified.
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        good(),
        r#"device sensor-7: chain ends at "Contoso Root", which is registered but not verified"#,
    )
    .await;

    // Proof of possession done while the hub runs: the next connection is accepted.
    let code = fx.store.load().unwrap().cas[0].code.clone();
    let ver = fx.dir.path().join("ver.pem");
    chainsmith::ops::new_verification(&fx.ws, "root", &code, &ver, None, false).unwrap();
    fx.store
        .verify_ca("root", &std::fs::read(&ver).unwrap())
        .unwrap();
    expect_accepted(&fx, &hub, &mut ev, good()).await;

    // Leaf only: the intermediate is neither sent nor registered.
    let leaf7 = fx.chain_file(&["sensor-7"]);
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            cert: Some(&leaf7),
            ..good()
        },
        r#"device sensor-7: issuer "Line 2" was neither sent in the TLS chain nor registered with the hub"#,
    )
    .await;

    // Leaf CN differs from the device id.
    let chain07 = fx.chain_file(&["sensor-07", "line2"]);
    let key07 = fx.key_file("sensor-07");
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            cert: Some(&chain07),
            key: Some(&key07),
            ..good()
        },
        r#"leaf CN "sensor-07" != device id "sensor-7""#,
    )
    .await;

    // Disabled, then enabled again: no restart needed.
    fx.store.set_enabled("sensor-7", false).unwrap();
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        good(),
        "device sensor-7: device disabled",
    )
    .await;
    fx.store.set_enabled("sensor-7", true).unwrap();
    expect_accepted(&fx, &hub, &mut ev, good()).await;

    // Expired certificate: the TLS handshake completes (mosquitto_pub gets as far as its
    // CONNECT) and the refusal is CONNACK 5, as IoT Hub refuses it (docs/reference/spec.md,
    // negative fixtures; the source is cited in hub/auth.rs).
    let chain_old = fx.chain_file(&["old-1", "line2"]);
    let key_old = fx.key_file("old-1");
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            client_id: "old-1",
            username: username("old-1"),
            cert: Some(&chain_old),
            key: Some(&key_old),
        },
        "device old-1: certificate expired 3 days ago",
    )
    .await;

    // Self-signed: the registered thumbprint belongs to another certificate.
    let selfie = fx.chain_file(&["selfie"]);
    let key_selfie = fx.key_file("selfie");
    let selfie_attempt = || Attempt {
        client_id: "selfie",
        username: username("selfie"),
        cert: Some(&selfie),
        key: Some(&key_selfie),
    };
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        selfie_attempt(),
        "device selfie: thumbprint matches neither slot",
    )
    .await;
    // Its SHA-1 thumbprint in the secondary slot: accepted.
    let sha1 = fx.ws.load("selfie").unwrap().meta.sha1;
    fx.store.remove_device("selfie").unwrap();
    fx.store
        .add_device(
            "selfie",
            Auth::SelfSigned,
            Some(&"0".repeat(64)),
            Some(&sha1),
            None,
        )
        .unwrap();
    expect_accepted(&fx, &hub, &mut ev, selfie_attempt()).await;

    // Unknown device, username naming another device, no client certificate.
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            client_id: "ghost",
            username: username("ghost"),
            ..good()
        },
        "device ghost: not registered",
    )
    .await;
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            username: username("sensor-8"),
            ..good()
        },
        r#"username names device "sensor-8" but the client id is "sensor-7""#,
    )
    .await;
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            username: "not a hub username".into(),
            ..good()
        },
        "api-version",
    )
    .await;
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            cert: None,
            key: None,
            ..good()
        },
        "no client certificate",
    )
    .await;

    // The SDK's extra username parameters are accepted.
    expect_accepted(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            username: format!(
                "localhost/sensor-7/?api-version=2021-04-12&DeviceClientType={}",
                chainsmith::azure::url_encode("py-azure-iot-device/2.14.0")
            ),
            ..good()
        },
    )
    .await;

    // An intermediate registered and verified: the leaf alone is enough.
    fx.store.add_ca("line2", true).unwrap();
    expect_accepted(
        &fx,
        &hub,
        &mut ev,
        Attempt {
            cert: Some(&leaf7),
            ..good()
        },
    )
    .await;
    hub.shutdown().await;
}

/// Root registered and verified, its intermediate uploaded but never verified: IoT Hub accepts the
/// device, because "an X.509 CA certificate can authenticate any device that has the CA in its
/// certificate chain of trust" and the device "has an X.509 certificate with the verified X.509 CA
/// in its certificate chain of trust" (Microsoft Learn, "Authenticate identities with third-party
/// X.509 certificates", articles/iot-hub/authenticate-authorize-x509.md, sections "Types of
/// certificate authentication" and "Register the X.509 CA certificate to IoT Hub"). An unverified
/// CA only explains a refusal when nothing verified is in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_root_admits_devices_under_an_unverified_intermediate() {
    let fx = Fixture::new();
    fx.device("sensor-7", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).unwrap();
    fx.store.add_ca("line2", false).unwrap();
    fx.register("sensor-7", Auth::Ca, None);
    let hub = chainsmith_test_support::hub_util::start_hub(fx.root()).await;
    let mut ev = hub.events();
    let chain = fx.chain_file(&["sensor-7", "line2"]);
    let key = fx.key_file("sensor-7");
    let attempt = || Attempt {
        client_id: "sensor-7",
        username: username("sensor-7"),
        cert: Some(&chain),
        key: Some(&key),
    };
    expect_accepted(&fx, &hub, &mut ev, attempt()).await;

    // Without the verified root the same chain is refused, and the reason names the
    // intermediate that still awaits its proof of possession.
    fx.store.remove_ca("root").unwrap();
    expect_refused(
        &fx,
        &hub,
        &mut ev,
        attempt(),
        r#"chain ends at "Line 2", which is registered but not verified"#,
    )
    .await;
    hub.shutdown().await;
}
