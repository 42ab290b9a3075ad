//! `fleet run --dps`: every device provisions through the local DPS of a `hub serve` started
//! by the test (its own certificate, polling until assigned), then connects with the assigned
//! device id; refusals are grouped by DPS's status.

use crate::connect_support::*;
use crate::fleet::{Serve, report};
use std::path::Path;

fn hdr_len(latency: &serde_json::Value) -> u64 {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(latency["hdr"].as_str().unwrap())
        .unwrap();
    let h: hdrhistogram::Histogram<u64> = hdrhistogram::serialization::Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .unwrap();
    h.len()
}

fn json(ws: &Path, args: &[&str]) -> serde_json::Value {
    let out = bin(ws).arg("--json").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// 40 devices of an enabled group provision and connect; 6 under a disabled group are
/// `dps-forbidden`, 3 that no enrollment takes are `dps-unauthorized` with the hub's reason.
#[test]
fn group_enrollment_provisions_every_device_and_refusals_are_grouped() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    for (root, devices) in [
        ("Fleet Root", "d-{001..040}"),
        ("Off Root", "e-{001..006}"),
        ("Stray Root", "s-{001..003}"),
    ] {
        ok(&ws, &["new", "root", root]);
        ok(&ws, &["new", "device", devices, "--issuer", root]);
    }
    ok(
        &ws,
        &["hub", "dps", "ca", "add", "Fleet Root", "--verified"],
    );
    ok(&ws, &["hub", "dps", "ca", "add", "Off Root", "--verified"]);
    ok(
        &ws,
        &["hub", "dps", "group", "add", "Line", "--ca", "Fleet Root"],
    );
    ok(
        &ws,
        &[
            "hub",
            "dps",
            "group",
            "add",
            "Off",
            "--ca",
            "Off Root",
            "--disable",
        ],
    );
    // No device is in the hub's registry before the run: DPS puts them there.
    let _hub = Serve::start(&ws);
    let out_path = tmp.path().join("r.json");
    let out = bin(&ws)
        .args(["fleet", "run", "--connect-rate", "500/s", "--timeout", "5s"])
        .args(["d-{001..040}", "e-{001..006}", "s-{001..003}", "--dps"])
        .args(["--messages", "2", "--json", "--report"])
        .arg(&out_path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = report(&out_path);
    assert_eq!(r["devices"], 49, "{r:#}");
    assert_eq!(r["provisioned"], 40, "{r:#}");
    assert_eq!(r["connected"], 40, "{r:#}");
    assert_eq!(r["failed"], 9, "{r:#}");
    assert_eq!(r["messages"]["acked"], 80, "{r:#}");
    assert_eq!(r["latency"]["provision"]["count"], 40);
    assert_eq!(hdr_len(&r["latency"]["provision"]), 40);
    let f = &r["failures"];
    assert_eq!(f.as_object().unwrap().len(), 2, "{f:#}");
    assert_eq!(f["dps-forbidden"]["count"], 6, "{f:#}");
    assert!(
        f["dps-forbidden"]["example"]
            .as_str()
            .unwrap()
            .starts_with("e-")
    );
    assert_eq!(f["dps-unauthorized"]["count"], 3, "{f:#}");
    let cause = f["dps-unauthorized"]["cause"].as_str().unwrap();
    assert!(cause.contains("401"), "{cause}");
    // The report's fix is the engine's words; the CLI's summary adds the commands.
    for kind in ["dps-forbidden", "dps-unauthorized"] {
        let fix = f[kind]["fix"].as_str().unwrap();
        assert!(
            !fix.contains('`') && !fix.contains("--") && !fix.contains("hub dps"),
            "{fix}"
        );
    }
    let merged = bin(&ws)
        .args(["fleet", "merge"])
        .arg(&out_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&merged.stdout);
    assert!(
        text.contains("fix:   enable the device's enrollment")
            && text.contains("(`chainsmith hub dps enable NAME`)")
            && text.contains("`chainsmith hub dps enroll ID --from DEVICE`"),
        "{text}"
    );
    // The live figures counted the provisioning too.
    let last = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|e| e["event"] == "progress")
        .expect("a progress line");
    assert_eq!(last["provisioned"], 40, "{last:#}");
    // DPS's own record: every enabled device registered, once.
    let regs = json(&ws, &["hub", "dps", "registrations"]);
    let mut ids: Vec<String> = regs
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["registration_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    let want: Vec<String> = (1..=40).map(|i| format!("d-{i:03}")).collect();
    assert_eq!(ids, want);
}

/// A broker has no default ID scope: refused before any device is loaded or dialled.
#[test]
fn dps_against_a_broker_needs_an_id_scope() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    ok(&ws, &["new", "root", "R"]);
    ok(&ws, &["new", "device", "r-1", "--issuer", "R"]);
    let port = free_port();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let out = bin(&ws)
        .args(["fleet", "run", "--issuer", "R", "--dps", "--to"])
        .arg(format!("mqtts://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--id-scope"), "{err}");
    // Refused before anything ran: nobody dialled the broker.
    assert!(listener.accept().is_err());
    let out = bin(&ws)
        .args([
            "fleet",
            "run",
            "--issuer",
            "R",
            "--dps",
            "--id-scope",
            "bad scope!",
            "--to",
        ])
        .arg(format!("mqtts://127.0.0.1:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--id-scope"));
}

/// A reconnect storm reconnects to the hub with the assigned id; nothing registers again.
#[test]
fn storm_reconnects_without_provisioning_again() {
    let tmp = tempfile::tempdir().unwrap();
    let ws = tmp.path().join("ws");
    ok(&ws, &["new", "root", "Storm Root"]);
    ok(
        &ws,
        &["new", "device", "t-{01..15}", "--issuer", "Storm Root"],
    );
    ok(
        &ws,
        &["hub", "dps", "ca", "add", "Storm Root", "--verified"],
    );
    ok(
        &ws,
        &["hub", "dps", "group", "add", "G", "--ca", "Storm Root"],
    );
    let hub = Serve::start(&ws);
    let out_path = tmp.path().join("r.json");
    let out = bin(&ws)
        .args(["fleet", "run", "--issuer", "Storm Root", "--dps", "--storm"])
        .args(["--rate", "1/s", "--duration", "18s", "--report"])
        .arg(&out_path)
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&out);
    let r = report(&out_path);
    assert_eq!(r["provisioned"], 15, "{r:#}");
    assert_eq!(r["storm"]["back"], 15, "{r:#}");
    assert_eq!(r["handshakes"], 30, "{r:#}");
    assert_eq!(hub.events("dps-assigned").len(), 15);
    assert_eq!(hub.events("dps-connected").len(), 15);
}
