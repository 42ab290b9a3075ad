//! Every negative fixture of the example spec fails the way the book says
//! (docs/reference/spec.md, `[[negative]]`), checked by the `openssl` CLI; the positive entries
//! beside them pass the same checks.

use std::path::{Path, PathBuf};
use std::process::Command;

struct Fx {
    _tmp: tempfile::TempDir,
    ents: PathBuf,
}

impl Fx {
    fn new() -> Fx {
        let tmp = tempfile::tempdir().unwrap();
        let ws = tmp.path().join("ws");
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fixtures/example.toml");
        assert_cmd::Command::cargo_bin("chainsmith")
            .unwrap()
            .arg("--workspace")
            .arg(&ws)
            .arg("apply")
            .arg(&spec)
            .assert()
            .success();
        Fx {
            ents: ws.join("entities"),
            _tmp: tmp,
        }
    }
    fn p(&self, name: &str, file: &str) -> PathBuf {
        self.ents.join(name).join(file)
    }
    fn cert(&self, name: &str) -> PathBuf {
        self.p(name, "cert.pem")
    }
    fn root(&self) -> PathBuf {
        self.cert("contoso-root")
    }
    fn inter(&self) -> PathBuf {
        self.cert("contoso-inter")
    }
    /// `openssl verify` with the root trusted and the intermediate as untrusted helper.
    fn verify(&self, extra: &[&str], cert: &Path) -> (bool, String) {
        let mut c = Command::new("openssl");
        c.arg("verify")
            .args(extra)
            .arg("-CAfile")
            .arg(self.root())
            .arg("-untrusted")
            .arg(self.inter())
            .arg(cert);
        run(&mut c)
    }
}

fn run(c: &mut Command) -> (bool, String) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn x509(args: &[&str], cert: &Path) -> String {
    let (ok, out) = run(Command::new("openssl")
        .arg("x509")
        .arg("-noout")
        .args(args)
        .arg("-in")
        .arg(cert));
    assert!(ok, "{out}");
    out
}

fn fails_with(fx: &Fx, extra: &[&str], name: &str, code: &str) {
    let (ok, out) = fx.verify(extra, &fx.cert(name));
    assert!(!ok, "{name} verified but should fail: {out}");
    assert!(
        out.contains(&format!("error {code} at 0 depth")),
        "{name}: expected error {code}, got {out}"
    );
}

const STRICT: &[&str] = &["-x509_strict", "-purpose", "sslclient"];

#[test]
fn positive_entries_pass() {
    let fx = Fx::new();
    for d in [
        "sensor-0001",
        "sensor-0010",
        "neg-wrong-cn",
        "neg-wrong-key",
        "neg-weak-key",
    ] {
        let (ok, out) = fx.verify(STRICT, &fx.cert(d));
        assert!(ok, "{d}: {out}");
    }
    // The CRL of the revoked fixture does not list its siblings.
    let crl = fx.p("neg-revoked", "crl.pem");
    let (ok, out) = fx.verify(
        &["-crl_check", "-CRLfile", crl.to_str().unwrap()],
        &fx.cert("sensor-0001"),
    );
    assert!(ok, "{out}");
    // Another branch, the verification certificate, and the self-signed slots.
    let mut c = Command::new("openssl");
    c.args(["verify", "-x509_strict", "-purpose", "sslclient", "-CAfile"])
        .arg(fx.root())
        .arg("-untrusted")
        .arg(fx.cert("factory-ca"))
        .arg(fx.cert("gateway-01"));
    assert!(run(&mut c).0);
    let (ok, out) = fx.verify(&[], &fx.cert("verify-contoso-inter"));
    assert!(ok, "{out}");
    assert!(
        x509(&["-subject"], &fx.cert("verify-contoso-inter"))
            .contains("CN = 75B86466DA34D2B04C0C4C9557A119687ADAE7D4732BDDB3")
    );
    // Both slots live in the one entity "thermo-ss" (the secondary in its secondary/ dir).
    let slots = [
        fx.cert("thermo-ss"),
        fx.p("thermo-ss", "secondary/cert.pem"),
    ];
    for c in &slots {
        let (ok, out) = run(Command::new("openssl")
            .args(["verify", "-purpose", "sslclient", "-CAfile"])
            .arg(c)
            .arg(c));
        assert!(ok, "{}: {out}", c.display());
        assert!(x509(&["-subject"], c).contains("CN = thermo-ss"));
    }
    assert_ne!(
        x509(&["-fingerprint"], &slots[0]),
        x509(&["-fingerprint"], &slots[1]),
        "two slots, two certificates"
    );
}

#[test]
fn validity_fixtures() {
    let fx = Fx::new();
    fails_with(&fx, STRICT, "neg-expired", "10"); // certificate has expired
    fails_with(&fx, STRICT, "neg-not-yet-valid", "9"); // certificate is not yet valid
}

#[test]
fn chain_fixtures() {
    let fx = Fx::new();
    // unknown_ca: signed by a CA outside the tree; it verifies only against that outside CA.
    fails_with(&fx, STRICT, "neg-unknown-ca", "20");
    let foreign = fx.p("neg-unknown-ca", "foreign-ca.pem");
    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&foreign)
        .arg(fx.cert("neg-unknown-ca")));
    assert!(ok, "{out}");

    // missing_intermediate: its chain file (leaf + root) lacks the intermediate.
    let chain = fx.p("neg-missing-intermediate", "chain.pem");
    let (ok, out) = run(Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(fx.root())
        .arg("-untrusted")
        .arg(&chain)
        .arg(fx.cert("neg-missing-intermediate")));
    assert!(!ok && out.contains("error 20 at 0 depth"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&chain)
            .unwrap()
            .matches("BEGIN CERTIFICATE")
            .count(),
        2
    );
    // ... and the same leaf with the intermediate passes: only the chain file is wrong.
    let (ok, out) = fx.verify(STRICT, &fx.cert("neg-missing-intermediate"));
    assert!(ok, "{out}");

    // revoked: listed in its issuer's CRL.
    let crl = fx.p("neg-revoked", "crl.pem");
    fails_with(
        &fx,
        &["-crl_check", "-CRLfile", crl.to_str().unwrap()],
        "neg-revoked",
        "23",
    );
    assert!(
        std::fs::read_to_string(fx.p("neg-revoked", "meta.toml"))
            .unwrap()
            .contains("[revoked]")
    );
}

#[test]
fn profile_fixtures() {
    let fx = Fx::new();
    // no_client_auth: EKU serverAuth only.
    fails_with(&fx, STRICT, "neg-no-client-auth", "26"); // unsuitable certificate purpose
    let eku = x509(
        &["-ext", "extendedKeyUsage"],
        &fx.cert("neg-no-client-auth"),
    );
    assert!(
        eku.contains("TLS Web Server Authentication") && !eku.contains("Client"),
        "{eku}"
    );

    // wrong_cn: CN is not the device id (the entity name).
    let subject = x509(&["-subject"], &fx.cert("neg-wrong-cn"));
    assert!(
        subject.contains("CN = someone-else") && !subject.contains("neg-wrong-cn"),
        "{subject}"
    );
    assert!(x509(&["-subject"], &fx.cert("sensor-0001")).contains("CN = sensor-0001"));

    // ca_leaf: a device certificate with CA:TRUE, which can then issue certificates itself
    // (trusted on its own with -partial_chain; under the pathlen-0 intermediate the full
    // chain of such a certificate fails with error 25, which is what a pathlen is for).
    let bc = x509(&["-ext", "basicConstraints"], &fx.cert("neg-ca-leaf"));
    assert!(bc.contains("CA:TRUE"), "{bc}");
    assert!(x509(&["-ext", "basicConstraints"], &fx.cert("sensor-0001")).contains("CA:FALSE"));
    let dir = tempfile::tempdir().unwrap();
    let sign_under = |issuer: &str| -> (bool, String) {
        let d = dir.path();
        let sh = format!(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {d}/k.pem -subj /CN=rogue -out {d}/r.csr 2>/dev/null && \
             openssl x509 -req -in {d}/r.csr -CA {c} -CAkey {k} -set_serial 7 -days 1 -out {d}/rogue.pem 2>/dev/null && \
             openssl verify -partial_chain -CAfile {c} {d}/rogue.pem",
            d = d.display(),
            c = fx.cert(issuer).display(),
            k = fx.p(issuer, "key.pem").display(),
        );
        run(Command::new("bash").arg("-c").arg(sh))
    };
    let (ok, out) = sign_under("neg-ca-leaf");
    assert!(ok, "a certificate under ca_leaf should verify: {out}");
    let (ok, out) = sign_under("sensor-0001");
    assert!(
        !ok && out.contains("error 79"),
        "a normal leaf must not be able to issue: {out}"
    );
}

#[test]
fn key_fixtures() {
    let fx = Fx::new();
    // weak_key: RSA-1024, passes OpenSSL's default level, fails at auth level 2 (112 bits).
    let text = x509(&["-text"], &fx.cert("neg-weak-key"));
    assert!(text.contains("Public-Key: (1024 bit)"), "{text}");
    fails_with(&fx, &["-auth_level", "2"], "neg-weak-key", "66"); // EE certificate key too weak
    let (ok, out) = fx.verify(&["-auth_level", "1"], &fx.cert("neg-weak-key"));
    assert!(ok, "{out}");
    let meta = std::fs::read_to_string(fx.p("neg-weak-key", "meta.toml")).unwrap();
    assert!(meta.contains("fixture = \"weak_key\""), "{meta}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(fx.p("neg-weak-key", "key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // wrong_key: the key file does not belong to the certificate.
    let pubkey_of_cert = |n: &str| x509(&["-pubkey"], &fx.cert(n));
    let pubkey_of_key = |n: &str| {
        let (ok, out) = run(Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(fx.p(n, "key.pem")));
        assert!(ok, "{out}");
        out
    };
    assert_ne!(
        pubkey_of_cert("neg-wrong-key"),
        pubkey_of_key("neg-wrong-key")
    );
    assert_eq!(pubkey_of_cert("sensor-0001"), pubkey_of_key("sensor-0001"));
    assert_eq!(
        pubkey_of_cert("neg-weak-key"),
        pubkey_of_key("neg-weak-key")
    );
}
