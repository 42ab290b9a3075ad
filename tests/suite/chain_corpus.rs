//! The hub's chain check against OpenSSL's, chain by chain (issue 11, item 1).
//!
//! A corpus of good and crafted-bad device chains, made here with the `openssl` crate so each
//! can carry a flaw chainsmith's own profiles refuse to make, is judged by the hub's verifier
//! (`verify_device_chain`, what CONNECT runs) and by the `openssl verify` CLI with the same
//! trust anchors at the same fixed time. They must agree on every chain; a disagreement prints
//! the chain (PEM) and both verdicts. A few chains, the issue's forged-chain attack first, also
//! go through a real TLS + MQTT CONNECT to a running hub.
//!
//! Intended difference from `openssl verify`'s defaults, stated once: the hub runs at OpenSSL
//! security level 2 (`-auth_level 2`, as a TLS server at level 2 would), so the reference
//! command carries `-auth_level 2`. Without it `openssl verify` accepts RSA-1024 keys (and,
//! having no security level at all, MD5 and SHA-1 signatures); IoT Hub wants RSA 2048+ and
//! SHA-256+. `stricter_than_openssl_defaults` pins exactly that list.

use std::path::Path;
use std::process::Command;

use chainsmith::hub::{Auth, HubEvent};
use chainsmith::ops::ValidityArg;
use chainsmith::pki::verify::{DEVICE_POLICY_ARGS, TrustAnchors, verify_device_chain};
use openssl::asn1::{Asn1Object, Asn1OctetString, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509Builder, X509Extension, X509NameBuilder};

/// The corpus's clock: 2030-06-01T00:00:00Z. Nothing here depends on today's date.
const AT: i64 = 1_906_502_400;
const DAY: i64 = 86_400;

#[derive(Clone, Copy)]
enum Alg {
    P256,
    P384,
    Ed25519,
    Rsa(u32),
}

fn key(alg: Alg) -> PKey<Private> {
    match alg {
        Alg::P256 => {
            let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
        }
        Alg::P384 => {
            let g = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
            PKey::from_ec_key(EcKey::generate(&g).unwrap()).unwrap()
        }
        Alg::Ed25519 => PKey::generate_ed25519().unwrap(),
        Alg::Rsa(bits) => PKey::from_rsa(Rsa::generate(bits).unwrap()).unwrap(),
    }
}

/// What basicConstraints says: None = absent.
#[derive(Clone, Copy)]
struct Bc {
    ca: bool,
    pathlen: Option<u32>,
    critical: bool,
}

const CA: Option<Bc> = Some(Bc {
    ca: true,
    pathlen: None,
    critical: true,
});
const LEAF: Option<Bc> = Some(Bc {
    ca: false,
    pathlen: None,
    critical: true,
});
fn ca_pathlen(p: u32) -> Option<Bc> {
    Some(Bc {
        ca: true,
        pathlen: Some(p),
        critical: true,
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Ku {
    Absent,
    Ca,
    Leaf,
    /// digitalSignature only, on a CA.
    NoCertSign,
    /// keyCertSign on something that is no CA.
    LeafWithCertSign,
}

#[derive(Clone, Copy, PartialEq)]
enum Eku {
    Absent,
    Client,
    ClientServer,
    Server,
    CodeSigning,
}

/// One certificate to make: a CA or device profile with knobs for every flaw.
#[derive(Clone)]
struct Spec {
    cn: String,
    alg: Alg,
    version3: bool,
    bc: Option<Bc>,
    ku: Ku,
    eku: Eku,
    /// Validity relative to [`AT`], in days.
    from: i64,
    to: i64,
    digest: Option<MessageDigest>,
    ski: bool,
    aki: bool,
    aki_critical: bool,
    /// An unknown critical extension.
    unknown_critical: bool,
}

fn ca(cn: &str) -> Spec {
    Spec {
        cn: cn.into(),
        alg: Alg::P256,
        version3: true,
        bc: CA,
        ku: Ku::Ca,
        eku: Eku::Absent,
        from: -30,
        to: 3650,
        digest: Some(MessageDigest::sha256()),
        ski: true,
        aki: true,
        aki_critical: false,
        unknown_critical: false,
    }
}

fn dev(cn: &str) -> Spec {
    Spec {
        bc: LEAF,
        ku: Ku::Leaf,
        eku: Eku::Client,
        to: 365,
        ski: true,
        ..ca(cn)
    }
}

#[derive(Clone)]
struct Made {
    cert: X509,
    key: PKey<Private>,
}

/// Make `s`, signed by `by` (None: self-signed).
fn make(s: &Spec, by: Option<&Made>) -> Made {
    let k = key(s.alg);
    make_with_key(s, k, by)
}

fn make_with_key(s: &Spec, k: PKey<Private>, by: Option<&Made>) -> Made {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, &s.cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(if s.version3 { 2 } else { 0 }).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(by.map_or(&name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&k).unwrap();
    b.set_not_before(&Asn1Time::from_unix(AT + s.from * DAY).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(AT + s.to * DAY).unwrap())
        .unwrap();
    if s.version3 {
        if let Some(bc) = s.bc {
            let mut e = BasicConstraints::new();
            if bc.critical {
                e.critical();
            }
            if bc.ca {
                e.ca();
            }
            if let Some(p) = bc.pathlen {
                e.pathlen(p);
            }
            b.append_extension(e.build().unwrap()).unwrap();
        }
        let ku = match s.ku {
            Ku::Absent => None,
            Ku::Ca => Some(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .digital_signature()
                    .build(),
            ),
            Ku::Leaf => Some(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_encipherment()
                    .build(),
            ),
            Ku::NoCertSign => Some(KeyUsage::new().critical().digital_signature().build()),
            Ku::LeafWithCertSign => Some(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .key_cert_sign()
                    .build(),
            ),
        };
        if let Some(ku) = ku {
            b.append_extension(ku.unwrap()).unwrap();
        }
        let eku = match s.eku {
            Eku::Absent => None,
            Eku::Client => Some(ExtendedKeyUsage::new().client_auth().build()),
            Eku::ClientServer => Some(ExtendedKeyUsage::new().client_auth().server_auth().build()),
            Eku::Server => Some(ExtendedKeyUsage::new().server_auth().build()),
            Eku::CodeSigning => Some(ExtendedKeyUsage::new().code_signing().build()),
        };
        if let Some(eku) = eku {
            b.append_extension(eku.unwrap()).unwrap();
        }
        if s.ski {
            let e = SubjectKeyIdentifier::new()
                .build(&b.x509v3_context(None, None))
                .unwrap();
            b.append_extension(e).unwrap();
        }
        // OpenSSL takes the key id from the issuer's SKI; an issuer without one gets no AKI.
        if s.aki && by.is_some_and(|i| i.cert.subject_key_id().is_some()) {
            let issuer = by.map(|i| &*i.cert);
            let mut a = AuthorityKeyIdentifier::new();
            a.keyid(false);
            if s.aki_critical {
                a.critical();
            }
            let e = a.build(&b.x509v3_context(issuer, None)).unwrap();
            b.append_extension(e).unwrap();
        }
        if s.unknown_critical {
            let oid = Asn1Object::from_str("1.3.6.1.4.1.99999.1").unwrap();
            let value = Asn1OctetString::new_from_bytes(&[0x05, 0x00]).unwrap();
            b.append_extension(X509Extension::new_from_der(&oid, true, &value).unwrap())
                .unwrap();
        }
    }
    let signer = by.map_or(&k, |i| &i.key);
    let digest = match s.alg {
        _ if matches!(signer.id(), openssl::pkey::Id::ED25519) => MessageDigest::null(),
        _ => s.digest.unwrap_or(MessageDigest::sha256()),
    };
    b.sign(signer, digest).unwrap();
    Made {
        cert: b.build(),
        key: k,
    }
}

/// One chain to judge: the anchors the hub trusts and the chain the device sends (leaf first).
struct Case {
    name: String,
    anchors: Vec<X509>,
    chain: Vec<X509>,
    /// What the chain deserves; None where only agreement with OpenSSL is asserted.
    expect: Option<bool>,
}

fn case(name: &str, anchors: &[&Made], chain: &[&Made], expect: Option<bool>) -> Case {
    Case {
        name: name.into(),
        anchors: anchors.iter().map(|m| m.cert.clone()).collect(),
        chain: chain.iter().map(|m| m.cert.clone()).collect(),
        expect,
    }
}

fn pem_of(certs: &[X509]) -> String {
    certs
        .iter()
        .map(|c| String::from_utf8(c.to_pem().unwrap()).unwrap())
        .collect()
}

/// `openssl verify` with `args`, the anchors as -CAfile, the rest of the chain as -untrusted.
fn openssl_verdict(dir: &Path, c: &Case, args: &[&str]) -> (bool, String) {
    let anchors = dir.join("anchors.pem");
    let untrusted = dir.join("untrusted.pem");
    let leaf = dir.join("leaf.pem");
    std::fs::write(&anchors, pem_of(&c.anchors)).unwrap();
    std::fs::write(&leaf, pem_of(&c.chain[..1])).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.arg("verify")
        .args(args)
        .args(["-attime", &AT.to_string(), "-CAfile"])
        .arg(&anchors);
    if c.chain.len() > 1 {
        std::fs::write(&untrusted, pem_of(&c.chain[1..])).unwrap();
        cmd.arg("-untrusted").arg(&untrusted);
    }
    let out = cmd.arg(&leaf).output().expect("openssl installed");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let ok = out.status.success() && String::from_utf8_lossy(&out.stdout).contains(": OK");
    (ok, text.trim().replace(&*dir.to_string_lossy(), "DIR"))
}

fn hub_verdict(c: &Case) -> (bool, String) {
    let anchors = TrustAnchors::new(c.anchors.iter().map(|a| a.to_der().unwrap())).unwrap();
    let chain: Vec<Vec<u8>> = c.chain.iter().map(|x| x.to_der().unwrap()).collect();
    let at = time::OffsetDateTime::from_unix_timestamp(AT).unwrap();
    match verify_device_chain(&anchors, &chain, at) {
        Ok(v) => (true, format!("accepted ({} certificates)", v.chain.len())),
        Err(e) => (
            false,
            format!("refused: {e} [{:?}, code {}]", e.kind, e.code),
        ),
    }
}

/// The corpus: a PKI (root, two intermediate levels, devices) and its crafted variants.
#[rustfmt::skip] // one chain per line reads as a table
fn corpus() -> Vec<Case> {
    let mut v = Vec::new();
    let root = make(&ca("Corpus Root"), None);
    let inter = make(&ca("Corpus Issuing"), Some(&root));
    let other_root = make(&ca("Other Root"), None);
    let good = make(&dev("good-1"), Some(&inter));
    let good_root_signed = make(&dev("direct-1"), Some(&root));

    // --- Good chains ---------------------------------------------------------------------
    v.push(case("leaf+intermediate, root anchor", &[&root], &[&good, &inter], Some(true)));
    v.push(case("leaf alone, intermediate anchor (partial chain)", &[&inter], &[&good], Some(true)));
    v.push(case("leaf+intermediate, intermediate anchor", &[&inter], &[&good, &inter], Some(true)));
    v.push(case("leaf+intermediate+root sent", &[&root], &[&good, &inter, &root], Some(true)));
    v.push(case("leaf, root, intermediate (out of order)", &[&root], &[&good, &root, &inter], Some(true)));
    v.push(case("duplicate intermediate", &[&root], &[&good, &inter, &inter], Some(true)));
    v.push(case("leaf sent twice", &[&root], &[&good, &good, &inter], Some(true)));
    v.push(case("unrelated extra certificates", &[&root], &[&good, &other_root, &inter, &good_root_signed], Some(true)));
    v.push(case("two anchors, one unrelated", &[&other_root, &root], &[&good, &inter], Some(true)));
    v.push(case("both root and intermediate anchors", &[&root, &inter], &[&good], Some(true)));
    v.push(case("leaf directly under the root", &[&root], &[&good_root_signed], Some(true)));

    let i1 = make(&Spec { bc: ca_pathlen(1), ..ca("Level 1") }, Some(&root));
    let i2 = make(&Spec { bc: ca_pathlen(0), ..ca("Level 2") }, Some(&i1));
    let deep = make(&dev("deep-1"), Some(&i2));
    v.push(case("two intermediate levels within pathlen", &[&root], &[&deep, &i2, &i1], Some(true)));
    v.push(case("two levels, middle anchor", &[&i1], &[&deep, &i2], Some(true)));
    v.push(case("two levels, lowest anchor", &[&i2], &[&deep], Some(true)));
    let root_p1 = make(&Spec { bc: ca_pathlen(1), ..ca("Root pathlen 1") }, None);
    let i_under_p1 = make(&ca("Under P1"), Some(&root_p1));
    let leaf_p1 = make(&dev("p1-1"), Some(&i_under_p1));
    v.push(case("root pathlen 1, one intermediate", &[&root_p1], &[&leaf_p1, &i_under_p1], Some(true)));

    let rsa_i = make(&Spec { alg: Alg::Rsa(2048), ..ca("RSA Issuing") }, Some(&root));
    let rsa_leaf = make(&Spec { alg: Alg::Rsa(2048), ..dev("rsa-1") }, Some(&rsa_i));
    v.push(case("RSA-2048 intermediate and leaf", &[&root], &[&rsa_leaf, &rsa_i], Some(true)));
    let p384_i = make(&Spec { alg: Alg::P384, digest: Some(MessageDigest::sha384()), ..ca("P384 Issuing") }, Some(&root));
    let p384_leaf = make(&Spec { alg: Alg::P384, digest: Some(MessageDigest::sha384()), ..dev("p384-1") }, Some(&p384_i));
    v.push(case("P-384 with SHA-384", &[&root], &[&p384_leaf, &p384_i], Some(true)));
    let ed = make(&Spec { alg: Alg::Ed25519, ..dev("ed-1") }, Some(&inter));
    v.push(case("Ed25519 leaf", &[&root], &[&ed, &inter], Some(true)));
    let sha512 = make(&Spec { digest: Some(MessageDigest::sha512()), ..dev("sha512-1") }, Some(&inter));
    v.push(case("SHA-512 signature", &[&root], &[&sha512, &inter], Some(true)));
    let cs = make(&Spec { eku: Eku::ClientServer, ..dev("cs-1") }, Some(&inter));
    v.push(case("EKU clientAuth + serverAuth", &[&root], &[&cs, &inter], Some(true)));
    let no_eku = make(&Spec { eku: Eku::Absent, ..dev("noeku-1") }, Some(&inter));
    v.push(case("no EKU (any use)", &[&root], &[&no_eku, &inter], Some(true)));
    let no_ku = make(&Spec { ku: Ku::Absent, ..dev("noku-1") }, Some(&inter));
    v.push(case("leaf without keyUsage", &[&root], &[&no_ku, &inter], Some(true)));
    let no_bc_leaf = make(&Spec { bc: None, ..dev("nobc-1") }, Some(&inter));
    v.push(case("leaf without basicConstraints", &[&root], &[&no_bc_leaf, &inter], Some(true)));
    let last_day = make(&Spec { from: -365, to: 0, ..dev("lastday-1") }, Some(&inter));
    // notAfter == now: RFC 5280 counts that second as valid, OpenSSL as expired. The hub
    // follows OpenSSL; only agreement is asserted.
    v.push(case("leaf at its notAfter second", &[&root], &[&last_day, &inter], None));
    let first_day = make(&Spec { from: 0, ..dev("firstday-1") }, Some(&inter));
    v.push(case("leaf on its first second", &[&root], &[&first_day, &inter], Some(true)));
    let leaf_ca = make(&Spec { bc: CA, ku: Ku::Ca, ..dev("ca-leaf-1") }, Some(&inter));
    v.push(case("leaf that is itself CA:TRUE", &[&root], &[&leaf_ca, &inter], None));

    // --- A device used as an issuer: the issue's impersonation ---------------------------
    let forged = make(&dev("other-1"), Some(&good));
    v.push(case("forged: device good-1 signs other-1 (the issue's chain)", &[&root], &[&forged, &good, &inter], Some(false)));
    v.push(case("forged, intermediate anchor", &[&inter], &[&forged, &good, &inter], Some(false)));
    v.push(case("forged, intermediate anchor, issuer sent alone", &[&inter], &[&forged, &good], Some(false)));
    v.push(case("forged, device registered as an anchor", &[&good], &[&forged], Some(false)));
    let dev_nobc = make(&Spec { bc: None, ..dev("nobc-issuer") }, Some(&inter));
    let forged2 = make(&dev("other-2"), Some(&dev_nobc));
    v.push(case("device without basicConstraints as issuer", &[&root], &[&forged2, &dev_nobc, &inter], Some(false)));
    let dev_bare = make(&Spec { bc: None, ku: Ku::Absent, eku: Eku::Absent, ..dev("bare-issuer") }, Some(&inter));
    let forged3 = make(&dev("other-3"), Some(&dev_bare));
    v.push(case("bare device (no BC, no KU, no EKU) as issuer", &[&root], &[&forged3, &dev_bare, &inter], Some(false)));
    let dev_ku = make(&Spec { ku: Ku::Absent, ..dev("noku-issuer") }, Some(&inter));
    let forged4 = make(&dev("other-4"), Some(&dev_ku));
    v.push(case("CA:FALSE device without keyUsage as issuer", &[&root], &[&forged4, &dev_ku, &inter], Some(false)));

    // --- Broken intermediates -------------------------------------------------------------
    let mut bad_i = |label: &str, spec: Spec, expect: Option<bool>| {
        let i = make(&spec, Some(&root));
        let leaf = make(&dev(&format!("{}-leaf", spec.cn)), Some(&i));
        v.push(case(label, &[&root], &[&leaf, &i], expect));
        v.push(case(&format!("{label}, as anchor"), &[&i], &[&leaf], expect));
    };
    bad_i("CA:FALSE intermediate with keyCertSign", Spec { bc: LEAF, ku: Ku::LeafWithCertSign, ..ca("CA false") }, Some(false));
    bad_i("intermediate without basicConstraints", Spec { bc: None, ..ca("No BC") }, Some(false));
    bad_i("intermediate without keyCertSign", Spec { ku: Ku::NoCertSign, ..ca("No CertSign") }, Some(false));
    bad_i("intermediate without keyUsage", Spec { ku: Ku::Absent, ..ca("No KU") }, Some(false));
    bad_i("intermediate with non-critical CA:TRUE", Spec { bc: Some(Bc { ca: true, pathlen: None, critical: false }), ..ca("BC not critical") }, Some(false));
    bad_i("expired intermediate", Spec { from: -400, to: -1, ..ca("Expired Issuing") }, Some(false));
    bad_i("not-yet-valid intermediate", Spec { from: 1, to: 400, ..ca("Future Issuing") }, Some(false));
    bad_i("intermediate with EKU serverAuth only", Spec { eku: Eku::Server, ..ca("Server EKU CA") }, Some(false));
    bad_i("intermediate with EKU clientAuth", Spec { eku: Eku::Client, ..ca("Client EKU CA") }, Some(true));
    bad_i("RSA-1024 intermediate", Spec { alg: Alg::Rsa(1024), ..ca("RSA1024 Issuing") }, Some(false));
    bad_i("v1 intermediate", Spec { version3: false, ..ca("V1 Issuing") }, Some(false));
    bad_i("intermediate without SKI", Spec { ski: false, ..ca("No SKI") }, Some(false));
    bad_i("intermediate with an unknown critical extension", Spec { unknown_critical: true, ..ca("Unknown Crit") }, Some(false));
    bad_i("CA:FALSE with pathlen", Spec { bc: Some(Bc { ca: false, pathlen: Some(0), critical: true }), ..ca("False Pathlen") }, Some(false));

    // --- pathlen ------------------------------------------------------------------------
    let root_p0 = make(&Spec { bc: ca_pathlen(0), ..ca("Root pathlen 0") }, None);
    let under_p0 = make(&ca("Under P0"), Some(&root_p0));
    let leaf_p0 = make(&dev("p0-1"), Some(&under_p0));
    v.push(case("pathlen exceeded: root pathlen 0 above an intermediate", &[&root_p0], &[&leaf_p0, &under_p0], Some(false)));
    let i3 = make(&ca("Level 3"), Some(&i2));
    let deeper = make(&dev("deeper-1"), Some(&i3));
    v.push(case("pathlen exceeded: intermediate pathlen 0 above another", &[&root], &[&deeper, &i3, &i2, &i1], Some(false)));
    v.push(case("pathlen exceeded below a partial-chain anchor", &[&i2], &[&deeper, &i3], Some(false)));
    v.push(case("pathlen 0 directly above the leaf", &[&root_p0], &[&make(&dev("p0-direct"), Some(&root_p0))], Some(true)));

    // --- Leaves -------------------------------------------------------------------------
    let mut bad_leaf = |label: &str, spec: Spec, expect: Option<bool>| {
        let leaf = make(&spec, Some(&inter));
        v.push(case(label, &[&root], &[&leaf, &inter], expect));
    };
    bad_leaf("expired leaf", Spec { from: -400, to: -1, ..dev("expired-1") }, Some(false));
    bad_leaf("not-yet-valid leaf", Spec { from: 1, to: 400, ..dev("future-1") }, Some(false));
    bad_leaf("leaf with EKU serverAuth only", Spec { eku: Eku::Server, ..dev("server-1") }, Some(false));
    bad_leaf("leaf with EKU codeSigning", Spec { eku: Eku::CodeSigning, ..dev("codesign-1") }, Some(false));
    bad_leaf("RSA-1024 leaf", Spec { alg: Alg::Rsa(1024), ..dev("rsa1024-1") }, Some(false));
    bad_leaf("SHA-1-signed leaf", Spec { digest: Some(MessageDigest::sha1()), ..dev("sha1-1") }, Some(false));
    bad_leaf("v1 leaf", Spec { version3: false, ..dev("v1-1") }, None);
    bad_leaf("CA:FALSE leaf with keyCertSign", Spec { ku: Ku::LeafWithCertSign, ..dev("kcs-1") }, Some(false));
    bad_leaf("leaf without AKI", Spec { aki: false, ..dev("noaki-1") }, Some(false));
    bad_leaf("leaf with critical AKI", Spec { aki_critical: true, ..dev("critaki-1") }, Some(false));
    bad_leaf("leaf with an unknown critical extension", Spec { unknown_critical: true, ..dev("crit-1") }, Some(false));

    // MD5 needs an RSA signer (ECDSA has no MD5).
    let md5_leaf = make(&Spec { digest: Some(MessageDigest::md5()), ..dev("md5-1") }, Some(&rsa_i));
    v.push(case("MD5-signed leaf", &[&root], &[&md5_leaf, &rsa_i], Some(false)));
    // SHA-1 and MD5 on the intermediate's signature (made by the root).
    let sha1_i = make(&Spec { digest: Some(MessageDigest::sha1()), ..ca("SHA1 Issuing") }, Some(&root));
    v.push(case("SHA-1-signed intermediate", &[&root], &[&make(&dev("sha1i-1"), Some(&sha1_i)), &sha1_i], Some(false)));
    let rsa_root = make(&Spec { alg: Alg::Rsa(2048), ..ca("RSA Root") }, None);
    let md5_i = make(&Spec { digest: Some(MessageDigest::md5()), ..ca("MD5 Issuing") }, Some(&rsa_root));
    v.push(case("MD5-signed intermediate", &[&rsa_root], &[&make(&dev("md5i-1"), Some(&md5_i)), &md5_i], Some(false)));
    // The anchor's own self-signature is not what trust rests on.
    let sha1_root = make(&Spec { digest: Some(MessageDigest::sha1()), ..ca("SHA1 Root") }, None);
    let under_sha1 = make(&ca("Under SHA1 Root"), Some(&sha1_root));
    v.push(case("SHA-1 self-signature on the root anchor", &[&sha1_root], &[&make(&dev("sha1root-1"), Some(&under_sha1)), &under_sha1], None));
    let rsa1024_root = make(&Spec { alg: Alg::Rsa(1024), ..ca("RSA1024 Root") }, None);
    let under_1024 = make(&ca("Under RSA1024"), Some(&rsa1024_root));
    v.push(case("RSA-1024 root anchor", &[&rsa1024_root], &[&make(&dev("r1024root-1"), Some(&under_1024)), &under_1024], Some(false)));
    let expired_root = make(&Spec { from: -4000, to: -1, ..ca("Expired Root") }, None);
    let under_expired = make(&ca("Under Expired Root"), Some(&expired_root));
    v.push(case("expired root anchor", &[&expired_root], &[&make(&dev("exproot-1"), Some(&under_expired)), &under_expired], Some(false)));
    let v1_root = make(&Spec { version3: false, ..ca("V1 Root") }, None);
    let under_v1 = make(&ca("Under V1 Root"), Some(&v1_root));
    v.push(case("v1 root anchor", &[&v1_root], &[&make(&dev("v1root-1"), Some(&under_v1)), &under_v1], None));

    // --- Chains that lead nowhere ---------------------------------------------------------
    v.push(case("intermediate missing", &[&root], &[&good], Some(false)));
    v.push(case("unknown root, root sent", &[&other_root], &[&good, &inter, &root], Some(false)));
    v.push(case("self-signed leaf", &[&root], &[&make(&dev("selfie-1"), None)], Some(false)));
    v.push(case("chain under another root", &[&other_root], &[&good, &inter], Some(false)));
    // Same issuer name and key id, another key: the signature does not verify.
    let impostor = make_with_key(&ca("Corpus Issuing"), inter.key.clone(), Some(&other_root));
    let wrong_key = Made { cert: impostor.cert.clone(), key: key(Alg::P256) };
    let bad_sig = make(&dev("badsig-1"), Some(&wrong_key));
    v.push(case("leaf signature does not verify", &[&root], &[&bad_sig, &inter], Some(false)));
    v.push(case("cross-signed intermediate under an untrusted root", &[&root], &[&good, &impostor], Some(false)));
    // Self-issued loop: A signed by B, B signed by A, neither trusted.
    let loop_a_key = key(Alg::P256);
    let loop_b_key = key(Alg::P256);
    let a_self = make_with_key(&ca("Loop A"), loop_a_key.clone(), None);
    let b = make_with_key(&ca("Loop B"), loop_b_key.clone(), Some(&a_self));
    let a = make_with_key(&ca("Loop A"), loop_a_key, Some(&b));
    let b2 = make_with_key(&ca("Loop B"), loop_b_key, Some(&a));
    let in_loop = make(&dev("loop-1"), Some(&a));
    v.push(case("self-issued loop A<->B", &[&root], &[&in_loop, &a, &b2, &b], Some(false)));
    v.push(case("self-issued loop with the real chain appended", &[&root], &[&good, &a, &b2, &inter], Some(true)));
    // A renewed intermediate (same name, new key): the device under the new one verifies with
    // both versions sent, and the one under the old with only the new sent fails.
    let renewed = make(&ca("Corpus Issuing"), Some(&root));
    let under_renewed = make(&dev("renewed-1"), Some(&renewed));
    v.push(case("renewed intermediate, both versions sent", &[&root], &[&under_renewed, &inter, &renewed], Some(true)));
    v.push(case("old leaf with only the renewed intermediate", &[&root], &[&good, &renewed], Some(false)));
    v
}

#[test]
fn hub_and_openssl_agree_on_every_chain() {
    let dir = tempfile::tempdir().unwrap();
    let cases = corpus();
    assert!(cases.len() >= 60, "corpus has {} chains", cases.len());
    let mut failures = Vec::new();
    for c in &cases {
        let (hub_ok, hub_text) = hub_verdict(c);
        let (ossl_ok, ossl_text) = openssl_verdict(dir.path(), c, DEVICE_POLICY_ARGS);
        let mut why = Vec::new();
        if hub_ok != ossl_ok {
            why.push("hub and openssl disagree".to_string());
        }
        if let Some(e) = c.expect
            && e != hub_ok
        {
            why.push(format!(
                "expected {}",
                if e { "accepted" } else { "refused" }
            ));
        }
        if !why.is_empty() {
            failures.push(format!(
                "chain \"{}\": {}\n  hub:     {hub_text}\n  openssl: {ossl_text}\n  anchors:\n{}  chain (leaf first):\n{}",
                c.name,
                why.join(", "),
                pem_of(&c.anchors),
                pem_of(&c.chain)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} chains:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Where the hub is deliberately stricter than `openssl verify -x509_strict -purpose sslclient`
/// with OpenSSL's default (no) security level: exactly these chains, all on key size or
/// signature digest. Everything else in the corpus gets the same verdict either way.
#[test]
fn stricter_than_openssl_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let default_args: Vec<&str> = {
        let mut a = DEVICE_POLICY_ARGS.to_vec();
        let i = a.iter().position(|x| *x == "-auth_level").unwrap();
        a.drain(i..i + 2);
        a
    };
    let mut differ = Vec::new();
    for c in corpus() {
        let (hub_ok, _) = hub_verdict(&c);
        let (default_ok, _) = openssl_verdict(dir.path(), &c, &default_args);
        if hub_ok != default_ok {
            assert!(
                !hub_ok,
                "\"{}\": the hub accepts what OpenSSL refuses",
                c.name
            );
            differ.push(c.name);
        }
    }
    differ.sort();
    // OpenSSL's TLS default, security level 1, already refuses MD5 and SHA-1: with it the
    // only difference left is RSA-1024 (80-bit security), which level 2 refuses.
    let level1: Vec<&str> = DEVICE_POLICY_ARGS
        .iter()
        .map(|a| if *a == "2" { "1" } else { *a })
        .collect();
    let mut differ_level1 = Vec::new();
    for c in corpus() {
        let (hub_ok, _) = hub_verdict(&c);
        if hub_ok != openssl_verdict(dir.path(), &c, &level1).0 {
            assert!(
                !hub_ok,
                "\"{}\": the hub accepts what level 1 refuses",
                c.name
            );
            differ_level1.push(c.name);
        }
    }
    differ_level1.sort();
    assert_eq!(
        differ_level1,
        [
            "RSA-1024 intermediate",
            "RSA-1024 intermediate, as anchor",
            "RSA-1024 leaf",
            "RSA-1024 root anchor"
        ]
    );
    let mut intended = vec![
        "MD5-signed intermediate",
        "MD5-signed leaf",
        "RSA-1024 intermediate",
        "RSA-1024 intermediate, as anchor",
        "RSA-1024 leaf",
        "RSA-1024 root anchor",
        "SHA-1-signed intermediate",
        "SHA-1-signed leaf",
    ];
    intended.sort();
    assert_eq!(differ, intended);
}

/// The issue's attack through the running hub: TLS + MQTT CONNECT with the forged chain
/// `forged, good-1, line2` for `other-1` is refused, naming the device used as an issuer;
/// good-1 itself and a serverAuth-only leaf for other-1 are judged the same way as above.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_chain_is_refused_at_connect() {
    use chainsmith_test_support::hub_util::{Client, Fixture, Identity, username};
    use rumqttc::mqttbytes::v4::ConnectReturnCode;
    use rustls::pki_types::CertificateDer;

    let fx = Fixture::new();
    fx.device("good-1", Some("line2"), ValidityArg::default());
    fx.device("other-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).unwrap();
    fx.register("good-1", Auth::Ca, None);
    fx.register("other-1", Auth::Ca, None);
    let load = |n: &str| {
        let e = fx.ws.load(n).unwrap();
        let key = PKey::private_key_from_pem(&std::fs::read(fx.key_file(n)).unwrap()).unwrap();
        Made {
            cert: X509::from_der(&e.cert_der).unwrap(),
            key,
        }
    };
    let good = load("good-1");
    let line2 = load("line2");
    // Certificates valid around the hub's clock (now): the hub reads the real time.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let rel = |s: Spec| Spec {
        from: (now - AT) / DAY - 1,
        to: (now - AT) / DAY + 30,
        ..s
    };
    let forged = make(&rel(dev("other-1")), Some(&good));
    let server_only = make(
        &rel(Spec {
            eku: Eku::Server,
            ..dev("other-1")
        }),
        Some(&line2),
    );

    let hub = chainsmith_test_support::hub_util::start_hub(fx.root()).await;
    let mut events = hub.events();
    let identity = |chain: &[&X509], key: &PKey<Private>| Identity {
        certs: chain
            .iter()
            .map(|c| CertificateDer::from(c.to_der().unwrap()))
            .collect(),
        key: key.private_key_to_pkcs8().unwrap(),
    };
    let attempts = [
        (
            "other-1",
            identity(&[&forged.cert, &good.cert, &line2.cert], &forged.key),
            Err(r#"device other-1: issuer "good-1""#),
        ),
        (
            "other-1",
            identity(&[&server_only.cert, &line2.cert], &server_only.key),
            Err(r#"device other-1: certificate "other-1" is not for client authentication"#),
        ),
        (
            "good-1",
            identity(&[&good.cert, &line2.cert], &good.key),
            Ok(()),
        ),
    ];
    for (device, id, want) in attempts {
        let (_c, ack) =
            Client::connect(hub.addr, fx.tls(Some(&id)), device, Some(&username(device)))
                .await
                .unwrap();
        let code = ack.expect("CONNACK").code;
        let verdict = loop {
            match tokio::time::timeout(std::time::Duration::from_secs(10), events.recv())
                .await
                .expect("hub said nothing")
                .unwrap()
            {
                HubEvent::Accepted { device, .. } => break Ok(device),
                HubEvent::Refused { reason, .. } => break Err(reason),
                _ => {}
            }
        };
        match want {
            Ok(()) => {
                assert_eq!(code, ConnectReturnCode::Success);
                assert_eq!(verdict, Ok(device.to_string()));
            }
            Err(reason) => {
                assert_eq!(code, ConnectReturnCode::NotAuthorized, "{verdict:?}");
                let got = verdict.expect_err("refused");
                assert!(got.contains(reason), "hub reason {got:?} lacks {reason:?}");
            }
        }
    }
    hub.shutdown().await;
}

/// The connection test's pre-flight runs the same verifier: the forged chain is an error
/// before any connection, against the local hub's registry and against the workspace's root.
#[test]
fn preflight_refuses_the_forged_chain() {
    use chainsmith::mqtt::Identity;
    use chainsmith_test_support::hub_util::Fixture;

    let fx = Fixture::new();
    fx.device("good-1", Some("line2"), ValidityArg::default());
    fx.device("other-1", Some("line2"), ValidityArg::default());
    fx.store.add_ca("root", true).unwrap();
    fx.register("other-1", Auth::Ca, None);
    let good_key =
        PKey::private_key_from_pem(&std::fs::read(fx.key_file("good-1")).unwrap()).unwrap();
    let good = Made {
        cert: X509::from_der(&fx.ws.load("good-1").unwrap().cert_der).unwrap(),
        key: good_key,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let forged = make(
        &Spec {
            from: (now - AT) / DAY - 1,
            to: (now - AT) / DAY + 30,
            ..dev("other-1")
        },
        Some(&good),
    );
    let line2 = X509::from_der(&fx.ws.load("line2").unwrap().cert_der).unwrap();
    let chain = fx.dir.path().join("forged.chain.pem");
    std::fs::write(
        &chain,
        pem_of(&[forged.cert.clone(), good.cert.clone(), line2]),
    )
    .unwrap();
    let key = fx.dir.path().join("forged.key");
    std::fs::write(&key, forged.key.private_key_to_pem_pkcs8().unwrap()).unwrap();

    let id = Identity::from_files(&chain, &key, Some(&fx.ws)).unwrap();
    let own = id.preflight();
    assert!(
        own.iter()
            .any(|f| f.code == "chain-refused" && f.message.contains("\"good-1\"")),
        "{own:#?}"
    );
    let hub = chainsmith::mqtt::local::hub_preflight(&id, &fx.store.load().unwrap(), fx.ws.now());
    assert!(
        hub.iter().any(|f| f.code == "hub-chain-refused"
            && f.message.contains(r#"device other-1: issuer "good-1""#)),
        "{hub:#?}"
    );

    // The honest chain of other-1 has neither finding.
    let honest = Identity::from_workspace(&fx.ws, "other-1").unwrap();
    let mut all = honest.preflight();
    all.extend(chainsmith::mqtt::local::hub_preflight(
        &honest,
        &fx.store.load().unwrap(),
        fx.ws.now(),
    ));
    assert!(
        !all.iter().any(|f| f.code.contains("chain-refused")),
        "{all:#?}"
    );
}
