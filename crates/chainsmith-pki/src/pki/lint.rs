//! Lint: the mistakes that make devices fail to connect, found before they connect.

use super::identity::{MAX_CN, Target, check_device_id};
use super::inspect::{CertView, ValidityStatus};
use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The certificate will be refused.
    Error,
    /// Likely to cause trouble.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    /// The word the CLI prints.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// One lint finding.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// How bad.
    pub severity: Severity,
    /// A stable identifier scripts can match on.
    pub code: &'static str,
    /// What is wrong, and the fix.
    pub message: String,
}

/// What we know about the certificate beyond its bytes.
#[derive(Clone, Debug, Default)]
pub struct LintContext<'a> {
    /// The certificate is meant to be a device leaf with this id (its CN must match).
    pub device_id: Option<&'a str>,
    /// Whose identity rules apply; None for CAs.
    pub target: Option<Target>,
    /// Issuers from the direct parent up to the root.
    pub issuers: &'a [CertView],
}

/// All findings for one certificate, errors first.
pub fn lint(cert: &CertView, ctx: &LintContext<'_>) -> Vec<Finding> {
    let name = cert.cn.clone().unwrap_or_else(|| cert.subject.clone());
    let mut out = Findings(Vec::new());
    validity(&mut out, cert, &name);
    subject_and_key(&mut out, cert, &name);
    usage(&mut out, cert, &name);
    device(&mut out, cert, ctx, &name);
    chain(&mut out, cert, ctx, &name);
    let mut out = out.0;
    out.sort_by_key(|f| f.severity);
    out
}

struct Findings(Vec<Finding>);

impl Findings {
    fn push(&mut self, severity: Severity, code: &'static str, message: String) {
        self.0.push(Finding {
            severity,
            code,
            message,
        });
    }
}

/// Expired, not yet valid, expiring soon.
fn validity(out: &mut Findings, cert: &CertView, name: &str) {
    match cert.status {
        ValidityStatus::Expired => out.push(
            Severity::Error,
            "expired",
            format!(
                "\"{name}\" expired {} days ago ({}); renew it",
                -cert.days_left, cert.not_after
            ),
        ),
        ValidityStatus::NotYetValid => out.push(
            Severity::Error,
            "not-yet-valid",
            format!(
                "\"{name}\" is not valid until {}; check the clocks or re-issue it",
                cert.not_before
            ),
        ),
        ValidityStatus::Valid if cert.days_left < 30 => out.push(
            Severity::Warning,
            "expires-soon",
            format!(
                "\"{name}\" expires in {} days ({})",
                cert.days_left, cert.not_after
            ),
        ),
        ValidityStatus::Valid => {}
    }
}

/// The CN, the key and the signature algorithm.
fn subject_and_key(out: &mut Findings, cert: &CertView, name: &str) {
    if let Some(cn) = &cert.cn {
        if cn.chars().count() > MAX_CN {
            out.push(
                Severity::Error,
                "cn-too-long",
                format!("CN \"{cn}\" is longer than {MAX_CN} characters (RFC 5280)"),
            );
        }
    } else {
        out.push(
            Severity::Warning,
            "no-cn",
            format!(
                "subject \"{}\" has no CN: hubs identify devices by it",
                cert.subject
            ),
        );
    }
    if cert.key.algorithm.starts_with("RSA") && cert.key.bits < 2048 {
        out.push(
            Severity::Error,
            "weak-key",
            format!(
                "\"{name}\" has an RSA {}-bit key; hubs and OpenSSL 3 refuse keys under 2048 bits",
                cert.key.bits
            ),
        );
    }
    if cert.uses_sha1_signature() {
        out.push(
            Severity::Error,
            "sha1-signature",
            format!(
                "\"{name}\" is signed with {}: SHA-1 signatures are rejected by current TLS stacks",
                cert.signature_algorithm
            ),
        );
    }
}

/// What a CA or a leaf must be allowed to do.
fn usage(out: &mut Findings, cert: &CertView, name: &str) {
    if cert.is_ca {
        if !cert.key_cert_sign {
            out.push(
                Severity::Error,
                "ca-without-keycertsign",
                format!(
                    "CA \"{name}\" lacks keyUsage keyCertSign, so nothing it signs will verify"
                ),
            );
        }
    } else {
        if !cert.basic_constraints_present {
            out.push(
                Severity::Warning,
                "no-basic-constraints",
                format!("\"{name}\" has no basicConstraints; mark leaves CA:FALSE (critical)"),
            );
        }
        match cert.eku_client_auth {
            Some(true) => {}
            Some(false) => out.push(
                Severity::Error,
                "no-client-auth",
                format!(
                    "\"{name}\" has an EKU without clientAuth: a hub will refuse it as a TLS client certificate"
                ),
            ),
            None => out.push(
                Severity::Warning,
                "no-eku",
                format!("\"{name}\" has no extendedKeyUsage; DPS and some brokers want clientAuth"),
            ),
        }
    }
}

/// The device id and the identity rules of the target.
fn device(out: &mut Findings, cert: &CertView, ctx: &LintContext<'_>, name: &str) {
    if let Some(id) = ctx.device_id {
        if cert.is_ca {
            out.push(
                Severity::Error,
                "device-is-ca",
                format!(
                    "device \"{id}\" has a CA:TRUE certificate; device certificates must be CA:FALSE"
                ),
            );
        }
        match &cert.cn {
            Some(cn) if cn != id => out.push(
                Severity::Error,
                "cn-mismatch",
                format!(
                    "CN \"{cn}\" is not the device id \"{id}\"; the hub matches them exactly (case-sensitive)"
                ),
            ),
            _ => {}
        }
    }
    if let (Some(target), Some(cn), false) = (ctx.target, &cert.cn, cert.is_ca) {
        match check_device_id(cn, target) {
            Ok(warnings) => warnings
                .into_iter()
                .for_each(|w| out.push(Severity::Warning, "device-id-rule", w)),
            Err(e) => out.push(Severity::Error, "device-id-rule", e.to_string()),
        }
        if cert.key.key_alg == Some(super::KeyAlg::Ed25519) && target != Target::Generic {
            out.push(
                Severity::Warning,
                "ed25519-on-azure",
                format!(
                    "\"{name}\" uses Ed25519, which Azure IoT Hub and DPS do not document; use ec-p256"
                ),
            );
        }
    }
}

/// The issuers: path lengths, CA flags, validity windows.
fn chain(out: &mut Findings, cert: &CertView, ctx: &LintContext<'_>, name: &str) {
    // Path length: the CA at distance k above the leaf has k-1 CAs below it (not counting
    // the leaf when the certificate is not a CA itself).
    let below_first = usize::from(cert.is_ca);
    for (k, issuer) in ctx.issuers.iter().enumerate() {
        let cas_below = k + below_first;
        if let Some(p) = issuer.pathlen {
            if cas_below > p as usize {
                let iname = issuer.cn.clone().unwrap_or_default();
                out.push(
                    Severity::Error,
                    "pathlen-exceeded",
                    format!(
                        "CA \"{iname}\" has pathlen {p} but {cas_below} CA level(s) sit below it on the way to \"{name}\"; re-issue \"{iname}\" with pathlen {cas_below}"
                    ),
                );
            }
        }
        if !issuer.is_ca {
            out.push(
                Severity::Error,
                "issuer-not-ca",
                format!("issuer \"{}\" is not a CA", issuer.subject),
            );
        }
    }
    if let Some(parent) = ctx.issuers.first() {
        if parent.not_after_t < cert.not_after_t {
            out.push(
                Severity::Warning,
                "outlives-issuer",
                format!(
                    "\"{name}\" is valid until {} but its issuer \"{}\" expires earlier ({}); the chain stops verifying then",
                    cert.not_after,
                    parent.cn.clone().unwrap_or_default(),
                    parent.not_after
                ),
            );
        }
    }
}

/// Whether any finding is an error.
pub fn has_errors(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.severity == Severity::Error)
}

/// How far above a certificate [`lint_certificates`] follows its chain: OpenSSL's default
/// verify depth. Keeps a file of thousands of chained certificates linear to lint.
pub(crate) const MAX_CHAIN_DEPTH: usize = 100;

/// Lint every certificate of a file. The issuers of a certificate are the certificates after it
/// for as long as each signed the one before (the chain order files use), at most
/// [`MAX_CHAIN_DEPTH`]; unrelated certificates in one bundle are not each other's issuers.
/// Linear in the number of certificates.
pub fn lint_certificates(report: &super::inspect::FileReport) -> Vec<Vec<Finding>> {
    let mut views = Vec::new();
    let mut signed = Vec::new();
    for item in &report.items {
        if let super::inspect::Item::Certificate {
            view,
            signed_by_next,
        } = item
        {
            views.push(view.as_ref().clone());
            signed.push(signed_by_next.unwrap_or(false));
        }
    }
    // run[i]: how many certificates after i continue its chain, counted from the end.
    let mut run = vec![0usize; views.len()];
    for i in (0..views.len()).rev() {
        if signed[i] {
            run[i] = 1 + run.get(i + 1).copied().unwrap_or(0);
        }
    }
    (0..views.len())
        .map(|i| {
            let end = i + 1 + run[i].min(MAX_CHAIN_DEPTH);
            lint(
                &views[i],
                &LintContext {
                    device_id: None,
                    target: None,
                    issuers: &views[i + 1..end],
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::nid::Nid;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, KeyUsage};
    use openssl::x509::{X509, X509NameBuilder};

    /// The tests' clock: certificates are made and judged relative to it, never to today.
    const NOW: ::time::OffsetDateTime = ::time::macros::datetime!(2026-06-01 12:00:00 UTC);

    /// A certificate made by OpenSSL, so it can have every flaw our profiles refuse to make.
    struct Cert<'a> {
        cn: &'a str,
        key: PKey<Private>,
        signer: Option<&'a PKey<Private>>,
        digest: MessageDigest,
        days: (i64, i64),
        ca: Option<Option<u32>>,
        ku_cert_sign: bool,
        eku: Option<&'a str>,
    }

    fn ec() -> PKey<Private> {
        PKey::from_ec_key(
            EcKey::generate(&EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap()).unwrap(),
        )
        .unwrap()
    }

    impl<'a> Cert<'a> {
        fn leaf(cn: &'a str) -> Self {
            Cert {
                cn,
                key: ec(),
                signer: None,
                digest: MessageDigest::sha256(),
                days: (-1, 365),
                ca: None,
                ku_cert_sign: false,
                eku: Some("clientAuth"),
            }
        }
        fn view(&self) -> CertView {
            let mut b = X509::builder().unwrap();
            b.set_version(2).unwrap();
            b.set_serial_number(&BigNum::from_u32(7).unwrap().to_asn1_integer().unwrap())
                .unwrap();
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_nid(Nid::COMMONNAME, self.cn).unwrap();
            let name = name.build();
            b.set_subject_name(&name).unwrap();
            b.set_issuer_name(&name).unwrap();
            b.set_pubkey(&self.key).unwrap();
            let now = NOW.unix_timestamp();
            b.set_not_before(&Asn1Time::from_unix(now + self.days.0 * 86_400).unwrap())
                .unwrap();
            b.set_not_after(&Asn1Time::from_unix(now + self.days.1 * 86_400).unwrap())
                .unwrap();
            match self.ca {
                Some(pathlen) => {
                    let mut bc = BasicConstraints::new();
                    bc.critical().ca();
                    if let Some(p) = pathlen {
                        bc.pathlen(p);
                    }
                    b.append_extension(bc.build().unwrap()).unwrap();
                }
                None => b
                    .append_extension(BasicConstraints::new().critical().build().unwrap())
                    .unwrap(),
            }
            let mut ku = KeyUsage::new();
            ku.digital_signature();
            if self.ku_cert_sign {
                ku.key_cert_sign();
            }
            b.append_extension(ku.build().unwrap()).unwrap();
            match self.eku {
                Some("clientAuth") => b
                    .append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
                    .unwrap(),
                Some(_) => b
                    .append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap())
                    .unwrap(),
                None => {}
            }
            b.sign(self.signer.unwrap_or(&self.key), self.digest)
                .unwrap();
            CertView::from_der_at(&b.build().to_der().unwrap(), NOW).unwrap()
        }
    }

    fn codes(v: &CertView, ctx: &LintContext<'_>) -> Vec<&'static str> {
        lint(v, ctx).into_iter().map(|f| f.code).collect()
    }

    fn device_ctx(id: &str) -> LintContext<'_> {
        LintContext {
            device_id: Some(id),
            target: Some(Target::Hub),
            issuers: &[],
        }
    }

    #[test]
    fn a_good_device_has_no_findings() {
        assert!(codes(&Cert::leaf("dev1").view(), &device_ctx("dev1")).is_empty());
    }

    #[test]
    fn each_rule_fires_on_its_flaw() {
        let mut c = Cert::leaf("dev1");
        c.days = (-60, -30);
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["expired"]);
        c.days = (10, 40);
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["not-yet-valid"]);
        c.days = (-1, 10);
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["expires-soon"]);

        // OpenSSL refuses to encode such a CN, so lengthen it in the view.
        let mut v = Cert::leaf("dev1").view();
        v.cn = Some("d".repeat(65));
        assert!(codes(&v, &LintContext::default()).contains(&"cn-too-long"));

        let mut c = Cert::leaf("dev1");
        c.key = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["weak-key"]);

        let mut c = Cert::leaf("dev1");
        c.digest = MessageDigest::sha1();
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["sha1-signature"]);

        let mut c = Cert::leaf("dev1");
        c.eku = Some("serverAuth");
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["no-client-auth"]);
        c.eku = None;
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["no-eku"]);

        assert_eq!(
            codes(&Cert::leaf("dev-01").view(), &device_ctx("dev-1")),
            ["cn-mismatch"]
        );
        assert_eq!(
            codes(&Cert::leaf("dev 1").view(), &device_ctx("dev 1")),
            ["device-id-rule"]
        );

        let mut c = Cert::leaf("dev1");
        c.ca = Some(None);
        c.ku_cert_sign = true;
        assert!(codes(&c.view(), &device_ctx("dev1")).contains(&"device-is-ca"));
        c.ku_cert_sign = false;
        assert!(codes(&c.view(), &LintContext::default()).contains(&"ca-without-keycertsign"));

        let mut c = Cert::leaf("dev1");
        c.key = PKey::generate_ed25519().unwrap();
        c.digest = MessageDigest::null();
        assert_eq!(codes(&c.view(), &device_ctx("dev1")), ["ed25519-on-azure"]);
        let generic = LintContext {
            target: Some(Target::Generic),
            ..device_ctx("dev1")
        };
        assert!(codes(&c.view(), &generic).is_empty());
    }

    #[test]
    fn chain_rules_look_at_the_issuers() {
        let ca_key = ec();
        let mut ca = Cert::leaf("Short CA");
        ca.ca = Some(Some(0));
        ca.ku_cert_sign = true;
        ca.days = (-1, 100);
        let ca_key_copy =
            PKey::private_key_from_der(&ca_key.private_key_to_der().unwrap()).unwrap();
        ca.key = ca_key;
        let ca_view = ca.view();

        // A leaf that outlives its issuer.
        let mut leaf = Cert::leaf("dev1");
        leaf.signer = Some(&ca_key_copy);
        leaf.days = (-1, 365);
        let issuers = [ca_view.clone()];
        let ctx = LintContext {
            device_id: Some("dev1"),
            target: Some(Target::Hub),
            issuers: &issuers,
        };
        assert_eq!(codes(&leaf.view(), &ctx), ["outlives-issuer"]);

        // A CA under a pathlen-0 CA exceeds the path length.
        let mut sub = Cert::leaf("Sub CA");
        sub.ca = Some(None);
        sub.ku_cert_sign = true;
        sub.eku = None;
        sub.signer = Some(&ca_key_copy);
        sub.days = (-1, 50);
        let ctx = LintContext {
            device_id: None,
            target: None,
            issuers: &issuers,
        };
        assert_eq!(codes(&sub.view(), &ctx), ["pathlen-exceeded"]);

        // An issuer that is not a CA.
        let mut not_ca = Cert::leaf("Not A CA");
        not_ca.days = (-1, 400);
        let issuers = [not_ca.view()];
        let ctx = LintContext {
            device_id: Some("dev1"),
            target: Some(Target::Hub),
            issuers: &issuers,
        };
        assert!(codes(&Cert::leaf("dev1").view(), &ctx).contains(&"issuer-not-ca"));
    }
}
