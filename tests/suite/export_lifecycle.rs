//! Import, renew, thumbprint slots, revoke + CRL, expiry: checked with the openssl CLI.

use crate::common;
use common::{Ws, openssl};

use std::path::Path;

fn sha1_of(cert: &Path) -> String {
    let (ok, text) = openssl(
        &[
            "x509",
            "-in",
            cert.to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha1",
        ],
        cert.parent().unwrap(),
    );
    assert!(ok, "{text}");
    text.trim().rsplit('=').next().unwrap().replace(':', "")
}

#[test]
fn crl_marks_the_revoked_device_and_not_its_sibling() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    w.ok(&["new", "intermediate", "inter", "--issuer", "acme"]);
    w.ok(&["new", "device", "dev-a", "dev-b", "--issuer", "inter"]);
    let msg = w.ok(&["revoke", "dev-a", "--reason", "keyCompromise"]);
    assert!(
        msg.contains("Azure IoT Hub does not check CRLs") && msg.contains("disable"),
        "{msg}"
    );
    let crl_out = w.ok(&["crl", "inter", "--out", "inter.crl.pem", "--days", "7"]);
    assert!(
        crl_out.contains("does not check CRLs") && crl_out.contains("dev-a"),
        "{crl_out}"
    );
    w.ok(&["crl", "acme", "--out", "acme.crl.pem"]);
    for d in ["dev-a", "dev-b"] {
        w.ok(&["export", d, "--out", "o"]);
    }
    let dir = w.path("o");
    // Both CRLs: -crl_check_all checks every level of the chain.
    std::fs::write(
        dir.join("crls.pem"),
        std::fs::read_to_string(w.path("inter.crl.pem")).unwrap()
            + &std::fs::read_to_string(w.path("acme.crl.pem")).unwrap(),
    )
    .unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev-a.chain.pem",
            "-CRLfile",
            "crls.pem",
            "dev-a.cert.pem",
        ],
        &dir,
    );
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check_all",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev-b.chain.pem",
            "-CRLfile",
            "crls.pem",
            "dev-b.cert.pem",
        ],
        &dir,
    );
    assert!(ok && text.contains("dev-b.cert.pem: OK"), "{text}");
    let (ok, text) = openssl(&["crl", "-in", "../inter.crl.pem", "-noout", "-text"], &dir);
    assert!(ok && text.contains("Key Compromise"), "{text}");
    // show and list mark it; revoking twice is refused with the hub reminder.
    let show = w.ok(&["show", "dev-a"]);
    assert!(
        show.contains("Revoked") && show.contains("does not check CRLs"),
        "{show}"
    );
    assert!(w.ok(&["list"]).contains("[REVOKED]"));
    let err = w.fails(&["revoke", "dev-a"]);
    assert!(
        err.contains("already revoked") && err.contains("does not check CRLs"),
        "{err}"
    );
    let err = w.fails(&["revoke", "dev-b", "--reason", "bored"]);
    assert!(err.contains("keyCompromise"), "{err}");
    // Renewing the revoked device keeps its old serial on the CRL; the new one is good.
    let old_serial = w.json(&["show", "dev-a"])["meta"]["serial"]
        .as_str()
        .unwrap()
        .to_string();
    w.ok(&["renew", "dev-a", "--rekey"]);
    let crl = w.json(&["crl", "inter"]);
    let serials: Vec<&str> = crl["revoked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["serial"].as_str().unwrap())
        .collect();
    assert_eq!(serials, [old_serial.as_str()]);
    std::fs::write(w.path("inter2.crl.pem"), crl["pem"].as_str().unwrap()).unwrap();
    w.ok(&["export", "dev-a", "--out", "o3"]);
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "../o/acme.root.pem",
            "-untrusted",
            "dev-a.chain.pem",
            "-CRLfile",
            "../inter2.crl.pem",
            "dev-a.cert.pem",
        ],
        &w.path("o3"),
    );
    assert!(ok, "the renewed certificate is not revoked: {text}");
}

#[test]
fn pfx_import_round_trip_issues_devices_that_openssl_verifies() {
    let vendor = Ws::new();
    vendor.ok(&["new", "root", "acme"]);
    vendor.ok(&["new", "intermediate", "inter", "--issuer", "acme"]);
    vendor.ok(&[
        "export",
        "inter",
        "--out",
        "x",
        "--format",
        "pfx,pem",
        "--password",
        "p12pass",
    ]);
    // The "company CA" arrives in another workspace as a PFX.
    let company = vendor.other();
    let pfx = vendor.path("x/inter.pfx");
    let out = company.ok(&[
        "import",
        pfx.to_str().unwrap(),
        "--name",
        "company",
        "--password",
        "p12pass",
    ]);
    assert!(
        out.contains("imported intermediate company") && out.contains("with its private key"),
        "{out}"
    );
    company.ok(&["new", "device", "plant-3.robot-7", "--issuer", "company"]);
    company.ok(&["export", "plant-3.robot-7", "--out", "dev"]);
    let dev = company.path("dev");
    std::fs::copy(vendor.path("x/acme.root.pem"), dev.join("acme.root.pem")).unwrap();
    let (ok, text) = openssl(
        &[
            "verify",
            "-x509_strict",
            "-purpose",
            "sslclient",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "plant-3.robot-7.chain.pem",
            "plant-3.robot-7.cert.pem",
        ],
        &dev,
    );
    assert!(ok && text.contains("OK"), "{text}");
    // PEM cert + key import works the same.
    let pem_out = company.ok(&[
        "import",
        vendor.path("x/inter.cert.pem").to_str().unwrap(),
        vendor.path("x/inter.key.pem").to_str().unwrap(),
        "--name",
        "company-pem",
    ]);
    assert!(pem_out.contains("with its private key"), "{pem_out}");
    company.ok(&["new", "device", "d2", "--issuer", "company-pem"]);
    // Its issuer lives in the vendor's workspace: renewing it here must not self-sign it.
    let err = company.fails(&["renew", "company"]);
    assert!(
        err.contains("not in this workspace") && err.contains("CN=acme"),
        "{err}"
    );
    company.ok(&["renew", "plant-3.robot-7"]);
}

#[test]
fn import_errors_are_clear() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    w.ok(&["new", "root", "other"]);
    w.ok(&["new", "device", "dev1", "--issuer", "acme"]);
    let ent = |n: &str, f: &str| {
        w.path(&format!("ws/entities/{n}/{f}"))
            .to_str()
            .unwrap()
            .to_string()
    };
    // mismatched key
    let err = w.fails(&[
        "import",
        &ent("acme", "cert.pem"),
        &ent("other", "key.pem"),
        "--name",
        "x",
    ]);
    assert!(err.contains("does not belong to the certificate"), "{err}");
    // garbage
    std::fs::write(w.path("junk.bin"), b"\x00\x01 certainly not a certificate").unwrap();
    let err = w.fails(&["import", "junk.bin", "--name", "x"]);
    assert!(
        err.contains("junk.bin") && err.contains("not a certificate, private key or PKCS#12"),
        "{err}"
    );
    std::fs::write(w.path("empty.pem"), b"").unwrap();
    assert!(
        w.fails(&["import", "empty.pem", "--name", "x"])
            .contains("empty")
    );
    // a key alone
    let err = w.fails(&["import", &ent("acme", "key.pem"), "--name", "x"]);
    assert!(err.contains("no certificate"), "{err}");
    // non-CA imported, then asked to issue
    let out = w.ok(&[
        "import",
        &ent("dev1", "cert.pem"),
        &ent("dev1", "key.pem"),
        "--name",
        "legacy-dev",
    ]);
    assert!(out.contains("not a CA"), "{out}");
    let err = w.fails(&["new", "device", "d9", "--issuer", "legacy-dev"]);
    assert!(
        err.contains("not a CA") && err.contains("cannot issue"),
        "{err}"
    );
    // cert only: trust-only, cannot issue
    let out = w.ok(&["import", &ent("other", "cert.pem"), "--name", "anchor"]);
    assert!(out.contains("trust-only"), "{out}");
    assert_eq!(w.json(&["show", "anchor"])["meta"]["has_key"], false);
    let err = w.fails(&["new", "device", "d9", "--issuer", "anchor"]);
    assert!(err.contains("trust-only"), "{err}");
    // an encrypted key needs its password; a wrong one is named
    w.ok(&["export", "other", "--out", "enc", "--key-password", "kp"]);
    let err = w.fails(&[
        "import",
        "enc/other.cert.pem",
        "enc/other.key.pem",
        "--name",
        "o2",
    ]);
    assert!(
        err.contains("encrypted") && err.contains("--password"),
        "{err}"
    );
    let err = w.fails(&[
        "import",
        "enc/other.cert.pem",
        "enc/other.key.pem",
        "--name",
        "o2",
        "--password",
        "nope",
    ]);
    assert!(err.contains("password") && err.contains("wrong"), "{err}");
    w.ok(&[
        "import",
        "enc/other.cert.pem",
        "enc/other.key.pem",
        "--name",
        "o2",
        "--password",
        "kp",
    ]);
    // names are not silently replaced
    let err = w.fails(&["import", &ent("other", "cert.pem"), "--name", "acme"]);
    assert!(err.contains("--force"), "{err}");
    let key_mode = std::fs::metadata(w.path("ws/entities/o2/key.pem")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&key_mode.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn renew_keeps_the_key_unless_rekey_and_keeps_history() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    w.ok(&["new", "device", "dev1", "--issuer", "acme", "--days", "3"]);
    let before = w.json(&["show", "dev1"]);
    let entity = w.path("ws/entities/dev1");
    let pubkey = || openssl(&["x509", "-in", "cert.pem", "-noout", "-pubkey"], &entity).1;
    let pub_before = pubkey();
    let out = w.ok(&["renew", "dev1", "--days", "90"]);
    assert_eq!(
        pubkey(),
        pub_before,
        "renew without --rekey certifies the same key"
    );
    assert!(
        out.contains("same key") && out.contains("no re-registration"),
        "{out}"
    );
    let after = w.json(&["show", "dev1"]);
    assert_ne!(before["meta"]["serial"], after["meta"]["serial"]);
    assert_eq!(before["meta"]["subject"], after["meta"]["subject"]);
    let key_a = std::fs::read_to_string(w.path("ws/entities/dev1/key.pem")).unwrap();
    w.ok(&["renew", "dev1", "--rekey"]);
    let key_b = std::fs::read_to_string(w.path("ws/entities/dev1/key.pem")).unwrap();
    assert_ne!(key_a, key_b, "--rekey makes a new key");
    assert_ne!(pubkey(), pub_before, "--rekey certifies the new key");
    let hist = w.json(&["show", "dev1", "--history"]);
    let past = hist["history"].as_array().unwrap();
    assert_eq!(past.len(), 2);
    assert_eq!(past[0]["serial"], before["meta"]["serial"]);
    assert_eq!(past[1]["serial"], after["meta"]["serial"]);
    let text = w.ok(&["show", "dev1", "--history"]);
    assert!(
        text.contains(before["meta"]["serial"].as_str().unwrap()) && text.contains("current"),
        "{text}"
    );
    // The renewed device still verifies under its CA (openssl).
    w.ok(&["export", "dev1", "--out", "o"]);
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "acme.root.pem",
            "-untrusted",
            "dev1.chain.pem",
            "dev1.cert.pem",
        ],
        &w.path("o"),
    );
    assert!(ok, "{text}");
    // Renewing a CA with its key keeps issued certificates chaining.
    w.ok(&["renew", "acme", "--days", "400"]);
    w.ok(&["export", "acme", "--out", "o2"]);
    let (ok, text) = openssl(
        &["verify", "-CAfile", "../o2/acme.root.pem", "dev1.cert.pem"],
        &w.path("o"),
    );
    assert!(
        ok,
        "same key + subject: old leaves still verify under the renewed root: {text}"
    );
}

#[test]
fn self_signed_device_holds_both_thumbprint_slots() {
    let w = Ws::new();
    w.ok(&[
        "new",
        "device",
        "thermo-1",
        "--self-signed",
        "--slot",
        "primary",
    ]);
    w.ok(&[
        "new",
        "device",
        "thermo-1",
        "--self-signed",
        "--slot",
        "secondary",
    ]);
    let err = w.fails(&[
        "new",
        "device",
        "thermo-1",
        "--self-signed",
        "--slot",
        "secondary",
    ]);
    assert!(
        err.contains("secondary slot") && err.contains("--force"),
        "{err}"
    );
    let primary = sha1_of(&w.path("ws/entities/thermo-1/cert.pem"));
    let secondary = sha1_of(&w.path("ws/entities/thermo-1/secondary/cert.pem"));
    assert_ne!(primary, secondary);
    let show = w.ok(&["show", "thermo-1"]);
    assert!(
        show.contains(&primary) && show.contains(&secondary),
        "{show}"
    );
    assert!(
        show.contains("primary") && show.contains("secondary"),
        "{show}"
    );
    // Roll the primary: the secondary stays exactly as it was.
    w.ok(&[
        "new",
        "device",
        "thermo-1",
        "--self-signed",
        "--slot",
        "primary",
        "--force",
    ]);
    let rolled = sha1_of(&w.path("ws/entities/thermo-1/cert.pem"));
    assert_ne!(rolled, primary);
    assert_eq!(
        sha1_of(&w.path("ws/entities/thermo-1/secondary/cert.pem")),
        secondary
    );
    let v = w.json(&["show", "thermo-1"]);
    let slots = v["slots"].as_array().unwrap();
    assert_eq!(slots.len(), 2);
    assert_eq!(slots[0]["sha1"].as_str().unwrap(), rolled);
    assert_eq!(slots[1]["sha1"].as_str().unwrap(), secondary);
    let hist = w.json(&["show", "thermo-1", "--history"]);
    assert_eq!(hist["history"][0]["sha1"].as_str().unwrap(), primary);
    // Export each slot: the files carry the device id, the thumbprints differ.
    w.ok(&["export", "thermo-1", "--out", "p"]);
    w.ok(&["export", "thermo-1", "--slot", "secondary", "--out", "s"]);
    assert_eq!(sha1_of(&w.path("p/thermo-1.cert.pem")), rolled);
    assert_eq!(sha1_of(&w.path("s/thermo-1.cert.pem")), secondary);
    let (ok, text) = openssl(
        &[
            "verify",
            "-CAfile",
            "thermo-1.cert.pem",
            "thermo-1.cert.pem",
        ],
        &w.path("s"),
    );
    assert!(ok, "{text}");
    let (_, cert_pub) = openssl(
        &["x509", "-in", "thermo-1.cert.pem", "-noout", "-pubkey"],
        &w.path("s"),
    );
    let (_, key_pub) = openssl(
        &["pkey", "-in", "thermo-1.key.pem", "-pubout"],
        &w.path("s"),
    );
    assert_eq!(
        cert_pub, key_pub,
        "the exported secondary key belongs to the secondary certificate"
    );
    let err = w.fails(&["export", "dev-none", "--slot", "secondary", "--out", "z"]);
    assert!(err.contains("dev-none"), "{err}");
    // Each slot's certificate and key belong together.
    let dir = w.path("ws/entities/thermo-1/secondary");
    let (_, a) = openssl(&["x509", "-in", "cert.pem", "-noout", "-pubkey"], &dir);
    let (_, b) = openssl(&["pkey", "-in", "key.pem", "-pubout"], &dir);
    assert_eq!(a, b);
}

#[test]
fn list_expiring_shows_what_ends_within_the_window() {
    let w = Ws::new();
    w.ok(&["new", "root", "acme"]);
    w.ok(&["new", "device", "soon", "--issuer", "acme", "--days", "5"]);
    w.ok(&[
        "new", "device", "later", "--issuer", "acme", "--days", "200",
    ]);
    w.ok(&[
        "new",
        "device",
        "gone",
        "--issuer",
        "acme",
        "--not-before",
        "2020-01-01T00:00:00Z",
        "--not-after",
        "2020-02-01T00:00:00Z",
    ]);
    let out = w.ok(&["list", "--expiring", "30d"]);
    let names: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(names, ["gone", "soon"], "{out}");
    assert!(out.contains("EXPIRED"), "{out}");
    let v = w.json(&["list", "--expiring", "365d"]);
    assert_eq!(v["entities"].as_array().unwrap().len(), 3);
    let out = w.cmd().args(["list", "--expiring", "1h"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        1,
        "only the expired one"
    );
    let err = w.fails(&["list", "--expiring", "soonish"]);
    assert!(err.contains("30d"), "{err}");
}

#[test]
fn crl_of_an_imported_openssl_ca_is_accepted_by_openssl() {
    // A CA made by the openssl CLI (SHA-1 subject key identifier, not ours).
    let w = Ws::new();
    let dir = w.dir.path();
    let (ok, text) = openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "corp.key",
            "-out",
            "corp.crt",
            "-subj",
            "/O=Corp/CN=Corp Root",
            "-days",
            "100",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    );
    assert!(ok, "{text}");
    w.ok(&["import", "corp.crt", "corp.key", "--name", "corp"]);
    w.ok(&["new", "device", "m1", "m2", "--issuer", "corp"]);
    w.ok(&["revoke", "m1", "--reason", "superseded"]);
    w.ok(&["crl", "corp", "--out", "corp.crl.pem"]);
    w.ok(&["export", "m1", "--out", "o"]);
    w.ok(&["export", "m2", "--out", "o"]);
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "../corp.crt",
            "-CRLfile",
            "../corp.crl.pem",
            "m1.cert.pem",
        ],
        &w.path("o"),
    );
    assert!(!ok && text.contains("certificate revoked"), "{text}");
    let (ok, text) = openssl(
        &[
            "verify",
            "-crl_check",
            "-CAfile",
            "../corp.crt",
            "-CRLfile",
            "../corp.crl.pem",
            "m2.cert.pem",
        ],
        &w.path("o"),
    );
    assert!(ok, "{text}");
}
