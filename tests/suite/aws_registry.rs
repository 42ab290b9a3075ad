//! `chainsmith aws …` (the local AWS IoT Core's registry) through the real binary, with the
//! `openssl` CLI as the independent check of certificate ids (SHA-256 of the DER, as AWS's).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::Ws;

/// `openssl x509 -outform der | sha256sum` of a PEM file: AWS's certificate id.
fn openssl_id(pem: &Path) -> String {
    let der = Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(pem)
        .output()
        .unwrap();
    assert!(der.status.success());
    let mut sum = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    sum.stdin.take().unwrap().write_all(&der.stdout).unwrap();
    let out = sum.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The entity's certificate as the workspace keeps it (`entities/NAME/cert.pem`).
fn cert_pem(w: &Ws, name: &str) -> PathBuf {
    w.ws().join("entities").join(name).join("cert.pem")
}

fn verification(w: &Ws, issuer: &str, code: &str, out: &Path) {
    w.ok(&[
        "new",
        "verification",
        "--issuer",
        issuer,
        "--code",
        code,
        "--out",
        out.to_str().unwrap(),
    ]);
}

fn setup() -> (Ws, String) {
    let w = Ws::new();
    w.ok(&["new", "root", "root", "--cn", "Example Root"]);
    w.ok(&["new", "root", "other", "--cn", "Other Root"]);
    w.ok(&["new", "device", "d1", "--issuer", "root"]);
    let code = w.ok(&["aws", "registration-code"]).trim().to_string();
    (w, code)
}

fn register_root(w: &Ws, code: &str, extra: &[&str]) -> serde_json::Value {
    let proof = w.path("proof.pem");
    verification(w, "root", code, &proof);
    let mut args = vec![
        "aws",
        "ca",
        "register",
        "root",
        "--verification-cert",
        proof.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    w.json(&args)
}

#[test]
fn registration_code_is_64_lowercase_hex_fixed_per_workspace() {
    let (w, code) = setup();
    assert_eq!(code.len(), 64, "{code}");
    assert!(
        code.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{code}"
    );
    assert_eq!(w.ok(&["aws", "registration-code"]).trim(), code);
    assert_eq!(
        w.json(&["aws", "registration-code"])["registrationCode"],
        code.as_str()
    );
    // The state file is private.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(w.ws().join("aws/registry.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "{mode:o}");
}

#[test]
fn a_ca_registers_only_with_the_code_and_its_own_key_and_its_id_is_openssls() {
    let (w, code) = setup();
    let wrong_cn = w.path("wrong-cn.pem");
    verification(&w, "root", &"ab".repeat(32), &wrong_cn);
    let e = w.fails(&[
        "aws",
        "ca",
        "register",
        "root",
        "--verification-cert",
        wrong_cn.to_str().unwrap(),
    ]);
    assert!(e.contains("CN") && e.contains(&code), "{e}");
    let wrong_key = w.path("wrong-key.pem");
    verification(&w, "other", &code, &wrong_key);
    let e = w.fails(&[
        "aws",
        "ca",
        "register",
        "root",
        "--verification-cert",
        wrong_key.to_str().unwrap(),
    ]);
    assert!(
        e.contains("not signed by the key of the CA") && e.contains("signed by \"other\""),
        "{e}"
    );
    let ca = register_root(&w, &code, &[]);
    let expected = openssl_id(&cert_pem(&w, "root"));
    assert_eq!(ca["certificateId"], expected.as_str());
    assert_eq!(ca["status"], "INACTIVE");
    let list = w.json(&["aws", "ca", "list"]);
    assert_eq!(list[0]["certificateId"], expected.as_str());
    let shown = w.ok(&["aws", "ca", "show", "root"]);
    assert!(
        shown.contains(&expected) && shown.contains("INACTIVE"),
        "{shown}"
    );
    let updated = w.json(&["aws", "ca", "update", "root", "--status", "ACTIVE"]);
    assert_eq!(updated["status"], "ACTIVE");
    // A second registration of the same CA is refused.
    let proof = w.path("proof.pem");
    let e = w.fails(&[
        "aws",
        "ca",
        "register",
        "root",
        "--verification-cert",
        proof.to_str().unwrap(),
    ]);
    assert!(e.contains("already registered"), "{e}");
}

#[test]
fn certificates_things_and_policies() {
    let (w, code) = setup();
    // No registered CA: the device cannot register.
    let e = w.fails(&["aws", "cert", "register", "d1"]);
    assert!(e.contains("register its CA first"), "{e}");
    register_root(&w, &code, &["--active"]);
    let cert = w.json(&["aws", "cert", "register", "d1", "--active"]);
    let id = openssl_id(&cert_pem(&w, "d1"));
    assert_eq!(cert["certificateId"], id.as_str());
    assert_eq!(cert["status"], "ACTIVE");
    w.ok(&["aws", "thing", "create", "d1"]);
    let e = w.fails(&["aws", "thing", "create", "bad name"]);
    assert!(e.contains("a-z A-Z 0-9 : _ -"), "{e}");
    w.ok(&["aws", "thing", "attach", "d1", "--cert", "d1"]);
    let doc = w.path("policy.json");
    std::fs::write(
        &doc,
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"iot:Connect","Resource":"arn:aws:iot:*:*:client/${iot:Connection.Thing.ThingName}"}]}"#,
    )
    .unwrap();
    w.ok(&[
        "aws",
        "policy",
        "create",
        "own",
        "--document",
        doc.to_str().unwrap(),
    ]);
    w.ok(&["aws", "policy", "attach", "own", "--cert", "d1"]);
    let certs = w.json(&["aws", "cert", "list"]);
    assert_eq!(certs[0]["policies"][0], "own");
    assert_eq!(certs[0]["things"][0], "d1");
    assert_eq!(
        w.json(&["aws", "thing", "list"])[0]["certificates"][0],
        id.as_str()
    );
    assert!(w.ok(&["aws", "policy", "list"]).contains("own"));
    let revoked = w.json(&["aws", "cert", "update", "d1", "--status", "REVOKED"]);
    assert_eq!(revoked["status"], "REVOKED");
    // A bad document names the statement and the field.
    std::fs::write(
        &doc,
        r#"{"Statement":[{"Effect":"Permit","Action":"iot:*","Resource":"*"}]}"#,
    )
    .unwrap();
    let e = w.fails(&[
        "aws",
        "policy",
        "create",
        "bad",
        "--document",
        doc.to_str().unwrap(),
    ]);
    assert!(e.contains("statement 1: Effect"), "{e}");
}

#[test]
fn a_template_registers_with_a_ca_for_jitp() {
    let (w, code) = setup();
    let template = w.path("jitp.json");
    std::fs::write(
        &template,
        r#"{"Parameters":{"AWS::IoT::Certificate::CommonName":{"Type":"String"}},
            "Resources":{"thing":{"Type":"AWS::IoT::Thing","Properties":{"ThingName":{"Ref":"AWS::IoT::Certificate::CommonName"}}}}}"#,
    )
    .unwrap();
    let ca = register_root(
        &w,
        &code,
        &[
            "--active",
            "--auto-registration",
            "--template",
            template.to_str().unwrap(),
        ],
    );
    assert_eq!(ca["autoRegistrationStatus"], "ENABLE");
    assert_eq!(ca["template"], "jitp");
    // An unknown template name is refused with what to do.
    std::fs::write(&template, "{}").unwrap();
    let e = w.fails(&[
        "aws",
        "template",
        "create",
        "broken",
        "--file",
        template.to_str().unwrap(),
    ]);
    assert!(e.contains("Resources"), "{e}");
}

#[test]
fn terminal_output_escapes_names_from_files() {
    let (w, code) = setup();
    register_root(&w, &code, &["--active"]);
    // A template file whose stem carries an escape sequence cannot be a template name
    // (AWS's name rule), and the refusal prints it escaped.
    let hostile = w.path("t\u{1b}[31m.json");
    std::fs::write(&hostile, r#"{"Resources":{}}"#).unwrap();
    let out = w
        .cmd()
        .args([
            "aws",
            "template",
            "create",
            "t\u{1b}[31m",
            "--file",
            hostile.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        !out.stderr.contains(&0x1b),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn export_aws_writes_the_consoles_file_names() {
    let (w, _code) = setup();
    let out = w.path("out");
    w.ok(&[
        "export",
        "d1",
        "--format",
        "aws",
        "--out",
        out.to_str().unwrap(),
    ]);
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |f: &str| std::fs::metadata(out.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("private.pem.key"), 0o600);
    assert_eq!(
        openssl_id(&out.join("certificate.pem.crt")),
        openssl_id(&cert_pem(&w, "d1"))
    );
    // The bundle is the device certificate, then its CA: openssl builds the chain from it.
    let bundle = std::fs::read_to_string(out.join("deviceCertAndCACert.crt")).unwrap();
    assert_eq!(bundle.matches("BEGIN CERTIFICATE").count(), 2);
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(cert_pem(&w, "root"))
        .arg(out.join("certificate.pem.crt"))
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    // Amazon Root CA 1 comes from the system trust store when it has it.
    if Path::new("/etc/ssl/certs/Amazon_Root_CA_1.pem").exists() {
        let subject = Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-in"])
            .arg(out.join("AmazonRootCA1.pem"))
            .output()
            .unwrap();
        assert!(String::from_utf8_lossy(&subject.stdout).contains("Amazon Root CA 1"));
    }
}
