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

/// Why a workspace entity cannot be tested is a typed engine error: `--json` gives its kind,
/// and the CLI's hint names the command or flags that fix it (the engine's words name none).
#[test]
fn entities_that_cannot_be_tested_have_kinds_and_cli_hints() {
    let (t, ws) = ws();
    // A device signed from a CSR made by openssl: its key never enters the workspace.
    let (_key, csr) = crate::common::openssl_csr(t.path(), "csr-dev", &[]);
    ok(
        &ws,
        &["sign-csr", csr.to_str().unwrap(), "--issuer", "Line 2"],
    );
    let error = |args: &[&str]| {
        let out = bin(&ws).arg("--json").args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["error"]["kind"].as_str().unwrap().to_string(),
            v["error"]["message"].as_str().unwrap().to_string(),
        )
    };
    let (kind, message) = error(&["connect", "Line 2"]);
    assert_eq!(kind, "not-a-device");
    assert!(
        message.contains("is a intermediate certificate, not a device")
            || message.contains("is an intermediate certificate, not a device"),
        "{message}"
    );
    assert!(
        message.contains("`chainsmith new device ID --issuer CA`"),
        "{message}"
    );
    let (kind, message) = error(&["connect", "csr-dev"]);
    assert_eq!(kind, "no-key");
    assert!(
        message.contains("has no private key in the workspace"),
        "{message}"
    );
    assert!(
        message.ends_with("(pass --cert FILE --key FILE)"),
        "{message}"
    );
    let (kind, message) = error(&["connect", "nobody"]);
    assert_eq!(kind, "not-found");
    assert!(message.contains("`chainsmith list`"), "{message}");
}
