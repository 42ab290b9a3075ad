//! Failures before any broker speaks: a peer that accepts TCP and stays silent (timeout at
//! the TLS handshake), a name that does not resolve, bad arguments.

use crate::connect_support;
use connect_support::*;

fn ws() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let ws = chain_workspace(tmp.path());
    (tmp, ws)
}

#[test]
fn silent_peer_times_out_at_the_tls_handshake() {
    let (_t, ws) = ws();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let holder = std::thread::spawn(move || {
        let (s, _) = listener.accept().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(3));
        drop(s);
    });
    let out = bin(&ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--timeout",
            "500ms",
            "--to",
            &format!("mqtts://127.0.0.1:{port}"),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out.stdout);
    let f = find(&ev, "failed").unwrap();
    assert_eq!(
        (f["step"].as_str(), f["code"].as_str()),
        (Some("tls-handshake"), Some("timeout")),
        "{f:#}"
    );
    assert!(
        f["cause"]
            .as_str()
            .unwrap()
            .contains("did not finish within 500 ms")
    );
    holder.join().unwrap();
}

#[test]
fn unresolvable_azure_host_is_a_dns_failure() {
    let (_t, ws) = ws();
    let out = bin(&ws)
        .args([
            "connect",
            "--json",
            "sensor-7",
            "--timeout",
            "10s",
            "--to",
            "no-such-hub.invalid",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let ev = events(&out.stdout);
    let start = find(&ev, "start").unwrap();
    assert_eq!(
        (start["peer"].as_str(), start["flavor"].as_str()),
        (Some("azure-hub"), Some("azure"))
    );
    assert!(start["endpoint"].as_str().unwrap().ends_with(":8883"));
    let f = find(&ev, "failed").unwrap();
    assert_eq!(
        (f["step"].as_str(), f["code"].as_str()),
        (Some("resolve"), Some("dns")),
        "{f:#}"
    );
    assert!(f["fix"].as_str().unwrap().contains("azure-devices.net"));
}

#[test]
fn bad_arguments_are_named() {
    let (_t, ws) = ws();
    let out = bin(&ws)
        .args(["connect", "sensor-7", "--to", "mqtt://127.0.0.1:1883"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("mqtts://HOST:PORT"));
    let out = bin(&ws)
        .args(["connect", "Test Root", "--to", "mqtts://127.0.0.1:1"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a device"));
    let out = bin(&ws)
        .args(["connect", "sensor-7", "--qos", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "clap rejects --qos 2");
    let out = bin(&ws)
        .args(["connect", "sensor-7", "--interval", "soon"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a duration"));
    let out = bin(&ws)
        .args(["connect", "nobody", "--to", "mqtts://127.0.0.1:1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let key = ws.join("entities/Test Root/key.pem");
    let out = bin(&ws)
        .args(["connect", "--to", "mqtts://127.0.0.1:1", "--cert"])
        .arg(ws.join("entities/sensor-7/cert.pem"))
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not belong to the certificate"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
