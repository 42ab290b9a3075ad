//! `chainsmith export`: PEM / DER / azure / edge layouts checked with the openssl CLI.

use crate::common;
use common::{Ws, openssl};

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn count_certs(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap()
        .matches("BEGIN CERTIFICATE")
        .count()
}

#[test]
fn pem_layout_verifies_with_openssl_and_keys_are_private() {
    let w = Ws::new();
    w.chain("dev-01");
    w.ok(&["export", "dev-01", "--out", "out"]);
    let out = w.path("out");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "acme.root.pem",
            "dev-01.cert.pem",
            "dev-01.chain.pem",
            "dev-01.fullchain.pem",
            "dev-01.key.pem"
        ]
    );
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev-01.chain.pem",
            "dev-01.cert.pem",
        ],
        &out,
    );
    assert!(ok && text.contains("dev-01.cert.pem: OK"), "{text}");
    let (ok, text) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev-01.chain.pem",
            "dev-01.cert.pem",
        ],
        &out,
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(&["pkey", "-check", "-noout", "-in", "dev-01.key.pem"], &out);
    assert!(ok && text.contains("valid"), "{text}");
    assert!(
        std::fs::read_to_string(out.join("dev-01.key.pem"))
            .unwrap()
            .starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    assert_eq!(mode(&out.join("dev-01.key.pem")), 0o600);
    for f in [
        "dev-01.cert.pem",
        "dev-01.chain.pem",
        "dev-01.fullchain.pem",
        "acme.root.pem",
    ] {
        assert_eq!(mode(&out.join(f)), 0o644, "{f}");
    }
    // chain = leaf + intermediate (no root); fullchain = leaf up to the root.
    assert_eq!(count_certs(&out.join("dev-01.chain.pem")), 2);
    assert_eq!(count_certs(&out.join("dev-01.fullchain.pem")), 3);
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev-01.fullchain.pem",
            "dev-01.cert.pem",
        ],
        &out,
    );
    assert!(ok, "{text}");
}

#[test]
fn never_overwrites_without_force_and_writes_nothing_on_conflict() {
    let w = Ws::new();
    w.chain("dev1");
    let out = w.path("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::write(out.join("dev1.chain.pem"), "mine").unwrap();
    let err = w.fails(&["export", "dev1", "--out", "out"]);
    assert!(
        err.contains("dev1.chain.pem")
            && err.contains("--force")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(&out).unwrap().count(),
        1,
        "no other file was written"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("dev1.chain.pem")).unwrap(),
        "mine"
    );
    w.ok(&["export", "dev1", "--out", "out", "--force"]);
    assert_eq!(count_certs(&out.join("dev1.chain.pem")), 2);
    assert_eq!(mode(&out.join("dev1.key.pem")), 0o600);
    // A second device into the same directory shares the identical root file.
    w.ok(&["new", "device", "dev2", "--issuer", "inter"]);
    let text = w.ok(&["export", "dev2", "--out", "out"]);
    assert!(
        text.contains("acme.root.pem already holds the same content"),
        "{text}"
    );
}

#[test]
fn key_password_encrypts_pkcs8_with_aes256() {
    let w = Ws::new();
    w.chain("dev1");
    w.ok(&[
        "export",
        "dev1",
        "--out",
        "out",
        "--format",
        "pem,der",
        "--key-password",
        "k3y-pass",
    ]);
    let out = w.path("out");
    let pem = std::fs::read_to_string(out.join("dev1.key.pem")).unwrap();
    assert!(
        pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        "{pem}"
    );
    let (_, asn1) = openssl(&["asn1parse", "-in", "dev1.key.pem"], &out);
    assert!(
        asn1.contains("aes-256-cbc") && asn1.contains("PBES2"),
        "{asn1}"
    );
    let (ok, text) = openssl(
        &[
            "pkey",
            "-check",
            "-noout",
            "-in",
            "dev1.key.pem",
            "-passin",
            "pass:k3y-pass",
        ],
        &out,
    );
    assert!(ok, "{text}");
    let (ok, _) = openssl(
        &[
            "pkey",
            "-noout",
            "-in",
            "dev1.key.pem",
            "-passin",
            "pass:wrong",
        ],
        &out,
    );
    assert!(!ok, "a wrong password must not open the key");
    let (ok, text) = openssl(
        &[
            "pkey",
            "-check",
            "-noout",
            "-inform",
            "DER",
            "-in",
            "dev1.key.der",
            "-passin",
            "pass:k3y-pass",
        ],
        &out,
    );
    assert!(ok, "{text}");
    assert_eq!(mode(&out.join("dev1.key.der")), 0o600);
}

#[test]
fn der_files_are_read_by_openssl() {
    let w = Ws::new();
    w.chain("dev1");
    w.ok(&["export", "dev1", "--out", "out", "--format", "der"]);
    let out = w.path("out");
    let (ok, text) = openssl(
        &[
            "x509", "-inform", "DER", "-in", "dev1.cer", "-noout", "-subject",
        ],
        &out,
    );
    assert!(ok && text.contains("CN = dev1"), "{text}");
    let (ok, text) = openssl(
        &[
            "pkey",
            "-inform",
            "DER",
            "-in",
            "dev1.key.der",
            "-check",
            "-noout",
        ],
        &out,
    );
    assert!(ok, "{text}");
    assert_eq!(mode(&out.join("dev1.key.der")), 0o600);
}

#[test]
fn azure_layout_keeps_the_device_id_exactly() {
    let w = Ws::new();
    let id = "line-7.sensor.01";
    w.chain(id);
    let text = w.ok(&["export", id, "--out", "az", "--format", "azure"]);
    assert!(
        text.contains("\"1234\""),
        "the default password is announced: {text}"
    );
    let out = w.path("az");
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "line-7.sensor.01.pfx",
            "line-7.sensor.01_cert.pem",
            "line-7.sensor.01_fullchain.pem",
            "line-7.sensor.01_key.pem"
        ]
    );
    assert_eq!(mode(&out.join("line-7.sensor.01_key.pem")), 0o600);
    assert_eq!(mode(&out.join("line-7.sensor.01.pfx")), 0o600);
    assert_eq!(count_certs(&out.join("line-7.sensor.01_fullchain.pem")), 3);
    let (ok, text) = openssl(
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            "line-7.sensor.01.pfx",
            "-passin",
            "pass:1234",
        ],
        &out,
    );
    assert!(ok, "{text}");
    let (ok, text) = openssl(
        &[
            "pkey",
            "-check",
            "-noout",
            "-in",
            "line-7.sensor.01_key.pem",
        ],
        &out,
    );
    assert!(ok, "{text}");
    // A verification certificate gets the Node tool's file name.
    w.ok(&[
        "new",
        "verification",
        "--issuer",
        "inter",
        "--code",
        "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3",
        "--out",
        "v.pem",
    ]);
    let list = w.ok(&["--json", "list"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    let name = v["entities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "verification")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["export", &name, "--out", "verif", "--format", "azure"]);
    let names: Vec<String> = std::fs::read_dir(w.path("verif"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["verification_cert.pem"]);
}

#[test]
fn edge_snippet_points_at_the_exported_files() {
    let w = Ws::new();
    w.chain("edge-gw.01");
    let text = w.ok(&[
        "export",
        "edge-gw.01",
        "--out",
        "edge",
        "--format",
        "edge",
        "--id-scope",
        "0ne00ABCDEF",
    ]);
    assert!(
        text.contains("[provisioning.attestation]"),
        "printed too: {text}"
    );
    let out = w.path("edge");
    let cfg: toml::Value =
        toml::from_str(&std::fs::read_to_string(out.join("edge-gw.01.edge-config.toml")).unwrap())
            .unwrap();
    assert_eq!(cfg["provisioning"]["source"].as_str(), Some("dps"));
    assert_eq!(
        cfg["provisioning"]["global_endpoint"].as_str(),
        Some("https://global.azure-devices-provisioning.net")
    );
    assert_eq!(
        cfg["provisioning"]["id_scope"].as_str(),
        Some("0ne00ABCDEF")
    );
    let att = &cfg["provisioning"]["attestation"];
    assert_eq!(att["method"].as_str(), Some("x509"));
    assert_eq!(att["registration_id"].as_str(), Some("edge-gw.01"));
    for key in ["identity_cert", "identity_pk"] {
        let uri = att[key].as_str().unwrap();
        let path = uri
            .strip_prefix("file://")
            .unwrap_or_else(|| panic!("{key} = {uri}"));
        assert!(
            Path::new(path).is_file(),
            "{key} points at {path}, which exists"
        );
    }
    assert_eq!(mode(&out.join("edge-gw.01.key.pem")), 0o600);
}

#[test]
fn stdout_for_single_file_formats() {
    let w = Ws::new();
    w.chain("dev1");
    let pem = w.ok(&["export", "dev1", "--stdout"]);
    assert_eq!(
        pem.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate: {pem}"
    );
    assert!(!pem.contains("PRIVATE KEY"));
    let err = w.fails(&["export", "dev1", "--stdout", "--format", "azure"]);
    assert!(err.contains("--out"), "{err}");
    let err = w.fails(&["export", "dev1", "--out", "o", "--format", "zip"]);
    assert!(err.contains("pem, der, pfx, azure, edge"), "{err}");
    assert!(!w.path("o").exists());
}

#[test]
fn csr_signed_device_exports_certificates_without_a_key() {
    let w = Ws::new();
    w.chain("dev1");
    let dir = w.dir.path();
    crate::common::openssl_csr(dir, "csrdev", &[]);
    w.ok(&["sign-csr", "csrdev.csr", "--issuer", "inter"]);
    let text = w.ok(&["export", "csrdev", "--out", "o"]);
    assert!(text.contains("no private key"), "{text}");
    assert!(!w.path("o/csrdev.key.pem").exists());
    let err = w.fails(&[
        "export",
        "csrdev",
        "--out",
        "o2",
        "--format",
        "pfx",
        "--password",
        "x",
    ]);
    assert!(err.contains("no private key"), "{err}");
}

#[test]
fn json_report_lists_files_with_modes_and_pfx_algorithms() {
    let w = Ws::new();
    w.chain("dev1");
    let out = w
        .cmd()
        .args([
            "--json", "export", "dev1", "--out", "j", "--format", "pem,pfx",
        ])
        .env("CHAINSMITH_PFX_PASSWORD", "hidden-pw")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("hidden-pw"), "no password in JSON");
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let files = v["files"].as_array().unwrap();
    let mode_of = |suffix: &str| {
        files
            .iter()
            .find(|f| f["path"].as_str().unwrap().ends_with(suffix))
            .unwrap()["mode"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(mode_of("dev1.key.pem"), "0600");
    assert_eq!(mode_of("dev1.pfx"), "0600");
    assert_eq!(mode_of("dev1.cert.pem"), "0644");
    let pfx = &v["pfx"][0];
    assert_eq!(pfx["certificates"], 3);
    assert_eq!(pfx["has_key"], true);
    assert_eq!(pfx["algorithms"]["mac_digest"], "SHA-256");
    assert_eq!(
        pfx["algorithms"]["key_bags"][0]["algorithm"],
        "PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)"
    );
    std::fs::write(w.path("j/dev1.cert.pem"), "changed by hand").unwrap();
    let err = w
        .cmd()
        .args(["--json", "export", "dev1", "--out", "j"])
        .output()
        .unwrap();
    let e: serde_json::Value = serde_json::from_str(&String::from_utf8_lossy(&err.stdout)).unwrap();
    assert_eq!(e["error"]["kind"], "exists");
}
