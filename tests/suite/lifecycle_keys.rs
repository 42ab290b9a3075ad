//! Issue 14 without a hub: a key-compromise revocation reaches every certificate with that key
//! (checked by `openssl verify -crl_check`), replaced certificates stay in the history, import
//! reads every encrypted key format the `openssl` CLI writes without prompting, `sign-csr` keeps
//! a CSR's SANs on request, the Node SDK tool's file names, and verification-code shapes.

use crate::common::{Ws, openssl};

/// `openssl verify -crl_check` of one certificate against the acme → inter chain.
fn verify_with_crl(w: &Ws, cert: &str) -> (bool, String) {
    let dir = w.dir.path();
    openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "o/acme.root.pem",
            "-untrusted",
            "o/inter.cert.pem",
            "-CRLfile",
            "inter.crl.pem",
            cert,
        ],
        dir,
    )
}

#[test]
fn key_compromise_revokes_every_certificate_with_the_key_and_blocks_same_key_renewal() {
    let w = Ws::new();
    w.chain("dev-kc");
    w.ok(&["export", "inter", "--out", "o"]);
    let first = w.json(&["show", "dev-kc"])["serial"]
        .as_str()
        .map(str::to_string);
    let renewed = w.json(&["renew", "dev-kc"]);
    assert_eq!(renewed["rekeyed"], false);
    let old_serial = renewed["old"]["serial"].as_str().unwrap().to_string();
    if let Some(f) = first {
        assert_eq!(f, old_serial);
    }
    std::fs::copy(
        w.ws()
            .join("entities/dev-kc/history")
            .join(&old_serial)
            .join("cert.pem"),
        w.path("old.pem"),
    )
    .unwrap();
    std::fs::copy(w.ws().join("entities/dev-kc/cert.pem"), w.path("new.pem")).unwrap();

    let out = w.ok(&["revoke", "dev-kc", "--reason", "keyCompromise"]);
    assert!(out.contains(&old_serial), "{out}");
    w.ok(&["crl", "inter", "--out", "inter.crl.pem"]);
    for cert in ["old.pem", "new.pem"] {
        let (ok, text) = verify_with_crl(&w, cert);
        assert!(!ok, "{cert} still verifies: {text}");
        assert!(text.contains("certificate revoked"), "{cert}: {text}");
    }
    // Both in the history view, both revoked.
    let h = w.json(&["show", "dev-kc", "--history"]);
    assert_eq!(h["history"][0]["revoked"]["reason"], "keyCompromise");
    assert_eq!(h["current"]["revoked"]["reason"], "keyCompromise");

    // The key stays dead: renewing with it is refused with the reason, a new key is fine.
    let err = w.fails(&["renew", "dev-kc"]);
    assert!(err.contains("compromised"), "{err}");
    assert!(err.contains("--rekey"), "{err}");
    let r = w.json(&["renew", "dev-kc", "--rekey"]);
    assert_eq!(r["rekeyed"], true);
    std::fs::copy(w.ws().join("entities/dev-kc/cert.pem"), w.path("fresh.pem")).unwrap();
    let (ok, text) = verify_with_crl(&w, "fresh.pem");
    assert!(ok, "the re-keyed certificate is not revoked: {text}");
}

#[test]
fn a_plain_revocation_after_renew_revokes_only_the_current_certificate() {
    let w = Ws::new();
    w.chain("dev-plain");
    w.ok(&["renew", "dev-plain"]);
    let out = w.json(&["revoke", "dev-plain", "--reason", "superseded"]);
    assert_eq!(out["also_revoked"].as_array().unwrap().len(), 0);
    // Not a key compromise: the same key may be certified again.
    w.ok(&["renew", "dev-plain"]);
}

#[test]
fn new_device_force_keeps_the_replaced_certificate_in_history() {
    let w = Ws::new();
    w.chain("dev-f");
    let old = w.json(&["show", "dev-f", "--history"])["current"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["new", "device", "dev-f", "--issuer", "inter", "--force"]);
    let h = w.json(&["show", "dev-f", "--history"]);
    assert_eq!(h["history"][0]["serial"], old.as_str(), "{h}");
    assert_ne!(h["current"]["serial"], old.as_str());
    // Its key is kept with it, as a renewal with a new key keeps the old one.
    assert!(
        w.ws()
            .join("entities/dev-f/history")
            .join(&old)
            .join("key.pem")
            .exists()
    );
}

/// A self-signed certificate for `key` (encrypted with `pass`), by the openssl CLI.
fn cert_for(w: &Ws, key: &str, pass: &str, out: &str) {
    let (ok, text) = openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            key,
            "-passin",
            pass,
            "-subj",
            "/CN=Company CA",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-out",
            out,
        ],
        w.dir.path(),
    );
    assert!(ok, "{text}");
}

#[test]
fn import_reads_every_encrypted_key_format_openssl_writes() {
    let w = Ws::new();
    let dir = w.dir.path();
    let run = |args: &[&str]| {
        let (ok, text) = openssl(args, dir);
        assert!(ok, "openssl {args:?}: {text}");
    };
    // Traditional PEM (Proc-Type: 4,ENCRYPTED): OpenSSL 3's genrsa needs -traditional for it,
    // its `ec` writes it by default.
    run(&[
        "genrsa",
        "-traditional",
        "-aes256",
        "-passout",
        "pass:s3cret",
        "-out",
        "rsa-trad.pem",
        "2048",
    ]);
    run(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ec-plain.pem",
    ]);
    run(&[
        "ec",
        "-in",
        "ec-plain.pem",
        "-des3",
        "-passout",
        "pass:s3cret",
        "-out",
        "ec-trad.pem",
    ]);
    // PKCS#8 PBES1 (PBE-SHA1-3DES) and PBES2 (AES-256).
    run(&[
        "pkcs8",
        "-topk8",
        "-v1",
        "PBE-SHA1-3DES",
        "-in",
        "ec-plain.pem",
        "-passout",
        "pass:s3cret",
        "-out",
        "ec-pbes1.pem",
    ]);
    run(&[
        "pkcs8",
        "-topk8",
        "-v2",
        "aes256",
        "-in",
        "ec-plain.pem",
        "-passout",
        "pass:s3cret",
        "-out",
        "ec-pbes2.pem",
    ]);
    // And what OpenSSL 3's genrsa writes by default (PKCS#8 PBES2).
    run(&[
        "genrsa",
        "-aes256",
        "-passout",
        "pass:s3cret",
        "-out",
        "rsa-p8.pem",
        "2048",
    ]);
    let trad = std::fs::read_to_string(w.path("rsa-trad.pem")).unwrap();
    assert!(trad.contains("Proc-Type: 4,ENCRYPTED"), "{trad}");
    assert!(
        std::fs::read_to_string(w.path("ec-trad.pem"))
            .unwrap()
            .contains("DES-EDE3-CBC")
    );

    for (i, key) in [
        "rsa-trad.pem",
        "ec-trad.pem",
        "ec-pbes1.pem",
        "ec-pbes2.pem",
        "rsa-p8.pem",
    ]
    .iter()
    .enumerate()
    {
        let cert = format!("{key}.crt");
        cert_for(&w, key, "pass:s3cret", &cert);
        let name = format!("company-{i}");
        // No password: a clear error, no prompt.
        let err = w.fails(&["import", &cert, key, "--name", &name]);
        assert!(
            err.contains("encrypted") && err.contains("--password"),
            "{key}: {err}"
        );
        // A wrong password is the key's own error, not a PKCS#12 one (issue 22 item 9).
        let err = w.fails(&["import", &cert, key, "--name", &name, "--password", "wrong"]);
        assert!(
            err.contains(&format!(
                "the password for the encrypted key in {key} is wrong (the key does not decrypt with it)"
            )) && !err.contains("PKCS#12"),
            "{key}: {err}"
        );
        let out = w
            .cmd()
            .args(["--json", "import", &cert, key, "--name", &name])
            .args(["--password", "wrong"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["error"]["kind"], "wrong-password", "{key}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("does not decrypt") && !msg.contains("PKCS#12"),
            "{key}: {v}"
        );
        let out = w.ok_all(&[
            "import",
            &cert,
            key,
            "--name",
            &name,
            "--password",
            "s3cret",
        ]);
        assert!(out.contains("with its private key"), "{key}: {out}");
        // It can issue: the key really is the CA's.
        w.ok(&["new", "device", &format!("d-{i}"), "--issuer", &name]);
    }
}

#[test]
fn import_never_prompts_on_a_terminal() {
    // Under `script` the command has a controlling terminal, where OpenSSL's default callback
    // would ask "Enter PEM pass phrase:" and wait. It must fail at once instead.
    let w = Ws::new();
    let (ok, text) = openssl(
        &[
            "genrsa",
            "-traditional",
            "-aes256",
            "-passout",
            "pass:pw",
            "-out",
            "k.pem",
            "2048",
        ],
        w.dir.path(),
    );
    assert!(ok, "{text}");
    cert_for(&w, "k.pem", "pass:pw", "c.pem");
    let bin = assert_cmd::cargo::cargo_bin("chainsmith");
    let cmdline = format!(
        "{} --workspace {} import c.pem k.pem --name tty-ca; echo EXIT=$?",
        bin.display(),
        w.ws().display()
    );
    let out = std::process::Command::new("timeout")
        .args(["20", "script", "-qec", &cmdline, "/dev/null"])
        .current_dir(w.dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("pass phrase"), "it prompted: {text}");
    assert!(text.contains("EXIT=1"), "{text}");
    assert!(text.contains("--password"), "{text}");
}

#[test]
fn sign_csr_keeps_checked_sans_or_takes_them_from_the_flag() {
    let w = Ws::new();
    w.chain("unused");
    let dir = w.dir.path();
    let csr = |name: &str, san: &str| {
        let san = format!("subjectAltName={san}");
        crate::common::openssl_csr(dir, name, &["-addext", &san]);
    };
    let sans_of = |name: &str| {
        let (ok, text) = openssl(
            &[
                "x509",
                "-in",
                &format!("ws/entities/{name}/cert.pem"),
                "-noout",
                "-ext",
                "subjectAltName",
            ],
            dir,
        );
        assert!(
            ok || text.is_empty() || text.contains("No extensions"),
            "{text}"
        );
        text
    };
    csr(
        "dev-csr",
        "DNS:dev-csr,DNS:dev.example.com,IP:10.0.0.7,URI:urn:dev:csr,email:ops@example.com",
    );

    // Without --keep-san the SANs are left out, and the warning says how to keep them.
    let out = w.ok_all(&["sign-csr", "dev-csr.csr", "--issuer", "inter"]);
    assert!(out.contains("--keep-san"), "{out}");
    assert!(!sans_of("dev-csr").contains("DNS:dev-csr"));

    // With --keep-san: DNS, IP and URI copied, email not (and said).
    let out = w.ok_all(&[
        "sign-csr",
        "dev-csr.csr",
        "--issuer",
        "inter",
        "--keep-san",
        "--force",
    ]);
    assert!(out.contains("email:ops@example.com"), "{out}");
    let s = sans_of("dev-csr");
    for want in [
        "DNS:dev-csr",
        "DNS:dev.example.com",
        "IP Address:10.0.0.7",
        "URI:urn:dev:csr",
    ] {
        assert!(s.contains(want), "{want} missing: {s}");
    }
    assert!(!s.contains("ops@example.com"), "{s}");

    // --san as on new device, added to the kept ones.
    w.ok(&[
        "sign-csr",
        "dev-csr.csr",
        "--issuer",
        "inter",
        "--keep-san",
        "--san",
        "DNS:extra.example.com",
        "--force",
    ]);
    let s = sans_of("dev-csr");
    assert!(
        s.contains("DNS:extra.example.com") && s.contains("DNS:dev-csr"),
        "{s}"
    );

    // A wildcard is no device's name: refused with the name, nothing stored.
    csr("dev-wild", "DNS:*.example.com");
    let err = w.fails(&[
        "sign-csr",
        "dev-wild.csr",
        "--issuer",
        "inter",
        "--keep-san",
    ]);
    assert!(err.contains("*.example.com"), "{err}");
    assert!(!w.ws().join("entities/dev-wild").exists());
    // The certificate's CN is the name it is signed for: a DNS SAN naming another device (the
    // CSR's own CN, here) is not copied into it, it is refused (issue 21: nobody becomes
    // someone else).
    csr("dev_ok:1", "DNS:dev_ok:1");
    let err = w.fails(&[
        "sign-csr",
        "dev_ok:1.csr",
        "--issuer",
        "inter",
        "--keep-san",
        "--name",
        "dev-ok-1",
    ]);
    assert!(err.contains("dev_ok:1"), "{err}");
    assert!(!w.ws().join("entities/dev-ok-1").exists());
}

#[test]
fn azure_export_names_node_sdk_like_create_test_cert_js() {
    // IoT Central's guide: IOTHUB_DEVICE_X509_CERT=…sampleDevice01_cert.pem for device
    // "sample-device-01", as create_test_cert.js names it.
    let w = Ws::new();
    w.chain("sample-device-01");
    w.ok(&[
        "export",
        "sample-device-01",
        "--out",
        "node",
        "--format",
        "azure",
        "--names",
        "node-sdk",
    ]);
    for f in [
        "sampleDevice01_cert.pem",
        "sampleDevice01_key.pem",
        "sampleDevice01_fullchain.pem",
    ] {
        assert!(w.path("node").join(f).exists(), "{f}");
    }
    // The default stays the exact id.
    w.ok(&[
        "export",
        "sample-device-01",
        "--out",
        "exact",
        "--format",
        "azure",
    ]);
    assert!(w.path("exact/sample-device-01_cert.pem").exists());
    // The Node tool names a CA's files after its CN ("Test Root Cert" → testRootCert).
    w.ok(&["new", "root", "tr", "--cn", "Test Root Cert"]);
    w.ok(&[
        "export", "tr", "--out", "node", "--format", "azure", "--names", "node-sdk",
    ]);
    assert!(w.path("node/testRootCert_cert.pem").exists());
    let err = w.fails(&[
        "export", "tr", "--out", "x", "--format", "azure", "--names", "camel",
    ]);
    assert!(err.contains("node-sdk"), "{err}");
}

#[test]
fn verification_code_shape_warns_and_reads_standard_input() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    let code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3";
    let out = w.ok_all(&[
        "new",
        "verification",
        "--issuer",
        "acme",
        "--code",
        code,
        "--out",
        "v1.pem",
    ]);
    assert!(!out.contains("warning"), "{out}");
    // Another shape: made, with a warning that names the expected one.
    let out = w.ok_all(&[
        "new",
        "verification",
        "--issuer",
        "acme",
        "--code",
        "xyz",
        "--out",
        "v2.pem",
    ]);
    assert!(out.contains("warning") && out.contains("48 hex"), "{out}");
    // --code -: piped in, as from az or the clipboard (trailing newline, quotes).
    let out = w
        .cmd()
        .args([
            "new",
            "verification",
            "--issuer",
            "acme",
            "--code",
            "-",
            "--out",
            "v3.pem",
        ])
        .write_stdin(format!("\"{code}\"\n"))
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&out);
    let (ok, subject) = openssl(
        &["x509", "-in", "v3.pem", "-noout", "-subject"],
        w.dir.path(),
    );
    assert!(ok && subject.contains(code), "{subject}");
    let out = w
        .cmd()
        .args([
            "new",
            "verification",
            "--issuer",
            "acme",
            "--code",
            "-",
            "--out",
            "v4.pem",
        ])
        .write_stdin("\n")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("standard input"));
}
