//! Issue 2 end to end: the real binary, checked by the `openssl` CLI as an independent oracle.

use assert_cmd::Command;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command as Proc;

struct Ws {
    dir: tempfile::TempDir,
    /// CHAINSMITH_NOW for every command, when the test pins the clock.
    now: Option<&'static str>,
}

impl Ws {
    fn new() -> Ws {
        Ws {
            dir: tempfile::tempdir().unwrap(),
            now: None,
        }
    }
    /// A workspace whose commands all run at `now` (RFC 3339).
    fn at(now: &'static str) -> Ws {
        Ws {
            now: Some(now),
            ..Ws::new()
        }
    }
    fn root(&self) -> PathBuf {
        self.dir.path().join("ws")
    }
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("chainsmith").unwrap();
        c.env("CHAINSMITH_WORKSPACE", self.root())
            .current_dir(self.dir.path());
        if let Some(now) = self.now {
            c.env("CHAINSMITH_NOW", now);
        }
        c
    }
    /// Run, expect success, return stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "chainsmith {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
    /// Run, expect failure, return stderr (or stdout with --json).
    fn fail(&self, args: &[&str]) -> String {
        let out = self.cmd().args(args).output().unwrap();
        assert!(
            !out.status.success(),
            "chainsmith {args:?} should have failed"
        );
        // 1 for errors, 2 for command-line usage errors found by the parser.
        assert!(
            matches!(out.status.code(), Some(1) | Some(2)),
            "exit code for {args:?}: {:?}",
            out.status.code()
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains("panicked"), "panic: {text}");
        text
    }
    fn cert(&self, name: &str) -> PathBuf {
        self.root().join("entities").join(name).join("cert.pem")
    }
    fn key(&self, name: &str) -> PathBuf {
        self.root().join("entities").join(name).join("key.pem")
    }
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Proc::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn text_of(cert: &Path) -> String {
    let (ok, t) = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-text"]);
    assert!(ok, "{t}");
    t
}

fn verify(ca: &Path, untrusted: Option<&Path>, leaf: &Path, purpose: &str) -> (bool, String) {
    let mut args = vec![
        "verify",
        "-x509_strict",
        "-purpose",
        purpose,
        "-CAfile",
        ca.to_str().unwrap(),
    ];
    if let Some(u) = untrusted {
        args.extend(["-untrusted", u.to_str().unwrap()]);
    }
    args.push(leaf.to_str().unwrap());
    openssl(&args)
}

/// The lines following an extension header in `openssl x509 -text`.
fn ext(text: &str, name: &str) -> String {
    let mut lines = text.lines();
    while let Some(l) = lines.next() {
        if l.contains(name) {
            return format!("{} | {}", l.trim(), lines.next().unwrap_or("").trim());
        }
    }
    String::new()
}

#[test]
fn every_key_algorithm_builds_a_chain_openssl_verifies() {
    for (alg, sig) in [
        ("ec-p256", "ecdsa-with-SHA256"),
        ("ec-p384", "ecdsa-with-SHA384"),
        ("rsa-2048", "sha256WithRSAEncryption"),
        ("rsa-3072", "sha256WithRSAEncryption"),
        ("rsa-4096", "sha256WithRSAEncryption"),
        ("ed25519", "ED25519"),
    ] {
        let ws = Ws::new();
        ws.ok(&["new", "root", "root", "--key", alg]);
        ws.ok(&[
            "new",
            "intermediate",
            "inter",
            "--issuer",
            "root",
            "--key",
            alg,
        ]);
        let out = ws
            .cmd()
            .args(["new", "device", "dev-1", "--issuer", "inter", "--key", alg])
            .output()
            .unwrap();
        assert!(out.status.success());
        if alg == "ed25519" {
            assert!(
                String::from_utf8_lossy(&out.stderr).contains("not documented for Azure"),
                "ed25519 warns"
            );
        }
        let (ok, msg) = verify(
            &ws.cert("root"),
            Some(&ws.cert("inter")),
            &ws.cert("dev-1"),
            "sslclient",
        );
        assert!(ok, "{alg}: {msg}");

        let root = text_of(&ws.cert("root"));
        assert!(
            ext(&root, "Basic Constraints").contains("critical | CA:TRUE"),
            "{alg} root: {root}"
        );
        assert!(
            !ext(&root, "Basic Constraints").contains("pathlen"),
            "roots have no pathlen unless asked"
        );
        assert!(
            ext(&root, "Key Usage")
                .contains("critical | Digital Signature, Certificate Sign, CRL Sign"),
            "{root}"
        );
        assert!(root.contains("Subject Key Identifier"));

        let inter = text_of(&ws.cert("inter"));
        assert!(
            ext(&inter, "Basic Constraints").contains("CA:TRUE, pathlen:0"),
            "{inter}"
        );
        assert!(
            inter.contains("Authority Key Identifier") && inter.contains("Subject Key Identifier")
        );

        let dev = text_of(&ws.cert("dev-1"));
        assert!(
            ext(&dev, "Basic Constraints").contains("critical | CA:FALSE"),
            "{dev}"
        );
        assert!(
            ext(&dev, "X509v3 Key Usage")
                .contains("critical | Digital Signature, Key Encipherment"),
            "{dev}"
        );
        assert!(
            ext(&dev, "Extended Key Usage").contains("TLS Web Client Authentication"),
            "{dev}"
        );
        assert!(dev.contains("Authority Key Identifier") && dev.contains("Subject Key Identifier"));
        assert!(
            dev.contains("Subject: CN = dev-1") || dev.contains("Subject: CN=dev-1"),
            "{dev}"
        );
        assert!(
            dev.contains(&format!("Signature Algorithm: {sig}")),
            "{alg}: {dev}"
        );

        // Serial: 16 bytes, positive.
        let (_, serial) = openssl(&[
            "x509",
            "-in",
            ws.cert("dev-1").to_str().unwrap(),
            "-noout",
            "-serial",
        ]);
        let hex = serial.trim().trim_start_matches("serial=");
        assert_eq!(hex.len(), 32, "{serial}");
        assert!(u8::from_str_radix(&hex[..2], 16).unwrap() < 0x80);

        // Keys: readable by OpenSSL, mode 0600 in a 0700 directory.
        let (ok, msg) = openssl(&["pkey", "-in", ws.key("dev-1").to_str().unwrap(), "-noout"]);
        assert!(ok, "{msg}");
        assert_eq!(
            fs::metadata(ws.key("dev-1")).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(ws.key("dev-1").parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
    }
}

#[test]
fn not_before_is_backdated_and_defaults_are_long() {
    let ws = Ws::at("2026-06-01T12:00:00Z");
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "d", "--issuer", "r"]);
    let v: serde_json::Value = serde_json::from_str(&ws.ok(&["show", "d", "--json"])).unwrap();
    assert_eq!(
        v["certificate"]["days_left"], 365,
        "device default is one year"
    );
    assert_eq!(v["meta"]["not_before"], "2026-06-01T11:55:00Z");
    let v: serde_json::Value = serde_json::from_str(&ws.ok(&["show", "r", "--json"])).unwrap();
    assert_eq!(v["certificate"]["days_left"], 3650);
    // Valid at issuance even with a clock a few minutes behind.
    let issued = time::macros::datetime!(2026-06-01 12:00:00 UTC).unix_timestamp();
    let (ok, msg) = openssl(&[
        "verify",
        "-attime",
        &(issued - 120).to_string(),
        "-CAfile",
        ws.cert("r").to_str().unwrap(),
        ws.cert("d").to_str().unwrap(),
    ]);
    assert!(ok, "{msg}");
}

#[test]
fn any_depth_and_pathlen_refusals_name_both_cas() {
    let ws = Ws::new();
    ws.ok(&[
        "new",
        "root",
        "root",
        "--subject",
        "CN=Contoso Root,O=Contoso,C=US",
    ]);
    ws.ok(&[
        "new",
        "intermediate",
        "l1",
        "--issuer",
        "root",
        "--pathlen",
        "2",
    ]);
    ws.ok(&["new", "intermediate", "l2", "--issuer", "l1"]); // gets pathlen 1
    ws.ok(&["new", "intermediate", "l3", "--issuer", "l2"]); // gets pathlen 0
    ws.ok(&["new", "device", "deep", "--issuer", "l3"]);
    let chain = ws.dir.path().join("untrusted.pem");
    fs::write(
        &chain,
        [ws.cert("l3"), ws.cert("l2"), ws.cert("l1")]
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    let (ok, msg) = verify(
        &ws.cert("root"),
        Some(&chain),
        &ws.cert("deep"),
        "sslclient",
    );
    assert!(ok, "{msg}");
    assert!(ext(&text_of(&ws.cert("l2")), "Basic Constraints").contains("pathlen:1"));

    let err = ws.fail(&["new", "intermediate", "l4", "--issuer", "l3"]);
    assert!(
        err.contains("\"l3\" has pathlen 0") && err.contains("l4"),
        "{err}"
    );
    let err = ws.fail(&[
        "new",
        "intermediate",
        "wide",
        "--issuer",
        "l1",
        "--pathlen",
        "5",
    ]);
    assert!(err.contains("at most pathlen 1"), "{err}");
    let shown = ws.ok(&["show", "deep"]);
    assert!(
        shown.contains("deep → l3 → l2 → l1 → root: verifies"),
        "{shown}"
    );
}

#[test]
fn device_batches_ranges_and_target_rules() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let out = ws.ok(&[
        "new",
        "device",
        "dev-{001..050}",
        "extra.one",
        "--issuer",
        "r",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["entities"].as_array().unwrap().len(), 51);
    assert!(
        ws.cert("dev-001").exists() && ws.cert("dev-050").exists() && ws.cert("extra.one").exists()
    );

    let err = ws.fail(&["new", "device", "dev 01", "--issuer", "r"]);
    assert!(
        err.contains("a space at position 4") && err.contains("letters, digits and - . + %"),
        "{err}"
    );
    let err = ws.fail(&[
        "new", "device", "a.b", "--issuer", "r", "--target", "central",
    ]);
    assert!(
        err.contains("'.'") && err.contains("IoT Central allows letters, digits and -"),
        "{err}"
    );
    let err = ws.fail(&["new", "device", "reg.", "--issuer", "r", "--target", "dps"]);
    assert!(err.contains("ends with '.'"), "{err}");
    let err = ws.fail(&["new", "device", &"x".repeat(65), "--issuer", "r"]);
    assert!(err.contains("at most 64"), "{err}");
    let err = ws.fail(&["new", "device", "dev-{9..1}", "--issuer", "r"]);
    assert!(err.contains("counts downwards"), "{err}");
    // Nothing from the refused batches was written.
    assert!(!ws.root().join("entities/a.b").exists());

    // EKU client,server and SANs.
    ws.ok(&[
        "new",
        "device",
        "both",
        "--issuer",
        "r",
        "--eku",
        "client,server",
        "--san",
        "DNS:both.local,IP:10.0.0.7",
    ]);
    let t = text_of(&ws.cert("both"));
    assert!(
        ext(&t, "Extended Key Usage").contains("TLS Web Client Authentication")
            && t.contains("TLS Web Server Authentication"),
        "{t}"
    );
    assert!(
        t.contains("DNS:both.local") && t.contains("IP Address:10.0.0.7"),
        "{t}"
    );
    let w = ws
        .cmd()
        .args(["new", "device", "hash#1", "--issuer", "r"])
        .output()
        .unwrap();
    assert!(w.status.success());
    assert!(
        String::from_utf8_lossy(&w.stderr).contains("device SDKs do not"),
        "warns about #"
    );
}

#[test]
fn self_signed_devices_print_thumbprints_openssl_agrees_with() {
    let ws = Ws::new();
    let out = ws.ok(&["new", "device", "solo", "--self-signed"]);
    let (_, sha1) = openssl(&[
        "x509",
        "-in",
        ws.cert("solo").to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha1",
    ]);
    let (_, sha256) = openssl(&[
        "x509",
        "-in",
        ws.cert("solo").to_str().unwrap(),
        "-noout",
        "-fingerprint",
        "-sha256",
    ]);
    let clean = |s: &str| s.split('=').nth(1).unwrap().trim().replace(':', "");
    assert!(out.contains(&clean(&sha1)), "{out} vs {sha1}");
    assert!(out.contains(&clean(&sha256)), "{out} vs {sha256}");
    let (ok, msg) = verify(&ws.cert("solo"), None, &ws.cert("solo"), "sslclient");
    assert!(ok, "{msg}");
}

#[test]
fn verification_certificates_for_roots_and_intermediates() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "root"]);
    ws.ok(&["new", "intermediate", "inter", "--issuer", "root"]);
    let code = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3";
    let out = ws.ok(&["new", "verification", "--issuer", "root", "--code", code]);
    let default_file = ws.dir.path().join("verification_cert.pem");
    assert!(out.contains("verification_cert.pem"), "{out}");
    let t = text_of(&default_file);
    assert!(
        t.contains(&format!("CN = {code}")) || t.contains(&format!("CN={code}")),
        "{t}"
    );
    let (ok, msg) = verify(&ws.cert("root"), None, &default_file, "any");
    assert!(ok, "{msg}");

    let other = ws.dir.path().join("inter-proof.pem");
    ws.ok(&[
        "new",
        "verification",
        "--issuer",
        "inter",
        "--code",
        "ABC123",
        "--out",
        other.to_str().unwrap(),
    ]);
    let (ok, msg) = openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        ws.cert("inter").to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(ok, "signed by the intermediate itself: {msg}");
    // and not by the root directly
    let (ok, _) = openssl(&[
        "verify",
        "-partial_chain",
        "-CAfile",
        ws.cert("root").to_str().unwrap(),
        other.to_str().unwrap(),
    ]);
    assert!(!ok);

    let err = ws.fail(&[
        "new",
        "verification",
        "--issuer",
        "root",
        "--code",
        "has space",
    ]);
    assert!(err.contains("a space"), "{err}");
    let err = ws.fail(&[
        "new",
        "verification",
        "--issuer",
        "root",
        "--code",
        &"A".repeat(70),
    ]);
    assert!(err.contains("at most 64"), "{err}");
    let err = ws.fail(&["new", "verification", "--issuer", "nobody", "--code", "AB"]);
    assert!(err.contains("no entity named \"nobody\""), "{err}");
}

#[test]
fn csr_signing_takes_the_profile_not_the_request() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "intermediate", "i", "--issuer", "r"]);
    let d = ws.dir.path();
    let (ok, msg) = openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        d.join("dev.key").to_str().unwrap(),
        "-out",
        d.join("dev.csr").to_str().unwrap(),
        "-subj",
        "/CN=csr-device/O=Contoso",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
    ]);
    assert!(ok, "{msg}");
    let out = ws
        .cmd()
        .args([
            "sign-csr",
            "dev.csr",
            "--issuer",
            "i",
            "--days",
            "30",
            "--eku",
            "client,server",
        ])
        .output()
        .unwrap();
    chainsmith_test_support::process::assert_success(&out);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ignored"),
        "tells that requested extensions were ignored"
    );
    let t = text_of(&ws.cert("csr-device"));
    assert!(ext(&t, "Basic Constraints").contains("CA:FALSE"), "{t}");
    assert!(
        t.contains("TLS Web Client Authentication") && t.contains("TLS Web Server Authentication")
    );
    assert!(t.contains("O = Contoso"), "subject kept: {t}");
    assert!(
        !ws.key("csr-device").exists(),
        "the key stays on the device"
    );
    let (ok, msg) = verify(
        &ws.cert("r"),
        Some(&ws.cert("i")),
        &ws.cert("csr-device"),
        "sslclient",
    );
    assert!(ok, "{msg}");
    // The signed certificate belongs to the device's key.
    let (_, a) = openssl(&[
        "x509",
        "-in",
        ws.cert("csr-device").to_str().unwrap(),
        "-noout",
        "-pubkey",
    ]);
    let (_, b) = openssl(&[
        "pkey",
        "-in",
        d.join("dev.key").to_str().unwrap(),
        "-pubout",
    ]);
    assert_eq!(a, b);

    // DER input works too.
    openssl(&[
        "req",
        "-in",
        d.join("dev.csr").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        d.join("dev.der").to_str().unwrap(),
    ]);
    ws.ok(&["sign-csr", "dev.der", "--issuer", "i", "--name", "from-der"]);

    // A tampered request: flip a byte inside the signature.
    let mut der = fs::read(d.join("dev.der")).unwrap();
    let n = der.len();
    der[n - 5] ^= 0x55;
    fs::write(d.join("bad.der"), &der).unwrap();
    let err = ws.fail(&["sign-csr", "bad.der", "--issuer", "i", "--name", "bad"]);
    assert!(
        err.contains("signature does not verify") || err.contains("not a PKCS#10"),
        "{err}"
    );
    fs::write(d.join("junk.csr"), b"hello").unwrap();
    let err = ws.fail(&["sign-csr", "junk.csr", "--issuer", "i"]);
    assert!(err.contains("not a PKCS#10"), "{err}");
}

#[test]
fn bad_input_gets_errors_that_say_what_to_do() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "d1", "--issuer", "r"]);
    let err = ws.fail(&["new", "device", "d2", "--issuer", "nope"]);
    assert!(
        err.contains("no entity named \"nope\"") && err.contains("chainsmith new root nope"),
        "{err}"
    );
    let err = ws.fail(&["new", "device", "d2", "--issuer", "d1"]);
    assert!(err.contains("not a CA"), "{err}");
    let err = ws.fail(&["new", "root", "r"]);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    let before = fs::read(ws.cert("r")).unwrap();
    ws.ok(&["new", "root", "r", "--force"]);
    assert_ne!(before, fs::read(ws.cert("r")).unwrap(), "--force replaces");
    let err = ws.fail(&["new", "root", "x", "--key", "dsa"]);
    assert!(
        err.contains("unknown key algorithm") || err.contains("invalid value"),
        "{err}"
    );
    let err = ws.fail(&["new", "root", "x", "--subject", "O=NoCn"]);
    assert!(err.contains("no CN"), "{err}");
    let err = ws.fail(&["new", "root", "x", "--not-after", "yesterday"]);
    assert!(err.contains("RFC 3339"), "{err}");
    let err = ws.fail(&["new", "root", "../evil"]);
    assert!(err.contains("names are file names"), "{err}");

    // --json errors are JSON.
    let out = ws
        .cmd()
        .args(["new", "device", "d3", "--issuer", "ghost", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(v["error"]["kind"], "not-found");

    // A workspace path that is a file, and a foreign directory.
    let f = ws.dir.path().join("file");
    fs::write(&f, "x").unwrap();
    let err = ws.fail(&["--workspace", f.to_str().unwrap(), "new", "root", "r"]);
    assert!(err.contains(f.to_str().unwrap()), "{err}");
    let foreign = ws.dir.path().join("foreign");
    fs::create_dir(&foreign).unwrap();
    fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = ws.fail(&["list", "--workspace", foreign.to_str().unwrap()]);
    assert!(
        err.contains("not a chainsmith workspace") && err.contains("chainsmith init"),
        "{err}"
    );
    let err = ws.fail(&["new", "root", "r", "--workspace", foreign.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
    // Looking at a workspace that does not exist neither fails nor creates it.
    let missing = ws.dir.path().join("missing");
    let out = ws.ok(&["list", "--workspace", missing.to_str().unwrap()]);
    assert!(out.contains("no workspace at"), "{out}");
    assert!(!missing.exists());
    // Usage errors are JSON too with --json.
    let out = ws
        .cmd()
        .args(["--json", "new", "root", "x", "--key", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON usage error");
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown key algorithm")
    );
    assert_eq!(
        fs::read_to_string(foreign.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn workspace_option_before_or_after_and_env() {
    let ws = Ws::new();
    let alt = ws.dir.path().join("alt");
    let mut c = Command::cargo_bin("chainsmith").unwrap();
    c.env_remove("CHAINSMITH_WORKSPACE")
        .args(["--workspace", alt.to_str().unwrap(), "new", "root", "a"])
        .assert()
        .success();
    let mut c = Command::cargo_bin("chainsmith").unwrap();
    c.env_remove("CHAINSMITH_WORKSPACE")
        .args(["new", "root", "b", "--workspace", alt.to_str().unwrap()])
        .assert()
        .success();
    assert!(alt.join("entities/a/cert.pem").exists() && alt.join("entities/b/cert.pem").exists());
    assert_eq!(
        fs::metadata(&alt).unwrap().permissions().mode() & 0o777,
        0o700
    );
    ws.ok(&["init"]);
    assert!(ws.root().join("chainsmith.toml").exists());
    let paths = ws.ok(&["--workspace", alt.to_str().unwrap(), "show", "a", "--paths"]);
    assert!(
        paths.contains(alt.join("entities/a/cert.pem").to_str().unwrap())
            && paths.contains("key.pem"),
        "{paths}"
    );
}

#[test]
fn list_show_inspect_and_lint() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "root"]);
    ws.ok(&["new", "intermediate", "inter", "--issuer", "root"]);
    ws.ok(&["new", "device", "good", "--issuer", "inter"]);
    ws.ok(&[
        "new",
        "device",
        "old",
        "--issuer",
        "inter",
        "--not-before",
        "2020-01-01T00:00:00Z",
        "--not-after",
        "2021-01-01T00:00:00Z",
    ]);
    ws.ok(&[
        "new",
        "device",
        "future",
        "--issuer",
        "inter",
        "--not-before",
        "2099-01-01T00:00:00Z",
        "--days",
        "10",
    ]);

    let list = ws.ok(&["list"]);
    let lines: Vec<&str> = list.lines().collect();
    assert!(
        lines[0].starts_with("NAME")
            && lines[1].starts_with("root")
            && lines[2].starts_with("  inter")
            && lines[3].starts_with("    "),
        "{list}"
    );
    assert!(
        list.contains("[EXPIRED]") && list.contains("[NOT YET VALID]"),
        "{list}"
    );
    let v: serde_json::Value = serde_json::from_str(&ws.ok(&["list", "--json"])).unwrap();
    let e = v["entities"].as_array().unwrap();
    assert_eq!(e.len(), 5);
    assert!(e.iter().any(|x| x["name"] == "good"
        && x["depth"] == 2
        && x["issuer"] == "inter"
        && x["status"] == "valid"));

    let show = ws.ok(&["show", "good"]);
    for needle in [
        "Subject      CN=good",
        "Serial",
        "days left",
        "ECDSA P-256",
        "Basic Constraints (critical): CA:FALSE",
        "SHA-1",
        "SHA-256",
        "verifies",
        "Lint         no findings",
    ] {
        assert!(show.contains(needle), "missing {needle}: {show}");
    }
    let pem = ws.ok(&["show", "good", "--pem"]);
    assert_eq!(pem, fs::read_to_string(ws.cert("good")).unwrap());

    // Expired: lint fails, OpenSSL agrees it is expired.
    let out = ws.cmd().args(["lint", "old"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("[expired]"));
    let (ok, msg) = verify(
        &ws.cert("root"),
        Some(&ws.cert("inter")),
        &ws.cert("old"),
        "sslclient",
    );
    assert!(!ok && msg.contains("expired"), "{msg}");
    let (ok, msg) = verify(
        &ws.cert("root"),
        Some(&ws.cert("inter")),
        &ws.cert("future"),
        "sslclient",
    );
    assert!(!ok && msg.contains("not yet valid"), "{msg}");
    ws.ok(&["lint", "good"]);
    let out = ws.cmd().args(["lint"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "the whole workspace has errors");

    // inspect: a chain bundle, DER, a CSR, a key (described, never printed), PKCS#12.
    let d = ws.dir.path();
    let bundle = d.join("bundle.pem");
    fs::write(
        &bundle,
        [ws.cert("good"), ws.cert("inter"), ws.cert("root")]
            .iter()
            .map(|p| fs::read_to_string(p).unwrap())
            .collect::<String>()
            + &fs::read_to_string(ws.key("good")).unwrap(),
    )
    .unwrap();
    let out = ws.ok(&["inspect", bundle.to_str().unwrap()]);
    assert_eq!(
        out.matches("Signed by next certificate in file: yes")
            .count(),
        2,
        "{out}"
    );
    assert!(
        out.contains("private key (PKCS#8; contents not shown)") && out.contains("Belongs to"),
        "{out}"
    );
    let key_body: String = fs::read_to_string(ws.key("good"))
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .to_string();
    assert!(!out.contains(&key_body), "never prints key material");
    openssl(&[
        "x509",
        "-in",
        ws.cert("good").to_str().unwrap(),
        "-outform",
        "DER",
        "-out",
        d.join("good.cer").to_str().unwrap(),
    ]);
    let v: serde_json::Value =
        serde_json::from_str(&ws.ok(&["inspect", "good.cer", "--json"])).unwrap();
    assert_eq!(v["format"], "DER certificate");
    assert_eq!(v["items"][0]["cn"], "good");
    let (ok, msg) = openssl(&[
        "pkcs12",
        "-export",
        "-in",
        ws.cert("good").to_str().unwrap(),
        "-inkey",
        ws.key("good").to_str().unwrap(),
        "-out",
        d.join("good.pfx").to_str().unwrap(),
        "-passout",
        "pass:1234",
    ]);
    assert!(ok, "{msg}");
    let out = ws.ok(&["inspect", "good.pfx", "--password", "1234"]);
    assert!(out.contains("PKCS#12") && out.contains("CN=good"), "{out}");
    let err = ws.fail(&["inspect", "good.pfx", "--password", "wrong"]);
    assert!(err.contains("is wrong"), "{err}");
    let err = ws.fail(&["inspect", "good.pfx"]);
    assert!(err.contains("--password"), "{err}");
    fs::write(d.join("pw.txt"), "1234\n").unwrap();
    let out = ws.ok(&["inspect", "good.pfx", "--password-file", "pw.txt"]);
    assert!(out.contains("CN=good"), "{out}");
    fs::write(d.join("junk.bin"), [0u8, 1, 2, 3]).unwrap();
    let err = ws.fail(&["inspect", "junk.bin"]);
    assert!(err.contains("not a certificate"), "{err}");
    let (ok, _) = openssl(&[
        "req",
        "-new",
        "-key",
        ws.key("good").to_str().unwrap(),
        "-subj",
        "/CN=req",
        "-out",
        d.join("r.csr").to_str().unwrap(),
    ]);
    assert!(ok);
    let out = ws.ok(&["inspect", "r.csr"]);
    assert!(
        out.contains("certificate request") && out.contains("Signature    valid"),
        "{out}"
    );

    // A leaf lint catches a CA-flagged device brought from elsewhere.
    let err_out = ws
        .cmd()
        .args(["inspect", ws.cert("inter").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(err_out.status.success());
}

#[test]
fn damaged_files_are_named_and_the_rest_stays_usable() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "a", "b", "--issuer", "r"]);
    fs::write(
        ws.root().join("entities/a/meta.toml"),
        "this is = = not toml",
    )
    .unwrap();
    fs::create_dir(ws.root().join("entities/stray")).unwrap();
    // A meta.toml edited in place keeps its entity directory, which the workspace index does
    // not re-read (store/index.rs says why); without the index, `list` reads every entity.
    fs::remove_file(ws.root().join("index")).unwrap();
    let list = ws.ok(&["list"]);
    assert!(
        list.contains("damaged:") && list.contains("entities/a/meta.toml"),
        "{list}"
    );
    assert!(list.contains("entities/stray"), "{list}");
    assert!(
        list.lines().any(|l| l.trim_start().starts_with("b ")),
        "{list}"
    );
    let err = ws.fail(&["show", "a"]);
    assert!(
        err.contains("entities/a/meta.toml") && err.contains("not a valid entity record"),
        "{err}"
    );
    ws.ok(&["new", "device", "c", "--issuer", "r"]);
    // lint over the whole workspace names the damaged entity and still checks the others.
    ws.ok(&[
        "new",
        "device",
        "late",
        "--issuer",
        "r",
        "--not-after",
        "2021-01-01T00:00:00Z",
    ]);
    let out = ws.cmd().args(["lint"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("a: error:") && text.contains("[damaged]"),
        "{text}"
    );
    assert!(
        text.contains("late: error:") && text.contains("[expired]"),
        "checked past the damage: {text}"
    );
    assert!(text.contains("6 checked"), "{text}");
    fs::write(ws.root().join("chainsmith.toml"), "garbage").unwrap();
    let err = ws.fail(&["list"]);
    assert!(
        err.contains("chainsmith.toml") && err.contains("format = 1"),
        "{err}"
    );
}

/// Every entity listed is whole: meta parses, the cert is a certificate whose key is the key.
fn assert_workspace_whole(ws: &Ws) -> usize {
    let v: serde_json::Value = serde_json::from_str(&ws.ok(&["list", "--json"])).unwrap();
    assert!(
        v["damaged"].as_array().unwrap().is_empty(),
        "damaged entities: {}",
        v["damaged"]
    );
    let entities = v["entities"].as_array().unwrap();
    for e in entities.iter().filter(|e| e["kind"] == "device") {
        let name = e["name"].as_str().unwrap();
        let cert = fs::read_to_string(ws.cert(name)).unwrap();
        let key = fs::read_to_string(ws.key(name)).unwrap();
        let c = openssl::x509::X509::from_pem(cert.as_bytes()).unwrap();
        let k = openssl::pkey::PKey::private_key_from_pem(key.as_bytes()).unwrap();
        assert!(
            c.public_key().unwrap().public_eq(&k),
            "{name}: key matches cert"
        );
    }
    let staging = ws.root().join(".staging");
    if staging.exists() {
        assert_eq!(
            fs::read_dir(&staging).unwrap().count(),
            0,
            "stale staging directories were cleaned"
        );
    }
    entities.len()
}

#[test]
fn kill_9_during_a_batch_leaves_only_whole_entities() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let mut partial_batches = 0;
    // Kill after the first entity landed, and again after about half had.
    for (round, kill_after) in [1usize, 500].into_iter().enumerate() {
        let prefix = format!("k{round}-");
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
            .env("CHAINSMITH_WORKSPACE", ws.root())
            .args([
                "new",
                "device",
                &format!("{prefix}{{0001..1000}}"),
                "--issuer",
                "r",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let entities = ws.root().join("entities");
        let landed = || {
            fs::read_dir(&entities)
                .unwrap()
                .filter(|e| {
                    e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with(&prefix)
                })
                .count()
        };
        while landed() < kill_after && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let n = landed();
        if n < 1000 {
            partial_batches += 1;
        }
        assert_workspace_whole(&ws);
    }
    assert!(
        partial_batches > 0,
        "no kill landed inside a batch; the test proved nothing"
    );
    // The workspace is fully usable afterwards, including the names a killed batch never took.
    ws.ok(&[
        "new",
        "device",
        "k0-{0001..1000}",
        "--issuer",
        "r",
        "--force",
    ]);
    ws.ok(&["new", "device", "after-kill", "--issuer", "r"]);
    assert_workspace_whole(&ws);
}

#[test]
fn two_processes_issuing_at_once_lose_nothing() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    let spawn = |pattern: &str| {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
            .env("CHAINSMITH_WORKSPACE", ws.root())
            .args(["new", "device", pattern, "--issuer", "r", "--json"])
            .output()
    };
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("a-{001..300}").unwrap());
        let b = s.spawn(|| spawn("b-{001..300}").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(a.status.success() && b.status.success());
    assert_eq!(assert_workspace_whole(&ws), 601);

    // The same names from two processes: every name is issued exactly once, whole; a loser is told.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| spawn("same-{001..200}").unwrap());
        let b = s.spawn(|| spawn("same-{001..200}").unwrap());
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(
        a.status.success() || b.status.success() || {
            // Both may lose some names to each other; each then names what it lost.
            let ta = String::from_utf8_lossy(&a.stdout).to_string();
            ta.contains("name-taken") || ta.contains("raced")
        }
    );
    for out in [&a, &b] {
        if !out.status.success() {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let kind = v["error"]["kind"].as_str().unwrap_or_default();
            assert!(kind == "name-taken" || kind == "raced", "{v}");
        }
    }
    assert_eq!(assert_workspace_whole(&ws), 801);
}

#[test]
fn a_reader_that_closes_the_pipe_early_ends_output_quietly() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    ws.ok(&["new", "device", "p-{001..400}", "--issuer", "r"]);
    for args in [&["list", "--json"][..], &["list"][..]] {
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("chainsmith"))
            .env("CHAINSMITH_WORKSPACE", ws.root())
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = [0u8; 16];
        std::io::Read::read_exact(child.stdout.as_mut().unwrap(), &mut first).unwrap();
        drop(child.stdout.take()); // like `| head -c 16`: more than a pipe buffer is left unread
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

#[test]
fn review_findings_stay_fixed() {
    let ws = Ws::new();
    ws.ok(&["new", "root", "r"]);
    // IP SANs read like OpenSSL prints them.
    ws.ok(&[
        "new",
        "device",
        "d1",
        "--issuer",
        "r",
        "--san",
        "IP:127.0.0.1,IP:::1",
    ]);
    let show = ws.ok(&["show", "d1"]);
    assert!(
        show.contains("IP Address:127.0.0.1, IP Address:::1"),
        "{show}"
    );

    // Replacing a CA that issued certificates says what that breaks.
    let out = ws
        .cmd()
        .args(["new", "root", "r", "--force"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no longer verify")
            && stderr.contains("d1")
            && stderr.contains("chainsmith renew r"),
        "{stderr}"
    );

    // Two codes sharing a long prefix get two verification entities.
    let a = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3";
    let b = "75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB4";
    ws.ok(&[
        "new",
        "verification",
        "--issuer",
        "r",
        "--code",
        a,
        "--out",
        "a.pem",
    ]);
    ws.ok(&[
        "new",
        "verification",
        "--issuer",
        "r",
        "--code",
        b,
        "--out",
        "b.pem",
    ]);
    assert!(ws.root().join(format!("entities/verify-r-{a}")).is_dir());
    assert!(ws.root().join(format!("entities/verify-r-{b}")).is_dir());
    // A missing output directory is named, and nothing is stored for it.
    let err = ws.fail(&[
        "new",
        "verification",
        "--issuer",
        "r",
        "--code",
        "C0DE",
        "--out",
        "nodir/v.pem",
    ]);
    assert!(err.contains("the directory nodir does not exist"), "{err}");
    assert!(!ws.root().join("entities/verify-r-C0DE").exists());
    let err = ws.fail(&["new", "root", "x", "--cn", ""]);
    assert!(err.contains("CN is empty") && err.contains("--cn"), "{err}");
}
