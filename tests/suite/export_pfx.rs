//! PKCS#12 profiles, checked with two independent readers: the openssl 3 CLI (without
//! -legacy) and Python's `cryptography`.

use crate::common;
use common::{Ws, openssl};

use std::path::Path;

/// `openssl pkcs12 -info` without -legacy: what algorithms it names.
fn openssl_info(file: &Path, password: &str) -> String {
    let (ok, text) = openssl(
        &[
            "pkcs12",
            "-info",
            "-noout",
            "-in",
            file.to_str().unwrap(),
            "-passin",
            &format!("pass:{password}"),
        ],
        file.parent().unwrap(),
    );
    assert!(
        ok,
        "openssl 3 must read {} without -legacy: {text}",
        file.display()
    );
    text
}

const PY_LOAD: &str = r#"
import sys
from cryptography.hazmat.primitives.serialization import pkcs12, Encoding, PublicFormat
from cryptography import x509
data = open(sys.argv[1], "rb").read()
key, cert, extra = pkcs12.load_key_and_certificates(data, sys.argv[2].encode())
leaf = x509.load_pem_x509_certificate(open(sys.argv[3], "rb").read())
same_key = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == leaf.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
print("key-matches-leaf", same_key)
print("leaf-is-cert", cert == leaf)
print("chain", ",".join(c.subject.rfc4514_string() for c in extra))
p12 = pkcs12.load_pkcs12(data, sys.argv[2].encode())
print("friendly-name", p12.cert.friendly_name.decode() if p12.cert.friendly_name else None)
"#;

fn python_load(pfx: &Path, password: &str, leaf_pem: &Path) -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            PY_LOAD,
            pfx.to_str().unwrap(),
            password,
            leaf_pem.to_str().unwrap(),
        ])
        .output()
        .expect("python3 is installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "python cryptography must load {}: {text}",
        pfx.display()
    );
    text
}

#[test]
fn modern_profile_is_aes256_pbes2_with_sha256_mac() {
    let w = pfx_ws();
    std::fs::write(w.path("pw.txt"), "s3cret-pfx\n").unwrap();
    let report = w.ok_all(&[
        "export",
        "dev-01",
        "--out",
        "o",
        "--format",
        "pfx,pem",
        "--password-file",
        "pw.txt",
    ]);
    assert!(
        !report.contains("s3cret-pfx"),
        "the password is never printed"
    );
    assert!(
        report.contains("PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC)")
            && report.contains("HMAC-SHA-256"),
        "{report}"
    );
    let pfx = w.path("o/dev-01.pfx");
    let info = openssl_info(&pfx, "s3cret-pfx");
    assert!(info.contains("MAC: sha256"), "{info}");
    assert!(
        info.contains("Shrouded Keybag: PBES2, PBKDF2, AES-256-CBC")
            && info.contains("PRF hmacWithSHA256"),
        "{info}"
    );
    assert!(
        info.contains("PKCS7 Encrypted data: PBES2, PBKDF2, AES-256-CBC"),
        "{info}"
    );
    assert!(!info.contains("RC2"), "{info}");
    assert_eq!(
        info.matches("Certificate bag").count(),
        3,
        "leaf + intermediate + root: {info}"
    );
    let py = python_load(&pfx, "s3cret-pfx", &w.path("o/dev-01.cert.pem"));
    assert!(
        py.contains("key-matches-leaf True") && py.contains("leaf-is-cert True"),
        "{py}"
    );
    assert!(py.contains("chain CN=inter,CN=acme"), "{py}");
    assert!(py.contains("friendly-name dev-01"), "{py}");
}

#[test]
fn compat_profile_is_3des_with_sha1_mac_and_few_iterations() {
    let w = pfx_ws();
    let out = w
        .cmd()
        .args([
            "export",
            "dev-01",
            "--out",
            "o",
            "--format",
            "pfx,pem",
            "--pfx-profile",
            "compat",
        ])
        .env("CHAINSMITH_PFX_PASSWORD", "env-pass")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!report.contains("env-pass"));
    assert!(
        report.contains("pbeWithSHAAnd3-KeyTripleDES-CBC") && report.contains("HMAC-SHA-1"),
        "{report}"
    );
    let pfx = w.path("o/dev-01.pfx");
    let info = openssl_info(&pfx, "env-pass");
    assert!(info.contains("MAC: sha1"), "{info}");
    assert!(
        info.contains("Shrouded Keybag: pbeWithSHA1And3-KeyTripleDES-CBC"),
        "{info}"
    );
    assert!(
        info.contains("PKCS7 Encrypted data: pbeWithSHA1And3-KeyTripleDES-CBC"),
        "{info}"
    );
    assert!(!info.contains("RC2"), "{info}");
    for line in info.lines().filter(|l| l.contains("Iteration")) {
        let n: u64 = line
            .rsplit(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            n <= 600_000,
            "Windows refuses more than 600000 iterations: {line}"
        );
    }
    let py = python_load(&pfx, "env-pass", &w.path("o/dev-01.cert.pem"));
    assert!(
        py.contains("key-matches-leaf True")
            && py.contains("leaf-is-cert True")
            && py.contains("chain CN=inter,CN=acme"),
        "{py}"
    );
}

#[test]
fn no_chain_leaves_only_the_leaf() {
    let w = pfx_ws();
    w.ok_all(&[
        "export",
        "dev-01",
        "--out",
        "o",
        "--format",
        "pfx,pem",
        "--password",
        "p",
        "--no-chain",
    ]);
    let info = openssl_info(&w.path("o/dev-01.pfx"), "p");
    assert_eq!(info.matches("Certificate bag").count(), 1, "{info}");
    let py = python_load(&w.path("o/dev-01.pfx"), "p", &w.path("o/dev-01.cert.pem"));
    assert!(
        py.lines().any(|l| l.trim_end() == "chain"),
        "no extra certificates: {py}"
    );
}

#[test]
fn a_pfx_needs_a_password_and_a_wrong_one_is_named_on_import() {
    let w = pfx_ws();
    let err = w.fails(&["export", "dev-01", "--out", "o", "--format", "pfx"]);
    assert!(
        err.contains("needs a password") && err.contains("CHAINSMITH_PFX_PASSWORD"),
        "{err}"
    );
    assert!(!w.path("o").exists(), "nothing written");
    w.ok_all(&[
        "export",
        "inter",
        "--out",
        "o",
        "--format",
        "pfx",
        "--password",
        "right",
    ]);
    let err = w.fails(&[
        "import",
        "o/inter.pfx",
        "--name",
        "company",
        "--password",
        "wrong",
    ]);
    assert!(
        err.contains("password") && err.contains("wrong") && err.contains("inter.pfx"),
        "{err}"
    );
    assert!(!err.contains("error:0"), "no raw OpenSSL stack: {err}");
    let err = w.fails(&["import", "o/inter.pfx", "--name", "company"]);
    assert!(
        err.contains("PKCS#12") && err.contains("--password"),
        "{err}"
    );
    let listed = w.ok_all(&["list"]);
    assert!(!listed.contains("company"), "nothing imported: {listed}");
}

#[test]
fn a_legacy_rc2_pfx_is_named_as_such_on_import() {
    let w = pfx_ws();
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
            "old.key",
            "-out",
            "old.crt",
            "-subj",
            "/CN=Old CA",
            "-days",
            "30",
        ],
        dir,
    );
    assert!(ok, "{text}");
    // What OpenSSL 1.x wrote by default: RC2-40 certificates, 3DES key, SHA-1 MAC.
    let (ok, text) = openssl(
        &[
            "pkcs12",
            "-export",
            "-legacy",
            "-in",
            "old.crt",
            "-inkey",
            "old.key",
            "-out",
            "old.pfx",
            "-passout",
            "pass:oldpw",
        ],
        dir,
    );
    assert!(ok, "{text}");
    let err = w.fails(&["import", "old.pfx", "--name", "old", "--password", "oldpw"]);
    assert!(err.contains("RC2") && err.contains("re-export"), "{err}");
    // Our own MAC check still tells a wrong password apart.
    let err = w.fails(&["import", "old.pfx", "--name", "old", "--password", "not-it"]);
    assert!(err.contains("password") && err.contains("wrong"), "{err}");
    // inspect names the algorithms that stop it.
    let err = w.fails(&["inspect", "old.pfx", "--password", "oldpw"]);
    assert!(
        err.contains("RC2") && err.contains("pbeWithSHAAnd40BitRC2-CBC"),
        "{err}"
    );
}

/// The chain every PFX test exports: acme → inter → dev-01.
fn pfx_ws() -> Ws {
    let w = Ws::new();
    w.chain("dev-01");
    w
}
