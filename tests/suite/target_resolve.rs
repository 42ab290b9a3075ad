//! Target resolution is one engine call (`chainsmith::target::resolve`) for `connect`,
//! `fleet run` and both TUI tabs. Each test is a case where the four copies it replaced
//! disagreed, proved through the real binary against a real Mosquitto and through the engine.

use crate::connect_support::*;
use chainsmith::mqtt::Transport;
use chainsmith::mqtt::local::HubSource;
use chainsmith::store::Workspace;
use chainsmith::target::{Destination, HubWatching, TargetSpec, resolve};

/// A broker whose certificate the workspace's "Test Root" issued, trusting that root for
/// devices.
struct Broker {
    tmp: tempfile::TempDir,
    ws: std::path::PathBuf,
    root_pem: std::path::PathBuf,
    to: String,
    _broker: Mosquitto,
}

fn broker() -> Broker {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    let root_pem = ws.join("entities/Test Root/cert.pem");
    let (cert, key) = server_cert(&ws, "Test Root", tmp.path());
    let broker = mosquitto(tmp.path(), &root_pem, &cert, &key);
    Broker {
        to: format!("mqtts://127.0.0.1:{}", broker.port),
        tmp,
        ws,
        root_pem,
        _broker: broker,
    }
}

fn fleet_run(b: &Broker, extra: &[&str]) -> std::process::Output {
    bin(&b.ws)
        .args([
            "fleet",
            "run",
            "sensor-7",
            "--to",
            &b.to,
            "--messages",
            "1",
            "--timeout",
            "5s",
        ])
        .args(extra)
        .output()
        .unwrap()
}

fn spec(to: Destination<'_>, anchors: Vec<Vec<u8>>) -> TargetSpec<'_> {
    TargetSpec {
        to,
        transport: Transport::Mqtt,
        flavor: None,
        anchors,
        watching: HubWatching::RecordsAndRefusals,
    }
}

/// The CLI trusted only the system store without --ca, the TUI the system store and every
/// workspace root: a broker certificate from a workspace root failed in `connect` and `fleet
/// run` and passed in the TUI. Now it passes everywhere.
#[test]
fn a_broker_issued_from_a_workspace_root_is_trusted_without_ca() {
    let b = broker();
    let (ok, ev) = {
        let out = bin(&b.ws)
            .args(["connect", "--json", "sensor-7", "--count", "1"])
            .args(["--interval", "0", "--timeout", "5s", "--to", &b.to])
            .output()
            .unwrap();
        (out.status.success(), events(&out.stdout))
    };
    assert!(ok, "{ev:#?}");
    let tls = find(&ev, "tls-established").unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(tls["server_verified"], true, "{tls}");

    let out = fleet_run(&b, &[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Named anchors replace the defaults (the workspace roots and, for a broker, the system
/// store): a device told to trust only "Line 2" does not trust a server "Test Root" vouches for.
#[test]
fn named_anchors_replace_the_workspace_roots() {
    let b = broker();
    let out = bin(&b.ws)
        .args(["connect", "--json", "sensor-7", "--count", "1", "--timeout"])
        .args(["5s", "--to", &b.to, "--ca", "Line 2"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let ev = events(&out.stdout);
    let failed = find(&ev, "failed").unwrap_or_else(|| panic!("{ev:#?}"));
    assert_eq!(failed["code"], "server-untrusted", "{failed}");
    let out = fleet_run(&b, &["--ca", "Line 2"]);
    assert!(!out.status.success());
}

/// `connect --ca` took a DER file, `fleet run --ca` refused it as "not PEM": one reader now.
#[test]
fn fleet_takes_a_der_ca_file_as_connect_does() {
    let b = broker();
    let pem = std::fs::read(&b.root_pem).unwrap();
    let der = ::pem::parse(&pem).unwrap().into_contents();
    let der_path = b.tmp.path().join("root.der");
    std::fs::write(&der_path, der).unwrap();
    let out = fleet_run(&b, &["--ca", der_path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The engine's answer for every kind of target: the rule in `chainsmith::target::Trust`.
#[tokio::test]
async fn resolve_gives_one_trust_rule_for_every_target() {
    let tmp = tempfile::tempdir().unwrap();
    let websocket_path = chain_workspace(tmp.path());
    let ws = Workspace::open(&websocket_path).unwrap();
    let root = ws.load("Test Root").unwrap().cert_der;
    let line = ws.load("Line 2").unwrap().cert_der;

    // A broker, nothing named: the system store and the workspace's roots (not "Line 2").
    let t = resolve(
        Some(&ws),
        spec(Destination::Remote("mqtts://127.0.0.1:1"), vec![]),
    )
    .await
    .unwrap();
    assert_eq!(
        (t.trust.anchors.clone(), t.trust.system_roots),
        (vec![root.clone()], true)
    );
    assert_eq!(t.fleet_round_trip(), chainsmith::fleet::RoundTrip::Echo);

    // A broker, "Line 2" named: that alone.
    let named = spec(
        Destination::Remote("mqtts://127.0.0.1:1"),
        vec![line.clone()],
    );
    let t = resolve(Some(&ws), named).await.unwrap();
    assert_eq!(
        (t.trust.anchors.clone(), t.trust.system_roots),
        (vec![line.clone()], false)
    );

    // An Azure hub, "Line 2" named: that and the system store (Azure's public root).
    let named = spec(
        Destination::Remote("x.azure-devices.net"),
        vec![line.clone()],
    );
    let t = resolve(Some(&ws), named).await.unwrap();
    assert_eq!(
        (t.trust.anchors.clone(), t.trust.system_roots),
        (vec![line.clone()], true)
    );
    assert_eq!(t.fleet_round_trip(), chainsmith::fleet::RoundTrip::None);

    // The local hub: its own server CA and what is named, never the system store.
    let local = spec(
        Destination::Local(HubSource::RunningOrStart),
        vec![line.clone()],
    );
    let mut t = resolve(Some(&ws), local).await.unwrap();
    let store = chainsmith::hub::HubStore::open(&websocket_path).unwrap();
    let hub_ca = ::pem::parse(std::fs::read(store.trust_path()).unwrap())
        .unwrap()
        .into_contents();
    assert_eq!(
        (t.trust.anchors.clone(), t.trust.system_roots),
        (vec![hub_ca, line], false)
    );
    assert_eq!(t.fleet_round_trip(), chainsmith::fleet::RoundTrip::C2d);
    t.started
        .take()
        .expect("started in-process")
        .shutdown()
        .await;

    // A target as written that is no address: the parser's sentence, no panic.
    let bad = spec(Destination::Remote("ftp://x"), vec![]);
    let e = resolve(Some(&ws), bad).await.err().expect("refused");
    assert!(e.to_string().contains("mqtts://"), "{e}");
}
